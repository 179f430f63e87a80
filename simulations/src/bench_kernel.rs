//! `ponte-sim bench kernel`: throughput of the coordinator's Dice kernel
//! ([`ponte_coordinator::kernel`]) for every variant this CPU can run.
//!
//! Builds seeded random filters (`--bits` long, each bit set with probability `--density`) and
//! plants near-copies of some of them, so that the threshold selects real pairs. Then, in every
//! repeat and for every variant in turn (interleaved, so a slow moment of the machine hits all
//! variants alike), it times
//! - **one query against all** `--filters` filters ([`dice_above`]), for `--queries` queries;
//! - **tiled all-pairs**, `--tile-a` × `--tile-b` filters ([`dice_all_pairs`]);
//!
//! each on one core (a one-thread rayon pool) and on all cores (the queries, or the kernel's own
//! tiles, spread over rayon's global pool), and reports the **median** of the repeats in
//! comparisons (filter pairs) per second. Every timed result is checked against the scalar
//! variant's, so a figure always belongs to correct output.
//!
//! Bounds: see [`KernelBenchArgs`]; memory is about `--filters` × `--bits` / 8 bytes.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context, ensure};
use clap::Args;
use ponte_coordinator::kernel::{CandidatePair, FilterMatrix, KernelKind, dice_above, dice_all_pairs};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::{Value, json};

/// Fewest timed repeats: a median of fewer says little.
pub const MIN_REPEATS: usize = 5;
pub const MAX_REPEATS: usize = 101;
/// Most filters one run builds.
pub const MAX_FILTERS: usize = 2_000_000;
/// Most candidate pairs an all-pairs run may select before it stops (a too low `--threshold`).
pub const MAX_PAIRS: usize = 10_000_000;

