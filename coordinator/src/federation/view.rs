//! What questions read: the link graph, the items' relationships, the consents and the policy in
//! force — and the one way a question is set up and shaped, shared by who-else, data-subject
//! reports and `explain`.
//!
//! The view is changed only by the federation's single writer, in short steps that cannot fail
//! (the writer stores first, then applies); questions hold it for reading only, many at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ponte_proto::v1;

use crate::answer::{self, Candidate};
use crate::graph::{LinkGraph, NodeIx};
use crate::model::{Band, ClusterId, ItemId, ItemKey, StoredItem};
use crate::policy::{self, Consent, Disclosure, Policy};
use crate::storage::{ConsentRow, PolicyRow};

/// The nodes that published, numbered for the graph and the linker (a node's number is its
/// index here; at most 65,536 nodes).
#[derive(Debug, Default, Clone)]
pub struct NodeTable {
    ids: Vec<String>,
    entity: Vec<v1::EntityType>,
    by_id: HashMap<String, NodeIx>,
}

impl NodeTable {
    pub fn get(&self, node: &str) -> Option<NodeIx> {
        self.by_id.get(node).copied()
    }

    /// The node's number, assigning one the first time; `None` when the table is full.
    pub fn assign(&mut self, node: &str, entity: v1::EntityType) -> Option<NodeIx> {
        if let Some(n) = self.get(node) {
            if entity != v1::EntityType::Unspecified {
                self.entity[n as usize] = entity;
            }
            return Some(n);
        }
        let n = NodeIx::try_from(self.ids.len()).ok()?;
        self.ids.push(node.to_string());
        self.entity.push(entity);
        self.by_id.insert(node.to_string(), n);
        Some(n)
    }

    /// The entity type a node publishes as (from its certificate), if it ever published.
    pub fn entity(&self, node: &str) -> Option<v1::EntityType> {
        self.get(node).map(|n| self.entity[n as usize]).filter(|e| *e != v1::EntityType::Unspecified)
    }
}

/// The read-mostly state.
pub struct View {
    pub graph: LinkGraph,
    pub ids: HashMap<ItemKey, ItemId>,
    /// What answers need of each item: key, relationship, entity name (never the encodings).
    pub items: HashMap<ItemId, StoredItem>,
    pub nodes: NodeTable,
    pub policy: Arc<Policy>,
    pub policy_row: PolicyRow,
    /// Consents by (node, consent id), and the consents keyed by each item.
    pub consents: HashMap<(String, String), ConsentRow>,
    pub consents_by_item: HashMap<ItemId, Vec<(String, String)>>,
    /// Closed relationships by the month they closed: what the retention sweep reads.
    pub closed: BTreeMap<u32, HashSet<ItemId>>,
    /// Items held per node (a quota is counted on this).
    pub items_per_node: HashMap<NodeIx, u64>,
}

/// A question set up against the view: who asks, about which anchor, under which policy.
pub struct Setup {
    pub question: policy::Question,
    pub anchor_key: ItemKey,
    pub anchor: Option<ItemId>,
    pub cluster: Option<ClusterId>,
    pub policy: Arc<Policy>,
}

impl View {
    pub fn new(graph: LinkGraph, policy: Policy, policy_row: PolicyRow) -> View {
        View {
            graph,
            ids: HashMap::new(),
            items: HashMap::new(),
            nodes: NodeTable::default(),
            policy: Arc::new(policy),
            policy_row,
            consents: HashMap::new(),
            consents_by_item: HashMap::new(),
            closed: BTreeMap::new(),
            items_per_node: HashMap::new(),
        }
    }

    pub fn index_consent(&mut self, node: &str, consent_id: &str, row: ConsentRow) {
        let k = (node.to_string(), consent_id.to_string());
        self.unindex_consent(&k);
        if let Some(&id) = self.ids.get(&row.reference) {
            self.consents_by_item.entry(id).or_default().push(k.clone());
        }
        self.consents.insert(k, row);
    }

    pub fn unindex_consent(&mut self, k: &(String, String)) -> Option<ConsentRow> {
        let row = self.consents.remove(k)?;
        if let Some(&id) = self.ids.get(&row.reference)
            && let Some(v) = self.consents_by_item.get_mut(&id)
        {
            v.retain(|x| x != k);
            if v.is_empty() {
                self.consents_by_item.remove(&id);
            }
        }
        Some(row)
    }

    /// The consents recorded for the person cluster of `id`.
    pub fn cluster_consents(&self, id: ItemId) -> Vec<&Consent> {
        let mut out = Vec::new();
        for m in self.graph.cluster_members(id) {
            for k in self.consents_by_item.get(&m).into_iter().flatten() {
                if let Some(row) = self.consents.get(k) {
                    out.push(&row.consent);
                }
            }
        }
        out
    }

    /// The consents of `id`'s cluster, read once per cluster into `cache`.
    fn consents_cached<'a>(&'a self, id: ItemId, cache: &mut HashMap<ClusterId, Vec<&'a Consent>>) -> Vec<&'a Consent> {
        match self.graph.cluster_of(id) {
            Some(c) => cache.entry(c).or_insert_with(|| self.cluster_consents(id)).clone(),
            None => Vec::new(),
        }
    }

    /// Puts an item (new or changed) in the view's tables; the graph is changed apart.
    pub fn put_item(&mut self, id: ItemId, item: StoredItem) {
        if let Some(old) = self.items.get(&id) {
            Self::unclose(&mut self.closed, id, old);
        } else {
            let n = self.nodes.get(&item.key.node).unwrap_or(0);
            *self.items_per_node.entry(n).or_default() += 1;
        }
        if item.relationship.status == v1::RelationshipStatus::Conclusa as i32 {
            self.closed.entry(item.relationship.since_month).or_default().insert(id);
        }
        self.ids.insert(item.key.clone(), id);
        self.items.insert(id, item);
    }

