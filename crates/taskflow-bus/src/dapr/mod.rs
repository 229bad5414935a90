//! The Dapr transport: the application talks only to its sidecar
//! (`http://127.0.0.1:$DAPR_HTTP_PORT`), and the sidecar's pub/sub component decides which
//! broker sits behind (Kafka, Redis, a cloud service).
//!
//! The `relay` role publishes the outbox through the sidecar (`POST
//! /v1.0-alpha1/publish/bulk/{pubsub}/{topic}`, or one event a request), each event as its
//! CloudEvent in structured mode so the sidecar passes it through unwrapped, with
//! `partitionKey` = user id so one user's events stay in order behind it. Consumption is
//! pushed: the sidecar reads the process's subscriptions from `GET /dapr/subscribe` and posts
//! each event to its route, which answers `SUCCESS`, `RETRY` or `DROP` ([`Inbox`]).

mod inbox;
mod publisher;
mod state;

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use taskflow_core::{Readiness, RoleState};
use taskflow_store::Store;
use tokio::sync::watch;

use crate::{ConsumerConfig, Handler, Head, Transport, relay::Relay};
pub use inbox::{Delivered, Inbox};
pub use state::{StateError, StateStore, Versioned, Write};

/// How to reach the sidecar and which components to use.
#[derive(Clone)]
pub struct DaprSettings {
    /// The sidecar's HTTP endpoint (`http://127.0.0.1:3500`).
    pub endpoint: String,
    /// Sent to the sidecar as `dapr-api-token` where it requires one.
    pub api_token: Option<String>,
    /// What the sidecar sends as `dapr-api-token` on its calls to this process; a call
    /// without it is refused, where one is set.
    pub app_token: Option<String>,
    /// The pub/sub component of the durable consumer groups (one group per app id).
    pub pubsub: String,
    /// The pub/sub component of live fan-out (`sync`: every instance sees every event, so
    /// its consumer id is per pod, reading from the newest offset).
    pub live_pubsub: String,
    /// Whether the relay publishes through the bulk API (else one event a request).
    pub bulk_publish: bool,
    /// How long relayed rows stay in the outbox; `None` keeps them for good.
    pub outbox_retention: Option<Duration>,
}

impl fmt::Debug for DaprSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |t: &Option<String>| t.as_ref().map(|_| "***");
        f.debug_struct("DaprSettings")
            .field("endpoint", &self.endpoint)
            .field("api_token", &hidden(&self.api_token))
            .field("app_token", &hidden(&self.app_token))
            .field("pubsub", &self.pubsub)
            .field("live_pubsub", &self.live_pubsub)
            .field("bulk_publish", &self.bulk_publish)
            .field("outbox_retention", &self.outbox_retention)
            .finish()
    }
}

/// Whether `name` can be a Dapr component name in a URL path (letters, digits, `-`, `_`
/// and `.`), so no name needs escaping.
pub fn valid_component_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// An HTTP client of the sidecar's API; cheap to clone.
#[derive(Clone)]
pub struct Sidecar {
    endpoint: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sidecar")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl Sidecar {
    pub fn new(endpoint: &str, token: Option<String>) -> Self {
        Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token,
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A request to `path` (from `/v1.0…`) on the sidecar, with its token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self
            .client
            .request(method, format!("{}{path}", self.endpoint));
        match &self.token {
            Some(t) => req.header("dapr-api-token", t),
            None => req,
        }
    }

    /// Whether the sidecar's components are ready for this process to call
    /// (`GET /v1.0/healthz/outbound`); why not, where they are not.
    pub async fn outbound_ready(&self) -> Result<(), String> {
        let res = self
            .request(reqwest::Method::GET, "/v1.0/healthz/outbound")
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(|e| format!("the Dapr sidecar at {} does not answer: {e}", self.endpoint))?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "the Dapr sidecar at {} is not ready: {}",
                self.endpoint,
                res.status()
            ))
        }
    }
}

/// The sidecar's readiness as one task of the process last saw it (`GET
/// /v1.0/healthz/outbound`, every [`CHECK_EVERY`] while ready and every half second while
/// not): for `/healthz/ready` and for every consumer group of the process, so that they ask
/// once between them. Cheap to clone; the task ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct SidecarHealth(watch::Receiver<Option<Result<(), String>>>);

impl SidecarHealth {
    /// Starts watching `sidecar`.
    pub fn watch(sidecar: Sidecar) -> Self {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            loop {
                let seen = sidecar.outbound_ready().await;
                let pause = if seen.is_ok() {
                    CHECK_EVERY
                } else {
                    Duration::from_millis(500)
                };
                tx.send_if_modified(|last| {
                    let changed = last.as_ref() != Some(&seen);
                    *last = Some(seen);
                    changed
                });
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Self(rx)
    }

    /// What the last look found; `None` before the first.
    pub fn last(&self) -> Option<Result<(), String>> {
        self.0.borrow().clone()
    }

    /// Waits until a look finds something else than the one before.
    async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            // The watcher is gone: nothing will change any more.
            std::future::pending::<()>().await;
        }
    }
}

