//! `ponte-sim bench quality`: linkage quality of blocking + Fellegi–Sunter scoring against the
//! synthetic truth, in process.
//!
//! The pipeline is the federation's, without the network: the demo scenario's population is
//! generated, every entity's export is read through the node's importer with its own mapping and
//! encoded with the node's encoder (the `--schema` linkage schema, by default
//! `proto/schemas/default.toml`; a fixed benchmark secret); the coordinator's
//! [`LshIndex`] and [`TokenIndex`] propose candidate pairs; the Fellegi–Sunter model scores them —
//! once with the shipped parameters and once re-estimated on this data by EM; certain and probable
//! links are clustered with union-find, and the clusters are compared with the truth.
//!
//! Measured, for record pairs (two records are a true pair when the truth gives them the same
//! person; a record is one `(node_id, record_id)`, whatever its relationships):
//! - precision / recall / F1 of the **cross-entity** pairs (records of different entities) in
//!   the clusters — the headline figure; and of the **within-entity** pairs (duplicates);
//! - the same for the best single CLK Dice threshold (0.70 to 0.99 by 0.01) on the same
//!   candidates, clustered the same way — the anonlink-style baseline;
//! - pair completeness and reduction ratio of the blocking;
//! - the misses and false links, grouped by what differs between the two records, so that a
//!   reader sees *why* quality stops where it does.
//!
//! Bounds: 100 to [`MAX_PERSONS`] persons, at most [`MAX_RANDOM_PAIRS`] random pairs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, ensure};
use ponte_coordinator::blocking::{self, LshIndex, LshParams, TokenIndex};
use ponte_coordinator::linker::Band;
use ponte_coordinator::model::Token;
use ponte_coordinator::scoring::{self, ComparisonKind, EmOptions, Encoded, FsModel, Levels, PatternCounts, TrainingData};
use ponte_node::encode::Encoder;
use ponte_node::normalise::NormalisedIdentity;
use ponte_node::secret::LinkageSecret;
use ponte_proto::bits::{dice_words, to_words};
use ponte_proto::schema::{DEFAULT_SCHEMA_TOML, HARDENED_EXAMPLE_SCHEMA_TOML, LinkageSchema};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::{Value, json};

use crate::synth;

/// Most persons one run generates.
pub const MAX_PERSONS: usize = 200_000;
/// Most random pairs drawn for the u-probabilities.
pub const MAX_RANDOM_PAIRS: usize = 50_000_000;

/// `ponte-sim bench quality`.
#[derive(Debug, Clone, clap::Args)]
pub struct QualityBenchArgs {
    /// Persons in the synthetic population (the demo scenario).
    #[arg(long, default_value_t = 5000)]
    pub persons: usize,
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Linkage schema to encode with: `default` (proto/schemas/default.toml), `hardened`
    /// (proto/schemas/hardened.toml) or the path of a schema file. Its `[blocking]` section sets
    /// the LSH parameters unless the options below override them.
    #[arg(long, default_value = "default")]
    pub schema: String,
    /// LSH bits per key (K); default: the schema's `blocking.lsh_bits_per_key`.
    #[arg(long)]
    pub lsh_bits_per_key: Option<u32>,
    /// LSH tables (L).
    #[arg(long)]
    pub lsh_tables: Option<u32>,
    /// Most frequent CLK positions never sampled by the LSH.
    #[arg(long)]
    pub lsh_skip: Option<u32>,
    /// Random non-candidate pairs drawn for the u-probabilities.
    #[arg(long, default_value_t = 2_000_000)]
    pub random_pairs: usize,
    /// Write the model re-estimated on this data here (TOML, readable by the coordinator).
    #[arg(long)]
    pub write_model: Option<PathBuf>,
    /// Examples of misses and false links to list (by category counts are always given).
    #[arg(long, default_value_t = 0)]
    pub examples: usize,
    /// Write every candidate pair here as CSV (record indices, entities, Dice, comparison
    /// levels, probability under the re-estimated model, whether the truth says match), for
    /// analysis outside.
    #[arg(long)]
    pub dump_pairs: Option<PathBuf>,
    /// Re-estimate u in every EM iteration too (full EM) instead of once (Splink's approach).
    #[arg(long)]
    pub full_em: bool,
    /// Print one JSON object (otherwise pretty-printed JSON).
    #[arg(long)]
    pub json: bool,
}

