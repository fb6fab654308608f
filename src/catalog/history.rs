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
/// A restore whose worker is exiting (on_exit callback): still `running`, it is `failed`
/// with `error` (the steps its batches committed stay, as its progress says). Written by an
/// autonomous session: the worker's own transaction is gone.
pub fn fail_running_restore(id: i64, error: &str) {
    autonomous::execute(
        Stmt::RestoreFailIfRunning,
        &serde_json::json!({ "id": id, "error": error }),
        Wait::No,
    );
}

pub fn fail_dead_restore(id: i64, pid: Option<i32>) {
    write(
        Stmt::RestoreFailDead,
        serde_json::json!({
            "id": id, "pid": pid,
            "error": "the process running the restore exited before it finished (terminated or crashed)",
        }),
    );
}

/// What one transaction of restore(atomic => false) commits (the restore worker's batch, or
/// an item of a job worker of restore(jobs => N)): added to the restore's history row in that
/// same transaction, so that after any crash, cancel or disconnect the row says exactly what
/// stayed committed (`progress->'restored'`), never more and never less.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Committed {
    /// Result rows committed (steps, kept and skipped objects included).
    pub entries: usize,
    /// Table rows loaded.
    pub rows: i64,
    /// The last step, as `kind object`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// The steps that restored something, as `kind object`.
    pub restored: Vec<String>,
}

impl Committed {
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

/// Add `what` to restore `restore_id`'s `progress`, in the current transaction (the one that
/// commits it). Concurrent committers (job workers) queue on the row lock for the instant
/// between this UPDATE and their commit.
pub fn record_committed(restore_id: i64, what: &Committed) -> Result<(), pgrx::spi::Error> {
    if restore_id == 0 || what.is_empty() {
        return Ok(());
    }
    pgrx::Spi::run_with_args(
        "UPDATE backup.restores SET
           progress = pg_catalog.jsonb_build_object(
             'entries_committed', COALESCE((progress->>'entries_committed')::bigint, 0) + ($2->>'entries')::bigint,
             'last_committed', COALESCE($2->'last', progress->'last_committed'),
             'restored', COALESCE(progress->'restored', '[]'::jsonb) || ($2->'restored')),
           row_count = COALESCE(row_count, 0) + ($2->>'rows')::bigint
         WHERE id = $1",
        &[
            restore_id.into(),
            crate::text::Json(serde_json::to_value(what).expect("serializes")).into(),
        ],
    )
}

/// A restore(atomic => false) that failed: the row says so, with `error`; its `progress` is
/// what the committed transactions recorded (left as it is). Runs in its own transaction,
/// after the failed one was rolled back. Returns how the error describes what stays.
pub fn record_restore_failure(restore_id: i64, error: impl Fn(&str) -> String) -> String {
    let outcome = (|| -> crate::error::Result<String> {
        let progress = crate::query::one::<crate::text::Text>(
            "SELECT progress::pg_catalog.text FROM backup.restores WHERE id = $1",
            &[restore_id.into()],
        )?
        .and_then(|t| serde_json::from_str(&t.0).ok())
        .unwrap_or(serde_json::Value::Null);
        let stays = stays_text(&progress);
        pgrx::Spi::run_with_args(
            "UPDATE backup.restores SET status = 'failed', finished_at = now(), pid = NULL, error = $2
             WHERE id = $1",
            &[restore_id.into(), crate::text::arg(error(&stays))],
        )?;
        Ok(stays)
    })();
    outcome.unwrap_or_else(|e| {
        pgrx::warning!("pg_backup: could not record the failed restore {restore_id}: {e}");
        "see backup.restores.progress->'restored' for what was committed before the failure"
            .to_string()
    })
}

/// What the error of a failed restore(atomic => false) says stays restored, from its
/// recorded progress.
pub fn stays_text(progress: &serde_json::Value) -> String {
    let n = progress["entries_committed"].as_u64().unwrap_or(0);
    match progress["last_committed"].as_str() {
        Some(last) if n > 0 => format!(
            "{n} steps were committed before the failure (the last: {last}) and stay restored; see backup.restores.progress->'restored'"
        ),
        _ => "nothing was committed before the failure".to_string(),
    }
}

/// backup.history_keep, applied by the scheduler in its database: history rows older than
/// `days`, or not among the newest `rows` of their table, are deleted, from backup.backups
/// (only backups whose archive is gone: `failed` and `deleted`; a `running` or `completed`
/// backup's row stays whatever its age, and counts among the newest), backup.restores and
/// backup.drills (finished ones). Returns how many rows went.
pub fn prune_history(days: Option<u32>, rows: Option<u64>) -> Result<i64, pgrx::spi::Error> {
    if days.is_none() && rows.is_none() {
        return Ok(0);
    }
    let days = days.map(|d| d.min(i32::MAX as u32) as i32);
    let rows = rows.map(|r| r.min(i64::MAX as u64) as i64);
    // One statement per table, each the same shape: rank by age, delete what is past a limit.
    let tables: [(&str, &str, &str); 3] = [
        ("backup.backups", "id", "status IN ('failed', 'deleted')"),
        ("backup.restores", "id", "status <> 'running'"),
        ("backup.drills", "id", "status <> 'running'"),
    ];
    let mut gone = 0i64;
    for (table, key, prunable) in tables {
        let sql = format!(
            "WITH ranked AS (
               SELECT {key} AS k, row_number() OVER (ORDER BY started_at DESC, {key} DESC) AS n
               FROM {table}),
             d AS (
               DELETE FROM {table} t USING ranked r
               WHERE t.{key} = r.k AND t.{prunable}
                 AND ((t.started_at < now() - make_interval(days => $1))
                      OR r.n > $2)
               RETURNING 1)
             SELECT count(*) FROM d"
        );
        gone +=
            pgrx::Spi::get_one_with_args::<i64>(&sql, &[days.into(), rows.into()])?.unwrap_or(0);
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_stays_is_read_from_the_recorded_progress() {
        assert_eq!(
            stays_text(&serde_json::Value::Null),
            "nothing was committed before the failure"
        );
        let p = serde_json::json!({"entries_committed": 3, "last_committed": "index public.i", "restored": []});
        assert!(stays_text(&p)
            .starts_with("3 steps were committed before the failure (the last: index public.i)"));
    }

    #[test]
    fn a_commit_without_a_last_step_keeps_the_recorded_one() {
        let c = Committed {
            entries: 1,
            rows: 0,
            last: None,
            restored: vec![],
        };
        assert!(serde_json::to_value(&c).unwrap().get("last").is_none());
    }
}
