//! Test support: a fresh database per test (an SQLite file, or a throwaway PostgreSQL
//! database), and the real `taskflow` binary started on a free port against it.
//!
//! PostgreSQL: set `TASKFLOW_TEST_PG_URL` to an admin URL (`postgres://postgres@127.0.0.1/postgres`).
//! Without it PostgreSQL tests are skipped, unless `TASKFLOW_TEST_REQUIRE_PG=1` (as
//! `scripts/test` sets), which makes them fail instead.
//!
//! Kafka: with `TASKFLOW_TEST_BUS=kafka` and `TASKFLOW_TEST_KAFKA_BROKERS`, every server runs
//! with `--bus kafka`, its topics and groups prefixed by its database (so tests sharing the
//! broker never see each other's events), and a start waits until the server is ready (its
//! consumer groups have their partitions).

#![allow(clippy::unwrap_used)]

use std::{
    hash::{Hash, Hasher},
    io::{BufRead, BufReader, Read, Write},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::{Value, json};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend the API suite runs on: `TASKFLOW_TEST_BACKEND=postgres`, else SQLite.
    pub fn from_env() -> Self {
        match std::env::var("TASKFLOW_TEST_BACKEND").as_deref() {
            Ok("postgres") => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }
}

/// A database that exists for one test and is removed after it.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    admin_url: Option<String>,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("taskflow.db").display());
        Self {
            url,
            admin_url: None,
            name: String::new(),
            _dir: Some(dir),
        }
    }

    /// A fresh PostgreSQL database, or `None` (test skipped) when no server is configured.
    pub async fn postgres() -> Option<Self> {
        let Ok(admin) = std::env::var("TASKFLOW_TEST_PG_URL") else {
            assert!(
                std::env::var("TASKFLOW_TEST_REQUIRE_PG").as_deref() != Ok("1"),
                "TASKFLOW_TEST_REQUIRE_PG=1 but TASKFLOW_TEST_PG_URL is not set"
            );
            eprintln!("skipping the PostgreSQL part: TASKFLOW_TEST_PG_URL is not set");
            return None;
        };
        let name = format!("taskflow_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .unwrap();
        sqlx::Executor::execute(
            &mut conn,
            sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
        )
        .await
        .unwrap();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Some(Self {
            url,
            admin_url: Some(admin),
            name,
            _dir: None,
        })
    }

    /// Runs `sql` (several statements allowed) on the test's database, beside the server:
    /// for faults a test injects, such as a trigger that refuses a write.
    pub async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        if self.admin_url.is_some() {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url)
                .await
                .unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        } else {
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&self.url)
                .await
                .unwrap();
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
    }

    /// Whether this is a PostgreSQL database (else SQLite).
    pub fn is_postgres(&self) -> bool {
        self.admin_url.is_some()
    }

    pub async fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite()),
            Backend::Postgres => Self::postgres().await,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(admin) = self.admin_url.clone() else {
            return;
        };
        let name = self.name.clone();
        // Drop runs inside or outside a runtime; a thread of its own works in both.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) =
                    <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await
                {
                    let _ = sqlx::Executor::execute(
                        &mut conn,
                        sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
                    )
                    .await;
                }
            });
        })
        .join();
    }
}

/// The real binary, serving on a free port.
#[derive(Debug)]
pub struct TestServer {
    pub base: String,
    pub db_url: String,
    pub client: reqwest::Client,
    child: Child,
    pub stderr: mpsc::Receiver<String>,
}

/// The Kafka settings of a server on `db_url`, when the suite runs through a broker.
fn kafka_args(db_url: &str) -> Vec<String> {
    if std::env::var("TASKFLOW_TEST_BUS").as_deref() != Ok("kafka") {
        return Vec::new();
    }
    let brokers = std::env::var("TASKFLOW_TEST_KAFKA_BROKERS")
        .expect("TASKFLOW_TEST_BUS=kafka needs TASKFLOW_TEST_KAFKA_BROKERS");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    db_url.hash(&mut h);
    vec![
        "--bus".into(),
        "kafka".into(),
        "--kafka-brokers".into(),
        brokers,
        "--kafka-topic-prefix".into(),
        format!("t{:016x}.", h.finish()),
        "--kafka-partitions".into(),
        "2".into(),
    ]
}

/// Waits until `GET /healthz/ready` on `addr` answers 200.
fn wait_ready(addr: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ready = std::net::TcpStream::connect(addr).is_ok_and(|mut c| {
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut head = [0u8; 12];
            c.write_all(b"GET /healthz/ready HTTP/1.0\r\nHost: test\r\n\r\n")
                .is_ok()
                && c.read_exact(&mut head).is_ok()
                && head.ends_with(b"200")
        });
        if ready {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server at {addr} was not ready within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl TestServer {
    /// Starts `bin serve` on 127.0.0.1 port 0 against `db_url`, with extra arguments, and
    /// waits until it listens.
    pub fn start(bin: &str, db_url: &str, extra: &[&str]) -> Self {
        Self::start_with(bin, "serve", db_url, extra)
    }

    pub fn start_with(bin: &str, command: &str, db_url: &str, extra: &[&str]) -> Self {
        let kafka = kafka_args(db_url);
        let mut child = Command::new(bin)
            .args([
                "--log-format",
                "json",
                command,
                "--bind",
                "127.0.0.1:0",
                "--database-url",
                db_url,
            ])
            .args(&kafka)
            .args(extra)
            .env_remove("TASKFLOW_JWT_SECRET")
            .env_remove("TASKFLOW_BIND")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("the server did not start: {:?}", child.try_wait()));
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["message"] == "listening" {
                break v["addr"].as_str().unwrap().to_owned();
            }
        };
        if !kafka.is_empty() {
            wait_ready(&addr);
        }
        Self {
            base: format!("http://{addr}"),
            db_url: db_url.to_owned(),
            client: reqwest::Client::new(),
            child,
            stderr: rx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }

    /// `GET path` with a bearer token (none when empty), answered with JSON.
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        let mut req = self.client.get(self.url(path));
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Signs a new user up and returns (token, user JSON).
    pub async fn signup(&self, email: &str, timezone: &str) -> (String, Value) {
        let res = self
            .client
            .post(self.url("/api/auth/signup"))
            .json(&json!({"email": email, "password": "correct horse battery", "name": "Test", "timezone": timezone}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "signup failed");
        let body: Value = res.json().await.unwrap();
        (
            body["token"].as_str().unwrap().to_owned(),
            body["user"].clone(),
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
