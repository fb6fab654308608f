//! History rows of `backup.backups` and `backup.restores`: every statement pg_backup runs on
//! them goes through here, written so that they outlive the caller's transaction (a failed
//! backup keeps its row) without ever waiting on a lock the caller holds (see `autonomous`).

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use super::autonomous::{self, Outcome, Stmt, Wait};

/// A `backup.backups` row (the subset pg_backup writes; names match the columns).
#[derive(Debug, Clone, Serialize)]
pub struct BackupRow {
    pub id: String,
    pub label: Option<String>,
    pub status: &'static str,
    pub kind: &'static str,
    pub format: String,
    pub compression: String,
    pub options: serde_json::Value,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub table_count: Option<i64>,
    pub row_count: Option<i64>,
    pub bytes: Option<i64>,
    pub manifest_sha256: Option<String>,
    pub path: Option<String>,
    pub schedule: Option<String>,
    pub created_by: Option<String>,
    pub error: Option<String>,
    pub pid: Option<i32>,
    /// The storage target holding the remote copy, and its URL (issue 12).
    pub storage: Option<String>,
    pub storage_url: Option<String>,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

static STANDBY_NOTICE: AtomicBool = AtomicBool::new(false);

/// Say once per session that a hot standby keeps no history.
fn note(outcome: &Outcome) {
    if *outcome == Outcome::Standby && !STANDBY_NOTICE.swap(true, Ordering::Relaxed) {
        pgrx::notice!(
            "pg_backup: this server is a hot standby; backup.backups and backup.restores are not updated here"
        );
    }
}

fn write(stmt: Stmt, arg: serde_json::Value) -> Outcome {
    let outcome = autonomous::execute(stmt, &arg, Wait::Yes);
    note(&outcome);
    outcome
}

pub fn record(row: &BackupRow) {
    write(
        Stmt::BackupUpsert,
        serde_json::to_value(row).expect("row serializes"),
    );
}

/// From an exit callback: mark a backup that was still running as failed, without waiting.
pub fn record_exit(id: &str, error: &str) {
    autonomous::execute(
        Stmt::BackupFailIfRunning,
        &serde_json::json!({ "id": id, "error": error }),
        Wait::No,
    );
}

/// How a backup whose process is gone ended.
#[derive(Debug, Clone, Serialize)]
pub struct Settled {
    pub id: String,
    pub pid: Option<i32>,
    /// `completed` (its archive is in place) or `failed`.
    pub status: &'static str,
    pub table_count: Option<i64>,
    pub row_count: Option<i64>,
    pub bytes: Option<i64>,
    pub manifest_sha256: Option<String>,
    pub error: Option<String>,
}

pub fn settle(s: &Settled) {
    write(
        Stmt::BackupSettle,
        serde_json::to_value(s).expect("row serializes"),
    );
}

/// The files of `id` are about to go: so is the row's claim to them, whatever the caller's
/// transaction does next.
pub fn mark_deleted(id: &str) {
    write(Stmt::BackupMarkDeleted, serde_json::json!({ "id": id }));
}

/// verify()'s verdicts, `(id, ok)`; only backups still `completed` are marked, so a backup
/// deleted while it was being verified is never called failed.
pub fn record_verified(results: &[(String, bool)]) {
    if results.is_empty() {
        return;
    }
    let arg: Vec<serde_json::Value> = results
        .iter()
        .map(
            |(id, ok)| serde_json::json!({ "id": id, "status": if *ok { "ok" } else { "failed" } }),
        )
        .collect();
    write(Stmt::VerifyRecord, serde_json::Value::Array(arg));
}

/// A `backup.restores` row, written when the restore starts and again when it ends.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreRow {
    /// Known once the start is recorded (None on a hot standby).
    pub id: Option<i64>,
    pub backup_id: String,
    pub started_at: String,
    pub dry_run: bool,
    pub options: serde_json::Value,
    pub table_count: Option<i64>,
    pub performed_by: String,
    pub pid: i32,
}

impl RestoreRow {
    /// Record the start; the row then says `running` until `finish`.
    pub fn start(&mut self) {
        let outcome = write(
            Stmt::RestoreStart,
            serde_json::to_value(&*self).expect("row serializes"),
        );
        self.id = outcome.result().and_then(|r| r.parse().ok());
    }

    /// Record `key: value` in the row's options now (e.g. that an unsigned archive was
    /// accepted), whatever happens to the restore next.
    pub fn note(&mut self, key: &str, value: serde_json::Value) {
        self.options[key] = value.clone();
        let Some(id) = self.id else { return };
        write(
            Stmt::RestoreNote,
            serde_json::json!({ "id": id, "options": { key: value } }),
        );
    }

    /// `status`: completed or failed.
    pub fn finish(&self, status: &str, rows: Option<i64>, error: Option<String>) {
        let Some(id) = self.id else { return };
        write(
            Stmt::RestoreFinish,
            serde_json::json!({
                "id": id, "status": status, "row_count": rows, "error": error,
                "table_count": self.table_count,
            }),
        );
    }
}

/// A restore whose process is gone.
pub fn fail_dead_restore(id: i64, pid: Option<i32>) {
    write(
        Stmt::RestoreFailDead,
        serde_json::json!({
            "id": id, "pid": pid,
            "error": "the process running the restore exited before it finished (terminated or crashed)",
        }),
    );
}
