//! A node's local operations: import into the store, list, withdraw, consent, obscuring.
//! Publishing and questions are in [`crate::client`]. Every operation that changes something
//! flushes the store before it returns, and queues what the coordinator must learn, so that it
//! works with the coordinator down.

use std::path::Path;

use anyhow::{Context, Result};
use ponte_proto::schema::LinkageSchema;
use ponte_proto::v1;
use ponte_proto::vocab;

use crate::config::NodeConfig;
use crate::consent::{ConsentScope, now_secs};
use crate::encode::Encoder;
use crate::import::{ImportReport, read_export};
use crate::secret::LinkageSecret;
use crate::store::{LocalConsent, LocalRecord, LocalRelationship, NodeStore, OutboxOp};

/// Why a local operation on a record, relationship or consent could not be done. Callers
/// branch on the variant (the API chooses its status by it); the text says what to do.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// No such record here (or one without relationships).
    #[error("no record {record_id:?} on this node (see `ponte-node records list`)")]
    NoRecord { record_id: String },
    /// The record exists but has no relationship with that id.
    #[error("record {record_id:?} has no relationship {relationship_id:?}")]
    NoRelationship { record_id: String, relationship_id: String },
    /// No such relationship here.
    #[error("no relationship {relationship_id:?} on this node (see `ponte-node records show RECORD_ID`)")]
    UnknownRelationship { relationship_id: String },
    /// The relationship named is never encoded, so nothing can be anchored on it.
    #[error(
        "relationship {relationship_id:?} is marked never_encode: it is never published, so no question can be anchored on it; \
         anchor on another relationship of the record (--relationship)"
    )]
    NeverEncoded { relationship_id: String },
    /// Nothing of the record is published: only never-encode relationships.
    #[error(
        "record {record_id:?} has no published relationship, only never-encode relationships: nothing about this person is \
         published, so no question can be asked about them and no consent applied to them"
    )]
    NothingPublished { record_id: String },
    /// No such consent here.
    #[error("no consent {consent_id:?} on this node (see `ponte-node consent list`)")]
    NoConsent { consent_id: String },
    /// The consent's scope does not hold together.
    #[error("{0}")]
    InvalidConsent(String),
    /// The store failed.
    #[error("the node's store failed: {0:#}")]
    Store(anyhow::Error),
}

impl From<anyhow::Error> for NodeError {
    fn from(e: anyhow::Error) -> NodeError {
        NodeError::Store(e)
    }
}

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

