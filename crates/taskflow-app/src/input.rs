//! The one reading of what people send. Every front door (the REST handlers, the chat and MCP
//! tools) hands its raw fields to these types and gets domain values back, or every problem
//! at once, each named by its field, with the same rules and the same words everywhere.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use taskflow_core::{
    Description, Due, FieldError, Priority, Recurrence, RecurrenceAnchor, ReminderSpec, Tag, Tags,
    TaskDraft, TaskPatch, TaskStatus, TaskTitle, Timezone, ValidationErrors, task::local_instant,
};
use taskflow_store::{Order, SortBy, TaskQuery};

use crate::{App, AppError};

/// The most tasks one page holds.
pub const MAX_PAGE: u32 = 200;
/// The most characters of a search.
pub const MAX_SEARCH_CHARS: usize = 200;
/// The most words of a search that count (each must match).
pub const MAX_SEARCH_WORDS: usize = 20;

/// Parses an RFC 3339 instant that carries an offset.
pub fn instant(field: &str, raw: &str) -> Result<DateTime<Utc>, ValidationErrors> {
    taskflow_core::time::parse_instant(raw.trim()).ok_or_else(|| {
        ValidationErrors::one(
            field,
            format!(
                "`{raw}` is not an RFC 3339 time with an offset in the years 0001-9999, e.g. 2026-12-01T09:00:00-05:00"
            ),
        )
    })
}

/// Parses a calendar date `YYYY-MM-DD`.
pub fn date(field: &str, raw: &str) -> Result<NaiveDate, ValidationErrors> {
    taskflow_core::time::parse_date(raw.trim()).ok_or_else(|| {
        ValidationErrors::one(
            field,
            format!("`{raw}` is not a date YYYY-MM-DD (years 0001-9999) like 2026-12-01"),
        )
    })
}

/// The first instant of `day` in `tz`.
pub fn day_start(day: NaiveDate, tz: Timezone) -> DateTime<Utc> {
    local_instant(day, NaiveTime::MIN, tz)
}

/// The last instant of `day` in `tz` (the microsecond before the next day starts), which is
/// also when an all-day task due that day is still not overdue.
pub fn day_end(day: NaiveDate, tz: Timezone) -> DateTime<Utc> {
    Due::Date(day).overdue_after(tz) - TimeDelta::microseconds(1)
}

/// Which edge of a day a date stands for in a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    Start,
    End,
}

/// A range bound: a date (the start or the end of that day in `tz`) or an RFC 3339 instant.
fn bound(
    field: &str,
    raw: &str,
    tz: Timezone,
    edge: Edge,
) -> Result<DateTime<Utc>, ValidationErrors> {
    if let Some(d) = taskflow_core::time::parse_date(raw.trim()) {
        return Ok(match edge {
            Edge::Start => day_start(d, tz),
            Edge::End => day_end(d, tz),
        });
    }
    instant(field, raw).map_err(|_| {
        ValidationErrors::one(
            field,
            format!(
                "`{raw}` is neither a date like 2026-12-01 nor an RFC 3339 time with an offset"
            ),
        )
    })
}

/// The due of a task from its two fields, which exclude each other.
fn due(errors: &mut ValidationErrors, due_at: Option<&str>, due_date: Option<&str>) -> Option<Due> {
    match (due_at, due_date) {
        (Some(_), Some(_)) => {
            errors.push(
                "due_at",
                "send either due_at (a time) or due_date (an all-day date), not both",
            );
            None
        }
        (Some(at), None) => errors.check("due_at", instant("due_at", at)).map(Due::At),
        (None, Some(d)) => errors.check("due_date", date("due_date", d)).map(Due::Date),
        (None, None) => None,
    }
}

/// A reminder as asked for: minutes before the due time, or an absolute instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ReminderInput {
    pub before_minutes: Option<i64>,
    pub at: Option<String>,
}

fn reminders(errors: &mut ValidationErrors, raw: &[ReminderInput]) -> Vec<ReminderSpec> {
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let field = format!("reminders[{i}]");
        let spec = match (r.before_minutes, r.at.as_deref()) {
            (Some(m), None) => errors.check(&field, ReminderSpec::before(m)),
            (None, Some(at)) => errors.check(&field, instant("at", at).map(ReminderSpec::At)),
            _ => {
                errors.push(field, "give either before_minutes or at");
                None
            }
        };
        out.extend(spec);
    }
    out
}

/// A new task as sent, every field raw.
#[derive(Debug, Clone, Default)]
pub struct DraftInput {
    pub title: Option<String>,
    pub description: Option<String>,
    pub priority: Option<String>,
    pub tags: Option<Vec<String>>,
    pub due_at: Option<String>,
    pub due_date: Option<String>,
    pub recurrence: Option<String>,
    pub recurrence_anchor: Option<String>,
    pub reminders: Option<Vec<ReminderInput>>,
}

