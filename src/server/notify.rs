//! Desktop notifications (SPEC §11): with no dashboard attached, a caller new to the pending
//! queue raises a notification through the freedesktop Notifications interface on the session
//! bus, naming the caller and the command that reviews it. Fire and forget: no bus, no
//! notification service or a slow one (2 s) means no notification, never a delay or an error
//! for the caller.

use std::collections::HashMap;
use std::time::Duration;

/// Notifies, in the background, that `path` was refused asking to `action` in `service`.
pub fn new_caller(path: &str, action: &str, service: &str) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let summary = "keychain-auth: an unknown program asked for a secret".to_string();
    let body = format!(
        "{} asked to {} \"{}\" and was refused. Review it with `keychain-auth tui` or `keychain-auth list-pending`.",
        crate::display::clean(path),
        crate::display::clean(action),
        crate::display::clean(service)
    );
    rt.spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(2), send(summary, body)).await;
    });
}

async fn send(summary: String, body: String) -> zbus::Result<()> {
    let conn = zbus::Connection::session().await?;
    let hints: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
    conn.call_method(
        Some("org.freedesktop.Notifications"),
        "/org/freedesktop/Notifications",
        Some("org.freedesktop.Notifications"),
        "Notify",
        &(
            "keychain-auth",
            0u32,
            "dialog-password",
            summary.as_str(),
            body.as_str(),
            Vec::<&str>::new(),
            hints,
            -1i32,
        ),
    )
    .await?;
    Ok(())
}
