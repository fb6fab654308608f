#!/usr/bin/env bash
# Builds PostgreSQL's regression driver (pg_regress) and the C modules its tests load (regress.so,
# refint.so, autoinc.so) from the Debian source package of PostgreSQL 15, for the regression
# database round trip (tests/regression.rs). Built once per source version into a cache outside
# the checkout (a fresh clone reuses it), and linked as target/regress-build.
# Needs apt (deb-src lines are added for the Debian archive when none are enabled; that and
# `apt-get update` need root). Prints the build directory.
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
here=$(cd "$(dirname "$0")/.." && pwd)
major=15
pkg=postgresql-$major

if [ -n "${PG_BACKUP_REGRESS_CACHE:-}" ]; then
  cache=$PG_BACKUP_REGRESS_CACHE
elif [ "$(id -u)" = 0 ]; then
  cache=/var/cache/pg_backup
else
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/pg_backup
fi
mkdir -p "$cache"
chmod a+rx "$cache"
# Several checkouts may build at once: one builds, the others wait and reuse it.
exec 9>"$cache/.lock"
flock 9

log() { echo "regress-build: $*" >&2; }

# apt-cache exits 100 when no deb-src line lists the package (a fresh machine): that is "none".
source_versions() { { apt-cache showsrc "$pkg" 2>/dev/null || true; } | awk '/^Version:/ {print $2}' | sort -rV | uniq; }

versions=$(source_versions)
if [ -z "$versions" ]; then
  if [ "$(id -u)" != 0 ]; then
    log "no deb-src entry lists $pkg; enable deb-src lines (or run as root once)"; exit 1
  fi
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  log "enabling deb-src for the Debian archive ($codename)"
  cat > /etc/apt/sources.list.d/pg_backup-deb-src.sources <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: $codename-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt-get update -qq
  versions=$(source_versions)
fi
[ -n "$versions" ] || { log "apt lists no source package $pkg"; exit 1; }

# The source of the installed server first, else the newest version apt lists that downloads.
installed=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)
candidates=$( { if echo "$versions" | grep -qxF "$installed"; then echo "$installed"; fi; echo "$versions"; } | awk '!seen[$0]++')

build_dir=
for v in $candidates; do
  upstream=${v%%-*}
  dir=$cache/postgresql-$upstream
  if [ -f "$dir/.built" ]; then build_dir=$dir; break; fi
  tmp=$(mktemp -d "$cache/.download.XXXXXX")
  chmod 0777 "$tmp"   # apt downloads as user _apt
  log "downloading source package $pkg=$v"
  if ! (cd "$tmp" && apt-get source --download-only -qq "$pkg=$v" >/dev/null 2>"$tmp/apt.err"); then
    log "could not download $pkg=$v: $(tail -1 "$tmp/apt.err")"; rm -rf "$tmp"; continue
  fi
  rm -rf "$dir" "$dir.partial"
  mkdir -p "$dir.partial"
  tar -xjf "$tmp"/"${pkg}_${upstream}".orig.tar.bz2 -C "$dir.partial" --strip-components=1
  rm -rf "$tmp"
  log "building pg_regress and regress.so from $upstream (about a minute or two)"
  (
    cd "$dir.partial"
    ./configure --without-readline --without-icu --without-zlib >configure.log 2>&1 \
      || { tail -30 configure.log >&2; exit 1; }
    # Generated headers (utils/errcodes.h, ...) first and serially: a parallel make of
    # src/test/regress on a fresh tree races on them (seen on a fresh machine). Then serial too:
    # deterministic beats a minute saved once per machine.
    make -s -C src/backend generated-headers >make.log 2>&1 || { tail -30 make.log >&2; exit 1; }
    make -s -C src/test/regress >>make.log 2>&1 || { tail -30 make.log >&2; exit 1; }
  )
  echo "$v" > "$dir.partial/.built"
  chmod -R a+rX "$dir.partial"
  mv "$dir.partial" "$dir"
  build_dir=$dir
  break
done
[ -n "$build_dir" ] || { log "no version of $pkg could be downloaded and built"; exit 1; }

server=$("$PG_CONFIG" --version | awk '{print $2}')
built=$(cat "$build_dir/.built")
case "$built" in
  "$server"-*) ;;
  *) log "note: regression tests of $built run against server $server (same major version)";;
esac
mkdir -p "$here/target"
ln -sfn "$build_dir" "$here/target/regress-build"
echo "$build_dir"
