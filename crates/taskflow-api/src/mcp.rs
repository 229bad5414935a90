//! `/mcp`: the task tools over MCP's streamable HTTP transport, for the bearer token's user.
//!
//! In front of rmcp's service, a guard that keeps one user from exhausting the server and
//! answers protocol errors the way JSON-RPC clients read them:
//! - a session belongs to the user who opened it; an unknown, expired or foreign
//!   `Mcp-Session-Id` is 404 with a JSON-RPC error (the client then starts a new session);
//! - a user may hold a limited number of open sessions: one more `initialize` is 429 with
//!   `Retry-After` until one is closed (`DELETE /mcp`) or expires after the idle time;
//! - a body that is not JSON is 400 with a `-32700` parse error, JSON that is not a JSON-RPC
//!   message 400 with `-32600`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use rmcp::{
    model::ClientJsonRpcMessage,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
        session::local::{LocalSessionManager, SessionConfig},
    },
};
use taskflow_agent::{McpServer, Tools};
use taskflow_core::UserId;

use crate::{AppState, BODY_LIMIT, extract::CurrentUser, problem::ApiError};

const SESSION_HEADER: &str = "mcp-session-id";

/// The open sessions and whose they are.
#[derive(Debug)]
struct Sessions {
    manager: Arc<LocalSessionManager>,
    owners: Mutex<HashMap<String, UserId>>,
    per_user: usize,
}

impl Sessions {
    async fn is_open(&self, id: &str) -> bool {
        self.manager.sessions.read().await.contains_key(id)
    }

    fn owner(&self, id: &str) -> Option<UserId> {
        self.lock().get(id).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserId>> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many sessions `user` has open, forgetting those rmcp has closed (idle expiry).
    async fn open_for(&self, user: UserId) -> usize {
        let live = self.manager.sessions.read().await;
        let mut owners = self.lock();
        owners.retain(|id, _| live.contains_key(id.as_str()));
        owners.values().filter(|u| **u == user).count()
    }
}

/// A JSON-RPC error response, as MCP clients read errors of the transport.
fn rpc_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": code, "message": message},
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn guard(
    State((s, sessions)): State<(AppState, Arc<Sessions>)>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let CurrentUser(user) =
        <CurrentUser as axum::extract::FromRequestParts<AppState>>::from_request_parts(
            &mut parts, &s,
        )
        .await?;
    let session = parts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(id) = &session
        && (sessions.owner(id) != Some(user.id) || !sessions.is_open(id).await)
    {
        return Ok(rpc_error(
            StatusCode::NOT_FOUND,
            -32001,
            "no such session (it expired or was closed); start a new one with initialize",
        ));
    }
    let mut opens_session = false;
    let body = if parts.method == Method::POST {
        let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
            ApiError::PayloadTooLarge("the request body is larger than the 64 KiB limit".into())
        })?;
        let value: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                return Ok(rpc_error(
                    StatusCode::BAD_REQUEST,
                    -32700,
                    &format!("Parse error: the body is not JSON ({e})"),
                ));
            }
        };
        if serde_json::from_value::<ClientJsonRpcMessage>(value.clone()).is_err() {
            return Ok(rpc_error(
                StatusCode::BAD_REQUEST,
                -32600,
                "Invalid Request: the body is not a JSON-RPC 2.0 request, notification or response",
            ));
        }
        opens_session = session.is_none() && value["method"] == "initialize";
        if opens_session && sessions.open_for(user.id).await >= sessions.per_user {
            let mut res = rpc_error(
                StatusCode::TOO_MANY_REQUESTS,
                -32000,
                &format!(
                    "you have {} MCP sessions open, the most allowed; close one (DELETE /mcp) or wait for an idle one to expire",
                    sessions.per_user
                ),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            return Ok(res);
        }
        Body::from(bytes)
    } else {
        body
    };
    let closing = parts.method == Method::DELETE;
    let owner = user.id;
    // The MCP server acts for the user the request authenticated.
    parts.extensions.insert(user);
    let res = next.run(Request::from_parts(parts, body)).await;
    if opens_session
        && let Some(id) = res
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
    {
        sessions.lock().insert(id.to_owned(), owner);
    }
    if closing
        && res.status().is_success()
        && let Some(id) = &session
    {
        sessions.lock().remove(id);
    }
    Ok(res)
}

pub fn router(state: &AppState) -> Router<AppState> {
    let tools = Tools::new(state.app.clone());
    let mut config = StreamableHttpServerConfig::default();
    config.allowed_hosts = state.mcp.allowed_hosts.clone();
    let mut session_config = SessionConfig::default();
    session_config.keep_alive = Some(state.mcp.session_idle);
    let mut manager = LocalSessionManager::default();
    manager.session_config = session_config;
    let manager = Arc::new(manager);
    let sessions = Arc::new(Sessions {
        manager: manager.clone(),
        owners: Mutex::new(HashMap::new()),
        per_user: state.mcp.sessions_per_user.max(1),
    });
    let service = StreamableHttpService::new(
        move || Ok(McpServer::per_request(tools.clone())),
        manager,
        config,
    );
    Router::new()
        .nest_service("/mcp", service)
        .layer(middleware::from_fn_with_state(
            (state.clone(), sessions),
            guard,
        ))
}

/// The settings of `/mcp`.
#[derive(Debug, Clone)]
pub struct McpSettings {
    /// Host names `/mcp` accepts (DNS-rebinding protection).
    pub allowed_hosts: Vec<String>,
    /// Open sessions one user may hold.
    pub sessions_per_user: usize,
    /// A session with no message for this long is closed.
    pub session_idle: Duration,
}
