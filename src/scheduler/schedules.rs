//! `backup.schedules`: writing schedules (checked when written, never discovered bad later by
//! the worker), running one now, and recording what a run did.

use chrono::Utc;
use pgrx::prelude::*;

use super::cron::{self, Schedule};
use super::policy::{self, Overlap};
use super::run::{self, RunRequest, RunResult};
use crate::backup::options::{CreateArgs, CreateOptions, Defaults};
use crate::error::{BackupError, Result};
use crate::guc;
use crate::text;

pub struct ScheduleArgs {
    pub name: String,
    pub cron: String,
    pub database: Option<String>,
    pub create: CreateArgs,
    pub keep_last: Option<i32>,
    pub keep_days: Option<i32>,
    pub enabled: bool,
    /// NULL: backup.schedule_timezone.
    pub timezone: Option<String>,
    /// The longest a run may take, in seconds.
    pub timeout_secs: Option<f64>,
    pub retries: i32,
    /// 'skip' or 'queue' (parsed by [`Overlap::parse`]).
    pub overlap: String,
    /// Stored for drills (scheduler/drills own what they do).
    pub drill: bool,
    pub drill_checks: Option<Vec<String>>,
}

/// Most retries a schedule may ask for (the backoff is capped, so more would only repeat
/// failing runs for hours).
pub const MAX_RETRIES: i32 = 100;

/// The time zone of a schedule: the one given, else backup.schedule_timezone.
fn resolve_timezone(given: Option<&str>) -> Result<chrono_tz::Tz> {
    match given {
        Some(tz) => cron::timezone(tz),
        None => {
            let setting = guc::schedule_timezone();
            cron::timezone(&setting).map_err(|e| {
                BackupError::invalid(format!(
                    "backup.schedule_timezone is set to an unknown time zone \"{}\"",
                    setting.escape_debug()
                ))
                .with_hint(e.hint().unwrap_or_default())
            })
        }
    }
}

pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BackupError::invalid(format!("invalid schedule name \"{}\"", name.escape_debug()))
            .with_hint("A schedule name is 1 to 64 characters from A-Z a-z 0-9 . _ - and starts with a letter or digit."))
    }
}

/// The next run of `cron` in `tz` after now, as RFC 3339 (UTC); an expression that never fires
/// is an error.
pub fn next_run(cron: &str, tz: chrono_tz::Tz) -> Result<String> {
    let s = Schedule::parse(cron)?;
    let next = s.next_after(tz, Utc::now()).ok_or_else(|| {
        BackupError::invalid(format!("cron expression \"{cron}\" never fires"))
            .with_hint("Check the day of month against the month (e.g. February has no 30th).")
    })?;
    Ok(next.to_rfc3339())
}

fn preloaded() -> bool {
    Spi::get_one::<String>("SELECT current_setting('shared_preload_libraries')")
        .ok()
        .flatten()
        .is_some_and(|s| {
            s.split(',')
                .any(|l| l.trim().trim_matches('"') == "pg_backup")
        })
}

