//! A restore in one transaction keeps a lock on every relation it creates or writes until it
//! commits. The shared lock table holds max_locks_per_transaction * (max_connections +
//! max_prepared_transactions) locks for the whole server (PostgreSQL's documented size); a
//! restore that needs more can never succeed, and would fail half-way with "out of shared
//! memory". It is refused before anything changes instead.

use crate::error::{BackupError, Result};

/// The lock table's size as the documentation states it.
pub fn lock_table_capacity() -> Result<u64> {
    let n = crate::query::one::<i64>(
        "SELECT current_setting('max_locks_per_transaction')::bigint
                * (current_setting('max_connections')::bigint
                   + current_setting('max_prepared_transactions')::bigint)",
        &[],
    )?
    .unwrap_or(i64::MAX);
    Ok(n.max(0) as u64)
}

/// `needed`: a lower bound of the relations (tables, indexes, sequences, views ...) the
/// restore locks in its transaction.
pub fn check(needed: u64) -> Result<()> {
    let capacity = lock_table_capacity()?;
    check_against(needed, capacity)
}

pub fn check_against(needed: u64, capacity: u64) -> Result<()> {
    if needed > capacity {
        let per_backend =
            crate::query::one::<String>("SELECT current_setting('max_locks_per_transaction')", &[])
                .ok()
                .flatten()
                .unwrap_or_default();
        return Err(BackupError::limit(format!(
            "this restore locks at least {needed} objects (relations, large objects) in one transaction, more than the lock table holds ({capacity})"
        ))
        .with_hint(format!(
            "Raise max_locks_per_transaction (now {per_backend}; the lock table holds max_locks_per_transaction * (max_connections + max_prepared_transactions), a restart is needed), restore with atomic => false (it commits in batches), or restore in parts with tables => '{{...}}' or schemas => '{{...}}'. Nothing was changed."
        )));
    }
    Ok(())
}
