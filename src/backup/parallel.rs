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
//! The leader locks every table first (as always), hands out the tables largest first, one to
//! each worker that is free (`workers::Pool`: the segment, the queues, launch and cleanup),
//! reports progress, and waits. An error or cancel in the leader terminates the
//! workers (and waits for them, so the archive folder can be removed); a worker's error stops
//! the others and fails the backup with the worker's SQLSTATE and message.

use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};

use super::task::{self, CopyTask};
use crate::archive::compression::Compression;
use crate::archive::writer::FileStats;
use crate::error::{BackupError, Result};
use crate::session::{self, Session};
use crate::subtransaction;
use crate::workers::{Event, Failure, Kind, Life, Pool, Worker};

/// What every worker needs to know.
#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    /// The leader's database, current user and security context (inside create(), SECURITY
    /// DEFINER: the extension owner) and output settings: a worker has exactly its rights and
    /// writes exactly the bytes it would.
    session: Session,
    compression: String,
    /// In the order workers take them (largest first); a task is an index into these.
    tasks: Vec<CopyTask>,
    /// The leader's snapshot (SerializeSnapshot's bytes), and the leader that holds it.
    snapshot: Vec<u8>,
    leader_pid: i32,
    leader_proc: usize,
}

/// A table copied: what its data file holds.
#[derive(Debug, Serialize, Deserialize)]
struct Copied {
    rows: u64,
    bytes: u64,
    raw_bytes: u64,
    sha256: String,
}

/// Leader -> worker: copy `plan.tasks[k]`; worker -> leader: `Copied`.
const COPY_WORKER: Kind<Plan, usize, Copied> = Kind::new(
    "pg_backup copy worker",
    true,
    "pg_backup_copy_worker_main",
    0x7062_6a31,
    4 << 10,
    16 << 10,
);

/// The workers of one backup, from the leader's side. Dropping it (an error, a cancel)
/// terminates the workers and waits for them to exit.
pub struct Parallel {
    pool: Pool<usize, Copied>,
    /// Plan order -> index into the caller's tasks.
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
    // SAFETY: create() runs with an active snapshot; SerializeSnapshot writes exactly
    // EstimateSnapshotSpace bytes, the length of the buffer it is given.
    let snapshot = unsafe {
        let active = pg_sys::GetActiveSnapshot();
        let mut bytes = vec![0u8; pg_sys::EstimateSnapshotSpace(active)];
        pg_sys::SerializeSnapshot(active, bytes.as_mut_ptr().cast());
        bytes
    };
    let plan = Plan {
        session: session::capture(),
        compression: compression.name(),
        tasks: order.iter().map(|&i| tasks[i].clone()).collect(),
        snapshot,
        // SAFETY: reading this backend's own pid and PGPROC.
        leader_pid: unsafe { pg_sys::MyProcPid },
        // SAFETY: as above.
        leader_proc: unsafe { pg_sys::MyProc } as usize,
    };
    // SAFETY: this backend leads a lock group from now on (as a parallel query's leader
    // does); its workers join it before they take any lock.
    unsafe { pg_sys::BecomeLockGroupLeader() };
    let mut pool = Pool::start(&COPY_WORKER, &plan, wanted, Life::Transaction);
    let max = session::current_setting("max_worker_processes");
    if pool.len() < wanted {
        // The worker slots ran out: give one back, so pg_backup's history writer (and
        // whoever else needs a worker) still finds one while the backup runs.
        pool.give_back_one();
        if pool.len() < 2 {
            let n = pool.len();
            drop(pool);
            return Ok(Err(InProcess::Reason(format!(
                "only {n} background worker slot(s) of max_worker_processes = {max} were free"
            ))));
        }
        pgrx::notice!(
            "pg_backup: only {} of {wanted} parallel workers could start (max_worker_processes = {max}); the backup goes on with {}",
            pool.len(),
            pool.len()
        );
    }
    Ok(Ok(Parallel { pool, order }))
}

impl Parallel {
    pub fn workers(&self) -> usize {
        self.pool.len()
    }

