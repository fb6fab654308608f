//! The runs in flight: one slot per backup or restore in shared memory, written by the process
//! that runs it. `backup.progress` reads how far each one is from here (instead of catalog rows
//! updated every few seconds), and the sweep tells a dead run from a live one by it: shared
//! memory is created anew at every server start and after every crash, so a `running` row
//! without a slot belongs to a process that is gone, whatever process has its pid since.
//!
//! Slots exist only when pg_backup is in shared_preload_libraries (shared memory is reserved
//! at server start); without it, a run is alive while a process with its pid exists.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

const SLOTS: usize = 64;
const ID_MAX: usize = 128;
const TABLE_MAX: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Backup = 1,
    Restore = 2,
}

#[derive(Clone, Copy)]
pub struct Slot {
    /// 0 = free, else a `Kind`.
    kind: u8,
    pid: i32,
    database: u32,
    /// Unix time in microseconds.
    started_us: i64,
    id_len: u8,
    id: [u8; ID_MAX],
    table_len: u16,
    table: [u8; TABLE_MAX],
    tables_done: u32,
    tables_total: u32,
    rows_done: u64,
    bytes_done: u64,
    /// Parallel workers copying the tables (create(jobs => N)); 0 = the session alone.
    jobs: u32,
}

impl Slot {
    const FREE: Slot = Slot {
        kind: 0,
        pid: 0,
        database: 0,
        started_us: 0,
        id_len: 0,
        id: [0; ID_MAX],
        table_len: 0,
        table: [0; TABLE_MAX],
        tables_done: 0,
        tables_total: 0,
        rows_done: 0,
        bytes_done: 0,
        jobs: 0,
    };

    fn id(&self) -> &str {
        std::str::from_utf8(&self.id[..self.id_len as usize]).unwrap_or_default()
    }

    fn set_id(&mut self, id: &str) {
        let n = truncated_len(id, ID_MAX);
        self.id[..n].copy_from_slice(&id.as_bytes()[..n]);
        self.id_len = n as u8;
    }
}

/// The longest prefix of `s` that fits in `max` bytes and ends on a character boundary.
fn truncated_len(s: &str, max: usize) -> usize {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}

// SAFETY: plain old data, no pointers.
unsafe impl PGRXSharedMemory for Slot {}

