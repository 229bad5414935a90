//! How the assistant describes tasks: "#12 “Pay rent” — due Tue Dec 1, 9:00 AM, repeats
//! monthly on the 1st, urgent."

use chrono::{DateTime, Datelike as _, NaiveDate, Utc};
use chrono_tz::Tz;
use serde_json::Value;

/// "Tue Dec 1, 9:00 AM" in the user's zone; "Fri Jan 1 2027, 9:00 AM" outside `year`.
fn when_at(t: DateTime<Utc>, tz: Tz, year: i32) -> String {
    let local = t.with_timezone(&tz);
    if local.year() == year {
        local.format("%a %b %-d, %-I:%M %p").to_string()
    } else {
        local.format("%a %b %-d %Y, %-I:%M %p").to_string()
    }
}

/// "Tue Dec 1"; "Fri Jan 1 2027" outside `year`.
fn when_day(d: NaiveDate, year: i32) -> String {
    if d.year() == year {
        d.format("%a %b %-d").to_string()
    } else {
        d.format("%a %b %-d %Y").to_string()
    }
}

/// The current year in the user's zone: dates in it are said without their year.
fn this_year(tz: Tz) -> i32 {
    Utc::now().with_timezone(&tz).year()
}

fn ordinal(n: i64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn day_name(code: &str) -> &'static str {
    match code {
        "MO" => "Mon",
        "TU" => "Tue",
        "WE" => "Wed",
        "TH" => "Thu",
        "FR" => "Fri",
        "SA" => "Sat",
        _ => "Sun",
    }
}

/// "monthly on the 1st", "every 2 weeks on Fri", "on weekdays", "daily".
fn repeats(rule: &str, year: i32) -> String {
    let get = |key: &str| {
        rule.split(';')
            .find_map(|p| p.strip_prefix(key).map(str::to_owned))
    };
    let interval: i64 = get("INTERVAL=").and_then(|v| v.parse().ok()).unwrap_or(1);
    let freq = get("FREQ=").unwrap_or_default();
    let unit = match freq.as_str() {
        "DAILY" => "day",
        "WEEKLY" => "week",
        "MONTHLY" => "month",
        "YEARLY" => "year",
        "HOURLY" => "hour",
        _ => "time",
    };
    let mut out = match (interval, freq.as_str()) {
        (1, "DAILY") => "daily".to_owned(),
        (1, "WEEKLY") => "weekly".to_owned(),
        (1, "MONTHLY") => "monthly".to_owned(),
        (1, "YEARLY") => "yearly".to_owned(),
        (1, "HOURLY") => "hourly".to_owned(),
        (n, _) => format!("every {n} {unit}s"),
    };
    if let Some(days) = get("BYDAY=") {
        if days == "MO,TU,WE,TH,FR" {
            return "on weekdays".to_owned();
        }
        let named: Vec<String> = days
            .split(',')
            .map(|d| {
                let (n, code) = d.split_at(d.len().saturating_sub(2));
                match n {
                    "" => day_name(code).to_owned(),
                    "-1" => format!("last {}", day_name(code)),
                    n => format!("{} {}", ordinal(n.parse().unwrap_or(1)), day_name(code)),
                }
            })
            .collect();
        out.push_str(&format!(" on {}", named.join(", ")));
    }
    if let Some(d) = get("BYMONTHDAY=").and_then(|v| v.parse::<i64>().ok()) {
        if d == -1 {
            out.push_str(" on the last day");
        } else {
            out.push_str(&format!(" on the {}", ordinal(d)));
        }
    }
    if let Some(c) = get("COUNT=") {
        out.push_str(&format!(", {c} times"));
    }
    if let Some(u) = get("UNTIL=")
        && let Ok(d) = NaiveDate::parse_from_str(u.get(..8).unwrap_or(""), "%Y%m%d")
    {
        out.push_str(&format!(" until {}", when_day(d, year)));
    }
    out
}

