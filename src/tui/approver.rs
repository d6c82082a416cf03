//! The dashboard as an approver (live approval): attached to the embedded broker's
//! [`crate::server::approval::Approvals`], or subscribed over the socket to a connected one
//! (`{"type":"SUBSCRIBE"}`, resubscribed after the broker restarts). Prompts and resolutions
//! come back to the reducer as [`Action::Approver`]; answers go out through [`Approver::answer`].

use super::action::Action;
use super::broker::Broker;
use crate::server::approval::{Answer, ApproverEvent, Decision, Prompt};
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
                let mut line =
                    serde_json::to_vec(&answer_json(id, &decision)).map_err(|e| e.to_string())?;
                line.push(b'\n');
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

/// The `ANSWER` line for a decision.
pub fn answer_json(id: &str, decision: &Decision) -> serde_json::Value {
    let mut v =
        serde_json::json!({"type": "ANSWER", "prompt_id": id, "decision": decision.as_str()});
    match decision {
        Decision::For(d) => v["for_s"] = d.as_secs().into(),
        Decision::Always(g) => {
            v["read"] = g.read.clone().into();
            v["write"] = g.write.clone().into();
            v["search"] = g.search.into();
        }
        Decision::Once | Decision::Deny | Decision::Forget => {}
    }
    v
}

/// One line from the subscription, as an action (`None`: nothing to tell the reducer).
pub fn parse_line(line: &str) -> Option<Action> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    match v.get("type")?.as_str()? {
        "PROMPT" => serde_json::from_value::<Prompt>(v)
            .ok()
            .map(|p| Action::Approver(ApproverEvent::Prompt(Box::new(p)))),
        "RESOLVED" => Some(Action::Approver(ApproverEvent::Resolved {
            id: v.get("prompt_id")?.as_str()?.to_string(),
            outcome: v.get("outcome")?.as_str()?.to_string(),
            by: v.get("by").and_then(|b| b.as_str()).map(str::to_string),
        })),
        "ANSWERED" => v
            .get("error")
            .and_then(|e| e.as_str())
            .map(|e| Action::Done(false, format!("the answer was not taken: {e}"))),
        "ERROR" | "error" => Some(Action::Log(true, format!("approver: {line}"))),
        // Fell behind the broker's prompts (this dashboard was stopped or too slow): the
        // connection closes and is subscribed again.
        "DROPPED" => Some(Action::Log(
            true,
            format!(
                "approver: {}",
                crate::display::bounded(v.get("message")?.as_str()?, 200)
            ),
        )),
        _ => None,
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

    #[test]
    fn answers_are_written_as_the_protocol_says() {
        let v = answer_json("p3", &Decision::For(Duration::from_secs(600)));
        assert_eq!(v["decision"], "time");
        assert_eq!(v["for_s"], 600);
        let g = crate::admin::Grants {
            read: vec!["aws".into()],
            ..Default::default()
        };
        let v = answer_json("p3", &Decision::Always(g));
        assert_eq!(v["read"], serde_json::json!(["aws"]));
        assert_eq!(v["search"], false);
        assert_eq!(answer_json("p3", &Decision::Forget)["decision"], "forget");
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
