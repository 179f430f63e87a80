//! Errors as `application/problem+json` (RFC 9457), and the JSON body extractor that turns every
//! way a body can be wrong into one of them. A refused request changes nothing.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

/// An error answer. `code` is stable for software; `detail` says what, where and how to fix.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"type": "about:blank", "title": "Invalid value", "status": 422, "detail": "purpose: \"curiosita\" is not a known purpose; use one of: continuita_assistenziale, convocazione_uvm, dimissione_protetta, richiesta_interessato, emergenza", "code": "invalid_value", "field": "purpose"}))]
pub struct Problem {
    /// Always `about:blank`: `code` carries the kind.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// `missing_credentials`, `invalid_credentials`, `role_not_allowed`, `refused`,
    /// `malformed_json`, `missing_header`, `invalid_header`, `invalid_query`, `body_too_large`,
    /// `body_timeout`, `unsupported_media_type`, `invalid_value`, `not_found`, `not_published`,
    /// `not_acceptable`, `coordinator_unavailable`, `internal`.
    pub code: String,
    /// The body field, query parameter or header at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error that becomes a problem response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub field: Option<String>,
    /// Sent as `Retry-After` (whole seconds) when the caller should wait before trying again.
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError { status, code, detail: detail.into(), field: None, retry_after: None }
    }

    /// Tells the caller to wait this long before trying again (`Retry-After`).
    pub fn retry_after(mut self, wait: std::time::Duration) -> ApiError {
        self.retry_after = Some(wait);
        self
    }

    pub fn field(mut self, f: impl Into<String>) -> ApiError {
        self.field = Some(f.into());
        self
    }

    /// 422 for a value that does not fit: names the field.
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", format!("{field}: {reason}")).field(field)
    }

    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 500: the detail is logged, not sent (it could name a path or a record).
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "internal error in the API");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the node failed to handle the request; its log says why")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        metrics::counter!("ponte_node_api_refusals_total", "code" => self.code).increment(1);
        let problem = Problem {
            kind: "about:blank".into(),
            title: self.status.canonical_reason().unwrap_or("Error").to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code.to_string(),
            field: self.field,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut r = (self.status, body).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs().max(1).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"ponte-node\""));
        }
        r
    }
}

/// A JSON request body: `Content-Type: application/json` (415 otherwise), within the configured
/// size (413), arriving without stalling and whole within [`BODY_DEADLINE`] (408),
/// well-formed (400) and of the right shape, unknown fields refused (422).
pub struct JsonBody<T>(pub T);

/// The whole body of an API request must arrive within this long. The listener cuts a body
/// that pauses longer than `api.body_idle_timeout_secs`; this bounds one that keeps trickling
/// (every API body is at most `api.max_body_bytes`, a few KiB).
pub const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

fn body_timeout(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", detail)
}

/// Whether a body error is the listener cutting a stalled body.
fn stalled<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a ponte_net::BodyError> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<ponte_net::BodyError>() {
            return Some(b).filter(|b| matches!(b, ponte_net::BodyError::Idle(_)));
        }
        cur = err.source();
    }
    None
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if mime != "application/json" {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("the body must be JSON sent with Content-Type: application/json (got {:?})", if ct.is_empty() { "nothing" } else { ct }),
            )
            .field("Content-Type"));
        }
        let read = tokio::time::timeout(BODY_DEADLINE, axum::body::Bytes::from_request(req, state))
            .await
            .map_err(|_| body_timeout(format!("the body did not arrive within {} s: send it at once", BODY_DEADLINE.as_secs())))?;
        let bytes = read.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the body is larger than this node accepts (api.max_body_bytes); send only the documented fields")
            } else if let Some(cut) = stalled(&e) {
                body_timeout(cut.to_string())
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body could not be read: {e}"))
            }
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", format!("the body does not fit the request's schema: {e}")),
                _ => ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not well-formed JSON: {e}")),
            }
        })
    }
}
