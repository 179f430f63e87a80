//! `ponte-sim run` and `ponte-sim link` end to end, in process: the real importer, normaliser,
//! encoder and linker on synthetic exports, checked against the synthetic truth.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use ponte_node::secret::LinkageSecret;
use ponte_sim::evaluation::{Evaluation, ProfileQuality};
use ponte_sim::run::{self, LinkArgs, RunArgs};
use ponte_sim::synth;

/// A fresh directory under the system's temporary one, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ponte-sim-run-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The evaluation without what is measured on the clock or the allocator.
fn without_timings(mut ev: Evaluation) -> Evaluation {
    for q in &mut ev.qualities {
        q.encode_secs = 0.0;
        q.link_secs = 0.0;
        q.rss_bytes = 0;
    }
    for s in &mut ev.scaling {
        s.encode_secs = 0.0;
        s.link_secs = 0.0;
    }
    ev
}

#[test]
fn run_links_well_with_both_profiles_and_is_reproducible() {
    let args = RunArgs { persons: 300, seed: 11, scaling: true, ..Default::default() };
    let first = run::run(&args, false).unwrap();
    assert_eq!(first.qualities.iter().map(|q| q.profile.as_str()).collect::<Vec<_>>(), ["default", "hardened"]);
    assert_eq!((first.persons, first.seed, first.scenario.as_str()), (300, 11, "lecce"));
    assert!(first.command.contains("--persons 300 --seed 11 --schema default --schema hardened --scaling"), "{}", first.command);
    assert!(first.attacks.is_empty());
    for q in &first.qualities {
        let ProfileQuality { profile, cross, within, all, .. } = q;
        assert!(cross.true_pairs > 50, "{profile}: the population has cross-entity pairs ({})", cross.true_pairs);
        assert!(cross.f1 > 0.9, "{profile}: cross-entity F1 {} ({cross:?})", cross.f1);
        assert!(all.f1 > 0.9, "{profile}: F1 of all pairs {} ({all:?})", all.f1);
        assert_eq!(all.true_pairs, cross.true_pairs + within.true_pairs);
        assert_eq!(all.linked_pairs, cross.linked_pairs + within.linked_pairs);
        assert!(q.pair_completeness > 0.9 && q.pair_completeness <= 1.0, "{profile}: pair completeness {}", q.pair_completeness);
        assert!(q.reduction_ratio > 0.9 && q.reduction_ratio < 1.0, "{profile}: reduction ratio {}", q.reduction_ratio);
        assert!(q.records > 300 && q.encode_secs > 0.0 && q.link_secs > 0.0, "{profile}: {q:?}");
        assert_eq!(q.schema_fingerprint.len(), 12, "{profile}: short fingerprint");
        // The curve: thresholds rising, recall never rising with them, and capped by the
        // blocking's pair completeness.
        assert_eq!(q.curve.len(), 20);
        for w in q.curve.windows(2) {
            assert!(w[0].threshold < w[1].threshold && w[1].recall <= w[0].recall, "{profile}: {w:?}");
        }
        assert!(q.curve.iter().all(|p| p.recall <= q.pair_completeness + 1e-12));
        let at_half = q.curve.iter().find(|p| p.threshold == 0.5).unwrap();
        assert!(at_half.precision > 0.9 && at_half.recall > 0.85, "{profile}: at 0.5 {at_half:?}");
        // Scaling: 25 %, 50 %, 100 % of the same records.
        let points: Vec<u64> = first.scaling.iter().filter(|s| &s.profile == profile).map(|s| s.records).collect();
        assert_eq!(points.len(), 3);
        assert!(points[0] < points[1] && points[1] < points[2] && points[2] == q.records, "{profile}: {points:?}");
    }
    assert_ne!(first.qualities[0].schema_fingerprint, first.qualities[1].schema_fingerprint);

    let second = run::run(&args, false).unwrap();
    assert_eq!(without_timings(first), without_timings(second), "the same seed gives the same figures");
}

/// Writes a truth `entity,record_id,person_id` from the synth's `truth.csv`
/// (`node_id,record_id,relationship_id,person_id,…`, one row per relationship).
fn convert_truth(from: &Path, to: &Path) {
    let mut reader = csv::Reader::from_path(from).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |n: &str| headers.iter().position(|h| h == n).unwrap_or_else(|| panic!("truth.csv lacks {n}: {headers:?}"));
    let (e, r, p) = (col("node_id"), col("record_id"), col("person_id"));
    let mut seen = BTreeSet::new();
    let mut writer = csv::Writer::from_path(to).unwrap();
    writer.write_record(["entity", "record_id", "person_id"]).unwrap();
    for row in reader.records() {
        let row = row.unwrap();
        if seen.insert((row[e].to_string(), row[r].to_string())) {
            writer.write_record([&row[e], &row[r], &row[p]]).unwrap();
        }
    }
    writer.flush().unwrap();
}

