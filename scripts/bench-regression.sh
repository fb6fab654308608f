#!/usr/bin/env bash
# Part of make bench (run at the end of scripts/bench.sh, against its server: PGHOST/PGPORT set,
# PATH has the server's programs): the server's version's PostgreSQL regression database (many object kinds, little
# data), built by pg_regress from target/regress-build (scripts/regress-build.sh). Times the
# schema extraction (backup.create(schema_only => true) vs pg_dump --schema-only) and the full
# backup and restore (backup.create()/backup.restore() vs pg_dump -Fc/pg_restore).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${BENCH_RUNS:-2}
out=${1:-$here/target/bench/out}
# The server's own version's regression suite: 15's from target/regress-build, 17's and 18's
# from their build trees (scripts/pg-build.sh --regress-dir).
major=$(pg_config --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
if [ "$major" = 15 ]; then
  regress=$here/target/regress-build/src/test/regress
  missing="run scripts/regress-build.sh as root"
else
  # make bench passes it (pg-build.sh, run as root, knows the cache; as the test user it would
  # look in that user's own cache).
  regress=${PG_BACKUP_REGRESS_DIR:-$(bash "$here/scripts/pg-build.sh" --regress-dir "$major")}/src/test/regress
  missing="run make pg-build PG=$major"
fi
if [ ! -x "$regress/pg_regress" ]; then
  echo "regression database: skipped ($regress/pg_regress missing: $missing)"
  exit 0
fi
mkdir -p "$out"
now() { date +%s.%N; }
best() { printf '%s\n' "$@" | sort -g | head -1; }
ratio() { echo "scale=2; $1 / $2" | bc; }

echo "building the regression database (pg_regress parallel_schedule, about a minute) ..."
"$regress/pg_regress" --dlpath="$regress" --bindir="$(dirname "$(command -v psql)")" \
  --host="$PGHOST" --port="$PGPORT" --schedule="$regress/parallel_schedule" \
  --max-concurrent-tests=20 --inputdir="$regress" --outputdir="$out/pg_regress" >"$out/pg_regress.log" 2>&1 || true
psql -q -d regression -c "CREATE EXTENSION pg_backup" -c "VACUUM ANALYZE" 2>/dev/null
size=$(psql -Atq -d regression -c "SELECT pg_size_pretty(pg_database_size('regression'))")
objects=$(psql -Atq -d regression -c "SELECT count(*) FROM pg_class WHERE oid >= 16384")

sql_time() { # seconds a statement takes in database $1, or "failed: ..."
  local t0; t0=$(now)
  if ! psql -Atq -d "$1" -v ON_ERROR_STOP=1 -c "$2" >/dev/null 2>"$out/err.txt"; then
    echo "failed: $(grep -m1 ERROR "$out/err.txt" | cut -c1-120)"; return
  fi
  echo "$(now) - $t0" | bc
}
sql_best() { # best of RUNS
  local times=() t
  for _ in $(seq "$RUNS"); do
    t=$(sql_time "$1" "$2")
    case "$t" in failed*) echo "$t"; return ;; esac
    times+=("$t")
  done
  best "${times[@]}"
}
cmd_best() { # best time of a command, RUNS times
  local times=() t0
  for _ in $(seq "$RUNS"); do
    t0=$(now); "$@" >/dev/null 2>&1 || true; times+=("$(echo "$(now) - $t0" | bc)")
  done
  best "${times[@]}"
}
show() { # label, seconds, reference seconds
  case "$2" in
    failed*) printf '%-44s %s\n' "$1" "$2" ;;
    *) printf '%-44s %7.2f   %s\n' "$1" "$2" "$(ratio "$2" "$3")" ;;
  esac
}

dump_schema=$(cmd_best pg_dump --schema-only -d regression -f "$out/regression-schema.sql")
ours_schema=$(sql_best regression "SELECT backup_id FROM backup.create(label => 'bench-schema', schema_only => true, compression => 'none')")
dump_full=$(cmd_best pg_dump -Fc -d regression -f "$out/regression.dump")
ours_full=$(sql_best regression "SELECT backup_id FROM backup.create(label => 'bench-full')")
full_id=$(psql -Atq -d regression -c "SELECT id FROM backup.backups WHERE label = 'bench-full' AND status = 'completed' ORDER BY started_at DESC LIMIT 1")

# Interleaved (pg_restore, then ours, then ours without the final ANALYZE, which pg_restore
# does not run), so that a change of the machine's load weighs on all three alike.
pgr=(); ours=(); ours_na=()
ours_restore="failed: no completed backup"; ours_noanalyze="failed: no completed backup"
ours_run() { # database, extra arguments of restore()
  psql -q -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1 TEMPLATE template0" 2>/dev/null
  psql -q -d "$1" -c "CREATE EXTENSION pg_backup" -c "SELECT count(*) FROM backup.rescan()" >/dev/null
  sql_time "$1" "SELECT count(*) FROM backup.restore('$full_id'$2)"
}
for _ in $(seq "$RUNS"); do
  psql -q -d postgres -c "DROP DATABASE IF EXISTS r_regr_pg" -c "CREATE DATABASE r_regr_pg TEMPLATE template0" 2>/dev/null
  t0=$(now); pg_restore -d r_regr_pg "$out/regression.dump" >/dev/null 2>&1 || true
  pgr+=("$(echo "$(now) - $t0" | bc)")
  if [ -n "$full_id" ]; then
    t=$(ours_run r_regr_ours "")
    case "$t" in failed*) ours_restore=$t ;; *) ours+=("$t") ;; esac
    t=$(ours_run r_regr_ours_na ", run_analyze => false")
    case "$t" in failed*) ours_noanalyze=$t ;; *) ours_na+=("$t") ;; esac
  fi
done
pgr_t=$(best "${pgr[@]}")
[ ${#ours[@]} -gt 0 ] && ours_restore=$(best "${ours[@]}")
[ ${#ours_na[@]} -gt 0 ] && ours_noanalyze=$(best "${ours_na[@]}")

cat <<REPORT

regression database ($size, $objects user relations; best of $RUNS)
what                                         seconds   ratio to pg_dump / pg_restore
pg_dump --schema-only                        $(printf %7.2f "$dump_schema")   1.00
$(show "backup.create(schema_only => true)" "$ours_schema" "$dump_schema")
pg_dump -Fc                                  $(printf %7.2f "$dump_full")   1.00
$(show "backup.create()" "$ours_full" "$dump_full")
pg_restore (1 job) into a new database       $(printf %7.2f "$pgr_t")   1.00
$(show "backup.restore() into a new database" "$ours_restore" "$pgr_t")
$(show "  the same, run_analyze => false" "$ours_noanalyze" "$pgr_t")
REPORT
psql -q -d postgres -c "DROP DATABASE IF EXISTS r_regr_pg" -c "DROP DATABASE IF EXISTS r_regr_ours" -c "DROP DATABASE IF EXISTS r_regr_ours_na" 2>/dev/null || true
