# pg_backup developer commands. Everything that runs PostgreSQL goes through
# scripts/as-test-user.sh, because PostgreSQL refuses to run as root (CI runs as root).
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
AS_TEST_USER := bash scripts/as-test-user.sh
export PG_CONFIG

.PHONY: setup install test unit-and-pgrx-tests e2e demo bench fmt lint

setup:
	bash scripts/setup.sh

install: setup
	$(AS_TEST_USER) cargo pgrx install --pg-config $(PG_CONFIG)

install-release: setup
	$(AS_TEST_USER) cargo pgrx install --release --pg-config $(PG_CONFIG)

# Every test: plain Rust unit tests and #[pg_test]s (cargo pgrx test), then the end-to-end
# tests in tests/ against a server they start with shared_preload_libraries = 'pg_backup'
# (targets of their own: cargo pgrx test does not run them). The disk-full test needs a small
# file system, which only root can mount (scripts/small-fs.sh).
test: setup
	$(AS_TEST_USER) cargo pgrx test pg15
	$(AS_TEST_USER) cargo pgrx install --pg-config $(PG_CONFIG)
	$(AS_TEST_USER) env PG_BACKUP_E2E=1 cargo test --test e2e -- --test-threads=1
	small_fs=$$(bash scripts/small-fs.sh mount); \
	$(AS_TEST_USER) env PG_BACKUP_E2E=1 PG_BACKUP_SMALL_FS="$$small_fs" cargo test --test reliability -- --test-threads=1; \
	status=$$?; bash scripts/small-fs.sh umount; exit $$status

demo: install-release
	$(AS_TEST_USER) bash scripts/demo.sh

bench: install-release
	$(AS_TEST_USER) bash scripts/bench.sh

fmt:
	cargo fmt --all

lint:
	$(AS_TEST_USER) cargo clippy --all-targets -- -D warnings
