//! Rate limits per client IP and per user (token bucket, GCRA), the stricter ones of the
//! sign-in routes, and the throttle on repeated failed logins. A limit of 0 turns it off.

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use taskflow_core::UserId;

use crate::{
    AppState,
    problem::ApiError,
    shared::{Failures, Gcra, SharedLimits, Verdict},
};

/// Requests per second and burst, for one key.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

/// The limiters of one server.
#[derive(Debug)]
pub struct Limits {
    ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    user: Option<DefaultKeyedRateLimiter<UserId>>,
    /// Chat messages per user: each may run several writes and, with a model, cost money.
    chat: Option<DefaultKeyedRateLimiter<UserId>>,
    /// `/api/auth/*` per client IP: each request costs an argon2 hash.
    auth_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// `/api/auth/*` per account (the email as sent, lowercased), per minute.
    auth_account: Option<DefaultKeyedRateLimiter<String>>,
    failed_logins: FailedLogins,
    /// The same windows kept across replicas, where a Dapr state store is given.
    shared: Option<Shared>,
}

/// The per-user and per-account windows as the shared store keeps them.
#[derive(Debug)]
struct Shared {
    store: Arc<SharedLimits>,
    user: Option<Gcra>,
    chat: Option<Gcra>,
    auth_account: Option<Gcra>,
}

/// The limits of the sign-in routes.
#[derive(Debug, Clone, Copy)]
pub struct AuthRates {
    /// Requests per second and burst from one client IP.
    pub per_ip: Rate,
    /// Requests per minute for one account.
    pub per_account_per_minute: u32,
    /// Failed logins of one account in a row that are let through before each further try
    /// has to wait (1 s, doubling up to 15 min); 0 turns the throttle off.
    pub failures_before_throttle: u32,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(rate: Rate) -> Option<DefaultKeyedRateLimiter<K>> {
    let per_second = NonZeroU32::new(rate.per_second)?;
    let burst = NonZeroU32::new(rate.burst.max(rate.per_second)).unwrap_or(per_second);
    Some(RateLimiter::keyed(
        Quota::per_second(per_second).allow_burst(burst),
    ))
}

impl Limits {
    pub fn new(ip: Rate, user: Rate, chat: Rate, auth: AuthRates) -> Arc<Self> {
        Self::with_shared(ip, user, chat, auth, None)
    }

    /// Limits whose per-user and per-account windows are kept in `shared` (the same on
    /// every replica), falling back to this replica's own while it cannot be asked.
    pub fn with_shared(
        ip: Rate,
        user: Rate,
        chat: Rate,
        auth: AuthRates,
        shared: Option<Arc<SharedLimits>>,
    ) -> Arc<Self> {
        let auth_account = NonZeroU32::new(auth.per_account_per_minute)
            .map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        Arc::new(Self {
            ip: limiter(ip),
            user: limiter(user),
            chat: limiter(chat),
            auth_ip: limiter(auth.per_ip),
            auth_account,
            failed_logins: FailedLogins::new(auth.failures_before_throttle),
            shared: shared.map(|store| Shared {
                user: Gcra::per_second(user).filter(|_| store.shares_request_window()),
                store,
                chat: Gcra::per_second(chat),
                auth_account: Gcra::per_minute(auth.per_account_per_minute),
            }),
        })
    }

    /// The store of the limits shared across replicas, where there is one.
    pub fn shared(&self) -> Option<&Arc<SharedLimits>> {
        self.shared.as_ref().map(|s| &s.store)
    }

    /// Before a signup or login of `account` from `ip`: the sign-in limits and, for a login,
    /// the failed-login throttle.
    pub async fn check_auth(&self, ip: Option<IpAddr>, account: &str) -> Result<String, ApiError> {
        if let Some(ip) = ip {
            check(self.auth_ip.as_ref(), &ip)?;
        }
        let account = account.trim().to_lowercase();
        let shared = self.shared.as_ref();
        let window = shared.and_then(|s| Some((s, s.auth_account?)));
        match window {
            Some((s, gcra)) => {
                let key = s.store.account_key("rate:account", &account);
                let verdict = s.store.take(&key, gcra).await;
                decide(verdict, || check(self.auth_account.as_ref(), &account))?;
            }
            None => check(self.auth_account.as_ref(), &account)?,
        }
        if let Some(s) = shared.filter(|_| self.failed_logins.free > 0) {
            let key = s.store.account_key("logins", &account);
            if let Ok(failures) = s.store.failures(&key).await {
                return match failures {
                    Some(f) => self.failed_logins.check_shared(f).map(|()| account),
                    None => Ok(account),
                };
            }
        }
        self.failed_logins.check(&account)?;
        Ok(account)
    }

    /// Records the outcome of a login of `account` (as returned by [`Self::check_auth`]).
    pub async fn login_outcome(&self, account: String, ok: bool) {
        if let Some(s) = self.shared.as_ref().filter(|_| self.failed_logins.free > 0) {
            let key = s.store.account_key("logins", &account);
            s.store
                .record_login(&key, ok, FailedLogins::MAX_WAIT * 2)
                .await;
        }
        // Kept here too: the fallback while the shared store cannot be asked.
        self.failed_logins.record(account, ok);
    }

    pub async fn check_chat(&self, user: UserId) -> Result<(), ApiError> {
        self.check_keyed(
            "chat",
            self.shared.as_ref().and_then(|s| s.chat),
            self.chat.as_ref(),
            user,
        )
        .await
    }

