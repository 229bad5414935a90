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
    one_line_exit_2(
        &["serve", "--database-url", "mysql://localhost/x"],
        &[],
        "sqlite:PATH",
    );
    one_line_exit_2(
        &[
            "serve",
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
        ],
        &[],
        "cannot open database",
    );
    one_line_exit_2(
        &["serve", "--database-url", &db, "--token-ttl-hours", "0"],
        &[],
        "--token-ttl-hours",
    );
    one_line_exit_2(
        &["run", "--roles", "api,teleport", "--database-url", &db],
        &[],
        "teleport",
    );
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