/// Add or replace a schedule.
pub fn upsert(a: ScheduleArgs) -> Result<()> {
    validate_name(&a.name)?;
    let overlap = Overlap::parse(&a.overlap)?;
    if !(0..=MAX_RETRIES).contains(&a.retries) {
        return Err(BackupError::invalid(format!(
            "retries must be from 0 to {MAX_RETRIES}"
        ))
        .with_hint("0 (the default) tries a failed run no more; n tries it again up to n times, with growing waits."));
    }
    if matches!(a.timeout_secs, Some(t) if !(t > 0.0 && t.is_finite())) {
        return Err(BackupError::invalid("timeout must be a positive interval")
            .with_hint("E.g. timeout => '2 hours'; leave it NULL for no limit."));
    }
    let tz = resolve_timezone(a.timezone.as_deref())?;
    let next = next_run(&a.cron, tz)?;
    // The options must make a valid backup now, not fail at 3 a.m.
    CreateOptions::parse(a.create.clone(), &Defaults::from_settings())?;
    for (what, v) in [("keep_last", a.keep_last), ("keep_days", a.keep_days)] {
        if matches!(v, Some(n) if n < 1) {
            return Err(BackupError::invalid(format!("{what} must be at least 1"))
                .with_hint("Leave it NULL to keep every backup of this schedule."));
        }
    }
    let database = match a.database {
        Some(d) => d,
        None => text::current_database(),
    };
    let exists = text::database_exists(&database)?;
    if !exists {
        return Err(
            BackupError::unknown(format!("database \"{database}\" does not exist")).with_hint(
                "database => names the database to back up; pg_backup must be installed there.",
            ),
        );
    }
    text::run_with_args(
        "INSERT INTO backup.schedules (name, cron, database, options, keep_last, keep_days, enabled, next_run_at,
                                       timezone, timeout, retries, overlap, drill, drill_checks)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::timestamptz,
                 $9, make_interval(secs => $10), $11, $12, $13, $14)
         ON CONFLICT (name) DO UPDATE SET cron = EXCLUDED.cron, database = EXCLUDED.database,
           options = EXCLUDED.options, keep_last = EXCLUDED.keep_last, keep_days = EXCLUDED.keep_days,
           enabled = EXCLUDED.enabled, next_run_at = EXCLUDED.next_run_at,
           timezone = EXCLUDED.timezone, timeout = EXCLUDED.timeout, retries = EXCLUDED.retries,
           overlap = EXCLUDED.overlap, drill = EXCLUDED.drill, drill_checks = EXCLUDED.drill_checks,
           retry = 0, queued = false",
        &[
            text::arg(a.name),
            text::arg(a.cron.trim()),
            text::arg(database),
            crate::text::Json(serde_json::to_value(&a.create).expect("options serialize")).into(),
            a.keep_last.into(),
            a.keep_days.into(),
            a.enabled.into(),
            next.into(),
            text::arg(tz.name()),
            a.timeout_secs.into(),
            a.retries.into(),
            text::arg(overlap.as_str()),
            a.drill.into(),
            match &a.drill_checks {
                Some(checks) => text::args(checks),
                None => Option::<Vec<text::Text>>::None.into(),
            },
        ],
    )?;
    if !preloaded() {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_WARNING,
            "pg_backup is not in shared_preload_libraries: the schedule is stored, but no scheduler worker will run it",
            "pg_backup",
        )
        .set_hint("Add it in postgresql.conf: shared_preload_libraries = 'pg_backup' (restart needed).")
        .report(PgLogLevel::WARNING);
    } else {
        let here = text::current_database();
        if here != guc::database() {
            crate::error::report(
                PgLogLevel::WARNING,
                PgSqlErrorCode::ERRCODE_WARNING,
                &format!(
                    "the scheduler reads backup.schedules in database \"{}\", not \"{}\": this schedule will not run",
                    guc::database(),
                    here
                ),
                None,
                "pg_backup",
            );
        }
    }
    Ok(())
}

pub fn remove(name: &str) -> Result<bool> {
    validate_name(name)?;
    let gone = Spi::get_one_with_args::<bool>(
        "WITH d AS (DELETE FROM backup.schedules WHERE name = $1 RETURNING 1) SELECT EXISTS (SELECT 1 FROM d)",
        &[text::arg(name)],
    )?
    .unwrap_or(false);
    if !gone {
        return Err(unknown_schedule(name));
    }
    Ok(true)
}

pub fn unknown_schedule(name: &str) -> BackupError {
    BackupError::unknown(format!("schedule \"{name}\" does not exist"))
        .with_hint("See SELECT name, cron, enabled FROM backup.schedules;")
}

