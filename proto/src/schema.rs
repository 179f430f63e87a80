//! The linkage schema: which identity features are hashed into the record-level filter (CLK),
//! which of them also get a field-level filter, how every filter is hardened before it leaves the
//! node, which keyed exact tokens travel next to it, and the blocking parameters of the matcher.
//!
//! Its canonical fingerprint — SHA-256 over a fixed prefix and the schema's canonical JSON (every
//! setting, defaults included, in the field order declared here; features in file order) —
//! travels with every encoding. Two schemas with the same fingerprint encode identically under
//! the same secret; any change to a value that affects encodings or their linkage changes the
//! fingerprint.
//!
//! # Hardening, in the order the encoder applies it
//!
//! The same steps, with the same settings, apply to the CLK and to every field-level filter
//! (each filter with its own secret-derived keys and permutation):
//!
//! 1. **Hash** each token into the filter (HMAC-SHA256 random hashing, `bits_per_token`
//!    positions). Salting happens here, at token level: a token of a field listed in
//!    `salt_with_birth_year` is hashed under the field's *salted* key together with the record's
//!    year of birth, so equal names born in different years set unrelated bits. A record without
//!    a birth year leaves those tokens **unsalted** (plain key, no year): such records still link
//!    to each other on names, but never agree by chance with salted ones.
//! 2. **XOR-fold** (`xor_fold`): bit `i` of the result is `b[i] XOR b[i + n/2]`; halves the length.
//! 3. **Rule 90** (`rule90_rounds` times): `b'[i] = b[i-1] XOR b[i+1]`, indices modulo the length
//!    (cyclic boundary). Folding and Rule 90 are both linear and shift-invariant on a ring, so they
//!    commute; folding first halves the diffusion work.
//! 4. **BLIP** (`blip_probability` p): every bit is flipped with probability p, drawn from a keyed
//!    PRF so the same record always gets the same flips (see the node's `encode` module).
//! 5. **Balance** (`balance`): the complement is appended and the 2n bits are permuted with a
//!    secret-derived permutation; doubles the length and gives every published filter exactly
//!    n set bits. Balancing runs last so that nothing after it can make the weight vary again,
//!    and BLIP runs before it so each underlying bit gets one randomised-response draw (flipping
//!    after balancing would expose every bit twice, once through its complement, and double the
//!    privacy loss).
//!
//! Published lengths: `clk_bits` → [`LinkageSchema::published_clk_bits`] (÷2 with `xor_fold`,
//! ×2 with `balance`); a field's `field_filter_bits` likewise
//! ([`LinkageSchema::published_field_filter_bits`]). Only published lengths travel on the wire.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The schema every federation starts from (`proto/schemas/default.toml`).
pub const DEFAULT_SCHEMA_TOML: &str = include_str!("../schemas/default.toml");

/// An example hardened profile (`proto/schemas/hardened.toml`): name fields salted with the year
/// of birth, field-level filters for surname and given names, Rule 90, BLIP and balancing. For
/// measuring in the simulator; not the federation's default.
pub const HARDENED_EXAMPLE_SCHEMA_TOML: &str = include_str!("../schemas/hardened.toml");

/// Largest schema file accepted.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;

/// Identity features the node's encoder knows how to produce.
pub const KNOWN_FEATURES: &[&str] = &[
    "surname",
    "surname_first_token",
    "surname_alias",
    "given_names",
    "given_name_first",
    "given_name_canonical",
    "sex",
    "birth_year",
    "birth_month",
    "birth_day",
    "birthplace",
    "codice_fiscale_chars",
];

/// Features that hold (parts of) names: their `bits_per_token` should be at least 10.
pub const NAME_FEATURES: &[&str] = &[
    "surname",
    "surname_first_token",
    "surname_alias",
    "given_names",
    "given_name_first",
    "given_name_canonical",
];

/// Features with few possible values: a field-level filter of one is a lookup table.
pub const LOW_CARDINALITY_FEATURES: &[&str] = &["sex", "birth_year", "birth_month", "birth_day"];

/// Most Rule 90 rounds accepted.
pub const MAX_RULE90_ROUNDS: u32 = 8;
/// Most bits per LSH key accepted.
pub const MAX_LSH_BITS_PER_KEY: u32 = 128;
/// Most LSH tables accepted.
pub const MAX_LSH_TABLES: u32 = 128;

