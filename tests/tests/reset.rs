//! A node whose data directory is deleted and recreated starts its outbox from the same
//! sequence numbers again. Its next publications must still all arrive: the coordinator answers
//! a batch id it has seen with the stored acknowledgement, so batch ids must not repeat across
//! stores or contents (they are derived from the store's random instance id and the batch's
//! content). Real binaries, real mutual TLS, real sled directories.

use ponte_e2e::{Federation, cf, default_import, node, small_export, text};
use ponte_node::normalise::Sex;

/// Three persons per export: the same number of rows, so that the recreated store's outbox has
/// exactly the sequence numbers and batch sizes of the first one.
fn export_rows(people: &[(&str, &str, &str, Sex, u16, u8, u8)]) -> Vec<String> {
    people
        .iter()
        .map(|(id, surname, given, sex, y, m, d)| {
            let code = cf(surname, given, *sex, *y, *m, *d, "E506");
            let s = if *sex == Sex::M { "M" } else { "F" };
            format!("{id};R-{id};{surname};{given};{s};{y:04}-{m:02}-{d:02};Lecce;{code};cure_domiciliari;attiva;2024-03-01;distretto-lecce;N")
        })
        .collect()
}

const A: [(&str, &str, &str, Sex, u16, u8, u8); 3] =
    [("A1", "Rossi", "Mario", Sex::M, 1940, 2, 11), ("A2", "Verdi", "Luigi", Sex::M, 1945, 6, 3), ("A3", "Neri", "Carla", Sex::F, 1950, 9, 21)];
const B: [(&str, &str, &str, Sex, u16, u8, u8); 3] =
    [("B1", "Bianchi", "Anna", Sex::F, 1952, 7, 7), ("B2", "Greco", "Cosimo", Sex::M, 1938, 12, 1), ("B3", "Russo", "Lucia", Sex::F, 1961, 4, 30)];

#[test]
fn after_the_data_directory_is_recreated_every_record_of_the_new_export_reaches_the_coordinator() {
    let mut fed = Federation::new();
    fed.start_coordinator();
    let asl = fed.node_config("asl-lecce", &default_import());
    let comune = fed.node_config("comune-lecce", &default_import());

    // The Comune follows the persons of both exports.
    let mut comune_rows = Vec::new();
    for (i, (_, surname, given, sex, y, m, d)) in A.iter().chain(B.iter()).enumerate() {
        let code = cf(surname, given, *sex, *y, *m, *d, "E506");
        let s = if *sex == Sex::M { "M" } else { "F" };
        comune_rows.push(format!("C{i};S{i};{surname};{given};{s};{y:04}-{m:02}-{d:02};Lecce;{code};segretariato_sociale;attiva;2025-01-01;servizio-sociale;N"));
    }
    let e = small_export(fed.dir.path(), "comune.csv", &comune_rows);
    assert!(node(&comune, &["import", e.to_str().unwrap()]).status.success());
    let o = node(&comune, &["publish"]);
    assert!(o.status.success(), "{}", text(&o));

    // The ASL publishes export A.
    let a = small_export(fed.dir.path(), "asl-a.csv", &export_rows(&A));
    let o = node(&asl, &["import", a.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = node(&asl, &["publish"]);
    assert!(o.status.success() && text(&o).contains("published 3 item(s)"), "{}", text(&o));

    // Its data directory is deleted and recreated; a different export B is imported and published.
    let data_dir = ponte_node::config::NodeConfig::load(&asl).unwrap().data_dir;
    assert!(data_dir.join("sled").exists(), "{}", data_dir.display());
    std::fs::remove_dir_all(&data_dir).unwrap();
    let b = small_export(fed.dir.path(), "asl-b.csv", &export_rows(&B));
    let o = node(&asl, &["import", b.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = node(&asl, &["publish"]);
    assert!(o.status.success() && text(&o).contains("published 3 item(s)"), "{}", text(&o));
    let status: serde_json::Value = serde_json::from_slice(&node(&asl, &["--json", "status"]).stdout).unwrap();
    assert_eq!(status["queued"], 0, "{status}");

    // Every record of B is visible at the coordinator: the Comune's questions about the B
    // persons each find the ASL's relationship.
    for (i, (id, ..)) in B.iter().enumerate() {
        let record = format!("C{}", i + A.len());
        let o = node(&comune, &["--json", "who-else", &record, "--operator", "op-1"]);
        assert!(o.status.success(), "{}", text(&o));
        let answer: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let entities: Vec<&str> = answer["answer"].as_array().unwrap().iter().map(|r| r["entity_id"].as_str().unwrap()).collect();
        assert_eq!(entities, ["asl-lecce"], "{id}: the ASL's relationship from export B is found: {answer}");
    }

    // And the coordinator's store counts them all: A's three (never withdrawn) and B's three.
    fed.stop_coordinator();
    let items = fed.stored_items();
    assert_eq!(items.get("asl-lecce"), Some(&6), "{items:?}");
    assert_eq!(items.get("comune-lecce"), Some(&6), "{items:?}");
}
