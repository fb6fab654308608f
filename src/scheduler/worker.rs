//! The scheduler: a static background worker (registered when pg_backup is in
//! shared_preload_libraries) connected to `backup.database`. It sleeps on its latch until the
//! next due time, a change to backup.schedules, or the end of a run; starts each due schedule
//! in a run worker; records results; reloads on SIGHUP and exits on SIGTERM. Its own errors go
//! to the server log with the schedule's name and never stop it.

use std::collections::HashMap;
use std::time::Duration;

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;

use super::run::{self, RunHandle};
use super::schedules;
use crate::{guc, subtransaction};

/// pg_stat_activity.backend_type of the scheduler (how the wake-up trigger finds it).
pub const BACKEND_TYPE: &str = "pg_backup scheduler";

/// Longest sleep: a safety net only; changes and due times wake the worker themselves.
const MAX_SLEEP: Duration = Duration::from_secs(60);

pub fn register() {
    BackgroundWorkerBuilder::new(BACKEND_TYPE)
        .set_type(BACKEND_TYPE)
        .set_library("pg_backup")
        .set_function("pg_backup_scheduler_main")
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .enable_spi_access()
        .load();
}

struct Due {
    name: String,
    cron: String,
    timezone: String,
    overlap: String,
    queued: bool,
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_backup_scheduler_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(Some(&guc::database()), None);
    crate::catalog::autonomous::set_local_mode();
    // Its transactions are short, but a database default (lock_timeout, transaction_timeout)
    // must not end the scheduler: the timeouts pg_dump turns off, off.
    crate::session::disable_dump_timeouts();
    pgrx::log!(
        "pg_backup scheduler started in database \"{}\"",
        guc::database()
    );
    // After a restart (a crash, an immediate shutdown) no run is left `running`: every
    // database's dead runs are settled now, not at its next pg_backup call.
    crate::catalog::sweep::sweep_every_database();
    let mut running: HashMap<String, RunHandle> = HashMap::new();
    let mut sleep = Duration::ZERO;
    while BackgroundWorker::wait_latch(Some(sleep)) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: what a backend does on SIGHUP, in the scheduler's main loop on its only
            // thread, outside any transaction (ProcessConfigFile starts none of its own).
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if BackgroundWorker::sigterm_received() {
            break;
        }
        sleep = tick(&mut running);
    }
    // Runs still going are ended by the postmaster's shutdown like any backend.
    for (_, h) in running.drain() {
        h.release();
    }
    pgrx::log!("pg_backup scheduler stopped");
}

/// Set while the catalog is at another release than the library (logged once).
static OUTDATED_LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
const OUTDATED_RECHECK: Duration = Duration::from_secs(5);

/// One pass; returns how long to sleep.
#[allow(clippy::result_large_err)]
fn tick(running: &mut HashMap<String, RunHandle>) -> Duration {
    let outcome = BackgroundWorker::transaction(std::panic::AssertUnwindSafe(|| {
        subtransaction::run(|| {
            collect_finished(running);
            if !guc::scheduler_enabled() {
                return MAX_SLEEP;
            }
            let installed =
                Spi::get_one::<bool>("SELECT to_regclass('backup.schedules') IS NOT NULL")
                    .ok()
                    .flatten();
            if installed != Some(true) {
                // CREATE EXTENSION pg_backup in backup.database wakes us through the trigger's
                // first use; until then, check rarely.
                return MAX_SLEEP;
            }
            // A new library before ALTER EXTENSION pg_backup UPDATE: run nothing against the
            // old catalog, say so once, and look again soon (the update itself wakes nobody).
            if let Err(e) = crate::catalog::version::require_current() {
                if !OUTDATED_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    pgrx::warning!(
                        "pg_backup scheduler: schedules paused: {e} ({})",
                        e.hint().unwrap_or_default()
                    );
                }
                return OUTDATED_RECHECK;
            }
            if OUTDATED_LOGGED.swap(false, std::sync::atomic::Ordering::Relaxed) {
                pgrx::log!("pg_backup scheduler: catalog updated, schedules resume");
            }
            // The backend that ran a backup may have died with it: its row says 'running'.
            if let Err(e) = crate::catalog::sweep::sweep() {
                pgrx::log!("pg_backup scheduler: {e}");
            }
            end_overdue(running);
            for due in due_schedules() {
                if running.contains_key(&due.name) {
                    busy(&due);
                    continue;
                }
                start(running, &due);
            }
            prune_history();
            time_to_next(running).min(check_overdue())
        })
    }));
    match outcome {
        Ok(sleep) => sleep,
        Err(e) => {
            pgrx::log!("pg_backup scheduler: {}", subtransaction::message(&e));
            Duration::from_secs(5)
        }
    }
}

