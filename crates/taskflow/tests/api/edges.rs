//! The contract's small print at the edges: text PostgreSQL cannot store, oversized URLs and
//! heads, the live streams' `?token=`, invisible titles. Run on both backends.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::App;

#[tokio::test]
async fn nul_in_any_text_is_422_and_writes_nothing() {
    let Some(app) = App::new().await else { return };
    let convo = app.post("/api/chat", json!({"message": "hello"})).await;
    assert_eq!(convo.status, 200);
    let before = app.counts().await;
    let conversations = app.get("/api/conversations").await.body["items"]
        .as_array()
        .unwrap()
        .len();
    for (method, path, body, field) in [
        (
            Method::POST,
            "/api/chat",
            Some(json!({"message": "add buy milk\u{0}"})),
            "message",
        ),
        (
            Method::POST,
            "/api/chat",
            Some(json!({"message": "add a", "conversation_id": "\u{0}"})),
            "conversation_id",
        ),
        (
            Method::POST,
            "/api/tasks",
            Some(json!({"title": "a", "tags": ["x", "y\u{0}"]})),
            "tags[1]",
        ),
        (
            Method::POST,
            "/api/tasks",
            Some(json!({"title": "a", "description": "\u{0}"})),
            "description",
        ),
        (Method::GET, "/api/conversations/%00/messages", None, "path"),
        (Method::POST, "/api/notifications/%00/read", None, "path"),
        (Method::GET, "/api/tasks?q=milk%00", None, "q"),
        (Method::GET, "/api/tasks?tag=%00", None, "tag"),
    ] {
        for _ in 0..2 {
            let res = app.call(method.clone(), path, body.clone()).await;
            assert_eq!(
                res.error_fields(),
                [field],
                "{method} {path} {body:?}: {}",
                res.body
            );
        }
    }
    assert_eq!(app.counts().await, before, "nothing was written");
    let after = app.get("/api/conversations").await.body["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, conversations, "no conversation was started");
}

async fn raw(app: &App, request: &[u8]) -> String {
    let addr = app.server.base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn problem_of(answer: &str, status: u16) -> serde_json::Value {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} ")),
        "{answer}"
    );
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["status"], status);
    assert!(!body["detail"].as_str().unwrap().is_empty());
    body
}

#[tokio::test]
async fn a_long_url_is_414_and_huge_headers_are_431_as_problem_json() {
    let Some(app) = App::new().await else { return };
    let long = format!(
        "GET /api/tasks?q={} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        "a".repeat(9000)
    );
    problem_of(&raw(&app, long.as_bytes()).await, 414);
    let huge_url = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70_000));
    // Past the 64 KiB head the server reads at all: the answer is still problem+json.
    problem_of(&raw(&app, huge_url.as_bytes()).await, 431);
    let huge_header = format!(
        "GET /healthz/live HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "b".repeat(70_000)
    );
    problem_of(&raw(&app, huge_header.as_bytes()).await, 431);
    problem_of(
        &raw(&app, b"GET / HTTP/1.1\r\nno colon here\r\n\r\n").await,
        400,
    );
    // The server is still there for everyone else.
    assert_eq!(app.get("/api/me").await.status, 200);
}

#[tokio::test]
async fn the_live_streams_take_the_token_as_token_or_access_token() {
    let Some(app) = App::new().await else { return };
    for param in ["token", "access_token"] {
        let res = app
            .server
            .client
            .get(
                app.server
                    .url(&format!("/api/events?{param}={}", app.token)),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "?{param}=");
        assert_eq!(res.headers()["content-type"], "text/event-stream");
    }
    // Elsewhere a token in the URL is not a sign-in.
    let res = app
        .call_as(
            "",
            Method::GET,
            &format!("/api/tasks?token={}", app.token),
            None,
            &[],
        )
        .await;
    res.problem(401);
}

#[tokio::test]
async fn a_title_of_invisible_characters_is_empty() {
    let Some(app) = App::new().await else { return };
    let before = app.counts().await;
    for title in [
        "\u{200B}",
        "\u{FEFF}\u{200D}\u{2060}",
        "\u{3000}\u{00A0}",
        "\u{3164}",
    ] {
        let res = app.post("/api/tasks", json!({"title": title})).await;
        assert_eq!(res.error_fields(), ["title"], "{title:?}");
    }
    assert_eq!(app.counts().await, before);
    let t = app.task(json!({"title": "\u{200B}Pay rent\u{FEFF}"})).await;
    assert_eq!(t["title"], "Pay rent");
}

