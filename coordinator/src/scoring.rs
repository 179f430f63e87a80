//! Fellegi–Sunter scoring: a calibrated match probability for a pair of encodings, and a band.
//!
//! A pair is described by its *comparison vector*: one level per comparison of the model —
//! the CLK's Dice coefficient cut into levels, optionally the Dice of a field-level filter both
//! sides carry, and one level per exact-token kind (agree / disagree / missing). Each level has an
//! m-probability (how often a true match shows it) and a u-probability (how often a non-match
//! does); the pair's match weight is `Σ log2(m/u)`, and with the prior `λ` (the share of pairs
//! that match) it becomes a probability, `1 / (1 + 2^−(log2(λ/(1−λ)) + weight))`, which the
//! band thresholds cut into certain / probable / possible / none.
//!
//! Why this and not hand-written rules: every piece of evidence is weighed by how often it occurs
//! among matches and among non-matches of the federation's own data. A codice fiscale that
//! disagrees while the identities are near-identical is the textbook conflict — omocodes are
//! different people with identical names and dates, a relative's CF typed into the wrong record
//! is the same person — and the model settles it by the rates it has learned (disagreeing CFs are
//! rare among matches, near-identical filters are rare among non-matches), which puts such pairs
//! in "possible", to be verified, unless the data say otherwise.
//!
//! Guarantees:
//! - **Missing is never agreement.** A comparison one side cannot make has its own level, and a
//!   model whose missing level weighs more than its agreeing level is refused by
//!   [`FsModel::check`]; estimation keeps that order ([`pool_monotone`]).
//! - **Monotone.** In a checked model more agreement never lowers the weight: Dice levels weigh
//!   no less than the levels below them, and agree ≥ missing ≥ disagree for tokens.
//! - **Pure and deterministic.** Scoring is arithmetic over the model; estimation iterates over
//!   pattern counts in sorted order.
//!
//! Known limit of conditional independence: a codice fiscale typed into a relative's record
//! agrees with the relative's own, and relatives' filters are alike (surname, birthplace), so
//! such pairs score "probable" even at Dice 0.3 — neither the shipped model nor EM can tell them
//! from a true match with a badly damaged identity, because the data hold almost none of either.
//! On the demo federation this is most of the false strong links (≈ 15 pairs in 6,000 records).
//!
//! The shipped model is `coordinator/params/default-fs.toml` ([`FsModel::default_model`]).
//! [`reestimate`] fits u and m to a federation's own encodings (u from all pairs — blocked
//! candidates enumerated, the rest by a random sample — and m and λ by EM on the candidates,
//! Splink's approach), and [`compare_models`] lists what changed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use ponte_proto::bits::dice_words;
use ponte_proto::v1::TokenKind;
use serde::{Deserialize, Serialize};

use crate::linker::Band;
use crate::model::Token;

/// The shipped model.
pub const DEFAULT_MODEL_TOML: &str = include_str!("../params/default-fs.toml");

/// Largest model file accepted.
pub const MAX_MODEL_BYTES: usize = 64 * 1024;
/// Most comparisons in a model.
pub const MAX_COMPARISONS: usize = 16;
/// Most levels in one comparison.
pub const MAX_LEVELS: usize = 32;
/// Smallest m or u accepted, and the floor estimation keeps: weights stay finite.
pub const MIN_PROBABILITY: f64 = 1e-12;

/// What a comparison looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComparisonKind {
    /// Dice of the record-level filters, cut at `thresholds` (levels: ≥ t₀, ≥ t₁, …, lower).
    ClkDice,
    /// Dice of the field-level filters of `field`, cut at `thresholds`, plus a last level for
    /// "one or both sides lack this field filter".
    FieldDice,
    /// Exact tokens of kind `token`: levels agree (some value in common), disagree (both have
    /// the kind, no value in common), missing (one or both lack it).
    Token,
}

/// One comparison and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    pub name: String,
    pub kind: ComparisonKind,
    /// The field of a `field_dice` comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The token kind of a `token` comparison, as in the linkage schema (`codice_fiscale`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Strictly decreasing Dice cut points of a Dice comparison.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<f64>,
    /// Token comparisons only: among matches where both sides carry this kind, the share whose
    /// values differ. When set, estimation keeps this share and learns only how often both sides
    /// carry the kind. For the codice fiscale it must be stated, not learned: a pair with
    /// disagreeing CFs and identical filters looks the same whether it is one person with a
    /// wrong CF in one record or two omocodes, so EM can push such pairs either way and slowly
    /// talks itself into "never a match" (measured: 1 % → 0.2 % over three re-estimations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m_disagree_share: Option<f64>,
    /// P(level | match), one per level, summing to 1.
    pub m: Vec<f64>,
    /// P(level | non-match), one per level, summing to 1.
    pub u: Vec<f64>,
}

/// Level indices of a token comparison.
pub const TOKEN_AGREE: u8 = 0;
pub const TOKEN_DISAGREE: u8 = 1;
pub const TOKEN_MISSING: u8 = 2;

impl Comparison {
    /// Number of levels.
    pub fn levels(&self) -> usize {
        match self.kind {
            ComparisonKind::ClkDice => self.thresholds.len() + 1,
            ComparisonKind::FieldDice => self.thresholds.len() + 2,
            ComparisonKind::Token => 3,
        }
    }

    /// The level meaning "cannot be compared", if the comparison has one.
    pub fn missing_level(&self) -> Option<usize> {
        match self.kind {
            ComparisonKind::ClkDice => None,
            ComparisonKind::FieldDice => Some(self.thresholds.len() + 1),
            ComparisonKind::Token => Some(TOKEN_MISSING as usize),
        }
    }

    /// The comparable levels from most to least agreement (the missing level excluded).
    pub fn agreement_order(&self) -> Vec<usize> {
        match self.kind {
            ComparisonKind::ClkDice | ComparisonKind::FieldDice => (0..=self.thresholds.len()).collect(),
            ComparisonKind::Token => vec![TOKEN_AGREE as usize, TOKEN_DISAGREE as usize],
        }
    }

    /// A reader's name for `level` (`≥0.95`, `<0.70`, `agree`, `missing`).
    pub fn level_name(&self, level: usize) -> String {
        match self.kind {
            ComparisonKind::Token => ["agree", "disagree", "missing"].get(level).unwrap_or(&"?").to_string(),
            _ if Some(level) == self.missing_level() => "missing".into(),
            _ => match self.thresholds.get(level) {
                Some(t) => format!("≥{t:.2}"),
                None => format!("<{:.2}", self.thresholds.last().copied().unwrap_or(0.0)),
            },
        }
    }

    /// `log2(m/u)` of `level`.
    pub fn weight(&self, level: usize) -> f64 {
        (self.m[level] / self.u[level]).log2()
    }

