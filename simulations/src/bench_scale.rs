//! `ponte-sim bench bulk` and `bench online`: the coordinator's linker at federation scale.
//!
//! Both run the real pipeline in process — the synthetic population of the demo scenario, each
//! entity's export read by the node's importer and encoded by the node's encoder under the
//! default linkage schema, then [`Linker`] exactly as the coordinator runs it (LSH blocking and
//! token index, the Dice kernel, Fellegi–Sunter scoring with the shipped model, incremental
//! clustering). Population, import and encoding are not timed.
//!
//! - **bulk**: side B (the three Comuni/ATS entities) is loaded first, then side A (the ASL's
//!   records) arrives as an initial load, in batches of `--batch` records (default: all at once)
//!   through the bulk path. Timed: linking side A — against B and within itself. Pair completeness is measured over
//!   the true A–B pairs: the share that blocking proposes (they meet in an LSH table or share an
//!   exact token); `pair_completeness_screened` also requires LSH-only pairs to reach the
//!   model's Dice screen. Precision and recall are of the A–B pairs put in one person cluster.
//! - **online**: `--indexed` encodings are indexed as at a coordinator start (restored, then
//!   the LSH tables built), then `--queries` further records of the same population are
//!   published one at a time on the online path; each publish is timed from the call to its
//!   links and cluster ids being in place — what the next who-else question sees. Resident
//!   memory is read from `/proc/self/status` after the population is dropped;
//!   `index_bytes_allocated` is the linker's own count of what it has allocated (spare capacity
//!   included, which is not resident until used).

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, ensure};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ponte_coordinator::blocking::compact_token;
use ponte_coordinator::linker::{Band, ItemId, Linker, LinkerParams, Publish};
use ponte_coordinator::model::{EpochEncoding, Token};
use ponte_coordinator::scoring::FsModel;
use ponte_node::encode::Encoder;
use ponte_node::secret::LinkageSecret;
use ponte_proto::bits::to_words;
use ponte_proto::schema::LinkageSchema;
use rayon::prelude::*;
use serde_json::{Value, json};

use crate::synth;

/// Largest batch of the streamed bulk load.
pub const MAX_BULK_BATCH: usize = 2_000_000;
/// Persons generated at once by the online benchmark.
const CHUNK_PERSONS: usize = 1_000_000;

/// One encoded record with its truth.
pub struct Rec {
    /// The entity's position in the scenario.
    pub node: u8,
    pub person: u64,
    pub enc: EpochEncoding,
}

/// The demo scenario's population of `persons`, imported and encoded (epoch 1). Person ids are
/// offset by `tag << 32` so that populations of several calls stay apart.
pub fn encoded_population(persons: usize, seed: u64, tag: u64, encoder: &Encoder) -> anyhow::Result<Vec<Rec>> {
    let mut scenario = synth::scenario::demo_scenario(persons);
    scenario.seed = seed;
    let generated = synth::generate(&scenario);
    let truth: HashMap<(&str, &str), u32> =
        generated.truth.iter().map(|t| ((t.node_id.as_str(), t.record_id.as_str()), t.person_id)).collect();
    let mut out = Vec::new();
    for (node, export) in generated.exports.iter().enumerate() {
        let (rows, _) = ponte_node::import::read_export(export.csv.as_slice(), &export.file_name, &export.import)
            .with_context(|| format!("reading {}", export.file_name))?;
        let mut seen = std::collections::HashSet::new();
        let rows: Vec<_> = rows.into_iter().filter(|r| seen.insert(r.record_id.clone())).collect();
        let encoded: Vec<Rec> = rows
            .into_par_iter()
            .map(|row| {
                let person = *truth
                    .get(&(export.node_id.as_str(), row.record_id.as_str()))
                    .ok_or_else(|| anyhow::anyhow!("record {} of {} is not in the truth", row.record_id, export.node_id))?;
                let e = encoder.encode(&row.identity);
                Ok(Rec {
                    node: node as u8,
                    person: (tag << 32) | u64::from(person),
                    enc: EpochEncoding {
                        epoch: 1,
                        clk: e.clk,
                        tokens: e.tokens.iter().map(|(k, v)| Token { kind: *k as i32, value: *v }).collect(),
                    },
                })
            })
            .collect::<anyhow::Result<_>>()?;
        out.extend(encoded);
    }
    Ok(out)
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_message(what.to_string());
    b
}

/// Resident set size of this process, from `/proc/self/status` (0 where unavailable), after
/// returning freed heap pages to the system (so the figure is what is held, not what the
/// allocator keeps cached from the population that was dropped).
pub fn rss_bytes() -> u64 {
    #[cfg(target_os = "linux")]
    // SAFETY: malloc_trim only releases free memory of the allocator; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map_or(0, |kb| kb * 1024)
}

