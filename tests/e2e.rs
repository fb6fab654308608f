//! End-to-end tests: a real PostgreSQL 15 started by this harness (its own data directory and
//! port, `shared_preload_libraries = 'pg_backup'`), driven from outside as users would.
//! Run by `make test` (PG_BACKUP_E2E=1, after `cargo pgrx install`); skipped elsewhere.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

mod support;
use support::*;

/// The COPY text of one table from a native archive.
fn table_text(dir: &Path, table: &str) -> String {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let f = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["table"] == table)
        .unwrap();
    let path = f["path"].as_str().unwrap();
    let file = std::fs::File::open(dir.join(path)).unwrap();
    let mut s = String::new();
    if path.ends_with(".zst") {
        zstd::stream::read::Decoder::new(file)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
    } else {
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut s)
            .unwrap();
    }
    s
}

/// A connection that keeps the NOTICEs the server sends it.
fn connect_with_notices(s: &Server, db: &str) -> (Client, Arc<std::sync::Mutex<Vec<String>>>) {
    let notices = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = notices.clone();
    let c = s
        .conn_str(db, None)
        .parse::<postgres::Config>()
        .unwrap()
        .notice_callback(move |n| sink.lock().unwrap().push(n.message().to_string()))
        .connect(NoTls)
        .unwrap();
    (c, notices)
}

fn sum_column(text: &str, col: usize) -> i64 {
    text.lines()
        .map(|l| l.split('\t').nth(col).unwrap().parse::<i64>().unwrap())
        .sum()
}