    fn dice_level(&self, dice: f64) -> u8 {
        self.thresholds.iter().position(|t| dice >= *t).unwrap_or(self.thresholds.len()) as u8
    }

    fn token_kind(&self) -> Option<i32> {
        let name = self.token.as_deref()?;
        TokenKind::from_str_name(&name.to_ascii_uppercase()).map(|k| k as i32).filter(|k| *k != 0)
    }
}

/// Probability thresholds of the bands (a pair at or above `certain` is certain, …; below
/// `possible` it is no link).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandThresholds {
    pub certain: f64,
    pub probable: f64,
    pub possible: f64,
}

impl BandThresholds {
    /// The band of a probability: `None` below `possible`.
    pub fn band(&self, probability: f64) -> Option<Band> {
        if probability >= self.certain {
            Some(Band::Certain)
        } else if probability >= self.probable {
            Some(Band::Probable)
        } else if probability >= self.possible {
            Some(Band::Possible)
        } else {
            None
        }
    }
}

/// A Fellegi–Sunter model: the prior, the comparisons with their m and u, the band thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsModel {
    pub version: u32,
    /// λ: prior probability that a pair of records is a match, for a federation of
    /// `reference_records` records. It falls roughly as 1/records (each record has a handful of
    /// matches among ever more non-matches): [`FsModel::for_records`] rescales it.
    pub lambda: f64,
    pub reference_records: u64,
    pub bands: BandThresholds,
    pub comparisons: Vec<Comparison>,
}

/// One side of a pair, as the scorer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Encoded<'a> {
    /// The CLK as 64-bit words (`ponte_proto::bits::to_words`).
    pub clk: &'a [u64],
    pub tokens: &'a [Token],
    /// Field-level filters as words, by field name.
    pub fields: &'a [(String, Vec<u64>)],
}

/// A pair's comparison levels, one per comparison of the model, in the model's order.
pub type Levels = Vec<u8>;

/// A scored pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub levels: Levels,
    /// Σ log2(m/u), without the prior.
    pub weight: f64,
    pub probability: f64,
    pub band: Option<Band>,
}

impl FsModel {
    /// The shipped model (`coordinator/params/default-fs.toml`).
    pub fn default_model() -> FsModel {
        FsModel::parse(DEFAULT_MODEL_TOML).expect("the shipped model is valid (tested)")
    }

    /// Reads and checks a model file.
    pub fn parse(text: &str) -> Result<FsModel, String> {
        if text.len() > MAX_MODEL_BYTES {
            return Err(format!("the model file is {} bytes; at most {MAX_MODEL_BYTES}", text.len()));
        }
        let model: FsModel = toml::from_str(text).map_err(|e| format!("model file: {e}"))?;
        let problems = model.check();
        if problems.is_empty() { Ok(model) } else { Err(format!("model file: {}", problems.join("; "))) }
    }

    /// The model as TOML (what [`FsModel::parse`] reads).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a model always serialises")
    }

    /// Everything wrong with the model, each explained. Empty when it is usable.
    pub fn check(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.version != 1 {
            p.push(format!("version = {}: this coordinator reads version 1", self.version));
        }
        if !(self.lambda > 0.0 && self.lambda < 1.0) {
            p.push(format!("lambda = {}: must be between 0 and 1", self.lambda));
        }
        if self.reference_records < 2 {
            p.push(format!("reference_records = {}: at least 2", self.reference_records));
        }
        let b = self.bands;
        if !(0.0 < b.possible && b.possible <= b.probable && b.probable <= b.certain && b.certain < 1.0) {
            p.push(format!(
                "bands: need 0 < possible ≤ probable ≤ certain < 1; got {} / {} / {}",
                b.possible, b.probable, b.certain
            ));
        }
        if self.comparisons.is_empty() || self.comparisons.len() > MAX_COMPARISONS {
            p.push(format!("{} comparisons: 1 to {MAX_COMPARISONS}", self.comparisons.len()));
        }
        for (i, c) in self.comparisons.iter().enumerate() {
            let at = format!("comparisons[{i}] ({})", c.name);
            if self.comparisons[..i].iter().any(|o| o.name == c.name) {
                p.push(format!("{at}: name used twice"));
            }
            match c.kind {
                ComparisonKind::ClkDice | ComparisonKind::FieldDice => {
                    let t = &c.thresholds;
                    if t.is_empty() || !t.windows(2).all(|w| w[0] > w[1]) || !t.iter().all(|x| (0.0..=1.0).contains(x)) {
                        p.push(format!("{at}: thresholds must be strictly decreasing values in [0, 1]"));
                    }
                    if (c.kind == ComparisonKind::FieldDice) != c.field.is_some() {
                        p.push(format!("{at}: `field` is required for field_dice and only there"));
                    }
                    if c.token.is_some() || c.m_disagree_share.is_some() {
                        p.push(format!("{at}: `token` and `m_disagree_share` belong to token comparisons"));
                    }
                }
                ComparisonKind::Token => {
                    if let Some(r) = c.m_disagree_share {
                        if !(r > 0.0 && r < 1.0) {
                            p.push(format!("{at}: m_disagree_share = {r}: must be between 0 and 1"));
                        } else if c.m.len() == 3 {
                            let both = c.m[TOKEN_AGREE as usize] + c.m[TOKEN_DISAGREE as usize];
                            if (c.m[TOKEN_DISAGREE as usize] - r * both).abs() > 1e-3 * both.max(1e-9) + 1e-12 {
                                p.push(format!("{at}: m disagrees with m_disagree_share = {r}"));
                            }
                        }
                    }
                    if c.token_kind().is_none() {
                        p.push(format!("{at}: token = {:?} is not a known token kind", c.token));
                    }
                    if !c.thresholds.is_empty() || c.field.is_some() {
                        p.push(format!("{at}: thresholds and field belong to Dice comparisons"));
                    }
                }
            }
            let n = c.levels();
            if n > MAX_LEVELS || c.m.len() != n || c.u.len() != n {
                p.push(format!("{at}: {n} levels (at most {MAX_LEVELS}) need as many m and u; got {} and {}", c.m.len(), c.u.len()));
                continue;
            }
            for (name, v) in [("m", &c.m), ("u", &c.u)] {
                if !v.iter().all(|x| (MIN_PROBABILITY..=1.0).contains(x)) {
                    p.push(format!("{at}: every {name} must be in [{MIN_PROBABILITY:e}, 1]"));
                } else if (v.iter().sum::<f64>() - 1.0).abs() > 1e-3 {
                    p.push(format!("{at}: {name} sums to {}, not 1", v.iter().sum::<f64>()));
                }
            }
            if p.iter().any(|x| x.starts_with(&at)) {
                continue;
            }
            let order = c.agreement_order();
            for w in order.windows(2) {
                if c.weight(w[0]) < c.weight(w[1]) - 1e-9 {
                    p.push(format!(
                        "{at}: level {} weighs less than level {} below it ({:.2} < {:.2}): more agreement must never count less",
                        c.level_name(w[0]),
                        c.level_name(w[1]),
                        c.weight(w[0]),
                        c.weight(w[1])
                    ));
                }
            }
            if let Some(miss) = c.missing_level()
                && c.weight(miss) > c.weight(order[0]) + 1e-9
            {
                p.push(format!("{at}: missing weighs more than {}: missing is never agreement", c.level_name(order[0])));
            }
        }
        p
    }

    /// The same model for a federation of `records` records: λ scaled by
    /// `(reference_records − 1) / (records − 1)`.
    pub fn for_records(&self, records: u64) -> FsModel {
        let mut m = self.clone();
        let records = records.max(2);
        m.lambda = (self.lambda * (self.reference_records - 1) as f64 / (records - 1) as f64).clamp(1e-15, 0.5);
        m.reference_records = records;
        m
    }

    /// The comparison levels of a pair.
    pub fn compare(&self, a: &Encoded, b: &Encoded) -> Levels {
        let mut out = Vec::with_capacity(self.comparisons.len());
        let mut clk_dice = None;
        for c in &self.comparisons {
            let level = match c.kind {
                ComparisonKind::ClkDice => {
                    let d = *clk_dice.get_or_insert_with(|| dice_words(a.clk, b.clk));
                    c.dice_level(d)
                }
                ComparisonKind::FieldDice => {
                    let field = c.field.as_deref().unwrap_or_default();
                    match (field_words(a, field), field_words(b, field)) {
                        (Some(x), Some(y)) if x.len() == y.len() => c.dice_level(dice_words(x, y)),
                        _ => c.missing_level().unwrap_or_default() as u8,
                    }
                }
                ComparisonKind::Token => {
                    let kind = c.token_kind().unwrap_or(-1);
                    let mine = || a.tokens.iter().filter(|t| t.kind == kind);
                    let theirs = || b.tokens.iter().filter(|t| t.kind == kind);
                    if mine().next().is_none() || theirs().next().is_none() {
                        TOKEN_MISSING
                    } else if mine().any(|x| theirs().any(|y| x.value == y.value)) {
                        TOKEN_AGREE
                    } else {
                        TOKEN_DISAGREE
                    }
                }
            };
            out.push(level);
        }
        out
    }

    /// `log2(λ / (1 − λ))`: the weight of the prior.
    pub fn prior_weight(&self) -> f64 {
        (self.lambda / (1.0 - self.lambda)).log2()
    }

    /// Σ log2(m/u) over the comparisons (without the prior). Callers pass levels made by
    /// [`FsModel::compare`] of this model.
    pub fn match_weight(&self, levels: &[u8]) -> f64 {
        self.comparisons.iter().zip(levels).map(|(c, &l)| c.weight(l as usize)).sum()
    }

    /// P(match | levels).
    pub fn match_probability(&self, levels: &[u8]) -> f64 {
        probability_of_weight(self.prior_weight() + self.match_weight(levels))
    }

    /// The band of a probability: `None` below `bands.possible`.
    pub fn band(&self, probability: f64) -> Option<Band> {
        self.bands.band(probability)
    }

    /// Compares and scores a pair.
    pub fn score(&self, a: &Encoded, b: &Encoded) -> Scored {
        let levels = self.compare(a, b);
        let weight = self.match_weight(&levels);
        let probability = probability_of_weight(self.prior_weight() + weight);
        Scored { levels, weight, probability, band: self.band(probability) }
    }
}

