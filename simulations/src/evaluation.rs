//! The figures a research run produces, as plain data: linkage quality per encoding profile,
//! re-identification by the attacks per profile, runtime scaling. [`crate::run`] and
//! [`crate::attack`] fill them, [`crate::report`] renders them (Markdown, HTML, SVG plots), and
//! they serialise to JSON for anyone else.

use serde::{Deserialize, Serialize};

/// A point of the precision/recall curve across the match-probability threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdPoint {
    /// Match probability at or above which a pair counts as a link.
    pub threshold: f64,
    pub precision: f64,
    pub recall: f64,
}

/// Precision, recall and F1 of one kind of pair.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Pairs the truth says are the same person.
    pub true_pairs: u64,
    /// Pairs linked (at the operating threshold).
    pub linked_pairs: u64,
    /// Linked pairs that are true.
    pub correct_pairs: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl Scores {
    /// Scores from counts (1.0 where a ratio has nothing to divide by).
    pub fn from_counts(true_pairs: u64, linked_pairs: u64, correct_pairs: u64) -> Scores {
        let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        let precision = ratio(correct_pairs, linked_pairs);
        let recall = ratio(correct_pairs, true_pairs);
        let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
        Scores { true_pairs, linked_pairs, correct_pairs, precision, recall, f1 }
    }
}

/// Linkage quality and cost of one encoding profile (a linkage schema) on one population.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileQuality {
    /// Profile name, e.g. `default`, `unhardened`, `hardened`.
    pub profile: String,
    /// Short fingerprint of the linkage schema.
    pub schema_fingerprint: String,
    /// Records linked (one per entity record).
    pub records: u64,
    /// Pairs of records at different entities.
    pub cross: Scores,
    /// Duplicates inside one entity.
    pub within: Scores,
    /// All pairs together.
    pub all: Scores,
    /// Share of true pairs that blocking kept as candidates.
    pub pair_completeness: f64,
    /// Share of all pairs that blocking removed.
    pub reduction_ratio: f64,
    /// Seconds to normalise and encode every record.
    pub encode_secs: f64,
    /// Seconds to block, score and cluster.
    pub link_secs: f64,
    /// Resident memory after the run (bytes; 0 where unknown).
    pub rss_bytes: u64,
    /// Precision and recall across the match-probability threshold.
    pub curve: Vec<ThresholdPoint>,
}

/// What one attack re-identified on one profile's encodings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttackOutcome {
    pub profile: String,
    /// `frequency` or `pattern-mining`.
    pub attack: String,
    /// `record-level` (the CLK) or `field-level` (one filter per field).
    pub encoding: String,
    /// The field attacked (`surname`, `given_names`, …) for field-level attacks; empty for CLKs.
    pub field: String,
    /// Share of the encoded population also in the attacker's plaintext reference population.
    pub overlap: f64,
    /// Distinct plaintext values the attack tried to re-identify.
    pub values_targeted: u64,
    /// Of those, values it re-identified correctly.
    pub values_reidentified: u64,
    /// values_reidentified / values_targeted.
    pub share_values: f64,
    /// Encoded records.
    pub records: u64,
    /// Records whose value (or, for CLKs, at least one identifying value) the attack assigned
    /// correctly.
    pub records_reidentified: u64,
    pub share_records: f64,
    /// Seconds the attack took.
    pub secs: f64,
}

/// How linking time grows with the number of records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingPoint {
    pub profile: String,
    pub records: u64,
    pub encode_secs: f64,
    pub link_secs: f64,
}

/// Everything a research run found, for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub scenario: String,
    pub seed: u64,
    pub persons: u64,
    /// The command line that reproduces it.
    pub command: String,
    pub qualities: Vec<ProfileQuality>,
    pub attacks: Vec<AttackOutcome>,
    pub scaling: Vec<ScalingPoint>,
}
