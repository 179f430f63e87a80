//! The linkage schema: which identity features are hashed into the record-level filter, how,
//! and which keyed exact tokens travel next to it.
//!
//! Its canonical fingerprint — SHA-256 over a fixed prefix and the schema's canonical JSON (field
//! order as declared here, features in file order) — travels with every encoding. Two schemas
//! with the same fingerprint encode identically under the same secret; any change to a value that
//! affects encodings changes the fingerprint.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The schema every federation starts from (`proto/schemas/default.toml`).
pub const DEFAULT_SCHEMA_TOML: &str = include_str!("../schemas/default.toml");

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    pub tokenizer: Tokenizer,
    pub bits_per_token: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkageSchema {
    pub version: u32,
    pub name: String,
    pub clk_bits: u32,
    #[serde(default)]
    pub exact_tokens: Vec<String>,
    pub fields: Vec<FieldSpec>,
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
        }
        for (i, t) in self.exact_tokens.iter().enumerate() {
            if !KNOWN_TOKEN_KINDS.contains(&t.as_str()) {
                p.push(format!("exact_tokens[{i}] = {t:?}: unknown kind; known: {}", KNOWN_TOKEN_KINDS.join(", ")));
            }
        }
        p
    }

    /// The canonical fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        let canonical = serde_json::to_vec(self).expect("a schema always serialises");
        let mut h = Sha256::new();
        h.update(b"ponte-linkage-schema/v1\n");
        h.update(&canonical);
        Fingerprint(h.finalize().into())
    }

    /// Filter length in bytes.
    pub fn clk_bytes(&self) -> usize {
        self.clk_bits as usize / 8
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
    }

    #[test]
    fn any_change_changes_the_fingerprint() {
        let s = LinkageSchema::default_schema();
        let mut t = s.clone();
        t.fields[0].bits_per_token += 1;
        assert_ne!(s.fingerprint(), t.fingerprint());
        let mut u = s.clone();
        u.fields.swap(0, 1);
        assert_ne!(s.fingerprint(), u.fingerprint());
    }

    #[test]
    fn problems_are_explained() {
        let mut s = LinkageSchema::default_schema();
        s.clk_bits = 1000;
        s.fields[0].name = "colour".into();
        s.exact_tokens.push("passport".into());
        let p = s.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("power of two"));
        assert!(LinkageSchema::parse("version = 1").is_err());
    }
}
