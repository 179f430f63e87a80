//! Every request from the wire, checked into plain values before the core sees it: who may send
//! it, every identifier's shape, every closed vocabulary, every bound. Pure: no store, no clock
//! (the fuzz targets run these on arbitrary decoded messages).

use ponte_proto::identity::{PeerIdentity, Role};
use ponte_proto::limits::{MAX_AUDIT_QUERY, MAX_BATCH_ITEMS, MAX_CONSENT_SCOPE, MAX_POLICY_BYTES, MAX_WITHDRAW_REFERENCES};
use ponte_proto::schema::Fingerprint;
use ponte_proto::v1;
use ponte_proto::vocab;

use super::error::{FederationError, Result};
use crate::model::{self, ItemKey, Publication, RelationshipMeta};
use crate::policy::Consent;
use crate::storage::ConsentRow;

/// What the coordinator expects of encodings.
#[derive(Debug, Clone)]
pub struct Expectations {
    pub fingerprint: Fingerprint,
    pub epochs: Vec<u32>,
    pub shape: model::EncodingShape,
}

/// The node a request comes from: its certificate id and entity type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub node: String,
    pub entity: v1::EntityType,
    pub display_name: String,
}

/// The calling node, if the certificate is a node's and the message speaks as that node.
pub fn node_caller(who: &PeerIdentity, claimed_node: &str) -> Result<Caller> {
    let Role::Node { entity_type } = who.role else {
        return Err(FederationError::Forbidden(format!(
            "the certificate identifies {who}; only node certificates may publish or ask who-else"
        )));
    };
    if claimed_node != who.id {
        return Err(FederationError::Forbidden(format!(
            "the certificate identifies node '{}' but the request is made as node '{}': a node may only publish and ask as itself",
            who.id,
            claimed_node.chars().take(64).collect::<String>()
        )));
    }
    Ok(Caller { node: who.id.clone(), entity: entity_type, display_name: who.display_name.clone() })
}

/// The caller, if its certificate is a privacy officer's.
pub fn officer(who: &PeerIdentity) -> Result<()> {
    match who.role {
        Role::PrivacyOfficer => Ok(()),
        _ => Err(FederationError::Forbidden(format!(
            "the certificate identifies {who}; only privacy-officer certificates may govern the policy and read the audit"
        ))),
    }
}

fn invalid(e: impl Into<String>) -> FederationError {
    FederationError::Invalid(e.into())
}

/// A checked publish batch.
#[derive(Debug, Clone)]
pub struct CheckedBatch {
    pub caller: Caller,
    pub epoch: u32,
    pub batch_id: u64,
    pub items: Vec<Publication>,
}

pub fn publish(who: &PeerIdentity, expect: &Expectations, batch: &v1::PublishBatch) -> Result<CheckedBatch> {
    let caller = node_caller(who, &batch.node_id)?;
    let fp = Fingerprint::from_slice(&batch.schema_fingerprint)
        .ok_or_else(|| invalid("schema_fingerprint must be the 32-byte SHA-256 of the linkage schema"))?;
    if fp != expect.fingerprint {
        return Err(FederationError::Precondition(format!(
            "encodings made under linkage schema {} refused: this federation uses schema {}. Load the federation's schema file on the node (ponte-node schema check) and re-encode",
            fp.hex(),
            expect.fingerprint.hex()
        )));
    }
    if !expect.epochs.contains(&batch.key_epoch) {
        return Err(FederationError::Precondition(format!(
            "key epoch {} refused: this coordinator accepts epochs {:?}. Use the federation's current linkage secret",
            batch.key_epoch, expect.epochs
        )));
    }
    if batch.items.len() > MAX_BATCH_ITEMS {
        return Err(invalid(format!("{} items in one batch; send at most {MAX_BATCH_ITEMS}", batch.items.len())));
    }
    let mut items = Vec::with_capacity(batch.items.len());
    for (i, item) in batch.items.iter().enumerate() {
        let p = model::item_from_wire(&caller.node, &caller.display_name, caller.entity, batch.key_epoch, &expect.shape, item)
            .map_err(|e| invalid(format!("item {i} of the batch: {e}")))?;
        items.push(p);
    }
    Ok(CheckedBatch { caller, epoch: batch.key_epoch, batch_id: batch.batch_id, items })
}

