//! The relay: publishes committed outbox events, in position order, to a broker's topics,
//! whichever broker a [`Publisher`] speaks to. One instance publishes at a time (it holds the
//! `relay` lease, renewed while it works); a standby takes over once the lease expires, from
//! the last position the broker acknowledged, so nothing is lost and what is published twice
//! is recognised downstream by its event id.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use taskflow_core::{Readiness, Role, RoleState};
use taskflow_store::{Store, StoredEvent};
use tokio::{sync::watch, time::Instant};

use crate::{Head, outbox::OutboxReader, wait};

/// The lease, and the name its relayed position is kept under.
const LEASE: &str = "relay";
/// How long a lease lasts without renewal: a dead relay's standby takes over after this.
const LEASE_TTL: Duration = Duration::from_secs(10);
const RENEW_EVERY: Duration = Duration::from_secs(3);
/// Events read and published per round.
const BATCH: i64 = 1000;
/// How often the outbox is read when no commit in this process wakes the relay (an
/// indexed read of the head; this bounds the added latency where the API runs apart).
const POLL: Duration = Duration::from_millis(25);
const PART: &str = crate::RELAY_PART;
/// How often relayed events past their retention are removed from the outbox (or more often,
/// when the retention is shorter).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What a relay publishes through: one broker's client.
#[async_trait]
pub(crate) trait Publisher: Send {
    /// Publishes `events` in order, pipelined where the broker allows, and says how far it
    /// got: what is reported done was acknowledged or refused for good.
    async fn publish(&mut self, events: &[StoredEvent]) -> Round;
    /// Called after a failed round, before it is tried again (a client that must start
    /// clean, such as an idempotent producer whose messages timed out, is replaced here).
    fn failed(&mut self) {}
}

/// What became of a round of events: the first `done` of them were acknowledged or refused
/// for good (`refused`, by index), and `error` stopped the rest.
#[derive(Debug, Default)]
pub(crate) struct Round {
    pub done: usize,
    pub refused: Vec<(usize, String)>,
    pub error: Option<String>,
}

impl Round {
    /// The round of `len` events that stopped at `failed` (the first event that did not go
    /// through, and why; `None` when all did), with the events `refused` for good: those
    /// from the stop on go again, refused or not.
    pub(crate) fn settle(
        len: usize,
        failed: Option<(usize, String)>,
        mut refused: Vec<(usize, String)>,
    ) -> Self {
        let done = failed.as_ref().map_or(len, |(i, _)| *i);
        refused.retain(|(i, _)| *i < done);
        refused.sort_unstable_by_key(|(i, _)| *i);
        Self {
            done,
            refused,
            error: failed.map(|(_, e)| e),
        }
    }

    fn stopped(why: &str) -> Self {
        Self {
            error: Some(why.to_owned()),
            ..Self::default()
        }
    }
}

/// What the relay works with besides its publisher.
#[derive(Clone)]
pub(crate) struct Relay {
    pub store: Arc<dyn Store>,
    /// Wakes the relay on commits in this process.
    pub head: Head,
    /// This process, as the lease's holder.
    pub instance: String,
    /// How long relayed rows stay in the outbox; `None` keeps them for good.
    pub retention: Option<Duration>,
}

