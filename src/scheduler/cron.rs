//! Cron expressions, evaluated in UTC: the standard five fields (minute hour day-of-month
//! month day-of-week; 0 and 7 are Sunday; `*`, ranges, lists, steps, JAN..DEC and SUN..SAT),
//! the macros @hourly @daily @weekly @monthly @yearly (@annually), and pg_cron's
//! `'N seconds'` (1-59) for frequent jobs. Plain Rust.
//!
//! Day matching follows Vixie cron: when both day-of-month and day-of-week are restricted, a
//! day matches if either does.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};

use crate::error::{BackupError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every N seconds (1..=59).
    Seconds(u32),
    Fields(Fields),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    minutes: u64,    // bits 0..59
    hours: u32,      // bits 0..23
    days: u32,       // bits 1..31
    months: u16,     // bits 1..12
    weekdays: u8,    // bits 0..6, Sunday = 0
    days_star: bool, // day-of-month was '*'
    weekdays_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn invalid(expr: &str, why: impl std::fmt::Display) -> BackupError {
    BackupError::invalid(format!("invalid cron expression \"{}\": {why}", expr.escape_debug())).with_hint(
        "Use five fields 'minute hour day-of-month month day-of-week' (e.g. '30 2 * * *' for 02:30 UTC daily), \
         @hourly/@daily/@weekly/@monthly/@yearly, or 'N seconds' with N from 1 to 59.",
    )
}

/// Parse one field into a bit set over `min..=max`. `names` map to `min + index`.
fn field(
    expr: &str,
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
    what: &str,
) -> Result<(u64, bool)> {
    let value = |s: &str| -> Result<u32> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(min + i as u32);
        }
        s.parse::<u32>()
            .map_err(|_| invalid(expr, format!("\"{s}\" is not a valid {what}")))
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step = s
                    .parse::<u32>()
                    .map_err(|_| invalid(expr, format!("bad step \"{s}\" in {what}")))?;
                if step == 0 {
                    return Err(invalid(expr, format!("step 0 in {what}")));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            // "5/15" means from 5 to the end in steps of 15.
            (v, if step > 1 { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(invalid(
                expr,
                format!("{what} {range} is outside {min}-{max}"),
            ));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    // As in Vixie cron and pg_cron, a field starting with '*' ("*", "*/2") counts as
    // unrestricted for the day-of-month / day-of-week rule.
    Ok((bits, text.starts_with('*')))
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Schedule> {
        let t = expr.trim();
        let lower = t.to_ascii_lowercase();
        let expanded = match lower.as_str() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            _ => t,
        };
        if let Some(n) = lower
            .strip_suffix("seconds")
            .or_else(|| lower.strip_suffix("second"))
        {
            let n: u32 = n
                .trim()
                .parse()
                .map_err(|_| invalid(expr, "expected 'N seconds'"))?;
            if !(1..=59).contains(&n) {
                return Err(invalid(expr, "seconds must be from 1 to 59"));
            }
            return Ok(Schedule::Seconds(n));
        }
        if expanded.starts_with('@') {
            return Err(invalid(expr, "unknown macro"));
        }
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let [mi, h, dom, mo, dow] = parts[..] else {
            return Err(invalid(
                expr,
                format!("expected 5 fields, found {}", parts.len()),
            ));
        };
        let (minutes, _) = field(expr, mi, 0, 59, &[], "minute")?;
        let (hours, _) = field(expr, h, 0, 23, &[], "hour")?;
        let (days, days_star) = field(expr, dom, 1, 31, &[], "day of month")?;
        let (months, _) = field(expr, mo, 1, 12, &MONTHS, "month")?;
        // 7 is Sunday too; fold it onto 0.
        let (mut weekdays, weekdays_star) = field(expr, dow, 0, 7, &WEEKDAYS, "day of week")?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        Ok(Schedule::Fields(Fields {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            days_star,
            weekdays_star,
        }))
    }

    /// The first run time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Seconds(n) => {
                // Aligned to multiples of N seconds, like pg_cron.
                let n = *n as i64;
                let ts = after.timestamp();
                Utc.timestamp_opt((ts / n + 1) * n, 0).single()
            }
            Schedule::Fields(f) => f.next_after(after),
        }
    }
}

impl Fields {
    fn day_matches(&self, d: NaiveDate) -> bool {
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().num_days_from_sunday()) != 0;
        match (self.days_star, self.weekdays_star) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Start at the next whole minute.
        let start = after.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let mut day = start.date_naive();
        let mut first = true;
        // Eight years covers every valid expression (Feb 29 on a given weekday included).
        for _ in 0..(366 * 8) {
            if self.months & (1 << day.month()) != 0 && self.day_matches(day) {
                let (h0, m0) = if first {
                    (start.hour(), start.minute())
                } else {
                    (0, 0)
                };
                for h in h0..24 {
                    if self.hours & (1 << h) == 0 {
                        continue;
                    }
                    let m_from = if h == h0 { m0 } else { 0 };
                    for m in m_from..60 {
                        if self.minutes & (1 << m) != 0 {
                            return Utc.from_utc_datetime(&day.and_hms_opt(h, m, 0)?).into();
                        }
                    }
                }
            }
            day = day.succ_opt()?;
            first = false;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    fn next(expr: &str, after: &str) -> String {
        Schedule::parse(expr)
            .unwrap()
            .next_after(at(after))
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
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
        assert_eq!(
            next("0 3 * * MON-FRI", "2026-11-28T00:00:00Z"),
            "2026-11-30T03:00:00Z"
        );
        assert_eq!(
            next("0 0 1 JAN,jul *", "2026-11-23T00:00:00Z"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * 5-7", "2026-11-23T00:00:00Z"),
            "2026-11-27T00:00:00Z"
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
        assert!(never.next_after(at("2026-01-01T00:00:00Z")).is_none());
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // The 13th, or any Friday: whichever comes first.
        assert_eq!(
            next("0 0 13 * 5", "2026-11-23T00:00:00Z"),
            "2026-11-27T00:00:00Z"
        );
        assert_eq!(
            next("0 0 13 * 5", "2026-12-12T00:00:00Z"),
            "2026-12-13T00:00:00Z"
        );
        // "*/2" in day-of-month is unrestricted for that rule: only Mondays fire.
        assert_eq!(
            next("0 0 */2 * 1", "2026-11-23T00:00:00Z"),
            "2026-11-30T00:00:00Z"
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
            next("2 seconds", "2026-11-23T12:00:01Z"),
            "2026-11-23T12:00:02Z"
        );
        assert_eq!(
            next("30 seconds", "2026-11-23T12:00:30Z"),
            "2026-11-23T12:01:00Z"
        );
    }

    #[test]
    fn invalid_expressions_are_22023_with_a_hint() {
        for bad in [
            "",
            "* * * *",
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
            "x * * * *",
            "* * * FOO *",
        ] {
            let e = Schedule::parse(bad).unwrap_err();
            assert_eq!(e.sqlstate(), "22023", "{bad:?}");
            assert!(e.hint().unwrap().contains("five fields"));
        }
    }
}
