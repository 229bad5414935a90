//! The embedded transport: the outbox table is the event log. Consumer groups read it in
//! position order and keep their offsets in the store; a commit in this process wakes them
//! at once, and they poll for commits made by other processes.

mod consumer;

use std::sync::Arc;

use async_trait::async_trait;
use taskflow_core::Readiness;
use taskflow_store::{Result, Store};
use tokio::sync::watch;

use crate::{ConsumerConfig, Handler, Head, Transport};
use consumer::Consumer;

/// The embedded event log and its wake-ups.
#[derive(Clone)]
pub struct EmbeddedBus {
    log: Arc<dyn Store>,
    head: Head,
}

impl std::fmt::Debug for EmbeddedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBus")
            .field("head", &self.head.get())
            .finish()
    }
}

impl EmbeddedBus {
    /// A bus over `log`, starting from its current head.
    pub async fn open(log: Arc<dyn Store>) -> Result<Self> {
        let head = log.last_position().await?;
        Ok(Self {
            log,
            head: Head::new(head),
        })
    }

    /// The store the log lives in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.log
    }
}

#[async_trait]
impl Transport for EmbeddedBus {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn consume(
        &self,
        handler: Arc<dyn Handler>,
        config: ConsumerConfig,
        readiness: Readiness,
        stop: watch::Receiver<bool>,
    ) {
        Consumer::new(handler, self.clone(), config, readiness)
            .run(stop)
            .await;
    }

    fn committed(&self, position: i64) {
        self.head.advance(position);
    }

    fn head(&self) -> i64 {
        self.head.get()
    }
}
