//! Linking: blocks and scores published encodings, incrementally, and says which items are the
//! same person as a new one, and how surely. The link graph and its person clusters are
//! [`crate::graph`]'s; [`Linker`] puts the two together for callers that need both at once (the
//! simulator, benchmarks, tests). The coordinator uses [`LinkIndex`] and
//! [`crate::graph::LinkGraph`] apart, so that questions read the graph while a publication is
//! being linked.
//!
//! # The pipeline
//!
//! Each key epoch has its own index ([`EpochIndex`]): the CLKs in one contiguous
//! [`FilterMatrix`] whose row is the item number, the exact tokens in compact form, a Hamming
//! [`LshIndex`] over the CLKs and a [`TokenIndex`]. Linking a batch of items:
//!
//! 1. **Index** every new item (or new identity revision) of the batch.
//! 2. **Block**: the candidate pairs are those between a batch item and any other indexed item
//!    that share an LSH bucket in at least one table or an exact token. Two paths find the same
//!    set: the *online* path (small batches) asks both indexes per item and counts `|A∧B|` for the
//!    candidates with [`kernel::intersections_at`]; the *bulk* path (an entity's initial load)
//!    walks the LSH buckets the batch falls into, table by table in parallel, and compares each
//!    bucket's batch members with all its members with the tiled kernel
//!    ([`kernel::dice_pairs_sequential`]). LSH-only candidates below the Dice at which the model
//!    could still say "possible" ([`CompactScorer::min_dice_without_token_agreement`]) are
//!    dropped by the kernel itself; token candidates are always scored.
//! 3. **Score** each candidate with the Fellegi–Sunter model ([`crate::scoring`]) for the
//!    federation's size: a calibrated probability cut into certain / probable / possible.
//! 4. The links found go to the graph ([`crate::graph::GraphEdit::Relink`]), which clusters.
//!
//! Links are between items (references), not encodings: a link found under one key epoch stands
//! while both identities keep their revision, whatever epochs are later added or dropped.
//!
//! # Evidence that many identities share is no evidence
//!
//! A codice fiscale is evidence of one person. An export that gives the same placeholder CF to
//! many different people, or a node that sends one token with many identities, would otherwise
//! glue strangers into one person. So a token held by [`IndexBounds::token_identities`] or more
//! *different identities* (CLKs below [`IndexBounds::same_identity_dice`] of each other) among
//! the items **of one node** becomes a *token hub* of that node: for that node's items it is no
//! longer a blocking key nor scoring evidence (the pair's token comparison takes its "missing"
//! level, as if the node had not sent it), and the node's items holding it are relinked on that
//! basis. Counting per node means the decision depends only on what that node itself sent —
//! never on another node's items, which the node may not see. The hubs are reported
//! ([`Linked::hubs`]) for a data steward and recomputed from the index at every start.
//!
//! # Bounds
//!
//! Item numbers are rows: at most [`MAX_ITEM_ID`]. The work one item can cause is bounded:
//! LSH buckets holding more than [`IndexBounds::max_bucket`] filters are not walked (such a
//! bucket is a degenerate encoding shared by thousands, not a person), a token held by more than
//! [`IndexBounds::max_token_holders`] items is not a blocking key, and held (quarantined) items
//! are never candidates. The graph bounds the links and clusters that result.

use std::collections::{BTreeMap, HashMap, HashSet};

use ponte_proto::bits::to_words;
use ponte_proto::schema::LinkageSchema;
use rayon::prelude::*;

use crate::blocking::{self, LshIndex, LshParams, TokenIndex, compact_token};
use crate::graph::{GraphBounds, GraphEdit, LinkGraph, NodeIx};
pub use crate::graph::LinkChange;
use crate::kernel::{self, FilterMatrix, KernelKind};
use crate::model::EpochEncoding;
use crate::scoring::{CompactScorer, FsModel};

pub use crate::model::{Band, ClusterId, ItemId};

/// Largest item number the linker accepts (rows are `u32`; the token index keeps a flag bit).
pub const MAX_ITEM_ID: ItemId = (1 << 31) - 1;
/// Batches with at least this many new items take the bulk (bucket) path.
pub const BULK_PATH_MIN_ITEMS: usize = 64;
/// The LSH positions are chosen from measured bit frequencies once, when an epoch's index first
/// holds this many filters, and then kept (and stored: [`LinkIndex::frozen_frequencies`]) for
/// the life of the epoch. Blocking therefore never depends on what is published later — a
/// relationship published (or withheld) afterwards cannot change which other pairs meet — and
/// a restart links exactly as before it.
pub const ADAPT_LSH_AT: usize = 4096;
/// A bucket is not walked when the batch rows in it times its size exceed this many times
/// [`IndexBounds::max_bucket`]: the bulk path's work per bucket stays that of at most this many
/// online queries.
const GROUP_FACTOR: usize = 16;
/// Groups of fewer batch rows than this in one LSH bucket are compared row by row rather than as
/// a gathered tile.
const SMALL_GROUP: usize = 4;
/// Filters sampled to measure bit frequencies.
const FREQUENCY_SAMPLE: usize = 100_000;

/// What the linker needs to know.
#[derive(Debug, Clone)]
pub struct LinkerParams {
    pub model: FsModel,
    pub lsh: LshParams,
    /// Published CLK length in bits (a multiple of 64).
    pub clk_bits: u32,
    pub kernel: KernelKind,
    /// The federation size the prior is set for; `None`: the items indexed in the epoch when a
    /// batch is linked. Links are not re-scored as the federation grows; they are when either
    /// side changes.
    pub prior_records: Option<u64>,
}

impl LinkerParams {
    /// The schema's CLK length and blocking, the given model, the fastest kernel here.
    pub fn for_schema(schema: &LinkageSchema, model: FsModel) -> LinkerParams {
        LinkerParams {
            model,
            lsh: LshParams::from(&schema.blocking),
            clk_bits: schema.published_clk_bits(),
            kernel: KernelKind::detect(),
            prior_records: None,
        }
    }
}

/// Up to [`ponte_proto::limits::MAX_TOKENS_PER_ITEM`] compact tokens, on the stack.
#[derive(Clone, Copy, Default)]
struct Tokens {
    buf: [u64; ponte_proto::limits::MAX_TOKENS_PER_ITEM],
    len: usize,
}

impl std::ops::Deref for Tokens {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        &self.buf[..self.len]
    }
}

