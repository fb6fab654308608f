-- Health of the schedules and their overdue alert (issue 21, "metrics"): what each run
-- recorded on its schedule's row (a schedule may back up another database, whose history is
-- not here), the episode of an overdue alert, and the view backup.health.
ALTER TABLE backup.schedules
    ADD COLUMN created_at              timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN last_success_at         timestamptz,
    ADD COLUMN last_success_backup_id  text,
    ADD COLUMN last_success_duration   interval,
    ADD COLUMN last_success_bytes      bigint,
    ADD COLUMN last_success_rows       bigint,
    ADD COLUMN failed_runs             bigint NOT NULL DEFAULT 0,
    ADD COLUMN overdue_alerted_at      timestamptz;
COMMENT ON COLUMN backup.schedules.failed_runs IS 'Failed runs since the schedule was created.';
COMMENT ON COLUMN backup.schedules.overdue_alerted_at IS 'When schedule_overdue was raised for the current overdue episode; cleared when it ends.';

-- Per schedule: its last success, when the next is due (the first fire time of its cron after
-- the last success started, or after the schedule was created) and the interval its cron
-- implies, overdue (enabled, and no success by the due time plus backup.overdue_grace), the
-- last verify() of its backups and its last finished restore drill.
CREATE VIEW backup.health AS
SELECT s.name, s.database, s.cron, s.timezone, s.enabled,
       s.last_success_at, s.last_success_backup_id,
       now() - s.last_success_at AS last_success_age,
       t.cron_interval, t.due_at, t.overdue_at,
       coalesce(s.enabled AND now() > t.overdue_at, false) AS overdue,
       s.overdue_alerted_at,
       s.last_run_at, s.last_status, s.failed_runs,
       s.last_success_duration, s.last_success_bytes, s.last_success_rows,
       v.verified_at AS last_verify_at, v.verify_status AS last_verify_status,
       v.id AS last_verify_backup_id,
       d.id AS last_drill_id, d.status AS last_drill_status, d.finished_at AS last_drill_at,
       d.restore_duration AS last_drill_restore_duration, d.backup_age AS last_drill_backup_age
FROM backup.schedules s
LEFT JOIN backup.schedule_times() t ON t.name = s.name
LEFT JOIN LATERAL (
    SELECT b.id, b.verified_at, b.verify_status FROM backup.backups b
    WHERE b.schedule = s.name AND b.verified_at IS NOT NULL
    ORDER BY b.verified_at DESC LIMIT 1) v ON true
LEFT JOIN LATERAL (
    SELECT dr.id, dr.status, dr.finished_at, dr.restore_duration, dr.backup_age
    FROM backup.drills dr
    WHERE dr.status <> 'running'
      AND (dr.schedule = s.name
           OR dr.backup_id IN (SELECT b.id FROM backup.backups b WHERE b.schedule = s.name))
    ORDER BY dr.finished_at DESC NULLS LAST LIMIT 1) d ON true;
COMMENT ON VIEW backup.health IS 'Per schedule: last success, its age, the interval its cron implies, overdue, last verify and last drill.';
REVOKE ALL ON backup.health FROM PUBLIC;
GRANT SELECT ON backup.health TO backup_operator;
