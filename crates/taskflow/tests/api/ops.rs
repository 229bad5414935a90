use serde_json::{Value, json};

use crate::{App, BIN};

#[tokio::test]
async fn health_endpoints_answer() {
    let Some(app) = App::new().await else { return };
    let live = app.get("/healthz/live").await;
    assert_eq!(
        (live.status.as_u16(), live.body["status"].as_str()),
        (200, Some("ok"))
    );
    let ready = app.get("/healthz/ready").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["checks"]["database"], "ok");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_show_the_outbox() {
    let Some(app) = App::new().await else { return };
    app.task(json!({"title": "a"})).await;
    app.get("/api/tasks?status=bogus").await;
    let text = app.server.metrics().await;
    assert!(
        text.contains(r#"http_requests_total{route="/api/tasks",method="POST",status="201"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"http_requests_total{route="/api/tasks",method="GET",status="422"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket{route=\"/api/tasks\""),
        "{text}"
    );
    assert!(text.contains("taskflow_outbox_events 1"), "{text}");
    assert!(!text.contains(app.user_id()), "no ids in labels");
}

#[tokio::test]
async fn openapi_and_docs_are_served() {
    let Some(app) = App::new().await else { return };
    let doc = app.get("/openapi.json").await.body;
    for path in [
        "/api/tasks",
        "/api/tasks/{id}",
        "/api/tasks/{id}/complete",
        "/api/auth/signup",
        "/api/me",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["securitySchemes"].get("bearer").is_some());
    let html = app
        .server
        .client
        .get(app.server.url("/docs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(r#"data-url="/openapi.json""#),
        "the docs page loads the spec"
    );
    // Everything it loads comes from this server: no CDN, no web fonts.
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    assert!(html.contains(r#""withDefaultFonts": false"#), "{html}");
    let src = html
        .split(r#"<script src=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let script = app
        .server
        .client
        .get(app.server.url(&src))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert_eq!(script.headers()["content-encoding"], "gzip");
    assert!(
        script.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let bytes = script.bytes().await.unwrap();
    assert!(
        bytes.len() > 1_000_000 && bytes.starts_with(&[0x1f, 0x8b]),
        "the embedded bundle"
    );
    let plain = app
        .server
        .client
        .get(app.server.url(&src))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 406);
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_a_given_one() {
    let Some(app) = App::new().await else { return };
    let res = app.get("/api/tasks").await;
    assert!(res.headers.get("x-request-id").is_some());
    let res = app
        .call_as(
            &app.token,
            reqwest::Method::GET,
            "/api/nope",
            None,
            &[("x-request-id", "abc-123")],
        )
        .await;
    assert_eq!(res.headers.get("x-request-id").unwrap(), "abc-123");
    assert_eq!(res.body["request_id"], "abc-123");
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let Some(app) = App::new().await else { return };
    let App {
        server, db: _db, ..
    } = app;
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let Some(app) = App::new().await else { return };
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            app.task(json!({"title": format!("t{i}")})).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let done = app
        .call(
            reqwest::Method::POST,
            &format!("/api/tasks/{}/complete", ids[3]),
            None,
        )
        .await;
    assert_eq!(done.status, 200);
    let App {
        server, db, token, ..
    } = app;
    server.kill9();
    let server = taskflow_testkit::TestServer::start(BIN, &db.url, &[]);
    let list: serde_json::Value = server.get_json("/api/tasks?limit=200", &token).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 20);
    let store = taskflow_store::connect(&db.url).await.unwrap();
    assert_eq!(
        store.count_events().await.unwrap(),
        21,
        "every acknowledged change kept its event"
    );
    let t: serde_json::Value = server
        .get_json(&format!("/api/tasks/{}", ids[3]), &token)
        .await;
    assert_eq!(t["status"], "completed");
}

/// A process without the API runs without transparent huge pages (mimalloc's heap would
/// otherwise make each touched 2 MiB resident whole); the API keeps them, for speed.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_worker_process_runs_without_huge_pages_and_the_api_with_them() {
    let Some(db) = taskflow_testkit::TestDb::new(taskflow_testkit::Backend::from_env()).await
    else {
        return;
    };
    let api = taskflow_testkit::TestServer::start_with(BIN, "run", &db.url, &["--roles", "api"]);
    let worker =
        taskflow_testkit::TestServer::start_with(BIN, "run", &db.url, &["--roles", "audit"]);
    let environ = |pid: u32| std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let set = |pid: u32| {
        environ(pid)
            .split(|b| *b == 0)
            .any(|v| v == b"MIMALLOC_ALLOW_THP=0")
    };
    assert!(
        set(worker.pid()),
        "the worker started itself again without them"
    );
    assert!(!set(api.pid()), "the API keeps them");
    // Where the kernel says (Linux 6.x `THP_enabled`), the worker's are off.
    let thp = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:").map(|v| v.trim().to_owned()))
    };
    if let (Some(worker), Some(api)) = (thp(worker.pid()), thp(api.pid())) {
        assert_eq!((worker.as_str(), api.as_str()), ("0", "1"));
    }
    // The worker is the same process, serving its role.
    let ready = crate::kafka::poll(
        &worker,
        "",
        "/healthz/ready",
        std::time::Duration::from_secs(10),
        |b| b["status"] == "ready",
    )
    .await;
    assert_eq!(ready["roles"], json!({"audit": "ready"}), "{ready}");
}

/// A process is not ready before its roles have said so: from the moment it listens, its
/// readiness names every role it runs (an empty list once read as ready).
#[tokio::test]
async fn readiness_names_every_role_from_the_first_answer() {
    let Some(db) = taskflow_testkit::TestDb::new(taskflow_testkit::Backend::from_env()).await
    else {
        return;
    };
    let worker = taskflow_testkit::TestServer::start_with(
        BIN,
        "run",
        &db.url,
        &["--roles", "audit,notifier"],
    );
    let res = worker
        .client
        .get(worker.url("/healthz/ready"))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    for role in ["audit", "notifier"] {
        assert!(body["roles"][role].is_string(), "{role} is named: {body}");
    }
}

/// Once its roles are ready, a process gives back the resident pages of code and read-only
/// data that only starting ran (they stay in the kernel's page cache), and goes on serving.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_process_gives_back_its_start_up_pages_and_goes_on_serving() {
    use std::time::{Duration, Instant};
    let Some(app) = crate::App::new().await else {
        return;
    };
    let pid = app.server.pid();
    // The binary's code resident in the process, KiB.
    let code = || {
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
        let (mut kib, mut counting) = (0u64, false);
        for line in smaps.lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some(range), Some(perms)) if range.contains('-') && !range.ends_with(':') => {
                    counting = perms == "r-xp" && line.contains("/taskflow");
                }
                (Some("Rss:"), Some(v)) if counting => kib += v.parse::<u64>().unwrap_or(0),
                _ => {}
            }
        }
        kib
    };
    let before = code();
    assert!(
        before > 0,
        "the binary's code is resident as the process starts"
    );
    let line = std::iter::from_fn(|| app.server.stderr.recv_timeout(Duration::from_secs(40)).ok())
        .take(2000)
        .find(|l| l.contains("start-up pages given back"))
        .expect("the process says it gave back its start-up pages");
    let said: Value = serde_json::from_str(&line).unwrap();
    assert!(said["kib"].as_u64().unwrap_or(0) > 1024, "{line}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = code();
    // What still runs comes back (in an unoptimised build, with its code spread out, much of
    // it): at least a quarter of the code has left.
    while after * 4 > before * 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = code();
    }
    assert!(
        after * 4 <= before * 3,
        "resident code KiB: {before} before, {after} after"
    );
    // It goes on serving, end to end: the request, the event, the stream.
    let mut sse = crate::services::Sse::open(&app.server, &app.token, None).await;
    app.task(json!({"title": "after the pages went"})).await;
    sse.next_of("com.taskflow.task.created.v1", Duration::from_secs(10))
        .await
        .expect("task.created on the stream");
}

