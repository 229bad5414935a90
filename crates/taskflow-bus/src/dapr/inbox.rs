//! The consume side of Dapr: the subscriptions this process lists to its sidecar, and the
//! deliveries the sidecar posts to their routes.
//!
//! Dapr lets an app subscribe once to a topic of a pub/sub component, so a process that runs
//! several roles lists one subscription per component and topic, and a delivery goes to each
//! of its groups that reads that topic. The answer is `SUCCESS` once every such group handled
//! the event (or parked it after its last try), `RETRY` while one failed (the sidecar delivers
//! it again; the groups that had handled it recognise it by its id), `DROP` for what is no
//! taskflow event (logged and counted: it would fail the same way every time).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use serde_json::{Value, json};
use taskflow_core::Topic;
use taskflow_store::Store;
use tracing::Instrument as _;

use super::DaprSettings;
use crate::{ConsumerConfig, Envelope, Handler, handler::Delivery, wire};

/// What a delivery route answers the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Handled (or not wanted here): the sidecar moves on.
    Success,
    /// A group failed, or this process is stopping: the sidecar delivers the event again.
    Retry,
    /// No taskflow event: the sidecar drops it.
    Drop,
    /// No group of this process subscribes to that component and topic (HTTP 404, which
    /// the sidecar also takes as a drop).
    Unknown,
}

impl Delivered {
    /// Dapr's name of the answer, for the `status` field.
    pub fn status(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Retry => "RETRY",
            Self::Drop | Self::Unknown => "DROP",
        }
    }
}

struct Group {
    delivery: Delivery,
    pubsub: String,
    /// Set on stop: deliveries are refused from then on.
    closed: AtomicBool,
    /// One delivery at a time, as on the other transports; and the failed tries of the
    /// events that are being retried, by event id.
    tries: tokio::sync::Mutex<HashMap<String, u32>>,
}

/// The consumer groups of this process that the sidecar delivers to.
pub struct Inbox {
    pubsub: String,
    live_pubsub: String,
    app_token: Option<String>,
    store: Arc<dyn Store>,
    groups: RwLock<BTreeMap<&'static str, Arc<Group>>>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let groups: Vec<&str> = self.read().keys().copied().collect();
        f.debug_struct("Inbox").field("groups", &groups).finish()
    }
}

