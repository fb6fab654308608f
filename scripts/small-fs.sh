#!/usr/bin/env bash
# A small file system for the disk-full test (tests/reliability.rs): a 16 MB tmpfs the test
# user may write to, one per test user. `mount` prints its path (nothing when it cannot mount:
# only root can, and the test then reports that it skipped); `umount` removes it.
set -euo pipefail
TEST_USER=${TEST_USER:-pgtest}
dir=/tmp/pg_backup_small_fs.$TEST_USER
case "${1:-mount}" in
  mount)
    mkdir -p "$dir"
    if ! mountpoint -q "$dir"; then
      if [ "$(id -u)" != 0 ]; then
        echo "small-fs: not root, so no tmpfs at $dir: the disk-full test will report SKIPPED" >&2
        exit 0
      fi
      mount -t tmpfs -o size=16m,mode=0700 pg_backup_small_fs "$dir"
    fi
    chown "$TEST_USER:" "$dir"
    echo "$dir"
    ;;
  umount)
    if mountpoint -q "$dir"; then umount "$dir"; fi
    ;;
esac
