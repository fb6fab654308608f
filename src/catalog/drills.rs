//! `backup.drills`: every statement pg_backup runs on a restore drill's row goes through here.
//! The row is written at the start by the autonomous writer (so the drill's worker, another
//! process, sees it committed), then by the drill's worker in its own transactions.

use pgrx::prelude::*;
use serde::Serialize;

use super::autonomous::{self, Outcome, Stmt, Wait};
use crate::error::{BackupError, Result};
use crate::text::{arg, Json};

/// A drill's row at its start (names match the columns).
#[derive(Debug, Clone, Serialize)]
pub struct DrillStart {
    pub backup_id: String,
    pub schedule: Option<String>,
    pub database: String,
    /// The SQL checks asked for, as `[{"check": "..."}]` (their results replace them).
    pub checks: serde_json::Value,
    pub requested_by: String,
    /// The process that answers for the drill until its worker takes it over.
    pub pid: i32,
    /// backup.max_drills: the row is not written when this many drills of the database run.
    pub max_running: i32,
}

/// Record a drill's start, committed at once; its id. 53400 when `max_running` drills of this
/// database run already. The caller holds `drill::StartLock`, so the count sees every drill
/// recorded before.
pub fn start(row: &DrillStart) -> Result<i64> {
    let value = serde_json::to_value(row).expect("a drill row serializes");
    match autonomous::execute(Stmt::DrillStart, &value, Wait::Yes) {
        Outcome::Written(None) => Err(BackupError::limit(if row.max_running <= 0 {
            "restore drills are disabled (backup.max_drills = 0)".to_string()
        } else {
            format!(
                "{n} restore drill(s) of this database are running already (backup.max_drills = {n})",
                n = row.max_running
            )
        })
        .with_hint(
            "Wait for the running drill to end (SELECT id, status, pid FROM backup.drills WHERE status = 'running'), or raise backup.max_drills in postgresql.conf (a superuser) and reload.",
        )),
        Outcome::Written(Some(id)) => id
            .parse::<i64>()
            .map_err(|_| BackupError::invalid("the drill's row was not recorded")),
        Outcome::Standby => Err(BackupError::on_standby("drill()")),
        _ => Err(
            BackupError::denied("the drill's row could not be recorded").with_hint(
                "See the server log; a drill records its row in backup.drills before it starts.",
            ),
        ),
    }
}

/// What a drill's worker reads of its row.
pub struct DrillTask {
    pub backup_id: String,
    pub schedule: Option<String>,
    pub requested_by: String,
    pub checks: Vec<String>,
    pub status: String,
}

/// The row of drill `id`, if there is one.
pub fn task(id: i64) -> Result<Option<DrillTask>> {
    Ok(Spi::connect(|c| {
        let t = c.select(
            "SELECT backup_id, schedule, requested_by, checks, status FROM backup.drills WHERE id = $1",
            None,
            &[id.into()],
        )?;
        if t.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        let r = t.first();
        let checks = r
            .get::<pgrx::JsonB>(4)?
            .map(|j| j.0)
            .unwrap_or(serde_json::Value::Null);
        Ok(Some(DrillTask {
            backup_id: r
                .get::<crate::text::Text>(1)?
                .map(String::from)
                .unwrap_or_default(),
            schedule: r.get::<crate::text::Text>(2)?.map(String::from),
            requested_by: r
                .get::<crate::text::Text>(3)?
                .map(String::from)
                .unwrap_or_default(),
            checks: requested_checks(&checks),
            status: r.get::<String>(5)?.unwrap_or_default(),
        }))
    })?)
}