impl Default for QualityBenchArgs {
    fn default() -> Self {
        QualityBenchArgs {
            persons: 5000,
            seed: 2026,
            schema: "default".into(),
            lsh_bits_per_key: None,
            lsh_tables: None,
            lsh_skip: None,
            random_pairs: 2_000_000,
            write_model: None,
            examples: 0,
            dump_pairs: None,
            full_em: false,
            json: true,
        }
    }
}

/// One imported record (first row of its `(node, record_id)`), encoded.
struct Record {
    node: usize,
    person: u32,
    identity: NormalisedIdentity,
    words: Vec<u64>,
    tokens: Vec<Token>,
    fields: Vec<(String, Vec<u64>)>,
}

impl Record {
    fn encoded(&self) -> Encoded<'_> {
        Encoded { clk: &self.words, tokens: &self.tokens, fields: &self.fields }
    }
}

/// A candidate pair (a < b, record indices) with its CLK Dice.
struct Candidate {
    a: u32,
    b: u32,
    dice: f64,
}

/// Union-find over record indices.
struct Clusters {
    parent: Vec<u32>,
}

impl Clusters {
    fn new(n: usize) -> Clusters {
        Clusters { parent: (0..n as u32).collect() }
    }
    fn find(&mut self, x: u32) -> u32 {
        let mut r = x;
        while self.parent[r as usize] != r {
            r = self.parent[r as usize];
        }
        let mut y = x;
        while self.parent[y as usize] != r {
            let next = self.parent[y as usize];
            self.parent[y as usize] = r;
            y = next;
        }
        r
    }
    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra.max(rb) as usize] = ra.min(rb);
        }
    }
}

/// Precision, recall and F1 of pairs.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct Quality {
    predicted: u64,
    correct: u64,
    truth: u64,
    precision: f64,
    recall: f64,
    f1: f64,
}

impl Quality {
    fn new(predicted: u64, correct: u64, truth: u64) -> Quality {
        let precision = if predicted == 0 { 1.0 } else { correct as f64 / predicted as f64 };
        let recall = if truth == 0 { 1.0 } else { correct as f64 / truth as f64 };
        let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
        Quality { predicted, correct, truth, precision, recall, f1 }
    }
}

fn c2(k: u64) -> u64 {
    k * k.saturating_sub(1) / 2
}

/// Cross-entity and within-entity pair quality of a clustering, counted combinatorially (a
/// cluster of k records holds k(k−1)/2 pairs; no enumeration, so a runaway cluster cannot blow
/// up the benchmark).
fn clustering_quality(records: &[Record], clusters: &mut Clusters) -> (Quality, Quality) {
    let mut per_cluster: HashMap<u32, u64> = HashMap::new();
    let mut per_cluster_node: HashMap<(u32, usize), u64> = HashMap::new();
    let mut per_cluster_person: HashMap<(u32, u32), u64> = HashMap::new();
    let mut per_cluster_person_node: HashMap<(u32, u32, usize), u64> = HashMap::new();
    let mut per_person: HashMap<u32, u64> = HashMap::new();
    let mut per_person_node: HashMap<(u32, usize), u64> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let c = clusters.find(i as u32);
        *per_cluster.entry(c).or_default() += 1;
        *per_cluster_node.entry((c, r.node)).or_default() += 1;
        *per_cluster_person.entry((c, r.person)).or_default() += 1;
        *per_cluster_person_node.entry((c, r.person, r.node)).or_default() += 1;
        *per_person.entry(r.person).or_default() += 1;
        *per_person_node.entry((r.person, r.node)).or_default() += 1;
    }
    let sum = |it: &mut dyn Iterator<Item = u64>| it.map(c2).sum::<u64>();
    let pred_all = sum(&mut per_cluster.values().copied());
    let pred_within = sum(&mut per_cluster_node.values().copied());
    let correct_all = sum(&mut per_cluster_person.values().copied());
    let correct_within = sum(&mut per_cluster_person_node.values().copied());
    let truth_all = sum(&mut per_person.values().copied());
    let truth_within = sum(&mut per_person_node.values().copied());
    (
        Quality::new(pred_all - pred_within, correct_all - correct_within, truth_all - truth_within),
        Quality::new(pred_within, correct_within, truth_within),
    )
}

