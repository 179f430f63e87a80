//! `ponte-node import` on bad input, end to end through the real binary and a real sled store:
//! a stray quote, control characters in ids, a directory and a FIFO. Each bad row is reported
//! with its line, field and reason, and every other row is imported; a path that is not a
//! regular file is refused before anything reads it.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ponte_e2e::*;

/// Runs ponte-node with `args`; fails the test (killing it) if it has not ended in 60 s.
fn node_within_deadline(config: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(bin_dir().join("ponte-node"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            panic!("`ponte-node {}` still running after 60 s (killed):\n{}", args.join(" "), text(&o));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn status(config: &Path) -> serde_json::Value {
    let o = node(config, &["--json", "status"]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn bad_rows_are_reported_with_line_field_and_reason_and_every_other_row_is_imported() {
    let fed = Federation::new();
    let config = fed.node_config("asl-lecce", &default_import());
    let row = |id: &str, rel: &str, surname: &str, given: &str| {
        format!("{id};{rel};{surname};{given};M;1940-02-11;Lecce;;cure_domiciliari;attiva;2024-03-01;distretto-lecce;S")
    };
    let export = small_export(
        fed.dir.path(),
        "export.csv",
        &[
            row("P1", "R1", "Rossi", "Mario"),         // line 2
            row("P2", "R2", "\"Quarta", "Cosimo"),     // line 3: the quote never closes
            row("P3", "R3", "Greco", "Cosimo"),        // line 4
            row("P\u{0}4", "R4", "Longo", "Antonio"),  // line 5: NUL in the record id
            row("P5", "R5\u{1b}", "Rizzo", "Giuseppe"), // line 6: ESC in the relationship id
            row("P6", "R6", "Perrone", "Salvatore"),   // line 7
        ],
    );
    // Line 8: the file ends inside a quote (no newline after it).
    let mut bytes = std::fs::read(&export).unwrap();
    bytes.extend(row("P7", "R7", "Carluccio", "\"Rosa").as_bytes());
    std::fs::write(&export, bytes).unwrap();
    let export = export.to_string_lossy().into_owned();

    let o = node_within_deadline(&config, &["--json", "import", &export]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (report["rows_read"].as_u64(), report["rows_imported"].as_u64(), report["rows_rejected"].as_u64()),
        (Some(7), Some(3), Some(4)),
        "{report:#}"
    );
    let rejected: Vec<(u64, String, String)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["severity"] == "rejected")
        .map(|p| (p["line"].as_u64().unwrap(), p["field"].as_str().unwrap().to_string(), p["reason"].as_str().unwrap().to_string()))
        .collect();
    let expected = [
        (3, "surname", "unterminated quote opened at line 3: the quoted field does not close on its line"),
        (5, "record_id", "holds the control character U+0000 at character 2"),
        (6, "relationship_id", "holds the control character U+001B at character 3"),
        (8, "given_names", "unterminated quote opened at line 8: the quoted field does not close on its line"),
    ];
    assert_eq!(rejected.len(), expected.len(), "{rejected:#?}");
    for ((line, field, reason), (l, f, start)) in rejected.iter().zip(expected) {
        assert_eq!((*line, field.as_str()), (l, f), "{rejected:#?}");
        assert!(reason.starts_with(start), "line {line}: {reason}");
    }
    assert!(rejected[0].2.contains("reading went on at line 4"), "{}", rejected[0].2);

    // The three good rows are stored and queued, and nothing of the bad ones.
    let s = status(&config);
    assert_eq!((s["records"].as_u64(), s["relationships"].as_u64(), s["queued"].as_u64()), (Some(3), Some(3), Some(3)), "{s}");
    let listed = node(&config, &["--json", "records", "list"]);
    assert!(listed.status.success(), "{}", text(&listed));
    let mut ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["record_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["P1", "P3", "P6"]);

    // The text report names each rejected row the same way.
    let o = node_within_deadline(&config, &["import", &export]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("7 rows read, 3 imported (0 with doubts), 4 rejected"), "{out}");
    assert!(out.contains("line 3: surname — unterminated quote opened at line 3"), "{out}");
    assert!(out.contains("line 5: record_id — holds the control character U+0000"), "{out}");
}

#[test]
fn a_directory_or_a_fifo_is_refused_before_anything_reads_it() {
    let fed = Federation::new();
    let config = fed.node_config("asl-lecce", &default_import());
    let dir = fed.dir.path().join("exports");
    std::fs::create_dir(&dir).unwrap();
    let o = node_within_deadline(&config, &["import", &dir.to_string_lossy()]);
    assert!(!o.status.success(), "a directory was imported: {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{} is a directory; name the export file itself", dir.display())), "{err}");

    // Opening a FIFO for reading blocks until a writer comes: the refusal must come first.
    let fifo = fed.dir.path().join("export.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo (coreutils) runs");
    assert!(made.success());
    let o = node_within_deadline(&config, &["import", &fifo.to_string_lossy()]);
    assert!(!o.status.success(), "a FIFO was imported: {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is not a regular file (a FIFO, socket or device)"), "{err}");

    let s = status(&config);
    assert_eq!((s["records"].as_u64(), s["queued"].as_u64()), (Some(0), Some(0)), "{s}");
}