/// `link-order.txt` names the functions to lay out first by their mangled names, whose hashes
/// change with the dependencies of every workspace crate (cargo's `-C metadata`) and with the
/// compiler: after such a change the file names functions the binary no longer has, and the
/// worker roles' code is spread out again (idle RSS up by 6 MiB, bench/RESULTS.md). The file
/// records what it was made for; `bench/layout` makes it again. This catches the common case,
/// a dependency change; a compiler update needs the same (the release workflow pins one).
#[test]
fn the_code_layout_was_made_for_these_dependencies() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let order = std::fs::read_to_string(format!("{dir}/link-order.txt")).unwrap();
    let made_for = order
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# made for: "))
        .expect("link-order.txt starts with what it was made for");
    let lock = std::fs::read(format!("{dir}/../../Cargo.lock")).unwrap();
    // FNV-1a, 64 bits: what bench/layout computes.
    let hash = lock.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    // The compiler it was made with is recorded beside, not compared: CI may build with
    // another, and only the release image's build (pinned) must match.
    let lock_part = made_for.split(',').next().unwrap_or_default();
    assert_eq!(
        lock_part,
        format!("Cargo.lock {hash:016x}"),
        "crates/taskflow/link-order.txt is stale: run bench/layout (about 6 minutes)"
    );
}

/// The binary's relative relocations are packed (DT_RELR): unpacked, the loader read 1.7 MB of
/// them in every process at start (about 2 MiB of each role's idle memory).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_binary_packs_its_relative_relocations() {
    use std::io::{Read as _, Seek as _, SeekFrom};
    const SHT_RELA: u32 = 4;
    const SHT_RELR: u32 = 19;
    let mut file = std::fs::File::open(BIN).unwrap();
    let mut header = [0u8; 64];
    file.read_exact(&mut header).unwrap();
    assert_eq!(&header[..5], b"\x7fELF\x02", "a 64-bit ELF file");
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]) as usize;
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let (offset, size, count) = (
        u64_at(&header, 0x28),
        u16_at(&header, 0x3a),
        u16_at(&header, 0x3c),
    );
    let mut sections = vec![0u8; size * count];
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.read_exact(&mut sections).unwrap();
    let (mut relr, mut rela) = (0, 0);
    for s in sections.chunks(size) {
        let kind = u32::from_le_bytes(s[4..8].try_into().unwrap());
        match kind {
            SHT_RELR => relr += u64_at(s, 0x20),
            SHT_RELA => rela += u64_at(s, 0x20),
            _ => {}
        }
    }
    assert!(relr > 0, "no packed relocations");
    assert!(
        rela < 64 * 1024,
        "{rela} bytes of unpacked relocations left"
    );
}
