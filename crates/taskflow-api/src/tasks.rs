//! `/api/tasks`: create, read, list with filters, sorting and cursors, update with
//! `If-Match`, complete, reopen, delete. Plus the compatibility routes
//! `/api/{user_id}/tasks…`, where task ids are per-user numbers.

use axum::{
    Router,
    extract::{FromRequestParts, Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use taskflow_app::{DraftInput, ListInput, PatchInput, ReminderInput, TaskRef, input::MAX_PAGE};
use taskflow_core::{Task, TaskId, User, ValidationErrors};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    AppState,
    extract::{CurrentUser, IfMatch, Json},
    problem::{ApiError, Problem},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks, create_task))
        .routes(routes!(get_task, patch_task, delete_task))
        .routes(routes!(complete_task))
        .routes(routes!(reopen_task))
}

/// The compatibility routes: the same handlers, addressed by per-user task number; the
/// `{user_id}` must be the token's user (else 403).
pub fn compat_router() -> Router<AppState> {
    Router::new()
        .route("/api/{user_id}/tasks", get(list_tasks).post(create_task))
        .route(
            "/api/{user_id}/tasks/{number}",
            get(get_task)
                .patch(patch_task)
                .put(patch_task)
                .delete(delete_task),
        )
        .route(
            "/api/{user_id}/tasks/{number}/complete",
            post(complete_task).patch(complete_task),
        )
        .route(
            "/api/{user_id}/tasks/{number}/reopen",
            post(reopen_task).patch(reopen_task),
        )
}

/// A reminder as asked for: `{before_minutes}` or `{at}`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ReminderBody {
    /// Minutes before the due time (needs a due date or time).
    #[serde(default, deserialize_with = "whole_number")]
    before_minutes: Option<i64>,
    /// An absolute RFC 3339 instant.
    at: Option<String>,
}

/// `POST /api/tasks`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct CreateTask {
    /// 1–500 characters.
    title: Option<String>,
    /// Up to 10,000 characters.
    description: Option<String>,
    /// `low|medium|high|urgent`, default `medium`.
    priority: Option<String>,
    /// Up to 20 tags of letters, digits, `-`, `_`.
    tags: Option<Vec<String>>,
    /// RFC 3339 with offset; not together with `due_date`.
    due_at: Option<String>,
    /// `YYYY-MM-DD`: an all-day task.
    due_date: Option<String>,
    /// An RFC 5545 RRULE without DTSTART, e.g. `FREQ=WEEKLY;BYDAY=MO`.
    recurrence: Option<String>,
    /// `due` (default) or `completion`.
    recurrence_anchor: Option<String>,
    /// Up to 10.
    reminders: Option<Vec<ReminderBody>>,
}

/// A whole number, also when written `60.0` (JSON has one number type, and JSON Schema
/// counts `60.0` as an integer); `60.5` is refused.
fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        _ => Err(serde::de::Error::custom(format!(
            "before_minutes must be a whole number, got {n}"
        ))),
    }
}

