# Sourced by demo.sh and bench.sh: a PostgreSQL 15 server owned by the script, in $PGDATA_DIR,
# listening on a Unix socket in $SOCK_DIR and port $PGPORT, with pg_backup preloaded.
BIN=$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)
export PATH="$BIN:$PATH"
export PGHOST="$SOCK_DIR" PGPORT
start_server() {
  if [ -f "$PGDATA_DIR/postmaster.pid" ]; then pg_ctl -D "$PGDATA_DIR" -m fast stop >/dev/null 2>&1 || true; fi
  rm -rf "$PGDATA_DIR" "$SOCK_DIR"; mkdir -p "$SOCK_DIR"
  initdb -A trust -E UTF8 --no-sync -D "$PGDATA_DIR" >/dev/null
  cat >> "$PGDATA_DIR/postgresql.conf" <<CONF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$SOCK_DIR'
shared_preload_libraries = 'pg_backup'
max_worker_processes = 16
${EXTRA_CONF:-}
CONF
  pg_ctl -D "$PGDATA_DIR" -l "$PGDATA_DIR/../server.log" -w start >/dev/null
}
stop_server() { pg_ctl -D "$PGDATA_DIR" -m fast stop >/dev/null 2>&1 || true; }
