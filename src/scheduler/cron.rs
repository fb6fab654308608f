//! Cron expressions as pg_cron reads them, evaluated in a schedule's time zone by the `croner`
//! library (Vixie cron patterns, time zones through chrono-tz, daylight-saving changes as the
//! Open Cron Pattern Specification says).
//!
//! What a schedule's `cron` may be (pg_cron's syntax): five fields `minute hour day-of-month
//! month day-of-week` with `*`, ranges, lists, steps (`*/15`, `9-17/2`, `5/20`), month names
//! JAN..DEC and day names SUN..SAT, 0 and 7 both Sunday, `$` in day-of-month for its last day;
//! the macros @hourly @daily (@midnight) @weekly @monthly @yearly (@annually); `'N seconds'`
//! (1-59) for frequent jobs. croner's own extensions (`L`, `W`, `#`, `?`) are accepted too.
//!
//! Two rules where libraries differ, fixed here to pg_cron's (and Vixie cron's):
//! - day matching: when either day field starts with `*` (`*`, `*/2`) a day must match both;
//!   otherwise (both restricted) a day matches if either does;
//! - daylight saving: a time that falls in the hour a spring-forward skips runs once, at the
//!   first instant after the gap (a 02:30 job runs at 03:00 that day); a time the fall-back
//!   repeats runs once, at its first occurrence. Jobs with a step or `*` in minute or hour
//!   (`*/15 * * * *`) keep their real-time rhythm: they run in both copies of the repeated hour
//!   and not in the skipped one.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};

use crate::error::{BackupError, Result};

#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every N seconds (1..=59), aligned to multiples of N since the epoch.
    Seconds(u32),
    Fields(Box<croner::Cron>),
}

const HINT: &str =
    "Use five fields 'minute hour day-of-month month day-of-week' (e.g. '30 2 * * *' \
     for 02:30 daily in the schedule's time zone), @hourly/@daily/@weekly/@monthly/@yearly, \
     or 'N seconds' with N from 1 to 59.";

fn invalid(expr: &str, why: impl std::fmt::Display) -> BackupError {
    BackupError::invalid(format!(
        "invalid cron expression \"{}\": {why}",
        expr.escape_debug()
    ))
    .with_hint(HINT)
}

/// The time zone called `name` (an IANA name, any case: 'Europe/Berlin', 'utc').
pub fn timezone(name: &str) -> Result<Tz> {
    Tz::from_str_insensitive(name.trim()).map_err(|_| {
        BackupError::invalid(format!("unknown time zone \"{}\"", name.escape_debug())).with_hint(
            "Use an IANA time zone name such as 'Europe/Berlin', 'America/New_York' or 'UTC' \
             (SELECT name FROM pg_timezone_names).",
        )
    })
}

