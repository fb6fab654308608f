//! Autonomous catalog writes: a history row must survive the error (or the rollback) of the
//! transaction that describes it, as pg_cron's job_run_details does. PostgreSQL has no
//! autonomous transactions, so a short-lived dynamic background worker runs one fixed
//! statement in its own transaction. The statement is chosen from `STATEMENTS` by name (never
//! SQL text from the caller); its one argument is a jsonb row passed through dynamic shared
//! memory.

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;
use pgrx::JsonB;

/// The only statements the worker runs.
const STATEMENTS: &[(&str, &str)] = &[
    (
        "backup_upsert",
        "INSERT INTO backup.backups SELECT * FROM jsonb_populate_record(NULL::backup.backups, $1)
         ON CONFLICT (id) DO UPDATE SET
           status = EXCLUDED.status, finished_at = EXCLUDED.finished_at,
           table_count = EXCLUDED.table_count, row_count = EXCLUDED.row_count,
           bytes = EXCLUDED.bytes, manifest_sha256 = EXCLUDED.manifest_sha256,
           error = EXCLUDED.error, pid = EXCLUDED.pid, path = EXCLUDED.path,
           progress = EXCLUDED.progress, storage = EXCLUDED.storage,
           storage_url = EXCLUDED.storage_url",
    ),
    (
        "backup_fail_if_running",
        "UPDATE backup.backups SET status = 'failed', finished_at = now(), pid = NULL,
                error = coalesce($1->>'error', 'backend exited')
         WHERE id = $1->>'id' AND status = 'running'",
    ),
    (
        "backup_mark_deleted",
        "UPDATE backup.backups SET status = 'deleted' WHERE id = $1->>'id' AND status <> 'deleted'",
    ),
    (
        "restore_upsert",
        "INSERT INTO backup.restores SELECT * FROM jsonb_populate_record(NULL::backup.restores, $1)
         ON CONFLICT (id) DO UPDATE SET
           status = EXCLUDED.status, finished_at = EXCLUDED.finished_at,
           table_count = EXCLUDED.table_count, row_count = EXCLUDED.row_count,
           error = EXCLUDED.error, progress = EXCLUDED.progress",
    ),
    (
        // restore(atomic => false)'s worker, terminated: what it committed stays.
        "restore_fail_if_running",
        "UPDATE backup.restores SET status = 'failed', finished_at = now(),
                error = coalesce($1->>'error', 'restore worker exited')
         WHERE id = ($1->>'id')::bigint AND status = 'running'",
    ),
];

const HEADER: usize = 8;
const STATUS_PENDING: u32 = 0;
const STATUS_DONE: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Wait until the row is committed (normal use).
    Yes,
    /// Start the worker and return (from an exit callback, where waiting is not allowed).
    No,
}

/// Run statement `name` with `arg` in a transaction of its own. Returns whether it committed
/// (always false with `Wait::No`, which cannot know).
pub fn execute(name: &'static str, arg: &serde_json::Value, wait: Wait) -> bool {
    assert!(
        STATEMENTS.iter().any(|(n, _)| *n == name),
        "unknown autonomous statement {name}"
    );
    let payload = serde_json::json!({ "stmt": name, "arg": arg })
        .to_string()
        .into_bytes();
    unsafe {
        let seg = pg_sys::dsm_create(HEADER + payload.len(), 0);
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        (base as *mut u32).write(STATUS_PENDING);
        (base.add(4) as *mut u32).write(payload.len() as u32);
        std::ptr::copy_nonoverlapping(payload.as_ptr(), base.add(HEADER), payload.len());
        let handle = pg_sys::dsm_segment_handle(seg);
        if wait == Wait::No {
            // The segment must outlive this (exiting) backend; the worker unpins it.
            pg_sys::dsm_pin_segment(seg);
        }
        let builder = BackgroundWorkerBuilder::new("pg_backup history writer")
            .set_type("pg_backup history writer")
            .set_library("pg_backup")
            .set_function("pg_backup_history_writer_main")
            .set_argument(Some(pg_sys::Datum::from(handle as usize)))
            .set_extra(&format!(
                "{}:{}",
                u32::from(pg_sys::MyDatabaseId),
                u8::from(wait == Wait::No)
            ))
            .set_start_time(BgWorkerStartTime::ConsistentState)
            .set_restart_time(None)
            .enable_spi_access();
        let builder = if wait == Wait::Yes {
            builder.set_notify_pid(pg_sys::MyProcPid)
        } else {
            builder
        };
        let ok = match builder.load_dynamic() {
            Ok(worker) if wait == Wait::Yes => {
                let _ = worker.wait_for_shutdown();
                (base as *const u32).read_volatile() == STATUS_DONE
            }
            Ok(_) => false,
            Err(_) => {
                if wait == Wait::No {
                    pg_sys::dsm_unpin_segment(handle);
                }
                false
            }
        };
        pg_sys::dsm_detach(seg);
        ok
    }
}

/// Like `execute(.., Wait::Yes)`, but when no worker could run it (max_worker_processes
/// reached) the statement runs in the caller's transaction instead, with a WARNING: the row
/// then lasts only if that transaction commits.
pub fn execute_or_inline(name: &'static str, arg: &serde_json::Value) {
    if execute(name, arg, Wait::Yes) {
        return;
    }
    pgrx::warning!(
        "pg_backup: could not start a background worker to record history; recording it in the current transaction"
    );
    let sql = STATEMENTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .expect("known statement");
    if let Err(e) = Spi::run_with_args(sql, &[JsonB(arg.clone()).into()]) {
        pgrx::warning!("pg_backup: could not record history: {e}");
    }
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_backup_history_writer_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let extra = BackgroundWorker::get_extra().to_string();
    let (db, pinned) = extra.split_once(':').unwrap_or((&extra, "0"));
    let db_oid = pg_sys::Oid::from(db.parse::<u32>().unwrap_or(0));
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db_oid), None);
    let handle = arg.value() as pg_sys::dsm_handle;
    let (seg, payload) = unsafe {
        let seg = pg_sys::dsm_attach(handle);
        if seg.is_null() {
            pgrx::log!("pg_backup history writer: shared memory segment is gone");
            return;
        }
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        let len = (base.add(4) as *const u32).read() as usize;
        let payload = std::slice::from_raw_parts(base.add(HEADER), len).to_vec();
        if pinned == "1" {
            pg_sys::dsm_unpin_segment(handle);
        }
        (seg, payload)
    };
    let parsed: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
    let name = parsed["stmt"].as_str().unwrap_or_default().to_string();
    let Some(sql) = STATEMENTS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s) else {
        pgrx::log!("pg_backup history writer: unknown statement {name:?}");
        return;
    };
    let arg = parsed["arg"].clone();
    BackgroundWorker::transaction(move || {
        Spi::run_with_args(sql, &[JsonB(arg).into()]).expect("history statement");
    });
    unsafe {
        let base = pg_sys::dsm_segment_address(seg) as *mut u32;
        base.write_volatile(STATUS_DONE);
        pg_sys::dsm_detach(seg);
    }
}
