//! The Dice kernel: many filters in one contiguous matrix, and exact |A∧B| counts at machine
//! speed, so that the linker can compare one encoding against every stored one, or two sets
//! against each other, without a per-pair allocation or division.
//!
//! What it guarantees:
//! - **Every variant gives the same answer.** A [`KernelKind`] only changes speed: all variants
//!   compute the exact integer popcount of `A AND B`, and the threshold decision is made after the
//!   kernel, by one shared exact rule. The tests hold every variant the CPU running them has to
//!   a naive count and to [`KernelKind::Scalar`], bit for bit.
//! - **The threshold decision is exact.** A pair is selected iff `2·|A∧B| ≥ t·(|A|+|B|)` holds
//!   exactly for the `f32` threshold `t` — i.e. Dice ≥ t with no rounding at the boundary — and a
//!   pair of two empty filters (Dice 0 by definition) iff `t = 0`. The reported Dice is
//!   `2·|A∧B| / (|A|+|B|)` rounded to `f32`, never below `t` for a selected pair.
//! - **Bit order is the wire's.** Rows are `u64` words as produced by
//!   [`ponte_proto::bits::to_words`]; Dice here equals [`ponte_proto::bits::dice_words`].
//! - **Bounded.** Filters have 1 to [`MAX_WORDS_PER_FILTER`] words; a matrix holds at most
//!   [`MAX_ROWS`] filters; [`dice_all_pairs`] stops with an error past `max_pairs` results.
//!
//! Variants are chosen at run time ([`KernelKind::detect`]), so binaries are built for the portable
//! x86-64 baseline and still use AVX2 or AVX-512 where the CPU has it. Each wide variant lives in
//! `#[target_feature]` functions that are only entered after the feature check. The hot paths
//! avoid closures: a closure does not always inline into a `#[target_feature]` function, and a
//! call per row halved the speed of one variant during tuning.
//!
//! Layout: each row is padded with zero words to a multiple of 8 words (one 64-byte, 64-byte
//! aligned chunk), and the matrix keeps [`TILE`]` - 1` zero rows of slack after the last row, so
//! the kernels always work on whole chunks and whole groups of [`TILE`] rows. Padding is zero, so it
//! never changes a count.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

/// Longest filter the kernel accepts, in 64-bit words (16,384 bits). Linkage filters are 500 to
/// 4096 bits; the bound keeps every per-row count below 2^16, which the wide variants rely on.
pub const MAX_WORDS_PER_FILTER: usize = 256;
/// Most filters one matrix holds: row numbers are `u32`.
pub const MAX_ROWS: usize = u32::MAX as usize;
/// Rows of one side compared together against one row of the other (the micro-tile).
pub const TILE: usize = 8;

const CHUNK_WORDS: usize = 8;
const MAX_CHUNKS: usize = MAX_WORDS_PER_FILTER / CHUNK_WORDS;
/// Rows of A that one parallel task takes in [`dice_all_pairs`].
const SUPER_TILE: usize = 64;
/// Bytes of B that one block of [`dice_all_pairs`] spans: small enough to stay in L2 while the
/// micro-tiles of a super-tile pass over it.
const B_BLOCK_BYTES: usize = 128 * 1024;
/// Rows counted per kernel call inside [`dice_above`].
const SCAN_ROWS: usize = 512;

/// Eight words, 64-byte aligned: the unit of storage and of every wide load.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
struct Chunk([u64; CHUNK_WORDS]);

/// Why a kernel call refused its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    #[error("a filter must have 1 to {MAX_WORDS_PER_FILTER} words, not {0}")]
    FilterLength(usize),
    #[error("filter has {got} words; this matrix holds {expected}-word filters")]
    LengthMismatch { expected: usize, got: usize },
    #[error("the matrix is full ({MAX_ROWS} filters)")]
    Full,
    #[error("threshold {0} is not a number between 0 and 1")]
    Threshold(f32),
    #[error("rows {start}..{end} are not within the matrix's {len} rows")]
    Rows { start: usize, end: usize, len: usize },
    #[error("output has room for {got} counts, the row range has {expected}")]
    Output { expected: usize, got: usize },
    #[error("the {0} kernel is not available on this CPU")]
    Unavailable(KernelKind),
    #[error("more than {0} candidate pairs reach the threshold")]
    TooManyPairs(usize),
}

/// Many filters of the same length, stored contiguously with their popcounts.
///
/// Rows are numbered from 0 in push order; [`FilterMatrix::swap_remove`] moves the last row into
/// the gap, as `Vec::swap_remove` does, so callers that keep row numbers must follow the move.
#[derive(Clone, Debug)]
pub struct FilterMatrix {
    words: usize,
    chunks: usize,
    rows: usize,
    /// `(rows + TILE - 1) * chunks` chunks: the rows, then `TILE - 1` zero rows of slack.
    data: Vec<Chunk>,
    popcounts: Vec<u32>,
}

impl FilterMatrix {
    /// An empty matrix for filters of `words_per_filter` words.
    pub fn new(words_per_filter: usize) -> Result<FilterMatrix, KernelError> {
        FilterMatrix::with_capacity(words_per_filter, 0)
    }

    /// An empty matrix with room for `rows` filters before it reallocates.
    pub fn with_capacity(words_per_filter: usize, rows: usize) -> Result<FilterMatrix, KernelError> {
        if !(1..=MAX_WORDS_PER_FILTER).contains(&words_per_filter) {
            return Err(KernelError::FilterLength(words_per_filter));
        }
        let chunks = words_per_filter.div_ceil(CHUNK_WORDS);
        let rows = rows.min(MAX_ROWS);
        let mut data = Vec::with_capacity((rows + TILE - 1) * chunks);
        data.resize((TILE - 1) * chunks, Chunk::default());
        Ok(FilterMatrix { words: words_per_filter, chunks, rows: 0, data, popcounts: Vec::with_capacity(rows) })
    }

