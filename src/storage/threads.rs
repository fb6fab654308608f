//! Helper threads for storage work. They never call into PostgreSQL, and they block every
//! signal, so PostgreSQL's handlers (SIGINT for cancel, SIGTERM, SIGUSR1 for latches) always
//! run on the backend's own thread.

use std::thread::JoinHandle;

/// Spawn `f` on a named thread that has every signal blocked (it inherits the mask set here,
/// which is then restored on the calling thread).
pub fn spawn<T, F>(name: &str, f: F) -> std::io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: plain sigset manipulation on this thread's own mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let handle = std::thread::Builder::new().name(name.into()).spawn(f);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        handle
    }
}
