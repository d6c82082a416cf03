//! The dashboard as an approver (live approval): attached to the embedded broker's
//! [`crate::server::approval::Approvals`], or subscribed over the socket to a connected one
//! (`{"type":"SUBSCRIBE"}`, resubscribed after the broker restarts). Prompts and resolutions
//! come back to the reducer as [`Action::Approver`]; answers go out through [`Approver::answer`].

use super::action::Action;
use super::broker::Broker;
use crate::protocol::AnswerLine;
use crate::server::approval::{Answer, ApproverEvent, Decision, SubscriptionLine};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Who the embedded dashboard answers as (over the socket, the broker names the peer itself).
const BY: &str = "dashboard";

/// The approver side of the dashboard.
pub enum Approver {
    /// Attached in-process.
    Embedded {
        /// The broker's shared state.
        broker: Arc<crate::server::Broker>,
        /// This approver's id, for detaching.
        id: u64,
    },
    /// Subscribed over the socket: where answers are written (none while disconnected).
    Connected(Arc<Mutex<Option<UnixStream>>>),
}

impl Approver {
    /// Attaches to `broker` and forwards its events to `tx` from a background thread.
    pub fn start(broker: &Broker, tx: mpsc::Sender<Action>) -> Approver {
        match broker {
            Broker::Embedded { state, .. } => {
                let (id, mut events) = state.approvals.attach();
                std::thread::spawn(move || {
                    while let Some(ev) = events.blocking_recv() {
                        if tx.send(Action::Approver(ev)).is_err() {
                            return;
                        }
                    }
                    // Detached on quitting (then nobody reads this), or dropped for falling
                    // behind the broker's prompts.
                    let _ = tx.send(Action::Log(
                        true,
                        "approver: this dashboard fell too far behind the broker's prompts and no longer receives them; restart it".into(),
                    ));
                });
                Approver::Embedded {
                    broker: state.clone(),
                    id,
                }
            }
            Broker::Connected { socket } => {
                let writer = Arc::new(Mutex::new(None));
                let (socket, w) = (socket.clone(), writer.clone());
                std::thread::spawn(move || subscribe_loop(&socket, &w, &tx));
                Approver::Connected(writer)
            }
        }
    }

    /// Sends an answer. Embedded: decided at once (`Err` when the prompt is already gone);
    /// connected: written to the subscription, whose `ANSWERED` line reports a failure.
    pub fn answer(&self, id: &str, decision: Decision) -> Result<(), String> {
        match self {
            Approver::Embedded { broker, .. } => broker
                .approvals
                .answer(
                    id,
                    Answer {
                        decision,
                        by: BY.into(),
                    },
                )
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Approver::Connected(writer) => {
                let mut guard = writer
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let Some(stream) = guard.as_mut() else {
                    return Err("not connected to the broker: the answer was not sent".into());
                };
                let line = AnswerLine {
                    prompt: id.to_string(),
                    decision: decision.to_answer(),
                }
                .to_line();
                stream
                    .write_all(&line)
                    .map_err(|e| format!("cannot send the answer to the broker: {e}"))
            }
        }
    }

    /// Detaches (embedded); a subscription ends with the process.
    pub fn stop(&self) {
        if let Approver::Embedded { broker, id } = self {
            broker.approvals.detach(*id);
        }
    }
}

/// One line from the subscription, as an action (`None`: nothing to tell the reducer).
pub fn parse_line(line: &str) -> Option<Action> {
    match serde_json::from_str::<SubscriptionLine>(line) {
        Ok(SubscriptionLine::Prompt(p)) => Some(Action::Approver(ApproverEvent::Prompt(p))),
        Ok(SubscriptionLine::Resolved {
            prompt_id,
            outcome,
            by,
        }) => Some(Action::Approver(ApproverEvent::Resolved {
            id: prompt_id,
            outcome,
            by,
        })),
        Ok(SubscriptionLine::Answered { error, .. }) => {
            error.map(|e| Action::Done(false, format!("the answer was not taken: {e}")))
        }
        // An error line (the broker refused something of ours) or a line of a newer broker.
        Err(_) => Some(Action::Log(
            true,
            format!("approver: {}", crate::display::bounded(line, 200)),
        )),
        // Fell behind the broker's prompts (this dashboard was stopped or too slow): the
        // connection closes and is subscribed again.
        Ok(SubscriptionLine::Dropped { message }) => Some(Action::Log(
            true,
            format!("approver: {}", crate::display::bounded(&message, 200)),
        )),
    }
}

