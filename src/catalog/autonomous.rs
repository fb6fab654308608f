//! Catalog writes that must outlive the caller's transaction: a history row survives the error
//! (or the rollback) of the transaction that describes it, as pg_cron's job_run_details does.
//!
//! PostgreSQL has no autonomous transactions, so in a user's session a short-lived dynamic
//! background worker runs one fixed statement in a transaction of its own. The statement is
//! chosen from `Stmt` (never SQL text from the caller); its one argument is a jsonb value passed
//! through dynamic shared memory, and the worker hands back the statement's one text result.
//!
//! Three rules keep it from ever hanging or failing the caller:
//! - pg_backup's own background workers own their transactions: there the statement runs in
//!   the current transaction (`set_local_mode`), which the worker commits itself.
//! - The caller never waits on a worker that waits for a lock the caller holds (PostgreSQL's
//!   deadlock detector cannot see that wait): while waiting it asks whether the worker is
//!   blocked by it, and if so stops the worker and writes in its own transaction instead.
//! - The worker writes even when the session or the database is read-only
//!   (default_transaction_read_only); on a hot standby nothing can be written, and the caller
//!   is told so (`Outcome::Standby`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime,
};
use pgrx::prelude::*;

use crate::subtransaction;

/// The only statements the writer runs. Each returns one text value (or NULL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stmt {
    /// Insert or update a `backup.backups` row (all columns pg_backup writes).
    BackupUpsert,
    /// A backup whose process is gone: completed (archive in place) or failed.
    BackupSettle,
    /// From an exit callback: the backup that was running is failed.
    BackupFailIfRunning,
    BackupMarkDeleted,
    /// verify(): `[{id, status}]`; only completed backups get a verify status.
    VerifyRecord,
    /// A restore's row at its start; returns the new id.
    RestoreStart,
    RestoreFinish,
    /// Merge `options` into a restore's recorded options (a fact learnt on the way, e.g. that
    /// an unsigned archive was accepted).
    RestoreNote,
    /// A restore whose process is gone.
    RestoreFailDead,
    /// restore(atomic => false)'s worker, terminated: what it committed stays.
    RestoreFailIfRunning,
    /// A restore drill's row at its start; returns the new id.
    DrillStart,
}

impl Stmt {
    const ALL: [Stmt; 11] = [
        Stmt::BackupUpsert,
        Stmt::BackupSettle,
        Stmt::BackupFailIfRunning,
        Stmt::BackupMarkDeleted,
        Stmt::VerifyRecord,
        Stmt::RestoreStart,
        Stmt::RestoreFinish,
        Stmt::RestoreNote,
        Stmt::RestoreFailDead,
        Stmt::RestoreFailIfRunning,
        Stmt::DrillStart,
    ];