/// One key epoch's index. Row = item number.
struct EpochIndex {
    matrix: FilterMatrix,
    present: Vec<bool>,
    /// The first two compact tokens of each row (0: none); the rest in `more_tokens`.
    tokens: Vec<[u64; 2]>,
    more_tokens: HashMap<u32, Vec<u64>>,
    lsh: LshIndex,
    token_index: TokenIndex,
    count: usize,
    /// The bit frequencies the LSH positions were chosen from, once chosen.
    frequencies: Option<Vec<u32>>,
}

impl EpochIndex {
    fn new(params: &LinkerParams) -> EpochIndex {
        EpochIndex {
            matrix: FilterMatrix::new(params.clk_bits as usize / 64).expect("checked by Linker::new"),
            present: Vec::new(),
            tokens: Vec::new(),
            more_tokens: HashMap::new(),
            lsh: LshIndex::new(params.lsh, params.clk_bits).expect("checked by Linker::new"),
            token_index: TokenIndex::new(),
            count: 0,
            frequencies: None,
        }
    }

    fn has(&self, row: u32) -> bool {
        self.present.get(row as usize).copied().unwrap_or(false)
    }

    fn tokens_of(&self, row: u32) -> Tokens {
        let mut t = Tokens::default();
        if let Some(first) = self.tokens.get(row as usize) {
            for &x in first.iter().filter(|x| **x != 0) {
                t.buf[t.len] = x;
                t.len += 1;
            }
        }
        if let Some(more) = self.more_tokens.get(&row) {
            for &x in more {
                if t.len < t.buf.len() {
                    t.buf[t.len] = x;
                    t.len += 1;
                }
            }
        }
        t
    }

    fn insert(&mut self, row: u32, words: &[u64], tokens: &[u64], into_lsh: bool) {
        if self.has(row) {
            self.remove(row);
        }
        let r = row as usize;
        self.matrix.set_row(r, words).expect("length checked by the linker");
        if self.present.len() <= r {
            self.present.resize(r + 1, false);
            self.tokens.resize(r + 1, [0; 2]);
        }
        self.present[r] = true;
        let mut first = [0u64; 2];
        for (slot, &t) in first.iter_mut().zip(tokens) {
            *slot = t;
        }
        self.tokens[r] = first;
        if tokens.len() > 2 {
            self.more_tokens.insert(row, tokens[2..].to_vec());
        }
        if into_lsh {
            self.lsh.insert(row, words);
        }
        self.token_index.insert(row, tokens);
        self.count += 1;
    }

    fn remove(&mut self, row: u32) {
        if !self.has(row) {
            return;
        }
        let tokens = self.tokens_of(row);
        self.lsh.remove(row, self.matrix.row(row as usize));
        self.token_index.remove(row, &tokens);
        self.matrix.clear_row(row as usize);
        self.present[row as usize] = false;
        self.tokens[row as usize] = [0; 2];
        self.more_tokens.remove(&row);
        self.count -= 1;
    }

    fn rows(&self) -> impl Iterator<Item = u32> + '_ {
        self.present.iter().enumerate().filter(|(_, p)| **p).map(|(r, _)| r as u32)
    }

    /// Builds the LSH tables with everything indexed: positions chosen from `frequencies` (the
    /// stored ones), or measured now on (a sample of) the indexed filters when the index is
    /// large enough and none were stored, or unadapted. Returns newly measured frequencies.
    fn build_lsh(&mut self, params: &LinkerParams, frequencies: Option<Vec<u32>>) -> Option<Vec<u32>> {
        let mut measured = None;
        let freq = match frequencies {
            Some(f) => Some(f),
            None if params.lsh.skip_most_frequent > 0 && self.count >= ADAPT_LSH_AT => {
                let step = self.count.div_ceil(FREQUENCY_SAMPLE).max(1);
                let sample = self.rows().step_by(step).map(|r| self.matrix.row(r as usize));
                let f = blocking::bit_frequencies(sample, params.clk_bits);
                measured = Some(f.clone());
                Some(f)
            }
            None => None,
        };
        let mut lsh = match &freq {
            Some(f) => LshIndex::with_frequencies(params.lsh, params.clk_bits, f).unwrap_or_else(|_| LshIndex::new(params.lsh, params.clk_bits).expect("checked by Linker::new")),
            None => LshIndex::new(params.lsh, params.clk_bits).expect("checked by Linker::new"),
        };
        let all: Vec<(u32, &[u64])> = self.rows().map(|r| (r, self.matrix.row(r as usize))).collect();
        lsh.insert_many(&all);
        self.lsh = lsh;
        self.frequencies = freq;
        measured
    }

    /// Puts `rows` (indexed without LSH) into the LSH tables — or, the first time the index
    /// reaches [`ADAPT_LSH_AT`] filters, chooses the positions from measured frequencies and
    /// rebuilds the tables with everything. Returns newly measured frequencies.
    fn add_to_lsh(&mut self, rows: &[u32], params: &LinkerParams) -> Option<Vec<u32>> {
        if params.lsh.skip_most_frequent > 0 && self.frequencies.is_none() && self.count >= ADAPT_LSH_AT {
            self.build_lsh(params, None)
        } else {
            let items: Vec<(u32, &[u64])> = rows.iter().map(|&r| (r, self.matrix.row(r as usize))).collect();
            self.lsh.insert_many(&items);
            None
        }
    }

    fn memory_bytes(&self) -> usize {
        self.matrix.heap_bytes()
            + self.present.capacity()
            + self.tokens.capacity() * 16
            + self.lsh.memory_bytes()
            + self.token_index.memory_bytes()
            + self.more_tokens.len() * 64
    }
}

/// A candidate pair found by blocking: batch row `r`, other row `o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pair {
    r: u32,
    o: u32,
}

/// What linking the last batch took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchStats {
    /// Items (re)linked.
    pub linked_items: u64,
    /// Dice computations of the blocking (LSH candidates, counted once per table on the bulk
    /// path).
    pub comparisons: u64,
    /// Distinct candidate pairs scored (LSH at or above the screen, or sharing a token).
    pub scored_pairs: u64,
    /// Links made.
    pub links: u64,
    /// Links made by band: certain, probable, possible (they sum to `links`).
    pub links_by_band: [u64; 3],
    /// Whether the bulk (bucket) path ran.
    pub bulk_path: bool,
    /// LSH buckets not walked because they held more than [`IndexBounds::max_bucket`] filters.
    pub buckets_skipped: u64,
    /// Token lookups skipped because the token had more than [`IndexBounds::max_token_holders`]
    /// holders.
    pub tokens_skipped: u64,
    /// Items whose links were cut to [`IndexBounds::max_links_per_item`].
    pub links_truncated: u64,
}