fn collect_finished(running: &mut HashMap<String, RunHandle>) {
    let done: Vec<String> = running
        .iter()
        .filter(|(_, h)| h.finished().is_some())
        .map(|(n, _)| n.clone())
        .collect();
    for name in done {
        let handle = running.remove(&name).expect("listed");
        let result = handle.finished().expect("finished");
        handle.release();
        if let Err(e) = schedules::after_scheduled_run(&name, &result) {
            pgrx::log!("pg_backup scheduler: schedule \"{name}\": cannot record the run: {e}");
        }
    }
}

fn due_schedules() -> Vec<Due> {
    Spi::connect(|c| {
        let rows = c.select(
            "SELECT name, cron, timezone, overlap, queued FROM backup.schedules
             WHERE enabled AND next_run_at IS NOT NULL AND next_run_at <= now() ORDER BY next_run_at",
            None,
            &[],
        )?;
        let mut v = Vec::new();
        for r in rows {
            v.push(Due {
                name: r.get::<crate::text::Text>(1)?.unwrap_or_default().0,
                cron: r.get::<crate::text::Text>(2)?.unwrap_or_default().0,
                timezone: r.get::<crate::text::Text>(3)?.unwrap_or_default().0,
                overlap: r.get::<crate::text::Text>(4)?.unwrap_or_default().0,
                queued: r.get::<bool>(5)?.unwrap_or(false),
            });
        }
        Ok::<_, pgrx::spi::Error>(v)
    })
    .unwrap_or_else(|e| {
        pgrx::log!("pg_backup scheduler: cannot read backup.schedules: {e}");
        Vec::new()
    })
}

/// A run past its timeout and the grace did not cancel itself: end its worker (it is then
/// collected as failed like any run that exits without a result).
fn end_overdue(running: &HashMap<String, RunHandle>) {
    for (name, h) in running {
        if h.overdue() {
            pgrx::log!(
                "pg_backup scheduler: schedule \"{name}\": the run is {}s past its timeout; terminating it",
                (h.started.elapsed() - h.timeout.unwrap_or_default()).as_secs()
            );
            h.terminate();
        }
    }
}

/// A due schedule whose previous run still goes: overlap => 'skip' or 'queue'.
fn busy(due: &Due) {
    let outcome = subtransaction::run(|| -> crate::error::Result<()> {
        let overlap = super::policy::Overlap::parse(&due.overlap)?;
        schedules::when_busy(&due.name, overlap, due.queued, &due.cron, &due.timezone)
    });
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => pgrx::log!("pg_backup scheduler: schedule \"{}\": {e}", due.name),
        Err(e) => pgrx::log!(
            "pg_backup scheduler: schedule \"{}\": {}",
            due.name,
            subtransaction::message(&e)
        ),
    }
}

/// How often the history is pruned at most (and at once when backup.history_keep changes).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

struct LastPrune {
    at: std::time::Instant,
    setting: Option<String>,
}

static LAST_PRUNE: std::sync::Mutex<Option<LastPrune>> = std::sync::Mutex::new(None);

/// backup.history_keep: delete history rows past it (see catalog::history::prune_history).
fn prune_history() {
    let setting = guc::history_keep();
    let Ok(mut last) = LAST_PRUNE.lock() else {
        return;
    };
    if let Some(l) = last.as_ref() {
        if l.setting == setting && l.at.elapsed() < PRUNE_EVERY {
            return;
        }
    }
    let changed = last.as_ref().is_none_or(|l| l.setting != setting);
    *last = Some(LastPrune {
        at: std::time::Instant::now(),
        setting: setting.clone(),
    });
    let Some(setting) = setting else {
        return;
    };
    let keep = match super::policy::HistoryKeep::parse(&setting) {
        Ok(k) => k,
        Err(why) => {
            if changed {
                pgrx::warning!(
                    "pg_backup scheduler: backup.history_keep = '{setting}' is not valid ({why}); keeping all history. Use e.g. '30 days', '1000 rows' or '30 days, 1000 rows'."
                );
            }
            return;
        }
    };
    match subtransaction::run(|| crate::catalog::history::prune_history(keep.days, keep.rows)) {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => pgrx::log!(
            "pg_backup scheduler: removed {n} history rows past backup.history_keep = '{setting}'"
        ),
        Ok(Err(e)) => pgrx::log!("pg_backup scheduler: pruning history: {e}"),
        Err(e) => pgrx::log!(
            "pg_backup scheduler: pruning history: {}",
            subtransaction::message(&e)
        ),
    }
}

