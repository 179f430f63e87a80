//! The node's storage: the only module that knows sled.
//!
//! Trees: `records` (record id → identity, clear, never leaves the node, with its encoding),
//! `relationships` (relationship id → relationship with its opaque reference), `outbox`
//! (sequence → change still to publish), `consents` (consent id → the person's consent as
//! recorded here), `reports` (time → import report) and `meta` (`instance_id`: 16 random bytes
//! made when the store is created, see [`NodeStore::instance_id`]).
//! Changes are flushed before a command reports success.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::normalise::NormalisedIdentity;

const CACHE_BYTES: u64 = 64 * 1024 * 1024;
const INSTANCE_ID_KEY: &str = "instance_id";

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
    /// Obscured (*oscuramento*) at the person's request: the coordinator shows it to nobody.
    /// Set by `ponte-node obscure`, kept across imports.
    #[serde(default)]
    pub obscured: bool,
    /// Never encoded (DOMAIN.md §3: SerD anonymity, *parto anonimo*): kept here, never published,
    /// never an anchor. Set by the import's `never_encode` column.
    #[serde(default)]
    pub never_publish: bool,
}

impl LocalRelationship {
    /// Whether this relationship may be published (and so be an anchor or carry a consent).
    pub fn publishable(&self) -> bool {
        !self.never_publish
    }
}

/// A consent the person (or their representative) gave at this entity: which service categories
/// may be disclosed to which kinds of entity for which purposes, between two days. Local data of
/// this entity; the coordinator receives it keyed by one of the record's published references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalConsent {
    /// Random opaque id, `[a-z0-9-]`; carries nothing about the person.
    pub consent_id: String,
    pub record_id: String,
    /// `v1::ServiceCategory` values.
    pub categories: Vec<i32>,
    /// `v1::EntityType` values: the kinds of entity that may receive them.
    pub recipients: Vec<i32>,
    /// `v1::Purpose` values.
    pub purposes: Vec<i32>,
    /// First valid day, `YYYYMMDD`, inclusive.
    pub valid_from: u32,
    /// Last valid day, `YYYYMMDD`, inclusive.
    pub valid_until: u32,
    /// `v1::ConsentGiver` value.
    pub given_by: i32,
    /// Seconds since the Unix epoch.
    pub recorded_at: u64,
    /// Seconds since the Unix epoch; revocation has immediate effect once delivered.
    #[serde(default)]
    pub revoked_at: Option<u64>,
}

/// A change waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutboxOp {
    /// Publish the current state of a relationship (with its record's encoding).
    Upsert { relationship_id: String },
    /// Erase a reference at the coordinator.
    Withdraw { reference: String },
    /// Record (or replace) a consent at the coordinator, keyed by one of its record's published
    /// references.
    Consent { consent_id: String },
    /// Revoke a consent at the coordinator. Sent even if the consent is no longer stored here.
    RevokeConsent { consent_id: String },
    /// Send a relationship's current obscured flag.
    Obscure { relationship_id: String },
}

