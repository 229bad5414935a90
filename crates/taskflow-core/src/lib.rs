//! Domain of taskflow: users, tasks, reminders, recurrence and the events every change
//! produces. Pure: no I/O. Every limit of the public contract is enforced by a type with a
//! fallible constructor, so a value of a domain type is valid by construction.

pub mod clock;
pub mod error;
pub mod event;
pub mod recur;
pub mod role;
pub mod task;
pub mod time;
pub mod trace;
pub mod user;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{FieldError, ValidationErrors};
pub use event::{
    CloudEvent, EventKind, NOTIFICATION_CREATED, NotificationData, REMINDER_TRIGGERED,
    ReminderData, TaskEventData, Topic,
};
pub use role::{Readiness, Role, RoleState};
pub use task::{
    Description, Due, Priority, Recurrence, RecurrenceAnchor, Reminder, ReminderSpec,
    ReminderStatus, Tag, Tags, Task, TaskDraft, TaskId, TaskPatch, TaskStatus, TaskTitle,
};
pub use user::{Email, Password, Timezone, User, UserId, UserName};
