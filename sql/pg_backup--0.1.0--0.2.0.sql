-- pg_backup 0.1.0 -> 0.2.0. Hand-written, reviewed like code; never edited once 0.2.0 ships.
-- Every change to the catalog, views, grants and SQL functions since v0.1.0 goes here AND into
-- sql/catalog.sql / the Rust definitions (the fresh-install path). `make test` compares the
-- objects of both paths (pg_dump --schema-only), so the two cannot drift apart.
\echo Use "ALTER EXTENSION pg_backup UPDATE TO '0.2.0'" to load this file. \quit

-- ---------------------------------------------------------------------------------------------
-- Functions whose C symbol changed (issue 13: a new library never unboxes an old argument list;
-- 0.1.0's symbols remain in the library and only ask for this update, see
-- src/sql_api/compat.rs). Their argument lists grew, so the 0.1.0 definitions are dropped and
-- the 0.2.0 ones created; grants and SECURITY DEFINER are applied at the end, as on install.
-- ---------------------------------------------------------------------------------------------
DROP FUNCTION backup."create"(text, text[], text[], text[], text[], boolean, boolean, text, text, boolean);
DROP FUNCTION backup.verify(text, boolean);
DROP FUNCTION backup.rescan();
DROP FUNCTION backup.restore(text, text[], text[], text, boolean, boolean, text, boolean, text, boolean, boolean);
DROP FUNCTION backup.schedule(text, text, text, text[], text[], text[], text[], boolean, boolean, text, text, integer, integer, boolean, text);

CREATE FUNCTION backup."create"(
	"label" TEXT DEFAULT NULL,
	"schemas" TEXT[] DEFAULT NULL,
	"tables" TEXT[] DEFAULT NULL,
	"exclude_tables" TEXT[] DEFAULT NULL,
	"exclude_data" TEXT[] DEFAULT NULL,
	"schema_only" bool DEFAULT false,
	"data_only" bool DEFAULT false,
	"format" TEXT DEFAULT 'native',
	"compression" TEXT DEFAULT NULL,
	"verbose" bool DEFAULT false,
	"storage" TEXT DEFAULT NULL,
	"keep_local" bool DEFAULT true,
	"encrypt_to" TEXT[] DEFAULT NULL,
	"jobs" INT DEFAULT 1
) RETURNS TABLE (
	"backup_id" TEXT,
	"status" TEXT,
	"tables" bigint,
	"rows" bigint,
	"bytes" bigint,
	"duration" interval,
	"path" TEXT
)
LANGUAGE c
AS 'MODULE_PATHNAME', 'create_backup_0_2_wrapper';

CREATE FUNCTION backup."rescan"(
	"storage" TEXT DEFAULT NULL
) RETURNS SETOF TEXT
LANGUAGE c
AS 'MODULE_PATHNAME', 'rescan_0_2_wrapper';

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
	"analyze" bool DEFAULT true,
	"atomic" bool DEFAULT true,
	"no_tablespaces" bool DEFAULT false
) RETURNS TABLE (
	"object" TEXT,
	"kind" TEXT,
	"action" TEXT,
	"rows" bigint,
	"status" TEXT,
	"detail" TEXT
)
LANGUAGE c
AS 'MODULE_PATHNAME', 'restore_0_2_wrapper';

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
	"jobs" INT DEFAULT 1
) RETURNS TABLE (
	"name" TEXT,
	"cron" TEXT,
	"database" TEXT,
	"options" jsonb,
	"keep_last" INT,
	"keep_days" INT,
	"enabled" bool,
	"next_run_at" timestamp with time zone
)
LANGUAGE c
AS 'MODULE_PATHNAME', 'schedule_0_2_wrapper';

CREATE FUNCTION backup."verify"(
	"backup_id" TEXT DEFAULT NULL,
	"deep" bool DEFAULT true,
	"storage" TEXT DEFAULT NULL,
	"identity" TEXT DEFAULT NULL
) RETURNS TABLE (
	"backup_id" TEXT,
	"file" TEXT,
	"status" TEXT,
	"expected_sha256" TEXT,
	"actual_sha256" TEXT,
	"bytes" bigint,
	"detail" TEXT
)
LANGUAGE c
AS 'MODULE_PATHNAME', 'verify_0_2_wrapper';

-- ---------------------------------------------------------------------------------------------
-- issue 10 (reliability)
-- Progress comes from shared memory (backup.runs_in_progress()), not from a column updated
-- every two seconds (backup.backups.progress stays, no longer written); restores record the
-- process that runs them, so a dead one is settled.
-- ---------------------------------------------------------------------------------------------
DROP VIEW backup.progress;
ALTER TABLE backup.restores ADD COLUMN pid integer;

CREATE FUNCTION backup."runs_in_progress"() RETURNS TABLE (
	"kind" TEXT,
	"id" TEXT,
	"pid" INT,
	"started_at" timestamp with time zone,
	"tables_done" INT,
	"tables_total" INT,
	"current_table" TEXT,
	"rows_done" bigint,
	"bytes_done" bigint,
	"jobs" INT
)
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'runs_in_progress_wrapper';

