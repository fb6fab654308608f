//! The SQL surface, schema `backup`. Each function is thin: arguments into an options struct,
//! call the core, turn the result into rows. Errors leave through `OrRaise` (one SQLSTATE each).

use pgrx::datum::Interval;
use pgrx::prelude::*;

use crate::backup::create;
use crate::backup::manage;
use crate::backup::options::{CreateArgs, CreateOptions};
use crate::error::OrRaise;
use crate::restore::plan::{Existing, OnError};
use crate::restore::RestoreOptions;
use crate::scheduler::schedules::{self, ScheduleArgs};
use crate::{guc, security};

mod compat;

#[allow(clippy::too_many_arguments)]
#[pg_extern(name = "create")]
fn create_backup_0_2(
    label: default!(Option<String>, "NULL"),
    schemas: default!(Option<Vec<String>>, "NULL"),
    tables: default!(Option<Vec<String>>, "NULL"),
    exclude_tables: default!(Option<Vec<String>>, "NULL"),
    exclude_data: default!(Option<Vec<String>>, "NULL"),
    schema_only: default!(bool, false),
    data_only: default!(bool, false),
    format: default!(String, "'native'"),
    compression: default!(Option<String>, "NULL"),
    verbose: default!(bool, false),
    storage: default!(Option<String>, "NULL"),
    keep_local: default!(bool, true),
    encrypt_to: default!(Option<Vec<String>>, "NULL"),
    jobs: default!(i32, 1),
) -> TableIterator<
    'static,
    (
        name!(backup_id, String),
        name!(status, String),
        name!(tables, i64),
        name!(rows, i64),
        name!(bytes, i64),
        name!(duration, Interval),
        name!(path, String),
    ),
> {
    let args = CreateArgs {
        label,
        schemas,
        tables,
        exclude_tables,
        exclude_data,
        schema_only: Some(schema_only),
        data_only: Some(data_only),
        format: Some(format),
        compression,
        verbose: Some(verbose),
        storage,
        keep_local: Some(keep_local),
        encrypt_to,
        jobs: Some(jobs),
    };
    let caller = security::enter().or_raise();
    let opts = CreateOptions::parse(args, &guc::create_defaults()).or_raise();
    let s = create::create(&opts, &caller, None).or_raise();
    let duration = Interval::from_micros(s.duration.as_micros() as i64);
    TableIterator::once((
        s.backup_id,
        s.status,
        s.tables,
        s.rows,
        s.bytes,
        duration,
        s.path,
    ))
}

#[allow(clippy::type_complexity)]
#[pg_extern(name = "verify")]
fn verify_0_2(
    backup_id: default!(Option<String>, "NULL"),
    deep: default!(bool, true),
    storage: default!(Option<String>, "NULL"),
    identity: default!(Option<String>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(backup_id, String),
        name!(file, String),
        name!(status, String),
        name!(expected_sha256, Option<String>),
        name!(actual_sha256, Option<String>),
        name!(bytes, Option<i64>),
        name!(detail, Option<String>),
    ),
> {
    let _caller = security::enter().or_raise();
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
            c.detail,
        )
    }))
}

#[pg_extern]
fn delete(backup_id: String) -> bool {
    let _caller = security::enter().or_raise();
    manage::delete(&backup_id).or_raise()
}

#[pg_extern]
fn prune(
    keep_last: default!(Option<i32>, "NULL"),
    keep_days: default!(Option<i32>, "NULL"),
    dry_run: default!(bool, false),
) -> SetOfIterator<'static, String> {
    let _caller = security::enter().or_raise();
    SetOfIterator::new(manage::prune(keep_last, keep_days, dry_run, None).or_raise())
}

#[pg_extern(name = "rescan")]
fn rescan_0_2(storage: default!(Option<String>, "NULL")) -> SetOfIterator<'static, String> {
    let _caller = security::enter().or_raise();
    SetOfIterator::new(manage::rescan(storage.as_deref()).or_raise())
}

/// Add (or with `replace`, change) a storage target. Superuser only; the options' secrets
/// are kept where only the extension owner reads them. `validate` tests the target first.
#[pg_extern]
fn add_storage(
    name: String,
    url: String,
    options: default!(Option<pgrx::JsonB>, "NULL"),
    replace: default!(bool, false),
    validate: default!(bool, true),
) -> bool {
    let _caller = security::enter().or_raise();
    let options = options.map(|j| j.0).unwrap_or(serde_json::Value::Null);
    crate::storage::targets::add(&name, &url, &options, replace, validate).or_raise();
    true
}

/// Forget a storage target (the archives in it stay).
#[pg_extern]
fn drop_storage(name: String, if_exists: default!(bool, false)) -> bool {
    let _caller = security::enter().or_raise();
    crate::storage::targets::drop(&name, if_exists).or_raise()
}

