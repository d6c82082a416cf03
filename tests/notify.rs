//! Desktop notification of a new pending caller (issue 11), against a real private D-Bus
//! session bus with an `org.freedesktop.Notifications` implementation of the test's own.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::{Bus, Sandbox, expect, request};

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

#[test]
fn a_new_pending_caller_raises_one_notification_naming_it_and_the_review_command() {
    let mut env = Sandbox::new();
    if !testkit::tools_available(&["dbus-daemon"], "dbus") {
        return;
    }
    let bus = Bus::start(&env);
    let seen: Seen = Arc::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _service = rt
        .block_on(async {
            zbus::connection::Builder::address(bus.address.as_str())?
                .name("org.freedesktop.Notifications")?
                .serve_at(
                    "/org/freedesktop/Notifications",
                    FakeNotifications { seen: seen.clone() },
                )?
                .build()
                .await
        })
        .unwrap();
    env.extra_env.extend(bus.env());
    let _d = env.start();
    let stranger = env.client("stranger");
    let read = request("read", "aws", &["k"]);
    expect(
        &env.run_client(&stranger, &[&read])[0],
        "denied",
        Some("unregistered_binary"),
    );
    testkit::wait_for(10, "a notification", || {
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
    let mut env = Sandbox::new();
    env.extra_env.push((
        "DBUS_SESSION_BUS_ADDRESS".into(),
        format!("unix:path={}", env.root.join("no-bus").display()).into(),
    ));
    let _d = env.start();
    let stranger = env.client("stranger");
    // The notification is sent in the background (bounded at 2 s there); the caller's answer
    // never waits for it. No bus: the refusal and the pending entry are as without the feature.
    expect(
        &env.run_client(&stranger, &[&request("read", "aws", &["k"])])[0],
        "denied",
        Some("unregistered_binary"),
    );
    let pending = env.pending_entries();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(
        pending[0]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("stranger")),
        "{pending:?}"
    );
}
