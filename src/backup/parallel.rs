//! `create(..., jobs => N)`: N dynamic background workers copy the tables, all under the one
//! snapshot of the backend that called create() (the leader).
//!
//! pg_dump -j has its workers import the leader's snapshot with `SET TRANSACTION SNAPSHOT`.
//! A SQL function may run inside a subtransaction, where `pg_export_snapshot()` is refused, so
//! the leader hands its snapshot over the way parallel query does: SerializeSnapshot into
//! shared memory, RestoreTransactionSnapshot in a REPEATABLE READ worker transaction, with the
//! leader's PGPROC as the source (the import fails unless the leader still holds the snapshot).
//! The workers join the leader's lock group, so their ACCESS SHARE locks are granted at once
//! even when someone already queues for an exclusive lock behind the leader's (pg_dump's
//! workers fail with NOWAIT there instead), and the deadlock detector sees them as one.
//!
//! The leader locks every table first (as always), hands out the tables largest first through a
//! shared counter, reports progress, and waits. An error or cancel in the leader terminates the
//! workers (and waits for them, so the archive folder can be removed); a worker's error stops
//! the others and fails the backup with the worker's SQLSTATE and message.

use std::ffi::CStr;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};

use super::task::{self, CopyTask};
use crate::archive::compression::Compression;
use crate::archive::writer::FileStats;
use crate::error::{BackupError, Result};
use crate::session::{self, Session};
use crate::subtransaction;

/// What every worker needs to know, as JSON in the shared segment.
#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    /// The leader's database, current user and security context (inside create(), SECURITY
    /// DEFINER: the extension owner) and output settings: a worker has exactly its rights and
    /// writes exactly the bytes it would.
    session: Session,
    compression: String,
    /// In the order workers take them (largest first).
    tasks: Vec<CopyTask>,
}

const MAGIC: u32 = 0x7062_6a31;

/// `go`: workers connect, then wait for GO before taking tasks (so the leader can still send
/// one back unused when the worker slots run out), or leave on STOP.
const WAIT: u32 = 0;
const GO: u32 = 1;
const STOP: u32 = 2;

/// A task's result state (0 until then).
const DONE: u32 = 2;

/// A worker's state (0 until it starts).
const W_RUNNING: u32 = 1;
const W_FINISHED: u32 = 2;
const W_FAILED: u32 = 3;

const ERROR_MAX: usize = 4096;

#[repr(C)]
struct Header {
    magic: u32,
    n_tasks: u32,
    n_workers: u32,
    go: AtomicU32,
    next_task: AtomicU32,
    failed: AtomicU32,
    leader_pid: i32,
    _pad: u32,
    leader_proc: usize,
    plan_off: usize,
    plan_len: usize,
    snap_off: usize,
    results_off: usize,
    slots_off: usize,
}

#[repr(C)]
struct TaskResult {
    state: AtomicU32,
    worker: u32,
    rows: u64,
    bytes: u64,
    raw_bytes: u64,
    sha256: [u8; 64],
}

#[repr(C)]
struct WorkerSlot {
    state: AtomicU32,
    pid: AtomicI32,
    /// 1 + the task it is copying, 0 between tasks.
    current: AtomicU32,
    error_len: u32,
    error: [u8; ERROR_MAX],
}

/// Where each part of the segment starts (8-byte aligned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    plan_off: usize,
    snap_off: usize,
    results_off: usize,
    slots_off: usize,
    size: usize,
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

impl Layout {
    fn new(plan_len: usize, snap_len: usize, n_tasks: usize, n_workers: usize) -> Layout {
        let plan_off = align8(std::mem::size_of::<Header>());
        let snap_off = align8(plan_off + plan_len);
        let results_off = align8(snap_off + snap_len);
        let slots_off = align8(results_off + n_tasks * std::mem::size_of::<TaskResult>());
        let size = slots_off + n_workers * std::mem::size_of::<WorkerSlot>();
        Layout {
            plan_off,
            snap_off,
            results_off,
            slots_off,
            size,
        }
    }
}

