//! `restore(..., atomic => false)`: a restore that commits as it goes, so that a backup of
//! many thousands of tables restores with default settings (one transaction cannot hold a
//! lock on each of them: 53200), as pg_restore does without --single-transaction (or with
//! PostgreSQL 17's --transaction-size).
//!
//! A function cannot commit, so the call starts a background worker that runs the restore and
//! waits for it (reading its result rows from a shared-memory queue). The worker acts as the
//! calling session (its user, security context and settings: `session`), commits every few
//! hundred TOC entries (`batch::Batches`, called by the step executor after each step), and records each
//! commit in the restore's history row (`progress`: how many entries are committed, and the
//! last one), in the same transaction as the entries themselves. If the restore fails, what
//! was committed stays; the history row and the error say how many entries were committed
//! and list them (`progress->'restored'`).
//!
//! A cancel (or statement_timeout) of the calling session is passed on to the worker as a
//! cancel of its own, which rolls back its current batch and records the failure; the call
//! then ends with the cancel. A terminated session terminates the worker (its exit callback
//! marks the row failed).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};

use super::batch::{self, begin_transaction, Batches};
use super::context::failure_of;
use super::options::{Request, RestoreOptions};
use super::result::Row;
use super::run;
use crate::error::{BackupError, Result};
use crate::security::{self, Caller};
use crate::session;

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

#[pg_guard]
#[no_mangle]
#[allow(clippy::result_large_err)]
pub extern "C-unwind" fn pg_backup_restore_worker_main(arg: pg_sys::Datum) {
    unsafe {
        pg_sys::pqsignal(libc::SIGTERM, Some(crate::signals::die_on_sigterm));
        pg_sys::pqsignal(libc::SIGINT, Some(crate::signals::cancel_on_sigint));
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
    batch::register_exit_callback();
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
        Ok(run::restore_batched(
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
            batch::ended();
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
        let stays = run::record_failure(&request.session, batches.restore_id.get(), |stays| {
            format!("{message}; {stays} (SQLSTATE {sqlstate})")
        });
        format!("{message}; {stays}")
    } else {
        message
    };
    batch::ended();
    send(&Message::Failed {
        sqlstate,
        message,
        hint,
    });
}
