//! The Kafka transport: the `relay` role publishes the outbox to the topics `task-events`,
//! `reminders` and `task-updates` (key = user id, so one user's events stay in order), and
//! every role reads them in its own consumer group.
//!
//! On the wire an event is its CloudEvent in structured mode (`content-type:
//! application/cloudevents+json`) with the outbox position as the CloudEvents `sequence`
//! extension (see the `wire` module): the position a handler sees, and an SSE id, are the
//! same as on the embedded log.

mod consumer;
mod relay;

use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::ClientContext,
    config::RDKafkaLogLevel,
    types::RDKafkaErrorCode,
};
use taskflow_core::{Readiness, Topic};
use taskflow_store::Store;
use tokio::sync::watch;

use crate::{ConsumerConfig, Handler, Head, Transport};

/// How to reach the brokers and lay out the topics.
#[derive(Clone)]
pub struct KafkaSettings {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: String,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`, with SASL.
    pub sasl_mechanism: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// CA certificates to trust for TLS (PEM), when not the system's.
    pub ca_file: Option<PathBuf>,
    pub client_id: String,
    /// Put before every topic and consumer group name, so that several deployments can share
    /// one cluster (`staging.` gives `staging.task-events`); empty by default.
    pub topic_prefix: String,
    /// Whether missing topics are created at start; off where the topics are provisioned
    /// apart and the credentials may not create them.
    pub create_topics: bool,
    /// Partitions and replication factor of topics this process creates.
    pub partitions: i32,
    pub replication_factor: i32,
    /// How long relayed rows stay in the outbox (where `Last-Event-ID` replays read them);
    /// `None` keeps them for good.
    pub outbox_retention: Option<Duration>,
    /// librdkafka debug contexts (`broker,cgrp,fetch`, `all`) for its log lines, which go
    /// to the process's log at debug level under the target `librdkafka`.
    pub debug: Option<String>,
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca_file", &self.ca_file)
            .field("client_id", &self.client_id)
            .field("topic_prefix", &self.topic_prefix)
            .field("create_topics", &self.create_topics)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("outbox_retention", &self.outbox_retention)
            .field("debug", &self.debug)
            .finish()
    }
}

impl KafkaSettings {
    /// The client configuration every producer, consumer and admin client starts from.
    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("security.protocol", &self.security_protocol)
            // Back at most 2 s after a broker returns (librdkafka's default backs off to 10 s).
            .set("reconnect.backoff.max.ms", "2000");
        if let Some(m) = &self.sasl_mechanism {
            c.set("sasl.mechanism", m);
        }
        if let Some(u) = &self.username {
            c.set("sasl.username", u);
        }
        if let Some(p) = &self.password {
            c.set("sasl.password", p);
        }
        if let Some(ca) = &self.ca_file {
            c.set("ssl.ca.location", ca.display().to_string());
        }
        if let Some(d) = &self.debug {
            c.set("debug", d);
        }
        c
    }

    /// The name of `topic` on the cluster.
    fn topic(&self, topic: Topic) -> String {
        format!("{}{}", self.topic_prefix, topic.as_str())
    }

    /// The topic a cluster topic name stands for.
    fn topic_of(&self, name: &str) -> Option<Topic> {
        Topic::parse(name.strip_prefix(self.topic_prefix.as_str())?)
    }

    /// The name of consumer group `group` on the cluster.
    fn group(&self, group: &str) -> String {
        format!("{}{group}", self.topic_prefix)
    }
}

/// A client context that sends librdkafka's own log lines (a broker refusing the
/// credentials, a group coordinator lost) to the process's log under the target `librdkafka`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Logged;

impl ClientContext for Logged {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        forward_log(level, facility, message);
    }
}

/// Logs one line of librdkafka's at its level.
fn forward_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

/// Why the Kafka transport cannot start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KafkaError(String);

/// The Kafka transport; cheap to clone.
#[derive(Clone)]
pub struct KafkaBus {
    settings: Arc<KafkaSettings>,
    store: Arc<dyn Store>,
    head: Head,
    /// This process, in group names of its own (live fan-out) and in the relay's lease.
    instance: String,
}

impl fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaBus")
            .field("brokers", &self.settings.brokers)
            .field("instance", &self.instance)
            .finish()
    }
}

impl KafkaBus {
    /// Connects, creating the topics that are missing (brokers need not auto-create them)
    /// unless `create_topics` is off.
    pub async fn open(settings: KafkaSettings, store: Arc<dyn Store>) -> Result<Self, KafkaError> {
        if settings.create_topics {
            create_topics(&settings).await?;
        }
        let head = store
            .last_position()
            .await
            .map_err(|e| KafkaError(format!("cannot read the outbox: {e}")))?;
        Ok(Self {
            settings: Arc::new(settings),
            store,
            head: Head::new(head),
            instance: uuid::Uuid::now_v7().simple().to_string(),
        })
    }

    /// The Kafka consumer group of a handler's `group`: the group itself where it keeps
    /// offsets (`durable`), else one of this process alone (live fan-out).
    pub fn group_id(&self, group: &str, durable: bool) -> String {
        if durable {
            self.settings.group(group)
        } else {
            self.settings.group(&format!("{group}-{}", self.instance))
        }
    }
}

/// Creates the topics that are missing.
async fn create_topics(settings: &KafkaSettings) -> Result<(), KafkaError> {
    let admin: AdminClient<Logged> = settings
        .client()
        .create_with_context(Logged)
        .map_err(|e| KafkaError(format!("cannot create the Kafka admin client: {e}")))?;
    let names: Vec<String> = Topic::ALL.iter().map(|t| settings.topic(*t)).collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            let replication = TopicReplication::Fixed(settings.replication_factor);
            NewTopic::new(name, settings.partitions, replication)
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results =
        tokio::time::timeout(Duration::from_secs(30), admin.create_topics(&topics, &opts))
            .await
            .map_err(|_| {
                KafkaError(format!(
                    "the Kafka brokers {} did not answer within 30 s",
                    settings.brokers
                ))
            })?
            .map_err(|e| {
                KafkaError(format!(
                    "cannot create the topics on {}: {e}",
                    settings.brokers
                ))
            })?;
    for r in results {
        match r {
            Ok(topic) => tracing::info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((
                topic,
                code @ (RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed),
            )) => {
                return Err(KafkaError(format!(
                    "cannot create topic {topic}: {code}; create the topics apart and start with --kafka-create-topics false"
                )));
            }
            Err((topic, code)) => {
                return Err(KafkaError(format!("cannot create topic {topic}: {code}")));
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Transport for KafkaBus {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn consume(
        &self,
        handler: Arc<dyn Handler>,
        config: ConsumerConfig,
        readiness: Readiness,
        stop: watch::Receiver<bool>,
    ) {
        consumer::run(self, handler, config, readiness, stop).await;
    }

    async fn relay(&self, readiness: Readiness, stop: watch::Receiver<bool>) {
        relay::run(self, readiness, stop).await;
    }

    fn committed(&self, position: i64) {
        self.head.advance(position);
    }

    fn head(&self) -> i64 {
        self.head.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_groups_carry_the_prefix_and_the_password_stays_hidden() {
        let prefixed = KafkaSettings {
            brokers: String::new(),
            security_protocol: "plaintext".into(),
            sasl_mechanism: None,
            username: None,
            password: Some("secret".into()),
            ca_file: None,
            client_id: "taskflow".into(),
            topic_prefix: "staging.".into(),
            create_topics: true,
            partitions: 1,
            replication_factor: 1,
            outbox_retention: None,
            debug: None,
        };
        assert_eq!(prefixed.topic(Topic::Reminders), "staging.reminders");
        assert_eq!(
            prefixed.topic_of("staging.task-updates"),
            Some(Topic::TaskUpdates)
        );
        assert_eq!(
            prefixed.topic_of("task-updates"),
            None,
            "another deployment's"
        );
        assert_eq!(prefixed.group("audit"), "staging.audit");
        assert!(
            !format!("{prefixed:?}").contains("secret"),
            "the password is not in Debug"
        );
    }
}
