//! The leader's side of a pool: launch the workers, send them tasks, wait for their reports,
//! and never leave one behind (an error, a cancel, or the leader's own exit terminates them).

use std::marker::PhantomData;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::kind::{Failure, Kind};
use super::layout::{self, Header, Layout};
use super::queue::{Gone, Queue, Received, Wire};

/// How long the segment and the leader's queue handles last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Within the leader's transaction (an abort lets the segment go).
    Transaction,
    /// Across the leader's commits (restore's leader commits while its workers run).
    AcrossCommits,
}

/// What `Pool::wait` saw.
pub enum Event<R> {
    /// `worker` reported; `task` is the one it had been sent (done now), if any.
    Report {
        worker: usize,
        task: Option<usize>,
        report: R,
    },
    /// `worker` ended with an error (its task rolled back).
    Failed {
        worker: usize,
        task: Option<usize>,
        failure: Failure,
    },
    /// `worker` exited without a word (terminated or crashed).
    Gone { worker: usize, task: Option<usize> },
    /// A cancel or termination of this process is pending. Nothing is raised: the caller
    /// raises it at once, or passes it on to the workers first.
    Interrupted,
    /// Nothing happened for a while (100 ms).
    Quiet,
}

struct Slot {
    handle: *mut pg_sys::BackgroundWorkerHandle,
    /// Leader -> worker (absent when the kind takes no tasks).
    inbox: Option<Queue>,
    /// Worker -> leader.
    outbox: Queue,
    /// The task it was sent and has not reported on.
    task: Option<usize>,
    /// It exited, or said its last word.
    gone: bool,
}

/// The workers of one pool, from the leader's side. Dropping it (an error, a cancel)
/// terminates every worker and waits for them to exit.
pub struct Pool<T, R> {
    seg: *mut pg_sys::dsm_segment,
    name: &'static str,
    slots: Vec<Slot>,
    /// Where the next look at the workers' outboxes starts: each gets its turn.
    turn: usize,
    messages: PhantomData<fn(T) -> R>,
}

/// Handles of every worker this process launched and has not seen exit, for the exit
/// callback: a leader that is terminated (FATAL skips every Rust frame) still stops them.
static LAUNCHED: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static EXIT_CALLBACK: Once = Once::new();

#[pg_guard]
unsafe extern "C-unwind" fn on_leader_exit(_code: i32, _arg: pg_sys::Datum) {
    let handles: Vec<*mut pg_sys::BackgroundWorkerHandle> = LAUNCHED
        .lock()
        .map(|mut g| std::mem::take(&mut *g))
        .unwrap_or_default()
        .into_iter()
        .map(|h| h as *mut _)
        .collect();
    terminate_and_wait(&handles);
}

