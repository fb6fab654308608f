# Sourced (not run) by scripts/pg-build.sh and scripts/regress-build.sh: where PostgreSQL builds
# are cached, and how a PostgreSQL source package is fetched from the Debian archive.
#
#   pg_cache_dir                     prints the cache: $PG_BACKUP_REGRESS_CACHE, else
#                                    /var/cache/pg_backup as root, else ~/.cache/pg_backup
#   pg_apt_private CACHE NAME SUITE...   writes a PRIVATE apt configuration CACHE/apt-NAME (its
#                                    own sources list with deb-src lines only for SUITEs, its own
#                                    lists, state, status and cache directories) and prints the
#                                    path of its apt.conf (for APT_CONFIG)
#   pg_download_source CONF PKG DIR [PREFERRED]   apt-get update through CONF, then downloads the
#                                    source package PKG into DIR: version PREFERRED first when
#                                    the suites list it, else the newest listed version whose
#                                    files download. Prints the .orig tarball's path; on failure
#                                    one line on stderr and status 1. Needs root.
#   pg_source_uri CONF PKG           prints the URI of PKG's newest .orig tarball the suites list
#                                    (no download; the index is updated when missing or a day old)
#
# The private configuration never reads or writes the system's sources, lists or dpkg status,
# and since its list has no binary (deb) line, no package of another suite (trixie, sid: their
# libc would replace the system's) can be installed through it.

pg_cache_dir() {
  if [ -n "${PG_BACKUP_REGRESS_CACHE:-}" ]; then
    echo "$PG_BACKUP_REGRESS_CACHE"
  elif [ "$(id -u)" = 0 ]; then
    echo /var/cache/pg_backup
  else
    echo "${XDG_CACHE_HOME:-$HOME/.cache}/pg_backup"
  fi
}

pg_apt_private() {
  local cache=$1 name=$2 d s
  shift 2
  d=$cache/apt-$name
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/sources.list.d" "$d/preferences.d"
  [ -f "$d/status" ] || : > "$d/status"
  for s in "$@"; do
    case "$s" in
      *-security) echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security $s main";;
      *) echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $s main";;
    esac
  done > "$d/sources.list.new"
  mv "$d/sources.list.new" "$d/sources.list"
  cat > "$d/apt.conf.new" <<EOF
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
  mv "$d/apt.conf.new" "$d/apt.conf"
  echo "$d/apt.conf"
}

# The versions of source package $2 the configuration $1 lists, newest first.
pg_source_versions() {
  { APT_CONFIG=$1 apt-cache showsrc "$2" 2>/dev/null || true; } | awk '/^Version:/ {print $2}' | sort -rV | uniq
}

pg_apt_update() {
  local conf=$1 err
  # One update at a time per configuration (a build and an --available check may overlap).
  err=$(flock "$(dirname "$conf")/lists" env APT_CONFIG="$conf" apt-get update -qq 2>&1 >/dev/null) \
    || { echo "apt-get update ($(dirname "$conf")) failed: $(echo "$err" | grep -m1 '^E:' || echo "$err" | tail -1)" >&2; return 1; }
}

pg_download_source() {
  local conf=$1 pkg=$2 dl=$3 preferred=${4:-} versions v upstream err tried=
  if [ "$(id -u)" != 0 ]; then echo "downloading the source package $pkg needs root (run make setup as root once)" >&2; return 1; fi
  pg_apt_update "$conf" || return 1
  versions=$(pg_source_versions "$conf" "$pkg")
  [ -n "$versions" ] || { echo "the Debian archive lists no source package $pkg ($(awk '{print $4}' "$(dirname "$conf")/sources.list" | xargs))" >&2; return 1; }
  if [ -n "$preferred" ] && echo "$versions" | grep -qxF "$preferred"; then
    versions=$( { echo "$preferred"; echo "$versions"; } | awk '!seen[$0]++')
  fi
  chmod 0777 "$dl"   # in case apt downloads as user _apt
  for v in $versions; do
    upstream=${v%%-*}
    if (cd "$dl" && APT_CONFIG=$conf apt-get source --download-only -qq "$pkg=$v" >/dev/null 2>"$dl/apt.err"); then
      echo "$dl/${pkg}_${upstream}.orig.tar.bz2"; return 0
    fi
    err=$(grep -m1 '^E:' "$dl/apt.err" || tail -1 "$dl/apt.err")
    tried="$tried $v"
  done
  echo "no version of $pkg could be downloaded (tried$tried; last: $err)" >&2
  return 1
}

pg_source_uri() {
  local conf=$1 pkg=$2 v
  # The index as it is when it exists and is less than a day old (a quick answer), else updated.
  if [ -z "$(find "$(dirname "$conf")/lists" -maxdepth 1 -name '*Sources*' -mmin -1440 2>/dev/null)" ]; then
    pg_apt_update "$conf" || return 1
  fi
  v=$(pg_source_versions "$conf" "$pkg" | head -1)
  [ -n "$v" ] || return 1
  APT_CONFIG=$conf apt-get source --print-uris -qq "$pkg=$v" 2>/dev/null | tr -d "'" | awk '$1 ~ /\.orig\.tar/ {print $1; exit}'
}
