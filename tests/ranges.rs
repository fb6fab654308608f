//! Big tables split by ranges of heap blocks (issue 22): `create()` writes a table at least
//! `backup.split_table_size` big as several data files, each the rows of a range of its
//! blocks under the backup's one snapshot; `restore()` loads them (in one step, or with
//! `jobs => N, atomic => false` one job per part). A real PostgreSQL 15 with pg_backup
//! preloaded. Run by `make test` (PG_BACKUP_E2E=1); skipped elsewhere.

use postgres::Client;

mod support;
use support::*;

/// Per table: its row count and an md5 of its rows in id order.
fn fingerprint(c: &mut Client, table: &str) -> (i64, String) {
    let r = c
        .query_one(
            &format!(
                "SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY id)), '') FROM ONLY {table} t"
            ),
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

const TABLES: [&str; 4] = ["big", "dropped", "small", "big_child"];

fn fingerprints(c: &mut Client) -> Vec<(i64, String)> {
    TABLES.iter().map(|t| fingerprint(c, t)).collect()
}

/// `big`: 30,000 rows, one in fifty with an incompressible TOASTed value; `dropped`: a table
/// with a dropped column; `small`: a table under the threshold (copied whole); `big_child`
/// inherits from `big` (a part of `big` holds `big`'s own rows only).
fn fixture(c: &mut Client) {
    c.batch_execute(
        "CREATE TABLE big (id int PRIMARY KEY, name text NOT NULL, doc text, n numeric);
         INSERT INTO big SELECT i, 'row ' || i,
             CASE WHEN i % 50 = 0 THEN (SELECT string_agg(md5(i::text || '.' || k), '') FROM generate_series(1, 200) k) END,
             i / 7.0
           FROM generate_series(1, 30000) i;
         CREATE INDEX big_name ON big (name);
         CREATE TABLE big_child (extra text) INHERITS (big);
         INSERT INTO big_child SELECT i, 'child ' || i, NULL, 0, 'x' FROM generate_series(100001, 100100) i;
         CREATE TABLE dropped (id int PRIMARY KEY, gone text, kept text, also_gone int, tail int);
         INSERT INTO dropped SELECT i, repeat('g', 40), 'kept ' || i, i, -i FROM generate_series(1, 20000) i;
         ALTER TABLE dropped DROP COLUMN gone, DROP COLUMN also_gone;
         CREATE TABLE small (id int PRIMARY KEY, v text);
         INSERT INTO small SELECT i, 'v' || i FROM generate_series(1, 10) i;
         ANALYZE;",
    )
    .unwrap();
}

/// The parts the manifest of backup `id` lists: (table, part index, of).
fn parts(s: &Server, id: &str) -> Vec<(String, u64, u64)> {
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.backup_dir().join(id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["part"].is_null())
        .map(|f| {
            (
                f["table"].as_str().unwrap().to_string(),
                f["part"]["index"].as_u64().unwrap(),
                f["part"]["of"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn format_version(s: &Server, id: &str) -> u64 {
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.backup_dir().join(id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    m["format_version"].as_u64().unwrap()
}

/// Restore `id` into a new database `db` with `options`; the rows of the result that are not
/// ok, and (object, rows, detail) of each table_data row.
fn restore_into(
    s: &Server,
    db: &str,
    id: &str,
    options: &str,
) -> (Client, Vec<String>, Vec<(String, i64, String)>) {
    let mut r = fresh_database(s, db, "");
    let rows = r
        .query(
            &format!(
                "SELECT object, kind, status, coalesce(detail, ''), coalesce(rows, 0) FROM backup.restore($1{options})"
            ),
            &[&id],
        )
        .unwrap();
    let bad = rows
        .iter()
        .filter(|x| x.get::<_, String>(2) != "ok")
        .map(|x| {
            format!(
                "{} {} {} {}",
                x.get::<_, String>(0),
                x.get::<_, String>(1),
                x.get::<_, String>(2),
                x.get::<_, String>(3)
            )
        })
        .collect();
    let data = rows
        .iter()
        .filter(|x| x.get::<_, String>(1) == "table_data")
        .map(|x| (x.get(0), x.get(4), x.get(3)))
        .collect();
    (r, bad, data)
}

#[test]
fn a_split_table_backs_up_under_the_snapshot_and_restores_whole_serially_and_in_parallel() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut c = s.connect("app");
    fixture(&mut c);
    // The condition create() reads a part with is a TID Range Scan, not a scan of the table.
    let plan: Vec<String> = strings(
        &mut c,
        "EXPLAIN SELECT id FROM ONLY public.big WHERE ctid >= '(10,0)'::pg_catalog.tid AND ctid < '(20,0)'::pg_catalog.tid",
    );
    assert!(plan[0].contains("Tid Range Scan"), "{plan:#?}");

    // The backup's snapshot is taken before other sessions update, delete and insert rows
    // (the inserts grow the table past the blocks it had): none of that is in the backup.
    let expected = fingerprints(&mut c);
    c.batch_execute(
        "SET backup.split_table_size = '1MB';
         BEGIN ISOLATION LEVEL REPEATABLE READ;
         SELECT count(*) FROM small;",
    )
    .unwrap();
    let mut other = s.connect("app");
    other
        .batch_execute(
            "UPDATE big SET name = name || ' changed' WHERE id % 3 = 0;
             DELETE FROM big WHERE id % 5 = 0;
             INSERT INTO big SELECT i, 'new ' || i, repeat('n', 3000), 0 FROM generate_series(30001, 45000) i;
             UPDATE dropped SET kept = 'changed' WHERE id < 5000;
             DELETE FROM small WHERE id = 1;",
        )
        .unwrap();
    let id = create(&mut c, "label => 'split', jobs => 2");
    c.batch_execute("COMMIT").unwrap();
    let changed = fingerprints(&mut c);
    assert_ne!(changed, expected, "the other session changed the tables");

    let split = parts(&s, &id);
    let of_big: Vec<&(String, u64, u64)> = split.iter().filter(|p| p.0 == "big").collect();
    assert!(of_big.len() >= 2, "big is split: {split:?}");
    assert!(of_big.iter().all(|p| p.2 == of_big.len() as u64));
    assert!(split.iter().any(|p| p.0 == "dropped"), "{split:?}");
    assert!(!split.iter().any(|p| p.0 == "small"), "{split:?}");
    assert_eq!(
        format_version(&s, &id),
        3,
        "an archive with parts says format 3"
    );
    // The catalog counts a split table once, and its rows are the sum of its parts'.
    let row = c
        .query_one(
            "SELECT table_count, row_count FROM backup.backups WHERE id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(row.get::<_, Option<i32>>(0), Some(4));
    let snapshot_rows: i64 = expected.iter().map(|f| f.0).sum();
    assert_eq!(row.get::<_, Option<i64>>(1), Some(snapshot_rows));
    assert_eq!(
        count(
            &mut c,
            &format!("SELECT count(*) FROM backup.verify('{id}') WHERE status <> 'ok'")
        ),
        0
    );

    // The default restore (one transaction) and a parallel one: the rows of the snapshot.
    for (db, options) in [("serial", ""), ("parallel", ", atomic => false, jobs => 2")] {
        let (mut r, bad, data) = restore_into(&s, db, &id, options);
        assert!(bad.is_empty(), "{db}: {bad:#?}");
        assert_eq!(fingerprints(&mut r), expected, "{db}: the snapshot's rows");
        // Its index was built after every part was loaded.
        assert_eq!(
            count(
                &mut r,
                "SELECT count(*) FROM pg_indexes WHERE indexname = 'big_name'"
            ),
            1
        );
        let big_rows: i64 = data
            .iter()
            .filter(|d| d.0 == "public.big")
            .map(|d| d.1)
            .sum();
        assert_eq!(big_rows, expected[0].0, "{db}: {data:?}");
        let big_results = data.iter().filter(|d| d.0 == "public.big").count();
        if options.is_empty() {
            // One step loads all of a table's parts: all its rows or none.
            assert_eq!(big_results, 1, "{db}: {data:?}");
        } else {
            // One job per part: a row for each, saying which part.
            assert_eq!(big_results, of_big.len(), "{db}: {data:?}");
            assert!(
                data.iter()
                    .filter(|d| d.0 == "public.big")
                    .all(|d| d.2.starts_with("part ")),
                "{data:?}"
            );
        }
        let restored = r
            .query_one(
                "SELECT status, row_count FROM backup.restores ORDER BY id DESC LIMIT 1",
                &[],
            )
            .unwrap();
        assert_eq!(restored.get::<_, String>(0), "completed", "{db}");
        assert_eq!(
            restored.get::<_, Option<i64>>(1),
            Some(snapshot_rows),
            "{db}"
        );
    }

    // tables => names a split table: all its parts come back.
    let (mut r, bad, _) = restore_into(&s, "only_big", &id, ", tables => '{public.big}'");
    assert!(bad.is_empty(), "{bad:#?}");
    assert_eq!(fingerprint(&mut r, "big"), expected[0]);

    // A damaged part fails verify, which names its file, and only it.
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.backup_dir().join(&id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let victim = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["table"] == "big" && f["part"]["index"] == 1)
        .unwrap()["path"]
        .as_str()
        .unwrap()
        .to_string();
    let path = s.backup_dir().join(&id).join(&victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let failed = strings(
        &mut c,
        &format!("SELECT file || ' ' || status FROM backup.verify('{id}') WHERE status <> 'ok'"),
    );
    assert_eq!(failed, vec![format!("{victim} checksum_mismatch")]);
    // A restore refuses it: nothing of the table is loaded.
    let mut r = fresh_database(&s, "damaged", "");
    let e = r
        .query("SELECT * FROM backup.restore($1)", &[&id])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "XX001", "{}", describe(&e));
    assert_eq!(
        count(
            &mut r,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'big'"
        ),
        0
    );
}

#[test]
fn split_tables_in_csv_and_json_and_without_jobs_restore_their_rows() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut c = s.connect("app");
    fixture(&mut c);
    let expected = fingerprints(&mut c);
    c.batch_execute("SET backup.split_table_size = '1MB'")
        .unwrap();
    for (format, jobs) in [("csv", 2), ("json", 2), ("native", 1)] {
        let id = create(
            &mut c,
            &format!("label => '{format}', format => '{format}', jobs => {jobs}"),
        );
        assert!(
            parts(&s, &id).iter().filter(|p| p.0 == "big").count() >= 2,
            "{format}: big is split"
        );
        // Each part is a file of its own (a csv part with its header): deep verify reads
        // and counts every one.
        assert_eq!(
            strings(
                &mut c,
                &format!(
                    "SELECT file || ' ' || status FROM backup.verify('{id}') WHERE status <> 'ok'"
                )
            ),
            Vec::<String>::new(),
            "{format}"
        );
        for (db, options) in [
            (format!("{format}_serial"), ""),
            (format!("{format}_parallel"), ", atomic => false, jobs => 2"),
        ] {
            let (mut r, bad, _) = restore_into(&s, &db, &id, options);
            assert!(bad.is_empty(), "{db}: {bad:#?}");
            assert_eq!(fingerprints(&mut r), expected, "{db}");
        }
    }
    // A restore drill of a split backup counts every part's rows.
    let id = create(&mut c, "label => 'drill', jobs => 2");
    let d = c
        .query_one(
            "SELECT status, tables_checked, rows_checked FROM backup.drill($1)",
            &[&id],
        )
        .unwrap();
    assert_eq!(d.get::<_, String>(0), "succeeded");
    let total: i64 = expected.iter().map(|f| f.0).sum();
    assert_eq!(d.get::<_, Option<i64>>(2), Some(total));
    // backup.split_table_size = 0: nothing is split, and the archive stays format 2.
    c.batch_execute("SET backup.split_table_size = 0").unwrap();
    let id = create(&mut c, "label => 'whole', jobs => 2");
    assert!(parts(&s, &id).is_empty());
    assert_eq!(format_version(&s, &id), 2);
}
