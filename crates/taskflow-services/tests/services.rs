//! The consumers against real databases (a SQLite file and a throwaway PostgreSQL database),
//! driven by a manual clock so timer logic is deterministic and fast.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use taskflow_app::{App, Signup, TaskRef, Tokens};
use taskflow_bus::{ConsumerConfig, EmbeddedBus, Envelope, Handler, HandlerError};
use taskflow_core::{
    Due, ManualClock, REMINDER_TRIGGERED, Readiness, Recurrence, RecurrenceAnchor, ReminderSpec,
    Role, Task, TaskDraft, TaskTitle, User,
};
use taskflow_services::{Audit, Notifier, Recurring, Scheduler};
use taskflow_store::{Store, TaskQuery};
use taskflow_testkit::{Backend, TestDb};
use tokio::sync::watch;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

struct Env {
    app: App,
    /// The database under the app, for what a test checks or breaks behind it.
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    user: User,
    _db: TestDb,
}

async fn env(backend: Backend, now: &str, tz: &str) -> Option<Env> {
    let db = TestDb::new(backend).await?;
    let store = taskflow_store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let bus = EmbeddedBus::open(store.clone()).await.unwrap();
    let clock = Arc::new(ManualClock::new(t(now)));
    let tokens = Tokens::from_secret(b"test secret of enough length!!", Duration::from_secs(3600));
    let app = App::new(store.clone(), Arc::new(bus), clock.clone(), tokens);
    let signup = Signup::parse("ada@example.com", "correct horse".into(), None, Some(tz)).unwrap();
    let (user, _) = app.signup(signup).await.unwrap();
    Some(Env {
        app,
        store,
        clock,
        user,
        _db: db,
    })
}

/// Both backends; PostgreSQL only when configured (required under `scripts/test`).
async fn each_backend(now: &str, tz: &str) -> Vec<Env> {
    let mut out = vec![env(Backend::Sqlite, now, tz).await.unwrap()];
    if let Some(pg) = env(Backend::Postgres, now, tz).await {
        out.push(pg);
    }
    out
}

fn draft(title: &str) -> TaskDraft {
    TaskDraft {
        title: Some(TaskTitle::parse(title).unwrap()),
        ..TaskDraft::default()
    }
}

fn recurring(rule: &str, due: Due, anchor: RecurrenceAnchor) -> TaskDraft {
    TaskDraft {
        due: Some(due),
        recurrence: Some(Recurrence::parse(rule).unwrap()),
        recurrence_anchor: anchor,
        reminders: vec![ReminderSpec::Before { minutes: 15 }],
        ..draft("Water the plants")
    }
}

/// The whole log, as a consumer is handed it.
async fn events(store: &dyn Store) -> Vec<Envelope> {
    let log = store.events_after(0, 10_000).await.unwrap();
    log.into_iter().map(Envelope::from).collect()
}

async fn tasks(app: &App, user: &User) -> Vec<Task> {
    let q = TaskQuery {
        limit: 100,
        ..TaskQuery::default()
    };
    app.list_tasks(user, &q).await.unwrap().items
}

#[tokio::test]
async fn a_completion_delivered_twice_or_handled_by_two_instances_creates_one_occurrence() {
    for e in each_backend("2026-11-20T12:00:00Z", "America/New_York").await {
        let task = e
            .app
            .create_task(
                &e.user,
                recurring(
                    "FREQ=DAILY",
                    Due::At(t("2026-11-20T14:00:00Z")),
                    RecurrenceAnchor::Due,
                ),
            )
            .await
            .unwrap();
        e.app
            .complete_task(&e.user, TaskRef::Id(task.id))
            .await
            .unwrap();
        let completed = events(e.store.as_ref()).await.pop().unwrap();
        let recurring = Recurring::new(e.app.clone());
        // Two instances at once, then a redelivery.
        let (a, b) = tokio::join!(
            recurring.handle(std::slice::from_ref(&completed)),
            recurring.handle(std::slice::from_ref(&completed))
        );
        a.unwrap();
        b.unwrap();
        recurring
            .handle(std::slice::from_ref(&completed))
            .await
            .unwrap();

        let all = tasks(&e.app, &e.user).await;
        assert_eq!(all.len(), 2, "exactly one next occurrence");
        let next = all.iter().find(|x| x.id != task.id).unwrap();
        assert_eq!(
            next.due,
            Some(Due::At(t("2026-11-21T14:00:00Z"))),
            "9:00 New York the next day"
        );
        assert_eq!(next.series_id, Some(task.id));
        assert_eq!(next.occurrence, 2);
        assert_eq!(next.number, 2);
        assert_eq!(next.reminders.len(), 1);
        assert_eq!(next.reminders[0].before_minutes, Some(15));
        assert_eq!(next.reminders[0].fire_at, t("2026-11-21T13:45:00Z"));
        let created: Vec<_> = events(e.store.as_ref())
            .await
            .into_iter()
            .filter(|x| x.event.source == "taskflow/recurring")
            .collect();
        assert_eq!(
            created.len(),
            1,
            "one task.created from the recurring service"
        );
        assert_eq!(created[0].event.ty, "com.taskflow.task.created.v1");
    }
}

