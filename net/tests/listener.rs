//! The listener over real sockets on loopback with real TLS: eviction order under the
//! connection limit, no eviction of busy connections, the idle and body timeouts, the peer's
//! certificate in the request, and TCP_NODELAY (by its effect: a response written in two pieces
//! is not held back by Nagle's algorithm, which a listener without it is, on the same machine).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use ponte_net::{BodyError, Limits, Listener, PeerInfo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Pki {
    _dir: tempfile::TempDir,
    ca: Vec<u8>,
    server_cert: Vec<u8>,
    server_key: Vec<u8>,
    client_cert: Vec<u8>,
    client_key: Vec<u8>,
}

fn pki() -> Pki {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    use ponte_certs_dev::Holder;
    ponte_certs_dev::generate_federation(
        dir.path(),
        &[Holder::coordinator("coordinator"), Holder::node("asl-lecce", ponte_proto::v1::EntityType::Asl, "ASL Lecce")],
        5,
    )
    .unwrap();
    let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
    Pki {
        ca: read("ca.pem"),
        server_cert: read("coordinator.pem"),
        server_key: read("coordinator.key"),
        client_cert: read("asl-lecce.pem"),
        client_key: read("asl-lecce.key"),
        _dir: dir,
    }
}

fn roots(p: &Pki) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&p.ca) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

/// The server side: client certificates optional, verified against the CA when sent.
fn server_tls(p: &Pki) -> rustls::ServerConfig {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&p.server_cert).map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_slice(&p.server_key).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots(p))).allow_unauthenticated().build().unwrap();
    rustls::ServerConfig::builder().with_client_cert_verifier(verifier).with_single_cert(certs, key).unwrap()
}

fn client_tls(p: &Pki, alpn: &[&[u8]], with_cert: bool) -> tokio_rustls::TlsConnector {
    let b = rustls::ClientConfig::builder().with_root_certificates(roots(p));
    let mut cfg = if with_cert {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&p.client_cert).map(|c| c.unwrap()).collect();
        b.with_client_auth_cert(certs, PrivateKeyDer::from_pem_slice(&p.client_key).unwrap()).unwrap()
    } else {
        b.with_no_client_auth()
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A response body of two small frames, the second 2 ms after the first: two writes on the
/// socket, the pattern Nagle's algorithm delays.
struct TwoFrames {
    sent: u8,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for TwoFrames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.sent {
            0 => {
                self.sent = 1;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first ")))))
            }
            1 => {
                let pause = self.pause.get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(2))));
                match pause.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        self.sent = 2;
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"second")))))
                    }
                }
            }
            _ => Poll::Ready(None),
        }
    }
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn text(status: u16, s: String) -> http::Response<TestBody> {
    http::Response::builder().status(status).body(Full::new(Bytes::from(s)).boxed()).unwrap()
}

/// The test application: `/ok`, `/peer` (what the request knows of its peer), `/echo` (reads
/// the whole body; 408 when the listener cut it), `/slow` (answers after 3 s), `/two`.
async fn app(req: http::Request<ponte_net::Body>) -> Result<http::Response<TestBody>, Infallible> {
    let peer = req.extensions().get::<PeerInfo>().cloned();
    Ok(match req.uri().path() {
        "/ok" => text(200, "ok".into()),
        "/peer" => {
            let p = peer.expect("every request carries PeerInfo");
            text(200, format!("certs={} leaf={} ip={}", p.certificates.len(), p.leaf().is_some(), p.remote_addr.ip()))
        }
        "/echo" => match req.into_body().collect().await {
            Ok(b) => text(200, format!("{} bytes", b.to_bytes().len())),
            Err(BodyError::Idle(_)) => text(408, "body cut".into()),
            Err(e) => text(400, e.to_string()),
        },
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            text(200, "slow".into())
        }
        "/two" => http::Response::new(TwoFrames { sent: 0, pause: None }.boxed()),
        _ => text(404, "no".into()),
    })
}

struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), &mut self.task).await.expect("the listener stops after shutdown").unwrap();
    }
}

async fn start(p: &Pki, limits: Limits) -> Running {
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), server_tls(p), limits).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(listener.serve(tower::service_fn(app), async move {
        let _ = rx.await;
    }));
    Running { addr, stop: Some(stop), task }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_connect(p: &Pki, addr: SocketAddr, alpn: &[&[u8]]) -> Tls {
    let tcp = TcpStream::connect(addr).await.unwrap();
    client_tls(p, alpn, false).connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap()
}

