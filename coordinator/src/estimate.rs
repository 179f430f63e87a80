//! Re-estimation of the Fellegi–Sunter model on a federation's own stored encodings: what
//! `ponte-coordinator params estimate` runs.
//!
//! The shipped model (`params/default-fs.toml`) was fitted on a synthetic federation. A real one
//! differs — how often its entities carry a codice fiscale, how damaged its identities are, how
//! many namesakes it holds — and [`estimate`] fits the model to it the way the simulator's
//! quality benchmark does (`ponte-sim bench quality`): the schema's blocking ([`LshIndex`] and
//! [`TokenIndex`]) proposes candidate pairs, each once; random pairs outside them stand for the
//! rest; [`scoring::reestimate`] takes u once from all pairs and m and λ by EM (Splink's
//! approach); [`scoring::compare_models`] says what changed.
//!
//! Guarantees:
//! - **Pure and deterministic.** No I/O. The same items in the same order, the same start and
//!   the same options give the same model: candidates come from deterministic indexes, random
//!   pairs from a ChaCha8 stream seeded by [`EstimateOptions::seed`], and estimation sums pattern
//!   counts in sorted order.
//! - **A usable model or an error.** The model returned passes [`FsModel::check`]; what cannot be
//!   estimated (too few items, filters of the wrong length, too many candidates) is refused with
//!   a message that says why.
//! - **Bounded.** [`MIN_ITEMS`] to [`MAX_ITEMS`] items, at most [`MAX_CANDIDATE_PAIRS`] candidate
//!   pairs held, [`MIN_RANDOM_PAIRS`] to [`MAX_RANDOM_PAIRS`] random draws, compared in chunks of
//!   [`CHUNK_PAIRS`] so memory does not grow with the draws.
//! - **Nothing about an item leaves.** The model holds per-level probabilities and a prior,
//!   aggregates over all pairs; no filter, token or item is written into it.
//!
//! Always start from the shipped model (or a hand-made one with other levels), never from a
//! previous estimate: repeated re-estimation drifts where the data cannot identify the
//! parameters ([`scoring::reestimate`]).

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::blocking::{self, LshIndex, LshParams, TokenIndex};
use crate::model::{StoredItem, Token};
use crate::scoring::{self, EmOptions, EmReport, Encoded, FsModel, Levels, ModelDiff, PatternCounts, TrainingData};

/// Fewest items estimated on: with fewer, EM has almost no matches to learn m from and the
/// estimate says nothing about the federation.
pub const MIN_ITEMS: usize = 100;
/// Most items estimated on (item numbers are `u32`; all filters are held in memory).
pub const MAX_ITEMS: usize = 10_000_000;
/// Most candidate pairs held (8 bytes each). Blocking proposes a few dozen per item with the
/// default schema; far more means the schema's `[blocking]` is too loose for this federation.
pub const MAX_CANDIDATE_PAIRS: usize = 50_000_000;
/// Fewest random pairs drawn: below this, the u of the middle Dice levels is noise.
pub const MIN_RANDOM_PAIRS: usize = 10_000;
/// Most random pairs drawn.
pub const MAX_RANDOM_PAIRS: usize = 20_000_000;
/// Random pairs drawn by default (the shipped model's fit used 2 M).
pub const DEFAULT_RANDOM_PAIRS: usize = 2_000_000;
/// Seed of the random pairs by default.
pub const DEFAULT_SEED: u64 = 1;
/// Pairs compared per parallel chunk.
pub const CHUNK_PAIRS: usize = 1 << 16;
/// A level is listed as changed when its weight moved by at least this many bits.
pub const MIN_WEIGHT_CHANGE: f64 = 0.5;

/// One item as estimation sees it: its CLK as 64-bit words (`ponte_proto::bits::to_words`) and
/// its exact tokens.
pub type ItemEncoding = (Vec<u64>, Vec<Token>);

