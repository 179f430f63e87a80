//! End-to-end: the real `ponte-node` and `ponte-coordinator` binaries over mutual TLS on
//! loopback, with real sled directories.

use std::time::{Duration, Instant};

use ponte_e2e::*;
use ponte_node::normalise::Sex;
use ponte_proto::v1;
use ponte_proto::v1::federation_client::FederationClient;

fn rossi_rows() -> Vec<String> {
    let c = cf("Rossi", "Mario", Sex::M, 1940, 2, 11, "E506");
    vec![
        format!("P1;R1;Rossi;Mario;M;1940-02-11;Lecce;{c};cure_domiciliari;attiva;2024-03-01;distretto-lecce;S"),
        format!("P2;R2;Quarta;Addolorata;F;1935-07-30;Galatina;;residenziale_rsa;attiva;2023-01-15;distretto-lecce;N"),
        format!("P3;R3;Greco;Cosimo;M;1950-12-01;Maglie;;salute_mentale;attiva;2022-05-01;csm-lecce;N"),
    ]
}

fn comune_rows() -> Vec<String> {
    let c = cf("Rossi", "Mario", Sex::M, 1940, 2, 11, "E506");
    vec![
        format!("C1;S1;ROSSI;MARIO;M;1940-02-11;LECCE;{c};assistenza_domiciliare_sociale;attiva;2024-01-10;servizio-sociale;N"),
        // Greco is in care at the ASL's CSM (T3): the Comune must never see it.
        "C3;S3;Greco;Cosimo;M;1950-12-01;Maglie;;contributo_economico;attiva;2024-02-01;servizio-sociale;N".to_string(),
    ]
}

