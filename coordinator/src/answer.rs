//! Shaping the answer to a who-else question under the policy. Pure: no I/O, no clock.
//!
//! The decisions are [`policy::decide`]'s; this module turns the relationships it lets through
//! into wire values and guarantees the answer's shape leaks nothing:
//! - only relationships disclosed `Full` or `Generalised` appear; nothing counts or marks the
//!   others, and the notice is constant (set by the service);
//! - the order is a total order on what is shown (then the item key, which is not shown), so
//!   the answer is byte-identical whether or not a withheld relationship was among the
//!   candidates, and whatever order the candidates came in;
//! - a `Generalised` relationship carries only its category group: no category, no unit and
//!   no plan type (`PLAN_TYPE_UNSPECIFIED`: a PAI beside "assistenza domiciliare" would say
//!   cure domiciliari rather than SAD), with status, since month, case-manager flag and the
//!   role-based contact kept — what a case worker needs to reach the other service.

use ponte_proto::v1;
use ponte_proto::vocab;

use crate::linker::Band;
use crate::model::{ItemKey, RelationshipMeta};
use crate::policy::{self, Consent, Decision, Disclosure, Policy, Question, Target};

/// A candidate for the answer: another relationship in the person's cluster.
pub struct Candidate<'a> {
    pub key: &'a ItemKey,
    pub entity_name: &'a str,
    pub band: Band,
    pub relationship: &'a RelationshipMeta,
    /// Obscured (oscuramento) at the person's request.
    pub obscured: bool,
    /// Consents recorded for the person cluster (revoked ones removed).
    pub consents: &'a [&'a Consent],
}

impl<'a> Candidate<'a> {
    /// The candidate as the policy sees it.
    pub fn target(&self) -> Target<'a> {
        Target { relationship: self.relationship, band: self.band, obscured: self.obscured, consents: self.consents }
    }

    /// The policy's decision on this candidate, with its trace (for `explain`).
    pub fn decide(&self, policy: &Policy, q: &Question) -> Decision {
        policy::decide(policy, q, &self.target())
    }
}

