//! Identity on every gRPC service: a tower layer that reads the caller's identity from the
//! verified client certificate — health and reflection included — and refuses callers without
//! one, or with a role the service is not for, before any handler runs.

use std::pin::Pin;
use std::task::{Context, Poll};

use ponte_net::PeerInfo;
use ponte_proto::identity::{PeerIdentity, Role, identity_from_der};
use tonic::Status;

use crate::metrics;

/// Which roles may call which gRPC service. Unknown paths pass through (and get "unimplemented").
fn role_allowed(path: &str, role: &Role) -> Result<(), String> {
    if path.starts_with("/ponte.v1.Federation/") {
        return match role {
            Role::Node { .. } => Ok(()),
            other => Err(format!("the Federation service is for nodes; a {} certificate may not call it", other.name())),
        };
    }
    if path.starts_with("/ponte.v1.Governance/") {
        return match role {
            Role::PrivacyOfficer => Ok(()),
            other => Err(format!("the Governance service is for privacy officers; a {} certificate may not call it", other.name())),
        };
    }
    Ok(())
}

/// A tower layer that authenticates every request by its client certificate, and counts the
/// requests in flight and the refusals per service (metrics).
#[derive(Clone, Default)]
pub struct AuthLayer;

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth { inner }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
}

fn identify<B>(req: &http::Request<B>) -> Result<PeerIdentity, (metrics::AuthRefusal, Status)> {
    let Some(leaf) = req.extensions().get::<PeerInfo>().and_then(PeerInfo::leaf) else {
        return Err((
            metrics::AuthRefusal::NoCertificate,
            Status::unauthenticated("no client certificate: every caller must present a certificate issued by the federation's CA (mutual TLS)"),
        ));
    };
    identity_from_der(leaf)
        .map_err(|e| (metrics::AuthRefusal::CertificateRefused, Status::unauthenticated(format!("client certificate refused: {e}"))))
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The path is the caller's input: logs and metrics name its service, from a closed set.
        let service = metrics::GrpcService::of_path(req.uri().path());
        let decision = identify(&req).and_then(|id| {
            role_allowed(req.uri().path(), &id.role).map_err(|e| (metrics::AuthRefusal::WrongRole, Status::permission_denied(e)))?;
            Ok(id)
        });
        match decision {
            Ok(id) => {
                tracing::debug!(caller = %id, service = service.label(), "authenticated");
                req.extensions_mut().insert(id);
                let in_flight = metrics::InFlight::start(service);
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let response = fut.await;
                    drop(in_flight);
                    response
                })
            }
            Err((reason, status)) => {
                metrics::auth_refused(service, reason);
                tracing::warn!(service = service.label(), reason = reason.label(), "request refused: {}", status.message());
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}
