//! Upgrades, as a user lives them: a server running a released pg_backup (0.1.0 or 0.2.0, built
//! from the release sources in tests/fixtures/release by scripts/upgrade-prep.sh) gets the new
//! build installed over it, then `ALTER EXTENSION pg_backup UPDATE` (the checks are shared with
//! 17's and 18's tests/pg_upgrade.rs, in tests/support/upgrade.rs). Also: archives written by 0.1.0 (kept in
//! tests/fixtures/archive-0.1.0) verify and restore with the current code.
//!
//! Run by `make test` after scripts/upgrade-prep.sh, with PG_BACKUP_UPGRADE pointing at its
//! output (`cargo test --test upgrade -- --ignored`); a plain `cargo test` lists them as
//! ignored, and without PG_BACKUP_UPGRADE they fail rather than pass unrun.

use std::path::{Path, PathBuf};

mod support;
use support::upgrade::*;
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

#[test]
#[ignore = "needs scripts/upgrade-prep.sh; make test runs it with --ignored"]
fn a_0_1_0_database_updates_to_this_release_and_loses_nothing() {
    updates_to_this_release_and_loses_nothing(server("old"), "0.1.0", new_package);
}

#[test]
#[ignore = "needs scripts/upgrade-prep.sh; make test runs it with --ignored"]
fn a_0_2_0_database_updates_to_this_release_and_loses_nothing() {
    updates_to_this_release_and_loses_nothing(server("old-0.2.0"), "0.2.0", new_package);
}

/// The new package is installed over the old one; the server restarts with the new library.
fn new_package(mut s: Server) -> Server {
    s.switch_to(bindir("new"));
    s
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
