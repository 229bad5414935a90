//! Storage of taskflow: the ports (traits) the rest of the program uses, and two adapters,
//! SQLite and PostgreSQL, each with its own migrations. [`connect`] picks the adapter once,
//! from the URL scheme.
//!
//! Both adapters share one body of SQL (see `shared.rs`): ids are stored as text, instants as
//! microseconds since the Unix epoch in a 64-bit integer, tags and events as JSON text. That
//! keeps one implementation of every query for both databases; what differs (full-text
//! search, identity columns, the migration lock) is a small `Dialect`.

mod cursor;
mod postgres;
mod query;
mod shared;
mod sqlite;

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use taskflow_core::{CloudEvent, Email, Task, TaskId, User, UserId};

pub use cursor::Cursor;
pub use postgres::PgStore;
pub use query::{Order, Page, SortBy, TaskQuery};
pub use sqlite::SqliteStore;

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// The row changed since it was read (optimistic concurrency).
    #[error("the record was changed by someone else")]
    VersionConflict,
    #[error("{0} is already taken")]
    Duplicate(&'static str),
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    #[error("unsupported database URL: {0}")]
    UnsupportedUrl(String),
    #[error("migration {version} failed: {message}")]
    Migration { version: i64, message: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A user together with the hash of their password.
#[derive(Debug, Clone)]
pub struct UserWithHash {
    pub user: User,
    pub password_hash: String,
}

/// An event as kept in the log, with its position.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub position: i64,
    pub topic: String,
    pub event: CloudEvent,
}

/// Builds the event of a newly inserted task once storage has given it its number.
pub type EventFor<'a> = &'a (dyn Fn(&Task) -> CloudEvent + Send + Sync);

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts a user; a taken email is [`StoreError::Duplicate`].
    async fn insert_user(&self, user: &User, password_hash: &str) -> Result<()>;
    async fn user_by_email(&self, email: &Email) -> Result<Option<UserWithHash>>;
    async fn user(&self, id: UserId) -> Result<Option<User>>;
    /// Changes name and timezone; all-day tasks then sort and fall due by their day in the
    /// new timezone.
    async fn update_user(&self, user: &User) -> Result<()>;
}

#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Inserts a task with the next per-user number, and its event, in one transaction.
    /// Returns the stored task and the event's log position.
    async fn insert_task(
        &self,
        task: &Task,
        tz: taskflow_core::Timezone,
        event: EventFor<'_>,
    ) -> Result<(Task, i64)>;
    async fn task(&self, user: UserId, id: TaskId) -> Result<Option<Task>>;
    async fn task_by_number(&self, user: UserId, number: i64) -> Result<Option<Task>>;
    /// Writes a changed task if it is still at `expected_version`, and its event, in one
    /// transaction. Returns the event's log position.
    async fn update_task(
        &self,
        task: &Task,
        expected_version: i64,
        tz: taskflow_core::Timezone,
        event: &CloudEvent,
    ) -> Result<i64>;
    /// Deletes a task if it is still at `expected_version`, and writes its event, in one
    /// transaction. Returns the event's log position.
    async fn delete_task(
        &self,
        user: UserId,
        id: TaskId,
        expected_version: i64,
        event: &CloudEvent,
    ) -> Result<i64>;
    async fn list_tasks(&self, user: UserId, query: &TaskQuery) -> Result<Page>;
    /// Number of tasks of all users.
    async fn count_tasks(&self) -> Result<i64>;
}

/// The event log: on the embedded bus it is the outbox table itself.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Events after `position`, oldest first.
    async fn events_after(&self, position: i64, limit: i64) -> Result<Vec<StoredEvent>>;
    /// The position of the newest event, 0 when the log is empty.
    async fn last_position(&self) -> Result<i64>;
    /// Number of events in the log.
    async fn count_events(&self) -> Result<i64>;
}

#[async_trait]
pub trait SettingStore: Send + Sync {
    /// The value of `key`, storing `default` first when there is none (first writer wins).
    async fn setting_or_insert(&self, key: &str, default: &str) -> Result<String>;
}

/// Everything the program stores.
#[async_trait]
pub trait Store: UserStore + TaskStore + EventLog + SettingStore + fmt::Debug {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;
    /// Applies pending migrations; returns how many were applied.
    async fn migrate(&self) -> Result<usize>;
    /// Which backend this is: `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
}

/// Opens the store the URL names: `sqlite:PATH` (created when missing) or
/// `postgres://…`/`postgresql://…`. Does not migrate.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "sqlite" => Ok(Arc::new(SqliteStore::open(url).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(PgStore::open(url).await?)),
        _ => Err(StoreError::UnsupportedUrl(format!(
            "`{}`: use sqlite:PATH or postgres://USER@HOST/DB",
            redact_url(url)
        ))),
    }
}

/// A URL with its password replaced by `***`, fit for logs and errors.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((auth, host)) = rest.split_once('@')
        && let Some((user, _)) = auth.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
}

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v)
        .ok_or_else(|| StoreError::Corrupt(format!("bad instant {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_password_is_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:x.db"), "sqlite:x.db");
    }
}
