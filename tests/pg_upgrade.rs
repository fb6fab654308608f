//! The extension's upgrade on PostgreSQL 17 and 18, as a user gets there: no release before this
//! one was built for them (0.2.0's source does not compile for 17 or 18), so a database holding
//! pg_backup 0.2.0 reaches them only by `pg_upgrade` from 15. pg_upgrade recreates the extension's objects
//! exactly as 0.2.0 made them (its functions still name 0.2.0's C symbols, which this release's
//! library must keep), with this release's library installed on the new server; then
//! `ALTER EXTENSION pg_backup UPDATE` runs the upgrade script there. Everything the 15 upgrade
//! test checks holds here too: the functions refuse to run on the old catalog and say what to
//! run, the history and schedules survive the update, the schedules run again, the backups the
//! 0.2.0 release took on 15 verify and restore on the new server, and the updated catalog is what
//! a fresh `CREATE EXTENSION` of this release makes there (compared member by member through
//! that version's pg_dump --binary-upgrade).
//!
//! Needs PostgreSQL 17 or 18 with this build installed (PG_CONFIG points at its pg_config) and 15's
//! 0.2.0 installation from scripts/upgrade-prep.sh (PG_BACKUP_UPGRADE): `make test-upgrade
//! PG=18` (or 17) runs it with --ignored. A plain `cargo test` lists it as ignored; without either
//! it fails rather than passes unrun.

use std::path::PathBuf;
use std::process::Command;

mod support;
use support::upgrade::*;
use support::*;

/// 15's 0.2.0 installation from scripts/upgrade-prep.sh.
fn release_0_2_0_bindir() -> PathBuf {
    let dir = std::env::var("PG_BACKUP_UPGRADE").expect(
        "PG_BACKUP_UPGRADE is not set: run `make test-upgrade PG=18` (it runs scripts/upgrade-prep.sh first)",
    );
    PathBuf::from(dir).join("old-0.2.0/usr/lib/postgresql/15/bin")
}

fn server_version_num(s: &Server) -> i32 {
    one::<String>(&mut s.connect("postgres"), "SHOW server_version_num")
        .parse()
        .unwrap()
}

/// The major version of PG_CONFIG's initdb (`initdb (PostgreSQL) 18.6`).
fn initdb_major() -> u32 {
    let v = run(Command::new(bin("initdb")).arg("--version"));
    v.split_whitespace()
        .last()
        .and_then(|x| x.split('.').next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("initdb --version: {v}"))
}

