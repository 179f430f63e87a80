//! Appending to the audit chain from many callers at once: group commit.
//!
//! Every question and every change is audited, and its receipt is given only once the entry is
//! on disk. One flush per entry would cap questions at the disk's flush rate, so callers queue
//! their records and one of them — the *leader* — chains everything queued, writes it and
//! flushes once for all; the others wait for their entries. The chain stays one total order (the
//! leader hashes the records in queue order) and no receipt is given before its entry is
//! durable. When the write fails, every caller of that group gets the error and the head stays
//! where it was (entries that sled may have kept are overwritten by the next group, so the chain
//! never has a gap).

use parking_lot::{Condvar, Mutex};

use crate::audit::{Entry, Record};
use crate::model::ClusterId;
use crate::storage::{Store, StoreError};

/// What an entry is indexed under for data-subject reports: item labels and the person.
pub type Keys = (Vec<String>, Option<ClusterId>);

struct Queue {
    head: Option<(u64, String)>,
    next_ticket: u64,
    waiting: Vec<(u64, Record, Keys)>,
    done: std::collections::HashMap<u64, Result<Entry, StoreError>>,
    leading: bool,
}

/// The audit chain's writer.
pub struct AuditLog {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// Most records one leader writes in one group.
const MAX_GROUP: usize = 512;

impl AuditLog {
    /// A writer that continues the chain after `head`.
    pub fn new(head: Option<(u64, String)>) -> AuditLog {
        AuditLog {
            queue: Mutex::new(Queue { head, next_ticket: 0, waiting: Vec::new(), done: Default::default(), leading: false }),
            wake: Condvar::new(),
        }
    }

    /// The last entry's sequence and hash.
    pub fn head(&self) -> Option<(u64, String)> {
        self.queue.lock().head.clone()
    }

    /// Entries in the chain.
    pub fn len(&self) -> u64 {
        self.queue.lock().head.as_ref().map_or(0, |(s, _)| s + 1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the head again from the store (after it reopened).
    pub fn reset_head(&self, head: Option<(u64, String)>) {
        self.queue.lock().head = head;
    }

    /// Appends one record, indexed under `keys`; returns its entry once it is durable.
    pub fn append(&self, store: &Store, record: Record, keys: Keys) -> Result<Entry, StoreError> {
        let mut q = self.queue.lock();
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.waiting.push((ticket, record, keys));
        loop {
            if let Some(result) = q.done.remove(&ticket) {
                return result;
            }
            if !q.leading {
                q.leading = true;
                let take = q.waiting.len().min(MAX_GROUP);
                let group: Vec<(u64, Record, Keys)> = q.waiting.drain(..take).collect();
                let head = q.head.clone();
                drop(q);
                let tickets: Vec<u64> = group.iter().map(|g| g.0).collect();
                let records = group.into_iter().map(|(_, r, (items, cluster))| (r, items, cluster)).collect();
                let written = store.append_audit(head.as_ref().map(|(s, h)| (*s, h.as_str())), records);
                q = self.queue.lock();
                match written {
                    Ok(entries) => {
                        if let Some(last) = entries.last() {
                            q.head = Some((last.sequence, last.hash.clone()));
                        }
                        for (t, e) in tickets.into_iter().zip(entries) {
                            q.done.insert(t, Ok(e));
                        }
                    }
                    Err(e) => {
                        for t in tickets {
                            q.done.insert(t, Err(e.clone()));
                        }
                    }
                }
                q.leading = false;
                self.wake.notify_all();
                continue;
            }
            self.wake.wait(&mut q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Event;

    fn record(i: usize) -> Record {
        Record {
            time: 1,
            actor: format!("node-{}", i % 7),
            actor_role: "node".into(),
            policy: "v1".into(),
            event: Event::ConsentRevoked { consent: format!("c{i}") },
        }
    }

    #[test]
    fn many_callers_get_one_chain_every_entry_durable_and_verifiable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::new(None);
        let receipts: Vec<Vec<Entry>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let (store, log) = (&store, &log);
                    s.spawn(move || (0..50).map(|i| log.append(store, record(t * 100 + i), (vec![format!("n/r{i}")], Some(7))).unwrap()).collect())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut seqs: Vec<u64> = receipts.iter().flatten().map(|e| e.sequence).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..400).collect::<Vec<_>>(), "every caller got its own sequence, no gap, no repeat");
        // The stored chain verifies, and each receipt is the stored entry.
        let stored = store.audit_entries().unwrap();
        crate::audit::verify(&stored).unwrap();
        for e in receipts.iter().flatten() {
            assert_eq!(&stored[e.sequence as usize], e);
        }
        assert_eq!(log.head(), store.audit_head().unwrap());
        assert_eq!(store.recorded_audit_head().unwrap(), log.head());
        // Indexed for data-subject reports under the keys given: one entry per thread for r3.
        let (about, more) = store.audit_about(&["n/r3".into()], None, 10_000).unwrap();
        assert_eq!((about.len(), more), (8, false));
        let (about, more) = store.audit_about(&[], Some(7), 100).unwrap();
        assert_eq!((about.len(), more), (100, true), "bounded, and says so");
    }
}
