//! Arbitrary bytes through the node's export reader (`ponte_node::import::read_export`) under
//! one of the import configurations of `import-configs/` (picked by the first byte; its high
//! bits choose how the bytes are handed over in a second reading).
//!
//! Asserts: no panic; either a file-level error, or every non-empty line after the header is
//! read as one row, each row imported or rejected exactly once, with its line (checked against
//! an oracle that splits lines on its own); the counts add up; imported rows carry non-empty
//! ids without control characters; problems are bounded; the result does not depend on how the
//! input is split between reads.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use ponte_fuzz::{Chunked, assert_bounded, import_configs, non_empty_lines};
use ponte_node::import::{MAX_FIELD_CHARS, read_export};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, export)) = data.split_first() else { return };
    let configs = import_configs();
    let cfg = &configs[pick as usize % configs.len()];
    let result = read_export(export, "fuzz.csv", cfg);

    // However the input arrives, the result is the same.
    let chunk = 1 + (pick as usize / configs.len()) % 7;
    let again = read_export(Chunked { data: export, chunk }, "fuzz.csv", cfg);
    match (&result, &again) {
        (Ok((rows, report)), Ok((rows2, report2))) => {
            assert_eq!(rows, rows2, "rows differ when read {chunk} bytes at a time");
            assert_eq!(serde_json::to_string(report).unwrap(), serde_json::to_string(report2).unwrap());
        }
        (Err(a), Err(b)) => assert_eq!(a.0, b.0),
        _ => panic!("read whole and {chunk} bytes at a time, one reading failed and the other did not"),
    }

    let lines = non_empty_lines(export);
    let (rows, report) = match result {
        Ok(r) => r,
        Err(e) => {
            assert_bounded("file error", &e.0);
            if e.0.contains("rows; raise import.max_rows") {
                assert!(lines.len() > cfg.max_rows, "refused for too many rows with {} lines", lines.len());
            }
            return;
        }
    };
    // The header is the first non-empty line; every later non-empty line is one row.
    let data_lines: Vec<u64> = lines.iter().copied().skip(1).collect();
    assert_eq!(report.rows_read, data_lines.len() as u64, "rows read vs non-empty lines after the header");
    assert!(data_lines.len() <= cfg.max_rows);
    assert_eq!(rows.len() as u64, report.rows_imported);
    assert_eq!(report.rows_read, report.rows_imported + report.rows_rejected);
    assert!(report.rows_doubtful <= report.rows_imported && report.never_encoded <= report.rows_imported);
    let rejected_by_kind: u64 = report.counts.iter().filter(|(k, _)| k.starts_with("rejected ")).map(|(_, n)| n).sum();
    assert_eq!(rejected_by_kind, report.rows_rejected, "counts by kind");

    let imported: Vec<u64> = rows.iter().map(|r| r.line).collect();
    assert!(imported.windows(2).all(|w| w[0] < w[1]), "imported rows out of order: {imported:?}");
    let rejected: Vec<u64> = report.problems.iter().filter(|p| p.severity == "rejected").map(|p| p.line).collect();
    if report.problems.len() < 10_000 {
        let mut all: BTreeSet<u64> = imported.iter().copied().collect();
        for l in &rejected {
            assert!(all.insert(*l), "line {l} imported and rejected, or rejected twice");
        }
        assert_eq!(all.into_iter().collect::<Vec<_>>(), data_lines, "every row imported or reported with its line");
    }
    for p in &report.problems {
        assert!(data_lines.binary_search(&p.line).is_ok(), "a problem at line {} which is not a row", p.line);
        assert!(!p.field.is_empty() && p.field.chars().count() <= 100, "problem field {:?}", p.field);
        assert_bounded("row problem", &p.reason);
    }
    for r in &rows {
        for (what, id) in [("record_id", &r.record_id), ("relationship_id", &r.relationship_id)] {
            assert!(!id.is_empty(), "an empty {what} imported");
            assert!(!id.chars().any(char::is_control), "{what} {id:?} with a control character imported");
            assert_eq!(id.trim(), id, "{what} not trimmed");
        }
        assert!(r.record_id.chars().count() <= MAX_FIELD_CHARS);
        ponte_proto::vocab::check_unit_code(&r.unit).expect("an imported unit code is valid");
        ponte_proto::vocab::check_month(r.since_month).expect("an imported since month is valid");
    }
});