/// Bounds on the work one item can cause, and when a token stops being evidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexBounds {
    /// LSH buckets larger than this are not walked for candidates.
    pub max_bucket: usize,
    /// A token held by more items than this is not a blocking key.
    pub max_token_holders: usize,
    /// A token held by this many different identities among one node's items is a token hub of
    /// that node.
    pub token_identities: usize,
    /// Two filters at least this similar (Dice) count as one identity when counting a token's
    /// identities.
    pub same_identity_dice: f64,
    /// Most links one item keeps from one linking (the strongest: by band, then Dice). No
    /// person has so many relationships; an item over it is a degenerate encoding shared by
    /// many, and the bound keeps the work its links cause in proportion to the batch.
    pub max_links_per_item: usize,
}

/// The defaults of [`IndexBounds`].
pub const DEFAULT_MAX_BUCKET: usize = 4096;
pub const DEFAULT_MAX_TOKEN_HOLDERS: usize = 256;
pub const DEFAULT_TOKEN_IDENTITIES: usize = 3;
pub const DEFAULT_SAME_IDENTITY_DICE: f64 = 0.8;
pub const DEFAULT_MAX_LINKS_PER_ITEM: usize = 512;

impl Default for IndexBounds {
    fn default() -> Self {
        IndexBounds {
            max_bucket: DEFAULT_MAX_BUCKET,
            max_token_holders: DEFAULT_MAX_TOKEN_HOLDERS,
            token_identities: DEFAULT_TOKEN_IDENTITIES,
            same_identity_dice: DEFAULT_SAME_IDENTITY_DICE,
            max_links_per_item: DEFAULT_MAX_LINKS_PER_ITEM,
        }
    }
}

/// A token that became a hub of one node: no longer evidence for that node's items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHub {
    pub node: NodeIx,
    /// The token's kind (`v1::TokenKind`); never its value.
    pub kind: i32,
    /// The node's items holding it (at most [`IndexBounds::max_token_holders`]).
    pub holders: Vec<ItemId>,
    /// Different identities counted among them (at least [`IndexBounds::token_identities`]).
    pub identities: usize,
}

/// What [`LinkIndex::link_batch`] found: the graph edits to make, and how to undo the index
/// changes should storing them fail.
#[derive(Debug, Default)]
pub struct Linked {
    /// One relink per new item or new identity revision of the batch (in the batch's order of
    /// last occurrence), then one per item relinked because a token became a hub.
    pub edits: Vec<GraphEdit>,
    /// Items of the batch published again with the same identity revision: indexed under the
    /// epoch, links unchanged.
    pub unchanged: Vec<ItemId>,
    /// Tokens that became hubs with this batch.
    pub hubs: Vec<TokenHub>,
    pub stats: BatchStats,
    undo: Vec<(ItemId, bool, u64)>,
}

/// The encoding index of every key epoch: what links a new item to the items already there.
pub struct LinkIndex {
    params: LinkerParams,
    bounds: IndexBounds,
    last_batch: BatchStats,
    epochs: BTreeMap<u32, EpochIndex>,
    alive: Vec<bool>,
    revisions: Vec<u64>,
    node_of: Vec<NodeIx>,
    /// Held (quarantined) items: indexed, never a candidate.
    held: Vec<bool>,
    /// (node, compact token) pairs that are no evidence for that node's items.
    hubs: HashSet<(NodeIx, u64)>,
    live: usize,
    /// Frequencies given back by storage before [`LinkIndex::finish_restore`], per epoch.
    stored_frequencies: BTreeMap<u32, Vec<u32>>,
    /// Frequencies measured since the last [`LinkIndex::frozen_frequencies`] call, to store.
    frozen: Vec<(u32, Vec<u32>)>,
}

/// One item of a batch to publish.
#[derive(Debug, Clone, Copy)]
pub struct Publish<'a> {
    pub id: ItemId,
    pub revision: u64,
    pub encoding: &'a EpochEncoding,
    /// The publishing node (see [`NodeIx`]).
    pub node: NodeIx,
}

/// Why the linker refused a batch (nothing of it was applied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("item number {0} is beyond the linker's limit of {MAX_ITEM_ID} items")]
    ItemId(ItemId),
    #[error("a CLK of {got} bytes; the linkage schema's is {expected}")]
    ClkLength { expected: usize, got: usize },
}

impl LinkIndex {
    pub fn new(params: LinkerParams, bounds: IndexBounds) -> Result<LinkIndex, String> {
        params.lsh.check(params.clk_bits).map_err(|e| format!("linkage schema [blocking]: {e}"))?;
        FilterMatrix::new(params.clk_bits as usize / 64).map_err(|e| format!("CLK length: {e}"))?;
        let problems = params.model.check();
        if !problems.is_empty() {
            return Err(format!("matching model: {}", problems.join("; ")));
        }
        if bounds.max_bucket == 0 || bounds.max_token_holders == 0 || bounds.token_identities < 2 || bounds.max_links_per_item == 0 {
            return Err("linker bounds: max_bucket, max_token_holders and max_links_per_item must be positive and token_identities at least 2".into());
        }
        Ok(LinkIndex {
            params,
            bounds,
            last_batch: BatchStats::default(),
            epochs: BTreeMap::new(),
            alive: Vec::new(),
            revisions: Vec::new(),
            node_of: Vec::new(),
            held: Vec::new(),
            hubs: HashSet::new(),
            live: 0,
            stored_frequencies: BTreeMap::new(),
            frozen: Vec::new(),
        })
    }

    pub fn params(&self) -> &LinkerParams {
        &self.params
    }

    pub fn bounds(&self) -> IndexBounds {
        self.bounds
    }

    /// What linking the last batch took.
    pub fn last_batch(&self) -> BatchStats {
        self.last_batch
    }

    /// Whether two filters meet in at least one LSH table of `epoch`'s index (for measuring
    /// pair completeness).
    pub fn lsh_collide(&self, epoch: u32, a: &[u64], b: &[u64]) -> bool {
        self.epochs.get(&epoch).is_some_and(|ix| (0..ix.lsh.tables()).any(|t| ix.lsh.table_key(t, a) == ix.lsh.table_key(t, b)))
    }

