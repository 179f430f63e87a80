//! `ponte-sim attack`: the published re-identification attacks on Bloom-filter encodings, run by
//! a curious coordinator against Ponte's encoding profiles (PPRL.md, "Attacks").
//!
//! # The setting
//!
//! The attacker holds the **encoded database** — every record's published CLK and field-level
//! filters, as the coordinator stores them, without the linkage secret — and a **plaintext
//! reference population** (a voter list, a telephone book) that shares a configurable share of
//! its persons with the encoded one. It knows everything public: the normaliser, the q-gram
//! scheme and the linkage schema (features, k, hardening settings), not the key.
//!
//! - The encoded side is the chosen scenario's population (`lecce` by default; [`crate::synth`]), every entity's export
//!   read through the node's importer (so records carry the realistic typos and gaps) and
//!   encoded with the node's [`Encoder`] under a linkage secret derived from the seed.
//! - The reference holds as many persons as the encoded side has: `overlap · N` of the encoded
//!   persons and `(1 − overlap) · N` persons of another generation (another seed, the persons in
//!   care there first), each with its *true* identity normalised by the node's normaliser.
//!
//! # The attacks
//!
//! - **`frequency`** (after Christen et al.): identical filters are counted, and so are the
//!   plaintext values the filter encodes; both are ranked by count and the i-th filter is taken to
//!   be the i-th value — only at ranks where both rankings are distinctive (the counts above and
//!   below differ by at least `min_frequency_gap`, relatively) and both counts are at least 2. On
//!   a CLK the "value" is the tuple of every feature the schema hashes; a salted feature's value
//!   goes with its year (equal names born in different years have different filters).
//! - **`pattern-mining`** (Christen, Ranbaduge, Vatsalan, Schnell, PAKDD 2017 / TKDE 2018): the
//!   bit positions of frequent plaintext items (bigrams of names, whole tokens such as a year)
//!   are mined as frequent bit patterns, conditionally (the [`mining`] module); each filter's
//!   items are then the identified items whose positions it holds, and the filter is given the
//!   reference value with the most similar item set (Dice ≥ `dice_threshold`, no other value as
//!   close). On a CLK every schema feature's items are mined, and the surname and the given
//!   names are re-identified separately from their features' items.
//!
//! The attacker reads the (public) schema. A salted feature's items are (year of birth, q-gram)
//! pairs, as the encoder hashes them — the reference holds the years — and on a CLK the years
//! (an unsalted feature) are looked for first, each identified year's filters then being mined
//! on their own. `--salt-blind` models the published attacker instead, who mines the unsalted
//! q-grams whatever the schema says. Rule 90, BLIP and balancing are not modelled: the attacker
//! mines the plain items and finds what survives of them.
//!
//! # What counts
//!
//! A record's truth is its *person's* true normalised value (a typo'd record re-identified as
//! the person's real surname counts as re-identified). Per outcome:
//! - `values_targeted`: distinct true values among the encoded records (for CLKs: surnames plus
//!   given names);
//! - `values_reidentified`: values the attack assigned to at least one record, correctly for more
//!   than half of the records it assigned them to;
//! - `records_reidentified`: records with a correct value (for CLKs: surname or given names).
//!
//! Deterministic: the same arguments give the same outcomes (except `secs`). Filters published
//! identically by two profiles (the `unhardened` CLK is the unsalted default's) are attacked once.
//!
//! Bounds: [`MIN_PERSONS`] to [`MAX_PERSONS`] persons, at most [`MAX_PROFILES`] profiles;
//! filters are encoded in chunks of [`ENCODE_CHUNK`] records and kept as bit columns, one
//! profile at a time.

