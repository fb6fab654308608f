-- pg_backup 0.1.0 -> 0.2.0. Hand-written, reviewed like code; never edited once 0.2.0 ships.
-- Every change to the catalog, views, grants and SQL functions since v0.1.0 goes here AND into
-- sql/catalog.sql / the Rust definitions (the fresh-install path). `make test` compares the
-- objects of both paths (pg_dump --schema-only), so the two cannot drift apart.
\echo Use "ALTER EXTENSION pg_backup UPDATE TO '0.2.0'" to load this file. \quit

-- ---------------------------------------------------------------------------------------------
-- issue 10 (reliability)
-- Progress comes from shared memory (backup.runs_in_progress()), not from a column updated
-- every two seconds; restores record the process that runs them, so a dead one is settled.
DROP VIEW backup.progress;
ALTER TABLE backup.backups DROP COLUMN progress;
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
	"bytes_done" bigint
)
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'runs_in_progress_wrapper';
REVOKE ALL ON FUNCTION backup.runs_in_progress() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION backup.runs_in_progress() TO backup_operator;
ALTER FUNCTION backup.runs_in_progress() SECURITY DEFINER;

CREATE VIEW backup.progress AS
SELECT b.id AS backup_id, b.label, b.schedule, b.started_at,
       now() - b.started_at AS elapsed,
       r.tables_done, r.tables_total, r.current_table,
       b.pid, b.created_by, r.rows_done, r.bytes_done
FROM backup.backups b
LEFT JOIN backup.runs_in_progress() r ON r.kind = 'backup' AND r.id = b.id
WHERE b.status = 'running';
GRANT SELECT ON backup.progress TO backup_operator;

-- A NULL argument is an error with a HINT (22004), never a silent NULL result.
ALTER FUNCTION backup.delete(text) CALLED ON NULL INPUT;
ALTER FUNCTION backup.unschedule(text) CALLED ON NULL INPUT;
ALTER FUNCTION backup.run_schedule(text) CALLED ON NULL INPUT;
