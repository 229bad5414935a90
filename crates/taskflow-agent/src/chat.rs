//! Conversations: each message is answered by the agent with the conversation's memory
//! read from the database, and the exchange (both messages, the tool calls, the new memory)
//! written back. The tasks a message changes and the conversation's record of it are one
//! outcome: the rule-based agent's whole turn is one unit of work; a model's turn commits
//! each round of tool calls together with the record of the calls so far (a unit may not stay
//! open while the model thinks, as on SQLite it holds the one writer). The server keeps
//! nothing between requests, so a conversation continues after a restart.
//!
//! What lives above the model is the same on both paths: the conversation remembers how to
//! take back its last change, and "undo that" is answered from that memory without asking the
//! model (which could not know what its tools changed).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use taskflow_app::{App, AppError, Conversation, Message, TaskRef};
use taskflow_core::User;
use uuid::Uuid;

use crate::{
    llm::{self, Llm, LlmError, Rounds},
    rules::{self, State, Undo},
    tools::{self, ToolCall, Tools},
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

/// One message and its answer as they are recorded: the ids are fixed when the message
/// arrives, so recording the answer again (round by round) updates one record.
#[derive(Debug)]
struct Exchange {
    conversation: Conversation,
    message: String,
    user_message_id: String,
    answer_id: String,
    now: DateTime<Utc>,
}

impl Exchange {
    fn new(conversation: Conversation, message: &str, now: DateTime<Utc>) -> Self {
        Self {
            conversation,
            message: message.chars().take(MAX_MESSAGE_CHARS * 5).collect(),
            user_message_id: Uuid::now_v7().to_string(),
            answer_id: Uuid::now_v7().to_string(),
            now,
        }
    }

    /// Writes the conversation with `state` (unchanged when `None`) and the answer so far.
    async fn save(
        &self,
        app: &App,
        state: Option<&State>,
        answer: &str,
        calls: &[ToolCall],
    ) -> Result<(), AppError> {
        let mut conversation = self.conversation.clone();
        if let Some(state) = state {
            conversation.state = serde_json::to_value(state).unwrap_or_default();
        }
        conversation.updated_at = self.now;
        let messages = [
            Message {
                id: self.user_message_id.clone(),
                role: "user".into(),
                content: self.message.clone(),
                tool_calls: serde_json::json!([]),
                created_at: self.now,
            },
            Message {
                id: self.answer_id.clone(),
                role: "assistant".into(),
                content: answer.to_owned(),
                tool_calls: serde_json::to_value(calls).unwrap_or_default(),
                created_at: self.now,
            },
        ];
        app.record_exchange(&conversation, &messages).await
    }
}

/// A model's rounds of tool calls, each in a unit of work with the record of the turn so far.
struct ModelRounds<'a> {
    tools: &'a Tools,
    user: &'a User,
    exchange: &'a Exchange,
    /// What takes back each change of the turn that was committed, in order.
    undos: std::sync::Mutex<Vec<Undo>>,
}

