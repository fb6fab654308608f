//! `restore(..., atomic => false)`: a restore that commits as it goes, so that a backup of
//! many thousands of tables restores with default settings (one transaction cannot hold a
//! lock on each of them: 53200), as pg_restore does without --single-transaction (or with
//! PostgreSQL 17's --transaction-size).
//!
//! A function cannot commit, so the call starts a background worker that runs the restore and
//! waits for it (reading its result rows from a shared-memory queue). The worker acts as the
//! calling session (its user, security context and settings: `session`), commits every few
//! hundred TOC entries (`Batches`, called by the runner after each step), and records each
//! commit in the restore's history row (`progress`: how many entries are committed, and the
//! last one), in the same transaction as the entries themselves. If the restore fails, what
//! was committed stays; the history row and the error say how many entries were committed
//! and list them (`progress->'restored'`).
//!
//! A cancel (or statement_timeout) of the calling session is passed on to the worker as a
//! cancel of its own, which rolls back its current batch and records the failure; the call
//! then ends with the cancel. A terminated session terminates the worker (its exit callback
//! marks the row failed).

use std::cell::{Cell, RefCell};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};

use super::runner::{self, Row};
use super::RestoreOptions;
use crate::catalog::autonomous::{self, Stmt, Wait};
use crate::catalog::history::{self, Committed};
use crate::error::{BackupError, Result};
use crate::security::{self, redact, Caller};
use crate::session::{self, Session};

/// What the worker is asked to do (and, with jobs => N, each of its job workers).
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Request {
    pub(super) backup_id: String,
    pub(super) opts: RestoreOptions,
    pub(super) caller_schemas: Vec<String>,
    pub(super) caller_role: String,
    pub(super) caller_oid: u32,
    pub(super) session: Session,
}

/// What the worker sends back, message by message.
#[derive(Serialize, Deserialize)]
enum Message {
    Row(Row),
    Done,
    Failed {
        sqlstate: String,
        message: String,
        hint: Option<String>,
    },
}

const MAGIC: u32 = 0x7062_7231;
const QUEUE_SIZE: usize = 256 << 10;

#[repr(C)]
struct Header {
    magic: u32,
    request_len: u32,
    request_off: usize,
    queue_off: usize,
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// The worker of this session's restore, for the exit callback.
static RUNNING: Mutex<Option<usize>> = Mutex::new(None);
static EXIT_CALLBACK: std::sync::Once = std::sync::Once::new();

#[pg_guard]
unsafe extern "C-unwind" fn on_caller_exit(_code: i32, _arg: pg_sys::Datum) {
    let handle = RUNNING.lock().ok().and_then(|mut g| g.take());
    if let Some(h) = handle {
        let h = h as *mut pg_sys::BackgroundWorkerHandle;
        pg_sys::TerminateBackgroundWorker(h);
    }
}

/// The calling side: start the worker, relay its rows, end as it ended.
pub fn run(id: &str, opts: &RestoreOptions, caller: &Caller) -> Result<Vec<Row>> {
    // Each commit is final: not inside a transaction block the caller might roll back (and a
    // caller holding locks the worker waits for would wait for it forever).
    unsafe {
        pg_sys::PreventInTransactionBlock(true, c"restore(atomic => false)".as_ptr());
    }
    let request = serde_json::to_vec(&Request {
        backup_id: id.to_string(),
        opts: opts.clone(),
        caller_schemas: caller.schemas.clone(),
        caller_role: caller.role.clone(),
        caller_oid: u32::from(caller.oid),
        session: session::capture(),
    })
    .expect("request serializes");
    let request_off = align8(std::mem::size_of::<Header>());
    let queue_off = align8(request_off + request.len());
    let size = queue_off + QUEUE_SIZE;
    let mut w = Worker {
        seg: std::ptr::null_mut(),
        handle: std::ptr::null_mut(),
        queue: std::ptr::null_mut(),
    };
    unsafe {
        w.seg = pg_sys::dsm_create(size, 0);
        let base = pg_sys::dsm_segment_address(w.seg) as *mut u8;
        base.cast::<Header>().write(Header {
            magic: MAGIC,
            request_len: request.len() as u32,
            request_off,
            queue_off,
        });
        std::ptr::copy_nonoverlapping(request.as_ptr(), base.add(request_off), request.len());
        let mq = pg_sys::shm_mq_create(base.add(queue_off).cast(), QUEUE_SIZE);
        pg_sys::shm_mq_set_receiver(mq, pg_sys::MyProc);
        let builder = BackgroundWorkerBuilder::new("pg_backup restore worker")
            .set_type("pg_backup restore worker")
            .set_library("pg_backup")
            .set_function("pg_backup_restore_worker_main")
            .set_argument(Some(pg_sys::Datum::from(
                pg_sys::dsm_segment_handle(w.seg) as usize
            )))
            .set_start_time(BgWorkerStartTime::ConsistentState)
            .set_restart_time(None)
            .enable_spi_access()
            .set_notify_pid(pg_sys::MyProcPid);
        let mut bgw = pg_sys::BackgroundWorker::from(&builder);
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let ok = pg_sys::RegisterDynamicBackgroundWorker(&mut bgw, &mut w.handle);
        pg_sys::MemoryContextSwitchTo(old);
        if !ok {
            w.handle = std::ptr::null_mut();
            return Err(BackupError::denied(
                "no background worker slot is free for restore(atomic => false)",
            )
            .with_hint(
                "Raise max_worker_processes (restart needed), or wait for other workers to finish.",
            ));
        }
        EXIT_CALLBACK
            .call_once(|| pg_sys::before_shmem_exit(Some(on_caller_exit), pg_sys::Datum::from(0)));
        if let Ok(mut g) = RUNNING.lock() {
            *g = Some(w.handle as usize);
        }
        w.queue = pg_sys::shm_mq_attach(mq, w.seg, w.handle);
    }
    w.relay()
}

struct Worker {
    seg: *mut pg_sys::dsm_segment,
    handle: *mut pg_sys::BackgroundWorkerHandle,
    queue: *mut pg_sys::shm_mq_handle,
}

impl Worker {
    fn pid(&self) -> Option<i32> {
        let mut pid: pg_sys::pid_t = 0;
        let status = unsafe { pg_sys::GetBackgroundWorkerPid(self.handle, &mut pid) };
        (status == pg_sys::BgwHandleStatus::BGWH_STARTED).then_some(pid)
    }

