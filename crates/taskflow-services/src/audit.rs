//! The `audit` role: every event of every topic, appended to the audit log.

use async_trait::async_trait;
use std::sync::Arc;
use taskflow_bus::{Envelope, Handler, HandlerError};
use taskflow_core::Role;
use taskflow_store::Store;

/// The role this service is.
pub const ROLE: Role = Role::Audit;
/// The consumer group: its offset, handled-event records and dead letters are kept under it.
pub const NAME: &str = ROLE.name();

/// Appends events to the audit log. The log's key is the event's position and its event id
/// is unique, so a redelivered event is not written twice.
#[derive(Debug, Clone)]
pub struct Audit {
    store: Arc<dyn Store>,
}

impl Audit {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Empties the audit log and replays the event log into it, in batches. The result is
    /// identical to the log kept live. Entries of events that have left the outbox after
    /// their retention (positions before the oldest event still there) are kept as they
    /// are: they cannot be replayed.
    pub async fn rebuild(
        &self,
        mut progress: impl FnMut(i64),
    ) -> Result<Rebuilt, taskflow_store::StoreError> {
        let oldest = self.store.events_after(0, 1).await?;
        let from = oldest.first().map_or(0, |e| e.position);
        self.store.reset_audit(from).await?;
        let mut position = (from - 1).max(0);
        let mut count = 0;
        loop {
            let batch = self.store.events_after(position, 1000).await?;
            let Some(last) = batch.last() else { break };
            position = last.position;
            let events: Vec<(i64, &taskflow_core::CloudEvent)> =
                batch.iter().map(|e| (e.position, &e.event)).collect();
            self.store.append_audit(&events).await?;
            count += batch.len() as i64;
            progress(count);
        }
        Ok(Rebuilt {
            replayed: count,
            from,
        })
    }
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// Events replayed into the audit log.
    pub replayed: i64,
    /// The position of the oldest event replayed: the entries before it were kept.
    pub from: i64,
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
        self.store.append_audit(&events).await?;
        Ok(())
    }
}
