//! The node's HTTPS endpoint for case workers and integrated systems, served by `ponte-node
//! serve` next to the outbox drain: the JSON API ([`routes`]), its OpenAPI document, the
//! Italian web page, Prometheus metrics, and gRPC health and reflection — one port, HTTP/1.1 and
//! HTTP/2, TLS with the node's certificate.
//!
//! Served by [`ponte_net::Listener`] (not `axum::serve`): connection limits with eviction of
//! idle connections, handshake, header, body and idle timeouts, TCP_NODELAY — all set in
//! `[api]` — and the connection's optional client certificate, verified against
//! `api.client_ca`, in every request's [`ponte_net::PeerInfo`]. gRPC requests go to tonic's
//! health and reflection services, everything else to the axum router.

pub mod problem;
pub mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{Mutex, Notify};
use tower::ServiceExt;
use utoipa::OpenApi;

use crate::client::{self, ClientError, CoordinatorClient, PublishOutcome};
use crate::credentials::Credentials;
use crate::node::Node;
use problem::ApiError;

/// What `serve`'s outbox drain and the API share: the node, one connection to the coordinator,
/// and one publishing run at a time.
pub struct Shared {
    pub node: Node,
    client: Mutex<Option<CoordinatorClient>>,
    publishing: Mutex<()>,
    /// Woken when the API queued a change, so the drain sends it at once.
    pub wake: Notify,
    health: tonic_health::server::HealthReporter,
}

impl Shared {
    pub fn new(node: Node) -> Shared {
        let health = tonic_health::server::HealthReporter::new();
        Shared { node, client: Mutex::new(None), publishing: Mutex::new(()), wake: Notify::new(), health }
    }

    /// The connection to the coordinator, opened on first use.
    pub async fn client(&self) -> Result<CoordinatorClient, ClientError> {
        let mut c = self.client.lock().await;
        if let Some(c) = c.as_ref() {
            return Ok(c.clone());
        }
        let fresh = client::connect(&self.node).await;
        self.set_coordinator_health(fresh.is_ok()).await;
        let fresh = fresh?;
        *c = Some(fresh.clone());
        Ok(fresh)
    }

    /// After an error from the coordinator: drops the connection when the error says it is
    /// broken (the next call reconnects), and reports the coordinator's health.
    pub async fn after_error(&self, e: &ClientError) {
        if e.connection_broken() {
            *self.client.lock().await = None;
            self.set_coordinator_health(false).await;
        }
    }

    async fn set_coordinator_health(&self, up: bool) {
        use tonic_health::ServingStatus;
        let status = if up { ServingStatus::Serving } else { ServingStatus::NotServing };
        self.health.set_service_status(COORDINATOR_HEALTH, status).await;
    }

    /// A change was queued: wake the drain.
    pub fn changed(&self) {
        metrics::gauge!("ponte_node_outbox_depth").set(self.node.store.outbox_len() as f64);
        self.wake.notify_one();
    }

    /// Sends every queued change now (one run at a time). A run the coordinator slowed down
    /// ([`PublishOutcome::retry_after`]) is not a failure.
    pub async fn publish_now(&self) -> Result<PublishOutcome, ClientError> {
        let _one = self.publishing.lock().await;
        let mut c = self.client().await?;
        let out = client::publish_outbox(&self.node, &mut c, |_| {}).await;
        metrics::gauge!("ponte_node_outbox_depth").set(self.node.store.outbox_len() as f64);
        match &out {
            Ok(o) => {
                metrics::counter!("ponte_node_published_items_total").increment(o.items_sent);
                let outcome = if o.retry_after.is_some() { "slowed_down" } else { "ok" };
                metrics::counter!("ponte_node_publish_runs_total", "outcome" => outcome).increment(1);
            }
            Err(e) => {
                metrics::counter!("ponte_node_publish_runs_total", "outcome" => "failed").increment(1);
                drop(c);
                self.after_error(e).await;
            }
        }
        out
    }
}

/// Health service name that reports whether the coordinator is reachable.
pub const COORDINATOR_HEALTH: &str = "ponte.v1.Federation";

