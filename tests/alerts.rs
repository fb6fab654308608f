//! Alerts (issue 21), end to end on a real PostgreSQL started by the harness
//! (`shared_preload_libraries = 'pg_backup'`): NOTIFY backup_events as a listening session
//! receives it, webhooks as an HTTP server of the test on 127.0.0.1 receives them (signature
//! checked), a dead target that never delays a backup, and who may manage webhooks and read
//! their secrets. Run by `make test` (PG_BACKUP_E2E=1).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

mod support;
use support::*;

/// The next `backup_events` notification's payload, within `secs`.
fn next_event(listener: &mut Client, secs: u64) -> serde_json::Value {
    let mut n = listener.notifications();
    let mut it = n.timeout_iter(Duration::from_secs(secs));
    let note = it
        .next()
        .unwrap()
        .unwrap_or_else(|| panic!("no notification on backup_events within {secs} s"));
    assert_eq!(note.channel(), "backup_events");
    serde_json::from_str(note.payload()).unwrap()
}

/// Events until one with `backup_id` (others, e.g. of a previous step, are skipped).
fn event_of(listener: &mut Client, backup_id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no event for {backup_id}");
        let e = next_event(listener, 30);
        if e["backup_id"] == backup_id {
            return e;
        }
    }
}

fn listening(s: &Server, db: &str) -> Client {
    let mut l = s.connect(db);
    l.batch_execute("LISTEN backup_events").unwrap();
    l
}

#[test]
fn notify_tells_a_listener_of_successes_and_failures() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut c = s.connect("app");
    c.batch_execute(
        "CREATE TABLE t AS SELECT g AS x, 'SECRET-ROW-' || g AS v FROM generate_series(1, 2000) g",
    )
    .unwrap();
    let mut l = listening(&s, "app");

    // A manual success.
    let id = create(&mut c, "label => 'ok'");
    let e = event_of(&mut l, &id);
    assert_eq!(e["event"], "backup_succeeded");
    assert_eq!(e["status"], "completed");
    assert_eq!(e["database"], "app");
    assert_eq!(e["trigger"], "manual");
    assert!(e["schedule"].is_null());
    assert!(e["bytes"].as_i64().unwrap() > 0);
    assert_eq!(e["rows"], 2000);
    assert!(e["duration_seconds"].as_f64().unwrap() >= 0.0);
    assert!(e["id"].as_i64().unwrap() > 0, "the outbox row's id: {e}");
    assert!(!e.to_string().contains("SECRET-ROW"), "no row values: {e}");

    // A manual failure: the failed row is committed by the history writer, the caller gets
    // the error and its transaction is rolled back; the event still comes.
    let err = try_create(&mut c, "label => 'bad', storage => 'nowhere'").unwrap_err();
    assert_eq!(sqlstate(&err), "42704");
    let failed: String = one(
        &mut c,
        "SELECT id FROM backup.backups WHERE label = 'bad' AND status = 'failed'",
    );
    let e = event_of(&mut l, &failed);
    assert_eq!(e["event"], "backup_failed");
    assert_eq!(e["status"], "failed");
    assert_eq!(e["sqlstate"], "42704");
    assert!(e["error"].as_str().unwrap().contains("nowhere"), "{e}");

    // Parallel: create(jobs => 2).
    let id = create(&mut c, "label => 'par', jobs => 2");
    assert_eq!(event_of(&mut l, &id)["event"], "backup_succeeded");

    // Scheduled (run by the same run worker the scheduler uses): success, then failure.
    c.batch_execute("SELECT backup.schedule('nightly', '0 3 * * *')")
        .unwrap();
    c.batch_execute("SELECT backup.schedule('broken', '0 3 * * *', storage => 'nowhere')")
        .unwrap();
    let id: String = one(
        &mut c,
        "SELECT backup_id FROM backup.run_schedule('nightly')",
    );
    let e = event_of(&mut l, &id);
    assert_eq!(e["event"], "backup_succeeded");
    assert_eq!(e["schedule"], "nightly");
    assert_eq!(e["trigger"], "schedule");
    let _ = c.query("SELECT * FROM backup.run_schedule('broken')", &[]);
    let failed: String = one(
        &mut c,
        "SELECT id FROM backup.backups WHERE schedule = 'broken' AND status = 'failed'",
    );
    let e = event_of(&mut l, &failed);
    assert_eq!(e["event"], "backup_failed");
    assert_eq!(e["schedule"], "broken");

    // Every event is in the outbox too, readable by an operator.
    add_operator(&mut c, "op");
    let mut op = s.connect_as("app", "op");
    let n = count(
        &mut op,
        "SELECT count(*) FROM backup.events WHERE event IN ('backup_succeeded', 'backup_failed')",
    );
    assert_eq!(n, 5);

    // The trigger function runs as the extension owner in the session that ends a backup: its
    // search_path is pinned.
    assert_eq!(
        text(
            &mut c,
            "SELECT array_to_string(proconfig, ';') FROM pg_proc
             WHERE oid = 'backup.backups_event()'::regprocedure AND prosecdef"
        ),
        "search_path=pg_catalog, pg_temp"
    );
}

