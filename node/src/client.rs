//! The node's side of the wire: mutual-TLS connection to the coordinator, draining the outbox,
//! asking who-else. The only module of the node that knows tonic.

use std::time::Duration;

use anyhow::Result;
use ponte_proto::v1::federation_client::FederationClient;
use ponte_proto::v1::{self, ExactToken, FieldFilter, IdentityEncoding, PublishBatch, PublishedItem, Relationship};
use ponte_proto::vocab;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::encode::Encoder;
use crate::node::Node;
use crate::store::{LocalRelationship, OutboxOp};

/// Why a call to the coordinator did not succeed, in the terms callers act on. Every variant's
/// text says what happened and what to do; [`ClientError::retry_later`] tells whether the same
/// call may succeed later unchanged (the outbox keeps such changes queued).
///
/// Mapping of the coordinator's gRPC codes: `PERMISSION_DENIED`, `FAILED_PRECONDITION` and
/// `UNAUTHENTICATED` → [`ClientError::Refused`]; `NOT_FOUND` → [`ClientError::NotPublished`];
/// `INVALID_ARGUMENT`, `OUT_OF_RANGE` → [`ClientError::Invalid`]; `RESOURCE_EXHAUSTED` →
/// [`ClientError::RateLimited`]; a transport failure (no connection, TLS, reset) →
/// [`ClientError::Unreachable`]; everything else (`UNAVAILABLE`, `DEADLINE_EXCEEDED`,
/// `INTERNAL`, …) → [`ClientError::Unavailable`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node's own client settings are wrong (CA, certificate or key file, address): fix the
    /// configuration; retrying does not help.
    #[error("cannot set up the connection to the coordinator: {message}")]
    Config { message: String },
    /// No connection: the coordinator is down, the address is wrong, or TLS failed.
    #[error("cannot reach the coordinator at {address}: {detail}")]
    Unreachable { address: String, detail: String },
    /// The coordinator refused the request: the federation's policy, this node's certificate or
    /// role, or a setting that must match the federation's (schema, key epoch).
    #[error("refused by the coordinator ({}): {message}", reason.label())]
    Refused { reason: Refusal, message: String },
    /// The coordinator does not know the reference the request names (yet).
    #[error("the coordinator does not know this record's published reference yet ({message}); publish it first (`ponte-node publish`, or let `serve` do it) and ask again")]
    NotPublished { message: String },
    /// The coordinator found the request malformed.
    #[error("the coordinator found the request invalid: {message}")]
    Invalid { message: String },
    /// The coordinator asks this node to slow down (`RESOURCE_EXHAUSTED`).
    #[error("the coordinator is busy or rate-limiting this node ({message}); try again in {} s — queued changes stay queued", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration, message: String },
    /// The coordinator was reached but could not answer now.
    #[error("the coordinator could not answer now: {message}; try again later — queued changes stay queued")]
    Unavailable { message: String },
    /// The node's own store failed while preparing or acknowledging a change.
    #[error("the node's store failed: {0:#}")]
    Local(anyhow::Error),
}

/// Why the coordinator refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `PERMISSION_DENIED`: the policy refused the question, or this certificate may not do it.
    Denied,
    /// `FAILED_PRECONDITION`: a setting does not match the federation's (linkage schema, key
    /// epoch) or the anchor's state does not allow the request.
    Precondition,
    /// `UNAUTHENTICATED`: the coordinator did not accept this node's certificate.
    Certificate,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Denied => "not allowed",
            Refusal::Precondition => "precondition not met",
            Refusal::Certificate => "certificate not accepted",
        }
    }
}

/// Used when the coordinator asks to slow down without saying for how long.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
/// The longest wait a `retry-after` may ask for; longer values are capped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

