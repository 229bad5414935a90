//! The `sync` role: each user's events, pushed to that user's open connections (SSE and
//! WebSocket) as they are committed.
//!
//! The [`Hub`] tails the event log in memory (no durable offset: a client that reconnects
//! resumes from its own `Last-Event-ID`) and hands each event to the bounded queue of every
//! connection of its user. A connection whose queue is full is dropped, so a slow client
//! never slows the others or the hub.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use async_trait::async_trait;
use taskflow_bus::{Envelope, Handler, HandlerError};
use taskflow_core::{Role, UserId};
use tokio::sync::mpsc;

/// The role this service is.
pub const ROLE: Role = Role::Sync;
/// The consumer group: its offset, handled-event records and dead letters are kept under it.
pub const NAME: &str = ROLE.name();
/// Events a connection may have waiting before it is dropped as too slow.
pub const QUEUE: usize = 256;

type Senders = HashMap<u64, mpsc::Sender<Arc<Envelope>>>;

/// The open connections, by user.
#[derive(Debug)]
pub struct Hub {
    users: Mutex<HashMap<UserId, Senders>>,
    next_id: AtomicU64,
    closed: std::sync::atomic::AtomicBool,
    per_user: usize,
}

/// A user already has as many open live connections as allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyStreams(pub usize);

/// One open connection's queue; leaving it (drop) unregisters it.
#[derive(Debug)]
pub struct Subscription {
    pub events: mpsc::Receiver<Arc<Envelope>>,
    hub: Arc<Hub>,
    user: UserId,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.remove(self.user, self.id);
    }
}

impl Hub {
    /// A hub allowing `per_user` open connections per user.
    pub fn new(per_user: usize) -> Arc<Self> {
        Arc::new(Self {
            users: Mutex::default(),
            next_id: AtomicU64::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
            per_user,
        })
    }

    /// Registers a connection of `user`, unless they have `per_user` open already.
    pub fn subscribe(self: &Arc<Self>, user: UserId) -> Result<Subscription, TooManyStreams> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if !self.closed.load(Ordering::Acquire) {
            let mut users = self.lock();
            let conns = users.entry(user).or_default();
            if conns.len() >= self.per_user {
                return Err(TooManyStreams(self.per_user));
            }
            conns.insert(id, tx);
            metrics::gauge!("taskflow_sync_connections").increment(1.0);
        }
        Ok(Subscription {
            events: rx,
            hub: self.clone(),
            user,
            id,
        })
    }

    /// Ends every connection's stream (on shutdown) and takes no new ones.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let mut users = self.lock();
        let n: usize = users.values().map(HashMap::len).sum();
        users.clear();
        metrics::gauge!("taskflow_sync_connections").decrement(n as f64);
    }

    /// Number of open connections.
    pub fn connections(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }

    /// Open connections of `user`.
    pub fn connections_of(&self, user: UserId) -> usize {
        self.lock().get(&user).map_or(0, HashMap::len)
    }

    /// Each user with open connections, and how many.
    pub fn users(&self) -> Vec<(UserId, usize)> {
        self.lock().iter().map(|(u, c)| (*u, c.len())).collect()
    }

    /// How many open connections a user may have.
    pub fn per_user(&self) -> usize {
        self.per_user
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Senders>> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remove(&self, user: UserId, id: u64) {
        let mut users = self.lock();
        if let Some(conns) = users.get_mut(&user) {
            if conns.remove(&id).is_some() {
                metrics::gauge!("taskflow_sync_connections").decrement(1.0);
            }
            if conns.is_empty() {
                users.remove(&user);
            }
        }
    }

    /// Hands `event` to every connection of its user; drops those that cannot keep up.
    pub fn publish(&self, event: Arc<Envelope>) {
        let Some(user) = event.event.user_id() else {
            return;
        };
        let mut users = self.lock();
        let Some(conns) = users.get_mut(&user) else {
            return;
        };
        conns.retain(|_, tx| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!(user_id = %user, "dropping a live connection that does not keep up");
                metrics::counter!("taskflow_sync_dropped_total").increment(1);
                metrics::gauge!("taskflow_sync_connections").decrement(1.0);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics::gauge!("taskflow_sync_connections").decrement(1.0);
                false
            }
        });
        if conns.is_empty() {
            users.remove(&user);
        }
    }
}

/// Feeds the hub from the log (run as a volatile consumer: it starts at the head).
#[derive(Debug, Clone)]
pub struct HubFeed(pub Arc<Hub>);

#[async_trait]
impl Handler for HubFeed {
    fn role(&self) -> Role {
        ROLE
    }

    fn wants(&self, _: &Envelope) -> bool {
        true
    }

    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        for e in events {
            self.0.publish(Arc::new(e.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::Utc;
    use taskflow_core::CloudEvent;

    use super::*;

    fn event(user: UserId, position: i64) -> Arc<Envelope> {
        let ev = CloudEvent::new(
            "com.taskflow.test.v1",
            "test",
            user,
            None,
            None,
            Utc::now(),
            serde_json::Value::Null,
        );
        Arc::new(Envelope {
            position,
            topic: taskflow_core::Topic::TaskEvents,
            event: ev,
        })
    }

    #[tokio::test]
    async fn a_client_that_does_not_keep_up_is_dropped_and_the_others_get_everything() {
        let hub = Hub::new(10);
        let user = UserId::new();
        let mut slow = hub.subscribe(user).unwrap();
        let mut fast = hub.subscribe(user).unwrap();
        let mut received = 0;
        for p in 1..=(QUEUE as i64 + 10) {
            hub.publish(event(user, p));
            while fast.events.try_recv().is_ok() {
                received += 1;
            }
        }
        assert_eq!(received, QUEUE + 10, "the reading client got every event");
        let mut queued = 0;
        while slow.events.recv().await.is_some() {
            queued += 1;
        }
        assert_eq!(
            queued, QUEUE,
            "the slow one got what fitted, then its stream ended"
        );
        assert_eq!(hub.connections(), 1);
    }

    #[tokio::test]
    async fn events_reach_only_their_users_connections_and_the_cap_holds() {
        let hub = Hub::new(2);
        let (ada, eve) = (UserId::new(), UserId::new());
        let mut a = hub.subscribe(ada).unwrap();
        let _a2 = hub.subscribe(ada).unwrap();
        assert_eq!(hub.subscribe(ada).err(), Some(TooManyStreams(2)));
        let mut e = hub.subscribe(eve).unwrap();
        hub.publish(event(ada, 1));
        assert_eq!(a.events.try_recv().map(|x| x.position).ok(), Some(1));
        assert!(e.events.try_recv().is_err());
        drop(a);
        assert!(
            hub.subscribe(ada).is_ok(),
            "a closed connection frees its place"
        );
        hub.close();
        assert!(
            e.events.recv().await.is_none(),
            "closing the hub ends every stream"
        );
    }
}
