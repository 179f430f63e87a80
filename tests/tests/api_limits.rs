//! A real `ponte-node serve` under connections that hold slots without using them: TCP
//! connections that never start TLS, TLS handshakes never finished, TLS connections that never
//! send a request, HTTP/2 connections that send the preface and nothing more, and a request whose
//! body trickles in a byte at a time — more of them than the API's connection limit. A new
//! legitimate client is still served at once (the listener evicts the least recently active
//! idle connection rather than refusing it: every client here comes from 127.0.0.1, so a
//! per-address refusal would lock it out), and the trickled body is cut by the body timeout.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ponte_e2e::held::{Held, tls_connector};
use ponte_e2e::{Federation, bin_dir, default_import, edit_node_config, node, text};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: usize = 8;

struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn https(ca: &Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder().add_root_certificate(ca).use_rustls_tls().timeout(Duration::from_secs(20)).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_open_connections_beyond_the_limit_do_not_lock_out_a_real_client_and_a_trickled_body_is_cut() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fed = Federation::new();
    let asl = fed.node_config("asl-lecce", &default_import());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    edit_node_config(&asl, |c| {
        c.api.listen = format!("127.0.0.1:{port}");
        c.api.max_connections = LIMIT;
        c.api.max_connections_per_ip = LIMIT;
        // Long enough that only eviction, not a timeout, can free a slot during the test.
        c.api.handshake_timeout_secs = 60;
        c.api.header_read_timeout_secs = 60;
        c.api.idle_timeout_secs = 120;
        c.api.body_idle_timeout_secs = 2;
    });
    let o = node(&asl, &["--json", "credentials", "add", "cartella-sociale", "--roles", "operatore_pua"]);
    assert!(o.status.success(), "{}", text(&o));
    let token = serde_json::from_slice::<Value>(&o.stdout).unwrap()["credential"].as_str().unwrap().to_string();
    let log = fed.dir.path().join("serve.log");
    let _served = Served(
        Command::new(bin_dir().join("ponte-node"))
            .arg("--config")
            .arg(&asl)
            .arg("serve")
            .env("PONTE_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let ca = fed.certs.join("ca.pem");
    let base = format!("https://localhost:{port}");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let start = Instant::now();
    loop {
        // A fresh client each time, dropped at once: no pooled connection stays behind.
        if let Ok(r) = https(&ca).get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "serve did not come up: {}", std::fs::read_to_string(&log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // First the trickled request: headers at once (so the request is in flight and its
    // connection is never evicted), then its body a byte every 3 s, slower than the body idle
    // timeout of 2 s.
    let mut trickle = tls_connector(&ca, b"http/1.1", None).connect("localhost".try_into().unwrap(), TcpStream::connect(addr).await.unwrap()).await.unwrap();
    let head = format!(
        "POST /api/v1/persons/P1/who-else HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\nx-ponte-operator: op-1\r\nx-ponte-role: operatore_pua\r\ncontent-type: application/json\r\ncontent-length: 64\r\n\r\n{{"
    );
    trickle.write_all(head.as_bytes()).await.unwrap();
    let trickled_at = Instant::now();
    let trickler = tokio::spawn(async move {
        let mut answer = Vec::new();
        let mut buf = [0u8; 2048];
        for _ in 0..30 {
            match tokio::time::timeout(Duration::from_secs(3), trickle.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                Err(_) => {
                    if trickle.write_all(b" ").await.is_err() {
                        break;
                    }
                }
            }
        }
        (String::from_utf8_lossy(&answer).to_string(), trickled_at.elapsed())
    });

    // Then more idle connections than the limit, of every kind.
    let mut held: Vec<(&str, Held)> = Vec::new();
    for _ in 0..4 {
        held.push(("TCP, no TLS", Held::Tcp(TcpStream::connect(addr).await.unwrap())));
    }
    for _ in 0..3 {
        // A TLS record header announcing a ClientHello that never comes.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"\x16\x03\x01\x02\x00\x01").await.unwrap();
        held.push(("TLS handshake never finished", Held::Tcp(s)));
    }
    for _ in 0..3 {
        let s = tls_connector(&ca, b"http/1.1", None).connect("localhost".try_into().unwrap(), TcpStream::connect(addr).await.unwrap()).await.unwrap();
        held.push(("TLS, no request", Held::Tls(Box::new(s))));
    }
    for _ in 0..3 {
        let mut s = tls_connector(&ca, b"h2", None).connect("localhost".try_into().unwrap(), TcpStream::connect(addr).await.unwrap()).await.unwrap();
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
        held.push(("HTTP/2 after its preface", Held::Tls(Box::new(s))));
    }
    assert!(held.len() + 1 > LIMIT);

    // A legitimate client is served promptly: the liveness check, and an authenticated call
    // (HTTP/2, as reqwest negotiates it).
    let legit = https(&ca);
    let t = Instant::now();
    let r = legit.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let healthz = t.elapsed();
    let t = Instant::now();
    let r = https(&ca)
        .get(format!("{base}/api/v1/session"))
        .bearer_auth(&token)
        .header("X-Ponte-Operator", "op-4711")
        .header("X-Ponte-Role", "operatore_pua")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let session: Value = r.json().await.unwrap();
    assert_eq!(session["system_id"], "cartella-sociale", "{session}");
    let authenticated = t.elapsed();
    eprintln!("with {} idle connections held against a limit of {LIMIT}: /healthz {healthz:?}, /api/v1/session {authenticated:?}", held.len());
    assert!(healthz < Duration::from_secs(3) && authenticated < Duration::from_secs(3), "{healthz:?} {authenticated:?}");

    // Room was made by evicting idle connections, oldest first: at least as many as were opened
    // beyond the limit are closed now (the handshake, header and idle timeouts are a minute or
    // more, so nothing else closed them).
    let mut closed = Vec::new();
    for (kind, conn) in held.iter_mut() {
        if conn.closed_within(Duration::from_millis(300)).await {
            closed.push(*kind);
        }
    }
    // Open now: the trickle, the `legit` client's connection (the other client was dropped, its
    // connection closed) and what is left of the held ones — at most LIMIT in all.
    let beyond = held.len() + 2 - LIMIT;
    assert!(closed.len() >= beyond, "{} of {} idle connections closed, expected at least {beyond}: {closed:?}", closed.len(), held.len());
    assert!(closed.contains(&"TCP, no TLS"), "the oldest ones go first: {closed:?}");

    // The trickled body was cut by the body idle timeout: 408 with a problem that says so,
    // long before its 64 bytes could have arrived.
    let (answer, after) = trickler.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("\"code\":\"body_timeout\"") && answer.contains("stalled"), "{answer}");
    assert!(after < Duration::from_secs(15), "{after:?}");

    // The listener said what it did, without personal data.
    let logs = std::fs::read_to_string(&log).unwrap();
    let evictions: Vec<&str> = logs.lines().filter(|l| l.contains("evicted")).collect();
    assert!(!evictions.is_empty(), "{logs}");
    assert!(evictions.iter().all(|l| !l.contains("127.0.0.1")), "no address in the listener's logs: {evictions:?}");
    assert!(!logs.contains(&token));
}