/// A checked withdrawal: the caller's items to erase.
pub fn withdraw(who: &PeerIdentity, r: &v1::WithdrawRequest) -> Result<(Caller, Vec<ItemKey>)> {
    let caller = node_caller(who, &r.node_id)?;
    if r.references.len() > MAX_WITHDRAW_REFERENCES {
        return Err(invalid(format!("{} references in one withdrawal; send at most {MAX_WITHDRAW_REFERENCES}", r.references.len())));
    }
    let mut keys = Vec::with_capacity(r.references.len());
    for (i, reference) in r.references.iter().enumerate() {
        vocab::check_reference(reference).map_err(|e| invalid(format!("references[{i}]: {e}")))?;
        keys.push(ItemKey { node: caller.node.clone(), reference: reference.clone() });
    }
    keys.sort();
    keys.dedup();
    Ok((caller, keys))
}

/// A checked relationship update.
pub fn update_relationship(who: &PeerIdentity, r: &v1::UpdateRelationshipRequest) -> Result<(Caller, ItemKey, RelationshipMeta)> {
    let caller = node_caller(who, &r.node_id)?;
    vocab::check_reference(&r.reference).map_err(|e| invalid(format!("reference: {e}")))?;
    let rel = model::relationship_from_wire(r.relationship.as_ref(), caller.entity).map_err(invalid)?;
    let key = ItemKey { node: caller.node.clone(), reference: r.reference.clone() };
    Ok((caller, key, rel))
}

/// A who-else question as the wire gives it, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskedQuestion {
    pub caller: Caller,
    pub anchor: ItemKey,
    pub purpose: v1::Purpose,
    pub role: v1::OperatorRole,
    pub operator_id: String,
    pub break_glass: Option<v1::BreakGlassReason>,
}

pub fn who_else(who: &PeerIdentity, q: &v1::WhoElseQuestion) -> Result<AskedQuestion> {
    let caller = node_caller(who, &q.node_id)?;
    vocab::check_reference(&q.anchor_reference).map_err(|e| invalid(format!("anchor_reference: {e}")))?;
    vocab::check_operator_id(&q.operator_id).map_err(|e| invalid(format!("operator_id: {e}")))?;
    let purpose = vocab::PurposeName::from_wire(q.purpose).map_err(invalid)?;
    let role = vocab::OperatorRoleName::from_wire(q.operator_role).map_err(invalid)?;
    let break_glass = match q.break_glass_reason {
        0 => None,
        r => Some(vocab::BreakGlassReasonName::from_wire(r).map_err(invalid)?),
    };
    let anchor = ItemKey { node: caller.node.clone(), reference: q.anchor_reference.clone() };
    Ok(AskedQuestion { caller, anchor, purpose, role, operator_id: q.operator_id.clone(), break_glass })
}

/// A checked consent: its id and the row to store.
pub fn consent(who: &PeerIdentity, c: &v1::ConsentAssertion) -> Result<(Caller, String, ConsentRow)> {
    let caller = node_caller(who, &c.node_id)?;
    vocab::check_reference(&c.consent_id).map_err(|e| invalid(format!("consent_id: {e}")))?;
    vocab::check_reference(&c.reference).map_err(|e| invalid(format!("reference: {e}")))?;
    fn list<T>(what: &str, v: &[i32], check: impl Fn(i32) -> std::result::Result<T, String>) -> Result<Vec<i32>> {
        if v.is_empty() {
            return Err(invalid(format!("the consent names no {what}; name at least one")));
        }
        if v.len() > MAX_CONSENT_SCOPE {
            return Err(invalid(format!("{} {what} in one consent; at most {MAX_CONSENT_SCOPE}", v.len())));
        }
        for &x in v {
            check(x).map_err(|e| invalid(format!("{what}: {e}")))?;
        }
        let mut v = v.to_vec();
        v.sort_unstable();
        v.dedup();
        Ok(v)
    }
    let categories = list("service categories", &c.categories, vocab::ServiceCategoryName::from_wire)?;
    let recipients = list("recipient entity types", &c.recipients, vocab::EntityType::from_wire)?;
    let purposes = list("purposes", &c.purposes, vocab::PurposeName::from_wire)?;
    vocab::check_day(c.valid_from).map_err(|e| invalid(format!("valid_from: {e}")))?;
    vocab::check_day(c.valid_until).map_err(|e| invalid(format!("valid_until: {e}")))?;
    if c.valid_from > c.valid_until {
        return Err(invalid(format!("valid_from {} is after valid_until {}", c.valid_from, c.valid_until)));
    }
    let given_by = vocab::ConsentGiverName::from_wire(c.given_by).map_err(invalid)?;
    let row = ConsentRow {
        reference: ItemKey { node: caller.node.clone(), reference: c.reference.clone() },
        consent: Consent {
            label: format!("{}/{}", caller.node, c.consent_id),
            categories,
            recipients,
            purposes,
            valid_from: c.valid_from,
            valid_until: c.valid_until,
            given_by: given_by as i32,
        },
    };
    Ok((caller, c.consent_id.clone(), row))
}

