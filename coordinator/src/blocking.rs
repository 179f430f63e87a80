//! Blocking: which pairs of items are worth scoring at all.
//!
//! Comparing every new item with every indexed one costs one Dice per indexed item; at a few
//! million items that is too slow for interactive publishing. Blocking
//! proposes a small candidate set that still contains (almost) every true pair, and the scorer
//! ([`crate::scoring`]) decides among the candidates. Two indexes, used together:
//!
//! - [`LshIndex`] — Hamming locality-sensitive hashing over published CLKs. `L` tables, each
//!   keyed by the values of `K` bit positions sampled once; two filters are candidates when they
//!   agree on all `K` positions of at least one table. A pair agreeing on a share `s` of the
//!   sampled positions meets with probability `1 − (1 − s^K)^L` ([`LshParams::collision_probability`]).
//! - [`TokenIndex`] — exact keyed tokens (codice fiscale, STP, ENI, ...): items sharing a token
//!   are always candidates, however different their filters.
//!
//! Both are pure, in-memory and deterministic: the sampled positions come from a fixed, public
//! seed ([`LSH_SEED`]) and the bit frequencies the index was built with, so the same parameters
//! and the same frequencies give the same tables on every run and machine. The seed is not a
//! secret: knowing which positions are sampled tells nothing the filters do not already show.
//!
//! Quality is measured with [`pair_completeness`] (share of true pairs that survive blocking)
//! and [`reduction_ratio`] (share of all pairs that blocking saves from scoring).
//!
//! # Memory
//!
//! Ids are `u32` (the linker's item numbers). Each LSH table keeps one 4-byte head per possible
//! key and one 4-byte link per indexed filter (buckets are chains through the links), so an
//! indexed filter costs exactly `4·L` bytes — 120 bytes at the default `L = 30` — however the
//! filters spread over the buckets; [`LshIndex::memory_bytes`] reports the figure. The token
//! index maps [`compact_token`]s to ids in a hash map: ≈ 20–40 bytes per distinct token.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::model::Token;

/// The public seed of the position sampling (ASCII "PONTELSH"). A constant of the index format:
/// changing it changes which pairs meet, never whether a filter is valid.
pub const LSH_SEED: u64 = 0x504f_4e54_454c_5348;

/// Most bits per key accepted (two 64-bit words).
pub const MAX_BITS_PER_KEY: u32 = 128;
/// Most tables accepted.
pub const MAX_TABLES: u32 = 128;

/// Hamming-LSH parameters.
///
/// # Defaults: `K = 20`, `L = 30`, the 64 most frequent positions skipped
///
/// First chosen on the 6,000-record demo federation as `K = 16, L = 40` (the analysis below);
/// changed to `K = 20, L = 30` when measured at scale: the number of candidate comparisons grows
/// with the square of the federation, and at 100,000 records per side `K = 20, L = 30` made 7×
/// fewer Dice computations (21 M against 148 M) for the same F1, keeping 99.46 % of the true
/// pairs (`ponte-sim bench bulk`; figures in `proto/schemas/default.toml`).
///
/// Two filters of the same weight at Dice `d` and fill `f` (share of bits set) differ in
/// `2·f·n·(1 − d)` of their `n` positions, so they agree on a share `s = 1 − 2·f·(1 − d)` of them
/// ([`bit_agreement`]); unrelated filters agree on `f² + (1 − f)²`. Published CLKs of the default
/// schema have `f ≈ 0.36` (measured on the demo population); the brief's design point was
/// `f = 0.45`. Probability `1 − (1 − s^K)^L` of meeting:
///
/// | pair | f = 0.36: s | K=16 L=40 | K=20 L=30 | K=24 L=30 | K=12 L=50 | f = 0.45: K=16 L=40 |
/// |---|---|---|---|---|---|---|
/// | Dice 0.90 | 0.928 | 1.0000 | 0.9995 | 0.996 | 1.0000 | 1.0000 |
/// | Dice 0.85 | 0.892 | 0.9991 | 0.960 | 0.864 | 1.0000 | 0.984 |
/// | Dice 0.80 | 0.856 | 0.969 | 0.746 | 0.517 | 0.9998 | 0.819 |
/// | Dice 0.70 | 0.784 | 0.561 | 0.207 | 0.084 | 0.937 | 0.230 |
/// | unrelated | 0.539 | 2·10⁻³ | 1.3·10⁻⁴ | 1.1·10⁻⁵ | 3·10⁻² | 7·10⁻⁴ |
///
/// No `K ≥ 20` with `L ≤ 30` meets pairs at Dice 0.80 with probability 0.99: that takes
/// `K ≈ 12, L ≈ 50`, which also makes several per cent of all pairs candidates (10 % on the demo
/// federation, where unrelated records sharing a surname and a birthplace are much closer than
/// random filters) — at a million items, 10¹⁰ comparisons. Nor is it needed for the links: a
/// true pair below Dice ≈ 0.85 with no agreeing exact token scores below "probable" anyway (on
/// the CLK alone it is as likely a namesake born another day), and pairs with an agreeing token
/// come from the [`TokenIndex`] whatever their Dice. `K = 16, L = 40` meets pairs at Dice ≥ 0.85
/// with probability ≥ 0.999 and at 0.80 with 0.97. Skipping the 64 most frequent positions
/// (those of the bigrams every Italian name has, `A_`, `O_`, `I_` …) raised both measures on the
/// demo: pair completeness 0.9973 → 0.9989 and reduction ratio 0.9848 → 0.9859 (skipping 128
/// lowered both). Measured with `ponte-sim bench quality` (5,917 records): these defaults keep
/// 99.89 % of the true pairs with 246 k candidates (reduction ratio 0.986); `K = 20, L = 30`
/// keeps 99.1 % with 47 k; the linkage F1 was the same for both, because the pairs only the
/// larger candidate set holds are "possible" links at best.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LshParams {
    /// K: positions per key, 1 to [`MAX_BITS_PER_KEY`].
    pub bits_per_key: u32,
    /// L: number of tables, 1 to [`MAX_TABLES`].
    pub tables: u32,
    /// How many of the most frequently set positions are never sampled (needs the frequencies:
    /// [`LshIndex::with_frequencies`]; ignored by [`LshIndex::new`]).
    pub skip_most_frequent: u32,
    /// Seed of the position sampling ([`LSH_SEED`] unless testing).
    pub seed: u64,
}

