//! The dashboard end to end: the real binary in tmux, driven with send-keys and read with
//! capture-pane. Nothing runs before it, so it embeds the broker; an unknown client knocks,
//! shows up in Pending, is approved with a read grant from the keyboard, and its next request
//! succeeds and shows up in the Audit pane.

use testkit::{Dashboard, Sandbox, expect, held_response, request, wait_for};

/// `line` with `"prompt": false`: refused at once instead of held for the dashboard.
fn no_prompt(line: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(line).expect("request json");
    v["prompt"] = false.into();
    v.to_string()
}

/// A daemon serving `aws/prod-key` and a dashboard connected to it, its subscription made.
fn connected_dashboard(env: &Sandbox) -> (testkit::Daemon, Dashboard) {
    store_with_secret(env);
    let daemon = env.start();
    let tmux = Dashboard::start(env, &["tui", "--connect"]);
    tmux.wait_screen("the dashboard connected", |s| s.contains(" CONNECTED "));
    // The subscription is its own connection, made when the dashboard starts.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    (daemon, tmux)
}

/// A file store holding `aws/prod-key` = `s3cret`.
fn store_with_secret(env: &Sandbox) {
    env.write_private(
        &env.file_store(),
        br#"{"version":1,"items":{"aws":{"prod-key":{"value":"s3cret","attributes":{}}}}}"#,
    );
}

/// The prompt for `client`'s read of `aws` is on screen: who, what, time left, the keys.
fn wait_prompt(tmux: &Dashboard, client: &str) -> String {
    // The prompt's keys are on the last row, drawn last: a capture taken while the frame was
    // still being written (the first rows of the prompt over the old screen) is not the prompt.
    let screen = tmux.wait_screen("the prompt", |s| {
        s.contains("A caller is waiting")
            && s.contains(client)
            && s.contains("wants to read aws")
            && s.contains("allow once")
    });
    assert!(screen.contains("time left"), "{screen}");
    assert!(screen.contains("launched by"), "{screen}");
    assert!(screen.contains("allow once"), "{screen}");
    screen
}

/// Answering from the prompt: `o` serves the held request, the next request asks again, `n`
/// refuses it.
fn answer_prompts(env: &Sandbox, tmux: &Dashboard) {
    let client = env.client("e2e-held");
    let read = request("read", "aws", &["prod-key"]);
    assert_eq!(tmux.bell(), "0", "no bell before a prompt");
    let held = env.spawn_client(&client, &read);
    wait_prompt(tmux, "e2e-held");
    // The terminal bell rang for the new prompt (tmux flags the window).
    wait_for(5, "the bell", || (tmux.bell() == "1").then_some(()));
    tmux.keys(&["o"]);
    let r = held_response(held);
    expect(&r, "success", None);
    assert_eq!(r["results"][0]["value"], "s3cret");
    tmux.wait_screen("the prompt gone, the answer said", |s| {
        !s.contains("A caller is waiting") && s.contains("allowed once")
    });
    // Allow once saved nothing: the next request asks again.
    assert!(env.registered().is_empty());
    let held = env.spawn_client(&client, &read);
    wait_prompt(tmux, "e2e-held");
    tmux.keys(&["n"]);
    expect(&held_response(held), "denied", Some("unregistered_binary"));
    tmux.wait_screen("the denial said", |s| {
        !s.contains("A caller is waiting") && s.contains("denied:")
    });
    let answers: Vec<_> = env
        .audit_records()
        .into_iter()
        .filter_map(|r| {
            r.get("decision")
                .and_then(|d| d.as_str())
                .map(str::to_string)
        })
        .collect();
    assert!(answers.contains(&"once".to_string()), "{answers:?}");
    assert!(answers.contains(&"deny".to_string()), "{answers:?}");
}

