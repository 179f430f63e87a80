//! `ponte-sim run`: linkage quality and cost of encoding profiles on a synthetic population,
//! through Ponte's real pipeline; and `ponte-sim link` ([`link()`]): the same pipeline over a
//! researcher's own exports.
//!
//! # What `run` does
//!
//! The scenario (`lecce` by default) is generated from the seed; every entity's export is read by
//! the node's importer with the entity's own mapping (the node's normaliser), and each record —
//! the first importable row of a `(entity, record_id)`; rows marked `never_encode` are left out,
//! as the node leaves them out — is encoded by the node's [`Encoder`] under the profile's linkage
//! schema and a linkage secret derived from the seed. All encodings go to the coordinator's own
//! [`Linker`] in one batch (LSH and token blocking, Fellegi–Sunter scoring with the shipped
//! model and the prior set for all the records, clustering), in process. Everything is
//! reproducible from the seed: the same arguments give the same figures, timings and memory
//! aside.
//!
//! # The figures ([`ProfileQuality`])
//!
//! A record is one `(entity, record_id)`; two records are a true pair when the truth gives them
//! the same person. True pairs are counted among the records imported (a row the importer
//! rejects is not a record).
//! - `cross`, `within`, `all`: the **operating point**. A pair is linked when the linker put both
//!   records in the same cluster — the connected components of certain and probable links.
//!   *Possible* links are ignored: the coordinator never merges on them (it shows them apart,
//!   to be verified), so they are not links here either. `cross` counts pairs of records of
//!   different entities, `within` pairs of one entity (duplicates), `all` both.
//! - `pair_completeness`: share of all true pairs that the blocking proposes — they meet in at
//!   least one LSH table or share an exact token, with the linker's own LSH positions.
//! - `reduction_ratio`: `1 − candidates / (n(n−1)/2)` over the same candidate pairs.
//! - `curve`: precision and recall of **pairs** (not clusters) at each threshold of
//!   [`metrics::CURVE_THRESHOLDS`]: a pair counts as linked when it is a blocking candidate whose
//!   match probability — the linker's own scorer, for this many records — reaches the threshold.
//!   All pairs, cross- and within-entity; recall is over all true pairs, so pairs the blocking
//!   misses are misses at every threshold. (The linker itself does not score LSH candidates below
//!   the Dice at which "possible" becomes unreachable; those pairs matter only at thresholds
//!   below the "possible" band.)
//! - `encode_secs`: importing (reading, normalising) and encoding every export; `link_secs`:
//!   the linker's batch (blocking, scoring, clustering). One timed run each, on all cores.
//! - `rss_bytes`: this process's resident memory right after linking, the linker alive (the
//!   population and the encodings are held too).
//!
//! With `--scaling`, each profile also links a random subset (the same for every profile, drawn
//! from the seed) of 25 %, 50 % and 100 % of the records with a fresh linker: a
//! [`ScalingPoint`] each, whose `encode_secs` is encoding only (the normalised identities are
//! reused).
//!
//! With `--federation DIR`, the profiles are measured on a live federation instead (the
//! `federation` submodule says how): only the cross-entity figures of the answers, `link_secs` and the
//! coordinator's memory can be measured there; the rest stays 0.

mod federation;
mod link;
pub mod metrics;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use ponte_coordinator::blocking::{self, LshIndex, TokenIndex, compact_token};
use ponte_coordinator::linker::{Linker, LinkerParams, Publish};
use ponte_coordinator::model::{EpochEncoding, Token};
use ponte_coordinator::scoring::FsModel;
use ponte_node::config::ImportConfig;
use ponte_node::encode::Encoder;
use ponte_node::import::{FileError, ImportReport};
use ponte_node::normalise::NormalisedIdentity;
use ponte_node::secret::LinkageSecret;
use ponte_proto::bits::{dice_words, to_words};
use ponte_proto::schema::{DEFAULT_SCHEMA_TOML, HARDENED_EXAMPLE_SCHEMA_TOML, LinkageSchema};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