pub fn revocation(who: &PeerIdentity, r: &v1::ConsentRevocation) -> Result<(Caller, String)> {
    let caller = node_caller(who, &r.node_id)?;
    vocab::check_reference(&r.consent_id).map_err(|e| invalid(format!("consent_id: {e}")))?;
    Ok((caller, r.consent_id.clone()))
}

pub fn obscure(who: &PeerIdentity, r: &v1::ObscureRequest) -> Result<(Caller, ItemKey, bool)> {
    let caller = node_caller(who, &r.node_id)?;
    vocab::check_reference(&r.reference).map_err(|e| invalid(format!("reference: {e}")))?;
    let key = ItemKey { node: caller.node.clone(), reference: r.reference.clone() };
    Ok((caller, key, r.obscured))
}

pub fn subject_report(who: &PeerIdentity, r: &v1::SubjectReportRequest) -> Result<(Caller, ItemKey, String)> {
    let caller = node_caller(who, &r.node_id)?;
    vocab::check_reference(&r.reference).map_err(|e| invalid(format!("reference: {e}")))?;
    vocab::check_operator_id(&r.operator_id).map_err(|e| invalid(format!("operator_id: {e}")))?;
    let key = ItemKey { node: caller.node.clone(), reference: r.reference.clone() };
    Ok((caller, key, r.operator_id.clone()))
}

/// The question an officer asks to have explained: a past one by receipt, or one described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExplainQuestion {
    Receipt(u64),
    Described { asker: String, anchor_reference: String, purpose: v1::Purpose, role: v1::OperatorRole, break_glass: Option<v1::BreakGlassReason> },
}

pub fn explain(who: &PeerIdentity, r: &v1::ExplainRequest) -> Result<(ExplainQuestion, ItemKey)> {
    officer(who)?;
    let question = match r.receipt_sequence {
        Some(seq) => ExplainQuestion::Receipt(seq),
        None => {
            vocab::check_node_id(&r.asker_node).map_err(|e| invalid(format!("asker_node: {e}")))?;
            vocab::check_reference(&r.anchor_reference).map_err(|e| invalid(format!("anchor_reference: {e}")))?;
            ExplainQuestion::Described {
                asker: r.asker_node.clone(),
                anchor_reference: r.anchor_reference.clone(),
                purpose: vocab::PurposeName::from_wire(r.purpose).map_err(invalid)?,
                role: vocab::OperatorRoleName::from_wire(r.operator_role).map_err(invalid)?,
                break_glass: match r.break_glass_reason {
                    0 => None,
                    b => Some(vocab::BreakGlassReasonName::from_wire(b).map_err(invalid)?),
                },
            }
        }
    };
    vocab::check_node_id(&r.target_node).map_err(|e| invalid(format!("target_node: {e}")))?;
    vocab::check_reference(&r.target_reference).map_err(|e| invalid(format!("target_reference: {e}")))?;
    Ok((question, ItemKey { node: r.target_node.clone(), reference: r.target_reference.clone() }))
}

/// Largest audit page, in bytes of entries.
pub const MAX_AUDIT_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Audit page size when the query does not say.
pub const DEFAULT_AUDIT_PAGE_BYTES: usize = 1024 * 1024;

/// A checked audit query: the filter and the page.
#[derive(Debug, Clone)]
pub struct AuditPageQuery {
    pub filter: crate::audit::Query,
    /// The first sequence to examine.
    pub from: u64,
    pub limit: usize,
    pub max_bytes: usize,
}

