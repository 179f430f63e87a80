//! The accept loop and each connection's life: admission, TLS handshake, HTTP serving with the
//! idle watchdog, eviction and shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls_pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::body::{Body, ResponseBody};
use crate::table::{Refused, Registration, RequestGuard, Table};
use crate::{BoxError, Limits};

/// Who is at the other end of a request's connection; in every request's extensions.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer's address as the socket reports it.
    pub remote_addr: SocketAddr,
    /// The client certificate chain (leaf first) as the client sent it and the TLS
    /// configuration's client-certificate verifier accepted it; empty when the client sent none.
    pub certificates: Arc<[CertificateDer<'static>]>,
}

impl PeerInfo {
    /// The client's own certificate, if it sent one.
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.certificates.first()
    }
}

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A limit would switch a bound off or cannot work.
    #[error("listener limits: {0}")]
    Limits(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A bound TLS listener, ready to [`serve`](Listener::serve).
pub struct Listener {
    tcp: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
}

/// The service's error as hyper sees it: a concrete type, so that hyper's bound
/// `Into<Box<dyn Error + Send + Sync>>` holds for every lifetime (a bare boxed error trips the
/// compiler's check of the spawned connection future).
#[derive(Debug)]
struct ServiceError(BoxError);

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ServiceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// The error of a request that arrived on a connection just evicted.
#[derive(Debug)]
struct Closing;

impl std::fmt::Display for Closing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the connection is closing")
    }
}

impl std::error::Error for Closing {}

/// After an idle connection was asked to close gracefully: how long it may take.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

impl Listener {
    /// Binds `addr` (port 0 picks a free port; see [`Listener::local_addr`]).
    pub async fn bind(addr: SocketAddr, tls: rustls::ServerConfig, limits: Limits) -> Result<Listener, ListenError> {
        limits.check().map_err(ListenError::Limits)?;
        let tcp = TcpListener::bind(addr).await.map_err(|source| ListenError::Bind { addr, source })?;
        Listener::from_tcp(tcp, tls, limits)
    }

    /// Uses a listener bound elsewhere.
    pub fn from_tcp(tcp: TcpListener, mut tls: rustls::ServerConfig, limits: Limits) -> Result<Listener, ListenError> {
        limits.check().map_err(ListenError::Limits)?;
        if tls.alpn_protocols.is_empty() {
            tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        Ok(Listener { tcp, tls: Arc::new(tls), limits })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Serves `service` on every accepted connection until `shutdown` resolves, then drains
    /// (module documentation). Accept errors (such as running out of file descriptors) are
    /// logged and retried after a pause; this returns only after shutdown.
    pub async fn serve<S, B>(self, service: S, shutdown: impl Future<Output = ()>)
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let limits = self.limits.clone();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.keepalive_interval)
            .keep_alive_timeout(limits.keepalive_timeout)
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32);
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            acceptor: tokio_rustls::TlsAcceptor::from(self.tls),
            table: Arc::new(Table::new(limits.clone())),
            builder,
            service,
            limits: limits.clone(),
            stop: stop_rx,
        });
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                accepted = self.tcp.accept() => match accepted {
                    Ok((tcp, remote)) => {
                        if let Err(e) = tcp.set_nodelay(true) {
                            tracing::debug!(error = %e, "could not set TCP_NODELAY on an accepted socket");
                        }
                        // Admitted here, in accept order, so that a connection accepted later is
                        // always younger than one accepted earlier (the eviction order) however
                        // the connection tasks are scheduled; only a newcomer that must wait for a
                        // slot waits in its own task.
                        let admitted = shared.table.try_admit(remote.ip());
                        tasks.spawn(connection(tcp, remote, shared.clone(), admitted));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed; retrying shortly");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(self.tcp);
        let _ = stop_tx.send(true);
        let open = tasks.len();
        let drained = tokio::time::timeout(limits.shutdown_grace + CLOSE_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::debug!(open = tasks.len(), "shutdown grace over: dropping the connections still open");
        }
        tracing::debug!(open, "listener stopped");
        tasks.shutdown().await;
    }
}

struct Shared<S> {
    acceptor: tokio_rustls::TlsAcceptor,
    table: Arc<Table>,
    builder: auto::Builder<TokioExecutor>,
    service: S,
    limits: Limits,
    stop: watch::Receiver<bool>,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// One connection, from admission to close.
async fn connection<S, B>(tcp: TcpStream, remote: SocketAddr, shared: Arc<Shared<S>>, admitted: Option<Arc<crate::table::Slot>>)
where
    S: tower::Service<http::Request<Body>, Response = http::Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let limits = &shared.limits;
    let waited = match admitted {
        Some(slot) => Ok(slot),
        None => shared.table.admit(remote.ip()).await,
    };
    let slot = match waited {
        Ok(slot) => slot,
        Err(why) => {
            let why = match why {
                Refused::TooManyWaiting => "every connection busy and too many newcomers waiting",
                Refused::StillFull => "every connection stayed busy for the whole admission wait",
            };
            tracing::debug!(open = shared.table.len(), "newcomer closed unanswered: {why}");
            return;
        }
    };
    let _registration = Registration { table: shared.table.clone(), slot: slot.clone() };

    let tls = tokio::select! {
        _ = slot.evicted() => {
            tracing::debug!("connection evicted during its TLS handshake");
            return;
        }
        _ = stopped(shared.stop.clone()) => return,
        r = tokio::time::timeout(limits.handshake_timeout, shared.acceptor.accept(tcp)) => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake refused");
                return;
            }
            Err(_) => {
                tracing::debug!(timeout_secs = limits.handshake_timeout.as_secs_f64(), "TLS handshake timed out");
                return;
            }
        },
    };
    slot.touch();
    let certificates: Vec<CertificateDer<'static>> =
        tls.get_ref().1.peer_certificates().map(|c| c.iter().map(|c| c.clone().into_owned()).collect()).unwrap_or_default();
    let peer = PeerInfo { remote_addr: remote, certificates: certificates.into() };

    let body_idle = limits.body_idle_timeout;
    let svc_slot = slot.clone();
    let service = shared.service.clone();
    let hyper_service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let guard = RequestGuard::start(&svc_slot);
        let service = service.clone();
        let peer = peer.clone();
        async move {
            // Evicted between the decision and this request: the connection is closing.
            let Some(guard) = guard else {
                return Err(ServiceError(Box::new(Closing)));
            };
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(peer);
            let req = http::Request::from_parts(parts, Body::new(body, body_idle));
            match service.oneshot(req).await {
                Ok(response) => Ok(response.map(|b| ResponseBody::new(b, guard))),
                Err(e) => Err(ServiceError(e.into())),
            }
        }
    });
    let conn = shared.builder.serve_connection(TokioIo::new(tls), hyper_service);
    tokio::pin!(conn);
    let mut stop = shared.stop.clone();
    // Set once the connection was asked to close: by then it must be done.
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        let wake = closing.unwrap_or_else(|| slot.idle_deadline(limits.idle_timeout));
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = slot.evicted(), if closing.is_none() => {
                tracing::debug!("idle connection evicted to make room");
                return;
            }
            _ = stop.wait_for(|s| *s), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + limits.shutdown_grace);
            }
            _ = tokio::time::sleep_until(wake) => {
                if closing.is_some() {
                    tracing::debug!("connection did not close in time: dropped");
                    return;
                }
                if slot.idle_for() >= limits.idle_timeout {
                    tracing::debug!(idle_secs = limits.idle_timeout.as_secs_f64(), "idle connection closed");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                }
            }
        }
    }
}
