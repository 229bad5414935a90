//! The `notifier` role: fired reminders become stored notifications and
//! `notification.created` events on `task-updates`.
//!
//! At most [`PER_SECOND`] notifications per user per second: when more reminders of one user
//! fire at once, the excess is coalesced into one notification that names them all. Nothing
//! is dropped: the events are handled in order and the offset moves on only after the
//! notifications are stored.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use taskflow_app::{App, Handled, Notification, Notified};
use taskflow_bus::{Envelope, Handler, HandlerError};
use taskflow_core::{
    CloudEvent, NOTIFICATION_CREATED, NotificationData, REMINDER_TRIGGERED, ReminderData, Role,
    Timezone, Topic, UserId,
};
use uuid::Uuid;

/// The role this service is.
pub const ROLE: Role = Role::Notifier;
/// The consumer group: its offset, handled-event records and dead letters are kept under it.
pub const NAME: &str = ROLE.name();
/// The `source` of the events it produces.
pub const SOURCE: &str = ROLE.source();
/// Notifications per user per second.
pub const PER_SECOND: usize = 10;
/// Titles named in a coalesced notification before "and N more".
const NAMED: usize = 5;

/// Stores notifications for fired reminders.
#[derive(Debug, Clone)]
pub struct Notifier {
    app: App,
    /// Per user: the second (Unix) of the current window and how many were sent in it.
    sent: Arc<Mutex<HashMap<String, (i64, usize)>>>,
}

impl Notifier {
    pub fn new(app: App) -> Self {
        Self {
            app,
            sent: Arc::default(),
        }
    }

    /// How many more notifications `user` may get in the current second, taking them.
    fn take_budget(&self, user: &str, want: usize, now: DateTime<Utc>) -> usize {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        if sent.len() > 10_000 {
            let second = now.timestamp();
            sent.retain(|_, (s, _)| *s == second);
        }
        let entry = sent.entry(user.to_owned()).or_insert((now.timestamp(), 0));
        if entry.0 != now.timestamp() {
            *entry = (now.timestamp(), 0);
        }
        let granted = want.min(PER_SECOND - entry.1);
        entry.1 += granted;
        granted
    }

    async fn timezone(&self, user: &str) -> Timezone {
        let id = user.parse().map(UserId).ok();
        match id {
            Some(id) => match self.app.find_user(id).await {
                Ok(Some(u)) => u.timezone,
                _ => Timezone::default(),
            },
            None => Timezone::default(),
        }
    }

    /// The notifications of one user's fired reminders, within the user's budget.
    async fn for_user(
        &self,
        user: &str,
        reminders: Vec<ReminderData>,
    ) -> Vec<(Notification, CloudEvent)> {
        let tz = self.timezone(user).await;
        let mut out = Vec::new();
        let rest = reminders.as_slice();
        while !rest.is_empty() {
            let now = self.app.clock().now();
            // Keep one of the budget for the coalesced notice when more are waiting.
            let want = if rest.len() <= PER_SECOND {
                rest.len()
            } else {
                PER_SECOND
            };
            let granted = self.take_budget(user, want, now);
            if granted == 0 {
                let wait = 1000 - i64::from(now.timestamp_subsec_millis());
                tokio::time::sleep(Duration::from_millis(wait.max(1) as u64)).await;
                continue;
            }
            if granted >= rest.len() {
                out.extend(rest.iter().map(|r| single(r, tz, now)));
                break;
            }
            let (singles, coalesced) = rest.split_at(granted - 1);
            out.extend(singles.iter().map(|r| single(r, tz, now)));
            out.push(coalesce(user, coalesced, now));
            break;
        }
        out
    }
}

fn when(t: DateTime<Utc>, tz: Timezone) -> String {
    t.with_timezone(&tz.tz())
        .format("%a %b %-d, %-I:%M %p")
        .to_string()
}

fn single(r: &ReminderData, tz: Timezone, now: DateTime<Utc>) -> (Notification, CloudEvent) {
    let mut body = match r.due_at {
        Some(due) => format!("“{}” is due {}.", r.title, when(due, tz)),
        None => format!("Reminder: “{}”.", r.title),
    };
    if r.late {
        body.push_str(&format!(
            " This reminder was for {} and fired late, after taskflow was offline.",
            when(r.remind_at, tz)
        ));
    }
    notification(
        &r.user_id,
        Some(r.task_id.clone()),
        r.title.clone(),
        body,
        now,
    )
}

fn coalesce(user: &str, rs: &[ReminderData], now: DateTime<Utc>) -> (Notification, CloudEvent) {
    let mut names: Vec<String> = rs
        .iter()
        .take(NAMED)
        .map(|r| format!("“{}”", r.title))
        .collect();
    if rs.len() > NAMED {
        names.push(format!("and {} more", rs.len() - NAMED));
    }
    let title = format!("{} reminders", rs.len());
    let body = format!("Reminders for {}.", names.join(", "));
    notification(user, None, title, body, now)
}

fn notification(
    user: &str,
    task_id: Option<String>,
    title: String,
    body: String,
    now: DateTime<Utc>,
) -> (Notification, CloudEvent) {
    let n = Notification {
        id: Uuid::now_v7().to_string(),
        user_id: user.to_owned(),
        task_id,
        title,
        body,
        created_at: now,
        read_at: None,
    };
    let data = NotificationData {
        notification_id: n.id.clone(),
        task_id: n.task_id.clone(),
        title: n.title.clone(),
        body: n.body.clone(),
        user_id: n.user_id.clone(),
        created_at: now,
    };
    let ev = CloudEvent::new(
        NOTIFICATION_CREATED,
        SOURCE,
        user.parse().map(UserId).unwrap_or_default(),
        n.task_id.clone(),
        None,
        now,
        serde_json::to_value(data).unwrap_or_default(),
    );
    (n, ev)
}

#[async_trait]
impl Handler for Notifier {
    fn role(&self) -> Role {
        ROLE
    }

    fn topics(&self) -> &'static [Topic] {
        &[Topic::Reminders]
    }

    fn wants(&self, e: &Envelope) -> bool {
        e.event.ty == REMINDER_TRIGGERED
    }

    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        let ids: Vec<String> = events.iter().map(|e| e.event.id.clone()).collect();
        let done = self.app.handled(NAME, &ids).await?;
        let mut users: Vec<String> = Vec::new();
        let mut by_user: HashMap<String, Vec<ReminderData>> = HashMap::new();
        let mut handled = Vec::new();
        for e in events.iter().filter(|e| !done.contains(&e.event.id)) {
            let data: ReminderData =
                serde_json::from_value(e.event.data.clone()).map_err(|err| {
                    HandlerError(format!("malformed reminder event {}: {err}", e.event.id))
                })?;
            if !by_user.contains_key(&data.user_id) {
                users.push(data.user_id.clone());
            }
            by_user.entry(data.user_id.clone()).or_default().push(data);
            handled.push(Handled {
                consumer: NAME,
                event_id: &e.event.id,
            });
        }
        if handled.is_empty() {
            return Ok(());
        }
        let mut items = Vec::new();
        for user in users {
            let reminders = by_user.remove(&user).unwrap_or_default();
            items.extend(self.for_user(&user, reminders).await);
        }
        match self.app.notify(&items, &handled).await? {
            Notified::Stored(_) => {
                metrics::counter!("taskflow_notifications_total").increment(items.len() as u64);
                Ok(())
            }
            // Another instance handled one of them first: try again, without those.
            Notified::HandledElsewhere => {
                Err(HandlerError("handled concurrently; retrying".into()))
            }
        }
    }
}