pub fn audit_query(who: &PeerIdentity, q: &v1::AuditQuery) -> Result<AuditPageQuery> {
    officer(who)?;
    let limit = match q.limit as usize {
        0 => 1000,
        n if n > MAX_AUDIT_QUERY => return Err(invalid(format!("limit {n}: at most {MAX_AUDIT_QUERY}"))),
        n => n,
    };
    let max_bytes = match q.max_bytes as usize {
        0 => DEFAULT_AUDIT_PAGE_BYTES,
        n if n > MAX_AUDIT_PAGE_BYTES => return Err(invalid(format!("max_bytes {n}: at most {MAX_AUDIT_PAGE_BYTES}"))),
        n if n < 4096 => return Err(invalid(format!("max_bytes {n}: at least 4096"))),
        n => n,
    };
    if !q.node.is_empty() {
        vocab::check_node_id(&q.node).map_err(|e| invalid(format!("node: {e}")))?;
    }
    let filter = crate::audit::Query {
        from: (q.from_time != 0).then_some(q.from_time),
        to: (q.to_time != 0).then_some(q.to_time),
        node: (!q.node.is_empty()).then(|| q.node.clone()),
        purpose: match q.purpose {
            0 => None,
            p => Some(vocab::PurposeName::name(vocab::PurposeName::from_wire(p).map_err(invalid)?)),
        },
    };
    Ok(AuditPageQuery { filter, from: q.from_sequence, limit, max_bytes })
}

/// Largest quarantine report.
pub const MAX_QUARANTINE_PAGE: usize = 1000;

pub fn quarantine_query(who: &PeerIdentity, q: &v1::QuarantineQuery) -> Result<(String, usize)> {
    officer(who)?;
    if q.after_key.len() > 256 || q.after_key.chars().any(char::is_control) {
        return Err(invalid("after_key: pass back a previous report's next_key"));
    }
    let limit = match q.limit as usize {
        0 => 100,
        n if n > MAX_QUARANTINE_PAGE => return Err(invalid(format!("limit {n}: at most {MAX_QUARANTINE_PAGE}"))),
        n => n,
    };
    Ok((q.after_key.clone(), limit))
}

pub fn policy_document(who: &PeerIdentity, doc: &v1::PolicyDocument) -> Result<()> {
    officer(who)?;
    if doc.toml.len() > MAX_POLICY_BYTES {
        return Err(invalid(format!("the policy is {} bytes; at most {MAX_POLICY_BYTES}", doc.toml.len())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> PeerIdentity {
        PeerIdentity { id: id.into(), role: Role::Node { entity_type: v1::EntityType::Comune }, display_name: "Comune".into() }
    }

    #[test]
    fn a_node_speaks_only_as_itself_and_officers_only_govern() {
        let who = node("comune-a");
        assert!(matches!(node_caller(&who, "comune-b"), Err(FederationError::Forbidden(_))));
        assert_eq!(node_caller(&who, "comune-a").unwrap().entity, v1::EntityType::Comune);
        assert!(matches!(officer(&who), Err(FederationError::Forbidden(_))));
        let dpo = PeerIdentity { id: "dpo".into(), role: Role::PrivacyOfficer, display_name: "DPO".into() };
        assert!(matches!(node_caller(&dpo, "dpo"), Err(FederationError::Forbidden(_))));
        officer(&dpo).unwrap();
    }

    #[test]
    fn withdrawals_are_bounded_checked_and_deduplicated() {
        let who = node("comune-a");
        let too_many = v1::WithdrawRequest { node_id: "comune-a".into(), references: vec!["r".into(); MAX_WITHDRAW_REFERENCES + 1] };
        assert!(matches!(withdraw(&who, &too_many), Err(FederationError::Invalid(m)) if m.contains("at most")));
        let bad = v1::WithdrawRequest { node_id: "comune-a".into(), references: vec!["ok".into(), "not ok\0".into()] };
        assert!(matches!(withdraw(&who, &bad), Err(FederationError::Invalid(m)) if m.starts_with("references[1]")));
        let dup = v1::WithdrawRequest { node_id: "comune-a".into(), references: vec!["b".into(), "a".into(), "b".into()] };
        let (_, keys) = withdraw(&who, &dup).unwrap();
        assert_eq!(keys.iter().map(|k| k.reference.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
    }

    #[test]
    fn audit_pages_are_bounded() {
        let dpo = PeerIdentity { id: "dpo".into(), role: Role::PrivacyOfficer, display_name: "DPO".into() };
        let q = v1::AuditQuery { max_bytes: (MAX_AUDIT_PAGE_BYTES + 1) as u32, ..Default::default() };
        assert!(matches!(audit_query(&dpo, &q), Err(FederationError::Invalid(m)) if m.contains("max_bytes")));
        let p = audit_query(&dpo, &v1::AuditQuery::default()).unwrap();
        assert_eq!((p.from, p.limit, p.max_bytes), (0, 1000, DEFAULT_AUDIT_PAGE_BYTES));
    }
}
