//! The routes a Dapr sidecar calls, with `--bus dapr`: `GET /dapr/subscribe` (the
//! subscriptions of the roles this process runs) and `POST /dapr/events/{pubsub}/{topic}`
//! (one event, answered `{"status": "SUCCESS" | "RETRY" | "DROP"}`). They are outside the
//! per-IP rate limit (the sidecar is one client that carries every event) and, where the
//! sidecar is given an app token (`APP_API_TOKEN`), refuse calls without it (403).

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
use taskflow_bus::dapr::{Delivered, Inbox};

use crate::ApiError;

/// The largest event the sidecar may deliver.
const EVENT_LIMIT: usize = 1024 * 1024;

/// The sidecar's routes, for a process whose transport is pushed its events.
pub fn router<S: Clone + Send + Sync + 'static>(inbox: Arc<Inbox>) -> Router<S> {
    Router::new()
        .route("/dapr/subscribe", get(subscribe))
        .route("/dapr/events/{pubsub}/{topic}", post(deliver))
        .layer(middleware::from_fn_with_state(inbox.clone(), app_token))
        // An event carries its task: more than a request of the API may.
        .layer(DefaultBodyLimit::max(EVENT_LIMIT))
        .with_state(inbox)
}

async fn subscribe(State(inbox): State<Arc<Inbox>>) -> impl IntoResponse {
    Json(inbox.subscriptions())
}

async fn deliver(
    State(inbox): State<Arc<Inbox>>,
    Path((pubsub, topic)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let answer = inbox.deliver(&pubsub, &topic, &body).await;
    let status = if answer == Delivered::Unknown {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    (status, Json(json!({"status": answer.status()}))).into_response()
}

/// Refuses a call without the app token, where one is set (compared in constant time).
async fn app_token(State(inbox): State<Arc<Inbox>>, req: Request, next: Next) -> Response {
    if let Some(expected) = inbox.app_token() {
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
