//! What a consumer group is, whatever the transport: a [`Handler`] and its [`ConsumerConfig`].

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use taskflow_core::{Role, Topic, trace::Traceparent};
use taskflow_store::Store;
use tracing::Instrument as _;

use crate::Envelope;

/// Why a handler failed; the message goes to the logs and the dead-letter table.
#[derive(Debug)]
pub struct HandlerError(pub String);

impl<E: std::fmt::Display> From<E> for HandlerError {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

/// The span one event is handled in: the consumer's log lines about it name the event and
/// its trace (the `traceparent` the request that caused it sent, or began). The span is a
/// child of the event's `traceparent`, so an exported trace shows every consumer's handling
/// under the request that caused it.
pub fn event_span(consumer: &str, event: &Envelope) -> tracing::Span {
    let e = &event.event;
    let parent = e.traceparent.as_deref().and_then(Traceparent::parse);
    let this = parent.as_ref().map(Traceparent::child);
    let id = |t: Option<&Traceparent>, f: fn(&Traceparent) -> &str| t.map_or("", f).to_owned();
    tracing::info_span!("event", consumer, event_id = %e.id, event_type = %e.ty,
        trace_id = id(this.as_ref(), Traceparent::trace_id),
        span_id = id(this.as_ref(), Traceparent::span_id),
        parent_id = id(parent.as_ref(), Traceparent::span_id),
        sampled = this.as_ref().is_some_and(Traceparent::sampled),
        error = tracing::field::Empty)
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
    /// The topics the group reads; by default all of them.
    fn topics(&self) -> &'static [Topic] {
        &Topic::ALL
    }
    /// Whether the group wants this event (of one of its topics); others pass by without a
    /// call.
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

/// Hands events to a group's handler, the same way on every transport: a batch at once; on
/// failure each event alone, retried with backoff, and parked in the dead-letter table after
/// its last try, so one bad event does not hold back the others.
pub(crate) struct Delivery {
    pub handler: Arc<dyn Handler>,
    pub config: ConsumerConfig,
    /// Where dead letters are parked.
    pub store: Arc<dyn Store>,
}

impl Delivery {
    /// Sets the group's dead-letter gauge from the store, as the group starts.
    pub(crate) async fn count_dead_letters(&self) {
        let name = self.handler.group();
        let parked = match self.store.count_dead_letters(name).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(consumer = name, error = %e, "cannot count dead letters; reporting 0 until one is parked");
                0
            }
        };
        metrics::gauge!("taskflow_dead_letters", "consumer" => name).set(parked as f64);
    }

    /// Returns when every event was handled or parked.
    pub(crate) async fn deliver(&self, events: Vec<Envelope>) {
        let wanted: Vec<Envelope> = events
            .into_iter()
            .filter(|e| self.handler.topics().contains(&e.topic) && self.handler.wants(e))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let name = self.handler.group();
        // A span per event for the batch's one call (not entered: a call serves them all).
        let spans: Vec<tracing::Span> = wanted.iter().map(|e| event_span(name, e)).collect();
        match self.handler.handle(&wanted).await {
            Ok(()) => {
                metrics::counter!("taskflow_events_handled_total", "consumer" => name)
                    .increment(wanted.len() as u64);
                return;
            }
            Err(e) => {
                for span in &spans {
                    span.record("error", format!("the batch failed: {}", e.0));
                }
            }
        }
        drop(spans);
        for event in &wanted {
            self.deliver_one(event)
                .instrument(event_span(name, event))
                .await;
        }
    }

    /// Parks `event` as a dead letter after its last try failed with `error`; whether the
    /// store took it.
    pub(crate) async fn park(&self, event: &Envelope, error: &str, attempts: u32) -> bool {
        let name = self.handler.group();
        tracing::error!(consumer = name, position = event.position, event_id = %event.event.id,
            attempts, error, "giving up on an event: parked as a dead letter");
        match self
            .store
            .dead_letter(name, event.position, &event.event, error, attempts)
            .await
        {
            Ok(()) => {
                metrics::gauge!("taskflow_dead_letters", "consumer" => name).increment(1.0);
                true
            }
            Err(e) => {
                tracing::error!(consumer = name, error = %e, "cannot park the dead letter");
                false
            }
        }
    }

    async fn deliver_one(&self, event: &Envelope) {
        let name = self.handler.group();
        let mut delay = self.config.backoff;
        let mut attempt = 1;
        loop {
            match self.handler.handle(std::slice::from_ref(event)).await {
                Ok(()) => {
                    metrics::counter!("taskflow_events_handled_total", "consumer" => name)
                        .increment(1);
                    return;
                }
                Err(e) if attempt >= self.config.max_attempts => {
                    tracing::Span::current().record("error", e.0.as_str());
                    self.park(event, &e.0, attempt).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(consumer = name, position = event.position, attempt, error = %e.0,
                        "handler failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
            }
        }
    }
}