impl ClientError {
    /// Whether the same request may succeed later unchanged: the coordinator could not be
    /// reached, could not answer now, or asked to slow down.
    pub fn retry_later(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. } | ClientError::Unavailable { .. } | ClientError::RateLimited { .. })
    }

    /// A short stable label of the variant, for logs and metrics (no message text).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Config { .. } => "config",
            ClientError::Unreachable { .. } => "unreachable",
            ClientError::Refused { .. } => "refused",
            ClientError::NotPublished { .. } => "not_published",
            ClientError::Invalid { .. } => "invalid",
            ClientError::RateLimited { .. } => "rate_limited",
            ClientError::Unavailable { .. } => "unavailable",
            ClientError::Local(_) => "local",
        }
    }

    /// Whether the connection should be dropped and opened again before the next call.
    pub fn connection_broken(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. } | ClientError::Unavailable { .. })
    }

    /// The typed error of a gRPC status from the coordinator.
    pub fn from_status(s: &tonic::Status, address: &str) -> ClientError {
        use tonic::Code;
        let message = s.message().to_string();
        match s.code() {
            Code::PermissionDenied => ClientError::Refused { reason: Refusal::Denied, message },
            Code::FailedPrecondition => ClientError::Refused { reason: Refusal::Precondition, message },
            Code::Unauthenticated => ClientError::Refused { reason: Refusal::Certificate, message },
            Code::NotFound => ClientError::NotPublished { message },
            Code::InvalidArgument | Code::OutOfRange => ClientError::Invalid { message },
            Code::ResourceExhausted => ClientError::RateLimited { retry_after: retry_after(s.metadata()), message },
            // tonic reports transport failures (refused connection, TLS, reset) as UNKNOWN or
            // UNAVAILABLE with the cause as the status's source.
            Code::Unknown | Code::Unavailable if std::error::Error::source(s).is_some() => {
                ClientError::Unreachable { address: address.to_string(), detail: explain(s) }
            }
            code => ClientError::Unavailable { message: format!("{code:?}: {message}") },
        }
    }
}

/// How long the coordinator asks to wait: `retry-after` (seconds) or `grpc-retry-pushback-ms`
/// metadata; [`DEFAULT_RETRY_AFTER`] when it says nothing; at most [`MAX_RETRY_AFTER`].
fn retry_after(md: &tonic::metadata::MetadataMap) -> Duration {
    let read = |key: &str| md.get(key).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let d = read("retry-after")
        .map(Duration::from_secs)
        .or_else(|| read("grpc-retry-pushback-ms").map(Duration::from_millis))
        .unwrap_or(DEFAULT_RETRY_AFTER);
    d.clamp(Duration::from_millis(100), MAX_RETRY_AFTER)
}

/// Turns a transport or status error into a sentence that says what to do.
pub fn explain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        chain.push_str(&err.to_string());
        chain.push_str(": ");
        cur = err.source();
    }
    let hint = if chain.contains("Connection refused") || chain.contains("ConnectionRefused") {
        "the coordinator is not reachable (is it running at the configured address?); changes stay queued"
    } else if chain.contains("UnknownIssuer") || chain.contains("invalid peer certificate") {
        "the coordinator's certificate is not issued by the CA in tls.ca (wrong federation CA?)"
    } else if chain.contains("CertificateRequired") || chain.contains("UnknownCA") || chain.contains("BadCertificate") || chain.contains("DecryptError") {
        "the coordinator refused this node's certificate: it is not issued by the federation's CA"
    } else if chain.contains("broken pipe") || chain.contains("connection reset") || chain.contains("Connection reset") {
        "the coordinator closed the connection during the TLS handshake: most likely it refused this node's certificate because it is not issued by the federation's CA"
    } else if chain.contains("NotValidForName") {
        "the coordinator's certificate does not name the host in tls.server_name"
    } else if chain.contains("timed out") || chain.contains("deadline") {
        "the coordinator did not answer in time; changes stay queued"
    } else {
        "see the cause above"
    };
    format!("{}— {hint}", chain)
}

/// A status from the coordinator, as a sentence (for tools that hold a raw gRPC status).
pub fn status_text(s: &tonic::Status) -> String {
    if (s.code() == tonic::Code::Unknown || s.code() == tonic::Code::Unavailable)
        && let Some(src) = std::error::Error::source(s)
    {
        return explain(src);
    }
    format!("{:?}: {}", s.code(), s.message())
}

/// A mutual-TLS connection to the coordinator. Cheap to clone (one shared HTTP/2 channel).
#[derive(Clone)]
pub struct CoordinatorClient {
    inner: FederationClient<Channel>,
    address: String,
}

impl CoordinatorClient {
    fn error(&self, s: tonic::Status) -> ClientError {
        ClientError::from_status(&s, &self.address)
    }
}

