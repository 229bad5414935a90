//! The assistant over HTTP: `POST /api/chat` (and `/api/{user_id}/chat` for existing front
//! ends), the user's conversations and their messages.

use axum::{
    Router,
    extract::{Path, State},
    response::{IntoResponse, Response},
    routing::post,
};
use serde::{Deserialize, Serialize};
use taskflow_agent::{Chat, ChatReply, Tools};
use taskflow_app::AppError;
use taskflow_app::{Conversation, Message};
use taskflow_core::ValidationErrors;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState, Problem,
    extract::{CurrentUser, Json},
    problem::ApiError,
    tasks::Owner,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(chat))
        .routes(routes!(conversations))
        .routes(routes!(messages))
        .routes(routes!(parse))
}

/// The compatibility route, answering as `POST /api/chat`.
pub fn compat_router() -> Router<AppState> {
    Router::new().route("/api/{user_id}/chat", post(compat_chat))
}

/// A message to the assistant.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// What the user says.
    message: String,
    /// Continue this conversation; without it a new one starts.
    conversation_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct ToolCallDoc {
    tool: String,
    args: serde_json::Value,
    result: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct ChatReplyDoc {
    conversation_id: String,
    response: String,
    tool_calls: Vec<ToolCallDoc>,
}

fn chat_of(s: &AppState) -> Chat {
    Chat::new(Tools::new(s.app.clone()), s.llm.clone())
}

async fn answer(
    s: &AppState,
    user: &taskflow_core::User,
    body: ChatRequest,
) -> Result<ChatReply, ApiError> {
    s.limits.check_chat(user.id).await?;
    chat_of(s)
        .send(user, body.conversation_id.as_deref(), &body.message)
        .await
        .map_err(|e| match e {
            AppError::NotFound => ApiError::NotFound("no such conversation"),
            e => e.into(),
        })
}

/// Talk to the assistant.
#[utoipa::path(post, path = "/api/chat", tag = "chat", request_body = ChatRequest,
    responses((status = 200, body = ChatReplyDoc), (status = 404, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)),
    security(("bearer" = [])))]
async fn chat(
    State(s): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(body): Json<ChatRequest>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(answer(&s, &user, body).await?).into_response())
}

async fn compat_chat(
    State(s): State<AppState>,
    Owner(user): Owner,
    Json(body): Json<ChatRequest>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(answer(&s, &user, body).await?).into_response())
}

/// Text to read as the assistant reads it.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParseRequest {
    /// What the user typed, up to 2,000 characters.
    text: String,
}

/// How the assistant understood the text: `intent` and, as said, `task`, `target`, `changes`
/// or `filter` (the shape of `taskflow nlu parse`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct ParsedDoc {
    #[schema(example = "add_task")]
    intent: String,
    task: Option<serde_json::Value>,
    target: Option<serde_json::Value>,
    changes: Option<serde_json::Value>,
    filter: Option<serde_json::Value>,
}

/// Read text as the assistant reads it, at the user's local time and timezone; nothing is
/// written. Quick-add fields use it to show what a sentence will become.
#[utoipa::path(post, path = "/api/parse", tag = "chat", request_body = ParseRequest,
    responses((status = 200, body = ParsedDoc), (status = 422, body = Problem), (status = 429, body = Problem)),
    security(("bearer" = [])))]
async fn parse(
    State(s): State<AppState>,
    CurrentUser(user): CurrentUser,
    Json(body): Json<ParseRequest>,
) -> Result<Response, ApiError> {
    let chars = body.text.chars().count();
    if chars > taskflow_nlu::MAX_LEN {
        return Err(ApiError::Invalid(ValidationErrors::one(
            "text",
            format!(
                "is {chars} characters long; at most {} are read",
                taskflow_nlu::MAX_LEN
            ),
        )));
    }
    let tz = user.timezone.tz();
    let now = s.app.clock().now().with_timezone(&tz).naive_local();
    let parsed = taskflow_nlu::parse(&body.text, now, tz);
    Ok(axum::Json(parsed.to_json()).into_response())
}

#[derive(Serialize, ToSchema)]
struct ConversationPage {
    #[schema(value_type = Vec<Object>)]
    items: Vec<Conversation>,
}

#[derive(Serialize, ToSchema)]
struct MessagePage {
    #[schema(value_type = Vec<Object>)]
    items: Vec<Message>,
}

/// The signed-in user's conversations, most recent first.
#[utoipa::path(get, path = "/api/conversations", tag = "chat",
    responses((status = 200, body = ConversationPage)), security(("bearer" = [])))]
async fn conversations(
    State(s): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Response, ApiError> {
    let items = chat_of(&s).conversations(&user).await?;
    Ok(axum::Json(ConversationPage { items }).into_response())
}

/// A conversation's messages, oldest first.
#[utoipa::path(get, path = "/api/conversations/{id}/messages", tag = "chat", params(("id" = String, Path)),
    responses((status = 200, body = MessagePage), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn messages(
    State(s): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let items = chat_of(&s)
        .messages(&user, &id)
        .await
        .map_err(|e| match e {
            AppError::NotFound => ApiError::NotFound("no such conversation"),
            e => e.into(),
        })?;
    Ok(axum::Json(MessagePage { items }).into_response())
}