pub use link::{EntityImport, LinkArgs, LinkQuality, LinkSummary, link, print_link};
use metrics::{CurveCounts, Member};

use crate::evaluation::{Evaluation, ProfileQuality, ScalingPoint};
use crate::synth;

/// Fewest persons a run generates.
pub const MIN_PERSONS: usize = 10;
/// Most persons a run generates.
pub const MAX_PERSONS: usize = 1_000_000;
/// Most persons of a run against a live federation (every open relationship is asked about,
/// one question each).
pub const MAX_FEDERATION_PERSONS: usize = 100_000;
/// Most profiles one run compares.
pub const MAX_PROFILES: usize = 16;
/// Shares of the records linked by `--scaling`.
pub const SCALING_SHARES: [f64; 3] = [0.25, 0.5, 1.0];

/// `ponte-sim run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Scenario: `lecce` (the research default: ASL, three Comuni, an ATS, an RSA provider),
    /// `demo` (the demo's four entities) or a scenario file (`ponte-sim scenario` prints one).
    /// Its population size and seed are the options below.
    #[arg(default_value = "lecce")]
    pub scenario: String,
    /// Persons in the synthetic population (10 to 1,000,000; 100,000 with --federation).
    #[arg(long, default_value_t = 2000)]
    pub persons: usize,
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Encoding profile, repeatable: `default` (proto/schemas/default.toml), `hardened`
    /// (proto/schemas/hardened.toml), `unhardened` (the default schema with field-level filters
    /// on surname and given names and no hardening: the attacks' baseline) or the path of a
    /// linkage schema file.
    #[arg(long = "schema", value_name = "PROFILE", default_values = ["default", "hardened"])]
    pub schemas: Vec<String>,
    /// Also link 25 %, 50 % and 100 % of the records to see how time grows.
    #[arg(long)]
    pub scaling: bool,
    /// Measure on a live federation kept in DIR (a coordinator and one node per entity as
    /// processes over mutual TLS, as the demo runs them) instead of in process.
    #[arg(long, value_name = "DIR")]
    pub federation: Option<PathBuf>,
    /// Print the evaluation as one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl Default for RunArgs {
    fn default() -> Self {
        RunArgs {
            scenario: "lecce".into(),
            persons: 2000,
            seed: 2026,
            schemas: vec!["default".into(), "hardened".into()],
            scaling: false,
            federation: None,
            json: false,
        }
    }
}

impl RunArgs {
    /// The command line that reproduces this run.
    pub fn command(&self) -> String {
        let mut c = format!("ponte-sim run {} --persons {} --seed {}", quote(&self.scenario), self.persons, self.seed);
        for s in &self.schemas {
            c.push_str(&format!(" --schema {}", quote(s)));
        }
        if self.scaling {
            c.push_str(" --scaling");
        }
        if let Some(dir) = &self.federation {
            c.push_str(&format!(" --federation {}", quote(&dir.to_string_lossy())));
        }
        c
    }
}

fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:".contains(c)) { s.to_string() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

/// An encoding profile: a name for the report and the linkage schema it encodes with.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub schema: LinkageSchema,
}

/// The profile named by `--schema`: `default`, `hardened`, `unhardened` or a schema file (named
/// by its file stem).
pub fn load_profile(which: &str) -> anyhow::Result<Profile> {
    let bundled = |text: &str, name: &str| {
        LinkageSchema::parse(text).map_err(|p| anyhow::anyhow!("the bundled {name} schema has problems: {}", p.join("; ")))
    };
    let (name, schema) = match which {
        "default" => ("default".to_string(), bundled(DEFAULT_SCHEMA_TOML, "default")?),
        "hardened" => ("hardened".to_string(), bundled(HARDENED_EXAMPLE_SCHEMA_TOML, "hardened")?),
        // The same baseline the attacks measure: field-level filters, no hardening.
        "unhardened" => ("unhardened".to_string(), crate::attack::unhardened_schema()),
        path => {
            let p = Path::new(path);
            ensure!(
                p.is_file(),
                "--schema {path:?}: neither a built-in profile (default, hardened, unhardened) nor an existing schema file"
            );
            let schema = LinkageSchema::load(p).map_err(|e| anyhow::anyhow!("--schema {path}: {e}"))?;
            let name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.to_string());
            (name, schema)
        }
    };
    Ok(Profile { name, schema })
}