/// Connects to the coordinator with this node's certificate.
pub async fn connect(node: &Node) -> Result<CoordinatorClient, ClientError> {
    let config = |message: String| ClientError::Config { message };
    let tls = &node.config.tls;
    let ca = ponte_proto::pki::load_cert_pem(&tls.ca, "federation CA certificate (tls.ca)").map_err(config)?;
    let cert = ponte_proto::pki::load_cert_pem(&tls.cert, "node certificate (tls.cert)").map_err(config)?;
    let key = ponte_proto::pki::load_key_pem(&tls.key, "node private key (tls.key)").map_err(config)?;
    let tls_cfg = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key))
        .domain_name(tls.server_name.clone());
    let timeout = Duration::from_secs(node.config.sync.timeout_secs.max(1));
    let address = node.config.coordinator.clone();
    let endpoint = Endpoint::from_shared(address.clone())
        .map_err(|e| config(format!("coordinator = {address:?} is not a valid address: {e}")))?
        .tls_config(tls_cfg)
        .map_err(|e| config(format!("the TLS settings ([tls]) cannot be used: {e}")))?
        .connect_timeout(timeout)
        .timeout(Duration::from_secs(60));
    let channel = endpoint.connect().await.map_err(|e| ClientError::Unreachable { address: address.clone(), detail: explain(&e) })?;
    let inner = FederationClient::new(channel)
        .max_decoding_message_size(ponte_proto::limits::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(ponte_proto::limits::MAX_MESSAGE_BYTES);
    Ok(CoordinatorClient { inner, address })
}

fn wire_relationship(node: &Node, r: &LocalRelationship) -> Result<Relationship> {
    let category = vocab::ServiceCategoryName::from_wire(r.category).map_err(anyhow::Error::msg)?;
    Ok(Relationship {
        entity_type: vocab::EntityType::parse(&node.config.entity_type).map_err(anyhow::Error::msg)? as i32,
        unit: r.unit.clone(),
        category: r.category,
        tier: vocab::default_tier(category) as i32,
        status: r.status,
        since_month: r.since_month,
        case_manager: r.case_manager,
        plan: r.plan,
        contact: r.contact,
    })
}

/// Builds the wire item of a relationship: its record's encoding and closed-vocabulary metadata.
/// Nothing else about the person is read.
pub fn published_item(node: &Node, encoder: &Encoder, r: &LocalRelationship) -> Result<Option<PublishedItem>> {
    let Some(record) = node.store.get_record(&r.record_id)? else { return Ok(None) };
    let enc = encoder.encode(&record.identity);
    Ok(Some(PublishedItem {
        reference: r.reference.clone(),
        encoding: Some(IdentityEncoding {
            clk: enc.clk,
            tokens: enc.tokens.iter().map(|(k, t)| ExactToken { kind: *k as i32, value: t.to_vec() }).collect(),
            quality_flags: enc.quality_flags,
            field_filters: enc.field_filters.into_iter().map(|(field, bits)| FieldFilter { field, bits }).collect(),
        }),
        relationship: Some(wire_relationship(node, r)?),
        revision: record.revision,
        obscured: r.obscured,
    }))
}

