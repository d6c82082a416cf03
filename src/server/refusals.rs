//! Counted refusals: repeats of one refusal are folded into one record, so a caller refused in
//! a loop cannot rotate the audit history away.
//!
//! A refusal is keyed by who was refused and why: the caller's executable path and hash, its
//! script's hash, the action, service, status and reason (not the pid: a flood from many
//! processes of one program is one caller). In each [`WINDOW`] the first [`WRITTEN`] refusals
//! of a key are written as they come; the rest are counted, and one record stands for them:
//! the latest of them, with `"repeated"` (how many) and `"first_ts"` (when the first of them
//! happened). That record is written when the window has passed — at the key's next refusal,
//! by the periodic [`Refusals::expired`] sweep, or when the broker stops ([`Refusals::all`]).

use crate::audit::Record;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one window of a key lasts.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Refusals of a key written one record each in a window before the rest are counted.
pub const WRITTEN: u64 = 10;

/// Most keys with an open window; beyond, the oldest window is closed early.
pub const MAX_KEYS: usize = 1024;

struct Window {
    opened: Instant,
    /// Refusals of this window so far.
    seen: u64,
    /// The refusals counted (not written): how many, the first one's time, the latest one.
    folded: u64,
    first_ts: Option<String>,
    latest: Option<Record>,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            opened: now,
            seen: 0,
            folded: 0,
            first_ts: None,
            latest: None,
        }
    }

    /// The record that stands for the refusals counted, if any.
    fn counted(self) -> Option<Record> {
        let mut r = self.latest?;
        r.repeated = Some(self.folded);
        r.first_ts = self.first_ts;
        Some(r)
    }
}

/// The open windows of refusals.
#[derive(Default)]
pub struct Refusals {
    windows: Mutex<HashMap<String, Window>>,
}

/// The key of a refusal record: who was refused and why.
fn key(rec: &Record) -> String {
    serde_json::json!([
        rec.path,
        rec.hash,
        rec.script_hash,
        rec.action,
        rec.service,
        rec.status,
        rec.reason
    ])
    .to_string()
}

impl Refusals {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a refusal; returns the records to write now (none when it was counted, else the
    /// counted record of the key's previous window, if any, and `rec` itself).
    pub fn record(&self, rec: Record) -> Vec<Record> {
        self.record_at(rec, Instant::now())
    }

    fn record_at(&self, rec: Record, now: Instant) -> Vec<Record> {
        let k = key(&rec);
        let mut out = Vec::new();
        let mut windows = self.lock();
        if windows
            .get(&k)
            .is_some_and(|w| now.duration_since(w.opened) >= WINDOW)
            && let Some(old) = windows.remove(&k)
        {
            out.extend(old.counted());
        }
        if !windows.contains_key(&k) && windows.len() >= MAX_KEYS {
            let oldest = windows
                .iter()
                .min_by_key(|(_, w)| w.opened)
                .map(|(k, _)| k.clone());
            if let Some(old) = oldest.and_then(|o| windows.remove(&o)) {
                out.extend(old.counted());
            }
        }
        let w = windows.entry(k).or_insert_with(|| Window::new(now));
        w.seen += 1;
        if w.seen <= WRITTEN {
            out.push(rec);
        } else {
            w.folded += 1;
            if w.first_ts.is_none() {
                w.first_ts = Some(rec.ts.clone());
            }
            w.latest = Some(rec);
        }
        out
    }

    /// Closes the windows that have passed; returns their counted records.
    pub fn expired(&self) -> Vec<Record> {
        self.expired_at(Instant::now())
    }

    fn expired_at(&self, now: Instant) -> Vec<Record> {
        let mut windows = self.lock();
        let done: Vec<String> = windows
            .iter()
            .filter(|(_, w)| now.duration_since(w.opened) >= WINDOW)
            .map(|(k, _)| k.clone())
            .collect();
        done.into_iter()
            .filter_map(|k| windows.remove(&k).and_then(Window::counted))
            .collect()
    }

    /// Closes every window (the broker stops); returns their counted records.
    pub fn all(&self) -> Vec<Record> {
        self.lock()
            .drain()
            .filter_map(|(_, w)| w.counted())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(service: &str, pid: i32) -> Record {
        let mut r = Record::new("request", "daemon");
        r.pid = Some(pid);
        r.path = Some("/usr/bin/tool".into());
        r.hash = Some("sha256:aa".into());
        r.action = Some("read".into());
        r.service = Some(service.into());
        r.status = Some("denied".into());
        r.reason = Some("unregistered_binary".into());
        r
    }

    #[test]
    fn a_flood_of_one_refusal_is_written_as_a_few_records_and_one_count() {
        let f = Refusals::default();
        let t0 = Instant::now();
        let mut written = Vec::new();
        for i in 0..10_000 {
            written.extend(f.record_at(refusal("aws", 1000 + i), t0));
        }
        assert_eq!(
            written.len(),
            WRITTEN as usize,
            "the first ones as they come"
        );
        assert!(written.iter().all(|r| r.repeated.is_none()));
        // Another service is another key.
        assert_eq!(f.record_at(refusal("gcp", 1), t0).len(), 1);
        // Nothing is counted out before the window passes.
        assert!(f.expired_at(t0 + WINDOW / 2).is_empty());
        let counted = f.expired_at(t0 + WINDOW);
        assert_eq!(counted.len(), 1);
        assert_eq!(counted[0].repeated, Some(10_000 - WRITTEN));
        assert_eq!(counted[0].pid, Some(1000 + 9_999), "the latest of them");
        assert!(counted[0].first_ts.is_some());
        // A new window after it: written again, first the previous count if not yet written.
        for _ in 0..(WRITTEN + 5) {
            f.record_at(refusal("aws", 1), t0 + WINDOW);
        }
        let next = f.record_at(refusal("aws", 2), t0 + WINDOW * 2);
        assert_eq!(next.len(), 2, "{next:?}");
        assert_eq!(next[0].repeated, Some(5));
        assert_eq!(next[1].repeated, None);
        // Stopping writes what is still counted.
        for _ in 0..(WRITTEN + 3) {
            f.record_at(refusal("k8s", 1), t0 + WINDOW * 2);
        }
        let rest = f.all();
        assert_eq!(
            rest.iter().filter_map(|r| r.repeated).collect::<Vec<_>>(),
            vec![3]
        );
    }

    #[test]
    fn keys_are_bounded() {
        let f = Refusals::default();
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS + 100) {
            let mut r = refusal("aws", 1);
            r.hash = Some(format!("sha256:{i}"));
            for _ in 0..(WRITTEN + 1) {
                f.record_at(r.clone(), t0 + Duration::from_millis(i as u64));
            }
        }
        assert!(f.lock().len() <= MAX_KEYS);
    }
}