/// The model as the live linker applies it: CLK Dice plus exact tokens in
/// [`crate::blocking::compact_token`] form, the prior set for a federation size, every weight
/// precomputed. The coordinator does not keep field-level filters, so a `field_dice` comparison
/// always takes its missing level here.
#[derive(Debug, Clone)]
pub struct CompactScorer {
    /// Prior weight plus the fixed weights (field comparisons at their missing level).
    base: f64,
    /// (thresholds, weight per level) of each CLK comparison.
    clk: Vec<(Vec<f64>, Vec<f64>)>,
    /// (token kind, weights of agree / disagree / missing) of each token comparison.
    tokens: Vec<(i32, [f64; 3])>,
    bands: BandThresholds,
}

impl FsModel {
    /// The scorer for a federation of `records` records (λ rescaled by [`FsModel::for_records`]).
    pub fn compact_scorer(&self, records: u64) -> CompactScorer {
        let m = self.for_records(records);
        let mut base = m.prior_weight();
        let mut clk = Vec::new();
        let mut tokens = Vec::new();
        for c in &m.comparisons {
            match c.kind {
                ComparisonKind::ClkDice => {
                    clk.push((c.thresholds.clone(), (0..c.levels()).map(|l| c.weight(l)).collect()));
                }
                ComparisonKind::FieldDice => base += c.weight(c.missing_level().unwrap_or_default()),
                ComparisonKind::Token => {
                    let w = [c.weight(0), c.weight(1), c.weight(2)];
                    tokens.push((c.token_kind().unwrap_or(-1), w));
                }
            }
        }
        CompactScorer { base, clk, tokens, bands: m.bands }
    }
}

impl CompactScorer {
    /// P(match) of a pair with CLK Dice `dice` and these compact tokens.
    pub fn probability(&self, dice: f64, a: &[u64], b: &[u64]) -> f64 {
        let mut w = self.base;
        for (thresholds, weights) in &self.clk {
            w += weights[thresholds.iter().position(|t| dice >= *t).unwrap_or(thresholds.len())];
        }
        for (kind, weights) in &self.tokens {
            let of = |x: &u64| crate::blocking::compact_kind(*x) == *kind;
            let level = if !a.iter().any(of) || !b.iter().any(of) {
                TOKEN_MISSING
            } else if a.iter().filter(|x| of(x)).any(|x| b.contains(x)) {
                TOKEN_AGREE
            } else {
                TOKEN_DISAGREE
            };
            w += weights[level as usize];
        }
        probability_of_weight(w)
    }

    /// The band of a pair (`None`: no link).
    pub fn band(&self, dice: f64, a: &[u64], b: &[u64]) -> Option<Band> {
        self.bands.band(self.probability(dice, a, b))
    }