/// The shared segment, seen from either side. A result slot is written by the one worker that
/// took the task and read after its DONE; a worker slot is written by its worker only.
#[derive(Clone, Copy)]
struct Shared {
    base: *mut u8,
}

impl Shared {
    fn header(&self) -> &Header {
        unsafe { &*(self.base as *const Header) }
    }
    #[allow(clippy::mut_from_ref)]
    fn result(&self, k: usize) -> &mut TaskResult {
        let h = self.header();
        debug_assert!(k < h.n_tasks as usize);
        unsafe {
            &mut *(self
                .base
                .add(h.results_off + k * std::mem::size_of::<TaskResult>())
                as *mut TaskResult)
        }
    }
    #[allow(clippy::mut_from_ref)]
    fn slot(&self, w: usize) -> &mut WorkerSlot {
        let h = self.header();
        debug_assert!(w < h.n_workers as usize);
        unsafe {
            &mut *(self
                .base
                .add(h.slots_off + w * std::mem::size_of::<WorkerSlot>())
                as *mut WorkerSlot)
        }
    }
    fn plan_bytes(&self) -> &[u8] {
        let h = self.header();
        unsafe { std::slice::from_raw_parts(self.base.add(h.plan_off), h.plan_len) }
    }
    fn snapshot_ptr(&self) -> *mut std::ffi::c_char {
        unsafe { self.base.add(self.header().snap_off) as *mut std::ffi::c_char }
    }
    fn wake_leader(&self) {
        let proc_ = self.header().leader_proc as *mut pg_sys::PGPROC;
        unsafe { pg_sys::SetLatch(&raw mut (*proc_).procLatch) };
    }
}

/// A worker's error as it travels through the segment.
#[derive(Debug, Serialize, Deserialize)]
struct WorkerError {
    sqlstate: String,
    message: String,
    hint: Option<String>,
}

/// Handles of the workers the leader started, for the exit callback: a leader that is
/// terminated (FATAL skips every Rust frame) still stops its workers.
static LAUNCHED: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static EXIT_CALLBACK: std::sync::Once = std::sync::Once::new();

#[pg_guard]
unsafe extern "C-unwind" fn on_leader_exit(_code: i32, _arg: pg_sys::Datum) {
    let handles: Vec<usize> = LAUNCHED
        .lock()
        .map(|mut g| std::mem::take(&mut *g))
        .unwrap_or_default();
    let handles: Vec<*mut pg_sys::BackgroundWorkerHandle> =
        handles.into_iter().map(|h| h as *mut _).collect();
    stop_and_wait(&handles);
}