/// How [`estimate`] samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstimateOptions {
    /// Random pairs drawn for u, [`MIN_RANDOM_PAIRS`] to [`MAX_RANDOM_PAIRS`] (capped at four
    /// times the pairs that are not candidates). Draws that hit a candidate or the same item
    /// twice are dropped, so slightly fewer pairs are used ([`Estimate::random_pairs`]).
    pub random_pairs: usize,
    /// Seed of the random pairs.
    pub seed: u64,
}

impl Default for EstimateOptions {
    fn default() -> Self {
        EstimateOptions { random_pairs: DEFAULT_RANDOM_PAIRS, seed: DEFAULT_SEED }
    }
}

/// A re-estimated model and how it was obtained.
#[derive(Debug, Clone)]
pub struct Estimate {
    /// The new model, for a federation of [`Estimate::records`] records; passes
    /// [`FsModel::check`].
    pub model: FsModel,
    /// The starting model with its prior rescaled to this many records: what the model in force
    /// would be here without re-estimation, and the "before" of [`Estimate::diff`].
    pub before: FsModel,
    pub em: EmReport,
    /// What changed from [`Estimate::before`] to [`Estimate::model`]: levels whose weight moved
    /// by at least [`MIN_WEIGHT_CHANGE`] bits, and λ.
    pub diff: ModelDiff,
    /// Items estimated on.
    pub records: usize,
    /// Candidate pairs proposed by blocking (each counted once).
    pub candidate_pairs: usize,
    /// Random pairs outside the candidates that were compared.
    pub random_pairs: usize,
    /// The seed they were drawn with.
    pub seed: u64,
}

impl Estimate {
    /// The model as a file the coordinator reads (`model_file`): a comment header saying where
    /// it comes from — `data` describes the items (e.g. "key epoch 2"), `start` the starting
    /// model — then [`FsModel::to_toml`]. [`FsModel::parse`] of the text gives back
    /// [`Estimate::model`].
    pub fn model_file(&self, data: &str, start: &str) -> String {
        let one_line = |s: &str| s.replace(['\n', '\r'], " ");
        format!(
            "# Fellegi–Sunter model re-estimated by `ponte-coordinator params estimate` on this\n\
             # federation's own encodings: {} items of {}, {} candidate pairs, {} random pairs\n\
             # (seed {}); EM {} iterations, {}. Started from {}.\n\
             # Re-estimate from the shipped model, never from this file: repeated re-estimation drifts\n\
             # where the data cannot identify the parameters.\n\
             # To use it: model_file = \"<this file>\" in the coordinator configuration, then restart.\n\n{}",
            self.records,
            one_line(data),
            self.candidate_pairs,
            self.random_pairs,
            self.seed,
            self.em.iterations,
            if self.em.converged { "converged" } else { "NOT converged" },
            one_line(start),
            self.model.to_toml()
        )
    }
}

/// The items of one key epoch, ready for [`estimate`].
#[derive(Debug, Clone, PartialEq)]
pub struct EpochItems {
    /// The epoch selected.
    pub epoch: u32,
    /// (CLK as words, tokens) of every item with an encoding of `epoch`, in the order given.
    pub items: Vec<ItemEncoding>,
    /// Items without an encoding of `epoch` (left out).
    pub without_epoch: usize,
    /// Every epoch present, ascending.
    pub epochs: Vec<u32>,
}

