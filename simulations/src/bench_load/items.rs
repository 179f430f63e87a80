//! The published items of `bench load`: the `lecce` scenario's synthetic population, chunk by
//! chunk, read by the node's importer and encoded by the node's encoder, turned into wire items
//! exactly as a node publishes them (`ponte_node::client::published_item` does the same from a
//! node's store).
//!
//! Chunks are independent populations of the same province (their own seed), so a million items
//! are several hundred thousand persons with the province's name and birthplace frequencies,
//! some held by several entities (and a few twice by one). References are
//! `<chunk>-<row>` in hexadecimal (plus a prefix for the publisher's new items): opaque, and the
//! same chunk always gives the same references, so a later run can find its own items again.

use anyhow::{Context, Result};
use ponte_node::encode::Encoder;
use ponte_proto::v1::{self, ExactToken, FieldFilter, IdentityEncoding, PublishedItem, Relationship};
use ponte_proto::vocab;
use rayon::prelude::*;

use crate::synth;

/// The scenario whose entities are the benchmark's nodes.
pub const SCENARIO: &str = "lecce";
/// Persons generated at once (bounds the generator's memory).
pub const MAX_CHUNK_PERSONS: usize = 100_000;
/// Months after which the default policy erases a closed relationship (`[retention]
/// closed_months`). Such relationships are not published: the coordinator's retention sweep would
/// erase them at its next start, so they would never count as indexed.
const RETENTION_CLOSED_MONTHS: i64 = 12;

/// One node of the benchmark's federation.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NodeSpec {
    pub id: String,
    pub entity_type: String,
    pub name: String,
}

/// The scenario's entities, in its order.
pub fn nodes() -> Vec<NodeSpec> {
    synth::scenario::lecce_scenario(1_000)
        .entities
        .iter()
        .map(|e| NodeSpec { id: e.node_id.clone(), entity_type: e.entity_type.clone(), name: e.entity_name.clone() })
        .collect()
}

/// What one chunk gives each node (indexed as [`nodes`]).
pub struct Chunk {
    pub items: Vec<Vec<PublishedItem>>,
    /// Per node, the references of items whose status lets them anchor a question (segnalata,
    /// in valutazione, attiva).
    pub anchors: Vec<Vec<String>>,
    /// Rows not published: never-encode, or closed past retention.
    pub skipped: u64,
}

impl Chunk {
    pub fn len(&self) -> usize {
        self.items.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps `keep` items, taken from every node in proportion to what it holds.
    pub fn truncate(&mut self, keep: usize) {
        let total = self.len();
        if keep >= total {
            return;
        }
        let mut left = keep;
        let n = self.items.len();
        for i in (0..n).rev() {
            let share = if i == 0 { left } else { (self.items[i].len() * keep / total).min(left) };
            left -= share;
            let kept: std::collections::HashSet<&str> = self.items[i][..share].iter().map(|it| it.reference.as_str()).collect();
            self.anchors[i].retain(|r| kept.contains(r.as_str()));
            self.items[i].truncate(share);
        }
    }
}

/// The seed of chunk `c` of a population seeded `seed`.
pub fn chunk_seed(seed: u64, c: u64) -> u64 {
    seed ^ (c + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn months(yyyymm: u32) -> i64 {
    i64::from(yyyymm / 100) * 12 + i64::from(yyyymm % 100)
}

/// Generates chunk `c` (`persons` persons) and encodes every publishable row as its entity's
/// item with `revision`. `today` is `YYYYMMDD`. References are `<prefix><c>-<row>`.
pub fn chunk(c: u64, persons: usize, seed: u64, prefix: &str, encoder: &Encoder, revision: u64, today: u32) -> Result<Chunk> {
    let mut scenario = synth::scenario::lecce_scenario(persons);
    scenario.seed = chunk_seed(seed, c);
    let generated = synth::try_generate(&scenario).map_err(|e| anyhow::anyhow!(e.0))?;
    let this_month = months(today / 100);
    let mut out = Chunk { items: Vec::new(), anchors: Vec::new(), skipped: 0 };
    for export in &generated.exports {
        let entity_type = vocab::EntityType::parse(&export.entity_type).map_err(anyhow::Error::msg)?;
        let (rows, _) = ponte_node::import::read_export(export.csv.as_slice(), &export.file_name, &export.import)
            .with_context(|| format!("reading the synthetic export {}", export.file_name))?;
        let keep: Vec<(usize, &ponte_node::import::ImportedRow)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                let expired = r.status == v1::RelationshipStatus::Conclusa && this_month - months(r.since_month) >= RETENTION_CLOSED_MONTHS;
                !r.never_encode && !expired
            })
            .collect();
        out.skipped += (rows.len() - keep.len()) as u64;
        let items: Vec<PublishedItem> = keep
            .par_iter()
            .map(|(i, row)| {
                let enc = encoder.encode(&row.identity);
                PublishedItem {
                    reference: format!("{prefix}{c:x}-{i:x}"),
                    encoding: Some(IdentityEncoding {
                        clk: enc.clk,
                        tokens: enc.tokens.iter().map(|(k, t)| ExactToken { kind: *k as i32, value: t.to_vec() }).collect(),
                        quality_flags: enc.quality_flags,
                        field_filters: enc.field_filters.into_iter().map(|(field, bits)| FieldFilter { field, bits }).collect(),
                    }),
                    relationship: Some(Relationship {
                        entity_type: entity_type as i32,
                        unit: row.unit.clone(),
                        category: row.category as i32,
                        tier: vocab::default_tier(row.category) as i32,
                        status: row.status as i32,
                        since_month: row.since_month,
                        case_manager: row.case_manager,
                        // What a node's import gives a relationship (`ponte_node::node`).
                        plan: v1::PlanType::PlanNone as i32,
                        contact: v1::ContactRole::SegreteriaUnita as i32,
                    }),
                    revision,
                    obscured: false,
                }
            })
            .collect();
        let anchors = keep
            .iter()
            .zip(&items)
            .filter(|((_, r), _)| {
                matches!(r.status, v1::RelationshipStatus::Segnalata | v1::RelationshipStatus::InValutazione | v1::RelationshipStatus::Attiva)
            })
            .map(|(_, it)| it.reference.clone())
            .collect();
        out.items.push(items);
        out.anchors.push(anchors);
    }
    Ok(out)
}

/// Persons per chunk for a load of `items` items (the scenario gives about 1.3 items a person).
pub fn chunk_persons(items: usize) -> usize {
    items.clamp(1_000, MAX_CHUNK_PERSONS)
}
