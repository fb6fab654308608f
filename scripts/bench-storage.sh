#!/usr/bin/env bash
# make bench, storage part: the storage client of this build (object_store on a tokio runtime)
# against the hand-written S3 client of the 0.2.0 release, both RELEASE builds, on the same
# machine, the same PostgreSQL 15 and the same data, against `rclone serve s3` on 127.0.0.1:
# create (upload), verify (download and check) and restore (download and load) of one table
# with compression => 'none', keep_local => false; best of $RUNS. Also each build's cold
# release build time, library size and number of crates.
#
# Both are built with `cargo pgrx package` (a release build) in target directories of their own
# (target/bench-storage/target-*). The first build in an empty target directory is a cold
# build: its time is recorded there and printed on later runs (BENCH_COLD=1 empties them and
# measures again). The servers run from private copies of the PostgreSQL installation, so the
# system installation is never touched.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
if [ "$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')" != 15 ]; then
  echo "bench-storage: the 0.2.0 release is PostgreSQL 15's only: storage comparison skipped on $("$PG_CONFIG" --version)"
  exit 0
fi
MB=${BENCH_STORAGE_MB:-512} RUNS=${BENCH_RUNS:-2}
out=$here/target/bench-storage
mkdir -p "$out"
rclone=${PG_BACKUP_RCLONE:-rclone}
command -v "$rclone" >/dev/null || { echo "bench-storage: rclone missing (make setup installs it)" >&2; exit 1; }
now() { date +%s.%N; }
best() { printf '%s\n' "$@" | sort -g | head -1; }
ratio() { echo "scale=2; $1 / $2" | bc; }
mbs() { echo "scale=1; $1 / 1048576 / $2" | bc; }

# ---- builds -------------------------------------------------------------------------------
[ "${BENCH_COLD:-0}" = 1 ] && rm -rf "$out"/target-* "$out"/pkg-*
rel_tar=$here/tests/fixtures/release/pg_backup-0.2.0.tar.gz
rel_sha=186ee56a207f4e63575e99de364e9d00655b3c4792f891aa9dacc03ccb24c6ef
[ "$(sha256sum "$rel_tar" | cut -d' ' -f1)" = "$rel_sha" ] || { echo "bench-storage: $rel_tar is not the 0.2.0 release" >&2; exit 1; }
src_020=$out/src-0.2.0
if [ ! -f "$src_020/Cargo.toml" ]; then
  rm -rf "$src_020"; mkdir -p "$src_020"
  tar -xzf "$rel_tar" -C "$src_020" --strip-components=1
fi
# The current source's revision: tracked files and uncommitted changes.
cur_rev=$( (cd "$here" && git ls-files -s src sql Cargo.toml Cargo.lock pg_backup.control && git diff HEAD -- src sql Cargo.toml Cargo.lock) 2>/dev/null | sha256sum | cut -c1-16)

build() { # name source-dir revision
  local name=$1 src=$2 rev=$3 tgt=$out/target-$1 pkg=$out/pkg-$1
  local cold=false
  [ -d "$tgt/release" ] || cold=true
  if [ "$(cat "$pkg/.rev" 2>/dev/null)" != "$rev" ]; then
    echo "bench-storage: release build of $name ($($cold && echo cold || echo incremental)) ..." >&2
    rm -rf "$pkg"
    # Wall time and CPU time (user + system, all compiler processes): on a shared machine the
    # CPU time is the figure that compares.
    CARGO_TARGET_DIR=$tgt /usr/bin/time -o "$out/time-$name.txt" -f '%e %U %S' nice cargo pgrx package \
      --pg-config "$PG_CONFIG" --manifest-path "$src/Cargo.toml" --out-dir "$pkg" >"$out/build-$name.log" 2>&1 \
      || { tail -20 "$out/build-$name.log" >&2; exit 1; }
    echo "$rev" > "$pkg/.rev"
    if $cold; then
      awk '{printf "%.0f s wall, %.0f s CPU\n", $1, $2 + $3}' "$out/time-$name.txt" > "$tgt/.cold-seconds"
    fi
  fi
  # Crates in the build (normal and build dependencies, this package included).
  if [ ! -f "$pkg/.crates" ]; then
    (cd "$src" && CARGO_TARGET_DIR=$tgt cargo tree --offline -e normal,build --prefix none --no-dedupe 2>/dev/null \
      | sed -E 's/ \(\*\)$//; s/ \(proc-macro\)//' | sort -u | wc -l) > "$pkg/.crates" || echo "?" > "$pkg/.crates"
  fi
}
build 0.2.0 "$src_020" "$rel_sha"
build current "$here" "$cur_rev"

