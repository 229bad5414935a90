//! The `reminders` role: durable timers.
//!
//! The reminders table is the truth: a task's reminders are written with the task, so
//! completing or deleting it cancels them and changing its due time reschedules them in the
//! same transaction. The [`Scheduler`] keeps a single timer in memory, for the earliest
//! pending reminder (an index lookup), however many are pending; task events only wake it
//! when a reminder earlier than its timer appears. At its time it claims every due reminder
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer on SQLite), marks it fired and
//! appends `reminder.triggered` in one transaction, so two instances never fire the same
//! reminder. On start it fires what came due while it was down, marked late.
//!
//! With Dapr Jobs as the timers ([`crate::jobs`]), each reminder is a job of the sidecar's
//! scheduler that triggers [`Scheduler::tick`] at its time, and the scheduler only sweeps the
//! table every [`MAX_SLEEP`] (and at start), for jobs lost or missed.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use taskflow_app::{App, AppError, DueReminder};
use taskflow_bus::{Envelope, Handler, HandlerError};
use taskflow_core::{
    CloudEvent, EventKind, REMINDER_TRIGGERED, Readiness, ReminderData, Role, RoleState, Topic,
    UserId,
};

use crate::DaprJobs;
use tokio::sync::{Notify, watch};

/// The role this service is.
pub const ROLE: Role = Role::Reminders;
/// The consumer group: its offset, handled-event records and dead letters are kept under it.
pub const NAME: &str = ROLE.name();
/// The `source` of the events it produces.
pub const SOURCE: &str = ROLE.source();
/// A reminder fired more than this after its time is marked late.
pub const LATE_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(2);
/// How many due reminders one transaction claims.
const CLAIM_BATCH: i64 = 500;
/// The longest the scheduler sleeps without looking at the table (reminders written by other
/// processes, clock changes).
pub const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Fires due reminders at their time.
#[derive(Debug)]
pub struct Scheduler {
    app: App,
    wake: Notify,
    /// The instant (µs) the timer is set for; `i64::MAX` when none is pending.
    timer: AtomicI64,
    /// Timers are kept elsewhere (Dapr Jobs): only sweep the table now and then.
    sweep_only: bool,
}

impl Scheduler {
    pub fn new(app: App) -> Arc<Self> {
        Self::with_timers(app, false)
    }

    /// A scheduler whose timers are kept elsewhere (`sweep_only`): it fires what is due at
    /// start and every [`MAX_SLEEP`], and when [`Scheduler::tick`] is called.
    pub fn with_timers(app: App, sweep_only: bool) -> Arc<Self> {
        Arc::new(Self {
            app,
            wake: Notify::new(),
            timer: AtomicI64::new(i64::MAX),
            sweep_only,
        })
    }

    /// Makes the scheduler look at the table again if `fire_at` is before its timer.
    pub fn reminder_at(&self, fire_at: DateTime<Utc>) {
        if !self.sweep_only && fire_at.timestamp_micros() < self.timer.load(Ordering::Acquire) {
            self.wake.notify_one();
        }
    }

    /// Fires every reminder due now (counted in `taskflow_reminders_fired_total`, whoever
    /// calls: the scheduler's timer or a job's trigger); returns how many fired.
    pub async fn tick(&self) -> Result<usize, AppError> {
        let mut total = 0;
        loop {
            let now = self.app.clock().now();
            let make = |r: &DueReminder| reminder_event(r, now);
            let fired = self.app.fire_due_reminders(now, CLAIM_BATCH, &make).await?;
            if fired.is_empty() {
                return Ok(total);
            }
            for r in &fired {
                let late = (now - r.fire_at).num_milliseconds().max(0);
                metrics::histogram!("taskflow_reminder_lateness_seconds")
                    .record(late as f64 / 1000.0);
                tracing::info!(reminder_id = %r.id, task_id = %r.task_id, late_by_ms = late, "reminder fired");
            }
            total += fired.len();
            metrics::counter!("taskflow_reminders_fired_total").increment(fired.len() as u64);
            if (fired.len() as i64) < CLAIM_BATCH {
                return Ok(total);
            }
        }
    }

