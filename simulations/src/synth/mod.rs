//! Synthetic Italian populations, care relationships and per-entity CSV exports.
//!
//! What goes in: a [`Scenario`] (population shape, entities, their export formats and error
//! rates, a seed). What comes out: [`Generated`] — the true [`Person`]s, one [`EntityExport`] per
//! entity (CSV bytes plus the `ImportConfig` that reads them) and the [`TruthRow`]s linking every
//! export row to its person.
//!
//! Guarantees:
//! - **Deterministic.** The same scenario gives byte-identical files on every run and machine:
//!   every draw comes from `ChaCha8Rng` streams derived from the seed (one per stage and per
//!   entity, so an entity's export does not depend on the ones before it), and nothing is ever
//!   iterated out of a hash map.
//! - **Readable by its own mapping.** Each export parses with its delimiter, has the headers its
//!   `ImportConfig` names, and every service / status value is mapped there or is Ponte's own.
//! - **Errors are the realistic ones** of DOMAIN.md §5, at per-entity rates ([`ErrorRates`]); with
//!   all rates at 0 an export holds exactly the true identities.
//!
//! Code map: [`population`] draws people, [`care`] who is in care where, [`errors`] what an
//! office types, [`export`] the files, [`truth`] the key; [`names`] and [`calendar`] are data
//! and date helpers; [`scenario`] holds the inputs and the demo federation.

pub mod calendar;
pub mod care;
pub mod errors;
pub mod export;
pub mod names;
pub mod population;
pub mod scenario;
pub mod truth;

#[cfg(test)]
mod tests;

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use errors::{ErrorKind, ErrorRates};
pub use export::EntityExport;
pub use population::Person;
pub use scenario::{EntitySpec, ExportFormat, Field, PopulationSpec, Scenario, demo_scenario};
pub use truth::TruthRow;

/// A scenario that cannot be generated, worded for the person who wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthError(pub String);

impl std::fmt::Display for SynthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SynthError {}

/// Everything generated from one scenario.
#[derive(Debug, Clone)]
pub struct Generated {
    pub persons: Vec<Person>,
    /// One per entity, in the scenario's order.
    pub exports: Vec<EntityExport>,
    /// One per export row: entities in the scenario's order, rows in file order.
    pub truth: Vec<TruthRow>,
}

/// Generates `scenario`.
///
/// # Panics
/// If the scenario fails [`Scenario::check`]; use [`try_generate`] for scenarios read from files.
pub fn generate(scenario: &Scenario) -> Generated {
    try_generate(scenario).unwrap_or_else(|e| panic!("{e}"))
}

/// Generates `scenario` after checking it.
pub fn try_generate(scenario: &Scenario) -> Result<Generated, SynthError> {
    scenario.check()?;
    let mut rng = stage_rng(scenario.seed, "population");
    let persons = population::generate_population(
        &scenario.population,
        scenario.persons,
        scenario.as_of,
        &mut rng,
    )?;
    let mut rng = stage_rng(scenario.seed, "care");
    let registrations = care::assign_care(scenario, &persons, &mut rng);
    let by_surname = population::by_surname(&persons);

    let mut exports = Vec::with_capacity(scenario.entities.len());
    let mut truth = Vec::new();
    for (ei, entity) in scenario.entities.iter().enumerate() {
        let mine: Vec<&care::Registration> =
            registrations.iter().filter(|r| r.entity == ei).collect();
        let ctx = errors::RenderContext {
            format: &entity.export,
            as_of: scenario.as_of,
            persons: &persons,
            by_surname: &by_surname,
        };
        let mut rng = stage_rng(scenario.seed, &format!("export/{}", entity.node_id));
        let (export, rows) = export::build_export(entity, &mine, &persons, &ctx, &mut rng)?;
        exports.push(export);
        truth.extend(rows);
    }
    Ok(Generated {
        persons,
        exports,
        truth,
    })
}

impl Generated {
    /// Writes `<node_id>.csv`, `<node_id>.import.toml` and `truth.csv` into `dir` (created if
    /// missing). Existing files of those names are replaced.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for export in &self.exports {
            std::fs::write(dir.join(&export.file_name), &export.csv)?;
            std::fs::write(
                dir.join(format!("{}.import.toml", export.node_id)),
                self.import_toml(export)?,
            )?;
        }
        std::fs::write(dir.join("truth.csv"), self.truth_csv()?)
    }

    /// The truth file's bytes.
    pub fn truth_csv(&self) -> std::io::Result<Vec<u8>> {
        truth::truth_csv(&self.truth).map_err(std::io::Error::other)
    }

    /// The import mapping of `export` as TOML, with a comment naming the file it reads.
    pub fn import_toml(&self, export: &EntityExport) -> std::io::Result<String> {
        let body = toml::to_string(&export.import).map_err(std::io::Error::other)?;
        Ok(format!(
            "# Import mapping for {} ({}), generated by ponte-sim synth.\n{body}",
            export.file_name, export.entity_name
        ))
    }
}

/// An independent random stream per stage: the seed and the stage's name, mixed (FNV-1a then
/// SplitMix64) into a 64-bit ChaCha8 seed. Stable across platforms and Rust versions.
pub fn stage_rng(seed: u64, stage: &str) -> ChaCha8Rng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stage.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = seed ^ h;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ChaCha8Rng::seed_from_u64(z)
}

/// Index drawn with probability proportional to `weights` (non-negative, positive total).
pub(crate) fn pick_weighted(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    debug_assert!(total > 0.0, "weights must have a positive total");
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    // Rounding can leave x just above the last weight: take the last positive one.
    weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
}
