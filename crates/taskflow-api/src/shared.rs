//! Limits that hold across api replicas (`--dapr-state-store`). Behind a load balancer each
//! replica sees only its share of a user's requests, so a limit kept in memory allows a user
//! as many times the limit as there are replicas, and a password guesser can spread their
//! tries. With a Dapr state store the replicas keep these in it instead:
//!
//! - the per-user chat window and the per-account sign-in window, each a GCRA cell (the
//!   theoretical arrival time, µs) under `rate:{kind}:{id}`, and the per-user request window
//!   where asked to ([`SharedLimits::with_request_window`]): that one costs two calls to the
//!   sidecar on every request (bench/RESULTS.md), and kept per replica it still bounds what
//!   a user takes of each replica;
//! - the failed logins in a row of an account, `logins:{pseudonym}`;
//! - the live connections a user holds on each replica, `live:{user}`: a map from replica to
//!   its count, each entry renewed every [`LIVE_RENEW`] and ignored once [`LIVE_TTL`] old,
//!   so a replica that dies frees its place without anyone cleaning up.
//!
//! Accounts are named by a keyed pseudonym ([`taskflow_app::Tokens::pseudonym`]), never by
//! their address. Every write is a read-modify-write with the value's ETag (first write
//! wins; a conflict reads again; a value's very first write has no ETag to carry, so two
//! replicas creating it at once count one request less), every value carries a
//! `ttlInSeconds` so keys of idle users expire. The per-IP limits stay per replica: an address is one client of one replica's
//! listener, and counting it needs no round trip.
//!
//! When the store cannot be asked (the sidecar or its store is down, or slower than the
//! client's timeout), each replica falls back to its own in-memory limits: availability over
//! exactness, counted in `taskflow_shared_limit_fallbacks_total` and logged at most every
//! 10 s. Replicas' clocks must agree to within the windows (NTP does).

use std::{
    collections::HashMap,
    sync::atomic::{AtomicI64, Ordering},
    time::Duration,
};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use taskflow_app::Tokens;
use taskflow_bus::dapr::{StateError, StateStore, Write};
use taskflow_core::UserId;

use crate::limits::Rate;

/// Reads and writes of one read-modify-write before a key other replicas keep changing is
/// taken as busy.
const TRIES: usize = 4;
/// How long a replica's count of a user's live connections holds without renewal.
pub const LIVE_TTL: Duration = Duration::from_secs(60);
/// How often a replica renews the counts of the users with live connections open on it.
pub const LIVE_RENEW: Duration = Duration::from_secs(20);

/// What the shared store says of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    /// Not now; try again after this long.
    Wait(Duration),
    /// The store could not be asked: the replica decides alone.
    Unknown,
}

/// A quota as GCRA: one request each `interval`, up to a burst at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    interval_us: i64,
    tolerance_us: i64,
}

impl Gcra {
    fn new(period_us: i64, per_period: u32, burst: u32) -> Option<Self> {
        let n = i64::from(per_period);
        if n == 0 {
            return None;
        }
        let interval_us = (period_us / n).max(1);
        let burst = i64::from(burst.max(per_period));
        Some(Self {
            interval_us,
            tolerance_us: interval_us * (burst - 1),
        })
    }

    /// `rate.per_second` requests a second, `rate.burst` at once; none when 0.
    pub(crate) fn per_second(rate: Rate) -> Option<Self> {
        Self::new(1_000_000, rate.per_second, rate.burst)
    }

    /// `n` requests a minute, all of them at once if need be; none when 0.
    pub(crate) fn per_minute(n: u32) -> Option<Self> {
        Self::new(60_000_000, n, n)
    }

    /// A request at `now` (µs) against the stored arrival time `tat`: the new one, or how
    /// long to wait.
    fn step(self, tat: Option<i64>, now: i64) -> Result<i64, Duration> {
        let tat = tat.unwrap_or(now).max(now);
        let ahead = tat - now;
        if ahead > self.tolerance_us {
            let wait = u64::try_from(ahead - self.tolerance_us).unwrap_or(0);
            return Err(Duration::from_micros(wait));
        }
        Ok(tat + self.interval_us)
    }
}

/// What a read-modify-write makes of the value it read.
enum Change<T> {
    Save(T, Duration),
    Delete,
    /// Writes nothing: the request is refused.
    Refuse(Verdict),
}

