//! The HTTP API of taskflow (axum). Each feature module owns its routes, wire types and
//! OpenAPI; this module merges them and adds the cross-cutting layers: request ids, tracing,
//! metrics, rate limits, body limit, and problem+json for every error.

mod chat;
mod dapr;
mod docs;
mod events;
mod extract;
mod health;
mod limits;
mod listener;
mod mcp;
mod openapi;
mod problem;
mod shared;
mod tasks;
mod users;
mod web;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    http::HeaderName,
    middleware,
    response::IntoResponse,
};
use metrics_exporter_prometheus::PrometheusHandle;
use taskflow_app::App;
use taskflow_core::trace::Traceparent;
use tower_http::{
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnResponse, OnResponse as _, TraceLayer},
};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::router::OpenApiRouter;

pub use dapr::{Cron, Sidecar};
pub use health::prometheus;
pub use limits::{AuthRates, Limits, Rate};
pub use listener::{ConnLimits, open_file_limit, serve};
pub use mcp::McpSettings;
pub use problem::{ApiError, PROBLEM_JSON, Problem};
pub use shared::SharedLimits;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub app: App,
    pub limits: Arc<Limits>,
    pub metrics: PrometheusHandle,
    /// The live fan-out, when this instance runs the `sync` role.
    pub hub: Option<Arc<taskflow_services::Hub>>,
    /// The roles of this process, for `/healthz/ready`.
    pub readiness: taskflow_core::Readiness,
    /// How often an idle live stream (SSE comment, WebSocket ping) shows it is alive.
    pub heartbeat: Duration,
    /// The model behind the chat, when one is configured; else the rule-based agent answers.
    pub llm: Option<taskflow_agent::Llm>,
    /// The settings of `/mcp`.
    pub mcp: McpSettings,
    /// What a Dapr sidecar may call on this process besides event deliveries.
    pub sidecar: dapr::Sidecar,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "taskflow", description = "An event-driven todo assistant. Errors are RFC 9457 problem+json."),
    modifiers(&BearerAuth),
    components(schemas(Problem))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
        }
    }
}

/// The OpenAPI document of the API, generated from the handlers.
pub fn openapi() -> serde_json::Value {
    openapi::document(api_routes().split_for_parts().1)
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(users::router())
        .merge(tasks::router())
        .merge(events::router())
        .merge(chat::router())
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_routes().split_for_parts();
    // Serialised once; each request gets the same bytes.
    let doc_json =
        axum::body::Bytes::from(serde_json::to_vec(&openapi::document(doc)).unwrap_or_default());
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .merge(api)
        .merge(tasks::compat_router())
        .merge(chat::compat_router())
        .merge(mcp::router(&state))
        .route_layer(middleware::from_fn(health::track))
        .merge(health::router())
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let body = doc_json.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            }),
        )
        .merge(docs::router())
        .merge(web::router())
        .fallback(|| async {
            ApiError::NotFound("there is no such endpoint; see /docs").into_response()
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(middleware::from_fn(extract::check_url))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::per_ip,
        ))
        .merge(sidecar_routes(&state))
        .layer(middleware::from_fn(problem::render_problems))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(http_span)
                .on_response(
                    |res: &axum::response::Response, latency, span: &tracing::Span| {
                        span.record("status", res.status().as_u16());
                        DefaultOnResponse::new().on_response(res, latency, span);
                    },
                ),
        )
        .layer(middleware::from_fn(trace_context))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// The span a request is served in: its log lines name the request and its trace, and with
/// trace export on it is the server span of the trace.
fn http_span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let server = req.extensions().get::<Traceparent>();
    let caller = req
        .extensions()
        .get::<CallerSpan>()
        .map_or("", |c| c.0.as_str());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), route,
        request_id = %id, trace_id = server.map_or("", Traceparent::trace_id),
        span_id = server.map_or("", Traceparent::span_id), parent_id = caller,
        sampled = server.is_some_and(Traceparent::sampled), status = tracing::field::Empty)
}

/// The span id of the caller's `traceparent`: the parent of the server's span.
#[derive(Debug, Clone)]
struct CallerSpan(String);

/// Middleware: the request's W3C trace context. The server's span is a child of the caller's
/// `traceparent`, or the root of a new trace where there is none (or it is malformed: it is
/// ignored, not refused); the events the request writes carry it and its log lines name it.
async fn trace_context(mut req: Request, next: middleware::Next) -> axum::response::Response {
    let caller = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(Traceparent::parse);
    let server = caller
        .as_ref()
        .map_or_else(Traceparent::root, Traceparent::child);
    if let Some(caller) = caller {
        req.extensions_mut()
            .insert(CallerSpan(caller.span_id().to_owned()));
    }
    req.extensions_mut().insert(server.clone());
    taskflow_app::trace::scope(server, next.run(req)).await
}

/// The routes a Dapr sidecar calls: deliveries where the transport is Dapr, job triggers
/// where the timers are Dapr jobs (else none).
fn sidecar_routes<S: Clone + Send + Sync + 'static>(state: &AppState) -> Router<S> {
    dapr::router(&state.sidecar, state.app.bus().inbox(), &state.app)
}

/// Health, readiness and metrics only: what an instance without the `api` role serves.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(sidecar_routes(&state))
        .fallback(|| async {
            ApiError::NotFound(
                "this instance does not run the `api` role; only /healthz and /metrics are served",
            )
            .into_response()
        })
        .layer(middleware::from_fn(problem::render_problems))
        .with_state(state)
}

/// Periodic upkeep: drains recorded histogram samples into their buckets (without it they
/// pile up in memory between scrapes) and forgets idle rate-limit keys.
pub fn spawn_housekeeping(
    limits: Arc<Limits>,
    metrics: PrometheusHandle,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            metrics.run_upkeep();
            n += 1;
            if n.is_multiple_of(12) {
                limits.shrink();
            }
        }
    })
}
