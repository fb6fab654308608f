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
use std::time::Instant;

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
use crate::workers::{Event, Failure, Kind, Life, Pool, Worker};

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

/// What the worker sends back, message by message (its error travels as the pool's
/// `Failure`).
#[derive(Serialize, Deserialize)]
enum Message {
    Row(Row),
    Done,
}

/// The one worker of a restore that commits as it goes: it takes no tasks, it sends rows.
const RESTORE_WORKER: Kind<Request, (), Message> = Kind::new(
    "pg_backup restore worker",
    false,
    "pg_backup_restore_worker_main",
    0x7062_7231,
    0,
    256 << 10,
);

/// The calling side: start the worker, relay its rows, end as it ended.
pub fn run(id: &str, opts: &RestoreOptions, caller: &Caller) -> Result<Vec<Row>> {
    // Each commit is final: not inside a transaction block the caller might roll back (and a
    // caller holding locks the worker waits for would wait for it forever).
    // SAFETY: a check of this backend's transaction state; it raises an ERROR when refused.
    unsafe {
        pg_sys::PreventInTransactionBlock(true, c"restore(atomic => false)".as_ptr());
    }
    let request = Request {
        backup_id: id.to_string(),
        opts: opts.clone(),
        caller_schemas: caller.schemas.clone(),
        caller_role: caller.role.clone(),
        caller_oid: u32::from(caller.oid),
        session: session::capture(),
    };
    let pool = Pool::start(&RESTORE_WORKER, &request, 1, Life::Transaction);
    if pool.is_empty() {
        return Err(BackupError::denied(
            "no background worker slot is free for restore(atomic => false)",
        )
        .with_hint(
            "Raise max_worker_processes (restart needed), or wait for other workers to finish.",
        ));
    }
    relay(pool)
}

/// Collect the worker's rows until it is done; its error is this call's. Dropping the pool
/// (an error of ours, a cancel the worker did not carry out in time) terminates the worker.
fn relay(mut pool: Pool<(), Message>) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut cancel_sent: Option<Instant> = None;
    loop {
        match pool.wait() {
            Event::Report {
                report: Message::Row(row),
                ..
            } => rows.push(row),
            Event::Report {
                report: Message::Done,
                ..
            } => {
                pool.finish();
                return Ok(rows);
            }
            Event::Failed { failure, .. } => {
                pool.finish();
                // A cancel of ours that the worker carried out is ours to raise.
                pgrx::check_for_interrupts!();
                return Err(failure.into_error());
            }
            Event::Gone { .. } => {
                return Err(BackupError::from_worker(
                    "57P01",
                    "the pg_backup restore worker exited before the restore ended (terminated or crashed); what it had committed stays, see backup.restores".into(),
                    Some("See the server log and SELECT * FROM backup.restores ORDER BY id DESC LIMIT 1;".into()),
                ));
            }
            // A cancel or a statement timeout of this session: the worker cancels its own
            // work (rolling back its current batch and recording what stays), and this call
            // ends with the cancel once it has. A termination ends both at once.
            Event::Interrupted => {
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
                    Some(t) if t.elapsed() > std::time::Duration::from_secs(30) => {
                        pgrx::check_for_interrupts!();
                    }
                    Some(_) => {}
                }
            }
            Event::Quiet => {}
        }
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

#[pg_guard]
#[no_mangle]
#[allow(clippy::result_large_err)]
pub extern "C-unwind" fn pg_backup_restore_worker_main(arg: pg_sys::Datum) {
    let Some(worker) = Worker::attach(&RESTORE_WORKER, arg) else {
        return;
    };
    let request = &worker.request;
    request.session.connect();
    security::call_is_session();
    // SAFETY: registers this library's callback for this process's exit.
    unsafe {
        pg_sys::before_shmem_exit(Some(on_worker_exit), pg_sys::Datum::from(0));
    }
    let batches = Batches::new(request);
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
            // SAFETY: the restore's transaction (begun above, or by the last batch's commit)
            // is open with its snapshot pushed.
            unsafe {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
            RESTORE_ID.store(0, std::sync::atomic::Ordering::Relaxed);
            for r in rows {
                worker.report(&Message::Row(r));
            }
            worker.report(&Message::Done);
            return;
        }
        Ok(Err(e)) => failure_of(Ok(e)),
        Err(caught) => failure_of(Err(caught)),
    };
    // The current batch is rolled back; what was committed stays, and the row says what
    // (its progress, recorded by every transaction that committed something).
    // SAFETY: the error was caught above; aborting whatever transaction is open is what a
    // worker's error recovery does.
    unsafe { pg_sys::AbortOutOfAnyTransaction() };
    let Failure {
        sqlstate,
        message,
        hint,
    } = failure;
    let message = if batches.restore_id.get() != 0 {
        let stays = super::record_failure(&request.session, batches.restore_id.get(), |stays| {
            format!("{message}; {stays} (SQLSTATE {sqlstate})")
        });
        format!("{message}; {stays}")
    } else {
        message
    };
    RESTORE_ID.store(0, std::sync::atomic::Ordering::Relaxed);
    worker.fail(Failure {
        sqlstate,
        message,
        hint,
    });
}

/// An error that ends a restore worker (or a job worker): SQLSTATE, message naming the entry
/// it stopped at, hint. Errors PostgreSQL raised go without row values (issue 9); the server
/// log gets the whole error.
pub(super) fn failure_of(e: std::result::Result<BackupError, CaughtError>) -> Failure {
    match e {
        Ok(e) => {
            let at = runner::current_entry()
                .map(|w| format!(" (while restoring {w})"))
                .unwrap_or_default();
            Failure {
                sqlstate: e.sqlstate().to_string(),
                message: format!("{e}{at}"),
                hint: e.hint(),
            }
        }
        Err(caught) => {
            let (kind, object, exposure) = runner::current_step();
            let text = redact::describe(&caught, &kind, &object, exposure);
            Failure {
                sqlstate: sqlstate_of(&caught),
                message: text,
                hint: Some("Row values are never shown or stored by pg_backup; the server log has the complete error.".to_string()),
            }
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
