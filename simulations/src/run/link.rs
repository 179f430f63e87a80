//! `ponte-sim link`: Ponte's whole pipeline in process over a researcher's own entity exports.
//!
//! Each input is `ENTITY=EXPORT.csv:MAPPING.toml`: the export is read by the node's importer with
//! the mapping (a node `[import]` section: `ponte_node::config::ImportConfig`, as `ponte-sim
//! generate` writes `*.import.toml`), normalised and encoded by the node's encoder, and every
//! entity's records are linked together by the coordinator's linker — as a federation would,
//! without a network. The encodings never leave the process.
//!
//! Output: a CSV `entity,record_id,cluster_id`, one line per distinct `(entity, record_id)`
//! linked (the first importable row of each record id; rows the importer rejects are reported,
//! not linked; rows marked `never_encode` are left out, as a node leaves them out), inputs in
//! the order given and records in file order. A cluster is a person as the linker sees it
//! (certain and probable links; possible links are counted, never merged); cluster ids are
//! dense from 1 in order of first appearance, so the same encodings give the same file. (With a
//! fresh random secret the encodings differ from run to run; give `--secret` for identical
//! files.)
//!
//! With a truth CSV (`entity,record_id,person_id`; `node_id` is accepted for `entity`, so
//! `truth.csv` of `ponte-sim generate` reads as it is), precision, recall and F1 of the
//! clustering are reported for cross-entity pairs, within-entity pairs (duplicates) and all
//! pairs — counted as `ponte-sim run` counts them, over the records of the output that the
//! truth knows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use ponte_coordinator::linker::Band;
use ponte_node::config::{ImportConfig, MAX_CONFIG_BYTES};
use ponte_node::encode::Encoder;
use ponte_node::normalise::NormalisedIdentity;
use ponte_node::secret::LinkageSecret;
use serde::Serialize;

use super::metrics::{self, Member};
use super::{bar, clusters_of, encode_all, import_records, link_encodings, load_profile, spinner};
use crate::evaluation::Scores;

/// Most inputs (entities) of one link.
pub const MAX_INPUTS: usize = 64;
/// Longest entity name.
pub const MAX_ENTITY_CHARS: usize = 64;
/// Import problems listed per entity (all are counted).
pub const REJECTIONS_LISTED: usize = 5;

const INPUT_FORM: &str = "ENTITY=EXPORT.csv:MAPPING.toml (e.g. asl-lecce=exports/asl-lecce.csv:exports/asl-lecce.import.toml)";

/// `ponte-sim link`.
#[derive(Debug, Clone, clap::Args)]
pub struct LinkArgs {
    /// An entity's export and its import mapping, as ENTITY=EXPORT.csv:MAPPING.toml; repeatable,
    /// one per entity. MAPPING is a node `[import]` section (delimiter, date_format, columns,
    /// services, statuses), as `ponte-sim generate` writes `<entity>.import.toml`.
    #[arg(long = "input", short = 'i', required = true, value_name = "ENTITY=EXPORT.csv:MAPPING.toml")]
    pub inputs: Vec<String>,
    /// Linkage schema: `default`, `hardened`, `unhardened` or a schema file.
    #[arg(long, default_value = "default")]
    pub schema: String,
    /// Linkage secret file (`ponte-node secret generate`); default: a fresh random secret, used
    /// in this process only.
    #[arg(long)]
    pub secret: Option<PathBuf>,
    /// Where to write the clusters: CSV `entity,record_id,cluster_id`.
    #[arg(long)]
    pub out: PathBuf,
    /// Truth CSV `entity,record_id,person_id` (or `node_id,record_id,…,person_id,…` as
    /// `ponte-sim generate` writes it): report precision, recall and F1 of the clustering.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What the importer made of one entity's export.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EntityImport {
    pub entity: String,
    pub export: PathBuf,
    pub rows_read: u64,
    pub rows_imported: u64,
    pub rows_rejected: u64,
    /// Imported rows marked never to be encoded: left out.
    pub rows_never_encoded: u64,
    /// Distinct record ids linked.
    pub records: u64,
    /// The first rejections, as `line N, FIELD: REASON`.
    pub first_rejections: Vec<String>,
}

/// Quality of the clustering against a truth.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LinkQuality {
    /// Records of the output the truth knows (scored).
    pub records_scored: u64,
    /// Records of the output the truth does not know (left out of the scores).
    pub records_without_truth: u64,
    pub cross: Scores,
    pub within: Scores,
    pub all: Scores,
}