/// The Dapr transport; cheap to clone.
#[derive(Clone)]
pub struct DaprBus {
    settings: Arc<DaprSettings>,
    sidecar: Sidecar,
    store: Arc<dyn Store>,
    head: Head,
    inbox: Arc<Inbox>,
    health: SidecarHealth,
    /// This process, as the relay lease's holder.
    instance: String,
}

impl fmt::Debug for DaprBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DaprBus")
            .field("endpoint", &self.settings.endpoint)
            .field("instance", &self.instance)
            .finish()
    }
}

/// Why the Dapr transport cannot start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DaprError(String);

impl DaprBus {
    /// A transport through the sidecar at `settings.endpoint`, whose readiness `health`
    /// watches. The sidecar need not be up yet (it starts beside this process): readiness
    /// reports it until it is.
    pub async fn open(
        settings: DaprSettings,
        store: Arc<dyn Store>,
        health: SidecarHealth,
    ) -> Result<Self, DaprError> {
        for name in [&settings.pubsub, &settings.live_pubsub] {
            if !valid_component_name(name) {
                return Err(DaprError(format!(
                    "`{name}` is not a Dapr component name (letters, digits, `-`, `_` and `.`)"
                )));
            }
        }
        let head = store
            .last_position()
            .await
            .map_err(|e| DaprError(format!("cannot read the outbox: {e}")))?;
        let sidecar = Sidecar::new(&settings.endpoint, settings.api_token.clone());
        let inbox = Arc::new(Inbox::new(&settings, store.clone()));
        Ok(Self {
            settings: Arc::new(settings),
            sidecar,
            store,
            head: Head::new(head),
            inbox,
            health,
            instance: uuid::Uuid::now_v7().simple().to_string(),
        })
    }
}

/// How often a consumer group checks that the sidecar is ready for it, once it was.
const CHECK_EVERY: Duration = Duration::from_secs(5);

#[async_trait]
impl Transport for DaprBus {
    fn name(&self) -> &'static str {
        "dapr"
    }

    fn register(&self, handler: &Arc<dyn Handler>, config: &ConsumerConfig) {
        self.inbox.register(handler.clone(), config.clone());
    }

    fn inbox(&self) -> Option<Arc<Inbox>> {
        Some(self.inbox.clone())
    }

    /// The sidecar pushes the group's events to the inbox; here the group reports whether
    /// the sidecar is there to do so, until `stop`, and then refuses further deliveries
    /// (`RETRY`, so the sidecar gives them to another instance or to this one again).
    async fn consume(
        &self,
        handler: Arc<dyn Handler>,
        config: ConsumerConfig,
        readiness: Readiness,
        mut stop: watch::Receiver<bool>,
    ) {
        let role = handler.role();
        let group = handler.group();
        self.inbox.register(handler, config);
        self.inbox.count_dead_letters(group).await;
        let mut health = self.health.clone();
        let mut was_ready = None;
        while !*stop.borrow() {
            let state = match health.last() {
                None => RoleState::Starting,
                Some(Ok(())) => RoleState::Ready,
                Some(Err(why)) => RoleState::Failing(why),
            };
            let ready = state == RoleState::Ready;
            if was_ready != Some(ready) {
                match &state {
                    RoleState::Failing(why) => tracing::warn!(group, "{why}"),
                    RoleState::Ready => {
                        tracing::info!(group, "the Dapr sidecar is ready; events come from it");
                    }
                    RoleState::Starting => {}
                }
                was_ready = Some(ready);
            }
            readiness.set(role, crate::CONSUMER_PART, state);
            tokio::select! {
                _ = health.changed() => {}
                _ = stop.changed() => {}
            }
        }
        self.inbox.close(group).await;
        readiness.set(role, crate::CONSUMER_PART, RoleState::Starting);
    }

    async fn relay(&self, readiness: Readiness, stop: watch::Receiver<bool>) {
        let relay = Relay {
            store: self.store.clone(),
            head: self.head.clone(),
            instance: self.instance.clone(),
            retention: self.settings.outbox_retention,
        };
        let publisher = publisher::Dapr::new(
            self.sidecar.clone(),
            &self.settings.pubsub,
            self.settings.bulk_publish,
        );
        relay.run(publisher, readiness, stop).await;
    }

    fn committed(&self, position: i64) {
        self.head.advance(position);
    }

    fn head(&self) -> i64 {
        self.head.get()
    }
}