impl<T: Serialize, R: DeserializeOwned> Pool<T, R> {
    /// Launch up to `wanted` workers of `kind`, each given `request`. Fewer start when the
    /// worker slots run out (`len` says how many did; none is not an error).
    pub fn start<Q: Serialize>(
        kind: &Kind<Q, T, R>,
        request: &Q,
        wanted: usize,
        life: Life,
    ) -> Pool<T, R> {
        let mut pool = Pool {
            seg: std::ptr::null_mut(),
            name: kind.name,
            slots: Vec::new(),
            turn: 0,
            messages: PhantomData,
        };
        if wanted == 0 {
            return pool;
        }
        EXIT_CALLBACK.call_once(|| {
            // SAFETY: registers a callback of this library for this process's exit; it only
            // terminates and waits for workers it finds in LAUNCHED.
            unsafe { pg_sys::before_shmem_exit(Some(on_leader_exit), pg_sys::Datum::from(0)) }
        });
        let request = serde_json::to_vec(request).expect("a request serializes");
        let header = Header {
            magic: kind.magic,
            workers: wanted as u32,
            request_len: request.len(),
            inbox: kind.inbox,
            outbox: kind.outbox,
        };
        let layout = Layout::new(&header);
        // SAFETY: dsm_create returns a mapped segment of `layout.size` bytes (or raises an
        // ERROR). Every write below lies inside it (`Layout`: parts apart, `size` their end)
        // at 8-byte aligned offsets of a page-aligned mapping; the queues are created before
        // any worker that could attach to them is registered.
        let base = unsafe {
            pool.seg = pg_sys::dsm_create(layout.size, 0);
            if life == Life::AcrossCommits {
                pg_sys::dsm_pin_mapping(pool.seg);
            }
            let base = pg_sys::dsm_segment_address(pool.seg) as *mut u8;
            base.cast::<Header>().write(header);
            std::ptr::copy_nonoverlapping(
                request.as_ptr(),
                base.add(layout.request_off),
                request.len(),
            );
            for w in 0..wanted {
                let (inbox, outbox) = layout.queues(w);
                if let Some((off, len)) = inbox {
                    let mq = pg_sys::shm_mq_create(base.add(off).cast(), len);
                    pg_sys::shm_mq_set_sender(mq, pg_sys::MyProc);
                }
                let mq = pg_sys::shm_mq_create(base.add(outbox.0).cast(), outbox.1);
                pg_sys::shm_mq_set_receiver(mq, pg_sys::MyProc);
            }
            base
        };
        // SAFETY: `pool.seg` is the segment just created.
        let seg_handle = unsafe { pg_sys::dsm_segment_handle(pool.seg) };
        // The queue handles live as long as the segment is mapped here.
        let context = match life {
            // SAFETY: reading a global of this backend (set while a transaction runs).
            Life::Transaction => unsafe { pg_sys::TopTransactionContext },
            // SAFETY: reading a global of this backend.
            Life::AcrossCommits => unsafe { pg_sys::TopMemoryContext },
        };
        for w in 0..wanted {
            let Some(handle) = launch(kind, seg_handle, w) else {
                break;
            };
            let (inbox, outbox) = layout.queues(w);
            // SAFETY: the queues were created above inside the mapping, with this process
            // as the inbox's sender and the outbox's receiver; the mapping lasts until
            // `finish` or `drop` detaches these handles first (or, while an ERROR unwinds,
            // until the abort frees `context` with them); `handle` until `forget`.
            let slot = unsafe {
                let old = pg_sys::MemoryContextSwitchTo(context);
                let slot = Slot {
                    handle,
                    inbox: inbox
                        .map(|(off, _)| Queue::attach(base.add(off).cast(), pool.seg, handle)),
                    outbox: Queue::attach(base.add(outbox.0).cast(), pool.seg, handle),
                    task: None,
                    gone: false,
                };
                pg_sys::MemoryContextSwitchTo(old);
                slot
            };
            // In the pool before the wait below, which a cancel can end.
            pool.slots.push(slot);
            let mut pid: pg_sys::pid_t = 0;
            // SAFETY: `handle` is a live handle from RegisterDynamicBackgroundWorker.
            let status = unsafe { pg_sys::WaitForBackgroundWorkerStartup(handle, &mut pid) };
            let started = status == pg_sys::BgwHandleStatus::BGWH_STARTED
                || pool.slots[pool.slots.len() - 1].outbox.has_sender();
            if !started {
                // It never ran (a worker that ran and exited already has attached).
                pool.give_back_one();
            }
        }
        pool
    }

    /// How many workers started.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// How many have not exited.
    pub fn live(&self) -> usize {
        self.slots.iter().filter(|s| !s.gone).count()
    }

    /// A worker without a task.
    pub fn idle(&self) -> Option<usize> {
        self.slots.iter().position(|s| s.task.is_none() && !s.gone)
    }

    /// The tasks the workers work on.
    pub fn tasks(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots.iter().filter_map(|s| s.task)
    }

    /// Stop the last worker before it is sent anything, and forget it (so that whoever
    /// needs a worker slot next still finds one).
    pub fn give_back_one(&mut self) {
        let Some(slot) = self.slots.pop() else {
            return;
        };
        terminate_and_wait(&[slot.handle]);
        if let Some(q) = slot.inbox {
            q.detach();
        }
        slot.outbox.detach();
        forget(&[slot.handle]);
    }

    /// Send `worker` its next task (`task` names it in the events).
    pub fn send(&mut self, worker: usize, task: usize, message: &T) -> Result<(), Gone> {
        let slot = &mut self.slots[worker];
        let inbox = slot
            .inbox
            .as_ref()
            .expect("this kind of worker takes tasks");
        match inbox.send(message) {
            Ok(()) => {
                slot.task = Some(task);
                Ok(())
            }
            Err(Gone) => {
                slot.gone = true;
                Err(Gone)
            }
        }
    }

