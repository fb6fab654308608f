//! Helper threads (compression, hashing, reading archive files). They never call into
//! PostgreSQL, and they start with every signal blocked: PostgreSQL's signal handlers (SIGINT
//! for a cancel, SIGTERM, SIGUSR1 for latches ...) set flags and latches of the backend and must
//! only ever run on its main thread. The backend checks for cancels itself.

use std::thread::JoinHandle;

/// `std::thread::Builder::spawn` with every signal blocked in the new thread (a thread inherits
/// the signal mask of the thread that creates it, so the mask is set around the spawn).
pub fn spawn<T, F>(name: &str, f: F) -> std::io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: plain libc calls on local sigset_t values.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let spawned = std::thread::Builder::new().name(name.into()).spawn(f);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        spawned
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn helper_threads_start_with_every_signal_blocked() {
        // SAFETY: libc calls on a local, zero-initialised sigset_t of this thread.
        let h = super::spawn("t", || unsafe {
            let mut cur: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut cur);
            [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1, libc::SIGQUIT]
                .iter()
                .all(|s| libc::sigismember(&cur, *s) == 1)
        })
        .unwrap();
        assert!(h.join().unwrap());
        // And the spawning thread's own mask is as it was.
        // SAFETY: as above.
        unsafe {
            let mut cur: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut cur);
            assert_eq!(libc::sigismember(&cur, libc::SIGUSR1), 0);
        }
    }
}