impl Default for LshParams {
    fn default() -> Self {
        LshParams { bits_per_key: 20, tables: 30, skip_most_frequent: 64, seed: LSH_SEED }
    }
}

impl From<&ponte_proto::schema::Blocking> for LshParams {
    /// The schema's `[blocking]` section, with the public seed.
    fn from(b: &ponte_proto::schema::Blocking) -> Self {
        LshParams {
            bits_per_key: b.lsh_bits_per_key,
            tables: b.lsh_tables,
            skip_most_frequent: b.skip_most_frequent_bits,
            seed: LSH_SEED,
        }
    }
}

impl LshParams {
    /// Probability that a pair agreeing on a share `s` of the sampled positions meets in at least
    /// one table: `1 − (1 − s^K)^L`.
    pub fn collision_probability(&self, s: f64) -> f64 {
        let s = s.clamp(0.0, 1.0);
        1.0 - (1.0 - s.powi(self.bits_per_key as i32)).powi(self.tables as i32)
    }

    /// Why these parameters cannot index `clk_bits`-bit filters, if they cannot.
    pub fn check(&self, clk_bits: u32) -> Result<(), String> {
        if !(1..=MAX_BITS_PER_KEY).contains(&self.bits_per_key) {
            return Err(format!("bits_per_key = {}: must be 1 to {MAX_BITS_PER_KEY}", self.bits_per_key));
        }
        if !(1..=MAX_TABLES).contains(&self.tables) {
            return Err(format!("tables = {}: must be 1 to {MAX_TABLES}", self.tables));
        }
        if clk_bits == 0 || !clk_bits.is_multiple_of(64) {
            return Err(format!("clk_bits = {clk_bits}: must be a positive multiple of 64"));
        }
        if self.skip_most_frequent >= clk_bits || self.bits_per_key > clk_bits - self.skip_most_frequent {
            return Err(format!(
                "bits_per_key = {} with {} of {clk_bits} positions skipped: not enough positions left",
                self.bits_per_key, self.skip_most_frequent
            ));
        }
        Ok(())
    }
}

/// Share of all positions on which two filters of fill `fill` (share of bits set, both the
/// same) at Dice `dice` agree: `1 − 2·fill·(1 − dice)`.
pub fn bit_agreement(dice: f64, fill: f64) -> f64 {
    1.0 - 2.0 * fill * (1.0 - dice)
}

/// How often each position is set among `filters` (each `clk_bits / 64` words).
pub fn bit_frequencies<'a>(filters: impl IntoIterator<Item = &'a [u64]>, clk_bits: u32) -> Vec<u32> {
    let mut freq = vec![0u32; clk_bits as usize];
    for words in filters {
        for (w, &word) in words.iter().enumerate() {
            let mut x = word;
            while x != 0 {
                let b = x.trailing_zeros() as usize;
                if let Some(f) = freq.get_mut(w * 64 + b) {
                    *f += 1;
                }
                x &= x - 1;
            }
        }
    }
    freq
}

/// The key of `words` under the sampled `positions`.
#[inline]
fn table_key(positions: &[u32], words: &[u64]) -> u64 {
    let (mut lo, mut hi) = (0u64, 0u64);
    for (i, &p) in positions.iter().enumerate() {
        let bit = (words[(p >> 6) as usize] >> (p & 63)) & 1;
        if i < 64 {
            lo |= bit << i;
        } else {
            hi |= bit << (i - 64);
        }
    }
    // Up to 64 positions the packed bits are the key itself (no false collisions); beyond,
    // two words are mixed into one (a false collision only adds a candidate).
    if positions.len() <= 64 { lo } else { splitmix(lo) ^ hi.rotate_left(17) }
}

