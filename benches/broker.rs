//! Side-by-side benchmarks of the broker (issue: "compare the broker with the floor").
//!
//! `cargo bench --bench broker` runs every comparison with the two sides interleaved over
//! several rounds and prints one summary table of medians. Run without `--bench` (as
//! `cargo test --bench broker` does, and so `cargo test`), it runs a short smoke pass that only
//! proves the code paths still work: no figure it prints means anything and nothing is timed
//! against a target.
//!
//! The client side of every socket comparison is a separate process (`keychain-auth-client`
//! with `--repeat/--reconnect/--stats`) that connects like a real caller; the daemon is the real
//! `keychain-auth start` binary with isolated HOME/XDG directories.

use keychain_auth::audit::{AuditLog, KeySource, Record, Rotation, verify};
use keychain_auth::keys::Key;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// The integration tests' harness (tests/support): sandbox, daemon, client copies, keyring.
use testkit::{Dashboard, KeyringSandbox, Sandbox};

const CLIENT: &str = env!("CARGO_BIN_EXE_keychain-auth-client");

/// Iteration counts: real figures with `--bench`, a few iterations otherwise.
struct Scale {
    rounds: usize,
    connects: usize,
    persistent: usize,
    concurrent_clients: usize,
    per_client: usize,
    audit_records: usize,
    fsync_records: usize,
    keyring_reads: usize,
    audit_lines: usize,
    ss_lookups: usize,
    ss_items: usize,
}

