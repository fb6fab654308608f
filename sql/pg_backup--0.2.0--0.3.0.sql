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


-- ---------------------------------------------------------------------------------------------
-- Issue 17: archives as claims, retention, files as files.
-- ---------------------------------------------------------------------------------------------


-- ---------------------------------------------------------------------------------------------
-- Issue 17: sessions, workers, history, encodings.
-- ---------------------------------------------------------------------------------------------


-- ---------------------------------------------------------------------------------------------
-- End of the per-change sections.
-- ---------------------------------------------------------------------------------------------
