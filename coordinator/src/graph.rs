//! The link graph and its person clusters: which items are linked, how surely, and which person
//! each item belongs to. Pure and in memory; rebuilt from storage at start.
//!
//! # Clusters and their ids
//!
//! A cluster is a connected component of strong (certain, probable) links; possible links are
//! kept beside the clusters, never merged. Its id is stable:
//! - a new item alone gets a fresh id; an item joining a cluster takes its id;
//! - when clusters merge, the oldest (smallest) id stays;
//! - when a withdrawal or a new identity revision removes the evidence that held a cluster
//!   together, it splits: the part keeping most of the old members keeps the id (ties: the part
//!   with the oldest item), the other parts get fresh ids.
//!
//! # Plan, then apply
//!
//! A change is first *planned* against the graph as it is ([`LinkGraph::plan`], read-only: it
//! works on a copy-on-write overlay of the items it touches), then *applied*
//! ([`LinkGraph::apply`], a replacement of those items' entries that cannot fail). The plan
//! carries everything storage needs (each item's links, the removed ones, the cluster id
//! changes), so the coordinator writes it to disk before anything in memory changes, and
//! readers (questions) only wait for the short apply.
//!
//! # Bounds
//!
//! One node's items cannot make a person arbitrarily large: a cluster holds at most
//! [`GraphBounds::max_items_per_node`] items of any one node. A change that would exceed it
//! quarantines the newest items of the change that cause it: they stay indexed and answerable
//! but without links, and the plan names them for a data steward
//! ([`Plan::quarantined`]). Every breadth-first walk is therefore bounded by the number of
//! nodes times that bound, and so is the work of a question.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::model::{Band, ClusterId, ItemId};

/// The publishing node of an item, as a small number the caller assigns (one per node id).
pub type NodeIx = u16;

/// What one node's items may do to a person cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphBounds {
    /// Most items of one node in one person cluster. An entity publishes one item per care
    /// relationship, so this is the most relationships one entity may hold for one person;
    /// beyond it the items are evidence of a shared placeholder identity, not of one person.
    pub max_items_per_node: usize,
}

/// The default of [`GraphBounds::max_items_per_node`].
pub const DEFAULT_MAX_ITEMS_PER_NODE: usize = 64;

impl Default for GraphBounds {
    fn default() -> Self {
        GraphBounds { max_items_per_node: DEFAULT_MAX_ITEMS_PER_NODE }
    }
}

/// What publishing, withdrawing or relinking one item changed in the link graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    /// A new item or a new identity revision: its old links are gone, these are its links now.
    Relinked { removed: Vec<ItemId>, links: Vec<(ItemId, Band)> },
    /// The same identity revision under another (or the same) key epoch: indexed for future
    /// comparisons, links unchanged. This is what keeps answers identical through a key rotation.
    Unchanged,
}

/// An item of a change: relinked with these links (found against the index), or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphEdit {
    /// The item (new, or a new revision, or relinked because evidence changed) and every link
    /// the linker found for it now. Links to items the graph does not hold are ignored.
    Relink { id: ItemId, node: NodeIx, links: Vec<(ItemId, Band)> },
    /// The item is gone (withdrawn, expired).
    Remove { id: ItemId },
}

/// An item held without links because keeping its links would exceed a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quarantined {
    pub id: ItemId,
    /// Items of the item's node the person cluster would have held.
    pub items_of_node: usize,
}

/// What [`LinkGraph::change`] did: per relinked item its change, the cluster id changes, the
/// items held.
pub type Applied = (Vec<(ItemId, LinkChange)>, Vec<(ItemId, ClusterId)>, Vec<Quarantined>);

/// A planned change: what to store, and what [`LinkGraph::apply`] will do.
#[derive(Debug, Default)]
pub struct Plan {
    /// Per relinked item (in the order of the edits): its removed neighbours and its links now.
    pub changes: Vec<(ItemId, LinkChange)>,
    /// Cluster id changes, in order (`0`: the item is gone).
    pub clusters: Vec<(ItemId, ClusterId)>,
    /// Items of the change held without links (see the module documentation).
    pub quarantined: Vec<Quarantined>,
    adjacency: HashMap<ItemId, Vec<(ItemId, Band)>>,
    present: HashMap<ItemId, Option<NodeIx>>,
    cluster: HashMap<ItemId, ClusterId>,
    /// Items no longer held (relinked or removed).
    released: Vec<ItemId>,
    next_cluster: ClusterId,
    link_delta: isize,
}