#[test]
fn the_embedded_dashboard_prompts_and_answers() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let env = Sandbox::new();
    store_with_secret(&env);
    let tmux = Dashboard::start(&env, &["tui", "--embed"]);
    tmux.wait_screen("the dashboard", |s| s.contains("EMBEDDED"));
    answer_prompts(&env, &tmux);
    tmux.keys(&["q"]);
}

#[test]
fn a_connected_dashboard_prompts_and_answers() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let env = Sandbox::new();
    let (_daemon, tmux) = connected_dashboard(&env);
    answer_prompts(&env, &tmux);
    tmux.keys(&["q"]);
}

#[test]
fn a_connected_dashboard_grants_for_a_time_and_always() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let env = Sandbox::new();
    let (_daemon, tmux) = connected_dashboard(&env);
    let read = request("read", "aws", &["prod-key"]);

    // t: the duration input opens with 1h; 10m instead.
    let timed = env.client("e2e-timed");
    let held = env.spawn_client(&timed, &read);
    wait_prompt(&tmux, "e2e-timed");
    tmux.keys(&["t"]);
    tmux.wait_screen("the duration input", |s| {
        s.contains("Allow for a time") && s.contains("1h")
    });
    tmux.keys(&["BSpace", "BSpace"]);
    tmux.keys(&["-l", "10m"]);
    tmux.keys(&["Enter"]);
    expect(&held_response(held), "success", None);
    tmux.wait_screen("the answer said", |s| s.contains("allowed for 10m"));
    let reg = env.registered();
    let entry = reg
        .iter()
        .find(|e| e["path"].as_str().is_some_and(|p| p.ends_with("e2e-timed")));
    let terms = &entry.expect("registered")["service_terms"]["aws"];
    assert!(terms["expires_at"].is_string(), "{reg:?}");
    // Granted: the next request is served without a prompt.
    expect(&env.run_client(&timed, &[&read])[0], "success", None);

    // a: the editor opens with exactly what was asked; saving answers "always".
    let always = env.client("e2e-always");
    let held = env.spawn_client(&always, &read);
    wait_prompt(&tmux, "e2e-always");
    tmux.keys(&["a"]);
    tmux.wait_screen("the always editor", |s| {
        s.contains("Always allow") && s.contains("read    aws")
    });
    tmux.keys(&["Enter"]);
    expect(&held_response(held), "success", None);
    let reg = env.registered();
    let entry = reg
        .iter()
        .find(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("e2e-always"))
        })
        .expect("registered");
    assert_eq!(entry["allowed_read_services"], serde_json::json!(["aws"]));
    assert!(
        entry.get("service_terms").is_none(),
        "a plain grant: {entry}"
    );
    tmux.keys(&["q"]);
}

/// A connected dashboard's "always" saves exactly what the editor set: a launch rule, a time,
/// one use and confirmation (before, the ANSWER line carried services only and the daemon saved
/// an unrestricted permanent grant).
#[test]
fn a_connected_dashboards_always_keeps_launch_rules_and_terms() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let env = Sandbox::new();
    let launcher = env.client("launcher");
    let (_daemon, tmux) = connected_dashboard(&env);
    let read = request("read", "aws", &["prod-key"]);
    let client = env.client("e2e-ruled");
    let held = env.spawn_client(&client, &read);
    wait_prompt(&tmux, "e2e-ruled");
    tmux.keys(&["a"]);
    tmux.wait_screen("the always editor", |s| {
        s.contains("Always allow") && s.contains("read    aws")
    });
    tmux.keys(&["Tab", "Tab", "Tab"]);
    tmux.wait_screen("the via field", |s| s.contains("▶ via"));
    tmux.keys(&["-l", launcher.to_str().unwrap()]);
    tmux.keys(&["Enter", "Tab"]);
    tmux.keys(&["-l", "10m"]);
    tmux.keys(&["Enter", "Tab", "Space", "Tab", "Space"]);
    tmux.wait_screen("the terms set", |s| {
        s.contains("for     10m") && s.contains("once    yes") && s.contains("confirm yes")
    });
    tmux.keys(&["Enter"]);
    // Saved with the rule: the held request, not run by the launcher, is refused by it.
    expect(&held_response(held), "denied", Some("launcher_not_allowed"));
    let reg = env.registered();
    let entry = reg
        .iter()
        .find(|e| e["path"].as_str().is_some_and(|p| p.ends_with("e2e-ruled")))
        .unwrap_or_else(|| panic!("registered: {reg:?}"));
    assert_eq!(entry["allowed_read_services"], serde_json::json!(["aws"]));
    assert_eq!(
        entry["launched_by"].as_array().map(Vec::len),
        Some(1),
        "{entry}"
    );
    let terms = &entry["service_terms"]["aws"];
    assert_eq!(terms["uses_left"], 1, "{entry}");
    assert_eq!(terms["confirm"], true, "{entry}");
    let expires =
        chrono::DateTime::parse_from_rfc3339(terms["expires_at"].as_str().expect("expires_at"))
            .expect("an RFC 3339 time");
    let left = expires
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!((400..=600).contains(&left), "expires in {left} s: {entry}");
    tmux.keys(&["q"]);
}

