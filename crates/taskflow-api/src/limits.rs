//! Rate limits per client IP and per user (token bucket, GCRA). A limit of 0 turns it off.

use std::{net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

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

use crate::{AppState, problem::ApiError};

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
}

fn limiter<K: std::hash::Hash + Eq + Clone>(rate: Rate) -> Option<DefaultKeyedRateLimiter<K>> {
    let per_second = NonZeroU32::new(rate.per_second)?;
    let burst = NonZeroU32::new(rate.burst.max(rate.per_second)).unwrap_or(per_second);
    Some(RateLimiter::keyed(
        Quota::per_second(per_second).allow_burst(burst),
    ))
}

impl Limits {
    pub fn new(ip: Rate, user: Rate, chat: Rate) -> Arc<Self> {
        Arc::new(Self {
            ip: limiter(ip),
            user: limiter(user),
            chat: limiter(chat),
        })
    }

    pub fn check_chat(&self, user: UserId) -> Result<(), ApiError> {
        check(self.chat.as_ref(), &user)
    }

    pub fn check_user(&self, user: UserId) -> Result<(), ApiError> {
        check(self.user.as_ref(), &user)
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        check(self.ip.as_ref(), &ip)
    }

    /// Forgets keys whose buckets are full again, so memory stays bounded.
    pub fn shrink(&self) {
        if let Some(l) = &self.ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
        for l in [&self.user, &self.chat].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
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

/// Middleware: the per-IP limit, before any other work.
pub async fn per_ip(State(state): State<AppState>, req: Request, next: Next) -> Response {
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
