//! One restore, from the archive to the result rows: its history row (written only through
//! `catalog::history`, never in the caller's transaction), the archive opened and checked
//! (files, signature), the scope, plan and preflight checks, then the walk; all-or-nothing in
//! a subtransaction (atomic), or in the restore worker's batches (atomic => false).

use pgrx::prelude::*;

use super::batch::{self, Batches};
use super::context::{current_entry, current_step, set_current};
use super::job::{Archive, Job};
use super::options::RestoreOptions;
use super::plan::{self, Plan};
use super::result::{summary, Row};
use super::walk::Walk;
use super::{preflight, statements, tablespaces};
use crate::archive::verify::FileStatus;
use crate::catalog::history::{now_rfc3339, RestoreRow};
use crate::catalog::runs;
use crate::error::{BackupError, Result};
use crate::security::privileges::Restorer;
use crate::security::redact;
use crate::security::signing;
use crate::security::{self, targets, Caller};
use crate::storage::archive_files::ArchiveSource;
use crate::subtransaction;

/// The restore of `restore(atomic => false)`, in its worker: commits every so many steps.
/// Errors leave as they are; the worker records them with what was committed.
pub fn restore_batched(
    id: &str,
    opts: &RestoreOptions,
    caller: &Caller,
    batches: &Batches,
) -> Result<Vec<Row>> {
    // The worker commits as it goes: its own hold lasts until it exits.
    crate::backup_lock::read(id, crate::backup_lock::Holder::Session);
    restore_with(id, opts, caller, Some(batches))
}

pub fn restore_with(
    id: &str,
    opts: &RestoreOptions,
    caller: &Caller,
    batches: Option<&Batches>,
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
        // SAFETY: MyProcPid is set at backend start and only read here.
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
    set_current(None);
    if let Some(b) = batches {
        // restore(atomic => false)'s worker: no outer subtransaction (each batch commits);
        // a failure is recorded by the worker with what was committed (background.rs).
        if let Some(rid) = record.id {
            batch::started(rid, b);
        }
        let out = restore_steps(id, opts, caller, &mut record, batches)?;
        let (rows, error) = summary(&out);
        record.finish("completed", Some(rows), error);
        drop(claim);
        return Ok(out);
    }
    let outcome = subtransaction::run(|| restore_steps(id, opts, caller, &mut record, None));
    let result = match outcome {
        Ok(Ok(out)) => {
            let (rows, error) = summary(&out);
            let rows = if opts.dry_run { 0 } else { rows };
            record.finish("completed", Some(rows), error);
            Ok(out)
        }
        Ok(Err(e)) => {
            let at = current_entry()
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
            let (kind, object, exposure) = current_step();
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
    batches: Option<&Batches>,
) -> Result<Vec<Row>> {
    // The local copy, else the remote copy the history row points to (storage::locate).
    // Every file is checked before anything changes. Who wrote it (issue 17), on the very
    // bytes about to be used, before anything is made of them: signed by a trusted key, or
    // (a superuser's explicit choice, recorded) an unsigned archive of an earlier release.
    let check = |source: &ArchiveSource| {
        if opts.schema_only && opts.data_only {
            return Err(
                BackupError::invalid("schema_only and data_only cannot both be true")
                    .with_hint("Leave both false to restore everything."),
            );
        }
        check_files(id, source)
    };
    let archive = Archive::open(
        id,
        opts.storage.as_deref(),
        opts.identity.as_deref(),
        check,
        |source, raw| {
            let accepted = signing::authenticate(source, raw, caller.oid, false)?;
            if let signing::Authenticity::UnsignedAccepted { version } = accepted {
                record.note(
                    "allow_unsigned",
                    serde_json::json!({ "pg_backup_version": version }),
                );
            }
            Ok(())
        },
    )?;
    let manifest = &archive.manifest;
    // Issue 19: an archive of an older major version, adapted for this one (Archive::open,
    // which refused one of a newer major version): said, and recorded.
    if !archive.adapted.is_empty() {
        for note in &archive.adapted {
            pgrx::warning!("{note}");
        }
        record.note("adapted", serde_json::json!(archive.adapted));
    }
    let scope = opts.scope(manifest)?;
    let plan = Plan::build(manifest, &scope, opts.existing)?;
    let restorer = Restorer::of(caller);
    let placement = tablespaces::Placement::new(opts.no_tablespaces)?;
    record.table_count = Some(plan.tables.len() as i64);
    // Issue 9: protected schemas, the caller's privileges, the lock table; before anything
    // changes (and for a dry run too).
    plan::check(&plan.tables, opts.existing, opts.confirm, opts.dry_run, id)?;
    // What preflight checks, the executor finds checked (the same texts, issue 18).
    let _checks = statements::ChecksOfCall::begin();
    preflight::check(manifest, &scope, &plan, opts, &restorer, &placement)?;
    let job = Job::new(
        &archive, opts, &scope, &plan, &restorer, &placement, batches,
    );
    let out = Walk::new(&job)?.run(Walk::mode_of(&job))?;
    if let Some(b) = batches {
        b.commit(&out)?;
    }
    Ok(out)
}

/// Every file of the archive is as the manifest says, before anything changes.
fn check_files(id: &str, source: &ArchiveSource) -> Result<()> {
    let bad: Vec<String> = crate::storage::precheck(source)?
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
    Ok(())
}

/// A batched restore that failed: what was committed stays and the row says so (`error`
/// built from what its progress says stays). Runs in the worker's own transaction after its
/// batch was rolled back (no lock on the row is held). Returns what stays, as text.
pub fn record_failure(
    session: &crate::session::Session,
    restore_id: i64,
    error: impl Fn(&str) -> String,
) -> String {
    // SAFETY: the worker is outside any transaction here (its batch was aborted with
    // AbortOutOfAnyTransaction): a new one starts, with a snapshot for the catalog write.
    unsafe {
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    // As the session's current user (the extension owner, who owns the catalog): outside a
    // transaction the worker is the caller's session user.
    session.become_user();
    let stays = crate::catalog::history::record_restore_failure(restore_id, error);
    // SAFETY: ends the transaction and pops the snapshot started above; nothing else was
    // pushed in between (record_restore_failure runs its SPI calls to completion).
    unsafe {
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    }
    stays
}