/// "1 day", "2 days".
fn count(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// The one-line description of a task (its JSON).
pub fn describe(task: &Value, tz: Tz) -> String {
    describe_in(task, tz, this_year(tz))
}

/// [`describe`] said during `year`.
fn describe_in(task: &Value, tz: Tz, year: i32) -> String {
    let mut parts = Vec::new();
    if let Some(t) = task["due_at"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    {
        parts.push(format!("due {}", when_at(t.with_timezone(&Utc), tz, year)));
    } else if let Some(d) = task["due_date"]
        .as_str()
        .and_then(|s| s.parse::<NaiveDate>().ok())
    {
        parts.push(format!("due {}", when_day(d, year)));
    }
    if let Some(r) = task["recurrence"].as_str() {
        let anchor = if task["recurrence_anchor"] == "completion" {
            " after completion"
        } else {
            ""
        };
        parts.push(format!("repeats {}{anchor}", repeats(r, year)));
    }
    match task["priority"].as_str() {
        Some("urgent") => parts.push("urgent".into()),
        Some("high") => parts.push("high priority".into()),
        Some("low") => parts.push("low priority".into()),
        _ => {}
    }
    if let Some(tags) = task["tags"].as_array().filter(|t| !t.is_empty()) {
        let t: Vec<String> = tags
            .iter()
            .filter_map(Value::as_str)
            .map(|t| format!("#{t}"))
            .collect();
        parts.push(t.join(" "));
    }
    let reminders: Vec<i64> = task["reminders"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["before_minutes"].as_i64())
                .collect()
        })
        .unwrap_or_default();
    for m in reminders {
        parts.push(match m {
            0 => "reminder at the due time".to_owned(),
            m if m % 10080 == 0 => format!("reminder {} before", count(m / 10080, "week")),
            m if m % 1440 == 0 => format!("reminder {} before", count(m / 1440, "day")),
            m if m % 60 == 0 => format!("reminder {} before", count(m / 60, "hour")),
            m => format!("reminder {} before", count(m, "minute")),
        });
    }
    let done = if task["status"] == "completed" {
        " (done)"
    } else {
        ""
    };
    let head = format!(
        "#{} “{}”{done}",
        task["number"],
        task["title"].as_str().unwrap_or_default()
    );
    if parts.is_empty() {
        head
    } else {
        format!("{head} — {}", parts.join(", "))
    }
}

/// What a tool did, in a sentence or a short list, for the text block of an MCP result (the
/// JSON goes in `structuredContent`).
pub fn summary(tool: &str, result: &Value, tz: Tz) -> String {
    let task = |verb: &str| format!("{verb} {}.", describe(result, tz));
    match tool {
        "add_task" => task("Added"),
        "update_task" => task("Updated"),
        "complete_task" if result["series_ended"] == true => {
            format!("{} That was the last one of its series.", task("Completed"))
        }
        "complete_task" => task("Completed"),
        "reopen_task" => task("Reopened"),
        "set_reminder" => task("Reminder set:"),
        "delete_task" => format!("Deleted {}.", describe(&result["task"], tz)),
        "list_tasks" | "search_tasks" => {
            let items = result["items"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            if items.is_empty() {
                return "No tasks match.".into();
            }
            let mut text = match items.len() {
                1 => "1 task:".to_owned(),
                n => format!("{n} tasks:"),
            };
            for t in items {
                text.push_str("\n- ");
                text.push_str(&describe(t, tz));
            }
            if result["next_cursor"].is_string() {
                text.push_str("\n(more tasks follow; narrow the filter to see them)");
            }
            text
        }
        _ => result.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_reads_as_one_specific_line() {
        let task = serde_json::json!({"number": 12, "title": "Pay rent", "due_at": "2026-12-01T14:00:00Z",
            "recurrence": "FREQ=MONTHLY;BYMONTHDAY=1", "priority": "urgent", "tags": [], "reminders": []});
        assert_eq!(
            describe_in(&task, chrono_tz::America::New_York, 2026),
            "#12 “Pay rent” — due Tue Dec 1, 9:00 AM, repeats monthly on the 1st, urgent"
        );
    }

    #[test]
    fn a_date_outside_this_year_names_its_year() {
        let at = serde_json::json!({"number": 3, "title": "Taxes", "due_at": "2027-04-15T13:00:00Z",
            "tags": [], "reminders": []});
        assert_eq!(
            describe_in(&at, chrono_tz::America::New_York, 2026),
            "#3 “Taxes” — due Thu Apr 15 2027, 9:00 AM"
        );
        let day = serde_json::json!({"number": 4, "title": "Trip", "due_date": "2027-01-02",
            "recurrence": "FREQ=DAILY;UNTIL=20270105", "tags": [], "reminders": []});
        assert_eq!(
            describe_in(&day, chrono_tz::UTC, 2026),
            "#4 “Trip” — due Sat Jan 2 2027, repeats daily until Tue Jan 5 2027"
        );
        assert_eq!(
            describe_in(&day, chrono_tz::UTC, 2027),
            "#4 “Trip” — due Sat Jan 2, repeats daily until Tue Jan 5"
        );
    }

    #[test]
    fn rules_read_as_words() {
        assert_eq!(
            repeats("FREQ=WEEKLY;INTERVAL=2;BYDAY=FR", 2026),
            "every 2 weeks on Fri"
        );
        assert_eq!(
            repeats("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", 2026),
            "on weekdays"
        );
        assert_eq!(
            repeats("FREQ=MONTHLY;BYDAY=-1FR", 2026),
            "monthly on last Fri"
        );
        assert_eq!(repeats("FREQ=DAILY;COUNT=5", 2026), "daily, 5 times");
    }
}
