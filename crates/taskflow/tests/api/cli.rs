use std::process::Command;

use crate::BIN;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("TASKFLOW_BIND")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["run", "--help"],
        &["migrate", "--help"],
        &["audit", "rebuild", "--help"],
        &["nlu", "parse", "--help"],
    ] {
        let (code, out, _) = run(args, &[]);
        assert_eq!(code, 0, "{args:?}");
        assert!(out.contains("Usage"), "{args:?}: {out}");
    }
    let (_, out, _) = run(&["serve", "--help"], &[]);
    for flag in [
        "--bind",
        "--database-url",
        "--jwt-secret",
        "TASKFLOW_BIND",
        "TASKFLOW_DATABASE_URL",
        "--rate-limit-per-ip",
    ] {
        assert!(out.contains(flag), "serve --help mentions {flag}");
    }
    // The general options stand under "Options", not under the heading of the Kafka or Dapr
    // group listed before them.
    let (_, out, _) = run(&["run", "--help"], &[]);
    let first_group = out
        .find("\nKafka (with --bus kafka):")
        .expect("a Kafka heading");
    for flag in [
        "--max-streams-per-user",
        "--llm-base-url",
        "--shutdown-grace-secs",
    ] {
        let at = out.find(flag).unwrap_or(usize::MAX);
        assert!(
            at < first_group,
            "{flag} is listed with the general options: {out}"
        );
    }
}

fn one_line_exit_2(args: &[&str], env: &[(&str, &str)], mentions: &str) {
    let (code, _, err) = run(args, env);
    assert_eq!(code, 2, "{args:?}: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('{'))
        .collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {err}");
    assert!(
        lines[0].contains(mentions),
        "{:?} should mention {mentions}",
        lines[0]
    );
}

#[test]
fn a_bad_setting_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("t.db").display());
    one_line_exit_2(
        &["serve", "--bind", "nowhere", "--database-url", &db],
        &[],
        "--bind",
    );
    one_line_exit_2(
        &["serve", "--database-url", &db],
        &[("TASKFLOW_BIND", "999.1.1.1:1")],
        "--bind",
    );
    // Port 0 everywhere: no test depends on a fixed port (the README's server may be up).
    let any = "127.0.0.1:0";
    one_line_exit_2(
        &[
            "serve",
            "--bind",
            any,
            "--database-url",
            "mysql://localhost/x",
        ],
        &[],
        "sqlite:PATH",
    );
    one_line_exit_2(
        &[
            "serve",
            "--bind",
            any,
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
        ],
        &[],
        "Connection refused",
    );
    one_line_exit_2(
        &[
            "serve",
            "--bind",
            any,
            "--database-url",
            &db,
            "--token-ttl-hours",
            "0",
        ],
        &[],
        "--token-ttl-hours",
    );
    one_line_exit_2(
        &["run", "--roles", "api,teleport", "--database-url", &db],
        &[],
        "teleport",
    );
    // Kafka settings that cannot work together are named before any broker is asked.
    let kafka = [
        "serve",
        "--bind",
        any,
        "--database-url",
        &db,
        "--bus",
        "kafka",
    ];
    one_line_exit_2(
        &[&kafka[..], &["--kafka-security-protocol", "sasl-ssl"]].concat(),
        &[],
        "--kafka-sasl-mechanism",
    );
    one_line_exit_2(
        &kafka,
        &[
            ("TASKFLOW_KAFKA_SASL_MECHANISM", "scram-sha-512"),
            ("TASKFLOW_KAFKA_SECURITY_PROTOCOL", "sasl-ssl"),
            ("TASKFLOW_KAFKA_USERNAME", "app"),
        ],
        "--kafka-password",
    );
    one_line_exit_2(
        &[&kafka[..], &["--kafka-sasl-mechanism", "PLAIN"]].concat(),
        &[],
        "sasl-ssl",
    );
    // A sidecar's address that is no URL is named before the sidecar is asked, for every
    // use of it, and so is a state store that is no component name.
    let serve = ["serve", "--bind", any, "--database-url", &db];
    for uses in [
        &["--dapr-state-store", "taskflow-state"][..],
        &["--timers", "dapr-jobs"],
        &["--dapr-secret-store", "kubernetes"],
    ] {
        one_line_exit_2(
            &[
                &serve[..],
                uses,
                &["--dapr-http-endpoint", "localhost:3500"],
            ]
            .concat(),
            &[],
            "--dapr-http-endpoint localhost:3500: not an http:// or https:// URL",
        );
    }
    one_line_exit_2(
        &[&serve[..], &["--dapr-state-store", "state/store"]].concat(),
        &[],
        "--dapr-state-store: `state/store` is not a Dapr component name",
    );
    one_line_exit_2(
        &[
            "migrate",
            "--database-url",
            &db,
            "--dapr-secret-store",
            "kubernetes",
            "--dapr-http-endpoint",
            "localhost:3500",
        ],
        &[],
        "--dapr-http-endpoint localhost:3500",
    );
}