/// Clusters of the candidates selected by `link`.
fn cluster(n: usize, candidates: &[Candidate], link: impl Fn(usize) -> bool) -> Clusters {
    let mut c = Clusters::new(n);
    for (i, p) in candidates.iter().enumerate() {
        if link(i) {
            c.union(p.a, p.b);
        }
    }
    c
}

fn pair(a: u32, b: u32) -> (u32, u32) {
    if a < b { (a, b) } else { (b, a) }
}

/// What differs between two identities, as a short label (`surname+birth_date:swap`).
fn differences(a: &NormalisedIdentity, b: &NormalisedIdentity) -> String {
    let mut d = Vec::new();
    if a.surname != b.surname {
        let alias = a.surname_alias.as_deref() == Some(&b.surname) || b.surname_alias.as_deref() == Some(&a.surname);
        d.push(if alias { "surname:alias" } else { "surname" });
    }
    if a.given_names != b.given_names {
        d.push(if a.given_names_compact() == b.given_names_compact() { "given:spacing" } else { "given" });
    }
    if a.sex != b.sex {
        d.push(if a.sex.is_none() || b.sex.is_none() { "sex:missing" } else { "sex" });
    }
    match (a.birth_date, b.birth_date) {
        (Some(x), Some(y)) if x != y => {
            d.push(if x.year == y.year && x.day == y.month && x.month == y.day {
                "birth_date:swap"
            } else if x.month == y.month && x.day == y.day {
                "birth_date:year"
            } else {
                "birth_date"
            });
        }
        (None, Some(_)) | (Some(_), None) => d.push("birth_date:missing"),
        _ => {}
    }
    if a.birthplace != b.birthplace {
        d.push(if a.birthplace.is_none() || b.birthplace.is_none() { "birthplace:missing" } else { "birthplace" });
    }
    if d.is_empty() { "identical".into() } else { d.join("+") }
}

fn cf_state(a: &NormalisedIdentity, b: &NormalisedIdentity) -> &'static str {
    match (&a.codice_fiscale, &b.codice_fiscale) {
        (Some(x), Some(y)) if x == y => "cf_agree",
        (Some(_), Some(_)) => "cf_disagree",
        _ => "cf_missing",
    }
}

/// The schema named by `--schema`: `default`, `hardened` or a file.
fn load_schema(which: &str) -> anyhow::Result<LinkageSchema> {
    let bundled = |text: &str, name: &str| {
        LinkageSchema::parse(text).map_err(|p| anyhow::anyhow!("the bundled {name} schema has problems: {}", p.join("; ")))
    };
    match which {
        "default" => bundled(DEFAULT_SCHEMA_TOML, "default"),
        "hardened" => bundled(HARDENED_EXAMPLE_SCHEMA_TOML, "hardened"),
        path => LinkageSchema::load(std::path::Path::new(path)).map_err(anyhow::Error::msg),
    }
}

