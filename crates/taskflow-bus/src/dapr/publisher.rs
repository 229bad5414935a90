//! The relay's publisher for Dapr: each event as its CloudEvent (`application/cloudevents+json`,
//! which the sidecar passes through without wrapping), with `partitionKey` = user id, so a
//! Kafka component behind the sidecar keeps one user's events in order.
//!
//! A round's events go topic by topic, in order: through the bulk API in chunks (one request
//! for many events), or one awaited request an event. What is acknowledged is what the sidecar
//! answered 204 for; a refusal stops the round at the first event that was not published, and
//! the relay tries it again (what went through twice is recognised downstream by its id).

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskflow_core::Topic;
use taskflow_store::StoredEvent;

use super::Sidecar;
use crate::{
    relay::{Publisher, Round},
    wire,
};

/// Events in one bulk request: well under the sidecar's default 4 MiB request limit.
const CHUNK: usize = 200;

pub(super) struct Dapr {
    sidecar: Sidecar,
    pubsub: String,
    bulk: bool,
}

impl Dapr {
    pub(super) fn new(sidecar: Sidecar, pubsub: &str, bulk: bool) -> Self {
        Self {
            sidecar,
            pubsub: pubsub.to_owned(),
            bulk,
        }
    }

    /// Publishes `events` (indices into the round, all of `topic`) in order; the first that
    /// did not go through and why, or `None` when all did; refusals for good into `refused`.
    async fn topic(
        &self,
        topic: Topic,
        round: &[StoredEvent],
        events: &[usize],
        refused: &mut Vec<(usize, String)>,
    ) -> Option<(usize, String)> {
        if self.bulk {
            for chunk in events.chunks(CHUNK) {
                if let Some(failed) = self.bulk(topic, round, chunk).await {
                    return Some(failed);
                }
            }
            None
        } else {
            for &i in events {
                match self.one(topic, &round[i]).await {
                    Ok(()) => {}
                    Err(Refusal::ForGood(why)) => refused.push((i, why)),
                    Err(Refusal::ForNow(why)) => return Some((i, why)),
                }
            }
            None
        }
    }

    /// `POST /v1.0/publish/{pubsub}/{topic}?metadata.partitionKey={user}` for one event.
    async fn one(&self, topic: Topic, e: &StoredEvent) -> Result<(), Refusal> {
        let path = format!(
            "/v1.0/publish/{}/{}?metadata.partitionKey={}",
            self.pubsub,
            topic.as_str(),
            e.event.userid
        );
        let req = self
            .sidecar
            .request(Method::POST, &path)
            .header(reqwest::header::CONTENT_TYPE, wire::CONTENT_TYPE)
            .body(wire::encode(e));
        let res = req.send().await.map_err(|e| {
            Refusal::ForNow(format!(
                "the Dapr sidecar at {} does not answer: {e}",
                self.sidecar.endpoint()
            ))
        })?;
        let status = res.status();
        if status.is_success() {
            return Ok(());
        }
        let why = refusal(status, &res.text().await.unwrap_or_default());
        Err(if status == StatusCode::PAYLOAD_TOO_LARGE {
            Refusal::ForGood(why)
        } else {
            Refusal::ForNow(why)
        })
    }

    /// `POST /v1.0-alpha1/publish/bulk/{pubsub}/{topic}` for `chunk` (in order); the first
    /// event of it that failed and why, or `None` when all went through.
    async fn bulk(
        &self,
        topic: Topic,
        round: &[StoredEvent],
        chunk: &[usize],
    ) -> Option<(usize, String)> {
        let entries: Vec<Value> = chunk
            .iter()
            .map(|&i| {
                let e = &round[i];
                json!({
                    "entryId": i.to_string(),
                    "event": wire::encode_value(e),
                    "contentType": wire::CONTENT_TYPE,
                    "metadata": {"partitionKey": e.event.userid},
                })
            })
            .collect();
        let path = format!(
            "/v1.0-alpha1/publish/bulk/{}/{}",
            self.pubsub,
            topic.as_str()
        );
        let sent = self
            .sidecar
            .request(Method::POST, &path)
            .json(&entries)
            .send()
            .await;
        let res = match sent {
            Ok(res) => res,
            Err(e) => {
                let why = format!(
                    "the Dapr sidecar at {} does not answer: {e}",
                    self.sidecar.endpoint()
                );
                return Some((chunk[0], why));
            }
        };
        let status = res.status();
        if status.is_success() {
            return None;
        }
        let body = res.text().await.unwrap_or_default();
        let why = refusal(status, &body);
        // The entries that failed, where the sidecar says; else all of them.
        let failed: Option<usize> = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| {
                v["failedEntries"].as_array().map(|list| {
                    list.iter()
                        .filter_map(|f| f["entryId"].as_str()?.parse::<usize>().ok())
                        .filter(|i| chunk.contains(i))
                        .min()
                })
            })
            .flatten();
        Some((failed.unwrap_or(chunk[0]), why))
    }
}

enum Refusal {
    /// The same event would be refused again (too large for the sidecar).
    ForGood(String),
    ForNow(String),
}

/// Why the sidecar refused, from its answer (`{"errorCode", "message"}`).
fn refusal(status: StatusCode, body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    match (v["errorCode"].as_str(), v["message"].as_str()) {
        (Some(code), Some(message)) => {
            format!("the Dapr sidecar answered {status}: {code}: {message}")
        }
        (Some(code), None) => format!("the Dapr sidecar answered {status}: {code}"),
        _ => format!("the Dapr sidecar answered {status}"),
    }
}

#[async_trait]
impl Publisher for Dapr {
    async fn publish(&mut self, events: &[StoredEvent]) -> Round {
        let mut refused = Vec::new();
        let mut failed: Option<(usize, String)> = None;
        for topic in Topic::ALL {
            // Past an event that failed, nothing needs to go now: it goes again from there.
            let before = failed.as_ref().map_or(events.len(), |(f, _)| *f);
            let of_topic: Vec<usize> = (0..before).filter(|&i| events[i].topic == topic).collect();
            if of_topic.is_empty() {
                continue;
            }
            if let Some((i, why)) = self.topic(topic, events, &of_topic, &mut refused).await
                && failed.as_ref().is_none_or(|(f, _)| i < *f)
            {
                failed = Some((i, why));
            }
        }
        Round::settle(events.len(), failed, refused)
    }
}