    pub async fn check_user(&self, user: UserId) -> Result<(), ApiError> {
        self.check_keyed(
            "user",
            self.shared.as_ref().and_then(|s| s.user),
            self.user.as_ref(),
            user,
        )
        .await
    }

    /// A per-user window: the shared one where there is one, else (or while it cannot be
    /// asked) this replica's.
    async fn check_keyed(
        &self,
        kind: &str,
        shared: Option<Gcra>,
        local: Option<&DefaultKeyedRateLimiter<UserId>>,
        user: UserId,
    ) -> Result<(), ApiError> {
        match (self.shared.as_ref(), shared) {
            (Some(s), Some(gcra)) => {
                let verdict = s.store.take(&format!("rate:{kind}:{user}"), gcra).await;
                decide(verdict, || check(local, &user))
            }
            _ => check(local, &user),
        }
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        check(self.ip.as_ref(), &ip)
    }

    /// Forgets keys whose buckets are full again, so memory stays bounded.
    pub fn shrink(&self) {
        forget_full(&self.ip);
        forget_full(&self.user);
        forget_full(&self.chat);
        forget_full(&self.auth_ip);
        forget_full(&self.auth_account);
        self.failed_logins.forget_old();
    }
}

fn forget_full<K: std::hash::Hash + Eq + Clone>(l: &Option<DefaultKeyedRateLimiter<K>>) {
    if let Some(l) = l {
        l.retain_recent();
        l.shrink_to_fit();
    }
}

fn check<K: std::hash::Hash + Eq + Clone>(
    l: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
) -> Result<(), ApiError> {
    let Some(l) = l else { return Ok(()) };
    l.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        ApiError::TooManyRequests(wait.max(Duration::from_secs(1)))
    })
}

/// The shared store's verdict, or the replica's own where the store could not be asked.
fn decide(verdict: Verdict, local: impl FnOnce() -> Result<(), ApiError>) -> Result<(), ApiError> {
    match verdict {
        Verdict::Pass => Ok(()),
        Verdict::Wait(wait) => Err(ApiError::TooManyRequests(wait.max(Duration::from_secs(1)))),
        Verdict::Unknown => local(),
    }
}

/// Middleware: the per-IP limit, before any other work. Health probes and metric scrapes
/// pass: an orchestrator's probe refused because one client flooded the address it shares
/// (a node, a proxy) would restart a healthy instance.
pub async fn per_ip(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path.starts_with("/healthz/") || path == "/metrics" {
        return next.run(req).await;
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = ip
        && let Err(e) = state.limits.check_ip(ip)
    {
        return e.into_response();
    }
    next.run(req).await
}

/// Failed logins in a row per account. After `free` of them each further try must wait,
/// 1 s doubling up to 15 min after the latest failure; a success clears the account. The
/// account need not exist, so the answer tells nothing about which emails have one.
#[derive(Debug)]
struct FailedLogins {
    free: u32,
    accounts: Mutex<HashMap<String, Recent>>,
}

#[derive(Debug, Clone, Copy)]
struct Recent {
    count: u32,
    last: Instant,
}

impl FailedLogins {
    const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

    fn new(free: u32) -> Self {
        Self {
            free,
            accounts: Mutex::new(HashMap::new()),
        }
    }

    /// How long after the latest of `count` failures in a row the next try must wait.
    fn wait(&self, count: u32) -> Duration {
        let over = count.saturating_sub(self.free);
        if self.free == 0 || over == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs(1u64 << (over - 1).min(10)).min(Self::MAX_WAIT)
    }

    /// The throttle on failures kept in the shared store.
    fn check_shared(&self, f: Failures) -> Result<(), ApiError> {
        let wait_ms = i64::try_from(self.wait(f.count).as_millis()).unwrap_or(i64::MAX);
        let left = f
            .last_ms
            .saturating_add(wait_ms)
            .saturating_sub(chrono::Utc::now().timestamp_millis());
        match u64::try_from(left) {
            Ok(ms) if ms > 0 => Err(ApiError::LoginThrottled(Duration::from_millis(ms))),
            _ => Ok(()),
        }
    }

    fn check(&self, account: &str) -> Result<(), ApiError> {
        if self.free == 0 {
            return Ok(());
        }
        let accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let Some(&f) = accounts.get(account) else {
            return Ok(());
        };
        let ready = f.last + self.wait(f.count);
        let now = Instant::now();
        if ready > now {
            return Err(ApiError::LoginThrottled(ready - now));
        }
        Ok(())
    }

    fn record(&self, account: String, ok: bool) {
        if self.free == 0 {
            return;
        }
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            accounts.remove(&account);
            return;
        }
        let f = accounts.entry(account).or_insert(Recent {
            count: 0,
            last: Instant::now(),
        });
        f.count = f.count.saturating_add(1);
        f.last = Instant::now();
    }

    fn forget_old(&self) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        accounts.retain(|_, f| f.last.elapsed() < Self::MAX_WAIT * 2);
        accounts.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_logins_are_free_up_to_the_threshold_then_wait_doubling() {
        let f = FailedLogins::new(3);
        assert_eq!(f.wait(3), Duration::ZERO);
        assert_eq!(f.wait(4), Duration::from_secs(1));
        assert_eq!(f.wait(6), Duration::from_secs(4));
        assert_eq!(f.wait(40), FailedLogins::MAX_WAIT);
        for _ in 0..4 {
            f.record("ada@example.com".into(), false);
        }
        assert!(f.check("ada@example.com").is_err());
        assert!(f.check("bob@example.com").is_ok());
        f.record("ada@example.com".into(), true);
        assert!(f.check("ada@example.com").is_ok());
    }
}