impl Inbox {
    pub(super) fn new(settings: &DaprSettings, store: Arc<dyn Store>) -> Self {
        Self {
            pubsub: settings.pubsub.clone(),
            live_pubsub: settings.live_pubsub.clone(),
            app_token: settings.app_token.clone(),
            store,
            groups: RwLock::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<&'static str, Arc<Group>>> {
        self.groups.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a group (again: a group registered twice keeps its first registration).
    pub(super) fn register(&self, handler: Arc<dyn Handler>, config: ConsumerConfig) {
        let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
        let name = handler.group();
        if groups.contains_key(name) {
            return;
        }
        let pubsub = if config.durable {
            self.pubsub.clone()
        } else {
            self.live_pubsub.clone()
        };
        let delivery = Delivery {
            handler,
            config,
            store: self.store.clone(),
        };
        groups.insert(
            name,
            Arc::new(Group {
                delivery,
                pubsub,
                closed: AtomicBool::new(false),
                tries: tokio::sync::Mutex::default(),
            }),
        );
    }

    pub(super) async fn count_dead_letters(&self, group: &str) {
        let found = self.read().get(group).cloned();
        if let Some(g) = found {
            g.delivery.count_dead_letters().await;
        }
    }

    /// Refuses further deliveries to `group`, once the one in progress is done.
    pub(super) async fn close(&self, group: &str) {
        let found = self.read().get(group).cloned();
        if let Some(g) = found {
            g.closed.store(true, Ordering::SeqCst);
            drop(g.tries.lock().await);
        }
    }

    /// The token the sidecar must present (`dapr-api-token`), where one is set.
    pub fn app_token(&self) -> Option<&str> {
        self.app_token.as_deref()
    }

    /// The answer to `GET /dapr/subscribe`: one subscription per component and topic that a
    /// group of this process reads, each with its route.
    pub fn subscriptions(&self) -> Value {
        let mut wanted: BTreeMap<(&str, &str), ()> = BTreeMap::new();
        let groups = self.read();
        for g in groups.values() {
            for topic in g.delivery.handler.topics() {
                wanted.insert((g.pubsub.as_str(), topic.as_str()), ());
            }
        }
        let list: Vec<Value> = wanted
            .keys()
            .map(|(pubsub, topic)| {
                json!({
                    "pubsubname": pubsub,
                    "topic": topic,
                    "routes": {"default": route(pubsub, topic)},
                    "metadata": {},
                })
            })
            .collect();
        Value::Array(list)
    }

    /// Handles one delivery of `body` from `topic` of component `pubsub`.
    pub async fn deliver(&self, pubsub: &str, topic: &str, body: &[u8]) -> Delivered {
        let groups: Vec<Arc<Group>> = {
            let topic = Topic::parse(topic);
            self.read()
                .values()
                .filter(|g| g.pubsub == pubsub)
                .filter(|g| topic.is_some_and(|t| g.delivery.handler.topics().contains(&t)))
                .cloned()
                .collect()
        };
        if groups.is_empty() {
            tracing::warn!(
                pubsub,
                topic,
                "a delivery for a subscription this process does not have"
            );
            return Delivered::Unknown;
        }
        let envelope = match wire::decode(Topic::parse(topic), body) {
            Ok(e) => e,
            Err(why) => {
                tracing::error!(pubsub, topic, error = %why, "dropping a message that is not a taskflow event");
                for g in &groups {
                    metrics::counter!("taskflow_events_malformed_total", "consumer" => g.delivery.handler.group())
                        .increment(1);
                }
                return Delivered::Drop;
            }
        };
        let mut answer = Delivered::Success;
        for g in &groups {
            if deliver_to(g, &envelope).await == Delivered::Retry {
                answer = Delivered::Retry;
            }
        }
        answer
    }
}

/// The most events whose failed tries a group keeps count of.
const MAX_TRACKED: usize = 10_000;

/// The route of a subscription.
fn route(pubsub: &str, topic: &str) -> String {
    format!("/dapr/events/{pubsub}/{topic}")
}

/// One group's part of a delivery.
async fn deliver_to(g: &Group, envelope: &Envelope) -> Delivered {
    let handler = &g.delivery.handler;
    let name = handler.group();
    if g.closed.load(Ordering::SeqCst) {
        return Delivered::Retry;
    }
    metrics::counter!("taskflow_events_consumed_total", "consumer" => name, "topic" => envelope.topic.as_str())
        .increment(1);
    if !handler.wants(envelope) {
        return Delivered::Success;
    }
    let mut tries = g.tries.lock().await;
    if g.closed.load(Ordering::SeqCst) {
        return Delivered::Retry;
    }
    // The event's span, as on every transport: the handler's log lines and the exported
    // trace name it (the delivery's HTTP span is the sidecar's request, not the event's).
    let span = crate::event_span(name, envelope);
    let handled = handler
        .handle(std::slice::from_ref(envelope))
        .instrument(span.clone())
        .await;
    if let Err(e) = &handled {
        span.record("error", e.0.as_str());
    }
    drop(span);
    let error = match handled {
        Ok(()) => {
            tries.remove(&envelope.event.id);
            metrics::counter!("taskflow_events_handled_total", "consumer" => name).increment(1);
            return Delivered::Success;
        }
        Err(e) => e.0,
    };
    // Tries of events that went to another instance for good would pile up: forget them
    // all now and then (at worst an event gets a few more tries before it is parked).
    if tries.len() >= MAX_TRACKED {
        tries.clear();
    }
    let attempt = {
        let n = tries.entry(envelope.event.id.clone()).or_insert(0);
        *n += 1;
        *n
    };
    if attempt < g.delivery.config.max_attempts {
        tracing::warn!(consumer = name, position = envelope.position, attempt, error = %error,
            "handler failed; the sidecar delivers the event again");
        return Delivered::Retry;
    }
    if g.delivery.park(envelope, &error, attempt).await {
        tries.remove(&envelope.event.id);
        Delivered::Success
    } else {
        Delivered::Retry
    }
}
