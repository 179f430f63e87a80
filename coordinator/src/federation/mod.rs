//! The federation core: publishing, withdrawing, consent and obscuring, who-else questions,
//! data-subject reports, and the privacy officers' governance — over plain values, with a domain
//! error ([`FederationError`]). No transport: `server` adapts gRPC to these calls.
//!
//! # Concurrency
//!
//! Questions never wait for a publication to be linked. The state is in two parts:
//! - the [`Writer`] (behind one mutex): the encoding index and the id counter. Every change —
//!   publication, withdrawal, consent, obscuring, policy, retention — takes it, so changes are
//!   serialised and each sees the previous one;
//! - the [`View`] (behind a read-write lock): the link graph, the items' relationships, consents
//!   and the policy. Questions read it, many at once. The writer *plans* a change against it
//!   while questions go on reading, stores the change (flushed), and only then takes the write
//!   lock to *apply* it — a replacement of the entries the change touches, which cannot fail and
//!   is bounded by the graph's bounds.
//!
//! Audit entries are appended by group commit ([`audit_log::AuditLog`]): every receipt is durable
//! before it is given, and many questions share one flush.
//!
//! # No side channels
//!
//! Every response to a node is a function only of what that node may see: acknowledgements carry
//! what the request determines (how many items it held, its batch id), never link counts; answers
//! are shaped from the relationships the asker may see, which are also the only ones walked
//! through ([`View::shaped`]); refusals and errors speak of the node's own items only. Token hubs
//! and cluster bounds count one node's own items (see `linker` and `graph`).
//!
//! # Bounds
//!
//! Per node: rate limits on questions and on audited writes, a quota of items, at most one
//! node's worth of items in one person; per request: the wire limits of `ponte_proto::limits`;
//! per publication: a wait for the writer bounded by the caller's deadline and
//! `[limits] publish_wait_ms` — a publication that did not start in time is refused and **not
//! applied**; once started it always completes (its work is bounded by the linker's and the
//! graph's bounds), so a caller is never told "cancelled" about a batch that was applied.

pub mod audit_log;
pub mod check;
pub mod error;
pub mod limits;
pub mod view;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use ponte_proto::identity::PeerIdentity;
use ponte_proto::schema::LinkageSchema;
use ponte_proto::v1;
use ponte_proto::vocab;

use crate::audit::{Entry, Event, Record};
use crate::config::CoordinatorConfig;
use crate::graph::{GraphBounds, GraphEdit, LinkChange, LinkGraph};
use crate::linker::{IndexBounds, LinkIndex, LinkerParams, Publish};
use crate::metrics;
use crate::model::{self, ItemId, ItemKey, StoredItem};
use crate::policy::{self, Disclosure, Policy};
use crate::storage::{PolicyRow, QuarantineRow, Store};

pub use check::{Caller, Expectations};
pub use error::{FederationError, Result};
use limits::{Class, DiskGuard, RateLimiter};
use view::View;

/// The actor named in audit entries the coordinator makes by itself (first policy, retention).
pub const SELF_ACTOR: &str = "coordinator";

/// Today as YYYYMMDD (UTC).
pub fn today() -> u32 {
    policy::day_of_unix_time(unix_now())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn record(actor: &str, role: &str, policy: &str, event: Event) -> Record {
    Record { time: unix_now(), actor: actor.to_string(), actor_role: role.to_string(), policy: policy.to_string(), event }
}

fn audit_failed(e: crate::storage::StoreError) -> FederationError {
    metrics::storage_failure();
    FederationError::from(e)
}

fn check_policy_text(text: &str) -> std::result::Result<(Policy, Vec<String>), String> {
    let report = policy::check(text);
    match report.policy {
        Some(p) if report.errors.is_empty() => {
            Ok((p, report.warnings.iter().map(|w| format!("{}:{}: {}", w.line, w.column, w.message)).collect()))
        }
        _ => Err(report.errors.iter().map(|e| format!("{}:{}: {}", e.line, e.column, e.message)).collect::<Vec<_>>().join("; ")),
    }
}

/// What only the single writer changes.
struct Writer {
    index: LinkIndex,
    next_id: ItemId,
}

/// The coordinator's state and the calls on it.
pub struct Federation {
    store: Arc<Store>,
    expect: Expectations,
    limits: crate::config::LimitsConfig,
    writer: Mutex<Writer>,
    view: RwLock<View>,
    audit: audit_log::AuditLog,
    rates: RateLimiter,
    disk: Arc<DiskGuard>,
    link_pool: rayon::ThreadPool,
    /// The index's counts as last read (a metrics scrape never waits for the writer).
    index_counts: Mutex<IndexCounts>,
}

/// Encodings per key epoch, index bytes, token hubs.
type IndexCounts = (Vec<(u32, usize)>, usize, usize);

/// How a question ended, for the metrics.
enum QuestionOutcome {
    Answered { shown: metrics::Shown, break_glass: bool },
    Refused(metrics::RefusalReason),
    Failed,
}

/// A who-else question decided, waiting for its audit entry.
struct Decided {
    node: String,
    policy: Arc<Policy>,
    break_glass: bool,
    event: Event,
    keys: audit_log::Keys,
    answer: std::result::Result<Vec<v1::OtherRelationship>, policy::Refusal>,
    counts: metrics::Shown,
}

impl Decided {
    fn record(&self) -> Record {
        record(&self.node, "node", &self.policy.version, self.event.clone())
    }

    /// The break-glass notification to audit after the answer's entry, if this was one.
    fn notify(&self, entry: &Result<Entry>) -> Option<(Record, audit_log::Keys)> {
        let e = entry.as_ref().ok()?;
        if !self.break_glass || self.answer.is_err() {
            return None;
        }
        let officers = self.policy.break_glass_notify().to_vec();
        tracing::warn!(node = %self.node, receipt = e.sequence, officers = ?officers, "break-glass question answered; privacy officers notified");
        Some((record(&self.node, "node", &self.policy.version, Event::BreakGlassNotified { officers, question: e.sequence }), (Vec::new(), None)))
    }

    /// The answer (or refusal) once audited.
    fn conclude(self, entry: Result<Entry>, notice: Option<Result<Entry>>) -> (Result<v1::WhoElseAnswer>, QuestionOutcome) {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return (Err(e), QuestionOutcome::Failed),
        };
        if let Some(Err(e)) = notice {
            return (Err(e), QuestionOutcome::Failed);
        }
        match self.answer {
            Err(refusal) => {
                let reason = metrics::RefusalReason::of(&refusal);
                tracing::info!(node = %self.node, receipt = entry.sequence, reason = reason.label(), "who-else refused");
                (Err(FederationError::Refused { message: refusal.to_string(), receipt: entry.sequence, reason }), QuestionOutcome::Refused(reason))
            }
            Ok(relationships) => {
                let answer = v1::WhoElseAnswer {
                    relationships,
                    notice: ponte_proto::ANSWER_NOTICE.to_string(),
                    receipt: Some(v1::AuditReceipt { sequence: entry.sequence, entry_hash: entry.hash }),
                };
                (Ok(answer), QuestionOutcome::Answered { shown: self.counts, break_glass: self.break_glass })
            }
        }
    }
}

