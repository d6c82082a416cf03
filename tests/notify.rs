//! Desktop notification of a new pending caller (issue 11), against a real private D-Bus
//! session bus with an `org.freedesktop.Notifications` implementation of the test's own.

mod common;

use common::{TestEnv, expect, request};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fake notification service received: (app, summary, body).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

struct FakeNotifications {
    seen: Seen,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl FakeNotifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        _hints: std::collections::HashMap<String, zbus::zvariant::OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        self.seen.lock().unwrap().push((app_name, summary, body));
        1
    }
}

struct Bus(Child, String);

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn private_bus(env: &TestEnv) -> Option<Bus> {
    let conf = env.root.join("bus.conf");
    std::fs::write(
        &conf,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>"#,
            env.root.join("bus").display()
        ),
    )
    .unwrap();
    let spawned = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", conf.display()))
        .args(["--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs dbus-daemon: {e}"
            );
            eprintln!("SKIPPED: no dbus-daemon ({e})");
            return None;
        }
    };
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Some(Bus(child, line.trim().to_string()))
}

#[test]
fn a_new_pending_caller_raises_one_notification_naming_it_and_the_review_command() {
    let mut env = TestEnv::new();
    let Some(bus) = private_bus(&env) else { return };
    let seen: Seen = Arc::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _service = rt
        .block_on(async {
            zbus::connection::Builder::address(bus.1.as_str())?
                .name("org.freedesktop.Notifications")?
                .serve_at(
                    "/org/freedesktop/Notifications",
                    FakeNotifications { seen: seen.clone() },
                )?
                .build()
                .await
        })
        .unwrap();
    env.extra_env
        .push(("DBUS_SESSION_BUS_ADDRESS".into(), bus.1.clone()));
    let _d = env.start();
    let stranger = env.client("stranger");
    let read = request("read", "aws", &["k"]);
    expect(
        &env.run_client(&stranger, &[&read])[0],
        "denied",
        Some("unregistered_binary"),
    );
    common::wait_for(10, "a notification", || {
        (!seen.lock().unwrap().is_empty()).then_some(())
    });
    // A repeat of the same caller does not notify again.
    expect(
        &env.run_client(&stranger, &[&read])[0],
        "denied",
        Some("unregistered_binary"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (app, summary, body) = &seen[0];
    assert_eq!(app, "keychain-auth");
    assert!(summary.contains("unknown program"), "{summary}");
    assert!(body.contains(stranger.to_str().unwrap()), "{body}");
    assert!(body.contains("keychain-auth list-pending"), "{body}");
}

#[test]
fn without_a_session_bus_refusals_are_unchanged() {
    let mut env = TestEnv::new();
    env.extra_env.push((
        "DBUS_SESSION_BUS_ADDRESS".into(),
        format!("unix:path={}", env.root.join("no-bus").display()),
    ));
    let _d = env.start();
    let stranger = env.client("stranger");
    let t = std::time::Instant::now();
    expect(
        &env.run_client(&stranger, &[&request("read", "aws", &["k"])])[0],
        "denied",
        Some("unregistered_binary"),
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the refusal did not wait for the bus"
    );
}
