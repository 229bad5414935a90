//! Task use cases: create, read, list, update, complete, reopen, delete. Every change writes
//! the task and its event in one transaction.

use taskflow_core::{
    CloudEvent, EventKind, Task, TaskDraft, TaskId, TaskPatch, TaskStatus, User, recur,
};
use taskflow_store::{Handled, StoreError, TaskQuery};

use crate::{API_SOURCE, App, AppError};

/// One page of tasks; `next_cursor` is signed by this server.
#[derive(Debug, Clone)]
pub struct TaskPage {
    pub items: Vec<Task>,
    pub next_cursor: Option<String>,
}

/// How a request names a task: by id, or by the per-user number people use in chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskRef {
    Id(TaskId),
    Number(i64),
}

/// How often a change without `If-Match` is retried when another change lands first.
const RETRIES: usize = 8;

impl App {
    #[tracing::instrument(skip_all, fields(user_id = %user.id), err(level = "debug"))]
    pub async fn create_task(&self, user: &User, draft: TaskDraft) -> Result<Task, AppError> {
        let now = self.clock.now();
        let task = Task::create(user.id, draft, user.timezone, now)?;
        // The request's trace, read here: the store may run the closure elsewhere.
        let trace = crate::trace::current();
        let event = |t: &Task| {
            CloudEvent::for_task(
                EventKind::TaskCreated,
                t,
                &[],
                API_SOURCE,
                trace.clone(),
                now,
            )
        };
        let (task, position) = self
            .tasks
            .insert_task(&task, user.timezone, &event, None)
            .await?;
        self.committed(EventKind::TaskCreated.short(), position);
        Ok(task)
    }

    pub async fn task(&self, user: &User, r: TaskRef) -> Result<Task, AppError> {
        let found = match r {
            TaskRef::Id(id) => self.tasks.task(user.id, id).await?,
            TaskRef::Number(n) => self.tasks.task_by_number(user.id, n).await?,
        };
        found.ok_or(AppError::NotFound)
    }

    pub async fn list_tasks(&self, user: &User, query: &TaskQuery) -> Result<TaskPage, AppError> {
        let page = self.tasks.list_tasks(user.id, query).await?;
        Ok(TaskPage {
            items: page.items,
            next_cursor: page.next_cursor.map(|c| self.tokens.seal_cursor(&c)),
        })
    }

    /// Applies `patch`. With `if_match`, only if the task is still at that version; without it
    /// the last write wins.
    #[tracing::instrument(skip_all, fields(user_id = %user.id), err(level = "debug"))]
    pub async fn update_task(
        &self,
        user: &User,
        r: TaskRef,
        patch: TaskPatch,
        if_match: Option<i64>,
    ) -> Result<Task, AppError> {
        self.change(user, r, if_match, |task, now| {
            let changed = task.apply(patch.clone(), user.timezone, now)?;
            let kind = if changed.contains(&"status") {
                if task.status == TaskStatus::Completed {
                    EventKind::TaskCompleted
                } else {
                    EventKind::TaskReopened
                }
            } else {
                EventKind::TaskUpdated
            };
            Ok((kind, changed))
        })
        .await
    }

    /// Completes a task; completing a completed task changes nothing and returns it.
    #[tracing::instrument(skip_all, fields(user_id = %user.id), err(level = "debug"))]
    pub async fn complete_task(&self, user: &User, r: TaskRef) -> Result<Task, AppError> {
        self.change(user, r, None, |task, now| {
            Ok((
                EventKind::TaskCompleted,
                if task.complete(now) {
                    vec!["status"]
                } else {
                    vec![]
                },
            ))
        })
        .await
    }

