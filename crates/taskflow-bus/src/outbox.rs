//! Reading the outbox in position order, for the embedded transport's consumers and for the
//! relay that publishes to a broker.
//!
//! Positions are contiguous except where a transaction rolled back. On PostgreSQL a lower
//! position can commit after a higher one, so at a gap the reader waits until every
//! transaction that was running when it saw the gap has ended; only then is the gap final.

use std::sync::Arc;

use taskflow_store::{Result, Store, StoredEvent};

/// A batch the reader hands out.
#[derive(Debug)]
pub(crate) struct Read {
    /// Committed events right after the previous batch, in position order.
    pub events: Vec<StoredEvent>,
    /// More may be readable at once (the batch was full, or a gap follows it).
    pub more: bool,
    /// A gap follows that a running transaction may still fill: read again shortly.
    pub pause: bool,
}

/// Where a reader is at a gap in positions.
struct Gap {
    at: i64,
    snapshot: Option<String>,
    /// Every transaction that could fill the gap has ended: the next read is final.
    settled: bool,
}

/// A reader of the outbox after a position.
pub(crate) struct OutboxReader {
    store: Arc<dyn Store>,
    offset: i64,
    gap: Option<Gap>,
}

impl OutboxReader {
    pub(crate) fn new(store: Arc<dyn Store>, offset: i64) -> Self {
        Self {
            store,
            offset,
            gap: None,
        }
    }

    /// The position of the last event handed out.
    pub(crate) fn offset(&self) -> i64 {
        self.offset
    }

    /// The next events, up to `limit`.
    pub(crate) async fn next(&mut self, limit: i64) -> Result<Read> {
        loop {
            let mut events = self.store.events_after(self.offset, limit).await?;
            let read = events.len();
            let contiguous = events
                .iter()
                .enumerate()
                .take_while(|(i, e)| e.position == self.offset + 1 + *i as i64)
                .count();
            if contiguous == 0 && read > 0 {
                // A gap right after the offset: final, or a transaction still committing?
                if self.gap_is_final(self.offset + 1).await {
                    tracing::debug!(
                        from = self.offset + 1,
                        to = events[0].position - 1,
                        "skipping a final gap"
                    );
                    self.offset = events[0].position - 1;
                    self.gap = None;
                    continue;
                }
                if self.gap.as_ref().is_some_and(|g| g.settled) {
                    continue;
                }
                return Ok(Read {
                    events: Vec::new(),
                    more: true,
                    pause: true,
                });
            }
            self.gap = None;
            events.truncate(contiguous);
            if let Some(last) = events.last() {
                self.offset = last.position;
            }
            return Ok(Read {
                events,
                more: read == limit as usize || contiguous < read,
                pause: false,
            });
        }
    }

    /// Whether the gap at `at`, in a batch just read, is final. A gap is final only when a
    /// read made after every transaction that could fill it has ended still shows it: once
    /// that holds, this says "read again" (false) one more time, and the read after it decides.
    async fn gap_is_final(&mut self, at: i64) -> bool {
        match &mut self.gap {
            Some(g) if g.at == at && g.settled => true,
            Some(g) if g.at == at => {
                g.settled = match &g.snapshot {
                    None => true,
                    Some(s) => self.store.settled(s).await.unwrap_or(false),
                };
                false
            }
            _ => {
                let snapshot = self.store.snapshot().await.ok().flatten();
                // Without a snapshot (SQLite) positions commit in order: one more read decides.
                let settled = snapshot.is_none();
                self.gap = Some(Gap {
                    at,
                    snapshot,
                    settled,
                });
                false
            }
        }
    }
}
