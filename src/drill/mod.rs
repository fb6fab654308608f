//! Restore drills (issue 21): `backup.drill()` and `schedule(..., drill => true)` prove that a
//! backup restores, as a DBA would by hand: the archive is restored into a scratch database
//! that pg_backup creates and drops, every table's row count is compared with the manifest,
//! the optional SQL checks run, and `backup.drills` records the result, how long the restore
//! took (the recovery time a user would see) and how old the backup was (the data-loss
//! window).
//!
//! Who does what:
//! - the caller (`drill()`, or a scheduled run's worker after its backup) checks the backup,
//!   records the drill's row (committed at once) and starts the drill's worker, which takes the
//!   drill over (its pid in the row: the sweep tells a dead drill by it); `drill(wait => true)`
//!   waits for it and returns the row;
//! - `worker`: the drill's worker, in the database drilled, as the bootstrap superuser:
//!   creates and always drops the scratch database (which needs rights the caller may not
//!   have), records the result, raises the event;
//! - `scratch`: the worker inside the scratch database, as the drilling role: the restore and
//!   the checks, with that role's rights;
//! - `database` (the scratch database's name, CREATE / DROP DATABASE), `compare` (pure: counts,
//!   mismatches, what a check's answer means).

pub mod compare;
pub mod database;
pub mod scratch;
pub mod worker;

use std::time::{Duration, Instant};

use pgrx::bgworkers::{
    BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime, DynamicBackgroundWorker,
};
use pgrx::prelude::*;

use crate::catalog::drills::{self, DrillStart};
use crate::error::{BackupError, Result};
use crate::storage::locate::Claim;

/// What a drill is asked.
pub struct DrillAsk<'a> {
    /// None: the newest completed backup of this database.
    pub backup_id: Option<&'a str>,
    pub checks: &'a [String],
    pub schedule: Option<&'a str>,
    /// The role the restore and the checks run as.
    pub role: &'a str,
}

/// The backup a drill restores: `id`, or the newest completed one. It must be a completed
/// backup of this database whose local copy is the one registered (the scratch database has
/// no catalog row to prove it by, so it is proven here).
pub fn backup_to_drill(id: Option<&str>) -> Result<String> {
    let id = match id {
        Some(id) => {
            crate::archive::id::validate(id)?;
            id.to_string()
        }
        None => crate::query::one::<crate::text::Text>(
            "SELECT (SELECT id FROM backup.backups WHERE status = 'completed'
                     ORDER BY started_at DESC, id DESC LIMIT 1)",
            &[],
        )?
        .map(String::from)
        .ok_or_else(|| {
            BackupError::unknown("this database has no completed backup to drill")
                .with_hint("Take one first: SELECT * FROM backup.create();")
        })?,
    };
    let status = crate::query::one::<String>(
        "SELECT (SELECT status FROM backup.backups WHERE id = $1)",
        &[crate::text::arg(id.clone())],
    )?;
    match status.as_deref() {
        None => return Err(BackupError::unknown_backup(&id)),
        Some("completed") => {}
        Some(other) => {
            return Err(BackupError::confirm(format!(
                "backup {id} is {other}: only a completed backup can be drilled"
            ))
            .with_hint("See SELECT id, status FROM backup.backups ORDER BY started_at DESC;"))
        }
    }
    let dir = crate::guc::directory().join(&id);
    let owned = Claim::of(&id)?.is_some_and(|c| c.owns(&dir));
    if !owned {
        return Err(BackupError::unknown(format!(
            "backup {id} has no local copy that is the one registered: a drill restores the local copy in backup.directory"
        ))
        .with_hint("Drill a backup kept locally (keep_local => true), or verify it with SELECT * FROM backup.verify('<id>');"));
    }
    Ok(id)
}

/// Record the drill's row and start its worker; returns the drill's id and the worker once it
/// has taken the drill over (or exited). For a caller whose writes commit at once (a SQL
/// call: the row goes through the autonomous writer).
pub fn start(ask: &DrillAsk) -> Result<(i64, DynamicBackgroundWorker)> {
    let backup_id = backup_to_drill(ask.backup_id)?;
    let id = record(ask, &backup_id)?;
    let w = launch(id)?;
    Ok((id, w))
}

/// The drill's row, `running`, answered for by this process until its worker takes it over.
fn record(ask: &DrillAsk, backup_id: &str) -> Result<i64> {
    for c in ask.checks {
        if c.trim().is_empty() {
            return Err(BackupError::invalid("a drill check must not be empty")
                .with_hint("Give each check as a query returning one boolean or one row count, e.g. 'SELECT count(*) > 0 FROM orders'."));
        }
    }
    // SAFETY: a process-local global set at process start.
    let pid = unsafe { pg_sys::MyProcPid };
    let _one_at_a_time = StartLock::take();
    drills::start(&DrillStart {
        backup_id: backup_id.to_string(),
        schedule: ask.schedule.map(String::from),
        database: crate::text::current_database(),
        checks: serde_json::Value::Array(
            ask.checks
                .iter()
                .map(|c| serde_json::json!({ "check": c }))
                .collect(),
        ),
        requested_by: ask.role.to_string(),
        pid,
        max_running: crate::guc::max_drills(),
    })
}

