//! restore(atomic => false): the restore commits as it goes, in batches of steps whose locks
//! fit the lock table; every commit records in the history row what it committed (so the row
//! never says less, or more, than what stays), and a restore worker that dies leaves its row
//! failed with what stays.

use std::cell::{Cell, RefCell};

use pgrx::prelude::*;

use super::options::Request;
use super::result::Row;
use crate::catalog::history::{self, Committed};
use crate::error::Result;
use crate::session::{self, Session};

static RESTORE_ID: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Commits along the way, for the step executor (`step::Runner` calls `step_done` after each
/// step that succeeded).
pub struct Batches {
    /// Steps per transaction.
    size: usize,
    session: Session,
    /// What the worker was asked (restore(jobs => N) hands it on to its job workers).
    pub request: Request,
    steps_in_batch: Cell<usize>,
    /// Result rows already accounted for: recorded by this worker's commits (or pending for
    /// its next one), or committed and recorded by the job worker that reported them.
    seen: Cell<usize>,
    pub restore_id: Cell<i64>,
    /// This worker's steps since its last commit: recorded with the next one.
    pending: RefCell<Committed>,
}

/// Entries per transaction: small enough that a batch's locks (a table, its TOAST table and
/// index, its indexes ...) fit the shared lock table next to everyone else's, large enough
/// that commits cost little. pg_upgrade uses 1000 with PostgreSQL 17's --transaction-size.
pub fn batch_size(max_locks_per_transaction: i64) -> usize {
    (max_locks_per_transaction * 8).clamp(64, 1000) as usize
}

impl Batches {
    pub fn new(request: &Request) -> Batches {
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
        // SAFETY: the restore worker runs the restore in a transaction of its own that
        // `begin_transaction` started with an active snapshot (no subtransaction or SPI call is
        // open between steps): both end here, and a new one starts below.
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
pub fn add_committed(c: &mut Committed, rows: &[Row]) {
    for r in rows {
        c.entries += 1;
        c.rows += r.rows.unwrap_or(0);
        let step = format!("{} {}", r.kind, r.object);
        if r.kept() {
            c.restored.push(step.clone());
        }
        c.last = Some(step);
    }
}

/// What a set of result rows commits.
pub fn committed(rows: &[Row]) -> Committed {
    let mut c = Committed::default();
    add_committed(&mut c, rows);
    c
}

/// Start a transaction (with its snapshot) in a restore worker or job worker, as the session's
/// current user.
pub fn begin_transaction(session: &Session) {
    // SAFETY: called by background workers outside any transaction (after connecting, or
    // after the previous one committed or aborted).
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    session.become_user();
}

/// The restore worker's exit callback: the history row of a restore still running says it
/// failed (what its committed batches keep stays, as its progress says).
#[pg_guard]
unsafe extern "C-unwind" fn on_worker_exit(_code: i32, _arg: pg_sys::Datum) {
    let id = RESTORE_ID.swap(0, std::sync::atomic::Ordering::Relaxed);
    if id != 0 {
        history::fail_running_restore(
            id,
            "the restore worker was terminated; the steps committed before stay restored (see progress)",
        );
    }
}

/// The restore's history row exists from here on (for the exit callback).
pub fn started(restore_id: i64, batches: &Batches) {
    batches.restore_id.set(restore_id);
    RESTORE_ID.store(restore_id, std::sync::atomic::Ordering::Relaxed);
}

/// The restore ended (its history row says how): nothing for the exit callback to do.
pub fn ended() {
    RESTORE_ID.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// Run on the restore worker's exit: a restore still running is marked failed, with what its
/// committed batches keep.
pub fn register_exit_callback() {
    // SAFETY: called once by the restore worker after it connected, before any restore runs;
    // the callback takes no argument.
    unsafe {
        pg_sys::before_shmem_exit(Some(on_worker_exit), pg_sys::Datum::from(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::result::{Action, Status};

    #[test]
    fn a_commit_lists_what_it_restored_and_counts_every_step() {
        let rows = vec![
            Row::new("public.t".into(), "table", Action::Create, Status::Ok),
            Row::new("public.t".into(), "table_data", Action::Load, Status::Ok).rows(Some(7)),
            Row::new("public.u".into(), "table", Action::Skip, Status::Ok).detail("already exists"),
            Row::new(
                "public.v".into(),
                "table_data",
                Action::Load,
                Status::Failed,
            )
            .detail("x"),
            Row::new("public.t".into(), "acl", Action::Create, Status::Warning).detail("y"),
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
