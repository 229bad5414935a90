//! The hot writes of a SQLite file (a new task, a change, a delete, each with its event; the
//! consumers' offsets; the audit log), on one thread with its own rusqlite connection.
//! Callers queue jobs; each turn the thread takes every job waiting and runs them in one
//! transaction (group commit), each job in its own savepoint so that one job's failure undoes
//! only its own changes. A caller is answered once the transaction has committed: an
//! acknowledged write is in the database file's log.
//!
//! The writes that still go through sqlx keep their one connection (its pool holds one); the
//! thread holds that connection for as long as each of its transactions runs, so the two never
//! write at once, and a unit of work holding it keeps the thread waiting as it keeps any
//! other write waiting.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::Duration,
};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, ToSql, ffi};
use sqlx::SqlitePool;
use taskflow_core::{CloudEvent, Task, Timezone, UserId};

use super::Direct;
use crate::{
    Decide, Decision, EventFor, Handled, Result, StoreError, TaskRef, micros,
    shared::{
        APPEND_EVENT, DELETE_REMINDERS, DELETE_TAGS, DELETE_TASK, FIRED_REMINDERS, INSERT_REMINDER,
        INSERT_TAG, INSERT_TASK, MARK_HANDLED, NEXT_NUMBER, SAVE_OFFSET, TASK_EXISTS, TaskValues,
        UPDATE_TASK, insert_audit, kept_status,
    },
};

/// The most jobs one transaction takes; the rest wait for the next turn.
const MAX_BATCH: usize = 256;

/// Reads and decides a change again at most this often when other changes of the task
/// landed between its read and its write; then the caller hears of the conflict.
const ATTEMPTS: usize = 16;

/// A queued write: run inside the transaction, then answered once it has ended.
trait Work: Send {
    /// Runs the job; false when it failed and its savepoint must be rolled back.
    fn run(&mut self, c: &Connection) -> bool;
    /// Answers the caller: with the job's own result when the transaction committed, with
    /// `failed` when it did not.
    fn answer(self: Box<Self>, failed: Option<&str>);
}

struct Pending<T, F> {
    job: Option<F>,
    out: Option<Result<T>>,
    reply: tokio::sync::oneshot::Sender<Result<T>>,
}

