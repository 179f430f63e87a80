//! Linking: scores each arriving item against the index, keeps the link graph, and answers
//! "which items belong to the same person as this one, and how sure are we?".
//!
//! This is the *correct-first* matcher: every new item is compared with every indexed item of
//! the same key epoch (plus an exact-token index). The decision rule is deliberately simple and
//! stated in [`score`]; calibrated Fellegi–Sunter scoring and LSH blocking replace it later
//! behind the same interface.
//!
//! Clusters are the connected components of *strong* links (certain or probable). A "possible"
//! link never merges clusters: it is reported next to the cluster, flagged to be verified.
//! Removing an item removes its links, so a cluster that was held together only by it splits.

use std::collections::{BTreeMap, HashMap, VecDeque};

use ponte_proto::bits::{dice_words, to_words};
use ponte_proto::v1::TokenKind;
use serde::{Deserialize, Serialize};

use crate::model::{EpochEncoding, ItemKey, StoredItem, Token};

/// How sure a link is. Ordered from strongest to weakest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Band {
    Certain = 1,
    Probable = 2,
    Possible = 3,
}

/// Dice at or above which two CLKs with no comparable identifier are a probable match.
pub const PROBABLE_DICE: f64 = 0.88;
/// Dice at or above which two CLKs with no comparable identifier are a possible match.
pub const POSSIBLE_DICE: f64 = 0.80;
/// With an agreeing codice fiscale token, Dice at or above this makes the match certain.
pub const CERTAIN_WITH_TOKEN_DICE: f64 = 0.60;
/// With disagreeing codici fiscali (a typo — or omocodes, who are different people), Dice at or
/// above this is only a possible match, to be verified.
pub const POSSIBLE_DESPITE_TOKEN_DICE: f64 = 0.93;

/// Evidence about one pair, as seen by [`score`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairEvidence {
    pub dice: f64,
    /// Some exact token agrees (same kind, same keyed value).
    pub token_agrees: bool,
    /// Both have a codice fiscale token and they differ.
    pub cf_disagrees: bool,
}

/// The decision rule.
pub fn score(e: PairEvidence) -> Option<Band> {
    if e.token_agrees {
        return Some(if e.dice >= CERTAIN_WITH_TOKEN_DICE { Band::Certain } else { Band::Possible });
    }
    if e.cf_disagrees {
        return (e.dice >= POSSIBLE_DESPITE_TOKEN_DICE).then_some(Band::Possible);
    }
    if e.dice >= PROBABLE_DICE {
        Some(Band::Probable)
    } else if e.dice >= POSSIBLE_DICE {
        Some(Band::Possible)
    } else {
        None
    }
}

/// Internal item number (stable for the life of an item; never leaves the coordinator).
pub type ItemId = u64;

struct Indexed {
    words: Vec<u64>,
    tokens: Vec<Token>,
}

struct ItemState {
    revision: u64,
    encodings: BTreeMap<u32, Indexed>,
}

/// What publishing one encoding changed in the link graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    /// A new item or a new identity revision: its old links are gone, these are its links now.
    Relinked { removed: Vec<ItemId>, links: Vec<(ItemId, Band)> },
    /// The same identity revision under another (or the same) key epoch: indexed for future
    /// comparisons, links unchanged. This is what keeps answers identical through a key rotation.
    Unchanged,
}

/// The in-memory index and link graph. Rebuilt from storage at start.
///
/// Links are between items (references), not between encodings: comparisons happen within one
/// key epoch, and a link found under one epoch stands while both identities keep their revision,
/// whatever epochs are later added or dropped.
#[derive(Default)]
pub struct Linker {
    items: HashMap<ItemId, ItemState>,
    keys: HashMap<ItemKey, ItemId>,
    key_of: HashMap<ItemId, ItemKey>,
    by_token: HashMap<(u32, Token), Vec<ItemId>>,
    adjacency: HashMap<ItemId, BTreeMap<ItemId, Band>>,
}

fn cf_of(tokens: &[Token]) -> Option<&Token> {
    tokens.iter().find(|t| t.kind == TokenKind::CodiceFiscale as i32)
}