/// Selects the encodings of `epoch` — the newest epoch present when `None` — from stored items,
/// checking that every selected filter has `clk_bits` bits (the linkage schema's published
/// length). Comparisons happen within one epoch, so estimation does too.
pub fn epoch_items<'a>(
    stored: impl IntoIterator<Item = &'a StoredItem>,
    epoch: Option<u32>,
    clk_bits: u32,
) -> Result<EpochItems, String> {
    let stored: Vec<&StoredItem> = stored.into_iter().collect();
    let epochs: BTreeSet<u32> = stored.iter().flat_map(|s| s.encodings.iter().map(|e| e.epoch)).collect();
    let epochs: Vec<u32> = epochs.into_iter().collect();
    let Some(&newest) = epochs.last() else {
        return Err(format!("the store holds no encodings ({} items): nothing to estimate on", stored.len()));
    };
    let epoch = epoch.unwrap_or(newest);
    if !epochs.contains(&epoch) {
        let present: Vec<String> = epochs.iter().map(u32::to_string).collect();
        return Err(format!("no stored item has an encoding of key epoch {epoch}; epochs present: {}", present.join(", ")));
    }
    let mut items = Vec::new();
    let mut without_epoch = 0;
    for s in stored {
        let Some(e) = s.encoding(epoch) else {
            without_epoch += 1;
            continue;
        };
        if e.clk.len() as u64 * 8 != clk_bits as u64 {
            return Err(format!(
                "item {}: its epoch-{epoch} filter has {} bits, the linkage schema says {clk_bits}; \
                 estimate with the schema the encodings were published under (schema_file)",
                s.key.label(),
                e.clk.len() * 8
            ));
        }
        items.push((ponte_proto::bits::to_words(&e.clk), e.tokens.clone()));
    }
    Ok(EpochItems { epoch, items, without_epoch, epochs })
}

fn unordered(a: u32, b: u32) -> (u32, u32) {
    if a < b { (a, b) } else { (b, a) }
}

/// Comparison levels of `pairs` under `model`, counted into `counts` (parallel, in chunks;
/// counts are whole numbers, so the sum does not depend on the order).
fn count_patterns(model: &FsModel, items: &[ItemEncoding], pairs: &[(u32, u32)], counts: &mut PatternCounts) {
    let encoded = |i: u32| {
        let (clk, tokens) = &items[i as usize];
        Encoded { clk, tokens, fields: &[] }
    };
    for chunk in pairs.chunks(CHUNK_PAIRS) {
        let levels: Vec<Levels> = chunk.par_iter().map(|&(a, b)| model.compare(&encoded(a), &encoded(b))).collect();
        for l in levels {
            counts.add(l);
        }
    }
}