fn double<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /api/tasks/{id}`: absent fields stay, `null` clears.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
pub struct PatchTask {
    #[serde(default, deserialize_with = "double")]
    #[schema(value_type = Option<String>)]
    title: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    #[schema(value_type = Option<String>)]
    priority: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    #[schema(value_type = Option<Vec<String>>)]
    tags: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double")]
    #[schema(value_type = Option<String>)]
    due_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    #[schema(value_type = Option<String>)]
    due_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    #[schema(value_type = Option<String>)]
    recurrence: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    #[schema(value_type = Option<String>)]
    recurrence_anchor: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    #[schema(value_type = Option<Vec<ReminderBody>>)]
    reminders: Option<Option<Vec<ReminderBody>>>,
    /// `pending` or `completed`: the same as reopen or complete.
    #[serde(default, deserialize_with = "double")]
    #[schema(value_type = Option<String>)]
    status: Option<Option<String>>,
}

/// A task as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct TaskDoc {
    id: Uuid,
    number: i64,
    title: String,
    description: String,
    /// `pending|completed`
    status: String,
    /// `low|medium|high|urgent`
    priority: String,
    tags: Vec<String>,
    due_at: Option<DateTime<Utc>>,
    due_date: Option<NaiveDate>,
    recurrence: Option<String>,
    /// `due|completion`
    recurrence_anchor: String,
    series_id: Option<Uuid>,
    /// The place of this task in its series, from 1 (`COUNT` counts it).
    occurrence: i64,
    reminders: Vec<ReminderDoc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    version: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ReminderDoc {
    id: Uuid,
    fire_at: DateTime<Utc>,
    before_minutes: Option<u32>,
    /// `pending|fired|cancelled|skipped`
    status: String,
}

/// A page of tasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    #[schema(value_type = Vec<TaskDoc>)]
    items: Vec<Task>,
    next_cursor: Option<String>,
}

impl From<ReminderBody> for ReminderInput {
    fn from(r: ReminderBody) -> Self {
        ReminderInput {
            before_minutes: r.before_minutes,
            at: r.at,
        }
    }
}

fn reminder_inputs(raw: Vec<ReminderBody>) -> Vec<ReminderInput> {
    raw.into_iter().map(ReminderInput::from).collect()
}

impl From<CreateTask> for DraftInput {
    fn from(b: CreateTask) -> Self {
        DraftInput {
            title: b.title,
            description: b.description,
            priority: b.priority,
            tags: b.tags,
            due_at: b.due_at,
            due_date: b.due_date,
            recurrence: b.recurrence,
            recurrence_anchor: b.recurrence_anchor,
            reminders: b.reminders.map(reminder_inputs),
        }
    }
}

impl From<PatchTask> for PatchInput {
    fn from(b: PatchTask) -> Self {
        PatchInput {
            title: b.title,
            description: b.description,
            priority: b.priority,
            tags: b.tags,
            due_at: b.due_at,
            due_date: b.due_date,
            recurrence: b.recurrence,
            recurrence_anchor: b.recurrence_anchor,
            reminders: b.reminders.map(|r| r.map(reminder_inputs)),
            status: b.status,
        }
    }
}

/// The query string of `GET /api/tasks`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParams {
    /// `all` (default), `pending` or `completed`.
    status: Option<String>,
    /// One priority or a comma list.
    priority: Option<String>,
    /// Repeatable; every tag must match.
    tag: Option<Vec<String>>,
    /// Full-text words over title and description, all required.
    q: Option<String>,
    /// Inclusive; an RFC 3339 instant or a date (that whole day in your timezone).
    due_before: Option<String>,
    /// Inclusive; an RFC 3339 instant or a date (that whole day in your timezone).
    due_after: Option<String>,
    /// Inclusive: tasks completed at or after this RFC 3339 instant or date (that whole day
    /// in your timezone).
    completed_after: Option<String>,
    /// Inclusive: tasks completed at or before this RFC 3339 instant or date (that whole day
    /// in your timezone).
    completed_before: Option<String>,
    /// `true`: pending tasks whose due time has passed.
    overdue: Option<bool>,
    /// `due` (default), `priority`, `created`, `title`.
    sort: Option<String>,
    /// `asc` (default) or `desc`.
    order: Option<String>,
    /// 1–200, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Reads the list query string into the app's list input; unknown parameters are ignored,
/// `tag` and `priority` may repeat.
pub(crate) fn list_input(raw: Option<&str>) -> Result<ListInput, ValidationErrors> {
    let mut input = ListInput::default();
    let mut e = ValidationErrors::default();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let v = v.trim().to_owned();
        match &*k {
            "status" => input.status = Some(v),
            "priority" => input.priorities.push(v),
            "tag" | "tags" => input.tags.push(v),
            "q" => input.search = Some(v),
            "due_after" => input.due_after = Some(v),
            "due_before" => input.due_before = Some(v),
            "completed_after" => input.completed_after = Some(v),
            "completed_before" => input.completed_before = Some(v),
            "overdue" => match v.as_str() {
                "true" | "1" => input.overdue = Some(true),
                "false" | "0" => input.overdue = Some(false),
                _ => e.push("overdue", "must be true or false"),
            },
            "sort" => input.sort = Some(v),
            "order" => input.order = Some(v),
            "limit" => match v.parse::<i64>() {
                Ok(n) => input.limit = Some(n),
                Err(_) => e.push(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_PAGE}"),
                ),
            },
            "cursor" => input.cursor = Some(v),
            _ => {}
        }
    }
    e.into_result(|| input)
}

fn with_etag(status: StatusCode, task: Task) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", task.version)) {
        headers.insert(header::ETAG, v);
    }
    (status, headers, axum::Json(task)).into_response()
}

/// The signed-in user, checked against the `{user_id}` of a compatibility route (403 when it
/// is someone else).
#[derive(Debug)]
pub struct Owner(pub(crate) User);

impl FromRequestParts<AppState> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        owner(parts, state).await.map(|(user, _)| Owner(user))
    }
}

/// The signed-in user, checked against a `{user_id}` in the path, and the path's parameters.
async fn owner(
    parts: &mut Parts,
    state: &AppState,
) -> Result<(User, HashMap<String, String>), ApiError> {
    let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
    let params = path_params(parts, state).await?;
    if let Some(raw) = params.get("user_id") {
        match raw.parse::<Uuid>() {
            Ok(id) if id == user.id.0 => {}
            _ => {
                return Err(ApiError::Forbidden(
                    "the user id in the path is not the signed-in user",
                ));
            }
        }
    }
    Ok((user, params))
}

/// The task a path names: `{id}` (a task id) on `/api/tasks/…`, `{number}` (the per-user
/// number) on the compatibility routes. Anything else is 404, as a task that does not exist.
#[derive(Debug)]
pub struct Target(User, TaskRef);

impl FromRequestParts<AppState> for Target {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (user, params) = owner(parts, state).await?;
        let missing = || ApiError::NotFound("no such task");
        let r = match (params.get("id"), params.get("number")) {
            (Some(id), _) => TaskRef::Id(TaskId(id.parse().map_err(|_| missing())?)),
            (None, Some(n)) => TaskRef::Number(n.parse().map_err(|_| missing())?),
            (None, None) => return Err(missing()),
        };
        Ok(Target(user, r))
    }
}

async fn path_params(
    parts: &mut Parts,
    state: &AppState,
) -> Result<HashMap<String, String>, ApiError> {
    Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map(|Path(p)| p)
        .map_err(|_| ApiError::NotFound("no such task"))
}

/// List your tasks, filtered, sorted and paginated.
#[utoipa::path(get, path = "/api/tasks", tag = "tasks", params(ListParams),
    responses((status = 200, body = TaskPage), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn list_tasks(
    State(s): State<AppState>,
    Owner(user): Owner,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = s
        .app
        .task_query(user.timezone, list_input(raw.as_deref())?)?;
    let page = s.app.list_tasks(&user, &query).await?;
    Ok(axum::Json(TaskPage {
        items: page.items,
        next_cursor: page.next_cursor,
    })
    .into_response())
}

/// Create a task.
#[utoipa::path(post, path = "/api/tasks", tag = "tasks", request_body = CreateTask,
    responses((status = 201, body = TaskDoc), (status = 400, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_task(
    State(s): State<AppState>,
    Owner(user): Owner,
    Json(body): Json<CreateTask>,
) -> Result<Response, ApiError> {
    let draft = DraftInput::from(body).parse()?;
    let task = s.app.create_task(&user, draft).await?;
    Ok(with_etag(StatusCode::CREATED, task))
}

/// One task, with `ETag: "<version>"`.
#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks", params(("id" = Uuid, Path)),
    responses((status = 200, body = TaskDoc), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_task(
    State(s): State<AppState>,
    Target(user, r): Target,
) -> Result<Response, ApiError> {
    Ok(with_etag(StatusCode::OK, s.app.task(&user, r).await?))
}

/// Change a task; `null` clears a field; `If-Match: "<version>"` guards against lost updates.
#[utoipa::path(patch, path = "/api/tasks/{id}", tag = "tasks", params(("id" = Uuid, Path)), request_body = PatchTask,
    responses((status = 200, body = TaskDoc), (status = 404, body = Problem), (status = 412, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn patch_task(
    State(s): State<AppState>,
    Target(user, r): Target,
    IfMatch(version): IfMatch,
    Json(body): Json<PatchTask>,
) -> Result<Response, ApiError> {
    let patch = PatchInput::from(body).parse()?;
    Ok(with_etag(
        StatusCode::OK,
        s.app.update_task(&user, r, patch, version).await?,
    ))
}

/// Delete a task.
#[utoipa::path(delete, path = "/api/tasks/{id}", tag = "tasks", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 412, body = Problem)), security(("bearer" = [])))]
async fn delete_task(
    State(s): State<AppState>,
    Target(user, r): Target,
    IfMatch(version): IfMatch,
) -> Result<StatusCode, ApiError> {
    s.app.delete_task(&user, r, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Complete a task (completing a completed task changes nothing).
#[utoipa::path(post, path = "/api/tasks/{id}/complete", tag = "tasks", params(("id" = Uuid, Path)),
    responses((status = 200, body = TaskDoc), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn complete_task(
    State(s): State<AppState>,
    Target(user, r): Target,
) -> Result<Response, ApiError> {
    Ok(with_etag(
        StatusCode::OK,
        s.app.complete_task(&user, r).await?,
    ))
}

/// Reopen a completed task.
#[utoipa::path(post, path = "/api/tasks/{id}/reopen", tag = "tasks", params(("id" = Uuid, Path)),
    responses((status = 200, body = TaskDoc), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn reopen_task(
    State(s): State<AppState>,
    Target(user, r): Target,
) -> Result<Response, ApiError> {
    Ok(with_etag(
        StatusCode::OK,
        s.app.reopen_task(&user, r).await?,
    ))
}
