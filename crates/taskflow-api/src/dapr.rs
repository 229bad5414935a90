//! The routes a Dapr sidecar calls: with `--bus dapr`, `GET /dapr/subscribe` (the
//! subscriptions of the roles this process runs) and `POST /dapr/events/{pubsub}/{topic}`
//! (one event, answered `{"status": "SUCCESS" | "RETRY" | "DROP"}`); with `--timers
//! dapr-jobs`, `POST /job/{name}` (a reminder's job is due: what is due fires); with
//! `--dapr-cron-binding NAME`, `POST /NAME` (housekeeping). They are
//! outside the per-IP rate limit (the sidecar is one client that carries every event) and,
//! where the sidecar is given an app token (`APP_API_TOKEN`), refuse calls without it (403).

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;
use taskflow_app::App;
use taskflow_bus::dapr::{Delivered, Inbox};
use taskflow_services::Scheduler;

use crate::ApiError;

/// The largest event the sidecar may deliver.
const EVENT_LIMIT: usize = 1024 * 1024;

/// What the sidecar may call on this process.
#[derive(Debug, Clone, Default)]
pub struct Sidecar {
    /// The token the sidecar's calls carry (`dapr-api-token`), where one is set.
    pub app_token: Option<String>,
    /// The reminders' timers, when they are Dapr jobs.
    pub jobs: Option<Arc<Scheduler>>,
    /// The cron binding that drives housekeeping, where there is one.
    pub cron: Option<Cron>,
    /// The sidecar's readiness, where this process uses one (reported, not required: the
    /// API serves without it).
    pub health: Option<taskflow_bus::dapr::SidecarHealth>,
}

/// A Dapr cron input binding: `POST /{binding}` tidies up.
#[derive(Debug, Clone)]
pub struct Cron {
    pub binding: String,
    pub outbox_retention: Option<std::time::Duration>,
}

#[derive(Clone)]
struct Calls {
    app_token: Option<String>,
    inbox: Option<Arc<Inbox>>,
    jobs: Option<Arc<Scheduler>>,
    cron: Option<(Cron, App)>,
}

/// The sidecar's routes for `inbox` (a transport that is pushed its events), `sidecar`'s
/// jobs and cron binding (tidying up `app`); none when there are none of them.
pub fn router<S: Clone + Send + Sync + 'static>(
    sidecar: &Sidecar,
    inbox: Option<Arc<Inbox>>,
    app: &App,
) -> Router<S> {
    let mut routes = Router::new();
    if let Some(cron) = &sidecar.cron {
        // The sidecar probes an input binding's route with OPTIONS before it calls it.
        let path = format!("/{}", cron.binding);
        routes = routes.route(&path, post(tidy).options(|| async { StatusCode::OK }));
    }
    if inbox.is_some() {
        routes = routes
            .route("/dapr/subscribe", get(subscribe))
            .route("/dapr/events/{pubsub}/{topic}", post(deliver));
    }
    if sidecar.jobs.is_some() {
        routes = routes.route("/job/{name}", post(job));
    }
    if inbox.is_none() && sidecar.jobs.is_none() && sidecar.cron.is_none() {
        return Router::new();
    }
    let calls = Calls {
        app_token: sidecar.app_token.clone(),
        inbox,
        jobs: sidecar.jobs.clone(),
        cron: sidecar.cron.clone().map(|c| (c, app.clone())),
    };
    routes
        .layer(middleware::from_fn_with_state(calls.clone(), app_token))
        // An event carries its task: more than a request of the API may.
        .layer(DefaultBodyLimit::max(EVENT_LIMIT))
        .with_state(calls)
}

async fn subscribe(State(calls): State<Calls>) -> Response {
    match &calls.inbox {
        Some(inbox) => Json(inbox.subscriptions()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn deliver(
    State(calls): State<Calls>,
    Path((pubsub, topic)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(inbox) = &calls.inbox else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let answer = inbox.deliver(&pubsub, &topic, &body).await;
    let status = if answer == Delivered::Unknown {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    (status, Json(json!({"status": answer.status()}))).into_response()
}

/// A job is due: fires what is due now (the job's reminder among it, unless it went or
/// fired already). A trigger a little before the reminder's time (clocks apart) waits for
/// it, up to 5 s; a failure answers 500, so the sidecar triggers the job again.
async fn job(State(calls): State<Calls>, Path(name): Path<String>, body: Bytes) -> Response {
    let Some(scheduler) = &calls.jobs else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let data: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let early = data["fire_at"]
        .as_str()
        .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
        .and_then(|at| (at - chrono::Utc::now()).to_std().ok());
    if let Some(wait) = early {
        if wait > std::time::Duration::from_secs(5) {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"job": name, "error": "triggered before its time"})),
            )
                .into_response();
        }
        tokio::time::sleep(wait).await;
    }
    match scheduler.tick().await {
        Ok(fired) => Json(json!({"job": name, "fired": fired})).into_response(),
        Err(e) => {
            tracing::warn!(job = %name, error = %e, "a job's reminders cannot fire now; the sidecar tries again");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"job": name, "error": e.to_string()})),
            )
                .into_response()
        }
    }
}

/// The cron binding's call: one round of housekeeping; 500 when the store fails (the next
/// call tries again).
async fn tidy(State(calls): State<Calls>) -> Response {
    let Some((cron, app)) = &calls.cron else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match app.tidy(cron.outbox_retention).await {
        Ok(t) => {
            if t.handled_records + t.events > 0 {
                tracing::info!(
                    handled_records = t.handled_records,
                    events = t.events,
                    "housekeeping pruned"
                );
            }
            Json(json!({"pruned": {"handled_records": t.handled_records, "events": t.events}}))
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "housekeeping cannot prune now");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": e.to_string()})),
            )
                .into_response()
        }
    }
}

/// Refuses a call without the app token, where one is set (compared in constant time).
async fn app_token(State(calls): State<Calls>, req: Request, next: Next) -> Response {
    if let Some(expected) = &calls.app_token {
        let given = req
            .headers()
            .get("dapr-api-token")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !same(given, expected.as_bytes()) {
            return ApiError::Forbidden(
                "the sidecar's calls need the app token (header dapr-api-token)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Whether `a` and `b` are equal, in time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
