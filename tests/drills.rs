//! Restore drills (issue 21): `backup.drill()` restores a backup into a scratch database in
//! background workers, compares every table's rows with the manifest, runs the checks, and
//! records the result in backup.drills. A real PostgreSQL 15 with pg_backup preloaded.
//! Run by `make test` (PG_BACKUP_E2E=1); skipped elsewhere.

use std::path::Path;
use std::time::{Duration, Instant};

use postgres::Client;

mod support;
use support::*;

/// Databases whose name says they are a drill's scratch database.
fn scratch_databases(c: &mut Client) -> Vec<String> {
    strings(
        c,
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'pg\\_backup\\_drill\\_%' ORDER BY 1",
    )
}

/// Tables of the fixture: plain rows, a partitioned table, an identity column, an empty table.
fn fixture(c: &mut Client) {
    c.batch_execute(
        "CREATE SCHEMA shop;
         CREATE TABLE shop.orders (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, total numeric NOT NULL);
         INSERT INTO shop.orders (total) SELECT g FROM generate_series(1, 1500) g;
         CREATE TABLE shop.events (at date NOT NULL, what text) PARTITION BY RANGE (at);
         CREATE TABLE shop.events_2025 PARTITION OF shop.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         CREATE TABLE shop.events_2026 PARTITION OF shop.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
         INSERT INTO shop.events SELECT date '2025-06-01' + g % 400, 'e' || g FROM generate_series(1, 700) g;
         CREATE TABLE public.empty (x int);",
    )
    .unwrap();
}

/// The events `listener` (LISTENing on backup_events) has received so far.
fn events(listener: &mut Client) -> Vec<serde_json::Value> {
    use postgres::fallible_iterator::FallibleIterator;
    listener.batch_execute("SELECT 1").unwrap();
    listener
        .notifications()
        .iter()
        .map(|n| Ok(serde_json::from_str::<serde_json::Value>(n.payload()).unwrap()))
        .collect()
        .unwrap()
}

/// The drill's row as `drill()` returned it (or as backup.drills holds it), as JSON.
fn drill_json(c: &mut Client, sql: &str) -> serde_json::Value {
    serde_json::from_str(&text(
        c,
        &format!("SELECT to_jsonb(d)::text FROM ({sql}) d"),
    ))
    .unwrap()
}

#[test]
fn a_drill_of_a_good_backup_succeeds_and_leaves_no_scratch_database() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut c = s.connect("app");
    fixture(&mut c);
    let id = create(&mut c, "");
    let mut listener = s.connect("app");
    listener.batch_execute("LISTEN backup_events").unwrap();
    // The data-loss window is measurable.
    std::thread::sleep(Duration::from_millis(1100));
    let started = Instant::now();
    let d = drill_json(&mut c, "SELECT * FROM backup.drill()");
    let took = started.elapsed();
    assert_eq!(d["status"], "succeeded", "{d:#}");
    assert_eq!(d["backup_id"], id.as_str());
    assert_eq!(d["database"], "app");
    assert_eq!(d["error"], serde_json::Value::Null, "{d:#}");
    // orders, events_2025, events_2026, empty: every table that has rows in the manifest.
    assert_eq!(d["tables_checked"], 4, "{d:#}");
    assert_eq!(d["rows_checked"], 2200, "{d:#}");
    assert_eq!(d["mismatches"], serde_json::json!([]), "{d:#}");
    // restore_duration: the restore's own time, within the call's; backup_age: at least the
    // second slept between the backup and the drill.
    let mut secs = |col: &str| {
        one::<f64>(
            &mut c,
            &format!(
                "SELECT extract(epoch FROM {col})::float8 FROM backup.drills WHERE id = {}",
                d["id"]
            ),
        )
    };
    let restore = secs("restore_duration");
    assert!(
        restore > 0.0 && restore < took.as_secs_f64(),
        "{restore} s of {took:?}"
    );
    assert!(secs("backup_age") >= 1.0, "{d:#}");
    assert_eq!(scratch_databases(&mut c), Vec::<String>::new());
    // The drill's worker is gone too (no drill process left behind).
    assert!(wait_until(
        &mut c,
        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type LIKE 'pg_backup drill%')",
        10
    ));
    // The event, with the figures.
    let events = events(&mut listener);
    let e = events
        .iter()
        .find(|e| e["event"] == "drill_succeeded")
        .unwrap_or_else(|| panic!("no drill_succeeded event in {events:?}"));
    assert_eq!(e["backup_id"], id.as_str());
    assert_eq!(e["rows_checked"], 2200);
    assert_eq!(e["drill_id"], d["id"]);

    // A named backup, without waiting: the row comes back at once, running, then ends.
    c.batch_execute("INSERT INTO shop.orders (total) VALUES (1)")
        .unwrap();
    let second = create(&mut c, "");
    let d = drill_json(
        &mut c,
        &format!("SELECT * FROM backup.drill('{id}', wait => false)"),
    );
    assert_eq!(d["status"], "running", "{d:#}");
    assert_eq!(d["backup_id"], id.as_str());
    assert!(wait_until(
        &mut c,
        &format!(
            "SELECT status <> 'running' FROM backup.drills WHERE id = {}",
            d["id"]
        ),
        120
    ));
    let row = drill_json(
        &mut c,
        &format!("SELECT * FROM backup.drills WHERE id = {}", d["id"]),
    );
    assert_eq!(row["status"], "succeeded", "{row:#}");
    assert_eq!(
        row["rows_checked"], 2200,
        "the backup named, not the newest: {row:#}"
    );
    let newest = drill_json(&mut c, "SELECT * FROM backup.drill()");
    assert_eq!(newest["backup_id"], second.as_str());
    assert_eq!(newest["rows_checked"], 2201);
    assert_eq!(scratch_databases(&mut c), Vec::<String>::new());
}

