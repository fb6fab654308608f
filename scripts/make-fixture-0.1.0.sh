#!/usr/bin/env bash
# Writes tests/fixtures/archive-0.1.0/ with pg_backup 0.1.0 (run once, after
# scripts/upgrade-prep.sh; as the test user): a native (gzip) and a sql-format archive of the
# database tests/fixtures/archive-0.1.0/source.sql builds. Kept in git so every later release
# proves it still reads what 0.1.0 wrote.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
old=$here/target/upgrade/old/usr/lib/postgresql/15/bin
dir=$(mktemp -d); trap 'PATH=$old:$PATH pg_ctl -D "$dir/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
export PATH=$old:$PATH PGHOST=$dir PGPORT=$((40000 + $$ % 1000))
initdb -A trust -E UTF8 --no-sync -D "$dir/data" >/dev/null
printf "port = %s\nunix_socket_directories = '%s'\nlisten_addresses = ''\nshared_preload_libraries = 'pg_backup'\n" "$PGPORT" "$dir" >> "$dir/data/postgresql.conf"
pg_ctl -D "$dir/data" -l "$dir/log" -w start >/dev/null
createdb fixture010
psql -X -q -v ON_ERROR_STOP=1 -d fixture010 -c 'CREATE EXTENSION pg_backup' -f "$here/tests/fixtures/archive-0.1.0/source.sql"
psql -X -q -v ON_ERROR_STOP=1 -d fixture010 -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_backup'" | grep -q 0.1.0
out=$here/tests/fixtures/archive-0.1.0
rm -rf "$out"/2*
for fmt in native sql; do
  id=$(psql -X -At -v ON_ERROR_STOP=1 -d fixture010 -c "SELECT backup_id FROM backup.create(label => 'fixture-$fmt', format => '$fmt')")
  cp -a "$dir/data/pg_backup/$id" "$out/"
done
chmod -R u+rwX,go+rX "$out"
ls "$out"