/// What `ponte-sim bench kernel` measures.
#[derive(Args, Debug, Clone)]
pub struct KernelBenchArgs {
    /// Filters that each query is compared with (1,000 to 2,000,000).
    #[arg(long, default_value_t = 100_000)]
    pub filters: usize,
    /// Queries per one-query measurement (1 to 10,000).
    #[arg(long, default_value_t = 50)]
    pub queries: usize,
    /// Filters on side A of the all-pairs measurement (8 to 100,000).
    #[arg(long, default_value_t = 2_000)]
    pub tile_a: usize,
    /// Filters on side B of the all-pairs measurement (8 to --filters; the first of them).
    #[arg(long, default_value_t = 20_000)]
    pub tile_b: usize,
    /// Filter length in bits (a multiple of 64, 64 to 16384).
    #[arg(long, default_value_t = 1024)]
    pub bits: usize,
    /// Probability that a bit is set (strictly between 0 and 1).
    #[arg(long, default_value_t = 0.45)]
    pub density: f64,
    /// Dice threshold of the selections (0 to 1).
    #[arg(long, default_value_t = 0.8)]
    pub threshold: f32,
    /// Timed repeats per measurement (5 to 101); the median is reported.
    #[arg(long, default_value_t = 7)]
    pub repeats: usize,
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Only this variant (and the scalar one, the reference); default: every variant available.
    #[arg(long)]
    pub kernel: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark and prints it (one JSON object with `--json`, else a short table).
pub fn run_and_print(args: KernelBenchArgs) -> anyhow::Result<()> {
    let json = args.json;
    let report = run(args)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn check(a: &KernelBenchArgs) -> anyhow::Result<Vec<KernelKind>> {
    ensure!((1_000..=MAX_FILTERS).contains(&a.filters), "--filters must be between 1000 and {MAX_FILTERS}");
    ensure!((1..=10_000).contains(&a.queries), "--queries must be between 1 and 10000");
    ensure!((8..=100_000).contains(&a.tile_a), "--tile-a must be between 8 and 100000");
    ensure!((8..=a.filters).contains(&a.tile_b), "--tile-b must be between 8 and --filters ({})", a.filters);
    ensure!(a.bits.is_multiple_of(64) && (64..=16_384).contains(&a.bits), "--bits must be a multiple of 64 between 64 and 16384");
    ensure!(a.density > 0.0 && a.density < 1.0, "--density must be strictly between 0 and 1");
    ensure!((0.0..=1.0).contains(&a.threshold), "--threshold must be between 0 and 1");
    ensure!((MIN_REPEATS..=MAX_REPEATS).contains(&a.repeats), "--repeats must be between {MIN_REPEATS} and {MAX_REPEATS}");
    let available = KernelKind::available();
    Ok(match &a.kernel {
        None => available,
        Some(name) => {
            let kind = KernelKind::from_name(name).with_context(|| {
                let names: Vec<_> = KernelKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown kernel {name:?}; known: {}", names.join(", "))
            })?;
            ensure!(kind.is_available(), "kernel {name} is not available on this CPU");
            let mut kinds = vec![KernelKind::Scalar, kind];
            kinds.dedup();
            kinds
        }
    })
}

/// The test data: `m` for one-query scans (its first `tile_b` rows are B), `a` for queries and
/// side A. Rows `10·i + 3` of `m` are near-copies of row `i` of `a` (about 6% of the set bits
/// cleared: Dice ≈ 0.97), for `i` below a tenth of `tile_b` and of `tile_a`.
struct Data {
    m: FilterMatrix,
    a: FilterMatrix,
    b: FilterMatrix,
}

fn build(args: &KernelBenchArgs) -> anyhow::Result<Data> {
    let words = args.bits / 64;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let cut = (args.density * 2f64.powi(32)) as u64;
    let random_filter = |rng: &mut ChaCha8Rng| -> Vec<u64> {
        (0..words).map(|_| (0..64).fold(0u64, |w, bit| w | (u64::from(u64::from(rng.random::<u32>()) < cut) << bit))).collect()
    };
    let mut a = FilterMatrix::with_capacity(words, args.tile_a)?;
    for _ in 0..args.tile_a {
        a.push(&random_filter(&mut rng))?;
    }
    let planted = (args.tile_a / 10).min(args.tile_b / 10);
    let mut m = FilterMatrix::with_capacity(words, args.filters)?;
    for j in 0..args.filters {
        let f = if j % 10 == 3 && j / 10 < planted {
            a.row(j / 10).iter().map(|&w| w & random_mask(&mut rng)).collect()
        } else {
            random_filter(&mut rng)
        };
        m.push(&f)?;
    }
    let mut b = FilterMatrix::with_capacity(words, args.tile_b)?;
    for j in 0..args.tile_b {
        b.push(m.row(j))?;
    }
    Ok(Data { m, a, b })
}

/// A word with 15 bits in 16 set on average (clears about 6% of a filter's bits when ANDed).
fn random_mask(rng: &mut ChaCha8Rng) -> u64 {
    !(rng.random::<u64>() & rng.random::<u64>() & rng.random::<u64>() & rng.random::<u64>())
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// All selections of the queries, in query order.
fn one_query_all(kind: KernelKind, d: &Data, queries: usize, threshold: f32) -> anyhow::Result<Vec<Vec<(u32, f32)>>> {
    (0..queries)
        .into_par_iter()
        .map(|q| {
            let mut out = Vec::new();
            dice_above(kind, d.a.row(q), &d.m, threshold, &mut out)?;
            Ok(out)
        })
        .collect()
}

fn all_pairs(kind: KernelKind, d: &Data, threshold: f32) -> anyhow::Result<Vec<CandidatePair>> {
    dice_all_pairs(kind, &d.a, &d.b, threshold, MAX_PAIRS).context("all-pairs (is --threshold too low?)")
}

/// Runs the benchmark and returns its report (see the module documentation).
pub fn run(args: KernelBenchArgs) -> anyhow::Result<Value> {
    let kinds = check(&args)?;
    let d = build(&args)?;
    let queries = args.queries.min(d.a.len());
    let cores = rayon::current_num_threads();
    let one_core = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;

    // References (and warm-up): the scalar variant's results.
    let ref_one = one_query_all(KernelKind::Scalar, &d, queries, args.threshold)?;
    let ref_pairs = all_pairs(KernelKind::Scalar, &d, args.threshold)?;
    let one_query_comparisons = (queries * d.m.len()) as f64;
    let all_pairs_comparisons = (d.a.len() * d.b.len()) as f64;

    // runs[kind] = [one query one core, one query all cores, all-pairs one core, all-pairs all cores]
    let mut runs: BTreeMap<KernelKind, [Vec<f64>; 4]> = kinds.iter().map(|&k| (k, Default::default())).collect();
    for _ in 0..args.repeats {
        for &kind in &kinds {
            let r = runs.get_mut(&kind).expect("every kind has runs");
            for (slot, pool) in [(0, Some(&one_core)), (1, None)] {
                let start = Instant::now();
                let got = match pool {
                    Some(p) => p.install(|| one_query_all(kind, &d, queries, args.threshold))?,
                    None => one_query_all(kind, &d, queries, args.threshold)?,
                };
                r[slot].push(one_query_comparisons / start.elapsed().as_secs_f64());
                ensure!(black_box(got) == ref_one, "{kind}: one-query selections differ from the scalar variant's");
            }
            for (slot, pool) in [(2, Some(&one_core)), (3, None)] {
                let start = Instant::now();
                let got = match pool {
                    Some(p) => p.install(|| all_pairs(kind, &d, args.threshold))?,
                    None => all_pairs(kind, &d, args.threshold)?,
                };
                r[slot].push(all_pairs_comparisons / start.elapsed().as_secs_f64());
                ensure!(black_box(got) == ref_pairs, "{kind}: all-pairs selections differ from the scalar variant's");
            }
        }
    }

    let medians: BTreeMap<KernelKind, [f64; 4]> =
        runs.iter().map(|(&k, r)| (k, [median(&r[0]), median(&r[1]), median(&r[2]), median(&r[3])])).collect();
    let (&best, best_m) = medians.iter().max_by(|x, y| x.1[2].total_cmp(&y.1[2])).expect("at least the scalar variant");
    let scalar_m = medians[&KernelKind::Scalar];
    let round = |x: f64| x.round();
    let variants: serde_json::Map<String, Value> = medians
        .iter()
        .map(|(k, m)| {
            let r = &runs[k];
            let v = json!({
                "one_query": { "per_core": round(m[0]), "all_cores": round(m[1]), "per_core_runs": r[0].iter().map(|x| x.round()).collect::<Vec<_>>() },
                "all_pairs": { "per_core": round(m[2]), "all_cores": round(m[3]), "per_core_runs": r[2].iter().map(|x| x.round()).collect::<Vec<_>>() },
                "ratio_to_scalar": (m[2] / scalar_m[2] * 100.0).round() / 100.0,
            });
            (k.name().to_string(), v)
        })
        .collect();
    Ok(json!({
        "benchmark": "kernel",
        "kernel": best.name(),
        "comparisons_per_s_per_core": round(best_m[2]),
        "scalar_comparisons_per_s_per_core": round(scalar_m[2]),
        "ratio_to_scalar": (best_m[2] / scalar_m[2] * 100.0).round() / 100.0,
        "cores": cores,
        "comparisons_per_s_all_cores": round(best_m[3]),
        "one_query_comparisons_per_s_per_core": round(best_m[0]),
        "one_query_comparisons_per_s_all_cores": round(best_m[1]),
        "measure": "comparisons (filter pairs) per second; per-core figures on a one-thread rayon pool; headline figures are tiled all-pairs, medians of the repeats",
        "variants": variants,
        "available_kernels": KernelKind::available().iter().map(|k| k.name()).collect::<Vec<_>>(),
        "cpu_features": cpu_features(),
        "bits": args.bits,
        "density": args.density,
        "threshold": (f64::from(args.threshold) * 1e6).round() / 1e6,
        "filters": d.m.len(),
        "queries": queries,
        "tile_a": d.a.len(),
        "tile_b": d.b.len(),
        "selected_one_query": ref_one.iter().map(Vec::len).sum::<usize>(),
        "selected_all_pairs": ref_pairs.len(),
        "matrix_heap_bytes": d.m.heap_bytes(),
        "repeats": args.repeats,
        "seed": args.seed,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    }))
}

fn cpu_features() -> Vec<&'static str> {
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => { $(if std::arch::is_x86_feature_detected!($f) { found.push($f); })* };
        }
        probe!("popcnt", "avx2", "avx512f", "avx512vpopcntdq");
    }
    found
}