mod frequency;
mod mining;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use anyhow::{Context, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use ponte_node::encode::{Encoder, bigrams, feature_values};
use ponte_node::normalise::dates::DateFormat;
use ponte_node::normalise::{NormalisedIdentity, RawIdentity, Sex};
use ponte_node::secret::LinkageSecret;
use ponte_proto::schema::{DEFAULT_SCHEMA_TOML, HARDENED_EXAMPLE_SCHEMA_TOML, Hardening, LinkageSchema, Tokenizer};
use rand::seq::SliceRandom;
use rand::RngCore;
use rayon::prelude::*;
use serde::Serialize;

use crate::evaluation::AttackOutcome;
use crate::synth;

/// Fewest persons one run generates.
pub const MIN_PERSONS: usize = 100;
/// Most persons one run generates.
pub const MAX_PERSONS: usize = 200_000;
/// Most profiles one run attacks.
pub const MAX_PROFILES: usize = 16;
/// Records encoded at once: bounds the encodings held before they become bit columns.
pub const ENCODE_CHUNK: usize = 8192;
/// The profiles attacked unless told otherwise.
pub const DEFAULT_PROFILES: [&str; 3] = ["unhardened", "default", "hardened"];
/// Field-level filter length (before hardening) of the `unhardened` profile: the hardened
/// example's.
pub const UNHARDENED_FIELD_FILTER_BITS: u32 = 1024;

/// The attack names, as in [`AttackOutcome::attack`].
pub const FREQUENCY: &str = "frequency";
pub const PATTERN_MINING: &str = "pattern-mining";
/// The encoding names, as in [`AttackOutcome::encoding`].
pub const RECORD_LEVEL: &str = "record-level";
pub const FIELD_LEVEL: &str = "field-level";

/// Features whose items re-identify the surname of a CLK.
const SURNAME_FEATURES: &[&str] = &["surname", "surname_first_token", "surname_alias"];
/// Features whose items re-identify the given names of a CLK.
const GIVEN_NAME_FEATURES: &[&str] = &["given_names", "given_name_first", "given_name_canonical"];
/// Fewest occurrences for a filter or value to take part in frequency alignment.
const FREQUENCY_MIN_COUNT: u32 = 2;

/// `ponte-sim attack`.
#[derive(Debug, Clone, clap::Args)]
pub struct AttackArgs {
    /// Scenario whose population is encoded: `lecce` (the research default), `demo` or a
    /// scenario file, as `ponte-sim run` takes it.
    #[arg(long, default_value = "lecce")]
    pub scenario: String,
    /// Persons in the synthetic population whose records are encoded.
    #[arg(long, default_value_t = 5000)]
    pub persons: usize,
    /// Seed of the populations, of the linkage secret and of the reference's draw.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Share (0 to 1) of the encoded persons that are also in the attacker's plaintext reference.
    #[arg(long, default_value_t = 0.8)]
    pub overlap: f64,
    /// Encoding profiles to attack, comma-separated: `unhardened` (the default schema with
    /// field-level filters on surname and given names, no hardening), `default`
    /// (proto/schemas/default.toml), `hardened` (proto/schemas/hardened.toml) or schema files.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_PROFILES.map(String::from))]
    pub profiles: Vec<String>,
    /// Encodings to attack, comma-separated: `record-level` (the CLK), `field-level` (every
    /// field-level filter the profile publishes).
    #[arg(long, value_delimiter = ',', default_values_t = [RECORD_LEVEL.to_string(), FIELD_LEVEL.to_string()])]
    pub encodings: Vec<String>,
    /// Frequency attack: least relative difference between a rank's count and its neighbours'
    /// (on both sides) for the rank to be aligned.
    #[arg(long, default_value_t = 0.1)]
    pub min_frequency_gap: f64,
    /// Pattern mining: least Dice similarity of item sets for a filter to be given a value.
    #[arg(long, default_value_t = 0.8)]
    pub dice_threshold: f64,
    /// Model the published attacker, who ignores salting: it mines the unsalted q-grams. By
    /// default the attacker reads the (public) schema and mines salted features per year of
    /// birth, which its reference holds.
    #[arg(long)]
    pub salt_blind: bool,
    /// Print one JSON array (otherwise a table).
    #[arg(long)]
    pub json: bool,
}

impl Default for AttackArgs {
    fn default() -> Self {
        AttackArgs {
            scenario: "lecce".into(),
            persons: 5000,
            seed: 2026,
            overlap: 0.8,
            profiles: DEFAULT_PROFILES.map(String::from).to_vec(),
            encodings: vec![RECORD_LEVEL.to_string(), FIELD_LEVEL.to_string()],
            min_frequency_gap: 0.1,
            dice_threshold: 0.8,
            salt_blind: false,
            json: false,
        }
    }
}

/// An outcome with what the attack *assigned*, right or wrong (its precision).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttackFinding {
    pub outcome: AttackOutcome,
    /// Distinct values the attack assigned to at least one record.
    pub values_assigned: u64,
    /// Records it assigned a value to.
    pub records_assigned: u64,
    /// Pattern mining: plaintext items whose bit positions it identified (0 for frequency).
    pub items_identified: u64,
}

/// Runs every attack on every profile (in the order given) and returns the outcomes: per
/// profile the CLK first, then each field-level filter in schema order (those of the
/// `encodings` asked for); per encoding `frequency`, then `pattern-mining`.
pub fn run(args: &AttackArgs, progress: bool) -> anyhow::Result<Vec<AttackOutcome>> {
    Ok(run_detailed(args, progress)?.into_iter().map(|f| f.outcome).collect())
}

/// [`run`], with what each attack assigned.
pub fn run_detailed(args: &AttackArgs, progress: bool) -> anyhow::Result<Vec<AttackFinding>> {
    check(args)?;
    // A schema file is named by its file stem, as `ponte-sim run` names it.
    let display = |p: &str| match p {
        "unhardened" | "default" | "hardened" => p.to_string(),
        path => std::path::Path::new(path).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.to_string()),
    };
    let schemas: Vec<(String, LinkageSchema)> =
        args.profiles.iter().map(|p| Ok((display(p), load_profile(p)?))).collect::<anyhow::Result<_>>()?;
    let wanted = |encoding: &str| args.encodings.iter().any(|e| e == encoding);
    let steps: usize = 1 + schemas
        .iter()
        .map(|(_, s)| 1 + 2 * (wanted(RECORD_LEVEL) as usize + wanted(FIELD_LEVEL) as usize * s.field_filter_bytes().len()))
        .sum::<usize>();
    let bar = if progress { bar(steps as u64) } else { ProgressBar::hidden() };
    bar.set_message("population");
    let world = build_world(&args.scenario, args.persons, args.seed, args.overlap)?;
    bar.inc(1);
    let secret = attack_secret(args.seed);
    let mut findings = Vec::new();
    // Profiles that publish the very same filters (`unhardened` adds field-level filters to the
    // default CLK) are attacked once; the findings are the same, under each profile's name.
    let mut done: HashMap<u64, Vec<AttackFinding>> = HashMap::new();
    for (profile, schema) in &schemas {
        bar.set_message(format!("{profile}: encoding"));
        let mut targets = encode_targets(schema, &secret, &world.records);
        targets.retain(|t| wanted(t.encoding));
        bar.inc(1);
        bar.set_message(format!("{profile}: attacking"));
        let keys: Vec<u64> = targets.iter().map(Target::identity).collect();
        let fresh: Vec<Option<Vec<AttackFinding>>> = targets
            .par_iter()
            .zip(&keys)
            .map(|(t, key)| (!done.contains_key(key)).then(|| attack_target(profile, t, &world, args, &bar)))
            .collect();
        for (key, fresh) in keys.into_iter().zip(fresh) {
            let found = match fresh {
                Some(f) => done.entry(key).or_insert(f).clone(),
                None => {
                    bar.inc(2);
                    done[&key].iter().cloned().map(|mut f| {
                        f.outcome.profile = profile.clone();
                        f
                    }).collect()
                }
            };
            findings.extend(found);
        }
    }
    bar.finish_and_clear();
    Ok(findings)
}