/// Shapes the answer: decides each candidate, converts the ones disclosed, orders them
/// deterministically. Returns the shown relationships and, in the same order, the keys of the
/// items shown with how they were disclosed (for the audit log).
pub fn shape_answer(
    policy: &Policy,
    q: &Question,
    candidates: &[Candidate<'_>],
) -> (Vec<v1::OtherRelationship>, Vec<(ItemKey, Disclosure)>) {
    let mut shown: Vec<(v1::OtherRelationship, (ItemKey, Disclosure))> = candidates
        .iter()
        .filter_map(|c| {
            let d = c.decide(policy, q).disclosure;
            (d != Disclosure::Nothing).then(|| (shown_relationship(policy, q, c, d), (c.key.clone(), d)))
        })
        .collect();
    shown.sort_by(|(a, ka), (b, kb)| order_key(a).cmp(&order_key(b)).then_with(|| ka.cmp(kb)));
    shown.into_iter().unzip()
}

/// Every shown field, most useful first: a total order on what the requester sees.
#[allow(clippy::type_complexity)]
fn order_key(r: &v1::OtherRelationship) -> (i32, &str, i32, i32, u32, &str, i32, bool, i32, i32, i32, &str) {
    (
        r.band,
        &r.entity_id,
        r.category_group,
        r.category,
        r.since_month,
        &r.unit,
        r.status,
        r.case_manager,
        r.plan,
        r.contact,
        r.entity_type,
        &r.entity_name,
    )
}

/// What the requester receives of candidate `c` disclosed as `d` (`Full` or `Generalised`; the
/// caller never converts a relationship disclosed `Nothing`).
pub fn shown_relationship(policy: &Policy, q: &Question, c: &Candidate<'_>, d: Disclosure) -> v1::OtherRelationship {
    let _ = q;
    debug_assert_ne!(d, Disclosure::Nothing, "a withheld relationship is never converted");
    let r = c.relationship;
    let category = v1::ServiceCategory::try_from(r.category).unwrap_or(v1::ServiceCategory::Unspecified);
    let full = d == Disclosure::Full;
    v1::OtherRelationship {
        band: match c.band {
            Band::Certain => v1::MatchBand::Certain,
            Band::Probable => v1::MatchBand::Probable,
            Band::Possible => v1::MatchBand::Possible,
        } as i32,
        entity_id: c.key.node.clone(),
        entity_name: c.entity_name.to_string(),
        entity_type: r.entity_type,
        unit: if full { r.unit.clone() } else { String::new() },
        category: if full { r.category } else { v1::ServiceCategory::Unspecified as i32 },
        status: r.status,
        since_month: r.since_month,
        case_manager: r.case_manager,
        plan: if full { r.plan } else { v1::PlanType::Unspecified as i32 },
        contact: policy::shown_contact(policy, r.contact),
        category_group: vocab::category_group(category) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ponte_proto::v1::{ConsentGiver, ContactRole, EntityType, OperatorRole, Purpose, RelationshipStatus, ServiceCategory};
    use prost::Message;

    fn rel(category: ServiceCategory, status: RelationshipStatus) -> RelationshipMeta {
        RelationshipMeta {
            entity_type: EntityType::Asl as i32,
            unit: "distretto-lecce.adi".into(),
            category: category as i32,
            tier: vocab::default_tier(category) as i32,
            status: status as i32,
            since_month: 202402,
            case_manager: true,
            plan: v1::PlanType::Pai as i32,
            contact: ContactRole::CaseManagerUnita as i32,
        }
    }

    fn question(entity: EntityType) -> Question {
        Question {
            asker_node: "comune-lecce".into(),
            asker_entity: entity,
            role: OperatorRole::AssistenteSociale,
            purpose: Purpose::ContinuitaAssistenziale,
            break_glass: None,
            today: 20250115,
        }
    }

    fn key(node: &str, r: &str) -> ItemKey {
        ItemKey { node: node.into(), reference: r.into() }
    }

    fn cand<'a>(k: &'a ItemKey, band: Band, r: &'a RelationshipMeta, obscured: bool, consents: &'a [&'a Consent]) -> Candidate<'a> {
        Candidate { key: k, entity_name: "ASL Lecce", band, relationship: r, obscured, consents }
    }

    fn bytes(rs: &[v1::OtherRelationship]) -> Vec<u8> {
        v1::WhoElseAnswer { relationships: rs.to_vec(), notice: String::new(), receipt: None }.encode_to_vec()
    }

    #[test]
    fn full_and_generalised_fields() {
        let p = Policy::default_policy();
        let k = key("asl-lecce", "r1");
        let adi = rel(ServiceCategory::CureDomiciliari, RelationshipStatus::Attiva);
        let c = cand(&k, Band::Certain, &adi, false, &[]);

        let full = shown_relationship(&p, &question(EntityType::Asl), &c, Disclosure::Full);
        assert_eq!(full.category, ServiceCategory::CureDomiciliari as i32);
        assert_eq!(full.unit, "distretto-lecce.adi");
        assert_eq!(full.plan, v1::PlanType::Pai as i32);
        assert_eq!(full.category_group, v1::CategoryGroup::AssistenzaDomiciliare as i32);
        assert_eq!(full.contact, ContactRole::SegreteriaUnita as i32, "case manager contact is role-based by default");
        assert_eq!(full.entity_id, "asl-lecce");
        assert!(full.case_manager);

        let gen_ = shown_relationship(&p, &question(EntityType::Comune), &c, Disclosure::Generalised);
        assert_eq!(gen_.category, 0);
        assert_eq!(gen_.unit, "");
        assert_eq!(gen_.plan, 0);
        assert_eq!(gen_.category_group, v1::CategoryGroup::AssistenzaDomiciliare as i32);
        assert_eq!(gen_.status, RelationshipStatus::Attiva as i32);
        assert_eq!(gen_.since_month, 202402);

        let direct = crate::policy::check(&crate::policy::DEFAULT_POLICY_TOML.replace("case_manager_direct = false", "case_manager_direct = true"))
            .policy
            .unwrap();
        let shown = shown_relationship(&direct, &question(EntityType::Asl), &c, Disclosure::Full);
        assert_eq!(shown.contact, ContactRole::CaseManagerUnita as i32);
    }

    #[test]
    fn social_gets_generalised_health_gets_full() {
        let p = Policy::default_policy();
        let k1 = key("asl-lecce", "r1");
        let k2 = key("comune-lecce", "r2");
        let adi = rel(ServiceCategory::CureDomiciliari, RelationshipStatus::Attiva);
        let sad = rel(ServiceCategory::AssistenzaDomiciliareSociale, RelationshipStatus::Attiva);
        let cs = [cand(&k1, Band::Certain, &adi, false, &[]), cand(&k2, Band::Probable, &sad, false, &[])];

        let (social, sk) = shape_answer(&p, &question(EntityType::Comune), &cs);
        assert_eq!(social.len(), 2);
        assert_eq!(sk, vec![(k1.clone(), Disclosure::Generalised), (k2.clone(), Disclosure::Full)]);
        assert_eq!(social[0].category, 0);
        assert_eq!(social[1].category, ServiceCategory::AssistenzaDomiciliareSociale as i32);

        let (health, hk) = shape_answer(&p, &question(EntityType::Asl), &cs);
        assert_eq!(hk, vec![(k1, Disclosure::Full), (k2, Disclosure::Full)]);
        assert_eq!(health[0].category, ServiceCategory::CureDomiciliari as i32);
    }

    /// Withheld relationships of every kind leave the answer byte-identical, whatever the order
    /// of the candidates.
    #[test]
    fn no_inference_from_hidden_relationships() {
        let p = check_policy("[bands]\nshow_possible = false\n");
        let q = question(EntityType::Comune);
        let (k1, k2, k3, k4, k5, k6) = (
            key("asl-lecce", "a1"),
            key("comune-lecce", "a2"),
            key("asl-lecce", "h1"),
            key("asl-lecce", "h2"),
            key("comune-lecce", "h3"),
            key("asl-lecce", "h4"),
        );
        let adi = rel(ServiceCategory::CureDomiciliari, RelationshipStatus::Attiva);
        let sad = rel(ServiceCategory::AssistenzaDomiciliareSociale, RelationshipStatus::InValutazione);
        let serd = rel(ServiceCategory::Serd, RelationshipStatus::Attiva);
        let mut expired = rel(ServiceCategory::ContributoEconomico, RelationshipStatus::Conclusa);
        expired.since_month = 202312;
        let rsa = rel(ServiceCategory::ResidenzialeRsa, RelationshipStatus::Attiva);
        // A consent for SerD that does not cover this requester: still hidden.
        let asl_only = Consent {
            label: "asl-lecce/c1".into(),
            categories: vec![ServiceCategory::Serd as i32],
            recipients: vec![EntityType::Asl as i32],
            purposes: vec![Purpose::ContinuitaAssistenziale as i32],
            valid_from: 20240101,
            valid_until: 20261231,
            given_by: ConsentGiver::Interessato as i32,
        };
        let consents = [&asl_only];

        let visible = [cand(&k1, Band::Certain, &adi, false, &consents), cand(&k2, Band::Probable, &sad, false, &consents)];
        let hidden = [
            cand(&k3, Band::Certain, &serd, false, &consents),  // T3 without a covering consent
            cand(&k4, Band::Certain, &rsa, true, &consents),    // obscured
            cand(&k5, Band::Certain, &expired, false, &consents), // past retention
            cand(&k6, Band::Possible, &rsa, false, &consents),  // possible, not shown
        ];
        let (base, base_keys) = shape_answer(&p, &q, &visible);
        assert_eq!(base.len(), 2);
        for h in &hidden {
            for pos in 0..=visible.len() {
                let mut with: Vec<Candidate<'_>> = visible.iter().map(|c| cand(c.key, c.band, c.relationship, c.obscured, c.consents)).collect();
                with.insert(pos, cand(h.key, h.band, h.relationship, h.obscured, h.consents));
                let (a, ka) = shape_answer(&p, &q, &with);
                assert_eq!(bytes(&a), bytes(&base), "{:?} at {pos}", h.key);
                assert_eq!(ka, base_keys);
            }
        }
        let mut all: Vec<Candidate<'_>> = hidden.iter().chain(&visible).map(|c| cand(c.key, c.band, c.relationship, c.obscured, c.consents)).collect();
        all.reverse();
        let (a, _) = shape_answer(&p, &q, &all);
        assert_eq!(bytes(&a), bytes(&base));
        // The same SerD relationship is shown (generalised) once a consent covers the requester.
        let covering = Consent { recipients: vec![EntityType::Comune as i32], ..asl_only.clone() };
        let cc = [&covering];
        let with_consent = [cand(&k3, Band::Certain, &serd, false, &cc)];
        let (a, ka) = shape_answer(&p, &q, &with_consent);
        assert_eq!(ka, vec![(k3.clone(), Disclosure::Generalised)]);
        assert_eq!(a[0].category_group, v1::CategoryGroup::ServizioSpecialistico as i32);
        assert_eq!(a[0].category, 0);
    }

    #[test]
    fn order_depends_only_on_what_is_shown() {
        let p = Policy::default_policy();
        let q = question(EntityType::Asl);
        let (k1, k2, k3) = (key("comune-lecce", "x"), key("asl-lecce", "y"), key("asl-lecce", "z"));
        let adi = rel(ServiceCategory::CureDomiciliari, RelationshipStatus::Attiva);
        let rsa = rel(ServiceCategory::ResidenzialeRsa, RelationshipStatus::Attiva);
        let forward = [
            cand(&k1, Band::Certain, &adi, false, &[]),
            cand(&k2, Band::Possible, &rsa, false, &[]),
            cand(&k3, Band::Certain, &rsa, false, &[]),
        ];
        let backward = [
            cand(&k3, Band::Certain, &rsa, false, &[]),
            cand(&k2, Band::Possible, &rsa, false, &[]),
            cand(&k1, Band::Certain, &adi, false, &[]),
        ];
        let (a, ka) = shape_answer(&p, &q, &forward);
        let (b, kb) = shape_answer(&p, &q, &backward);
        assert_eq!(bytes(&a), bytes(&b));
        assert_eq!(ka, kb);
        // certain before possible; then by entity id.
        assert_eq!(ka.iter().map(|(k, _)| k.reference.as_str()).collect::<Vec<_>>(), ["z", "x", "y"]);
        assert_eq!(a[2].band, v1::MatchBand::Possible as i32);
    }

    fn check_policy(extra: &str) -> Policy {
        let r = crate::policy::check(&format!("version = \"t\"\n{extra}"));
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        r.policy.unwrap()
    }
}