pub struct NodeStore {
    db: sled::Db,
    instance_id: [u8; 16],
    records: sled::Tree,
    relationships: sled::Tree,
    outbox: sled::Tree,
    consents: sled::Tree,
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
        let meta = db.open_tree("meta")?;
        let instance_id = match meta.get(INSTANCE_ID_KEY)? {
            Some(v) => <[u8; 16]>::try_from(v.as_ref())
                .map_err(|_| anyhow::anyhow!("the node store in {} is damaged: its instance id is not 16 bytes", dir.display()))?,
            None => {
                let mut id = [0u8; 16];
                rand::fill(&mut id);
                meta.insert(INSTANCE_ID_KEY, &id[..])?;
                db.flush()?;
                id
            }
        };
        Ok(NodeStore {
            instance_id,
            records: db.open_tree("records")?,
            relationships: db.open_tree("relationships")?,
            outbox: db.open_tree("outbox")?,
            consents: db.open_tree("consents")?,
            reports: db.open_tree("reports")?,
            db,
        })
    }

    /// This store's random id, made when the store was created and never changed. A data
    /// directory deleted and recreated gets a new one, so the outbox's sequence numbers (which
    /// start again) are never taken for the old store's: publish batch ids include it.
    pub fn instance_id(&self) -> [u8; 16] {
        self.instance_id
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

    pub fn get_consent(&self, id: &str) -> Result<Option<LocalConsent>> {
        Ok(match self.consents.get(id)? {
            Some(v) => Some(serde_json::from_slice(&v)?),
            None => None,
        })
    }

    pub fn put_consent(&self, c: &LocalConsent) -> Result<()> {
        self.consents.insert(c.consent_id.as_bytes(), serde_json::to_vec(c)?)?;
        Ok(())
    }

    pub fn remove_consent(&self, id: &str) -> Result<()> {
        self.consents.remove(id)?;
        Ok(())
    }

    /// Every consent, in consent-id order.
    pub fn consents(&self) -> impl Iterator<Item = Result<LocalConsent>> + '_ {
        self.consents.iter().map(|kv| {
            let (_, v) = kv?;
            Ok(serde_json::from_slice(&v)?)
        })
    }

    /// Consents of one record, oldest first.
    pub fn consents_of(&self, record_id: &str) -> Result<Vec<LocalConsent>> {
        let mut v = Vec::new();
        for c in self.consents() {
            let c = c?;
            if c.record_id == record_id {
                v.push(c);
            }
        }
        v.sort_by(|a, b| (a.recorded_at, &a.consent_id).cmp(&(b.recorded_at, &b.consent_id)));
        Ok(v)
    }

    pub fn consent_count(&self) -> usize {
        self.consents.len()
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

    /// Whether an upsert of this relationship is still queued.
    pub fn is_queued(&self, relationship_id: &str) -> Result<bool> {
        for kv in self.outbox.iter() {
            let (_, val) = kv?;
            if let Ok(OutboxOp::Upsert { relationship_id: r }) = serde_json::from_slice::<OutboxOp>(&val)
                && r == relationship_id
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Moves a queued change to the end of the queue (it could not be delivered yet and must not
    /// hold up the changes behind it), durably. Returns its new sequence number.
    pub fn requeue(&self, seq: u64) -> Result<Option<u64>> {
        let Some(val) = self.outbox.get(seq.to_be_bytes())? else { return Ok(None) };
        let new_seq = self.db.generate_id()?;
        let mut b = sled::Batch::default();
        b.remove(&seq.to_be_bytes());
        b.insert(&new_seq.to_be_bytes(), val);
        self.outbox.apply_batch(b)?;
        self.flush()?;
        Ok(Some(new_seq))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relationships_stored_before_obscuring_existed_still_read() {
        let old = r#"{"relationship_id":"R1","record_id":"P1","reference":"ab12","unit":"u","category":20,"status":3,"since_month":202403,"case_manager":true,"plan":1,"contact":2}"#;
        let r: LocalRelationship = serde_json::from_str(old).unwrap();
        assert!(!r.obscured && !r.never_publish && r.publishable());
    }

    #[test]
    fn consents_and_requeued_changes_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let c = LocalConsent {
            consent_id: "c1".into(),
            record_id: "P1".into(),
            categories: vec![40],
            recipients: vec![2],
            purposes: vec![1],
            valid_from: 20260101,
            valid_until: 20271231,
            given_by: 1,
            recorded_at: 5,
            revoked_at: None,
        };
        let instance = {
            let s = NodeStore::open(dir.path()).unwrap();
            s.put_consent(&c).unwrap();
            let first = s.enqueue(&OutboxOp::Consent { consent_id: "c1".into() }).unwrap();
            s.enqueue(&OutboxOp::Upsert { relationship_id: "R1".into() }).unwrap();
            let moved = s.requeue(first).unwrap().unwrap();
            assert!(moved > first);
            assert_eq!(s.requeue(first).unwrap(), None, "a change no longer queued is not requeued");
            s.flush().unwrap();
            s.instance_id()
        };
        // sled's background flusher may hold the directory's lock a moment after the drop.
        let start = std::time::Instant::now();
        let s = loop {
            match NodeStore::open(dir.path()) {
                Ok(s) => break s,
                Err(e) if start.elapsed() < std::time::Duration::from_secs(10) => {
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(s.instance_id(), instance, "the instance id is the store's, kept across opens");
        let other = tempfile::tempdir().unwrap();
        assert_ne!(NodeStore::open(other.path()).unwrap().instance_id(), instance, "another store, another instance id");
        assert_eq!(s.consents_of("P1").unwrap(), vec![c]);
        assert!(s.consents_of("P2").unwrap().is_empty());
        let ops: Vec<OutboxOp> = s.outbox_head(10).unwrap().into_iter().map(|(_, op)| op).collect();
        assert_eq!(ops, vec![OutboxOp::Upsert { relationship_id: "R1".into() }, OutboxOp::Consent { consent_id: "c1".into() }]);
    }
}