/// Prints the outcomes: one JSON array with `json`, else a table.
pub fn print(outcomes: &[AttackOutcome], json: bool) {
    if json {
        println!("{}", serde_json::to_string(outcomes).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")));
        return;
    }
    println!(
        "{:<14} {:<15} {:<13} {:<12} {:>7} {:>19} {:>21} {:>7}",
        "profile", "attack", "encoding", "field", "overlap", "values re-id'd", "records re-id'd", "secs"
    );
    for o in outcomes {
        println!(
            "{:<14} {:<15} {:<13} {:<12} {:>7.2} {:>9}/{:<5} {:>5.1}% {:>9}/{:<5} {:>5.1}% {:>7.2}",
            o.profile,
            o.attack,
            o.encoding,
            if o.field.is_empty() { "-" } else { &o.field },
            o.overlap,
            o.values_reidentified,
            o.values_targeted,
            100.0 * o.share_values,
            o.records_reidentified,
            o.records,
            100.0 * o.share_records,
            o.secs
        );
    }
}

fn check(args: &AttackArgs) -> anyhow::Result<()> {
    ensure!((MIN_PERSONS..=MAX_PERSONS).contains(&args.persons), "--persons must be between {MIN_PERSONS} and {MAX_PERSONS}");
    ensure!(args.overlap.is_finite() && (0.0..=1.0).contains(&args.overlap), "--overlap must be between 0 and 1");
    ensure!(!args.profiles.is_empty() && args.profiles.len() <= MAX_PROFILES, "--profiles takes 1 to {MAX_PROFILES} profiles");
    ensure!(
        !args.encodings.is_empty() && args.encodings.iter().all(|e| e == RECORD_LEVEL || e == FIELD_LEVEL),
        "--encodings takes {RECORD_LEVEL} and/or {FIELD_LEVEL}"
    );
    ensure!(
        args.min_frequency_gap.is_finite() && (0.0..1.0).contains(&args.min_frequency_gap),
        "--min-frequency-gap must be at least 0 and below 1"
    );
    ensure!(args.dice_threshold > 0.0 && args.dice_threshold <= 1.0, "--dice-threshold must be above 0 and at most 1");
    Ok(())
}

/// The schema of a profile: `unhardened`, `default`, `hardened` or a schema file's path.
pub fn load_profile(which: &str) -> anyhow::Result<LinkageSchema> {
    let bundled = |text: &str, name: &str| {
        LinkageSchema::parse(text).map_err(|p| anyhow::anyhow!("the bundled {name} schema has problems: {}", p.join("; ")))
    };
    match which {
        "unhardened" => Ok(unhardened_schema()),
        "default" => bundled(DEFAULT_SCHEMA_TOML, "default"),
        "hardened" => bundled(HARDENED_EXAMPLE_SCHEMA_TOML, "hardened"),
        path => LinkageSchema::load(std::path::Path::new(path)).map_err(anyhow::Error::msg),
    }
}

/// The `unhardened` baseline: the default schema plus field-level filters of
/// [`UNHARDENED_FIELD_FILTER_BITS`] bits on surname and given names, with no hardening at all —
/// the easiest encoding to attack, for comparison.
pub fn unhardened_schema() -> LinkageSchema {
    let mut s = LinkageSchema::parse(DEFAULT_SCHEMA_TOML).expect("the bundled default schema is valid");
    s.name = "ponte-unhardened-field-filters".into();
    for f in &mut s.fields {
        if f.name == "surname" || f.name == "given_names" {
            f.field_filter_bits = Some(UNHARDENED_FIELD_FILTER_BITS);
        }
    }
    s.hardening = Hardening::default();
    assert!(s.problems().is_empty(), "the unhardened profile is a valid schema: {:?}", s.problems());
    s
}

/// The attack's linkage secret: from the seed, so that a run is reproducible.
fn attack_secret(seed: u64) -> LinkageSecret {
    let mut key = [0u8; 32];
    synth::stage_rng(seed, "attack/linkage-secret").fill_bytes(&mut key);
    LinkageSecret::from_bytes(1, key)
}

fn bar(len: u64) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b
}

// ---- the two populations ----

/// The encoded side and the attacker's reference.
struct World {
    /// Imported identities, one per record (first row of each `(entity, record_id)`): what the
    /// nodes encode.
    records: Vec<NormalisedIdentity>,
    /// Per record, its person (index into `truths`).
    truth_of: Vec<u32>,
    /// The true normalised identity of every person with a record.
    truths: Vec<NormalisedIdentity>,
    /// The attacker's plaintext reference.
    reference: Vec<NormalisedIdentity>,
}

/// A person's true identity through the node's normaliser, as a register would give it.
fn normalise_person(p: &synth::Person, format: &DateFormat) -> Option<NormalisedIdentity> {
    let date = format!("{:04}-{:02}-{:02}", p.birth_date.year, p.birth_date.month, p.birth_date.day);
    let raw = RawIdentity {
        surname: &p.surname,
        given_names: &p.given_names,
        sex: match p.sex {
            Sex::M => "M",
            Sex::F => "F",
        },
        birth_date: &date,
        birthplace: &p.birthplace_code,
        codice_fiscale: p.codice_fiscale.as_deref().unwrap_or(""),
        surname_alias: "",
    };
    ponte_node::normalise::normalise(&raw, format).ok()
}

