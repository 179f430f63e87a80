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
}

/// Sends every queued change, oldest first; each change leaves the outbox only once the
/// coordinator has acknowledged it. On error, what was acknowledged stays acknowledged and the
/// rest stays queued.
pub async fn publish_outbox(
    node: &Node,
    client: &mut FederationClient<Channel>,
    progress: impl Fn(PublishOutcome),
) -> Result<PublishOutcome> {
    let mut out = PublishOutcome::default();
    let batch_size = node.config.sync.batch_size;
    let fingerprint = node.schema.fingerprint();
    let encoders = node.encoders()?;
    loop {
        let head = node.store.outbox_head(batch_size)?;
        if head.is_empty() {
            return Ok(out);
        }
        // Withdrawal first in line: send it alone, in order.
        if let (seq, OutboxOp::Withdraw { reference }) = &head[0] {
            client
                .withdraw(v1::WithdrawRequest { node_id: node.config.node_id.clone(), references: vec![reference.clone()] })
                .await
                .map_err(|s| anyhow::anyhow!("withdrawal refused by the coordinator — {}", status_text(&s)))?;
            node.store.ack(&[*seq])?;
            out.withdrawals_sent += 1;
            progress(out);
            continue;
        }
        let mut seqs = Vec::new();
        let mut relationships = Vec::new();
        for (seq, op) in &head {
            match op {
                OutboxOp::Upsert { relationship_id } => {
                    seqs.push(*seq);
                    if let Some(rel) = node.store.get_relationship(relationship_id)? {
                        relationships.push(rel);
                    }
                }
                OutboxOp::Withdraw { .. } => break,
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
            let ack = client
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
            out.links_found += ack.links_found as u64;
            out.batches += 1;
        }
        node.store.ack(&seqs)?;
        progress(out);
    }
}

/// Asks who-else for one relationship of this node.
pub async fn who_else(
    node: &Node,
    client: &mut FederationClient<Channel>,
    anchor: &LocalRelationship,
    purpose: v1::Purpose,
    role: v1::OperatorRole,
    operator_id: &str,
) -> Result<v1::WhoElseAnswer, tonic::Status> {
    client
        .who_else(v1::WhoElseQuestion {
            node_id: node.config.node_id.clone(),
            anchor_reference: anchor.reference.clone(),
            purpose: purpose as i32,
            operator_role: role as i32,
            operator_id: operator_id.to_string(),
            break_glass_reason: 0,
        })
        .await
        .map(|r| r.into_inner())
}
