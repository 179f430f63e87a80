//! Deciding what a who-else question may see. Pure: no I/O, no clock.
//!
//! The rules of this release (the privacy officers' policy file replaces the tables later,
//! behind the same functions):
//! - the purpose must be allowed for the operator's role ([`purpose_allowed`]); break-glass
//!   (`emergenza`) is off;
//! - the anchor must be one of the asking node's own published relationships, active or pending;
//! - T3 categories are never returned (existence-hidden);
//! - the answer has the same shape whatever was withheld: no counts, a constant notice, and a
//!   deterministic order that depends only on what is shown.

use ponte_proto::v1::{self, OperatorRole, Purpose};
use ponte_proto::vocab;

use crate::linker::Band;
use crate::model::{ItemKey, RelationshipMeta};

/// Purposes each operator role may ask for (DOMAIN.md §7, default policy).
pub fn purpose_allowed(role: OperatorRole, purpose: Purpose) -> bool {
    use OperatorRole as R;
    use Purpose as P;
    match role {
        R::AssistenteSociale | R::Mmg => {
            matches!(purpose, P::ContinuitaAssistenziale | P::ConvocazioneUvm | P::DimissioneProtetta)
        }
        R::OperatorePua | R::MembroUvm => matches!(purpose, P::ContinuitaAssistenziale | P::ConvocazioneUvm),
        R::OperatoreCot => matches!(purpose, P::DimissioneProtetta | P::ContinuitaAssistenziale),
        R::ReferentePrivacy => matches!(purpose, P::RichiestaInteressato),
        R::Unspecified => false,
    }
}

/// Why a question is refused. The text goes back to the asking node and into the audit log; it
/// never says anything about the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    PurposeNotAllowed { role: String, purpose: String },
    AnchorNotHeld,
    AnchorNotActive,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::PurposeNotAllowed { role, purpose } => write!(
                f,
                "the purpose '{purpose}' is not allowed for the operator role '{role}' under the federation's policy"
            ),
            Refusal::AnchorNotHeld => write!(
                f,
                "the anchor is not one of this node's published relationships: a node may only ask about a person it has in care (publish the relationship first)"
            ),
            Refusal::AnchorNotActive => write!(
                f,
                "the anchor relationship is not active or pending (segnalata, in_valutazione, attiva): a closed or suspended relationship does not give need-to-know"
            ),
        }
    }
}

/// Checks a question before anything is looked up about the person.
pub fn check_question(role: OperatorRole, purpose: Purpose, anchor: Option<&RelationshipMeta>) -> Result<(), Refusal> {
    if !purpose_allowed(role, purpose) {
        return Err(Refusal::PurposeNotAllowed {
            role: vocab::OperatorRoleName::name(role),
            purpose: vocab::PurposeName::name(purpose),
        });
    }
    let anchor = anchor.ok_or(Refusal::AnchorNotHeld)?;
    let status = v1::RelationshipStatus::try_from(anchor.status).unwrap_or(v1::RelationshipStatus::Unspecified);
    if !vocab::status_allows_anchor(status) {
        return Err(Refusal::AnchorNotActive);
    }
    Ok(())
}

/// A candidate for the answer: another relationship in the person's cluster.
pub struct Candidate<'a> {
    pub key: &'a ItemKey,
    pub entity_name: &'a str,
    pub band: Band,
    pub relationship: &'a RelationshipMeta,
}

/// Shapes the answer: drops what may not be shown, converts the rest, orders deterministically.
/// Returns the shown relationships and the keys of the items shown (for the audit log).
pub fn shape_answer(candidates: &[Candidate<'_>]) -> (Vec<v1::OtherRelationship>, Vec<ItemKey>) {
    let mut shown: Vec<(v1::OtherRelationship, ItemKey)> = candidates
        .iter()
        .filter(|c| c.relationship.tier < v1::SensitivityTier::T3 as i32)
        .map(|c| {
            let r = c.relationship;
            (
                v1::OtherRelationship {
                    band: match c.band {
                        Band::Certain => v1::MatchBand::Certain,
                        Band::Probable => v1::MatchBand::Probable,
                        Band::Possible => v1::MatchBand::Possible,
                    } as i32,
                    entity_id: c.key.node.clone(),
                    entity_name: c.entity_name.to_string(),
                    entity_type: r.entity_type,
                    unit: r.unit.clone(),
                    category: r.category,
                    status: r.status,
                    since_month: r.since_month,
                    case_manager: r.case_manager,
                    plan: r.plan,
                    contact: r.contact,
                    category_group: 0,
                },
                c.key.clone(),
            )
        })
        .collect();
    shown.sort_by(|(a, _), (b, _)| {
        (a.band, &a.entity_id, a.category, a.since_month, &a.unit, a.status)
            .cmp(&(b.band, &b.entity_id, b.category, b.since_month, &b.unit, b.status))
    });
    shown.into_iter().unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(category: v1::ServiceCategory, status: v1::RelationshipStatus) -> RelationshipMeta {
        RelationshipMeta {
            entity_type: 1,
            unit: "unit".into(),
            category: category as i32,
            tier: vocab::default_tier(category) as i32,
            status: status as i32,
            since_month: 202402,
            case_manager: false,
            plan: 1,
            contact: 2,
        }
    }

    #[test]
    fn purposes_follow_roles() {
        assert!(purpose_allowed(OperatorRole::OperatorePua, Purpose::ContinuitaAssistenziale));
        assert!(!purpose_allowed(OperatorRole::OperatorePua, Purpose::DimissioneProtetta));
        assert!(!purpose_allowed(OperatorRole::AssistenteSociale, Purpose::Emergenza));
        assert!(!purpose_allowed(OperatorRole::Unspecified, Purpose::ContinuitaAssistenziale));
    }

    #[test]
    fn anchor_rules() {
        let active = rel(v1::ServiceCategory::CureDomiciliari, v1::RelationshipStatus::Attiva);
        let closed = rel(v1::ServiceCategory::CureDomiciliari, v1::RelationshipStatus::Conclusa);
        let q = |a| check_question(OperatorRole::OperatorePua, Purpose::ContinuitaAssistenziale, a);
        assert_eq!(q(Some(&active)), Ok(()));
        assert_eq!(q(Some(&closed)), Err(Refusal::AnchorNotActive));
        assert_eq!(q(None), Err(Refusal::AnchorNotHeld));
    }

    #[test]
    fn t3_is_hidden_without_trace() {
        let k1 = ItemKey { node: "asl-lecce".into(), reference: "r1".into() };
        let k2 = ItemKey { node: "asl-lecce".into(), reference: "r2".into() };
        let adi = rel(v1::ServiceCategory::CureDomiciliari, v1::RelationshipStatus::Attiva);
        let serd = rel(v1::ServiceCategory::Serd, v1::RelationshipStatus::Attiva);
        let with = [
            Candidate { key: &k2, entity_name: "ASL Lecce", band: Band::Certain, relationship: &serd },
            Candidate { key: &k1, entity_name: "ASL Lecce", band: Band::Certain, relationship: &adi },
        ];
        let without = [Candidate { key: &k1, entity_name: "ASL Lecce", band: Band::Certain, relationship: &adi }];
        let (a, ka) = shape_answer(&with);
        let (b, kb) = shape_answer(&without);
        assert_eq!(a, b);
        assert_eq!(ka, kb);
        assert_eq!(a.len(), 1);
    }
}
