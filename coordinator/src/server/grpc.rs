//! The gRPC adapters: each call takes the caller's identity (put there by [`super::auth`]),
//! runs the federation core off the async threads, and turns the core's domain error into a
//! status. Nothing else happens here.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ponte_proto::identity::PeerIdentity;
use ponte_proto::v1;
use ponte_proto::v1::federation_server::Federation as FederationRpc;
use ponte_proto::v1::governance_server::Governance as GovernanceRpc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::federation::{Federation, FederationError};
#[cfg(test)]
use crate::metrics;

/// The status a domain error becomes. Messages are the core's: they say what to do.
pub fn status(e: FederationError) -> Status {
    use FederationError::*;
    match e {
        Invalid(m) => Status::invalid_argument(m),
        Forbidden(m) => Status::permission_denied(m),
        e @ Refused { .. } => Status::permission_denied(e.to_string()),
        NotFound(m) => Status::not_found(m),
        Precondition(m) => Status::failed_precondition(m),
        e @ RateLimited { retry_after_ms, .. } => {
            let mut s = Status::resource_exhausted(e.to_string());
            if let Ok(v) = retry_after_ms.to_string().parse() {
                s.metadata_mut().insert("grpc-retry-pushback-ms", v);
            }
            s
        }
        Quota(m) | DiskFull(m) => Status::resource_exhausted(m),
        Deadline(m) => Status::deadline_exceeded(m),
        Busy(m) => Status::unavailable(m),
        Storage(m) => Status::internal(m),
    }
}

fn identity_of<T>(req: &Request<T>) -> Result<PeerIdentity, Status> {
    req.extensions().get::<PeerIdentity>().cloned().ok_or_else(|| Status::unauthenticated("no verified client certificate"))
}

/// The caller's deadline (`grpc-timeout`), as an instant.
fn deadline_of<T>(req: &Request<T>) -> Option<Instant> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (n, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = n.parse().ok()?;
    let d = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    Instant::now().checked_add(d)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, FederationError> + Send + 'static) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(status),
        Err(_) => Err(Status::internal("the request's worker stopped unexpectedly")),
    }
}

/// The tonic services over one federation.
#[derive(Clone)]
pub struct Services {
    inner: Arc<Federation>,
}

impl Services {
    pub fn new(inner: Arc<Federation>) -> Services {
        Services { inner }
    }
}

type AckStream = Pin<Box<dyn Stream<Item = Result<v1::PublishAck, Status>> + Send>>;

#[tonic::async_trait]
impl FederationRpc for Services {
    async fn info(&self, req: Request<v1::FederationInfoRequest>) -> Result<Response<v1::FederationInfo>, Status> {
        let who = identity_of(&req)?;
        Ok(Response::new(self.inner.info(&who)))
    }

    async fn publish(&self, req: Request<v1::PublishBatch>) -> Result<Response<v1::PublishAck>, Status> {
        let who = identity_of(&req)?;
        let deadline = deadline_of(&req);
        let inner = self.inner.clone();
        let batch = req.into_inner();
        blocking(move || inner.publish(&who, &batch, deadline)).await.map(Response::new)
    }

    type PublishStreamStream = AckStream;

