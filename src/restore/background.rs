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

use std::time::{Duration, Instant};

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
use crate::workers::{Event, Failure, Kind, Life, Pool, Worker};

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
                    Some(t) if t.elapsed() > Duration::from_secs(30) => {
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

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_backup_restore_worker_main(arg: pg_sys::Datum) {
    let Some(worker) = Worker::attach(&RESTORE_WORKER, arg) else {
        return;
    };
    let request = &worker.request;
    request.session.connect();
    match restore_connected(request) {
        Ok(rows) => {
            for r in rows {
                worker.report(&Message::Row(r));
            }
            worker.report(&Message::Done);
        }
        Err(failure) => worker.fail(failure),
    }
}

/// The restore of `request`, in a background worker already connected as its session
/// (`Session::connect`), outside any transaction: batches that commit as they go. Ends outside
/// any transaction, with the rows, or with the failure recorded (what was committed stays).
/// The restore worker above and a restore drill's worker (`drill::scratch`) run this.
#[allow(clippy::result_large_err)]
pub fn restore_connected(request: &Request) -> std::result::Result<Vec<Row>, Failure> {
    security::call_is_session();
    batch::register_exit_callback();
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
            // SAFETY: the restore's transaction (begun above, or by the last batch's commit)
            // is open with its snapshot pushed.
            unsafe {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
            batch::ended();
            return Ok(rows);
        }
        Ok(Err(e)) => failure_of(Ok(e)),
        Err(caught) => failure_of(Err(caught)),
    };
    // The current batch is rolled back; what was committed stays, and the row says what
    // (its progress, recorded by every transaction that committed something).
    // SAFETY: the error was caught above; aborting whatever transaction is open is what a
    // worker's error recovery does.
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
    Err(Failure {
        sqlstate,
        message,
        hint,
    })
}
