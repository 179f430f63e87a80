//! The pattern-mining attack's two halves, on plain bit columns: finding the bit positions of
//! plaintext items (q-grams, whole tokens) by conditional frequent-pattern mining, and
//! re-identifying filters from the items whose positions they hold.
//!
//! # Mining (after Christen, Ranbaduge, Vatsalan, Schnell, PAKDD 2017 / TKDE 2018)
//!
//! The filters of all records whose value contains item g hold g's k positions; no other filter
//! needs to. So g's positions form a pattern set in (about) the share of filters that the
//! attacker's plaintext reference predicts for g. Mining works on trees of *nodes*, each a set of
//! filters paired with the reference values believed to match them (a root: all of both):
//!
//! 1. **candidates**: the node's most frequent items whose positions are unknown (`tries`), each
//!    expected on s = p · n of the node's n filters and on S = P · N of all N filters;
//! 2. **growth**, per candidate: open positions are those set in at least (1 − ε) s of the node's
//!    filters and (1 − ε) S of all (but not in nearly all), and not shadowed by known items about
//!    as frequent here. Seeds are the open positions whose supports are closest to what one of
//!    g's positions should show — the filters with g plus those where other items set it (the
//!    median position's rate): the most supported positions are where items collide. From a
//!    seed, the position set in most filters holding the pattern so far is added (near ties: the
//!    better fit), while (1 − ε) s still hold it, up to k (the schema is public); past two thirds
//!    of k a step losing more than a twentieth of the holders ends it;
//! 3. **acceptance**: the pattern's length fits k; its holders are within a factor (1 − ε) of s
//!    and of S; how often they hold the node's informative known items matches how often g's
//!    values contain them (`profile_slack`); and no other unknown item whose k fits predicts the
//!    two supports within `label_margin` as well, unless it occurs in the same values here. Two
//!    accepted items claiming much the same positions are both dropped, unless one pattern is
//!    too long for the other's k or the two always occur together here;
//! 4. **split**: the node's filters holding the first accepted pattern go with the values
//!    containing its item, the rest with the rest, and both children are mined. Conditioning
//!    raises the share of what goes with the item (the next bigram, the names of one sex), so
//!    items too rare to stand out among all filters become frequent in a child. A node where
//!    nothing is accepted is split on the known item dividing it most evenly, or else queued once
//!    more with no `label_margin`;
//! 5. **rounds**: when the queue is empty, identified items whose co-occurrence over the whole
//!    database contradicts the reference are dropped ([`prune`]), and mining starts again — from
//!    the whole database and from the filters of every item known by then (with salting, a
//!    year's names are frequent only among the filters of that year) — until a round adds nothing.
//!
//! Items contained in exactly the same reference values (a first name and its canonical form,
//! the bigrams of a name no other shares) are mined as one, with the sum of their k. "Holding" a
//! pattern tolerates one missing position in ten (noise such as BLIP).
//!
//! Deterministic: every choice breaks ties by position or item number, and parallel work is
//! collected in order.
//!
//! Bounds: at most `max_nodes` nodes and `max_items` items per run; sets of filters are kept as
//! their non-zero 64-bit words, so a node costs what it holds, not the whole database.

use std::collections::VecDeque;

use rayon::prelude::*;

/// Filters stored by bit position: column `j` is a bitset over records (`stride` words).
pub(crate) struct Columns<'a> {
    pub records: usize,
    pub stride: usize,
    pub words: &'a [u64],
}

impl Columns<'_> {
    pub fn bits(&self) -> usize {
        self.words.len() / self.stride.max(1)
    }
    fn col(&self, j: usize) -> &[u64] {
        &self.words[j * self.stride..(j + 1) * self.stride]
    }
    /// All records, as a sparse set.
    fn all(&self) -> Sparse {
        (0..self.stride)
            .map(|w| {
                let left = self.records - w * 64;
                (w as u32, if left >= 64 { u64::MAX } else { (1u64 << left) - 1 })
            })
            .collect()
    }
}

/// A set of records as its non-zero words: (word index, word).
type Sparse = Vec<(u32, u64)>;

fn size(s: &Sparse) -> usize {
    s.iter().map(|(_, w)| w.count_ones() as usize).sum()
}

fn and_size(s: &Sparse, col: &[u64]) -> usize {
    s.iter().map(|&(i, w)| (w & col[i as usize]).count_ones() as usize).sum()
}

fn and(s: &Sparse, col: &[u64]) -> Sparse {
    s.iter().map(|&(i, w)| (i, w & col[i as usize])).filter(|(_, w)| *w != 0).collect()
}

fn minus(a: &Sparse, b: &Sparse) -> Sparse {
    let mut out = Vec::with_capacity(a.len());
    let mut k = 0;
    for &(i, w) in a {
        while k < b.len() && b[k].0 < i {
            k += 1;
        }
        let rest = if k < b.len() && b[k].0 == i { w & !b[k].1 } else { w };
        if rest != 0 {
            out.push((i, rest));
        }
    }
    out
}

/// Missing positions tolerated when testing whether a filter holds a pattern.
pub(crate) fn tolerance(pattern_len: usize) -> usize {
    pattern_len / 10
}

