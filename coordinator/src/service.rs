//! The coordinator as a gRPC service: the only module that knows tonic.
//!
//! Every request passes [`AuthLayer`] first — health and reflection included — which reads the
//! caller's identity from the verified client certificate and refuses callers without one, or
//! with a role the service is not for. Handlers then check that what a message claims (its
//! `node_id`) is what the certificate says.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use anyhow::{Context as _, Result};
use ponte_proto::identity::{PeerIdentity, Role, identity_from_der};
use ponte_proto::limits::{MAX_AUDIT_QUERY, MAX_BATCH_ITEMS, MAX_CONSENT_SCOPE, MAX_MESSAGE_BYTES, MAX_POLICY_BYTES, MAX_WITHDRAW_REFERENCES};
use ponte_proto::schema::{Fingerprint, LinkageSchema};
use ponte_proto::v1::federation_server::{Federation, FederationServer};
use ponte_proto::v1::governance_server::{Governance, GovernanceServer};
use ponte_proto::v1;
use ponte_proto::vocab;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::server::NamedService;
use tonic::{Request, Response, Status, Streaming};

use crate::answer::{self, Candidate};
use crate::audit::{Entry, Event, Record};
use crate::config::CoordinatorConfig;
use crate::linker::{ClusterId, ItemId, LinkChange, Linker, LinkerParams, Publish};
use crate::metrics;
use crate::model::{self, ItemKey, StoredItem};
use crate::policy::{self, Consent, Disclosure, Policy};
use crate::storage::{ConsentRow, PolicyRow, Store};

/// The actor named in audit entries the coordinator makes by itself (first policy, retention).
pub const SELF_ACTOR: &str = "coordinator";

/// The coordinator's state: storage, index and what it expects of encodings.
pub struct Coordinator {
    store: Store,
    state: Mutex<State>,
    fingerprint: Fingerprint,
    shape: model::EncodingShape,
    epochs: Vec<u32>,
    /// Batches recently applied: a membership pre-filter (the `bloomfilter` crate) in front of
    /// the stored acks, so that fresh batches skip the store lookup. A false positive only
    /// costs that lookup; it never skips a batch.
    recent_batches: Mutex<bloomfilter::Bloom<(String, u64)>>,
}

struct State {
    linker: Linker,
    ids: HashMap<ItemKey, ItemId>,
    /// What answers need of each item: key, relationship, entity name. The encodings live in the
    /// linker's index and in the store, not here (`encodings` is empty).
    items: HashMap<ItemId, StoredItem>,
    next_id: ItemId,
    audit_head: Option<(u64, String)>,
    /// The disclosure policy in force and how it was loaded.
    policy: Arc<Policy>,
    policy_row: PolicyRow,
    /// Consents by (node, consent id), and the consents keyed by each item.
    consents: HashMap<(String, String), ConsentRow>,
    consents_by_item: HashMap<ItemId, Vec<(String, String)>>,
}

impl State {
    fn index_consent(&mut self, node: &str, consent_id: &str, row: ConsentRow) {
        let k = (node.to_string(), consent_id.to_string());
        self.unindex_consent(&k);
        if let Some(&id) = self.ids.get(&row.reference) {
            self.consents_by_item.entry(id).or_default().push(k.clone());
        }
        self.consents.insert(k, row);
    }

    fn unindex_consent(&mut self, k: &(String, String)) -> Option<ConsentRow> {
        let row = self.consents.remove(k)?;
        if let Some(&id) = self.ids.get(&row.reference)
            && let Some(v) = self.consents_by_item.get_mut(&id)
        {
            v.retain(|x| x != k);
            if v.is_empty() {
                self.consents_by_item.remove(&id);
            }
        }
        Some(row)
    }

    /// The consents recorded for the person cluster of `id`.
    fn cluster_consents(&self, id: ItemId) -> Vec<&Consent> {
        let mut out = Vec::new();
        for m in self.linker.cluster_members(id) {
            for k in self.consents_by_item.get(&m).into_iter().flatten() {
                if let Some(row) = self.consents.get(k) {
                    out.push(&row.consent);
                }
            }
        }
        out
    }
}

/// Today as YYYYMMDD (UTC).
pub fn today() -> u32 {
    policy::day_of_unix_time(unix_now())
}

