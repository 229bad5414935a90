//! Black-box tests of the real `taskflow` binary over HTTP. Each test starts its own server
//! on a free port with a fresh database: SQLite, or PostgreSQL with
//! `TASKFLOW_TEST_BACKEND=postgres` (as `scripts/test` runs the suite a second time).

#![allow(clippy::unwrap_used)]

mod auth;
mod bad_input;
mod chat;
mod cli;
mod contract;
mod dapr;
mod edges;
mod faults;
mod kafka;
mod limits;
mod list;
mod llm;
mod mcp;
mod ops;
mod readme;
mod services;
mod tasks;
mod trace;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use taskflow_testkit::{Backend, TestDb, TestServer};

pub const BIN: &str = env!("CARGO_BIN_EXE_taskflow");

/// A running server with its database and one signed-up user.
#[derive(Debug)]
pub struct App {
    pub server: TestServer,
    pub db: TestDb,
    pub token: String,
    pub user: Value,
}

/// A response: status, headers and JSON body (Null when empty).
#[derive(Debug)]
pub struct Res {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Res {
    /// Asserts a problem+json error with this status and returns the body.
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        let ct = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(ct, "application/problem+json", "body: {}", self.body);
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(self.body["detail"].as_str().is_some_and(|t| !t.is_empty()));
        &self.body
    }

    /// The `field`s of a 422's `errors`.
    pub fn error_fields(&self) -> Vec<String> {
        self.problem(422);
        self.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Whether the suite runs through a Kafka broker (`TASKFLOW_TEST_BUS=kafka`).
pub fn through_kafka() -> bool {
    std::env::var("TASKFLOW_TEST_BUS").as_deref() == Ok("kafka")
}

/// Whether the suite runs through a broker, Kafka or a Dapr sidecar: events go through the
/// relay role, and after a crash its lease must expire (10 s) before it publishes again.
pub fn through_broker() -> bool {
    through_kafka() || taskflow_testkit::through_dapr()
}

pub async fn start(extra: &[&str]) -> Option<(TestServer, TestDb)> {
    let db = TestDb::new(Backend::from_env()).await?;
    let server = TestServer::start(BIN, &db.url, extra);
    Some((server, db))
}

impl App {
    /// A server with one user in `America/New_York`; `None` when the backend is unavailable.
    pub async fn new() -> Option<Self> {
        Self::with_args(&[]).await
    }

    pub async fn with_args(extra: &[&str]) -> Option<Self> {
        let (server, db) = start(extra).await?;
        let (token, user) = server.signup("ada@example.com", "America/New_York").await;
        Some(Self {
            server,
            db,
            token,
            user,
        })
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Res {
        self.call_as(&self.token, method, path, body, &[]).await
    }

    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Res {
        let mut req = self.server.client.request(method, self.server.url(path));
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Res {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Res {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Res {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Res {
        self.call(Method::PATCH, path, Some(body)).await
    }

    /// Creates a task and returns its JSON.
    pub async fn task(&self, body: Value) -> Value {
        let res = self.post("/api/tasks", body).await;
        assert_eq!(res.status, 201, "{}", res.body);
        res.body
    }

    /// (tasks, events) in the database, to show that a refused request changed nothing.
    pub async fn counts(&self) -> (i64, i64) {
        let store = taskflow_store::connect(&self.db.url).await.unwrap();
        (
            store.count_tasks().await.unwrap(),
            store.count_events().await.unwrap(),
        )
    }

    pub fn user_id(&self) -> &str {
        self.user["id"].as_str().unwrap()
    }
}

/// The value of the metric `name` whose labels include every one of `labels`.
pub fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let (series, value) = rest.rsplit_once(' ')?;
        let bare = series.is_empty() || series.starts_with('{');
        (bare && labels.iter().all(|want| series.contains(want)))
            .then(|| value.parse().ok())
            .flatten()
    })
}
