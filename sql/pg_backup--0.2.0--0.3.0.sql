-- pg_backup 0.2.0 -> 0.3.0. Hand-written, reviewed like code; never edited once 0.3.0 ships.
-- Every change to the catalog, views, grants and SQL functions since 0.2.0 goes here AND into
-- sql/catalog.sql / the Rust definitions (the fresh-install path). `make test` compares the
-- objects of both paths (pg_dump --schema-only), so the two cannot drift apart.
-- One section per change; append inside your section only.
\echo Use "ALTER EXTENSION pg_backup UPDATE TO '0.3.0'" to load this file. \quit

-- ---------------------------------------------------------------------------------------------
-- Issue 16: restore's analyze option gets a name that works unquoted.
-- ---------------------------------------------------------------------------------------------
-- run_analyze (last, so positional calls keep their meaning); "analyze" stays for 0.2.0 callers
-- with default NULL (given non-NULL, it decides). A new C symbol (src/sql_api/compat.rs keeps
-- restore_0_2_wrapper, which only asks for this update).
DROP FUNCTION backup.restore(text, text[], text[], text, boolean, boolean, text, boolean, text, boolean, boolean, text, boolean, boolean, boolean, integer);

CREATE FUNCTION backup."restore"(
	"backup_id" TEXT,
	"tables" TEXT[] DEFAULT NULL,
	"schemas" TEXT[] DEFAULT NULL,
	"existing" TEXT DEFAULT 'fail',
	"schema_only" bool DEFAULT false,
	"data_only" bool DEFAULT false,
	"target_schema" TEXT DEFAULT NULL,
	"disable_triggers" bool DEFAULT false,
	"on_error" TEXT DEFAULT 'abort',
	"dry_run" bool DEFAULT false,
	"confirm" bool DEFAULT false,
	"identity" TEXT DEFAULT NULL,
	"analyze" bool DEFAULT NULL,
	"atomic" bool DEFAULT true,
	"no_tablespaces" bool DEFAULT false,
	"jobs" INT DEFAULT 1,
	"run_analyze" bool DEFAULT true
) RETURNS TABLE (
	"object" TEXT,
	"kind" TEXT,
	"action" TEXT,
	"rows" bigint,
	"status" TEXT,
	"detail" TEXT
)
LANGUAGE c
AS 'MODULE_PATHNAME', 'restore_0_3_wrapper';

