//! The node's side of the wire: mutual-TLS connection to the coordinator, draining the outbox,
//! asking who-else. The only module of the node that knows tonic.

use std::time::Duration;

use anyhow::{Context, Result};
use ponte_proto::v1::federation_client::FederationClient;
use ponte_proto::v1::{self, ExactToken, FieldFilter, IdentityEncoding, PublishBatch, PublishedItem, Relationship};
use ponte_proto::vocab;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::encode::Encoder;
use crate::node::Node;
use crate::store::{LocalRelationship, OutboxOp};

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

/// Connects to the coordinator with this node's certificate.
pub async fn connect(node: &Node) -> Result<FederationClient<Channel>> {
    let tls = &node.config.tls;
    let ca = ponte_proto::pki::load_cert_pem(&tls.ca, "federation CA certificate (tls.ca)").map_err(anyhow::Error::msg)?;
    let cert = ponte_proto::pki::load_cert_pem(&tls.cert, "node certificate (tls.cert)").map_err(anyhow::Error::msg)?;
    let key = ponte_proto::pki::load_key_pem(&tls.key, "node private key (tls.key)").map_err(anyhow::Error::msg)?;
    let tls_cfg = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key))
        .domain_name(tls.server_name.clone());
    let timeout = Duration::from_secs(node.config.sync.timeout_secs.max(1));
    let endpoint = Endpoint::from_shared(node.config.coordinator.clone())
        .with_context(|| format!("coordinator = {:?} is not a valid address", node.config.coordinator))?
        .tls_config(tls_cfg)?
        .connect_timeout(timeout)
        .timeout(Duration::from_secs(60));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the coordinator at {}: {}", node.config.coordinator, explain(&e)))?;
    Ok(FederationClient::new(channel)
        .max_decoding_message_size(ponte_proto::limits::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(ponte_proto::limits::MAX_MESSAGE_BYTES))
}

/// A status from the coordinator, as a sentence.
pub fn status_text(s: &tonic::Status) -> String {
    if (s.code() == tonic::Code::Unknown || s.code() == tonic::Code::Unavailable)
        && let Some(src) = std::error::Error::source(s) {
            return explain(src);
        }
    format!("{:?}: {}", s.code(), s.message())
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

/// A batch id that is the same for a retry of the same outbox slice under the same epoch, and
/// different otherwise.
fn batch_id(first_seq: u64, count: usize, epoch: u32) -> u64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(first_seq.to_be_bytes());
    h.update((count as u64).to_be_bytes());
    h.update(epoch.to_be_bytes());
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// What one publish run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PublishOutcome {
    pub items_sent: u64,
    pub withdrawals_sent: u64,
    pub batches: u64,
    pub links_found: u64,
    pub consents_sent: u64,
    pub revocations_sent: u64,
    pub obscurings_sent: u64,
    /// Queued changes dropped because what they were about no longer exists here (or, for an
    /// upsert, is never to be published).
    pub dropped: u64,
    /// Consents kept queued because the coordinator does not know the record's published
    /// references yet; they are tried again on the next run.
    pub deferred: u64,
}

impl PublishOutcome {
    /// Outbox entries handled (sent, dropped or deferred), for progress bars.
    pub fn handled(&self) -> u64 {
        self.items_sent + self.withdrawals_sent + self.consents_sent + self.revocations_sent + self.obscurings_sent + self.dropped + self.deferred
    }
}

fn refused(what: &str, s: &tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{what} refused by the coordinator — {}", status_text(s))
}

/// What became of one queued change that is not an upsert.
enum Delivery {
    /// Acknowledged by the coordinator, or moot: remove it from the queue.
    Done,
    /// Not deliverable yet: move it to the end of the queue.
    Later,
}