/// How a read-modify-write ended.
enum Updated {
    Done,
    Refused(Verdict),
    /// The store could not be asked (counted and logged).
    Failed,
    /// Other writers came first on every try.
    Busy,
}

/// Failed logins in a row of one account.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Failures {
    pub count: u32,
    /// When the latest failed, ms since the epoch.
    pub last_ms: i64,
}

/// One replica's live connections of a user.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Held {
    n: usize,
    /// When this count stops holding unless renewed, ms since the epoch.
    until_ms: i64,
}

/// The limits kept in a Dapr state store.
#[derive(Debug)]
pub struct SharedLimits {
    state: StateStore,
    tokens: Tokens,
    /// This replica, as a holder of live connections.
    replica: String,
    /// When the last fallback was logged (ms since the epoch).
    warned_ms: AtomicI64,
    /// Whether the per-user request window is kept here too (else each replica keeps its
    /// own: it costs two calls to the sidecar on every request).
    requests: bool,
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Whole seconds covering `us`, at least one: a TTL never cuts a value short.
fn ttl_for(us: i64) -> Duration {
    Duration::from_secs(u64::try_from(us.max(0) / 1_000_000 + 1).unwrap_or(1))
}

impl SharedLimits {
    /// Limits kept in `state`; accounts named by pseudonyms of `tokens`.
    pub fn new(state: StateStore, tokens: Tokens) -> Self {
        Self {
            state,
            tokens,
            replica: uuid::Uuid::now_v7().simple().to_string(),
            warned_ms: AtomicI64::new(i64::MIN),
            requests: false,
        }
    }

    /// Keeps the per-user request window in the store too (`share`), not only the sign-in,
    /// chat and live-connection limits.
    pub fn with_request_window(mut self, share: bool) -> Self {
        self.requests = share;
        self
    }

    pub(crate) fn shares_request_window(&self) -> bool {
        self.requests
    }

    pub(crate) fn account_key(&self, kind: &str, account: &str) -> String {
        format!("{kind}:{}", self.tokens.pseudonym(account))
    }

