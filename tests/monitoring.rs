//! Health, overdue alerts and metrics (issue 21), end to end against a real PostgreSQL with
//! the scheduler running: `backup.health` shows an overdue schedule and the scheduler raises
//! `schedule_overdue` once per episode (heard by a session that LISTENs on backup_events);
//! `backup.metrics()` parses as Prometheus text with the reference parser (Python's
//! prometheus_client, installed by scripts/setup.sh) and carries the catalog's values; a
//! non-superuser in backup_operator reads both.
//! Run by `make test` (PG_BACKUP_E2E=1, after `cargo pgrx install`); skipped elsewhere.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

mod support;
use support::*;

/// A server whose scheduler reads database `postgres` (the default backup.database), with
/// pg_backup and a table there.
fn server(conf: &str) -> (Server, Client) {
    let s = Server::start(conf);
    let mut c = s.connect("postgres");
    c.batch_execute(
        "CREATE EXTENSION pg_backup; CREATE TABLE t AS SELECT generate_series(1, 1000) AS x;",
    )
    .unwrap();
    (s, c)
}

/// The payloads of the `schedule_overdue` events heard on `listener` within `secs` seconds.
fn overdue_events(listener: &mut Client, secs: u64) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        let mut n = listener.notifications();
        let mut it = n.timeout_iter(left);
        match it.next() {
            Ok(Some(note)) => {
                assert_eq!(note.channel(), "backup_events");
                let v: serde_json::Value = serde_json::from_str(note.payload())
                    .unwrap_or_else(|e| panic!("payload is not JSON ({e}): {}", note.payload()));
                if v["event"] == "schedule_overdue" {
                    out.push(v);
                }
            }
            Ok(None) => return out,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn an_overdue_schedule_shows_in_health_and_alerts_once_per_episode() {
    if !enabled() {
        return;
    }
    // Due at the schedule's next fire time after its last success (or its creation), overdue
    // 3 seconds later.
    let (s, mut c) = server("backup.overdue_grace = 3");
    let mut listener = s.connect("postgres");
    listener.batch_execute("LISTEN backup_events").unwrap();
    c.batch_execute("CREATE TABLE gone_soon (x int)").unwrap();
    // Fires every 2 seconds; every run fails (its table is gone).
    c.query(
        "SELECT * FROM backup.schedule('broken', '2 seconds', tables => '{gone_soon}')",
        &[],
    )
    .unwrap();
    c.batch_execute("DROP TABLE gone_soon").unwrap();
    // Due at the next 02:30 in Berlin: not overdue. Paused: never overdue.
    c.query(
        "SELECT * FROM backup.schedule('nightly', '30 2 * * *', timezone => 'Europe/Berlin')",
        &[],
    )
    .unwrap();
    c.query(
        "SELECT * FROM backup.schedule('paused', '2 seconds', enabled => false)",
        &[],
    )
    .unwrap();
    assert!(
        wait_until(
            &mut c,
            "SELECT coalesce((SELECT overdue FROM backup.health WHERE name = 'broken'), false)",
            30
        ),
        "'broken' never became overdue: {:?}",
        strings(&mut c, "SELECT row_to_json(h)::text FROM backup.health h")
    );
    let r = c
        .query_one(
            "SELECT last_success_at IS NULL, cron_interval = interval '2 seconds', failed_runs,
                    overdue_at = due_at + interval '3 seconds', database, last_status
             FROM backup.health WHERE name = 'broken'",
            &[],
        )
        .unwrap();
    assert!(r.get::<_, bool>(0), "no success yet");
    assert!(r.get::<_, bool>(1), "the interval its cron implies");
    assert!(r.get::<_, i64>(2) >= 1, "failed runs are counted");
    assert!(
        r.get::<_, bool>(3),
        "overdue_at is the due time plus the grace"
    );
    assert_eq!(r.get::<_, String>(4), "postgres");
    // The daily one is due at its next 02:30 in its own time zone, a day apart.
    let r = c
        .query_one(
            "SELECT timezone, to_char(due_at AT TIME ZONE 'Europe/Berlin', 'HH24:MI'),
                    due_at > now() AND due_at <= now() + interval '1 day',
                    cron_interval BETWEEN interval '23 hours' AND interval '25 hours', overdue
             FROM backup.health WHERE name = 'nightly'",
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "Europe/Berlin");
    assert_eq!(r.get::<_, String>(1), "02:30");
    assert!(r.get::<_, bool>(2) && r.get::<_, bool>(3) && !r.get::<_, bool>(4));
    // Several more runs fail and the scheduler wakes for each: one alert for the episode.
    let first = overdue_events(&mut listener, 8);
    let broken: Vec<_> = first.iter().filter(|e| e["schedule"] == "broken").collect();
    assert_eq!(broken.len(), 1, "one alert per episode: {first:#?}");
    assert_eq!(broken[0]["database"], "postgres");
    assert!(broken[0]["overdue_since"].is_string(), "{:#?}", broken[0]);
    assert!(
        first.iter().all(|e| e["schedule"] == "broken"),
        "only 'broken' is overdue: {first:#?}"
    );
    let failed_before = count(
        &mut c,
        "SELECT failed_runs FROM backup.schedules WHERE name = 'broken'",
    );
    assert!(failed_before >= 3, "{failed_before} failed runs");
    let states: BTreeMap<String, bool> = c
        .query("SELECT name, overdue FROM backup.health", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([
            ("broken".to_string(), true),
            ("nightly".to_string(), false),
            ("paused".to_string(), false),
        ])
    );

    // The table comes back: the next run succeeds, the episode ends.
    c.batch_execute("CREATE TABLE gone_soon (x int)").unwrap();
    assert!(
        wait_until(
            &mut c,
            "SELECT NOT overdue AND overdue_alerted_at IS NULL AND last_success_at IS NOT NULL
             FROM backup.health WHERE name = 'broken'",
            30
        ),
        "{:?}",
        strings(
            &mut c,
            "SELECT row_to_json(h)::text FROM backup.health h WHERE name = 'broken'"
        )
    );
    let r = c
        .query_one(
            "SELECT h.last_success_backup_id = b.id, h.last_success_bytes = b.bytes,
                    h.last_success_rows = b.row_count, h.last_success_age < interval '10 seconds'
             FROM backup.health h JOIN backup.backups b ON b.id = h.last_success_backup_id
             WHERE h.name = 'broken'",
            &[],
        )
        .unwrap();
    assert!(
        r.get::<_, bool>(0) && r.get::<_, bool>(1) && r.get::<_, bool>(2) && r.get::<_, bool>(3),
        "the last success is the backup's row"
    );
    // No alert while it succeeds.
    let quiet = overdue_events(&mut listener, 5);
    assert!(quiet.is_empty(), "{quiet:#?}");

    // It fails again: a new episode, alerted once more.
    c.batch_execute("DROP TABLE gone_soon").unwrap();
    assert!(wait_until(
        &mut c,
        "SELECT overdue FROM backup.health WHERE name = 'broken'",
        30
    ));
    let second = overdue_events(&mut listener, 8);
    assert_eq!(
        second.iter().filter(|e| e["schedule"] == "broken").count(),
        1,
        "{second:#?}"
    );
    // A paused schedule is not overdue, and its episode ends.
    c.batch_execute("UPDATE backup.schedules SET enabled = false WHERE name = 'broken'")
        .unwrap();
    assert!(wait_until(
        &mut c,
        "SELECT NOT overdue AND overdue_alerted_at IS NULL FROM backup.health WHERE name = 'broken'",
        20
    ));
}

/// One sample as prometheus_client's parser read it.
#[derive(Debug, Clone)]
struct Sample {
    family: String,
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// `text` parsed by prometheus_client's text parser (the reference implementation); a parse
/// error fails the test.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        out.append({"family": f.name, "type": f.type, "documentation": f.documentation,
                    "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (make setup installs prometheus_client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse backup.metrics():\n{}\n--- text:\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter()
        .map(|s| {
            assert!(
                s["documentation"].as_str().is_some_and(|d| !d.is_empty()),
                "{s}"
            );
            Sample {
                family: s["family"].as_str().unwrap().into(),
                kind: s["type"].as_str().unwrap().into(),
                name: s["name"].as_str().unwrap().into(),
                labels: serde_json::from_value(s["labels"].clone()).unwrap(),
                value: s["value"].as_f64().unwrap(),
            }
        })
        .collect()
}

/// The value of sample `name` with exactly `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == want)
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} twice");
    found.first().map(|s| s.value)
}

