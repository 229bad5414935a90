//! The `recurring` role: on `task.completed` of a recurring task, the next occurrence.

use async_trait::async_trait;
use taskflow_app::App;
use taskflow_bus::{Envelope, Handler, HandlerError};
use taskflow_core::{EventKind, Role, Topic, trace::trace_id_of};

/// The role this service is.
pub const ROLE: Role = Role::Recurring;
/// The consumer group: its offset, handled-event records and dead letters are kept under it.
pub const NAME: &str = ROLE.name();
/// The `source` of the events it produces.
pub const SOURCE: &str = ROLE.source();

/// Creates next occurrences through [`App::create_next_occurrence`], exactly once each.
#[derive(Debug, Clone)]
pub struct Recurring {
    app: App,
}

impl Recurring {
    pub fn new(app: App) -> Self {
        Self { app }
    }
}

#[async_trait]
impl Handler for Recurring {
    fn role(&self) -> Role {
        ROLE
    }

    fn topics(&self) -> &'static [Topic] {
        &[Topic::TaskEvents]
    }

    fn wants(&self, e: &Envelope) -> bool {
        e.topic == Topic::TaskEvents && e.event.task_kind() == Some(EventKind::TaskCompleted)
    }

    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        for e in events {
            let created = self
                .app
                .create_next_occurrence(&e.event, NAME, SOURCE)
                .await?;
            if let Some(task) = created {
                // The delivery's span for this event is not entered (it spans the batch's
                // call), so the line names the event and its trace itself.
                tracing::info!(consumer = NAME, event_id = %e.event.id,
                    trace_id = %trace_id_of(e.event.traceparent.as_deref()),
                    user_id = %task.user_id, task_id = %task.id, number = task.number,
                    occurrence = task.occurrence, "created the next occurrence");
            }
        }
        Ok(())
    }
}
