//! History rows of `backup.backups`, written autonomously so they outlive the caller's
//! transaction (a failed backup keeps its row).

use serde::Serialize;

use super::autonomous::{self, Wait};

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
    pub progress: Option<serde_json::Value>,
    /// The storage target holding the remote copy, and its URL (issue 12).
    pub storage: Option<String>,
    pub storage_url: Option<String>,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub fn record(row: &BackupRow) {
    autonomous::execute_or_inline(
        "backup_upsert",
        &serde_json::to_value(row).expect("row serializes"),
    );
}

/// From an exit callback: mark a backup that was still running as failed, without waiting.
pub fn record_exit(id: &str, error: &str) {
    autonomous::execute(
        "backup_fail_if_running",
        &serde_json::json!({ "id": id, "error": error }),
        Wait::No,
    );
}
