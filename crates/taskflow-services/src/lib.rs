//! The consumers of taskflow's events. Each is a consumer group (a `taskflow_bus::Handler`
//! run by whichever transport is configured) and changes state only through the use cases or the store's
//! transactional writes, so every effect comes with its own event:
//!
//! - [`recurring`]: on `task.completed` of a recurring task, creates the next occurrence;
//! - [`reminders`]: durable timers over the reminders table; fires `reminder.triggered`;
//! - [`notifier`]: turns fired reminders into stored notifications;
//! - [`audit`]: appends every event to the append-only audit log;
//! - [`sync`]: fans each user's events out to that user's open connections.

pub mod audit;
pub mod jobs;
pub mod notifier;
pub mod recurring;
pub mod reminders;
pub mod sync;

pub use audit::Audit;
pub use jobs::DaprJobs;
pub use notifier::Notifier;
pub use recurring::Recurring;
pub use reminders::{ReminderHandler, Scheduler};
pub use sync::{Hub, HubFeed, Subscription, TooManyStreams};