impl Rounds for ModelRounds<'_> {
    async fn run(
        &self,
        round: Vec<(String, Value)>,
        before: &[ToolCall],
    ) -> Result<Vec<ToolCall>, LlmError> {
        let failed = |e: AppError| LlmError(format!("the tool calls were not saved: {e}"));
        let unit = self.tools.app().begin().await.map_err(failed)?;
        // A change is taken back from what the task was before it.
        let mut befores = Vec::with_capacity(round.len());
        for (tool, args) in &round {
            let number = matches!(tool.as_str(), "update_task" | "set_reminder")
                .then(|| args.as_object().and_then(|a| tools::task_number(a).ok()))
                .flatten();
            befores.push(match number {
                Some(n) => unit
                    .app()
                    .task(self.user, TaskRef::Number(n))
                    .await
                    .ok()
                    .map(|t| t.to_json()),
                None => None,
            });
        }
        let done = Tools::new(unit.app().clone())
            .run_all(self.user, round)
            .await;
        let so_far: Vec<ToolCall> = before.iter().chain(&done).cloned().collect();
        self.exchange
            .save(unit.app(), None, &llm::unfinished(&so_far), &so_far)
            .await
            .map_err(failed)?;
        unit.commit().await.map_err(failed)?;
        let undos = done
            .iter()
            .zip(&befores)
            .filter_map(|(c, before)| Undo::of(&c.tool, &c.args, &c.result, before.as_ref()));
        self.undos
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(undos);
        Ok(done)
    }
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
        let text = message.trim();
        let refusal = if text.is_empty() {
            Some("Your message was empty. Tell me what to do, like “add buy milk tomorrow”, or say “help”.".to_owned())
        } else if text.chars().count() > MAX_MESSAGE_CHARS {
            Some(format!(
                "That message is {} characters long; I read messages of up to {MAX_MESSAGE_CHARS}. Nothing was changed — please say it in fewer words.",
                text.chars().count()
            ))
        } else {
            None
        };
        if refusal.is_none()
            && !rules::is_undo(text)
            && let Some(llm) = &self.llm
        {
            let exchange = Exchange::new(
                open(app, user, conversation, message, now).await?,
                message,
                now,
            );
            let history = app.history_of(user, &exchange.conversation.id).await?;
            let rounds = ModelRounds {
                tools: &self.tools,
                user,
                exchange: &exchange,
                undos: std::sync::Mutex::default(),
            };
            match llm.respond(&rounds, user, &history, text, now).await {
                Ok(turn) => {
                    let undos = rounds
                        .undos
                        .into_inner()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let mut state: State =
                        serde_json::from_value(exchange.conversation.state.clone())
                            .unwrap_or_default();
                    if let Some(undo) = Undo::of_turn(undos) {
                        state.remember(undo);
                    }
                    exchange
                        .save(app, Some(&state), &turn.text, &turn.calls)
                        .await?;
                    return Ok(ChatReply {
                        conversation_id: exchange.conversation.id,
                        response: turn.text,
                        tool_calls: turn.calls,
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the model is unavailable; this message is answered by the rule-based agent");
                }
            }
        }
        let unit = app.begin().await?;
        let exchange = Exchange::new(
            open(unit.app(), user, conversation, message, now).await?,
            message,
            now,
        );
        let state: State =
            serde_json::from_value(exchange.conversation.state.clone()).unwrap_or_default();
        let turn = match refusal {
            Some(text) => rules::Turn {
                text,
                calls: Vec::new(),
                state,
            },
            None => {
                let local = now.with_timezone(&user.timezone.tz()).naive_local();
                let tools = Tools::new(unit.app().clone());
                rules::respond(&tools, user, state, text, local).await
            }
        };
        exchange
            .save(unit.app(), Some(&turn.state), &turn.text, &turn.calls)
            .await?;
        unit.commit().await?;
        Ok(ChatReply {
            conversation_id: exchange.conversation.id,
            response: turn.text,
            tool_calls: turn.calls,
        })
    }

    pub async fn conversations(&self, user: &User) -> Result<Vec<Conversation>, AppError> {
        self.tools.app().conversations(user).await
    }

    pub async fn messages(
        &self,
        user: &User,
        conversation: &str,
    ) -> Result<Vec<Message>, AppError> {
        self.tools.app().messages(user, conversation).await
    }
}

/// The conversation `id` of `user`, or a new one titled after `message`.
async fn open(
    app: &App,
    user: &User,
    id: Option<&str>,
    message: &str,
    now: DateTime<Utc>,
) -> Result<Conversation, AppError> {
    match id {
        Some(id) => app.conversation(user, id).await,
        None => Ok(Conversation {
            id: Uuid::now_v7().to_string(),
            user_id: user.id.to_string(),
            title: title_of(message),
            state: Value::Null,
            created_at: now,
            updated_at: now,
        }),
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
