//! The privacy officers' and the nodes' commands end to end: consent, obscuring and the
//! data-subject report from `ponte-node`; policy check, diff, reload, explain and the audit
//! query from `ponte-coordinator`; tampering with the stored audit chain; the retention sweep.
//! Real binaries, real mutual TLS on loopback, real sled directories.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ponte_e2e::*;
use ponte_node::normalise::Sex;

fn rows_asl() -> Vec<String> {
    let rossi = cf("Rossi", "Mario", Sex::M, 1940, 2, 11, "E506");
    let greco = cf("Greco", "Cosimo", Sex::M, 1950, 12, 1, "E815");
    vec![
        format!("P1;R1;Rossi;Mario;M;1940-02-11;Lecce;{rossi};cure_domiciliari;attiva;2024-03-01;distretto-lecce;S"),
        format!("P3;R3;Greco;Cosimo;M;1950-12-01;Maglie;{greco};salute_mentale;attiva;2022-05-01;csm-lecce;N"),
    ]
}

fn rows_comune() -> Vec<String> {
    let rossi = cf("Rossi", "Mario", Sex::M, 1940, 2, 11, "E506");
    let greco = cf("Greco", "Cosimo", Sex::M, 1950, 12, 1, "E815");
    vec![
        format!("C1;S1;ROSSI;MARIO;M;1940-02-11;LECCE;{rossi};assistenza_domiciliare_sociale;attiva;2024-01-10;servizio-sociale;N"),
        format!("C3;S3;Greco;Cosimo;M;1950-12-01;Maglie;{greco};contributo_economico;attiva;2024-02-01;servizio-sociale;N"),
    ]
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_line(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(ok(o).trim()).unwrap()
}

/// An answer's JSON without its receipt.
fn without_receipt(mut v: serde_json::Value) -> serde_json::Value {
    let o = v.as_object_mut().unwrap();
    o.remove("receipt");
    o.remove("receipt_full");
    v
}

fn setup(fed: &mut Federation) -> (PathBuf, PathBuf) {
    fed.start_coordinator();
    let asl = fed.node_config("asl-lecce", &default_import());
    let com = fed.node_config("comune-lecce", &default_import());
    let e1 = small_export(fed.dir.path(), "asl.csv", &rows_asl());
    let e2 = small_export(fed.dir.path(), "com.csv", &rows_comune());
    for (cfg, e) in [(&asl, &e1), (&com, &e2)] {
        ok(&node(cfg, &["import", &e.to_string_lossy()]));
        ok(&node(cfg, &["publish"]));
    }
    (asl, com)
}

fn officer(fed: &Federation, args: &[&str]) -> std::process::Output {
    let cfg = fed.officer_config();
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    // Every live subcommand takes --officer.
    v.push("--officer".into());
    v.push(cfg.to_string_lossy().into());
    fed.coordinator_cmd(&v.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn consent_obscuring_and_the_data_subject_report_from_the_node_commands() {
    let mut fed = Federation::new();
    let (asl, com) = setup(&mut fed);
    let ask = |record: &str| json_line(&node(&com, &["--json", "who-else", record, "--role", "assistente_sociale"]));

    // Greco's only other relationship is at the CSM (T3): nothing, without consent.
    let before = ask("C3");
    assert_eq!(before["answer"].as_array().unwrap().len(), 0, "{before}");

    // Greco consents, at the ASL, that Comuni may know for continuity of care.
    let id = ok(&node(&asl, &[
        "consent", "give", "P3", "--categories", "salute_mentale", "--recipients", "comune",
        "--purposes", "continuita_assistenziale", "--until", "2099-12-31", "--given-by", "interessato",
    ]));
    let id = id.trim().to_string();
    assert!(!id.is_empty());
    ok(&node(&asl, &["publish"]));
    let with = ask("C3");
    let rows = with["answer"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{with}");
    assert_eq!(rows[0]["category_group"], "servizio_specialistico", "a social requester gets the group, not the service: {with}");
    assert_eq!(rows[0]["service"], "", "{with}");
    assert_eq!(rows[0]["unit"], "", "the unit (csm-lecce) would tell the service: {with}");

    // Revoked: gone on the next question, and the answer is the one before the consent.
    ok(&node(&asl, &["consent", "revoke", &id]));
    ok(&node(&asl, &["publish"]));
    let after = ask("C3");
    assert_eq!(without_receipt(after.clone()), without_receipt(before), "revocation leaves a trace");

    // Obscuring Rossi's cure domiciliari at the ASL: gone from the Comune's answer, then back.
    let shown = ask("C1");
    assert_eq!(shown["answer"].as_array().unwrap().len(), 1, "{shown}");
    ok(&node(&asl, &["obscure", "R1"]));
    ok(&node(&asl, &["publish"]));
    let hidden = ask("C1");
    assert_eq!(hidden["answer"].as_array().unwrap().len(), 0, "{hidden}");
    ok(&node(&asl, &["obscure", "R1", "--undo"]));
    ok(&node(&asl, &["publish"]));
    assert_eq!(without_receipt(ask("C1")), without_receipt(shown));

    // Rossi asks the ASL who asked about them: the Comune, for continuity of care, three times.
    let report = json_line(&node(&asl, &["--json", "subject-report", "P1", "--operator", "dpo-asl"]));
    let accesses = report["accesses"].as_array().unwrap();
    let by_comune: Vec<&serde_json::Value> = accesses.iter().filter(|a| a["entity_id"] == "comune-lecce").collect();
    assert_eq!(by_comune.len(), 3, "{report}");
    assert!(by_comune.iter().all(|a| a["purpose"] == "continuita_assistenziale" && a["operator_role"] == "assistente_sociale"), "{report}");
    // What the Comune received: the ASL's relationship twice (not while it was obscured).
    let received = by_comune.iter().filter(|a| a["disclosed"].as_array().unwrap().iter().any(|d| d["entity_id"] == "asl-lecce")).count();
    assert_eq!(received, 2, "{report}");
    assert!(report["relationships"].as_array().unwrap().iter().any(|r| r["entity_id"] == "comune-lecce"), "{report}");
    // Greco's report does not mention the consent-era disclosure to anyone but the ASL's node.
    let greco = json_line(&node(&asl, &["--json", "subject-report", "P3"]));
    assert_eq!(greco["accesses"].as_array().unwrap().iter().filter(|a| a["entity_id"] == "comune-lecce").count(), 3, "{greco}");

    // The chain verifies, and a receipt the Comune holds is in it.
    let receipt = after["receipt_full"].as_str().unwrap().to_string();
    fed.stop_coordinator();
    let data = fed.coordinator_data();
    let o = fed.coordinator_cmd(&["audit", "verify", "--data-dir", &data.to_string_lossy(), "--receipt", &receipt]);
    assert!(o.status.success() && text(&o).contains("intact") && text(&o).contains("found in the chain"), "{}", text(&o));
    let forged = format!("{}:{}", receipt.split(':').next().unwrap(), "0".repeat(64));
    let o = fed.coordinator_cmd(&["audit", "verify", "--data-dir", &data.to_string_lossy(), "--receipt", &forged]);
    assert!(!o.status.success() && text(&o).contains("altered"), "{}", text(&o));
}

#[test]
fn privacy_officer_checks_diffs_loads_explains_and_queries() {
    let mut fed = Federation::new();
    let (asl, com) = setup(&mut fed);
    let dir = fed.dir.path().to_path_buf();
    let default = ponte_coordinator::policy::DEFAULT_POLICY_TOML;

    // A broken policy: every error with file, line and column; exit code 1.
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, default.replace("honour = true", "honour = false").replace("mmg = [", "mmgg = [")).unwrap();
    let o = fed.coordinator_cmd(&["policy", "check", &broken.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let line_of = |needle: &str| std::fs::read_to_string(&broken).unwrap().lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    assert!(text(&o).contains(&format!("broken.toml:{}:1: error", line_of("mmgg"))), "{}", text(&o));
    assert!(text(&o).contains(&format!("broken.toml:{}:", line_of("honour"))), "{}", text(&o));
    // Nothing is sent when the file does not check.
    let o = officer(&fed, &["policy", "reload", &broken.to_string_lossy()]);
    assert!(!o.status.success() && text(&o).contains("nothing was sent"), "{}", text(&o));

    // A new version: break-glass on, and a warning-worthy change.
    let new = dir.join("asl-2026.2.toml");
    std::fs::write(&new, default.replace("version = \"default-2026.1\"", "version = \"asl-2026.2\"").replace("enabled = false", "enabled = true")).unwrap();
    let o = fed.coordinator_cmd(&["policy", "check", &new.to_string_lossy()]);
    assert!(o.status.success() && text(&o).contains("asl-2026.2 is usable"), "{}", text(&o));
    let o = fed.coordinator_cmd(&["policy", "diff", "default", &new.to_string_lossy()]);
    let d = ok(&o);
    assert!(d.contains("version: default-2026.1 → asl-2026.2") && d.contains("break_glass.enabled"), "{d}");
    let o = officer(&fed, &["policy", "reload", &new.to_string_lossy()]);
    assert!(ok(&o).contains("asl-2026.2"), "{}", text(&o));
    let o = officer(&fed, &["policy", "current"]);
    assert!(ok(&o).contains("# policy asl-2026.2") && text(&o).contains("loaded by dpo-federazione"), "{}", text(&o));

    // Under the new version a COT operator at the ASL may break the glass.
    let o = node(&asl, &["--json", "who-else", "P1", "--purpose", "emergenza", "--role", "operatore_cot", "--break-glass", "pericolo_di_vita"]);
    let a = json_line(&o);
    assert_eq!(a["answer"].as_array().unwrap().len(), 1, "{a}");

    // The Comune asks about Greco: nothing shown. The officer asks why, by the receipt.
    let g = json_line(&node(&com, &["--json", "who-else", "C3", "--role", "assistente_sociale"]));
    let seq = g["receipt"].as_u64().unwrap().to_string();
    let show: serde_json::Value = serde_json::from_str(&ok(&node(&asl, &["records", "show", "P3"]))).unwrap();
    let reference = show["relationships"][0]["reference"].as_str().unwrap().to_string();
    let o = officer(&fed, &["policy", "explain", "--target", &format!("asl-lecce/{reference}"), "--receipt", &seq, "--json"]);
    let ex: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
    assert_eq!(ex["disclosed"], false, "{ex}");
    let rules = ex["rules"].as_array().unwrap();
    let consent = rules.iter().find(|r| r["rule"] == "consent").unwrap();
    assert_eq!(consent["passed"], false, "{ex}");
    assert!(rules.iter().any(|r| r["rule"] == "same-person" && r["passed"] == true), "{ex}");
    // Described instead of by receipt: the same conclusion.
    let o = officer(&fed, &[
        "policy", "explain", "--target", &format!("asl-lecce/{reference}"),
        "--anchor", &format!("comune-lecce/{}", json_line(&node(&com, &["records", "show", "C3"]))["relationships"][0]["reference"].as_str().unwrap()),
        "--purpose", "continuita_assistenziale", "--role", "assistente_sociale",
    ]);
    assert!(ok(&o).contains("NOT DISCLOSED") && text(&o).contains("consent"), "{}", text(&o));

    // The audit by node and purpose: the break-glass question and its notification; the
    // explanations are audited too.
    let o = officer(&fed, &["audit", "query", "--node", "asl-lecce", "--purpose", "emergenza"]);
    let lines: Vec<serde_json::Value> = ok(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{}", text(&o));
    assert_eq!(lines[0]["record"]["event"]["who_else_answered"]["break_glass"], "pericolo_di_vita");
    let o = officer(&fed, &["audit", "query", "--node", "asl-lecce", "--from", "2020-01-01"]);
    let all = ok(&o);
    assert!(all.contains("break_glass_notified") && all.contains("dpo-federazione"), "{all}");
    assert!(all.contains("\"explained\""), "{all}");
    assert!(all.contains("policy_loaded") || officer(&fed, &["audit", "query"]).stdout.windows(13).any(|w| w == b"policy_loaded"));
    // A node certificate may not read the audit.
    let node_officer = fed.dir.path().join("node-as-officer.toml");
    let (c, k) = fed.cert("asl-lecce");
    std::fs::write(&node_officer, format!("coordinator = \"https://{}\"\n[tls]\nca = \"{}\"\ncert = \"{c}\"\nkey = \"{k}\"\n", fed.addr, fed.certs.join("ca.pem").display())).unwrap();
    let o = fed.coordinator_cmd(&["audit", "query", "--officer", &node_officer.to_string_lossy()]);
    assert!(!o.status.success() && text(&o).contains("privacy officers"), "{}", text(&o));
}

/// Copies a stopped coordinator's data directory.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Opens a copy's audit tree and lets `f` change it.
fn tamper(data: &Path, f: impl FnOnce(&sled::Tree)) {
    let db = sled::open(data.join("sled")).unwrap();
    let t = db.open_tree("audit").unwrap();
    f(&t);
    db.flush().unwrap();
}

#[test]
fn audit_verify_detects_altered_reordered_and_removed_entries() {
    let mut fed = Federation::new();
    let (_asl, com) = setup(&mut fed);
    for _ in 0..3 {
        ok(&node(&com, &["who-else", "--all", "--role", "assistente_sociale", "--operator", "op-3"]));
    }
    fed.stop_coordinator();
    let data = fed.coordinator_data();
    let verify = |dir: &Path| fed.coordinator_cmd(&["audit", "verify", "--data-dir", &dir.to_string_lossy()]);
    let o = verify(&data);
    assert!(o.status.success() && text(&o).contains("intact"), "{}", text(&o));
    let n = sled::open(data.join("sled")).map(|db| db.open_tree("audit").unwrap().len()).unwrap();
    assert!(n >= 6, "{n}");
    let key = |i: u64| i.to_be_bytes();

    type Tampering<'a> = Box<dyn FnOnce(&sled::Tree) + 'a>;
    let cases: Vec<(&str, Tampering, &str)> = vec![
        ("altered", Box::new(|t: &sled::Tree| {
            let v = t.get(key(3)).unwrap().unwrap();
            let s = String::from_utf8(v.to_vec()).unwrap().replace("op-3", "op-9");
            t.insert(key(3), s.as_bytes()).unwrap();
        }), "altered"),
        ("reordered", Box::new(|t: &sled::Tree| {
            let (a, b) = (t.get(key(2)).unwrap().unwrap(), t.get(key(3)).unwrap().unwrap());
            t.insert(key(2), b).unwrap();
            t.insert(key(3), a).unwrap();
        }), "removed or reordered"),
        ("removed", Box::new(|t: &sled::Tree| {
            t.remove(key(2)).unwrap();
        }), "removed or reordered"),
        ("last removed", Box::new(move |t: &sled::Tree| {
            t.remove(key(n as u64 - 1)).unwrap();
        }), "removed from the end"),
    ];
    for (name, f, expect) in cases {
        let copy = fed.dir.path().join(format!("tampered-{}", name.replace(' ', "-")));
        copy_dir(&data, &copy);
        tamper(&copy, f);
        let o = verify(&copy);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", text(&o));
        assert!(text(&o).contains("BROKEN") && text(&o).contains(expect), "{name}: {}", text(&o));
    }
    // The untouched original still verifies.
    assert!(verify(&data).status.success());
}

#[test]
fn retention_sweep_removes_closed_relationships_in_the_background() {
    let mut fed = Federation::new();
    fed.start_coordinator();
    let com = fed.node_config("comune-lecce", &default_import());
    let asl = fed.node_config("asl-lecce", &default_import());
    let rossi = cf("Rossi", "Mario", Sex::M, 1940, 2, 11, "E506");
    ok(&node(&com, &["import", &small_export(fed.dir.path(), "c.csv", &[format!(
        "C1;S1;Rossi;Mario;M;1940-02-11;Lecce;{rossi};assistenza_domiciliare_sociale;attiva;2024-01-10;servizio-sociale;N"
    )]).to_string_lossy()]));
    // Closed in January 2020: long past the default 12 months.
    ok(&node(&asl, &["import", &small_export(fed.dir.path(), "a.csv", &[
        format!("P1;R1;Rossi;Mario;M;1940-02-11;Lecce;{rossi};cure_domiciliari;conclusa;2020-01-15;distretto-lecce;N"),
        format!("P1;R2;Rossi;Mario;M;1940-02-11;Lecce;{rossi};dimissioni_protette;attiva;2024-05-01;cot-lecce;N"),
    ]).to_string_lossy()]));
    ok(&node(&com, &["publish"]));
    ok(&node(&asl, &["publish"]));
    // Never shown, even before the sweep removes it.
    let a = json_line(&node(&com, &["--json", "who-else", "C1", "--role", "assistente_sociale"]));
    assert_eq!(a["answer"].as_array().unwrap().len(), 1, "{a}");
    // A policy with a 10-second sweep: the background task removes it and audits that.
    let policy = fed.dir.path().join("fast-sweep.toml");
    std::fs::write(&policy, ponte_coordinator::policy::DEFAULT_POLICY_TOML.replace("version = \"default-2026.1\"", "version = \"fast-sweep\"").replace("sweep_interval_secs = 3600", "sweep_interval_secs = 10")).unwrap();
    ok(&officer(&fed, &["policy", "reload", &policy.to_string_lossy()]));
    let start = Instant::now();
    loop {
        let log = ok(&officer(&fed, &["audit", "query", "--node", "asl-lecce"]));
        if log.contains("retention_erased") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(40), "no retention sweep within 40 s: {log}");
        std::thread::sleep(Duration::from_millis(500));
    }
    fed.stop_coordinator();
    assert_eq!(fed.stored_items().get("asl-lecce").copied(), Some(1), "the expired relationship is still stored");
}
