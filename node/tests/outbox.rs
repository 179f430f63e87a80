//! The outbox drain, who-else and the data-subject report against the real coordinator
//! (`ponte_coordinator::server::serve` in this process, real sled directory, real mutual TLS):
//! what reaches the coordinator, in which order, keyed by which reference — and what never does
//! (never-encode relationships, revoked consents). Checked through what the coordinator itself
//! exposes: a second node's answers, its store and its audit chain.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{QUARTA, ROSSI, Site, text};
use ponte_coordinator::audit::{self, Entry, Event};
use ponte_coordinator::config::{CoordinatorConfig, MetricsConfig, TlsConfig};
use ponte_coordinator::model::ItemKey;
use ponte_coordinator::storage::Store;
use ponte_node::client::{self, PublishOutcome};
use ponte_node::store::OutboxOp;
use ponte_proto::v1::EntityType;

/// The real coordinator, serving on its own runtime and thread until [`RealCoordinator::stop`].
struct RealCoordinator {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: mpsc::Receiver<()>,
}

impl RealCoordinator {
    fn start(cfg: CoordinatorConfig) -> RealCoordinator {
        let (ready_tx, ready) = mpsc::channel::<Result<SocketAddr, String>>();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (stopped_tx, stopped) = mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let on_ready = ready_tx.clone();
            let shutdown = async move {
                let _ = stop_rx.await;
            };
            let served = rt.block_on(ponte_coordinator::server::serve(cfg, shutdown, move |addr| on_ready.send(Ok(addr)).unwrap()));
            // Dropping the runtime drops the coordinator, and with it the sled store's lock.
            drop(rt);
            if let Err(e) = served {
                let _ = ready_tx.send(Err(format!("{e:#}")));
            }
            let _ = stopped_tx.send(());
        });
        let addr = ready.recv_timeout(Duration::from_secs(60)).expect("the coordinator did not start").expect("the coordinator failed");
        RealCoordinator { addr, stop: Some(stop), stopped }
    }

    /// Stops serving and waits until the store is closed.
    fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.stopped.recv_timeout(Duration::from_secs(60)).expect("the coordinator did not stop");
    }
}