#[tokio::test]
async fn anchor_completion_counts_from_the_completion_and_count_ends_the_series() {
    for e in each_backend("2026-11-20T12:00:00Z", "UTC").await {
        let draft = recurring(
            "FREQ=WEEKLY;COUNT=2",
            Due::At(t("2026-11-16T09:00:00Z")),
            RecurrenceAnchor::Completion,
        );
        let first = e.app.create_task(&e.user, draft).await.unwrap();
        e.app
            .complete_task(&e.user, TaskRef::Id(first.id))
            .await
            .unwrap();
        let recurring = Recurring::new(e.app.clone());
        let ev = events(e.store.as_ref()).await.pop().unwrap();
        recurring.handle(&[ev]).await.unwrap();
        let all = tasks(&e.app, &e.user).await;
        let next = all.iter().find(|x| x.occurrence == 2).unwrap();
        // Completed on Nov 20 (late): one week later, at the original 9:00.
        assert_eq!(next.due, Some(Due::At(t("2026-11-27T09:00:00Z"))));
        // COUNT=2: completing the second ends the series.
        e.clock.set(t("2026-11-27T10:00:00Z"));
        e.app
            .complete_task(&e.user, TaskRef::Id(next.id))
            .await
            .unwrap();
        let ev = events(e.store.as_ref()).await.pop().unwrap();
        recurring.handle(&[ev]).await.unwrap();
        assert_eq!(tasks(&e.app, &e.user).await.len(), 2, "no third occurrence");
    }
}

#[tokio::test]
async fn reminders_fire_once_on_time_late_ones_are_marked_and_cancelled_ones_never_fire() {
    for e in each_backend("2026-11-20T12:00:00Z", "UTC").await {
        let mut d = draft("Call the bank");
        d.due = Some(Due::At(t("2026-11-20T13:00:00Z")));
        d.reminders = vec![ReminderSpec::Before { minutes: 30 }];
        let task = e.app.create_task(&e.user, d).await.unwrap();
        let mut d = draft("Cancelled");
        d.reminders = vec![ReminderSpec::At(t("2026-11-20T12:30:00Z"))];
        let cancelled = e.app.create_task(&e.user, d).await.unwrap();
        e.app
            .complete_task(&e.user, TaskRef::Id(cancelled.id))
            .await
            .unwrap();

        let scheduler = Scheduler::new(e.app.clone());
        assert_eq!(scheduler.tick().await.unwrap(), 0, "nothing is due yet");
        e.clock.set(t("2026-11-20T12:30:00Z"));
        assert_eq!(scheduler.tick().await.unwrap(), 1, "due exactly now");
        assert_eq!(scheduler.tick().await.unwrap(), 0, "never twice");
        let fired: Vec<_> = events(e.store.as_ref())
            .await
            .into_iter()
            .filter(|x| x.event.ty == REMINDER_TRIGGERED)
            .collect();
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].topic, taskflow_core::Topic::Reminders);
        assert_eq!(
            fired[0].event.subject.as_deref(),
            Some(task.id.to_string().as_str())
        );
        assert_eq!(fired[0].event.data["late"], false);
        assert_eq!(fired[0].event.data["late_by_ms"], 0);
        let read = e.app.task(&e.user, TaskRef::Id(task.id)).await.unwrap();
        assert_eq!(read.reminders[0].status.as_str(), "fired");

        // A reminder that came due while the service was down fires on the next look, late.
        let mut d = draft("Missed");
        d.reminders = vec![ReminderSpec::At(t("2026-11-20T12:40:00Z"))];
        e.app.create_task(&e.user, d).await.unwrap();
        e.clock.set(t("2026-11-20T14:40:00Z"));
        assert_eq!(scheduler.tick().await.unwrap(), 1);
        let late = events(e.store.as_ref()).await.pop().unwrap();
        assert_eq!(late.event.data["late"], true);
        assert_eq!(late.event.data["late_by_ms"], 2 * 3600 * 1000);
        assert_eq!(
            e.store.count_pending_reminders().await.unwrap(),
            0,
            "the completed task's reminder was cancelled, not fired"
        );
    }
}

