//! The caller chain as a record carries it ([`Chain`]): shared, and written as JSON once per
//! writer instead of once per request.
//!
//! Every audit record of a request carries the caller chain: the writer, then who launched it,
//! each with its path, hash, pid and command line — over a kilobyte with a long argv. A
//! verified writer's chain does not change while it is remembered, so [`Peer::recorded_chain`]
//! builds it and its JSON once ([`Recorded`]); each record then holds two shared pointers, and
//! writing the record copies the JSON as it is instead of cloning and re-escaping every string.

use super::{Exe, Link, Peer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};

/// A caller chain in a record: its links, shared, and, when it came from a [`Peer`], their JSON
/// made once. It reads as the `Vec<Link>` it is; changing it drops the JSON.
#[derive(Clone, Default)]
pub struct Chain {
    links: Arc<Vec<Link>>,
    json: Option<Arc<RawValue>>,
}

impl Chain {
    /// Whether it has no links (a record then leaves the member out).
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    fn made(links: Vec<Link>) -> Chain {
        let json = serde_json::value::to_raw_value(&links).ok().map(Arc::from);
        Chain {
            links: Arc::new(links),
            json,
        }
    }
}

impl From<Vec<Link>> for Chain {
    fn from(links: Vec<Link>) -> Chain {
        Chain {
            links: Arc::new(links),
            json: None,
        }
    }
}

impl Deref for Chain {
    type Target = Vec<Link>;
    fn deref(&self) -> &Vec<Link> {
        &self.links
    }
}

impl DerefMut for Chain {
    fn deref_mut(&mut self) -> &mut Vec<Link> {
        self.json = None;
        Arc::make_mut(&mut self.links)
    }
}

impl PartialEq for Chain {
    fn eq(&self, other: &Chain) -> bool {
        self.links == other.links
    }
}

impl Eq for Chain {}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.links.fmt(f)
    }
}

/// Written as its JSON when it has it: the very bytes serde_json makes of the links.
impl Serialize for Chain {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.json {
            Some(json) => json.serialize(s),
            None => self.links.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Chain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Chain, D::Error> {
        Vec::<Link>::deserialize(d).map(Chain::from)
    }
}

/// The [`Chain`] of a [`Peer`], made on first use and kept with it (clones of the peer share
/// it). Not part of the peer's identity: two peers compare equal whatever it holds.
#[derive(Clone, Default)]
pub struct Recorded(Arc<OnceLock<Chain>>);

impl PartialEq for Recorded {
    fn eq(&self, _: &Recorded) -> bool {
        true
    }
}

impl Eq for Recorded {}

impl fmt::Debug for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Recorded")
    }
}

impl Peer {
    /// The caller chain its records carry: the writer itself first, then who launched it
    /// (empty for a writer that could not be verified). Made once per peer.
    pub fn recorded_chain(&self) -> Chain {
        self.recorded
            .0
            .get_or_init(|| Chain::made(self.caller_chain()))
            .clone()
    }

    /// The caller chain, built: the writer itself first, then who launched it.
    pub fn caller_chain(&self) -> Vec<Link> {
        let Exe::Verified {
            path,
            hash,
            argv,
            chain,
            ..
        } = &self.exe
        else {
            return Vec::new();
        };
        let mut links = Vec::with_capacity(chain.len() + 1);
        links.push(Link {
            path: path.to_string_lossy().into_owned(),
            hash: Some(hash.clone()),
            pid: self.pid,
            argv: argv.clone(),
        });
        links.extend(chain.iter().cloned());
        links
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Vec<Link> {
        vec![
            Link {
                path: "/usr/bin/tool \"quoted\"".into(),
                hash: None,
                pid: 42,
                argv: vec!["tool".into(), "{\"json\": \"in an argv\"}\n".into()],
            },
            Link {
                path: "/usr/bin/bash".into(),
                hash: None,
                pid: 41,
                argv: vec!["bash".into()],
            },
        ]
    }

    #[test]
    fn a_made_chain_is_written_byte_for_byte_as_its_links_are() {
        let made = Chain::made(links());
        assert!(made.json.is_some());
        assert_eq!(
            serde_json::to_vec(&made).unwrap(),
            serde_json::to_vec(&links()).unwrap()
        );
        assert_eq!(
            serde_json::to_value(&made).unwrap(),
            serde_json::to_value(links()).unwrap()
        );
        let back: Chain = serde_json::from_slice(&serde_json::to_vec(&made).unwrap()).unwrap();
        assert_eq!(back, made);
    }

    #[test]
    fn changing_a_shared_chain_changes_only_that_copy_and_drops_its_json() {
        let made = Chain::made(links());
        let mut copy = made.clone();
        copy[0].path = "/usr/bin/other".into();
        assert!(copy.json.is_none());
        assert_eq!(made[0].path, "/usr/bin/tool \"quoted\"");
        let written: Vec<Link> =
            serde_json::from_slice(&serde_json::to_vec(&copy).unwrap()).unwrap();
        assert_eq!(written[0].path, "/usr/bin/other");
    }
}
