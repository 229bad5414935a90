//! A client of the sidecar's state API (`/v1.0/state/{store}`): small values that the api
//! replicas share outside any database transaction, each with its ETag so that a
//! read-modify-write is first-write-wins (a save with a stale ETag answers 409 and the
//! caller reads again). Values expire by the `ttlInSeconds` metadata, so nothing needs
//! cleaning up after a replica goes away.

use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;

use super::{Sidecar, valid_component_name};

/// How long one call may take: the calls sit on the path of a request, and a slow store is
/// treated as an unreachable one (the caller falls back to what it knows alone).
const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// A value read with the ETag a conditional save of it must carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub etag: Option<String>,
}

/// Why a call to the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the Dapr state store `{store}` cannot be reached: {why}")]
    Unreachable { store: String, why: String },
    #[error("the Dapr state store `{store}` refused {what}: {status} {body}")]
    Refused {
        store: String,
        what: &'static str,
        status: u16,
        body: String,
    },
}

/// The outcome of a conditional save or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Done,
    /// The ETag no longer matches: another writer came first; read again.
    Conflict,
}

/// A state store component, through the sidecar; cheap to clone.
#[derive(Debug, Clone)]
pub struct StateStore {
    sidecar: Sidecar,
    store: String,
}

impl StateStore {
    /// The state store component `store`, or why that is not a component name.
    pub fn new(sidecar: Sidecar, store: &str) -> Result<Self, String> {
        if !valid_component_name(store) {
            return Err(format!(
                "`{store}` is not a Dapr component name (letters, digits, `-`, `_` and `.`)"
            ));
        }
        Ok(Self {
            sidecar,
            store: store.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.store
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> StateError {
        StateError::Unreachable {
            store: self.store.clone(),
            why: e.to_string(),
        }
    }

    async fn refused(&self, what: &'static str, res: reqwest::Response) -> StateError {
        let status = res.status().as_u16();
        let body = res.text().await.unwrap_or_default();
        StateError::Refused {
            store: self.store.clone(),
            what,
            status,
            body: body.chars().take(200).collect(),
        }
    }

    /// The value under `key` and its ETag; `None` when there is none (or it expired).
    pub async fn get<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<Versioned<T>>, StateError> {
        let res = self
            .sidecar
            .request(
                reqwest::Method::GET,
                &format!("/v1.0/state/{}/{key}", self.store),
            )
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        match res.status() {
            reqwest::StatusCode::NO_CONTENT | reqwest::StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let etag = res
                    .headers()
                    .get(reqwest::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let bytes = res.bytes().await.map_err(|e| self.unreachable(e))?;
                if bytes.is_empty() {
                    return Ok(None);
                }
                // A value this process cannot read (another version wrote it) counts as none:
                // the next save replaces it.
                Ok(serde_json::from_slice(&bytes)
                    .ok()
                    .map(|value| Versioned { value, etag }))
            }
            _ => Err(self.refused("a read", res).await),
        }
    }

    /// Saves `value` under `key` for `ttl`; with an `etag`, only if the value still carries
    /// it (first-write-wins), else whatever is there (last-write-wins).
    pub async fn save<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        etag: Option<&str>,
        ttl: Duration,
    ) -> Result<Write, StateError> {
        let mut item = json!({
            "key": key,
            "value": value,
            "metadata": {"ttlInSeconds": ttl.as_secs().max(1).to_string()},
        });
        if let Some(etag) = etag {
            item["etag"] = json!(etag);
            item["options"] = json!({"concurrency": "first-write", "consistency": "strong"});
        }
        let res = self
            .sidecar
            .request(
                reqwest::Method::POST,
                &format!("/v1.0/state/{}", self.store),
            )
            .timeout(CALL_TIMEOUT)
            .json(&[item])
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        match res.status() {
            s if s.is_success() => Ok(Write::Done),
            reqwest::StatusCode::CONFLICT => Ok(Write::Conflict),
            _ => Err(self.refused("a save", res).await),
        }
    }

    /// Deletes `key`; with an `etag`, only if the value still carries it.
    pub async fn delete(&self, key: &str, etag: Option<&str>) -> Result<Write, StateError> {
        let mut req = self
            .sidecar
            .request(
                reqwest::Method::DELETE,
                &format!("/v1.0/state/{}/{key}", self.store),
            )
            .timeout(CALL_TIMEOUT);
        if let Some(etag) = etag {
            req = req.header(reqwest::header::IF_MATCH, etag);
        }
        let res = req.send().await.map_err(|e| self.unreachable(e))?;
        match res.status() {
            s if s.is_success() => Ok(Write::Done),
            reqwest::StatusCode::CONFLICT => Ok(Write::Conflict),
            _ => Err(self.refused("a delete", res).await),
        }
    }
}