#[test]
fn approve_an_unknown_caller_from_the_dashboard() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let env = Sandbox::new();
    // One secret in the file store for the client to read once approved.
    store_with_secret(&env);

    let tmux = Dashboard::start(&env, &["tui"]);
    tmux.wait_screen("the dashboard with an embedded broker", |s| {
        s.contains("EMBEDDED") && s.contains("Pending")
    });
    assert!(
        testkit::status(&env.socket).is_some(),
        "the embedded broker answers"
    );

    // An unknown caller knocks.
    let client = env.client("e2e-client");
    // The dashboard is an approver: this first request opts out of being held, to test the
    // pending-queue path.
    let read = no_prompt(&request("read", "aws", &["prod-key"]));
    expect(
        &env.run_client(&client, &[&read])[0],
        "denied",
        Some("unregistered_binary"),
    );
    tmux.wait_screen("the caller in Pending", |s| {
        s.contains("e2e-client") && s.contains("read aws")
    });

    // Approve from the keyboard: Pending pane, approve, add the suggested service, save.
    tmux.keys(&["1"]);
    tmux.keys(&["a"]);
    tmux.wait_screen("the permission editor", |s| {
        s.contains("Approve") && s.contains("+ aws")
    });
    tmux.keys(&["Enter"]);
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the approval message", |s| s.contains("approved"));
    let reg = env.registered();
    assert_eq!(reg.len(), 1);
    assert_eq!(reg[0]["allowed_read_services"], serde_json::json!(["aws"]));
    assert_eq!(reg[0]["allowed_write_services"], serde_json::json!([]));
    assert!(
        env.audit_records()
            .iter()
            .any(|r| r["event"] == "policy_change" && r["source"] == "dashboard")
    );

    // The caller's next request succeeds, and the Audit pane shows it.
    let r = &env.run_client(&client, &[&read])[0];
    expect(r, "success", None);
    assert_eq!(r["results"][0]["value"], "s3cret");
    tmux.wait_screen("the success in the Audit pane", |s| {
        s.lines()
            .any(|l| l.contains("success") && l.contains("e2e-client") && l.contains("read aws"))
    });

    // Quitting stops the embedded broker and removes its socket.
    tmux.keys(&["q"]);
    wait_for(20, "the embedded broker to stop", || {
        (!env.socket.exists()).then_some(())
    });
}