/// Exact-token kinds.
pub const KNOWN_TOKEN_KINDS: &[&str] = &["codice_fiscale", "id_anpr", "stp", "eni", "cf_provvisorio"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tokenizer {
    /// Character bigrams of the value padded with `_` on both sides.
    Bigrams,
    /// The whole value as one token.
    Whole,
}

/// One identity feature of the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    pub tokenizer: Tokenizer,
    /// Bit positions set per token (k), in the CLK and in the field-level filter.
    pub bits_per_token: u32,
    /// When present, the encoder also emits a field-level filter of this many bits (before
    /// hardening) for this feature: a power of two from 128 to 4096. The field filter uses its own
    /// keys, so its bits cannot be lined up with the CLK's.
    #[serde(default)]
    pub field_filter_bits: Option<u32>,
}

/// How filters are hardened against the attacks of PPRL.md. All off by default. The order of
/// the steps is fixed (module documentation); they apply to the CLK and the field filters alike.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hardening {
    /// Fields (of this schema) whose tokens are salted with the year of birth. Records without a
    /// birth year leave these tokens unsalted.
    pub salt_with_birth_year: Vec<String>,
    /// Append the complement and permute with a secret-derived permutation: constant Hamming
    /// weight (exactly half the bits), twice the length.
    pub balance: bool,
    /// Fold the filter in half with XOR.
    pub xor_fold: bool,
    /// Rounds of Rule 90 diffusion (cyclic boundary), 0 to 8.
    pub rule90_rounds: u32,
    /// BLIP / randomised response: the probability, 0 ≤ p < 0.5, that each bit is flipped
    /// (deterministically per record, from a keyed PRF).
    pub blip_probability: f64,
}

impl Hardening {
    /// Whether any hardening step is on.
    pub fn any(&self) -> bool {
        !self.salt_with_birth_year.is_empty()
            || self.balance
            || self.xor_fold
            || self.rule90_rounds > 0
            || self.blip_probability != 0.0
    }

    /// The published length of a filter of `bits` bits before hardening.
    pub fn published_bits(&self, bits: u32) -> u32 {
        let folded = if self.xor_fold { bits / 2 } else { bits };
        if self.balance { folded.saturating_mul(2) } else { folded }
    }
}

// Equality compares the probability's bits, so that `Eq` holds (NaN is refused by `problems`).
impl PartialEq for Hardening {
    fn eq(&self, o: &Self) -> bool {
        self.salt_with_birth_year == o.salt_with_birth_year
            && self.balance == o.balance
            && self.xor_fold == o.xor_fold
            && self.rule90_rounds == o.rule90_rounds
            && self.blip_probability.to_bits() == o.blip_probability.to_bits()
    }
}
impl Eq for Hardening {}

/// Hamming-LSH blocking on published CLKs: `lsh_tables` (L) tables, each keyed by
/// `lsh_bits_per_key` (K) sampled bit positions, skipping the `skip_most_frequent_bits` positions
/// most often set. A pair agreeing on a share s of its bits meets in at least one table with
/// probability 1 − (1 − s^K)^L. Stored and checked here; the matcher applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Blocking {
    pub lsh_bits_per_key: u32,
    pub lsh_tables: u32,
    pub skip_most_frequent_bits: u32,
}

