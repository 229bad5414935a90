//! `/mcp`: the task tools over MCP's streamable HTTP transport, for the bearer token's user.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Request, State},
    middleware::{self, Next},
    response::Response,
};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use taskflow_agent::{McpServer, Tools};

use crate::{AppState, extract::CurrentUser, problem::ApiError};

/// Authenticates the request and hands the user to the MCP service in its extensions.
async fn authenticate(
    State(s): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let CurrentUser(user) =
        <CurrentUser as axum::extract::FromRequestParts<AppState>>::from_request_parts(
            &mut parts, &s,
        )
        .await?;
    parts.extensions.insert(user);
    Ok(next.run(Request::from_parts(parts, body)).await)
}

pub fn router(state: &AppState) -> Router<AppState> {
    let tools = Tools::new(state.app.clone());
    let mut config = StreamableHttpServerConfig::default();
    config.allowed_hosts = state.mcp_allowed_hosts.clone();
    let service = StreamableHttpService::new(
        move || Ok(McpServer::per_request(tools.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .nest_service("/mcp", service)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
}
