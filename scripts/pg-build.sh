#!/usr/bin/env bash
# PostgreSQL of a given major version for building and testing pg_backup; prints its pg_config.
#   scripts/pg-build.sh 15        the system's (Debian 12 ships 15: nothing is built)
#   scripts/pg-build.sh 17|18     built once from Debian's source package into a cache outside the
#                                 checkout ($cache/pg-MAJOR), then reused
#   scripts/pg-build.sh --regress-dir 15|17|18   prints the build tree instead (pg_regress,
#                                 src/test/regress/regress.so and the regression tests' files)
#   scripts/pg-build.sh --path 15|17|18   prints where that pg_config is (or will be), builds nothing
#   scripts/pg-build.sh --available 15|17|18   says whether that version is built or can be built
#                                 here, WITHOUT building it (seconds: at most a private apt-get
#                                 update and one HEAD request). Exit 0 and one line on stdout
#                                 ("built" / "buildable: <source>"); exit 3 and one line on stderr
#                                 ("not available: <why>"). For make test: skip a version with
#                                 status 3 and report it "not tested".
# Exit status: 0 ok; 1 the build failed (its log's tail on stderr); 2 usage; 3 no source of that
# version can be had here (one line on stderr, nothing left behind) — PostgreSQL 17 on these
# machines: the Debian archive lists postgresql-17 (trixie) but serves none of its files, so
# PG_BACKUP_PG_SOURCE_17 must name a source.
#
# Debian 12 has no binaries of 17 or 18. The Debian archive has their source packages: 17 in
# suite trixie, 18 in suite sid. They are downloaded with a PRIVATE apt configuration
# ($cache/apt-SUITE, scripts/pg-source.sh): the system's sources are never read nor changed, and
# no trixie or sid binary package can ever be installed through it (one would replace the
# system's libc).
#
# Build: ./configure with $flags below: the features of Debian's own PostgreSQL 15 packages that
# decide what a database may contain, so that a database of 15 (the regression database: ICU
# collations, lz4 columns, xml values) restores on 17/18, that pgcrypto, uuid-ossp, xml2 and
# sslinfo are in contrib, and that pg_dump -Fc is compared fairly (zlib, zstd, lz4). No
# readline, NLS, LLVM, PLs other than plpgsql, nor authentication libraries: nothing a test needs.
# The Debian 12 -dev packages are installed by `make setup` (scripts/setup.sh). Then make + make
# install of the server, ALL of contrib and src/test/regress. Always `nice -n 19` and -j2 (the 2
# cores are shared). Deterministic: the generated headers (utils/errcodes.h, ...) are made first
# and serially, so no parallel make races on them.
# Relocatable: binaries and libraries find libpq through $ORIGIN-relative run paths (then the
# prefix they were built for), and PostgreSQL finds its share/lib directories relative to its
# binaries, so an installation moved or copied elsewhere keeps working and uses its own libpq.
# Idempotent: $cache/pg-MAJOR/.complete and $cache/pg-MAJOR-build/.complete are written last and
# hold the version and the recipe (configure flags and link options, no path). With both, and
# the recipe the same as this script's, the script prints the path and does nothing else (no
# network). A build made with another recipe (e.g. the earlier one without OpenSSL, uuid, ICU)
# is rebuilt from scratch: prefix deleted, tree `make distclean`ed and configured again. Without
# the markers, a re-run resumes (make rebuilds only what is missing); a half-done build is never
# taken as complete. Several checkouts may call it at once: one builds, the others wait.
#
# When the Debian archive does not serve a source (its pool keeps only some versions),
# PG_BACKUP_PG_SOURCE_17=/path/to/postgresql-17.X.tar.bz2 (or .tar.gz, or an unpacked tree) builds
# 17 from that instead (PG_BACKUP_PG_SOURCE_18 likewise). PG_BACKUP_PG_SOURCE (no version) is
# used for the version it is of — an unpacked tree's configure says it, a tarball's name
# postgresql-17.X.tar.* or postgresql-17_17.X.orig.tar.* — and ignored by the other versions, so
# one `make test` may be given 17's source without disturbing 18's download.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/pg-source.sh
. "$here/pg-source.sh"

# The recipe: change RECIPE (or the flags) and every cached build is rebuilt once.
RECIPE=2
flags="--without-readline --with-icu --with-lz4 --with-zlib --with-zstd --with-ssl=openssl --with-uuid=e2fs --with-libxml --with-libxslt"
# Run paths: next to bin/ ($ORIGIN/../lib), next to lib/postgresql/*.so ($ORIGIN/..), and the
# prefix itself (for the build tree's pg_regress). '$$' is make's escape for '$'.
rpath_make='$$ORIGIN/../lib:$$ORIGIN/..'

mode=build
case "${1:-}" in
  --regress-dir) mode=regress; shift;;
  --path) mode=path; shift;;
  --available) mode=available; shift;;
