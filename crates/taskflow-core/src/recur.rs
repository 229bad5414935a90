//! The next occurrence of a recurring task (API.md, "Recurrence").
//!
//! The rule is evaluated in the user's timezone, so "every day at 9:00" stays at 9:00 local
//! across DST changes. `COUNT` and `UNTIL` are taken out of the rule and applied here: the
//! series knows its occurrence number, so a rule evaluated from the current occurrence still
//! ends where the whole series should.

use chrono::{DateTime, Months, NaiveDate, NaiveTime, TimeDelta, TimeZone as _, Utc};

use crate::{
    task::{Due, Recurrence, RecurrenceAnchor, ReminderSpec, Task, TaskDraft, local_instant},
    user::Timezone,
};

/// How many rule instances are looked at before giving up on finding the next one. The
/// search starts about one interval before the moment it looks after (see [`Rule::jump`]), so
/// this is reached only by rules whose instances are very sparse.
const MAX_STEPS: usize = 200_000;

/// The last day an occurrence may fall on: dates are `YYYY-MM-DD`, so a series that would
/// pass the year 9999 ends.
pub fn last_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or(NaiveDate::MAX)
}

/// Whether `raw` is an UNTIL value this module understands.
pub(crate) fn until_is_valid(raw: &str) -> bool {
    Until::parse(raw).is_some()
}

/// A rule split into what the iterator evaluates and the limits of the whole series.
#[derive(Debug)]
struct Rule {
    /// The RRULE without COUNT and UNTIL.
    body: String,
    freq: String,
    interval: u32,
    /// Whether the rule narrows its frequency with BYxxx parts.
    narrowed: bool,
    count: Option<i64>,
    until: Option<Until>,
}

#[derive(Debug, Clone, Copy)]
enum Until {
    Instant(DateTime<Utc>),
    /// A floating local time, in the user's timezone.
    Local(chrono::NaiveDateTime),
    /// A date: the whole day counts.
    Date(NaiveDate),
}

impl Until {
    fn allows(self, due: Due, tz: Timezone) -> bool {
        match (self, due) {
            (Until::Date(d), Due::Date(x)) => x <= d,
            (Until::Date(d), Due::At(t)) => t.with_timezone(&tz.tz()).date_naive() <= d,
            (Until::Instant(u), d) => d.sort_instant(tz) <= u,
            (Until::Local(l), Due::At(t)) => t <= local_instant(l.date(), l.time(), tz),
            (Until::Local(l), Due::Date(x)) => x <= l.date(),
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        if let Some(utc) = raw.strip_suffix('Z') {
            let t = chrono::NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S").ok()?;
            return Some(Until::Instant(Utc.from_utc_datetime(&t)));
        }
        if raw.contains('T') {
            return chrono::NaiveDateTime::parse_from_str(raw, "%Y%m%dT%H%M%S")
                .ok()
                .map(Until::Local);
        }
        NaiveDate::parse_from_str(raw, "%Y%m%d")
            .ok()
            .map(Until::Date)
    }
}

impl Rule {
    fn split(rule: &Recurrence) -> Self {
        let mut body = Vec::new();
        let mut out = Rule {
            body: String::new(),
            freq: String::new(),
            interval: 1,
            narrowed: false,
            count: None,
            until: None,
        };
        for part in rule.as_str().split(';').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            match key {
                "COUNT" => out.count = value.parse().ok(),
                "UNTIL" => out.until = Until::parse(value),
                _ => {
                    match key {
                        "FREQ" => out.freq = value.to_owned(),
                        "INTERVAL" => out.interval = value.parse().unwrap_or(1),
                        "WKST" => {}
                        k if k.starts_with("BY") => out.narrowed = true,
                        _ => {}
                    }
                    body.push(part);
                }
            }
        }
        out.body = body.join(";");
        out
    }