/// One HTTP/1.1 request on an open connection; returns the status line and body text.
async fn h1(conn: &mut Tls, path: &str) -> String {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

/// Whether the server closed the connection within `within` (EOF or an error on read).
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(conn: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_limit_the_least_recently_active_idle_connection_is_evicted_never_a_busy_one() {
    let p = pki();
    let limits = Limits {
        max_connections: 3,
        max_connections_per_ip: 3,
        handshake_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        admission_wait: Duration::from_millis(500),
        // The order is what is tested here; the minimum idleness has its own test below.
        evictable_after: Duration::ZERO,
        ..Limits::default()
    };
    let server = start(&p, limits).await;
    let mut a = tls_connect(&p, server.addr, &[b"http/1.1"]).await;
    let mut b = tls_connect(&p, server.addr, &[b"http/1.1"]).await;
    let mut c = tls_connect(&p, server.addr, &[b"http/1.1"]).await;
    // `a` answers a request: now the most recently active; `b` is the least.
    assert!(h1(&mut a, "/ok").await.starts_with("HTTP/1.1 200"));
    let mut d = tls_connect(&p, server.addr, &[b"http/1.1"]).await;
    assert!(closed_within(&mut b, Duration::from_secs(3)).await, "b, the least recently active idle connection, was evicted");
    assert!(!closed_within(&mut c, Duration::from_millis(300)).await, "c stays");
    assert!(h1(&mut a, "/ok").await.starts_with("HTTP/1.1 200"), "a stays and still serves");
    assert!(h1(&mut d, "/ok").await.starts_with("HTTP/1.1 200"), "the newcomer is served");

    // c and d busy with a slow request, a idle: the next newcomer evicts a, never c or d.
    c.write_all(b"GET /slow HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
    d.write_all(b"GET /slow HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut e = tls_connect(&p, server.addr, &[b"http/1.1"]).await;
    assert!(closed_within(&mut a, Duration::from_secs(2)).await, "the idle one went");
    // Now every connection is busy or just arrived; e starts a slow request too, so all three
    // are busy and a further newcomer is not admitted (its handshake never completes).
    e.write_all(b"GET /slow HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(5), client_tls(&p, &[b"http/1.1"], false).connect(ServerName::try_from("localhost").unwrap(), tcp)).await;
    assert!(matches!(refused, Ok(Err(_))), "with every connection busy the newcomer is closed after the admission wait: {refused:?}");
    // The busy ones were not touched: each answers its slow request.
    for (name, conn) in [("c", &mut c), ("d", &mut d), ("e", &mut e)] {
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await.unwrap().unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(got.starts_with("HTTP/1.1 200") && got.ends_with("slow"), "{name}: {got}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_http2_after_the_preface_included_and_a_trickled_body_is_cut() {
    let p = pki();
    let limits = Limits { idle_timeout: Duration::from_secs(1), body_idle_timeout: Duration::from_secs(1), ..Limits::default() };
    let server = start(&p, limits).await;
    let started = Instant::now();
    let mut idle_tls = tls_connect(&p, server.addr, &[b"http/1.1"]).await;
    let mut h2 = tls_connect(&p, server.addr, &[b"h2"]).await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // The HTTP/2 preface and an empty SETTINGS frame, then nothing.
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let mut keep_alive = tls_connect(&p, server.addr, &[b"http/1.1"]).await;
    assert!(h1(&mut keep_alive, "/ok").await.starts_with("HTTP/1.1 200"));
    for (name, conn) in [("idle TLS", &mut idle_tls), ("HTTP/2 after its preface", &mut h2), ("HTTP/1 keep-alive after a request", &mut keep_alive)] {
        assert!(closed_within(conn, Duration::from_secs(5)).await, "{name} closed by the idle timeout");
    }
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());

    // A body trickled slower than the body idle timeout: cut, answered 408.
    let mut slow = tls_connect(&p, server.addr, &[b"http/1.1"]).await;
    slow.write_all(b"POST /echo HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\nx").await.unwrap();
    let cut_at = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // Keep trickling a byte every 1.5 s; the server must answer before the body is complete.
    for _ in 0..20 {
        match tokio::time::timeout(Duration::from_millis(1500), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                if got.ends_with(b"body cut") {
                    break;
                }
            }
            Err(_) => {
                let _ = slow.write_all(b"x").await;
            }
        }
    }
    let got = String::from_utf8_lossy(&got).to_string();
    assert!(got.starts_with("HTTP/1.1 408"), "the trickled body was cut: {got:?}");
    assert!(cut_at.elapsed() < Duration::from_secs(5), "cut within the body idle timeout: {:?}", cut_at.elapsed());

    // A body that keeps coming within the idle timeout is read whole, however long it takes.
    let mut steady = tls_connect(&p, server.addr, &[b"http/1.1"]).await;
    steady.write_all(b"POST /echo HTTP/1.1\r\nhost: localhost\r\ncontent-length: 4\r\n\r\n").await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        steady.write_all(b"y").await.unwrap();
    }
    let n = tokio::time::timeout(Duration::from_secs(5), steady.read(&mut buf)).await.unwrap().unwrap();
    let got = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(got.starts_with("HTTP/1.1 200") && got.ends_with("4 bytes"), "{got}");
    server.stop().await;
}

fn reqwest_client(p: &Pki, identity: bool, http2: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder().use_rustls_tls().add_root_certificate(reqwest::Certificate::from_pem(&p.ca).unwrap());
    if identity {
        let mut pem = p.client_cert.clone();
        pem.extend_from_slice(&p.client_key);
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    if http2 {
        b = b.http2_prior_knowledge();
    } else {
        b = b.http1_only();
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_carries_the_peer_address_and_verified_certificate_chain() {
    let p = pki();
    let server = start(&p, Limits::default()).await;
    let url = format!("https://localhost:{}/peer", server.addr.port());
    for http2 in [false, true] {
        let with: String = reqwest_client(&p, true, http2).get(&url).send().await.unwrap().text().await.unwrap();
        assert_eq!(with, "certs=1 leaf=true ip=127.0.0.1", "http2={http2}");
        let without: String = reqwest_client(&p, false, http2).get(&url).send().await.unwrap().text().await.unwrap();
        assert_eq!(without, "certs=0 leaf=false ip=127.0.0.1", "http2={http2}");
    }
    server.stop().await;
}

/// The same two-frame answer from a listener made the plain way, without TCP_NODELAY: the
/// measurement's control.
async fn start_without_nodelay(p: &Pki) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut tls = server_tls(p);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(http::Response::new(TwoFrames { sent: 0, pause: None }))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

/// Median time of `n` GETs of `/two` on one kept-alive HTTP/1.1 connection, after a warm-up.
async fn median_two_frames(client: &reqwest::Client, url: &str, n: usize) -> Duration {
    for _ in 0..5 {
        client.get(url).send().await.unwrap().bytes().await.unwrap();
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let body = client.get(url).send().await.unwrap().bytes().await.unwrap();
        times.push(t.elapsed());
        assert_eq!(&body[..], b"first second");
    }
    times.sort();
    times[n / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodelay_a_response_in_two_writes_is_not_held_back() {
    let p = pki();
    let server = start(&p, Limits::default()).await;
    let control = start_without_nodelay(&p).await;
    let client = reqwest_client(&p, false, false);
    let with = median_two_frames(&client, &format!("https://localhost:{}/two", server.addr.port()), 21).await;
    let without = median_two_frames(&reqwest_client(&p, false, false), &format!("https://localhost:{}/two", control.port()), 21).await;
    eprintln!("median of a two-write answer: ponte-net {with:?}, without TCP_NODELAY {without:?}");
    // The control shows that this machine delays the second write without TCP_NODELAY (Nagle
    // waiting for a delayed ACK, ~40 ms on Linux); the listener must not.
    assert!(without >= Duration::from_millis(30), "the control did not show Nagle's delay ({without:?}): the measurement cannot tell");
    assert!(with < Duration::from_millis(25) && with * 2 < without, "ponte-net {with:?} vs without TCP_NODELAY {without:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_a_request_in_flight_and_stops_accepting() {
    let p = pki();
    let server = start(&p, Limits::default()).await;
    let addr = server.addr;
    let client = reqwest_client(&p, false, true);
    let url = format!("https://localhost:{}/slow", addr.port());
    let slow = tokio::spawn(async move { client.get(&url).send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = Instant::now();
    server.stop().await;
    assert_eq!(slow.await.unwrap().unwrap(), 200, "the request in flight was answered");
    assert!(stopping.elapsed() < Duration::from_secs(8));
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
    let _ = Path::new(".");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_between_two_requests_is_not_evicted_the_newcomer_waits_instead() {
    let p = std::sync::Arc::new(pki());
    let limits = Limits {
        max_connections: 1,
        max_connections_per_ip: 1,
        admission_wait: Duration::from_secs(5),
        evictable_after: Duration::from_millis(800),
        ..Limits::default()
    };
    let server = start(&p, limits).await;
    let mut a = tls_connect(&p, server.addr, &[b"http/1.1"]).await;
    assert!(h1(&mut a, "/ok").await.starts_with("HTTP/1.1 200"));
    // A newcomer arrives while `a` was active a moment ago: `a` keeps its connection and serves
    // another request; the newcomer is admitted only once `a` has been idle long enough.
    let started = std::time::Instant::now();
    let newcomer = tokio::spawn({
        let addr = server.addr;
        let p = p.clone();
        async move { tls_connect(&p, addr, &[b"http/1.1"]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!newcomer.is_finished(), "the newcomer waits");
    assert!(h1(&mut a, "/ok").await.starts_with("HTTP/1.1 200"), "a, active a moment ago, still serves");
    let mut n = tokio::time::timeout(Duration::from_secs(5), newcomer).await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(800), "admitted only once a had been idle long enough: {:?}", started.elapsed());
    assert!(closed_within(&mut a, Duration::from_secs(2)).await, "then a, idle, made room");
    assert!(h1(&mut n, "/ok").await.starts_with("HTTP/1.1 200"));
    server.stop().await;
}
