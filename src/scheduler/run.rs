//! One scheduled run: a dynamic background worker connects to the schedule's database, takes
//! the backup with the schedule's options, applies the schedule's retention after a success,
//! and reports back through dynamic shared memory. The scheduler never blocks on it, so a slow
//! or failing backup never holds up other schedules.

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime,
    DynamicBackgroundWorker,
};
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backup::create;
use crate::backup::manage;
use crate::backup::options::{CreateArgs, CreateOptions, Defaults};
use crate::error::{BackupError, Result};
use crate::{security, subtransaction};

/// What the worker is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRequest {
    pub schedule: String,
    pub database: String,
    pub options: serde_json::Value,
    pub keep_last: Option<i32>,
    pub keep_days: Option<i32>,
    /// A restore drill of each backup that succeeds (drill/), with these checks, with the
    /// rights of the role that set the schedule.
    #[serde(default)]
    pub drill: bool,
    #[serde(default)]
    pub drill_checks: Option<Vec<String>>,
    #[serde(default)]
    pub drill_role: Option<String>,
    /// schedule(timeout => ...), in seconds: the run is cancelled past it.
    #[serde(default)]
    pub timeout_secs: Option<f64>,
    /// Which try of its fire time this run is: 1 the first, 2 the first retry, ...
    #[serde(default = "first_attempt")]
    pub attempt: i32,
}

fn first_attempt() -> i32 {
    1
}

/// What it did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// completed, failed or skipped (already running).
    pub status: String,
    pub backup_id: Option<String>,
    pub error: Option<String>,
    pub tables: i64,
    pub rows: i64,
    pub bytes: i64,
    pub duration_secs: f64,
    pub path: Option<String>,
    pub pruned: Vec<String>,
}

/// How long past its timeout a run may go before the scheduler terminates it.
pub const TIMEOUT_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

const HEADER: usize = 16;
const INPUT_MAX: usize = 16 << 10;
const OUTPUT_MAX: usize = 16 << 10;
const SEGMENT: usize = HEADER + INPUT_MAX + OUTPUT_MAX;

/// A run in progress, owned by whoever launched it.
pub struct RunHandle {
    pub schedule: String,
    /// When it was launched, and its timeout: the scheduler ends a run that overstays its
    /// timeout by [`TIMEOUT_GRACE`] (the worker cancels itself at the timeout).
    pub started: std::time::Instant,
    pub timeout: Option<std::time::Duration>,
    worker: DynamicBackgroundWorker,
    seg: *mut pg_sys::dsm_segment,
}

fn region(seg: *mut pg_sys::dsm_segment) -> *mut u8 {
    // SAFETY: `seg` is a segment this process created or attached and has not detached (every
    // caller holds it: a RunHandle, or the run worker after dsm_attach); reading its address
    // touches no shared memory.
    unsafe { pg_sys::dsm_segment_address(seg) as *mut u8 }
}

/// Start a run worker for `req`. The segment and the worker handle live in TopMemoryContext
/// and the session's DSM mapping, so the scheduler can keep them across transactions.
///
/// `across_transactions`: the scheduler keeps the segment mapped from one tick to the next;
/// run_schedule() waits in one transaction, so an error (a cancel) unmaps it with the rest.
pub fn launch(req: &RunRequest, across_transactions: bool) -> Result<RunHandle> {
    let input = serde_json::to_vec(req).expect("request serializes");
    if input.len() > INPUT_MAX {
        return Err(BackupError::invalid("schedule options are too large"));
    }
    // SAFETY: dsm_create returns a mapped segment of SEGMENT bytes (it raises rather than
    // return NULL without DSM_CREATE_NULL_IF_MAXSEGMENTS); the header is zeroed and the input,
    // at most INPUT_MAX bytes (checked above), is copied within it, before the worker that
    // reads it exists. The builder's allocations go to TopMemoryContext so the handle outlives
    // this transaction, and the previous context is restored; a failed launch detaches.
    unsafe {
        let seg = pg_sys::dsm_create(SEGMENT, 0);
        if across_transactions {
            pg_sys::dsm_pin_mapping(seg);
        }
        let base = region(seg);
        std::ptr::write_bytes(base, 0, HEADER);
        (base.add(4) as *mut u32).write(input.len() as u32);
        std::ptr::copy_nonoverlapping(input.as_ptr(), base.add(HEADER), input.len());
        let handle = pg_sys::dsm_segment_handle(seg);
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let loaded = BackgroundWorkerBuilder::new(&format!("pg_backup run {}", req.schedule))
            .set_type("pg_backup run")
            .set_library("pg_backup")
            .set_function("pg_backup_run_main")
            .set_argument(Some(pg_sys::Datum::from(handle as usize)))
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(None)
            .enable_spi_access()
            .set_notify_pid(pg_sys::MyProcPid)
            .load_dynamic();
        pg_sys::MemoryContextSwitchTo(old);
        match loaded {
            Ok(worker) => Ok(RunHandle {
                schedule: req.schedule.clone(),
                started: std::time::Instant::now(),
                timeout: req
                    .timeout_secs
                    .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok()),
                worker,
                seg,
            }),
            Err(_) => {
                pg_sys::dsm_detach(seg);
                Err(BackupError::denied(
                    "no background worker slot is free for the scheduled backup",
                )
                .with_hint("Raise max_worker_processes (restart needed)."))
            }
        }
    }
}

