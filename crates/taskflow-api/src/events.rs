//! Events, history and notifications: the audit trail (`/api/audit`,
//! `/api/tasks/{id}/history`), notifications, and the live streams (`/api/events` as
//! server-sent events, `/api/ws` as WebSocket text frames).

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::{Path, Query, State, WebSocketUpgrade, ws},
    http::{HeaderMap, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures_util::stream::{self, Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use taskflow_app::{AuditEntry, Notification};
use taskflow_bus::Envelope;
use taskflow_core::{TaskId, User};
use taskflow_services::Hub;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{AppState, Problem, extract::CurrentUser, problem::ApiError, shared::Verdict};

/// Events replayed per page when a stream resumes from `Last-Event-ID`.
const REPLAY_PAGE: i64 = 500;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(task_history))
        .routes(routes!(audit))
        .routes(routes!(notifications))
        .routes(routes!(read_notification))
        .routes(routes!(events))
        .routes(routes!(websocket))
}

/// An audit entry (`data` is the event's data).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct AuditItem {
    id: i64,
    event_id: String,
    #[serde(rename = "type")]
    ty: String,
    task_id: Option<String>,
    occurred_at: chrono::DateTime<chrono::Utc>,
    data: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
struct AuditPage {
    #[schema(value_type = Vec<AuditItem>)]
    items: Vec<AuditEntry>,
    /// Pass as `after` for the next page; null on the last page.
    next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// Entries after this cursor (from `next_cursor`).
    after: Option<String>,
    /// 1–500, default 100.
    limit: Option<i64>,
}

fn page_params(p: &AuditParams) -> Result<(i64, i64), ApiError> {
    let limit = p.limit.unwrap_or(100);
    let after = match p.after.as_deref() {
        None | Some("") => 0,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .ok_or_else(|| ApiError::invalid("after", "must be a cursor from next_cursor"))?,
    };
    Ok((after, limit))
}

async fn history_page(
    s: &AppState,
    user: &User,
    task: Option<TaskId>,
    p: &AuditParams,
) -> Result<Response, ApiError> {
    let (after, limit) = page_params(p)?;
    let items = s.app.history(user, task, after, limit).await?;
    let next_cursor = (items.len() as i64 == limit)
        .then(|| items.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(axum::Json(AuditPage { items, next_cursor }).into_response())
}

/// The history of one task, oldest first (also after it was deleted).
#[utoipa::path(get, path = "/api/tasks/{id}/history", tag = "events", params(("id" = Uuid, Path), AuditParams),
    responses((status = 200, body = AuditPage), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn task_history(
    State(s): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    Query(p): Query<AuditParams>,
) -> Result<Response, ApiError> {
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound("no such task"))?;
    history_page(&s, &user, Some(TaskId(id)), &p).await
}

/// Everything that happened to the signed-in user's tasks, oldest first.
#[utoipa::path(get, path = "/api/audit", tag = "events", params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn audit(
    State(s): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(p): Query<AuditParams>,
) -> Result<Response, ApiError> {
    history_page(&s, &user, None, &p).await
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct NotificationItem {
    id: String,
    task_id: Option<String>,
    title: String,
    body: String,
    created_at: chrono::DateTime<chrono::Utc>,
    read_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Serialize, ToSchema)]
struct NotificationPage {
    #[schema(value_type = Vec<NotificationItem>)]
    items: Vec<Notification>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct NotificationParams {
    /// Only unread notifications.
    unread: Option<bool>,
    /// 1–500, default 100.
    limit: Option<i64>,
}

/// The signed-in user's notifications, newest first.
#[utoipa::path(get, path = "/api/notifications", tag = "events", params(NotificationParams),
    responses((status = 200, body = NotificationPage), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn notifications(
    State(s): State<AppState>,
    CurrentUser(user): CurrentUser,
    Query(p): Query<NotificationParams>,
) -> Result<Response, ApiError> {
    let items = s
        .app
        .notifications(&user, p.unread.unwrap_or(false), p.limit.unwrap_or(100))
        .await?;
    Ok(axum::Json(NotificationPage { items }).into_response())
}

/// Marks a notification read.
#[utoipa::path(post, path = "/api/notifications/{id}/read", tag = "events", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn read_notification(
    State(s): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match s.app.read_notification(&user, &id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(taskflow_app::AppError::NotFound) => Err(ApiError::NotFound("no such notification")),
        Err(e) => Err(e.into()),
    }
}

fn hub(s: &AppState) -> Result<&Arc<Hub>, ApiError> {
    s.hub.as_ref().ok_or(ApiError::Unavailable(
        "live events are not served by this instance: it does not run the `sync` role",
    ))
}

/// Where a client resumes: `Last-Event-ID` (or `?last_event_id=`), a log position.
fn resume_from(headers: &HeaderMap, query: &ResumeParams) -> Result<Option<i64>, ApiError> {
    let raw = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.last_event_id.clone());
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|p| *p >= 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid(
                    "Last-Event-ID",
                    "must be the id of an event this stream sent",
                )
            }),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ResumeParams {
    /// Resume after this event id (as the `Last-Event-ID` header does).
    last_event_id: Option<String>,
    /// The token, for clients that cannot send headers (`EventSource`, `WebSocket`).
    #[allow(dead_code)]
    access_token: Option<String>,
}