    /// The least CLK Dice at which a pair sharing no exact token can still reach "possible":
    /// below it, blocking candidates need not be scored. Exact: every pair at or above it with
    /// no agreeing token is scored, and no pair below it can reach the band. `None`: without an
    /// agreeing token no pair can.
    pub fn min_dice_without_token_agreement(&self) -> Option<f32> {
        let target = (self.bands.possible / (1.0 - self.bands.possible)).log2();
        let mut best_rest = self.base;
        for (_, w) in &self.tokens {
            best_rest += w[TOKEN_DISAGREE as usize].max(w[TOKEN_MISSING as usize]);
        }
        let Some(((thresholds, weights), others)) = self.clk.split_first() else { return Some(0.0) };
        best_rest += others.iter().map(|(_, w)| w.iter().copied().fold(f64::MIN, f64::max)).sum::<f64>();
        // The lowest level whose weight still reaches the target; levels are monotone, so every
        // level above it reaches it too.
        let mut cut = None;
        for (level, w) in weights.iter().enumerate() {
            if best_rest + w >= target {
                cut = Some(level);
            }
        }
        let l = cut?;
        if l == thresholds.len() {
            return Some(0.0);
        }
        let t = thresholds[l];
        let f = t as f32;
        Some(if f64::from(f) > t { f.next_down() } else { f })
    }
}

/// The words of `e`'s field filter for `field`, unless it lacks one or it is empty.
fn field_words<'a>(e: &Encoded<'a>, field: &str) -> Option<&'a [u64]> {
    e.fields.iter().find(|(n, w)| n == field && w.iter().any(|x| *x != 0)).map(|f| f.1.as_slice())
}

fn probability_of_weight(w: f64) -> f64 {
    1.0 / (1.0 + (-w).exp2())
}

// ---------------------------------------------------------------------------------------------
// Estimation

/// Pairs summarised by comparison vector: pattern → how many pairs it stands for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatternCounts {
    counts: HashMap<Levels, f64>,
    pairs: f64,
}

impl PatternCounts {
    pub fn new() -> PatternCounts {
        PatternCounts::default()
    }

    /// Counts one pair with these levels.
    pub fn add(&mut self, levels: Levels) {
        self.add_weighted(levels, 1.0);
    }

    pub fn add_weighted(&mut self, levels: Levels, weight: f64) {
        *self.counts.entry(levels).or_insert(0.0) += weight;
        self.pairs += weight;
    }

    /// Pairs counted (sum of weights).
    pub fn pairs(&self) -> f64 {
        self.pairs
    }

    /// Distinct patterns.
    pub fn patterns(&self) -> usize {
        self.counts.len()
    }

    /// Patterns in sorted order, so sums are deterministic.
    fn sorted(&self) -> Vec<(&Levels, f64)> {
        let mut v: Vec<(&Levels, f64)> = self.counts.iter().map(|(k, c)| (k, *c)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}

/// What estimation learns from: every pair of the federation, the blocked candidates one by one
/// and the others through a random sample.
///
/// Blocking gathers nearly all matches and every non-match that looks like one, so the rare
/// levels (high Dice, agreeing tokens) are counted exactly among the candidates; the common
/// levels, seen among the millions of pairs blocking never proposes, come from the sample,
/// each sampled pair standing for `outside_pairs / outside.pairs()` pairs. (A plain random sample
/// of all pairs would almost never contain a pair at Dice ≥ 0.95 that is not a match, and would
/// get those u-probabilities wrong by orders of magnitude.)
#[derive(Debug, Clone, Default)]
pub struct TrainingData {
    /// The candidate pairs, each once.
    pub candidates: PatternCounts,
    /// A uniform random sample of the pairs that are not candidates.
    pub outside: PatternCounts,
    /// How many pairs are not candidates: all pairs minus the candidates.
    pub outside_pairs: f64,
}

impl TrainingData {
    /// (pattern, weight) of every pair class, in a deterministic order.
    fn weighted(&self) -> Vec<(&Levels, f64)> {
        let scale = if self.outside.pairs() > 0.0 { self.outside_pairs / self.outside.pairs() } else { 0.0 };
        let mut all: BTreeMap<&Levels, f64> = BTreeMap::new();
        for (k, c) in self.candidates.sorted() {
            *all.entry(k).or_insert(0.0) += c;
        }
        for (k, c) in self.outside.sorted() {
            *all.entry(k).or_insert(0.0) += c * scale;
        }
        all.into_iter().collect()
    }
}

/// How estimation runs and when it stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmOptions {
    /// `true` (Splink's approach, the default): u is estimated once, from all pairs weighted by
    /// their non-match probability under the starting model, then held fixed while EM iterates
    /// m and λ. `false`: u is re-estimated in every iteration too (full EM, the maximum-likelihood
    /// fit of the model). Full EM needs no good start for u, but the top Dice levels of pairs
    /// with no other evidence (no comparable token) are only weakly identified, so it drifts
    /// slowly there and needs many iterations.
    pub fix_u: bool,
    /// Most EM iterations.
    pub max_iterations: usize,
    /// Converged when, in one iteration, no m moves by more than `tolerance` (absolutely), and λ
    /// and — with full EM — no u by more than `tolerance` relatively.
    pub tolerance: f64,
    /// Pseudo-count (in pairs) added to every level of m and of u: levels never seen keep a
    /// small, finite weight.
    pub pseudo_count: f64,
    /// λ is kept within these bounds.
    pub lambda_bounds: (f64, f64),
}

impl Default for EmOptions {
    fn default() -> Self {
        EmOptions { fix_u: true, max_iterations: 10_000, tolerance: 1e-6, pseudo_count: 0.5, lambda_bounds: (1e-12, 0.5) }
    }
}

/// What an estimation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmReport {
    pub iterations: usize,
    /// Whether the tolerance was met before `max_iterations`.
    pub converged: bool,
    /// Expected number of matches among all pairs under the final model.
    pub expected_matches: f64,
}

/// ln Π m and ln Π u of a pattern.
fn pattern_log_likelihoods(model: &FsModel, levels: &[u8]) -> (f64, f64) {
    let (mut lm, mut lu) = (0.0f64, 0.0f64);
    for (c, &l) in model.comparisons.iter().zip(levels) {
        lm += c.m[l as usize].ln();
        lu += c.u[l as usize].ln();
    }
    (lm, lu)
}

/// Posterior P(match) of each weighted pattern under `model`.
fn posteriors(model: &FsModel, data: &[(&Levels, f64)]) -> Vec<f64> {
    let prior = (model.lambda / (1.0 - model.lambda)).ln();
    data.iter()
        .map(|(levels, _)| {
            let (lm, lu) = pattern_log_likelihoods(model, levels);
            1.0 / (1.0 + (lu - lm - prior).exp())
        })
        .collect()
}

/// Turns counts per level into probabilities with the pseudo-count, floored.
fn normalise(counts: &[f64], pseudo: f64) -> Vec<f64> {
    let total: f64 = counts.iter().sum::<f64>() + pseudo * counts.len() as f64;
    counts.iter().map(|c| ((c + pseudo) / total).max(MIN_PROBABILITY)).collect()
}

