#!/usr/bin/env bash
# Prepares what tests/upgrade.rs needs, as the test user, after `cargo pgrx install`:
#   target/upgrade/old: a private copy of PostgreSQL 15 with pg_backup 0.1.0, built from the
#                       0.1.0 release source (the release users have installed);
#   target/upgrade/old-0.2.0: the same with pg_backup 0.2.0;
#   target/upgrade/new: the same with the releases' install scripts and the current build on top,
#                       which is what a user has after installing the new package.
# With --releases-only, only old and old-0.2.0 (for the 18 upgrade test, tests/upgrade18.rs,
# which needs no 15 build of this release). PG_CONFIG is always 15's (the releases are 15's).
# All are relocated copies of $PG_CONFIG's installation (PostgreSQL finds its files relative
# to its binaries), so the system installation is never touched.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
releases_only=false
[ "${1:-}" = --releases-only ] && releases_only=true
out=$here/target/upgrade
mkdir -p "$out"
# Each release is built in a target directory of its own: in a shared one, cargo does not copy
# a fresh build's library back to target/debug, so either build could be installed as another.

bindir=$("$PG_CONFIG" --bindir)
prefix=${bindir%/lib/postgresql/15/bin}
pkglibdir=$("$PG_CONFIG" --pkglibdir)
extdir=$("$PG_CONFIG" --sharedir)/extension

copy_pg() {
  rm -rf "$1"
  mkdir -p "$1/usr/lib/postgresql" "$1/usr/share/postgresql"
  cp -a "$prefix/lib/postgresql/15" "$1/usr/lib/postgresql/"
  cp -a "$prefix/share/postgresql/15" "$1/usr/share/postgresql/"
  rm -f "$1"/usr/lib/postgresql/15/lib/pg_backup* "$1"/usr/share/postgresql/15/extension/pg_backup*
}

# Each released version's source is kept in the repository (tests/fixtures/release/), exactly
# `git archive` of the release: CI runs in a fresh clone that may have neither tags nor history,
# and a released build must not depend on either. Checksums pin them to the releases.
#   old       : 0.1.0 (the first release users installed)
#   old-0.2.0 : 0.2.0
# Each is built in a target directory of its own (see CARGO_TARGET_DIR above).
build_release() { # version sha256 install-name
  local version=$1 want=$2 name=$3
  local tarball=$here/tests/fixtures/release/pg_backup-$version.tar.gz
  local rev
  rev=$(sha256sum "$tarball" | cut -d' ' -f1)
  [ "$rev" = "$want" ] || { echo "upgrade-prep: $tarball does not match the $version release (sha256 $rev)" >&2; exit 1; }
  local src=$out/src-$version
  if [ "$(cat "$src/.rev" 2>/dev/null)" != "$rev" ]; then
    rm -rf "$src"; mkdir -p "$src"
    tar -xzf "$tarball" -C "$src" --strip-components=1
    echo "$rev" > "$src/.rev"
  fi
  local pkg=$out/pkg-$version
  if [ ! -f "$pkg/.done-$rev" ]; then
    rm -rf "$pkg"
    CARGO_TARGET_DIR=$out/target-$version cargo pgrx package --debug --pg-config "$PG_CONFIG" \
      --manifest-path "$src/Cargo.toml" --out-dir "$pkg" >/dev/null
    touch "$pkg/.done-$rev"
  fi
  local lib sql ctl
  lib=$(find "$pkg" -name 'pg_backup.so' | head -1)
  sql=$(find "$pkg" -name "pg_backup--$version.sql" | head -1)
  ctl=$(find "$pkg" -name 'pg_backup.control' | head -1)
  copy_pg "$out/$name"
  cp "$lib" "$out/$name/usr/lib/postgresql/15/lib/"
  cp "$sql" "$ctl" "$out/$name/usr/share/postgresql/15/extension/"
  # What a user has after installing the new package over this release: its install script
  # stays, the rest is the new build.
  old_sqls+=("$sql")
}
# 0.1.0 keeps the target directory it always had, so an existing build is reused.
[ -d "$out/target" ] && [ ! -e "$out/target-0.1.0" ] && mv "$out/target" "$out/target-0.1.0"
old_sqls=()
build_release 0.1.0 2a45a8ddf687593837317aa66a56b14ce381158aae573b8a32e4e6fc8dca891e old
build_release 0.2.0 186ee56a207f4e63575e99de364e9d00655b3c4792f891aa9dacc03ccb24c6ef old-0.2.0

if $releases_only; then
  echo "upgrade-prep: old=$out/old old-0.2.0=$out/old-0.2.0"
  exit 0
fi
copy_pg "$out/new"
cp "$pkglibdir/pg_backup.so" "$out/new/usr/lib/postgresql/15/lib/"
cp "$extdir"/pg_backup.control "$extdir"/pg_backup--*.sql "$out/new/usr/share/postgresql/15/extension/"
# After the current build's scripts: a stale copy of a release's install script left in the
# system directory by an earlier install never stands in for the released one.
cp "${old_sqls[@]}" "$out/new/usr/share/postgresql/15/extension/"
echo "upgrade-prep: old=$out/old old-0.2.0=$out/old-0.2.0 new=$out/new"