impl<T, F> Work for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T> + Send,
{
    fn run(&mut self, c: &Connection) -> bool {
        let Some(job) = self.job.take() else {
            return false;
        };
        let out = catch_unwind(AssertUnwindSafe(|| job(c)))
            .unwrap_or_else(|_| Err(StoreError::Corrupt("a write job panicked".into())));
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn answer(self: Box<Self>, failed: Option<&str>) {
        let out = match (failed, self.out) {
            // A job that failed says why, whatever became of the others.
            (_, Some(Err(e))) => Err(e),
            (None, Some(ok)) => ok,
            (Some(why), _) => Err(StoreError::Database(why.into())),
            (None, None) => Err(StoreError::Database("the write was not run".into())),
        };
        let _ = self.reply.send(out);
    }
}

/// The writer thread of one SQLite file; cheap to clone. The thread ends when the last
/// clone is dropped.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Box<dyn Work>>,
    /// Transactions committed so far.
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the tests"))]
    groups: Arc<AtomicU64>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

fn stopped() -> StoreError {
    StoreError::Database("the SQLite writer has stopped".into())
}

impl Writer {
    /// Opens the writer connection to the database file at `path` and starts its thread;
    /// `gate` is the pool of the sqlx writer, held during each transaction.
    pub(crate) fn open(path: &Path, gate: SqlitePool, synchronous: &str) -> Result<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "cache_size", -16000)?;
        conn.pragma_update(None, "temp_store", "memory")?;
        conn.set_prepared_statement_cache_capacity(32);
        super::direct::stable_plans(&conn)?;
        // Checkpoints run beside the writer, not inside its commits (they took a sixth of
        // its time under a create load).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = Connection::open_with_flags(path, flags)?;
        checkpointer.busy_timeout(Duration::from_secs(10))?;
        checkpointer.pragma_update(None, "synchronous", synchronous)?;
        let (wake, woken) = mpsc::sync_channel(1);
        spawn("sqlite-checkpoint", move || {
            checkpoints(&checkpointer, &woken)
        })?;
        let (jobs, queue) = mpsc::channel();
        let runtime = tokio::runtime::Handle::current();
        let groups = Arc::new(AtomicU64::new(0));
        let counted = groups.clone();
        spawn("sqlite-writer", move || {
            serve(conn, &queue, &gate, &runtime, &counted, &wake);
        })?;
        Ok(Self { jobs, groups })
    }

    /// How many transactions the writer has committed.
    #[cfg(test)]
    pub(crate) fn groups(&self) -> u64 {
        self.groups.load(Ordering::Relaxed)
    }

    /// Queues `job` and waits for the transaction it ran in to end.
    async fn write<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let work = Pending {
            job: Some(job),
            out: None,
            reply,
        };
        self.jobs.send(Box::new(work)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    pub(crate) async fn insert_task(
        &self,
        task: &Task,
        tz: Timezone,
        event: EventFor,
        handled: Option<Handled<'_>>,
    ) -> Result<(Task, i64)> {
        let mut task = task.clone();
        let handled = handled.map(|h| (h.consumer.to_owned(), h.event_id.to_owned()));
        self.write(move |c| {
            if let Some((consumer, event_id)) = &handled {
                mark_handled(c, consumer, event_id)?;
            }
            task.number = c
                .prepare_cached(NEXT_NUMBER)?
                .query_row([task.user_id.to_string()], |r| r.get(0))
                .optional()?
                .ok_or(StoreError::NotFound)?;
            let v = TaskValues::of(&task, tz);
            let (id, user) = (task.id.to_string(), task.user_id.to_string());
            let mut params: Vec<&dyn ToSql> = vec![&id, &user, &task.number];
            params.extend(values(&v));
            match c.prepare_cached(INSERT_TASK)?.execute(&params[..]) {
                Ok(_) => {}
                Err(e) if unique_violation(&e) => return Err(StoreError::Duplicate("occurrence")),
                Err(e) => return Err(e.into()),
            }
            write_children(c, &task, false)?;
            let position = append_event(c, &event(&task))?;
            Ok((task, position))
        })
        .await
    }

    pub(crate) async fn save_consumer_offset(&self, consumer: &str, position: i64) -> Result<()> {
        let consumer = consumer.to_owned();
        self.write(move |c| {
            c.prepare_cached(SAVE_OFFSET)?.execute((
                &consumer,
                position,
                micros(chrono::Utc::now()),
            ))?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn append_audit(&self, events: &[(i64, &CloudEvent)]) -> Result<()> {
        let rows: Vec<_> = events
            .iter()
            .map(|&(position, e)| {
                let event = (
                    e.id.clone(),
                    e.ty.clone(),
                    e.userid.clone(),
                    e.subject.clone(),
                );
                (position, event, micros(e.time), e.data.to_string())
            })
            .collect();
        self.write(move |c| {
            let mut st = c.prepare_cached(&insert_audit(1))?;
            for (position, (id, ty, user, task), at, data) in &rows {
                st.execute((position, id, ty, user, task, at, data))?;
            }
            Ok(())
        })
        .await
    }

    /// Reads the task on a direct reader, lets `decide` change it, and writes the outcome
    /// guarded by the version it read; when another change landed in between, reads and
    /// decides again.
    pub(crate) async fn change_task(
        &self,
        direct: &Direct,
        user: UserId,
        key: TaskRef,
        tz: Timezone,
        decide: Decide<'_>,
    ) -> Result<(Task, Option<i64>)> {
        for _ in 0..ATTEMPTS {
            let mut task = direct.task(user, key).await?.ok_or(StoreError::NotFound)?;
            let before = task.version;
            let (event, update) = match decide(&mut task).map_err(StoreError::Refused)? {
                Decision::Keep => return Ok((task, None)),
                Decision::Update(event) => (event, Some(TaskValues::of(&task, tz))),
                Decision::Delete(event) => (event, None),
            };
            let written = self
                .write(move |c| {
                    let (id, owner) = (task.id.to_string(), task.user_id.to_string());
                    let position = match update {
                        Some(v) => {
                            let mut params: Vec<&dyn ToSql> = values(&v).to_vec();
                            params.extend([&id as &dyn ToSql, &owner, &before]);
                            let n = c.prepare_cached(UPDATE_TASK)?.execute(&params[..])?;
                            guarded(c, n, &owner, &id)?;
                            write_children(c, &task, true)?;
                            append_event(c, &event)?
                        }
                        None => {
                            let n = c
                                .prepare_cached(DELETE_TASK)?
                                .execute((&id, &owner, before))?;
                            guarded(c, n, &owner, &id)?;
                            append_event(c, &event)?
                        }
                    };
                    Ok((task, Some(position)))
                })
                .await;
            match written {
                Err(StoreError::VersionConflict) => continue,
                other => return other,
            }
        }
        Err(StoreError::VersionConflict)
    }
}

fn spawn(name: &str, run: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(run)
        .map(drop)
        .map_err(|e| StoreError::Database(Box::new(e)))
}

/// Copies the log into the database file after commits, without blocking the writer or
/// the readers; ends with the writer.
fn checkpoints(conn: &Connection, woken: &mpsc::Receiver<()>) {
    while woken.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "a checkpoint failed");
        }
    }
}