    /// Hand out the tasks (largest first) and wait for every one. `on_done` sees each
    /// finished task (in completion order), `on_tick` how many are done and one table being
    /// copied, a few times a second. Returns the row count and file of each of the caller's
    /// tasks, by index.
    pub fn finish(
        mut self,
        tasks: &[CopyTask],
        mut on_done: impl FnMut(&CopyTask, u64, &FileStats),
        mut on_tick: impl FnMut(usize, Option<&str>),
    ) -> Result<Vec<(u64, FileStats)>> {
        let n = tasks.len();
        let mut results: Vec<Option<(u64, FileStats)>> = vec![None; n];
        let mut done = 0usize;
        // The next task to hand out (plan order).
        let mut next = 0usize;
        while done < n {
            while next < n {
                let Some(w) = self.pool.idle() else { break };
                // A worker that exited between tasks is not sent any: the others go on.
                if self.pool.send(w, next, &next).is_ok() {
                    next += 1;
                }
            }
            match self.pool.wait() {
                Event::Report {
                    task: Some(k),
                    report,
                    ..
                } => {
                    let i = self.order[k];
                    let stats = FileStats {
                        raw_bytes: report.raw_bytes,
                        bytes: report.bytes,
                        sha256: report.sha256,
                    };
                    on_done(&tasks[i], report.rows, &stats);
                    results[i] = Some((report.rows, stats));
                    done += 1;
                }
                Event::Report { task: None, .. } | Event::Gone { task: None, .. } => {}
                Event::Failed { failure, .. } => return Err(failure.into_error()),
                Event::Gone {
                    worker,
                    task: Some(k),
                } => {
                    let t = &tasks[self.order[k]];
                    return Err(gone(format!(
                        "pg_backup copy worker {worker} exited while copying {}.{} (terminated or crashed)",
                        t.schema, t.table
                    )));
                }
                Event::Interrupted => {
                    pgrx::check_for_interrupts!();
                }
                Event::Quiet => {}
            }
            if done < n && self.pool.live() == 0 {
                return Err(gone(
                    "every pg_backup copy worker exited before the tables were copied (terminated or crashed)".into(),
                ));
            }
            let current = self.pool.tasks().next().map(|k| {
                let t = &tasks[self.order[k]];
                format!("{}.{}", t.schema, t.table)
            });
            on_tick(done, current.as_deref());
        }
        // Every file is written: the workers commit and leave.
        self.pool.finish();
        Ok(results
            .into_iter()
            .map(|r| r.expect("every task is done"))
            .collect())
    }
}

fn gone(message: String) -> BackupError {
    BackupError::from_worker(
        "57P01",
        message,
        Some("See the server log. jobs => 1 takes the backup in this session.".into()),
    )
}

// ---------------------------------------------------------------------------------------------
// The worker.
// ---------------------------------------------------------------------------------------------

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_backup_copy_worker_main(arg: pg_sys::Datum) {
    // TerminateBackgroundWorker stops a COPY at its next row, as it would a backend's.
    let Some(worker) = Worker::attach(&COPY_WORKER, arg) else {
        return; // the leader is gone
    };
    let plan = &worker.request;
    // Before any lock: share the leader's locks (see the module comment).
    let leader = plan.leader_proc as *mut pg_sys::PGPROC;
    // SAFETY: the leader's PGPROC (shared memory, valid for the server's life); the call
    // checks that it still belongs to `leader_pid` and leads a lock group.
    if !unsafe { pg_sys::BecomeLockGroupMember(leader, plan.leader_pid) } {
        return;
    }
    if let Err(failure) = work(&worker) {
        worker.fail(failure);
    }
}

fn work(worker: &Worker<Plan, usize, Copied>) -> std::result::Result<(), Failure> {
    let plan = &worker.request;
    plan.session.connect();
    // The first task, or none: the leader sent this worker back unused.
    let Some(first) = worker.next_task().map_err(|e| Failure::of(&e))? else {
        return Ok(());
    };
    let compression = Compression::from_name(&plan.compression).map_err(|e| Failure {
        sqlstate: e.sqlstate().into(),
        message: e.to_string(),
        hint: None,
    })?;
    // SAFETY: no transaction is open in this worker yet. The snapshot's bytes are
    // SerializeSnapshot's (RestoreSnapshot reads them, it does not keep the pointer), and
    // the leader, which holds that snapshot until every task is reported, is the source
    // RestoreTransactionSnapshot checks.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        // The leader's snapshot as this transaction's snapshot (SET TRANSACTION SNAPSHOT).
        pg_sys::XactIsoLevel = pg_sys::XACT_REPEATABLE_READ as i32;
        let snapshot = pg_sys::RestoreSnapshot(plan.snapshot.as_ptr() as *mut std::ffi::c_char);
        pg_sys::RestoreTransactionSnapshot(snapshot, plan.leader_proc as *mut std::ffi::c_void);
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    plan.session.become_user();
    // Rows are written as the leader writes them (DateStyle ISO, ...): the leader pinned these
    // before its settings were captured; pinned again here in case a capture missed one.
    crate::security::pin_literal_settings();
    let outcome = subtransaction::run_result(|| -> Result<()> {
        let mut next = Some(first);
        while let Some(k) = next {
            pgrx::check_for_interrupts!();
            let t = plan.tasks.get(k).ok_or_else(|| {
                BackupError::from_worker("XX000", format!("no copy task {k}"), None)
            })?;
            let (rows, stats) = t.run(None, compression)?;
            worker.report(&Copied {
                rows,
                bytes: stats.bytes,
                raw_bytes: stats.raw_bytes,
                sha256: stats.sha256,
            });
            next = worker.next_task()?;
        }
        Ok(())
    });
    // SAFETY: the transaction started above is still open, with the snapshot pushed above
    // active (the subtransaction around the tasks is ended either way).
    unsafe {
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    }
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure::of(&e)),
        Err(caught) => Err(caught_error(&caught)),
    }
}

fn caught_error(e: &CaughtError) -> Failure {
    let r = match e {
        CaughtError::PostgresError(r)
        | CaughtError::ErrorReport(r)
        | CaughtError::RustPanic { ereport: r, .. } => r,
    };
    Failure {
        sqlstate: crate::error::sqlstate_of(r.sql_error_code()),
        message: crate::error::report_text(r.message()),
        hint: r.hint().map(crate::error::report_text),
    }
}
