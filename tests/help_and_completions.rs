//! Every program answers `--help` and `--version` itself (the adapters and the reference client
//! without a broker, without sending anything), and `keychain-auth completions` / `man` are
//! generated from the command-line definition: the bash script completes the real commands, the
//! roff page renders without a warning.

use std::process::Output;
use testkit::Sandbox;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// (binary, the name its version line starts with)
fn programs() -> [(&'static str, &'static str); 4] {
    [
        (
            env!("CARGO_BIN_EXE_git-credential-keychain-auth"),
            "git-credential-keychain-auth",
        ),
        (env!("CARGO_BIN_EXE_keychain-auth-aws"), "keychain-auth-aws"),
        (
            env!("CARGO_BIN_EXE_docker-credential-keychain-auth"),
            "docker-credential-keychain-auth",
        ),
        (
            env!("CARGO_BIN_EXE_keychain-auth-client"),
            "keychain-auth-client",
        ),
    ]
}

fn run(env: &Sandbox, program: &str, args: &[&str]) -> Output {
    env.command(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run")
}

#[test]
fn adapters_and_the_client_answer_help_and_version_without_a_broker() {
    // No daemon runs in this sandbox: anything that tried to reach one would fail.
    let env = Sandbox::new();
    for (program, name) in programs() {
        for flag in ["--version", "-V"] {
            if name == "docker-credential-keychain-auth" && flag == "-V" {
                continue; // docker-credential-helpers use -v (tested below)
            }
            let out = run(&env, program, &[flag]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{name} {flag}: {out:?}");
            assert_eq!(stdout.lines().count(), 1, "{name} {flag}: {stdout}");
            assert!(
                stdout.starts_with(name) && stdout.trim_end().ends_with(VERSION),
                "{name} {flag}: {stdout}"
            );
            assert!(out.stderr.is_empty(), "{name} {flag}: {out:?}");
        }
        for flag in ["--help", "-h"] {
            let out = run(&env, program, &[flag]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{name} {flag}: {out:?}");
            assert!(
                stdout.to_lowercase().starts_with("usage: ") && stdout.contains(name),
                "{name} {flag}: {stdout}"
            );
            assert!(stdout.contains("--version"), "{name} {flag}: {stdout}");
            assert!(out.stderr.is_empty(), "{name} {flag}: {out:?}");
        }
    }
    let out = run(
        &env,
        env!("CARGO_BIN_EXE_docker-credential-keychain-auth"),
        &["-v"],
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(VERSION));
    // Without a broker, an actual request still fails as before (exit 2 for the client).
    let out = run(
        &env,
        env!("CARGO_BIN_EXE_keychain-auth-client"),
        &[r#"{"type":"STATUS"}"#],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn bash_completion_completes_the_real_commands_and_flags() {
    let env = Sandbox::new();
    let script = env.cli_ok(&["completions", "bash"]);
    let file = env.root.join("keychain-auth.bash");
    std::fs::write(&file, &script).expect("script");
    // Complete `keychain-auth ins` and `keychain-auth audit --st` the way bash does at a prompt.
    let complete = |words: &str, cword: usize| -> String {
        let out = env
            .command("bash")
            .arg("-c")
            .arg(format!(
                r#"source "$0"; f=$(complete -p keychain-auth | sed -E 's/.*-F ([^ ]+).*/\1/'); COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE="{words}"; COMP_POINT=${{#COMP_LINE}}; "$f" keychain-auth "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"; printf '%s\n' "${{COMPREPLY[@]}}""#
            ))
            .arg(&file)
            .output()
            .expect("bash");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let got = complete("keychain-auth ins", 1);
    assert_eq!(got.trim(), "install", "{got}");
    let got = complete("keychain-auth un", 1);
    let mut words: Vec<&str> = got.split_whitespace().collect();
    words.sort_unstable();
    assert_eq!(words, ["uninstall", "unregister"], "{got}");
    let got = complete("keychain-auth audit --st", 2);
    assert_eq!(got.trim(), "--status", "{got}");
    let got = complete("keychain-auth grant x --re", 3);
    assert_eq!(got.trim(), "--read", "{got}");
    let got = complete("keychain-auth completions ''", 2);
    let mut words: Vec<&str> = got
        .split_whitespace()
        .filter(|w| !w.starts_with('-'))
        .collect();
    words.sort_unstable();
    assert_eq!(words, ["bash", "fish", "zsh"], "{got}");
}

#[test]
fn zsh_and_fish_scripts_name_every_command() {
    let env = Sandbox::new();
    let zsh = env.cli_ok(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef keychain-auth"), "{zsh}");
    let fish = env.cli_ok(&["completions", "fish"]);
    for cmd in [
        "start",
        "tui",
        "approve",
        "register",
        "install",
        "uninstall",
        "completions",
        "man",
        "audit",
    ] {
        assert!(zsh.contains(&format!("'{cmd}:")), "zsh lacks {cmd}");
        assert!(
            fish.contains(&format!("-a \"{cmd}\"")),
            "fish lacks {cmd}: {fish}"
        );
    }
    let err = env.cli_err(&["completions", "powershell"]);
    assert!(err.contains("powershell"), "{err}");
}

#[test]
fn the_man_page_is_valid_roff_and_documents_the_commands() {
    if !testkit::tools_available(&["groff"], "groff-base") {
        return;
    }
    let env = Sandbox::new();
    let page = env.cli_ok(&["man"]);
    assert!(
        page.contains(&format!(".TH keychain-auth 1  \"keychain-auth {VERSION}\"")),
        "{page}"
    );
    assert!(page.contains("keychain\\-auth\\-install(1)"), "{page}");
    let dir = env.root.join("man1");
    let said = env.cli_ok(&["man", "--dir", dir.to_str().expect("utf8")]);
    assert!(said.contains("wrote the manual pages"), "{said}");
    for name in [
        "keychain-auth.1",
        "keychain-auth-install.1",
        "keychain-auth-audit-verify.1",
        "keychain-auth-grant.1",
    ] {
        let file = dir.join(name);
        let out = env
            .command("groff")
            // -k: the UTF-8 input through preconv, as man(1) does.
            .args(["-k", "-man", "-Tutf8", "-ww", "-P-cbou"])
            .arg(&file)
            .output()
            .expect("groff");
        assert!(out.status.success(), "{name}: {out:?}");
        assert!(
            out.stderr.is_empty(),
            "{name}: groff warned: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("SYNOPSIS"), "{name}: {text}");
    }
    let grant = std::fs::read_to_string(dir.join("keychain-auth-grant.1")).expect("grant page");
    assert!(grant.contains("\\-\\-read"), "{grant}");
}