/// Makes a comparison's weights monotone in agreement (pool adjacent violators on m/u along the
/// agreement order, pooling m and u so their sums are kept), then keeps the missing level's
/// weight between the lowest and the highest comparable level.
pub fn pool_monotone(c: &mut Comparison) {
    let order = c.agreement_order();
    // Blocks of consecutive levels (in agreement order) sharing one ratio: (levels, Σm, Σu).
    let mut blocks: Vec<(Vec<usize>, f64, f64)> = Vec::new();
    for &l in &order {
        blocks.push((vec![l], c.m[l], c.u[l]));
        while blocks.len() >= 2 {
            let n = blocks.len();
            if blocks[n - 2].1 / blocks[n - 2].2 >= blocks[n - 1].1 / blocks[n - 1].2 {
                break;
            }
            let (low, lm, lu) = blocks.pop().expect("two blocks");
            let last = blocks.last_mut().expect("two blocks");
            last.0.extend(low);
            last.1 += lm;
            last.2 += lu;
        }
    }
    for (levels, bm, bu) in &blocks {
        if levels.len() > 1 {
            let ratio = bm / bu;
            for &l in levels {
                c.m[l] = ratio * c.u[l];
            }
        }
    }
    if let Some(miss) = c.missing_level() {
        let top = order[0];
        let bottom = *order.last().expect("at least one level");
        for bound in [top, bottom] {
            let violates = if bound == top { c.weight(miss) > c.weight(top) } else { c.weight(miss) < c.weight(bottom) };
            if violates {
                // Pool the missing level with the bound it crosses: both get the pooled ratio.
                let ratio = (c.m[miss] + c.m[bound]) / (c.u[miss] + c.u[bound]);
                c.m[miss] = ratio * c.u[miss];
                c.m[bound] = ratio * c.u[bound];
            }
        }
    }
}

/// One M-step from the posteriors: new m (and u, when asked) for every comparison, monotone.
fn m_step(model: &FsModel, weighted: &[(&Levels, f64)], post: &[f64], with_u: bool, opts: &EmOptions) -> FsModel {
    let mut next = model.clone();
    for (k, c) in next.comparisons.iter_mut().enumerate() {
        let mut for_m = vec![0.0; c.levels()];
        let mut for_u = vec![0.0; c.levels()];
        for ((levels, w), p) in weighted.iter().zip(post) {
            for_m[levels[k] as usize] += w * p;
            for_u[levels[k] as usize] += w * (1.0 - p);
        }
        c.m = normalise(&for_m, opts.pseudo_count);
        if let Some(r) = c.m_disagree_share {
            let both = c.m[TOKEN_AGREE as usize] + c.m[TOKEN_DISAGREE as usize];
            c.m[TOKEN_AGREE as usize] = both * (1.0 - r);
            c.m[TOKEN_DISAGREE as usize] = both * r;
        }
        if with_u {
            c.u = normalise(&for_u, opts.pseudo_count);
        }
        pool_monotone(c);
    }
    next
}

/// u of every comparison from all pairs, each weighted by its probability of being a non-match
/// under `model` (nearly 1 for the sampled outside pairs: there it is the plain random-pair
/// estimate; the candidates, where matches gather, count by their posterior). m and λ are kept.
pub fn estimate_u(model: &FsModel, data: &TrainingData, opts: &EmOptions) -> FsModel {
    let weighted = data.weighted();
    let post = posteriors(model, &weighted);
    let mut out = m_step(model, &weighted, &post, true, opts);
    for (c, old) in out.comparisons.iter_mut().zip(&model.comparisons) {
        c.m = old.m.clone();
        pool_monotone(c);
    }
    out
}

/// EM from `model`: m and λ — and u unless `opts.fix_u` — until converged. Returns the model,
/// the iterations and whether it converged.
pub fn em(model: &FsModel, data: &TrainingData, opts: &EmOptions) -> (FsModel, usize, bool) {
    let weighted = data.weighted();
    let total: f64 = weighted.iter().map(|(_, w)| w).sum();
    let mut current = model.clone();
    for it in 1..=opts.max_iterations {
        let post = posteriors(&current, &weighted);
        let mut next = m_step(&current, &weighted, &post, !opts.fix_u, opts);
        if total > 0.0 {
            let matches: f64 = weighted.iter().zip(&post).map(|((_, w), p)| w * p).sum();
            next.lambda = (matches / total).clamp(opts.lambda_bounds.0, opts.lambda_bounds.1);
        }
        let mut moved = ((next.lambda - current.lambda) / current.lambda).abs();
        for (a, b) in next.comparisons.iter().zip(&current.comparisons) {
            for l in 0..a.levels() {
                moved = moved.max((a.m[l] - b.m[l]).abs()).max((a.u[l] - b.u[l]).abs() / b.u[l]);
            }
        }
        current = next;
        if moved <= opts.tolerance {
            return (current, it, true);
        }
    }
    (current, opts.max_iterations, false)
}

/// Re-estimates `start` on a federation's own pairs, for a federation of `records` records:
/// with `opts.fix_u` (the default), u once from all pairs under `start` ([`estimate_u`]), then m
/// and λ by EM; otherwise full EM. Band thresholds are kept, and so are the parameters of a
/// comparison no pair can make (a token kind absent from the data). Start from the shipped
/// model, not from an earlier estimate: chained re-estimations drift where the data cannot
/// identify the parameters.
pub fn reestimate(start: &FsModel, data: &TrainingData, records: u64, opts: &EmOptions) -> (FsModel, EmReport) {
    let mut model = start.for_records(records);
    if opts.fix_u {
        model = estimate_u(&model, data, opts);
    }
    let (mut model, iterations, converged) = em(&model, data, opts);
    let weighted = data.weighted();
    // A comparison the data never make (a token kind no record of this federation carries)
    // keeps its starting parameters: pseudo-counts are not evidence.
    for (k, c) in model.comparisons.iter_mut().enumerate() {
        let comparable: f64 = weighted.iter().filter(|(l, _)| Some(l[k] as usize) != c.missing_level()).map(|(_, w)| w).sum();
        if comparable < 1.0 {
            let original = &start.comparisons[k];
            c.m = original.m.clone();
            c.u = original.u.clone();
        }
    }
    let post = posteriors(&model, &weighted);
    let expected_matches = weighted.iter().zip(&post).map(|((_, w), p)| w * p).sum();
    model.reference_records = records.max(2);
    (model, EmReport { iterations, converged, expected_matches })
}

// ---------------------------------------------------------------------------------------------
// What changed

/// One level whose parameters differ between two models.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelChange {
    pub comparison: String,
    pub level: String,
    pub m: (f64, f64),
    pub u: (f64, f64),
    /// log2(m/u), before and after.
    pub weight: (f64, f64),
}

/// What changed from one model to another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelDiff {
    pub lambda: (f64, f64),
    /// Levels whose weight moved by at least the asked amount, largest move first.
    pub levels: Vec<LevelChange>,
    /// Comparisons present in only one of the models.
    pub only_before: Vec<String>,
    pub only_after: Vec<String>,
}