impl Default for Blocking {
    /// K = 20, L = 30, the 64 most frequently set positions skipped — the coordinator's
    /// measured defaults (`ponte_coordinator::blocking::LshParams`; the figures are in
    /// `schemas/default.toml`).
    fn default() -> Self {
        Blocking { lsh_bits_per_key: 20, lsh_tables: 30, skip_most_frequent_bits: 64 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkageSchema {
    pub version: u32,
    pub name: String,
    /// CLK length before hardening; the wire length is [`LinkageSchema::published_clk_bits`].
    pub clk_bits: u32,
    #[serde(default)]
    pub exact_tokens: Vec<String>,
    pub fields: Vec<FieldSpec>,
    #[serde(default)]
    pub hardening: Hardening,
    #[serde(default)]
    pub blocking: Blocking,
}

/// A schema's SHA-256 fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
    /// First 12 hex digits, for messages.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
    pub fn from_slice(b: &[u8]) -> Option<Fingerprint> {
        <[u8; 32]>::try_from(b).ok().map(Fingerprint)
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

impl LinkageSchema {
    /// The built-in default schema.
    pub fn default_schema() -> LinkageSchema {
        LinkageSchema::parse(DEFAULT_SCHEMA_TOML).expect("the bundled default schema is valid")
    }

    /// Parses and checks a schema file's text; the error lists every problem found.
    pub fn parse(text: &str) -> Result<LinkageSchema, Vec<String>> {
        if text.len() > MAX_SCHEMA_BYTES {
            return Err(vec![format!("the schema is {} bytes; the limit is {MAX_SCHEMA_BYTES}", text.len())]);
        }
        let schema: LinkageSchema = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let problems = schema.problems();
        if problems.is_empty() { Ok(schema) } else { Err(problems) }
    }

    /// Reads a schema file.
    pub fn load(path: &std::path::Path) -> Result<LinkageSchema, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the linkage schema {}: {e}", path.display()))?;
        LinkageSchema::parse(&text).map_err(|p| {
            format!("the linkage schema {} has problems:\n  - {}", path.display(), p.join("\n  - "))
        })
    }

    /// Every problem of the schema, each explained; empty when it is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.version != 1 {
            p.push(format!("version = {}: this release reads schema version 1", self.version));
        }
        if !self.clk_bits.is_power_of_two() || !(256..=8192).contains(&self.clk_bits) {
            p.push(format!("clk_bits = {}: use a power of two between 256 and 8192 (1024 is the usual choice)", self.clk_bits));
        }
        if self.fields.is_empty() {
            p.push("fields: at least one field is needed".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, f) in self.fields.iter().enumerate() {
            if !KNOWN_FEATURES.contains(&f.name.as_str()) {
                p.push(format!("fields[{i}].name = {:?}: unknown feature; known: {}", f.name, KNOWN_FEATURES.join(", ")));
            }
            if !seen.insert(&f.name) {
                p.push(format!("fields[{i}].name = {:?}: listed twice", f.name));
            }
            if !(1..=64).contains(&f.bits_per_token) {
                p.push(format!(
                    "fields[{i}] ({}) bits_per_token = {}: use 1 to 64; pick it so about half the filter's bits are set (never a single digit for names)",
                    f.name, f.bits_per_token
                ));
            }
            if let Some(b) = f.field_filter_bits
                && (!b.is_power_of_two() || !(128..=4096).contains(&b))
            {
                p.push(format!(
                    "fields[{i}] ({}) field_filter_bits = {b}: use a power of two between 128 and 4096 (512 or 1024 are usual), or leave it out for no field-level filter",
                    f.name
                ));
            }
        }
        let mut seen_tokens = std::collections::BTreeSet::new();
        for (i, t) in self.exact_tokens.iter().enumerate() {
            if !KNOWN_TOKEN_KINDS.contains(&t.as_str()) {
                p.push(format!("exact_tokens[{i}] = {t:?}: unknown kind; known: {}", KNOWN_TOKEN_KINDS.join(", ")));
            }
            if !seen_tokens.insert(t) {
                p.push(format!("exact_tokens[{i}] = {t:?}: listed twice"));
            }
        }
        self.hardening_problems(&mut p);
        self.blocking_problems(&mut p);
        p
    }

    fn hardening_problems(&self, p: &mut Vec<String>) {
        let h = &self.hardening;
        let mut salted = std::collections::BTreeSet::new();
        for (i, name) in h.salt_with_birth_year.iter().enumerate() {
            if !self.fields.iter().any(|f| &f.name == name) {
                let why = if KNOWN_FEATURES.contains(&name.as_str()) {
                    "not a field of this schema; salt only fields listed under [[fields]]".to_string()
                } else {
                    format!("unknown feature; known: {}", KNOWN_FEATURES.join(", "))
                };
                p.push(format!("hardening.salt_with_birth_year[{i}] = {name:?}: {why}"));
            }
            if !salted.insert(name) {
                p.push(format!("hardening.salt_with_birth_year[{i}] = {name:?}: listed twice"));
            }
        }
        if h.rule90_rounds > MAX_RULE90_ROUNDS {
            p.push(format!(
                "hardening.rule90_rounds = {}: use 0 to {MAX_RULE90_ROUNDS} (each round loses a little information; 1 or 2 diffuse enough)",
                h.rule90_rounds
            ));
        }
        let b = h.blip_probability;
        if !b.is_finite() || !(0.0..0.5).contains(&b) {
            p.push(format!(
                "hardening.blip_probability = {b}: use at least 0 and less than 0.5 (0 = no BLIP; at 0.5 every bit would be noise); small values such as 0.01–0.05 are usual"
            ));
        }
        if h.xor_fold {
            let mut lengths = vec![("clk_bits".to_string(), self.clk_bits)];
            for f in &self.fields {
                if let Some(b) = f.field_filter_bits {
                    lengths.push((format!("field_filter_bits of {}", f.name), b));
                }
            }
            for (what, bits) in lengths {
                if !bits.is_multiple_of(128) {
                    p.push(format!(
                        "hardening.xor_fold: {what} = {bits} cannot be folded in half into whole 64-bit words; use a power of two of at least 128"
                    ));
                }
            }
        }
        let published = self.published_clk_bits();
        if published as usize > 8 * crate::limits::MAX_FILTER_BYTES {
            p.push(format!(
                "clk_bits = {} with balance gives a published filter of {published} bits; the wire limit is {} bits: halve clk_bits or turn on xor_fold",
                self.clk_bits,
                8 * crate::limits::MAX_FILTER_BYTES
            ));
        }
        let filters = self.fields.iter().filter(|f| f.field_filter_bits.is_some()).count();
        if filters > crate::limits::MAX_FIELD_FILTERS {
            p.push(format!("{filters} fields have field_filter_bits; at most {} field-level filters travel per record", crate::limits::MAX_FIELD_FILTERS));
        }
    }

    fn blocking_problems(&self, p: &mut Vec<String>) {
        let b = &self.blocking;
        let published = self.published_clk_bits();
        if !(1..=MAX_LSH_BITS_PER_KEY).contains(&b.lsh_bits_per_key) {
            p.push(format!(
                "blocking.lsh_bits_per_key = {}: use 1 to {MAX_LSH_BITS_PER_KEY} (about 20 at 1024 bits; more bits per key = fewer, surer candidates)",
                b.lsh_bits_per_key
            ));
        }
        if !(1..=MAX_LSH_TABLES).contains(&b.lsh_tables) {
            p.push(format!(
                "blocking.lsh_tables = {}: use 1 to {MAX_LSH_TABLES} (more tables = more true pairs kept, more candidates)",
                b.lsh_tables
            ));
        }
        if b.skip_most_frequent_bits > published / 2 {
            p.push(format!(
                "blocking.skip_most_frequent_bits = {}: at most half the published filter ({} of {published} bits) may be skipped",
                b.skip_most_frequent_bits,
                published / 2
            ));
        } else if b.lsh_bits_per_key > published - b.skip_most_frequent_bits {
            p.push(format!(
                "blocking.lsh_bits_per_key = {}: only {} positions remain after skipping {} of {published}",
                b.lsh_bits_per_key,
                published - b.skip_most_frequent_bits,
                b.skip_most_frequent_bits
            ));
        }
    }

    /// Settings that are valid but risky, each explained (the schema still loads). Callers show
    /// them to whoever writes or checks the schema.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let h = &self.hardening;
        let with_filters: Vec<&FieldSpec> = self.fields.iter().filter(|f| f.field_filter_bits.is_some()).collect();
        if !with_filters.is_empty() && !h.any() {
            w.push(format!(
                "field-level filters ({}) without any hardening: they are the easiest encoding to attack (frequency and constraint-satisfaction attacks); salt them with the birth year and add balance, Rule 90 or BLIP",
                with_filters.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        for f in &self.fields {
            let is_name = NAME_FEATURES.contains(&f.name.as_str());
            if is_name && f.bits_per_token < 10 {
                w.push(format!(
                    "{}: bits_per_token = {} is below 10 for a name field; choose k so about half the CLK's bits are set (never a single digit)",
                    f.name, f.bits_per_token
                ));
            }
            if f.field_filter_bits.is_some() {
                if f.tokenizer == Tokenizer::Whole || LOW_CARDINALITY_FEATURES.contains(&f.name.as_str()) {
                    w.push(format!(
                        "{}: a field-level filter of a whole value or of a feature with few values is a lookup table for anyone who can guess the values; keep such features in the CLK only",
                        f.name
                    ));
                }
                if is_name && h.any() && !h.salt_with_birth_year.contains(&f.name) {
                    w.push(format!(
                        "{}: its field-level filter is not salted with the birth year, the hardening that protects field filters best (Chen et al. 2022)",
                        f.name
                    ));
                }
            }
        }
        if h.salt_with_birth_year.iter().any(|n| n == "birth_year") {
            w.push("hardening.salt_with_birth_year lists birth_year itself: salting it with itself adds nothing".into());
        }
        if h.blip_probability > 0.1 {
            w.push(format!(
                "hardening.blip_probability = {}: flipping more than 10% of the bits costs a lot of linkage quality; measure it in the simulator",
                h.blip_probability
            ));
        }
        let effective = if h.xor_fold { self.clk_bits / 2 } else { self.clk_bits };
        if effective < 512 {
            w.push(format!(
                "the CLK holds {effective} bits after folding: below 512 bits unrelated records start to look alike"
            ));
        }
        if self.blocking.lsh_bits_per_key < 8 {
            w.push(format!(
                "blocking.lsh_bits_per_key = {}: so few bits per key put most pairs in the same bucket; blocking will barely reduce the comparisons",
                self.blocking.lsh_bits_per_key
            ));
        }
        w
    }

    /// The canonical form that is fingerprinted: the salted-field list sorted (its order does
    /// not affect encodings) and a negative-zero BLIP probability written as zero.
    fn canonical(&self) -> LinkageSchema {
        let mut c = self.clone();
        c.hardening.salt_with_birth_year.sort();
        if c.hardening.blip_probability == 0.0 {
            c.hardening.blip_probability = 0.0;
        }
        c
    }

    /// The canonical fingerprint: covers every setting, defaults included.
    pub fn fingerprint(&self) -> Fingerprint {
        let canonical = serde_json::to_vec(&self.canonical()).expect("a schema always serialises");
        let mut h = Sha256::new();
        h.update(b"ponte-linkage-schema/v1\n");
        h.update(&canonical);
        Fingerprint(h.finalize().into())
    }

    /// Length of the record-level filter as published (after folding and balancing), in bits.
    pub fn published_clk_bits(&self) -> u32 {
        self.hardening.published_bits(self.clk_bits)
    }

    /// Length of the record-level filter **on the wire**, in bytes: what the coordinator checks
    /// incoming filters against (`published_clk_bits() / 8`).
    pub fn clk_bytes(&self) -> usize {
        self.published_clk_bits() as usize / 8
    }

    /// Published length of `field`'s field-level filter in bits; `None` when it has none.
    pub fn published_field_filter_bits(&self, field: &FieldSpec) -> Option<u32> {
        field.field_filter_bits.map(|b| self.hardening.published_bits(b))
    }

    /// Fields with a field-level filter and their published lengths in bytes, in schema order
    /// (the order of `Encoding::field_filters`).
    pub fn field_filter_bytes(&self) -> Vec<(&str, usize)> {
        self.fields
            .iter()
            .filter_map(|f| Some((f.name.as_str(), self.published_field_filter_bits(f)? as usize / 8)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schema_is_valid_and_fingerprint_is_stable() {
        let s = LinkageSchema::default_schema();
        assert_eq!(s.clk_bits, 1024);
        assert_eq!(s.fingerprint(), LinkageSchema::default_schema().fingerprint());
        // Names salted with the birth year, nothing else (chosen on the simulator's evidence).
        assert_eq!(s.hardening.salt_with_birth_year, ["surname", "given_names", "given_name_first", "given_name_canonical"]);
        assert!(!s.hardening.balance && !s.hardening.xor_fold && s.hardening.rule90_rounds == 0 && s.hardening.blip_probability == 0.0);
        assert!(s.fields.iter().all(|f| f.field_filter_bits.is_none()));
        assert_eq!((s.published_clk_bits(), s.clk_bytes()), (1024, 128));
        assert!(s.warnings().is_empty(), "{:?}", s.warnings());
    }

    #[test]
    fn a_schema_without_the_new_sections_parses_with_defaults() {
        // The schema files written before hardening and blocking existed still load.
        let old = "version = 1\nname = \"old\"\nclk_bits = 1024\n[[fields]]\nname = \"surname\"\ntokenizer = \"bigrams\"\nbits_per_token = 20\n";
        let s = LinkageSchema::parse(old).unwrap();
        assert_eq!(s.hardening, Hardening::default());
        assert_eq!(s.blocking, Blocking::default());
        assert_eq!(s.fields[0].field_filter_bits, None);
    }

    #[test]
    fn hardened_profile_is_valid_and_its_lengths_are_derived() {
        let s = LinkageSchema::parse(HARDENED_EXAMPLE_SCHEMA_TOML).unwrap();
        assert!(s.hardening.balance && !s.hardening.xor_fold);
        assert_eq!(s.hardening.rule90_rounds, 1);
        assert_eq!(s.hardening.blip_probability, 0.02);
        assert_eq!(s.published_clk_bits(), 2 * s.clk_bits);
        assert_eq!(s.clk_bytes(), 2 * s.clk_bits as usize / 8);
        let filters = s.field_filter_bytes();
        assert_eq!(filters.iter().map(|f| f.0).collect::<Vec<_>>(), ["surname", "given_names"]);
        assert!(s.warnings().is_empty(), "{:?}", s.warnings());
        assert_ne!(s.fingerprint(), LinkageSchema::default_schema().fingerprint());
    }

    #[test]
    fn folding_and_balancing_set_the_published_length() {
        let mut s = LinkageSchema::default_schema();
        s.hardening.xor_fold = true;
        assert_eq!((s.published_clk_bits(), s.clk_bytes()), (512, 64));
        s.hardening.balance = true;
        assert_eq!(s.published_clk_bits(), 1024);
        s.fields[0].field_filter_bits = Some(256);
        assert_eq!(s.published_field_filter_bits(&s.fields[0]), Some(256));
        assert_eq!(s.field_filter_bytes(), vec![("surname", 32)]);
        s.hardening.xor_fold = false;
        s.clk_bits = 8192;
        let p = s.problems();
        assert!(p.len() == 1 && p[0].contains("wire limit"), "{p:?}");
    }

    #[test]
    fn any_change_changes_the_fingerprint() {
        let s = LinkageSchema::default_schema();
        let mut changed: Vec<LinkageSchema> = Vec::new();
        let mut t = s.clone();
        t.fields[0].bits_per_token += 1;
        changed.push(t);
        let mut t = s.clone();
        t.fields.swap(0, 1);
        changed.push(t);
        let mut t = s.clone();
        t.fields[0].field_filter_bits = Some(1024);
        changed.push(t);
        let mut t = s.clone();
        t.hardening.salt_with_birth_year = vec!["surname".into()];
        changed.push(t);
        let mut t = s.clone();
        t.hardening.balance = true;
        changed.push(t);
        let mut t = s.clone();
        t.hardening.xor_fold = true;
        changed.push(t);
        let mut t = s.clone();
        t.hardening.rule90_rounds = 1;
        changed.push(t);
        let mut t = s.clone();
        t.hardening.blip_probability = 0.01;
        changed.push(t);
        let mut t = s.clone();
        t.blocking.lsh_bits_per_key += 1;
        changed.push(t);
        let mut t = s.clone();
        t.blocking.lsh_tables += 1;
        changed.push(t);
        let mut t = s.clone();
        t.blocking.skip_most_frequent_bits = 10;
        changed.push(t);
        let mut prints: Vec<Fingerprint> = changed.iter().map(LinkageSchema::fingerprint).collect();
        prints.push(s.fingerprint());
        let n = prints.len();
        prints.sort_by_key(|f| f.0);
        prints.dedup();
        assert_eq!(prints.len(), n, "two different schemas share a fingerprint");
    }

    #[test]
    fn spelling_that_cannot_change_encodings_keeps_the_fingerprint() {
        let mut a = LinkageSchema::default_schema();
        a.hardening.salt_with_birth_year = vec!["surname".into(), "given_names".into()];
        let mut b = a.clone();
        b.hardening.salt_with_birth_year.reverse();
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.hardening.blip_probability = -0.0;
        assert_eq!(a.fingerprint(), b.fingerprint());
        // Sections spelled out with their default values are the same schema as no sections.
        let cut = DEFAULT_SCHEMA_TOML.find("\n[hardening]").expect("default.toml spells out [hardening]");
        assert!(DEFAULT_SCHEMA_TOML[cut..].contains("\n[blocking]"));
        let mut implicit = LinkageSchema::parse(&DEFAULT_SCHEMA_TOML[..cut]).unwrap();
        let mut spelled = LinkageSchema::default_schema();
        spelled.hardening.salt_with_birth_year.clear();
        implicit.blocking = spelled.blocking.clone();
        assert_eq!(implicit.fingerprint(), spelled.fingerprint());
    }

    #[test]
    fn problems_are_explained() {
        let mut s = LinkageSchema::default_schema();
        s.hardening.salt_with_birth_year.clear();
        s.clk_bits = 1000;
        s.fields[0].name = "colour".into();
        s.exact_tokens.push("passport".into());
        let p = s.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("power of two"));
        assert!(LinkageSchema::parse("version = 1").is_err());
    }

    #[test]
    fn hardening_and_blocking_problems_are_explained() {
        let mut s = LinkageSchema::default_schema();
        s.fields[0].field_filter_bits = Some(1000);
        s.fields[1].field_filter_bits = Some(8192);
        s.hardening.salt_with_birth_year = vec!["surname".into(), "colour".into(), "codice_fiscale_chars".into(), "surname".into()];
        s.hardening.rule90_rounds = 9;
        s.hardening.blip_probability = 0.5;
        s.blocking.lsh_bits_per_key = 0;
        s.blocking.lsh_tables = 1000;
        s.blocking.skip_most_frequent_bits = 600;
        s.exact_tokens.push("stp".into());
        let p = s.problems();
        let expect = [
            "fields[0] (surname) field_filter_bits = 1000",
            "fields[1] (given_names) field_filter_bits = 8192",
            "exact_tokens[5] = \"stp\": listed twice",
            "salt_with_birth_year[1] = \"colour\": unknown feature",
            "salt_with_birth_year[2] = \"codice_fiscale_chars\": not a field of this schema",
            "salt_with_birth_year[3] = \"surname\": listed twice",
            "rule90_rounds = 9",
            "blip_probability = 0.5",
            "lsh_bits_per_key = 0",
            "lsh_tables = 1000",
            "skip_most_frequent_bits = 600",
        ];
        assert_eq!(p.len(), expect.len(), "{p:#?}");
        for (got, want) in p.iter().zip(expect) {
            assert!(got.contains(want), "{got:?} should mention {want:?}");
        }
        for bad in [f64::NAN, -0.01, f64::INFINITY] {
            let mut t = LinkageSchema::default_schema();
            t.hardening.blip_probability = bad;
            assert_eq!(t.problems().len(), 1, "{bad}");
        }
        let mut t = LinkageSchema::default_schema();
        t.hardening.xor_fold = true;
        t.clk_bits = 1001;
        assert!(t.problems().iter().any(|p| p.contains("cannot be folded")), "{:?}", t.problems());
        let mut t = LinkageSchema::default_schema();
        t.clk_bits = 256;
        t.hardening.xor_fold = true;
        t.blocking.lsh_bits_per_key = 100;
        t.blocking.skip_most_frequent_bits = 64;
        assert_eq!(t.problems().len(), 1, "{:?}", t.problems());
        assert!(t.problems()[0].contains("only 64 positions remain after skipping 64 of 128"), "{:?}", t.problems());
        assert!(LinkageSchema::parse(&DEFAULT_SCHEMA_TOML.replace("[blocking]", "[blocking]\nlsh_keys = 3")).is_err());
    }

    #[test]
    fn risky_settings_are_warned_about() {
        let mut s = LinkageSchema::default_schema();
        s.hardening.salt_with_birth_year.clear();
        s.fields[0].field_filter_bits = Some(512);
        s.fields[0].bits_per_token = 8;
        let w = s.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("without any hardening"));
        assert!(w[1].contains("below 10"));
        s.fields[0].bits_per_token = 20;
        s.hardening.rule90_rounds = 1;
        let w = s.warnings();
        assert!(w.len() == 1 && w[0].contains("not salted"), "{w:?}");
        s.hardening.salt_with_birth_year = vec!["surname".into(), "birth_year".into()];
        s.hardening.blip_probability = 0.2;
        s.fields[3].field_filter_bits = Some(128); // sex
        s.hardening.xor_fold = true;
        s.clk_bits = 512;
        s.blocking.lsh_bits_per_key = 4;
        let w = s.warnings();
        for want in ["sex: a field-level filter", "birth_year itself", "0.2", "256 bits after folding", "lsh_bits_per_key = 4"] {
            assert!(w.iter().any(|x| x.contains(want)), "no warning about {want:?} in {w:#?}");
        }
        assert!(s.problems().is_empty(), "{:?}", s.problems());
    }
}
