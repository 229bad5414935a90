//! The one body of SQL both adapters run. `impl_store!` expands it for a concrete sqlx
//! database (concrete pools, as sqlx's `Any` driver cannot carry our types); each adapter
//! supplies a `dialect` module with what differs.

use chrono::TimeDelta;
use taskflow_core::{
    Description, Due, Priority, Recurrence, RecurrenceAnchor, Reminder, ReminderStatus, Tags, Task,
    TaskId, TaskStatus, TaskTitle, Timezone, UserId,
};

use crate::{Result, StoreError, from_micros, micros, query::priority_pos};

/// Cuts a page fetched one row past `query.limit` to the limit; when more rows follow, the
/// cursor names the last row kept.
pub(crate) fn cut_page(rows: &mut Vec<TaskRow>, query: &crate::TaskQuery) -> Option<crate::Cursor> {
    use crate::{CursorKey, SortBy};
    let limit = query.limit as usize;
    if rows.len() <= limit {
        return None;
    }
    rows.truncate(limit);
    rows.last().map(|last| {
        let (flag, key) = match query.sort {
            SortBy::Due => match last.due_sort {
                Some(v) => (0, CursorKey::I64(v)),
                None => (1, CursorKey::I64(0)),
            },
            SortBy::Priority => (0, CursorKey::I64(last.priority_pos)),
            SortBy::Created => (0, CursorKey::I64(last.created_at)),
            SortBy::Title => (0, CursorKey::Text(last.title_key.clone())),
        };
        crate::Cursor {
            sort: query.sort,
            order: query.order,
            flag,
            key,
            number: last.number,
        }
    })
}

/// The tasks of these rows, in row order, each with its reminders from `reminders`
/// (task id, reminder), which come in each task's order.
pub(crate) fn tasks_of(
    rows: Vec<TaskRow>,
    reminders: Vec<(String, Reminder)>,
) -> Result<Vec<Task>> {
    let mut by_task: std::collections::HashMap<String, Vec<Reminder>> =
        std::collections::HashMap::new();
    for (task_id, r) in reminders {
        by_task.entry(task_id).or_default().push(r);
    }
    rows.into_iter()
        .map(|row| {
            let rems = by_task.remove(&row.id).unwrap_or_default();
            row.into_task(rems)
        })
        .collect()
}

/// The query of the reminders of `n` tasks, by task id, in each task's order.
pub(crate) fn reminders_sql(n: usize) -> String {
    let marks = vec!["?"; n].join(", ");
    format!(
        "SELECT task_id, id, fire_at, before_minutes, status FROM reminders \
         WHERE task_id IN ({marks}) ORDER BY task_id, ordinal"
    )
}

/// An event of the log from its position, topic and payload columns.
pub(crate) fn stored_event_from(
    position: i64,
    topic: &str,
    payload: &str,
) -> Result<crate::StoredEvent> {
    Ok(crate::StoredEvent {
        position,
        topic: taskflow_core::Topic::parse(topic)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown topic {topic:?}")))?,
        event: from_json("event payload", payload)?,
    })
}

/// The query of which of `n` event ids a consumer has handled.
pub(crate) fn processed_sql(n: usize) -> String {
    let marks = vec!["?"; n].join(", ");
    format!("SELECT event_id FROM processed_events WHERE consumer = ? AND event_id IN ({marks})")
}

/// A user from the columns of the `users` table.
pub(crate) fn user_from(
    id: &str,
    email: &str,
    name: &str,
    timezone: &str,
    created_at: i64,
) -> Result<taskflow_core::User> {
    use taskflow_core::{Email, User, UserName};
    Ok(User {
        id: UserId(id.parse().map_err(|e| corrupt("user id", e))?),
        email: Email::parse(email).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        name: UserName::parse(name).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        timezone: Timezone::parse(timezone).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: from_micros(created_at)?,
    })
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

/// Columns every task read selects, in the order [`TaskRow`] expects them; the last four
/// are the sort keys a cursor is made of.
pub(crate) const TASK_COLUMNS: &str = "t.id, t.user_id, t.number, t.title, t.description, t.status, \
    t.priority, t.tags, t.due_at, t.due_date, t.recurrence, t.recurrence_anchor, t.series_id, \
    t.created_at, t.updated_at, t.completed_at, t.version, t.occurrence, t.due_sort, t.priority_pos, t.title_key";

pub(crate) const INSERT_TASK: &str = "INSERT INTO tasks (id, user_id, number, title, title_key, description, \
    status, priority, priority_pos, tags, due_at, due_date, due_sort, due_last, recurrence, recurrence_anchor, \
    series_id, created_at, updated_at, completed_at, version, occurrence) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub(crate) const UPDATE_TASK: &str = "UPDATE tasks SET title = ?, title_key = ?, description = ?, status = ?, \
    priority = ?, priority_pos = ?, tags = ?, due_at = ?, due_date = ?, due_sort = ?, due_last = ?, \
    recurrence = ?, recurrence_anchor = ?, series_id = ?, created_at = ?, updated_at = ?, completed_at = ?, \
    version = ?, occurrence = ? WHERE id = ? AND user_id = ? AND version = ?";

/// Takes the next per-user task number.
pub(crate) const NEXT_NUMBER: &str =
    "UPDATE users SET task_seq = task_seq + 1 WHERE id = ? RETURNING task_seq";

/// Deletes a task guarded by the version it was read at.
pub(crate) const DELETE_TASK: &str =
    "DELETE FROM tasks WHERE id = ? AND user_id = ? AND version = ?";

/// Whether a task of this user exists (why a guarded write touched no row).
pub(crate) const TASK_EXISTS: &str = "SELECT 1 FROM tasks WHERE id = ? AND user_id = ?";

/// The reminders of a task the reminder service has fired.
pub(crate) const FIRED_REMINDERS: &str =
    "SELECT id, fire_at FROM reminders WHERE task_id = ? AND status = 'fired'";

pub(crate) const DELETE_TAGS: &str = "DELETE FROM task_tags WHERE task_id = ?";
pub(crate) const DELETE_REMINDERS: &str = "DELETE FROM reminders WHERE task_id = ?";
pub(crate) const INSERT_TAG: &str =
    "INSERT INTO task_tags (task_id, user_id, tag) VALUES (?, ?, ?)";
pub(crate) const INSERT_REMINDER: &str = "INSERT INTO reminders (id, task_id, user_id, ordinal, fire_at, before_minutes, status) \
    VALUES (?, ?, ?, ?, ?, ?, ?)";

/// Appends an event to the log, giving its position.
pub(crate) const APPEND_EVENT: &str = "INSERT INTO events (id, topic, type, user_id, subject, payload, created_at) \
    VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING position";

/// A consumer's record that it handled an event; a second one is a unique violation.
pub(crate) const MARK_HANDLED: &str =
    "INSERT INTO processed_events (consumer, event_id, processed_at) VALUES (?, ?, ?)";

/// The events after a position, in log order, at most a limit.
pub(crate) const EVENTS_AFTER: &str =
    "SELECT position, topic, payload FROM events WHERE position > ? ORDER BY position LIMIT ?";

/// One user's events after a position, in log order, at most a limit.
pub(crate) const USER_EVENTS_AFTER: &str = "SELECT position, topic, payload FROM events WHERE user_id = ? AND position > ? \
    ORDER BY position LIMIT ?";

/// The status a reminder is written with when its task is written again: one the reminder
/// service fired after the task was read (its id and instant among `fired`) stays fired.
pub(crate) fn kept_status(
    r: &taskflow_core::Reminder,
    fired: &std::collections::HashSet<(String, i64)>,
) -> ReminderStatus {
    if r.status == ReminderStatus::Pending && fired.contains(&(r.id.to_string(), micros(r.fire_at)))
    {
        ReminderStatus::Fired
    } else {
        r.status
    }
}

/// Moves a consumer's offset forward, never back.
pub(crate) const SAVE_OFFSET: &str = "INSERT INTO consumer_offsets (consumer, position, updated_at) VALUES (?, ?, ?) \
    ON CONFLICT (consumer) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at \
    WHERE consumer_offsets.position < excluded.position";

/// `rows` events into the audit log in one statement, each keyed by its log position and
/// recorded once.
pub(crate) fn insert_audit(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "INSERT INTO audit_log (id, event_id, type, user_id, task_id, occurred_at, data) \
         VALUES {values} ON CONFLICT DO NOTHING"
    )
}

