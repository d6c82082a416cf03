//! "Which script read this?": `keychain-auth audit` names a script caller by its script (not
//! by the interpreter running it), and `--binary` finds its requests by the script's name or
//! hash.

use testkit::{Sandbox, daemon_bin, write_executable};

#[test]
fn audit_table_and_binary_filter_name_the_script() {
    let env = Sandbox::new();
    let _d = env.start();
    let writer = env.registered_client("writer", &["--write", "weather"]);
    env.write_ok(&writer, "weather", &[("api-key", "v")]);
    let dir = env.root.join("scripts");
    std::fs::create_dir_all(&dir).expect("dir");
    let script = dir.join("forecast.sh");
    write_executable(
        &script,
        format!("#!/bin/bash\n'{}' get weather api-key\n", daemon_bin()).as_bytes(),
    );
    env.register(&script, &["--read", "weather"]);
    let out = env.command(&script).output().expect("script");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = env.registered()[1]["hash"]
        .as_str()
        .expect("script hash")
        .to_string();
    let short = &hash["sha256:".len()..][..8];

    // By name: the request is found (not only the policy change that registered it).
    let table = env.cli_ok(&["audit", "--binary", "forecast"]);
    let read = table
        .lines()
        .find(|l| l.contains(" read ") || l.contains("read "))
        .unwrap_or_else(|| panic!("no read row: {table}"));
    assert!(read.contains(&format!("forecast.sh {short}")), "{read}");
    assert!(!read.contains("bash "), "named by the interpreter: {read}");
    let json = env.cli_ok(&[
        "audit", "--binary", "forecast", "--action", "read", "--json",
    ]);
    assert_eq!(json.lines().count(), 1, "{json}");
    assert!(json.contains("\"status\":\"success\""), "{json}");
    // By the script's hash prefix.
    let json = env.cli_ok(&["audit", "--binary", short, "--action", "read", "--json"]);
    assert_eq!(json.lines().count(), 1, "{json}");
    // Another script's name finds nothing.
    let json = env.cli_ok(&["audit", "--binary", "deploy", "--action", "read", "--json"]);
    assert!(json.trim().is_empty(), "{json}");
}