/// The run request for schedule `name`, from its row.
pub fn request(name: &str) -> Result<Option<RunRequest>> {
    let row = Spi::get_one_with_args::<text::Json>(
        "SELECT (SELECT jsonb_build_object('schedule', name, 'database', database, 'options', options,
                                           'keep_last', keep_last, 'keep_days', keep_days,
                                           'drill', drill, 'drill_checks', drill_checks,
                                           'drill_role', drill_role,
                                           'timeout_secs', extract(epoch FROM timeout)::float8,
                                           'attempt', retry + 1)
                 FROM backup.schedules WHERE name = $1)",
        &[text::arg(name)],
    )?;
    Ok(match row {
        Some(j) => Some(
            serde_json::from_value(j.0)
                .map_err(|e| BackupError::invalid(format!("schedule {name} is damaged: {e}")))?,
        ),
        None => None,
    })
}

/// Record what a run did on its schedule row: its status, and for a success what backup.health
/// and backup.metrics() report (the backup's own row is in the schedule's database, which may
/// be another one); a failure counts in failed_runs. `last_backup_id`: the last backup
/// completed (a failed run's backup id is in its result, not here).
pub fn record(name: &str, r: &RunResult) -> Result<()> {
    Spi::run_with_args(
        "UPDATE backup.schedules SET last_status = $2,
           last_backup_id = CASE WHEN $2 = 'completed' THEN coalesce($3, last_backup_id) ELSE last_backup_id END,
           last_success_at = CASE WHEN $2 = 'completed' THEN clock_timestamp() ELSE last_success_at END,
           last_success_backup_id = CASE WHEN $2 = 'completed' THEN $3 ELSE last_success_backup_id END,
           last_success_duration = CASE WHEN $2 = 'completed' THEN make_interval(secs => $4) ELSE last_success_duration END,
           last_success_bytes = CASE WHEN $2 = 'completed' THEN $5 ELSE last_success_bytes END,
           last_success_rows = CASE WHEN $2 = 'completed' THEN $6 ELSE last_success_rows END,
           failed_runs = failed_runs + CASE WHEN $2 = 'failed' THEN 1 ELSE 0 END
         WHERE name = $1",
        &[
            text::arg(name),
            r.status.clone().into(),
            r.backup_id.clone().into(),
            r.duration_secs.into(),
            r.bytes.into(),
            r.rows.into(),
        ],
    )?;
    Ok(())
}

/// The schedule's row as the scheduler's decisions need it.
struct State {
    cron: String,
    timezone: String,
    retries: i32,
    retry: i32,
    queued: bool,
}

fn state(name: &str) -> Result<Option<State>> {
    Ok(Spi::connect(|c| {
        let t = c.select(
            "SELECT cron, timezone, retries, retry, queued FROM backup.schedules WHERE name = $1",
            None,
            &[text::arg(name)],
        )?;
        let Some(r) = t.into_iter().next() else {
            return Ok::<_, pgrx::spi::Error>(None);
        };
        Ok(Some(State {
            cron: r.get::<text::Text>(1)?.unwrap_or_default().0,
            timezone: r.get::<text::Text>(2)?.unwrap_or_default().0,
            retries: r.get::<i32>(3)?.unwrap_or(0),
            retry: r.get::<i32>(4)?.unwrap_or(0),
            queued: r.get::<bool>(5)?.unwrap_or(false),
        }))
    })?)
}