#[tokio::test]
async fn two_schedulers_racing_fire_every_reminder_exactly_once() {
    for e in each_backend("2026-11-20T12:00:00Z", "UTC").await {
        for i in 0..120 {
            let mut d = draft(&format!("Task {i}"));
            d.reminders = vec![ReminderSpec::At(
                t("2026-11-20T12:05:00Z") + TimeDelta::milliseconds(i),
            )];
            e.app.create_task(&e.user, d).await.unwrap();
        }
        e.clock.set(t("2026-11-20T12:06:00Z"));
        let (a, b) = (Scheduler::new(e.app.clone()), Scheduler::new(e.app.clone()));
        let (x, y) = tokio::join!(a.tick(), b.tick());
        assert_eq!(x.unwrap() + y.unwrap(), 120);
        let fired = events(e.store.as_ref())
            .await
            .into_iter()
            .filter(|x| x.event.ty == REMINDER_TRIGGERED)
            .count();
        assert_eq!(fired, 120);
    }
}

#[tokio::test]
async fn the_notifier_sends_at_most_ten_a_second_per_user_coalesces_the_rest_and_ignores_redelivery()
 {
    for e in each_backend("2026-11-20T12:00:00Z", "UTC").await {
        for i in 0..25 {
            let mut d = draft(&format!("Task {i}"));
            d.reminders = vec![ReminderSpec::At(t("2026-11-20T12:05:00Z"))];
            e.app.create_task(&e.user, d).await.unwrap();
        }
        e.clock.set(t("2026-11-20T12:05:00Z"));
        Scheduler::new(e.app.clone()).tick().await.unwrap();
        let fired: Vec<_> = events(e.store.as_ref())
            .await
            .into_iter()
            .filter(|x| x.event.ty == REMINDER_TRIGGERED)
            .collect();
        assert_eq!(fired.len(), 25);
        let notifier = Notifier::new(e.app.clone());
        notifier.handle(&fired).await.unwrap();
        let list = e.store.notifications(e.user.id, false, 100).await.unwrap();
        assert_eq!(list.len(), 10, "ten in this second");
        let coalesced: Vec<_> = list.iter().filter(|n| n.task_id.is_none()).collect();
        assert_eq!(coalesced.len(), 1);
        assert_eq!(
            coalesced[0].title, "16 reminders",
            "9 single + 16 coalesced = 25: none lost"
        );
        assert!(
            coalesced[0].body.contains("and 11 more"),
            "{}",
            coalesced[0].body
        );
        let created = events(e.store.as_ref())
            .await
            .into_iter()
            .filter(|x| x.topic == taskflow_core::Topic::TaskUpdates)
            .count();
        assert_eq!(created, 10, "one notification.created each");
        // Redelivery changes nothing.
        notifier.handle(&fired).await.unwrap();
        assert_eq!(
            e.store
                .notifications(e.user.id, false, 100)
                .await
                .unwrap()
                .len(),
            10
        );
        // The records of handled events are kept until pruned.
        let store = e.store;
        assert_eq!(
            store
                .prune_processed(Utc::now() - TimeDelta::days(1))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .prune_processed(Utc::now() + TimeDelta::seconds(1))
                .await
                .unwrap(),
            25
        );
    }
}