impl Drop for RealCoordinator {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The federation: CA, coordinator and two node certificates, and a policy that allows
/// break-glass (the shipped default with `[break_glass] enabled = true`).
fn federation(dir: &Path) {
    use ponte_certs_dev::Holder;
    ponte_certs_dev::generate_federation(
        dir,
        &[
            Holder::coordinator("coordinator"),
            Holder::node("asl-lecce", EntityType::Asl, "ASL Lecce"),
            Holder::node("comune-lecce", EntityType::Comune, "Comune di Lecce"),
        ],
        5,
    )
    .unwrap();
    let default = ponte_coordinator::policy::DEFAULT_POLICY_TOML;
    assert_eq!(default.matches("enabled = false").count(), 1);
    std::fs::write(dir.join("policy.toml"), default.replace("enabled = false", "enabled = true")).unwrap();
}

fn config(fed: &Path, data_dir: &Path, listen: &str) -> CoordinatorConfig {
    CoordinatorConfig {
        listen: listen.into(),
        data_dir: data_dir.to_path_buf(),
        key_epochs: vec![1],
        schema_file: None,
        model_file: None,
        policy_file: Some(fed.join("policy.toml")),
        tls: TlsConfig { ca: fed.join("ca.pem"), cert: fed.join("coordinator.pem"), key: fed.join("coordinator.key") },
        metrics: MetricsConfig::off(),
        limits: Default::default(),
        storage: Default::default(),
        connections: Default::default(),
    }
}

/// One `publish` run through the library; returns its outcome and how many changes stay queued.
fn drain(rt: &tokio::runtime::Runtime, site: &Site) -> (PublishOutcome, usize) {
    let node = site.open();
    rt.block_on(async {
        let mut c = client::connect(&node).await.unwrap();
        let o = client::publish_outbox(&node, &mut c, |_| {}).await.unwrap();
        (o, node.store.outbox_len())
    })
}

const GIVE: &[&str] = &[
    "--categories", "serd", "--recipients", "comune", "--purposes", "continuita_assistenziale", "--from", "2026-01-01",
    "--until", "2099-12-31", "--given-by", "interessato",
];

fn give(site: &Site, record: &str) -> String {
    let mut args = vec!["consent", "give", record];
    args.extend_from_slice(GIVE);
    site.ok(&args).trim().to_string()
}

/// What a node's who-else (continuita_assistenziale, operatore_pua) shows about a record:
/// `entity service`, or `entity ~group` when generalised; sorted.
fn who_else(site: &Site, record: &str) -> Vec<String> {
    let j: serde_json::Value = serde_json::from_str(site.ok(&["--json", "who-else", record]).trim()).unwrap();
    let mut v: Vec<String> = j["answer"]
        .as_array()
        .unwrap_or_else(|| panic!("{j}"))
        .iter()
        .map(|r| match r["service"].as_str().unwrap() {
            "" => format!("{} ~{}", r["entity_id"].as_str().unwrap(), r["category_group"].as_str().unwrap()),
            s => format!("{} {s}", r["entity_id"].as_str().unwrap()),
        })
        .collect();
    v.sort();
    v
}

/// The audit entries about what a node's outbox delivers, in chain order.
fn delivered(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| {
            let who = &e.record.actor;
            Some(match &e.record.event {
                Event::ConsentRecorded { consent, reference } => format!("{who} consent_recorded {consent} {reference}"),
                Event::ConsentRevoked { consent } => format!("{who} consent_revoked {consent}"),
                Event::ObscuringChanged { item, obscured } => format!("{who} obscuring_changed {item} {obscured}"),
                Event::Erased { erased, digest, .. } => format!("{who} erased {erased} {digest}"),
                Event::RetentionErased { erased, digest, .. } => format!("{who} retention_erased {erased} {digest}"),
                _ => return None,
            })
        })
        .collect()
}

/// Opens the stopped coordinator's store and checks its audit chain.
fn open_store(data_dir: &Path) -> (Store, Vec<Entry>) {
    let store = Store::open(data_dir).unwrap();
    let entries = store.audit_entries().unwrap();
    audit::verify(&entries).unwrap();
    (store, entries)
}

fn key(node: &str, reference: &str) -> ItemKey {
    ItemKey { node: node.into(), reference: reference.into() }
}

/// Rossi's SerD relationship at the ASL that may be published (T3: shown only with consent), and
/// Bianchi, whose only relationship closed long ago (removed by the coordinator's retention).
const ROSSI_SERD: &str = "P1;R3;Rossi;Mario;M;1940-02-11;Lecce;;serd;attiva;2023-06-01;serd-lecce;N;N";
const BIANCHI: &str = "P3;R4;Bianchi;Giuseppe;M;1948-09-03;Nardò;;cure_domiciliari;conclusa;2020-01-01;distretto-lecce;N;N";

