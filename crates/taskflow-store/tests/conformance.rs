//! One conformance story, run against SQLite always and against PostgreSQL whenever a
//! server is configured (`scripts/test` requires it).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use taskflow_core::{
    CloudEvent, Due, Email, EventKind, Priority, Tag, Tags, Task, TaskDraft, TaskStatus, TaskTitle,
    Timezone, User, UserId, UserName,
};
use taskflow_store::{
    Conversation, Decision, Message, Order, Refusal, SortBy, Store, StoreError, TaskQuery, TaskRef,
    TaskStore,
};
use taskflow_testkit::TestDb;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn user(email: &str, tz: &str) -> User {
    User {
        id: UserId::new(),
        email: Email::parse(email).unwrap(),
        name: UserName::parse("n").unwrap(),
        timezone: Timezone::parse(tz).unwrap(),
        created_at: Utc::now(),
    }
}

async fn add(store: &dyn TaskStore, u: &User, title: &str, f: impl FnOnce(&mut TaskDraft)) -> Task {
    let mut d = TaskDraft {
        title: Some(TaskTitle::parse(title).unwrap()),
        ..TaskDraft::default()
    };
    f(&mut d);
    let task = Task::create(u.id, d, u.timezone, t("2026-11-01T00:00:00Z")).unwrap();
    let ev = Box::new(|t: &Task| {
        CloudEvent::for_task(EventKind::TaskCreated, t, &[], "test", None, Utc::now())
    });
    store
        .insert_task(&task, u.timezone, ev, None)
        .await
        .unwrap()
        .0
}

async fn titles(store: &dyn Store, u: &User, q: TaskQuery) -> Vec<String> {
    store
        .list_tasks(u.id, &q)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|t| t.title.as_str().to_owned())
        .collect()
}

/// Every page of a query, following cursors.
async fn all_pages(store: &dyn Store, u: &User, mut q: TaskQuery) -> Vec<i64> {
    let mut seen = Vec::new();
    loop {
        let page = store.list_tasks(u.id, &q).await.unwrap();
        assert!(page.items.len() <= q.limit as usize);
        seen.extend(page.items.iter().map(|t| t.number));
        let Some(c) = page.next_cursor else { break };
        q.cursor = Some(c);
    }
    seen
}