/// The records of `within` whose filters hold `pattern` (all but [`tolerance`] positions set).
fn holders(cols: &Columns<'_>, within: &Sparse, pattern: &[u32]) -> Sparse {
    let need = pattern.len() - tolerance(pattern.len());
    if need == pattern.len() {
        let mut s = within.clone();
        for &j in pattern {
            s = and(&s, cols.col(j as usize));
        }
        return s;
    }
    let mut out = Vec::new();
    for &(i, w) in within {
        let mut count = [0u16; 64];
        for &j in pattern {
            let mut x = w & cols.col(j as usize)[i as usize];
            while x != 0 {
                count[x.trailing_zeros() as usize] += 1;
                x &= x - 1;
            }
        }
        let mut h = 0u64;
        for (b, &c) in count.iter().enumerate() {
            if c as usize >= need {
                h |= 1 << b;
            }
        }
        if h != 0 {
            out.push((i, h));
        }
    }
    out
}

/// The knobs of [`mine`].
#[derive(Debug, Clone)]
pub(crate) struct MiningParams {
    /// ε: how far a pattern's support may stray from the reference's prediction, as a share.
    pub tolerance: f64,
    /// Fewest filters a pattern (and so a node worth mining) must be expected to cover.
    pub min_support: usize,
    /// Most nodes visited (retries included).
    pub max_nodes: usize,
    /// Most items identified.
    pub max_items: usize,
    /// The most frequent unknown items of a node whose patterns are looked for.
    pub tries: usize,
    /// Start positions tried per item.
    pub seeds: usize,
    /// Known items whose co-occurrence checks a pattern.
    pub profile_items: usize,
    /// Most a pattern's co-occurrence with the known items may differ, on average, from the
    /// reference's.
    pub profile_slack: f64,
    /// Times a node where nothing was found is queued again (once more is known), settling
    /// then for the best-fitting label without `label_margin`.
    pub retries: u8,
    /// How much worse every other unknown item must predict a pattern's supports than the item
    /// it is given to, in |ln(observed / expected)| summed over the node and the whole database.
    pub label_margin: f64,
    /// Most an identified item's co-occurrence with the others may differ, on average, from
    /// the reference's before it is dropped.
    pub consistency_slack: f64,
    /// Whether a position's expected support counts the filters where other items set it.
    pub background: bool,
    /// Passes: each starts again from the whole database and from the filters of every item
    /// known by then, with what the earlier ones identified (and kept) known; they stop when
    /// one adds nothing.
    pub rounds: usize,
    /// Positions a pattern is grown among, per position of the item (the best fitting ones).
    pub positions_per_k: usize,
}

impl Default for MiningParams {
    fn default() -> Self {
        MiningParams {
            tolerance: 0.3,
            min_support: 12,
            max_nodes: 4000,
            max_items: 600,
            tries: 8,
            seeds: 3,
            profile_items: 48,
            profile_slack: 0.15,
            retries: 1,
            label_margin: 0.1,
            consistency_slack: 0.1,
            background: true,
            rounds: 6,
            positions_per_k: 12,
        }
    }
}

/// What mining found: per item, its positions when identified.
pub(crate) struct Mined {
    pub positions: Vec<Option<Vec<u32>>>,
    pub nodes: usize,
}

impl Mined {
    pub fn identified(&self) -> usize {
        self.positions.iter().filter(|p| p.is_some()).count()
    }
}

struct Node {
    filters: Sparse,
    values: Vec<u32>,
    retries: u8,
}

/// The whole database's figures, the second scale every pattern is checked at.
struct Overall {
    /// Filters.
    filters: usize,
    /// Reference values.
    values: usize,
    /// How often each position is set.
    support: Vec<u32>,
    /// How many values contain each item.
    counts: Vec<u32>,
    /// [`background_rate`] over all filters.
    fill: f64,
    all: Sparse,
}

/// How often a position is set by items other than a given one, taken as the median share of
/// filters setting a position: the mean would be pulled up by the few positions of frequent
/// items (field-level filters are sparse but for those).
fn background_rate(support: &[u32], filters: usize) -> f64 {
    let mut s = support.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).map_or(0.0, |&m| m as f64 / filters.max(1) as f64)
}