#[test]
fn concurrent_transfers_are_seen_at_one_instant() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut c = s.connect("app");
    c.batch_execute(
        "CREATE TABLE a (id int PRIMARY KEY, bal bigint NOT NULL);
         CREATE TABLE b (id int PRIMARY KEY, bal bigint NOT NULL);
         INSERT INTO a SELECT g, 1000 FROM generate_series(1, 200000) g;
         INSERT INTO b SELECT g, 1000 FROM generate_series(1, 200000) g;",
    )
    .unwrap();
    let total: i64 = 2 * 200000 * 1000;
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..3u32 {
        let stop = stop.clone();
        let cs = s.conn_str("app", None);
        workers.push(std::thread::spawn(move || {
            let mut c = Client::connect(&cs, NoTls).unwrap();
            let mut n = 0u64;
            let mut i = w as i32;
            while !stop.load(Ordering::Relaxed) {
                i = (i * 7919 + 13) % 200000 + 1;
                // Money moves from a to b (and back): the sum over both tables never changes.
                let mut t = c.transaction().unwrap();
                t.execute("UPDATE a SET bal = bal - 5 WHERE id = $1", &[&i])
                    .unwrap();
                t.execute("UPDATE b SET bal = bal + 5 WHERE id = $1", &[&(200001 - i)])
                    .unwrap();
                t.commit().unwrap();
                n += 1;
            }
            n
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    // In this session, then twice with two parallel workers (the leader's snapshot shared).
    let (mut c, notices) = connect_with_notices(&s, "app");
    let mut paths = Vec::new();
    for (i, jobs) in [1, 2, 2].into_iter().enumerate() {
        notices.lock().unwrap().clear();
        let row = c
            .query_one(
                &format!(
                    "SELECT path FROM backup.create(tables => '{{a,b}}', label => 'xfer{i}', jobs => {jobs}, verbose => true)"
                ),
                &[],
            )
            .unwrap();
        paths.push(PathBuf::from(row.get::<_, String>(0)));
        let parallel = notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("2 parallel workers copy"));
        assert_eq!(
            parallel,
            jobs == 2,
            "xfer{i}: {:?}",
            notices.lock().unwrap()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let transfers: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(
        transfers > 100,
        "the transfers must really run during the backups ({transfers})"
    );
    for p in &paths {
        let sum = sum_column(&table_text(p, "a"), 1) + sum_column(&table_text(p, "b"), 1);
        assert_eq!(
            sum,
            total,
            "backup {} is not one consistent state",
            p.display()
        );
    }
    // And the backups differ from each other: they were taken while money moved.
    let a0 = sum_column(&table_text(&paths[0], "a"), 1);
    let a2 = sum_column(&table_text(&paths[2], "a"), 1);
    assert_ne!(a0, a2);
    // Restored (a backup written by the parallel workers), the state still adds up.
    let id = paths[1].file_name().unwrap().to_string_lossy().into_owned();
    s.connect("postgres")
        .batch_execute("CREATE DATABASE restored")
        .unwrap();
    let mut r = s.connect("restored");
    r.batch_execute("CREATE EXTENSION pg_backup").unwrap();
    r.query("SELECT * FROM backup.rescan()", &[]).unwrap();
    r.query("SELECT * FROM backup.restore($1)", &[&id]).unwrap();
    let sum = count(
        &mut r,
        "SELECT ((SELECT sum(bal) FROM a) + (SELECT sum(bal) FROM b))::bigint",
    );
    assert_eq!(sum, total);
}

#[test]
fn only_backup_operators_may_back_up() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut c = s.connect("app");
    c.batch_execute(
        "CREATE TABLE t AS SELECT generate_series(1, 100) AS x;
         CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; GRANT backup_operator TO bob;",
    )
    .unwrap();
    let mut alice = s.connect_as("app", "alice");
    expect_err(&mut alice, "SELECT * FROM backup.create()", "42501");
    expect_err(&mut alice, "SELECT * FROM backup.verify()", "42501");

    let mut bob = s.connect_as("app", "bob");
    // bob cannot read t himself, but a backup reads every table.
    assert_eq!(
        sqlstate(&bob.query("SELECT * FROM t", &[]).unwrap_err()),
        "42501"
    );
    let row = bob
        .query_one(
            "SELECT backup_id, rows FROM backup.create(label => 'by-bob')",
            &[],
        )
        .unwrap();
    let id: String = row.get(0);
    assert_eq!(row.get::<_, i64>(1), 100);
    let who: String = bob
        .query_one(
            "SELECT created_by FROM backup.backups WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(who, "bob");
    let bad: i64 = bob
        .query_one(
            "SELECT count(*) FROM backup.verify($1) WHERE status <> 'ok'",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0);
    // The operator cannot write the catalog directly.
    assert_eq!(
        sqlstate(&bob.execute("DELETE FROM backup.backups", &[]).unwrap_err()),
        "42501"
    );
}

#[test]
fn a_failed_backup_keeps_its_history_row_and_leaves_no_archive() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut c = s.connect("app");
    c.batch_execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS x")
        .unwrap();
    // A backup directory the server cannot create.
    c.batch_execute("ALTER SYSTEM SET backup.directory = '/proc/pg_backup_cannot_be_here'")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut c = s.connect("app");
    let err = c
        .query("SELECT * FROM backup.create(label => 'doomed')", &[])
        .unwrap_err();
    assert!(
        ["58030", "42501"].contains(&sqlstate(&err).as_str()),
        "{err:?}"
    );
    let row = c
        .query_one(
            "SELECT status, error FROM backup.backups WHERE label = 'doomed'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert!(row.get::<_, String>(1).contains("pg_backup_cannot_be_here"));
    // Same inside an explicit transaction that the caller rolls back.
    c.batch_execute("ALTER SYSTEM RESET backup.directory")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut c = s.connect("app");
    let mut t = c.transaction().unwrap();
    t.query("SELECT * FROM backup.create(label => 'rolled-back')", &[])
        .unwrap();
    t.rollback().unwrap();
    let st: String = c
        .query_one(
            "SELECT status FROM backup.backups WHERE label = 'rolled-back'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(st, "completed", "the archive exists, so its row does too");
}

#[test]
fn a_terminated_backup_leaves_a_failed_row_and_no_completed_archive() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut c = s.connect("app");
    c.batch_execute(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload
         FROM generate_series(1, 3000000) g;",
    )
    .unwrap();
    let cs = s.conn_str("app", None);
    let backup = std::thread::spawn(move || {
        let mut c = Client::connect(&cs, NoTls).unwrap();
        c.query(
            "SELECT * FROM backup.create(label => 'killed', compression => 'gzip:9')",
            &[],
        )
        .map(|_| ())
    });
    // Wait until it is running, then terminate its backend.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (id, pid) = loop {
        let rows = c
            .query(
                "SELECT id, pid FROM backup.backups WHERE label = 'killed' AND status = 'running'",
                &[],
            )
            .unwrap();
        if let Some(r) = rows.first() {
            break (r.get::<_, String>(0), r.get::<_, i32>(1));
        }
        assert!(Instant::now() < deadline, "backup never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(300));
    c.query("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
    assert!(
        backup.join().unwrap().is_err(),
        "the backup must not complete"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st: String = c
            .query_one("SELECT status FROM backup.backups WHERE id = $1", &[&id])
            .unwrap()
            .get(0);
        if st == "failed" {
            break;
        }
        assert!(Instant::now() < deadline, "status stayed {st}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let base = s.data.join("pg_backup");
    assert!(!base.join(&id).exists(), "no archive under the final name");
    assert!(
        !base.join(format!(".tmp-{id}")).exists(),
        "the partial archive is removed"
    );
}

#[test]
fn a_lost_database_comes_back_from_rescan_and_restore() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut c = s.connect("app");
    c.batch_execute(
        "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
         CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES customers, note text);
         INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 1000) g;
         INSERT INTO orders SELECT g, g % 1000 + 1, E'line\\nbreak\\t' || g FROM generate_series(1, 5000) g;",
    )
    .unwrap();
    let fp = |c: &mut Client| -> String {
        c.query_one(
            "SELECT md5((SELECT string_agg(x::text, '|' ORDER BY x.id) FROM customers x) ||
                        (SELECT string_agg(y::text, '|' ORDER BY y.id) FROM orders y))",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let before = fp(&mut c);
    let id = create(&mut c, "label => 'dr'");
    drop(c);
    // The database, and with it the catalog, is lost.
    let mut admin = s.connect("postgres");
    admin
        .batch_execute("DROP DATABASE app WITH (FORCE)")
        .unwrap();
    admin.batch_execute("CREATE DATABASE app").unwrap();
    let mut c = s.connect("app");
    c.batch_execute("CREATE EXTENSION pg_backup").unwrap();
    let found: Vec<String> = c
        .query("SELECT * FROM backup.rescan()", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(found, std::slice::from_ref(&id));
    c.query("SELECT * FROM backup.restore($1)", &[&id]).unwrap();
    assert_eq!(fp(&mut c), before);
    let next: i32 = c
        .query_one(
            "INSERT INTO customers (name) VALUES ('new') RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(next, 1001, "sequence values are restored");
}

/// `pg_dump --schema-only` without comments, SET lines and blank lines.
fn schema_dump(s: &Server, db: &str) -> Vec<String> {
    let out = s
        .client("pg_dump")
        .args(["--schema-only", "--exclude-schema=backup", "-d", db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| {
            // \restrict lines carry a random key per dump.
            !l.is_empty()
                && !l.starts_with("--")
                && !l.starts_with("SET ")
                && !l.starts_with("SELECT pg_catalog.set_config")
                && !l.starts_with("\\restrict")
                && !l.starts_with("\\unrestrict")
        })
        .map(str::to_string)
        .collect()
}

/// Per-table row fingerprints, sequence values and large objects of the user's data.
fn data_fingerprint(c: &mut Client) -> Vec<(String, String)> {
    let tables: Vec<String> = c
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'backup')
               AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for t in tables {
        let fp: String = c
            .query_one(&format!("SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM ONLY {t} x"), &[])
            .unwrap()
            .get(0);
        out.push((t, fp));
    }
    for r in c
        .query(
            "SELECT format('%I.%I', schemaname, sequencename), coalesce(last_value::text, 'null') FROM pg_sequences
             WHERE schemaname <> 'backup' ORDER BY 1",
            &[],
        )
        .unwrap()
    {
        out.push((r.get(0), r.get(1)));
    }
    for r in c
        .query(
            "SELECT oid::text, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid",
            &[],
        )
        .unwrap()
    {
        out.push((format!("lo {}", r.get::<_, String>(0)), r.get(1)));
    }
    out
}

/// Restore backup `id` with backup.restore() into a new database `db` (pg_backup installed).
fn restore_into(s: &Server, db: &str, id: &str) {
    s.connect("postgres")
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    let mut dst = s.connect(db);
    dst.batch_execute("CREATE EXTENSION pg_backup").unwrap();
    dst.query("SELECT * FROM backup.rescan()", &[]).unwrap();
    let rows = dst
        .query(
            "SELECT object, kind, status, detail FROM backup.restore($1) WHERE status <> 'ok'",
            &[&id],
        )
        .unwrap();
    let problems: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {:?}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
                r.get::<_, Option<String>>(3)
            )
        })
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

fn assert_same_schema(s: &Server, a_db: &str, b_db: &str) {
    // The extension itself may be installed on one side only (sql format restored by psql).
    let keep = |l: &String| !(l.contains("EXTENSION") && l.contains("pg_backup"));
    let a: Vec<String> = schema_dump(s, a_db).into_iter().filter(keep).collect();
    let b: Vec<String> = schema_dump(s, b_db).into_iter().filter(keep).collect();
    let only_a: Vec<&String> = a.iter().filter(|l| !b.contains(l)).collect();
    let only_b: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "schema differs\nonly in {a_db}: {only_a:#?}\nonly in {b_db}: {only_b:#?}"
    );
    assert_eq!(a, b, "same statements, different order");
}

fn backup_id(c: &mut Client, format: &str) -> String {
    backup_id_with(c, format, None)
}

/// A backup in `format`, with `compression` or the default (backup.compression).
fn backup_id_with(c: &mut Client, format: &str, compression: Option<&str>) -> String {
    c.query_one(
        "SELECT backup_id FROM backup.create(label => 'fidelity-' || $1, format => $1, compression => $2)",
        &[&format, &compression],
    )
    .unwrap()
    .get(0)
}

#[test]
fn a_full_backup_restores_faithfully_into_a_fresh_database_in_every_format() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fidelity.sql");
    s.psql_file("app", &fixture);
    let mut src = s.connect("app");
    let fingerprint = data_fingerprint(&mut src);
    for (format, compression) in [
        ("native", None),
        ("native", Some("gzip")),
        ("native", Some("none")),
        ("sql", None),
        ("sql", Some("gzip:1")),
        ("csv", Some("zstd:9")),
    ] {
        let id = backup_id_with(&mut src, format, compression);
        let bad: i64 = src
            .query_one(
                "SELECT count(*) FROM backup.verify($1) WHERE status <> 'ok'",
                &[&id],
            )
            .unwrap()
            .get(0);
        assert_eq!(bad, 0, "{format}: verify");
        let db = format!(
            "copy_{format}_{}",
            compression.unwrap_or("default").replace(':', "_")
        );
        restore_into(&s, &db, &id);
        assert_same_schema(&s, "app", &db);
        assert_eq!(
            data_fingerprint(&mut s.connect(&db)),
            fingerprint,
            "{format}: data"
        );
        if format == "sql" {
            // The script alone, through the compressor's own tool and psql, into a database
            // without pg_backup: zstd -dc for the default, gunzip -c for gzip.
            let (file, unpack) = match compression {
                None => ("backup.sql.zst", "zstd -dc"),
                Some(_) => ("backup.sql.gz", "gunzip -c"),
            };
            let plain = format!("{db}_psql");
            s.connect("postgres")
                .batch_execute(&format!("CREATE DATABASE {plain}"))
                .unwrap();
            let script = s.data.join("pg_backup").join(&id).join(file);
            let sh = format!(
                "{unpack} '{}' | {} -X -q -v ON_ERROR_STOP=1 -h '{}' -p {} -d {plain}",
                script.display(),
                bin("psql"),
                s.socket.display(),
                s.port
            );
            run(Command::new("sh").args(["-c", &sh]));
            assert_same_schema(&s, "app", &plain);
            assert_eq!(
                data_fingerprint(&mut s.connect(&plain)),
                fingerprint,
                "sql via {unpack} | psql: data"
            );
        }
    }
    // json: a json/jsonb column holding the JSON value null and one holding SQL NULL both
    // render as null, so that one value is the format's known limit (see README).
    src.batch_execute("UPDATE shop.kinds SET j = '{\"was\": null}' WHERE j = 'null'")
        .unwrap();
    let fingerprint = data_fingerprint(&mut src);
    let id = backup_id(&mut src, "json");
    let bad: i64 = src
        .query_one(
            "SELECT count(*) FROM backup.verify($1) WHERE status <> 'ok'",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0, "json: verify");
    restore_into(&s, "copy_json", &id);
    assert_same_schema(&s, "app", "copy_json");
    assert_eq!(
        data_fingerprint(&mut s.connect("copy_json")),
        fingerprint,
        "json: data"
    );
}

fn scheduler_server() -> (Server, Client) {
    let s = Server::start_in_env_locale("");
    let mut c = s.connect("postgres");
    c.batch_execute(
        "CREATE EXTENSION pg_backup; CREATE TABLE t AS SELECT generate_series(1, 1000) AS x;",
    )
    .unwrap();
    (s, c)
}

#[test]
fn a_two_second_schedule_runs_keeps_two_and_pauses() {
    if !enabled() {
        return;
    }
    let (s, mut c) = scheduler_server();
    c.query("SELECT * FROM backup.create(label => 'manual')", &[])
        .unwrap();
    let row = c.query_one("SELECT next_run_at IS NOT NULL FROM backup.schedule('fast', '2 seconds', keep_last => 2)", &[]).unwrap();
    assert!(row.get::<_, bool>(0));
    let runs = wait_for(&mut c, "SELECT count(*) FROM backup.backups WHERE schedule = 'fast' AND status IN ('completed', 'deleted')", 4, 40);
    assert!(runs >= 4, "only {runs} runs");
    // Retention ran after each success: two of this schedule's backups remain, files and rows.
    std::thread::sleep(Duration::from_millis(500));
    c.execute(
        "UPDATE backup.schedules SET enabled = false WHERE name = 'fast'",
        &[],
    )
    .unwrap();
    wait_for(
        &mut c,
        "SELECT (count(*) = 0)::int::bigint FROM backup.backups WHERE status = 'running'",
        1,
        20,
    );
    std::thread::sleep(Duration::from_millis(500));
    let kept: Vec<String> = c
        .query(
            "SELECT id FROM backup.backups WHERE schedule = 'fast' AND status = 'completed'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    for id in &kept {
        assert!(s.data.join("pg_backup").join(id).exists());
    }
    let deleted: Vec<String> = c
        .query(
            "SELECT id FROM backup.backups WHERE schedule = 'fast' AND status = 'deleted'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!deleted.is_empty());
    for id in &deleted {
        assert!(
            !s.data.join("pg_backup").join(id).exists(),
            "{id} still on disk"
        );
    }
    let manual: String = c
        .query_one(
            "SELECT status FROM backup.backups WHERE label = 'manual'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(manual, "completed", "retention leaves other backups alone");
    let r = c.query_one("SELECT last_status, last_backup_id IS NOT NULL, next_run_at > last_run_at FROM backup.schedules WHERE name = 'fast'", &[]).unwrap();
    assert_eq!(r.get::<_, String>(0), "completed");
    assert!(r.get::<_, bool>(1) && r.get::<_, bool>(2));
    // Paused: no new runs.
    let before = count(
        &mut c,
        "SELECT count(*) FROM backup.backups WHERE schedule = 'fast'",
    );
    std::thread::sleep(Duration::from_secs(5));
    let after = count(
        &mut c,
        "SELECT count(*) FROM backup.backups WHERE schedule = 'fast'",
    );
    assert_eq!(before, after);
    // backup.stats has the schedule with its success rate.
    let rate: String = c
        .query_one(
            "SELECT success_rate::text FROM backup.stats WHERE schedule = 'fast'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(rate, "100.0");
    // run_schedule runs it now, paused or not.
    let r = c
        .query_one(
            "SELECT status, backup_id FROM backup.run_schedule('fast')",
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "completed");
    let id: String = r.get(1);
    let sched: String = c
        .query_one("SELECT schedule FROM backup.backups WHERE id = $1", &[&id])
        .unwrap()
        .get(0);
    assert_eq!(sched, "fast");
}

#[test]
fn a_failing_schedule_records_failures_and_keeps_running() {
    if !enabled() {
        return;
    }
    let (_s, mut c) = scheduler_server();
    c.batch_execute("CREATE TABLE gone_soon (x int)").unwrap();
    c.query(
        "SELECT * FROM backup.schedule('broken', '2 seconds', tables => '{gone_soon}')",
        &[],
    )
    .unwrap();
    c.batch_execute("DROP TABLE gone_soon").unwrap();
    let failed = wait_for(
        &mut c,
        "SELECT count(*) FROM backup.backups WHERE schedule = 'broken' AND status = 'failed'",
        2,
        30,
    );
    assert!(failed >= 2);
    let err: String = c.query_one("SELECT error FROM backup.backups WHERE schedule = 'broken' AND status = 'failed' LIMIT 1", &[]).unwrap().get(0);
    assert!(err.contains("gone_soon"), "{err}");
    let alive = count(
        &mut c,
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_backup scheduler'",
    );
    assert_eq!(alive, 1);
    // Invalid cron expressions never reach the table.
    expect_err(
        &mut c,
        "SELECT * FROM backup.schedule('bad', '61 * * * *')",
        "22023",
    );
}

#[test]
fn sighup_stops_new_runs_and_fast_shutdown_does_not_wait_for_a_backup() {
    if !enabled() {
        return;
    }
    let (s, mut c) = scheduler_server();
    c.query("SELECT * FROM backup.schedule('tick', '2 seconds')", &[])
        .unwrap();
    wait_for(
        &mut c,
        "SELECT count(*) FROM backup.backups WHERE schedule = 'tick'",
        1,
        30,
    );
    c.batch_execute("ALTER SYSTEM SET backup.scheduler_enabled = off")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let before = count(
        &mut c,
        "SELECT count(*) FROM backup.backups WHERE schedule = 'tick'",
    );
    std::thread::sleep(Duration::from_secs(5));
    let after = count(
        &mut c,
        "SELECT count(*) FROM backup.backups WHERE schedule = 'tick'",
    );
    assert_eq!(before, after, "no runs while scheduler_enabled = off");

    // A long scheduled backup, then a fast shutdown.
    c.batch_execute(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload FROM generate_series(1, 3000000) g;",
    )
    .unwrap();
    c.batch_execute("UPDATE backup.schedules SET enabled = false WHERE name = 'tick'")
        .unwrap();
    c.batch_execute("ALTER SYSTEM SET backup.scheduler_enabled = on")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    c.query(
        "SELECT * FROM backup.schedule('slow', '2 seconds', compression => 'gzip:9')",
        &[],
    )
    .unwrap();
    wait_for(
        &mut c,
        "SELECT count(*) FROM backup.backups WHERE schedule = 'slow' AND status = 'running'",
        1,
        30,
    );
    std::thread::sleep(Duration::from_millis(500));
    let id: String = c
        .query_one(
            "SELECT id FROM backup.backups WHERE schedule = 'slow' AND status = 'running'",
            &[],
        )
        .unwrap()
        .get(0);
    drop(c);
    let t0 = Instant::now();
    s.stop("fast");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "fast shutdown took {:?}",
        t0.elapsed()
    );
    assert!(
        !s.data.join("pg_backup").join(&id).exists(),
        "no archive under the final name"
    );
}

/// pg_cron is a package of its own: here Debian 12's postgresql-15-cron (`make setup`), for
/// 15 only; the PostgreSQL 17 and 18 built from source have none. Built for those, the test
/// shows as ignored, never as passed.
#[test]
#[cfg_attr(
    not(feature = "pg15"),
    ignore = "pg_cron is installed for PostgreSQL 15 only (Debian 12's postgresql-15-cron)"
)]
fn a_pg_cron_job_can_take_backups() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale(
        "shared_preload_libraries = 'pg_backup,pg_cron'\ncron.database_name = 'postgres'\ncron.use_background_workers = on",
    );
    let mut c = s.connect("postgres");
    c.batch_execute(
        "CREATE EXTENSION pg_backup; CREATE EXTENSION pg_cron; CREATE TABLE t AS SELECT 1 AS x;",
    )
    .unwrap();
    // Debian 12 ships pg_cron 1.4, whose finest step is a minute (seconds came in 1.5).
    c.query("SELECT cron.schedule('pgb', '* * * * *', $$SELECT backup.create(label => 'from-pg-cron')$$)", &[]).unwrap();
    let n = wait_for(
        &mut c,
        "SELECT count(*) FROM backup.backups WHERE label = 'from-pg-cron' AND status = 'completed'",
        1,
        80,
    );
    assert!(n >= 1, "pg_cron's job did not produce a backup");
}

#[test]
fn without_preloading_a_schedule_is_stored_with_a_warning_and_hint() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("shared_preload_libraries = ''");
    let out = s
        .client("psql")
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            "app",
            "-c",
            "SELECT name FROM backup.schedule('nightly', '@daily')",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARNING:  pg_backup is not in shared_preload_libraries"),
        "{stderr}"
    );
    assert!(
        stderr.contains("HINT:  Add it in postgresql.conf: shared_preload_libraries = 'pg_backup'"),
        "{stderr}"
    );
    let n: i64 = s
        .connect("app")
        .query_one(
            "SELECT count(*) FROM backup.schedules WHERE name = 'nightly'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

/// Running pg_backup copy workers (jobs => N) of the server.
fn copy_workers(c: &mut Client) -> i64 {
    count(
        c,
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_backup copy worker'",
    )
}

fn wait_until_no_copy_workers(c: &mut Client) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while copy_workers(c) > 0 {
        assert!(
            Instant::now() < deadline,
            "the copy workers are still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_no_archive(s: &Server, id: &str) {
    let base = s.data.join("pg_backup");
    assert!(!base.join(id).exists(), "no archive under the final name");
    assert!(
        !base.join(format!(".tmp-{id}")).exists(),
        "the partial archive is removed"
    );
}

#[test]
fn a_failing_parallel_worker_fails_the_backup_with_its_error() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut c = s.connect("app");
    // The json format turns an enum into JSON through its cast, which fails for one row: in
    // whichever worker copies that table.
    c.batch_execute(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS t FROM generate_series(1, 300000) g;
         CREATE TABLE small AS SELECT g AS id FROM generate_series(1, 1000) g;
         CREATE TYPE fuse AS ENUM ('quiet', 'lit');
         CREATE FUNCTION fuse_json(fuse) RETURNS json LANGUAGE plpgsql AS
           $$BEGIN IF $1 = 'lit' THEN RAISE EXCEPTION 'the fuse is lit' USING ERRCODE = '22012'; END IF;
                   RETURN to_json($1::text); END$$;
         CREATE CAST (fuse AS json) WITH FUNCTION fuse_json(fuse);
         CREATE TABLE bomb (id int, f fuse);
         INSERT INTO bomb SELECT g, CASE WHEN g = 5000 THEN 'lit' ELSE 'quiet' END::fuse
         FROM generate_series(1, 10000) g;",
    )
    .unwrap();
    let err = c
        .query(
            "SELECT * FROM backup.create(label => 'boom', format => 'json', jobs => 2)",
            &[],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22012", "the worker's SQLSTATE: {err:?}");
    let message = err.as_db_error().map(|e| e.message().to_string());
    assert_eq!(message.as_deref(), Some("the fuse is lit"), "{err:?}");
    let row = c
        .query_one(
            "SELECT id, status, error FROM backup.backups WHERE label = 'boom'",
            &[],
        )
        .unwrap();
    let id: String = row.get(0);
    assert_eq!(row.get::<_, String>(1), "failed");
    assert!(row.get::<_, String>(2).contains("the fuse is lit"));
    assert_no_archive(&s, &id);
    wait_until_no_copy_workers(&mut c);
    // The same backup without that table works, and its archive verifies.
    let row = c
        .query_one(
            "SELECT backup_id, status, tables FROM backup.create(label => 'fine', format => 'json', jobs => 2, exclude_tables => '{bomb}')",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(1), "completed");
    assert_eq!(row.get::<_, i64>(2), 2);
    let id: String = row.get(0);
    let bad = count(
        &mut c,
        &format!("SELECT count(*) FROM backup.verify('{id}') WHERE status <> 'ok'"),
    );
    assert_eq!(bad, 0);
}

#[test]
fn a_cancelled_or_terminated_parallel_backup_stops_its_workers() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut c = s.connect("app");
    c.batch_execute(
        "CREATE TABLE big1 AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload
         FROM generate_series(1, 1500000) g;
         CREATE TABLE big2 AS SELECT * FROM big1;",
    )
    .unwrap();
    for (label, stop) in [
        ("cancelled", "pg_cancel_backend"),
        ("terminated", "pg_terminate_backend"),
    ] {
        let cs = s.conn_str("app", None);
        let sql = format!(
            "SELECT * FROM backup.create(label => '{label}', compression => 'gzip:9', jobs => 2)"
        );
        let backup = std::thread::spawn(move || {
            let mut c = Client::connect(&cs, NoTls).unwrap();
            c.query(&sql, &[]).map(|_| ()).map_err(|e| sqlstate(&e))
        });
        // Running, with both workers, and progress says so.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (id, pid) = loop {
            let rows = c
                .query(
                    "SELECT backup_id, pid FROM backup.progress WHERE label = $1 AND jobs = 2",
                    &[&label],
                )
                .unwrap();
            if let Some(r) = rows.first() {
                break (r.get::<_, String>(0), r.get::<_, i32>(1));
            }
            assert!(
                Instant::now() < deadline,
                "{label}: no progress with 2 jobs"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // The leader advertises its jobs as it starts them: wait until both show up.
        let started = Instant::now() + Duration::from_secs(30);
        while copy_workers(&mut c) < 2 {
            assert!(Instant::now() < started, "{label}: both copy workers run");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(copy_workers(&mut c), 2, "{label}");
        let asked = Instant::now();
        c.query(&format!("SELECT {stop}($1)"), &[&pid]).unwrap();
        let outcome = backup.join().unwrap();
        if label == "cancelled" {
            assert_eq!(outcome, Err("57014".to_string()));
        } else {
            assert!(outcome.is_err(), "the backup must not complete");
        }
        wait_until_no_copy_workers(&mut c);
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{label}: workers stopped promptly ({:?})",
            asked.elapsed()
        );
        let st = wait_for(
            &mut c,
            &format!("SELECT count(*) FROM backup.backups WHERE id = '{id}' AND status = 'failed'"),
            1,
            20,
        );
        assert_eq!(st, 1, "{label}: a failed row");
        assert_no_archive(&s, &id);
    }
}

#[test]
fn more_jobs_than_worker_slots_still_back_up() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let (mut c, notices) = connect_with_notices(&s, "app");
    let ddl: String = (1..=30)
        .map(|i| format!("CREATE TABLE t{i} AS SELECT g AS id FROM generate_series(1, {i}) g;"))
        .collect();
    c.batch_execute(&ddl).unwrap();
    let row = c
        .query_one(
            "SELECT status, tables, rows FROM backup.create(label => 'many', jobs => 64)",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "completed");
    assert_eq!(row.get::<_, i64>(1), 30);
    assert_eq!(row.get::<_, i64>(2), (1..=30).sum::<i64>());
    let notices = notices.lock().unwrap().clone();
    assert!(
        notices
            .iter()
            .any(|n| n.contains("parallel workers could start (max_worker_processes = 16)")),
        "{notices:?}"
    );
    assert!(
        !notices.iter().any(|n| n.contains("record history")),
        "a worker slot is left for the history writer: {notices:?}"
    );
    // Out of range is refused before anything starts.
    expect_err(&mut c, "SELECT * FROM backup.create(jobs => 0)", "22023");
}

#[test]
fn a_restore_too_big_for_one_transaction_commits_in_batches_with_atomic_false() {
    if !enabled() {
        return;
    }
    // A small lock table, so that a few hundred tables are already too many for one
    // transaction (with the default settings the same happens at a few thousand: make bench).
    // The table holds max_locks_per_transaction * (max_connections + ...) locks, and 18 finds
    // room for more in the same settings (800 tables fit there with 16 and 100 connections).
    let s = Server::start_in_env_locale("max_locks_per_transaction = 16\nmax_connections = 20");
    let mut c = s.connect("app");
    let n = 800;
    for chunk in (1..=n).collect::<Vec<i64>>().chunks(50) {
        let ddl: String = chunk
            .iter()
            .map(|i| {
                format!("CREATE TABLE t{i} (id int PRIMARY KEY, v text); INSERT INTO t{i} VALUES (1, 'row of {i}');")
            })
            .collect();
        c.batch_execute(&ddl).unwrap();
    }
    let id = create(&mut c, "label => 'many'");
    let fresh = |name: &str| {
        s.connect("postgres")
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let mut r = s.connect(name);
        r.batch_execute("CREATE EXTENSION pg_backup").unwrap();
        r
    };
    let tables = "SELECT count(*) FROM pg_class WHERE relname ~ '^t[0-9]+$' AND relkind = 'r'";

    // All or nothing: one transaction cannot lock every table.
    let mut r = fresh("atomic");
    let err = r
        .query("SELECT * FROM backup.restore($1)", &[&id])
        .unwrap_err();
    assert!(
        ["53200", "53400"].contains(&sqlstate(&err).as_str()),
        "{err:?}"
    );
    assert_eq!(count(&mut r, tables), 0, "an atomic restore leaves nothing");

    // Not inside a transaction block: its commits could not be rolled back with it.
    let mut t = r.transaction().unwrap();
    expect_err_with(
        &mut t,
        "SELECT * FROM backup.restore($1, atomic => false)",
        &[&id],
        "25001",
    );
    t.rollback().unwrap();

    // Batches: everything restores, and the history row says so.
    let rows = r
        .query(
            "SELECT status, count(*) FROM backup.restore($1, atomic => false) GROUP BY 1",
            &[&id],
        )
        .unwrap();
    let statuses: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].0, "ok");
    assert_eq!(count(&mut r, tables), n);
    assert_eq!(
        count(
            &mut r,
            "SELECT count(*) FROM pg_constraint WHERE conname ~ '^t[0-9]+_pkey$'"
        ),
        n
    );
    let rows_sum: String = r
        .query_one("SELECT string_agg(v, ',' ORDER BY v) FROM (SELECT v FROM t1 UNION ALL SELECT v FROM t800) x", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows_sum, "row of 1,row of 800");
    let row = r
        .query_one(
            "SELECT status, row_count, error, progress IS NULL FROM backup.restores ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "completed");
    assert_eq!(row.get::<_, Option<i64>>(1), Some(n));
    assert_eq!(row.get::<_, Option<String>>(2), None);
    assert!(row.get::<_, bool>(3));
    assert_eq!(copy_workers(&mut r), 0);

    // A failure half-way: what was committed stays, and the row lists it.
    let mut r = fresh("halfway");
    r.batch_execute("CREATE TABLE t700 (id int PRIMARY KEY, v text); INSERT INTO t700 VALUES (1, 'already here');")
        .unwrap();
    let err = expect_err_with(
        &mut r,
        "SELECT * FROM backup.restore($1, existing => 'append', atomic => false)",
        &[&id],
        "23505",
    );
    let message = err.as_db_error().unwrap().message().to_string();
    assert!(
        message.contains("were committed before the failure"),
        "{message}"
    );
    let row = r
        .query_one(
            "SELECT status, error, jsonb_array_length(progress->'restored'), progress->'restored' ? 'table public.t1'
             FROM backup.restores ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert!(row.get::<_, String>(1).contains("23505"));
    let listed: i32 = row.get(2);
    assert!(listed > 0);
    assert!(row.get::<_, bool>(3), "t1 was committed and is listed");
    let kept = count(&mut r, tables);
    assert!(kept > 1 && kept <= n, "{kept} tables stay");
    assert_eq!(
        count(&mut r, "SELECT count(*) FROM t1"),
        1,
        "t1's rows were committed"
    );

    // A cancel: the worker rolls back its batch, records the failure, and the call ends.
    let mut r = fresh("cancelled");
    let cs = s.conn_str("cancelled", None);
    let id2 = id.clone();
    let restore = std::thread::spawn(move || {
        let mut c = Client::connect(&cs, NoTls).unwrap();
        c.query("SELECT * FROM backup.restore($1, atomic => false)", &[&id2])
            .map(|_| ())
            .map_err(|e| sqlstate(&e))
    });
    let pid = loop {
        let rows = r
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = 'cancelled' AND query ~ 'atomic => false' AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap();
        if let Some(p) = rows.first() {
            break p.get::<_, i32>(0);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    wait_for(&mut r, tables, 50, 60);
    r.query("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
    assert_eq!(restore.join().unwrap(), Err("57014".to_string()));
    let st: String = r
        .query_one(
            "SELECT status FROM backup.restores ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(st, "failed");
    assert_eq!(
        count(
            &mut r,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_backup restore worker'"
        ),
        0
    );
}

#[test]
fn parallel_workers_write_what_the_session_would() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let (mut c, notices) = connect_with_notices(&s, "app");
    // Settings that change how COPY writes values: the workers must take the session's.
    c.batch_execute(
        "SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'sql_standard';
         SET extra_float_digits = 0; SET bytea_output = 'escape'; SET TimeZone = 'Asia/Kolkata';
         CREATE TABLE a (id int, d date, t timestamptz, i interval, f float8, b bytea, m money);
         INSERT INTO a SELECT g, date '2024-01-31' + g, timestamptz '2024-01-31 12:00+00' + g * interval '1 hour',
                g * interval '1 day 2 hours', 1.0 / g, decode(md5(g::text), 'hex'), g * 1.25
         FROM generate_series(1, 5000) g;
         CREATE TABLE b AS SELECT * FROM a;",
    )
    .unwrap();
    let digests = |c: &mut Client, jobs: i32| -> Vec<String> {
        let path: String = c
            .query_one(
                &format!("SELECT path FROM backup.create(tables => '{{a,b}}', compression => 'none', jobs => {jobs}, verbose => true)"),
                &[],
            )
            .unwrap()
            .get(0);
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(Path::new(&path).join("manifest.json")).unwrap())
                .unwrap();
        m["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| format!("{} {} {}", f["table"], f["raw_bytes"], f["sha256"]))
            .collect()
    };
    let in_session = digests(&mut c, 1);
    notices.lock().unwrap().clear();
    let by_workers = digests(&mut c, 2);
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("2 parallel workers copy")),
        "{:?}",
        notices.lock().unwrap()
    );
    assert_eq!(in_session, by_workers, "the same bytes, file by file");
}

/// The most job workers of restore(jobs => N) seen at once while `f` runs (polled).
fn max_job_workers_during<T>(s: &Server, f: impl FnOnce() -> T) -> (T, i64) {
    let stop = Arc::new(AtomicBool::new(false));
    let cs = s.conn_str("postgres", None);
    let flag = stop.clone();
    let watcher = std::thread::spawn(move || {
        let mut c = Client::connect(&cs, NoTls).unwrap();
        let mut most = 0;
        while !flag.load(Ordering::Relaxed) {
            most = most.max(job_workers(&mut c));
            std::thread::sleep(Duration::from_millis(10));
        }
        most
    });
    let out = f();
    stop.store(true, Ordering::Relaxed);
    (out, watcher.join().unwrap())
}

fn job_workers(c: &mut Client) -> i64 {
    count(
        c,
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_backup restore job worker'",
    )
}

/// No restore worker of any kind is left, within `secs` seconds.
fn assert_restore_workers_gone(c: &mut Client, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let n = count(
            c,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('pg_backup restore worker', 'pg_backup restore job worker')",
        );
        if n == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} restore worker(s) still run after {secs} s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn restore_with_jobs_spreads_rows_and_indexes_over_workers_and_restores_faithfully() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut c = s.connect("app");
    // Foreign keys, indexes (one on an expression), CHECKs, identity and serial sequences,
    // a partitioned table, a trigger, and a table of another owner whose CHECK only passes
    // when rows load with that owner's rights (never the workers' own).
    c.batch_execute(
        "CREATE ROLE alice;
         CREATE SCHEMA shop; GRANT USAGE ON SCHEMA shop TO alice;
         CREATE FUNCTION shop.loaded_by_owner(t text) RETURNS boolean LANGUAGE sql
             AS $$ SELECT current_user = 'alice' $$;
         CREATE TABLE shop.customers (id bigserial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
         CREATE TABLE shop.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             customer_id bigint NOT NULL REFERENCES shop.customers, amount numeric(12,2) CHECK (amount >= 0),
             placed_at timestamptz NOT NULL);
         CREATE INDEX orders_customer ON shop.orders (customer_id);
         CREATE INDEX orders_placed ON shop.orders (placed_at);
         CREATE TABLE shop.items (order_id bigint REFERENCES shop.orders ON DELETE CASCADE, sku text,
             qty int CHECK (qty > 0), PRIMARY KEY (order_id, sku));
         CREATE INDEX items_sku ON shop.items (lower(sku));
         CREATE TABLE shop.events (id int, at date NOT NULL, payload text) PARTITION BY RANGE (at);
         CREATE TABLE shop.events_2024 PARTITION OF shop.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         CREATE TABLE shop.events_2025 PARTITION OF shop.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         ALTER TABLE shop.events ADD PRIMARY KEY (id, at);
         CREATE INDEX events_payload ON shop.events (payload);
         CREATE FUNCTION shop.stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.placed_at := now(); RETURN NEW; END $$;
         CREATE TRIGGER orders_stamp BEFORE INSERT ON shop.orders FOR EACH ROW WHEN (NEW.placed_at IS NULL) EXECUTE FUNCTION shop.stamp();
         CREATE TABLE shop.audit (id serial PRIMARY KEY, note text CHECK (shop.loaded_by_owner(note)));
         ALTER TABLE shop.audit OWNER TO alice;
         INSERT INTO shop.customers (name, email) SELECT 'customer ' || i, 'c' || i || '@example.org' FROM generate_series(1, 20000) i;
         INSERT INTO shop.orders (customer_id, amount, placed_at)
             SELECT 1 + i % 20000, (i % 997) / 10.0, '2025-01-01'::timestamptz + i * interval '1 minute' FROM generate_series(1, 100000) i;
         INSERT INTO shop.items SELECT 1 + i / 2, 'sku-' || (i % 2), 1 + i % 5 FROM generate_series(0, 199999) i;
         INSERT INTO shop.events SELECT i, '2024-01-01'::date + i % 700, repeat('x', i % 50) FROM generate_series(1, 50000) i;
         SET ROLE alice; INSERT INTO shop.audit (note) SELECT 'note ' || i FROM generate_series(1, 1000) i; RESET ROLE;
         SELECT setval('shop.customers_id_seq', 30000);",
    )
    .unwrap();
    let source = data_fingerprint(&mut c);
    for format in ["native", "sql"] {
        let id = backup_id(&mut c, format);
        let db = format!("jobs_{format}");
        let mut r = fresh_database(&s, &db, "");
        let (rows, most) = max_job_workers_during(&s, || {
            r.query(
                "SELECT object, kind, status, detail FROM backup.restore($1, atomic => false, jobs => 2)",
                &[&id],
            )
            .unwrap()
        });
        let problems: Vec<String> = rows
            .iter()
            .filter(|r| r.get::<_, String>(2) != "ok")
            .map(|r| {
                format!(
                    "{} {} {} {:?}",
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    r.get::<_, Option<String>>(3)
                )
            })
            .collect();
        assert!(problems.is_empty(), "{format}: {problems:#?}");
        assert!(
            most >= 2,
            "{format}: two job workers at once (most seen: {most})"
        );
        assert_same_schema(&s, "app", &db);
        assert_eq!(
            data_fingerprint(&mut r),
            source,
            "{format}: rows and sequences"
        );
        let row = r
            .query_one(
                "SELECT status, row_count, error, options->>'jobs' FROM backup.restores ORDER BY id DESC LIMIT 1",
                &[],
            )
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "completed");
        assert_eq!(row.get::<_, Option<i64>>(1), Some(371_000));
        assert_eq!(row.get::<_, Option<String>>(2), None);
        assert_eq!(row.get::<_, Option<String>>(3).as_deref(), Some("2"));
        assert_restore_workers_gone(&mut r, 10);
    }
}

#[test]
fn restore_with_jobs_names_a_failing_entry_continues_on_request_and_stops_on_cancel() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut c = s.connect("app");
    let mut ddl = String::new();
    for i in 1..=12 {
        ddl.push_str(&format!(
            "CREATE TABLE t{i} (id int PRIMARY KEY, v text); INSERT INTO t{i} SELECT g, 'row ' || g FROM generate_series(1, 2000) g;"
        ));
    }
    ddl.push_str(
        "CREATE TABLE big1 (id int, v text); CREATE TABLE big2 (id int, v text);
         INSERT INTO big1 SELECT g, md5(g::text) FROM generate_series(1, 1500000) g;
         INSERT INTO big2 SELECT g, md5(g::text) FROM generate_series(1, 1500000) g;
         CREATE INDEX ON big1 (v); CREATE INDEX ON big2 (v);",
    );
    c.batch_execute(&ddl).unwrap();
    let id = backup_id(&mut c, "native");

    // jobs => N commits as it goes: not with atomic => true; and a sensible number.
    let mut r = fresh_database(&s, "refused", "");
    for (sql, what) in [
        ("SELECT * FROM backup.restore($1, jobs => 2)", "atomic"),
        (
            "SELECT * FROM backup.restore($1, atomic => true, jobs => 2)",
            "atomic",
        ),
        (
            "SELECT * FROM backup.restore($1, atomic => false, jobs => 0)",
            "jobs",
        ),
    ] {
        let err = r.query(sql, &[&id]).unwrap_err();
        assert_eq!(sqlstate(&err), "22023", "{sql}: {err:?}");
        let db = err.as_db_error().unwrap();
        assert!(db.message().contains(what), "{}", db.message());
        assert!(db.hint().is_some(), "{sql}: a hint");
    }
    assert_eq!(
        count(&mut r, "SELECT count(*) FROM pg_class WHERE relname = 't1'"),
        0
    );

    // A worker's entry fails (rows that clash with a table kept as it is): the restore
    // fails naming it, and the history row lists what was committed.
    let clash =
        "CREATE TABLE t7 (id int PRIMARY KEY, v text); INSERT INTO t7 VALUES (5, 'here before');";
    let mut r = fresh_database(&s, "failing", "");
    r.batch_execute(clash).unwrap();
    let err = expect_err_with(
        &mut r,
        "SELECT * FROM backup.restore($1, existing => 'append', atomic => false, jobs => 2)",
        &[&id],
        "23505",
    );
    let message = err.as_db_error().unwrap().message().to_string();
    assert!(message.contains("public.t7"), "names the entry: {message}");
    assert!(!message.contains("row 5"), "no row values: {message}");
    let row = r
        .query_one(
            "SELECT status, error, jsonb_array_length(progress->'restored') FROM backup.restores ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert!(row.get::<_, String>(1).contains("public.t7"));
    assert!(row.get::<_, i32>(2) > 0, "the committed entries are listed");
    assert_restore_workers_gone(&mut r, 10);

    // on_error => 'continue': that entry fails alone, everything else is restored.
    let mut r = fresh_database(&s, "continuing", "");
    r.batch_execute(clash).unwrap();
    let rows = r
        .query(
            "SELECT object, kind, status FROM backup.restore($1, existing => 'append', on_error => 'continue', atomic => false, jobs => 2)
             WHERE status <> 'ok'",
            &[&id],
        )
        .unwrap();
    let failed: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        failed,
        vec![(
            "public.t7".to_string(),
            "table_data".to_string(),
            "failed".to_string()
        )]
    );
    assert_eq!(count(&mut r, "SELECT count(*) FROM t12"), 2000);
    assert_eq!(count(&mut r, "SELECT count(*) FROM big2"), 1_500_000);
    assert_eq!(count(&mut r, "SELECT count(*) FROM t7"), 1);

    // More workers than max_worker_processes (16) has slots: the restore goes on with those
    // that could start.
    let mut r = fresh_database(&s, "many_jobs", "");
    let (rows, most) = max_job_workers_during(&s, || {
        r.query(
            "SELECT status FROM backup.restore($1, atomic => false, jobs => 40) WHERE status <> 'ok'",
            &[&id],
        )
        .unwrap()
    });
    assert!(rows.is_empty());
    assert!((2..16).contains(&most), "{most} job workers");
    assert_eq!(count(&mut r, "SELECT count(*) FROM big1"), 1_500_000);
    assert_eq!(count(&mut r, "SELECT count(*) FROM t12"), 2000);
    assert_restore_workers_gone(&mut r, 10);

    // A cancel of the caller stops the leader and every job worker promptly.
    let mut r = fresh_database(&s, "cancelled_jobs", "");
    let cs = s.conn_str("cancelled_jobs", None);
    let id2 = id.clone();
    let restore = std::thread::spawn(move || {
        let mut c = Client::connect(&cs, NoTls).unwrap();
        c.query(
            "SELECT * FROM backup.restore($1, atomic => false, jobs => 2)",
            &[&id2],
        )
        .map(|_| ())
        .map_err(|e| sqlstate(&e))
    });
    assert_eq!(
        wait_for(
            &mut r,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_backup restore job worker'",
            2,
            60
        ),
        2,
        "two job workers run"
    );
    let pid: i32 = r
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE datname = 'cancelled_jobs' AND query ~ 'jobs => 2' AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    let asked = Instant::now();
    r.query("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
    assert_eq!(restore.join().unwrap(), Err("57014".to_string()));
    assert_restore_workers_gone(&mut r, 10);
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "stopped promptly: {:?}",
        asked.elapsed()
    );
    let st: String = r
        .query_one(
            "SELECT status FROM backup.restores ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(st, "failed");
}

/// Issue 18: the column option PostgreSQL sets itself on every column it creates (`pg_attver`,
/// in recent minor releases) stays out of the archive, as pg_dump leaves it out: a restore ran
/// one `ALTER TABLE ... SET (pg_attver=...)` per column for it (3,032 statements for the
/// regression database, 30,000 for 10,000 three-column tables), and each column it creates
/// gets its own anyway. Options a user set (n_distinct) are still backed up and restored.
#[test]
fn the_servers_own_column_options_stay_out_of_the_archive() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut c = s.connect("app");
    c.batch_execute(
        "CREATE TABLE wide (a int, b text, c int);
         ALTER TABLE wide ALTER COLUMN c SET (n_distinct = 5);
         INSERT INTO wide VALUES (1, 'x', 2);",
    )
    .unwrap();
    let created = c
        .query_one(
            "SELECT backup_id, path FROM backup.create(tables => '{wide}', compression => 'none')",
            &[],
        )
        .unwrap();
    let (id, path): (String, String) = (created.get(0), created.get(1));
    let manifest = std::fs::read_to_string(Path::new(&path).join("manifest.json")).unwrap();
    assert!(
        !manifest.contains("pg_attver"),
        "the archive carries the server's own column option"
    );
    assert!(
        manifest.contains("n_distinct"),
        "the user's column option is backed up"
    );
    s.connect("postgres")
        .batch_execute("CREATE DATABASE restored")
        .unwrap();
    let mut r = s.connect("restored");
    r.batch_execute("CREATE EXTENSION pg_backup; SELECT count(*) FROM backup.rescan()")
        .unwrap();
    r.execute("SELECT count(*) FROM backup.restore($1)", &[&id])
        .unwrap();
    let options: Vec<String> = r
        .query(
            "SELECT a.attname || ' ' || o FROM pg_attribute a, unnest(a.attoptions) o
             WHERE a.attrelid = 'wide'::regclass AND o NOT LIKE 'pg\\_attver=%' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(options, vec!["c n_distinct=5".to_string()]);
    let row: String = r
        .query_one("SELECT wide::text FROM wide", &[])
        .unwrap()
        .get(0);
    assert_eq!(row, "(1,x,2)");
}

// ---------------------------------------------------------------------------------------------
// Planner statistics (issue 19).

/// A source database with an analyzed table `st` (skewed values, a text column, NULLs, a
/// range) and a table `plain` that was never analyzed; its backup's id.
fn statistics_source(s: &Server, c: &mut Client) -> String {
    c.batch_execute(
        "CREATE TABLE st (id int PRIMARY KEY, cat int, name text, r int4range, tags int[]);
         INSERT INTO st SELECT g, (g % 7) * (g % 3), CASE WHEN g % 10 = 0 THEN NULL ELSE 'n' || (g % 50) END,
                               int4range(g, g + g % 20), ARRAY[g % 5, g % 11]
           FROM generate_series(1, 30000) g;
         ANALYZE st;
         CREATE TABLE plain (x int);
         INSERT INTO plain SELECT g FROM generate_series(1, 1000) g;",
    )
    .unwrap();
    let id = create(c, "");
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.backup_dir().join(&id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let stats: Vec<&serde_json::Value> = m["toc"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "statistics_data")
        .collect();
    // One entry, for the analyzed table only, in the data section, with every column.
    assert_eq!(stats.len(), 1, "{stats:#?}");
    assert_eq!(stats[0]["name"], "st");
    assert_eq!(stats[0]["section"], "data");
    assert_eq!(stats[0]["sql"], "");
    assert_eq!(
        stats[0]["statistics"]["columns"].as_array().unwrap().len(),
        5
    );
    id
}

/// What the planner knows of table `t`: its pg_class counts and its pg_stats rows, as text.
fn planner_statistics(c: &mut Client, t: &str) -> Vec<String> {
    let mut out = strings(
        c,
        &format!(
            "SELECT relpages || ' ' || reltuples FROM pg_class WHERE oid = 'public.{t}'::regclass"
        ),
    );
    out.extend(strings(
        c,
        &format!(
            "SELECT concat_ws(' | ', attname, inherited, null_frac, avg_width, n_distinct,
                    most_common_vals, most_common_freqs, histogram_bounds, correlation,
                    most_common_elems, most_common_elem_freqs, elem_count_histogram)
             FROM pg_stats WHERE schemaname = 'public' AND tablename = '{t}' ORDER BY attname"
        ),
    ));
    out
}

/// (analyze_count, last_analyze is null) of a table, after the counters are flushed.
fn analyzed(s: &Server, db: &str, t: &str) -> (i64, bool) {
    let mut c = s.connect(db);
    let r = c
        .query_one(
            "SELECT coalesce(analyze_count, 0), last_analyze IS NULL FROM pg_stat_user_tables WHERE relname = $1",
            &[&t],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

/// Restore `id` into a new database `db` with `options`; the restore's rows for statistics.
fn restore_with(s: &Server, db: &str, id: &str, options: &str) -> Vec<String> {
    let mut c = fresh_database(s, db, "");
    c.batch_execute("SELECT * FROM backup.rescan()").unwrap();
    let rows = c
        .query(
            &format!(
                "SELECT object, kind, action, status, coalesce(detail, '') FROM backup.restore('{id}'{options})"
            ),
            &[],
        )
        .unwrap();
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| r.get::<_, String>(3) == "failed")
        .map(|r| {
            format!(
                "{} {} {}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(4)
            )
        })
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    assert_eq!(count(&mut c, "SELECT count(*) FROM st"), 30000);
    assert_eq!(count(&mut c, "SELECT count(*) FROM plain"), 1000);
    c.batch_execute("SELECT pg_stat_force_next_flush()")
        .unwrap();
    rows.iter()
        .filter(|r| r.get::<_, String>(1) == "statistics_data")
        .map(|r| {
            format!(
                "{} {} {} {}",
                r.get::<_, String>(0),
                r.get::<_, String>(2),
                r.get::<_, String>(3),
                r.get::<_, String>(4)
            )
        })
        .collect()
}

/// PostgreSQL 18: a restore gives an analyzed table the source's planner statistics
/// (pg_class counts, every pg_stats column) with pg_restore_relation_stats /
/// pg_restore_attribute_stats and runs no ANALYZE for it, while a table without statistics
/// in the backup is analyzed; serial and with jobs => 2. Built for 18 only (the functions do
/// not exist before): on 15 it is reported as ignored.
#[test]
#[cfg_attr(
    not(feature = "pg18"),
    ignore = "needs PostgreSQL 18: cargo test --no-default-features --features pg18 with PG_CONFIG of 18"
)]
fn postgresql_18_restores_planner_statistics_instead_of_analyze() {
    if !enabled() {
        return;
    }
    let s = Server::start("autovacuum = off");
    let mut c = s.connect("app");
    let version: i32 = text(&mut c, "SHOW server_version_num").parse().unwrap();
    assert!(
        version >= 180000,
        "this test needs PostgreSQL 18, the server is {version}"
    );
    let id = statistics_source(&s, &mut c);
    let want = planner_statistics(&mut c, "st");
    assert!(want.len() > 5, "{want:#?}");
    for (db, options) in [
        ("stats_serial", ""),
        ("stats_jobs", ", jobs => 2, atomic => false"),
    ] {
        let rows = restore_with(&s, db, &id, options);
        assert_eq!(rows.len(), 1, "{db}: {rows:#?}");
        assert!(
            rows[0].starts_with("public.st create ok"),
            "{db}: {rows:#?}"
        );
        let mut d = s.connect(db);
        assert_eq!(planner_statistics(&mut d, "st"), want, "{db}");
        assert_eq!(analyzed(&s, db, "st"), (0, true), "{db}: st was analyzed");
        assert_eq!(
            analyzed(&s, db, "plain").0,
            1,
            "{db}: plain was not analyzed"
        );
    }
    // backup.restore_statistics = off: ANALYZE as on 15.
    let mut c2 = fresh_database(&s, "stats_off", "");
    c2.batch_execute("SELECT * FROM backup.rescan()").unwrap();
    c2.batch_execute("SET backup.restore_statistics = off")
        .unwrap();
    let skipped = count(
        &mut c2,
        &format!("SELECT count(*) FROM backup.restore('{id}') WHERE kind = 'statistics_data' AND action = 'skip' AND detail LIKE '%restore_statistics is off%'"),
    );
    assert_eq!(skipped, 1);
    c2.batch_execute("SELECT pg_stat_force_next_flush()")
        .unwrap();
    assert_eq!(analyzed(&s, "stats_off", "st").0, 1);

    // A table with an expression index, and one with extended statistics: ANALYZE computes
    // their statistics too, pg_restore_*_stats cannot set them, so those tables are analyzed
    // instead, and the restored planner has the index expression's and the extended ones.
    c.batch_execute(
        "CREATE TABLE ex (id int, name text);
         INSERT INTO ex SELECT g, 'Name' || (g % 40) FROM generate_series(1, 5000) g;
         CREATE INDEX ex_lower ON ex (lower(name));
         CREATE TABLE es (a int, b int);
         INSERT INTO es SELECT g % 10, g % 10 FROM generate_series(1, 5000) g;
         CREATE STATISTICS es_ab (dependencies) ON a, b FROM es;
         ANALYZE ex; ANALYZE es;",
    )
    .unwrap();
    let id2 = create(&mut c, "");
    let rows = restore_with(&s, "stats_expr", &id2, "");
    for (table, why) in [("ex", "expression index"), ("es", "extended statistics")] {
        assert!(
            rows.iter()
                .any(|r| r.starts_with(&format!("public.{table} skip ok")) && r.contains(why)),
            "{table}: {rows:#?}"
        );
        assert_eq!(
            analyzed(&s, "stats_expr", table).0,
            1,
            "{table} was not analyzed"
        );
    }
    let mut d = s.connect("stats_expr");
    assert_eq!(
        count(
            &mut d,
            "SELECT count(*) FROM pg_stats WHERE tablename = 'ex_lower'"
        ),
        1,
        "the index expression's statistics"
    );
    assert_eq!(
        count(&mut d, "SELECT count(*) FROM pg_stats_ext WHERE statistics_name = 'es_ab' AND dependencies IS NOT NULL"),
        1,
        "the extended statistics"
    );
}

/// PostgreSQL 15 (no pg_restore_relation_stats): the backup records the statistics all the
/// same (an archive taken on 15 carries them to 18), and a restore on 15 skips them, says
/// why in its rows, and analyzes every loaded table as before.
#[test]
#[cfg_attr(
    feature = "pg18",
    ignore = "PostgreSQL 15's behaviour: run when built for 15 (postgresql_18_restores_planner_statistics_instead_of_analyze covers 18)"
)]
fn planner_statistics_are_recorded_and_a_server_without_pg_restore_stats_analyzes() {
    if !enabled() {
        return;
    }
    let s = Server::start("autovacuum = off");
    let mut c = s.connect("app");
    let id = statistics_source(&s, &mut c);
    let rows = restore_with(&s, "stats_15", &id, "");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert!(
        rows[0].starts_with("public.st skip ok") && rows[0].contains("pg_restore_relation_stats"),
        "{rows:#?}"
    );
    assert_eq!(analyzed(&s, "stats_15", "st").0, 1);
    assert_eq!(analyzed(&s, "stats_15", "plain").0, 1);
}

