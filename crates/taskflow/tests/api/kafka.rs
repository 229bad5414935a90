//! Through a Kafka broker with the roles in processes of their own, on one database and one
//! broker (the topic prefix comes from the database). These run when the suite runs through
//! a broker (`TASKFLOW_TEST_BUS=kafka`, as `scripts/test` does); on the embedded log the
//! services suite covers the same behaviour in one process.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use taskflow_testkit::{TestDb, TestServer};

use crate::{BIN, faults::add_task, sample, services::Sse};

/// Starts one process per entry of `roles` on `db`, all at once; each is ready when this
/// returns (its groups have their partitions).
pub(crate) fn start_all(db: &TestDb, roles: &[&str]) -> Vec<TestServer> {
    std::thread::scope(|s| {
        let started: Vec<_> = roles
            .iter()
            .map(|r| s.spawn(move || TestServer::start_with(BIN, "run", &db.url, &["--roles", r])))
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Polls `GET path` as `token` on `server` until `done` holds, for up to `wait`.
pub(crate) async fn poll(
    server: &TestServer,
    token: &str,
    path: &str,
    wait: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let body = server.get_json(path, token).await;
        if done(&body) || Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether to skip a test that builds its own topology through the broker: it runs in the
/// Kafka run of the suite (`TASKFLOW_TEST_BUS=kafka`), once, not again in the
/// one-process-per-role run.
pub(crate) fn skipped() -> bool {
    if !crate::through_kafka() {
        eprintln!("runs through a broker only (TASKFLOW_TEST_BUS=kafka)");
        return true;
    }
    if taskflow_testkit::one_process_per_role() {
        eprintln!("builds its own topology: runs in the one-process Kafka run");
        return true;
    }
    false
}

/// What every role does with one recurring task and its reminder, as `token` on `api` (the
/// process that serves the API and the live stream): task.created on the live stream
/// (API → outbox → relay → broker → sync → SSE), the reminder fired and stored as a
/// notification, the next occurrence once it is completed, and the audit history of it all.
/// Returns the SSE id of task.created.
pub(crate) async fn a_recurring_task_with_a_reminder_goes_round(
    api: &TestServer,
    token: &str,
) -> String {
    let mut sse = Sse::open(api, token, None).await;
    let fire_at =
        (Utc::now() + chrono::TimeDelta::seconds(2)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let task: Value = api
        .client
        .post(api.url("/api/tasks"))
        .bearer_auth(token)
        .json(
            &json!({"title": "Standup", "due_date": "2030-01-07", "recurrence": "FREQ=DAILY",
            "reminders": [{"at": fire_at}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = task["id"].as_str().unwrap().to_owned();

    let (sse_id, ty, data) = sse
        .next(Duration::from_secs(10))
        .await
        .expect("task.created on the live stream");
    assert_eq!(ty, "com.taskflow.task.created.v1");
    assert_eq!(data["subject"], id.as_str());

    // The reminders role fires; the notifier stores the notification.
    let notes = poll(
        api,
        token,
        "/api/notifications",
        Duration::from_secs(15),
        |b| b["items"].as_array().is_some_and(|i| !i.is_empty()),
    )
    .await;
    assert_eq!(notes["items"][0]["task_id"], id.as_str(), "{notes}");

    // Completed: the recurring role creates the next occurrence.
    let res = api
        .client
        .post(api.url(&format!("/api/tasks/{id}/complete")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let pending = poll(
        api,
        token,
        "/api/tasks?status=pending",
        Duration::from_secs(15),
        |b| b["items"].as_array().is_some_and(|i| !i.is_empty()),
    )
    .await;
    assert_eq!(pending["items"][0]["due_date"], "2030-01-08", "{pending}");

    // The audit role keeps the history: created, completed, and the occurrence's created.
    let audit = poll(api, token, "/api/audit", Duration::from_secs(15), |b| {
        b["items"].as_array().is_some_and(|i| i.len() >= 4)
    })
    .await;
    let types: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in [
        "com.taskflow.task.created.v1",
        "com.taskflow.task.completed.v1",
        "com.taskflow.reminder.triggered.v1",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    sse_id
}

#[tokio::test]
async fn every_role_in_its_own_process_through_the_broker() {
    if skipped() {
        return;
    }
    let Some(db) = TestDb::new(taskflow_testkit::Backend::from_env()).await else {
        return;
    };
    // The API process migrates the database before the others start.
    let api = TestServer::start_with(BIN, "run", &db.url, &["--roles", "api,sync"]);
    let workers = start_all(
        &db,
        &["relay", "recurring", "reminders", "notifier", "audit"],
    );
    for (w, role) in workers
        .iter()
        .zip(["relay", "recurring", "reminders", "notifier", "audit"])
    {
        let ready = w.get_json("/healthz/ready", "").await;
        assert_eq!(ready["roles"], json!({role: "ready"}), "{role}");
    }
    let (token, _) = api.signup("ada@example.com", "UTC").await;
    a_recurring_task_with_a_reminder_goes_round(&api, &token).await;
    for w in workers {
        assert_eq!(w.terminate().code(), Some(0));
    }
    assert_eq!(api.terminate().code(), Some(0));
}

#[tokio::test]
async fn a_standby_relay_takes_over_when_the_active_one_dies_and_nothing_is_lost() {
    if skipped() {
        return;
    }
    let Some(db) = TestDb::new(taskflow_testkit::Backend::from_env()).await else {
        return;
    };
    let api = TestServer::start_with(BIN, "run", &db.url, &["--roles", "api"]);
    let mut relays = start_all(&db, &["relay", "relay", "audit"]);
    let audit = relays.pop().unwrap();
    // Which relay took the lease: it logs that it relays, the other that it stands by.
    let deadline = Instant::now() + Duration::from_secs(15);
    let active = loop {
        let found = relays.iter().position(|r| {
            std::iter::from_fn(|| r.stderr.try_recv().ok())
                .any(|l| l.contains("relaying the outbox"))
        });
        if let Some(i) = found {
            break i;
        }
        assert!(Instant::now() < deadline, "no relay took the lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (token, _) = api.signup("ada@example.com", "UTC").await;
    let add = |n: usize| {
        let (api, token) = (&api, &token);
        async move {
            let res = api
                .client
                .post(api.url("/api/tasks"))
                .bearer_auth(token)
                .json(&json!({"title": format!("task {n}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
        }
    };
    for n in 0..20 {
        add(n).await;
    }
    relays.remove(active).kill9();
    for n in 20..40 {
        add(n).await;
    }
    // The standby takes the lease once it expires (10 s) and publishes from the last
    // acknowledged position: every creation reaches the audit log, each once.
    let body = poll(
        &api,
        &token,
        "/api/audit?limit=500",
        Duration::from_secs(30),
        |b| b["items"].as_array().is_some_and(|i| i.len() >= 40),
    )
    .await;
    let items = body["items"].as_array().unwrap();
    let mut titles: Vec<String> = items
        .iter()
        .map(|e| e["data"]["task_data"]["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(titles.len(), 40, "{titles:?}");
    titles.dedup();
    assert_eq!(titles.len(), 40, "no creation twice");
    let expected: Vec<String> = (0..40).map(|n| format!("task {n}")).collect();
    assert_eq!(titles, expected, "in the order they were made");
    drop(audit);
    drop(relays);
    drop(api);
}

#[tokio::test]
async fn relayed_events_leave_the_outbox_after_their_retention_and_the_audit_log_keeps_them() {
    if skipped() {
        return;
    }
    let Some(db) = TestDb::new(taskflow_testkit::Backend::from_env()).await else {
        return;
    };
    let server = TestServer::start(BIN, &db.url, &["--outbox-retention-secs", "1"]);
    let (token, _) = server.signup("ada@example.com", "UTC").await;
    for title in ["old", "new"] {
        assert_eq!(
            add_task(&server, &token, json!({"title": title})).await,
            201
        );
    }
    let audit = poll(
        &server,
        &token,
        "/api/audit",
        Duration::from_secs(15),
        |b| b["items"].as_array().is_some_and(|i| i.len() >= 2),
    )
    .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit}");
    // Past the retention and the next prune (every second with a retention of one): a
    // replay from the start finds only the newest event, which always stays.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut replay = Sse::open(&server, &token, Some("0")).await;
    let (_, _, first) = replay
        .next(Duration::from_secs(5))
        .await
        .expect("the newest event is replayed");
    assert_eq!(first["data"]["task_data"]["title"], "new", "{first}");
    let audit = server.get_json("/api/audit", &token).await;
    assert_eq!(
        audit["items"].as_array().unwrap().len(),
        2,
        "the audit log keeps the history: {audit}"
    );
    // A rebuild replays what the outbox still holds and keeps the entries before it.
    assert_eq!(server.terminate().code(), Some(0));
    let stderr = crate::services::rebuild_audit(&db.url);
    assert!(stderr.contains("were kept"), "{stderr}");
    assert!(stderr.contains("1 entries replayed"), "{stderr}");
    let server = TestServer::start(BIN, &db.url, &[]);
    assert_eq!(
        server.get_json("/api/audit", &token).await,
        audit,
        "the same history after the rebuild"
    );
}

#[tokio::test]
async fn metrics_show_what_was_published_and_consumed_per_topic_and_the_lag() {
    if skipped() {
        return;
    }
    let Some(db) = TestDb::new(taskflow_testkit::Backend::from_env()).await else {
        return;
    };
    let server = TestServer::start(BIN, &db.url, &[]);
    let (token, _) = server.signup("ada@example.com", "UTC").await;
    for n in 0..3 {
        assert_eq!(
            add_task(&server, &token, json!({"title": format!("t{n}")})).await,
            201
        );
    }
    let topic = r#"topic="task-events""#;
    let audit = r#"consumer="audit""#;
    // The lag comes from the client's statistics, every 2 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = server.metrics().await;
        let done = sample(&text, "taskflow_events_consumed_total", &[audit, topic])
            .is_some_and(|n| n >= 3.0)
            && sample(&text, "taskflow_consumer_partition_lag", &[audit, topic]).is_some()
            && sample(&text, "taskflow_consumer_lag", &[audit]) == Some(0.0);
        if done || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let published = sample(&text, "taskflow_events_published_total", &[topic]);
    assert!(published.is_some_and(|n| n >= 3.0), "{text}");
    for consumer in ["audit", "recurring", "reminders"] {
        let label = format!(r#"consumer="{consumer}""#);
        let consumed = sample(&text, "taskflow_events_consumed_total", &[&label, topic]);
        assert!(consumed.is_some_and(|n| n >= 3.0), "{consumer}: {text}");
    }
    assert!(
        sample(
            &text,
            "taskflow_consumer_partition_lag",
            &[audit, topic, "partition=\""]
        )
        .is_some(),
        "{text}"
    );
    assert_eq!(
        sample(&text, "taskflow_consumer_lag", &[audit]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "taskflow_outbox_backlog", &[]),
        Some(0.0),
        "{text}"
    );
}
