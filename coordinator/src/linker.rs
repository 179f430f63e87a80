//! Linking: blocks, scores and clusters published encodings, incrementally, and answers "which
//! items belong to the same person as this one, and how sure are we?".
//!
//! # The pipeline
//!
//! Each key epoch has its own index ([`EpochIndex`]): the CLKs in one contiguous
//! [`FilterMatrix`] whose row is the item number, the exact tokens in compact form, a Hamming
//! [`LshIndex`] over the CLKs and a [`TokenIndex`]. Publishing a batch of items:
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
//! 4. **Cluster**: strong links (certain, probable) merge; possible links are kept apart, shown
//!    next to the cluster "to be verified", never merged. Duplicates inside one entity are linked
//!    like any other pair.
//!
//! # Clusters and their ids
//!
//! A cluster is a connected component of strong links; its id is stable:
//! - a new item alone gets a fresh id; an item joining a cluster takes its id;
//! - when clusters merge, the oldest (smallest) id stays;
//! - when a withdrawal or a new identity revision removes the evidence that held a cluster
//!   together, it splits: the part keeping most of the old members keeps the id (ties: the part
//!   with the oldest item), the other parts get fresh ids.
//!
//! Every change of an item's cluster id is queued for storage ([`Linker::take_cluster_changes`]).
//! Links are between items (references), not encodings: a link found under one key epoch stands
//! while both identities keep their revision, whatever epochs are later added or dropped.
//!
//! # Bounds
//!
//! Item numbers are rows: at most [`MAX_ITEM_ID`]. Everything else is bounded by the items.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use ponte_proto::bits::to_words;
use ponte_proto::schema::LinkageSchema;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::blocking::{self, LshIndex, LshParams, TokenIndex, compact_token};
use crate::kernel::{self, FilterMatrix, KernelKind};
use crate::model::EpochEncoding;
use crate::scoring::{CompactScorer, FsModel};

/// How sure a link is. Ordered from strongest to weakest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Band {
    Certain = 1,
    Probable = 2,
    Possible = 3,
}

impl Band {
    /// Certain and probable links merge clusters; possible ones do not.
    pub fn is_strong(self) -> bool {
        self <= Band::Probable
    }
}

/// Internal item number (stable for the life of an item; never leaves the coordinator). It is
/// also the item's row in the filter matrices.
pub type ItemId = u64;
/// A person cluster's id (0 is never used).
pub type ClusterId = u64;

/// Largest item number the linker accepts (rows are `u32`; the token index keeps a flag bit).
pub const MAX_ITEM_ID: ItemId = (1 << 31) - 1;
/// Batches with at least this many new items take the bulk (bucket) path.
pub const BULK_PATH_MIN_ITEMS: usize = 64;
/// The LSH positions are re-chosen from measured bit frequencies each time an epoch's index
/// doubles, up to this many items; beyond, they stay until the next start.
const ADAPT_LSH_UNTIL: usize = 1 << 17;
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

/// What publishing one item changed in the link graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    /// A new item or a new identity revision: its old links are gone, these are its links now.
    Relinked { removed: Vec<ItemId>, links: Vec<(ItemId, Band)> },
    /// The same identity revision under another (or the same) key epoch: indexed for future
    /// comparisons, links unchanged. This is what keeps answers identical through a key rotation.
    Unchanged,
}

/// One item of a batch to publish.
#[derive(Debug, Clone, Copy)]
pub struct Publish<'a> {
    pub id: ItemId,
    pub revision: u64,
    pub encoding: &'a EpochEncoding,
}

