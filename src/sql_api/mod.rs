//! The SQL surface, schema `backup`. Each function is thin: arguments into an options struct,
//! call the core, turn the result into rows. Errors leave through `OrRaise` (one SQLSTATE each).

use pgrx::datum::Interval;
use pgrx::prelude::*;

use crate::backup::create;
use crate::backup::manage;
use crate::backup::options::{CreateArgs, CreateOptions, Defaults};
use crate::catalog::{runs, sweep};
use crate::error::{BackupError, OrRaise};
use crate::restore::plan::{Existing, OnError};
use crate::restore::RestoreOptions;
use crate::scheduler::schedules::{self, ScheduleArgs};
use crate::security;
use crate::text::Text;

/// A text[] argument: NULL means "not given"; a NULL inside is an error. Text arguments that
/// may hold names or labels are read as [`Text`] (UTF-8 whatever the database's encoding).
type Names = Option<Vec<Option<Text>>>;

/// A required argument (a NULL is 22004 with a HINT, never pgrx's internal error or a NULL
/// result).
fn required<T>(value: Option<T>, name: &str, hint: &str) -> T {
    value
        .ok_or_else(|| BackupError::null(name, hint))
        .or_raise()
}

/// A text argument as UTF-8 (converted from the database's encoding: pgrx's own `String`
/// argument would be read as UTF-8 and fail in a LATIN1 database).
fn text(value: Option<Text>) -> Option<String> {
    value.map(String::from)
}

/// A list of names without NULLs.
fn names(value: Names, name: &str) -> Option<Vec<String>> {
    value.map(|list| {
        list.into_iter()
            .map(|v| {
                v.map(String::from)
                    .ok_or_else(|| BackupError::NullArgument {
                        message: format!("{name} must not contain NULL"),
                        hint: Some(format!(
                            "List names as '{{schema.table, ...}}', or leave {name} out."
                        )),
                    })
            })
            .collect::<crate::error::Result<Vec<String>>>()
            .or_raise()
    })
}

/// Functions that write refuse clearly on a hot standby (rather than fail deep inside).
fn writes(what: &str) {
    if crate::catalog::autonomous::in_recovery() {
        BackupError::on_standby(what).raise();
    }
}

/// Entry to every function: the caller's context, then the dead runs of this database are
/// settled (a crashed backup's row does not stay `running`).
fn enter() -> security::Caller {
    let caller = security::enter().or_raise();
    sweep::on_call();
    caller
}

mod alerts;
mod compat;
mod drill;
pub mod health;
mod signing;

#[allow(clippy::too_many_arguments)]
#[pg_extern(name = "create")]
fn create_backup_0_2(
    label: default!(Option<Text>, "NULL"),
    schemas: default!(Names, "NULL"),
    tables: default!(Names, "NULL"),
    exclude_tables: default!(Names, "NULL"),
    exclude_data: default!(Names, "NULL"),
    schema_only: default!(Option<bool>, false),
    data_only: default!(Option<bool>, false),
    format: default!(Option<Text>, "'native'"),
    compression: default!(Option<Text>, "NULL"),
    verbose: default!(Option<bool>, false),
    storage: default!(Option<Text>, "NULL"),
    keep_local: default!(Option<bool>, true),
    encrypt_to: default!(Names, "NULL"),
    jobs: default!(Option<i32>, 1),
) -> TableIterator<
    'static,
    (
        name!(backup_id, String),
        name!(status, String),
        name!(tables, i64),
        name!(rows, i64),
        name!(bytes, i64),
        name!(duration, Interval),
        name!(path, Text),
    ),
