//! The `audit` role: every event of every topic, appended to the audit log.

use async_trait::async_trait;
use taskflow_app::App;
use taskflow_bus::{Envelope, Handler, HandlerError};
use taskflow_core::Role;

/// The role this service is.
pub const ROLE: Role = Role::Audit;
/// The consumer group: its offset, handled-event records and dead letters are kept under it.
pub const NAME: &str = ROLE.name();

/// Appends events to the audit log. The log's key is the event's position and its event id
/// is unique, so a redelivered event is not written twice.
#[derive(Debug, Clone)]
pub struct Audit {
    app: App,
}

impl Audit {
    pub fn new(app: App) -> Self {
        Self { app }
    }
}

#[async_trait]
impl Handler for Audit {
    fn role(&self) -> Role {
        ROLE
    }

    fn wants(&self, _: &Envelope) -> bool {
        true
    }

    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        let events: Vec<(i64, &taskflow_core::CloudEvent)> =
            events.iter().map(|e| (e.position, &e.event)).collect();
        self.app.record_history(&events).await?;
        Ok(())
    }
}
