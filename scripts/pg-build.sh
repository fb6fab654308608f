#!/usr/bin/env bash
# PostgreSQL of a given major version for building and testing pg_backup; prints its pg_config.
#   scripts/pg-build.sh 15        the system's (Debian 12 ships 15: nothing is built)
#   scripts/pg-build.sh 17|18     built once from Debian's source package into a cache outside the
#                                 checkout ($cache/pg-MAJOR), then reused
#   scripts/pg-build.sh --regress-dir 17|18   prints the build tree instead (pg_regress,
#                                 src/test/regress/regress.so and the regression tests' files)
#   scripts/pg-build.sh --path 15|17|18   prints where that pg_config is (or will be), builds nothing
#
# Debian 12 has no binaries of 17 or 18. The Debian archive has their source packages: 17 in
# suite trixie, 18 in suite sid. They are downloaded with a PRIVATE apt configuration
# ($cache/apt-SUITE: its own sources list with deb-src lines only, its own lists, state and cache
# directories): the system's sources are never read nor changed, and since that list has no
# binary (deb) line, no trixie or sid binary package can ever be installed through it (one would
# replace the system's libc).
#
# Build: ./configure --prefix=$cache/pg-MAJOR --without-icu --without-readline --with-zstd (zlib
# and zstd from Debian 12's -dev packages, which `make setup` installs, so that pg_dump -Fc is
# compared fairly), then make + make install of the server, contrib and src/test/regress. Always
# `nice -n 19` and -j2 (the 2 cores are shared). Deterministic: the generated headers
# (utils/errcodes.h, ...) are made first and serially, so no parallel make races on them.
# Idempotent: $cache/pg-MAJOR/.complete is written last; without it, a re-run resumes the build
# (make rebuilds only what is missing; a tree whose configure did not finish is configured again;
# an unpacked tree with no .unpacked marker is unpacked again), and a half-done build is never
# taken as complete. Several checkouts may call it at once: one builds, the others wait.
#
# When the Debian archive no longer serves a source (its pool keeps only current versions),
# PG_BACKUP_PG_SOURCE=/path/to/postgresql-X.Y.tar.bz2 (or .tar.gz, or an unpacked tree) builds
# from that instead.
set -euo pipefail

regress_dir=0
path_only=0
case "${1:-}" in
  --regress-dir) regress_dir=1; shift;;
  --path) path_only=1; shift;;
esac
major=${1:?usage: $0 [--regress-dir|--path] 15|17|18}

log() { echo "pg-build($major): $*" >&2; }

case "$major" in
  15)
    if [ $regress_dir = 1 ]; then
      # 15's pg_regress comes from scripts/regress-build.sh (the system's server, its source).
      exec bash "$(dirname "$0")/regress-build.sh"
    fi
    echo "${PG_CONFIG_15:-/usr/lib/postgresql/15/bin/pg_config}"; exit 0;;
  17) suites="trixie trixie-updates trixie-security";;
  18) suites="sid";;
  *) log "unsupported major version (15, 17 or 18)"; exit 2;;
esac
suite=${suites%% *}
pkg=postgresql-$major

if [ -n "${PG_BACKUP_REGRESS_CACHE:-}" ]; then
  cache=$PG_BACKUP_REGRESS_CACHE
elif [ "$(id -u)" = 0 ]; then
  cache=/var/cache/pg_backup
else
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/pg_backup
fi
prefix=$cache/pg-$major
tree=$cache/pg-$major-build

print_result() {
  if [ $regress_dir = 1 ]; then echo "$tree"; else echo "$prefix/bin/pg_config"; fi
}

[ $path_only = 1 ] && { echo "$prefix/bin/pg_config"; exit 0; }

# Fast path, no lock: a complete build.
if [ -f "$prefix/.complete" ] && [ -f "$tree/.complete" ]; then print_result; exit 0; fi

mkdir -p "$cache"
chmod a+rx "$cache"
exec 9>"$cache/.lock-pg-$major"
flock 9
if [ -f "$prefix/.complete" ] && [ -f "$tree/.complete" ]; then print_result; exit 0; fi

# --- the source: Debian's source package through a private apt configuration -----------------
apt_private() {
  local d=$cache/apt-$suite
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/sources.list.d" "$d/preferences.d"
  [ -f "$d/status" ] || : > "$d/status"
  {
    for s in $suites; do
      case "$s" in
        *-security) echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security $s main";;
        *) echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $s main";;
      esac
    done
  } > "$d/sources.list"
  # Every directory apt reads or writes is this one's; the dpkg status is an empty file (nothing
  # of the system's is looked at, nothing can be installed: there is no binary source at all).
  cat > "$d/apt.conf" <<EOF