> {
    let (format, compression, storage) = (text(format), text(compression), text(storage));
    let args = CreateArgs {
        label: label.map(String::from),
        schemas: names(schemas, "schemas"),
        tables: names(tables, "tables"),
        exclude_tables: names(exclude_tables, "exclude_tables"),
        exclude_data: names(exclude_data, "exclude_data"),
        schema_only: Some(required(
            schema_only,
            "schema_only",
            "Pass true or false (the default).",
        )),
        data_only: Some(required(
            data_only,
            "data_only",
            "Pass true or false (the default).",
        )),
        format: Some(required(
            format,
            "format",
            "Use 'native' (the default), 'sql', 'json' or 'csv'.",
        )),
        // NULL: the default (backup.compression).
        compression,
        verbose: Some(required(
            verbose,
            "verbose",
            "Pass true or false (the default).",
        )),
        storage,
        keep_local: Some(required(
            keep_local,
            "keep_local",
            "Pass true (keep the local copy, the default) or false.",
        )),
        encrypt_to: names(encrypt_to, "encrypt_to"),
        jobs: Some(required(
            jobs,
            "jobs",
            "Pass a number of parallel workers of 1 (the default) or more.",
        )),
    };
    writes("backup.create()");
    let caller = enter();
    let opts = CreateOptions::parse(args, &Defaults::from_settings()).or_raise();
    let s = create::create(&opts, &caller, None).or_raise();
    let duration = Interval::from_micros(s.duration.as_micros() as i64);
    TableIterator::once((
        s.backup_id,
        s.status,
        s.tables,
        s.rows,
        s.bytes,
        duration,
        Text(s.path),
    ))
}

#[allow(clippy::type_complexity)]
#[pg_extern(name = "verify")]
fn verify_0_2(
    backup_id: default!(Option<Text>, "NULL"),
    deep: default!(Option<bool>, true),
    storage: default!(Option<Text>, "NULL"),
    identity: default!(Option<Text>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(backup_id, String),
        name!(file, String),
        name!(status, String),
        name!(expected_sha256, Option<String>),
        name!(actual_sha256, Option<String>),
        name!(bytes, Option<i64>),
        name!(detail, Option<Text>),
    ),
> {
    let (backup_id, storage, identity) = (text(backup_id), text(storage), text(identity));
    let deep = required(
        deep,
        "deep",
        "Pass true (decompress and parse every file, the default) or false (checksums only).",
    );
    let _caller = enter();
    let rows = manage::verify(
        backup_id.as_deref(),
        deep,
        storage.as_deref(),
        identity.as_deref(),
    )
    .or_raise();
    TableIterator::new(rows.into_iter().map(|(id, c)| {
        (
            id,
            c.file,
            c.status.as_str().to_string(),
            c.expected_sha256,
            c.actual_sha256,
            c.bytes.map(|b| b as i64),
            c.detail.map(Text),
        )
    }))
}

const BACKUP_ID_HINT: &str =
    "Pass a backup id from SELECT id, status FROM backup.backups ORDER BY started_at DESC;";

#[pg_extern]
fn delete(backup_id: Option<Text>) -> bool {
    let backup_id = text(backup_id);
    let backup_id = required(backup_id, "backup_id", BACKUP_ID_HINT);
    writes("backup.delete()");
    let _caller = enter();
    manage::delete(&backup_id).or_raise()
}

#[pg_extern]
fn prune(
    keep_last: default!(Option<i32>, "NULL"),
    keep_days: default!(Option<i32>, "NULL"),
    dry_run: default!(Option<bool>, false),
) -> SetOfIterator<'static, String> {
    let dry_run = required(
        dry_run,
        "dry_run",
        "Pass true to only list what would be removed, or false (the default).",
    );
    if !dry_run {
        writes("backup.prune()");
    }
    let _caller = enter();
    SetOfIterator::new(manage::prune(keep_last, keep_days, dry_run, None).or_raise())
}

/// Register archives the catalog lacks: of this database, or of `database` (issue 20:
/// another database's archives, to restore here by id).
#[pg_extern(name = "rescan")]
fn rescan_0_3(
    storage: default!(Option<Text>, "NULL"),
    database: default!(Option<Text>, "NULL"),
) -> SetOfIterator<'static, String> {
    let (storage, database) = (text(storage), text(database));
    writes("backup.rescan()");
    let _caller = enter();
    SetOfIterator::new(manage::rescan(storage.as_deref(), database.as_deref()).or_raise())
}