/// Refuses, before anything reads it, a path to import that is not a regular file: a directory
/// (reading one fails at every call, and a reader that goes on would never stop), a FIFO or a
/// device (reading could block forever or never end). Symbolic links are followed.
pub fn check_export_file(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot open the export {}", path.display()))?;
    let ft = meta.file_type();
    if ft.is_dir() {
        anyhow::bail!("{} is a directory; name the export file itself, e.g. {}", path.display(), path.join("export.csv").display());
    }
    if !ft.is_file() {
        anyhow::bail!(
            "{} is not a regular file (a FIFO, socket or device); save the export to a file and import that file",
            path.display()
        );
    }
    Ok(())
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

    /// Queues every publishable relationship for publishing again (after adding a key epoch).
    /// Never-encode relationships are skipped.
    pub fn republish_all(&self) -> Result<usize> {
        let mut n = 0;
        for r in self.store.relationships() {
            let r = r?;
            if r.publishable() {
                self.store.enqueue(&OutboxOp::Upsert { relationship_id: r.relationship_id })?;
                n += 1;
            }
        }
        self.store.flush()?;
        Ok(n)
    }

    /// Imports an export file: new and changed rows are stored, encoded and queued for publishing.
    pub fn import_file(&self, path: &Path, progress: impl Fn(u64)) -> Result<ImportReport> {
        // Fail early, before anything is stored, if a secret is missing or unreadable.
        self.encoders()?;
        check_export_file(path)?;
        let file = std::fs::File::open(path).with_context(|| format!("cannot open the export {}", path.display()))?;
        // The path may have been swapped between the check and the open.
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            anyhow::bail!("{} is no longer a regular file; import the export file itself", path.display());
        }
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
                && e.record_id != row.record_id
                && e.publishable()
            {
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
                // Obscuring is the person's request made here, not part of the export.
                obscured: existing.as_ref().is_some_and(|e| e.obscured),
                never_publish: row.never_encode,
            };
            if let Some(e) = &existing
                && e.record_id == row.record_id
                && e.publishable()
                && rel.never_publish
            {
                // Marked never-encode after it was published (or queued): erase it there.
                self.store.enqueue(&OutboxOp::Withdraw { reference: e.reference.clone() })?;
            }
            let rel_changed = existing.as_ref() != Some(&rel);
            if rel_changed {
                self.store.put_relationship(&rel)?;
            }
            if (rel_changed || record_changed) && rel.publishable() {
                self.store.enqueue(&OutboxOp::Upsert { relationship_id: rel.relationship_id.clone() })?;
            }
            if record_changed {
                // Other relationships of the same person carry the same encoding: republish them.
                for other in self.store.relationships_of(&row.record_id)? {
                    if other.relationship_id != rel.relationship_id && other.publishable() {
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

    /// Erases a record here and queues the erasure of its published references and the revocation
    /// of its consents at the coordinator. Returns the number of withdrawals queued.
    pub fn withdraw_record(&self, record_id: &str) -> Result<usize> {
        let rels = self.store.relationships_of(record_id)?;
        if rels.is_empty() && self.store.get_record(record_id)?.is_none() {
            anyhow::bail!("no record {record_id:?} on this node (see `ponte-node records list`)");
        }
        for c in self.store.consents_of(record_id)? {
            if c.revoked_at.is_none() {
                self.store.enqueue(&OutboxOp::RevokeConsent { consent_id: c.consent_id.clone() })?;
            }
            self.store.remove_consent(&c.consent_id)?;
        }
        let mut n = 0;
        for r in &rels {
            if r.publishable() {
                self.store.enqueue(&OutboxOp::Withdraw { reference: r.reference.clone() })?;
                n += 1;
            }
            self.store.remove_relationship(&r.relationship_id)?;
        }
        self.store.remove_record(record_id)?;
        self.store.flush()?;
        Ok(n)
    }

    /// The relationship a question about `record_id` is anchored on: the one named, or the
    /// record's first active or pending published relationship (else its first published one).
    /// Never-encode relationships are never anchors.
    pub fn anchor_for(&self, record_id: &str, relationship_id: Option<&str>) -> Result<LocalRelationship, NodeError> {
        let rels = self.store.relationships_of(record_id)?;
        if rels.is_empty() {
            return Err(NodeError::NoRecord { record_id: record_id.to_string() });
        }
        if let Some(want) = relationship_id {
            let r = rels.into_iter().find(|r| r.relationship_id == want).ok_or_else(|| NodeError::NoRelationship {
                record_id: record_id.to_string(),
                relationship_id: want.to_string(),
            })?;
            if !r.publishable() {
                return Err(NodeError::NeverEncoded { relationship_id: want.to_string() });
            }
            return Ok(r);
        }
        let published: Vec<&LocalRelationship> = rels.iter().filter(|r| r.publishable()).collect();
        let active = published
            .iter()
            .find(|r| vocab::StatusName::from_wire(r.status).map(vocab::status_allows_anchor).unwrap_or(false));
        match active.or(published.first()) {
            Some(r) => Ok((*r).clone()),
            None => Err(NodeError::NothingPublished { record_id: record_id.to_string() }),
        }
    }

    /// The record's first published relationship by relationship id: the one whose reference
    /// keys the person's consents and data-subject requests at the coordinator.
    pub fn published_relationship(&self, record_id: &str) -> Result<Option<LocalRelationship>> {
        Ok(self.store.relationships_of(record_id)?.into_iter().find(LocalRelationship::publishable))
    }

    /// [`Node::published_relationship`], or the reason there is none.
    pub fn require_published(&self, record_id: &str) -> Result<LocalRelationship, NodeError> {
        if let Some(r) = self.published_relationship(record_id)? {
            return Ok(r);
        }
        if self.store.relationships_of(record_id)?.is_empty() {
            return Err(NodeError::NoRecord { record_id: record_id.to_string() });
        }
        Err(NodeError::NothingPublished { record_id: record_id.to_string() })
    }

    /// Records the person's consent for `record_id` and queues it for the coordinator.
    ///
    /// Refused, with nothing stored, if the record is unknown ([`NodeError::NoRecord`]), has
    /// no published relationship ([`NodeError::NothingPublished`]: the coordinator could not key
    /// the consent), or the scope fails [`ConsentScope::check`] ([`NodeError::InvalidConsent`]).
    pub fn give_consent(&self, record_id: &str, mut scope: ConsentScope) -> Result<LocalConsent, NodeError> {
        if self.store.get_record(record_id)?.is_none() {
            return Err(NodeError::NoRecord { record_id: record_id.to_string() });
        }
        if self.published_relationship(record_id)?.is_none() {
            return Err(NodeError::NothingPublished { record_id: record_id.to_string() });
        }
        scope.check().map_err(NodeError::InvalidConsent)?;
        let consent = LocalConsent {
            consent_id: new_reference(),
            record_id: record_id.to_string(),
            categories: scope.categories.iter().map(|c| *c as i32).collect(),
            recipients: scope.recipients.iter().map(|c| *c as i32).collect(),
            purposes: scope.purposes.iter().map(|c| *c as i32).collect(),
            valid_from: scope.valid_from,
            valid_until: scope.valid_until,
            given_by: scope.given_by as i32,
            recorded_at: now_secs(),
            revoked_at: None,
        };
        self.store.put_consent(&consent)?;
        self.store.enqueue(&OutboxOp::Consent { consent_id: consent.consent_id.clone() })?;
        self.store.flush()?;
        Ok(consent)
    }

    /// Revokes a consent here and queues the revocation. Revoking an already revoked consent
    /// changes nothing and queues nothing; the consent is returned as stored either way.
    pub fn revoke_consent(&self, consent_id: &str) -> Result<LocalConsent, NodeError> {
        let mut c = self.store.get_consent(consent_id)?.ok_or_else(|| NodeError::NoConsent { consent_id: consent_id.to_string() })?;
        if c.revoked_at.is_some() {
            return Ok(c);
        }
        c.revoked_at = Some(now_secs());
        self.store.put_consent(&c)?;
        self.store.enqueue(&OutboxOp::RevokeConsent { consent_id: c.consent_id.clone() })?;
        self.store.flush()?;
        Ok(c)
    }

    /// Obscures a relationship (or ends its obscuring) and queues the change. Returns whether a
    /// change was queued: a never-encode relationship is not published, so only the local flag
    /// changes.
    pub fn set_obscured(&self, relationship_id: &str, obscured: bool) -> Result<bool, NodeError> {
        let mut r = self
            .store
            .get_relationship(relationship_id)?
            .ok_or_else(|| NodeError::UnknownRelationship { relationship_id: relationship_id.to_string() })?;
        r.obscured = obscured;
        self.store.put_relationship(&r)?;
        let queued = r.publishable();
        if queued {
            self.store.enqueue(&OutboxOp::Obscure { relationship_id: r.relationship_id.clone() })?;
        }
        self.store.flush()?;
        Ok(queued)
    }
}
