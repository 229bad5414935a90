//! `taskflow nlu parse`: the debugging window into the parser.

use std::process::ExitCode;

use chrono_tz::Tz;

/// The machine's zone: `$TZ`, else `/etc/timezone`, else the `/etc/localtime` link, else UTC.
fn local_zone() -> Tz {
    let from_env = std::env::var("TZ")
        .ok()
        .map(|s| s.trim_start_matches(':').to_owned());
    let from_file = || {
        std::fs::read_to_string("/etc/timezone")
            .ok()
            .map(|s| s.trim().to_owned())
    };
    let from_link = || {
        let target = std::fs::read_link("/etc/localtime").ok()?;
        let s = target.to_string_lossy().into_owned();
        s.split_once("zoneinfo/").map(|(_, zone)| zone.to_owned())
    };
    [from_env, from_file(), from_link()]
        .into_iter()
        .flatten()
        .find_map(|name| name.parse().ok())
        .unwrap_or(Tz::UTC)
}

pub fn parse(now: Option<&str>, tz: Option<&str>, utterance: &str, explain: bool) -> ExitCode {
    let tz: Tz = match tz {
        Some(name) => match name.parse() {
            Ok(tz) => tz,
            Err(_) => {
                eprintln!(
                    "taskflow: --tz `{name}` is not an IANA timezone such as America/New_York"
                );
                return ExitCode::from(2);
            }
        },
        None => local_zone(),
    };
    let now = match now {
        Some(raw) => match taskflow_nlu::parse_now(raw, tz) {
            Some(n) => n,
            None => {
                eprintln!(
                    "taskflow: --now `{raw}` is not a time such as 2026-11-22T10:00:00 or 2026-11-22T10:00:00-05:00"
                );
                return ExitCode::from(2);
            }
        },
        None => chrono::Utc::now().with_timezone(&tz).naive_local(),
    };
    if explain {
        let (parsed, readings) = taskflow_nlu::explain(utterance, now, tz);
        let mut out = parsed.to_json();
        out["explain"] = serde_json::to_value(readings).unwrap_or_default();
        println!("{out}");
    } else {
        println!("{}", taskflow_nlu::parse(utterance, now, tz).to_json());
    }
    ExitCode::SUCCESS
}