/// Flip a byte in the middle of the biggest data file of backup `id`; its path.
fn damage_biggest_file(s: &Server, id: &str) -> String {
    let dir = s.backup_dir().join(id);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let f = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|f| f["bytes"].as_u64().unwrap())
        .unwrap();
    let path = f["path"].as_str().unwrap().to_string();
    let file = dir.join(&path);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(Path::new(&file), bytes).unwrap();
    path
}

#[test]
fn a_drill_of_a_damaged_backup_fails_with_its_reason() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut c = s.connect("app");
    fixture(&mut c);
    let id = create(&mut c, "");
    let file = damage_biggest_file(&s, &id);
    let mut listener = s.connect("app");
    listener.batch_execute("LISTEN backup_events").unwrap();
    let d = drill_json(&mut c, "SELECT * FROM backup.drill()");
    assert_eq!(d["status"], "failed", "{d:#}");
    let error = d["error"].as_str().unwrap();
    assert!(
        error.contains(&file) && error.contains("checksum_mismatch") && error.contains("XX001"),
        "the damaged file and why: {error}"
    );
    assert_eq!(scratch_databases(&mut c), Vec::<String>::new());
    let failed: Vec<serde_json::Value> = events(&mut listener)
        .into_iter()
        .filter(|e| e["event"] == "drill_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0]["error"].as_str().unwrap().contains(&file));
}

#[test]
fn a_failing_check_fails_the_drill_and_errors_carry_no_values() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut c = s.connect("app");
    fixture(&mut c);
    c.batch_execute(
        "CREATE TABLE public.secrets (v text); INSERT INTO secrets VALUES ('TOPSECRET-42');
         CREATE TABLE public.pay (salary int); INSERT INTO pay VALUES (7654321), (1234);",
    )
    .unwrap();
    create(&mut c, "");
    // Checks that pass: a boolean, a positive count.
    let d = drill_json(
        &mut c,
        "SELECT * FROM backup.drill(checks => ARRAY[
            'SELECT count(*) = 1500 FROM shop.orders',
            'SELECT count(*) FROM shop.events WHERE at >= ''2026-01-01''',
            'SELECT max(id) = 1500 FROM shop.orders',
            'SELECT max(salary) FROM public.pay'])",
    );
    assert_eq!(d["status"], "succeeded", "{d:#}");
    let checks = d["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 4);
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:?}");
    // Only pass/fail is recorded: a check's value is a value of the rows (every operator
    // reads backup.drills), here a salary.
    assert!(
        checks.iter().all(|c| c.get("result").is_none()),
        "{checks:?}"
    );
    let all_drills = text(
        &mut c,
        "SELECT string_agg(to_jsonb(d)::text, ' ') FROM backup.drills d",
    );
    assert!(
        !all_drills.contains("7654321"),
        "a check's value in backup.drills: {all_drills}"
    );
    // One failing check fails the drill; the others still run; a check's error says its
    // SQLSTATE, never the value that caused it; a check cannot write (0A000), and nothing a
    // check does is left for the next.
    let d = drill_json(
        &mut c,
        "SELECT * FROM backup.drill(checks => ARRAY[
            'SELECT count(*) > 0 FROM shop.orders',
            'SELECT count(*) FROM shop.orders WHERE total < 0',
            'SELECT v::int > 0 FROM public.secrets',
            'DELETE FROM shop.orders RETURNING true',
            'SELECT count(*) = 1500 FROM shop.orders'])",
    );
    assert_eq!(d["status"], "failed", "{d:#}");
    let checks = d["checks"].as_array().unwrap();
    let ok: Vec<bool> = checks.iter().map(|c| c["ok"] == true).collect();
    assert_eq!(ok, [true, false, false, false, true], "{checks:#?}");
    assert!(
        checks[3]["error"].as_str().unwrap().contains("0A000"),
        "{checks:#?}"
    );
    assert!(
        checks[1]["error"].as_str().unwrap().contains("no rows"),
        "{checks:#?}"
    );
    let cast_error = checks[2]["error"].as_str().unwrap();
    assert!(cast_error.contains("22P02"), "{cast_error}");
    let text = d.to_string();
    assert!(
        !text.contains("TOPSECRET"),
        "a row value in the drill's row: {text}"
    );
    let error = d["error"].as_str().unwrap();
    assert!(
        error.contains("check 2") && error.contains("check 3"),
        "{error}"
    );
    // The restore itself was fine.
    assert_eq!(d["mismatches"], serde_json::json!([]));
    assert_eq!(scratch_databases(&mut c), Vec::<String>::new());
    // An empty check is refused before anything starts.
    expect_err(
        &mut c,
        "SELECT * FROM backup.drill(checks => ARRAY[' '])",
        "22023",
    );
}

