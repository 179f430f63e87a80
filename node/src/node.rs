//! A node's local operations: import into the store, list, withdraw. Publishing and questions
//! are in [`crate::client`].

use std::path::Path;

use anyhow::{Context, Result};
use ponte_proto::schema::LinkageSchema;
use ponte_proto::v1;
use ponte_proto::vocab;

use crate::config::NodeConfig;
use crate::encode::Encoder;
use crate::import::{ImportReport, read_export};
use crate::secret::LinkageSecret;
use crate::store::{LocalRecord, LocalRelationship, NodeStore, OutboxOp};

/// An open node: configuration, store, schema and (when needed) the encoder.
pub struct Node {
    pub config: NodeConfig,
    pub store: NodeStore,
    pub schema: LinkageSchema,
}

/// A fresh opaque reference: 128 random bits, hex. Carries nothing about the person.
pub fn new_reference() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    hex::encode(b)
}

impl Node {
    pub fn open(config: NodeConfig) -> Result<Node> {
        let schema = match &config.schema_file {
            Some(p) => LinkageSchema::load(p).map_err(anyhow::Error::msg)?,
            None => LinkageSchema::default_schema(),
        };
        let store = NodeStore::open(&config.data_dir)?;
        Ok(Node { config, store, schema })
    }

    /// One encoder per configured key epoch: the current secret first, then any extra ones
    /// (during a rotation). Loading checks every secret file.
    pub fn encoders(&self) -> Result<Vec<Encoder>> {
        let mut out: Vec<Encoder> = Vec::new();
        for path in std::iter::once(&self.config.secret_file).chain(&self.config.extra_secret_files) {
            let secret = LinkageSecret::load(path).map_err(anyhow::Error::msg)?;
            if out.iter().any(|e| e.epoch == secret.epoch) {
                anyhow::bail!("two configured secret files are both for key epoch {}: {}", secret.epoch, path.display());
            }
            out.push(Encoder::new(&secret, &self.schema));
        }
        Ok(out)
    }

    /// Queues every relationship for publishing again (after adding a key epoch).
    pub fn republish_all(&self) -> Result<usize> {
        let mut n = 0;
        for r in self.store.relationships() {
            self.store.enqueue(&OutboxOp::Upsert { relationship_id: r?.relationship_id })?;
            n += 1;
        }
        self.store.flush()?;
        Ok(n)
    }

    /// Imports an export file: new and changed rows are stored, encoded and queued for publishing.
    pub fn import_file(&self, path: &Path, progress: impl Fn(u64)) -> Result<ImportReport> {
        // Fail early, before anything is stored, if a secret is missing or unreadable.
        self.encoders()?;
        let file = std::fs::File::open(path).with_context(|| format!("cannot open the export {}", path.display()))?;
        let (rows, report) = read_export(std::io::BufReader::new(file), &path.display().to_string(), &self.config.import)
            .map_err(|e| anyhow::anyhow!(e.0))?;
        for (i, row) in rows.iter().enumerate() {
            let previous = self.store.get_record(&row.record_id)?;
            let record_changed = previous.as_ref().is_none_or(|p| p.identity != row.identity);
            if record_changed {
                let record = LocalRecord {
                    record_id: row.record_id.clone(),
                    identity: row.identity.clone(),
                    revision: previous.map(|p| p.revision + 1).unwrap_or(1),
                };
                self.store.put_record(&record)?;
            }
            let existing = self.store.get_relationship(&row.relationship_id)?;
            if let Some(e) = &existing
                && e.record_id != row.record_id {
                    // The entity moved a relationship to another person record: erase the old one.
                    self.store.enqueue(&OutboxOp::Withdraw { reference: e.reference.clone() })?;
                }
            let rel = LocalRelationship {
                relationship_id: row.relationship_id.clone(),
                record_id: row.record_id.clone(),
                reference: match &existing {
                    Some(e) if e.record_id == row.record_id => e.reference.clone(),
                    _ => new_reference(),
                },
                unit: row.unit.clone(),
                category: row.category as i32,
                status: row.status as i32,
                since_month: row.since_month,
                case_manager: row.case_manager,
                plan: v1::PlanType::PlanNone as i32,
                contact: v1::ContactRole::SegreteriaUnita as i32,
            };
            let rel_changed = existing.as_ref() != Some(&rel);
            if rel_changed {
                self.store.put_relationship(&rel)?;
            }
            if rel_changed || record_changed {
                self.store.enqueue(&OutboxOp::Upsert { relationship_id: rel.relationship_id.clone() })?;
            }
            if record_changed && !rel_changed {
                // Other relationships of the same person carry the same encoding: republish them.
                for other in self.store.relationships_of(&row.record_id)? {
                    if other.relationship_id != rel.relationship_id {
                        self.store.enqueue(&OutboxOp::Upsert { relationship_id: other.relationship_id })?;
                    }
                }
            }
            progress(i as u64 + 1);
        }
        self.store.put_report(&serde_json::to_vec(&report)?)?;
        self.store.flush()?;
        Ok(report)
    }

    /// Erases a record here and queues the erasure of its references at the coordinator.
    pub fn withdraw_record(&self, record_id: &str) -> Result<usize> {
        let rels = self.store.relationships_of(record_id)?;
        if rels.is_empty() && self.store.get_record(record_id)?.is_none() {
            anyhow::bail!("no record {record_id:?} on this node (see `ponte-node records list`)");
        }
        for r in &rels {
            self.store.enqueue(&OutboxOp::Withdraw { reference: r.reference.clone() })?;
            self.store.remove_relationship(&r.relationship_id)?;
        }
        self.store.remove_record(record_id)?;
        self.store.flush()?;
        Ok(rels.len())
    }

    /// The relationship a question about `record_id` is anchored on: the one named, or the
    /// record's first active or pending relationship.
    pub fn anchor_for(&self, record_id: &str, relationship_id: Option<&str>) -> Result<LocalRelationship> {
        let rels = self.store.relationships_of(record_id)?;
        if rels.is_empty() {
            anyhow::bail!("no record {record_id:?} with relationships on this node (see `ponte-node records list`)");
        }
        if let Some(want) = relationship_id {
            return rels
                .into_iter()
                .find(|r| r.relationship_id == want)
                .with_context(|| format!("record {record_id:?} has no relationship {want:?}"));
        }
        let active = rels.iter().find(|r| {
            vocab::StatusName::from_wire(r.status).map(vocab::status_allows_anchor).unwrap_or(false)
        });
        Ok(active.cloned().unwrap_or_else(|| rels[0].clone()))
    }
}
