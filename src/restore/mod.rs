//! restore(): replay a backup into the current database, in pg_restore's order: pre-data DDL,
//! data through COPY FROM, then post-data (indexes, constraints, triggers, policies, sequence
//! values, materialized view refresh). All or nothing: it runs in the caller's transaction.

pub mod plan;

use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use crate::archive::compression::Compression;
use crate::archive::manifest::Manifest;
use crate::archive::verify::{self, FileStatus};
use crate::backup::create::unknown_backup;
use crate::backup::manage::backup_dir;
use crate::catalog::autonomous;
use crate::catalog::history::now_rfc3339;
use crate::copy::copy_from;
use crate::error::{BackupError, Result};
use crate::security::Caller;
use crate::subtransaction;
use plan::{Action, Existing};

pub struct RestoreOptions {
    pub existing: Existing,
    pub schema_only: bool,
    pub data_only: bool,
    pub dry_run: bool,
    pub confirm: bool,
}

/// One result row: object, kind, action, rows, status, detail.
pub type Row = (String, String, String, Option<i64>, String, Option<String>);

fn qualified(schema: &Option<String>, name: &str) -> String {
    format!("{}.{}", schema.clone().unwrap_or_default(), name)
}

fn table_oid(schema: &str, name: &str) -> Result<Option<pg_sys::Oid>> {
    Ok(Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2)",
        &[schema.into(), name.into()],
    )?)
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

    // The plan: one action per table of the backup.
    let mut tables: Vec<(String, Option<String>, String, Action, bool)> = Vec::new();
    for item in manifest.pre_data.iter().filter(|i| i.kind == "table") {
        let schema = item.schema.clone().unwrap_or_default();
        let exists = table_oid(&schema, &item.name)?.is_some();
        tables.push((
            qualified(&item.schema, &item.name),
            item.schema.clone(),
            item.name.clone(),
            plan::action_for(exists, opts.existing),
            exists,
        ));
    }
    for f in &manifest.files {
        let q = format!("{}.{}", f.schema, f.table);
        if !tables.iter().any(|t| t.0 == q) {
            // data_only backups carry no table DDL: the table must exist.
            let exists = table_oid(&f.schema, &f.table)?.is_some();
            let action = if exists {
                plan::action_for(true, opts.existing)
            } else {
                Action::Create
            };
            tables.push((q, Some(f.schema.clone()), f.table.clone(), action, exists));
        }
    }
    let check_list: Vec<(String, Action, bool)> =
        tables.iter().map(|t| (t.0.clone(), t.3, t.4)).collect();
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
    if let Err(e) = plan::check(&check_list, opts.existing, opts.confirm, opts.dry_run, id) {
        finish_record(&mut record, "failed", None, Some(e.to_string()));
        return Err(e);
    }
    let rows_of = |q: &str| {
        manifest
            .files
            .iter()
            .find(|f| format!("{}.{}", f.schema, f.table) == q)
            .map(|f| f.rows as i64)
    };
    if opts.dry_run {
        let out: Vec<Row> = tables
            .iter()
            .map(|t| {
                (
                    t.0.clone(),
                    "table".into(),
                    t.3.as_str().into(),
                    if t.3.loads_data() && !opts.schema_only {
                        rows_of(&t.0)
                    } else {
                        None
                    },
                    "planned".into(),
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
            let msg = match &caught {
                CaughtError::PostgresError(r)
                | CaughtError::ErrorReport(r)
                | CaughtError::RustPanic { ereport: r, .. } => r.message().to_string(),
            };
            finish_record(&mut record, "failed", None, Some(msg));
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

type TablePlan = (String, Option<String>, String, Action, bool);

fn apply(
    manifest: &Manifest,
    dir: &std::path::Path,
    compression: Compression,
    opts: &RestoreOptions,
    tables: &[TablePlan],
) -> Result<Vec<Row>> {
    let mut out: Vec<Row> = Vec::new();
    let action_of = |q: &str| tables.iter().find(|t| t.0 == q).map(|t| t.3);
    // Function bodies may name tables that come later, as in pg_restore.
    Spi::run("SELECT set_config('check_function_bodies', 'off', true)")?;
    for t in tables.iter().filter(|t| t.3 == Action::Drop) {
        Spi::run(&format!(
            "DROP TABLE {}.{} CASCADE",
            spi::quote_identifier(t.1.clone().unwrap_or_default()),
            spi::quote_identifier(&t.2)
        ))?;
    }
    if !opts.data_only {
        for item in &manifest.pre_data {
            let q = qualified(&item.schema, &item.name);
            if item.kind == "table" && !action_of(&q).is_some_and(|a| a.runs_ddl()) {
                continue;
            }
            if item.kind == "table" {
                Spi::run(&item.sql)?;
                out.push((
                    q,
                    item.kind.clone(),
                    "create".into(),
                    None,
                    "ok".into(),
                    None,
                ));
                continue;
            }
            // Types, functions, sequences, views ... that already exist are kept as they are.
            match subtransaction::run(|| Spi::run(&item.sql)) {
                Ok(r) => {
                    r?;
                    out.push((
                        q,
                        item.kind.clone(),
                        "create".into(),
                        None,
                        "ok".into(),
                        None,
                    ));
                }
                Err(caught) if is_duplicate(&caught) => {
                    out.push((
                        q,
                        item.kind.clone(),
                        "skip".into(),
                        None,
                        "ok".into(),
                        Some("already exists".into()),
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
            .filter(|t| t.3 == Action::Truncate)
            .map(|t| {
                format!(
                    "{}.{}",
                    spi::quote_identifier(t.1.clone().unwrap_or_default()),
                    spi::quote_identifier(&t.2)
                )
            })
            .collect();
        if !truncate.is_empty() {
            Spi::run(&format!("TRUNCATE {}", truncate.join(", ")))?;
        }
        for f in &manifest.files {
            let q = format!("{}.{}", f.schema, f.table);
            let action = action_of(&q).unwrap_or(Action::Create);
            if !action.loads_data() {
                out.push((
                    q,
                    "table_data".into(),
                    "skip".into(),
                    None,
                    "ok".into(),
                    Some("table exists".into()),
                ));
                continue;
            }
            let oid = table_oid(&f.schema, &f.table)?.ok_or_else(|| {
                BackupError::unknown(format!(
                    "table {q} does not exist and the backup has no definition for it"
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
            out.push((
                q,
                "table_data".into(),
                action.as_str().into(),
                Some(rows as i64),
                "ok".into(),
                None,
            ));
        }
    }
    for item in &manifest.post_data {
        if opts.schema_only && item.kind == "sequence_set" {
            continue;
        }
        if opts.data_only && item.kind != "sequence_set" {
            continue;
        }
        if let Some(t) = &item.table {
            // Indexes, constraints ... of a table that was kept as it is already exist.
            // (Tables in `table` are quoted identifiers; compare on the plain form.)
            let plain = tables.iter().find(|p| {
                format!(
                    "{}.{}",
                    spi::quote_identifier(p.1.clone().unwrap_or_default()),
                    spi::quote_identifier(&p.2)
                ) == *t
            });
            if plain.is_some_and(|p| !p.3.runs_ddl()) {
                continue;
            }
        }
        Spi::run(&item.sql)?;
        out.push((
            qualified(&item.schema, &item.name),
            item.kind.clone(),
            "create".into(),
            None,
            "ok".into(),
            None,
        ));
    }
    Ok(out)
}
