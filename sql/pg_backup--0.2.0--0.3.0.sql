-- pg_backup 0.2.0 -> 0.3.0. Hand-written, reviewed like code; never edited once 0.3.0 ships.
-- Every change to the catalog, views, grants and SQL functions since 0.2.0 goes here AND into
-- sql/catalog.sql / the Rust definitions (the fresh-install path). `make test` compares the
-- objects of both paths (pg_dump --schema-only), so the two cannot drift apart.
-- One section per change; append inside your section only.
\echo Use "ALTER EXTENSION pg_backup UPDATE TO '0.3.0'" to load this file. \quit

-- ---------------------------------------------------------------------------------------------
-- Issue 16: restore's analyze option gets a name that works unquoted.
-- ---------------------------------------------------------------------------------------------


-- ---------------------------------------------------------------------------------------------
-- Issue 17: signed archives (signing key, trusted keys).
-- ---------------------------------------------------------------------------------------------


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
-- End of the per-change sections.
-- ---------------------------------------------------------------------------------------------