/// One HTTP request as the test's server received it.
#[derive(Debug)]
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(stream: &TcpStream) -> Option<Received> {
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    r.read_line(&mut request_line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Received {
        request_line: request_line.trim_end().to_string(),
        headers,
        body,
    })
}

/// An HTTP server on 127.0.0.1 that answers 200 to every request and hands it to the test.
fn http_server() -> (u16, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if let Some(req) = read_request(&stream) {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                let _ = tx.send(req);
            }
        }
    });
    (port, rx)
}

fn hmac_hex(secret: &[u8], msg: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    m.update(msg);
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_webhook_receives_signed_events() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut c = s.connect("app");
    c.batch_execute("CREATE TABLE t AS SELECT generate_series(1, 100) AS x")
        .unwrap();
    let (port, rx) = http_server();
    c.execute(
        &format!("SELECT backup.add_webhook('hook', 'http://127.0.0.1:{port}/in?token=T0KEN', secret => 'sh-secret')"),
        &[],
    )
    .unwrap();
    // A second webhook that wants failures only: a success is not posted to it.
    let (port2, rx2) = http_server();
    c.execute(
        &format!("SELECT backup.add_webhook('failures', 'http://127.0.0.1:{port2}/f', events => '{{backup_failed}}')"),
        &[],
    )
    .unwrap();
    let id = create(&mut c, "label => 'hooked'");
    let req = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the webhook was not posted");
    assert_eq!(req.request_line, "POST /in?token=T0KEN HTTP/1.1");
    assert_eq!(req.header("Content-Type"), Some("application/json"));
    assert_eq!(req.header("X-PgBackup-Event"), Some("backup_succeeded"));
    // The signature: HMAC-SHA256 of "<timestamp>.<body>" with the secret, as the README says.
    let ts = req
        .header("X-PgBackup-Timestamp")
        .expect("timestamp header");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - ts.parse::<i64>().unwrap()).abs() < 120);
    let mut signed = ts.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(&req.body);
    let want = format!("sha256={}", hmac_hex(b"sh-secret", &signed));
    assert_eq!(req.header("X-PgBackup-Signature"), Some(want.as_str()));
    assert_ne!(
        req.header("X-PgBackup-Signature"),
        Some(format!("sha256={}", hmac_hex(b"other", &signed)).as_str())
    );
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["event"], "backup_succeeded");
    assert_eq!(body["backup_id"], id);
    assert_eq!(body["database"], "app");
    let text = body["text"].as_str().unwrap();
    assert!(text.contains(&id) && text.contains("succeeded"), "{text}");
    // Recorded as delivered.
    assert!(wait_until(
        &mut c,
        "SELECT coalesce(bool_and(status = 'delivered' AND http_status = 200 AND attempts = 1), false)
         FROM backup.webhook_deliveries WHERE webhook = 'hook'",
        20,
    ));
    assert!(
        rx2.recv_timeout(Duration::from_millis(500)).is_err(),
        "a success is not posted to a failures-only webhook"
    );
    // A failure goes to both; the unsigned one has no signature header.
    let _ = try_create(&mut c, "label => 'bad', storage => 'nowhere'").unwrap_err();
    let f = rx2
        .recv_timeout(Duration::from_secs(30))
        .expect("the failure was not posted");
    assert_eq!(f.header("X-PgBackup-Event"), Some("backup_failed"));
    assert_eq!(f.header("X-PgBackup-Signature"), None);
    let fb: serde_json::Value = serde_json::from_slice(&f.body).unwrap();
    assert!(fb["text"].as_str().unwrap().contains("FAILED"));
    let g = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(g.header("X-PgBackup-Event"), Some("backup_failed"));
}

