#!/usr/bin/env bash
# Builds PostgreSQL's regression driver (pg_regress) and the C modules its tests load (regress.so,
# refint.so, autoinc.so) from the Debian source package of PostgreSQL 15, for the regression
# database round trip (tests/regression.rs). Built once per source version into a cache outside
# the checkout ($cache/postgresql-15.X, the same cache as scripts/pg-build.sh's; a fresh clone
# reuses it), and linked as target/regress-build. Prints the build directory.
#
# The source comes through a PRIVATE apt configuration ($cache/apt-bookworm, deb-src lines of
# bookworm, -updates and -security; scripts/pg-source.sh): the system's apt sources are neither
# read nor changed. The installed server's version first, else the newest listed version that
# downloads (the archive's pool does not always keep the installed one). A cache that already
# holds a built 15.X is used without any network access. Downloading needs root (make setup).
# Deterministic: configure, then the generated headers (utils/errcodes.h, ...) serially, then
# src/test/regress serially (a parallel make of it on a fresh tree once raced on errcodes.h).
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/pg-source.sh
. "$here/scripts/pg-source.sh"
major=15
pkg=postgresql-$major

log() { echo "regress-build: $*" >&2; }

cache=$(pg_cache_dir)
mkdir -p "$cache"
chmod a+rx "$cache"
# Several checkouts may build at once: one builds, the others wait and reuse it.
exec 9>"$cache/.lock"
flock 9

installed=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)
# A built tree: the installed server's version, else the newest one built.
build_dir=
if [ -n "$installed" ] && [ -f "$cache/postgresql-${installed%%-*}/.built" ]; then
  build_dir=$cache/postgresql-${installed%%-*}
else
  for d in $(ls -d "$cache"/postgresql-$major.* 2>/dev/null | sort -rV); do
    [ -f "$d/.built" ] && { build_dir=$d; break; }
  done
fi

if [ -z "$build_dir" ]; then
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  conf=$(pg_apt_private "$cache" "$codename" "$codename" "$codename-updates" "$codename-security")
  tmp=$(mktemp -d "$cache/.download.XXXXXX")
  log "downloading the source package $pkg (private apt configuration $(dirname "$conf"))"
  if ! tarball=$(pg_download_source "$conf" "$pkg" "$tmp" "$installed" 2>"$tmp/why"); then
    log "$(cat "$tmp/why")"; rm -rf "$tmp"; exit 1
  fi
  upstream=$(basename "$tarball" .orig.tar.bz2); upstream=${upstream#"${pkg}_"}
  dir=$cache/postgresql-$upstream
  rm -rf "$dir" "$dir.partial"
  mkdir -p "$dir.partial"
  tar -xjf "$tarball" -C "$dir.partial" --strip-components=1
  rm -rf "$tmp"
  log "building pg_regress and regress.so from $upstream (a minute or two)"
  start=$(date +%s)
  (
    cd "$dir.partial"
    nice -n 19 ./configure --without-readline --without-icu --without-zlib >configure.log 2>&1 \
      || { tail -30 configure.log >&2; exit 1; }
    # Generated headers (utils/errcodes.h, ...) first and serially: a parallel make of
    # src/test/regress on a fresh tree races on them (seen on a fresh machine). Then serial too:
    # deterministic beats a minute saved once per machine.
    nice -n 19 make -s -C src/backend generated-headers >make.log 2>&1 || { tail -30 make.log >&2; exit 1; }
    nice -n 19 make -s -C src/test/regress >>make.log 2>&1 || { tail -30 make.log >&2; exit 1; }
  )
  echo "$upstream" > "$dir.partial/.built"
  chmod -R a+rX "$dir.partial"
  mv "$dir.partial" "$dir"
  build_dir=$dir
  log "built in $(( $(date +%s) - start )) s"
fi

server=$("$PG_CONFIG" --version | awk '{print $2}')
built=$(cat "$build_dir/.built")
case "$built" in
  "$server"|"$server"-*) ;;
  *) log "note: regression tests of $built run against server $server (same major version)";;
esac
mkdir -p "$here/target"
ln -sfn "$build_dir" "$here/target/regress-build"
echo "$build_dir"
