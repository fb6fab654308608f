#!/usr/bin/env bash
# make bench: backup.create() against pg_dump -Fc and a raw server-side COPY TO file, on the
# same database in one run. Prints times, ratios, sizes and peak memory; then the same for
# PostgreSQL's regression database (scripts/bench-regression.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
B=$here/target/bench
PGDATA_DIR=$B/data SOCK_DIR=$B/sock PGPORT=${BENCH_PORT:-54339}
SCALE=${BENCH_SCALE:-20} WIDE_ROWS=${BENCH_WIDE_ROWS:-500000} RUNS=${BENCH_RUNS:-2}
EXTRA_CONF="shared_buffers = 512MB
max_wal_size = 4GB
fsync = off"
. "$here/scripts/local-server.sh"
trap stop_server EXIT
start_server
out=$B/out; rm -rf "$out"; mkdir -p "$out"
psql -q -d postgres -c "CREATE DATABASE bench"
echo "loading: pgbench scale $SCALE and a $WIDE_ROWS-row wide table ..."
pgbench -i -q -s "$SCALE" bench >/dev/null 2>&1
psql -q -d bench -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION pg_backup;
CREATE TABLE wide (id bigint PRIMARY KEY, title text, body text, doc jsonb, amount numeric(14,4),
                   at timestamptz, blob bytea);
INSERT INTO wide SELECT g, 'title ' || g, repeat(md5(g::text), 4), jsonb_build_object('id', g, 'tags', jsonb_build_array('a', 'b', g % 10), 'ok', g % 2 = 0),
       g * 3.1415, timestamptz '2024-01-01' + g * interval '1 minute', decode(md5(g::text), 'hex')
FROM generate_series(1, $WIDE_ROWS) g;
VACUUM ANALYZE;
SQL
db_size=$(psql -Atq -d bench -c "SELECT pg_size_pretty(pg_database_size('bench'))")
tables="pgbench_accounts pgbench_branches pgbench_tellers pgbench_history wide"

now() { date +%s.%N; }
best() { printf '%s\n' "$@" | sort -g | head -1; }

# Raw server-side COPY of every table to files: the floor for any logical backup.
raw=()
for r in $(seq "$RUNS"); do
  rm -f "$out"/raw_*; t0=$(now)
  for t in $tables; do psql -q -d bench -c "COPY $t TO '$out/raw_$t.copy'"; done
  raw+=("$(echo "$(now) - $t0" | bc)")
done
raw_bytes=$(cat "$out"/raw_* | wc -c)

# pg_dump -Fc (default gzip level), client-side peak memory via /usr/bin/time.
dump=(); dump_mem=0
for r in $(seq "$RUNS"); do
  rm -f "$out/dump.fc"; t0=$(now)
  dump_mem=$(/usr/bin/time -f %M pg_dump -Fc -f "$out/dump.fc" bench 2>&1 >/dev/null | tail -1)
  dump+=("$(echo "$(now) - $t0" | bc)")
done
dump_bytes=$(stat -c %s "$out/dump.fc")

# backup.create(): time, archive size and the backend's peak resident memory (VmHWM; it
# includes the shared buffers this backend touched).
run_create() { # $1 = compression, $2 = format
  local times=() mem=0 bytes=0
  for r in $(seq "$RUNS"); do
    local t0; t0=$(now)
    psql -Atq -d bench -v ON_ERROR_STOP=1 > "$out/create.txt" <<SQL
\o $out/pid.txt
SELECT pg_backend_pid();
\o
SELECT bytes FROM backup.create(compression => '$1', format => '${2:-native}');
\! sh -c 'grep -E "VmHWM|RssShmem" /proc/\$(cat $out/pid.txt)/status' > $out/mem.txt
SQL
    times+=("$(echo "$(now) - $t0" | bc)")
    bytes=$(tail -1 "$out/create.txt")
    # Peak RSS minus the shared memory (shared buffers) this backend has mapped.
    mem=$(awk '/VmHWM/ {h=$2} /RssShmem/ {s=$2} END {print h - s}' "$out/mem.txt")
  done
  echo "$(best "${times[@]}") $bytes $mem"
}
read -r gz_t gz_bytes gz_mem < <(run_create gzip)
read -r none_t none_bytes none_mem < <(run_create none)
read -r gz1_t gz1_bytes gz1_mem < <(run_create gzip:1)
read -r sql_t sql_bytes sql_mem < <(run_create gzip sql)
read -r json_t json_bytes json_mem < <(run_create gzip json)
read -r csv_t csv_bytes csv_mem < <(run_create gzip csv)
level=$(psql -Atq -d bench -c "SHOW backup.compression_level")
gz_id=$(psql -Atq -d bench -c "SELECT id FROM backup.backups WHERE compression = 'gzip:$level' AND status = 'completed' ORDER BY started_at DESC LIMIT 1")