#[test]
fn metrics_parse_as_prometheus_text_and_carry_the_catalogs_values() {
    if !enabled() {
        return;
    }
    let (s, mut c) = server("");
    // A database whose name needs escaping in a label value, backed up by a schedule of the
    // scheduler's database: its numbers come from the run, recorded on the schedule.
    let odd = "we\"ird\\ db";
    c.batch_execute(&format!("CREATE DATABASE \"{}\"", odd.replace('"', "\"\"")))
        .unwrap();
    {
        let mut o = postgres::Config::new()
            .host_path(&s.socket)
            .port(s.port)
            .user(&superuser())
            .dbname(odd)
            .connect(postgres::NoTls)
            .unwrap();
        o.batch_execute(
            "CREATE EXTENSION pg_backup; CREATE TABLE big AS SELECT generate_series(1, 5000) AS y;",
        )
        .unwrap();
    }
    c.query(
        "SELECT * FROM backup.schedule('odd', '@daily', database => $1)",
        &[&odd],
    )
    .unwrap();
    c.query("SELECT * FROM backup.schedule('nightly', '@daily')", &[])
        .unwrap();
    c.batch_execute("CREATE TABLE gone_soon (x int)").unwrap();
    c.query(
        "SELECT * FROM backup.schedule('broken', '@daily', tables => '{gone_soon}')",
        &[],
    )
    .unwrap();
    c.batch_execute("DROP TABLE gone_soon").unwrap();
    for name in ["nightly", "odd"] {
        let st: String = c
            .query_one("SELECT status FROM backup.run_schedule($1)", &[&name])
            .unwrap()
            .get(0);
        assert_eq!(st, "completed", "{name}");
    }
    let st: String = c
        .query_one("SELECT status FROM backup.run_schedule('broken')", &[])
        .unwrap()
        .get(0);
    assert_eq!(st, "failed");
    let manual = create(&mut c, "label => 'by-hand'");
    c.query("SELECT * FROM backup.verify($1)", &[&manual])
        .unwrap();
    // What a drill records (the drill itself is tested with backup.drill()).
    let nightly_id: String = one(
        &mut c,
        "SELECT id FROM backup.backups WHERE schedule = 'nightly' AND status = 'completed'",
    );
    c.execute(
        "INSERT INTO backup.drills (backup_id, schedule, database, status, started_at, finished_at,
                                    restore_duration, backup_age, tables_checked, rows_checked)
         VALUES ($1, 'nightly', 'postgres', 'failed', now() - interval '2 hours', now() - interval '2 hours',
                 interval '1 second', interval '1 hour', 1, 0),
                ($1, 'nightly', 'postgres', 'succeeded', now() - interval '1 minute', now(),
                 interval '12.5 seconds', interval '3 hours', 1, 1000)",
        &[&nightly_id],
    )
    .unwrap();

    let text: String = one(&mut c, "SELECT backup.metrics()");
    let samples = parse_prometheus(&text);
    assert!(
        samples.iter().all(|s| s.name.starts_with("pg_backup_")),
        "{text}"
    );
    for s in &samples {
        let want = if s.name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        assert_eq!(s.kind, want, "{} ({})", s.name, s.family);
    }
    let n = [("schedule", "nightly"), ("database", "postgres")];
    let (bytes, rows, secs): (i64, i64, f64) = {
        let r = c
            .query_one(
                "SELECT bytes, row_count, extract(epoch FROM finished_at - started_at)::float8
                 FROM backup.backups WHERE id = $1",
                &[&nightly_id],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(
        value(&samples, "pg_backup_last_size_bytes", &n),
        Some(bytes as f64),
        "{text}"
    );
    assert_eq!(
        value(&samples, "pg_backup_last_rows", &n),
        Some(rows as f64)
    );
    let d = value(&samples, "pg_backup_last_duration_seconds", &n).unwrap();
    assert!((d - secs).abs() < 1.0, "duration {d} vs {secs}");
    let finished: f64 = one(
        &mut c,
        &format!("SELECT extract(epoch FROM finished_at)::float8 FROM backup.backups WHERE id = '{nightly_id}'"),
    );
    let last = value(&samples, "pg_backup_last_success_timestamp_seconds", &n).unwrap();
    assert!((last - finished).abs() < 2.0, "{last} vs {finished}");
    assert_eq!(value(&samples, "pg_backup_schedule_overdue", &n), Some(0.0));
    assert_eq!(value(&samples, "pg_backup_schedule_enabled", &n), Some(1.0));
    assert_eq!(
        value(&samples, "pg_backup_schedule_interval_seconds", &n),
        Some(86400.0)
    );
    assert_eq!(value(&samples, "pg_backup_failures_total", &n), Some(0.0));
    let b = [("schedule", "broken"), ("database", "postgres")];
    assert_eq!(value(&samples, "pg_backup_failures_total", &b), Some(1.0));
    assert_eq!(value(&samples, "pg_backup_last_size_bytes", &b), None);
    // The schedule of another database, its name escaped and read back as it is.
    let o = [("schedule", "odd"), ("database", odd)];
    let odd_bytes: i64 = {
        let mut oc = postgres::Config::new()
            .host_path(&s.socket)
            .port(s.port)
            .user(&superuser())
            .dbname(odd)
            .connect(postgres::NoTls)
            .unwrap();
        one(
            &mut oc,
            "SELECT bytes FROM backup.backups WHERE schedule = 'odd' AND status = 'completed'",
        )
    };
    assert_eq!(
        value(&samples, "pg_backup_last_size_bytes", &o),
        Some(odd_bytes as f64),
        "{text}"
    );
    assert_eq!(value(&samples, "pg_backup_last_rows", &o), Some(5000.0));
    // Manual backups of this database, with their verify.
    let m = [("schedule", "(manual)"), ("database", "postgres")];
    let manual_bytes: i64 = one(
        &mut c,
        &format!("SELECT bytes FROM backup.backups WHERE id = '{manual}'"),
    );
    assert_eq!(
        value(&samples, "pg_backup_last_size_bytes", &m),
        Some(manual_bytes as f64)
    );
    assert_eq!(value(&samples, "pg_backup_last_verify_ok", &m), Some(1.0));
    // Drills: the last finished one.
    assert_eq!(
        value(&samples, "pg_backup_drill_last_success", &n),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "pg_backup_drill_last_restore_duration_seconds",
            &n
        ),
        Some(12.5)
    );
    assert_eq!(
        value(&samples, "pg_backup_drill_last_backup_age_seconds", &n),
        Some(10800.0)
    );
    assert_eq!(
        value(&samples, "pg_backup_drill_failures_total", &n),
        Some(1.0)
    );
    // Totals of this database's history.
    let completed = count(
        &mut c,
        "SELECT count(*) FROM backup.backups WHERE status = 'completed'",
    );
    assert_eq!(
        value(
            &samples,
            "pg_backup_backups",
            &[("database", "postgres"), ("status", "completed")]
        ),
        Some(completed as f64)
    );
    let stored = count(
        &mut c,
        "SELECT sum(bytes)::bigint FROM backup.backups WHERE status = 'completed'",
    );
    assert_eq!(
        value(
            &samples,
            "pg_backup_stored_bytes",
            &[("database", "postgres")]
        ),
        Some(stored as f64)
    );
    assert_eq!(
        value(&samples, "pg_backup_schedules", &[("database", "postgres")]),
        Some(3.0)
    );
}

