//! Restore drills (issue 21): `backup.drill()`. See drill/.

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

use super::{enter, names, required, writes, Names};
use crate::error::{BackupError, OrRaise};
use crate::text::Text;

type DrillRow = (
    i64,
    Text,
    Option<Text>,
    Option<Text>,
    String,
    TimestampWithTimeZone,
    Option<TimestampWithTimeZone>,
    Option<Interval>,
    Option<Interval>,
    Option<i32>,
    Option<i64>,
    Option<pgrx::JsonB>,
    Option<pgrx::JsonB>,
    Option<Text>,
    Text,
);

/// Restore backup `backup_id` (default: the newest completed backup of this database) into a
/// scratch database in a background worker, compare every table's row count with the
/// manifest, run `checks` (each a query returning one boolean, or one number: a row count),
/// and record the result in backup.drills. With `wait` (the default) the drill's row is
/// returned when it ends; otherwise at once, `running`, with its id.
#[allow(clippy::type_complexity)]
#[pg_extern]
fn drill(
    backup_id: default!(Option<Text>, "NULL"),
    checks: default!(Names, "NULL"),
    wait: default!(Option<bool>, true),
) -> TableIterator<
    'static,
    (
        name!(id, i64),
        name!(backup_id, Text),
        name!(schedule, Option<Text>),
        name!(database, Option<Text>),
        name!(status, String),
        name!(started_at, TimestampWithTimeZone),
        name!(finished_at, Option<TimestampWithTimeZone>),
        name!(restore_duration, Option<Interval>),
        name!(backup_age, Option<Interval>),
        name!(tables_checked, Option<i32>),
        name!(rows_checked, Option<i64>),
        name!(mismatches, Option<pgrx::JsonB>),
        name!(checks, Option<pgrx::JsonB>),
        name!(error, Option<Text>),
        name!(requested_by, Text),
    ),
> {
    let wait = required(
        wait,
        "wait",
        "Pass true (return the drill's row when it ends, the default) or false (return at once).",
    );
    let checks = names(checks, "checks").unwrap_or_default();
    let backup_id = backup_id.map(String::from);
    writes("drill()");
    let caller = enter();
    if wait && repeatable_read() {
        BackupError::confirm("drill(wait => true) cannot see the drill's result in a REPEATABLE READ or SERIALIZABLE transaction")
            .with_hint("Call it in a READ COMMITTED transaction, or use drill(wait => false) and read backup.drills afterwards.")
            .raise();
    }
    let (id, worker) = crate::drill::start(&crate::drill::DrillAsk {
        backup_id: backup_id.as_deref(),
        checks: &checks,
        schedule: None,
        role: &caller.role,
    })
    .or_raise();
    if wait {
        crate::drill::wait_for(worker);
    }
    TableIterator::new(read_row(id))
}

fn repeatable_read() -> bool {
    // SAFETY: a backend-local global, read on the backend's thread inside a transaction.
    unsafe { pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 }
}

/// The drill's row as it is now (committed by the drill's worker: read under a new snapshot).
fn read_row(id: i64) -> Option<DrillRow> {
    let _fresh = crate::query::FreshSnapshot::push();
    Spi::connect(|c| {
        let t = c.select(
            "SELECT id, backup_id, schedule, database, status, started_at, finished_at,
                    restore_duration, backup_age, tables_checked, rows_checked, mismatches,
                    checks, error, requested_by
             FROM backup.drills WHERE id = $1",
            None,
            &[id.into()],
        )?;
        if t.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        let r = t.first();
        Ok(Some((
            r.get::<i64>(1)?.unwrap_or(id),
            r.get::<Text>(2)?.unwrap_or_else(|| Text(String::new())),
            r.get::<Text>(3)?,
            r.get::<Text>(4)?,
            r.get::<String>(5)?.unwrap_or_default(),
            r.get::<TimestampWithTimeZone>(6)?
                .unwrap_or_else(|| TimestampWithTimeZone::try_from(0i64).expect("epoch")),
            r.get::<TimestampWithTimeZone>(7)?,
            r.get::<Interval>(8)?,
            r.get::<Interval>(9)?,
            r.get::<i32>(10)?,
            r.get::<i64>(11)?,
            r.get::<pgrx::JsonB>(12)?,
            r.get::<pgrx::JsonB>(13)?,
            r.get::<Text>(14)?,
            r.get::<Text>(15)?.unwrap_or_else(|| Text(String::new())),
        )))
    })
    .map_err(BackupError::from)
    .or_raise()
}
