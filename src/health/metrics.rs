//! `backup.metrics()`: what the catalog of this database says about its backups, schedules
//! and drills, as Prometheus metrics (names `pg_backup_*`, labels `schedule` and `database`).
//!
//! Series per schedule come from `backup.health` (what each run recorded on its schedule row,
//! so a schedule that backs up another database is complete here too); backups of this
//! database that no schedule defined here took (manual ones: schedule="(manual)", or taken by
//! a schedule of another database's scheduler) from `backup.backups`; drills from
//! `backup.drills`. Nothing secret is read: no options, paths, URLs or errors.

use serde_json::Value;

use super::exposition::{render as render_text, Family, Kind};
use crate::error::Result;
use crate::text::Text;

/// One query: every series as a JSON object, in four lists.
const QUERY: &str = r#"
SELECT pg_catalog.jsonb_build_object(
  'schedules', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
       'schedule', h.name, 'database', h.database,
       'enabled', h.enabled::int, 'overdue', h.overdue::int,
       'last_success', extract(epoch FROM h.last_success_at),
       'last_success_age', extract(epoch FROM h.last_success_age),
       'duration', extract(epoch FROM h.last_success_duration),
       'bytes', h.last_success_bytes, 'rows', h.last_success_rows,
       'failures', h.failed_runs,
       'interval', extract(epoch FROM h.cron_interval),
       'verify_time', extract(epoch FROM h.last_verify_at),
       'verify_ok', (h.last_verify_status = 'ok')::int) ORDER BY h.name), '[]')
     FROM backup.health h),
  'unscheduled', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(u) ORDER BY u.schedule), '[]') FROM (
       SELECT coalesce(b.schedule, '(manual)') AS schedule, pg_catalog.current_database()::text AS database,
              extract(epoch FROM max(b.finished_at) FILTER (WHERE b.status IN ('completed', 'deleted'))) AS last_success,
              extract(epoch FROM now() - max(b.finished_at) FILTER (WHERE b.status IN ('completed', 'deleted'))) AS last_success_age,
              (pg_catalog.array_agg(extract(epoch FROM b.finished_at - b.started_at) ORDER BY b.finished_at DESC)
                 FILTER (WHERE b.status IN ('completed', 'deleted')))[1] AS duration,
              (pg_catalog.array_agg(b.bytes ORDER BY b.finished_at DESC) FILTER (WHERE b.status IN ('completed', 'deleted')))[1] AS bytes,
              (pg_catalog.array_agg(b.row_count ORDER BY b.finished_at DESC) FILTER (WHERE b.status IN ('completed', 'deleted')))[1] AS rows,
              count(*) FILTER (WHERE b.status = 'failed') AS failures,
              extract(epoch FROM max(b.verified_at)) AS verify_time,
              (pg_catalog.array_agg((b.verify_status = 'ok')::int ORDER BY b.verified_at DESC)
                 FILTER (WHERE b.verified_at IS NOT NULL))[1] AS verify_ok
       FROM backup.backups b
       WHERE b.schedule IS NULL OR NOT EXISTS (SELECT 1 FROM backup.schedules s WHERE s.name = b.schedule)
       GROUP BY 1) u),
  'drills', (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(x) ORDER BY x.schedule, x.database), '[]') FROM (
       SELECT coalesce(d.schedule, b.schedule, '(manual)') AS schedule,
              coalesce(d.database, pg_catalog.current_database()::text) AS database,
              (pg_catalog.array_agg((d.status = 'succeeded')::int ORDER BY d.finished_at DESC)
                 FILTER (WHERE d.status <> 'running'))[1] AS ok,
              extract(epoch FROM max(d.finished_at) FILTER (WHERE d.status <> 'running')) AS time,
              (pg_catalog.array_agg(extract(epoch FROM d.restore_duration) ORDER BY d.finished_at DESC)
                 FILTER (WHERE d.status <> 'running'))[1] AS restore_duration,
              (pg_catalog.array_agg(extract(epoch FROM d.backup_age) ORDER BY d.finished_at DESC)
                 FILTER (WHERE d.status <> 'running'))[1] AS backup_age,
              count(*) FILTER (WHERE d.status = 'failed') AS failures,
              count(*) FILTER (WHERE d.status <> 'running') AS total
       FROM backup.drills d LEFT JOIN backup.backups b ON b.id = d.backup_id
       GROUP BY 1, 2) x),
  'totals', pg_catalog.jsonb_build_object(
       'database', pg_catalog.current_database()::text,
       'completed', (SELECT count(*) FROM backup.backups WHERE status = 'completed'),
       'failed', (SELECT count(*) FROM backup.backups WHERE status = 'failed'),
       'running', (SELECT count(*) FROM backup.backups WHERE status = 'running'),
       'deleted', (SELECT count(*) FROM backup.backups WHERE status = 'deleted'),
       'stored_bytes', (SELECT coalesce(sum(bytes), 0) FROM backup.backups WHERE status = 'completed'),
       'schedules', (SELECT count(*) FROM backup.schedules),
       'overdue', (SELECT count(*) FROM backup.health WHERE overdue),
       'drills_running', (SELECT count(*) FROM backup.drills WHERE status = 'running'))
)::text
"#;