async fn story(store: Arc<dyn Store>) {
    let store = store.as_ref();
    assert_eq!(
        store.migrate().await.unwrap(),
        0,
        "migrations were applied at open; a second run applies none"
    );
    store.ping().await.unwrap();

    // Users and settings.
    let ada = user("ada@example.com", "Europe/Paris");
    let bob = user("bob@example.com", "UTC");
    store.insert_user(&ada, "hash-a").await.unwrap();
    store.insert_user(&bob, "hash-b").await.unwrap();
    let dup = user("ADA@example.com", "UTC");
    assert!(matches!(
        store.insert_user(&dup, "x").await,
        Err(StoreError::Duplicate("email"))
    ));
    let found = store
        .user_by_email(&Email::parse("ada@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.user.id, found.password_hash.as_str()),
        (ada.id, "hash-a")
    );
    assert_eq!(
        store.setting_or_insert("k", "first").await.unwrap(),
        "first"
    );
    assert_eq!(
        store.setting_or_insert("k", "second").await.unwrap(),
        "first"
    );

    // Numbers are per user.
    let rent = add(store, &ada, "Pay rent", |d| {
        d.priority = Priority::Urgent;
        d.tags = Tags::parse(&["home", "bills"]).unwrap();
        d.due = Some(Due::Date(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()));
    })
    .await;
    let milk = add(store, &ada, "buy Milk", |d| {
        d.tags = Tags::parse(&["home"]).unwrap();
        d.due = Some(Due::At(t("2026-11-20T10:00:00Z")));
        d.description = taskflow_core::Description::parse("from the corner shop").unwrap();
    })
    .await;
    let call = add(store, &ada, "call mom", |d| d.priority = Priority::Low).await;
    let sql = add(store, &ada, "'; DROP TABLE tasks; --", |_| {}).await;
    let bobs = add(store, &bob, "bob's task", |_| {}).await;
    assert_eq!(
        [
            rent.number,
            milk.number,
            call.number,
            sql.number,
            bobs.number
        ],
        [1, 2, 3, 4, 1]
    );
    assert_eq!(sql.title.as_str(), "'; DROP TABLE tasks; --");
    assert_eq!(store.count_tasks().await.unwrap(), 5);

    // Reads are scoped to their user.
    assert_eq!(store.task(ada.id, rent.id).await.unwrap().unwrap(), rent);
    assert!(store.task(bob.id, rent.id).await.unwrap().is_none());
    assert!(store.task_by_number(bob.id, 2).await.unwrap().is_none());
    assert_eq!(
        store.task_by_number(ada.id, 2).await.unwrap().unwrap().id,
        milk.id
    );

    // A change: read, decided and written in one call.
    let complete = |t: &mut Task| -> Result<Decision, Refusal> {
        t.complete(Utc::now());
        Ok(Decision::Update(CloudEvent::for_task(
            EventKind::TaskCompleted,
            t,
            &["status"],
            "test",
            None,
            Utc::now(),
        )))
    };
    let events_before = store.count_events().await.unwrap();
    let (changed, position) = store
        .change_task(ada.id, TaskRef::Id(milk.id), ada.timezone, &complete)
        .await
        .unwrap();
    assert_eq!(
        (changed.status, changed.version),
        (TaskStatus::Completed, 2)
    );
    assert!(position.is_some());
    assert_eq!(store.count_events().await.unwrap(), events_before + 1);
    // By number, another user's task is not there.
    assert!(matches!(
        store
            .change_task(
                bob.id,
                TaskRef::Number(milk.number),
                bob.timezone,
                &complete
            )
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .change_task(bob.id, TaskRef::Id(milk.id), bob.timezone, &complete)
            .await,
        Err(StoreError::NotFound)
    ));
    // Kept: no write, no event; refused: the decision's error, nothing written.
    let (kept, position) = store
        .change_task(ada.id, TaskRef::Number(milk.number), ada.timezone, &|_| {
            Ok(Decision::Keep)
        })
        .await
        .unwrap();
    assert_eq!((kept.version, position), (2, None));
    let refused = store
        .change_task(ada.id, TaskRef::Id(milk.id), ada.timezone, &|t| {
            t.complete(Utc::now());
            Err("no, thanks".into())
        })
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Refused(why)) if why.to_string() == "no, thanks"),
        "{refused:?}"
    );
    assert_eq!(store.count_events().await.unwrap(), events_before + 1);
    let stored = store.task(ada.id, milk.id).await.unwrap().unwrap();
    assert_eq!(stored.status, TaskStatus::Completed);
    assert_eq!(stored.version, 2);

    // Filters.
    let q = |f: fn(&mut TaskQuery)| {
        let mut q = TaskQuery::default();
        f(&mut q);
        q
    };
    assert_eq!(
        titles(store, &ada, q(|q| q.status = Some(TaskStatus::Completed))).await,
        ["buy Milk"]
    );
    assert_eq!(
        titles(
            store,
            &ada,
            q(|q| q.priorities = vec![Priority::Urgent, Priority::Low])
        )
        .await,
        ["Pay rent", "call mom"]
    );
    assert_eq!(
        titles(
            store,
            &ada,
            q(|q| q.tags = vec![Tag::parse("home").unwrap(), Tag::parse("bills").unwrap()])
        )
        .await,
        ["Pay rent"]
    );
    assert_eq!(
        titles(
            store,
            &ada,
            q(|q| q.words = vec!["corner".into(), "milk".into()])
        )
        .await,
        ["buy Milk"]
    );
    assert!(
        titles(
            store,
            &ada,
            q(|q| q.words = vec!["corner".into(), "rent".into()])
        )
        .await
        .is_empty()
    );
    assert!(
        titles(store, &bob, q(|q| q.words = vec!["rent".into()]))
            .await
            .is_empty(),
        "search is scoped"
    );
    // Paris: 2026-12-01 runs from 2026-11-30T23:00Z to 2026-12-01T23:00Z.
    assert_eq!(
        titles(
            store,
            &ada,
            q(|q| q.due_after = Some(t("2026-12-01T22:00:00Z")))
        )
        .await,
        ["Pay rent"]
    );
    assert!(
        titles(
            store,
            &ada,
            q(|q| q.due_after = Some(t("2026-12-01T23:00:00Z")))
        )
        .await
        .is_empty()
    );
    assert_eq!(
        titles(
            store,
            &ada,
            q(|q| q.due_before = Some(t("2026-11-30T23:00:00Z")))
        )
        .await,
        ["buy Milk", "Pay rent"]
    );
    let mut overdue = TaskQuery {
        overdue: Some((t("2026-12-02T00:00:00Z"), true)),
        ..TaskQuery::default()
    };
    assert_eq!(
        titles(store, &ada, overdue.clone()).await,
        ["Pay rent"],
        "completed tasks are never overdue"
    );
    overdue.overdue = Some((t("2026-12-01T12:00:00Z"), true));
    assert!(
        titles(store, &ada, overdue).await.is_empty(),
        "an all-day task is not overdue on its own day"
    );

    // A new timezone moves the day an all-day task stands for.
    let ada_nz = User {
        timezone: Timezone::parse("Pacific/Auckland").unwrap(),
        ..ada.clone()
    };
    store.update_user(&ada_nz).await.unwrap();
    assert_eq!(
        store.user(ada.id).await.unwrap().unwrap().timezone.name(),
        "Pacific/Auckland"
    );
    // Auckland (UTC+13 in December): 2026-12-01 runs from 2026-11-30T11:00Z to 2026-12-01T11:00Z.
    assert_eq!(
        titles(
            store,
            &ada,
            q(|q| q.due_after = Some(t("2026-12-01T10:00:00Z")))
        )
        .await,
        ["Pay rent"]
    );
    assert!(
        titles(
            store,
            &ada,
            q(|q| q.due_after = Some(t("2026-12-01T11:00:00Z")))
        )
        .await
        .is_empty()
    );
    assert_eq!(
        titles(
            store,
            &ada,
            q(|q| q.due_before = Some(t("2026-11-30T11:00:00Z")))
        )
        .await,
        ["buy Milk", "Pay rent"]
    );
    assert!(matches!(
        store
            .update_user(&User {
                id: UserId::new(),
                ..ada.clone()
            })
            .await,
        Err(StoreError::NotFound)
    ));

    // Sorting: undated last in both orders; priority urgent first; title case-insensitive.
    assert_eq!(
        titles(store, &ada, q(|_| {})).await,
        [
            "buy Milk",
            "Pay rent",
            "call mom",
            "'; DROP TABLE tasks; --"
        ]
    );
    assert_eq!(
        titles(store, &ada, q(|q| q.order = Order::Desc)).await,
        [
            "Pay rent",
            "buy Milk",
            "'; DROP TABLE tasks; --",
            "call mom"
        ]
    );
    assert_eq!(
        titles(store, &ada, q(|q| q.sort = SortBy::Priority)).await[0],
        "Pay rent"
    );
    assert_eq!(
        titles(store, &ada, q(|q| q.sort = SortBy::Priority)).await[3],
        "call mom"
    );
    assert_eq!(
        titles(store, &ada, q(|q| q.sort = SortBy::Title)).await,
        [
            "'; DROP TABLE tasks; --",
            "buy Milk",
            "call mom",
            "Pay rent"
        ]
    );

    // Pagination visits every task once, in every sort and order, also with inserts between pages.
    for _ in 0..23 {
        add(store, &ada, "filler", |d| {
            d.due = Some(Due::At(t("2026-11-25T00:00:00Z")))
        })
        .await;
    }
    for sort in [
        SortBy::Due,
        SortBy::Priority,
        SortBy::Created,
        SortBy::Title,
    ] {
        for order in [Order::Asc, Order::Desc] {
            let mut query = TaskQuery {
                sort,
                order,
                limit: 5,
                ..TaskQuery::default()
            };
            let mut seen = all_pages(store, &ada, query.clone()).await;
            let full = {
                query.limit = 200;
                store
                    .list_tasks(ada.id, &query)
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .map(|t| t.number)
                    .collect::<Vec<_>>()
            };
            assert_eq!(seen, full, "paging {sort:?} {order:?} matches one big page");
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), 27);
        }
    }

    // Delete, and the event log.
    let delete = |t: &mut Task| -> Result<Decision, Refusal> {
        Ok(Decision::Delete(CloudEvent::for_task(
            EventKind::TaskDeleted,
            t,
            &[],
            "test",
            None,
            Utc::now(),
        )))
    };
    assert!(matches!(
        store
            .change_task(bob.id, TaskRef::Id(call.id), bob.timezone, &delete)
            .await,
        Err(StoreError::NotFound)
    ));
    store
        .change_task(ada.id, TaskRef::Id(call.id), ada.timezone, &delete)
        .await
        .unwrap();
    assert!(store.task(ada.id, call.id).await.unwrap().is_none());
    let events = store.events_after(0, 1000).await.unwrap();
    assert_eq!(events.len() as i64, store.count_events().await.unwrap());
    assert_eq!(
        events.len(),
        5 + 23 + 1 + 1,
        "one event per successful write, none for refused ones"
    );
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(
        events.last().unwrap().event.ty,
        "com.taskflow.task.deleted.v1"
    );
    assert_eq!(
        store.last_position().await.unwrap(),
        events.last().unwrap().position
    );
    assert!(
        events
            .iter()
            .all(|e| e.topic == taskflow_core::Topic::TaskEvents)
    );
    assert_eq!(
        store
            .events_after(events[2].position, 2)
            .await
            .unwrap()
            .len(),
        2
    );
}

