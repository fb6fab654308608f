//! What the scheduler decides without asking the database: the wait before a retry, whether a
//! failed run is tried again, what a fire time does while the previous run still goes, and how
//! much history `backup.history_keep` keeps. Plain Rust, unit-tested.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{BackupError, Result};

/// What a fire time does while the schedule's previous run still goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// Skip it (counted in backup.schedules.skipped_runs).
    Skip,
    /// Run it as soon as the previous run ends; at most one run waits.
    Queue,
}

impl Overlap {
    pub fn parse(s: &str) -> Result<Overlap> {
        match s.trim().to_ascii_lowercase().as_str() {
            "skip" => Ok(Overlap::Skip),
            "queue" => Ok(Overlap::Queue),
            _ => Err(BackupError::invalid(format!(
                "invalid overlap \"{}\"",
                s.escape_debug()
            ))
            .with_hint("Use 'skip' (the default: a fire time is skipped while the previous run goes) or 'queue' (it runs when the previous run ends; at most one waits).")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
        }
    }
}

/// The longest wait before a retry, in multiples of the first one.
pub const MAX_BACKOFF_FACTOR: u32 = 60;

/// The wait before retry `n` (1 the first): `base`, then twice as long each time, at most
/// `MAX_BACKOFF_FACTOR` times `base` (1, 2, 4, ... 32, 60 minutes with the default 1 minute).
pub fn backoff(base: Duration, n: u32) -> Duration {
    let factor = 1u32
        .checked_shl(n.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(MAX_BACKOFF_FACTOR);
    base * factor
}

/// After a failed scheduled run that was retry `retry` (0: the fire time's first run) of a
/// schedule allowing `retries`: the next retry's number and time, or None (no retry left, or
/// the schedule's next regular run comes first and stands for it).
pub fn retry_after_failure(
    retries: u32,
    retry: u32,
    now: DateTime<Utc>,
    base: Duration,
    next_fire: Option<DateTime<Utc>>,
) -> Option<(u32, DateTime<Utc>)> {
    if retry >= retries {
        return None;
    }
    let n = retry + 1;
    let at = now + chrono::Duration::from_std(backoff(base, n)).ok()?;
    match next_fire {
        Some(fire) if fire <= at => None,
        _ => Some((n, at)),
    }
}

/// What a fire time does when the schedule's previous run still goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Not run: counted in skipped_runs.
    Skip,
    /// Run when the previous run ends.
    Queue,
}

/// overlap => 'skip' skips; 'queue' queues one run, and skips fire times while one waits.
pub fn when_busy(overlap: Overlap, already_queued: bool) -> Busy {
    match (overlap, already_queued) {
        (Overlap::Queue, false) => Busy::Queue,
        _ => Busy::Skip,
    }
}

/// `backup.history_keep`: how much history the scheduler keeps. Both limits apply when both
/// are given; neither (an empty setting) keeps everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryKeep {
    /// Rows older than this many days go.
    pub days: Option<u32>,
    /// Only the newest this many rows of each history table stay.
    pub rows: Option<u64>,
}

