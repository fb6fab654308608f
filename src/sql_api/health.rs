//! Health and metrics (issue 21): the due times behind the view `backup.health`
//! (sql/health.sql) and the Prometheus text of `backup.metrics()`. Both only read the
//! catalog, run as the extension owner with a pinned search_path, and say nothing secret, so
//! backup_operator may call them (also on a hot standby).

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

use crate::error::OrRaise;
use crate::health;
use crate::text::Text;

/// Unix epoch to PostgreSQL's (2000-01-01), in microseconds.
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

fn timestamptz(t: chrono::DateTime<chrono::Utc>) -> Option<TimestampWithTimeZone> {
    TimestampWithTimeZone::try_from(t.timestamp_micros() - PG_EPOCH_OFFSET_US).ok()
}

/// Per schedule: when its next success is due (the first fire time of its cron after its last
/// success started, or after it was created), the interval its cron implies (from that fire
/// time to the next), and when it becomes overdue (due time plus backup.overdue_grace).
/// What `backup.health` joins; not meant to be called directly.
#[allow(clippy::type_complexity)]
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
pub fn schedule_times() -> TableIterator<
    'static,
    (
        name!(name, Text),
        name!(due_at, Option<TimestampWithTimeZone>),
        name!(cron_interval, Option<Interval>),
        name!(overdue_at, Option<TimestampWithTimeZone>),
    ),
> {
    crate::catalog::version::require_current().or_raise();
    let rows = health::overdue::schedule_times().or_raise();
    TableIterator::new(rows.into_iter().map(|t| {
        let interval = t
            .due
            .as_ref()
            .and_then(|d| d.interval)
            .and_then(|i| i.num_microseconds())
            .map(|us| Interval::from_micros(us).justify_hours());
        (
            Text(t.name),
            t.due.as_ref().and_then(|d| timestamptz(d.due_at)),
            interval,
            t.overdue_at.and_then(timestamptz),
        )
    }))
}

/// Prometheus text exposition of the backups, schedules and drills of this database: for
/// postgres_exporter's / sql_exporter's custom queries (README, "Metrics").
#[pg_extern]
#[search_path(pg_catalog, pg_temp)]
pub fn metrics() -> Text {
    crate::catalog::version::require_current().or_raise();
    Text(health::metrics::render().or_raise())
}
