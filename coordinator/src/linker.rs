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

use crate::model::{ItemKey, StoredItem, Token};

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
    epoch: u32,
    words: Vec<u64>,
    tokens: Vec<Token>,
}

/// The in-memory index and link graph. Rebuilt from storage at start.
#[derive(Default)]
pub struct Linker {
    items: HashMap<ItemId, Indexed>,
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

    /// Adds an item to the index without linking it (used when restoring from storage).
    pub fn restore(&mut self, id: ItemId, item: &StoredItem) {
        let indexed = Indexed { epoch: item.epoch, words: to_words(&item.clk), tokens: item.tokens.clone() };
        for t in &indexed.tokens {
            self.by_token.entry((item.epoch, t.clone())).or_default().push(id);
        }
        self.items.insert(id, indexed);
        self.keys.insert(item.key.clone(), id);
        self.key_of.insert(id, item.key.clone());
    }

    /// Restores a stored link.
    pub fn restore_link(&mut self, a: ItemId, b: ItemId, band: Band) {
        if self.items.contains_key(&a) && self.items.contains_key(&b) && a != b {
            self.adjacency.entry(a).or_default().insert(b, band);
            self.adjacency.entry(b).or_default().insert(a, band);
        }
    }

    /// The links `item` would have with the current index (same epoch only). Pure: changes nothing.
    pub fn candidate_links(&self, id: ItemId, item: &StoredItem) -> Vec<(ItemId, Band)> {
        let words = to_words(&item.clk);
        let my_cf = cf_of(&item.tokens);
        let mut agreeing: std::collections::HashSet<ItemId> = std::collections::HashSet::new();
        for t in &item.tokens {
            if let Some(ids) = self.by_token.get(&(item.epoch, t.clone())) {
                agreeing.extend(ids.iter().copied());
            }
        }
        let mut out = Vec::new();
        for (&other, idx) in &self.items {
            if other == id || idx.epoch != item.epoch {
                continue;
            }
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

    /// Indexes an item and links it; returns its links. Re-inserting a key replaces the old
    /// item (its links are re-evaluated).
    pub fn insert(&mut self, id: ItemId, item: &StoredItem) -> Vec<(ItemId, Band)> {
        self.remove(id);
        let links = self.candidate_links(id, item);
        self.restore(id, item);
        for &(other, band) in &links {
            self.restore_link(id, other, band);
        }
        links
    }

    /// Removes an item and all its links; returns the ids it was linked to.
    pub fn remove(&mut self, id: ItemId) -> Vec<ItemId> {
        let Some(indexed) = self.items.remove(&id) else { return Vec::new() };
        for t in indexed.tokens {
            let k = (indexed.epoch, t);
            if let Some(v) = self.by_token.get_mut(&k) {
                v.retain(|x| *x != id);
                if v.is_empty() {
                    self.by_token.remove(&k);
                }
            }
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
    use crate::model::RelationshipMeta;

    fn item(node: &str, r: &str, bits: &[usize], cf: Option<u8>) -> StoredItem {
        let mut clk = vec![0u8; 128];
        for &b in bits {
            ponte_proto::bits::set_bit(&mut clk, b);
        }
        StoredItem {
            key: ItemKey { node: node.into(), reference: r.into() },
            epoch: 1,
            clk,
            tokens: cf.map(|c| vec![Token { kind: TokenKind::CodiceFiscale as i32, value: [c; 32] }]).unwrap_or_default(),
            quality_flags: 0,
            relationship: RelationshipMeta {
                entity_type: 1,
                unit: "u".into(),
                category: 1,
                tier: 1,
                status: 3,
                since_month: 202401,
                case_manager: false,
                plan: 1,
                contact: 2,
            },
            entity_name: node.into(),
        }
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
        // a and c share nothing strong directly; b bridges them.
        let a = item("n1", "a", &base[..90], None);
        let b = item("n2", "b", &base[5..95], None);
        let c = item("n3", "c", &base[15..105], None);
        l.insert(1, &a);
        l.insert(2, &b);
        l.insert(3, &c);
        let related: Vec<ItemId> = l.related(1).into_iter().map(|x| x.0).collect();
        assert_eq!(related, vec![2, 3]);
        l.remove(2);
        let related: Vec<(ItemId, Band)> = l.related(1);
        assert!(related.iter().all(|(id, band)| *id != 3 || *band == Band::Possible), "{related:?}");
        assert!(!related.iter().any(|(id, _)| *id == 2));
    }

    #[test]
    fn token_agreement_links_and_reinsert_replaces() {
        let mut l = Linker::new();
        l.insert(1, &item("n1", "a", &[1, 2, 3, 4], Some(7)));
        let links = l.insert(2, &item("n2", "b", &[1, 2, 3, 5], Some(7)));
        assert_eq!(links, vec![(1, Band::Certain)]);
        // re-publish b with a different CF and unrelated bits: the link goes away
        let links = l.insert(2, &item("n2", "b", &[50, 60], Some(9)));
        assert!(links.is_empty());
        assert!(l.related(1).is_empty());
        assert_eq!(l.cluster_count(), 2);
    }
}
