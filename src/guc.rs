//! Settings (`backup.*`). One `init()` from `_PG_init`, one getter per setting.

use std::ffi::CString;
use std::path::PathBuf;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

static DIRECTORY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
static COMPRESSION: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"zstd"));
static COMPRESSION_LEVEL: GucSetting<i32> = GucSetting::<i32>::new(DEFAULT_COMPRESSION_LEVEL);
static RESTORE_MAINTENANCE_WORK_MEM: GucSetting<i32> = GucSetting::<i32>::new(512 * 1024);
/// kB; 64MB: pgbench's scale-10 table (128MB) is split in two for two jobs.
static SPLIT_TABLE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(64 * 1024);
static SCHEDULER_ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
static DEFAULT_STORAGE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static IDENTITY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static ALLOW_UNSIGNED: GucSetting<bool> = GucSetting::<bool>::new(false);
static RESTORE_STATISTICS: GucSetting<bool> = GucSetting::<bool>::new(true);
static OVERDUE_GRACE: GucSetting<i32> = GucSetting::<i32>::new(DEFAULT_OVERDUE_GRACE_SECS);

/// backup.overdue_grace: one hour, so a daily backup that takes up to an hour is not reported
/// overdue while it runs (README, "Health and overdue schedules").
pub const DEFAULT_OVERDUE_GRACE_SECS: i32 = 3600;
static SCHEDULE_TIMEZONE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"UTC"));
static RETRY_DELAY: GucSetting<i32> = GucSetting::<i32>::new(60);
static HISTORY_KEEP: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
// Alerts (issue 21): webhook deliveries and the events outbox.
static WEBHOOK_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(10);
static WEBHOOK_RETRIES: GucSetting<i32> = GucSetting::<i32>::new(6);
static EVENTS_KEEP_DAYS: GucSetting<i32> = GucSetting::<i32>::new(30);
// Restore drills (issue 21): how many may run at once in one database.
static MAX_DRILLS: GucSetting<i32> = GucSetting::<i32>::new(1);

/// gzip level used by `compression => 'gzip'`: 6, like pg_dump, so archives are as small as
/// its dumps; `gzip:1` is the fast choice (see README, "Benchmarks").
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 6;

pub fn init() {
    GucRegistry::define_string_guc(
        c"backup.directory",
        c"Directory where pg_backup writes backups.",
        c"Empty means 'pg_backup' under the data directory. Point it at another disk in production.",
        &DIRECTORY,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"backup.database",
        c"Database whose backup.schedules the scheduler runs.",
        c"Like cron.database_name: the scheduler worker connects to this database.",
        &DATABASE,
        // PostgreSQL refuses new postmaster-level settings after startup; loaded later (no
        // scheduler then), the setting is only informational.
        // SAFETY: a plain bool global, read from _PG_init on the process's only thread.
        if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
            GucContext::Postmaster
        } else {
            GucContext::Sighup
        },
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"backup.compression",
        c"Compression of backups that do not name one: zstd, zstd:N, gzip, gzip:N or none.",
        c"zstd (level 3) is faster than gzip:1 and smaller than gzip:6 (see README, Benchmarks).",
        &COMPRESSION,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"backup.compression_level",
        c"gzip level for compression => 'gzip'.",
        c"1 (fastest) to 9 (smallest).",
        &COMPRESSION_LEVEL,
        1,
        9,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"backup.restore_maintenance_work_mem",
        c"maintenance_work_mem of a restore's index builds, when the session's is lower.",
        c"0 leaves maintenance_work_mem as it is.",
        &RESTORE_MAINTENANCE_WORK_MEM,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"backup.split_table_size",
        c"A table at least this big is backed up as several data files, each a range of its heap blocks.",
        c"Its parts are copied, and restored, by several jobs at once. 0 never splits a table.",
        &SPLIT_TABLE_SIZE,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_bool_guc(
        c"backup.scheduler_enabled",
        c"Whether the scheduler worker starts scheduled backups.",
        c"Reloaded on SIGHUP; running backups finish.",
        &SCHEDULER_ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"backup.default_storage",
        c"Storage target that create() and schedules copy backups to when none is named.",
        c"The name of a target from backup.storages; empty means local only.",
        &DEFAULT_STORAGE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"backup.identity_file",
        c"File with the age secret key(s) that decrypt encrypted backups.",
        c"Used by restore() and verify() when no identity is passed. Superuser-only.",
        &IDENTITY_FILE,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_bool_guc(
        c"backup.allow_unsigned",
        c"Whether a superuser's verify(), restore() and rescan() accept unsigned archives of pg_backup 0.1.0 and 0.2.0.",
        c"Archives of 0.3.0 and later are always signed; a bad signature is never accepted. Superuser-only; every use is logged.",
        &ALLOW_UNSIGNED,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"backup.restore_statistics",
        c"Whether restore() applies a backup's planner statistics instead of analyzing the tables it loaded (PostgreSQL 18 and later).",
        c"Off: every loaded table is analyzed, as on PostgreSQL 15.",
        &RESTORE_STATISTICS,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"backup.overdue_grace",
        c"How long after its due time a schedule without a new success counts as overdue.",
        c"backup.health and backup.metrics() show it, and the scheduler raises schedule_overdue once. Set it above the longest backup's duration.",
        &OVERDUE_GRACE,
        0,
        i32::MAX,
        // The view and the scheduler must agree: postgresql.conf / ALTER SYSTEM, reloaded.
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"backup.max_drills",
        c"Restore drills that may run at once in one database.",
        c"Each drill takes two background worker slots and disk space for a restored copy; 0 disables drills.",
        &MAX_DRILLS,
        0,
        1000,
        // Not per session or per database: an operator must not raise it for itself.
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"backup.schedule_timezone",
        c"Time zone of schedules created without timezone =>.",
        c"An IANA name such as Europe/Berlin; the cron fields are wall-clock times there.",
        &SCHEDULE_TIMEZONE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"backup.retry_delay",
        c"Wait before the first retry of a failed scheduled backup; each further retry waits twice as long.",
        c"The n-th retry waits retry_delay * 2^(n-1), at most 60 times retry_delay.",
        &RETRY_DELAY,
        1,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"backup.history_keep",
        c"How long the scheduler keeps history rows: e.g. '30 days', '1000 rows' or '30 days, 1000 rows'.",
        c"Empty keeps everything. Rows of backups whose archive is still kept are never removed.",
        &HISTORY_KEEP,
        GucContext::Sighup,
        GucFlags::default(),
    );
    init_alerts();
}

/// The settings of alerts (issue 21).
fn init_alerts() {
    GucRegistry::define_int_guc(
        c"backup.webhook_timeout",
        c"Seconds a webhook delivery may take to connect, and then to be answered.",
        c"A target that does not answer in time counts as a failed attempt (retried).",
        &WEBHOOK_TIMEOUT,
        1,
        300,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"backup.webhook_retries",
        c"How many times a failed webhook delivery is tried again.",
        c"After 1, 2, 4, ... seconds (at most 10 minutes apart); then the delivery is failed.",
        &WEBHOOK_RETRIES,
        0,
        20,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"backup.events_keep_days",
        c"Days backup.events keeps an event (and its deliveries).",
        c"Events with a delivery still pending are kept.",
        &EVENTS_KEEP_DAYS,
        1,
        36500,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

/// backup.webhook_timeout, in seconds.
pub fn webhook_timeout_secs() -> u64 {
    WEBHOOK_TIMEOUT.get().max(1) as u64
}

/// backup.webhook_retries.
pub fn webhook_retries() -> i32 {
    WEBHOOK_RETRIES.get().max(0)
}

/// backup.events_keep_days.
pub fn events_keep_days() -> i32 {
    EVENTS_KEEP_DAYS.get().max(1)
}

/// The backup directory: the setting, or `pg_backup` under the data directory.
pub fn directory() -> PathBuf {
    match DIRECTORY.get() {
        Some(s) if !s.as_bytes().is_empty() => PathBuf::from(s.to_string_lossy().into_owned()),
        _ => {
            // SAFETY: DataDir is set before any backend runs SQL.
            let data_dir = unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::DataDir) };
            PathBuf::from(data_dir.to_string_lossy().into_owned()).join("pg_backup")
        }
    }
}

pub fn database() -> String {
    DATABASE
        .get()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "postgres".into())
}