fn inter_size(a: &Sparse, b: &Sparse) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += (a[i].1 & b[j].1).count_ones() as usize;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// Mines the positions of the items of `values` (item ids per reference value, sorted; item `i`
/// hashed with `item_k[i]` positions) in the filters `cols`. Deterministic.
///
/// Items contained in exactly the same reference values (a first name and its canonical form,
/// the bigrams of a name no other name shares) are one item to the attacker: they are mined as
/// one, with the sum of their k, and all get its positions.
///
/// The `first` items are looked for in the whole database before anything else, settling for
/// the best label (the attacker's strategy knowledge: with salting, the years of birth).
pub(crate) fn mine(cols: &Columns<'_>, item_k: &[u32], values: &[Vec<u32>], first: &[u32], params: &MiningParams) -> Mined {
    let n = item_k.len();
    let mut occurs: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (v, items) in values.iter().enumerate() {
        for &it in items {
            occurs[it as usize].push(v as u32);
        }
    }
    let mut group: Vec<u32> = (0..n as u32).collect();
    let mut by_values: std::collections::HashMap<&[u32], u32> = std::collections::HashMap::new();
    for it in 0..n {
        if !occurs[it].is_empty() {
            group[it] = *by_values.entry(occurs[it].as_slice()).or_insert(it as u32);
        }
    }
    let mut k = vec![0u32; n];
    for it in 0..n {
        k[group[it] as usize] = k[group[it] as usize].saturating_add(item_k[it]);
    }
    let grouped: Vec<Vec<u32>> = values
        .iter()
        .map(|items| {
            let mut g: Vec<u32> = items.iter().map(|&it| group[it as usize]).collect();
            g.sort_unstable();
            g.dedup();
            g
        })
        .collect();
    let mut seen = vec![false; n];
    let first: Vec<u32> = first.iter().map(|&it| group[it as usize]).filter(|&g| !std::mem::replace(&mut seen[g as usize], true)).collect();
    let mut mined = mine_grouped(cols, &k, &grouped, &first, params);
    for (it, &g) in group.iter().enumerate() {
        if g as usize != it {
            mined.positions[it] = mined.positions[g as usize].clone();
        }
    }
    mined
}

fn mine_grouped(cols: &Columns<'_>, item_k: &[u32], values: &[Vec<u32>], first: &[u32], params: &MiningParams) -> Mined {
    let bits = cols.bits();
    let all = cols.all();
    let mut counts = vec![0u32; item_k.len()];
    values.iter().flatten().for_each(|&it| counts[it as usize] += 1);
    let support: Vec<u32> = (0..bits).map(|j| and_size(&all, cols.col(j)) as u32).collect();
    let fill = background_rate(&support, cols.records);
    let overall = Overall { filters: cols.records, values: values.len(), support, counts, fill, all };
    let mut positions: Vec<Option<Vec<u32>>> = vec![None; item_k.len()];
    let mut nodes = 0usize;
    let mut rooted = vec![false; item_k.len()];
    if !first.is_empty() {
        let root = Node { filters: overall.all.clone(), values: (0..values.len() as u32).collect(), retries: 0 };
        let touched: Vec<u32> = (0..item_k.len() as u32).filter(|&it| overall.counts[it as usize] > 0).collect();
        for chunk in first.chunks(params.tries.max(1)) {
            let found = mine_node(cols, item_k, values, params, &overall, &root, overall.filters, &overall.counts, &touched, &positions, Some(chunk));
            for (it, p) in found {
                positions[it as usize] = Some(p);
            }
            nodes += 1;
        }
    }
    for round in 0..params.rounds {
        let before = positions.iter().filter(|p| p.is_some()).count();
        let mut roots = vec![Node { filters: overall.all.clone(), values: (0..values.len() as u32).collect(), retries: params.retries }];
        if round > 0 || !first.is_empty() {
            // Every item known by now also conditions a tree of its own: what goes with it may
            // be frequent only among its filters (with salting, a year's names among the filters
            // of that year).
            for it in 0..item_k.len() {
                let Some(p) = &positions[it] else { continue };
                let share = overall.counts[it] as f64 / overall.values as f64;
                if rooted[it] || share > 0.5 || share * (overall.filters as f64) < (4 * params.min_support) as f64 {
                    continue;
                }
                rooted[it] = true;
                let filters = holders(cols, &overall.all, p);
                let with: Vec<u32> = (0..values.len() as u32).filter(|&v| values[v as usize].binary_search(&(it as u32)).is_ok()).collect();
                roots.push(Node { filters, values: with, retries: params.retries });
            }
        }
        mine_round(cols, item_k, values, params, &overall, &mut positions, &mut nodes, roots);
        prune(cols, values, &mut positions, &overall.all, params.consistency_slack);
        if positions.iter().filter(|p| p.is_some()).count() <= before || nodes >= params.max_nodes {
            break;
        }
    }
    Mined { positions, nodes }
}

/// One pass down the trees from `roots`, with what earlier passes identified known.
#[allow(clippy::too_many_arguments)]
fn mine_round(
    cols: &Columns<'_>,
    item_k: &[u32],
    values: &[Vec<u32>],
    params: &MiningParams,
    overall: &Overall,
    positions: &mut [Option<Vec<u32>>],
    nodes: &mut usize,
    roots: Vec<Node>,
) {
    let mut identified = positions.iter().filter(|p| p.is_some()).count();
    let mut counts = vec![0u32; item_k.len()];
    let mut touched: Vec<u32> = Vec::new();
    let mut queue = VecDeque::from(roots);
    while let Some(node) = queue.pop_front() {
        if *nodes >= params.max_nodes || identified >= params.max_items {
            break;
        }
        *nodes += 1;
        let filters = size(&node.filters);
        if filters < 2 * params.min_support || node.values.len() < 2 * params.min_support {
            continue;
        }
        touched.clear();
        for &v in &node.values {
            for &it in &values[v as usize] {
                if counts[it as usize] == 0 {
                    touched.push(it);
                }
                counts[it as usize] += 1;
            }
        }
        touched.sort_unstable();
        let found = mine_node(cols, item_k, values, params, overall, &node, filters, &counts, &touched, positions, None);
        // Nothing new here: condition on the known item that splits the node most evenly, so
        // that its children are mined instead.
        let fallback = touched
            .iter()
            .filter(|&&it| positions[it as usize].is_some())
            .map(|&it| ((counts[it as usize] as f64 / node.values.len() as f64 - 0.5).abs(), it))
            .filter(|&(d, _)| d <= 0.4)
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, it)| it);
        for &it in &touched {
            counts[it as usize] = 0;
        }
        let (item, pattern) = match (found.first(), fallback) {
            (Some(f), _) => f.clone(),
            (None, Some(known)) => (known, positions[known as usize].clone().expect("known")),
            (None, None) => {
                if node.retries > 0 {
                    queue.push_back(Node { retries: node.retries - 1, ..node });
                }
                continue;
            }
        };
        for (it, p) in found {
            positions[it as usize] = Some(p);
            identified += 1;
        }
        let with = holders(cols, &node.filters, &pattern);
        let without = minus(&node.filters, &with);
        let (mut values_with, mut values_without) = (Vec::new(), Vec::new());
        for &v in &node.values {
            if values[v as usize].binary_search(&item).is_ok() {
                values_with.push(v);
            } else {
                values_without.push(v);
            }
        }
        queue.push_back(Node { filters: with, values: values_with, retries: params.retries });
        queue.push_back(Node { filters: without, values: values_without, retries: params.retries });
    }
}

