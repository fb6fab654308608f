//! restore(): replay a backup into the current database by walking its TOC (`runner`), in
//! pg_restore's order: pre-data, data through COPY FROM, post-data, grants, then event
//! triggers and materialized view refreshes, sequence values last. `scope` picks the entries
//! (subsets take what they need), `plan` what `existing` means for each table.
//!
//! `on_error => 'abort'` (default): everything runs in the caller's transaction, all or
//! nothing; an error names the entry it stopped at. `'continue'`: every entry in its own
//! subtransaction; failures become result rows.

pub mod background;
mod data;
pub mod names;
mod parallel;
pub mod plan;
mod preflight;
pub mod retarget;
pub mod runner;
pub mod schedule;
pub mod scope;
pub mod sequences;
pub mod statements;
pub mod tablespaces;
pub mod tuning;

use pgrx::prelude::*;

use crate::archive::compression::Compression;

use crate::archive::verify::FileStatus;
use crate::catalog::history::{now_rfc3339, RestoreRow};
use crate::catalog::runs;
use crate::error::{BackupError, Result};
use crate::security::privileges::Restorer;
use crate::security::redact;
use crate::security::signing;
use crate::security::{self, targets, Caller};
use crate::subtransaction;
use plan::{Existing, OnError};
use runner::{Job, Plan, Walk};
use scope::Scope;

pub use runner::Row;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
    /// false: commit as it goes, in a background worker (see `background`).
    pub atomic: bool,
    /// Every relation in the database's default tablespace, whatever the backup recorded
    /// (pg_restore --no-tablespaces; see `tablespaces`).
    #[serde(default)]
    pub no_tablespaces: bool,
    /// More than 1: rows and post-data entries over that many workers (see `parallel`);
    /// needs atomic => false.
    #[serde(default = "one")]
    pub jobs: i32,
}

fn one() -> i32 {
    1
}

impl RestoreOptions {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "tables": self.tables, "schemas": self.schemas,
            "existing": format!("{:?}", self.existing).to_lowercase(),
            "schema_only": self.schema_only, "data_only": self.data_only,
            "target_schema": self.target_schema, "disable_triggers": self.disable_triggers,
            "on_error": format!("{:?}", self.on_error).to_lowercase(), "confirm": self.confirm,
            "analyze": self.analyze, "atomic": self.atomic,
            "no_tablespaces": self.no_tablespaces, "jobs": self.jobs,
        })
    }
}

pub fn restore(id: &str, opts: &RestoreOptions, caller: &Caller) -> Result<Vec<Row>> {
    check_jobs(opts)?;
    // The backup's files stay until this transaction ends: a delete() meanwhile fails with
    // 55006 (issue 17). The caller's transaction spans a restore(atomic => false) or
    // restore(jobs => N) too (it waits for its worker, whose job workers it covers).
    crate::backup_lock::read(id, crate::backup_lock::Holder::Transaction);
    if !opts.atomic && !opts.dry_run {
        return background::run(id, opts, caller);
    }
    restore_with(id, opts, caller, None)
}

/// jobs => N: a number of workers, for a restore that commits as it goes.
fn check_jobs(opts: &RestoreOptions) -> Result<()> {
    if !(1..=parallel::MAX_JOBS).contains(&opts.jobs) {
        return Err(BackupError::invalid(format!(
            "jobs must be between 1 and {}, not {}",
            parallel::MAX_JOBS,
            opts.jobs
        ))
        .with_hint("Pass jobs => 1 (the default) to restore in one worker, or the number of parallel workers."));
    }
    if opts.jobs > 1 && opts.atomic {
        return Err(BackupError::invalid(format!(
            "restore(jobs => {}) commits as it goes and cannot be atomic",
            opts.jobs
        ))
        .with_hint("Add atomic => false (each worker commits its own steps, as pg_restore -j does), or leave jobs at 1 for an all-or-nothing restore."));
    }
    Ok(())
}

/// The restore of `restore(atomic => false)`, in its worker: commits every so many steps.
/// Errors leave as they are; the worker records them with what was committed.
pub fn restore_batched(
    id: &str,
    opts: &RestoreOptions,
    caller: &Caller,
    batches: &background::Batches,
) -> Result<Vec<Row>> {
    // The worker commits as it goes: its own hold lasts until it exits.
    crate::backup_lock::read(id, crate::backup_lock::Holder::Session);
    restore_with(id, opts, caller, Some(batches))
}