/// A number of the snapshot; JSON null (no value yet) is None.
fn num(v: &Value, key: &str) -> Option<f64> {
    v[key].as_f64()
}

fn labels(v: &Value) -> Vec<(&'static str, String)> {
    vec![
        (
            "schedule",
            v["schedule"].as_str().unwrap_or_default().to_string(),
        ),
        (
            "database",
            v["database"].as_str().unwrap_or_default().to_string(),
        ),
    ]
}

/// The families of one snapshot of the catalog (the JSON of `QUERY`). Pure, unit-tested.
pub fn families(snapshot: &Value) -> Vec<Family> {
    let empty = Vec::new();
    let list = |k: &str| snapshot[k].as_array().unwrap_or(&empty).clone();
    let schedules = list("schedules");
    let unscheduled = list("unscheduled");
    let drills = list("drills");
    let totals = &snapshot["totals"];

    use Kind::{Counter, Gauge};
    let mut last_success = Family::new(
        "pg_backup_last_success_timestamp_seconds",
        Gauge,
        "When the last successful backup finished (Unix time).",
    );
    let mut age = Family::new(
        "pg_backup_last_success_age_seconds",
        Gauge,
        "Seconds since the last successful backup finished.",
    );
    let mut duration = Family::new(
        "pg_backup_last_duration_seconds",
        Gauge,
        "How long the last successful backup took.",
    );
    let mut size = Family::new(
        "pg_backup_last_size_bytes",
        Gauge,
        "Size of the last successful backup's archive.",
    );
    let mut rows = Family::new(
        "pg_backup_last_rows",
        Gauge,
        "Rows in the last successful backup.",
    );
    let mut failures = Family::new(
        "pg_backup_failures_total",
        Counter,
        "Failed backup runs (per schedule: since it was created; otherwise: failed backups in the history).",
    );
    let mut verify_time = Family::new(
        "pg_backup_last_verify_timestamp_seconds",
        Gauge,
        "When verify() last checked one of these backups (Unix time).",
    );
    let mut verify_ok = Family::new(
        "pg_backup_last_verify_ok",
        Gauge,
        "1 if the last verify() of these backups passed, 0 if it failed.",
    );
    let mut enabled = Family::new(
        "pg_backup_schedule_enabled",
        Gauge,
        "1 if the schedule is enabled, 0 if paused.",
    );
    let mut overdue = Family::new(
        "pg_backup_schedule_overdue",
        Gauge,
        "1 if the schedule is overdue: no success since its due time plus backup.overdue_grace.",
    );
    let mut interval = Family::new(
        "pg_backup_schedule_interval_seconds",
        Gauge,
        "The interval the schedule's cron implies (between two consecutive fire times).",
    );
    for s in schedules.iter().chain(unscheduled.iter()) {
        let l = labels(s);
        last_success.push(l.clone(), num(s, "last_success"));
        age.push(l.clone(), num(s, "last_success_age"));
        duration.push(l.clone(), num(s, "duration"));
        size.push(l.clone(), num(s, "bytes"));
        rows.push(l.clone(), num(s, "rows"));
        failures.push(l.clone(), num(s, "failures"));
        verify_time.push(l.clone(), num(s, "verify_time"));
        verify_ok.push(l, num(s, "verify_ok"));
    }
    for s in &schedules {
        let l = labels(s);
        enabled.push(l.clone(), num(s, "enabled"));
        overdue.push(l.clone(), num(s, "overdue"));
        interval.push(l, num(s, "interval"));
    }
    let mut drill_ok = Family::new(
        "pg_backup_drill_last_success",
        Gauge,
        "1 if the last finished restore drill succeeded, 0 if it failed.",
    );
    let mut drill_time = Family::new(
        "pg_backup_drill_last_timestamp_seconds",
        Gauge,
        "When the last restore drill finished (Unix time).",
    );
    let mut drill_restore = Family::new(
        "pg_backup_drill_last_restore_duration_seconds",
        Gauge,
        "How long the last drill's restore took: the recovery time a user would see.",
    );
    let mut drill_age = Family::new(
        "pg_backup_drill_last_backup_age_seconds",
        Gauge,
        "Age of the backup the last drill restored: the data-loss window.",
    );
    let mut drill_failures = Family::new(
        "pg_backup_drill_failures_total",
        Counter,
        "Failed restore drills in the history.",
    );
    let mut drill_total = Family::new(
        "pg_backup_drills_total",
        Counter,
        "Finished restore drills in the history.",
    );
    for d in &drills {
        let l = labels(d);
        drill_ok.push(l.clone(), num(d, "ok"));
        drill_time.push(l.clone(), num(d, "time"));
        drill_restore.push(l.clone(), num(d, "restore_duration"));
        drill_age.push(l.clone(), num(d, "backup_age"));
        drill_failures.push(l.clone(), num(d, "failures"));
        drill_total.push(l, num(d, "total"));
    }
    let db = || {
        vec![(
            "database",
            totals["database"].as_str().unwrap_or_default().to_string(),
        )]
    };
    let mut backups = Family::new(
        "pg_backup_backups",
        Gauge,
        "Backups in this database's history, by status.",
    );
    for status in ["completed", "failed", "running", "deleted"] {
        let mut l = db();
        l.push(("status", status.to_string()));
        backups.push(l, num(totals, status));
    }
    let mut stored = Family::new(
        "pg_backup_stored_bytes",
        Gauge,
        "Bytes of the completed backups of this database's history.",
    );
    stored.push(db(), num(totals, "stored_bytes"));
    let mut schedules_n = Family::new(
        "pg_backup_schedules",
        Gauge,
        "Schedules defined in this database.",
    );
    schedules_n.push(db(), num(totals, "schedules"));
    let mut overdue_n = Family::new(
        "pg_backup_schedules_overdue",
        Gauge,
        "Schedules that are overdue.",
    );
    overdue_n.push(db(), num(totals, "overdue"));
    let mut drills_running = Family::new(
        "pg_backup_drills_running",
        Gauge,
        "Restore drills running now.",
    );
    drills_running.push(db(), num(totals, "drills_running"));
    vec![
        last_success,
        age,
        duration,
        size,
        rows,
        failures,
        verify_time,
        verify_ok,
        enabled,
        overdue,
        interval,
        drill_ok,
        drill_time,
        drill_restore,
        drill_age,
        drill_failures,
        drill_total,
        backups,
        stored,
        schedules_n,
        overdue_n,
        drills_running,
    ]
}