/// The benchmark secret of a seed: fixed, so that runs are reproducible (the data are synthetic).
pub(crate) fn seeded_secret(seed: u64) -> LinkageSecret {
    let mut key = [0x5au8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    LinkageSecret::from_bytes(1, key)
}

/// One record: the first importable row of its record id, normalised.
#[derive(Debug, Clone)]
pub(crate) struct ImportedRecord {
    pub record_id: String,
    pub identity: NormalisedIdentity,
}

/// Reads an export through the node's importer: its records (first importable row per record
/// id, rows never to be encoded left out) and the importer's report.
pub(crate) fn import_records(input: impl Read, file: &str, cfg: &ImportConfig) -> Result<(Vec<ImportedRecord>, ImportReport), FileError> {
    let (rows, report) = ponte_node::import::read_export(input, file, cfg)?;
    let mut seen = HashSet::new();
    let records = rows
        .into_iter()
        .filter(|r| !r.never_encode && seen.insert(r.record_id.clone()))
        .map(|r| ImportedRecord { record_id: r.record_id, identity: r.identity })
        .collect();
    Ok((records, report))
}

/// Encodes identities as the node publishes them (CLK and exact tokens, under the encoder's
/// epoch), in parallel, in order.
pub(crate) fn encode_all(encoder: &Encoder, identities: &[&NormalisedIdentity]) -> Vec<EpochEncoding> {
    identities
        .par_iter()
        .map(|id| {
            let e = encoder.encode(id);
            EpochEncoding {
                epoch: encoder.epoch,
                clk: e.clk,
                tokens: e.tokens.iter().map(|(k, v)| Token { kind: *k as i32, value: *v }).collect(),
            }
        })
        .collect()
}

/// The coordinator's linker for `schema` with the shipped model, holding `encodings` published
/// as one batch (item `i` is `encodings[i]`).
pub(crate) fn link_encodings(schema: &LinkageSchema, encodings: &[EpochEncoding]) -> anyhow::Result<Linker> {
    ensure!(
        encodings.len() as u64 <= ponte_coordinator::linker::MAX_ITEM_ID,
        "{} records; the linker takes at most {}",
        encodings.len(),
        ponte_coordinator::linker::MAX_ITEM_ID
    );
    let mut linker = Linker::new(LinkerParams::for_schema(schema, FsModel::default_model())).map_err(anyhow::Error::msg)?;
    let batch: Vec<Publish<'_>> =
        encodings.iter().enumerate().map(|(i, e)| Publish { id: i as u64, revision: 1, encoding: e, node: 0 }).collect();
    linker.publish_batch(&batch)?;
    Ok(linker)
}

/// The cluster of each of the linker's `n` items (an item without one gets an id of its own).
pub(crate) fn clusters_of(linker: &Linker, n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| linker.cluster_of(i).unwrap_or(u64::MAX - i)).collect()
}

/// Filters sampled for bit frequencies when the linker chooses its LSH positions (the linker's
/// own `FREQUENCY_SAMPLE`).
const LINKER_FREQUENCY_SAMPLE: usize = 100_000;