    fn name(self) -> &'static str {
        match self {
            Stmt::BackupUpsert => "backup_upsert",
            Stmt::BackupSettle => "backup_settle",
            Stmt::BackupFailIfRunning => "backup_fail_if_running",
            Stmt::BackupMarkDeleted => "backup_mark_deleted",
            Stmt::VerifyRecord => "verify_record",
            Stmt::RestoreStart => "restore_start",
            Stmt::RestoreFinish => "restore_finish",
            Stmt::RestoreNote => "restore_note",
            Stmt::RestoreFailDead => "restore_fail_dead",
            Stmt::RestoreFailIfRunning => "restore_fail_if_running",
            Stmt::DrillStart => "drill_start",
        }
    }

    fn from_name(name: &str) -> Option<Stmt> {
        Stmt::ALL.into_iter().find(|s| s.name() == name)
    }

    fn sql(self) -> &'static str {
        match self {
            Stmt::BackupUpsert => {
                "WITH w AS (
                   INSERT INTO backup.backups SELECT * FROM jsonb_populate_record(NULL::backup.backups, $1)
                   ON CONFLICT (id) DO UPDATE SET
                     status = EXCLUDED.status, finished_at = EXCLUDED.finished_at,
                     table_count = EXCLUDED.table_count, row_count = EXCLUDED.row_count,
                     bytes = EXCLUDED.bytes, manifest_sha256 = EXCLUDED.manifest_sha256,
                     error = EXCLUDED.error, pid = EXCLUDED.pid, path = EXCLUDED.path,
                     storage = EXCLUDED.storage, storage_url = EXCLUDED.storage_url
                   -- A writer that comes late with `running` (its caller was cancelled while
                   -- waiting, then recorded how the backup ended) never revives an ended row.
                   WHERE backups.status = 'running' OR EXCLUDED.status <> 'running'
                   RETURNING 1)
                 SELECT count(*)::text FROM w"
            }
            Stmt::BackupSettle => {
                "WITH w AS (
                   UPDATE backup.backups SET status = $1->>'status', finished_at = coalesce(finished_at, now()),
                          pid = NULL,
                          table_count = coalesce(($1->>'table_count')::int, table_count),
                          row_count = coalesce(($1->>'row_count')::bigint, row_count),
                          bytes = coalesce(($1->>'bytes')::bigint, bytes),
                          manifest_sha256 = coalesce($1->>'manifest_sha256', manifest_sha256),
                          error = CASE WHEN $1->>'status' = 'failed' THEN coalesce(error, $1->>'error') ELSE error END
                   WHERE id = $1->>'id' AND status = 'running'
                     AND pid IS NOT DISTINCT FROM ($1->>'pid')::int
                   RETURNING 1)
                 SELECT count(*)::text FROM w"
            }
            Stmt::BackupFailIfRunning => {
                "WITH w AS (
                   UPDATE backup.backups SET status = 'failed', finished_at = now(), pid = NULL,
                          error = coalesce($1->>'error', 'backend exited')
                   WHERE id = $1->>'id' AND status = 'running'
                   RETURNING 1)
                 SELECT count(*)::text FROM w"
            }
            Stmt::BackupMarkDeleted => {
                "WITH w AS (
                   UPDATE backup.backups SET status = 'deleted'
                   WHERE id = $1->>'id' AND status <> 'deleted'
                   RETURNING 1)
                 SELECT count(*)::text FROM w"
            }
            Stmt::VerifyRecord => {
                "WITH w AS (
                   UPDATE backup.backups b SET verified_at = now(), verify_status = v.status
                   FROM jsonb_to_recordset($1) AS v(id text, status text)
                   WHERE b.id = v.id AND b.status = 'completed'
                   RETURNING 1)
                 SELECT count(*)::text FROM w"
            }
            Stmt::RestoreStart => {
                "INSERT INTO backup.restores (backup_id, started_at, status, dry_run, options, table_count, performed_by, pid)
                 SELECT r.backup_id, coalesce(r.started_at, now()), 'running', r.dry_run, coalesce(r.options, '{}'),
                        r.table_count, r.performed_by, r.pid
                 FROM jsonb_populate_record(NULL::backup.restores, $1) r
                 RETURNING id::text"
            }
            Stmt::RestoreFinish => {
                "WITH w AS (
                   UPDATE backup.restores SET status = $1->>'status', finished_at = now(), pid = NULL,
                          table_count = coalesce(($1->>'table_count')::int, table_count),
                          row_count = ($1->>'row_count')::bigint, error = $1->>'error',
                          progress = NULL
                   WHERE id = ($1->>'id')::bigint
                   RETURNING 1)
                 SELECT count(*)::text FROM w"
            }
            Stmt::RestoreNote => {
                "WITH w AS (
                   UPDATE backup.restores SET options = options || coalesce($1->'options', '{}')
                   WHERE id = ($1->>'id')::bigint
                   RETURNING 1)
                 SELECT count(*)::text FROM w"
            }
            Stmt::RestoreFailIfRunning => {
                "WITH w AS (
                   UPDATE backup.restores SET status = 'failed', finished_at = now(), pid = NULL,
                          error = coalesce($1->>'error', 'restore worker exited')
                   WHERE id = ($1->>'id')::bigint AND status = 'running'
                   RETURNING 1)
                 SELECT count(*)::text FROM w"
            }
            Stmt::DrillStart => {
                // Not written (no row, NULL) when backup.max_drills drills run already; the
                // caller holds drill::StartLock, so this statement's snapshot sees them all.
                "WITH w AS (
                   INSERT INTO backup.drills (backup_id, schedule, database, status, checks, requested_by, pid)
                   SELECT r.backup_id, r.schedule, r.database, 'running', r.checks, r.requested_by, r.pid
                   FROM jsonb_populate_record(NULL::backup.drills, $1) r
                   WHERE (SELECT count(*) FROM backup.drills WHERE status = 'running')
                         < ($1->>'max_running')::int
                   RETURNING id)
                 SELECT (SELECT id::text FROM w)"
            }
            Stmt::RestoreFailDead => {
                "WITH w AS (
                   UPDATE backup.restores SET status = 'failed', finished_at = now(), pid = NULL,
                          error = coalesce(error, $1->>'error')
                   WHERE id = ($1->>'id')::bigint AND status = 'running'
                     AND pid IS NOT DISTINCT FROM ($1->>'pid')::int
                   RETURNING 1)
                 SELECT count(*)::text FROM w"
            }
        }
    }
}