/// Lists the levels whose weight moved by at least `min_weight_change` bits between `before`
/// and `after` (comparisons matched by name, levels by index), and the change of λ.
pub fn compare_models(before: &FsModel, after: &FsModel, min_weight_change: f64) -> ModelDiff {
    let mut levels = Vec::new();
    for a in &before.comparisons {
        let Some(b) = after.comparisons.iter().find(|b| b.name == a.name) else { continue };
        for l in 0..a.levels().min(b.levels()) {
            let (wa, wb) = (a.weight(l), b.weight(l));
            if (wa - wb).abs() >= min_weight_change {
                levels.push(LevelChange {
                    comparison: a.name.clone(),
                    level: a.level_name(l),
                    m: (a.m[l], b.m[l]),
                    u: (a.u[l], b.u[l]),
                    weight: (wa, wb),
                });
            }
        }
    }
    levels.sort_by(|x, y| {
        let dx = (x.weight.0 - x.weight.1).abs();
        let dy = (y.weight.0 - y.weight.1).abs();
        dy.total_cmp(&dx).then_with(|| (&x.comparison, &x.level).cmp(&(&y.comparison, &y.level)))
    });
    let names = |m: &FsModel| m.comparisons.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    let (na, nb) = (names(before), names(after));
    ModelDiff {
        lambda: (before.lambda, after.lambda),
        levels,
        only_before: na.iter().filter(|n| !nb.contains(n)).cloned().collect(),
        only_after: nb.iter().filter(|n| !na.contains(n)).cloned().collect(),
    }
}