    /// The first of the rule's instances from `start` (a local time in the user's zone)
    /// that is after `after` and satisfies `pred`.
    fn find(
        &self,
        start: DateTime<chrono_tz::Tz>,
        after: DateTime<Utc>,
        pred: impl Fn(DateTime<Utc>) -> bool,
    ) -> Option<DateTime<Utc>> {
        let start = self.jump(start, after);
        let start = start.with_timezone(&rrule::Tz::Tz(start.timezone()));
        let rule: rrule::RRule<rrule::Unvalidated> = self.body.parse().ok()?;
        // `limit` stops rrule's own search after 100,000 fruitless periods, so a rule that
        // yields nothing more ends instead of looping.
        let set = rule.build(start).ok()?.limit();
        (&set)
            .into_iter()
            .take(MAX_STEPS)
            .map(|t| t.with_timezone(&Utc))
            .find(|t| *t > after && pred(*t))
    }

    /// `start` moved forward by whole periods to about one period before `to`, so that a
    /// task due long ago is not stepped through its past instances one by one. Only for the
    /// fixed-length frequencies (hours, days, weeks), where every BYxxx part repeats with
    /// the period; months and years are few enough to step through.
    fn jump(&self, start: DateTime<chrono_tz::Tz>, to: DateTime<Utc>) -> DateTime<chrono_tz::Tz> {
        let unit = match self.freq.as_str() {
            "HOURLY" => TimeDelta::hours(1),
            "DAILY" => TimeDelta::days(1),
            "WEEKLY" => TimeDelta::weeks(1),
            _ => return start,
        };
        let period = unit * i32::try_from(self.interval.max(1)).unwrap_or(1);
        let zone = start.timezone();
        let from = start.naive_local();
        let gap = to.with_timezone(&zone).naive_local() - from;
        // One period of margin for a DST change in between.
        let periods = gap.num_seconds() / period.num_seconds().max(1) - 1;
        if periods <= 0 {
            return start;
        }
        let Some(moved) = i32::try_from(periods)
            .ok()
            .and_then(|p| from.checked_add_signed(period.checked_mul(p)?))
        else {
            return start;
        };
        zone.from_local_datetime(&moved)
            .earliest()
            .or_else(|| {
                zone.from_local_datetime(&(moved + TimeDelta::hours(1)))
                    .earliest()
            })
            .unwrap_or(start)
    }

    /// `date` moved on by one interval of the rule's frequency (anchor `completion`).
    fn step_date(&self, date: NaiveDate) -> Option<NaiveDate> {
        let n = self.interval.max(1);
        match self.freq.as_str() {
            "YEARLY" => date.checked_add_months(Months::new(12 * n)),
            "MONTHLY" => date.checked_add_months(Months::new(n)),
            "WEEKLY" => date.checked_add_signed(TimeDelta::weeks(i64::from(n))),
            _ => date.checked_add_signed(TimeDelta::days(i64::from(n))),
        }
    }

    fn sub_daily(&self) -> Option<TimeDelta> {
        let n = i64::from(self.interval.max(1));
        match self.freq.as_str() {
            "HOURLY" => Some(TimeDelta::hours(n)),
            "MINUTELY" => Some(TimeDelta::minutes(n)),
            "SECONDLY" => Some(TimeDelta::seconds(n)),
            _ => None,
        }
    }
}