/// The thread: waits for a job, then runs it and every job queued behind it in one
/// transaction while holding the sqlx writer, then answers them all.
fn serve(
    mut conn: Connection,
    queue: &mpsc::Receiver<Box<dyn Work>>,
    gate: &SqlitePool,
    runtime: &tokio::runtime::Handle,
    groups: &AtomicU64,
    checkpoint: &mpsc::SyncSender<()>,
) {
    while let Ok(first) = queue.recv() {
        let held = runtime.block_on(gate.acquire());
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let failed = match &held {
            Ok(_) => match commit(&mut conn, &mut batch) {
                Ok(()) => {
                    groups.fetch_add(1, Ordering::Relaxed);
                    // One wake-up covers every commit before the checkpoint starts.
                    let _ = checkpoint.try_send(());
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, jobs = batch.len(), "a group of writes failed");
                    Some(e.to_string())
                }
            },
            Err(e) => Some(e.to_string()),
        };
        // Returned to its pool by a task, so inside the runtime.
        runtime.block_on(async move { drop(held) });
        for job in batch {
            job.answer(failed.as_deref());
        }
    }
}

/// Runs `batch` in one transaction, each job in a savepoint, and commits.
fn commit(conn: &mut Connection, batch: &mut [Box<dyn Work>]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for job in batch.iter_mut() {
        tx.execute_batch("SAVEPOINT job")?;
        if job.run(&tx) {
            tx.execute_batch("RELEASE job")?;
        } else {
            // Some errors (a full disk, an I/O error) end the whole transaction; then
            // nothing of this group stands, and no later job may run outside it.
            tx.execute_batch("ROLLBACK TO job; RELEASE job")?;
        }
        if tx.is_autocommit() {
            return Err(rusqlite::Error::SqliteFailure(
                ffi::Error::new(ffi::SQLITE_ABORT),
                Some("the transaction ended early".into()),
            ));
        }
    }
    tx.commit()
}

/// A task's column values in the order `INSERT_TASK` and `UPDATE_TASK` share.
fn values(v: &TaskValues) -> [&dyn ToSql; 19] {
    [
        &v.title,
        &v.title_key,
        &v.description,
        &v.status,
        &v.priority,
        &v.priority_pos,
        &v.tags,
        &v.due_at,
        &v.due_date,
        &v.due_sort,
        &v.due_last,
        &v.recurrence,
        &v.recurrence_anchor,
        &v.series_id,
        &v.created_at,
        &v.updated_at,
        &v.completed_at,
        &v.version,
        &v.occurrence,
    ]
}

fn unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == ErrorCode::ConstraintViolation
            && matches!(f.extended_code, ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY))
}

/// After a write guarded by `version = ?` touched `n` rows: when none, why — the task is
/// gone (or another user's), or it moved on.
fn guarded(c: &Connection, n: usize, user: &str, id: &str) -> Result<()> {
    if n > 0 {
        return Ok(());
    }
    let exists = c
        .prepare_cached(TASK_EXISTS)?
        .query_row((id, user), |_| Ok(()))
        .optional()?;
    Err(match exists {
        Some(()) => StoreError::VersionConflict,
        None => StoreError::NotFound,
    })
}