    pub fn words_per_filter(&self) -> usize {
        self.words
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends a filter given as words (see [`ponte_proto::bits::to_words`]) and returns its row.
    pub fn push(&mut self, filter: &[u64]) -> Result<usize, KernelError> {
        if filter.len() != self.words {
            return Err(KernelError::LengthMismatch { expected: self.words, got: filter.len() });
        }
        if self.rows == MAX_ROWS {
            return Err(KernelError::Full);
        }
        let row = self.rows;
        // The first slack row becomes the new row; a new zero row restores the slack.
        let start = row * self.chunks;
        let words = chunk_words_mut(&mut self.data[start..start + self.chunks]);
        words[..self.words].copy_from_slice(filter);
        self.data.extend(std::iter::repeat_n(Chunk::default(), self.chunks));
        self.popcounts.push(filter.iter().map(|w| w.count_ones()).sum());
        self.rows += 1;
        Ok(row)
    }

    /// Writes `filter` into row `i`, first appending zero rows up to `i` if the matrix is
    /// shorter: rows can be addressed by a caller's own dense numbering (a zero row has Dice 0
    /// with everything, so it never passes a positive threshold).
    pub fn set_row(&mut self, i: usize, filter: &[u64]) -> Result<(), KernelError> {
        if filter.len() != self.words {
            return Err(KernelError::LengthMismatch { expected: self.words, got: filter.len() });
        }
        if i >= MAX_ROWS {
            return Err(KernelError::Full);
        }
        if i >= self.rows {
            let grow = i + 1 - self.rows;
            self.data.extend(std::iter::repeat_n(Chunk::default(), grow * self.chunks));
            self.popcounts.extend(std::iter::repeat_n(0, grow));
            self.rows = i + 1;
        }
        let start = i * self.chunks;
        let words = chunk_words_mut(&mut self.data[start..start + self.chunks]);
        words[..self.words].copy_from_slice(filter);
        self.popcounts[i] = filter.iter().map(|w| w.count_ones()).sum();
        Ok(())
    }

    /// Removes every row, keeping the allocation.
    pub fn clear_all(&mut self) {
        self.data.clear();
        self.data.resize((TILE - 1) * self.chunks, Chunk::default());
        self.popcounts.clear();
        self.rows = 0;
    }

    /// Zeroes row `i` (nothing if it does not exist).
    pub fn clear_row(&mut self, i: usize) {
        if i < self.rows {
            let c = self.chunks;
            self.data[i * c..(i + 1) * c].fill(Chunk::default());
            self.popcounts[i] = 0;
        }
    }

    /// Releases spare capacity.
    pub fn shrink_to_fit(&mut self) {
        self.data.shrink_to_fit();
        self.popcounts.shrink_to_fit();
    }

    /// Appends a filter given as its wire bytes (little-endian, bit `i` in byte `i / 8`).
    pub fn push_bytes(&mut self, bits: &[u8]) -> Result<usize, KernelError> {
        let words = ponte_proto::bits::to_words(bits);
        self.push(&words)
    }

    /// The filter in row `i`, without padding. Panics if `i >= len()`, like slice indexing.
    pub fn row(&self, i: usize) -> &[u64] {
        assert!(i < self.rows, "row {i} of a {}-row matrix", self.rows);
        &chunk_words(self.row_chunks(i))[..self.words]
    }

    /// Number of set bits of row `i`. Panics if `i >= len()`.
    pub fn popcount(&self, i: usize) -> u32 {
        self.popcounts[i]
    }

    /// Removes row `i`; the last row takes its number. Panics if `i >= len()`.
    pub fn swap_remove(&mut self, i: usize) {
        assert!(i < self.rows, "row {i} of a {}-row matrix", self.rows);
        let last = self.rows - 1;
        let c = self.chunks;
        if i != last {
            self.data.copy_within(last * c..(last + 1) * c, i * c);
        }
        self.popcounts.swap_remove(i);
        // The old last row becomes slack: zero it and drop one slack row from the end.
        self.data[last * c..(last + 1) * c].fill(Chunk::default());
        self.data.truncate(self.data.len() - c);
        self.rows -= 1;
    }

    /// Heap memory held (allocated capacity, not only what is in use), in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity() * size_of::<Chunk>() + self.popcounts.capacity() * size_of::<u32>()
    }

    fn row_chunks(&self, i: usize) -> &[Chunk] {
        &self.data[i * self.chunks..(i + 1) * self.chunks]
    }

    /// Pointer to row `i`, which may be up to `len() + TILE - 1` (slack rows).
    fn row_ptr(&self, i: usize) -> *const Chunk {
        debug_assert!(i < self.rows + TILE);
        // In bounds: `data` holds `rows + TILE - 1` rows.
        self.data[i * self.chunks..].as_ptr()
    }
}

fn chunk_words(chunks: &[Chunk]) -> &[u64] {
    // SAFETY: `Chunk` is `repr(C)` around `[u64; 8]` with size 64 = its alignment, so a slice of
    // chunks is a slice of `8 * len` initialised, suitably aligned words.
    unsafe { std::slice::from_raw_parts(chunks.as_ptr().cast::<u64>(), chunks.len() * CHUNK_WORDS) }
}

fn chunk_words_mut(chunks: &mut [Chunk]) -> &mut [u64] {
    // SAFETY: as in `chunk_words`, with the exclusive borrow carried over.
    unsafe { std::slice::from_raw_parts_mut(chunks.as_mut_ptr().cast::<u64>(), chunks.len() * CHUNK_WORDS) }
}

/// A query padded to whole chunks, on the stack.
struct PaddedQuery {
    chunks: [Chunk; MAX_CHUNKS],
    popcount: u32,
}

impl PaddedQuery {
    fn new(query: &[u64], m: &FilterMatrix) -> Result<PaddedQuery, KernelError> {
        if query.len() != m.words {
            return Err(KernelError::LengthMismatch { expected: m.words, got: query.len() });
        }
        let mut chunks = [Chunk::default(); MAX_CHUNKS];
        chunk_words_mut(&mut chunks)[..query.len()].copy_from_slice(query);
        Ok(PaddedQuery { chunks, popcount: query.iter().map(|w| w.count_ones()).sum() })
    }
}

/// One implementation of the kernel. All give identical results; they differ in speed and in
/// the CPU features they need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelKind {
    /// Portable Rust (`u64::count_ones`) as compiled for the build's baseline target.
    Scalar,
    /// The same loop compiled with the x86 `popcnt` instruction.
    Popcnt,
    /// AVX2: nibble-lookup (`vpshufb`) popcount, eight rows against one.
    Avx2,
    /// AVX-512F with VPOPCNTDQ (`vpopcntq` on 512-bit vectors).
    Avx512,
}

impl KernelKind {
    /// Every variant, slowest first.
    pub const ALL: [KernelKind; 4] = [KernelKind::Scalar, KernelKind::Popcnt, KernelKind::Avx2, KernelKind::Avx512];