#[test]
fn a_bad_database_url_is_reported_even_when_the_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    one_line_exit_2(
        &[
            "serve",
            "--bind",
            &addr,
            "--database-url",
            "mysql://localhost/x",
        ],
        &[],
        "--database-url",
    );
}

#[test]
fn an_unknown_flag_shows_how_the_command_is_used() {
    let (code, _, err) = run(&["serve", "--bnd", "x"], &[]);
    assert_eq!(code, 2);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines[0].contains("--bnd"), "{err}");
    assert!(
        lines.iter().any(|l| l.starts_with("Usage: taskflow serve")),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_postgres_database_says_so_in_a_few_words() {
    let Ok(admin) = std::env::var("TASKFLOW_TEST_PG_URL") else {
        return;
    };
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let url = format!("{base}/taskflow_no_such_database");
    let (code, _, err) = run(&["migrate", "--database-url", &url], &[]);
    assert_eq!(code, 2, "{err}");
    let line = err.lines().find(|l| l.starts_with("taskflow:")).unwrap();
    assert!(line.contains("does not exist"), "{line}");
    assert!(
        !line.contains("line") && !line.contains("timed out"),
        "{line}"
    );
}

/// Starts `serve` with `args` and returns the child and the address it listens on.
fn serve_child(args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve"])
        .args(args)
        .env_remove("TASKFLOW_BIND")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("the server logs").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "listening" {
            break v["addr"].as_str().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

#[tokio::test]
async fn bind_takes_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("t.db").display());
    let (mut child, addr) = serve_child(&["--bind", "localhost:0", "--database-url", &db]);
    let res = reqwest::get(format!("http://{addr}/healthz/live"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn after_a_clean_stop_the_sqlite_file_alone_holds_the_data_and_backup_copies_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.db");
    let db = format!("sqlite:{}", file.display());
    let (mut child, addr) = serve_child(&["--bind", "127.0.0.1:0", "--database-url", &db]);
    let client = reqwest::Client::new();
    let res = client
        .post(format!("http://{addr}/api/auth/signup"))
        .json(&serde_json::json!({"email": "ada@example.com", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    let token = res.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = client
        .post(format!("http://{addr}/api/tasks"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"title": "kept"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    // A copy while the server runs.
    let copy = dir.path().join("copy.db");
    let copy_path = copy.display().to_string();
    let (code, _, err) = run(&["backup", "--database-url", &db, &copy_path], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("backed up"), "{err}");
    let (code, _, err) = run(&["backup", "--database-url", &db, &copy_path], &[]);
    assert_eq!(code, 2, "an existing file is not overwritten: {err}");

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    let wal = dir.path().join("t.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "the WAL was checkpointed into the file"
    );
    // The main file alone, moved elsewhere, has the task; so has the backup.
    let alone = tempfile::tempdir().unwrap();
    std::fs::copy(&file, alone.path().join("t.db")).unwrap();
    for path in [alone.path().join("t.db"), copy] {
        let store = taskflow_store::connect(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        assert_eq!(store.count_tasks().await.unwrap(), 1, "{}", path.display());
    }
}

#[test]
fn a_taken_address_exits_2_with_one_line_and_nothing_else() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("t.db").display());
    let (code, _, err) = run(&["serve", "--bind", &addr, "--database-url", &db], &[]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err.lines().count(),
        1,
        "only the error, no start-up logs: {err}"
    );
    assert!(
        err.contains("cannot listen on") && err.contains(&addr),
        "{err}"
    );
    assert!(!dir.path().join("t.db").exists(), "nothing was created");
}

#[test]
fn a_password_in_the_database_url_is_never_printed() {
    let (code, _, err) = run(
        &[
            "migrate",
            "--database-url",
            "postgres://u:hunter2@127.0.0.1:1/x",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn migrate_creates_the_schema_and_is_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("m.db").display());
    assert_eq!(run(&["migrate", "--database-url", &db], &[]).0, 0);
    assert_eq!(
        run(
            &["migrate", "--database-url", &db],
            &[("TASKFLOW_LOG_FORMAT", "json")]
        )
        .0,
        0
    );
    assert!(dir.path().join("m.db").exists());
}

#[tokio::test]
async fn the_bind_flag_wins_over_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("b.db").display());
    // The env var names a port that cannot be bound; the flag's port 0 is used instead.
    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            &db,
        ])
        .env("TASKFLOW_BIND", "256.0.0.1:1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "the server runs");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn nlu_parse_explain_shows_which_words_became_which_field() {
    let (code, out, _) = run(
        &[
            "nlu",
            "parse",
            "--explain",
            "--now",
            "2026-11-22T10:00:00",
            "--tz",
            "America/New_York",
            "add submit timesheet every friday at 4pm remind me 30 minutes before #work p2",
        ],
        &[],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["task"]["title"], "submit timesheet",
        "the parse itself is unchanged"
    );
    let read: Vec<(&str, &str)> = v["explain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["words"].as_str().unwrap(), r["as"].as_str().unwrap()))
        .collect();
    assert_eq!(
        read,
        [
            ("add", "command"),
            ("every friday", "recurrence"),
            ("remind me 30 minutes before", "reminders"),
            ("#work", "tags"),
            ("p2", "priority"),
            ("at 4pm", "due"),
            ("submit timesheet", "title"),
        ]
    );
    // Without the flag the output is the parse alone.
    let (_, out, _) = run(&["nlu", "parse", "--tz", "UTC", "complete #4"], &[]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v.get("explain").is_none(), "{v}");
}

#[test]
fn nlu_parse_prints_how_an_utterance_is_understood() {
    let (code, out, _) = run(
        &[
            "nlu",
            "parse",
            "--now",
            "2026-11-22T10:00:00",
            "--tz",
            "America/New_York",
            "add buy milk tomorrow 5pm #groceries",
        ],
        &[],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"intent": "add_task", "task": {"title": "buy milk", "due_at": "2026-11-23T17:00:00-05:00", "tags": ["groceries"]}})
    );
    // An RFC 3339 --now is converted to the zone; words may come as several arguments.
    let (code, out, _) = run(
        &[
            "nlu",
            "parse",
            "--now",
            "2026-11-22T15:00:00Z",
            "--tz",
            "America/New_York",
            "complete",
            "#4",
        ],
        &[],
    );
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["target"]["number"],
        4
    );
    one_line_exit_2(
        &["nlu", "parse", "--tz", "Mars/Olympus", "help"],
        &[],
        "Mars/Olympus",
    );
    one_line_exit_2(
        &["nlu", "parse", "--now", "yesterday-ish", "help"],
        &[],
        "yesterday-ish",
    );
}

#[test]
fn the_kafka_clients_own_errors_reach_the_log() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("t.db").display());
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let brokers = closed.local_addr().unwrap().to_string();
    drop(closed);
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve", "--bind", "127.0.0.1:0"])
        .args([
            "--database-url",
            &db,
            "--bus",
            "kafka",
            "--kafka-brokers",
            &brokers,
        ])
        .args(["--kafka-create-topics", "false"])
        .env_remove("TASKFLOW_BIND")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(r#""target":"librdkafka""#) && l.contains(&brokers) => {
                break Some(l);
            }
            Ok(l) => seen.push(l),
            Err(_) => break None,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let line = found.unwrap_or_else(|| panic!("no librdkafka line: {seen:#?}"));
    assert!(line.contains("Connection refused"), "{line}");
}