#[tokio::test]
async fn an_audit_rebuild_from_the_event_log_is_identical_to_the_live_log() {
    for e in each_backend("2026-11-20T12:00:00Z", "UTC").await {
        for i in 0..30 {
            let task = e
                .app
                .create_task(&e.user, draft(&format!("Task {i}")))
                .await
                .unwrap();
            if i % 3 == 0 {
                e.app
                    .complete_task(&e.user, TaskRef::Id(task.id))
                    .await
                    .unwrap();
            }
        }
        let audit = Audit::new(e.app.clone());
        let all = events(e.store.as_ref()).await;
        audit.handle(&all[..10]).await.unwrap();
        audit.handle(&all[5..]).await.unwrap(); // overlapping redelivery
        let live = e.store.audit_all(0, 1000).await.unwrap();
        assert_eq!(live.len(), all.len());
        let rebuilt = taskflow_app::rebuild_history(e.store.as_ref(), |_| {})
            .await
            .unwrap();
        assert_eq!(rebuilt.replayed as usize, all.len());
        assert_eq!(e.store.audit_all(0, 1000).await.unwrap(), live);
    }
}

/// Fails on every event whose task title is "poison"; counts the others.
struct Picky(AtomicUsize);

#[async_trait]
impl Handler for Picky {
    fn role(&self) -> Role {
        Role::Audit
    }
    fn group(&self) -> &'static str {
        "picky"
    }
    fn wants(&self, _: &Envelope) -> bool {
        true
    }
    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        if events
            .iter()
            .any(|e| e.event.data["task_data"]["title"] == "poison")
        {
            return Err(HandlerError("cannot digest poison".into()));
        }
        self.0.fetch_add(events.len(), Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_consumer_parks_an_event_it_keeps_failing_on_and_moves_on() {
    for e in each_backend("2026-11-20T12:00:00Z", "UTC").await {
        e.app.create_task(&e.user, draft("one")).await.unwrap();
        e.app.create_task(&e.user, draft("poison")).await.unwrap();
        e.app.create_task(&e.user, draft("three")).await.unwrap();
        let picky = Arc::new(Picky(AtomicUsize::new(0)));
        let config = ConsumerConfig {
            backoff: Duration::from_millis(5),
            max_attempts: 3,
            ..ConsumerConfig::default()
        };
        let (stop_tx, stop) = watch::channel(false);
        let bus = e.app.bus().clone();
        let handler = picky.clone();
        let run = tokio::spawn(async move {
            bus.consume(handler, config, Readiness::default(), stop)
                .await
        });
        let store = e.store.clone();
        for _ in 0..200 {
            if store.consumer_offset("picky").await.unwrap() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            picky.0.load(Ordering::SeqCst),
            2,
            "the good events were handled"
        );
        assert_eq!(store.count_dead_letters("picky").await.unwrap(), 1);
        assert_eq!(store.consumer_offset("picky").await.unwrap(), 3);
        // A new event arrives within milliseconds through the in-process wake-up.
        e.app.create_task(&e.user, draft("four")).await.unwrap();
        for _ in 0..100 {
            if picky.0.load(Ordering::SeqCst) == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(picky.0.load(Ordering::SeqCst), 3);
        stop_tx.send(true).unwrap();
        run.await.unwrap();
        assert_eq!(
            store.consumer_offset("picky").await.unwrap(),
            4,
            "saved on stop"
        );
    }
}

/// Records the positions it is handed.
struct Recorder(std::sync::Mutex<Vec<i64>>);

#[async_trait]
impl Handler for Recorder {
    fn role(&self) -> Role {
        Role::Audit
    }
    fn group(&self) -> &'static str {
        "recorder"
    }
    fn wants(&self, _: &Envelope) -> bool {
        true
    }
    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        self.0
            .lock()
            .unwrap()
            .extend(events.iter().map(|e| e.position));
        Ok(())
    }
}

impl Recorder {
    fn seen(&self) -> Vec<i64> {
        self.0.lock().unwrap().clone()
    }
}