/// Cross-entity precision and recall of an output CSV against a truth, by listing every pair.
fn pair_quality(out: &Path, truth: &Path) -> (f64, f64, usize) {
    let mut person: HashMap<(String, String), String> = HashMap::new();
    for row in csv::Reader::from_path(truth).unwrap().records() {
        let row = row.unwrap();
        person.insert((row[0].to_string(), row[1].to_string()), row[2].to_string());
    }
    let mut rows: Vec<(String, String, u64)> = Vec::new();
    let mut reader = csv::Reader::from_path(out).unwrap();
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), ["entity", "record_id", "cluster_id"]);
    for row in reader.records() {
        let row = row.unwrap();
        rows.push((row[0].to_string(), row[1].to_string(), row[2].parse().unwrap()));
    }
    let (mut linked, mut truly, mut correct) = (0usize, 0usize, 0usize);
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[..i] {
            if a.0 == b.0 {
                continue;
            }
            let same_cluster = a.2 == b.2;
            let same_person = person[&(a.0.clone(), a.1.clone())] == person[&(b.0.clone(), b.1.clone())];
            linked += usize::from(same_cluster);
            truly += usize::from(same_person);
            correct += usize::from(same_cluster && same_person);
        }
    }
    (correct as f64 / linked as f64, correct as f64 / truly as f64, rows.len())
}

#[test]
fn link_writes_clusters_that_agree_with_the_truth() {
    let dir = TempDir::new("link");
    let mut scenario = synth::demo_scenario(300);
    scenario.seed = 5;
    let generated = synth::generate(&scenario);
    generated.write_to(&dir.0).unwrap();
    let truth = dir.0.join("truth-records.csv");
    convert_truth(&dir.0.join("truth.csv"), &truth);
    let secret = dir.0.join("linkage.secret");
    LinkageSecret::from_bytes(1, [7; 32]).save(&secret).unwrap();
    let inputs: Vec<String> = generated
        .exports
        .iter()
        .map(|e| format!("{0}={1}:{2}", e.node_id, dir.0.join(&e.file_name).display(), dir.0.join(format!("{}.import.toml", e.node_id)).display()))
        .collect();
    let args = LinkArgs {
        inputs: inputs.clone(),
        schema: "default".into(),
        secret: Some(secret.clone()),
        out: dir.0.join("clusters.csv"),
        truth: Some(truth.clone()),
        json: false,
    };
    let summary = run::link(&args, false).unwrap();
    assert_eq!(summary.entities.len(), generated.exports.len());
    let q = summary.quality.clone().expect("a truth was given");
    assert_eq!(q.records_without_truth, 0);
    assert!(q.cross.f1 > 0.9, "cross-entity F1 {} ({q:?})", q.cross.f1);

    // The file, checked on its own: one line per record, dense cluster ids in order of first
    // appearance, and pairs that agree with the truth.
    let text = std::fs::read_to_string(&args.out).unwrap();
    let mut keys = BTreeSet::new();
    let mut max_id = 0u64;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert!(keys.insert((f[0].to_string(), f[1].to_string())), "one line per record: {line}");
        let id: u64 = f[2].parse().unwrap();
        assert!(id <= max_id + 1, "cluster ids are dense in order of first appearance: {line}");
        max_id = max_id.max(id);
    }
    assert_eq!(max_id, summary.clusters);
    assert_eq!(keys.len() as u64, summary.records);
    let (precision, recall, rows) = pair_quality(&args.out, &truth);
    assert_eq!(rows as u64, summary.records);
    assert!(precision > 0.9 && recall > 0.9, "precision {precision}, recall {recall}");
    assert!((2.0 * precision * recall / (precision + recall) - q.cross.f1).abs() < 1e-9, "the summary counts as the file says");

    // The same secret gives the same file; the synth's own truth.csv reads as it is.
    let again = LinkArgs { out: dir.0.join("again.csv"), truth: Some(dir.0.join("truth.csv")), ..args.clone() };
    let summary2 = run::link(&again, false).unwrap();
    assert_eq!(std::fs::read(&again.out).unwrap(), text.as_bytes());
    assert_eq!(summary2.quality.unwrap().cross, q.cross);
}