/// Counts a question in the metrics by outcome.
fn count_question(who: &PeerIdentity, q: &v1::WhoElseQuestion, outcome: QuestionOutcome, started: Instant) {
    let purpose = vocab::PurposeName::from_wire(q.purpose).ok();
    let requester = match who.role {
        ponte_proto::identity::Role::Node { entity_type } => Some(entity_type),
        _ => None,
    };
    metrics::question_received(purpose, requester);
    match outcome {
        QuestionOutcome::Answered { shown, break_glass } => metrics::question_answered(purpose, requester, shown, break_glass, started.elapsed()),
        QuestionOutcome::Refused(reason) => metrics::question_refused(reason, started.elapsed()),
        QuestionOutcome::Failed => metrics::question_failed(started.elapsed()),
    }
}

/// A publication's result: its ack and, for the metrics, what linking did.
struct Published {
    pub ack: v1::PublishAck,
    pub outcome: metrics::BatchOutcome,
}

impl Federation {
    /// Opens the store and rebuilds the index, the graph and the view from it.
    pub fn open(cfg: &CoordinatorConfig, schema: &LinkageSchema) -> anyhow::Result<Federation> {
        use anyhow::Context as _;
        cfg.limits.check().map_err(anyhow::Error::msg)?;
        let store = Store::open(&cfg.data_dir)?;
        let loaded = store.load()?;
        let model = cfg.model().map_err(anyhow::Error::msg)?;
        let index_bounds = IndexBounds {
            max_bucket: cfg.limits.max_bucket as usize,
            max_token_holders: cfg.limits.max_token_holders as usize,
            token_identities: cfg.limits.token_identities as usize,
            ..IndexBounds::default()
        };
        let mut index = LinkIndex::new(LinkerParams::for_schema(schema, model), index_bounds).map_err(anyhow::Error::msg)?;
        let graph = LinkGraph::new(GraphBounds { max_items_per_node: cfg.limits.items_per_node_per_person as usize });

        // The policy in force first: the view is built around it.
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
                        anyhow::ensure!(
                            meta.len() <= ponte_proto::limits::MAX_POLICY_BYTES as u64,
                            "the policy file {} is larger than {} bytes",
                            p.display(),
                            ponte_proto::limits::MAX_POLICY_BYTES
                        );
                        (std::fs::read_to_string(p).with_context(|| format!("cannot read the policy file {}", p.display()))?, p.display().to_string())
                    }
                    None => (policy::DEFAULT_POLICY_TOML.to_string(), "the shipped default policy".to_string()),
                };
                let (p, warnings) = check_policy_text(&text).map_err(|e| anyhow::anyhow!("{source}: {e}; run `ponte-coordinator policy check` on it"))?;
                for w in &warnings {
                    tracing::warn!(policy = %p.version, "{w}");
                }
                let row = PolicyRow { version: p.version.clone(), sha256: p.sha256.clone(), text, loaded_at: unix_now(), loaded_by: SELF_ACTOR.into() };
                store.put_policy(&row)?;
                store.flush()?;
                first_policy = Some(row.clone());
                row
            }
        };
        let (policy, _) = check_policy_text(&policy_row.text).map_err(|e| anyhow::anyhow!("the policy in force ({}) no longer checks: {e}", policy_row.version))?;
        let mut view = View::new(graph, policy, policy_row);

        let mut dropped = 0usize;
        for (id, mut item) in loaded.items {
            // Encodings of epochs no longer accepted are dropped (end of a key rotation); the
            // links they established stay.
            let before = item.encodings.len();
            item.encodings.retain(|e| cfg.key_epochs.contains(&e.epoch));
            if item.encodings.len() != before {
                dropped += before - item.encodings.len();
                store.put_item(id, &item, &[], &[])?;
            }
            let entity = v1::EntityType::try_from(item.relationship.entity_type).unwrap_or(v1::EntityType::Unspecified);
            let node = view.nodes.assign(&item.key.node, entity).ok_or_else(|| anyhow::anyhow!("more than 65,536 nodes in the store"))?;
            index.restore(id, item.revision, node, &item.encodings).map_err(|e| anyhow::anyhow!("stored item {id}: {e}"))?;
            view.graph.restore_item(id, node);
            item.encodings = Vec::new();
            view.put_item(id, item);
        }
        for (a, b, band) in loaded.links {
            view.graph.restore_link(a, b, band);
        }
        let repaired = view.graph.finish_restore(loaded.clusters);
        if !repaired.is_empty() {
            store.put_clusters(&repaired)?;
            store.flush()?;
            tracing::info!(items = repaired.len(), "cluster ids assigned or repaired from the links");
        }
        for &id in &loaded.held {
            view.graph.restore_held(id);
        }
        for (epoch, f) in store.lsh_frequencies()? {
            index.restore_frequencies(epoch, f);
        }
        index.finish_restore(loaded.held);
        let frozen = index.frozen_frequencies();
        for (epoch, f) in &frozen {
            store.put_lsh_frequencies(*epoch, f)?;
        }
        if !frozen.is_empty() {
            store.flush()?;
            tracing::info!(epochs = frozen.len(), "LSH positions chosen from the stored filters and kept");
        }
        if dropped > 0 {
            store.flush()?;
            tracing::info!(dropped, epochs = ?cfg.key_epochs, "encodings of retired key epochs dropped");
        }
        for (node, id, row) in store.consents()? {
            view.index_consent(&node, &id, row);
        }
        tracing::info!(items = view.items.len(), policy = %view.policy.version, consents = view.consents.len(), "index rebuilt from storage");

        let threads = match cfg.limits.link_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1).max(1),
            n => n as usize,
        };
        let link_pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("ponte-link-{i}"))
            .build()
            .context("starting the linking threads")?;
        let disk = Arc::new(DiskGuard::new(&cfg.data_dir, cfg.storage.clone()));
        disk.upkeep();
        let store = Arc::new(store);
        let guard = disk.clone();
        let audit = audit_log::AuditLog::start(store.clone(), store.audit_head()?, move || {
            if guard.before_audit() {
                metrics::disk_full();
            }
        });
        let fed = Federation {
            expect: Expectations { fingerprint: schema.fingerprint(), epochs: cfg.key_epochs.clone(), shape: model::EncodingShape::of(schema) },
            limits: cfg.limits.clone(),
            writer: Mutex::new(Writer { index, next_id: loaded.next_id }),
            view: RwLock::new(view),
            audit,
            rates: RateLimiter::new(&cfg.limits),
            disk,
            link_pool,
            index_counts: Mutex::new((Vec::new(), 0, 0)),
            store,
        };
        if let Some(row) = first_policy {
            let event = Event::PolicyLoaded { version: row.version.clone(), sha256: row.sha256.clone(), previous: None, changes: Vec::new() };
            fed.append(SELF_ACTOR, SELF_ACTOR, &row.version, event, (Vec::new(), None))?;
        }
        Ok(fed)
    }

    /// Appends one audit record (the policy version it was decided under named explicitly),
    /// waiting on this thread until it is durable.
    fn append(&self, actor: &str, role: &str, policy: &str, event: Event, keys: audit_log::Keys) -> Result<Entry> {
        self.audit.append(record(actor, role, policy, event), keys).map_err(audit_failed)
    }

    /// Periodic upkeep (about every second): the ballast, and reopening the store after a failed
    /// write once space is back.
    pub fn upkeep(&self) {
        if self.store.failed() {
            self.disk.release();
            if self.store.recover(Duration::from_secs(5)).is_ok() {
                match self.store.audit_head() {
                    Ok(head) => self.audit.reset_head(head),
                    Err(e) => tracing::error!(error = %e, "reading the audit head after the store reopened"),
                }
            }
        }
        if !self.store.failed() {
            self.disk.upkeep();
        }
    }

    // -----------------------------------------------------------------------------------------
    // Publishing

    /// Applies a publish batch; returns its ack once the batch is durable. An ack depends only
    /// on the batch (its id and how many items it held), never on what else is stored.
    ///
    /// `deadline`: the caller's; a batch that could not start before it (or before
    /// `[limits] publish_wait_ms`) is refused with [`FederationError::Deadline`] and not applied.
    pub fn publish(&self, who: &PeerIdentity, batch: &v1::PublishBatch, deadline: Option<Instant>) -> Result<v1::PublishAck> {
        let started = Instant::now();
        match self.publish_uncounted(who, batch, deadline) {
            Ok(p) => {
                metrics::batch(&who.id, p.outcome, started.elapsed());
                Ok(p.ack)
            }
            Err(e) => {
                let outcome = if matches!(e, FederationError::Storage(_)) { metrics::BatchOutcome::Error } else { metrics::BatchOutcome::Refused };
                metrics::batch(&who.id, outcome, started.elapsed());
                Err(e)
            }
        }
    }

    /// [`Federation::publish`] without the accounting.
    fn publish_uncounted(&self, who: &PeerIdentity, batch: &v1::PublishBatch, deadline: Option<Instant>) -> Result<Published> {
        let started = Instant::now();
        let checked = check::publish(who, &self.expect, batch)?;
        let node = checked.caller.node.clone();
        self.disk.check_write().inspect_err(|_| metrics::disk_full())?;
        let wait = Duration::from_millis(self.limits.publish_wait_ms);
        let callers = deadline.is_some_and(|d| d < started + wait);
        let until = deadline.map_or(started + wait, |d| d.min(started + wait));
        let mut writer = {
            let _waiting = metrics::Waiting::start();
            self.writer.try_lock_until(until).ok_or_else(|| {
                let waited = until.saturating_duration_since(started).as_millis();
                if callers {
                    FederationError::Deadline(format!(
                        "the batch's deadline passed after {waited} ms, before the coordinator could start it (busy linking other publications); nothing of it was applied — send it again"
                    ))
                } else {
                    FederationError::Busy(format!(
                        "the coordinator could not start this batch within {waited} ms (busy linking other publications); nothing of it was applied — send it again"
                    ))
                }
            })?
        };
        let accepted = checked.items.len() as u32;
        let batch_id = checked.batch_id;
        let outcome = self.apply_batch(&mut writer, checked)?;
        drop(writer);
        tracing::info!(node = %node, batch = batch_id, accepted, took_ms = started.elapsed().as_millis() as u64, "batch stored");
        Ok(Published { ack: v1::PublishAck { batch_id, accepted }, outcome })
    }

    /// Links, stores and applies a checked batch, holding the writer.
    fn apply_batch(&self, writer: &mut Writer, batch: check::CheckedBatch) -> Result<metrics::BatchOutcome> {
        let caller = batch.caller;
        // Node number, ids, and what is already held exactly as sent (a re-sent batch).
        let node_ix = {
            let known = self.view.read().nodes.get(&caller.node);
            match known {
                Some(n) => n,
                None => self
                    .view
                    .write()
                    .nodes
                    .assign(&caller.node, caller.entity)
                    .ok_or_else(|| FederationError::Quota("the federation has 65,536 nodes: no more can publish".into()))?,
            }
        };
        let mut fresh: Vec<(ItemId, model::Publication, Option<StoredItem>)> = Vec::with_capacity(batch.items.len());
        let mut replayed = 0usize;
        {
            let v = self.view.read();
            let held_now = v.items_per_node.get(&node_ix).copied().unwrap_or(0);
            let new_items = batch.items.iter().filter(|p| !v.ids.contains_key(&p.key)).count() as u64;
            if held_now + new_items > self.limits.items_per_node {
                return Err(FederationError::Quota(format!(
                    "this node holds {held_now} items and the batch adds {new_items}: at most {} per node ([limits] items_per_node); withdraw what is no longer in care",
                    self.limits.items_per_node
                )));
            }
            let mut assigned: HashMap<ItemKey, ItemId> = HashMap::new();
            for p in batch.items {
                let existing = v.ids.get(&p.key).copied();
                let id = match existing.or_else(|| assigned.get(&p.key).copied()) {
                    Some(id) => id,
                    None => {
                        let id = writer.next_id;
                        writer.next_id += 1;
                        assigned.insert(p.key.clone(), id);
                        id
                    }
                };
                let current = existing.and_then(|id| v.items.get(&id));
                if let Some(cur) = current
                    && cur.revision == p.revision
                    && cur.relationship == p.relationship
                    && cur.obscured == p.obscured
                    && cur.quality_flags == p.quality_flags
                    && writer.index.holds_encoding(id, &p.encoding)
                {
                    replayed += 1;
                    continue;
                }
                fresh.push((id, p, current.cloned()));
            }
        }
        if fresh.is_empty() {
            return Ok(metrics::BatchOutcome::Replayed);
        }
        if fresh.last().is_some_and(|(id, _, _)| *id > crate::linker::MAX_ITEM_ID) {
            return Err(FederationError::Quota(format!("the coordinator holds its limit of {} items", crate::linker::MAX_ITEM_ID)));
        }
        if replayed > 0 {
            tracing::debug!(node = %caller.node, replayed, "items sent again unchanged: nothing to do for them");
        }

        // Link (the index only: questions go on).
        let linking = Instant::now();
        let publish: Vec<Publish<'_>> =
            fresh.iter().map(|(id, p, _)| Publish { id: *id, revision: p.revision, encoding: &p.encoding, node: node_ix }).collect();
        let linked = self
            .link_pool
            .install(|| writer.index.link_batch(&publish))
            .map_err(|e| FederationError::Quota(e.to_string()))?;
        drop(publish);
        let stats = linked.stats;
        // Plan the graph change against the view as it is (readers go on).
        let mut plan = self.view.read().graph.plan(&linked.edits);
        let link_time = linking.elapsed();

        // Store everything, then flush once.
        let frozen = writer.index.frozen_frequencies();
        let stored = frozen
            .iter()
            .try_for_each(|(epoch, f)| self.store.put_lsh_frequencies(*epoch, f).map_err(FederationError::from))
            .and_then(|()| self.store_batch(&caller, &fresh, &linked, &plan));
        if let Err(e) = stored {
            writer.index.undo(&linked);
            metrics::storage_failure();
            return Err(e);
        }
        for q in &plan.quarantined {
            writer.index.hold(q.id);
        }
        // Apply.
        plan.changes.clear();
        let held_ids: Vec<ItemId> = plan.quarantined.iter().map(|q| q.id).collect();
        let items: Vec<(ItemId, StoredItem)> = fresh.into_iter().map(|(id, p, existing)| (id, merged_item(existing, p))).collect();
        {
            let mut v = self.view.write();
            let applying = Instant::now();
            v.graph.apply(plan);
            for (id, item) in items {
                v.put_item(id, item);
            }
            metrics::view_applied(applying.elapsed());
        }
        if !held_ids.is_empty() || !linked.hubs.is_empty() {
            metrics::quarantined(linked.hubs.len() as u64, held_ids.len() as u64);
        }
        Ok(metrics::BatchOutcome::Stored(metrics::Linked {
            items: stats.linked_items,
            links_by_band: stats.links_by_band,
            comparisons: stats.comparisons,
            link_time,
        }))
    }

    /// Writes a linked batch to the store and flushes: items, links, clusters, held items and
    /// what a data steward should see.
    fn store_batch(
        &self,
        caller: &Caller,
        fresh: &[(ItemId, model::Publication, Option<StoredItem>)],
        linked: &crate::linker::Linked,
        plan: &crate::graph::Plan,
    ) -> Result<()> {
        let change_of: HashMap<ItemId, &LinkChange> = plan.changes.iter().map(|(id, c)| (*id, c)).collect();
        let mut written: HashSet<ItemId> = HashSet::new();
        for (id, p, existing) in fresh {
            // The same identity under another key epoch keeps the encodings of the others,
            // which only the store holds.
            let mut item = match existing {
                Some(e) if e.revision == p.revision => {
                    self.store.get_item(&p.key)?.filter(|s| s.revision == p.revision).unwrap_or_else(|| e.clone())
                }
                _ => p.new_item(),
            };
            item.set_encoding(p.encoding.clone());
            p.update(&mut item);
            match change_of.get(id) {
                Some(LinkChange::Relinked { removed, links }) => self.store.put_item(*id, &item, removed, links)?,
                _ => self.store.put_item(*id, &item, &[], &[])?,
            }
            written.insert(*id);
        }
        // Items relinked because a token became a hub: only their links change.
        for (id, change) in &plan.changes {
            if !written.contains(id)
                && let LinkChange::Relinked { removed, links } = change
            {
                self.store.put_links(*id, removed, links)?;
            }
        }
        self.store.put_clusters(&plan.clusters)?;
        let held: Vec<ItemId> = plan.quarantined.iter().map(|q| q.id).collect();
        let relinked: Vec<ItemId> = linked.edits.iter().filter_map(|e| if let GraphEdit::Relink { id, .. } = e { Some(*id) } else { None }).collect();
        self.store.set_held(&relinked, false)?;
        self.store.set_held(&held, true)?;
        let now = unix_now();
        let labels = |ids: &mut dyn Iterator<Item = ItemId>| -> Vec<String> {
            let v = self.view.read();
            let fresh_keys: HashMap<ItemId, &ItemKey> = fresh.iter().map(|(id, p, _)| (*id, &p.key)).collect();
            ids.take(64).filter_map(|id| fresh_keys.get(&id).map(|k| k.label()).or_else(|| v.items.get(&id).map(|i| i.key.label()))).collect()
        };
        for hub in &linked.hubs {
            let row = QuarantineRow {
                time: now,
                kind: "token_hub".into(),
                node: caller.node.clone(),
                token_kind: hub.kind,
                items: hub.holders.len() as u32,
                identities: hub.identities as u32,
                references: labels(&mut hub.holders.iter().copied()),
            };
            let kind = vocab::TokenKindName::name(v1::TokenKind::try_from(hub.kind).unwrap_or(v1::TokenKind::Unspecified));
            let key = format!("token_hub/{}/{}/{}", caller.node, kind, row.references.first().cloned().unwrap_or_default());
            self.store.put_quarantine(&key, &row)?;
            tracing::warn!(node = %caller.node, kind = %kind, holders = hub.holders.len(), identities = hub.identities, "a token this node gives to several identities is no longer evidence (quarantined for a data steward)");
        }
        for q in &plan.quarantined {
            let refs = labels(&mut std::iter::once(q.id));
            let row = QuarantineRow {
                time: now,
                kind: "cluster_bound".into(),
                node: caller.node.clone(),
                token_kind: 0,
                items: q.items_of_node as u32,
                identities: 0,
                references: refs.clone(),
            };
            self.store.put_quarantine(&format!("cluster_bound/{}", refs.first().cloned().unwrap_or_default()), &row)?;
        }
        if !plan.quarantined.is_empty() {
            tracing::warn!(node = %caller.node, held = plan.quarantined.len(), "items held without links: one person would hold more items of this node than the federation allows (quarantined for a data steward)");
        }
        self.store.flush()?;
        Ok(())
    }

    /// Updates the relationship of one of the caller's items.
    pub fn update_relationship(&self, who: &PeerIdentity, r: &v1::UpdateRelationshipRequest) -> Result<v1::Ack> {
        let (caller, key, rel) = check::update_relationship(who, r)?;
        self.rates.take(&caller.node, Class::Write).inspect_err(|_| metrics::rate_limited(Class::Write))?;
        self.disk.check_write().inspect_err(|_| metrics::disk_full())?;
        let _writer = self.writer.lock();
        let Some(id) = self.view.read().ids.get(&key).copied() else {
            return Err(FederationError::NotFound("no published item has that reference; publish it first".into()));
        };
        let Some(mut stored) = self.store.get_item(&key)? else {
            return Err(FederationError::NotFound("no published item has that reference; publish it first".into()));
        };
        stored.relationship = rel;
        self.store.put_item(id, &stored, &[], &[])?;
        self.store.flush()?;
        stored.encodings = Vec::new();
        self.view.write().put_item(id, stored);
        metrics::relationship_updated();
        Ok(v1::Ack { affected: 1 })
    }

    /// Erasure: removes the caller's items, their encodings, links and the consents keyed by
    /// them. Audited with a constant-size entry. `affected` counts the caller's own items erased.
    pub fn withdraw(&self, who: &PeerIdentity, r: &v1::WithdrawRequest) -> Result<v1::Ack> {
        let (caller, keys) = check::withdraw(who, r)?;
        self.rates.take(&caller.node, Class::Write).inspect_err(|_| metrics::rate_limited(Class::Write))?;
        let mut writer = self.writer.lock();
        let ids: Vec<(ItemKey, ItemId)> = {
            let v = self.view.read();
            keys.iter().filter_map(|k| v.ids.get(k).map(|id| (k.clone(), *id))).collect()
        };
        let erased = self.erase(&mut writer, &ids)?;
        let labels: Vec<String> = ids.iter().map(|(k, _)| k.label()).collect();
        let event = Event::Erased { requested: keys.len() as u32, erased: erased as u32, digest: crate::audit::labels_digest(&labels) };
        let policy = self.view.read().policy.version.clone();
        self.append(&caller.node, "node", &policy, event, (Vec::new(), None))?;
        drop(writer);
        metrics::items_withdrawn(&caller.node, erased as u64);
        Ok(v1::Ack { affected: erased as u32 })
    }

    /// Erases items (known ids): store first (not flushed: the caller's audit append flushes),
    /// then the index and the view.
    fn erase(&self, writer: &mut Writer, ids: &[(ItemKey, ItemId)]) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let edits: Vec<GraphEdit> = ids.iter().map(|(_, id)| GraphEdit::Remove { id: *id }).collect();
        let (plan, neighbours, consents) = {
            let v = self.view.read();
            let consents: Vec<(String, String)> = ids.iter().flat_map(|(_, id)| v.consents_by_item.get(id).cloned().unwrap_or_default()).collect();
            let neighbours: Vec<Vec<ItemId>> = ids.iter().map(|(_, id)| v.graph.links_of(*id).into_iter().map(|l| l.0).collect()).collect();
            (v.graph.plan(&edits), neighbours, consents)
        };
        for ((key, id), n) in ids.iter().zip(&neighbours) {
            self.store.remove_item(*id, key, n)?;
        }
        for (node, consent) in &consents {
            self.store.remove_consent(node, consent)?;
        }
        self.store.put_clusters(&plan.clusters)?;
        for (_, id) in ids {
            writer.index.remove(*id);
        }
        let mut v = self.view.write();
        v.graph.apply(plan);
        for (_, id) in ids {
            v.remove_item(*id);
        }
        Ok(ids.len())
    }

    // -----------------------------------------------------------------------------------------
    // Consent and obscuring

    /// Records (or replaces) a consent keyed by one of the caller's published references.
    pub fn record_consent(&self, who: &PeerIdentity, c: &v1::ConsentAssertion) -> Result<v1::Ack> {
        let (caller, consent_id, row) = check::consent(who, c)?;
        self.rates.take(&caller.node, Class::Write).inspect_err(|_| metrics::rate_limited(Class::Write))?;
        self.disk.check_write().inspect_err(|_| metrics::disk_full())?;
        let _writer = self.writer.lock();
        let policy = {
            let v = self.view.read();
            if !v.ids.contains_key(&row.reference) {
                return Err(FederationError::NotFound(
                    "the consent's reference is not one of this node's published relationships: publish the relationship first, then send the consent".into(),
                ));
            }
            v.policy.version.clone()
        };
        self.store.put_consent(&caller.node, &consent_id, &row)?;
        let event = Event::ConsentRecorded { consent: row.consent.label.clone(), reference: row.reference.label() };
        self.append(&caller.node, "node", &policy, event, (Vec::new(), None))?;
        self.view.write().index_consent(&caller.node, &consent_id, row);
        metrics::consent_recorded();
        Ok(v1::Ack { affected: 1 })
    }

    /// Revokes a consent: effective on the next question. Revoking an unknown consent is not an
    /// error (retries are safe); `affected` says whether this node had recorded it.
    pub fn revoke_consent(&self, who: &PeerIdentity, r: &v1::ConsentRevocation) -> Result<v1::Ack> {
        let (caller, consent_id) = check::revocation(who, r)?;
        self.rates.take(&caller.node, Class::Write).inspect_err(|_| metrics::rate_limited(Class::Write))?;
        let _writer = self.writer.lock();
        let k = (caller.node.clone(), consent_id.clone());
        let (existed, policy) = {
            let v = self.view.read();
            (v.consents.contains_key(&k), v.policy.version.clone())
        };
        self.store.remove_consent(&caller.node, &consent_id)?;
        self.append(&caller.node, "node", &policy, Event::ConsentRevoked { consent: format!("{}/{}", caller.node, consent_id) }, (Vec::new(), None))?;
        self.view.write().unindex_consent(&k);
        if existed {
            metrics::consent_revoked();
        }
        Ok(v1::Ack { affected: existed as u32 })
    }

    /// Sets or lifts the obscuring of one of the caller's items: effective on the next question.
    pub fn set_obscured(&self, who: &PeerIdentity, r: &v1::ObscureRequest) -> Result<v1::Ack> {
        let (caller, key, obscured) = check::obscure(who, r)?;
        self.rates.take(&caller.node, Class::Write).inspect_err(|_| metrics::rate_limited(Class::Write))?;
        let _writer = self.writer.lock();
        let (id, policy) = {
            let v = self.view.read();
            let Some(id) = v.ids.get(&key).copied() else {
                return Err(FederationError::NotFound("no published item has that reference; publish it first".into()));
            };
            (id, v.policy.version.clone())
        };
        let Some(mut stored) = self.store.get_item(&key)? else {
            return Err(FederationError::NotFound("no published item has that reference; publish it first".into()));
        };
        stored.obscured = obscured;
        self.store.put_item(id, &stored, &[], &[])?;
        self.append(&caller.node, "node", &policy, Event::ObscuringChanged { item: key.label(), obscured }, (Vec::new(), None))?;
        if let Some(item) = self.view.write().items.get_mut(&id) {
            item.obscured = obscured;
        }
        metrics::obscuring_changed(obscured);
        Ok(v1::Ack { affected: 1 })
    }

    // -----------------------------------------------------------------------------------------
    // Questions

    /// Answers a who-else question, or refuses it; both are audited (a question malformed, made
    /// as another node, or over the node's rate is refused before it is a question, and is not).
    /// Counted in the metrics by outcome. Waits on this thread for the audit entry; async callers
    /// use [`Federation::who_else_async`].
    pub fn who_else(&self, who: &PeerIdentity, q: &v1::WhoElseQuestion) -> Result<v1::WhoElseAnswer> {
        let started = Instant::now();
        let (answer, outcome) = match self.decide_question(who, q) {
            Err(refused) => refused,
            Ok(d) => {
                let entry = self.audit.append(d.record(), d.keys.clone()).map_err(audit_failed);
                let notice = match (&entry, d.notify(&entry)) {
                    (Ok(_), Some((r, k))) => Some(self.audit.append(r, k).map_err(audit_failed)),
                    _ => None,
                };
                d.conclude(entry, notice)
            }
        };
        count_question(who, q, outcome, started);
        answer
    }

    /// [`Federation::who_else`] on an async task: the decision is made at once (under the view's
    /// read lock, which no writer holds for long), and the task awaits its audit entry without
    /// blocking its thread.
    pub async fn who_else_async(&self, who: &PeerIdentity, q: &v1::WhoElseQuestion) -> Result<v1::WhoElseAnswer> {
        let started = Instant::now();
        let (answer, outcome) = match self.decide_question(who, q) {
            Err(refused) => refused,
            Ok(d) => {
                let entry = self.audit.append_async(d.record(), d.keys.clone()).await.map_err(audit_failed);
                let notice = match d.notify(&entry) {
                    Some((r, k)) => Some(self.audit.append_async(r, k).await.map_err(audit_failed)),
                    None => None,
                };
                d.conclude(entry, notice)
            }
        };
        count_question(who, q, outcome, started);
        answer
    }

    /// A question checked, rate-limited and decided under the view's read lock: what to audit
    /// and what to answer once audited. Refusals before the policy (malformed, another node's
    /// name, over the rate) are `Err`, with their outcome.
    fn decide_question(&self, who: &PeerIdentity, q: &v1::WhoElseQuestion) -> std::result::Result<Decided, (Result<v1::WhoElseAnswer>, QuestionOutcome)> {
        let asked = match check::who_else(who, q) {
            Ok(a) => a,
            Err(e) => {
                let reason = if matches!(e, FederationError::Forbidden(_)) { metrics::RefusalReason::WrongNode } else { metrics::RefusalReason::InvalidRequest };
                return Err((Err(e), QuestionOutcome::Refused(reason)));
            }
        };
        if let Err(e) = self.rates.take(&asked.caller.node, Class::Question) {
            metrics::rate_limited(Class::Question);
            return Err((Err(e), QuestionOutcome::Failed));
        }
        let names = (vocab::PurposeName::name(asked.purpose), vocab::OperatorRoleName::name(asked.role));
        let v = self.view.read();
        let s = v.setup(&asked.caller.node, asked.caller.entity, &asked.anchor.reference, asked.purpose, asked.role, asked.break_glass, today());
        let decided = match v.check(&s) {
            Err(refusal) => Decided {
                event: Event::WhoElseRefused {
                    purpose: names.0,
                    operator_role: names.1,
                    operator_id: asked.operator_id.clone(),
                    anchor: s.anchor_key.label(),
                    reason: refusal.to_string(),
                    cluster: s.cluster,
                },
                keys: (vec![s.anchor_key.label()], s.cluster),
                policy: s.policy.clone(),
                node: asked.caller.node.clone(),
                break_glass: asked.break_glass.is_some(),
                answer: Err(refusal),
                counts: metrics::Shown::default(),
            },
            Ok(anchor) => {
                let (relationships, shown) = v.shaped(&s, anchor);
                let counts = metrics::Shown {
                    full: shown.iter().filter(|(_, d)| *d == Disclosure::Full).count() as u64,
                    generalised: shown.iter().filter(|(_, d)| *d == Disclosure::Generalised).count() as u64,
                };
                let (shown_labels, shown_as) = v.audit_shown(&shown);
                Decided {
                    keys: (std::iter::once(s.anchor_key.label()).chain(shown_labels.iter().cloned()).collect(), s.cluster),
                    event: Event::WhoElseAnswered {
                        purpose: names.0,
                        operator_role: names.1,
                        operator_id: asked.operator_id.clone(),
                        anchor: s.anchor_key.label(),
                        shown: shown_labels,
                        shown_as,
                        cluster: s.cluster,
                        break_glass: asked.break_glass.map(vocab::BreakGlassReasonName::name),
                    },
                    policy: s.policy.clone(),
                    node: asked.caller.node.clone(),
                    break_glass: asked.break_glass.is_some(),
                    answer: Ok(relationships),
                    counts,
                }
            }
        };
        Ok(decided)
    }

    /// A data-subject report through the person's own node: the person's relationships as the
    /// policy lets that node see them, and every question that touched the person's cluster
    /// (read through the audit's indexes, not the whole chain).
    pub fn subject_report(&self, who: &PeerIdentity, r: &v1::SubjectReportRequest) -> Result<v1::SubjectReport> {
        const MAX_ACCESSES: usize = 10_000;
        let (caller, key, operator_id) = check::subject_report(who, r)?;
        self.rates.take(&caller.node, Class::Question).inspect_err(|_| metrics::rate_limited(Class::Question))?;
        let (relationships, visible, labels, cluster, names, policy) = {
            let v = self.view.read();
            let s = v.setup(&caller.node, caller.entity, &key.reference, v1::Purpose::RichiestaInteressato, v1::OperatorRole::ReferentePrivacy, None, today());
            // The person's right of access does not depend on the relationship still being active.
            let anchor = match v.check(&s) {
                Ok(a) => a,
                Err(policy::Refusal::AnchorNotActive) => s.anchor.expect("an inactive anchor is held"),
                Err(policy::Refusal::AnchorNotHeld) => {
                    return Err(FederationError::NotFound(
                        "the reference is not one of this node's published relationships: a data-subject report goes through a node that holds the person".into(),
                    ));
                }
                Err(refusal) => return Err(FederationError::Forbidden(refusal.to_string())),
            };
            let (relationships, shown) = v.shaped(&s, anchor);
            // What the person's node may know of: its own items and those it was just shown.
            let mut visible: HashMap<String, Disclosure> = shown.iter().map(|(k, d)| (k.label(), *d)).collect();
            let mut labels: HashSet<String> = HashSet::new();
            for m in v.graph.cluster_members(anchor) {
                if let Some(item) = v.items.get(&m) {
                    labels.insert(item.key.label());
                    if item.key.node == caller.node {
                        visible.insert(item.key.label(), Disclosure::Full);
                    }
                }
            }
            let names: HashMap<String, String> = v
                .items
                .values()
                .filter(|i| labels.contains(&i.key.label()))
                .map(|i| (i.key.node.clone(), i.entity_name.clone()))
                .collect();
            (relationships, visible, labels, s.cluster, names, s.policy.clone())
        };
        let label_list: Vec<String> = labels.iter().cloned().collect();
        let (sequences, _more) = self.store.audit_about(&label_list, cluster, MAX_ACCESSES)?;
        let mut accesses = Vec::new();
        for seq in sequences {
            let Some(e) = self.store.audit_entry(seq)? else { continue };
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
                        entity_name: names.get(node).cloned().unwrap_or_else(|| node.to_string()),
                        category,
                        category_group: group,
                    }
                })
                .collect();
            accesses.push(v1::SubjectAccess {
                time: e.record.time,
                entity_id: e.record.actor.clone(),
                entity_name: names.get(&e.record.actor).cloned().unwrap_or_else(|| e.record.actor.clone()),
                purpose: vocab::PurposeName::parse(purpose).map(|p| p as i32).unwrap_or(0),
                operator_role: vocab::OperatorRoleName::parse(role).map(|r| r as i32).unwrap_or(0),
                operator_id: operator.clone(),
                refused,
                disclosed,
            });
        }
        let entry = self.append(
            &caller.node,
            "node",
            &policy.version,
            Event::SubjectReported { reference: key.label(), operator_id, accesses: accesses.len() },
            (Vec::new(), None),
        )?;
        metrics::subject_report();
        Ok(v1::SubjectReport {
            relationships,
            accesses,
            notice: ponte_proto::ANSWER_NOTICE.to_string(),
            receipt: Some(v1::AuditReceipt { sequence: entry.sequence, entry_hash: entry.hash }),
        })
    }

    // -----------------------------------------------------------------------------------------
    // Governance (privacy officers)

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

    /// Checks and loads a new policy version live; audited with the changes it makes. Questions
    /// after this call are decided under the new version.
    pub fn reload_policy(&self, who: &PeerIdentity, doc: &v1::PolicyDocument) -> Result<v1::PolicyStatus> {
        check::policy_document(who, doc)?;
        let (new, warnings) = check_policy_text(&doc.toml).map_err(|e| FederationError::Invalid(format!("policy refused, nothing changed: {e}")))?;
        let _writer = self.writer.lock();
        let (changes, previous) = {
            let v = self.view.read();
            (policy::diff(&v.policy, &new), v.policy.version.clone())
        };
        let row = PolicyRow { version: new.version.clone(), sha256: new.sha256.clone(), text: doc.toml.clone(), loaded_at: unix_now(), loaded_by: who.id.clone() };
        self.store.put_policy(&row)?;
        let entry = self.append(
            &who.id,
            who.role.name(),
            &row.version,
            Event::PolicyLoaded { version: row.version.clone(), sha256: row.sha256.clone(), previous: Some(previous), changes },
            (Vec::new(), None),
        )?;
        {
            let mut v = self.view.write();
            v.policy = Arc::new(new);
            v.policy_row = row.clone();
        }
        metrics::policy_reloaded();
        tracing::info!(version = %row.version, receipt = entry.sequence, "policy loaded live by a privacy officer (the audit entry names who)");
        Ok(Self::policy_status(&row, warnings, Some(&entry), false))
    }

    pub fn current_policy(&self, who: &PeerIdentity) -> Result<v1::PolicyStatus> {
        check::officer(who)?;
        let row = self.view.read().policy_row.clone();
        let warnings = check_policy_text(&row.text).map(|(_, w)| w).unwrap_or_default();
        Ok(Self::policy_status(&row, warnings, None, true))
    }

    /// Why a relationship was or was not disclosed for a question, rule by rule. The question
    /// is a past one (by receipt) or described; either way it is set up exactly as who-else sets
    /// it up (the asker's entity from its certificate, as recorded when it published) and
    /// evaluated under today's policy, consents and links.
    pub fn explain(&self, who: &PeerIdentity, r: &v1::ExplainRequest) -> Result<v1::Explanation> {
        let (question, target_key) = check::explain(who, r)?;
        let (asker, anchor_ref, purpose, role, reason) = match question {
            check::ExplainQuestion::Receipt(seq) => {
                let e = self.store.audit_entry(seq)?.ok_or_else(|| FederationError::NotFound(format!("no audit entry {seq}")))?;
                let (purpose, role, anchor, bg) = match &e.record.event {
                    Event::WhoElseAnswered { purpose, operator_role, anchor, break_glass, .. } => (purpose, operator_role, anchor, break_glass.clone()),
                    Event::WhoElseRefused { purpose, operator_role, anchor, .. } => (purpose, operator_role, anchor, None),
                    _ => return Err(FederationError::Invalid(format!("audit entry {seq} is not a who-else question"))),
                };
                let anchor_ref = anchor.split_once('/').map(|(_, r)| r.to_string()).unwrap_or_default();
                let stored = |what: &str, e: String| FederationError::Storage(format!("audit entry {seq}: its {what} is unreadable ({e})"));
                (
                    e.record.actor.clone(),
                    anchor_ref,
                    vocab::PurposeName::parse(purpose).map_err(|e| stored("purpose", e))?,
                    vocab::OperatorRoleName::parse(role).map_err(|e| stored("role", e))?,
                    bg.map(|b| vocab::BreakGlassReasonName::parse(&b)).transpose().map_err(|e| stored("break-glass reason", e))?,
                )
            }
            check::ExplainQuestion::Described { asker, anchor_reference, purpose, role, break_glass } => (asker, anchor_reference, purpose, role, break_glass),
        };
        let rule = |rule: &str, passed: bool, detail: String| v1::RuleOutcome { rule: rule.into(), passed, detail };
        let mut rules: Vec<v1::RuleOutcome> = Vec::new();
        let mut disclosure = Disclosure::Nothing;
        let policy = {
            let v = self.view.read();
            let entity = v.nodes.entity(&asker).unwrap_or(v1::EntityType::Unspecified);
            let s = v.setup(&asker, entity, &anchor_ref, purpose, role, reason, today());
            let target = v.ids.get(&target_key).copied();
            match (s.anchor, target) {
                (None, _) => rules.push(rule("anchor", false, format!("{} is not a published item", s.anchor_key.label()))),
                (_, None) => rules.push(rule("target", false, format!("{} is not a published item (never published, withdrawn or expired)", target_key.label()))),
                (Some(_), Some(t)) => match v.check(&s) {
                    Err(refusal) => rules.push(rule("question", false, format!("the question is refused: {refusal}"))),
                    Ok(a) => {
                        rules.push(rule("question", true, "purpose, role and anchor allowed".into()));
                        let all = v.graph.related(a, &|_| true);
                        match all.into_iter().find(|(id, _)| *id == t).map(|(_, b)| b) {
                            None => rules.push(rule("same-person", false, "the target is not linked to the anchor's person".into())),
                            Some(band) => {
                                rules.push(rule("same-person", true, format!("linked to the anchor's person, band {band:?}")));
                                let consents = v.cluster_consents(t);
                                let item = &v.items[&t];
                                let decision = policy::decide(
                                    &s.policy,
                                    &s.question,
                                    &policy::Target { relationship: &item.relationship, band, obscured: item.obscured, consents: &consents },
                                );
                                rules.extend(decision.trace.into_iter().map(|o| rule(o.rule, o.passed, o.detail)));
                                disclosure = decision.disclosure;
                                if disclosure != Disclosure::Nothing {
                                    // Shown only if the asker reaches it through what it may see.
                                    let (_, shown) = v.shaped(&s, a);
                                    if !shown.iter().any(|(k, _)| *k == target_key) {
                                        rules.push(rule(
                                            "reached",
                                            false,
                                            "linked to the anchor only through relationships this asker may not see, so not shown (nothing withheld connects what is shown)".into(),
                                        ));
                                        disclosure = Disclosure::Nothing;
                                    }
                                }
                            }
                        }
                    }
                },
            }
            s.policy.clone()
        };
        let disclosed = disclosure != Disclosure::Nothing;
        let entry = self.append(
            &who.id,
            who.role.name(),
            &policy.version,
            Event::Explained { target: target_key.label(), question: r.receipt_sequence, disclosed },
            (Vec::new(), None),
        )?;
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

    /// One page of audit entries by time, node and purpose; the query is audited.
    pub fn query_audit(&self, who: &PeerIdentity, q: &v1::AuditQuery) -> Result<v1::AuditPage> {
        /// Entries examined per page at most, whatever matches.
        const MAX_EXAMINED: usize = 200_000;
        let page = check::audit_query(who, q)?;
        let mut entries: Vec<v1::AuditEntryJson> = Vec::new();
        let mut bytes = 0usize;
        let mut failure = None;
        let (last, more) = self.store.audit_scan(page.from, MAX_EXAMINED, |e| {
            if !page.filter.matches(e) {
                return true;
            }
            match serde_json::to_string(e) {
                Ok(json) => {
                    bytes += json.len() + 16;
                    entries.push(v1::AuditEntryJson { sequence: e.sequence, json });
                }
                Err(err) => failure = Some(err.to_string()),
            }
            failure.is_none() && entries.len() < page.limit && bytes < page.max_bytes
        })?;
        if let Some(f) = failure {
            return Err(FederationError::Storage(format!("an audit entry could not be written out: {f}")));
        }
        let described = serde_json::to_string(&page.filter).unwrap_or_default();
        let policy = self.view.read().policy.version.clone();
        self.append(&who.id, who.role.name(), &policy, Event::AuditQueried { filter: described, returned: entries.len() }, (Vec::new(), None))?;
        metrics::audit_query();
        let next_sequence = last.map_or(page.from, |l| l + 1);
        Ok(v1::AuditPage { entries, truncated: more, more, next_sequence })
    }

    /// What a data steward should look at: token hubs and held items.
    pub fn quarantine(&self, who: &PeerIdentity, q: &v1::QuarantineQuery) -> Result<v1::QuarantineReport> {
        let (after, limit) = check::quarantine_query(who, q)?;
        let (rows, more) = self.store.quarantine(&after, limit)?;
        let next_key = if more { rows.last().map(|r| r.0.clone()).unwrap_or_default() } else { String::new() };
        Ok(v1::QuarantineReport {
            entries: rows
                .into_iter()
                .map(|(key, r)| v1::QuarantineEntry {
                    key,
                    time: r.time,
                    kind: r.kind,
                    node: r.node,
                    token_kind: r.token_kind,
                    items: r.items,
                    identities: r.identities,
                    references: r.references,
                })
                .collect(),
            next_key,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Retention and upkeep

    /// Removes closed relationships older than the policy's retention (as an erasure), in
    /// chunks so that questions are never held up long, and audits what it removed. Returns
    /// how many were removed.
    pub fn sweep_retention(&self, today: u32) -> Result<usize> {
        const CHUNK: usize = 1_000;
        let mut total = 0usize;
        loop {
            let mut writer = self.writer.lock();
            let (expired, months, policy) = {
                let v = self.view.read();
                let policy = v.policy.clone();
                let mut expired: Vec<(ItemKey, ItemId)> = Vec::new();
                'months: for (&month, ids) in &v.closed {
                    if !policy.retention_expired(month, today) {
                        break;
                    }
                    for id in ids {
                        if let Some(item) = v.items.get(id) {
                            expired.push((item.key.clone(), *id));
                            if expired.len() == CHUNK {
                                break 'months;
                            }
                        }
                    }
                }
                (expired, policy.retention_closed_months(), policy)
            };
            if expired.is_empty() {
                return Ok(total);
            }
            let n = self.erase(&mut writer, &expired)?;
            let labels: Vec<String> = expired.iter().map(|(k, _)| k.label()).collect();
            let mut nodes: Vec<String> = expired.iter().map(|(k, _)| k.node.clone()).collect();
            nodes.sort();
            nodes.dedup();
            self.append(
                SELF_ACTOR,
                SELF_ACTOR,
                &policy.version,
                Event::RetentionErased { erased: n as u32, digest: crate::audit::labels_digest(&labels), closed_months: months, nodes },
                (Vec::new(), None),
            )?;
            drop(writer);
            metrics::retention_expired(n as u64);
            tracing::info!(removed = n, closed_months = months, "retention: closed relationships removed");
            total += n;
        }
    }

    /// Seconds between retention sweeps under the policy in force.
    pub fn retention_interval(&self) -> u64 {
        self.view.read().policy.retention_sweep_secs()
    }

    pub fn info(&self, who: &PeerIdentity) -> v1::FederationInfo {
        v1::FederationInfo {
            schema_fingerprint: self.expect.fingerprint.0.to_vec(),
            key_epochs: self.expect.epochs.clone(),
            caller_id: who.id.clone(),
            caller_role: who.role.name().to_string(),
        }
    }

    /// The person cluster of a published item, if it is indexed.
    pub fn cluster_of(&self, key: &ItemKey) -> Option<crate::model::ClusterId> {
        let v = self.view.read();
        v.ids.get(key).and_then(|&id| v.graph.cluster_of(id))
    }

    /// What the coordinator holds, for the store gauges: counters kept as it goes (no walk).
    pub fn holdings(&self) -> metrics::Holdings {
        let (encodings_by_epoch, index_bytes, hubs) = {
            let mut cached = self.index_counts.lock();
            if let Some(w) = self.writer.try_lock() {
                *cached = (w.index.epoch_counts(), w.index.memory_bytes(), w.index.hub_count());
            }
            cached.clone()
        };
        let v = self.view.read();
        metrics::Holdings {
            items: v.items.len(),
            encodings_by_epoch,
            persons: v.graph.cluster_count(),
            links: v.graph.link_count(),
            consents: v.consents.len(),
            audit_entries: self.audit.len(),
            index_bytes: index_bytes + v.graph.memory_bytes(),
            token_hubs: hubs as u64,
            disk_free_bytes: self.disk.free(),
            writes_refused_for_disk: self.disk.check_write().is_err() || self.store.failed(),
        }
    }

    /// Items indexed and persons (clusters) they form.
    pub fn stats(&self) -> (usize, usize) {
        let v = self.view.read();
        (v.items.len(), v.graph.cluster_count())
    }
}

/// The item as the view keeps it after a publication: the relationship and flags as sent, no
/// encodings (those live in the index and the store).
fn merged_item(existing: Option<StoredItem>, p: model::Publication) -> StoredItem {
    let mut item = existing.unwrap_or_else(|| p.new_item());
    p.update(&mut item);
    item.encodings = Vec::new();
    item
}
