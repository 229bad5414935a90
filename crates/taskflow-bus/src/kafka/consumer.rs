//! A consumer group on Kafka: one group per role (the role's name), or one per process for
//! live fan-out (`sync`: every instance sees every event, from the end of the log).
//!
//! Offsets are stored only after the handler's effect is durable (or the event was parked),
//! and committed every second, on partition revocation and on stop; after a crash the events
//! since the last commit come again, and the handled-event records make them harmless.

use std::{sync::Arc, time::Duration};

use rdkafka::{
    ClientContext, Message, Offset, Statistics, TopicPartitionList,
    consumer::{
        BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
    },
    error::KafkaError,
    message::BorrowedMessage,
    types::RDKafkaRespErr,
};
use taskflow_core::{Readiness, Role, RoleState};
use tokio::sync::watch;

use super::KafkaBus;
use crate::{ConsumerConfig, Handler, handler::Delivery, wait, wire};

const PART: &str = crate::CONSUMER_PART;
/// The pause after an error from the client, before the next read.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// How often a failing group warns in the log (the other errors are logged at debug level).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Reports the group ready once it has partitions (so a process is not ready before it
/// would see new events), and commits what is stored before partitions go.
struct GroupContext {
    readiness: Readiness,
    role: Role,
    /// The group's name as the metrics label it (without the cluster's prefix).
    label: &'static str,
    /// Whether the group keeps offsets (not a live fan-out group).
    durable: bool,
    /// For the topics' names as the metrics label them (without the cluster's prefix).
    settings: Arc<super::KafkaSettings>,
    /// A live fan-out group's next offset per partition it was assigned: a rebalance that
    /// hands a partition back resumes there, so the events in between still reach the
    /// clients.
    resume: std::sync::Mutex<std::collections::HashMap<(String, i32), i64>>,
}

impl GroupContext {
    fn resume_at(&self, topic: &str, partition: i32) -> Option<i64> {
        let resume = self.resume.lock().unwrap_or_else(|e| e.into_inner());
        resume.get(&(topic.to_owned(), partition)).copied()
    }

    /// Notes that a live fan-out group has handed on `messages`.
    fn read(&self, messages: &[BorrowedMessage<'_>]) {
        let mut resume = self.resume.lock().unwrap_or_else(|e| e.into_inner());
        for m in messages {
            resume.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
        }
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        super::forward_log(level, facility, message);
    }

    /// Consumer lag from librdkafka's statistics: per partition, and summed per group.
    fn stats(&self, statistics: Statistics) {
        let mut total = 0;
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 while unknown; the internal partition -1 carries no messages.
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                total += p.consumer_lag;
                let Some(topic) = self.settings.topic_of(topic) else {
                    continue;
                };
                metrics::gauge!("taskflow_consumer_partition_lag", "consumer" => self.label,
                    "topic" => topic.as_str(), "partition" => partition.to_string())
                .set(p.consumer_lag as f64);
            }
        }
        metrics::gauge!("taskflow_consumer_lag", "consumer" => self.label).set(total as f64);
    }
}

impl ConsumerContext for GroupContext {
    /// As rdkafka's own, except that a live fan-out group is assigned the end of each
    /// partition as it is now, read here: with `auto.offset.reset=latest` alone the end is
    /// looked up after the group reports ready, and an event written in between was missed by
    /// the clients that had just connected. A partition it read before (a rebalance took it
    /// away and gave it back) resumes after the last event it handed on instead: from the
    /// end, the events written meanwhile would never reach the open streams.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let assign = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        if assign && !self.durable {
            let parts: Vec<(String, i32)> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            for (topic, partition) in parts {
                if let Some(next) = self.resume_at(&topic, partition) {
                    tracing::info!(
                        topic,
                        partition,
                        offset = next,
                        "a live partition came back; resuming where it was left"
                    );
                    let _ = tpl.set_partition_offset(&topic, partition, Offset::Offset(next));
                    continue;
                }
                match consumer.fetch_watermarks(&topic, partition, Duration::from_secs(5)) {
                    Ok((_, end)) => {
                        let _ = tpl.set_partition_offset(&topic, partition, Offset::Offset(end));
                        self.resume
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert((topic, partition), end);
                    }
                    Err(e) => tracing::warn!(topic, partition, error = %e,
                        "cannot read where the partition ends; starting from the latest offset"),
                }
            }
        }
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(tpl),
            _ => Rebalance::Error(KafkaError::Rebalance(err.into())),
        };
        self.pre_rebalance(consumer, &rebalance);
        let done = if assign {
            consumer.assign(tpl)
        } else {
            consumer.unassign()
        };
        if let Err(e) = done {
            tracing::warn!(role = %self.role, error = %e, "cannot apply the new assignment");
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance
            && self.durable
            && let Err(e) = consumer.commit_consumer_state(CommitMode::Sync)
        {
            tracing::debug!(error = %e, "nothing committed before the partitions were revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(parts) => {
                tracing::info!(role = %self.role, partitions = parts.count(), "partitions assigned");
                self.readiness.set(self.role, PART, RoleState::Ready);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                self.readiness.set(
                    self.role,
                    PART,
                    RoleState::Failing(format!("rebalance: {e}")),
                );
            }
        }
    }
}