    fn relay(mut self) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        let mut cancel_sent: Option<Instant> = None;
        loop {
            let mut len: pg_sys::Size = 0;
            let mut data: *mut std::ffi::c_void = std::ptr::null_mut();
            let r = unsafe { pg_sys::shm_mq_receive(self.queue, &mut len, &mut data, true) };
            match r {
                pg_sys::shm_mq_result::SHM_MQ_SUCCESS => {
                    let bytes = unsafe { std::slice::from_raw_parts(data as *const u8, len) };
                    match serde_json::from_slice::<Message>(bytes) {
                        Ok(Message::Row(row)) => rows.push(row),
                        Ok(Message::Done) => {
                            self.finish();
                            return Ok(rows);
                        }
                        Ok(Message::Failed {
                            sqlstate,
                            message,
                            hint,
                        }) => {
                            self.finish();
                            // A cancel of ours that the worker carried out is ours to raise.
                            pgrx::check_for_interrupts!();
                            return Err(BackupError::from_worker(&sqlstate, message, hint));
                        }
                        Err(e) => {
                            return Err(BackupError::from_worker(
                                "XX000",
                                format!("unreadable message from the restore worker: {e}"),
                                None,
                            ))
                        }
                    }
                    continue;
                }
                pg_sys::shm_mq_result::SHM_MQ_DETACHED => {
                    return Err(BackupError::from_worker(
                        "57P01",
                        "the pg_backup restore worker exited before the restore ended (terminated or crashed); what it had committed stays, see backup.restores".into(),
                        Some("See the server log and SELECT * FROM backup.restores ORDER BY id DESC LIMIT 1;".into()),
                    ));
                }
                _ => {}
            }
            // A cancel or a statement timeout of this session: the worker cancels its own
            // work (rolling back its current batch and recording what stays), and this call
            // ends with the cancel once it has. A termination ends both at once.
            let cancel = unsafe { (&raw const pg_sys::QueryCancelPending).read_volatile() } != 0;
            let die = unsafe { (&raw const pg_sys::ProcDiePending).read_volatile() } != 0;
            if cancel && !die {
                match cancel_sent {
                    None => {
                        if let Some(pid) = self.pid() {
                            unsafe { libc::kill(pid, libc::SIGINT) };
                        }
                        cancel_sent = Some(Instant::now());
                    }
                    Some(t) if t.elapsed() > Duration::from_secs(30) => {
                        pgrx::check_for_interrupts!();
                    }
                    Some(_) => {}
                }
            } else {
                pgrx::check_for_interrupts!();
            }
            unsafe {
                pg_sys::WaitLatch(
                    pg_sys::MyLatch,
                    (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH)
                        as i32,
                    100,
                    pg_sys::PG_WAIT_EXTENSION,
                );
                pg_sys::ResetLatch(pg_sys::MyLatch);
            }
        }
    }