/// Median of the durations of `n` backups.
fn backup_time(c: &mut Client, n: usize) -> Duration {
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            create(c, "");
            t.elapsed()
        })
        .collect();
    v.sort();
    v[n / 2]
}

#[test]
fn a_dead_webhook_target_never_delays_a_backup() {
    if !enabled() {
        return;
    }
    let s = Server::start("backup.webhook_timeout = 5\nbackup.webhook_retries = 1\n");
    let mut c = s.connect("app");
    c.batch_execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS x")
        .unwrap();
    let without = backup_time(&mut c, 3);
    // A closed port, and a server that accepts and never answers.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let mute_port = mute.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in mute.incoming() {
            held.push(s); // never answered, never closed
        }
    });
    c.batch_execute(&format!(
        "SELECT backup.add_webhook('closed', 'http://127.0.0.1:{closed}/x?token=T0KEN');
         SELECT backup.add_webhook('mute', 'http://127.0.0.1:{mute_port}/x?token=T0KEN', secret => 's');"
    ))
    .unwrap();
    let with = backup_time(&mut c, 3);
    eprintln!("backup without webhooks {without:?}, with two dead ones {with:?}");
    // A backup that waited for the mute target would take 5 s (backup.webhook_timeout) more;
    // the margin covers a busy machine only.
    assert!(
        with < without * 2 + Duration::from_millis(1500) && with < Duration::from_secs(5),
        "backups took {with:?} with dead webhooks, {without:?} without"
    );
    // Each delivery fails after its retry (2 attempts), with why, and without the URL.
    let t = Instant::now();
    assert!(
        wait_until(
            &mut c,
            "SELECT count(*) = 6 AND bool_and(status = 'failed' AND attempts = 2 AND finished_at IS NOT NULL)
             FROM backup.webhook_deliveries",
            60,
        ),
        "deliveries: {:?}",
        strings(&mut c, "SELECT format('%s %s %s %s', webhook, status, attempts, error) FROM backup.webhook_deliveries")
    );
    eprintln!("all deliveries failed after {:?}", t.elapsed());
    eprintln!(
        "{:?}",
        strings(
            &mut c,
            "SELECT DISTINCT webhook || ': ' || error FROM backup.webhook_deliveries"
        )
    );
    let errors = strings(
        &mut c,
        "SELECT webhook || ': ' || error FROM backup.webhook_deliveries",
    );
    for e in &errors {
        assert!(!e.contains("T0KEN") && !e.contains("127.0.0.1"), "{e}");
    }
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("mute:") && e.contains("timed out")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("closed:") && e.contains("refused")),
        "{errors:?}"
    );
    // The backups themselves all completed.
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM backup.backups WHERE status <> 'completed'"
        ),
        0
    );
}

