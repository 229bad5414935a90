//! The LLM agent against a small fake of an OpenAI-compatible Chat Completions server (no
//! provider is reachable here). The fake speaks the real wire format: `tools` in, `choices[0]
//! .message.tool_calls` with `finish_reason: "tool_calls"` out, then a final text answer.

use std::sync::{Arc, Mutex};

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use serde_json::{Value, json};

use crate::{App, sample};

#[derive(Clone, Default)]
struct Fake {
    requests: Arc<Mutex<Vec<Value>>>,
    fail: bool,
    /// The model's answers in turn (an assistant message each); empty: add a task, then say so.
    script: Arc<Vec<Value>>,
}

/// An assistant message that calls `tool` with `args`.
fn calls(tool: &str, args: Value) -> Value {
    json!({"role": "assistant", "content": null, "tool_calls": [{"id": format!("call_{tool}"),
        "type": "function", "function": {"name": tool, "arguments": args.to_string()}}]})
}

/// An assistant message that answers `text`.
fn says(text: &str) -> Value {
    json!({"role": "assistant", "content": text})
}

async fn completions(State(f): State<Fake>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let n = {
        let mut r = f.requests.lock().unwrap();
        r.push(body.clone());
        r.len()
    };
    if f.fail {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": {"message": "overloaded"}})),
        );
    }
    let answer = if !f.script.is_empty() {
        f.script
            .get(n - 1)
            .cloned()
            .unwrap_or_else(|| says("Done."))
    } else if n == 1 {
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "add_task", "arguments": "{\"title\":\"Water the ferns\",\"due_date\":\"2030-05-01\",\"priority\":\"high\"}"}}]})
    } else {
        json!({"role": "assistant", "content": "Added #1 “Water the ferns” for Wed May 1, high priority."})
    };
    let reason = if answer.get("tool_calls").is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    (
        StatusCode::OK,
        Json(
            json!({"id": format!("chatcmpl-{n}"), "object": "chat.completion", "model": body["model"],
        "choices": [{"index": 0, "message": answer, "finish_reason": reason}]}),
        ),
    )
}

async fn fake(fail: bool) -> (String, Fake) {
    serve(Fake {
        fail,
        ..Fake::default()
    })
    .await
}

async fn serve(f: Fake) -> (String, Fake) {
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(f.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), f)
}