CREATE VIEW backup.progress AS
SELECT b.id AS backup_id, b.label, b.schedule, b.started_at,
       now() - b.started_at AS elapsed,
       r.tables_done, r.tables_total, r.current_table,
       b.pid, b.created_by, r.rows_done, r.bytes_done, r.jobs
FROM backup.backups b
LEFT JOIN backup.runs_in_progress() r ON r.kind = 'backup' AND r.id = b.id
WHERE b.status = 'running';
GRANT SELECT ON backup.progress TO backup_operator;

-- A NULL argument is an error with a HINT (22004), never a silent NULL result: the functions
-- that were STRICT are called on NULL input (same C symbols, same argument lists).
ALTER FUNCTION backup.delete(text) CALLED ON NULL INPUT;
ALTER FUNCTION backup.unschedule(text) CALLED ON NULL INPUT;
ALTER FUNCTION backup.run_schedule(text) CALLED ON NULL INPUT;

-- ---------------------------------------------------------------------------------------------
-- issue 12: off-site copies and encryption (storage targets, secrets, history columns; the
-- storage, keep_local, encrypt_to and identity arguments are in the functions above).
-- Same statements as sql/storage.sql.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE backup.backups ADD COLUMN storage text, ADD COLUMN storage_url text;
COMMENT ON COLUMN backup.backups.storage IS 'Storage target holding the remote copy (NULL: local only).';
COMMENT ON COLUMN backup.backups.storage_url IS 'Where the remote copy is (no secrets).';

CREATE TABLE backup.storage_targets (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    url         text NOT NULL CHECK (url ~ '^(s3|file)://'),
    options     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE backup.storage_targets IS 'Storage targets for off-site copies (no secrets here).';

CREATE TABLE backup.storage_secrets (
    name     text PRIMARY KEY REFERENCES backup.storage_targets (name) ON DELETE CASCADE,
    secrets  jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE backup.storage_secrets IS 'Credentials of storage targets; readable by the extension owner only.';

-- The targets (not their secrets) survive a plain pg_dump, like the other catalog tables.
SELECT pg_catalog.pg_extension_config_dump('backup.storage_targets', '');

CREATE VIEW backup.storages AS
SELECT t.name, t.url, t.options,
       (s.secrets IS NOT NULL AND s.secrets <> '{}'::jsonb) AS has_credentials,
       t.created_at
FROM backup.storage_targets t
LEFT JOIN backup.storage_secrets s USING (name);

REVOKE ALL ON backup.storage_targets, backup.storage_secrets, backup.storages FROM PUBLIC;
REVOKE ALL ON backup.storage_secrets FROM backup_operator;
GRANT SELECT ON backup.storage_targets, backup.storages TO backup_operator;

CREATE FUNCTION backup."add_storage"(
	"name" TEXT,
	"url" TEXT,
	"options" jsonb DEFAULT NULL,
	"replace" bool DEFAULT false,
	"validate" bool DEFAULT true
) RETURNS bool
LANGUAGE c
AS 'MODULE_PATHNAME', 'add_storage_wrapper';

CREATE FUNCTION backup."drop_storage"(
	"name" TEXT,
	"if_exists" bool DEFAULT false
) RETURNS bool
LANGUAGE c
AS 'MODULE_PATHNAME', 'drop_storage_wrapper';

-- ---------------------------------------------------------------------------------------------
-- issue 11: restore(atomic => false) records the steps it has committed (its jobs argument on
-- create() and schedule(), and atomic on restore(), are in the functions above).
-- ---------------------------------------------------------------------------------------------
ALTER TABLE backup.restores ADD COLUMN progress jsonb;

-- ---------------------------------------------------------------------------------------------
-- Last, as sql/finalize.sql does for a fresh install: every function of the extension is
-- SECURITY DEFINER, not executable by PUBLIC, executable by backup_operator.
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
    WHERE p.pronamespace = 'backup'::regnamespace
  LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO backup_operator', f);
    -- The functions users call are SECURITY INVOKER and switch to the extension owner
    -- themselves after taking current_user as the caller (src/security.rs, INVOKER_FUNCTIONS;
    -- issue 9): a SECURITY DEFINER function of another role that calls them gets that role's
    -- rights, never those of the session's role. The rest (trigger, progress) are DEFINER.
    EXECUTE format('ALTER FUNCTION %s SECURITY %s', f,
                   CASE WHEN (SELECT proname FROM pg_catalog.pg_proc WHERE oid = f) = ANY (ARRAY[
                          'create', 'verify', 'delete', 'prune', 'rescan', 'add_storage',
                          'drop_storage', 'restore', 'schedule', 'unschedule', 'run_schedule'])
                        THEN 'INVOKER' ELSE 'DEFINER' END);
  END LOOP;
END
$$;
