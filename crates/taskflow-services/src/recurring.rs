//! The `recurring` role: on `task.completed` of a recurring task, the next occurrence.

use async_trait::async_trait;
use taskflow_app::App;
use taskflow_bus::{Envelope, Handler, HandlerError, event_span};
use taskflow_core::{EventKind, Role, Topic};
use tracing::Instrument as _;

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
            let span = event_span(NAME, e);
            let created = self
                .app
                .create_next_occurrence(&e.event, NAME, SOURCE)
                .instrument(span.clone())
                .await?;
            if let Some(task) = created {
                span.in_scope(|| {
                    tracing::info!(user_id = %task.user_id, task_id = %task.id, number = task.number,
                        occurrence = task.occurrence, "created the next occurrence");
                });
            }
        }
        Ok(())
    }
}
