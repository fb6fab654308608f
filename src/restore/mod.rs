//! restore(): replay a backup into the current database by walking its TOC (`runner`), in
//! pg_restore's order: pre-data, data through COPY FROM, post-data, grants, then event
//! triggers and materialized view refreshes, sequence values last. `scope` picks the entries
//! (subsets take what they need), `plan` what `existing` means for each table.
//!
//! `on_error => 'abort'` (default): everything runs in the caller's transaction, all or
//! nothing; an error names the entry it stopped at. `'continue'`: every entry in its own
//! subtransaction; failures become result rows.

mod data;
pub mod names;
pub mod plan;
pub mod retarget;
pub mod runner;
pub mod scope;
pub mod sequences;
pub mod tuning;

use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;

use crate::archive::compression::Compression;

use crate::archive::verify::FileStatus;
use crate::catalog::history::{now_rfc3339, RestoreRow};
use crate::catalog::runs;
use crate::error::{BackupError, Result};
use crate::security::Caller;
use crate::subtransaction;
use plan::{Existing, OnError};
use runner::{Job, Plan, Walk};
use scope::Scope;

pub use runner::Row;

pub struct RestoreOptions {
    pub tables: Option<Vec<String>>,
    pub schemas: Option<Vec<String>>,
    pub existing: Existing,
    pub schema_only: bool,
    pub data_only: bool,
    pub target_schema: Option<String>,
    pub disable_triggers: bool,
    pub on_error: OnError,
    pub dry_run: bool,
    pub confirm: bool,
    /// ANALYZE the tables that received rows, at the end (default on).
    pub analyze: bool,
    /// age secret key(s) for an encrypted backup (else backup.identity_file).
    pub identity: Option<String>,
}

impl RestoreOptions {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "tables": self.tables, "schemas": self.schemas,
            "existing": format!("{:?}", self.existing).to_lowercase(),
            "schema_only": self.schema_only, "data_only": self.data_only,
            "target_schema": self.target_schema, "disable_triggers": self.disable_triggers,
            "on_error": format!("{:?}", self.on_error).to_lowercase(), "confirm": self.confirm,
            "analyze": self.analyze,
        })
    }
}

pub fn restore(id: &str, opts: &RestoreOptions, caller: &Caller) -> Result<Vec<Row>> {
    // The row exists from the start (and the shared-memory slot before it, so no sweep takes
    // the restore for dead); if the process dies, the sweep marks it failed.
    let claim = runs::claim(runs::Kind::Restore, "", 0);
    let mut record = RestoreRow {
        id: None,
        backup_id: id.to_string(),
        started_at: now_rfc3339(),
        dry_run: opts.dry_run,
        options: opts.to_json(),
        table_count: None,
        performed_by: caller.role.clone(),
        pid: unsafe { pg_sys::MyProcPid },
    };
    record.start();
    if let Some(rid) = record.id {
        claim.set_id(&rid.to_string());
    }
    runner::set_current(None);
    let outcome = subtransaction::run(|| restore_steps(id, opts, &mut record));
    let result = match outcome {
        Ok(Ok(out)) => {
            let rows: i64 = out.iter().filter_map(|r| r.3).sum();
            let failed = out.iter().filter(|r| r.4 == "failed").count();
            let error = (failed > 0)
                .then(|| format!("{failed} object(s) failed; see the rows with status 'failed'"));
            let rows = if opts.dry_run { 0 } else { rows };
            record.finish("completed", Some(rows), error);
            Ok(out)
        }
        Ok(Err(e)) => {
            let at = runner::current_entry()
                .map(|w| format!(" (while restoring {w})"))
                .unwrap_or_default();
            record.finish(
                "failed",
                None,
                Some(format!("{e} (SQLSTATE {}){at}", e.sqlstate())),
            );
            Err(e)
        }
        Err(caught) => {
            let at = runner::current_entry();
            let mut error = runner::describe_error(&caught);
            if let Some(w) = &at {
                error.push_str(&format!(" while restoring {w}"));
            }
            record.finish("failed", None, Some(error));
            drop(claim);
            match (&caught, at) {
                // The same error, with the entry named in its DETAIL.
                (CaughtError::PostgresError(r) | CaughtError::ErrorReport(r), Some(w)) => {
                    let detail = match r.detail() {
                        Some(d) => format!("{d}\nWhile restoring {w}."),
                        None => format!("While restoring {w}."),
                    };
                    let mut report =
                        ErrorReport::new(r.sql_error_code(), r.message().to_string(), "pg_backup")
                            .set_detail(detail);
                    if let Some(h) = r.hint() {
                        report = report.set_hint(h);
                    }
                    report.report(PgLogLevel::ERROR);
                    unreachable!("ereport(ERROR) returned")
                }
                _ => caught.rethrow(),
            }
        }
    };
    // Only now: until the row says how it ended, the slot says the restore is alive.
    drop(claim);
    result
}

fn restore_steps(id: &str, opts: &RestoreOptions, record: &mut RestoreRow) -> Result<Vec<Row>> {
    // The local copy, else the remote copy the history row points to (storage::locate).
    let source = crate::storage::locate(id, None, opts.identity.as_deref())?;
    if opts.schema_only && opts.data_only {
        return Err(
            BackupError::invalid("schema_only and data_only cannot both be true")
                .with_hint("Leave both false to restore everything."),
        );
    }
    // Check every file before changing anything.
    let bad: Vec<String> = crate::storage::precheck(&source)
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
    let (manifest, raw_manifest) = source.manifest()?;
    let encrypted = crate::storage::archive_files::Sealed::of(&raw_manifest).is_some();
    let compression = Compression::from_name(&manifest.compression)?;
    let scope = Scope::build(
        &manifest,
        opts.tables.as_deref(),
        opts.schemas.as_deref(),
        opts.target_schema.as_deref(),
    )?;
    let plan = Plan::build(&manifest, &scope, opts.existing)?;
    record.table_count = Some(plan.tables.len() as i64);
    plan::check(&plan.tables, opts.existing, opts.confirm, opts.dry_run, id)?;
    let job = Job {
        manifest: &manifest,
        source: &source,
        encrypted,
        compression,
        opts,
        scope: &scope,
        plan: &plan,
    };
    if opts.dry_run {
        return Walk::new(&job).plan_rows();
    }
    let out = Walk::new(&job).apply()?;
    if opts.analyze && !opts.schema_only {
        // Tables whose every step succeeded and that received rows.
        let loaded: Vec<String> = plan
            .tables
            .iter()
            .filter(|t| t.action.loads_data())
            .filter(|t| {
                out.iter()
                    .any(|r| r.0 == t.object() && r.4 == "ok" && r.3.is_some())
            })
            .map(|t| scope::quoted(&t.schema, &t.name))
            .collect();
        tuning::analyze(loaded.iter().map(String::as_str))?;
    }
    Ok(out)
}