#[test]
fn the_outbox_reaches_the_real_coordinator_in_order_and_never_encoded_relationships_never_do() {
    let started = Instant::now();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fed = tempfile::tempdir().unwrap();
    federation(fed.path());
    let data_dir: PathBuf = fed.path().join("coordinator-data");
    let coordinator = RealCoordinator::start(config(fed.path(), &data_dir, "127.0.0.1:0"));
    let url = format!("https://{}", coordinator.addr);
    let tls = |id: &str| (fed.path().join("ca.pem"), fed.path().join(format!("{id}.pem")), fed.path().join(format!("{id}.key")));
    let (ca, cert, key_file) = tls("asl-lecce");
    let asl = Site::new(true, &url, Some((&ca, &cert, &key_file)));
    let (ca, cert, key_file) = tls("comune-lecce");
    let comune = Site::of_node(("comune-lecce", "comune", "Comune di Lecce"), Some(&asl.secret_file()), true, &url, Some((&ca, &cert, &key_file)));

    // The Comune follows Rossi and Quarta too, and publishes first.
    comune.import(
        "c.csv",
        &[
            "C1;S1;Rossi;Mario;M;1940-02-11;Lecce;;servizio_sociale_professionale;attiva;2025-01-01;servizi-sociali;S;N",
            "C2;S2;Quarta;Addolorata;F;1935-07-30;Galatina;;assistenza_domiciliare_sociale;attiva;2025-02-01;servizi-sociali;N;N",
        ],
    );
    let (o, left) = drain(&rt, &comune);
    assert_eq!((o.items_sent, left), (2, 0), "{o:?}");

    // Rossi also has an anonymous SerD relationship, R0, that sorts before R1.
    let anonymous = "P1;R0;Rossi;Mario;M;1940-02-11;Lecce;;serd;attiva;2022-05-01;serd-lecce;N;S";
    asl.import("a.csv", &[anonymous, ROSSI, ROSSI_SERD, QUARTA]);
    let c1 = give(&asl, "P1");
    asl.ok(&["obscure", "R2"]);
    let c2 = give(&asl, "P2");
    asl.ok(&["consent", "revoke", &c2]);
    let [r0, r1, r2, r3] = ["R0", "R1", "R2", "R3"].map(|id| asl.relationship(id).reference);

    let (o, left) = drain(&rt, &asl);
    assert_eq!(left, 0);
    // 3 items (never R0); c2 was revoked before it was sent: dropped, never asserted.
    assert_eq!((o.items_sent, o.consents_sent, o.obscurings_sent, o.revocations_sent, o.dropped, o.deferred), (3, 1, 1, 1, 1, 0), "{o:?}");

    // Real effects, seen by the Comune: the consented T3 relationship is shown generalised, the
    // obscured one not at all.
    assert_eq!(who_else(&comune, "C1"), ["asl-lecce ~assistenza_domiciliare", "asl-lecce ~servizio_specialistico"]);
    assert_eq!(who_else(&comune, "C2"), Vec::<String>::new());
    // Lifting the obscuring shows Quarta's RSA; obscuring it again hides it.
    asl.ok(&["obscure", "R2", "--undo"]);
    let (o, _) = drain(&rt, &asl);
    assert_eq!(o.obscurings_sent, 1, "{o:?}");
    assert_eq!(who_else(&comune, "C2"), ["asl-lecce ~assistenza_residenziale"]);
    asl.ok(&["obscure", "R2"]);
    drain(&rt, &asl);
    assert_eq!(who_else(&comune, "C2"), Vec::<String>::new());
    // After the revocation of c1 the SerD relationship is gone from the answer.
    asl.ok(&["consent", "revoke", &c1]);
    let (o, left) = drain(&rt, &asl);
    assert_eq!((o.revocations_sent, left), (1, 0), "{o:?}");
    assert_eq!(who_else(&comune, "C1"), ["asl-lecce ~assistenza_domiciliare"]);

    // Queued upserts of a relationship that is then marked never_encode are dropped; its
    // withdrawal goes.
    asl.ok(&["republish"]);
    let flipped = QUARTA.strip_suffix(";N").unwrap().to_string() + ";S";
    asl.import("b.csv", &[anonymous, ROSSI, ROSSI_SERD, &flipped]);
    let (o, left) = drain(&rt, &asl);
    assert_eq!(left, 0);
    assert_eq!((o.items_sent, o.withdrawals_sent, o.dropped), (2, 1, 1), "{o:?}");

    // Bianchi's relationship closed in 2020: published, then removed by the retention sweep of
    // the restarted coordinator (the sweep runs at start).
    asl.import("c.csv", &[anonymous, ROSSI, ROSSI_SERD, &flipped, BIANCHI]);
    let (o, left) = drain(&rt, &asl);
    assert_eq!((o.items_sent, left), (1, 0), "{o:?}");
    let r4 = asl.relationship("R4").reference;
    let addr = coordinator.addr;
    coordinator.stop();

    // What the coordinator stored and audited so far, in the order the node sent it.
    {
        let (store, entries) = open_store(&data_dir);
        let a = |r: &str| format!("asl-lecce/{r}");
        assert_eq!(
            delivered(&entries),
            vec![
                // Re-sent after every publication of an obscured relationship.
                format!("asl-lecce obscuring_changed {} true", a(&r2)),
                // Keyed by the first *published* relationship of the record: R1, not R0.
                format!("asl-lecce consent_recorded asl-lecce/{c1} {}", a(&r1)),
                format!("asl-lecce obscuring_changed {} true", a(&r2)),
                // c2 was never asserted; its revocation is harmless.
                format!("asl-lecce consent_revoked asl-lecce/{c2}"),
                format!("asl-lecce obscuring_changed {} false", a(&r2)),
                format!("asl-lecce obscuring_changed {} true", a(&r2)),
                format!("asl-lecce consent_revoked asl-lecce/{c1}"),
                // Withdrawals are audited by count and digest of the erased labels.
                format!("asl-lecce erased 1 {}", audit::labels_digest(&[a(&r2)])),
            ]
        );
        let counts = store.counts_by_node().unwrap();
        assert_eq!((counts.get("asl-lecce"), counts.get("comune-lecce")), (Some(&3), Some(&2)), "{counts:?}");
        for r in [&r1, &r3, &r4] {
            assert!(store.get_item(&key("asl-lecce", r)).unwrap().is_some(), "{r}");
        }
        // Never encoded: R0 never, R2 not since it was flipped (withdrawn, its re-upsert dropped).
        assert!(store.get_item(&key("asl-lecce", &r0)).unwrap().is_none());
        assert!(store.get_item(&key("asl-lecce", &r2)).unwrap().is_none());
        assert!(store.consents().unwrap().is_empty(), "c1 revoked, c2 never sent");
    }

    // The coordinator restarts on the same store and address.
    let coordinator = RealCoordinator::start(config(fed.path(), &data_dir, &addr.to_string()));
    assert_eq!(coordinator.addr, addr);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = asl.run(&["subject-report", "P3", "--operator", "dpo-asl"]);
        if !o.status.success() && text(&o).contains("does not know record \"P3\"") {
            break;
        }
        assert!(Instant::now() < deadline, "the retention sweep did not remove R4: {}", text(&o));
        std::thread::sleep(Duration::from_millis(100));
    }
    // What survived the restart: the revocation and the obscuring.
    assert_eq!(who_else(&comune, "C1"), ["asl-lecce ~assistenza_domiciliare"]);

    // A consent whose reference the coordinator does not know (removed by retention) is not
    // lost: it stays queued, run after run, until the reference is published again.
    let c3 = give(&asl, "P3");
    for _ in 0..2 {
        let (o, left) = drain(&rt, &asl);
        assert_eq!((o.deferred, o.consents_sent, left), (1, 0, 1), "{o:?}");
    }
    assert_eq!(asl.outbox(), vec![OutboxOp::Consent { consent_id: c3.clone() }]);
    asl.ok(&["republish"]);
    let (o, left) = drain(&rt, &asl);
    assert_eq!((o.deferred, o.items_sent, o.consents_sent, left), (1, 3, 1, 0), "{o:?}");

    // Who-else under break-glass (allowed for operatore_cot), and the generalised answer as text
    // and JSON. T3 stays hidden without consent, break-glass or not.
    let o = comune.run(&["who-else", "C1", "--purpose", "emergenza", "--break-glass", "incapacita_di_consentire", "--role", "operatore_cot"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("ASL Lecce (asl-lecce): assistenza_domiciliare (generalizzata) — attiva dal 03/2024, case manager [certa]"), "{out}");
    assert!(!out.contains("servizio_specialistico"), "{out}");
    // Refused for a role the policy does not allow to break the glass.
    let o = comune.run(&["who-else", "C1", "--purpose", "emergenza", "--break-glass", "pericolo_di_vita"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("refused"), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_str(comune.ok(&["--json", "who-else", "C1"]).trim()).unwrap();
    assert_eq!((j["answer"][0]["service"].as_str(), j["answer"][0]["category_group"].as_str()), (Some(""), Some("assistenza_domiciliare")), "{j}");

    // The data-subject report at the ASL, keyed by the first published reference: the Comune's
    // relationship (in full: the ASL is a health requester) and the Comune's questions.
    let out = asl.ok(&["subject-report", "P1", "--operator", "dpo-asl"]);
    assert!(out.contains("Comune di Lecce (comune-lecce), unità servizi-sociali: servizio_sociale_professionale — attiva dal 01/2025, case manager [certa]"), "{out}");
    assert!(out.contains("Comune di Lecce (comune-lecce), finalità emergenza, operatore_pua operatore-cli: rifiutata"), "{out}");
    assert!(
        out.contains("Comune di Lecce (comune-lecce), finalità emergenza, operatore_cot operatore-cli: comunicato: assistenza_domiciliare (generalizzata) (ASL Lecce)"),
        "{out}"
    );
    assert!(out.contains("servizio_specialistico (generalizzata) (ASL Lecce)"), "the question before c1 was revoked: {out}");
    let j: serde_json::Value = serde_json::from_str(asl.ok(&["--json", "subject-report", "P1"]).trim()).unwrap();
    assert_eq!(j["record_id"].as_str(), Some("P1"), "{j}");
    let refused: Vec<&serde_json::Value> = j["accesses"].as_array().unwrap().iter().filter(|a| a["refused"] == true).collect();
    assert_eq!(refused.len(), 1, "{j}");
    assert_eq!((refused[0]["purpose"].as_str(), refused[0]["entity_id"].as_str()), (Some("emergenza"), Some("comune-lecce")), "{j}");
    let receipt = j["receipt"].as_u64().unwrap();
    coordinator.stop();

    let (store, entries) = open_store(&data_dir);
    let tail = delivered(&entries);
    assert_eq!(
        tail[tail.len() - 2..],
        [format!("coordinator retention_erased 1 {}", audit::labels_digest(&[format!("asl-lecce/{r4}")])), format!("asl-lecce consent_recorded asl-lecce/{c3} asl-lecce/{r4}")]
    );
    assert_eq!(tail.len(), 10);
    assert_eq!(store.consents().unwrap().into_iter().map(|(n, c, row)| (n, c, row.reference)).collect::<Vec<_>>(), [("asl-lecce".to_string(), c3.clone(), key("asl-lecce", &r4))]);
    assert_eq!(store.counts_by_node().unwrap().get("asl-lecce"), Some(&3));
    // The never-encoded relationship is named nowhere at the coordinator.
    assert!(!serde_json::to_string(&entries).unwrap().contains(&r0));
    // The break-glass question was audited with its reason and notified; the report is keyed by R1.
    let bg = entries
        .iter()
        .find(|e| matches!(&e.record.event, Event::WhoElseAnswered { break_glass: Some(r), .. } if r == "incapacita_di_consentire"))
        .expect("break-glass answer audited");
    assert_eq!(bg.record.actor, "comune-lecce");
    assert!(entries.iter().any(|e| matches!(&e.record.event, Event::BreakGlassNotified { question, .. } if *question == bg.sequence)));
    let report = entries.iter().find(|e| e.sequence == receipt).unwrap();
    assert!(
        matches!(&report.record.event, Event::SubjectReported { reference, .. } if *reference == format!("asl-lecce/{r1}")),
        "{report:?}"
    );
    eprintln!("outbox test against the real coordinator: {:?}", started.elapsed());
}