pub(super) async fn run(
    bus: &KafkaBus,
    handler: Arc<dyn Handler>,
    config: ConsumerConfig,
    readiness: Readiness,
    mut stop: watch::Receiver<bool>,
) {
    let role = handler.role();
    readiness.set(role, PART, RoleState::Starting);
    let group = bus.group_id(handler.group(), config.durable);
    let context = GroupContext {
        readiness: readiness.clone(),
        role,
        label: handler.group(),
        durable: config.durable,
        settings: bus.settings.clone(),
        resume: std::sync::Mutex::default(),
    };
    let consumer: StreamConsumer<GroupContext> = match bus
        .settings
        .client()
        .set("group.id", &group)
        // A live fan-out group keeps no offsets: it starts at the end every time.
        .set(
            "enable.auto.commit",
            if config.durable { "true" } else { "false" },
        )
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            if config.durable { "earliest" } else { "latest" },
        )
        .set("session.timeout.ms", "6000")
        // A fetch waits at most this long for new messages (librdkafka's default, 500 ms,
        // is most of the latency from a write to a live stream).
        .set("fetch.wait.max.ms", "50")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "2000")
        .create_with_context(context)
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(group, error = %e, "cannot create the Kafka consumer");
            readiness.set(
                role,
                PART,
                RoleState::Failing(format!("cannot create the consumer: {e}")),
            );
            return;
        }
    };
    let topics: Vec<String> = handler
        .topics()
        .iter()
        .map(|t| bus.settings.topic(*t))
        .collect();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    if let Err(e) = consumer.subscribe(&topics) {
        tracing::error!(group, error = %e, "cannot subscribe to the topics");
        readiness.set(
            role,
            PART,
            RoleState::Failing(format!("cannot subscribe: {e}")),
        );
        return;
    }
    tracing::info!(group, "consumer started");
    let delivery = Delivery {
        handler,
        config,
        store: bus.store.clone(),
    };
    if delivery.config.durable {
        delivery.count_dead_letters().await;
    }
    let batch = delivery.config.batch.max(1) as usize;
    let mut failing = false;
    let mut last_warned: Option<std::time::Instant> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let first = tokio::select! {
            m = consumer.recv() => m,
            _ = stop.changed() => break,
        };
        let first = match first {
            Ok(m) => m,
            // librdkafka reconnects by itself; an error here is news of that, queued ahead of
            // the messages. The queue is drained at once (a pause per error would leave the
            // group reading an outage's backlog of errors long after the brokers are back),
            // with a pause too short to matter that keeps a persistent error from spinning,
            // and a warning at most every WARN_EVERY.
            Err(e) => {
                if last_warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    tracing::warn!(group, error = %e, "cannot read from Kafka; retrying");
                    last_warned = Some(std::time::Instant::now());
                } else {
                    tracing::debug!(group, error = %e, "cannot read from Kafka; retrying");
                }
                readiness.set(role, PART, RoleState::Failing(format!("cannot read: {e}")));
                failing = true;
                if wait(&mut stop, ERROR_PAUSE).await {
                    break;
                }
                continue;
            }
        };
        if std::mem::take(&mut failing) {
            readiness.set(role, PART, RoleState::Ready);
        }
        // What else is there already, up to a batch, without waiting.
        let mut messages = vec![first];
        while messages.len() < batch {
            match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                Ok(Ok(m)) => messages.push(m),
                _ => break,
            }
        }
        delivery
            .deliver(envelopes(
                &bus.settings,
                &group,
                delivery.handler.group(),
                &messages,
            ))
            .await;
        if !delivery.config.durable {
            consumer.context().read(&messages);
        }
        for m in &messages {
            if let Err(e) = consumer.store_offset_from_message(m) {
                tracing::warn!(group, error = %e, "cannot store the offset");
            }
        }
    }
    if delivery.config.durable
        && let Err(e) = consumer.commit_consumer_state(CommitMode::Sync)
    {
        tracing::debug!(group, error = %e, "no offsets to commit on stop");
    }
    readiness.set(role, PART, RoleState::Starting);
    tracing::info!(group, "consumer stopped");
}

/// The events of `messages`, counted per topic under the group's `label`; a message that is
/// no event of ours is logged, counted and passed over (it would fail the same way on every
/// try).
fn envelopes(
    settings: &super::KafkaSettings,
    group: &str,
    label: &'static str,
    messages: &[BorrowedMessage<'_>],
) -> Vec<crate::Envelope> {
    messages
        .iter()
        .filter_map(|m| {
            let topic = settings.topic_of(m.topic());
            let decoded = wire::decode(topic, m.payload().unwrap_or_default());
            match decoded {
                Ok(e) => {
                    metrics::counter!("taskflow_events_consumed_total", "consumer" => label,
                        "topic" => e.topic.as_str())
                    .increment(1);
                    Some(e)
                }
                Err(why) => {
                    tracing::error!(group, topic = m.topic(), partition = m.partition(), offset = m.offset(),
                        error = %why, "dropping a message that is not a taskflow event");
                    metrics::counter!("taskflow_events_malformed_total", "consumer" => label)
                        .increment(1);
                    None
                }
            }
        })
        .collect()
}
