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
//!
//! Dapr: with `TASKFLOW_TEST_BUS=dapr`, every server runs with `--bus dapr` against a fake
//! sidecar ([`dapr::FakeDapr`], one per database, so a restarted server finds its events),
//! each process attached to it as an app of its own.
//!
//! Dapr beside another bus: with `TASKFLOW_TEST_DAPR=secrets,jobs`, every server also reads
//! its database URL from the fake sidecar's secret store (`--dapr-secret-store kubernetes`,
//! `--database-url dapr-secret:taskflow/database-url`) and keeps its reminders' timers as
//! jobs of it (`--timers dapr-jobs`), whatever its bus.
//!
//! Topology: with `TASKFLOW_TEST_TOPOLOGY=roles`, a `serve` becomes one process per role on
//! the same database and settings (`run --roles api,sync`, then `relay`, `recurring`,
//! `reminders`, `notifier` and `audit` each in its own), as a Kubernetes deployment runs
//! them; the test talks to the API process and sees every process's log after start.

#![allow(clippy::unwrap_used)]

pub mod dapr;

use std::{
    hash::{Hash, Hasher},
    io::{BufRead, BufReader, Read, Write},
    process::{Child, Command, Stdio},
    sync::{Mutex, mpsc},
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
    /// The other roles' processes and their base URLs, in the one-process-per-role topology.
    workers: Vec<(Child, String)>,
    pub stderr: mpsc::Receiver<String>,
    /// The fake sidecar and the app ids attached to it, with `--bus dapr` or
    /// `TASKFLOW_TEST_DAPR`.
    sidecar: Option<(dapr::FakeDapr, Vec<String>)>,
}

/// The roles that run beside `api,sync` in processes of their own, in the
/// one-process-per-role topology.
const WORKER_ROLES: [&str; 5] = ["relay", "recurring", "reminders", "notifier", "audit"];

/// Whether a `serve` runs as one process per role (`TASKFLOW_TEST_TOPOLOGY=roles`).
pub fn one_process_per_role() -> bool {
    std::env::var("TASKFLOW_TEST_TOPOLOGY").as_deref() == Ok("roles")
}

/// Starts `bin <args>` with its stderr read on a thread of its own; returns the child and
/// the address it listens on once it says so. Lines after that go to `log`.
fn spawn(bin: &str, args: &[String], log: mpsc::Sender<String>) -> (Child, String) {
    let mut child = Command::new(bin)
        .args(args)
        .env_remove("TASKFLOW_JWT_SECRET")
        .env_remove("TASKFLOW_BIND")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
        for line in lines.by_ref() {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["message"] == "listening" {
                let _ = addr_tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                break;
            }
        }
        for line in lines {
            if log.send(line).is_err() {
                break;
            }
        }
    });
    let Ok(addr) = addr_rx.recv_timeout(Duration::from_secs(30)) else {
        let status = child.try_wait();
        let _ = child.kill();
        panic!("`{bin} {}` did not start: {status:?}", args.join(" "));
    };
    (child, addr)
}

/// How a server reaches its events, besides the embedded log.
#[derive(Debug, Clone)]
enum Through {
    Embedded,
    /// `--bus kafka` with these settings.
    Kafka(Vec<String>),
    /// `--bus dapr` through this sidecar.
    Dapr(dapr::FakeDapr),
}

/// How a server on `db_url` reaches its events in this run of the suite.
fn suite_bus(db_url: &str) -> Through {
    match std::env::var("TASKFLOW_TEST_BUS").as_deref() {
        Ok("kafka") => {
            let brokers = std::env::var("TASKFLOW_TEST_KAFKA_BROKERS")
                .expect("TASKFLOW_TEST_BUS=kafka needs TASKFLOW_TEST_KAFKA_BROKERS");
            Through::Kafka(kafka_args_on(db_url, brokers))
        }
        Ok("dapr") => Through::Dapr(dapr::FakeDapr::for_db(db_url)),
        _ => Through::Embedded,
    }
}

