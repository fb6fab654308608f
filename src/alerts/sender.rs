//! The webhook sender: a dynamic background worker per database, started when a transaction
//! that queued deliveries commits (and by the scheduler's start-up sweep for deliveries left
//! pending by a restart). It posts each due delivery of `backup.webhook_queue` on a helper
//! thread (HTTP only: the threads never call into PostgreSQL), records each attempt, retries
//! with backoff, and exits when nothing is pending. One sender per database at a time (a
//! session-level lock of PostgreSQL's lock manager in a lock space of pg_backup's own, which no
//! SQL function reaches: see [`SENDER_LOCK_SPACE`]). A backup never waits for any of this: it
//! only inserted rows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;

use super::http::{self, Attempt, Request};
use crate::text::{Json, Text};

pub const BACKEND_TYPE: &str = "pg_backup webhooks";
/// Deliveries posted at once.
const CONCURRENCY: usize = 4;
/// How long an idle sender stays before it exits.
const LINGER: Duration = Duration::from_secs(2);
/// Longest wait between two retries of one delivery.
const MAX_BACKOFF_SECS: f64 = 600.0;
/// The fourth field of the sender's lock tag ("ws": webhook sender). The tag is of the
/// advisory type, like `crate::backup_lock`'s, with a fourth field that PostgreSQL's
/// pg_advisory_* functions never use (they use 1 and 2): a session of any role could take any
/// advisory lock and so silence every webhook, but none can take this one. `pg_locks` shows it
/// as `locktype = 'advisory'`, the database's oid, `objsubid = 30579`.
pub const SENDER_LOCK_SPACE: u16 = 0x7773;

fn sender_tag() -> pg_sys::LOCKTAG {
    pg_sys::LOCKTAG {
        // SAFETY: a backend-local global set at connection.
        locktag_field1: u32::from(unsafe { pg_sys::MyDatabaseId }),
        locktag_field2: 0,
        locktag_field3: 0,
        locktag_field4: SENDER_LOCK_SPACE,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

/// Become this database's sender: the lock, at session level (held until released or until
/// the worker exits), without waiting. False: another sender has it.
fn try_lock() -> bool {
    let t = sender_tag();
    // SAFETY: LockAcquire with a tag of the user lock method, inside a transaction of the
    // connected worker; dontWait, so it never sleeps; an error is raised as an ERROR.
    let got =
        unsafe { pg_sys::LockAcquire(&t, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, true, true) };
    got != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
}

fn unlock() {
    let t = sender_tag();
    // SAFETY: LockRelease of the session lock this worker took in `try_lock`.
    unsafe {
        pg_sys::LockRelease(&t, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, true);
    }
}

static START_REGISTERED: AtomicBool = AtomicBool::new(false);

/// Start a sender for this database once the current transaction commits (once per
/// transaction, whatever the number of events).
pub fn start_after_commit() {
    if START_REGISTERED.swap(true, Ordering::Relaxed) {
        return;
    }
    // SAFETY: a backend-local global set at connection.
    let db = unsafe { pg_sys::MyDatabaseId };
    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, move || {
        START_REGISTERED.store(false, Ordering::Relaxed);
        start(db);
    });
    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Abort, || {
        START_REGISTERED.store(false, Ordering::Relaxed);
    });
}

/// Register a sender worker for database `db` (no wait). Without a free worker slot the
/// deliveries wait for the next event or the scheduler's next start.
pub fn start(db: pg_sys::Oid) {
    let started = BackgroundWorkerBuilder::new(BACKEND_TYPE)
        .set_type(BACKEND_TYPE)
        .set_library("pg_backup")
        .set_function("pg_backup_webhook_sender_main")
        .set_extra(&u32::from(db).to_string())
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        .enable_spi_access()
        .load_dynamic();
    if started.is_err() {
        pgrx::log!("pg_backup: no background worker slot free for the webhook sender; deliveries stay pending");
    }
}

/// From the scheduler's start-up sweep of each database: a sender if deliveries are pending.
pub fn start_if_pending() {
    let pending = Spi::get_one::<bool>(&format!(
        "SELECT to_regclass('backup.webhook_queue') IS NOT NULL
                AND EXISTS (SELECT 1 FROM backup.webhook_queue q WHERE {POSTABLE})"
    ));
    if let Ok(Some(true)) = pending {
        // SAFETY: a backend-local global set at connection.
        start(unsafe { pg_sys::MyDatabaseId });
    }
}

