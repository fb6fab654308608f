//! A worker's side of a pool: attach to the leader's segment, read the request, take tasks
//! from the inbox, report through the outbox.

use std::marker::PhantomData;

use pgrx::pg_sys;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::kind::{Failure, Kind};
use super::layout::{self, Header, Layout};
use super::queue::{Queue, Received, Wire};
use crate::error::{BackupError, Result};

/// One worker of a pool, in the worker's process.
pub struct Worker<Q, T, R> {
    /// Its number in the pool (0, 1, ...).
    pub number: usize,
    /// What the leader gave every worker.
    pub request: Q,
    inbox: Option<Queue>,
    outbox: Queue,
    messages: PhantomData<fn(T) -> R>,
}

impl<Q: DeserializeOwned, T: DeserializeOwned, R: Serialize> Worker<Q, T, R> {
    /// First thing in a worker's entry point: SIGTERM ends the worker and SIGINT cancels what
    /// it does (at the next interrupt check, as in a backend), then the leader's segment, its
    /// queues and the request. None: the leader is gone already, the segment is not of this
    /// kind, or the request did not parse (the leader is told).
    pub fn attach(kind: &Kind<Q, T, R>, arg: pg_sys::Datum) -> Option<Self> {
        // SAFETY: installing signal handlers and unblocking signals is what a background
        // worker's main function does first; both handlers only set flags and the latch.
        unsafe {
            pg_sys::pqsignal(libc::SIGTERM, Some(crate::signals::die_on_sigterm));
            pg_sys::pqsignal(libc::SIGINT, Some(crate::signals::cancel_on_sigint));
            pg_sys::BackgroundWorkerUnblockSignals();
        }
        let (handle, number) = layout::from_argument(arg.value());
        // SAFETY: a handle is only a number to look up; an unknown one gives NULL.
        let seg = unsafe { pg_sys::dsm_attach(handle) };
        if seg.is_null() {
            return None;
        }
        // SAFETY: `seg` is attached; pinning keeps the mapping until this process exits
        // (no transaction's end lets it go), so every pointer into it below stays valid.
        let (base, mapped) = unsafe {
            pg_sys::dsm_pin_mapping(seg);
            (
                pg_sys::dsm_segment_address(seg) as *mut u8,
                pg_sys::dsm_segment_map_length(seg),
            )
        };
        if mapped < std::mem::size_of::<Header>() {
            return None;
        }
        // SAFETY: the mapping is page-aligned and at least a header long (checked above); the
        // leader wrote the header before it registered any worker.
        let header = unsafe { base.cast::<Header>().read() };
        let layout = Layout::new(&header);
        if header.magic != kind.magic
            || number >= header.workers as usize
            || header.inbox != kind.inbox
            || header.outbox != kind.outbox
            || layout.size > mapped
        {
            return None;
        }
        let (inbox_at, outbox_at) = layout.queues(number);
        // SAFETY: the queues lie inside the mapping (`layout.size <= mapped`), were created
        // by the leader with this layout, and this worker (its number is its own) is their
        // only receiver (inbox) or sender (outbox). The handles live in TopMemoryContext and
        // the mapping is pinned: both outlive the `Worker`.
        let (inbox, outbox) = unsafe {
            let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
            let inbox = inbox_at.map(|(off, _)| {
                let mq = base.add(off) as *mut pg_sys::shm_mq;
                pg_sys::shm_mq_set_receiver(mq, pg_sys::MyProc);
                Queue::attach(mq, seg, std::ptr::null_mut())
            });
            let mq = base.add(outbox_at.0) as *mut pg_sys::shm_mq;
            pg_sys::shm_mq_set_sender(mq, pg_sys::MyProc);
            let outbox = Queue::attach(mq, seg, std::ptr::null_mut());
            pg_sys::MemoryContextSwitchTo(old);
            (inbox, outbox)
        };
        // SAFETY: the request's bytes lie inside the mapping (`layout.size <= mapped`) and
        // were written by the leader before it registered any worker; nothing writes them.
        let bytes =
            unsafe { std::slice::from_raw_parts(base.add(layout.request_off), layout.request_len) };
        match serde_json::from_slice::<Q>(bytes) {
            Ok(request) => Some(Worker {
                number,
                request,
                inbox,
                outbox,
                messages: PhantomData,
            }),
            Err(e) => {
                let _ = outbox.send(&Wire::<()>::Failed(Failure::internal(format!(
                    "{}: unreadable request: {e}",
                    kind.name
                ))));
                None
            }
        }
    }

    /// The next task; None once the leader has closed the pool (or this kind takes no
    /// tasks). A cancel or a termination while waiting is raised here, as in any wait.
    pub fn next_task(&self) -> Result<Option<T>> {
        let Some(inbox) = &self.inbox else {
            return Ok(None);
        };
        loop {
            match inbox.try_receive::<T>() {
                Received::Message(Ok(task)) => return Ok(Some(task)),
                Received::Message(Err(e)) => {
                    return Err(BackupError::from_worker(
                        "XX000",
                        format!("unreadable task: {e}"),
                        None,
                    ))
                }
                Received::Gone => return Ok(None),
                Received::Nothing => {}
            }
            pgrx::check_for_interrupts!();
            // SAFETY: waiting on this process's own latch, as any backend does; the leader's
            // send sets it.
            unsafe {
                pg_sys::WaitLatch(
                    pg_sys::MyLatch,
                    (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH)
                        as i32,
                    1000,
                    pg_sys::PG_WAIT_EXTENSION,
                );
                pg_sys::ResetLatch(pg_sys::MyLatch);
            }
        }
    }

    /// Report to the leader (a leader that is gone no longer listens: nothing to do).
    pub fn report(&self, report: &R) {
        let _ = self.outbox.send(&Wire::Report(report));
    }

    /// The worker's last word: the error it ends with.
    pub fn fail(&self, failure: Failure) {
        let _ = self.outbox.send(&Wire::<()>::Failed(failure));
    }
}