fn secret(seed: u64) -> LinkageSecret {
    let mut key = [0x5au8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    LinkageSecret::from_bytes(1, key)
}

fn linker_params(schema: &LinkageSchema, k: Option<u32>, l: Option<u32>) -> LinkerParams {
    let mut p = LinkerParams::for_schema(schema, FsModel::default_model());
    p.lsh.bits_per_key = k.unwrap_or(p.lsh.bits_per_key);
    p.lsh.tables = l.unwrap_or(p.lsh.tables);
    p
}

/// What both scale benchmarks take.
#[derive(Args, Debug, Clone)]
pub struct ScaleArgs {
    /// LSH bits per key (K); the default schema's when absent.
    #[arg(long)]
    pub lsh_bits_per_key: Option<u32>,
    /// LSH tables (L); the default schema's when absent.
    #[arg(long)]
    pub lsh_tables: Option<u32>,
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What `ponte-sim bench bulk` measures.
#[derive(Args, Debug, Clone)]
pub struct BulkBenchArgs {
    /// Records on each side (1,000 to 2,000,000).
    #[arg(long, default_value_t = 1_000_000)]
    pub records_per_side: usize,
    /// Records per batch of each side's load (1 to 2,000,000; default: the whole side at once).
    /// Each batch re-reads the LSH buckets it falls into, so fewer, larger batches link faster.
    #[arg(long)]
    pub batch: Option<usize>,
    #[command(flatten)]
    pub common: ScaleArgs,
}

fn share_token(a: &[u64], b: &[u64]) -> bool {
    a.iter().any(|x| b.contains(x))
}

pub fn bulk(args: &BulkBenchArgs) -> anyhow::Result<Value> {
    ensure!((1_000..=2_000_000).contains(&args.records_per_side), "--records-per-side must be between 1000 and 2000000");
    let started = Instant::now();
    let schema = LinkageSchema::default_schema();
    let encoder = Encoder::new(&secret(args.common.seed), &schema);
    // Per person, the demo scenario gives ≈ 0.66 ASL records and ≈ 0.52 of the others: 2.05
    // persons per record fill both sides.
    let persons = (args.records_per_side as f64 * 2.05).ceil() as usize;
    eprintln!("generating and encoding {persons} persons …");
    let recs = encoded_population(persons, args.common.seed, 0, &encoder)?;
    let (mut a, mut b): (Vec<Rec>, Vec<Rec>) = recs.into_iter().partition(|r| r.node == 0);
    ensure!(
        a.len() >= args.records_per_side && b.len() >= args.records_per_side,
        "the population gave {} and {} records; fewer than {} per side",
        a.len(),
        b.len(),
        args.records_per_side
    );
    a.truncate(args.records_per_side);
    b.truncate(args.records_per_side);
    let prepared = started.elapsed().as_secs_f64();

    let params = linker_params(&schema, args.common.lsh_bits_per_key, args.common.lsh_tables);
    let lsh = params.lsh;
    let kernel = params.kernel;
    let mut linker = Linker::new(params).map_err(anyhow::Error::msg)?;
    let n = args.records_per_side;
    // Side B: ids 0..n; side A: ids n..2n.
    let batch_size = args.batch.unwrap_or(n);
    ensure!((1..=MAX_BULK_BATCH).contains(&batch_size), "--batch must be between 1 and {MAX_BULK_BATCH}");
    let load = |linker: &mut Linker, side: &[Rec], first: usize, what: &str| -> anyhow::Result<(f64, u64, u64, u64)> {
        let progress = bar(side.len() as u64, what);
        progress.tick();
        let t = Instant::now();
        let (mut comparisons, mut scored, mut links) = (0, 0, 0);
        for (c, chunk) in side.chunks(batch_size).enumerate() {
            let batch: Vec<Publish<'_>> = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| Publish { id: (first + c * batch_size + i) as ItemId, revision: 1, encoding: &r.enc, node: 0 })
                .collect();
            linker.publish_batch(&batch)?;
            let s = linker.last_batch();
            comparisons += s.comparisons;
            scored += s.scored_pairs;
            links += s.links;
            linker.take_cluster_changes();
            progress.inc(chunk.len() as u64);
        }
        progress.finish_and_clear();
        Ok((t.elapsed().as_secs_f64(), comparisons, scored, links))
    };
    let (seconds_b, ..) = load(&mut linker, &b, 0, "side B")?;
    let (seconds, comparisons, scored, links) = load(&mut linker, &a, n, "side A")?;

    // Truth: the A–B pairs of each person.
    let mut b_of: HashMap<u64, Vec<usize>> = HashMap::new();
    for (j, r) in b.iter().enumerate() {
        b_of.entry(r.person).or_default().push(j);
    }
    let screen = linker.screen(2 * n as u64).unwrap_or(1.0);
    let words_a: Vec<Vec<u64>> = a.par_iter().map(|r| to_words(&r.enc.clk)).collect();
    let words_b: Vec<Vec<u64>> = b.par_iter().map(|r| to_words(&r.enc.clk)).collect();
    let toks = |r: &Rec| -> Vec<u64> { r.enc.tokens.iter().map(compact_token).collect() };
    let true_pairs: Vec<(usize, usize)> =
        a.iter().enumerate().flat_map(|(i, r)| b_of.get(&r.person).into_iter().flatten().map(move |&j| (i, j))).collect();
    let (met, met_screened): (u64, u64) = true_pairs
        .par_iter()
        .map(|&(i, j)| {
            let token = share_token(&toks(&a[i]), &toks(&b[j]));
            let lsh = linker.lsh_collide(1, &words_a[i], &words_b[j]);
            let dice = ponte_proto::bits::dice_words(&words_a[i], &words_b[j]);
            (u64::from(token || lsh), u64::from(token || (lsh && dice >= f64::from(screen))))
        })
        .reduce(|| (0, 0), |x, y| (x.0 + y.0, x.1 + y.1));
    let pc = met as f64 / true_pairs.len().max(1) as f64;
    let pc_screened = met_screened as f64 / true_pairs.len().max(1) as f64;

    // Cross pairs put in one cluster, against the truth.
    let mut clusters: HashMap<u64, (Vec<usize>, Vec<usize>)> = HashMap::new();
    for i in 0..n {
        if let Some(c) = linker.cluster_of((n + i) as ItemId) {
            clusters.entry(c).or_default().0.push(i);
        }
        if let Some(c) = linker.cluster_of(i as ItemId) {
            clusters.entry(c).or_default().1.push(i);
        }
    }
    let (mut predicted, mut correct) = (0u64, 0u64);
    for (xs, ys) in clusters.values() {
        predicted += (xs.len() * ys.len()) as u64;
        for &x in xs {
            correct += ys.iter().filter(|&&y| a[x].person == b[y].person).count() as u64;
        }
    }
    let precision = correct as f64 / predicted.max(1) as f64;
    let recall = correct as f64 / true_pairs.len().max(1) as f64;
    let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    let possible_links = linker.links().iter().filter(|l| l.2 == Band::Possible).count();
    let all_pairs = n as f64 * n as f64 + n as f64 * (n as f64 - 1.0) / 2.0;

    Ok(json!({
        "benchmark": "bulk",
        "cores": rayon::current_num_threads(),
        "kernel": kernel.name(),
        "records_per_side": n,
        "batch": batch_size,
        "seconds": seconds,
        "records_per_s": n as f64 / seconds,
        "seconds_side_b": seconds_b,
        "pair_completeness": pc,
        "pair_completeness_screened": pc_screened,
        "true_cross_pairs": true_pairs.len(),
        "dice_screen": screen,
        "comparisons": comparisons,
        "scored_pairs": scored,
        "reduction_ratio": 1.0 - scored as f64 / all_pairs,
        "links": links,
        "possible_links_total": possible_links,
        "cross_precision": precision,
        "cross_recall": recall,
        "cross_f1": f1,
        "clusters": linker.cluster_count(),
        "index_bytes_allocated": linker.memory_bytes(),
        // Includes both sides' encoded records, kept by the benchmark for the truth.
        "rss_bytes": rss_bytes(),
        "seconds_generate_encode": prepared,
        "lsh": { "bits_per_key": lsh.bits_per_key, "tables": lsh.tables, "skip_most_frequent": lsh.skip_most_frequent },
        "seed": args.common.seed,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    }))
}

/// What `ponte-sim bench online` measures.
#[derive(Args, Debug, Clone)]
pub struct OnlineBenchArgs {
    /// Encodings indexed before the timed publishes (1,000 to 20,000,000).
    #[arg(long, default_value_t = 10_000_000)]
    pub indexed: usize,
    /// Records published one at a time and timed (10 to 100,000).
    #[arg(long, default_value_t = 2_000)]
    pub queries: usize,
    #[command(flatten)]
    pub common: ScaleArgs,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn online(args: &OnlineBenchArgs) -> anyhow::Result<Value> {
    ensure!((1_000..=20_000_000).contains(&args.indexed), "--indexed must be between 1000 and 20000000");
    ensure!((10..=100_000).contains(&args.queries), "--queries must be between 10 and 100000");
    let schema = LinkageSchema::default_schema();
    let encoder = Encoder::new(&secret(args.common.seed), &schema);
    let params = linker_params(&schema, args.common.lsh_bits_per_key, args.common.lsh_tables);
    let lsh = params.lsh;
    let kernel = params.kernel;
    let mut linker = Linker::new(params).map_err(anyhow::Error::msg)?;
    let persons_per_chunk = CHUNK_PERSONS.min(args.indexed.max(args.queries * 4));
    let progress = bar(args.indexed as u64, "indexing");
    let started = Instant::now();
    let mut queries: Vec<Rec> = Vec::new();
    let mut next: ItemId = 0;
    let mut chunk = 0u64;
    while (next as usize) < args.indexed {
        let recs = encoded_population(persons_per_chunk, args.common.seed ^ chunk.wrapping_mul(0x9e37_79b9), chunk, &encoder)?;
        ensure!(!recs.is_empty(), "the population is empty");
        for (k, r) in recs.into_iter().enumerate() {
            // Every 50th record of the first chunk is held back to be published online: its
            // person's other records are indexed, so the timed publishes find real links.
            if chunk == 0 && k % 50 == 7 && queries.len() < args.queries {
                queries.push(r);
                continue;
            }
            if (next as usize) < args.indexed {
                linker.restore(next, 1, std::slice::from_ref(&r.enc))?;
                next += 1;
                progress.inc(1);
            }
        }
        chunk += 1;
    }
    progress.finish_and_clear();
    ensure!(queries.len() == args.queries, "the first population chunk held only {} query records; lower --queries", queries.len());
    let t = Instant::now();
    linker.finish_restore(std::iter::empty());
    linker.take_cluster_changes();
    let seconds_build = t.elapsed().as_secs_f64();
    let seconds_index = started.elapsed().as_secs_f64();
    let rss_indexed = rss_bytes();

    let mut latencies = Vec::with_capacity(queries.len());
    let mut links = 0usize;
    let mut comparisons = 0u64;
    for q in &queries {
        let t = Instant::now();
        let change = linker.publish(next, 1, &q.enc)?;
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        if let ponte_coordinator::linker::LinkChange::Relinked { links: l, .. } = change {
            links += l.len();
        }
        comparisons += linker.last_batch().comparisons;
        linker.take_cluster_changes();
        next += 1;
    }
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(json!({
        "benchmark": "online",
        "cores": rayon::current_num_threads(),
        "kernel": kernel.name(),
        "indexed": args.indexed,
        "queries": args.queries,
        "p50_ms": percentile(&sorted, 50.0),
        "p99_ms": percentile(&sorted, 99.0),
        "max_ms": sorted.last().copied().unwrap_or(0.0),
        "mean_ms": latencies.iter().sum::<f64>() / latencies.len().max(1) as f64,
        "mean_comparisons": comparisons as f64 / queries.len() as f64,
        "links_per_query": links as f64 / queries.len() as f64,
        "rss_bytes": rss_indexed,
        "index_bytes_allocated": linker.memory_bytes(),
        "seconds_index": seconds_index,
        "seconds_build_lsh": seconds_build,
        "lsh": { "bits_per_key": lsh.bits_per_key, "tables": lsh.tables, "skip_most_frequent": lsh.skip_most_frequent },
        "seed": args.common.seed,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    }))
}

/// Prints a report as JSON or as `key: value` lines.
pub fn print(report: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else if let Some(map) = report.as_object() {
        for (k, v) in map {
            println!("{k:>28}: {v}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bulk_and_online_runs_report_sane_figures() {
        let small = ScaleArgs { lsh_bits_per_key: None, lsh_tables: None, seed: 3, json: true };
        let r = bulk(&BulkBenchArgs { records_per_side: 1_000, batch: Some(300), common: small.clone() }).unwrap();
        assert_eq!(r["records_per_side"], 1_000);
        let pc = r["pair_completeness"].as_f64().unwrap();
        assert!(pc > 0.95 && pc <= 1.0, "{r}");
        assert!(r["cross_f1"].as_f64().unwrap() > 0.9, "{r}");
        assert!(r["true_cross_pairs"].as_u64().unwrap() > 100, "{r}");
        let r = online(&OnlineBenchArgs { indexed: 5_000, queries: 40, common: small }).unwrap();
        assert_eq!(r["indexed"], 5_000);
        assert!(r["p99_ms"].as_f64().unwrap() >= r["p50_ms"].as_f64().unwrap());
        assert!(r["links_per_query"].as_f64().unwrap() > 0.2, "held-back records find their persons: {r}");
        assert!(r["rss_bytes"].as_u64().unwrap() > 0);
    }
}