#[test]
fn a_backup_operator_drills_what_it_could_restore_with_its_own_rights() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut su = s.connect("app");
    add_operator_in_public(&mut su, "alice");
    su.batch_execute("CREATE TABLE public.payroll (who text, salary int); INSERT INTO payroll VALUES ('boss', 1000000);")
        .unwrap();
    let mut alice = s.connect_as("app", "alice");
    alice
        .batch_execute("CREATE TABLE public.notes (id int, body text); INSERT INTO notes SELECT g, 'n' FROM generate_series(1, 30) g;")
        .unwrap();
    let own = one::<String>(
        &mut alice,
        "SELECT backup_id FROM backup.create(tables => '{public.notes}')",
    );
    // alice has no CREATEDB: the drill's worker makes the scratch database for her; she
    // restores into it and runs her checks as herself.
    assert!(!one::<bool>(
        &mut alice,
        "SELECT rolcreatedb FROM pg_roles WHERE rolname = 'alice'"
    ));
    let d = drill_json(
        &mut alice,
        &format!(
            "SELECT * FROM backup.drill('{own}', checks => ARRAY[
                'SELECT current_user = ''alice''',
                'SELECT count(*) = 30 FROM public.notes',
                'SELECT pg_catalog.pg_has_role(''alice'', ''pg_read_server_files'', ''MEMBER'') = false'])"
        ),
    );
    assert_eq!(d["status"], "succeeded", "{d:#}");
    assert_eq!(d["requested_by"], "alice");
    assert_eq!(d["rows_checked"], 30);
    // A backup of the whole database holds the superuser's table: alice could not restore
    // it, so she cannot drill it either (the restore's own refusal, 42501).
    let all = create(&mut su, "");
    let d = drill_json(&mut alice, &format!("SELECT * FROM backup.drill('{all}')"));
    assert_eq!(d["status"], "failed", "{d:#}");
    assert!(d["error"].as_str().unwrap().contains("42501"), "{d:#}");
    // She reads the drills (counts, never a row value) and cannot write them.
    assert_eq!(count(&mut alice, "SELECT count(*) FROM backup.drills"), 2);
    assert!(!text(
        &mut alice,
        "SELECT string_agg(to_jsonb(d)::text, ' ') FROM backup.drills d"
    )
    .contains("1000000"));
    expect_err(&mut alice, "DELETE FROM backup.drills", "42501");
    assert_eq!(scratch_databases(&mut su), Vec::<String>::new());
    // A role without backup_operator may not drill.
    su.batch_execute("CREATE ROLE mallory LOGIN").unwrap();
    let mut mallory = s.connect_as("app", "mallory");
    expect_err(&mut mallory, "SELECT * FROM backup.drill()", "42501");
}