impl DraftInput {
    /// The draft, or every field's problem.
    pub fn parse(self) -> Result<TaskDraft, ValidationErrors> {
        let mut e = ValidationErrors::default();
        let title = match self.title.as_deref() {
            Some(t) => e.check("title", TaskTitle::parse(t)),
            None => {
                e.push("title", "is required");
                None
            }
        };
        let description = e
            .check(
                "description",
                Description::parse(self.description.as_deref().unwrap_or("")),
            )
            .unwrap_or_default();
        let priority = self
            .priority
            .as_deref()
            .map(|p| e.check("priority", Priority::parse(p)))
            .unwrap_or_default()
            .unwrap_or_default();
        let tags = e
            .check("tags", Tags::parse(self.tags.as_deref().unwrap_or(&[])))
            .unwrap_or_default();
        let due = due(&mut e, self.due_at.as_deref(), self.due_date.as_deref());
        let recurrence = self
            .recurrence
            .as_deref()
            .and_then(|r| e.check("recurrence", Recurrence::parse(r)));
        let recurrence_anchor = self
            .recurrence_anchor
            .as_deref()
            .map(|a| e.check("recurrence_anchor", RecurrenceAnchor::parse(a)))
            .unwrap_or_default()
            .unwrap_or_default();
        let reminders = reminders(&mut e, self.reminders.as_deref().unwrap_or(&[]));
        e.into_result(|| TaskDraft {
            title,
            description,
            priority,
            tags,
            due,
            recurrence,
            recurrence_anchor,
            reminders,
        })
    }
}

/// A change as sent: an absent field (`None`) stays, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct PatchInput {
    pub title: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub priority: Option<Option<String>>,
    pub tags: Option<Option<Vec<String>>>,
    pub due_at: Option<Option<String>>,
    pub due_date: Option<Option<String>>,
    pub recurrence: Option<Option<String>>,
    pub recurrence_anchor: Option<Option<String>>,
    pub reminders: Option<Option<Vec<ReminderInput>>>,
    pub status: Option<Option<String>>,
}

impl PatchInput {
    /// The patch, or every field's problem.
    pub fn parse(self) -> Result<TaskPatch, ValidationErrors> {
        let mut e = ValidationErrors::default();
        let title = match self.title {
            Some(Some(t)) => e.check("title", TaskTitle::parse(&t)),
            Some(None) => {
                e.push("title", "a task needs a title; it cannot be cleared");
                None
            }
            None => None,
        };
        let description = self.description.map(|d| {
            e.check(
                "description",
                Description::parse(d.as_deref().unwrap_or("")),
            )
            .unwrap_or_default()
        });
        let priority = self.priority.and_then(|p| match p {
            Some(p) => e.check("priority", Priority::parse(&p)),
            None => Some(Priority::default()),
        });
        let tags = self
            .tags
            .and_then(|t| e.check("tags", Tags::parse(t.as_deref().unwrap_or(&[]))));
        let due = match (self.due_at, self.due_date) {
            (None, None) => None,
            (at, date) => {
                let (at, date) = (at.flatten(), date.flatten());
                Some(due(&mut e, at.as_deref(), date.as_deref()))
            }
        };
        let recurrence = self
            .recurrence
            .map(|r| r.and_then(|r| e.check("recurrence", Recurrence::parse(&r))));
        let recurrence_anchor = self.recurrence_anchor.and_then(|a| match a {
            Some(a) => e.check("recurrence_anchor", RecurrenceAnchor::parse(&a)),
            None => Some(RecurrenceAnchor::default()),
        });
        let reminders = self
            .reminders
            .map(|r| reminders(&mut e, r.as_deref().unwrap_or(&[])));
        let status = self.status.and_then(|s| match s {
            Some(s) => e.check("status", TaskStatus::parse(&s)),
            None => {
                e.push("status", "must be pending or completed");
                None
            }
        });
        e.into_result(|| TaskPatch {
            title,
            description,
            priority,
            tags,
            due,
            recurrence,
            recurrence_anchor,
            reminders,
            status,
        })
    }
}

/// What a list asks for, every field raw. Dates in ranges are whole days in the user's
/// timezone: an `after` bound from the day's start, a `before` bound through its end.
#[derive(Debug, Clone, Default)]
pub struct ListInput {
    /// `all`, `pending` or `completed`; absent or empty is all.
    pub status: Option<String>,
    /// Levels, each entry one level or a comma list; any may match.
    pub priorities: Vec<String>,
    /// Tags, each entry one tag or a comma list; every one must match.
    pub tags: Vec<String>,
    /// Words that must all appear in title or description.
    pub search: Option<String>,
    pub due_after: Option<String>,
    pub due_before: Option<String>,
    pub completed_after: Option<String>,
    pub completed_before: Option<String>,
    /// `true`: pending tasks whose due time has passed; `false`: the others.
    pub overdue: Option<bool>,
    /// `due`, `priority`, `created` or `title`.
    pub sort: Option<String>,
    /// `asc` or `desc`.
    pub order: Option<String>,
    /// 1 to [`MAX_PAGE`]; 50 when absent.
    pub limit: Option<i64>,
    /// The `next_cursor` of the page before.
    pub cursor: Option<String>,
}