    /// Stable name for reports and command lines.
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Scalar => "scalar",
            KernelKind::Popcnt => "popcnt",
            KernelKind::Avx2 => "avx2",
            KernelKind::Avx512 => "avx512-vpopcntdq",
        }
    }

    /// The variant named `name` (see [`KernelKind::name`]), available or not.
    pub fn from_name(name: &str) -> Option<KernelKind> {
        KernelKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this CPU can run the variant.
    pub fn is_available(self) -> bool {
        match self {
            KernelKind::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            KernelKind::Popcnt => std::arch::is_x86_feature_detected!("popcnt"),
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The variants this CPU can run, slowest first.
    pub fn available() -> Vec<KernelKind> {
        KernelKind::ALL.into_iter().filter(|k| k.is_available()).collect()
    }

    /// The fastest variant this CPU can run.
    pub fn detect() -> KernelKind {
        KernelKind::ALL.into_iter().rev().find(|k| k.is_available()).unwrap_or(KernelKind::Scalar)
    }

    fn check(self) -> Result<(), KernelError> {
        if self.is_available() { Ok(()) } else { Err(KernelError::Unavailable(self)) }
    }
}

impl fmt::Display for KernelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Dice coefficient from the counts: `2·and / (a + b)`, 0 when both filters are empty. Equals
/// [`ponte_proto::bits::dice_words`] on the same filters.
pub fn dice_from_counts(and: u32, a: u32, b: u32) -> f64 {
    let s = a + b;
    if s == 0 { 0.0 } else { 2.0 * f64::from(and) / f64::from(s) }
}

/// The selection rule for one threshold `t`: an exact test ([`Rule::selects`]) and a cheap `f32`
/// test ([`Rule::may_select`]) that every selected pair passes, so the kernels screen with the
/// cheap one (eight pairs at a time, in vector registers) and decide with the exact one.
#[derive(Clone, Copy, Debug)]
struct Rule {
    t: f64,
    /// `t` lowered by a relative 2^-20 (0 for tiny `t`). With `2·and` and `s` integers below 2^24
    /// (exact in `f32`), `2·and ≥ t·s` implies `2·and ≥ fl(s·t_low)`: one rounding of a normal
    /// `f32` product is within a relative 2^-24.
    t_low: f32,
}

impl Rule {
    fn new(threshold: f32) -> Result<Rule, KernelError> {
        if !(0.0..=1.0).contains(&threshold) {
            return Err(KernelError::Threshold(threshold));
        }
        let t = f64::from(threshold);
        let t_low = if t < 1e-30 { 0.0 } else { (t * (1.0 - 1.0 / f64::from(1u32 << 20))) as f32 };
        Ok(Rule { t, t_low })
    }

    /// The least `|A∧B|` that selects a pair with `|A|+|B| = s`: the smallest integer `x` with
    /// `2x ≥ t·s`. Exact: `t` has a 24-bit mantissa and `s < 2^16`, so `t·s/2` is exact in `f64`.
    /// Both-empty pairs (Dice 0) pass only at `t = 0`.
    fn least_intersection(&self, s: u32) -> u32 {
        if s == 0 {
            return if self.t == 0.0 { 0 } else { u32::MAX };
        }
        let half = self.t * f64::from(s) / 2.0;
        let floor = half as u32;
        if f64::from(floor) < half { floor + 1 } else { floor }
    }

    /// The exact rule: `2·and ≥ t·s` (and `t = 0` when `s = 0`).
    fn selects(&self, and: u32, s: u32) -> bool {
        and >= self.least_intersection(s)
    }

    /// False only when [`Rule::selects`] is false. `s` is `|A|+|B|` as `f32` (exact).
    #[inline(always)]
    fn may_select(&self, and: u32, s: f32) -> bool {
        2.0 * (and as i32 as f32) >= s * self.t_low
    }

    /// [`Rule::may_select`] for a micro-tile: `pop_a` are the tile rows' popcounts (infinity for
    /// padding rows, which then never pass unless `t_low = 0`).
    #[inline(always)]
    fn may_select_tile(&self, counts: &[u32; TILE], pop_a: &[f32; TILE], pop_b: f32) -> bool {
        let mut any = false;
        for r in 0..TILE {
            any |= self.may_select(counts[r], pop_a[r] + pop_b);
        }
        any
    }
}

/// Writes `popcount(query AND row)` for each row in `rows` into `out` (`out[k]` for row
/// `rows.start + k`).
pub fn intersections(
    kind: KernelKind,
    query: &[u64],
    m: &FilterMatrix,
    rows: Range<usize>,
    out: &mut [u32],
) -> Result<(), KernelError> {
    kind.check()?;
    let q = PaddedQuery::new(query, m)?;
    if rows.start > rows.end || rows.end > m.rows {
        return Err(KernelError::Rows { start: rows.start, end: rows.end, len: m.rows });
    }
    if out.len() != rows.len() {
        return Err(KernelError::Output { expected: rows.len(), got: out.len() });
    }
    count_rows(kind, &q, m, rows.start, out);
    Ok(())
}

/// Appends `(row, dice)` for every row of `m` whose Dice with `query` reaches `threshold`, in
/// row order. The decision is the exact rule of the module documentation.
pub fn dice_above(
    kind: KernelKind,
    query: &[u64],
    m: &FilterMatrix,
    threshold: f32,
    out: &mut Vec<(u32, f32)>,
) -> Result<(), KernelError> {
    kind.check()?;
    let rule = Rule::new(threshold)?;
    let q = PaddedQuery::new(query, m)?;
    let q_pop = q.popcount as i32 as f32;
    let mut counts = [0u32; SCAN_ROWS];
    let mut start = 0;
    while start < m.rows {
        let end = (start + SCAN_ROWS).min(m.rows);
        let counts = &mut counts[..end - start];
        count_rows(kind, &q, m, start, counts);
        let pops = &m.popcounts[start..end];
        for (g, (counts, pops)) in counts.chunks(TILE).zip(pops.chunks(TILE)).enumerate() {
            // Screen whole groups branch-free (vectorised), then decide row by row.
            if let (Ok(c8), Ok(p8)) = (<&[u32; TILE]>::try_from(counts), <&[u32; TILE]>::try_from(pops))
                && !rule.may_select_tile(c8, &p8.map(|p| p as i32 as f32), q_pop)
            {
                continue;
            }
            for (k, (&and, &pop)) in counts.iter().zip(pops).enumerate() {
                if rule.selects(and, q.popcount + pop) {
                    out.push(((start + g * TILE + k) as u32, dice_from_counts(and, q.popcount, pop) as f32));
                }
            }
        }
        start = end;
    }
    Ok(())
}

/// Writes `popcount(query AND row rows[k])` into `out[k]`: the gathered form of
/// [`intersections`], for candidate rows scattered over a large matrix (memory-bound, so one
/// `popcnt` loop serves every variant but the scalar one).
pub fn intersections_at(kind: KernelKind, query: &[u64], m: &FilterMatrix, rows: &[u32], out: &mut [u32]) -> Result<(), KernelError> {
    kind.check()?;
    if query.len() != m.words {
        return Err(KernelError::LengthMismatch { expected: m.words, got: query.len() });
    }
    if out.len() != rows.len() {
        return Err(KernelError::Output { expected: rows.len(), got: out.len() });
    }
    if let Some(&bad) = rows.iter().find(|&&r| r as usize >= m.rows) {
        return Err(KernelError::Rows { start: bad as usize, end: bad as usize + 1, len: m.rows });
    }
    #[cfg(target_arch = "x86_64")]
    if kind != KernelKind::Scalar {
        // SAFETY: every non-scalar kind requires popcnt, checked above.
        unsafe { gather_popcnt(query, m, rows, out) };
        return Ok(());
    }
    gather_portable(query, m, rows, out);
    Ok(())
}

/// How many rows ahead the gathered loops ask for the next rows' cache lines.
const PREFETCH_ROWS: usize = 8;

#[inline(always)]
fn prefetch_row(m: &FilterMatrix, rows: &[u32], k: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(&r) = rows.get(k + PREFETCH_ROWS) {
        let p = m.row_ptr(r as usize).cast::<i8>();
        for c in 0..m.chunks {
            // SAFETY: a prefetch is only a hint; the address is inside the matrix.
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.wrapping_add(c * 64)) };
        }
    }
}