/// The fourth field of the lock tag that serializes drill starts in a database ("bd").
const START_LOCK_SPACE: u16 = 0x6264;

/// Held while a drill's row is counted against backup.max_drills and written, so that two
/// drills starting at once cannot both see room for one (the count runs in the writer's own
/// statement, after the other start's row committed). At session level in a SQL call (the row
/// commits in the writer before this is let go, on drop, also when an error unwinds); until
/// the transaction ends in a pg_backup worker (its row commits with that transaction).
/// A heavyweight advisory-type lock of this database, in a lock space PostgreSQL's
/// pg_advisory_* functions never use (their fourth field is 1 or 2).
struct StartLock {
    session: bool,
}

impl StartLock {
    fn tag() -> pg_sys::LOCKTAG {
        pg_sys::LOCKTAG {
            // SAFETY: a process-local global set at connection.
            locktag_field1: u32::from(unsafe { pg_sys::MyDatabaseId }),
            locktag_field2: 0,
            locktag_field3: 0,
            locktag_field4: START_LOCK_SPACE,
            locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
            locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
        }
    }

    fn take() -> StartLock {
        let session = !crate::catalog::autonomous::local_mode();
        let t = Self::tag();
        // SAFETY: LockAcquire with a tag of the user lock method, inside a transaction; the
        // wait is cancellable and an error inside is raised as a PostgreSQL ERROR.
        unsafe {
            pg_sys::LockAcquire(
                &t,
                pg_sys::ExclusiveLock as pg_sys::LOCKMODE,
                session,
                false,
            );
        }
        StartLock { session }
    }
}

impl Drop for StartLock {
    fn drop(&mut self) {
        if self.session {
            let t = Self::tag();
            // SAFETY: LockRelease of the session lock this backend took in `take` (a session
            // lock outlives an aborted transaction: it must be let go here).
            unsafe {
                pg_sys::LockRelease(&t, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, true);
            }
        }
    }
}

/// Start the worker of drill `id` (its row committed) and wait for it to take the drill over.
fn launch(id: i64) -> Result<DynamicBackgroundWorker> {
    // SAFETY: process-local globals set at process start / connection.
    let (pid, db) = unsafe { (pg_sys::MyProcPid, u32::from(pg_sys::MyDatabaseId)) };
    let launched = BackgroundWorkerBuilder::new(&format!("pg_backup drill {id}"))
        .set_type("pg_backup drill")
        .set_library("pg_backup")
        .set_function("pg_backup_drill_main")
        .set_extra(&worker::extra(db, id))
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        .enable_spi_access()
        .set_notify_pid(pid)
        .load_dynamic();
    let Ok(w) = launched else {
        let _ = drills::finish(
            id,
            &drills::DrillEnd {
                error: Some("no background worker slot was free for the drill".into()),
                ..Default::default()
            },
        );
        return Err(BackupError::denied("no background worker slot is free for the drill")
            .with_hint("A drill needs two slots of max_worker_processes (restart needed to raise it); try again when other workers have finished."));
    };
    hand_over(id, pid, &w);
    Ok(w)
}

/// In `backup.schedule()`, after the schedule is written: its drills run with the rights of
/// the role that called it.
pub fn record_schedule_role(schedule: &str, role: &str) -> Result<()> {
    crate::text::run_with_args(
        "UPDATE backup.schedules SET drill_role = $2 WHERE name = $1",
        &[crate::text::arg(schedule), crate::text::arg(role)],
    )?;
    Ok(())
}