/// Writes a task's tags and reminders; `replace` drops the old ones first, keeping fired a
/// reminder the reminder service fired after the task was read.
fn write_children(c: &Connection, task: &Task, replace: bool) -> Result<()> {
    let id = task.id.to_string();
    let user = task.user_id.to_string();
    let mut fired = std::collections::HashSet::new();
    if replace {
        let mut st = c.prepare_cached(FIRED_REMINDERS)?;
        let rows = st.query_map([&id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            fired.insert(row?);
        }
        c.prepare_cached(DELETE_TAGS)?.execute([&id])?;
        c.prepare_cached(DELETE_REMINDERS)?.execute([&id])?;
    }
    let mut tags = c.prepare_cached(INSERT_TAG)?;
    for tag in task.tags.iter() {
        tags.execute((&id, &user, tag.as_str()))?;
    }
    let mut reminders = c.prepare_cached(INSERT_REMINDER)?;
    for (i, r) in task.reminders.iter().enumerate() {
        let (rid, fire_at) = (r.id.to_string(), micros(r.fire_at));
        let status = kept_status(r, &fired);
        reminders.execute((
            &rid,
            &id,
            &user,
            i as i64,
            fire_at,
            r.before_minutes.map(i64::from),
            status.as_str(),
        ))?;
    }
    Ok(())
}

/// Appends an event to the log; its position.
fn append_event(c: &Connection, ev: &CloudEvent) -> Result<i64> {
    let payload = serde_json::to_string(ev).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(c.prepare_cached(APPEND_EVENT)?.query_row(
        (
            &ev.id,
            ev.topic().as_str(),
            &ev.ty,
            &ev.userid,
            &ev.subject,
            &payload,
            micros(ev.time),
        ),
        |r| r.get(0),
    )?)
}

/// Records that a consumer handled an event; a second record is a duplicate.
fn mark_handled(c: &Connection, consumer: &str, event_id: &str) -> Result<()> {
    let now = micros(chrono::Utc::now());
    match c
        .prepare_cached(MARK_HANDLED)?
        .execute((consumer, event_id, now))
    {
        Ok(_) => Ok(()),
        Err(e) if unique_violation(&e) => Err(StoreError::Duplicate("event")),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;
    use taskflow_core::{CloudEvent, EventKind, Task, TaskDraft, TaskTitle, User, UserId};

    use crate::{EventLog, SqliteStore, StoreError, TaskStore, UserStore};

    fn user(email: &str) -> User {
        User {
            id: UserId::new(),
            email: taskflow_core::Email::parse(email).unwrap(),
            name: taskflow_core::UserName::parse("w").unwrap(),
            timezone: taskflow_core::Timezone::parse("UTC").unwrap(),
            created_at: Utc::now(),
        }
    }

    fn task(owner: &User, title: &str) -> Task {
        let draft = TaskDraft {
            title: Some(TaskTitle::parse(title).unwrap()),
            ..TaskDraft::default()
        };
        Task::create(owner.id, draft, owner.timezone, Utc::now()).unwrap()
    }

    fn t_zone() -> taskflow_core::Timezone {
        taskflow_core::Timezone::parse("UTC").unwrap()
    }

    fn created() -> crate::EventFor {
        Box::new(|t: &Task| {
            CloudEvent::for_task(EventKind::TaskCreated, t, &[], "test", None, Utc::now())
        })
    }

    /// Many writes at once, one of which fails after it took a number: every other write
    /// lands with its own number and event, the failed one leaves nothing behind (not even
    /// the number it took), and every caller is answered after the commit (a fresh
    /// connection sees what it was told).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queued_together_commit_together_and_one_failure_sinks_only_itself() {
        let (_dir, path, store) = SqliteStore::temporary().await;
        let store = Arc::new(store);
        let ada = user("ada@example.com");
        store.insert_user(&ada, "hash").await.unwrap();
        let mut tasks: Vec<Task> = (0..60).map(|n| task(&ada, &format!("t{n}"))).collect();
        // The same task twice: the second insert fails on its id, after its number was taken.
        tasks[30] = tasks[29].clone();
        let writes = tasks.into_iter().map(|t| {
            let (store, path) = (store.clone(), path.clone());
            tokio::spawn(async move {
                let done = store.insert_task(&t, t_zone(), created(), None).await;
                if let Ok((task, position)) = &done {
                    let fresh = rusqlite::Connection::open(&path).unwrap();
                    let seen: i64 = fresh
                        .query_row(
                            "SELECT COUNT(*) FROM tasks t JOIN events e ON e.position = ? WHERE t.id = ?",
                            (position, task.id.to_string()),
                            |r| r.get(0),
                        )
                        .unwrap();
                    assert_eq!(seen, 1, "answered before its commit");
                }
                done
            })
        });
        let (mut numbers, mut refused) = (Vec::new(), 0);
        for w in writes.collect::<Vec<_>>() {
            match w.await.unwrap() {
                Ok((task, _)) => numbers.push(task.number),
                Err(StoreError::Duplicate(_)) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        numbers.sort_unstable();
        assert_eq!(refused, 1);
        assert_eq!(numbers, (1..=59).collect::<Vec<_>>());
        assert_eq!(store.count_tasks().await.unwrap(), 59);
        assert_eq!(store.count_events().await.unwrap(), 59);
        let next = store
            .insert_task(&task(&ada, "next"), t_zone(), created(), None)
            .await
            .unwrap();
        assert_eq!(next.0.number, 60);
        let groups = store.jobs().unwrap().groups();
        assert!(
            groups < 60,
            "{groups} transactions for 60 writes: nothing was grouped"
        );
    }

    /// The writer's commits never checkpoint themselves; the checkpointer beside it copies
    /// the log into the database file soon after.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_reaches_the_database_file_without_the_writer_checkpointing() {
        let (_dir, path, store) = SqliteStore::temporary().await;
        let ada = user("cp@example.com");
        store.insert_user(&ada, "hash").await.unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        for n in 0..300 {
            let mut t = task(&ada, &format!("task {n}"));
            t.description = taskflow_core::Description::parse(&"x".repeat(2000)).unwrap();
            store
                .insert_task(&t, t_zone(), created(), None)
                .await
                .unwrap();
        }
        let grown = async {
            while std::fs::metadata(&path).unwrap().len() < before + 300 * 2000 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), grown)
            .await
            .expect("the tasks never reached the database file");
    }
}
