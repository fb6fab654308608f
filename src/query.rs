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
    // Not in parallel mode (create(jobs => N)): no new command or snapshot may start there,
    // and nothing changes either.
    let fresh = unsafe { !pg_sys::IsInParallelMode() };
    if fresh {
        unsafe {
            pg_sys::CommandCounterIncrement();
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
    }
    // On an ERROR the (sub)transaction abort pops the snapshot.
    let r = Spi::connect(|c| {
        c.select(stmt.as_c_str(), Some(1), args)?
            .first()
            .get_one::<T>()
    });
    if fresh {
        unsafe { pg_sys::PopActiveSnapshot() };
    }
    r
}