#[test]
fn a_connected_dashboard_shows_a_dead_broker_and_reconnects_by_itself() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let env = Sandbox::new();
    let mut daemon = env.start();
    let tmux = Dashboard::start(&env, &["tui", "--connect"]);
    tmux.wait_screen("the dashboard connected", |s| s.contains(" CONNECTED "));

    // The broker dies: the badge says so within a few ticks.
    daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
    let t = std::time::Instant::now();
    let screen = tmux.wait_screen("DISCONNECTED", |s| s.contains("DISCONNECTED"));
    assert!(!screen.contains(" CONNECTED "), "{screen}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );

    // A new broker on the same socket: picked up by itself, the stale error cleared.
    let _daemon = env.start();
    let screen = tmux.wait_screen("CONNECTED again", |s| s.contains(" CONNECTED "));
    assert!(!screen.contains("DISCONNECTED"), "{screen}");
    assert!(!screen.contains("does not answer"), "{screen}");
    tmux.keys(&["q"]);
}

#[test]
fn the_embedded_brokers_messages_go_to_the_message_line_not_over_the_screen() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let env = Sandbox::new();
    let tmux = Dashboard::start(&env, &["tui", "--embed"]);
    tmux.wait_screen("the dashboard", |s| s.contains("EMBEDDED"));
    // A key puts the first screen's notice away (it sits between the panes and the message).
    tmux.keys(&["Escape"]);
    tmux.wait_screen("the notice gone", |s| !s.contains("keychain-auth install"));
    // pending.json becomes a directory while the broker runs: it cannot queue a refused caller
    // and says so. (The dashboard says first that it cannot read it; the broker's warning
    // replaces that.)
    let _ = std::fs::remove_file(env.pending());
    std::fs::create_dir_all(env.pending()).expect("pending.json as a directory");
    tmux.wait_screen("the dashboard's own read error", |s| {
        s.contains("pending.json")
    });
    let client = env.client("e2e-client");
    expect(
        &env.run_client(&client, &[&no_prompt(&request("read", "aws", &["k"]))])[0],
        "denied",
        Some("unregistered_binary"),
    );
    let screen = tmux.wait_screen("the broker's warning on the message line", |s| {
        s.contains("could not record a pending caller")
    });
    let lines: Vec<&str> = screen.lines().collect();
    let at: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("could not record a pending caller"))
        .collect();
    // On the message line at the bottom (it wraps over up to four lines), right below the
    // last pane's border, and nowhere else.
    assert_eq!(at.len(), 1, "{screen}");
    assert!(at[0] >= 32, "on the message line:\n{screen}");
    assert!(
        lines[at[0] - 1].starts_with('└'),
        "right below the panes:\n{screen}"
    );
    assert!(
        !screen.contains("keychain-auth: could not record"),
        "not the raw stderr line:\n{screen}"
    );
    assert!(lines[0].starts_with(" keychain-auth "), "{screen}");
    tmux.keys(&["q"]);
}

#[test]
fn the_audit_filter_searches_the_whole_log() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let env = Sandbox::new();
    // 300,000 records, far more than the 2,000 loaded; one match, near the start.
    let log = env.audit();
    std::fs::create_dir_all(log.parent().expect("dir")).expect("dir");
    testkit::set_mode(log.parent().expect("dir"), 0o700);
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&log).expect("log"));
        for i in 0..300_000 {
            let svc = if i == 10 { "needle-svc" } else { "bench" };
            writeln!(
                w,
                r#"{{"ts":"2026-11-24T09:00:00.000Z","event":"request","source":"daemon","pid":4242,"path":"/usr/local/bin/mycli","action":"read","service":"{svc}","targets":["k{i}"],"status":"success"}}"#
            )
            .expect("write");
        }
    }
    testkit::set_mode(&log, 0o600);
    let tmux = Dashboard::start(&env, &["tui", "--embed"]);
    tmux.wait_screen("the dashboard", |s| {
        s.contains("EMBEDDED") && s.contains("records")
    });
    tmux.keys(&["2", "/"]);
    tmux.wait_screen("the filter input", |s| s.contains("Filter audit records"));
    tmux.keys(&["-l", "needle"]);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_screen("the match from the start of the log", |s| {
        s.contains("read needle-svc") && s.contains("k10")
    });
    assert!(screen.contains("Audit · filter \"needle\""), "{screen}");
    let screen = tmux.wait_screen("the finished count", |s| s.contains("1 match in 300,00"));
    assert!(!screen.contains("read bench"), "{screen}");
    // No match: said so, with how many records were searched.
    tmux.keys(&["/"]);
    tmux.keys(&["-l", "zzz"]);
    tmux.keys(&["Enter"]);
    tmux.wait_screen("no match", |s| s.contains("No match in 300,00"));
    // Esc clears the filter: the loaded tail is back.
    tmux.keys(&["Escape"]);
    tmux.wait_screen("the tail again", |s| {
        s.contains("read bench") && !s.contains("filter \"")
    });
    tmux.keys(&["q"]);
}