    /// Fires reminders on time until `stop` turns true.
    pub async fn run(self: Arc<Self>, readiness: Readiness, mut stop: watch::Receiver<bool>) {
        readiness.set(ROLE, "timers", RoleState::Starting);
        loop {
            if *stop.borrow() {
                break;
            }
            // While looking, any new reminder counts as earlier: it leaves a wake-up permit,
            // so the sleep below cannot miss it.
            self.timer.store(i64::MAX, Ordering::Release);
            let sleep = match self.fire_and_plan().await {
                Ok(sleep) => {
                    readiness.set(ROLE, "timers", RoleState::Ready);
                    sleep
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reminder scheduler cannot reach the store; retrying");
                    readiness.set(ROLE, "timers", RoleState::Failing(e.to_string()));
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
                _ = stop.changed() => {}
            }
        }
        tracing::info!("reminder scheduler stopped");
    }

    /// Fires what is due and returns how long to sleep until the next one.
    async fn fire_and_plan(&self) -> Result<Duration, AppError> {
        self.tick().await?;
        if self.sweep_only {
            return Ok(MAX_SLEEP);
        }
        let next = self.app.next_reminder_at().await?;
        let now = self.app.clock().now();
        self.timer.store(
            next.map_or(i64::MAX, |t| t.timestamp_micros()),
            Ordering::Release,
        );
        Ok(match next {
            Some(t) if t <= now => Duration::ZERO,
            Some(t) => (t - now).to_std().unwrap_or(Duration::ZERO).min(MAX_SLEEP),
            None => MAX_SLEEP,
        })
    }
}

fn reminder_event(r: &DueReminder, now: DateTime<Utc>) -> CloudEvent {
    let late_by = (now - r.fire_at).max(chrono::TimeDelta::zero());
    let data = ReminderData {
        reminder_id: r.id.clone(),
        task_id: r.task_id.clone(),
        task_number: r.task_number,
        title: r.title.clone(),
        due_at: r.due_at,
        remind_at: r.fire_at,
        user_id: r.user_id.clone(),
        late_by_ms: late_by.num_milliseconds(),
        late: late_by > LATE_AFTER,
    };
    let user = r.user_id.parse().map(UserId).unwrap_or_default();
    CloudEvent::new(
        REMINDER_TRIGGERED,
        SOURCE,
        user,
        Some(r.task_id.clone()),
        None,
        now,
        serde_json::to_value(data).unwrap_or_default(),
    )
}

/// Watches task events for reminders earlier than the scheduler's timer, or keeps their
/// jobs, with Dapr Jobs as the timers.
#[derive(Debug, Clone)]
pub struct ReminderHandler {
    scheduler: Arc<Scheduler>,
    jobs: Option<DaprJobs>,
}

impl ReminderHandler {
    pub fn new(scheduler: Arc<Scheduler>) -> Self {
        Self {
            scheduler,
            jobs: None,
        }
    }

    /// A handler that keeps a Dapr job per pending reminder.
    pub fn with_jobs(scheduler: Arc<Scheduler>, jobs: DaprJobs) -> Self {
        Self {
            scheduler,
            jobs: Some(jobs),
        }
    }
}

#[async_trait]
impl Handler for ReminderHandler {
    fn role(&self) -> Role {
        ROLE
    }

    fn topics(&self) -> &'static [Topic] {
        &[Topic::TaskEvents]
    }

    fn wants(&self, e: &Envelope) -> bool {
        e.topic == Topic::TaskEvents
    }

    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        for e in events {
            let deleted = e.event.task_kind() == Some(EventKind::TaskDeleted);
            let task_id = e.event.subject.as_deref().unwrap_or_default();
            let reminders = e.event.data["task_data"]["reminders"].as_array();
            for r in reminders.into_iter().flatten() {
                let at: Option<DateTime<Utc>> = r["fire_at"].as_str().and_then(|s| s.parse().ok());
                let pending = r["status"] == "pending" && !deleted;
                if let (true, Some(at)) = (pending, at) {
                    self.scheduler.reminder_at(at);
                }
                let (Some(jobs), Some(id)) = (&self.jobs, r["id"].as_str()) else {
                    continue;
                };
                // A job that outlives its reminder fires nothing: cancelling is tidiness.
                match (pending, at) {
                    (true, Some(at)) => jobs.set(id, task_id, at).await?,
                    _ => jobs.cancel(id).await?,
                }
            }
        }
        Ok(())
    }
}
