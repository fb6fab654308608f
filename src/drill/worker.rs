//! The drill's worker, connected to the database drilled as the bootstrap superuser: it takes
//! the drill over from whoever started it, drops the scratch databases that dead drills left
//! behind, creates this drill's scratch database, has the scratch worker restore and check
//! the backup in it (`scratch`), always drops it again, records the result in
//! `backup.drills` and raises DrillSucceeded or DrillFailed.
//!
//! A cancel (SIGINT: `pg_cancel_backend(pid)`, or the cancel of a waiting `drill()` call) is
//! passed on to the scratch worker, whose restore stops; the scratch database is dropped and
//! the drill recorded failed. A termination ends the worker at once: the sweep fails its row
//! and the next drill (or the sweeper at server start) drops its scratch database.

use std::time::{Duration, Instant};

use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;

use super::database;
use super::scratch::{ScratchReport, ScratchRequest, SCRATCH_WORKER};
use crate::alerts::{self, Event, EventKind};
use crate::catalog::drills::{self, DrillEnd};
use crate::restore::options::Request;
use crate::restore::plan::{Existing, OnError};
use crate::restore::RestoreOptions;
use crate::session::Session;
use crate::workers::{Event as PoolEvent, Life, Pool};

/// The worker's `bgw_extra`: the database and the drill.
pub fn extra(database: u32, drill_id: i64) -> String {
    format!("{database} {drill_id}")
}