#[inline(always)]
fn gather_portable(query: &[u64], m: &FilterMatrix, rows: &[u32], out: &mut [u32]) {
    for (k, (o, &r)) in out.iter_mut().zip(rows).enumerate() {
        prefetch_row(m, rows, k);
        let row = m.row(r as usize);
        *o = query.iter().zip(row).map(|(a, b)| (a & b).count_ones()).sum();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn gather_popcnt(query: &[u64], m: &FilterMatrix, rows: &[u32], out: &mut [u32]) {
    gather_portable(query, m, rows, out)
}

/// [`dice_all_pairs`] on the calling thread, appending to `out`: for many small blocks (LSH
/// buckets) compared inside an outer parallel loop. No bound on `out` beyond `a.len() · b.len()`.
pub fn dice_pairs_sequential(
    kind: KernelKind,
    a: &FilterMatrix,
    b: &FilterMatrix,
    threshold: f32,
    out: &mut Vec<CandidatePair>,
) -> Result<(), KernelError> {
    kind.check()?;
    let rule = Rule::new(threshold)?;
    if a.words != b.words {
        return Err(KernelError::LengthMismatch { expected: a.words, got: b.words });
    }
    let block = (B_BLOCK_BYTES / (a.chunks * size_of::<Chunk>())).max(TILE);
    let mut b_start = 0;
    while b_start < b.rows {
        let b_rows = b_start..(b_start + block).min(b.rows);
        pair_block(kind, a, 0..a.rows, b, b_rows.clone(), &rule, out);
        b_start = b_rows.end;
    }
    Ok(())
}

/// A pair of rows, one of each matrix, whose Dice reaches the threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CandidatePair {
    /// Row in the first matrix.
    pub a: u32,
    /// Row in the second matrix.
    pub b: u32,
    pub dice: f32,
}

/// Every pair (row of `a`, row of `b`) whose Dice reaches `threshold`, ordered by `a` then `b`.
///
/// Tiled: [`TILE`] rows of `a` against each row of a cache-sized block of `b`, in parallel over
/// groups of `a`'s rows on the current rayon pool (wrap the call in `ThreadPool::install` to choose
/// the threads). Stops with [`KernelError::TooManyPairs`] once more than `max_pairs` pairs are
/// found, so a low threshold cannot exhaust memory.
pub fn dice_all_pairs(
    kind: KernelKind,
    a: &FilterMatrix,
    b: &FilterMatrix,
    threshold: f32,
    max_pairs: usize,
) -> Result<Vec<CandidatePair>, KernelError> {
    kind.check()?;
    let rule = Rule::new(threshold)?;
    if a.words != b.words {
        return Err(KernelError::LengthMismatch { expected: a.words, got: b.words });
    }
    let block = (B_BLOCK_BYTES / (a.chunks * size_of::<Chunk>())).max(TILE);
    let found = AtomicUsize::new(0);
    let parts = (0..a.rows.div_ceil(SUPER_TILE))
        .into_par_iter()
        .map(|s| {
            let a_rows = s * SUPER_TILE..((s + 1) * SUPER_TILE).min(a.rows);
            let mut out = Vec::new();
            let mut b_start = 0;
            while b_start < b.rows {
                let b_rows = b_start..(b_start + block).min(b.rows);
                let before = out.len();
                pair_block(kind, a, a_rows.clone(), b, b_rows.clone(), &rule, &mut out);
                let total = found.fetch_add(out.len() - before, Ordering::Relaxed) + out.len() - before;
                if total > max_pairs {
                    return Err(KernelError::TooManyPairs(max_pairs));
                }
                b_start = b_rows.end;
            }
            out.sort_unstable_by_key(|p| (p.a, p.b));
            Ok(out)
        })
        .collect::<Result<Vec<Vec<CandidatePair>>, KernelError>>()?;
    Ok(parts.concat())
}

// ---- dispatch ----------------------------------------------------------------------------------

/// Calls `$module::$func::<C>(args)` with `C` the chunk count when it is a common one (so the
/// loops are unrolled), else with `C = 0`, which means "read the count at run time".
macro_rules! by_chunks {
    ($chunks:expr, $module:ident :: $func:ident ($($arg:expr),*)) => {
        match $chunks {
            1 => $module::$func::<1>($($arg),*),
            2 => $module::$func::<2>($($arg),*),
            4 => $module::$func::<4>($($arg),*),
            _ => $module::$func::<0>($($arg),*),
        }
    };
}

macro_rules! by_kind {
    ($kind:expr, $chunks:expr, $func:ident ($($arg:expr),*)) => {
        match $kind {
            KernelKind::Scalar => by_chunks!($chunks, scalar::$func($($arg),*)),
            #[cfg(target_arch = "x86_64")]
            KernelKind::Popcnt => by_chunks!($chunks, popcnt::$func($($arg),*)),
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx2 => by_chunks!($chunks, avx2::$func($($arg),*)),
            #[cfg(target_arch = "x86_64")]
            KernelKind::Avx512 => by_chunks!($chunks, avx512::$func($($arg),*)),
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("checked by KernelKind::check"),
        }
    };
}

/// `out[k] = popcount(q AND row first + k)`. Callers have checked `kind` and the bounds.
fn count_rows(kind: KernelKind, q: &PaddedQuery, m: &FilterMatrix, first: usize, out: &mut [u32]) {
    assert!(first + out.len() <= m.rows && kind.is_available());
    if out.is_empty() {
        return;
    }
    // SAFETY: the kind's CPU features are present (asserted); rows `first..first + out.len()`
    // exist and the last group of TILE rows may run into the slack rows, which exist too; the
    // query holds at least `m.chunks` chunks.
    unsafe { by_kind!(kind, m.chunks, count_rows(q.chunks.as_ptr(), m.row_ptr(first), m.chunks, out)) }
}

/// Appends the pairs of `a_rows × b_rows` that `rule` selects. Callers have checked `kind`.
fn pair_block(
    kind: KernelKind,
    a: &FilterMatrix,
    a_rows: Range<usize>,
    b: &FilterMatrix,
    b_rows: Range<usize>,
    rule: &Rule,
    out: &mut Vec<CandidatePair>,
) {
    assert!(a_rows.end <= a.rows && b_rows.end <= b.rows && a.chunks == b.chunks && kind.is_available());
    // SAFETY: features present (asserted); every group of TILE rows of `a` starting in `a_rows`
    // lies within its rows and slack; every row of `b_rows` exists; both have `a.chunks` chunks.
    unsafe { by_kind!(kind, a.chunks, pair_block(a, a_rows, b, b_rows, rule, out)) }
}

/// Generates one variant's drivers around its micro-kernels: `$rows8` counts TILE consecutive rows
/// against one query; `$prepare` turns TILE rows of A into whatever `$tile8` reads (the rows
/// themselves, or a pre-processed copy in the scratch buffer) and `$tile8` counts them against one
/// row of B. Both return the TILE counts in the variant's own form, which `$screen` checks against
/// [`Rule::may_select`] and `$unpack` turns into numbers. `$attr` give the drivers the variant's
/// CPU features, so the micro-kernels inline.
macro_rules! variant {
    (
        $module:ident,
        rows: $rows8:ident,
        tile: $prepare:ident, $tile8:ident,
        counts: $screen:ident, $unpack:ident
        $(, $attr:meta)*
    ) => {
        mod $module {
            use super::*;

            /// `out[k] = popcount(q AND row k)` for the rows at `rows`.
            ///
            /// # Safety
            /// The CPU has the variant's features; `q` points to `c` chunks; `rows` points to
            /// `out.len()` rows of `c` chunks followed by at least `TILE - 1` more readable rows.
            $(#[$attr])*
            pub(super) unsafe fn count_rows<const C: usize>(q: *const Chunk, rows: *const Chunk, c: usize, out: &mut [u32]) {
                let c = if C == 0 { c } else { C };
                let mut row = rows;
                for group in out.chunks_mut(TILE) {
                    // SAFETY: per the contract, TILE rows are readable from `row`.
                    let counts = unsafe { super::$rows8::<C>(row, c, q) };
                    group.copy_from_slice(&super::$unpack(&counts)[..group.len()]);
                    row = row.wrapping_add(TILE * c);
                }
            }

            /// Appends the pairs of `a_rows × b_rows` that `rule` selects.
            ///
            /// # Safety
            /// The CPU has the variant's features; the ranges are within the matrices, which
            /// have the same chunk count.
            $(#[$attr])*
            pub(super) unsafe fn pair_block<const C: usize>(
                a: &FilterMatrix,
                a_rows: Range<usize>,
                b: &FilterMatrix,
                b_rows: Range<usize>,
                rule: &Rule,
                out: &mut Vec<CandidatePair>,
            ) {
                let c = if C == 0 { a.chunks } else { C };
                let b_pops = &b.popcounts[b_rows.clone()];
                let b_first = b.row_ptr(b_rows.start);
                let mut scratch = Vec::new();
                let mut a0 = a_rows.start;
                while a0 < a_rows.end {
                    let valid = TILE.min(a_rows.end - a0);
                    // SAFETY: rows a0..a0 + TILE are rows or slack of `a`.
                    let tile = unsafe { super::$prepare::<C>(a.row_ptr(a0), c, &mut scratch) };
                    let mut pop_a = [0u32; TILE];
                    let mut pop_a_f = [f32::INFINITY; TILE];
                    for r in 0..valid {
                        pop_a[r] = a.popcounts[a0 + r];
                        pop_a_f[r] = pop_a[r] as i32 as f32;
                    }
                    for (k, &pop_b) in b_pops.iter().enumerate() {
                        // SAFETY: row b_rows.start + k of `b` exists.
                        let counts = unsafe { super::$tile8::<C>(tile, c, b_first.wrapping_add(k * c)) };
                        if super::$screen(&counts, rule, &pop_a_f, pop_b as i32 as f32) {
                            let counts = super::$unpack(&counts);
                            for r in 0..valid {
                                if rule.selects(counts[r], pop_a[r] + pop_b) {
                                    let dice = dice_from_counts(counts[r], pop_a[r], pop_b) as f32;
                                    let (i, j) = ((a0 + r) as u32, (b_rows.start + k) as u32);
                                    out.push(CandidatePair { a: i, b: j, dice });
                                }
                            }
                        }
                    }
                    a0 += valid;
                }
            }
        }
    };
}

variant!(scalar, rows: count8_portable, tile: tile_as_is, count8_portable, counts: screen_array, unpack_array);
#[cfg(target_arch = "x86_64")]
variant!(
    popcnt,
    rows: count8_portable,
    tile: tile_as_is, count8_portable,
    counts: screen_array, unpack_array,
    target_feature(enable = "popcnt")
);
#[cfg(target_arch = "x86_64")]
variant!(
    avx2,
    rows: count8_avx2_rows,
    tile: split_nibbles_avx2, count8_avx2_tile,
    counts: screen_avx2, unpack_avx2,
    target_feature(enable = "avx2,popcnt")
);
#[cfg(target_arch = "x86_64")]
variant!(
    avx512,
    rows: count8_avx512,
    tile: tile_as_is, count8_avx512,
    counts: screen_array, unpack_array,
    target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")
);

#[inline(always)]
fn screen_array(counts: &[u32; TILE], rule: &Rule, pop_a: &[f32; TILE], pop_b: f32) -> bool {
    rule.may_select_tile(counts, pop_a, pop_b)
}

#[inline(always)]
fn unpack_array(counts: &[u32; TILE]) -> [u32; TILE] {
    *counts
}

/// The tile preparation of kernels that read A's rows as they are.
#[inline(always)]
unsafe fn tile_as_is<const C: usize>(x: *const Chunk, _c: usize, _scratch: &mut Vec<Chunk>) -> *const Chunk {
    x
}

// ---- micro-kernels: popcount(x_r AND y) for the TILE rows x_r at `x` -------------------------
//
// Contract shared by all: `x` points to TILE consecutive rows of `c` chunks each and `y` to one
// row of `c` chunks, all readable; `C` is `c` or 0; `c <= MAX_CHUNKS`.

/// Portable micro-kernel; with the `popcnt` feature in the caller it compiles to `popcnt`.
#[inline(always)]
unsafe fn count8_portable<const C: usize>(x: *const Chunk, c: usize, y: *const Chunk) -> [u32; TILE] {
    let c = if C == 0 { c } else { C };
    // SAFETY: per the contract, TILE·c chunks at `x` and c chunks at `y` are readable.
    let (x, y) = unsafe { (std::slice::from_raw_parts(x, TILE * c), std::slice::from_raw_parts(y, c)) };
    let (x, y) = (chunk_words(x), chunk_words(y));
    let mut out = [0u32; TILE];
    for (r, row) in x.chunks_exact(c * CHUNK_WORDS).enumerate() {
        out[r] = row.iter().zip(y).map(|(a, b)| (a & b).count_ones()).sum();
    }
    out
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// AVX2 popcount: per byte, two 16-entry lookups (`vpshufb`) of its nibbles. Since
/// `(x AND y) AND 0x0f = (x AND 0x0f) AND (y AND 0x0f)` and likewise for the high nibbles, both
/// operands can be split into nibbles before they meet: the tile kernel splits A's tile once
/// ([`split_nibbles_avx2`]) and B's row once per row, leaving per 256 bits of a pair two ANDs, two
/// lookups and two adds. Byte counts add up over at most 8 chunks (≤ 128 per byte) before
/// `vpsadbw` folds them into 64-bit lanes; see [`pack_counts_avx2`] for the final sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
#[inline]
fn nibble_lut() -> __m256i {
    _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
    )
}

/// Copies TILE rows into `scratch` split into nibbles: for source chunk `i` (vectors `2i`,
/// `2i + 1`), vectors `4i + h` hold the low nibbles of vector `2i + h` and `4i + 2 + h` the high
/// ones. Returns the copy.
///
/// # Safety
/// TILE rows of `c` chunks at `x` are readable; the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
#[inline]
unsafe fn split_nibbles_avx2<const C: usize>(x: *const Chunk, c: usize, scratch: &mut Vec<Chunk>) -> *const Chunk {
    let c = if C == 0 { c } else { C };
    scratch.resize(2 * TILE * c, Chunk::default());
    let nibble = _mm256_set1_epi8(0x0f);
    let src = x.cast::<__m256i>();
    let dst = scratch.as_mut_ptr().cast::<__m256i>();
    for i in 0..TILE * c {
        for h in 0..2 {
            // SAFETY: source vector 2i + h is within the TILE rows; destination vectors up to
            // 4i + 3 are within the 2·TILE·c chunks of `scratch`; all 32-byte aligned.
            unsafe {
                let v = _mm256_load_si256(src.add(2 * i + h));
                _mm256_store_si256(dst.add(4 * i + h), _mm256_and_si256(v, nibble));
                _mm256_store_si256(dst.add(4 * i + 2 + h), _mm256_and_si256(_mm256_srli_epi16::<4>(v), nibble));
            }
        }
    }
    scratch.as_ptr()
}

/// Tile micro-kernel: `xs` is a tile split by [`split_nibbles_avx2`] (rows of `2c` chunks),
/// `y` a row of B as stored. Returns the TILE counts as `u16` lanes, in row order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
#[inline]
unsafe fn count8_avx2_tile<const C: usize>(xs: *const Chunk, c: usize, y: *const Chunk) -> __m128i {
    let c = if C == 0 { c } else { C };
    let (xs, y) = (xs.cast::<__m256i>(), y.cast::<__m256i>());
    // SAFETY: the contract of the micro-kernels, with `xs` split (rows of 2c chunks).
    let sums = unsafe {
        [
            tile_row_avx2::<C>(xs, c, y, 0),
            tile_row_avx2::<C>(xs, c, y, 1),
            tile_row_avx2::<C>(xs, c, y, 2),
            tile_row_avx2::<C>(xs, c, y, 3),
            tile_row_avx2::<C>(xs, c, y, 4),
            tile_row_avx2::<C>(xs, c, y, 5),
            tile_row_avx2::<C>(xs, c, y, 6),
            tile_row_avx2::<C>(xs, c, y, 7),
        ]
    };
    pack_counts_avx2(sums)
}

/// 64-bit lane sums of `popcount(x_r AND y)` for row `r` of a split tile.
///
/// # Safety
/// Row `r` of the split tile (`2c` chunks) and `c` chunks at `y` are readable; AVX2 is present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
#[inline]
unsafe fn tile_row_avx2<const C: usize>(xs: *const __m256i, c: usize, y: *const __m256i, r: usize) -> __m256i {
    let c = if C == 0 { c } else { C };
    let (lut, nibble, zero) = (nibble_lut(), _mm256_set1_epi8(0x0f), _mm256_setzero_si256());
    let (mut lanes, mut bytes) = (zero, zero);
    for k in 0..c {
        for h in 0..2 {
            let i = r * c + k;
            // SAFETY: vector 2k + h of y and vectors 4i + h, 4i + 2 + h of the split tile are
            // readable and aligned.
            let (yv, x_lo, x_hi) =
                unsafe { (_mm256_load_si256(y.add(2 * k + h)), _mm256_load_si256(xs.add(4 * i + h)), _mm256_load_si256(xs.add(4 * i + 2 + h))) };
            let y_lo = _mm256_and_si256(yv, nibble);
            let y_hi = _mm256_and_si256(_mm256_srli_epi16::<4>(yv), nibble);
            let lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(x_lo, y_lo));
            let hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(x_hi, y_hi));
            bytes = _mm256_add_epi8(bytes, _mm256_add_epi8(lo, hi));
        }
        // Per byte, a chunk adds at most 16: fold every 8 chunks, and at the end.
        if k % 8 == 7 || k + 1 == c {
            lanes = _mm256_add_epi64(lanes, _mm256_sad_epu8(bytes, zero));
            bytes = zero;
        }
    }
    lanes
}

/// Rows micro-kernel: TILE rows at `x` as stored against the query `y` (whose nibble split the
/// compiler hoists out of the driver's loop).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
#[inline]
unsafe fn count8_avx2_rows<const C: usize>(x: *const Chunk, c: usize, y: *const Chunk) -> __m128i {
    let c = if C == 0 { c } else { C };
    let (x, y) = (x.cast::<__m256i>(), y.cast::<__m256i>());
    // SAFETY: the contract of the micro-kernels.
    let sums = unsafe {
        [
            query_row_avx2::<C>(x, c, y, 0),
            query_row_avx2::<C>(x, c, y, 1),
            query_row_avx2::<C>(x, c, y, 2),
            query_row_avx2::<C>(x, c, y, 3),
            query_row_avx2::<C>(x, c, y, 4),
            query_row_avx2::<C>(x, c, y, 5),
            query_row_avx2::<C>(x, c, y, 6),
            query_row_avx2::<C>(x, c, y, 7),
        ]
    };
    pack_counts_avx2(sums)
}

/// 64-bit lane sums of `popcount(x_r AND y)` for row `r` of rows as stored.
///
/// # Safety
/// Row `r` (`c` chunks) at `x` and `c` chunks at `y` are readable; AVX2 is present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
#[inline]
unsafe fn query_row_avx2<const C: usize>(x: *const __m256i, c: usize, y: *const __m256i, r: usize) -> __m256i {
    let c = if C == 0 { c } else { C };
    let (lut, nibble, zero) = (nibble_lut(), _mm256_set1_epi8(0x0f), _mm256_setzero_si256());
    let (mut lanes, mut bytes) = (zero, zero);
    for k in 0..c {
        for h in 0..2 {
            // SAFETY: vector 2k + h of y and of row r are readable and aligned.
            let (yv, xv) = unsafe { (_mm256_load_si256(y.add(2 * k + h)), _mm256_load_si256(x.add(2 * (r * c + k) + h))) };
            let y_lo = _mm256_and_si256(yv, nibble);
            let y_hi = _mm256_and_si256(_mm256_srli_epi16::<4>(yv), nibble);
            let lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(xv, y_lo));
            let hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16::<4>(xv), y_hi));
            bytes = _mm256_add_epi8(bytes, _mm256_add_epi8(lo, hi));
        }
        if k % 8 == 7 || k + 1 == c {
            lanes = _mm256_add_epi64(lanes, _mm256_sad_epu8(bytes, zero));
            bytes = zero;
        }
    }
    lanes
}

