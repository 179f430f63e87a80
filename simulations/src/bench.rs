//! `ponte-sim bench`: throughput measurements on synthetic data.
//!
//! `bench encode` measures the node's encoder: it generates the demo scenario's synthetic
//! population, reads every entity's export through the node's own importer (so the identities
//! carry the realistic errors, gaps and quality flags of DOMAIN.md §5), then encodes all of them
//! on one core and on all cores (rayon), several times each, and reports the **median** of the
//! timed repeats (machines are noisy; the median ignores the odd slow run). Every repeat checks
//! that the parallel encodings equal the sequential ones, so a figure always belongs to correct
//! output.
//!
//! Bounds: 1 to [`MAX_RECORDS`] records, [`MIN_REPEATS`] to [`MAX_REPEATS`] repeats.

use std::hint::black_box;
use std::time::Instant;

use anyhow::Context;
use ponte_node::encode::{Encoder, Encoding};
use ponte_node::normalise::NormalisedIdentity;
use ponte_node::secret::LinkageSecret;
use ponte_proto::schema::{HARDENED_EXAMPLE_SCHEMA_TOML, LinkageSchema};
use rayon::prelude::*;
use serde::Serialize;

use crate::synth;

/// Most records one run encodes.
pub const MAX_RECORDS: usize = 2_000_000;
/// Fewest timed repeats: a median of fewer says little.
pub const MIN_REPEATS: usize = 5;
pub const MAX_REPEATS: usize = 101;

/// What to measure.
#[derive(Debug, Clone)]
pub struct EncodeBenchOptions {
    pub records: usize,
    pub repeats: usize,
    /// `default`, `hardened` (the example profile) or a schema file's path.
    pub schema: String,
    /// Seed of the synthetic population (and of the benchmark's linkage secret).
    pub seed: u64,
}

impl Default for EncodeBenchOptions {
    fn default() -> Self {
        EncodeBenchOptions { records: 50_000, repeats: 7, schema: "default".into(), seed: 2026 }
    }
}

/// The result, as printed by `--json`. Rates are records per second.
#[derive(Debug, Clone, Serialize)]
pub struct EncodeBenchReport {
    pub benchmark: &'static str,
    pub schema_name: String,
    pub schema_fingerprint: String,
    pub published_clk_bits: u32,
    pub field_filters: usize,
    pub records: usize,
    /// Worker threads of the all-cores run (rayon's pool: one per available core).
    pub cores: usize,
    pub repeats: usize,
    /// Median over the repeats, one thread.
    pub records_per_s_per_core: f64,
    /// Median over the repeats, `cores` threads.
    pub records_per_s_all_cores: f64,
    /// `records_per_s_all_cores / (cores · records_per_s_per_core)`.
    pub parallel_efficiency: f64,
    /// Median time to encode one record on one core, in microseconds.
    pub median_us_per_record: f64,
    /// Every repeat's rate, in run order.
    pub per_core_runs: Vec<f64>,
    pub all_cores_runs: Vec<f64>,
    /// Share of set bits in the published CLKs, averaged over the records (≈ 0.5 is the target
    /// of choosing k; exactly 0.5 with balancing).
    pub mean_clk_fill: f64,
    pub build: &'static str,
}

fn load_schema(spec: &str) -> anyhow::Result<LinkageSchema> {
    match spec {
        "default" => Ok(LinkageSchema::default_schema()),
        "hardened" => LinkageSchema::parse(HARDENED_EXAMPLE_SCHEMA_TOML)
            .map_err(|p| anyhow::anyhow!("the bundled hardened profile has problems: {}", p.join("; "))),
        path => LinkageSchema::load(std::path::Path::new(path)).map_err(anyhow::Error::msg),
    }
}

/// `records` normalised identities of the demo scenario, read through the node's importer.
/// When the population yields fewer import rows than asked, it is regenerated larger once; if
/// still short, identities are reused in order (the encoder keeps no state between records).
pub fn synthetic_identities(records: usize, seed: u64) -> anyhow::Result<Vec<NormalisedIdentity>> {
    anyhow::ensure!((1..=MAX_RECORDS).contains(&records), "--records must be between 1 and {MAX_RECORDS}");
    let mut persons = records.max(10);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut scenario = synth::scenario::demo_scenario(persons.min(synth::scenario::MAX_PERSONS));
        scenario.seed = seed;
        let generated = synth::try_generate(&scenario).map_err(|e| anyhow::anyhow!("{e}"))?;
        ids.clear();
        for export in &generated.exports {
            let mut cfg = export.import.clone();
            cfg.max_rows = usize::MAX;
            let (rows, _) = ponte_node::import::read_export(export.csv.as_slice(), &export.file_name, &cfg)
                .with_context(|| format!("reading the synthetic export {}", export.file_name))?;
            ids.extend(rows.into_iter().map(|r| r.identity));
        }
        anyhow::ensure!(!ids.is_empty(), "the synthetic population gave no importable rows");
        if ids.len() >= records {
            break;
        }
        persons = persons.saturating_mul(records).div_ceil(ids.len()).saturating_add(persons / 10);
    }
    let available = ids.len();
    Ok((0..records).map(|i| ids[i % available].clone()).collect())
}

