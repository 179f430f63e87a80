//! The `ponte-node` binary's command line: help that teaches, errors that say what to fix.
//! (Having an integration test also makes `cargo test` build the binary for the end-to-end tests.)

mod common;

use common::{QUARTA, ROSSI, Site, node_bin as node};
use ponte_node::store::OutboxOp;

#[test]
fn help_lists_the_commands() {
    let o = node(&["--help"]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    for cmd in ["import", "publish", "withdraw", "who-else", "serve", "records", "secret", "schema", "consent", "obscure", "subject-report"] {
        assert!(s.contains(cmd), "{cmd} missing from --help:\n{s}");
    }
}

#[test]
fn secret_generate_and_schema_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.secret");
    let o = node(&["secret", "generate", "--out", &out.to_string_lossy(), "--epoch", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = ponte_node::secret::LinkageSecret::load(&out).unwrap();
    assert_eq!(s.epoch, 3);
    let again = node(&["secret", "generate", "--out", &out.to_string_lossy()]);
    assert!(!again.status.success(), "an existing secret is not overwritten without --force");

    let o = node(&["schema", "check"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&ponte_proto::schema::LinkageSchema::default_schema().fingerprint().hex()));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, ponte_proto::schema::DEFAULT_SCHEMA_TOML.replace("clk_bits = 1024", "clk_bits = 1000")).unwrap();
    let o = node(&["schema", "check", &bad.to_string_lossy()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("power of two"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn unknown_purpose_is_explained() {
    let o = node(&["--config", "/nonexistent/node.toml", "who-else", "X", "--purpose", "curiosity"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read the node configuration"));
}

const GIVE: &[&str] = &[
    "consent", "give", "P1", "--categories", "serd,salute_mentale", "--recipients", "asl,comune", "--purposes",
    "continuita_assistenziale,convocazione_uvm", "--from", "2026-01-01", "--until", "2099-12-31", "--given-by", "interessato",
];

/// `GIVE` with one flag's value replaced (or the record id, for "P1").
fn give_with(flag: &str, value: &str) -> Vec<String> {
    let mut v: Vec<String> = GIVE.iter().map(|s| s.to_string()).collect();
    let i = v.iter().position(|a| a == flag).unwrap();
    if flag == "P1" {
        v[i] = value.to_string();
    } else {
        v[i + 1] = value.to_string();
    }
    v
}

#[test]
fn consent_give_is_stored_listed_queued_and_revocable_offline() {
    let site = Site::offline(false);
    site.import("a.csv", &[ROSSI, QUARTA]);
    assert_eq!(site.status()["queued"], 2);

    let id = site.ok(GIVE).trim().to_string();
    assert!(!id.is_empty() && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{id:?}");
    let status = site.status();
    assert_eq!((status["consents"].as_u64(), status["queued"].as_u64()), (Some(1), Some(3)), "{status}");
    assert_eq!(site.outbox().last(), Some(&OutboxOp::Consent { consent_id: id.clone() }));

    let listed = site.ok(&["consent", "list"]);
    assert!(listed.contains(&id) && listed.contains("serd,salute_mentale → asl,comune") && listed.contains("[valid]"), "{listed}");
    let j: serde_json::Value = serde_json::from_str(site.ok(&["--json", "consent", "list", "P1"]).trim()).unwrap();
    assert_eq!(j["consent_id"], id.as_str());
    assert_eq!(j["purposes"], serde_json::json!(["continuita_assistenziale", "convocazione_uvm"]));
    assert_eq!((j["valid_from"].as_str(), j["valid_until"].as_str(), j["state"].as_str()), (Some("2026-01-01"), Some("2099-12-31"), Some("valid")));
    assert!(site.ok(&["consent", "list", "P2"]).contains("no consents"));

    let out = site.ok(&["consent", "revoke", &id]);
    assert!(out.contains("revoked") && out.contains("ponte-node publish"), "{out}");
    assert_eq!(site.outbox().last(), Some(&OutboxOp::RevokeConsent { consent_id: id.clone() }));
    assert!(site.ok(&["consent", "list"]).contains("[revoked "));
    // Revoking again changes nothing and queues nothing.
    assert!(site.ok(&["consent", "revoke", &id]).contains("already revoked"));
    assert_eq!(site.status()["queued"], 4);
}

#[test]
fn bad_consents_are_explained_and_store_nothing() {
    let site = Site::offline(false);
    site.import("a.csv", &[ROSSI]);
    let cases: &[(Vec<String>, &[&str])] = &[
        (give_with("--categories", "serd,adi"), &["--categories", "\"adi\" is not a known service category", "cure_domiciliari"]),
        (give_with("--recipients", "asl,inps"), &["--recipients", "comune"]),
        (give_with("--purposes", "curiosita"), &["--purposes", "continuita_assistenziale"]),
        (give_with("--given-by", "nonno"), &["--given-by", "rappresentante_legale"]),
        (give_with("--until", "2027-02-30"), &["--until", "YYYY-MM-DD"]),
        (give_with("--from", "31/10/2026"), &["--from", "YYYY-MM-DD"]),
        (give_with("--from", "2100-01-01"), &["2100-01-01", "before it starts"]),
        (give_with("--until", "2001-01-01"), &["2001-01-01", "past"]),
        (give_with("P1", "P9"), &["no record \"P9\"", "records list"]),
    ];
    for (args, expect) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = site.fails(&args);
        for e in *expect {
            assert!(err.contains(e), "{args:?}: {e:?} missing from:\n{err}");
        }
    }
    let status = site.status();
    assert_eq!((status["consents"].as_u64(), status["queued"].as_u64()), (Some(0), Some(1)), "{status}");
    assert!(site.ok(&["consent", "list"]).contains("no consents"));

    let err = site.fails(&["consent", "revoke", "0123456789abcdef"]);
    assert!(err.contains("no consent \"0123456789abcdef\"") && err.contains("consent list"), "{err}");
}

#[test]
fn obscuring_is_kept_and_queued_offline() {
    let site = Site::offline(false);
    site.import("a.csv", &[ROSSI, QUARTA]);
    let out = site.ok(&["obscure", "R2"]);
    assert!(out.contains("obscured") && out.contains("queued; run `ponte-node publish` or keep `serve` running"), "{out}");
    assert!(site.relationship("R2").obscured);
    assert_eq!(site.outbox().last(), Some(&OutboxOp::Obscure { relationship_id: "R2".into() }));
    // A new import of the same rows keeps the obscuring (it is the person's request, not the
    // export's) and queues nothing new.
    site.import("a.csv", &[ROSSI, QUARTA]);
    assert!(site.relationship("R2").obscured);
    assert_eq!(site.status()["queued"], 3);

    site.ok(&["obscure", "R2", "--undo"]);
    assert!(!site.relationship("R2").obscured);
    assert_eq!(site.status()["queued"], 4);
    assert!(site.fails(&["obscure", "R9"]).contains("no relationship \"R9\""));
}

#[test]
fn never_encode_rows_stay_here_and_a_published_one_is_withdrawn() {
    let site = Site::offline(true);
    let anonymous = "P3;R3;Greco;Cosimo;M;1950-12-01;Maglie;;serd;attiva;2022-05-01;serd-lecce;N;S";
    let report: serde_json::Value = serde_json::from_str(site.import("a.csv", &[ROSSI, QUARTA, anonymous]).trim()).unwrap();
    assert_eq!((report["rows_imported"].as_u64(), report["never_encoded"].as_u64()), (Some(3), Some(1)), "{report}");
    // Stored here, flagged, and nothing queued for it.
    assert!(site.relationship("R3").never_publish);
    assert_eq!(
        site.outbox(),
        vec![OutboxOp::Upsert { relationship_id: "R1".into() }, OutboxOp::Upsert { relationship_id: "R2".into() }]
    );
    // Never an anchor, never keyed by a consent, never republished, never withdrawn.
    let err = site.fails(&["who-else", "P3"]);
    assert!(err.contains("only never-encode relationships"), "{err}");
    assert!(site.fails(&["consent", "give", "P3", "--categories", "serd", "--recipients", "asl", "--purposes", "continuita_assistenziale", "--until", "2099-12-31", "--given-by", "interessato"]).contains("no published relationship"));
    assert!(site.fails(&["subject-report", "P3"]).contains("only never-encode relationships"));
    assert!(site.ok(&["republish"]).starts_with("2 relationship(s)"));
    let before = site.outbox().len();

    // Rossi's row is flipped to never_encode after it was queued for publishing: its reference
    // is withdrawn, and it is not queued again.
    let reference = site.relationship("R1").reference;
    let flipped = ROSSI.strip_suffix(";N").unwrap().to_string() + ";S";
    let report: serde_json::Value = serde_json::from_str(site.import("b.csv", &[&flipped, QUARTA, anonymous]).trim()).unwrap();
    assert_eq!(report["never_encoded"], 2);
    let outbox = site.outbox();
    assert_eq!(outbox[before..], [OutboxOp::Withdraw { reference }]);
    assert!(site.relationship("R1").never_publish);
    let err = site.fails(&["who-else", "P1", "--relationship", "R1"]);
    assert!(err.contains("never_encode") && err.contains("--relationship"), "{err}");

    // A bad flag value rejects the row, saying what is wrong.
    let bad = QUARTA.strip_suffix(";N").unwrap().to_string() + ";forse";
    let report: serde_json::Value = serde_json::from_str(site.import("c.csv", &[&bad]).trim()).unwrap();
    assert_eq!(report["rows_rejected"], 1);
    assert_eq!(report["problems"][0]["field"], "never_encode");

    // Erasing the anonymous record queues nothing for the coordinator.
    assert!(site.ok(&["withdraw", "P3"]).contains("0 withdrawal(s)"));
    assert_eq!(site.outbox().len(), before + 1);
}

#[test]
fn an_operator_id_that_is_personal_data_is_refused_before_anything_is_asked() {
    let site = Site::offline(false);
    site.import("a.csv", &[ROSSI]);
    for (args, flag) in [
        (vec!["who-else", "P1", "--operator", "RSSMRA40B11E506X"], "--operator"),
        (vec!["who-else", "P1", "--operator", "op-rssmra40b1me506x"], "--operator"),
        (vec!["subject-report", "P1", "--operator", "STP1234567890123"], "--operator"),
    ] {
        let o = site.run(&args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        // Exit 1 (a bad argument), not 3: the offline coordinator was never tried.
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(flag) && err.contains("pseudonymous") && !err.contains("reach the coordinator"), "{args:?}: {err}");
    }
}

/// Runs `ponte-node --config SITE args` with stdout a pipe: `read_lines` lines are read, then
/// the pipe is closed (as `| head -n N` does). Returns the exit code and stderr.
fn with_closed_stdout(site: &Site, args: &[&str], read_lines: usize) -> (Option<i32>, String) {
    use std::io::{BufRead, Read};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ponte-node"))
        .arg("--config")
        .arg(&site.config)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    for _ in 0..read_lines {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "{args:?} printed fewer than {read_lines} lines");
    }
    drop(stdout);
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (child.wait().unwrap().code(), err)
}

#[test]
fn a_closed_stdout_ends_output_quietly_without_a_panic() {
    let site = Site::offline(false);
    // More records than a pipe buffers (64 KiB), so `records list` meets the closed pipe while
    // it still has lines to write.
    let rows: Vec<String> =
        (0..2000).map(|i| format!("PERSONA-{i:07};R{i:05};Rossi;Mario;M;1940-02-11;Lecce;;cure_domiciliari;attiva;2024-03-01;distretto-lecce;S;N")).collect();
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    site.import("a.csv", &rows);
    for (args, lines) in [(&["records", "list"][..], 1), (&["--json", "records", "list"][..], 10), (&["status"][..], 0), (&["consent", "list"][..], 0)] {
        let (code, err) = with_closed_stdout(&site, args, lines);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "a read-only command stops quietly: {args:?}: {err}");
    }
    // A command that changes something has done it by the time it prints: it says so on
    // stderr and exits 0; the change is kept.
    let (code, err) = with_closed_stdout(&site, &["consent", "give", "PERSONA-0000001", "--categories", "serd", "--recipients", "asl", "--purposes", "continuita_assistenziale", "--until", "2099-12-31", "--given-by", "interessato"], 0);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("done and kept") && !err.contains("panicked"), "{err}");
    assert_eq!(site.status()["consents"], 1);
    // A new bearer credential is printed once: losing it is an error with the way out.
    let (code, err) = with_closed_stdout(&site, &["credentials", "add", "cartella", "--roles", "operatore_pua"], 0);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--replace") && !err.contains("panicked"), "{err}");
}

#[test]
fn break_glass_goes_with_emergenza_only() {
    let site = Site::offline(false);
    site.import("a.csv", &[ROSSI]);
    let err = site.fails(&["who-else", "P1", "--purpose", "emergenza"]);
    assert!(err.contains("--break-glass pericolo_di_vita"), "{err}");
    let err = site.fails(&["who-else", "P1", "--break-glass", "pericolo_di_vita"]);
    assert!(err.contains("only for --purpose emergenza"), "{err}");
    let err = site.fails(&["who-else", "P1", "--purpose", "emergenza", "--break-glass", "noia"]);
    assert!(err.contains("--break-glass") && err.contains("incapacita_di_consentire"), "{err}");
    // A well-formed question gets as far as the (absent) coordinator.
    let err = site.fails(&["who-else", "P1", "--purpose", "emergenza", "--break-glass", "pericolo_di_vita"]);
    assert!(err.contains("cannot") || err.contains("coordinator"), "{err}");
}
