//! Task use cases: create, read, list, update, complete, reopen, delete. Every change writes
//! the task and its event in one transaction.

use taskflow_core::{CloudEvent, EventKind, Task, TaskDraft, TaskPatch, TaskStatus, User, recur};
use taskflow_store::{Decision, Handled, Refusal, StoreError, TaskQuery, TaskRef};

use crate::{API_SOURCE, App, AppError};

/// One page of tasks; `next_cursor` is signed by this server.
#[derive(Debug, Clone)]
pub struct TaskPage {
    pub items: Vec<Task>,
    pub next_cursor: Option<String>,
}

/// How often a change is tried again when another one landed between its read and its
/// write (only where the database cannot lock the row it read).
const RETRIES: usize = 8;

impl App {
    #[tracing::instrument(skip_all, fields(user_id = %user.id), err(level = "debug"))]
    pub async fn create_task(&self, user: &User, draft: TaskDraft) -> Result<Task, AppError> {
        let now = self.clock.now();
        let task = Task::create(user.id, draft, user.timezone, now)?;
        // The request's trace, read here: the store may run the closure elsewhere.
        let trace = crate::trace::current();
        let event = Box::new(move |t: &Task| {
            CloudEvent::for_task(EventKind::TaskCreated, t, &[], API_SOURCE, trace, now)
        });
        let (task, position) = self
            .tasks
            .insert_task(&task, user.timezone, event, None)
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
        // The request's trace, read here: the store may run the decision elsewhere.
        let trace = crate::trace::current();
        let decide = |task: &mut Task| -> Result<Decision, Refusal> {
            check_version(task, if_match)?;
            Ok(Decision::Delete(CloudEvent::for_task(
                EventKind::TaskDeleted,
                task,
                &[],
                API_SOURCE,
                trace.clone(),
                self.clock.now(),
            )))
        };
        self.decided(user, r, &decide, || EventKind::TaskDeleted)
            .await
            .map(|_| ())
    }

    /// Reads, changes and writes back one task as one store call. `apply` returns the event
    /// kind and the changed fields; no changed field means no write and no event. With
    /// `if_match`, only a task still at that version is changed.
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
            ) -> Result<(EventKind, Vec<&'static str>), AppError>
            + Send
            + Sync,
    {
        // The kind of the event the decision wrote, for the count once it is committed.
        let kind = std::sync::Mutex::new(EventKind::TaskUpdated);
        // The request's trace, read here: the store may run the decision elsewhere.
        let trace = crate::trace::current();
        let decide = |task: &mut Task| -> Result<Decision, Refusal> {
            check_version(task, if_match)?;
            let now = self.clock.now();
            let (k, changed) = apply(task, now)?;
            if changed.is_empty() {
                return Ok(Decision::Keep);
            }
            let mut event = CloudEvent::for_task(k, task, &changed, API_SOURCE, trace.clone(), now);
            if k == EventKind::TaskCompleted && recur::series_ended(task, user.timezone, now) {
                // Consumers and clients learn that no next occurrence will come.
                event.data["series_ended"] = serde_json::Value::Bool(true);
            }
            *kind.lock().unwrap_or_else(|e| e.into_inner()) = k;
            Ok(Decision::Update(event))
        };
        let kind = || *kind.lock().unwrap_or_else(|e| e.into_inner());
        let task = self.decided(user, r, &decide, kind).await?;
        Ok(task)
    }

    /// Runs a decision on one task in the store, trying again when another change landed
    /// between its read and its write; counts the event it wrote.
    async fn decided(
        &self,
        user: &User,
        r: TaskRef,
        decide: taskflow_store::Decide<'_>,
        kind: impl Fn() -> EventKind,
    ) -> Result<Task, AppError> {
        for _ in 0..RETRIES {
            match self
                .tasks
                .change_task(user.id, r, user.timezone, decide)
                .await
            {
                Ok((task, position)) => {
                    if let Some(position) = position {
                        self.committed(kind().short(), position);
                    }
                    return Ok(task);
                }
                Err(StoreError::VersionConflict) => continue,
                Err(StoreError::Refused(why)) => {
                    return Err(match why.downcast::<AppError>() {
                        Ok(e) => *e,
                        Err(other) => AppError::Internal(other.to_string()),
                    });
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
        let source = source.to_owned();
        let created = Box::new(move |t: &Task| {
            CloudEvent::for_task(EventKind::TaskCreated, t, &[], &source, trace, now)
        });
        let handled = Handled {
            consumer,
            event_id: &event.id,
        };
        match self
            .tasks
            .insert_task(&task, user.timezone, created, Some(handled))
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