/// backup.compression: what create() and schedules use for a compression left NULL.
pub fn compression() -> String {
    COMPRESSION
        .get()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "zstd".into())
}

/// backup.compression_level: the level of a bare `gzip`.
pub fn compression_level() -> u32 {
    COMPRESSION_LEVEL.get() as u32
}

pub fn restore_maintenance_work_mem_kb() -> i64 {
    RESTORE_MAINTENANCE_WORK_MEM.get() as i64
}

/// `backup.split_table_size` in bytes; None: never split.
pub fn split_table_size() -> Option<u64> {
    let kb = SPLIT_TABLE_SIZE.get();
    (kb > 0).then_some(kb as u64 * 1024)
}

pub fn scheduler_enabled() -> bool {
    SCHEDULER_ENABLED.get()
}

fn nonempty(s: &GucSetting<Option<CString>>) -> Option<String> {
    s.get()
        .map(|v| v.to_string_lossy().trim().to_string())
        .filter(|v| !v.is_empty())
}

pub fn default_storage() -> Option<String> {
    nonempty(&DEFAULT_STORAGE)
}

pub fn identity_file() -> Option<PathBuf> {
    nonempty(&IDENTITY_FILE).map(PathBuf::from)
}

/// backup.allow_unsigned: a superuser accepts unsigned archives of releases before 0.3.0
/// (security::signing decides; only a superuser caller's setting counts).
pub fn allow_unsigned() -> bool {
    ALLOW_UNSIGNED.get()
}

pub fn restore_statistics() -> bool {
    RESTORE_STATISTICS.get()
}

/// backup.overdue_grace in seconds.
pub fn overdue_grace_secs() -> i64 {
    OVERDUE_GRACE.get() as i64
}

/// backup.max_drills: drills that may run at once in one database.
pub fn max_drills() -> i32 {
    MAX_DRILLS.get()
}

/// backup.schedule_timezone: the time zone of a schedule created without one.
pub fn schedule_timezone() -> String {
    nonempty(&SCHEDULE_TIMEZONE).unwrap_or_else(|| "UTC".into())
}

/// backup.retry_delay: the wait before a schedule's first retry.
pub fn retry_delay() -> std::time::Duration {
    std::time::Duration::from_secs(RETRY_DELAY.get().max(1) as u64)
}

/// backup.history_keep as written (parsed by catalog::history_keep).
pub fn history_keep() -> Option<String> {
    nonempty(&HISTORY_KEEP)
}