#[test]
fn an_edit_of_config_json_made_outside_keychain_auth_is_shown() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let env = Sandbox::new();
    let tool = env.registered_client("tool", &["--read", "aws"]);
    let tmux = Dashboard::start(&env, &["tui", "--embed"]);
    tmux.wait_screen("the dashboard", |s| s.contains("1 registered"));
    // An editor (or a script) grants the tool another service behind keychain-auth's back.
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.config()).expect("config"))
            .expect("config json");
    config["registered_binaries"][0]["allowed_read_services"] = serde_json::json!(["aws", "prod"]);
    std::fs::write(env.config(), config.to_string()).expect("edit");
    let screen = tmux.wait_screen("the edit noticed", |s| {
        s.contains("EDITED outside keychain-auth") && s.contains("HELD: edited")
    });
    assert!(screen.contains("not served"), "{screen}");
    // Not served until adopted: the tool is refused even for the service it had.
    let refused = env.run_client(&tool, &[&request("read", "aws", &["k"])]);
    expect(&refused[0], "denied", Some("unregistered_binary"));
    tmux.keys(&["3", "D"]);
    let overlay = tmux.wait_screen("the difference", |s| {
        s.contains("config.json edited outside keychain-auth") && s.contains("policy accept")
    });
    assert!(overlay.contains("prod"), "{overlay}");
    tmux.keys(&["Escape"]);
    env.cli_ok(&["policy", "accept", "--yes"]);
    tmux.wait_screen("the edit adopted", |s| {
        !s.contains("EDITED outside") && !s.contains("HELD: edited")
    });
}

#[test]
fn the_permission_editor_sets_launch_rules_and_terms() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let env = Sandbox::new();
    store_with_secret(&env);
    let launcher = env.client("launcher");
    let tmux = Dashboard::start(&env, &["tui"]);
    tmux.wait_screen("the dashboard", |s| s.contains("EMBEDDED"));
    let client = env.client("ruled");
    let read = no_prompt(&request("read", "aws", &["prod-key"]));
    expect(
        &env.run_client(&client, &[&read])[0],
        "denied",
        Some("unregistered_binary"),
    );
    tmux.wait_screen("the caller in Pending", |s| s.contains("ruled"));
    // Approve: read aws (suggested), via the launcher, for 1h, once.
    tmux.keys(&["1", "a"]);
    tmux.wait_screen("the editor", |s| s.contains("+ aws"));
    tmux.keys(&["Enter", "Tab", "Tab", "Tab"]);
    tmux.wait_screen("the via field", |s| s.contains("▶ via"));
    tmux.keys(&["-l", launcher.to_str().unwrap()]);
    tmux.keys(&["Enter", "Tab"]);
    tmux.keys(&["-l", "1h"]);
    tmux.keys(&["Enter", "Tab", "Space"]);
    tmux.wait_screen("the terms set", |s| {
        s.contains("for     1h") && s.contains("once    yes")
    });
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the approval message", |s| s.contains("approved"));
    let reg = env.registered();
    assert_eq!(reg.len(), 1, "{reg:?}");
    assert_eq!(
        reg[0]["launched_by"].as_array().map(Vec::len),
        Some(1),
        "{reg:?}"
    );
    let terms = &reg[0]["service_terms"]["aws"];
    assert_eq!(terms["uses_left"], 1, "{reg:?}");
    assert!(terms["expires_at"].is_string(), "{reg:?}");
    // Run from here, not by the launcher: refused by the rule.
    expect(
        &env.run_client(&client, &[&read])[0],
        "denied",
        Some("launcher_not_allowed"),
    );
    // Edit: the rule removed (backspace on the via field), saved.
    tmux.keys(&["3"]);
    tmux.wait_screen("the Policies pane", |s| {
        s.contains("┏ 3 Policies") && s.contains("1 registered")
    });
    tmux.keys(&["e"]);
    tmux.wait_screen("the edit editor", |s| s.contains("Edit permissions"));
    tmux.keys(&["Tab", "Tab", "Tab", "BSpace", "Enter"]);
    tmux.wait_screen("saved", |s| s.contains("saved permissions"));
    let reg = env.registered();
    assert!(
        reg[0]["launched_by"].as_array().is_none_or(Vec::is_empty),
        "rule removed: {reg:?}"
    );
    assert_eq!(
        reg[0]["service_terms"]["aws"]["uses_left"], 1,
        "terms kept: {reg:?}"
    );
    // Served once, then the grant is used up.
    expect(&env.run_client(&client, &[&read])[0], "success", None);
    expect(
        &env.run_client(&client, &[&read])[0],
        "denied",
        Some("service_not_allowed"),
    );
}

