//! Upgrades, as a user lives them: a server running a released pg_backup (0.1.0 or 0.2.0, built
//! from the release sources in tests/fixtures/release by scripts/upgrade-prep.sh) gets the new
//! build installed over it, then `ALTER EXTENSION pg_backup UPDATE`. Also: archives written by 0.1.0 (kept in
//! tests/fixtures/archive-0.1.0) verify and restore with the current code.
//!
//! Run by `make test` after scripts/upgrade-prep.sh, with PG_BACKUP_UPGRADE pointing at its
//! output (`cargo test --test upgrade -- --ignored`); a plain `cargo test` lists them as
//! ignored, and without PG_BACKUP_UPGRADE they fail rather than pass unrun.

use std::path::{Path, PathBuf};
use std::time::Duration;

use postgres::Client;

mod support;
use support::*;

/// target/upgrade from scripts/upgrade-prep.sh: `old` (0.1.0), `old-0.2.0` and `new` (this build).
fn installs() -> PathBuf {
    let dir = std::env::var("PG_BACKUP_UPGRADE").expect(
        "PG_BACKUP_UPGRADE is not set: run `make test` (it runs scripts/upgrade-prep.sh first)",
    );
    PathBuf::from(dir)
}

fn bindir(install: &str) -> PathBuf {
    installs().join(install).join("usr/lib/postgresql/15/bin")
}

/// A new cluster with the programs (and so the pg_backup build) of `install`; no database yet.
fn server(install: &str) -> Server {
    Server::builder()
        .inherit_locale()
        .bindir(bindir(install))
        .conf("backup.database = 'app'")
        .without_app()
        .start()
}

/// Rows of the user's tables as text, per table (row security off, ordered).
fn fingerprint(c: &mut Client) -> Vec<(String, String)> {
    let tables: Vec<String> = c
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'backup')
               AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables
        .into_iter()
        .map(|t| {
            let fp: String = one(
                c,
                &format!(
                    "SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {t} x"
                ),
            );
            (t, fp)
        })
        .collect()
}

/// The extension's own objects as pg_dump sees them: in binary-upgrade mode pg_dump writes
/// every member of an extension (tables, views, functions, grants, triggers, comments)
/// instead of just CREATE EXTENSION. OIDs and the dump's boilerplate are dropped.
fn extension_objects(s: &Server, db: &str) -> Vec<String> {
    let dump = run(s.client("pg_dump").args([
        "--schema-only",
        "--binary-upgrade",
        "--exclude-schema=public",
        "-d",
        db,
    ]));
    let mut lines: Vec<String> = dump
        .lines()
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("--")
                && !l.starts_with("SET ")
                && !l.starts_with("\\")
                && !l.contains("binary_upgrade_set_")
                && !l.starts_with("SELECT pg_catalog.set_config")
                // a sequence's position is data, not definition
                && !l.starts_with("SELECT pg_catalog.setval(")
        })
        .map(without_oids)
        .collect();
    // Statement order follows OIDs where pg_dump has no other order; compare as a set of lines
    // with multiplicity.
    lines.sort();
    lines
}

/// OIDs differ between any two databases: every run of 4+ digits inside quotes or braces of
/// binary-upgrade bookkeeping becomes `N`.
fn without_oids(line: &str) -> String {
    if !(line.contains("binary_upgrade") || line.starts_with("WHERE oid = ")) {
        return line.to_string();
    }
    let mut out = String::new();
    let mut digits = String::new();
    for ch in line.chars().chain(std::iter::once('\0')) {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        if digits.len() >= 4 {
            out.push('N');
        } else {
            out.push_str(&digits);
        }
        digits.clear();
        if ch != '\0' {
            out.push(ch);
        }
    }
    out
}

fn diff(a: &[String], b: &[String]) -> String {
    let only_a: Vec<&String> = a.iter().filter(|l| !b.contains(l)).collect();
    let only_b: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
    format!("only after UPDATE: {only_a:#?}\nonly in a fresh CREATE EXTENSION: {only_b:#?}")
}

#[test]
#[ignore = "needs scripts/upgrade-prep.sh; make test runs it with --ignored"]
fn a_0_1_0_database_updates_to_this_release_and_loses_nothing() {
    updates_to_this_release_and_loses_nothing("old", "0.1.0");
}

