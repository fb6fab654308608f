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
        crate::server_api::set_signal_handler(libc::SIGTERM, Some(die_on_sigterm));
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

/// Whether PostgreSQL was asked to cancel this backend's statement (pg_cancel_backend,
/// statement_timeout, lock_timeout) or to end the process (pg_terminate_backend, shutdown),
/// for loops of the backend's own thread that wait on something other than PostgreSQL. On any
/// other thread this is always false (see [`stop_asked`] for helper threads).
pub fn cancel_requested() -> bool {
    // SAFETY: gettid and getpid are plain system calls; the process's main thread (the
    // backend's, the only one that runs PostgreSQL code) is the one whose thread id is the
    // process id.
    (unsafe { libc::gettid() == libc::getpid() }) && stop_asked()
}

/// The same question for a helper thread that blocks on the network while the backend may be
/// blocked too (COPY writing into a full pipe that the helper drains: neither could see a
/// cancel otherwise). This only reads the two flags PostgreSQL's signal handlers set; it calls
/// nothing of PostgreSQL, and a helper thread that sees them only stops its own work (the
/// backend raises the error at its next interrupt check).
#[cfg(not(test))]
pub fn stop_asked() -> bool {
    // SAFETY: volatile reads of two sig_atomic_t flags that signal handlers set; a stale read
    // only delays the answer to the next poll.
    unsafe {
        (&raw const pg_sys::QueryCancelPending).read_volatile() != 0
            || (&raw const pg_sys::ProcDiePending).read_volatile() != 0
    }
}

/// Unit tests run outside PostgreSQL (its symbols are not linked): nothing can be asked.
#[cfg(test)]
pub fn stop_asked() -> bool {
    false
}
