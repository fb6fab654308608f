//! A kind of worker (name, entry point, message types) and the error a worker ends with.

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::error::BackupError;

/// A kind of worker: `Q` is what every worker of a pool is given when it starts (the
/// request), `T` a task the leader sends one worker, `R` what a worker reports.
pub struct Kind<Q, T, R> {
    /// The workers' type in pg_stat_activity; with `numbered`, each one's name adds its
    /// number ("pg_backup copy worker 3").
    pub name: &'static str,
    pub numbered: bool,
    /// The entry point: a `#[no_mangle] extern "C-unwind" fn(pg_sys::Datum)` of pg_backup.
    pub function: &'static str,
    /// Marks the segment as one of this kind (a worker refuses any other).
    pub magic: u32,
    /// Bytes of each worker's queue from the leader (0: the leader sends no tasks) and to it.
    pub inbox: usize,
    pub outbox: usize,
    messages: PhantomData<fn(Q, T) -> R>,
}

impl<Q, T, R> Kind<Q, T, R> {
    pub const fn new(
        name: &'static str,
        numbered: bool,
        function: &'static str,
        magic: u32,
        inbox: usize,
        outbox: usize,
    ) -> Self {
        Kind {
            name,
            numbered,
            function,
            magic,
            inbox,
            outbox,
            messages: PhantomData,
        }
    }
}

/// The error a worker ended with, as it travels to the leader, which raises it as its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub sqlstate: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    /// A failure of the plumbing itself (XX000).
    pub fn internal(message: String) -> Failure {
        Failure {
            sqlstate: "XX000".into(),
            message,
            hint: None,
        }
    }

    pub fn of(e: &BackupError) -> Failure {
        Failure {
            sqlstate: e.sqlstate().into(),
            message: e.to_string(),
            hint: e.hint(),
        }
    }

    pub fn into_error(self) -> BackupError {
        BackupError::from_worker(&self.sqlstate, self.message, self.hint)
    }
}