    /// The next event: a worker's report, failure or exit, else (after waiting on the latch
    /// up to 100 ms) a pending cancel or termination, else `Quiet`. Other interrupts are
    /// served here.
    pub fn wait(&mut self) -> Event<R> {
        if let Some(e) = self.poll(false) {
            return e;
        }
        // SAFETY: waiting on this process's own latch; a worker's message sets it.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                100,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        if interrupted() {
            return Event::Interrupted;
        }
        pgrx::check_for_interrupts!();
        Event::Quiet
    }

    /// Whatever a worker said or did first, starting at the next worker's turn.
    fn poll(&mut self, busy_only: bool) -> Option<Event<R>> {
        let n = self.slots.len();
        for i in 0..n {
            let w = (self.turn + i) % n;
            let slot = &mut self.slots[w];
            if slot.gone || (busy_only && slot.task.is_none()) {
                continue;
            }
            let event = match slot.outbox.try_receive::<Wire<R>>() {
                Received::Nothing => continue,
                Received::Message(Ok(Wire::Report(report))) => Event::Report {
                    worker: w,
                    task: slot.task.take(),
                    report,
                },
                Received::Message(Ok(Wire::Failed(failure))) => {
                    slot.gone = true;
                    Event::Failed {
                        worker: w,
                        task: slot.task.take(),
                        failure,
                    }
                }
                Received::Message(Err(e)) => {
                    slot.gone = true;
                    Event::Failed {
                        worker: w,
                        task: slot.task.take(),
                        failure: Failure::internal(format!(
                            "unreadable message from a {}: {e}",
                            self.name
                        )),
                    }
                }
                Received::Gone => {
                    slot.gone = true;
                    Event::Gone {
                        worker: w,
                        task: slot.task.take(),
                    }
                }
            };
            self.turn = w + 1;
            return Some(event);
        }
        None
    }

    /// Pass a cancel on: each worker cancels what it does (SIGINT: its task rolls back, as
    /// a backend's statement does) and reports its failure.
    pub fn cancel(&self) {
        for s in &self.slots {
            if let Some(pid) = pid_of(s.handle) {
                // SAFETY: a signal to a pid the postmaster says is this worker's (running).
                unsafe { libc::kill(pid, libc::SIGINT) };
            }
        }
    }

    /// After `cancel`: the reports still on their way, until no worker has a task or
    /// `within` has passed (a failure or an exit ends a worker's task too).
    pub fn drain(&mut self, within: Duration, mut on_report: impl FnMut(R)) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline && self.slots.iter().any(|s| s.task.is_some()) {
            while let Some(e) = self.poll(true) {
                if let Event::Report { report, .. } = e {
                    on_report(report);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Close the pool: the workers see their queues close and end; wait for them to exit
    /// (terminating any still there after 10 s), then let the segment go. Idempotent.
    pub fn finish(&mut self) {
        if self.seg.is_null() {
            return;
        }
        let slots = std::mem::take(&mut self.slots);
        let handles: Vec<_> = slots.iter().map(|s| s.handle).collect();
        let_go(slots, self.seg);
        self.seg = std::ptr::null_mut();
        if !wait_for_exit(&handles, Duration::from_secs(10)) {
            terminate_and_wait(&handles);
        }
        forget(&handles);
    }
}

impl<T, R> Drop for Pool<T, R> {
    fn drop(&mut self) {
        if self.seg.is_null() {
            return;
        }
        // An error or a cancel in the leader: every worker is terminated (its task rolls
        // back) and gone before the caller goes on (and, say, removes an archive folder).
        let slots = std::mem::take(&mut self.slots);
        let handles: Vec<_> = slots.iter().map(|s| s.handle).collect();
        terminate_and_wait(&handles);
        forget(&handles);
        // While an ERROR unwinds, the abort lets a transaction's segment (and the queue
        // handles in its memory) go; a mapping kept across commits stays until this process
        // exits. Otherwise they are let go here (a mapping left to commit is reported as a
        // leak).
        if !std::thread::panicking() {
            let_go(slots, self.seg);
        }
        self.seg = std::ptr::null_mut();
    }
}

/// Detach every queue of `slots`, then the segment `seg` they lie in (mapped: a pool's `seg`
/// that is not null).
fn let_go(slots: Vec<Slot>, seg: *mut pg_sys::dsm_segment) {
    for s in slots {
        if let Some(q) = s.inbox {
            q.detach();
        }
        s.outbox.detach();
    }
    // SAFETY: the caller passes its pool's mapped segment (not detached yet) and no queue
    // handle into it is left (detached above).
    unsafe { pg_sys::dsm_detach(seg) };
}

/// Register worker `w` of `kind` for segment `seg`; its handle lives in TopMemoryContext
/// (the exit callback uses it) until `forget`.
fn launch<Q, T, R>(
    kind: &Kind<Q, T, R>,
    seg: pg_sys::dsm_handle,
    w: usize,
) -> Option<*mut pg_sys::BackgroundWorkerHandle> {
    let name = if kind.numbered {
        format!("{} {w}", kind.name)
    } else {
        kind.name.to_string()
    };
    let builder = BackgroundWorkerBuilder::new(&name)
        .set_type(kind.name)
        .set_library("pg_backup")
        .set_function(kind.function)
        .set_argument(Some(pg_sys::Datum::from(layout::argument(seg, w))))
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(None)
        .enable_spi_access()
        // SAFETY: reading this backend's pid.
        .set_notify_pid(unsafe { pg_sys::MyProcPid });
    let mut bgw = pg_sys::BackgroundWorker::from(&builder);
    let mut handle: *mut pg_sys::BackgroundWorkerHandle = std::ptr::null_mut();
    // SAFETY: `bgw` is a complete registration; the handle is allocated in TopMemoryContext
    // (switched to and back around the call) and written to `handle` on success.
    let ok = unsafe {
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let ok = pg_sys::RegisterDynamicBackgroundWorker(&mut bgw, &mut handle);
        pg_sys::MemoryContextSwitchTo(old);
        ok
    };
    if !ok {
        return None;
    }
    if let Ok(mut g) = LAUNCHED.lock() {
        g.push(handle as usize);
    }
    Some(handle)
}

/// Ask each worker to terminate and wait (a bounded time, never erroring) until it has.
fn terminate_and_wait(handles: &[*mut pg_sys::BackgroundWorkerHandle]) {
    for &h in handles {
        // SAFETY: `h` is a handle from RegisterDynamicBackgroundWorker not yet freed
        // (`forget` frees it after this); terminating a stopped worker does nothing.
        unsafe { pg_sys::TerminateBackgroundWorker(h) };
    }
    wait_for_exit(handles, Duration::from_secs(10));
}

/// Wait until every worker has stopped, or `within` has passed (false then).
fn wait_for_exit(handles: &[*mut pg_sys::BackgroundWorkerHandle], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if handles.iter().all(|&h| stopped(h)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn status(h: *mut pg_sys::BackgroundWorkerHandle) -> (pg_sys::BgwHandleStatus::Type, i32) {
    let mut pid: pg_sys::pid_t = 0;
    // SAFETY: `h` is a handle from RegisterDynamicBackgroundWorker not yet freed; `pid` is a
    // plain out-parameter.
    let status = unsafe { pg_sys::GetBackgroundWorkerPid(h, &mut pid) };
    (status, pid)
}

fn stopped(h: *mut pg_sys::BackgroundWorkerHandle) -> bool {
    matches!(
        status(h).0,
        pg_sys::BgwHandleStatus::BGWH_STOPPED | pg_sys::BgwHandleStatus::BGWH_POSTMASTER_DIED
    )
}

/// The pid of a running worker.
fn pid_of(h: *mut pg_sys::BackgroundWorkerHandle) -> Option<i32> {
    let (status, pid) = status(h);
    (status == pg_sys::BgwHandleStatus::BGWH_STARTED).then_some(pid)
}

/// Drop stopped workers from the exit list and free their handles.
fn forget(handles: &[*mut pg_sys::BackgroundWorkerHandle]) {
    if let Ok(mut g) = LAUNCHED.lock() {
        g.retain(|h| !handles.iter().any(|x| *x as usize == *h));
    }
    for &h in handles {
        // SAFETY: allocated by RegisterDynamicBackgroundWorker, off the exit list now and
        // not used again (the callers drop their copies).
        unsafe { pg_sys::pfree(h.cast()) };
    }
}

/// A cancel or termination is pending for this process.
fn interrupted() -> bool {
    crate::signals::cancel_requested()
}
