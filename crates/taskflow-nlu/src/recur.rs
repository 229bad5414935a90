//! Recurrence phrases → RFC 5545 RRULE: "every day", "daily", "every weekday", "every monday
//! and thursday", "every other week", "every 2 weeks on friday", "every month on the 1st",
//! "every 1st", "every last friday", "every year", "every! 3 days" / "3 days after I finish
//! it" (anchor completion), with "starting …", "until …" and "for N weeks".

use std::sync::LazyLock;

use chrono::{NaiveDate, NaiveDateTime, Weekday};
use regex::Regex;

use crate::{
    text::{NUMBER, Text, number},
    when::{self, WEEKDAYS},
};

/// What was said about repeating.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repeat {
    pub freq: &'static str,
    pub interval: u32,
    pub by_day: Vec<String>,
    pub by_month_day: Option<i32>,
    pub by_month: Option<u32>,
    pub count: Option<u32>,
    pub until: Option<NaiveDate>,
    pub start: Option<NaiveDate>,
    pub completion: bool,
}

impl Repeat {
    fn new(freq: &'static str, interval: u32) -> Self {
        Self {
            freq,
            interval: interval.max(1),
            ..Self::default()
        }
    }

    pub fn rrule(&self) -> String {
        let mut parts = vec![format!("FREQ={}", self.freq)];
        if self.interval > 1 {
            parts.push(format!("INTERVAL={}", self.interval));
        }
        if let Some(m) = self.by_month {
            parts.push(format!("BYMONTH={m}"));
        }
        if let Some(d) = self.by_month_day {
            parts.push(format!("BYMONTHDAY={d}"));
        }
        if !self.by_day.is_empty() {
            parts.push(format!("BYDAY={}", self.by_day.join(",")));
        }
        if let Some(c) = self.count {
            parts.push(format!("COUNT={c}"));
        }
        if let Some(u) = self.until {
            parts.push(format!("UNTIL={}", u.format("%Y%m%d")));
        }
        parts.join(";")
    }
}

fn code(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "MO",
        Weekday::Tue => "TU",
        Weekday::Wed => "WE",
        Weekday::Thu => "TH",
        Weekday::Fri => "FR",
        Weekday::Sat => "SA",
        Weekday::Sun => "SU",
    }
}

fn re(s: &str) -> Regex {
    Regex::new(s).unwrap_or_else(|e| panic!("bad pattern {s}: {e}"))
}

const ORDINAL: &str = r"first|1st|second|2nd|third|3rd|fourth|4th|last";
const UNIT: &str = r"days?|weeks?|months?|years?|hours?|weekdays?|workdays?|business days?";

static DAY_LIST: LazyLock<String> =
    LazyLock::new(|| format!(r"(?:{WEEKDAYS})s?(?:(?:,|,? and|,? &|,? or) (?:{WEEKDAYS})s?)*"));

static EVERY: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\b(?:every|each)(!?) ?(?:(other|{NUMBER}) )?(?:({UNIT})|({days})|({ORDINAL}) ({WEEKDAYS})(?: of (?:the|every|each) month)?|(?:the )?(\d{{1,2}})(?:st|nd|rd|th)(?: (?:of|day of) (?:the|every|each) month)?|(?:the )?last day(?: of (?:the|every|each) month)?|(?:(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? (\d{{1,2}})(?:st|nd|rd|th)?))\b",
        days = *DAY_LIST
    ))
});
static ADVERB: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(daily|weekly|biweekly|fortnightly|monthly|quarterly|yearly|annually|hourly|weekdays|on weekdays)\b",
    )
});
static ON_DAYS: LazyLock<Regex> =
    LazyLock::new(|| re(&format!(r"\b(?:on )?(?:the )?({days})\b", days = *DAY_LIST)));
static ON_MONTH_DAY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:on )?the (\d{1,2})(?:st|nd|rd|th)\b(?: of (?:the|every|each) month)?|\bon the last day(?: of the month)?\b",
    )
});
static ON_NTH_WEEKDAY: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\b(?:on )?the ({ORDINAL}) ({WEEKDAYS})\b(?: of (?:the|every|each) month)?"
    ))
});
static NTH_OF_EVERY_MONTH: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?:on )?the (\d{1,2})(?:st|nd|rd|th)? of (?:every|each) month\b"));
static AFTER_DONE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\b(?:(?:every )?({NUMBER}) (days?|weeks?|months?|years?|hours?) )?(?:after (?:i|we|you) (?:finish|complete|do|am done with|check off)(?: it| this| that)?|after (?:each )?completion|from (?:the )?(?:last )?completion)\b"
    ))
});
static STARTING: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?:starting|beginning|from|start) (?:on |from )?"));
static UNTIL: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?:until|till|til|through|ending|ending on|up to) (?:the )?"));
static FOR_N: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"\bfor (?:the next )?({NUMBER}) (times|days?|weeks?|months?|years?|occurrences)\b"
    ))
});