fn check_policy_text(text: &str) -> Result<(Policy, Vec<String>), String> {
    let report = policy::check(text);
    match report.policy {
        Some(p) if report.errors.is_empty() => {
            Ok((p, report.warnings.iter().map(|w| format!("{}:{}: {}", w.line, w.column, w.message)).collect()))
        }
        _ => Err(report.errors.iter().map(|e| format!("{}:{}: {}", e.line, e.column, e.message)).collect::<Vec<_>>().join("; ")),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// How a question that was not answered ended: refused (with the reason counted in the
/// metrics) or failed (storage).
enum QuestionFailure {
    Refused(metrics::RefusalReason, Status),
    Error(Status),
}

fn internal(e: anyhow::Error) -> Status {
    metrics::storage_failure();
    tracing::error!(error = %e, "storage failure");
    Status::internal("the coordinator could not store the change; nothing was acknowledged, retry later")
}

impl Coordinator {
    /// Opens the store and rebuilds the index from it.
    pub fn open(cfg: &CoordinatorConfig, schema: &LinkageSchema) -> Result<Coordinator> {
        let store = Store::open(&cfg.data_dir)?;
        let loaded = store.load()?;
        let model = cfg.model().map_err(anyhow::Error::msg)?;
        let mut linker = Linker::new(LinkerParams::for_schema(schema, model)).map_err(anyhow::Error::msg)?;
        let mut items = HashMap::new();
        let mut ids = HashMap::new();
        let mut dropped = 0usize;
        for (id, mut item) in loaded.items {
            // Encodings of epochs no longer accepted are dropped (end of a key rotation);
            // the links they established stay.
            let before = item.encodings.len();
            item.encodings.retain(|e| cfg.key_epochs.contains(&e.epoch));
            if item.encodings.len() != before {
                dropped += before - item.encodings.len();
                store.put_item(id, &item, &[], &[])?;
            }
            linker.restore(id, item.revision, &item.encodings).map_err(|e| anyhow::anyhow!("stored item {id}: {e}"))?;
            item.encodings = Vec::new();
            ids.insert(item.key.clone(), id);
            items.insert(id, item);
        }
        for (a, b, band) in loaded.links {
            linker.restore_link(a, b, band);
        }
        linker.finish_restore(loaded.clusters);
        let repaired = linker.take_cluster_changes();
        if !repaired.is_empty() {
            store.put_clusters(&repaired)?;
            store.flush()?;
            tracing::info!(items = repaired.len(), "cluster ids assigned or repaired from the links");
        }
        if dropped > 0 {
            store.flush()?;
            tracing::info!(dropped, epochs = ?cfg.key_epochs, "encodings of retired key epochs dropped");
        }
        let audit_head = store.audit_head()?;
        tracing::info!(items = items.len(), "index rebuilt from storage");
        let mut first_policy = None;
        let policy_row = match store.active_policy()? {
            Some(row) => {
                if let Some(p) = &cfg.policy_file
                    && let Ok(text) = std::fs::read_to_string(p)
                    && policy::check(&text).policy.is_some_and(|f| f.sha256 != row.sha256)
                {
                    tracing::warn!(
                        file = %p.display(),
                        in_force = %row.version,
                        "policy_file differs from the policy in force, which stays: load a new version with `ponte-coordinator policy reload`"
                    );
                }
                row
            }
            None => {
                let (text, source) = match &cfg.policy_file {
                    Some(p) => {
                        let meta = std::fs::metadata(p).with_context(|| format!("cannot read the policy file {} (policy_file)", p.display()))?;
                        anyhow::ensure!(meta.len() <= MAX_POLICY_BYTES as u64, "the policy file {} is larger than {MAX_POLICY_BYTES} bytes", p.display());
                        (std::fs::read_to_string(p).with_context(|| format!("cannot read the policy file {}", p.display()))?, p.display().to_string())
                    }
                    None => (policy::DEFAULT_POLICY_TOML.to_string(), "the shipped default policy".to_string()),
                };
                let (p, warnings) = check_policy_text(&text)
                    .map_err(|e| anyhow::anyhow!("{source}: {e}; run `ponte-coordinator policy check` on it"))?;
                for w in &warnings {
                    tracing::warn!(policy = %p.version, "{w}");
                }
                let row = PolicyRow { version: p.version.clone(), sha256: p.sha256.clone(), text, loaded_at: unix_now(), loaded_by: SELF_ACTOR.into() };
                store.put_policy(&row)?;
                first_policy = Some(row.clone());
                row
            }
        };
        let (policy, _) = check_policy_text(&policy_row.text).map_err(|e| anyhow::anyhow!("the policy in force ({}) no longer checks: {e}", policy_row.version))?;
        let mut state = State {
            linker,
            ids,
            items,
            next_id: loaded.next_id,
            audit_head,
            policy: Arc::new(policy),
            policy_row,
            consents: HashMap::new(),
            consents_by_item: HashMap::new(),
        };
        for (node, id, row) in store.consents()? {
            state.index_consent(&node, &id, row);
        }
        tracing::info!(policy = %state.policy.version, consents = state.consents.len(), "policy and consents loaded");
        if let Some(row) = first_policy {
            let event = Event::PolicyLoaded { version: row.version.clone(), sha256: row.sha256.clone(), previous: None, changes: Vec::new() };
            Self::audit_with(&store, &mut state, SELF_ACTOR, SELF_ACTOR, event)?;
        }
        Ok(Coordinator {
            store,
            state: Mutex::new(state),
            fingerprint: schema.fingerprint(),
            shape: model::EncodingShape::of(schema),
            epochs: cfg.key_epochs.clone(),
            recent_batches: Mutex::new(
                bloomfilter::Bloom::new_for_fp_rate(100_000, 0.01).expect("valid bloom parameters"),
            ),
        })
    }

    /// The state, for one request at a time. A request that has to wait counts in the queue
    /// gauge while it waits.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.try_lock() {
            Ok(state) => state,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                let _waiting = metrics::Waiting::start();
                self.state.lock().unwrap_or_else(|p| p.into_inner())
            }
        }
    }

    fn audit_with(store: &Store, state: &mut State, actor: &str, role: &str, event: Event) -> Result<Entry> {
        let record = Record {
            time: unix_now(),
            actor: actor.to_string(),
            actor_role: role.to_string(),
            policy: state.policy.version.clone(),
            event,
        };
        let head = state.audit_head.as_ref().map(|(s, h)| (*s, h.as_str()));
        let entry = store.append_audit(head, record)?;
        state.audit_head = Some((entry.sequence, entry.hash.clone()));
        Ok(entry)
    }

    fn audit(&self, state: &mut State, who: &PeerIdentity, event: Event) -> Result<Entry> {
        Self::audit_with(&self.store, state, &who.id, who.role.name(), event)
    }

    /// Applies a publish batch; returns its ack once the batch is durable. Counted in the
    /// metrics by outcome.
    pub fn publish(&self, who: &PeerIdentity, batch: v1::PublishBatch) -> Result<v1::PublishAck, Status> {
        let started = std::time::Instant::now();
        match self.apply_batch(who, batch) {
            Ok((ack, outcome)) => {
                metrics::batch(&who.id, outcome, started.elapsed());
                Ok(ack)
            }
            Err(status) => {
                let outcome = if status.code() == tonic::Code::Internal { metrics::BatchOutcome::Error } else { metrics::BatchOutcome::Refused };
                metrics::batch(&who.id, outcome, started.elapsed());
                Err(status)
            }
        }
    }

    /// [`Coordinator::publish`] without the accounting: the ack, and whether the batch was
    /// stored (with what linking it did) or replayed.
    fn apply_batch(&self, who: &PeerIdentity, batch: v1::PublishBatch) -> Result<(v1::PublishAck, metrics::BatchOutcome), Status> {
        let entity_type = node_entity(who)?;
        same_node(who, &batch.node_id)?;
        let fp = Fingerprint::from_slice(&batch.schema_fingerprint).ok_or_else(|| {
            Status::invalid_argument("schema_fingerprint must be the 32-byte SHA-256 of the linkage schema")
        })?;
        if fp != self.fingerprint {
            return Err(Status::failed_precondition(format!(
                "encodings made under linkage schema {} refused: this federation uses schema {}. Load the federation's schema file on the node (ponte-node schema check) and re-encode",
                fp.hex(),
                self.fingerprint.hex()
            )));
        }
        if !self.epochs.contains(&batch.key_epoch) {
            return Err(Status::failed_precondition(format!(
                "key epoch {} refused: this coordinator accepts epochs {:?}. Use the federation's current linkage secret",
                batch.key_epoch, self.epochs
            )));
        }
        if batch.items.len() > MAX_BATCH_ITEMS {
            return Err(Status::invalid_argument(format!(
                "{} items in one batch; send at most {MAX_BATCH_ITEMS}",
                batch.items.len()
            )));
        }
        let mut checked: Vec<model::Publication> = Vec::with_capacity(batch.items.len());
        for (i, item) in batch.items.iter().enumerate() {
            let stored = model::item_from_wire(&who.id, &who.display_name, entity_type, batch.key_epoch, &self.shape, item)
                .map_err(|e| Status::invalid_argument(format!("item {i} of batch {}: {e}", batch.batch_id)))?;
            checked.push(stored);
        }
        let batch_tag = (who.id.clone(), batch.batch_id);
        let maybe_seen = self.recent_batches.lock().unwrap_or_else(|p| p.into_inner()).check(&batch_tag);
        if maybe_seen
            && let Some((accepted, links)) = self.store.batch_ack(&who.id, batch.batch_id).map_err(internal)? {
                return Ok((v1::PublishAck { batch_id: batch.batch_id, accepted, links_found: links }, metrics::BatchOutcome::Replayed));
            }
        let accepted = checked.len() as u32;
        let mut state = self.lock();
        let mut links_found = 0u32;
        let mut assigned: Vec<ItemId> = Vec::with_capacity(checked.len());
        for p in &checked {
            let id = match state.ids.get(&p.key) {
                Some(&id) => id,
                None => {
                    let id = state.next_id;
                    state.next_id += 1;
                    state.ids.insert(p.key.clone(), id);
                    id
                }
            };
            assigned.push(id);
        }
        let publish: Vec<Publish<'_>> =
            checked.iter().zip(&assigned).map(|(p, &id)| Publish { id, revision: p.revision, encoding: &p.encoding }).collect();
        let linking = std::time::Instant::now();
        let changes = state.linker.publish_batch(&publish).map_err(|e| Status::resource_exhausted(e.to_string()))?;
        let stats = state.linker.last_batch();
        let linked = metrics::Linked {
            items: accepted as u64,
            links_by_band: stats.links_by_band,
            comparisons: stats.comparisons,
            link_time: linking.elapsed(),
        };
        drop(publish);
        let change_of: HashMap<ItemId, LinkChange> = changes.into_iter().collect();
        for (p, id) in checked.into_iter().zip(assigned) {
            let existing = state.items.remove(&id);
            let obscured = p.obscured;
            let mut item = match existing {
                // The same identity under another key epoch: keep the encodings of the others,
                // which only the store holds.
                Some(existing) if existing.revision == p.revision => {
                    self.store.get_item(&p.key).map_err(internal)?.filter(|s| s.revision == p.revision).unwrap_or(existing)
                }
                _ => StoredItem {
                    key: p.key.clone(),
                    revision: p.revision,
                    encodings: Vec::new(),
                    quality_flags: p.quality_flags,
                    relationship: p.relationship.clone(),
                    entity_name: p.entity_name.clone(),
                    obscured,
                },
            };
            item.set_encoding(p.encoding);
            item.quality_flags = p.quality_flags;
            item.relationship = p.relationship;
            item.entity_name = p.entity_name;
            item.obscured = p.obscured;
            match change_of.get(&id) {
                Some(LinkChange::Relinked { removed, links }) => {
                    links_found += links.len() as u32;
                    self.store.put_item(id, &item, removed, links).map_err(internal)?;
                }
                _ => self.store.put_item(id, &item, &[], &[]).map_err(internal)?,
            }
            item.encodings = Vec::new();
            state.items.insert(id, item);
        }
        let clusters = state.linker.take_cluster_changes();
        self.store.put_clusters(&clusters).map_err(internal)?;
        self.store.put_batch_ack(&who.id, batch.batch_id, accepted, links_found).map_err(internal)?;
        self.store.flush().map_err(internal)?;
        drop(state);
        self.recent_batches.lock().unwrap_or_else(|p| p.into_inner()).set(&batch_tag);
        tracing::info!(node = %who.id, batch = batch.batch_id, accepted, links_found, "batch stored");
        Ok((v1::PublishAck { batch_id: batch.batch_id, accepted, links_found }, metrics::BatchOutcome::Stored(linked)))
    }

    pub fn update_relationship(&self, who: &PeerIdentity, req: v1::UpdateRelationshipRequest) -> Result<v1::Ack, Status> {
        let entity_type = node_entity(who)?;
        same_node(who, &req.node_id)?;
        let rel = model::relationship_from_wire(req.relationship.as_ref(), entity_type).map_err(Status::invalid_argument)?;
        let key = ItemKey { node: who.id.clone(), reference: req.reference.clone() };
        let mut state = self.lock();
        let Some(&id) = state.ids.get(&key) else {
            return Err(Status::not_found("no published item has that reference; publish it first"));
        };
        let Some(mut stored) = self.store.get_item(&key).map_err(internal)? else {
            return Err(Status::not_found("no published item has that reference; publish it first"));
        };
        stored.relationship = rel.clone();
        self.store.put_item(id, &stored, &[], &[]).map_err(internal)?;
        self.store.flush().map_err(internal)?;
        if let Some(item) = state.items.get_mut(&id) {
            item.relationship = rel;
        }
        metrics::relationship_updated();
        Ok(v1::Ack { affected: 1 })
    }

    /// Erasure: removes the items, their encodings and their links.
    pub fn withdraw(&self, who: &PeerIdentity, req: v1::WithdrawRequest) -> Result<v1::Ack, Status> {
        node_entity(who)?;
        same_node(who, &req.node_id)?;
        if req.references.len() > MAX_WITHDRAW_REFERENCES {
            return Err(Status::invalid_argument(format!(
                "{} references in one withdrawal; send at most {MAX_WITHDRAW_REFERENCES}",
                req.references.len()
            )));
        }
        for r in &req.references {
            vocab::check_reference(r).map_err(Status::invalid_argument)?;
        }
        let mut state = self.lock();
        let mut affected = 0;
        for r in &req.references {
            let key = ItemKey { node: who.id.clone(), reference: r.clone() };
            if state.ids.contains_key(&key) {
                self.erase(&mut state, &key).map_err(internal)?;
                affected += 1;
            }
        }
        let clusters = state.linker.take_cluster_changes();
        self.store.put_clusters(&clusters).map_err(internal)?;
        let references = req.references.iter().map(|r| ItemKey { node: who.id.clone(), reference: r.clone() }.label()).collect();
        self.audit(&mut state, who, Event::Withdrawn { references }).map_err(internal)?;
        self.store.flush().map_err(internal)?;
        metrics::items_withdrawn(&who.id, affected.into());
        Ok(v1::Ack { affected })
    }

    /// Erases one item: its encodings, relationship, links and the consents keyed by it; the
    /// clusters are recomputed. Not yet flushed.
    fn erase(&self, state: &mut State, key: &ItemKey) -> Result<()> {
        let Some(&id) = state.ids.get(key) else { return Ok(()) };
        for k in state.consents_by_item.get(&id).cloned().unwrap_or_default() {
            state.unindex_consent(&k);
            self.store.remove_consent(&k.0, &k.1)?;
        }
        state.ids.remove(key);
        let neighbours = state.linker.remove(id);
        state.items.remove(&id);
        self.store.remove_item(id, key, &neighbours)?;
        Ok(())
    }

    /// Answers a who-else question, or refuses it; both are audited (a question refused for
    /// malformed values or a wrong node id is refused before it is a question, and is not).
    /// Counted in the metrics by outcome.
    pub fn who_else(&self, who: &PeerIdentity, q: v1::WhoElseQuestion) -> Result<v1::WhoElseAnswer, Status> {
        let started = std::time::Instant::now();
        let purpose = vocab::PurposeName::from_wire(q.purpose).ok();
        let requester = node_entity(who).ok();
        metrics::question_received(purpose, requester);
        match self.decide_question(who, q) {
            Ok((answer, shown, break_glass)) => {
                metrics::question_answered(purpose, requester, shown, break_glass, started.elapsed());
                Ok(answer)
            }
            Err(QuestionFailure::Refused(reason, status)) => {
                metrics::question_refused(reason, started.elapsed());
                Err(status)
            }
            Err(QuestionFailure::Error(status)) => {
                metrics::question_failed(started.elapsed());
                Err(status)
            }
        }
    }

    /// [`Coordinator::who_else`] without the accounting: the answer, what it shows and whether
    /// it was break-glass.
    fn decide_question(&self, who: &PeerIdentity, q: v1::WhoElseQuestion) -> Result<(v1::WhoElseAnswer, metrics::Shown, bool), QuestionFailure> {
        use metrics::RefusalReason::{InvalidRequest, WrongNode};
        let wrong_node = |status| QuestionFailure::Refused(WrongNode, status);
        let invalid = |e: String| QuestionFailure::Refused(InvalidRequest, Status::invalid_argument(e));
        let entity = node_entity(who).map_err(wrong_node)?;
        same_node(who, &q.node_id).map_err(wrong_node)?;
        vocab::check_reference(&q.anchor_reference).map_err(|e| invalid(format!("anchor_reference: {e}")))?;
        vocab::check_operator_id(&q.operator_id).map_err(|e| invalid(format!("operator_id: {e}")))?;
        let purpose = vocab::PurposeName::from_wire(q.purpose).map_err(invalid)?;
        let role = vocab::OperatorRoleName::from_wire(q.operator_role).map_err(invalid)?;
        let break_glass = match q.break_glass_reason {
            0 => None,
            r => Some(vocab::BreakGlassReasonName::from_wire(r).map_err(invalid)?),
        };
        let anchor_key = ItemKey { node: who.id.clone(), reference: q.anchor_reference.clone() };
        let question = policy::Question {
            asker_node: who.id.clone(),
            asker_entity: entity,
            role,
            purpose,
            break_glass,
            today: today(),
        };

        let mut state = self.lock();
        let anchor_id = state.ids.get(&anchor_key).copied();
        let anchor_rel = anchor_id.and_then(|id| state.items.get(&id)).map(|i| i.relationship.clone());
        let cluster = anchor_id.and_then(|id| state.linker.cluster_of(id));
        let names = (vocab::PurposeName::name(purpose), vocab::OperatorRoleName::name(role));
        let policy = state.policy.clone();
        let checked = policy::check_question(&policy, &question, anchor_rel.as_ref()).and_then(|()| anchor_id.ok_or(policy::Refusal::AnchorNotHeld));
        let anchor_id = match checked {
            Ok(id) => id,
            Err(refusal) => {
                let reason = metrics::RefusalReason::of(&refusal);
                let entry = self
                    .audit(
                        &mut state,
                        who,
                        Event::WhoElseRefused {
                            purpose: names.0,
                            operator_role: names.1,
                            operator_id: q.operator_id.clone(),
                            anchor: anchor_key.label(),
                            reason: refusal.to_string(),
                            cluster,
                        },
                    )
                    .map_err(|e| QuestionFailure::Error(internal(e)))?;
                tracing::info!(node = %who.id, receipt = entry.sequence, reason = reason.label(), "who-else refused");
                return Err(QuestionFailure::Refused(reason, Status::permission_denied(format!("{refusal} (audit receipt {})", entry.sequence))));
            }
        };
        let (relationships, shown) = Self::shaped(&state, &policy, &question, anchor_id);
        let counts = metrics::Shown {
            full: shown.iter().filter(|(_, d)| *d == Disclosure::Full).count() as u64,
            generalised: shown.iter().filter(|(_, d)| *d == Disclosure::Generalised).count() as u64,
        };
        let (shown, shown_as) = audit_shown(&state, &shown);
        let entry = self
            .audit(
                &mut state,
                who,
                Event::WhoElseAnswered {
                    purpose: names.0,
                    operator_role: names.1,
                    operator_id: q.operator_id.clone(),
                    anchor: anchor_key.label(),
                    shown,
                    shown_as,
                    cluster,
                    break_glass: break_glass.map(vocab::BreakGlassReasonName::name),
                },
            )
            .map_err(|e| QuestionFailure::Error(internal(e)))?;
        if break_glass.is_some() {
            let officers = policy.break_glass_notify().to_vec();
            tracing::warn!(node = %who.id, receipt = entry.sequence, officers = ?officers, "break-glass question answered; privacy officers notified");
            self.audit(&mut state, who, Event::BreakGlassNotified { officers, question: entry.sequence })
                .map_err(|e| QuestionFailure::Error(internal(e)))?;
        }
        let answer = v1::WhoElseAnswer {
            relationships,
            notice: ponte_proto::ANSWER_NOTICE.to_string(),
            receipt: Some(v1::AuditReceipt { sequence: entry.sequence, entry_hash: entry.hash }),
        };
        Ok((answer, counts, break_glass.is_some()))
    }

    /// The answer to `question` about `anchor`'s person under `policy`, and what was shown.
    fn shaped(state: &State, policy: &Policy, question: &policy::Question, anchor: ItemId) -> (Vec<v1::OtherRelationship>, Vec<(ItemKey, Disclosure)>) {
        let related = state.linker.related(anchor);
        let mut consents_of: HashMap<ClusterId, Vec<&Consent>> = HashMap::new();
        for (id, _) in &related {
            if let Some(c) = state.linker.cluster_of(*id)
                && !consents_of.contains_key(&c)
            {
                consents_of.insert(c, state.cluster_consents(*id));
            }
        }
        let none: Vec<&Consent> = Vec::new();
        let candidates: Vec<Candidate<'_>> = related
            .iter()
            .filter_map(|(id, band)| {
                let item = state.items.get(id)?;
                let consents = state.linker.cluster_of(*id).and_then(|c| consents_of.get(&c)).unwrap_or(&none);
                Some(Candidate {
                    key: &item.key,
                    entity_name: &item.entity_name,
                    band: *band,
                    relationship: &item.relationship,
                    obscured: item.obscured,
                    consents: consents.as_slice(),
                })
            })
            .collect();
        answer::shape_answer(policy, question, &candidates)
    }

    /// Records (or replaces) a consent keyed by one of the node's published references.
    pub fn record_consent(&self, who: &PeerIdentity, c: v1::ConsentAssertion) -> Result<v1::Ack, Status> {
        node_entity(who)?;
        same_node(who, &c.node_id)?;
        let row = consent_from_wire(who, &c).map_err(Status::invalid_argument)?;
        let mut state = self.lock();
        if !state.ids.contains_key(&row.reference) {
            return Err(Status::not_found(
                "the consent's reference is not one of this node's published relationships: publish the relationship first, then send the consent",
            ));
        }
        self.store.put_consent(&who.id, &c.consent_id, &row).map_err(internal)?;
        let event = Event::ConsentRecorded { consent: row.consent.label.clone(), reference: row.reference.label() };
        state.index_consent(&who.id, &c.consent_id, row);
        self.audit(&mut state, who, event).map_err(internal)?;
        metrics::consent_recorded();
        Ok(v1::Ack { affected: 1 })
    }

    /// Revokes a consent: effective on the next question. Revoking an unknown consent is not
    /// an error (retries are safe); `affected` says whether it existed.
    pub fn revoke_consent(&self, who: &PeerIdentity, r: v1::ConsentRevocation) -> Result<v1::Ack, Status> {
        node_entity(who)?;
        same_node(who, &r.node_id)?;
        vocab::check_reference(&r.consent_id).map_err(|e| Status::invalid_argument(format!("consent_id: {e}")))?;
        let mut state = self.lock();
        let existed = state.unindex_consent(&(who.id.clone(), r.consent_id.clone())).is_some();
        self.store.remove_consent(&who.id, &r.consent_id).map_err(internal)?;
        self.audit(&mut state, who, Event::ConsentRevoked { consent: format!("{}/{}", who.id, r.consent_id) }).map_err(internal)?;
        if existed {
            metrics::consent_revoked();
        }
        Ok(v1::Ack { affected: existed as u32 })
    }

    /// Sets or lifts the obscuring of one of the node's items: effective on the next question.
    pub fn set_obscured(&self, who: &PeerIdentity, r: v1::ObscureRequest) -> Result<v1::Ack, Status> {
        node_entity(who)?;
        same_node(who, &r.node_id)?;
        vocab::check_reference(&r.reference).map_err(|e| Status::invalid_argument(format!("reference: {e}")))?;
        let key = ItemKey { node: who.id.clone(), reference: r.reference.clone() };
        let mut state = self.lock();
        let Some(&id) = state.ids.get(&key) else {
            return Err(Status::not_found("no published item has that reference; publish it first"));
        };
        let Some(mut stored) = self.store.get_item(&key).map_err(internal)? else {
            return Err(Status::not_found("no published item has that reference; publish it first"));
        };
        stored.obscured = r.obscured;
        self.store.put_item(id, &stored, &[], &[]).map_err(internal)?;
        if let Some(item) = state.items.get_mut(&id) {
            item.obscured = r.obscured;
        }
        self.audit(&mut state, who, Event::ObscuringChanged { item: key.label(), obscured: r.obscured }).map_err(internal)?;
        metrics::obscuring_changed(r.obscured);
        Ok(v1::Ack { affected: 1 })
    }

    /// A data-subject report through the person's own node: the person's relationships as the
    /// policy lets that node see them, and every question that touched the person's cluster.
    pub fn subject_report(&self, who: &PeerIdentity, r: v1::SubjectReportRequest) -> Result<v1::SubjectReport, Status> {
        let entity = node_entity(who)?;
        same_node(who, &r.node_id)?;
        vocab::check_reference(&r.reference).map_err(|e| Status::invalid_argument(format!("reference: {e}")))?;
        vocab::check_operator_id(&r.operator_id).map_err(|e| Status::invalid_argument(format!("operator_id: {e}")))?;
        let key = ItemKey { node: who.id.clone(), reference: r.reference.clone() };
        let question = policy::Question {
            asker_node: who.id.clone(),
            asker_entity: entity,
            role: v1::OperatorRole::ReferentePrivacy,
            purpose: v1::Purpose::RichiestaInteressato,
            break_glass: None,
            today: today(),
        };
        let mut state = self.lock();
        let Some(&anchor) = state.ids.get(&key) else {
            return Err(Status::not_found(
                "the reference is not one of this node's published relationships: a data-subject report goes through a node that holds the person",
            ));
        };
        let policy = state.policy.clone();
        let anchor_rel = state.items.get(&anchor).map(|i| i.relationship.clone());
        // The person's right of access does not depend on the relationship still being active.
        match policy::check_question(&policy, &question, anchor_rel.as_ref()) {
            Ok(()) | Err(policy::Refusal::AnchorNotActive) => {}
            Err(refusal) => return Err(Status::permission_denied(refusal.to_string())),
        }
        let (relationships, shown) = Self::shaped(&state, &policy, &question, anchor);
        // What the person's node may know of: its own items and those it was just shown.
        let mut visible: HashMap<String, Disclosure> = shown.iter().map(|(k, d)| (k.label(), *d)).collect();
        let members = state.linker.cluster_members(anchor);
        let mut labels: std::collections::HashSet<String> = std::collections::HashSet::new();
        for m in &members {
            if let Some(item) = state.items.get(m) {
                labels.insert(item.key.label());
                if item.key.node == who.id {
                    visible.insert(item.key.label(), Disclosure::Full);
                }
            }
        }
        let cluster = state.linker.cluster_of(anchor);
        let entries = self.store.audit_entries().map_err(internal)?;
        let names: HashMap<&str, &str> = state.items.values().map(|i| (i.key.node.as_str(), i.entity_name.as_str())).collect();
        let mut accesses = Vec::new();
        for e in &entries {
            let (purpose, role, operator, anchor_label, shown, shown_as, refused, at) = match &e.record.event {
                Event::WhoElseAnswered { purpose, operator_role, operator_id, anchor, shown, shown_as, cluster, .. } => {
                    (purpose, operator_role, operator_id, anchor, shown.as_slice(), shown_as.as_slice(), false, *cluster)
                }
                Event::WhoElseRefused { purpose, operator_role, operator_id, anchor, cluster, .. } => {
                    (purpose, operator_role, operator_id, anchor, &[][..], &[][..], true, *cluster)
                }
                _ => continue,
            };
            let touched = (at.is_some() && at == cluster) || labels.contains(anchor_label) || shown.iter().any(|s| labels.contains(s));
            // Who asked can tell what they hold: a question anchored on a relationship this node
            // may not see (a protected service, an obscured or erased one) is left out.
            if !touched || !visible.contains_key(anchor_label) {
                continue;
            }
            let disclosed = shown
                .iter()
                .enumerate()
                .filter(|(_, l)| visible.contains_key(*l))
                .map(|(i, l)| {
                    let node = l.split('/').next().unwrap_or_default();
                    let how = shown_as.get(i).map(String::as_str).unwrap_or_default();
                    let (category, group) = match how.strip_prefix('~') {
                        Some(g) => (0, vocab::CategoryGroupName::parse(g).map(|g| g as i32).unwrap_or(0)),
                        None => {
                            let c = vocab::ServiceCategoryName::parse(how).unwrap_or(v1::ServiceCategory::Unspecified);
                            (c as i32, vocab::category_group(c) as i32)
                        }
                    };
                    v1::DisclosedItem {
                        entity_id: node.to_string(),
                        entity_name: names.get(node).copied().unwrap_or(node).to_string(),
                        category,
                        category_group: group,
                    }
                })
                .collect();
            accesses.push(v1::SubjectAccess {
                time: e.record.time,
                entity_id: e.record.actor.clone(),
                entity_name: names.get(e.record.actor.as_str()).copied().unwrap_or(&e.record.actor).to_string(),
                purpose: vocab::PurposeName::parse(purpose).map(|p| p as i32).unwrap_or(0),
                operator_role: vocab::OperatorRoleName::parse(role).map(|r| r as i32).unwrap_or(0),
                operator_id: operator.clone(),
                refused,
                disclosed,
            });
        }
        let entry = self
            .audit(&mut state, who, Event::SubjectReported { reference: key.label(), operator_id: r.operator_id.clone(), accesses: accesses.len() })
            .map_err(internal)?;
        metrics::subject_report();
        Ok(v1::SubjectReport {
            relationships,
            accesses,
            notice: ponte_proto::ANSWER_NOTICE.to_string(),
            receipt: Some(v1::AuditReceipt { sequence: entry.sequence, entry_hash: entry.hash }),
        })
    }

    fn policy_status(row: &PolicyRow, warnings: Vec<String>, receipt: Option<&Entry>, with_text: bool) -> v1::PolicyStatus {
        v1::PolicyStatus {
            version: row.version.clone(),
            sha256: row.sha256.clone(),
            warnings,
            loaded_at: row.loaded_at,
            loaded_by: row.loaded_by.clone(),
            receipt: receipt.map(|e| v1::AuditReceipt { sequence: e.sequence, entry_hash: e.hash.clone() }),
            toml: if with_text { row.text.clone() } else { String::new() },
        }
    }

    /// Checks and loads a new policy version live (privacy officers only); audited with the
    /// changes it makes. Questions after this call are decided under the new version.
    pub fn reload_policy(&self, who: &PeerIdentity, doc: v1::PolicyDocument) -> Result<v1::PolicyStatus, Status> {
        officer(who)?;
        if doc.toml.len() > MAX_POLICY_BYTES {
            return Err(Status::invalid_argument(format!("the policy is {} bytes; at most {MAX_POLICY_BYTES}", doc.toml.len())));
        }
        let (new, warnings) = check_policy_text(&doc.toml)
            .map_err(|e| Status::invalid_argument(format!("policy refused, nothing changed: {e}")))?;
        let mut state = self.lock();
        let changes = policy::diff(&state.policy, &new);
        let row = PolicyRow { version: new.version.clone(), sha256: new.sha256.clone(), text: doc.toml, loaded_at: unix_now(), loaded_by: who.id.clone() };
        self.store.put_policy(&row).map_err(internal)?;
        let previous = Some(state.policy.version.clone());
        state.policy = Arc::new(new);
        state.policy_row = row.clone();
        let entry = self
            .audit(&mut state, who, Event::PolicyLoaded { version: row.version.clone(), sha256: row.sha256.clone(), previous, changes })
            .map_err(internal)?;
        metrics::policy_reloaded();
        tracing::info!(version = %row.version, receipt = entry.sequence, "policy loaded live by a privacy officer (the audit entry names who)");
        Ok(Self::policy_status(&row, warnings, Some(&entry), false))
    }

    pub fn current_policy(&self, who: &PeerIdentity) -> Result<v1::PolicyStatus, Status> {
        officer(who)?;
        let state = self.lock();
        let warnings = check_policy_text(&state.policy_row.text).map(|(_, w)| w).unwrap_or_default();
        Ok(Self::policy_status(&state.policy_row, warnings, None, true))
    }

    /// Why a relationship was or was not disclosed for a question, rule by rule (privacy
    /// officers only). The question is a past one (by receipt) or described in the request;
    /// either way it is evaluated under today's policy, consents and links.
    pub fn explain(&self, who: &PeerIdentity, r: v1::ExplainRequest) -> Result<v1::Explanation, Status> {
        officer(who)?;
        let (asker, anchor_ref, purpose, role, reason) = match r.receipt_sequence {
            Some(seq) => {
                let entries = self.store.audit_entries().map_err(internal)?;
                let e = entries.iter().find(|e| e.sequence == seq).ok_or_else(|| Status::not_found(format!("no audit entry {seq}")))?;
                let (purpose, role, anchor, bg) = match &e.record.event {
                    Event::WhoElseAnswered { purpose, operator_role, anchor, break_glass, .. } => (purpose, operator_role, anchor, break_glass.clone()),
                    Event::WhoElseRefused { purpose, operator_role, anchor, .. } => (purpose, operator_role, anchor, None),
                    _ => return Err(Status::invalid_argument(format!("audit entry {seq} is not a who-else question"))),
                };
                let anchor_ref = anchor.split_once('/').map(|(_, r)| r.to_string()).unwrap_or_default();
                (
                    e.record.actor.clone(),
                    anchor_ref,
                    vocab::PurposeName::parse(purpose).map_err(Status::internal)?,
                    vocab::OperatorRoleName::parse(role).map_err(Status::internal)?,
                    bg.map(|b| vocab::BreakGlassReasonName::parse(&b)).transpose().map_err(Status::internal)?,
                )
            }
            None => (
                r.asker_node.clone(),
                r.anchor_reference.clone(),
                vocab::PurposeName::from_wire(r.purpose).map_err(Status::invalid_argument)?,
                vocab::OperatorRoleName::from_wire(r.operator_role).map_err(Status::invalid_argument)?,
                match r.break_glass_reason {
                    0 => None,
                    b => Some(vocab::BreakGlassReasonName::from_wire(b).map_err(Status::invalid_argument)?),
                },
            ),
        };
        vocab::check_node_id(&asker).map_err(|e| Status::invalid_argument(format!("asker_node: {e}")))?;
        vocab::check_reference(&anchor_ref).map_err(|e| Status::invalid_argument(format!("anchor_reference: {e}")))?;
        vocab::check_node_id(&r.target_node).map_err(|e| Status::invalid_argument(format!("target_node: {e}")))?;
        vocab::check_reference(&r.target_reference).map_err(|e| Status::invalid_argument(format!("target_reference: {e}")))?;
        let anchor_key = ItemKey { node: asker.clone(), reference: anchor_ref };
        let target_key = ItemKey { node: r.target_node.clone(), reference: r.target_reference.clone() };
        let mut state = self.lock();
        let policy = state.policy.clone();
        let mut rules: Vec<v1::RuleOutcome> = Vec::new();
        let rule = |rule: &str, passed: bool, detail: String| v1::RuleOutcome { rule: rule.into(), passed, detail };
        let anchor_id = state.ids.get(&anchor_key).copied();
        let target_id = state.ids.get(&target_key).copied();
        let mut disclosure = Disclosure::Nothing;
        match (anchor_id, target_id) {
            (None, _) => rules.push(rule("anchor", false, format!("{} is not a published item", anchor_key.label()))),
            (_, None) => rules.push(rule("target", false, format!("{} is not a published item (never published, withdrawn or expired)", target_key.label()))),
            (Some(a), Some(t)) => {
                let asker_entity = v1::EntityType::try_from(state.items[&a].relationship.entity_type).unwrap_or(v1::EntityType::Unspecified);
                let question = policy::Question { asker_node: asker.clone(), asker_entity, role, purpose, break_glass: reason, today: today() };
                match policy::check_question(&policy, &question, Some(&state.items[&a].relationship)) {
                    Err(refusal) => rules.push(rule("question", false, format!("the question is refused: {refusal}"))),
                    Ok(()) => {
                        rules.push(rule("question", true, "purpose, role and anchor allowed".into()));
                        let band = state.linker.related(a).into_iter().find(|(id, _)| *id == t).map(|(_, b)| b);
                        match band {
                            None => rules.push(rule("same-person", false, "the target is not linked to the anchor's person".into())),
                            Some(band) => {
                                rules.push(rule("same-person", true, format!("linked to the anchor's person, band {band:?}")));
                                let consents = state.cluster_consents(t);
                                let item = &state.items[&t];
                                let decision = policy::decide(
                                    &policy,
                                    &question,
                                    &policy::Target { relationship: &item.relationship, band, obscured: item.obscured, consents: &consents },
                                );
                                rules.extend(decision.trace.into_iter().map(|o| rule(o.rule, o.passed, o.detail)));
                                disclosure = decision.disclosure;
                            }
                        }
                    }
                }
            }
        }
        let disclosed = disclosure != Disclosure::Nothing;
        let entry = self
            .audit(&mut state, who, Event::Explained { target: target_key.label(), question: r.receipt_sequence, disclosed })
            .map_err(internal)?;
        metrics::explanation();
        Ok(v1::Explanation {
            disclosed,
            disclosure: match disclosure {
                Disclosure::Full => "full",
                Disclosure::Generalised => "generalised",
                Disclosure::Nothing => "none",
            }
            .into(),
            rules,
            policy_version: policy.version.clone(),
            receipt: Some(v1::AuditReceipt { sequence: entry.sequence, entry_hash: entry.hash }),
        })
    }

    /// Audit entries by time, node and purpose (privacy officers only); the query is audited.
    pub fn query_audit(&self, who: &PeerIdentity, q: v1::AuditQuery) -> Result<v1::AuditPage, Status> {
        officer(who)?;
        let limit = match q.limit as usize {
            0 => 1000,
            n if n > MAX_AUDIT_QUERY => return Err(Status::invalid_argument(format!("limit {n}: at most {MAX_AUDIT_QUERY}"))),
            n => n,
        };
        if !q.node.is_empty() {
            vocab::check_node_id(&q.node).map_err(|e| Status::invalid_argument(format!("node: {e}")))?;
        }
        let filter = crate::audit::Query {
            from: (q.from_time != 0).then_some(q.from_time),
            to: (q.to_time != 0).then_some(q.to_time),
            node: (!q.node.is_empty()).then(|| q.node.clone()),
            purpose: match q.purpose {
                0 => None,
                p => Some(vocab::PurposeName::name(vocab::PurposeName::from_wire(p).map_err(Status::invalid_argument)?)),
            },
        };
        let mut state = self.lock();
        let entries = self.store.audit_entries().map_err(internal)?;
        let matching: Vec<&Entry> = entries.iter().filter(|e| filter.matches(e)).collect();
        let truncated = matching.len() > limit;
        let page: Vec<v1::AuditEntryJson> = matching
            .iter()
            .take(limit)
            .map(|e| Ok(v1::AuditEntryJson { sequence: e.sequence, json: serde_json::to_string(e).map_err(|e| internal(e.into()))? }))
            .collect::<Result<_, Status>>()?;
        let described = serde_json::to_string(&filter).unwrap_or_default();
        self.audit(&mut state, who, Event::AuditQueried { filter: described, returned: page.len() }).map_err(internal)?;
        metrics::audit_query();
        Ok(v1::AuditPage { entries: page, truncated })
    }

    /// Removes closed relationships older than the policy's retention (as an erasure), and
    /// audits what it removed. Returns how many were removed.
    pub fn sweep_retention(&self, today: u32) -> Result<usize> {
        let mut state = self.lock();
        let months = state.policy.retention_closed_months();
        let policy = state.policy.clone();
        let expired: Vec<ItemKey> = state
            .items
            .values()
            .filter(|i| i.relationship.status == v1::RelationshipStatus::Conclusa as i32 && policy.retention_expired(i.relationship.since_month, today))
            .map(|i| i.key.clone())
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        for key in &expired {
            self.erase(&mut state, key)?;
        }
        let clusters = state.linker.take_cluster_changes();
        self.store.put_clusters(&clusters)?;
        let mut references: Vec<String> = expired.iter().map(ItemKey::label).collect();
        references.sort();
        Self::audit_with(&self.store, &mut state, SELF_ACTOR, SELF_ACTOR, Event::RetentionExpired { references, closed_months: months })?;
        self.store.flush()?;
        metrics::retention_expired(expired.len() as u64);
        tracing::info!(removed = expired.len(), closed_months = months, "retention: closed relationships removed");
        Ok(expired.len())
    }

    /// Seconds between retention sweeps under the policy in force.
    pub fn retention_interval(&self) -> u64 {
        self.lock().policy.retention_sweep_secs()
    }

    pub fn info(&self, who: &PeerIdentity) -> v1::FederationInfo {
        v1::FederationInfo {
            schema_fingerprint: self.fingerprint.0.to_vec(),
            key_epochs: self.epochs.clone(),
            caller_id: who.id.clone(),
            caller_role: who.role.name().to_string(),
        }
    }

    /// The person cluster of a published item, if it is indexed.
    pub fn cluster_of(&self, key: &ItemKey) -> Option<crate::linker::ClusterId> {
        let state = self.lock();
        state.ids.get(key).and_then(|&id| state.linker.cluster_of(id))
    }

    /// What the coordinator holds, for the store gauges. Counting persons and links reads the
    /// whole link graph (linear in the items), under the state lock.
    pub fn holdings(&self) -> metrics::Holdings {
        let state = self.lock();
        metrics::Holdings {
            items: state.linker.len(),
            encodings_by_epoch: state.linker.epoch_counts(),
            persons: state.linker.cluster_count(),
            links: state.linker.link_count(),
            consents: state.consents.len(),
            audit_entries: state.audit_head.as_ref().map_or(0, |(sequence, _)| sequence + 1),
            index_bytes: state.linker.memory_bytes(),
        }
    }

    /// Items indexed and persons (clusters) they form.
    pub fn stats(&self) -> (usize, usize) {
        let state = self.lock();
        (state.linker.len(), state.linker.cluster_count())
    }
}