/// SplitMix64: the deterministic generator of the position sampling, and the key mixer.
#[inline]
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hasher for keys that are already mixed (or short packed bit strings): one SplitMix round.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = splitmix(self.0 ^ x);
    }
}

type KeyMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// Keys of up to this many bits address a table's buckets directly; longer keys are hashed down
/// to it (a false collision only adds a candidate).
pub const MAX_DIRECT_KEY_BITS: u32 = 22;
/// A removed entry of a table's base, skipped until the next rebuild.
const GONE: u32 = u32::MAX;

/// One table: its sampled positions and its buckets, in two parts. The *base* holds the ids
/// grouped by bucket in one array (`base[offsets[s] .. offsets[s + 1]]` is bucket `s`, removed
/// entries marked [`GONE`]); the *delta* holds what was inserted since the base was built. The
/// base is rebuilt — delta merged, removed entries dropped — when the delta grows past an eighth
/// of it, or on a bulk insertion. Buckets are contiguous, so reading one is a sequential scan.
#[derive(Debug)]
struct Table {
    positions: Vec<u32>,
    slots: usize,
    offsets: Vec<u32>,
    base: Vec<u32>,
    base_gone: usize,
    delta: HashMap<u32, Vec<u32>, BuildHasherDefault<KeyHasher>>,
    delta_len: usize,
}

impl Table {
    fn new(positions: Vec<u32>, slots: usize) -> Table {
        Table { positions, slots, offsets: Vec::new(), base: Vec::new(), base_gone: 0, delta: HashMap::default(), delta_len: 0 }
    }

    fn slot(&self, key: u64) -> u32 {
        if self.slots as u64 >= 1u64 << self.positions.len().min(63) {
            key as u32
        } else {
            (splitmix(key) >> (64 - MAX_DIRECT_KEY_BITS)) as u32
        }
    }

    fn base_bucket(&self, slot: u32) -> &[u32] {
        if self.offsets.is_empty() {
            return &[];
        }
        &self.base[self.offsets[slot as usize] as usize..self.offsets[slot as usize + 1] as usize]
    }

    fn push(&mut self, slot: u32, id: u32) {
        self.delta.entry(slot).or_default().push(id);
        self.delta_len += 1;
    }

    /// Removes one entry of `id` under `slot`; whether there was one.
    fn unlink(&mut self, slot: u32, id: u32) -> bool {
        if let Some(v) = self.delta.get_mut(&slot)
            && let Some(i) = v.iter().position(|x| *x == id)
        {
            v.swap_remove(i);
            if v.is_empty() {
                self.delta.remove(&slot);
            }
            self.delta_len -= 1;
            return true;
        }
        if self.offsets.is_empty() {
            return false;
        }
        let range = self.offsets[slot as usize] as usize..self.offsets[slot as usize + 1] as usize;
        if let Some(i) = self.base[range.clone()].iter().position(|x| *x == id) {
            self.base[range.start + i] = GONE;
            self.base_gone += 1;
            return true;
        }
        false
    }

    fn for_each(&self, slot: u32, mut f: impl FnMut(u32)) {
        for &id in self.base_bucket(slot) {
            if id != GONE {
                f(id);
            }
        }
        if let Some(v) = self.delta.get(&slot) {
            for &id in v {
                f(id);
            }
        }
    }

    #[cfg(test)]
    fn live(&self) -> usize {
        self.base.len() - self.base_gone + self.delta_len
    }

    /// Rebuilds the base from the base, the delta and `extra` (slot, id) entries: a counting
    /// sort by slot.
    fn rebuild(&mut self, extra: &[(u32, u32)]) {
        let mut counts = vec![0u32; self.slots + 1];
        let live_base = self.base.iter().filter(|x| **x != GONE).count();
        let mut slot_of_base = Vec::with_capacity(live_base);
        if !self.offsets.is_empty() {
            for s in 0..self.slots {
                for &id in &self.base[self.offsets[s] as usize..self.offsets[s + 1] as usize] {
                    if id != GONE {
                        slot_of_base.push((s as u32, id));
                    }
                }
            }
        }
        let delta = std::mem::take(&mut self.delta);
        let delta_entries = delta.iter().flat_map(|(s, v)| v.iter().map(move |id| (*s, *id)));
        let all = || slot_of_base.iter().copied().chain(delta_entries.clone()).chain(extra.iter().copied());
        for (s, _) in all() {
            counts[s as usize + 1] += 1;
        }
        for s in 0..self.slots {
            counts[s + 1] += counts[s];
        }
        let total = counts[self.slots] as usize;
        let mut base = vec![GONE; total];
        let mut fill = counts.clone();
        for (s, id) in all() {
            base[fill[s as usize] as usize] = id;
            fill[s as usize] += 1;
        }
        self.offsets = counts;
        self.base = base;
        self.base_gone = 0;
        self.delta_len = 0;
    }
}

