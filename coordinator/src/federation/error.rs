//! The federation core's errors: what went wrong, in the domain's terms. The gRPC edge maps each
//! kind to a status code (`server::status`); nothing here knows tonic.

use crate::metrics::RefusalReason;
use crate::storage::StoreError;

/// Why a call was not done. Every message says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FederationError {
    /// The request is malformed or breaks a bound (the caller's fault; nothing changed).
    #[error("{0}")]
    Invalid(String),
    /// The caller may not do this (wrong role, or acting as another node).
    #[error("{0}")]
    Forbidden(String),
    /// A who-else question refused by the policy; it was audited under `receipt`.
    #[error("{message} (audit receipt {receipt})")]
    Refused { message: String, receipt: u64, reason: RefusalReason },
    /// The request names something the caller does not hold here.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be taken in this federation's state (schema or key epoch).
    #[error("{0}")]
    Precondition(String),
    /// The caller sent more than its share; nothing changed. Retry after the given time.
    #[error("{what}: retry in {retry_after_ms} ms")]
    RateLimited { what: String, retry_after_ms: u64 },
    /// A quota is used up (items per node); nothing changed.
    #[error("{0}")]
    Quota(String),
    /// The coordinator's disk is (nearly) full: writes are refused, nothing changed.
    #[error("{0}")]
    DiskFull(String),
    /// The caller's deadline passed before the coordinator could start the request; nothing of
    /// it was applied.
    #[error("{0}")]
    Deadline(String),
    /// The coordinator was too busy to start the request within its own bound; nothing of it
    /// was applied. Send it again.
    #[error("{0}")]
    Busy(String),
    /// Storage failed; nothing was acknowledged.
    #[error("{0}")]
    Storage(String),
}

impl From<StoreError> for FederationError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full(_) | StoreError::Unavailable => FederationError::DiskFull(format!(
                "{e}: writes are refused and retried later by the node (nothing was acknowledged); questions are answered again as soon as the store reopens"
            )),
            other => FederationError::Storage(format!("{other}; nothing was acknowledged, retry later")),
        }
    }
}

pub type Result<T, E = FederationError> = std::result::Result<T, E>;