    /// The worker has said its last word: wait for it to exit, then let go.
    fn finish(&mut self) {
        unsafe {
            pg_sys::WaitForBackgroundWorkerShutdown(self.handle);
        }
        self.release();
    }

    fn release(&mut self) {
        if let Ok(mut g) = RUNNING.lock() {
            *g = None;
        }
        if !self.seg.is_null() && !std::thread::panicking() {
            unsafe { pg_sys::dsm_detach(self.seg) };
        }
        if !self.handle.is_null() {
            unsafe { pg_sys::pfree(self.handle.cast()) };
        }
        self.seg = std::ptr::null_mut();
        self.handle = std::ptr::null_mut();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.handle.is_null() {
            if !self.seg.is_null() && !std::thread::panicking() {
                unsafe { pg_sys::dsm_detach(self.seg) };
            }
            return;
        }
        // An error of ours (or a cancel the worker did not carry out in time): stop it.
        unsafe { pg_sys::TerminateBackgroundWorker(self.handle) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && self.pid().is_some() {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.release();
    }
}

// ---------------------------------------------------------------------------------------------
// The worker.
// ---------------------------------------------------------------------------------------------

/// Commits along the way, for the runner (`runner::Runner` calls `step_done` after each step
/// that succeeded).
pub struct Batches {
    /// Steps per transaction.
    size: usize,
    session: Session,
    /// What the worker was asked (restore(jobs => N) hands it on to its job workers).
    pub(super) request: Request,
    steps_in_batch: Cell<usize>,
    /// Result rows already accounted for: recorded by this worker's commits (or pending for
    /// its next one), or committed and recorded by the job worker that reported them.
    seen: Cell<usize>,
    pub(super) restore_id: Cell<i64>,
    /// This worker's steps since its last commit: recorded with the next one.
    pending: RefCell<Committed>,
    /// restore(jobs => N)'s workers ran the final ANALYZE.
    pub(super) analyzed: Cell<bool>,
}

/// Entries per transaction: small enough that a batch's locks (a table, its TOAST table and
/// index, its indexes ...) fit the shared lock table next to everyone else's, large enough
/// that commits cost little. pg_upgrade uses 1000 with PostgreSQL 17's --transaction-size.
pub fn batch_size(max_locks_per_transaction: i64) -> usize {
    (max_locks_per_transaction * 8).clamp(64, 1000) as usize
}

impl Batches {
    fn new(request: &Request) -> Batches {
        let locks = session::current_setting("max_locks_per_transaction")
            .parse::<i64>()
            .unwrap_or(64);
        Batches {
            size: batch_size(locks),
            session: request.session.clone(),
            request: request.clone(),
            steps_in_batch: Cell::new(0),
            seen: Cell::new(0),
            restore_id: Cell::new(0),
            pending: RefCell::new(Committed::default()),
            analyzed: Cell::new(false),
        }
    }

    /// After each step that succeeded: commit every `size` steps.
    pub fn step_done(&self, out: &[Row]) -> Result<()> {
        self.steps_in_batch.set(self.steps_in_batch.get() + 1);
        if self.steps_in_batch.get() >= self.size {
            self.commit(out)?;
        }
        Ok(())
    }

    /// Commit what is done, with the history row saying so in the same transaction (so a
    /// crash right after leaves it true), and go on in a new transaction.
    pub fn commit(&self, out: &[Row]) -> Result<()> {
        self.note_local(out);
        let pending = self.pending.take();
        history::record_committed(self.restore_id.get(), &pending)?;
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }
        self.steps_in_batch.set(0);
        begin_transaction(&self.session);
        Ok(())
    }

    /// The rows of `out` not yet accounted for are this worker's own: they are recorded
    /// with its next commit.
    pub fn note_local(&self, out: &[Row]) {
        let from = self.seen.get().min(out.len());
        add_committed(&mut self.pending.borrow_mut(), &out[from..]);
        self.seen.set(out.len());
    }

    /// The rows just added to `out` were committed and recorded by a job worker.
    pub fn note_recorded(&self, out: &[Row]) {
        self.seen.set(out.len());
    }
}

/// Add result rows to what a transaction commits: every row counts as a committed step,
/// those that restored something (ok or warning, not a skip) are listed.
pub(super) fn add_committed(c: &mut Committed, rows: &[Row]) {
    for r in rows {
        c.entries += 1;
        c.rows += r.3.unwrap_or(0);
        let step = format!("{} {}", r.1, r.0);
        if (r.4 == "ok" || r.4 == "warning") && r.2 != "skip" {
            c.restored.push(step.clone());
        }
        c.last = Some(step);
    }
}

/// What a set of result rows commits.
pub(super) fn committed(rows: &[Row]) -> Committed {
    let mut c = Committed::default();
    add_committed(&mut c, rows);
    c
}

pub(super) fn begin_transaction(session: &Session) {
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    session.become_user();
}

static RESTORE_ID: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

#[pg_guard]
unsafe extern "C-unwind" fn on_worker_exit(_code: i32, _arg: pg_sys::Datum) {
    let id = RESTORE_ID.swap(0, std::sync::atomic::Ordering::Relaxed);
    if id != 0 {
        autonomous::execute(
            Stmt::RestoreFailIfRunning,
            &serde_json::json!({
                "id": id,
                "error": "the restore worker was terminated; the steps committed before stay restored (see progress)"
            }),
            Wait::No,
        );
    }
}

/// What a backend's StatementCancelHandler does: the next interrupt check raises
/// "canceling statement due to user request" (57014), which the worker catches like any error.
pub(super) unsafe extern "C-unwind" fn cancel_on_sigint(_signal: i32) {
    let saved = *libc::__errno_location();
    if !pg_sys::proc_exit_inprogress {
        (&raw mut pg_sys::InterruptPending).write_volatile(1);
        (&raw mut pg_sys::QueryCancelPending).write_volatile(1);
    }
    if !pg_sys::MyLatch.is_null() {
        pg_sys::SetLatch(pg_sys::MyLatch);
    }
    *libc::__errno_location() = saved;
}

#[pg_guard]
#[no_mangle]
#[allow(clippy::result_large_err)]
pub extern "C-unwind" fn pg_backup_restore_worker_main(arg: pg_sys::Datum) {
    unsafe {
        pg_sys::pqsignal(libc::SIGTERM, Some(crate::signals::die_on_sigterm));
        pg_sys::pqsignal(libc::SIGINT, Some(cancel_on_sigint));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    let seg = unsafe { pg_sys::dsm_attach(arg.value() as pg_sys::dsm_handle) };
    if seg.is_null() {
        return;
    }
    unsafe { pg_sys::dsm_pin_mapping(seg) };
    let base = unsafe { pg_sys::dsm_segment_address(seg) as *mut u8 };
    let header = unsafe { &*(base as *const Header) };
    if header.magic != MAGIC {
        return;
    }
    let queue = unsafe {
        let mq = base.add(header.queue_off) as *mut pg_sys::shm_mq;
        pg_sys::shm_mq_set_sender(mq, pg_sys::MyProc);
        pg_sys::shm_mq_attach(mq, seg, std::ptr::null_mut())
    };
    let send = |m: &Message| {
        let bytes = serde_json::to_vec(m).expect("message serializes");
        unsafe {
            pg_sys::shm_mq_send(queue, bytes.len(), bytes.as_ptr().cast(), false, true);
        }
    };
    let request: Request = match serde_json::from_slice(unsafe {
        std::slice::from_raw_parts(base.add(header.request_off), header.request_len as usize)
    }) {
        Ok(r) => r,
        Err(e) => {
            send(&Message::Failed {
                sqlstate: "XX000".into(),
                message: format!("pg_backup restore worker: unreadable request: {e}"),
                hint: None,
            });
            return;
        }
    };
    request.session.connect();
    security::call_is_session();
    unsafe {
        pg_sys::before_shmem_exit(Some(on_worker_exit), pg_sys::Datum::from(0));
    }
    let batches = Batches::new(&request);
    begin_transaction(&request.session);
    let caller = security::enter_for(
        request.caller_schemas.clone(),
        request.caller_role.clone(),
        pg_sys::Oid::from(request.caller_oid),
    );
    // No subtransaction around it (a commit must be able to end the transaction): an error
    // is caught here, and the transaction aborted below.
    let outcome = PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        Ok(super::restore_batched(
            &request.backup_id,
            &request.opts,
            &caller,
            &batches,
        ))
    }))
    .catch_others(Err)
    .execute();
    let failure = match outcome {
        Ok(Ok(rows)) => {
            unsafe {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
            RESTORE_ID.store(0, std::sync::atomic::Ordering::Relaxed);
            for r in rows {
                send(&Message::Row(r));
            }
            send(&Message::Done);
            return;
        }
        Ok(Err(e)) => failure_of(Ok(e)),
        Err(caught) => failure_of(Err(caught)),
    };
    // The current batch is rolled back; what was committed stays, and the row says what
    // (its progress, recorded by every transaction that committed something).
    unsafe { pg_sys::AbortOutOfAnyTransaction() };
    let (sqlstate, message, hint) = failure;
    let message = if batches.restore_id.get() != 0 {
        let stays = super::record_failure(&request.session, batches.restore_id.get(), |stays| {
            format!("{message}; {stays} (SQLSTATE {sqlstate})")
        });
        format!("{message}; {stays}")
    } else {
        message
    };
    RESTORE_ID.store(0, std::sync::atomic::Ordering::Relaxed);
    send(&Message::Failed {
        sqlstate,
        message,
        hint,
    });
}

