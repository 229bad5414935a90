//! Consumer groups over the embedded event log (the outbox table).
//!
//! A consumer group has a name and a durable offset (the last position it handled) in the
//! store. It reads the log in order, hands the events it wants to its [`Handler`] in batches,
//! and moves its offset on after the handler succeeded: delivery is at-least-once, and every
//! handler is idempotent by event id. A handler that keeps failing on an event gets it retried
//! with backoff, then the event is parked in the dead-letter table with the error and the
//! group moves on.
//!
//! Positions are contiguous except where a transaction rolled back. On PostgreSQL a lower
//! position can commit after a higher one, so at a gap the reader waits until every
//! transaction that was running when it saw the gap has ended; only then is the gap final.

use std::{sync::Arc, time::Duration};

use taskflow_core::{Readiness, Role, RoleState};
use taskflow_store::Store;
use tokio::{sync::watch, time::Instant};

use super::EmbeddedBus;
use crate::{ConsumerConfig, Envelope, Handler};

/// The part of a role that a consumer is, in its readiness.
const PART: &str = "consumer";

/// One consumer group's reader of the outbox.
pub(crate) struct Consumer {
    handler: Arc<dyn Handler>,
    store: Arc<dyn Store>,
    bus: EmbeddedBus,
    config: ConsumerConfig,
    readiness: Readiness,
    role: Role,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("role", &self.role)
            .finish()
    }
}

/// Where a reader is at a gap in positions.
struct Gap {
    at: i64,
    snapshot: Option<String>,
    /// Every transaction that could fill the gap has ended: the next read is final.
    settled: bool,
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
            store: bus.store().clone(),
            role: handler.role(),
            handler,
            bus,
            config,
            readiness,
        }
    }

    fn report(&self, state: RoleState) {
        self.readiness.set(self.role, PART, state);
    }

    /// Reads and handles events until `stop` turns true, then saves the offset.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let name = self.handler.group();
        let mut offset = loop {
            if !self.config.durable {
                break self.bus.head();
            }
            match self.store.consumer_offset(name).await {
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
        if self.config.durable {
            let parked = match self.store.count_dead_letters(name).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(consumer = name, error = %e, "cannot count dead letters; reporting 0 until one is parked");
                    0
                }
            };
            metrics::gauge!("taskflow_dead_letters", "consumer" => name).set(parked as f64);
        }
        metrics::gauge!("taskflow_consumer_lag", "consumer" => name)
            .set((self.bus.head() - offset).max(0) as f64);
        tracing::info!(consumer = name, offset, "consumer started");
        self.report(RoleState::Ready);
        let mut wake = self.bus.subscribe();
        let mut saved = offset;
        let mut last_save = Instant::now();
        let mut gap: Option<Gap> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            wake.borrow_and_update();
            let batch = match self.store.events_after(offset, self.config.batch).await {
                Ok(b) => b,
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
            let contiguous = batch
                .iter()
                .enumerate()
                .take_while(|(i, e)| e.position == offset + 1 + *i as i64)
                .count();
            if contiguous == 0 && !batch.is_empty() {
                // A gap right after the offset: final, or a transaction still committing?
                if self.gap_is_final(&mut gap, offset + 1).await {
                    tracing::debug!(
                        consumer = name,
                        from = offset + 1,
                        to = batch[0].position - 1,
                        "skipping a final gap"
                    );
                    offset = batch[0].position - 1;
                    gap = None;
                } else if !gap.as_ref().is_some_and(|g| g.settled)
                    && wait(&mut stop, Duration::from_millis(5)).await
                {
                    break;
                }
                continue;
            }
            gap = None;
            let read = batch.len();
            let mut ready = batch;
            ready.truncate(contiguous);
            if let Some(last) = ready.last().map(|e| e.position) {
                self.deliver(ready.into_iter().map(Envelope::from).collect())
                    .await;
                offset = last;
                metrics::gauge!("taskflow_consumer_lag", "consumer" => name)
                    .set((self.bus.head() - offset).max(0) as f64);
            }
            let idle = read < self.config.batch as usize;
            if self.config.durable
                && offset != saved
                && (idle || last_save.elapsed() >= self.config.save_every)
            {
                self.save(offset).await;
                saved = offset;
                last_save = Instant::now();
            }
            if !idle || contiguous < read {
                continue;
            }
            tokio::select! {
                _ = wake.changed() => {}
                _ = tokio::time::sleep(self.config.poll) => {}
                _ = stop.changed() => {}
            }
        }
        if self.config.durable && offset != saved {
            self.save(offset).await;
        }
        self.report(RoleState::Starting);
        tracing::info!(consumer = name, offset, "consumer stopped");
    }

    /// Whether the gap at `at`, in a batch just read, is final. A gap is final only when a
    /// read made after every transaction that could fill it has ended still shows it: once
    /// that holds, this says "read again" (false) one more time, and the read after it decides.
    async fn gap_is_final(&self, gap: &mut Option<Gap>, at: i64) -> bool {
        match gap {
            Some(g) if g.at == at && g.settled => true,
            Some(g) if g.at == at => {
                g.settled = match &g.snapshot {
                    None => true,
                    Some(s) => self.store.settled(s).await.unwrap_or(false),
                };
                false
            }
            _ => {
                let snapshot = self.store.snapshot().await.ok().flatten();
                // Without a snapshot (SQLite) positions commit in order: one more read decides.
                let settled = snapshot.is_none();
                *gap = Some(Gap {
                    at,
                    snapshot,
                    settled,
                });
                false
            }
        }
    }

    async fn save(&self, offset: i64) {
        if let Err(e) = self
            .store
            .save_consumer_offset(self.handler.group(), offset)
            .await
        {
            // The events since the last saved offset are delivered again after a restart.
            tracing::warn!(consumer = self.handler.group(), error = %e, "cannot save the consumer offset");
        }
    }

    /// Hands the wanted events to the handler; on failure each event is tried alone, so one
    /// bad event is parked without holding back the others.
    async fn deliver(&self, events: Vec<Envelope>) {
        let wanted: Vec<Envelope> = events
            .into_iter()
            .filter(|e| self.handler.wants(e))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let name = self.handler.group();
        if self.handler.handle(&wanted).await.is_ok() {
            metrics::counter!("taskflow_events_handled_total", "consumer" => name)
                .increment(wanted.len() as u64);
            return;
        }
        for event in &wanted {
            self.deliver_one(event).await;
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
                    tracing::error!(consumer = name, position = event.position, event_id = %event.event.id,
                        attempts = attempt, error = %e.0, "giving up on an event: parked as a dead letter");
                    match self
                        .store
                        .dead_letter(name, event.position, &event.event, &e.0, attempt)
                        .await
                    {
                        Ok(()) => metrics::gauge!("taskflow_dead_letters", "consumer" => name)
                            .increment(1.0),
                        Err(e) => {
                            tracing::error!(consumer = name, error = %e, "cannot park the dead letter")
                        }
                    }
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

/// Sleeps for `d`; true when `stop` turned true meanwhile.
async fn wait(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.changed() => {}
    }
    *stop.borrow()
}