#[allow(clippy::too_many_arguments, clippy::type_complexity)]
#[pg_extern(name = "restore")]
fn restore_0_2(
    backup_id: String,
    tables: default!(Option<Vec<String>>, "NULL"),
    schemas: default!(Option<Vec<String>>, "NULL"),
    existing: default!(String, "'fail'"),
    schema_only: default!(bool, false),
    data_only: default!(bool, false),
    target_schema: default!(Option<String>, "NULL"),
    disable_triggers: default!(bool, false),
    on_error: default!(String, "'abort'"),
    dry_run: default!(bool, false),
    confirm: default!(bool, false),
    identity: default!(Option<String>, "NULL"),
    analyze: default!(bool, true),
    atomic: default!(bool, true),
) -> TableIterator<
    'static,
    (
        name!(object, String),
        name!(kind, String),
        name!(action, String),
        name!(rows, Option<i64>),
        name!(status, String),
        name!(detail, Option<String>),
    ),
> {
    let caller = security::enter().or_raise();
    let opts = RestoreOptions {
        tables,
        schemas,
        existing: Existing::parse(&existing).or_raise(),
        schema_only,
        data_only,
        target_schema,
        disable_triggers,
        on_error: OnError::parse(&on_error).or_raise(),
        dry_run,
        confirm,
        identity,
        analyze,
        atomic,
    };
    TableIterator::new(crate::restore::restore(&backup_id, &opts, &caller).or_raise())
}

#[allow(clippy::too_many_arguments, clippy::type_complexity)]
#[pg_extern(name = "schedule")]
fn schedule_0_2(
    name: String,
    cron: String,
    label: default!(Option<String>, "NULL"),
    schemas: default!(Option<Vec<String>>, "NULL"),
    tables: default!(Option<Vec<String>>, "NULL"),
    exclude_tables: default!(Option<Vec<String>>, "NULL"),
    exclude_data: default!(Option<Vec<String>>, "NULL"),
    schema_only: default!(bool, false),
    data_only: default!(bool, false),
    format: default!(String, "'native'"),
    compression: default!(Option<String>, "NULL"),
    keep_last: default!(Option<i32>, "NULL"),
    keep_days: default!(Option<i32>, "NULL"),
    enabled: default!(bool, true),
    database: default!(Option<String>, "NULL"),
    storage: default!(Option<String>, "NULL"),
    keep_local: default!(bool, true),
    encrypt_to: default!(Option<Vec<String>>, "NULL"),
    jobs: default!(i32, 1),
) -> TableIterator<
    'static,
    (
        name!(name, String),
        name!(cron, String),
        name!(database, String),
        name!(options, pgrx::JsonB),
        name!(keep_last, Option<i32>),
        name!(keep_days, Option<i32>),
        name!(enabled, bool),
        name!(next_run_at, Option<pgrx::datum::TimestampWithTimeZone>),
    ),
> {
    let _caller = security::enter().or_raise();
    let args = ScheduleArgs {
        name: name.clone(),
        cron,
        database,
        create: CreateArgs {
            label,
            schemas,
            tables,
            exclude_tables,
            exclude_data,
            schema_only: Some(schema_only),
            data_only: Some(data_only),
            format: Some(format),
            compression,
            verbose: None,
            storage,
            keep_local: (!keep_local).then_some(false),
            encrypt_to,
            // Stored only when asked for, so the options of a plain schedule stay as they were.
            jobs: (jobs != 1).then_some(jobs),
        },
        keep_last,
        keep_days,
        enabled,
    };
    schedules::upsert(args).or_raise();
    let row = Spi::connect(|c| {
        let t = c.select(
            "SELECT name, cron, database, options, keep_last, keep_days, enabled, next_run_at
             FROM backup.schedules WHERE name = $1",
            None,
            &[name.into()],
        )?;
        let r = t.first();
        Ok::<_, pgrx::spi::Error>((
            r.get::<String>(1)?.unwrap_or_default(),
            r.get::<String>(2)?.unwrap_or_default(),
            r.get::<String>(3)?.unwrap_or_default(),
            r.get::<pgrx::JsonB>(4)?
                .unwrap_or(pgrx::JsonB(serde_json::Value::Null)),
            r.get::<i32>(5)?,
            r.get::<i32>(6)?,
            r.get::<bool>(7)?.unwrap_or(false),
            r.get::<pgrx::datum::TimestampWithTimeZone>(8)?,
        ))
    })
    .map_err(crate::error::BackupError::from)
    .or_raise();
    TableIterator::once(row)
}

#[pg_extern]
fn unschedule(name: String) -> bool {
    let _caller = security::enter().or_raise();
    schedules::remove(&name).or_raise()
}

#[allow(clippy::type_complexity)]
#[pg_extern]
fn run_schedule(
    name: String,
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
        name!(error, Option<String>),
    ),
> {
    let _caller = security::enter().or_raise();
    let r = schedules::run_now(&name).or_raise();
    if let Some(e) = &r.error {
        pgrx::warning!("pg_backup: schedule \"{name}\" {}: {e}", r.status);
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
        r.error,
    ))
}

/// Called by the trigger on backup.schedules (not for direct use).
#[pg_extern]
fn wake_scheduler() {
    crate::scheduler::worker::wake_after_commit();
}
