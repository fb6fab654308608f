//! What a call of `backup.restore()` asks: its options (as the SQL arguments gave them) and
//! the request a restore's background workers are handed (the call, the caller, the session).

use serde::{Deserialize, Serialize};

use super::plan::{Existing, OnError};
use super::scope::Scope;
use crate::archive::manifest::Manifest;
use crate::error::{BackupError, Result};
use crate::session::Session;

/// restore(jobs => N): at most this many job workers.
pub const MAX_JOBS: i32 = 64;

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
    /// Read the archive from this storage target, whatever database it was taken of
    /// (issue 20); None: the local copy, else the remote copy the history row records.
    #[serde(default)]
    pub storage: Option<String>,
}

fn one() -> i32 {
    1
}

impl RestoreOptions {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "tables": self.tables, "schemas": self.schemas,
            "existing": format!("{:?}", self.existing).to_lowercase(),
            "schema_only": self.schema_only, "data_only": self.data_only,
            "target_schema": self.target_schema, "disable_triggers": self.disable_triggers,
            "on_error": format!("{:?}", self.on_error).to_lowercase(), "confirm": self.confirm,
            "analyze": self.analyze, "atomic": self.atomic,
            "no_tablespaces": self.no_tablespaces, "jobs": self.jobs,
            "storage": self.storage,
        })
    }
}

/// jobs => N: a number of workers, for a restore that commits as it goes.
pub fn check_jobs(opts: &RestoreOptions) -> Result<()> {
    if !(1..=MAX_JOBS).contains(&opts.jobs) {
        return Err(BackupError::invalid(format!(
            "jobs must be between 1 and {}, not {}",
            MAX_JOBS,
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

/// What the worker is asked to do (and, with jobs => N, each of its job workers).
#[derive(Clone, Serialize, Deserialize)]
pub struct Request {
    pub backup_id: String,
    pub opts: RestoreOptions,
    pub caller_schemas: Vec<String>,
    pub caller_role: String,
    pub caller_oid: u32,
    pub session: Session,
}

impl RestoreOptions {
    /// The scope these options ask of `m`: its tables, schemas and target_schema (the
    /// leader's and every job worker's).
    pub fn scope(&self, m: &Manifest) -> Result<Scope> {
        Scope::build(
            m,
            self.tables.as_deref(),
            self.schemas.as_deref(),
            self.target_schema.as_deref(),
        )
    }
}