/// The wait before retry number `attempts` (1, 2, 4, ... seconds, capped).
pub fn backoff_secs(attempts: i32) -> f64 {
    2f64.powi((attempts - 1).clamp(0, 30)).min(MAX_BACKOFF_SECS)
}

/// After an attempt: the delivery's new status.
pub fn status_after(a: &Attempt, attempts: i32, retries: i32) -> &'static str {
    if a.delivered {
        "delivered"
    } else if !a.retry || attempts > retries {
        "failed"
    } else {
        "pending"
    }
}

struct InFlight {
    attempts: i32,
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_backup_webhook_sender_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = pg_sys::Oid::from(BackgroundWorker::get_extra().parse::<u32>().unwrap_or(0));
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db), None);
    crate::session::disable_dump_timeouts();
    // SAFETY: static NUL-terminated name and value; the worker is connected and on its only
    // thread; a superuser-context override of a user setting cannot fail.
    unsafe {
        pg_sys::SetConfigOption(
            c"default_transaction_read_only".as_ptr(),
            c"off".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
    if !BackgroundWorker::transaction(try_lock) {
        // Another sender works for this database: it sees the new deliveries.
        return;
    }
    let (tx, rx) = mpsc::channel::<(i64, Attempt)>();
    let mut in_flight: HashMap<i64, InFlight> = HashMap::new();
    let mut idle_since: Option<Instant> = None;
    loop {
        if BackgroundWorker::sigterm_received() {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: as a backend does on SIGHUP, in the worker's main loop, outside any
            // transaction.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let done: Vec<(i64, Attempt)> = rx.try_iter().collect();
        if !done.is_empty() {
            let retries = crate::guc::webhook_retries();
            let recorded: Vec<(i64, i32, Attempt)> = done
                .into_iter()
                .filter_map(|(id, a)| in_flight.remove(&id).map(|f| (id, f.attempts + 1, a)))
                .collect();
            BackgroundWorker::transaction(|| {
                for (id, attempts, a) in &recorded {
                    record_attempt(*id, *attempts, a, retries);
                }
            });
        }
        let free = CONCURRENCY.saturating_sub(in_flight.len());
        let due = if free > 0 {
            let busy: Vec<i64> = in_flight.keys().copied().collect();
            BackgroundWorker::transaction(|| claim(&busy, free))
        } else {
            Vec::new()
        };
        let timeout = Duration::from_secs(crate::guc::webhook_timeout_secs());
        for (req, attempts) in due {
            let tx = tx.clone();
            let id = req.delivery_id;
            // With every signal blocked: the worker's handlers must only run on its thread.
            let spawned = crate::threads::spawn("pg_backup webhook", move || {
                let a = http::post(&req, timeout);
                let _ = tx.send((id, a));
            });
            if spawned.is_ok() {
                in_flight.insert(id, InFlight { attempts });
            }
        }
        let mut sleep = Duration::from_millis(100);
        if in_flight.is_empty() {
            match BackgroundWorker::transaction(next_due_in) {
                Some(secs) => {
                    idle_since = None;
                    sleep = Duration::from_secs_f64(secs.clamp(0.01, 1.0));
                }
                None => {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= LINGER {
                        // Let go, then look once more: a delivery queued just before the lock
                        // was released has a sender of its own that found the lock taken.
                        let again = BackgroundWorker::transaction(|| {
                            unlock();
                            next_due_in().is_some() && try_lock()
                        });
                        if !again {
                            break;
                        }
                        idle_since = None;
                    }
                }
            }
        }
        BackgroundWorker::wait_latch(Some(sleep));
    }
}

/// The error of a delivery to a webhook whose URL is not on this server.
pub const NO_URL: &str = "the webhook has no URL here (its row of backup.webhook_secrets is missing, as after a pg_dump and restore): a superuser sets it again with backup.add_webhook(name, url, replace => true)";

/// A pending delivery the sender can post: its webhook has a URL (a row of
/// `backup.webhook_secrets`). The same condition in `claim`, `next_due_in` and
/// `start_if_pending`, so a delivery that cannot be claimed never keeps a sender awake.
const POSTABLE: &str = "q.status = 'pending'
    AND EXISTS (SELECT 1 FROM backup.webhook_secrets s WHERE s.name = q.webhook)";

/// Pending deliveries whose webhook lost its URL (a row of `backup.webhook_secrets` deleted by
/// hand, or deliveries queued before it went) fail now, with [`NO_URL`].
fn fail_without_url() {
    let done = Spi::run_with_args(
        "UPDATE backup.webhook_queue q SET status = 'failed', error = $1,
           finished_at = clock_timestamp()
         WHERE q.status = 'pending'
           AND NOT EXISTS (SELECT 1 FROM backup.webhook_secrets s WHERE s.name = q.webhook)",
        &[crate::text::arg(NO_URL)],
    );
    if let Err(e) = done {
        pgrx::log!("pg_backup webhooks: cannot update the queue: {e}");
    }
}

/// Seconds until the earliest pending delivery is due (None: nothing pending).
fn next_due_in() -> Option<f64> {
    fail_without_url();
    Spi::get_one::<f64>(&format!(
        "SELECT extract(epoch FROM min(q.next_attempt_at) - clock_timestamp())::float8
         FROM backup.webhook_queue q WHERE {POSTABLE}"
    ))
    .ok()
    .flatten()
}

/// Up to `limit` due deliveries not already being posted, with what posting them needs.
fn claim(busy: &[i64], limit: usize) -> Vec<(Request, i32)> {
    Spi::connect(|c| {
        let rows = c.select(
            "SELECT q.id, s.url, s.secret, e.event, e.payload, q.attempts, q.event_id
             FROM backup.webhook_queue q
             JOIN backup.webhook_secrets s ON s.name = q.webhook
             JOIN backup.events e ON e.id = q.event_id
             WHERE q.status = 'pending' AND q.next_attempt_at <= clock_timestamp()
               AND q.id <> ALL ($1)
             ORDER BY q.next_attempt_at, q.id
             LIMIT $2",
            None,
            &[busy.to_vec().into(), (limit as i64).into()],
        )?;
        let mut out = Vec::new();
        for r in rows {
            let id = r.get::<i64>(1)?.unwrap_or_default();
            let url = r.get::<Text>(2)?.map(String::from).unwrap_or_default();
            let secret = r.get::<Text>(3)?.map(String::from);
            let event = r.get::<Text>(4)?.map(String::from).unwrap_or_default();
            let payload = r.get::<Json>(5)?.map(|j| j.0).unwrap_or_default();
            let attempts = r.get::<i32>(6)?.unwrap_or_default();
            let event_id = r.get::<i64>(7)?.unwrap_or_default();
            out.push((
                Request {
                    delivery_id: id,
                    url,
                    secret,
                    event,
                    body: http::body(&payload, event_id),
                },
                attempts,
            ));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .unwrap_or_else(|e| {
        pgrx::log!("pg_backup webhooks: cannot read the queue: {e}");
        Vec::new()
    })
}

fn record_attempt(id: i64, attempts: i32, a: &Attempt, retries: i32) {
    let status = status_after(a, attempts, retries);
    let wait = backoff_secs(attempts);
    let done = Spi::run_with_args(
        "UPDATE backup.webhook_queue SET attempts = $2, last_attempt_at = clock_timestamp(),
           status = $3, http_status = $4, error = $5,
           next_attempt_at = CASE WHEN $3 = 'pending'
                                  THEN clock_timestamp() + make_interval(secs => $6)
                                  ELSE next_attempt_at END,
           finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE clock_timestamp() END
         WHERE id = $1",
        &[
            id.into(),
            attempts.into(),
            status.into(),
            a.http_status.into(),
            a.error.clone().into(),
            wait.into(),
        ],
    );
    if let Err(e) = done {
        pgrx::log!("pg_backup webhooks: cannot record delivery {id}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_end() {
        assert_eq!(backoff_secs(1), 1.0);
        assert_eq!(backoff_secs(2), 2.0);
        assert_eq!(backoff_secs(4), 8.0);
        assert_eq!(backoff_secs(40), MAX_BACKOFF_SECS);
        let net = Attempt {
            delivered: false,
            retry: true,
            http_status: None,
            error: Some("timed out".into()),
        };
        assert_eq!(status_after(&net, 1, 2), "pending");
        assert_eq!(status_after(&net, 3, 2), "failed");
        assert_eq!(status_after(&Attempt::from_status(404), 1, 5), "failed");
        assert_eq!(status_after(&Attempt::from_status(200), 9, 0), "delivered");
    }
}
