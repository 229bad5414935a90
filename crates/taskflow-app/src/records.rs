//! What the consumers keep and people read back: the audit history, notifications, fired
//! reminders, the event replay of live clients, and the checks of the process. Each is one
//! use case over the store, so no front door and no service touches the store itself.

use chrono::{DateTime, Utc};
use taskflow_core::{CloudEvent, TaskId, User, UserId, ValidationErrors};
use taskflow_store::{
    AuditEntry, AuditQuery, DueReminder, Handled, Notification, ReminderEventFor, Store,
    StoreError, StoredEvent,
};

use crate::{App, AppError};

/// The most notifications one read returns.
pub const MAX_NOTIFICATIONS: i64 = 500;
/// The most history entries one read returns.
pub const MAX_HISTORY: i64 = 500;

/// What [`App::notify`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notified {
    /// Stored, with their events; the log's last position.
    Stored(i64),
    /// Another instance handled one of the events first: nothing was stored.
    HandledElsewhere,
}

/// What an audit rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// Events replayed into the audit log.
    pub replayed: i64,
    /// The position of the oldest event replayed: the entries before it were kept.
    pub from: i64,
}

impl App {
    /// `user`'s history, oldest first, after the entry `after`, at most `limit` (1 to
    /// [`MAX_HISTORY`]): of one task (also after it was deleted), or of all their tasks. A
    /// task that neither exists nor ever had an entry is not found.
    pub async fn history(
        &self,
        user: &User,
        task: Option<TaskId>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, AppError> {
        if !(1..=MAX_HISTORY).contains(&limit) {
            return Err(ValidationErrors::one(
                "limit",
                format!("must be between 1 and {MAX_HISTORY}"),
            )
            .into());
        }
        let query = AuditQuery {
            user: user.id,
            task,
            after,
            limit,
        };
        let items = self.store.audit(query).await?;
        if let Some(id) = task
            && items.is_empty()
            && after == 0
            && self.store.task(user.id, id).await?.is_none()
        {
            return Err(AppError::NotFound);
        }
        Ok(items)
    }

    /// Appends events to the audit log; an event already there stays as it is.
    pub async fn record_history(&self, events: &[(i64, &CloudEvent)]) -> Result<(), AppError> {
        Ok(self.store.append_audit(events).await?)
    }

    /// `user`'s notifications, newest first, at most `limit` (1 to [`MAX_NOTIFICATIONS`]).
    pub async fn notifications(
        &self,
        user: &User,
        unread_only: bool,
        limit: i64,
    ) -> Result<Vec<Notification>, AppError> {
        if !(1..=MAX_NOTIFICATIONS).contains(&limit) {
            return Err(ValidationErrors::one(
                "limit",
                format!("must be between 1 and {MAX_NOTIFICATIONS}"),
            )
            .into());
        }
        Ok(self
            .store
            .notifications(user.id, unread_only, limit)
            .await?)
    }

    /// Marks one of `user`'s notifications read; marking it again changes nothing.
    pub async fn read_notification(&self, user: &User, id: &str) -> Result<(), AppError> {
        let now = self.clock.now();
        if self.store.mark_notification_read(user.id, id, now).await? {
            Ok(())
        } else {
            Err(AppError::NotFound)
        }
    }

    /// Stores notifications with their events and `handled`, the consumer's records of the
    /// events they came from, in one transaction, and wakes the bus.
    pub async fn notify(
        &self,
        items: &[(Notification, CloudEvent)],
        handled: &[Handled<'_>],
    ) -> Result<Notified, AppError> {
        match self.store.insert_notifications(items, handled).await {
            Ok(position) => {
                self.committed("notification.created", position);
                Ok(Notified::Stored(position))
            }
            Err(StoreError::Duplicate(_)) => Ok(Notified::HandledElsewhere),
            Err(e) => Err(e.into()),
        }
    }

    /// Which of these event ids `consumer` has handled already.
    pub async fn handled(&self, consumer: &str, ids: &[String]) -> Result<Vec<String>, AppError> {
        Ok(self.store.processed(consumer, ids).await?)
    }

    /// The user with this id, if there is one (a consumer reading an event's user).
    pub async fn find_user(&self, id: UserId) -> Result<Option<User>, AppError> {
        Ok(self.store.user(id).await?)
    }

    /// Claims up to `limit` reminders due at `now`, each marked fired with the event `make`
    /// builds, in one transaction, and wakes the bus.
    pub async fn fire_due_reminders(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        make: ReminderEventFor<'_>,
    ) -> Result<Vec<DueReminder>, AppError> {
        let (fired, position) = self.store.fire_due_reminders(now, limit, make).await?;
        if !fired.is_empty() {
            self.committed("reminder.triggered", position);
        }
        Ok(fired)
    }

    /// When the earliest pending reminder is due.
    pub async fn next_reminder_at(&self) -> Result<Option<DateTime<Utc>>, AppError> {
        Ok(self.store.next_reminder_at().await?)
    }

    /// `user`'s events after `position`, oldest first (a live client catching up).
    pub async fn events_since(
        &self,
        user: &User,
        position: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, AppError> {
        Ok(self
            .store
            .user_events_after(user.id, position, limit)
            .await?)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), AppError> {
        Ok(self.store.ping().await?)
    }

    /// How many events the outbox holds.
    pub async fn outbox_len(&self) -> Result<i64, AppError> {
        Ok(self.store.count_events().await?)
    }
}

/// Empties the audit log and replays the event log into it, in batches; the result is the
/// log kept live. Entries of events that have left the outbox after their retention
/// (positions before the oldest event still there) stay as they are: they cannot be replayed.
/// A maintenance command, run on the store before any process serves.
pub async fn rebuild_history(
    store: &dyn Store,
    mut progress: impl FnMut(i64),
) -> Result<Rebuilt, AppError> {
    let oldest = store.events_after(0, 1).await?;
    let from = oldest.first().map_or(0, |e| e.position);
    store.reset_audit(from).await?;
    let mut position = (from - 1).max(0);
    let mut count = 0;
    loop {
        let batch = store.events_after(position, 1000).await?;
        let Some(last) = batch.last() else { break };
        position = last.position;
        let events: Vec<(i64, &CloudEvent)> =
            batch.iter().map(|e| (e.position, &e.event)).collect();
        store.append_audit(&events).await?;
        count += batch.len() as i64;
        progress(count);
    }
    Ok(Rebuilt {
        replayed: count,
        from,
    })
}
