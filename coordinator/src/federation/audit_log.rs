//! Appending to the audit chain from many callers at once: group commit on a writer thread.
//!
//! Every question and every change is audited, and its receipt is given only once the entry is
//! on disk. One flush per entry would cap questions at the disk's flush rate, so callers hand
//! their records to one writer thread (`ponte-audit`), which takes everything queued, chains it in
//! queue order, writes it and flushes once, then answers each caller with its entry. The chain
//! stays one total order and no receipt is given before its entry is durable. Callers either
//! wait on a thread ([`AuditLog::append`]) or await the entry on an async task
//! ([`AuditLog::append_async`]) — a question's async worker never blocks on the disk.
//!
//! When a write fails, every caller of that group gets the error and the head stays where it
//! was (entries sled may have kept are overwritten by the next group, so the chain never has a
//! gap).

use std::sync::Arc;
use std::sync::mpsc;

use parking_lot::Mutex;

use crate::audit::{Entry, Record};
use crate::model::ClusterId;
use crate::storage::{Store, StoreError};

/// What an entry is indexed under for data-subject reports: item labels and the person.
pub type Keys = (Vec<String>, Option<ClusterId>);

type Reply = tokio::sync::oneshot::Sender<Result<Entry, StoreError>>;

struct Request {
    record: Record,
    keys: Keys,
    reply: Reply,
}

/// Most records one group writes.
const MAX_GROUP: usize = 512;

/// The audit chain's writer.
pub struct AuditLog {
    queue: Mutex<Option<mpsc::Sender<Request>>>,
    head: Arc<Mutex<Option<(u64, String)>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl AuditLog {
    /// A writer that continues the chain after `head` in `store`. `before_group` runs before
    /// each group is written.
    pub fn start(store: Arc<Store>, head: Option<(u64, String)>, before_group: impl Fn() + Send + 'static) -> AuditLog {
        let (tx, rx) = mpsc::channel::<Request>();
        let head = Arc::new(Mutex::new(head));
        let thread_head = head.clone();
        let thread = std::thread::Builder::new()
            .name("ponte-audit".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(r) => group.push(r),
                            Err(_) => break,
                        }
                    }
                    before_group();
                    let last = thread_head.lock().clone();
                    let (records, replies): (Vec<_>, Vec<_>) =
                        group.into_iter().map(|r| ((r.record, r.keys.0, r.keys.1), r.reply)).unzip();
                    match store.append_audit(last.as_ref().map(|(s, h)| (*s, h.as_str())), records) {
                        Ok(entries) => {
                            if let Some(e) = entries.last() {
                                *thread_head.lock() = Some((e.sequence, e.hash.clone()));
                            }
                            for (reply, e) in replies.into_iter().zip(entries) {
                                let _ = reply.send(Ok(e));
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                }
            })
            .expect("the audit writer thread starts");
        AuditLog { queue: Mutex::new(Some(tx)), head, thread: Mutex::new(Some(thread)) }
    }

    /// The last entry's sequence and hash.
    pub fn head(&self) -> Option<(u64, String)> {
        self.head.lock().clone()
    }

    /// Entries in the chain.
    pub fn len(&self) -> u64 {
        self.head.lock().as_ref().map_or(0, |(s, _)| s + 1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the head again from the store (after it reopened). Entries queued meanwhile follow
    /// the new head.
    pub fn reset_head(&self, head: Option<(u64, String)>) {
        *self.head.lock() = head;
    }

    fn submit(&self, record: Record, keys: Keys) -> tokio::sync::oneshot::Receiver<Result<Entry, StoreError>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        // When the writer is gone (shutting down) the request is dropped with its reply, and
        // the caller sees `Unavailable`.
        if let Some(q) = self.queue.lock().as_ref() {
            let _ = q.send(Request { record, keys, reply });
        }
        rx
    }

    /// Appends one record, indexed under `keys`; returns its entry once it is durable. Blocks the
    /// calling thread (not for async tasks: use [`AuditLog::append_async`]).
    pub fn append(&self, record: Record, keys: Keys) -> Result<Entry, StoreError> {
        self.submit(record, keys).blocking_recv().unwrap_or(Err(StoreError::Unavailable))
    }

    /// [`AuditLog::append`] for async tasks.
    pub async fn append_async(&self, record: Record, keys: Keys) -> Result<Entry, StoreError> {
        self.submit(record, keys).await.unwrap_or(Err(StoreError::Unavailable))
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has written what was queued.
        self.queue.lock().take();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
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
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let log = Arc::new(AuditLog::start(store.clone(), None, || {}));
        let receipts: Vec<Vec<Entry>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let log = log.clone();
                    s.spawn(move || (0..50).map(|i| log.append(record(t * 100 + i), (vec![format!("n/r{i}")], Some(7))).unwrap()).collect())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // And from async tasks.
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let more: Vec<Entry> = rt.block_on(async {
            let tasks: Vec<_> = (0..100)
                .map(|i| {
                    let log = log.clone();
                    tokio::spawn(async move { log.append_async(record(1000 + i), (Vec::new(), None)).await.unwrap() })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        let mut seqs: Vec<u64> = receipts.iter().flatten().chain(&more).map(|e| e.sequence).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..500).collect::<Vec<_>>(), "every caller got its own sequence, no gap, no repeat");
        // The stored chain verifies, and each receipt is the stored entry.
        let stored = store.audit_entries().unwrap();
        crate::audit::verify(&stored).unwrap();
        for e in receipts.iter().flatten().chain(&more) {
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