fn start(running: &mut HashMap<String, RunHandle>, due: &Due) {
    // next_run_at moves past now first: a run missed while the server was down happens once.
    let started = subtransaction::run(|| -> crate::error::Result<Option<RunHandle>> {
        schedules::mark_started(&due.name, &due.cron, &due.timezone)?;
        let Some(req) = schedules::request(&due.name)? else {
            return Ok(None);
        };
        Ok(Some(run::launch(&req, true)?))
    });
    match started {
        Ok(Ok(Some(h))) => {
            running.insert(due.name.clone(), h);
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) => pgrx::log!("pg_backup scheduler: schedule \"{}\": {e}", due.name),
        Err(e) => pgrx::log!(
            "pg_backup scheduler: schedule \"{}\": {}",
            due.name,
            subtransaction::message(&e)
        ),
    }
}

/// Raise schedule_overdue for schedules that became overdue (once per episode; see
/// health::overdue), in a subtransaction of its own so a problem there never stops the runs.
/// Returns how long until the next schedule becomes overdue (capped).
fn check_overdue() -> Duration {
    match subtransaction::run_result(crate::health::overdue::check) {
        Ok(Ok(next)) => next.unwrap_or(MAX_SLEEP).min(MAX_SLEEP),
        Ok(Err(e)) => {
            pgrx::log!("pg_backup scheduler: overdue check: {e}");
            MAX_SLEEP
        }
        Err(e) => {
            pgrx::log!(
                "pg_backup scheduler: overdue check: {}",
                subtransaction::message(&e)
            );
            MAX_SLEEP
        }
    }
}

/// Until the earliest next_run_at of an enabled schedule or the first timeout grace of a
/// running one to end (capped).
fn time_to_next(running: &HashMap<String, RunHandle>) -> Duration {
    let overdue_in = running
        .values()
        .filter_map(|h| {
            let limit = h.timeout? + super::run::TIMEOUT_GRACE;
            Some(limit.saturating_sub(h.started.elapsed()) + Duration::from_millis(100))
        })
        .min()
        .unwrap_or(MAX_SLEEP);
    let secs = Spi::get_one::<f64>(
        "SELECT extract(epoch FROM min(next_run_at) - clock_timestamp())::float8 FROM backup.schedules WHERE enabled",
    )
    .ok()
    .flatten();
    let due_in = match secs {
        Some(s) if s <= 0.0 => Duration::from_millis(10),
        Some(s) => Duration::from_secs_f64(s).min(MAX_SLEEP),
        None => MAX_SLEEP,
    };
    due_in.min(overdue_in)
}

/// Wake the scheduler after the current transaction commits (called by the trigger on
/// backup.schedules), so a new or changed schedule is seen at once.
pub fn wake_after_commit() {
    let pid = Spi::get_one_with_args::<i32>(
        "SELECT (SELECT pid FROM pg_stat_activity WHERE backend_type = $1 LIMIT 1)",
        &[BACKEND_TYPE.into()],
    )
    .ok()
    .flatten();
    if let Some(pid) = pid {
        // SAFETY: runs at commit on this backend's thread; BackendPidGetProc looks the pid up
        // under ProcArrayLock, and a PGPROC's latch stays valid shared memory even if that
        // process exits meanwhile (SetLatch on a latch nobody owns any more is harmless).
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, move || unsafe {
            let proc_ = pg_sys::BackendPidGetProc(pid);
            if !proc_.is_null() {
                pg_sys::SetLatch(&mut (*proc_).procLatch);
            }
        });
    }
}