/// An error that ends a restore worker (or a job worker): SQLSTATE, message naming the entry
/// it stopped at, hint. Errors PostgreSQL raised go without row values (issue 9); the server
/// log gets the whole error.
pub(super) fn failure_of(
    e: std::result::Result<BackupError, CaughtError>,
) -> (String, String, Option<String>) {
    match e {
        Ok(e) => {
            let at = runner::current_entry()
                .map(|w| format!(" (while restoring {w})"))
                .unwrap_or_default();
            (e.sqlstate().to_string(), format!("{e}{at}"), e.hint())
        }
        Err(caught) => {
            let (kind, object, exposure) = runner::current_step();
            let text = redact::describe(&caught, &kind, &object, exposure);
            (
                sqlstate_of(&caught),
                text,
                Some("Row values are never shown or stored by pg_backup; the server log has the complete error.".to_string()),
            )
        }
    }
}

/// The restore's history row exists from here on (for the exit callback).
pub fn started(restore_id: i64, batches: &Batches) {
    batches.restore_id.set(restore_id);
    RESTORE_ID.store(restore_id, std::sync::atomic::Ordering::Relaxed);
}

fn sqlstate_of(e: &CaughtError) -> String {
    match e {
        CaughtError::PostgresError(r)
        | CaughtError::ErrorReport(r)
        | CaughtError::RustPanic { ereport: r, .. } => redact::sqlstate(r.sql_error_code()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_lists_what_it_restored_and_counts_every_step() {
        let rows = vec![
            runner::row("public.t".into(), "table", "create", None, "ok", None),
            runner::row("public.t".into(), "table_data", "load", Some(7), "ok", None),
            runner::row(
                "public.u".into(),
                "table",
                "skip",
                None,
                "ok",
                Some("already exists"),
            ),
            runner::row(
                "public.v".into(),
                "table_data",
                "load",
                None,
                "failed",
                Some("x"),
            ),
            runner::row(
                "public.t".into(),
                "acl",
                "grant",
                None,
                "warning",
                Some("y"),
            ),
        ];
        let c = committed(&rows);
        assert_eq!(c.entries, 5);
        assert_eq!(c.rows, 7);
        assert_eq!(c.last.as_deref(), Some("acl public.t"));
        assert_eq!(
            c.restored,
            vec!["table public.t", "table_data public.t", "acl public.t"]
        );
    }

    #[test]
    fn batches_fit_the_lock_table() {
        assert_eq!(batch_size(64), 512);
        assert_eq!(batch_size(10), 80);
        assert_eq!(batch_size(1), 64);
        assert_eq!(batch_size(10_000), 1000);
    }
}
