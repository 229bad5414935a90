//! Housekeeping: what is removed on a schedule (hourly by default, or whenever a Dapr cron
//! binding calls): records of handled events past a week, and relayed events past the
//! outbox's retention.

use std::time::Duration;

use taskflow_core::Role;
use taskflow_store::StoreError;

use crate::App;

/// How long a record of a handled event is kept: redelivery comes within it.
pub const KEEP_HANDLED: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// What one round of housekeeping removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tidied {
    pub handled_records: u64,
    pub events: u64,
}

impl App {
    /// Removes the records of handled events older than [`KEEP_HANDLED`] and, with a
    /// retention, the events the relay published (its saved position) that are older than it.
    pub async fn tidy(&self, outbox_retention: Option<Duration>) -> Result<Tidied, StoreError> {
        let now = self.clock.now();
        let handled_records = self.store.prune_processed(now - KEEP_HANDLED).await?;
        let keep = outbox_retention.and_then(|d| chrono::TimeDelta::from_std(d).ok());
        let events = match keep {
            Some(keep) => {
                let relayed = self.store.consumer_offset(Role::Relay.name()).await?;
                if relayed > 0 {
                    self.store.prune_events(relayed, now - keep).await?
                } else {
                    0
                }
            }
            None => 0,
        };
        Ok(Tidied {
            handled_records,
            events,
        })
    }
}