/// Hamming-LSH index over CLKs of one length.
///
/// Storage: per table, 4 bytes per indexed filter in one array grouped by bucket, plus one
/// 4-byte offset per possible key (`2^K` of them, at most `2^`[`MAX_DIRECT_KEY_BITS`]): exactly
/// `4·L` bytes per filter — 120 at the default `L = 30` — plus 4 MiB per table at `K = 20`,
/// and a small delta of recent insertions until the next rebuild.
///
/// Contract: ids are below `u32::MAX`; an id is removed with the filter it was inserted with
/// (the index does not keep filters); inserting the same id twice indexes it twice.
/// [`LshIndex::candidates`] returns every indexed id that agrees with the query on all sampled
/// positions of at least one table — so an identical filter is always returned — sorted and
/// without duplicates.
#[derive(Debug)]
pub struct LshIndex {
    params: LshParams,
    clk_bits: u32,
    tables: Vec<Table>,
    len: usize,
}

impl LshIndex {
    /// An empty index sampling from all `clk_bits` positions (no frequencies known, nothing
    /// skipped).
    pub fn new(params: LshParams, clk_bits: u32) -> Result<LshIndex, String> {
        Self::with_frequencies(params, clk_bits, &[])
    }

    /// An empty index that never samples the `params.skip_most_frequent` positions most often set
    /// according to `frequencies` (from [`bit_frequencies`] over the indexed filters or a sample of
    /// them; ties go to the lower position). Empty `frequencies` skip nothing.
    pub fn with_frequencies(params: LshParams, clk_bits: u32, frequencies: &[u32]) -> Result<LshIndex, String> {
        params.check(clk_bits)?;
        let mut allowed: Vec<u32> = (0..clk_bits).collect();
        if !frequencies.is_empty() && params.skip_most_frequent > 0 {
            if frequencies.len() != clk_bits as usize {
                return Err(format!("{} frequencies for {clk_bits}-bit filters", frequencies.len()));
            }
            let mut by_freq: Vec<u32> = (0..clk_bits).collect();
            by_freq.sort_by(|a, b| frequencies[*b as usize].cmp(&frequencies[*a as usize]).then(a.cmp(b)));
            let skipped: HashSet<u32> = by_freq[..params.skip_most_frequent as usize].iter().copied().collect();
            allowed.retain(|p| !skipped.contains(p));
        }
        let mut state = params.seed;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            splitmix(state)
        };
        let k = params.bits_per_key as usize;
        let slots = 1usize << params.bits_per_key.min(MAX_DIRECT_KEY_BITS);
        let tables = (0..params.tables)
            .map(|_| {
                // Partial Fisher–Yates: K distinct positions, unbiased by rejection.
                let mut pool = allowed.clone();
                for i in 0..k {
                    let span = (pool.len() - i) as u64;
                    let zone = u64::MAX - u64::MAX % span;
                    let r = loop {
                        let x = next();
                        if x < zone {
                            break x % span;
                        }
                    };
                    pool.swap(i, i + r as usize);
                }
                pool.truncate(k);
                Table::new(pool, slots)
            })
            .collect();
        Ok(LshIndex { params, clk_bits, tables, len: 0 })
    }

    /// An index holding `items`, skipping the positions most frequent among them.
    pub fn build<'a>(params: LshParams, clk_bits: u32, items: impl IntoIterator<Item = (u32, &'a [u64])> + Clone) -> Result<LshIndex, String> {
        let freq = bit_frequencies(items.clone().into_iter().map(|(_, w)| w), clk_bits);
        let mut index = Self::with_frequencies(params, clk_bits, &freq)?;
        let all: Vec<(u32, &[u64])> = items.into_iter().collect();
        index.insert_many(&all);
        Ok(index)
    }

    pub fn params(&self) -> &LshParams {
        &self.params
    }

    /// The positions sampled by table `t`.
    pub fn positions(&self, t: usize) -> &[u32] {
        &self.tables[t].positions
    }

    /// Number of insertions not yet removed.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check_words(&self, words: &[u64]) {
        assert_eq!(words.len() * 64, self.clk_bits as usize, "a filter of another length than the index's");
    }

    /// Indexes `id` with its filter (`clk_bits / 64` words).
    pub fn insert(&mut self, id: u32, words: &[u64]) {
        assert!(id != GONE, "id {id} is reserved");
        self.check_words(words);
        for t in &mut self.tables {
            let slot = t.slot(table_key(&t.positions, words));
            t.push(slot, id);
        }
        self.len += 1;
        if self.tables.iter().any(|t| t.delta_len > 4096 + t.base.len() / 8) {
            self.shrink_to_fit();
        }
    }

    /// Indexes many filters at once — the same as inserting them one by one, the tables filled
    /// in parallel; a large batch rebuilds each table's base with it.
    pub fn insert_many(&mut self, items: &[(u32, &[u64])]) {
        use rayon::prelude::*;
        for (id, w) in items {
            assert!(*id != GONE, "id {id} is reserved");
            self.check_words(w);
        }
        self.tables.par_iter_mut().for_each(|t| {
            let entries: Vec<(u32, u32)> = items.iter().map(|(id, w)| (t.slot(table_key(&t.positions, w)), *id)).collect();
            if t.delta_len + entries.len() > 4096 + t.base.len() / 8 {
                t.rebuild(&entries);
            } else {
                for (slot, id) in entries {
                    t.push(slot, id);
                }
            }
        });
        self.len += items.len();
    }

    /// Removes `id`, which was inserted with `words`. Removing what is not there does nothing.
    pub fn remove(&mut self, id: u32, words: &[u64]) {
        self.check_words(words);
        let mut found = false;
        for t in &mut self.tables {
            let slot = t.slot(table_key(&t.positions, words));
            found |= t.unlink(slot, id);
            if t.base_gone > 4096 + t.base.len() / 8 {
                t.rebuild(&[]);
            }
        }
        if found {
            self.len -= 1;
        }
    }

    /// Every indexed id meeting `words` in at least one table, sorted, without duplicates.
    pub fn candidates(&self, words: &[u64]) -> Vec<u32> {
        self.check_words(words);
        let mut out = Vec::new();
        for t in &self.tables {
            t.for_each(t.slot(table_key(&t.positions, words)), |id| out.push(id));
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Number of tables (L).
    pub fn tables(&self) -> usize {
        self.tables.len()
    }

    /// The bucket of `words` in table `t`: a number shared by exactly the filters that meet
    /// `words` in that table (and, past [`MAX_DIRECT_KEY_BITS`] bits per key, rare others).
    pub fn table_key(&self, t: usize, words: &[u64]) -> u64 {
        self.check_words(words);
        let table = &self.tables[t];
        u64::from(table.slot(table_key(&table.positions, words)))
    }

    /// Appends the ids in bucket `key` (from [`LshIndex::table_key`]) of table `t` to `out`.
    pub fn bucket_into(&self, t: usize, key: u64, out: &mut Vec<u32>) {
        self.tables[t].for_each(key as u32, |id| out.push(id));
    }

    /// Merges every table's delta into its base (after a bulk load).
    pub fn shrink_to_fit(&mut self) {
        use rayon::prelude::*;
        self.tables.par_iter_mut().for_each(|t| {
            if t.delta_len > 0 || t.base_gone > 0 {
                t.rebuild(&[]);
            }
        });
    }

    /// Size of the largest bucket: candidates a query can get from one table at most.
    pub fn largest_bucket(&self) -> usize {
        self.tables
            .iter()
            .flat_map(|t| (0..t.slots as u32).map(move |s| {
                let mut n = 0;
                t.for_each(s, |_| n += 1);
                n
            }))
            .max()
            .unwrap_or(0)
    }

    /// Bytes held by the tables (base, offsets and delta).
    pub fn memory_bytes(&self) -> usize {
        self.tables
            .iter()
            .map(|t| (t.base.capacity() + t.offsets.capacity() + t.positions.len()) * 4 + t.delta.len() * 40 + t.delta_len * 4)
            .sum()
    }
}

/// An exact token in eight bytes: its kind in the top byte, the first seven bytes of its keyed
/// value below. Token values are HMAC-SHA256 outputs (uniform), so two different values of one
/// kind share a compact form with probability 2⁻⁵⁶ — over 10¹⁰ pairs, a chance of about 10⁻⁷
/// of one spurious agreement. The linker compares and indexes tokens in this form (it is what
/// keeps ten million indexed items within memory); 0 is never a compact token.
pub fn compact_token(t: &Token) -> u64 {
    let mut v = [0u8; 8];
    v[1..].copy_from_slice(&t.value[..7]);
    ((t.kind as u8 as u64).max(1) << 56) | u64::from_be_bytes(v)
}

/// The kind of a compact token.
pub fn compact_kind(t: u64) -> i32 {
    (t >> 56) as i32
}

/// Marks a [`TokenIndex`] entry that points into its shared lists.
const MANY: u32 = 1 << 31;

/// Exact tokens (in [`compact_token`] form) → the ids holding them. Tokens of different kinds
/// never meet.
///
/// Most tokens are held by one item, so a token maps straight to its id (a 16-byte slot); a
/// token held by several points into a list of ids instead. Ids are below 2³¹.
#[derive(Debug, Default)]
pub struct TokenIndex {
    map: KeyMap<u64, u32>,
    many: Vec<Vec<u32>>,
    free: Vec<u32>,
}

impl TokenIndex {
    pub fn new() -> TokenIndex {
        TokenIndex::default()
    }

    /// Indexes `id` (below 2³¹) under each of its tokens.
    pub fn insert(&mut self, id: u32, tokens: &[u64]) {
        assert!(id < MANY, "token index ids are below 2^31");
        for &t in tokens {
            match self.map.get_mut(&t) {
                None => {
                    self.map.insert(t, id);
                }
                Some(v) if *v & MANY == 0 => {
                    let list = vec![*v, id];
                    let at = match self.free.pop() {
                        Some(i) => {
                            self.many[i as usize] = list;
                            i
                        }
                        None => {
                            self.many.push(list);
                            (self.many.len() - 1) as u32
                        }
                    };
                    *v = MANY | at;
                }
                Some(v) => self.many[(*v & !MANY) as usize].push(id),
            }
        }
    }

    /// Removes `id` from under each of `tokens` (the tokens it was inserted with).
    pub fn remove(&mut self, id: u32, tokens: &[u64]) {
        for t in tokens {
            let Some(v) = self.map.get_mut(t) else { continue };
            if *v & MANY == 0 {
                if *v == id {
                    self.map.remove(t);
                }
                continue;
            }
            let at = (*v & !MANY) as usize;
            let list = &mut self.many[at];
            if let Some(i) = list.iter().position(|x| *x == id) {
                list.swap_remove(i);
            }
            if list.len() == 1 {
                *v = list[0];
                self.many[at] = Vec::new();
                self.free.push(at as u32);
            }
        }
    }

    /// Ids holding the token.
    pub fn get(&self, token: u64) -> &[u32] {
        match self.map.get(&token) {
            None => &[],
            Some(v) if *v & MANY == 0 => std::slice::from_ref(v),
            Some(v) => &self.many[(*v & !MANY) as usize],
        }
    }

    /// Every token held by more than one id, with its holders.
    pub fn shared(&self) -> impl Iterator<Item = (u64, &[u32])> + '_ {
        self.map.iter().filter(|(_, v)| **v & MANY != 0).map(|(t, v)| (*t, self.many[(*v & !MANY) as usize].as_slice()))
    }

    /// Every id sharing at least one of `tokens`, sorted, without duplicates.
    pub fn candidates(&self, tokens: &[u64]) -> Vec<u32> {
        let mut out: Vec<u32> = tokens.iter().flat_map(|t| self.get(*t).iter().copied()).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Number of distinct tokens indexed.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Estimated bytes held (slots and shared lists).
    pub fn memory_bytes(&self) -> usize {
        self.map.capacity() * 17 + self.many.iter().map(|v| 24 + v.capacity() * 4).sum::<usize>()
    }
}

fn unordered(a: u64, b: u64) -> (u64, u64) {
    if a <= b { (a, b) } else { (b, a) }
}

/// Share of `true_pairs` found among `candidate_pairs` (pairs are unordered; duplicates count
/// once). 1 when there are no true pairs.
pub fn pair_completeness(true_pairs: &[(u64, u64)], candidate_pairs: &[(u64, u64)]) -> f64 {
    let truth: HashSet<(u64, u64)> = true_pairs.iter().map(|&(a, b)| unordered(a, b)).collect();
    if truth.is_empty() {
        return 1.0;
    }
    let found: HashSet<(u64, u64)> =
        candidate_pairs.iter().map(|&(a, b)| unordered(a, b)).filter(|p| truth.contains(p)).collect();
    found.len() as f64 / truth.len() as f64
}

/// `1 − candidates / (n_a · n_b)`: the share of the comparisons of two sets of `n_a` and `n_b`
/// items that blocking saves. For one set of `n` items compared with itself, pass
/// `n_a = n, n_b = (n − 1) / 2` — or use [`reduction_ratio_within`].
pub fn reduction_ratio(n_a: u64, n_b: u64, candidate_pairs: u64) -> f64 {
    let all = n_a as f64 * n_b as f64;
    if all <= 0.0 { 0.0 } else { 1.0 - candidate_pairs as f64 / all }
}

/// `1 − candidates / (n (n − 1) / 2)`: the reduction ratio of one set of `n` items compared with
/// itself (deduplication, or a federation linked as a whole).
pub fn reduction_ratio_within(n: u64, candidate_pairs: u64) -> f64 {
    let all = n as f64 * (n as f64 - 1.0) / 2.0;
    if all <= 0.0 { 0.0 } else { 1.0 - candidate_pairs as f64 / all }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic test stream.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            splitmix(self.0)
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn random_filter(rng: &mut Rng, fill: f64) -> Vec<u64> {
        let mut w = vec![0u64; 16];
        for p in 0..1024 {
            if rng.unit() < fill {
                w[p / 64] |= 1 << (p % 64);
            }
        }
        w
    }

    /// Each bit flipped independently with probability `1 − s`: agreement `s` on every sample.
    fn perturbed(rng: &mut Rng, w: &[u64], s: f64) -> Vec<u64> {
        let mut out = w.to_vec();
        for p in 0..1024 {
            if rng.unit() >= s {
                out[p / 64] ^= 1 << (p % 64);
            }
        }
        out
    }

    #[test]
    fn identical_filters_always_collide() {
        let mut rng = Rng(1);
        for params in [LshParams::default(), LshParams { bits_per_key: 100, tables: 3, skip_most_frequent: 0, seed: 9 }] {
            let filters: Vec<Vec<u64>> = (0..300).map(|_| random_filter(&mut rng, 0.45)).collect();
            let index = LshIndex::build(params, 1024, filters.iter().enumerate().map(|(i, w)| (i as u32, w.as_slice()))).unwrap();
            for (i, w) in filters.iter().enumerate() {
                assert!(index.candidates(w).contains(&(i as u32)), "filter {i} does not meet itself");
            }
        }
    }

    #[test]
    fn collision_rate_follows_the_theory() {
        let params = LshParams { bits_per_key: 16, tables: 10, skip_most_frequent: 0, seed: LSH_SEED };
        let mut rng = Rng(7);
        for s in [0.80, 0.88, 0.95] {
            let n = 2000;
            let mut index = LshIndex::new(params, 1024).unwrap();
            let mut queries = Vec::new();
            for id in 0..n {
                let a = random_filter(&mut rng, 0.45);
                queries.push(perturbed(&mut rng, &a, s));
                index.insert(id, &a);
            }
            let met = queries.iter().enumerate().filter(|(id, q)| index.candidates(q).contains(&(*id as u32))).count();
            let p = params.collision_probability(s);
            let rate = met as f64 / n as f64;
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!((rate - p).abs() < 4.0 * sd + 0.005, "s = {s}: empirical {rate}, theory {p}");
        }
        // Unrelated filters rarely meet.
        let mut index = LshIndex::new(params, 1024).unwrap();
        for id in 0..2000 {
            index.insert(id, &random_filter(&mut rng, 0.45));
        }
        let hits: usize = (0..200).map(|_| index.candidates(&random_filter(&mut rng, 0.45)).len()).sum();
        let expected = 400_000.0 * params.collision_probability(0.45 * 0.45 + 0.55 * 0.55);
        assert!((hits as f64) < 2.0 * expected + 10.0, "{hits} unrelated candidates for 200 × 2000 pairs; about {expected} expected");
    }

    #[test]
    fn inserting_many_at_once_equals_inserting_one_by_one() {
        let mut rng = Rng(12);
        let filters: Vec<Vec<u64>> = (0..500).map(|i| if i % 3 == 0 { vec![0; 16] } else { random_filter(&mut rng, 0.3) }).collect();
        let params = LshParams { bits_per_key: 6, tables: 7, skip_most_frequent: 0, seed: 5 };
        let mut one = LshIndex::new(params, 1024).unwrap();
        let mut many = LshIndex::new(params, 1024).unwrap();
        for (i, f) in filters[..100].iter().enumerate() {
            one.insert(i as u32, f);
            many.insert(i as u32, f);
        }
        for (i, f) in filters.iter().enumerate().skip(100) {
            one.insert(i as u32, f);
        }
        let rest: Vec<(u32, &[u64])> = filters.iter().enumerate().skip(100).map(|(i, f)| (i as u32, f.as_slice())).collect();
        many.insert_many(&rest);
        assert_eq!(one.len(), many.len());
        for f in &filters {
            assert_eq!(one.candidates(f), many.candidates(f));
        }
        for t in 0..7 {
            for f in &filters {
                let k = one.table_key(t, f);
                let (mut a, mut b) = (Vec::new(), Vec::new());
                one.bucket_into(t, k, &mut a);
                many.bucket_into(t, k, &mut b);
                a.sort_unstable();
                b.sort_unstable();
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn base_and_delta_give_exactly_the_colliding_ids_through_rebuilds_and_removals() {
        let mut rng = Rng(21);
        let filters: Vec<Vec<u64>> = (0..9000).map(|_| random_filter(&mut rng, 0.4)).collect();
        let params = LshParams { bits_per_key: 10, tables: 3, skip_most_frequent: 0, seed: 8 };
        let mut index = LshIndex::new(params, 1024).unwrap();
        let mut live = vec![false; filters.len()];
        // One by one past the rebuild threshold, then in bulk, removing some from base and delta.
        for (i, f) in filters[..6000].iter().enumerate() {
            index.insert(i as u32, f);
            live[i] = true;
        }
        assert!(index.tables.iter().all(|t| !t.base.is_empty()), "a rebuild happened");
        for i in (0..6000).step_by(7) {
            index.remove(i as u32, &filters[i]);
            live[i] = false;
        }
        let rest: Vec<(u32, &[u64])> = (6000..9000).map(|i| (i as u32, filters[i].as_slice())).collect();
        index.insert_many(&rest);
        live[6000..].iter_mut().for_each(|x| *x = true);
        for i in (6000..9000).step_by(5) {
            index.remove(i as u32, &filters[i]);
            live[i] = false;
        }
        assert_eq!(index.len(), live.iter().filter(|x| **x).count());
        for q in filters.iter().step_by(97) {
            let want: Vec<u32> = (0..filters.len())
                .filter(|&i| live[i] && (0..3).any(|t| index.table_key(t, q) == index.table_key(t, &filters[i])))
                .map(|i| i as u32)
                .collect();
            assert_eq!(index.candidates(q), want);
        }
        index.shrink_to_fit();
        assert!(index.tables.iter().all(|t| t.delta_len == 0 && t.base_gone == 0));
        assert_eq!(index.candidates(&filters[1]), {
            let mut v: Vec<u32> = (0..filters.len() as u32)
                .filter(|&i| live[i as usize] && (0..3).any(|t| index.table_key(t, &filters[1]) == index.table_key(t, &filters[i as usize])))
                .collect();
            v.sort_unstable();
            v
        });
    }

    #[test]
    fn remove_works() {
        let mut rng = Rng(3);
        let mut index = LshIndex::new(LshParams::default(), 1024).unwrap();
        let a = random_filter(&mut rng, 0.4);
        let b = perturbed(&mut rng, &a, 0.99);
        index.insert(1, &a);
        index.insert(2, &b);
        index.insert(3, &a);
        assert_eq!(index.candidates(&a), vec![1, 2, 3]);
        index.remove(1, &a);
        assert_eq!(index.candidates(&a), vec![2, 3]);
        assert_eq!(index.len(), 2);
        index.remove(1, &a); // not there any more
        assert_eq!(index.len(), 2);
        index.remove(2, &b);
        index.remove(3, &a);
        assert!(index.is_empty() && index.candidates(&a).is_empty() && index.candidates(&b).is_empty());
        assert!(index.tables.iter().all(|t| t.live() == 0), "every bucket is empty again");
    }

    #[test]
    fn the_most_frequent_positions_are_never_sampled_and_sampling_is_deterministic() {
        let mut freq = vec![1u32; 1024];
        for p in 0..100 {
            freq[p * 10] = 1000; // the 100 most frequent: multiples of 10 below 1000
        }
        let params = LshParams { bits_per_key: 32, tables: 30, skip_most_frequent: 100, seed: LSH_SEED };
        let index = LshIndex::with_frequencies(params, 1024, &freq).unwrap();
        for t in 0..30 {
            let pos = index.positions(t);
            assert_eq!(pos.len(), 32);
            assert!(pos.iter().all(|p| *p >= 1000 || p % 10 != 0), "table {t} samples a skipped position");
            let distinct: HashSet<_> = pos.iter().collect();
            assert_eq!(distinct.len(), 32, "positions within a table are distinct");
        }
        let again = LshIndex::with_frequencies(params, 1024, &freq).unwrap();
        assert!((0..30).all(|t| index.positions(t) == again.positions(t)));
        let other = LshIndex::with_frequencies(LshParams { seed: 1, ..params }, 1024, &freq).unwrap();
        assert!((0..30).any(|t| index.positions(t) != other.positions(t)));
    }

    #[test]
    fn bad_parameters_are_explained() {
        let p = LshParams { bits_per_key: 0, ..LshParams::default() };
        assert!(LshIndex::new(p, 1024).unwrap_err().contains("bits_per_key"));
        let p = LshParams { bits_per_key: 100, skip_most_frequent: 1000, ..LshParams::default() };
        assert!(LshIndex::new(p, 1024).unwrap_err().contains("not enough positions"));
        assert!(LshIndex::with_frequencies(LshParams::default(), 1024, &[1, 2]).is_err());
        assert!(LshIndex::new(LshParams::default(), 1000).is_err());
    }

    #[test]
    fn tokens_meet_only_their_own_kind_and_value() {
        let t = |kind, v| compact_token(&Token { kind, value: [v; 32] });
        let mut index = TokenIndex::new();
        index.insert(1, &[t(1, 7), t(3, 9)]);
        index.insert(2, &[t(1, 7)]);
        index.insert(3, &[t(2, 7)]);
        assert_eq!(index.candidates(&[t(1, 7)]), vec![1, 2]);
        assert_eq!(index.candidates(&[t(3, 9), t(1, 7)]), vec![1, 2]);
        assert!(index.candidates(&[t(1, 8)]).is_empty());
        index.remove(1, &[t(1, 7), t(3, 9)]);
        assert_eq!(index.candidates(&[t(1, 7), t(3, 9)]), vec![2]);
        assert_eq!(index.len(), 2);
        // The kind survives compaction; values differing after the seventh byte are one value.
        assert_eq!(compact_kind(t(3, 9)), 3);
        let mut far = Token { kind: 1, value: [7; 32] };
        far.value[10] = 0;
        assert_eq!(compact_token(&far), t(1, 7));
        far.value[6] = 0;
        assert_ne!(compact_token(&far), t(1, 7));
    }

    #[test]
    fn metrics() {
        let truth = [(1, 2), (3, 4), (5, 6), (7, 8)];
        let cand = [(2, 1), (4, 3), (1, 9), (2, 1)];
        assert_eq!(pair_completeness(&truth, &cand), 0.5);
        assert_eq!(pair_completeness(&[], &cand), 1.0);
        assert_eq!(reduction_ratio(100, 200, 200), 0.99);
        assert!((reduction_ratio_within(101, 505) - 0.9).abs() < 1e-12);
    }

    #[test]
    fn the_documented_probabilities_hold() {
        assert_eq!((LshParams::default().bits_per_key, LshParams::default().tables), (20, 30));
        let d = LshParams { bits_per_key: 16, tables: 40, ..LshParams::default() };
        let s = |dice| bit_agreement(dice, 0.36);
        assert!(d.collision_probability(s(0.90)) > 0.9999);
        assert!(d.collision_probability(s(0.85)) > 0.999);
        assert!(d.collision_probability(s(0.80)) > 0.968);
        assert!(d.collision_probability(0.36 * 0.36 + 0.64 * 0.64) < 2.1e-3);
        let p = LshParams { bits_per_key: 12, tables: 50, ..d };
        assert!(p.collision_probability(s(0.80)) > 0.999);
        let p = LshParams { bits_per_key: 20, tables: 30, ..d };
        assert!(p.collision_probability(s(0.80)) < 0.75);
    }
}
