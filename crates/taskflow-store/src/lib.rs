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
use taskflow_core::{CloudEvent, Email, Task, TaskId, Topic, User, UserId};

pub use cursor::{Cursor, CursorKey};
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
    /// The database server could not be reached or refused the connection.
    #[error("{0}")]
    Connect(String),
    #[error("migration {version} failed: {message}")]
    Migration { version: i64, message: String },
    /// A call on a unit of work after it was committed.
    #[error("the unit of work has ended")]
    Ended,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The caller's decision refused a change (see [`TaskStore::change_task`]); its error.
    #[error(transparent)]
    Refused(Refusal),
    /// The database failed the operation or could not be reached; the adapter's error,
    /// whatever its driver.
    #[error(transparent)]
    Database(Box<dyn std::error::Error + Send + Sync + 'static>),
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
    pub topic: Topic,
    pub event: CloudEvent,
}

/// Builds the event of a newly inserted task once storage has given it its number. Owned,
/// so that an adapter may run it on the thread that writes.
pub type EventFor = Box<dyn FnOnce(&Task) -> CloudEvent + Send>;

/// Why a caller's decision refused a change, as the caller put it.
pub type Refusal = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How a request names a task: by id, or by the per-user number people use in chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskRef {
    Id(TaskId),
    Number(i64),
}

/// What a change makes of the task as it is stored now.
#[derive(Debug)]
pub enum Decision {
    /// Nothing to write; the task stays as it is.
    Keep,
    /// Write the task as the decision changed it, and this event.
    Update(CloudEvent),
    /// Delete the task, and write this event.
    Delete(CloudEvent),
}

/// Decides a change on the task as stored, changing it in place.
pub type Decide<'a> =
    &'a (dyn Fn(&mut Task) -> std::result::Result<Decision, Refusal> + Send + Sync);

/// A consumer's record that it handled an event, written in the same transaction as the
/// handler's effect, so an event redelivered later is recognised and changes nothing.
#[derive(Debug, Clone, Copy)]
pub struct Handled<'a> {
    pub consumer: &'a str,
    pub event_id: &'a str,
}

/// A pending reminder that has come due, with what its event needs.
#[derive(Debug, Clone)]
pub struct DueReminder {
    pub id: String,
    pub task_id: String,
    pub task_number: i64,
    pub user_id: String,
    pub title: String,
    pub fire_at: DateTime<Utc>,
    pub due_at: Option<DateTime<Utc>>,
}

/// Builds the event of a fired reminder.
pub type ReminderEventFor<'a> = &'a (dyn Fn(&DueReminder) -> CloudEvent + Send + Sync);

/// A notification for a user.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Notification {
    pub id: String,
    #[serde(skip)]
    pub user_id: String,
    pub task_id: Option<String>,
    pub title: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

/// One entry of the audit log: an event as it happened.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    /// The event's log position.
    pub id: i64,
    pub event_id: String,
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(skip)]
    pub user_id: String,
    pub task_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub data: serde_json::Value,
}

