//! The coordinator's gRPC edge: serving the federation core ([`crate::federation`]) to nodes and
//! privacy officers over mutual TLS, with health and reflection. The only part of the
//! coordinator that knows tonic, besides the officer's client (`officer`) and the CLI shell.
//!
//! - [`auth`]: identity and role from the client certificate, on every service;
//! - [`grpc`]: the adapters from gRPC calls to the core, and the core's errors as statuses;
//! - this module: start-up, the listener, the background tasks (retention sweep, storage
//!   upkeep) and the metrics endpoint.

pub mod auth;
pub mod grpc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use ponte_proto::limits::MAX_MESSAGE_BYTES;
use ponte_proto::schema::LinkageSchema;
use ponte_proto::v1::federation_server::FederationServer;
use ponte_proto::v1::governance_server::GovernanceServer;
use tonic::server::NamedService;
use tower::Layer;

use crate::config::CoordinatorConfig;
use crate::federation::{Federation, today};
use crate::metrics;
pub use auth::AuthLayer;
use grpc::Services;

/// Loads certificates, opens the store, binds and serves until `shutdown` resolves. `on_ready`
/// receives the bound gRPC address; by then the metrics endpoint (`[metrics]`) listens too.
/// Health reports SERVING for "" (the server), `ponte.v1.Federation` and `ponte.v1.Governance`
/// until `shutdown` resolves, then NOT_SERVING while the server drains.
pub async fn serve(cfg: CoordinatorConfig, shutdown: impl std::future::Future<Output = ()> + Send + 'static, on_ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let schema = match &cfg.schema_file {
        Some(p) => LinkageSchema::load(p).map_err(anyhow::Error::msg)?,
        None => LinkageSchema::default_schema(),
    };
    let ca = ponte_proto::pki::load_cert_pem(&cfg.tls.ca, "federation CA certificate").map_err(anyhow::Error::msg)?;
    let cert = ponte_proto::pki::load_cert_pem(&cfg.tls.cert, "coordinator certificate").map_err(anyhow::Error::msg)?;
    let key = ponte_proto::pki::load_key_pem(&cfg.tls.key, "coordinator private key").map_err(anyhow::Error::msg)?;
    let tls = ponte_net::server_config(&cert, &key, &ca)
        .map_err(|e| anyhow::anyhow!("the coordinator's TLS setup ({}, {}, CA {}): {e}", cfg.tls.cert.display(), cfg.tls.key.display(), cfg.tls.ca.display()))?;
    let federation = {
        let (cfg, schema) = (cfg.clone(), schema.clone());
        Arc::new(tokio::task::spawn_blocking(move || Federation::open(&cfg, &schema)).await.context("opening the store stopped unexpectedly")??)
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<FederationServer<Services>>().await;
    health_reporter.set_serving::<GovernanceServer<Services>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ponte_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;

    let listen: SocketAddr = cfg.listen.parse().with_context(|| format!("listen = {:?} is not an address", cfg.listen))?;
    let listener = ponte_net::Listener::bind(listen, tls, cfg.connections.limits()).await.map_err(|e| match e {
        ponte_net::ListenError::Bind { source, .. } => anyhow::anyhow!("cannot listen on {}: {source} (is another process using it?)", cfg.listen),
        ponte_net::ListenError::Limits(e) => anyhow::anyhow!("the [connections] limits cannot be used: {e}"),
    })?;
    let addr = listener.local_addr()?;
    let metrics_endpoint = start_metrics(&cfg.metrics, federation.clone()).await?;
    let (items, persons) = federation.stats();
    tracing::info!(%addr, schema = %schema.fingerprint().short(), epochs = ?cfg.key_epochs, items, persons, "coordinator listening");
    on_ready(addr);
    let shutdown = async move {
        shutdown.await;
        for service in ["", FederationServer::<Services>::NAME, GovernanceServer::<Services>::NAME] {
            health_reporter.set_service_status(service, tonic_health::ServingStatus::NotServing).await;
        }
    };

    let sweeper = federation.clone();
    let retention = tokio::spawn(async move {
        loop {
            let c = sweeper.clone();
            match tokio::task::spawn_blocking(move || c.sweep_retention(today())).await {
                Ok(Err(e)) => tracing::error!(error = %e, "retention sweep failed; retrying at the next interval"),
                Err(e) => tracing::error!(error = %e, "retention sweep stopped unexpectedly"),
                Ok(Ok(_)) => {}
            }
            // Ticks of a second, so that a new interval loaded with a policy applies at once.
            let slept = std::time::Instant::now();
            while slept.elapsed().as_secs() < sweeper.retention_interval() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let keeper = federation.clone();
    let upkeep = tokio::spawn(async move {
        loop {
            let k = keeper.clone();
            let _ = tokio::task::spawn_blocking(move || k.upkeep()).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let services = Services::new(federation);
    let governance = GovernanceServer::new(services.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES);
    let federation = FederationServer::new(services).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES);
    // One port: health, reflection and both services behind the identity layer, on the
    // hardened listener (TCP_NODELAY, handshake/idle/body timeouts, connection limits with
    // eviction of idle connections, HTTP/2 keep-alive, bounded streams).
    let routes = tonic::service::Routes::new(health_service).add_service(reflection).add_service(federation).add_service(governance).prepare();
    listener.serve(AuthLayer.layer(routes), shutdown).await;
    retention.abort();
    upkeep.abort();
    if let Some(endpoint) = metrics_endpoint {
        endpoint.abort();
    }
    Ok(())
}

/// Binds and starts the metrics endpoint that `cfg` asks for; `None` when there is none (turned
/// off, or the default address taken). The store gauges are read from `federation` at every
/// scrape (counters it keeps as it goes: no walk over the items).
async fn start_metrics(cfg: &crate::config::MetricsConfig, federation: Arc<Federation>) -> Result<Option<tokio::task::JoinHandle<()>>> {
    use crate::config::MetricsListen;

    let listener = match cfg.address().map_err(anyhow::Error::msg)? {
        MetricsListen::Off => {
            tracing::info!("metrics endpoint off ([metrics] listen = \"\")");
            return Ok(None);
        }
        MetricsListen::Configured(addr) => metrics::bind(addr).await.map_err(anyhow::Error::msg)?,
        MetricsListen::Default(addr) => match metrics::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!("serving without metrics: {e}");
                return Ok(None);
            }
        },
    };
    let addr = listener.local_addr()?;
    let handle = metrics::install().map_err(|e| anyhow::anyhow!("cannot serve metrics: {e}"))?;
    tracing::info!(%addr, "metrics endpoint listening: GET http://{addr}/metrics (plain HTTP, no authentication)");
    Ok(Some(tokio::spawn(async move {
        let refresh = move || metrics::holdings(&federation.holdings());
        if let Err(e) = metrics::serve(listener, handle, refresh).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    })))
}
