//! Pair counting against a truth: the pure core of `run` and `link`.
//!
//! Two records are a *true pair* when the truth gives them the same person, a *linked pair* when
//! the linkage put them together. Pairs are unordered and each is counted once; a pair is
//! *cross-entity* when its records belong to different entities and *within-entity* (a
//! duplicate) otherwise. Cluster figures are counted combinatorially (a cluster of k records
//! holds k(k−1)/2 pairs), never by enumerating pairs, so a runaway cluster cannot blow up the
//! count.

use std::collections::HashMap;

use crate::evaluation::{Scores, ThresholdPoint};

/// The match-probability thresholds of the precision/recall curve.
pub const CURVE_THRESHOLDS: [f64; 20] =
    [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999];

/// One record as the counting sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// The entity (any number that is equal for records of the same entity).
    pub entity: u32,
    /// The true person.
    pub person: u64,
    /// The cluster the linkage put the record in.
    pub cluster: u64,
}

/// Scores of the three kinds of pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairScores {
    pub cross: Scores,
    pub within: Scores,
    pub all: Scores,
}

fn c2(k: u64) -> u64 {
    k * k.saturating_sub(1) / 2
}

fn sum_pairs<K>(counts: &HashMap<K, u64>) -> u64 {
    counts.values().map(|&k| c2(k)).sum()
}

/// Precision, recall and F1 of a clustering: a pair is linked when both records are in the same
/// cluster.
pub fn cluster_scores(members: &[Member]) -> PairScores {
    let mut cluster: HashMap<u64, u64> = HashMap::new();
    let mut cluster_entity: HashMap<(u64, u32), u64> = HashMap::new();
    let mut cluster_person: HashMap<(u64, u64), u64> = HashMap::new();
    let mut cluster_person_entity: HashMap<(u64, u64, u32), u64> = HashMap::new();
    let mut person: HashMap<u64, u64> = HashMap::new();
    let mut person_entity: HashMap<(u64, u32), u64> = HashMap::new();
    for m in members {
        *cluster.entry(m.cluster).or_default() += 1;
        *cluster_entity.entry((m.cluster, m.entity)).or_default() += 1;
        *cluster_person.entry((m.cluster, m.person)).or_default() += 1;
        *cluster_person_entity.entry((m.cluster, m.person, m.entity)).or_default() += 1;
        *person.entry(m.person).or_default() += 1;
        *person_entity.entry((m.person, m.entity)).or_default() += 1;
    }
    let (linked_all, linked_within) = (sum_pairs(&cluster), sum_pairs(&cluster_entity));
    let (correct_all, correct_within) = (sum_pairs(&cluster_person), sum_pairs(&cluster_person_entity));
    let (true_all, true_within) = (sum_pairs(&person), sum_pairs(&person_entity));
    PairScores {
        cross: Scores::from_counts(true_all - true_within, linked_all - linked_within, correct_all - correct_within),
        within: Scores::from_counts(true_within, linked_within, correct_within),
        all: Scores::from_counts(true_all, linked_all, correct_all),
    }
}

/// Scored pairs counted per threshold of [`CURVE_THRESHOLDS`]: how many reach it, and how many
/// of those are true. Counts only, so partial counts from parallel workers merge exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurveCounts {
    pub linked: [u64; CURVE_THRESHOLDS.len()],
    pub correct: [u64; CURVE_THRESHOLDS.len()],
}

impl Default for CurveCounts {
    fn default() -> Self {
        CurveCounts { linked: [0; CURVE_THRESHOLDS.len()], correct: [0; CURVE_THRESHOLDS.len()] }
    }
}

impl CurveCounts {
    /// Counts one scored pair of match probability `p`.
    pub fn add(&mut self, p: f64, is_true: bool) {
        for (k, t) in CURVE_THRESHOLDS.iter().enumerate() {
            if p >= *t {
                self.linked[k] += 1;
                self.correct[k] += u64::from(is_true);
            }
        }
    }

    pub fn merge(mut self, other: &CurveCounts) -> CurveCounts {
        for k in 0..CURVE_THRESHOLDS.len() {
            self.linked[k] += other.linked[k];
            self.correct[k] += other.correct[k];
        }
        self
    }

