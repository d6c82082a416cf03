//! `keychain-auth get` and `put` are conduits, not callers (SPEC §12 with §10): a request
//! written by the broker's own executable is answered as the program that ran it — a script
//! (interpreter + script hash), or a binary — so a shell script is approved by its own hash,
//! exactly as if it spoke to the socket itself, and approving keychain-auth is never needed.
//!
//! The program that ran the conduit is its parent. It is identified like any caller, and then
//! the conduit must still be its child: a parent that exited (its pid free for reuse) before
//! the check is never mistaken for whoever has the pid now. A tracer on the conduit itself, or
//! an injection variable in its environment, counts as the caller's.

use super::Broker;
use crate::identity::{self, Exe, Hashing, IdentityError, Peer};

/// The identity a request written by `peer` is answered as: `peer` itself, unless it runs the
/// broker's own executable. `Ok(None)` when `hashing` is cache-only and a hash is missing.
pub fn resolve(
    broker: &Broker,
    peer: Peer,
    hashing: Hashing,
    interpreters: &[String],
) -> Result<Option<Peer>, IdentityError> {
    let (chain, conduit_integrity) = match &peer.exe {
        Exe::Verified {
            hash,
            chain,
            integrity,
            ..
        } if Some(hash) == broker.own_hash() => (chain.clone(), integrity.clone()),
        _ => return Ok(Some(peer)),
    };
    let refuse = |why: String| {
        Ok(Some(Peer {
            exe: Exe::Unverifiable {
                path: match &peer.exe {
                    Exe::Verified { path, .. } => Some(path.clone()),
                    Exe::Unverifiable { path, .. } => path.clone(),
                },
                why,
            },
            uid: peer.uid,
            pid: peer.pid,
            recorded: crate::identity::Recorded::default(),
        }))
    };
    let Some(parent) = chain.first() else {
        return refuse(format!(
            "keychain-auth (pid {}) asks on behalf of the program that ran it, and none that can be identified did",
            peer.pid
        ));
    };
    let Some(mut caller) = identity::identify(
        parent.pid,
        peer.uid,
        None,
        &broker.identity,
        &broker.hashes,
        hashing,
        interpreters,
    )?
    else {
        return Ok(None);
    };
    if identity::process::parent_pid(peer.pid).ok() != Some(parent.pid) {
        return refuse(format!(
            "the program that ran keychain-auth (pid {}) exited before it could be identified",
            parent.pid
        ));
    }
    if let Exe::Verified { integrity, .. } = &mut caller.exe {
        if integrity.tracer == 0 {
            integrity.tracer = conduit_integrity.tracer;
        }
        for v in conduit_integrity.injected {
            if !integrity.injected.contains(&v) {
                integrity.injected.push(v);
            }
        }
    }
    Ok(Some(caller))
}