#[test]
fn demo_agrees_with_truth_and_the_coordinator_holds_no_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ponte_sim::demo::DemoOptions {
        dir: dir.path().join("demo"),
        bin_dir: bin_dir().to_path_buf(),
        persons: 200,
        seed: 11,
        verbose: false,
    };
    let s = ponte_sim::demo::run(&opts).expect("the demo runs");
    assert!(s.questions > 100, "{s:?}");
    assert_eq!(s.t3_shown, 0, "a protected relationship was shown: {s:?}");
    assert_eq!(s.consent_walkthrough, Some(true), "consent did not show and hide the protected relationship: {s:?}");
    assert!(s.audit_intact && s.audit_entries > s.questions, "{s:?}");
    assert!(s.recall_strong >= 0.95, "certain/probable answers miss too much: {s:?}");
    assert!(s.precision_strong >= 0.97, "certain/probable answers are wrong too often: {s:?}");
    assert!(s.persons_linked as f64 >= 0.95 * s.persons_shared as f64, "{s:?}");

    // Collect the identifying values of the demo data: surnames, given names, codici fiscali
    // and birth dates, as they appear in the exports.
    let mut needles: std::collections::BTreeSet<String> = Default::default();
    for entry in std::fs::read_dir(opts.dir.join("exports")).unwrap().flatten() {
        let p = entry.path();
        if p.extension().is_none_or(|e| e != "csv") || p.file_name().unwrap() == "truth.csv" {
            continue;
        }
        let import: ponte_node::config::ImportConfig =
            toml::from_str(&std::fs::read_to_string(p.with_extension("import.toml")).unwrap()).unwrap();
        let mut rdr = csv::ReaderBuilder::new().delimiter(import.delimiter_byte().unwrap()).from_path(&p).unwrap();
        let headers = rdr.headers().unwrap().clone();
        let idx = |name: &str| headers.iter().position(|h| h == name).unwrap();
        let cols = [
            idx(&import.columns.surname),
            idx(&import.columns.given_names),
            idx(&import.columns.birth_date),
            idx(import.columns.codice_fiscale.as_ref().unwrap()),
        ];
        for rec in rdr.records() {
            let rec = rec.unwrap();
            for c in cols {
                let v = rec.get(c).unwrap_or("").trim();
                // Short values (e.g. "LEO") could occur by chance in binary data.
                if v.len() >= 6 {
                    needles.insert(v.to_string());
                    needles.insert(v.to_uppercase());
                }
            }
        }
    }
    assert!(needles.len() > 300, "too few values collected: {}", needles.len());
    let mut haystacks: Vec<(String, Vec<u8>)> = Vec::new();
    fn walk(dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().is_some_and(|n| n == "ballast") {
                // The disk-space ballast: allocated space, zeros only, holds nothing.
                let bytes = std::fs::read(&p).unwrap();
                assert!(bytes.iter().all(|b| *b == 0), "the ballast holds only zeros");
            } else {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    walk(&opts.dir.join("coordinator"), &mut haystacks);
    assert!(haystacks.iter().any(|(n, _)| n.ends_with(".log")), "the coordinator log is checked too");
    let total: usize = haystacks.iter().map(|(_, b)| b.len()).sum();
    assert!(total > 10_000, "the coordinator directory holds data: {total} bytes");
    for (name, bytes) in &haystacks {
        for n in &needles {
            let found = bytes.windows(n.len()).any(|w| w == n.as_bytes());
            assert!(!found, "{n:?} found in {name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_refuses_strangers_and_impersonation_on_every_service() {
    let mut fed = Federation::new();
    fed.start_coordinator();
    let ca = fed.certs.join("ca.pem");
    let (asl_cert, asl_key) = fed.cert("asl-lecce");

    // A valid node certificate: health and reflection answer.
    let ch = fed.channel(Some((&asl_cert, &asl_key)), &ca).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let ok = health.check(tonic_health::pb::HealthCheckRequest { service: "ponte.v1.Federation".into() }).await;
    assert!(ok.is_ok(), "{ok:?}");

    // No client certificate: refused on health, reflection and the Federation service.
    let ch = fed.channel(None, &ca).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let err = health.check(tonic_health::pb::HealthCheckRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("no client certificate"), "{}", err.message());
    let mut refl = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(ch.clone());
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let err = refl.server_reflection_info(tokio_stream_once(req.clone())).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let mut fedc = FederationClient::new(ch);
    let err = fedc.info(v1::FederationInfoRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    // With a valid certificate, reflection lists the services.
    let ch = fed.channel(Some((&asl_cert, &asl_key)), &ca).await.unwrap();
    let mut refl = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(ch.clone());
    let mut stream = refl.server_reflection_info(tokio_stream_once(req)).await.unwrap().into_inner();
    let listed = format!("{:?}", stream.message().await.unwrap());
    assert!(listed.contains("ponte.v1.Federation"), "{listed}");

    // A certificate from another CA: the TLS handshake or the first call fails.
    let other = tempfile::tempdir().unwrap();
    ponte_certs_dev::generate_federation(
        other.path(),
        &[ponte_certs_dev::Holder::node("asl-lecce", v1::EntityType::Asl, "Impostor")],
        5,
    )
    .unwrap();
    let (oc, ok_) = (other.path().join("asl-lecce.pem"), other.path().join("asl-lecce.key"));
    let refused = tokio::time::timeout(Duration::from_secs(20), async {
        match fed.channel(Some((&oc.to_string_lossy(), &ok_.to_string_lossy())), &ca).await {
            Err(e) => Err(format!("{e:?}")),
            Ok(ch) => {
                let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
                health.check(tonic_health::pb::HealthCheckRequest::default()).await.map(|_| ()).map_err(|e| ponte_node::client::status_text(&e))
            }
        }
    })
    .await;
    assert!(!matches!(refused, Ok(Ok(()))), "a certificate from another CA was accepted");

    // A node publishing or asking as another node.
    let mut fedc = FederationClient::new(ch);
    let info = fedc.info(v1::FederationInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.caller_id, "asl-lecce");
    let err = fedc
        .publish(v1::PublishBatch { node_id: "comune-lecce".into(), schema_fingerprint: info.schema_fingerprint.clone(), key_epoch: 1, batch_id: 1, items: vec![] })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("certificate identifies node 'asl-lecce'"), "{}", err.message());
    let err = fedc
        .who_else(v1::WhoElseQuestion {
            node_id: "comune-lecce".into(),
            anchor_reference: "abc".into(),
            purpose: v1::Purpose::ContinuitaAssistenziale as i32,
            operator_role: v1::OperatorRole::OperatorePua as i32,
            operator_id: "op-1".into(),
            break_glass_reason: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // A wrong schema fingerprint is refused with both fingerprints named.
    let err = fedc
        .publish(v1::PublishBatch { node_id: "asl-lecce".into(), schema_fingerprint: vec![7; 32], key_epoch: 1, batch_id: 2, items: vec![] })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains(&hex::encode([7u8; 32])) && err.message().contains(&hex::encode(&info.schema_fingerprint)), "{}", err.message());
    let err = fedc
        .publish(v1::PublishBatch { node_id: "asl-lecce".into(), schema_fingerprint: info.schema_fingerprint.clone(), key_epoch: 9, batch_id: 3, items: vec![] })
        .await
        .unwrap_err();
    assert!(err.message().contains("key epoch 9"), "{}", err.message());

    // A researcher certificate may use health but not the Federation service.
    let (rc, rk) = fed.cert("ricerca");
    let ch = fed.channel(Some((&rc, &rk)), &ca).await.unwrap();
    let err = FederationClient::new(ch).info(v1::FederationInfoRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
}

fn tokio_stream_once<T: Send + 'static>(t: T) -> impl tonic::codegen::tokio_stream::Stream<Item = T> + Send + 'static {
    tonic::codegen::tokio_stream::iter(vec![t])
}

#[test]
fn who_else_follows_the_person_hides_t3_and_refuses_foreign_anchors_with_audit() {
    let mut fed = Federation::new();
    fed.start_coordinator();
    let asl = fed.node_config("asl-lecce", &default_import());
    let com = fed.node_config("comune-lecce", &default_import());
    let e1 = small_export(fed.dir.path(), "asl.csv", &rossi_rows());
    let e2 = small_export(fed.dir.path(), "com.csv", &comune_rows());
    for (cfg, e) in [(&asl, &e1), (&com, &e2)] {
        let o = node(cfg, &["import", &e.to_string_lossy()]);
        assert!(o.status.success(), "{}", text(&o));
        let o = node(cfg, &["publish"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    // The Comune asks about Rossi: it sees the ASL's cure domiciliari, as certain.
    let o = node(&com, &["--json", "who-else", "C1", "--role", "assistente_sociale"]);
    assert!(o.status.success(), "{}", text(&o));
    let a: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!(a["answer"].as_array().unwrap().len(), 1, "{a}");
    assert_eq!(a["answer"][0]["entity_id"], "asl-lecce");
    // A social requester sees a health category generalised (default policy).
    assert_eq!(a["answer"][0]["category_group"], "assistenza_domiciliare", "{a}");
    assert_eq!(a["answer"][0]["generalised"], true, "{a}");
    assert_eq!(a["answer"][0]["band"], "certain");
    // About Greco, whose only other relationship is at the CSM (T3): an empty answer, with the
    // same shape and notice as any other.
    let o = node(&com, &["--json", "who-else", "C3", "--role", "assistente_sociale"]);
    let g: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!(g["answer"].as_array().unwrap().len(), 0, "{g}");

    // Withdrawal (erasure) at the ASL: the Comune no longer sees Rossi's relationship there.
    let o = node(&asl, &["withdraw", "P1"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = node(&asl, &["publish"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = node(&com, &["--json", "who-else", "C1", "--role", "assistente_sociale"]);
    let a: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!(a["answer"].as_array().unwrap().len(), 0, "{a}");

    // A question anchored on a reference the asking node does not hold is refused.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(async {
        let (c, k) = fed.cert("comune-lecce");
        let ch = fed.channel(Some((&c, &k)), &fed.certs.join("ca.pem")).await.unwrap();
        FederationClient::new(ch)
            .who_else(v1::WhoElseQuestion {
                node_id: "comune-lecce".into(),
                anchor_reference: "0123456789abcdef0123456789abcdef".into(),
                purpose: v1::Purpose::ContinuitaAssistenziale as i32,
                operator_role: v1::OperatorRole::AssistenteSociale as i32,
                operator_id: "op-7".into(),
                break_glass_reason: 0,
            })
            .await
            .unwrap_err()
    });
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("not one of this node's published relationships"), "{}", err.message());

    // The refusal is in the audit chain, which verifies.
    fed.stop_coordinator();
    let data = fed.coordinator_data();
    let o = fed.coordinator_cmd(&["audit", "list", "--data-dir", &data.to_string_lossy()]);
    let log = String::from_utf8_lossy(&o.stdout);
    assert!(log.contains("who_else_refused") && log.contains("0123456789abcdef0123456789abcdef") && log.contains("op-7"), "{log}");
    assert!(log.contains("\"erased\""), "{log}");
    let o = fed.coordinator_cmd(&["audit", "verify", "--data-dir", &data.to_string_lossy()]);
    assert!(o.status.success() && text(&o).contains("intact"), "{}", text(&o));
}

#[test]
fn malformed_rows_are_reported_and_the_rest_imported() {
    let fed = Federation::new();
    let asl = fed.node_config("asl-lecce", &default_import());
    let mut rows = rossi_rows();
    rows.insert(1, "P9;R9;Bianchi;Anna;F;1941-13-45;Lecce;;cure_domiciliari;attiva;2024-01-01;distretto;N".into());
    rows.insert(2, "P10;R10;Verdi;Luigi;M;1939-01-01;Lecce;;teleassistenza;attiva;2024-01-01;distretto;N".into());
    rows.insert(3, "P11;R11;too;few;fields".into());
    let e = small_export(fed.dir.path(), "asl.csv", &rows);
    let o = node(&asl, &["import", &e.to_string_lossy()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("3 imported"), "{out}");
    assert!(out.contains("3 rejected"), "{out}");
    assert!(out.contains("line 3: birth_date"), "{out}");
    assert!(out.contains("line 4: service") && out.contains("teleassistenza"), "{out}");
    assert!(out.contains("line 5: row"), "{out}");
    // Offline: the coordinator is not running, the changes stay queued.
    let o = node(&asl, &["publish"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("stay queued"), "{}", text(&o));
    let o = node(&asl, &["--json", "status"]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["queued"], 3);
}

#[test]
fn missing_config_certificate_or_secret_say_what_to_fix() {
    let fed = Federation::new();
    let o = node(&fed.dir.path().join("nope.toml"), &["status"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("cannot read the node configuration"), "{}", text(&o));

    let cfg = fed.node_config("asl-lecce", &default_import());
    let e = small_export(fed.dir.path(), "asl.csv", &rossi_rows());
    std::fs::rename(&fed.secret, fed.dir.path().join("moved.secret")).unwrap();
    let o = node(&cfg, &["import", &e.to_string_lossy()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("linkage secret") && text(&o).contains("secret generate"), "{}", text(&o));
    std::fs::rename(fed.dir.path().join("moved.secret"), &fed.secret).unwrap();
    let o = node(&cfg, &["import", &e.to_string_lossy()]);
    assert!(o.status.success(), "{}", text(&o));

    std::fs::write(fed.certs.join("asl-lecce.pem"), "not a certificate").unwrap();
    let o = node(&cfg, &["publish"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("node certificate (tls.cert)"), "{}", text(&o));

    let bad = fed.dir.path().join("bad.toml");
    std::fs::write(&bad, "node_id = \"ASL Lecce\"\nentity_type = \"asl\"\n[tls]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\n").unwrap();
    let o = node(&bad, &["status"]);
    assert!(text(&o).contains("node_id") && text(&o).contains("lower-case"), "{}", text(&o));

    let o = fed.coordinator_cmd(&["serve", "--config", &fed.dir.path().join("missing.toml").to_string_lossy()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("cannot read the coordinator configuration"), "{}", text(&o));
}

#[test]
fn queued_changes_survive_a_down_coordinator_and_a_sigkill_mid_publish() {
    let mut fed = Federation::new();
    // A larger export from the simulator, published in small batches.
    let mut scenario = ponte_sim::synth::scenario::demo_scenario(1500);
    scenario.seed = 5;
    let generated = ponte_sim::synth::generate(&scenario);
    let export = generated.exports.iter().find(|e| e.node_id == "asl-lecce").unwrap();
    let file = fed.dir.path().join("asl.csv");
    std::fs::write(&file, &export.csv).unwrap();
    let cfg = fed.node_config("asl-lecce", &export.import);
    let text_cfg = std::fs::read_to_string(&cfg).unwrap().replace("batch_size = 500", "batch_size = 10");
    std::fs::write(&cfg, text_cfg).unwrap();

    // Coordinator down: the node imports and queues.
    let o = node(&cfg, &["import", &file.to_string_lossy()]);
    assert!(o.status.success(), "{}", text(&o));
    let status = |cfg: &std::path::Path| -> serde_json::Value { serde_json::from_slice(&node(cfg, &["--json", "status"]).stdout).unwrap() };
    let total = status(&cfg)["relationships"].as_u64().unwrap();
    assert!(total > 500, "{total}");
    let o = node(&cfg, &["publish"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(status(&cfg)["queued"].as_u64().unwrap(), total);

    // Coordinator up; SIGKILL it while the node is publishing. (Its retention is long enough
    // that no closed relationship of the export expires: this test counts every item.)
    fed.set_coordinator_policy(&ponte_coordinator::policy::DEFAULT_POLICY_TOML.replace("closed_months = 12", "closed_months = 600"));
    fed.start_coordinator();
    let mut publisher = std::process::Command::new(bin_dir().join("ponte-node"))
        .arg("--config")
        .arg(&cfg)
        .arg("publish")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while fed.coordinator_logs().matches("batch stored").count() < 5 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    fed.kill_coordinator();
    let _ = publisher.wait();
    let queued = status(&cfg)["queued"].as_u64().unwrap();
    let acknowledged = total - queued;
    // Batch 5 was stored, so the node had the acks of batches 1–4 (it sends one batch at a time).
    assert!(acknowledged >= 40, "the kill came after at least 4 acknowledged batches: {acknowledged}");
    let stored = fed.stored_items().get("asl-lecce").copied().unwrap_or(0) as u64;
    assert!(stored >= acknowledged, "acknowledged {acknowledged} but only {stored} survived the SIGKILL");

    // Back up: the rest is published, nothing is lost or duplicated.
    fed.start_coordinator();
    let o = node(&cfg, &["publish"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(status(&cfg)["queued"], 0);
    fed.stop_coordinator();
    assert_eq!(fed.stored_items().get("asl-lecce").copied().unwrap_or(0) as u64, total);
}

#[test]
fn serve_publishes_queued_changes_once_the_coordinator_is_back() {
    let mut fed = Federation::new();
    let cfg = fed.node_config("asl-lecce", &default_import());
    edit_node_config(&cfg, |c| c.sync.interval_secs = 1);
    let e = small_export(fed.dir.path(), "asl.csv", &rossi_rows());
    let o = node(&cfg, &["import", &e.to_string_lossy()]);
    assert!(o.status.success(), "{}", text(&o));
    let serve_log = fed.dir.path().join("serve.log");
    let mut serve = std::process::Command::new(bin_dir().join("ponte-node"))
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .env("PONTE_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&serve_log).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    fed.start_coordinator();
    // The sync loop retries with back-off (at most a few seconds here); wait until the node has
    // the coordinator's acknowledgement, not merely until the coordinator has stored the batch.
    let start = Instant::now();
    while !std::fs::read_to_string(&serve_log).unwrap_or_default().contains("published") && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    ponte_sim::demo::terminate(&mut serve);
    let o = node(&cfg, &["--json", "status"]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["queued"], 0, "{s}");
    fed.stop_coordinator();
    assert_eq!(fed.stored_items().get("asl-lecce").copied(), Some(3));
}

#[test]
fn published_messages_carry_no_clear_personal_data() {
    let fed = Federation::new();
    let cfg = fed.node_config("asl-lecce", &default_import());
    let e = small_export(fed.dir.path(), "asl.csv", &rossi_rows());
    let o = node(&cfg, &["import", &e.to_string_lossy()]);
    assert!(o.status.success(), "{}", text(&o));
    let n = ponte_node::node::Node::open(ponte_node::config::NodeConfig::load(&cfg).unwrap()).unwrap();
    let encoder = &n.encoders().unwrap()[0];
    let needles = ["ROSSI", "Rossi", "MARIO", "Mario", "QUARTA", "Quarta", "ADDOLORATA", "Greco", "GRECO", "COSIMO",
        "1940-02-11", "19400211", "11/02/1940", "1935-07-30", "1950-12-01", "Lecce", "LECCE", "Galatina", "Maglie", "E506", "D862"];
    let cf = cf("Rossi", "Mario", Sex::M, 1940, 2, 11, "E506");
    let mut items = 0;
    for rel in n.store.relationships() {
        let rel = rel.unwrap();
        let item = ponte_node::client::published_item(&n, encoder, &rel).unwrap().unwrap();
        let bytes = prost::Message::encode_to_vec(&item);
        for needle in needles.iter().copied().chain([cf.as_str()]) {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} in a published item");
        }
        // Only the opaque reference is a string, and it is random hex.
        assert!(item.reference.len() == 32 && item.reference.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(item.reference, rel.relationship_id);
        items += 1;
    }
    assert_eq!(items, 3);
}