/// A unit of work: its writes are seen inside it only, all of them or none are kept, and a
/// write that fails inside it is undone alone.
async fn unit_story(store: Arc<dyn Store>) {
    let ada = user("unit@example.com", "UTC");
    store.insert_user(&ada, "hash").await.unwrap();
    let events = store.count_events().await.unwrap();

    let unit = store.begin().await.unwrap();
    let dropped = add(&*unit, &ada, "rolled back", |_| {}).await;
    assert!(unit.task(ada.id, dropped.id).await.unwrap().is_some());
    assert!(
        store.task(ada.id, dropped.id).await.unwrap().is_none(),
        "not before the commit"
    );
    drop(unit);
    assert!(store.task(ada.id, dropped.id).await.unwrap().is_none());
    assert_eq!(store.count_events().await.unwrap(), events);

    let unit = store.begin().await.unwrap();
    let first = add(&*unit, &ada, "first", |_| {}).await;
    assert_eq!(
        first.number, 1,
        "the number of the rolled-back task is free again"
    );
    assert!(matches!(
        unit.change_task(ada.id, TaskRef::Id(first.id), ada.timezone, &|_| {
            Err("refused".into())
        })
        .await,
        Err(StoreError::Refused(_))
    ));
    let second = add(&*unit, &ada, "second", |_| {}).await;
    let now = Utc::now();
    let convo = Conversation {
        id: "c-unit".into(),
        user_id: ada.id.to_string(),
        title: "t".into(),
        state: serde_json::json!({}),
        created_at: now,
        updated_at: now,
    };
    let message = |content: &str| Message {
        id: "m-unit".into(),
        role: "assistant".into(),
        content: content.into(),
        tool_calls: serde_json::json!([]),
        created_at: now,
    };
    unit.save_exchange(&convo, &[message("so far")])
        .await
        .unwrap();
    unit.save_exchange(&convo, &[message("final")])
        .await
        .unwrap();
    unit.commit().await.unwrap();
    assert!(matches!(unit.commit().await, Err(StoreError::Ended)));
    assert!(matches!(
        unit.task(ada.id, first.id).await,
        Err(StoreError::Ended)
    ));

    assert_eq!(
        store.task(ada.id, first.id).await.unwrap().unwrap().version,
        first.version
    );
    assert_eq!(
        store.task(ada.id, second.id).await.unwrap().unwrap().number,
        2
    );
    assert_eq!(store.count_events().await.unwrap(), events + 2);
    let saved = store.messages(ada.id, "c-unit", 10).await.unwrap();
    assert_eq!(
        saved.len(),
        1,
        "a message saved again is one message: {saved:?}"
    );
    assert_eq!(saved[0].content, "final");
}

