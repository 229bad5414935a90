//! MCP with rmcp's own client against the real binary: stdio (`taskflow mcp --user`) and
//! streamable HTTP (`/mcp` with the bearer token). List the tools, call each, see the effect
//! over REST.

use rmcp::{
    ServiceExt as _,
    model::{CallToolRequestParams, CallToolResult},
    service::{RoleClient, RunningService},
    transport::{
        ConfigureCommandExt as _, StreamableHttpClientTransport, TokioChildProcess,
        streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};

use crate::{App, BIN};

async fn call(client: &RunningService<RoleClient, ()>, tool: &str, args: Value) -> CallToolResult {
    let params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    client.call_tool(params).await.unwrap()
}

fn structured(r: &CallToolResult) -> Value {
    assert_ne!(r.is_error, Some(true), "tool failed: {r:?}");
    let text = r
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .expect("a text block");
    let v = r.structured_content.clone().expect("structuredContent");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        v,
        "the text block says the same"
    );
    v
}

/// Every tool, called once, with its effect checked over REST.
async fn exercise(app: &App, client: &RunningService<RoleClient, ()>) {
    let tools = client.list_tools(None).await.unwrap();
    let names: Vec<&str> = tools.tools.iter().map(|t| t.name.as_ref()).collect();
    for t in [
        "add_task",
        "list_tasks",
        "complete_task",
        "reopen_task",
        "delete_task",
        "update_task",
        "set_reminder",
        "search_tasks",
    ] {
        assert!(names.contains(&t), "{t} in {names:?}");
    }
    let add = tools.tools.iter().find(|t| t.name == "add_task").unwrap();
    assert!(add.description.as_deref().unwrap_or_default().len() > 20);
    assert_eq!(add.input_schema["required"], json!(["title"]));

    let created = structured(
        &call(
            client,
            "add_task",
            json!({"title": "Renew passport", "due_date": "2030-03-01", "tags": ["admin"]}),
        )
        .await,
    );
    let n = created["number"].as_i64().unwrap();
    let rest = app.get(&format!("/api/{}/tasks/{n}", app.user_id())).await;
    assert_eq!(rest.body["title"], "Renew passport");

    let listed = structured(&call(client, "list_tasks", json!({"status": "pending"})).await);
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["number"] == n)
    );
    let found = structured(&call(client, "search_tasks", json!({"query": "passport"})).await);
    assert_eq!(found["items"][0]["number"], n);
    let updated = structured(
        &call(
            client,
            "update_task",
            json!({"task_id": n, "priority": "urgent", "add_tags": ["travel"]}),
        )
        .await,
    );
    assert_eq!(updated["priority"], "urgent");
    let reminded = structured(
        &call(
            client,
            "set_reminder",
            json!({"task_id": n, "before_minutes": 1440}),
        )
        .await,
    );
    assert_eq!(reminded["reminders"][0]["before_minutes"], 1440);
    structured(&call(client, "complete_task", json!({"task_id": n})).await);
    assert_eq!(
        app.get(&format!("/api/{}/tasks/{n}", app.user_id()))
            .await
            .body["status"],
        "completed"
    );
    structured(&call(client, "reopen_task", json!({"task_id": n})).await);
    assert_eq!(
        app.get(&format!("/api/{}/tasks/{n}", app.user_id()))
            .await
            .body["status"],
        "pending"
    );
    structured(&call(client, "delete_task", json!({"task_id": n})).await);
    assert_eq!(
        app.get(&format!("/api/{}/tasks/{n}", app.user_id()))
            .await
            .status,
        404
    );

    // A user_id that is not the session's user, and a task that does not exist, are errors.
    let other = call(
        client,
        "list_tasks",
        json!({"user_id": "00000000-0000-0000-0000-000000000000"}),
    )
    .await;
    assert_eq!(other.is_error, Some(true));
    let missing = call(client, "complete_task", json!({"task_id": 999})).await;
    assert_eq!(missing.is_error, Some(true));
}

#[tokio::test]
async fn mcp_over_stdio_acts_for_the_named_user() {
    let Some(app) = App::new().await else { return };
    let db = app.db.url.clone();
    let transport = TokioChildProcess::new(tokio::process::Command::new(BIN).configure(|c| {
        c.args([
            "--log-format",
            "json",
            "mcp",
            "--user",
            "ada@example.com",
            "--database-url",
            &db,
        ]);
    }))
    .unwrap();
    let client = ().serve(transport).await.unwrap();
    exercise(&app, &client).await;
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn mcp_over_streamable_http_acts_for_the_bearer_tokens_user() {
    let Some(app) = App::new().await else { return };
    let config = StreamableHttpClientTransportConfig::with_uri(app.server.url("/mcp"))
        .auth_header(app.token.clone());
    let transport = StreamableHttpClientTransport::from_config(config);
    let client = ().serve(transport).await.unwrap();
    exercise(&app, &client).await;
    client.cancel().await.unwrap();
    // Without a token there is no session.
    let anonymous = StreamableHttpClientTransport::from_uri(app.server.url("/mcp"));
    assert!(().serve(anonymous).await.is_err());
}
