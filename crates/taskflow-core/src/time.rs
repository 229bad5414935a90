//! Time on the wire, as API.md writes it: instants are RFC 3339 with an offset, dates are
//! exactly `YYYY-MM-DD`, and both lie in the years 0001–9999 (in UTC for an instant), so
//! every value the API returns can be written back in the same form.

use chrono::{DateTime, Datelike as _, NaiveDate, Utc};

/// The first and last year a date or instant may have.
pub const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// A date written exactly `YYYY-MM-DD` (no sign, no extra or missing digits).
pub fn parse_date(raw: &str) -> Option<NaiveDate> {
    let b = raw.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return None;
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .filter(|d| YEARS.contains(&d.year()))
}

/// An RFC 3339 time with an offset, whose year has four digits and whose UTC instant lies
/// in the years 0001–9999.
pub fn parse_instant(raw: &str) -> Option<DateTime<Utc>> {
    let b = raw.as_bytes();
    if b.len() < 20 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return None;
    }
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| YEARS.contains(&t.year()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_four_digit_dates_with_two_digit_months_and_days_are_dates() {
        assert!(parse_date("2024-01-01").is_some());
        assert!(parse_date("0001-01-01").is_some());
        assert!(parse_date("9999-12-31").is_some());
        for bad in [
            "-0001-01-01",
            "+002024-01-01",
            "2024-1-1",
            "0000-01-01",
            "2024-02-30",
            " 2024-01-01",
            "2024/01/01",
        ] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn an_instant_outside_the_years_0001_to_9999_in_utc_is_refused() {
        assert!(parse_instant("2026-12-01T09:00:00-05:00").is_some());
        assert!(parse_instant("9999-12-31T23:59:59Z").is_some());
        for bad in [
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+01:00",
            "+10000-01-01T00:00:00Z",
            "2026-12-01T09:00:00",
            "2026-12-01",
        ] {
            assert!(parse_instant(bad).is_none(), "{bad}");
        }
    }
}
