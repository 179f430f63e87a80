//! The coordinator's storage: the only module that knows sled.
//!
//! Trees: `items` (node ‖ 0 ‖ reference → item with its internal id), `links` (id ‖ id → band),
//! `audit` (sequence → chained entry), `audit_items` (item label ‖ 0 ‖ sequence: the questions
//! that named an item) and `audit_clusters` (cluster ‖ sequence: the questions about a person),
//! `clusters` (item id → cluster id), `held` (item id: items held without links for a data
//! steward), `quarantine` (what a data steward should look at), `consents` (node ‖ 0 ‖ consent
//! id → consent with the reference it is keyed by), `policies` (sequence → a policy version as
//! loaded) and `meta` (the audit head, recorded apart from the chain at every append). Every
//! write that is acknowledged to a client is flushed first, so it survives `kill -9`.
//!
//! # When the disk fills
//!
//! sled refuses every write once one has failed, even after space returns. The store therefore
//! notes the first I/O failure ([`Store::failed`]), answers every later call with
//! [`StoreError::Unavailable`] instead of touching sled, and [`Store::recover`] — called by the
//! coordinator's upkeep once space is back — closes sled and opens it again. Nothing flushed is
//! lost by that (sled's log is replayed); writes that were not flushed were never acknowledged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::audit::{self, Entry, Record};
use crate::model::{Band, ClusterId, ItemId, ItemKey, StoredItem};

/// sled's page cache; its default (1 GB) is far more than the coordinator needs here.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a storage call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The disk is full: nothing was written.
    #[error("the coordinator's disk is full ({0}); free space on its data directory's disk")]
    Full(String),
    /// An earlier write failed; the store waits for [`Store::recover`].
    #[error("the coordinator's store is recovering from a failed write (disk full?) and takes no calls until space is back")]
    Unavailable,
    #[error("storage I/O error: {0}")]
    Io(String),
    /// What is stored does not read back.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A consent as stored: the consent and the item it is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRow {
    pub reference: ItemKey,
    pub consent: crate::policy::Consent,
}

/// A policy version as loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRow {
    pub version: String,
    pub sha256: String,
    pub text: String,
    pub loaded_at: u64,
    pub loaded_by: String,
}

/// Something a data steward should look at (see `QuarantineEntry` in the proto).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRow {
    pub time: u64,
    pub kind: String,
    pub node: String,
    #[serde(default)]
    pub token_kind: i32,
    pub items: u32,
    #[serde(default)]
    pub identities: u32,
    pub references: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ItemRow {
    id: ItemId,
    item: StoredItem,
}

fn item_key(k: &ItemKey) -> Vec<u8> {
    let mut v = Vec::with_capacity(k.node.len() + 1 + k.reference.len());
    v.extend_from_slice(k.node.as_bytes());
    v.push(0);
    v.extend_from_slice(k.reference.as_bytes());
    v
}

fn link_key(a: ItemId, b: ItemId) -> [u8; 16] {
    let (a, b) = if a < b { (a, b) } else { (b, a) };
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_be_bytes());
    k[8..].copy_from_slice(&b.to_be_bytes());
    k
}

fn byte_band(b: u8) -> Option<Band> {
    match b {
        1 => Some(Band::Certain),
        2 => Some(Band::Probable),
        3 => Some(Band::Possible),
        _ => None,
    }
}

/// What was on disk at start.
pub struct Loaded {
    pub items: Vec<(ItemId, StoredItem)>,
    pub links: Vec<(ItemId, ItemId, Band)>,
    /// Stored cluster ids (item → cluster).
    pub clusters: Vec<(ItemId, ClusterId)>,
    /// Items held without links.
    pub held: Vec<ItemId>,
    pub next_id: ItemId,
}