/// The due moment of the occurrence after `task`, completed at `completed_at`, as API.md
/// says: anchor `due` — the first rule instance strictly after both the task's due time and
/// `now`; anchor `completion` — the completion moment plus one interval, keeping the time of
/// day. `None` when COUNT or UNTIL end the series, or the rule yields nothing more.
pub fn next_due(
    task: &Task,
    tz: Timezone,
    completed_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<Due> {
    let rule = Rule::split(task.recurrence.as_ref()?);
    if rule.count.is_some_and(|c| task.occurrence >= c) {
        return None;
    }
    let zone = tz.tz();
    let next = match (task.recurrence_anchor, task.due) {
        (RecurrenceAnchor::Due, Some(Due::At(due))) => {
            let after = due.max(now);
            Due::At(rule.find(due.with_timezone(&zone), after, |_| true)?)
        }
        (RecurrenceAnchor::Due, Some(Due::Date(date))) => {
            // Whole days: evaluate on dates, at midnight in the user's zone.
            let today = now.with_timezone(&zone).date_naive();
            let start = local_midnight(date, zone)?;
            let after = local_midnight(date.max(today), zone)?.with_timezone(&Utc);
            let t = rule.find(start, after, |_| true)?;
            Due::Date(t.with_timezone(&zone).date_naive())
        }
        (RecurrenceAnchor::Due, None) | (RecurrenceAnchor::Completion, None) => {
            // Counted from now, at the time of day of the completion.
            Due::At(rule.find(completed_at.with_timezone(&zone), now, |_| true)?)
        }
        (RecurrenceAnchor::Completion, Some(due)) => completion_next(&rule, due, tz, completed_at)?,
    };
    let in_range = match next {
        Due::At(t) => t.date_naive() <= last_day(),
        Due::Date(d) => d <= last_day(),
    };
    match rule.until {
        _ if !in_range => None,
        Some(until) if !until.allows(next, tz) => None,
        _ => Some(next),
    }
}

/// Whether completing `task` ended its series: it repeats, but COUNT, UNTIL or the year 9999
/// leave no occurrence after this one.
pub fn series_ended(task: &Task, tz: Timezone, now: DateTime<Utc>) -> bool {
    task.recurrence.is_some()
        && task
            .completed_at
            .is_some_and(|done| next_due(task, tz, done, now).is_none())
}

fn completion_next(
    rule: &Rule,
    due: Due,
    tz: Timezone,
    completed_at: DateTime<Utc>,
) -> Option<Due> {
    let zone = tz.tz();
    if let Some(step) = rule.sub_daily() {
        return Some(Due::At(completed_at + step));
    }
    let done_on = completed_at.with_timezone(&zone).date_naive();
    let day = rule.step_date(done_on)?;
    let candidate = match due {
        Due::At(t) => Due::At(local_instant(day, t.with_timezone(&zone).time(), tz)),
        Due::Date(_) => Due::Date(day),
    };
    if !rule.narrowed {
        return Some(candidate);
    }
    // "every! weekday": the first instance of the rule on or after the candidate day.
    let start = match candidate {
        Due::At(t) => t.with_timezone(&zone),
        Due::Date(d) => local_midnight(d, zone)?,
    };
    let from = start.with_timezone(&Utc);
    let first = rule.find(start, from - TimeDelta::seconds(1), |t| t >= from)?;
    Some(match candidate {
        Due::At(_) => Due::At(first),
        Due::Date(_) => Due::Date(first.with_timezone(&zone).date_naive()),
    })
}

fn local_midnight(date: NaiveDate, zone: chrono_tz::Tz) -> Option<DateTime<chrono_tz::Tz>> {
    zone.from_local_datetime(&date.and_time(NaiveTime::MIN))
        .earliest()
        .or_else(|| {
            zone.from_local_datetime(&date.and_hms_opt(1, 0, 0)?)
                .earliest()
        })
}

/// The draft of the occurrence after `task`: title, description, priority, tags, relative
/// reminders, recurrence and anchor carry over; the due moment is [`next_due`].
pub fn next_occurrence(
    task: &Task,
    tz: Timezone,
    completed_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<TaskDraft> {
    let due = next_due(task, tz, completed_at, now)?;
    let reminders = task
        .reminders
        .iter()
        .filter_map(|r| {
            r.before_minutes
                .map(|minutes| ReminderSpec::Before { minutes })
        })
        .collect();
    Some(TaskDraft {
        title: Some(task.title.clone()),
        description: task.description.clone(),
        priority: task.priority,
        tags: task.tags.clone(),
        due: Some(due),
        recurrence: task.recurrence.clone(),
        recurrence_anchor: task.recurrence_anchor,
        reminders,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        task::{Task, TaskTitle},
        user::UserId,
    };

    fn weekday(d: Due, tz: Timezone) -> chrono::Weekday {
        use chrono::Datelike as _;
        match d {
            Due::At(t) => t.with_timezone(&tz.tz()).weekday(),
            Due::Date(x) => x.weekday(),
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid")
            .with_timezone(&Utc)
    }

    fn tz(name: &str) -> Timezone {
        Timezone::parse(name).expect("valid tz")
    }

    fn task(rule: &str, due: Option<Due>, anchor: RecurrenceAnchor, tz: Timezone) -> Task {
        let draft = TaskDraft {
            title: Some(TaskTitle::parse("Series").expect("valid")),
            due,
            recurrence: Some(Recurrence::parse(rule).expect("valid rule")),
            recurrence_anchor: anchor,
            ..TaskDraft::default()
        };
        Task::create(UserId::new(), draft, tz, t("2020-01-01T00:00:00Z")).expect("valid task")
    }

    fn next(rule: &str, due: Due, zone: &str, done: &str) -> Option<Due> {
        let zone = tz(zone);
        let task = task(rule, Some(due), RecurrenceAnchor::Due, zone);
        next_due(&task, zone, t(done), t(done))
    }

    fn at(s: &str) -> Due {
        Due::At(t(s))
    }

    fn day(s: &str) -> Due {
        Due::Date(s.parse().expect("date"))
    }

    #[test]
    fn a_task_due_long_ago_gets_its_next_occurrence_after_now_without_walking_the_past() {
        let started = std::time::Instant::now();
        // Hourly from 60 years back: over 500,000 past instances, more than the search cap.
        assert_eq!(
            next(
                "FREQ=HOURLY;INTERVAL=3",
                at("1966-01-01T10:30:00Z"),
                "UTC",
                "2026-06-01T12:00:00Z"
            ),
            Some(at("2026-06-01T13:30:00Z"))
        );
        // Every other Tuesday and Thursday at 9:00 New York time, from 1900.
        let got = next(
            "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH",
            at("1900-01-02T14:00:00Z"),
            "America/New_York",
            "2026-06-01T12:00:00Z",
        )
        .expect("a next one");
        let Due::At(got) = got else { panic!("a time") };
        assert!(
            got > t("2026-06-01T12:00:00Z") && got < t("2026-06-16T00:00:00Z"),
            "{got}"
        );
        assert_eq!(
            got.with_timezone(&tz("America/New_York").tz()).time(),
            NaiveTime::from_hms_opt(9, 0, 0).expect("time")
        );
        // All-day, daily from the year 1.
        assert_eq!(
            next(
                "FREQ=DAILY",
                day("0001-01-01"),
                "UTC",
                "2026-06-01T12:00:00Z"
            ),
            Some(day("2026-06-02"))
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_series_that_would_pass_the_year_9999_ends() {
        assert_eq!(
            next(
                "FREQ=YEARLY",
                day("9999-06-01"),
                "UTC",
                "9999-06-01T12:00:00Z"
            ),
            None
        );
        assert_eq!(
            next(
                "FREQ=DAILY",
                at("9999-12-31T10:00:00Z"),
                "UTC",
                "9999-12-31T11:00:00Z"
            ),
            None
        );
        assert_eq!(
            next(
                "FREQ=YEARLY",
                day("9998-06-01"),
                "UTC",
                "9998-06-01T12:00:00Z"
            ),
            Some(day("9999-06-01"))
        );
    }

    #[test]
    fn rules_more_frequent_than_hourly_or_that_never_occur_are_rejected() {
        for rule in [
            "FREQ=MINUTELY",
            "FREQ=SECONDLY;INTERVAL=30",
            "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
            "FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=4",
        ] {
            let e = Recurrence::parse(rule).expect_err(rule);
            assert_eq!(e.0[0].field, "recurrence");
        }
        assert!(Recurrence::parse("FREQ=HOURLY;INTERVAL=2").is_ok());
        assert!(Recurrence::parse("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29").is_ok());
    }

    #[test]
    fn daily_moves_to_the_next_day_at_the_same_local_time() {
        assert_eq!(
            next(
                "FREQ=DAILY",
                at("2026-03-10T14:00:00Z"),
                "UTC",
                "2026-03-10T13:00:00Z"
            ),
            Some(at("2026-03-11T14:00:00Z"))
        );
    }

    #[test]
    fn daily_keeps_nine_local_across_the_spring_dst_change() {
        // New York switches to EDT on 2026-03-08: 9:00 EST is 14:00Z, 9:00 EDT is 13:00Z.
        assert_eq!(
            next(
                "FREQ=DAILY",
                at("2026-03-07T14:00:00Z"),
                "America/New_York",
                "2026-03-07T15:00:00Z"
            ),
            Some(at("2026-03-08T13:00:00Z"))
        );
    }

    #[test]
    fn weekly_keeps_nine_local_across_the_autumn_dst_change() {
        // Berlin leaves CEST on 2026-10-25: 9:00 CEST is 07:00Z, 9:00 CET is 08:00Z.
        assert_eq!(
            next(
                "FREQ=WEEKLY",
                at("2026-10-20T07:00:00Z"),
                "Europe/Berlin",
                "2026-10-20T08:00:00Z"
            ),
            Some(at("2026-10-27T08:00:00Z"))
        );
    }

    #[test]
    fn weekdays_skip_the_weekend() {
        let zone = tz("UTC");
        let n = next(
            "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
            at("2026-11-20T09:00:00Z"),
            "UTC",
            "2026-11-20T10:00:00Z",
        );
        assert_eq!(n, Some(at("2026-11-23T09:00:00Z")));
        assert_eq!(n.map(|d| weekday(d, zone)), Some(chrono::Weekday::Mon));
    }

    #[test]
    fn monthly_on_the_31st_skips_short_months() {
        assert_eq!(
            next(
                "FREQ=MONTHLY;BYMONTHDAY=31",
                at("2026-01-31T09:00:00Z"),
                "UTC",
                "2026-01-31T10:00:00Z"
            ),
            Some(at("2026-03-31T09:00:00Z"))
        );
        assert_eq!(
            next(
                "FREQ=MONTHLY",
                day("2026-03-31"),
                "UTC",
                "2026-03-31T10:00:00Z"
            ),
            Some(day("2026-05-31"))
        );
    }

    #[test]
    fn last_friday_of_the_month() {
        assert_eq!(
            next(
                "FREQ=MONTHLY;BYDAY=-1FR",
                day("2026-11-27"),
                "UTC",
                "2026-11-27T10:00:00Z"
            ),
            Some(day("2026-12-25"))
        );
    }

    #[test]
    fn yearly_on_feb_29_waits_for_the_next_leap_year() {
        assert_eq!(
            next(
                "FREQ=YEARLY",
                day("2028-02-29"),
                "UTC",
                "2028-02-29T10:00:00Z"
            ),
            Some(day("2032-02-29"))
        );
    }

    #[test]
    fn an_overdue_occurrence_moves_past_now_not_just_past_its_due_time() {
        // Due three days ago, completed today: the next one is tomorrow, not two days ago.
        assert_eq!(
            next(
                "FREQ=DAILY",
                at("2026-11-19T09:00:00Z"),
                "UTC",
                "2026-11-22T10:00:00Z"
            ),
            Some(at("2026-11-23T09:00:00Z"))
        );
    }

    #[test]
    fn anchor_completion_counts_one_interval_from_the_completion_keeping_the_time_of_day() {
        let zone = tz("America/New_York");
        let task = task(
            "FREQ=WEEKLY;INTERVAL=2",
            Some(at("2026-11-02T14:00:00Z")),
            RecurrenceAnchor::Completion,
            zone,
        );
        // Completed late, on Nov 10 (local): the next is two weeks after that, at 9:00 local.
        let done = t("2026-11-10T20:00:00Z");
        assert_eq!(
            next_due(&task, zone, done, done),
            Some(at("2026-11-24T14:00:00Z"))
        );
    }

    #[test]
    fn anchor_completion_for_an_all_day_task_moves_the_date() {
        let zone = tz("UTC");
        let task = task(
            "FREQ=MONTHLY",
            Some(day("2026-01-15")),
            RecurrenceAnchor::Completion,
            zone,
        );
        let done = t("2026-02-03T10:00:00Z");
        assert_eq!(next_due(&task, zone, done, done), Some(day("2026-03-03")));
    }

    #[test]
    fn anchor_completion_with_weekdays_lands_on_a_weekday() {
        let zone = tz("UTC");
        let task = task(
            "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR",
            Some(at("2026-11-19T09:00:00Z")),
            RecurrenceAnchor::Completion,
            zone,
        );
        // Completed on Friday: Saturday is not a weekday, so Monday.
        let done = t("2026-11-20T17:00:00Z");
        assert_eq!(
            next_due(&task, zone, done, done),
            Some(at("2026-11-23T09:00:00Z"))
        );
    }

    #[test]
    fn count_ends_the_series_at_its_last_occurrence() {
        let zone = tz("UTC");
        let mut task = task(
            "FREQ=DAILY;COUNT=3",
            Some(at("2026-11-20T09:00:00Z")),
            RecurrenceAnchor::Due,
            zone,
        );
        let done = t("2026-11-20T10:00:00Z");
        task.occurrence = 2;
        assert!(next_due(&task, zone, done, done).is_some());
        task.occurrence = 3;
        assert_eq!(next_due(&task, zone, done, done), None);
    }

    #[test]
    fn until_ends_the_series_inclusive_of_its_day() {
        assert_eq!(
            next(
                "FREQ=DAILY;UNTIL=20261121",
                at("2026-11-20T09:00:00Z"),
                "UTC",
                "2026-11-20T10:00:00Z"
            ),
            Some(at("2026-11-21T09:00:00Z"))
        );
        assert_eq!(
            next(
                "FREQ=DAILY;UNTIL=20261121",
                at("2026-11-21T09:00:00Z"),
                "UTC",
                "2026-11-21T10:00:00Z"
            ),
            None
        );
        assert_eq!(
            next(
                "FREQ=DAILY;UNTIL=20261121T080000Z",
                at("2026-11-20T09:00:00Z"),
                "UTC",
                "2026-11-20T10:00:00Z"
            ),
            None
        );
    }

    #[test]
    fn a_task_without_a_due_date_repeats_from_now() {
        let zone = tz("UTC");
        let task = task("FREQ=DAILY", None, RecurrenceAnchor::Due, zone);
        let done = t("2026-11-20T10:00:00Z");
        assert_eq!(
            next_due(&task, zone, done, done),
            Some(at("2026-11-21T10:00:00Z"))
        );
    }

    #[test]
    fn hourly_with_anchor_completion_adds_the_interval_to_the_completion() {
        let zone = tz("UTC");
        let task = task(
            "FREQ=HOURLY;INTERVAL=3",
            Some(at("2026-11-20T09:00:00Z")),
            RecurrenceAnchor::Completion,
            zone,
        );
        let done = t("2026-11-20T10:30:00Z");
        assert_eq!(
            next_due(&task, zone, done, done),
            Some(at("2026-11-20T13:30:00Z"))
        );
    }

    #[test]
    fn the_next_occurrence_copies_fields_and_only_relative_reminders() {
        let zone = tz("UTC");
        let mut task = task(
            "FREQ=DAILY",
            Some(at("2026-11-20T09:00:00Z")),
            RecurrenceAnchor::Due,
            zone,
        );
        task.reminders = vec![
            crate::task::Reminder {
                id: uuid::Uuid::now_v7(),
                fire_at: t("2026-11-20T08:30:00Z"),
                before_minutes: Some(30),
                status: crate::ReminderStatus::Fired,
            },
            crate::task::Reminder {
                id: uuid::Uuid::now_v7(),
                fire_at: t("2026-11-20T07:00:00Z"),
                before_minutes: None,
                status: crate::ReminderStatus::Fired,
            },
        ];
        let done = t("2026-11-20T10:00:00Z");
        let draft = next_occurrence(&task, zone, done, done).expect("a next one");
        assert_eq!(draft.title, Some(task.title.clone()));
        assert_eq!(draft.due, Some(at("2026-11-21T09:00:00Z")));
        assert_eq!(draft.reminders, vec![ReminderSpec::Before { minutes: 30 }]);
        assert_eq!(draft.recurrence, task.recurrence);
    }
}
