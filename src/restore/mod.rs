//! restore(): replay a backup into the current database, in pg_restore's order: pre-data DDL,
//! data through COPY FROM, then post-data (indexes, constraints, triggers, policies, sequence
//! values, materialized view refresh). All or nothing: it runs in the caller's transaction.

pub mod plan;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use crate::archive::compression::Compression;
use crate::archive::manifest::{DataFile, Manifest};
use crate::archive::verify::{self, FileStatus};
use crate::backup::create::unknown_backup;
use crate::backup::manage::backup_dir;
use crate::catalog::autonomous;
use crate::catalog::history::now_rfc3339;
use crate::copy::copy_from;
use crate::error::{BackupError, Result};
use crate::security::Caller;
use crate::subtransaction;
use plan::{Action, Existing, PlannedTable};

pub struct RestoreOptions {
    pub existing: Existing,
    pub schema_only: bool,
    pub data_only: bool,
    pub dry_run: bool,
    pub confirm: bool,
}

/// One result row: object, kind, action, rows, status, detail.
pub type Row = (String, String, String, Option<i64>, String, Option<String>);

fn row(
    object: String,
    kind: &str,
    action: &str,
    rows: Option<i64>,
    status: &str,
    detail: Option<&str>,
) -> Row {
    (
        object,
        kind.into(),
        action.into(),
        rows,
        status.into(),
        detail.map(str::to_string),
    )
}

fn qualified(schema: &Option<String>, name: &str) -> String {
    format!("{}.{}", schema.as_deref().unwrap_or_default(), name)
}

/// `schema.name` quoted as an SQL identifier (also the form of `DdlItem::table`).
fn quoted(schema: &str, name: &str) -> String {
    format!(
        "{}.{}",
        spi::quote_identifier(schema),
        spi::quote_identifier(name)
    )
}

fn table_oid(schema: &str, name: &str) -> Result<Option<pg_sys::Oid>> {
    Ok(Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2)",
        &[schema.into(), name.into()],
    )?)
}

/// One action per table of the backup: those with DDL, then (data_only backups) those with
/// only a data file, which must already exist.
fn plan_tables(manifest: &Manifest, existing: Existing) -> Result<Vec<PlannedTable>> {
    let mut tables: Vec<PlannedTable> = Vec::new();
    let defined = manifest
        .pre_data
        .iter()
        .filter(|i| i.kind == "table")
        .map(|i| (i.schema.clone().unwrap_or_default(), i.name.clone()));
    let data_only = manifest
        .files
        .iter()
        .filter(|f| !f.is_large_objects())
        .map(|f| (f.schema.clone(), f.table.clone()));
    for (schema, name) in defined.chain(data_only) {
        if tables.iter().any(|t| t.schema == schema && t.name == name) {
            continue;
        }
        let exists = table_oid(&schema, &name)?.is_some();
        tables.push(PlannedTable {
            action: plan::action_for(exists, existing),
            schema,
            name,
            exists,
        });
    }
    Ok(tables)
}

