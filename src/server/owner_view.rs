//! The owner's requests of the dashboard's Secrets view (SPEC §16), on the socket:
//!
//! ```json
//! {"type":"OWNER","op":"ls","passphrase":"…"}
//! {"type":"OWNER","op":"get","service":"aws","target":"prod-key","passphrase":"…"}
//! ```
//!
//! answered `{"type":"OWNER","ok":true,"services":[{"service":…,"items":[{"target":…,
//! "attributes":{…}}]}]}` (never a value), `{"type":"OWNER","ok":true,"value":"…"}`, or
//! `{"type":"OWNER","ok":false,"error":"…"}`. Only keychain-auth's own executable may send them
//! (the session checks the writer first). While the broker serves a vault each one needs the
//! vault passphrase, verified like every presence check (slowed when wrong, audited); with a
//! plain store there is none to give, as for `keychain-auth secret`. Each is audited as the
//! owner's (`"source":"owner"`), values never.
//!
//! An embedded dashboard calls [`list`] and [`get`] directly.

use super::Broker;
use crate::audit::Record;
use crate::protocol::{Attributes, MAX_SERVICE_LEN, MAX_TARGET_LEN};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use zeroize::Zeroizing;

/// What an OWNER line asks.
pub enum Op {
    /// Services, targets and attributes.
    List(Option<Zeroizing<String>>),
    /// One value.
    Get {
        /// Its service.
        service: String,
        /// Its target.
        target: String,
        /// The vault passphrase.
        passphrase: Option<Zeroizing<String>>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    op: String,
    service: Option<String>,
    target: Option<String>,
    passphrase: Option<String>,
}

/// One item of a listed service: its target and attributes.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OwnerItem {
    /// The target name.
    pub target: String,
    /// Its attributes.
    pub attributes: Attributes,
}

/// A listed service and its items.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OwnerService {
    /// The service.
    pub service: String,
    /// Its items, by target.
    pub items: Vec<OwnerItem>,
}

/// The answer line (no `Debug`: it may carry a value).
#[derive(Serialize, Deserialize)]
pub struct OwnerReply {
    /// Always `OWNER`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether it was done.
    pub ok: bool,
    /// For `ls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<OwnerService>>,
    /// For `get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Drop for OwnerReply {
    fn drop(&mut self) {
        if let Some(v) = &mut self.value {
            zeroize::Zeroize::zeroize(v);
        }
    }
}

impl OwnerReply {
    fn failed(error: String) -> OwnerReply {
        OwnerReply {
            kind: "OWNER".into(),
            ok: false,
            services: None,
            value: None,
            error: Some(error),
        }
    }

    /// The line to send (newline included), wiped when dropped.
    pub fn to_line(&self) -> Zeroizing<Vec<u8>> {
        let mut v = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        v.push(b'\n');
        Zeroizing::new(v)
    }
}

/// `None`: not an OWNER line; else the op or why it is malformed.
pub fn parse(line: &[u8]) -> Option<Result<Op, OwnerReply>> {
    if !line.windows(7).any(|w| w == b"\"OWNER\"") {
        return None;
    }
    let parsed: Line = serde_json::from_slice(line).ok()?;
    if parsed.kind != "OWNER" {
        return None;
    }
    let passphrase = parsed.passphrase.map(Zeroizing::new);
    Some(match (parsed.op.as_str(), parsed.service, parsed.target) {
        ("ls", None, None) => Ok(Op::List(passphrase)),
        ("get", Some(service), Some(target)) => Ok(Op::Get {
            service,
            target,
            passphrase,
        }),
        _ => Err(OwnerReply::failed(
            "OWNER takes op ls, or op get with service and target (and passphrase)".into(),
        )),
    })
}

/// The refusal for a writer that is not keychain-auth itself.
pub fn not_keychain_auth() -> OwnerReply {
    OwnerReply::failed(
        "only keychain-auth itself may ask for the owner's secrets: run `keychain-auth secret`"
            .into(),
    )
}

