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
