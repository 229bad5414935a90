//! `/api/auth/signup`, `/api/auth/login`, `/api/me`.

use axum::{extract::State, http::StatusCode, response::IntoResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use taskflow_app::{ProfilePatch, Signup};
use taskflow_core::{Timezone, User, UserName, ValidationErrors};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    AppState,
    extract::{ClientIp, CurrentUser, Json},
    problem::{ApiError, Problem},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(me, update_me))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct SignupBody {
    email: Option<String>,
    /// At least 8 characters.
    password: Option<String>,
    name: Option<String>,
    /// An IANA timezone, default `UTC`.
    timezone: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct LoginBody {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ProfileBody {
    name: Option<String>,
    timezone: Option<String>,
}

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct UserDoc {
    id: Uuid,
    email: String,
    name: String,
    timezone: String,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    #[schema(value_type = UserDoc)]
    user: User,
}

/// Create an account.
#[utoipa::path(post, path = "/api/auth/signup", tag = "auth", request_body = SignupBody,
    responses((status = 201, body = TokenResponse), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn signup(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(b): Json<SignupBody>,
) -> Result<impl IntoResponse, ApiError> {
    s.limits
        .check_auth(ip, b.email.as_deref().unwrap_or_default())
        .await?;
    let mut missing = ValidationErrors::default();
    if b.email.is_none() {
        missing.push("email", "is required");
    }
    if b.password.is_none() {
        missing.push("password", "is required");
    }
    if !missing.is_empty() {
        return Err(missing.into());
    }
    let signup = Signup::parse(
        b.email.as_deref().unwrap_or_default(),
        b.password.unwrap_or_default(),
        b.name.as_deref(),
        b.timezone.as_deref(),
    )?;
    let (user, token) = s.app.signup(signup).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(TokenResponse { token, user }),
    ))
}

/// Log in; a wrong email and a wrong password get the same 401.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem)))]
async fn login(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(b): Json<LoginBody>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let account = s.limits.check_auth(ip, &b.email).await?;
    match s.app.login(&b.email, b.password).await {
        Ok((user, token)) => {
            s.limits.login_outcome(account, true).await;
            Ok(axum::Json(TokenResponse { token, user }))
        }
        Err(e @ taskflow_app::AppError::Unauthorized(_)) => {
            s.limits.login_outcome(account, false).await;
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/me", tag = "auth", responses((status = 200, body = UserDoc), (status = 401, body = Problem)),
    security(("bearer" = [])))]
async fn me(CurrentUser(user): CurrentUser) -> axum::Json<User> {
    axum::Json(user)
}

/// Change your name or timezone.
#[utoipa::path(patch, path = "/api/me", tag = "auth", request_body = ProfileBody,
    responses((status = 200, body = UserDoc), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn update_me(
    State(s): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(b): Json<ProfileBody>,
) -> Result<axum::Json<User>, ApiError> {
    let mut e = ValidationErrors::default();
    let patch = ProfilePatch {
        name: b
            .name
            .as_deref()
            .and_then(|n| e.check("name", UserName::parse(n))),
        timezone: b
            .timezone
            .as_deref()
            .and_then(|t| e.check("timezone", Timezone::parse(t))),
    };
    if !e.is_empty() {
        return Err(e.into());
    }
    Ok(axum::Json(s.app.update_profile(user, patch).await?))
}