impl RunHandle {
    /// The result once the worker has exited (None while it runs).
    pub fn finished(&self) -> Option<RunResult> {
        match self.worker.pid() {
            Err(BackgroundWorkerStatus::Stopped) => Some(self.read()),
            Err(BackgroundWorkerStatus::PostmasterDied) => Some(RunResult {
                status: "failed".into(),
                error: Some("postmaster died".into()),
                ..Default::default()
            }),
            _ => None,
        }
    }

    /// Block until the worker exits (for run_schedule()).
    pub fn wait(self) -> RunResult {
        let seg = self.seg;
        let _ = self.worker.wait_for_shutdown();
        let r = read_result(seg);
        // SAFETY: the segment this handle attached, detached once: `self` is consumed.
        unsafe { pg_sys::dsm_detach(seg) };
        r
    }

    fn read(&self) -> RunResult {
        read_result(self.seg)
    }

    /// Whether the run has gone on past its timeout and the grace: its worker did not cancel
    /// itself (an uninterruptible wait); the scheduler then ends it.
    pub fn overdue(&self) -> bool {
        self.timeout
            .is_some_and(|t| self.started.elapsed() > t + TIMEOUT_GRACE)
    }

    /// End the run's worker as pg_terminate_backend would (its partial archive is removed
    /// and its row settled failed by its exit callback and the sweep).
    pub fn terminate(&self) {
        if let Ok(pid) = self.worker.pid() {
            // SAFETY: a plain kill(2) of the pid PostgreSQL reports for our own worker, which
            // ends on SIGTERM (die_on_sigterm).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
    }

    pub fn release(self) {
        // SAFETY: as in `wait`: detached once, `self` is consumed.
        unsafe { pg_sys::dsm_detach(self.seg) };
    }
}

fn read_result(seg: *mut pg_sys::dsm_segment) -> RunResult {
    // SAFETY: `seg` is attached (see `region`) and SEGMENT bytes long; the length at offset 8
    // is read volatile (the worker wrote it) and bounded by OUTPUT_MAX before the slice of
    // the output area is taken, so the slice stays inside the segment. Called once the worker
    // has exited or for a peek whose JSON is checked by the parser.
    unsafe {
        let base = region(seg);
        let len = (base.add(8) as *const u32).read_volatile() as usize;
        if len == 0 {
            return RunResult {
                status: "failed".into(),
                error: Some(
                    "the run worker exited without a result (terminated or crashed)".into(),
                ),
                ..Default::default()
            };
        }
        let bytes = std::slice::from_raw_parts(base.add(HEADER + INPUT_MAX), len.min(OUTPUT_MAX));
        serde_json::from_slice(bytes).unwrap_or_else(|e| RunResult {
            status: "failed".into(),
            error: Some(format!("unreadable run result: {e}")),
            ..Default::default()
        })
    }
}

fn write_result(seg: *mut pg_sys::dsm_segment, r: &RunResult) {
    let mut out = serde_json::to_vec(r).expect("result serializes");
    if out.len() > OUTPUT_MAX {
        let short = RunResult {
            error: r.error.as_ref().map(|e| e.chars().take(2000).collect()),
            pruned: vec![],
            ..r.clone()
        };
        out = serde_json::to_vec(&short).expect("result serializes");
    }
    // SAFETY: the run worker's attached segment of SEGMENT bytes; at most OUTPUT_MAX bytes
    // are copied into the output area (HEADER + INPUT_MAX ..), then the length is published.
    unsafe {
        let base = region(seg);
        std::ptr::copy_nonoverlapping(
            out.as_ptr(),
            base.add(HEADER + INPUT_MAX),
            out.len().min(OUTPUT_MAX),
        );
        (base.add(8) as *mut u32).write_volatile(out.len().min(OUTPUT_MAX) as u32);
    }
}

/// A run cancelled by its timeout. The backup's row already says so (failed, "canceling
/// statement due to statement timeout (SQLSTATE 57014)", its archive removed); the result
/// names the schedule's timeout.
fn timeout_result(req: &RunRequest, backup_id: &str, cause: &str) -> RunResult {
    RunResult {
        status: "failed".into(),
        backup_id: Some(backup_id.to_string()),
        error: Some(format!(
            "timeout: the backup ran longer than the schedule's timeout of {}s and was cancelled: {cause}",
            req.timeout_secs.unwrap_or_default()
        )),
        ..Default::default()
    }
}

fn failed(e: &BackupError) -> RunResult {
    RunResult {
        status: "failed".into(),
        error: Some(format!("{e} (SQLSTATE {})", e.sqlstate())),
        ..Default::default()
    }
}

/// The run itself, in transactions of the worker's own: the backup's `running` row is
/// committed before the backup starts, its end in the next transaction, the retention in a
/// third. History is written in them directly (no separate writer; nothing else holds locks).
#[allow(clippy::result_large_err)]
fn execute(req: &RunRequest) -> RunResult {
    let started = std::time::Instant::now();
    let deadline = req
        .timeout_secs
        .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
        .map(|t| started + t);
    // Never the same schedule twice at once (the scheduler's own bookkeeping aside, a manual
    // run_schedule() may race it): a session advisory lock per schedule name, held until the
    // worker exits.
    let prepared = BackgroundWorker::transaction(std::panic::AssertUnwindSafe(
        || -> Result<Option<(CreateOptions, create::Run)>> {
            let got = Spi::get_one_with_args::<bool>(
                "SELECT pg_try_advisory_lock(hashtext('pg_backup schedule ' || $1))",
                &[req.schedule.clone().into()],
            )?
            .unwrap_or(false);
            if !got {
                return Ok(None);
            }
            crate::catalog::sweep::sweep()?;
            let args: CreateArgs = serde_json::from_value(req.options.clone())
                .map_err(|e| BackupError::invalid(format!("schedule options do not parse: {e}")))?;
            let args = CreateArgs {
                label: args.label.clone().or_else(|| Some(req.schedule.clone())),
                ..args
            };
            let opts = CreateOptions::parse(args, &Defaults::from_settings())?;
            let caller = security::enter_as(SCHEDULER_ROLE)?;
            let run = create::begin(&opts, &caller, Some(&req.schedule))?;
            Spi::run_with_args(
                "UPDATE backup.backups SET attempt = $2 WHERE id = $1",
                &[run.id.clone().into(), req.attempt.into()],
            )?;
            Ok(Some((opts, run)))
        },
    ));
    let (opts, run) = match prepared {
        Ok(Some(p)) => p,
        Ok(None) => {
            return RunResult {
                status: "skipped".into(),
                error: Some("the previous run is still going".into()),
                ..Default::default()
            }
        }
        Err(e) => return failed(&e),
    };
    // The timeout covers the backup itself: from here the process's statement timeout
    // cancels it (a lock wait included) at the deadline, and create() records it failed and
    // removes the partial archive like any other error.
    let backup_id = run.id.clone();
    if let Some(d) = deadline {
        crate::server_api::arm_statement_timeout(
            d.saturating_duration_since(std::time::Instant::now()),
        );
    }
    // create() catches what goes wrong while taking the backup and records it as failed.
    let taken = BackgroundWorker::transaction(std::panic::AssertUnwindSafe(|| {
        let caller = match security::enter_as(SCHEDULER_ROLE) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        create::take_and_finish(run, &opts, &caller)
    }));
    if deadline.is_some() {
        crate::server_api::disarm_statement_timeout();
        // The backup committed: a timeout that fired during its commit (after the last
        // check for interrupts) must not cancel the retention and the drill that follow.
        if matches!(taken, Ok(Ok(_))) {
            crate::server_api::forget_fired_statement_timeout();
        }
    }
    let timed_out = deadline.is_some_and(|d| std::time::Instant::now() >= d);
    let s = match taken {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if timed_out => return timeout_result(req, &backup_id, &e.to_string()),
        Ok(Err(e)) => {
            return RunResult {
                backup_id: Some(backup_id),
                ..failed(&e)
            }
        }
        Err(caught) if timed_out => {
            return timeout_result(req, &backup_id, &subtransaction::message(&caught))
        }
        Err(caught) => {
            return RunResult {
                status: "failed".into(),
                backup_id: Some(backup_id),
                error: Some(subtransaction::message(&caught)),
                ..Default::default()
            }
        }
    };
    // Retention only after a success, and only among this schedule's backups.
    let pruned = if req.keep_last.is_some() || req.keep_days.is_some() {
        let pruned = BackgroundWorker::transaction(std::panic::AssertUnwindSafe(|| {
            subtransaction::run(|| {
                manage::prune(req.keep_last, req.keep_days, false, Some(&req.schedule))
            })
        }));
        match pruned {
            Ok(Ok(ids)) => ids,
            Ok(Err(e)) => {
                pgrx::log!(
                    "pg_backup: schedule \"{}\": retention failed: {e}",
                    req.schedule
                );
                Vec::new()
            }
            Err(caught) => {
                pgrx::log!(
                    "pg_backup: schedule \"{}\": retention failed: {}",
                    req.schedule,
                    subtransaction::message(&caught)
                );
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    if req.drill {
        // Started here, run by a drill worker of its own: the run ends now, the drill's row
        // and events say how the drill went.
        crate::drill::after_scheduled_backup(
            &req.schedule,
            &s.backup_id,
            req.drill_checks.as_deref().unwrap_or_default(),
            req.drill_role.as_deref(),
        );
    }
    RunResult {
        status: "completed".into(),
        backup_id: Some(s.backup_id),
        error: None,
        tables: s.tables,
        rows: s.rows,
        bytes: s.bytes,
        duration_secs: s.duration.as_secs_f64(),
        path: Some(s.path),
        pruned,
    }
}

/// Who scheduled backups are recorded as created by.
const SCHEDULER_ROLE: &str = "pg_backup scheduler";

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_backup_run_main(arg: pg_sys::Datum) {
    // SIGTERM (fast shutdown, pg_terminate_backend) must stop a running COPY at once: use the
    // backend's own handler, which ends the process at the next interrupt check.
    crate::signals::die_on_sigterm_then_unblock();
    // SIGINT (pg_cancel_backend, and the statement timeout that enforces timeout =>) cancels
    // the backup as in a client backend.
    // SAFETY: at the start of the worker's main function, on its only thread; the handler
    // only sets interrupt flags and the latch.
    unsafe {
        crate::server_api::set_signal_handler(libc::SIGINT, Some(crate::signals::cancel_on_sigint))
    };
    let handle = arg.value() as pg_sys::dsm_handle;
    // SAFETY: `handle` is the one `launch` passed as this worker's argument; dsm_attach
    // returns NULL (checked below) if the segment is gone.
    let seg = unsafe { pg_sys::dsm_attach(handle) };
    if seg.is_null() {
        pgrx::log!("pg_backup run: the scheduler's shared memory is gone");
        return;
    }
    // SAFETY: `seg` was attached just above (not NULL); the mapping then lasts the worker's
    // life, across its transactions.
    unsafe { pg_sys::dsm_pin_mapping(seg) };
    // SAFETY: the segment `launch` filled before starting this worker: the input length at
    // offset 4, bounded by INPUT_MAX, and the input area within the segment.
    let req: Option<RunRequest> = unsafe {
        let base = region(seg);
        let len = (base.add(4) as *const u32).read() as usize;
        serde_json::from_slice(std::slice::from_raw_parts(
            base.add(HEADER),
            len.min(INPUT_MAX),
        ))
        .ok()
    };
    let Some(req) = req else {
        write_result(
            seg,
            &RunResult {
                status: "failed".into(),
                error: Some("bad run request".into()),
                ..Default::default()
            },
        );
        return;
    };
    BackgroundWorker::connect_worker_to_spi(Some(&req.database), None);
    crate::catalog::autonomous::set_local_mode();
    // As pg_dump's session: no server, database or role default timeout (lock_timeout, from 17
    // transaction_timeout, which ends the worker FATAL) ends a scheduled backup half-way.
    crate::session::disable_dump_timeouts();
    // A scheduled backup runs even where sessions are read-only by default (its history must
    // be written).
    // SAFETY: NUL-terminated static names; the worker is connected (above) and on its only
    // thread; a superuser-context override of a user-settable setting cannot fail.
    unsafe {
        pg_sys::SetConfigOption(
            c"default_transaction_read_only".as_ptr(),
            c"off".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
    // An ERROR that escapes ends this worker; the scheduler then records "exited without a
    // result" and the sweep settles the backup's row.
    let result = execute(&req);
    if result.status == "failed" {
        pgrx::log!(
            "pg_backup: scheduled backup \"{}\" failed: {}",
            req.schedule,
            result.error.clone().unwrap_or_default()
        );
    }
    write_result(seg, &result);
}