/// The LSH index the linker builds when one batch of these filters is published into an empty
/// epoch: positions chosen from the batch's bit frequencies (sampled, every ⌈n / 100,000⌉-th
/// filter) when the schema skips frequent positions and the batch holds `ADAPT_LSH_AT` items or more;
/// otherwise from the seed alone. The unit test `replica_blocking_agrees_with_the_linker` holds
/// the two together.
fn linker_lsh(params: &LinkerParams, words: &[Vec<u64>]) -> anyhow::Result<LshIndex> {
    let n = words.len();
    let mut lsh = if params.lsh.skip_most_frequent > 0 && n >= ponte_coordinator::linker::ADAPT_LSH_AT {
        let step = n.div_ceil(LINKER_FREQUENCY_SAMPLE).max(1);
        let freq = blocking::bit_frequencies(words.iter().step_by(step).map(Vec::as_slice), params.clk_bits);
        LshIndex::with_frequencies(params.lsh, params.clk_bits, &freq)
    } else {
        LshIndex::new(params.lsh, params.clk_bits)
    }
    .map_err(anyhow::Error::msg)?;
    let items: Vec<(u32, &[u64])> = words.iter().enumerate().map(|(i, w)| (i as u32, w.as_slice())).collect();
    lsh.insert_many(&items);
    Ok(lsh)
}

/// The blocking of the linker, rebuilt over the same filters, so that its candidate pairs can be
/// listed and scored one by one (the linker keeps only its links).
struct Blocking {
    words: Vec<Vec<u64>>,
    compact: Vec<Vec<u64>>,
    lsh: LshIndex,
    tokens: TokenIndex,
}

impl Blocking {
    fn new(params: &LinkerParams, encodings: &[EpochEncoding]) -> anyhow::Result<Blocking> {
        let words: Vec<Vec<u64>> = encodings.par_iter().map(|e| to_words(&e.clk)).collect();
        let compact: Vec<Vec<u64>> = encodings.iter().map(|e| e.tokens.iter().map(compact_token).collect()).collect();
        let lsh = linker_lsh(params, &words)?;
        let mut tokens = TokenIndex::new();
        for (i, c) in compact.iter().enumerate() {
            tokens.insert(i as u32, c);
        }
        Ok(Blocking { words, compact, lsh, tokens })
    }

    /// The candidates `j < i` of record `i`: they meet in an LSH table or share a token.
    fn candidates_before(&self, i: usize) -> Vec<u32> {
        let mut c = self.lsh.candidates(&self.words[i]);
        c.extend(self.tokens.candidates(&self.compact[i]));
        c.retain(|&j| (j as usize) < i);
        c.sort_unstable();
        c.dedup();
        c
    }
}

/// What the blocking proposed and how its candidates score.
#[derive(Debug, Clone, Default, PartialEq)]
struct BlockingFigures {
    candidates: u64,
    true_candidates: u64,
    curve: CurveCounts,
}

fn blocking_figures(linker: &Linker, encodings: &[EpochEncoding], members: &[Member], pb: &ProgressBar) -> anyhow::Result<BlockingFigures> {
    let params = linker.params();
    let n = encodings.len();
    let b = Blocking::new(params, encodings)?;
    let scorer = params.model.compact_scorer(params.prior_records.unwrap_or_else(|| ponte_coordinator::linker::prior_size(n as u64)));
    pb.set_length(n as u64);
    pb.set_position(0);
    let figures = (0..n)
        .into_par_iter()
        .fold(BlockingFigures::default, |mut acc, i| {
            for j in b.candidates_before(i) {
                let j = j as usize;
                let dice = dice_words(&b.words[i], &b.words[j]);
                let p = scorer.probability(dice, &b.compact[i], &b.compact[j]);
                let is_true = members[i].person == members[j].person;
                acc.candidates += 1;
                acc.true_candidates += u64::from(is_true);
                acc.curve.add(p, is_true);
            }
            pb.inc(1);
            acc
        })
        .reduce(BlockingFigures::default, |a, b| BlockingFigures {
            candidates: a.candidates + b.candidates,
            true_candidates: a.true_candidates + b.true_candidates,
            curve: a.curve.merge(&b.curve),
        });
    Ok(figures)
}

