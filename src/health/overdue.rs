//! Overdue schedules: their due times for `backup.health`, and the scheduler's check that
//! raises `schedule_overdue` once per episode. The episode is remembered in
//! `backup.schedules.overdue_alerted_at` (this module is its only writer): set when the alert
//! goes out, cleared once the schedule is no longer overdue (a success, or it was paused), so
//! the next episode alerts again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pgrx::prelude::*;
use serde_json::json;

use super::times::{self, Due};
use crate::alerts::{self, Event, EventKind};
use crate::error::Result;
use crate::guc;
use crate::text::Text;

/// One schedule's times.
pub struct ScheduleTimes {
    pub name: String,
    pub due: Option<Due>,
    /// due_at plus backup.overdue_grace.
    pub overdue_at: Option<DateTime<Utc>>,
}

fn from_epoch(secs: f64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_micros((secs * 1e6).round() as i64)
}

/// Every schedule's due time: after its last success started (finish minus duration), else
/// after it was created. A cron that does not parse (never stored so) gives no times.
pub fn schedule_times() -> Result<Vec<ScheduleTimes>> {
    let grace = chrono::Duration::seconds(guc::overdue_grace_secs());
    let rows = Spi::connect(|c| {
        c.select(
            "SELECT name, cron, timezone,
                    extract(epoch FROM coalesce(last_success_at - coalesce(last_success_duration, interval '0'),
                                                created_at))::float8
             FROM backup.schedules ORDER BY name",
            None,
            &[],
        )?
        .map(|r| {
            Ok((
                r.get::<Text>(1)?.unwrap_or_default().0,
                r.get::<Text>(2)?.unwrap_or_default().0,
                r.get::<Text>(3)?.unwrap_or_default().0,
                r.get::<f64>(4)?,
            ))
        })
        .collect::<std::result::Result<Vec<_>, pgrx::spi::Error>>()
    })?;
    Ok(rows
        .into_iter()
        .map(|(name, cron, tz, since)| {
            let due = since
                .and_then(from_epoch)
                .and_then(|s| times::due_after(&cron, &tz, s).ok().flatten());
            let overdue_at = due.as_ref().map(|d| d.due_at + grace);
            ScheduleTimes {
                name,
                due,
                overdue_at,
            }
        })
        .collect())
}

/// The scheduler's check, in its transaction: raise `schedule_overdue` for each schedule that
/// became overdue since the last check (once: the row remembers it), end the episodes of
/// those no longer overdue, and return how long until the next enabled schedule becomes
/// overdue (for the scheduler's sleep).
pub fn check() -> Result<Option<Duration>> {
    // The trigger on backup.schedules wakes the scheduler after every UPDATE statement, even
    // one that changes no row: update only when there is something to change, or the
    // scheduler would wake itself forever.
    let (to_raise, to_clear) = Spi::connect(|c| {
        c.select(
            "SELECT count(*) FILTER (WHERE overdue AND overdue_alerted_at IS NULL),
                    count(*) FILTER (WHERE NOT overdue AND overdue_alerted_at IS NOT NULL)
             FROM backup.health",
            None,
            &[],
        )?
        .first()
        .get_two::<i64, i64>()
    })?;
    if to_raise.unwrap_or(0) > 0 {
        let raised = Spi::connect_mut(|c| {
            c.update(
                "UPDATE backup.schedules s SET overdue_alerted_at = now()
                 FROM backup.health h
                 WHERE h.name = s.name AND h.overdue AND s.overdue_alerted_at IS NULL
                 RETURNING pg_catalog.jsonb_build_object(
                     'schedule', h.name, 'database', h.database, 'cron', h.cron, 'timezone', h.timezone,
                     'last_success_at', h.last_success_at,
                     'last_success_backup_id', h.last_success_backup_id,
                     'due_at', h.due_at, 'overdue_since', h.overdue_at,
                     'failed_runs', h.failed_runs, 'last_status', h.last_status)::text",
                None,
                &[],
            )?
            .map(|r| r.get::<Text>(1).map(|t| t.unwrap_or_default().0))
            .collect::<std::result::Result<Vec<String>, pgrx::spi::Error>>()
        })?;
        for details in raised {
            let details: serde_json::Value = serde_json::from_str(&details).unwrap_or(json!({}));
            let schedule = details["schedule"].as_str().unwrap_or_default().to_string();
            pgrx::log!("pg_backup scheduler: schedule \"{schedule}\" is overdue");
            alerts::emit(&Event::new(EventKind::ScheduleOverdue, details));
        }
    }
    if to_clear.unwrap_or(0) > 0 {
        Spi::run(
            "UPDATE backup.schedules s SET overdue_alerted_at = NULL
             FROM backup.health h
             WHERE h.name = s.name AND NOT h.overdue AND s.overdue_alerted_at IS NOT NULL",
        )?;
    }
    let secs = Spi::get_one::<f64>(
        "SELECT extract(epoch FROM min(overdue_at) - clock_timestamp())::float8
         FROM backup.health WHERE enabled AND NOT overdue",
    )?;
    Ok(secs.map(|s| Duration::from_secs_f64(s.max(0.0) + 0.05)))
}