#[test]
fn link_refuses_malformed_inputs_clearly() {
    let dir = TempDir::new("link-bad");
    let mut scenario = synth::demo_scenario(20);
    scenario.seed = 3;
    synth::generate(&scenario).write_to(&dir.0).unwrap();
    let csv = dir.0.join("asl-lecce.csv");
    let mapping = dir.0.join("asl-lecce.import.toml");
    let args = |inputs: Vec<String>| LinkArgs {
        inputs,
        schema: "default".into(),
        secret: None,
        out: dir.0.join("out.csv"),
        truth: None,
        json: true,
    };
    let err = |inputs: Vec<String>| format!("{:#}", run::link(&args(inputs), false).unwrap_err());

    let e = err(vec![format!("{}", csv.display())]);
    assert!(e.contains("expected ENTITY=EXPORT.csv:MAPPING.toml"), "{e}");
    let e = err(vec![format!("asl-lecce={}", csv.display())]);
    assert!(e.contains("no ':' between the export and its mapping"), "{e}");
    let e = err(vec![format!("asl-lecce={}:{}", dir.0.join("nope.csv").display(), mapping.display())]);
    assert!(e.contains("cannot read the export") && e.contains("nope.csv"), "{e}");
    let e = err(vec![format!("asl-lecce={}:{}", csv.display(), dir.0.join("nope.toml").display())]);
    assert!(e.contains("cannot read the import mapping") && e.contains("nope.toml"), "{e}");
    std::fs::write(dir.0.join("bad.toml"), "delimiter = \";\"\n[columns]\nrecord_id = \"id\"\n").unwrap();
    let e = err(vec![format!("asl-lecce={}:{}", csv.display(), dir.0.join("bad.toml").display())]);
    assert!(e.contains("bad.toml") && e.contains("not an import mapping"), "{e}");
    let twice = format!("asl-lecce={}:{}", csv.display(), mapping.display());
    let e = err(vec![twice.clone(), twice]);
    assert!(e.contains("given twice"), "{e}");
    // The right export with another entity's mapping: the columns it lacks are named.
    let other = dir.0.join("comune-lecce.import.toml");
    let e = err(vec![format!("asl-lecce={}:{}", csv.display(), other.display())]);
    assert!(e.contains("lacks the columns"), "{e}");
    assert!(!dir.0.join("out.csv").exists(), "nothing is written when an input is wrong");
}

/// The live federation (processes over mTLS), small. Needs the node and coordinator binaries
/// (built by cargo when missing): `cargo test -p ponte-sim --test run -- --ignored`.
#[test]
#[ignore]
fn run_against_a_live_federation() {
    let dir = TempDir::new("federation");
    let args = RunArgs { persons: 80, seed: 3, federation: Some(dir.0.join("fed")), ..Default::default() };
    let ev = run::run(&args, false).unwrap();
    run::print(&ev, false);
    assert_eq!(ev.qualities.len(), 2);
    for q in &ev.qualities {
        assert!(q.cross.true_pairs > 0 && q.cross.f1 > 0.85, "{q:?}");
        assert!(q.link_secs > 0.0 && q.records > 80 && q.rss_bytes > 0, "{q:?}");
        assert_eq!((q.pair_completeness, q.reduction_ratio, q.encode_secs, q.curve.len()), (0.0, 0.0, 0.0, 0));
        assert_eq!(q.within, Default::default());
    }
    // The hardened profile's schema reached the coordinator: its CLKs (twice as long) were taken.
    assert_ne!(ev.qualities[0].schema_fingerprint, ev.qualities[1].schema_fingerprint);
    let again = run::run(&args, false).unwrap_err().to_string();
    assert!(again.contains("already holds a federation"), "{again}");
}

/// The whole research command: figures, attacks and the report with its three plots; the
/// attacks find clearly more on the unhardened baseline than on the default profile.
#[test]
fn run_with_attacks_writes_a_report_whose_attacks_favour_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ponte-sim"))
        .args(["run", "demo", "--persons", "600", "--schema", "unhardened", "--schema", "default", "--attacks", "--scaling", "--json", "--report"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ev: ponte_sim::evaluation::Evaluation = serde_json::from_slice(&out.stdout).unwrap();
    let worst = |profile: &str| ev.attacks.iter().filter(|a| a.profile == profile).map(|a| a.share_records).fold(0.0, f64::max);
    assert!(worst("unhardened") > 0.3, "the attacks should break the unhardened baseline: {:?}", ev.attacks);
    assert!(worst("default") < 0.05, "the default profile leaks: {:?}", ev.attacks);
    for f in ["report.md", "report.html", "precision_recall.svg", "quality_privacy.svg", "scaling.svg"] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("| unhardened |") && md.contains("pattern-mining") && md.contains("ponte-sim run demo --persons 600"), "{md}");
    let svg = std::fs::read_to_string(dir.path().join("quality_privacy.svg")).unwrap();
    assert!(svg.contains("unhardened") && svg.contains("default"), "the quality/privacy plot names its profiles");
}