/// Sends one queued change that is not an upsert.
async fn deliver(node: &Node, client: &mut FederationClient<Channel>, op: &OutboxOp, out: &mut PublishOutcome) -> Result<Delivery> {
    let node_id = node.config.node_id.clone();
    match op {
        OutboxOp::Upsert { .. } => unreachable!("upserts travel in batches"),
        OutboxOp::Withdraw { reference } => {
            client
                .withdraw(v1::WithdrawRequest { node_id, references: vec![reference.clone()] })
                .await
                .map_err(|s| refused("withdrawal", &s))?;
            out.withdrawals_sent += 1;
        }
        OutboxOp::Consent { consent_id } => {
            let Some(c) = node.store.get_consent(consent_id)? else {
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
                .relationships_of(&c.record_id)?
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
                match client.record_consent(assertion).await {
                    Ok(_) => {
                        out.consents_sent += 1;
                        return Ok(Delivery::Done);
                    }
                    Err(s) if s.code() == tonic::Code::NotFound => continue,
                    Err(s) => return Err(refused("consent", &s)),
                }
            }
            tracing::warn!(consent_id, "the coordinator knows none of the record's references yet; the consent stays queued");
            out.deferred += 1;
            return Ok(Delivery::Later);
        }
        OutboxOp::RevokeConsent { consent_id } => {
            // Sent whatever is stored here: a revocation must never be lost. NOT_FOUND means the
            // coordinator holds no such consent, which is what a revocation wants.
            match client.revoke_consent(v1::ConsentRevocation { node_id, consent_id: consent_id.clone() }).await {
                Ok(_) => out.revocations_sent += 1,
                Err(s) if s.code() == tonic::Code::NotFound => {
                    tracing::debug!(consent_id, "the coordinator holds no such consent; revocation done");
                    out.revocations_sent += 1;
                }
                Err(s) => return Err(refused("consent revocation", &s)),
            }
        }
        OutboxOp::Obscure { relationship_id } => {
            let Some(r) = node.store.get_relationship(relationship_id)?.filter(LocalRelationship::publishable) else {
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
async fn set_obscured(node: &Node, client: &mut FederationClient<Channel>, r: &LocalRelationship) -> Result<()> {
    let req = v1::ObscureRequest { node_id: node.config.node_id.clone(), reference: r.reference.clone(), obscured: r.obscured };
    match client.set_obscured(req).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::NotFound => {
            tracing::debug!(relationship = %r.relationship_id, "reference not published yet; its obscured flag goes with its publication");
            Ok(())
        }
        Err(s) => Err(refused("obscuring", &s)),
    }
}

/// Sends every queued change in queue order; each change leaves the outbox only once the
/// coordinator has acknowledged it. Consecutive upserts travel in batches (one per key epoch);
/// every other change travels alone. On error, what was acknowledged stays acknowledged and
/// the rest stays queued.
///
/// Never sent: upserts of never-encode relationships (acknowledged and dropped), and changes
/// about a record, relationship or consent that no longer exists here (dropped, with a debug
/// log). A consent whose references the coordinator does not know yet moves to the end of the
/// queue and waits for the next run. An obscured relationship's flag is sent again after each
/// publication of it, so that a new or re-published reference is obscured too.
pub async fn publish_outbox(
    node: &Node,
    client: &mut FederationClient<Channel>,
    progress: impl Fn(PublishOutcome),
) -> Result<PublishOutcome> {
    let mut out = PublishOutcome::default();
    let batch_size = node.config.sync.batch_size;
    let fingerprint = node.schema.fingerprint();
    let encoders = node.encoders()?;
    // Changes moved to the end of the queue since the last one that was acknowledged: meeting
    // one again means nothing behind it could change its fate (such as publishing the reference
    // it needs), so the run ends. Each acknowledgement shortens the queue, so this terminates.
    let mut later: Vec<u64> = Vec::new();
    loop {
        let head = node.store.outbox_head(batch_size)?;
        let Some((first_seq, first_op)) = head.first() else { return Ok(out) };
        if later.contains(first_seq) {
            return Ok(out);
        }
        if !matches!(first_op, OutboxOp::Upsert { .. }) {
            match deliver(node, client, first_op, &mut out).await? {
                Delivery::Done => {
                    node.store.ack(&[*first_seq])?;
                    later.clear();
                }
                Delivery::Later => later.extend(node.store.requeue(*first_seq)?),
            }
            progress(out);
            continue;
        }
        let mut seqs = Vec::new();
        let mut relationships = Vec::new();
        for (seq, op) in &head {
            let OutboxOp::Upsert { relationship_id } = op else { break };
            seqs.push(*seq);
            match node.store.get_relationship(relationship_id)? {
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
                if let Some(item) = published_item(node, encoder, rel)? {
                    items.push(item);
                }
            }
            if items.is_empty() {
                continue;
            }
            let n = items.len() as u64;
            let _ack = client
                .publish(PublishBatch {
                    node_id: node.config.node_id.clone(),
                    schema_fingerprint: fingerprint.0.to_vec(),
                    key_epoch: encoder.epoch,
                    batch_id: batch_id(seqs[0], seqs.len(), encoder.epoch),
                    items,
                })
                .await
                .map_err(|s| anyhow::anyhow!("publishing refused — {}", status_text(&s)))?
                .into_inner();
            out.items_sent += n;
            out.batches += 1;
        }
        for rel in relationships.iter().filter(|r| r.obscured) {
            set_obscured(node, client, rel).await?;
        }
        node.store.ack(&seqs)?;
        later.clear();
        progress(out);
    }
}

/// Asks who-else for one relationship of this node. `break_glass` is the reason of a question
/// with purpose emergenza (the coordinator refuses one without it, and one with it otherwise).
pub async fn who_else(
    node: &Node,
    client: &mut FederationClient<Channel>,
    anchor: &LocalRelationship,
    purpose: v1::Purpose,
    role: v1::OperatorRole,
    operator_id: &str,
    break_glass: Option<v1::BreakGlassReason>,
) -> Result<v1::WhoElseAnswer, tonic::Status> {
    client
        .who_else(v1::WhoElseQuestion {
            node_id: node.config.node_id.clone(),
            anchor_reference: anchor.reference.clone(),
            purpose: purpose as i32,
            operator_role: role as i32,
            operator_id: operator_id.to_string(),
            break_glass_reason: break_glass.map(|r| r as i32).unwrap_or(0),
        })
        .await
        .map(|r| r.into_inner())
}

/// A data-subject access report about the person of a local record: their relationships as the
/// policy lets this node see them, and every question that touched them. Keyed by the record's
/// first published reference; `operator_id` is the privacy contact handling the request.
pub async fn subject_report(
    node: &Node,
    client: &mut FederationClient<Channel>,
    record_id: &str,
    operator_id: &str,
) -> Result<v1::SubjectReport> {
    let rel = node.require_published(record_id)?;
    client
        .subject_report(v1::SubjectReportRequest {
            node_id: node.config.node_id.clone(),
            reference: rel.reference.clone(),
            operator_id: operator_id.to_string(),
        })
        .await
        .map(|r| r.into_inner())
        .map_err(|s| {
            if s.code() == tonic::Code::NotFound {
                anyhow::anyhow!(
                    "the coordinator does not know record {record_id:?}'s reference yet — {}; run `ponte-node publish` first",
                    status_text(&s)
                )
            } else {
                refused("data-subject report", &s)
            }
        })
}