impl fmt::Display for ModelDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "prior λ: {:.3e} → {:.3e}", self.lambda.0, self.lambda.1)?;
        for c in &self.levels {
            writeln!(
                f,
                "{} {}: weight {:+.2} → {:+.2} (m {:.4} → {:.4}, u {:.3e} → {:.3e})",
                c.comparison, c.level, c.weight.0, c.weight.1, c.m.0, c.m.1, c.u.0, c.u.1
            )?;
        }
        for n in &self.only_before {
            writeln!(f, "{n}: only in the first model")?;
        }
        for n in &self.only_after {
            writeln!(f, "{n}: only in the second model")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn unit(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }
        fn pick(&mut self, p: &[f64]) -> u8 {
            let mut x = self.unit();
            for (i, w) in p.iter().enumerate() {
                if x < *w {
                    return i as u8;
                }
                x -= w;
            }
            (p.len() - 1) as u8
        }
    }

    fn tok(kind: TokenKind, v: u8) -> Token {
        Token { kind: kind as i32, value: [v; 32] }
    }

    /// A known model: a Dice comparison with 4 levels and two token comparisons.
    fn known() -> FsModel {
        FsModel {
            version: 1,
            lambda: 0.02,
            reference_records: 1000,
            bands: BandThresholds { certain: 0.999, probable: 0.9, possible: 0.3 },
            comparisons: vec![
                Comparison {
                    name: "clk".into(),
                    kind: ComparisonKind::ClkDice,
                    field: None,
                    token: None,
                    thresholds: vec![0.9, 0.8, 0.6],
                    m_disagree_share: None,
                    m: vec![0.70, 0.20, 0.07, 0.03],
                    u: vec![0.001, 0.009, 0.09, 0.90],
                },
                Comparison {
                    name: "cf".into(),
                    kind: ComparisonKind::Token,
                    field: None,
                    token: Some("codice_fiscale".into()),
                    thresholds: vec![],
                    m_disagree_share: None,
                    m: vec![0.80, 0.02, 0.18],
                    u: vec![0.0005, 0.7995, 0.2],
                },
                Comparison {
                    name: "stp".into(),
                    kind: ComparisonKind::Token,
                    field: None,
                    token: Some("stp".into()),
                    thresholds: vec![],
                    m_disagree_share: None,
                    m: vec![0.10, 0.01, 0.89],
                    u: vec![0.001, 0.099, 0.90],
                },
            ],
        }
    }

    fn simulate(model: &FsModel, pairs: usize, seed: u64) -> Vec<(Levels, bool)> {
        let mut rng = Rng(seed);
        (0..pairs)
            .map(|_| {
                let is_match = rng.unit() < model.lambda;
                let levels = model.comparisons.iter().map(|c| rng.pick(if is_match { &c.m } else { &c.u })).collect();
                (levels, is_match)
            })
            .collect()
    }

    fn perturbed_start(model: &FsModel) -> FsModel {
        let mut start = model.clone();
        start.lambda = 0.005;
        for c in &mut start.comparisons {
            let n = c.levels() as f64;
            // Halfway to uniform: a poor but sensible starting point.
            c.m = c.m.iter().map(|x| 0.5 * x + 0.5 / n).collect();
            c.u = c.u.iter().map(|x| 0.5 * x + 0.5 / n).collect();
            pool_monotone(c);
        }
        start
    }

    fn assert_close(got: &FsModel, want: &FsModel, tol: f64) {
        assert!((got.lambda - want.lambda).abs() < want.lambda * 0.1, "λ {} vs {}", got.lambda, want.lambda);
        for (g, w) in got.comparisons.iter().zip(&want.comparisons) {
            for l in 0..w.levels() {
                assert!((g.m[l] - w.m[l]).abs() < tol, "{} m[{l}]: {} vs {}", w.name, g.m[l], w.m[l]);
                assert!((g.u[l] - w.u[l]).abs() < tol.max(w.u[l] * 0.2), "{} u[{l}]: {} vs {}", w.name, g.u[l], w.u[l]);
            }
        }
    }

    #[test]
    fn the_compact_scorer_agrees_with_the_model_and_its_screen_is_exact() {
        use crate::blocking::compact_token;
        for model in [known(), FsModel::default_model()] {
            let scorer = model.compact_scorer(model.reference_records);
            let clk_a = [0xffu64; 16];
            let sets: Vec<Vec<Token>> = vec![
                vec![],
                vec![tok(TokenKind::CodiceFiscale, 1)],
                vec![tok(TokenKind::CodiceFiscale, 2)],
                vec![tok(TokenKind::CodiceFiscale, 1), tok(TokenKind::Stp, 5)],
                vec![tok(TokenKind::Stp, 5)],
            ];
            for ta in &sets {
                for tb in &sets {
                    for dice in [1.0, 0.97, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.3, 0.0] {
                        let levels = {
                            let a = Encoded { clk: &clk_a, tokens: ta, fields: &[] };
                            let b = Encoded { clk: &clk_a, tokens: tb, fields: &[] };
                            let mut l = model.compare(&a, &b);
                            let clk_pos = model.comparisons.iter().position(|c| c.kind == ComparisonKind::ClkDice).unwrap();
                            l[clk_pos] = model.comparisons[clk_pos].dice_level(dice);
                            l
                        };
                        let want = model.match_probability(&levels);
                        let ca: Vec<u64> = ta.iter().map(compact_token).collect();
                        let cb: Vec<u64> = tb.iter().map(compact_token).collect();
                        let got = scorer.probability(dice, &ca, &cb);
                        assert!((got - want).abs() < 1e-9, "dice {dice} {ta:?} {tb:?}: {got} vs {want}");
                        // The screen: no pair without an agreeing token below it reaches a band.
                        let agree = ca.iter().any(|x| cb.contains(x));
                        if !agree && scorer.band(dice, &ca, &cb).is_some() {
                            let t = scorer.min_dice_without_token_agreement().expect("a band is reachable");
                            assert!(dice >= f64::from(t), "dice {dice} reaches a band below the screen {t}");
                        }
                    }
                }
            }
        }
        // The shipped model screens at a Dice a reader would expect for ~6,000 records.
        let t = FsModel::default_model().compact_scorer(5896).min_dice_without_token_agreement().unwrap();
        assert!((0.6..0.95).contains(&t), "{t}");
    }

    #[test]
    fn the_shipped_model_is_valid() {
        let m = FsModel::default_model();
        assert!(m.check().is_empty(), "{:?}", m.check());
        assert!(m.comparisons.iter().any(|c| c.kind == ComparisonKind::ClkDice));
        assert_eq!(FsModel::parse(&m.to_toml()).unwrap(), m);
    }

    #[test]
    fn full_em_recovers_a_known_model_from_all_pairs_and_a_poor_start() {
        let truth = known();
        let mut data = TrainingData::default();
        for (levels, _) in simulate(&truth, 400_000, 11) {
            data.candidates.add(levels);
        }
        let opts = EmOptions { fix_u: false, ..Default::default() };
        let (got, report) = reestimate(&perturbed_start(&truth), &data, 1000, &opts);
        assert!(report.converged, "{report:?}");
        assert_close(&got, &truth, 0.02);
    }

    #[test]
    fn a_comparison_the_data_never_make_keeps_its_parameters() {
        let truth = known();
        let mut data = TrainingData::default();
        for (mut levels, _) in simulate(&truth, 50_000, 4) {
            levels[2] = TOKEN_MISSING; // nobody carries an STP code here
            data.candidates.add(levels);
        }
        let (got, _) = reestimate(&truth, &data, 1000, &EmOptions::default());
        assert_eq!((&got.comparisons[2].m, &got.comparisons[2].u), (&truth.comparisons[2].m, &truth.comparisons[2].u));
        assert_ne!(got.comparisons[0].m, truth.comparisons[0].m);
    }

    #[test]
    fn em_with_u_fixed_recovers_m_from_blocked_pairs_and_a_sample_of_the_rest() {
        // Blocking keeps pairs at the two top Dice levels or with an agreeing CF; the others
        // are known only through a 5 % sample. The start has m halfway to uniform and u off by
        // up to 30 %: u is re-estimated once under it, then fixed.
        let mut truth = known();
        truth.lambda = 0.005;
        let mut data = TrainingData::default();
        let mut rng = Rng(5);
        for (levels, _) in simulate(&truth, 1_000_000, 12) {
            if levels[0] <= 1 || levels[1] == TOKEN_AGREE {
                data.candidates.add(levels);
            } else {
                data.outside_pairs += 1.0;
                if rng.unit() < 0.05 {
                    data.outside.add(levels);
                }
            }
        }
        let mut start = perturbed_start(&truth);
        for (c, t) in start.comparisons.iter_mut().zip(&truth.comparisons) {
            let skewed: Vec<f64> = t.u.iter().enumerate().map(|(i, u)| u * if i % 2 == 0 { 1.3 } else { 0.7 }).collect();
            let total: f64 = skewed.iter().sum();
            c.u = skewed.iter().map(|u| u / total).collect();
            pool_monotone(c);
        }
        let (got, report) = reestimate(&start, &data, 1000, &EmOptions::default());
        assert!(report.converged, "{report:?}");
        assert_close(&got, &truth, 0.02);
    }

    fn all_level_vectors(model: &FsModel) -> Vec<Levels> {
        let mut out: Vec<Levels> = vec![vec![]];
        for c in &model.comparisons {
            out = out.into_iter().flat_map(|v| (0..c.levels() as u8).map(move |l| [v.clone(), vec![l]].concat())).collect();
        }
        out
    }

    #[test]
    fn probabilities_are_monotone_in_agreement() {
        let truth = known();
        let mut data = TrainingData::default();
        for (levels, _) in simulate(&truth, 100_000, 3) {
            data.candidates.add(levels);
        }
        let (estimated, _) = reestimate(&truth, &data, 1000, &EmOptions::default());
        for model in [FsModel::default_model(), truth, estimated] {
            assert!(model.check().is_empty(), "{:?}", model.check());
            for v in all_level_vectors(&model) {
                let p = model.match_probability(&v);
                for (k, c) in model.comparisons.iter().enumerate() {
                    let order = c.agreement_order();
                    let pos = order.iter().position(|l| *l == v[k] as usize);
                    // One step more agreement never lowers the probability.
                    if let Some(i) = pos.filter(|i| *i > 0) {
                        let mut w = v.clone();
                        w[k] = order[i - 1] as u8;
                        assert!(model.match_probability(&w) >= p, "{} {v:?} → {w:?}", c.name);
                    }
                    // Missing never raises it above agreement.
                    if let Some(miss) = c.missing_level() {
                        let mut top = v.clone();
                        top[k] = order[0] as u8;
                        let mut missing = v.clone();
                        missing[k] = miss as u8;
                        assert!(model.match_probability(&missing) <= model.match_probability(&top), "{} {v:?}", c.name);
                    }
                }
            }
        }
    }

    #[test]
    fn missing_never_weighs_more_than_agreement_even_when_the_data_say_so() {
        let mut c = known().comparisons[1].clone();
        c.m = vec![0.3, 0.1, 0.6];
        c.u = vec![0.5, 0.45, 0.05]; // missing would weigh +3.6, agreement −0.7
        pool_monotone(&mut c);
        assert!(c.weight(2) <= c.weight(0) + 1e-12 && c.weight(1) <= c.weight(2) + 1e-12, "{c:?}");
        assert!((c.m.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let mut model = known();
        model.comparisons[1].m = vec![0.3, 0.1, 0.6];
        model.comparisons[1].u = vec![0.5, 0.45, 0.05];
        assert!(model.check().iter().any(|p| p.contains("missing is never agreement")), "{:?}", model.check());
    }

    #[test]
    fn the_shipped_model_settles_the_classic_cases() {
        let model = FsModel::default_model();
        let band = |dice: f64, cf: u8, stp: u8| {
            let mut levels: Levels = Vec::new();
            for c in &model.comparisons {
                levels.push(match c.kind {
                    ComparisonKind::ClkDice => c.dice_level(dice),
                    ComparisonKind::FieldDice => c.missing_level().unwrap() as u8,
                    ComparisonKind::Token if c.token.as_deref() == Some("codice_fiscale") => cf,
                    ComparisonKind::Token if c.token.as_deref() == Some("stp") => stp,
                    ComparisonKind::Token => TOKEN_MISSING,
                });
            }
            model.band(model.match_probability(&levels))
        };
        // Agreeing CF and a plausible filter: certain.
        assert_eq!(band(0.80, TOKEN_AGREE, TOKEN_MISSING), Some(Band::Certain));
        // Near-identical filters without any identifier: a strong link.
        assert!(band(0.97, TOKEN_MISSING, TOKEN_MISSING) <= Some(Band::Probable));
        // Disagreeing CFs weigh against, agreeing ones for, whatever the filters say.
        let p = |dice: f64, cf: u8| {
            let clk = &model.comparisons[0];
            let mut levels: Levels = vec![TOKEN_MISSING; model.comparisons.len()];
            levels[0] = clk.dice_level(dice);
            levels[1] = cf;
            model.match_probability(&levels)
        };
        for dice in [1.0, 0.97, 0.9, 0.8] {
            assert!(p(dice, TOKEN_DISAGREE) < p(dice, TOKEN_MISSING) && p(dice, TOKEN_MISSING) < p(dice, TOKEN_AGREE));
        }
        // Disagreeing CFs with close filters — namesakes born the same day, omocodes: not merged.
        assert!(band(0.93, TOKEN_DISAGREE, TOKEN_MISSING).is_none_or(|b| b == Band::Possible));
        // An agreeing CF with a filter of someone else (a relative's CF typed into the record):
        // never certain. (It is still "probable": conditional independence cannot know that
        // wrong CFs come from relatives, whose filters are alike; see the module notes.)
        assert!(band(0.30, TOKEN_AGREE, TOKEN_MISSING) > Some(Band::Certain));
        assert!(p(0.30, TOKEN_AGREE) < p(0.80, TOKEN_AGREE));
        // Unrelated.
        assert_eq!(band(0.45, TOKEN_DISAGREE, TOKEN_MISSING), None);
        assert_eq!(band(0.45, TOKEN_MISSING, TOKEN_MISSING), None);
    }

    #[test]
    fn pairs_are_compared_on_the_right_evidence() {
        let model = known();
        let clk_a = vec![0xffu64, 0, 0, 0];
        let clk_b = vec![0xfeu64, 0, 0, 0];
        let a_tokens = [tok(TokenKind::CodiceFiscale, 1), tok(TokenKind::Stp, 4)];
        let b_tokens = [tok(TokenKind::CodiceFiscale, 1)];
        let c_tokens = [tok(TokenKind::CodiceFiscale, 2), tok(TokenKind::Stp, 5)];
        let a = Encoded { clk: &clk_a, tokens: &a_tokens, fields: &[] };
        let b = Encoded { clk: &clk_b, tokens: &b_tokens, fields: &[] };
        let c = Encoded { clk: &clk_a, tokens: &c_tokens, fields: &[] };
        // Dice 14/15 ≈ 0.93 → level 0; CF agrees; STP missing on one side.
        assert_eq!(model.compare(&a, &b), vec![0, TOKEN_AGREE, TOKEN_MISSING]);
        assert_eq!(model.compare(&a, &c), vec![0, TOKEN_DISAGREE, TOKEN_DISAGREE]);
        let s = model.score(&a, &b);
        assert!(s.probability > 0.999 && s.band == Some(Band::Certain), "{s:?}");
        assert!(model.score(&a, &c).probability < model.score(&a, &b).probability);
    }

    #[test]
    fn field_filters_are_missing_unless_both_sides_have_them() {
        let mut model = known();
        model.comparisons.push(Comparison {
            name: "surname".into(),
            kind: ComparisonKind::FieldDice,
            field: Some("surname".into()),
            token: None,
            thresholds: vec![0.9, 0.7],
            m_disagree_share: None,
            m: vec![0.8, 0.15, 0.04, 0.01],
            u: vec![0.01, 0.05, 0.9, 0.04],
        });
        assert!(model.check().is_empty(), "{:?}", model.check());
        let clk = vec![1u64];
        let with = vec![("surname".to_string(), vec![0b1111u64])];
        let close = vec![("surname".to_string(), vec![0b0111u64])];
        let a = Encoded { clk: &clk, tokens: &[], fields: &with };
        let b = Encoded { clk: &clk, tokens: &[], fields: &close };
        let none = Encoded { clk: &clk, tokens: &[], fields: &[] };
        assert_eq!(model.compare(&a, &b)[3], 1); // Dice 6/7 ≈ 0.857
        assert_eq!(model.compare(&a, &none)[3], 3);
    }

    #[test]
    fn what_changed_is_listed() {
        let a = known();
        let mut b = known();
        b.lambda = 0.01;
        b.comparisons[1].m = vec![0.7, 0.05, 0.25];
        let d = compare_models(&a, &b, 0.1);
        assert_eq!(d.lambda, (0.02, 0.01));
        assert_eq!(d.levels.iter().map(|c| (c.comparison.as_str(), c.level.as_str())).collect::<Vec<_>>(), [("cf", "disagree"), ("cf", "missing"), ("cf", "agree")]);
        let text = d.to_string();
        assert!(text.contains("cf disagree: weight") && text.contains("prior λ"), "{text}");
        assert!(compare_models(&a, &a, 0.0).levels.iter().all(|c| c.weight.0 == c.weight.1));
    }

    #[test]
    fn bad_models_are_explained() {
        let mut m = known();
        m.comparisons[0].thresholds = vec![0.8, 0.9, 0.6];
        m.comparisons[1].m = vec![0.5, 0.5];
        m.comparisons[2].token = Some("passport".into());
        m.bands.possible = 0.95;
        let p = m.check();
        assert!(p.iter().any(|x| x.contains("strictly decreasing")), "{p:?}");
        assert!(p.iter().any(|x| x.contains("3 levels")), "{p:?}");
        assert!(p.iter().any(|x| x.contains("passport")), "{p:?}");
        assert!(p.iter().any(|x| x.contains("bands")), "{p:?}");
        assert!(FsModel::parse("version = 1").is_err());
        let mut m = known();
        m.comparisons[0].m = vec![0.0005, 0.0045, 0.095, 0.9];
        assert!(m.check().iter().any(|x| x.contains("more agreement must never count less")));
    }

    #[test]
    fn lambda_scales_with_the_federation() {
        let m = known();
        let big = m.for_records(100_000);
        assert!((big.lambda - 0.02 * 999.0 / 99_999.0).abs() < 1e-12);
        assert_eq!(big.reference_records, 100_000);
    }
}