#[test]
fn only_a_superuser_manages_webhooks_and_nobody_else_reads_their_secrets() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut su = s.connect("app");
    su.execute(
        "SELECT backup.add_webhook('slack', 'https://hooks.example.com/services/T0/B0/T0KEN', secret => 'sh-secret')",
        &[],
    )
    .unwrap();
    add_operator(&mut su, "op");
    let mut op = s.connect_as("app", "op");
    expect_err(
        &mut op,
        "SELECT backup.add_webhook('mine', 'https://example.com/x')",
        "42501",
    );
    expect_err(&mut op, "SELECT backup.drop_webhook('slack')", "42501");
    expect_err(&mut op, "SELECT * FROM backup.webhook_secrets", "42501");
    // What an operator sees: no URL path or token, no secret, only that there is one.
    let row = op
        .query_one("SELECT to_jsonb(w)::text FROM backup.webhooks w", &[])
        .unwrap();
    let seen: String = row.get(0);
    assert!(
        !seen.contains("T0KEN") && !seen.contains("sh-secret"),
        "{seen}"
    );
    let v: serde_json::Value = serde_json::from_str(&seen).unwrap();
    assert_eq!(v["endpoint"], "https://hooks.example.com");
    assert_eq!(v["has_secret"], true);
    for table in [
        "backup.webhook_targets",
        "backup.webhook_queue",
        "backup.webhook_deliveries",
        "backup.events",
    ] {
        let all: String = one(
            &mut op,
            &format!("SELECT coalesce(string_agg(to_jsonb(x)::text, ''), '') FROM {table} x"),
        );
        assert!(
            !all.contains("T0KEN") && !all.contains("sh-secret"),
            "{table}: {all}"
        );
    }
    // Nor through the functions: a non-superuser granted EXECUTE directly cannot either.
    su.batch_execute("CREATE ROLE plain LOGIN; GRANT USAGE ON SCHEMA backup TO plain; GRANT EXECUTE ON FUNCTION backup.add_webhook(text, text, text[], text, boolean) TO plain")
        .unwrap();
    let mut plain = s.connect_as("app", "plain");
    expect_err(
        &mut plain,
        "SELECT backup.add_webhook('x', 'https://example.com/x')",
        "42501",
    );
    // URLs are checked, and an error does not repeat them.
    for bad in [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "https://u:pw@example.com/x",
        "not a url",
    ] {
        let e = expect_err(
            &mut su,
            &format!("SELECT backup.add_webhook('bad', '{bad}')"),
            "22023",
        );
        assert!(!describe(&e).contains("pw@"), "{}", describe(&e));
    }
    expect_err(
        &mut su,
        "SELECT backup.add_webhook('e', 'https://example.com/x', events => '{backup_exploded}')",
        "22023",
    );
    expect_err(
        &mut su,
        "SELECT backup.add_webhook('slack', 'https://example.com/x')",
        "42P07",
    );
    // replace => true without a secret keeps the signing secret; secret => '' removes it.
    su.execute(
        "SELECT backup.add_webhook('slack', 'https://example.com/y', replace => true)",
        &[],
    )
    .unwrap();
    assert!(one::<bool>(
        &mut su,
        "SELECT has_secret FROM backup.webhooks WHERE name = 'slack'"
    ));
    assert_eq!(
        text(
            &mut su,
            "SELECT url || ' ' || secret FROM backup.webhook_secrets WHERE name = 'slack'"
        ),
        "https://example.com/y sh-secret"
    );
    su.execute(
        "SELECT backup.add_webhook('slack', 'https://example.com/z', replace => true, secret => '')",
        &[],
    )
    .unwrap();
    assert!(!one::<bool>(
        &mut su,
        "SELECT has_secret FROM backup.webhooks WHERE name = 'slack'"
    ));
    assert!(one::<bool>(&mut su, "SELECT backup.drop_webhook('slack')"));
    expect_err(&mut su, "SELECT backup.drop_webhook('slack')", "42704");
    assert!(!one::<bool>(
        &mut su,
        "SELECT backup.drop_webhook('slack', if_exists => true)"
    ));
}

