//! Read-only queries. pgrx's `Spi::get_one`, `get_two` and `run` first ask for a transaction id
//! (they take every statement for one that may write), which a hot standby refuses ("cannot
//! assign TransactionIds during recovery"). What must work on a standby (verify, a restore's
//! dry run, the checks on entry) reads through these instead.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::Error;

/// The first column of the first row (an error when there is no row, as `Spi::get_one`).
///
/// A read-only SPI query reads with the caller's active snapshot as it is, command id
/// included; this one reads with a copy brought up to the current command, so it sees what
/// this transaction did since (a restore's steps in released subtransactions under
/// on_error => 'continue' created the tables it looks up), and still nothing other
/// transactions committed after the snapshot (a backup keeps its one view).
pub fn one<T: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> Result<Option<T>, Error> {
    // SAFETY: pushed and popped around the query; an error raised inside aborts the
    // (sub)transaction, whose cleanup pops what it pushed.
    unsafe {
        if pg_sys::ActiveSnapshotSet() {
            pg_sys::PushCopiedSnapshot(pg_sys::GetActiveSnapshot());
            pg_sys::UpdateActiveSnapshotCommandId();
        } else {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
    }
    let r = Spi::connect(|c| c.select(sql, Some(1), args)?.first().get_one::<T>());
    unsafe { pg_sys::PopActiveSnapshot() };
    r
}