/// Drops identified items whose co-occurrence with the others, over the whole database,
/// contradicts the reference: for an item g, how often the filters holding g's pattern also
/// hold h's, against how often the reference values containing g contain h, averaged over the
/// items h where either is at least 0.1. A pattern given to the wrong item goes with the wrong
/// partners. The worst item above `slack` goes first, until none is left above it (its
/// presence skews the others' averages).
fn prune(cols: &Columns<'_>, values: &[Vec<u32>], positions: &mut [Option<Vec<u32>>], all: &Sparse, slack: f64) {
    let ids: Vec<u32> = (0..positions.len() as u32).filter(|&it| positions[it as usize].is_some()).collect();
    let m = ids.len();
    if m < 3 {
        return;
    }
    let local = |it: u32| ids.binary_search(&it).ok();
    let held: Vec<Sparse> = ids.iter().map(|&it| holders(cols, all, positions[it as usize].as_ref().expect("identified"))).collect();
    let sizes: Vec<f64> = held.iter().map(|h| size(h) as f64).collect();
    let mut observed = vec![0f64; m * m];
    for a in 0..m {
        for b in 0..m {
            observed[a * m + b] = if a == b { 1.0 } else { inter_size(&held[a], &held[b]) as f64 / sizes[a].max(1.0) };
        }
    }
    let mut co = vec![0u32; m * m];
    for v in values {
        let here: Vec<usize> = v.iter().filter_map(|&it| local(it)).collect();
        for &a in &here {
            for &b in &here {
                co[a * m + b] += 1;
            }
        }
    }
    let expected: Vec<f64> = (0..m * m).map(|i| co[i] as f64 / co[(i / m) * m + i / m].max(1) as f64).collect();
    let mut alive = vec![true; m];
    loop {
        let deviation = |a: usize| {
            let (mut sum, mut n) = (0.0, 0usize);
            for b in (0..m).filter(|&b| b != a && alive[b]) {
                let (o, e) = (observed[a * m + b], expected[a * m + b]);
                if o.max(e) >= 0.1 {
                    sum += (o - e).abs();
                    n += 1;
                }
            }
            if n == 0 { 0.0 } else { sum / n as f64 }
        };
        let worst = (0..m)
            .filter(|&a| alive[a])
            .map(|a| (deviation(a), a))
            .max_by(|x, y| x.0.total_cmp(&y.0).then(y.1.cmp(&x.1)));
        match worst {
            Some((d, a)) if d > slack => alive[a] = false,
            _ => break,
        }
    }
    for (a, &it) in ids.iter().enumerate() {
        if !alive[a] {
            positions[it as usize] = None;
        }
    }
}

