#!/usr/bin/env bash
# Run a command as the unprivileged user that may run PostgreSQL. As a non-root user this is
# just the command itself.
set -euo pipefail
TEST_USER=${TEST_USER:-pgtest}
if [ "$(id -u)" != 0 ]; then exec "$@"; fi
cargo_bin=$(dirname "$(command -v cargo)")
exec runuser -u "$TEST_USER" -- env \
  HOME="/home/$TEST_USER" \
  CARGO_HOME="/home/$TEST_USER/.cargo" \
  RUSTUP_HOME="$(rustup show home)" \
  RUSTUP_TOOLCHAIN="$(rustup show active-toolchain | cut -d' ' -f1)" \
  PATH="/home/$TEST_USER/.cargo/bin:$cargo_bin:$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir):/usr/local/bin:/usr/bin:/bin" \
  CI="${CI:-}" PGRX_TEST_SKIP="${PGRX_TEST_SKIP:-}" \
  "$@"
