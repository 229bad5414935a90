//! The LLM agent (optional): any OpenAI-compatible Chat Completions server, with the task
//! tools as function definitions, a tool-call loop of at most [`MAX_STEPS`] model calls, the
//! conversation's recent messages as context, and the user's timezone and current time in
//! the system prompt. A provider error or timeout is the caller's cue to fall back to the
//! rule-based agent for that message.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use taskflow_app::Message;
use taskflow_core::User;

use crate::tools::{ToolCall, Tools};

/// Model calls per message, tool rounds included.
pub const MAX_STEPS: usize = 8;

/// Where the model is and how to reach it.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// e.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
}

/// Why the model could not answer; the message is for the logs.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LlmError(pub String);

#[derive(Debug, Clone)]
pub struct Llm {
    config: LlmConfig,
    http: reqwest::Client,
}

/// Where the model's tool calls run, one round (the calls of one model answer) at a time.
pub trait Rounds: Sync {
    /// Runs `round`, after the calls `before` of earlier rounds of the same turn, and returns
    /// each call with its result, in order. An error means none of the round took effect.
    fn run(
        &self,
        round: Vec<(String, Value)>,
        before: &[ToolCall],
    ) -> impl Future<Output = Result<Vec<ToolCall>, LlmError>> + Send;
}

/// The reply of a turn the model did not finish after `calls` took effect.
pub(crate) fn unfinished(calls: &[ToolCall]) -> String {
    let done: Vec<&str> = calls.iter().map(|c| c.tool.as_str()).collect();
    format!(
        "I did {} but could not finish the answer; say “show my tasks” to check.",
        done.join(", ")
    )
}

/// The model's answer: the reply and the tool calls it made.
#[derive(Debug)]
pub struct LlmTurn {
    pub text: String,
    pub calls: Vec<ToolCall>,
}

fn system_prompt(user: &User, now: DateTime<Utc>) -> String {
    let tz = user.timezone.tz();
    let local = now.with_timezone(&tz);
    format!(
        "You are taskflow, a todo assistant. You manage the user's tasks only through the tools. \
         The user's timezone is {tz_name}; it is now {local} ({weekday}). Resolve relative dates \
         (\"tomorrow 5pm\", \"next friday\") in that timezone and pass due_at as RFC 3339 with the \
         offset, or due_date as YYYY-MM-DD for a whole day. Recurrence is an RFC 5545 RRULE without \
         DTSTART. Tasks are named by their number (task_id 3 for #3): list or search first when the \
         user names a task by words. Confirm what you did in one or two short sentences, naming task \
         numbers and due dates.",
        tz_name = tz.name(),
        local = local.format("%Y-%m-%dT%H:%M:%S%:z"),
        weekday = local.format("%A"),
    )
}

impl Llm {
    pub fn new(config: LlmConfig) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| LlmError(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { config, http })
    }

    /// One call to the model server, timed in `taskflow_llm_request_duration_seconds` and
    /// counted in `taskflow_llm_errors_total` by kind when it fails.
    async fn complete(&self, messages: &[Value]) -> Result<Value, LlmError> {
        let start = std::time::Instant::now();
        let result = self.complete_uncounted(messages).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err((kind, _)) => {
                metrics::counter!("taskflow_llm_errors_total", "kind" => *kind).increment(1);
                "error"
            }
        };
        metrics::histogram!("taskflow_llm_request_duration_seconds", "outcome" => outcome)
            .record(start.elapsed().as_secs_f64());
        result.map_err(|(_, e)| e)
    }

    /// The call; an error comes with its kind: `unreachable` (no answer, or none in time),
    /// `status` (an error status) or `malformed` (an answer that is not a completion).
    async fn complete_uncounted(
        &self,
        messages: &[Value],
    ) -> Result<Value, (&'static str, LlmError)> {
        let tools: Vec<Value> = Tools::definitions()
            .into_iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.input_schema}}))
            .collect();
        let body = json!({"model": self.config.model, "messages": messages, "tools": tools, "tool_choice": "auto"});
        let url = format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        );
        let mut req = self.http.post(&url).json(&body);
        if let Some(key) = &self.config.api_key {
            req = req.bearer_auth(key);
        }
        let res = req.send().await.map_err(|e| {
            (
                "unreachable",
                LlmError(format!("the model server did not answer: {e}")),
            )
        })?;
        let status = res.status();
        if !status.is_success() {
            return Err((
                "status",
                LlmError(format!("the model server answered {status}")),
            ));
        }
        let v: Value = res.json().await.map_err(|e| {
            let kind = if e.is_timeout() {
                "unreachable"
            } else {
                "malformed"
            };
            (
                kind,
                LlmError(format!("the model's answer is not JSON: {e}")),
            )
        })?;
        v["choices"][0]
            .get("message")
            .cloned()
            .map(|m| json!({"message": m, "finish_reason": v["choices"][0]["finish_reason"]}))
            .ok_or_else(|| {
                (
                    "malformed",
                    LlmError("the model's answer has no choices[0].message".into()),
                )
            })
    }

    /// Answers `message`, with `history` (oldest first) as context.
    pub async fn respond(
        &self,
        rounds: &impl Rounds,
        user: &User,
        history: &[Message],
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<LlmTurn, LlmError> {
        let mut messages = vec![json!({"role": "system", "content": system_prompt(user, now)})];
        for m in history.iter().rev().take(20).rev() {
            messages.push(json!({"role": m.role, "content": m.content}));
        }
        messages.push(json!({"role": "user", "content": message}));
        let mut calls: Vec<ToolCall> = Vec::new();
        // Once a tool has run, its effect stands: a later failure is reported, not retried
        // by another agent (which would do it twice).
        let partial = |calls: &Vec<ToolCall>, e: LlmError| -> Result<LlmTurn, LlmError> {
            if calls.is_empty() {
                return Err(e);
            }
            tracing::warn!(error = %e, "the model stopped after tool calls");
            Ok(LlmTurn {
                text: unfinished(calls),
                calls: calls.clone(),
            })
        };
        for _ in 0..MAX_STEPS {
            let answer = match self.complete(&messages).await {
                Ok(a) => a,
                Err(e) => return partial(&calls, e),
            };
            let msg = &answer["message"];
            let requested = msg["tool_calls"].as_array().cloned().unwrap_or_default();
            if requested.is_empty() {
                let text = msg["content"]
                    .as_str()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                if text.is_empty() {
                    return partial(
                        &calls,
                        LlmError("the model gave neither text nor tool calls".into()),
                    );
                }
                return Ok(LlmTurn { text, calls });
            }
            messages.push(
                json!({"role": "assistant", "content": msg["content"], "tool_calls": requested}),
            );
            let round = requested
                .iter()
                .map(|call| {
                    let name = call["function"]["name"].as_str().unwrap_or_default();
                    let raw = call["function"]["arguments"].as_str().unwrap_or("{}");
                    let args: Value = serde_json::from_str(raw).unwrap_or_else(|_| json!({}));
                    (name.to_owned(), args)
                })
                .collect();
            let done = match rounds.run(round, &calls).await {
                Ok(done) => done,
                Err(e) => return partial(&calls, e),
            };
            for (call, done) in requested.iter().zip(&done) {
                messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": done.result.to_string()}));
            }
            calls.extend(done);
        }
        partial(
            &calls,
            LlmError(format!("no answer within {MAX_STEPS} model calls")),
        )
    }
}
