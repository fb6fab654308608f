//! When a schedule's next success is due, from the scheduler's own cron evaluation: the first
//! fire time after a reference time, and the interval to the fire time after it (what the cron
//! implies). Plain Rust.

use chrono::{DateTime, Duration, Utc};

use crate::error::Result;
use crate::scheduler::cron::{self, Schedule};

/// A schedule's due time after a reference time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The first fire time strictly after the reference time.
    pub due_at: DateTime<Utc>,
    /// The time between that fire time and the next one (None if the cron fires only once
    /// more, which a stored cron never does).
    pub interval: Option<Duration>,
}

/// The due time of `expr`, read in time zone `tz`, after `since`; None when it never fires
/// again.
pub fn due_after(expr: &str, tz: &str, since: DateTime<Utc>) -> Result<Option<Due>> {
    let schedule = Schedule::parse(expr)?;
    let tz = cron::timezone(tz)?;
    let Some(due_at) = schedule.next_after(tz, since) else {
        return Ok(None);
    };
    let interval = schedule.next_after(tz, due_at).map(|t| t - due_at);
    Ok(Some(Due { due_at, interval }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn due_is_the_next_fire_after_the_reference_and_the_interval_the_gap_after_it() {
        let d = due_after("30 2 * * *", "UTC", at("2026-11-23T02:30:01Z"))
            .unwrap()
            .unwrap();
        assert_eq!(d.due_at, at("2026-11-24T02:30:00Z"));
        assert_eq!(d.interval, Some(Duration::days(1)));
        let d = due_after("2 seconds", "UTC", at("2026-11-23T12:00:00.5Z"))
            .unwrap()
            .unwrap();
        assert_eq!(d.due_at, at("2026-11-23T12:00:02Z"));
        assert_eq!(d.interval, Some(Duration::seconds(2)));
        // Weekdays only: a success on Friday is due again on Monday, not on Saturday.
        // 2026-11-27 is a Friday.
        let d = due_after("0 9 * * 1-5", "UTC", at("2026-11-27T09:00:03Z"))
            .unwrap()
            .unwrap();
        assert_eq!(d.due_at, at("2026-11-30T09:00:00Z"));
        assert_eq!(d.interval, Some(Duration::days(1)));
        assert!(due_after("61 * * * *", "UTC", at("2026-11-27T09:00:03Z")).is_err());
        // In the schedule's time zone: 02:30 in Berlin is 01:30 UTC in winter; across the
        // spring-forward day (2027-03-28, 02:30 does not exist there) the interval is 23 hours.
        let d = due_after("30 2 * * *", "Europe/Berlin", at("2026-11-23T12:00:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(d.due_at, at("2026-11-24T01:30:00Z"));
        assert_eq!(d.interval, Some(Duration::days(1)));
        let d = due_after("0 12 * * *", "Europe/Berlin", at("2027-03-27T12:00:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(d.due_at, at("2027-03-28T10:00:00Z"));
        let d = due_after("0 12 * * *", "Europe/Berlin", at("2027-03-26T12:00:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(d.due_at, at("2027-03-27T11:00:00Z"));
        assert_eq!(d.interval, Some(Duration::hours(23)));
    }
}