/// Subscribes, forwards lines, and subscribes again (every second) after the connection ends.
fn subscribe_loop(
    socket: &std::path::Path,
    writer: &Mutex<Option<UnixStream>>,
    tx: &mpsc::Sender<Action>,
) {
    let mut refusal_said = false;
    loop {
        let mut pause = Duration::from_secs(1);
        if let Ok(mut stream) = UnixStream::connect(socket)
            && stream.write_all(b"{\"type\":\"SUBSCRIBE\"}\n").is_ok()
            && let Ok(reader) = stream.try_clone()
        {
            *writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(stream);
            let mut subscribed = false;
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if !subscribed {
                    subscribed = line.contains("\"SUBSCRIBED\"");
                    if !subscribed {
                        // Said once; asked again now and then (the broker may be replaced).
                        if !refusal_said {
                            refusal_said = true;
                            let _ = tx.send(Action::Log(
                                true,
                                format!(
                                    "the broker refused the prompt subscription (no prompts here): {}",
                                    crate::display::bounded(&line, 200)
                                ),
                            ));
                        }
                        pause = Duration::from_secs(10);
                        break;
                    }
                    refusal_said = false;
                    continue;
                }
                if let Some(a) = parse_line(&line)
                    && tx.send(a).is_err()
                {
                    return;
                }
            }
            *writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            if tx.send(Action::ApproverLost).is_err() {
                return;
            }
        }
        std::thread::sleep(pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the dashboard writes is what the daemon's validation reads back, field for field:
    /// launch rules and terms included (a connected "always" once lost them).
    #[test]
    fn answers_round_trip_through_the_daemons_validation() {
        let expires = chrono::DateTime::from_timestamp_millis(1_900_000_000_000).expect("time");
        let decisions = [
            Decision::Once,
            Decision::For(Duration::from_secs(600)),
            Decision::Always(crate::admin::Grants {
                read: vec!["aws".into()],
                write: vec!["git".into()],
                search: true,
                via: vec!["a".repeat(64)],
                terms: crate::policy::GrantTerms {
                    expires_at: Some(expires),
                    uses_left: Some(1),
                    confirm: true,
                },
                ..Default::default()
            }),
            Decision::Always(crate::admin::Grants::default()),
            Decision::Deny,
            Decision::Forget,
        ];
        for d in decisions {
            let line = AnswerLine {
                prompt: "p3".into(),
                decision: d.to_answer(),
            }
            .to_line();
            let text = std::str::from_utf8(&line).expect("utf-8");
            match crate::protocol::parse_line(text.trim_end().as_bytes()) {
                Ok(crate::protocol::Incoming::Answer(a)) => {
                    assert_eq!(a.prompt, "p3");
                    assert_eq!(Decision::from_answer(a.decision), d, "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn subscription_lines_become_actions() {
        let a = parse_line(r#"{"type":"RESOLVED","prompt_id":"p1","outcome":"timeout","by":null}"#);
        assert_eq!(
            a,
            Some(Action::Approver(ApproverEvent::Resolved {
                id: "p1".into(),
                outcome: "timeout".into(),
                by: None
            }))
        );
        let line = r#"{"type":"PROMPT","id":"p2","path":"/bin/x","hash":"h","pid":5,"argv":["x"],"chain":[],"registered":false,"action":"read","service":"aws","match":"exact","targets":["k"],"reason":"unregistered_binary","message":"m","deadline_ms":1,"waiting":1}"#;
        match parse_line(line) {
            Some(Action::Approver(ApproverEvent::Prompt(p))) => {
                assert_eq!((p.id.as_str(), p.mode.as_str()), ("p2", "exact"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_line(r#"{"type":"ANSWERED","prompt_id":"p2"}"#), None);
        assert!(matches!(
            parse_line(r#"{"type":"ANSWERED","prompt_id":"p2","error":"gone"}"#),
            Some(Action::Done(false, _))
        ));
    }
}