#[test]
#[ignore = "needs scripts/upgrade-prep.sh; make test runs it with --ignored"]
fn a_0_2_0_database_updates_to_this_release_and_loses_nothing() {
    updates_to_this_release_and_loses_nothing("old-0.2.0", "0.2.0");
}

/// Life on the released `version` (installed as `install` by scripts/upgrade-prep.sh), then the
/// new package installed over it and `ALTER EXTENSION pg_backup UPDATE`.
fn updates_to_this_release_and_loses_nothing(install: &str, version: &str) {
    let mut s = server(install);
    let mut pg = s.connect("postgres");
    pg.batch_execute("CREATE DATABASE app").unwrap();
    let mut c = s.connect("app");
    c.batch_execute("CREATE EXTENSION pg_backup").unwrap();
    assert_eq!(
        one::<String>(
            &mut c,
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_backup'"
        ),
        version,
        "the old installation is {version}"
    );
    c.batch_execute(
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, price numeric);
         INSERT INTO items (name, price) SELECT 'item ' || i, i * 1.5 FROM generate_series(1, 500) i;",
    )
    .unwrap();
    let before = fingerprint(&mut c);

    // Life on the old release: backups in two formats, a failed one, a restore, a dry run, schedules.
    let native = create(&mut c, "label => 'old-native'");
    let sql = create(&mut c, "label => 'old-sql', format => 'sql'");
    c.batch_execute("ALTER SYSTEM SET backup.directory = '/proc/pg_backup_cannot_be_here'")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut c = s.connect("app");
    assert!(c
        .query("SELECT * FROM backup.create(label => 'old-failed')", &[])
        .is_err());
    c.batch_execute("ALTER SYSTEM RESET backup.directory")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut c = s.connect("app");
    c.query(
        "SELECT * FROM backup.restore($1, existing => 'skip', dry_run => true)",
        &[&native],
    )
    .unwrap();
    c.query(
        "SELECT * FROM backup.restore($1, existing => 'truncate', confirm => true)",
        &[&native],
    )
    .unwrap();
    c.query(
        "SELECT * FROM backup.schedule('every-2s', '2 seconds', label => 'scheduled', keep_last => 3)",
        &[],
    )
    .unwrap();
    c.query(
        "SELECT * FROM backup.schedule('nightly', '30 2 * * *', format => 'sql', keep_days => 7, enabled => false)",
        &[],
    )
    .unwrap();
    assert!(
        wait_until(
            &mut c,
            "SELECT count(*) > 0 FROM backup.backups WHERE schedule = 'every-2s' AND status = 'completed'",
            30
        ),
        "the {version} scheduler ran the schedule"
    );
    // Pause it so the row snapshot below stays still; resumed after the update.
    c.batch_execute("UPDATE backup.schedules SET enabled = false WHERE name = 'every-2s'")
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    c.batch_execute("SELECT 1").unwrap();
    assert!(wait_until(
        &mut c,
        "SELECT count(*) = 0 FROM backup.backups WHERE status = 'running'",
        30
    ));
    let snapshot = |c: &mut Client| -> Vec<String> {
        let mut rows: Vec<String> = Vec::new();
        for q in [
            "SELECT format('%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s', id, label, status, kind, format, compression,
                    started_at, finished_at, row_count, manifest_sha256, schedule) FROM backup.backups ORDER BY id",
            "SELECT format('%s|%s|%s|%s|%s|%s', id, backup_id, status, dry_run, started_at, row_count) FROM backup.restores ORDER BY id",
            "SELECT format('%s|%s|%s|%s|%s|%s|%s|%s', name, cron, database, options, keep_last, keep_days, enabled, last_backup_id)
             FROM backup.schedules ORDER BY name",
        ] {
            rows.extend(c.query(q, &[]).unwrap().iter().map(|r| r.get::<_, String>(0)));
        }
        rows
    };
    let history = snapshot(&mut c);
    assert!(history.iter().any(|r| r.contains("|old-failed|failed|")));
    assert!(history.len() >= 7, "{history:#?}");
    drop(c);
    drop(pg);

    // The new package is installed over the old one; the server restarts with the new library.
    s.switch_to(bindir("new"));
    let mut c = s.connect("app");
    // Until the update: every function says what to run, none misbehaves.
    for call in [
        "SELECT * FROM backup.create()",
        "SELECT * FROM backup.verify()",
        "SELECT * FROM backup.restore('x')",
        "SELECT * FROM backup.rescan()",
        "SELECT backup.delete('x')",
        "SELECT * FROM backup.prune(keep_last => 100)",
        "SELECT * FROM backup.schedule('x', '@daily')",
        "SELECT backup.unschedule('x')",
        "SELECT * FROM backup.run_schedule('nightly')",
    ] {
        let e = c.query(call, &[]).unwrap_err();
        assert_eq!(sqlstate(&e), "55000", "{call}: {e:?}");
        assert!(
            hint(&e)
                .unwrap_or_default()
                .contains("ALTER EXTENSION pg_backup UPDATE"),
            "{call}: {e:?}"
        );
    }
    // The scheduler runs nothing against the old catalog, and says why in the log.
    let count_before: i64 = one(&mut c, "SELECT count(*) FROM backup.backups");
    c.batch_execute("UPDATE backup.schedules SET enabled = true WHERE name = 'every-2s'")
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        one::<i64>(&mut c, "SELECT count(*) FROM backup.backups"),
        count_before,
        "no backup runs against the old catalog"
    );
    c.batch_execute("UPDATE backup.schedules SET enabled = false WHERE name = 'every-2s'")
        .unwrap();
    assert!(
        s.log_text().contains("ALTER EXTENSION pg_backup UPDATE"),
        "the scheduler logs why it waits"
    );

    c.batch_execute("ALTER EXTENSION pg_backup UPDATE").unwrap();
    let version: String = one(
        &mut c,
        "SELECT extversion FROM pg_extension WHERE extname = 'pg_backup'",
    );
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let mut c = s.connect("app");

    // Every history row and schedule is there, unchanged.
    let after = snapshot(&mut c);
    assert_eq!(after, history, "history and schedules after the update");
    c.batch_execute("UPDATE backup.schedules SET enabled = true WHERE name = 'every-2s'")
        .unwrap();
    // The schedules keep running.
    let runs_before: i64 = one(
        &mut c,
        "SELECT count(*) FROM backup.backups WHERE schedule = 'every-2s'",
    );
    assert!(
        wait_until(
            &mut c,
            &format!("SELECT count(*) > {runs_before} FROM backup.backups WHERE schedule = 'every-2s' AND status = 'completed'"),
            30
        ),
        "the schedule runs again after the update\n{}",
        s.log_text()
    );
    c.batch_execute("UPDATE backup.schedules SET enabled = false")
        .unwrap();

    // Old backups verify and restore. They carry no signature (0.1.0 wrote none): refused
    // until a superuser accepts unsigned archives of earlier releases explicitly.
    let e = expect_err_with(
        &mut c,
        "SELECT * FROM backup.verify($1)",
        &[&native],
        "28P01",
    );
    assert!(
        hint(&e)
            .unwrap_or_default()
            .contains("backup.allow_unsigned"),
        "{}",
        hint(&e).unwrap_or_default()
    );
    c.batch_execute("SET backup.allow_unsigned = on").unwrap();
    for id in [&native, &sql] {
        let bad: i64 = c
            .query_one(
                "SELECT count(*) FROM backup.verify($1) WHERE status <> 'ok'",
                &[id],
            )
            .unwrap()
            .get(0);
        assert_eq!(bad, 0, "{version} archive {id} verifies");
        c.batch_execute("DROP TABLE items").unwrap();
        let failed: i64 = c
            .query_one(
                "SELECT count(*) FROM backup.restore($1) WHERE status NOT IN ('ok', 'skipped')",
                &[id],
            )
            .unwrap()
            .get(0);
        assert_eq!(failed, 0, "{version} archive {id} restores");
        assert_eq!(fingerprint(&mut c), before, "rows of {id}");
    }
    // New backups work.
    let (id, status): (String, String) = {
        let r = c
            .query_one(
                "SELECT backup_id, status FROM backup.create(label => 'after-update')",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(status, "completed");
    let bad: i64 = c
        .query_one(
            "SELECT count(*) FROM backup.verify($1) WHERE status <> 'ok'",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0);

    // No drift: the updated catalog is what a fresh CREATE EXTENSION of this release makes.
    s.connect("postgres")
        .batch_execute("CREATE DATABASE fresh")
        .unwrap();
    s.connect("fresh")
        .batch_execute("CREATE EXTENSION pg_backup")
        .unwrap();
    let updated = extension_objects(&s, "app");
    let fresh = extension_objects(&s, "fresh");
    // The comparison sees the members themselves, not just CREATE EXTENSION.
    for needle in [
        "CREATE TABLE backup.backups (",
        "CREATE VIEW backup.progress AS",
        "CREATE FUNCTION backup.\"create\"(",
        "SECURITY DEFINER",
        "GRANT ALL ON FUNCTION backup.verify(",
    ] {
        assert!(
            fresh.iter().any(|l| l.contains(needle)),
            "{needle} not in the dump: {fresh:#?}"
        );
    }
    assert!(updated == fresh, "{}", diff(&updated, &fresh));
}

/// Copy an archive directory into the server's backup directory (0700 folders, 0600 files).
fn copy_archive(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_archive(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
#[ignore = "needs scripts/upgrade-prep.sh; make test runs it with --ignored"]
fn archives_written_by_0_1_0_verify_and_restore() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/archive-0.1.0");
    let s = server("new");
    let mut pg = s.connect("postgres");
    // The archives come from a database of this name; rescan registers only its own.
    pg.batch_execute("CREATE DATABASE fixture010").unwrap();
    pg.batch_execute("CREATE DATABASE expected").unwrap();
    let mut expected = s.connect("expected");
    expected
        .batch_execute(&std::fs::read_to_string(fixtures.join("source.sql")).unwrap())
        .unwrap();
    let want = fingerprint(&mut expected);
    assert!(want.len() >= 3);

    let mut ids: Vec<String> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 2, "a native and a sql archive: {ids:?}");
    let mut c = s.connect("fixture010");
    c.batch_execute("CREATE EXTENSION pg_backup").unwrap();
    // The roles that owned the objects where the fixture was made (the developer's test user),
    // as a cluster the archive is restored into would have them: the restore is then exact,
    // with no "owner does not exist" warnings.
    for id in &ids {
        let manifest = std::fs::read_to_string(fixtures.join(id).join("manifest.json")).unwrap();
        for owner in manifest.split("OWNER TO ").skip(1) {
            let role: String = owner
                .chars()
                .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_')
                .collect();
            if !role.is_empty() && !role.starts_with("pg_") {
                pg.batch_execute(&format!(
                    "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') \
                     THEN CREATE ROLE {role}; END IF; END $$"
                ))
                .unwrap();
            }
        }
    }
    // The backup directory exists once the extension has looked at it.
    let _ = c.query("SELECT * FROM backup.rescan()", &[]);
    for id in &ids {
        copy_archive(&fixtures.join(id), &s.backup_dir().join(id));
    }
    // Archives of 0.1.0 carry no signature: a superuser accepts them explicitly (logged).
    c.batch_execute("SET backup.allow_unsigned = on").unwrap();
    let found: Vec<String> = c
        .query("SELECT * FROM backup.rescan()", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for id in &ids {
        assert!(found.contains(id), "rescan registers {id}: {found:?}");
        let bad: Vec<String> = c
            .query(
                "SELECT file || ' ' || status || ' ' || coalesce(detail, '') FROM backup.verify($1) WHERE status <> 'ok'",
                &[id],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(bad.is_empty(), "{id}: {bad:#?}");
    }
    for id in &ids {
        let db = format!(
            "restored_{}",
            if id.ends_with("sql") { "sql" } else { "native" }
        );
        pg.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
            .unwrap();
        // Restore into the database the archive came from, emptied of the user's objects.
        c.batch_execute("DROP SCHEMA IF EXISTS shop CASCADE; DROP TABLE IF EXISTS public.blobs")
            .unwrap();
        let problems: Vec<String> = c
            .query(
                "SELECT object || ' ' || kind || ' ' || status || ' ' || coalesce(detail, '') FROM backup.restore($1) WHERE status <> 'ok'",
                &[id],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(problems.is_empty(), "{id}: {problems:#?}");
        assert_eq!(fingerprint(&mut c), want, "rows restored from {id}");
        let comment: Option<String> = one(
            &mut c,
            "SELECT obj_description('shop.orders'::regclass, 'pg_class')",
        );
        assert_eq!(comment.as_deref(), Some("orders, with a comment"));
    }
}