impl HistoryKeep {
    /// '30 days', '1000 rows', '30 days, 1000 rows' (any order, singular or plural, any case).
    pub fn parse(s: &str) -> Result<HistoryKeep, String> {
        let mut keep = HistoryKeep::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut words = part.split_whitespace();
            let (Some(n), Some(unit), None) = (words.next(), words.next(), words.next()) else {
                return Err(format!("\"{part}\" is not 'N days' or 'N rows'"));
            };
            let n: u64 =
                n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("\"{part}\": the number must be a whole number above 0")
                })?;
            match unit.to_ascii_lowercase().as_str() {
                "day" | "days" if keep.days.is_none() => {
                    keep.days =
                        Some(u32::try_from(n).map_err(|_| format!("\"{part}\" is too long"))?)
                }
                "row" | "rows" if keep.rows.is_none() => keep.rows = Some(n),
                "day" | "days" | "row" | "rows" => {
                    return Err(format!("\"{part}\": each limit may be given once"))
                }
                _ => return Err(format!("\"{part}\": the unit must be days or rows")),
            }
        }
        Ok(keep)
    }

    pub fn keeps_everything(&self) -> bool {
        self.days.is_none() && self.rows.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let m = Duration::from_secs(60);
        let waits: Vec<u64> = (1..=9).map(|n| backoff(m, n).as_secs() / 60).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(Duration::from_secs(1), 3), Duration::from_secs(4));
        assert_eq!(backoff(m, 100), m * 60, "no overflow for a large n");
    }

    #[test]
    fn retries_are_counted_and_end() {
        let now = at("2026-12-07T12:00:00Z");
        let base = Duration::from_secs(60);
        let daily = Some(at("2026-12-08T02:30:00Z"));
        assert_eq!(
            retry_after_failure(3, 0, now, base, daily),
            Some((1, at("2026-12-07T12:01:00Z")))
        );
        assert_eq!(
            retry_after_failure(3, 1, now, base, daily),
            Some((2, at("2026-12-07T12:02:00Z")))
        );
        assert_eq!(
            retry_after_failure(3, 2, now, base, daily),
            Some((3, at("2026-12-07T12:04:00Z")))
        );
        assert_eq!(
            retry_after_failure(3, 3, now, base, daily),
            None,
            "all used"
        );
        assert_eq!(
            retry_after_failure(0, 0, now, base, daily),
            None,
            "none asked"
        );
        // The next regular run comes before the retry would: it stands for the retry.
        assert_eq!(
            retry_after_failure(3, 0, now, base, Some(at("2026-12-07T12:00:30Z"))),
            None
        );
        assert_eq!(
            retry_after_failure(3, 0, now, base, None),
            Some((1, at("2026-12-07T12:01:00Z")))
        );
    }

    #[test]
    fn overlap_parses_skip_and_queue_only() {
        assert_eq!(Overlap::parse("skip").unwrap(), Overlap::Skip);
        assert_eq!(Overlap::parse(" Queue ").unwrap(), Overlap::Queue);
        for bad in ["", "wait", "skip,queue"] {
            let e = Overlap::parse(bad).unwrap_err();
            assert_eq!(e.sqlstate(), "22023", "{bad:?}");
            assert!(e.hint().unwrap().contains("'queue'"));
        }
    }

    #[test]
    fn overlap_skips_or_queues_one() {
        assert_eq!(when_busy(Overlap::Skip, false), Busy::Skip);
        assert_eq!(when_busy(Overlap::Skip, true), Busy::Skip);
        assert_eq!(when_busy(Overlap::Queue, false), Busy::Queue);
        assert_eq!(
            when_busy(Overlap::Queue, true),
            Busy::Skip,
            "at most one run waits"
        );
    }

    #[test]
    fn history_keep_parses_days_rows_and_both() {
        assert_eq!(HistoryKeep::parse("").unwrap(), HistoryKeep::default());
        assert!(HistoryKeep::parse("  ").unwrap().keeps_everything());
        assert_eq!(
            HistoryKeep::parse("30 days").unwrap(),
            HistoryKeep {
                days: Some(30),
                rows: None
            }
        );
        assert_eq!(
            HistoryKeep::parse("1000 rows").unwrap(),
            HistoryKeep {
                days: None,
                rows: Some(1000)
            }
        );
        let both = HistoryKeep {
            days: Some(30),
            rows: Some(1000),
        };
        assert_eq!(HistoryKeep::parse("30 days, 1000 rows").unwrap(), both);
        assert_eq!(HistoryKeep::parse("1000 ROWS,30 Days").unwrap(), both);
        assert_eq!(HistoryKeep::parse("1 day, 1 row").unwrap().rows, Some(1));
        for bad in [
            "30",
            "days",
            "0 days",
            "-1 days",
            "30 weeks",
            "30 days 1000 rows",
            "1 days, 2 days",
            "99999999999 days",
        ] {
            assert!(HistoryKeep::parse(bad).is_err(), "{bad:?}");
        }
    }
}
