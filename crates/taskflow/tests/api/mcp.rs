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
    // The text block is prose for people; the JSON is in structuredContent.
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "prose, not JSON: {text}"
    );
    let first = v["number"]
        .as_i64()
        .or_else(|| v["task"]["number"].as_i64())
        .or_else(|| v["items"][0]["number"].as_i64());
    if let Some(n) = first {
        assert!(text.contains(&format!("#{n}")), "{text} names #{n}");
    }
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
    let hints = |name: &str| {
        let a = tools
            .tools
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .annotations
            .clone()
            .unwrap();
        (a.read_only_hint, a.destructive_hint, a.idempotent_hint)
    };
    assert_eq!(hints("list_tasks"), (Some(true), Some(false), Some(true)));
    assert_eq!(hints("delete_task"), (Some(false), Some(true), Some(true)));
    assert_eq!(hints("add_task"), (Some(false), Some(false), Some(false)));

    // An argument the schema does not declare is an error naming it, not ignored.
    let stray = call(client, "list_tasks", json!({"tag": "x"})).await;
    assert_eq!(stray.is_error, Some(true));
    let said = stray.content[0].as_text().unwrap().text.clone();
    assert!(said.contains("`tag`") && said.contains("tags"), "{said}");

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

/// A raw POST to /mcp: (status, headers, JSON body).
async fn post_mcp(
    app: &App,
    body: &str,
    session: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = app
        .server
        .client
        .post(app.server.url("/mcp"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned());
    if let Some(id) = session {
        req = req.header("mcp-session-id", id);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .or_else(|_| {
            // An SSE answer: the JSON is on its data line.
            let data = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .find(|d| !d.trim().is_empty());
            serde_json::from_str(data.unwrap_or("null"))
        })
        .unwrap_or(Value::Null);
    (status, headers, json)
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

#[tokio::test]
async fn mcp_protocol_errors_are_json_rpc_errors_with_the_right_status() {
    let Some(app) = App::new().await else { return };
    let (status, _, body) = post_mcp(&app, "{not json", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32700)),
        "{body}"
    );
    let (status, _, body) = post_mcp(&app, r#"{"hello": "world"}"#, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32600)),
        "{body}"
    );
    let (status, headers, body) = post_mcp(&app, INITIALIZE, Some("bogus-session")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["jsonrpc"], "2.0");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session"),
        "{body}"
    );
    // A session is its owner's: another user's token cannot use it.
    let (status, headers, _) = post_mcp(&app, INITIALIZE, None).await;
    assert_eq!(status, 200);
    let id = headers["mcp-session-id"].to_str().unwrap().to_owned();
    let (eve, _) = app.server.signup("eve@example.com", "UTC").await;
    let res = app
        .server
        .client
        .post(app.server.url("/mcp"))
        .bearer_auth(eve)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &id)
        .body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn one_user_may_hold_only_so_many_mcp_sessions() {
    let Some(app) = App::with_args(&["--mcp-sessions-per-user", "2"]).await else {
        return;
    };
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, headers, _) = post_mcp(&app, INITIALIZE, None).await;
        assert_eq!(status, 200);
        ids.push(headers["mcp-session-id"].to_str().unwrap().to_owned());
    }
    let (status, headers, body) = post_mcp(&app, INITIALIZE, None).await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 MCP sessions"),
        "{body}"
    );
    // Closing one frees its place.
    let closed = app
        .server
        .client
        .delete(app.server.url("/mcp"))
        .bearer_auth(&app.token)
        .header("mcp-session-id", &ids[0])
        .send()
        .await
        .unwrap();
    assert!(closed.status().is_success(), "{}", closed.status());
    let (status, _, body) = post_mcp(&app, INITIALIZE, None).await;
    assert_eq!(status, 200, "{body}");
}

/// The tools and REST read what they are sent by one set of rules: the same page limit, the
/// same day bounds, the same words for the same mistake.
#[tokio::test]
async fn the_tools_and_rest_read_input_by_the_same_rules() {
    let Some(app) = App::new().await else { return };
    let config = StreamableHttpClientTransportConfig::with_uri(app.server.url("/mcp"))
        .auth_header(app.token.clone());
    let client = ().serve(StreamableHttpClientTransport::from_config(config)).await.unwrap();
    for n in 0..105 {
        app.task(json!({"title": format!("task {n}"), "due_at": "2030-03-01T23:30:00Z"}))
            .await;
    }
    // A page of up to 200 on both (the tools used to stop at 100).
    let page = structured(&call(&client, "list_tasks", json!({"limit": 105})).await);
    assert_eq!(page["items"].as_array().unwrap().len(), 105);
    let rest = app.get("/api/tasks?limit=105").await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 105);
    let too_many = call(&client, "list_tasks", json!({"limit": 201})).await;
    assert_eq!(too_many.is_error, Some(true));
    let said = too_many.content[0].as_text().unwrap().text.clone();
    let refused = app.get("/api/tasks?limit=201").await;
    let detail = refused.problem(422)["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(said.contains(&detail), "tool: {said}; REST: {detail}");
    // A day runs to its last instant on both (the user's timezone is UTC).
    let through = structured(
        &call(
            &client,
            "list_tasks",
            json!({"due_to": "2030-03-01", "limit": 200}),
        )
        .await,
    );
    assert_eq!(through["items"].as_array().unwrap().len(), 105);
    let before = structured(&call(&client, "list_tasks", json!({"due_to": "2030-02-28"})).await);
    assert_eq!(before["items"].as_array().unwrap().len(), 0);
    let rest = app.get("/api/tasks?due_before=2030-03-01&limit=200").await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 105);
    // The same mistake, the same words.
    let bad = call(
        &client,
        "add_task",
        json!({"title": "x", "due_at": "next tuesday"}),
    )
    .await;
    assert_eq!(bad.is_error, Some(true));
    let said = bad.content[0].as_text().unwrap().text.clone();
    let refused = app
        .post(
            "/api/tasks",
            json!({"title": "x", "due_at": "next tuesday"}),
        )
        .await;
    let detail = refused.problem(422)["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(said.contains(&detail), "tool: {said}; REST: {detail}");
    // A model's `null` for what it leaves alone changes nothing; on the due it clears it.
    let nulls = json!({"task_id": 1, "title": null, "priority": null, "description": null,
        "reminders_before_minutes": null, "due_at": null});
    let changed = structured(&call(&client, "update_task", nulls).await);
    assert_eq!(changed["title"], "task 0");
    assert_eq!(changed["priority"], "medium");
    assert_eq!(changed["due_at"], serde_json::Value::Null);
    client.cancel().await.unwrap();
}