/// Audit labels of what was shown, and how: the category's name, or `~group` when generalised.
fn audit_shown(state: &State, shown: &[(ItemKey, Disclosure)]) -> (Vec<String>, Vec<String>) {
    shown
        .iter()
        .map(|(k, d)| {
            let category = state
                .ids
                .get(k)
                .and_then(|id| state.items.get(id))
                .and_then(|i| v1::ServiceCategory::try_from(i.relationship.category).ok())
                .unwrap_or(v1::ServiceCategory::Unspecified);
            let shown_as = match d {
                Disclosure::Generalised => format!("~{}", vocab::CategoryGroupName::name(vocab::category_group(category))),
                _ => vocab::ServiceCategoryName::name(category),
            };
            (k.label(), shown_as)
        })
        .unzip()
}

fn node_entity(who: &PeerIdentity) -> Result<v1::EntityType, Status> {
    match who.role {
        Role::Node { entity_type } => Ok(entity_type),
        _ => Err(Status::permission_denied(format!(
            "the certificate identifies {who}; only node certificates may publish or ask who-else"
        ))),
    }
}

fn officer(who: &PeerIdentity) -> Result<(), Status> {
    match who.role {
        Role::PrivacyOfficer => Ok(()),
        _ => Err(Status::permission_denied(format!("the certificate identifies {who}; only privacy-officer certificates may govern the policy and read the audit"))),
    }
}