/// The most events one audit statement carries (7 parameters each, within every backend's
/// limit on parameters).
pub(crate) const AUDIT_ROWS_PER_STATEMENT: usize = 500;

/// A task as its columns, before it is turned back into a [`Task`].
#[derive(Debug)]
pub(crate) struct TaskRow {
    pub id: String,
    pub user_id: String,
    pub number: i64,
    pub title: String,
    pub description: String,
    pub status: String,
    pub priority: String,
    pub tags: String,
    pub due_at: Option<i64>,
    pub due_date: Option<String>,
    pub recurrence: Option<String>,
    pub recurrence_anchor: String,
    pub series_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
    pub version: i64,
    pub occurrence: i64,
    pub due_sort: Option<i64>,
    pub priority_pos: i64,
    pub title_key: String,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// A JSON column's value; a value that does not parse is named as corrupt.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

fn uuid(s: &str) -> Result<uuid::Uuid> {
    s.parse().map_err(|e| corrupt("id", e))
}

impl TaskRow {
    pub(crate) fn into_task(self, reminders: Vec<Reminder>) -> Result<Task> {
        let due = match (self.due_at, self.due_date) {
            (Some(t), _) => Some(Due::At(from_micros(t)?)),
            (None, Some(d)) => Some(Due::Date(d.parse().map_err(|e| corrupt("due_date", e))?)),
            (None, None) => None,
        };
        let tags: Vec<String> = from_json("tags", &self.tags)?;
        Ok(Task {
            id: TaskId(uuid(&self.id)?),
            user_id: UserId(uuid(&self.user_id)?),
            number: self.number,
            title: TaskTitle::parse(&self.title).map_err(|e| corrupt("title", e))?,
            description: Description::parse(&self.description)
                .map_err(|e| corrupt("description", e))?,
            status: TaskStatus::parse(&self.status).map_err(|e| corrupt("status", e))?,
            priority: Priority::parse(&self.priority).map_err(|e| corrupt("priority", e))?,
            tags: Tags::from_stored(tags),
            due,
            recurrence: self.recurrence.map(Recurrence::from_stored),
            recurrence_anchor: RecurrenceAnchor::parse(&self.recurrence_anchor)
                .map_err(|e| corrupt("recurrence_anchor", e))?,
            series_id: self.series_id.as_deref().map(uuid).transpose()?.map(TaskId),
            occurrence: self.occurrence,
            reminders,
            created_at: from_micros(self.created_at)?,
            updated_at: from_micros(self.updated_at)?,
            completed_at: self.completed_at.map(from_micros).transpose()?,
            version: self.version,
        })
    }
}

/// A reminder row: (task id, reminder).
pub(crate) fn reminder_from(
    id: &str,
    fire_at: i64,
    before_minutes: Option<i64>,
    status: &str,
) -> Result<Reminder> {
    Ok(Reminder {
        id: uuid(id)?,
        fire_at: from_micros(fire_at)?,
        before_minutes: before_minutes
            .map(|m| u32::try_from(m).map_err(|e| corrupt("before_minutes", e)))
            .transpose()?,
        status: ReminderStatus::parse(status).map_err(|e| corrupt("reminder status", e))?,
    })
}

/// The values of a task's columns, in [`INSERT_TASK`] order after `number`.
#[derive(Debug)]
pub(crate) struct TaskValues {
    pub title: String,
    pub title_key: String,
    pub description: String,
    pub status: &'static str,
    pub priority: &'static str,
    pub priority_pos: i64,
    pub tags: String,
    pub due_at: Option<i64>,
    pub due_date: Option<String>,
    pub due_sort: Option<i64>,
    pub due_last: Option<i64>,
    pub recurrence: Option<String>,
    pub recurrence_anchor: &'static str,
    pub series_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
    pub version: i64,
    pub occurrence: i64,
}

impl TaskValues {
    pub(crate) fn of(task: &Task, tz: Timezone) -> Self {
        let (due_at, due_date) = match task.due {
            Some(Due::At(t)) => (Some(micros(t)), None),
            Some(Due::Date(d)) => (None, Some(d.to_string())),
            None => (None, None),
        };
        let due_last = task.due.map(|d| match d {
            Due::At(t) => micros(t),
            Due::Date(_) => micros(d.overdue_after(tz) - TimeDelta::microseconds(1)),
        });
        let tags: Vec<&str> = task.tags.iter().map(|t| t.as_str()).collect();
        Self {
            title: task.title.as_str().to_owned(),
            title_key: task.title.sort_key(),
            description: task.description.as_str().to_owned(),
            status: task.status.as_str(),
            priority: task.priority.as_str(),
            priority_pos: priority_pos(task.priority),
            tags: serde_json::to_string(&tags).unwrap_or_else(|_| "[]".into()),
            due_at,
            due_date,
            due_sort: task.due_sort(tz).map(micros),
            due_last,
            recurrence: task.recurrence.as_ref().map(|r| r.as_str().to_owned()),
            recurrence_anchor: task.recurrence_anchor.as_str(),
            series_id: task.series_id.map(|s| s.to_string()),
            created_at: micros(task.created_at),
            updated_at: micros(task.updated_at),
            completed_at: task.completed_at.map(micros),
            version: task.version,
            occurrence: task.occurrence,
        }
    }
}

/// A unit of work: one open transaction that task and conversation calls share until
/// [`crate::Unit::commit`]; dropped uncommitted, it rolls back.
pub(crate) struct DbUnit<DB: sqlx::Database> {
    pub(crate) tx: tokio::sync::Mutex<Option<sqlx::Transaction<'static, DB>>>,
}

impl<DB: sqlx::Database> DbUnit<DB> {
    /// A unit reads inside its own transaction.
    pub(crate) fn direct(&self) -> Option<&crate::sqlite::Direct> {
        None
    }