    /// Removes an item from the view's tables (its consents too); the graph is changed apart.
    pub fn remove_item(&mut self, id: ItemId) -> Option<StoredItem> {
        let item = self.items.remove(&id)?;
        Self::unclose(&mut self.closed, id, &item);
        self.ids.remove(&item.key);
        let n = self.nodes.get(&item.key.node).unwrap_or(0);
        if let Some(c) = self.items_per_node.get_mut(&n) {
            *c = c.saturating_sub(1);
        }
        for k in self.consents_by_item.remove(&id).unwrap_or_default() {
            self.consents.remove(&k);
        }
        Some(item)
    }

    fn unclose(closed: &mut BTreeMap<u32, HashSet<ItemId>>, id: ItemId, item: &StoredItem) {
        if let Some(set) = closed.get_mut(&item.relationship.since_month) {
            set.remove(&id);
            if set.is_empty() {
                closed.remove(&item.relationship.since_month);
            }
        }
    }

    /// Sets up a question from node `asker` (entity type `entity`) anchored on its reference
    /// `anchor_reference`: the one set-up of who-else, data-subject reports and `explain`.
    #[allow(clippy::too_many_arguments)]
    pub fn setup(
        &self,
        asker: &str,
        entity: v1::EntityType,
        anchor_reference: &str,
        purpose: v1::Purpose,
        role: v1::OperatorRole,
        break_glass: Option<v1::BreakGlassReason>,
        today: u32,
    ) -> Setup {
        let anchor_key = ItemKey { node: asker.to_string(), reference: anchor_reference.to_string() };
        let anchor = self.ids.get(&anchor_key).copied();
        Setup {
            question: policy::Question { asker_node: asker.to_string(), asker_entity: entity, role, purpose, break_glass, today },
            cluster: anchor.and_then(|id| self.graph.cluster_of(id)),
            anchor,
            anchor_key,
            policy: self.policy.clone(),
        }
    }

    /// The policy's check of the question (purpose, role, break-glass, anchor held and in a
    /// status that allows asking). `Ok` carries the anchor.
    pub fn check(&self, s: &Setup) -> Result<ItemId, policy::Refusal> {
        let anchor_rel = s.anchor.and_then(|id| self.items.get(&id)).map(|i| &i.relationship);
        policy::check_question(&s.policy, &s.question, anchor_rel)?;
        s.anchor.ok_or(policy::Refusal::AnchorNotHeld)
    }

    /// The answer to a set-up question about `anchor`'s person, and what it shows. Only
    /// relationships the policy could show this asker (at the best band) take part — as
    /// candidates and as links between others: what is withheld never connects the anchor to
    /// what is shown, so the answer is the same with or without it.
    pub fn shaped(&self, s: &Setup, anchor: ItemId) -> (Vec<v1::OtherRelationship>, Vec<(ItemKey, Disclosure)>) {
        let policy = &*s.policy;
        let mut consents_of: HashMap<ClusterId, Vec<&Consent>> = HashMap::new();
        let none: Vec<&Consent> = Vec::new();
        let members = self.graph.cluster_members(anchor);
        // Decide the members and their possible-linked neighbours (bounded by the graph's
        // bounds) at the best band, then walk the graph through those the asker may see.
        let mut may_see: HashMap<ItemId, bool> = HashMap::new();
        let mut around: Vec<ItemId> = members.clone();
        for &m in &members {
            around.extend(self.graph.links_of(m).into_iter().filter(|(_, b)| *b == Band::Possible).map(|(n, _)| n));
        }
        for id in around {
            if id == anchor || may_see.contains_key(&id) {
                continue;
            }
            let v = match self.items.get(&id) {
                None => false,
                Some(item) => {
                    let consents = self.consents_cached(id, &mut consents_of);
                    let target = policy::Target { relationship: &item.relationship, band: Band::Certain, obscured: item.obscured, consents: &consents };
                    policy::decide(policy, &s.question, &target).disclosure != Disclosure::Nothing
                }
            };
            may_see.insert(id, v);
        }
        let related = self.graph.related(anchor, &|id| may_see.get(&id).copied().unwrap_or(false));
        for (id, _) in &related {
            self.consents_cached(*id, &mut consents_of);
        }
        let candidates: Vec<Candidate<'_>> = related
            .iter()
            .filter_map(|(id, band)| {
                let item = self.items.get(id)?;
                let consents = self.graph.cluster_of(*id).and_then(|c| consents_of.get(&c)).unwrap_or(&none);
                Some(Candidate {
                    key: &item.key,
                    entity_name: &item.entity_name,
                    band: *band,
                    relationship: &item.relationship,
                    obscured: item.obscured,
                    consents: consents.as_slice(),
                })
            })
            .collect();
        answer::shape_answer(policy, &s.question, &candidates)
    }

    /// Audit labels of what was shown, and how: the category's name, or `~group` when
    /// generalised.
    pub fn audit_shown(&self, shown: &[(ItemKey, Disclosure)]) -> (Vec<String>, Vec<String>) {
        use ponte_proto::vocab;
        shown
            .iter()
            .map(|(k, d)| {
                let category = self
                    .ids
                    .get(k)
                    .and_then(|id| self.items.get(id))
                    .and_then(|i| v1::ServiceCategory::try_from(i.relationship.category).ok())
                    .unwrap_or(v1::ServiceCategory::Unspecified);
                let shown_as = match d {
                    Disclosure::Generalised => format!("~{}", vocab::CategoryGroupName::name(vocab::category_group(category))),
                    _ => vocab::ServiceCategoryName::name(category),
                };
                (k.label(), shown_as)
            })
            .unzip()
    }
}
