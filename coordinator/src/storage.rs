//! The coordinator's storage: the only module that knows sled.
//!
//! Trees: `items` (node ‖ 0 ‖ reference → item with its internal id), `links` (id ‖ id → band),
//! `audit` (sequence → chained entry), `batches` (node ‖ 0 ‖ batch id → ack, for idempotent
//! retries), `clusters` (item id → cluster id), `consents` (node ‖ 0 ‖ consent id → consent with
//! the reference it is keyed by), `policies` (sequence → a policy version as loaded) and `meta`
//! (the audit head, recorded apart from the chain at every append). Every write that is acknowledged to a client is flushed first, so it
//! survives `kill -9`.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::audit::{self, Entry, Record};
use crate::linker::{Band, ClusterId, ItemId};
use crate::model::{ItemKey, StoredItem};

/// sled's page cache; its default (1 GB) is far more than the coordinator needs here.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

pub struct Store {
    db: sled::Db,
    items: sled::Tree,
    links: sled::Tree,
    audit: sled::Tree,
    batches: sled::Tree,
    clusters: sled::Tree,
    consents: sled::Tree,
    policies: sled::Tree,
    meta: sled::Tree,
}

const AUDIT_HEAD: &[u8] = b"audit_head";

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

fn band_byte(b: Band) -> u8 {
    b as u8
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
    pub next_id: ItemId,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") => {
                    anyhow::anyhow!(
                        "the data directory {} is in use by another process (is a coordinator already running on it?)",
                        dir.display()
                    )
                }
                other => anyhow::anyhow!("cannot open the store in {}: {other}", dir.display()),
            })?;
        Ok(Store {
            items: db.open_tree("items")?,
            links: db.open_tree("links")?,
            audit: db.open_tree("audit")?,
            batches: db.open_tree("batches")?,
            clusters: db.open_tree("clusters")?,
            consents: db.open_tree("consents")?,
            policies: db.open_tree("policies")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    /// Everything needed to rebuild the in-memory index.
    pub fn load(&self) -> Result<Loaded> {
        let mut items = Vec::new();
        let mut next_id = 1;
        for kv in self.items.iter() {
            let (_, v) = kv?;
            let row: ItemRow = serde_json::from_slice(&v).context("a stored item is unreadable")?;
            next_id = next_id.max(row.id + 1);
            items.push((row.id, row.item));
        }
        let mut links = Vec::new();
        for kv in self.links.iter() {
            let (k, v) = kv?;
            let a = u64::from_be_bytes(k[..8].try_into()?);
            let b = u64::from_be_bytes(k[8..16].try_into()?);
            if let Some(band) = v.first().copied().and_then(byte_band) {
                links.push((a, b, band));
            }
        }
        let mut clusters = Vec::new();
        for kv in self.clusters.iter() {
            let (k, v) = kv?;
            let id = u64::from_be_bytes(k.as_ref().try_into().context("a stored cluster key is unreadable")?);
            let c = u64::from_be_bytes(v.as_ref().try_into().context("a stored cluster id is unreadable")?);
            clusters.push((id, c));
        }
        Ok(Loaded { items, links, clusters, next_id })
    }

    /// Stores an item and its links, replacing what the item had before; not yet flushed.
    pub fn put_item(&self, id: ItemId, item: &StoredItem, old_neighbours: &[ItemId], links: &[(ItemId, Band)]) -> Result<()> {
        let row = serde_json::to_vec(&ItemRow { id, item: item.clone() })?;
        self.items.insert(item_key(&item.key), row)?;
        let mut batch = sled::Batch::default();
        for &n in old_neighbours {
            batch.remove(&link_key(id, n));
        }
        for &(n, band) in links {
            batch.insert(&link_key(id, n), &[band_byte(band)]);
        }
        self.links.apply_batch(batch)?;
        Ok(())
    }

    /// The stored item under `key`, encodings included.
    pub fn get_item(&self, key: &ItemKey) -> Result<Option<StoredItem>> {
        match self.items.get(item_key(key))? {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_slice::<ItemRow>(&v).context("a stored item is unreadable")?.item)),
        }
    }

    /// Records cluster id changes (`0`: the item is gone); not yet flushed.
    pub fn put_clusters(&self, changes: &[(ItemId, ClusterId)]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for &(id, c) in changes {
            if c == 0 {
                batch.remove(&id.to_be_bytes());
            } else {
                batch.insert(&id.to_be_bytes(), &c.to_be_bytes());
            }
        }
        self.clusters.apply_batch(batch)?;
        Ok(())
    }

    /// Number of distinct clusters stored.
    pub fn cluster_count(&self) -> usize {
        let ids: std::collections::HashSet<Vec<u8>> = self.clusters.iter().values().filter_map(|v| v.ok()).map(|v| v.to_vec()).collect();
        ids.len()
    }

    /// Erases an item and its links; not yet flushed.
    pub fn remove_item(&self, id: ItemId, key: &ItemKey, neighbours: &[ItemId]) -> Result<()> {
        self.items.remove(item_key(key))?;
        let mut batch = sled::Batch::default();
        for &n in neighbours {
            batch.remove(&link_key(id, n));
        }
        self.links.apply_batch(batch)?;
        Ok(())
    }

    /// The ack stored for a batch already applied, if any.
    pub fn batch_ack(&self, node: &str, batch_id: u64) -> Result<Option<(u32, u32)>> {
        Ok(self.batches.get(batch_key(node, batch_id))?.and_then(|v| {
            (v.len() == 8).then(|| (u32::from_be_bytes(v[..4].try_into().unwrap()), u32::from_be_bytes(v[4..].try_into().unwrap())))
        }))
    }

    pub fn put_batch_ack(&self, node: &str, batch_id: u64, accepted: u32, links: u32) -> Result<()> {
        let mut v = accepted.to_be_bytes().to_vec();
        v.extend_from_slice(&links.to_be_bytes());
        self.batches.insert(batch_key(node, batch_id), v)?;
        Ok(())
    }

    /// Appends a record to the audit chain, records the new head apart, and flushes both.
    pub fn append_audit(&self, last: Option<(u64, &str)>, record: Record) -> Result<Entry> {
        let entry = audit::chain(last, record);
        self.audit.insert(entry.sequence.to_be_bytes(), serde_json::to_vec(&entry)?)?;
        self.meta.insert(AUDIT_HEAD, serde_json::to_vec(&(entry.sequence, &entry.hash))?)?;
        self.db.flush()?;
        Ok(entry)
    }

    /// The last audit entry's sequence and hash, as the chain has it.
    pub fn audit_head(&self) -> Result<Option<(u64, String)>> {
        Ok(match self.audit.last()? {
            Some((_, v)) => {
                let e: Entry = serde_json::from_slice(&v)?;
                Some((e.sequence, e.hash))
            }
            None => None,
        })
    }

    /// The audit head recorded apart at the last append.
    pub fn recorded_audit_head(&self) -> Result<Option<(u64, String)>> {
        match self.meta.get(AUDIT_HEAD)? {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_slice(&v).context("the recorded audit head is unreadable (altered?)")?)),
        }
    }

    /// Stores (or replaces) a consent; not yet flushed.
    pub fn put_consent(&self, node: &str, consent_id: &str, row: &ConsentRow) -> Result<()> {
        self.consents.insert(id_key(node, consent_id), serde_json::to_vec(row)?)?;
        Ok(())
    }

    /// Removes a consent; whether it existed. Not yet flushed.
    pub fn remove_consent(&self, node: &str, consent_id: &str) -> Result<bool> {
        Ok(self.consents.remove(id_key(node, consent_id))?.is_some())
    }

    /// Every stored consent: (node, consent id, row).
    pub fn consents(&self) -> Result<Vec<(String, String, ConsentRow)>> {
        let mut out = Vec::new();
        for kv in self.consents.iter() {
            let (k, v) = kv?;
            let mut parts = k.splitn(2, |b| *b == 0);
            let node = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let id = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            out.push((node, id, serde_json::from_slice(&v).context("a stored consent is unreadable")?));
        }
        Ok(out)
    }

    /// Appends a policy version (it becomes the one in force) and flushes.
    pub fn put_policy(&self, row: &PolicyRow) -> Result<()> {
        let seq = self.policies.last()?.map(|(k, _)| u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8])) + 1).unwrap_or(0);
        self.policies.insert(seq.to_be_bytes(), serde_json::to_vec(row)?)?;
        self.db.flush()?;
        Ok(())
    }

    /// The policy version in force (the last loaded), if any was ever loaded.
    pub fn active_policy(&self) -> Result<Option<PolicyRow>> {
        match self.policies.last()? {
            None => Ok(None),
            Some((_, v)) => Ok(Some(serde_json::from_slice(&v).context("the stored policy is unreadable")?)),
        }
    }

    /// All audit entries in stored order; an unreadable entry is reported as an error.
    pub fn audit_entries(&self) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for (i, kv) in self.audit.iter().enumerate() {
            let (_, v) = kv?;
            out.push(serde_json::from_slice(&v).with_context(|| format!("audit entry at position {i} is unreadable (altered?)"))?);
        }
        Ok(out)
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Counts of stored encodings per node and key epoch.
    pub fn counts_by_node_epoch(&self) -> Result<std::collections::BTreeMap<(String, u32), usize>> {
        let mut m = std::collections::BTreeMap::new();
        for kv in self.items.iter() {
            let (_, v) = kv?;
            let row: ItemRow = serde_json::from_slice(&v)?;
            for e in &row.item.encodings {
                *m.entry((row.item.key.node.clone(), e.epoch)).or_insert(0) += 1;
            }
        }
        Ok(m)
    }

    /// Counts of stored items per node.
    pub fn counts_by_node(&self) -> Result<std::collections::BTreeMap<String, usize>> {
        let mut m = std::collections::BTreeMap::new();
        for kv in self.items.iter() {
            let (k, _) = kv?;
            let node = k.split(|b| *b == 0).next().unwrap_or_default();
            *m.entry(String::from_utf8_lossy(node).into_owned()).or_insert(0) += 1;
        }
        Ok(m)
    }

    pub fn link_count(&self) -> usize {
        self.links.len()
    }
}

fn id_key(node: &str, id: &str) -> Vec<u8> {
    let mut v = node.as_bytes().to_vec();
    v.push(0);
    v.extend_from_slice(id.as_bytes());
    v
}

fn batch_key(node: &str, batch_id: u64) -> Vec<u8> {
    let mut v = node.as_bytes().to_vec();
    v.push(0);
    v.extend_from_slice(&batch_id.to_be_bytes());
    v
}