    /// The Dice below which a pair without an agreeing token is not scored, for the federation
    /// size `records`.
    pub fn screen(&self, records: u64) -> Option<f32> {
        self.params.model.compact_scorer(records).min_dice_without_token_agreement()
    }

    /// Items indexed.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn contains(&self, id: ItemId) -> bool {
        self.alive.get(id as usize).copied().unwrap_or(false)
    }

    /// The identity revision indexed for `id`.
    pub fn revision(&self, id: ItemId) -> Option<u64> {
        self.contains(id).then(|| self.revisions[id as usize])
    }

    /// Items indexed under each key epoch.
    pub fn epoch_counts(&self) -> Vec<(u32, usize)> {
        self.epochs.iter().map(|(e, ix)| (*e, ix.count)).collect()
    }

    /// Whether `id` is indexed under `enc`'s epoch with exactly this encoding (filter and
    /// tokens): a re-sent publication that changes nothing.
    pub fn holds_encoding(&self, id: ItemId, enc: &EpochEncoding) -> bool {
        let Some(ix) = self.epochs.get(&enc.epoch) else { return false };
        let row = id as u32;
        if id > MAX_ITEM_ID || !ix.has(row) || enc.clk.len() * 8 != self.params.clk_bits as usize {
            return false;
        }
        let words = to_words(&enc.clk);
        let tokens: Vec<u64> = enc.tokens.iter().map(compact_token).collect();
        ix.matrix.row(id as usize) == words.as_slice() && *ix.tokens_of(row) == *tokens.as_slice()
    }

    /// Token hubs known (node, token) — the count only; values are never reported.
    pub fn hub_count(&self) -> usize {
        self.hubs.len()
    }

    /// Estimated bytes held by the indexes.
    pub fn memory_bytes(&self) -> usize {
        self.epochs.values().map(EpochIndex::memory_bytes).sum::<usize>()
            + self.alive.capacity()
            + self.held.capacity()
            + self.revisions.capacity() * 8
            + self.node_of.capacity() * 2
            + self.hubs.capacity() * 16
    }

    fn check_id(id: ItemId) -> Result<u32, LinkError> {
        if id > MAX_ITEM_ID { Err(LinkError::ItemId(id)) } else { Ok(id as u32) }
    }

    fn check_encoding(&self, enc: &EpochEncoding) -> Result<(), LinkError> {
        let expected = self.params.clk_bits as usize / 8;
        if enc.clk.len() != expected { Err(LinkError::ClkLength { expected, got: enc.clk.len() }) } else { Ok(()) }
    }

    fn set_alive(&mut self, id: ItemId, revision: u64, node: NodeIx) {
        let i = id as usize;
        if self.alive.len() <= i {
            self.alive.resize(i + 1, false);
            self.held.resize(i + 1, false);
            self.revisions.resize(i + 1, 0);
            self.node_of.resize(i + 1, 0);
        }
        if !self.alive[i] {
            self.live += 1;
        }
        self.alive[i] = true;
        self.revisions[i] = revision;
        self.node_of[i] = node;
    }

    fn index(&mut self, id: ItemId, enc: &EpochEncoding, into_lsh: bool) {
        let words = to_words(&enc.clk);
        let tokens: Vec<u64> = enc.tokens.iter().map(compact_token).collect();
        let params = &self.params;
        let ix = self.epochs.entry(enc.epoch).or_insert_with(|| EpochIndex::new(params));
        ix.insert(id as u32, &words, &tokens, into_lsh);
    }

    /// Adds a stored item to the index without linking it (used when restoring from storage;
    /// finish with [`LinkIndex::finish_restore`]).
    pub fn restore(&mut self, id: ItemId, revision: u64, node: NodeIx, encodings: &[EpochEncoding]) -> Result<(), LinkError> {
        Self::check_id(id)?;
        for enc in encodings {
            self.check_encoding(enc)?;
        }
        self.set_alive(id, revision, node);
        for enc in encodings {
            // The LSH tables are built once, by `finish_restore`.
            self.index(id, enc, false);
        }
        Ok(())
    }

    /// The LSH positions of every table of `epoch`'s index (for tests and diagnostics).
    pub fn lsh_positions(&self, epoch: u32) -> Vec<Vec<u32>> {
        self.epochs.get(&epoch).map(|ix| (0..ix.lsh.tables()).map(|t| ix.lsh.positions(t).to_vec()).collect()).unwrap_or_default()
    }

    /// Gives back the bit frequencies an epoch's LSH positions were chosen from (stored when
    /// they were first measured); call before [`LinkIndex::finish_restore`].
    pub fn restore_frequencies(&mut self, epoch: u32, frequencies: Vec<u32>) {
        self.stored_frequencies.insert(epoch, frequencies);
    }

    /// Frequencies measured (once per epoch) since the last call: the caller stores them and
    /// gives them back at the next start ([`LinkIndex::restore_frequencies`]).
    pub fn frozen_frequencies(&mut self) -> Vec<(u32, Vec<u32>)> {
        std::mem::take(&mut self.frozen)
    }

    /// Ends a restore: builds the LSH tables (positions from the stored frequencies), marks the
    /// held items, and finds the token hubs again.
    pub fn finish_restore(&mut self, held: impl IntoIterator<Item = ItemId>) {
        let params = self.params.clone();
        for (epoch, ix) in self.epochs.iter_mut() {
            if let Some(measured) = ix.build_lsh(&params, self.stored_frequencies.remove(epoch)) {
                self.frozen.push((*epoch, measured));
            }
            // The matrix keeps its spare capacity: it is not resident until used, and shrinking
            // would make the first publish after a start copy the whole matrix (a 64-byte-aligned
            // vector grows by allocate-and-copy).
            ix.present.shrink_to_fit();
            ix.tokens.shrink_to_fit();
        }
        for id in held {
            self.hold(id);
        }
        let mut found = Vec::new();
        for ix in self.epochs.values() {
            for (token, holders) in ix.token_index.shared() {
                let mut nodes: Vec<NodeIx> = holders.iter().map(|&h| self.node_of[h as usize]).collect();
                nodes.sort_unstable();
                nodes.dedup();
                for n in nodes {
                    if !self.hubs.contains(&(n, token))
                        && let Some(hub) = self.hub_check(ix, n, token)
                    {
                        self.hubs.insert((n, token));
                        found.push(hub);
                    }
                }
            }
        }
        if !found.is_empty() {
            tracing::info!(hubs = found.len(), "token hubs found again in the restored index");
        }
    }

    /// Holds an item (quarantine): it stays indexed, and is never a candidate again until it is
    /// relinked under a new identity revision.
    pub fn hold(&mut self, id: ItemId) {
        if let Some(h) = self.held.get_mut(id as usize) {
            *h = true;
        }
    }

    /// Whether `id` is held.
    pub fn is_held(&self, id: ItemId) -> bool {
        self.held.get(id as usize).copied().unwrap_or(false)
    }

    /// Whether `node`'s items holding `token` have found the hub bound: `Some` with what to
    /// report when its holders of that node are at least [`IndexBounds::token_identities`]
    /// different identities. Looks at most at [`IndexBounds::max_token_holders`] holders.
    fn hub_check(&self, ix: &EpochIndex, node: NodeIx, token: u64) -> Option<TokenHub> {
        let b = self.bounds;
        let holders = ix.token_index.get(token);
        if holders.len() < b.token_identities {
            return None;
        }
        let mine: Vec<u32> = holders.iter().copied().filter(|&h| self.node_of[h as usize] == node).take(b.max_token_holders).collect();
        if mine.len() < b.token_identities {
            return None;
        }
        let mut identities: Vec<u32> = Vec::new();
        for &h in &mine {
            let a = ix.matrix.row(h as usize);
            let pa = ix.matrix.popcount(h as usize);
            let same = identities.iter().any(|&r| {
                let and: u32 = a.iter().zip(ix.matrix.row(r as usize)).map(|(x, y)| (x & y).count_ones()).sum();
                kernel::dice_from_counts(and, pa, ix.matrix.popcount(r as usize)) >= b.same_identity_dice
            });
            if !same {
                identities.push(h);
            }
        }
        (identities.len() >= b.token_identities).then(|| TokenHub {
            node,
            kind: blocking::compact_kind(token),
            holders: mine.iter().map(|&h| ItemId::from(h)).collect(),
            identities: identities.len(),
        })
    }

    /// Indexes a batch and links its new items and new identity revisions against everything
    /// indexed under the same key epoch (and against each other). The same revision again is
    /// only indexed under its epoch. An item appearing twice in a batch counts once, as its last
    /// occurrence. Nothing is changed if any item is refused.
    ///
    /// The index is changed at once; should the caller fail to store the result, it hands the
    /// result back to [`LinkIndex::undo`], after which a retry of the same batch relinks.
    pub fn link_batch(&mut self, batch: &[Publish<'_>]) -> Result<Linked, LinkError> {
        for p in batch {
            Self::check_id(p.id)?;
            self.check_encoding(p.encoding)?;
        }
        let mut last: HashMap<ItemId, usize> = HashMap::with_capacity(batch.len());
        for (i, p) in batch.iter().enumerate() {
            last.insert(p.id, i);
        }
        let items: Vec<&Publish<'_>> = batch.iter().enumerate().filter(|(i, p)| last[&p.id] == *i).map(|x| x.1).collect();

        // 1. Index.
        let mut out = Linked::default();
        let mut to_lsh: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let mut to_link: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for p in &items {
            to_lsh.entry(p.encoding.epoch).or_default().push(p.id as u32);
            let was = (self.contains(p.id), self.revisions.get(p.id as usize).copied().unwrap_or(0));
            if was.0 && was.1 == p.revision {
                self.index(p.id, p.encoding, false);
                out.unchanged.push(p.id);
                continue;
            }
            out.undo.push((p.id, was.0, was.1));
            self.set_alive(p.id, p.revision, p.node);
            self.held[p.id as usize] = false;
            self.index(p.id, p.encoding, false);
            to_link.entry(p.encoding.epoch).or_default().push(p.id as u32);
        }
        let params = self.params.clone();
        for (epoch, rows) in &to_lsh {
            if let Some(measured) = self.epochs.get_mut(epoch).expect("indexed above").add_to_lsh(rows, &params) {
                self.frozen.push((*epoch, measured));
            }
        }

        // 2. Token hubs the batch completes: their holders of that node are relinked too.
        let mut relink_for_hub: Vec<ItemId> = Vec::new();
        for (epoch, rows) in &to_lsh {
            let ix = &self.epochs[epoch];
            let mut new_hubs = Vec::new();
            for &r in rows {
                let node = self.node_of[r as usize];
                for &t in ix.tokens_of(r).iter() {
                    if !self.hubs.contains(&(node, t))
                        && !new_hubs.iter().any(|h: &(NodeIx, u64, TokenHub)| h.0 == node && h.1 == t)
                        && let Some(hub) = self.hub_check(ix, node, t)
                    {
                        new_hubs.push((node, t, hub));
                    }
                }
            }
            for (node, t, hub) in new_hubs {
                self.hubs.insert((node, t));
                let linking = to_link.entry(*epoch).or_default();
                for &h in &hub.holders {
                    let row = h as u32;
                    if !linking.contains(&row) && !self.is_held(h) {
                        linking.push(row);
                        relink_for_hub.push(h);
                    }
                }
                out.hubs.push(hub);
            }
        }

        // 3. Block and score, epoch by epoch.
        let mut found: HashMap<ItemId, Vec<(ItemId, Band, f64)>> = HashMap::new();
        let mut stats = BatchStats::default();
        for (epoch, mut rows) in to_link {
            rows.sort_unstable();
            rows.dedup();
            let ix = &self.epochs[&epoch];
            let records = params.prior_records.unwrap_or_else(|| prior_size(ix.count as u64));
            let scorer = params.model.compact_scorer(records);
            let ctx = Ctx { params: &params, bounds: self.bounds, ix, held: &self.held, node_of: &self.node_of, hubs: &self.hubs };
            let (pairs, comparisons, bulk, skipped) = candidate_pairs(&ctx, &rows, &scorer);
            let links = score_pairs(&ctx, &pairs, &scorer);
            stats.linked_items += rows.len() as u64;
            stats.comparisons += comparisons;
            stats.scored_pairs += pairs.len() as u64;
            stats.links += links.len() as u64;
            stats.buckets_skipped += skipped.0;
            stats.tokens_skipped += skipped.1;
            for (_, _, band, _) in &links {
                stats.links_by_band[*band as usize - 1] += 1;
            }
            stats.bulk_path |= bulk;
            for (a, b, band, dice) in links {
                found.entry(a).or_default().push((b, band, dice));
                found.entry(b).or_default().push((a, band, dice));
            }
        }
        self.last_batch = stats;
        out.stats = stats;
        let unchanged: HashSet<ItemId> = out.unchanged.iter().copied().collect();
        let relinked: Vec<ItemId> = items.iter().filter(|p| !unchanged.contains(&p.id)).map(|p| p.id).chain(relink_for_hub).collect();
        // Each relinked item keeps its strongest links, at most `max_links_per_item`; a pair of
        // two relinked items stays only if both keep it (links are symmetric).
        let max = self.bounds.max_links_per_item;
        let mut kept: HashMap<ItemId, Vec<(ItemId, Band)>> = HashMap::with_capacity(relinked.len());
        for &id in &relinked {
            let mut links = found.remove(&id).unwrap_or_default();
            links.sort_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)).then(a.0.cmp(&b.0)));
            links.dedup_by_key(|l| l.0);
            if links.len() > max {
                out.stats.links_truncated += 1;
                links.truncate(max);
            }
            kept.insert(id, links.into_iter().map(|(o, band, _)| (o, band)).collect());
        }
        let kept_pairs: HashSet<(ItemId, ItemId)> = kept.iter().flat_map(|(&id, l)| l.iter().map(move |&(o, _)| (id, o))).collect();
        let keeps = |id: ItemId, other: ItemId| !kept.contains_key(&other) || kept_pairs.contains(&(other, id));
        for &id in &relinked {
            let mut links: Vec<(ItemId, Band)> = kept[&id].iter().copied().filter(|&(o, _)| keeps(id, o)).collect();
            links.sort_unstable();
            out.edits.push(GraphEdit::Relink { id, node: self.node_of[id as usize], links });
        }
        self.last_batch = out.stats;
        Ok(out)
    }

    /// Undoes what [`LinkIndex::link_batch`] changed in the index's item table (storing the
    /// result failed): new items are removed, relinked ones get back their previous revision, so
    /// that the same batch sent again is linked again. Encodings indexed under an existing
    /// item stay (they are replaced by the retry).
    pub fn undo(&mut self, linked: &Linked) {
        for &(id, was_alive, was_revision) in linked.undo.iter().rev() {
            if was_alive {
                self.revisions[id as usize] = was_revision;
            } else {
                self.remove(id);
            }
        }
    }

    /// Forgets every encoding of a key epoch (after a rotation). Links stay.
    pub fn drop_epoch(&mut self, epoch: u32) {
        self.epochs.remove(&epoch);
    }

    /// Removes an item and its encodings.
    pub fn remove(&mut self, id: ItemId) {
        if !self.contains(id) {
            return;
        }
        for ix in self.epochs.values_mut() {
            ix.remove(id as u32);
        }
        self.alive[id as usize] = false;
        self.held[id as usize] = false;
        self.live -= 1;
    }
}

