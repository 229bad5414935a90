//! Whatever is typed, the parser answers, quickly: no panic, and under a millisecond.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use proptest::prelude::*;
use taskflow_nlu::{Intent, parse};

const WORDS: &[&str] = &[
    "add",
    "remind",
    "me",
    "to",
    "every",
    "every!",
    "other",
    "day",
    "week",
    "monday",
    "friday",
    "and",
    "at",
    "5pm",
    "9:30am",
    "noon",
    "tomorrow",
    "today",
    "next",
    "in",
    "3",
    "days",
    "minutes",
    "hours",
    "before",
    "#work",
    "p1",
    "high",
    "priority",
    "tagged",
    "home",
    "task",
    "#12",
    "it",
    "done",
    "mark",
    "as",
    "delete",
    "rename",
    "move",
    "show",
    "list",
    "overdue",
    "this",
    "weekend",
    "end",
    "of",
    "the",
    "month",
    "dec",
    "5",
    "12/5",
    "2026-12-05",
    "until",
    "starting",
    "for",
    "2",
    "weeks",
    "last",
    "1st",
    "\"quoted",
    "title\"",
    "après",
    "牛乳",
    "🙂",
    "?",
    "!",
];

fn now() -> chrono::NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, 22)
        .unwrap()
        .and_hms_opt(10, 0, 0)
        .unwrap()
}

fn timed(s: &str, tz: chrono_tz::Tz) -> Duration {
    let t0 = Instant::now();
    let p = parse(s, now(), tz);
    let took = t0.elapsed();
    // Whatever came out serialises, and an add always has a title.
    let json = p.to_json();
    assert!(json["intent"].is_string());
    if p.intent == Intent::AddTask {
        assert!(!p.task.as_ref().unwrap().title.is_empty(), "{s:?} → {json}");
    }
    took
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,400}") {
        let _ = timed(&s, chrono_tz::America::New_York);
    }

    #[test]
    fn word_soup_from_the_grammar_never_panics(words in proptest::collection::vec(proptest::sample::select(WORDS), 0..25)) {
        let _ = timed(&words.join(" "), chrono_tz::Asia::Tokyo);
    }
}

#[test]
fn parsing_takes_under_a_millisecond_at_the_99th_percentile() {
    use proptest::{strategy::ValueTree as _, test_runner::TestRunner};
    let _ = parse("warm up every monday at 5pm", now(), chrono_tz::UTC);
    let mut runner = TestRunner::deterministic();
    let soup = proptest::collection::vec(proptest::sample::select(WORDS), 1..25);
    let mut times = Vec::new();
    // Each input's best of three: the parse's own cost, not the moments the test machine
    // gave the thread to other processes.
    let best = |s: &str, tz| (0..3).map(|_| timed(s, tz)).min().unwrap_or_default();
    for _ in 0..2000 {
        let words = soup.new_tree(&mut runner).unwrap().current();
        times.push(best(&words.join(" "), chrono_tz::Europe::Berlin));
    }
    let long = "add ".to_owned() + &"very long title words ".repeat(500);
    times.push(best(&long, chrono_tz::UTC));
    let p = p99(times);
    // Debug builds are several times slower than release; the bound holds for both.
    assert!(p < Duration::from_millis(1), "p99 {p:?}");
}