fn build_world(scenario_name: &str, persons: usize, seed: u64, overlap: f64) -> anyhow::Result<World> {
    let format = DateFormat::parse("%Y-%m-%d").map_err(anyhow::Error::msg)?;
    let mut scenario = synth::scenario::load_scenario(scenario_name, Some(persons)).map_err(|e| anyhow::anyhow!("{e}"))?;
    scenario.seed = seed;
    let generated = synth::try_generate(&scenario).map_err(|e| anyhow::anyhow!("{e}"))?;
    let index: HashMap<u32, usize> = generated.persons.iter().enumerate().map(|(i, p)| (p.person_id, i)).collect();
    let truth: HashMap<(&str, &str), u32> =
        generated.truth.iter().map(|t| ((t.node_id.as_str(), t.record_id.as_str()), t.person_id)).collect();
    let mut seen = HashSet::new();
    let (mut records, mut person_of) = (Vec::new(), Vec::new());
    for (node, export) in generated.exports.iter().enumerate() {
        let mut cfg = export.import.clone();
        cfg.max_rows = usize::MAX;
        let (rows, _) = ponte_node::import::read_export(export.csv.as_slice(), &export.file_name, &cfg)
            .with_context(|| format!("reading {}", export.file_name))?;
        for row in rows {
            if !seen.insert((node, row.record_id.clone())) {
                continue;
            }
            let person = truth
                .get(&(export.node_id.as_str(), row.record_id.as_str()))
                .and_then(|p| index.get(p))
                .ok_or_else(|| anyhow::anyhow!("record {} of {} is not in the truth", row.record_id, export.node_id))?;
            records.push(row.identity);
            person_of.push(*person);
        }
    }
    ensure!(records.len() >= 2, "fewer than two records imported");
    let mut encoded: Vec<usize> = person_of.clone();
    encoded.sort_unstable();
    encoded.dedup();
    let slot: HashMap<usize, u32> = encoded.iter().enumerate().map(|(i, &p)| (p, i as u32)).collect();
    let truth_of: Vec<u32> = person_of.iter().map(|p| slot[p]).collect();
    let mut first_record = vec![usize::MAX; encoded.len()];
    for (r, &s) in truth_of.iter().enumerate() {
        if first_record[s as usize] == usize::MAX {
            first_record[s as usize] = r;
        }
    }
    let truths: Vec<NormalisedIdentity> = encoded
        .iter()
        .enumerate()
        .map(|(s, &p)| normalise_person(&generated.persons[p], &format).unwrap_or_else(|| records[first_record[s]].clone()))
        .collect();

    let n = truths.len();
    let shared = ((overlap * n as f64).round() as usize).min(n);
    let mut rng = synth::stage_rng(seed, "attack/reference");
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let mut reference: Vec<NormalisedIdentity> = order[..shared].iter().map(|&i| truths[i].clone()).collect();
    if shared < n {
        let mut other_seed = rng.next_u64();
        if other_seed == seed {
            other_seed ^= 1;
        }
        let mut scenario = synth::scenario::load_scenario(scenario_name, Some(persons)).map_err(|e| anyhow::anyhow!("{e}"))?;
        scenario.seed = other_seed;
        let other = synth::try_generate(&scenario).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut in_care: Vec<u32> = other.truth.iter().map(|t| t.person_id).collect();
        in_care.sort_unstable();
        in_care.dedup();
        in_care.shuffle(&mut rng);
        let cared: HashSet<u32> = in_care.iter().copied().collect();
        let mut rest: Vec<u32> = other.persons.iter().map(|p| p.person_id).filter(|p| !cared.contains(p)).collect();
        rest.shuffle(&mut rng);
        let other_index: HashMap<u32, usize> = other.persons.iter().enumerate().map(|(i, p)| (p.person_id, i)).collect();
        for id in in_care.iter().chain(&rest) {
            if reference.len() == n {
                break;
            }
            if let Some(identity) = normalise_person(&other.persons[other_index[id]], &format) {
                reference.push(identity);
            }
        }
    }
    reference.shuffle(&mut rng);
    Ok(World { records, truth_of, truths, reference })
}

// ---- the encoded database ----

#[derive(Debug, Clone)]
struct FeatureSpec {
    name: String,
    tokenizer: Tokenizer,
    k: u32,
    /// Salted with the year of birth (the schema says so; the schema is public).
    salted: bool,
}

/// One published filter of every record, by bit position.
struct Target {
    /// [`RECORD_LEVEL`] or [`FIELD_LEVEL`].
    encoding: &'static str,
    /// The field of a field-level filter; empty for the CLK.
    field: String,
    /// The features hashed into the filter.
    features: Vec<FeatureSpec>,
    records: usize,
    /// Words per column.
    stride: usize,
    /// Column `j` (bit `j` of every record's filter) is `words[j * stride..(j + 1) * stride]`.
    words: Vec<u64>,
    /// Per record, a 64-bit digest of its filter (identical filters, identical digests).
    digests: Vec<u64>,
}

impl Target {
    fn new(encoding: &'static str, field: &str, features: Vec<FeatureSpec>, bits: u32, records: usize) -> Target {
        let stride = records.div_ceil(64);
        Target {
            encoding,
            field: field.to_string(),
            features,
            records,
            stride,
            words: vec![0; bits as usize * stride],
            digests: vec![0; records],
        }
    }

    /// A digest of what the attacker sees of this filter (its kind, features and every bit):
    /// equal digests, equal attacks.
    fn identity(&self) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let mut eat = |b: &[u8]| b.iter().for_each(|&x| h = (h ^ x as u64).wrapping_mul(0x0100_0000_01b3));
        eat(self.encoding.as_bytes());
        eat(self.field.as_bytes());
        for f in &self.features {
            eat(f.name.as_bytes());
            eat(&f.k.to_le_bytes());
            eat(&[f.tokenizer as u8]);
        }
        self.words.iter().for_each(|w| eat(&w.to_le_bytes()));
        h
    }

    fn columns(&self) -> mining::Columns<'_> {
        mining::Columns { records: self.records, stride: self.stride, words: &self.words }
    }

    /// Stores record `r`'s published filter.
    fn store(&mut self, r: usize, filter: &[u8]) {
        debug_assert_eq!(filter.len() * 8 * self.stride, self.words.len());
        for (b, &byte) in filter.iter().enumerate() {
            let mut x = byte;
            while x != 0 {
                let j = b * 8 + x.trailing_zeros() as usize;
                self.words[j * self.stride + r / 64] |= 1 << (r % 64);
                x &= x - 1;
            }
        }
        // FNV-1a: collisions among a few hundred thousand filters are negligible.
        self.digests[r] = filter.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    }
}

/// Encodes every record with `schema` and returns the CLK's target, then one per field-level
/// filter in schema order.
fn encode_targets(schema: &LinkageSchema, secret: &LinkageSecret, records: &[NormalisedIdentity]) -> Vec<Target> {
    let encoder = Encoder::new(secret, schema);
    let n = records.len();
    let spec = |f: &ponte_proto::schema::FieldSpec| FeatureSpec {
        name: f.name.clone(),
        tokenizer: f.tokenizer,
        k: f.bits_per_token,
        salted: schema.hardening.salt_with_birth_year.contains(&f.name),
    };
    let mut targets = vec![Target::new(RECORD_LEVEL, "", schema.fields.iter().map(spec).collect(), schema.published_clk_bits(), n)];
    for f in &schema.fields {
        if let Some(bits) = schema.published_field_filter_bits(f) {
            targets.push(Target::new(FIELD_LEVEL, &f.name, vec![spec(f)], bits, n));
        }
    }
    for (c, chunk) in records.chunks(ENCODE_CHUNK).enumerate() {
        let encodings: Vec<_> = chunk.par_iter().map(|id| encoder.encode(id)).collect();
        for (i, e) in encodings.iter().enumerate() {
            let r = c * ENCODE_CHUNK + i;
            targets[0].store(r, &e.clk);
            for (t, (_, filter)) in targets[1..].iter_mut().zip(&e.field_filters) {
                t.store(r, filter);
            }
        }
    }
    targets
}

