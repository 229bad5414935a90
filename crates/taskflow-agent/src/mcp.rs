//! The MCP server (rmcp, the official SDK): the task tools with their JSON Schemas and
//! descriptions, over stdio (`taskflow mcp --user EMAIL`) and streamable HTTP (`/mcp`, the
//! bearer token's user). Results carry a text block and `structuredContent`.

use rmcp::{
    ErrorData as McpError, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
        Tool, ToolAnnotations,
    },
    service::{RequestContext, RoleServer},
};
use serde_json::Value;
use taskflow_core::User;

use crate::tools::{ToolError, Tools};

const INSTRUCTIONS: &str = "taskflow keeps the user's tasks. Tasks are named by their number \
    (task_id 3 for #3); list or search first when the user names a task by words. Dates are in \
    the user's timezone: pass due_at as RFC 3339 with an offset, or due_date as YYYY-MM-DD.";

/// Serves the tools for one user (stdio), or for the user the HTTP request authenticated.
#[derive(Debug, Clone)]
pub struct McpServer {
    tools: Tools,
    user: Option<User>,
}

impl McpServer {
    /// A server acting for `user` (stdio sessions).
    pub fn for_user(tools: Tools, user: User) -> Self {
        Self {
            tools,
            user: Some(user),
        }
    }

    /// A server acting for the user each HTTP request carries (in its extensions).
    pub fn per_request(tools: Tools) -> Self {
        Self { tools, user: None }
    }

    fn user(&self, ctx: &RequestContext<RoleServer>) -> Result<User, McpError> {
        if let Some(u) = &self.user {
            return Ok(u.clone());
        }
        ctx.extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<User>())
            .cloned()
            .ok_or_else(|| {
                McpError::invalid_request("sign in first: send Authorization: Bearer <token>", None)
            })
    }
}

/// What each tool does to the user's tasks, for clients that ask before they call.
fn annotations(tool: &str) -> ToolAnnotations {
    let (read_only, destructive, idempotent) = match tool {
        "list_tasks" | "search_tasks" => (true, false, true),
        // Completing a done task or reopening an open one changes nothing.
        "complete_task" | "reopen_task" => (false, false, true),
        // Overwrites fields / removes the task: the same call again has no further effect.
        "update_task" | "delete_task" => (false, true, true),
        // Each call adds a task or a reminder.
        _ => (false, false, false),
    };
    ToolAnnotations::new()
        .read_only(read_only)
        .destructive(destructive)
        .idempotent(idempotent)
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("taskflow", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.user(&ctx)?;
        let tools = Tools::definitions()
            .into_iter()
            .map(|d| {
                let schema: JsonObject = d.input_schema.as_object().cloned().unwrap_or_default();
                Tool::new(d.name, d.description, schema).annotate(annotations(d.name))
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let user = self.user(&ctx)?;
        let args = Value::Object(request.arguments.unwrap_or_default());
        match self.tools.call(&user, &request.name, &args).await {
            Ok(result) => {
                let text = crate::reply::summary(&request.name, &result, user.timezone.tz());
                let mut answer = CallToolResult::structured(result);
                answer.content = vec![ContentBlock::text(text)];
                Ok(answer.into())
            }
            Err(ToolError::UnknownTool(name)) => Err(McpError::invalid_params(
                format!("unknown tool `{name}`"),
                None,
            )),
            Err(e) => Ok(CallToolResult::error(vec![ContentBlock::text(e.to_string())]).into()),
        }
    }
}
