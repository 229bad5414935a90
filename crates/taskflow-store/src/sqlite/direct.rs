//! The reads a request makes most (the token's user, a task, a page of tasks) and the
//! consumers' reads of the event log, each as one job on a read-only rusqlite connection: its
//! statements (prepared once per connection and cached) run and its rows are decoded in that
//! job. Through sqlx every statement went to the connection's worker thread and every row came
//! back over a channel: a page of 50 tasks cost about 55 wake-ups. A request's reads run where
//! the request runs; the longer ones (a batch of events, a count of every task) on a blocking
//! thread.

use std::{
    path::Path,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use rusqlite::{
    Connection, OpenFlags, Row, ToSql,
    types::{ToSqlOutput, Value},
};
use taskflow_core::{Task, User, UserId};

use super::dialect;
use crate::{
    Page, Result, StoreError, StoredEvent, TaskQuery, TaskRef,
    query::{Param, build_list},
    shared::{
        EVENTS_AFTER, TASK_COLUMNS, TaskRow, USER_EVENTS_AFTER, cut_page, processed_sql,
        reminder_from, reminders_sql, stored_event_from, tasks_of, user_from,
    },
};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::I64(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            Param::Text(s) => ToSqlOutput::from(s.as_str()),
        })
    }
}

/// Statements kept prepared per connection: the fixed reads, and the reminder reads of
/// pages of different lengths.
const STATEMENT_CACHE: usize = 64;

/// Read-only connections; a job takes a free one. As many jobs as connections run at once,
/// the others wait for a permit without holding a thread.
struct Readers {
    conns: Box<[Mutex<Connection>]>,
    next: AtomicUsize,
    permits: tokio::sync::Semaphore,
}

impl Readers {
    fn with<T>(&self, job: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(conn) = self.conns[(start + i) % n].try_lock() {
                return job(&conn);
            }
        }
        let conn = self.conns[start % n]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        job(&conn)
    }
}

/// The direct readers of one SQLite file; cheap to clone.
#[derive(Clone)]
pub(crate) struct Direct(Arc<Readers>);

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("readers", &self.0.conns.len())
            .finish()
    }
}

fn task_row(r: &Row<'_>) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        number: r.get(2)?,
        title: r.get(3)?,
        description: r.get(4)?,
        status: r.get(5)?,
        priority: r.get(6)?,
        tags: r.get(7)?,
        due_at: r.get(8)?,
        due_date: r.get(9)?,
        recurrence: r.get(10)?,
        recurrence_anchor: r.get(11)?,
        series_id: r.get(12)?,
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
        completed_at: r.get(15)?,
        version: r.get(16)?,
        occurrence: r.get(17)?,
        due_sort: r.get(18)?,
        priority_pos: r.get(19)?,
        title_key: r.get(20)?,
    })
}

/// The tasks of these rows, with their reminders, read on `conn`.
fn assemble(conn: &Connection, rows: Vec<TaskRow>) -> Result<Vec<Task>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut st = conn.prepare_cached(&reminders_sql(rows.len()))?;
    let ids = rows.iter().map(|r| r.id.as_str());
    let mut found = st.query(rusqlite::params_from_iter(ids))?;
    let mut reminders = Vec::new();
    while let Some(r) = found.next()? {
        let id: String = r.get(1)?;
        let status: String = r.get(4)?;
        reminders.push((
            r.get(0)?,
            reminder_from(&id, r.get(2)?, r.get(3)?, &status)?,
        ));
    }
    tasks_of(rows, reminders)
}

/// Plans that do not depend on bound values. Without this, SQLite plans `LIMIT ?` for the
/// value bound when the statement was prepared, and so prepares the statement again on
/// every new binding: 8 % of the server's CPU under a list load went to re-preparing
/// cached statements (perf).
pub(super) fn stable_plans(conn: &Connection) -> Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

impl Direct {
    /// Opens `readers` read-only connections to the database file at `path`.
    pub(crate) fn open(path: &Path, readers: usize) -> Result<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conns = (0..readers.max(1))
            .map(|_| {
                let conn = Connection::open_with_flags(path, flags)?;
                conn.busy_timeout(Duration::from_secs(10))?;
                conn.pragma_update(None, "cache_size", -16000)?;
                conn.pragma_update(None, "temp_store", "memory")?;
                conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                stable_plans(&conn)?;
                Ok(Mutex::new(conn))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self(Arc::new(Readers {
            permits: tokio::sync::Semaphore::new(conns.len()),
            conns: conns.into_boxed_slice(),
            next: AtomicUsize::new(0),
        })))
    }