    /// A unit writes inside its own transaction.
    pub(crate) fn jobs(&self) -> Option<&crate::sqlite::Writer> {
        None
    }
}

impl<DB: sqlx::Database> std::fmt::Debug for DbUnit<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbUnit").finish_non_exhaustive()
    }
}

/// The connection of a unit that has not ended (checked when made).
pub(crate) struct UnitConn<'a, DB: sqlx::Database>(
    pub(crate) tokio::sync::MutexGuard<'a, Option<sqlx::Transaction<'static, DB>>>,
);

impl<DB: sqlx::Database> std::ops::Deref for UnitConn<'_, DB> {
    type Target = DB::Connection;
    fn deref(&self) -> &DB::Connection {
        self.0
            .as_ref()
            .expect("a unit's connection is made only while it is open")
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for UnitConn<'_, DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.0
            .as_mut()
            .expect("a unit's connection is made only while it is open")
    }
}

/// Generates the `Store` traits' implementations for one adapter. Expects in scope: `$store`
/// with `reader()`/`writer()` pools of `$db`, and a `dialect` module with `sql(&str) -> String`,
/// `FTS_CONDITION`, `fts_query(&[String]) -> String`, `MIGRATION_LOCK` and `MIGRATIONS`.
macro_rules! impl_store {
    ($store:ty, $db:ty, $backend:literal) => {
        use async_trait::async_trait;
        use sqlx::{AssertSqlSafe, Row as _};
        use taskflow_core::{CloudEvent, Email, Task, TaskId, Timezone, User, UserId};

        use $crate::{
            AuditEntry, AuditQuery, AuditStore, ConsumerStore, Conversation, ConversationStore, Decide, Decision, Message, DueReminder, EventFor, EventLog, Handled,
            Notification, NotificationStore, ReminderEventFor, ReminderStore, Result, SettingStore, StoreError,
            StoredEvent, Store, TaskRef, TaskStore, UserStore, UserWithHash, from_micros, micros,
            query::{Page, Param, TaskQuery, build_list},
            shared::{INSERT_TASK, SAVE_OFFSET, TASK_COLUMNS, TaskRow, TaskValues, UPDATE_TASK, from_json, reminder_from},
        };

        type Tx<'c> = sqlx::Transaction<'c, $db>;
        type DbRow = <$db as sqlx::Database>::Row;

        fn q(sql: &str) -> Query {
            sqlx::query(AssertSqlSafe(dialect::sql(sql)))
        }

        type Query = sqlx::query::Query<'static, $db, <$db as sqlx::Database>::Arguments>;

        /// Binds a task's column values in the order `INSERT_TASK` and `UPDATE_TASK` share.
        fn bind_values(q: Query, v: TaskValues) -> Query {
            q.bind(v.title)
                .bind(v.title_key)
                .bind(v.description)
                .bind(v.status)
                .bind(v.priority)
                .bind(v.priority_pos)
                .bind(v.tags)
                .bind(v.due_at)
                .bind(v.due_date)
                .bind(v.due_sort)
                .bind(v.due_last)
                .bind(v.recurrence)
                .bind(v.recurrence_anchor)
                .bind(v.series_id)
                .bind(v.created_at)
                .bind(v.updated_at)
                .bind(v.completed_at)
                .bind(v.version)
                .bind(v.occurrence)
        }

        fn unique_violation(e: &sqlx::Error) -> bool {
            matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
        }

        fn task_row(r: &DbRow) -> std::result::Result<TaskRow, sqlx::Error> {
            Ok(TaskRow {
                id: r.try_get(0)?,
                user_id: r.try_get(1)?,
                number: r.try_get(2)?,
                title: r.try_get(3)?,
                description: r.try_get(4)?,
                status: r.try_get(5)?,
                priority: r.try_get(6)?,
                tags: r.try_get(7)?,
                due_at: r.try_get(8)?,
                due_date: r.try_get(9)?,
                recurrence: r.try_get(10)?,
                recurrence_anchor: r.try_get(11)?,
                series_id: r.try_get(12)?,
                created_at: r.try_get(13)?,
                updated_at: r.try_get(14)?,
                completed_at: r.try_get(15)?,
                version: r.try_get(16)?,
                occurrence: r.try_get(17)?,
                due_sort: r.try_get(18)?,
                priority_pos: r.try_get(19)?,
                title_key: r.try_get(20)?,
            })
        }

        fn user_row(r: &DbRow) -> Result<User> {
            let text = |c: &str| r.try_get::<String, _>(c);
            $crate::shared::user_from(&text("id")?, &text("email")?, &text("name")?, &text("timezone")?, r.try_get("created_at")?)
        }

        /// Loads the reminders of these task rows and assembles the tasks, in row order.
        async fn assemble<'e, E>(exec: E, rows: Vec<TaskRow>) -> Result<Vec<Task>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            let mut query = q(&$crate::shared::reminders_sql(rows.len()));
            for r in &rows {
                query = query.bind(r.id.clone());
            }
            let mut reminders = Vec::new();
            for r in query.fetch_all(exec).await? {
                let id: String = r.try_get(1)?;
                let rem = reminder_from(&id, r.try_get(2)?, r.try_get(3)?, &r.try_get::<String, _>(4)?)?;
                reminders.push((r.try_get(0)?, rem));
            }
            $crate::shared::tasks_of(rows, reminders)
        }

        async fn write_children(tx: &mut Tx<'_>, task: &Task, replace: bool) -> Result<()> {
            let id = task.id.to_string();
            let user = task.user_id.to_string();
            // A reminder the reminder service fired after this task was read stays fired.
            let mut fired = std::collections::HashSet::new();
            if replace {
                for r in q($crate::shared::FIRED_REMINDERS)
                    .bind(id.clone())
                    .fetch_all(&mut **tx)
                    .await?
                {
                    fired.insert((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?));
                }
                q($crate::shared::DELETE_TAGS).bind(id.clone()).execute(&mut **tx).await?;
                q($crate::shared::DELETE_REMINDERS).bind(id.clone()).execute(&mut **tx).await?;
            }
            for tag in task.tags.iter() {
                q($crate::shared::INSERT_TAG)
                    .bind(id.clone())
                    .bind(user.clone())
                    .bind(tag.as_str().to_owned())
                    .execute(&mut **tx)
                    .await?;
            }
            for (i, r) in task.reminders.iter().enumerate() {
                let status = $crate::shared::kept_status(r, &fired);
                q($crate::shared::INSERT_REMINDER)
                    .bind(r.id.to_string())
                    .bind(id.clone())
                    .bind(user.clone())
                    .bind(i as i64)
                    .bind(micros(r.fire_at))
                    .bind(r.before_minutes.map(i64::from))
                    .bind(status.as_str())
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        }

        async fn append_event(tx: &mut Tx<'_>, ev: &CloudEvent, topic: &str) -> Result<i64> {
            let payload = serde_json::to_string(ev).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let row = q($crate::shared::APPEND_EVENT)
                .bind(ev.id.clone())
                .bind(topic.to_owned())
                .bind(ev.ty.clone())
                .bind(ev.userid.clone())
                .bind(ev.subject.clone())
                .bind(payload)
                .bind(micros(ev.time))
                .fetch_one(&mut **tx)
                .await?;
            Ok(row.try_get(0)?)
        }

        fn topic_of(ev: &CloudEvent) -> &'static str {
            ev.topic().as_str()
        }

        /// Records that a consumer handled an event; a second record is a duplicate.
        async fn mark_handled(tx: &mut Tx<'_>, handled: Handled<'_>, now: i64) -> Result<()> {
            let res = q($crate::shared::MARK_HANDLED)
                .bind(handled.consumer.to_owned())
                .bind(handled.event_id.to_owned())
                .bind(now)
                .execute(&mut **tx)
                .await;
            match res {
                Ok(_) => Ok(()),
                Err(e) if unique_violation(&e) => Err(StoreError::Duplicate("event")),
                Err(e) => Err(e.into()),
            }
        }

        fn stored_event(r: &DbRow) -> Result<StoredEvent> {
            $crate::shared::stored_event_from(r.try_get(0)?, &r.try_get::<String, _>(1)?, &r.try_get::<String, _>(2)?)
        }

        fn audit_row(r: &DbRow) -> Result<AuditEntry> {
            let data: String = r.try_get(6)?;
            Ok(AuditEntry {
                id: r.try_get(0)?,
                event_id: r.try_get(1)?,
                ty: r.try_get(2)?,
                user_id: r.try_get(3)?,
                task_id: r.try_get(4)?,
                occurred_at: from_micros(r.try_get(5)?)?,
                data: from_json("audit data", &data)?,
            })
        }

        fn conversation_row(r: &DbRow) -> Result<Conversation> {
            let state: String = r.try_get(3)?;
            Ok(Conversation {
                id: r.try_get(0)?,
                user_id: r.try_get(1)?,
                title: r.try_get(2)?,
                state: from_json("conversation state", &state)?,
                created_at: from_micros(r.try_get(4)?)?,
                updated_at: from_micros(r.try_get(5)?)?,
            })
        }

        fn notification_row(r: &DbRow) -> Result<Notification> {
            Ok(Notification {
                id: r.try_get(0)?,
                user_id: r.try_get(1)?,
                task_id: r.try_get(2)?,
                title: r.try_get(3)?,
                body: r.try_get(4)?,
                created_at: from_micros(r.try_get(5)?)?,
                read_at: r.try_get::<Option<i64>, _>(6)?.map(from_micros).transpose()?,
            })
        }

        /// Runs a write guarded by `version = ?`; when it touches no row, says why: the task is
        /// gone (or another user's), or it moved on.
        async fn guarded(tx: &mut Tx<'_>, write: Query, user: &str, id: &str) -> Result<()> {
            if write.execute(&mut **tx).await?.rows_affected() > 0 {
                return Ok(());
            }
            Err(match q($crate::shared::TASK_EXISTS)
                .bind(id.to_owned())
                .bind(user.to_owned())
                .fetch_optional(&mut **tx)
                .await
            {
                Ok(Some(_)) => StoreError::VersionConflict,
                Ok(None) => StoreError::NotFound,
                Err(e) => e.into(),
            })
        }


        #[async_trait]
        impl UserStore for $store {
            #[tracing::instrument(skip_all, fields(user_id = %user.id), err(level = "debug"))]
            async fn insert_user(&self, user: &User, password_hash: &str) -> Result<()> {
                let res = q("INSERT INTO users (id, email, name, timezone, password_hash, created_at) \
                             VALUES (?, ?, ?, ?, ?, ?)")
                    .bind(user.id.to_string())
                    .bind(user.email.as_str().to_owned())
                    .bind(user.name.as_str().to_owned())
                    .bind(user.timezone.name())
                    .bind(password_hash.to_owned())
                    .bind(micros(user.created_at))
                    .execute(self.writer())
                    .await;
                match res {
                    Ok(_) => Ok(()),
                    Err(e) if unique_violation(&e) => Err(StoreError::Duplicate("email")),
                    Err(e) => Err(e.into()),
                }
            }

            async fn user_by_email(&self, email: &Email) -> Result<Option<UserWithHash>> {
                let row = q("SELECT * FROM users WHERE email = ?")
                    .bind(email.as_str().to_owned())
                    .fetch_optional(self.reader())
                    .await?;
                row.map(|r| Ok(UserWithHash { user: user_row(&r)?, password_hash: r.try_get("password_hash")? }))
                    .transpose()
            }

            async fn user(&self, id: UserId) -> Result<Option<User>> {
                if let Some(d) = self.direct() {
                    return d.user(id).await;
                }
                let row = q("SELECT * FROM users WHERE id = ?").bind(id.to_string()).fetch_optional(self.reader()).await?;
                row.map(|r| user_row(&r)).transpose()
            }

            #[tracing::instrument(skip_all, fields(user_id = %user.id), err(level = "debug"))]
            async fn update_user(&self, user: &User) -> Result<()> {
                let id = user.id.to_string();
                let mut tx = self.writer().begin().await?;
                let done = q("UPDATE users SET name = ?, timezone = ? WHERE id = ?")
                    .bind(user.name.as_str().to_owned())
                    .bind(user.timezone.name())
                    .bind(id.clone())
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                // An all-day task sorts and falls due by its day in the user's timezone.
                let all_day = q("SELECT id, due_date FROM tasks WHERE user_id = ? AND due_date IS NOT NULL")
                    .bind(id.clone())
                    .fetch_all(&mut *tx)
                    .await?;
                for row in all_day {
                    let task_id: String = row.try_get(0)?;
                    let date: String = row.try_get(1)?;
                    let due = taskflow_core::Due::Date(date.parse().map_err(|e| StoreError::Corrupt(format!("due_date: {e}")))?);
                    q("UPDATE tasks SET due_sort = ?, due_last = ? WHERE id = ? AND user_id = ?")
                        .bind(micros(due.sort_instant(user.timezone)))
                        .bind(micros(due.overdue_after(user.timezone)) - 1)
                        .bind(task_id)
                        .bind(id.clone())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }

        /// The task and conversation queries, on one connection: a pool's for the store, the
        /// open transaction's for a unit of work. Each write is its own transaction on a pool
        /// connection and a savepoint inside a unit, so a failed write leaves a unit usable.
        mod ops {
            use super::*;

            pub(super) type Conn = <$db as sqlx::Database>::Connection;

            async fn begin(c: &mut Conn) -> Result<Tx<'_>> {
                Ok(sqlx::Connection::begin(c).await?)
            }

            async fn one_task(c: &mut Conn, sql: &str, user: UserId, key: Param) -> Result<Option<Task>> {
                let mut query = q(sql).bind(user.to_string());
                query = match key {
                    Param::I64(v) => query.bind(v),
                    Param::Text(s) => query.bind(s),
                };
                let Some(row) = query.fetch_optional(&mut *c).await? else { return Ok(None) };
                let row = task_row(&row)?;
                Ok(assemble(&mut *c, vec![row]).await?.pop())
            }

            pub(super) async fn insert_task(
                c: &mut Conn,
                task: &Task,
                tz: Timezone,
                event: EventFor,
                handled: Option<Handled<'_>>,
            ) -> Result<(Task, i64)> {
                let mut tx = begin(c).await?;
                if let Some(h) = handled {
                    mark_handled(&mut tx, h, micros(chrono::Utc::now())).await?;
                }
                let number: i64 = q($crate::shared::NEXT_NUMBER)
                    .bind(task.user_id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?
                    .try_get(0)?;
                let mut task = task.clone();
                task.number = number;
                let v = TaskValues::of(&task, tz);
                let inserted = bind_values(q(INSERT_TASK).bind(task.id.to_string()).bind(task.user_id.to_string()).bind(number), v)
                    .execute(&mut *tx)
                    .await;
                match inserted {
                    Ok(_) => {}
                    Err(e) if unique_violation(&e) => return Err(StoreError::Duplicate("occurrence")),
                    Err(e) => return Err(e.into()),
                }
                write_children(&mut tx, &task, false).await?;
                let ev = event(&task);
                let position = append_event(&mut tx, &ev, topic_of(&ev)).await?;
                tx.commit().await?;
                Ok((task, position))
            }

            pub(super) async fn task(c: &mut Conn, user: UserId, id: TaskId) -> Result<Option<Task>> {
                let sql = format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.user_id = ? AND t.id = ?");
                one_task(c, &sql, user, Param::Text(id.to_string())).await
            }

            pub(super) async fn task_by_number(c: &mut Conn, user: UserId, number: i64) -> Result<Option<Task>> {
                let sql = format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.user_id = ? AND t.number = ?");
                one_task(c, &sql, user, Param::I64(number)).await
            }

            pub(super) async fn change_task(c: &mut Conn, user: UserId, key: TaskRef, tz: Timezone, decide: Decide<'_>) -> Result<(Task, Option<i64>)> {
                let (column, key) = match key {
                    TaskRef::Id(id) => ("id", Param::Text(id.to_string())),
                    TaskRef::Number(n) => ("number", Param::I64(n)),
                };
                let sql = format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.user_id = ? AND t.{column} = ?{}", dialect::FOR_UPDATE);
                let mut tx = begin(c).await?;
                let mut task = one_task(&mut *tx, &sql, user, key).await?.ok_or(StoreError::NotFound)?;
                let before = task.version;
                let (id, owner) = (task.id.to_string(), task.user_id.to_string());
                let position = match decide(&mut task).map_err(StoreError::Refused)? {
                    Decision::Keep => return Ok((task, None)),
                    Decision::Update(event) => {
                        let v = TaskValues::of(&task, tz);
                        let write = bind_values(q(UPDATE_TASK), v).bind(id.clone()).bind(owner.clone()).bind(before);
                        guarded(&mut tx, write, &owner, &id).await?;
                        write_children(&mut tx, &task, true).await?;
                        append_event(&mut tx, &event, topic_of(&event)).await?
                    }
                    Decision::Delete(event) => {
                        let write = q($crate::shared::DELETE_TASK)
                            .bind(id.clone())
                            .bind(owner.clone())
                            .bind(before);
                        guarded(&mut tx, write, &owner, &id).await?;
                        append_event(&mut tx, &event, topic_of(&event)).await?
                    }
                };
                tx.commit().await?;
                Ok((task, Some(position)))
            }

            pub(super) async fn list_tasks(c: &mut Conn, user: UserId, query: &TaskQuery) -> Result<Page> {
                let (sql, params) = build_list(TASK_COLUMNS, user, query, || dialect::FTS_CONDITION, dialect::fts_query);
                let mut qb = q(&sql);
                for p in params {
                    qb = match p {
                        Param::I64(v) => qb.bind(v),
                        Param::Text(s) => qb.bind(s),
                    };
                }
                let rows = qb.fetch_all(&mut *c).await?;
                let mut rows = rows.iter().map(task_row).collect::<std::result::Result<Vec<_>, _>>()?;
                let next_cursor = $crate::shared::cut_page(&mut rows, query);
                Ok(Page { items: assemble(&mut *c, rows).await?, next_cursor })
            }

            pub(super) async fn count_tasks(c: &mut Conn) -> Result<i64> {
                Ok(q("SELECT COUNT(*) FROM tasks").fetch_one(&mut *c).await?.try_get(0)?)
            }

            pub(super) async fn conversation(c: &mut Conn, user: UserId, id: &str) -> Result<Option<Conversation>> {
                let row = q("SELECT id, user_id, title, state, created_at, updated_at FROM conversations WHERE id = ? AND user_id = ?")
                    .bind(id.to_owned())
                    .bind(user.to_string())
                    .fetch_optional(&mut *c)
                    .await?;
                row.map(|r| conversation_row(&r)).transpose()
            }

            pub(super) async fn conversations(c: &mut Conn, user: UserId, limit: i64) -> Result<Vec<Conversation>> {
                let rows = q("SELECT id, user_id, title, state, created_at, updated_at FROM conversations \
                              WHERE user_id = ? ORDER BY updated_at DESC, id DESC LIMIT ?")
                    .bind(user.to_string())
                    .bind(limit)
                    .fetch_all(&mut *c)
                    .await?;
                rows.iter().map(conversation_row).collect()
            }

            pub(super) async fn save_exchange(c: &mut Conn, conversation: &Conversation, messages: &[Message]) -> Result<()> {
                let mut tx = begin(c).await?;
                q("INSERT INTO conversations (id, user_id, title, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
                   ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at \
                   WHERE conversations.user_id = excluded.user_id")
                    .bind(conversation.id.clone())
                    .bind(conversation.user_id.clone())
                    .bind(conversation.title.clone())
                    .bind(conversation.state.to_string())
                    .bind(micros(conversation.created_at))
                    .bind(micros(conversation.updated_at))
                    .execute(&mut *tx)
                    .await?;
                for m in messages {
                    // A message saved again (a turn recorded round by round) keeps its place.
                    q("INSERT INTO messages (id, conversation_id, user_id, role, content, tool_calls, created_at) \
                       VALUES (?, ?, ?, ?, ?, ?, ?) \
                       ON CONFLICT (id) DO UPDATE SET content = excluded.content, tool_calls = excluded.tool_calls \
                       WHERE messages.user_id = excluded.user_id AND messages.conversation_id = excluded.conversation_id")
                        .bind(m.id.clone())
                        .bind(conversation.id.clone())
                        .bind(conversation.user_id.clone())
                        .bind(m.role.clone())
                        .bind(m.content.clone())
                        .bind(m.tool_calls.to_string())
                        .bind(micros(m.created_at))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            pub(super) async fn messages(c: &mut Conn, user: UserId, conversation: &str, limit: i64) -> Result<Vec<Message>> {
                let rows = q("SELECT id, role, content, tool_calls, created_at FROM messages \
                              WHERE conversation_id = ? AND user_id = ? ORDER BY seq LIMIT ?")
                    .bind(conversation.to_owned())
                    .bind(user.to_string())
                    .bind(limit)
                    .fetch_all(&mut *c)
                    .await?;
                rows.iter()
                    .map(|r| {
                        let calls: String = r.try_get(3)?;
                        Ok(Message {
                            id: r.try_get(0)?,
                            role: r.try_get(1)?,
                            content: r.try_get(2)?,
                            tool_calls: from_json("tool calls", &calls)?,
                            created_at: from_micros(r.try_get(4)?)?,
                        })
                    })
                    .collect()
            }
        }

        /// The task and conversation ports of a type whose methods `$w` and `$r` give the
        /// connection a write and a read run on.
        macro_rules! task_ports {
            ($ty:ty, $w:ident, $r:ident) => {
                #[async_trait]
                impl TaskStore for $ty {
                    #[tracing::instrument(skip_all, fields(user_id = %task.user_id, task_id = %task.id), err(level = "debug"))]
                    async fn insert_task(
                        &self,
                        task: &Task,
                        tz: Timezone,
                        event: EventFor,
                        handled: Option<Handled<'_>>,
                    ) -> Result<(Task, i64)> {
                        if let Some(w) = self.jobs() {
                            return w.insert_task(task, tz, event, handled).await;
                        }
                        ops::insert_task(&mut *self.$w().await?, task, tz, event, handled).await
                    }

                    async fn task(&self, user: UserId, id: TaskId) -> Result<Option<Task>> {
                        if let Some(d) = self.direct() {
                            return d.task(user, TaskRef::Id(id)).await;
                        }
                        ops::task(&mut *self.$r().await?, user, id).await
                    }

                    async fn task_by_number(&self, user: UserId, number: i64) -> Result<Option<Task>> {
                        if let Some(d) = self.direct() {
                            return d.task(user, TaskRef::Number(number)).await;
                        }
                        ops::task_by_number(&mut *self.$r().await?, user, number).await
                    }

                    #[tracing::instrument(skip_all, fields(user_id = %user), err(level = "debug"))]
                    async fn change_task(&self, user: UserId, task: TaskRef, tz: Timezone, decide: Decide<'_>) -> Result<(Task, Option<i64>)> {
                        if let (Some(w), Some(d)) = (self.jobs(), self.direct()) {
                            return w.change_task(d, user, task, tz, decide).await;
                        }
                        ops::change_task(&mut *self.$w().await?, user, task, tz, decide).await
                    }

                    #[tracing::instrument(skip_all, fields(user_id = %user), err(level = "debug"))]
                    async fn list_tasks(&self, user: UserId, query: &TaskQuery) -> Result<Page> {
                        if let Some(d) = self.direct() {
                            return d.list_tasks(user, query).await;
                        }
                        ops::list_tasks(&mut *self.$r().await?, user, query).await
                    }

                    async fn count_tasks(&self) -> Result<i64> {
                        if let Some(d) = self.direct() {
                            return d.count_tasks().await;
                        }
                        ops::count_tasks(&mut *self.$r().await?).await
                    }
                }

                #[async_trait]
                impl ConversationStore for $ty {
                    async fn conversation(&self, user: UserId, id: &str) -> Result<Option<Conversation>> {
                        // From the writer: a conversation just saved is found at once.
                        ops::conversation(&mut *self.$w().await?, user, id).await
                    }

                    async fn conversations(&self, user: UserId, limit: i64) -> Result<Vec<Conversation>> {
                        ops::conversations(&mut *self.$r().await?, user, limit).await
                    }

                    #[tracing::instrument(skip_all, fields(conversation_id = %conversation.id), err(level = "debug"))]
                    async fn save_exchange(&self, conversation: &Conversation, messages: &[Message]) -> Result<()> {
                        ops::save_exchange(&mut *self.$w().await?, conversation, messages).await
                    }

                    async fn messages(&self, user: UserId, conversation: &str, limit: i64) -> Result<Vec<Message>> {
                        ops::messages(&mut *self.$r().await?, user, conversation, limit).await
                    }
                }
            };
        }

        impl $store {
            async fn write_conn(&self) -> Result<sqlx::pool::PoolConnection<$db>> {
                Ok(self.writer().acquire().await?)
            }

            async fn read_conn(&self) -> Result<sqlx::pool::PoolConnection<$db>> {
                Ok(self.reader().acquire().await?)
            }
        }

        impl $crate::shared::DbUnit<$db> {
            /// The unit's transaction, while it has not ended.
            async fn conn(&self) -> Result<$crate::shared::UnitConn<'_, $db>> {
                let guard = self.tx.lock().await;
                if guard.is_none() {
                    return Err(StoreError::Ended);
                }
                Ok($crate::shared::UnitConn(guard))
            }
        }

        task_ports!($store, write_conn, read_conn);
        task_ports!($crate::shared::DbUnit<$db>, conn, conn);

        #[async_trait]
        impl $crate::Unit for $crate::shared::DbUnit<$db> {
            async fn commit(&self) -> Result<()> {
                let tx = self.tx.lock().await.take().ok_or(StoreError::Ended)?;
                tx.commit().await?;
                Ok(())
            }
        }

        #[async_trait]
        impl EventLog for $store {
            async fn events_after(&self, position: i64, limit: i64) -> Result<Vec<StoredEvent>> {
                if let Some(d) = self.direct() {
                    return d.events_after(None, position, limit).await;
                }
                let rows = q($crate::shared::EVENTS_AFTER)
                    .bind(position)
                    .bind(limit)
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map(stored_event).collect()
            }

            async fn user_events_after(&self, user: UserId, position: i64, limit: i64) -> Result<Vec<StoredEvent>> {
                if let Some(d) = self.direct() {
                    return d.events_after(Some(user), position, limit).await;
                }
                let rows = q($crate::shared::USER_EVENTS_AFTER)
                    .bind(user.to_string())
                    .bind(position)
                    .bind(limit)
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map(stored_event).collect()
            }

            async fn snapshot(&self) -> Result<Option<String>> {
                match dialect::SNAPSHOT {
                    Some(sql) => Ok(Some(q(sql).fetch_one(self.reader()).await?.try_get(0)?)),
                    None => Ok(None),
                }
            }

            async fn settled(&self, snapshot: &str) -> Result<bool> {
                if dialect::SNAPSHOT.is_none() {
                    return Ok(true);
                }
                Ok(q(dialect::SETTLED).bind(snapshot.to_owned()).fetch_one(self.reader()).await?.try_get(0)?)
            }

            async fn last_position(&self) -> Result<i64> {
                Ok(q("SELECT COALESCE(MAX(position), 0) FROM events").fetch_one(self.reader()).await?.try_get(0)?)
            }

            async fn count_events(&self) -> Result<i64> {
                Ok(q("SELECT COUNT(*) FROM events").fetch_one(self.reader()).await?.try_get(0)?)
            }

            async fn prune_events(&self, through: i64, before: chrono::DateTime<chrono::Utc>) -> Result<u64> {
                // In batches, so no one statement holds the writer for long.
                const BATCH: i64 = 10_000;
                let mut total = 0;
                loop {
                    let n = q("DELETE FROM events WHERE position IN (SELECT position FROM events \
                               WHERE position <= ? AND created_at < ? \
                               AND position < (SELECT MAX(position) FROM events) \
                               ORDER BY position LIMIT ?)")
                        .bind(through)
                        .bind(micros(before))
                        .bind(BATCH)
                        .execute(self.writer())
                        .await?
                        .rows_affected();
                    total += n;
                    if n < BATCH as u64 {
                        return Ok(total);
                    }
                }
            }
        }

        #[async_trait]
        impl ConsumerStore for $store {
            async fn consumer_offset(&self, consumer: &str) -> Result<i64> {
                let row = q("SELECT position FROM consumer_offsets WHERE consumer = ?")
                    .bind(consumer.to_owned())
                    .fetch_optional(self.writer())
                    .await?;
                Ok(match row { Some(r) => r.try_get(0)?, None => 0 })
            }

            async fn save_consumer_offset(&self, consumer: &str, position: i64) -> Result<()> {
                if let Some(w) = self.jobs() {
                    return w.save_consumer_offset(consumer, position).await;
                }
                q(SAVE_OFFSET)
                    .bind(consumer.to_owned())
                    .bind(position)
                    .bind(micros(chrono::Utc::now()))
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn dead_letter(&self, consumer: &str, position: i64, event: &CloudEvent, error: &str, attempts: u32) -> Result<()> {
                q("INSERT INTO dead_letters (consumer, position, event_id, type, error, attempts, created_at) \
                   VALUES (?, ?, ?, ?, ?, ?, ?)")
                    .bind(consumer.to_owned())
                    .bind(position)
                    .bind(event.id.clone())
                    .bind(event.ty.clone())
                    .bind(error.to_owned())
                    .bind(i64::from(attempts))
                    .bind(micros(chrono::Utc::now()))
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn count_dead_letters(&self, consumer: &str) -> Result<i64> {
                Ok(q("SELECT COUNT(*) FROM dead_letters WHERE consumer = ?")
                    .bind(consumer.to_owned())
                    .fetch_one(self.reader())
                    .await?
                    .try_get(0)?)
            }

            async fn processed(&self, consumer: &str, event_ids: &[String]) -> Result<Vec<String>> {
                if event_ids.is_empty() {
                    return Ok(Vec::new());
                }
                if let Some(d) = self.direct() {
                    return d.processed(consumer, event_ids).await;
                }
                let mut query = q(&$crate::shared::processed_sql(event_ids.len())).bind(consumer.to_owned());
                for id in event_ids {
                    query = query.bind(id.clone());
                }
                query.fetch_all(self.writer()).await?.iter().map(|r| Ok(r.try_get(0)?)).collect()
            }

            async fn prune_processed(&self, before: chrono::DateTime<chrono::Utc>) -> Result<u64> {
                Ok(q("DELETE FROM processed_events WHERE processed_at < ?")
                    .bind(micros(before))
                    .execute(self.writer())
                    .await?
                    .rows_affected())
            }
        }

        #[async_trait]
        impl ReminderStore for $store {
            async fn next_reminder_at(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
                let row = q("SELECT fire_at FROM reminders WHERE status = 'pending' ORDER BY fire_at LIMIT 1")
                    .fetch_optional(self.reader())
                    .await?;
                row.map(|r| from_micros(r.try_get(0)?)).transpose()
            }

            #[tracing::instrument(skip_all, err(level = "debug"))]
            async fn fire_due_reminders(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: i64,
                make: ReminderEventFor<'_>,
            ) -> Result<(Vec<DueReminder>, i64)> {
                let mut tx = self.writer().begin().await?;
                let claim = format!(
                    "SELECT id, task_id, user_id, fire_at FROM reminders \
                     WHERE status = 'pending' AND fire_at <= ? ORDER BY fire_at LIMIT ?{}",
                    dialect::SKIP_LOCKED
                );
                let rows = q(&claim).bind(micros(now)).bind(limit).fetch_all(&mut *tx).await?;
                let mut fired = Vec::with_capacity(rows.len());
                let mut position = 0;
                for r in rows {
                    let id: String = r.try_get(0)?;
                    let task_id: String = r.try_get(1)?;
                    let task = q("SELECT number, title, due_at, due_date FROM tasks WHERE id = ?")
                        .bind(task_id.clone())
                        .fetch_one(&mut *tx)
                        .await?;
                    q("UPDATE reminders SET status = 'fired' WHERE id = ? AND status = 'pending'")
                        .bind(id.clone())
                        .execute(&mut *tx)
                        .await?;
                    let due = DueReminder {
                        id,
                        task_id,
                        task_number: task.try_get(0)?,
                        user_id: r.try_get(2)?,
                        title: task.try_get(1)?,
                        fire_at: from_micros(r.try_get(3)?)?,
                        due_at: task.try_get::<Option<i64>, _>(2)?.map(from_micros).transpose()?,
                    };
                    let ev = make(&due);
                    position = append_event(&mut tx, &ev, topic_of(&ev)).await?;
                    fired.push(due);
                }
                tx.commit().await?;
                Ok((fired, position))
            }

            async fn count_pending_reminders(&self) -> Result<i64> {
                Ok(q("SELECT COUNT(*) FROM reminders WHERE status = 'pending'").fetch_one(self.reader()).await?.try_get(0)?)
            }
        }

        #[async_trait]
        impl NotificationStore for $store {
            #[tracing::instrument(skip_all, err(level = "debug"))]
            async fn insert_notifications(&self, items: &[(Notification, CloudEvent)], handled: &[Handled<'_>]) -> Result<i64> {
                let mut tx = self.writer().begin().await?;
                let now = micros(chrono::Utc::now());
                for h in handled {
                    mark_handled(&mut tx, *h, now).await?;
                }
                let mut position = 0;
                for (n, ev) in items {
                    q("INSERT INTO notifications (id, user_id, task_id, title, body, created_at, read_at) \
                       VALUES (?, ?, ?, ?, ?, ?, NULL)")
                        .bind(n.id.clone())
                        .bind(n.user_id.clone())
                        .bind(n.task_id.clone())
                        .bind(n.title.clone())
                        .bind(n.body.clone())
                        .bind(micros(n.created_at))
                        .execute(&mut *tx)
                        .await?;
                    position = append_event(&mut tx, ev, topic_of(ev)).await?;
                }
                tx.commit().await?;
                Ok(position)
            }

            async fn notifications(&self, user: UserId, unread_only: bool, limit: i64) -> Result<Vec<Notification>> {
                let sql = format!(
                    "SELECT id, user_id, task_id, title, body, created_at, read_at FROM notifications \
                     WHERE user_id = ?{} ORDER BY created_at DESC, id DESC LIMIT ?",
                    if unread_only { " AND read_at IS NULL" } else { "" }
                );
                let rows = q(&sql).bind(user.to_string()).bind(limit).fetch_all(self.reader()).await?;
                rows.iter().map(notification_row).collect()
            }

            async fn mark_notification_read(&self, user: UserId, id: &str, now: chrono::DateTime<chrono::Utc>) -> Result<bool> {
                q("UPDATE notifications SET read_at = ? WHERE id = ? AND user_id = ? AND read_at IS NULL")
                    .bind(micros(now))
                    .bind(id.to_owned())
                    .bind(user.to_string())
                    .execute(self.writer())
                    .await?;
                Ok(q("SELECT 1 FROM notifications WHERE id = ? AND user_id = ?")
                    .bind(id.to_owned())
                    .bind(user.to_string())
                    .fetch_optional(self.writer())
                    .await?
                    .is_some())
            }
        }

        #[async_trait]
        impl AuditStore for $store {
            #[tracing::instrument(skip_all, err(level = "debug"))]
            async fn append_audit(&self, events: &[(i64, &CloudEvent)]) -> Result<()> {
                if let Some(w) = self.jobs() {
                    return w.append_audit(events).await;
                }
                let mut tx = self.writer().begin().await?;
                let mut months = std::collections::HashSet::new();
                for &(_, e) in events {
                    if let Some(ddl) = dialect::audit_partition(micros(e.time))
                        && months.insert(ddl.clone())
                    {
                        sqlx::raw_sql(AssertSqlSafe(ddl)).execute(&mut *tx).await?;
                    }
                }
                // One statement per chunk, not one round trip per event.
                for chunk in events.chunks($crate::shared::AUDIT_ROWS_PER_STATEMENT) {
                    let mut insert = q(&$crate::shared::insert_audit(chunk.len()));
                    for &(position, e) in chunk {
                        insert = insert
                            .bind(position)
                            .bind(e.id.clone())
                            .bind(e.ty.clone())
                            .bind(e.userid.clone())
                            .bind(e.subject.clone())
                            .bind(micros(e.time))
                            .bind(e.data.to_string());
                    }
                    insert.execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditEntry>> {
                let cols = "id, event_id, type, user_id, task_id, occurred_at, data";
                let rows = match query.task {
                    Some(task) => q(&format!(
                        "SELECT {cols} FROM audit_log WHERE task_id = ? AND user_id = ? AND id > ? ORDER BY id LIMIT ?"
                    ))
                    .bind(task.to_string()),
                    None => q(&format!("SELECT {cols} FROM audit_log WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?")),
                };
                let rows = rows
                    .bind(query.user.to_string())
                    .bind(query.after)
                    .bind(query.limit)
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map(audit_row).collect()
            }

            async fn audit_all(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>> {
                let rows = q("SELECT id, event_id, type, user_id, task_id, occurred_at, data FROM audit_log \
                              WHERE id > ? ORDER BY id LIMIT ?")
                    .bind(after)
                    .bind(limit)
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map(audit_row).collect()
            }

            async fn reset_audit(&self, from: i64) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                match dialect::AUDIT_RESET {
                    Some(empty) if from <= 1 => {
                        sqlx::raw_sql(empty).execute(&mut *tx).await?;
                    }
                    _ => {
                        // The append-only guard is lifted inside this transaction only.
                        sqlx::raw_sql(dialect::AUDIT_UNGUARD).execute(&mut *tx).await?;
                        q("DELETE FROM audit_log WHERE id >= ?").bind(from).execute(&mut *tx).await?;
                        sqlx::raw_sql(dialect::AUDIT_GUARD).execute(&mut *tx).await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }
        }


        #[async_trait]
        impl $crate::LeaseStore for $store {
            async fn try_lease(
                &self,
                name: &str,
                holder: &str,
                now: chrono::DateTime<chrono::Utc>,
                ttl: std::time::Duration,
            ) -> Result<bool> {
                let until = now + chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::MAX);
                let done = q("INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) \
                              ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                              WHERE leases.holder = excluded.holder OR leases.expires_at < ?")
                    .bind(name.to_owned())
                    .bind(holder.to_owned())
                    .bind(micros(until))
                    .bind(micros(now))
                    .execute(self.writer())
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
                q("DELETE FROM leases WHERE name = ? AND holder = ?")
                    .bind(name.to_owned())
                    .bind(holder.to_owned())
                    .execute(self.writer())
                    .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl SettingStore for $store {
            async fn setting_or_insert(&self, key: &str, default: &str) -> Result<String> {
                q("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
                    .bind(key.to_owned())
                    .bind(default.to_owned())
                    .execute(self.writer())
                    .await?;
                Ok(q("SELECT value FROM settings WHERE key = ?")
                    .bind(key.to_owned())
                    .fetch_one(self.writer())
                    .await?
                    .try_get(0)?)
            }
        }

        #[async_trait]
        impl Store for $store {
            async fn ping(&self) -> Result<()> {
                q("SELECT 1").execute(self.reader()).await?;
                Ok(())
            }

            async fn migrate(&self) -> Result<usize> {
                let mut tx = self.writer().begin().await?;
                if let Some(lock) = dialect::MIGRATION_LOCK {
                    sqlx::raw_sql(lock).execute(&mut *tx).await?;
                }
                sqlx::raw_sql(
                    "CREATE TABLE IF NOT EXISTS schema_migrations \
                     (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
                )
                .execute(&mut *tx)
                .await?;
                let applied: Vec<i64> = q("SELECT version FROM schema_migrations")
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<std::result::Result<_, _>>()?;
                let mut count = 0;
                for &(version, name, sql) in dialect::MIGRATIONS {
                    if applied.contains(&version) {
                        continue;
                    }
                    sqlx::raw_sql(sql)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| StoreError::Migration { version, message: e.to_string() })?;
                    q("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
                        .bind(version)
                        .bind(name)
                        .bind(micros(chrono::Utc::now()))
                        .execute(&mut *tx)
                        .await?;
                    tracing::info!(version, name, "applied migration");
                    count += 1;
                }
                tx.commit().await?;
                Ok(count)
            }

            fn backend(&self) -> &'static str {
                $backend
            }

            async fn begin(&self) -> Result<std::sync::Arc<dyn $crate::Unit>> {
                let tx = match dialect::BEGIN_UNIT {
                    Some(sql) => self.writer().begin_with(sql).await?,
                    None => self.writer().begin().await?,
                };
                Ok(std::sync::Arc::new($crate::shared::DbUnit { tx: tokio::sync::Mutex::new(Some(tx)) }))
            }

            async fn backup(&self, path: &str) -> Result<bool> {
                let Some(sql) = dialect::BACKUP else { return Ok(false) };
                sqlx::query(sql).bind(path).execute(self.reader()).await?;
                Ok(true)
            }

            async fn close(&self) {
                if let Some(sql) = dialect::ON_CLOSE
                    && let Err(e) = sqlx::raw_sql(sql).execute(self.writer()).await
                {
                    tracing::warn!(error = %e, "cannot checkpoint the write-ahead log");
                }
                self.writer().close().await;
                self.reader().close().await;
            }
        }
    };
}

pub(crate) use impl_store;