/// What `link` did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LinkSummary {
    /// The profile (`default`, … or the schema file's stem) and its fingerprint.
    pub schema: String,
    pub schema_fingerprint: String,
    pub entities: Vec<EntityImport>,
    pub records: u64,
    pub clusters: u64,
    /// Clusters holding records of two or more entities.
    pub clusters_multi_entity: u64,
    /// Certain and probable links (they make the clusters).
    pub strong_links: u64,
    /// Possible links: never merged, to be verified.
    pub possible_links: u64,
    /// Seconds to import (read, normalise) and encode every export.
    pub encode_secs: f64,
    /// Seconds to block, score and cluster.
    pub link_secs: f64,
    pub out: PathBuf,
    pub quality: Option<LinkQuality>,
}

/// One parsed `ENTITY=EXPORT:MAPPING`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Input {
    entity: String,
    export: PathBuf,
    mapping: PathBuf,
}

fn parse_input(arg: &str) -> anyhow::Result<Input> {
    let bad = |why: &str| anyhow::anyhow!("--input {arg:?}: {why}; expected {INPUT_FORM}");
    let (entity, files) = arg.split_once('=').ok_or_else(|| bad("no '=' after the entity name"))?;
    let entity = entity.trim();
    if entity.is_empty() {
        return Err(bad("the entity name is empty"));
    }
    if entity.chars().count() > MAX_ENTITY_CHARS || !entity.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(bad(&format!("the entity name must be 1 to {MAX_ENTITY_CHARS} letters, digits, '-', '_' or '.'")));
    }
    let (export, mapping) = files.rsplit_once(':').ok_or_else(|| bad("no ':' between the export and its mapping"))?;
    if export.is_empty() || mapping.is_empty() {
        return Err(bad("the export or the mapping path is empty"));
    }
    Ok(Input { entity: entity.to_string(), export: PathBuf::from(export), mapping: PathBuf::from(mapping) })
}

/// Reads an import mapping: an `ImportConfig` at the top level, or under an `[import]` table (a
/// node configuration's section).
fn read_mapping(path: &Path) -> anyhow::Result<ImportConfig> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read the import mapping {}", path.display()))?;
    ensure!(meta.len() <= MAX_CONFIG_BYTES, "the import mapping {} is larger than {MAX_CONFIG_BYTES} bytes", path.display());
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the import mapping {}", path.display()))?;
    let value: toml::Table = toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
    let value = match value.get("import") {
        Some(toml::Value::Table(t)) if !value.contains_key("columns") => t.clone(),
        _ => value,
    };
    let cfg: ImportConfig = value
        .try_into()
        .with_context(|| format!("{}: not an import mapping (delimiter, date_format, [columns], [services], [statuses])", path.display()))?;
    cfg.check().with_context(|| format!("{}: the import mapping has a problem", path.display()))?;
    Ok(cfg)
}

/// Reads a truth CSV: `(entity, record_id) → person`, person ids interned in order.
fn read_truth(path: &Path) -> anyhow::Result<HashMap<(String, String), u64>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("cannot read the truth {}", path.display()))?;
    let headers = reader.headers().with_context(|| format!("{}: cannot read the header line", path.display()))?.clone();
    let col = |names: &[&str]| headers.iter().position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)));
    let (Some(c_entity), Some(c_record), Some(c_person)) = (col(&["entity", "node_id"]), col(&["record_id"]), col(&["person_id"])) else {
        bail!(
            "{}: the truth needs the columns entity (or node_id), record_id and person_id; found: {}",
            path.display(),
            headers.iter().collect::<Vec<_>>().join(", ")
        );
    };
    let mut persons: HashMap<String, u64> = HashMap::new();
    let mut truth = HashMap::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{}: line {}", path.display(), i + 2))?;
        let get = |c: usize| row.get(c).unwrap_or("").trim().to_string();
        let (entity, record, person) = (get(c_entity), get(c_record), get(c_person));
        ensure!(
            !entity.is_empty() && !record.is_empty() && !person.is_empty(),
            "{}: line {}: an empty entity, record_id or person_id",
            path.display(),
            i + 2
        );
        let next = persons.len() as u64;
        let p = *persons.entry(person).or_insert(next);
        if let Some(old) = truth.insert((entity.clone(), record.clone()), p) {
            ensure!(old == p, "{}: record {record} of {entity} is given two different persons", path.display());
        }
    }
    Ok(truth)
}