/// One node's identified items with their patterns; the first splits the node. Empty when none
/// was found. With `forced`, only those items are looked for (all unknown items still compete
/// for the patterns found).
#[allow(clippy::too_many_arguments)]
fn mine_node(
    cols: &Columns<'_>,
    item_k: &[u32],
    values: &[Vec<u32>],
    params: &MiningParams,
    overall: &Overall,
    node: &Node,
    filters: usize,
    counts: &[u32],
    touched: &[u32],
    positions: &[Option<Vec<u32>>],
    forced: Option<&[u32]>,
) -> Vec<(u32, Vec<u32>)> {
    let bits = cols.bits();
    let tol = params.tolerance;
    let n_values = node.values.len() as f64;
    let share = |it: u32| counts[it as usize] as f64 / n_values;
    let share_all = |it: u32| overall.counts[it as usize] as f64 / overall.values as f64;
    let enough = |it: u32| {
        share(it) * filters as f64 >= params.min_support as f64 && share_all(it) * overall.filters as f64 >= params.min_support as f64
    };
    let mut candidates: Vec<u32> = touched.iter().copied().filter(|&it| positions[it as usize].is_none() && enough(it)).collect();
    if candidates.is_empty() {
        return Vec::new();
    }
    candidates.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
    // Every unknown item a pattern could belong to, with its expected supports.
    let rivals: Vec<(u32, f64, f64)> =
        candidates.iter().map(|&it| (it, share(it) * filters as f64, share_all(it) * overall.filters as f64)).collect();
    // A pattern of `len` positions can belong to an item of k positions only if it is neither
    // longer than k nor much shorter.
    let fits_k = |len: usize, k: usize| len <= k && len >= (k / 3).max(3).min(k);
    match forced {
        Some(forced) => candidates.retain(|it| forced.contains(it)),
        None => candidates.truncate(params.tries),
    }
    let Some(&first) = candidates.first() else { return Vec::new() };
    let top = share(first);
    // Known items: as frequent as the top candidate, they would shadow it; in between 0 and 1,
    // they check patterns.
    let mut excluded = vec![false; bits];
    let mut informative: Vec<(f64, u32)> = Vec::new();
    for &it in touched {
        let Some(p) = &positions[it as usize] else { continue };
        let q = share(it);
        if q >= (1.0 - tol) * top {
            p.iter().for_each(|&j| excluded[j as usize] = true);
        }
        if (0.03..=0.97).contains(&q) {
            informative.push((q.min(1.0 - q), it));
        }
    }
    informative.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    informative.truncate(params.profile_items.min(64));
    let profile: Vec<Sparse> = informative
        .iter()
        .map(|&(_, it)| holders(cols, &node.filters, positions[it as usize].as_ref().expect("known")))
        .collect();
    let mut bit_of: Vec<(u32, u8)> = informative.iter().enumerate().map(|(b, &(_, it))| (it, b as u8)).collect();
    bit_of.sort_unstable();
    let masks: Vec<u64> = node
        .values
        .iter()
        .map(|&v| {
            values[v as usize]
                .iter()
                .filter_map(|it| bit_of.binary_search_by_key(it, |x| x.0).ok())
                .fold(0u64, |m, i| m | 1 << bit_of[i].1)
        })
        .collect();
    let support: Vec<u32> = (0..bits).map(|j| and_size(&node.filters, cols.col(j)) as u32).collect();
    let fill_node = background_rate(&support, filters);
    let bg = if params.background { 1.0 } else { 0.0 };

    // Two items that occur in (nearly) the same values here cannot be told apart here.
    let equivalent = |a: u32, b: u32| {
        let (ca, cb) = (counts[a as usize] as f64, counts[b as usize] as f64);
        if (ca - cb).abs() >= 0.05 * ca.max(cb) {
            return false;
        }
        let differ = node.values.iter().filter(|&&v| {
            let vs = &values[v as usize];
            vs.binary_search(&a).is_ok() != vs.binary_search(&b).is_ok()
        });
        (differ.count() as f64) < 0.05 * counts[a as usize].max(counts[b as usize]) as f64
    };
    // A node queued again (nothing was found the first time) settles for the best label.
    let margin = if node.retries < params.retries { 0.0 } else { params.label_margin };
    // Each candidate's pattern is grown independently: in parallel, collected in order.
    let grown: Vec<Option<(u32, Vec<u32>)>> = candidates.par_iter().map(|&g| {
        let k = item_k[g as usize] as usize;
        let expect_node = share(g) * filters as f64;
        let expect_all = share_all(g) * overall.filters as f64;
        let saturated = |expected: f64, of: usize| (expected + 0.9 * (of as f64 - expected)).floor() as u32;
        let scale = Scale {
            position_node: expect_node + (filters as f64 - expect_node) * fill_node * bg,
            position_all: expect_all + (overall.filters as f64 - expect_all) * overall.fill * bg,
            floor_node: ((1.0 - tol) * expect_node).ceil().max(1.0) as u32,
            ceiling_node: saturated(expect_node, filters),
            floor_all: ((1.0 - tol) * expect_all).ceil().max(1.0) as u32,
            ceiling_all: saturated(expect_all, overall.filters),
        };
        // The reference's co-occurrence of g with the known items, in this node.
        let mut co = vec![0u32; profile.len()];
        for (i, &v) in node.values.iter().enumerate() {
            if values[v as usize].binary_search(&g).is_ok() {
                let mut m = masks[i];
                while m != 0 {
                    co[m.trailing_zeros() as usize] += 1;
                    m &= m - 1;
                }
            }
        }
        let expected_profile: Vec<f64> = co.iter().map(|&c| c as f64 / counts[g as usize] as f64).collect();
        let accept = |pattern: &[u32]| -> bool {
            if !fits_k(pattern.len(), k) {
                return false;
            }
            let held = holders(cols, &node.filters, pattern);
            let held_n = size(&held) as f64;
            let held_all = size(&holders(cols, &overall.all, pattern)) as f64;
            let within = |got: f64, want: f64| got >= (1.0 - tol) * want && got <= want / (1.0 - tol);
            if !within(held_n, expect_node) || !within(held_all, expect_all) {
                return false;
            }
            // No other unknown item may predict these supports about as well. How far the
            // supports are from an item's expected ones: |ln(observed / expected)|, summed over
            // the node and the whole database (at the root they are one).
            let misfit = |n: f64, a: f64| {
                let here = (held_n / n).ln().abs();
                if filters == overall.filters { here } else { here + (held_all / a).ln().abs() }
            };
            let mine = misfit(expect_node, expect_all);
            if rivals.iter().any(|&(it, n, a)| {
                it != g && fits_k(pattern.len(), item_k[it as usize] as usize) && misfit(n, a) < mine + margin && !equivalent(it, g)
            }) {
                return false;
            }
            if profile.is_empty() {
                return true;
            }
            let gap: f64 = profile.iter().zip(&expected_profile).map(|(p, &e)| (inter_size(&held, p) as f64 / held_n - e).abs()).sum();
            gap / profile.len() as f64 <= params.profile_slack
        };
        grow(cols, &node.filters, &support, &overall.support, &excluded, &scale, k, params.seeds, params.positions_per_k * k, accept).map(|p| (g, p))
    }).collect();
    let found: Vec<(u32, Vec<u32>)> = grown.into_iter().flatten().collect();
    // Two items claiming much the same positions: only one can be right, and this node cannot
    // tell which — unless they occur in the same values here, when either will do.
    let clash = |a: &[u32], b: &[u32]| {
        let common = a.iter().filter(|j| b.binary_search(j).is_ok()).count();
        2 * common >= a.len().min(b.len())
    };
    // A pattern too long for the other item's k is not the other item's.
    let mut keep = vec![true; found.len()];
    for i in 0..found.len() {
        for j in i + 1..found.len() {
            if clash(&found[i].1, &found[j].1) {
                let (ki, kj) = (item_k[found[i].0 as usize] as usize, item_k[found[j].0 as usize] as usize);
                if equivalent(found[i].0, found[j].0) || found[i].1.len() > kj {
                    keep[j] = false;
                } else if found[j].1.len() > ki {
                    keep[i] = false;
                } else {
                    keep[i] = false;
                    keep[j] = false;
                }
            }
        }
    }
    found.into_iter().zip(keep).filter(|(_, k)| *k).map(|(f, _)| f).collect()
}

