# pg_backup developer commands. Everything that runs PostgreSQL goes through
# scripts/as-test-user.sh, because PostgreSQL refuses to run as root (CI runs as root).
# PG: the PostgreSQL major version (15, 17 or 18). 15 is the system's (Debian 12); 17 and 18 are
# built once from Debian's source packages into a cache outside the checkout by
# scripts/pg-build.sh (`make setup PG=17` builds when missing) and PG_CONFIG is theirs.
PG ?= 15
# The versions `make test` tests when no PG is given (`make test PG=18` tests 18 only). A version
# whose PostgreSQL cannot be built here (17: its source is not served to these machines) is
# reported as NOT tested, loudly, and does not fail the run.
PG_VERSIONS ?= 15 18 17
TEST_VERSIONS := $(if $(filter file,$(origin PG)),$(PG_VERSIONS),$(PG))
ifeq ($(PG),15)
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
else
PG_CONFIG := $(shell bash scripts/pg-build.sh --path $(PG))
endif
AS_TEST_USER := bash scripts/as-test-user.sh
# Builds for 17 and 18 go to target/pg$(PG) (15's stay in target) unless CARGO_TARGET_DIR is set.
PG_TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target/pg$(PG))
export PG PG_CONFIG
# `cargo pgrx test` installs into the shared PostgreSQL and runs its test server on a fixed port:
# one at a time on a machine, whichever checkout runs it.
PGRX_TEST_LOCK ?= /tmp/pgrx-system.lock
# cargo's environment for PostgreSQL $(PG): nothing for 15.
CARGO_ENV := $(if $(filter 15,$(PG)),, env CARGO_TARGET_DIR=$(PG_TARGET_DIR))

.PHONY: setup install test test-version test-upgrade test-cross-version unit-and-pgrx-tests e2e regress-build test-fidelity demo bench bench-storage fmt lint pg-config pg-build

setup:
	bash scripts/setup.sh

# The pg_config of PostgreSQL $(PG), built first when missing (its log on stderr).
pg-config:
	@if [ "$(PG)" = 15 ]; then echo "$(PG_CONFIG)"; else bash scripts/pg-build.sh $(PG); fi

# PostgreSQL $(PG) built (nothing for 15, the system's; nothing when already built).
pg-build:
	bash scripts/pg-build.sh $(PG) >/dev/null

install: setup
	$(AS_TEST_USER)$(CARGO_ENV) cargo pgrx install --pg-config $(PG_CONFIG)

install-release: setup
	$(AS_TEST_USER)$(CARGO_ENV) cargo pgrx install --release --pg-config $(PG_CONFIG)

# Every test, for every version of TEST_VERSIONS (one after the other; a failing version does not
# stop the next, the run fails at the end). Per version (target test-version, PG=NN):
# - 15 (the system's): plain Rust unit tests and #[pg_test]s (cargo pgrx test), then the
#   end-to-end tests in tests/ against a server they start with shared_preload_libraries =
#   'pg_backup' (fidelity and regression: round trips judged against pg_dump's, see
#   tests/common/mod.rs; reliability: crashes, full disks, cancels, odd data and sessions). These
#   are targets of their own, which cargo pgrx test does not run. The disk-full test needs a small
#   file system, which only root can mount (scripts/small-fs.sh). Then the upgrade tests.
# - 17 and 18 (built from source by scripts/pg-build.sh when missing, which is part of the run):
#   the #[pg_test]s, the end-to-end suite, restore safety, the round trip of that version's own
#   regression database, judged against that version's pg_dump | pg_restore, fidelity's test of
#   that version only (the others are 15's fixtures: PostGIS, unit, pg_cron are 15's packages),
#   the extension upgrade through pg_upgrade from 15 (test-upgrade) and, on 18, the
#   cross-version restore of 15's archives (test-cross-version); built in $(PG_TARGET_DIR).
E2E_TESTS := --test e2e --test alerts --test restore_safety --test storage --test providers --test fidelity --test regression --test reliability --test monitoring --test drills --test ranges
test:
	env -u PG_CONFIG PG=15 bash scripts/setup.sh
	python3 scripts/import-graph.py src
	@failed=; for v in $(TEST_VERSIONS); do \
	  if [ "$$v" != 15 ]; then \
	    err=$$(mktemp); status=0; bash scripts/pg-build.sh $$v >/dev/null 2>"$$err" || status=$$?; \
	    if [ $$status != 0 ] && { [ $$status = 3 ] || grep -q PG_BACKUP_PG_SOURCE "$$err"; }; then \
	      cat "$$err" >&2; rm -f "$$err"; \
	      echo "######## PostgreSQL $$v: NOT tested: its source is not available (set PG_BACKUP_PG_SOURCE) ########"; \
	      continue; \
	    fi; \
	    cat "$$err" >&2; rm -f "$$err"; \
	    [ $$status = 0 ] || { echo "######## PostgreSQL $$v: FAILED: it could not be built ########"; failed="$$failed $$v"; continue; }; \
	  fi; \
	  echo "######## PostgreSQL $$v: testing ########"; start=$$(date +%s); \
	  if $(MAKE) --no-print-directory test-version PG=$$v; then \
	    echo "######## PostgreSQL $$v: passed ($$(( $$(date +%s) - start )) s) ########"; \
	  else \
	    echo "######## PostgreSQL $$v: FAILED ($$(( $$(date +%s) - start )) s) ########"; failed="$$failed $$v"; \
	  fi; \
	done; \
	[ -z "$$failed" ] || { echo "make test: FAILED on PostgreSQL$$failed"; exit 1; }

