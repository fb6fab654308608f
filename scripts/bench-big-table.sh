#!/usr/bin/env bash
# Part of make bench (run at the end of scripts/bench.sh, against its server: PGHOST/PGPORT set,
# PATH has the server's programs): a database whose size is one big table (pgbench scale 10 by
# default: pgbench_accounts, 128MB). pg_dump -j and pg_restore -j give one table one core;
# backup.create(jobs => 2) copies it as ranges of its heap blocks (backup.split_table_size) on
# two workers, and restore(atomic => false, jobs => 2) loads the ranges on two workers.
# Targets (issue 22): create(jobs => 2) <= 0.6x pg_dump -Fd -j2, restore <= 0.7x pg_restore -j2.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
SCALE=${BENCH_BIG_SCALE:-10} RUNS=${BENCH_RUNS:-2}
out=${1:-$here/target/bench/out}
mkdir -p "$out"
now() { date +%s.%N; }
best() { printf '%s\n' "$@" | sort -g | head -1; }
ratio() { echo "scale=2; $1 / $2" | bc; }
fresh() { # a new database $1 with pg_backup
  psql -q -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" 2>/dev/null
  psql -q -d "$1" -c "CREATE EXTENSION pg_backup" -c "SELECT count(*) FROM backup.rescan()" >/dev/null
}
sql_time() { # seconds statement $2 takes in database $1
  local t0; t0=$(now)
  psql -Atq -d "$1" -v ON_ERROR_STOP=1 -c "$2" >/dev/null
  echo "$(now) - $t0" | bc
}

echo "loading: pgbench scale $SCALE (one big table) ..."
fresh big
pgbench -i -q -s "$SCALE" big >/dev/null 2>&1
psql -q -d big -c "VACUUM ANALYZE"
size=$(psql -Atq -d big -c "SELECT pg_size_pretty(pg_table_size('pgbench_accounts'))")
split=$(psql -Atq -d big -c "SHOW backup.split_table_size")

dump=(); ours=(); pgr=(); ours_r=(); ours_1=(); whole=(); whole_r=()
for r in $(seq "$RUNS"); do
  rm -rf "$out/big.fd"; t0=$(now)
  pg_dump -Fd -j2 -f "$out/big.fd" big
  dump+=("$(echo "$(now) - $t0" | bc)")
  psql -Atq -d big -c "SELECT count(backup.delete(id)) FROM backup.backups WHERE status = 'completed'" >/dev/null
  # The same without splitting (as 0.2.0 did): one worker copies the table.
  whole+=("$(PGOPTIONS="$PGOPTIONS -c backup.split_table_size=0" sql_time big "SELECT * FROM backup.create(label => 'whole', jobs => 2)")")
  ours+=("$(sql_time big "SELECT * FROM backup.create(label => 'big', jobs => 2)")")
done
id=$(psql -Atq -d big -c "SELECT id FROM backup.backups WHERE status = 'completed' AND label = 'big' ORDER BY started_at DESC LIMIT 1")
whole_id=$(psql -Atq -d big -c "SELECT id FROM backup.backups WHERE status = 'completed' AND label = 'whole' ORDER BY started_at DESC LIMIT 1")
parts=$(psql -Atq -d big -c "SELECT count(*) FROM backup.backups b, jsonb_array_elements(pg_read_file(b.path || '/manifest.json')::jsonb -> 'files') f WHERE b.id = '$id' AND f ? 'part'" 2>/dev/null || echo "?")
for r in $(seq "$RUNS"); do
  psql -q -d postgres -c "DROP DATABASE IF EXISTS r_big" -c "CREATE DATABASE r_big"
  t0=$(now); pg_restore -j2 -d r_big "$out/big.fd"; pgr+=("$(echo "$(now) - $t0" | bc)")
  fresh r_big
  ours_r+=("$(sql_time r_big "SELECT count(*) FROM backup.restore('$id', atomic => false, jobs => 2)")")
  check=$(psql -Atq -d r_big -c "SELECT (SELECT count(*) FROM pgbench_accounts) = $SCALE * 100000 AND (SELECT count(*) FROM pg_indexes WHERE indexname = 'pgbench_accounts_pkey') = 1")
  fresh r_big
  whole_r+=("$(sql_time r_big "SELECT count(*) FROM backup.restore('$whole_id', atomic => false, jobs => 2)")")
  fresh r_big
  ours_1+=("$(sql_time r_big "SELECT count(*) FROM backup.restore('$id')")")
done
psql -q -d postgres -c "DROP DATABASE IF EXISTS r_big"
dump_t=$(best "${dump[@]}"); ours_t=$(best "${ours[@]}"); pgr_t=$(best "${pgr[@]}")
ours_r_t=$(best "${ours_r[@]}"); ours_1_t=$(best "${ours_1[@]}")
whole_t=$(best "${whole[@]}"); whole_r_t=$(best "${whole_r[@]}")
cat <<REPORT

one big table: pgbench scale $SCALE (pgbench_accounts $size; backup.split_table_size = $split: $parts parts; best of $RUNS)
what                                           seconds   ratio
pg_dump -Fd -j2                                $(printf %7.2f "$dump_t")   1.00
backup.create(jobs => 2)                       $(printf %7.2f "$ours_t")   $(ratio "$ours_t" "$dump_t")   (target <= 0.6)
  the same, split_table_size = 0 (not split)   $(printf %7.2f "$whole_t")   $(ratio "$whole_t" "$dump_t")
pg_restore -j2                                 $(printf %7.2f "$pgr_t")   1.00
backup.restore(atomic => false, jobs => 2)     $(printf %7.2f "$ours_r_t")   $(ratio "$ours_r_t" "$pgr_t")   (target <= 0.7)   rows check: $check
  the same, of the backup not split            $(printf %7.2f "$whole_r_t")   $(ratio "$whole_r_t" "$pgr_t")
backup.restore() (atomic, one session)         $(printf %7.2f "$ours_1_t")   $(ratio "$ours_1_t" "$pgr_t")
REPORT
psql -q -d big -c "SELECT count(backup.delete(id)) FROM backup.backups WHERE status = 'completed'" >/dev/null
psql -q -d postgres -c "DROP DATABASE IF EXISTS big"
rm -rf "$out/big.fd"
