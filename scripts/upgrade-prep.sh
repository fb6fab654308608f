#!/usr/bin/env bash
# Prepares what tests/upgrade.rs needs, as the test user, after `cargo pgrx install`:
#   target/upgrade/old: a private copy of PostgreSQL 15 with pg_backup 0.1.0, built from the
#                       0.1.0 release source (the release users have installed);
#   target/upgrade/new: the same with 0.1.0's install script and the current build on top,
#                       which is what a user has after installing the new package.
# Both are relocated copies of $PG_CONFIG's installation (PostgreSQL finds its files relative
# to its binaries), so the system installation is never touched.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
out=$here/target/upgrade
mkdir -p "$out"
# 0.1.0 is built in a target directory of its own: in a shared one, cargo does not copy a
# fresh build's library back to target/debug, so either build could be installed as the other.
export CARGO_TARGET_DIR=$out/target

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

# 0.1.0's source is kept in the repository (tests/fixtures/release/), exactly `git archive v0.1.0`:
# CI runs in a fresh clone that may have neither tags nor history, and the released build
# must not depend on either. Its checksum pins it to the release.
tarball=$here/tests/fixtures/release/pg_backup-0.1.0.tar.gz
want=2a45a8ddf687593837317aa66a56b14ce381158aae573b8a32e4e6fc8dca891e
rev=$(sha256sum "$tarball" | cut -d' ' -f1)
[ "$rev" = "$want" ] || { echo "upgrade-prep: $tarball does not match the 0.1.0 release (sha256 $rev)" >&2; exit 1; }
src=$out/src-0.1.0
if [ "$(cat "$src/.rev" 2>/dev/null)" != "$rev" ]; then
  rm -rf "$src"; mkdir -p "$src"
  tar -xzf "$tarball" -C "$src" --strip-components=1
  echo "$rev" > "$src/.rev"
fi
pkg=$out/pkg-0.1.0
if [ ! -f "$pkg/.done-$rev" ]; then
  rm -rf "$pkg"
  cargo pgrx package --debug --pg-config "$PG_CONFIG" --manifest-path "$src/Cargo.toml" --out-dir "$pkg" >/dev/null
  touch "$pkg/.done-$rev"
fi
old_lib=$(find "$pkg" -name 'pg_backup.so' | head -1)
old_sql=$(find "$pkg" -name 'pg_backup--0.1.0.sql' | head -1)
old_ctl=$(find "$pkg" -name 'pg_backup.control' | head -1)

copy_pg "$out/old"
cp "$old_lib" "$out/old/usr/lib/postgresql/15/lib/"
cp "$old_sql" "$old_ctl" "$out/old/usr/share/postgresql/15/extension/"

copy_pg "$out/new"
cp "$old_sql" "$out/new/usr/share/postgresql/15/extension/"
cp "$pkglibdir/pg_backup.so" "$out/new/usr/lib/postgresql/15/lib/"
cp "$extdir"/pg_backup.control "$extdir"/pg_backup--*.sql "$out/new/usr/share/postgresql/15/extension/"
echo "upgrade-prep: old=$out/old new=$out/new"