impl Relay {
    /// Takes the lease and publishes while it holds it, standing by while another instance
    /// does, until `stop` turns true.
    pub(crate) async fn run(
        &self,
        mut publisher: impl Publisher,
        readiness: Readiness,
        mut stop: watch::Receiver<bool>,
    ) {
        let report = |state: RoleState| readiness.set(Role::Relay, PART, state);
        // Exported from the start at zero, so that a rate over it (the relay-errors alert)
        // has a series before the first error.
        metrics::counter!("taskflow_relay_errors_total").increment(0);
        let store = &self.store;
        let holder = self.instance.as_str();
        let mut standby_logged = false;
        while !*stop.borrow() {
            match store
                .try_lease(LEASE, holder, chrono::Utc::now(), LEASE_TTL)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    if !standby_logged {
                        tracing::info!("another relay holds the lease; this one stands by");
                        standby_logged = true;
                    }
                    report(RoleState::Ready);
                    if wait(&mut stop, Duration::from_secs(1)).await {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the relay lease; retrying");
                    report(RoleState::Failing(format!("cannot take the lease: {e}")));
                    if wait(&mut stop, Duration::from_secs(1)).await {
                        break;
                    }
                    continue;
                }
            }
            standby_logged = false;
            let offset = match store.consumer_offset(LEASE).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the relayed position; retrying");
                    if wait(&mut stop, Duration::from_secs(1)).await {
                        break;
                    }
                    continue;
                }
            };
            tracing::info!(offset, "relaying the outbox");
            report(RoleState::Ready);
            self.lead(&mut publisher, offset, &report, &mut stop).await;
            if let Err(e) = store.release_lease(LEASE, holder).await {
                tracing::warn!(error = %e, "cannot release the relay lease; it expires by itself");
            }
        }
        report(RoleState::Starting);
    }

    /// Publishes from `offset` while this instance holds the lease and `stop` is false. The
    /// lease is renewed beside the work, so a publish that waits on an unreachable broker
    /// does not let it lapse while this instance is alive and the database answers.
    async fn lead(
        &self,
        publisher: &mut impl Publisher,
        offset: i64,
        report: &impl Fn(RoleState),
        stop: &mut watch::Receiver<bool>,
    ) {
        let store = &self.store;
        let (lost_tx, mut lost) = watch::channel(false);
        let renewal = tokio::spawn(self.clone().renew(lost_tx));
        let mut wake = self.head.subscribe();
        let mut reader = OutboxReader::new(store.clone(), offset);
        let mut relayed = offset;
        let mut backoff = Duration::from_millis(100);
        let mut pruned: Option<Instant> = None;
        while !*stop.borrow() && !*lost.borrow() {
            if let Some(keep) = self.retention
                && pruned.is_none_or(|p| p.elapsed() >= keep.min(PRUNE_EVERY))
            {
                prune(store.as_ref(), relayed, keep).await;
                pruned = Some(Instant::now());
            }
            wake.borrow_and_update();
            let read = match reader.next(BATCH).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the outbox; retrying");
                    wait(stop, Duration::from_secs(1)).await;
                    continue;
                }
            };
            if read.pause {
                wait(stop, Duration::from_millis(5)).await;
                continue;
            }
            if !read.events.is_empty() {
                let round = tokio::select! {
                    r = publisher.publish(&read.events) => r,
                    _ = lost.changed() => Round::stopped("the lease was lost"),
                };
                let mut refused = round.refused.iter().peekable();
                for (i, e) in read.events[..round.done].iter().enumerate() {
                    match refused.next_if(|(r, _)| *r == i) {
                        Some((_, why)) => park(store.as_ref(), e, why).await,
                        None => {
                            metrics::counter!("taskflow_events_published_total", "topic" => e.topic.as_str())
                                .increment(1);
                        }
                    }
                }
                let progress = match (&round.error, round.done) {
                    (None, _) => Some(reader.offset()),
                    (Some(_), 0) => None,
                    (Some(_), done) => Some(read.events[done - 1].position),
                };
                if let Some(to) = progress {
                    relayed = to;
                    if let Err(e) = store.save_consumer_offset(LEASE, relayed).await {
                        // Published again after a restart; consumers recognise the ids.
                        tracing::warn!(error = %e, "cannot save the relayed position");
                    }
                    // From the outbox itself: writes of other processes count too.
                    if let Ok(last) = store.last_position().await {
                        metrics::gauge!("taskflow_outbox_backlog")
                            .set((last - relayed).max(0) as f64);
                    }
                }
                match round.error {
                    None => {
                        if backoff > Duration::from_millis(100) {
                            tracing::info!(offset = relayed, "publishing again");
                            report(RoleState::Ready);
                        }
                        backoff = Duration::from_millis(100);
                    }
                    Some(e) => {
                        metrics::counter!("taskflow_relay_errors_total").increment(1);
                        tracing::warn!(error = %e, from = relayed + 1, "cannot publish; retrying from the last acknowledged position");
                        report(RoleState::Failing(format!("cannot publish: {e}")));
                        publisher.failed();
                        reader = OutboxReader::new(store.clone(), relayed);
                        wait(stop, backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            if read.more {
                continue;
            }
            tokio::select! {
                _ = wake.changed() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
                _ = lost.changed() => {}
            }
        }
        renewal.abort();
    }

    /// Renews the lease every few seconds; says `lost` when another instance has it, or when
    /// it could not be renewed for half its life (it must not lapse under a working relay).
    async fn renew(self, lost: watch::Sender<bool>) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            match self
                .store
                .try_lease(LEASE, &self.instance, chrono::Utc::now(), LEASE_TTL)
                .await
            {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => {
                    tracing::warn!("the relay lease was taken over; standing by");
                    let _ = lost.send(true);
                    return;
                }
                Err(e) if renewed.elapsed() >= LEASE_TTL / 2 => {
                    tracing::warn!(error = %e, "cannot renew the relay lease; standing by");
                    let _ = lost.send(true);
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew the relay lease; retrying"),
            }
        }
    }
}

/// Removes relayed events older than `keep` from the outbox.
async fn prune(store: &dyn Store, relayed: i64, keep: Duration) {
    let Ok(keep) = chrono::TimeDelta::from_std(keep) else {
        return;
    };
    match store.prune_events(relayed, chrono::Utc::now() - keep).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(events = n, "pruned relayed events from the outbox"),
        Err(e) => tracing::warn!(error = %e, "cannot prune the outbox; trying again later"),
    }
}

/// Parks an event the broker refuses for good as a dead letter of the relay, so that the
/// events after it go on; `taskflow_dead_letters{consumer="relay"}` counts it.
async fn park(store: &dyn Store, e: &StoredEvent, why: &str) {
    tracing::error!(position = e.position, event_id = %e.event.id, error = why,
        "the broker refuses this event for good: parked as a dead letter of the relay");
    match store.dead_letter(LEASE, e.position, &e.event, why, 1).await {
        Ok(()) => metrics::gauge!("taskflow_dead_letters", "consumer" => LEASE).increment(1.0),
        Err(err) => tracing::error!(error = %err, "cannot park the dead letter"),
    }
}
