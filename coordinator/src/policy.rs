//! The privacy officers' disclosure policy: parsing and checking the TOML file, comparing two
//! versions, and deciding — rule by rule — what a who-else question may see. Pure: no I/O, no
//! clock (callers pass today's date).
//!
//! SKELETON: the types and signatures below are the contract the service uses; bodies to be
//! written (see the module's tests for the expected behaviour).

use ponte_proto::v1::{self, BreakGlassReason, ConsentGiver, EntityType, OperatorRole, Purpose, ServiceCategory};

use crate::linker::Band;
use crate::model::RelationshipMeta;

/// The policy shipped with the product (DOMAIN.md §7), used when no policy was ever loaded.
pub const DEFAULT_POLICY_TOML: &str = include_str!("../policy/default.toml");

/// What a requesting sector sees of a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Disclosure {
    Nothing,
    Generalised,
    Full,
}

/// Requesting sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sector {
    Social,
    Health,
}

/// A checked policy. Construct with [`check`] or [`Policy::default_policy`].
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `version` from the file.
    pub version: String,
    /// Hex SHA-256 of the file's text.
    pub sha256: String,
    /// The text it was parsed from.
    pub text: String,
    // private fields: the parsed tables
}

/// One problem found in a policy file, with its position (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The result of checking a policy file: errors make it unusable, warnings flag risky settings.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub policy: Option<Policy>,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// Checks a policy file's text (at most `MAX_POLICY_BYTES`).
pub fn check(text: &str) -> CheckReport {
    let _ = text;
    todo!()
}

impl Policy {
    /// The shipped default policy.
    pub fn default_policy() -> Policy {
        todo!()
    }

    /// Months after closure when a closed relationship is removed.
    pub fn retention_closed_months(&self) -> u32 {
        todo!()
    }

    /// Seconds between retention sweeps.
    pub fn retention_sweep_secs(&self) -> u64 {
        todo!()
    }

    /// Privacy-officer ids notified of every break-glass question.
    pub fn break_glass_notify(&self) -> &[String] {
        todo!()
    }
}

/// What changed between two policy versions, one line per change, in a stable order.
pub fn diff(old: &Policy, new: &Policy) -> Vec<String> {
    let _ = (old, new);
    todo!()
}

/// A question as the policy sees it.
#[derive(Debug, Clone)]
pub struct Question {
    pub asker_node: String,
    pub asker_entity: EntityType,
    pub role: OperatorRole,
    pub purpose: Purpose,
    /// Required with purpose `emergenza`.
    pub break_glass: Option<BreakGlassReason>,
    /// Today, YYYYMMDD (consent validity, retention).
    pub today: u32,
}

/// A consent as the coordinator keeps it (already checked on arrival).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Consent {
    /// `node/consent_id`.
    pub label: String,
    pub categories: Vec<i32>,
    pub recipients: Vec<i32>,
    pub purposes: Vec<i32>,
    pub valid_from: u32,
    pub valid_until: u32,
    pub given_by: i32,
}

/// Why a question is refused before anything is looked up about the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    PurposeNotAllowed { role: String, purpose: String },
    BreakGlassDisabled,
    BreakGlassRoleNotAllowed { role: String },
    BreakGlassReasonMissing,
    BreakGlassReasonWithoutEmergency,
    AnchorNotHeld,
    AnchorNotActive,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let _ = f;
        todo!()
    }
}

/// Checks purpose, role, break-glass and the need-to-know anchor.
pub fn check_question(policy: &Policy, q: &Question, anchor: Option<&RelationshipMeta>) -> Result<(), Refusal> {
    let _ = (policy, q, anchor);
    todo!()
}

/// One rule's outcome for one relationship, for [`Decision::trace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOutcome {
    pub rule: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// What may be shown of one relationship, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub disclosure: Disclosure,
    /// Every rule evaluated, in order, for `explain`. Never sent to a case worker.
    pub trace: Vec<RuleOutcome>,
}

/// A relationship in (or possibly in) the person's cluster, as the policy sees it.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub relationship: &'a RelationshipMeta,
    pub band: Band,
    pub obscured: bool,
    /// Consents recorded for the target's person cluster (already revoked ones removed).
    pub consents: &'a [&'a Consent],
}

/// Decides what `q` may see of `t`.
pub fn decide(policy: &Policy, q: &Question, t: &Target<'_>) -> Decision {
    let _ = (policy, q, t);
    todo!()
}

/// The requesting sector of an entity type under `policy`.
pub fn sector(policy: &Policy, e: EntityType) -> Sector {
    let _ = (policy, e);
    todo!()
}

/// The contact role shown for a relationship's contact under `policy`.
pub fn shown_contact(policy: &Policy, contact: i32) -> i32 {
    let _ = (policy, contact);
    todo!()
}

#[allow(dead_code)]
fn _uses(_: ServiceCategory, _: ConsentGiver, _: v1::SensitivityTier) {}
