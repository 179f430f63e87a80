//! A coordinator that rate-limits this node (`RESOURCE_EXHAUSTED`): the outbox drain stops, keeps
//! every unacknowledged change queued, reports when to try again, and is not a failure; the next
//! run delivers the rest. The coordinator here is a stand-in speaking the real protocol over
//! real mutual TLS (the real one does not rate-limit yet): it refuses a set number of calls with
//! `RESOURCE_EXHAUSTED` and `retry-after`, then acknowledges.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{QUARTA, ROSSI, Site, text};
use ponte_node::client::{self, ClientError};
use ponte_node::store::OutboxOp;
use ponte_proto::v1::federation_server::{Federation, FederationServer};
use ponte_proto::v1::{self, EntityType};
use tonic::{Request, Response, Status};

/// Refuses the next `refuse_publish` publish calls and `refuse_withdraw` withdraw calls with
/// RESOURCE_EXHAUSTED and `retry-after: 3`.
#[derive(Default)]
struct Busy {
    refuse_publish: AtomicUsize,
    refuse_withdraw: AtomicUsize,
    published: AtomicUsize,
    withdrawn: AtomicUsize,
}

fn gate(refuse: &AtomicUsize) -> Result<(), Status> {
    if refuse.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        let mut s = Status::resource_exhausted("this node sends too much; slow down");
        s.metadata_mut().insert("retry-after", "3".parse().unwrap());
        return Err(s);
    }
    Ok(())
}

fn unused<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not used by this test"))
}

#[tonic::async_trait]
impl Federation for Busy {
    async fn info(&self, _: Request<v1::FederationInfoRequest>) -> Result<Response<v1::FederationInfo>, Status> {
        unused()
    }
    async fn publish(&self, r: Request<v1::PublishBatch>) -> Result<Response<v1::PublishAck>, Status> {
        gate(&self.refuse_publish)?;
        let b = r.into_inner();
        self.published.fetch_add(b.items.len(), Ordering::SeqCst);
        Ok(Response::new(v1::PublishAck { batch_id: b.batch_id, accepted: b.items.len() as u32, ..Default::default() }))
    }
    type PublishStreamStream = tonic::codegen::tokio_stream::Empty<Result<v1::PublishAck, Status>>;
    async fn publish_stream(&self, _: Request<tonic::Streaming<v1::PublishBatch>>) -> Result<Response<Self::PublishStreamStream>, Status> {
        unused()
    }
    async fn update_relationship(&self, _: Request<v1::UpdateRelationshipRequest>) -> Result<Response<v1::Ack>, Status> {
        unused()
    }
    async fn withdraw(&self, r: Request<v1::WithdrawRequest>) -> Result<Response<v1::Ack>, Status> {
        gate(&self.refuse_withdraw)?;
        self.withdrawn.fetch_add(r.into_inner().references.len(), Ordering::SeqCst);
        Ok(Response::new(v1::Ack::default()))
    }
    async fn who_else(&self, _: Request<v1::WhoElseQuestion>) -> Result<Response<v1::WhoElseAnswer>, Status> {
        unused()
    }
    async fn record_consent(&self, _: Request<v1::ConsentAssertion>) -> Result<Response<v1::Ack>, Status> {
        unused()
    }
    async fn revoke_consent(&self, _: Request<v1::ConsentRevocation>) -> Result<Response<v1::Ack>, Status> {
        unused()
    }
    async fn set_obscured(&self, _: Request<v1::ObscureRequest>) -> Result<Response<v1::Ack>, Status> {
        unused()
    }
    async fn subject_report(&self, _: Request<v1::SubjectReportRequest>) -> Result<Response<v1::SubjectReport>, Status> {
        unused()
    }
}

