//! Event transport: how committed events reach the consumer groups of every role.
//!
//! Every use case appends its event to the outbox table in the same transaction as its change.
//! A [`Transport`] delivers those events to consumer groups ([`Handler`]s) as [`Envelope`]s.
//! The embedded transport ([`embedded::EmbeddedBus`], the default) reads the outbox itself:
//! the outbox is the log, and in-process readers hear of each commit within microseconds.
//! On a broker ([`kafka::KafkaBus`], [`dapr::DaprBus`]) the `relay` role publishes the outbox
//! and each role reads it in a consumer group of its own.

pub mod dapr;
pub mod embedded;
mod handler;
#[cfg(feature = "kafka")]
pub mod kafka;
mod outbox;
mod relay;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use taskflow_core::{CloudEvent, Readiness, Topic};
use taskflow_store::StoredEvent;
use tokio::sync::watch;

pub use embedded::EmbeddedBus;
/// The readiness part a consumer group reports as (on every transport).
pub const CONSUMER_PART: &str = "consumer";
/// The readiness part the outbox relay reports as.
pub const RELAY_PART: &str = "relay";
pub use handler::{ConsumerConfig, Handler, HandlerError, event_span};

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

/// A way for committed events to reach consumer groups. How a transport finds the events
/// (the outbox itself, or a broker a relay publishes to) and keeps each group's place is its
/// own business; what a handler sees is the same on every one: envelopes in outbox order per
/// user, at least once, each event retried with backoff and parked after its last try.
#[async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// The transport's name, as `--bus` spells it.
    fn name(&self) -> &'static str;
    /// Runs `handler`'s consumer group until `stop` turns true, saving its place on the way
    /// out; reports the group's state into `readiness` under the handler's role.
    async fn consume(
        &self,
        handler: Arc<dyn Handler>,
        config: ConsumerConfig,
        readiness: Readiness,
        stop: watch::Receiver<bool>,
    );
    /// Tells the transport of a group this process runs, before the process serves HTTP: a
    /// transport whose events are pushed to the process (Dapr) lists it to the sidecar,
    /// which asks once, as the process starts. [`Transport::consume`] registers it too.
    fn register(&self, _handler: &Arc<dyn Handler>, _config: &ConsumerConfig) {}
    /// Where a transport that pushes events to this process delivers them: the routes the
    /// HTTP server adds.
    fn inbox(&self) -> Option<Arc<dapr::Inbox>> {
        None
    }
    /// Moves committed outbox events onto the transport until `stop` turns true (the
    /// `relay` role), where it needs that; the embedded log is the outbox and needs none.
    async fn relay(&self, readiness: Readiness, mut stop: watch::Receiver<bool>) {
        readiness.set(
            taskflow_core::Role::Relay,
            "relay",
            taskflow_core::RoleState::Ready,
        );
        let _ = stop.wait_for(|s| *s).await;
    }
    /// Tells the transport that events up to `position` are committed to the outbox.
    fn committed(&self, position: i64);
    /// The newest outbox position this process knows of.
    fn head(&self) -> i64;
}

/// Sleeps for `d`; true when `stop` turned true meanwhile.
pub(crate) async fn wait(stop: &mut watch::Receiver<bool>, d: std::time::Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.changed() => {}
    }
    *stop.borrow()
}

/// The newest committed outbox position this process knows of, and its wake-ups.
#[derive(Debug, Clone)]
pub(crate) struct Head(watch::Sender<i64>);

impl Head {
    pub(crate) fn new(position: i64) -> Self {
        Self(watch::Sender::new(position))
    }

    /// Moves the head to `position` if that is newer, waking the subscribers.
    pub(crate) fn advance(&self, position: i64) {
        self.0.send_if_modified(|h| {
            if position > *h {
                *h = position;
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn get(&self) -> i64 {
        *self.0.borrow()
    }

    /// A receiver that wakes when the head moves.
    pub(crate) fn subscribe(&self) -> watch::Receiver<i64> {
        self.0.subscribe()
    }
}
