//! Consumer groups over the embedded event log (the outbox table).
//!
//! A consumer group has a name and a durable offset (the last position it handled) in the
//! store. It reads the log in order (see [`crate::outbox`] for how gaps are read), hands the
//! events it wants to its [`Handler`] in batches, and moves its offset on after the handler
//! succeeded or the event was parked: delivery is at-least-once, and every handler is
//! idempotent by event id.

use std::{sync::Arc, time::Duration};

use taskflow_core::{Readiness, Role, RoleState};
use tokio::{sync::watch, time::Instant};

use super::EmbeddedBus;
use crate::{ConsumerConfig, Envelope, Handler, handler::Delivery, outbox::OutboxReader, wait};

/// The part of a role that a consumer is, in its readiness.
pub(crate) const PART: &str = crate::CONSUMER_PART;

/// One consumer group's reader of the outbox.
pub(crate) struct Consumer {
    delivery: Delivery,
    bus: EmbeddedBus,
    readiness: Readiness,
    role: Role,
}

impl Consumer {
    pub(crate) fn new(
        handler: Arc<dyn Handler>,
        bus: EmbeddedBus,
        config: ConsumerConfig,
        readiness: Readiness,
    ) -> Self {
        readiness.set(handler.role(), PART, RoleState::Starting);
        Self {
            role: handler.role(),
            delivery: Delivery {
                handler,
                config,
                store: bus.store().clone(),
            },
            bus,
            readiness,
        }
    }

    fn report(&self, state: RoleState) {
        self.readiness.set(self.role, PART, state);
    }

    /// Reads and handles events until `stop` turns true, then saves the offset.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let name = self.delivery.handler.group();
        let config = &self.delivery.config;
        let offset = loop {
            if !config.durable {
                break self.bus.head.get();
            }
            match self.bus.store().consumer_offset(name).await {
                Ok(o) => break o,
                Err(e) => {
                    self.report(RoleState::Failing(format!("cannot read offset: {e}")));
                    tracing::warn!(consumer = name, error = %e, "cannot read the consumer offset; retrying");
                    if wait(&mut stop, Duration::from_secs(1)).await {
                        return;
                    }
                }
            }
        };
        if config.durable {
            self.delivery.count_dead_letters().await;
        }
        metrics::gauge!("taskflow_consumer_lag", "consumer" => name)
            .set((self.bus.head.get() - offset).max(0) as f64);
        tracing::info!(consumer = name, offset, "consumer started");
        self.report(RoleState::Ready);
        let mut wake = self.bus.head.subscribe();
        let mut reader = OutboxReader::new(self.bus.store().clone(), offset);
        let mut saved = offset;
        let mut last_save = Instant::now();
        loop {
            if *stop.borrow() {
                break;
            }
            wake.borrow_and_update();
            let read = match reader.next(config.batch).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(consumer = name, error = %e, "cannot read the event log; retrying");
                    self.report(RoleState::Failing(format!(
                        "cannot read the event log: {e}"
                    )));
                    if wait(&mut stop, Duration::from_secs(1)).await {
                        break;
                    }
                    continue;
                }
            };
            self.report(RoleState::Ready);
            if read.pause {
                if wait(&mut stop, Duration::from_millis(5)).await {
                    break;
                }
                continue;
            }
            if !read.events.is_empty() {
                self.delivery
                    .deliver(read.events.into_iter().map(Envelope::from).collect())
                    .await;
                metrics::gauge!("taskflow_consumer_lag", "consumer" => name)
                    .set((self.bus.head.get() - reader.offset()).max(0) as f64);
            }
            let offset = reader.offset();
            if config.durable
                && offset != saved
                && (!read.more || last_save.elapsed() >= config.save_every)
            {
                self.save(offset).await;
                saved = offset;
                last_save = Instant::now();
            }
            if read.more {
                continue;
            }
            tokio::select! {
                _ = wake.changed() => {}
                _ = tokio::time::sleep(config.poll) => {}
                _ = stop.changed() => {}
            }
        }
        let offset = reader.offset();
        if config.durable && offset != saved {
            self.save(offset).await;
        }
        self.report(RoleState::Starting);
        tracing::info!(consumer = name, offset, "consumer stopped");
    }

    async fn save(&self, offset: i64) {
        let name = self.delivery.handler.group();
        if let Err(e) = self.bus.store().save_consumer_offset(name, offset).await {
            // The events since the last saved offset are delivered again after a restart.
            tracing::warn!(consumer = name, error = %e, "cannot save the consumer offset");
        }
    }
}