/// Re-estimates `start` on `items` — (CLK as `clk_bits / 64` words, tokens) of every item of one
/// key epoch — with the blocking `lsh` (the schema's `[blocking]`: `LshParams::from`).
///
/// Steps: (1) blocking, each item querying the indexes before it is inserted, so each candidate
/// pair is counted once; (2) comparison vectors of the candidates under `start`; (3) random
/// pairs outside the candidates, for u; (4) [`scoring::reestimate`] with u fixed after one
/// estimate from all pairs; (5) the diff from `start` rescaled to these records.
///
/// Refuses fewer than [`MIN_ITEMS`] or more than [`MAX_ITEMS`] items, random pairs outside
/// [`MIN_RANDOM_PAIRS`]..=[`MAX_RANDOM_PAIRS`], a `start` that fails its checks, blocking
/// parameters that cannot index `clk_bits`-bit filters, a filter of another length, and more
/// than [`MAX_CANDIDATE_PAIRS`] candidates.
pub fn estimate(
    start: &FsModel,
    lsh: LshParams,
    clk_bits: u32,
    items: &[ItemEncoding],
    opts: &EstimateOptions,
) -> Result<Estimate, String> {
    let n = items.len();
    if n < MIN_ITEMS {
        return Err(format!(
            "{n} items: estimation needs at least {MIN_ITEMS} (on fewer, EM sees too few matches to say anything \
             about this federation; keep the shipped model)"
        ));
    }
    if n > MAX_ITEMS {
        return Err(format!("{n} items: at most {MAX_ITEMS} are estimated on"));
    }
    if !(MIN_RANDOM_PAIRS..=MAX_RANDOM_PAIRS).contains(&opts.random_pairs) {
        return Err(format!("random pairs = {}: must be {MIN_RANDOM_PAIRS} to {MAX_RANDOM_PAIRS}", opts.random_pairs));
    }
    let problems = start.check();
    if !problems.is_empty() {
        return Err(format!("the starting model is not usable: {}", problems.join("; ")));
    }
    lsh.check(clk_bits).map_err(|e| format!("the schema's blocking parameters: {e}"))?;
    let words = clk_bits as usize / 64;
    if let Some((i, (w, _))) = items.iter().enumerate().find(|(_, (w, _))| w.len() != words) {
        return Err(format!("item {i} has a {}-bit filter; the schema says {clk_bits}", w.len() * 64));
    }

    // 1. Blocking: each item queries the indexes before it is inserted, so each pair once, as
    // (earlier, later).
    let frequencies = blocking::bit_frequencies(items.iter().map(|(w, _)| w.as_slice()), clk_bits);
    let mut lsh_index = LshIndex::with_frequencies(lsh, clk_bits, &frequencies)?;
    let mut token_index = TokenIndex::new();
    let mut candidates: Vec<(u32, u32)> = Vec::new();
    for (i, (w, tokens)) in items.iter().enumerate() {
        let i = i as u32;
        let compact: Vec<u64> = tokens.iter().map(blocking::compact_token).collect();
        let mut found = lsh_index.candidates(w);
        found.extend(token_index.candidates(&compact));
        found.sort_unstable();
        found.dedup();
        if candidates.len() + found.len() > MAX_CANDIDATE_PAIRS {
            return Err(format!(
                "blocking proposed more than {MAX_CANDIDATE_PAIRS} candidate pairs after {i} of {n} items: the schema's \
                 [blocking] parameters (K = {}, L = {}) are too loose for this federation",
                lsh.bits_per_key, lsh.tables
            ));
        }
        candidates.extend(found.into_iter().map(|j| (j, i)));
        lsh_index.insert(i, w);
        token_index.insert(i, &compact);
    }
    drop(lsh_index);
    drop(token_index);
    candidates.sort_unstable();

    // 2. Comparison vectors of the candidates.
    let mut data = TrainingData::default();
    count_patterns(start, items, &candidates, &mut data.candidates);
    let all_pairs = n as f64 * (n as f64 - 1.0) / 2.0;
    data.outside_pairs = all_pairs - candidates.len() as f64;

    // 3. Random pairs outside the candidates, drawn in chunks (the draws do not depend on the
    // chunking: two per pair, in order).
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut remaining = opts.random_pairs.min((data.outside_pairs as usize).saturating_mul(4));
    let mut random_pairs = 0;
    while remaining > 0 {
        let draws = remaining.min(CHUNK_PAIRS);
        remaining -= draws;
        let pairs: Vec<(u32, u32)> = (0..draws)
            .filter_map(|_| {
                let a = rng.random_range(0..n as u32);
                let b = rng.random_range(0..n as u32);
                let p = unordered(a, b);
                (a != b && candidates.binary_search(&p).is_err()).then_some(p)
            })
            .collect();
        random_pairs += pairs.len();
        count_patterns(start, items, &pairs, &mut data.outside);
    }

    // 4. Estimation; 5. what changed.
    let (model, em) = scoring::reestimate(start, &data, n as u64, &EmOptions { fix_u: true, ..Default::default() });
    let problems = model.check();
    if !problems.is_empty() {
        return Err(format!("the estimated model fails its checks (keep the model in force): {}", problems.join("; ")));
    }
    let before = start.for_records(n as u64);
    let diff = scoring::compare_models(&before, &model, MIN_WEIGHT_CHANGE);
    Ok(Estimate { model, before, em, diff, records: n, candidate_pairs: candidates.len(), random_pairs, seed: opts.seed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linker::Band;
    use crate::model::{EpochEncoding, ItemKey, RelationshipMeta};
    use ponte_proto::limits::TOKEN_BYTES;
    use ponte_proto::v1::TokenKind;

    const BITS: u32 = 1024;

    /// `persons` persons with a random 1024-bit filter (fill 0.4) and 2 or 3 noisy copies each
    /// (a set bit lost with probability 0.05, an unset one gained with 0.03: copies of one person
    /// meet at Dice ≈ 0.9); one person in three has a codice fiscale, carried by each of their
    /// copies with probability 0.7. Returns the items, shuffled, and each item's person.
    fn synthetic(persons: u32, seed: u64) -> (Vec<ItemEncoding>, Vec<u32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut records = Vec::new();
        for p in 0..persons {
            let base: Vec<bool> = (0..BITS).map(|_| rng.random_bool(0.4)).collect();
            let cf = (p % 3 == 0).then(|| {
                let mut value = [0u8; TOKEN_BYTES];
                rng.fill(&mut value[..]);
                Token { kind: TokenKind::CodiceFiscale as i32, value }
            });
            for _ in 0..2 + p % 2 {
                let mut words = vec![0u64; BITS as usize / 64];
                for (i, &set) in base.iter().enumerate() {
                    if rng.random_bool(if set { 0.95 } else { 0.03 }) {
                        words[i / 64] |= 1 << (i % 64);
                    }
                }
                let tokens = cf.iter().filter(|_| rng.random_bool(0.7)).cloned().collect();
                records.push((words, tokens, p));
            }
        }
        // Fisher–Yates, so copies of one person are not neighbours.
        for i in (1..records.len()).rev() {
            let j = rng.random_range(0..=i);
            records.swap(i, j);
        }
        let persons = records.iter().map(|r| r.2).collect();
        (records.into_iter().map(|(w, t, _)| (w, t)).collect(), persons)
    }

    fn lsh() -> LshParams {
        LshParams::from(&ponte_proto::schema::LinkageSchema::default_schema().blocking)
    }

    #[test]
    fn estimate_on_synthetic_encodings_separates_true_pairs() {
        let (items, persons) = synthetic(300, 7);
        let n = items.len();
        let opts = EstimateOptions { random_pairs: 100_000, seed: 3 };
        let est = estimate(&FsModel::default_model(), lsh(), BITS, &items, &opts).unwrap();

        assert!(est.model.check().is_empty(), "{:?}", est.model.check());
        assert_eq!(est.records, n);
        assert_eq!(est.model.reference_records, n as u64);
        assert!(est.candidate_pairs > 0 && est.candidate_pairs < n * (n - 1) / 2);
        assert!(est.random_pairs > 90_000 && est.random_pairs <= 100_000, "{}", est.random_pairs);
        assert!(est.em.converged, "{:?}", est.em);

        let mut true_pairs = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                if persons[a] == persons[b] {
                    true_pairs.push((a, b));
                }
            }
        }
        // EM finds about as many matches as there are.
        let t = true_pairs.len() as f64;
        assert!((est.em.expected_matches - t).abs() < 0.2 * t, "expected {} matches, truth {t}", est.em.expected_matches);

        // The shipped model was fitted on other data: something moved, and the diff says so.
        assert!(!est.diff.levels.is_empty());
        let shown = est.diff.to_string();
        assert!(shown.contains("prior λ") && shown.contains("clk"), "{shown}");

        // Every true pair outweighs every non-pair, and nearly all are strong links.
        let enc = |i: usize| Encoded { clk: &items[i].0, tokens: &items[i].1, fields: &[] };
        let weight = |a: usize, b: usize| est.model.match_weight(&est.model.compare(&enc(a), &enc(b)));
        let lowest_true = true_pairs.iter().map(|&(a, b)| weight(a, b)).fold(f64::INFINITY, f64::min);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut highest_non = f64::NEG_INFINITY;
        for _ in 0..20_000 {
            let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
            if persons[a] != persons[b] {
                highest_non = highest_non.max(weight(a, b));
            }
        }
        assert!(lowest_true > highest_non, "true pairs from {lowest_true:.2} bits, non-pairs up to {highest_non:.2}");
        let strong = true_pairs
            .iter()
            .filter(|&&(a, b)| {
                let p = est.model.match_probability(&est.model.compare(&enc(a), &enc(b)));
                matches!(est.model.band(p), Some(Band::Certain | Band::Probable))
            })
            .count();
        assert!(strong as f64 >= 0.95 * t, "{strong} of {t} true pairs are strong links");

        // The file the command writes reads back as the same model.
        let text = est.model_file("key epoch 1", "the shipped model");
        assert_eq!(FsModel::parse(&text).unwrap(), est.model);
        assert!(text.starts_with("# Fellegi–Sunter model re-estimated"));

        // Deterministic: the same items and options give the same model.
        let again = estimate(&FsModel::default_model(), lsh(), BITS, &items, &opts).unwrap();
        assert_eq!(again.model, est.model);
        assert_eq!((again.candidate_pairs, again.random_pairs), (est.candidate_pairs, est.random_pairs));
    }

    #[test]
    fn estimate_refuses_too_little_or_malformed_input() {
        let (items, _) = synthetic(60, 1);
        let start = FsModel::default_model();
        let opts = EstimateOptions::default();
        let e = estimate(&start, lsh(), BITS, &items[..MIN_ITEMS - 1], &opts).unwrap_err();
        assert!(e.contains("99 items") && e.contains("at least 100"), "{e}");

        let e = estimate(&start, lsh(), BITS, &items, &EstimateOptions { random_pairs: 10, ..opts }).unwrap_err();
        assert!(e.contains("random pairs"), "{e}");

        let mut short = items.clone();
        short[5].0.pop();
        let e = estimate(&start, lsh(), BITS, &short, &opts).unwrap_err();
        assert!(e.contains("item 5 has a 960-bit filter"), "{e}");

        let mut broken = start.clone();
        broken.lambda = 2.0;
        let e = estimate(&broken, lsh(), BITS, &items, &opts).unwrap_err();
        assert!(e.contains("starting model") && e.contains("lambda"), "{e}");
    }

    fn stored(reference: &str, encodings: Vec<EpochEncoding>) -> StoredItem {
        StoredItem {
            key: ItemKey { node: "asl-le".into(), reference: reference.into() },
            revision: 1,
            encodings,
            quality_flags: 0,
            relationship: RelationshipMeta {
                entity_type: 1,
                unit: "u1".into(),
                category: 1,
                tier: 1,
                status: 1,
                since_month: 202601,
                case_manager: false,
                plan: 0,
                contact: 0,
            },
            entity_name: String::new(),
            obscured: false,
        }
    }

    fn encoding(epoch: u32, bytes: usize) -> EpochEncoding {
        EpochEncoding { epoch, clk: vec![0xa5; bytes], tokens: vec![] }
    }

    #[test]
    fn epoch_items_picks_the_newest_epoch_and_checks_lengths() {
        let items = [
            stored("a", vec![encoding(1, 128), encoding(2, 128)]),
            stored("b", vec![encoding(1, 128)]),
            stored("c", vec![encoding(2, 128)]),
        ];
        let newest = epoch_items(&items, None, BITS).unwrap();
        assert_eq!((newest.epoch, newest.items.len(), newest.without_epoch, newest.epochs.clone()), (2, 2, 1, vec![1, 2]));
        assert_eq!(newest.items[0].0, vec![0xa5a5_a5a5_a5a5_a5a5; 16]);
        assert_eq!(epoch_items(&items, Some(1), BITS).unwrap().items.len(), 2);

        let e = epoch_items(&items, Some(3), BITS).unwrap_err();
        assert!(e.contains("epoch 3") && e.contains("epochs present: 1, 2"), "{e}");
        let e = epoch_items(&items, None, 2048).unwrap_err();
        assert!(e.contains("asl-le/a") && e.contains("1024 bits") && e.contains("2048"), "{e}");
        let e = epoch_items(&[stored("d", vec![])], None, BITS).unwrap_err();
        assert!(e.contains("no encodings"), "{e}");
    }
}