impl Plan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.adjacency.is_empty() && self.present.is_empty() && self.cluster.is_empty()
    }
}

/// The link graph and the clusters.
#[derive(Debug)]
pub struct LinkGraph {
    bounds: GraphBounds,
    adjacency: HashMap<ItemId, Vec<(ItemId, Band)>>,
    /// Per item: its node, if the graph holds it.
    node: Vec<Option<NodeIx>>,
    cluster: Vec<ClusterId>,
    sizes: HashMap<ClusterId, u32>,
    /// Items held without links (quarantined): no link to them is made until they are relinked.
    held: HashSet<ItemId>,
    next_cluster: ClusterId,
    links: usize,
    items: usize,
}

/// Read access shared by the graph and a plan's overlay.
trait View {
    fn neighbours(&self, id: ItemId) -> &[(ItemId, Band)];
    fn node_of(&self, id: ItemId) -> Option<NodeIx>;
    fn cluster_of_raw(&self, id: ItemId) -> ClusterId;

    fn present(&self, id: ItemId) -> bool {
        self.node_of(id).is_some()
    }

    /// Items reachable from `start` over links at least as strong as `level` through items
    /// that `through` accepts (without `start`, which is always walked from).
    fn component_where(&self, start: ItemId, level: Band, through: &dyn Fn(ItemId) -> bool) -> Vec<ItemId> {
        let mut seen = HashSet::from([start]);
        let mut queue = VecDeque::from([start]);
        let mut out = Vec::new();
        while let Some(x) = queue.pop_front() {
            for &(n, band) in self.neighbours(x) {
                if band <= level && through(n) && seen.insert(n) {
                    out.push(n);
                    queue.push_back(n);
                }
            }
        }
        out
    }

    fn component(&self, start: ItemId, level: Band) -> Vec<ItemId> {
        self.component_where(start, level, &|_| true)
    }

    /// The strong components holding the `touched` items that are present, each sorted, in the
    /// order of their smallest touched item.
    fn touched_components(&self, touched: &[ItemId]) -> Vec<Vec<ItemId>> {
        let mut seen: HashSet<ItemId> = HashSet::new();
        let mut components: Vec<Vec<ItemId>> = Vec::new();
        let mut sorted: Vec<ItemId> = touched.iter().copied().filter(|&t| self.present(t)).collect();
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
        components
    }
}

impl View for LinkGraph {
    fn neighbours(&self, id: ItemId) -> &[(ItemId, Band)] {
        self.adjacency.get(&id).map(Vec::as_slice).unwrap_or(&[])
    }
    fn node_of(&self, id: ItemId) -> Option<NodeIx> {
        self.node.get(id as usize).copied().flatten()
    }
    fn cluster_of_raw(&self, id: ItemId) -> ClusterId {
        self.cluster.get(id as usize).copied().unwrap_or(0)
    }
}

/// A copy-on-write overlay of the graph: the items a plan touches.
struct Overlay<'a> {
    base: &'a LinkGraph,
    plan: Plan,
}

impl View for Overlay<'_> {
    fn neighbours(&self, id: ItemId) -> &[(ItemId, Band)] {
        match self.plan.adjacency.get(&id) {
            Some(v) => v,
            None => self.base.neighbours(id),
        }
    }
    fn node_of(&self, id: ItemId) -> Option<NodeIx> {
        match self.plan.present.get(&id) {
            Some(p) => *p,
            None => self.base.node_of(id),
        }
    }
    fn cluster_of_raw(&self, id: ItemId) -> ClusterId {
        self.plan.cluster.get(&id).copied().unwrap_or_else(|| self.base.cluster_of_raw(id))
    }
}