/// The archives in the local directory (or in storage target `storage`), whatever database
/// they were taken of, from their manifests (issue 20).
#[allow(clippy::type_complexity)]
#[pg_extern]
fn archives(
    storage: default!(Option<Text>, "NULL"),
    database: default!(Option<Text>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(id, String),
        name!(source_database, Option<Text>),
        name!(server_version, Option<String>),
        name!(created_at, Option<pgrx::datum::TimestampWithTimeZone>),
        name!(format, Option<String>),
        name!(compression, Option<String>),
        name!(encrypted, bool),
        name!(signed, bool),
        name!(bytes, i64),
        name!(registered, bool),
        name!(detail, Option<Text>),
    ),
> {
    let (storage, database) = (text(storage), text(database));
    let _caller = enter();
    let rows = crate::storage::listing::list(storage.as_deref(), database.as_deref()).or_raise();
    // Unix epoch to PostgreSQL's (2000-01-01) in microseconds.
    const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;
    TableIterator::new(rows.into_iter().map(|l| {
        let at = l.created_at.and_then(|t| {
            pgrx::datum::TimestampWithTimeZone::try_from(t.timestamp_micros() - PG_EPOCH_OFFSET_US)
                .ok()
        });
        (
            l.id,
            l.database.map(Text),
            l.server_version,
            at,
            l.format,
            l.compression,
            l.encrypted,
            l.signed,
            l.bytes,
            l.registered,
            l.detail.map(Text),
        )
    }))
}

/// Add (or with `replace`, change) a storage target. Superuser only; the options' secrets
/// are kept where only the extension owner reads them. `validate` tests the target first.
#[pg_extern]
fn add_storage(
    name: Option<Text>,
    url: Option<Text>,
    options: default!(Option<crate::text::Json>, "NULL"),
    replace: default!(Option<bool>, false),
    validate: default!(Option<bool>, true),
) -> bool {
    let (name, url) = (text(name), text(url));
    let name = required(name, "name", "Pass a name for the target, e.g. 'offsite'.");
    let url = required(url, "url", "Pass s3://bucket/prefix or file:///path.");
    let replace = required(replace, "replace", "Pass true or false (the default).");
    let validate = required(validate, "validate", "Pass true (the default) or false.");
    writes("backup.add_storage()");
    let _caller = enter();
    let options = options.map(|j| j.0).unwrap_or(serde_json::Value::Null);
    crate::storage::targets::add(&name, &url, &options, replace, validate).or_raise();
    true
}

/// Forget a storage target (the archives in it stay).
#[pg_extern]
fn drop_storage(name: Option<Text>, if_exists: default!(Option<bool>, false)) -> bool {
    let name = text(name);
    let name = required(
        name,
        "name",
        "Pass a name from SELECT name FROM backup.storages;",
    );
    let if_exists = required(if_exists, "if_exists", "Pass true or false (the default).");
    writes("backup.drop_storage()");
    let _caller = enter();
    crate::storage::targets::drop(&name, if_exists).or_raise()
}

#[allow(clippy::too_many_arguments, clippy::type_complexity)]
/// restore(): `storage` (issue 20) reads the archive from that target, whatever database it
/// was taken of.
#[pg_extern(name = "restore")]
fn restore_0_3b(
    backup_id: Option<Text>,
    tables: default!(Names, "NULL"),
    schemas: default!(Names, "NULL"),
    existing: default!(Option<Text>, "'fail'"),
    schema_only: default!(Option<bool>, false),
    data_only: default!(Option<bool>, false),
    target_schema: default!(Option<Text>, "NULL"),
    disable_triggers: default!(Option<bool>, false),
    on_error: default!(Option<Text>, "'abort'"),
    dry_run: default!(Option<bool>, false),
    confirm: default!(Option<bool>, false),
    identity: default!(Option<Text>, "NULL"),
    analyze: default!(Option<bool>, "NULL"),
    atomic: default!(Option<bool>, true),
    no_tablespaces: default!(Option<bool>, false),
    jobs: default!(Option<i32>, 1),
    run_analyze: default!(Option<bool>, true),
    storage: default!(Option<Text>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(object, Text),
        name!(kind, String),
        name!(action, String),
        name!(rows, Option<i64>),
        name!(status, String),
        name!(detail, Option<Text>),
    ),
> {
    let (backup_id, existing, on_error, identity) = (
        text(backup_id),
        text(existing),
        text(on_error),
        text(identity),
    );
    let backup_id = required(backup_id, "backup_id", BACKUP_ID_HINT);
    let boolean = "Pass true or false (the default).";
    let opts = RestoreOptions {
        tables: names(tables, "tables"),
        schemas: names(schemas, "schemas"),
        existing: Existing::parse(&required(
            existing,
            "existing",
            "Use 'fail' (the default), 'skip', 'truncate', 'drop' or 'append'.",
        ))
        .or_raise(),
        schema_only: required(schema_only, "schema_only", boolean),
        data_only: required(data_only, "data_only", boolean),
        target_schema: target_schema.map(String::from),
        disable_triggers: required(disable_triggers, "disable_triggers", boolean),
        on_error: OnError::parse(&required(
            on_error,
            "on_error",
            "Use 'abort' (the default) or 'continue'.",
        ))
        .or_raise(),
        dry_run: required(dry_run, "dry_run", boolean),
        confirm: required(confirm, "confirm", boolean),
        identity,
        // ANALYZE is a reserved word: `analyze => false` needs quotes ("analyze" => false,
        // as 0.2.0 callers wrote it). run_analyze works unquoted; a non-NULL "analyze" decides.
        analyze: match analyze {
            Some(a) => a,
            None => required(
                run_analyze,
                "run_analyze",
                "Pass true (the default) or false.",
            ),
        },
        atomic: required(
            atomic,
            "atomic",
            "Pass true (all or nothing, the default) or false (commit as it goes).",
        ),
        no_tablespaces: required(
            no_tablespaces,
            "no_tablespaces",
            "Pass false (the default: relations go back to the tablespaces the backup recorded) or true (all into the database's default tablespace).",
        ),
        jobs: required(
            jobs,
            "jobs",
            "Pass 1 (the default) or the number of parallel workers (with atomic => false).",
        ),
        storage: text(storage),
    };
    if !opts.dry_run {
        writes("backup.restore()");
    }
    let caller = enter();
    let rows = crate::restore::restore(&backup_id, &opts, &caller).or_raise();
    TableIterator::new(rows.into_iter().map(|r| {
        let (o, k, a, n, s, d) = r.into_columns();
        (Text(o), k, a.to_string(), n, s.to_string(), d.map(Text))
    }))
}

#[allow(clippy::too_many_arguments, clippy::type_complexity)]
#[pg_extern(name = "schedule")]
fn schedule_0_3(
    name: Option<Text>,
    cron: Option<Text>,
    label: default!(Option<Text>, "NULL"),
    schemas: default!(Names, "NULL"),
    tables: default!(Names, "NULL"),
    exclude_tables: default!(Names, "NULL"),
    exclude_data: default!(Names, "NULL"),
    schema_only: default!(Option<bool>, false),
    data_only: default!(Option<bool>, false),
    format: default!(Option<Text>, "'native'"),
    compression: default!(Option<Text>, "NULL"),
    keep_last: default!(Option<i32>, "NULL"),
    keep_days: default!(Option<i32>, "NULL"),
    enabled: default!(Option<bool>, true),
    database: default!(Option<Text>, "NULL"),
    storage: default!(Option<Text>, "NULL"),
    keep_local: default!(Option<bool>, true),
    encrypt_to: default!(Names, "NULL"),
    jobs: default!(Option<i32>, 1),
    timezone: default!(Option<Text>, "NULL"),
    timeout: default!(Option<Interval>, "NULL"),
    retries: default!(Option<i32>, 0),
    overlap: default!(Option<Text>, "'queue'"),
    drill: default!(Option<bool>, false),
    drill_checks: default!(Names, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(name, Text),
        name!(cron, Text),
        name!(database, Text),
        name!(options, crate::text::Json),
        name!(keep_last, Option<i32>),
        name!(keep_days, Option<i32>),
        name!(enabled, bool),
        name!(next_run_at, Option<pgrx::datum::TimestampWithTimeZone>),
        name!(timezone, Text),
        name!(timeout, Option<Interval>),
        name!(retries, i32),
        name!(overlap, Text),
        name!(drill, bool),
        name!(drill_checks, Option<Vec<Option<Text>>>),
    ),
> {
    let (name, cron, format, compression, database, storage) = (
        text(name),
        text(cron),
        text(format),
        text(compression),
        text(database),
        text(storage),
    );
    let name = required(name, "name", SCHEDULE_NAME_HINT);
    let cron = required(
        cron,
        "cron",
        "Pass a cron expression, e.g. '30 2 * * *' (02:30 daily in the schedule's time zone), '@hourly' or '10 seconds'.",
    );
    let boolean = "Pass true or false (the default).";
    let args = ScheduleArgs {
        name: name.clone(),
        cron,
        database,
        create: CreateArgs {
            label: label.map(String::from),
            schemas: names(schemas, "schemas"),
            tables: names(tables, "tables"),
            exclude_tables: names(exclude_tables, "exclude_tables"),
            exclude_data: names(exclude_data, "exclude_data"),
            schema_only: Some(required(schema_only, "schema_only", boolean)),
            data_only: Some(required(data_only, "data_only", boolean)),
            format: Some(required(
                format,
                "format",
                "Use 'native' (the default), 'sql', 'json' or 'csv'.",
            )),
            compression,
            verbose: None,
            storage,
            keep_local: (!required(
                keep_local,
                "keep_local",
                "Pass true (keep the local copy, the default) or false.",
            ))
            .then_some(false),
            encrypt_to: names(encrypt_to, "encrypt_to"),
            // Stored only when asked for, so the options of a plain schedule stay as they were.
            jobs: {
                let jobs = required(
                    jobs,
                    "jobs",
                    "Pass a number of parallel workers of 1 (the default) or more.",
                );
                (jobs != 1).then_some(jobs)
            },
        },
        keep_last,
        keep_days,
        enabled: required(
            enabled,
            "enabled",
            "Pass true (the default) or false to store the schedule paused.",
        ),
        timezone: text(timezone),
        timeout_secs: timeout.map(interval_secs),
        retries: required(
            retries,
            "retries",
            "Pass 0 (the default: no retry) or how many times a failed run is tried again.",
        ),
        overlap: required(
            text(overlap),
            "overlap",
            "Pass 'queue' (the default) or 'skip'.",
        ),
        drill: required(
            drill,
            "drill",
            "Pass true (restore-test every backup of this schedule) or false (the default).",
        ),
        drill_checks: drill_checks.map(|list| {
            list.into_iter()
                .map(|v| {
                    v.map(String::from).ok_or_else(|| BackupError::NullArgument {
                        message: "drill_checks must not contain NULL".into(),
                        hint: Some(
                            "List SQL checks as ARRAY['SELECT ...', ...], or leave drill_checks out."
                                .into(),
                        ),
                    })
                })
                .collect::<crate::error::Result<Vec<String>>>()
                .or_raise()
        }),
    };
    writes("backup.schedule()");
    let caller = enter();
    schedules::upsert(args).or_raise();
    // Whose rights the schedule's drills restore and check with (drill/).
    crate::drill::record_schedule_role(&name, &caller.role).or_raise();
    let row = Spi::connect(|c| {
        let t = c.select(
            "SELECT name, cron, database, options, keep_last, keep_days, enabled, next_run_at,
                    timezone, timeout, retries, overlap, drill, drill_checks
             FROM backup.schedules WHERE name = $1",
            None,
            &[crate::text::arg(name)],
        )?;
        let r = t.first();
        Ok::<_, pgrx::spi::Error>((
            r.get::<Text>(1)?.unwrap_or_default(),
            r.get::<Text>(2)?.unwrap_or_default(),
            r.get::<Text>(3)?.unwrap_or_default(),
            r.get::<crate::text::Json>(4)?
                .unwrap_or(crate::text::Json(serde_json::Value::Null)),
            r.get::<i32>(5)?,
            r.get::<i32>(6)?,
            r.get::<bool>(7)?.unwrap_or(false),
            r.get::<pgrx::datum::TimestampWithTimeZone>(8)?,
            r.get::<Text>(9)?.unwrap_or_default(),
            r.get::<Interval>(10)?,
            r.get::<i32>(11)?.unwrap_or(0),
            r.get::<Text>(12)?.unwrap_or_default(),
            r.get::<bool>(13)?.unwrap_or(false),
            r.get::<Vec<Option<Text>>>(14)?,
        ))
    })
    .map_err(crate::error::BackupError::from)
    .or_raise();
    TableIterator::once(row)
}

/// An interval's length in seconds, a month counted as 30 days (as extract(epoch) does).
fn interval_secs(i: Interval) -> f64 {
    (i.months() as f64 * 30.0 + i.days() as f64) * 86_400.0 + i.micros() as f64 / 1e6
}

const SCHEDULE_NAME_HINT: &str = "Pass a schedule name from SELECT name FROM backup.schedules;";

#[pg_extern]
fn unschedule(name: Option<Text>) -> bool {
    let name = text(name);
    let name = required(name, "name", SCHEDULE_NAME_HINT);
    writes("backup.unschedule()");
    let _caller = enter();
    schedules::remove(&name).or_raise()
}

#[allow(clippy::type_complexity)]
#[pg_extern]
fn run_schedule(
    name: Option<Text>,
) -> TableIterator<
    'static,
    (
        name!(backup_id, Option<String>),
        name!(status, String),
        name!(tables, i64),
        name!(rows, i64),
        name!(bytes, i64),
        name!(duration, Interval),
        name!(path, Option<String>),
        name!(error, Option<Text>),
    ),
> {
    let name = required(text(name), "name", SCHEDULE_NAME_HINT);
    writes("backup.run_schedule()");
    let _caller = enter();
    let r = schedules::run_now(&name).or_raise();
    if let Some(e) = &r.error {
        crate::error::report(
            pgrx::PgLogLevel::WARNING,
            pgrx::pg_sys::errcodes::PgSqlErrorCode::ERRCODE_WARNING,
            &format!("pg_backup: schedule \"{name}\" {}: {e}", r.status),
            None,
            "pg_backup",
        );
    }
    let duration = Interval::from_micros((r.duration_secs * 1e6) as i64);
    TableIterator::once((
        r.backup_id,
        r.status,
        r.tables,
        r.rows,
        r.bytes,
        duration,
        r.path,
        r.error.map(Text),
    ))
}

/// Called by the trigger on backup.schedules (not for direct use).
#[pg_extern]
fn wake_scheduler() {
    crate::scheduler::worker::wake_after_commit();
}

/// The backups and restores running in this database and how far along they are, from shared
/// memory (what `backup.progress` shows; empty without shared_preload_libraries).
#[allow(clippy::type_complexity)]
#[pg_extern]
fn runs_in_progress() -> TableIterator<
    'static,
    (
        name!(kind, String),
        name!(id, String),
        name!(pid, i32),
        name!(started_at, Option<pgrx::datum::TimestampWithTimeZone>),
        name!(tables_done, i32),
        name!(tables_total, i32),
        name!(current_table, Option<Text>),
        name!(rows_done, i64),
        name!(bytes_done, i64),
        name!(jobs, Option<i32>),
    ),
> {
    // Unix epoch to PostgreSQL's (2000-01-01) in microseconds.
    const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;
    TableIterator::new(runs::list().into_iter().map(|r| {
        (
            r.kind.to_string(),
            r.id,
            r.pid,
            pgrx::datum::TimestampWithTimeZone::try_from(r.started_us - PG_EPOCH_OFFSET_US).ok(),
            r.tables_done,
            r.tables_total,
            r.current_table.map(Text),
            r.rows_done,
            r.bytes_done,
            r.jobs,
        )
    }))
}
