//! Dates and times: "tomorrow at 5pm", "friday", "dec 5", "12/5", "2026-12-05", "in 3 days",
//! "in 30 minutes", "next week", "this weekend", "end of the month", parts of the day.

use std::sync::LazyLock;

use chrono::{Datelike as _, Duration, Months, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use regex::Regex;

use crate::text::{NUMBER, Text, number};

/// What was said about when.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct When {
    pub date: Option<NaiveDate>,
    pub time: Option<NaiveTime>,
    /// An exact local moment ("in 30 minutes").
    pub at: Option<NaiveDateTime>,
    /// The date came from a range word ("this week") rather than a day.
    pub range_end: Option<NaiveDate>,
}

impl When {
    pub fn is_empty(&self) -> bool {
        self.date.is_none() && self.time.is_none() && self.at.is_none()
    }
}

pub const WEEKDAYS: &str = r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tues|tue|weds|wed|thurs|thur|thu|fri|sat|sun";
const MONTHS: &str = r"january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec";

pub fn weekday(s: &str) -> Option<Weekday> {
    Some(match s.get(..3)? {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

pub fn month(s: &str) -> Option<u32> {
    let m = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    m.iter()
        .position(|x| s.starts_with(x))
        .map(|i| i as u32 + 1)
}

/// The first `day` strictly after `today`.
pub fn next_weekday(today: NaiveDate, day: Weekday) -> NaiveDate {
    let ahead =
        (7 + day.num_days_from_monday() as i64 - today.weekday().num_days_from_monday() as i64) % 7;
    today + Duration::days(if ahead == 0 { 7 } else { ahead })
}

fn monday_of(d: NaiveDate) -> NaiveDate {
    d - Duration::days(d.weekday().num_days_from_monday() as i64)
}

fn last_of_month(d: NaiveDate) -> NaiveDate {
    let first = NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap_or(d);
    first
        .checked_add_months(Months::new(1))
        .and_then(|n| n.pred_opt())
        .unwrap_or(d)
}

/// A month and day without a year: this year, or next year when already past.
fn upcoming(today: NaiveDate, m: u32, d: u32, year: Option<i32>) -> Option<NaiveDate> {
    if let Some(y) = year {
        return NaiveDate::from_ymd_opt(y, m, d);
    }
    let this = NaiveDate::from_ymd_opt(today.year(), m, d);
    match this {
        Some(x) if x >= today => Some(x),
        _ => NaiveDate::from_ymd_opt(today.year() + 1, m, d),
    }
}

fn year(s: Option<regex::Match<'_>>) -> Option<i32> {
    let y: i32 = s?.as_str().parse().ok()?;
    Some(if y < 100 { 2000 + y } else { y })
}

fn re(s: &str) -> Regex {
    Regex::new(s).unwrap_or_else(|e| panic!("bad pattern {s}: {e}"))
}

macro_rules! pattern {
    ($name:ident, $src:expr) => {
        static $name: LazyLock<Regex> = LazyLock::new(|| re(&$src));
    };
}

pattern!(ISO, r"\b(?:on |by |due )?(\d{4})-(\d{2})-(\d{2})\b");
pattern!(
    SLASH,
    r"\b(?:on |by |due )?(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b"
);
pattern!(
    MONTH_DAY,
    format!(
        r"\b(?:on |by |due )?(?:the )?({MONTHS})\.? (\d{{1,2}})(?:st|nd|rd|th)?\b(?:,? (\d{{4}})\b)?"
    )
);
pattern!(
    DAY_MONTH,
    format!(
        r"\b(?:on |by |due )?(?:the )?(\d{{1,2}})(?:st|nd|rd|th)? (?:of )?({MONTHS})\b\.?(?:,? (\d{{4}})\b)?"
    )
);
pattern!(
    AFTER_TOMORROW,
    r"\b(?:on |by )?(?:the )?day after (?:tomorrow|tmrw)\b"
);
pattern!(
    TOMORROW,
    r"\b(?:by |due )?(tomorrow|tmrw|tmr|tomorow|tommorow)\b"
);
pattern!(TODAY, r"\b(?:by |due )?(?:later )?(today|tonight|tonite)\b");
pattern!(
    IN_SPAN,
    format!(
        r"\bin (?:the next )?({NUMBER}) (minutes?|mins?|hours?|hrs?|days?|weeks?|wks?|months?|years?)\b"
    )
);
pattern!(IN_HALF_HOUR, r"\bin (?:half an hour|a half hour|30 ?min)\b");
pattern!(
    NEXT_WEEK,
    r"\b(?:by |on )?(next|this|the) (week|weekend|month|year)\b|\b(?:on )?(?:the )?weekend\b"
);
pattern!(
    END_OF,
    r"\b(?:by |before |at |on )?(?:the )?end of (?:the |this )?(week|month|year)\b"
);
pattern!(
    WEEKDAY,
    format!(r"\b(?:(?:on|by|due|until) )?(?:(next|this|coming|the coming) )?({WEEKDAYS})\b")
);
pattern!(
    NTH_OF_MONTH,
    r"\b(?:on |by )?the (\d{1,2})(?:st|nd|rd|th)\b(?: of (?:the |this )?month)?"
);
pattern!(
    CLOCK,
    r"\b(?:at |@ ?|by |around )?(\d{1,2})(?::(\d{2}))? ?(am|pm|a\.m\.|p\.m\.|a|p)\b"
);
pattern!(
    CLOCK24,
    r"\b(?:at |@ ?|by |around )?([01]?\d|2[0-3]):([0-5]\d)\b"
);
pattern!(AT_HOUR, r"\b(?:at|@|around) (\d{1,2})\b");
pattern!(
    NAMED_TIME,
    r"\b(?:at |by |around )?(noon|midday|midnight)\b"
);
pattern!(
    PART_OF_DAY,
    r"\b(?:(this|in the|at) )?(morning|afternoon|evening|night)\b"
);

/// Takes every date and time phrase out of `text`; `now` is local wall-clock time.
pub fn take(text: &mut Text, now: NaiveDateTime) -> When {
    let today = now.date();
    let mut w = When::default();
    let set_date = |w: &mut When, d: NaiveDate| {
        if w.date.is_none() {
            w.date = Some(d);
        }
    };

    // Exact moments first ("in 30 minutes"), then absolute dates, then relative ones.
    if text.take(&IN_HALF_HOUR, |_| Some(())).is_some() {
        w.at = Some(now + Duration::minutes(30));
    }
    if let Some((n, unit)) = text.take(&IN_SPAN, |c| Some((number(&c[1])?, c[2].to_owned()))) {
        let n = i64::from(n);
        match unit.as_bytes().first() {
            Some(b'm') if unit.starts_with("mi") => w.at = Some(now + Duration::minutes(n)),
            Some(b'h') => w.at = Some(now + Duration::hours(n)),
            Some(b'd') => set_date(&mut w, today + Duration::days(n)),
            Some(b'w') => set_date(&mut w, today + Duration::weeks(n)),
            Some(b'm') => set_date(
                &mut w,
                today
                    .checked_add_months(Months::new(n as u32))
                    .unwrap_or(today),
            ),
            Some(b'y') => set_date(
                &mut w,
                today
                    .checked_add_months(Months::new(12 * n as u32))
                    .unwrap_or(today),
            ),
            _ => {}
        }
    }
    if let Some(d) = text.take(&ISO, |c| {
        NaiveDate::from_ymd_opt(c[1].parse().ok()?, c[2].parse().ok()?, c[3].parse().ok()?)
    }) {
        set_date(&mut w, d);
    }
    if let Some(d) = text.take(&MONTH_DAY, |c| {
        upcoming(today, month(&c[1])?, c[2].parse().ok()?, year(c.get(3)))
    }) {
        set_date(&mut w, d);
    }
    if let Some(d) = text.take(&DAY_MONTH, |c| {
        upcoming(today, month(&c[2])?, c[1].parse().ok()?, year(c.get(3)))
    }) {
        set_date(&mut w, d);
    }
    if let Some(d) = text.take(&SLASH, |c| {
        upcoming(
            today,
            c[1].parse().ok()?,
            c[2].parse().ok()?,
            year(c.get(3)),
        )
    }) {
        set_date(&mut w, d);
    }
    if text.take(&AFTER_TOMORROW, |_| Some(())).is_some() {
        set_date(&mut w, today + Duration::days(2));
    }
    if text.take(&TOMORROW, |_| Some(())).is_some() {
        set_date(&mut w, today + Duration::days(1));
    }
    if let Some(word) = text.take(&TODAY, |c| Some(c[1].to_owned())) {
        set_date(&mut w, today);
        if word.starts_with("toni") && w.time.is_none() {
            w.time = NaiveTime::from_hms_opt(20, 0, 0);
        }
    }
    if let Some(what) = text.take(&END_OF, |c| Some(c[1].to_owned())) {
        let d = match what.as_str() {
            "week" => next_or_today(today, Weekday::Sun),
            "month" => last_of_month(today),
            _ => NaiveDate::from_ymd_opt(today.year(), 12, 31).unwrap_or(today),
        };
        set_date(&mut w, d);
    }
    if let Some((which, what)) = text.take(&NEXT_WEEK, |c| {
        Some(match (c.get(1), c.get(2)) {
            (Some(a), Some(b)) => (a.as_str().to_owned(), b.as_str().to_owned()),
            _ => ("this".to_owned(), "weekend".to_owned()),
        })
    }) {
        let d = match (which.as_str(), what.as_str()) {
            ("next", "week") => {
                let monday = monday_of(today) + Duration::weeks(1);
                w.range_end = Some(monday + Duration::days(6));
                monday
            }
            ("next", "weekend") => monday_of(today) + Duration::days(12),
            (_, "weekend") => next_or_today(today, Weekday::Sat),
            ("next", "month") => today
                .with_day(1)
                .and_then(|d| d.checked_add_months(Months::new(1)))
                .unwrap_or(today),
            ("next", _) => NaiveDate::from_ymd_opt(today.year() + 1, 1, 1).unwrap_or(today),
            (_, "week") => {
                w.range_end = Some(next_or_today(today, Weekday::Sun));
                today
            }
            (_, "month") => {
                w.range_end = Some(last_of_month(today));
                today
            }
            _ => {
                w.range_end = NaiveDate::from_ymd_opt(today.year(), 12, 31);
                today
            }
        };
        set_date(&mut w, d);
    }
    if let Some(d) = text.take(&WEEKDAY, |c| {
        let day = weekday(&c[2])?;
        // Abbreviations ("sat", "sun", "wed") are words too: only with a lead-in.
        let lead = c
            .get(0)
            .map(|m| m.as_str().len() > c[2].len())
            .unwrap_or(false);
        if c[2].len() <= 4 && !lead && !matches!(&c[2], "tues" | "thurs" | "weds") {
            return None;
        }
        Some(next_weekday(today, day))
    }) {
        set_date(&mut w, d);
    }
    if let Some(d) = text.take(&NTH_OF_MONTH, |c| {
        let n: u32 = c[1].parse().ok()?;
        let this = today.with_day(n).filter(|d| *d >= today);
        this.or_else(|| {
            today
                .with_day(1)?
                .checked_add_months(Months::new(1))?
                .with_day(n)
        })
    }) {
        set_date(&mut w, d);
    }
    take_time(text, &mut w);
    w
}

fn next_or_today(today: NaiveDate, day: Weekday) -> NaiveDate {
    if today.weekday() == day {
        today
    } else {
        next_weekday(today, day)
    }
}

/// Takes a time of day: "5pm", "5:30 pm", "17:00", "at 5", "noon", "tomorrow morning".
pub fn take_time(text: &mut Text, w: &mut When) {
    let hm = |h: u32, m: u32| NaiveTime::from_hms_opt(h, m, 0);
    if let Some(t) = text.take(&CLOCK, |c| {
        let mut h: u32 = c[1].parse().ok()?;
        let m: u32 = c.get(2).map_or(Some(0), |m| m.as_str().parse().ok())?;
        if !(1..=12).contains(&h) {
            return None;
        }
        let pm = c[3].starts_with('p');
        if pm && h != 12 {
            h += 12;
        } else if !pm && h == 12 {
            h = 0;
        }
        hm(h, m)
    }) {
        w.time = Some(t);
    }
    if w.time.is_none()
        && let Some(t) = text.take(&CLOCK24, |c| hm(c[1].parse().ok()?, c[2].parse().ok()?))
    {
        w.time = Some(t);
    }
    if w.time.is_none()
        && let Some(t) = text.take(&NAMED_TIME, |c| match &c[1] {
            "midnight" => hm(23, 59),
            _ => hm(12, 0),
        })
    {
        w.time = Some(t);
    }
    if w.time.is_none() {
        let work = text.work().to_owned();
        if let Some(t) = text.take(&AT_HOUR, |c| {
            let m = c.get(0)?;
            let after = work[m.end()..].trim_start();
            // "at 5 minutes", "at 3%", "at 10 main street" are not times.
            if after.starts_with(|ch: char| {
                ch.is_ascii_digit() || ch == '%' || ch == '/' || ch == ':' || ch == '.'
            }) || [
                "min", "hour", "hr", "day", "week", "th ", "st ", "nd ", "rd ",
            ]
            .iter()
            .any(|u| after.starts_with(u))
            {
                return None;
            }
            let h: u32 = c[1].parse().ok()?;
            match h {
                1..=6 => hm(h + 12, 0),
                7..=12 => hm(h, 0),
                13..=23 => hm(h, 0),
                _ => None,
            }
        }) {
            w.time = Some(t);
        }
    }
    if let Some(part) = text.take(&PART_OF_DAY, |c| Some(c[2].to_owned()))
        && w.time.is_none()
    {
        w.time = match part.as_str() {
            "morning" => hm(9, 0),
            "afternoon" => hm(15, 0),
            "evening" => hm(18, 0),
            _ => hm(20, 0),
        };
    }
}