    /// The curve, for `true_pairs` true pairs in all (those never scored count as missed).
    pub fn points(&self, true_pairs: u64) -> Vec<ThresholdPoint> {
        CURVE_THRESHOLDS
            .iter()
            .enumerate()
            .map(|(k, &threshold)| {
                let s = Scores::from_counts(true_pairs, self.linked[k], self.correct[k]);
                ThresholdPoint { threshold, precision: s.precision, recall: s.recall }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(entity: u32, person: u64, cluster: u64) -> Member {
        Member { entity, person, cluster }
    }

    #[test]
    fn cluster_scores_count_cross_and_within_pairs() {
        // Records a..f. Person 1 at entities 0 (a), 1 (b) and 1 again (c, a duplicate); person 2
        // at entity 0 (d); person 3 at entities 0 (e) and 2 (f), split.
        // Clusters: {a, b, d} (a false link to person 2), {c}, {e}, {f}.
        let members = [m(0, 1, 10), m(1, 1, 10), m(1, 1, 11), m(0, 2, 10), m(0, 3, 12), m(2, 3, 13)];
        let s = cluster_scores(&members);
        // Truth: cross (a,b) (a,c) (e,f) = 3; within (b,c) = 1.
        // Linked: cluster 10 holds (a,b) cross ✓, (a,d) within ✗, (b,d) cross ✗.
        assert_eq!((s.cross.true_pairs, s.cross.linked_pairs, s.cross.correct_pairs), (3, 2, 1));
        assert_eq!((s.within.true_pairs, s.within.linked_pairs, s.within.correct_pairs), (1, 1, 0));
        assert_eq!((s.all.true_pairs, s.all.linked_pairs, s.all.correct_pairs), (4, 3, 1));
        assert!((s.cross.precision - 0.5).abs() < 1e-12);
        assert!((s.cross.recall - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.cross.f1 - 0.4).abs() < 1e-12);
        assert_eq!(s.within.f1, 0.0);
    }

    #[test]
    fn a_perfect_clustering_scores_one_and_singletons_link_nothing() {
        let perfect = [m(0, 1, 1), m(1, 1, 1), m(1, 1, 1), m(0, 2, 2)];
        let s = cluster_scores(&perfect);
        assert_eq!((s.all.precision, s.all.recall, s.all.f1), (1.0, 1.0, 1.0));
        let alone = [m(0, 1, 1), m(1, 1, 2), m(0, 2, 3)];
        let s = cluster_scores(&alone);
        // Nothing linked: precision is 1 by convention, recall 0.
        assert_eq!((s.cross.linked_pairs, s.cross.precision, s.cross.recall, s.cross.f1), (0, 1.0, 0.0, 0.0));
        // No within-entity truth and nothing linked there: both ratios are 1.
        assert_eq!((s.within.true_pairs, s.within.precision, s.within.recall), (0, 1.0, 1.0));
    }

    #[test]
    fn curve_counts_pairs_at_or_above_each_threshold() {
        let mut a = CurveCounts::default();
        a.add(0.999, true);
        a.add(0.95, false);
        let mut b = CurveCounts::default();
        b.add(0.5, true);
        b.add(0.01, true); // below every threshold: never linked
        let c = a.merge(&b);
        // Four true pairs in all: one was never even scored.
        let points = c.points(4);
        assert_eq!(points.len(), CURVE_THRESHOLDS.len());
        let at = |t: f64| points.iter().find(|p| p.threshold == t).unwrap();
        // At 0.5: three linked (0.999 ✓, 0.95 ✗, 0.5 ✓).
        assert!((at(0.5).precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((at(0.5).recall - 0.5).abs() < 1e-12);
        // At 0.95: 0.999 ✓ and 0.95 ✗ (the threshold itself counts).
        assert!((at(0.95).precision - 0.5).abs() < 1e-12);
        assert!((at(0.95).recall - 0.25).abs() < 1e-12);
        // At 0.999: one, right.
        assert_eq!((at(0.999).precision, at(0.999).recall), (1.0, 0.25));
        // Recall never rises with the threshold.
        assert!(points.windows(2).all(|w| w[1].recall <= w[0].recall));
    }
}
