//! What a consumer group is, whatever the transport: a [`Handler`] and its [`ConsumerConfig`].

use std::time::Duration;

use async_trait::async_trait;
use taskflow_core::Role;

use crate::Envelope;

/// Why a handler failed; the message goes to the logs and the dead-letter table.
#[derive(Debug)]
pub struct HandlerError(pub String);

impl<E: std::fmt::Display> From<E> for HandlerError {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

/// What a consumer group does with events.
#[async_trait]
pub trait Handler: Send + Sync {
    /// The role the group belongs to.
    fn role(&self) -> Role;
    /// The group's name: its offset and dead letters are kept under it. The role's name.
    fn group(&self) -> &'static str {
        self.role().name()
    }
    /// Whether the group wants this event; others pass by without a call.
    fn wants(&self, event: &Envelope) -> bool;
    /// Handles events in log order. Must be idempotent: after a crash, events since the last
    /// saved offset are delivered again.
    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError>;
}

/// How a consumer reads, retries and saves its place.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub batch: i64,
    /// Tries of one event before it is parked as a dead letter.
    pub max_attempts: u32,
    /// The wait before the second try; doubled for each further one.
    pub backoff: Duration,
    /// How often the log is read when no in-process wake-up comes (writes by other processes).
    pub poll: Duration,
    /// How often the offset is written while events flow (always on stop and when idle).
    pub save_every: Duration,
    /// A durable group resumes from its saved offset; a volatile one (live fan-out) starts
    /// at the head of the log and keeps its place in memory only.
    pub durable: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            max_attempts: 5,
            backoff: Duration::from_millis(100),
            poll: Duration::from_millis(250),
            save_every: Duration::from_millis(200),
            durable: true,
        }
    }
}
