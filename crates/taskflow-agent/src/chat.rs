//! Conversations: each message is answered by the agent with the conversation's memory
//! read from the database, and the exchange (both messages, the tool calls, the new memory)
//! written back in one transaction. The server keeps nothing between requests, so a
//! conversation continues after a restart.

use serde::Serialize;
use taskflow_app::AppError;
use taskflow_core::User;
use taskflow_store::{Conversation, Message};
use uuid::Uuid;

use crate::{
    llm::Llm,
    rules::{self, State},
    tools::{ToolCall, Tools},
};

/// Longer messages are answered with a request to shorten them.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// The answer to `POST /api/chat`.
#[derive(Debug, Clone, Serialize)]
pub struct ChatReply {
    pub conversation_id: String,
    pub response: String,
    pub tool_calls: Vec<ToolCall>,
}

/// The chat use case.
#[derive(Debug, Clone)]
pub struct Chat {
    tools: Tools,
    llm: Option<Llm>,
}

impl Chat {
    /// The chat use case; with `llm`, messages go to the model first.
    pub fn new(tools: Tools, llm: Option<Llm>) -> Self {
        Self { tools, llm }
    }

    /// Answers `message` in `conversation` (a new one when `None`).
    #[tracing::instrument(skip_all, fields(user_id = %user.id), err(level = "debug"))]
    pub async fn send(
        &self,
        user: &User,
        conversation: Option<&str>,
        message: &str,
    ) -> Result<ChatReply, AppError> {
        let app = self.tools.app();
        let now = app.clock().now();
        let mut convo = match conversation {
            Some(id) => app
                .store()
                .conversation(user.id, id)
                .await?
                .ok_or(AppError::NotFound)?,
            None => Conversation {
                id: Uuid::now_v7().to_string(),
                user_id: user.id.to_string(),
                title: title_of(message),
                state: serde_json::Value::Null,
                created_at: now,
                updated_at: now,
            },
        };
        let state: State = serde_json::from_value(convo.state.clone()).unwrap_or_default();
        let text = message.trim();
        let turn = if text.is_empty() {
            rules::Turn {
                text: "Your message was empty. Tell me what to do, like “add buy milk tomorrow”, or say “help”.".into(),
                calls: Vec::new(),
                state,
            }
        } else if text.chars().count() > MAX_MESSAGE_CHARS {
            rules::Turn {
                text: format!(
                    "That message is {} characters long; I read messages of up to {MAX_MESSAGE_CHARS}. Nothing was changed — please say it in fewer words.",
                    text.chars().count()
                ),
                calls: Vec::new(),
                state,
            }
        } else {
            let by_model = match &self.llm {
                Some(llm) => {
                    let history = app.store().messages(user.id, &convo.id, 1000).await?;
                    match llm.respond(&self.tools, user, &history, text, now).await {
                        Ok(t) => Some(rules::Turn {
                            text: t.text,
                            calls: t.calls,
                            state: state.clone(),
                        }),
                        Err(e) => {
                            tracing::warn!(error = %e, "the model is unavailable; this message is answered by the rule-based agent");
                            None
                        }
                    }
                }
                None => None,
            };
            match by_model {
                Some(turn) => turn,
                None => {
                    let local = now.with_timezone(&user.timezone.tz()).naive_local();
                    rules::respond(&self.tools, user, state, text, local).await
                }
            }
        };
        convo.state = serde_json::to_value(&turn.state).unwrap_or_default();
        convo.updated_at = now;
        let stored: String = message.chars().take(MAX_MESSAGE_CHARS * 5).collect();
        let messages = [
            Message {
                id: Uuid::now_v7().to_string(),
                role: "user".into(),
                content: stored,
                tool_calls: serde_json::json!([]),
                created_at: now,
            },
            Message {
                id: Uuid::now_v7().to_string(),
                role: "assistant".into(),
                content: turn.text.clone(),
                tool_calls: serde_json::to_value(&turn.calls).unwrap_or_default(),
                created_at: now,
            },
        ];
        app.store().save_exchange(&convo, &messages).await?;
        Ok(ChatReply {
            conversation_id: convo.id,
            response: turn.text,
            tool_calls: turn.calls,
        })
    }

    pub async fn conversations(&self, user: &User) -> Result<Vec<Conversation>, AppError> {
        Ok(self.tools.app().store().conversations(user.id, 100).await?)
    }

    pub async fn messages(
        &self,
        user: &User,
        conversation: &str,
    ) -> Result<Vec<Message>, AppError> {
        let store = self.tools.app().store();
        store
            .conversation(user.id, conversation)
            .await?
            .ok_or(AppError::NotFound)?;
        Ok(store.messages(user.id, conversation, 1000).await?)
    }
}

fn title_of(message: &str) -> String {
    let t: String = message
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(60)
        .collect();
    if t.is_empty() {
        "New conversation".into()
    } else {
        t
    }
}
