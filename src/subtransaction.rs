//! Running work in an internal subtransaction, as PL/pgSQL's EXCEPTION blocks do, so that after
//! an ERROR we can still clean up (remove a half-written archive, record a failed history row)
//! before the error goes on to the caller.

use std::panic::AssertUnwindSafe;

use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

/// Run `f` in a subtransaction. `Ok` if it returned (its changes are kept), `Err` with the
/// caught PostgreSQL error if it raised one (its changes are rolled back and the session is
/// usable again; call `rethrow()` after cleaning up).
// CaughtError is pgrx's own (large) type; it is rethrown as is, so it is not boxed.
#[allow(clippy::result_large_err)]
pub fn run<T>(f: impl FnOnce() -> T) -> Result<T, CaughtError> {
    run_keeping(f, |_| true)
}

/// Like `run`, for work that reports failure as `Err`: that rolls the subtransaction back too.
#[allow(clippy::result_large_err)]
pub fn run_result<T, E>(f: impl FnOnce() -> Result<T, E>) -> Result<Result<T, E>, CaughtError> {
    run_keeping(f, |r| r.is_ok())
}

#[allow(clippy::result_large_err)]
fn run_keeping<T>(f: impl FnOnce() -> T, keep: impl Fn(&T) -> bool) -> Result<T, CaughtError> {
    // SAFETY: PL/pgSQL's exception-block protocol (pl_exec.c exec_stmt_block), on the
    // backend's thread inside a transaction: the subtransaction begun here is the current one
    // when it is released or rolled back, because `f`'s own subtransactions end inside `f`
    // (an ERROR in `f` is caught by PgTryBuilder before it unwinds past this frame), and the
    // memory context and resource owner saved before it began are restored after it ends.
    unsafe {
        let old_context = pg_sys::CurrentMemoryContext;
        let old_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(old_context);
        let f = AssertUnwindSafe(f);
        let result = PgTryBuilder::new(AssertUnwindSafe(move || Ok((f.0)())))
            .catch_others(Err)
            .execute();
        match &result {
            Ok(v) if keep(v) => pg_sys::ReleaseCurrentSubTransaction(),
            _ => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(old_context);
        pg_sys::CurrentResourceOwner = old_owner;
        result
    }
}

/// The message of a caught error, for history rows.
pub fn message(e: &CaughtError) -> String {
    match e {
        CaughtError::PostgresError(r)
        | CaughtError::ErrorReport(r)
        | CaughtError::RustPanic { ereport: r, .. } => crate::error::report_text(r.message()),
    }
}

/// The message of a caught error with its SQLSTATE, as history rows give a pg_backup error's
/// ("... (SQLSTATE 57014)").
pub fn message_with_sqlstate(e: &CaughtError) -> String {
    match e {
        CaughtError::PostgresError(r)
        | CaughtError::ErrorReport(r)
        | CaughtError::RustPanic { ereport: r, .. } => format!(
            "{} (SQLSTATE {})",
            crate::error::report_text(r.message()),
            crate::error::sqlstate_of(r.sql_error_code())
        ),
    }
}
