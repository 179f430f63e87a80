//! The coordinator's gRPC port under connections that hold slots without using them — TCP that
//! never starts TLS, TLS handshakes never finished, finished mutual-TLS handshakes with no
//! request, HTTP/2 connections that sent the preface and nothing else — more of them than
//! `[connections] max_connections`. A node's next question is still answered at once: the
//! listener closes the least recently active idle connection to make room (every client here is
//! 127.0.0.1, so refusing per address would lock the node out).

mod support;

use std::time::{Duration, Instant};

use ponte_proto::v1::ServiceCategory as Cat;
use support::*;
use ponte_e2e::held::{Held, tls_connector};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const LIMIT: usize = 8;

#[test]
fn idle_and_half_open_connections_beyond_the_limit_do_not_lock_a_node_out() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let w = World::with_config(
        None,
        // Timeouts long enough that only eviction, not a timeout, can free a slot here.
        &format!("[connections]\nmax_connections = {LIMIT}\nmax_connections_per_ip = {LIMIT}\nhandshake_timeout_secs = 60\nidle_timeout_secs = 120\n"),
    );
    w.publish_one("comune-lecce", "c1", &person(1), active(Cat::SegretariatoSociale)).unwrap();
    w.publish_one("asl-lecce", "a1", &person(1), active(Cat::CureDomiciliari)).unwrap();
    let addr: std::net::SocketAddr = w.fed.addr.parse().unwrap();
    let ca = w.fed.certs.join("ca.pem");
    let (cert, key) = w.fed.cert("asl-lecce");

    let held = w.rt.block_on(async {
        let mut held: Vec<(&str, Held)> = Vec::new();
        for _ in 0..3 {
            held.push(("TCP, no TLS", Held::Tcp(TcpStream::connect(addr).await.unwrap())));
        }
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"\x16\x03\x01\x02\x00\x01").await.unwrap();
            held.push(("TLS handshake never finished", Held::Tcp(s)));
        }
        for _ in 0..3 {
            let s = tls_connector(&ca, b"h2", Some((&cert, &key))).connect("localhost".try_into().unwrap(), TcpStream::connect(addr).await.unwrap()).await.unwrap();
            held.push(("mutual TLS, no request", Held::Tls(Box::new(s))));
        }
        for _ in 0..3 {
            let mut s = tls_connector(&ca, b"h2", Some((&cert, &key))).connect("localhost".try_into().unwrap(), TcpStream::connect(addr).await.unwrap()).await.unwrap();
            s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
            held.push(("HTTP/2 after its preface", Held::Tls(Box::new(s))));
        }
        held
    });
    assert!(held.len() > LIMIT);

    // A node's question on a fresh connection is answered promptly.
    let t = Instant::now();
    let answer = w.rt.block_on(async {
        let mut c = w.new_client("comune-lecce").await;
        c.who_else(question("comune-lecce", "c1", ponte_proto::v1::Purpose::ContinuitaAssistenziale, ponte_proto::v1::OperatorRole::AssistenteSociale)).await
    });
    let took = t.elapsed();
    let answer = answer.unwrap_or_else(|e| panic!("a node was locked out by {} idle connections: {e:?}", held.len())).into_inner();
    assert_eq!(answer.relationships.len(), 1, "{answer:?}");
    eprintln!("with {} idle connections against a limit of {LIMIT}: who-else answered in {took:?}", held.len());
    assert!(took < Duration::from_secs(3), "{took:?}");

    // The slots came from the oldest idle connections: the first ones opened are closed, while
    // the number still open is within the limit.
    let mut held = held;
    let closed: Vec<(String, bool)> = w.rt.block_on(async {
        let mut out = Vec::new();
        for (kind, h) in held.iter_mut() {
            out.push((kind.to_string(), h.closed_within(Duration::from_millis(300)).await));
        }
        out
    });
    let open = closed.iter().filter(|(_, c)| !c).count();
    assert!(open < LIMIT, "{open} idle connections still open against a limit of {LIMIT}: {closed:?}");
    assert!(closed[0].1 && closed[1].1, "the oldest idle connections are the ones closed: {closed:?}");
}
