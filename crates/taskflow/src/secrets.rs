//! Settings given as references into a Dapr secret store (`--dapr-secret-store`): a value
//! `dapr-secret:NAME` or `dapr-secret:NAME/KEY` is replaced at start by key `KEY` (by default
//! `NAME`) of the secret `NAME`, read with `GET /v1.0/secrets/{store}/{NAME}`. The database
//! URL, the token secret, the model's API key and the Kafka credentials may be given so.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret as _, SecretString};
use taskflow_bus::dapr::{Sidecar, valid_component_name};

use crate::cli::{DbOpts, ServeOpts, SidecarOpts};

/// What marks a setting's value as a reference to a secret.
const PREFIX: &str = "dapr-secret:";

/// A reference: the secret's name and the key in it.
fn reference(value: &str) -> Option<(&str, &str)> {
    let r = value.strip_prefix(PREFIX)?;
    Some(match r.split_once('/') {
        Some((name, key)) => (name, key),
        None => (r, r),
    })
}

/// Replaces every setting of `opts` that refers to a secret by the secret; what is wrong
/// (no store named, no sidecar, no such secret), naming the setting.
pub async fn resolve(opts: &mut ServeOpts) -> Result<(), String> {
    let mut reader = Reader::new(&opts.dapr.sidecar);
    let db = &mut opts.db.database_url;
    if let Some(v) = reader.read("--database-url", db).await? {
        *db = v;
    }
    for (flag, field) in [
        ("--jwt-secret", &mut opts.jwt_secret),
        ("--llm-api-key", &mut opts.llm_api_key),
        ("--kafka-password", &mut opts.kafka.kafka_password),
    ] {
        if let Some(current) = field.as_ref()
            && let Some(v) = reader.read(flag, current.expose_secret()).await?
        {
            *field = Some(SecretString::from(v));
        }
    }
    if let Some(current) = &opts.kafka.kafka_username
        && let Some(v) = reader.read("--kafka-username", current).await?
    {
        opts.kafka.kafka_username = Some(v);
    }
    Ok(())
}

/// As [`resolve`], for a command that needs the database URL alone (`migrate`, `audit
/// rebuild`).
pub async fn resolve_database_url(db: &mut DbOpts, sidecar: &SidecarOpts) -> Result<(), String> {
    if let Some(v) = Reader::new(sidecar)
        .read("--database-url", &db.database_url)
        .await?
    {
        db.database_url = v;
    }
    Ok(())
}

struct Reader<'a> {
    store: Option<&'a str>,
    sidecar: Option<Sidecar>,
    wait: Duration,
    /// Whether the sidecar answered already.
    ready: bool,
}

impl<'a> Reader<'a> {
    fn new(opts: &'a SidecarOpts) -> Self {
        let store = opts.dapr_secret_store.as_deref();
        Self {
            store,
            sidecar: store.map(|_| opts.sidecar()),
            wait: Duration::from_secs(opts.dapr_wait_secs),
            ready: false,
        }
    }

    /// The secret `value` refers to, or `None` when it is a plain value.
    async fn read(&mut self, flag: &str, value: &str) -> Result<Option<String>, String> {
        let Some((name, key)) = reference(value) else {
            return Ok(None);
        };
        let (Some(store), Some(sidecar)) = (self.store, self.sidecar.as_ref()) else {
            return Err(format!(
                "{flag} refers to the Dapr secret `{name}`, but no secret store is named (--dapr-secret-store)"
            ));
        };
        if name.is_empty() || key.is_empty() || !valid_component_name(name) {
            return Err(format!(
                "{flag}: `{value}` is not a secret reference (dapr-secret:NAME or dapr-secret:NAME/KEY)"
            ));
        }
        if !self.ready {
            wait_for(sidecar, self.wait).await?;
            self.ready = true;
        }
        let res = sidecar
            .request(
                reqwest::Method::GET,
                &format!("/v1.0/secrets/{store}/{name}"),
            )
            .send()
            .await
            .map_err(|e| format!("{flag}: cannot read the Dapr secret `{name}`: {e}"))?;
        let status = res.status();
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        if !status.is_success() {
            let why = body["message"].as_str().unwrap_or("no reason given");
            return Err(format!(
                "{flag}: the Dapr secret store `{store}` has no secret `{name}` ({status}: {why})"
            ));
        }
        match body[key].as_str() {
            Some(v) if !v.is_empty() => Ok(Some(v.to_owned())),
            _ => Err(format!(
                "{flag}: the Dapr secret `{name}` of store `{store}` has no key `{key}`"
            )),
        }
    }
}

/// Waits until the sidecar's components are ready (it starts beside this process).
async fn wait_for(sidecar: &Sidecar, wait: Duration) -> Result<(), String> {
    let deadline = Instant::now() + wait;
    loop {
        match sidecar.outbound_ready().await {
            Ok(()) => return Ok(()),
            Err(why) if Instant::now() >= deadline => {
                return Err(format!(
                    "cannot read secrets: {why} (waited {} s, --dapr-wait-secs)",
                    wait.as_secs()
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_names_a_secret_and_a_key_in_it() {
        assert_eq!(reference("dapr-secret:db"), Some(("db", "db")));
        assert_eq!(
            reference("dapr-secret:taskflow/jwt-secret"),
            Some(("taskflow", "jwt-secret"))
        );
        assert_eq!(reference("postgres://u@h/db"), None);
    }
}
