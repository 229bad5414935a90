//! Event transport. On the embedded default the outbox table is the event log: every use
//! case appends its event in the same transaction as its change, and [`EmbeddedBus`] tells
//! in-process readers, within microseconds, that the log grew.

mod consumer;

use std::sync::Arc;

use taskflow_core::{CloudEvent, Topic};
use taskflow_store::{Result, Store, StoredEvent};
use tokio::sync::watch;

pub use consumer::{Consumer, ConsumerConfig, Handler, HandlerError};

/// An event in flight, as every transport hands it to a consumer: the CloudEvent, its topic,
/// and its position in the outbox. The position is the one the outbox gave it, whatever the
/// transport (on a broker it travels with the event), so SSE ids and `Last-Event-ID` mean the
/// same everywhere.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub position: i64,
    pub topic: Topic,
    pub event: CloudEvent,
}

impl From<StoredEvent> for Envelope {
    fn from(e: StoredEvent) -> Self {
        Self {
            position: e.position,
            topic: e.topic,
            event: e.event,
        }
    }
}

/// The embedded event log and its wake-ups.
#[derive(Clone)]
pub struct EmbeddedBus {
    log: Arc<dyn Store>,
    head: watch::Sender<i64>,
}

impl std::fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBus")
            .field("head", &*self.head.borrow())
            .finish()
    }
}

impl EmbeddedBus {
    /// A bus over `log`, starting from its current head.
    pub async fn open(log: Arc<dyn Store>) -> Result<Self> {
        let head = log.last_position().await?;
        Ok(Self {
            log,
            head: watch::Sender::new(head),
        })
    }

    /// Tells readers that events up to `position` are committed.
    pub fn committed(&self, position: i64) {
        self.head.send_if_modified(|h| {
            if position > *h {
                *h = position;
                true
            } else {
                false
            }
        });
    }

    /// The newest committed position this process knows of.
    pub fn head(&self) -> i64 {
        *self.head.borrow()
    }

    /// A receiver that wakes when the head moves.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.head.subscribe()
    }

    /// The store the log lives in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.log
    }
}
