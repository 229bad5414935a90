//! Use cases of taskflow: the only code that changes users and tasks. Each change writes its
//! new state and its CloudEvent in one transaction (the transactional outbox), then wakes the
//! bus.

mod auth;
mod conversations;
mod error;
mod housekeeping;
pub mod input;
mod records;
mod tasks;
pub mod trace;
mod unit;
mod users;

use std::sync::Arc;

use taskflow_bus::Transport;
use taskflow_core::Clock;
use taskflow_store::{ConversationStore, Store, TaskStore};

pub use auth::{Claims, TokenConfig, Tokens};
pub use conversations::MAX_MESSAGES;
pub use error::AppError;
pub use housekeeping::{KEEP_HANDLED, Tidied};
pub use input::{DraftInput, ListInput, PatchInput, ReminderInput};
pub use records::{MAX_HISTORY, MAX_NOTIFICATIONS, Notified, Rebuilt, rebuild_history};
/// The records the use cases read and take, as the store keeps them.
pub use taskflow_store::{
    AuditEntry, Conversation, DueReminder, Handled, Message, Notification, Order, SortBy,
    StoredEvent, TaskQuery, TaskRef,
};
pub use tasks::TaskPage;
pub use unit::UnitOfWork;
pub use users::{ProfilePatch, Signup};

/// The role name put in the `source` of events the API produces.
pub const API_SOURCE: &str = taskflow_core::Role::Api.source();

/// Everything the use cases need; cheap to clone.
#[derive(Clone, Debug)]
pub struct App {
    store: Arc<dyn Store>,
    /// Where task use cases read and write: the store, or the open unit of work.
    tasks: Arc<dyn TaskStore>,
    /// Where conversations are read and written: the store, or the open unit of work.
    chats: Arc<dyn ConversationStore>,
    /// The unit of work this `App` runs in, if any.
    unit: Option<Arc<unit::Pending>>,
    bus: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    tokens: Tokens,
}

impl App {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
        tokens: Tokens,
    ) -> Self {
        Self {
            tasks: store.clone(),
            chats: store.clone(),
            unit: None,
            store,
            bus,
            clock,
            tokens,
        }
    }

    pub fn bus(&self) -> &Arc<dyn Transport> {
        &self.bus
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }
}