/// A lease is one holder's until it expires; renewing keeps it, release frees it.
async fn lease_story(store: &dyn Store) {
    let now = t("2026-11-01T00:00:00Z");
    let at = |secs: i64| now + chrono::TimeDelta::seconds(secs);
    let ttl = std::time::Duration::from_secs(10);
    assert!(store.try_lease("relay", "a", now, ttl).await.unwrap());
    assert!(
        !store.try_lease("relay", "b", at(1), ttl).await.unwrap(),
        "held by a"
    );
    assert!(
        store.try_lease("relay", "a", at(5), ttl).await.unwrap(),
        "renewed"
    );
    assert!(
        !store.try_lease("relay", "b", at(12), ttl).await.unwrap(),
        "renewed until 15 s"
    );
    assert!(
        store.try_lease("relay", "b", at(16), ttl).await.unwrap(),
        "expired: taken over"
    );
    assert!(!store.try_lease("relay", "a", at(17), ttl).await.unwrap());
    store.release_lease("relay", "a").await.unwrap();
    assert!(
        !store.try_lease("relay", "a", at(17), ttl).await.unwrap(),
        "only the holder releases"
    );
    store.release_lease("relay", "b").await.unwrap();
    assert!(
        store.try_lease("relay", "a", at(17), ttl).await.unwrap(),
        "released: free at once"
    );
    assert!(
        store.try_lease("other", "b", at(17), ttl).await.unwrap(),
        "leases are by name"
    );
}