/// Serves `busy` with the federation's coordinator certificate, client certificates required.
fn serve(rt: &tokio::runtime::Runtime, fed: &std::path::Path, busy: Arc<Busy>) -> SocketAddr {
    use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
    let read = |f: &str| std::fs::read(fed.join(f)).unwrap();
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(read("coordinator.pem"), read("coordinator.key"))).client_ca_root(Certificate::from_pem(read("ca.pem")));
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = FederationServer::from_arc(busy);
    rt.spawn(async move {
        Server::builder().tls_config(tls).unwrap().add_service(svc).serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)).await.unwrap();
    });
    addr
}

#[test]
fn a_rate_limited_drain_keeps_the_rest_queued_and_says_when_to_try_again() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fed = tempfile::tempdir().unwrap();
    ponte_certs_dev::generate_federation(
        fed.path(),
        &[ponte_certs_dev::Holder::coordinator("coordinator"), ponte_certs_dev::Holder::node("asl-lecce", EntityType::Asl, "ASL Lecce")],
        5,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // The first publish is refused.
    let busy = Arc::new(Busy { refuse_publish: AtomicUsize::new(1), ..Busy::default() });
    let addr = serve(&rt, fed.path(), busy.clone());
    let url = format!("https://{addr}");
    let (ca, cert, key) = (fed.path().join("ca.pem"), fed.path().join("asl-lecce.pem"), fed.path().join("asl-lecce.key"));
    let site = Site::new(false, &url, Some((&ca, &cert, &key)));
    site.import("a.csv", &[ROSSI, QUARTA]);
    assert_eq!(site.outbox().len(), 2);

    // The CLI: not a failure of the node, but not done either: exit code 3, the wait, and
    // everything still queued.
    let o = site.run(&["publish"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("slow down") && text(&o).contains("again in 3 s") && text(&o).contains("2 change(s) stay queued"), "{}", text(&o));
    assert_eq!(site.outbox().len(), 2, "nothing was acknowledged, nothing dropped");
    assert_eq!(busy.published.load(Ordering::SeqCst), 0);

    // The library: the next run delivers.
    let node = site.open();
    let (o, left) = rt.block_on(async {
        let mut c = client::connect(&node).await.unwrap();
        let o = client::publish_outbox(&node, &mut c, |_| {}).await.unwrap();
        (o, node.store.outbox_len())
    });
    assert_eq!((o.items_sent, o.retry_after, left), (2, None, 0), "{o:?}");
    drop(node);

    // A withdrawal refused mid-queue: the change acknowledged before it stays acknowledged, the
    // withdrawal stays queued, and the outcome says when to try again.
    site.import("b.csv", &[QUARTA.replace("Quarta", "Quarta-Rizzo").as_str()]);
    site.ok(&["withdraw", "P1"]);
    busy.refuse_withdraw.store(1, Ordering::SeqCst);
    let node = site.open();
    let (o, left) = rt.block_on(async {
        let mut c = client::connect(&node).await.unwrap();
        let o = client::publish_outbox(&node, &mut c, |_| {}).await.unwrap();
        (o, node.store.outbox_len())
    });
    assert_eq!((o.items_sent, o.withdrawals_sent, o.retry_after, left), (1, 0, Some(Duration::from_secs(3)), 1), "{o:?}");
    assert!(matches!(node.store.outbox_head(1).unwrap()[0].1, OutboxOp::Withdraw { .. }));
    let (o, left) = rt.block_on(async {
        let mut c = client::connect(&node).await.unwrap();
        let o = client::publish_outbox(&node, &mut c, |_| {}).await.unwrap();
        (o, node.store.outbox_len())
    });
    assert_eq!((o.withdrawals_sent, o.retry_after, left), (1, None, 0), "{o:?}");
    assert_eq!((busy.published.load(Ordering::SeqCst), busy.withdrawn.load(Ordering::SeqCst)), (3, 1));

    // Any other refusal is an error, not a slow-down.
    let node_err = ClientError::from_status(&Status::permission_denied("no"), &url);
    assert!(!node_err.retry_later());
}