/// Ask every worker to terminate and wait (a bounded time, never erroring) until they have.
fn stop_and_wait(handles: &[*mut pg_sys::BackgroundWorkerHandle]) {
    for &h in handles {
        unsafe { pg_sys::TerminateBackgroundWorker(h) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && handles.iter().any(|&h| !stopped(h)) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn stopped(h: *mut pg_sys::BackgroundWorkerHandle) -> bool {
    let mut pid: pg_sys::pid_t = 0;
    let status = unsafe { pg_sys::GetBackgroundWorkerPid(h, &mut pid) };
    matches!(
        status,
        pg_sys::BgwHandleStatus::BGWH_STOPPED | pg_sys::BgwHandleStatus::BGWH_POSTMASTER_DIED
    )
}

/// The workers of one backup, from the leader's side. Dropping it (an error, a cancel)
/// terminates the workers and waits for them to exit.
pub struct Parallel {
    shared: Shared,
    seg: *mut pg_sys::dsm_segment,
    workers: Vec<*mut pg_sys::BackgroundWorkerHandle>,
    /// Segment order -> index into the caller's tasks.
    order: Vec<usize>,
}

/// Why the backup runs in the leader after all (said in a NOTICE).
pub enum InProcess {
    /// Fewer than two data files: nothing to share.
    Small,
    Reason(String),
}

/// Start up to `jobs` workers for `tasks` (sizes measured). The active snapshot is the one
/// they copy under; the tables are locked already. The caller's transaction must not have
/// changed anything (the workers would not see it) and the files must be plain local files.
pub fn start(
    tasks: &[CopyTask],
    jobs: u32,
    compression: Compression,
) -> Result<std::result::Result<Parallel, InProcess>> {
    let wanted = (jobs as usize).min(tasks.len());
    if wanted < 2 {
        return Ok(Err(InProcess::Small));
    }
    let order = task::largest_first(tasks);
    let plan = Plan {
        session: session::capture(),
        compression: compression.name(),
        tasks: order.iter().map(|&i| tasks[i].clone()).collect(),
    };
    let plan_json = serde_json::to_vec(&plan).expect("plan serializes");
    let snapshot = unsafe { pg_sys::GetActiveSnapshot() };
    let snap_len = unsafe { pg_sys::EstimateSnapshotSpace(snapshot) };
    let layout = Layout::new(plan_json.len(), snap_len, tasks.len(), wanted);
    let seg = unsafe { pg_sys::dsm_create(layout.size, 0) };
    let base = unsafe { pg_sys::dsm_segment_address(seg) as *mut u8 };
    unsafe {
        std::ptr::write_bytes(base, 0, layout.size);
        std::ptr::copy_nonoverlapping(
            plan_json.as_ptr(),
            base.add(layout.plan_off),
            plan_json.len(),
        );
        pg_sys::SerializeSnapshot(snapshot, base.add(layout.snap_off) as *mut std::ffi::c_char);
        base.cast::<Header>().write(Header {
            magic: MAGIC,
            n_tasks: tasks.len() as u32,
            n_workers: wanted as u32,
            go: AtomicU32::new(WAIT),
            next_task: AtomicU32::new(0),
            failed: AtomicU32::new(0),
            leader_pid: pg_sys::MyProcPid,
            _pad: 0,
            leader_proc: pg_sys::MyProc as usize,
            plan_off: layout.plan_off,
            plan_len: plan_json.len(),
            snap_off: layout.snap_off,
            results_off: layout.results_off,
            slots_off: layout.slots_off,
        });
        pg_sys::BecomeLockGroupLeader();
    }
    let shared = Shared { base };
    EXIT_CALLBACK.call_once(|| unsafe {
        pg_sys::before_shmem_exit(Some(on_leader_exit), pg_sys::Datum::from(0))
    });
    let mut p = Parallel {
        shared,
        seg,
        workers: Vec::new(),
        order,
    };
    let handle = unsafe { pg_sys::dsm_segment_handle(seg) };
    for w in 0..wanted {
        match launch(handle, w) {
            Some(h) => {
                p.workers.push(h);
                if let Ok(mut g) = LAUNCHED.lock() {
                    g.push(h as usize);
                }
            }
            None => break,
        }
    }
    let max = session::current_setting("max_worker_processes");
    if p.workers.len() < wanted {
        // The worker slots ran out: give one back, so pg_backup's history writer (and
        // whoever else needs a worker) still finds one while the backup runs.
        if let Some(h) = p.workers.pop() {
            p.release(h);
        }
        if p.workers.len() < 2 {
            let n = p.workers.len();
            drop(p);
            return Ok(Err(InProcess::Reason(format!(
                "only {n} background worker slot(s) of max_worker_processes = {max} were free"
            ))));
        }
        pgrx::notice!(
            "pg_backup: only {} of {wanted} parallel workers could start (max_worker_processes = {max}); the backup goes on with {}",
            p.workers.len(),
            p.workers.len()
        );
    }
    shared.header().go.store(GO, Ordering::Release);
    Ok(Ok(p))
}

/// Register worker `w`; its handle lives in TopMemoryContext (the exit callback uses it).
fn launch(seg: pg_sys::dsm_handle, w: usize) -> Option<*mut pg_sys::BackgroundWorkerHandle> {
    let builder = BackgroundWorkerBuilder::new(&format!("pg_backup copy worker {w}"))
        .set_type("pg_backup copy worker")
        .set_library("pg_backup")
        .set_function("pg_backup_copy_worker_main")
        .set_argument(Some(pg_sys::Datum::from(seg as usize)))
        .set_extra(&w.to_string())
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(None)
        .enable_spi_access()
        .set_notify_pid(unsafe { pg_sys::MyProcPid });
    let mut bgw = pg_sys::BackgroundWorker::from(&builder);
    let mut handle: *mut pg_sys::BackgroundWorkerHandle = std::ptr::null_mut();
    let ok = unsafe {
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let ok = pg_sys::RegisterDynamicBackgroundWorker(&mut bgw, &mut handle);
        pg_sys::MemoryContextSwitchTo(old);
        ok
    };
    ok.then_some(handle)
}

impl Parallel {
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Stop one worker before GO and forget it.
    fn release(&mut self, h: *mut pg_sys::BackgroundWorkerHandle) {
        stop_and_wait(&[h]);
        forget(&[h]);
    }

    /// Wait for every task. `on_done` sees each finished task (in completion order),
    /// `on_tick` how many are done and one table being copied, a few times a second.
    /// Returns the row count and file of each of the caller's tasks, by index.
    pub fn finish(
        mut self,
        tasks: &[CopyTask],
        mut on_done: impl FnMut(&CopyTask, u64, &FileStats),
        mut on_tick: impl FnMut(usize, Option<&str>),
    ) -> Result<Vec<(u64, FileStats)>> {
        let n = tasks.len();
        let mut results: Vec<Option<(u64, FileStats)>> = vec![None; n];
        let mut done = 0usize;
        loop {
            // Which workers had exited is looked at before their results: whatever a worker
            // wrote before it exited is seen below.
            let exited: Vec<bool> = self.workers.iter().map(|&h| stopped(h)).collect();
            for k in 0..n {
                let i = self.order[k];
                if results[i].is_some() {
                    continue;
                }
                let r = self.shared.result(k);
                if r.state.load(Ordering::Acquire) != DONE {
                    continue;
                }
                let stats = FileStats {
                    raw_bytes: r.raw_bytes,
                    bytes: r.bytes,
                    sha256: String::from_utf8_lossy(&r.sha256).into_owned(),
                };
                on_done(&tasks[i], r.rows, &stats);
                results[i] = Some((r.rows, stats));
                done += 1;
            }
            if done == n {
                // Every file is written; the workers are leaving.
                if exited.iter().all(|&e| e) {
                    break;
                }
            } else {
                self.check_workers(tasks, &exited)?;
            }
            let current = (0..self.workers.len())
                .map(|w| self.shared.slot(w).current.load(Ordering::Relaxed))
                .find(|&c| c > 0)
                .map(|c| {
                    let t = &tasks[self.order[c as usize - 1]];
                    format!("{}.{}", t.schema, t.table)
                });
            on_tick(done, current.as_deref());
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
            pgrx::check_for_interrupts!();
        }
        let workers = std::mem::take(&mut self.workers);
        forget(&workers);
        unsafe { pg_sys::dsm_detach(self.seg) };
        self.seg = std::ptr::null_mut();
        Ok(results
            .into_iter()
            .map(|r| r.expect("every task is done"))
            .collect())
    }

    /// A worker's error, a worker gone in the middle of a table, or every worker gone with
    /// tables left, fails the backup.
    fn check_workers(&self, tasks: &[CopyTask], exited: &[bool]) -> Result<()> {
        for (w, &gone_already) in exited.iter().enumerate() {
            let slot = self.shared.slot(w);
            match slot.state.load(Ordering::Acquire) {
                W_FAILED => {
                    let len = (slot.error_len as usize).min(ERROR_MAX);
                    let e: WorkerError =
                        serde_json::from_slice(&slot.error[..len]).unwrap_or(WorkerError {
                            sqlstate: "38000".into(),
                            message: "a parallel worker failed".into(),
                            hint: None,
                        });
                    return Err(BackupError::from_worker(&e.sqlstate, e.message, e.hint));
                }
                W_FINISHED => {}
                _ if gone_already => {
                    let c = slot.current.load(Ordering::Acquire) as usize;
                    if c > 0 && self.shared.result(c - 1).state.load(Ordering::Acquire) != DONE {
                        let t = &tasks[self.order[c - 1]];
                        return Err(gone(format!(
                            "pg_backup copy worker {w} exited while copying {}.{} (terminated or crashed)",
                            t.schema, t.table
                        )));
                    }
                }
                _ => {}
            }
        }
        if exited.iter().all(|&e| e) {
            return Err(gone(
                "every pg_backup copy worker exited before the tables were copied (terminated or crashed)".into(),
            ));
        }
        Ok(())
    }
}

fn gone(message: String) -> BackupError {
    BackupError::from_worker(
        "57P01",
        message,
        Some("See the server log. jobs => 1 takes the backup in this session.".into()),
    )
}

/// Free handles of workers that have stopped and drop them from the exit list.
fn forget(handles: &[*mut pg_sys::BackgroundWorkerHandle]) {
    if let Ok(mut g) = LAUNCHED.lock() {
        g.retain(|h| !handles.iter().any(|x| *x as usize == *h));
    }
    for &h in handles {
        unsafe { pg_sys::pfree(h.cast()) };
    }
}

impl Drop for Parallel {
    fn drop(&mut self) {
        if self.seg.is_null() {
            return;
        }
        // An error or a cancel in the leader (or a worker's error): no one takes another
        // task, and every worker is terminated before the caller removes the archive folder.
        self.shared.header().go.store(STOP, Ordering::Release);
        let workers = std::mem::take(&mut self.workers);
        stop_and_wait(&workers);
        forget(&workers);
        // While an ERROR unwinds, the (sub)transaction's abort unmaps the segment; otherwise
        // it is unmapped here (a mapping left to commit is reported as a leak).
        if !std::thread::panicking() {
            unsafe { pg_sys::dsm_detach(self.seg) };
        }
        self.seg = std::ptr::null_mut();
    }
}

// ---------------------------------------------------------------------------------------------
// The worker.
// ---------------------------------------------------------------------------------------------

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_backup_copy_worker_main(arg: pg_sys::Datum) {
    // TerminateBackgroundWorker must stop a COPY at its next row, as it would a backend's.
    unsafe {
        pg_sys::pqsignal(libc::SIGTERM, Some(crate::signals::die_on_sigterm));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    let w: usize = BackgroundWorker::get_extra().parse().unwrap_or(usize::MAX);
    let seg = unsafe { pg_sys::dsm_attach(arg.value() as pg_sys::dsm_handle) };
    if seg.is_null() {
        return; // the leader is gone
    }
    unsafe { pg_sys::dsm_pin_mapping(seg) };
    let shared = Shared {
        base: unsafe { pg_sys::dsm_segment_address(seg) as *mut u8 },
    };
    let h = shared.header();
    if h.magic != MAGIC || w >= h.n_workers as usize {
        return;
    }
    let slot = shared.slot(w);
    slot.pid
        .store(unsafe { pg_sys::MyProcPid }, Ordering::Relaxed);
    slot.state.store(W_RUNNING, Ordering::Release);
    // Before any lock: share the leader's locks (see the module comment).
    let leader = h.leader_proc as *mut pg_sys::PGPROC;
    if !unsafe { pg_sys::BecomeLockGroupMember(leader, h.leader_pid) } {
        return;
    }
    let outcome = match serde_json::from_slice::<Plan>(shared.plan_bytes()) {
        Ok(plan) => work(shared, w, &plan),
        Err(e) => Err(WorkerError {
            sqlstate: "XX000".into(),
            message: format!("pg_backup copy worker: unreadable plan: {e}"),
            hint: None,
        }),
    };
    match outcome {
        Ok(()) => slot.state.store(W_FINISHED, Ordering::Release),
        Err(e) => {
            let mut bytes = serde_json::to_vec(&e).expect("error serializes");
            if bytes.len() > ERROR_MAX {
                let short = WorkerError {
                    message: e.message.chars().take(ERROR_MAX / 2).collect(),
                    hint: None,
                    ..e
                };
                bytes = serde_json::to_vec(&short).expect("error serializes");
            }
            let len = bytes.len().min(ERROR_MAX);
            slot.error[..len].copy_from_slice(&bytes[..len]);
            slot.error_len = len as u32;
            h.failed.store(1, Ordering::Release);
            slot.state.store(W_FAILED, Ordering::Release);
        }
    }
    shared.wake_leader();
}

fn work(shared: Shared, w: usize, plan: &Plan) -> std::result::Result<(), WorkerError> {
    let h = shared.header();
    plan.session.connect();
    // Wait for the leader's GO (it may still send this worker back unused).
    loop {
        match h.go.load(Ordering::Acquire) {
            GO => break,
            STOP => return Ok(()),
            _ => unsafe {
                pg_sys::WaitLatch(
                    pg_sys::MyLatch,
                    (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH)
                        as i32,
                    10,
                    pg_sys::PG_WAIT_EXTENSION,
                );
                pg_sys::ResetLatch(pg_sys::MyLatch);
                pgrx::check_for_interrupts!();
            },
        }
    }
    let compression = Compression::from_name(&plan.compression).map_err(|e| WorkerError {
        sqlstate: e.sqlstate().into(),
        message: e.to_string(),
        hint: None,
    })?;
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        // The leader's snapshot as this transaction's snapshot (SET TRANSACTION SNAPSHOT).
        pg_sys::XactIsoLevel = pg_sys::XACT_REPEATABLE_READ as i32;
        let snapshot = pg_sys::RestoreSnapshot(shared.snapshot_ptr());
        pg_sys::RestoreTransactionSnapshot(snapshot, h.leader_proc as *mut std::ffi::c_void);
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    plan.session.become_user();
    // Rows are written as the leader writes them (DateStyle ISO, ...): the leader pinned these
    // before its settings were captured; pinned again here in case a capture missed one.
    crate::security::pin_literal_settings();
    let slot = shared.slot(w);
    let outcome = subtransaction::run_result(|| -> Result<()> {
        loop {
            if h.go.load(Ordering::Acquire) != GO || h.failed.load(Ordering::Acquire) != 0 {
                return Ok(());
            }
            let k = h.next_task.fetch_add(1, Ordering::AcqRel) as usize;
            if k >= plan.tasks.len() {
                return Ok(());
            }
            slot.current.store(k as u32 + 1, Ordering::Release);
            pgrx::check_for_interrupts!();
            let (rows, stats) = plan.tasks[k].run(None, compression)?;
            let r = shared.result(k);
            r.worker = w as u32;
            r.rows = rows;
            r.bytes = stats.bytes;
            r.raw_bytes = stats.raw_bytes;
            let hex = stats.sha256.as_bytes();
            r.sha256[..hex.len().min(64)].copy_from_slice(&hex[..hex.len().min(64)]);
            r.state.store(DONE, Ordering::Release);
            slot.current.store(0, Ordering::Release);
            shared.wake_leader();
        }
    });
    unsafe {
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    }
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(WorkerError {
            sqlstate: e.sqlstate().into(),
            message: e.to_string(),
            hint: e.hint(),
        }),
        Err(caught) => Err(caught_error(&caught)),
    }
}

fn caught_error(e: &CaughtError) -> WorkerError {
    let r = match e {
        CaughtError::PostgresError(r)
        | CaughtError::ErrorReport(r)
        | CaughtError::RustPanic { ereport: r, .. } => r,
    };
    let code = r.sql_error_code() as i32;
    let sqlstate = unsafe { CStr::from_ptr(pg_sys::unpack_sql_state(code)) }
        .to_string_lossy()
        .into_owned();
    WorkerError {
        sqlstate,
        message: crate::error::report_text(r.message()),
        hint: r.hint().map(crate::error::report_text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_keeps_every_part_aligned_and_apart() {
        let l = Layout::new(1001, 77, 10_000, 4);
        for off in [l.plan_off, l.snap_off, l.results_off, l.slots_off] {
            assert_eq!(off % 8, 0);
        }
        assert!(l.plan_off >= std::mem::size_of::<Header>());
        assert!(l.snap_off >= l.plan_off + 1001);
        assert!(l.results_off >= l.snap_off + 77);
        assert!(l.slots_off >= l.results_off + 10_000 * std::mem::size_of::<TaskResult>());
        assert_eq!(l.size, l.slots_off + 4 * std::mem::size_of::<WorkerSlot>());
    }
}