/// A checked consent from the wire.
fn consent_from_wire(who: &PeerIdentity, c: &v1::ConsentAssertion) -> Result<ConsentRow, String> {
    vocab::check_reference(&c.consent_id).map_err(|e| format!("consent_id: {e}"))?;
    vocab::check_reference(&c.reference).map_err(|e| format!("reference: {e}"))?;
    fn list<T>(what: &str, v: &[i32], check: impl Fn(i32) -> Result<T, String>) -> Result<Vec<i32>, String> {
        if v.is_empty() {
            return Err(format!("the consent names no {what}; name at least one"));
        }
        if v.len() > MAX_CONSENT_SCOPE {
            return Err(format!("{} {what} in one consent; at most {MAX_CONSENT_SCOPE}", v.len()));
        }
        for &x in v {
            check(x).map_err(|e| format!("{what}: {e}"))?;
        }
        let mut v = v.to_vec();
        v.sort_unstable();
        v.dedup();
        Ok(v)
    }
    let categories = list("service categories", &c.categories, vocab::ServiceCategoryName::from_wire)?;
    let recipients = list("recipient entity types", &c.recipients, vocab::EntityType::from_wire)?;
    let purposes = list("purposes", &c.purposes, vocab::PurposeName::from_wire)?;
    vocab::check_day(c.valid_from).map_err(|e| format!("valid_from: {e}"))?;
    vocab::check_day(c.valid_until).map_err(|e| format!("valid_until: {e}"))?;
    if c.valid_from > c.valid_until {
        return Err(format!("valid_from {} is after valid_until {}", c.valid_from, c.valid_until));
    }
    let given_by = vocab::ConsentGiverName::from_wire(c.given_by)?;
    Ok(ConsentRow {
        reference: ItemKey { node: who.id.clone(), reference: c.reference.clone() },
        consent: Consent {
            label: format!("{}/{}", who.id, c.consent_id),
            categories,
            recipients,
            purposes,
            valid_from: c.valid_from,
            valid_until: c.valid_until,
            given_by: given_by as i32,
        },
    })
}