ifeq ($(PG),15)
test-version: setup regress-build
	flock $(PGRX_TEST_LOCK) $(AS_TEST_USER) cargo pgrx test pg15
	$(AS_TEST_USER) cargo pgrx install --pg-config $(PG_CONFIG)
	small_fs=$$(bash scripts/small-fs.sh mount); \
	$(AS_TEST_USER) env PG_BACKUP_E2E=1 PG_BACKUP_SMALL_FS="$$small_fs" cargo test $(E2E_TESTS) -- --test-threads=1; \
	status=$$?; bash scripts/small-fs.sh umount; exit $$status
	$(AS_TEST_USER) bash scripts/upgrade-prep.sh
	$(AS_TEST_USER) env PG_BACKUP_UPGRADE=$(CURDIR)/target/upgrade cargo test --test upgrade -- --ignored --test-threads=2
else
# setup builds PostgreSQL $(PG) when missing and adds it to pgtest's ~/.pgrx/config.toml.
test-version: setup
	flock $(PGRX_TEST_LOCK) $(AS_TEST_USER)$(CARGO_ENV) cargo pgrx test pg$(PG)
	$(AS_TEST_USER)$(CARGO_ENV) cargo pgrx install --pg-config $(PG_CONFIG)
	$(AS_TEST_USER)$(CARGO_ENV) PG_CONFIG=$(PG_CONFIG) PG_BACKUP_E2E=1 \
		PG_BACKUP_REGRESS_BUILD=$$(bash scripts/pg-build.sh --regress-dir $(PG)) \
		cargo test --no-default-features --features pg$(PG) \
		--test e2e --test alerts --test restore_safety --test regression --test monitoring --test drills -- --test-threads=1
	$(AS_TEST_USER)$(CARGO_ENV) PG_CONFIG=$(PG_CONFIG) PG_BACKUP_E2E=1 \
		cargo test --no-default-features --features pg$(PG) --test fidelity -- --test-threads=1 postgresql_$(PG)
	$(MAKE) --no-print-directory test-upgrade PG=$(PG)
	[ "$(PG)" != 18 ] || $(MAKE) --no-print-directory test-cross-version PG=$(PG)
endif

# The extension's upgrade on PostgreSQL $(PG). 15: the released 0.1.0 and 0.2.0 packages with
# the new one installed over them (tests/upgrade.rs, what `make test` runs). 17 and 18, for
# which no earlier release was built: a 15 cluster with 0.2.0 pg_upgrade'd to $(PG) with this
# build, then ALTER EXTENSION UPDATE (tests/pg_upgrade.rs; upgrade-prep.sh --releases-only builds
# the 15 releases).
PG15_CONFIG := /usr/lib/postgresql/15/bin/pg_config
test-upgrade: setup
ifeq ($(PG),15)
	$(AS_TEST_USER) cargo pgrx install --pg-config $(PG_CONFIG)
	$(AS_TEST_USER) bash scripts/upgrade-prep.sh
	$(AS_TEST_USER) env PG_BACKUP_UPGRADE=$(CURDIR)/target/upgrade cargo test --test upgrade -- --ignored --test-threads=2
else
	$(AS_TEST_USER) env CARGO_TARGET_DIR=$(PG_TARGET_DIR) cargo pgrx install --pg-config $(PG_CONFIG)
	$(AS_TEST_USER) env PG_CONFIG=$(PG15_CONFIG) bash scripts/upgrade-prep.sh --releases-only
	$(AS_TEST_USER) env CARGO_TARGET_DIR=$(PG_TARGET_DIR) PG_CONFIG=$(PG_CONFIG) PG_BACKUP_UPGRADE=$(CURDIR)/target/upgrade \
		cargo test --no-default-features --features pg$(PG) --test pg_upgrade -- --ignored
endif

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
	$(AS_TEST_USER) env CARGO_TARGET_DIR=$(CURDIR)/target/pg18 cargo pgrx install --pg-config $$pg18 && \
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

# On 17 and 18: the release build in target/pg$(PG), that version's server, pg_dump, pg_restore
# and regression suite (its build tree, scripts/pg-build.sh --regress-dir).
ifeq ($(PG),15)
bench: install-release regress-build
	$(AS_TEST_USER) bash scripts/bench.sh
	$(AS_TEST_USER) bash scripts/bench-storage.sh

# The storage client against 0.2.0's (part of make bench on 15): scripts/bench-storage.sh.
bench-storage: setup
	$(AS_TEST_USER) bash scripts/bench-storage.sh
else
bench: setup
	$(AS_TEST_USER) env CARGO_TARGET_DIR=$(PG_TARGET_DIR) cargo pgrx install --release --pg-config $(PG_CONFIG)
	$(AS_TEST_USER) env PG_CONFIG=$(PG_CONFIG) PG_BACKUP_REGRESS_DIR=$$(bash scripts/pg-build.sh --regress-dir $(PG)) bash scripts/bench.sh
endif

fmt:
	cargo fmt --all

# --all-targets leaves out the test = false targets (and ignores --test next to it): the
# end-to-end ones are linted by name.
lint:
	$(AS_TEST_USER) cargo clippy --all-targets -- -D warnings
	$(AS_TEST_USER) cargo clippy $(E2E_TESTS) --test upgrade --test pg_upgrade --test cross_version -- -D warnings
	python3 scripts/import-graph.py src