/// The exposition text of this database's catalog now.
pub fn render() -> Result<String> {
    let json = crate::query::one::<Text>(QUERY, &[])?.unwrap_or_default().0;
    let snapshot: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
    Ok(render_text(&families(&snapshot)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn series_carry_the_catalogs_values_and_absent_values_stay_absent() {
        let snap = json!({
            "schedules": [{"schedule": "nightly", "database": "app\"1", "enabled": 1, "overdue": 0,
                           "last_success": 1765000000.5, "bytes": 1234, "rows": 10, "failures": 2,
                           "interval": 86400}],
            "unscheduled": [{"schedule": "(manual)", "database": "app\"1", "failures": 1}],
            "drills": [],
            "totals": {"database": "app\"1", "completed": 3, "failed": 1, "running": 0, "deleted": 0,
                       "stored_bytes": 5000, "schedules": 1, "overdue": 0, "drills_running": 0}
        });
        let text = render_text(&families(&snap));
        assert!(text.contains(
            "pg_backup_last_size_bytes{schedule=\"nightly\",database=\"app\\\"1\"} 1234\n"
        ));
        assert!(text.contains(
            "pg_backup_last_success_timestamp_seconds{schedule=\"nightly\",database=\"app\\\"1\"} 1765000000.5\n"
        ));
        assert!(text
            .contains("pg_backup_failures_total{schedule=\"(manual)\",database=\"app\\\"1\"} 1\n"));
        assert!(!text.contains("pg_backup_last_size_bytes{schedule=\"(manual)\""));
        assert!(text.contains("# TYPE pg_backup_drill_last_success gauge\n"));
        assert!(text.contains("pg_backup_stored_bytes{database=\"app\\\"1\"} 5000\n"));
    }
}