fn same_node(who: &PeerIdentity, claimed: &str) -> Result<(), Status> {
    if claimed != who.id {
        // What the request claims is not logged: it is unchecked input.
        tracing::warn!(certificate = %who.id, "request made as another node than the certificate's; refused");
        return Err(Status::permission_denied(format!(
            "the certificate identifies node '{}' but the request is made as node '{claimed}': a node may only publish and ask as itself",
            who.id
        )));
    }
    Ok(())
}

fn identity_of<T>(req: &Request<T>) -> Result<PeerIdentity, Status> {
    req.extensions()
        .get::<PeerIdentity>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no verified client certificate"))
}

/// The tonic service: runs each call's work off the async threads.
#[derive(Clone)]
pub struct FederationService {
    inner: Arc<Coordinator>,
}

impl FederationService {
    pub fn new(inner: Arc<Coordinator>) -> FederationService {
        FederationService { inner }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(|_| Status::internal("the request's worker stopped unexpectedly"))?
}

type AckStream = Pin<Box<dyn Stream<Item = Result<v1::PublishAck, Status>> + Send>>;

#[tonic::async_trait]
impl Federation for FederationService {
    async fn info(&self, req: Request<v1::FederationInfoRequest>) -> Result<Response<v1::FederationInfo>, Status> {
        let who = identity_of(&req)?;
        Ok(Response::new(self.inner.info(&who)))
    }

