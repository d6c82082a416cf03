//! A writer's pid reused on the same connection: the process that now has the pid is identified
//! afresh, never served as the approved writer that had it.
//!
//! The broker remembers each writer of a connection by pid and, for a request of a remembered
//! writer, trusts its watch (reads through the writer's own `/proc` entry and address space)
//! instead of polling its pidfd. This attacks that: an approved script writes a request on a
//! connection its parent holds and exits; then the parent steers the kernel's next pid
//! (`/proc/sys/kernel/ns_last_pid`, root) so that an unapproved script gets the very same pid,
//! and it writes on the same connection.

use std::io::Write;
use testkit::{Sandbox, write_executable};

/// The conduit: holds one connection, runs the approved script on it, then tries up to 200
/// times to give the dead writer's pid to the unapproved one, which writes on it. Prints
/// `approved: <answer>`, then `reused <pid>: <answer>` (`no reuse` when the pid could not be
/// had, `cannot steer …` when `ns_last_pid` cannot be written here).
const CONDUIT: &str = r#"
import os, socket, subprocess, sys
sock, approved, other = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock)
fd = s.fileno()
os.set_inheritable(fd, True)
env = dict(os.environ, KA_FD=str(fd))
a = subprocess.Popen([approved], pass_fds=[fd], env=env, stdout=subprocess.PIPE, text=True)
print("approved:", a.communicate()[0].strip(), flush=True)
for _ in range(200):
    try:
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(a.pid - 1))
    except OSError as e:
        print("cannot steer the next pid:", e, flush=True)
        sys.exit(0)
    b = subprocess.Popen([other], pass_fds=[fd], env=env, stdout=subprocess.PIPE, text=True)
    if b.pid == a.pid:
        print("reused %d:" % b.pid, b.communicate()[0].strip(), flush=True)
        break
    b.kill()
    b.wait()
else:
    print("no reuse", flush=True)
"#;

/// A bash script that writes one read request on the inherited connection and prints the
/// answer line. `$1`-free, so the two scripts differ only in a comment (their hashes differ).
fn script(tag: &str) -> String {
    format!(
        "#!/bin/bash\n# {tag}\nprintf '%s\\n' '{{\"type\":\"REQUEST\",\"action\":\"read\",\"service\":\"pidsvc\",\"targets\":[\"k\"]}}' >&$KA_FD\nIFS= read -r line <&$KA_FD\nprintf '%s\\n' \"$line\"\n"
    )
}

#[test]
fn a_process_that_gets_an_exited_writers_pid_on_its_connection_is_not_served_as_it() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to steer the next pid (/proc/sys/kernel/ns_last_pid)");
        return;
    }
    let py = "/usr/bin/python3";
    if !std::path::Path::new(py).exists() {
        eprintln!("SKIPPED: needs {py} for the conduit");
        return;
    }
    let env = Sandbox::new();
    let _daemon = env.start();
    let writer = env.registered_client("writer", &["--write", "pidsvc"]);
    env.write_ok(&writer, "pidsvc", &[("k", "the secret")]);
    let dir = env.root.join("scripts");
    std::fs::create_dir_all(&dir).expect("dir");
    let (approved, other) = (dir.join("approved.sh"), dir.join("other.sh"));
    write_executable(&approved, script("approved").as_bytes());
    write_executable(&other, script("not approved").as_bytes());
    env.register(&approved, &["--read", "pidsvc"]);
    let conduit = dir.join("conduit.py");
    std::fs::File::create(&conduit)
        .and_then(|mut f| f.write_all(CONDUIT.as_bytes()))
        .expect("conduit");

    let out = env
        .command(py)
        .arg(&conduit)
        .arg(&env.socket)
        .arg(&approved)
        .arg(&other)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("approved:") && first.contains("\"status\":\"success\""),
        "the approved script is served on the connection: {text}"
    );
    assert!(first.contains("the secret"), "{text}");
    let second = text
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("no second line: {text}"));
    if second.starts_with("cannot steer") {
        eprintln!("SKIPPED: {second}");
        return;
    }
    assert!(
        second.starts_with("reused "),
        "the unapproved script never got the exited writer's pid (the machine is forking too fast to steer it): {text}"
    );
    assert!(
        second.contains("\"status\":\"denied\"") && !second.contains("the secret"),
        "the process that reused the pid is answered as itself (unapproved), not as the approved writer: {text}"
    );
    // The audit log names the other script, refused, with that pid.
    let pid = second
        .trim_start_matches("reused ")
        .split(':')
        .next()
        .expect("pid");
    let log = env.cli_ok(&["audit", "--json", "--binary", "other.sh"]);
    assert!(
        log.lines()
            .any(|l| l.contains("\"status\":\"denied\"") && l.contains(&format!("\"pid\":{pid}"))),
        "{log}"
    );
}