    /// Runs a short read (one user's rows, found by index) on a free reader where the
    /// request runs: a hand-off to a blocking thread and back cost more than the read
    /// (bench/RESULTS.md). When every reader is busy it waits its turn on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if let Ok(_permit) = self.0.permits.try_acquire() {
            return self.0.with(job);
        }
        self.read_aside(job).await
    }

    /// Runs `job` on a reader, on a blocking thread: for reads that may take long.
    async fn read_aside<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let permit = self
            .0
            .permits
            .acquire()
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        let readers = self.0.clone();
        let done = tokio::task::spawn_blocking(move || readers.with(job)).await;
        drop(permit);
        done.map_err(|e| StoreError::Database(Box::new(e)))?
    }

    pub(crate) async fn user(&self, id: UserId) -> Result<Option<User>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, email, name, timezone, created_at FROM users WHERE id = ?",
            )?;
            let mut rows = st.query([id.to_string()])?;
            let Some(r) = rows.next()? else {
                return Ok(None);
            };
            let text = |i: usize| r.get::<_, String>(i);
            Ok(Some(user_from(
                &text(0)?,
                &text(1)?,
                &text(2)?,
                &text(3)?,
                r.get(4)?,
            )?))
        })
        .await
    }

    pub(crate) async fn task(&self, user: UserId, task: TaskRef) -> Result<Option<Task>> {
        self.read(move |c| {
            let (column, key) = match task {
                TaskRef::Id(id) => ("id", Param::Text(id.to_string())),
                TaskRef::Number(n) => ("number", Param::I64(n)),
            };
            let sql = format!(
                "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.user_id = ? AND t.{column} = ?"
            );
            let mut st = c.prepare_cached(&sql)?;
            let mut rows = st.query((user.to_string(), key))?;
            let Some(r) = rows.next()? else {
                return Ok(None);
            };
            let row = task_row(r)?;
            Ok(assemble(c, vec![row])?.pop())
        })
        .await
    }

    pub(crate) async fn list_tasks(&self, user: UserId, query: &TaskQuery) -> Result<Page> {
        let query = query.clone();
        self.read(move |c| {
            let (sql, params) = build_list(
                TASK_COLUMNS,
                user,
                &query,
                || dialect::FTS_CONDITION,
                dialect::fts_query,
            );
            let mut st = c.prepare_cached(&sql)?;
            let mut rows = st
                .query_map(rusqlite::params_from_iter(params.iter()), task_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next_cursor = cut_page(&mut rows, &query);
            Ok(Page {
                items: assemble(c, rows)?,
                next_cursor,
            })
        })
        .await
    }

    /// The events after `position` in log order, at most `limit`; with `user`, only theirs.
    pub(crate) async fn events_after(
        &self,
        user: Option<UserId>,
        position: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        self.read_aside(move |c| {
            let mut st;
            let rows = match user {
                None => {
                    st = c.prepare_cached(EVENTS_AFTER)?;
                    st.query((position, limit))?
                }
                Some(user) => {
                    st = c.prepare_cached(USER_EVENTS_AFTER)?;
                    st.query((user.to_string(), position, limit))?
                }
            };
            rows.and_then(|r| -> Result<StoredEvent> {
                let (topic, payload): (String, String) = (r.get(1)?, r.get(2)?);
                stored_event_from(r.get(0)?, &topic, &payload)
            })
            .collect()
        })
        .await
    }

    /// Which of `event_ids` the consumer has handled.
    pub(crate) async fn processed(
        &self,
        consumer: &str,
        event_ids: &[String],
    ) -> Result<Vec<String>> {
        let consumer = consumer.to_owned();
        let ids = event_ids.to_vec();
        self.read(move |c| {
            let mut st = c.prepare_cached(&processed_sql(ids.len()))?;
            let params = std::iter::once(&consumer).chain(&ids);
            let found = st.query_map(rusqlite::params_from_iter(params), |r| r.get(0))?;
            Ok(found.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    pub(crate) async fn count_tasks(&self) -> Result<i64> {
        self.read_aside(|c| Ok(c.query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0))?))
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::{SqliteStore, UserStore};

    #[tokio::test]
    async fn a_database_file_gets_direct_readers_and_they_see_what_was_written() {
        let (_dir, _path, store) = SqliteStore::temporary().await;
        let direct = store.direct().expect("direct readers for a file");
        let user = taskflow_core::User {
            id: taskflow_core::UserId::new(),
            email: taskflow_core::Email::parse("d@example.com").unwrap(),
            name: taskflow_core::UserName::parse("d").unwrap(),
            timezone: taskflow_core::Timezone::parse("Europe/Berlin").unwrap(),
            created_at: chrono::Utc::now(),
        };
        store.insert_user(&user, "hash").await.unwrap();
        let read = direct.user(user.id).await.unwrap().unwrap();
        assert_eq!((read.id, read.timezone), (user.id, user.timezone));
        assert!(
            direct
                .user(taskflow_core::UserId::new())
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_database_in_memory_reads_through_its_own_connections() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        assert!(store.direct().is_none());
    }

    /// A page read again with another limit runs the statement prepared before: the plan
    /// does not depend on the bound limit.
    #[tokio::test]
    async fn a_list_with_another_limit_is_not_prepared_again() {
        let (_dir, path, _store) = SqliteStore::temporary().await;
        let direct = super::Direct::open(&path, 1).unwrap();
        let owner = taskflow_core::UserId::new();
        for limit in [1, 2, 3, 50] {
            let query = crate::TaskQuery {
                limit,
                ..crate::TaskQuery::default()
            };
            direct.list_tasks(owner, &query).await.unwrap();
        }
        let (sql, _) = super::build_list(
            super::TASK_COLUMNS,
            owner,
            &crate::TaskQuery::default(),
            || super::dialect::FTS_CONDITION,
            super::dialect::fts_query,
        );
        let prepared_again = direct
            .read(move |c| {
                let st = c.prepare_cached(&sql)?;
                Ok(st.get_status(rusqlite::StatementStatus::RePrepare))
            })
            .await
            .unwrap();
        assert_eq!(prepared_again, 0);
    }
}
