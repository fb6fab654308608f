# pg_backup developer commands. Everything that runs PostgreSQL goes through
# scripts/as-test-user.sh, because PostgreSQL refuses to run as root (CI runs as root).
# PG: the PostgreSQL major version (15, 17 or 18). 15 is the system's (Debian 12); 17 and 18 are
# built once from Debian's source packages into a cache outside the checkout by
# scripts/pg-build.sh (`make setup PG=17` builds when missing) and PG_CONFIG is theirs.
PG ?= 15
ifeq ($(PG),15)
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
else
PG_CONFIG := $(shell bash scripts/pg-build.sh --path $(PG))
endif
AS_TEST_USER := bash scripts/as-test-user.sh
export PG PG_CONFIG

.PHONY: setup install test test-cross-version unit-and-pgrx-tests e2e regress-build test-fidelity demo bench fmt lint pg-config pg-build

setup:
	bash scripts/setup.sh

# The pg_config of PostgreSQL $(PG), built first when missing (its log on stderr).
pg-config:
	@if [ "$(PG)" = 15 ]; then echo "$(PG_CONFIG)"; else bash scripts/pg-build.sh $(PG); fi

# PostgreSQL $(PG) built (nothing for 15, the system's; nothing when already built).
pg-build:
	bash scripts/pg-build.sh $(PG) >/dev/null

install: setup
	$(AS_TEST_USER) cargo pgrx install --pg-config $(PG_CONFIG)

install-release: setup
	$(AS_TEST_USER) cargo pgrx install --release --pg-config $(PG_CONFIG)

# Every test: plain Rust unit tests and #[pg_test]s (cargo pgrx test), then the end-to-end
# tests in tests/ against a server they start with shared_preload_libraries = 'pg_backup'
# (fidelity and regression: round trips judged against pg_dump's, see tests/common/mod.rs;
# reliability: crashes, full disks, cancels, odd data and sessions). These are targets of their
# own, which cargo pgrx test does not run. The disk-full test needs a small file system, which
# only root can mount (scripts/small-fs.sh).
E2E_TESTS := --test e2e --test restore_safety --test storage --test fidelity --test regression --test reliability
test: setup regress-build
	python3 scripts/import-graph.py src
	$(AS_TEST_USER) cargo pgrx test pg15
	$(AS_TEST_USER) cargo pgrx install --pg-config $(PG_CONFIG)
	small_fs=$$(bash scripts/small-fs.sh mount); \
	$(AS_TEST_USER) env PG_BACKUP_E2E=1 PG_BACKUP_SMALL_FS="$$small_fs" cargo test $(E2E_TESTS) -- --test-threads=1; \
	status=$$?; bash scripts/small-fs.sh umount; exit $$status
	$(AS_TEST_USER) bash scripts/upgrade-prep.sh
	$(AS_TEST_USER) env PG_BACKUP_UPGRADE=$(CURDIR)/target/upgrade cargo test --test upgrade -- --ignored --test-threads=2

# Cross-version restore (issue 19, tests/cross_version.rs): PostgreSQL 15's regression database
# backed up by pg_backup on 15 and restored by pg_backup on 18, judged against 18's pg_dump |
# pg_restore of the 15 server; an 18 archive refused on 15. Installs pg_backup into both
# (18 built first when missing). PG_CONFIG_15 / PG_CONFIG_18 override the installations.
ifeq ($(PG),15)
PG_CONFIG_15 ?= $(PG_CONFIG)
else
PG_CONFIG_15 ?= /usr/lib/postgresql/15/bin/pg_config
endif
test-cross-version: setup regress-build
	bash scripts/pg-build.sh 18 >/dev/null
	$(AS_TEST_USER) cargo pgrx install --pg-config $(PG_CONFIG_15)
	pg18=$${PG_CONFIG_18:-$$(bash scripts/pg-build.sh --path 18)}; \
	$(AS_TEST_USER) cargo pgrx install --pg-config $$pg18 && \
	$(AS_TEST_USER) env PG_BACKUP_E2E=1 PG_CONFIG=$(PG_CONFIG_15) PG_CONFIG_18=$$pg18 \
		PG_BACKUP_REGRESS_BUILD_18=$$(bash scripts/pg-build.sh --regress-dir 18) \
		cargo test --test cross_version -- --test-threads=1 --nocapture

# pg_regress and regress.so from the PostgreSQL 15 source package (apt), for the regression
# database round trip; built once into a cache outside the checkout.
regress-build:
	bash scripts/regress-build.sh >/dev/null

# The fidelity tests only, the ones still marked #[ignore] included, with their reports
# (tests/regression.rs writes target/tmp/regression-report.txt). TESTS=name filters.
test-fidelity: setup regress-build
	$(AS_TEST_USER) cargo pgrx install --pg-config $(PG_CONFIG)
	$(AS_TEST_USER) env PG_BACKUP_E2E=1 cargo test --test fidelity --test regression -- \
		--test-threads=1 --include-ignored --nocapture $(TESTS)

demo: install-release
	$(AS_TEST_USER) bash scripts/demo.sh

bench: install-release regress-build
	$(AS_TEST_USER) bash scripts/bench.sh

fmt:
	cargo fmt --all

# --all-targets leaves out the test = false targets (and ignores --test next to it): the
# end-to-end ones are linted by name.
lint:
	$(AS_TEST_USER) cargo clippy --all-targets -- -D warnings
	$(AS_TEST_USER) cargo clippy $(E2E_TESTS) --test upgrade --test cross_version -- -D warnings
	python3 scripts/import-graph.py src
