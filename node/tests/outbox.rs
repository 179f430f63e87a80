//! The outbox drain, who-else and the data-subject report against a fake coordinator over real
//! mutual TLS: what reaches the coordinator, in which order, keyed by which reference — and what
//! never does (never-encode relationships, revoked consents).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use common::{QUARTA, ROSSI, Site, text};
use ponte_node::client::{self, PublishOutcome};
use ponte_node::store::OutboxOp;
use ponte_proto::v1::federation_server::{Federation, FederationServer};
use ponte_proto::v1::{self, EntityType};
use ponte_proto::vocab;
use tonic::codegen::tokio_stream::Stream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// What the fake coordinator knows and was asked, in order.
#[derive(Default)]
struct Seen {
    published: BTreeSet<String>,
    consents: BTreeSet<String>,
    calls: Vec<String>,
}

#[derive(Clone, Default)]
struct FakeCoordinator(Arc<Mutex<Seen>>);

impl FakeCoordinator {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().unwrap()
    }
    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.seen().calls)
    }
}

fn other(group: v1::CategoryGroup) -> v1::OtherRelationship {
    v1::OtherRelationship {
        band: v1::MatchBand::Certain as i32,
        entity_id: "comune-lecce".into(),
        entity_name: "Comune di Lecce".into(),
        entity_type: EntityType::Comune as i32,
        category_group: group as i32,
        status: v1::RelationshipStatus::Attiva as i32,
        since_month: 202401,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Federation for FakeCoordinator {
    async fn info(&self, _: Request<v1::FederationInfoRequest>) -> Result<Response<v1::FederationInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn publish(&self, req: Request<v1::PublishBatch>) -> Result<Response<v1::PublishAck>, Status> {
        let b = req.into_inner();
        let mut seen = self.seen();
        let refs: Vec<String> = b.items.iter().map(|i| i.reference.clone()).collect();
        seen.calls.push(format!("publish {}", refs.join(",")));
        seen.published.extend(refs);
        Ok(Response::new(v1::PublishAck { batch_id: b.batch_id, accepted: b.items.len() as u32, links_found: 0 }))
    }
    type PublishStreamStream = std::pin::Pin<Box<dyn Stream<Item = Result<v1::PublishAck, Status>> + Send>>;
    async fn publish_stream(&self, _: Request<tonic::Streaming<v1::PublishBatch>>) -> Result<Response<Self::PublishStreamStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn update_relationship(&self, _: Request<v1::UpdateRelationshipRequest>) -> Result<Response<v1::Ack>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn withdraw(&self, req: Request<v1::WithdrawRequest>) -> Result<Response<v1::Ack>, Status> {
        let mut seen = self.seen();
        let mut affected = 0;
        for r in req.into_inner().references {
            affected += u32::from(seen.published.remove(&r));
            seen.calls.push(format!("withdraw {r}"));
        }
        Ok(Response::new(v1::Ack { affected }))
    }
    async fn who_else(&self, req: Request<v1::WhoElseQuestion>) -> Result<Response<v1::WhoElseAnswer>, Status> {
        let q = req.into_inner();
        self.seen().calls.push(format!("who_else {} purpose {} break_glass {}", q.anchor_reference, q.purpose, q.break_glass_reason));
        Ok(Response::new(v1::WhoElseAnswer {
            relationships: vec![other(v1::CategoryGroup::AssistenzaDomiciliare)],
            notice: ponte_proto::ANSWER_NOTICE.into(),
            receipt: Some(v1::AuditReceipt { sequence: 41, entry_hash: String::new() }),
        }))
    }
    async fn record_consent(&self, req: Request<v1::ConsentAssertion>) -> Result<Response<v1::Ack>, Status> {
        let a = req.into_inner();
        let mut seen = self.seen();
        seen.calls.push(format!("consent {} {}", a.consent_id, a.reference));
        if !seen.published.contains(&a.reference) {
            return Err(Status::not_found("not one of this node's published references"));
        }
        assert_eq!((a.valid_from, a.valid_until, a.given_by), (20260101, 20991231, v1::ConsentGiver::Interessato as i32));
        seen.consents.insert(a.consent_id);
        Ok(Response::new(v1::Ack { affected: 1 }))
    }
    async fn revoke_consent(&self, req: Request<v1::ConsentRevocation>) -> Result<Response<v1::Ack>, Status> {
        let r = req.into_inner();
        let mut seen = self.seen();
        seen.calls.push(format!("revoke {}", r.consent_id));
        if !seen.consents.remove(&r.consent_id) {
            return Err(Status::not_found("no such consent"));
        }
        Ok(Response::new(v1::Ack { affected: 1 }))
    }
    async fn set_obscured(&self, req: Request<v1::ObscureRequest>) -> Result<Response<v1::Ack>, Status> {
        let o = req.into_inner();
        let mut seen = self.seen();
        seen.calls.push(format!("obscure {} {}", o.reference, o.obscured));
        if !seen.published.contains(&o.reference) {
            return Err(Status::not_found("not one of this node's published references"));
        }
        Ok(Response::new(v1::Ack { affected: 1 }))
    }
    async fn subject_report(&self, req: Request<v1::SubjectReportRequest>) -> Result<Response<v1::SubjectReport>, Status> {
        let r = req.into_inner();
        self.seen().calls.push(format!("subject_report {} {}", r.reference, r.operator_id));
        Ok(Response::new(v1::SubjectReport {
            relationships: vec![other(v1::CategoryGroup::InterventoSociale)],
            accesses: vec![v1::SubjectAccess {
                time: 1_798_761_599,
                entity_id: "comune-lecce".into(),
                entity_name: "Comune di Lecce".into(),
                purpose: v1::Purpose::ConvocazioneUvm as i32,
                operator_role: v1::OperatorRole::AssistenteSociale as i32,
                operator_id: "op-7".into(),
                refused: true,
                disclosed: vec![],
            }],
            notice: "notice".into(),
            receipt: Some(v1::AuditReceipt { sequence: 42, entry_hash: String::new() }),
        }))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the fake coordinator on `rt`; returns the site of node `asl-lecce` pointing at it.
fn start(rt: &tokio::runtime::Runtime, fake: &FakeCoordinator, certs: &std::path::Path) -> Site {
    use ponte_certs_dev::Holder;
    ponte_certs_dev::generate_federation(
        certs,
        &[Holder::coordinator("coordinator"), Holder::node("asl-lecce", EntityType::Asl, "ASL Lecce")],
        5,
    )
    .unwrap();
    let read = |f: &str| std::fs::read_to_string(certs.join(f)).unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(read("coordinator.pem"), read("coordinator.key")))
        .client_ca_root(Certificate::from_pem(read("ca.pem")));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = Server::builder().tls_config(tls).unwrap().add_service(FederationServer::new(fake.clone()));
    rt.spawn(server.serve(addr));
    let site = Site::new(
        true,
        &format!("https://{addr}"),
        Some((&certs.join("ca.pem"), &certs.join("asl-lecce.pem"), &certs.join("asl-lecce.key"))),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "the fake coordinator did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    site
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

#[test]
fn the_outbox_reaches_the_coordinator_in_order_and_never_encoded_relationships_never_do() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = FakeCoordinator::default();
    let certs = tempfile::tempdir().unwrap();
    let site = start(&rt, &fake, certs.path());

    // Rossi also has an anonymous SerD relationship, R0, that sorts before R1.
    let anonymous = "P1;R0;Rossi;Mario;M;1940-02-11;Lecce;;serd;attiva;2022-05-01;serd-lecce;N;S";
    site.import("a.csv", &[anonymous, ROSSI, QUARTA]);
    let c1 = give(&site, "P1");
    site.ok(&["obscure", "R2"]);
    let c2 = give(&site, "P2");
    site.ok(&["consent", "revoke", &c2]);
    let (r0, r1, r2) = (site.relationship("R0").reference, site.relationship("R1").reference, site.relationship("R2").reference);

    let (o, left) = drain(&rt, &site);
    assert_eq!(left, 0);
    assert_eq!(
        fake.take_calls(),
        vec![
            format!("publish {}", [r1.clone(), r2.clone()].join(",")),
            // Re-sent after every publication of an obscured relationship.
            format!("obscure {r2} true"),
            // Keyed by the first *published* relationship of the record: R1, not R0.
            format!("consent {c1} {r1}"),
            format!("obscure {r2} true"),
            // c2 was revoked before it was sent: never asserted, and its revocation is harmless.
            format!("revoke {c2}"),
        ]
    );
    assert_eq!((o.items_sent, o.consents_sent, o.obscurings_sent, o.revocations_sent, o.dropped, o.deferred), (2, 1, 1, 1, 1, 0), "{o:?}");
    assert!(!fake.seen().published.contains(&r0));

    // Queued upserts of a relationship that is then marked never_encode are dropped; its
    // withdrawal goes.
    site.ok(&["republish"]);
    let flipped = QUARTA.strip_suffix(";N").unwrap().to_string() + ";S";
    site.import("b.csv", &[anonymous, ROSSI, &flipped]);
    let (o, left) = drain(&rt, &site);
    assert_eq!(left, 0);
    assert_eq!(fake.take_calls(), vec![format!("publish {r1}"), format!("withdraw {r2}")]);
    assert_eq!((o.items_sent, o.withdrawals_sent, o.dropped), (1, 1, 1), "{o:?}");

    // A consent whose reference the coordinator does not know (e.g. removed by retention) is not
    // lost: it stays queued, run after run, until the reference is published again.
    fake.seen().published.clear();
    let c3 = give(&site, "P1");
    for _ in 0..2 {
        let (o, left) = drain(&rt, &site);
        assert_eq!((o.deferred, o.consents_sent, left), (1, 0, 1), "{o:?}");
        assert_eq!(fake.take_calls(), vec![format!("consent {c3} {r1}")]);
    }
    assert_eq!(site.outbox(), vec![OutboxOp::Consent { consent_id: c3.clone() }]);
    site.ok(&["republish"]);
    let (o, left) = drain(&rt, &site);
    assert_eq!((o.deferred, o.consents_sent, left), (1, 1, 0), "{o:?}");
    assert_eq!(fake.take_calls(), vec![format!("consent {c3} {r1}"), format!("publish {r1}"), format!("consent {c3} {r1}")]);

    // Who-else under break-glass, and the generalised answer as text and JSON.
    let o = site.run(&["who-else", "P1", "--purpose", "emergenza", "--break-glass", "incapacita_di_consentire"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Comune di Lecce (comune-lecce): assistenza_domiciliare (generalizzata) — attiva dal 01/2024 [certa]"), "{out}");
    assert_eq!(
        fake.take_calls(),
        vec![format!("who_else {r1} purpose {} break_glass {}", v1::Purpose::Emergenza as i32, v1::BreakGlassReason::IncapacitaDiConsentire as i32)]
    );
    let j: serde_json::Value = serde_json::from_str(site.ok(&["--json", "who-else", "P1"]).trim()).unwrap();
    assert_eq!((j["answer"][0]["service"].as_str(), j["answer"][0]["category_group"].as_str()), (Some(""), Some("assistenza_domiciliare")), "{j}");
    assert!(fake.take_calls()[0].ends_with("break_glass 0"));

    // The data-subject report, keyed by the first published reference.
    let out = site.ok(&["subject-report", "P1", "--operator", "dpo-asl"]);
    assert!(out.contains("intervento_sociale (generalizzata)"), "{out}");
    assert!(out.contains("2026-12-31 23:59 UTC Comune di Lecce (comune-lecce), finalità convocazione_uvm, assistente_sociale op-7: rifiutata"), "{out}");
    assert_eq!(fake.take_calls(), vec![format!("subject_report {r1} dpo-asl")]);
    let j: serde_json::Value = serde_json::from_str(site.ok(&["--json", "subject-report", "P1"]).trim()).unwrap();
    assert_eq!((j["record_id"].as_str(), j["receipt"].as_u64(), j["accesses"][0]["refused"].as_bool()), (Some("P1"), Some(42), Some(true)), "{j}");
    assert_eq!(j["accesses"][0]["purpose"], vocab::PurposeName::name(v1::Purpose::ConvocazioneUvm));
}