/// A publish batch's id: the first 8 bytes of SHA-256 over a domain label, the store's
/// instance id ([`crate::store::NodeStore::instance_id`]), the key epoch, the outbox sequence
/// numbers the batch carries and every item as prost encodes it (each length-prefixed).
///
/// The coordinator answers a batch id it already acknowledged with the stored acknowledgement,
/// without looking at the items, so the id must change whenever the content could: a retry of
/// the same changes (same store, sequences, epoch and bytes — encodings are deterministic) gets
/// the same id and is idempotent; a recreated data directory (its outbox numbering starts again)
/// or different content gets another.
pub fn batch_id(instance_id: &[u8; 16], epoch: u32, seqs: &[u64], items: &[PublishedItem]) -> u64 {
    use prost::Message;
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"ponte/v1/publish-batch-id\0");
    h.update(instance_id);
    h.update(epoch.to_be_bytes());
    h.update((seqs.len() as u64).to_be_bytes());
    for s in seqs {
        h.update(s.to_be_bytes());
    }
    h.update((items.len() as u64).to_be_bytes());
    for item in items {
        let bytes = item.encode_to_vec();
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// What one publish run did.
#[derive(Debug, Default, Clone)]
pub struct PublishOutcome {
    pub items_sent: u64,
    pub withdrawals_sent: u64,
    pub batches: u64,
    pub consents_sent: u64,
    pub revocations_sent: u64,
    pub obscurings_sent: u64,
    /// Queued changes dropped because what they were about no longer exists here (or, for an
    /// upsert, is never to be published).
    pub dropped: u64,
    /// Consents kept queued because the coordinator does not know the record's published
    /// references yet; they are tried again on the next run.
    pub deferred: u64,
    /// Set when the run stopped early because the coordinator asked this node to slow down
    /// (`RESOURCE_EXHAUSTED`): what was acknowledged stays acknowledged, everything else stays
    /// queued; try again after this long. Not a failure.
    pub retry_after: Option<Duration>,
    /// What the coordinator said when it asked to wait (over a rate, disk nearly full, …).
    pub retry_reason: Option<String>,
}

impl PublishOutcome {
    /// Outbox entries handled (sent, dropped or deferred), for progress bars.
    pub fn handled(&self) -> u64 {
        self.items_sent + self.withdrawals_sent + self.consents_sent + self.revocations_sent + self.obscurings_sent + self.dropped + self.deferred
    }
}

/// What became of one queued change that is not an upsert.
enum Delivery {
    /// Acknowledged by the coordinator, or moot: remove it from the queue.
    Done,
    /// Not deliverable yet: move it to the end of the queue.
    Later,
}

fn local(e: anyhow::Error) -> ClientError {
    ClientError::Local(e)
}

/// Sends one queued change that is not an upsert.
async fn deliver(node: &Node, client: &mut CoordinatorClient, op: &OutboxOp, out: &mut PublishOutcome) -> Result<Delivery, ClientError> {
    let node_id = node.config.node_id.clone();
    match op {
        OutboxOp::Upsert { .. } => unreachable!("upserts travel in batches"),
        OutboxOp::Withdraw { reference } => {
            let r = client.inner.withdraw(v1::WithdrawRequest { node_id, references: vec![reference.clone()] }).await;
            r.map_err(|s| client.error(s))?;
            out.withdrawals_sent += 1;
        }
        OutboxOp::Consent { consent_id } => {
            let Some(c) = node.store.get_consent(consent_id).map_err(local)? else {
                tracing::debug!(consent_id, "consent no longer stored here; dropped from the queue");
                out.dropped += 1;
                return Ok(Delivery::Done);
            };
            if c.revoked_at.is_some() {
                // Its revocation is queued too (or was sent): never assert a revoked consent.
                tracing::debug!(consent_id, "consent revoked before it was sent; dropped from the queue");
                out.dropped += 1;
                return Ok(Delivery::Done);
            }
            let references: Vec<String> = node
                .store
                .relationships_of(&c.record_id)
                .map_err(local)?
                .into_iter()
                .filter(LocalRelationship::publishable)
                .map(|r| r.reference)
                .collect();
            if references.is_empty() {
                tracing::debug!(consent_id, "the consent's record has no published relationship any more; dropped from the queue");
                out.dropped += 1;
                return Ok(Delivery::Done);
            }
            // The first published reference by relationship id; should the coordinator not know it
            // (yet), the next ones: any of them keys the same person cluster.
            for reference in references {
                let assertion = v1::ConsentAssertion {
                    node_id: node_id.clone(),
                    consent_id: c.consent_id.clone(),
                    reference,
                    categories: c.categories.clone(),
                    recipients: c.recipients.clone(),
                    purposes: c.purposes.clone(),
                    valid_from: c.valid_from,
                    valid_until: c.valid_until,
                    given_by: c.given_by,
                };
                let r = client.inner.record_consent(assertion).await;
                match r.map_err(|s| client.error(s)) {
                    Ok(_) => {
                        out.consents_sent += 1;
                        return Ok(Delivery::Done);
                    }
                    Err(ClientError::NotPublished { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            tracing::warn!(consent_id, "the coordinator knows none of the record's references yet; the consent stays queued");
            out.deferred += 1;
            return Ok(Delivery::Later);
        }
        OutboxOp::RevokeConsent { consent_id } => {
            // Sent whatever is stored here: a revocation must never be lost. NOT_FOUND means the
            // coordinator holds no such consent, which is what a revocation wants.
            let r = client.inner.revoke_consent(v1::ConsentRevocation { node_id, consent_id: consent_id.clone() }).await;
            match r.map_err(|s| client.error(s)) {
                Ok(_) => out.revocations_sent += 1,
                Err(ClientError::NotPublished { .. }) => {
                    tracing::debug!(consent_id, "the coordinator holds no such consent; revocation done");
                    out.revocations_sent += 1;
                }
                Err(e) => return Err(e),
            }
        }
        OutboxOp::Obscure { relationship_id } => {
            let Some(r) = node.store.get_relationship(relationship_id).map_err(local)?.filter(LocalRelationship::publishable) else {
                tracing::debug!(relationship_id, "relationship gone or never published; obscuring dropped from the queue");
                out.dropped += 1;
                return Ok(Delivery::Done);
            };
            set_obscured(node, client, &r).await?;
            out.obscurings_sent += 1;
        }
    }
    Ok(Delivery::Done)
}

/// Sends a relationship's obscured flag. NOT_FOUND (the reference is not published there yet)
/// is fine: the flag is sent again right after the relationship is published.
async fn set_obscured(node: &Node, client: &mut CoordinatorClient, r: &LocalRelationship) -> Result<(), ClientError> {
    let req = v1::ObscureRequest { node_id: node.config.node_id.clone(), reference: r.reference.clone(), obscured: r.obscured };
    let res = client.inner.set_obscured(req).await;
    match res.map_err(|s| client.error(s)) {
        Ok(_) => Ok(()),
        Err(ClientError::NotPublished { .. }) => {
            tracing::debug!(relationship = %r.relationship_id, "reference not published yet; its obscured flag goes with its publication");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Sends every queued change in queue order; each change leaves the outbox only once the
/// coordinator has acknowledged it. Consecutive upserts travel in batches (one per key epoch);
/// every other change travels alone. On error, what was acknowledged stays acknowledged and
/// the rest stays queued.
///
/// When the coordinator asks to slow down (`RESOURCE_EXHAUSTED`) the run stops there and
/// returns `Ok` with [`PublishOutcome::retry_after`] set: not a failure, the rest waits.
///
/// Never sent: upserts of never-encode relationships (acknowledged and dropped), and changes
/// about a record, relationship or consent that no longer exists here (dropped, with a debug
/// log). A consent whose references the coordinator does not know yet moves to the end of the
/// queue and waits for the next run. An obscured relationship's flag is sent again after each
/// publication of it, so that a new or re-published reference is obscured too.
pub async fn publish_outbox(node: &Node, client: &mut CoordinatorClient, progress: impl Fn(PublishOutcome)) -> Result<PublishOutcome, ClientError> {
    let mut out = PublishOutcome::default();
    match drain(node, client, &progress, &mut out).await {
        Ok(()) => Ok(out),
        Err(ClientError::RateLimited { retry_after, message }) => {
            tracing::info!(retry_after_secs = retry_after.as_secs_f64(), queued = node.store.outbox_len(), "the coordinator asks to slow down: {message}");
            out.retry_after = Some(retry_after);
            out.retry_reason = Some(message);
            Ok(out)
        }
        Err(e) => Err(e),
    }
}

async fn drain(node: &Node, client: &mut CoordinatorClient, progress: &impl Fn(PublishOutcome), out: &mut PublishOutcome) -> Result<(), ClientError> {
    let batch_size = node.config.sync.batch_size;
    let fingerprint = node.schema.fingerprint();
    let instance_id = node.store.instance_id();
    let encoders = node.encoders().map_err(local)?;
    // Changes moved to the end of the queue since the last one that was acknowledged: meeting
    // one again means nothing behind it could change its fate (such as publishing the reference
    // it needs), so the run ends. Each acknowledgement shortens the queue, so this terminates.
    let mut later: Vec<u64> = Vec::new();
    loop {
        let head = node.store.outbox_head(batch_size).map_err(local)?;
        let Some((first_seq, first_op)) = head.first() else { return Ok(()) };
        if later.contains(first_seq) {
            return Ok(());
        }
        if !matches!(first_op, OutboxOp::Upsert { .. }) {
            match deliver(node, client, first_op, out).await? {
                Delivery::Done => {
                    node.store.ack(&[*first_seq]).map_err(local)?;
                    later.clear();
                }
                Delivery::Later => later.extend(node.store.requeue(*first_seq).map_err(local)?),
            }
            progress(out.clone());
            continue;
        }
        let mut seqs = Vec::new();
        let mut relationships = Vec::new();
        for (seq, op) in &head {
            let OutboxOp::Upsert { relationship_id } = op else { break };
            seqs.push(*seq);
            match node.store.get_relationship(relationship_id).map_err(local)? {
                Some(rel) if rel.publishable() => relationships.push(rel),
                Some(_) => {
                    tracing::debug!(relationship_id, "never-encode relationship: upsert dropped, nothing sent");
                    out.dropped += 1;
                }
                None => {
                    tracing::debug!(relationship_id, "relationship no longer stored here; upsert dropped");
                    out.dropped += 1;
                }
            }
        }
        // The same changes under every configured key epoch; the outbox entries go only when
        // every epoch's batch is acknowledged.
        for encoder in &encoders {
            let mut items = Vec::with_capacity(relationships.len());
            for rel in &relationships {
                if let Some(item) = published_item(node, encoder, rel).map_err(local)? {
                    items.push(item);
                }
            }
            if items.is_empty() {
                continue;
            }
            let n = items.len() as u64;
            let batch = PublishBatch {
                node_id: node.config.node_id.clone(),
                schema_fingerprint: fingerprint.0.to_vec(),
                key_epoch: encoder.epoch,
                batch_id: batch_id(&instance_id, encoder.epoch, &seqs, &items),
                items,
            };
            // The ack says only that the batch is stored; what the coordinator linked is not the
            // node's to know (a link count would tell whether the person is followed elsewhere).
            client.inner.publish(batch).await.map_err(|s| client.error(s))?;
            out.items_sent += n;
            out.batches += 1;
        }
        for rel in relationships.iter().filter(|r| r.obscured) {
            set_obscured(node, client, rel).await?;
        }
        node.store.ack(&seqs).map_err(local)?;
        later.clear();
        progress(out.clone());
    }
}

/// Asks who-else for one relationship of this node. `break_glass` is the reason of a question
/// with purpose emergenza (the coordinator refuses one without it, and one with it otherwise).
pub async fn who_else(
    node: &Node,
    client: &mut CoordinatorClient,
    anchor: &LocalRelationship,
    purpose: v1::Purpose,
    role: v1::OperatorRole,
    operator_id: &str,
    break_glass: Option<v1::BreakGlassReason>,
) -> Result<v1::WhoElseAnswer, ClientError> {
    let question = v1::WhoElseQuestion {
        node_id: node.config.node_id.clone(),
        anchor_reference: anchor.reference.clone(),
        purpose: purpose as i32,
        operator_role: role as i32,
        operator_id: operator_id.to_string(),
        break_glass_reason: break_glass.map(|r| r as i32).unwrap_or(0),
    };
    let r = client.inner.who_else(question).await;
    r.map(|r| r.into_inner()).map_err(|s| client.error(s))
}

/// A data-subject access report about the person of a local record: their relationships as the
/// policy lets this node see them, and every question that touched them. Keyed by the record's
/// first published reference (see [`Node::require_published`], which callers check first);
/// `operator_id` is the privacy contact handling the request.
pub async fn subject_report(
    node: &Node,
    client: &mut CoordinatorClient,
    anchor: &LocalRelationship,
    operator_id: &str,
) -> Result<v1::SubjectReport, ClientError> {
    let request = v1::SubjectReportRequest {
        node_id: node.config.node_id.clone(),
        reference: anchor.reference.clone(),
        operator_id: operator_id.to_string(),
    };
    let r = client.inner.subject_report(request).await;
    r.map(|r| r.into_inner()).map_err(|s| client.error(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(code: tonic::Code) -> ClientError {
        ClientError::from_status(&tonic::Status::new(code, "because"), "https://c:7700")
    }

    #[test]
    fn coordinator_codes_become_what_callers_act_on() {
        assert!(matches!(from(tonic::Code::PermissionDenied), ClientError::Refused { reason: Refusal::Denied, .. }));
        assert!(matches!(from(tonic::Code::FailedPrecondition), ClientError::Refused { reason: Refusal::Precondition, .. }));
        assert!(matches!(from(tonic::Code::Unauthenticated), ClientError::Refused { reason: Refusal::Certificate, .. }));
        assert!(matches!(from(tonic::Code::NotFound), ClientError::NotPublished { .. }));
        assert!(matches!(from(tonic::Code::InvalidArgument), ClientError::Invalid { .. }));
        assert!(matches!(from(tonic::Code::ResourceExhausted), ClientError::RateLimited { retry_after, .. } if retry_after == DEFAULT_RETRY_AFTER));
        for code in [tonic::Code::Unavailable, tonic::Code::Internal, tonic::Code::DeadlineExceeded, tonic::Code::Unknown] {
            assert!(matches!(from(code), ClientError::Unavailable { .. }), "{code:?}");
        }
        // Retry later: only what may succeed unchanged later.
        assert!(from(tonic::Code::ResourceExhausted).retry_later() && from(tonic::Code::Unavailable).retry_later());
        assert!(!from(tonic::Code::PermissionDenied).retry_later() && !from(tonic::Code::NotFound).retry_later());
        // The texts say what to do.
        assert!(from(tonic::Code::NotFound).to_string().contains("publish it first"));
        assert!(from(tonic::Code::ResourceExhausted).to_string().contains("stay queued"));
        assert!(from(tonic::Code::PermissionDenied).to_string().contains("because"));
    }

    fn item(reference: &str, clk_byte: u8) -> PublishedItem {
        PublishedItem {
            reference: reference.into(),
            encoding: Some(IdentityEncoding { clk: vec![clk_byte; 128], ..Default::default() }),
            revision: 1,
            ..Default::default()
        }
    }

    #[test]
    fn batch_ids_follow_the_store_the_sequences_and_the_content() {
        let a = [1u8; 16];
        let items = vec![item("r1", 7), item("r2", 9)];
        let id = batch_id(&a, 1, &[4, 5], &items);
        assert_eq!(batch_id(&a, 1, &[4, 5], &items.clone()), id, "a retry of the same changes keeps its id");
        // A recreated store: same sequences, same epoch, same content — another id.
        assert_ne!(batch_id(&[2u8; 16], 1, &[4, 5], &items), id);
        // Different content under the same sequences (another export imported after a reset).
        assert_ne!(batch_id(&a, 1, &[4, 5], &[item("r1", 7), item("r2", 8)]), id);
        assert_ne!(batch_id(&a, 1, &[4, 5], &[item("r1", 7), item("r3", 9)]), id);
        assert_ne!(batch_id(&a, 1, &[4, 5], &items[..1]), id);
        // Other sequences or another key epoch.
        assert_ne!(batch_id(&a, 1, &[4, 6], &items), id);
        assert_ne!(batch_id(&a, 2, &[4, 5], &items), id);
    }

    #[test]
    fn retry_after_comes_from_the_metadata_and_is_bounded() {
        let mut s = tonic::Status::resource_exhausted("slow down");
        s.metadata_mut().insert("retry-after", "7".parse().unwrap());
        assert!(matches!(ClientError::from_status(&s, "a"), ClientError::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(7)));
        let mut s = tonic::Status::resource_exhausted("slow down");
        s.metadata_mut().insert("grpc-retry-pushback-ms", "1500".parse().unwrap());
        assert!(matches!(ClientError::from_status(&s, "a"), ClientError::RateLimited { retry_after, .. } if retry_after == Duration::from_millis(1500)));
        let mut s = tonic::Status::resource_exhausted("slow down");
        s.metadata_mut().insert("retry-after", "999999".parse().unwrap());
        assert!(matches!(ClientError::from_status(&s, "a"), ClientError::RateLimited { retry_after, .. } if retry_after == MAX_RETRY_AFTER));
        let mut s = tonic::Status::resource_exhausted("slow down");
        s.metadata_mut().insert("retry-after", "soon".parse().unwrap());
        assert!(matches!(ClientError::from_status(&s, "a"), ClientError::RateLimited { retry_after, .. } if retry_after == DEFAULT_RETRY_AFTER));
    }
}