impl Overlay<'_> {
    fn adjacency_mut(&mut self, id: ItemId) -> &mut Vec<(ItemId, Band)> {
        let base = self.base;
        self.plan.adjacency.entry(id).or_insert_with(|| base.neighbours(id).to_vec())
    }

    fn set_cluster(&mut self, id: ItemId, c: ClusterId) {
        if self.cluster_of_raw(id) != c {
            self.plan.cluster.insert(id, c);
            self.plan.clusters.push((id, c));
        }
    }

    /// Removes every link of the items `ids` at once; returns each one's former neighbours,
    /// sorted. One pass over each neighbour's list, however many of `ids` it was linked to.
    fn unlink_all(&mut self, ids: &[ItemId]) -> Vec<Vec<ItemId>> {
        let set: HashSet<ItemId> = ids.iter().copied().collect();
        let mut former: Vec<Vec<ItemId>> = Vec::with_capacity(ids.len());
        let mut neighbours: HashSet<ItemId> = HashSet::new();
        let mut pairs_inside = 0isize;
        let mut pairs = 0isize;
        for &id in ids {
            let mut n: Vec<ItemId> = self.neighbours(id).iter().map(|x| x.0).collect();
            for &x in &n {
                if set.contains(&x) {
                    pairs_inside += 1;
                } else {
                    neighbours.insert(x);
                }
            }
            pairs += n.len() as isize;
            n.sort_unstable();
            former.push(n);
        }
        for &id in ids {
            if !self.neighbours(id).is_empty() {
                self.plan.adjacency.insert(id, Vec::new());
            }
        }
        for n in neighbours {
            self.adjacency_mut(n).retain(|x| !set.contains(&x.0));
        }
        // A pair inside the set was counted from both ends.
        self.plan.link_delta -= pairs - pairs_inside / 2;
        former
    }

    /// Links `a` and `b`, which are not linked (the caller knows: both were just unlinked).
    fn add_new_link(&mut self, a: ItemId, b: ItemId, band: Band) {
        self.adjacency_mut(a).push((b, band));
        self.adjacency_mut(b).push((a, band));
        self.plan.link_delta += 1;
    }

    /// Gives every strong component containing a `touched` item one id, by the rules of the
    /// module documentation.
    fn settle(&mut self, touched: &[ItemId]) {
        let components = self.touched_components(touched);
        // Claims: (cluster id, members holding it in the component, the component's oldest item).
        let mut claims: Vec<(ClusterId, std::cmp::Reverse<usize>, ItemId, usize)> = Vec::new();
        for (ci, comp) in components.iter().enumerate() {
            let mut counts: BTreeMap<ClusterId, usize> = BTreeMap::new();
            for &m in comp {
                let c = self.cluster_of_raw(m);
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
                    let c = self.plan.next_cluster;
                    self.plan.next_cluster += 1;
                    c
                }
            };
            for &m in comp {
                self.set_cluster(m, id);
            }
        }
    }

    /// The first component containing a `touched` item in which one node holds more than
    /// `max` items: (its members, the node, how many it holds).
    fn over_bound(&self, touched: &[ItemId], max: usize) -> Option<(Vec<ItemId>, NodeIx, usize)> {
        for comp in self.touched_components(touched) {
            let mut per_node: BTreeMap<NodeIx, usize> = BTreeMap::new();
            for &m in &comp {
                if let Some(n) = self.node_of(m) {
                    *per_node.entry(n).or_default() += 1;
                }
            }
            if let Some((&node, &count)) = per_node.iter().find(|(_, c)| **c > max) {
                return Some((comp, node, count));
            }
        }
        None
    }
}

impl Default for LinkGraph {
    fn default() -> Self {
        LinkGraph::new(GraphBounds::default())
    }
}

impl LinkGraph {
    pub fn new(bounds: GraphBounds) -> LinkGraph {
        LinkGraph {
            bounds,
            adjacency: HashMap::new(),
            node: Vec::new(),
            cluster: Vec::new(),
            sizes: HashMap::new(),
            held: HashSet::new(),
            next_cluster: 1,
            links: 0,
            items: 0,
        }
    }

    pub fn bounds(&self) -> GraphBounds {
        self.bounds
    }

    /// Whether the graph holds `id`.
    pub fn contains(&self, id: ItemId) -> bool {
        self.present(id)
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.items
    }

    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    /// Number of links (each pair once), of every band.
    pub fn link_count(&self) -> usize {
        self.links
    }

    /// Number of distinct persons (clusters).
    pub fn cluster_count(&self) -> usize {
        self.sizes.len()
    }

    /// Items in the cluster `c`.
    pub fn cluster_size(&self, c: ClusterId) -> usize {
        self.sizes.get(&c).copied().unwrap_or(0) as usize
    }

