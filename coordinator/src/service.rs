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
use ponte_proto::limits::{MAX_BATCH_ITEMS, MAX_MESSAGE_BYTES, MAX_WITHDRAW_REFERENCES};
use ponte_proto::schema::{Fingerprint, LinkageSchema};
use ponte_proto::v1::federation_server::{Federation, FederationServer};
use ponte_proto::v1;
use ponte_proto::vocab;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::answer::{self, Candidate};
use crate::audit::{Event, Record};
use crate::config::CoordinatorConfig;
use crate::linker::{ItemId, LinkChange, Linker, LinkerParams, Publish};
use crate::model::{self, ItemKey, StoredItem};
use crate::storage::Store;

/// Version label of the disclosure rules in force (the policy file replaces it later).
pub const POLICY_VERSION: &str = "default-2026.1";

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
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn internal(e: anyhow::Error) -> Status {
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
        Ok(Coordinator {
            store,
            state: Mutex::new(State { linker, ids, items, next_id: loaded.next_id, audit_head }),
            fingerprint: schema.fingerprint(),
            shape: model::EncodingShape::of(schema),
            epochs: cfg.key_epochs.clone(),
            recent_batches: Mutex::new(
                bloomfilter::Bloom::new_for_fp_rate(100_000, 0.01).expect("valid bloom parameters"),
            ),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn audit(&self, state: &mut State, who: &PeerIdentity, event: Event) -> Result<crate::audit::Entry> {
        let record = Record {
            time: unix_now(),
            actor: who.id.clone(),
            actor_role: who.role.name().to_string(),
            policy: POLICY_VERSION.to_string(),
            event,
        };
        let head = state.audit_head.as_ref().map(|(s, h)| (*s, h.as_str()));
        let entry = self.store.append_audit(head, record)?;
        state.audit_head = Some((entry.sequence, entry.hash.clone()));
        Ok(entry)
    }

    /// Applies a publish batch; returns its ack once the batch is durable.
    pub fn publish(&self, who: &PeerIdentity, batch: v1::PublishBatch) -> Result<v1::PublishAck, Status> {
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
                return Ok(v1::PublishAck { batch_id: batch.batch_id, accepted, links_found: links });
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
        let changes = state.linker.publish_batch(&publish).map_err(|e| Status::resource_exhausted(e.to_string()))?;
        drop(publish);
        let change_of: HashMap<ItemId, LinkChange> = changes.into_iter().collect();
        for (p, id) in checked.into_iter().zip(assigned) {
            let mut item = match state.items.remove(&id) {
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
                },
            };
            item.set_encoding(p.encoding);
            item.quality_flags = p.quality_flags;
            item.relationship = p.relationship;
            item.entity_name = p.entity_name;
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
        Ok(v1::PublishAck { batch_id: batch.batch_id, accepted, links_found })
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
            if let Some(id) = state.ids.remove(&key) {
                let neighbours = state.linker.remove(id);
                state.items.remove(&id);
                self.store.remove_item(id, &key, &neighbours).map_err(internal)?;
                affected += 1;
            }
        }
        let clusters = state.linker.take_cluster_changes();
        self.store.put_clusters(&clusters).map_err(internal)?;
        self.audit(&mut state, who, Event::Withdrawn { references: req.references.clone() }).map_err(internal)?;
        self.store.flush().map_err(internal)?;
        Ok(v1::Ack { affected })
    }

    /// Answers a who-else question, or refuses it; both are audited.
    pub fn who_else(&self, who: &PeerIdentity, q: v1::WhoElseQuestion) -> Result<v1::WhoElseAnswer, Status> {
        node_entity(who)?;
        same_node(who, &q.node_id)?;
        vocab::check_reference(&q.anchor_reference).map_err(|e| Status::invalid_argument(format!("anchor_reference: {e}")))?;
        vocab::check_operator_id(&q.operator_id).map_err(|e| Status::invalid_argument(format!("operator_id: {e}")))?;
        let purpose = vocab::PurposeName::from_wire(q.purpose).map_err(Status::invalid_argument)?;
        let role = vocab::OperatorRoleName::from_wire(q.operator_role).map_err(Status::invalid_argument)?;
        let anchor_key = ItemKey { node: who.id.clone(), reference: q.anchor_reference.clone() };

        let mut state = self.lock();
        let anchor_id = state.ids.get(&anchor_key).copied();
        let anchor_rel = anchor_id.and_then(|id| state.items.get(&id)).map(|i| i.relationship.clone());
        let names = (vocab::PurposeName::name(purpose), vocab::OperatorRoleName::name(role));
        if let Err(refusal) = answer::check_question(role, purpose, anchor_rel.as_ref()) {
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
                    },
                )
                .map_err(internal)?;
            tracing::info!(node = %who.id, receipt = entry.sequence, "who-else refused");
            return Err(Status::permission_denied(format!("{refusal} (audit receipt {})", entry.sequence)));
        }
        let anchor_id = anchor_id.expect("checked by check_question");
        let related = state.linker.related(anchor_id);
        let candidates: Vec<Candidate<'_>> = related
            .iter()
            .filter_map(|(id, band)| {
                let item = state.items.get(id)?;
                Some(Candidate { key: &item.key, entity_name: &item.entity_name, band: *band, relationship: &item.relationship })
            })
            .collect();
        let (relationships, shown) = answer::shape_answer(&candidates);
        let shown: Vec<String> = shown.iter().map(ItemKey::label).collect();
        drop(candidates);
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
                },
            )
            .map_err(internal)?;
        Ok(v1::WhoElseAnswer {
            relationships,
            notice: ponte_proto::ANSWER_NOTICE.to_string(),
            receipt: Some(v1::AuditReceipt { sequence: entry.sequence, entry_hash: entry.hash }),
        })
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

    /// Items indexed and persons (clusters) they form.
    pub fn stats(&self) -> (usize, usize) {
        let state = self.lock();
        (state.linker.len(), state.linker.cluster_count())
    }
}

