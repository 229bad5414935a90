//! Events: CloudEvents 1.0 in structured JSON mode, one per change.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{task::Task, user::UserId};

/// The bus topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    TaskEvents,
    Reminders,
    TaskUpdates,
}

impl Topic {
    pub const ALL: [Topic; 3] = [Topic::TaskEvents, Topic::Reminders, Topic::TaskUpdates];

    /// The topic named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::TaskEvents => "task-events",
            Topic::Reminders => "reminders",
            Topic::TaskUpdates => "task-updates",
        }
    }
}

/// What happened to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    TaskCreated,
    TaskUpdated,
    TaskCompleted,
    TaskReopened,
    TaskDeleted,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::TaskCreated,
        EventKind::TaskUpdated,
        EventKind::TaskCompleted,
        EventKind::TaskReopened,
        EventKind::TaskDeleted,
    ];

    /// The short name in `data.event_type`.
    pub fn short(self) -> &'static str {
        match self {
            EventKind::TaskCreated => "created",
            EventKind::TaskUpdated => "updated",
            EventKind::TaskCompleted => "completed",
            EventKind::TaskReopened => "reopened",
            EventKind::TaskDeleted => "deleted",
        }
    }

    /// The CloudEvent `type`, which carries the version.
    pub fn cloud_type(self) -> &'static str {
        match self {
            EventKind::TaskCreated => "com.taskflow.task.created.v1",
            EventKind::TaskUpdated => "com.taskflow.task.updated.v1",
            EventKind::TaskCompleted => "com.taskflow.task.completed.v1",
            EventKind::TaskReopened => "com.taskflow.task.reopened.v1",
            EventKind::TaskDeleted => "com.taskflow.task.deleted.v1",
        }
    }

    pub fn topic(self) -> Topic {
        Topic::TaskEvents
    }
}

/// A CloudEvent 1.0 envelope (structured JSON mode) with the `userid` and `traceparent`
/// extensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<String>,
    pub time: DateTime<Utc>,
    pub datacontenttype: String,
    pub userid: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub traceparent: Option<String>,
    pub data: serde_json::Value,
}

/// The `data` of a task event; field names follow what this kind of system already uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEventData {
    pub event_type: String,
    pub task_id: String,
    pub task_number: i64,
    pub task_data: serde_json::Value,
    pub changed: Vec<String>,
    pub user_id: String,
    pub timestamp: DateTime<Utc>,
}

impl CloudEvent {
    /// The event of a change to `task` (the task as it is after the change).
    pub fn for_task(
        kind: EventKind,
        task: &Task,
        changed: &[&str],
        source: &str,
        traceparent: Option<String>,
        now: DateTime<Utc>,
    ) -> Self {
        let data = TaskEventData {
            event_type: kind.short().to_owned(),
            task_id: task.id.to_string(),
            task_number: task.number,
            task_data: task.to_json(),
            changed: changed.iter().map(|s| (*s).to_owned()).collect(),
            user_id: task.user_id.to_string(),
            timestamp: now,
        };
        Self::new(
            kind.cloud_type(),
            source,
            task.user_id,
            Some(task.id.to_string()),
            traceparent,
            now,
            serde_json::to_value(data).unwrap_or(serde_json::Value::Null),
        )
    }

    /// An event of `ty` with a fresh (time-ordered) id.
    pub fn new(
        ty: &str,
        source: &str,
        user: UserId,
        subject: Option<String>,
        traceparent: Option<String>,
        time: DateTime<Utc>,
        data: serde_json::Value,
    ) -> Self {
        Self {
            specversion: "1.0".into(),
            id: Uuid::now_v7().to_string(),
            source: source.into(),
            ty: ty.into(),
            subject,
            time,
            datacontenttype: "application/json".into(),
            userid: user.to_string(),
            traceparent,
            data,
        }
    }

    /// The topic this event belongs on, from its type.
    pub fn topic(&self) -> Topic {
        if self.ty.starts_with("com.taskflow.reminder.") {
            Topic::Reminders
        } else if self.ty.starts_with("com.taskflow.notification.") {
            Topic::TaskUpdates
        } else {
            Topic::TaskEvents
        }
    }

    /// The task event's kind, when this is one.
    pub fn task_kind(&self) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.cloud_type() == self.ty)
    }

    pub fn user_id(&self) -> Option<UserId> {
        self.userid.parse().ok().map(UserId)
    }
}

/// `com.taskflow.reminder.triggered.v1`: a reminder came due.
pub const REMINDER_TRIGGERED: &str = "com.taskflow.reminder.triggered.v1";
/// `com.taskflow.notification.created.v1`: a notification was stored for the user.
pub const NOTIFICATION_CREATED: &str = "com.taskflow.notification.created.v1";

/// The `data` of `reminder.triggered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReminderData {
    pub reminder_id: String,
    pub task_id: String,
    pub task_number: i64,
    pub title: String,
    pub due_at: Option<DateTime<Utc>>,
    pub remind_at: DateTime<Utc>,
    pub user_id: String,
    /// How long after `remind_at` it fired.
    pub late_by_ms: i64,
    /// Fired more than 2 s after `remind_at`: the service was down (or stalled) at its time.
    pub late: bool,
}

/// The `data` of `notification.created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationData {
    pub notification_id: String,
    pub task_id: Option<String>,
    pub title: String,
    pub body: String,
    pub user_id: String,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{task::TaskDraft, task::TaskTitle, user::Timezone};

    #[test]
    fn a_task_event_carries_type_subject_user_and_task_data() {
        let now = Utc::now();
        let user = UserId::new();
        let draft = TaskDraft {
            title: Some(TaskTitle::parse("Pay rent").expect("valid")),
            ..TaskDraft::default()
        };
        let mut task = Task::create(user, draft, Timezone::default(), now).expect("valid");
        task.number = 7;
        let ev = CloudEvent::for_task(EventKind::TaskCreated, &task, &[], "api", None, now);
        let json = serde_json::to_value(&ev).expect("serialises");
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["type"], "com.taskflow.task.created.v1");
        assert_eq!(json["subject"], task.id.to_string());
        assert_eq!(json["userid"], user.to_string());
        assert_eq!(json["data"]["event_type"], "created");
        assert_eq!(json["data"]["task_number"], 7);
        assert_eq!(json["data"]["task_data"]["title"], "Pay rent");
        assert!(json.get("traceparent").is_none());
    }

    #[test]
    fn every_kind_has_a_versioned_type_on_the_task_events_topic() {
        for k in EventKind::ALL {
            assert!(k.cloud_type().ends_with(".v1"));
            assert!(k.cloud_type().contains(k.short()));
            assert_eq!(k.topic().as_str(), "task-events");
        }
    }
}