// SAFETY: the lock is attached to shared memory by `init` (pg_shmem_init!), and `TABLE` is
// only used after `enabled()` says that happened.
static TABLE: PgLwLock<[Slot; SLOTS]> = unsafe { PgLwLock::new(c"pg_backup runs") };
/// Set in the postmaster when the slots were reserved; inherited by every process it forks.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// From _PG_init, while shared_preload_libraries is processed.
// pg_shmem_init! tests features of other PostgreSQL versions than this crate declares.
#[allow(unexpected_cfgs)]
pub fn init() {
    pg_shmem_init!(TABLE = [Slot::FREE; SLOTS]);
    ENABLED.store(true, Ordering::Relaxed);
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn my_pid() -> i32 {
    // SAFETY: a process-local global set at process start.
    unsafe { pg_sys::MyProcPid }
}

fn process_exists(pid: i32) -> bool {
    // The process array itself (pg_stat_activity is cached per transaction).
    // SAFETY: looks the pid up in the process array under ProcArrayLock (taken inside), from
    // a backend attached to shared memory; only the pointer's nullness is used.
    unsafe { !pg_sys::BackendPidGetProc(pid).is_null() }
}

/// This process's claim on a slot; the slot is freed when it is dropped (also while an error
/// unwinds) and, through an exit callback, when the process ends without unwinding.
pub struct Claim {
    index: Option<usize>,
}

static EXIT_CALLBACK: std::sync::Once = std::sync::Once::new();

#[pg_guard]
unsafe extern "C-unwind" fn release_all_on_exit(_code: i32, _arg: pg_sys::Datum) {
    if !enabled() {
        return;
    }
    let me = my_pid();
    let mut slots = TABLE.exclusive();
    for s in slots.iter_mut().filter(|s| s.kind != 0 && s.pid == me) {
        *s = Slot::FREE;
    }
}

/// Take a slot for a run of `kind` (`id` may be filled in later with `Claim::set_id`). Without
/// shared memory, or with every slot taken, the run goes on without one.
pub fn claim(kind: Kind, id: &str, tables_total: usize) -> Claim {
    if !enabled() {
        return Claim { index: None };
    }
    // SAFETY: registers a callback with a 'static function pointer, on the backend's thread;
    // once per process (call_once), as PostgreSQL's list of exit callbacks is bounded.
    EXIT_CALLBACK.call_once(|| unsafe {
        pg_sys::before_shmem_exit(Some(release_all_on_exit), pg_sys::Datum::from(0))
    });
    let now_us = chrono::Utc::now().timestamp_micros();
    let mut slots = TABLE.exclusive();
    let index = slots.iter().position(|s| s.kind == 0);
    if let Some(i) = index {
        let s = &mut slots[i];
        *s = Slot::FREE;
        s.kind = kind as u8;
        s.pid = my_pid();
        // SAFETY: a backend-local global set when the backend connected.
        s.database = u32::from(unsafe { pg_sys::MyDatabaseId });
        s.started_us = now_us;
        s.set_id(id);
        s.tables_total = tables_total as u32;
    }
    Claim { index }
}

impl Claim {
    fn with_slot(&self, f: impl FnOnce(&mut Slot)) {
        if let Some(i) = self.index {
            let mut slots = TABLE.exclusive();
            let s = &mut slots[i];
            if s.pid == my_pid() {
                f(s);
            }
        }
    }

    pub fn set_id(&self, id: &str) {
        self.with_slot(|s| s.set_id(id));
    }

    /// The number of parallel workers copying the tables.
    pub fn set_jobs(&self, jobs: usize) {
        self.with_slot(|s| s.jobs = jobs as u32);
    }

    pub fn set_total(&self, tables_total: usize) {
        self.with_slot(|s| s.tables_total = tables_total as u32);
    }

    /// Starting table `done + 1` of the total, `name`; `rows` and `bytes` so far.
    pub fn progress(&self, done: usize, name: &str, rows: u64, bytes: u64) {
        self.with_slot(|s| {
            s.tables_done = done as u32;
            let n = truncated_len(name, TABLE_MAX);
            s.table[..n].copy_from_slice(&name.as_bytes()[..n]);
            s.table_len = n as u16;
            s.rows_done = rows;
            s.bytes_done = bytes;
        });
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(i) = self.index.take() {
            let mut slots = TABLE.exclusive();
            if slots[i].pid == my_pid() {
                slots[i] = Slot::FREE;
            }
        }
    }
}

/// Whether the run recorded as (`kind`, `id`, `pid`) is still going. A restore's id is known
/// only after its row is written, so restores are matched by process.
pub fn alive(kind: Kind, id: &str, pid: Option<i32>) -> bool {
    let Some(pid) = pid else { return false };
    if !enabled() {
        return process_exists(pid);
    }
    let slots = TABLE.share();
    let found = slots
        .iter()
        .any(|s| s.kind == kind as u8 && s.pid == pid && (kind == Kind::Restore || s.id() == id));
    drop(slots);
    found && process_exists(pid)
}

/// One run in flight, as `backup.progress` shows it.
pub struct RunInfo {
    pub kind: &'static str,
    pub id: String,
    pub pid: i32,
    pub started_us: i64,
    pub tables_done: i32,
    pub tables_total: i32,
    pub current_table: Option<String>,
    pub rows_done: i64,
    pub bytes_done: i64,
    pub jobs: Option<i32>,
}

/// The runs of the current database.
pub fn list() -> Vec<RunInfo> {
    if !enabled() {
        return Vec::new();
    }
    // SAFETY: a backend-local global set when the backend connected.
    let db = u32::from(unsafe { pg_sys::MyDatabaseId });
    let copies: Vec<Slot> = TABLE
        .share()
        .iter()
        .filter(|s| s.kind != 0 && s.database == db)
        .copied()
        .collect();
    copies
        .into_iter()
        .map(|s| RunInfo {
            kind: if s.kind == Kind::Backup as u8 {
                "backup"
            } else {
                "restore"
            },
            id: s.id().to_string(),
            pid: s.pid,
            started_us: s.started_us,
            tables_done: s.tables_done as i32,
            tables_total: s.tables_total as i32,
            current_table: (s.table_len > 0)
                .then(|| String::from_utf8_lossy(&s.table[..s.table_len as usize]).into_owned()),
            rows_done: s.rows_done as i64,
            bytes_done: s.bytes_done as i64,
            jobs: (s.jobs > 0).then_some(s.jobs as i32),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_are_cut_on_character_boundaries() {
        assert_eq!(truncated_len("abc", 2), 2);
        assert_eq!(truncated_len("aé", 2), 1);
        let mut s = Slot::FREE;
        s.set_id("backup-1");
        assert_eq!(s.id(), "backup-1");
    }
}
