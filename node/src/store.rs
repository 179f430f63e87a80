//! The node's storage: the only module that knows sled.
//!
//! Trees: `records` (record id → identity, clear, never leaves the node, with its encoding),
//! `relationships` (relationship id → relationship with its opaque reference), `outbox`
//! (sequence → change still to publish), `reports` (time → import report) and `meta`.
//! Changes are flushed before a command reports success.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::normalise::NormalisedIdentity;

const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// A person record as the entity exported it, normalised. It is encoded when published, under
/// every key epoch the node is configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalRecord {
    pub record_id: String,
    pub identity: NormalisedIdentity,
    /// Raised each time the identity changes; travels with the encodings.
    pub revision: u64,
}

/// A care relationship at this entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalRelationship {
    pub relationship_id: String,
    pub record_id: String,
    /// Opaque, random reference used on the wire.
    pub reference: String,
    pub unit: String,
    pub category: i32,
    pub status: i32,
    pub since_month: u32,
    pub case_manager: bool,
    pub plan: i32,
    pub contact: i32,
}

/// A change waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutboxOp {
    /// Publish the current state of a relationship (with its record's encoding).
    Upsert { relationship_id: String },
    /// Erase a reference at the coordinator.
    Withdraw { reference: String },
}

pub struct NodeStore {
    db: sled::Db,
    records: sled::Tree,
    relationships: sled::Tree,
    outbox: sled::Tree,
    reports: sled::Tree,
}

impl NodeStore {
    pub fn open(dir: &Path) -> Result<NodeStore> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the node data directory {}", dir.display()))?;
        let db = sled::Config::new().path(dir.join("sled")).cache_capacity(CACHE_BYTES).open().map_err(|e| {
            let text = e.to_string();
            if text.contains("lock") || text.contains("WouldBlock") || text.contains("temporarily unavailable") {
                anyhow::anyhow!(
                    "the node data directory {} is in use by another ponte-node process (a running `serve`?); stop it or wait for it to finish",
                    dir.display()
                )
            } else {
                anyhow::anyhow!("cannot open the node store in {}: {text}", dir.display())
            }
        })?;
        Ok(NodeStore {
            records: db.open_tree("records")?,
            relationships: db.open_tree("relationships")?,
            outbox: db.open_tree("outbox")?,
            reports: db.open_tree("reports")?,
            db,
        })
    }

    pub fn get_record(&self, id: &str) -> Result<Option<LocalRecord>> {
        Ok(match self.records.get(id)? {
            Some(v) => Some(serde_json::from_slice(&v)?),
            None => None,
        })
    }

    pub fn put_record(&self, r: &LocalRecord) -> Result<()> {
        self.records.insert(r.record_id.as_bytes(), serde_json::to_vec(r)?)?;
        Ok(())
    }

    pub fn remove_record(&self, id: &str) -> Result<()> {
        self.records.remove(id)?;
        Ok(())
    }

    pub fn records(&self) -> impl Iterator<Item = Result<LocalRecord>> + '_ {
        self.records.iter().map(|kv| {
            let (_, v) = kv?;
            Ok(serde_json::from_slice(&v)?)
        })
    }

    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    pub fn get_relationship(&self, id: &str) -> Result<Option<LocalRelationship>> {
        Ok(match self.relationships.get(id)? {
            Some(v) => Some(serde_json::from_slice(&v)?),
            None => None,
        })
    }

    pub fn put_relationship(&self, r: &LocalRelationship) -> Result<()> {
        self.relationships.insert(r.relationship_id.as_bytes(), serde_json::to_vec(r)?)?;
        Ok(())
    }

    pub fn remove_relationship(&self, id: &str) -> Result<()> {
        self.relationships.remove(id)?;
        Ok(())
    }

    pub fn relationships(&self) -> impl Iterator<Item = Result<LocalRelationship>> + '_ {
        self.relationships.iter().map(|kv| {
            let (_, v) = kv?;
            Ok(serde_json::from_slice(&v)?)
        })
    }

    /// Relationships of one record, in relationship-id order.
    pub fn relationships_of(&self, record_id: &str) -> Result<Vec<LocalRelationship>> {
        let mut v = Vec::new();
        for r in self.relationships() {
            let r = r?;
            if r.record_id == record_id {
                v.push(r);
            }
        }
        Ok(v)
    }

    /// Queues a change; returns its sequence number.
    pub fn enqueue(&self, op: &OutboxOp) -> Result<u64> {
        let seq = self.db.generate_id()?;
        self.outbox.insert(seq.to_be_bytes(), serde_json::to_vec(op)?)?;
        Ok(seq)
    }

    /// Up to `max` queued changes, oldest first.
    pub fn outbox_head(&self, max: usize) -> Result<Vec<(u64, OutboxOp)>> {
        let mut v = Vec::new();
        for kv in self.outbox.iter().take(max) {
            let (k, val) = kv?;
            let seq = u64::from_be_bytes(k.as_ref().try_into().context("outbox key")?);
            v.push((seq, serde_json::from_slice(&val)?));
        }
        Ok(v)
    }

    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Removes acknowledged changes and makes that durable.
    pub fn ack(&self, seqs: &[u64]) -> Result<()> {
        let mut b = sled::Batch::default();
        for s in seqs {
            b.remove(&s.to_be_bytes());
        }
        self.outbox.apply_batch(b)?;
        self.flush()
    }

    pub fn put_report(&self, json: &[u8]) -> Result<()> {
        let id = self.db.generate_id()?;
        self.reports.insert(id.to_be_bytes(), json)?;
        Ok(())
    }

    pub fn last_report(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.reports.last()?.map(|(_, v)| v.to_vec()))
    }

    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}