/// Presence for the Secrets view: with a vault, the passphrase is needed and checked.
fn present(broker: &Broker, passphrase: Option<&[u8]>, pid: i32) -> Result<(), String> {
    if !super::presence::required(broker) {
        return Ok(());
    }
    let Some(p) = passphrase else {
        return Err("this broker serves a vault: the Secrets view needs the vault passphrase, and none came with the request".into());
    };
    super::presence::prove(broker, p, pid, "the dashboard's Secrets view")
}

fn record(action: &str, service: &str, targets: &[&str], pid: i32, status: &str) -> Record {
    let mut r = Record::new("request", "owner");
    r.action = Some(action.into());
    r.service = Some(service.into());
    r.targets = targets.iter().map(|t| (*t).to_string()).collect();
    r.count = Some(targets.len());
    r.pid = Some(pid);
    r.status = Some(status.into());
    r
}

/// Every service (but keychain-auth's own) with its targets and attributes, for the keychain-auth
/// process `pid`; audited as the owner's search. Blocking.
pub fn list(
    broker: &Broker,
    passphrase: Option<&[u8]>,
    pid: i32,
) -> Result<Vec<OwnerService>, String> {
    present(broker, passphrase, pid)?;
    let store = broker.backend.as_ref();
    let mut out = vec![];
    for service in store.services().map_err(|e| e.to_string())? {
        if crate::keys::is_reserved_service(&service) {
            continue;
        }
        let items = store
            .list(&service, "", &Attributes::new())
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|e| OwnerItem {
                target: e.target,
                attributes: e.attributes,
            })
            .collect();
        out.push(OwnerService { service, items });
    }
    broker
        .audit
        .append(&record("search", "*", &[], pid, "success"))
        .map_err(|e| format!("the audit log could not be written ({e}): nothing is shown"))?;
    Ok(out)
}

/// One value, for the keychain-auth process `pid`; audited as the owner's read (the value never).
/// Blocking.
pub fn get(
    broker: &Broker,
    service: &str,
    target: &str,
    passphrase: Option<&[u8]>,
    pid: i32,
) -> Result<Zeroizing<String>, String> {
    let bad =
        |s: &str, max: usize| s.is_empty() || s.len() > max || s.chars().any(char::is_control);
    if bad(service, MAX_SERVICE_LEN)
        || bad(target, MAX_TARGET_LEN)
        || crate::keys::is_reserved_service(service)
    {
        return Err("not a service and target of yours".into());
    }
    present(broker, passphrase, pid)?;
    let item = broker
        .backend
        .get(service, target)
        .map_err(|e| e.to_string())?;
    let status = if item.is_some() { "success" } else { "error" };
    broker
        .audit
        .append(&record("read", service, &[target], pid, status))
        .map_err(|e| format!("the audit log could not be written ({e}): nothing is shown"))?;
    match item {
        Some(i) => Ok(Zeroizing::new(i.value.clone())),
        None => Err(format!("no secret {target:?} in {service:?}")),
    }
}

/// Carries out `op` for the process `pid` (already checked to be keychain-auth).
pub async fn answer(broker: &Arc<Broker>, op: Op, pid: i32) -> OwnerReply {
    let b = broker.clone();
    tokio::task::spawn_blocking(move || match op {
        Op::List(p) => match list(&b, p.as_ref().map(|p| p.as_bytes()), pid) {
            Ok(services) => OwnerReply {
                kind: "OWNER".into(),
                ok: true,
                services: Some(services),
                value: None,
                error: None,
            },
            Err(e) => OwnerReply::failed(e),
        },
        Op::Get {
            service,
            target,
            passphrase,
        } => match get(
            &b,
            &service,
            &target,
            passphrase.as_ref().map(|p| p.as_bytes()),
            pid,
        ) {
            Ok(v) => OwnerReply {
                kind: "OWNER".into(),
                ok: true,
                services: None,
                value: Some(v.to_string()),
                error: None,
            },
            Err(e) => OwnerReply::failed(e),
        },
    })
    .await
    .unwrap_or_else(|_| OwnerReply::failed("the request failed inside the daemon".into()))
}