pub fn restore(id: &str, opts: &RestoreOptions, caller: &Caller) -> Result<Vec<Row>> {
    let dir = backup_dir(id)?;
    if !dir.exists() {
        return Err(unknown_backup(id));
    }
    // Check every file before changing anything.
    let bad: Vec<String> = verify::verify_archive(&dir, false)
        .into_iter()
        .filter(|c| c.status != FileStatus::Ok)
        .map(|c| format!("{} ({})", c.file, c.status.as_str()))
        .collect();
    if !bad.is_empty() {
        return Err(
            BackupError::corrupt(format!("backup {id} is damaged: {}", bad.join(", "))).with_hint(
                "Nothing was restored. See SELECT * FROM backup.verify('<id>') for details.",
            ),
        );
    }
    let manifest = Manifest::from_json(
        &std::fs::read(dir.join("manifest.json")).map_err(|e| BackupError::io("read", &dir, e))?,
    )?;
    let compression = Compression::from_name(&manifest.compression)?;
    let tables = plan_tables(&manifest, opts.existing)?;

    let mut record = serde_json::json!({
        "backup_id": id, "started_at": now_rfc3339(), "status": "running", "dry_run": opts.dry_run,
        "options": { "existing": format!("{:?}", opts.existing).to_lowercase(), "schema_only": opts.schema_only,
                     "data_only": opts.data_only, "confirm": opts.confirm },
        "performed_by": caller.role,
    });
    let restore_id: i64 =
        Spi::get_one("SELECT nextval(pg_get_serial_sequence('backup.restores', 'id'))")?
            .unwrap_or(0);
    record["id"] = restore_id.into();
    if let Err(e) = plan::check(&tables, opts.existing, opts.confirm, opts.dry_run, id) {
        finish_record(&mut record, "failed", None, Some(e.to_string()));
        return Err(e);
    }
    if opts.dry_run {
        let out: Vec<Row> = tables
            .iter()
            .map(|t| {
                let rows = manifest
                    .files
                    .iter()
                    .find(|f| f.schema == t.schema && f.table == t.name)
                    .filter(|_| t.action.loads_data() && !opts.schema_only)
                    .map(|f| f.rows as i64);
                row(
                    t.object(),
                    "table",
                    t.action.as_str(),
                    rows,
                    "planned",
                    None,
                )
            })
            .collect();
        record["table_count"] = (out.len() as i64).into();
        finish_record(&mut record, "completed", Some(0), None);
        return Ok(out);
    }

    let outcome = subtransaction::run(|| apply(&manifest, &dir, compression, opts, &tables));
    match outcome {
        Ok(Ok(out)) => {
            let rows: i64 = out.iter().filter_map(|r| r.3).sum();
            record["table_count"] = (tables.len() as i64).into();
            finish_record(&mut record, "completed", Some(rows), None);
            Ok(out)
        }
        Ok(Err(e)) => {
            finish_record(
                &mut record,
                "failed",
                None,
                Some(format!("{e} (SQLSTATE {})", e.sqlstate())),
            );
            Err(e)
        }
        Err(caught) => {
            finish_record(
                &mut record,
                "failed",
                None,
                Some(subtransaction::message(&caught)),
            );
            caught.rethrow()
        }
    }
}

fn finish_record(
    record: &mut serde_json::Value,
    status: &str,
    rows: Option<i64>,
    error: Option<String>,
) {
    record["status"] = status.into();
    record["finished_at"] = now_rfc3339().into();
    record["row_count"] = rows.into();
    record["error"] = error.into();
    autonomous::execute_or_inline("restore_upsert", record);
}

fn has_code(e: &CaughtError, code: PgSqlErrorCode) -> bool {
    matches!(e, CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) if r.sql_error_code() == code)
}

fn is_duplicate(e: &CaughtError) -> bool {
    use pgrx::pg_sys::errcodes::PgSqlErrorCode::*;
    match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => matches!(
            r.sql_error_code(),
            ERRCODE_DUPLICATE_OBJECT
                | ERRCODE_DUPLICATE_TABLE
                | ERRCODE_DUPLICATE_FUNCTION
                | ERRCODE_DUPLICATE_SCHEMA
        ),
        _ => false,
    }
}