esac
major=${1:-}
[ $# = 1 ] || { echo "usage: $0 [--regress-dir|--path|--available] 15|17|18" >&2; exit 2; }

log() { echo "pg-build($major): $*" >&2; }

case "$major" in
  15)
    case $mode in
      # 15's pg_regress comes from scripts/regress-build.sh (the system's server, its source).
      regress) exec bash "$here/regress-build.sh";;
      available) echo "built (the system's PostgreSQL 15)"; exit 0;;
    esac
    echo "${PG_CONFIG_15:-/usr/lib/postgresql/15/bin/pg_config}"; exit 0;;
  17) suites="trixie trixie-updates trixie-security";;
  18) suites="sid";;
  *) log "unsupported major version (15, 17 or 18)"; exit 2;;
esac
suite=${suites%% *}
pkg=postgresql-$major

cache=$(pg_cache_dir)
prefix=$cache/pg-$major
tree=$cache/pg-$major-build
recipe="recipe $RECIPE: $flags rpath=$rpath_make"

print_result() {
  if [ $mode = regress ]; then echo "$tree"; else echo "$prefix/bin/pg_config"; fi
}
# Line 2 of a marker is the recipe it was made with.
recipe_of() { sed -n 2p "$1" 2>/dev/null; }
complete() {
  [ -f "$prefix/.complete" ] && [ -f "$tree/.complete" ] \
    && [ "$(recipe_of "$prefix/.complete")" = "$recipe" ] && [ "$(recipe_of "$tree/.complete")" = "$recipe" ]
}

[ $mode = path ] && { echo "$prefix/bin/pg_config"; exit 0; }

# Fast path, no lock: a complete build of this recipe.
if complete; then
  [ $mode = available ] && { echo "built ($(sed -n 1p "$prefix/.complete"), $prefix)"; exit 0; }
  print_result; exit 0
fi

unavailable() {  # one line, status 3
  log "PostgreSQL $major is not available here: $*; set PG_BACKUP_PG_SOURCE_$major to a PostgreSQL $major source tarball (or unpacked tree) to build it"
  exit 3
}

# The source given for this version (see the header): sets $given and $given_var, or neither.
given= given_var=
source_version() {  # the PostgreSQL version of a tree or tarball path, as far as it says
  if [ -d "$1" ]; then
    sed -n "s/^PACKAGE_VERSION='\(.*\)'/\1/p" "$1/configure" 2>/dev/null || true
  else
    basename "$1" | sed -n 's/^postgresql-\([0-9][0-9]*\.[0-9.]*[0-9]\)\.tar\..*/\1/p; s/^postgresql-[0-9]*_\([0-9][0-9]*\.[0-9.]*[0-9]\)\.orig\.tar\..*/\1/p'
  fi
}
specific_var=PG_BACKUP_PG_SOURCE_$major
if [ -n "${!specific_var:-}" ]; then
  given=${!specific_var}; given_var=$specific_var
  [ -e "$given" ] || unavailable "$given_var=$given does not exist"
elif [ -n "${PG_BACKUP_PG_SOURCE:-}" ]; then
  [ -e "$PG_BACKUP_PG_SOURCE" ] || unavailable "PG_BACKUP_PG_SOURCE=$PG_BACKUP_PG_SOURCE does not exist"
  case "$(source_version "$PG_BACKUP_PG_SOURCE")" in
    "$major".*) given=$PG_BACKUP_PG_SOURCE; given_var=PG_BACKUP_PG_SOURCE;;
    *) log "PG_BACKUP_PG_SOURCE=$PG_BACKUP_PG_SOURCE is not PostgreSQL $major: not used for $major";;
  esac
fi

if [ $mode = available ]; then
  if [ -n "$given" ]; then
    v=$(source_version "$given")
    case "$v" in
      "$major".*|"") ;;   # a tarball named otherwise is checked when unpacked
      *) unavailable "$given_var=$given is PostgreSQL '$v', not $major";;
    esac
    echo "buildable: $given"; exit 0
  fi
  [ -f "$tree/.unpacked" ] && { echo "buildable: unpacked source $(cat "$tree/.unpacked") in $tree"; exit 0; }
  [ "$(id -u)" = 0 ] || unavailable "no source here, and downloading one needs root (make setup as root)"
  # No build lock (a build may hold it for minutes); apt-get update has its own (pg-source.sh).
  mkdir -p "$cache"
  conf=$(pg_apt_private "$cache" "$suite" $suites)
  uri=$(pg_source_uri "$conf" "$pkg" 2>/dev/null) && [ -n "$uri" ] || unavailable "the Debian archive lists no source package $pkg ($suites)"
  # The archive may list a version whose files it does not serve (17 here): ask for the tarball.
  code=$(curl -sI -o /dev/null -w '%{http_code}' --max-time 20 "$uri" || true)
  [ "$code" = 200 ] || unavailable "the Debian archive lists $pkg but does not serve $(basename "$uri") (HTTP ${code:-no answer})"
  echo "buildable: $uri"; exit 0