/// The index, the link graph and the clusters together, for callers that need no separation
/// (the simulator, benchmarks and tests). Rebuilt from storage at start.
pub struct Linker {
    pub index: LinkIndex,
    pub graph: LinkGraph,
    cluster_changes: Vec<(ItemId, ClusterId)>,
}

impl Linker {
    pub fn new(params: LinkerParams) -> Result<Linker, String> {
        Self::with_bounds(params, IndexBounds::default(), GraphBounds::default())
    }

    pub fn with_bounds(params: LinkerParams, index: IndexBounds, graph: GraphBounds) -> Result<Linker, String> {
        Ok(Linker { index: LinkIndex::new(params, index)?, graph: LinkGraph::new(graph), cluster_changes: Vec::new() })
    }

    pub fn params(&self) -> &LinkerParams {
        self.index.params()
    }

    /// What linking the last batch took.
    pub fn last_batch(&self) -> BatchStats {
        self.index.last_batch()
    }

    /// See [`LinkIndex::lsh_collide`].
    pub fn lsh_collide(&self, epoch: u32, a: &[u64], b: &[u64]) -> bool {
        self.index.lsh_collide(epoch, a, b)
    }

    /// See [`LinkIndex::screen`].
    pub fn screen(&self, records: u64) -> Option<f32> {
        self.index.screen(records)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn contains(&self, id: ItemId) -> bool {
        self.index.contains(id)
    }

    pub fn epoch_counts(&self) -> Vec<(u32, usize)> {
        self.index.epoch_counts()
    }

    pub fn link_count(&self) -> usize {
        self.graph.link_count()
    }

    pub fn memory_bytes(&self) -> usize {
        self.index.memory_bytes() + self.graph.memory_bytes()
    }

    /// Adds a stored item without linking it (finish with [`Linker::finish_restore`]).
    pub fn restore(&mut self, id: ItemId, revision: u64, encodings: &[EpochEncoding]) -> Result<(), LinkError> {
        self.index.restore(id, revision, 0, encodings)?;
        self.graph.restore_item(id, 0);
        Ok(())
    }

    pub fn restore_link(&mut self, a: ItemId, b: ItemId, band: Band) {
        self.graph.restore_link(a, b, band);
    }

    /// Ends a restore (see [`LinkGraph::finish_restore`]); repairs are queued like any change.
    pub fn finish_restore(&mut self, clusters: impl IntoIterator<Item = (ItemId, ClusterId)>) {
        self.index.finish_restore(std::iter::empty());
        let repairs = self.graph.finish_restore(clusters);
        self.cluster_changes.extend(repairs);
    }

    /// Publishes one item (the online path). See [`Linker::publish_batch`].
    pub fn publish(&mut self, id: ItemId, revision: u64, encoding: &EpochEncoding) -> Result<LinkChange, LinkError> {
        let mut out = self.publish_batch(&[Publish { id, revision, encoding, node: 0 }])?;
        Ok(out.iter().position(|x| x.0 == id).map(|i| out.swap_remove(i).1).unwrap_or(LinkChange::Unchanged))
    }

    /// Links a batch ([`LinkIndex::link_batch`]) and applies the links to the graph. Returns one
    /// change per distinct item of the batch, in the batch's order of last occurrence, then the
    /// items relinked because a token became a hub.
    pub fn publish_batch(&mut self, batch: &[Publish<'_>]) -> Result<Vec<(ItemId, LinkChange)>, LinkError> {
        let linked = self.index.link_batch(batch)?;
        let (changes, clusters, held) = self.graph.change(&linked.edits);
        for q in &held {
            self.index.hold(q.id);
        }
        self.cluster_changes.extend(clusters);
        let mut out: Vec<(ItemId, LinkChange)> = Vec::with_capacity(changes.len() + linked.unchanged.len());
        let mut seen = HashSet::new();
        let mut changes: HashMap<ItemId, LinkChange> = changes.into_iter().collect();
        for p in batch.iter().rev() {
            if seen.insert(p.id) {
                out.push((p.id, changes.remove(&p.id).unwrap_or(LinkChange::Unchanged)));
            }
        }
        out.reverse();
        let mut rest: Vec<(ItemId, LinkChange)> = changes.into_iter().collect();
        rest.sort_by_key(|x| x.0);
        out.extend(rest);
        Ok(out)
    }

    /// Forgets every encoding of a key epoch (after a rotation). Links stay.
    pub fn drop_epoch(&mut self, epoch: u32) {
        self.index.drop_epoch(epoch);
    }

    /// Removes an item, its encodings and all its links; the clusters it held together split.
    /// Returns the ids it was linked to.
    pub fn remove(&mut self, id: ItemId) -> Vec<ItemId> {
        if !self.contains(id) {
            return Vec::new();
        }
        let neighbours: Vec<ItemId> = self.graph.links_of(id).into_iter().map(|x| x.0).collect();
        self.index.remove(id);
        let (_, clusters, _) = self.graph.change(&[GraphEdit::Remove { id }]);
        self.cluster_changes.extend(clusters);
        neighbours
    }

    pub fn cluster_of(&self, id: ItemId) -> Option<ClusterId> {
        self.graph.cluster_of(id)
    }

    /// Cluster id changes since the last call, in order (`0`: the item is gone).
    pub fn take_cluster_changes(&mut self) -> Vec<(ItemId, ClusterId)> {
        std::mem::take(&mut self.cluster_changes)
    }

    /// Everything linked to `anchor`'s person (see [`LinkGraph::related`]), all items visible.
    pub fn related(&self, anchor: ItemId) -> Vec<(ItemId, Band)> {
        self.graph.related(anchor, &|_| true)
    }

    pub fn cluster_members(&self, id: ItemId) -> Vec<ItemId> {
        self.graph.cluster_members(id)
    }

    pub fn cluster_count(&self) -> usize {
        self.graph.cluster_count()
    }

    pub fn links(&self) -> Vec<(ItemId, ItemId, Band)> {
        self.graph.links()
    }

    pub fn clusters_consistent(&self) -> Result<(), String> {
        self.graph.clusters_consistent()
    }
}

/// The federation size the prior is set for when the linker counts it itself: the items indexed,
/// rounded up to 16–31 × a power of two (at most 6 % more). A pair's band then depends on the
/// federation's size only when the count crosses one of these steps, never on one item more or
/// less (a withheld relationship's, say).
pub fn prior_size(items: u64) -> u64 {
    if items < 32 {
        return 32;
    }
    let shift = 63 - items.leading_zeros() - 4;
    let step = 1u64 << shift;
    items.div_ceil(step) * step
}

/// What the candidate search reads: the epoch's index and the item table's flags.
struct Ctx<'a> {
    params: &'a LinkerParams,
    bounds: IndexBounds,
    ix: &'a EpochIndex,
    held: &'a [bool],
    node_of: &'a [NodeIx],
    hubs: &'a HashSet<(NodeIx, u64)>,
}

impl Ctx<'_> {
    fn held(&self, row: u32) -> bool {
        self.held.get(row as usize).copied().unwrap_or(false)
    }