/// The supports an item's pattern must keep: in the node and over all filters.
struct Scale {
    /// The expected support of one of the item's positions in the node: the filters with the
    /// item, plus the others where other items happen to set it (as often as the node's bits are
    /// set on average).
    position_node: f64,
    /// The same over all filters.
    position_all: f64,
    floor_node: u32,
    /// Positions set in more than this many filters are set in nearly all filters without the
    /// item too: they tell nothing about it.
    ceiling_node: u32,
    floor_all: u32,
    ceiling_all: u32,
}

/// Grows a pattern for one item (module documentation, step 2) from each of the best `seeds`
/// start positions, and returns the first that `accept` takes, sorted.
///
/// Open positions are those not `excluded` that are set in at least `floor_node` (at most
/// `ceiling_node`) filters of the node and `floor_all` (`ceiling_all`) of all filters; seeds are taken in order of how well their supports fit
/// the item's expected ones (the most supported positions are where items collide). Each step adds the open position set in most of the node's
/// filters holding the pattern so far (near ties, within 2 %: the one whose overall support is
/// closest to the item's expected support, for the positions of items that occur in the same
/// values *here* differ over all filters), while at least `floor_node` hold it, up to `k`
/// positions; past two thirds of k it also stops when a step would lose more than a twentieth of
/// the filters (the item's own positions lose none but noise).
#[allow(clippy::too_many_arguments)]
fn grow(
    cols: &Columns<'_>,
    filters: &Sparse,
    support: &[u32],
    overall: &[u32],
    excluded: &[bool],
    scale: &Scale,
    k: usize,
    seeds: usize,
    candidate_positions: usize,
    accept: impl Fn(&[u32]) -> bool,
) -> Option<Vec<u32>> {
    // How far a position's supports are from those expected of the item's positions, at both
    // scales.
    let distances: Vec<f64> = (0..support.len())
        .map(|j| {
            if excluded[j] || support[j] < scale.floor_node || overall[j] < scale.floor_all {
                return f64::INFINITY;
            }
            (support[j] as f64 / scale.position_node).ln().abs() + (overall[j] as f64 / scale.position_all).ln().abs()
        })
        .collect();
    let distance = |j: u32| distances[j as usize];
    let order = |a: &(u32, u32), b: &(u32, u32)| {
        // (support among the holders, position): more support first; near ties by distance.
        let (hi, lo) = if a.0 >= b.0 { (a.0, b.0) } else { (b.0, a.0) };
        if lo >= hi - hi / 50 {
            distance(a.1).total_cmp(&distance(b.1)).then(a.1.cmp(&b.1))
        } else {
            b.0.cmp(&a.0)
        }
    };
    // Start from the positions whose supports fit the item best: the most supported ones are
    // where several items collide.
    let mut open: Vec<(u32, u32)> = (0..support.len() as u32)
        .filter(|&j| {
            let (s, o) = (support[j as usize], overall[j as usize]);
            !excluded[j as usize] && s >= scale.floor_node && s <= scale.ceiling_node && o >= scale.floor_all && o <= scale.ceiling_all
        })
        .map(|j| (support[j as usize], j))
        .collect();
    open.sort_by(|a, b| distance(a.1).total_cmp(&distance(b.1)).then(a.1.cmp(&b.1)));
    // The item's own positions fit about as well as the best: growing among the few best
    // fitting ones bounds the work.
    open.truncate(candidate_positions.max(k));
    let mut tried = 0;
    let mut used = vec![false; support.len()];
    for &(_, start) in &open {
        if tried == seeds {
            break;
        }
        if used[start as usize] {
            continue;
        }
        tried += 1;
        let mut pattern = vec![start];
        let mut held = and(filters, cols.col(start as usize));
        let mut held_n = size(&held) as u32;
        let mut rest: Vec<u32> = open.iter().map(|o| o.1).filter(|&j| j != start).collect();
        while pattern.len() < k {
            let scored: Vec<(u32, u32)> = rest
                .iter()
                .map(|&j| (and_size(&held, cols.col(j as usize)) as u32, j))
                .filter(|(s, _)| *s >= scale.floor_node)
                .collect();
            let Some(top) = scored.iter().map(|x| x.0).max() else { break };
            let &(s, best) = scored
                .iter()
                .filter(|x| x.0 >= top - top / 50)
                .min_by(|a, b| order(a, b))
                .expect("the top is there");
            if pattern.len() >= (2 * k / 3).max(3) && (s as f64) < 0.95 * held_n as f64 {
                break;
            }
            rest = scored.into_iter().map(|x| x.1).filter(|&j| j != best).collect();
            pattern.push(best);
            held = and(&held, cols.col(best as usize));
            held_n = s;
        }
        pattern.iter().for_each(|&j| used[j as usize] = true);
        pattern.sort_unstable();
        if accept(&pattern) {
            return Some(pattern);
        }
    }
    None
}