/// Links the inputs and writes the clusters to `args.out`. Every input file (mappings, exports,
/// secret, truth) is checked before any work.
pub fn link(args: &LinkArgs, progress: bool) -> anyhow::Result<LinkSummary> {
    ensure!(!args.inputs.is_empty(), "give at least one --input {INPUT_FORM}");
    ensure!(args.inputs.len() <= MAX_INPUTS, "at most {MAX_INPUTS} inputs");
    let inputs = args.inputs.iter().map(|a| parse_input(a)).collect::<anyhow::Result<Vec<_>>>()?;
    for (i, a) in inputs.iter().enumerate() {
        ensure!(!inputs[..i].iter().any(|b| b.entity == a.entity), "entity {:?} is given twice; one --input per entity", a.entity);
    }
    let profile = load_profile(&args.schema)?;
    let secret = match &args.secret {
        Some(p) => LinkageSecret::load(p).map_err(anyhow::Error::msg)?,
        None => LinkageSecret::generate(1),
    };
    let mappings = inputs.iter().map(|i| read_mapping(&i.mapping)).collect::<anyhow::Result<Vec<_>>>()?;
    for i in &inputs {
        ensure!(i.export.is_file(), "cannot read the export {} (entity {}): no such file", i.export.display(), i.entity);
    }
    let truth = args.truth.as_deref().map(read_truth).transpose()?;

    // Import and encode.
    let started = Instant::now();
    let pb = bar(progress, inputs.len() as u64, "importing");
    let mut entities = Vec::new();
    let mut owners: Vec<(u32, String)> = Vec::new();
    let mut identities: Vec<NormalisedIdentity> = Vec::new();
    for (e, (input, cfg)) in inputs.iter().zip(&mappings).enumerate() {
        pb.set_message(format!("importing {}", input.entity));
        let file = std::fs::File::open(&input.export).with_context(|| format!("cannot read the export {}", input.export.display()))?;
        let (records, report) = import_records(std::io::BufReader::new(file), &input.export.to_string_lossy(), cfg)
            .map_err(|err| anyhow::anyhow!("entity {}: {err}", input.entity))?;
        entities.push(EntityImport {
            entity: input.entity.clone(),
            export: input.export.clone(),
            rows_read: report.rows_read,
            rows_imported: report.rows_imported,
            rows_rejected: report.rows_rejected,
            rows_never_encoded: report.never_encoded,
            records: records.len() as u64,
            first_rejections: report
                .problems
                .iter()
                .filter(|p| p.severity == "rejected")
                .take(REJECTIONS_LISTED)
                .map(|p| format!("line {}, {}: {}", p.line, p.field, p.reason))
                .collect(),
        });
        for r in records {
            owners.push((e as u32, r.record_id));
            identities.push(r.identity);
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    ensure!(!identities.is_empty(), "no record could be imported (see the rejections of each input)");
    let pb = spinner(progress, format!("encoding {} records", identities.len()));
    let encoder = Encoder::new(&secret, &profile.schema);
    let refs: Vec<&NormalisedIdentity> = identities.iter().collect();
    let encodings = encode_all(&encoder, &refs);
    drop(refs);
    drop(identities);
    let encode_secs = started.elapsed().as_secs_f64();
    pb.finish_and_clear();

    // Link.
    let pb = spinner(progress, format!("linking {} records", encodings.len()));
    let started = Instant::now();
    let linker = link_encodings(&profile.schema, &encodings)?;
    let link_secs = started.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let clusters = clusters_of(&linker, encodings.len());
    let links = linker.links();
    drop(linker);

    // Dense cluster ids in order of first appearance; the output.
    let mut dense: HashMap<u64, u64> = HashMap::new();
    let mut entities_of: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut writer = csv::Writer::from_path(&args.out).with_context(|| format!("cannot write {}", args.out.display()))?;
    writer.write_record(["entity", "record_id", "cluster_id"])?;
    for ((e, record_id), c) in owners.iter().zip(&clusters) {
        let next = dense.len() as u64 + 1;
        let id = *dense.entry(*c).or_insert(next);
        let es = entities_of.entry(id).or_default();
        if !es.contains(e) {
            es.push(*e);
        }
        writer.write_record([inputs[*e as usize].entity.as_str(), record_id.as_str(), &id.to_string()])?;
    }
    writer.flush().with_context(|| format!("cannot write {}", args.out.display()))?;

    let quality = truth.map(|truth| {
        let mut members = Vec::new();
        let mut without = 0u64;
        for ((e, record_id), c) in owners.iter().zip(&clusters) {
            match truth.get(&(inputs[*e as usize].entity.clone(), record_id.clone())) {
                Some(&person) => members.push(Member { entity: *e, person, cluster: *c }),
                None => without += 1,
            }
        }
        let s = metrics::cluster_scores(&members);
        LinkQuality { records_scored: members.len() as u64, records_without_truth: without, cross: s.cross, within: s.within, all: s.all }
    });

    Ok(LinkSummary {
        schema: profile.name.clone(),
        schema_fingerprint: profile.schema.fingerprint().short(),
        entities,
        records: owners.len() as u64,
        clusters: dense.len() as u64,
        clusters_multi_entity: entities_of.values().filter(|e| e.len() >= 2).count() as u64,
        strong_links: links.iter().filter(|l| l.2.is_strong()).count() as u64,
        possible_links: links.iter().filter(|l| l.2 == Band::Possible).count() as u64,
        encode_secs,
        link_secs,
        out: args.out.clone(),
        quality,
    })
}

/// Prints the summary: one line of JSON with `json`, text for a person otherwise.
pub fn print_link(s: &LinkSummary, json: bool) {
    if json {
        println!("{}", serde_json::to_string(s).unwrap_or_default());
        return;
    }
    println!("Linked with the {} profile (schema {}):", s.schema, s.schema_fingerprint);
    for e in &s.entities {
        println!(
            "  {:<20} {:>8} rows read, {:>8} imported, {:>6} rejected, {:>8} records{}",
            e.entity,
            e.rows_read,
            e.rows_imported,
            e.rows_rejected,
            e.records,
            if e.rows_never_encoded > 0 { format!(" ({} rows never to be encoded, left out)", e.rows_never_encoded) } else { String::new() }
        );
        for r in &e.first_rejections {
            println!("      rejected: {r}");
        }
        if e.rows_rejected > e.first_rejections.len() as u64 {
            println!("      … and {} more rejected rows", e.rows_rejected - e.first_rejections.len() as u64);
        }
    }
    println!(
        "  {} records in {} clusters ({} spanning two or more entities); {} certain/probable links, {} possible links (not merged, to be verified)",
        s.records, s.clusters, s.clusters_multi_entity, s.strong_links, s.possible_links
    );
    println!("  import and encoding {:.2} s, linking {:.2} s", s.encode_secs, s.link_secs);
    println!("  clusters written to {}", s.out.display());
    if let Some(q) = &s.quality {
        println!("  against the truth ({} records scored, {} not in the truth):", q.records_scored, q.records_without_truth);
        for (name, sc) in [("cross-entity", &q.cross), ("within-entity", &q.within), ("all pairs", &q.all)] {
            println!(
                "    {name:<14} precision {:.4}  recall {:.4}  F1 {:.4}  ({} linked, {} correct, {} true pairs)",
                sc.precision, sc.recall, sc.f1, sc.linked_pairs, sc.correct_pairs, sc.true_pairs
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_parse_and_malformed_ones_say_the_expected_form() {
        let i = parse_input("asl-lecce=exports/asl.csv:exports/asl.import.toml").unwrap();
        assert_eq!(i.entity, "asl-lecce");
        assert_eq!(i.export, PathBuf::from("exports/asl.csv"));
        assert_eq!(i.mapping, PathBuf::from("exports/asl.import.toml"));
        // A colon inside the export path: the mapping is after the last one.
        let i = parse_input("x=C:/data/asl.csv:m.toml").unwrap();
        assert_eq!((i.export, i.mapping), (PathBuf::from("C:/data/asl.csv"), PathBuf::from("m.toml")));
        for bad in ["asl.csv:m.toml", "=a.csv:m.toml", "asl=a.csv", "asl=:m.toml", "a b=a.csv:m.toml", "asl=a.csv:"] {
            let e = parse_input(bad).unwrap_err().to_string();
            assert!(e.contains("expected ENTITY=EXPORT.csv:MAPPING.toml"), "{bad}: {e}");
        }
    }

    #[test]
    fn mappings_read_at_top_level_or_under_import_and_bad_ones_are_named() {
        let dir = std::env::temp_dir().join(format!("ponte-link-mapping-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let top = dir.join("top.toml");
        std::fs::write(
            &top,
            "delimiter = \",\"\n[columns]\nrecord_id = \"id\"\nsurname = \"s\"\ngiven_names = \"g\"\nbirth_date = \"b\"\nservice = \"sv\"\nstatus = \"st\"\nsince = \"d\"\n",
        )
        .unwrap();
        let cfg = read_mapping(&top).unwrap();
        assert_eq!((cfg.delimiter.as_str(), cfg.columns.record_id.as_str()), (",", "id"));
        let nested = dir.join("nested.toml");
        std::fs::write(&nested, "node_id = \"x\"\n[import]\ndelimiter = \"|\"\n").unwrap();
        assert_eq!(read_mapping(&nested).unwrap().delimiter, "|");
        let unknown = dir.join("unknown.toml");
        std::fs::write(&unknown, "delimiter = \";\"\ncolour = \"red\"\n").unwrap();
        let e = format!("{:#}", read_mapping(&unknown).unwrap_err());
        assert!(e.contains("not an import mapping") && e.contains("colour"), "{e}");
        let bad_delim = dir.join("bad.toml");
        std::fs::write(&bad_delim, "delimiter = \"ab\"\n").unwrap();
        let e = format!("{:#}", read_mapping(&bad_delim).unwrap_err());
        assert!(e.contains("delimiter"), "{e}");
        let e = format!("{:#}", read_mapping(&dir.join("missing.toml")).unwrap_err());
        assert!(e.contains("cannot read the import mapping"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
