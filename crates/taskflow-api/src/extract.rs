//! Extractors: JSON bodies with problem+json rejections, the signed-in user, `If-Match`.

use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::JsonRejection},
    http::{StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;
use taskflow_app::AppError;
use taskflow_core::User;

use crate::{AppState, problem::ApiError};

/// A JSON body. Malformed JSON is 400, well-formed but wrong JSON is 422, a missing JSON
/// content type is 415, too large is 413; all as problem+json.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned + serde::Serialize,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => {
                if !v.is_object() {
                    return Err(ApiError::invalid("body", "must be a JSON object"));
                }
                // A walk of the parsed body (no copy) finds no NUL in nearly every request.
                let has_nul = taskflow_core::error::nul_field(&v).is_some();
                let t: T = serde_json::from_value(v)
                    .map_err(|e| ApiError::invalid("body", e.to_string()))?;
                // Only the fields this request uses count: unknown ones are ignored, NUL or not.
                if has_nul
                    && let Some(field) = taskflow_core::error::nul_field(
                        &serde_json::to_value(&t).unwrap_or_default(),
                    )
                {
                    return Err(ApiError::invalid(
                        &field,
                        "must not contain the NUL character (\\u0000)",
                    ));
                }
                Ok(Json(t))
            }
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::invalid("body", body_text(&e.body_text())))
            }
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::BadRequest(format!(
                "the body is not valid JSON: {}",
                body_text(&e.body_text())
            ))),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMediaType(
                "send the body as JSON with `Content-Type: application/json`".into(),
            )),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge(
                    "the request body is larger than the 64 KiB limit".into(),
                ))
            }
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// The longest URL (path and query) accepted.
pub const MAX_URL: usize = 8 * 1024;

/// Middleware: a URL longer than [`MAX_URL`] is 414, and one whose path or query holds a
/// NUL character (`%00`) is 422, before any handler sees it.
pub async fn check_url(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let uri = req.uri();
    let len = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if len > MAX_URL {
        return ApiError::UriTooLong(format!(
            "the URL is {len} bytes long; the server accepts up to {MAX_URL}"
        ))
        .into_response();
    }
    // The URI type refuses a raw NUL, so a NUL arrives percent-encoded.
    let has_nul = |s: &str| s.contains("%00");
    if has_nul(uri.path()) {
        return ApiError::invalid("path", "must not contain the NUL character (%00)")
            .into_response();
    }
    if let Some(q) = uri.query()
        && has_nul(q)
    {
        let field = q
            .split('&')
            .find(|kv| has_nul(kv))
            .and_then(|kv| kv.split('=').next())
            .filter(|k| !k.is_empty() && !has_nul(k))
            .unwrap_or("query");
        return ApiError::invalid(field, "must not contain the NUL character (%00)")
            .into_response();
    }
    next.run(req).await
}

/// serde's message without axum's prefix.
fn body_text(s: &str) -> String {
    s.split_once(": ").map_or(s, |(_, rest)| rest).to_owned()
}

/// The client's address, when the listener recorded it (not in router unit tests).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The user the bearer token names. Also applies the per-user rate limit.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub User);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)
            .or_else(|| query_token(parts))
            .ok_or(AppError::Unauthorized(
                "sign in first: send `Authorization: Bearer <token>` (from /api/auth/login)",
            ))?;
        let user = state.app.authenticate(token).await?;
        state.limits.check_user(user.id).await?;
        Ok(CurrentUser(user))
    }
}

/// Browsers cannot set headers on `EventSource` and `WebSocket`: the live streams also take
/// the token as `?token=` (or `?access_token=`, as OAuth clients send it). No other route
/// does, so tokens stay out of URLs elsewhere.
fn query_token(parts: &Parts) -> Option<&str> {
    if !matches!(parts.uri.path(), "/api/events" | "/api/ws") {
        return None;
    }
    parts
        .uri
        .query()?
        .split('&')
        .find_map(|kv| {
            kv.strip_prefix("token=")
                .or_else(|| kv.strip_prefix("access_token="))
        })
        .filter(|t| !t.is_empty())
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The version named by `If-Match: "<version>"`; `*` or no header means any version.
#[derive(Debug, Clone, Copy)]
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(raw) = parts.headers.get(header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let raw = raw.to_str().unwrap_or_default().trim();
        if raw == "*" {
            return Ok(IfMatch(None));
        }
        let v = raw.strip_prefix("W/").unwrap_or(raw).trim_matches('"');
        v.parse().map(|v| IfMatch(Some(v))).map_err(|_| {
            ApiError::BadRequest(format!(
                "If-Match must be a version in quotes such as \"3\", got `{raw}`"
            ))
        })
    }
}