/// What the scheduler does when one of its runs has ended: record it; after a failure, the
/// next retry (backup.retry_delay, doubling) unless none is left or the next regular run
/// comes first; a run queued meanwhile (overlap => 'queue') is due at once.
pub fn after_scheduled_run(name: &str, r: &RunResult) -> Result<()> {
    record(name, r)?;
    let Some(st) = state(name)? else {
        return Ok(());
    };
    let now = Utc::now();
    match r.status.as_str() {
        "failed" => {
            let next_fire = cron::next_after(&st.cron, &st.timezone, now)?;
            match policy::retry_after_failure(
                st.retries.max(0) as u32,
                st.retry.max(0) as u32,
                now,
                guc::retry_delay(),
                next_fire,
            ) {
                Some((n, at)) => {
                    pgrx::log!(
                        "pg_backup: schedule \"{name}\" failed; retry {n} of {} at {}",
                        st.retries,
                        at.to_rfc3339()
                    );
                    Spi::run_with_args(
                        "UPDATE backup.schedules SET retry = $2, next_run_at = $3::timestamptz WHERE name = $1",
                        &[text::arg(name), (n as i32).into(), at.to_rfc3339().into()],
                    )?
                }
                None => Spi::run_with_args(
                    "UPDATE backup.schedules SET retry = 0 WHERE name = $1",
                    &[text::arg(name)],
                )?,
            }
        }
        // A manual run_schedule() held the schedule: this fire time did not run.
        "skipped" => Spi::run_with_args(
            "UPDATE backup.schedules SET skipped_runs = skipped_runs + 1, last_skipped_at = now()
             WHERE name = $1",
            &[text::arg(name)],
        )?,
        _ => Spi::run_with_args(
            "UPDATE backup.schedules SET retry = 0 WHERE name = $1",
            &[text::arg(name)],
        )?,
    }
    if st.queued {
        // The queued run is a fire time of its own: its first try, now.
        Spi::run_with_args(
            "UPDATE backup.schedules SET next_run_at = now(), retry = 0 WHERE name = $1",
            &[text::arg(name)],
        )?;
    }
    Ok(())
}

/// A fire time of a schedule whose previous run still goes: skipped (counted) or queued (at
/// most one), and next_run_at moves on to the next fire time.
pub fn when_busy(name: &str, overlap: Overlap, queued: bool, cron: &str, tz: &str) -> Result<()> {
    let next = cron::next_after(cron, tz, Utc::now())?.map(|t| t.to_rfc3339());
    match policy::when_busy(overlap, queued) {
        policy::Busy::Skip => {
            pgrx::log!(
                "pg_backup: schedule \"{name}\": skipped a run, the previous one still goes (overlap => '{}')",
                overlap.as_str()
            );
            Spi::run_with_args(
                "UPDATE backup.schedules SET next_run_at = $2::timestamptz,
                   skipped_runs = skipped_runs + 1, last_skipped_at = now()
                 WHERE name = $1",
                &[text::arg(name), next.into()],
            )?
        }
        policy::Busy::Queue => Spi::run_with_args(
            "UPDATE backup.schedules SET next_run_at = $2::timestamptz, queued = true WHERE name = $1",
            &[text::arg(name), next.into()],
        )?,
    }
    Ok(())
}

/// Mark a run as started and move next_run_at past now (at most one catch-up run).
pub fn mark_started(name: &str, cron: &str, tz: &str) -> Result<()> {
    let next = cron::next_after(cron, tz, Utc::now())?.map(|t| t.to_rfc3339());
    Spi::run_with_args(
        "UPDATE backup.schedules SET last_run_at = now(), last_status = 'running', next_run_at = $2::timestamptz,
           queued = false
         WHERE name = $1",
        &[text::arg(name), next.into()],
    )?;
    Ok(())
}

/// run_schedule(): the same worker the scheduler uses, waited for.
pub fn run_now(name: &str) -> Result<RunResult> {
    validate_name(name)?;
    let mut req = request(name)?.ok_or_else(|| unknown_schedule(name))?;
    // A run by hand is no retry of the schedule's, whatever state the schedule is in.
    req.attempt = 1;
    Spi::run_with_args(
        "UPDATE backup.schedules SET last_run_at = now(), last_status = 'running' WHERE name = $1",
        &[text::arg(name)],
    )?;
    let result = run::launch(&req, false)?.wait();
    record(name, &result)?;
    Ok(result)
}