#[tokio::test]
async fn dates_are_exactly_yyyy_mm_dd_and_instants_stay_in_the_years_0001_to_9999() {
    let Some(app) = App::new().await else { return };
    let before = app.counts().await;
    for (body, field) in [
        (
            json!({"title": "a", "due_at": "9999-12-31T23:59:59-14:00"}),
            "due_at",
        ),
        (json!({"title": "a", "due_date": "-0001-01-01"}), "due_date"),
        (
            json!({"title": "a", "due_date": "+002024-01-01"}),
            "due_date",
        ),
        (json!({"title": "a", "due_date": "2024-1-1"}), "due_date"),
        (json!({"title": "a", "due_date": "0000-01-01"}), "due_date"),
    ] {
        let res = app.post("/api/tasks", body.clone()).await;
        assert_eq!(res.error_fields(), [field], "{body}");
    }
    app.get("/api/tasks?due_after=2024-1-1").await.problem(422);
    assert_eq!(app.counts().await, before);
    let first = app
        .task(json!({"title": "a", "due_date": "0001-01-01"}))
        .await;
    assert_eq!(first["due_date"], "0001-01-01");
    let last = app
        .task(json!({"title": "b", "due_at": "9999-12-31T23:59:59Z"}))
        .await;
    assert_eq!(last["due_at"], "9999-12-31T23:59:59Z");
}

#[tokio::test]
async fn rules_that_repeat_faster_than_hourly_or_never_occur_are_422() {
    let Some(app) = App::new().await else { return };
    for rule in [
        "FREQ=MINUTELY",
        "FREQ=SECONDLY",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
    ] {
        let res = app
            .post(
                "/api/tasks",
                json!({"title": "a", "due_date": "2030-01-01", "recurrence": rule}),
            )
            .await;
        assert_eq!(res.error_fields(), ["recurrence"], "{rule}");
    }
}

/// Pending tasks titled `title`, polled until `n` exist (the recurring service is a consumer).
async fn pending_titled(app: &App, title: &str, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..100 {
        let items = app.get("/api/tasks?status=pending&limit=200").await.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["title"] == title)
            .cloned()
            .collect::<Vec<_>>();
        if items.len() >= n {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Vec::new()
}

#[tokio::test]
async fn an_hourly_task_due_decades_ago_gets_its_next_occurrence_after_now() {
    let Some(app) = App::new().await else { return };
    let t = app
        .task(json!({"title": "hourly", "due_at": "1980-01-01T00:30:00Z", "recurrence": "FREQ=HOURLY"}))
        .await;
    let done = app
        .post(
            &format!("/api/tasks/{}/complete", t["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(done.status, 200);
    let next = pending_titled(&app, "hourly", 1).await;
    assert_eq!(next.len(), 1, "the next occurrence was made");
    let due = chrono::DateTime::parse_from_rfc3339(next[0]["due_at"].as_str().unwrap()).unwrap();
    let now = chrono::Utc::now();
    assert!(
        due > now && due < now + chrono::TimeDelta::hours(2),
        "{due}"
    );
    assert!(next[0]["due_at"].as_str().unwrap().ends_with(":30:00Z"));
}

#[tokio::test]
async fn the_end_of_a_series_is_said_in_the_event_and_in_the_chat() {
    let Some(app) = App::new().await else { return };
    app.task(
        json!({"title": "twice", "due_date": "2030-01-01", "recurrence": "FREQ=DAILY;COUNT=2"}),
    )
    .await;
    let reply = app
        .post("/api/chat", json!({"message": "complete #1"}))
        .await;
    assert!(
        reply.body["response"]
            .as_str()
            .unwrap()
            .contains("next occurrence"),
        "{}",
        reply.body
    );
    let second = pending_titled(&app, "twice", 1).await;
    let number = second[0]["number"].as_i64().unwrap();
    let reply = app
        .post(
            "/api/chat",
            json!({"message": format!("complete #{number}")}),
        )
        .await;
    let text = reply.body["response"].as_str().unwrap();
    assert!(text.contains("the series has ended"), "{text}");
    assert_eq!(reply.body["tool_calls"][0]["result"]["series_ended"], true);
    // The audit log is a consumer too: wait for it (on a loaded machine, seconds).
    let path = format!("/api/tasks/{}/history", second[0]["id"].as_str().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let completed = loop {
        let history = app.get(&path).await;
        let found = history.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "com.taskflow.task.completed.v1")
            .cloned();
        match found {
            Some(c) => break c,
            None if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None => panic!("the completion is not in the history: {}", history.body),
        }
    };
    assert_eq!(completed["data"]["series_ended"], true, "{completed}");
}