/// A parent's statistics over its inheritance tree (pg_stats' `inherited = true` rows) sample
/// its children's rows: a backup that leaves a child out (exclude_tables) records the parent's
/// own statistics only, so the left-out table's values do not come back through the archive;
/// with every child backed up, the tree's statistics are kept. Any version.
#[test]
fn statistics_of_an_inheritance_tree_are_left_out_with_a_left_out_child() {
    if !enabled() {
        return;
    }
    let s = Server::start("autovacuum = off");
    let mut c = s.connect("app");
    c.batch_execute(
        "CREATE TABLE parent (v text);
         CREATE TABLE secret_child () INHERITS (parent);
         INSERT INTO parent SELECT 'public' || (g % 3) FROM generate_series(1, 300) g;
         INSERT INTO secret_child SELECT 'hidden-value' FROM generate_series(1, 3000) g;
         ANALYZE parent; ANALYZE secret_child;",
    )
    .unwrap();
    let inherited_rows = |c: &mut Client, options: &str| -> (usize, bool) {
        let id = create(c, options);
        let raw = std::fs::read_to_string(s.backup_dir().join(&id).join("manifest.json")).unwrap();
        let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
        let entry = m["toc"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "statistics_data" && e["name"] == "parent")
            .expect("the parent's statistics")
            .clone();
        let inherited = entry["statistics"]["columns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|col| col["inherited"] == "true")
            .count();
        (inherited, raw.contains("hidden-value"))
    };
    assert_eq!(
        inherited_rows(&mut c, ""),
        (1, true),
        "every child backed up"
    );
    assert_eq!(
        inherited_rows(&mut c, "exclude_tables => '{secret_child}'"),
        (0, false),
        "the left-out child's values are not in the archive"
    );
}

/// `ALTER DATABASE ... SET` of the timeouts a server, database or role may default to: every
/// one pg_dump turns off in its session. From PostgreSQL 17 on `transaction_timeout` (which
/// ends the whole session, FATAL) is the shortest, 300 ms, so that it is the one that fires
/// where it is not turned off; the others 1 s (300 ms on 15). A wait of 1.5 s passes them all.
fn default_timeouts(c: &mut Client, db: &str) {
    let version: i32 = text(c, "SHOW server_version_num").parse().unwrap();
    let others = if version >= 170000 { "1s" } else { "300ms" };
    let mut sql = format!(
        "ALTER DATABASE {db} SET statement_timeout = '{others}';
         ALTER DATABASE {db} SET lock_timeout = '{others}';
         ALTER DATABASE {db} SET idle_in_transaction_session_timeout = '{others}';"
    );
    if version >= 170000 {
        sql.push_str(&format!(
            "ALTER DATABASE {db} SET transaction_timeout = '300ms';"
        ));
    }
    c.batch_execute(&sql).unwrap();
}

/// A scheduled backup runs in a session pg_backup opens itself: as pg_dump's, it is not ended
/// by the timeouts the database defaults to. It waits here for a lock held for 2 s, longer
/// than the database's lock_timeout and (17+) transaction_timeout, and completes.
#[test]
fn a_scheduled_backup_is_not_ended_by_the_databases_default_timeouts() {
    if !enabled() {
        return;
    }
    let (s, mut c) = scheduler_server();
    // Connected before the defaults: these sessions keep none of them.
    let mut holder = s.connect("postgres");
    default_timeouts(&mut c, "postgres");
    holder
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    c.query("SELECT * FROM backup.schedule('held', '2 seconds')", &[])
        .unwrap();
    // The run worker waits for the lock on t.
    let waiting = wait_for(
        &mut c,
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
         WHERE l.relation = 't'::regclass AND NOT l.granted AND a.backend_type <> 'client backend'",
        1,
        30,
    );
    assert_eq!(waiting, 1, "no scheduled backup waited for the lock");
    std::thread::sleep(Duration::from_secs(2));
    holder.batch_execute("COMMIT").unwrap();
    let done = wait_for(
        &mut c,
        "SELECT count(*) FROM backup.backups WHERE schedule = 'held' AND status <> 'running'",
        1,
        30,
    );
    assert!(done >= 1);
    c.execute(
        "UPDATE backup.schedules SET enabled = false WHERE name = 'held'",
        &[],
    )
    .unwrap();
    let first: (String, Option<String>) = c
        .query_one(
            "SELECT status, error FROM backup.backups WHERE schedule = 'held' AND status <> 'running'
             ORDER BY started_at LIMIT 1",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        first,
        ("completed".to_string(), None),
        "the backup that waited for the lock"
    );
    // Nothing of pg_backup's died meanwhile (a transaction_timeout is FATAL).
    assert!(
        !s.log_text().contains("terminating connection due to"),
        "{}",
        s.log_text()
    );
}

/// The sql format's script, run by psql into a database whose defaults would end a long
/// statement or transaction, turns those timeouts off first, as pg_dump's script does: a
/// COPY that takes longer than them (a CHECK constraint that sleeps) loads.
#[test]
fn the_sql_scripts_restore_is_not_ended_by_the_databases_default_timeouts() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut c = s.connect("app");
    c.batch_execute(
        "CREATE FUNCTION public.slow_ok(int) RETURNS boolean LANGUAGE sql
           AS 'SELECT pg_catalog.pg_sleep(0.5) IS NOT NULL';
         CREATE TABLE public.slow (x int CHECK (public.slow_ok(x)));
         INSERT INTO public.slow VALUES (1), (2), (3);",
    )
    .unwrap();
    let id: String = c
        .query_one(
            "SELECT backup_id FROM backup.create(format => 'sql', compression => 'none')",
            &[],
        )
        .unwrap()
        .get(0);
    let mut pg = s.connect("postgres");
    pg.batch_execute("CREATE DATABASE target").unwrap();
    default_timeouts(&mut pg, "target");
    let script = s.data.join("pg_backup").join(&id).join("backup.sql");
    let out = s
        .client("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "target", "-f"])
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql -f backup.sql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = count(&mut s.connect("target"), "SELECT count(*) FROM public.slow");
    assert_eq!(rows, 3);
}
