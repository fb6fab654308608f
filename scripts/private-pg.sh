#!/usr/bin/env bash
# A private, relocated copy of $PG_CONFIG's PostgreSQL installation (binaries, libraries,
# share/ with every installed extension, PostGIS included) under DIR, for a developer who
# works in several checkouts at once: `cargo pgrx install --pg-config` and the end-to-end tests
# (PG_CONFIG=...) then use the copy and never overwrite another checkout's pg_backup in the
# system directories. PostgreSQL finds its files relative to its binaries. Prints the copy's
# pg_config. Usage: scripts/private-pg.sh DIR
set -euo pipefail
dir=${1:?usage: $0 DIR}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
bindir=$("$PG_CONFIG" --bindir)
major=$(basename "$(dirname "$bindir")")
prefix=${bindir%/lib/postgresql/$major/bin}
mkdir -p "$dir/usr/lib/postgresql" "$dir/usr/share/postgresql"
rm -rf "$dir/usr/lib/postgresql/$major" "$dir/usr/share/postgresql/$major"
cp -a "$prefix/lib/postgresql/$major" "$dir/usr/lib/postgresql/"
# Symlinks (Debian's alternatives for postgis.control) are copied as the files they name.
cp -aL "$prefix/share/postgresql/$major" "$dir/usr/share/postgresql/"
chmod -R a+rwX "$dir"
echo "$dir/usr/lib/postgresql/$major/bin/pg_config"