/// What became of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed (or, in local mode, part of the current transaction); the statement's result.
    Written(Option<String>),
    /// Written in the caller's transaction (no worker could do it, or the row was locked by the
    /// caller): it lasts only if that transaction commits.
    InCallersTransaction(Option<String>),
    /// A hot standby: nothing can be written.
    Standby,
    /// It could not be written at all (a WARNING said why).
    Failed,
}

impl Outcome {
    pub fn result(&self) -> Option<&str> {
        match self {
            Outcome::Written(r) | Outcome::InCallersTransaction(r) => r.as_deref(),
            _ => None,
        }
    }
}

/// Set by pg_backup's own background workers: they run outside any user's transaction, so
/// history is written in their own transactions.
static LOCAL_MODE: AtomicBool = AtomicBool::new(false);

pub fn set_local_mode() {
    LOCAL_MODE.store(true, Ordering::Relaxed);
}

/// Whether history is written in this process's own transaction (a pg_backup worker).
pub fn local_mode() -> bool {
    LOCAL_MODE.load(Ordering::Relaxed)
}

pub fn in_recovery() -> bool {
    // SAFETY: reads the shared recovery state (under its spinlock, inside), from a process
    // attached to shared memory.
    unsafe { pg_sys::RecoveryInProgress() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Wait until the statement is committed (normal use).
    Yes,
    /// Start the worker and return (from an exit callback, where waiting is not allowed).
    No,
}

// Segment layout: status u32, input length u32, output length u32 (u32::MAX = NULL), padding,
// then the input (statement name and argument as JSON), then the output.
const HEADER: usize = 16;
const OUTPUT_MAX: usize = 1024;
const STATUS_PENDING: u32 = 0;
const STATUS_DONE: u32 = 1;

/// Run `stmt` with `arg` so that it outlives the caller's transaction.
pub fn execute(stmt: Stmt, arg: &serde_json::Value, wait: Wait) -> Outcome {
    if in_recovery() {
        return Outcome::Standby;
    }
    if LOCAL_MODE.load(Ordering::Relaxed) && wait == Wait::Yes {
        return match run_here(stmt, arg) {
            Ok(r) => Outcome::Written(r),
            Err(e) => {
                pgrx::warning!("pg_backup: could not record history: {e}");
                Outcome::Failed
            }
        };
    }
    match in_worker(stmt, arg, wait) {
        WorkerResult::Done(r) => Outcome::Written(r),
        WorkerResult::Started => Outcome::Written(None),
        WorkerResult::NoWorker => {
            if wait == Wait::No {
                return Outcome::Failed;
            }
            pgrx::warning!(
                "pg_backup: could not start a background worker to record history; recording it in the current transaction"
            );
            in_callers_transaction(stmt, arg)
        }
        WorkerResult::BlockedByCaller => in_callers_transaction(stmt, arg),
        WorkerResult::WorkerFailed => {
            pgrx::warning!(
                "pg_backup: the history writer failed (see the server log); history not recorded"
            );
            Outcome::Failed
        }
    }
}

fn run_here(stmt: Stmt, arg: &serde_json::Value) -> Result<Option<String>, pgrx::spi::Error> {
    Spi::get_one_with_args::<String>(stmt.sql(), &[crate::text::Json(arg.clone()).into()])
}

/// In a subtransaction, so that a failure (a read-only transaction) is a WARNING, not the end
/// of the caller's transaction.
fn in_callers_transaction(stmt: Stmt, arg: &serde_json::Value) -> Outcome {
    match subtransaction::run_result(|| run_here(stmt, arg)) {
        Ok(Ok(r)) => Outcome::InCallersTransaction(r),
        Ok(Err(e)) => {
            pgrx::warning!("pg_backup: could not record history: {e}");
            Outcome::Failed
        }
        Err(caught) => {
            pgrx::warning!(
                "pg_backup: could not record history: {}",
                subtransaction::message(&caught)
            );
            Outcome::Failed
        }
    }
}

enum WorkerResult {
    Done(Option<String>),
    Started,
    NoWorker,
    BlockedByCaller,
    WorkerFailed,
}

fn in_worker(stmt: Stmt, arg: &serde_json::Value, wait: Wait) -> WorkerResult {
    let payload = serde_json::json!({ "stmt": stmt.name(), "arg": arg })
        .to_string()
        .into_bytes();
    // SAFETY: on the backend's thread. dsm_create returns a mapped segment of the size asked
    // (or raises); the header (status, payload length, output length) and the payload are
    // written inside it before the worker that reads them is started, and the worker writes
    // at most OUTPUT_MAX bytes after the payload. The segment is pinned so that it outlives
    // this mapping, and unpinned on every path where no worker will attach; the result is
    // read only after the worker set STATUS_DONE (read volatile) and is bounded by OUTPUT_MAX.
    // The latch wait is PostgreSQL's own loop, with interrupts checked at each turn.
    unsafe {
        let seg = pg_sys::dsm_create(HEADER + payload.len() + OUTPUT_MAX, 0);
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        (base as *mut u32).write(STATUS_PENDING);
        (base.add(4) as *mut u32).write(payload.len() as u32);
        (base.add(8) as *mut u32).write(u32::MAX);
        std::ptr::copy_nonoverlapping(payload.as_ptr(), base.add(HEADER), payload.len());
        let handle = pg_sys::dsm_segment_handle(seg);
        // The segment outlives this process's mapping (a cancel while waiting, an exiting
        // backend): the worker unpins it once it has attached.
        pg_sys::dsm_pin_segment(seg);
        let builder = BackgroundWorkerBuilder::new("pg_backup history writer")
            .set_type("pg_backup history writer")
            .set_library("pg_backup")
            .set_function("pg_backup_history_writer_main")
            .set_argument(Some(pg_sys::Datum::from(handle as usize)))
            .set_extra(&u32::from(pg_sys::MyDatabaseId).to_string())
            .set_start_time(BgWorkerStartTime::ConsistentState)
            .set_restart_time(None)
            .enable_spi_access();
        let builder = if wait == Wait::Yes {
            builder.set_notify_pid(pg_sys::MyProcPid)
        } else {
            builder
        };
        let worker = match builder.load_dynamic() {
            Ok(w) => w,
            Err(_) => {
                pg_sys::dsm_unpin_segment(handle);
                pg_sys::dsm_detach(seg);
                return WorkerResult::NoWorker;
            }
        };
        if wait == Wait::No {
            pg_sys::dsm_detach(seg);
            return WorkerResult::Started;
        }
        let started = Instant::now();
        let result = loop {
            match worker.pid() {
                Err(BackgroundWorkerStatus::Stopped) => break None,
                Err(BackgroundWorkerStatus::PostmasterDied) => break None,
                // It waits for a row lock this transaction holds: it would wait for ever,
                // and so would we.
                Ok(pid) if started.elapsed() > Duration::from_millis(200) && blocked_by_me(pid) => {
                    let _ = worker.terminate().wait_for_shutdown();
                    break Some(WorkerResult::BlockedByCaller);
                }
                _ => {}
            }
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                100,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
            pgrx::check_for_interrupts!();
        };
        let outcome = match result {
            Some(r) => r,
            None if (base as *const u32).read_volatile() == STATUS_DONE => {
                let len = (base.add(8) as *const u32).read_volatile();
                WorkerResult::Done((len != u32::MAX).then(|| {
                    let bytes = std::slice::from_raw_parts(
                        base.add(HEADER + payload.len()),
                        (len as usize).min(OUTPUT_MAX),
                    );
                    String::from_utf8_lossy(bytes).into_owned()
                }))
            }
            None => WorkerResult::WorkerFailed,
        };
        pg_sys::dsm_detach(seg);
        outcome
    }
}

/// Whether process `pid` waits for a lock this backend holds.
fn blocked_by_me(pid: i32) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.pg_backend_pid() = ANY (pg_catalog.pg_blocking_pids($1))",
        &[pid.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

unsafe fn set_option(name: &std::ffi::CStr, value: &std::ffi::CStr) {
    pg_sys::SetConfigOption(
        name.as_ptr(),
        value.as_ptr(),
        pg_sys::GucContext::PGC_SUSET,
        pg_sys::GucSource::PGC_S_OVERRIDE,
    );
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_backup_history_writer_main(arg: pg_sys::Datum) {
    // Stopped by the caller when it waits for a lock the caller holds: it must end even then.
    crate::signals::die_on_sigterm_then_unblock();
    let db_oid = pg_sys::Oid::from(BackgroundWorker::get_extra().parse::<u32>().unwrap_or(0));
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db_oid), None);
    // History is written even where the session or the database is read-only: recording that
    // a read-only action happened changes nothing the user's data depends on.
    // SAFETY: static NUL-terminated names and values; the worker is connected and on its
    // only thread; superuser-context overrides of these settings cannot fail.
    unsafe {
        set_option(c"default_transaction_read_only", c"off");
    }
    // No database or role default timeout ends the write (statement_timeout ... and from 17
    // transaction_timeout, as pg_dump's session).
    crate::session::disable_dump_timeouts();
    let handle = arg.value() as pg_sys::dsm_handle;
    // SAFETY: `handle` is the segment `in_worker` created for this worker (NULL, checked, if
    // it is gone); the payload length in its header was written before this worker started
    // and the payload lies inside the segment (which is HEADER + payload + OUTPUT_MAX long).
    // It is copied out before anything else touches the segment.
    let (seg, payload) = unsafe {
        let seg = pg_sys::dsm_attach(handle);
        if seg.is_null() {
            pgrx::log!("pg_backup history writer: shared memory segment is gone");
            return;
        }
        pg_sys::dsm_unpin_segment(handle);
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        let len = (base.add(4) as *const u32).read() as usize;
        let payload = std::slice::from_raw_parts(base.add(HEADER), len).to_vec();
        (seg, payload)
    };
    let parsed: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
    let Some(stmt) = Stmt::from_name(parsed["stmt"].as_str().unwrap_or_default()) else {
        pgrx::log!("pg_backup history writer: unknown statement");
        return;
    };
    let arg = parsed["arg"].clone();
    let result = BackgroundWorker::transaction(move || {
        run_here(stmt, &arg).unwrap_or_else(|e| panic!("pg_backup history statement: {e}"))
    });
    // SAFETY: the segment attached above: the output area starts after the payload and at
    // most OUTPUT_MAX bytes are written into it; its length and then STATUS_DONE are
    // published with volatile writes, which the waiting backend reads volatile. Detached once.
    unsafe {
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        let out = base.add(HEADER + payload.len());
        match result {
            Some(text) => {
                let n = text.len().min(OUTPUT_MAX);
                std::ptr::copy_nonoverlapping(text.as_ptr(), out, n);
                (base.add(8) as *mut u32).write_volatile(n as u32);
            }
            None => (base.add(8) as *mut u32).write_volatile(u32::MAX),
        }
        (base as *mut u32).write_volatile(STATUS_DONE);
        pg_sys::dsm_detach(seg);
    }
}