#[test]
fn two_dashboards_one_answer_then_timeouts_opt_outs_and_a_lone_daemon() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let env = Sandbox::new();
    let (_daemon, first) = connected_dashboard(&env);
    let second = Dashboard::start(&env, &["tui", "--connect"]);
    second.wait_screen("the second dashboard", |s| s.contains(" CONNECTED "));
    std::thread::sleep(std::time::Duration::from_millis(1500)); // its subscription
    let client = env.client("e2e-twice");
    let read = request("read", "aws", &["prod-key"]);
    // Both dashboards show the prompt; the first answer wins, the other sees it resolved.
    let held = env.spawn_client(&client, &read);
    wait_prompt(&first, "e2e-twice");
    wait_prompt(&second, "e2e-twice");
    second.keys(&["o"]);
    expect(&held_response(held), "success", None);
    first.wait_screen("the prompt resolved elsewhere", |s| {
        !s.contains("A caller is waiting")
    });
    // Another binary may not subscribe.
    let r = env.run_client(&client, &[r#"{"type":"SUBSCRIBE"}"#]);
    expect(&r[0], "denied", Some("unregistered_binary"));
    // "prompt": false is refused at once although two approvers are attached.
    let t = std::time::Instant::now();
    let r = env.run_client(&client, &[&no_prompt(&read)]);
    expect(&r[0], "denied", Some("unregistered_binary"));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
    // Nobody answers within prompt_timeout_s: refused, and the caller waits in Pending.
    assert!(!env.config().exists(), "nothing was approved");
    env.write_private(
        &env.config(),
        r#"{"protocol_version":"1","prompt_timeout_s":1}"#,
    );
    env.cli_ok(&["policy", "accept", "--yes"]);
    let held = env.spawn_client(&client, &read);
    wait_prompt(&first, "e2e-twice");
    let msg = expect(&held_response(held), "denied", Some("unregistered_binary"));
    assert!(msg.contains("no approver answered in time"), "{msg}");
    first.wait_screen("the caller in Pending", |s| {
        !s.contains("A caller is waiting") && s.contains("e2e-twice")
    });
    assert!(
        env.pending_entries()
            .iter()
            .any(|e| e["path"].as_str().is_some_and(|p| p.ends_with("e2e-twice")))
    );
    // With both dashboards gone, a lone daemon refuses at once.
    first.keys(&["q"]);
    second.keys(&["q"]);
    drop((first, second));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let t = std::time::Instant::now();
    let r = env.run_client(&client, &[&read]);
    expect(&r[0], "denied", Some("unregistered_binary"));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
}