-- As sql/finalize.sql does for every function of the extension.
REVOKE ALL ON FUNCTION backup.restore(text, text[], text[], text, boolean, boolean, text, boolean, text, boolean, boolean, text, boolean, boolean, boolean, integer, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION backup.restore(text, text[], text[], text, boolean, boolean, text, boolean, text, boolean, boolean, text, boolean, boolean, boolean, integer, boolean) TO backup_operator;
ALTER FUNCTION backup.restore(text, text[], text[], text, boolean, boolean, text, boolean, text, boolean, boolean, text, boolean, boolean, boolean, integer, boolean) SECURITY INVOKER;


-- ---------------------------------------------------------------------------------------------
-- Issue 17: signed archives (signing key, trusted keys).
-- ---------------------------------------------------------------------------------------------
-- As sql/signing.sql on a fresh install.
CREATE TABLE backup.trusted_keys (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    public_key  text NOT NULL UNIQUE CHECK (public_key ~ '^ed25519:[A-Za-z0-9+/]{43}=$'),
    key_id      text NOT NULL UNIQUE CHECK (key_id ~ '^[0-9a-f]{16}$'),
    added_by    text NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE backup.trusted_keys IS 'Public keys of other servers whose signed archives verify and restore here.';
SELECT pg_catalog.pg_extension_config_dump('backup.trusted_keys', '');
REVOKE ALL ON backup.trusted_keys FROM PUBLIC;
GRANT SELECT ON backup.trusted_keys TO backup_operator;

CREATE FUNCTION backup."signing_key"() RETURNS TABLE (
	"public_key" TEXT,
	"key_id" TEXT
)
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'signing_key_wrapper';

CREATE FUNCTION backup."trust_key"(
	"name" TEXT,
	"public_key" TEXT
) RETURNS TEXT
LANGUAGE c
AS 'MODULE_PATHNAME', 'trust_key_wrapper';

CREATE FUNCTION backup."untrust_key"(
	"name" TEXT
) RETURNS bool
LANGUAGE c
AS 'MODULE_PATHNAME', 'untrust_key_wrapper';

-- As sql/finalize.sql does: not executable by PUBLIC, executable by backup_operator;
-- signing_key() runs as the extension owner (it shows the public key only), trust_key() and
-- untrust_key() as the caller, who must be a superuser (checked on the calling role).
REVOKE ALL ON FUNCTION backup.signing_key(), backup.trust_key(text, text),
                       backup.untrust_key(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION backup.signing_key(), backup.trust_key(text, text),
                          backup.untrust_key(text) TO backup_operator;
ALTER FUNCTION backup.signing_key() SECURITY DEFINER;
ALTER FUNCTION backup.trust_key(text, text) SECURITY INVOKER;
ALTER FUNCTION backup.untrust_key(text) SECURITY INVOKER;



-- ---------------------------------------------------------------------------------------------
-- Issue 17: archives as claims, retention, files as files.
-- ---------------------------------------------------------------------------------------------
-- No catalog, view, grant or function change: rescan's checks, delete's proof of ownership,
-- retention's last good backup, the read lock (55006) and opening files without links are in
-- the library.


-- ---------------------------------------------------------------------------------------------
-- Issue 17: sessions, workers, history, encodings.
-- ---------------------------------------------------------------------------------------------


-- ---------------------------------------------------------------------------------------------
-- Issue 21: restore drills (lead): the table backup.drills (as sql/drills.sql).
-- ---------------------------------------------------------------------------------------------
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
    requested_by      text NOT NULL DEFAULT current_user
);
COMMENT ON TABLE backup.drills IS 'Restore drills: a backup restored into a scratch database and checked.';
COMMENT ON COLUMN backup.drills.restore_duration IS 'How long the restore took: the recovery time a user would see.';
COMMENT ON COLUMN backup.drills.backup_age IS 'Age of the backup when the drill ran: the data-loss window.';
CREATE INDEX drills_backup_idx ON backup.drills (backup_id, started_at);
SELECT pg_catalog.pg_extension_config_dump('backup.drills', '');
REVOKE ALL ON backup.drills FROM PUBLIC;
GRANT SELECT ON backup.drills TO backup_operator;


-- ---------------------------------------------------------------------------------------------
-- Issue 21: schedules (helper sched): time zone, timeout, retries, overlap, drill per schedule;
-- the try of a scheduled backup.
-- ---------------------------------------------------------------------------------------------
-- As sql/catalog.sql on a fresh install (columns appended in the same order).
ALTER TABLE backup.backups ADD COLUMN attempt integer CHECK (attempt > 0);

-- Schedules of 0.2.0 ran in UTC: they keep doing so.
ALTER TABLE backup.schedules
    ADD COLUMN timezone        text NOT NULL DEFAULT 'UTC',
    ADD COLUMN timeout         interval CHECK (timeout > interval '0'),
    ADD COLUMN retries         integer NOT NULL DEFAULT 0 CHECK (retries BETWEEN 0 AND 100),
    ADD COLUMN overlap         text NOT NULL DEFAULT 'queue' CHECK (overlap IN ('skip', 'queue')),
    ADD COLUMN drill           boolean NOT NULL DEFAULT false,
    ADD COLUMN drill_checks    text[],
    ADD COLUMN retry           integer NOT NULL DEFAULT 0 CHECK (retry >= 0),
    ADD COLUMN queued          boolean NOT NULL DEFAULT false,
    ADD COLUMN skipped_runs    bigint NOT NULL DEFAULT 0,
    ADD COLUMN last_skipped_at timestamptz;

-- schedule() takes timezone, timeout, retries, overlap, drill and drill_checks (last, so
-- positional calls keep their meaning) and returns them. A new C symbol (src/sql_api/compat.rs
-- keeps schedule_0_2_wrapper, which only asks for this update).
DROP FUNCTION backup.schedule(text, text, text, text[], text[], text[], text[], boolean, boolean, text, text, integer, integer, boolean, text, text, boolean, text[], integer);

CREATE FUNCTION backup."schedule"(
	"name" TEXT,
	"cron" TEXT,
	"label" TEXT DEFAULT NULL,
	"schemas" TEXT[] DEFAULT NULL,
	"tables" TEXT[] DEFAULT NULL,
	"exclude_tables" TEXT[] DEFAULT NULL,
	"exclude_data" TEXT[] DEFAULT NULL,
	"schema_only" bool DEFAULT false,
	"data_only" bool DEFAULT false,
	"format" TEXT DEFAULT 'native',
	"compression" TEXT DEFAULT NULL,
	"keep_last" INT DEFAULT NULL,
	"keep_days" INT DEFAULT NULL,
	"enabled" bool DEFAULT true,
	"database" TEXT DEFAULT NULL,
	"storage" TEXT DEFAULT NULL,
	"keep_local" bool DEFAULT true,
	"encrypt_to" TEXT[] DEFAULT NULL,
	"jobs" INT DEFAULT 1,
	"timezone" TEXT DEFAULT NULL,
	"timeout" interval DEFAULT NULL,
	"retries" INT DEFAULT 0,
	"overlap" TEXT DEFAULT 'queue',
	"drill" bool DEFAULT false,
	"drill_checks" TEXT[] DEFAULT NULL
) RETURNS TABLE (
	"name" TEXT,
	"cron" TEXT,
	"database" TEXT,
	"options" jsonb,
	"keep_last" INT,
	"keep_days" INT,
	"enabled" bool,
	"next_run_at" timestamp with time zone,
	"timezone" TEXT,
	"timeout" interval,
	"retries" INT,
	"overlap" TEXT,
	"drill" bool,
	"drill_checks" TEXT[]
)
LANGUAGE c
AS 'MODULE_PATHNAME', 'schedule_0_3_wrapper';

-- As sql/finalize.sql does for every function of the extension.
REVOKE ALL ON FUNCTION backup.schedule(text, text, text, text[], text[], text[], text[], boolean, boolean, text, text, integer, integer, boolean, text, text, boolean, text[], integer, text, interval, integer, text, boolean, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION backup.schedule(text, text, text, text[], text[], text[], text[], boolean, boolean, text, text, integer, integer, boolean, text, text, boolean, text[], integer, text, interval, integer, text, boolean, text[]) TO backup_operator;
ALTER FUNCTION backup.schedule(text, text, text, text[], text[], text[], text[], boolean, boolean, text, text, integer, integer, boolean, text, text, boolean, text[], integer, text, interval, integer, text, boolean, text[]) SECURITY INVOKER;


-- Issue 21: restore drills (drills): the process answering for a running drill, and the
-- function backup.drill().
-- ---------------------------------------------------------------------------------------------
ALTER TABLE backup.drills ADD COLUMN pid integer;
COMMENT ON COLUMN backup.drills.pid IS 'The process answering for a running drill (its worker): a running drill whose process is gone is failed by the sweep.';
ALTER TABLE backup.schedules ADD COLUMN drill_role text;
COMMENT ON COLUMN backup.schedules.drill_role IS 'The role whose rights this schedule''s restore drills run with: the role that called backup.schedule().';

CREATE FUNCTION backup."drill"(
	"backup_id" TEXT DEFAULT NULL,
	"checks" TEXT[] DEFAULT NULL,
	"wait" bool DEFAULT true
) RETURNS TABLE (
	"id" bigint,
	"backup_id" TEXT,
	"schedule" TEXT,
	"database" TEXT,
	"status" TEXT,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	"restore_duration" interval,
	"backup_age" interval,
	"tables_checked" INT,
	"rows_checked" bigint,
	"mismatches" jsonb,
	"checks" jsonb,
	"error" TEXT,
	"requested_by" TEXT
)
LANGUAGE c
AS 'MODULE_PATHNAME', 'drill_wrapper';

-- As sql/finalize.sql does: operators may drill; the function takes its caller as restore()
-- does (SECURITY INVOKER, then the extension owner inside).
REVOKE ALL ON FUNCTION backup.drill(text, text[], boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION backup.drill(text, text[], boolean) TO backup_operator;
ALTER FUNCTION backup.drill(text, text[], boolean) SECURITY INVOKER;

-- ---------------------------------------------------------------------------------------------
-- Issue 20 (helper "archives"): any archive into any database. backup.archives() lists the
-- archives of backup.directory or of a storage target; restore(storage => ...) reads one from a
-- target whatever database it was taken of; rescan(database => ...) registers another
-- database's. New C symbols (src/sql_api/compat.rs keeps restore_0_3_wrapper and
-- rescan_0_2_wrapper, which only ask for this update).
-- ---------------------------------------------------------------------------------------------
DROP FUNCTION backup.restore(text, text[], text[], text, boolean, boolean, text, boolean, text, boolean, boolean, text, boolean, boolean, boolean, integer, boolean);

CREATE FUNCTION backup."restore"(
	"backup_id" TEXT,
	"tables" TEXT[] DEFAULT NULL,
	"schemas" TEXT[] DEFAULT NULL,
	"existing" TEXT DEFAULT 'fail',
	"schema_only" bool DEFAULT false,
	"data_only" bool DEFAULT false,
	"target_schema" TEXT DEFAULT NULL,
	"disable_triggers" bool DEFAULT false,
	"on_error" TEXT DEFAULT 'abort',
	"dry_run" bool DEFAULT false,
	"confirm" bool DEFAULT false,
	"identity" TEXT DEFAULT NULL,
	"analyze" bool DEFAULT NULL,
	"atomic" bool DEFAULT true,
	"no_tablespaces" bool DEFAULT false,
	"jobs" INT DEFAULT 1,
	"run_analyze" bool DEFAULT true,
	"storage" TEXT DEFAULT NULL
) RETURNS TABLE (
	"object" TEXT,
	"kind" TEXT,
	"action" TEXT,
	"rows" bigint,
	"status" TEXT,
	"detail" TEXT
)
LANGUAGE c
AS 'MODULE_PATHNAME', 'restore_0_3b_wrapper';

DROP FUNCTION backup.rescan(text);

CREATE FUNCTION backup."rescan"(
	"storage" TEXT DEFAULT NULL,
	"database" TEXT DEFAULT NULL
) RETURNS SETOF TEXT
LANGUAGE c
AS 'MODULE_PATHNAME', 'rescan_0_3_wrapper';

CREATE FUNCTION backup."archives"(
	"storage" TEXT DEFAULT NULL,
	"database" TEXT DEFAULT NULL
) RETURNS TABLE (
	"id" TEXT,
	"source_database" TEXT,
	"server_version" TEXT,
	"created_at" timestamp with time zone,
	"format" TEXT,
	"compression" TEXT,
	"encrypted" bool,
	"signed" bool,
	"bytes" bigint,
	"registered" bool,
	"detail" TEXT
)
LANGUAGE c
AS 'MODULE_PATHNAME', 'archives_wrapper';

-- As sql/finalize.sql does for every function of the extension.
REVOKE ALL ON FUNCTION backup.restore(text, text[], text[], text, boolean, boolean, text, boolean, text, boolean, boolean, text, boolean, boolean, boolean, integer, boolean, text),
                       backup.rescan(text, text), backup.archives(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION backup.restore(text, text[], text[], text, boolean, boolean, text, boolean, text, boolean, boolean, text, boolean, boolean, boolean, integer, boolean, text),
                          backup.rescan(text, text), backup.archives(text, text) TO backup_operator;
ALTER FUNCTION backup.restore(text, text[], text[], text, boolean, boolean, text, boolean, text, boolean, boolean, text, boolean, boolean, boolean, integer, boolean, text) SECURITY INVOKER;
ALTER FUNCTION backup.rescan(text, text) SECURITY INVOKER;
ALTER FUNCTION backup.archives(text, text) SECURITY INVOKER;


-- ---------------------------------------------------------------------------------------------
-- Issue 21: health, overdue alert and metrics (helper "metrics").
-- ---------------------------------------------------------------------------------------------
-- As src/sql_api/health.rs and sql/health.sql on a fresh install.
CREATE FUNCTION backup."schedule_times"() RETURNS TABLE (
	"name" TEXT,
	"due_at" timestamp with time zone,
	"cron_interval" interval,
	"overdue_at" timestamp with time zone
)
STRICT
LANGUAGE c
SET search_path TO pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'schedule_times_wrapper';

CREATE FUNCTION backup."metrics"() RETURNS TEXT
STRICT
LANGUAGE c
SET search_path TO pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'metrics_wrapper';

-- As sql/finalize.sql does: executable by backup_operator, running as the extension owner.
REVOKE ALL ON FUNCTION backup.schedule_times(), backup.metrics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION backup.schedule_times(), backup.metrics() TO backup_operator;
ALTER FUNCTION backup.schedule_times() SECURITY DEFINER;
ALTER FUNCTION backup.metrics() SECURITY DEFINER;

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

-- What the runs recorded so far, for the schedules of this database's backups (a schedule of
-- another database starts without: its next run records it).
UPDATE backup.schedules s
SET last_success_at = b.finished_at, last_success_backup_id = b.id,
    last_success_duration = b.finished_at - b.started_at,
    last_success_bytes = b.bytes, last_success_rows = b.row_count
FROM (SELECT DISTINCT ON (schedule) schedule, id, started_at, finished_at, bytes, row_count
      FROM backup.backups WHERE status IN ('completed', 'deleted') AND schedule IS NOT NULL
      ORDER BY schedule, finished_at DESC) b
WHERE b.schedule = s.name;
UPDATE backup.schedules s SET failed_runs = f.n
FROM (SELECT schedule, count(*) AS n FROM backup.backups WHERE status = 'failed' GROUP BY schedule) f
WHERE f.schedule = s.name;


-- ---------------------------------------------------------------------------------------------
-- objstore (issue 20): storage through object_store; gs:// (Google Cloud Storage) and az://
-- (Azure Blob) targets besides s3:// and file://. Existing targets and their options are
-- unchanged (no option was renamed).
-- ---------------------------------------------------------------------------------------------
ALTER TABLE backup.storage_targets
    DROP CONSTRAINT IF EXISTS storage_targets_url_check,
    ADD CONSTRAINT storage_targets_url_check CHECK (url ~ '^(s3|gs|az|file)://');


-- ---------------------------------------------------------------------------------------------
-- Issue 21: alerts (helper "alerts"): events (NOTIFY backup_events and the outbox
-- backup.events), webhooks and their deliveries, the trigger that raises backup events.
-- ---------------------------------------------------------------------------------------------
-- As sql/alerts.sql on a fresh install:
-- Events, alerts and webhooks (issue 21). Every event (a backup that succeeded or failed, an
-- overdue schedule, a drill) is a NOTIFY on channel backup_events and a row of backup.events,
-- the outbox from which a background worker delivers webhooks after the event's transaction
-- commits. A webhook's public part is in backup.webhook_targets (shown by the view
-- backup.webhooks); its URL (which often holds a token: Slack's and Teams' do) and its signing
-- secret are in backup.webhook_secrets, which only the extension owner can read, exactly like
-- backup.storage_secrets: not granted to backup_operator, not registered with
-- pg_extension_config_dump, never in a pg_backup archive.
CREATE TABLE backup.events (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event    text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    payload  jsonb NOT NULL
);
COMMENT ON TABLE backup.events IS 'Events raised by pg_backup (also sent as NOTIFY backup_events); pruned after backup.events_keep_days.';
CREATE INDEX events_at_idx ON backup.events (at);

CREATE TABLE backup.webhook_targets (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    endpoint    text NOT NULL CHECK (endpoint ~ '^https?://'),
    events      text[],
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE backup.webhook_targets IS 'Webhooks: where events are posted (scheme, host and port only; the URL is secret).';
COMMENT ON COLUMN backup.webhook_targets.events IS 'The events posted (NULL: every event).';

CREATE TABLE backup.webhook_secrets (
    name    text PRIMARY KEY REFERENCES backup.webhook_targets (name) ON DELETE CASCADE,
    url     text NOT NULL,
    secret  text
);
COMMENT ON TABLE backup.webhook_secrets IS 'URLs and signing secrets of webhooks; readable by the extension owner only.';

CREATE TABLE backup.webhook_queue (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook          text NOT NULL REFERENCES backup.webhook_targets (name) ON DELETE CASCADE,
    event_id         bigint NOT NULL REFERENCES backup.events (id) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    http_status      integer,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    finished_at      timestamptz
);
COMMENT ON TABLE backup.webhook_queue IS 'One row per event and webhook: its delivery, pending, delivered or failed.';
CREATE INDEX webhook_queue_pending_idx ON backup.webhook_queue (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_queue_event_idx ON backup.webhook_queue (event_id);

-- The webhooks (not their URLs and secrets) survive a plain pg_dump, like the other catalog
-- tables; events and deliveries are history of this database only.
SELECT pg_catalog.pg_extension_config_dump('backup.webhook_targets', '');

CREATE VIEW backup.webhooks AS
SELECT t.name, t.endpoint, t.events, (s.secret IS NOT NULL) AS has_secret,
       t.created_by, t.created_at
FROM backup.webhook_targets t
LEFT JOIN backup.webhook_secrets s USING (name);

CREATE VIEW backup.webhook_deliveries AS
SELECT q.id, q.webhook, q.event_id, e.event, q.status, q.attempts, q.http_status, q.error,
       q.created_at, q.last_attempt_at, q.next_attempt_at, q.finished_at
FROM backup.webhook_queue q
JOIN backup.events e ON e.id = q.event_id;

REVOKE ALL ON backup.events, backup.webhook_targets, backup.webhook_secrets,
              backup.webhook_queue, backup.webhooks, backup.webhook_deliveries FROM PUBLIC;
REVOKE ALL ON backup.webhook_secrets FROM backup_operator;
GRANT SELECT ON backup.events, backup.webhook_targets, backup.webhook_queue, backup.webhooks,
                backup.webhook_deliveries TO backup_operator;

-- The trigger on backup.backups (src/alerts/backups.rs on a fresh install).
CREATE FUNCTION backup."backups_event"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'backups_event_wrapper';
CREATE TRIGGER backups_event AFTER INSERT OR UPDATE OF status ON backup.backups
  FOR EACH ROW EXECUTE FUNCTION backup.backups_event();

CREATE FUNCTION backup."add_webhook"(
	"name" TEXT,
	"url" TEXT,
	"events" TEXT[] DEFAULT NULL,
	"secret" TEXT DEFAULT NULL,
	"replace" bool DEFAULT false
) RETURNS bool
LANGUAGE c
AS 'MODULE_PATHNAME', 'add_webhook_wrapper';

CREATE FUNCTION backup."drop_webhook"(
	"name" TEXT,
	"if_exists" bool DEFAULT false
) RETURNS bool
LANGUAGE c
AS 'MODULE_PATHNAME', 'drop_webhook_wrapper';

-- As sql/finalize.sql does: not executable by PUBLIC, executable by backup_operator;
-- add_webhook() and drop_webhook() run as the caller, who must be a superuser (checked on the
-- calling role); the trigger function runs as the extension owner.
REVOKE ALL ON FUNCTION backup.backups_event(), backup.add_webhook(text, text, text[], text, boolean),
                       backup.drop_webhook(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION backup.backups_event(), backup.add_webhook(text, text, text[], text, boolean),
                          backup.drop_webhook(text, boolean) TO backup_operator;
ALTER FUNCTION backup.backups_event() SECURITY DEFINER;
ALTER FUNCTION backup.add_webhook(text, text, text[], text, boolean) SECURITY INVOKER;
ALTER FUNCTION backup.drop_webhook(text, boolean) SECURITY INVOKER;
-- As sql/finalize.sql: the SECURITY DEFINER trigger function pins its search_path.
ALTER FUNCTION backup.backups_event() SET search_path TO pg_catalog, pg_temp;


-- ---------------------------------------------------------------------------------------------
-- End of the per-change sections.
-- ---------------------------------------------------------------------------------------------