    fn unknown(&self, e: &StateError) -> Verdict {
        metrics::counter!("taskflow_shared_limit_fallbacks_total").increment(1);
        let now = now_us() / 1000;
        let last = self.warned_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 10_000
            && self
                .warned_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error = %e, "shared limits unavailable; each replica limits alone meanwhile");
        }
        Verdict::Unknown
    }

    /// Reads the value under `key` and writes what `change` makes of it, with the value's
    /// ETag; a conflict reads again, at most [`TRIES`] times.
    async fn update<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        mut change: impl FnMut(Option<T>) -> Change<T>,
    ) -> Updated {
        for _ in 0..TRIES {
            let (value, etag) = match self.state.get::<T>(key).await {
                Ok(v) => v.map_or((None, None), |v| (Some(v.value), v.etag)),
                Err(e) => {
                    self.unknown(&e);
                    return Updated::Failed;
                }
            };
            let written = match change(value) {
                Change::Refuse(verdict) => return Updated::Refused(verdict),
                Change::Save(value, ttl) => {
                    self.state.save(key, &value, etag.as_deref(), ttl).await
                }
                Change::Delete => self.state.delete(key, etag.as_deref()).await,
            };
            match written {
                Ok(Write::Done) => return Updated::Done,
                Ok(Write::Conflict) => continue,
                Err(e) => {
                    self.unknown(&e);
                    return Updated::Failed;
                }
            }
        }
        Updated::Busy
    }

    /// One request against the quota `gcra` of `key`.
    pub(crate) async fn take(&self, key: &str, gcra: Gcra) -> Verdict {
        let taken = self
            .update(key, |tat: Option<i64>| {
                let now = now_us();
                match gcra.step(tat, now) {
                    Ok(next) => Change::Save(next, ttl_for(next - now)),
                    Err(wait) => Change::Refuse(Verdict::Wait(wait)),
                }
            })
            .await;
        match taken {
            Updated::Done => Verdict::Pass,
            Updated::Refused(verdict) => verdict,
            Updated::Failed => Verdict::Unknown,
            // Other replicas keep taking from this cell: it is busy enough to wait a moment.
            Updated::Busy => Verdict::Wait(Duration::from_secs(1)),
        }
    }

    /// The failed logins in a row of the account keyed `key`; `Err` when the store cannot
    /// be asked.
    pub(crate) async fn failures(&self, key: &str) -> Result<Option<Failures>, ()> {
        match self.state.get::<Failures>(key).await {
            Ok(f) => Ok(f.map(|f| f.value)),
            Err(e) => {
                self.unknown(&e);
                Err(())
            }
        }
    }

    /// Records a login of the account keyed `key`: a success clears its failures, a failure
    /// adds one; kept for `keep`.
    pub(crate) async fn record_login(&self, key: &str, ok: bool, keep: Duration) {
        if ok {
            if let Err(e) = self.state.delete(key, None).await {
                self.unknown(&e);
            }
            return;
        }
        self.update(key, |stored: Option<Failures>| {
            let count = stored.map_or(0, |f| f.count);
            let next = Failures {
                count: count.saturating_add(1),
                last_ms: now_us() / 1000,
            };
            Change::Save(next, keep)
        })
        .await;
    }

    /// Records that this replica holds `here` live connections of `user`, the one being
    /// opened counted, unless with those of the other replicas that makes more than `max`
    /// (`Wait`: refused, nothing recorded).
    pub(crate) async fn hold_streams(&self, user: UserId, here: usize, max: usize) -> Verdict {
        let held = self
            .update(
                &format!("live:{user}"),
                |stored: Option<HashMap<String, Held>>| {
                    let now_ms = now_us() / 1000;
                    let mut held = stored.unwrap_or_default();
                    held.retain(|replica, h| h.until_ms > now_ms && *replica != self.replica);
                    let elsewhere: usize = held.values().map(|h| h.n).sum();
                    if here > 0 && elsewhere + here > max {
                        return Change::Refuse(Verdict::Wait(Duration::ZERO));
                    }
                    if here > 0 {
                        let until_ms =
                            now_ms + i64::try_from(LIVE_TTL.as_millis()).unwrap_or(60_000);
                        held.insert(self.replica.clone(), Held { n: here, until_ms });
                    }
                    match held.values().map(|h| h.until_ms - now_ms).max() {
                        Some(keep) => Change::Save(held, ttl_for(keep * 1000)),
                        None => Change::Delete,
                    }
                },
            )
            .await;
        match held {
            Updated::Done => Verdict::Pass,
            Updated::Refused(verdict) => verdict,
            Updated::Failed => Verdict::Unknown,
            Updated::Busy => Verdict::Wait(Duration::ZERO),
        }
    }

    /// Renews this replica's counts of the live connections of every user who has some open
    /// on it (`hub`), every [`LIVE_RENEW`] until `stop`.
    pub async fn renew_streams(
        &self,
        hub: &taskflow_services::Hub,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(LIVE_RENEW) => {}
                _ = stop.changed() => return,
            }
            for (user, n) in hub.users() {
                self.hold_streams(user, n, usize::MAX).await;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gcra_passes_a_burst_then_one_per_interval() {
        let g = Gcra::per_second(Rate {
            per_second: 2,
            burst: 3,
        })
        .unwrap();
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(g.step(tat, 0).unwrap());
        }
        assert_eq!(g.step(tat, 0), Err(Duration::from_millis(500)));
        assert_eq!(g.step(tat, 499_999), Err(Duration::from_micros(1)));
        tat = Some(g.step(tat, 500_000).unwrap());
        assert!(g.step(tat, 500_000).is_err());
        // A long pause refills the burst, no more.
        let rested = Some(g.step(tat, 60_000_000).unwrap());
        assert_eq!(rested, Some(60_500_000));
        assert_eq!(
            Gcra::per_second(Rate {
                per_second: 0,
                burst: 5
            }),
            None
        );
    }

    #[test]
    fn gcra_per_minute_allows_n_at_once_then_one_per_share_of_the_minute() {
        let g = Gcra::per_minute(6).unwrap();
        let mut tat = None;
        for _ in 0..6 {
            tat = Some(g.step(tat, 0).unwrap());
        }
        assert_eq!(g.step(tat, 0), Err(Duration::from_secs(10)));
    }

    #[test]
    fn a_ttl_covers_what_it_keeps() {
        assert_eq!(ttl_for(0), Duration::from_secs(1));
        assert_eq!(ttl_for(1_500_000), Duration::from_secs(2));
        assert_eq!(ttl_for(-5), Duration::from_secs(1));
    }
}