fn apply(
    manifest: &Manifest,
    dir: &std::path::Path,
    compression: Compression,
    opts: &RestoreOptions,
    tables: &[PlannedTable],
) -> Result<Vec<Row>> {
    let mut out: Vec<Row> = Vec::new();
    let plan_of =
        |schema: &str, name: &str| tables.iter().find(|t| t.schema == schema && t.name == name);
    // Function bodies may name tables that come later, as in pg_restore.
    Spi::run("SELECT set_config('check_function_bodies', 'off', true)")?;
    for t in tables.iter().filter(|t| t.action == Action::Drop) {
        Spi::run(&format!(
            "DROP TABLE {} CASCADE",
            quoted(&t.schema, &t.name)
        ))?;
    }
    if !opts.data_only {
        for item in &manifest.pre_data {
            let object = qualified(&item.schema, &item.name);
            if item.kind == "table" {
                let schema = item.schema.as_deref().unwrap_or_default();
                if plan_of(schema, &item.name).is_some_and(|t| t.action.runs_ddl()) {
                    Spi::run(&item.sql)?;
                    out.push(row(object, &item.kind, "create", None, "ok", None));
                }
                continue;
            }
            // Types, functions, sequences, views ... that already exist are kept as they are.
            match subtransaction::run(|| Spi::run(&item.sql)) {
                Ok(r) => {
                    r?;
                    out.push(row(object, &item.kind, "create", None, "ok", None));
                }
                Err(caught) if is_duplicate(&caught) => {
                    out.push(row(
                        object,
                        &item.kind,
                        "skip",
                        None,
                        "ok",
                        Some("already exists"),
                    ));
                }
                Err(caught) => caught.rethrow(),
            }
        }
    }
    if !opts.schema_only {
        // One TRUNCATE for all, so foreign keys among the restored tables do not block it.
        let truncate: Vec<String> = tables
            .iter()
            .filter(|t| t.action == Action::Truncate)
            .map(|t| quoted(&t.schema, &t.name))
            .collect();
        if !truncate.is_empty() {
            Spi::run(&format!("TRUNCATE {}", truncate.join(", ")))?;
        }
        for f in &manifest.files {
            if f.is_large_objects() {
                let pages = restore_large_objects(&dir.join(&f.path), compression, f)?;
                out.push(row(
                    "large objects".into(),
                    "large_object_data",
                    "create",
                    Some(pages),
                    "ok",
                    None,
                ));
                continue;
            }
            let object = format!("{}.{}", f.schema, f.table);
            let action = plan_of(&f.schema, &f.table).map_or(Action::Create, |t| t.action);
            if !action.loads_data() {
                out.push(row(
                    object,
                    "table_data",
                    "skip",
                    None,
                    "ok",
                    Some("table exists"),
                ));
                continue;
            }
            let oid = table_oid(&f.schema, &f.table)?.ok_or_else(|| {
                BackupError::unknown(format!(
                    "table {object} does not exist and the backup has no definition for it"
                ))
                .with_hint(
                    "Restore a backup that includes the schema first (this one is data_only).",
                )
            })?;
            let rows = copy_from::copy_file_into(
                oid,
                &dir.join(&f.path),
                compression,
                &f.columns,
                &f.sha256,
            )?;
            out.push(row(
                object,
                "table_data",
                action.as_str(),
                Some(rows as i64),
                "ok",
                None,
            ));
        }
    }
    for item in &manifest.post_data {
        let wanted = if item.kind == "sequence_set" {
            !opts.schema_only
        } else {
            !opts.data_only
        };
        if !wanted {
            continue;
        }
        // Indexes, constraints ... of a table that was kept as it is already exist.
        let kept = item.table.as_ref().is_some_and(|q| {
            tables
                .iter()
                .any(|t| quoted(&t.schema, &t.name) == *q && !t.action.runs_ddl())
        });
        if kept {
            continue;
        }
        let object = qualified(&item.schema, &item.name);
        if matches!(item.kind.as_str(), "owner" | "acl") {
            // A role missing in this cluster costs the grant, not the restore (as pg_restore).
            match subtransaction::run(|| Spi::run(&item.sql)) {
                Ok(r) => {
                    r?;
                    out.push(row(object, &item.kind, "create", None, "ok", None));
                }
                Err(caught) if has_code(&caught, PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT) => {
                    let message = subtransaction::message(&caught);
                    out.push(row(
                        object,
                        &item.kind,
                        "skip",
                        None,
                        "warning",
                        Some(&message),
                    ));
                }
                Err(caught) => caught.rethrow(),
            }
            continue;
        }
        Spi::run(&item.sql)?;
        out.push(row(object, &item.kind, "create", None, "ok", None));
    }
    Ok(out)
}

/// Large objects: their pages are loaded into a temporary table by COPY (on disk, not in
/// memory), then written with lo_put; objects missing in this database are created first.
fn restore_large_objects(
    file: &std::path::Path,
    compression: Compression,
    f: &DataFile,
) -> Result<i64> {
    Spi::run("CREATE TEMP TABLE pg_backup_lo_pages (loid oid, pageno integer, data bytea) ON COMMIT DROP")?;
    let oid = Spi::get_one::<pg_sys::Oid>("SELECT 'pg_temp.pg_backup_lo_pages'::regclass::oid")?
        .expect("temp table exists");
    let pages = copy_from::copy_file_into(oid, file, compression, &f.columns, &f.sha256)?;
    Spi::run(
        "SELECT pg_catalog.lo_create(l.loid)
         FROM (SELECT DISTINCT loid FROM pg_temp.pg_backup_lo_pages) l
         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = l.loid)",
    )?;
    Spi::run(
        "SELECT pg_catalog.lo_put(loid, pageno::bigint * (current_setting('block_size')::int / 4), data)
         FROM pg_temp.pg_backup_lo_pages",
    )?;
    Spi::run("DROP TABLE pg_temp.pg_backup_lo_pages")?;
    Ok(pages as i64)
}