/// Why the linker refused a batch (nothing of it was applied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("item number {0} is beyond the linker's limit of {MAX_ITEM_ID} items")]
    ItemId(ItemId),
    #[error("a CLK of {got} bytes; the linkage schema's is {expected}")]
    ClkLength { expected: usize, got: usize },
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
    /// Items indexed when the LSH positions were last chosen from measured frequencies.
    adapted_at: usize,
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
            adapted_at: 0,
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

    /// Re-chooses the LSH positions, skipping the positions most often set among (a sample of)
    /// the indexed filters, and re-inserts every filter.
    fn adapt_lsh(&mut self, params: &LinkerParams) {
        let step = self.count.div_ceil(FREQUENCY_SAMPLE).max(1);
        let sample = self.rows().step_by(step).map(|r| self.matrix.row(r as usize));
        let freq = blocking::bit_frequencies(sample, params.clk_bits);
        let mut lsh = LshIndex::with_frequencies(params.lsh, params.clk_bits, &freq).expect("checked by Linker::new");
        let all: Vec<(u32, &[u64])> = self.rows().map(|r| (r, self.matrix.row(r as usize))).collect();
        lsh.insert_many(&all);
        self.lsh = lsh;
        self.adapted_at = self.count;
    }

    /// Puts `rows` (indexed without LSH) into the LSH tables — or, when the index has doubled
    /// since the positions were last chosen, re-chooses them and rebuilds the tables with
    /// everything.
    fn add_to_lsh(&mut self, rows: &[u32], params: &LinkerParams) {
        if params.lsh.skip_most_frequent > 0 && self.count >= 2 * self.adapted_at.max(32) && self.adapted_at < ADAPT_LSH_UNTIL {
            self.adapt_lsh(params);
        } else {
            let items: Vec<(u32, &[u64])> = rows.iter().map(|&r| (r, self.matrix.row(r as usize))).collect();
            self.lsh.insert_many(&items);
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
}

/// The index, the link graph and the clusters. Rebuilt from storage at start.
pub struct Linker {
    params: LinkerParams,
    last_batch: BatchStats,
    epochs: BTreeMap<u32, EpochIndex>,
    alive: Vec<bool>,
    revisions: Vec<u64>,
    live: usize,
    adjacency: HashMap<ItemId, Vec<(ItemId, Band)>>,
    cluster: Vec<ClusterId>,
    next_cluster: ClusterId,
    cluster_changes: Vec<(ItemId, ClusterId)>,
}

impl Linker {
    pub fn new(params: LinkerParams) -> Result<Linker, String> {
        params.lsh.check(params.clk_bits).map_err(|e| format!("linkage schema [blocking]: {e}"))?;
        FilterMatrix::new(params.clk_bits as usize / 64).map_err(|e| format!("CLK length: {e}"))?;
        let problems = params.model.check();
        if !problems.is_empty() {
            return Err(format!("matching model: {}", problems.join("; ")));
        }
        Ok(Linker {
            params,
            last_batch: BatchStats::default(),
            epochs: BTreeMap::new(),
            alive: Vec::new(),
            revisions: Vec::new(),
            live: 0,
            adjacency: HashMap::new(),
            cluster: Vec::new(),
            next_cluster: 1,
            cluster_changes: Vec::new(),
        })
    }

    pub fn params(&self) -> &LinkerParams {
        &self.params
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

    /// Items indexed under each key epoch.
    pub fn epoch_counts(&self) -> Vec<(u32, usize)> {
        self.epochs.iter().map(|(e, ix)| (*e, ix.count)).collect()
    }

    /// Number of links (each pair once), of every band.
    pub fn link_count(&self) -> usize {
        self.adjacency.values().map(Vec::len).sum::<usize>() / 2
    }

    /// Estimated bytes held by the indexes, the link graph and the cluster table.
    pub fn memory_bytes(&self) -> usize {
        self.epochs.values().map(EpochIndex::memory_bytes).sum::<usize>()
            + self.alive.capacity()
            + self.revisions.capacity() * 8
            + self.cluster.capacity() * 8
            + self.adjacency.values().map(|v| 48 + v.capacity() * 16).sum::<usize>()
    }

    fn check_id(id: ItemId) -> Result<u32, LinkError> {
        if id > MAX_ITEM_ID { Err(LinkError::ItemId(id)) } else { Ok(id as u32) }
    }

    fn check_encoding(&self, enc: &EpochEncoding) -> Result<(), LinkError> {
        let expected = self.params.clk_bits as usize / 8;
        if enc.clk.len() != expected { Err(LinkError::ClkLength { expected, got: enc.clk.len() }) } else { Ok(()) }
    }

    fn set_alive(&mut self, id: ItemId, revision: u64) {
        let i = id as usize;
        if self.alive.len() <= i {
            self.alive.resize(i + 1, false);
            self.revisions.resize(i + 1, 0);
            self.cluster.resize(i + 1, 0);
        }
        if !self.alive[i] {
            self.live += 1;
        }
        self.alive[i] = true;
        self.revisions[i] = revision;
    }

    fn index(&mut self, id: ItemId, enc: &EpochEncoding, into_lsh: bool) {
        let words = to_words(&enc.clk);
        let tokens: Vec<u64> = enc.tokens.iter().map(compact_token).collect();
        let params = &self.params;
        let ix = self.epochs.entry(enc.epoch).or_insert_with(|| EpochIndex::new(params));
        ix.insert(id as u32, &words, &tokens, into_lsh);
    }

    /// Adds a stored item to the index without linking it (used when restoring from storage;
    /// finish with [`Linker::finish_restore`]).
    pub fn restore(&mut self, id: ItemId, revision: u64, encodings: &[EpochEncoding]) -> Result<(), LinkError> {
        Self::check_id(id)?;
        for enc in encodings {
            self.check_encoding(enc)?;
        }
        self.set_alive(id, revision);
        for enc in encodings {
            // The LSH tables are built once, by `finish_restore`.
            self.index(id, enc, false);
        }
        Ok(())
    }

    /// Restores a stored link (between two restored items).
    pub fn restore_link(&mut self, a: ItemId, b: ItemId, band: Band) {
        if self.contains(a) && self.contains(b) && a != b {
            self.add_link(a, b, band);
        }
    }

    /// Ends a restore: chooses the LSH positions from the restored filters, takes the stored
    /// cluster ids, and repairs any the links contradict (as a merge or split would; the repairs
    /// are queued like any change). Ids of items not restored are ignored.
    pub fn finish_restore(&mut self, clusters: impl IntoIterator<Item = (ItemId, ClusterId)>) {
        let params = self.params.clone();
        for ix in self.epochs.values_mut() {
            ix.adapt_lsh(&params);
            // The matrix keeps its spare capacity: it is not resident until used, and shrinking
            // would make the first publish after a start copy the whole matrix (a 64-byte-aligned
            // vector grows by allocate-and-copy).
            ix.present.shrink_to_fit();
            ix.tokens.shrink_to_fit();
        }
        for (id, c) in clusters {
            if self.contains(id) && c != 0 {
                self.cluster[id as usize] = c;
                self.next_cluster = self.next_cluster.max(c + 1);
            }
        }
        let all: Vec<ItemId> = (0..self.alive.len() as ItemId).filter(|&i| self.contains(i)).collect();
        self.settle(&all);
    }

    /// Publishes one item (the online path). See [`Linker::publish_batch`].
    pub fn publish(&mut self, id: ItemId, revision: u64, encoding: &EpochEncoding) -> Result<LinkChange, LinkError> {
        let mut out = self.publish_batch(&[Publish { id, revision, encoding }])?;
        Ok(out.pop().map(|x| x.1).unwrap_or(LinkChange::Unchanged))
    }

    /// Indexes a batch and links its new items and new identity revisions against everything
    /// indexed under the same key epoch (and against each other). The same revision again is
    /// only indexed under its epoch ([`LinkChange::Unchanged`]). An item appearing twice in a
    /// batch counts once, as its last occurrence. Returns one change per distinct item, in
    /// the batch's order of last occurrence. Nothing is applied if any item is refused.
    pub fn publish_batch(&mut self, batch: &[Publish<'_>]) -> Result<Vec<(ItemId, LinkChange)>, LinkError> {
        for p in batch {
            Self::check_id(p.id)?;
            self.check_encoding(p.encoding)?;
        }
        let mut last: HashMap<ItemId, usize> = HashMap::with_capacity(batch.len());
        for (i, p) in batch.iter().enumerate() {
            last.insert(p.id, i);
        }
        let items: Vec<&Publish<'_>> = batch.iter().enumerate().filter(|(i, p)| last[&p.id] == *i).map(|x| x.1).collect();

        // 1. Index; drop the links of replaced revisions.
        let mut results: Vec<(ItemId, Option<Vec<ItemId>>)> = Vec::with_capacity(items.len());
        let mut to_lsh: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let mut to_link: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let mut touched: Vec<ItemId> = Vec::new();
        for p in &items {
            to_lsh.entry(p.encoding.epoch).or_default().push(p.id as u32);
            if self.contains(p.id) && self.revisions[p.id as usize] == p.revision {
                self.index(p.id, p.encoding, false);
                results.push((p.id, None));
                continue;
            }
            let removed = self.unlink(p.id);
            touched.extend(&removed);
            touched.push(p.id);
            self.set_alive(p.id, p.revision);
            self.index(p.id, p.encoding, false);
            to_link.entry(p.encoding.epoch).or_default().push(p.id as u32);
            results.push((p.id, Some(removed)));
        }
        let params = self.params.clone();
        for (epoch, rows) in &to_lsh {
            self.epochs.get_mut(epoch).expect("indexed above").add_to_lsh(rows, &params);
        }

        // 2–3. Block and score, epoch by epoch.
        let mut new_links: Vec<(ItemId, ItemId, Band)> = Vec::new();
        let mut stats = BatchStats::default();
        for (epoch, mut rows) in to_link {
            rows.sort_unstable();
            let ix = &self.epochs[&epoch];
            let records = params.prior_records.unwrap_or(ix.count as u64);
            let scorer = params.model.compact_scorer(records);
            let (pairs, comparisons, bulk) = candidate_pairs(&params, ix, &rows, &scorer);
            let links = score_pairs(ix, &pairs, &scorer);
            stats.linked_items += rows.len() as u64;
            stats.comparisons += comparisons;
            stats.scored_pairs += pairs.len() as u64;
            stats.links += links.len() as u64;
            for (_, _, band) in &links {
                stats.links_by_band[*band as usize - 1] += 1;
            }
            stats.bulk_path |= bulk;
            new_links.extend(links);
        }
        self.last_batch = stats;
        for &(a, b, band) in &new_links {
            self.add_link(a, b, band);
            touched.push(b);
        }

        // 4. Clusters.
        self.settle(&touched);

        Ok(results
            .into_iter()
            .map(|(id, removed)| {
                let change = match removed {
                    None => LinkChange::Unchanged,
                    Some(removed) => LinkChange::Relinked { removed, links: self.links_of(id) },
                };
                (id, change)
            })
            .collect())
    }

    fn links_of(&self, id: ItemId) -> Vec<(ItemId, Band)> {
        let mut v = self.adjacency.get(&id).cloned().unwrap_or_default();
        v.sort();
        v
    }

    fn add_link(&mut self, a: ItemId, b: ItemId, band: Band) {
        for (x, y) in [(a, b), (b, a)] {
            let adj = self.adjacency.entry(x).or_default();
            match adj.iter_mut().find(|(n, _)| *n == y) {
                Some(slot) => slot.1 = band,
                None => adj.push((y, band)),
            }
        }
    }

    /// Removes every link of `id`; returns its former neighbours, sorted.
    fn unlink(&mut self, id: ItemId) -> Vec<ItemId> {
        let mut neighbours: Vec<ItemId> = self.adjacency.remove(&id).map(|v| v.into_iter().map(|x| x.0).collect()).unwrap_or_default();
        for n in &neighbours {
            if let Some(adj) = self.adjacency.get_mut(n) {
                adj.retain(|x| x.0 != id);
                if adj.is_empty() {
                    self.adjacency.remove(n);
                }
            }
        }
        neighbours.sort_unstable();
        neighbours
    }

    /// Forgets every encoding of a key epoch (after a rotation). Links stay.
    pub fn drop_epoch(&mut self, epoch: u32) {
        self.epochs.remove(&epoch);
    }

    /// Removes an item, its encodings and all its links; the clusters it held together split.
    /// Returns the ids it was linked to.
    pub fn remove(&mut self, id: ItemId) -> Vec<ItemId> {
        if !self.contains(id) {
            return Vec::new();
        }
        for ix in self.epochs.values_mut() {
            ix.remove(id as u32);
        }
        let neighbours = self.unlink(id);
        self.alive[id as usize] = false;
        self.live -= 1;
        if self.cluster[id as usize] != 0 {
            self.cluster[id as usize] = 0;
            self.cluster_changes.push((id, 0));
        }
        self.settle(&neighbours);
        neighbours
    }

    /// The cluster (person) an item belongs to.
    pub fn cluster_of(&self, id: ItemId) -> Option<ClusterId> {
        self.contains(id).then(|| self.cluster[id as usize]).filter(|c| *c != 0)
    }

    /// Cluster id changes since the last call, in order (`0`: the item is gone).
    pub fn take_cluster_changes(&mut self) -> Vec<(ItemId, ClusterId)> {
        std::mem::take(&mut self.cluster_changes)
    }

    /// Gives every strong component containing a `touched` item one id, by the rules of the
    /// module documentation, and queues the changes.
    fn settle(&mut self, touched: &[ItemId]) {
        let mut seen: HashSet<ItemId> = HashSet::new();
        let mut components: Vec<Vec<ItemId>> = Vec::new();
        let mut sorted: Vec<ItemId> = touched.iter().copied().filter(|&t| self.contains(t)).collect();
        sorted.sort_unstable();
        sorted.dedup();
        for t in sorted {
            if seen.contains(&t) {
                continue;
            }
            let mut comp = self.component(t, Band::Probable);
            comp.push(t);
            comp.sort_unstable();
            seen.extend(comp.iter().copied());
            components.push(comp);
        }
        // Claims: (cluster id, members holding it in the component, the component's oldest item).
        let mut claims: Vec<(ClusterId, std::cmp::Reverse<usize>, ItemId, usize)> = Vec::new();
        for (ci, comp) in components.iter().enumerate() {
            let mut counts: BTreeMap<ClusterId, usize> = BTreeMap::new();
            for &m in comp {
                let c = self.cluster[m as usize];
                if c != 0 {
                    *counts.entry(c).or_default() += 1;
                }
            }
            for (c, n) in counts {
                claims.push((c, std::cmp::Reverse(n), comp[0], ci));
            }
        }
        claims.sort_unstable();
        let mut won: Vec<Option<ClusterId>> = vec![None; components.len()];
        let mut taken: HashSet<ClusterId> = HashSet::new();
        for (c, _, _, ci) in claims {
            if taken.insert(c) {
                // The first (largest, then oldest) claimant wins the id; among the ids a
                // component wins, the smallest (oldest) is kept: a merge.
                let w = &mut won[ci];
                *w = Some(w.map_or(c, |x| x.min(c)));
            }
        }
        for (ci, comp) in components.iter().enumerate() {
            let id = match won[ci] {
                Some(c) => c,
                None => {
                    let c = self.next_cluster;
                    self.next_cluster += 1;
                    c
                }
            };
            for &m in comp {
                if self.cluster[m as usize] != id {
                    self.cluster[m as usize] = id;
                    self.cluster_changes.push((m, id));
                }
            }
        }
    }

    /// Everything linked to `anchor`'s person, with the band a reader should see:
    /// items reachable over certain links only → certain; over certain and probable links →
    /// probable; items with a possible link to a member of the cluster → possible.
    /// The anchor itself is not included. Deterministic order (by item id).
    pub fn related(&self, anchor: ItemId) -> Vec<(ItemId, Band)> {
        let mut best: BTreeMap<ItemId, Band> = BTreeMap::new();
        for level in [Band::Certain, Band::Probable] {
            for id in self.component(anchor, level) {
                best.entry(id).or_insert(level);
            }
        }
        let members: Vec<ItemId> = std::iter::once(anchor).chain(best.keys().copied()).collect();
        for m in members {
            if let Some(adj) = self.adjacency.get(&m) {
                for &(n, band) in adj {
                    if band == Band::Possible {
                        best.entry(n).or_insert(Band::Possible);
                    }
                }
            }
        }
        best.remove(&anchor);
        best.into_iter().collect()
    }

    /// The members of `id`'s person cluster (its strong component), `id` included, sorted.
    pub fn cluster_members(&self, id: ItemId) -> Vec<ItemId> {
        if !self.contains(id) {
            return Vec::new();
        }
        let mut m = self.component(id, Band::Probable);
        m.push(id);
        m.sort_unstable();
        m
    }

    /// Items reachable from `start` over links at least as strong as `level` (without `start`).
    fn component(&self, start: ItemId, level: Band) -> Vec<ItemId> {
        let mut seen = HashSet::from([start]);
        let mut queue = VecDeque::from([start]);
        let mut out = Vec::new();
        while let Some(x) = queue.pop_front() {
            if let Some(adj) = self.adjacency.get(&x) {
                for &(n, band) in adj {
                    if band <= level && seen.insert(n) {
                        out.push(n);
                        queue.push_back(n);
                    }
                }
            }
        }
        out
    }

    /// Number of distinct persons (clusters) among the indexed items.
    pub fn cluster_count(&self) -> usize {
        let ids: HashSet<ClusterId> = (0..self.alive.len()).filter(|&i| self.alive[i]).map(|i| self.cluster[i]).collect();
        ids.len()
    }

    /// All links, each once (a < b), sorted.
    pub fn links(&self) -> Vec<(ItemId, ItemId, Band)> {
        let mut out = Vec::new();
        for (&a, adj) in &self.adjacency {
            for &(b, band) in adj {
                if a < b {
                    out.push((a, b, band));
                }
            }
        }
        out.sort();
        out
    }

    /// Whether the cluster ids are exactly the strong components: every component has one id
    /// and no two share one. For tests and `stats --check`.
    pub fn clusters_consistent(&self) -> Result<(), String> {
        let mut owner: HashMap<ClusterId, ItemId> = HashMap::new();
        let mut seen = HashSet::new();
        for i in 0..self.alive.len() as ItemId {
            if !self.contains(i) || seen.contains(&i) {
                continue;
            }
            let mut comp = self.component(i, Band::Probable);
            comp.push(i);
            let id = self.cluster[i as usize];
            if id == 0 {
                return Err(format!("item {i} has no cluster"));
            }
            for &m in &comp {
                seen.insert(m);
                if self.cluster[m as usize] != id {
                    return Err(format!("items {i} and {m} are strongly linked but in clusters {id} and {}", self.cluster[m as usize]));
                }
            }
            if let Some(other) = owner.insert(id, i) {
                return Err(format!("cluster {id} holds the unlinked items {other} and {i}"));
            }
        }
        Ok(())
    }
}

/// The candidate pairs of `rows` (sorted, all indexed in `ix`): with any other indexed row they
/// share an LSH bucket with at Dice ≥ the scorer's screen, or an exact token with. A pair of two
/// batch rows is found once, as (later, earlier). Sorted, without duplicates.
/// Also returns the Dice computations made and whether the bulk path ran.
fn candidate_pairs(params: &LinkerParams, ix: &EpochIndex, rows: &[u32], scorer: &CompactScorer) -> (Vec<Pair>, u64, bool) {
    let screen = scorer.min_dice_without_token_agreement();
    let bulk = rows.len() >= BULK_PATH_MIN_ITEMS;
    let (mut pairs, comparisons) = if bulk { bucket_pairs(params, ix, rows, screen) } else { query_pairs(params, ix, rows, screen) };
    let in_batch = |o: u32| rows.binary_search(&o).is_ok();
    for &r in rows {
        for &t in ix.tokens_of(r).iter() {
            for &o in ix.token_index.get(t) {
                if o != r && (!in_batch(o) || o < r) {
                    pairs.push(Pair { r, o });
                }
            }
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    (pairs, comparisons, bulk)
}

/// Whether `|A∧B| = and` with `|A| + |B| = s` reaches Dice `t`, exactly as the kernel decides.
fn reaches(and: u32, s: u32, t: f32) -> bool {
    if s == 0 {
        return t == 0.0;
    }
    2.0 * f64::from(and) >= f64::from(t) * f64::from(s)
}

/// The online path: each row asks the LSH index for its candidates.
fn query_pairs(params: &LinkerParams, ix: &EpochIndex, rows: &[u32], screen: Option<f32>) -> (Vec<Pair>, u64) {
    let Some(t) = screen else { return (Vec::new(), 0) };
    let mut comparisons = 0u64;
    let in_batch = |o: u32| rows.binary_search(&o).is_ok();
    let mut out = Vec::new();
    let mut counts = Vec::new();
    for &r in rows {
        let words = ix.matrix.row(r as usize);
        let cands: Vec<u32> = ix.lsh.candidates(words).into_iter().filter(|&o| o != r && (!in_batch(o) || o < r)).collect();
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
    (out, comparisons)
}

/// The bulk path: per LSH table (in parallel), each bucket the batch falls into is compared as a
/// block — the batch members in it against all its members — with the tiled kernel.
fn bucket_pairs(params: &LinkerParams, ix: &EpochIndex, rows: &[u32], screen: Option<f32>) -> (Vec<Pair>, u64) {
    let Some(t) = screen else { return (Vec::new(), 0) };
    let mut in_batch = vec![false; ix.matrix.len()];
    for &r in rows {
        in_batch[r as usize] = true;
    }
    let words = params.clk_bits as usize / 64;
    let per_table: Vec<(Vec<Pair>, u64)> = (0..ix.lsh.tables())
        .into_par_iter()
        .map(|table| {
            let mut keyed: Vec<(u64, u32)> = rows.iter().map(|&r| (ix.lsh.table_key(table, ix.matrix.row(r as usize)), r)).collect();
            keyed.sort_unstable();
            let mut out = Vec::new();
            let mut found = Vec::new();
            let mut comparisons = 0u64;
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
                    if o != r && (!in_batch[o as usize] || o < r) {
                        out.push(Pair { r, o });
                    }
                }
            }
            out.sort_unstable();
            out.dedup();
            (out, comparisons)
        })
        .collect();
    let comparisons = per_table.iter().map(|x| x.1).sum();
    (per_table.into_iter().flat_map(|x| x.0).collect(), comparisons)
}

/// Scores the candidate pairs (in parallel); returns the links, as (batch item, other, band).
fn score_pairs(ix: &EpochIndex, pairs: &[Pair], scorer: &CompactScorer) -> Vec<(ItemId, ItemId, Band)> {
    pairs
        .par_iter()
        .filter_map(|p| {
            let (a, b) = (ix.matrix.row(p.r as usize), ix.matrix.row(p.o as usize));
            let and: u32 = a.iter().zip(b).map(|(x, y)| (x & y).count_ones()).sum();
            let dice = kernel::dice_from_counts(and, ix.matrix.popcount(p.r as usize), ix.matrix.popcount(p.o as usize));
            scorer.band(dice, &ix.tokens_of(p.r), &ix.tokens_of(p.o)).map(|band| (ItemId::from(p.r), ItemId::from(p.o), band))
        })
        .collect()
}

#[cfg(test)]
mod tests;