/// The population of a scenario as records: entity, true person and normalised identity.
struct Population {
    members: Vec<Member>,
    identities: Vec<NormalisedIdentity>,
}

/// Imports every export of `generated` through the node's importer.
fn import_population(generated: &synth::Generated) -> anyhow::Result<Population> {
    let truth: HashMap<(&str, &str), u32> =
        generated.truth.iter().map(|t| ((t.node_id.as_str(), t.record_id.as_str()), t.person_id)).collect();
    let mut pop = Population { members: Vec::new(), identities: Vec::new() };
    for (entity, export) in generated.exports.iter().enumerate() {
        let (records, _) = import_records(export.csv.as_slice(), &export.file_name, &export.import)
            .with_context(|| format!("reading {}", export.file_name))?;
        for r in records {
            let person = *truth
                .get(&(export.node_id.as_str(), r.record_id.as_str()))
                .with_context(|| format!("record {} of {} is not in the truth", r.record_id, export.node_id))?;
            pop.members.push(Member { entity: entity as u32, person: u64::from(person), cluster: 0 });
            pop.identities.push(r.identity);
        }
    }
    ensure!(pop.members.len() >= 2, "fewer than two records imported");
    Ok(pop)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A spinner (or nothing, without `progress`).
pub(crate) fn spinner(progress: bool, msg: impl Into<String>) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    pb.enable_steady_tick(Duration::from_millis(120));
    pb.set_message(msg.into());
    pb
}

/// A bar over `len` steps (or nothing, without `progress`).
pub(crate) fn bar(progress: bool, len: u64, msg: impl Into<String>) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:<32} [{bar:30}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(msg.into());
    pb
}

/// Measures one profile in process; also returns the scaling points when asked.
fn measure_profile(
    profile: &Profile,
    generated: &synth::Generated,
    secret: &LinkageSecret,
    scaling: Option<u64>,
    progress: bool,
) -> anyhow::Result<(ProfileQuality, Vec<ScalingPoint>)> {
    let name = &profile.name;
    let encoder = Encoder::new(secret, &profile.schema);

    let pb = spinner(progress, format!("{name}: importing and encoding"));
    let started = Instant::now();
    let mut pop = import_population(generated)?;
    let refs: Vec<&NormalisedIdentity> = pop.identities.iter().collect();
    let encodings = encode_all(&encoder, &refs);
    let encode_secs = secs(started.elapsed());
    pb.finish_and_clear();

    let pb = spinner(progress, format!("{name}: linking {} records", encodings.len()));
    let started = Instant::now();
    let linker = link_encodings(&profile.schema, &encodings)?;
    let link_secs = secs(started.elapsed());
    let rss_bytes = crate::bench_scale::rss_bytes();
    pb.finish_and_clear();

    for (m, c) in pop.members.iter_mut().zip(clusters_of(&linker, encodings.len())) {
        m.cluster = c;
    }
    let scores = metrics::cluster_scores(&pop.members);
    let pb = bar(progress, encodings.len() as u64, format!("{name}: blocking and scores"));
    let figures = blocking_figures(&linker, &encodings, &pop.members, &pb)?;
    pb.finish_and_clear();
    drop(linker);

    let n = encodings.len() as u64;
    let true_all = scores.all.true_pairs;
    let quality = ProfileQuality {
        profile: name.clone(),
        schema_fingerprint: profile.schema.fingerprint().short(),
        records: n,
        cross: scores.cross,
        within: scores.within,
        all: scores.all,
        pair_completeness: if true_all == 0 { 1.0 } else { figures.true_candidates as f64 / true_all as f64 },
        reduction_ratio: blocking::reduction_ratio_within(n, figures.candidates),
        encode_secs,
        link_secs,
        rss_bytes,
        curve: figures.curve.points(true_all),
    };
    drop(encodings);

    let mut points = Vec::new();
    if let Some(seed) = scaling {
        let mut order: Vec<usize> = (0..pop.identities.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x7363_616c_696e_6721));
        let pb = bar(progress, SCALING_SHARES.len() as u64, format!("{name}: scaling"));
        for share in SCALING_SHARES {
            let k = ((order.len() as f64 * share).ceil() as usize).clamp(2, order.len());
            let mut subset = order[..k].to_vec();
            subset.sort_unstable();
            let ids: Vec<&NormalisedIdentity> = subset.iter().map(|&i| &pop.identities[i]).collect();
            let started = Instant::now();
            let encodings = encode_all(&encoder, &ids);
            let encode_secs = secs(started.elapsed());
            let started = Instant::now();
            let linker = link_encodings(&profile.schema, &encodings)?;
            let link_secs = secs(started.elapsed());
            drop(linker);
            points.push(ScalingPoint { profile: name.clone(), records: k as u64, encode_secs, link_secs });
            pb.inc(1);
        }
        pb.finish_and_clear();
    }
    Ok((quality, points))
}