    async fn publish(&self, req: Request<v1::PublishBatch>) -> Result<Response<v1::PublishAck>, Status> {
        let who = identity_of(&req)?;
        let inner = self.inner.clone();
        let batch = req.into_inner();
        blocking(move || inner.publish(&who, batch)).await.map(Response::new)
    }

    type PublishStreamStream = AckStream;

    async fn publish_stream(
        &self,
        req: Request<Streaming<v1::PublishBatch>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        let who = identity_of(&req)?;
        let inner = self.inner.clone();
        let mut incoming = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(batch) = incoming.next().await {
                let result = match batch {
                    Ok(batch) => {
                        let (inner, who) = (inner.clone(), who.clone());
                        blocking(move || inner.publish(&who, batch)).await
                    }
                    Err(e) => Err(e),
                };
                let stop = result.is_err();
                if tx.send(result).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn update_relationship(
        &self,
        req: Request<v1::UpdateRelationshipRequest>,
    ) -> Result<Response<v1::Ack>, Status> {
        let who = identity_of(&req)?;
        let inner = self.inner.clone();
        let r = req.into_inner();
        blocking(move || inner.update_relationship(&who, r)).await.map(Response::new)
    }

    async fn withdraw(&self, req: Request<v1::WithdrawRequest>) -> Result<Response<v1::Ack>, Status> {
        let who = identity_of(&req)?;
        let inner = self.inner.clone();
        let r = req.into_inner();
        blocking(move || inner.withdraw(&who, r)).await.map(Response::new)
    }

    async fn who_else(&self, req: Request<v1::WhoElseQuestion>) -> Result<Response<v1::WhoElseAnswer>, Status> {
        let who = identity_of(&req)?;
        let inner = self.inner.clone();
        let q = req.into_inner();
        blocking(move || inner.who_else(&who, q)).await.map(Response::new)
    }

    async fn record_consent(&self, req: Request<v1::ConsentAssertion>) -> Result<Response<v1::Ack>, Status> {
        let who = identity_of(&req)?;
        let inner = self.inner.clone();
        let r = req.into_inner();
        blocking(move || inner.record_consent(&who, r)).await.map(Response::new)
    }

    async fn revoke_consent(&self, req: Request<v1::ConsentRevocation>) -> Result<Response<v1::Ack>, Status> {
        let who = identity_of(&req)?;
        let inner = self.inner.clone();
        let r = req.into_inner();
        blocking(move || inner.revoke_consent(&who, r)).await.map(Response::new)
    }

    async fn set_obscured(&self, req: Request<v1::ObscureRequest>) -> Result<Response<v1::Ack>, Status> {
        let who = identity_of(&req)?;
        let inner = self.inner.clone();
        let r = req.into_inner();
        blocking(move || inner.set_obscured(&who, r)).await.map(Response::new)
    }

    async fn subject_report(&self, req: Request<v1::SubjectReportRequest>) -> Result<Response<v1::SubjectReport>, Status> {
        let who = identity_of(&req)?;
        let inner = self.inner.clone();
        let r = req.into_inner();
        blocking(move || inner.subject_report(&who, r)).await.map(Response::new)
    }
}

#[tonic::async_trait]
impl Governance for FederationService {
    async fn reload_policy(&self, req: Request<v1::PolicyDocument>) -> Result<Response<v1::PolicyStatus>, Status> {
        let who = identity_of(&req)?;
        let inner = self.inner.clone();
        let r = req.into_inner();
        blocking(move || inner.reload_policy(&who, r)).await.map(Response::new)
    }

    async fn current_policy(&self, req: Request<v1::CurrentPolicyRequest>) -> Result<Response<v1::PolicyStatus>, Status> {
        let who = identity_of(&req)?;
        let inner = self.inner.clone();
        blocking(move || inner.current_policy(&who)).await.map(Response::new)
    }

    async fn explain(&self, req: Request<v1::ExplainRequest>) -> Result<Response<v1::Explanation>, Status> {
        let who = identity_of(&req)?;
        let inner = self.inner.clone();
        let r = req.into_inner();
        blocking(move || inner.explain(&who, r)).await.map(Response::new)
    }

    async fn query_audit(&self, req: Request<v1::AuditQuery>) -> Result<Response<v1::AuditPage>, Status> {
        let who = identity_of(&req)?;
        let inner = self.inner.clone();
        let r = req.into_inner();
        blocking(move || inner.query_audit(&who, r)).await.map(Response::new)
    }
}

// ---------------------------------------------------------------------------------------------
// Identity on every service

/// Which roles may call which gRPC service. Unknown paths pass through (and get "unimplemented").
fn role_allowed(path: &str, role: &Role) -> Result<(), String> {
    if path.starts_with("/ponte.v1.Federation/") {
        return match role {
            Role::Node { .. } => Ok(()),
            other => Err(format!("the Federation service is for nodes; a {} certificate may not call it", other.name())),
        };
    }
    if path.starts_with("/ponte.v1.Governance/") {
        return match role {
            Role::PrivacyOfficer => Ok(()),
            other => Err(format!("the Governance service is for privacy officers; a {} certificate may not call it", other.name())),
        };
    }
    Ok(())
}

/// A tower layer that authenticates every request by its client certificate, and counts the
/// requests in flight and the refusals per service (metrics).
#[derive(Clone, Default)]
pub struct AuthLayer;

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth { inner }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
}

fn identify<B>(req: &http::Request<B>) -> Result<PeerIdentity, (metrics::AuthRefusal, Status)> {
    let info = req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
    let certs = info.and_then(|i| i.peer_certs());
    let Some(leaf) = certs.as_ref().and_then(|c| c.first()) else {
        return Err((
            metrics::AuthRefusal::NoCertificate,
            Status::unauthenticated("no client certificate: every caller must present a certificate issued by the federation's CA (mutual TLS)"),
        ));
    };
    identity_from_der(leaf)
        .map_err(|e| (metrics::AuthRefusal::CertificateRefused, Status::unauthenticated(format!("client certificate refused: {e}"))))
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The path is the caller's input: logs and metrics name its service, from a closed set.
        let service = metrics::GrpcService::of_path(req.uri().path());
        let decision = identify(&req).and_then(|id| {
            role_allowed(req.uri().path(), &id.role).map_err(|e| (metrics::AuthRefusal::WrongRole, Status::permission_denied(e)))?;
            Ok(id)
        });
        match decision {
            Ok(id) => {
                tracing::debug!(caller = %id, service = service.label(), "authenticated");
                req.extensions_mut().insert(id);
                let in_flight = metrics::InFlight::start(service);
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let response = fut.await;
                    drop(in_flight);
                    response
                })
            }
            Err((reason, status)) => {
                metrics::auth_refused(service, reason);
                tracing::warn!(service = service.label(), reason = reason.label(), "request refused: {}", status.message());
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Serving

/// Loads certificates, opens the store, binds and serves until `shutdown` resolves. `on_ready`
/// receives the bound gRPC address; by then the metrics endpoint (`[metrics]`) listens too.
/// Health reports SERVING for "" (the server), `ponte.v1.Federation` and `ponte.v1.Governance`
/// until `shutdown` resolves, then NOT_SERVING while the server drains.
pub async fn serve(
    cfg: CoordinatorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let schema = match &cfg.schema_file {
        Some(p) => LinkageSchema::load(p).map_err(anyhow::Error::msg)?,
        None => LinkageSchema::default_schema(),
    };
    let ca = ponte_proto::pki::load_cert_pem(&cfg.tls.ca, "federation CA certificate").map_err(anyhow::Error::msg)?;
    let cert = ponte_proto::pki::load_cert_pem(&cfg.tls.cert, "coordinator certificate").map_err(anyhow::Error::msg)?;
    let key = ponte_proto::pki::load_key_pem(&cfg.tls.key, "coordinator private key").map_err(anyhow::Error::msg)?;
    let coordinator = Arc::new(Coordinator::open(&cfg, &schema)?);
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(ca))
        .client_auth_optional(true);

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<FederationServer<FederationService>>().await;
    health_reporter.set_serving::<GovernanceServer<FederationService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ponte_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;

    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {} (is another process using it?)", cfg.listen))?;
    let addr = listener.local_addr()?;
    let metrics_endpoint = start_metrics(&cfg.metrics, coordinator.clone()).await?;
    let (items, persons) = coordinator.stats();
    tracing::info!(%addr, schema = %schema.fingerprint().short(), epochs = ?cfg.key_epochs, items, persons, "coordinator listening");
    on_ready(addr);
    let shutdown = async move {
        shutdown.await;
        for service in ["", FederationServer::<FederationService>::NAME, GovernanceServer::<FederationService>::NAME] {
            health_reporter.set_service_status(service, tonic_health::ServingStatus::NotServing).await;
        }
    };

    let sweeper = coordinator.clone();
    let retention = tokio::spawn(async move {
        loop {
            let c = sweeper.clone();
            match tokio::task::spawn_blocking(move || c.sweep_retention(today())).await {
                Ok(Err(e)) => tracing::error!(error = %e, "retention sweep failed; retrying at the next interval"),
                Err(e) => tracing::error!(error = %e, "retention sweep stopped unexpectedly"),
                Ok(Ok(_)) => {}
            }
            // Ticks of a second, so that a new interval loaded with a policy applies at once.
            let slept = std::time::Instant::now();
            while slept.elapsed().as_secs() < sweeper.retention_interval() {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    });
    let governance = GovernanceServer::new(FederationService::new(coordinator.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let federation = FederationServer::new(FederationService::new(coordinator))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .tls_config(tls)?
        .timeout(std::time::Duration::from_secs(60))
        .concurrency_limit_per_connection(64)
        .layer(AuthLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(federation)
        .add_service(governance)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await
        .context("the gRPC server stopped")?;
    retention.abort();
    if let Some(endpoint) = metrics_endpoint {
        endpoint.abort();
    }
    Ok(())
}

/// Binds and starts the metrics endpoint that `cfg` asks for; `None` when there is none (turned
/// off, or the default address taken). The store gauges are read from `coordinator` at every
/// scrape.
async fn start_metrics(cfg: &crate::config::MetricsConfig, coordinator: Arc<Coordinator>) -> Result<Option<tokio::task::JoinHandle<()>>> {
    use crate::config::MetricsListen;

    let listener = match cfg.address().map_err(anyhow::Error::msg)? {
        MetricsListen::Off => {
            tracing::info!("metrics endpoint off ([metrics] listen = \"\")");
            return Ok(None);
        }
        MetricsListen::Configured(addr) => metrics::bind(addr).await.map_err(anyhow::Error::msg)?,
        MetricsListen::Default(addr) => match metrics::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!("serving without metrics: {e}");
                return Ok(None);
            }
        },
    };
    let addr = listener.local_addr()?;
    let handle = metrics::install().map_err(|e| anyhow::anyhow!("cannot serve metrics: {e}"))?;
    tracing::info!(%addr, "metrics endpoint listening: GET http://{addr}/metrics (plain HTTP, no authentication)");
    Ok(Some(tokio::spawn(async move {
        let refresh = move || metrics::holdings(&coordinator.holdings());
        if let Err(e) = metrics::serve(listener, handle, refresh).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    })))
}
