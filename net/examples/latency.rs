//! Latency of small requests over HTTPS on one kept-alive connection: a measurement, not a test.
//!
//! `cargo run -p ponte-net --example latency -- BASE_URL CA_PEM [REQUESTS]` sends REQUESTS
//! (default 200) of each kind after a warm-up of 20 and prints the median and the 90th
//! percentile: `GET /healthz` over HTTP/1.1 and HTTP/2, and a gRPC `grpc.health.v1.Health/Check`
//! over HTTP/2 (an answer written as HEADERS, DATA and trailers — the shape Nagle's algorithm
//! delays). BASE_URL is a running `ponte-node serve`'s API, e.g. `https://localhost:7800`.

use std::time::{Duration, Instant};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let (Some(base), Some(ca)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: latency BASE_URL CA_PEM [REQUESTS]");
        std::process::exit(2);
    };
    let n: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(200).max(1);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca)?)?;
    let client = |h2: bool| {
        let b = reqwest::Client::builder().use_rustls_tls().add_root_certificate(ca.clone()).timeout(Duration::from_secs(10));
        if h2 { b.http2_prior_knowledge() } else { b.http1_only() }.build()
    };
    let h1 = client(false)?;
    let h2 = client(true)?;
    let healthz = format!("{base}/healthz");
    let grpc = format!("{base}/grpc.health.v1.Health/Check");
    report("HTTP/1.1 GET /healthz", n, || h1.get(&healthz).send()).await?;
    report("HTTP/2   GET /healthz", n, || h2.get(&healthz).send()).await?;
    report("HTTP/2   gRPC Health/Check", n, || {
        h2.post(&grpc).header("content-type", "application/grpc").header("te", "trailers").body(vec![0u8; 5]).send()
    })
    .await?;
    Ok(())
}

async fn report<F, Fut>(what: &str, n: usize, send: F) -> Result<(), Box<dyn std::error::Error>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    for _ in 0..20 {
        send().await?.bytes().await?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = send().await?;
        let status = r.status();
        r.bytes().await?;
        times.push(t.elapsed());
        if !status.is_success() {
            return Err(format!("{what}: status {status}").into());
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{what}: median {:.2} ms, p90 {:.2} ms ({n} requests)", ms(times[n / 2]), ms(times[n * 9 / 10]));
    Ok(())
}
