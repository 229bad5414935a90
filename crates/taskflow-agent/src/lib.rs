//! The assistant: the task tools (one thin layer over the use cases, shared by the chat
//! agent and, later, the LLM agent and MCP), the rule-based agent that turns what
//! `taskflow-nlu` understood into tool calls and a reply, and conversations that keep the
//! agent's memory in the database, so the server holds no state between requests.

mod chat;
mod llm;
mod mcp;
mod reply;
mod rules;
mod tools;

pub use chat::{Chat, ChatReply, MAX_MESSAGE_CHARS};
pub use llm::{Llm, LlmConfig, LlmError, MAX_STEPS};
pub use mcp::McpServer;
pub use tools::{ToolCall, ToolDef, ToolError, Tools};
