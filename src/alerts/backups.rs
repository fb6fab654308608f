//! Events of backups: a trigger on `backup.backups` raises `backup_succeeded` or
//! `backup_failed` in the transaction that commits the row's end, whichever path wrote it: a
//! manual create() (its history writer's own transaction), a scheduled run (the run worker's),
//! create(jobs => N), the exit callback of a terminated backend, or the sweep that settles a
//! backup whose process died. An event raised in the failing transaction itself would be
//! rolled back with it; this one lives exactly as long as the row that says the backup failed.

use pgrx::prelude::*;
use serde_json::{json, Value};

use super::{emit, Event, EventKind};

/// The event a change of a backup's status raises, if any: its end (`running` to `completed`
/// or `failed`), or a row inserted as `failed` (a backup that failed before its `running` row
/// could be written). Rows that rescan() registers (inserted `completed`) raise nothing.
pub fn kind_of(op_insert: bool, old: Option<&str>, new: &str) -> Option<EventKind> {
    let ended = if op_insert {
        new == "failed"
    } else {
        old == Some("running") && matches!(new, "completed" | "failed")
    };
    match (ended, new) {
        (true, "completed") => Some(EventKind::BackupSucceeded),
        (true, "failed") => Some(EventKind::BackupFailed),
        _ => None,
    }
}

/// The details of backup `id`'s event, from its row (which this transaction just wrote).
fn details(id: &str) -> Result<Value, pgrx::spi::Error> {
    let row = crate::query::one::<crate::text::Json>(
        "SELECT pg_catalog.jsonb_build_object(
           'backup_id', id, 'label', label, 'schedule', schedule, 'status', status,
           'kind', kind, 'format', format, 'started_at', started_at, 'finished_at', finished_at,
           'duration_seconds', extract(epoch FROM finished_at - started_at)::float8,
           'tables', table_count, 'rows', row_count, 'bytes', bytes,
           'storage', storage, 'created_by', created_by, 'error', error,
           'attempt', attempt,
           -- A scheduled try that failed and will be tried again (retries => n).
           'will_retry', status = 'failed' AND attempt IS NOT NULL AND coalesce(attempt <= (
               SELECT s.retries FROM backup.schedules s
               WHERE s.name = b.schedule AND s.database = pg_catalog.current_database()), false))
         FROM backup.backups b WHERE id = $1",
        &[crate::text::arg(id)],
    )?;
    let mut v = row
        .map(|j| j.0)
        .unwrap_or_else(|| json!({ "backup_id": id }));
    v["trigger"] = Value::String(
        if v["schedule"].is_null() {
            "manual"
        } else {
            "schedule"
        }
        .into(),
    );
    Ok(v)
}

/// AFTER INSERT OR UPDATE OF status ON backup.backups, FOR EACH ROW.
#[pg_trigger]
fn backups_event<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgHeapTupleError> {
    let Some(new) = trigger.new() else {
        return Ok(None);
    };
    let insert = trigger.old().is_none();
    let old_status: Option<String> = match trigger.old() {
        Some(old) => old.get_by_name::<String>("status").ok().flatten(),
        None => None,
    };
    let new_status: String = new
        .get_by_name::<String>("status")
        .ok()
        .flatten()
        .unwrap_or_default();
    let Some(kind) = kind_of(insert, old_status.as_deref(), &new_status) else {
        return Ok(None);
    };
    let id: String = new
        .get_by_name::<String>("id")
        .ok()
        .flatten()
        .unwrap_or_default();
    match crate::subtransaction::run_result(|| details(&id)) {
        Ok(Ok(d)) => emit(&Event::new(kind, d)),
        _ => emit(&Event::new(
            kind,
            json!({ "backup_id": id, "status": new_status }),
        )),
    }
    Ok(None)
}

extension_sql!(
    r#"
CREATE TRIGGER backups_event AFTER INSERT OR UPDATE OF status ON backup.backups
  FOR EACH ROW EXECUTE FUNCTION backup.backups_event();
"#,
    name = "backups_event_trigger",
    requires = ["catalog", "alerts", backups_event]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_end_of_a_backup_raises_an_event() {
        assert_eq!(
            kind_of(false, Some("running"), "completed"),
            Some(EventKind::BackupSucceeded)
        );
        assert_eq!(
            kind_of(false, Some("running"), "failed"),
            Some(EventKind::BackupFailed)
        );
        assert_eq!(kind_of(true, None, "failed"), Some(EventKind::BackupFailed));
        // rescan() registers archives as completed rows: not a backup that just succeeded.
        assert_eq!(kind_of(true, None, "completed"), None);
        assert_eq!(kind_of(true, None, "running"), None);
        assert_eq!(kind_of(false, Some("completed"), "deleted"), None);
        assert_eq!(kind_of(false, Some("failed"), "failed"), None);
        assert_eq!(kind_of(false, Some("running"), "running"), None);
    }
}