// ---- the attacker's view of the plaintext ----

/// A feature's tokens for an identity, as the public q-gram scheme makes them; with
/// `salt_aware`, a salted feature's tokens carry the year of birth they are hashed with (each
/// (year, token) sets its own positions; records without a year are hashed unsalted).
fn tokens(id: &NormalisedIdentity, f: &FeatureSpec, salt_aware: bool) -> Vec<String> {
    let year = id.birth_date.filter(|_| f.salted && salt_aware).map(|d| d.year);
    feature_values(id, &f.name)
        .into_iter()
        .flat_map(|v| match f.tokenizer {
            Tokenizer::Bigrams => bigrams(&v),
            Tokenizer::Whole => vec![v],
        })
        .map(|t| match year {
            Some(y) => format!("{y}\u{1f}{t}"),
            None => t,
        })
        .collect()
}

/// A field's value for an identity (`given_names`: all given names joined); `None` when missing.
fn field_value(id: &NormalisedIdentity, field: &str) -> Option<String> {
    let v = feature_values(id, field);
    (!v.is_empty()).then(|| v.join(" "))
}

/// The items (feature, token) of a target's features in the reference.
struct Items {
    /// Per item, its token (for messages).
    token: Vec<String>,
    /// Per item, the index of its feature in the target.
    feature: Vec<usize>,
    /// Per item, the feature's k.
    k: Vec<u32>,
    /// Per reference identity, its items (sorted, distinct).
    of_reference: Vec<Vec<u32>>,
    /// Items to look for first: with salted features, the years of birth (if the filter holds
    /// them), most frequent first — each year's filters are where its salted names can be found.
    first: Vec<u32>,
}

fn items(features: &[FeatureSpec], reference: &[NormalisedIdentity], salt_aware: bool) -> Items {
    let mut ids: HashMap<(usize, String), u32> = HashMap::new();
    let (mut token, mut feature, mut k) = (Vec::new(), Vec::new(), Vec::new());
    let of_reference: Vec<Vec<u32>> = reference
        .iter()
        .map(|id| {
            let mut mine = Vec::new();
            for (fi, f) in features.iter().enumerate() {
                for t in tokens(id, f, salt_aware) {
                    let next = ids.len() as u32;
                    let item = *ids.entry((fi, t.clone())).or_insert_with(|| {
                        token.push(t);
                        feature.push(fi);
                        k.push(f.k);
                        next
                    });
                    mine.push(item);
                }
            }
            mine.sort_unstable();
            mine.dedup();
            mine
        })
        .collect();
    let mut first = Vec::new();
    if salt_aware
        && features.iter().any(|f| f.salted)
        && let Some(year) = features.iter().position(|f| f.name == "birth_year")
    {
        let mut count = vec![0u32; k.len()];
        of_reference.iter().flatten().for_each(|&it| count[it as usize] += 1);
        first = (0..k.len() as u32).filter(|&it| feature[it as usize] == year).collect();
        first.sort_by(|&a, &b| count[b as usize].cmp(&count[a as usize]).then(a.cmp(&b)));
    }
    Items { token, feature, k, of_reference, first }
}

/// Values of one field, numbered.
#[derive(Default)]
struct Vocabulary {
    ids: HashMap<String, u32>,
}

impl Vocabulary {
    fn id(&mut self, value: String) -> u32 {
        let next = self.ids.len() as u32;
        *self.ids.entry(value).or_insert(next)
    }
}

/// One re-identified field of a target: the features whose items identify it, every record's
/// true value, and the attack's guesses.
struct FieldAttack {
    name: String,
    features: Vec<usize>,
    vocabulary: Vocabulary,
    truth: Vec<Option<u32>>,
}

impl FieldAttack {
    fn new(name: &str, features: Vec<usize>, world: &World) -> FieldAttack {
        let mut vocabulary = Vocabulary::default();
        let per_person: Vec<Option<u32>> = world.truths.iter().map(|t| field_value(t, name).map(|v| vocabulary.id(v))).collect();
        let truth = world.truth_of.iter().map(|&p| per_person[p as usize]).collect();
        FieldAttack { name: name.to_string(), features, vocabulary, truth }
    }
}

/// The fields re-identified from a target: its own field, or (CLK) surname and given names.
fn fields_of(t: &Target, world: &World) -> Vec<FieldAttack> {
    if t.encoding == FIELD_LEVEL {
        return vec![FieldAttack::new(&t.field, vec![0], world)];
    }
    let mut out = Vec::new();
    for (name, group) in [("surname", SURNAME_FEATURES), ("given_names", GIVEN_NAME_FEATURES)] {
        let features: Vec<usize> = t.features.iter().enumerate().filter(|(_, f)| group.contains(&f.name.as_str())).map(|(i, _)| i).collect();
        if !features.is_empty() {
            out.push(FieldAttack::new(name, features, world));
        }
    }
    out
}

// ---- the attacks ----

fn attack_target(profile: &str, t: &Target, world: &World, args: &AttackArgs, bar: &ProgressBar) -> Vec<AttackFinding> {
    let mut fields = fields_of(t, world);
    let started = Instant::now();
    let guesses = frequency_attack(t, world, &mut fields, args.min_frequency_gap, !args.salt_blind);
    let frequency = finding(profile, FREQUENCY, t, &fields, &guesses, 0, args.overlap, started.elapsed().as_secs_f64());
    bar.inc(1);
    let started = Instant::now();
    let (guesses, identified) = pattern_mining_attack(t, world, &mut fields, args.dice_threshold, !args.salt_blind);
    let mining = finding(profile, PATTERN_MINING, t, &fields, &guesses, identified, args.overlap, started.elapsed().as_secs_f64());
    bar.inc(1);
    vec![frequency, mining]
}