impl Linker {
    pub fn new() -> Linker {
        Linker::default()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn id_of(&self, key: &ItemKey) -> Option<ItemId> {
        self.keys.get(key).copied()
    }

    pub fn key_of(&self, id: ItemId) -> Option<&ItemKey> {
        self.key_of.get(&id)
    }

    fn index_encoding(&mut self, id: ItemId, enc: &EpochEncoding) {
        self.unindex_encoding(id, enc.epoch);
        for t in &enc.tokens {
            self.by_token.entry((enc.epoch, t.clone())).or_default().push(id);
        }
        if let Some(state) = self.items.get_mut(&id) {
            state.encodings.insert(enc.epoch, Indexed { words: to_words(&enc.clk), tokens: enc.tokens.clone() });
        }
    }

    fn unindex_encoding(&mut self, id: ItemId, epoch: u32) {
        let Some(old) = self.items.get_mut(&id).and_then(|s| s.encodings.remove(&epoch)) else { return };
        for t in old.tokens {
            let k = (epoch, t);
            if let Some(v) = self.by_token.get_mut(&k) {
                v.retain(|x| *x != id);
                if v.is_empty() {
                    self.by_token.remove(&k);
                }
            }
        }
    }

    /// Adds a stored item to the index without linking it (used when restoring from storage).
    pub fn restore(&mut self, id: ItemId, item: &StoredItem) {
        self.items.insert(id, ItemState { revision: item.revision, encodings: BTreeMap::new() });
        self.keys.insert(item.key.clone(), id);
        self.key_of.insert(id, item.key.clone());
        for enc in &item.encodings {
            self.index_encoding(id, enc);
        }
    }

    /// Restores a stored link.
    pub fn restore_link(&mut self, a: ItemId, b: ItemId, band: Band) {
        if self.items.contains_key(&a) && self.items.contains_key(&b) && a != b {
            self.adjacency.entry(a).or_default().insert(b, band);
            self.adjacency.entry(b).or_default().insert(a, band);
        }
    }

    /// The links an encoding would have with the items indexed under the same epoch. Pure.
    pub fn candidate_links(&self, id: ItemId, enc: &EpochEncoding) -> Vec<(ItemId, Band)> {
        let words = to_words(&enc.clk);
        let my_cf = cf_of(&enc.tokens);
        let mut agreeing: std::collections::HashSet<ItemId> = std::collections::HashSet::new();
        for t in &enc.tokens {
            if let Some(ids) = self.by_token.get(&(enc.epoch, t.clone())) {
                agreeing.extend(ids.iter().copied());
            }
        }
        let mut out = Vec::new();
        for (&other, state) in &self.items {
            if other == id {
                continue;
            }
            let Some(idx) = state.encodings.get(&enc.epoch) else { continue };
            let cf_disagrees = match (my_cf, cf_of(&idx.tokens)) {
                (Some(a), Some(b)) => a != b,
                _ => false,
            };
            let evidence = PairEvidence {
                dice: dice_words(&words, &idx.words),
                token_agrees: agreeing.contains(&other),
                cf_disagrees,
            };
            if let Some(band) = score(evidence) {
                out.push((other, band));
            }
        }
        out.sort();
        out
    }

    /// Indexes one publication of item `id` (`key`) at identity `revision` under `enc.epoch`.
    /// A new item or a new revision is (re)linked against the items of that epoch, and the
    /// encodings of its older revision are dropped; the same revision is only indexed.
    pub fn publish(&mut self, id: ItemId, key: &ItemKey, revision: u64, enc: &EpochEncoding) -> LinkChange {
        if let Some(state) = self.items.get(&id)
            && state.revision == revision {
                self.index_encoding(id, enc);
                return LinkChange::Unchanged;
            }
        let removed = self.remove(id);
        let links = self.candidate_links(id, enc);
        self.items.insert(id, ItemState { revision, encodings: BTreeMap::new() });
        self.keys.insert(key.clone(), id);
        self.key_of.insert(id, key.clone());
        self.index_encoding(id, enc);
        for &(other, band) in &links {
            self.restore_link(id, other, band);
        }
        LinkChange::Relinked { removed, links }
    }

    /// Forgets every encoding of a key epoch (after a rotation). Links stay.
    pub fn drop_epoch(&mut self, epoch: u32) {
        let ids: Vec<ItemId> = self.items.keys().copied().collect();
        for id in ids {
            self.unindex_encoding(id, epoch);
        }
    }

    /// Removes an item and all its links; returns the ids it was linked to.
    pub fn remove(&mut self, id: ItemId) -> Vec<ItemId> {
        let epochs: Vec<u32> = self.items.get(&id).map(|s| s.encodings.keys().copied().collect()).unwrap_or_default();
        for e in epochs {
            self.unindex_encoding(id, e);
        }
        if self.items.remove(&id).is_none() {
            return Vec::new();
        }
        if let Some(key) = self.key_of.remove(&id) {
            self.keys.remove(&key);
        }
        let neighbours: Vec<ItemId> = self.adjacency.remove(&id).map(|m| m.into_keys().collect()).unwrap_or_default();
        for n in &neighbours {
            if let Some(m) = self.adjacency.get_mut(n) {
                m.remove(&id);
            }
        }
        neighbours
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
                for (&n, &band) in adj {
                    if band == Band::Possible {
                        best.entry(n).or_insert(Band::Possible);
                    }
                }
            }
        }
        best.remove(&anchor);
        best.into_iter().collect()
    }

    /// Items reachable from `start` over links at least as strong as `level`.
    fn component(&self, start: ItemId, level: Band) -> Vec<ItemId> {
        let mut seen = std::collections::HashSet::from([start]);
        let mut queue = VecDeque::from([start]);
        let mut out = Vec::new();
        while let Some(x) = queue.pop_front() {
            if let Some(adj) = self.adjacency.get(&x) {
                for (&n, &band) in adj {
                    if band <= level && seen.insert(n) {
                        out.push(n);
                        queue.push_back(n);
                    }
                }
            }
        }
        out
    }

    /// Number of distinct persons (strong-link components) in the index.
    pub fn cluster_count(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        let mut count = 0;
        for &id in self.items.keys() {
            if seen.insert(id) {
                count += 1;
                for m in self.component(id, Band::Probable) {
                    seen.insert(m);
                }
            }
        }
        count
    }

    /// All links, each once (a < b).
    pub fn links(&self) -> Vec<(ItemId, ItemId, Band)> {
        let mut out = Vec::new();
        for (&a, adj) in &self.adjacency {
            for (&b, &band) in adj {
                if a < b {
                    out.push((a, b, band));
                }
            }
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(epoch: u32, bits: &[usize], cf: Option<u8>) -> EpochEncoding {
        let mut clk = vec![0u8; 128];
        for &b in bits {
            ponte_proto::bits::set_bit(&mut clk, b);
        }
        EpochEncoding {
            epoch,
            clk,
            tokens: cf.map(|c| vec![Token { kind: TokenKind::CodiceFiscale as i32, value: [c; 32] }]).unwrap_or_default(),
        }
    }

    fn key(r: &str) -> ItemKey {
        ItemKey { node: "n".into(), reference: r.into() }
    }

    #[test]
    fn rule_bands() {
        let e = |dice, token_agrees, cf_disagrees| PairEvidence { dice, token_agrees, cf_disagrees };
        assert_eq!(score(e(0.7, true, false)), Some(Band::Certain));
        assert_eq!(score(e(0.3, true, false)), Some(Band::Possible));
        assert_eq!(score(e(0.99, false, true)), Some(Band::Possible));
        assert_eq!(score(e(0.90, false, true)), None);
        assert_eq!(score(e(0.95, false, false)), Some(Band::Probable));
        assert_eq!(score(e(0.82, false, false)), Some(Band::Possible));
        assert_eq!(score(e(0.5, false, false)), None);
    }

    #[test]
    fn transitive_clusters_split_when_the_bridge_is_withdrawn() {
        let base: Vec<usize> = (0..110).collect();
        let mut l = Linker::new();
        // a and c are only possibly alike; b bridges them with probable links.
        l.publish(1, &key("a"), 1, &enc(1, &base[..90], None));
        l.publish(2, &key("b"), 1, &enc(1, &base[5..95], None));
        l.publish(3, &key("c"), 1, &enc(1, &base[15..105], None));
        let related: Vec<ItemId> = l.related(1).into_iter().map(|x| x.0).collect();
        assert_eq!(related, vec![2, 3]);
        assert_eq!(l.cluster_count(), 1);
        l.remove(2);
        let related = l.related(1);
        assert_eq!(related, vec![(3, Band::Possible)]);
        assert_eq!(l.cluster_count(), 2);
    }

    #[test]
    fn a_new_revision_relinks_and_the_same_revision_does_not() {
        let mut l = Linker::new();
        l.publish(1, &key("a"), 1, &enc(1, &[1, 2, 3, 4], Some(7)));
        let ch = l.publish(2, &key("b"), 1, &enc(1, &[1, 2, 3, 5], Some(7)));
        assert_eq!(ch, LinkChange::Relinked { removed: vec![], links: vec![(1, Band::Certain)] });
        // Same revision again (a retry): nothing changes.
        assert_eq!(l.publish(2, &key("b"), 1, &enc(1, &[1, 2, 3, 5], Some(7))), LinkChange::Unchanged);
        // A new revision with another identity: the link goes.
        let ch = l.publish(2, &key("b"), 2, &enc(1, &[50, 60], Some(9)));
        assert_eq!(ch, LinkChange::Relinked { removed: vec![1], links: vec![] });
        assert!(l.related(1).is_empty());
    }

    #[test]
    fn links_survive_a_key_rotation() {
        let mut l = Linker::new();
        l.publish(1, &key("a"), 1, &enc(1, &[1, 2, 3, 4], Some(7)));
        l.publish(2, &key("b"), 1, &enc(1, &[1, 2, 3, 5], Some(7)));
        // Epoch 2: completely different bits, same revisions → links kept, no relinking.
        assert_eq!(l.publish(1, &key("a"), 1, &enc(2, &[90, 91], Some(8))), LinkChange::Unchanged);
        assert_eq!(l.publish(2, &key("b"), 1, &enc(2, &[92, 93], Some(8))), LinkChange::Unchanged);
        l.drop_epoch(1);
        assert_eq!(l.related(1), vec![(2, Band::Certain)]);
        // A newcomer under epoch 2 is compared with epoch-2 encodings only.
        let ch = l.publish(3, &key("c"), 1, &enc(2, &[90, 91], Some(8)));
        assert_eq!(ch, LinkChange::Relinked { removed: vec![], links: vec![(1, Band::Certain), (2, Band::Possible)] });
    }
}