Dir::Etc::SourceList "$d/sources.list";
Dir::Etc::SourceParts "$d/sources.list.d";
Dir::Etc::Preferences "$d/preferences";
Dir::Etc::PreferencesParts "$d/preferences.d";
Dir::State "$d";
Dir::State::Lists "$d/lists";
Dir::State::status "$d/status";
Dir::Cache "$d/cache";
Dir::Cache::archives "$d/cache/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Sandbox::User "root";
EOF
  echo "$d/apt.conf"
}

# Prints the path of a source tarball (downloaded into $1), or fails.
download_source() {
  local dl=$1 conf versions v upstream
  conf=$(apt_private)
  if [ "$(id -u)" != 0 ]; then log "downloading a source package needs root (run make setup as root once)"; return 1; fi
  log "apt-get update (private configuration $(dirname "$conf"), deb-src only)"
  APT_CONFIG=$conf apt-get update -qq >/dev/null 2>"$dl/update.err" || { cat "$dl/update.err" >&2; return 1; }
  versions=$( { APT_CONFIG=$conf apt-cache showsrc "$pkg" 2>/dev/null || true; } | awk '/^Version:/ {print $2}' | sort -rV | uniq)
  [ -n "$versions" ] || { log "suite $suite lists no source package $pkg"; return 1; }
  # The newest version apt lists that downloads (the archive's pool may lack one it lists).
  for v in $versions; do
    upstream=${v%%-*}
    log "downloading source package $pkg=$v"
    if (cd "$dl" && APT_CONFIG=$conf apt-get source --download-only -qq "$pkg=$v" >/dev/null 2>"$dl/apt.err"); then
      echo "$dl/${pkg}_${upstream}.orig.tar.bz2"; return 0
    fi
    log "could not download $pkg=$v: $(grep -m1 '^E:' "$dl/apt.err" || tail -1 "$dl/apt.err")"
  done
  log "no version of $pkg could be downloaded; set PG_BACKUP_PG_SOURCE to a PostgreSQL $major source tarball"
  return 1
}

if [ ! -f "$tree/.unpacked" ]; then
  rm -rf "$tree" "$prefix"
  mkdir -p "$tree"
  src=${PG_BACKUP_PG_SOURCE:-}
  dl=
  if [ -z "$src" ]; then
    dl=$(mktemp -d "$cache/.download-$major.XXXXXX")
    src=$(download_source "$dl") || { rm -rf "$dl" "$tree"; exit 1; }
  fi
  log "unpacking $src"
  if [ -d "$src" ]; then
    cp -a "$src/." "$tree/"
  else
    tar -xaf "$src" -C "$tree" --strip-components=1
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
for tool in bison flex perl pkg-config; do
  command -v "$tool" >/dev/null || { log "missing $tool (run make setup as root)"; exit 1; }
done

run() {  # run LOGFILE COMMAND...: at the lowest priority; on failure the log's tail
  local logf=$1; shift
  nice -n 19 "$@" >>"$tree/$logf" 2>&1 || { log "failed: $* (see $tree/$logf)"; tail -30 "$tree/$logf" >&2; exit 1; }
}

start=$(date +%s)
cd "$tree"
if [ ! -f .configured ]; then
  log "configure $version --prefix=$prefix"
  : > configure.log
  run configure.log ./configure --prefix="$prefix" --without-icu --without-readline --with-zlib --with-zstd
  touch .configured
fi
log "building $version (server, contrib, pg_regress and regress.so; several minutes on 2 cores)"
# Generated headers first and alone, then the rest in parallel: make's top level orders the
# rest, and it is what a parallel make of a subdirectory alone races on.
run make.log make -s -C src/backend generated-headers
run make.log make -s -j2
run make.log make -s -j2 -C contrib
run make.log make -s -j2 -C src/test/regress
rm -f "$prefix/.complete"
run install.log make -s install
run install.log make -s -C contrib install
# The test user installs pg_backup here (cargo pgrx install), as into the system's 15.
chmod -R a+rX "$tree" "$prefix"
chmod a+rwx "$("$prefix/bin/pg_config" --pkglibdir)" "$("$prefix/bin/pg_config" --sharedir)/extension"
"$prefix/bin/pg_config" --version | grep -q "^PostgreSQL $major\." || { log "installed pg_config is not $major"; exit 1; }
echo "$version" > "$prefix/.complete"
echo "$version" > "$tree/.complete"
log "PostgreSQL $version built in $(( $(date +%s) - start )) s"
print_result