    /// Reopens a task; reopening a pending task changes nothing and returns it.
    #[tracing::instrument(skip_all, fields(user_id = %user.id), err(level = "debug"))]
    pub async fn reopen_task(&self, user: &User, r: TaskRef) -> Result<Task, AppError> {
        self.change(user, r, None, |task, now| {
            Ok((
                EventKind::TaskReopened,
                if task.reopen(now) {
                    vec!["status"]
                } else {
                    vec![]
                },
            ))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user.id), err(level = "debug"))]
    pub async fn delete_task(
        &self,
        user: &User,
        r: TaskRef,
        if_match: Option<i64>,
    ) -> Result<(), AppError> {
        for _ in 0..RETRIES {
            let task = self.task(user, r).await?;
            check_version(&task, if_match)?;
            let now = self.clock.now();
            let event = CloudEvent::for_task(
                EventKind::TaskDeleted,
                &task,
                &[],
                API_SOURCE,
                crate::trace::current(),
                now,
            );
            match self
                .tasks
                .delete_task(user.id, task.id, task.version, &event)
                .await
            {
                Ok(position) => {
                    self.committed(EventKind::TaskDeleted.short(), position);
                    return Ok(());
                }
                Err(StoreError::VersionConflict) if if_match.is_none() => continue,
                Err(StoreError::VersionConflict) => {
                    return Err(self.stale(user, r, if_match).await);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Contended)
    }

    /// Reads, changes and writes back one task, retrying on a concurrent change when the
    /// caller did not pin a version. `apply` returns the event kind and the changed fields;
    /// no changed field means no write and no event.
    async fn change<F>(
        &self,
        user: &User,
        r: TaskRef,
        if_match: Option<i64>,
        apply: F,
    ) -> Result<Task, AppError>
    where
        F: Fn(
            &mut Task,
            chrono::DateTime<chrono::Utc>,
        ) -> Result<(EventKind, Vec<&'static str>), AppError>,
    {
        for _ in 0..RETRIES {
            let mut task = self.task(user, r).await?;
            check_version(&task, if_match)?;
            let before = task.version;
            let now = self.clock.now();
            let (kind, changed) = apply(&mut task, now)?;
            if changed.is_empty() {
                return Ok(task);
            }
            let mut event = CloudEvent::for_task(
                kind,
                &task,
                &changed,
                API_SOURCE,
                crate::trace::current(),
                now,
            );
            if kind == EventKind::TaskCompleted && recur::series_ended(&task, user.timezone, now) {
                // Consumers and clients learn that no next occurrence will come.
                event.data["series_ended"] = serde_json::Value::Bool(true);
            }
            match self
                .tasks
                .update_task(&task, before, user.timezone, &event)
                .await
            {
                Ok(position) => {
                    self.committed(kind.short(), position);
                    return Ok(task);
                }
                Err(StoreError::VersionConflict) if if_match.is_none() => continue,
                Err(StoreError::VersionConflict) => {
                    return Err(self.stale(user, r, if_match).await);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Contended)
    }

    /// After a commit: wake the bus's readers and count the event (`kind` as a label). Inside
    /// a unit of work, once the unit commits.
    pub fn committed(&self, kind: &'static str, position: i64) {
        match &self.unit {
            Some(unit) => unit.written(kind, position),
            None => self.announce(kind, position),
        }
    }

    /// Wakes the bus's readers and counts the event.
    pub(crate) fn announce(&self, kind: &'static str, position: i64) {
        self.bus.committed(position);
        metrics::counter!("taskflow_events_written_total", "type" => kind).increment(1);
    }

    /// On `task.completed` of a recurring task: creates the next occurrence through the same
    /// path as any new task, so it emits `task.created` itself. Exactly once per occurrence:
    /// the consumer's record of `event` and the series' (series, occurrence) key are written
    /// with the task, so a redelivered event or a racing instance changes nothing.
    /// Returns the new task, or `None` when there is none to create (not recurring, the series
    /// ended, or it exists already).
    #[tracing::instrument(skip_all, fields(event_id = %event.id), err(level = "debug"))]
    pub async fn create_next_occurrence(
        &self,
        event: &CloudEvent,
        consumer: &str,
        source: &str,
    ) -> Result<Option<Task>, AppError> {
        if event.task_kind() != Some(EventKind::TaskCompleted) {
            return Ok(None);
        }
        let user_id = event
            .user_id()
            .ok_or_else(|| AppError::Internal(format!("event {} has no valid userid", event.id)))?;
        let completed = Task::from_json(user_id, &event.data["task_data"])?;
        if completed.recurrence.is_none() || completed.status != TaskStatus::Completed {
            return Ok(None);
        }
        let Some(user) = self.store.user(user_id).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        let completed_at = completed.completed_at.unwrap_or(event.time);
        let Some(draft) = recur::next_occurrence(&completed, user.timezone, completed_at, now)
        else {
            tracing::debug!(task_id = %completed.id, "the series has ended");
            return Ok(None);
        };
        let task = Task::next_in_series(&completed, draft, user.timezone, now)?;
        let trace = event.traceparent.clone();
        let created = |t: &Task| {
            CloudEvent::for_task(EventKind::TaskCreated, t, &[], source, trace.clone(), now)
        };
        let handled = Handled {
            consumer,
            event_id: &event.id,
        };
        match self
            .tasks
            .insert_task(&task, user.timezone, &created, Some(handled))
            .await
        {
            Ok((task, position)) => {
                self.committed(EventKind::TaskCreated.short(), position);
                Ok(Some(task))
            }
            Err(StoreError::Duplicate(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn stale(&self, user: &User, r: TaskRef, if_match: Option<i64>) -> AppError {
        match self.task(user, r).await {
            Ok(t) => AppError::PreconditionFailed {
                expected: if_match.unwrap_or_default(),
                current: t.version,
            },
            Err(e) => e,
        }
    }
}

fn check_version(task: &Task, if_match: Option<i64>) -> Result<(), AppError> {
    match if_match {
        Some(v) if v != task.version => Err(AppError::PreconditionFailed {
            expected: v,
            current: task.version,
        }),
        _ => Ok(()),
    }
}
