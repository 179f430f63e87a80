//! `ponte-sim bench load` end to end, tiny: the real coordinator binary over mutual TLS with a
//! real sled store, loaded with 2,000 items, asked by two clients while a node publishes; then
//! the prepared directory reused for an open-loop run pinned to one CPU. Asserts what the report
//! says happened (answers, no errors, what the coordinator holds), never how fast.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const REQUIRED: [&str; 13] = [
    "questions_per_s",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "errors",
    "indexed",
    "coordinator_rss_bytes",
    "cores",
    "clients",
    "duration_s",
    "publish_items_per_s",
    "answered",
    "refused",
];

fn bench(dir: &Path, extra: &[&str]) -> (Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ponte-sim"))
        .args(["bench", "load", "--json", "--dir"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return (Vec::new(), stderr);
    }
    let reports = stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    (reports, stderr)
}

fn f(r: &Value, k: &str) -> f64 {
    r[k].as_f64().unwrap_or_else(|| panic!("{k} is not a number in {r}"))
}

fn u(r: &Value, k: &str) -> u64 {
    r[k].as_u64().unwrap_or_else(|| panic!("{k} is not a count in {r}"))
}

fn check_common(r: &Value, items: u64) {
    for k in REQUIRED {
        assert!(r.get(k).is_some_and(|v| !v.is_null()), "{k} missing in {r}");
    }
    assert_eq!(r["benchmark"], "load");
    assert!(u(r, "answered") > 0, "{r}");
    assert_eq!(u(r, "errors"), 0, "{r}");
    assert_eq!(r["errors_by_code"].as_object().map(|m| m.len()), Some(0), "{r}");
    assert_eq!(u(r, "refused"), 0, "every anchor is active and every role/purpose allowed: {r}");
    assert!(u(r, "answers_with_others") > 0, "some anchors' persons are held by other nodes: {r}");
    assert!(u(r, "indexed") >= items, "{r}");
    assert!(f(r, "questions_per_s") > 0.0);
    let (p50, p99, max) = (f(r, "p50_ms"), f(r, "p99_ms"), f(r, "max_ms"));
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max * 1.001, "{r}");
    assert!(u(r, "coordinator_rss_bytes") > 1_000_000, "{r}");
    assert!(u(r, "coordinator_rss_peak_bytes") >= u(r, "coordinator_rss_bytes"), "{r}");
    assert!(u(r, "cores") >= 1);
    assert_eq!(r["coordinator_cpus"].as_array().map(Vec::len), Some(u(r, "cores") as usize), "{r}");
    assert!(r["machine"]["cpus_online"].as_u64().is_some_and(|n| n >= 1), "{r}");
    assert_eq!(r["load"]["items"], items, "{r}");
    assert!(f(&r["load"], "items_per_s") > 0.0, "{r}");
}

#[test]
fn a_tiny_load_benchmark_reports_real_answers_then_reuses_its_directory() {
    let dir = TempDir(std::env::temp_dir().join(format!("ponte-sim-bench-load-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let items = 2_000u64;

    // Prepare and measure: two closed-loop clients while the publisher sends 200 items/s.
    let (reports, stderr) = bench(
        &dir.0,
        &["--items", "2000", "--clients", "2", "--duration", "2", "--warmup", "0.5", "--publish-rate", "200", "--publish-batch", "50", "--cores", "all"],
    );
    assert_eq!(reports.len(), 1, "one JSON object for one --cores setting; stderr:\n{stderr}");
    let r = &reports[0];
    check_common(r, items);
    assert_eq!(r["loaded_in_this_run"], true);
    assert_eq!(r["mode"], "closed");
    assert_eq!(u(r, "clients"), 2);
    assert_eq!(r["indexed_at_start"], items, "exactly what was loaded: {r}");
    assert!(f(r, "publish_items_per_s") > 0.0, "{r}");
    assert_eq!(u(&r["publish"], "errors"), 0, "{r}");
    assert!(u(&r["publish"], "items") > 0, "{r}");
    assert!(dir.0.join("bench-load.json").exists() && dir.0.join("anchors.tsv").exists());

    // Reused: no load, the coordinator restarted on its store (which now also holds what the
    // publisher sent), pinned to one CPU, one open-loop client, nobody publishing.
    let (reports, stderr) = bench(&dir.0, &["--clients", "1", "--rate", "40", "--duration", "2", "--warmup", "0", "--publish-rate", "0", "--cores", "1"]);
    assert_eq!(reports.len(), 1, "stderr:\n{stderr}");
    let r2 = &reports[0];
    check_common(r2, items);
    assert_eq!(r2["loaded_in_this_run"], false);
    assert_eq!(r2["mode"], "open");
    assert_eq!(u(r2, "cores"), 1);
    assert!(u(r2, "indexed_at_start") >= u(r, "indexed_at_start") + u(&r["publish"], "new_items"), "the new items stayed: {r2}");
    assert_eq!(f(r2, "publish_items_per_s"), 0.0);
    assert!(r2["publish"].is_null());

    // A prepared directory is never silently reloaded with another size.
    let (reports, stderr) = bench(&dir.0, &["--items", "3000", "--duration", "1"]);
    assert!(reports.is_empty());
    assert!(stderr.contains("holds 2000 items, not --items 3000"), "{stderr}");
}
