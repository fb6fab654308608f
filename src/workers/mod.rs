//! pg_backup's pools of dynamic background workers, written once (as pg_restore's parallel.c
//! owns its workers): backup's parallel create (`backup::parallel`), restore's job workers
//! (`restore::parallel`) and the one worker that runs a restore that commits as it goes
//! (`restore::background`) say what a task and a report are; how they travel is here.
//!
//! - `kind`: a kind of worker, and `Failure`, the error a worker ends with.
//! - `layout`: the shared segment (a header, the request, a pair of queues per worker).
//! - `pool`: the leader's side: launch, send a task, wait for reports (interrupt-aware),
//!   cancel, close, and terminate every worker on an error or when the leader exits.
//! - `worker`: the worker's side: attach, the request, its inbox and outbox.
//! - `queue`: typed messages (JSON) over a `shm_mq`.
//!
//! A kind of worker is a `Kind` constant: its name (what pg_stat_activity shows), its entry
//! point (a `#[no_mangle]` function of this library, looked up by name when it starts) and
//! the types of its request, tasks and reports, so that both sides agree at compile time.

mod kind;
mod layout;
mod pool;
mod queue;
mod worker;

pub use kind::{Failure, Kind};
pub use pool::{Event, Life, Pool};
pub use queue::Gone;
pub use worker::Worker;