/// Whether every server also uses the fake sidecar's secrets and jobs
/// (`TASKFLOW_TEST_DAPR=secrets,jobs`).
fn dapr_extras() -> bool {
    std::env::var("TASKFLOW_TEST_DAPR").as_deref() == Ok("secrets,jobs")
}

/// Whether the suite runs through the Dapr sidecar (`TASKFLOW_TEST_BUS=dapr`).
pub fn through_dapr() -> bool {
    std::env::var("TASKFLOW_TEST_BUS").as_deref() == Ok("dapr")
}

/// The app id of a process given `args`: `taskflow`, or `taskflow-ROLE-ROLE` for `--roles`.
fn app_id(args: &[String]) -> String {
    match args.iter().position(|a| a == "--roles") {
        Some(i) => format!(
            "taskflow-{}",
            args.get(i + 1).map_or("", |r| r.as_str()).replace(',', "-")
        ),
        None => "taskflow".to_owned(),
    }
}

/// The settings of a server on `db_url` through the brokers at `brokers`.
fn kafka_args_on(db_url: &str, brokers: String) -> Vec<String> {
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
        Self::launch(bin, command, db_url, suite_bus(db_url), extra)
    }

    /// As [`TestServer::start_with`], through the fake sidecar `sidecar` whatever the suite
    /// runs on.
    pub fn start_dapr(
        bin: &str,
        command: &str,
        db_url: &str,
        sidecar: &dapr::FakeDapr,
        extra: &[&str],
    ) -> Self {
        Self::launch(bin, command, db_url, Through::Dapr(sidecar.clone()), extra)
    }

    /// As [`TestServer::start_with`], through the Kafka brokers at `brokers` whatever the
    /// suite runs on (for a test that brings its own broker, or a proxy in front of one).
    pub fn start_through(
        bin: &str,
        command: &str,
        db_url: &str,
        brokers: &str,
        extra: &[&str],
    ) -> Self {
        let kafka = kafka_args_on(db_url, brokers.to_owned());
        Self::launch(bin, command, db_url, Through::Kafka(kafka), extra)
    }

    fn launch(bin: &str, command: &str, db_url: &str, through: Through, extra: &[&str]) -> Self {
        let split = command == "serve" && one_process_per_role();
        // A broker's consumer groups must have their places before the test writes.
        let wait = !matches!(through, Through::Embedded);
        let bus_args: Vec<String> = match &through {
            Through::Embedded => Vec::new(),
            Through::Kafka(args) => args.clone(),
            Through::Dapr(_) => vec!["--bus".into(), "dapr".into()],
        };
        // Secrets and jobs through a sidecar beside another bus.
        let extras = !matches!(through, Through::Dapr(_)) && dapr_extras();
        let beside = extras.then(|| {
            let fake = dapr::FakeDapr::for_db(db_url);
            fake.set_secret("kubernetes", "taskflow", &[("database-url", db_url)]);
            fake
        });
        let sidecar = match &through {
            Through::Dapr(fake) => Some(fake),
            _ => beside.as_ref(),
        };
        let database_url = if extras {
            "dapr-secret:taskflow/database-url"
        } else {
            db_url
        };
        let attached = Mutex::new(Vec::new());
        // Attaches a process to the sidecar (as its sidecar reads the subscriptions once the
        // app listens), then waits until it is ready.
        let settle = |args: &[String], addr: &str| {
            if let Some(fake) = sidecar {
                let id = app_id(args);
                fake.attach(&id, &format!("http://{addr}"));
                attached.lock().unwrap().push(id);
            }
            if wait {
                wait_ready(addr);
            }
        };
        let args = |command: &str, roles: Option<&str>| -> Vec<String> {
            let mut args: Vec<String> = ["--log-format", "json", command]
                .into_iter()
                .chain(roles.map_or(Vec::new(), |r| vec!["--roles", r]))
                .chain(["--bind", "127.0.0.1:0", "--database-url", database_url])
                .map(str::to_owned)
                .collect();
            args.extend(bus_args.iter().cloned());
            if extras {
                args.extend(
                    ["--dapr-secret-store", "kubernetes", "--timers", "dapr-jobs"]
                        .map(str::to_owned),
                );
            }
            args.extend(extra.iter().map(|a| (*a).to_owned()));
            // Each process has a sidecar of its own (its jobs trigger it).
            if let Some(fake) = sidecar {
                args.push("--dapr-http-endpoint".into());
                args.push(fake.endpoint_for(&app_id(&args)));
            }
            args
        };
        let (tx, rx) = mpsc::channel();
        // The API process migrates the database before the others start.
        let first = if split {
            args("run", Some("api,sync"))
        } else {
            args(command, None)
        };
        let (child, addr) = spawn(bin, &first, tx.clone());
        let mut workers = Vec::new();
        if split {
            let started: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = WORKER_ROLES
                    .iter()
                    .map(|r| {
                        let (args, tx) = (args("run", Some(r)), tx.clone());
                        let settle = &settle;
                        s.spawn(move || {
                            let (child, addr) = spawn(bin, &args, tx);
                            settle(&args, &addr);
                            (child, format!("http://{addr}"))
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join()).collect()
            });
            for w in started {
                match w {
                    Ok(child) => workers.push(child),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        }
        settle(&first, &addr);
        let attached = attached.into_inner().unwrap();
        Self {
            base: format!("http://{addr}"),
            db_url: db_url.to_owned(),
            client: reqwest::Client::new(),
            child,
            workers,
            stderr: rx,
            sidecar: sidecar.map(|f| (f.clone(), attached)),
        }
    }

    /// The fake sidecar this server runs with, with `--bus dapr`.
    pub fn sidecar(&self) -> Option<&dapr::FakeDapr> {
        self.sidecar.as_ref().map(|(f, _)| f)
    }

    /// `path` on every process of the server: the API process first, then (one process per
    /// role) each other role's.
    pub fn urls(&self, path: &str) -> Vec<String> {
        std::iter::once(&self.base)
            .chain(self.workers.iter().map(|(_, b)| b))
            .map(|b| format!("{b}{path}"))
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (to every process of the server) and waits for the exit status: the
    /// API process's, or the first other one's that did not exit cleanly.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pids = std::iter::once(&self.child).chain(self.workers.iter().map(|(c, _)| c));
        let _ = Command::new("kill")
            .arg("-TERM")
            .args(pids.map(|c| c.id().to_string()))
            .status();
        let status = self.child.wait().unwrap();
        let workers: Vec<_> = self
            .workers
            .iter_mut()
            .map(|(w, _)| w.wait().unwrap())
            .collect();
        workers.into_iter().find(|w| !w.success()).unwrap_or(status)
    }

    /// `GET path` with a bearer token (none when empty), answered with JSON.
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        let mut req = self.client.get(self.url(path));
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// The text of `/metrics` (of the first process, the one serving the API).
    pub async fn metrics(&self) -> String {
        let res = self.client.get(self.url("/metrics")).send().await.unwrap();
        res.text().await.unwrap()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill9(mut self) {
        self.kill_all();
    }

    /// Prints the last lines the server logged that no test read, for a failing test's
    /// report (the processes are gone by then, so the reader threads have sent all).
    fn print_log(&self) {
        const LAST: usize = 300;
        let mut lines = std::collections::VecDeque::with_capacity(LAST);
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            if lines.len() == LAST {
                lines.pop_front();
            }
            lines.push_back(line);
        }
        eprintln!(
            "--- the server's log ({} at {}), last {} lines ---",
            self.db_url,
            self.base,
            lines.len()
        );
        for line in lines {
            eprintln!("{line}");
        }
    }

    fn kill_all(&mut self) {
        if let Some((fake, ids)) = &self.sidecar {
            for id in ids {
                fake.detach(id);
            }
        }
        for c in std::iter::once(&mut self.child).chain(self.workers.iter_mut().map(|(c, _)| c)) {
            let _ = c.kill();
            let _ = c.wait();
        }
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
        self.kill_all();
        if std::thread::panicking() {
            self.print_log();
        }
    }
}
