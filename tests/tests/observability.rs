//! Observability of the coordinator, end to end with the real binaries: gRPC health reports
//! every service SERVING; `GET /metrics` on the `[metrics]` listener counts exactly what the
//! federation did (questions, answers, refusals by reason, publishes, links, withdrawals) and
//! names no reference, record id or operator id; `PONTE_LOG_FORMAT=json` writes one JSON object
//! per line, without them either; a metrics address in use stops the start with a clear message.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ponte_coordinator::metrics::{CATALOGUE, Kind, STATE_WAIT_SECONDS};
use ponte_e2e::*;
use ponte_node::normalise::Sex;
use ponte_sim::demo::CoordinatorProcess;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const OPERATOR: &str = "op-obs-17";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Adds `[metrics] listen = ADDR` to the federation's coordinator configuration.
fn set_metrics_listen(fed: &Federation, addr: &str) {
    let text = std::fs::read_to_string(&fed.coordinator_config).unwrap();
    let default = "[metrics]\nlisten = \"127.0.0.1:0\"";
    assert!(text.contains(default), "the harness writes metrics on a free port: {text}");
    std::fs::write(&fed.coordinator_config, text.replace(default, &format!("[metrics]\nlisten = \"{addr}\""))).unwrap();
}

/// Starts `ponte-coordinator serve` with JSON logs (stderr to `log`) and waits until it listens.
fn start_with_json_logs(fed: &Federation, log: &Path) -> CoordinatorProcess {
    let mut child = Command::new(bin_dir().join("ponte-coordinator"))
        .args(["serve", "--config"])
        .arg(&fed.coordinator_config)
        .env("PONTE_LOG_FORMAT", "json")
        .env_remove("PONTE_LOG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("ponte-coordinator listening on ") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => CoordinatorProcess { child, addr },
        Err(_) => {
            let _ = child.kill();
            panic!("the coordinator did not start:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
    }
}

/// `GET /metrics` over plain HTTP/1.1; returns the body after checking status and content type.
fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).expect("the exposition is UTF-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    if !head.contains("transfer-encoding: chunked") {
        return body.to_string();
    }
    let (mut out, mut rest) = (String::new(), body);
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// The value of one series (`name{labels}` exactly as rendered), or None.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' '))).map(|v| v.trim().parse().unwrap())
}

fn value(text: &str, name: &str) -> f64 {
    series(text, name).unwrap_or_else(|| panic!("no series {name} in the exposition:\n{text}"))
}

/// The sum of every series of a metric.
fn total(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(metric).is_some_and(|r| r.starts_with('{') || r.starts_with(' ')))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum()
}

fn asl_rows() -> Vec<String> {
    let c = cf("Rossi", "Mario", Sex::M, 1940, 2, 11, "E506");
    vec![
        format!("OBSP1;OBSR1;Rossi;Mario;M;1940-02-11;Lecce;{c};cure_domiciliari;attiva;2024-03-01;distretto-lecce;S"),
        "OBSP2;OBSR2;Quarta;Addolorata;F;1935-07-30;Galatina;;residenziale_rsa;attiva;2023-01-15;distretto-lecce;N".to_string(),
        "OBSP3;OBSR3;Greco;Cosimo;M;1950-12-01;Maglie;;salute_mentale;attiva;2022-05-01;csm-lecce;N".to_string(),
    ]
}

fn comune_rows() -> Vec<String> {
    let c = cf("Rossi", "Mario", Sex::M, 1940, 2, 11, "E506");
    vec![
        format!("OBSC1;OBSS1;ROSSI;MARIO;M;1940-02-11;LECCE;{c};assistenza_domiciliare_sociale;attiva;2024-01-10;servizio-sociale;N"),
        "OBSC3;OBSS3;Greco;Cosimo;M;1950-12-01;Maglie;;contributo_economico;attiva;2024-02-01;servizio-sociale;N".to_string(),
    ]
}

/// Every item reference the audit log names (`node/reference` labels).
fn audited_references(fed: &Federation) -> Vec<String> {
    let o = fed.coordinator_cmd(&["audit", "list", "--data-dir", &fed.coordinator_data().to_string_lossy()]);
    assert!(o.status.success(), "{}", text(&o));
    let mut refs = Vec::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        // Events are tagged by kind: {"who_else_answered": {...}}.
        let Some(event) = entry["record"]["event"].as_object().and_then(|o| o.values().next()) else { continue };
        let mut labels: Vec<&serde_json::Value> = vec![&event["anchor"], &event["reference"], &event["item"], &event["target"]];
        for list in ["shown", "references"] {
            labels.extend(event[list].as_array().into_iter().flatten());
        }
        for label in labels.into_iter().filter_map(serde_json::Value::as_str) {
            if let Some((node, reference)) = label.split_once('/')
                && NODES.iter().any(|n| n.0 == node)
            {
                refs.push(reference.to_string());
            }
        }
    }
    refs.sort();
    refs.dedup();
    refs
}