fn node_entity(who: &PeerIdentity) -> Result<v1::EntityType, Status> {
    match who.role {
        Role::Node { entity_type } => Ok(entity_type),
        _ => Err(Status::permission_denied(format!(
            "the certificate identifies {who}; only node certificates may publish or ask who-else"
        ))),
    }
}

fn same_node(who: &PeerIdentity, claimed: &str) -> Result<(), Status> {
    if claimed != who.id {
        tracing::warn!(certificate = %who.id, claimed, "request names another node");
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

    async fn record_consent(&self, _req: Request<v1::ConsentAssertion>) -> Result<Response<v1::Ack>, Status> {
        Err(Status::unimplemented("TEMPORARY"))
    }

    async fn revoke_consent(&self, _req: Request<v1::ConsentRevocation>) -> Result<Response<v1::Ack>, Status> {
        Err(Status::unimplemented("TEMPORARY"))
    }

    async fn set_obscured(&self, _req: Request<v1::ObscureRequest>) -> Result<Response<v1::Ack>, Status> {
        Err(Status::unimplemented("TEMPORARY"))
    }

    async fn subject_report(&self, _req: Request<v1::SubjectReportRequest>) -> Result<Response<v1::SubjectReport>, Status> {
        Err(Status::unimplemented("TEMPORARY"))
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
    Ok(())
}

/// A tower layer that authenticates every request by its client certificate.
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

fn identify<B>(req: &http::Request<B>) -> Result<PeerIdentity, Status> {
    let info = req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
    let certs = info.and_then(|i| i.peer_certs());
    let Some(leaf) = certs.as_ref().and_then(|c| c.first()) else {
        return Err(Status::unauthenticated(
            "no client certificate: every caller must present a certificate issued by the federation's CA (mutual TLS)",
        ));
    };
    identity_from_der(leaf).map_err(|e| Status::unauthenticated(format!("client certificate refused: {e}")))
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
        let path = req.uri().path().to_string();
        let decision = identify(&req).and_then(|id| {
            role_allowed(&path, &id.role).map_err(Status::permission_denied)?;
            Ok(id)
        });
        match decision {
            Ok(id) => {
                tracing::debug!(caller = %id, path, "authenticated");
                req.extensions_mut().insert(id);
                let fut = self.inner.call(req);
                Box::pin(fut)
            }
            Err(status) => {
                tracing::warn!(path, reason = status.message(), "request refused");
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Serving

/// Loads certificates, opens the store, binds and serves until `shutdown` resolves. `on_ready`
/// receives the bound address.
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
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ponte_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;

    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {} (is another process using it?)", cfg.listen))?;
    let addr = listener.local_addr()?;
    let (items, persons) = coordinator.stats();
    tracing::info!(%addr, schema = %schema.fingerprint().short(), epochs = ?cfg.key_epochs, items, persons, "coordinator listening");
    on_ready(addr);

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
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await
        .context("the gRPC server stopped")?;
    Ok(())
}