struct Trees {
    db: sled::Db,
    items: sled::Tree,
    links: sled::Tree,
    audit: sled::Tree,
    audit_items: sled::Tree,
    audit_clusters: sled::Tree,
    clusters: sled::Tree,
    held: sled::Tree,
    quarantine: sled::Tree,
    consents: sled::Tree,
    policies: sled::Tree,
    meta: sled::Tree,
}

pub struct Store {
    dir: PathBuf,
    trees: RwLock<Option<Arc<Trees>>>,
    failed: AtomicBool,
}

const AUDIT_HEAD: &[u8] = b"audit_head";
/// The last audit sequence the `audit_items` / `audit_clusters` indexes cover.
const AUDIT_INDEXED: &[u8] = b"audit_indexed";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn open_trees(dir: &Path) -> Result<Trees> {
    let db = sled::Config::new().path(dir.join("sled")).cache_capacity(CACHE_BYTES).open().map_err(|e| match e {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") => StoreError::Io(format!(
            "the data directory {} is in use by another process (is a coordinator already running on it?)",
            dir.display()
        )),
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => StoreError::Full(io.to_string()),
        other => StoreError::Io(format!("cannot open the store in {}: {other}", dir.display())),
    })?;
    let t = |name: &str| db.open_tree(name).map_err(|e| StoreError::Io(format!("opening {name}: {e}")));
    Ok(Trees {
        items: t("items")?,
        links: t("links")?,
        audit: t("audit")?,
        audit_items: t("audit_items")?,
        audit_clusters: t("audit_clusters")?,
        clusters: t("clusters")?,
        held: t("held")?,
        quarantine: t("quarantine")?,
        consents: t("consents")?,
        policies: t("policies")?,
        meta: t("meta")?,
        db,
    })
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(format!("creating the data directory {}: {e}", dir.display())))?;
        let trees = open_trees(dir)?;
        let store = Store { dir: dir.to_path_buf(), trees: RwLock::new(Some(Arc::new(trees))), failed: AtomicBool::new(false) };
        store.catch_up_audit_index()?;
        Ok(store)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a write failed and the store waits for [`Store::recover`].
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    fn trees(&self) -> Result<Arc<Trees>> {
        if self.failed() {
            return Err(StoreError::Unavailable);
        }
        self.trees.read().clone().ok_or(StoreError::Unavailable)
    }

    /// Maps a sled error, noting an I/O failure (after which sled refuses writes for good).
    fn io(&self, e: sled::Error) -> StoreError {
        match e {
            sled::Error::Io(io) => {
                self.failed.store(true, Ordering::Release);
                if io.kind() == std::io::ErrorKind::StorageFull {
                    tracing::error!("the disk is full: the store refuses every call until space is freed and it reopens");
                    StoreError::Full(io.to_string())
                } else {
                    tracing::error!(error = %io, "storage I/O error: the store refuses every call until it reopens");
                    StoreError::Io(io.to_string())
                }
            }
            sled::Error::Corruption { .. } => corrupt("sled", e),
            other => StoreError::Io(other.to_string()),
        }
    }

    /// After a failed write: closes sled and opens it again, once every call that still holds it
    /// has returned (at most `wait`). Returns whether the store is usable again.
    pub fn recover(&self, wait: Duration) -> Result<()> {
        if !self.failed() {
            return Ok(());
        }
        let old = self.trees.write().take();
        if let Some(old) = old {
            let started = Instant::now();
            let mut old = old;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(trees) => {
                        drop(trees);
                        break;
                    }
                    Err(back) if started.elapsed() < wait => {
                        old = back;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(back) => {
                        *self.trees.write() = Some(back);
                        return Err(StoreError::Unavailable);
                    }
                }
            }
        }
        let started = Instant::now();
        let trees = loop {
            match open_trees(&self.dir) {
                Ok(t) => break t,
                // sled's own threads may hold the lock a moment after the close.
                Err(StoreError::Io(m)) if m.contains("in use") && started.elapsed() < wait => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    tracing::warn!(error = %e, "the store could not reopen yet");
                    return Err(e);
                }
            }
        };
        *self.trees.write() = Some(Arc::new(trees));
        self.failed.store(false, Ordering::Release);
        tracing::info!("the store reopened after a failed write; writes are accepted again");
        Ok(())
    }

    /// Everything needed to rebuild the in-memory index.
    pub fn load(&self) -> Result<Loaded> {
        let t = self.trees()?;
        let mut items = Vec::new();
        let mut next_id = 1;
        for kv in t.items.iter() {
            let (_, v) = kv.map_err(|e| self.io(e))?;
            let row: ItemRow = serde_json::from_slice(&v).map_err(|e| corrupt("a stored item", e))?;
            next_id = next_id.max(row.id + 1);
            items.push((row.id, row.item));
        }
        let mut links = Vec::new();
        for kv in t.links.iter() {
            let (k, v) = kv.map_err(|e| self.io(e))?;
            if k.len() != 16 {
                return Err(corrupt("a stored link key", format!("{} bytes", k.len())));
            }
            let a = u64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
            let b = u64::from_be_bytes(k[8..16].try_into().expect("8 bytes"));
            if let Some(band) = v.first().copied().and_then(byte_band) {
                links.push((a, b, band));
            }
        }
        let mut clusters = Vec::new();
        for kv in t.clusters.iter() {
            let (k, v) = kv.map_err(|e| self.io(e))?;
            let id = u64::from_be_bytes(k.as_ref().try_into().map_err(|e| corrupt("a stored cluster key", e))?);
            let c = u64::from_be_bytes(v.as_ref().try_into().map_err(|e| corrupt("a stored cluster id", e))?);
            clusters.push((id, c));
        }
        let mut held = Vec::new();
        for kv in t.held.iter() {
            let (k, _) = kv.map_err(|e| self.io(e))?;
            held.push(u64::from_be_bytes(k.as_ref().try_into().map_err(|e| corrupt("a held item key", e))?));
        }
        Ok(Loaded { items, links, clusters, held, next_id })
    }

    /// Stores an item and its links, replacing what the item had before; not yet flushed.
    pub fn put_item(&self, id: ItemId, item: &StoredItem, old_neighbours: &[ItemId], links: &[(ItemId, Band)]) -> Result<()> {
        let t = self.trees()?;
        let row = serde_json::to_vec(&ItemRow { id, item: item.clone() }).map_err(|e| corrupt("an item", e))?;
        t.items.insert(item_key(&item.key), row).map_err(|e| self.io(e))?;
        self.put_links_in(&t, id, old_neighbours, links)
    }

    /// Replaces an item's links (the item row stays); not yet flushed.
    pub fn put_links(&self, id: ItemId, old_neighbours: &[ItemId], links: &[(ItemId, Band)]) -> Result<()> {
        let t = self.trees()?;
        self.put_links_in(&t, id, old_neighbours, links)
    }

    fn put_links_in(&self, t: &Trees, id: ItemId, old_neighbours: &[ItemId], links: &[(ItemId, Band)]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for &n in old_neighbours {
            batch.remove(&link_key(id, n));
        }
        for &(n, band) in links {
            batch.insert(&link_key(id, n), &[band as u8]);
        }
        t.links.apply_batch(batch).map_err(|e| self.io(e))
    }

    /// Marks items held (or no longer held) without links; not yet flushed.
    pub fn set_held(&self, ids: &[ItemId], held: bool) -> Result<()> {
        let t = self.trees()?;
        let mut batch = sled::Batch::default();
        for id in ids {
            if held {
                batch.insert(&id.to_be_bytes(), &[]);
            } else {
                batch.remove(&id.to_be_bytes());
            }
        }
        t.held.apply_batch(batch).map_err(|e| self.io(e))
    }

    /// The stored item under `key`, encodings included.
    pub fn get_item(&self, key: &ItemKey) -> Result<Option<StoredItem>> {
        let t = self.trees()?;
        match t.items.get(item_key(key)).map_err(|e| self.io(e))? {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_slice::<ItemRow>(&v).map_err(|e| corrupt("a stored item", e))?.item)),
        }
    }

    /// Records cluster id changes (`0`: the item is gone); not yet flushed.
    pub fn put_clusters(&self, changes: &[(ItemId, ClusterId)]) -> Result<()> {
        let t = self.trees()?;
        let mut batch = sled::Batch::default();
        for &(id, c) in changes {
            if c == 0 {
                batch.remove(&id.to_be_bytes());
            } else {
                batch.insert(&id.to_be_bytes(), &c.to_be_bytes());
            }
        }
        t.clusters.apply_batch(batch).map_err(|e| self.io(e))
    }

    /// Number of distinct clusters stored.
    pub fn cluster_count(&self) -> Result<usize> {
        let t = self.trees()?;
        let ids: std::collections::HashSet<Vec<u8>> = t.clusters.iter().values().filter_map(|v| v.ok()).map(|v| v.to_vec()).collect();
        Ok(ids.len())
    }

    /// Erases an item and its links; not yet flushed.
    pub fn remove_item(&self, id: ItemId, key: &ItemKey, neighbours: &[ItemId]) -> Result<()> {
        let t = self.trees()?;
        t.items.remove(item_key(key)).map_err(|e| self.io(e))?;
        t.held.remove(id.to_be_bytes()).map_err(|e| self.io(e))?;
        let mut batch = sled::Batch::default();
        for &n in neighbours {
            batch.remove(&link_key(id, n));
        }
        t.links.apply_batch(batch).map_err(|e| self.io(e))
    }

    /// Records something for a data steward under `key` (a later record under the same key
    /// replaces it); not yet flushed.
    pub fn put_quarantine(&self, key: &str, row: &QuarantineRow) -> Result<()> {
        let t = self.trees()?;
        t.quarantine.insert(key.as_bytes(), serde_json::to_vec(row).map_err(|e| corrupt("a quarantine row", e))?).map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Up to `limit` quarantine records after `after` (key order), and whether more follow.
    pub fn quarantine(&self, after: &str, limit: usize) -> Result<(Vec<(String, QuarantineRow)>, bool)> {
        let t = self.trees()?;
        let mut out = Vec::new();
        let range = if after.is_empty() { t.quarantine.iter() } else { t.quarantine.range::<&[u8], _>((std::ops::Bound::Excluded(after.as_bytes()), std::ops::Bound::Unbounded)) };
        for kv in range {
            let (k, v) = kv.map_err(|e| self.io(e))?;
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push((String::from_utf8_lossy(&k).into_owned(), serde_json::from_slice(&v).map_err(|e| corrupt("a quarantine row", e))?));
        }
        Ok((out, false))
    }

    /// Appends records to the audit chain after `last` (the head), indexes the questions among
    /// them by item and person, records the new head apart, and flushes everything written so
    /// far (other trees included) once. Returns the chained entries.
    pub fn append_audit(&self, last: Option<(u64, &str)>, records: Vec<(Record, Vec<String>, Option<ClusterId>)>) -> Result<Vec<Entry>> {
        let t = self.trees()?;
        let mut entries = Vec::with_capacity(records.len());
        let mut head: Option<(u64, String)> = last.map(|(s, h)| (s, h.to_string()));
        for (record, items, cluster) in records {
            let entry = audit::chain(head.as_ref().map(|(s, h)| (*s, h.as_str())), record);
            t.audit.insert(entry.sequence.to_be_bytes(), serde_json::to_vec(&entry).map_err(|e| corrupt("an audit entry", e))?).map_err(|e| self.io(e))?;
            index_audit(&t, entry.sequence, &items, cluster).map_err(|e| self.io(e))?;
            head = Some((entry.sequence, entry.hash.clone()));
            entries.push(entry);
        }
        if let Some((seq, hash)) = &head {
            t.meta.insert(AUDIT_HEAD, serde_json::to_vec(&(seq, hash)).map_err(|e| corrupt("the audit head", e))?).map_err(|e| self.io(e))?;
            t.meta.insert(AUDIT_INDEXED, &seq.to_be_bytes()).map_err(|e| self.io(e))?;
        }
        t.db.flush().map_err(|e| self.io(e))?;
        Ok(entries)
    }

    /// Indexes the audit entries the item and person indexes do not cover yet (a store written
    /// before they existed, or a crash between the two writes).
    fn catch_up_audit_index(&self) -> Result<()> {
        let t = self.trees()?;
        let from = match t.meta.get(AUDIT_INDEXED).map_err(|e| self.io(e))? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|e| corrupt("the audit index mark", e))?) + 1,
            None => 0,
        };
        let mut last = None;
        for kv in t.audit.range(from.to_be_bytes()..) {
            let (_, v) = kv.map_err(|e| self.io(e))?;
            let e: Entry = serde_json::from_slice(&v).map_err(|e| corrupt("an audit entry", e))?;
            let (items, cluster) = question_keys(&e);
            index_audit(&t, e.sequence, &items, cluster).map_err(|e| self.io(e))?;
            last = Some(e.sequence);
        }
        if let Some(seq) = last {
            t.meta.insert(AUDIT_INDEXED, &seq.to_be_bytes()).map_err(|e| self.io(e))?;
            t.db.flush().map_err(|e| self.io(e))?;
            tracing::info!(up_to = seq, "audit index brought up to date");
        }
        Ok(())
    }

    /// The last audit entry's sequence and hash, as the chain has it.
    pub fn audit_head(&self) -> Result<Option<(u64, String)>> {
        let t = self.trees()?;
        Ok(match t.audit.last().map_err(|e| self.io(e))? {
            Some((_, v)) => {
                let e: Entry = serde_json::from_slice(&v).map_err(|e| corrupt("the last audit entry", e))?;
                Some((e.sequence, e.hash))
            }
            None => None,
        })
    }

    /// The audit head recorded apart at the last append.
    pub fn recorded_audit_head(&self) -> Result<Option<(u64, String)>> {
        let t = self.trees()?;
        match t.meta.get(AUDIT_HEAD).map_err(|e| self.io(e))? {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(|e| corrupt("the recorded audit head (altered?)", e))?)),
        }
    }

    /// One audit entry by sequence.
    pub fn audit_entry(&self, sequence: u64) -> Result<Option<Entry>> {
        let t = self.trees()?;
        match t.audit.get(sequence.to_be_bytes()).map_err(|e| self.io(e))? {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(|e| corrupt(&format!("audit entry {sequence} (altered?)"), e))?)),
        }
    }

    /// Audit entries from sequence `from` on, in order, until `f` returns false or
    /// `max_examined` entries were read. Returns the last sequence examined and whether entries
    /// remain after it.
    pub fn audit_scan(&self, from: u64, max_examined: usize, mut f: impl FnMut(&Entry) -> bool) -> Result<(Option<u64>, bool)> {
        let t = self.trees()?;
        let mut last = None;
        for (examined, kv) in t.audit.range(from.to_be_bytes()..).enumerate() {
            if examined == max_examined {
                return Ok((last, true));
            }
            let (_, v) = kv.map_err(|e| self.io(e))?;
            let e: Entry = serde_json::from_slice(&v).map_err(|e| corrupt("an audit entry (altered?)", e))?;
            last = Some(e.sequence);
            if !f(&e) {
                let more = t.audit.range((e.sequence + 1).to_be_bytes()..).next().is_some();
                return Ok((last, more));
            }
        }
        Ok((last, false))
    }

    /// The sequences of the question entries that named any of `items` (labels) or were about the
    /// person cluster `cluster`, sorted, at most `max`; and whether there were more.
    pub fn audit_about(&self, items: &[String], cluster: Option<ClusterId>, max: usize) -> Result<(Vec<u64>, bool)> {
        let t = self.trees()?;
        let mut seqs = std::collections::BTreeSet::new();
        let mut more = false;
        let mut take = |k: &[u8]| -> bool {
            let s = u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8-byte suffix"));
            seqs.insert(s);
            seqs.len() <= max
        };
        'items: for label in items {
            let mut prefix = label.as_bytes().to_vec();
            prefix.push(0);
            for kv in t.audit_items.scan_prefix(&prefix) {
                let (k, _) = kv.map_err(|e| self.io(e))?;
                if !take(&k) {
                    more = true;
                    break 'items;
                }
            }
        }
        if let Some(c) = cluster.filter(|_| !more) {
            for kv in t.audit_clusters.scan_prefix(c.to_be_bytes()) {
                let (k, _) = kv.map_err(|e| self.io(e))?;
                if !take(&k) {
                    more = true;
                    break;
                }
            }
        }
        let mut v: Vec<u64> = seqs.into_iter().collect();
        v.truncate(max);
        Ok((v, more))
    }

    /// All audit entries in stored order; an unreadable entry is reported as an error. Reads the
    /// whole chain: for offline commands (`audit verify`, `audit list`) only.
    pub fn audit_entries(&self) -> Result<Vec<Entry>> {
        let t = self.trees()?;
        let mut out = Vec::new();
        for (i, kv) in t.audit.iter().enumerate() {
            let (_, v) = kv.map_err(|e| self.io(e))?;
            out.push(serde_json::from_slice(&v).map_err(|e| corrupt(&format!("audit entry at position {i} (altered?)"), e))?);
        }
        Ok(out)
    }

    /// Stores (or replaces) a consent; not yet flushed.
    pub fn put_consent(&self, node: &str, consent_id: &str, row: &ConsentRow) -> Result<()> {
        let t = self.trees()?;
        t.consents.insert(id_key(node, consent_id), serde_json::to_vec(row).map_err(|e| corrupt("a consent", e))?).map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Removes a consent; whether it existed. Not yet flushed.
    pub fn remove_consent(&self, node: &str, consent_id: &str) -> Result<bool> {
        let t = self.trees()?;
        Ok(t.consents.remove(id_key(node, consent_id)).map_err(|e| self.io(e))?.is_some())
    }

    /// Every stored consent: (node, consent id, row).
    pub fn consents(&self) -> Result<Vec<(String, String, ConsentRow)>> {
        let t = self.trees()?;
        let mut out = Vec::new();
        for kv in t.consents.iter() {
            let (k, v) = kv.map_err(|e| self.io(e))?;
            let mut parts = k.splitn(2, |b| *b == 0);
            let node = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let id = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            out.push((node, id, serde_json::from_slice(&v).map_err(|e| corrupt("a stored consent", e))?));
        }
        Ok(out)
    }

    /// Appends a policy version (it becomes the one in force); not yet flushed.
    pub fn put_policy(&self, row: &PolicyRow) -> Result<()> {
        let t = self.trees()?;
        let seq = t.policies.last().map_err(|e| self.io(e))?.map(|(k, _)| u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8])) + 1).unwrap_or(0);
        t.policies.insert(seq.to_be_bytes(), serde_json::to_vec(row).map_err(|e| corrupt("a policy", e))?).map_err(|e| self.io(e))?;
        Ok(())
    }

    /// The policy version in force (the last loaded), if any was ever loaded.
    pub fn active_policy(&self) -> Result<Option<PolicyRow>> {
        let t = self.trees()?;
        match t.policies.last().map_err(|e| self.io(e))? {
            None => Ok(None),
            Some((_, v)) => Ok(Some(serde_json::from_slice(&v).map_err(|e| corrupt("the stored policy", e))?)),
        }
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<()> {
        let t = self.trees()?;
        t.db.flush().map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Counts of stored encodings per node and key epoch.
    pub fn counts_by_node_epoch(&self) -> Result<std::collections::BTreeMap<(String, u32), usize>> {
        let t = self.trees()?;
        let mut m = std::collections::BTreeMap::new();
        for kv in t.items.iter() {
            let (_, v) = kv.map_err(|e| self.io(e))?;
            let row: ItemRow = serde_json::from_slice(&v).map_err(|e| corrupt("a stored item", e))?;
            for e in &row.item.encodings {
                *m.entry((row.item.key.node.clone(), e.epoch)).or_insert(0) += 1;
            }
        }
        Ok(m)
    }

    /// Counts of stored items per node.
    pub fn counts_by_node(&self) -> Result<std::collections::BTreeMap<String, usize>> {
        let t = self.trees()?;
        let mut m = std::collections::BTreeMap::new();
        for kv in t.items.iter() {
            let (k, _) = kv.map_err(|e| self.io(e))?;
            let node = k.split(|b| *b == 0).next().unwrap_or_default();
            *m.entry(String::from_utf8_lossy(node).into_owned()).or_insert(0) += 1;
        }
        Ok(m)
    }

    pub fn link_count(&self) -> Result<usize> {
        Ok(self.trees()?.links.len())
    }

    /// Items held without links.
    pub fn held_count(&self) -> Result<usize> {
        Ok(self.trees()?.held.len())
    }

    /// Records the bit frequencies an epoch's LSH positions were chosen from; not yet flushed.
    pub fn put_lsh_frequencies(&self, epoch: u32, frequencies: &[u32]) -> Result<()> {
        let t = self.trees()?;
        let key = format!("lsh_frequencies/{epoch}");
        t.meta.insert(key.as_bytes(), serde_json::to_vec(frequencies).map_err(|e| corrupt("LSH frequencies", e))?).map_err(|e| self.io(e))?;
        Ok(())
    }

    /// The stored LSH frequencies, per epoch.
    pub fn lsh_frequencies(&self) -> Result<Vec<(u32, Vec<u32>)>> {
        let t = self.trees()?;
        let mut out = Vec::new();
        for kv in t.meta.scan_prefix(b"lsh_frequencies/") {
            let (k, v) = kv.map_err(|e| self.io(e))?;
            let epoch: u32 = String::from_utf8_lossy(&k["lsh_frequencies/".len()..]).parse().map_err(|e| corrupt("an LSH frequencies key", e))?;
            out.push((epoch, serde_json::from_slice(&v).map_err(|e| corrupt("LSH frequencies", e))?));
        }
        Ok(out)
    }

    /// Bytes sled says it occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        let t = self.trees()?;
        t.db.size_on_disk().map_err(|e| self.io(e))
    }
}

