//! Through a Dapr sidecar (`--bus dapr`), against the fake sidecar of the testkit, which
//! speaks Dapr's HTTP API: what the relay publishes, the subscriptions the process lists, what
//! its delivery routes answer, a sidecar that fails for 30 s, and one that delivers every
//! event twice. They need no server, so they run in the plain run of the suite (SQLite) and
//! in its Dapr run (PostgreSQL), not in the others.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use taskflow_testkit::{Backend, TestDb, TestServer, dapr::FakeDapr};

use crate::{
    BIN,
    faults::{add_task, audit, created_titles, metric, show_logs},
    kafka::{a_recurring_task_with_a_reminder_goes_round, poll},
};

/// Whether to skip: these run when the suite runs on the embedded log with SQLite (plain
/// `cargo test`) or through Dapr, each once (not in the one-process-per-role runs).
fn skipped() -> bool {
    let bus = std::env::var("TASKFLOW_TEST_BUS").ok();
    let runs = match bus.as_deref() {
        None | Some("embedded") => Backend::from_env() == Backend::Sqlite,
        Some("dapr") => true,
        Some(_) => false,
    };
    if !runs || taskflow_testkit::one_process_per_role() {
        eprintln!("runs in the plain run of the suite and in its Dapr run");
        return true;
    }
    false
}

/// A fresh fake sidecar and a server through it with `extra` arguments, on a fresh
/// database; `None` where this run of the suite skips these tests.
async fn through_fake(extra: &[&str]) -> Option<(FakeDapr, TestServer, TestDb)> {
    if skipped() {
        return None;
    }
    let fake = FakeDapr::start();
    let (server, db) = start(&fake, extra).await?;
    Some((fake, server, db))
}

/// A server on a fresh database through `fake`, with `extra` arguments.
async fn start(fake: &FakeDapr, extra: &[&str]) -> Option<(TestServer, TestDb)> {
    let db = TestDb::new(Backend::from_env()).await?;
    let url = db.url.clone();
    let (fake, extra) = (
        fake.clone(),
        extra.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>(),
    );
    let server = tokio::task::spawn_blocking(move || {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        TestServer::start_dapr(BIN, "serve", &url, &fake, &extra)
    })
    .await
    .unwrap();
    Some((server, db))
}

