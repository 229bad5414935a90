//! Liveness, readiness and Prometheus metrics.

use std::{sync::OnceLock, time::Instant};

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use taskflow_core::RoleState;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz/live", get(live))
        .route("/healthz/ready", get(ready))
        .route("/metrics", get(metrics_text))
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("taskflow_reminder_lateness_seconds".into()),
                        &[0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 60.0, 3600.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("taskflow_llm_request_duration_seconds".into()),
                        &[0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0],
                    )
                })
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only when another recorder was installed first; then ours stays empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

async fn live() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// Ready when the database answers and every role of this process is ready; the body
/// names each check.
async fn ready(State(s): State<AppState>) -> Response {
    let mut checks = serde_json::Map::new();
    let mut ok = true;
    match s.app.ping().await {
        Ok(()) => {
            checks.insert("database".into(), json!("ok"));
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            checks.insert("database".into(), json!("unreachable"));
            ok = false;
        }
    }
    // The sidecar is reported, not required: the API serves without it (shared limits fall
    // back to each replica's, events wait in the outbox); the roles that cannot work without
    // it report it as their own state.
    if let Some(health) = &s.sidecar.health {
        let seen = match health.last() {
            None => "unknown".to_owned(),
            Some(Ok(())) => "ok".to_owned(),
            Some(Err(why)) => format!("not ready: {why}"),
        };
        checks.insert("sidecar".into(), json!(seen));
    }
    let mut roles = serde_json::Map::new();
    for (role, state) in s.readiness.roles() {
        let text = match state {
            RoleState::Ready => "ready".to_owned(),
            RoleState::Starting => {
                ok = false;
                "starting".to_owned()
            }
            RoleState::Failing(why) => {
                ok = false;
                format!("failing: {why}")
            }
        };
        roles.insert(role.name().into(), json!(text));
    }
    let body = json!({
        "status": if ok { "ready" } else { "not ready" },
        "checks": checks,
        "roles": roles,
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    if let Ok(n) = s.app.outbox_len().await {
        metrics::gauge!("taskflow_outbox_events").set(n as f64);
    }
    metrics::gauge!("taskflow_outbox_head_position").set(s.app.bus().head() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// Middleware: request count and latency by matched route, method and status.
pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let res = next.run(req).await;
    let labels = [
        ("route", route),
        ("method", method),
        ("status", res.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    res
}