/// Changes of one task that race each other each land on what the one before wrote: none is
/// lost, none has to be tried again.
async fn race_story(store: Arc<dyn Store>) {
    let ada = user("race@example.com", "UTC");
    store.insert_user(&ada, "hash").await.unwrap();
    let task = add(&*store, &ada, "raced", |_| {}).await;
    let changes = (0..10).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            let tag = |t: &mut Task| -> Result<Decision, Refusal> {
                let mut tags: Vec<String> = t.tags.iter().map(|g| g.as_str().to_owned()).collect();
                tags.push(format!("t{n}"));
                t.tags = Tags::parse(&tags)?;
                t.version += 1;
                Ok(Decision::Update(CloudEvent::for_task(
                    EventKind::TaskUpdated,
                    t,
                    &["tags"],
                    "test",
                    None,
                    Utc::now(),
                )))
            };
            store
                .change_task(ada.id, TaskRef::Id(task.id), ada.timezone, &tag)
                .await
        })
    });
    for change in changes.collect::<Vec<_>>() {
        change.await.unwrap().unwrap();
    }
    let after = store.task(ada.id, task.id).await.unwrap().unwrap();
    assert_eq!(after.tags.iter().count(), 10, "{:?}", after.tags);
    assert_eq!(after.version, task.version + 10);
}

/// Audit entries arrive in batches larger than one statement carries, and a redelivered
/// batch adds nothing. Runs on an empty audit log.
async fn audit_story(store: &dyn Store) {
    let ada = user("audit@example.com", "UTC");
    store.insert_user(&ada, "hash").await.unwrap();
    let task = add(store, &ada, "audited", |_| {}).await;
    let events: Vec<CloudEvent> = (0..1_201)
        .map(|_| {
            CloudEvent::for_task(
                EventKind::TaskUpdated,
                &task,
                &["title"],
                "test",
                None,
                Utc::now(),
            )
        })
        .collect();
    let batch: Vec<(i64, &CloudEvent)> = (1..).zip(&events).collect();
    store.append_audit(&batch).await.unwrap();
    store.append_audit(&batch[..600]).await.unwrap();
    let kept = store.audit_all(0, 10_000).await.unwrap();
    assert_eq!(
        kept.iter().map(|e| e.id).collect::<Vec<_>>(),
        (1..=1_201).collect::<Vec<_>>()
    );
    assert!(kept.iter().zip(&events).all(|(a, e)| a.event_id == e.id));
}

