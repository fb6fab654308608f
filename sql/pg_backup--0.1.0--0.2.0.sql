-- pg_backup 0.1.0 -> 0.2.0. Hand-written, reviewed like code; never edited once 0.2.0 ships.
-- Every change to the catalog, views, grants and SQL functions since v0.1.0 goes here AND into
-- sql/catalog.sql / the Rust definitions (the fresh-install path). `make test` compares the
-- objects of both paths (pg_dump --schema-only), so the two cannot drift apart.
\echo Use "ALTER EXTENSION pg_backup UPDATE TO '0.2.0'" to load this file. \quit