fn restore_with(
    id: &str,
    opts: &RestoreOptions,
    caller: &Caller,
    batches: Option<&background::Batches>,
) -> Result<Vec<Row>> {
    security::owner::refuse_inside_restricted_operation()?;
    if !opts.dry_run {
        security::owner::refuse_temporary_objects()?;
    }
    if let Some(to) = &opts.target_schema {
        targets::check_target_schema(to)?;
    }
    // The row exists from the start (and the shared-memory slot before it, so no sweep takes
    // the restore for dead); if the process dies, the sweep marks it failed. History rows are
    // written by catalog::history (never in the caller's transaction).
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
    if batches.is_some() && opts.jobs > 1 {
        // restore(jobs => N): backup.progress shows the workers asked for.
        claim.set_jobs(opts.jobs as usize);
    }
    runner::set_current(None);
    if let Some(b) = batches {
        // restore(atomic => false)'s worker: no outer subtransaction (each batch commits);
        // a failure is recorded by the worker with what was committed (background.rs).
        if let Some(rid) = record.id {
            background::started(rid, b);
        }
        let out = restore_steps(id, opts, caller, &mut record, batches)?;
        let rows: i64 = out.iter().filter_map(|r| r.3).sum();
        let failed = out.iter().filter(|r| r.4 == "failed").count();
        let error = (failed > 0)
            .then(|| format!("{failed} object(s) failed; see the rows with status 'failed'"));
        record.finish("completed", Some(rows), error);
        drop(claim);
        return Ok(out);
    }
    let outcome = subtransaction::run(|| restore_steps(id, opts, caller, &mut record, None));
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
            // The error may carry row values (or text written by user code): the history row
            // and the caller get it without them (issue 9); the server log gets all of it.
            let (kind, object, exposure) = runner::current_step();
            let text = redact::describe(&caught, &kind, &object, exposure);
            record.finish("failed", None, Some(text.clone()));
            drop(claim);
            redact::raise(&caught, text)
        }
    };
    // Only now: until the row says how it ended, the slot says the restore is alive.
    drop(claim);
    result
}

fn restore_steps(
    id: &str,
    opts: &RestoreOptions,
    caller: &Caller,
    record: &mut RestoreRow,
    batches: Option<&background::Batches>,
) -> Result<Vec<Row>> {
    // The local copy, else the remote copy the history row points to (storage::locate).
    let source = crate::storage::locate(id, None, opts.identity.as_deref())?;
    if opts.schema_only && opts.data_only {
        return Err(
            BackupError::invalid("schema_only and data_only cannot both be true")
                .with_hint("Leave both false to restore everything."),
        );
    }
    // Check every file before changing anything.
    let bad: Vec<String> = crate::storage::precheck(&source)?
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
    // Who wrote it (issue 17), on the very bytes about to be used, before anything is made
    // of them: signed by a trusted key, or (a superuser's explicit choice, recorded) an
    // unsigned archive of an earlier release.
    let (manifest, raw_manifest) = source.manifest(|raw| {
        let accepted = signing::authenticate(&source, raw, caller.oid, false)?;
        if let signing::Authenticity::UnsignedAccepted { version } = accepted {
            record.note(
                "allow_unsigned",
                serde_json::json!({ "pg_backup_version": version }),
            );
        }
        Ok(())
    })?;
    let encrypted = crate::storage::archive_files::Sealed::of(&raw_manifest).is_some();
    let compression = Compression::from_name(&manifest.compression)?;
    let scope = Scope::build(
        &manifest,
        opts.tables.as_deref(),
        opts.schemas.as_deref(),
        opts.target_schema.as_deref(),
    )?;
    let plan = Plan::build(&manifest, &scope, opts.existing)?;
    let restorer = Restorer::of(caller);
    let placement = tablespaces::Placement::new(opts.no_tablespaces)?;
    record.table_count = Some(plan.tables.len() as i64);
    // Issue 9: protected schemas, the caller's privileges, the lock table; before anything
    // changes (and for a dry run too).
    plan::check(&plan.tables, opts.existing, opts.confirm, opts.dry_run, id)?;
    preflight::check(&manifest, &scope, &plan, opts, &restorer, &placement)?;
    let job = Job {
        manifest: &manifest,
        source: &source,
        encrypted,
        compression,
        opts,
        scope: &scope,
        plan: &plan,
        restorer: &restorer,
        placement: &placement,
        batches,
    };
    if opts.dry_run {
        return Walk::new(&job)?.plan_rows();
    }
    let out = Walk::new(&job)?.apply()?;
    if let Some(b) = batches {
        b.commit(&out)?;
        if opts.analyze && !opts.schema_only && !b.analyzed.get() {
            // ANALYZE's locks count too: in batches like the rest.
            for t in loaded_tables(&plan, &out) {
                tuning::analyze([t.as_str()])?;
                b.step_done(&out)?;
            }
        }
        return Ok(out);
    }
    if opts.analyze && !opts.schema_only {
        let loaded = loaded_tables(&plan, &out);
        tuning::analyze(loaded.iter().map(String::as_str))?;
    }
    Ok(out)
}

/// Tables whose every step succeeded and that received rows (quoted names).
fn loaded_tables(plan: &Plan, out: &[Row]) -> Vec<String> {
    // A set, not a search of every row for every table: 10,000 tables make 30,000 rows.
    let loaded: std::collections::HashSet<&str> = out
        .iter()
        .filter(|r| r.4 == "ok" && r.3.is_some())
        .map(|r| r.0.as_str())
        .collect();
    plan.tables
        .iter()
        .filter(|t| t.action.loads_data())
        .filter(|t| loaded.contains(t.object().as_str()))
        .map(|t| scope::quoted(&t.schema, &t.name))
        .collect()
}

/// A batched restore that failed: what was committed stays and the row says so (`error`
/// built from what its progress says stays). Runs in the worker's own transaction after its
/// batch was rolled back (no lock on the row is held). Returns what stays, as text.
pub fn record_failure(
    session: &crate::session::Session,
    restore_id: i64,
    error: impl Fn(&str) -> String,
) -> String {
    unsafe {
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    // As the session's current user (the extension owner, who owns the catalog): outside a
    // transaction the worker is the caller's session user.
    session.become_user();
    let stays = crate::catalog::history::record_restore_failure(restore_id, error);
    unsafe {
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    }
    stays
}