/// Pruning the outbox removes old events up to a position, never the newest one.
async fn prune_story(store: &dyn Store) {
    let ada = user("prune@example.com", "UTC");
    store.insert_user(&ada, "hash").await.unwrap();
    for n in 0..3 {
        add(store, &ada, &format!("p{n}"), |_| {}).await;
    }
    let last = store.last_position().await.unwrap();
    let count = store.count_events().await.unwrap();
    assert!(count >= 3);
    let written = store.events_after(0, 10_000).await.unwrap();
    let audited: Vec<(i64, &taskflow_core::CloudEvent)> =
        written.iter().map(|e| (e.position, &e.event)).collect();
    store.append_audit(&audited).await.unwrap();
    let future = chrono::Utc::now() + chrono::TimeDelta::days(1);
    assert_eq!(
        store
            .prune_events(last, t("2000-01-01T00:00:00Z"))
            .await
            .unwrap(),
        0,
        "none written before 2000"
    );
    assert_eq!(
        store.prune_events(last - 2, future).await.unwrap() as i64,
        count - 2,
        "up to the position only"
    );
    let left: Vec<i64> = store
        .events_after(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(left, [last - 1, last]);
    assert_eq!(store.prune_events(last, future).await.unwrap(), 1);
    assert_eq!(store.count_events().await.unwrap(), 1, "the newest stays");
    assert_eq!(store.last_position().await.unwrap(), last);
    let next = add(store, &ada, "after", |_| {}).await;
    let after = store.events_after(last, 10).await.unwrap();
    assert_eq!(after.len(), 1, "positions go on after a prune");
    assert_eq!(
        after[0].event.subject.as_deref(),
        Some(next.id.to_string().as_str())
    );
    // A rebuild after a prune resets the audit log from the oldest event left only.
    let ids = |entries: Vec<taskflow_store::AuditEntry>| -> Vec<i64> {
        entries.iter().map(|e| e.id).collect()
    };
    let kept = ids(store.audit_all(0, 10_000).await.unwrap());
    assert_eq!(kept.len() as i64, count);
    store.reset_audit(last).await.unwrap();
    let left = ids(store.audit_all(0, 10_000).await.unwrap());
    assert_eq!(
        left,
        kept[..kept.len() - 1],
        "entries before the oldest event stay"
    );
    // The append-only guard is back: lifting it again works only when it is there.
    store.reset_audit(last - 1).await.unwrap();
    assert_eq!(
        ids(store.audit_all(0, 10_000).await.unwrap()),
        kept[..kept.len() - 2]
    );
    store.reset_audit(0).await.unwrap();
    assert!(store.audit_all(0, 10_000).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_sqlite_adapter_keeps_the_storage_contract() {
    let db = TestDb::sqlite();
    let store = taskflow_store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    story(store.clone()).await;
    lease_story(&*store).await;
    unit_story(store.clone()).await;
    race_story(store.clone()).await;
    prune_story(&*store).await;
    audit_story(&*store).await;
}

#[tokio::test]
async fn the_postgres_adapter_keeps_the_storage_contract() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = taskflow_store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    story(store.clone()).await;
    lease_story(&*store).await;
    unit_story(store.clone()).await;
    race_story(store.clone()).await;
    prune_story(&*store).await;
    audit_story(&*store).await;
}

#[tokio::test]
async fn an_unknown_url_scheme_is_refused() {
    let err = taskflow_store::connect("mysql://x").await.unwrap_err();
    assert!(
        err.to_string().contains("sqlite:PATH or postgres://"),
        "{err}"
    );
}