    /// The cluster (person) an item belongs to.
    pub fn cluster_of(&self, id: ItemId) -> Option<ClusterId> {
        self.present(id).then(|| self.cluster_of_raw(id)).filter(|c| *c != 0)
    }

    /// The item's links, sorted.
    pub fn links_of(&self, id: ItemId) -> Vec<(ItemId, Band)> {
        let mut v = self.neighbours(id).to_vec();
        v.sort();
        v
    }

    /// Plans `edits` against the graph as it is, enforcing the bounds. Read-only.
    pub fn plan(&self, edits: &[GraphEdit]) -> Plan {
        let mut o = Overlay { base: self, plan: Plan { next_cluster: self.next_cluster, ..Plan::default() } };
        let mut touched: Vec<ItemId> = Vec::new();
        let mut relinked: Vec<(ItemId, Vec<ItemId>)> = Vec::new();
        // 1. Removals, and the old links of relinked items, in one pass.
        let mut ids: Vec<ItemId> = Vec::with_capacity(edits.len());
        let mut seen: HashSet<ItemId> = HashSet::new();
        for e in edits {
            let id = match e {
                GraphEdit::Remove { id } | GraphEdit::Relink { id, .. } => *id,
            };
            o.plan.released.push(id);
            if seen.insert(id) && o.present(id) {
                ids.push(id);
            }
        }
        let former: HashMap<ItemId, Vec<ItemId>> = ids.iter().copied().zip(o.unlink_all(&ids)).collect();
        for e in edits {
            match e {
                GraphEdit::Remove { id } => {
                    if let Some(removed) = former.get(id) {
                        touched.extend(removed);
                    }
                    if o.present(*id) {
                        o.plan.present.insert(*id, None);
                        o.set_cluster(*id, 0);
                    }
                }
                GraphEdit::Relink { id, node, .. } => {
                    let removed = former.get(id).cloned().unwrap_or_default();
                    touched.extend(&removed);
                    touched.push(*id);
                    if o.node_of(*id) != Some(*node) {
                        o.plan.present.insert(*id, Some(*node));
                    }
                    relinked.push((*id, removed));
                }
            }
        }
        // 2. The new links (between items the graph holds once the removals are done; never to
        //    an item held without links, unless the change relinks it). Every relinked item has
        //    no link now, so each pair is new: a pair named from both ends is added once.
        let relinking: HashSet<ItemId> = relinked.iter().map(|r| r.0).collect();
        let mut quarantined: HashSet<ItemId> = self.held.iter().copied().filter(|id| !relinking.contains(id)).collect();
        let add_all = |o: &mut Overlay<'_>, quarantined: &HashSet<ItemId>, touched: &mut Vec<ItemId>| {
            let mut added: HashSet<(ItemId, ItemId)> = HashSet::new();
            for e in edits {
                if let GraphEdit::Relink { id, links, .. } = e {
                    if quarantined.contains(id) {
                        continue;
                    }
                    for &(other, band) in links {
                        if other != *id && o.present(other) && !quarantined.contains(&other) && added.insert((other.min(*id), other.max(*id))) {
                            o.add_new_link(*id, other, band);
                            touched.push(other);
                        }
                    }
                }
            }
        };
        add_all(&mut o, &quarantined, &mut touched);
        // 3. Bounds: while a touched component holds too many items of one node, hold the
        //    newest relinked items of that component (of that node first) without links.
        let max = self.bounds.max_items_per_node;
        while let Some((comp, node, count)) = o.over_bound(&touched, max) {
            let members: HashSet<ItemId> = comp.iter().copied().collect();
            let mut culprits: Vec<ItemId> = relinked
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| members.contains(id) && !quarantined.contains(id))
                .collect();
            if culprits.is_empty() {
                // Cannot happen (a bound holds before the change, so the change's items cause
                // any excess); keep the walk finite regardless.
                break;
            }
            culprits.sort_by_key(|id| (o.node_of(*id) != Some(node), std::cmp::Reverse(*id)));
            let excess = count - max;
            let held: HashSet<ItemId> = culprits.into_iter().take(excess.max(1)).collect();
            o.plan.released.retain(|r| !held.contains(r));
            for &id in &held {
                quarantined.insert(id);
                o.plan.quarantined.push(Quarantined { id, items_of_node: count });
            }
            o.plan.quarantined.sort_by_key(|q| q.id);
            // Re-plan the links of the change without the held items.
            let ids: Vec<ItemId> = relinked.iter().map(|r| r.0).collect();
            for gone in o.unlink_all(&ids) {
                touched.extend(gone);
            }
            add_all(&mut o, &quarantined, &mut touched);
        }
        // 4. Clusters.
        o.settle(&touched);
        // What storage needs per relinked item.
        let mut changes = Vec::with_capacity(relinked.len());
        for (id, removed) in relinked {
            let mut links = o.neighbours(id).to_vec();
            links.sort();
            changes.push((id, LinkChange::Relinked { removed, links }));
        }
        let mut plan = o.plan;
        plan.changes = changes;
        plan
    }

    /// Applies a plan made by [`LinkGraph::plan`] on this graph, unchanged since. Cannot fail;
    /// takes time in proportion to the items the plan touches.
    pub fn apply(&mut self, plan: Plan) {
        for id in &plan.released {
            self.held.remove(id);
        }
        for q in &plan.quarantined {
            self.held.insert(q.id);
        }
        for (id, present) in plan.present {
            let i = id as usize;
            if self.node.len() <= i {
                self.node.resize(i + 1, None);
                self.cluster.resize(i + 1, 0);
            }
            match (self.node[i].is_some(), present.is_some()) {
                (false, true) => self.items += 1,
                (true, false) => self.items -= 1,
                _ => {}
            }
            self.node[i] = present;
        }
        for (id, adj) in plan.adjacency {
            if adj.is_empty() {
                self.adjacency.remove(&id);
            } else {
                self.adjacency.insert(id, adj);
            }
        }
        for (id, c) in plan.cluster {
            let i = id as usize;
            if self.cluster.len() <= i {
                self.node.resize(i + 1, None);
                self.cluster.resize(i + 1, 0);
            }
            let old = self.cluster[i];
            if old != 0
                && let Some(n) = self.sizes.get_mut(&old)
            {
                *n -= 1;
                if *n == 0 {
                    self.sizes.remove(&old);
                }
            }
            if c != 0 {
                *self.sizes.entry(c).or_default() += 1;
            }
            self.cluster[i] = c;
        }
        self.next_cluster = self.next_cluster.max(plan.next_cluster);
        self.links = (self.links as isize + plan.link_delta).max(0) as usize;
    }

    /// Plans and applies at once; returns the plan's changes, cluster changes and quarantined
    /// items (for callers that do not need to store before applying).
    pub fn change(&mut self, edits: &[GraphEdit]) -> Applied {
        let mut plan = self.plan(edits);
        let out = (std::mem::take(&mut plan.changes), plan.clusters.clone(), plan.quarantined.clone());
        self.apply(plan);
        out
    }

    // -----------------------------------------------------------------------------------------
    // Restoring from storage

    /// Adds a stored item (no links yet).
    pub fn restore_item(&mut self, id: ItemId, node: NodeIx) {
        let i = id as usize;
        if self.node.len() <= i {
            self.node.resize(i + 1, None);
            self.cluster.resize(i + 1, 0);
        }
        if self.node[i].is_none() {
            self.items += 1;
        }
        self.node[i] = Some(node);
    }

    /// Marks a restored item held without links.
    pub fn restore_held(&mut self, id: ItemId) {
        if self.present(id) {
            self.held.insert(id);
        }
    }

    /// Whether `id` is held without links.
    pub fn is_held(&self, id: ItemId) -> bool {
        self.held.contains(&id)
    }

    /// Restores a stored link between two restored items.
    pub fn restore_link(&mut self, a: ItemId, b: ItemId, band: Band) {
        if !(self.present(a) && self.present(b)) || a == b {
            return;
        }
        for (x, y) in [(a, b), (b, a)] {
            let adj = self.adjacency.entry(x).or_default();
            match adj.iter_mut().find(|(n, _)| *n == y) {
                Some(slot) => slot.1 = band,
                None => {
                    adj.push((y, band));
                    if x == a {
                        self.links += 1;
                    }
                }
            }
        }
    }

    /// Ends a restore: takes the stored cluster ids and repairs any the links contradict (as a
    /// merge or split would). Returns the repairs, to be stored. Ids of items not restored are
    /// ignored.
    pub fn finish_restore(&mut self, clusters: impl IntoIterator<Item = (ItemId, ClusterId)>) -> Vec<(ItemId, ClusterId)> {
        for (id, c) in clusters {
            if self.present(id) && c != 0 {
                self.cluster[id as usize] = c;
                self.next_cluster = self.next_cluster.max(c + 1);
            }
        }
        self.sizes.clear();
        for i in 0..self.node.len() {
            if self.node[i].is_some() && self.cluster[i] != 0 {
                *self.sizes.entry(self.cluster[i]).or_default() += 1;
            }
        }
        let all: Vec<ItemId> = (0..self.node.len() as ItemId).filter(|&i| self.present(i)).collect();
        let plan = {
            let mut o = Overlay { base: self, plan: Plan { next_cluster: self.next_cluster, ..Plan::default() } };
            o.settle(&all);
            o.plan
        };
        let repairs = plan.clusters.clone();
        self.apply(plan);
        repairs
    }

    // -----------------------------------------------------------------------------------------
    // Questions

    /// Everything linked to `anchor`'s person, with the band a reader should see: items
    /// reachable over certain links only → certain; over certain and probable links →
    /// probable; items with a possible link to a member of the cluster → possible. Only items
    /// `visible` accepts are returned **or walked through**: a relationship the asker may not
    /// see never connects the anchor to one it may see, so nothing shown depends on what is
    /// withheld. The anchor itself is not included. Deterministic order (by item id). Bounded
    /// by the cluster bounds.
    pub fn related(&self, anchor: ItemId, visible: &dyn Fn(ItemId) -> bool) -> Vec<(ItemId, Band)> {
        let mut best: BTreeMap<ItemId, Band> = BTreeMap::new();
        for level in [Band::Certain, Band::Probable] {
            for id in self.component_where(anchor, level, visible) {
                best.entry(id).or_insert(level);
            }
        }
        let members: Vec<ItemId> = std::iter::once(anchor).chain(best.keys().copied()).collect();
        for m in members {
            for &(n, band) in self.neighbours(m) {
                if band == Band::Possible && visible(n) {
                    best.entry(n).or_insert(Band::Possible);
                }
            }
        }
        best.remove(&anchor);
        best.into_iter().collect()
    }

    /// The members of `id`'s person cluster (its strong component), `id` included, sorted.
    pub fn cluster_members(&self, id: ItemId) -> Vec<ItemId> {
        if !self.present(id) {
            return Vec::new();
        }
        let mut m = self.component(id, Band::Probable);
        m.push(id);
        m.sort_unstable();
        m
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

    /// Estimated bytes held, from the counts (no walk: it is read at every metrics scrape).
    pub fn memory_bytes(&self) -> usize {
        self.node.capacity() * 4
            + self.cluster.capacity() * 8
            + self.adjacency.capacity() * (8 + 24 + 16)
            + self.links * 2 * 16
            + self.sizes.capacity() * 24
            + self.held.capacity() * 16
    }

    /// Whether the cluster ids are exactly the strong components: every component has one id
    /// and no two share one, and the sizes and counts agree. For tests and `stats --check`.
    pub fn clusters_consistent(&self) -> Result<(), String> {
        let mut owner: HashMap<ClusterId, ItemId> = HashMap::new();
        let mut seen = HashSet::new();
        let mut links = 0usize;
        for i in 0..self.node.len() as ItemId {
            links += self.neighbours(i).len();
            if !self.present(i) || seen.contains(&i) {
                continue;
            }
            let mut comp = self.component(i, Band::Probable);
            comp.push(i);
            let id = self.cluster_of_raw(i);
            if id == 0 {
                return Err(format!("item {i} has no cluster"));
            }
            for &m in &comp {
                seen.insert(m);
                if self.cluster_of_raw(m) != id {
                    return Err(format!("items {i} and {m} are strongly linked but in clusters {id} and {}", self.cluster_of_raw(m)));
                }
            }
            if self.cluster_size(id) != comp.len() {
                return Err(format!("cluster {id} has {} members but its size says {}", comp.len(), self.cluster_size(id)));
            }
            if let Some(other) = owner.insert(id, i) {
                return Err(format!("cluster {id} holds the unlinked items {other} and {i}"));
            }
        }
        if owner.len() != self.sizes.len() {
            return Err(format!("{} clusters hold items but {} have a size", owner.len(), self.sizes.len()));
        }
        if links / 2 != self.links {
            return Err(format!("{} links held but the count says {}", links / 2, self.links));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relink(id: ItemId, node: NodeIx, links: &[(ItemId, Band)]) -> GraphEdit {
        GraphEdit::Relink { id, node, links: links.to_vec() }
    }

    #[test]
    fn planning_changes_nothing_until_applied() {
        let mut g = LinkGraph::default();
        g.change(&[relink(1, 0, &[]), relink(2, 1, &[(1, Band::Certain)])]);
        let before = (g.links(), g.cluster_of(1), g.cluster_of(2));
        let plan = g.plan(&[GraphEdit::Remove { id: 1 }]);
        assert_eq!((g.links(), g.cluster_of(1), g.cluster_of(2)), before, "a plan is read-only");
        g.apply(plan);
        assert_eq!(g.links(), vec![]);
        assert_eq!(g.cluster_of(1), None);
        assert_eq!(g.cluster_of(2), before.2, "the remaining item keeps the cluster id");
        g.clusters_consistent().unwrap();
    }

    #[test]
    fn one_node_cannot_grow_a_person_beyond_the_bound() {
        let mut g = LinkGraph::new(GraphBounds { max_items_per_node: 3 });
        // Node 0 publishes five items of "one identity", each certain-linked to all before it.
        let mut held = Vec::new();
        for id in 1..=5u64 {
            let links: Vec<(ItemId, Band)> = (1..id).map(|o| (o, Band::Certain)).collect();
            let (_, _, q) = g.change(&[relink(id, 0, &links)]);
            held.extend(q.into_iter().map(|q| q.id));
        }
        assert_eq!(held, vec![4, 5], "the items beyond the bound are held, newest first");
        assert_eq!(g.cluster_members(1), vec![1, 2, 3]);
        assert!(g.links_of(4).is_empty() && g.links_of(5).is_empty());
        // Another node's items still join the person: the bound is per node.
        let (_, _, q) = g.change(&[relink(6, 1, &[(1, Band::Certain), (4, Band::Certain)])]);
        assert!(q.is_empty(), "{q:?} {:?}", g.held);
        assert_eq!(g.cluster_members(1), vec![1, 2, 3, 6]);
        g.clusters_consistent().unwrap();
    }

    #[test]
    fn a_whole_batch_over_the_bound_keeps_the_oldest_and_holds_the_rest() {
        let mut g = LinkGraph::new(GraphBounds { max_items_per_node: 4 });
        let edits: Vec<GraphEdit> = (1..=10u64).map(|id| relink(id, 7, &(1..id).map(|o| (o, Band::Probable)).collect::<Vec<_>>())).collect();
        let (_, _, q) = g.change(&edits);
        let mut held: Vec<ItemId> = q.iter().map(|q| q.id).collect();
        held.sort();
        assert_eq!(held, vec![5, 6, 7, 8, 9, 10]);
        assert_eq!(g.cluster_members(1), vec![1, 2, 3, 4]);
        for id in 5..=10 {
            assert_eq!(g.cluster_members(id), vec![id], "a held item is a person of its own");
        }
        g.clusters_consistent().unwrap();
    }

    #[test]
    fn what_the_asker_may_not_see_never_connects_what_it_may() {
        // anchor 1 — hidden 2 — visible 3: 3 is reached only through 2.
        let mut g = LinkGraph::default();
        g.change(&[relink(1, 0, &[]), relink(2, 1, &[(1, Band::Certain)]), relink(3, 2, &[(2, Band::Certain)]), relink(4, 2, &[(1, Band::Possible)])]);
        assert_eq!(g.related(1, &|_| true), vec![(2, Band::Certain), (3, Band::Certain), (4, Band::Possible)]);
        assert_eq!(g.related(1, &|id| id != 2), vec![(4, Band::Possible)]);
        // Possible links of a hidden member do not count either.
        let mut g2 = LinkGraph::default();
        g2.change(&[relink(1, 0, &[]), relink(2, 1, &[(1, Band::Certain)]), relink(3, 2, &[(2, Band::Possible)])]);
        assert_eq!(g2.related(1, &|id| id != 2), vec![]);
    }
}