/// pg_cron's `'N seconds'` (also `'N second'`), or None when `expr` is not of that form.
fn seconds(expr: &str, lower: &str) -> Option<Result<u32>> {
    let n = lower
        .strip_suffix("seconds")
        .or_else(|| lower.strip_suffix("second"))?;
    let n = n.trim();
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Err(invalid(expr, "expected 'N seconds'")));
    }
    Some(match n.parse::<u32>() {
        Ok(n) if (1..=59).contains(&n) => Ok(n),
        _ => Err(invalid(expr, "seconds must be from 1 to 59")),
    })
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Schedule> {
        let t = expr.trim();
        let lower = t.to_ascii_lowercase();
        if let Some(n) = seconds(expr, &lower) {
            return n.map(Schedule::Seconds);
        }
        // croner knows the same macros but @midnight; expanding them here keeps one list.
        let expanded = match lower.as_str() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            _ if t.starts_with('@') => return Err(invalid(expr, "unknown macro")),
            _ => t,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [_, _, dom, _, dow] = fields[..] else {
            return Err(invalid(
                expr,
                format!("expected 5 fields, found {}", fields.len()),
            ));
        };
        // croner's own day-OR rule ignores only a bare `*`; pg_cron's treats any field
        // starting with `*` as unrestricted, which makes the other one decide alone.
        let both = dom.starts_with('*') || dow.starts_with('*');
        // pg_cron's `$` (last day of the month) is croner's `L`.
        let pattern = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if i == 2 {
                    f.replace('$', "L")
                } else {
                    f.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        if fields.iter().any(|f| f.starts_with('+')) {
            return Err(invalid(expr, "'+' is not part of the cron syntax"));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .dom_and_dow(both)
            // "5/20": from 5 to the end in steps of 20, as pg_cron reads it.
            .sloppy_ranges(true)
            .build()
            .parse(&pattern)
            .map_err(|e| invalid(expr, e))?;
        Ok(Schedule::Fields(Box::new(cron)))
    }

    /// The first run time strictly after `after`, reading the fields as wall-clock time in
    /// `tz`; None if the expression never fires (the 31st of February).
    pub fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Seconds(n) => {
                let n = *n as i64;
                Utc.timestamp_opt((after.timestamp().div_euclid(n) + 1) * n, 0)
                    .single()
            }
            Schedule::Fields(cron) => cron
                .find_next_occurrence(&after.with_timezone(&tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

/// The next run of `cron` in time zone `tz` strictly after `after`: Ok(None) when it never
/// fires. The one entry point for other modules (health computes the interval a cron implies
/// from two consecutive fire times).
pub fn next_after(cron: &str, tz: &str, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    Ok(Schedule::parse(cron)?.next_after(timezone(tz)?, after))
}

impl FromStr for Schedule {
    type Err = BackupError;
    fn from_str(s: &str) -> Result<Schedule> {
        Schedule::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    fn next_in(expr: &str, tz: &str, after: &str) -> String {
        next_after(expr, tz, at(after))
            .unwrap()
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }
    fn next(expr: &str, after: &str) -> String {
        next_in(expr, "UTC", after)
    }
    /// Every run in [from, to), in UTC.
    fn runs(expr: &str, tz: &str, from: &str, to: &str) -> Vec<String> {
        let s = Schedule::parse(expr).unwrap();
        let tz = timezone(tz).unwrap();
        let (mut t, end) = (at(from), at(to));
        let mut v = Vec::new();
        while let Some(n) = s.next_after(tz, t) {
            if n >= end {
                break;
            }
            v.push(n.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            t = n;
        }
        v
    }

    #[test]
    fn five_fields() {
        assert_eq!(
            next("30 2 * * *", "2026-11-23T12:00:00Z"),
            "2026-11-24T02:30:00Z"
        );
        assert_eq!(
            next("30 2 * * *", "2026-11-24T02:29:59Z"),
            "2026-11-24T02:30:00Z"
        );
        assert_eq!(
            next("30 2 * * *", "2026-11-24T02:30:00Z"),
            "2026-11-25T02:30:00Z",
            "strictly after"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-11-23T12:07:10Z"),
            "2026-11-23T12:15:00Z"
        );
        assert_eq!(
            next("5/20 * * * *", "2026-11-23T12:26:00Z"),
            "2026-11-23T12:45:00Z"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2026-11-23T14:00:00Z"),
            "2026-11-23T17:00:00Z"
        );
        assert_eq!(
            next("0 0 1,15 * *", "2026-11-02T00:00:00Z"),
            "2026-11-15T00:00:00Z"
        );
        assert_eq!(
            next("0 0 $ * *", "2027-02-02T00:00:00Z"),
            "2027-02-28T00:00:00Z",
            "pg_cron's $ is the last day of the month"
        );
        assert_eq!(
            next("0 0 L * *", "2028-02-02T00:00:00Z"),
            "2028-02-29T00:00:00Z",
            "croner's L"
        );
        assert_eq!(
            next("0 3 * * 5#1", "2026-12-07T00:00:00Z"),
            "2027-01-01T03:00:00Z",
            "croner's #: the first Friday"
        );
    }

    #[test]
    fn sundays_are_0_and_7_and_names_work() {
        // 2026-11-23 is a Monday.
        for e in ["0 3 * * 0", "0 3 * * 7", "0 3 * * SUN", "0 3 * * sun"] {
            assert_eq!(
                next(e, "2026-11-23T00:00:00Z"),
                "2026-11-29T03:00:00Z",
                "{e}"
            );
        }
        // Every weekday number means the day pg_cron means: 1 Monday .. 6 Saturday.
        for (n, day) in [
            (1, "23"),
            (2, "24"),
            (3, "25"),
            (4, "26"),
            (5, "27"),
            (6, "28"),
        ] {
            assert_eq!(
                next(&format!("0 3 * * {n}"), "2026-11-22T12:00:00Z"),
                format!("2026-11-{day}T03:00:00Z"),
                "day of week {n}"
            );
        }
        for (name, n) in [
            ("MON", 1),
            ("tue", 2),
            ("Wed", 3),
            ("THU", 4),
            ("fri", 5),
            ("SAT", 6),
        ] {
            assert_eq!(
                next(&format!("0 3 * * {name}"), "2026-11-22T12:00:00Z"),
                next(&format!("0 3 * * {n}"), "2026-11-22T12:00:00Z"),
                "{name}"
            );
        }
        assert_eq!(
            next("0 3 * * MON-FRI", "2026-11-28T00:00:00Z"),
            "2026-11-30T03:00:00Z"
        );
        assert_eq!(
            next("0 0 1 JAN,jul *", "2026-11-23T00:00:00Z"),
            "2027-01-01T00:00:00Z"
        );
        // A range ending at 7 includes Sunday; 5-7 is Friday to Sunday.
        assert_eq!(
            runs(
                "0 0 * * 5-7",
                "UTC",
                "2026-11-23T00:00:00Z",
                "2026-11-30T00:00:01Z"
            ),
            [
                "2026-11-27T00:00:00Z",
                "2026-11-28T00:00:00Z",
                "2026-11-29T00:00:00Z"
            ]
        );
        assert_eq!(
            runs(
                "0 0 * * SAT-SUN",
                "UTC",
                "2026-11-23T00:00:00Z",
                "2026-11-30T00:00:01Z"
            ),
            ["2026-11-28T00:00:00Z", "2026-11-29T00:00:00Z"]
        );
    }

    #[test]
    fn month_ends_and_leap_days() {
        assert_eq!(
            next("0 0 31 * *", "2026-11-23T00:00:00Z"),
            "2026-12-31T00:00:00Z"
        );
        assert_eq!(
            next("0 0 31 * *", "2027-01-31T00:00:00Z"),
            "2027-03-31T00:00:00Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "2026-11-23T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            next("59 23 28-31 2 *", "2028-02-28T23:59:00Z"),
            "2028-02-29T23:59:00Z"
        );
        let never = Schedule::parse("0 0 31 2 *").unwrap();
        assert!(never
            .next_after(chrono_tz::UTC, at("2026-01-01T00:00:00Z"))
            .is_none());
    }

    #[test]
    fn day_of_month_or_day_of_week_as_pg_cron() {
        // Both restricted: the 13th, or any Friday, whichever comes first.
        assert_eq!(
            next("0 0 13 * 5", "2026-11-23T00:00:00Z"),
            "2026-11-27T00:00:00Z"
        );
        assert_eq!(
            next("0 0 13 * 5", "2026-12-12T00:00:00Z"),
            "2026-12-13T00:00:00Z"
        );
        // A field starting with '*' makes the day match both (Vixie cron's DOM_STAR rule):
        // odd days of the month that are Mondays. 2026-11-23 is an odd Monday, 11-30 an even
        // one, 2026-12-07 odd again.
        assert_eq!(
            runs(
                "0 0 */2 * 1",
                "UTC",
                "2026-11-22T00:00:00Z",
                "2026-12-08T00:00:00Z"
            ),
            ["2026-11-23T00:00:00Z", "2026-12-07T00:00:00Z"]
        );
        assert_eq!(
            runs(
                "0 0 1-3 * */2",
                "UTC",
                "2026-11-30T00:00:00Z",
                "2026-12-04T00:00:00Z"
            ),
            // Dec 1 2026 is a Tuesday (2), the 2nd a Wednesday (3), the 3rd a Thursday (4).
            ["2026-12-01T00:00:00Z", "2026-12-03T00:00:00Z"]
        );
    }

    #[test]
    fn macros_and_seconds() {
        assert_eq!(
            next("@hourly", "2026-11-23T12:00:00Z"),
            "2026-11-23T13:00:00Z"
        );
        assert_eq!(
            next("@daily", "2026-11-23T12:00:00Z"),
            "2026-11-24T00:00:00Z"
        );
        assert_eq!(
            next("@midnight", "2026-11-23T12:00:00Z"),
            "2026-11-24T00:00:00Z"
        );
        assert_eq!(
            next("@weekly", "2026-11-23T12:00:00Z"),
            "2026-11-29T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2026-11-23T12:00:00Z"),
            "2026-12-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2026-11-23T12:00:00Z"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@ANNUALLY", "2026-11-23T12:00:00Z"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("2 seconds", "2026-11-23T12:00:01Z"),
            "2026-11-23T12:00:02Z"
        );
        assert_eq!(
            next("30 seconds", "2026-11-23T12:00:30Z"),
            "2026-11-23T12:01:00Z"
        );
        assert_eq!(
            next(" 1 second ", "2026-11-23T12:00:30Z"),
            "2026-11-23T12:00:31Z"
        );
        // Macros are wall-clock times of the schedule's zone: @daily in Berlin is 23:00 UTC
        // in winter.
        assert_eq!(
            next_in("@daily", "Europe/Berlin", "2026-11-23T12:00:00Z"),
            "2026-11-23T23:00:00Z"
        );
        // 'N seconds' does not depend on the zone.
        assert_eq!(
            next_in("10 seconds", "America/New_York", "2026-11-23T12:00:01Z"),
            "2026-11-23T12:00:10Z"
        );
    }

    #[test]
    fn berlin_spring_forward_and_fall_back() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC). 02:30 does not exist that
        // day: the job runs once, at 03:00 CEST, the first instant after the gap.
        assert_eq!(
            runs(
                "30 2 * * *",
                "Europe/Berlin",
                "2026-03-27T12:00:00Z",
                "2026-03-31T00:00:00Z"
            ),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST (after the gap)
                "2026-03-30T00:30:00Z", // 02:30 CEST
            ]
        );
        // 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC). 02:30 happens twice: the job
        // runs once, at the first.
        assert_eq!(
            runs(
                "30 2 * * *",
                "Europe/Berlin",
                "2026-10-23T12:00:00Z",
                "2026-10-27T00:00:00Z"
            ),
            [
                "2026-10-24T00:30:00Z", // 02:30 CEST
                "2026-10-25T00:30:00Z", // 02:30 CEST, the first of the two
                "2026-10-26T01:30:00Z", // 02:30 CET
            ]
        );
        // A job outside the changed hour keeps its wall-clock time on both days.
        assert_eq!(
            runs(
                "0 9 * * *",
                "Europe/Berlin",
                "2026-03-28T12:00:00Z",
                "2026-03-30T12:00:00Z"
            ),
            ["2026-03-29T07:00:00Z", "2026-03-30T07:00:00Z"]
        );
        assert_eq!(
            runs(
                "0 9 * * *",
                "Europe/Berlin",
                "2026-10-24T12:00:00Z",
                "2026-10-26T12:00:00Z"
            ),
            ["2026-10-25T08:00:00Z", "2026-10-26T08:00:00Z"]
        );
        // An interval job keeps real time: none in the skipped hour, both copies of the
        // repeated one.
        assert_eq!(
            runs(
                "*/30 * * * *",
                "Europe/Berlin",
                "2026-03-29T00:00:00Z",
                "2026-03-29T02:00:00Z"
            ),
            [
                "2026-03-29T00:30:00Z", // 01:30 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST
                "2026-03-29T01:30:00Z", // 03:30 CEST
            ]
        );
        assert_eq!(
            runs(
                "*/30 * * * *",
                "Europe/Berlin",
                "2026-10-25T00:00:00Z",
                "2026-10-25T02:00:00Z"
            ),
            [
                "2026-10-25T00:30:00Z", // 02:30 CEST
                "2026-10-25T01:00:00Z", // 02:00 CET
                "2026-10-25T01:30:00Z", // 02:30 CET
            ]
        );
    }

    #[test]
    fn new_york_spring_forward_and_fall_back() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC).
        assert_eq!(
            runs(
                "30 2 * * *",
                "America/New_York",
                "2026-03-06T12:00:00Z",
                "2026-03-10T00:00:00Z"
            ),
            [
                "2026-03-07T07:30:00Z", // 02:30 EST
                "2026-03-08T07:00:00Z", // 03:00 EDT (after the gap)
                "2026-03-09T06:30:00Z", // 02:30 EDT
            ]
        );
        // 2026-11-01: 02:00 EDT becomes 01:00 EST (06:00 UTC); 01:30 happens twice.
        assert_eq!(
            runs(
                "30 1 * * *",
                "America/New_York",
                "2026-10-30T12:00:00Z",
                "2026-11-03T00:00:00Z"
            ),
            [
                "2026-10-31T05:30:00Z", // 01:30 EDT
                "2026-11-01T05:30:00Z", // 01:30 EDT, the first of the two
                "2026-11-02T06:30:00Z", // 01:30 EST
            ]
        );
        // @daily at midnight is untouched by either change, but its UTC time moves.
        assert_eq!(
            runs(
                "@daily",
                "America/New_York",
                "2026-03-07T12:00:00Z",
                "2026-03-09T12:00:00Z"
            ),
            ["2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z"]
        );
        // Weekdays are those of the zone's date: Monday 00:30 in New York is Monday 05:30 UTC
        // (not Sunday evening's UTC date).
        assert_eq!(
            next_in("30 0 * * 1", "America/New_York", "2026-11-22T12:00:00Z"),
            "2026-11-23T05:30:00Z"
        );
        assert_eq!(
            next_in("30 22 * * 0", "America/New_York", "2026-11-22T12:00:00Z"),
            "2026-11-23T03:30:00Z",
            "Sunday 22:30 EST is Monday in UTC"
        );
    }

    #[test]
    fn time_zones_by_name() {
        assert_eq!(
            timezone("Europe/Berlin").unwrap(),
            chrono_tz::Europe::Berlin
        );
        assert_eq!(
            timezone("europe/berlin").unwrap(),
            chrono_tz::Europe::Berlin
        );
        assert_eq!(timezone("UTC").unwrap(), chrono_tz::UTC);
        for bad in ["", "Mars/Olympus", "Europe/Berlin; DROP", "+02:00"] {
            let e = timezone(bad).unwrap_err();
            assert_eq!(e.sqlstate(), "22023", "{bad:?}");
            assert!(e.hint().unwrap().contains("pg_timezone_names"));
        }
    }

    #[test]
    fn invalid_expressions_are_22023_with_a_hint() {
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "@often",
            "0 seconds",
            "60 seconds",
            "x seconds",
            "x * * * *",
            "* * * FOO *",
            "+0 0 * * *",
        ] {
            let e = Schedule::parse(bad).unwrap_err();
            assert_eq!(e.sqlstate(), "22023", "{bad:?}");
            assert!(e.hint().unwrap().contains("five fields"), "{bad:?}");
        }
    }
}
