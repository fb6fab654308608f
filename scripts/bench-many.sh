#!/usr/bin/env bash
# Part of make bench (run at the end of scripts/bench.sh, against its server: PGHOST/PGPORT set,
# PATH has the server's programs): a schema of many small tables (10,000 by default, each with
# a primary key and one row), with the server's default lock settings. Times backup.create()
# against pg_dump -Fc and backup.restore(atomic => false) against pg_restore; the atomic
# restore cannot hold that many locks in one transaction and is refused (53400).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
N=${BENCH_TABLES:-10000}
out=${1:-$here/target/bench/out}
mkdir -p "$out"
now() { date +%s.%N; }
ratio() { echo "scale=2; $1 / $2" | bc; }
sql_time() { # seconds a statement takes in database $1, or "failed: ..."
  local t0; t0=$(now)
  if ! psql -Atq -d "$1" -v ON_ERROR_STOP=1 -c "$2" >/dev/null 2>"$out/err.txt"; then
    echo "failed: $(grep -m1 ERROR "$out/err.txt" | cut -c1-110)"; return
  fi
  echo "$(now) - $t0" | bc
}
show() { # label, seconds, reference seconds
  case "$2" in
    failed*) printf '%-46s %s\n' "$1" "$2" ;;
    *) printf '%-46s %7.2f   %s\n' "$1" "$2" "$(ratio "$2" "$3")" ;;
  esac
}
fresh() { # a new database $1 with pg_backup
  psql -q -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" 2>/dev/null
  psql -q -d "$1" -c "CREATE EXTENSION pg_backup" -c "SELECT count(*) FROM backup.rescan()" >/dev/null
}

echo "building $N tables (one transaction each) ..."
fresh many
psql -q -d many -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT format('CREATE TABLE public.t%s (id int PRIMARY KEY, name text NOT NULL, at timestamptz DEFAULT now());
               INSERT INTO public.t%s (id, name) VALUES (1, %L)', g, g, 'row of table ' || g)
FROM generate_series(1, $N) g \gexec
SQL
locks=$(psql -Atq -d many -c "SHOW max_locks_per_transaction")

t0=$(now); pg_dump -Fc -d many -f "$out/many.dump"; dump_t=$(echo "$(now) - $t0" | bc)
ours_t=$(sql_time many "SELECT backup_id FROM backup.create(label => 'bench-many')")
id=$(psql -Atq -d many -c "SELECT id FROM backup.backups WHERE label = 'bench-many' AND status = 'completed' ORDER BY started_at DESC LIMIT 1")

psql -q -d postgres -c "DROP DATABASE IF EXISTS r_many_pg" -c "CREATE DATABASE r_many_pg" 2>/dev/null
t0=$(now); pg_restore -d r_many_pg "$out/many.dump"; pgr_t=$(echo "$(now) - $t0" | bc)
fresh r_many_ours
atomic=$(sql_time r_many_ours "SELECT count(*) FROM backup.restore('$id')")
batched=$(sql_time r_many_ours "SELECT count(*) FROM backup.restore('$id', atomic => false)")
check=$(psql -Atq -d r_many_ours -c "SELECT count(*) = $N FROM pg_class WHERE relname ~ '^t[0-9]+$' AND relkind = 'r'")

cat <<REPORT

$N tables, a primary key and one row each (max_locks_per_transaction = $locks)
what                                            seconds   ratio to pg_dump / pg_restore
pg_dump -Fc                                    $(printf %7.2f "$dump_t")   1.00
$(show "backup.create()" "$ours_t" "$dump_t")
pg_restore (1 job) into a new database         $(printf %7.2f "$pgr_t")   1.00
$(show "backup.restore() (one transaction)" "$atomic" "$pgr_t")
$(show "backup.restore(atomic => false)" "$batched" "$pgr_t")   tables check: $check
REPORT
psql -q -d postgres -c "DROP DATABASE IF EXISTS r_many_pg" -c "DROP DATABASE IF EXISTS r_many_ours" 2>/dev/null || true
