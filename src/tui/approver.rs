//! The dashboard as an approver (live approval): attached to the embedded broker's
//! [`crate::server::approval::Approvals`], or subscribed over the socket to a connected one
//! (`{"type":"SUBSCRIBE"}`, resubscribed after the broker restarts). Prompts and resolutions
//! come back to the reducer as [`Action::Approver`]; answers go out through [`Approver::answer`].

use super::action::{Action, PassOutcome};
use super::broker::Broker;
use super::state::Secret;
use crate::protocol::{AnswerLine, Passphrase};
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
        /// This approver's id once attached (while a vault is served: once presence is proven).
        id: Mutex<Option<u64>>,
        /// Where its events go.
        tx: mpsc::Sender<Action>,
    },
    /// Subscribed over the socket: where answers are written (none while disconnected).
    Connected(Arc<Mutex<Option<UnixStream>>>),
}

/// What an embedded dashboard's process is called in the audit log's vault records.
fn own_pid() -> i32 {
    i32::try_from(std::process::id()).unwrap_or(0)
}

impl Approver {
    /// Attaches to `broker` and forwards its events to `tx` from a background thread. While
    /// the broker serves a vault, the embedded dashboard attaches only once presence is proven
    /// ([`Approver::prove`]); the reducer is told to ask for it — unless `proven` (the vault was
    /// just created here, its passphrase typed twice).
    pub fn start(broker: &Broker, tx: mpsc::Sender<Action>, proven: bool) -> Approver {
        match broker {
            Broker::Embedded { state, .. } => {
                let a = Approver::Embedded {
                    broker: state.clone(),
                    id: Mutex::new(None),
                    tx: tx.clone(),
                };
                if crate::server::presence::required(state) && !proven {
                    let _ = tx.send(Action::PresenceNeeded {
                        locked: crate::server::presence::locked(state),
                    });
                } else {
                    a.attach();
                }
                a
            }
            Broker::Connected { socket } => {
                let writer = Arc::new(Mutex::new(None));
                let (socket, w) = (socket.clone(), writer.clone());
                std::thread::spawn(move || subscribe_loop(&socket, &w, &tx));
                Approver::Connected(writer)
            }
        }
    }

    /// Embedded: attaches to the prompts (once) and forwards them from a thread.
    fn attach(&self) {
        let Approver::Embedded { broker, id, tx } = self else {
            return;
        };
        let mut id = id.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if id.is_some() {
            return;
        }
        let (new, mut events) = broker.approvals.attach();
        *id = Some(new);
        let tx = tx.clone();
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
    }

    /// Embedded: whether it is attached (presence proven, or no vault).
    fn attached(&self) -> bool {
        match self {
            Approver::Embedded { id, .. } => id
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_some(),
            Approver::Connected(_) => true,
        }
    }

