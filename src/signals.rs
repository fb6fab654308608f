//! Signal handling of pg_backup's background workers.

use pgrx::pg_sys;

/// What a backend's own die() does on SIGTERM: ask for the process to end at the next
/// interrupt check (COPY checks per row, a lock wait checks too), and wake it if it sleeps.
/// pgrx's handler only sets a flag that nothing checks while the worker waits inside
/// PostgreSQL, so a worker waiting for a lock would never end.
///
/// # Safety
/// A signal handler: installed with `pqsignal`, never called directly.
pub unsafe extern "C-unwind" fn die_on_sigterm(_signal: i32) {
    let saved = *libc::__errno_location();
    (&raw mut pg_sys::InterruptPending).write_volatile(1);
    (&raw mut pg_sys::ProcDiePending).write_volatile(1);
    if !pg_sys::MyLatch.is_null() {
        pg_sys::SetLatch(pg_sys::MyLatch);
    }
    *libc::__errno_location() = saved;
}

/// In a worker's main function, before anything else: SIGTERM ends the worker at the next
/// interrupt check.
pub fn die_on_sigterm_then_unblock() {
    // SAFETY: called at the start of a background worker's main function, on its only
    // thread, before signals are unblocked: the handler is installed before any SIGTERM can
    // be delivered, and `die_on_sigterm` only touches async-signal-safe state.
    unsafe {
        pg_sys::pqsignal(libc::SIGTERM, Some(die_on_sigterm));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
}

/// What a backend's StatementCancelHandler does: the next interrupt check raises
/// "canceling statement due to user request" (57014), which the worker catches like any error.
///
/// # Safety
/// A signal handler: installed with `pqsignal`, never called directly.
pub unsafe extern "C-unwind" fn cancel_on_sigint(_signal: i32) {
    let saved = *libc::__errno_location();
    if !pg_sys::proc_exit_inprogress {
        (&raw mut pg_sys::InterruptPending).write_volatile(1);
        (&raw mut pg_sys::QueryCancelPending).write_volatile(1);
    }
    if !pg_sys::MyLatch.is_null() {
        pg_sys::SetLatch(pg_sys::MyLatch);
    }
    *libc::__errno_location() = saved;
}