#[test]
#[ignore = "needs PostgreSQL 17 or 18 (PG_CONFIG) and scripts/upgrade-prep.sh; make test-upgrade PG=18 runs it with --ignored"]
fn a_0_2_0_database_pg_upgraded_from_15_updates_to_this_release_and_loses_nothing() {
    // The archives live outside both data directories, as they must for pg_upgrade users:
    // pg_upgrade carries the catalog (backup.backups), not files of its own under PGDATA.
    let archives = tempfile::Builder::new()
        .prefix("pg_backup_pg_upgrade")
        .tempdir()
        .unwrap();
    // In postgresql.conf, where an administrator sets it: the test's ALTER SYSTEM RESET of
    // backup.directory (postgresql.auto.conf) falls back to it.
    let directory = format!("backup.directory = '{}'\n", archives.path().display());
    let conf = "backup.database = 'app'";
    let old = Server::builder()
        .inherit_locale()
        .bindir(release_0_2_0_bindir())
        .conf(conf)
        .without_app()
        .start();
    append_conf(&old, &directory);
    old.connect("postgres")
        .batch_execute("SELECT pg_reload_conf()")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        one::<String>(&mut old.connect("postgres"), "SHOW backup.directory"),
        archives.path().display().to_string()
    );
    assert_eq!(
        server_version_num(&old) / 10000,
        15,
        "0.2.0 was released for 15"
    );
    updates_to_this_release_and_loses_nothing(old, "0.2.0", |old| {
        // The new cluster: PG_CONFIG's installation (17 or 18, this build in it), initialized
        // like the old one (the environment's locale; 18's initdb enables data checksums by
        // default, 15's did not, and pg_upgrade needs both the same).
        let mut new = Server::builder().inherit_locale();
        if initdb_major() >= 18 {
            new = new.initdb_arg("--no-data-checksums");
        }
        let new = new.conf(conf).without_app().start();
        assert!(
            server_version_num(&new) >= 170000,
            "PG_CONFIG is not PostgreSQL 17 or later: this test is theirs (15's is tests/upgrade.rs)"
        );
        new.stop("fast");
        append_conf(&new, &directory);
        without_pg_attver(&old);
        old.stop("fast");
        // pg_upgrade as a user runs it (shared_preload_libraries = 'pg_backup' on both sides,
        // nothing turned off), on ports of its own; it writes its logs into the new data
        // directory and needs a writable working directory.
        let out = Command::new(new.bin("pg_upgrade"))
            .current_dir(new.dir.path())
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .arg("-b")
            .arg(old.bindir())
            .arg("-B")
            .arg(new.bindir())
            .arg("-d")
            .arg(&old.data)
            .arg("-D")
            .arg(&new.data)
            .arg("--socketdir")
            .arg(new.dir.path())
            .args(["-p", &free_port().to_string()])
            .args(["-P", &free_port().to_string()])
            .args(["-U", &superuser()])
            .output()
            .unwrap();
        let logs = || {
            let mut text = String::new();
            for e in walk(&new.data.join("pg_upgrade_output.d")) {
                if e.extension().is_some_and(|x| x == "log") {
                    text.push_str(&format!("--- {}\n", e.display()));
                    text.push_str(&std::fs::read_to_string(&e).unwrap_or_default());
                }
            }
            text
        };
        assert!(
            out.status.success(),
            "pg_upgrade 15 (pg_backup 0.2.0) -> {} (this build): {}{}\n{}",
            new.bindir().display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            logs()
        );
        drop(old);
        new.pg_ctl_start();
        let mut c = new.connect("app");
        assert_eq!(
            one::<String>(
                &mut c,
                "SELECT extversion FROM pg_extension WHERE extname = 'pg_backup'"
            ),
            "0.2.0",
            "pg_upgrade keeps the extension's version and objects"
        );
        new
    });
}

/// Debian's PostgreSQL 15.20 (this machine's 15) sets a column option `pg_attver` on every
/// column it creates, which 18.6 does not know: pg_dump --binary-upgrade carries it and
/// pg_upgrade to 18 then fails at the first table of any database ("unrecognized parameter
/// \"pg_attver\""), with or without pg_backup. Taken off every column of every database first,
/// as a user of that 15 would have to; the 15 cluster is not used again.
fn without_pg_attver(s: &Server) {
    let dbs: Vec<String> = s
        .connect("postgres")
        .query(
            "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for db in dbs {
        let mut c = s.connect(&db);
        // ALTER TABLE ... RESET (pg_attver) does not take it off on 15.20 (it is set again):
        // the catalog row itself, as a superuser can.
        c.batch_execute(
            "UPDATE pg_attribute a
             SET attoptions = NULLIF(ARRAY(SELECT o FROM unnest(a.attoptions) o WHERE o NOT LIKE 'pg_attver=%'), '{}')
             WHERE a.attrelid >= 16384 AND EXISTS (SELECT FROM unnest(a.attoptions) o WHERE o LIKE 'pg_attver=%')",
        )
        .unwrap();
        let left: i64 = one(
            &mut c,
            "SELECT count(*) FROM pg_attribute a, unnest(a.attoptions) o
             WHERE a.attrelid >= 16384 AND o LIKE 'pg_attver=%'",
        );
        assert_eq!(left, 0, "pg_attver left in {db}");
    }
}

/// A line at the end of the server's postgresql.conf.
fn append_conf(s: &Server, line: &str) {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .open(s.data.join("postgresql.conf"))
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
}

/// Every file under `dir` (none when it does not exist).
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                files.extend(walk(&p));
            } else {
                files.push(p);
            }
        }
    }
    files
}