/// A conversation with the assistant. `state` is the agent's memory between messages
/// (the task last singled out, a question awaiting an answer), as JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Conversation {
    pub id: String,
    #[serde(skip)]
    pub user_id: String,
    pub title: String,
    #[serde(skip)]
    pub state: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Message {
    pub id: String,
    pub role: String,
    pub content: String,
    pub tool_calls: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Which audit entries to read.
#[derive(Debug, Clone, Copy)]
pub struct AuditQuery {
    pub user: UserId,
    pub task: Option<TaskId>,
    /// Entries after this id (position).
    pub after: i64,
    pub limit: i64,
}

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
pub trait TaskStore: Send + Sync + fmt::Debug {
    /// Inserts a task with the next per-user number, and its event, in one transaction.
    /// Returns the stored task and the event's log position.
    /// With `handled`, the consumer's record is written too; an event already handled, or an
    /// occurrence of a series that already exists, is [`StoreError::Duplicate`].
    async fn insert_task(
        &self,
        task: &Task,
        tz: taskflow_core::Timezone,
        event: EventFor,
        handled: Option<Handled<'_>>,
    ) -> Result<(Task, i64)>;
    async fn task(&self, user: UserId, id: TaskId) -> Result<Option<Task>>;
    async fn task_by_number(&self, user: UserId, number: i64) -> Result<Option<Task>>;
    /// Reads a task, lets `decide` change it, and writes the outcome with its event, in one
    /// transaction in which no other change of the task lands (read-check-write as one job).
    /// Returns the task as it is afterwards and the event's position (`None` when `decide`
    /// kept it as it was). A task that is not there is [`StoreError::NotFound`]; an error of
    /// `decide` is [`StoreError::Refused`] and writes nothing.
    async fn change_task(
        &self,
        user: UserId,
        task: TaskRef,
        tz: taskflow_core::Timezone,
        decide: Decide<'_>,
    ) -> Result<(Task, Option<i64>)>;
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
    /// Removes the events at or before `through` written before `before` (an outbox whose
    /// rows were relayed elsewhere keeps them only for a while); returns how many. The newest
    /// event always stays, so the log's last position holds.
    async fn prune_events(&self, through: i64, before: DateTime<Utc>) -> Result<u64>;
    /// One user's events after `position`, oldest first.
    async fn user_events_after(
        &self,
        user: UserId,
        position: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>>;
    /// A token naming the transactions running now, when positions may commit out of order
    /// (PostgreSQL); `None` when a gap in positions is always final (SQLite).
    async fn snapshot(&self) -> Result<Option<String>>;
    /// Whether every transaction running at `snapshot` has ended, so a gap seen then is final.
    async fn settled(&self, snapshot: &str) -> Result<bool>;
}

/// What consumer groups keep: offsets, and events they gave up on.
#[async_trait]
pub trait ConsumerStore: Send + Sync {
    /// The last position the group handled; 0 when it never ran.
    async fn consumer_offset(&self, consumer: &str) -> Result<i64>;
    async fn save_consumer_offset(&self, consumer: &str, position: i64) -> Result<()>;
    /// Parks an event the consumer failed on `attempts` times, with the error.
    async fn dead_letter(
        &self,
        consumer: &str,
        position: i64,
        event: &CloudEvent,
        error: &str,
        attempts: u32,
    ) -> Result<()>;
    /// Number of parked events of a consumer.
    async fn count_dead_letters(&self, consumer: &str) -> Result<i64>;
    /// Which of these event ids the consumer has handled already.
    async fn processed(&self, consumer: &str, event_ids: &[String]) -> Result<Vec<String>>;
    /// Forgets records of events handled before `before`; returns how many. Redelivery
    /// happens only from the last saved offset, minutes at most behind.
    async fn prune_processed(&self, before: DateTime<Utc>) -> Result<u64>;
}

/// The durable timers: pending reminders are the truth, in the reminders table.
#[async_trait]
pub trait ReminderStore: Send + Sync {
    /// When the earliest pending reminder is due.
    async fn next_reminder_at(&self) -> Result<Option<DateTime<Utc>>>;
    /// Claims up to `limit` pending reminders due at `now`: marks each fired and appends the
    /// event `make` builds, in one transaction. Returns the reminders and the last position.
    async fn fire_due_reminders(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        make: ReminderEventFor<'_>,
    ) -> Result<(Vec<DueReminder>, i64)>;
    async fn count_pending_reminders(&self) -> Result<i64>;
}

#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Stores notifications with their events and the consumer's records of the events they
    /// came from, in one transaction; an event handled already is [`StoreError::Duplicate`].
    /// Returns the last position.
    async fn insert_notifications(
        &self,
        items: &[(Notification, CloudEvent)],
        handled: &[Handled<'_>],
    ) -> Result<i64>;
    /// A user's notifications, newest first.
    async fn notifications(
        &self,
        user: UserId,
        unread_only: bool,
        limit: i64,
    ) -> Result<Vec<Notification>>;
    /// Marks a notification read (once); false when the user has no such notification.
    async fn mark_notification_read(
        &self,
        user: UserId,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;
}

#[async_trait]
pub trait ConversationStore: Send + Sync + fmt::Debug {
    async fn conversation(&self, user: UserId, id: &str) -> Result<Option<Conversation>>;
    /// A user's conversations, most recent first.
    async fn conversations(&self, user: UserId, limit: i64) -> Result<Vec<Conversation>>;
    /// Writes the conversation (created when new) with its new state and appends the
    /// messages, in one transaction.
    async fn save_exchange(&self, conversation: &Conversation, messages: &[Message]) -> Result<()>;
    /// A conversation's messages, oldest first.
    async fn messages(&self, user: UserId, conversation: &str, limit: i64) -> Result<Vec<Message>>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends events to the audit log; an event already there is left as it is.
    async fn append_audit(&self, events: &[(i64, &CloudEvent)]) -> Result<()>;
    /// Entries of a user (of one task), oldest first.
    async fn audit(&self, query: AuditQuery) -> Result<Vec<AuditEntry>>;
    /// Every entry, oldest first, after `after` (for comparing a rebuild).
    async fn audit_all(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>>;
    /// Removes the audit entries from position `from` on, as the first step of a rebuild
    /// from the event log; the entries before it (of events pruned from the outbox after
    /// their retention) stay.
    async fn reset_audit(&self, from: i64) -> Result<()>;
}

/// Leases, for work that one instance at a time must do (the relay).
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes or renews the lease `name` for `holder` until `now + ttl`; true when `holder`
    /// holds it afterwards (it was free, expired, or already `holder`'s).
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<bool>;
    /// Gives the lease up, if `holder` has it, so another instance can take it at once.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
}

#[async_trait]
pub trait SettingStore: Send + Sync {
    /// The value of `key`, storing `default` first when there is none (first writer wins).
    async fn setting_or_insert(&self, key: &str, default: &str) -> Result<String>;
}

/// A unit of work: task and conversation reads and writes in one transaction, made durable
/// together by [`Unit::commit`] or not at all (dropped uncommitted, it rolls back). A write
/// that fails inside it is undone alone and the unit goes on. On SQLite a unit holds the one
/// writer while it is open: keep it short, never across a wait on anything outside.
#[async_trait]
pub trait Unit: TaskStore + ConversationStore + fmt::Debug {
    async fn commit(&self) -> Result<()>;
}

/// Everything the program stores.
#[async_trait]
pub trait Store:
    UserStore
    + TaskStore
    + EventLog
    + SettingStore
    + LeaseStore
    + ConsumerStore
    + ReminderStore
    + NotificationStore
    + AuditStore
    + ConversationStore
    + fmt::Debug
{
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;
    /// Applies pending migrations; returns how many were applied.
    async fn migrate(&self) -> Result<usize>;
    /// Which backend this is: `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Opens a unit of work.
    async fn begin(&self) -> Result<Arc<dyn Unit>>;
    /// Writes a consistent copy of the database to a new file at `path`, while it is in use
    /// (SQLite's `VACUUM INTO`); `Ok(false)` where the backend has its own tools (pg_dump).
    async fn backup(&self, path: &str) -> Result<bool>;
    /// Closes the connections; SQLite first moves its write-ahead log into the database
    /// file, so the file alone holds every change after a clean shutdown.
    async fn close(&self);
}

/// Opens the store the URL names: `sqlite:PATH` (created when missing) or
/// `postgres://…`/`postgresql://…`. Does not migrate.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    check_url(url)?;
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else {
        Ok(Arc::new(PgStore::open(url).await?))
    }
}

/// Whether `url` names a backend this program has, before anything is opened.
pub fn check_url(url: &str) -> Result<()> {
    match url.split(':').next().unwrap_or_default() {
        "sqlite" | "postgres" | "postgresql" => Ok(()),
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
