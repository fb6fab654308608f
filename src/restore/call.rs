//! `backup.restore()` as the SQL function calls it: the options checked, the backup's files
//! held for the transaction, and the restore run here (atomic, or a dry run) or in a restore
//! worker that commits as it goes (atomic => false, and jobs => N).

use super::background;
use super::options::{check_jobs, RestoreOptions};
use super::result::Row;
use super::run;
use crate::error::Result;
use crate::security::Caller;

/// Restore backup `id` as `opts` say, for `caller`: one result row per step.
pub fn restore(id: &str, opts: &RestoreOptions, caller: &Caller) -> Result<Vec<Row>> {
    check_jobs(opts)?;
    // The backup's files stay until this transaction ends: a delete() meanwhile fails with
    // 55006 (issue 17). The caller's transaction spans a restore(atomic => false) or
    // restore(jobs => N) too (it waits for its worker, whose job workers it covers).
    crate::backup_lock::read(id, crate::backup_lock::Holder::Transaction);
    if !opts.atomic && !opts.dry_run {
        return background::run(id, opts, caller);
    }
    run::restore_with(id, opts, caller, None)
}