/// The API's state: shared node, registered systems, limits.
pub struct ApiState {
    pub shared: Arc<Shared>,
    pub credentials: Credentials,
    pub max_results: usize,
    metrics: PrometheusHandle,
    base_url: String,
}

/// The node's metrics recorder (one per process).
pub fn metrics_handle() -> PrometheusHandle {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests); this handle then renders ours only.
            let _ = metrics::set_global_recorder(recorder);
            describe_metrics();
            handle
        })
        .clone()
}

fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("ponte_node_questions_total", "Who-else questions asked through the API, by purpose and outcome (answered, refused)");
    describe_histogram!("ponte_node_question_seconds", metrics::Unit::Seconds, "Time the coordinator took to answer a who-else question");
    describe_counter!("ponte_node_relationships_shown_total", "Relationships shown in who-else answers, by match band");
    describe_counter!("ponte_node_api_refusals_total", "API requests refused, by problem code (missing_credentials, invalid_value, ...)");
    describe_counter!("ponte_node_api_requests_total", "API requests handled, by route and status code");
    describe_histogram!("ponte_node_api_request_seconds", metrics::Unit::Seconds, "Time to handle an API request, by route");
    describe_counter!("ponte_node_searches_total", "Person searches, by kind (codice_fiscale, demographic)");
    describe_counter!("ponte_node_intakes_total", "Intakes (segnalata) registered through the API");
    describe_counter!("ponte_node_consents_total", "Consents given or revoked through the API");
    describe_gauge!("ponte_node_outbox_depth", "Changes queued for the coordinator");
    describe_counter!("ponte_node_published_items_total", "Relationships published to the coordinator");
    describe_counter!("ponte_node_publish_runs_total", "Outbox drains, by outcome (ok, slowed_down: the coordinator asked to wait, failed)");
}

const PAGE_HTML: &str = include_str!("web/index.html");
const PAGE_JS: &str = include_str!("web/app.js");
const PAGE_CSS: &str = include_str!("web/app.css");
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn asset(ct: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, ct), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The FHIR R4 Bundle of a who-else answer.
pub(crate) fn fhir_answer(state: &ApiState, answer: &ponte_proto::v1::WhoElseAnswer) -> serde_json::Value {
    let ctx = crate::fhir::BundleContext {
        node_id: state.shared.node.config.node_id.clone(),
        base_url: state.base_url.clone(),
        answered_at: crate::consent::now_secs(),
        // Nobody is named in the bundle: the asker knows whom it asked about.
        record_id: None,
    };
    crate::fhir::who_else_bundle(answer, &ctx)
}

async fn openapi_json(State(state): State<Arc<ApiState>>) -> Response {
    let mut doc = routes::ApiDoc::openapi();
    doc.servers = Some(vec![utoipa::openapi::Server::new(state.base_url.clone())]);
    ([(header::CONTENT_TYPE, "application/json")], doc.to_json().unwrap_or_default()).into_response()
}

async fn metrics_text(State(state): State<Arc<ApiState>>) -> Response {
    metrics::gauge!("ponte_node_outbox_depth").set(state.shared.node.store.outbox_len() as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such path on this node: see /openapi.json")
}

/// Security headers on every answer, and the request counters.
async fn around(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let started = std::time::Instant::now();
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    if route.starts_with("/api/") {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let status = r.status().as_u16().to_string();
    metrics::counter!("ponte_node_api_requests_total", "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("ponte_node_api_request_seconds", "route" => route).record(started.elapsed().as_secs_f64());
    r
}

/// The axum application (everything but gRPC).
pub fn router(state: Arc<ApiState>, max_body: usize) -> Router {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", PAGE_HTML) }))
        .route("/assets/app.js", get(|| async { asset("text/javascript; charset=utf-8", PAGE_JS) }))
        .route("/assets/app.css", get(|| async { asset("text/css; charset=utf-8", PAGE_CSS) }))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route("/openapi.json", get(openapi_json))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/vocabulary", get(routes::vocabulary))
        .route("/api/v1/session", get(routes::session))
        .route("/api/v1/persons", get(routes::find_persons))
        .route("/api/v1/persons/{record_id}/who-else", post(routes::who_else))
        .route("/api/v1/intakes", post(routes::create_intake))
        .route("/api/v1/persons/{record_id}/consents", get(routes::list_consents).post(routes::give_consent))
        .route("/api/v1/consents/{consent_id}/revoke", post(routes::revoke_consent))
        .route("/api/v1/relationships/{relationship_id}/obscured", put(routes::set_obscured))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this path does not take that method: see /openapi.json")
        })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(around))
        .with_state(state)
}

