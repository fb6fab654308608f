#!/usr/bin/env bash
# make bench: backup.create() against pg_dump -Fc (and -Fd -j2) and a raw server-side COPY TO
# file, backup.restore() against pg_restore (and -j2), on the same database in one run. Prints
# times, ratios, sizes and peak memory; then the same for PostgreSQL's regression database
# (scripts/bench-regression.sh) and for a schema of 10,000 tables (scripts/bench-many.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
B=$here/target/bench
PGDATA_DIR=$B/data SOCK_DIR=$B/sock PGPORT=${BENCH_PORT:-54339}
SCALE=${BENCH_SCALE:-20} WIDE_ROWS=${BENCH_WIDE_ROWS:-500000} RUNS=${BENCH_RUNS:-2}
TEXT_ROWS=${BENCH_TEXT_ROWS:-500000}
EXTRA_CONF="shared_buffers = 512MB
max_wal_size = 4GB
fsync = off"
. "$here/scripts/local-server.sh"
# "database ... does not exist, skipping" and the like stay out of the report.
export PGOPTIONS="-c client_min_messages=warning"
# The databases, archives (under the data directory) and dumps take gigabytes: gone at the
# end (BENCH_KEEP=1 keeps them to look at).
cleanup() {
  stop_server
  if [ "${BENCH_KEEP:-0}" != 1 ]; then rm -rf "$PGDATA_DIR" "$B/out"/*.dump "$B/out"/dump.* "$B/out"/raw_*; fi
}
trap cleanup EXIT
start_server
out=$B/out; rm -rf "$out"; mkdir -p "$out"
psql -q -d postgres -c "CREATE DATABASE bench"
echo "loading: pgbench scale $SCALE, a $WIDE_ROWS-row wide table, $TEXT_ROWS rows of text ..."
pgbench -i -q -s "$SCALE" bench >/dev/null 2>&1
psql -q -d bench -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION pg_backup;
CREATE TABLE wide (id bigint PRIMARY KEY, title text, body text, doc jsonb, amount numeric(14,4),
                   at timestamptz, blob bytea);
INSERT INTO wide SELECT g, 'title ' || g, repeat(md5(g::text), 4), jsonb_build_object('id', g, 'tags', jsonb_build_array('a', 'b', g % 10), 'ok', g % 2 = 0),
       g * 3.1415, timestamptz '2024-01-01' + g * interval '1 minute', decode(md5(g::text), 'hex')
FROM generate_series(1, $WIDE_ROWS) g;
-- Text that compresses like real text (unlike md5 strings): words drawn with a Zipf-like
-- distribution (rank r with probability ~ 1/r: r = V^u, u uniform) from the vocabulary of
-- PostgreSQL's own share/*.sql files.
CREATE TABLE vocab AS
SELECT row_number() OVER (ORDER BY count(*) DESC, w) AS rank, w
FROM (SELECT regexp_split_to_table(lower(pg_read_file(d || '/' || f)), '[^a-z]+') AS w
      FROM (SELECT setting AS d FROM pg_config WHERE name = 'SHAREDIR') s,
           pg_ls_dir((SELECT setting FROM pg_config WHERE name = 'SHAREDIR')) f
      WHERE f LIKE '%.sql') x
WHERE length(w) BETWEEN 2 AND 24
GROUP BY w;
CREATE TABLE notes (id bigint PRIMARY KEY, author text, written date, body text);
INSERT INTO notes
SELECT g, v[floor(power(n, random()))::int],
       date '2020-01-01' + (g % 1500),
       array_to_string(ARRAY(SELECT v[floor(power(n, random()))::int]
                             FROM generate_series(1, 8 + (g * 37) % 41)), ' ')
FROM (SELECT array_agg(w ORDER BY rank) AS v, count(*) AS n FROM vocab) voc,
     generate_series(1, $TEXT_ROWS) g;
VACUUM ANALYZE;
SQL
vocab_size=$(psql -Atq -d bench -c "SELECT count(*) FROM vocab")
db_size=$(psql -Atq -d bench -c "SELECT pg_size_pretty(pg_database_size('bench'))")
tables="pgbench_accounts pgbench_branches pgbench_tellers pgbench_history wide notes"

now() { date +%s.%N; }
best() { printf '%s\n' "$@" | sort -g | head -1; }
ratio() { echo "scale=2; $1 / $2" | bc; }

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

# pg_dump -Fd -j2: two worker connections, one file per table.
dumpj=()
for r in $(seq "$RUNS"); do
  rm -rf "$out/dump.fd"; t0=$(now)
  pg_dump -Fd -j2 -f "$out/dump.fd" bench
  dumpj+=("$(echo "$(now) - $t0" | bc)")
done
dumpj_bytes=$(du -sb "$out/dump.fd" | cut -f1)

# backup.create(): time, archive size and the backend's peak resident memory (VmHWM; it
# includes the shared buffers this backend touched).
run_create() { # $1 = compression, $2 = format, $3 = jobs
  local times=() mem=0 bytes=0
  for r in $(seq "$RUNS"); do
    local t0; t0=$(now)
    psql -Atq -d bench -v ON_ERROR_STOP=1 > "$out/create.txt" <<SQL
\o $out/pid.txt
SELECT pg_backend_pid();
\o
SELECT bytes FROM backup.create(compression => '$1', format => '${2:-native}', jobs => ${3:-1});
\! sh -c 'grep -E "VmHWM|RssShmem" /proc/\$(cat $out/pid.txt)/status' > $out/mem.txt
SQL
    times+=("$(echo "$(now) - $t0" | bc)")
    bytes=$(tail -1 "$out/create.txt")
    # Peak RSS minus the shared memory (shared buffers) this backend has mapped.
    mem=$(awk '/VmHWM/ {h=$2} /RssShmem/ {s=$2} END {print h - s}' "$out/mem.txt")
  done
  echo "$(best "${times[@]}") $bytes $mem"
}
read -r zs_t zs_bytes zs_mem < <(run_create zstd)
zs_id=$(psql -Atq -d bench -c "SELECT id FROM backup.backups WHERE compression = 'zstd:3' AND status = 'completed' ORDER BY started_at DESC LIMIT 1")
# Disk space: only the default backup is kept (the restores below read it).
prune() { psql -Atq -d bench -c "SELECT count(backup.delete(id)) FROM backup.backups WHERE status = 'completed' AND id <> '$zs_id'" >/dev/null; }
prune
read -r zs1_t zs1_bytes zs1_mem < <(run_create zstd:1); prune
read -r zs9_t zs9_bytes zs9_mem < <(run_create zstd:9); prune
read -r zs6_t zs6_bytes zs6_mem < <(run_create zstd:6); prune
read -r j2_t j2_bytes j2_mem < <(run_create zstd native 2); prune
read -r gz_t gz_bytes gz_mem < <(run_create gzip); prune
read -r none_t none_bytes none_mem < <(run_create none); prune
read -r gz1_t gz1_bytes gz1_mem < <(run_create gzip:1); prune
read -r sql_t sql_bytes sql_mem < <(run_create gzip sql); prune
read -r json_t json_bytes json_mem < <(run_create gzip json); prune
read -r csv_t csv_bytes csv_mem < <(run_create gzip csv); prune
level=$(psql -Atq -d bench -c "SHOW backup.compression_level")

# Restore into an empty database, indexes and constraints included: pg_restore (one job, the
# pg_dump -Fc file above; two jobs, the -Fd directory) against backup.restore() of the default
# (zstd) backup, atomic and atomic => false.
restore_ours() { # $1 = database, $2 = extra arguments
  psql -q -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
  psql -q -d "$1" -c "CREATE EXTENSION pg_backup" -c "SELECT count(*) FROM backup.rescan()" >/dev/null
  local t0; t0=$(now)
  psql -q -d "$1" -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM backup.restore('$zs_id'$2)" >/dev/null
  echo "$(now) - $t0" | bc
}
# restore(jobs => N) where this build has it (non-atomic: N workers load tables and build
# indexes at once, as pg_restore -j does).
has_jobs=$(psql -Atq -d bench -c "SELECT EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = 'backup'::regnamespace AND proname = 'restore' AND 'jobs' = ANY (proargnames))")
pgr=(); pgrj=(); ours=(); ours_na=(); ours_nz=(); ours_j2=()
for r in $(seq "$RUNS"); do
  psql -q -d postgres -c "DROP DATABASE IF EXISTS r_pg" -c "CREATE DATABASE r_pg"
  t0=$(now); pg_restore -d r_pg "$out/dump.fc"; pgr+=("$(echo "$(now) - $t0" | bc)")
  psql -q -d postgres -c "DROP DATABASE IF EXISTS r_pg"
  psql -q -d postgres -c "DROP DATABASE IF EXISTS r_pgj" -c "CREATE DATABASE r_pgj"
  t0=$(now); pg_restore -j2 -d r_pgj "$out/dump.fd"; pgrj+=("$(echo "$(now) - $t0" | bc)")
  psql -q -d postgres -c "DROP DATABASE IF EXISTS r_pgj"
  ours+=("$(restore_ours r_ours "")")
  # pg_restore leaves statistics to a later (auto)ANALYZE: the same work, without it.
  ours_nz+=("$(restore_ours r_ours_nz ", run_analyze => false")")
  psql -q -d postgres -c "DROP DATABASE IF EXISTS r_ours_nz"
  ours_na+=("$(restore_ours r_ours_na ", atomic => false")")
  psql -q -d postgres -c "DROP DATABASE IF EXISTS r_ours_na"
  if [ "$has_jobs" = t ]; then
    ours_j2+=("$(restore_ours r_ours_j2 ", atomic => false, jobs => 2")")
    check_j2=$(psql -Atq -d r_ours_j2 -c "SELECT (SELECT count(*) FROM pgbench_accounts) = $SCALE * 100000 AND (SELECT count(*) FROM notes) = $TEXT_ROWS AND (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname IN ('pgbench_accounts', 'wide', 'notes')) = 3")
    psql -q -d postgres -c "DROP DATABASE IF EXISTS r_ours_j2"
  fi
done
check=$(psql -Atq -d r_ours -c "SELECT (SELECT count(*) FROM pgbench_accounts) = $SCALE * 100000 AND (SELECT count(*) FROM notes) = $TEXT_ROWS")
pgr_t=$(best "${pgr[@]}"); pgrj_t=$(best "${pgrj[@]}"); ours_t=$(best "${ours[@]}"); ours_na_t=$(best "${ours_na[@]}")
ours_nz_t=$(best "${ours_nz[@]}")
if [ "$has_jobs" = t ]; then
  ours_j2_t=$(best "${ours_j2[@]}")
  j2_row=$(printf '%-46s %7.2f   %-21s %-9s rows check: %s' "backup.restore(atomic => false, jobs => 2)" "$ours_j2_t" "$(ratio "$ours_j2_t" "$pgr_t")" "$(ratio "$ours_j2_t" "$pgrj_t")" "$check_j2")
else
  j2_row="backup.restore(jobs => 2)                      not in this build"
fi

raw_t=$(best "${raw[@]}"); dump_t=$(best "${dump[@]}"); dumpj_t=$(best "${dumpj[@]}")
mb() { echo "scale=1; $1 / 1048576" | bc; }
row() { # label, seconds, bytes, peak KB, reference seconds
  printf '%-40s %7.2f   %7s   %-11s (backend) %s\n' "$1" "$2" "$(mb "$3")" "$(echo "$4 / 1024" | bc)" "$(ratio "$2" "$5")"
}
cat <<REPORT

pg_backup benchmark ($(nproc) cores; database $db_size: pgbench scale $SCALE + $WIDE_ROWS wide rows + $TEXT_ROWS rows of text from a $vocab_size-word vocabulary; best of $RUNS)
what                                      seconds   size MB   peak MB*       ratio to pg_dump -Fc
raw COPY TO file (all tables)            $(printf %7.2f "$raw_t")   $(printf %7s "$(mb "$raw_bytes")")   -                   $(ratio "$raw_t" "$dump_t")
pg_dump -Fc (gzip level 6)               $(printf %7.2f "$dump_t")   $(printf %7s "$(mb "$dump_bytes")")   $(printf %-11s "$(echo "$dump_mem / 1024" | bc)") (client)  1.00
pg_dump -Fd -j2 (gzip level 6)           $(printf %7.2f "$dumpj_t")   $(printf %7s "$(mb "$dumpj_bytes")")   -                   $(ratio "$dumpj_t" "$dump_t")
$(row "backup.create() (zstd:3, the default)" "$zs_t" "$zs_bytes" "$zs_mem" "$dump_t")
$(row "backup.create(compression => 'zstd:1')" "$zs1_t" "$zs1_bytes" "$zs1_mem" "$dump_t")
$(row "backup.create(compression => 'zstd:6')" "$zs6_t" "$zs6_bytes" "$zs6_mem" "$dump_t")
$(row "backup.create(compression => 'zstd:9')" "$zs9_t" "$zs9_bytes" "$zs9_mem" "$dump_t")
$(row "backup.create(jobs => 2)" "$j2_t" "$j2_bytes" "$j2_mem" "$dump_t")
$(row "backup.create(compression => 'gzip:$level')" "$gz_t" "$gz_bytes" "$gz_mem" "$dump_t")
$(row "backup.create(compression => 'gzip:1')" "$gz1_t" "$gz1_bytes" "$gz1_mem" "$dump_t")
$(row "backup.create(compression => 'none')" "$none_t" "$none_bytes" "$none_mem" "$dump_t")
$(row "backup.create(format => 'sql', gzip)" "$sql_t" "$sql_bytes" "$sql_mem" "$dump_t")
$(row "backup.create(format => 'json', gzip)" "$json_t" "$json_bytes" "$json_mem" "$dump_t")
$(row "backup.create(format => 'csv', gzip)" "$csv_t" "$csv_bytes" "$csv_mem" "$dump_t")
backup.create(jobs => 2) vs pg_dump -Fd -j2: $(ratio "$j2_t" "$dumpj_t")x

restore into an empty database                 seconds   ratio to pg_restore   to pg_restore -j2
pg_restore (1 job, from pg_dump -Fc)           $(printf %7.2f "$pgr_t")   1.00                  $(ratio "$pgr_t" "$pgrj_t")
pg_restore -j2 (from pg_dump -Fd)              $(printf %7.2f "$pgrj_t")   $(ratio "$pgrj_t" "$pgr_t")                   1.00
backup.restore() (zstd:3 archive, ANALYZE)     $(printf %7.2f "$ours_t")   $(ratio "$ours_t" "$pgr_t")                   $(ratio "$ours_t" "$pgrj_t")      rows check: $check
backup.restore(run_analyze => false)           $(printf %7.2f "$ours_nz_t")   $(ratio "$ours_nz_t" "$pgr_t")                   $(ratio "$ours_nz_t" "$pgrj_t")
backup.restore(atomic => false)                $(printf %7.2f "$ours_na_t")   $(ratio "$ours_na_t" "$pgr_t")                   $(ratio "$ours_na_t" "$pgrj_t")
$j2_row

backup.create() zstd vs raw COPY: $(ratio "$zs_t" "$raw_t")x   size vs pg_dump -Fc: $(ratio "$zs_bytes" "$dump_bytes")x
* pg_dump: the client's max RSS. backend: the backend's peak RSS (VmHWM) minus the shared memory it maps (RssShmem); with jobs => 2 the session's (each worker's is of the same kind).
REPORT

# Disk space for the next parts: the restored copies and the archives go.
for d in r_pg r_pgj r_ours r_ours_na r_ours_nz r_ours_j2; do psql -q -d postgres -c "DROP DATABASE IF EXISTS $d"; done
psql -q -d bench -c "SELECT count(backup.delete(id)) FROM backup.backups WHERE status = 'completed'" >/dev/null
rm -rf "$out/dump.fd" "$out"/raw_*

# The regression database: many object kinds, little data (scripts/bench-regression.sh).
bash "$here/scripts/bench-regression.sh" "$out"

# 10,000 tables (scripts/bench-many.sh).
bash "$here/scripts/bench-many.sh" "$out"

# One big table: create/restore(jobs => 2) against pg_dump/pg_restore -j2 (scripts/bench-big-table.sh).
bash "$here/scripts/bench-big-table.sh" "$out"