fn print_table(r: &Value) {
    println!(
        "Dice kernel, {} bits, density {}, threshold {}: {} queries × {} filters, all-pairs {} × {}; median of {} repeats, {} build, {} cores",
        r["bits"], r["density"], r["threshold"], r["queries"], r["filters"], r["tile_a"], r["tile_b"], r["repeats"],
        r["build"].as_str().unwrap_or("?"), r["cores"]
    );
    println!("{:<18} {:>16} {:>16} {:>16} {:>16} {:>9}", "variant", "1-query/core", "1-query/all", "all-pairs/core", "all-pairs/all", "×scalar");
    if let Some(vs) = r["variants"].as_object() {
        for (name, v) in vs {
            let m = |path: [&str; 2]| v[path[0]][path[1]].as_f64().unwrap_or(0.0) / 1e6;
            println!(
                "{:<18} {:>14.1} M {:>14.1} M {:>14.1} M {:>14.1} M {:>9}",
                name,
                m(["one_query", "per_core"]),
                m(["one_query", "all_cores"]),
                m(["all_pairs", "per_core"]),
                m(["all_pairs", "all_cores"]),
                v["ratio_to_scalar"]
            );
        }
    }
    println!(
        "best: {} at {:.1} M comparisons/s per core",
        r["kernel"].as_str().unwrap_or("?"),
        r["comparisons_per_s_per_core"].as_f64().unwrap_or(0.0) / 1e6
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: KernelBenchArgs,
    }

    fn small() -> KernelBenchArgs {
        Cli::parse_from(["bench", "--filters", "1000", "--queries", "3", "--tile-a", "40", "--tile-b", "200", "--repeats", "5"]).args
    }

    #[test]
    fn a_small_run_reports_every_available_variant_and_finds_the_planted_pairs() {
        let r = run(small()).unwrap();
        for k in KernelKind::available() {
            assert!(r["variants"][k.name()]["all_pairs"]["per_core"].as_f64().unwrap() > 0.0, "{k}");
        }
        // Four near-copies of A's rows are planted in B (a tenth of 40); each query has its own.
        assert_eq!(r["selected_all_pairs"], 4);
        assert_eq!(r["selected_one_query"], 3);
        assert!(r["comparisons_per_s_per_core"].as_f64().unwrap() >= r["scalar_comparisons_per_s_per_core"].as_f64().unwrap());
    }

    #[test]
    fn out_of_bounds_arguments_are_refused() {
        let mut a = small();
        a.repeats = 3;
        assert!(run(a).unwrap_err().to_string().contains("--repeats"));
        let mut a = small();
        a.bits = 1000;
        assert!(run(a).unwrap_err().to_string().contains("--bits"));
        let mut a = small();
        a.kernel = Some("sse9".into());
        assert!(run(a).unwrap_err().to_string().contains("unknown kernel"));
    }
}
