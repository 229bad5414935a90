//! The README's curl tour works as written, against the real binary.

use std::process::Command;

use crate::App;

#[tokio::test]
async fn the_readme_tour_runs_as_written() {
    if crate::through_broker() {
        // The tour is the README's first run: one binary on the embedded log, where the audit
        // log it reads at once is written within microseconds; through a broker it is written
        // a moment later (the services suite covers that path).
        eprintln!("the README tour runs on the embedded log only");
        return;
    }
    let Some(app) = App::new().await else { return };
    let readme =
        std::fs::read_to_string(format!("{}/../../README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let start = readme.find("## A short tour").unwrap();
    let block = &readme[start..];
    let code = block
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("\n```")
        .next()
        .unwrap();
    let script = format!(
        "set -euo pipefail\n{}",
        code.replace("http://localhost:8080", &app.server.base)
    )
    .replace("ada@example.com", "tour@example.com");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the tour failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""title":"Pay rent""#), "{stdout}");
    assert!(
        stdout.contains(r#""status":"completed""#),
        "task #2 was completed: {stdout}"
    );
    assert!(
        stdout.contains(r#""status":422"#),
        "the bad input was refused: {stdout}"
    );
    assert!(
        stdout.contains("taskflow_outbox_events 4"),
        "created, created, updated, completed: {stdout}"
    );
    assert!(
        !stdout.contains("no such task"),
        "the history of the rent task was found: {stdout}"
    );
    assert!(
        stdout.contains(r#""type":"com.taskflow.task.created.v1""#),
        "the audit log lists the creations: {stdout}"
    );
    assert!(
        stdout.contains(r#""roles":{"#) && stdout.contains(r#""recurring":"ready""#),
        "readiness names the roles: {stdout}"
    );
}