#[test]
fn a_terminated_drill_is_failed_and_its_scratch_database_dropped_later() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut c = s.connect("app");
    c.batch_execute(
        "CREATE TABLE big (id int, pad text);
         INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 400000) g;",
    )
    .unwrap();
    create(&mut c, "");
    let d = drill_json(&mut c, "SELECT * FROM backup.drill(wait => false)");
    let id = d["id"].as_i64().unwrap();
    // Its scratch database exists while its restore runs; then the drill's worker is stopped.
    assert!(wait_until(
        &mut c,
        &format!("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname LIKE 'pg\\_backup\\_drill\\_%\\_{id}')"),
        60
    ));
    // backup.max_drills (1 by default) drills of a database at once: a second is refused
    // while this one runs (53400, with a HINT), and leaves no row; a session cannot raise it.
    let refused = expect_err(&mut c, "SELECT * FROM backup.drill(wait => false)", "53400");
    let hint = refused
        .as_db_error()
        .and_then(|e| e.hint())
        .unwrap_or_default()
        .to_string();
    assert!(hint.contains("backup.max_drills"), "{refused}: {hint}");
    assert_eq!(count(&mut c, "SELECT count(*) FROM backup.drills"), 1);
    expect_err(&mut c, "SET backup.max_drills = 5", "55P02");
    // Nobody but a superuser connects to it meanwhile (nothing gets in beside the restore's
    // objects): not even an operator that could drill.
    let scratch = text(
        &mut c,
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'pg\\_backup\\_drill\\_%'",
    );
    add_operator(&mut c, "bob");
    let refused = postgres::Client::connect(&s.conn_str(&scratch, Some("bob")), postgres::NoTls)
        .err()
        .expect("bob connected to the drill's scratch database");
    assert_eq!(sqlstate(&refused), "53300", "{refused}");
    let pid = one::<i32>(
        &mut c,
        &format!("SELECT pid FROM backup.drills WHERE id = {id}"),
    );
    kill(pid, libc::SIGTERM);
    assert!(wait_until(
        &mut c,
        &format!("SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = {pid})"),
        30
    ));
    // The next pg_backup call settles the row; the next drill drops the scratch database.
    c.batch_execute("SELECT * FROM backup.verify(deep => false)")
        .unwrap();
    let row = drill_json(
        &mut c,
        &format!("SELECT * FROM backup.drills WHERE id = {id}"),
    );
    assert_eq!(row["status"], "failed", "{row:#}");
    assert!(row["error"].as_str().unwrap().contains("exited"), "{row:#}");
    let next = drill_json(&mut c, "SELECT * FROM backup.drill()");
    assert_eq!(next["status"], "succeeded", "{next:#}");
    assert_eq!(scratch_databases(&mut c), Vec::<String>::new());
}