/// Frequency alignment of identical filters with the reference's values (on a CLK: tuples of
/// all its features; a salted feature's value with the year, as equal names born in different
/// years have different filters). Returns per field, per record, the value assigned.
fn frequency_attack(t: &Target, world: &World, fields: &mut [FieldAttack], min_gap: f64, salt_aware: bool) -> Vec<Vec<Option<u32>>> {
    // Encoded side: identical filters, by count.
    let mut groups: HashMap<u64, u32> = HashMap::new();
    for &d in &t.digests {
        *groups.entry(d).or_default() += 1;
    }
    let mut encoded: Vec<(u32, u64)> = groups.into_iter().map(|(d, c)| (c, d)).collect();
    encoded.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    // Plaintext side: the reference's values of the filter's features, by count.
    let mut values: HashMap<String, (u32, usize)> = HashMap::new();
    for (i, id) in world.reference.iter().enumerate() {
        let tuple: Vec<String> = t.features.iter().map(|f| tokens(id, &FeatureSpec { tokenizer: Tokenizer::Whole, ..f.clone() }, salt_aware).join(" ")).collect();
        if tuple.iter().all(String::is_empty) {
            continue;
        }
        values.entry(tuple.join("\u{1f}")).or_insert((0, i)).0 += 1;
    }
    let mut plain: Vec<(u32, String, usize)> = values.into_iter().map(|(v, (c, i))| (c, v, i)).collect();
    plain.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let counts_e: Vec<u32> = encoded.iter().map(|e| e.0).collect();
    let counts_p: Vec<u32> = plain.iter().map(|p| p.0).collect();
    let assigned: HashMap<u64, usize> =
        frequency::align(&counts_e, &counts_p, min_gap, FREQUENCY_MIN_COUNT).into_iter().map(|rank| (encoded[rank].1, plain[rank].2)).collect();
    fields
        .iter_mut()
        .map(|f| {
            t.digests
                .iter()
                .map(|d| assigned.get(d).and_then(|&i| field_value(&world.reference[i], &f.name)).map(|v| f.vocabulary.id(v)))
                .collect()
        })
        .collect()
}

/// Pattern mining, then re-identification of every field. Returns per field, per record, the
/// value assigned, and the number of items whose positions were identified.
fn pattern_mining_attack(
    t: &Target,
    world: &World,
    fields: &mut [FieldAttack],
    threshold: f64,
    salt_aware: bool,
) -> (Vec<Vec<Option<u32>>>, usize) {
    let params = mining_params(t);
    let items = items(&t.features, &world.reference, salt_aware);
    let cols = t.columns();
    let mined = mining::mine(&cols, &items.k, &items.of_reference, &items.first, &params);
    tracing::debug!(encoding = t.encoding, field = %t.field, items = items.k.len(), identified = mined.identified(), nodes = mined.nodes, "pattern mining");
    tracing::trace!(
        identified = ?mined.positions.iter().enumerate().filter(|(_, p)| p.is_some()).map(|(it, _)| &items.token[it]).collect::<Vec<_>>(),
        "pattern mining: items"
    );
    let guesses = fields
        .iter_mut()
        .map(|f| {
            let field_items: Vec<u32> = (0..items.k.len() as u32).filter(|&it| f.features.contains(&items.feature[it as usize])).collect();
            // One candidate per value and item set: a salted value has one per year of birth.
            let mut seen = HashSet::new();
            let mut candidates = Vec::new();
            for (id, its) in world.reference.iter().zip(&items.of_reference) {
                let Some(v) = field_value(id, &f.name) else { continue };
                let value = f.vocabulary.id(v);
                let mine: Vec<u32> = its.iter().copied().filter(|&it| f.features.contains(&items.feature[it as usize])).collect();
                if seen.insert((value, mine.clone())) {
                    candidates.push((value, mine));
                }
            }
            mining::reidentify(&cols, &mined, &field_items, &candidates, threshold)
        })
        .collect();
    (guesses, mined.identified())
}

/// The mining knobs for a target: patterns must be expected on at least 12 filters, or on one
/// in 500 of a large database.
fn mining_params(t: &Target) -> mining::MiningParams {
    mining::MiningParams { min_support: (t.records / 500).max(12), ..Default::default() }
}