    fn is_hub(&self, row: u32, token: u64) -> bool {
        !self.hubs.is_empty() && self.hubs.contains(&(self.node_of.get(row as usize).copied().unwrap_or(0), token))
    }

    /// The row's tokens that are evidence (not hubs of its node).
    fn evidence(&self, row: u32) -> Tokens {
        let all = self.ix.tokens_of(row);
        if self.hubs.is_empty() {
            return all;
        }
        let mut t = Tokens::default();
        for &x in all.iter().filter(|&&x| !self.is_hub(row, x)) {
            t.buf[t.len] = x;
            t.len += 1;
        }
        t
    }
}

/// The candidate pairs of `rows` (sorted, all indexed): with any other indexed row that is not
/// held they share an LSH bucket of at most [`IndexBounds::max_bucket`] filters with at Dice ≥
/// the scorer's screen, or an exact token that is evidence on both sides and has at most
/// [`IndexBounds::max_token_holders`] holders. A pair of two batch rows is found once, as
/// (later, earlier). Sorted, without duplicates. Also returns the Dice computations made,
/// whether the bulk path ran, and the buckets and tokens skipped for their size.
fn candidate_pairs(c: &Ctx<'_>, rows: &[u32], scorer: &CompactScorer) -> (Vec<Pair>, u64, bool, (u64, u64)) {
    let screen = scorer.min_dice_without_token_agreement();
    let bulk = rows.len() >= BULK_PATH_MIN_ITEMS;
    let (mut pairs, comparisons, buckets_skipped) = if bulk { bucket_pairs(c, rows, screen) } else { query_pairs(c, rows, screen) };
    let in_batch = |o: u32| rows.binary_search(&o).is_ok();
    let mut tokens_skipped = 0u64;
    for &r in rows {
        for &t in c.evidence(r).iter() {
            let holders = c.ix.token_index.get(t);
            if holders.len() > c.bounds.max_token_holders {
                tokens_skipped += 1;
                continue;
            }
            for &o in holders {
                if o != r && !c.held(o) && !c.is_hub(o, t) && (!in_batch(o) || o < r) {
                    pairs.push(Pair { r, o });
                }
            }
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    (pairs, comparisons, bulk, (buckets_skipped, tokens_skipped))
}

/// Whether `|A∧B| = and` with `|A| + |B| = s` reaches Dice `t`, exactly as the kernel decides.
fn reaches(and: u32, s: u32, t: f32) -> bool {
    if s == 0 {
        return t == 0.0;
    }
    2.0 * f64::from(and) >= f64::from(t) * f64::from(s)
}

/// The online path: each row asks the LSH index for its candidates.
fn query_pairs(c: &Ctx<'_>, rows: &[u32], screen: Option<f32>) -> (Vec<Pair>, u64, u64) {
    let Some(t) = screen else { return (Vec::new(), 0, 0) };
    let (params, ix) = (c.params, c.ix);
    let mut comparisons = 0u64;
    let mut skipped = 0u64;
    let mut bucket: Vec<u32> = Vec::new();
    let in_batch = |o: u32| rows.binary_search(&o).is_ok();
    let mut out = Vec::new();
    let mut counts = Vec::new();
    for &r in rows {
        let words = ix.matrix.row(r as usize);
        let mut cands: Vec<u32> = Vec::new();
        for table in 0..ix.lsh.tables() {
            bucket.clear();
            ix.lsh.bucket_into(table, ix.lsh.table_key(table, words), &mut bucket);
            if bucket.len() > c.bounds.max_bucket {
                skipped += 1;
                continue;
            }
            cands.extend(bucket.iter().copied().filter(|&o| o != r && (!in_batch(o) || o < r) && !c.held(o)));
        }
        cands.sort_unstable();
        cands.dedup();
        counts.resize(cands.len(), 0);
        comparisons += cands.len() as u64;
        kernel::intersections_at(params.kernel, words, &ix.matrix, &cands, &mut counts).expect("rows indexed, lengths checked");
        let pop_r = ix.matrix.popcount(r as usize);
        for (&o, &and) in cands.iter().zip(&counts) {
            // |B| ≥ |A∧B|: most candidates fail already with |B| = |A∧B|, without reading |B|.
            if reaches(and, pop_r + and, t) && reaches(and, pop_r + ix.matrix.popcount(o as usize), t) {
                out.push(Pair { r, o });
            }
        }
    }
    (out, comparisons, skipped)
}

/// The bulk path: per LSH table (in parallel), each bucket the batch falls into is compared as a
/// block — the batch members in it against all its members — with the tiled kernel.
fn bucket_pairs(c: &Ctx<'_>, rows: &[u32], screen: Option<f32>) -> (Vec<Pair>, u64, u64) {
    let Some(t) = screen else { return (Vec::new(), 0, 0) };
    let (params, ix) = (c.params, c.ix);
    let mut in_batch = vec![false; ix.matrix.len()];
    for &r in rows {
        in_batch[r as usize] = true;
    }
    let words = params.clk_bits as usize / 64;
    let per_table: Vec<(Vec<Pair>, u64, u64)> = (0..ix.lsh.tables())
        .into_par_iter()
        .map(|table| {
            let mut keyed: Vec<(u64, u32)> = rows.iter().map(|&r| (ix.lsh.table_key(table, ix.matrix.row(r as usize)), r)).collect();
            keyed.sort_unstable();
            let mut out = Vec::new();
            let mut found = Vec::new();
            let mut comparisons = 0u64;
            let mut skipped = 0u64;
            let mut a = FilterMatrix::new(words).expect("valid length");
            let mut b = FilterMatrix::new(words).expect("valid length");
            let mut counts = Vec::new();
            let mut bucket: Vec<u32> = Vec::new();
            for group in keyed.chunk_by(|x, y| x.0 == y.0) {
                bucket.clear();
                ix.lsh.bucket_into(table, group[0].0, &mut bucket);
                let bucket = bucket.as_slice();
                if bucket.len() < 2 {
                    continue;
                }
                // A bucket too large, or one that the batch fills with a large group (a batch
                // of copies of one encoding), is a degenerate encoding shared by many: not
                // walked. A single row (the online path) is never over the second bound.
                if bucket.len() > c.bounds.max_bucket || group.len() * bucket.len() > c.bounds.max_bucket * GROUP_FACTOR {
                    skipped += group.len() as u64;
                    continue;
                }
                comparisons += (group.len() * bucket.len()) as u64;
                if group.len() < SMALL_GROUP {
                    // Too few batch rows to fill a tile: count straight from the matrix.
                    counts.resize(bucket.len(), 0);
                    for &(_, r) in group {
                        let words = ix.matrix.row(r as usize);
                        kernel::intersections_at(params.kernel, words, &ix.matrix, bucket, &mut counts).expect("rows indexed");
                        let pop_r = ix.matrix.popcount(r as usize);
                        for (&o, &and) in bucket.iter().zip(&counts) {
                            if o != r
                                && (!in_batch[o as usize] || o < r)
                                && !c.held(o)
                                && reaches(and, pop_r + and, t)
                                && reaches(and, pop_r + ix.matrix.popcount(o as usize), t)
                            {
                                out.push(Pair { r, o });
                            }
                        }
                    }
                    continue;
                }
                a.clear_all();
                b.clear_all();
                for &(_, r) in group {
                    a.push(ix.matrix.row(r as usize)).expect("valid length");
                }
                for &o in bucket {
                    b.push(ix.matrix.row(o as usize)).expect("valid length");
                }
                found.clear();
                kernel::dice_pairs_sequential(params.kernel, &a, &b, t, &mut found).expect("valid threshold and lengths");
                for p in &found {
                    let (r, o) = (group[p.a as usize].1, bucket[p.b as usize]);
                    if o != r && (!in_batch[o as usize] || o < r) && !c.held(o) {
                        out.push(Pair { r, o });
                    }
                }
            }
            out.sort_unstable();
            out.dedup();
            (out, comparisons, skipped)
        })
        .collect();
    let comparisons = per_table.iter().map(|x| x.1).sum();
    let skipped = per_table.iter().map(|x| x.2).sum();
    (per_table.into_iter().flat_map(|x| x.0).collect(), comparisons, skipped)
}

/// Scores the candidate pairs (in parallel); returns the links, as (batch item, other, band).
fn score_pairs(c: &Ctx<'_>, pairs: &[Pair], scorer: &CompactScorer) -> Vec<(ItemId, ItemId, Band, f64)> {
    let ix = c.ix;
    pairs
        .par_iter()
        .filter_map(|p| {
            let (a, b) = (ix.matrix.row(p.r as usize), ix.matrix.row(p.o as usize));
            let and: u32 = a.iter().zip(b).map(|(x, y)| (x & y).count_ones()).sum();
            let dice = kernel::dice_from_counts(and, ix.matrix.popcount(p.r as usize), ix.matrix.popcount(p.o as usize));
            scorer.band(dice, &c.evidence(p.r), &c.evidence(p.o)).map(|band| (ItemId::from(p.r), ItemId::from(p.o), band, dice))
        })
        .collect()
}

#[cfg(test)]
mod tests;