# Restore into an empty database, indexes and constraints included: pg_restore (one job, the
# pg_dump -Fc file above) against backup.restore() of the default gzip backup.
pgr=(); ours=()
for r in $(seq "$RUNS"); do
  psql -q -d postgres -c "DROP DATABASE IF EXISTS r_pg" -c "CREATE DATABASE r_pg"
  t0=$(now); pg_restore -d r_pg "$out/dump.fc"; pgr+=("$(echo "$(now) - $t0" | bc)")
  psql -q -d postgres -c "DROP DATABASE IF EXISTS r_ours" -c "CREATE DATABASE r_ours"
  psql -q -d r_ours -c "CREATE EXTENSION pg_backup" -c "SELECT count(*) FROM backup.rescan()" >/dev/null
  t0=$(now); psql -q -d r_ours -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM backup.restore('$gz_id')" >/dev/null
  ours+=("$(echo "$(now) - $t0" | bc)")
done
check=$(psql -Atq -d r_ours -c "SELECT (SELECT count(*) FROM pgbench_accounts) = (SELECT count(*) FROM wide) * 0 + $SCALE * 100000")
pgr_t=$(best "${pgr[@]}"); ours_t=$(best "${ours[@]}")

raw_t=$(best "${raw[@]}"); dump_t=$(best "${dump[@]}")
ratio() { echo "scale=2; $1 / $2" | bc; }
mb() { echo "scale=1; $1 / 1048576" | bc; }
cat <<REPORT

pg_backup benchmark ($(nproc) cores; database $db_size: pgbench scale $SCALE + $WIDE_ROWS wide rows; best of $RUNS)
what                                   seconds   size MB   peak MB*       ratio to pg_dump -Fc
raw COPY TO file (all tables)          $(printf %7.2f "$raw_t")   $(printf %7s "$(mb "$raw_bytes")")   -             $(ratio "$raw_t" "$dump_t")
pg_dump -Fc (gzip level 6)             $(printf %7.2f "$dump_t")   $(printf %7s "$(mb "$dump_bytes")")   $(printf %-11s "$(echo "$dump_mem / 1024" | bc)") (client)  1.00
backup.create() gzip:$level                $(printf %7.2f "$gz_t")   $(printf %7s "$(mb "$gz_bytes")")   $(printf %-11s "$(echo "$gz_mem / 1024" | bc)") (backend) $(ratio "$gz_t" "$dump_t")
backup.create(compression => 'gzip:1') $(printf %7.2f "$gz1_t")   $(printf %7s "$(mb "$gz1_bytes")")   $(printf %-11s "$(echo "$gz1_mem / 1024" | bc)") (backend) $(ratio "$gz1_t" "$dump_t")
backup.create(compression => 'none')   $(printf %7.2f "$none_t")   $(printf %7s "$(mb "$none_bytes")")   $(printf %-11s "$(echo "$none_mem / 1024" | bc)") (backend) $(ratio "$none_t" "$dump_t")
backup.create(format => 'sql')        $(printf %7.2f "$sql_t")   $(printf %7s "$(mb "$sql_bytes")")   $(printf %-11s "$(echo "$sql_mem / 1024" | bc)") (backend) $(ratio "$sql_t" "$dump_t")
backup.create(format => 'json')       $(printf %7.2f "$json_t")   $(printf %7s "$(mb "$json_bytes")")   $(printf %-11s "$(echo "$json_mem / 1024" | bc)") (backend) $(ratio "$json_t" "$dump_t")
backup.create(format => 'csv')        $(printf %7.2f "$csv_t")   $(printf %7s "$(mb "$csv_bytes")")   $(printf %-11s "$(echo "$csv_mem / 1024" | bc)") (backend) $(ratio "$csv_t" "$dump_t")

pg_restore (1 job, from pg_dump -Fc)      $(printf %7.2f "$pgr_t")                                   1.00 (of pg_restore)
backup.restore() (gzip:$level archive)        $(printf %7.2f "$ours_t")                                   $(ratio "$ours_t" "$pgr_t") (of pg_restore)   rows check: $check

backup.create() gzip vs raw COPY: $(ratio "$gz_t" "$raw_t")x   size vs pg_dump: $(ratio "$gz_bytes" "$dump_bytes")x
* pg_dump: the client's max RSS. backend: the backend's peak RSS (VmHWM) minus the shared memory it maps (RssShmem).
REPORT

# The regression database: many object kinds, little data (scripts/bench-regression.sh).
bash "$here/scripts/bench-regression.sh" "$out"