/// Scores the guesses against the truth (module documentation, "What counts").
#[allow(clippy::too_many_arguments)]
fn finding(
    profile: &str,
    attack: &str,
    t: &Target,
    fields: &[FieldAttack],
    guesses: &[Vec<Option<u32>>],
    items_identified: usize,
    overlap: f64,
    secs: f64,
) -> AttackFinding {
    let n = t.records;
    let (mut targeted, mut reidentified, mut assigned) = (0u64, 0u64, 0u64);
    let mut record_assigned = vec![false; n];
    let mut record_right = vec![false; n];
    for (f, guess) in fields.iter().zip(guesses) {
        let mut truths: Vec<u32> = f.truth.iter().flatten().copied().collect();
        truths.sort_unstable();
        truths.dedup();
        targeted += truths.len() as u64;
        // Per value assigned: (records given it, of which right).
        let mut per_value: HashMap<u32, (u64, u64)> = HashMap::new();
        for r in 0..n {
            if let Some(g) = guess[r] {
                let right = f.truth[r] == Some(g);
                let e = per_value.entry(g).or_default();
                e.0 += 1;
                e.1 += right as u64;
                record_assigned[r] = true;
                record_right[r] |= right;
            }
        }
        assigned += per_value.len() as u64;
        reidentified += per_value.values().filter(|(given, right)| *right > 0 && 2 * right > *given).count() as u64;
    }
    let records_reidentified = record_right.iter().filter(|x| **x).count() as u64;
    let share = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    AttackFinding {
        outcome: AttackOutcome {
            profile: profile.to_string(),
            attack: attack.to_string(),
            encoding: t.encoding.to_string(),
            field: t.field.clone(),
            overlap,
            values_targeted: targeted,
            values_reidentified: reidentified,
            share_values: share(reidentified, targeted),
            records: n as u64,
            records_reidentified,
            share_records: share(records_reidentified, n as u64),
            secs,
        },
        values_assigned: assigned,
        records_assigned: record_assigned.iter().filter(|x| **x).count() as u64,
        items_identified: items_identified as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(persons: usize, overlap: f64, profiles: &[&str]) -> AttackArgs {
        AttackArgs { scenario: "demo".into(), persons, overlap, profiles: profiles.iter().map(|p| p.to_string()).collect(), ..Default::default() }
    }

    fn field_level(args: AttackArgs) -> AttackArgs {
        AttackArgs { encodings: vec![FIELD_LEVEL.to_string()], ..args }
    }

    fn find<'a>(f: &'a [AttackFinding], profile: &str, attack: &str, encoding: &str, field: &str) -> &'a AttackFinding {
        f.iter()
            .find(|x| x.outcome.profile == profile && x.outcome.attack == attack && x.outcome.encoding == encoding && x.outcome.field == field)
            .unwrap_or_else(|| panic!("no outcome {profile} {attack} {encoding} {field}"))
    }

    fn show(findings: &[AttackFinding]) {
        for f in findings {
            let o = &f.outcome;
            println!(
                "{:<11} {:<14} {:<12} {:<11} values {:>4}/{:<4} ({:>5.1}%) assigned {:>4}  records {:>5}/{:<5} ({:>5.1}%) assigned {:>5}  items {:>3}  {:.2}s",
                o.profile, o.attack, o.encoding, o.field, o.values_reidentified, o.values_targeted, 100.0 * o.share_values,
                f.values_assigned, o.records_reidentified, o.records, 100.0 * o.share_records, f.records_assigned, f.items_identified, o.secs
            );
        }
    }

    #[test]
    fn arguments_are_bounded() {
        let ok = AttackArgs::default();
        assert!(check(&ok).is_ok());
        for bad in [
            AttackArgs { persons: 99, ..ok.clone() },
            AttackArgs { persons: MAX_PERSONS + 1, ..ok.clone() },
            AttackArgs { overlap: 1.5, ..ok.clone() },
            AttackArgs { overlap: f64::NAN, ..ok.clone() },
            AttackArgs { profiles: vec![], ..ok.clone() },
            AttackArgs { min_frequency_gap: 1.0, ..ok.clone() },
            AttackArgs { dice_threshold: 0.0, ..ok.clone() },
            AttackArgs { encodings: vec!["clk".into()], ..ok.clone() },
        ] {
            assert!(check(&bad).is_err(), "{bad:?}");
        }
        assert!(load_profile("/nonexistent/schema.toml").is_err());
        let u = unhardened_schema();
        assert!(!u.hardening.any());
        assert_eq!(u.field_filter_bytes(), vec![("surname", 128), ("given_names", 128)]);
    }

    /// The unhardened field filters fall to both attacks; the hardened example resists them.
    #[test]
    fn hardening_defeats_what_breaks_unhardened_filters() {
        let findings = run_detailed(&field_level(small(1000, 0.8, &["unhardened", "hardened"])), false).unwrap();
        assert!(findings.iter().all(|f| f.outcome.encoding == FIELD_LEVEL));
        show(&findings);
        let mining_u = find(&findings, "unhardened", PATTERN_MINING, FIELD_LEVEL, "surname");
        let mining_h = find(&findings, "hardened", PATTERN_MINING, FIELD_LEVEL, "surname");
        assert!(mining_u.outcome.share_values > 0.10, "unhardened surname filters: {:?}", mining_u.outcome);
        assert!(mining_h.outcome.share_values < mining_u.outcome.share_values / 4.0, "hardened: {:?}", mining_h.outcome);
        assert!(mining_h.outcome.share_records < 0.02, "hardened: {:?}", mining_h.outcome);
        let freq_u = find(&findings, "unhardened", FREQUENCY, FIELD_LEVEL, "surname");
        let freq_h = find(&findings, "hardened", FREQUENCY, FIELD_LEVEL, "surname");
        assert!(freq_u.outcome.records_reidentified > 50, "{:?}", freq_u.outcome);
        // BLIP makes every hardened filter unique: nothing to count.
        assert_eq!(freq_h.values_assigned, 0, "{:?}", freq_h.outcome);
        for field in ["surname", "given_names"] {
            for attack in [FREQUENCY, PATTERN_MINING] {
                let u = find(&findings, "unhardened", attack, FIELD_LEVEL, field);
                let h = find(&findings, "hardened", attack, FIELD_LEVEL, field);
                assert!(h.outcome.records_reidentified < u.outcome.records_reidentified, "{attack} {field}: {:?} vs {:?}", h.outcome, u.outcome);
            }
        }
    }

    /// On the CLK: without hardening the names of many records fall to pattern mining; the
    /// shipped default, which salts the names with the year of birth, hides them from this
    /// attacker (even reading the schema) at this size.
    #[test]
    fn the_unsalted_clk_leaks_names_and_the_salted_default_does_not() {
        let args = AttackArgs { encodings: vec![RECORD_LEVEL.to_string()], ..small(1000, 0.8, &["unhardened", "default"]) };
        let findings = run_detailed(&args, false).unwrap();
        show(&findings);
        let plain = find(&findings, "unhardened", PATTERN_MINING, RECORD_LEVEL, "");
        let salted = find(&findings, "default", PATTERN_MINING, RECORD_LEVEL, "");
        assert!(plain.outcome.share_records > 0.05, "{:?}", plain.outcome);
        assert!(salted.outcome.records_reidentified * 5 < plain.outcome.records_reidentified, "{:?}", salted.outcome);
        // CLKs are (nearly) all distinct: frequency alignment has nothing to work with.
        assert_eq!(find(&findings, "unhardened", FREQUENCY, RECORD_LEVEL, "").values_assigned, 0);
    }

    #[test]
    fn the_same_seed_gives_the_same_outcomes() {
        let args = AttackArgs { seed: 11, ..small(300, 0.5, &["unhardened", "hardened"]) };
        let strip = |mut v: Vec<AttackOutcome>| {
            v.iter_mut().for_each(|o| o.secs = 0.0);
            v
        };
        let a = strip(run(&args, false).unwrap());
        let b = strip(run(&args, false).unwrap());
        assert_eq!(a, b);
        assert_eq!(a.len(), 2 * (3 + 3));
        let c = strip(run(&AttackArgs { seed: 12, ..args }, false).unwrap());
        assert_ne!(a, c, "another seed, another population");
    }

    /// Frequency alignment needs the same *distribution*, not the same persons: with no person in
    /// common the reference's surname ranking still lines up with the encoded one, because both
    /// populations draw surnames from the same (Salento) distribution. And an attacker whose
    /// values are shuffled across ranks gets (almost) nothing right.
    #[test]
    fn frequency_needs_the_distribution_not_the_persons() {
        let args = field_level(small(1000, 0.0, &["unhardened"]));
        let findings = run_detailed(&args, false).unwrap();
        show(&findings);
        let f = find(&findings, "unhardened", FREQUENCY, FIELD_LEVEL, "surname");
        assert_eq!(f.outcome.overlap, 0.0);
        assert!(f.outcome.values_reidentified > 0, "{:?}", f.outcome);

        // Control: a reference whose surname counts are scrambled among the values.
        let mut world = build_world("demo", 1000, 2026, 0.0).unwrap();
        let mut surnames: Vec<String> = world.reference.iter().map(|r| r.surname.clone()).collect();
        surnames.sort();
        surnames.dedup();
        let mut rotated = surnames.clone();
        rotated.rotate_left(1);
        let swap: HashMap<&String, &String> = surnames.iter().zip(&rotated).collect();
        for r in &mut world.reference {
            r.surname = swap[&r.surname].clone();
        }
        let schema = unhardened_schema();
        let targets = encode_targets(&schema, &attack_secret(2026), &world.records);
        let surname = targets.iter().find(|t| t.field == "surname").unwrap();
        let mut fields = fields_of(surname, &world);
        let guesses = frequency_attack(surname, &world, &mut fields, 0.1, true);
        let scored = finding("control", FREQUENCY, surname, &fields, &guesses, 0, 0.0, 0.0);
        assert!(scored.outcome.records_reidentified * 10 <= f.outcome.records_reidentified.max(10), "{:?}", scored.outcome);
    }

    /// What mining identified on one target, item by item, against the truth: how many records'
    /// filters hold the item's pattern, how many truly contain the item, how many both.
    /// `PONTE_ATTACK_PROFILE=unhardened PONTE_ATTACK_FIELD=surname|given_names|clk
    /// cargo test --release -p ponte-sim --lib mining_diagnostics -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn mining_diagnostics() {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        let persons: usize = env("PONTE_ATTACK_PERSONS", "1000").parse().unwrap();
        let seed: u64 = env("PONTE_ATTACK_SEED", "2026").parse().unwrap();
        let world = build_world("demo", persons, seed, env("PONTE_ATTACK_OVERLAP", "0.8").parse().unwrap()).unwrap();
        let schema = load_profile(&env("PONTE_ATTACK_PROFILE", "unhardened")).unwrap();
        let field = env("PONTE_ATTACK_FIELD", "surname");
        let targets = encode_targets(&schema, &attack_secret(seed), &world.records);
        let t = targets.iter().find(|t| t.field == field || (field == "clk" && t.encoding == RECORD_LEVEL)).unwrap();
        let items = items(&t.features, &world.reference, true);
        let mined = mining::mine(&t.columns(), &items.k, &items.of_reference, &items.first, &mining_params(t));
        println!("{} items, {} identified, {} nodes", items.k.len(), mined.identified(), mined.nodes);
        let truth_items: Vec<Vec<String>> = world
            .truth_of
            .iter()
            .map(|&p| {
                let id = &world.truths[p as usize];
                t.features.iter().flat_map(|f| tokens(id, f, true).into_iter().map(move |tk| format!("{}:{tk}", f.name))).collect()
            })
            .collect();
        for (it, p) in mined.positions.iter().enumerate() {
            let Some(p) = p else { continue };
            let name = format!("{}:{}", t.features[items.feature[it]].name, items.token[it]);
            let holds = |r: usize| {
                let set = p.iter().filter(|&&j| t.words[j as usize * t.stride + r / 64] >> (r % 64) & 1 == 1).count();
                set + mining::tolerance(p.len()) >= p.len()
            };
            let truth = |r: usize| truth_items[r].contains(&name);
            let count = |f: &dyn Fn(usize) -> bool| (0..t.records).filter(|&r| f(r)).count();
            println!(
                "{name:<30} k {:>2} |P| {:>2}  holders {:>6}  truth {:>6}  both {:>6}",
                items.k[it],
                p.len(),
                count(&holds),
                count(&truth),
                count(&|r| holds(r) && truth(r))
            );
        }
    }

    /// Figures at the default size, in release:
    /// `cargo test --release -p ponte-sim --lib attack -- --ignored --nocapture`
    /// (PONTE_ATTACK_PERSONS, _OVERLAP, _SEED, _PROFILES, _ENCODINGS, _SALT_BLIND change the run).
    #[test]
    #[ignore]
    fn attack_report() {
        let env = |k: &str| std::env::var(k).ok();
        let args = AttackArgs {
            persons: env("PONTE_ATTACK_PERSONS").and_then(|p| p.parse().ok()).unwrap_or(5000),
            overlap: env("PONTE_ATTACK_OVERLAP").and_then(|p| p.parse().ok()).unwrap_or(0.8),
            seed: env("PONTE_ATTACK_SEED").and_then(|p| p.parse().ok()).unwrap_or(2026),
            profiles: env("PONTE_ATTACK_PROFILES").map_or(AttackArgs::default().profiles, |p| p.split(',').map(String::from).collect()),
            encodings: env("PONTE_ATTACK_ENCODINGS").map_or(AttackArgs::default().encodings, |p| p.split(',').map(String::from).collect()),
            salt_blind: env("PONTE_ATTACK_SALT_BLIND").is_some(),
            ..Default::default()
        };
        let started = Instant::now();
        let findings = run_detailed(&args, false).unwrap();
        show(&findings);
        print(&findings.iter().map(|f| f.outcome.clone()).collect::<Vec<_>>(), false);
        println!("{} persons, overlap {}, seed {}: {:.1} s", args.persons, args.overlap, args.seed, started.elapsed().as_secs_f64());
    }
}