#[tokio::test]
async fn through_the_sidecar_every_role_gets_its_events_and_each_goes_out_keyed_by_its_user() {
    let Some((fake, server, _db)) = through_fake(&[]).await else {
        return;
    };
    // The subscriptions the sidecar read: one per component and topic, each with its route.
    let subs = server.get_json("/dapr/subscribe", "").await;
    let listed: BTreeSet<(String, String, String)> = subs
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["pubsubname"].as_str().unwrap().to_owned(),
                s["topic"].as_str().unwrap().to_owned(),
                s["routes"]["default"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = ["taskflow-pubsub", "taskflow-live"]
        .iter()
        .flat_map(|p| {
            ["task-events", "reminders", "task-updates"]
                .map(|t| (p.to_string(), t.to_owned(), format!("/dapr/events/{p}/{t}")))
        })
        .collect();
    assert_eq!(listed, expected);

    let (token, user) = server.signup("ada@example.com", "UTC").await;
    let user_id = user["id"].as_str().unwrap().to_owned();
    let sse_id = a_recurring_task_with_a_reminder_goes_round(&server, &token).await;

    // What went out: CloudEvents through the bulk API, keyed by their user, each carrying
    // its outbox position, on the topic of its type.
    let published = fake.published();
    assert!(published.len() >= 4, "{published:?}");
    for p in &published {
        assert!(p.bulk, "{p:?}");
        assert_eq!(p.pubsub, "taskflow-pubsub");
        assert_eq!(p.content_type, "application/cloudevents+json");
        assert_eq!(p.event["topic"], p.topic.as_str());
        assert!(p.event["sequence"].as_str().is_some(), "{p:?}");
        assert_eq!(p.event["specversion"], "1.0");
        if p.event["userid"] == user_id.as_str() {
            assert_eq!(p.partition_key.as_deref(), Some(user_id.as_str()), "{p:?}");
        }
    }
    let created = published
        .iter()
        .find(|p| p.event["type"] == "com.taskflow.task.created.v1")
        .unwrap();
    assert_eq!(created.topic, "task-events");
    assert_eq!(
        created.event["sequence"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            .to_string(),
        sse_id,
        "the SSE id is the outbox position"
    );
    assert!(
        published
            .iter()
            .any(|p| p.topic == "reminders"
                && p.event["type"] == "com.taskflow.reminder.triggered.v1")
    );
    assert_eq!(fake.deliveries().dropped, 0);
    let ready = server.get_json("/healthz/ready", "").await;
    assert_eq!(ready["status"], "ready", "{ready}");
}

#[tokio::test]
async fn a_delivery_route_drops_what_is_no_event_and_the_sidecar_needs_the_app_token() {
    let Some((fake, server, _db)) = through_fake(&["--rate-limit-per-ip", "1"]).await else {
        return;
    };
    let (status, body) = fake.call_app(
        "taskflow",
        "/dapr/events/taskflow-pubsub/task-events",
        b"not json",
    );
    assert_eq!((status, body), (200, json!({"status": "DROP"})));
    let (status, body) = fake.call_app(
        "taskflow",
        "/dapr/events/taskflow-pubsub/task-events",
        br#"{"specversion":"1.0","id":"x","type":"t"}"#,
    );
    assert_eq!(
        (status, body),
        (200, json!({"status": "DROP"})),
        "no position"
    );
    // A subscription this process never listed: 404, which the sidecar takes as a drop.
    let (status, _) = fake.call_app("taskflow", "/dapr/events/other-pubsub/task-events", b"{}");
    assert_eq!(status, 404);
    let (status, _) = fake.call_app("taskflow", "/dapr/events/taskflow-pubsub/elsewhere", b"{}");
    assert_eq!(status, 404);
    assert!(
        metric(
            &server,
            "taskflow_events_malformed_total{consumer=\"audit\"}"
        )
        .await
            >= 2.0
    );
    // Deliveries come outside the per-IP rate limit (1 a second here): the sidecar is one
    // client that carries every event.
    for _ in 0..30 {
        let (status, _) = fake.call_app(
            "taskflow",
            "/dapr/events/taskflow-pubsub/task-events",
            b"not json",
        );
        assert_eq!(status, 200);
    }
    drop(server);

    // With an app token, the sidecar's calls must carry it.
    let fake = FakeDapr::start();
    let Some((server, _db)) = start(&fake, &["--dapr-app-api-token", "sidecar-secret"]).await
    else {
        return;
    };
    let subscribe = |token: Option<&'static str>| {
        let req = server.client.get(server.url("/dapr/subscribe"));
        match token {
            Some(t) => req.header("dapr-api-token", t),
            None => req,
        }
        .send()
    };
    assert_eq!(subscribe(None).await.unwrap().status(), 403);
    assert_eq!(subscribe(Some("not-it")).await.unwrap().status(), 403);
    let res = subscribe(Some("sidecar-secret")).await.unwrap();
    assert_eq!(res.status(), 200);
    let list: Value = res.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_that_answers_500_for_30_s_loses_nothing() {
    let Some((fake, server, _db)) =
        through_fake(&["--rate-limit-per-ip", "0", "--rate-limit-per-user", "0"]).await
    else {
        return;
    };
    let (token, _) = server.signup("ada@example.com", "UTC").await;
    fake.fail_publishing_for(Duration::from_secs(30));
    let started = Instant::now();
    // Writes go on while the sidecar refuses: they are acknowledged, kept in the outbox.
    let mut titles = Vec::new();
    while started.elapsed() < Duration::from_secs(25) {
        let title = format!("w{:03}", titles.len());
        assert_eq!(
            add_task(&server, &token, json!({"title": title})).await,
            201
        );
        titles.push(title);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The relay says why it is behind; the API serves on.
    let ready = server.get_json("/healthz/ready", "").await;
    let relay = ready["roles"]["relay"].as_str().unwrap_or_default();
    assert!(
        relay.starts_with("failing") && relay.contains("the Dapr sidecar answered 500"),
        "{ready}"
    );
    assert_eq!(ready["roles"]["api"], "ready", "{ready}");
    assert!(
        audit(&server, &token).await.is_empty(),
        "nothing went through while the sidecar failed"
    );
    assert!(metric(&server, "taskflow_relay_errors_total").await >= 1.0);
    // Once the sidecar answers again, every acknowledged task reaches the audit log once.
    let deadline = started + Duration::from_secs(30 + 20);
    let created = loop {
        let created = created_titles(&audit(&server, &token).await);
        if created.len() == titles.len() || Instant::now() > deadline {
            break created;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "audit log complete {:?} after the sidecar failed for 30 s",
        started.elapsed()
    );
    if created.len() != titles.len() {
        show_logs(&server, &["relay", "WARN", "ERROR"]);
    }
    let missing: Vec<&String> = titles
        .iter()
        .filter(|t| !created.contains_key(*t))
        .collect();
    assert!(missing.is_empty(), "never audited: {missing:?}");
    let twice: Vec<_> = created.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "audited twice: {twice:?}");
}

#[tokio::test]
async fn a_sidecar_that_delivers_every_event_twice_causes_no_duplicate_effect() {
    let Some((fake, server, _db)) = through_fake(&["--dapr-bulk-publish", "false"]).await else {
        return;
    };
    fake.redeliver_twice(true);
    let (token, _) = server.signup("ada@example.com", "UTC").await;
    let fire_at =
        (Utc::now() + chrono::TimeDelta::seconds(1)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let task: Value = server
        .client
        .post(server.url("/api/tasks"))
        .bearer_auth(&token)
        .json(&json!({"title": "Water plants", "due_date": "2030-01-07",
            "recurrence": "FREQ=WEEKLY", "reminders": [{"at": fire_at}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = task["id"].as_str().unwrap().to_owned();
    poll(
        &server,
        &token,
        "/api/notifications",
        Duration::from_secs(10),
        |b| b["items"].as_array().is_some_and(|i| !i.is_empty()),
    )
    .await;
    let res = server
        .client
        .post(server.url(&format!("/api/tasks/{id}/complete")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    poll(
        &server,
        &token,
        "/api/tasks?status=pending",
        Duration::from_secs(10),
        |b| b["items"].as_array().is_some_and(|i| !i.is_empty()),
    )
    .await;
    // Every delivery twice over, settled: then nothing happened twice.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.deliveries().succeeded < 2 * fake.published().len() as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pending = server.get_json("/api/tasks?status=pending", &token).await;
    assert_eq!(
        pending["items"].as_array().unwrap().len(),
        1,
        "one next occurrence: {pending}"
    );
    let notes = server.get_json("/api/notifications", &token).await;
    assert_eq!(
        notes["items"].as_array().unwrap().len(),
        1,
        "one notification: {notes}"
    );
    let entries = audit(&server, &token).await;
    let ids: BTreeSet<&str> = entries
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), entries.len(), "no event audited twice");
    assert!(entries.len() >= 4, "{entries:?}");
    // One event a request.
    let published = fake.published();
    assert!(
        published
            .iter()
            .all(|p| !p.bulk && p.partition_key.is_some())
    );
    assert!(fake.deliveries().succeeded >= 2 * published.len() as u64);
}

/// Runs the binary with `args` (concatenated), without the secrets and the database URL
/// the environment may set; its exit status and what it wrote to stderr.
fn exit_of(args: &[&[&str]]) -> (Option<i32>, String) {
    let out = std::process::Command::new(BIN)
        .args(args.concat())
        .env_remove("TASKFLOW_JWT_SECRET")
        .env_remove("TASKFLOW_DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn settings_given_as_secret_references_are_read_from_the_sidecar_at_start() {
    if skipped() {
        return;
    }
    let Some(db) = TestDb::new(Backend::from_env()).await else {
        return;
    };
    let fake = FakeDapr::start();
    fake.set_secret(
        "kubernetes",
        "taskflow",
        &[
            ("database-url", db.url.as_str()),
            ("jwt-secret", "a-secret-from-the-store-0123456789abcdef"),
        ],
    );
    let server = TestServer::start_dapr(
        BIN,
        "serve",
        "dapr-secret:taskflow/database-url",
        &fake,
        &[
            "--dapr-secret-store",
            "kubernetes",
            "--jwt-secret",
            "dapr-secret:taskflow/jwt-secret",
        ],
    );
    let (token, _) = server.signup("ada@example.com", "UTC").await;
    assert_eq!(
        add_task(
            &server,
            &token,
            json!({"title": "Stored where the secret says"})
        )
        .await,
        201
    );
    let store = taskflow_store::connect(&db.url).await.unwrap();
    assert_eq!(
        store.count_tasks().await.unwrap(),
        1,
        "the database of the secret"
    );
    let logs: Vec<String> = std::iter::from_fn(|| server.stderr.try_recv().ok()).collect();
    assert!(
        !logs.iter().any(|l| l.contains("a-secret-from-the-store")),
        "the secret is not logged"
    );

    // What is wrong ends the process at once with status 2, naming the setting.
    let refused = |args: &[&str]| {
        exit_of(&[
            &["serve", "--bind", "127.0.0.1:0", "--dapr-wait-secs", "1"],
            args,
        ])
    };
    let endpoint = fake.endpoint();
    let with_store = |flag: &'static str, value: &'static str| {
        [
            "--dapr-http-endpoint",
            endpoint.as_str(),
            "--dapr-secret-store",
            "kubernetes",
            flag,
            value,
        ]
    };
    let (code, err) = refused(&with_store("--jwt-secret", "dapr-secret:taskflow/nope"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(
            "--jwt-secret: the Dapr secret `taskflow` of store `kubernetes` has no key `nope`"
        ),
        "{err}"
    );
    let (code, err) = refused(&with_store("--llm-api-key", "dapr-secret:missing"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--llm-api-key: the Dapr secret store `kubernetes` has no secret `missing`"),
        "{err}"
    );
    let (code, err) = refused(&["--jwt-secret", "dapr-secret:taskflow/jwt-secret"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no secret store is named (--dapr-secret-store)"),
        "{err}"
    );
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (code, err) = refused(&[
        "--dapr-http-endpoint",
        &closed,
        "--dapr-secret-store",
        "kubernetes",
        "--jwt-secret",
        "dapr-secret:taskflow/jwt-secret",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("cannot read secrets: the Dapr sidecar at") && err.contains("does not answer"),
        "{err}"
    );
}

#[tokio::test]
async fn migrate_and_audit_rebuild_read_the_database_url_from_the_secret_store() {
    if skipped() {
        return;
    }
    let Some(db) = TestDb::new(Backend::from_env()).await else {
        return;
    };
    let fake = FakeDapr::start();
    fake.set_secret(
        "kubernetes",
        "taskflow",
        &[("database-url", db.url.as_str())],
    );
    let endpoint = fake.endpoint();
    let command = |args: &[&str], url: &str| {
        let store = [
            "--database-url",
            url,
            "--dapr-secret-store",
            "kubernetes",
            "--dapr-http-endpoint",
            endpoint.as_str(),
            "--dapr-wait-secs",
            "5",
        ];
        exit_of(&[args, &store])
    };
    let (code, err) = command(&["migrate"], "dapr-secret:taskflow/database-url");
    assert_eq!(code, Some(0), "{err}");
    let store = taskflow_store::connect(&db.url).await.unwrap();
    assert_eq!(
        store.count_tasks().await.unwrap(),
        0,
        "the schema is in the secret's database"
    );
    let (code, err) = command(&["audit", "rebuild"], "dapr-secret:taskflow/database-url");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("audit log rebuilt"), "{err}");
    let (code, err) = command(&["migrate"], "dapr-secret:taskflow/nope");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(
            "--database-url: the Dapr secret `taskflow` of store `kubernetes` has no key `nope`"
        ),
        "{err}"
    );
    assert!(!err.contains(db.url.as_str()), "{err}");
}

/// Creates a task titled `title` with one reminder at `at` and returns (task id, reminder id).
async fn task_with_reminder(
    server: &TestServer,
    token: &str,
    title: &str,
    at: chrono::DateTime<Utc>,
) -> (String, String) {
    let at = at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let task: Value = server
        .client
        .post(server.url("/api/tasks"))
        .bearer_auth(token)
        .json(&json!({"title": title, "reminders": [{"at": at}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        task["id"].as_str().unwrap().to_owned(),
        task["reminders"][0]["id"].as_str().unwrap().to_owned(),
    )
}

/// Waits up to `wait` for `done` to hold.
async fn until(wait: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + wait;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_through_dapr_jobs_fire_on_time_once_and_after_a_restart() {
    if skipped() {
        return;
    }
    let Some(db) = TestDb::new(Backend::from_env()).await else {
        return;
    };
    let fake = FakeDapr::start();
    let start = |fake: &FakeDapr| {
        let (fake, url) = (fake.clone(), db.url.clone());
        tokio::task::spawn_blocking(move || {
            TestServer::start_dapr(BIN, "serve", &url, &fake, &["--timers", "dapr-jobs"])
        })
    };
    let server = start(&fake).await.unwrap();
    let (token, _) = server.signup("ada@example.com", "UTC").await;

    // A reminder is a job due at its time; deleting the task deletes the job.
    let at = Utc::now() + chrono::TimeDelta::milliseconds(1500);
    let (_, rid) = task_with_reminder(&server, &token, "Take the pills", at).await;
    let job = format!("reminder-{rid}");
    assert!(until(Duration::from_secs(5), || fake.job(&job).is_some()).await);
    let due = fake.job(&job).unwrap().due;
    assert!((due - at).num_milliseconds().abs() < 1, "{due} vs {at}");
    let (gone, gone_rid) = task_with_reminder(
        &server,
        &token,
        "Cancelled",
        Utc::now() + chrono::TimeDelta::hours(1),
    )
    .await;
    let gone_job = format!("reminder-{gone_rid}");
    assert!(until(Duration::from_secs(5), || fake.job(&gone_job).is_some()).await);
    let res = server
        .client
        .delete(server.url(&format!("/api/tasks/{gone}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(until(Duration::from_secs(5), || fake.job(&gone_job).is_none()).await);

    // The job's trigger fires the reminder, on time, once.
    assert!(
        until(Duration::from_secs(5), || fake
            .job_triggers()
            .iter()
            .any(|t| t.name == job))
        .await
    );
    let trigger = fake
        .job_triggers()
        .into_iter()
        .find(|t| t.name == job)
        .unwrap();
    assert_eq!(trigger.status, 200, "{trigger:?}");
    assert_eq!(
        trigger.body["fired"], 1,
        "the trigger fired it: {trigger:?}"
    );
    let fired = |items: &[Value], reminder: &str| -> Vec<Value> {
        items
            .iter()
            .filter(|e| {
                e["type"] == "com.taskflow.reminder.triggered.v1"
                    && e["data"]["reminder_id"] == reminder
            })
            .cloned()
            .collect()
    };
    let mut entries = Vec::new();
    for _ in 0..50 {
        entries = fired(&audit(&server, &token).await, &rid);
        if !entries.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(entries.len(), 1, "{entries:?}");
    let late_by = entries[0]["data"]["late_by_ms"].as_i64().unwrap();
    eprintln!("fired {late_by} ms after its time through a job");
    assert!((0..1000).contains(&late_by), "{late_by} ms late");
    assert_eq!(entries[0]["data"]["late"], false);
    assert_eq!(
        metric(&server, "taskflow_reminders_fired_total").await,
        1.0,
        "a fire by a job's trigger is counted"
    );

    // Down when its job comes due: the trigger finds no app; at the restart the reminder
    // fires from the database, once, marked late.
    let at = Utc::now() + chrono::TimeDelta::seconds(2);
    let (_, rid) = task_with_reminder(&server, &token, "Call mum", at).await;
    let job = format!("reminder-{rid}");
    assert!(until(Duration::from_secs(5), || fake.job(&job).is_some()).await);
    server.kill9();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        fake.job_triggers()
            .iter()
            .filter(|t| t.name == job)
            .all(|t| t.status == 0),
        "no process answered while it was down"
    );
    let server = start(&fake).await.unwrap();
    let mut entries = Vec::new();
    for _ in 0..100 {
        entries = fired(&audit(&server, &token).await, &rid);
        if !entries.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let entries_now = fired(&audit(&server, &token).await, &rid);
    assert_eq!(entries_now.len(), 1, "once: {entries_now:?}");
    assert_eq!(entries[0]["data"]["late"], true, "{entries:?}");
}

#[tokio::test]
async fn a_cron_binding_drives_housekeeping_and_prunes_relayed_events_past_their_retention() {
    let Some((fake, server, db)) = through_fake(&[
        "--dapr-cron-binding",
        "taskflow-housekeeping",
        "--outbox-retention-secs",
        "1",
    ])
    .await
    else {
        return;
    };
    let (token, _) = server.signup("ada@example.com", "UTC").await;
    for n in 0..3 {
        assert_eq!(
            add_task(&server, &token, json!({"title": format!("t{n}")})).await,
            201
        );
    }
    let store = taskflow_store::connect(&db.url).await.unwrap();
    // Relayed, and older than the retention; the relay itself prunes nothing now.
    assert!(until(Duration::from_secs(10), || fake.published().len() >= 3).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(store.count_events().await.unwrap(), 3);
    // The binding's schedule (`@every 500ms`) calls the app, which prunes.
    fake.add_cron_binding(
        "taskflow",
        "taskflow-housekeeping",
        Duration::from_millis(500),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.count_events().await.unwrap() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The newest event stays, so the outbox's head is never lost.
    assert_eq!(store.count_events().await.unwrap(), 1);
    let calls = fake.binding_calls("taskflow-housekeeping");
    assert_eq!(
        calls[0],
        ("OPTIONS".to_owned(), 200),
        "probed first: {calls:?}"
    );
    assert!(
        calls[1..].iter().all(|c| *c == ("POST".to_owned(), 200)) && calls.len() >= 2,
        "{calls:?}"
    );
    let (status, body) = fake.call_app("taskflow", "/taskflow-housekeeping", b"");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pruned"]["events"], 0, "nothing left to prune: {body}");
    // The audit log keeps the history.
    assert_eq!(created_titles(&audit(&server, &token).await).len(), 3);

    // A binding named like a path the server serves would shadow it: refused at start.
    for name in ["metrics", "a/b"] {
        let out = std::process::Command::new(BIN)
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--dapr-cron-binding",
                name,
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("--dapr-cron-binding `{name}`")),
            "{err}"
        );
    }
}

#[tokio::test]
async fn the_api_works_through_dapr_service_invocation() {
    let Some((fake, server, _db)) = through_fake(&["--rate-limit-per-ip", "0"]).await else {
        return;
    };
    // Every request goes to the sidecar, which passes it to the app.
    let via = |path: &str| format!("{}/v1.0/invoke/taskflow/method{path}", fake.endpoint());
    let client = &server.client;
    let res = client
        .post(via("/api/auth/signup"))
        .json(&json!({"email": "ada@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let token = res.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = client
        .post(via("/api/tasks"))
        .bearer_auth(&token)
        .json(&json!({"title": "Invoked", "priority": "high"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // What the API points at is relative, so it holds behind the sidecar too.
    if let Some(location) = res.headers().get("location") {
        assert!(location.to_str().unwrap().starts_with('/'), "{location:?}");
    }
    let task: Value = res.json().await.unwrap();
    let list: Value = client
        .get(via("/api/tasks?priority=high&limit=10"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["id"], task["id"], "{list}");
    // Errors come back as they are: problem+json.
    let res = client
        .patch(via(&format!("/api/tasks/{}", task["id"].as_str().unwrap())))
        .bearer_auth(&token)
        .json(&json!({"priority": "whenever"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
}

/// The state store of the shared-limit tests.
const STATE: &str = "taskflow-state";
/// A per-user request window of 3 at once and one more a second, kept in the state store.
const WINDOW_OF_3: [&str; 5] = [
    "--dapr-share-request-window",
    "--rate-limit-per-user",
    "1",
    "--rate-limit-burst",
    "3",
];

/// Two api replicas on one database behind one fake sidecar with a state store: a whole
/// `serve`, and `run --roles api,sync` beside it, both with `extra` arguments.
async fn two_replicas(extra: &[&str]) -> Option<(FakeDapr, TestServer, TestServer, TestDb)> {
    if skipped() {
        return None;
    }
    let fake = FakeDapr::start();
    fake.add_state_store(STATE);
    let mut args = vec!["--dapr-state-store", STATE];
    args.extend_from_slice(extra);
    let (a, db) = start(&fake, &args).await?;
    let (url, sidecar) = (db.url.clone(), fake.clone());
    let args: Vec<String> = ["--roles", "api,sync"]
        .iter()
        .chain(args.iter())
        .map(|a| (*a).to_owned())
        .collect();
    let b = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        TestServer::start_dapr(BIN, "run", &url, &sidecar, &args)
    })
    .await
    .unwrap();
    Some((fake, a, b, db))
}

async fn status_of(server: &TestServer, token: &str, path: &str) -> reqwest::StatusCode {
    server
        .client
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

async fn login(server: &TestServer, password: &str) -> reqwest::Response {
    server
        .client
        .post(server.url("/api/auth/login"))
        .json(&json!({"email": "ada@example.com", "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_users_request_window_and_failed_logins_hold_across_replicas_through_the_state_store() {
    let args = [&WINDOW_OF_3[..], &["--login-failures-before-throttle", "1"]].concat();
    let Some((fake, a, b, _db)) = two_replicas(&args).await else {
        return;
    };
    let (token, user) = a.signup("ada@example.com", "UTC").await;
    // A burst of 3, one more a second: alternating replicas, each would let 3 through alone.
    let started = Instant::now();
    let mut passed = 0;
    let mut refused = None;
    for server in [&a, &b, &a, &b, &a, &b] {
        let res = server
            .client
            .get(server.url("/api/tasks"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        match res.status().as_u16() {
            200 => passed += 1,
            429 => refused = Some(res),
            other => panic!("GET /api/tasks answered {other}"),
        }
    }
    let refilled = started.elapsed().as_secs() as usize;
    assert!(
        passed <= 3 + refilled,
        "{passed} of 6 passed in {:?}: the replicas did not share the window",
        started.elapsed()
    );
    let refused = refused.expect("a request over the shared window is refused");
    assert!(refused.headers().contains_key("retry-after"));
    let keys = fake.state_keys(STATE);
    let user_key = format!("rate:user:{}", user["id"].as_str().unwrap());
    assert!(keys.contains(&user_key), "{keys:?}");

    // Failed logins of one account add up across the replicas: after one free failure each
    // further try waits 1 s, doubling. A replica alone would have seen one failure only.
    assert_eq!(login(&a, "wrong").await.status(), 401);
    assert_eq!(login(&b, "wrong").await.status(), 401);
    let throttled = login(&a, "correct horse battery").await;
    assert_eq!(
        throttled.status(),
        429,
        "the 3rd try, back on the first replica"
    );
    assert!(throttled.headers().contains_key("retry-after"));
    let logins = keys_with(&fake, "logins:");
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(fake.state_value(STATE, &logins[0]).unwrap()["count"], 2);
    // No account is named in the store: its keys are pseudonyms.
    let keys = fake.state_keys(STATE);
    assert!(keys.iter().all(|k| !k.contains("ada")), "{keys:?}");
    // After the wait, a success clears the count for every replica.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(login(&b, "correct horse battery").await.status(), 200);
    assert!(keys_with(&fake, "logins:").is_empty());
}

fn keys_with(fake: &FakeDapr, prefix: &str) -> Vec<String> {
    fake.state_keys(STATE)
        .into_iter()
        .filter(|k| k.starts_with(prefix))
        .collect()
}

#[tokio::test]
async fn a_users_live_connections_count_on_every_replica_and_a_closed_one_frees_its_place() {
    let Some((fake, a, b, _db)) = two_replicas(&["--max-streams-per-user", "2"]).await else {
        return;
    };
    let (token, user) = a.signup("ada@example.com", "UTC").await;
    // By default the request window stays with each replica: no calls on every request.
    assert_eq!(status_of(&b, &token, "/api/tasks").await, 200);
    assert!(keys_with(&fake, "rate:user:").is_empty());
    let _on_a = crate::services::Sse::open(&a, &token, None).await;
    let on_b = crate::services::Sse::open(&b, &token, None).await;
    assert_eq!(status_of(&a, &token, "/api/events").await, 429);
    assert_eq!(status_of(&b, &token, "/api/events").await, 429);
    let key = format!("live:{}", user["id"].as_str().unwrap());
    let held = fake.state_value(STATE, &key).unwrap();
    assert_eq!(
        held.as_object().unwrap().len(),
        2,
        "one entry a replica: {held}"
    );
    drop(on_b);
    assert!(
        until(Duration::from_secs(5), || {
            fake.state_value(STATE, &key)
                .is_some_and(|h| h.as_object().is_some_and(|m| m.len() == 1))
        })
        .await,
        "the closed connection left the shared count"
    );
    let _again = crate::services::Sse::open(&a, &token, None).await;
}

#[tokio::test]
async fn while_the_state_store_fails_each_replica_limits_alone_and_serves() {
    let Some((fake, a, b, _db)) = two_replicas(&WINDOW_OF_3).await else {
        return;
    };
    let (token, _) = a.signup("ada@example.com", "UTC").await;
    fake.fail_state_for(Duration::from_secs(60));
    let calls = fake.state_calls();
    // Each replica's own window: 3 each, then 429 from its own limiter.
    for server in [&a, &b] {
        for n in 0..3 {
            assert_eq!(
                status_of(server, &token, "/api/tasks").await,
                200,
                "request {n}"
            );
        }
        assert_eq!(status_of(server, &token, "/api/tasks").await, 429);
    }
    assert!(fake.state_calls() > calls, "the store was asked");
    let fell_back = metric(&a, "taskflow_shared_limit_fallbacks_total").await;
    assert!(fell_back >= 4.0, "fallbacks counted: {fell_back}");
}

#[tokio::test]
async fn readiness_reports_the_sidecar_and_the_api_serves_while_it_is_gone() {
    if skipped() {
        return;
    }
    // With the sidecar there, it is reported ok.
    let Some((_fake, a, _b, _db)) = two_replicas(&[]).await else {
        return;
    };
    let ready = poll(&a, "", "/healthz/ready", Duration::from_secs(10), |b| {
        b["checks"]["sidecar"] == "ok"
    })
    .await;
    assert_eq!(ready["checks"]["sidecar"], "ok", "{ready}");
    // A sidecar that is not there (on the embedded bus: through Dapr the suite gives every
    // server a sidecar of its own).
    if taskflow_testkit::through_dapr() {
        return;
    }
    let Some(db) = TestDb::new(Backend::from_env()).await else {
        return;
    };
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let server = TestServer::start_with(
        BIN,
        "run",
        &db.url,
        &[
            "--roles",
            "api,sync",
            "--dapr-state-store",
            STATE,
            "--dapr-http-endpoint",
            &closed,
        ],
    );
    let ready = poll(
        &server,
        "",
        "/healthz/ready",
        Duration::from_secs(10),
        |b| {
            b["checks"]["sidecar"]
                .as_str()
                .is_some_and(|s| s.starts_with("not ready"))
        },
    )
    .await;
    assert!(
        ready["checks"]["sidecar"]
            .as_str()
            .unwrap()
            .contains("does not answer"),
        "{ready}"
    );
    assert_eq!(ready["status"], "ready", "reported, not required: {ready}");
    // Sign-in, writes, reads and a live stream, each replica limiting alone meanwhile.
    let (token, _) = server.signup("ada@example.com", "UTC").await;
    assert_eq!(
        add_task(&server, &token, json!({"title": "Still here"})).await,
        201
    );
    assert_eq!(status_of(&server, &token, "/api/tasks").await, 200);
    let _stream = crate::services::Sse::open(&server, &token, None).await;
    assert!(metric(&server, "taskflow_shared_limit_fallbacks_total").await >= 1.0);
}