impl Scale {
    fn full() -> Scale {
        Scale {
            rounds: 5,
            connects: 2000,
            persistent: 50_000,
            concurrent_clients: 256,
            per_client: 100,
            audit_records: 100_000,
            fsync_records: 300,
            keyring_reads: 300,
            audit_lines: 1_000_000,
            ss_lookups: 40,
            ss_items: 10_000,
        }
    }
    fn smoke() -> Scale {
        Scale {
            rounds: 1,
            connects: 20,
            persistent: 200,
            concurrent_clients: 8,
            per_client: 5,
            audit_records: 100,
            fsync_records: 3,
            keyring_reads: 5,
            audit_lines: 10_000,
            ss_lookups: 2,
            ss_items: 100,
        }
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let scale = if full { Scale::full() } else { Scale::smoke() };
    if !full {
        println!("broker bench: smoke mode (run `cargo bench --bench broker` for figures)");
    }
    let mut table = Table::default();
    // `-- --only-search`: just comparison 11 (it needs no daemon).
    if std::env::args().any(|a| a == "--only-search") {
        search_row(&mut table, &scale);
        table.print();
        return;
    }
    // `KA_BENCH_ONLY=prompt cargo bench --bench broker`: only the live-approval rows (12, 13).
    if std::env::var("KA_BENCH_ONLY").is_ok_and(|v| v == "prompt") {
        held_requests_row(&scale, &mut table);
        prompt_row(&scale, &mut table);
        table.print();
        return;
    }
    // `KA_BENCH_ONLY=vault cargo bench --bench broker`: only the vault rows (14–17).
    if std::env::var("KA_BENCH_ONLY").is_ok_and(|v| v == "vault") {
        vault_rows(&mut table, &scale, full);
        table.print();
        return;
    }
    // `KA_BENCH_ONLY=secret-service cargo bench --bench broker`: only rows 18 and 19.
    if std::env::var("KA_BENCH_ONLY").is_ok_and(|v| v == "secret-service") {
        secret_service_rows(&mut table, &scale);
        table.print();
        return;
    }
    // `KA_BENCH_ONLY=audit cargo bench --bench broker`: only the audit rows (7 and 10).
    if std::env::var("KA_BENCH_ONLY").is_ok_and(|v| v == "audit") {
        audit_rows(&mut table, &scale);
        table.print();
        return;
    }
    let env = Sandbox::new();
    let daemon = env.start();
    let floor = Floor::start(&env.root);
    // The client of rows 1 and 3 is C too, the same binary against both servers.
    let c_client_path = compile_c(&env.root, "floor_client");

    let small = env.client_named("small", 0);
    let big = env.client_named("big", if full { 100 * 1024 * 1024 } else { 1024 * 1024 });
    for c in [&small, &big, &c_client_path] {
        env.cli_ok(&[
            "register",
            c.to_str().unwrap_or_default(),
            "--read",
            "bench",
            "--write",
            "bench",
        ]);
    }
    let write =
        r#"{"type":"REQUEST","action":"write","service":"bench","targets":["k"],"values":["v"]}"#;
    let read = r#"{"type":"REQUEST","action":"read","service":"bench","targets":["k"]}"#;
    client_run(&env, &small, &["--quiet", write]);

    // 1 and 3: the C client against the broker and against the floor, interleaved, in two
    // placements: server and client on one core (what each side costs; the floor then answers
    // in a few µs), and on two cores (each answer wakes the other core: on this VM that wake-up
    // alone costs tens of µs, which flatters every ratio). Pinned with taskset so the
    // scheduler's choice does not decide the figures.
    client_run(&env, &small, &["--quiet", read]);
    client_run(&env, &big, &["--quiet", read]);
    c_client(
        &env,
        &c_client_path,
        &env.socket,
        "reconnect",
        10,
        read,
        None,
    ); // warm the caches
    // The checked floor writes records as long as the broker's for this very caller.
    let record_bytes = last_record_len(&env.root.join("data/keychain-auth/audit.log"));
    let checked = checked_floor(&env.root, record_bytes);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    // The third placement is none: the scheduler's choice, as users run it.
    let placements: &[(&str, Option<usize>)] = if cores > 1 {
        &[
            ("one core", Some(0)),
            ("two cores", Some(1)),
            ("unpinned", None),
        ]
    } else {
        &[("one core", Some(0))]
    };
    let all = format!("0-{}", cores - 1);
    for (i, (placement, client_cpu)) in placements.iter().enumerate() {
        let server_cpus = if client_cpu.is_some() {
            "0"
        } else {
            all.as_str()
        };
        pin(daemon.pid(), server_cpus);
        pin(floor.child.id(), server_cpus);
        pin(checked.child.id(), server_cpus);
        let cpu = *client_cpu;
        // Broker, floor and checked floor in turn, `rounds` times: the three see the same
        // machine.
        let servers = [&env.socket, &floor.path, &checked.path];
        let run = |mode: &str, n: usize| -> [Vec<CStats>; 3] {
            let mut out: [Vec<CStats>; 3] = Default::default();
            for _ in 0..scale.rounds {
                for (k, socket) in servers.iter().enumerate() {
                    out[k].push(c_client(&env, &c_client_path, socket, mode, n, read, cpu));
                }
            }
            out
        };
        let [b1, f1, c1] = run("reconnect", scale.connects);
        let [b, f, c] = [&b1, &f1, &c1].map(|v| median_c(v, |s| s.p50_us));
        table.row(
            &format!("1{}", ["a", "b", "c"][i]),
            &format!(
                "connect+identify+read (file store), C client, {placement}: broker vs floor server (vs checked floor)"
            ),
            format!(
                "{b:.1} µs vs {f:.1} µs (checked floor {c:.1} µs) (p50); p99 {:.0} vs {:.0} ({:.0}) µs",
                median_c(&b1, |s| s.p99_us),
                median_c(&f1, |s| s.p99_us),
                median_c(&c1, |s| s.p99_us)
            ),
            format!("{:.2}× (checked floor {:.2}×; broker/checked {:.2}×)", b / f, c / f, b / c),
            "≤ 2.0×",
        );
        let [b3, f3, c3] = run("persistent", scale.persistent);
        let [rps, frps, crps] = [&b3, &f3, &c3].map(|v| median_c(v, |s| s.per_second));
        table.row(
            &format!("3{}", ["a", "b", "c"][i]),
            &format!("exact reads on one persistent connection, C client, {placement}: broker vs floor server (vs checked floor)"),
            format!(
                "{rps:.0}/s vs {frps:.0}/s (checked floor {crps:.0}/s); p50 {:.1} vs {:.1} ({:.1}) µs",
                median_c(&b3, |s| s.p50_us),
                median_c(&f3, |s| s.p50_us),
                median_c(&c3, |s| s.p50_us)
            ),
            format!(
                "{:.2}× floor time (checked floor {:.2}×; broker/checked {:.2}×)",
                frps / rps,
                frps / crps,
                crps / rps
            ),
            "≤ 2.0× floor time",
        );
    }
    pin(daemon.pid(), &all);
    check_costs_row(&env.root, &mut table);
    // `KA_BENCH_ONLY=requests cargo bench --bench broker`: only rows 1 and 3.
    if std::env::var("KA_BENCH_ONLY").is_ok_and(|v| v == "requests") {
        table.print();
        return;
    }

    // 2: the same through the Rust reference client, 100 MB copy vs the small one.
    let n = scale.connects.to_string();
    let (mut small_connect, mut big_connect) = (Vec::new(), Vec::new());
    for _ in 0..scale.rounds {
        let args = ["--repeat", n.as_str(), "--reconnect", read];
        small_connect.push(stats(&env, &small, &env.socket, &args));
        big_connect.push(stats(&env, &big, &env.socket, &args));
    }
    let b = median_of(&small_connect, |s| s.p50_us);
    let g = median_of(&big_connect, |s| s.p50_us);
    let big_size = std::fs::metadata(&big).map(|m| m.len()).unwrap_or(0);
    let small_size = std::fs::metadata(&small).map(|m| m.len()).unwrap_or(0);
    table.row(
        "2",
        &format!(
            "same, {} MB client vs {} KB client",
            big_size / (1024 * 1024),
            small_size / 1024
        ),
        format!("{g:.1} µs vs {b:.1} µs (p50)"),
        format!("{:.2}×", g / b),
        "≤ 1.2×",
    );

    // 4: many concurrent clients.
    let mut errors = 0usize;
    let mut p99s = Vec::new();
    let mut all = Vec::new();
    for _ in 0..scale.rounds {
        let (e, samples) = concurrent(
            &env,
            &small,
            scale.concurrent_clients,
            scale.per_client,
            read,
        );
        errors += e;
        p99s.push(percentile(&samples, 99.0));
        all.extend(samples);
    }
    table.row(
        "4",
        &format!(
            "{} concurrent clients × {} reads each",
            scale.concurrent_clients, scale.per_client
        ),
        format!(
            "{errors} errors; p50 {:.0} µs, p99 {:.0} µs (median of rounds' p99)",
            percentile(&all, 50.0),
            median(&mut p99s)
        ),
        String::from("-"),
        "0 errors; p99 reported",
    );

    // 5: one read through the broker on a real gnome-keyring vs one direct read in-process.
    keyring_row(&mut table, &scale);

    // 6: the dashboard over a long audit log.
    dashboard_row(&mut table, &scale);
    search_row(&mut table, &scale);

    // 7 and 10: audit append (chained vs the unchained append it replaced, vs fsync) and
    // verify throughput.
    audit_rows(&mut table, &scale);

    // 8 and 9: identity of the second form — the caller chain and a script caller.
    chain_and_script(&env, &floor, read, &scale, &mut table);
    drop(daemon);

    // 12: held requests do not slow the others; 13: a held request reaches the screen.
    held_requests_row(&scale, &mut table);
    prompt_row(&scale, &mut table);
    // 14–17: the vault against the file store.
    vault_rows(&mut table, &scale, full);
    // 18 and 19: the Secret Service the broker serves, against gnome-keyring; search at scale.
    secret_service_rows(&mut table, &scale);
    table.print();
}

/// Runs `secret-tool ARGS` in `env` and returns the wall time in ms (process start included,
/// as a user or a credential helper pays it) and its stdout.
fn secret_tool(env: &Sandbox, args: &[&str], stdin: &str) -> (f64, String) {
    let t = Instant::now();
    let mut cmd = env.command("secret-tool");
    cmd.args(args);
    let out = testkit::run_with_input(cmd, stdin.as_bytes());
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert!(
        out.status.success(),
        "secret-tool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (ms, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Comparisons 18 and 19. 18: `secret-tool lookup` (a whole process: libsecret, a DH session,
/// SearchItems, GetSecrets) through the broker's Secret Service (`start --secret-service`,
/// file store, every call a decided and audited broker request) against the same through
/// gnome-keyring, each on its own private bus, interleaved. 19: with `ss_items` items in one
/// service, `secret-tool lookup` of one of them, and a raw `SearchItems` returning all of them
/// (every item gets an object path).
fn secret_service_rows(table: &mut Table, scale: &Scale) {
    let what = "secret-tool lookup: through the broker's Secret Service vs through gnome-keyring";
    let Some(k) = KeyringSandbox::start() else {
        table.row(
            "18",
            what,
            "skipped: gnome-keyring/dbus not installed".into(),
            "-".into(),
            "≤ 1.3×",
        );
        return;
    };
    let lookup = ["lookup", "service", "bench", "username", "u"];
    secret_tool(
        &k.sandbox,
        &["store", "--label=b", "service", "bench", "username", "u"],
        "v1",
    );
    let mut env = Sandbox::new();
    let bus = testkit::Bus::start(&env);
    env.extra_env.extend(bus.env());
    let _daemon = env.start_args(&["--secret-service"]);
    bus.wait_for_owner(&env, "org.freedesktop.secrets");
    env.cli_ok(&[
        "register",
        "/usr/bin/secret-tool",
        "--read",
        "bench",
        "--write",
        "bench",
        "--search",
    ]);
    secret_tool(
        &env,
        &["store", "--label=b", "service", "bench", "username", "u"],
        "v1",
    );
    let (mut broker, mut keyring) = (Vec::new(), Vec::new());
    for _ in 0..scale.rounds {
        for _ in 0..scale.ss_lookups {
            let (b, out) = secret_tool(&env, &lookup, "");
            assert_eq!(out, "v1");
            broker.push(b);
            let (g, out) = secret_tool(&k.sandbox, &lookup, "");
            assert_eq!(out, "v1");
            keyring.push(g);
        }
    }
    let (b, g) = (median(&mut broker), median(&mut keyring));
    table.row(
        "18",
        what,
        format!(
            "{b:.1} ms vs {g:.1} ms (p50 of {}, whole process)",
            broker.len()
        ),
        format!("{:.2}×", b / g),
        "≤ 1.3×",
    );
    drop(k);

    // 15: many items in one service, written through the socket in batches of 1,000.
    env.register_reference_client(&["bulk"]);
    let mut lines = Vec::new();
    for chunk in (0..scale.ss_items).collect::<Vec<_>>().chunks(1000) {
        let targets: Vec<String> = chunk.iter().map(|i| format!("item-{i:05}")).collect();
        let values: Vec<String> = chunk.iter().map(|i| format!("value-{i}")).collect();
        lines.push(
            serde_json::json!({"type":"REQUEST","action":"write","service":"bulk",
            "targets":targets,"values":values}),
        );
    }
    // One batch per client run: the harness writes all of a run's input before it reads the
    // answers, and ten 1,000-target answers would fill the pipe first.
    for line in lines {
        let r = env.send(line);
        assert_eq!(r["status"], "success", "{r}");
    }
    env.cli_ok(&["grant", "/usr/bin/secret-tool", "--read", "bulk"]);
    let mid = format!("item-{:05}", scale.ss_items / 2);
    let one = ["lookup", "service", "bulk", "target", mid.as_str()];
    // dbus-send, not gdbus: `gdbus call` first introspects the object, and zbus's introspection
    // of /org/freedesktop/secrets spells out every item below it (see BENCHMARKS.md).
    let search_all = || {
        let t = Instant::now();
        let out = env
            .command("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.secrets",
            ])
            .arg("/org/freedesktop/secrets")
            .arg("org.freedesktop.Secret.Service.SearchItems")
            .arg("dict:string:string:service,bulk")
            .output()
            .expect("dbus-send");
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let paths = String::from_utf8_lossy(&out.stdout)
            .matches("/login/i")
            .count();
        (ms, paths)
    };
    env.cli_ok(&[
        "register",
        "/usr/bin/dbus-send",
        "--read",
        "bulk",
        "--search",
    ]);
    let (mut lookups, mut alls, mut firsts) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..scale.rounds {
        let (ms, paths) = search_all();
        assert_eq!(paths, scale.ss_items, "SearchItems returns every item");
        if round == 0 {
            firsts.push(ms);
        } else {
            alls.push(ms);
        }
        for _ in 0..scale.ss_lookups.min(10) {
            let (ms, out) = secret_tool(&env, &one, "");
            assert_eq!(out, format!("value-{}", scale.ss_items / 2));
            lookups.push(ms);
        }
    }
    let all = if alls.is_empty() {
        median(&mut firsts)
    } else {
        median(&mut alls)
    };
    table.row(
        "19",
        &format!("{} items in one service: secret-tool lookup of one / SearchItems returning all (dbus-send)", scale.ss_items),
        format!(
            "{:.1} ms / {all:.0} ms (first call, registering every item's object: {:.0} ms)",
            median(&mut lookups),
            median(&mut firsts)
        ),
        "-".into(),
        "reported",
    );
}

/// Comparisons 14–17: the vault (created with the calibrated KDF, as `init` does for a user;
/// the floor KDF in smoke mode) against the file store, each with its own real daemon: unlock,
/// exact reads and writes on one persistent connection (interleaved rounds), and a vault of
/// 10,000 secrets: its size on disk (against the file store's) and its load time (an unlock,
/// which derives the key and opens every record).
fn vault_rows(table: &mut Table, scale: &Scale, full: bool) {
    use std::ffi::OsString;
    let plain = Sandbox::new();
    let vault = Sandbox::new();
    let pass = vault.root.join("passphrase");
    vault.write_private(&pass, "bench passphrase\n");
    let mut penv = vec![(
        "KEYCHAIN_AUTH_PASSPHRASE_FILE".to_string(),
        OsString::from(&pass),
    )];
    if !full {
        penv.push(("KEYCHAIN_AUTH_VAULT_KDF".into(), "floor".into()));
    }
    let ok = |env: &Sandbox, args: &[&str]| {
        let out = env.cli_env(&penv, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let started = Instant::now();
    ok(&vault, &["init"]);
    let init_ms = started.elapsed().as_secs_f64() * 1000.0;
    // A copy of the empty vault (same key slot, same KDF cost) for row 17's load time.
    let vault_file = vault.root.join("data/keychain-auth/vault");
    let twin = vault.root.join("twin/vault");
    vault.write_private(&twin, std::fs::read(&vault_file).unwrap_or_default());
    let pc = plain.client_named("small", 0);
    let vc = vault.client_named("small", 0);
    let reg = |env: &Sandbox, c: &Path| {
        ok(
            env,
            &[
                "register",
                c.to_str().unwrap_or_default(),
                "--read",
                "bench",
                "--write",
                "bench",
            ],
        );
    };
    reg(&plain, &pc);
    reg(&vault, &vc);
    let _pd = plain.start();
    let _vd = vault.start();
    // 14: unlock of a running, locked daemon (the whole `keychain-auth unlock` command).
    let mut unlock = Vec::new();
    for _ in 0..scale.rounds.max(3) {
        vault.cli_ok(&["lock"]);
        let t = Instant::now();
        ok(&vault, &["unlock"]);
        unlock.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let unlock_ms = median(&mut unlock);
    table.row(
        "14",
        "`keychain-auth unlock` of a running daemon (Argon2id as `init` calibrated it), whole command; `init` for scale",
        format!("{unlock_ms:.0} ms (median); init {init_ms:.0} ms"),
        "–".into(),
        "≈ 1 s by design",
    );
    let write =
        r#"{"type":"REQUEST","action":"write","service":"bench","targets":["k"],"values":["v"]}"#;
    let read = r#"{"type":"REQUEST","action":"read","service":"bench","targets":["k"]}"#;
    client_run(&plain, &pc, &["--quiet", write]);
    client_run(&vault, &vc, &["--quiet", write]);
    // 15 and 16: reads, then writes, on one persistent connection, interleaved rounds.
    let (reads, writes) = (
        scale.persistent.to_string(),
        scale.fsync_records.to_string(),
    );
    for (n, what, line, target) in [
        (
            "15",
            "exact reads on one persistent connection",
            read,
            reads.as_str(),
        ),
        (
            "16",
            "writes (one target, each fsync'd) on one persistent connection",
            write,
            writes.as_str(),
        ),
    ] {
        let (mut p, mut v) = (Vec::new(), Vec::new());
        for _ in 0..scale.rounds {
            p.push(stats(
                &plain,
                &pc,
                &plain.socket,
                &["--repeat", target, line],
            ));
            v.push(stats(
                &vault,
                &vc,
                &vault.socket,
                &["--repeat", target, line],
            ));
        }
        let (pm, vm) = (median_of(&p, |s| s.p50_us), median_of(&v, |s| s.p50_us));
        table.row(
            n,
            &format!("{what}: vault vs file store"),
            format!("{vm:.1} µs vs {pm:.1} µs (p50)"),
            format!("{:.2}×", vm / pm),
            if n == "15" { "≤ 1.1×" } else { "reported" },
        );
    }
    // 17: 10,000 secrets (1,000 in smoke mode), written in batches of 1,000 to both stores.
    let count = if full { 10_000 } else { 1_000 };
    for b in 0..count / 1000 {
        let targets: Vec<String> = (0..1000).map(|i| format!("secret-{b}-{i:04}")).collect();
        let values: Vec<String> = (0..1000)
            .map(|i| format!("value-{b}-{i:04}-xxxxxxxxxxxxxxxx"))
            .collect();
        let line = serde_json::json!({"type":"REQUEST","action":"write","service":"bench",
            "targets": targets, "values": values})
        .to_string();
        client_run(&plain, &pc, &["--quiet", &line]);
        client_run(&vault, &vc, &["--quiet", &line]);
    }
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let vsize = size(&vault_file);
    let psize = size(&plain.file_store());
    // Load: in this process, the full vault and its empty twin (same KDF cost) unlocked in
    // turn; the difference of the medians is what the records cost (read, MAC, decrypt each).
    use keychain_auth::backend::vault::VaultStore;
    let (full_store, empty_store) = (VaultStore::shared(&vault_file), VaultStore::shared(&twin));
    let (mut full_ms, mut empty_ms) = (Vec::new(), Vec::new());
    for _ in 0..scale.rounds.max(3) {
        for (store, into) in [(&empty_store, &mut empty_ms), (&full_store, &mut full_ms)] {
            let t = Instant::now();
            store
                .unlock(
                    b"bench passphrase",
                    keychain_auth::audit::generation::highest,
                )
                .expect("unlock");
            into.push(t.elapsed().as_secs_f64() * 1000.0);
            store.lock();
        }
    }
    let (full_ms, empty_ms) = (median(&mut full_ms), median(&mut empty_ms));
    table.row(
        "17",
        &format!("a vault of {count} secrets: size on disk vs the file store's; load (unlock in-process) vs its empty twin with the same KDF cost"),
        format!(
            "{:.2} MB vs {:.2} MB; {full_ms:.0} ms vs {empty_ms:.0} ms",
            vsize as f64 / 1e6,
            psize as f64 / 1e6
        ),
        format!("{:.2}× size; records {:.0} ms", vsize as f64 / psize.max(1) as f64, full_ms - empty_ms),
        "reported",
    );
}

/// Comparison 13 (live approval): from an unknown caller's request to the dashboard's prompt on
/// screen, `keychain-auth tui --embed` in tmux, polled with `capture-pane` (≈ 2 ms resolution;
/// the times include the caller's process start, so they are an upper bound).
fn prompt_row(scale: &Scale, table: &mut Table) {
    let what = "request held by an unknown caller → prompt on screen (tui --embed, in tmux)";
    if Command::new("tmux").arg("-V").output().is_err() {
        table.row(
            "13",
            what,
            "skipped: tmux not installed".into(),
            "-".into(),
            "≤ 100 ms",
        );
        return;
    }
    let env = Sandbox::new();
    let dash = Dashboard::start(&env, &["tui", "--embed"]);
    testkit::wait_for(30, "the dashboard", || {
        testkit::status(&env.socket)?;
        dash.capture().contains("EMBEDDED").then_some(())
    });
    let read = r#"{"type":"REQUEST","action":"read","service":"bench","targets":["k"]}"#;
    let mut samples = Vec::new();
    for i in 0..scale.rounds {
        let client = env.client(&format!("asker-{i}"));
        let t = Instant::now();
        let mut c = env
            .command(&client)
            .args(["--quiet", read])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !dash
            .capture()
            .contains("A caller is waiting for your answer")
        {
            assert!(
                Instant::now() < deadline,
                "no prompt on screen:\n{}",
                dash.capture()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        // n: deny, so the caller returns and the prompt goes.
        dash.keys(&["n"]);
        let _ = c.wait();
        let gone = Instant::now() + Duration::from_secs(10);
        while dash
            .capture()
            .contains("A caller is waiting for your answer")
            && Instant::now() < gone
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    drop(dash);
    let p50 = median(&mut samples);
    table.row(
        "13",
        what,
        format!("{p50:.0} ms (p50 of {})", scale.rounds),
        "-".into(),
        "≤ 100 ms",
    );
}

/// Comparison 12 (live approval): the concurrent-clients load of comparison 4 against an
/// embedded broker with an approver attached, without and with 10 requests held for an answer
/// that never comes (unknown callers waiting on the prompt). Embedded, as the dashboard runs it,
/// so this process can be the approver; the callers are real client processes.
fn held_requests_row(scale: &Scale, table: &mut Table) {
    let env = Sandbox::new();
    // Registered before the broker starts: the CLI sends changes only to a broker running
    // keychain-auth itself, and this one runs inside the bench.
    let reader = env.client("reader");
    env.cli_ok(&[
        "register",
        reader.to_str().unwrap_or_default(),
        "--read",
        "bench",
        "--write",
        "bench",
    ]);
    let running = testkit::EmbeddedBroker::start(&env);
    let (broker, rt) = (&running.broker, &running.rt);
    let (_approver, mut prompts) = broker.approvals.attach();
    let write =
        r#"{"type":"REQUEST","action":"write","service":"bench","targets":["k"],"values":["v"]}"#;
    let read = r#"{"type":"REQUEST","action":"read","service":"bench","targets":["k"]}"#;
    client_run(&env, &reader, &["--quiet", write]);
    let clients = scale.concurrent_clients;
    let (_, quiet) = concurrent(&env, &reader, clients, scale.per_client, read);
    // Ten unknown callers, each held (distinct copies, so ten prompts rather than one).
    let held: Vec<Child> = (0..10)
        .map(|i| {
            let c = env.client(&format!("held-{i}"));
            env.command(&c)
                .args(["--quiet", read])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("held client")
        })
        .collect();
    let mut seen = 0;
    rt.block_on(async {
        while seen < 10 {
            match tokio::time::timeout(Duration::from_secs(30), prompts.recv()).await {
                Ok(Some(keychain_auth::server::approval::ApproverEvent::Prompt(_))) => seen += 1,
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    });
    let (errors, busy) = concurrent(&env, &reader, clients, scale.per_client, read);
    let waiting = broker.approvals.pending().len();
    for p in broker.approvals.pending() {
        let _ = broker.approvals.answer(
            &p.id,
            keychain_auth::server::approval::Answer {
                decision: keychain_auth::server::approval::Decision::Deny,
                by: "bench".into(),
            },
        );
    }
    for mut c in held {
        let _ = c.wait();
    }
    drop(running);
    table.row(
        "12",
        &format!("{clients} clients × {} reads, embedded broker with an approver: without vs with 10 held requests", scale.per_client),
        format!(
            "p50 {:.0} µs / p99 {:.0} µs vs p50 {:.0} µs / p99 {:.0} µs ({waiting} held, {errors} errors)",
            percentile(&quiet, 50.0),
            percentile(&quiet, 99.0),
            percentile(&busy, 50.0),
            percentile(&busy, 99.0)
        ),
        format!("{:.2}× p50", percentile(&busy, 50.0) / percentile(&quiet, 50.0).max(0.001)),
        "held requests slow nobody",
    );
}

/// Comparison 8: the first identification of a process — its executables' hashes cached, the
/// process itself never seen, which is what every new caller costs — through
/// `identity::identify` in this process: a `sleep` with no ancestors to walk (orphaned to
/// pid 1) vs one under four nested shells (a 4-hop chain, each link read and its executable's
/// hash found through the cache). Comparison 9: a Python script caller (identity = interpreter
/// + script) doing connect+identify+read against the broker and against the floor server.
fn chain_and_script(env: &Sandbox, floor: &Floor, read: &str, scale: &Scale, table: &mut Table) {
    use keychain_auth::identity::{Context, HashCache, Hashing, identify};
    let script = env.root.join("nest.sh");
    std::fs::write(
        &script,
        "if [ \"$1\" -gt 0 ]; then sh \"$0\" $(($1 - 1)) \"$2\"; exit; fi\nsleep 600 & echo $! > \"$2\"; wait\n",
    )
    .expect("nest.sh");
    let leaf = |depth: usize| -> (Child, i32) {
        let out = env.root.join(format!("leaf-{}", testkit::nonce()));
        let child = if depth == 0 {
            let cmd = format!("sleep 600 & echo $! > {}", out.display());
            Command::new("sh").arg("-c").arg(cmd).spawn()
        } else {
            Command::new("sh")
                .arg(&script)
                .arg(depth.to_string())
                .arg(&out)
                .spawn()
        }
        .expect("sh");
        let pid = testkit::wait_for(10, "leaf pid", || {
            std::fs::read_to_string(&out)
                .ok()?
                .trim()
                .parse::<i32>()
                .ok()
        });
        (child, pid)
    };
    let (cache, ctx, uid) = (
        HashCache::new(),
        Context::current(),
        nix::unistd::geteuid().as_raw(),
    );
    let time = |pid: i32| -> f64 {
        let _ = identify(pid, uid, None, &ctx, &cache, Hashing::Allowed, &[]); // hash once
        let mut samples: Vec<f64> = (0..scale.connects)
            .map(|_| {
                let t = Instant::now();
                let peer = identify(pid, uid, None, &ctx, &cache, Hashing::CachedOnly, &[]);
                let us = t.elapsed().as_secs_f64() * 1e6;
                assert!(matches!(peer, Ok(Some(_))), "{peer:?}");
                us
            })
            .collect();
        median(&mut samples)
    };
    let (mut none, mut four) = (Vec::new(), Vec::new());
    for _ in 0..scale.rounds {
        for (depth, into) in [(0, &mut none), (4, &mut four)] {
            let (mut child, pid) = leaf(depth);
            into.push(time(pid));
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let (a, b) = (median(&mut none), median(&mut four));
    table.row(
        "8",
        "first identification of a process (hashes cached): no ancestors vs a 4-hop caller chain",
        format!("{a:.1} µs vs {b:.1} µs (p50)"),
        format!("{:.2}×", b / a),
        "reported",
    );

    let n = scale.connects.to_string();
    let Some(python) = ["/usr/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        println!("[9] skipped: no /usr/bin/python3");
        return;
    };
    let script = env.root.join("bench_script.py");
    std::fs::write(
        &script,
        format!(
            "#!{python}\nimport os, socket, sys, time, json\nreq = (os.environ['REQ'] + '\\n').encode()\nout = []\nfor _ in range(int(sys.argv[2])):\n    t = time.perf_counter_ns()\n    s = socket.socket(socket.AF_UNIX)\n    s.connect(sys.argv[1])\n    s.sendall(req)\n    s.makefile('rb').readline()\n    s.close()\n    out.append(time.perf_counter_ns() - t)\nout.sort()\nprint(out[len(out) // 2] / 1000)\n"
        ),
    )
    .expect("script");
    testkit::set_mode(&script, 0o755);
    env.cli_ok(&[
        "register",
        script.to_str().unwrap_or_default(),
        "--read",
        "bench",
    ]);
    let run = |socket: &Path| -> f64 {
        let out = env
            .command(python)
            .arg(&script)
            .arg(socket)
            .arg(&n)
            .env("REQ", read)
            .output()
            .expect("python");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(f64::NAN)
    };
    run(&env.socket); // warm the cache (interpreter and script)
    let mut broker = Vec::new();
    let mut fl = Vec::new();
    for _ in 0..scale.rounds {
        broker.push(run(&env.socket));
        fl.push(run(&floor.path));
    }
    let (a, b) = (median(&mut broker), median(&mut fl));
    table.row(
        "9",
        "Python script caller: connect+identify+read, broker vs floor server",
        format!("{a:.1} µs vs {b:.1} µs (p50)"),
        format!("{:.2}×", a / b),
        "reported",
    );
}

/// Comparison 5 on a private bus with an unlocked gnome-keyring: p50 of single reads, the broker
/// side from a separate client process on one persistent connection, the direct side with the
/// broker's own Secret Service store (the same crate) in this process.
fn keyring_row(table: &mut Table, scale: &Scale) {
    let Some(session) = KeyringSandbox::start() else {
        table.row(
            "5",
            "read through the broker on gnome-keyring vs direct read",
            "skipped: gnome-keyring/dbus not installed".into(),
            "-".into(),
            "≤ 1.3×",
        );
        return;
    };
    let daemon = session.sandbox.start();
    assert_eq!(
        daemon.status()["backend"],
        "keyring",
        "the daemon must serve the keyring"
    );
    session.sandbox.register_reference_client(&["bench"]);
    let written = session
        .sandbox
        .send_all(&[serde_json::json!({"type":"REQUEST","action":"write",
        "service":"bench","targets":["k"],"values":["some secret value"]})]);
    assert_eq!(written[0]["status"], "success", "{written:?}");
    let store = session.store();
    let read = r#"{"type":"REQUEST","action":"read","service":"bench","targets":["k"]}"#;
    let n = scale.keyring_reads.to_string();
    let (mut direct, mut broker) = (Vec::new(), Vec::new());
    for _ in 0..scale.rounds {
        let mut samples = Vec::with_capacity(scale.keyring_reads);
        for _ in 0..scale.keyring_reads {
            let t = Instant::now();
            let item = keychain_auth::backend::Backend::get(&store, "bench", "k");
            samples.push(t.elapsed().as_secs_f64() * 1e6);
            assert!(matches!(item, Ok(Some(_))), "direct read failed");
        }
        direct.push(median(&mut samples));
        let out = session
            .sandbox
            .command(CLIENT)
            .args(["--quiet", "--stats", "--repeat", &n, read])
            .output()
            .expect("client");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("stats json");
        let mut samples: Vec<f64> = v["samples_ns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .map(|ns| ns / 1000.0)
            .collect();
        broker.push(median(&mut samples));
    }
    let (b, d) = (median(&mut broker), median(&mut direct));
    table.row(
        "5",
        "one read through the broker on gnome-keyring vs direct read (same crate, in-process)",
        format!("{b:.0} µs vs {d:.0} µs (p50)"),
        format!("{:.2}×", b / d),
        "≤ 1.3×",
    );
}

/// Comparison 6: `keychain-auth tui --embed` in tmux over an audit log of `audit_lines` lines;
/// time from spawning to the first frame on screen and to the audit page shown, and the
/// dashboard's resident memory then (VmRSS and its peak VmHWM). Measured from outside, so the
/// times include tmux's start and the capture polling (≈ 5 ms resolution).
fn dashboard_row(table: &mut Table, scale: &Scale) {
    let what = format!("dashboard over a {}-line audit log", scale.audit_lines);
    if Command::new("tmux").arg("-V").output().is_err() {
        table.row(
            "6",
            &what,
            "skipped: tmux not installed".into(),
            "-".into(),
            "≤ 300 ms, ≤ 64 MB",
        );
        return;
    }
    let env = Sandbox::new();
    let log = env.root.join("data/keychain-auth/audit.log");
    std::fs::create_dir_all(log.parent().expect("dir")).expect("dir");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&log).expect("log"));
        let mut rec = sample_record();
        for i in 0..scale.audit_lines {
            rec.id = Some(i.to_string());
            w.write_all(&rec.to_line()).expect("write");
        }
        w.flush().expect("flush");
    }
    // State files must be 0600 in 0700 directories, or the broker refuses them.
    testkit::set_mode(&log, 0o600);
    testkit::set_mode(log.parent().expect("dir"), 0o700);
    // The log is larger than the default rotation size: keep it whole for this measurement.
    let config = env.config();
    std::fs::create_dir_all(config.parent().expect("dir")).expect("dir");
    testkit::set_mode(config.parent().expect("dir"), 0o700);
    std::fs::write(&config, r#"{"protocol_version":"1","audit_max_bytes":0}"#).expect("config");
    testkit::set_mode(&config, 0o600);
    let size_mb = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) / (1024 * 1024);
    let t0 = Instant::now();
    let dash = Dashboard::start(&env, &["tui", "--embed"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first_frame = None;
    let loaded = loop {
        let screen = dash.capture();
        if first_frame.is_none() && screen.contains("keychain-auth") {
            first_frame = Some(t0.elapsed());
        }
        // 2,000 loaded, plus the embedded broker's own start record when it lands after the
        // first page was read.
        if screen.contains("2000 records") || screen.contains("2001 records") {
            break t0.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "dashboard did not show the audit page:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let status = dash
        .pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .unwrap_or_default();
    let kb = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let (rss, hwm) = (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0);
    dash.keys(&["q"]);
    std::thread::sleep(Duration::from_millis(300));
    drop(dash);
    let first = first_frame.unwrap_or(loaded);
    table.row(
        "6",
        &format!("{what} ({size_mb} MB): first frame, audit page shown, memory"),
        format!(
            "first frame {:.0} ms, 2,000-record page {:.0} ms; RSS {rss:.1} MB (peak {hwm:.1} MB)",
            first.as_secs_f64() * 1000.0,
            loaded.as_secs_f64() * 1000.0
        ),
        "-".into(),
        "≤ 300 ms, ≤ 64 MB",
    );
}

/// Comparison 11: the dashboard's whole-log search (`tui::data::search_backwards`, what the
/// audit filter runs) over an `audit_lines`-line log: time to the first match when the only
/// match is in the middle of the log, and the whole scan (a filter matching nothing).
fn search_row(table: &mut Table, scale: &Scale) {
    use keychain_auth::tui::data::search_backwards;
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("audit.log");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&log).expect("log"));
        let mut rec = sample_record();
        for i in 0..scale.audit_lines {
            rec.id = Some(i.to_string());
            rec.service = Some(
                if i == scale.audit_lines / 2 {
                    "needle-svc"
                } else {
                    "bench"
                }
                .into(),
            );
            w.write_all(&rec.to_line()).expect("write");
        }
        w.flush().expect("flush");
    }
    let size_mb = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) / (1024 * 1024);
    let mut first = Vec::new();
    let mut whole = Vec::new();
    for _ in 0..scale.rounds {
        let t = Instant::now();
        let mut at = None;
        search_backwards(&log, "NEEDLE-svc", |found, _| {
            if !found.is_empty() && at.is_none() {
                at = Some(t.elapsed());
            }
            at.is_none()
        })
        .expect("search");
        first.push(at.expect("the needle is found").as_secs_f64() * 1000.0);
        let t = Instant::now();
        let mut records = 0;
        search_backwards(&log, "no-such-text", |_, p| {
            records = p.records;
            true
        })
        .expect("search");
        assert_eq!(records as usize, scale.audit_lines);
        whole.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (f, w) = (median(&mut first), median(&mut whole));
    table.row(
        "11",
        &format!(
            "audit search over a {}-line log ({size_mb} MB): first match (mid-log) / whole scan",
            scale.audit_lines
        ),
        format!("{f:.0} ms / {w:.0} ms"),
        "-".into(),
        "≤ 1000 ms / ≤ 5000 ms",
    );
}

/// Comparison 7: the chained append (shipped: lock + state read + seq/HMAC + one write + state
/// write) against the unchained `O_APPEND` write it replaced (one `fstat` + one write, the code
/// of the previous release inlined here) and against write + `fdatasync`, interleaved over the
/// rounds. Comparison 10: `audit verify` over a chained log of `audit_lines` records.
fn audit_rows(table: &mut Table, scale: &Scale) {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = Key::from_bytes(&[9u8; 32]);
    let no_rotation = Rotation {
        max_bytes: 0,
        keep: 5,
    };
    let chained = AuditLog::open(
        &dir.path().join("chained/audit.log"),
        KeySource::Fixed(key.clone()),
        no_rotation,
    )
    .expect("audit log");
    let plain_path = dir.path().join("plain.log");
    let plain_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&plain_path)
        .expect("open");
    let rec = sample_record();
    let line = rec.to_line();
    let per_round = (scale.audit_records / scale.rounds).max(1);
    let (mut chained_us, mut plain_us) = (Vec::new(), Vec::new());
    for _ in 0..scale.rounds {
        let t = Instant::now();
        for _ in 0..per_round {
            chained.append(&rec).expect("append");
        }
        chained_us.push(t.elapsed().as_secs_f64() * 1e6 / per_round as f64);
        let t = Instant::now();
        for _ in 0..per_round {
            // The previous release's append: notice an unlinked file, then one write.
            assert!(plain_file.metadata().expect("fstat").nlink() > 0);
            let n = (&plain_file).write(&line).expect("write");
            assert_eq!(n, line.len());
        }
        plain_us.push(t.elapsed().as_secs_f64() * 1e6 / per_round as f64);
    }
    let (chained_us, plain_us) = (median(&mut chained_us), median(&mut plain_us));
    let t = Instant::now();
    for _ in 0..scale.fsync_records {
        (&plain_file).write_all(&line).expect("write");
        plain_file.sync_data().expect("fsync");
    }
    let synced = t.elapsed().as_secs_f64() * 1e6 / scale.fsync_records as f64;
    table.row(
        "7",
        "audit append per record: chained (seq + HMAC-SHA-256, state lock; shipped) vs the unchained O_APPEND write it replaced; write+fdatasync for scale",
        format!("{chained_us:.2} µs vs {plain_us:.2} µs; fdatasync {synced:.0} µs"),
        format!("{:.1}×", chained_us / plain_us),
        "reported",
    );

    // 10: verify a chained log of `audit_lines` records (written by the shipped appender).
    let big = dir.path().join("big/audit.log");
    let writer =
        AuditLog::open(&big, KeySource::Fixed(key.clone()), no_rotation).expect("audit log");
    let mut rec = sample_record();
    for i in 0..scale.audit_lines {
        rec.id = Some(i.to_string());
        writer.append(&rec).expect("append");
    }
    let size_mb = std::fs::metadata(&big).map(|m| m.len()).unwrap_or(0) / (1024 * 1024);
    let mut rates = Vec::new();
    for _ in 0..scale.rounds.min(3) {
        let t = Instant::now();
        let report = verify::verify(&big, &key);
        let secs = t.elapsed().as_secs_f64();
        assert!(report.ok, "{}", report.render());
        assert_eq!(report.records as usize, scale.audit_lines);
        rates.push(report.records as f64 / secs);
    }
    let rate = median(&mut rates);
    table.row(
        "10",
        &format!(
            "`audit verify` over a {}-line ({size_mb} MB) chained log (page cache warm)",
            scale.audit_lines
        ),
        format!(
            "{:.0} records/s ({:.2} s)",
            rate,
            scale.audit_lines as f64 / rate
        ),
        "-".into(),
        "≥ 200,000 records/s",
    );
}

fn sample_record() -> Record {
    let mut rec = Record::new("request", "daemon");
    rec.pid = Some(4242);
    rec.path = Some("/usr/local/bin/mycli".into());
    rec.hash = Some(format!("sha256:{}", "ab".repeat(32)));
    rec.action = Some("read".into());
    rec.service = Some("aws".into());
    rec.mode = Some("exact".into());
    rec.targets = vec!["prod-api-key".into()];
    rec.count = Some(1);
    rec.status = Some("success".into());
    rec
}

/// Figures from one `keychain-auth-client --stats` run.
struct Stats {
    p50_us: f64,
}

#[derive(Default)]
struct Table {
    rows: Vec<[String; 5]>,
}

impl Table {
    fn row(&mut self, n: &str, what: &str, figures: String, ratio: String, target: &str) {
        println!("[{n}] {what}: {figures} → {ratio} (target {target})");
        self.rows
            .push([n.into(), what.into(), figures, ratio, target.into()]);
    }

    fn print(&self) {
        println!();
        println!("| # | comparison | measured | ratio | target |");
        println!("|---|---|---|---|---|");
        for r in &self.rows {
            println!("| {} | {} | {} | {} | {} |", r[0], r[1], r[2], r[3], r[4]);
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

fn median_c(v: &[CStats], f: impl Fn(&CStats) -> f64) -> f64 {
    let mut xs: Vec<f64> = v.iter().map(f).collect();
    median(&mut xs)
}

fn median_of(v: &[Stats], f: impl Fn(&Stats) -> f64) -> f64 {
    let mut xs: Vec<f64> = v.iter().map(f).collect();
    median(&mut xs)
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Runs a client copy with `args`, which must succeed.
fn client_run(env: &Sandbox, client: &Path, args: &[&str]) -> std::process::Output {
    let out = env.command(client).args(args).output().expect("client");
    assert!(
        out.status.success(),
        "client {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One `keychain-auth-client --stats` run: median latency and rate.
fn stats(env: &Sandbox, client: &Path, socket: &Path, args: &[&str]) -> Stats {
    let mut all = vec![
        "--socket",
        socket.to_str().unwrap_or_default(),
        "--quiet",
        "--stats",
    ];
    all.extend_from_slice(args);
    let out = client_run(env, client, &all);
    let v: Value = serde_json::from_slice(&out.stdout).expect("stats json");
    let mut samples: Vec<f64> = v["samples_ns"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_f64)
                .map(|ns| ns / 1000.0)
                .collect()
        })
        .unwrap_or_default();
    Stats {
        p50_us: median(&mut samples),
    }
}

/// `clients` processes started together, each sending `per_client` requests on its own
/// connection; returns the error count and every request's latency in µs.
fn concurrent(
    env: &Sandbox,
    client: &Path,
    clients: usize,
    per_client: usize,
    line: &str,
) -> (usize, Vec<f64>) {
    let n = per_client.to_string();
    let children: Vec<Child> = (0..clients)
        .map(|_| {
            env.command(client)
                .args(["--quiet", "--stats", "--repeat", &n, line])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn client")
        })
        .collect();
    let mut errors = 0;
    let mut samples = Vec::new();
    for c in children {
        let out = c.wait_with_output().expect("wait client");
        match serde_json::from_slice::<Value>(&out.stdout) {
            Ok(v) if out.status.success() => {
                errors += v["errors"].as_u64().unwrap_or(0) as usize;
                samples.extend(
                    v["samples_ns"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_f64)
                        .map(|ns| ns / 1000.0),
                );
            }
            _ => errors += per_client,
        }
    }
    (errors, samples)
}

/// The floor: `benches/floor/floor_server.c`, the fastest trivially correct server — one
/// thread, one `poll` loop, no thread or task per connection — answering every line with the
/// broker's response to the benchmark's read. Compiled here with `cc -O2`.
struct Floor {
    path: PathBuf,
    child: Child,
}

impl Floor {
    fn start(dir: &Path) -> Floor {
        let server = compile_c(dir, "floor_server");
        let path = dir.join("floor.sock");
        let child = Command::new(&server)
            .arg(&path)
            .spawn()
            .expect("start the floor server");
        testkit::wait_for(10, "floor socket", || path.exists().then_some(()));
        Floor { path, child }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The checked floor: `benches/floor/checked_floor_server.c`, the floor plus only the system
/// calls the broker's checks cannot do without (per-message credentials and pidfd, the writer's
/// `exe`, `environ` and `status`, one audit write of `record_bytes`; the caller chain's `stat`s
/// at connect). What the broker costs beyond it is its own code, not the checks' kernel work.
fn checked_floor(dir: &Path, record_bytes: usize) -> Floor {
    let server = compile_c(dir, "checked_floor_server");
    let path = dir.join("checked-floor.sock");
    let child = Command::new(&server)
        .arg(&path)
        .arg(dir.join("checked-floor.log"))
        .arg(record_bytes.to_string())
        .spawn()
        .expect("start the checked floor server");
    testkit::wait_for(10, "checked floor socket", || path.exists().then_some(()));
    Floor { path, child }
}

/// Row 20: each system call of the per-request checks timed alone on CPU 0
/// (`benches/floor/check_costs.c`), against a null system call.
fn check_costs_row(dir: &Path, table: &mut Table) {
    let prog = compile_c(dir, "check_costs");
    let out = Command::new("taskset")
        .arg("-c")
        .arg("0")
        .arg(&prog)
        .arg(dir)
        .output()
        .expect("check_costs");
    assert!(out.status.success(), "check_costs: {out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("check_costs json");
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    table.row(
        "20",
        "the per-request checks' system calls alone, one core: fstatat(exe), pread(environ, 1 byte), pread(status), write(1,600-byte record); a null call for scale",
        format!(
            "{:.2} + {:.2} + {:.2} + {:.2} = {:.2} µs; null {:.2} µs",
            f("exe_fstatat_us"),
            f("environ_pread_us"),
            f("status_pread_us"),
            f("log_write_1600_us"),
            f("sum_us"),
            f("null_syscall_us")
        ),
        String::from("-"),
        "reported",
    );
}

/// Length in bytes of the last line of the audit log at `log` (with its newline).
fn last_record_len(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).expect("audit log");
    text.lines().last().map_or(0, |l| l.len() + 1)
}

/// Pins every thread of process `pid` to `cpus` (a taskset list such as `0` or `0-1`).
fn pin(pid: u32, cpus: &str) {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("taskset (util-linux)");
    assert!(status.success(), "taskset -a -p -c {cpus} {pid}");
}

/// Compiles `benches/floor/NAME.c` into `dir/NAME` with `cc -O2`.
fn compile_c(dir: &Path, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/floor")
        .join(format!("{name}.c"));
    let out = dir.join(name);
    let status = Command::new("cc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("cc (the floor is C compiled by the bench)");
    assert!(status.success(), "cc {}", src.display());
    out
}

/// Figures from one `floor_client` run (`benches/floor/floor_client.c`).
struct CStats {
    p50_us: f64,
    p99_us: f64,
    per_second: f64,
}

/// Runs the C client: `mode` is `reconnect` (connect, write, read, close each time) or
/// `persistent` (one connection), `n` round trips of `line`; every answer must be a success.
fn c_client(
    env: &Sandbox,
    client: &Path,
    socket: &Path,
    mode: &str,
    n: usize,
    line: &str,
    cpu: Option<usize>,
) -> CStats {
    let mut cmd = match cpu {
        Some(cpu) => {
            let mut c = env.command("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(client);
            c
        }
        None => env.command(client),
    };
    let out = cmd
        .arg(socket)
        .arg(mode)
        .arg(n.to_string())
        .arg(line)
        .output()
        .expect("floor_client");
    assert!(
        out.status.success(),
        "floor_client {mode} against {}: {}{}",
        socket.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("floor_client json");
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    CStats {
        p50_us: f("p50_us"),
        p99_us: f("p99_us"),
        per_second: f("per_second"),
    }
}
