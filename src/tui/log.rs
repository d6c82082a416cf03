//! The dashboard's log sink: a `tracing` layer that turns every log event of the embedded
//! broker (and the rest of the process) into an [`Action::Log`] for the message line, so nothing
//! writes to stderr over the screen.

use super::action::Action;
use std::fmt::Write as _;
use std::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// Forwards events at `INFO` and above to the dashboard's action channel.
pub struct MessageLine {
    tx: mpsc::Sender<Action>,
}

impl MessageLine {
    /// A layer sending to `tx`.
    pub fn new(tx: mpsc::Sender<Action>) -> MessageLine {
        MessageLine { tx }
    }
}

/// Collects an event's message and other fields into one line.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

/// The text the message line shows for an event's message: without the `keychain-auth: `
/// prefix the daemon's stderr lines carry.
pub fn message_text(raw: &str) -> String {
    raw.strip_prefix("keychain-auth: ")
        .unwrap_or(raw)
        .to_string()
}

impl<S: Subscriber> Layer<S> for MessageLine {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::INFO {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        let _ = self
            .tx
            .send(Action::Log(level <= Level::WARN, message_text(&text.0)));
    }
}

/// Makes [`MessageLine`] the process's log sink (once; later calls change nothing).
pub fn install(tx: mpsc::Sender<Action>) {
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(MessageLine::new(tx));
    let _ = tracing::subscriber::set_global_default(subscriber);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn events_become_message_line_actions() {
        let (tx, rx) = mpsc::channel();
        let subscriber = tracing_subscriber::registry().with(MessageLine::new(tx));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("keychain-auth: accept failed: too many open files; retrying in 5ms");
            tracing::info!("keychain-auth: stopped");
            tracing::debug!("not shown");
        });
        let got: Vec<Action> = rx.try_iter().collect();
        assert_eq!(
            got,
            vec![
                Action::Log(
                    true,
                    "accept failed: too many open files; retrying in 5ms".into()
                ),
                Action::Log(false, "stopped".into()),
            ]
        );
    }
}
