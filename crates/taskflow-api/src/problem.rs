//! RFC 9457 problem details: every error this API answers with, including the framework's
//! own (unknown route, wrong method, body too large), is `application/problem+json`.

use std::time::Duration;

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use taskflow_app::AppError;
use taskflow_core::{FieldError, ValidationErrors};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem, put into the response's extensions by [`ApiError`] and rendered once by
/// [`render_problems`], which adds the request id.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<FieldError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            ty: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            request_id: None,
        }
    }
}

/// The one error type of the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Invalid(ValidationErrors),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("too many requests")]
    TooManyRequests(Duration),
    /// Too many failed logins of one account in a row.
    #[error("too many failed logins")]
    LoginThrottled(Duration),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UriTooLong(String),
    /// The user has as many live connections open as allowed.
    #[error("{0}")]
    TooManyStreams(String),
    /// A feature this instance does not run (its role is off).
    #[error("{0}")]
    Unavailable(&'static str),
}

impl From<ValidationErrors> for ApiError {
    fn from(e: ValidationErrors) -> Self {
        ApiError::Invalid(e)
    }
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(ValidationErrors::one(field, message))
    }

    fn problem(&self) -> Problem {
        use StatusCode as S;
        match self {
            ApiError::Invalid(e) | ApiError::App(AppError::Validation(e)) => {
                let mut p = Problem::new(S::UNPROCESSABLE_ENTITY, e.to_string());
                p.errors = e.0.clone();
                p
            }
            ApiError::App(AppError::InvalidCursor(m)) => {
                let mut p = Problem::new(S::UNPROCESSABLE_ENTITY, format!("cursor: {m}"));
                p.errors = vec![FieldError {
                    field: "cursor".into(),
                    message: m.clone(),
                }];
                p
            }
            ApiError::App(AppError::NotFound) => Problem::new(S::NOT_FOUND, "no such task"),
            ApiError::Unavailable(m) => Problem::new(S::SERVICE_UNAVAILABLE, *m),
            ApiError::App(AppError::Busy(wait)) => Problem::new(
                S::SERVICE_UNAVAILABLE,
                format!(
                    "the server is busy checking passwords; retry in {} s",
                    retry_secs(*wait)
                ),
            ),
            ApiError::TooManyStreams(m) => Problem::new(S::TOO_MANY_REQUESTS, m.clone()),
            ApiError::App(e @ AppError::PreconditionFailed { .. }) => {
                Problem::new(S::PRECONDITION_FAILED, e.to_string())
            }
            ApiError::App(AppError::Duplicate("email")) => Problem::new(
                S::CONFLICT,
                "an account with this email already exists; log in instead",
            ),
            ApiError::App(e @ (AppError::Duplicate(_) | AppError::Contended)) => {
                Problem::new(S::CONFLICT, e.to_string())
            }
            ApiError::App(AppError::Unauthorized(m)) => Problem::new(S::UNAUTHORIZED, *m),
            ApiError::App(AppError::Store(_) | AppError::Internal(_)) => Problem::new(
                S::INTERNAL_SERVER_ERROR,
                "something went wrong on our side; it has been logged",
            ),
            ApiError::BadRequest(m) => Problem::new(S::BAD_REQUEST, m.clone()),
            ApiError::Forbidden(m) => Problem::new(S::FORBIDDEN, *m),
            ApiError::NotFound(m) => Problem::new(S::NOT_FOUND, *m),
            ApiError::TooManyRequests(wait) => Problem::new(
                S::TOO_MANY_REQUESTS,
                format!("rate limit exceeded; retry in {} s", retry_secs(*wait)),
            ),
            ApiError::LoginThrottled(wait) => Problem::new(
                S::TOO_MANY_REQUESTS,
                format!(
                    "too many failed logins for this account; retry in {} s",
                    retry_secs(*wait)
                ),
            ),
            ApiError::UnsupportedMediaType(m) => Problem::new(S::UNSUPPORTED_MEDIA_TYPE, m.clone()),
            ApiError::PayloadTooLarge(m) => Problem::new(S::PAYLOAD_TOO_LARGE, m.clone()),
            ApiError::UriTooLong(m) => Problem::new(S::URI_TOO_LONG, m.clone()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut res = status.into_response();
        match &self {
            ApiError::App(AppError::Store(_) | AppError::Internal(_)) => {
                res.extensions_mut().insert(InternalError(self.to_string()));
            }
            ApiError::App(AppError::Unauthorized(_)) => {
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TooManyRequests(wait)
            | ApiError::LoginThrottled(wait)
            | ApiError::App(AppError::Busy(wait)) => {
                let secs = retry_secs(*wait).to_string();
                if let Ok(v) = HeaderValue::from_str(&secs) {
                    res.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            // A stream ends when its client leaves: a few seconds is a fair guess.
            ApiError::TooManyStreams(_) => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        res.extensions_mut().insert(problem);
        res
    }
}

/// Whole seconds to wait, rounded up, at least 1 (what `Retry-After` says).
fn retry_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The cause of a 5xx, logged once by [`render_problems`] and never sent to the client.
#[derive(Debug, Clone)]
struct InternalError(String);

/// Renders every error response as problem+json: [`ApiError`]s from their [`Problem`], and
/// the framework's own bare errors (404, 405, 413 …) from their status and text.
pub async fn render_problems(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let method = req.method().clone();
    let uri = req.uri().path().to_owned();
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    // problem+json already, or a JSON body of its own (the JSON-RPC errors of /mcp).
    let rendered = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().starts_with(PROBLEM_JSON.as_bytes())
            || v.as_bytes().starts_with(b"application/json")
    });
    if rendered {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let mut problem = match parts.extensions.remove::<Problem>() {
        Some(p) => p,
        None => {
            let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&text).trim().to_owned();
            let detail = match status {
                StatusCode::NOT_FOUND => format!("there is nothing at {uri}"),
                StatusCode::METHOD_NOT_ALLOWED => format!("{method} is not allowed on {uri}"),
                StatusCode::PAYLOAD_TOO_LARGE => {
                    "the request body is larger than the 64 KiB limit".to_owned()
                }
                _ if !text.is_empty() => text,
                _ => status.canonical_reason().unwrap_or("error").to_owned(),
            };
            Problem::new(status, detail)
        }
    };
    if let Some(InternalError(cause)) = parts.extensions.remove::<InternalError>() {
        tracing::error!(%method, path = %uri, request_id = request_id.as_deref().unwrap_or("-"), error = %cause, "request failed");
    }
    problem.request_id = request_id;
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
