//! Arbitrary text through the disclosure-policy checker (`ponte_coordinator::policy::check`).
//!
//! Asserts what the module promises: no panic on any text; every problem has a 1-based line and
//! column (in characters) inside the text, and problems come in file order; a policy exists
//! exactly when there are no errors, and checking its text again gives the same policy (`diff`
//! with itself empty). For an accepted policy, what no policy can change holds in `decide` for
//! every service category, band, status and purpose: an obscured relationship is never shown, a
//! T3 category is never shown without consent while the policy requires consent for T3
//! (break-glass included), a relationship
//! closed past retention is never shown, and the trace has one entry per rule.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ponte_coordinator::linker::Band;
use ponte_coordinator::model::RelationshipMeta;
use ponte_coordinator::policy::{self, Disclosure, Problem, Question, RULES, Target};
use ponte_fuzz::assert_bounded;
use ponte_proto::v1::{self, BreakGlassReason, EntityType, OperatorRole, Purpose, RelationshipStatus, SensitivityTier};
use ponte_proto::vocab;

fn assert_positioned(text: &str, kind: &str, problems: &[Problem]) {
    let lines: Vec<&str> = text.split('\n').collect();
    for p in problems {
        assert_bounded(kind, &p.message);
        assert!(p.line >= 1 && p.column >= 1, "{kind} at {}:{} (positions are 1-based): {}", p.line, p.column, p.message);
        let Some(line) = lines.get(p.line - 1) else {
            panic!("{kind} at line {} of a text of {} lines: {}", p.line, lines.len(), p.message)
        };
        assert!(
            p.column <= line.chars().count() + 1,
            "{kind} at column {} of line {} which has {} characters: {}",
            p.column,
            p.line,
            line.chars().count(),
            p.message
        );
    }
    assert!(
        problems.windows(2).all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)),
        "{kind}s out of file order: {:?}",
        problems.iter().map(|p| (p.line, p.column)).collect::<Vec<_>>()
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let report = policy::check(text);
    assert_positioned(text, "error", &report.errors);
    assert_positioned(text, "warning", &report.warnings);
    assert_eq!(report.policy.is_some(), report.errors.is_empty(), "a policy exists exactly when there are no errors");
    // A policy may leave T3 out of consent.required_for (a warning: the DPO must approve it);
    // then T3 needs no consent under it.
    let t3_needs_consent = !report.warnings.iter().any(|w| w.message.starts_with("consent.required_for does not list \"t3\""));
    let Some(p) = report.policy else { return };
    assert_eq!(p.text, text);
    let again = policy::check(&p.text);
    assert_eq!(again.policy.as_ref(), Some(&p), "checking the same text twice gives another policy");
    assert!(policy::diff(&p, &p).is_empty(), "a policy differs from itself");
    for line in policy::diff(&policy::Policy::default_policy(), &p) {
        assert_bounded("diff line", &line);
    }

    let today = 20260115;
    let questions = [
        (OperatorRole::OperatorePua, Purpose::ContinuitaAssistenziale, None),
        (OperatorRole::OperatoreCot, Purpose::Emergenza, Some(BreakGlassReason::PericoloDiVita)),
    ];
    for &category in vocab::ServiceCategoryName::ALL {
        let consent_required = t3_needs_consent && vocab::default_tier(category) == SensitivityTier::T3;
        // An active relationship, and one closed in 1950: past any retention a policy may set
        // (at most 600 months).
        for (status, since_month) in [(RelationshipStatus::Attiva, 202512), (RelationshipStatus::Conclusa, 195001)] {
            let rel = RelationshipMeta {
                entity_type: EntityType::Asl as i32,
                unit: "distretto-lecce".into(),
                category: category as i32,
                tier: vocab::default_tier(category) as i32,
                status: status as i32,
                since_month,
                case_manager: false,
                plan: v1::PlanType::PlanNone as i32,
                contact: v1::ContactRole::SegreteriaUnita as i32,
            };
            let past_retention = status == RelationshipStatus::Conclusa;
            for band in [Band::Certain, Band::Probable, Band::Possible] {
                for obscured in [false, true] {
                    for (role, purpose, break_glass) in questions {
                        let q = Question { asker_node: "comune-lecce".into(), asker_entity: EntityType::Comune, role, purpose, break_glass, today };
                        let d = policy::decide(&p, &q, &Target { relationship: &rel, band, obscured, consents: &[] });
                        assert_eq!(d.trace.len(), RULES.len());
                        let shown = d.disclosure != Disclosure::Nothing;
                        assert!(!(shown && obscured), "an obscured relationship shown: {category:?}");
                        assert!(!(shown && consent_required), "{category:?} (consent required) shown without consent to {purpose:?}");
                        assert!(!(shown && past_retention), "{category:?} shown past retention");
                    }
                }
            }
        }
    }
});