/// Where a user's stream is.
struct Feed {
    s: AppState,
    user: User,
    sub: taskflow_services::Subscription,
    /// Tells the other replicas when the connection closes (after `sub`: fields drop in
    /// order, so the count it reports no longer has this one).
    _held: Option<Held>,
    /// The replay position while replaying from the log; `None` once caught up.
    replay: Option<i64>,
    /// The last position sent: live events at or before it came in the replay already.
    last: i64,
    buffered: std::vec::IntoIter<Envelope>,
}

/// A live connection counted in the shared store ([`crate::SharedLimits`]): dropping it
/// records this replica's new count of the user's connections.
struct Held {
    shared: Arc<crate::SharedLimits>,
    hub: Arc<Hub>,
    user: taskflow_core::UserId,
}

impl Drop for Held {
    fn drop(&mut self) {
        let (shared, hub, user) = (self.shared.clone(), self.hub.clone(), self.user);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                shared
                    .hold_streams(user, hub.connections_of(user), usize::MAX)
                    .await;
            });
        }
    }
}

/// The user's events: the replay after `from` (when resuming), then live ones, each once and
/// in log order. The subscription is made before the replay is read, so an event committed
/// in between arrives live and is not lost; one that also came in the replay is skipped.
async fn user_events(
    s: AppState,
    user: User,
    from: Option<i64>,
) -> Result<impl Stream<Item = Arc<Envelope>>, ApiError> {
    let too_many = |n: usize| {
        ApiError::TooManyStreams(format!(
            "you already have {n} live connections open; close one (or reuse it) before opening another"
        ))
    };
    let hub = hub(&s)?.clone();
    let sub = hub
        .subscribe(user.id)
        .map_err(|taskflow_services::TooManyStreams(n)| too_many(n))?;
    // Where replicas share their counts, the ones open elsewhere count too.
    let held = match s.limits.shared() {
        Some(shared) => {
            let here = hub.connections_of(user.id);
            match shared.hold_streams(user.id, here, hub.per_user()).await {
                Verdict::Wait(_) => return Err(too_many(hub.per_user())),
                Verdict::Pass | Verdict::Unknown => Some(Held {
                    shared: shared.clone(),
                    hub: hub.clone(),
                    user: user.id,
                }),
            }
        }
        None => None,
    };
    let feed = Feed {
        s,
        user,
        sub,
        _held: held,
        replay: from,
        last: from.unwrap_or(-1),
        buffered: Vec::new().into_iter(),
    };
    Ok(stream::unfold(feed, |mut f| async move {
        loop {
            if let Some(e) = f.buffered.next() {
                f.last = e.position;
                return Some((Arc::new(e), f));
            }
            if let Some(after) = f.replay {
                match f.s.app.events_since(&f.user, after, REPLAY_PAGE).await {
                    Ok(page) => {
                        f.replay = page.last().map(|e| e.position);
                        f.buffered = page
                            .into_iter()
                            .map(Envelope::from)
                            .collect::<Vec<_>>()
                            .into_iter();
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot replay events; closing the stream");
                        return None;
                    }
                }
            }
            let e = f.sub.events.recv().await?;
            if e.position > f.last {
                f.last = e.position;
                return Some((e, f));
            }
        }
    }))
}

/// Server-sent events: `id:` the log position, `event:` the CloudEvent type, `data:` the
/// CloudEvent. A heartbeat comment every 15 s (`--heartbeat-secs`).
#[utoipa::path(get, path = "/api/events", tag = "events", params(ResumeParams),
    responses((status = 200, description = "text/event-stream of CloudEvents"), (status = 401, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
async fn events(
    State(s): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    Query(q): Query<ResumeParams>,
) -> Result<Response, ApiError> {
    let from = resume_from(&headers, &q)?;
    let heartbeat = s.heartbeat;
    let stream = user_events(s, user, from).await?.map(|e| {
        let data = serde_json::to_string(&e.event).unwrap_or_default();
        Ok::<_, Infallible>(
            Event::default()
                .id(e.position.to_string())
                .event(e.event.ty.clone())
                .data(data),
        )
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response())
}

/// The same CloudEvents as WebSocket text frames; a ping every 15 s.
#[utoipa::path(get, path = "/api/ws", tag = "events", params(ResumeParams),
    responses((status = 101, description = "WebSocket of CloudEvents"), (status = 401, body = Problem), (status = 503, body = Problem)),
    security(("bearer" = [])))]
async fn websocket(
    State(s): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    Query(q): Query<ResumeParams>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let from = resume_from(&headers, &q)?;
    let heartbeat = s.heartbeat;
    let events = user_events(s, user, from).await?;
    Ok(upgrade.on_upgrade(move |socket| pump(socket, events, heartbeat)))
}

async fn pump(
    mut socket: ws::WebSocket,
    events: impl Stream<Item = Arc<Envelope>>,
    heartbeat: Duration,
) {
    let mut events = std::pin::pin!(events);
    let mut beat = tokio::time::interval(heartbeat);
    beat.tick().await;
    loop {
        tokio::select! {
            e = events.next() => {
                let Some(e) = e else { break };
                let text = serde_json::to_string(&e.event).unwrap_or_default();
                if socket.send(ws::Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(ws::Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = beat.tick() => {
                if socket.send(ws::Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = socket.send(ws::Message::Close(None)).await;
}