fn ordinal(s: &str) -> Option<i32> {
    Some(match s {
        "first" | "1st" => 1,
        "second" | "2nd" => 2,
        "third" | "3rd" => 3,
        "fourth" | "4th" => 4,
        "last" => -1,
        _ => return None,
    })
}

fn day_codes(list: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in list.split(|c: char| !c.is_ascii_alphabetic()) {
        if let Some(d) = when::weekday(w.trim_end_matches('s'))
            && (w.len() >= 3)
            && !matches!(w, "and" | "or")
        {
            let c = code(d).to_owned();
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    let order = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];
    out.sort_by_key(|c| order.iter().position(|o| o == c));
    out
}

fn unit_freq(unit: &str) -> (&'static str, u32) {
    match unit.trim_end_matches('s') {
        "day" => ("DAILY", 1),
        "week" => ("WEEKLY", 1),
        "month" => ("MONTHLY", 1),
        "year" => ("YEARLY", 1),
        "hour" => ("HOURLY", 1),
        _ => ("DAILY", 1),
    }
}

/// Takes the recurrence phrase out of `text`, if any.
pub fn take(text: &mut Text, now: NaiveDateTime) -> Option<Repeat> {
    let mut rep = take_rule(text)?;
    // A weekly rule may name its days after the interval: "every 2 weeks on friday".
    if rep.freq == "WEEKLY" && rep.by_day.is_empty() {
        let work = text.work().to_owned();
        if let Some(days) = text.take(&ON_DAYS, |c| {
            let m = c.get(0)?;
            // Only "on friday(s)" or a plural/listed day: a lone "friday" is a start date.
            let said = m.as_str();
            (said.starts_with("on ")
                || said.ends_with('s')
                || said.contains(" and ")
                || said.contains(','))
            .then(|| day_codes(&work[m.start()..m.end()]))
        }) {
            rep.by_day = days;
        }
    }
    if rep.freq == "MONTHLY" && rep.by_day.is_empty() && rep.by_month_day.is_none() {
        if let Some((n, day)) = text.take(&ON_NTH_WEEKDAY, |c| {
            Some((ordinal(&c[1])?, when::weekday(&c[2])?))
        }) {
            rep.by_day = vec![format!("{n}{}", code(day))];
        } else if let Some(d) = text.take(&ON_MONTH_DAY, |c| {
            c.get(1).map_or(Some(-1), |m| m.as_str().parse().ok())
        }) {
            rep.by_month_day = Some(d);
        }
    }
    modifiers(text, now, &mut rep);
    Some(rep)
}

fn take_rule(text: &mut Text) -> Option<Repeat> {
    if let Some(r) = text.take(&AFTER_DONE, |c| {
        let n = c.get(1).map_or(Some(1), |m| number(m.as_str()))?;
        let (freq, _) = c.get(2).map_or(("DAILY", 1), |u| unit_freq(u.as_str()));
        let mut r = Repeat::new(freq, n);
        r.completion = true;
        Some((r, c.get(2).is_some()))
    }) {
        let (mut r, has_unit) = r;
        if !has_unit {
            // "… after I finish it" with the interval said as "every week" elsewhere.
            if let Some(mut other) = take_rule(text) {
                other.completion = true;
                return Some(other);
            }
            r.freq = "DAILY";
        }
        return Some(r);
    }
    // "every morning": daily; the part of the day stays for the time reader.
    static EVERY_PART: LazyLock<Regex> =
        LazyLock::new(|| re(r"\b(?:every|each) (?:morning|afternoon|evening|night)\b"));
    let work = text.work().to_owned();
    if let Some(m) = EVERY_PART.find(&work) {
        let word_end = m.start() + work[m.start()..].find(' ').unwrap_or(0);
        text.blank(m.start(), word_end);
        return Some(Repeat::new("DAILY", 1));
    }
    if let Some(days) = text.take(&NTH_OF_EVERY_MONTH, |c| c[1].parse::<i32>().ok()) {
        let mut r = Repeat::new("MONTHLY", 1);
        r.by_month_day = Some(days);
        return Some(r);
    }
    if let Some(r) = text.take(&EVERY, |c| {
        let completion = &c[1] == "!";
        let interval = match c.get(2).map(|m| m.as_str()) {
            Some("other") => 2,
            Some(n) => number(n)?,
            None => 1,
        };
        let mut r = if let Some(unit) = c.get(3) {
            let unit = unit.as_str();
            if unit.starts_with("weekday")
                || unit.starts_with("workday")
                || unit.starts_with("business")
            {
                let mut r = Repeat::new("WEEKLY", 1);
                r.by_day = ["MO", "TU", "WE", "TH", "FR"].map(String::from).to_vec();
                r
            } else {
                let (freq, _) = unit_freq(unit);
                Repeat::new(freq, interval)
            }
        } else if let Some(days) = c.get(4) {
            let list = days.as_str();
            if list.starts_with("weekend") {
                let mut r = Repeat::new("WEEKLY", interval);
                r.by_day = vec!["SA".into(), "SU".into()];
                r
            } else {
                let mut r = Repeat::new("WEEKLY", interval);
                r.by_day = day_codes(list);
                if r.by_day.is_empty() {
                    return None;
                }
                r
            }
        } else if let (Some(n), Some(day)) = (c.get(5), c.get(6)) {
            let mut r = Repeat::new("MONTHLY", interval);
            r.by_day = vec![format!(
                "{}{}",
                ordinal(n.as_str())?,
                code(when::weekday(day.as_str())?)
            )];
            r
        } else if let Some(d) = c.get(7) {
            let mut r = Repeat::new("MONTHLY", interval);
            let d: i32 = d.as_str().parse().ok()?;
            if !(1..=31).contains(&d) {
                return None;
            }
            r.by_month_day = Some(d);
            r
        } else if let (Some(m), Some(d)) = (c.get(8), c.get(9)) {
            let mut r = Repeat::new("YEARLY", interval);
            r.by_month = when::month(m.as_str());
            r.by_month_day = d.as_str().parse().ok();
            r
        } else {
            // "every last day of the month"
            let mut r = Repeat::new("MONTHLY", interval);
            r.by_month_day = Some(-1);
            r
        };
        r.completion = completion;
        Some(r)
    }) {
        return Some(r);
    }
    text.take(&ADVERB, |c| {
        Some(match &c[1] {
            "daily" => Repeat::new("DAILY", 1),
            "weekly" => Repeat::new("WEEKLY", 1),
            "biweekly" | "fortnightly" => Repeat::new("WEEKLY", 2),
            "monthly" => Repeat::new("MONTHLY", 1),
            "quarterly" => Repeat::new("MONTHLY", 3),
            "hourly" => Repeat::new("HOURLY", 1),
            "weekdays" | "on weekdays" => {
                let mut r = Repeat::new("WEEKLY", 1);
                r.by_day = ["MO", "TU", "WE", "TH", "FR"].map(String::from).to_vec();
                r
            }
            _ => Repeat::new("YEARLY", 1),
        })
    })
}

/// "starting …", "until …", "for N weeks".
fn modifiers(text: &mut Text, now: NaiveDateTime, rep: &mut Repeat) {
    if let Some(d) = date_after(text, &STARTING, now) {
        rep.start = Some(d);
    }
    if let Some(d) = date_after(text, &UNTIL, now) {
        rep.until = Some(d);
    }
    if let Some((n, unit)) = text.take(&FOR_N, |c| Some((number(&c[1])?, c[2].to_owned()))) {
        let days = match unit.trim_end_matches('s') {
            "time" | "occurrence" => {
                rep.count = Some(n);
                return;
            }
            "day" => n,
            "week" => n * 7,
            "month" => n * 30,
            _ => n * 365,
        };
        let per: u32 = match rep.freq {
            "DAILY" => 1,
            "WEEKLY" => 7,
            "MONTHLY" => 30,
            "YEARLY" => 365,
            _ => 1,
        } * rep.interval.max(1);
        let times = (days / per).max(1);
        let per_period = if rep.freq == "WEEKLY" {
            rep.by_day.len().max(1) as u32
        } else {
            1
        };
        rep.count = Some(times * per_period);
    }
}

/// A date right after a lead-in word ("starting friday", "until dec 5").
fn date_after(text: &mut Text, lead: &Regex, now: NaiveDateTime) -> Option<NaiveDate> {
    let work = text.work().to_owned();
    let m = lead.find(&work)?;
    // Read a date from the words after the lead-in only.
    let tail_end = (m.end() + 40).min(work.len());
    let mut tail_end = tail_end;
    while !work.is_char_boundary(tail_end) {
        tail_end -= 1;
    }
    let mut probe = Text::new(&work[m.end()..tail_end]);
    let w = when::take(&mut probe, now);
    let date = w.date?;
    // Blank the lead-in and the words the date reader took.
    let taken: Vec<usize> = probe
        .work()
        .char_indices()
        .zip(work[m.end()..tail_end].chars())
        .filter(|((_, a), b)| *a == ' ' && *b != ' ')
        .map(|((i, _), _)| i)
        .collect();
    let last = taken.last().map_or(0, |i| i + 1);
    text.blank(m.start(), m.end() + last);
    Some(date)
}
