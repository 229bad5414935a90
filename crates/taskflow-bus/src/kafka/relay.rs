//! The relay's publisher for Kafka: an idempotent producer, sends pipelined, every event
//! with its user id as the key (one user's events stay in order) and its CloudEvent in
//! structured mode.

use std::time::Duration;

use async_trait::async_trait;
use rdkafka::{
    error::KafkaError,
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
};
use taskflow_core::{Readiness, Role, RoleState};
use taskflow_store::StoredEvent;
use tokio::sync::watch;

use super::{KafkaBus, KafkaSettings, Logged};
use crate::{
    relay::{Publisher, Relay, Round},
    wire,
};

pub(super) async fn run(bus: &KafkaBus, readiness: Readiness, stop: watch::Receiver<bool>) {
    readiness.set(Role::Relay, crate::RELAY_PART, RoleState::Starting);
    let producer = match producer(&bus.settings) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot create the Kafka producer; the relay does not run");
            readiness.set(
                Role::Relay,
                crate::RELAY_PART,
                RoleState::Failing(format!("cannot create the producer: {e}")),
            );
            return;
        }
    };
    let relay = Relay {
        store: bus.store.clone(),
        head: bus.head.clone(),
        instance: bus.instance.clone(),
        retention: bus.settings.outbox_retention,
    };
    let publisher = Kafka {
        producer,
        settings: bus.settings.clone(),
    };
    relay.run(publisher, readiness, stop).await;
}

struct Kafka {
    producer: FutureProducer<Logged>,
    settings: std::sync::Arc<KafkaSettings>,
}

#[async_trait]
impl Publisher for Kafka {
    async fn publish(&mut self, events: &[StoredEvent]) -> Round {
        publish(&self.producer, &self.settings, events).await
    }

    /// An idempotent producer whose messages timed out (the brokers unreachable for longer
    /// than `message.timeout.ms`) must renew its producer epoch, and a broker that refuses
    /// that leaves it fenced for good: a fresh producer starts a clean sequence.
    fn failed(&mut self) {
        match producer(&self.settings) {
            Ok(fresh) => self.producer = fresh,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the Kafka producer; keeping the old one")
            }
        }
    }
}

/// An idempotent producer that waits for every in-sync replica.
fn producer(settings: &KafkaSettings) -> rdkafka::error::KafkaResult<FutureProducer<Logged>> {
    settings
        .client()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create_with_context(Logged)
}

/// Whether the brokers refuse this one message for good (it would fail the same way on every
/// try), rather than failing for now.
fn refused_for_good(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

/// Sends every event, then waits for all acknowledgements (pipelined, not one at a time).
async fn publish(
    producer: &FutureProducer<Logged>,
    settings: &KafkaSettings,
    events: &[StoredEvent],
) -> Round {
    let mut pending = Vec::with_capacity(events.len());
    let mut refused = Vec::new();
    // The first event that failed for now, and why: it and those after it go again.
    let mut failed: Option<(usize, String)> = None;
    'events: for (i, e) in events.iter().enumerate() {
        let payload = wire::encode(e);
        let headers = OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some(wire::CONTENT_TYPE),
        });
        let topic = settings.topic(e.topic);
        let mut record = FutureRecord::to(&topic)
            .key(e.event.userid.as_str())
            .payload(&payload)
            .headers(headers);
        // A full local queue: wait for what is in flight, then try the same record again.
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push((i, delivery));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) if refused_for_good(&e) => {
                    refused.push((i, e.to_string()));
                    break;
                }
                Err((e, _)) => {
                    failed = Some((i, e.to_string()));
                    break 'events;
                }
            }
        }
    }
    for (i, delivery) in pending {
        let error = match delivery.await {
            Ok(Ok(_)) => continue,
            Ok(Err((e, _))) if refused_for_good(&e) => {
                refused.push((i, e.to_string()));
                continue;
            }
            Ok(Err((e, _))) => e.to_string(),
            Err(_) => "the producer was closed".to_owned(),
        };
        if failed.as_ref().is_none_or(|(f, _)| i < *f) {
            failed = Some((i, error));
        }
    }
    Round::settle(events.len(), failed, refused)
}