/// The TILE row counts, as `u16` lanes in row order, from each row's 64-bit lane sums. Four
/// rows' lane sums are packed as 16-bit fields of one vector (each lane sum is ≤ 4096 and a row
/// count < 2^16 by [`MAX_WORDS_PER_FILTER`], so fields never carry into each other); two
/// horizontal sums then serve all eight rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
#[inline]
fn pack_counts_avx2(s: [__m256i; TILE]) -> __m128i {
    let p0 = _mm256_add_epi64(
        _mm256_add_epi64(s[0], _mm256_slli_epi64::<16>(s[1])),
        _mm256_add_epi64(_mm256_slli_epi64::<32>(s[2]), _mm256_slli_epi64::<48>(s[3])),
    );
    let p1 = _mm256_add_epi64(
        _mm256_add_epi64(s[4], _mm256_slli_epi64::<16>(s[5])),
        _mm256_add_epi64(_mm256_slli_epi64::<32>(s[6]), _mm256_slli_epi64::<48>(s[7])),
    );
    // [p0.0 + p0.1, p1.0 + p1.1, p0.2 + p0.3, p1.2 + p1.3], then the two 128-bit halves added.
    let t = _mm256_add_epi64(_mm256_unpacklo_epi64(p0, p1), _mm256_unpackhi_epi64(p0, p1));
    _mm_add_epi64(_mm256_castsi256_si128(t), _mm256_extracti128_si256::<1>(t))
}