/// The checks a drill's row asks for (`[{"check": "..."}]`).
pub fn requested_checks(checks: &serde_json::Value) -> Vec<String> {
    checks
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("check").and_then(|s| s.as_str()).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The drill's worker answers for it from now on (the sweep tells a dead drill by its pid).
pub fn take_over(id: i64, pid: i32) -> Result<bool> {
    Ok(crate::text::one_mut::<bool>(
        "WITH w AS (UPDATE backup.drills SET pid = $2 WHERE id = $1 AND status = 'running' RETURNING 1)
         SELECT EXISTS (SELECT 1 FROM w)",
        &[id.into(), pid.into()],
    )?
    .unwrap_or(false))
}

/// The process answering for drill `id` now (None once it ended).
pub fn answering_pid(id: i64) -> Result<Option<i32>> {
    Ok(crate::query::one::<i32>(
        "SELECT (SELECT pid FROM backup.drills WHERE id = $1 AND status = 'running')",
        &[id.into()],
    )?)
}

/// How a drill ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrillEnd {
    pub succeeded: bool,
    pub restore_secs: Option<f64>,
    pub tables_checked: Option<i32>,
    pub rows_checked: Option<i64>,
    pub mismatches: Option<serde_json::Value>,
    pub checks: Option<serde_json::Value>,
    pub error: Option<String>,
}

/// Record how drill `id` ended (only a running one); its row as JSON (for the event).
pub fn finish(id: i64, end: &DrillEnd) -> Result<Option<serde_json::Value>> {
    let status = if end.succeeded { "succeeded" } else { "failed" };
    Ok(crate::text::one_mut::<pgrx::JsonB>(
        "WITH w AS (
           UPDATE backup.drills d SET status = $2, finished_at = now(), pid = NULL,
                  restore_duration = CASE WHEN $3::float8 IS NULL THEN NULL
                                          ELSE make_interval(secs => $3::float8) END,
                  backup_age = d.started_at - (SELECT b.started_at FROM backup.backups b WHERE b.id = d.backup_id),
                  tables_checked = $4, rows_checked = $5,
                  mismatches = $6::jsonb,
                  checks = coalesce($7::jsonb, d.checks),
                  error = $8
           WHERE d.id = $1 AND d.status = 'running'
           RETURNING d.*)
         SELECT to_jsonb(w) FROM w",
        &[
            id.into(),
            arg(status),
            end.restore_secs.into(),
            end.tables_checked.into(),
            end.rows_checked.into(),
            end.mismatches.clone().map(Json).into(),
            end.checks.clone().map(Json).into(),
            end.error.clone().map(crate::text::Text).into(),
        ],
    )?
    .map(|j| j.0))
}

/// Drills still `running` whose process is gone (terminated, crashed, a server restart) are
/// failed. Their scratch databases are dropped by the next drill or sweeper worker of this
/// database (`drill::database::drop_leftovers`): dropping a database needs a transaction of
/// its own.
pub fn fail_dead() -> Result<()> {
    // Only when there is one to fail and the transaction may write: the sweep runs at the
    // start of verify() and restore(dry_run => true), which work in read-only sessions.
    let due = crate::query::one::<bool>(
        "SELECT pg_catalog.current_setting('transaction_read_only') = 'off'
            AND EXISTS (SELECT 1 FROM backup.drills d WHERE d.status = 'running'
                          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a WHERE a.pid = d.pid))",
        &[],
    )?
    .unwrap_or(false);
    if !due {
        return Ok(());
    }
    crate::text::run(
        "UPDATE backup.drills d SET status = 'failed', finished_at = now(), pid = NULL,
                error = coalesce(d.error, 'the drill''s worker exited before the drill ended (terminated or crashed); its scratch database is dropped by the next drill or sweep')
         WHERE d.status = 'running'
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a WHERE a.pid = d.pid)",
    )?;
    Ok(())
}

/// Ids of the drills of this database that are running.
pub fn running() -> Result<Vec<i64>> {
    Ok(Spi::connect(|c| {
        c.select(
            "SELECT id FROM backup.drills WHERE status = 'running'",
            None,
            &[],
        )?
        .map(|r| Ok(r.get::<i64>(1)?.unwrap_or_default()))
        .collect::<std::result::Result<Vec<_>, pgrx::spi::Error>>()
    })?)
}