    /// Proves presence with `passphrase` (and unlocks a locked vault with it). Embedded: checked
    /// here, by the broker's own code, and the result returned; connected: sent as a
    /// `PRESENCE` line, whose reply comes back on the subscription (`None` here).
    pub fn prove(&self, passphrase: &Secret) -> Option<Action> {
        match self {
            Approver::Embedded { broker, .. } => Some(Action::Passphrase(
                match crate::server::presence::prove(
                    broker,
                    passphrase.expose().as_bytes(),
                    own_pid(),
                    "the embedded dashboard's presence",
                ) {
                    Ok(()) => {
                        self.attach();
                        PassOutcome::Accepted(String::new())
                    }
                    Err(e) => PassOutcome::of_error(e),
                },
            )),
            Approver::Connected(writer) => {
                // Built without an intermediate JSON value, so every copy is wiped.
                let quoted = zeroize::Zeroizing::new(
                    serde_json::to_string(passphrase.expose()).unwrap_or_default(),
                );
                let mut line = zeroize::Zeroizing::new(Vec::with_capacity(quoted.len() + 40));
                line.extend_from_slice(br#"{"type":"PRESENCE","passphrase":"#);
                line.extend_from_slice(quoted.as_bytes());
                line.extend_from_slice(b"}\n");
                match write_line(writer, &line) {
                    Ok(()) => None,
                    Err(e) => Some(Action::Passphrase(PassOutcome::Failed(e))),
                }
            }
        }
    }

    /// Sends an answer, with the passphrase when it widens access while a vault is served.
    /// Embedded: decided at once (`Err` when the prompt is already gone, presence was not
    /// proven, or the passphrase is wrong or missing); connected: written to the subscription,
    /// whose `ANSWERED` line reports a failure.
    pub fn answer(
        &self,
        id: &str,
        decision: Decision,
        passphrase: Option<&Secret>,
    ) -> Result<(), String> {
        match self {
            Approver::Embedded { broker, .. } => {
                if crate::server::presence::required(broker) {
                    if !self.attached() {
                        return Err(
                            "this dashboard has not proven presence (P): nothing was decided"
                                .into(),
                        );
                    }
                    if matches!(decision, Decision::For(_) | Decision::Always(_)) {
                        let Some(p) = passphrase else {
                            return Err("an answer that widens access needs the vault passphrase: nothing was decided".into());
                        };
                        crate::server::presence::prove(
                            broker,
                            p.expose().as_bytes(),
                            own_pid(),
                            &format!("the embedded dashboard's \"{}\" answer", decision.as_str()),
                        )
                        .map_err(|e| format!("{e}; nothing was decided"))?;
                    }
                }
                broker
                    .approvals
                    .answer(
                        id,
                        Answer {
                            decision,
                            by: BY.into(),
                        },
                    )
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Approver::Connected(writer) => send(
                writer,
                id,
                decision.to_answer(),
                passphrase.map(|p| Passphrase::new(p.expose().to_string())),
            ),
        }
    }

    /// Whether an answer's result comes back later on the subscription (connected) rather
    /// than from [`Approver::answer`] itself (embedded).
    pub fn replies_later(&self) -> bool {
        matches!(self, Approver::Connected(_))
    }

    /// Says an answer to prompt `id` is being edited: the broker pauses its countdown (within
    /// [`crate::server::approval::EDIT_HOLD`]) and shows every approver the new deadline.
    pub fn editing(&self, id: &str) -> Result<(), String> {
        match self {
            Approver::Embedded { broker, .. } => broker
                .approvals
                .editing(id)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Approver::Connected(writer) => {
                send(writer, id, crate::protocol::AnswerDecision::Editing, None)
            }
        }
    }

    /// Detaches (embedded); a subscription ends with the process.
    pub fn stop(&self) {
        if let Approver::Embedded { broker, id, .. } = self
            && let Some(id) = *id.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            broker.approvals.detach(id);
        }
    }
}

/// Writes one `ANSWER` line for prompt `id` to the subscription (`Err` when it is not open).
fn send(
    writer: &Mutex<Option<UnixStream>>,
    id: &str,
    decision: crate::protocol::AnswerDecision,
    passphrase: Option<Passphrase>,
) -> Result<(), String> {
    let line = zeroize::Zeroizing::new(
        AnswerLine {
            prompt: id.to_string(),
            decision,
            passphrase,
        }
        .to_line(),
    );
    write_line(writer, &line)
}

/// Writes `line` to the subscription (`Err` when it is not open).
fn write_line(writer: &Mutex<Option<UnixStream>>, line: &[u8]) -> Result<(), String> {
    let mut guard = writer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(stream) = guard.as_mut() else {
        return Err("not connected to the broker: nothing was sent".into());
    };
    stream
        .write_all(line)
        .map_err(|e| format!("cannot write to the broker: {e}"))
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
        Ok(SubscriptionLine::NotSaved { prompt_id, message }) => {
            Some(Action::Approver(ApproverEvent::NotSaved {
                id: prompt_id,
                message,
            }))
        }
        Ok(SubscriptionLine::Answered { prompt_id, error }) => Some(Action::Answered {
            id: prompt_id,
            error,
        }),
        Ok(SubscriptionLine::Presence { ok: true, .. }) => {
            Some(Action::Passphrase(PassOutcome::Accepted(String::new())))
        }
        Ok(SubscriptionLine::Presence { error, .. }) => Some(Action::Passphrase(
            PassOutcome::of_error(error.unwrap_or_else(|| "presence was not proven".into())),
        )),
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
                    let hello = serde_json::from_str::<serde_json::Value>(&line).ok();
                    subscribed = hello.as_ref().is_some_and(|v| v["type"] == "SUBSCRIBED");
                    // A vault: prompts come once the person proved presence.
                    if let Some(v) = hello.filter(|v| v["presence"] == "required")
                        && tx
                            .send(Action::PresenceNeeded {
                                locked: v["locked"] != false,
                            })
                            .is_err()
                    {
                        return;
                    }
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
                passphrase: None,
            }
            .to_line();
            let text = std::str::from_utf8(&line).expect("utf-8");
            match crate::protocol::parse_line(text.trim_end().as_bytes()) {
                Ok(crate::protocol::Incoming::Answer(a)) => {
                    assert_eq!(a.prompt, "p3");
                    assert_eq!(Decision::from_answer(a.decision), Some(d), "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    /// An answer that widens access carries the passphrase, which the daemon reads back; it
    /// never shows in `Debug` (nor in anything logged from it).
    #[test]
    fn a_passphrase_rides_with_a_widening_answer_and_is_never_shown() {
        let line = AnswerLine {
            prompt: "p3".into(),
            decision: Decision::For(Duration::from_secs(60)).to_answer(),
            passphrase: Some(Passphrase::new("hunter2 horse".into())),
        };
        assert!(!format!("{line:?}").contains("hunter2"));
        let bytes = line.to_line();
        let text = std::str::from_utf8(&bytes).expect("utf-8");
        match crate::protocol::parse_line(text.trim_end().as_bytes()) {
            Ok(crate::protocol::Incoming::Answer(a)) => {
                assert_eq!(
                    a.passphrase.as_ref().map(Passphrase::expose),
                    Some("hunter2 horse")
                );
                assert!(!format!("{a:?}").contains("hunter2"));
            }
            other => panic!("{text}: {other:?}"),
        }
        // Only a widening answer takes one; a PRESENCE line takes nothing else.
        for bad in [
            r#"{"type":"ANSWER","prompt_id":"p","decision":"once","passphrase":"x"}"#,
            r#"{"type":"ANSWER","prompt_id":"p","decision":"deny","passphrase":"x"}"#,
            r#"{"type":"PRESENCE"}"#,
            r#"{"type":"PRESENCE","passphrase":""}"#,
            r#"{"type":"PRESENCE","passphrase":"x","admin":{}}"#,
            r#"{"type":"SUBSCRIBE","passphrase":"x"}"#,
        ] {
            assert!(
                crate::protocol::parse_line(bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
        match crate::protocol::parse_line(br#"{"type":"PRESENCE","passphrase":"pw"}"#) {
            Ok(crate::protocol::Incoming::Presence(p)) => assert_eq!(p.expose(), "pw"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_editing_line_round_trips_and_decides_nothing() {
        let line = AnswerLine {
            prompt: "p3".into(),
            decision: crate::protocol::AnswerDecision::Editing,
            passphrase: None,
        }
        .to_line();
        let text = std::str::from_utf8(&line).expect("utf-8");
        assert!(text.contains(r#""decision":"editing""#), "{text}");
        match crate::protocol::parse_line(text.trim_end().as_bytes()) {
            Ok(crate::protocol::Incoming::Answer(a)) => {
                assert_eq!(a.decision, crate::protocol::AnswerDecision::Editing);
                assert_eq!(Decision::from_answer(a.decision), None);
            }
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn a_not_saved_line_becomes_an_event() {
        let line = SubscriptionLine::from(ApproverEvent::NotSaved {
            id: "p4".into(),
            message: "why".into(),
        })
        .to_line();
        let text = std::str::from_utf8(&line).expect("utf-8");
        assert!(text.contains(r#""type":"NOT_SAVED""#), "{text}");
        assert_eq!(
            parse_line(text.trim_end()),
            Some(Action::Approver(ApproverEvent::NotSaved {
                id: "p4".into(),
                message: "why".into()
            }))
        );
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
        assert_eq!(
            parse_line(r#"{"type":"ANSWERED","prompt_id":"p2"}"#),
            Some(Action::Answered {
                id: "p2".into(),
                error: None
            })
        );
        assert_eq!(
            parse_line(r#"{"type":"ANSWERED","prompt_id":"p2","error":"gone"}"#),
            Some(Action::Answered {
                id: "p2".into(),
                error: Some("gone".into())
            })
        );
        // Presence: right, or wrong with the attempt count the broker gave.
        assert_eq!(
            parse_line(r#"{"type":"PRESENCE","ok":true,"locked":false}"#),
            Some(Action::Passphrase(PassOutcome::Accepted(String::new())))
        );
        assert_eq!(
            parse_line(
                r#"{"type":"PRESENCE","ok":false,"locked":true,"error":"wrong passphrase (attempt 2 since the last unlock)"}"#
            ),
            Some(Action::Passphrase(PassOutcome::Wrong(
                "wrong passphrase (attempt 2 since the last unlock)".into()
            )))
        );
    }
}
