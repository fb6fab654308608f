//! Tests that run inside a pgrx-managed PostgreSQL 15 (`cargo pgrx test`). Each test works in
//! its own schema and label, because tests run concurrently against one server.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use std::io::Read;
    use std::path::PathBuf;

    use pgrx::pg_sys::panic::CaughtError;
    use pgrx::prelude::*;

    use crate::archive::manifest::Manifest;
    use crate::archive::toc::{EntryKind, Section};

    /// Run `sql` and return the SQLSTATE it failed with (panics if it succeeded).
    fn sqlstate_of(sql: &str) -> String {
        match crate::subtransaction::run(|| Spi::run(sql)) {
            Ok(r) => panic!("expected an error from {sql}, got {r:?}"),
            Err(CaughtError::PostgresError(e)) | Err(CaughtError::ErrorReport(e)) => {
                format!("{:?}", e.sql_error_code())
            }
            Err(other) => panic!("unexpected error kind {other:?}"),
        }
    }

    fn hint_of(sql: &str) -> Option<String> {
        match crate::subtransaction::run(|| Spi::run(sql)) {
            Err(CaughtError::PostgresError(e)) | Err(CaughtError::ErrorReport(e)) => {
                e.hint().map(str::to_string)
            }
            _ => None,
        }
    }

    fn one_backup(sql: &str) -> (String, PathBuf) {
        let (id, path) = Spi::get_two::<String, String>(sql).unwrap();
        (id.unwrap(), PathBuf::from(path.unwrap()))
    }

    fn manifest(dir: &std::path::Path) -> Manifest {
        Manifest::from_json(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
    }

    /// Tables whose rows are in the backup.
    fn data_tables(m: &Manifest) -> Vec<&str> {
        m.files.iter().map(|f| f.table.as_str()).collect()
    }

    /// Whether the backup holds the CREATE TABLE of `name`.
    fn defines_table(m: &Manifest, name: &str) -> bool {
        m.toc
            .iter()
            .any(|e| e.kind == EntryKind::Table && e.name == name)
    }

    /// The lines of an archive file, decompressed as its suffix says.
    fn gunzip_lines(path: &std::path::Path) -> Vec<String> {
        let compression = match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => crate::archive::compression::Compression::Gzip(6),
            Some("zst") => crate::archive::compression::Compression::Zstd(3),
            _ => crate::archive::compression::Compression::None,
        };
        let mut s = String::new();
        compression
            .decoder(std::fs::File::open(path).unwrap())
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s.lines().map(str::to_string).collect()
    }

    fn make_sample(schema: &str) {
        Spi::run(&format!(
            "CREATE SCHEMA {schema};
             CREATE TYPE {schema}.mood AS ENUM ('sad', 'ok', 'happy');
             CREATE TABLE {schema}.people (id serial PRIMARY KEY, name text NOT NULL, mood {schema}.mood,
                 born date, tags text[], meta jsonb, balance numeric(12,2), photo bytea, seen timestamptz);
             INSERT INTO {schema}.people (name, mood, born, tags, meta, balance, photo, seen)
               SELECT 'p' || g || E'\\ttab\\nnewline', 'ok', date '2000-01-01' + g, ARRAY['a', NULL],
                      jsonb_build_object('g', g), g * 1.5, '\\x00ff0a09', now()
               FROM generate_series(1, 500) g;
             CREATE TABLE {schema}.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 person int REFERENCES {schema}.people(id), total numeric CHECK (total >= 0));
             INSERT INTO {schema}.orders (person, total) SELECT g % 500 + 1, g FROM generate_series(1, 2000) g;
             CREATE INDEX ON {schema}.orders (person);
             CREATE TABLE {schema}.empty_one (x int);
             CREATE VIEW {schema}.big_orders AS SELECT * FROM {schema}.orders WHERE total > 1000;"
        ))
        .unwrap();
    }

    #[pg_test]
    fn create_backs_up_every_table_and_verify_says_ok() {
        make_sample("s_create");
        let (id, dir) = one_backup(
            "SELECT backup_id, path FROM backup.create(schemas => '{s_create}', label => 'create-ok')",
        );
        let status = Spi::get_one_with_args::<String>(
            "SELECT status FROM backup.backups WHERE id = $1",
            &[id.clone().into()],
        )
        .unwrap();
        assert_eq!(status.as_deref(), Some("completed"));
        let m = manifest(&dir);
        let tables: Vec<(&str, u64)> = m.files.iter().map(|f| (f.table.as_str(), f.rows)).collect();
        assert_eq!(
            tables,
            [("people", 500), ("orders", 2000), ("empty_one", 0)]
        );
        // Rows in the file are the rows of the table, in COPY text.
        let people = m.files.iter().find(|f| f.table == "people").unwrap();
        let lines = gunzip_lines(&dir.join(&people.path));
        assert_eq!(lines.len(), 500);
        assert!(lines[0].contains("p1\\ttab\\nnewline"), "{}", lines[0]);
        // The DDL is in the manifest's TOC, by section, each entry after what it needs.
        let of = |section: Section| -> Vec<&str> {
            m.toc
                .iter()
                .filter(|e| e.section == section)
                .map(|e| e.kind.as_str())
                .collect()
        };
        let pre = of(Section::PreData);
        for kind in ["schema", "type", "sequence", "table", "view"] {
            assert!(pre.contains(&kind), "no {kind} in pre-data: {pre:?}");
        }
        assert!(of(Section::Data).contains(&"sequence_set"));
        let post = of(Section::PostData);
        for kind in ["constraint", "index", "foreign_key"] {
            assert!(post.contains(&kind), "no {kind} in post-data: {post:?}");
        }
        for (i, e) in m.toc.iter().enumerate() {
            for d in &e.deps {
                let at = m.toc.iter().position(|x| x.id == *d).unwrap();
                assert!(at < i, "{} comes before what it needs", e.describe());
            }
        }
        // Everything verifies, deep and shallow.
        for deep in [true, false] {
            let bad = Spi::get_one_with_args::<i64>(
                "SELECT count(*) FROM backup.verify($1, $2) WHERE status <> 'ok'",
                &[id.clone().into(), deep.into()],
            )
            .unwrap();
            assert_eq!(bad, Some(0));
        }
        let files = Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM backup.verify($1)",
            &[id.clone().into()],
        )
        .unwrap();
        assert_eq!(files, Some(5)); // manifest, its signature (manifest.sig) + 3 data files
        let vs = Spi::get_one_with_args::<String>(
            "SELECT verify_status FROM backup.backups WHERE id = $1",
            &[id.into()],
        )
        .unwrap();
        assert_eq!(vs.as_deref(), Some("ok"));
        // Archive files are private to the server's OS user.
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(dir.join("manifest.json"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }

    fn verify_status_of(id: &str, file: &str) -> Option<String> {
        Spi::get_one_with_args::<String>(
            "SELECT status || coalesce(': ' || detail, '') FROM backup.verify($1) WHERE file = $2",
            &[id.into(), file.into()],
        )
        .unwrap()
    }

    #[pg_test]
    fn verify_names_each_kind_of_damage() {
        make_sample("s_damage");
        let take = |label: &str| {
            one_backup(&format!("SELECT backup_id, path FROM backup.create(schemas => '{{s_damage}}', label => '{label}')"))
        };
        // A flipped byte.
        let (id, dir) = take("flip");
        let f = manifest(&dir).files[0].path.clone();
        let mut bytes = std::fs::read(dir.join(&f)).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(dir.join(&f), &bytes).unwrap();
        assert!(verify_status_of(&id, &f)
            .unwrap()
            .starts_with("checksum_mismatch"));
        let vs = Spi::get_one_with_args::<String>(
            "SELECT verify_status FROM backup.backups WHERE id = $1",
            &[id.into()],
        )
        .unwrap();
        assert_eq!(vs.as_deref(), Some("failed"));
        // A truncated file.
        let (id, dir) = take("trunc");
        let f = manifest(&dir).files[0].path.clone();
        let bytes = std::fs::read(dir.join(&f)).unwrap();
        std::fs::write(dir.join(&f), &bytes[..bytes.len() - 10]).unwrap();
        assert!(verify_status_of(&id, &f)
            .unwrap()
            .starts_with("checksum_mismatch"));
        // A missing file and an unexpected one.
        let (id, dir) = take("missing");
        let f = manifest(&dir).files[1].path.clone();
        std::fs::remove_file(dir.join(&f)).unwrap();
        std::fs::write(dir.join("data/extra.bin"), b"?").unwrap();
        assert!(verify_status_of(&id, &f).unwrap().starts_with("missing"));
        assert!(verify_status_of(&id, "data/extra.bin")
            .unwrap()
            .starts_with("unexpected"));
        // An edited manifest.
        let (id, dir) = take("manifest");
        let text = std::fs::read_to_string(dir.join("manifest.json"))
            .unwrap()
            .replace("s_damage", "s_damagE");
        std::fs::write(dir.join("manifest.json"), text).unwrap();
        assert!(verify_status_of(&id, "manifest.json")
            .unwrap()
            .starts_with("checksum_mismatch"));
    }

    #[pg_test]
    fn options_change_what_is_in_the_backup() {
        make_sample("s_opts");
        let (_, dir) = one_backup("SELECT backup_id, path FROM backup.create(tables => '{s_opts.orders}', label => 'only-orders')");
        let m = manifest(&dir);
        assert_eq!(data_tables(&m), ["orders"]);
        assert!(defines_table(&m, "orders"));
        assert!(!defines_table(&m, "people"));

        let (_, dir) = one_backup(
            "SELECT backup_id, path FROM backup.create(schemas => '{s_opts}', exclude_data => '{s_opts.people}', exclude_tables => '{s_opts.empty_one}', label => 'excl')",
        );
        let m = manifest(&dir);
        assert_eq!(data_tables(&m), ["orders"]);
        assert!(defines_table(&m, "people"));
        assert!(!defines_table(&m, "empty_one"));

        let (id, dir) = one_backup("SELECT backup_id, path FROM backup.create(schemas => '{s_opts}', schema_only => true, label => 'ddl')");
        let m = manifest(&dir);
        assert!(m.files.is_empty());
        assert!(m.toc.iter().any(|e| e.kind == EntryKind::Table));
        assert!(m.toc.iter().all(|e| e.section != Section::Data));
        let kind = Spi::get_one_with_args::<String>(
            "SELECT kind FROM backup.backups WHERE id = $1",
            &[id.into()],
        )
        .unwrap();
        assert_eq!(kind.as_deref(), Some("schema"));

        let (_, dir) = one_backup("SELECT backup_id, path FROM backup.create(schemas => '{s_opts}', data_only => true, compression => 'none', label => 'raw')");
        let m = manifest(&dir);
        assert!(m.toc.iter().all(|e| e.section == Section::Data));
        assert_eq!(m.compression.name(), "none");
        let people = m.files.iter().find(|f| f.table == "people").unwrap();
        let text = std::fs::read_to_string(dir.join(&people.path)).unwrap();
        assert_eq!(text.lines().count(), 500);

        // Bare names resolve through the caller's search_path.
        Spi::run("SET LOCAL search_path = s_opts, public").unwrap();
        let (_, dir) = one_backup(
            "SELECT backup_id, path FROM backup.create(tables => '{people}', label => 'bare')",
        );
        assert_eq!(manifest(&dir).files[0].schema, "s_opts");
        let sp = Spi::get_one::<String>("SELECT current_setting('search_path')").unwrap();
        assert_eq!(
            sp.as_deref(),
            Some("s_opts, public"),
            "the caller's search_path is restored"
        );
    }

    #[pg_test]
    fn row_level_security_never_hides_rows_from_a_backup() {
        Spi::run(
            "CREATE SCHEMA s_rls;
             CREATE TABLE s_rls.secrets (id int, owner text);
             INSERT INTO s_rls.secrets SELECT g, 'u' || g FROM generate_series(1, 100) g;
             ALTER TABLE s_rls.secrets ENABLE ROW LEVEL SECURITY;
             ALTER TABLE s_rls.secrets FORCE ROW LEVEL SECURITY;
             CREATE POLICY nobody ON s_rls.secrets USING (false);",
        )
        .unwrap();
        let (_, dir) = one_backup(
            "SELECT backup_id, path FROM backup.create(schemas => '{s_rls}', label => 'rls')",
        );
        let m = manifest(&dir);
        assert_eq!(m.files[0].rows, 100);
        assert!(m
            .toc
            .iter()
            .any(|e| e.kind == EntryKind::Policy && e.sql.contains("USING (false)")));
        assert!(m
            .toc
            .iter()
            .any(|e| e.kind == EntryKind::RowSecurity && e.sql.contains("FORCE")));
    }

    #[pg_test]
    fn bad_input_gets_the_right_sqlstate_and_a_hint() {
        Spi::run("CREATE SCHEMA s_bad; CREATE TABLE s_bad.t (a int)").unwrap();
        assert_eq!(
            sqlstate_of("SELECT * FROM backup.create(tables => '{s_bad.nope}')"),
            "ERRCODE_UNDEFINED_OBJECT"
        );
        assert_eq!(
            sqlstate_of("SELECT * FROM backup.create(schemas => '{no_such_schema}')"),
            "ERRCODE_UNDEFINED_OBJECT"
        );
        assert_eq!(
            sqlstate_of("SELECT * FROM backup.create(compression => 'lz4')"),
            "ERRCODE_INVALID_PARAMETER_VALUE"
        );
        assert!(
            hint_of("SELECT * FROM backup.create(compression => 'zstd:20')")
                .unwrap()
                .contains("'zstd:1' .. 'zstd:19'")
        );
        assert_eq!(
            sqlstate_of("SELECT * FROM backup.create(schema_only => true, data_only => true)"),
            "ERRCODE_INVALID_PARAMETER_VALUE"
        );
        assert_eq!(
            sqlstate_of("SELECT * FROM backup.create(label => '../../etc')"),
            "ERRCODE_INVALID_PARAMETER_VALUE"
        );
        assert_eq!(
            sqlstate_of("SELECT * FROM backup.verify('../../etc')"),
            "ERRCODE_INVALID_PARAMETER_VALUE"
        );
        assert_eq!(
            sqlstate_of("SELECT backup.delete('../x')"),
            "ERRCODE_INVALID_PARAMETER_VALUE"
        );
        assert_eq!(
            sqlstate_of("SELECT * FROM backup.verify('20200101T000000.000000Z-none')"),
            "ERRCODE_UNDEFINED_OBJECT"
        );
        assert_eq!(
            sqlstate_of("SELECT * FROM backup.prune()"),
            "ERRCODE_INVALID_PARAMETER_VALUE"
        );
    }

    #[pg_test]
    fn delete_prune_and_rescan_manage_the_archives() {
        Spi::run("CREATE SCHEMA s_keep; CREATE TABLE s_keep.t AS SELECT generate_series(1, 10) a")
            .unwrap();
        let mut ids = Vec::new();
        for i in 0..3 {
            let (id, _) = one_backup(&format!("SELECT backup_id, path FROM backup.create(schemas => '{{s_keep}}', label => 'keep{i}')"));
            ids.push(id);
        }
        // delete removes the files and marks the row.
        let (id, dir) = one_backup(
            "SELECT backup_id, path FROM backup.create(schemas => '{s_keep}', label => 'gone')",
        );
        assert_eq!(
            Spi::get_one_with_args::<bool>("SELECT backup.delete($1)", &[id.clone().into()])
                .unwrap(),
            Some(true)
        );
        assert!(!dir.exists());
        let st = Spi::get_one_with_args::<String>(
            "SELECT status FROM backup.backups WHERE id = $1",
            &[id.into()],
        )
        .unwrap();
        assert_eq!(st.as_deref(), Some("deleted"));
        // rescan registers an archive the catalog lost.
        let lost = ids[2].clone();
        Spi::run_with_args(
            "DELETE FROM backup.backups WHERE id = $1",
            &[lost.clone().into()],
        )
        .unwrap();
        let found = Spi::get_one::<Vec<String>>("SELECT array_agg(r) FROM backup.rescan() r")
            .unwrap()
            .unwrap_or_default();
        assert!(found.contains(&lost), "{found:?}");
        let rows = Spi::get_one_with_args::<i64>(
            "SELECT row_count FROM backup.backups WHERE id = $1",
            &[lost.into()],
        )
        .unwrap();
        assert_eq!(rows, Some(10));
        // prune dry run names what would go and removes nothing. (Other tests take backups
        // meanwhile, so only this test's backups are looked at.)
        let would = Spi::get_one::<Vec<String>>(
            "SELECT array_agg(p) FROM backup.prune(keep_last => 1, dry_run => true) p",
        )
        .unwrap()
        .unwrap_or_default();
        assert!(
            would.contains(&ids[0]) && would.contains(&ids[1]),
            "{would:?}"
        );
        let still = Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM backup.backups WHERE id = ANY($1) AND status = 'completed'",
            &[ids.clone().into()],
        )
        .unwrap();
        assert_eq!(still, Some(3));
        // keep_days keeps what is recent: nothing of this test goes.
        let would = Spi::get_one::<Vec<String>>(
            "SELECT array_agg(p) FROM backup.prune(keep_days => 1, dry_run => true) p",
        )
        .unwrap()
        .unwrap_or_default();
        assert!(!would.iter().any(|id| ids.contains(id)), "{would:?}");
    }

    fn fingerprint(schema: &str) -> Vec<Option<String>> {
        ["people", "orders", "empty_one"]
            .iter()
            .map(|t| {
                Spi::get_one::<String>(&format!(
                    "SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {schema}.{t} x"
                ))
                .unwrap()
            })
            .collect()
    }

    #[pg_test]
    fn restore_analyzes_what_it_loaded_unless_asked_not_to() {
        make_sample("s_an");
        let (id, _) = one_backup(
            "SELECT backup_id, path FROM backup.create(schemas => '{s_an}', label => 'an')",
        );
        let stats = || {
            Spi::get_one::<i64>(
                "SELECT count(DISTINCT starelid) FROM pg_statistic s JOIN pg_class c ON c.oid = s.starelid
                 WHERE c.relnamespace = 's_an'::regnamespace AND c.relkind = 'r'",
            )
            .unwrap()
            .unwrap()
        };
        Spi::run("DROP SCHEMA s_an CASCADE").unwrap();
        Spi::run(&format!(
            "SELECT count(*) FROM backup.restore('{id}', \"analyze\" => false)"
        ))
        .unwrap();
        assert_eq!(
            stats(),
            0,
            "analyze => false leaves the planner without statistics"
        );
        Spi::run("DROP SCHEMA s_an CASCADE").unwrap();
        Spi::run(&format!("SELECT count(*) FROM backup.restore('{id}')")).unwrap();
        // The sample's tables with rows: people and orders.
        for t in ["s_an.people", "s_an.orders"] {
            let n = Spi::get_one::<i64>(&format!(
                "SELECT count(*) FROM pg_statistic WHERE starelid = '{t}'::regclass"
            ))
            .unwrap()
            .unwrap();
            assert!(n > 0, "{t} has planner statistics after the restore");
        }
        // The restore's own settings ended with the call.
        assert_eq!(
            Spi::get_one::<String>("SELECT current_setting('maintenance_work_mem')")
                .unwrap()
                .as_deref(),
            Some("64MB")
        );
    }

    #[pg_test]
    fn restore_brings_back_what_was_backed_up() {
        make_sample("s_rt");
        let before = fingerprint("s_rt");
        let (id, dir) = one_backup(
            "SELECT backup_id, path FROM backup.create(schemas => '{s_rt}', label => 'rt')",
        );
        Spi::run("DROP SCHEMA s_rt CASCADE").unwrap();
        let loaded = Spi::get_one_with_args::<i64>(
            "SELECT sum(rows)::bigint FROM backup.restore($1) WHERE kind = 'table_data'",
            &[id.clone().into()],
        )
        .unwrap();
        assert_eq!(loaded, Some(2500));
        assert_eq!(fingerprint("s_rt"), before);
        // Structure came back too: view, index, FK, identity and serial sequences.
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM s_rt.big_orders").unwrap(),
            Some(1000)
        );
        let idx = Spi::get_one::<i64>("SELECT count(*) FROM pg_indexes WHERE schemaname = 's_rt'")
            .unwrap();
        assert_eq!(idx, Some(3));
        assert_eq!(
            sqlstate_of("INSERT INTO s_rt.orders (person, total) VALUES (9999, 1)"),
            "ERRCODE_FOREIGN_KEY_VIOLATION"
        );
        let next =
            Spi::get_one::<i32>("INSERT INTO s_rt.people (name) VALUES ('new') RETURNING id")
                .unwrap();
        assert_eq!(next, Some(501));
        let st = Spi::get_one_with_args::<String>(
            "SELECT status FROM backup.restores WHERE backup_id = $1 ORDER BY id DESC LIMIT 1",
            &[id.clone().into()],
        )
        .unwrap();
        assert_eq!(st.as_deref(), Some("completed"));

        // The tables exist now: the default refuses and names them; truncate needs confirm.
        assert_eq!(
            sqlstate_of(&format!("SELECT * FROM backup.restore('{id}')")),
            "ERRCODE_DUPLICATE_TABLE"
        );
        assert_eq!(
            sqlstate_of(&format!(
                "SELECT * FROM backup.restore('{id}', existing => 'truncate')"
            )),
            "ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE"
        );
        assert!(hint_of(&format!(
            "SELECT * FROM backup.restore('{id}', existing => 'truncate')"
        ))
        .unwrap()
        .contains("confirm => true"));
        // A dry run plans and changes nothing.
        let planned = Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM backup.restore($1, existing => 'truncate', dry_run => true) WHERE action = 'truncate'",
            &[id.clone().into()],
        )
        .unwrap();
        assert_eq!(planned, Some(3));
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM s_rt.people").unwrap(),
            Some(501)
        );
        // truncate + confirm puts back exactly the backed-up rows.
        Spi::run(&format!(
            "SELECT * FROM backup.restore('{id}', existing => 'truncate', confirm => true)"
        ))
        .unwrap();
        assert_eq!(fingerprint("s_rt"), before);
        // drop + confirm recreates the tables: a column added since is gone again.
        Spi::run("ALTER TABLE s_rt.orders ADD COLUMN added int").unwrap();
        assert_eq!(
            sqlstate_of(&format!(
                "SELECT * FROM backup.restore('{id}', existing => 'drop')"
            )),
            "ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE"
        );
        Spi::run(&format!(
            "SELECT * FROM backup.restore('{id}', existing => 'drop', confirm => true)"
        ))
        .unwrap();
        assert_eq!(fingerprint("s_rt"), before);
        assert_eq!(count("SELECT count(*) FROM pg_attribute WHERE attrelid = 's_rt.orders'::regclass AND attname = 'added'"), 0);
        assert_eq!(
            sqlstate_of("INSERT INTO s_rt.orders (person, total) VALUES (9999, 1)"),
            "ERRCODE_FOREIGN_KEY_VIOLATION"
        );

        // A damaged archive is refused and the database is unchanged.
        let f = manifest(&dir).files[0].path.clone();
        let mut bytes = std::fs::read(dir.join(&f)).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        std::fs::write(dir.join(&f), &bytes).unwrap();
        Spi::run("DELETE FROM s_rt.orders WHERE id > 10").unwrap();
        assert_eq!(
            sqlstate_of(&format!(
                "SELECT * FROM backup.restore('{id}', existing => 'truncate', confirm => true)"
            )),
            "ERRCODE_DATA_CORRUPTED"
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM s_rt.orders").unwrap(),
            Some(10)
        );
    }

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql).unwrap().unwrap()
    }

    #[pg_test]
    fn a_subset_brings_what_its_tables_need_and_reports_dangling_foreign_keys() {
        make_sample("s_sub");
        let (id, _) = one_backup(
            "SELECT backup_id, path FROM backup.create(schemas => '{s_sub}', label => 'sub')",
        );
        Spi::run("DROP SCHEMA s_sub CASCADE").unwrap();
        // orders references people, which is neither restored nor present: reported, not dropped silently.
        let fk = Spi::get_one_with_args::<String>(
            "SELECT status || ': ' || detail FROM backup.restore($1, tables => '{s_sub.orders}') WHERE kind = 'foreign_key'",
            &[id.clone().into()],
        )
        .unwrap()
        .unwrap();
        assert!(fk.starts_with("warning: references s_sub.people"), "{fk}");
        assert_eq!(count("SELECT count(*) FROM s_sub.orders"), 2000);
        assert_eq!(
            count("SELECT count(*) FROM pg_tables WHERE schemaname = 's_sub'"),
            1
        );
        assert_eq!(count("SELECT count(*) FROM pg_indexes WHERE schemaname = 's_sub' AND tablename = 'orders'"), 2);
        // The identity sequence came back with its value.
        assert_eq!(
            Spi::get_one::<i64>(
                "INSERT INTO s_sub.orders (person, total) VALUES (1, 1) RETURNING id"
            )
            .unwrap(),
            Some(2001)
        );
        // schemas => brings the rest, views included; the FK now finds people.
        Spi::run(&format!(
            "SELECT * FROM backup.restore('{id}', schemas => '{{s_sub}}', existing => 'skip')"
        ))
        .unwrap();
        assert_eq!(count("SELECT count(*) FROM s_sub.people"), 500);
        assert_eq!(count("SELECT count(*) FROM s_sub.big_orders"), 1000);
        // Names that are not in the backup are errors.
        assert_eq!(
            sqlstate_of(&format!(
                "SELECT * FROM backup.restore('{id}', tables => '{{s_sub.nope}}')"
            )),
            "ERRCODE_UNDEFINED_OBJECT"
        );
        assert_eq!(
            sqlstate_of(&format!(
                "SELECT * FROM backup.restore('{id}', schemas => '{{nope}}')"
            )),
            "ERRCODE_UNDEFINED_OBJECT"
        );
        assert_eq!(
            sqlstate_of(&format!(
                "SELECT * FROM backup.restore('{id}', on_error => 'ignore')"
            )),
            "ERRCODE_INVALID_PARAMETER_VALUE"
        );
    }

    #[pg_test]
    fn target_schema_restores_beside_the_original() {
        make_sample("s_tgt");
        let before = fingerprint("s_tgt");
        let (id, _) = one_backup(
            "SELECT backup_id, path FROM backup.create(schemas => '{s_tgt}', label => 'tgt')",
        );
        Spi::run("DELETE FROM s_tgt.orders WHERE id > 100").unwrap();
        Spi::run(&format!(
            "SELECT * FROM backup.restore('{id}', tables => '{{s_tgt.people, s_tgt.orders, s_tgt.empty_one}}', target_schema => 'yesterday')"
        ))
        .unwrap();
        assert_eq!(fingerprint("yesterday"), before);
        assert_eq!(
            count("SELECT count(*) FROM s_tgt.orders"),
            100,
            "the original is untouched"
        );
        // Its constraints point inside the new schema, its sequences are its own.
        let fk = Spi::get_one::<String>(
            "SELECT confrelid::regclass::text FROM pg_constraint WHERE conrelid = 'yesterday.orders'::regclass AND contype = 'f'",
        )
        .unwrap();
        assert_eq!(fk.as_deref(), Some("yesterday.people"));
        assert_eq!(
            Spi::get_one::<i32>("INSERT INTO yesterday.people (name) VALUES ('x') RETURNING id")
                .unwrap(),
            Some(501)
        );
        assert_eq!(
            sqlstate_of(&format!("SELECT * FROM backup.restore('{id}', target_schema => 'elsewhere', tables => '{{s_tgt.people}}', schemas => '{{public}}')")),
            "ERRCODE_UNDEFINED_OBJECT"
        );
    }

    #[pg_test]
    fn on_error_continue_restores_the_rest_and_abort_restores_nothing() {
        make_sample("s_cont");
        let (id, _) = one_backup(
            "SELECT backup_id, path FROM backup.create(schemas => '{s_cont}', label => 'cont')",
        );
        Spi::run("DELETE FROM s_cont.orders; DELETE FROM s_cont.empty_one; INSERT INTO s_cont.empty_one VALUES (7)").unwrap();
        // Appending people again breaks its primary key; orders alone would load fine.
        let call = format!("SELECT * FROM backup.restore('{id}', existing => 'append', tables => '{{s_cont.people, s_cont.orders}}')");
        assert_eq!(sqlstate_of(&call), "ERRCODE_UNIQUE_VIOLATION");
        assert_eq!(
            count("SELECT count(*) FROM s_cont.orders"),
            0,
            "abort: nothing restored"
        );
        // The failed restore's history row survived its rollback (tests run concurrently:
        // look at this backup's restores only).
        let last_of = |id: &str| {
            Spi::get_two_with_args::<String, String>(
                "SELECT status, error FROM backup.restores WHERE backup_id = $1 ORDER BY id DESC LIMIT 1",
                &[id.into()],
            )
            .unwrap()
        };
        let (status, error) = last_of(&id);
        assert_eq!(status.as_deref(), Some("failed"));
        // Without the key's value (issue 9): the SQLSTATE and its condition name.
        let error = error.unwrap();
        assert!(
            error.contains("unique violation") && error.contains("23505"),
            "{error}"
        );
        let failed = Spi::get_one::<String>(&format!(
            "SELECT string_agg(object || ' ' || status, ',' ORDER BY object) FROM ({}) r WHERE kind = 'table_data'",
            call.replace("'append',", "'append', on_error => 'continue',")
        ))
        .unwrap()
        .unwrap();
        assert_eq!(failed, "s_cont.orders ok,s_cont.people failed");
        assert_eq!(count("SELECT count(*) FROM s_cont.orders"), 2000);
        let (status, error) = last_of(&id);
        assert_eq!(status.as_deref(), Some("completed"));
        assert!(error.unwrap().contains("1 object(s) failed"));
    }

    #[pg_test]
    fn disable_triggers_keeps_user_triggers_quiet_while_loading() {
        make_sample("s_trg");
        let (id, _) = one_backup(
            "SELECT backup_id, path FROM backup.create(tables => '{s_trg.people}', label => 'trg')",
        );
        Spi::run(
            "TRUNCATE s_trg.people CASCADE;
             CREATE FUNCTION s_trg.no_inserts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no inserts'; END $$;
             CREATE TRIGGER guard BEFORE INSERT ON s_trg.people FOR EACH ROW EXECUTE FUNCTION s_trg.no_inserts();",
        )
        .unwrap();
        let call = format!("SELECT * FROM backup.restore('{id}', existing => 'append')");
        assert_eq!(sqlstate_of(&call), "ERRCODE_RAISE_EXCEPTION");
        Spi::run(&call.replace("'append'", "'append', disable_triggers => true")).unwrap();
        assert_eq!(count("SELECT count(*) FROM s_trg.people"), 500);
        let role =
            Spi::get_one::<String>("SELECT current_setting('session_replication_role')").unwrap();
        assert_eq!(
            role.as_deref(),
            Some("origin"),
            "triggers are back on after the load"
        );
        // Settings restore changes for its own work do not outlive the call.
        let bodies =
            Spi::get_one::<String>("SELECT current_setting('check_function_bodies')").unwrap();
        assert_eq!(bodies.as_deref(), Some("on"));
        let level =
            Spi::get_one::<String>("SELECT current_setting('client_min_messages')").unwrap();
        assert_ne!(level.as_deref(), Some("warning"));
    }

    #[pg_test]
    fn schedules_are_checked_when_written() {
        let row = Spi::get_two::<String, bool>(
            "SELECT cron, next_run_at > now() FROM backup.schedule('nightly', '30 2 * * *', schemas => '{public}', keep_last => 7)",
        )
        .unwrap();
        assert_eq!(row, (Some("30 2 * * *".into()), Some(true)));
        let opts = Spi::get_one::<String>(
            "SELECT options->>'compression' FROM backup.schedules WHERE name = 'nightly'",
        )
        .unwrap();
        // Left out: the run uses backup.compression at the time.
        assert_eq!(opts, None);
        // Replacing keeps one row.
        Spi::run("SELECT * FROM backup.schedule('nightly', '@daily')").unwrap();
        assert_eq!(
            count("SELECT count(*) FROM backup.schedules WHERE name = 'nightly'"),
            1
        );
        for bad in [
            "SELECT * FROM backup.schedule('x', '* * *')",
            "SELECT * FROM backup.schedule('x', '0 0 30 2 *')",
            "SELECT * FROM backup.schedule('x', '90 seconds')",
            "SELECT * FROM backup.schedule('x', '@daily', compression => 'lz4')",
            "SELECT * FROM backup.schedule('x', '@daily', keep_last => 0)",
            "SELECT * FROM backup.schedule('../x', '@daily')",
        ] {
            assert_eq!(sqlstate_of(bad), "ERRCODE_INVALID_PARAMETER_VALUE", "{bad}");
        }
        assert!(hint_of("SELECT * FROM backup.schedule('x', '* * *')")
            .unwrap()
            .contains("five fields"));
        assert_eq!(
            sqlstate_of("SELECT * FROM backup.schedule('x', '@daily', database => 'nope')"),
            "ERRCODE_UNDEFINED_OBJECT"
        );
        assert_eq!(
            Spi::get_one::<bool>("SELECT backup.unschedule('nightly')").unwrap(),
            Some(true)
        );
        assert_eq!(
            sqlstate_of("SELECT backup.unschedule('nightly')"),
            "ERRCODE_UNDEFINED_OBJECT"
        );
        assert_eq!(
            sqlstate_of("SELECT * FROM backup.run_schedule('nightly')"),
            "ERRCODE_UNDEFINED_OBJECT"
        );
    }

    #[pg_test]
    fn json_keeps_array_bounds_and_every_format_restores_them() {
        Spi::run(
            "CREATE SCHEMA s_arr;
             CREATE DOMAIN s_arr.ints AS int[];
             CREATE TABLE s_arr.t (id int PRIMARY KEY, a numeric[], m int[], d s_arr.ints, x text[]);
             INSERT INTO s_arr.t VALUES
               (1, '[0:1]={1.1,2.2}', '[2:3][1:2]={{1,2},{3,4}}', '[5:5]={7}', '[-2:-1]={\"a b\",NULL}'),
               (2, '{1,2}', '{{1,2},{3,4}}', '{}', '{}'),
               (3, NULL, '[4:4]={NULL}', NULL, '{\"[0:1]={x}\"}')",
        )
        .unwrap();
        let rows = || {
            Spi::get_one::<String>("SELECT string_agg(t::text, '|' ORDER BY id) FROM s_arr.t t")
                .unwrap()
        };
        let before = rows();
        let dims = || {
            Spi::get_one::<String>(
                "SELECT string_agg(concat_ws(' ', id, array_dims(a), array_dims(m), array_dims(d), array_dims(x)), ';' ORDER BY id) FROM s_arr.t",
            )
            .unwrap()
        };
        let want = dims();
        for format in ["json", "native", "csv", "sql"] {
            let (id, _) = one_backup(&format!(
                "SELECT backup_id, path FROM backup.create(schemas => '{{s_arr}}', label => 'arr-{format}', format => '{format}')"
            ));
            Spi::run("TRUNCATE s_arr.t").unwrap();
            Spi::run(&format!(
                "SELECT * FROM backup.restore('{id}', existing => 'append')"
            ))
            .unwrap();
            assert_eq!(dims(), want, "{format}: array bounds");
            assert_eq!(rows(), before, "{format}: rows");
        }
    }

    #[pg_test]
    fn every_format_restores_a_subset_with_the_same_options() {
        make_sample("s_fmt");
        let before = fingerprint("s_fmt");
        for format in ["sql", "json", "csv"] {
            let (id, dir) = one_backup(&format!(
                "SELECT backup_id, path FROM backup.create(schemas => '{{s_fmt}}', label => 'fmt-{format}', format => '{format}')"
            ));
            let m = manifest(&dir);
            assert_eq!(m.format.name(), format);
            let bad = count(&format!(
                "SELECT count(*) FROM backup.verify('{id}') WHERE status <> 'ok'"
            ));
            assert_eq!(bad, 0, "{format}");
            // Only orders, whose rows are the second block/file: the others are skipped.
            Spi::run("DELETE FROM s_fmt.orders WHERE id > 5").unwrap();
            let planned = count(&format!(
                "SELECT sum(rows)::bigint FROM backup.restore('{id}', tables => '{{s_fmt.orders}}', existing => 'truncate', dry_run => true)"
            ));
            assert_eq!(planned, 2000, "{format}");
            Spi::run(&format!(
                "SELECT * FROM backup.restore('{id}', tables => '{{s_fmt.orders}}', existing => 'truncate', confirm => true)"
            ))
            .unwrap();
            assert_eq!(fingerprint("s_fmt"), before, "{format}");
        }
        // A damaged script is refused like any archive.
        let (id, dir) = one_backup("SELECT backup_id, path FROM backup.create(schemas => '{s_fmt}', label => 'fmt-bad', format => 'sql', compression => 'none')");
        let path = dir.join("backup.sql");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("p1\\ttab", "p1\\tTAB");
        std::fs::write(&path, text).unwrap();
        assert!(verify_status_of(&id, "backup.sql")
            .unwrap()
            .starts_with("checksum_mismatch"));
    }

    #[pg_test]
    fn partitions_come_with_their_parent_and_drop_and_truncate_touch_only_the_restore() {
        Spi::run(
            "CREATE SCHEMA s_part;
             CREATE TABLE s_part.ev (id int, at date) PARTITION BY RANGE (at);
             CREATE TABLE s_part.ev_2024 PARTITION OF s_part.ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
             CREATE TABLE s_part.ev_2025 PARTITION OF s_part.ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
             INSERT INTO s_part.ev SELECT g, date '2024-01-01' + g FROM generate_series(0, 699) g;
             CREATE TABLE s_part.base (id int);
             CREATE TABLE s_part.kid (extra text) INHERITS (s_part.base);
             INSERT INTO s_part.base VALUES (1); INSERT INTO s_part.kid VALUES (2, 'x');
             CREATE SEQUENCE s_part.standalone;",
        )
        .unwrap();
        let (id, _) = one_backup(
            "SELECT backup_id, path FROM backup.create(schemas => '{s_part}', label => 'part')",
        );
        Spi::run("DROP SCHEMA s_part CASCADE").unwrap();
        // Asking for the parent brings its partitions and their rows.
        Spi::run(&format!(
            "SELECT * FROM backup.restore('{id}', tables => '{{s_part.ev}}')"
        ))
        .unwrap();
        assert_eq!(count("SELECT count(*) FROM s_part.ev"), 700);
        assert_eq!(
            count("SELECT count(*) FROM pg_inherits WHERE inhparent = 's_part.ev'::regclass"),
            2
        );
        // drop recreates the whole tree (the parent's DROP takes its partitions along).
        Spi::run("DELETE FROM s_part.ev WHERE id < 100").unwrap();
        Spi::run(&format!("SELECT * FROM backup.restore('{id}', tables => '{{s_part.ev}}', existing => 'drop', confirm => true)")).unwrap();
        assert_eq!(count("SELECT count(*) FROM s_part.ev"), 700);
        // Back comes the rest of the schema (existing tables kept).
        Spi::run(&format!(
            "SELECT * FROM backup.restore('{id}', schemas => '{{s_part}}', existing => 'skip')"
        ))
        .unwrap();
        assert_eq!(
            count("SELECT count(*) FROM s_part.base"),
            2,
            "base and its child kid"
        );
        // truncate empties ONLY the tables whose rows come back: a child of base created after
        // the backup keeps its rows.
        Spi::run("CREATE TABLE s_part.kid2 (z int) INHERITS (s_part.base); INSERT INTO s_part.kid2 VALUES (9, 9)").unwrap();
        Spi::run(&format!("SELECT * FROM backup.restore('{id}', tables => '{{s_part.base}}', existing => 'truncate', confirm => true)")).unwrap();
        assert_eq!(count("SELECT count(*) FROM s_part.kid2"), 1);
        assert_eq!(count("SELECT count(*) FROM ONLY s_part.base"), 1);
        // A standalone sequence that already exists keeps its value under 'skip'.
        Spi::run("SELECT setval('s_part.standalone', 500)").unwrap();
        Spi::run(&format!(
            "SELECT * FROM backup.restore('{id}', schemas => '{{s_part}}', existing => 'skip')"
        ))
        .unwrap();
        assert_eq!(count("SELECT last_value FROM s_part.standalone"), 500);
    }

    #[pg_test]
    fn a_sql_script_block_stays_with_its_table_when_one_fails() {
        make_sample("s_blk");
        let (id, _) = one_backup("SELECT backup_id, path FROM backup.create(tables => '{s_blk.people, s_blk.orders}', data_only => true, format => 'sql', label => 'blk')");
        // people is gone: its rows cannot load; orders must still get its own rows.
        Spi::run("DROP TABLE s_blk.people CASCADE; TRUNCATE s_blk.orders").unwrap();
        let rows = Spi::get_one::<String>(&format!(
            "SELECT string_agg(object || ' ' || status, ',' ORDER BY object) FROM backup.restore('{id}', existing => 'append', on_error => 'continue') WHERE kind = 'table_data'"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(rows, "s_blk.orders ok,s_blk.people failed");
        assert_eq!(count("SELECT count(*) FROM s_blk.orders"), 2000);
        assert_eq!(
            count("SELECT count(*) FROM s_blk.orders WHERE total >= 0"),
            2000
        );
        // Unknown backups are not deleted, even if a folder of that name existed.
        assert_eq!(
            sqlstate_of("SELECT backup.delete('20200101T000000.000000Z-none')"),
            "ERRCODE_UNDEFINED_OBJECT"
        );
    }

    /// Issue 18: the facts collect sets on TOC entries (from the catalogs) are the facts an
    /// archive without them gets on read (from its SQL): a restore decides the same way for
    /// the backups written before and after. Each kind of object whose facts restore reads.
    #[pg_test]
    fn facts_of_collect_and_of_old_archives_agree() {
        use crate::archive::facts::{self, TypeKind};
        use crate::archive::shapes::ConstraintKind as C;
        Spi::run(
            "CREATE SCHEMA s_facts;
             CREATE FUNCTION s_facts.twice(integer) RETURNS integer IMMUTABLE LANGUAGE sql AS 'SELECT $1 * 2';
             CREATE TYPE s_facts.mood AS ENUM ('UNIQUE', 'PARTITION OF', 'INPUT = x');
             CREATE TYPE s_facts.pair AS (a integer, \"GENERATED ALWAYS AS (\" text);
             CREATE TYPE s_facts.span AS RANGE (subtype = integer);
             CREATE TYPE s_facts.raw;
             CREATE FUNCTION s_facts.raw_in(cstring) RETURNS s_facts.raw IMMUTABLE STRICT LANGUAGE internal AS 'int4in';
             CREATE FUNCTION s_facts.raw_out(s_facts.raw) RETURNS cstring IMMUTABLE STRICT LANGUAGE internal AS 'int4out';
             CREATE TYPE s_facts.raw (INPUT = s_facts.raw_in, OUTPUT = s_facts.raw_out, INTERNALLENGTH = 4, PASSEDBYVALUE, ALIGNMENT = int4);
             CREATE DOMAIN s_facts.positive AS integer CONSTRAINT \"UNIQUE\" CHECK (VALUE > 0);
             ALTER DOMAIN s_facts.positive ADD CONSTRAINT later CHECK (VALUE < 1000) NOT VALID;
             CREATE TABLE s_facts.ev (id integer, at date, n integer GENERATED ALWAYS AS (s_facts.twice(id)) STORED,
                 CONSTRAINT ev_at CHECK (at > '2000-01-01'), PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
             CREATE TABLE s_facts.ev_2024 PARTITION OF s_facts.ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
                 PARTITION BY LIST (id);
             CREATE TABLE s_facts.ev_2024_1 PARTITION OF s_facts.ev_2024 FOR VALUES IN (1);
             CREATE TABLE s_facts.ev_other PARTITION OF s_facts.ev DEFAULT;
             CREATE TABLE s_facts.\"t PARTITION BY x\" (
                 id integer PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
                 note text DEFAULT ' PARTITION OF ' CHECK (note <> 'UNIQUE'),
                 r int4range,
                 ev_id integer, ev_at date,
                 UNIQUE (note) WITH (fillfactor = 70) DEFERRABLE,
                 EXCLUDE USING gist (r WITH &&));
             ALTER TABLE s_facts.\"t PARTITION BY x\" ADD CONSTRAINT \"PRIMARY KEY\" CHECK (note <> 'EXCLUDE') NOT VALID;
             ALTER TABLE s_facts.\"t PARTITION BY x\" ADD CONSTRAINT to_ev FOREIGN KEY (ev_id, ev_at) REFERENCES s_facts.ev NOT VALID;
             CREATE TABLE s_facts.kid (extra text) INHERITS (s_facts.\"t PARTITION BY x\");
             CREATE TABLE s_facts.ev_ref (id integer, at date, FOREIGN KEY (id, at) REFERENCES s_facts.ev) PARTITION BY HASH (id);",
        )
        .unwrap();
        let (_, dir) = one_backup(
            "SELECT backup_id, path FROM backup.create(schemas => '{s_facts}', schema_only => true, label => 'facts')",
        );
        let m = manifest(&dir);
        assert_eq!(m.toc_facts, facts::TOC_FACTS, "collect's facts are kept");
        let mut old = m.toc.clone();
        for e in old.iter_mut() {
            e.facts = Default::default();
        }
        crate::archive::toc::derive_facts(&mut old);
        for (collected, derived) in m.toc.iter().zip(&old) {
            assert_eq!(
                collected.facts,
                derived.facts,
                "{}:\n{}",
                collected.describe(),
                collected.sql
            );
        }
        // And they are the catalogs' facts.
        let facts_of = |kind: EntryKind, name: &str| {
            m.toc
                .iter()
                .find(|e| e.kind == kind && e.name == name)
                .unwrap_or_else(|| panic!("no {kind:?} {name}"))
                .facts
                .clone()
        };
        let ev = facts_of(EntryKind::Table, "ev");
        assert!(ev.partitioned && ev.generated_columns && !ev.partition);
        let sub = facts_of(EntryKind::Table, "ev_2024");
        assert!(sub.partition && sub.partitioned && !sub.created_as_partition);
        assert!(facts_of(EntryKind::Table, "ev_2024_1").partition);
        assert!(facts_of(EntryKind::Table, "ev_other").partition);
        assert_eq!(
            facts_of(EntryKind::Table, "t PARTITION BY x"),
            Default::default()
        );
        assert!(facts_of(EntryKind::Table, "ev_ref").partitioned);
        let constraint = |kind: EntryKind, name: &str| {
            let c = facts_of(kind, name).constraint.unwrap();
            (c.kind, c.validated)
        };
        assert_eq!(
            constraint(
                EntryKind::Constraint,
                "t PARTITION BY x t PARTITION BY x_pkey"
            ),
            (C::PrimaryKey, true)
        );
        assert_eq!(
            constraint(
                EntryKind::Constraint,
                "t PARTITION BY x t PARTITION BY x_note_key"
            ),
            (C::Unique, true)
        );
        assert_eq!(
            constraint(
                EntryKind::Constraint,
                "t PARTITION BY x t PARTITION BY x_r_excl"
            ),
            (C::Exclusion, true)
        );
        assert_eq!(
            constraint(EntryKind::CheckConstraint, "t PARTITION BY x PRIMARY KEY"),
            (C::Check, false)
        );
        assert!(
            !facts_of(EntryKind::CheckConstraint, "t PARTITION BY x PRIMARY KEY")
                .builds_index_only()
        );
        assert_eq!(
            constraint(EntryKind::ForeignKey, "t PARTITION BY x to_ev"),
            (C::ForeignKey, false)
        );
        assert_eq!(
            constraint(EntryKind::DomainConstraint, "positive later"),
            (C::Check, false)
        );
        let kind_of = |kind: EntryKind, name: &str| facts_of(kind, name).type_kind;
        assert_eq!(kind_of(EntryKind::Type, "mood"), Some(TypeKind::Enum));
        assert_eq!(kind_of(EntryKind::Type, "pair"), Some(TypeKind::Composite));
        assert_eq!(kind_of(EntryKind::Type, "span"), Some(TypeKind::Range));
        assert_eq!(kind_of(EntryKind::Type, "raw"), Some(TypeKind::Base));
        assert_eq!(kind_of(EntryKind::ShellType, "raw"), Some(TypeKind::Shell));
        assert_eq!(
            kind_of(EntryKind::Domain, "positive"),
            Some(TypeKind::Domain)
        );
        Spi::run("DROP SCHEMA s_facts CASCADE").unwrap();
    }
}