fn parse_extra(s: &str) -> Option<(u32, i64)> {
    let (db, id) = s.trim().split_once(' ')?;
    Some((db.parse().ok()?, id.parse().ok()?))
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_backup_drill_main(_arg: pg_sys::Datum) {
    // SAFETY: installing signal handlers and unblocking signals is what a background worker's
    // main function does first; both handlers only set flags and the latch.
    unsafe {
        crate::server_api::set_signal_handler(libc::SIGTERM, Some(crate::signals::die_on_sigterm));
        crate::server_api::set_signal_handler(libc::SIGINT, Some(crate::signals::cancel_on_sigint));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    let Some((db, id)) = parse_extra(BackgroundWorker::get_extra()) else {
        pgrx::log!("pg_backup drill: bad start argument");
        return;
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(db)), None);
    crate::catalog::autonomous::set_local_mode();
    crate::session::disable_dump_timeouts();
    // SAFETY: static NUL-terminated name and value; the worker is connected and on its only
    // thread; a superuser-context override of a user setting cannot fail.
    unsafe {
        pg_sys::SetConfigOption(
            c"default_transaction_read_only".as_ptr(),
            c"off".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
    conduct(db, id);
}

/// Who the drill acts for.
struct Drilling {
    backup_id: String,
    schedule: Option<String>,
    checks: Vec<String>,
    role: String,
    role_oid: pg_sys::Oid,
    superuser: bool,
}

/// Run `f` in a transaction of this worker's own (with a snapshot when `snapshot`); an error
/// is returned as text (SQLSTATE included), the transaction rolled back.
pub fn own_transaction<T>(f: impl FnOnce() -> crate::error::Result<T>) -> Result<T, String> {
    in_transaction(false, f)
}

/// As `own_transaction`, with a snapshot when `snapshot`.
#[allow(clippy::result_large_err)]
fn in_transaction<T>(
    snapshot: bool,
    f: impl FnOnce() -> crate::error::Result<T>,
) -> Result<T, String> {
    // SAFETY: in this background worker, outside any transaction (every path below ends the
    // one it starts).
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        if snapshot {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
    }
    let outcome = PgTryBuilder::new(std::panic::AssertUnwindSafe(|| Ok(f())))
        .catch_others(Err)
        .execute();
    let error = match outcome {
        Ok(Ok(v)) => {
            // SAFETY: the transaction started above, its snapshot pushed if asked.
            unsafe {
                if snapshot {
                    pg_sys::PopActiveSnapshot();
                }
                pg_sys::CommitTransactionCommand();
            }
            return Ok(v);
        }
        Ok(Err(e)) => format!("{e} (SQLSTATE {})", e.sqlstate()),
        Err(caught) => crate::subtransaction::message(&caught),
    };
    // SAFETY: aborting the transaction started above after its error was caught.
    unsafe { pg_sys::AbortOutOfAnyTransaction() };
    Err(error)
}

fn conduct(db: u32, id: i64) {
    // SAFETY: a process-local global set at process start.
    let me = unsafe { pg_sys::MyProcPid };
    let taken = in_transaction(true, || {
        let Some(task) = drills::task(id)? else {
            return Ok(None);
        };
        if task.status != "running" || !drills::take_over(id, me)? {
            return Ok(None);
        }
        let (oid, superuser) = crate::text::two::<pg_sys::Oid, bool>(
            "SELECT oid, rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[crate::text::arg(task.requested_by.clone())],
        )?;
        let leftovers = database::leftovers()?;
        Ok(Some((task, oid, superuser.unwrap_or(false), leftovers)))
    });
    let (task, oid, superuser, leftovers) = match taken {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e) => {
            pgrx::log!("pg_backup drill {id}: {e}");
            return;
        }
    };
    for name in leftovers {
        if let Err(e) = in_transaction(false, || {
            database::drop(&name);
            Ok(())
        }) {
            pgrx::log!("pg_backup drill: could not drop the scratch database \"{name}\" of an earlier drill: {e}");
        }
    }
    let Some(role_oid) = oid else {
        finish(
            id,
            &task.backup_id,
            DrillEnd {
                error: Some(format!(
                    "role \"{}\" that asked for the drill does not exist",
                    task.requested_by
                )),
                ..Default::default()
            },
            task.schedule.as_deref(),
        );
        return;
    };
    let drilling = Drilling {
        backup_id: task.backup_id.clone(),
        schedule: task.schedule.clone(),
        checks: task.checks.clone(),
        role: task.requested_by.clone(),
        role_oid,
        superuser,
    };
    let end = drill_in_scratch(db, id, &drilling);
    finish(id, &drilling.backup_id, end, drilling.schedule.as_deref());
}

/// Create the scratch database, restore and check in it, drop it (always).
fn drill_in_scratch(db: u32, id: i64, d: &Drilling) -> DrillEnd {
    let name = database::scratch_name(db, id);
    if let Err(e) = in_transaction(true, || database::create(&name)) {
        return DrillEnd {
            error: Some(format!(
                "could not create the drill's scratch database: {e}"
            )),
            ..Default::default()
        };
    }
    let outcome = in_transaction(false, || {
        let scratch = crate::query::one::<pg_sys::Oid>(
            "SELECT (SELECT oid FROM pg_catalog.pg_database WHERE datname = $1)",
            &[crate::text::arg(name.clone())],
        )?
        .unwrap_or(pg_sys::InvalidOid);
        Ok(restore_and_check(&request(u32::from(scratch), d)))
    });
    // QueryCancelPending was passed on (or not): it must not stop the cleanup below.
    // SAFETY: a volatile write of a flag that only this process's signal handler sets.
    unsafe { (&raw mut pg_sys::QueryCancelPending).write_volatile(0) };
    let dropped = in_transaction(false, || {
        database::drop(&name);
        Ok(())
    });
    let mut end = match outcome {
        Ok(Ok(report)) => ended(report),
        Ok(Err(error)) => DrillEnd {
            error: Some(error),
            ..Default::default()
        },
        Err(e) => DrillEnd {
            error: Some(e),
            ..Default::default()
        },
    };
    if let Err(e) = dropped {
        pgrx::warning!("pg_backup drill {id}: could not drop its scratch database \"{name}\": {e}");
        end.error = Some(format!(
            "{}the scratch database \"{name}\" could not be dropped ({e}); the next drill drops it",
            end.error.map(|e| format!("{e}; ")).unwrap_or_default()
        ));
        end.succeeded = false;
    }
    end
}

fn ended(r: ScratchReport) -> DrillEnd {
    let failure = super::compare::failure_text(&r.mismatches, &r.failed_checks);
    DrillEnd {
        succeeded: failure.is_none(),
        restore_secs: Some(r.restore_secs),
        tables_checked: Some(r.tables_checked),
        rows_checked: Some(r.rows_checked),
        mismatches: Some(serde_json::to_value(&r.mismatches).unwrap_or_default()),
        checks: (!r.checks.is_empty()).then_some(serde_json::Value::Array(r.checks)),
        error: failure,
    }
}

/// The scratch worker's request: the restore as `restore(atomic => false)` called by the
/// drilling role would ask it, in the scratch database.
fn request(scratch: u32, d: &Drilling) -> ScratchRequest {
    let opts = RestoreOptions {
        tables: None,
        schemas: None,
        existing: Existing::Fail,
        schema_only: false,
        data_only: false,
        target_schema: None,
        disable_triggers: false,
        on_error: OnError::Abort,
        dry_run: false,
        confirm: false,
        analyze: true,
        identity: None,
        atomic: false,
        no_tablespaces: false,
        jobs: 1,
        // The local copy (storage targets are per database: the scratch database has none).
        storage: None,
    };
    let session = Session {
        database: scratch,
        // Inside pg_backup's functions the current user is the extension owner: in the
        // scratch database, the bootstrap superuser who installs it.
        user: pg_sys::BOOTSTRAP_SUPERUSERID,
        sec_context: pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        session_user: u32::from(d.role_oid),
        session_user_is_superuser: d.superuser,
        role: 0,
        is_superuser: d.superuser,
        settings: Vec::new(),
    };
    ScratchRequest {
        restore: Request {
            backup_id: d.backup_id.clone(),
            opts,
            caller_schemas: vec!["pg_catalog".into()],
            caller_role: d.role.clone(),
            caller_oid: u32::from(d.role_oid),
            session,
        },
        checks: d.checks.clone(),
    }
}

/// Start the scratch worker and wait for its report. A cancel of this worker is passed on.
fn restore_and_check(req: &ScratchRequest) -> Result<ScratchReport, String> {
    let mut pool: Pool<(), ScratchReport> = Pool::start(&SCRATCH_WORKER, req, 1, Life::Transaction);
    if pool.is_empty() {
        return Err("no background worker slot is free for the drill's restore (raise max_worker_processes)".into());
    }
    let mut cancel_sent: Option<Instant> = None;
    loop {
        match pool.wait() {
            PoolEvent::Report { report, .. } => {
                pool.finish();
                return Ok(report);
            }
            PoolEvent::Failed { failure, .. } => {
                pool.finish();
                let cancelled = if cancel_sent.is_some() {
                    " (the drill was cancelled)"
                } else {
                    ""
                };
                return Err(format!(
                    "{} (SQLSTATE {}){cancelled}",
                    failure.message, failure.sqlstate
                ));
            }
            PoolEvent::Gone { .. } => {
                return Err(
                    "the drill's restore worker exited before it reported (terminated or crashed)"
                        .into(),
                );
            }
            PoolEvent::Interrupted => {
                // SAFETY: a volatile read of a flag that signal handlers set.
                let die = unsafe { (&raw const pg_sys::ProcDiePending).read_volatile() } != 0;
                match cancel_sent {
                    _ if die => {
                        pgrx::check_for_interrupts!();
                    }
                    None => {
                        pool.cancel();
                        cancel_sent = Some(Instant::now());
                    }
                    Some(t) if t.elapsed() > Duration::from_secs(30) => {
                        return Err("the drill was cancelled; its restore worker did not stop within 30 s and was terminated".into());
                    }
                    Some(_) => {}
                }
            }
            PoolEvent::Quiet => {}
        }
    }
}

/// Record how the drill ended and raise its event (delivered when this commits).
fn finish(id: i64, backup_id: &str, end: DrillEnd, schedule: Option<&str>) {
    if let Err(e) = in_transaction(true, || record_end(id, backup_id, end, schedule)) {
        pgrx::log!("pg_backup: drill {id}: could not record its result: {e}");
    }
}

/// In the current transaction: drill `id` ended as `end` (a running one only); its event.
pub fn record_end(
    id: i64,
    backup_id: &str,
    end: DrillEnd,
    schedule: Option<&str>,
) -> crate::error::Result<()> {
    let row = drills::finish(id, &end)?;
    if let Some(row) = &row {
        let kind = if end.succeeded {
            EventKind::DrillSucceeded
        } else {
            EventKind::DrillFailed
        };
        alerts::emit(&Event::new(kind, event_details(row)));
        if !end.succeeded {
            pgrx::log!(
                "pg_backup: drill {id} of backup {backup_id}{} failed: {}",
                schedule
                    .map(|s| format!(" (schedule \"{s}\")"))
                    .unwrap_or_default(),
                end.error.clone().unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// What the event says: the drill's figures (counts and durations, never a row value).
pub fn event_details(row: &serde_json::Value) -> serde_json::Value {
    let keys = [
        "id",
        "backup_id",
        "schedule",
        "database",
        "status",
        "started_at",
        "finished_at",
        "restore_duration",
        "backup_age",
        "tables_checked",
        "rows_checked",
        "mismatches",
        "error",
        "requested_by",
    ];
    let mut out = serde_json::Map::new();
    for k in keys {
        if let Some(v) = row.get(k) {
            out.insert(
                if k == "id" {
                    "drill_id".into()
                } else {
                    k.into()
                },
                v.clone(),
            );
        }
    }
    if let Some(checks) = row.get("checks").and_then(|c| c.as_array()) {
        let failed = checks
            .iter()
            .filter(|c| c["ok"] != serde_json::json!(true))
            .count();
        out.insert("checks_run".into(), checks.len().into());
        out.insert("checks_failed".into(), failed.into());
    }
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_argument_round_trips() {
        assert_eq!(parse_extra(&extra(16384, 42)), Some((16384, 42)));
        assert_eq!(parse_extra("x 1"), None);
        assert_eq!(parse_extra("1"), None);
    }

    #[test]
    fn events_carry_figures_not_check_text() {
        let row = serde_json::json!({
            "id": 3, "backup_id": "b", "status": "failed", "rows_checked": 10,
            "checks": [{"check": "select secret", "ok": false}, {"check": "x", "ok": true}],
            "pid": 5
        });
        let e = event_details(&row);
        assert_eq!(e["drill_id"], 3);
        assert_eq!(e["checks_failed"], 1);
        assert_eq!(e["checks_run"], 2);
        assert!(e.get("checks").is_none() && e.get("pid").is_none());
    }
}