/// Runs the benchmark and returns its JSON report.
pub fn run(args: QualityBenchArgs) -> anyhow::Result<Value> {
    ensure!((100..=MAX_PERSONS).contains(&args.persons), "--persons must be between 100 and {MAX_PERSONS}");
    ensure!(args.random_pairs <= MAX_RANDOM_PAIRS, "--random-pairs must be at most {MAX_RANDOM_PAIRS}");
    let started = Instant::now();
    let mut timings = BTreeMap::new();
    let mut lap = {
        let mut last = Instant::now();
        move |name: &'static str, timings: &mut BTreeMap<&'static str, f64>| {
            timings.insert(name, last.elapsed().as_secs_f64());
            last = Instant::now();
        }
    };

    // 1. Population, exports, import, encoding.
    let mut scenario = synth::scenario::demo_scenario(args.persons);
    scenario.seed = args.seed;
    let generated = synth::generate(&scenario);
    let truth: HashMap<(&str, &str), u32> =
        generated.truth.iter().map(|t| ((t.node_id.as_str(), t.record_id.as_str()), t.person_id)).collect();
    let schema = load_schema(&args.schema)?;
    let secret = LinkageSecret::from_bytes(1, [0x5a; 32]);
    let encoder = Encoder::new(&secret, &schema);
    let mut records = Vec::new();
    let mut rows_rejected = 0u64;
    let mut seen = HashSet::new();
    for (node, export) in generated.exports.iter().enumerate() {
        let (rows, report) = ponte_node::import::read_export(export.csv.as_slice(), &export.file_name, &export.import)
            .with_context(|| format!("reading {}", export.file_name))?;
        rows_rejected += report.rows_rejected;
        let firsts: Vec<_> = rows.into_iter().filter(|r| seen.insert((node, r.record_id.clone()))).collect();
        let encoded: Vec<Record> = firsts
            .into_par_iter()
            .map(|row| {
                let person = *truth
                    .get(&(export.node_id.as_str(), row.record_id.as_str()))
                    .ok_or_else(|| anyhow::anyhow!("record {} of {} is not in the truth", row.record_id, export.node_id))?;
                let e = encoder.encode(&row.identity);
                Ok(Record {
                    node,
                    person,
                    words: to_words(&e.clk),
                    tokens: e.tokens.iter().map(|(k, v)| Token { kind: *k as i32, value: *v }).collect(),
                    fields: e.field_filters.iter().map(|(n, f)| (n.clone(), to_words(f))).collect(),
                    identity: row.identity,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        records.extend(encoded);
    }
    let n = records.len();
    ensure!(n >= 2, "fewer than two records imported");
    let clk_bits = schema.published_clk_bits();
    let fill = records.iter().map(|r| r.words.iter().map(|w| w.count_ones()).sum::<u32>() as f64).sum::<f64>() / (n as f64 * clk_bits as f64);
    lap("generate_import_encode", &mut timings);

    // 2. Blocking: each record queries the indexes before it is inserted, so each pair once.
    let defaults = LshParams::from(&schema.blocking);
    let params = LshParams {
        bits_per_key: args.lsh_bits_per_key.unwrap_or(defaults.bits_per_key),
        tables: args.lsh_tables.unwrap_or(defaults.tables),
        skip_most_frequent: args.lsh_skip.unwrap_or(defaults.skip_most_frequent),
        ..defaults
    };
    let frequencies = blocking::bit_frequencies(records.iter().map(|r| r.words.as_slice()), clk_bits);
    let mut lsh = LshIndex::with_frequencies(params, clk_bits, &frequencies).map_err(anyhow::Error::msg)?;
    let mut tokens = TokenIndex::new();
    let mut candidate_set: HashSet<(u32, u32)> = HashSet::new();
    let mut from_lsh = 0u64;
    for (i, r) in records.iter().enumerate() {
        let by_lsh = lsh.candidates(&r.words);
        from_lsh += by_lsh.len() as u64;
        let compact: Vec<u64> = r.tokens.iter().map(blocking::compact_token).collect();
        for j in by_lsh.into_iter().chain(tokens.candidates(&compact)) {
            candidate_set.insert((j, i as u32));
        }
        lsh.insert(i as u32, &r.words);
        tokens.insert(i as u32, &compact);
    }
    let mut candidates: Vec<Candidate> = candidate_set
        .iter()
        .map(|&(a, b)| Candidate { a, b, dice: dice_words(&records[a as usize].words, &records[b as usize].words) })
        .collect();
    candidates.sort_by_key(|c| (c.a, c.b));
    let lsh_memory = lsh.memory_bytes();
    drop(lsh);
    lap("blocking", &mut timings);

    // Truth pairs, for completeness and the miss analysis.
    let mut by_person: HashMap<u32, Vec<u32>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        by_person.entry(r.person).or_default().push(i as u32);
    }
    let mut true_pairs: Vec<(u32, u32)> = Vec::new();
    for members in by_person.values() {
        for (x, &a) in members.iter().enumerate() {
            for &b in &members[x + 1..] {
                true_pairs.push(pair(a, b));
            }
        }
    }
    true_pairs.sort_unstable();
    let cross = |&(a, b): &(u32, u32)| records[a as usize].node != records[b as usize].node;
    let found = |p: &(u32, u32)| candidate_set.contains(p);
    let true_cross: Vec<(u32, u32)> = true_pairs.iter().copied().filter(cross).collect();
    let pc_all = true_pairs.iter().filter(|p| found(p)).count() as f64 / true_pairs.len().max(1) as f64;
    let pc_cross = true_cross.iter().filter(|p| found(p)).count() as f64 / true_cross.len().max(1) as f64;
    let rr = blocking::reduction_ratio_within(n as u64, candidates.len() as u64);
    let all_pairs = n as f64 * (n as f64 - 1.0) / 2.0;

    // 3. Comparison vectors of the candidates, and of random pairs outside them (for u).
    let shipped = FsModel::default_model();
    let levels: Vec<Levels> = candidates
        .par_iter()
        .map(|c| shipped.compare(&records[c.a as usize].encoded(), &records[c.b as usize].encoded()))
        .collect();
    let mut data = TrainingData { outside_pairs: all_pairs - candidates.len() as f64, ..Default::default() };
    for l in &levels {
        data.candidates.add(l.clone());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x0071_7561_6c69_7479);
    let draws = args.random_pairs.min((data.outside_pairs as usize).saturating_mul(4));
    let sampled: Vec<(u32, u32)> = (0..draws)
        .filter_map(|_| {
            let a = rng.random_range(0..n as u32);
            let b = rng.random_range(0..n as u32);
            (a != b && !candidate_set.contains(&pair(a, b))).then(|| pair(a, b))
        })
        .collect();
    let outside: Vec<Levels> =
        sampled.par_iter().map(|&(a, b)| shipped.compare(&records[a as usize].encoded(), &records[b as usize].encoded())).collect();
    let mut counts = PatternCounts::new();
    for l in outside {
        counts.add(l);
    }
    data.outside = counts;
    lap("compare", &mut timings);

    // 4. The shipped model (λ for this many records) and the one re-estimated on this data.
    let shipped_here = shipped.for_records(n as u64);
    let (estimated, em) = scoring::reestimate(&shipped, &data, n as u64, &EmOptions { fix_u: !args.full_em, ..Default::default() });
    let diff = scoring::compare_models(&shipped_here, &estimated, 0.5);
    if let Some(path) = &args.write_model {
        std::fs::write(path, estimated.to_toml()).with_context(|| format!("writing {}", path.display()))?;
    }
    lap("estimate", &mut timings);

    if let Some(path) = &args.dump_pairs {
        let mut out = String::from("a,b,node_a,node_b,dice,levels,probability,is_match\n");
        for (c, l) in candidates.iter().zip(&levels) {
            let (ra, rb) = (&records[c.a as usize], &records[c.b as usize]);
            let lv: Vec<String> = l.iter().map(u8::to_string).collect();
            out.push_str(&format!(
                "{},{},{},{},{:.4},{},{:.6e},{}\n",
                c.a, c.b, ra.node, rb.node, c.dice, lv.join(":"), estimated.match_probability(l), (ra.person == rb.person) as u8
            ));
        }
        std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?;
    }

    // 5. Links, clusters, quality.
    let evaluate = |model: &FsModel| {
        let bands: Vec<Option<Band>> = levels.iter().map(|l| model.band(model.match_probability(l))).collect();
        let strong = |i: usize| matches!(bands[i], Some(Band::Certain | Band::Probable));
        let mut clusters = cluster(n, &candidates, strong);
        let (q_cross, q_within) = clustering_quality(&records, &mut clusters);
        let mut per_band: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for (i, c) in candidates.iter().enumerate() {
            let name = match bands[i] {
                Some(Band::Certain) => "certain",
                Some(Band::Probable) => "probable",
                Some(Band::Possible) => "possible",
                None => continue,
            };
            let e = per_band.entry(name).or_default();
            e.0 += 1;
            e.1 += (records[c.a as usize].person == records[c.b as usize].person) as u64;
        }
        (q_cross, q_within, clusters, per_band, bands)
    };
    let (q_cross, q_within, mut clusters, per_band, bands) = evaluate(&estimated);
    let (s_cross, s_within, _, s_per_band, _) = evaluate(&shipped_here);

    // Best single CLK threshold on the same candidates, clustered the same way.
    let mut best = (0.0, Quality::default(), Quality::default());
    let mut sweep = Vec::new();
    for step in 70..=99 {
        let t = step as f64 / 100.0;
        let mut c = cluster(n, &candidates, |i| candidates[i].dice >= t - 1e-12);
        let (qc, qw) = clustering_quality(&records, &mut c);
        sweep.push(json!({"threshold": t, "f1": qc.f1, "precision": qc.precision, "recall": qc.recall}));
        if qc.f1 > best.1.f1 {
            best = (t, qc, qw);
        }
    }
    // How the strong-link cut (the `probable` threshold) trades precision for recall.
    let probabilities: Vec<f64> = levels.iter().map(|l| estimated.match_probability(l)).collect();
    let mut probable_sweep = Vec::new();
    for cut in [0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999] {
        let mut c = cluster(n, &candidates, |i| probabilities[i] >= cut);
        let (qc, qw) = clustering_quality(&records, &mut c);
        probable_sweep.push(json!({"probable": cut, "f1": qc.f1, "precision": qc.precision, "recall": qc.recall, "f1_within_entity": qw.f1}));
    }
    lap("link_and_evaluate", &mut timings);

    // 6. Why: misses (true cross-entity pairs split between clusters) and false links.
    let index_of: HashMap<(u32, u32), usize> = candidates.iter().enumerate().map(|(i, c)| ((c.a, c.b), i)).collect();
    let mut by_cf: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for &(a, b) in &true_cross {
        let e = by_cf.entry(cf_state(&records[a as usize].identity, &records[b as usize].identity)).or_default();
        e.0 += 1;
        e.1 += (clusters.find(a) == clusters.find(b)) as u64;
    }
    let recall_by_cf: BTreeMap<&str, Value> =
        by_cf.into_iter().map(|(k, (t, f))| (k, json!({"true_pairs": t, "found": f, "recall": f as f64 / t.max(1) as f64}))).collect();
    let mut miss_kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut miss_examples = Vec::new();
    for &(a, b) in &true_cross {
        if clusters.find(a) == clusters.find(b) {
            continue;
        }
        let (ra, rb) = (&records[a as usize], &records[b as usize]);
        let dice = dice_words(&ra.words, &rb.words);
        let (state, prob) = match index_of.get(&(a, b)) {
            None => ("not_a_candidate".to_string(), None),
            Some(&i) => (
                match bands[i] {
                    Some(Band::Possible) => "possible".to_string(),
                    None => "none".to_string(),
                    Some(_) => "linked".to_string(),
                },
                Some(estimated.match_probability(&levels[i])),
            ),
        };
        let kind = format!("{} | {} | {}", state, cf_state(&ra.identity, &rb.identity), differences(&ra.identity, &rb.identity));
        *miss_kinds.entry(kind.clone()).or_default() += 1;
        if miss_examples.len() < args.examples {
            miss_examples.push(json!({
                "kind": kind, "dice": dice, "probability": prob,
                "a": format!("{:?}", ra.identity), "b": format!("{:?}", rb.identity),
            }));
        }
    }
    let mut false_kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut false_examples = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        if !matches!(bands[i], Some(Band::Certain | Band::Probable)) {
            continue;
        }
        let (ra, rb) = (&records[c.a as usize], &records[c.b as usize]);
        if ra.person == rb.person {
            continue;
        }
        let kind = format!(
            "{} | {} | {}",
            if ra.node == rb.node { "within" } else { "cross" },
            cf_state(&ra.identity, &rb.identity),
            differences(&ra.identity, &rb.identity)
        );
        *false_kinds.entry(kind.clone()).or_default() += 1;
        if false_examples.len() < args.examples {
            false_examples.push(json!({
                "kind": kind, "dice": c.dice, "probability": estimated.match_probability(&levels[i]),
                "a": format!("{:?}", ra.identity), "b": format!("{:?}", rb.identity),
            }));
        }
    }
    // Non-matches that look like matches on the CLK (Dice ≥ 0.85, no agreeing token): what
    // separates them from the person they are not.
    let mut look_alike_kinds: BTreeMap<String, u64> = BTreeMap::new();
    for (i, c) in candidates.iter().enumerate() {
        let (ra, rb) = (&records[c.a as usize], &records[c.b as usize]);
        if c.dice < 0.85 || ra.person == rb.person || levels[i].iter().skip(1).any(|l| *l == scoring::TOKEN_AGREE) {
            continue;
        }
        let kind = format!("{} | {}", cf_state(&ra.identity, &rb.identity), differences(&ra.identity, &rb.identity));
        *look_alike_kinds.entry(kind).or_default() += 1;
    }
    let top = |m: BTreeMap<String, u64>| {
        let mut v: Vec<(String, u64)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(25);
        v.into_iter().map(|(k, c)| json!({"kind": k, "pairs": c})).collect::<Vec<_>>()
    };

    let dice_weights: Vec<Value> = estimated
        .comparisons
        .iter()
        .filter(|c| c.kind == ComparisonKind::ClkDice)
        .flat_map(|c| (0..c.levels()).map(move |l| json!({"level": c.level_name(l), "m": c.m[l], "u": c.u[l], "weight": c.weight(l)})))
        .collect();
    // The same records through the coordinator's own linker (shipped model, the schema's
    // blocking, one bulk batch): what a live federation of this population would answer.
    let live = {
        let mut lp = ponte_coordinator::linker::LinkerParams::for_schema(&schema, FsModel::default_model());
        lp.lsh = params;
        let mut linker = ponte_coordinator::linker::Linker::new(lp).map_err(anyhow::Error::msg)?;
        let encs: Vec<ponte_coordinator::model::EpochEncoding> = records
            .iter()
            .map(|r| ponte_coordinator::model::EpochEncoding {
                epoch: 1,
                clk: r.words.iter().flat_map(|w| w.to_le_bytes()).collect(),
                tokens: r.tokens.clone(),
            })
            .collect();
        let batch: Vec<ponte_coordinator::linker::Publish<'_>> = encs
            .iter()
            .enumerate()
            .map(|(i, e)| ponte_coordinator::linker::Publish { id: i as u64, revision: 1, encoding: e, node: 0 })
            .collect();
        linker.publish_batch(&batch)?;
        let mut c = Clusters::new(n);
        let mut first: HashMap<u64, u32> = HashMap::new();
        for i in 0..n as u32 {
            if let Some(cid) = linker.cluster_of(u64::from(i)) {
                let f = *first.entry(cid).or_insert(i);
                c.union(f, i);
            }
        }
        let (qc, qw) = clustering_quality(&records, &mut c);
        json!({"f1": qc.f1, "precision": qc.precision, "recall": qc.recall, "f1_within_entity": qw.f1, "clusters": linker.cluster_count()})
    };
    let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
    let schema_report = json!({"name": schema.name, "source": args.schema, "fingerprint": schema.fingerprint().short()});
    let mut report = json!({
        "benchmark": "quality",
        "persons": args.persons,
        "seed": args.seed,
        "records": n,
        "rows_rejected": rows_rejected,
        "entities": generated.exports.len(),
        "true_pairs": true_pairs.len(),
        "true_pairs_cross_entity": true_cross.len(),
        "f1": q_cross.f1,
        "precision": q_cross.precision,
        "recall": q_cross.recall,
        "recall_by_codice_fiscale": recall_by_cf,
        "f1_within_entity": q_within.f1,
        "precision_within_entity": q_within.precision,
        "recall_within_entity": q_within.recall,
        "f1_best_clk_threshold": best.1.f1,
        "best_clk_threshold": best.0,
        "precision_best_clk_threshold": best.1.precision,
        "recall_best_clk_threshold": best.1.recall,
        "f1_within_entity_best_clk_threshold": best.2.f1,
        "shipped_model": {
            "f1": s_cross.f1, "precision": s_cross.precision, "recall": s_cross.recall,
            "f1_within_entity": s_within.f1, "links_by_band": s_per_band,
        },
        "estimated_model": {
            "f1": q_cross.f1, "precision": q_cross.precision, "recall": q_cross.recall,
            "links_by_band": per_band, "em": em, "lambda": estimated.lambda, "clk_levels": dice_weights,
            "changes_from_shipped": diff,
        },
        "pair_completeness": pc_all,
        "pair_completeness_cross_entity": pc_cross,
        "reduction_ratio": rr,
        "candidate_pairs": candidates.len(),
        "lsh_candidates_returned": from_lsh,
        "lsh": {
            "bits_per_key": params.bits_per_key, "tables": params.tables, "skip_most_frequent": params.skip_most_frequent,
            "memory_bytes": lsh_memory, "bytes_per_record": lsh_memory as f64 / n as f64,
        },
        "mean_clk_fill": fill,
        "random_pairs_sampled": sampled.len(),
        "misses": top(miss_kinds),
        "false_links": top(false_kinds),
        "look_alike_non_matches": top(look_alike_kinds),
        "miss_examples": miss_examples,
        "false_link_examples": false_examples,
        "threshold_sweep": sweep,
        "probable_threshold_sweep": probable_sweep,
        "timings_s": timings,
        "seconds": started.elapsed().as_secs_f64(),
        "cores": cores,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    });
    report["schema"] = schema_report;
    report["live_linker"] = live;
    Ok(report)
}

/// Prints the report: one line of JSON with `json`, indented otherwise.
pub fn print(report: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{}", serde_json::to_string_pretty(report)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clustering_quality_counts_pairs() {
        let rec = |node, person| Record {
            node,
            person,
            identity: NormalisedIdentity::default(),
            words: vec![],
            tokens: vec![],
            fields: vec![],
        };
        // Person 1 at nodes 0, 1, 1; person 2 at node 0.
        let records = vec![rec(0, 1), rec(1, 1), rec(1, 1), rec(0, 2)];
        let mut c = Clusters::new(4);
        c.union(0, 1);
        c.union(1, 3); // a false link to person 2
        let (cross, within) = clustering_quality(&records, &mut c);
        // Cluster {0,1,3}: cross pairs (0,1), (1,3) predicted; (0,1) correct. Truth cross: (0,1), (0,2).
        assert_eq!((cross.predicted, cross.correct, cross.truth), (2, 1, 2));
        // Within: (0,3) predicted, wrong; truth within: (1,2), missed.
        assert_eq!((within.predicted, within.correct, within.truth), (1, 0, 1));
    }

    /// The full benchmark at the default size, in release: prints the JSON report.
    /// `cargo test --release -p ponte-sim --lib bench_quality -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn quality_report() {
        let persons = std::env::var("PONTE_BENCH_PERSONS").ok().and_then(|p| p.parse().ok()).unwrap_or(5000);
        let seed = std::env::var("PONTE_BENCH_SEED").ok().and_then(|p| p.parse().ok()).unwrap_or(2026);
        let examples = std::env::var("PONTE_BENCH_EXAMPLES").ok().and_then(|p| p.parse().ok()).unwrap_or(0);
        let write_model = std::env::var("PONTE_BENCH_WRITE_MODEL").ok().map(PathBuf::from);
        let dump_pairs = std::env::var("PONTE_BENCH_DUMP").ok().map(PathBuf::from);
        let env_u32 = |k: &str| std::env::var(k).ok().and_then(|p| p.parse().ok());
        let report = run(QualityBenchArgs {
            persons,
            seed,
            schema: std::env::var("PONTE_BENCH_SCHEMA").unwrap_or_else(|_| "default".into()),
            examples,
            write_model,
            dump_pairs,
            full_em: std::env::var("PONTE_BENCH_FULL_EM").is_ok(),
            lsh_bits_per_key: env_u32("PONTE_BENCH_K"),
            lsh_tables: env_u32("PONTE_BENCH_L"),
            lsh_skip: env_u32("PONTE_BENCH_SKIP"),
            ..Default::default()
        })
        .unwrap();
        print(&report, std::env::var("PONTE_BENCH_PRETTY").is_err()).unwrap();
    }
}