/// Checks the arguments and loads the profiles.
fn profiles_of(args: &RunArgs) -> anyhow::Result<Vec<Profile>> {
    let max = if args.federation.is_some() { MAX_FEDERATION_PERSONS } else { MAX_PERSONS };
    ensure!(
        (MIN_PERSONS..=max).contains(&args.persons),
        "--persons must be between {MIN_PERSONS} and {max}{}",
        if args.federation.is_some() { " with --federation" } else { "" }
    );
    ensure!(!args.schemas.is_empty(), "name at least one profile with --schema (default, hardened, unhardened or a schema file)");
    ensure!(args.schemas.len() <= MAX_PROFILES, "at most {MAX_PROFILES} profiles per run");
    if args.scaling && args.federation.is_some() {
        bail!("--scaling measures the linker in process; run it without --federation");
    }
    let profiles = args.schemas.iter().map(|s| load_profile(s)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut names = HashSet::new();
    for p in &profiles {
        ensure!(names.insert(p.name.clone()), "two profiles are named {:?}; give each --schema once (files by distinct names)", p.name);
    }
    Ok(profiles)
}

/// Runs the evaluation: the qualities of every profile, and the scaling points with `--scaling`
/// (the attacks are left to [`crate::attack`]).
pub fn run(args: &RunArgs, progress: bool) -> anyhow::Result<Evaluation> {
    let profiles = profiles_of(args)?;
    let mut scenario = synth::scenario::load_scenario(&args.scenario, Some(args.persons)).map_err(anyhow::Error::msg)?;
    scenario.seed = args.seed;
    let pb = spinner(progress, format!("generating the {} scenario ({} persons)", scenario.name, args.persons));
    let generated = synth::try_generate(&scenario).map_err(anyhow::Error::msg)?;
    pb.finish_and_clear();
    let secret = seeded_secret(args.seed);

    // A built-in scenario by the name it was chosen by (`demo`), a file by the name inside it.
    let builtin = synth::scenario::SCENARIOS.iter().any(|(n, _)| *n == args.scenario);
    let mut ev = Evaluation {
        scenario: if builtin { args.scenario.clone() } else { scenario.name.clone() },
        seed: args.seed,
        persons: args.persons as u64,
        command: args.command(),
        ..Default::default()
    };
    if let Some(dir) = &args.federation {
        ev.qualities = federation::measure(dir, &generated, &profiles, &secret, progress)?;
        return Ok(ev);
    }
    for profile in &profiles {
        let (quality, points) = measure_profile(profile, &generated, &secret, args.scaling.then_some(args.seed), progress)?;
        ev.qualities.push(quality);
        ev.scaling.extend(points);
    }
    Ok(ev)
}

/// Prints the evaluation: one line of JSON with `json`, tables for a person otherwise.
pub fn print(ev: &Evaluation, json: bool) {
    if json {
        println!("{}", serde_json::to_string(ev).unwrap_or_default());
        return;
    }
    println!("Scenario {}, {} persons, seed {}  ({})", ev.scenario, ev.persons, ev.seed, ev.command);
    println!();
    println!(
        "{:<12} {:>12} {:>8}  {:>21}  {:>21}  {:>6} {:>7} {:>8} {:>9} {:>8} {:>8}",
        "profile", "fingerprint", "records", "cross P / R / F1", "within P / R / F1", "all F1", "PC", "RR", "encode s", "link s", "RSS MiB"
    );
    for q in &ev.qualities {
        let prf = |s: &crate::evaluation::Scores| format!("{:.3} / {:.3} / {:.3}", s.precision, s.recall, s.f1);
        println!(
            "{:<12} {:>12} {:>8}  {:>21}  {:>21}  {:>6.3} {:>7.4} {:>8.5} {:>9.2} {:>8.2} {:>8.1}",
            q.profile,
            q.schema_fingerprint,
            q.records,
            prf(&q.cross),
            prf(&q.within),
            q.all.f1,
            q.pair_completeness,
            q.reduction_ratio,
            q.encode_secs,
            q.link_secs,
            q.rss_bytes as f64 / (1024.0 * 1024.0)
        );
    }
    if ev.command.contains(" --federation ") {
        println!(
            "\nlive federation: cross = relationships at other entities in the certain/probable answers vs the truth as the \
             policy discloses it; link s = the nodes' publish; RSS = the coordinator's. The other figures cannot be measured \
             from the answers and are 0."
        );
    } else {
        println!(
            "\ncross/within/all: pairs in one cluster (certain and probable links; possible links are never merged); \
             PC/RR: pair completeness and reduction ratio of the blocking"
        );
    }
    if ev.qualities.iter().any(|q| !q.curve.is_empty()) {
        println!("\nPrecision / recall of the scored candidate pairs across the match-probability threshold:");
        let mut head = format!("{:>10}", "threshold");
        for q in &ev.qualities {
            head.push_str(&format!("  {:>17}", q.profile));
        }
        println!("{head}");
        let thresholds: Vec<f64> = ev.qualities.iter().find(|q| !q.curve.is_empty()).map(|q| q.curve.iter().map(|p| p.threshold).collect()).unwrap_or_default();
        for t in thresholds {
            let mut line = format!("{t:>10}");
            for q in &ev.qualities {
                match q.curve.iter().find(|p| p.threshold == t) {
                    Some(p) => line.push_str(&format!("  {:>8.4} / {:<6.4}", p.precision, p.recall)),
                    None => line.push_str(&format!("  {:>17}", "—")),
                }
            }
            println!("{line}");
        }
    }
    if !ev.scaling.is_empty() {
        println!("\nScaling:");
        println!("{:<12} {:>9} {:>10} {:>10}", "profile", "records", "encode s", "link s");
        for s in &ev.scaling {
            println!("{:<12} {:>9} {:>10.3} {:>10.3}", s.profile, s.records, s.encode_secs, s.link_secs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ponte_coordinator::linker::Band;

    fn small_population(persons: usize, seed: u64) -> synth::Generated {
        let mut s = synth::scenario::demo_scenario(persons);
        s.seed = seed;
        synth::generate(&s)
    }

    /// The candidate pairs listed by the rebuilt blocking, scored by the linker's scorer, give
    /// exactly the linker's own links (with their bands); and the rebuilt LSH tables meet where
    /// the linker's do. If the linker changes how it builds its tables, this fails, and
    /// `linker_lsh` must follow.
    #[test]
    fn replica_blocking_agrees_with_the_linker() {
        let generated = small_population(150, 7);
        let pop = import_population(&generated).unwrap();
        for which in ["default", "hardened"] {
            let profile = load_profile(which).unwrap();
            let encoder = Encoder::new(&seeded_secret(7), &profile.schema);
            let refs: Vec<&NormalisedIdentity> = pop.identities.iter().collect();
            let encodings = encode_all(&encoder, &refs);
            let linker = link_encodings(&profile.schema, &encodings).unwrap();
            let params = linker.params().clone();
            let b = Blocking::new(&params, &encodings).unwrap();
            let scorer = params.model.compact_scorer(ponte_coordinator::linker::prior_size(encodings.len() as u64));
            let mut mine = Vec::new();
            for i in 0..encodings.len() {
                for j in b.candidates_before(i) {
                    let j = j as usize;
                    let dice = dice_words(&b.words[i], &b.words[j]);
                    if let Some(band) = scorer.band(dice, &b.compact[i], &b.compact[j]) {
                        mine.push((j as u64, i as u64, band));
                    }
                }
            }
            mine.sort();
            let theirs = linker.links();
            assert!(theirs.iter().any(|l| l.2 == Band::Certain), "{which}: the population has links");
            assert_eq!(mine, theirs, "{which}: the rebuilt blocking and scoring differ from the linker's");
            // Every pair of a few hundred records: the LSH collisions agree.
            for i in 0..encodings.len().min(300) {
                let cands: HashSet<u32> = b.lsh.candidates(&b.words[i]).into_iter().collect();
                for j in 0..i {
                    assert_eq!(
                        cands.contains(&(j as u32)),
                        linker.lsh_collide(1, &b.words[i], &b.words[j]),
                        "{which}: LSH collision of {i} and {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn profiles_load_by_name_and_unhardened_has_no_hardening() {
        let d = load_profile("default").unwrap();
        let u = load_profile("unhardened").unwrap();
        let h = load_profile("hardened").unwrap();
        assert!(!u.schema.hardening.any());
        assert!(h.schema.hardening.any());
        assert_eq!(u.schema.clk_bits, d.schema.clk_bits);
        assert_ne!(h.schema.fingerprint(), d.schema.fingerprint());
        let e = load_profile("no-such-profile.toml").unwrap_err().to_string();
        assert!(e.contains("neither a built-in profile"), "{e}");
    }

    #[test]
    fn bad_run_arguments_are_refused_before_any_work() {
        let too_few = RunArgs { persons: 5, ..Default::default() };
        assert!(run(&too_few, false).unwrap_err().to_string().contains("--persons"));
        let twice = RunArgs { schemas: vec!["default".into(), "default".into()], ..Default::default() };
        assert!(run(&twice, false).unwrap_err().to_string().contains("give each --schema once"));
        let both = RunArgs { scaling: true, federation: Some("x".into()), ..Default::default() };
        assert!(run(&both, false).unwrap_err().to_string().contains("--scaling"));
        let none = RunArgs { schemas: vec![], ..Default::default() };
        assert!(run(&none, false).unwrap_err().to_string().contains("at least one profile"));
    }

    #[test]
    fn the_command_reproduces_the_arguments() {
        let a = RunArgs { schemas: vec!["default".into(), "my schema.toml".into()], scaling: true, ..Default::default() };
        assert_eq!(
            a.command(),
            "ponte-sim run lecce --persons 2000 --seed 2026 --schema default --schema 'my schema.toml' --scaling"
        );
    }

    /// The figures at 2,000 persons, default vs hardened, for the record:
    /// `cargo test --release -p ponte-sim --lib run::tests::figures -- --ignored --nocapture`
    /// (`PONTE_RUN_PERSONS`, `PONTE_RUN_SCALING=1` to change them).
    #[test]
    #[ignore]
    fn figures() {
        let persons = std::env::var("PONTE_RUN_PERSONS").ok().and_then(|p| p.parse().ok()).unwrap_or(2000);
        let args = RunArgs { persons, scaling: std::env::var("PONTE_RUN_SCALING").is_ok(), ..Default::default() };
        let ev = run(&args, false).unwrap();
        print(&ev, false);
        println!("{}", serde_json::to_string_pretty(&ev).unwrap());
    }
}
