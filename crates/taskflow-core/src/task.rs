//! Tasks and everything a task carries: title, description, priority, tags, due date or
//! time, recurrence, reminders. Each limit of the API contract lives in one type here.

use std::{collections::HashSet, fmt, str::FromStr};

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use serde::{Serialize, Serializer, ser::SerializeStruct};
use uuid::Uuid;

use crate::{
    error::ValidationErrors,
    user::{Timezone, UserId},
};

/// The id of a task.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct TaskId(pub Uuid);

impl TaskId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A title: 1 to 500 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TaskTitle(String);

impl TaskTitle {
    pub const MAX_LEN: usize = 500;

    /// Trims whitespace and invisible format characters (zero-width spaces, bidi marks, a
    /// byte-order mark …) from both ends, then checks 1–500 characters.
    pub fn parse(raw: &str) -> Result<Self, ValidationErrors> {
        let s = raw.trim_matches(|c: char| c.is_whitespace() || is_invisible(c));
        let err = |m: &str| Err(ValidationErrors::one("title", m));
        if s.is_empty() {
            return err("must not be empty");
        }
        if s.chars().count() > Self::MAX_LEN {
            return err("must be at most 500 characters");
        }
        if s.chars().any(char::is_control) {
            return err("must not contain control characters such as line breaks");
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key titles sort by: case-insensitive.
    pub fn sort_key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// Characters that show nothing: Unicode format characters (category Cf) and the blank
/// letters that render as empty space.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{2800}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// A description: up to 10,000 characters; line breaks allowed, NUL not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(transparent)]
pub struct Description(String);

impl Description {
    pub const MAX_LEN: usize = 10_000;

    pub fn parse(raw: &str) -> Result<Self, ValidationErrors> {
        if raw.chars().count() > Self::MAX_LEN {
            return Err(ValidationErrors::one(
                "description",
                "must be at most 10000 characters",
            ));
        }
        if raw.contains('\0') {
            return Err(ValidationErrors::one(
                "description",
                "must not contain NUL characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident, $field:literal, { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(raw: &str) -> Result<Self, ValidationErrors> {
                raw.parse()
            }
        }

        impl FromStr for $name {
            type Err = ValidationErrors;
            fn from_str(raw: &str) -> Result<Self, Self::Err> {
                let lower = raw.trim().to_ascii_lowercase();
                match lower.as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ValidationErrors::one(
                        $field,
                        format!("`{}` is not one of: {}", raw, [$($text),+].join(", ")),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// How urgent a task is.
    Priority, "priority", { Low = "low", Medium = "medium", High = "high", Urgent = "urgent" }
);
wire_enum!(
    /// Whether a task is still to do.
    TaskStatus, "status", { Pending = "pending", Completed = "completed" }
);
wire_enum!(
    /// What the next occurrence of a recurring task is counted from.
    RecurrenceAnchor, "recurrence_anchor", { Due = "due", Completion = "completion" }
);
wire_enum!(
    /// Where a reminder is in its life.
    ReminderStatus, "status", { Pending = "pending", Fired = "fired", Cancelled = "cancelled", Skipped = "skipped" }
);

impl Priority {
    /// Sort rank: urgent is the highest.
    pub fn rank(self) -> i64 {
        match self {
            Priority::Low => 0,
            Priority::Medium => 1,
            Priority::High => 2,
            Priority::Urgent => 3,
        }
    }
}

#[allow(clippy::derivable_impls)] // the enum is made by a macro
impl Default for Priority {
    fn default() -> Self {
        Priority::Medium
    }
}

#[allow(clippy::derivable_impls)] // the enum is made by a macro
impl Default for RecurrenceAnchor {
    fn default() -> Self {
        RecurrenceAnchor::Due
    }
}

/// A tag: 1 to 50 letters, digits, `-` or `_`; stored lowercase without a leading `#`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    pub const MAX_LEN: usize = 50;

    pub fn parse(raw: &str) -> Result<Self, ValidationErrors> {
        let s = raw.trim();
        let s = s.strip_prefix('#').unwrap_or(s).to_lowercase();
        let err = |m: String| Err(ValidationErrors::one("tags", m));
        if s.is_empty() {
            return err("a tag must not be empty".into());
        }
        if s.chars().count() > Self::MAX_LEN {
            return err(format!("tag `{s}` is longer than 50 characters"));
        }
        if !s
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        {
            return err(format!(
                "tag `{raw}` may contain only letters, digits, `-` and `_`"
            ));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Up to 20 distinct tags, in the order first given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(transparent)]
pub struct Tags(Vec<Tag>);

impl Tags {
    pub const MAX: usize = 20;

    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let mut seen = HashSet::new();
        let mut tags = Vec::new();
        for r in raw {
            if let Some(tag) = errors.check("tags", Tag::parse(r.as_ref()))
                && seen.insert(tag.clone())
            {
                tags.push(tag);
            }
        }
        if tags.len() > Self::MAX {
            errors.push(
                "tags",
                format!("at most 20 tags are allowed, got {}", tags.len()),
            );
        }
        errors.into_result(|| Self(tags))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Rebuilds tags read back from storage, which were valid when written.
    pub fn from_stored(tags: Vec<String>) -> Self {
        Self(tags.into_iter().map(Tag).collect())
    }
}

/// When a task is due: an exact instant, or a whole day (all-day task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    At(DateTime<Utc>),
    Date(NaiveDate),
}

impl Due {
    /// The hour an all-day task's reminders count from, in the user's timezone.
    pub const ALL_DAY_REMINDER_HOUR: u32 = 9;

    /// The instant the task sorts at: an all-day task sorts at the start of its day.
    pub fn sort_instant(self, tz: Timezone) -> DateTime<Utc> {
        match self {
            Due::At(t) => t,
            Due::Date(d) => local_instant(d, NaiveTime::MIN, tz),
        }
    }

    /// The instant relative reminders count back from: 09:00 local for an all-day task.
    pub fn reminder_base(self, tz: Timezone) -> DateTime<Utc> {
        match self {
            Due::At(t) => t,
            Due::Date(d) => local_instant(
                d,
                NaiveTime::from_hms_opt(Self::ALL_DAY_REMINDER_HOUR, 0, 0)
                    .unwrap_or(NaiveTime::MIN),
                tz,
            ),
        }
    }

    /// The instant this due moment ends (exclusive), for "overdue": the end of an all-day
    /// task's day, or the instant itself.
    pub fn overdue_after(self, tz: Timezone) -> DateTime<Utc> {
        match self {
            Due::At(t) => t,
            Due::Date(d) => local_instant(d.succ_opt().unwrap_or(d), NaiveTime::MIN, tz),
        }
    }
}

/// The UTC instant of a local wall-clock time; in a DST gap the first valid moment after it,
/// in a fold the earlier of the two.
pub fn local_instant(date: NaiveDate, time: NaiveTime, tz: Timezone) -> DateTime<Utc> {
    let naive = date.and_time(time);
    let tz = tz.tz();
    let mut probe = naive;
    for _ in 0..8 {
        if let Some(t) = tz.from_local_datetime(&probe).earliest() {
            return t.with_timezone(&Utc);
        }
        probe += TimeDelta::minutes(15);
    }
    Utc.from_utc_datetime(&naive)
}

/// An RFC 5545 RRULE (without DTSTART), evaluated in the user's timezone from the due time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Recurrence(String);

impl Recurrence {
    pub const MAX_LEN: usize = 500;

    pub fn parse(raw: &str) -> Result<Self, ValidationErrors> {
        let err = |m: String| Err(ValidationErrors::one("recurrence", m));
        let s = raw.trim();
        let s = s
            .strip_prefix("RRULE:")
            .or_else(|| s.strip_prefix("rrule:"))
            .unwrap_or(s)
            .trim();
        if s.is_empty() {
            return err("must not be empty; send null for a task that does not repeat".into());
        }
        if s.len() > Self::MAX_LEN {
            return err("must be at most 500 characters".into());
        }
        if s.contains(['\n', '\r']) || s.to_ascii_uppercase().contains("DTSTART") {
            return err("must be a single RRULE without DTSTART, e.g. FREQ=WEEKLY;BYDAY=MO".into());
        }
        let upper: String = s
            .to_ascii_uppercase()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if upper.contains("COUNT=") && upper.contains("UNTIL=") {
            return err("COUNT and UNTIL must not be used together".into());
        }
        // UNTIL is applied by `recur` in the user's timezone; rrule would demand it in the
        // validation start's zone, so it is checked here and left out of the validation.
        let mut checked = Vec::new();
        for part in upper.split(';') {
            match part.strip_prefix("UNTIL=") {
                Some(v) if crate::recur::until_is_valid(v) => {}
                Some(_) => {
                    return err(
                        "UNTIL must be a date (20261231) or a time (20261231T170000 or 20261231T170000Z)"
                            .into(),
                    );
                }
                None => checked.push(part),
            }
        }
        let parsed: rrule::RRule<rrule::Unvalidated> = match checked.join(";").parse() {
            Ok(r) => r,
            Err(e) => return err(format!("is not a valid RRULE: {e}")),
        };
        // Validation needs a start; any start checks the rule's own consistency.
        let start = rrule::Tz::UTC
            .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
            .single()
            .ok_or_else(|| ValidationErrors::one("recurrence", "internal: no start"))?;
        let freq = upper
            .split(';')
            .find_map(|p| p.strip_prefix("FREQ="))
            .unwrap_or_default();
        if matches!(freq, "SECONDLY" | "MINUTELY") {
            return err(format!(
                "FREQ={freq} is not supported: the most frequent repeat is hourly (FREQ=HOURLY)"
            ));
        }
        let has_occurrence = checked
            .join(";")
            .parse::<rrule::RRule<rrule::Unvalidated>>()
            .ok()
            .and_then(|r| r.build(start).ok())
            .is_some_and(|set| !set.all(1).dates.is_empty());
        match parsed.validate(start) {
            Ok(valid) if valid.get_interval() == 0 => err("INTERVAL must be at least 1".into()),
            Ok(valid) if valid.get_count() == Some(0) => err("COUNT must be at least 1".into()),
            Ok(_) if !has_occurrence => err(
                "never occurs: no date matches every part of the rule (e.g. BYMONTH=2;BYMONTHDAY=30)"
                    .into(),
            ),
            // Keep the rule as given: the validated form would pin the validation start's time
            // of day (BYHOUR=0…), which is not what the user asked for.
            Ok(_) => Ok(Self(upper)),
            Err(e) => err(format!("is not a valid RRULE: {e}")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds a rule read back from storage, which was valid when written.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }
}

/// How a reminder is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReminderSpec {
    /// Minutes before the due time.
    Before { minutes: u32 },
    /// An absolute instant.
    At(DateTime<Utc>),
}

impl ReminderSpec {
    /// At most four weeks ahead of the due time.
    pub const MAX_BEFORE_MINUTES: u32 = 40_320;
    pub const MAX_PER_TASK: usize = 10;

    pub fn before(minutes: i64) -> Result<Self, ValidationErrors> {
        match u32::try_from(minutes) {
            Ok(m) if m <= Self::MAX_BEFORE_MINUTES => Ok(Self::Before { minutes: m }),
            _ => Err(ValidationErrors::one(
                "before_minutes",
                "must be between 0 and 40320 (four weeks)",
            )),
        }
    }
}

/// A reminder of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reminder {
    pub id: Uuid,
    pub fire_at: DateTime<Utc>,
    pub before_minutes: Option<u32>,
    pub status: ReminderStatus,
}

impl Reminder {
    fn schedule(
        spec: ReminderSpec,
        due: Option<Due>,
        tz: Timezone,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationErrors> {
        let (fire_at, before_minutes) = match spec {
            ReminderSpec::At(t) => (t, None),
            ReminderSpec::Before { minutes } => {
                let Some(due) = due else {
                    return Err(ValidationErrors::one(
                        "before_minutes",
                        "a reminder relative to the due time needs a due date or time",
                    ));
                };
                (
                    due.reminder_base(tz) - TimeDelta::minutes(i64::from(minutes)),
                    Some(minutes),
                )
            }
        };
        let status = if fire_at < now {
            ReminderStatus::Skipped
        } else {
            ReminderStatus::Pending
        };
        Ok(Self {
            id: Uuid::now_v7(),
            fire_at,
            before_minutes,
            status,
        })
    }

    fn schedule_all(
        specs: &[ReminderSpec],
        due: Option<Due>,
        tz: Timezone,
        now: DateTime<Utc>,
    ) -> Result<Vec<Self>, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if specs.len() > ReminderSpec::MAX_PER_TASK {
            errors.push(
                "reminders",
                format!("at most 10 reminders are allowed, got {}", specs.len()),
            );
        }
        let mut out = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            if let Some(r) = errors.check(
                &format!("reminders[{i}]"),
                Self::schedule(*spec, due, tz, now),
            ) {
                out.push(r);
            }
        }
        errors.into_result(|| out)
    }
}

/// A validated request to create a task.
#[derive(Debug, Clone, Default)]
pub struct TaskDraft {
    pub title: Option<TaskTitle>,
    pub description: Description,
    pub priority: Priority,
    pub tags: Tags,
    pub due: Option<Due>,
    pub recurrence: Option<Recurrence>,
    pub recurrence_anchor: RecurrenceAnchor,
    pub reminders: Vec<ReminderSpec>,
}

/// A validated partial change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TaskPatch {
    pub title: Option<TaskTitle>,
    pub description: Option<Description>,
    pub priority: Option<Priority>,
    pub tags: Option<Tags>,
    pub due: Option<Option<Due>>,
    pub recurrence: Option<Option<Recurrence>>,
    pub recurrence_anchor: Option<RecurrenceAnchor>,
    pub reminders: Option<Vec<ReminderSpec>>,
    pub status: Option<TaskStatus>,
}

/// A task of one user.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: TaskId,
    pub user_id: UserId,
    pub number: i64,
    pub title: TaskTitle,
    pub description: Description,
    pub status: TaskStatus,
    pub priority: Priority,
    pub tags: Tags,
    pub due: Option<Due>,
    pub recurrence: Option<Recurrence>,
    pub recurrence_anchor: RecurrenceAnchor,
    pub series_id: Option<TaskId>,
    /// The place of this task in its series, from 1; COUNT is counted against it.
    pub occurrence: i64,
    pub reminders: Vec<Reminder>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub version: i64,
}

impl Task {
    /// A new pending task at version 1. `number` is assigned by storage; 0 until then.
    pub fn create(
        user_id: UserId,
        draft: TaskDraft,
        tz: Timezone,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationErrors> {
        let Some(title) = draft.title else {
            return Err(ValidationErrors::one("title", "is required"));
        };
        let reminders = Reminder::schedule_all(&draft.reminders, draft.due, tz, now)?;
        let id = TaskId::new();
        Ok(Self {
            id,
            user_id,
            number: 0,
            title,
            description: draft.description,
            status: TaskStatus::Pending,
            priority: draft.priority,
            tags: draft.tags,
            due: draft.due,
            series_id: draft.recurrence.as_ref().map(|_| id),
            recurrence: draft.recurrence,
            recurrence_anchor: draft.recurrence_anchor,
            occurrence: 1,
            reminders,
            created_at: now,
            updated_at: now,
            completed_at: None,
            version: 1,
        })
    }

    /// The occurrence after `previous` in its series, from the draft
    /// [`crate::recur::next_occurrence`] made: same series, next occurrence number.
    pub fn next_in_series(
        previous: &Task,
        draft: TaskDraft,
        tz: Timezone,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationErrors> {
        let mut task = Self::create(previous.user_id, draft, tz, now)?;
        task.series_id = Some(previous.series_id.unwrap_or(previous.id));
        task.occurrence = previous.occurrence + 1;
        Ok(task)
    }

    /// Applies a change and returns the names of the fields that changed (empty: nothing did,
    /// and the version stays).
    pub fn apply(
        &mut self,
        patch: TaskPatch,
        tz: Timezone,
        now: DateTime<Utc>,
    ) -> Result<Vec<&'static str>, ValidationErrors> {
        let mut next = self.clone();
        let mut changed = Vec::new();
        macro_rules! set {
            ($field:ident, $name:literal) => {
                if let Some(v) = patch.$field {
                    if next.$field != v {
                        next.$field = v;
                        changed.push($name);
                    }
                }
            };
        }
        set!(title, "title");
        set!(description, "description");
        set!(priority, "priority");
        set!(tags, "tags");
        set!(recurrence_anchor, "recurrence_anchor");
        let due_changed = matches!(patch.due, Some(d) if d != next.due);
        if let Some(due) = patch.due
            && due != next.due
        {
            next.due = due;
            changed.push("due");
        }
        if let Some(rec) = patch.recurrence
            && rec != next.recurrence
        {
            next.series_id = match (&rec, next.series_id) {
                (Some(_), None) => Some(next.id),
                (Some(_), existing) => existing,
                (None, _) => None,
            };
            next.recurrence = rec;
            changed.push("recurrence");
        }
        if let Some(specs) = patch.reminders {
            next.reminders = Reminder::schedule_all(&specs, next.due, tz, now)?;
            if !same_schedule(&next.reminders, &self.reminders) {
                changed.push("reminders");
            }
        } else if due_changed {
            next.reschedule_relative_reminders(tz, now)?;
            if !same_schedule(&next.reminders, &self.reminders) {
                changed.push("reminders");
            }
        }
        match patch.status {
            Some(TaskStatus::Completed) if next.status == TaskStatus::Pending => {
                next.mark_completed(now);
                changed.push("status");
            }
            Some(TaskStatus::Pending) if next.status == TaskStatus::Completed => {
                next.mark_reopened(now);
                changed.push("status");
            }
            _ => {}
        }
        if !changed.is_empty() {
            next.version += 1;
            next.updated_at = now;
            *self = next;
        }
        Ok(changed)
    }

    /// Completes a pending task; completing a completed task changes nothing (returns false).
    pub fn complete(&mut self, now: DateTime<Utc>) -> bool {
        if self.status == TaskStatus::Completed {
            return false;
        }
        self.mark_completed(now);
        self.version += 1;
        self.updated_at = now;
        true
    }

    /// Reopens a completed task; reopening a pending task changes nothing (returns false).
    pub fn reopen(&mut self, now: DateTime<Utc>) -> bool {
        if self.status == TaskStatus::Pending {
            return false;
        }
        self.mark_reopened(now);
        self.version += 1;
        self.updated_at = now;
        true
    }

    fn mark_completed(&mut self, now: DateTime<Utc>) {
        self.status = TaskStatus::Completed;
        self.completed_at = Some(now);
        for r in &mut self.reminders {
            if r.status == ReminderStatus::Pending {
                r.status = ReminderStatus::Cancelled;
            }
        }
    }

    fn mark_reopened(&mut self, now: DateTime<Utc>) {
        self.status = TaskStatus::Pending;
        self.completed_at = None;
        for r in &mut self.reminders {
            if r.status == ReminderStatus::Cancelled && r.fire_at >= now {
                r.status = ReminderStatus::Pending;
            }
        }
    }

    fn reschedule_relative_reminders(
        &mut self,
        tz: Timezone,
        now: DateTime<Utc>,
    ) -> Result<(), ValidationErrors> {
        for r in &mut self.reminders {
            let Some(minutes) = r.before_minutes else {
                continue;
            };
            if matches!(r.status, ReminderStatus::Fired | ReminderStatus::Cancelled) {
                continue;
            }
            let new = Reminder::schedule(ReminderSpec::Before { minutes }, self.due, tz, now)
                .map_err(|_| {
                    ValidationErrors::one(
                        "due",
                        "the task has reminders relative to its due time: remove them before clearing the due date",
                    )
                })?;
            r.fire_at = new.fire_at;
            r.status = new.status;
        }
        Ok(())
    }

    /// The instant the task sorts at for `sort=due`.
    pub fn due_sort(&self, tz: Timezone) -> Option<DateTime<Utc>> {
        self.due.map(|d| d.sort_instant(tz))
    }

    /// The wire shape of the task (API.md), as a JSON value.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

fn same_schedule(a: &[Reminder], b: &[Reminder]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.fire_at == y.fire_at && x.before_minutes == y.before_minutes && x.status == y.status
        })
}

impl Serialize for Task {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Task", 18)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("number", &self.number)?;
        st.serialize_field("title", &self.title)?;
        st.serialize_field("description", &self.description)?;
        st.serialize_field("status", &self.status)?;
        st.serialize_field("priority", &self.priority)?;
        st.serialize_field("tags", &self.tags)?;
        let (due_at, due_date) = match self.due {
            Some(Due::At(t)) => (Some(t), None),
            Some(Due::Date(d)) => (None, Some(d)),
            None => (None, None),
        };
        st.serialize_field("due_at", &due_at)?;
        st.serialize_field("due_date", &due_date)?;
        st.serialize_field("recurrence", &self.recurrence)?;
        st.serialize_field("recurrence_anchor", &self.recurrence_anchor)?;
        st.serialize_field("series_id", &self.series_id)?;
        st.serialize_field("occurrence", &self.occurrence)?;
        st.serialize_field("reminders", &self.reminders)?;
        st.serialize_field("created_at", &self.created_at)?;
        st.serialize_field("updated_at", &self.updated_at)?;
        st.serialize_field("completed_at", &self.completed_at)?;
        st.serialize_field("version", &self.version)?;
        st.end()
    }
}

/// The wire shape of a task, read back (from an event's `task_data`).
#[derive(serde::Deserialize)]
struct TaskJson {
    id: Uuid,
    user_id: Option<Uuid>,
    number: i64,
    title: String,
    #[serde(default)]
    description: String,
    status: String,
    priority: String,
    #[serde(default)]
    tags: Vec<String>,
    due_at: Option<DateTime<Utc>>,
    due_date: Option<NaiveDate>,
    recurrence: Option<String>,
    recurrence_anchor: String,
    series_id: Option<Uuid>,
    #[serde(default = "first_occurrence")]
    occurrence: i64,
    #[serde(default)]
    reminders: Vec<ReminderJson>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    version: i64,
}

fn first_occurrence() -> i64 {
    1
}

#[derive(serde::Deserialize)]
struct ReminderJson {
    id: Uuid,
    fire_at: DateTime<Utc>,
    before_minutes: Option<u32>,
    status: String,
}

impl Task {
    /// A task from its wire shape (as in an event's `task_data`), validated like any input.
    /// The wire shape does not carry the owner, so it is given.
    pub fn from_json(user_id: UserId, value: &serde_json::Value) -> Result<Self, ValidationErrors> {
        let j: TaskJson = serde_json::from_value(value.clone())
            .map_err(|e| ValidationErrors::one("task", e.to_string()))?;
        if j.user_id.is_some_and(|u| u != user_id.0) {
            return Err(ValidationErrors::one(
                "user_id",
                "does not match the event's user",
            ));
        }
        let reminders = j
            .reminders
            .into_iter()
            .map(|r| {
                Ok(Reminder {
                    id: r.id,
                    fire_at: r.fire_at,
                    before_minutes: r.before_minutes,
                    status: ReminderStatus::parse(&r.status)?,
                })
            })
            .collect::<Result<_, ValidationErrors>>()?;
        Ok(Self {
            id: TaskId(j.id),
            user_id,
            number: j.number,
            title: TaskTitle::parse(&j.title)?,
            description: Description::parse(&j.description)?,
            status: TaskStatus::parse(&j.status)?,
            priority: Priority::parse(&j.priority)?,
            tags: Tags::parse(&j.tags)?,
            due: match (j.due_at, j.due_date) {
                (Some(t), _) => Some(Due::At(t)),
                (None, Some(d)) => Some(Due::Date(d)),
                (None, None) => None,
            },
            recurrence: j.recurrence.as_deref().map(Recurrence::parse).transpose()?,
            recurrence_anchor: RecurrenceAnchor::parse(&j.recurrence_anchor)?,
            series_id: j.series_id.map(TaskId),
            occurrence: j.occurrence,
            reminders,
            created_at: j.created_at,
            updated_at: j.updated_at,
            completed_at: j.completed_at,
            version: j.version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid time")
            .with_timezone(&Utc)
    }

    fn tz(name: &str) -> Timezone {
        Timezone::parse(name).expect("valid tz")
    }

    fn draft(title: &str) -> TaskDraft {
        TaskDraft {
            title: Some(TaskTitle::parse(title).expect("valid")),
            ..TaskDraft::default()
        }
    }

    #[test]
    fn a_title_is_trimmed() {
        assert_eq!(
            TaskTitle::parse("  Pay rent  ").expect("valid").as_str(),
            "Pay rent"
        );
    }

    #[test]
    fn an_empty_or_blank_title_is_rejected() {
        assert!(TaskTitle::parse("").is_err());
        assert!(TaskTitle::parse(" \t ").is_err());
    }

    #[test]
    fn a_title_of_exactly_500_chars_is_accepted() {
        assert!(TaskTitle::parse(&"é".repeat(500)).is_ok());
    }

    #[test]
    fn a_title_longer_than_500_chars_is_rejected() {
        let e = TaskTitle::parse(&"a".repeat(501)).expect_err("too long");
        assert_eq!(e.0[0].field, "title");
    }

    #[test]
    fn a_title_with_a_line_break_is_rejected() {
        assert!(TaskTitle::parse("a\nb").is_err());
    }

    #[test]
    fn an_sql_looking_title_is_kept_literally() {
        let s = "'; DROP TABLE tasks; --";
        assert_eq!(TaskTitle::parse(s).expect("valid").as_str(), s);
    }

    #[test]
    fn a_description_longer_than_10000_chars_is_rejected() {
        assert!(Description::parse(&"a".repeat(10_000)).is_ok());
        assert!(Description::parse(&"a".repeat(10_001)).is_err());
    }

    #[test]
    fn a_description_with_nul_is_rejected() {
        assert!(Description::parse("a\0b").is_err());
    }

    #[test]
    fn a_title_of_only_invisible_characters_is_empty() {
        for blank in [
            "\u{200B}",
            "\u{FEFF}\u{200D}",
            " \u{2060}\u{00A0}\u{3000}",
            "\u{3164}",
            "\u{E0020}",
        ] {
            assert!(TaskTitle::parse(blank).is_err(), "{blank:?}");
        }
        let t = TaskTitle::parse("\u{200B}pay rent\u{FEFF} ").expect("valid");
        assert_eq!(t.as_str(), "pay rent");
        // Inside a title, a joiner is part of an emoji and stays.
        assert_eq!(
            TaskTitle::parse("👩\u{200D}💻 ship")
                .expect("valid")
                .as_str(),
            "👩\u{200D}💻 ship"
        );
    }

    #[test]
    fn priority_defaults_to_medium_and_ranks_urgent_highest() {
        assert_eq!(Priority::default(), Priority::Medium);
        assert!(Priority::Urgent.rank() > Priority::High.rank());
        assert!(Priority::High.rank() > Priority::Medium.rank());
        assert!(Priority::Medium.rank() > Priority::Low.rank());
    }

    #[test]
    fn an_unknown_priority_is_rejected_with_the_allowed_values() {
        let e = Priority::parse("critical").expect_err("unknown");
        assert!(e.0[0].message.contains("low, medium, high, urgent"));
        assert_eq!(
            Priority::parse("HIGH").expect("case-insensitive"),
            Priority::High
        );
    }

    #[test]
    fn tags_are_lowercased_stripped_of_hash_and_deduplicated() {
        let tags = Tags::parse(&["#Home", "home", "Work_2", "a-b"]).expect("valid");
        let names: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        assert_eq!(names, ["home", "work_2", "a-b"]);
    }

    #[test]
    fn a_tag_with_spaces_or_punctuation_is_rejected() {
        assert!(Tag::parse("two words").is_err());
        assert!(Tag::parse("a.b").is_err());
        assert!(Tag::parse("#").is_err());
    }

    #[test]
    fn a_tag_longer_than_50_chars_is_rejected() {
        assert!(Tag::parse(&"a".repeat(50)).is_ok());
        assert!(Tag::parse(&"a".repeat(51)).is_err());
    }

    #[test]
    fn more_than_20_distinct_tags_are_rejected() {
        let raw: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
        assert!(Tags::parse(&raw).is_err());
        assert!(Tags::parse(&raw[..20]).is_ok());
    }

    #[test]
    fn twenty_one_tags_with_a_duplicate_are_twenty_and_accepted() {
        let mut raw: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
        raw.push("T0".into());
        assert_eq!(Tags::parse(&raw).expect("valid").len(), 20);
    }

    #[test]
    fn a_valid_rrule_is_normalised() {
        let r = Recurrence::parse("RRULE:freq=weekly;byday=MO").expect("valid");
        assert_eq!(r.as_str(), "FREQ=WEEKLY;BYDAY=MO");
        let monthly = Recurrence::parse("FREQ=MONTHLY;BYMONTHDAY=1").expect("valid");
        assert_eq!(
            monthly.as_str(),
            "FREQ=MONTHLY;BYMONTHDAY=1",
            "no time of day is added"
        );
    }

    #[test]
    fn a_malformed_rrule_is_rejected() {
        for bad in [
            "",
            "FREQ=SOMETIMES",
            "hello",
            "FREQ=DAILY;INTERVAL=0",
            "FREQ=DAILY;COUNT=3;UNTIL=20300101T000000Z",
        ] {
            assert!(
                Recurrence::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn an_rrule_with_dtstart_is_rejected() {
        assert!(Recurrence::parse("DTSTART:20260101T000000Z\nRRULE:FREQ=DAILY").is_err());
    }

    #[test]
    fn a_relative_reminder_fires_exactly_before_the_due_time() {
        let due = t("2026-12-01T14:00:00Z");
        let d = TaskDraft {
            due: Some(Due::At(due)),
            reminders: vec![ReminderSpec::Before { minutes: 30 }],
            ..draft("x")
        };
        let task = Task::create(
            UserId::new(),
            d,
            Timezone::default(),
            t("2026-11-01T00:00:00Z"),
        )
        .expect("valid");
        assert_eq!(task.reminders[0].fire_at, t("2026-12-01T13:30:00Z"));
        assert_eq!(task.reminders[0].status, ReminderStatus::Pending);
    }

    #[test]
    fn an_all_day_task_reminds_from_nine_in_the_users_timezone() {
        let d = TaskDraft {
            due: Some(Due::Date(
                NaiveDate::from_ymd_opt(2026, 12, 1).expect("date"),
            )),
            reminders: vec![ReminderSpec::Before { minutes: 60 }],
            ..draft("x")
        };
        let task = Task::create(
            UserId::new(),
            d,
            tz("America/New_York"),
            t("2026-11-01T00:00:00Z"),
        )
        .expect("valid");
        // 09:00 EST is 14:00 UTC; one hour before is 13:00 UTC.
        assert_eq!(task.reminders[0].fire_at, t("2026-12-01T13:00:00Z"));
    }

    #[test]
    fn a_relative_reminder_without_a_due_date_is_rejected() {
        let d = TaskDraft {
            reminders: vec![ReminderSpec::Before { minutes: 5 }],
            ..draft("x")
        };
        let e =
            Task::create(UserId::new(), d, Timezone::default(), Utc::now()).expect_err("needs due");
        assert_eq!(e.0[0].field, "reminders[0].before_minutes");
    }

    #[test]
    fn a_reminder_already_past_is_recorded_as_skipped() {
        let d = TaskDraft {
            reminders: vec![ReminderSpec::At(t("2020-01-01T00:00:00Z"))],
            ..draft("x")
        };
        let task = Task::create(
            UserId::new(),
            d,
            Timezone::default(),
            t("2026-01-01T00:00:00Z"),
        )
        .expect("valid");
        assert_eq!(task.reminders[0].status, ReminderStatus::Skipped);
    }

    #[test]
    fn more_than_ten_reminders_are_rejected() {
        let d = TaskDraft {
            reminders: vec![ReminderSpec::At(t("2030-01-01T00:00:00Z")); 11],
            ..draft("x")
        };
        assert!(Task::create(UserId::new(), d, Timezone::default(), Utc::now()).is_err());
    }

    #[test]
    fn changing_the_due_time_reschedules_relative_reminders() {
        let now = t("2026-11-01T00:00:00Z");
        let d = TaskDraft {
            due: Some(Due::At(t("2026-12-01T14:00:00Z"))),
            reminders: vec![ReminderSpec::Before { minutes: 10 }],
            ..draft("x")
        };
        let mut task = Task::create(UserId::new(), d, Timezone::default(), now).expect("valid");
        let changed = task
            .apply(
                TaskPatch {
                    due: Some(Some(Due::At(t("2026-12-02T14:00:00Z")))),
                    ..TaskPatch::default()
                },
                Timezone::default(),
                now,
            )
            .expect("valid");
        assert_eq!(changed, ["due", "reminders"]);
        assert_eq!(task.reminders[0].fire_at, t("2026-12-02T13:50:00Z"));
        assert_eq!(task.version, 2);
    }

    #[test]
    fn a_patch_that_changes_nothing_keeps_the_version() {
        let mut task = Task::create(
            UserId::new(),
            draft("same"),
            Timezone::default(),
            Utc::now(),
        )
        .expect("valid");
        let changed = task
            .apply(
                TaskPatch {
                    title: Some(TaskTitle::parse("same").expect("valid")),
                    ..TaskPatch::default()
                },
                Timezone::default(),
                Utc::now(),
            )
            .expect("valid");
        assert!(changed.is_empty());
        assert_eq!(task.version, 1);
    }

    #[test]
    fn completing_cancels_pending_reminders_and_is_idempotent() {
        let now = t("2026-11-01T00:00:00Z");
        let d = TaskDraft {
            reminders: vec![ReminderSpec::At(t("2026-12-01T00:00:00Z"))],
            ..draft("x")
        };
        let mut task = Task::create(UserId::new(), d, Timezone::default(), now).expect("valid");
        assert!(task.complete(now));
        assert_eq!(task.reminders[0].status, ReminderStatus::Cancelled);
        assert_eq!(task.completed_at, Some(now));
        assert!(!task.complete(now));
        assert_eq!(task.version, 2);
        assert!(task.reopen(now));
        assert_eq!(task.reminders[0].status, ReminderStatus::Pending);
        assert_eq!(task.completed_at, None);
    }

    #[test]
    fn a_recurring_task_is_its_own_series() {
        let d = TaskDraft {
            recurrence: Some(Recurrence::parse("FREQ=DAILY").expect("valid")),
            ..draft("x")
        };
        let task = Task::create(UserId::new(), d, Timezone::default(), Utc::now()).expect("valid");
        assert_eq!(task.series_id, Some(task.id));
        let plain = Task::create(UserId::new(), draft("y"), Timezone::default(), Utc::now())
            .expect("valid");
        assert_eq!(plain.series_id, None);
    }

    #[test]
    fn an_all_day_task_sorts_at_the_start_of_its_day_in_the_users_timezone() {
        let due = Due::Date(NaiveDate::from_ymd_opt(2026, 7, 4).expect("date"));
        assert_eq!(
            due.sort_instant(tz("Europe/Paris")),
            t("2026-07-03T22:00:00Z")
        );
    }

    #[test]
    fn the_wire_shape_has_due_at_or_due_date() {
        let d = TaskDraft {
            due: Some(Due::Date(
                NaiveDate::from_ymd_opt(2026, 7, 4).expect("date"),
            )),
            ..draft("x")
        };
        let task = Task::create(UserId::new(), d, Timezone::default(), Utc::now()).expect("valid");
        let json = task.to_json();
        assert_eq!(json["due_date"], "2026-07-04");
        assert!(json["due_at"].is_null());
        assert_eq!(json["priority"], "medium");
        assert_eq!(json["status"], "pending");
        assert_eq!(json["recurrence_anchor"], "due");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_accepted_title_is_between_1_and_500_chars(s in "\\PC{0,600}") {
                if let Ok(title) = TaskTitle::parse(&s) {
                    let n = title.as_str().chars().count();
                    prop_assert!((1..=500).contains(&n));
                }
            }

            #[test]
            fn any_accepted_tag_is_lowercase_and_well_formed(s in "#?[A-Za-z0-9_ .-]{0,60}") {
                if let Ok(tag) = Tag::parse(&s) {
                    prop_assert!(!tag.as_str().starts_with('#'));
                    prop_assert_eq!(tag.as_str().to_lowercase(), tag.as_str());
                    prop_assert!(tag.as_str().chars().count() <= 50);
                }
            }

            #[test]
            fn recurrence_parsing_never_panics(s in "\\PC{0,80}") {
                let _ = Recurrence::parse(&s);
            }
        }
    }

    #[test]
    fn a_task_reads_back_from_its_wire_shape() {
        let now = t("2026-11-20T10:00:00Z");
        let draft = TaskDraft {
            title: Some(TaskTitle::parse("Pay rent").expect("valid")),
            tags: Tags::parse(&["home"]).expect("valid"),
            due: Some(Due::At(t("2026-12-01T09:00:00Z"))),
            recurrence: Some(Recurrence::parse("FREQ=MONTHLY").expect("valid")),
            reminders: vec![ReminderSpec::Before { minutes: 30 }],
            ..TaskDraft::default()
        };
        let mut task = Task::create(UserId::new(), draft, tz("UTC"), now).expect("valid");
        task.number = 4;
        assert_eq!(
            Task::from_json(task.user_id, &task.to_json()),
            Ok(task.clone())
        );
        let mut bad = task.to_json();
        bad["title"] = serde_json::json!("");
        assert!(Task::from_json(task.user_id, &bad).is_err());
    }
}