#[test]
fn a_cancelled_drill_drops_its_scratch_database() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut c = s.connect("app");
    c.batch_execute(
        "CREATE TABLE big (id int, pad text);
         INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 400000) g;",
    )
    .unwrap();
    create(&mut c, "");
    // The call is cancelled (pg_cancel_backend, as a statement_timeout would) while the drill
    // restores in its scratch database.
    let pid = one::<i32>(&mut c, "SELECT pg_backend_pid()");
    let started = Instant::now();
    let call = std::thread::spawn(move || {
        let r = c.query("SELECT * FROM backup.drill()", &[]).map(|_| ());
        (c, r)
    });
    let mut watcher = s.connect("app");
    assert!(wait_until(
        &mut watcher,
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname LIKE 'pg\\_backup\\_drill\\_%')",
        60
    ));
    watcher
        .query("SELECT pg_cancel_backend($1)", &[&pid])
        .unwrap();
    let (mut c, r) = call.join().unwrap();
    let e = r.expect_err("the cancelled drill() call returned");
    assert_eq!(sqlstate(&e), "57014", "{e}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let row = drill_json(
        &mut c,
        "SELECT * FROM backup.drills ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(row["status"], "failed", "{row:#}");
    assert!(row["error"].as_str().unwrap().contains("cancel"), "{row:#}");
    assert_eq!(scratch_databases(&mut c), Vec::<String>::new());
}

#[test]
fn a_schedule_with_drill_drills_each_backup_it_takes() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut app = s.connect("app");
    fixture(&mut app);
    // The scheduler reads backup.schedules in database postgres (backup.database); the
    // schedule backs up app, where its drills run and are recorded.
    let mut sched = s.connect("postgres");
    sched.batch_execute("CREATE EXTENSION pg_backup").unwrap();
    sched
        .query(
            "SELECT * FROM backup.schedule('drilled', '2 seconds', database => 'app', drill => true,
                 drill_checks => ARRAY['SELECT count(*) = 1500 FROM shop.orders', 'SELECT current_user = session_user'])",
            &[],
        )
        .unwrap();
    assert_eq!(
        text(
            &mut sched,
            "SELECT drill_role FROM backup.schedules WHERE name = 'drilled'"
        ),
        superuser()
    );
    let ended = wait_until(
        &mut app,
        "SELECT EXISTS (SELECT 1 FROM backup.drills WHERE schedule = 'drilled' AND status <> 'running')",
        120,
    );
    sched
        .batch_execute("UPDATE backup.schedules SET enabled = false WHERE name = 'drilled'")
        .unwrap();
    assert!(ended, "no scheduled drill ended");
    let d = drill_json(
        &mut app,
        "SELECT * FROM backup.drills WHERE schedule = 'drilled' AND status <> 'running' ORDER BY id LIMIT 1",
    );
    assert_eq!(d["status"], "succeeded", "{d:#}");
    assert_eq!(d["rows_checked"], 2200, "{d:#}");
    assert_eq!(d["requested_by"], superuser().as_str());
    let checks = d["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2);
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:?}");
    // The drill is of a backup this schedule took, after it completed.
    let backup = d["backup_id"].as_str().unwrap().to_string();
    assert_eq!(
        text(
            &mut app,
            &format!("SELECT schedule || ' ' || status FROM backup.backups WHERE id = '{backup}'")
        ),
        "drilled completed"
    );
    assert!(one::<bool>(
        &mut app,
        &format!(
            "SELECT (SELECT finished_at FROM backup.backups WHERE id = '{backup}') <= started_at FROM backup.drills WHERE id = {}",
            d["id"]
        )
    ));
    // Every drill of the schedule ends and drops its database (wait for those still going).
    assert!(wait_until(
        &mut app,
        "SELECT NOT EXISTS (SELECT 1 FROM backup.drills WHERE status = 'running')",
        120
    ));
    assert_eq!(scratch_databases(&mut app), Vec::<String>::new());

    // Fail closed: a schedule without a drill role (written into the table directly) gets a
    // failed drill, never one as the bootstrap superuser; so does one whose role is gone.
    let before = count(&mut app, "SELECT coalesce(max(id), 0) FROM backup.drills");
    sched
        .batch_execute(
            "UPDATE backup.schedules SET drill_role = NULL, enabled = true,
                    drill_checks = ARRAY['SELECT current_user = session_user']
             WHERE name = 'drilled'",
        )
        .unwrap();
    let ended = wait_until(
        &mut app,
        &format!("SELECT EXISTS (SELECT 1 FROM backup.drills WHERE id > {before} AND status <> 'running')"),
        120,
    );
    sched
        .batch_execute("UPDATE backup.schedules SET enabled = false WHERE name = 'drilled'")
        .unwrap();
    assert!(ended, "no scheduled drill without a role ended");
    let d = drill_json(
        &mut app,
        &format!("SELECT * FROM backup.drills WHERE id > {before} AND status <> 'running' ORDER BY id LIMIT 1"),
    );
    assert_eq!(d["status"], "failed", "{d:#}");
    assert!(d["error"].as_str().unwrap().contains("drill_role"), "{d:#}");
    assert_ne!(d["requested_by"], superuser().as_str(), "{d:#}");
    assert!(wait_until(
        &mut app,
        "SELECT NOT EXISTS (SELECT 1 FROM backup.drills WHERE status = 'running')",
        120
    ));
    let before = count(&mut app, "SELECT coalesce(max(id), 0) FROM backup.drills");
    sched
        .batch_execute(
            "UPDATE backup.schedules SET drill_role = 'no_such_role', enabled = true WHERE name = 'drilled'",
        )
        .unwrap();
    let ended = wait_until(
        &mut app,
        &format!("SELECT EXISTS (SELECT 1 FROM backup.drills WHERE id > {before} AND status <> 'running')"),
        120,
    );
    sched
        .batch_execute("UPDATE backup.schedules SET enabled = false WHERE name = 'drilled'")
        .unwrap();
    assert!(ended, "no scheduled drill of a missing role ended");
    let d = drill_json(
        &mut app,
        &format!("SELECT * FROM backup.drills WHERE id > {before} AND status <> 'running' ORDER BY id LIMIT 1"),
    );
    assert_eq!(d["status"], "failed", "{d:#}");
    assert!(
        d["error"].as_str().unwrap().contains("does not exist"),
        "{d:#}"
    );
    assert!(wait_until(
        &mut app,
        "SELECT NOT EXISTS (SELECT 1 FROM backup.drills WHERE status = 'running')",
        120
    ));
    assert_eq!(scratch_databases(&mut app), Vec::<String>::new());
}