#[test]
fn health_metrics_and_json_logs_tell_what_happened_and_name_no_one() {
    let started = Instant::now();
    let mut fed = Federation::new();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    set_metrics_listen(&fed, &metrics_addr);
    let log = fed.coordinator_dir.join("coordinator-json.log");
    fed.coordinator = Some(start_with_json_logs(&fed, &log));

    // Health: the server ("") and both services are SERVING, to a node certificate; refused
    // without a certificate (counted below).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ca = fed.certs.join("ca.pem");
        let (cert, key) = fed.cert("asl-lecce");
        let mut health = HealthClient::new(fed.channel(Some((&cert, &key)), &ca).await.unwrap());
        for service in ["", "ponte.v1.Federation", "ponte.v1.Governance"] {
            let status = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status;
            assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
        }
        let unknown = health.check(HealthCheckRequest { service: "ponte.v1.Nothing".into() }).await.unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        let mut stranger = HealthClient::new(fed.channel(None, &ca).await.unwrap());
        let refused = stranger.check(HealthCheckRequest::default()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    });

    // Before anything was published: the closed label sets are there, at zero.
    let before = scrape(&metrics_addr);
    assert_eq!(total(&before, "ponte_coordinator_questions_total"), 0.0);
    assert_eq!(value(&before, r#"ponte_coordinator_question_refusals_total{reason="purpose_not_allowed"}"#), 0.0);
    assert_eq!(value(&before, "ponte_coordinator_items"), 0.0);

    // Two nodes publish; the Comune asks three questions that are answered and two that the
    // policy refuses; the ASL withdraws a record.
    let asl = fed.node_config("asl-lecce", &default_import());
    let com = fed.node_config("comune-lecce", &default_import());
    for (cfg, rows, name) in [(&asl, asl_rows(), "asl.csv"), (&com, comune_rows(), "com.csv")] {
        let export = small_export(fed.dir.path(), name, &rows);
        let o = node(cfg, &["import", &export.to_string_lossy()]);
        assert!(o.status.success(), "{}", text(&o));
        let o = node(cfg, &["publish"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    for record in ["OBSC1", "OBSC3", "OBSC1"] {
        let o = node(&com, &["--json", "who-else", record, "--role", "assistente_sociale", "--operator", OPERATOR]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = node(&com, &["who-else", "OBSC1", "--role", "operatore_cot", "--purpose", "convocazione_uvm", "--operator", OPERATOR]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let o = node(&com, &["who-else", "OBSC1", "--role", "mmg", "--purpose", "emergenza", "--break-glass", "pericolo_di_vita", "--operator", OPERATOR]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("break-glass"), "{}", text(&o));
    // The withdrawn record's reference, from the node (the audit keeps only a digest of it).
    let shown = node(&asl, &["records", "show", "OBSP2"]);
    assert!(shown.status.success(), "{}", text(&shown));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let withdrawn_reference = shown["relationships"][0]["reference"].as_str().unwrap().to_string();
    let o = node(&asl, &["withdraw", "OBSP2"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = node(&asl, &["publish"]);
    assert!(o.status.success(), "{}", text(&o));

    let after = scrape(&metrics_addr);
    // Questions: exactly the five asked, by purpose and the asker's entity type.
    assert_eq!(total(&after, "ponte_coordinator_questions_total"), 5.0, "{after}");
    assert_eq!(value(&after, r#"ponte_coordinator_questions_total{purpose="continuita_assistenziale",requester="comune"}"#), 3.0);
    assert_eq!(value(&after, r#"ponte_coordinator_questions_total{purpose="convocazione_uvm",requester="comune"}"#), 1.0);
    assert_eq!(value(&after, r#"ponte_coordinator_questions_total{purpose="emergenza",requester="comune"}"#), 1.0);
    assert_eq!(total(&after, "ponte_coordinator_answers_total"), 3.0);
    assert_eq!(value(&after, r#"ponte_coordinator_question_refusals_total{reason="purpose_not_allowed"}"#), 1.0);
    assert_eq!(value(&after, r#"ponte_coordinator_question_refusals_total{reason="break_glass"}"#), 1.0);
    assert_eq!(total(&after, "ponte_coordinator_question_refusals_total"), 2.0);
    assert_eq!(value(&after, "ponte_coordinator_break_glass_answers_total"), 0.0);
    assert_eq!(value(&after, r#"ponte_coordinator_question_duration_seconds_count{outcome="answered"}"#), 3.0);
    // Rossi's cure domiciliari is shown to the Comune generalised, twice; Greco's CSM never.
    assert_eq!(value(&after, r#"ponte_coordinator_relationships_disclosed_total{disclosure="generalised"}"#), 2.0);
    assert_eq!(value(&after, r#"ponte_coordinator_relationships_disclosed_total{disclosure="full"}"#), 0.0);
    // Publishing: every item once, links found (Rossi certainly, Greco too), one withdrawal.
    assert_eq!(value(&after, r#"ponte_coordinator_published_items_total{node="asl-lecce"}"#), 3.0);
    assert_eq!(value(&after, r#"ponte_coordinator_published_items_total{node="comune-lecce"}"#), 2.0);
    assert!(value(&after, r#"ponte_coordinator_publish_batches_total{node="asl-lecce",outcome="stored"}"#) >= 1.0);
    assert!(value(&after, r#"ponte_coordinator_links_found_total{band="certain"}"#) >= 1.0, "{after}");
    assert!(total(&after, "ponte_coordinator_links_found_total") >= 2.0, "{after}");
    assert!(value(&after, "ponte_coordinator_publish_duration_seconds_count") >= 2.0);
    assert_eq!(value(&after, r#"ponte_coordinator_withdrawn_items_total{node="asl-lecce"}"#), 1.0);
    // What the store holds now: four items, two of them linked in pairs.
    assert_eq!(value(&after, "ponte_coordinator_items"), 4.0);
    assert_eq!(value(&after, "ponte_coordinator_persons"), 2.0);
    assert_eq!(value(&after, "ponte_coordinator_links"), 2.0);
    assert!(value(&after, "ponte_coordinator_audit_entries") >= 7.0);
    assert_eq!(value(&after, r#"ponte_coordinator_auth_refusals_total{service="health",reason="no_certificate"}"#), 1.0);
    assert_eq!(value(&after, r#"ponte_coordinator_requests_in_flight{service="federation"}"#), 0.0);
    assert_eq!(value(&after, "ponte_coordinator_state_queue_depth"), 0.0);

    // Every metric has its help text; every one the coordinator defines is exposed (the queue
    // wait only once a request had to wait).
    for line in after.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = line.split(' ').next().unwrap();
        assert!(after.contains(&format!("# HELP {name} ")), "{name} has no HELP text");
    }
    for m in CATALOGUE.iter().filter(|m| m.name != STATE_WAIT_SECONDS) {
        let kind = match m.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert!(after.contains(&format!("# TYPE {} {kind}\n", m.name)), "{} is not exposed as a {kind}", m.name);
    }

    fed.stop_coordinator();
    let took = started.elapsed();

    // No reference, record id, relationship id, operator id or name in the metrics or the logs.
    let mut references = audited_references(&fed);
    assert!(!references.contains(&withdrawn_reference), "the audit names a withdrawn reference only by digest");
    references.push(withdrawn_reference);
    assert!(references.len() >= 4, "{references:?}");
    let logs = std::fs::read_to_string(&log).unwrap();
    let mut secrets: Vec<String> = references;
    secrets.extend(["OBSP1", "OBSP2", "OBSC1", "OBSC3", "OBSR1", "OBSS1", OPERATOR, "Rossi", "ROSSI", "Greco"].map(String::from));
    secrets.push(cf("Rossi", "Mario", Sex::M, 1940, 2, 11, "E506"));
    for s in &secrets {
        assert!(!after.contains(s.as_str()), "{s} appears in the metrics");
        assert!(!logs.contains(s.as_str()), "{s} appears in the coordinator's log");
    }

    // JSON logs: one object per line, with level and message at the top level; the lines a
    // federation run makes are there.
    let mut messages = Vec::new();
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        let o = v.as_object().unwrap_or_else(|| panic!("not a JSON object: {line}"));
        assert!(o.contains_key("timestamp") && o.contains_key("level"), "{line}");
        messages.push(o["message"].as_str().unwrap_or_else(|| panic!("no message: {line}")).to_string());
    }
    for expected in ["coordinator listening", "metrics endpoint listening", "batch stored", "who-else refused", "shutting down"] {
        assert!(messages.iter().any(|m| m.starts_with(expected)), "no {expected:?} line in {messages:#?}");
    }
    eprintln!("observability run: {:.1} s", took.as_secs_f64());
}

#[test]
fn a_metrics_address_in_use_stops_the_start_with_what_to_do() {
    let fed = Federation::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    set_metrics_listen(&fed, &addr);
    let mut child = Command::new(bin_dir().join("ponte-coordinator"))
        .args(["serve", "--config"])
        .arg(&fed.coordinator_config)
        .env_remove("PONTE_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the coordinator started although its metrics address {addr} is taken");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains(&format!("cannot serve metrics on {addr} ([metrics] listen)")) && stderr.contains("listen = \"\""), "{stderr}");
    drop(taken);
}