    async fn publish_stream(&self, req: Request<Streaming<v1::PublishBatch>>) -> Result<Response<Self::PublishStreamStream>, Status> {
        let who = identity_of(&req)?;
        let inner = self.inner.clone();
        let mut incoming = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(batch) = incoming.next().await {
                let result = match batch {
                    Ok(batch) => {
                        let (inner, who) = (inner.clone(), who.clone());
                        blocking(move || inner.publish(&who, &batch, None)).await
                    }
                    Err(e) => Err(e),
                };
                let stop = result.is_err();
                if tx.send(result).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn update_relationship(&self, req: Request<v1::UpdateRelationshipRequest>) -> Result<Response<v1::Ack>, Status> {
        let who = identity_of(&req)?;
        let (inner, r) = (self.inner.clone(), req.into_inner());
        blocking(move || inner.update_relationship(&who, &r)).await.map(Response::new)
    }

    async fn withdraw(&self, req: Request<v1::WithdrawRequest>) -> Result<Response<v1::Ack>, Status> {
        let who = identity_of(&req)?;
        let (inner, r) = (self.inner.clone(), req.into_inner());
        blocking(move || inner.withdraw(&who, &r)).await.map(Response::new)
    }

    async fn who_else(&self, req: Request<v1::WhoElseQuestion>) -> Result<Response<v1::WhoElseAnswer>, Status> {
        let who = identity_of(&req)?;
        let q = req.into_inner();
        // On this task: the decision is short and the audit entry is awaited, not waited for.
        self.inner.who_else_async(&who, &q).await.map(Response::new).map_err(status)
    }

    async fn record_consent(&self, req: Request<v1::ConsentAssertion>) -> Result<Response<v1::Ack>, Status> {
        let who = identity_of(&req)?;
        let (inner, r) = (self.inner.clone(), req.into_inner());
        blocking(move || inner.record_consent(&who, &r)).await.map(Response::new)
    }

    async fn revoke_consent(&self, req: Request<v1::ConsentRevocation>) -> Result<Response<v1::Ack>, Status> {
        let who = identity_of(&req)?;
        let (inner, r) = (self.inner.clone(), req.into_inner());
        blocking(move || inner.revoke_consent(&who, &r)).await.map(Response::new)
    }

    async fn set_obscured(&self, req: Request<v1::ObscureRequest>) -> Result<Response<v1::Ack>, Status> {
        let who = identity_of(&req)?;
        let (inner, r) = (self.inner.clone(), req.into_inner());
        blocking(move || inner.set_obscured(&who, &r)).await.map(Response::new)
    }

    async fn subject_report(&self, req: Request<v1::SubjectReportRequest>) -> Result<Response<v1::SubjectReport>, Status> {
        let who = identity_of(&req)?;
        let (inner, r) = (self.inner.clone(), req.into_inner());
        blocking(move || inner.subject_report(&who, &r)).await.map(Response::new)
    }
}

#[tonic::async_trait]
impl GovernanceRpc for Services {
    async fn reload_policy(&self, req: Request<v1::PolicyDocument>) -> Result<Response<v1::PolicyStatus>, Status> {
        let who = identity_of(&req)?;
        let (inner, r) = (self.inner.clone(), req.into_inner());
        blocking(move || inner.reload_policy(&who, &r)).await.map(Response::new)
    }

    async fn current_policy(&self, req: Request<v1::CurrentPolicyRequest>) -> Result<Response<v1::PolicyStatus>, Status> {
        let who = identity_of(&req)?;
        let inner = self.inner.clone();
        blocking(move || inner.current_policy(&who)).await.map(Response::new)
    }

    async fn explain(&self, req: Request<v1::ExplainRequest>) -> Result<Response<v1::Explanation>, Status> {
        let who = identity_of(&req)?;
        let (inner, r) = (self.inner.clone(), req.into_inner());
        blocking(move || inner.explain(&who, &r)).await.map(Response::new)
    }

    async fn query_audit(&self, req: Request<v1::AuditQuery>) -> Result<Response<v1::AuditPage>, Status> {
        let who = identity_of(&req)?;
        let (inner, r) = (self.inner.clone(), req.into_inner());
        blocking(move || inner.query_audit(&who, &r)).await.map(Response::new)
    }

    async fn quarantine(&self, req: Request<v1::QuarantineQuery>) -> Result<Response<v1::QuarantineReport>, Status> {
        let who = identity_of(&req)?;
        let (inner, r) = (self.inner.clone(), req.into_inner());
        blocking(move || inner.quarantine(&who, &r)).await.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_domain_error_has_the_status_a_client_acts_on() {
        use tonic::Code;
        let cases = [
            (FederationError::Invalid("x".into()), Code::InvalidArgument),
            (FederationError::Forbidden("x".into()), Code::PermissionDenied),
            (FederationError::Refused { message: "no".into(), receipt: 4, reason: metrics::RefusalReason::AnchorNotHeld }, Code::PermissionDenied),
            (FederationError::NotFound("x".into()), Code::NotFound),
            (FederationError::Precondition("x".into()), Code::FailedPrecondition),
            (FederationError::RateLimited { what: "x".into(), retry_after_ms: 250 }, Code::ResourceExhausted),
            (FederationError::Quota("x".into()), Code::ResourceExhausted),
            (FederationError::DiskFull("x".into()), Code::ResourceExhausted),
            (FederationError::Deadline("x".into()), Code::DeadlineExceeded),
            (FederationError::Busy("x".into()), Code::Unavailable),
            (FederationError::Storage("x".into()), Code::Internal),
        ];
        for (e, code) in cases {
            let text = e.to_string();
            let s = status(e);
            assert_eq!(s.code(), code, "{text}");
            assert_eq!(s.message(), text);
        }
        let s = status(FederationError::RateLimited { what: "x".into(), retry_after_ms: 250 });
        assert_eq!(s.metadata().get("grpc-retry-pushback-ms").unwrap(), "250");
        assert!(status(FederationError::Refused { message: "no".into(), receipt: 4, reason: metrics::RefusalReason::AnchorNotHeld }).message().contains("receipt 4"));
    }

    #[test]
    fn the_callers_deadline_is_read_from_grpc_timeout() {
        let mut r = Request::new(());
        r.metadata_mut().insert("grpc-timeout", "1500m".parse().unwrap());
        let d = deadline_of(&r).unwrap();
        let left = d.saturating_duration_since(Instant::now());
        assert!(left <= Duration::from_millis(1500) && left > Duration::from_millis(1000), "{left:?}");
        let mut bad = Request::new(());
        bad.metadata_mut().insert("grpc-timeout", "soon".parse().unwrap());
        assert!(deadline_of(&bad).is_none());
    }
}