/// A cheap digest of one encoding, to check that parallel runs agree with the sequential one.
fn checksum(e: &Encoding) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h = (h ^ x as u64).wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&e.clk);
    e.tokens.iter().for_each(|t| eat(&t.1));
    e.field_filters.iter().for_each(|f| eat(&f.1));
    h
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Runs the encoder benchmark.
pub fn encode(opts: &EncodeBenchOptions) -> anyhow::Result<EncodeBenchReport> {
    anyhow::ensure!(
        (MIN_REPEATS..=MAX_REPEATS).contains(&opts.repeats),
        "--repeats must be between {MIN_REPEATS} and {MAX_REPEATS}"
    );
    let schema = load_schema(&opts.schema)?;
    let ids = synthetic_identities(opts.records, opts.seed)?;
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&opts.seed.to_le_bytes());
    let encoder = Encoder::new(&LinkageSecret::from_bytes(1, key), &schema);
    let cores = rayon::current_num_threads();

    // Warm-up (caches, page faults, rayon's threads), and the reference checksum.
    let expected: u64 = ids.iter().map(|id| checksum(&encoder.encode(id))).fold(0, u64::wrapping_add);
    let fill: f64 = ids.iter().take(10_000).map(|id| {
        let e = encoder.encode(id);
        ponte_proto::bits::popcount(&e.clk) as f64 / (e.clk.len() * 8) as f64
    }).sum::<f64>() / ids.len().min(10_000) as f64;

    let mut per_core = Vec::with_capacity(opts.repeats);
    let mut all_cores = Vec::with_capacity(opts.repeats);
    for _ in 0..opts.repeats {
        let start = Instant::now();
        for id in &ids {
            black_box(encoder.encode(black_box(id)));
        }
        per_core.push(ids.len() as f64 / start.elapsed().as_secs_f64());

        let start = Instant::now();
        let sum = ids.par_iter().map(|id| checksum(&encoder.encode(black_box(id)))).reduce(|| 0, u64::wrapping_add);
        all_cores.push(ids.len() as f64 / start.elapsed().as_secs_f64());
        anyhow::ensure!(sum == expected, "parallel encodings differ from sequential ones: the encoder is not deterministic");
    }
    let one = median(&per_core);
    let all = median(&all_cores);
    Ok(EncodeBenchReport {
        benchmark: "encode",
        schema_name: schema.name.clone(),
        schema_fingerprint: schema.fingerprint().hex(),
        published_clk_bits: schema.published_clk_bits(),
        field_filters: schema.field_filter_bytes().len(),
        records: ids.len(),
        cores,
        repeats: opts.repeats,
        records_per_s_per_core: one.round(),
        records_per_s_all_cores: all.round(),
        parallel_efficiency: (all / (one * cores as f64) * 1000.0).round() / 1000.0,
        median_us_per_record: (1e6 / one * 1000.0).round() / 1000.0,
        per_core_runs: per_core.iter().map(|r| r.round()).collect(),
        all_cores_runs: all_cores.iter().map(|r| r.round()).collect(),
        mean_clk_fill: (fill * 1000.0).round() / 1000.0,
        build: if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

/// One readable line.
pub fn print_encode(r: &EncodeBenchReport) {
    println!(
        "encode: {} records, schema {:?} ({}), {:.0} records/s on one core ({:.2} µs each), {:.0} records/s on {} cores (efficiency {:.0}%); median of {} repeats, {} build",
        r.records,
        r.schema_name,
        &r.schema_fingerprint[..12],
        r.records_per_s_per_core,
        r.median_us_per_record,
        r.records_per_s_all_cores,
        r.cores,
        r.parallel_efficiency * 100.0,
        r.repeats,
        r.build
    );
    if r.build == "debug" {
        println!("note: a debug build; measure with `cargo build --release -p ponte-sim`");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn a_small_run_reports_consistent_figures() {
        let r = encode(&EncodeBenchOptions { records: 300, repeats: 5, schema: "hardened".into(), seed: 7 }).unwrap();
        assert_eq!((r.records, r.repeats, r.per_core_runs.len()), (300, 5, 5));
        assert_eq!(r.published_clk_bits, 2048);
        assert_eq!(r.field_filters, 2);
        assert_eq!(r.mean_clk_fill, 0.5, "balanced filters are exactly half full");
        assert!(r.records_per_s_per_core > 0.0 && r.records_per_s_all_cores > 0.0);
        assert!(encode(&EncodeBenchOptions { repeats: 3, ..Default::default() }).is_err());
        assert!(synthetic_identities(0, 1).is_err());
    }
}