#[test]
fn a_backup_operator_reads_health_and_metrics_and_others_cannot() {
    if !enabled() {
        return;
    }
    let (s, mut c) = server("");
    c.query("SELECT * FROM backup.schedule('nightly', '@daily')", &[])
        .unwrap();
    c.query("SELECT * FROM backup.run_schedule('nightly')", &[])
        .unwrap();
    add_operator(&mut c, "watcher");
    c.batch_execute("CREATE ROLE stranger LOGIN").unwrap();
    let mut w = s.connect_as("postgres", "watcher");
    let r = w
        .query_one(
            "SELECT name, overdue, last_success_backup_id IS NOT NULL FROM backup.health",
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "nightly");
    assert!(!r.get::<_, bool>(1));
    assert!(r.get::<_, bool>(2));
    let text: String = one(&mut w, "SELECT backup.metrics()");
    let samples = parse_prometheus(&text);
    assert!(value(
        &samples,
        "pg_backup_last_size_bytes",
        &[("schedule", "nightly"), ("database", "postgres")]
    )
    .is_some_and(|b| b > 0.0));
    // The operator's own search_path does not reach into the functions.
    w.batch_execute("SET search_path = pg_temp, public, pg_catalog")
        .unwrap();
    let again: String = one(&mut w, "SELECT backup.metrics()");
    assert!(again.contains("pg_backup_last_size_bytes{"));
    let mut x = s.connect_as("postgres", "stranger");
    expect_err(&mut x, "SELECT * FROM backup.health", "42501");
    expect_err(&mut x, "SELECT backup.metrics()", "42501");
    expect_err(&mut x, "SELECT * FROM backup.schedule_times()", "42501");
}