/// In a scheduled run's worker, after its backup succeeded (outside any transaction): a drill
/// of that backup, with the schedule's checks, as the role that set the schedule
/// (`backup.schedules.drill_role`, a role name resolved when the drill runs). Fails closed: a
/// schedule without a drill role (written into the table directly) gets a failed drill row,
/// never a drill as the bootstrap superuser; a role that no longer exists fails the drill in
/// its worker. The drill runs in a worker of its own; a drill that cannot start is recorded
/// failed (and alerts) all the same.
#[allow(clippy::result_large_err)]
pub fn after_scheduled_backup(
    schedule: &str,
    backup_id: &str,
    checks: &[String],
    role: Option<&str>,
) {
    use pgrx::bgworkers::BackgroundWorker;
    let recorded = BackgroundWorker::transaction(std::panic::AssertUnwindSafe(|| {
        crate::subtransaction::run(|| -> Result<(i64, bool)> {
            let role = role.map(str::trim).filter(|r| !r.is_empty());
            let ask = DrillAsk {
                backup_id: Some(backup_id),
                checks,
                schedule: Some(schedule),
                role: role.unwrap_or(""),
            };
            let id = record(&ask, backup_id)?;
            let refused = match role {
                None => Some(format!(
                    "schedule \"{schedule}\" has no drill role (backup.schedules.drill_role is NULL): a drill never runs as the bootstrap superuser by default; call backup.schedule() for it again, as the role whose rights its drills should have"
                )),
                Some(_) => backup_to_drill(Some(backup_id))
                    .err()
                    .map(|e| format!("{e} (SQLSTATE {})", e.sqlstate())),
            };
            let ended = refused.is_some();
            if let Some(error) = refused {
                worker::record_end(
                    id,
                    backup_id,
                    drills::DrillEnd {
                        error: Some(error),
                        ..Default::default()
                    },
                    Some(schedule),
                )?;
            }
            Ok((id, ended))
        })
    }));
    let id = match recorded {
        Ok(Ok((_, true))) => return,
        Ok(Ok((id, false))) => id,
        Ok(Err(e)) => {
            pgrx::log!("pg_backup: schedule \"{schedule}\": the drill of backup {backup_id} could not start: {e}");
            return;
        }
        Err(caught) => {
            pgrx::log!(
                "pg_backup: schedule \"{schedule}\": the drill of backup {backup_id} could not start: {}",
                crate::subtransaction::message(&caught)
            );
            return;
        }
    };
    let launched = BackgroundWorker::transaction(std::panic::AssertUnwindSafe(|| {
        crate::subtransaction::run(|| launch(id).map(|_| ()))
    }));
    if !matches!(launched, Ok(Ok(()))) {
        pgrx::log!("pg_backup: schedule \"{schedule}\": the drill of backup {backup_id} could not start (no worker slot)");
    }
}

/// Wait until the drill's worker has taken the drill over (its pid in the row), or exited, or
/// 30 s passed: until then this process answers for the drill (the sweep would fail it the
/// moment this process ended).
fn hand_over(id: i64, me: i32, w: &DynamicBackgroundWorker) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if matches!(
            w.pid(),
            Err(BackgroundWorkerStatus::Stopped) | Err(BackgroundWorkerStatus::PostmasterDied)
        ) {
            return;
        }
        if drills::answering_pid(id).ok().flatten() != Some(me) {
            return;
        }
        sleep_on_latch(50);
        pgrx::check_for_interrupts!();
    }
}

fn sleep_on_latch(ms: i64) {
    // SAFETY: waiting on this process's own latch, then resetting it; interrupts are checked
    // by the callers where a cancel must end the wait.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
}

/// `drill(wait => true)`: wait for the drill's worker to end. A cancel (or statement_timeout)
/// of this call cancels the drill (its worker drops the scratch database and records the
/// drill failed), then ends the call; a termination of this session leaves the drill to its
/// worker.
pub fn wait_for(w: DynamicBackgroundWorker) {
    let mut cancel_sent: Option<Instant> = None;
    while let Ok(pid) = w.pid() {
        // SAFETY: volatile reads of flags that signal handlers set.
        let (die, cancel) = unsafe {
            (
                (&raw const pg_sys::ProcDiePending).read_volatile() != 0,
                (&raw const pg_sys::QueryCancelPending).read_volatile() != 0,
            )
        };
        if die || !cancel {
            // Serves what else is pending too: a ProcSignalBarrier (DROP DATABASE of the
            // scratch database waits for every backend to absorb one).
            pgrx::check_for_interrupts!();
        }
        if cancel {
            // Not raised yet, but a ProcSignalBarrier must still be absorbed meanwhile: the
            // drill's worker drops its scratch database (which waits for every backend) before
            // it ends.
            // SAFETY: what CHECK_FOR_INTERRUPTS does for a pending barrier, on the backend's
            // thread outside any critical section; the flag is read volatile.
            unsafe {
                if (&raw const pg_sys::ProcSignalBarrierPending).read_volatile() != 0 {
                    pg_sys::ProcessProcSignalBarrier();
                }
            }
            match cancel_sent {
                None => {
                    // SAFETY: a signal to the drill's worker (a pid the postmaster says is
                    // that running worker's).
                    unsafe { libc::kill(pid, libc::SIGINT) };
                    cancel_sent = Some(Instant::now());
                }
                Some(t) if t.elapsed() > Duration::from_secs(60) => {
                    pgrx::check_for_interrupts!();
                }
                Some(_) => {}
            }
        }
        sleep_on_latch(100);
    }
    if cancel_sent.is_some() {
        pgrx::check_for_interrupts!();
    }
}