lib_of() { find "$out/pkg-$1" -name pg_backup.so | head -1; }
stripped_size() { local t; t=$(mktemp); strip -o "$t" "$(lib_of "$1")"; stat -c %s "$t"; rm -f "$t"; }

# ---- servers --------------------------------------------------------------------------------
bindir=$("$PG_CONFIG" --bindir)
prefix=${bindir%/lib/postgresql/15/bin}
install_copy() { # name
  local dst=$out/pg-$1
  rm -rf "$dst"; mkdir -p "$dst/usr/lib/postgresql" "$dst/usr/share/postgresql"
  cp -a "$prefix/lib/postgresql/15" "$dst/usr/lib/postgresql/"
  cp -a "$prefix/share/postgresql/15" "$dst/usr/share/postgresql/"
  rm -f "$dst"/usr/lib/postgresql/15/lib/pg_backup* "$dst"/usr/share/postgresql/15/extension/pg_backup*
  cp "$(lib_of "$1")" "$dst/usr/lib/postgresql/15/lib/"
  find "$out/pkg-$1" \( -name 'pg_backup--*.sql' -o -name pg_backup.control \) -exec cp {} "$dst/usr/share/postgresql/15/extension/" \;
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
s3_dir=$out/s3
rm -rf "$s3_dir"; mkdir -p "$s3_dir/bench"
s3_port=$(free_port)
"$rclone" serve s3 --config /dev/null --log-level ERROR --auth-key "benchkey,benchsecret" \
  --addr "127.0.0.1:$s3_port" "$s3_dir" >/dev/null 2>&1 &
rclone_pid=$!
PGDATA_DIR= SOCK_DIR=$out/sock PGPORT=${BENCH_PORT:-54341}
cleanup() {
  [ -n "$PGDATA_DIR" ] && "$out/pg-cur-bin/pg_ctl" -D "$PGDATA_DIR" -m fast stop >/dev/null 2>&1 || true
  kill "$rclone_pid" 2>/dev/null || true
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$out"/data-* "$s3_dir"
}
trap cleanup EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$s3_port") 2>/dev/null && break; sleep 0.1; done

rows=$((MB * 1024))   # rows of about 1 kB
declare -A create_t verify_t restore_t mem bytes
run_version() { # name
  local v=$1
  install_copy "$v"
  ln -sfn "$out/pg-$v/usr/lib/postgresql/15/bin" "$out/pg-cur-bin"
  local bin=$out/pg-$v/usr/lib/postgresql/15/bin
  PGDATA_DIR=$out/data-$v
  rm -rf "$PGDATA_DIR" "$SOCK_DIR"; mkdir -p "$SOCK_DIR"
  "$bin/initdb" -A trust -E UTF8 --no-sync -D "$PGDATA_DIR" >/dev/null
  cat >> "$PGDATA_DIR/postgresql.conf" <<CONF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$SOCK_DIR'
shared_preload_libraries = 'pg_backup'
shared_buffers = 512MB
max_wal_size = 4GB
fsync = off
backup.directory = '$out/data-$v/../archives-$v'
CONF
  "$bin/pg_ctl" -D "$PGDATA_DIR" -l "$out/server-$v.log" -w start >/dev/null
  local psql="$bin/psql -X -q -h $SOCK_DIR -p $PGPORT -v ON_ERROR_STOP=1"
  $psql -d postgres -c "CREATE DATABASE bench"
  echo "bench-storage: $v: loading $MB MB ..." >&2
  $psql -d bench <<SQL
CREATE EXTENSION pg_backup;
CREATE TABLE blob (id int PRIMARY KEY, payload text);
ALTER TABLE blob ALTER payload SET STORAGE EXTERNAL;
INSERT INTO blob SELECT g, repeat(md5(g::text), 31) FROM generate_series(1, $rows) g;
VACUUM ANALYZE blob;
SELECT FROM backup.add_storage('s3', 's3://bench/$v', '{"endpoint": "http://127.0.0.1:$s3_port",
  "allow_http": true, "region": "us-east-1", "access_key_id": "benchkey",
  "secret_access_key": "benchsecret"}');
SQL
  local sum
  sum=$($psql -Atd bench -c "SELECT md5(string_agg(md5(payload), '' ORDER BY id)) FROM blob")
  local c=() vv=() r=() id t0
  for _ in $(seq "$RUNS"); do
    t0=$(now)
    id=$($psql -Atd bench -c "SELECT backup_id FROM backup.create(storage => 's3', keep_local => false, compression => 'none')")
    c+=("$(echo "$(now) - $t0" | bc)")
    bytes[$v]=$(du -sb "$s3_dir/bench/$v/$id" | cut -f1)
    t0=$(now)
    $psql -Atd bench -c "SELECT count(*) FROM backup.verify('$id')" >/dev/null
    vv+=("$(echo "$(now) - $t0" | bc)")
    # The restoring backend's peak memory (VmHWM less the shared memory it maps).
    t0=$(now)
    $psql -Atd bench >/dev/null <<SQL
SELECT count(*) FROM backup.restore('$id', existing => 'truncate', confirm => true);
SELECT pg_backend_pid() AS pid \gset
\setenv BACKEND_PID :pid
\! grep -E 'VmHWM|RssShmem' /proc/\$BACKEND_PID/status > $out/mem-$v.txt
SQL
    r+=("$(echo "$(now) - $t0" | bc)")
    [ "$($psql -Atd bench -c "SELECT md5(string_agg(md5(payload), '' ORDER BY id)) FROM blob")" = "$sum" ] \
      || { echo "bench-storage: $v: restored rows differ" >&2; exit 1; }
    $psql -Atd bench -c "SELECT backup.delete('$id')" >/dev/null
  done
  create_t[$v]=$(best "${c[@]}"); verify_t[$v]=$(best "${vv[@]}"); restore_t[$v]=$(best "${r[@]}")
  mem[$v]=$(awk '/VmHWM/ {h=$2} /RssShmem/ {s=$2} END {printf "%d", (h - s) / 1024}' "$out/mem-$v.txt")
  "$bin/pg_ctl" -D "$PGDATA_DIR" -m fast stop >/dev/null
  rm -rf "$PGDATA_DIR" "$out/archives-$v"; PGDATA_DIR=
}
run_version 0.2.0
run_version current

obj_mb() { echo "scale=0; ${bytes[$1]} / 1048576" | bc; }
row() { # label version
  local v=$2
  printf '%-34s %7.2f s %6s MB/s   %7.2f s %6s MB/s   %7.2f s %6s MB/s   %5s\n' "$1" \
    "${create_t[$v]}" "$(mbs "${bytes[$v]}" "${create_t[$v]}")" \
    "${verify_t[$v]}" "$(mbs "${bytes[$v]}" "${verify_t[$v]}")" \
    "${restore_t[$v]}" "$(mbs "${bytes[$v]}" "${restore_t[$v]}")" "${mem[$v]}"
}
build_row() { # label version
  local v=$1 lib
  lib=$(lib_of "$v")
  printf '%-34s %-24s   %8.1f MB   %8.1f MB   %6s\n' "$2" "$(cat "$out/target-$v/.cold-seconds" 2>/dev/null || echo '?')" \
    "$(echo "scale=1; $(stat -c %s "$lib") / 1048576" | bc)" "$(echo "scale=1; $(stripped_size "$v") / 1048576" | bc)" \
    "$(cat "$out/pkg-$v/.crates")"
}
cat <<REPORT

storage: one table, $(obj_mb current) MB of objects (compression => 'none', keep_local => false), rclone serve s3 on 127.0.0.1, release builds, best of $RUNS ($(nproc) cores)
build                              create (upload)        verify (download)      restore (download+load)  peak MB*
$(row "0.2.0 (hand-written SigV4 client)" 0.2.0)
$(row "this build (object_store 0.13)" current)
ratio this build / 0.2.0           $(ratio "${create_t[current]}" "${create_t[0.2.0]}")x                  $(ratio "${verify_t[current]}" "${verify_t[0.2.0]}")x                  $(ratio "${restore_t[current]}" "${restore_t[0.2.0]}")x
* the restoring backend's peak resident memory less the shared memory it maps.

build                              cold release build         pg_backup.so     stripped   crates
$(build_row 0.2.0 "0.2.0")
$(build_row current "this build")
REPORT