/// The labels and cluster a question entry is indexed under (none for other entries).
pub fn question_keys(e: &Entry) -> (Vec<String>, Option<ClusterId>) {
    match &e.record.event {
        audit::Event::WhoElseAnswered { anchor, shown, cluster, .. } => {
            (std::iter::once(anchor.clone()).chain(shown.iter().cloned()).collect(), *cluster)
        }
        audit::Event::WhoElseRefused { anchor, cluster, .. } => (vec![anchor.clone()], *cluster),
        _ => (Vec::new(), None),
    }
}

fn index_audit(t: &Trees, sequence: u64, items: &[String], cluster: Option<ClusterId>) -> std::result::Result<(), sled::Error> {
    for label in items {
        let mut k = label.as_bytes().to_vec();
        k.push(0);
        k.extend_from_slice(&sequence.to_be_bytes());
        t.audit_items.insert(k, &[])?;
    }
    if let Some(c) = cluster {
        let mut k = c.to_be_bytes().to_vec();
        k.extend_from_slice(&sequence.to_be_bytes());
        t.audit_clusters.insert(k, &[])?;
    }
    Ok(())
}

fn id_key(node: &str, id: &str) -> Vec<u8> {
    let mut v = node.as_bytes().to_vec();
    v.push(0);
    v.extend_from_slice(id.as_bytes());
    v
}
