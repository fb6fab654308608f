//! Typed messages over a `shm_mq`: JSON, one message per value.

use pgrx::pg_sys;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::kind::Failure;

/// A worker's message to the leader: a report, or the error it ended with (its last word).
#[derive(Serialize, Deserialize)]
pub(super) enum Wire<R> {
    Report(R),
    Failed(Failure),
}

/// The other end has detached: its process exited (or, seen from a worker, the leader closed
/// the pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

pub(super) enum Received<M> {
    /// A message, or why its bytes did not parse.
    Message(std::result::Result<M, String>),
    Nothing,
    Gone,
}

/// This process's end of one queue.
pub(super) struct Queue {
    handle: *mut pg_sys::shm_mq_handle,
}

impl Queue {
    /// Attach to `mq` (this process was made its sender or receiver). `peer`, when known, is
    /// the worker at the other end: a receive then sees `Gone` if it stopped without ever
    /// attaching. The handle is allocated in the current memory context.
    ///
    /// # Safety
    /// `mq` was made by `shm_mq_create` inside `seg`, which this process has mapped, and the
    /// mapping, the memory context and `peer` outlive every use of the returned `Queue`
    /// (the pool and the worker drop their queues before they let the segment go).
    pub unsafe fn attach(
        mq: *mut pg_sys::shm_mq,
        seg: *mut pg_sys::dsm_segment,
        peer: *mut pg_sys::BackgroundWorkerHandle,
    ) -> Queue {
        Queue {
            // SAFETY: the caller's promise above.
            handle: unsafe { pg_sys::shm_mq_attach(mq, seg, peer) },
        }
    }

    /// Send `m`, waiting while the queue is full (a cancel or a termination still ends the
    /// wait, as PostgreSQL's own wait does: with an ERROR or FATAL).
    pub fn send<M: Serialize>(&self, m: &M) -> Result<(), Gone> {
        let bytes = serde_json::to_vec(m).expect("a message serializes");
        // SAFETY: the handle is valid while `self` lives (`attach`); the bytes live through
        // the call, which copies them into the ring.
        let r = unsafe {
            pg_sys::shm_mq_send(self.handle, bytes.len(), bytes.as_ptr().cast(), false, true)
        };
        match r {
            pg_sys::shm_mq_result::SHM_MQ_SUCCESS => Ok(()),
            _ => Err(Gone),
        }
    }

    /// The next message if one is there (never waits).
    pub fn try_receive<M: DeserializeOwned>(&self) -> Received<M> {
        let mut len: pg_sys::Size = 0;
        let mut data: *mut std::ffi::c_void = std::ptr::null_mut();
        // SAFETY: the handle is valid while `self` lives (`attach`); `len` and `data` are
        // plain out-parameters.
        let r = unsafe { pg_sys::shm_mq_receive(self.handle, &mut len, &mut data, true) };
        match r {
            pg_sys::shm_mq_result::SHM_MQ_SUCCESS => {
                // SAFETY: on success the queue hands out `len` readable bytes at `data`
                // (in the ring or the handle's buffer), valid until the next receive on this
                // handle; they are parsed into an owned value before that.
                let bytes = unsafe { std::slice::from_raw_parts(data as *const u8, len) };
                Received::Message(serde_json::from_slice(bytes).map_err(|e| e.to_string()))
            }
            pg_sys::shm_mq_result::SHM_MQ_DETACHED => Received::Gone,
            _ => Received::Nothing,
        }
    }

    /// Whether a sender has attached to this queue (a worker that started did).
    pub fn has_sender(&self) -> bool {
        // SAFETY: the handle is valid while `self` lives (`attach`); reading the queue's
        // sender takes its spinlock.
        unsafe { !pg_sys::shm_mq_get_sender(pg_sys::shm_mq_get_queue(self.handle)).is_null() }
    }

    /// Detach: the other end sees `Gone`; the handle is freed.
    pub fn detach(self) {
        // SAFETY: the handle is valid (`attach`) and not used again (`self` is consumed).
        unsafe { pg_sys::shm_mq_detach(self.handle) };
    }
}