#[tokio::test]
async fn chat_goes_through_the_model_with_the_tools_and_runs_its_tool_calls() {
    let (url, fake) = fake(false).await;
    let Some(app) = App::with_args(&[
        "--llm-base-url",
        &url,
        "--llm-model",
        "test-model",
        "--llm-api-key",
        "sk-test",
    ])
    .await
    else {
        return;
    };
    let res = app
        .post(
            "/api/chat",
            json!({"message": "water the ferns on may 1st 2030, it's important"}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(
        res.body["response"],
        "Added #1 “Water the ferns” for Wed May 1, high priority."
    );
    assert_eq!(res.body["tool_calls"][0]["tool"], "add_task");
    assert_eq!(res.body["tool_calls"][0]["result"]["number"], 1);
    let task = app.get(&format!("/api/{}/tasks/1", app.user_id())).await;
    assert_eq!(task.body["title"], "Water the ferns");
    assert_eq!(task.body["due_date"], "2030-05-01");
    assert_eq!(task.body["priority"], "high");

    let metrics = app.server.metrics().await;
    let tool = r#"tool="add_task""#;
    let (ok, error) = (r#"outcome="ok""#, r#"outcome="error""#);
    assert_eq!(
        sample(&metrics, "taskflow_tool_calls_total", &[tool, ok]),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "taskflow_tool_calls_total", &[tool, error]),
        None
    );
    assert_eq!(
        sample(
            &metrics,
            "taskflow_llm_request_duration_seconds_count",
            &[ok]
        ),
        Some(2.0),
        "both model calls timed: {metrics}"
    );
    assert_eq!(sample(&metrics, "taskflow_llm_errors_total", &[]), None);

    let requests = fake.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "one tool round, then the answer");
    let first = &requests[0];
    assert_eq!(first["model"], "test-model");
    let tools: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    for t in [
        "add_task",
        "list_tasks",
        "complete_task",
        "delete_task",
        "update_task",
        "set_reminder",
        "search_tasks",
    ] {
        assert!(tools.contains(&t), "{t} offered: {tools:?}");
    }
    assert_eq!(
        first["tools"][0]["function"]["parameters"]["type"],
        "object"
    );
    let system = first["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("America/New_York"), "{system}");
    assert_eq!(
        first["messages"].as_array().unwrap().last().unwrap()["content"],
        "water the ferns on may 1st 2030, it's important"
    );
    let second = requests[1]["messages"].as_array().unwrap();
    let tool_msg = second
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("the tool result went back");
    assert_eq!(tool_msg["tool_call_id"], "call_1");
    assert!(
        tool_msg["content"]
            .as_str()
            .unwrap()
            .contains("Water the ferns")
    );
}

#[tokio::test]
async fn a_provider_error_falls_back_to_the_rule_based_agent_for_that_message() {
    let (url, fake) = fake(true).await;
    let Some(app) = App::with_args(&["--llm-base-url", &url]).await else {
        return;
    };
    let res = app
        .post(
            "/api/chat",
            json!({"message": "add call the bank tomorrow at 10am"}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let text = res.body["response"].as_str().unwrap();
    assert!(text.starts_with("Added #1 “call the bank”"), "{text}");
    assert_eq!(
        fake.requests.lock().unwrap().len(),
        1,
        "the model was asked first"
    );
    let logged = std::iter::from_fn(|| app.server.stderr.try_recv().ok())
        .any(|l| l.contains("rule-based agent"));
    assert!(logged, "the fallback is logged");
    let metrics = app.server.metrics().await;
    assert_eq!(
        sample(&metrics, "taskflow_llm_errors_total", &[r#"kind="status""#]),
        Some(1.0),
        "the provider's error is counted by kind: {metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "taskflow_llm_request_duration_seconds_count",
            &[r#"outcome="error""#]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "taskflow_tool_calls_total",
            &[r#"tool="add_task""#, r#"outcome="ok""#]
        ),
        Some(1.0),
        "the rule-based agent's tool call is counted too"
    );
}

#[tokio::test]
async fn a_model_turn_whose_record_cannot_be_written_changes_no_task() {
    let (url, fake) = fake(false).await;
    let Some(app) = App::with_args(&["--llm-base-url", &url]).await else {
        return;
    };
    crate::chat::refuse_records_saying(&app, "ferns").await;
    let before = app.counts().await;
    let res = app
        .post(
            "/api/chat",
            json!({"message": "water the ferns on may 1st 2030"}),
        )
        .await;
    res.problem(500);
    assert_eq!(
        fake.requests.lock().unwrap().len(),
        1,
        "the model asked for add_task, and the round was not saved"
    );
    assert_eq!(
        app.counts().await,
        before,
        "neither the model's add_task nor the rule-based agent's stayed"
    );
}

#[tokio::test]
async fn each_round_of_a_model_turn_is_recorded_with_its_tool_calls() {
    let (url, _fake) = fake(false).await;
    let Some(app) = App::with_args(&["--llm-base-url", &url]).await else {
        return;
    };
    let reply = app
        .post(
            "/api/chat",
            json!({"message": "water the ferns on may 1st 2030"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let cid = reply.body["conversation_id"].as_str().unwrap();
    let msgs = app.get(&format!("/api/conversations/{cid}/messages")).await;
    let items = msgs.body["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        2,
        "the round's record and the answer are one message: {items:?}"
    );
    assert_eq!(items[1]["content"], reply.body["response"]);
    assert_eq!(items[1]["tool_calls"][0]["tool"], "add_task");
}

/// "undo that" takes back what the model's tools did, from the conversation's memory: the
/// model is not asked, and each kind of change comes back as it was.
#[tokio::test]
async fn undo_takes_back_what_the_model_did_without_asking_it() {
    let (url, fake) = serve(Fake {
        script: Arc::new(vec![
            calls(
                "add_task",
                json!({"title": "Water the ferns", "due_date": "2030-05-01", "priority": "high"}),
            ),
            says("Added #1."),
            calls(
                "update_task",
                json!({"task_id": 1, "priority": "urgent", "due_date": "2030-05-03"}),
            ),
            says("#1 is urgent now, due May 3."),
            calls("add_task", json!({"title": "Buy soil"})),
            calls("add_task", json!({"title": "Buy pots"})),
            says("Added #2 and #3."),
        ]),
        ..Fake::default()
    })
    .await;
    let Some(app) =
        App::with_args(&["--llm-base-url", &url, "--rate-limit-chat-per-user", "0"]).await
    else {
        return;
    };
    let task = |n: i64| {
        let app = &app;
        async move { app.get(&format!("/api/{}/tasks/{n}", app.user_id())).await }
    };
    let asked = || fake.requests.lock().unwrap().len();
    let first = app
        .post(
            "/api/chat",
            json!({"message": "water the ferns on may 1st 2030, it's important"}),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let cid = first.body["conversation_id"].as_str().unwrap().to_owned();
    let say = |message: &str| {
        let app = &app;
        let body = json!({"conversation_id": cid, "message": message});
        async move { app.post("/api/chat", body).await }
    };

    let changed = say("make it urgent and move it to the 3rd").await;
    assert_eq!(
        changed.body["tool_calls"][0]["tool"], "update_task",
        "{}",
        changed.body
    );
    assert_eq!(task(1).await.body["priority"], "urgent");
    assert_eq!(asked(), 4);

    let undone = say("undo that").await;
    assert_eq!(undone.status, 200, "{}", undone.body);
    assert_eq!(asked(), 4, "the model was not asked to undo");
    let text = undone.body["response"].as_str().unwrap();
    assert!(
        text.starts_with("Undone: put back #1 “Water the ferns”"),
        "{text}"
    );
    assert_eq!(undone.body["tool_calls"][0]["tool"], "update_task");
    let ferns = task(1).await;
    assert_eq!(ferns.body["priority"], "high", "{}", ferns.body);
    assert_eq!(ferns.body["due_date"], "2030-05-01", "{}", ferns.body);

    let again = say("undo").await;
    let text = again.body["response"].as_str().unwrap();
    assert!(text.starts_with("There is nothing to undo"), "{text}");
    assert!(again.body["tool_calls"].as_array().unwrap().is_empty());

    // Two tasks added in one turn are taken back together.
    let added = say("I need soil and pots").await;
    assert_eq!(
        added.body["tool_calls"].as_array().unwrap().len(),
        2,
        "{}",
        added.body
    );
    assert_eq!(asked(), 7);
    let undone = say("oops, undo that").await;
    let text = undone.body["response"].as_str().unwrap();
    assert!(
        text.starts_with("Undone: deleted the 2 tasks just added (#2, #3)"),
        "{text}"
    );
    assert_eq!(task(2).await.status, 404);
    assert_eq!(task(3).await.status, 404);
    assert_eq!(task(1).await.status, 200, "the ferns stay");
    assert_eq!(asked(), 7, "the model was not asked to undo");
}