const RAW_EVENT: &str = "INSERT INTO events (id, topic, type, user_id, subject, payload, created_at) \
    VALUES ($1, 'task-events', 'com.taskflow.test.v1', $2, NULL, $3, 0) RETURNING position";

async fn raw_event(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, user: &User) -> i64 {
    use sqlx::Row as _;
    let id = uuid::Uuid::now_v7().to_string();
    let payload = serde_json::json!({"specversion": "1.0", "id": id, "source": "test", "type": "com.taskflow.test.v1",
        "time": "2026-11-20T12:00:00Z", "datacontenttype": "application/json", "userid": user.id.to_string(), "data": {}});
    sqlx::query(RAW_EVENT)
        .bind(id)
        .bind(user.id.to_string())
        .bind(payload.to_string())
        .fetch_one(&mut **tx)
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

async fn wait_for(rec: &Recorder, n: usize) {
    for _ in 0..300 {
        if rec.seen().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// On PostgreSQL a lower position can commit after a higher one. A reader must not move past
/// it while its transaction runs, and must move past it once it rolled back.
#[tokio::test]
async fn on_postgres_a_consumer_waits_for_a_position_still_committing_and_skips_a_rolled_back_one()
{
    let Some(e) = env(Backend::Postgres, "2026-11-20T12:00:00Z", "UTC").await else {
        return;
    };
    let pool = sqlx::PgPool::connect(&e._db.url).await.unwrap();
    let rec = Arc::new(Recorder(std::sync::Mutex::new(Vec::new())));
    let (stop_tx, stop) = watch::channel(false);
    let bus = e.app.bus().clone();
    let handler = rec.clone();
    let run = tokio::spawn(async move {
        bus.consume(
            handler,
            ConsumerConfig::default(),
            Readiness::default(),
            stop,
        )
        .await
    });

    // Position 1 is taken by an open transaction; position 2 commits first.
    let mut slow = pool.begin().await.unwrap();
    let first = raw_event(&mut slow, &e.user).await;
    e.app.create_task(&e.user, draft("second")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        rec.seen().is_empty(),
        "must not pass position {first} while it may still commit: {:?}",
        rec.seen()
    );
    slow.commit().await.unwrap();
    e.app.bus().committed(first);
    wait_for(&rec, 2).await;
    assert_eq!(rec.seen(), vec![first, first + 1], "both, in log order");

    // A rolled-back position never appears: the reader moves past it.
    let mut doomed = pool.begin().await.unwrap();
    let gone = raw_event(&mut doomed, &e.user).await;
    e.app
        .create_task(&e.user, draft("after the rollback"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rec.seen().len(), 2);
    doomed.rollback().await.unwrap();
    wait_for(&rec, 3).await;
    assert_eq!(rec.seen(), vec![first, first + 1, gone + 1]);
    stop_tx.send(true).unwrap();
    run.await.unwrap();
}

#[tokio::test]
async fn the_audit_log_refuses_updates_and_deletes() {
    for e in each_backend("2026-11-20T12:00:00Z", "UTC").await {
        e.app
            .create_task(&e.user, draft("kept forever"))
            .await
            .unwrap();
        Audit::new(e.app.clone())
            .handle(&events(e.store.as_ref()).await)
            .await
            .unwrap();
        let url = e._db.url.clone();
        // The same two statements on whichever backend this is.
        macro_rules! tamper {
            ($pool:expr) => {{
                let pool = $pool;
                let update = sqlx::query("UPDATE audit_log SET type = 'forged'")
                    .execute(&pool)
                    .await;
                let delete = sqlx::query("DELETE FROM audit_log").execute(&pool).await;
                (update.map(|_| ()), delete.map(|_| ()))
            }};
        }
        let (update, delete) = if url.starts_with("postgres") {
            tamper!(sqlx::PgPool::connect(&url).await.unwrap())
        } else {
            tamper!(sqlx::SqlitePool::connect(&url).await.unwrap())
        };
        for result in [update, delete] {
            let err = result.expect_err("the audit log is append-only");
            assert!(err.to_string().contains("append-only"), "{err}");
        }
        assert_eq!(e.store.audit_all(0, 10).await.unwrap().len(), 1);
    }
}