/// The sender's lock is one no SQL function reaches: a session of any role holding advisory
/// locks (the one the sender once used among them) does not stop deliveries.
#[test]
fn a_session_holding_advisory_locks_does_not_stop_webhooks() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut c = s.connect("app");
    c.batch_execute("CREATE ROLE nobody LOGIN").unwrap();
    let mut nobody = s.connect_as("app", "nobody");
    nobody
        .batch_execute(
            "SELECT pg_advisory_lock(hashtext('pg_backup webhook sender'));
             SELECT pg_advisory_lock(k) FROM generate_series(0, 100) k;
             SELECT pg_advisory_lock(0, k) FROM generate_series(0, 100) k;",
        )
        .unwrap();
    let (port, rx) = http_server();
    c.execute(
        &format!("SELECT backup.add_webhook('hook', 'http://127.0.0.1:{port}/in')"),
        &[],
    )
    .unwrap();
    let id = create(&mut c, "label => 'locked-out'");
    let req = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a session of another role holding advisory locks stopped the webhook");
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["backup_id"], id);
    drop(nobody);
}

/// Webhook requests are posted from helper threads with every signal blocked: PostgreSQL's
/// handlers (SIGTERM, SIGINT, SIGUSR1 for latches) must only run on the worker's own thread.
/// Read from /proc while a delivery waits on a server that never answers.
#[test]
fn webhook_threads_block_every_signal() {
    if !enabled() {
        return;
    }
    let s = Server::start("backup.webhook_timeout = 20\nbackup.webhook_retries = 0\n");
    let mut c = s.connect("app");
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = mute.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in mute.incoming() {
            held.push(s);
        }
    });
    c.execute(
        &format!("SELECT backup.add_webhook('mute', 'http://127.0.0.1:{port}/x')"),
        &[],
    )
    .unwrap();
    create(&mut c, "");
    let deadline = Instant::now() + Duration::from_secs(15);
    let blocked = loop {
        assert!(Instant::now() < deadline, "no webhook thread seen");
        let pids: Vec<i32> = c
            .query(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_backup webhooks'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut found = None;
        for pid in pids {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for t in tasks.flatten() {
                let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                if comm.trim() == "pg_backup webho" {
                    let status = std::fs::read_to_string(t.path().join("status")).unwrap();
                    let hex = status
                        .lines()
                        .find_map(|l| l.strip_prefix("SigBlk:"))
                        .unwrap()
                        .trim()
                        .to_string();
                    found = Some(u64::from_str_radix(&hex, 16).unwrap());
                }
            }
        }
        if let Some(mask) = found {
            break mask;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for sig in [2u32, 10, 12, 15, 1] {
        assert!(
            blocked & (1u64 << (sig - 1)) != 0,
            "signal {sig} is not blocked in a webhook thread (SigBlk {blocked:016x})"
        );
    }
}

/// webhook_targets is in a pg_dump, webhook_secrets (the URL) is not: after a restore, or
/// with a secrets row deleted, a webhook has no URL. Its deliveries fail at once with an error
/// that says how to set it again; none waits forever, and no sender stays running for them.
#[test]
fn a_webhook_without_its_url_fails_its_deliveries_at_once() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut c = s.connect("app");
    let (port, rx) = http_server();
    c.batch_execute(&format!(
        "SELECT backup.add_webhook('restored', 'http://127.0.0.1:{port}/r');
         SELECT backup.add_webhook('whole', 'http://127.0.0.1:{port}/w');
         DELETE FROM backup.webhook_secrets WHERE name = 'restored';"
    ))
    .unwrap();
    create(&mut c, "");
    create(&mut c, "");
    let req = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(
        req.request_line.starts_with("POST /w "),
        "{}",
        req.request_line
    );
    assert!(
        wait_until(
            &mut c,
            "SELECT count(*) = 4 AND count(*) FILTER (WHERE status = 'pending') = 0
             FROM backup.webhook_deliveries",
            30
        ),
        "{:?}",
        strings(
            &mut c,
            "SELECT format('%s %s %s', webhook, status, error) FROM backup.webhook_deliveries"
        )
    );
    let errors = strings(
        &mut c,
        "SELECT status || ': ' || coalesce(error, '') FROM backup.webhook_deliveries
         WHERE webhook = 'restored'",
    );
    assert_eq!(errors.len(), 2);
    for e in &errors {
        assert!(
            e.starts_with("failed: ")
                && e.contains("backup.add_webhook(")
                && e.contains("replace => true"),
            "{e}"
        );
    }
    assert!(
        wait_until(
            &mut c,
            "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_backup webhooks'",
            15
        ),
        "a webhook sender stays running"
    );
    // Setting the URL again brings the webhook back.
    c.execute(
        &format!(
            "SELECT backup.add_webhook('restored', 'http://127.0.0.1:{port}/r', replace => true)"
        ),
        &[],
    )
    .unwrap();
    create(&mut c, "");
    let mut lines = Vec::new();
    while lines.len() < 3 {
        let r = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("not posted");
        lines.push(r.request_line);
    }
    assert!(lines.iter().any(|l| l.starts_with("POST /r ")), "{lines:?}");
}

/// A NOTIFY is queued at COMMIT: with PostgreSQL's NOTIFY queue full (a listener that stays in
/// a transaction holds it), the COMMIT of a backup's end would fail. pg_backup sends no NOTIFY
/// when the queue is more than half full; the backup completes, and the event still reaches
/// backup.events and the webhooks. max_notify_queue_pages (PostgreSQL 17+) makes the queue
/// small enough to fill; on 15 it is 8 GB.
#[test]
#[cfg_attr(
    not(any(feature = "pg17", feature = "pg18")),
    ignore = "needs PostgreSQL 17 or 18 (max_notify_queue_pages): cargo test --no-default-features --features pg18 with PG_CONFIG of 18"
)]
fn a_full_notify_queue_does_not_fail_a_backup() {
    if !enabled() {
        return;
    }
    let s = Server::start("max_notify_queue_pages = 64");
    let mut c = s.connect("app");
    let version: i32 = text(&mut c, "SHOW server_version_num").parse().unwrap();
    assert!(
        version >= 170000,
        "this test needs PostgreSQL 17+, the server is {version}"
    );
    c.batch_execute("CREATE TABLE t AS SELECT generate_series(1, 100) AS x")
        .unwrap();
    let (port, rx) = http_server();
    c.execute(
        &format!("SELECT backup.add_webhook('hook', 'http://127.0.0.1:{port}/in')"),
        &[],
    )
    .unwrap();
    let mut slow = s.connect("app");
    slow.batch_execute("LISTEN filler").unwrap();
    slow.batch_execute("BEGIN; SELECT 1").unwrap();
    let mut filler = s.connect("app");
    let mut full = false;
    for i in 0..10_000 {
        match filler.batch_execute(&format!(
            "SELECT pg_notify('filler', repeat('x', 7000) || {i})"
        )) {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(sqlstate(&e), "54000", "{}", describe(&e));
                full = true;
                break;
            }
        }
    }
    assert!(full, "the NOTIFY queue did not fill");
    let id = create(&mut c, "label => 'queue-full'");
    let status: String = one(
        &mut c,
        &format!("SELECT status FROM backup.backups WHERE id = '{id}'"),
    );
    assert_eq!(status, "completed");
    assert_eq!(
        count(
            &mut c,
            &format!("SELECT count(*) FROM backup.events WHERE payload->>'backup_id' = '{id}'")
        ),
        1
    );
    let req = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the webhook was not posted");
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["backup_id"], id);
    slow.batch_execute("COMMIT").unwrap();
}
