//! Who may hold a connection: a cap on connections in all, a cap per connecting process, and a
//! small reserve kept for `STATUS`, so that one process holding hundreds of idle connections can
//! neither lock out other callers nor blind the dashboard and `start`'s liveness probe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The kind of slot a connection got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// An ordinary connection.
    Regular,
    /// Over the cap: only `STATUS` is answered, then the connection closes soon.
    Reserve,
}

/// Open connections, counted in all and per connecting pid.
#[derive(Debug)]
pub struct Admissions {
    max_total: usize,
    max_per_process: usize,
    reserve: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    regular: usize,
    reserve: usize,
    per_pid: HashMap<i32, usize>,
}

/// A held slot; released when dropped.
#[derive(Debug)]
pub struct Ticket {
    owner: Arc<Admissions>,
    pid: i32,
    /// Which kind of slot.
    pub slot: Slot,
}

/// Why a connection is not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The connecting process holds its share already.
    #[error(
        "process {pid} already holds {held} connections (the most one process may hold); close some and try again"
    )]
    PerProcess {
        /// The connecting process.
        pid: i32,
        /// Connections it holds.
        held: usize,
    },
    /// Every slot is taken.
    #[error("the broker is serving its maximum of {max} connections; try again shortly")]
    Full {
        /// The cap.
        max: usize,
    },
}

impl Admissions {
    /// Caps: `max_total` regular connections, `max_per_process` per connecting pid, and
    /// `reserve` STATUS-only slots beyond the total.
    pub fn new(max_total: usize, max_per_process: usize, reserve: usize) -> Arc<Admissions> {
        Arc::new(Admissions {
            max_total,
            max_per_process,
            reserve,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Admits a connection from `pid`, or says why not.
    pub fn admit(self: &Arc<Self>, pid: i32) -> Result<Ticket, Refused> {
        let mut c = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = c.per_pid.get(&pid).copied().unwrap_or(0);
        if held >= self.max_per_process {
            return Err(Refused::PerProcess { pid, held });
        }
        let slot = if c.regular < self.max_total {
            c.regular += 1;
            Slot::Regular
        } else if c.reserve < self.reserve {
            c.reserve += 1;
            Slot::Reserve
        } else {
            return Err(Refused::Full {
                max: self.max_total,
            });
        };
        *c.per_pid.entry(pid).or_insert(0) += 1;
        Ok(Ticket {
            owner: self.clone(),
            pid,
            slot,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self
            .owner
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match self.slot {
            Slot::Regular => c.regular = c.regular.saturating_sub(1),
            Slot::Reserve => c.reserve = c.reserve.saturating_sub(1),
        }
        if let Some(n) = c.per_pid.get_mut(&self.pid) {
            *n -= 1;
            if *n == 0 {
                c.per_pid.remove(&self.pid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_process_then_total_then_reserve() {
        let a = Admissions::new(3, 2, 1);
        let t1 = a.admit(10).unwrap();
        let _t2 = a.admit(10).unwrap();
        assert!(a.admit(10).unwrap_err().to_string().contains("process 10"));
        let _t3 = a.admit(11).unwrap();
        assert_eq!(t1.slot, Slot::Regular);
        let r = a.admit(12).unwrap();
        assert_eq!(r.slot, Slot::Reserve, "over the total: a STATUS-only slot");
        assert!(
            a.admit(13)
                .unwrap_err()
                .to_string()
                .contains("maximum of 3")
        );
        drop(t1);
        assert_eq!(a.admit(10).unwrap().slot, Slot::Regular, "slots come back");
        drop(r);
        assert_eq!(a.counts.lock().unwrap().reserve, 0);
    }
}