fi

mkdir -p "$cache"
chmod a+rx "$cache"
exec 9>"$cache/.lock-pg-$major"
flock 9
if complete; then print_result; exit 0; fi

# A complete build of another recipe: rebuilt from scratch (the source is kept).
if [ -f "$prefix/.complete" ] || [ -f "$tree/.complete" ]; then
  log "the build in $prefix was made with another recipe ('$(recipe_of "$prefix/.complete")'): rebuilding it with '$recipe'"
  rm -f "$prefix/.complete" "$tree/.complete"
fi

# --- the source: Debian's source package through a private apt configuration -----------------
if [ ! -f "$tree/.unpacked" ]; then
  rm -rf "$tree" "$prefix"
  src=$given
  dl=
  if [ -z "$src" ]; then
    dl=$(mktemp -d "$cache/.download-$major.XXXXXX")
    conf=$(pg_apt_private "$cache" "$suite" $suites)
    log "downloading the source package $pkg ($suites, private apt configuration $(dirname "$conf"))"
    if ! src=$(pg_download_source "$conf" "$pkg" "$dl" 2>"$dl/why"); then
      why=$(cat "$dl/why"); rm -rf "$dl"
      unavailable "$why"
    fi
  fi
  mkdir -p "$tree"
  log "unpacking $src"
  if [ -d "$src" ]; then
    cp -a "$src/." "$tree/" || { log "could not copy $src"; rm -rf "$tree"; exit 1; }
  else
    tar -xaf "$src" -C "$tree" --strip-components=1 2>"$cache/.unpack-$major.err" \
      || { log "could not unpack $src: $(head -1 "$cache/.unpack-$major.err")"; rm -rf "$tree" "$cache/.unpack-$major.err"; exit 1; }
    rm -f "$cache/.unpack-$major.err"
  fi
  [ -n "$dl" ] && rm -rf "$dl"
  version=$(sed -n "s/^PACKAGE_VERSION='\(.*\)'/\1/p" "$tree/configure")
  case "$version" in
    "$major".*) ;;
    *) log "the source is PostgreSQL '$version', not $major"; rm -rf "$tree"; exit 1;;
  esac
  echo "$version" > "$tree/.unpacked"
fi
version=$(cat "$tree/.unpacked")

# Bison and flex: from 17 on the tarballs no longer carry the generated parsers.
for tool in bison flex perl pkg-config make cc; do
  command -v "$tool" >/dev/null || { log "missing $tool (run make setup as root)"; exit 1; }
done

run() {  # run LOGFILE COMMAND...: at the lowest priority; on failure the log's tail
  local logf=$1; shift
  nice -n 19 "$@" >>"$tree/$logf" 2>&1 || { log "failed: $* (see $tree/$logf)"; tail -30 "$tree/$logf" >&2; exit 1; }
}

start=$(date +%s)
cd "$tree"
if [ ! -f .configured ] || [ "$(cat .configured)" != "$recipe" ]; then
  if [ -f GNUmakefile ]; then
    log "cleaning the tree configured with another recipe"
    run make.log make -s distclean
  fi
  rm -rf "$prefix"
  log "configure $version --prefix=$prefix $flags"
  : > configure.log
  # shellcheck disable=SC2086
  run configure.log ./configure --prefix="$prefix" $flags
  echo "$recipe" > .configured
fi
log "building $version (server, contrib, pg_regress and regress.so; several minutes on 2 cores)"
m=(make -s "rpathdir=$rpath_make:$prefix/lib")
# Generated headers first and alone, then the rest in parallel: make's top level orders the
# rest, and it is what a parallel make of a subdirectory alone races on.
run make.log "${m[@]}" -C src/backend generated-headers
run make.log "${m[@]}" -j2
run make.log "${m[@]}" -j2 -C contrib
run make.log "${m[@]}" -j2 -C src/test/regress
rm -f "$prefix/.complete"
run install.log "${m[@]}" install
run install.log "${m[@]}" -C contrib install
# The modules a test creates must be there (a flag silently ignored would lose them).
for ext in pgcrypto uuid-ossp btree_gist xml2 sslinfo; do
  [ -f "$("$prefix/bin/pg_config" --sharedir)/extension/$ext.control" ] || { log "contrib module $ext was not built"; exit 1; }
done
# The test user installs pg_backup here (cargo pgrx install), as into the system's 15.
chmod -R a+rX "$tree" "$prefix"
chmod a+rwx "$("$prefix/bin/pg_config" --pkglibdir)" "$("$prefix/bin/pg_config" --sharedir)/extension"
"$prefix/bin/pg_config" --version | grep -q "^PostgreSQL $major\." || { log "installed pg_config is not $major"; exit 1; }
printf '%s\n%s\n' "$version" "$recipe" > "$tree/.complete"
printf '%s\n%s\n' "$version" "$recipe" > "$prefix/.complete"
log "PostgreSQL $version built in $(( $(date +%s) - start )) s"
print_result
