//! The event-driven services end to end, through the real binary: recurring tasks,
//! reminders and notifications, the audit trail, live events over SSE and WebSocket, roles.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use taskflow_testkit::TestServer;

use crate::{App, BIN, contract::validator};

/// A server-sent event: (id, event type, data as JSON).
type SseEvent = (String, String, Value);

/// An open `/api/events` stream.
pub struct Sse {
    res: reqwest::Response,
    buf: String,
}

impl Sse {
    pub async fn open(server: &TestServer, token: &str, last_event_id: Option<&str>) -> Self {
        let mut req = server
            .client
            .get(server.url("/api/events"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        Self {
            res,
            buf: String::new(),
        }
    }

    /// The next event (heartbeats skipped), or `None` when none comes within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut ty, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ty = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if ty.is_empty() {
                    continue; // a comment (heartbeat)
                }
                return Some((id, ty, serde_json::from_str(&data).unwrap()));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.res.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(_) => panic!("the stream ended"),
                Err(_) => return None,
            }
        }
    }

    /// The next event of type `ty`, skipping others.
    pub async fn next_of(&mut self, ty: &str, wait: Duration) -> Option<(SseEvent, Instant)> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let e = self.next(left).await?;
            if e.1 == ty {
                return Some((e, Instant::now()));
            }
        }
    }
}