/// Per record, the best candidate value by the Dice coefficient of item sets, when it is at
/// least `threshold` (above 0, at most 1) and no candidate of another value fits as well.
///
/// A record's observed set is the items of `field_items` with identified positions that its
/// filter holds; a candidate's set is its items restricted to those identified (the attacker can
/// observe nothing else). Records observing no item get `None`.
pub(crate) fn reidentify(
    cols: &Columns<'_>,
    mined: &Mined,
    field_items: &[u32],
    candidates: &[(u32, Vec<u32>)],
    threshold: f64,
) -> Vec<Option<u32>> {
    let known: Vec<u32> = field_items.iter().copied().filter(|&it| mined.positions[it as usize].is_some()).collect();
    let n = cols.records;
    if known.is_empty() || candidates.is_empty() {
        return vec![None; n];
    }
    let local = |it: u32| known.binary_search(&it).ok();
    let width = known.len().div_ceil(64);
    let mut observed = vec![0u64; n * width];
    let all = cols.all();
    for (l, &it) in known.iter().enumerate() {
        let pattern = mined.positions[it as usize].as_ref().expect("known");
        for (i, w) in holders(cols, &all, pattern) {
            let mut x = w;
            while x != 0 {
                let r = i as usize * 64 + x.trailing_zeros() as usize;
                observed[r * width + l / 64] |= 1 << (l % 64);
                x &= x - 1;
            }
        }
    }
    let sets: Vec<(u32, Vec<u64>, u32)> = candidates
        .iter()
        .map(|(value, items)| {
            let mut set = vec![0u64; width];
            for &it in items {
                if let Some(l) = local(it) {
                    set[l / 64] |= 1 << (l % 64);
                }
            }
            let weight = set.iter().map(|w| w.count_ones()).sum();
            (*value, set, weight)
        })
        .collect();
    // Which candidates contain each observed item.
    let mut postings: Vec<Vec<u32>> = vec![Vec::new(); known.len()];
    for (c, (_, set, _)) in sets.iter().enumerate() {
        for (w, &word) in set.iter().enumerate() {
            let mut x = word;
            while x != 0 {
                postings[w * 64 + x.trailing_zeros() as usize].push(c as u32);
                x &= x - 1;
            }
        }
    }
    // Records with the same observed set get the same answer: decide each set once.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| observed[a * width..(a + 1) * width].cmp(&observed[b * width..(b + 1) * width]).then(a.cmp(&b)));
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (pos, &r) in order.iter().enumerate() {
        match groups.last_mut() {
            Some((first, end)) if observed[order[*first] * width..(order[*first] + 1) * width] == observed[r * width..(r + 1) * width] => *end = pos + 1,
            _ => groups.push((pos, pos + 1)),
        }
    }
    let answers: Vec<Option<u32>> = groups
        .par_iter()
        .map(|&(first, _)| {
            let r = order[first];
            let a = &observed[r * width..(r + 1) * width];
            let wa: u32 = a.iter().map(|w| w.count_ones()).sum();
            if wa == 0 {
                return None;
            }
            // Only candidates sharing at least `need` of the wa observed items can reach the
            // threshold (Dice ≥ θ needs wb ≥ θ·wa/(2 − θ), hence that many in common), and any
            // such candidate contains one of the wa − need + 1 rarest of them: look no further.
            let need = ((threshold * wa as f64) / (2.0 - threshold) - 1e-9).ceil().max(1.0) as usize;
            let mut mine: Vec<usize> = (0..known.len()).filter(|&l| a[l / 64] >> (l % 64) & 1 == 1).collect();
            mine.sort_by_key(|&l| (postings[l].len(), l));
            let prefix = (wa as usize + 1).saturating_sub(need).clamp(1, wa as usize);
            let mut near: Vec<u32> = mine[..prefix].iter().flat_map(|&l| postings[l].iter().copied()).collect();
            near.sort_unstable();
            near.dedup();
            // The best candidate, and the best of any *other* value (one value may have several
            // candidates: a salted name has one per year of birth).
            let (mut best, mut second, mut best_value) = (-1.0f64, -1.0f64, None);
            for &c in &near {
                let (value, set, wb) = &sets[c as usize];
                let common: u32 = a.iter().zip(set).map(|(x, y)| (x & y).count_ones()).sum();
                let d = 2.0 * common as f64 / (wa + wb) as f64;
                if d > best {
                    if best_value != Some(*value) {
                        second = best;
                    }
                    best = d;
                    best_value = Some(*value);
                } else if best_value != Some(*value) && d > second {
                    second = d;
                }
            }
            (best >= threshold && best > second + 1e-12).then_some(best_value).flatten()
        })
        .collect();
    let mut out = vec![None; n];
    for (&(first, end), answer) in groups.iter().zip(answers) {
        for &r in &order[first..end] {
            out[r] = answer;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Records with planted items: each item has k random positions; each record holds a
    /// Zipf-like random subset of items. Returns (columns, values per record, planted positions).
    fn planted(records: usize, items: usize, bits: usize, k: usize, seed: u64) -> (Vec<u64>, Vec<Vec<u32>>, Vec<Vec<u32>>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let planted: Vec<Vec<u32>> = (0..items)
            .map(|_| {
                let mut p: Vec<u32> = (0..k).map(|_| rng.random_range(0..bits as u32)).collect();
                p.sort_unstable();
                p.dedup();
                p
            })
            .collect();
        let stride = records.div_ceil(64);
        let mut words = vec![0u64; bits * stride];
        let mut values = Vec::new();
        for r in 0..records {
            let mut mine: Vec<u32> = (0..items as u32).filter(|&i| rng.random::<f64>() < 0.6 / (1.0 + i as f64 * 0.15)).collect();
            mine.sort_unstable();
            for &i in &mine {
                for &j in &planted[i as usize] {
                    words[j as usize * stride + r / 64] |= 1 << (r % 64);
                }
            }
            values.push(mine);
        }
        (words, values, planted)
    }

    #[test]
    fn mining_recovers_planted_positions_and_reidentifies() {
        let (records, bits, k) = (3000, 512, 10);
        let (words, values, planted) = planted(records, 24, bits, k, 7);
        let cols = Columns { records, stride: records.div_ceil(64), words: &words };
        let item_k = vec![k as u32; planted.len()];
        // The attacker's reference: the same kind of values, drawn again.
        let mined = mine(&cols, &item_k, &values, &[], &MiningParams::default());
        let mut right = 0;
        for (i, p) in mined.positions.iter().enumerate() {
            if let Some(p) = p {
                // Only positions of the item itself (collisions aside) may be claimed.
                let wrong = p.iter().filter(|j| !planted[i].contains(j)).count();
                assert!(wrong <= 1, "item {i}: {p:?} vs planted {:?}", planted[i]);
                right += 1;
            }
        }
        assert!(right >= 12, "only {right} of 24 items identified");
        // Candidates: a few distinct item sets; the records holding exactly one of them are found.
        let candidates: Vec<(u32, Vec<u32>)> = vec![(0, vec![0, 1]), (1, vec![0, 2, 3]), (2, vec![1, 2])];
        let all: Vec<u32> = (0..24).collect();
        let got = reidentify(&cols, &mined, &all, &candidates, 0.99);
        for (r, v) in values.iter().enumerate() {
            if let Some(c) = got[r] {
                let seen: Vec<u32> = v.iter().copied().filter(|&i| mined.positions[i as usize].is_some()).collect();
                assert_eq!(candidates[c as usize].1, seen, "record {r}");
            }
        }
        assert!(got.iter().any(Option::is_some));
    }

    #[test]
    fn noise_yields_no_patterns() {
        // Independent random bits: no item's prediction can be met by a consistent pattern.
        let (records, bits) = (2000usize, 256usize);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let stride = records.div_ceil(64);
        let words: Vec<u64> = (0..bits * stride).map(|_| rng.random::<u64>()).collect();
        let cols = Columns { records, stride, words: &words };
        let values: Vec<Vec<u32>> = (0..records).map(|r| if r % 3 == 0 { vec![0, 1] } else { vec![1] }).collect();
        let mined = mine(&cols, &[10, 10], &values, &[], &MiningParams::default());
        assert_eq!(mined.identified(), 0, "{:?}", mined.positions);
    }

    #[test]
    fn sparse_set_operations() {
        let a: Sparse = vec![(0, 0b1011), (2, 0b1)];
        let b: Sparse = vec![(0, 0b0010), (1, 0b1), (2, 0b1)];
        assert_eq!(minus(&a, &b), vec![(0, 0b1001)]);
        assert_eq!(size(&a), 4);
        let col = vec![0b11u64, 0, 0];
        assert_eq!(and(&a, &col), vec![(0, 0b11)]);
        assert_eq!(and_size(&a, &col), 2);
    }
}
