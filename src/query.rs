//! Read-only queries. pgrx's `Spi::get_one`, `get_two` and `run` first ask for a transaction id
//! (they take every statement for one that may write), which a hot standby refuses ("cannot
//! assign TransactionIds during recovery"). What must work on a standby (verify, a restore's
//! dry run, the checks on entry) reads through these instead.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::Error;

/// The first column of the first row (an error when there is no row, as `Spi::get_one`).
///
/// Under a fresh snapshot that sees every change made so far in this transaction: a
/// read-only SPI query otherwise runs under the active snapshot, the calling statement's,
/// which does not see what the call itself created since (a restore with on_error =>
/// 'continue' looked up a table it had just created, from inside a subtransaction that had no
/// transaction id yet, and found none).
pub fn one<T: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> Result<Option<T>, Error> {
    // Statements may name objects with non-ASCII names (converted to the database's encoding).
    let stmt = crate::text::statement(sql);
    let _fresh = FreshSnapshot::push();
    Spi::connect(|c| {
        c.select(stmt.as_c_str(), Some(1), args)?
            .first()
            .get_one::<T>()
    })
}

/// While it lives, the active snapshot is a fresh one that sees every change this transaction
/// made so far (a new command first), as PostgreSQL gives each statement of a session.
///
/// Code that pg_backup runs without a statement of its own (COPY FROM called directly, and
/// read-only SPI queries) otherwise runs under the active snapshot of the statement that
/// called restore(): one taken before the restore created anything. Extension C code that
/// looks things up with a read-only SPI query while rows are written (PostGIS's
/// spatial_ref_sys for a geography value or ST_Transform in a generated column, a type's
/// input function reading its extension's tables) then finds nothing of what CREATE
/// EXTENSION and the configuration rows put there moments before.
///
/// Not in parallel mode (create(jobs => N)): no new command or snapshot may start there, and
/// nothing changes either. Popped on drop; after an ERROR the (sub)transaction abort pops it.
pub struct FreshSnapshot {
    pushed: bool,
}

impl FreshSnapshot {
    pub fn push() -> FreshSnapshot {
        // SAFETY: inside a transaction (every caller runs in one); no-ops in parallel mode.
        let pushed = unsafe { !pg_sys::IsInParallelMode() };
        if pushed {
            // SAFETY: inside a transaction, not in parallel mode (checked above), so a new
            // command may start; GetTransactionSnapshot returns a snapshot valid for the
            // transaction, which PushActiveSnapshot copies if needed. Popped in `drop`.
            unsafe {
                pg_sys::CommandCounterIncrement();
                pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            }
        }
        FreshSnapshot { pushed }
    }
}

impl Drop for FreshSnapshot {
    fn drop(&mut self) {
        // While an ERROR unwinds, snapshots pushed by the code that failed may still be above
        // ours: the abort of the (sub)transaction pops them all.
        if self.pushed && !std::thread::panicking() {
            // SAFETY: `push` pushed a snapshot, and on this path (no error unwinding) every
            // snapshot pushed after it was popped again, so ours is the active one.
            unsafe { pg_sys::PopActiveSnapshot() };
        }
    }
}
