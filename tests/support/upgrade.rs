//! The upgrade tests' common part (tests/upgrade.rs on 15, tests/pg_upgrade.rs on 17 and 18): life on a
//! released pg_backup, the move to this release (a new package over the old one, or pg_upgrade
//! to a newer PostgreSQL with this release installed), `ALTER EXTENSION pg_backup UPDATE`, and
//! what must hold afterwards.
#![allow(dead_code)]

use std::time::Duration;

use postgres::Client;

use super::*;

/// Rows of the user's tables as text, per table (row security off, ordered).
pub fn fingerprint(c: &mut Client) -> Vec<(String, String)> {
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
pub fn extension_objects(s: &Server, db: &str) -> Vec<String> {
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
pub fn without_oids(line: &str) -> String {
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

pub fn diff(a: &[String], b: &[String]) -> String {
    let only_a: Vec<&String> = a.iter().filter(|l| !b.contains(l)).collect();
    let only_b: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
    format!("only after UPDATE: {only_a:#?}\nonly in a fresh CREATE EXTENSION: {only_b:#?}")
}

/// Life on the released `version` on server `old` (started with that release's programs and
/// `backup.database = 'app'`, no database yet), then `to_this_release` moves it to this release
/// (returns the server, running this release's library on the same catalog), then
/// `ALTER EXTENSION pg_backup UPDATE`, and everything that must hold after it.
pub fn updates_to_this_release_and_loses_nothing(
    old: Server,
    version: &str,
    to_this_release: impl FnOnce(Server) -> Server,
) {
    let s = old;
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

    // The move to this release: the server runs the new library on the old catalog.
    let s = to_this_release(s);
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