/// The TLS server configuration: the node's certificate, client certificates optional and, when
/// sent, verified against `client_ca`; ALPN h2 and http/1.1.
fn tls_config(node: &Node) -> Result<rustls::ServerConfig> {
    let tls = &node.config.tls;
    let ca_path = node.config.api.client_ca.as_ref().unwrap_or(&tls.ca);
    let read = |p: &std::path::Path, what: &str| std::fs::read(p).with_context(|| format!("reading the {what} {}", p.display()));
    let cert = read(&tls.cert, "node certificate (tls.cert)")?;
    let key = read(&tls.key, "node private key (tls.key)")?;
    let ca = read(ca_path, "client CA (api.client_ca or tls.ca)")?;
    ponte_net::server_config(&cert, &key, &ca).map_err(|e| {
        anyhow::anyhow!("the API's TLS setup ({}, {}, client CA {}): {e}", tls.cert.display(), tls.key.display(), ca_path.display())
    })
}

/// Serves the API on `api.listen` until `shutdown` resolves, through [`ponte_net::Listener`]
/// with the limits of `[api]` (connections, timeouts, HTTP/2 streams). Binds first, so a bad
/// address, TLS file or limit fails at once.
pub async fn serve(shared: Arc<Shared>, shutdown: impl Future<Output = ()>) -> Result<()> {
    let cfg = &shared.node.config;
    let addr: SocketAddr = cfg.api.listen.parse().with_context(|| format!("api.listen = {:?} is not an address", cfg.api.listen))?;
    let credentials = Credentials::load(&cfg.api.credentials_file).map_err(anyhow::Error::msg)?;
    if credentials.systems.is_empty() {
        tracing::warn!(file = %cfg.api.credentials_file.display(), "no system is registered for the API yet: add one with `ponte-node credentials add SYSTEM --roles …`");
    }
    let listener = ponte_net::Listener::bind(addr, tls_config(&shared.node)?, cfg.api.limits()).await.map_err(|e| match e {
        ponte_net::ListenError::Bind { source, .. } => anyhow::anyhow!(
            "cannot listen on api.listen = {:?}: {source} (in use by another program? set another port, or \"\" to turn the API off)",
            cfg.api.listen
        ),
        ponte_net::ListenError::Limits(e) => anyhow::anyhow!("the [api] limits cannot be used: {e}"),
    })?;
    let local = listener.local_addr()?;
    let base_url = format!("https://{}", if local.ip().is_loopback() { format!("localhost:{}", local.port()) } else { local.to_string() });
    let state = Arc::new(ApiState { shared: shared.clone(), credentials, max_results: cfg.api.max_results, metrics: metrics_handle(), base_url });
    let app = router(state.clone(), cfg.api.max_body_bytes);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    shared.health.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let health_service =
        tonic_health::pb::health_server::HealthServer::new(tonic_health::server::HealthService::from_health_reporter(shared.health.clone()));
    let grpc = tonic::service::Routes::new(health_service).add_service(reflection).prepare().into_axum_router();
    let upkeep = state.metrics.clone();
    let upkeep = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    tracing::info!(listen = %local, "API, web page, metrics and gRPC health listening (HTTPS)");
    // gRPC (health, reflection) by content type, everything else to the axum router. The
    // listener has put the connection's PeerInfo into every request's extensions.
    let dispatch = tower::service_fn(move |req: http::Request<ponte_net::Body>| {
        let is_grpc = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/grpc"));
        let req = req.map(axum::body::Body::new);
        let target = if is_grpc { grpc.clone() } else { app.clone() };
        target.oneshot(req)
    });
    listener.serve(dispatch, shutdown).await;
    upkeep.abort();
    Ok(())
}
