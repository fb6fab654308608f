-- Restore drills (issue 21): one row per drill, running, succeeded or failed.
CREATE TABLE backup.drills (
    id                bigserial PRIMARY KEY,
    backup_id         text NOT NULL,
    schedule          text,
    database          text,
    status            text NOT NULL DEFAULT 'running'
                      CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    restore_duration  interval,
    backup_age        interval,
    tables_checked    integer,
    rows_checked      bigint,
    mismatches        jsonb,
    checks            jsonb,
    error             text,
    requested_by      text NOT NULL DEFAULT current_user,
    pid               integer
);
COMMENT ON TABLE backup.drills IS 'Restore drills: a backup restored into a scratch database and checked.';
COMMENT ON COLUMN backup.drills.restore_duration IS 'How long the restore took: the recovery time a user would see.';
COMMENT ON COLUMN backup.drills.backup_age IS 'Age of the backup when the drill ran: the data-loss window.';
COMMENT ON COLUMN backup.drills.pid IS 'The process answering for a running drill (its worker): a running drill whose process is gone is failed by the sweep.';
CREATE INDEX drills_backup_idx ON backup.drills (backup_id, started_at);
SELECT pg_catalog.pg_extension_config_dump('backup.drills', '');
REVOKE ALL ON backup.drills FROM PUBLIC;
GRANT SELECT ON backup.drills TO backup_operator;

-- The role whose rights a schedule's drills (drill => true) restore and check with: the role
-- that last called backup.schedule() for it (set by schedule(); NULL: the bootstrap superuser).
ALTER TABLE backup.schedules ADD COLUMN drill_role text;
COMMENT ON COLUMN backup.schedules.drill_role IS 'The role whose rights this schedule''s restore drills run with: the role that called backup.schedule().';
