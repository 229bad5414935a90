use serde_json::json;

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