/// [`Rule::may_select`] on the eight `u16` counts of an AVX2 micro-kernel, without leaving the
/// vector registers; the same `f32` operations, so the same answers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
#[inline]
fn screen_avx2(counts: &__m128i, rule: &Rule, pop_a: &[f32; TILE], pop_b: f32) -> bool {
    let twice = _mm256_cvtepi32_ps(_mm256_slli_epi32::<1>(_mm256_cvtepu16_epi32(*counts)));
    // SAFETY: `pop_a` is eight readable f32.
    let pop_a = unsafe { _mm256_loadu_ps(pop_a.as_ptr()) };
    let rhs = _mm256_mul_ps(_mm256_add_ps(pop_a, _mm256_set1_ps(pop_b)), _mm256_set1_ps(rule.t_low));
    _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(twice, rhs)) != 0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
#[inline]
fn unpack_avx2(counts: &__m128i) -> [u32; TILE] {
    let mut out = [0u32; TILE];
    // SAFETY: `out` has room for eight u32.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), _mm256_cvtepu16_epi32(*counts)) };
    out
}

/// AVX-512: `vpopcntq` on `x AND y`, 64-bit lane sums per row, four rows packed as 16-bit
/// fields and summed across lanes with one reduction per four rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
#[inline]
unsafe fn count8_avx512<const C: usize>(x: *const Chunk, c: usize, y: *const Chunk) -> [u32; TILE] {
    let c = if C == 0 { c } else { C };
    let mut lanes = [_mm512_setzero_si512(); TILE];
    for (r, lane) in lanes.iter_mut().enumerate() {
        let row = x.wrapping_add(r * c);
        for k in 0..c {
            // SAFETY: chunk k of row r and of y are readable and 64-byte aligned.
            let (xv, yv) = unsafe { (_mm512_load_si512(row.add(k).cast()), _mm512_load_si512(y.add(k).cast())) };
            *lane = _mm512_add_epi64(*lane, _mm512_popcnt_epi64(_mm512_and_si512(xv, yv)));
        }
    }
    // Each lane sum is ≤ 64·c ≤ 2048, each row count < 2^16: 16-bit fields never carry.
    let p0 = _mm512_add_epi64(
        _mm512_add_epi64(lanes[0], _mm512_slli_epi64::<16>(lanes[1])),
        _mm512_add_epi64(_mm512_slli_epi64::<32>(lanes[2]), _mm512_slli_epi64::<48>(lanes[3])),
    );
    let p1 = _mm512_add_epi64(
        _mm512_add_epi64(lanes[4], _mm512_slli_epi64::<16>(lanes[5])),
        _mm512_add_epi64(_mm512_slli_epi64::<32>(lanes[6]), _mm512_slli_epi64::<48>(lanes[7])),
    );
    let fields = [_mm512_reduce_add_epi64(p0) as u64, _mm512_reduce_add_epi64(p1) as u64];
    let mut out = [0u32; TILE];
    for (r, n) in out.iter_mut().enumerate() {
        *n = ((fields[r / 4] >> (16 * (r % 4))) & 0xffff) as u32;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ponte_proto::bits::dice_words;
    use proptest::prelude::*;

    /// SplitMix64: a seeded generator small enough to state here.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        /// A word whose bits are set with probability `num / 8`.
        fn word(&mut self, num: u32) -> u64 {
            match num {
                0 => 0,
                1 => self.next() & self.next() & self.next(),
                2 => self.next() & self.next(),
                4 => self.next(),
                6 => self.next() | self.next(),
                _ => !0,
            }
        }
    }

    fn random_matrix(rng: &mut Rng, words: usize, rows: usize) -> FilterMatrix {
        let mut m = FilterMatrix::new(words).unwrap();
        for _ in 0..rows {
            let density = [0, 1, 2, 4, 4, 4, 6, 8][(rng.next() % 8) as usize];
            let f: Vec<u64> = (0..words).map(|_| rng.word(density)).collect();
            m.push(&f).unwrap();
        }
        m
    }

    fn naive_and(a: &[u64], b: &[u64]) -> u32 {
        a.iter().zip(b).map(|(x, y)| (x & y).count_ones()).sum()
    }

    /// The selection rule stated independently: `2·and ≥ t·s` in exact integer arithmetic,
    /// writing the f32 `t` as `mantissa · 2^-shift`.
    fn selected_exactly(and: u32, s: u32, t: f32) -> bool {
        if s == 0 {
            return t == 0.0;
        }
        if t == 0.0 {
            return true;
        }
        let bits = t.to_bits();
        let exp = ((bits >> 23) & 0xff) as i32;
        let (mantissa, e) =
            if exp == 0 { (u128::from(bits & 0x7f_ffff), -149) } else { (u128::from(bits & 0x7f_ffff | 0x80_0000), exp - 150) };
        // t·s = mantissa·s / 2^shift; 2·and is an integer, so compare it with the ceiling.
        let shift = (-e) as u32;
        let product = mantissa * u128::from(s);
        let ceiling = if shift >= 64 { u128::from(product > 0) } else { (product + (1 << shift) - 1) >> shift };
        2 * u128::from(and) >= ceiling
    }

    fn matrix_from(words: usize, filters: &[Vec<u64>]) -> FilterMatrix {
        let mut m = FilterMatrix::new(words).unwrap();
        for f in filters {
            m.push(f).unwrap();
        }
        m
    }

    fn check_all_kinds_agree(a: &FilterMatrix, b: &FilterMatrix, threshold: f32) {
        let words = a.words_per_filter();
        // Intersections: every query of `a` against all of `b`, and against a sub-range.
        for i in 0..a.len() {
            let q = a.row(i);
            let expect: Vec<u32> = (0..b.len()).map(|j| naive_and(q, b.row(j))).collect();
            for kind in KernelKind::available() {
                let mut out = vec![u32::MAX; b.len()];
                intersections(kind, q, b, 0..b.len(), &mut out).unwrap();
                assert_eq!(out, expect, "{kind}, {words} words, query {i}");
                if b.len() > 3 {
                    let mut part = vec![u32::MAX; b.len() - 3];
                    intersections(kind, q, b, 1..b.len() - 2, &mut part).unwrap();
                    assert_eq!(part, expect[1..b.len() - 2], "{kind}, {words} words, query {i}, sub-range");
                }
            }
            let expect_above: Vec<(u32, f32)> = (0..b.len())
                .filter(|&j| selected_exactly(expect[j], a.popcount(i) + b.popcount(j), threshold))
                .map(|j| (j as u32, dice_words(q, b.row(j)) as f32))
                .collect();
            for kind in KernelKind::available() {
                let mut out = Vec::new();
                dice_above(kind, q, b, threshold, &mut out).unwrap();
                assert_eq!(out, expect_above, "{kind}, {words} words, query {i}");
            }
        }
        let mut expect_pairs = Vec::new();
        for i in 0..a.len() {
            for j in 0..b.len() {
                let and = naive_and(a.row(i), b.row(j));
                if selected_exactly(and, a.popcount(i) + b.popcount(j), threshold) {
                    let dice = dice_words(a.row(i), b.row(j)) as f32;
                    expect_pairs.push(CandidatePair { a: i as u32, b: j as u32, dice });
                }
            }
        }
        for kind in KernelKind::available() {
            let pairs = dice_all_pairs(kind, a, b, threshold, usize::MAX).unwrap();
            assert_eq!(pairs, expect_pairs, "{kind}, {words} words, {}×{}", a.len(), b.len());
        }
    }

    #[test]
    fn scalar_is_always_available_and_detect_picks_an_available_kind() {
        assert!(KernelKind::available().contains(&KernelKind::Scalar));
        assert!(KernelKind::detect().is_available());
        for k in KernelKind::ALL {
            assert_eq!(KernelKind::from_name(k.name()), Some(k));
        }
        eprintln!("kernel variants here: {:?}", KernelKind::available());
    }

    #[test]
    fn gathered_counts_sequential_pairs_and_row_writes_agree_with_the_definition() {
        let mut rng = Rng(77);
        for words in [16, 3, 17] {
            let mut m = random_matrix(&mut rng, words, 40);
            // Writing past the end appends zero rows; clearing zeroes a row.
            let f: Vec<u64> = (0..words).map(|_| rng.word(4)).collect();
            m.set_row(45, &f).unwrap();
            assert_eq!(m.len(), 46);
            assert_eq!(m.row(45), f.as_slice());
            assert_eq!(m.popcount(43), 0);
            m.clear_row(3);
            assert_eq!(m.popcount(3), 0);
            assert!(m.row(3).iter().all(|w| *w == 0));
            let q: Vec<u64> = m.row(7).to_vec();
            let rows: Vec<u32> = vec![45, 0, 7, 3, 44, 7];
            let expected: Vec<u32> = rows.iter().map(|&r| naive_and(&q, m.row(r as usize))).collect();
            for kind in KernelKind::available() {
                let mut out = vec![0; rows.len()];
                intersections_at(kind, &q, &m, &rows, &mut out).unwrap();
                assert_eq!(out, expected, "{kind}");
                let mut seq = Vec::new();
                dice_pairs_sequential(kind, &m, &m, 0.5, &mut seq).unwrap();
                let all = dice_all_pairs(KernelKind::Scalar, &m, &m, 0.5, usize::MAX).unwrap();
                seq.sort_by_key(|p| (p.a, p.b));
                assert_eq!(seq, all, "{kind}");
            }
            let mut out = vec![0; 1];
            assert!(intersections_at(KernelKind::Scalar, &q, &m, &[46], &mut out).is_err());
        }
    }

    #[test]
    fn random_filters_agree_across_kinds_and_with_the_definition() {
        let mut rng = Rng(2026);
        for words in [4, 8, 16, 32, 64, 3, 17, 256] {
            for (na, nb) in [(1, 1), (7, 9), (8, 8), (13, 37), (3, 130)] {
                let a = random_matrix(&mut rng, words, na);
                let mut b = random_matrix(&mut rng, words, nb);
                // Near-copies of some rows of `a`, so that pairs reach the threshold.
                for i in (0..na).step_by(2) {
                    let mut f = a.row(i).to_vec();
                    f[0] ^= 1 << (rng.next() % 64);
                    b.push(&f).unwrap();
                }
                for t in [0.0, 0.5, 0.8, 1.0] {
                    check_all_kinds_agree(&a, &b, t);
                }
            }
        }
    }

    #[test]
    fn structured_filters_agree_across_kinds() {
        for words in [4, 16, 20] {
            let bits = 64 * words;
            let mut filters = vec![vec![0u64; words], vec![!0u64; words]];
            for pos in [0, 1, 63, 64, bits / 2, bits - 1] {
                let mut f = vec![0u64; words];
                f[pos / 64] |= 1 << (pos % 64);
                filters.push(f);
            }
            let mut alternate = vec![0x5555_5555_5555_5555u64; words];
            filters.push(alternate.clone());
            alternate.iter_mut().for_each(|w| *w = !*w);
            filters.push(alternate);
            let m = matrix_from(words, &filters);
            for t in [0.0, 0.3, 1.0] {
                check_all_kinds_agree(&m, &m, t);
            }
        }
    }

    #[test]
    fn all_ones_rows_reach_the_largest_count() {
        let words = MAX_WORDS_PER_FILTER;
        let m = matrix_from(words, &vec![vec![!0u64; words]; 9]);
        for kind in KernelKind::available() {
            let mut out = vec![0; 9];
            intersections(kind, &vec![!0u64; words], &m, 0..9, &mut out).unwrap();
            assert_eq!(out, vec![64 * words as u32; 9], "{kind}");
        }
    }

    #[test]
    fn scalar_dice_equals_the_wire_definition() {
        let mut rng = Rng(7);
        let m = random_matrix(&mut rng, 16, 60);
        for i in 0..m.len() {
            for j in 0..m.len() {
                let mut and = [0];
                intersections(KernelKind::Scalar, m.row(i), &m, j..j + 1, &mut and).unwrap();
                let dice = dice_from_counts(and[0], m.popcount(i), m.popcount(j));
                assert_eq!(dice, dice_words(m.row(i), m.row(j)));
            }
        }
        assert_eq!(dice_from_counts(0, 0, 0), 0.0);
    }

    #[test]
    fn rule_is_exact_and_its_screen_keeps_every_selected_pair() {
        let mut rng = Rng(11);
        let mut thresholds = vec![0.0f32, f32::MIN_POSITIVE, 1e-31, 1e-30, 1e-29, 2e-7, 0.1, 0.5, 0.8, 0.85, 0.8000001, 0.99999994, 1.0];
        thresholds.extend((0..20).map(|_| (rng.next() % (1 << 24)) as f32 / (1 << 24) as f32));
        for t in thresholds {
            let rule = Rule::new(t).unwrap();
            for s in 0..=2048u32 {
                for and in 0..=s / 2 + 1 {
                    let exact = selected_exactly(and, s, t);
                    assert_eq!(rule.selects(and, s), exact, "t {t}, s {s}, and {and}");
                    // The screen never drops a selected pair.
                    assert!(!exact || rule.may_select(and, s as f32), "t {t}, s {s}, and {and}");
                }
            }
        }
    }

    #[test]
    fn reported_dice_never_falls_below_the_threshold() {
        for s in 1..=2048u32 {
            for t in [0.8f32, 0.85, 0.9, 2.0 / 3.0] {
                let and = Rule::new(t).unwrap().least_intersection(s);
                if and <= s / 2 {
                    assert!(dice_from_counts(and, s / 2, s - s / 2) as f32 >= t);
                }
            }
        }
    }

    #[test]
    fn matrix_keeps_rows_popcounts_and_slack() {
        let mut m = FilterMatrix::new(12).unwrap();
        let f = |x: u64| (0..12).map(|k| x.rotate_left(k)).collect::<Vec<u64>>();
        for x in 1..=10u64 {
            assert_eq!(m.push(&f(x)).unwrap(), (x - 1) as usize);
        }
        assert_eq!(m.len(), 10);
        assert_eq!(m.row(3), f(4));
        assert_eq!(m.popcount(3), 12 * 4u64.count_ones());
        m.swap_remove(3);
        assert_eq!(m.len(), 9);
        assert_eq!(m.row(3), f(10));
        assert_eq!(m.popcount(3), 12 * 10u64.count_ones());
        m.swap_remove(8);
        assert_eq!(m.len(), 8);
        // Slack rows after the last row are zero again, and present.
        assert_eq!(m.data.len(), (8 + TILE - 1) * 2);
        assert!(m.data[8 * 2..].iter().all(|c| *c == Chunk::default()));
        // Padding words of a row stay zero.
        assert!(chunk_words(m.row_chunks(0))[12..].iter().all(|&w| w == 0));
        assert!(m.heap_bytes() >= (8 + TILE - 1) * 128 + 8 * 4);
        assert_eq!(m.row_ptr(0) as usize % 64, 0);
        let mut bytes = vec![0u8; 96];
        bytes[95] = 0x80;
        let r = m.push_bytes(&bytes).unwrap();
        assert_eq!(m.row(r)[11], 1 << 63);
    }

    #[test]
    fn inputs_out_of_bounds_are_refused() {
        assert_eq!(FilterMatrix::new(0).unwrap_err(), KernelError::FilterLength(0));
        assert_eq!(FilterMatrix::new(257).unwrap_err(), KernelError::FilterLength(257));
        let mut m = FilterMatrix::new(16).unwrap();
        assert_eq!(m.push(&[0; 15]).unwrap_err(), KernelError::LengthMismatch { expected: 16, got: 15 });
        m.push(&[1; 16]).unwrap();
        let k = KernelKind::Scalar;
        let mut out = vec![0; 2];
        assert!(matches!(intersections(k, &[0; 16], &m, 0..2, &mut out), Err(KernelError::Rows { .. })));
        assert!(matches!(intersections(k, &[0; 16], &m, 0..1, &mut out), Err(KernelError::Output { .. })));
        assert!(matches!(intersections(k, &[0; 8], &m, 0..1, &mut out[..1]), Err(KernelError::LengthMismatch { .. })));
        for t in [f32::NAN, -0.1, 1.5] {
            assert!(matches!(dice_above(k, &[0; 16], &m, t, &mut Vec::new()), Err(KernelError::Threshold(_))));
        }
        let other = FilterMatrix::new(8).unwrap();
        assert!(matches!(dice_all_pairs(k, &m, &other, 0.5, 10), Err(KernelError::LengthMismatch { .. })));
        for kind in KernelKind::ALL.into_iter().filter(|k| !k.is_available()) {
            assert_eq!(dice_all_pairs(kind, &m, &m, 0.5, 10).unwrap_err(), KernelError::Unavailable(kind));
        }
    }

    #[test]
    fn all_pairs_stops_past_max_pairs() {
        let mut rng = Rng(3);
        let m = random_matrix(&mut rng, 16, 300);
        let all = dice_all_pairs(KernelKind::Scalar, &m, &m, 0.0, usize::MAX).unwrap();
        assert_eq!(all.len(), 300 * 300);
        assert_eq!(dice_all_pairs(KernelKind::Scalar, &m, &m, 0.0, 1000).unwrap_err(), KernelError::TooManyPairs(1000));
        assert_eq!(dice_all_pairs(KernelKind::Scalar, &m, &m, 0.0, 300 * 300).unwrap().len(), 300 * 300);
    }

    proptest! {
        #[test]
        fn any_filters_agree_across_kinds(
            words in prop::sample::select(vec![1usize, 4, 8, 9, 16, 24, 32, 64]),
            seeds in prop::collection::vec(any::<u64>(), 1..40),
            density in prop::sample::select(vec![0u32, 1, 2, 4, 6, 8]),
            t in 0.0f32..=1.0,
        ) {
            let filters: Vec<Vec<u64>> = seeds.iter().map(|&s| {
                let mut rng = Rng(s);
                (0..words).map(|_| rng.word(density)).collect()
            }).collect();
            let m = matrix_from(words, &filters);
            let a = matrix_from(words, &filters[..filters.len().div_ceil(2)]);
            check_all_kinds_agree(&a, &m, t);
        }
    }
}