const CREATED: &str = "com.taskflow.task.created.v1";
const REMINDER: &str = "com.taskflow.reminder.triggered.v1";
const NOTIFICATION: &str = "com.taskflow.notification.created.v1";

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Polls `GET path` until `done` holds for its body (at most `wait`).
async fn poll(app: &App, path: &str, wait: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let res = app.get(path).await;
        assert_eq!(res.status, 200, "{}", res.body);
        if done(&res.body) || Instant::now() > deadline {
            return res.body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn assert_schema(event: &Value) {
    let ty = event["type"].as_str().unwrap();
    let errors: Vec<String> = validator(ty)
        .iter_errors(event)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{ty} does not match its schema: {errors:?}\n{event:#}"
    );
}

#[tokio::test]
async fn completing_a_recurring_task_creates_exactly_one_next_occurrence_across_dst() {
    let Some(app) = App::new().await else { return };
    // 9:00 in New York on Saturday 2030-03-09 (EST); DST starts on Sunday the 10th.
    let t = app
        .task(json!({"title": "Water the plants", "due_at": "2030-03-09T14:00:00Z", "recurrence": "FREQ=DAILY",
                      "priority": "high", "tags": ["home"], "reminders": [{"before_minutes": 10}]}))
        .await;
    let id = t["id"].as_str().unwrap();
    app.call(Method::POST, &format!("/api/tasks/{id}/complete"), None)
        .await;
    // Completing again changes nothing and must not create a second occurrence.
    app.call(Method::POST, &format!("/api/tasks/{id}/complete"), None)
        .await;
    let body = poll(
        &app,
        "/api/tasks?status=pending",
        Duration::from_secs(5),
        |b| b["items"].as_array().is_some_and(|i| !i.is_empty()),
    )
    .await;
    let next = &body["items"][0];
    assert_eq!(
        next["due_at"], "2030-03-10T13:00:00Z",
        "9:00 EDT, the day after"
    );
    assert_eq!(next["number"], 2);
    assert_eq!(next["series_id"], t["id"]);
    assert_eq!(next["occurrence"], 2);
    assert_eq!(next["priority"], "high");
    assert_eq!(next["tags"], json!(["home"]));
    assert_eq!(next["recurrence"], "FREQ=DAILY");
    assert_eq!(next["reminders"][0]["before_minutes"], 10);
    assert_eq!(next["reminders"][0]["fire_at"], "2030-03-10T12:50:00Z");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = app.get("/api/tasks").await;
    assert_eq!(
        all.body["items"].as_array().unwrap().len(),
        2,
        "exactly one next occurrence"
    );
}

#[tokio::test]
async fn a_reminder_arrives_on_sse_and_in_notifications_within_a_second_and_a_cancelled_one_never()
{
    let Some(app) = App::new().await else { return };
    let mut sse = Sse::open(&app.server, &app.token, None).await;
    let fire_at = Utc::now() + chrono::TimeDelta::milliseconds(2000);
    let t = app
        .task(json!({"title": "Call mom", "reminders": [{"at": rfc3339(fire_at)}]}))
        .await;
    let cancelled = app
        .task(json!({"title": "Never mind", "reminders": [{"at": rfc3339(fire_at)}]}))
        .await;
    let done = app
        .call(
            Method::POST,
            &format!("/api/tasks/{}/complete", cancelled["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(done.body["reminders"][0]["status"], "cancelled");

    let ((id, _, reminder), _) = sse
        .next_of(REMINDER, Duration::from_secs(4))
        .await
        .expect("the reminder fired");
    let late = Utc::now() - fire_at;
    assert!(
        late < chrono::TimeDelta::seconds(1),
        "arrived {late} after its time"
    );
    assert!(late >= chrono::TimeDelta::zero(), "fired early");
    assert!(id.parse::<i64>().is_ok(), "the SSE id is the log position");
    assert_eq!(reminder["subject"], t["id"]);
    assert_eq!(reminder["data"]["title"], "Call mom");
    assert_eq!(reminder["data"]["late"], false);
    assert_schema(&reminder);
    let ((_, _, note), _) = sse
        .next_of(NOTIFICATION, Duration::from_secs(1))
        .await
        .expect("a notification");
    assert_schema(&note);
    assert!(Utc::now() - fire_at < chrono::TimeDelta::milliseconds(1500));

    let list = app.get("/api/notifications").await;
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", list.body);
    assert_eq!(items[0]["task_id"], t["id"]);
    assert_eq!(items[0]["title"], "Call mom");
    assert!(items[0]["read_at"].is_null());
    let nid = items[0]["id"].as_str().unwrap();
    let read = app
        .call(
            Method::POST,
            &format!("/api/notifications/{nid}/read"),
            None,
        )
        .await;
    assert_eq!(read.status, 204);
    let list = app.get("/api/notifications?unread=true").await;
    assert_eq!(list.body["items"], json!([]));
    app.call(Method::POST, "/api/notifications/nope/read", None)
        .await
        .problem(404);

    // The cancelled reminder never arrives.
    assert!(
        sse.next_of(REMINDER, Duration::from_millis(1500))
            .await
            .is_none()
    );
    let task = app
        .get(&format!("/api/tasks/{}", t["id"].as_str().unwrap()))
        .await;
    assert_eq!(task.body["reminders"][0]["status"], "fired");
}

#[tokio::test]
async fn a_reminder_that_came_due_during_a_crash_fires_within_five_seconds_of_the_restart() {
    let Some((server, db)) = crate::start(&[]).await else {
        return;
    };
    let (token, _) = server.signup("ada@example.com", "UTC").await;
    let fire_at = Utc::now() + chrono::TimeDelta::milliseconds(1500);
    let res = server
        .client
        .post(server.url("/api/tasks"))
        .bearer_auth(&token)
        .json(&json!({"title": "Take the pills", "reminders": [{"at": rfc3339(fire_at)}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    server.kill9();
    tokio::time::sleep(Duration::from_secs(4)).await;

    let restarted = Instant::now();
    let server = TestServer::start(BIN, &db.url, &[]);
    let app = App {
        server,
        db,
        token,
        user: Value::Null,
    };
    let list = poll(&app, "/api/notifications", Duration::from_secs(12), |b| {
        b["items"].as_array().is_some_and(|i| !i.is_empty())
    })
    .await;
    // Through a broker the killed relay's lease must first expire (10 s from the kill, 4 s
    // before the restart), and on Kafka the notifier's group waits out the killed member's
    // session (6 s) before it gets the partitions back.
    let bound = if crate::through_broker() {
        Duration::from_secs(12)
    } else {
        Duration::from_secs(5)
    };
    assert!(
        restarted.elapsed() < bound,
        "took {:?}",
        restarted.elapsed()
    );
    assert_eq!(list["items"][0]["title"], "Take the pills");
    assert!(
        list["items"][0]["body"].as_str().unwrap().contains("late"),
        "{}",
        list["items"][0]
    );
    let store = taskflow_store::connect(&app.db.url).await.unwrap();
    let fired: Vec<_> = store
        .events_after(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.ty == REMINDER)
        .collect();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].event.data["late"], true, "marked late");
    assert!(fired[0].event.data["late_by_ms"].as_i64().unwrap() >= 2000);
}

#[tokio::test]
async fn the_audit_history_lists_created_updated_completed_in_order_and_only_to_its_owner() {
    let Some(app) = App::new().await else { return };
    let t = app.task(json!({"title": "File taxes"})).await;
    let path = format!("/api/tasks/{}", t["id"].as_str().unwrap());
    app.patch(&path, json!({"priority": "urgent"})).await;
    app.call(Method::POST, &format!("{path}/complete"), None)
        .await;
    let history = poll(
        &app,
        &format!("{path}/history"),
        Duration::from_secs(5),
        |b| b["items"].as_array().is_some_and(|i| i.len() >= 3),
    )
    .await;
    let types: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "com.taskflow.task.created.v1",
            "com.taskflow.task.updated.v1",
            "com.taskflow.task.completed.v1"
        ]
    );
    let first = &history["items"][0];
    assert_eq!(first["task_id"], t["id"]);
    assert!(first["event_id"].as_str().is_some() && first["occurred_at"].as_str().is_some());
    assert_eq!(history["items"][1]["data"]["changed"], json!(["priority"]));
    let audit = app.get("/api/audit").await;
    assert_eq!(audit.body["items"].as_array().unwrap().len(), 3);

    // Deleting keeps the history; another user sees none of it.
    app.call(Method::DELETE, &path, None).await;
    poll(
        &app,
        &format!("{path}/history"),
        Duration::from_secs(5),
        |b| b["items"].as_array().is_some_and(|i| i.len() == 4),
    )
    .await;
    let (other, _) = app.server.signup("eve@example.com", "UTC").await;
    app.call_as(&other, Method::GET, &format!("{path}/history"), None, &[])
        .await
        .problem(404);
    let theirs = app
        .call_as(&other, Method::GET, "/api/audit", None, &[])
        .await;
    assert_eq!(theirs.body["items"], json!([]));
    app.get("/api/audit?limit=0").await.problem(422);
}

#[tokio::test]
async fn two_sse_clients_of_one_user_both_receive_an_event_and_another_users_client_nothing() {
    let Some(app) = App::new().await else { return };
    let (other, _) = app.server.signup("eve@example.com", "UTC").await;
    let mut a1 = Sse::open(&app.server, &app.token, None).await;
    let mut a2 = Sse::open(&app.server, &app.token, None).await;
    let mut b = Sse::open(&app.server, &other, None).await;
    let t = app.task(json!({"title": "Shared news"})).await;
    for s in [&mut a1, &mut a2] {
        let ((_, ty, ev), _) = s
            .next_of(CREATED, Duration::from_secs(2))
            .await
            .expect("the event");
        assert_eq!(ty, CREATED);
        assert_eq!(ev["subject"], t["id"]);
        assert_eq!(ev["data"]["task_data"]["title"], "Shared news");
    }
    assert!(
        b.next(Duration::from_millis(700)).await.is_none(),
        "another user's client gets nothing"
    );
    // Their own events do reach them.
    let res = app
        .call_as(
            &other,
            Method::POST,
            "/api/tasks",
            Some(json!({"title": "Mine"})),
            &[],
        )
        .await;
    let ((_, _, ev), _) = b
        .next_of(CREATED, Duration::from_secs(2))
        .await
        .expect("own event");
    assert_eq!(ev["subject"], res.body["id"]);
    assert!(a1.next(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn an_sse_stream_resumes_after_last_event_id() {
    let Some(app) = App::new().await else { return };
    for title in ["one", "two", "three"] {
        app.task(json!({"title": title})).await;
    }
    let mut all = Sse::open(&app.server, &app.token, Some("0")).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(all.next(Duration::from_secs(2)).await.expect("replayed").0);
    }
    let mut resumed = Sse::open(&app.server, &app.token, Some(&ids[0])).await;
    let titles: Vec<Value> = [
        resumed.next(Duration::from_secs(2)).await,
        resumed.next(Duration::from_secs(2)).await,
    ]
    .into_iter()
    .map(|e| e.unwrap().2["data"]["task_data"]["title"].clone())
    .collect();
    assert_eq!(titles, [json!("two"), json!("three")]);
    // Then live.
    app.task(json!({"title": "four"})).await;
    let live = resumed.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!(live.2["data"]["task_data"]["title"], "four");
    let bad = app
        .call_as(
            &app.token,
            Method::GET,
            "/api/events",
            None,
            &[("Last-Event-ID", "yesterday")],
        )
        .await;
    bad.problem(422);
}

#[tokio::test]
async fn the_websocket_carries_the_same_cloudevents() {
    use futures_util::StreamExt as _;
    let Some(app) = App::new().await else { return };
    let url = app
        .server
        .url(&format!("/api/ws?access_token={}", app.token))
        .replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let t = app.task(json!({"title": "Over the socket"})).await;
    let frame = tokio::time::timeout(Duration::from_secs(2), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ev: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!(ev["type"], CREATED);
    assert_eq!(ev["subject"], t["id"]);
    // Without a token there is no socket.
    let anon = app.server.url("/api/ws").replace("http://", "ws://");
    assert!(tokio_tungstenite::connect_async(anon).await.is_err());
}

#[tokio::test]
async fn each_role_runs_on_its_own_and_reports_readiness() {
    let Some((server, db)) = crate::start(&[]).await else {
        return;
    };
    server.terminate();
    // The API alone: no live events here, and readiness names the role.
    let api = TestServer::start_with(BIN, "run", &db.url, &["--roles", "api"]);
    let ready: Value = api.get_json("/healthz/ready", "").await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["roles"], json!({"api": "ready"}));
    let (token, _) = api.signup("ada@example.com", "UTC").await;
    let res = api
        .client
        .get(api.url("/api/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let res = api.client.get(api.url("/api/events")).send().await.unwrap();
    assert_eq!(res.status(), 401, "no token");
    // A completed recurring task waits in the log for the recurring role.
    let t: Value = api.client.post(api.url("/api/tasks")).bearer_auth(&token)
        .json(&json!({"title": "Weekly review", "due_date": "2030-01-04", "recurrence": "FREQ=WEEKLY"}))
        .send().await.unwrap().json().await.unwrap();
    api.client
        .post(api.url(&format!(
            "/api/tasks/{}/complete",
            t["id"].as_str().unwrap()
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    // The recurring role alone, in another process: it serves health only, and catches up.
    // With a broker the relay publishes what the API wrote; on the embedded log it has
    // nothing to do.
    let worker = TestServer::start_with(BIN, "run", &db.url, &["--roles", "recurring,audit,relay"]);
    let res = worker
        .client
        .get(worker.url("/api/tasks"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // A worker in another process polls the log; on a loaded machine that can take seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let body: Value = api.get_json("/api/tasks?status=pending", &token).await;
        if !body["items"].as_array().unwrap().is_empty() || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["items"][0]["due_date"], "2030-01-11");
    let ready: Value = worker.get_json("/healthz/ready", "").await;
    assert_eq!(
        ready["roles"],
        json!({"audit": "ready", "recurring": "ready", "relay": "ready"})
    );
    assert_eq!(worker.terminate().code(), Some(0));
    assert_eq!(api.terminate().code(), Some(0));
}

#[tokio::test]
async fn sigterm_with_open_live_streams_still_exits_promptly() {
    let Some(app) = App::new().await else { return };
    let _sse = Sse::open(&app.server, &app.token, None).await;
    let started = Instant::now();
    let App { server, .. } = app;
    assert_eq!(server.terminate().code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_user_may_hold_only_so_many_live_connections() {
    let Some(app) = App::with_args(&["--max-streams-per-user", "2"]).await else {
        return;
    };
    let _a = Sse::open(&app.server, &app.token, None).await;
    let b = Sse::open(&app.server, &app.token, None).await;
    let third = app.get("/api/events").await;
    assert!(
        third.problem(429)["detail"]
            .as_str()
            .unwrap()
            .contains("2 live connections")
    );
    assert_eq!(
        third.headers["retry-after"], "5",
        "the stream cap says when to retry"
    );
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _c = Sse::open(&app.server, &app.token, None).await;
}

#[tokio::test]
async fn taskflow_audit_rebuild_replays_the_event_log_into_an_identical_audit_log() {
    let Some(app) = App::new().await else { return };
    for i in 0..5 {
        let t = app.task(json!({"title": format!("Task {i}")})).await;
        if i % 2 == 0 {
            app.call(
                Method::POST,
                &format!("/api/tasks/{}/complete", t["id"].as_str().unwrap()),
                None,
            )
            .await;
        }
    }
    let before = poll(&app, "/api/audit", Duration::from_secs(5), |b| {
        b["items"].as_array().is_some_and(|i| i.len() == 8)
    })
    .await;
    assert_eq!(before["items"].as_array().unwrap().len(), 8);
    let App {
        server,
        db,
        token,
        user,
    } = app;
    assert_eq!(server.terminate().code(), Some(0));
    let stderr = rebuild_audit(&db.url);
    assert!(
        stderr.contains("audit log rebuilt: 8 entries replayed"),
        "{stderr}"
    );
    let server = TestServer::start(BIN, &db.url, &[]);
    let app = App {
        server,
        db,
        token,
        user,
    };
    assert_eq!(
        app.get("/api/audit").await.body,
        before,
        "identical after the rebuild"
    );
}

#[tokio::test]
async fn an_idle_stream_gets_heartbeats_and_metrics_show_lag_and_dead_letters_per_consumer() {
    let Some(app) = App::with_args(&["--heartbeat-secs", "1"]).await else {
        return;
    };
    let mut res = app
        .server
        .client
        .get(app.server.url("/api/events"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_millis(2500);
    while !text.contains(": heartbeat") && Instant::now() < deadline {
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(500), res.chunk()).await
        {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(
        text.contains(": heartbeat"),
        "no heartbeat within 2.5 s: {text:?}"
    );

    app.task(json!({"title": "Counted"})).await;
    // The consumers start alongside the listener: give them a moment.
    let expected = |m: &str| {
        ["recurring", "reminders", "notifier", "audit"]
            .iter()
            .all(|c| {
                (taskflow_testkit::through_dapr()
                    || m.contains(&format!("taskflow_consumer_lag{{consumer=\"{c}\"}}")))
                    && m.contains(&format!("taskflow_dead_letters{{consumer=\"{c}\"}} 0"))
            })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        // Every process's metrics (the consumers may each run in their own).
        let mut m = String::new();
        for url in app.server.urls("/metrics") {
            let text = app.server.client.get(url).send().await.unwrap().text();
            m.push_str(&text.await.unwrap());
        }
        if expected(&m) || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for consumer in ["recurring", "reminders", "notifier", "audit"] {
        // Through Dapr the sidecar and its broker know the lag, not the process.
        assert!(
            taskflow_testkit::through_dapr()
                || metrics.contains(&format!("taskflow_consumer_lag{{consumer=\"{consumer}\"}}")),
            "lag of {consumer}:\n{metrics}"
        );
        assert!(
            metrics.contains(&format!(
                "taskflow_dead_letters{{consumer=\"{consumer}\"}} 0"
            )),
            "dead letters of {consumer}:\n{metrics}"
        );
    }
}

/// Runs `taskflow audit rebuild` on `db_url`, which must succeed; returns its stderr.
pub(crate) fn rebuild_audit(db_url: &str) -> String {
    let out = std::process::Command::new(BIN)
        .args(["audit", "rebuild", "--database-url", db_url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}