/// A tag error renamed to the list's field.
fn tag(raw: &str) -> Result<Tag, ValidationErrors> {
    Tag::parse(raw).map_err(|err| {
        ValidationErrors(
            err.0
                .into_iter()
                .map(|f| FieldError {
                    field: "tag".into(),
                    ..f
                })
                .collect(),
        )
    })
}

/// Splits a comma list, dropping empty entries.
fn items(raw: &[String]) -> impl Iterator<Item = &str> {
    raw.iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

impl App {
    /// Reads a list request for `tz` at the current time; the cursor must be one this server
    /// signed for the same sort and order.
    pub fn task_query(&self, tz: Timezone, input: ListInput) -> Result<TaskQuery, AppError> {
        let mut q = TaskQuery::default();
        let mut e = ValidationErrors::default();
        match input.status.as_deref().map(str::trim) {
            None | Some("" | "all") => q.status = None,
            Some(s) => {
                q.status = e.check(
                    "status",
                    TaskStatus::parse(s).map_err(|_| {
                        ValidationErrors::one("status", "must be all, pending or completed")
                    }),
                )
            }
        }
        for p in items(&input.priorities) {
            q.priorities.extend(e.check("priority", Priority::parse(p)));
        }
        for t in items(&input.tags) {
            q.tags.extend(e.check("tag", tag(t)));
        }
        if let Some(text) = input.search.as_deref().map(str::trim) {
            if text.chars().count() > MAX_SEARCH_CHARS {
                e.push(
                    "q",
                    format!("must be at most {MAX_SEARCH_CHARS} characters"),
                );
            }
            q.words = text
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .take(MAX_SEARCH_WORDS)
                .collect();
        }
        let mut range = |field: &str, raw: Option<String>, edge: Edge| {
            raw.and_then(|v| e.check(field, bound(field, &v, tz, edge)))
        };
        q.due_after = range("due_after", input.due_after, Edge::Start);
        q.due_before = range("due_before", input.due_before, Edge::End);
        q.completed_after = range("completed_after", input.completed_after, Edge::Start);
        q.completed_before = range("completed_before", input.completed_before, Edge::End);
        q.overdue = input.overdue.map(|o| (self.clock.now(), o));
        match input.sort.as_deref().map(str::trim) {
            None | Some("due") => q.sort = SortBy::Due,
            Some("priority") => q.sort = SortBy::Priority,
            Some("created") => q.sort = SortBy::Created,
            Some("title") => q.sort = SortBy::Title,
            Some(_) => e.push("sort", "must be one of: due, priority, created, title"),
        }
        match input.order.as_deref().map(str::trim) {
            None | Some("asc") => q.order = Order::Asc,
            Some("desc") => q.order = Order::Desc,
            Some(_) => e.push("order", "must be asc or desc"),
        }
        match input.limit {
            None => {}
            Some(n) if (1..=i64::from(MAX_PAGE)).contains(&n) => q.limit = n as u32,
            Some(_) => e.push(
                "limit",
                format!("must be a whole number from 1 to {MAX_PAGE}"),
            ),
        }
        if let Some(raw) = input.cursor.filter(|c| !c.trim().is_empty()) {
            match self.tokens.open_cursor(raw.trim(), q.sort, q.order) {
                Ok(c) => q.cursor = Some(c),
                Err(AppError::InvalidCursor(m)) => e.push("cursor", m),
                Err(err) => e.push("cursor", err.to_string()),
            }
        }
        Ok(e.into_result(|| q)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tz(name: &str) -> Timezone {
        Timezone::parse(name).unwrap()
    }

    #[test]
    fn a_day_ends_the_microsecond_before_the_next_one_starts_also_across_a_clock_change() {
        let ny = tz("America/New_York");
        // 2026-03-08 is 23 hours long in New York.
        let day = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        let next = day.succ_opt().unwrap();
        assert_eq!(
            day_end(day, ny) + TimeDelta::microseconds(1),
            day_start(next, ny)
        );
        assert_eq!(
            day_end(day, ny) - day_start(day, ny),
            TimeDelta::hours(23) - TimeDelta::microseconds(1)
        );
    }

    #[test]
    fn a_draft_names_every_bad_field_at_once() {
        let err = DraftInput {
            title: None,
            priority: Some("huge".into()),
            due_at: Some("tomorrow".into()),
            due_date: Some("2026-12-01".into()),
            reminders: Some(vec![ReminderInput::default()]),
            ..DraftInput::default()
        }
        .parse()
        .unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["title", "priority", "due_at", "reminders[0]"]);
    }

    #[test]
    fn a_patch_tells_clearing_from_leaving_alone() {
        let p = PatchInput {
            due_at: Some(None),
            priority: Some(None),
            ..PatchInput::default()
        }
        .parse()
        .unwrap();
        assert_eq!(p.due, Some(None));
        assert_eq!(p.priority, Some(Priority::default()));
        assert_eq!(p.title, None);
        let err = PatchInput {
            title: Some(None),
            ..PatchInput::default()
        }
        .parse()
        .unwrap_err();
        assert_eq!(err.0[0].field, "title");
    }
}
