//! Restore safety, end to end on a real server (issue 9): user code runs with its owner's
//! rights only, whoever restores; pg_backup's schema and the system schemas are never
//! restore targets; errors never carry row values; restores too big for the lock table are
//! refused before anything changes. Run by `make test` (PG_BACKUP_E2E=1).

use std::path::PathBuf;
use std::process::Command;

use postgres::{Client, NoTls};

mod support;
use support::*;

/// Roles with rolsuper, the bootstrap superuser aside.
fn superusers(c: &mut Client) -> Vec<String> {
    strings(
        c,
        "SELECT rolname::text FROM pg_roles WHERE rolsuper AND oid <> 10 ORDER BY 1",
    )
}

/// What `intruder`, who may only create objects in public, leaves for restores to run:
/// `public.evil(int)` records who runs it and tries to make intruder a superuser, quietly
/// (so a restore that runs it as a superuser would succeed and escalate).
/// `public.evil_id(int)` is the same behind an IMMUTABLE face (for generated columns,
/// index, exclusion and partition key expressions) and returns its argument.
const ATTACK: &str = r#"
CREATE FUNCTION public.evil(x int) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  INSERT INTO audit.seen VALUES (current_user::text, x);
  BEGIN
    EXECUTE 'ALTER ROLE intruder SUPERUSER';
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
  RETURN true;
END $f$;
CREATE FUNCTION public.evil_id(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$
BEGIN
  PERFORM public.evil(x);
  RETURN x;
END $f$;
CREATE TABLE public.check_t (a int CHECK (public.evil(a)));
CREATE TABLE public.gen_t (a int, b int GENERATED ALWAYS AS (public.evil_id(a)) STORED);
CREATE TABLE public.part_t (a int) PARTITION BY LIST (public.evil_id(a));
CREATE TABLE public.part_t_1 PARTITION OF public.part_t FOR VALUES IN (1);
CREATE TABLE public.part_t_2 PARTITION OF public.part_t FOR VALUES IN (2);
CREATE TABLE public.idx_t (a int);
CREATE INDEX idx_t_evil ON public.idx_t (public.evil_id(a));
CREATE TABLE public.excl_t (a int, EXCLUDE USING btree (public.evil_id(a) WITH =));
CREATE DOMAIN dom_s.dom AS int CHECK (public.evil(VALUE));
CREATE TABLE dom_s.dom_t (a dom_s.dom);
CREATE TABLE public.trig_t (a int);
CREATE FUNCTION public.trig_f() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  PERFORM public.evil(NEW.a);
  RETURN NEW;
END $f$;
CREATE TRIGGER trig_t_evil BEFORE INSERT ON public.trig_t FOR EACH ROW EXECUTE FUNCTION public.trig_f();
CREATE TABLE public.rule_t (a int);
CREATE RULE rule_t_evil AS ON INSERT TO public.rule_t DO ALSO SELECT public.evil(NEW.a);
INSERT INTO public.check_t VALUES (1), (2);
INSERT INTO public.gen_t (a) VALUES (1), (2);
INSERT INTO public.part_t VALUES (1), (2);
INSERT INTO public.idx_t VALUES (1), (2);
INSERT INTO public.excl_t VALUES (1), (2);
INSERT INTO dom_s.dom_t VALUES (1), (2);
INSERT INTO public.trig_t VALUES (1), (2);
INSERT INTO public.rule_t VALUES (1), (2);
CREATE MATERIALIZED VIEW public.mv AS SELECT public.evil(a) AS e FROM public.check_t;
"#;

/// Tables of the attack, one per way user code runs during a restore. (The domain lives in
/// a schema of its own, `dom_s`, restored after public: its CHECK calls public.evil.)
const NEW_TABLES: &str =
    "{public.check_t, public.gen_t, public.part_t, public.idx_t, public.excl_t}";

/// The audit table and the roles, in database `db` (roles are per cluster: once is enough
/// for them).
fn prepare_audit(c: &mut Client) {
    c.batch_execute(
        "CREATE SCHEMA audit; CREATE TABLE audit.seen (who text, x int);
         GRANT USAGE ON SCHEMA audit TO PUBLIC; GRANT INSERT, SELECT ON audit.seen TO PUBLIC;",
    )
    .unwrap();
}

fn seen(c: &mut Client) -> (i64, Vec<String>) {
    (
        count(c, "SELECT count(*) FROM audit.seen"),
        strings(c, "SELECT DISTINCT who FROM audit.seen ORDER BY 1"),
    )
}

fn owners(c: &mut Client) -> Vec<String> {
    strings(
        c,
        "SELECT c.relname || ':' || pg_get_userbyid(c.relowner) FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'm', 'i')
         UNION ALL
         SELECT p.proname || ':' || pg_get_userbyid(p.proowner) FROM pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace
         UNION ALL
         SELECT t.typname || ':' || pg_get_userbyid(t.typowner) FROM pg_type t
         WHERE t.typnamespace = 'public'::regnamespace AND t.typtype = 'd'
         ORDER BY 1",
    )
}

#[test]
fn user_code_never_runs_with_more_rights_than_its_owner() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    su.batch_execute(
        "CREATE ROLE intruder LOGIN; GRANT CREATE ON SCHEMA public TO intruder;
         CREATE ROLE operator LOGIN; GRANT backup_operator TO operator;
         CREATE ROLE stranger_op LOGIN; GRANT backup_operator TO stranger_op;
         CREATE SCHEMA dom_s; GRANT USAGE, CREATE ON SCHEMA dom_s TO intruder;",
    )
    .unwrap();
    prepare_audit(&mut su);
    s.connect_as("app", "intruder")
        .batch_execute(ATTACK)
        .unwrap();
    let before = owners(&mut su);
    assert!(
        before.iter().all(|o| o.ends_with(":intruder")),
        "{before:?}"
    );
    let dom_owners = |c: &mut Client| {
        strings(
            c,
            "SELECT 'dom_t:' || pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'dom_s.dom_t'::regclass
             UNION ALL SELECT 'dom:' || pg_get_userbyid(typowner) FROM pg_type WHERE oid = 'dom_s.dom'::regtype",
        )
    };
    assert_eq!(dom_owners(&mut su), ["dom_t:intruder", "dom:intruder"]);
    let (n0, who) = seen(&mut su);
    assert_eq!(who, ["intruder"]);
    let native = create(&mut su, "label => 'attack', schemas => '{public}'");
    let dom = create(&mut su, "label => 'attack-domain', schemas => '{dom_s}'");
    let json = create(
        &mut su,
        "label => 'attack-json', format => 'json', schemas => '{public}'",
    );

    // 1. A superuser restores everything into a fresh database.
    fresh_database(&s, "su_copy", "");
    let mut dst = s.connect("su_copy");
    prepare_audit(&mut dst);
    dst.batch_execute("GRANT CREATE ON SCHEMA public TO intruder")
        .unwrap();
    let rows = dst
        .query(
            "SELECT object, kind, status, detail FROM backup.restore($1) WHERE status <> 'ok'",
            &[&native],
        )
        .unwrap();
    let problems = |rows: Vec<postgres::Row>| -> Vec<String> {
        rows.iter()
            .map(|r| {
                format!(
                    "{} {} {} {:?}",
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    r.get::<_, Option<String>>(3)
                )
            })
            .collect()
    };
    assert_eq!(problems(rows), Vec::<String>::new());
    let (n_public, _) = seen(&mut dst);
    let rows = dst
        .query(
            "SELECT object, kind, status, detail FROM backup.restore($1) WHERE status <> 'ok'",
            &[&dom],
        )
        .unwrap();
    assert_eq!(problems(rows), Vec::<String>::new());
    assert_eq!(dom_owners(&mut dst), ["dom_t:intruder", "dom:intruder"]);
    let (n, who) = seen(&mut dst);
    assert!(n_public > 0, "the restore ran the user code (CHECK, generated, partition key, index, exclusion, REFRESH)");
    assert!(
        n >= n_public + 2,
        "the domain CHECK ran on the restored rows"
    );
    assert_eq!(who, ["intruder"], "user code ran as its owner only");
    assert_eq!(superusers(&mut dst), Vec::<String>::new());
    assert_eq!(
        owners(&mut dst),
        before,
        "restored objects keep their owners"
    );
    for t in ["check_t", "gen_t", "part_t", "idx_t", "excl_t"] {
        assert_eq!(
            count(&mut dst, &format!("SELECT count(*) FROM public.{t}")),
            2,
            "{t}"
        );
    }
    assert_eq!(count(&mut dst, "SELECT count(*) FROM dom_s.dom_t"), 2);
    assert_eq!(count(&mut dst, "SELECT count(*) FROM public.mv"), 2);

    // 2. Into existing tables, the trigger (COPY) and the rule (the json format's INSERT)
    //    fire as their owner, for a superuser's restore.
    let (n1, _) = seen(&mut su);
    assert_eq!(n1, n0);
    su.query(
        "SELECT * FROM backup.restore($1, tables => '{public.trig_t}', existing => 'append')",
        &[&native],
    )
    .unwrap();
    su.query(
        "SELECT * FROM backup.restore($1, tables => '{public.rule_t}', existing => 'append')",
        &[&json],
    )
    .unwrap();
    su.query(
        "SELECT * FROM backup.restore($1, existing => 'append')",
        &[&dom],
    )
    .unwrap();
    let (n2, who) = seen(&mut su);
    assert!(
        n2 >= n1 + 6,
        "trigger, rule and domain CHECK fired ({n1} -> {n2})"
    );
    assert_eq!(who, ["intruder"]);
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.trig_t"), 4);
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.rule_t"), 4);
    assert_eq!(superusers(&mut su), Vec::<String>::new());

    // 3. An operator without intruder's privileges may not restore intruder's objects at
    //    all (42501, nothing changed) ...
    fresh_database(&s, "op_copy", "");
    let mut dst = s.connect("op_copy");
    prepare_audit(&mut dst);
    dst.batch_execute("GRANT CREATE ON SCHEMA public TO intruder, operator, stranger_op")
        .unwrap();
    let mut stranger = s.connect_as("op_copy", "stranger_op");
    let e = expect_err_with(
        &mut stranger,
        &format!("SELECT * FROM backup.restore($1, tables => '{NEW_TABLES}')"),
        &[&native],
        "42501",
    );
    assert!(hint(&e).is_some());
    assert_eq!(
        count(
            &mut dst,
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        ),
        0
    );
    // Nor append to intruder's table in the source database (no INSERT on it).
    let e = s
        .connect_as("app", "stranger_op")
        .query(
            "SELECT * FROM backup.restore($1, tables => '{public.trig_t}', existing => 'append')",
            &[&native],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{}", describe(&e));

    // ... and one who has them (a member of intruder) restores it with intruder's rights.
    su.batch_execute("GRANT intruder TO operator").unwrap();
    let mut op = s.connect_as("op_copy", "operator");
    op.query(
        &format!("SELECT * FROM backup.restore($1, tables => '{NEW_TABLES}')"),
        &[&native],
    )
    .unwrap();
    let (n, who) = seen(&mut dst);
    assert!(n > 0);
    assert_eq!(who, ["intruder"]);
    let restored = owners(&mut dst);
    assert!(
        restored.iter().all(|o| o.ends_with(":intruder")) && restored.len() > 10,
        "{restored:?}"
    );
    let mut op_app = s.connect_as("app", "operator");
    let (n3, _) = seen(&mut su);
    op_app
        .query(
            "SELECT * FROM backup.restore($1, tables => '{public.trig_t}', existing => 'append')",
            &[&native],
        )
        .unwrap();
    op_app
        .query(
            "SELECT * FROM backup.restore($1, existing => 'append')",
            &[&dom],
        )
        .unwrap();
    let (n4, who) = seen(&mut su);
    assert!(
        n4 >= n3 + 4,
        "trigger and domain CHECK fired ({n3} -> {n4})"
    );
    assert_eq!(who, ["intruder"]);
    assert_eq!(superusers(&mut su), Vec::<String>::new());
    assert_eq!(superusers(&mut dst), Vec::<String>::new());
}

#[test]
fn an_operator_cannot_make_itself_superuser_with_its_own_table() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    add_operator_in_public(&mut su, "operator");
    prepare_audit(&mut su);
    let mut op = s.connect_as("app", "operator");
    op.batch_execute(
        r#"CREATE FUNCTION public.promote(x int) RETURNS boolean LANGUAGE plpgsql AS $f$
           BEGIN
             INSERT INTO audit.seen VALUES (current_user::text, x);
             BEGIN
               EXECUTE 'ALTER ROLE operator SUPERUSER';
             EXCEPTION WHEN OTHERS THEN NULL;
             END;
             RETURN true;
           END $f$;
           CREATE TABLE public.mine (a int CHECK (public.promote(a)));
           INSERT INTO public.mine VALUES (1), (2), (3);"#,
    )
    .unwrap();
    let id = create(&mut op, "tables => '{public.mine}'");
    op.query(
        "SELECT * FROM backup.restore($1, existing => 'drop', confirm => true)",
        &[&id],
    )
    .unwrap();
    op.query(
        "SELECT * FROM backup.restore($1, existing => 'append')",
        &[&id],
    )
    .unwrap();
    let (n, who) = seen(&mut su);
    assert!(n >= 9, "the CHECK ran on every restored row ({n})");
    assert_eq!(who, ["operator"]);
    assert_eq!(superusers(&mut su), Vec::<String>::new());
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.mine"), 6);
    assert_eq!(
        strings(
            &mut su,
            "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE relname = 'mine'"
        ),
        ["operator"]
    );
}

#[test]
fn catalog_and_system_schemas_are_never_restore_targets() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    add_operator(&mut su, "operator");
    su.batch_execute(
        "GRANT CREATE ON DATABASE app TO operator;
         CREATE SCHEMA shop; GRANT ALL ON SCHEMA shop TO operator;
         CREATE TABLE shop.backups (LIKE backup.backups INCLUDING DEFAULTS);
         ALTER TABLE shop.backups OWNER TO operator;
         CREATE TABLE shop.restores (id bigint, backup_id text);
         ALTER TABLE shop.restores OWNER TO operator;",
    )
    .unwrap();
    let mut op = s.connect_as("app", "operator");
    op.batch_execute(
        "INSERT INTO shop.backups (id, status, created_by) VALUES ('forged', 'completed', 'ceo');
         INSERT INTO shop.restores VALUES (1, 'x');",
    )
    .unwrap();
    let id = create(&mut op, "schemas => '{shop}'");
    let history = |c: &mut Client| {
        (
            count(c, "SELECT count(*) FROM backup.backups"),
            count(c, "SELECT count(*) FROM backup.backups WHERE id = 'forged'"),
        )
    };
    let before = history(&mut su);
    for (who, c) in [("operator", &mut op), ("superuser", &mut su)] {
        for target in [
            "backup",
            "Backup",
            "BACKUP",
            "\"backup\"",
            " backup",
            "pg_catalog",
            "PG_CATALOG",
            "\"pg_catalog\"",
            "information_schema",
            "Information_Schema",
            "pg_toast",
            "pg_temp",
            "pg_temp_1",
        ] {
            for existing in ["append", "truncate"] {
                let e = c
                    .query(
                        "SELECT * FROM backup.restore($1, schemas => '{shop}', target_schema => $2,
                                                      existing => $3, confirm => true)",
                        &[&id, &target, &existing],
                    )
                    .unwrap_err();
                let state = sqlstate(&e);
                assert!(
                    state == "42501" || state == "22023",
                    "{who} {target}: {state} {}",
                    describe(&e)
                );
                assert!(hint(&e).is_some(), "{who} {target}: a HINT");
            }
        }
    }
    assert_eq!(history(&mut su), before, "pg_backup's catalog is unchanged");
    assert_eq!(before.1, 0);
    // An ordinary schema works.
    op.query(
        "SELECT * FROM backup.restore($1, schemas => '{shop}', target_schema => 'shop_copy')",
        &[&id],
    )
    .unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM shop_copy.backups"), 1);
    assert_eq!(history(&mut su), before);
}

#[test]
fn restore_errors_never_carry_row_values() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    add_operator(&mut su, "operator");
    su.batch_execute(
        "CREATE TABLE public.secrets (v text PRIMARY KEY);
         INSERT INTO public.secrets VALUES ('TOPSECRET-1'), ('TOPSECRET-2');",
    )
    .unwrap();
    let id = create(&mut su, "");
    // The table now has another type: the backed-up values no longer fit.
    su.batch_execute(
        "DROP TABLE public.secrets; CREATE TABLE public.secrets (v integer PRIMARY KEY);",
    )
    .unwrap();
    for on_error in ["abort", "continue"] {
        let result = su.query(
            "SELECT object, status, detail FROM backup.restore($1, existing => 'append', on_error => $2)",
            &[&id, &on_error],
        );
        let returned = match result {
            Err(e) => {
                assert_eq!(sqlstate(&e), "22P02", "{}", describe(&e));
                describe(&e)
            }
            Ok(rows) => {
                let failed: Vec<String> = rows
                    .iter()
                    .filter(|r| r.get::<_, String>(1) == "failed")
                    .map(|r| {
                        format!(
                            "{} {:?}",
                            r.get::<_, String>(0),
                            r.get::<_, Option<String>>(2)
                        )
                    })
                    .collect();
                assert_eq!(failed.len(), 1, "{on_error}: {failed:?}");
                assert!(failed[0].contains("22P02"), "{failed:?}");
                failed.join("\n")
            }
        };
        assert!(!returned.contains("TOPSECRET"), "{on_error}: {returned}");
        let stored: String = su
            .query_one(
                "SELECT coalesce(error, '') FROM backup.restores ORDER BY id DESC LIMIT 1",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(!stored.is_empty(), "{on_error}: the failure is recorded");
        assert!(!stored.contains("TOPSECRET"), "{on_error}: {stored}");
    }
    // A unique violation carries the key in its DETAIL: not here either.
    su.batch_execute(
        "DROP TABLE public.secrets; CREATE TABLE public.secrets (v text PRIMARY KEY);
         INSERT INTO public.secrets VALUES ('TOPSECRET-1');",
    )
    .unwrap();
    let e = expect_err_with(
        &mut su,
        "SELECT * FROM backup.restore($1, existing => 'append')",
        &[&id],
        "23505",
    );
    assert!(!describe(&e).contains("TOPSECRET"), "{}", describe(&e));
    let stored = strings(&mut su, "SELECT coalesce(error, '') FROM backup.restores");
    assert!(
        stored.iter().all(|e| !e.contains("TOPSECRET")),
        "{stored:?}"
    );
    // Operators read the history; the server log keeps the whole story.
    let mut op = s.connect_as("app", "operator");
    let visible = strings(&mut op, "SELECT coalesce(error, '') FROM backup.restores");
    assert!(visible.iter().all(|e| !e.contains("TOPSECRET")));
    assert!(
        s.log_text().contains("TOPSECRET-1"),
        "the server log has the details"
    );
}

#[test]
fn a_restore_larger_than_the_lock_table_is_refused_before_anything_changes() {
    if !enabled() {
        return;
    }
    // 10 * (10 + 0) = 100 locks in the documented lock table.
    let s = Server::start_in_env_locale("max_locks_per_transaction = 10\nmax_connections = 10");
    let mut su = s.connect("app");
    for i in 0..60 {
        su.batch_execute(&format!(
            "CREATE TABLE public.t{i} (id int PRIMARY KEY); INSERT INTO public.t{i} VALUES ({i});"
        ))
        .unwrap();
    }
    let id = create(&mut su, "");
    drop(su);
    fresh_database(&s, "copy", "");
    let mut dst = s.connect("copy");
    let e = expect_err_with(
        &mut dst,
        "SELECT * FROM backup.restore($1)",
        &[&id],
        "53400",
    );
    let hint = hint(&e).unwrap_or_default();
    assert!(hint.contains("max_locks_per_transaction"), "{hint}");
    assert!(hint.contains("tables =>"), "{hint}");
    assert_eq!(
        count(
            &mut dst,
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        ),
        0,
        "nothing changed"
    );
    // In parts, it fits.
    dst.query(
        "SELECT * FROM backup.restore($1, tables => '{public.t1, public.t2, public.t3}')",
        &[&id],
    )
    .unwrap();
    assert_eq!(count(&mut dst, "SELECT count(*) FROM public.t2"), 1);
}

/// Found by the independent review of issue 9: the caller's session must not steer a
/// restore. (1) Temporary tables and types of the caller are never taken for catalog or
/// built-in ones (a session that has any is refused: other roles' code would see them); (2) standard_conforming_strings, DateStyle and IntervalStyle of the session
/// change neither what a backup writes nor how a restore reads it; (3) CREATE TABLE plans
/// generated-column expressions, calling an immutable function with constant arguments right
/// then: such a table is created as its owner.
#[test]
fn the_callers_session_cannot_steer_a_restore() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    su.batch_execute(
        "CREATE ROLE intruder LOGIN; GRANT CREATE ON SCHEMA public TO intruder;
         CREATE ROLE operator LOGIN; GRANT backup_operator TO operator; GRANT intruder TO operator;",
    )
    .unwrap();
    prepare_audit(&mut su);
    let mut bad = s.connect_as("app", "intruder");
    bad.batch_execute(
        r#"CREATE FUNCTION public.record(x int) RETURNS void LANGUAGE plpgsql AS $f$
           BEGIN
             INSERT INTO audit.seen VALUES (current_user::text, x);
             BEGIN
               EXECUTE 'ALTER ROLE intruder SUPERUSER';
             EXCEPTION WHEN OTHERS THEN NULL;
             END;
           END $f$;
           -- Immutable, so the planner calls it when its argument is a constant.
           CREATE FUNCTION public.k(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$
           BEGIN
             PERFORM public.record(x);
             RETURN x;
           END $f$;
           CREATE TABLE public.gen (a int, b int GENERATED ALWAYS AS (a + public.k(0)) STORED);
           INSERT INTO public.gen (a) VALUES (1), (2);
           CREATE TABLE public.lit (id int PRIMARY KEY, s text DEFAULT E'back\\slash '' quote',
                                    d date DEFAULT '2024-02-01', i interval DEFAULT '1 day 02:00');
           INSERT INTO public.lit (id) VALUES (1);
           INSERT INTO public.lit VALUES (2, E'a\\b', '2024-12-31', '-3 mons');"#,
    )
    .unwrap();
    let rows = |c: &mut Client| {
        strings(
            c,
            "SELECT format('%s|%s|%s|%s', id, s, d, i) FROM public.lit
             UNION ALL
             SELECT (SELECT string_agg(pg_get_expr(adbin, adrelid), ';' ORDER BY adnum)
                     FROM pg_attrdef WHERE adrelid = 'public.lit'::regclass)
             ORDER BY 1",
        )
    };
    let want = rows(&mut su);
    // The backup is taken by a session with unusual settings.
    su.batch_execute("SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'sql_standard'")
        .unwrap();
    let id = create(&mut su, "tables => '{public.gen, public.lit}'");
    su.batch_execute("RESET DateStyle; RESET IntervalStyle; DROP TABLE public.gen, public.lit; TRUNCATE audit.seen")
        .unwrap();
    // The restoring session: non-standard strings and dates, and temporary lookalikes of
    // catalog tables and built-in types.
    for (who, db_user) in [("superuser", None), ("operator", Some("operator"))] {
        let mut c = Client::connect(&s.conn_str("app", db_user), NoTls).unwrap();
        c.batch_execute(
            "SET standard_conforming_strings = off; SET DateStyle = 'SQL, MDY';
             SET IntervalStyle = 'iso_8601';
             CREATE TEMP TABLE pg_class (oid oid, relname name, relnamespace oid, relowner oid);
             CREATE TEMP TABLE pg_namespace (oid oid, nspname name);",
        )
        .unwrap();
        // Temporary objects could steer other roles' code (their search_path always holds
        // pg_temp): refused, with the way out in the HINT.
        let e = c
            .query(
                "SELECT * FROM backup.restore($1, existing => 'drop', confirm => true)",
                &[&id],
            )
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{who}: {}", describe(&e));
        assert!(describe(&e).contains("DISCARD TEMP"), "{}", describe(&e));
        c.batch_execute("DISCARD TEMP").unwrap();
        let r = c.query(
            "SELECT object, status, detail FROM backup.restore($1, existing => 'drop', confirm => true)
             WHERE status NOT IN ('ok', 'skipped')",
            &[&id],
        );
        let problems: Vec<String> = r
            .unwrap_or_else(|e| panic!("{who}: {}", describe(&e)))
            .iter()
            .map(|r| format!("{:?}", (r.get::<_, String>(0), r.get::<_, String>(1))))
            .collect();
        assert!(problems.is_empty(), "{who}: {problems:#?}");
        drop(c);
        assert_eq!(rows(&mut su), want, "{who}: literals, dates and intervals");
        assert_eq!(
            count(&mut su, "SELECT sum(b) FROM public.gen"),
            3,
            "{who}: generated column"
        );
        let (_, ran_as) = seen(&mut su);
        assert!(
            ran_as.iter().all(|r| r == "intruder"),
            "{who}: k() ran as {ran_as:?}"
        );
        assert_eq!(superusers(&mut su), Vec::<String>::new(), "{who}");
    }
}

/// A data_only backup records no owner: its rows are judged by the table of that name in the
/// database the backup was taken of. Restored in another database, where an operator could
/// have made a table of that name its own, they are refused.
#[test]
fn an_operator_cannot_read_rows_through_a_same_named_table_in_another_database() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    add_operator(&mut su, "operator");
    su.batch_execute(
        "CREATE SCHEMA hr; CREATE TABLE hr.salaries (who text, amount int);
         INSERT INTO hr.salaries VALUES ('ceo', 999999);",
    )
    .unwrap();
    let mut op = s.connect_as("app", "operator");
    assert!(op.query("SELECT * FROM hr.salaries", &[]).is_err());
    let id = create(&mut op, "schemas => '{hr}', data_only => true");
    fresh_database(&s, "other", "");
    let mut su2 = s.connect("other");
    su2.batch_execute("GRANT CREATE ON DATABASE other TO operator; SELECT * FROM backup.rescan()")
        .unwrap();
    let mut op2 = s.connect_as("other", "operator");
    op2.batch_execute("CREATE SCHEMA hr; CREATE TABLE hr.salaries (who text, amount int)")
        .unwrap();
    let e = expect_err_with(
        &mut op2,
        "SELECT * FROM backup.restore($1, existing => 'append')",
        &[&id],
        "42501",
    );
    assert!(
        describe(&e).contains("restore the rows of hr.salaries"),
        "{}",
        describe(&e)
    );
    assert_eq!(
        count(&mut su2, "SELECT count(*) FROM hr.salaries"),
        0,
        "no row reached the operator's table"
    );
}

/// Rows are loaded with the table owner's rights; into an existing table whose row-level
/// security applies to the operator (INSERT granted, policies restricting it), the restore is
/// refused, as PostgreSQL's own COPY FROM is.
#[test]
fn appending_never_gets_past_row_level_security() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    add_operator(&mut su, "operator");
    su.batch_execute(
        "CREATE TABLE public.notes (owner text, body text);
         INSERT INTO public.notes VALUES ('operator', 'mine'), ('ceo', 'not yours');
         ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
         CREATE POLICY own ON public.notes USING (owner = current_user) WITH CHECK (owner = current_user);
         GRANT SELECT, INSERT ON public.notes TO operator;",
    )
    .unwrap();
    let id = create(&mut su, "tables => '{public.notes}', data_only => true");
    let mut op = s.connect_as("app", "operator");
    expect_err_with(
        &mut op,
        "SELECT * FROM backup.restore($1, existing => 'append')",
        &[&id],
        "42501",
    );
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM public.notes WHERE owner = 'ceo'"
        ),
        1,
        "no row written past the policy"
    );
}

/// A backup id of database `db`: its directory in the server's backup directory.
fn backup_dir(c: &mut Client) -> PathBuf {
    // The directory exists once the extension has looked at it.
    let _ = c.query("SELECT * FROM backup.rescan()", &[]);
    let data: String = c
        .query_one("SELECT current_setting('data_directory')", &[])
        .unwrap()
        .get(0);
    PathBuf::from(data).join("pg_backup")
}

/// Write an archive as pg_backup 0.1.0 wrote them (manifest format_version 1: two lists of DDL
/// items, owners as post-data items of their own) with one uncompressed data file per table.
fn write_format_1_archive(
    dir: &std::path::Path,
    id: &str,
    db: &str,
    pre_data: serde_json::Value,
    post_data: serde_json::Value,
    tables: &[(&str, &str, &[&str], &str, u64)],
) {
    let archive = dir.join(id);
    std::fs::create_dir_all(archive.join("data")).unwrap();
    let mut files = Vec::new();
    for (n, (schema, table, columns, rows, count)) in tables.iter().enumerate() {
        let path = format!("data/{:05}.copy", n + 1);
        std::fs::write(archive.join(&path), rows).unwrap();
        files.push(serde_json::json!({
            "path": path, "schema": schema, "table": table, "columns": columns,
            "rows": count, "bytes": rows.len(), "raw_bytes": rows.len(),
            "sha256": sha256_hex(rows.as_bytes()),
        }));
    }
    let manifest = serde_json::json!({
        "format_version": 1, "pg_backup_version": "0.1.0", "backup_id": id,
        "label": "fmt1", "created_at": "2026-11-23T19:04:08.964055Z",
        "server_version": "15.20", "database": db, "encoding": "UTF8", "format": "native",
        "compression": "none",
        "options": {"compression": "none", "data_only": false, "exclude_data": [],
                    "exclude_tables": [], "format": "native", "label": "fmt1",
                    "schema_only": false, "schemas": null, "tables": null, "verbose": false},
        "pre_data": pre_data, "post_data": post_data, "files": files,
    });
    let json = serde_json::to_vec_pretty(&manifest).unwrap();
    std::fs::write(archive.join("manifest.json"), &json).unwrap();
    std::fs::write(
        archive.join("manifest.sha256"),
        format!("{}  manifest.json\n", sha256_hex(&json)),
    )
    .unwrap();
}

/// Archives written by 0.1.0 set owners in post-data, after the rows: their functions used to
/// belong to the extension owner while rows loaded, so a SECURITY DEFINER function called by
/// a generated column (or a CHECK, a default, an index expression) ran with superuser rights.
/// Every object now gets its owner right after it is created, as in format 2.
#[test]
fn format_1_archives_give_objects_their_owner_before_any_code_runs() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    su.batch_execute("CREATE ROLE intruder LOGIN; GRANT CREATE ON SCHEMA public TO intruder;")
        .unwrap();
    prepare_audit(&mut su);
    let escalate = "CREATE FUNCTION public.escalate() RETURNS integer LANGUAGE plpgsql SECURITY DEFINER AS $f$\nBEGIN\n  INSERT INTO audit.seen VALUES (current_user::text, 0);\n  BEGIN\n    EXECUTE 'ALTER ROLE intruder SUPERUSER';\n  EXCEPTION WHEN OTHERS THEN NULL;\n  END;\n  RETURN 1;\nEND $f$;";
    let gen = "CREATE FUNCTION public.gen(x integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $f$\nBEGIN\n  RETURN x + public.escalate() - 1;\nEND $f$;";
    let pre = serde_json::json!([
        {"kind": "function", "schema": "public", "name": "escalate()", "sql": escalate},
        {"kind": "function", "schema": "public", "name": "gen(x integer)", "sql": gen},
        {"kind": "table", "schema": "public", "name": "t",
         "sql": "CREATE TABLE public.t (a integer, b integer GENERATED ALWAYS AS (public.gen(a)) STORED);"},
        {"kind": "view", "schema": "public", "name": "v",
         "sql": "CREATE VIEW public.v AS SELECT t.a FROM public.t;"},
    ]);
    let post = serde_json::json!([
        {"kind": "owner", "schema": "public", "name": "t", "table": "public.t",
         "sql": "ALTER TABLE public.t OWNER TO intruder;"},
        {"kind": "owner", "schema": "public", "name": "v", "table": "public.v",
         "sql": "ALTER VIEW public.v OWNER TO intruder;"},
        {"kind": "owner", "schema": "public", "name": "escalate",
         "sql": "ALTER ROUTINE public.escalate() OWNER TO intruder;"},
        {"kind": "owner", "schema": "public", "name": "gen",
         "sql": "ALTER ROUTINE public.gen(integer) OWNER TO intruder;"},
    ]);
    let id = "20261123T190408.000001Z-fmt1-definer";
    let dir = backup_dir(&mut su);
    write_format_1_archive(
        &dir,
        id,
        "app",
        pre,
        post,
        &[("public", "t", &["a"], "1\n2\n3\n", 3)],
    );
    // An archive of 0.1.0 carries no signature: the superuser accepts it explicitly.
    su.batch_execute("SET backup.allow_unsigned = on").unwrap();
    let found = strings(&mut su, "SELECT * FROM backup.rescan()");
    assert!(found.iter().any(|f| f == id), "{found:?}");
    let rows = su
        .query(
            "SELECT object, kind, status, detail FROM backup.restore($1) WHERE status <> 'ok'",
            &[&id],
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert!(rows.is_empty(), "{:?}", rows.len());
    assert_eq!(count(&mut su, "SELECT sum(b) FROM public.t"), 6);
    let (n, who) = seen(&mut su);
    assert!(n >= 3, "the definer function ran for every row ({n})");
    assert_eq!(
        who,
        ["intruder"],
        "the SECURITY DEFINER function already belonged to its owner"
    );
    assert_eq!(superusers(&mut su), Vec::<String>::new());
    assert_eq!(
        owners(&mut su),
        ["escalate:intruder", "gen:intruder", "t:intruder"]
    );
    assert_eq!(
        strings(
            &mut su,
            "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'public.v'::regclass"
        ),
        ["intruder"]
    );
}

/// Index builds and constraint validations read the rows: their errors (an index expression's
/// `invalid input syntax ... "<value>"`, a duplicate key) are redacted like the rows' own.
#[test]
fn index_build_errors_never_carry_row_values() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    add_operator(&mut su, "operator");
    su.batch_execute(
        "CREATE FUNCTION public.norm(v text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT v';
         CREATE TABLE public.s (v text);
         CREATE INDEX s_norm ON public.s (public.norm(v));
         INSERT INTO public.s VALUES ('TOPSECRET-1'), ('TOPSECRET-2');",
    )
    .unwrap();
    let id = create(&mut su, "tables => '{public.s}'");
    // The function the index calls now fails on the values (a restore keeps an existing one).
    su.batch_execute(
        "DROP TABLE public.s;
         CREATE OR REPLACE FUNCTION public.norm(v text) RETURNS text LANGUAGE sql IMMUTABLE
           AS 'SELECT (v::integer)::text';",
    )
    .unwrap();
    for on_error in ["abort", "continue"] {
        let returned = match su.query(
            "SELECT object, status, coalesce(detail, '') FROM backup.restore($1, on_error => $2)",
            &[&id, &on_error],
        ) {
            Err(e) => {
                assert_eq!(sqlstate(&e), "22P02", "{}", describe(&e));
                describe(&e)
            }
            Ok(rows) => {
                let failed: Vec<String> = rows
                    .iter()
                    .filter(|r| r.get::<_, String>(1) == "failed")
                    .map(|r| format!("{} {}", r.get::<_, String>(0), r.get::<_, String>(2)))
                    .collect();
                assert_eq!(failed.len(), 1, "{on_error}: {failed:?}");
                assert!(failed[0].contains("22P02"), "{failed:?}");
                su.batch_execute("DROP TABLE public.s").unwrap();
                failed.join("\n")
            }
        };
        assert!(!returned.contains("TOPSECRET"), "{on_error}: {returned}");
        let stored = strings(&mut su, "SELECT coalesce(error, '') FROM backup.restores");
        assert!(
            stored.iter().all(|e| !e.contains("TOPSECRET")),
            "{on_error}: {stored:?}"
        );
    }
    let mut op = s.connect_as("app", "operator");
    let visible = strings(&mut op, "SELECT coalesce(error, '') FROM backup.restores");
    assert!(visible.iter().any(|e| e.contains("22P02")), "{visible:?}");
    assert!(visible.iter().all(|e| !e.contains("TOPSECRET")));
    assert!(
        s.log_text().contains("TOPSECRET-1"),
        "the server log has it"
    );
}

/// `disable_triggers => true`: a superuser gets pg_restore --disable-triggers (every trigger,
/// foreign key checks included, off while the table loads); anyone else only its own user
/// triggers: rows that break a foreign key never get in. Every trigger gets its state back.
#[test]
fn disable_triggers_never_lets_an_operator_past_a_foreign_key() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    add_operator(&mut su, "operator");
    su.batch_execute(
        "GRANT CREATE ON DATABASE app TO operator; GRANT CREATE ON SCHEMA public TO operator;
         CREATE TABLE public.parent (id int PRIMARY KEY); INSERT INTO public.parent VALUES (1);
         GRANT REFERENCES ON public.parent TO operator;",
    )
    .unwrap();
    prepare_audit(&mut su);
    let mut op = s.connect_as("app", "operator");
    op.batch_execute(
        "CREATE TABLE public.child (id int, pid int REFERENCES public.parent);
         CREATE FUNCTION public.note() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN INSERT INTO audit.seen VALUES (current_user::text, NEW.id); RETURN NEW; END $f$;
         CREATE TRIGGER note BEFORE INSERT ON public.child FOR EACH ROW EXECUTE FUNCTION public.note();
         CREATE TRIGGER note_always BEFORE INSERT ON public.child FOR EACH ROW EXECUTE FUNCTION public.note();
         ALTER TABLE public.child ENABLE ALWAYS TRIGGER note_always;
         CREATE SCHEMA m;
         CREATE TABLE m.child (id int, pid int);
         INSERT INTO m.child VALUES (1, 1), (2, 99);",
    )
    .unwrap();
    let id = create(&mut op, "schemas => '{m}'");
    let states = |c: &mut Client| {
        strings(
            c,
            "SELECT tgname || ':' || tgenabled::text FROM pg_trigger WHERE tgrelid = 'public.child'::regclass ORDER BY tgisinternal, tgname",
        )
    };
    let before = states(&mut su);
    assert_eq!(
        before.len(),
        4,
        "two user triggers, two FK triggers: {before:?}"
    );
    let call = "SELECT * FROM backup.restore($1, schemas => '{m}', target_schema => 'public',
                                          existing => 'append', disable_triggers => true)";
    expect_err_with(&mut op, call, &[&id], "23503");
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM public.child WHERE pid NOT IN (SELECT id FROM public.parent)"
        ),
        0,
        "no row past the foreign key"
    );
    assert_eq!(states(&mut su), before);
    // Rows that fit go in without the user triggers.
    op.batch_execute("DELETE FROM m.child WHERE pid = 99")
        .unwrap();
    let id2 = create(&mut op, "schemas => '{m}'");
    let (n0, _) = seen(&mut su);
    op.query(call, &[&id2]).unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.child"), 1);
    assert_eq!(seen(&mut su).0, n0, "user triggers were off");
    assert_eq!(states(&mut su), before, "and are back as they were");
    // A superuser gets pg_restore's semantics: foreign key checks off too.
    su.query(call, &[&id]).unwrap();
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM public.child WHERE pid = 99"),
        1
    );
    assert_eq!(seen(&mut su).0, n0);
    assert_eq!(states(&mut su), before);
}

/// Each large object's owner statement locks it until the restore commits: large objects
/// count in the up-front lock-table check.
#[test]
fn large_objects_count_against_the_lock_table() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("max_locks_per_transaction = 10\nmax_connections = 10");
    let mut su = s.connect("app");
    su.batch_execute(
        "CREATE TABLE public.t (id int); INSERT INTO public.t VALUES (1);
         SELECT lo_from_bytea(0, convert_to('page ' || i, 'UTF8')) FROM generate_series(1, 150) i;",
    )
    .unwrap();
    let id = create(&mut su, "");
    fresh_database(&s, "copy", "");
    let mut dst = s.connect("copy");
    let e = expect_err_with(
        &mut dst,
        "SELECT * FROM backup.restore($1)",
        &[&id],
        "53400",
    );
    assert!(
        hint(&e).is_some_and(|h| h.contains("max_locks_per_transaction")),
        "{}",
        describe(&e)
    );
    assert_eq!(
        count(&mut dst, "SELECT count(*) FROM pg_largeobject_metadata"),
        0
    );
    assert_eq!(
        count(
            &mut dst,
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        ),
        0,
        "nothing changed"
    );
}

/// `existing => 'truncate'` sets the table's sequences back to the backup's values, as
/// TRUNCATE ... RESTART IDENTITY does: only the sequence's owner may. After 'append' a
/// sequence moves forward only with UPDATE on it.
#[test]
fn reloading_a_table_never_resets_a_sequence_the_caller_does_not_own() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    add_operator(&mut su, "operator");
    su.batch_execute(
        "GRANT CREATE ON DATABASE app TO operator;
         CREATE ROLE payroll; GRANT CREATE ON SCHEMA public TO payroll;
         SET ROLE payroll;
         CREATE TABLE public.orders (id serial PRIMARY KEY, what text);
         INSERT INTO public.orders (what) SELECT 'order ' || i FROM generate_series(1, 1000) i;
         GRANT INSERT, TRUNCATE ON public.orders TO operator;
         RESET ROLE;",
    )
    .unwrap();
    let mut op = s.connect_as("app", "operator");
    op.batch_execute(
        "CREATE SCHEMA m; CREATE TABLE m.orders (id serial PRIMARY KEY, what text);
         INSERT INTO m.orders (what) VALUES ('mine');",
    )
    .unwrap();
    let id = create(&mut op, "schemas => '{m}'");
    let last = |c: &mut Client| count(c, "SELECT last_value FROM public.orders_id_seq");
    let e = expect_err_with(
        &mut op,
        "SELECT * FROM backup.restore($1, schemas => '{m}', target_schema => 'public',
                                          existing => 'truncate', confirm => true)",
        &[&id],
        "42501",
    );
    assert!(describe(&e).contains("orders_id_seq"), "{}", describe(&e));
    assert_eq!(last(&mut su), 1000);
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.orders"), 1000);
    // Appending works (INSERT), but the sequence stays where it is: no UPDATE on it.
    op.batch_execute("UPDATE m.orders SET id = 5000").unwrap();
    let id2 = create(&mut op, "schemas => '{m}'");
    let rows = op
        .query(
            "SELECT object, action, status FROM backup.restore($1, schemas => '{m}', target_schema => 'public',
                                                              existing => 'append')
             WHERE kind = 'sequence' AND object LIKE '%orders_id_seq' AND status <> 'ok'",
            &[&id2],
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(rows.len(), 1, "a warning row for the sequence left alone");
    assert_eq!(rows[0].get::<_, String>(2), "warning");
    assert_eq!(last(&mut su), 1000);
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.orders"), 1001);
    // With UPDATE on it, it moves; the column's largest value is not shown to a caller that
    // cannot read the table.
    su.batch_execute("GRANT UPDATE ON SEQUENCE public.orders_id_seq TO operator")
        .unwrap();
    op.batch_execute("UPDATE m.orders SET id = 6000").unwrap();
    let id3 = create(&mut op, "schemas => '{m}'");
    let details = strings(
        &mut op,
        &format!(
            "SELECT coalesce(detail, '') FROM backup.restore('{id3}', schemas => '{{m}}', target_schema => 'public',
                                                          existing => 'append')
             WHERE kind = 'sequence' AND action = 'advance'"
        ),
    );
    assert_eq!(details.len(), 1, "{details:?}");
    assert!(!details[0].contains("6000"), "{details:?}");
    assert_eq!(last(&mut su), 6000);
}

/// pg_backup acts with the rights of the role that is current when its function is called
/// (current_user, as any SQL function sees it): a SECURITY DEFINER function of an operator,
/// run by a superuser, gets only the operator's rights; SET ROLE counts; and a role that
/// calls another role's SECURITY DEFINER wrapper gets at most that role's rights.
#[test]
fn the_caller_is_the_current_user_at_the_call() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    add_operator_in_public(&mut su, "operator");
    su.batch_execute(
        "CREATE ROLE clerk LOGIN;
         CREATE ROLE victim; CREATE TABLE public.vault (v text); ALTER TABLE public.vault OWNER TO victim;
         INSERT INTO public.vault VALUES ('gold');",
    )
    .unwrap();
    let id = create(&mut su, "tables => '{public.vault}'");
    su.batch_execute("INSERT INTO public.vault VALUES ('added later')")
        .unwrap();
    let vault = |c: &mut Client| count(c, "SELECT count(*) FROM public.vault");
    let mut op = s.connect_as("app", "operator");
    op.batch_execute(&format!(
        "CREATE FUNCTION public.trap() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $f$
         BEGIN
           PERFORM * FROM backup.restore('{id}', existing => 'drop', confirm => true);
         END $f$;
         CREATE FUNCTION public.trap_storage() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $f$
         BEGIN
           PERFORM backup.add_storage('loot', 'file:///tmp/pg_backup_loot', validate => false);
         END $f$;
         GRANT EXECUTE ON FUNCTION public.trap() TO clerk;"
    ))
    .unwrap();
    // A superuser runs the operator's functions: they act as the operator.
    for f in ["public.trap()", "public.trap_storage()"] {
        let e = su.query(&format!("SELECT {f}"), &[]).unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{f}: {}", describe(&e));
    }
    assert_eq!(vault(&mut su), 2, "the vault was not replaced");
    assert_eq!(count(&mut su, "SELECT count(*) FROM backup.storages"), 0);
    // SET ROLE counts.
    su.batch_execute("SET ROLE operator").unwrap();
    expect_err_with(
        &mut su,
        "SELECT * FROM backup.restore($1, existing => 'drop', confirm => true)",
        &[&id],
        "42501",
    );
    su.batch_execute("RESET ROLE").unwrap();
    assert_eq!(vault(&mut su), 2);
    // A clerk gets no more than the definer has (the operator: refused) ...
    let mut clerk = s.connect_as("app", "clerk");
    expect_err(&mut clerk, "SELECT public.trap()", "42501");
    // ... and exactly what a superuser's wrapper delegates to it.
    su.batch_execute(&format!(
        "CREATE FUNCTION public.nightly_restore() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS $f$
           SELECT count(*) FROM backup.restore('{id}', existing => 'drop', confirm => true)
         $f$;
         GRANT EXECUTE ON FUNCTION public.nightly_restore() TO clerk;"
    ))
    .unwrap();
    clerk
        .query("SELECT public.nightly_restore()", &[])
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(vault(&mut su), 1, "restored as the backup had it");
    let by = strings(
        &mut su,
        "SELECT performed_by FROM backup.restores ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(
        by,
        [std::env::var("USER").unwrap_or_else(|_| "pgtest".into())]
    );
    assert_eq!(superusers(&mut su), Vec::<String>::new());
}

/// Attacks on appending into another role's table with INSERT on it. (1) The owner's code
/// (a trigger) resolves unqualified names through the search_path, which always holds the
/// session's temporary schema: an operator's temporary table of that name, with a trigger of
/// its own, would run the operator's code with the owner's rights. Sessions with temporary
/// objects are refused. (2) The rows are the operator's own: the table's triggers run as the
/// operator, as for its own INSERT, never as the owner (a trigger or CHECK on current_user
/// would otherwise take the rows for the owner's). (3) Appending never hands the table to the
/// operator (a superuser's table used to be re-owned to it before its rows loaded).
#[test]
fn appending_to_another_roles_table_never_borrows_its_rights() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    add_operator(&mut su, "mallory");
    su.batch_execute(
        "GRANT CREATE ON DATABASE app TO mallory;
         CREATE ROLE payroll; GRANT CREATE ON SCHEMA public TO payroll;
         SET ROLE payroll;
         CREATE TABLE public.salaries (who text, amount int);
         INSERT INTO public.salaries VALUES ('ceo', 999999);
         CREATE TABLE public.ledger_log (entry text, by_role text);
         CREATE TABLE public.ledger (entry text, by_role text DEFAULT current_user
                                     CHECK (by_role = current_user));
         -- The usual hardening of a function: its own search_path (pg_temp is still
         -- searched first, implicitly).
         CREATE FUNCTION public.ledger_audit() RETURNS trigger LANGUAGE plpgsql
           SET search_path = public AS $f$
         BEGIN
           INSERT INTO ledger_log VALUES (NEW.entry, current_user::text);
           RETURN NEW;
         END $f$;
         CREATE TRIGGER audit BEFORE INSERT ON public.ledger FOR EACH ROW EXECUTE FUNCTION public.ledger_audit();
         GRANT INSERT ON public.ledger TO mallory;
         GRANT INSERT ON public.ledger_log TO mallory;
         RESET ROLE;
         CREATE TABLE public.inbox (entry text); GRANT INSERT ON public.inbox TO mallory;",
    )
    .unwrap();
    let mut m = s.connect_as("app", "mallory");
    assert!(m.query("SELECT * FROM public.salaries", &[]).is_err());
    m.batch_execute(
        "CREATE SCHEMA m; CREATE TABLE m.ledger (entry text, by_role text);
         INSERT INTO m.ledger VALUES ('refund 1000', 'payroll');
         CREATE TABLE m.inbox (entry text); INSERT INTO m.inbox VALUES ('hello');",
    )
    .unwrap();
    let id = create(&mut m, "schemas => '{m}'");
    m.batch_execute(
        "CREATE TEMP TABLE ledger_log (entry text, by_role text);
         GRANT INSERT ON ledger_log TO PUBLIC;
         CREATE FUNCTION pg_temp.steal() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
           EXECUTE 'GRANT SELECT ON public.salaries TO mallory';
           RETURN NEW;
         END $f$;
         CREATE TRIGGER steal BEFORE INSERT ON ledger_log FOR EACH ROW EXECUTE FUNCTION pg_temp.steal();",
    )
    .unwrap();
    let call = "SELECT * FROM backup.restore($1, schemas => '{m}', target_schema => 'public',
                                          existing => 'append')";
    let e = expect_err_with(&mut m, call, &[&id], "42501");
    assert!(describe(&e).contains("DISCARD TEMP"), "{}", describe(&e));
    let can_read = |c: &mut Client| {
        count(
            c,
            "SELECT has_table_privilege('mallory', 'public.salaries', 'SELECT')::int::int8",
        )
    };
    assert_eq!(can_read(&mut su), 0);
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.ledger"), 0);
    // Without temporary objects: the rows go in as mallory's own, and say so.
    m.batch_execute("DISCARD TEMP").unwrap();
    let r = m.query(call, &[&id]);
    match r {
        // The CHECK (by_role = current_user) refuses a row that claims to be payroll's.
        Err(e) => assert_eq!(sqlstate(&e), "23514", "{}", describe(&e)),
        Ok(rows) => panic!("the forged row got in: {}", rows.len()),
    }
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.ledger"), 0);
    m.batch_execute("UPDATE m.ledger SET by_role = 'mallory'")
        .unwrap();
    let id2 = create(&mut m, "schemas => '{m}'");
    m.query(call, &[&id2])
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        strings(&mut su, "SELECT entry || ':' || by_role FROM public.ledger"),
        ["refund 1000:mallory"]
    );
    assert_eq!(
        strings(&mut su, "SELECT by_role FROM public.ledger_log"),
        ["mallory"],
        "the owner's trigger ran as the role that appended"
    );
    assert_eq!(can_read(&mut su), 0);
    assert_eq!(superusers(&mut su), Vec::<String>::new());
    // (3) A table of the extension owner's (a superuser's) that the operator may insert into
    // stays the superuser's.
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.inbox"), 1);
    assert_eq!(
        strings(
            &mut su,
            "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'public.inbox'::regclass"
        ),
        [std::env::var("USER").unwrap_or_else(|_| "pgtest".into())]
    );
}

/// Tables and triggers of a caller that is not a superuser are created as their owner, so
/// PostgreSQL's own checks apply: an operator's table cannot become an inheritance child of
/// another role's table through a restore (that role's UPDATEs would then fire the operator's
/// row triggers with that role's rights), and a trigger needs EXECUTE on its function.
#[test]
fn an_operator_cannot_attach_its_tables_to_another_roles_through_a_restore() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    add_operator(&mut su, "mallory");
    su.batch_execute(
        "GRANT CREATE ON DATABASE app TO mallory; GRANT CREATE ON SCHEMA public TO mallory;
         CREATE ROLE victim; GRANT CREATE ON SCHEMA public TO victim;
         CREATE TABLE public.accounts (id int, balance int);
         ALTER TABLE public.accounts OWNER TO victim;
         INSERT INTO public.accounts VALUES (1, 100);
         CREATE FUNCTION public.payout() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $f$
         BEGIN RETURN NEW; END $f$;
         ALTER FUNCTION public.payout() OWNER TO victim;
         REVOKE EXECUTE ON FUNCTION public.payout() FROM PUBLIC;",
    )
    .unwrap();
    let mut m = s.connect_as("app", "mallory");
    m.batch_execute(
        "CREATE SCHEMA m;
         CREATE TABLE m.accounts (id int, balance int);
         CREATE TABLE m.kid () INHERITS (m.accounts);
         INSERT INTO m.kid VALUES (2, 1000000);",
    )
    .unwrap();
    let id = create(&mut m, "schemas => '{m}'");
    expect_err_with(
        &mut m,
        "SELECT * FROM backup.restore($1, schemas => '{m}', target_schema => 'public',
                                          existing => 'skip')",
        &[&id],
        "42501",
    );
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.accounts'::regclass"
        ),
        0
    );
    assert_eq!(
        count(&mut su, "SELECT sum(balance) FROM public.accounts"),
        100
    );
    // A trigger on the operator's own table calling a function it could execute when it
    // made the trigger, and no longer may (PostgreSQL checks EXECUTE only at CREATE TRIGGER).
    su.batch_execute("GRANT EXECUTE ON FUNCTION public.payout() TO mallory")
        .unwrap();
    m.batch_execute(
        "CREATE SCHEMA n; CREATE TABLE n.t (a int);
         CREATE TRIGGER t BEFORE INSERT ON n.t FOR EACH ROW EXECUTE FUNCTION public.payout();",
    )
    .unwrap();
    let id2 = create(&mut m, "schemas => '{n}'");
    su.batch_execute("REVOKE EXECUTE ON FUNCTION public.payout() FROM mallory")
        .unwrap();
    m.batch_execute("DROP SCHEMA n CASCADE").unwrap();
    let r = m.query("SELECT * FROM backup.restore($1)", &[&id2]);
    let e = r.expect_err("the trigger on the victim's function was created");
    assert_eq!(sqlstate(&e), "42501", "{}", describe(&e));
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM pg_trigger WHERE tgfoid = 'public.payout()'::regprocedure"
        ),
        0
    );
    // What only a superuser may create (a LEAKPROOF function: it sees past security barriers
    // and row-level security; an operator family) does not come back through an operator's
    // restore, even when a superuser once gave it to the operator.
    su.batch_execute(
        "CREATE SCHEMA o AUTHORIZATION mallory;
         CREATE FUNCTION o.peek(int) RETURNS boolean LANGUAGE sql IMMUTABLE LEAKPROOF AS 'SELECT true';
         ALTER FUNCTION o.peek(int) OWNER TO mallory;
         CREATE OPERATOR FAMILY o.fam USING btree;
         ALTER OPERATOR FAMILY o.fam USING btree OWNER TO mallory;",
    )
    .unwrap();
    let id3 = create(&mut m, "schemas => '{o}'");
    m.batch_execute("DROP SCHEMA o CASCADE").unwrap();
    let rows = m
        .query(
            "SELECT kind || ' ' || status FROM backup.restore($1, on_error => 'continue')
             WHERE kind IN ('function', 'operator_family')
             ORDER BY 1",
            &[&id3],
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let got: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(got, ["function failed", "operator_family warning"]);
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM pg_proc WHERE proleakproof AND proname = 'peek'"
        ),
        0
    );
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM pg_opfamily WHERE opfname = 'fam'"
        ),
        0
    );
    // The grants of an existing schema of another role are not the operator's to rewrite,
    // whatever its backup says (CREATE SCHEMA IF NOT EXISTS keeps the schema).
    su.batch_execute(
        "CREATE ROLE clerk; CREATE SCHEMA shared;
         GRANT USAGE, CREATE ON SCHEMA shared TO mallory; GRANT USAGE ON SCHEMA shared TO PUBLIC;
         COMMENT ON SCHEMA shared IS 'the DBA''s';",
    )
    .unwrap();
    m.batch_execute("CREATE TABLE shared.t (a int)").unwrap();
    let id4 = create(&mut m, "schemas => '{shared}'");
    su.batch_execute(
        "REVOKE USAGE ON SCHEMA shared FROM PUBLIC; COMMENT ON SCHEMA shared IS 'changed';",
    )
    .unwrap();
    m.batch_execute("DROP TABLE shared.t").unwrap();
    let rows = m
        .query(
            "SELECT kind || ' ' || action || ' ' || status FROM backup.restore($1)
             WHERE kind IN ('acl', 'comment') ORDER BY 1",
            &[&id4],
        )
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    let got: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(got, ["acl skip ok", "comment skip ok"]);
    assert_eq!(
        count(
            &mut su,
            "SELECT has_schema_privilege('clerk', 'shared', 'USAGE')::int::int8"
        ),
        0
    );
    assert_eq!(
        strings(
            &mut su,
            "SELECT obj_description('shared'::regnamespace, 'pg_namespace')"
        ),
        ["changed"]
    );
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM pg_class WHERE oid = 'shared.t'::regclass"
        ),
        1
    );
}

/// Tablespaces and grantors (issue 8) seen from an operator's restore: the placement of a
/// relation never uses rights its owner lacks, and a grant passed on WITH GRANT OPTION keeps
/// its grantor only when the operator may act as that grantor; otherwise it is recorded as
/// the owner's (said in the row), and nobody ends up with a privilege the backup did not
/// give them.
#[test]
fn an_operators_restore_places_and_grants_nothing_beyond_its_rights() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let dir = |n: &str| {
        let d = s.dir.path().join(n);
        std::fs::create_dir_all(&d).unwrap();
        d.display().to_string()
    };
    let mut su = s.connect("app");
    for (name, at) in [("open_ts", dir("open")), ("secret_ts", dir("secret"))] {
        su.batch_execute(&format!("CREATE TABLESPACE {name} LOCATION '{at}'"))
            .unwrap();
    }
    add_operator(&mut su, "operator");
    su.batch_execute(
        "CREATE ROLE owner_r; CREATE ROLE mid_r; CREATE ROLE end_r;
         GRANT owner_r TO operator;
         GRANT CREATE ON TABLESPACE open_ts TO owner_r;
         CREATE SCHEMA app_s AUTHORIZATION owner_r;
         SET ROLE owner_r;
         CREATE TABLE app_s.t (a int PRIMARY KEY USING INDEX TABLESPACE open_ts, b text) TABLESPACE open_ts;
         CREATE INDEX t_b ON app_s.t (b) TABLESPACE open_ts;
         GRANT USAGE ON SCHEMA app_s TO mid_r;
         GRANT SELECT ON app_s.t TO mid_r WITH GRANT OPTION;
         SET ROLE mid_r;
         GRANT SELECT ON app_s.t TO end_r;
         RESET ROLE;
         CREATE TABLE app_s.hidden (x int) TABLESPACE secret_ts;
         ALTER TABLE app_s.hidden OWNER TO owner_r;
         INSERT INTO app_s.t VALUES (1, 'one'), (2, 'two');
         INSERT INTO app_s.hidden VALUES (7);",
    )
    .unwrap();
    let id = create(&mut su, "schemas => '{app_s}'");
    let grants = "SELECT coalesce(string_agg(x, ', ' ORDER BY x), '') FROM (
                  SELECT pg_get_userbyid(e.grantor) || '>' || pg_get_userbyid(e.grantee) || ':' || e.privilege_type
                         || CASE WHEN e.is_grantable THEN '*' ELSE '' END AS x
                  FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) e WHERE c.oid = 'app_s.t'::regclass) s";
    let placement =
        "SELECT string_agg(c.relname || ':' || coalesce(t.spcname, '-'), ', ' ORDER BY c.relname)
                     FROM pg_class c LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
                     WHERE c.relnamespace = 'app_s'::regnamespace AND c.relkind IN ('r', 'i')";
    let source_grants = text(&mut su, grants);
    assert!(
        source_grants.contains("mid_r>end_r:SELECT,")
            && source_grants.contains("owner_r>mid_r:SELECT*"),
        "{source_grants}"
    );
    let set = |s: &str| -> std::collections::BTreeSet<String> {
        s.split(", ").map(str::to_string).collect()
    };
    let fresh = |name: &str| -> (Client, Client) {
        fresh_database(&s, name, "");
        let mut su = s.connect(name);
        su.batch_execute(&format!(
            "GRANT CREATE ON DATABASE {name} TO operator; SELECT * FROM backup.rescan()"
        ))
        .unwrap();
        (su, s.connect_as(name, "operator"))
    };

    // The whole schema: app_s.hidden's owner may not create in secret_ts: refused up front.
    let (mut su1, mut op1) = fresh("t1");
    op1.batch_execute("SET default_tablespace = secret_ts")
        .unwrap();
    let e = expect_err_with(
        &mut op1,
        "SELECT * FROM backup.restore($1)",
        &[&id],
        "42501",
    );
    assert!(describe(&e).contains("secret_ts"), "{}", describe(&e));
    assert!(hint(&e).is_some(), "{}", describe(&e));
    assert_eq!(
        count(
            &mut su1,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'app_s'"
        ),
        0,
        "nothing changed"
    );

    // Into the default tablespace instead (not the session's default_tablespace, which the
    // owner may not use either); mid_r's grant is recorded as the owner's, and its row says so.
    let rows = op1
        .query(
            "SELECT kind, status, detail FROM backup.restore($1, no_tablespaces => true)",
            &[&id],
        )
        .unwrap();
    assert_eq!(
        text(&mut su1, placement),
        "hidden:-, t:-, t_b:-, t_pkey:-",
        "no_tablespaces: the database's default"
    );
    let warned: Vec<String> = rows
        .iter()
        .filter(|r| r.get::<_, String>(0) == "acl" && r.get::<_, String>(1) == "warning")
        .map(|r| r.get::<_, Option<String>>(2).unwrap_or_default())
        .collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("mid_r"), "{warned:?}");
    assert_eq!(
        set(&text(&mut su1, grants)),
        set(&source_grants.replace("mid_r>end_r", "owner_r>end_r")),
        "the same privileges, the re-grant by the owner"
    );
    assert_eq!(superusers(&mut su1), Vec::<String>::new());

    // The table alone, in its tablespace (owner_r has CREATE on open_ts).
    let (mut su2, mut op2) = fresh("t2");
    op2.query(
        "SELECT * FROM backup.restore($1, tables => '{app_s.t}')",
        &[&id],
    )
    .unwrap();
    assert_eq!(
        text(&mut su2, placement),
        "t:open_ts, t_b:open_ts, t_pkey:open_ts"
    );

    // An operator that may act as mid_r restores mid_r's grant as mid_r's.
    su.batch_execute("GRANT mid_r TO operator").unwrap();
    let (mut su3, mut op3) = fresh("t3");
    let rows = op3
        .query(
            "SELECT status FROM backup.restore($1, tables => '{app_s.t}') WHERE status <> 'ok'",
            &[&id],
        )
        .unwrap();
    assert!(rows.is_empty(), "{} rows not ok", rows.len());
    assert_eq!(text(&mut su3, grants), source_grants);

    // A whole-database backup carries the database's grants and grants on system objects
    // that a superuser made: an operator's restore of it applies none of them.
    su.batch_execute(
        "GRANT SELECT ON pg_catalog.pg_authid TO operator; GRANT CREATE ON DATABASE app TO end_r;",
    )
    .unwrap();
    let whole = create(&mut su, "");
    su.batch_execute("REVOKE SELECT ON pg_catalog.pg_authid FROM operator")
        .unwrap();
    let (mut su5, mut op5) = fresh("t5");
    let rows = op5
        .query(
            "SELECT object, status FROM backup.restore($1, no_tablespaces => true) WHERE kind = 'acl' AND status <> 'ok'",
            &[&whole],
        )
        .unwrap();
    assert!(rows.len() >= 2, "the two grants are skipped with warnings");
    assert!(
        rows.iter().all(|r| r.get::<_, String>(1) == "warning"),
        "{} rows",
        rows.len()
    );
    assert_eq!(
        text(
            &mut su5,
            "SELECT has_table_privilege('operator', 'pg_catalog.pg_authid', 'SELECT')::text
                    || ' ' || has_database_privilege('end_r', 't5', 'CREATE')::text"
        ),
        "false false"
    );
    assert_eq!(superusers(&mut su5), Vec::<String>::new());

    // A superuser restores everything where the backup had it.
    fresh_database(&s, "t4", "");
    let mut su4 = s.connect("t4");
    su4.batch_execute("SELECT * FROM backup.rescan()").unwrap();
    su4.query("SELECT * FROM backup.restore($1)", &[&id])
        .unwrap();
    assert_eq!(
        text(&mut su4, placement),
        "hidden:secret_ts, t:open_ts, t_b:open_ts, t_pkey:open_ts"
    );
    assert_eq!(text(&mut su4, grants), source_grants);
}

// ---------------------------------------------------------------------------------------------
// Issue 16: a superuser's restore of what pg_restore restores, with no role gaining anything.

/// What every role (PUBLIC too; PostgreSQL's own pg_* roles aside) may do in the database of
/// `c` (outside pg_backup's schema): on every relation, column (beyond what the table grants),
/// sequence, routine, type, schema and language, with the owner of each: one line each.
fn privileges(c: &mut Client) -> std::collections::BTreeSet<String> {
    strings(
        c,
        r#"
WITH r AS (SELECT rolname::text AS name FROM pg_roles WHERE rolname !~ '^pg_' UNION ALL SELECT 'public'),
rel AS (SELECT c.oid, c.relkind, c.relowner, format('%I.%I', n.nspname, c.relname) AS name
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.nspname <> 'backup' AND n.nspname !~ '^pg_toast'),
fn AS (SELECT p.oid, p.proowner FROM pg_proc p WHERE p.pronamespace <> 'backup'::regnamespace),
ty AS (SELECT t.oid, t.typowner FROM pg_type t WHERE t.typnamespace <> 'backup'::regnamespace)
SELECT r.name || ' ' || p || ' ON ' || rel.name FROM r, rel,
  unnest(CASE WHEN rel.relkind = 'S' THEN ARRAY['USAGE', 'SELECT', 'UPDATE']
              ELSE ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'] END) p
WHERE CASE WHEN rel.relkind = 'S' THEN has_sequence_privilege(r.name, rel.oid, p) ELSE has_table_privilege(r.name, rel.oid, p) END
UNION ALL
SELECT r.name || ' ' || p || ' ON COLUMN ' || rel.name || '.' || quote_ident(a.attname)
FROM r, rel JOIN pg_attribute a ON a.attrelid = rel.oid AND NOT a.attisdropped, unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'REFERENCES']) p
WHERE rel.relkind <> 'S' AND has_column_privilege(r.name, rel.oid, a.attnum, p) AND NOT has_table_privilege(r.name, rel.oid, p)
UNION ALL
SELECT r.name || ' EXECUTE ON ' || fn.oid::regprocedure FROM r, fn WHERE has_function_privilege(r.name, fn.oid, 'EXECUTE')
UNION ALL
SELECT r.name || ' USAGE ON TYPE ' || ty.oid::regtype FROM r, ty WHERE has_type_privilege(r.name, ty.oid, 'USAGE')
UNION ALL
SELECT r.name || ' ' || p || ' ON SCHEMA ' || quote_ident(n.nspname) FROM r, pg_namespace n, unnest(ARRAY['USAGE', 'CREATE']) p
WHERE n.nspname <> 'backup' AND has_schema_privilege(r.name, n.oid, p)
UNION ALL
SELECT r.name || ' USAGE ON LANGUAGE ' || l.lanname FROM r, pg_language l WHERE has_language_privilege(r.name, l.oid, 'USAGE')
UNION ALL
SELECT 'owner of ' || rel.name || ': ' || pg_get_userbyid(rel.relowner) FROM rel
UNION ALL
SELECT 'owner of ' || fn.oid::regprocedure || ': ' || pg_get_userbyid(fn.proowner) FROM fn
UNION ALL
SELECT 'owner of type ' || ty.oid::regtype || ': ' || pg_get_userbyid(ty.typowner) FROM ty
UNION ALL
SELECT 'owner of schema ' || quote_ident(n.nspname) || ': ' || pg_get_userbyid(n.nspowner) FROM pg_namespace n WHERE n.nspname <> 'backup'
"#,
    )
    .into_iter()
    .collect()
}

/// Every role's attributes and memberships (the cluster's).
fn roles(c: &mut Client) -> Vec<String> {
    strings(
        c,
        "SELECT rolname || ' ' || concat_ws(',', rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,
                                            rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil)
         FROM pg_roles
         UNION ALL
         SELECT member::regrole || ' in ' || roleid::regrole || ' ' || admin_option FROM pg_auth_members
         ORDER BY 1",
    )
}

/// Code of sb_storage_admin's (the owner of schema storage) in a CHECK, a generated column,
/// an index expression and a trigger: it records who runs it (through a recorder of the
/// superuser's that any role may call) and quietly tries to take what its owner lacks.
const AUDITED_CODE: &str = r#"
CREATE TABLE public.seen (who text, db text, what text);
CREATE FUNCTION public.note_seen(who text, what text) RETURNS void LANGUAGE sql SECURITY DEFINER
  AS $f$ INSERT INTO public.seen VALUES (who, current_database(), what) $f$;
SET ROLE sb_storage_admin;
CREATE FUNCTION storage.noted(what text, x text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  PERFORM public.note_seen(current_user::text, what);
  BEGIN EXECUTE 'ALTER ROLE sb_storage_admin SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
  BEGIN EXECUTE 'GRANT SELECT, REFERENCES ON auth.users TO sb_storage_admin'; EXCEPTION WHEN OTHERS THEN NULL; END;
  BEGIN EXECUTE 'GRANT USAGE ON SCHEMA auth TO sb_anon'; EXCEPTION WHEN OTHERS THEN NULL; END;
  BEGIN EXECUTE 'GRANT sb_auth_admin TO sb_storage_admin'; EXCEPTION WHEN OTHERS THEN NULL; END;
  RETURN true;
END $f$;
CREATE FUNCTION storage.noted_id(what text, x text) RETURNS text LANGUAGE plpgsql IMMUTABLE
  AS $f$ BEGIN PERFORM storage.noted(what, x); RETURN x; END $f$;
CREATE FUNCTION storage.audited_trigger() RETURNS trigger LANGUAGE plpgsql
  AS $f$ BEGIN PERFORM storage.noted('trigger', NEW.name); RETURN NEW; END $f$;
CREATE TABLE storage.audited (
  name text CHECK (storage.noted('check', name)),
  tag text GENERATED ALWAYS AS (storage.noted_id('generated', name)) STORED
);
CREATE INDEX audited_expression ON storage.audited (storage.noted_id('index', name));
CREATE TRIGGER audited_t BEFORE INSERT ON storage.audited FOR EACH ROW EXECUTE FUNCTION storage.audited_trigger();
INSERT INTO storage.audited (name) VALUES ('a'), ('b');
RESET ROLE;
-- A CHECK over the table's own row type: restored after its function, split off the table.
CREATE FUNCTION storage.bucket_ok(b storage.buckets) RETURNS boolean LANGUAGE sql
  AS $f$ SELECT storage.noted('split check', b.id) $f$;
ALTER FUNCTION storage.bucket_ok(storage.buckets) OWNER TO sb_storage_admin;
SET ROLE sb_storage_admin;
ALTER TABLE storage.buckets ADD CONSTRAINT bucket_ok CHECK (storage.bucket_ok(buckets.*));
RESET ROLE;
-- A key a superuser made NOT VALID (its rows do not match): it stays so.
ALTER TABLE storage.audited ADD CONSTRAINT audited_bucket FOREIGN KEY (name) REFERENCES storage.buckets (id) NOT VALID;
"#;

#[test]
fn a_supabase_shaped_database_restores_and_no_role_gains_anything() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    su.batch_execute(include_str!("fixtures/supabase_shaped.sql"))
        .unwrap();
    su.batch_execute(AUDITED_CODE).unwrap();
    add_operator(&mut su, "sb_operator");
    su.batch_execute(
        "GRANT sb_auth_admin, sb_storage_admin TO sb_operator;
         CREATE ROLE sb_stranger LOGIN; GRANT backup_operator TO sb_stranger; GRANT sb_storage_admin TO sb_stranger;",
    )
    .unwrap();
    let whole = create(&mut su, "");
    let parts = create(&mut su, "schemas => '{auth,storage}'");
    let cluster = roles(&mut su);
    let source = privileges(&mut su);
    let who_ran = "SELECT coalesce(string_agg(DISTINCT who || ':' || what, ', ' ORDER BY who || ':' || what), '') FROM public.seen WHERE db = current_database()";

    // A superuser's restore into a new database: everything, exactly as in the source.
    fresh_database(&s, "r_super", "");
    let mut r = s.connect("r_super");
    r.batch_execute("SELECT * FROM backup.rescan()").unwrap();
    let not_ok = strings(
        &mut r,
        &format!(
            "SELECT object || ' ' || kind || ' ' || status || ' ' || coalesce(detail, '')
             FROM backup.restore('{whole}') WHERE status <> 'ok'"
        ),
    );
    assert_eq!(not_ok, Vec::<String>::new());
    // The owners' code ran as their owner, never as the restoring superuser (triggers are
    // created after the rows, as pg_restore does: they do not fire).
    assert_eq!(
        strings(&mut r, who_ran),
        vec![
            "sb_storage_admin:check, sb_storage_admin:generated, sb_storage_admin:index, sb_storage_admin:split check"
                .to_string()
        ]
    );
    assert_eq!(
        roles(&mut r),
        cluster,
        "no role attribute or membership changed"
    );
    let restored = privileges(&mut r);
    let gained: Vec<&String> = restored.difference(&source).collect();
    let lost: Vec<&String> = source.difference(&restored).collect();
    assert!(gained.is_empty(), "gained: {gained:#?}");
    assert!(lost.is_empty(), "not restored: {lost:#?}");
    assert_eq!(
        text(
            &mut r,
            "SELECT string_agg(conname || ' ' || convalidated, ', ' ORDER BY conname) FROM pg_constraint WHERE contype = 'f' AND conparentid = 0 AND connamespace <> 'backup'::regnamespace"
        ),
        "audited_bucket false, buckets_owner_fkey true, events_owner_fkey true, objects_bucket_id_fkey true, objects_owner_fkey true"
    );
    assert_eq!(privileges(&mut su), source, "the source is unchanged");

    // An operator with the privileges of both owners restores their schemas into a
    // database a superuser prepared (extensions are a superuser's to install): what it could
    // do itself, as the security model says. Grants on the extensions' members are a
    // superuser's: skipped with warnings.
    fresh_database(&s, "r_op", "");
    let mut rsu = s.connect("r_op");
    rsu.batch_execute(
        "SELECT * FROM backup.rescan();
         CREATE SCHEMA extensions;
         CREATE EXTENSION pgcrypto WITH SCHEMA extensions;
         CREATE EXTENSION \"uuid-ossp\" WITH SCHEMA extensions;
         GRANT USAGE ON SCHEMA extensions TO sb_anon, sb_authenticated, sb_service_role, sb_storage_admin;
         CREATE TABLE public.seen (who text, db text, what text);
         CREATE FUNCTION public.note_seen(who text, what text) RETURNS void LANGUAGE sql SECURITY DEFINER
           AS $f$ INSERT INTO public.seen VALUES (who, current_database(), what) $f$;
         GRANT CREATE ON DATABASE r_op TO sb_operator, sb_stranger;",
    )
    .unwrap();
    let before = privileges(&mut rsu);
    // Without the privileges of auth's owner: refused before anything changes.
    let mut stranger = s.connect_as("r_op", "sb_stranger");
    expect_err_with(
        &mut stranger,
        "SELECT * FROM backup.restore($1)",
        &[&parts],
        "42501",
    );
    assert_eq!(privileges(&mut rsu), before);
    let mut op = s.connect_as("r_op", "sb_operator");
    let not_ok = strings(
        &mut op,
        &format!(
            "SELECT object || ' ' || kind || ' ' || status FROM backup.restore('{parts}') WHERE status <> 'ok'"
        ),
    );
    assert_eq!(not_ok, Vec::<String>::new());
    assert_eq!(
        strings(&mut rsu, who_ran),
        vec![
            "sb_storage_admin:check, sb_storage_admin:generated, sb_storage_admin:index, sb_storage_admin:split check"
                .to_string()
        ]
    );
    assert_eq!(
        roles(&mut rsu),
        cluster,
        "no role attribute or membership changed"
    );
    let after = privileges(&mut rsu);
    let gained: Vec<&String> = after
        .iter()
        .filter(|p| !before.contains(*p) && !source.contains(*p))
        .collect();
    assert!(gained.is_empty(), "gained: {gained:#?}");
    assert_eq!(
        count(
            &mut rsu,
            "SELECT count(*) FROM storage.objects o JOIN auth.users u ON u.id = o.owner"
        ),
        200
    );
    assert_eq!(
        text(
            &mut rsu,
            "SELECT string_agg(conname || ' ' || convalidated, ', ' ORDER BY conname) FROM pg_constraint WHERE contype = 'f' AND conparentid = 0 AND connamespace <> 'backup'::regnamespace"
        ),
        "audited_bucket false, buckets_owner_fkey true, events_owner_fkey true, objects_bucket_id_fkey true, objects_owner_fkey true"
    );
}

#[test]
fn run_analyze_is_an_option_written_unquoted_and_analyze_still_works_quoted() {
    if !enabled() {
        return;
    }
    // Issue 16: ANALYZE is a reserved word; `analyze => false` is a syntax error.
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    su.batch_execute("CREATE TABLE t AS SELECT g AS x FROM generate_series(1, 1000) g")
        .unwrap();
    let id = create(&mut su, "");
    let analyzed =
        "SELECT coalesce(max(analyze_count), 0) FROM pg_stat_user_tables WHERE relname = 't'";
    for (db, args, want) in [
        ("a_unquoted", "run_analyze => false", 0),
        ("a_default", "", 1),
        ("a_quoted", "\"analyze\" => false", 0),
        ("a_both", "\"analyze\" => true, run_analyze => false", 1),
    ] {
        fresh_database(&s, db, "");
        let mut c = s.connect(db);
        c.batch_execute("SELECT * FROM backup.rescan()").unwrap();
        let sql = format!(
            "SELECT count(*) FROM backup.restore('{id}'{}{args}) WHERE status <> 'ok'",
            if args.is_empty() { "" } else { ", " }
        );
        assert_eq!(count(&mut c, &sql), 0, "{sql}");
        assert_eq!(count(&mut c, "SELECT count(*) FROM t"), 1000);
        // The statistics collector's counters are per database and flushed at commit.
        c.batch_execute("SELECT pg_stat_force_next_flush()")
            .unwrap();
        let mut fresh = s.connect(db);
        assert_eq!(count(&mut fresh, analyzed), want, "{db}: {args}");
    }
}

/// What someone who can write the archive's folder (backup.directory, a file:// target, a
/// bucket) does to an archive: change its manifest, then recompute every checksum a reader
/// checks (each data file's sha256 in the manifest, manifest.sha256). One function, so that
/// re-signing (issue 17's signatures) goes here too.
fn tamper(c: &mut Client, id: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let archive = backup_dir(c).join(id);
    let json = std::fs::read(archive.join("manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&json).unwrap();
    edit(&mut m);
    if let Some(files) = m["files"].as_array_mut() {
        for f in files {
            let path = archive.join(f["path"].as_str().unwrap_or_default());
            if let Ok(bytes) = std::fs::read(&path) {
                f["sha256"] = serde_json::Value::String(sha256_hex(&bytes));
            }
        }
    }
    let json = serde_json::to_vec_pretty(&m).unwrap();
    std::fs::write(archive.join("manifest.json"), &json).unwrap();
    // Signed again with the cluster's key (as only who reads the data directory could), so
    // that what the tests check is what comes after the signature check.
    let data: String = c
        .query_one("SELECT current_setting('data_directory')", &[])
        .unwrap()
        .get(0);
    signing::resign(&archive, std::path::Path::new(&data));
    // And registered as such (as rescan() registers an archive uploaded under a new id): the
    // row's manifest_sha256 is the forged manifest's.
    c.execute(
        "UPDATE backup.backups SET manifest_sha256 = $1 WHERE id = $2",
        &[&sha256_hex(&json), &id],
    )
    .unwrap();
}

/// The row of backup `id` registers its manifest.json as it is now on disk (after a test put
/// the archive back as pg_backup wrote it).
fn register_as_is(c: &mut Client, id: &str) {
    let json = std::fs::read(backup_dir(c).join(id).join("manifest.json")).unwrap();
    c.execute(
        "UPDATE backup.backups SET manifest_sha256 = $1 WHERE id = $2",
        &[&sha256_hex(&json), &id],
    )
    .unwrap();
}

/// The TOC entry of `kind` named `name` (as the TOC names it) in a manifest.
fn toc_entry<'a>(
    m: &'a mut serde_json::Value,
    kind: &str,
    name: &str,
) -> &'a mut serde_json::Value {
    m["toc"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["kind"] == kind && e["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} entry {name}"))
}

fn append_sql(e: &mut serde_json::Value, field: &str, sql: &str) {
    let before = e[field].as_str().unwrap_or_default().to_string();
    e[field] = serde_json::Value::String(format!("{before}\n{sql}"));
}

fn set_sql(e: &mut serde_json::Value, sql: &str) {
    e["sql"] = serde_json::Value::String(sql.to_string());
}

/// Issue 17: a TOC entry's SQL is data. A statement added to an entry (the entry's kind
/// never holds it), a second object created by an entry, or one kind's statement in another
/// kind's entry is refused with 2F003 before anything changes, whoever restores, even when
/// every checksum matches. 0.2.0 ran an entry that "evaluates nothing" (a comment, an owner
/// statement) as the extension owner: `ALTER ROLE op SUPERUSER` made the operator superuser.
#[test]
fn statements_an_entry_never_holds_are_refused_before_anything_changes() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    add_operator_in_public(&mut su, "op");
    let mut op = s.connect_as("app", "op");
    op.batch_execute(
        "CREATE TABLE public.mine (a int PRIMARY KEY, b text);
         CREATE INDEX mine_b ON public.mine (b);
         COMMENT ON TABLE public.mine IS 'mine';
         INSERT INTO public.mine SELECT i, 'row ' || i FROM generate_series(1, 10) i;",
    )
    .unwrap();
    let id = create(&mut op, "tables => '{public.mine}'");
    op.batch_execute("DROP TABLE public.mine").unwrap();
    let manifest = backup_dir(&mut su).join(&id).join("manifest.json");
    let sha = backup_dir(&mut su).join(&id).join("manifest.sha256");
    let sig = backup_dir(&mut su).join(&id).join("manifest.sig");
    let (original, original_sha, original_sig) = (
        std::fs::read(&manifest).unwrap(),
        std::fs::read(&sha).unwrap(),
        std::fs::read(&sig).unwrap(),
    );
    type Edit = fn(&mut serde_json::Value);
    let cases: Vec<(&str, Edit)> = vec![
        ("ALTER ROLE after a comment", |m| {
            append_sql(
                toc_entry(m, "comment", "TABLE public.mine"),
                "sql",
                "ALTER ROLE op SUPERUSER;",
            )
        }),
        ("ALTER ROLE after a CREATE TABLE", |m| {
            append_sql(
                toc_entry(m, "table", "mine"),
                "sql",
                "ALTER ROLE op SUPERUSER;",
            )
        }),
        ("ALTER ROLE after an owner statement", |m| {
            append_sql(
                toc_entry(m, "table", "mine"),
                "owner_sql",
                "ALTER ROLE op SUPERUSER;",
            )
        }),
        ("a second table in a table entry", |m| {
            append_sql(
                toc_entry(m, "table", "mine"),
                "sql",
                "CREATE TABLE public.other (x int);",
            )
        }),
        ("a table in an index entry", |m| {
            set_sql(
                toc_entry(m, "index", "mine_b"),
                "CREATE TABLE public.other (x int);",
            )
        }),
        ("an index of another table", |m| {
            set_sql(
                toc_entry(m, "index", "mine_b"),
                "CREATE INDEX mine_b ON pg_catalog.pg_class (relname);",
            )
        }),
        ("a DO block", |m| {
            set_sql(
                toc_entry(m, "comment", "TABLE public.mine"),
                "DO $$BEGIN EXECUTE 'ALTER ROLE op SUPERUSER'; END$$;",
            )
        }),
        ("SET ROLE", |m| {
            append_sql(
                toc_entry(m, "comment", "TABLE public.mine"),
                "sql",
                "SET ROLE NONE;",
            )
        }),
        ("COPY TO PROGRAM", |m| {
            set_sql(
                toc_entry(m, "comment", "TABLE public.mine"),
                "COPY (SELECT 1) TO PROGRAM 'true';",
            )
        }),
        ("a function called in a SELECT", |m| {
            set_sql(
                toc_entry(m, "constraint", "mine mine_pkey"),
                "SELECT pg_catalog.pg_reload_conf();",
            )
        }),
        ("SQL that does not parse", |m| {
            append_sql(toc_entry(m, "table", "mine"), "sql", "ALTER ROLE;")
        }),
    ];
    let check = |c: &mut Client, su: &mut Client, case: &str| {
        let r = c.query("SELECT * FROM backup.restore($1)", &[&id]);
        assert_eq!(superusers(su), Vec::<String>::new(), "{case}");
        let e = r.unwrap_err();
        assert_eq!(sqlstate(&e), "2F003", "{case}: {}", describe(&e));
        let hint = hint(&e).unwrap_or_default();
        assert!(hint.contains("TOC entry"), "{case}: {}", describe(&e));
        assert_eq!(superusers(su), Vec::<String>::new(), "{case}");
        assert_eq!(
            strings(
                su,
                "SELECT coalesce(to_regclass('public.mine')::text, '-') || ' ' || coalesce(to_regclass('public.other')::text, '-')"
            ),
            ["- -"],
            "{case}: nothing changed"
        );
    };
    for (case, edit) in &cases {
        std::fs::write(&manifest, &original).unwrap();
        std::fs::write(&sha, &original_sha).unwrap();
        std::fs::write(&sig, &original_sig).unwrap();
        tamper(&mut su, &id, edit);
        // verify() finds every file as its manifest says.
        let bad = count(
            &mut su,
            &format!("SELECT count(*) FROM backup.verify('{id}') WHERE status <> 'ok'"),
        );
        assert_eq!(bad, 0, "{case}: the checksums match");
        check(&mut op, &mut su, case);
    }
    // A superuser's restore refuses the same way.
    std::fs::write(&manifest, &original).unwrap();
    std::fs::write(&sha, &original_sha).unwrap();
    std::fs::write(&sig, &original_sig).unwrap();
    tamper(&mut su, &id, cases[0].1);
    let mut superuser = s.connect("app");
    check(&mut superuser, &mut su, "as a superuser");
    // The archive as pg_backup wrote it restores.
    std::fs::write(&manifest, &original).unwrap();
    std::fs::write(&sha, &original_sha).unwrap();
    std::fs::write(&sig, &original_sig).unwrap();
    register_as_is(&mut su, &id);
    op.query("SELECT * FROM backup.restore($1)", &[&id])
        .unwrap();
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.mine"), 10);
}

/// Issue 17: for a caller that is not a superuser, no entry runs as the extension owner. A
/// grant or a comment entry (which "evaluate nothing") ran as the extension owner in 0.2.0:
/// one naming another role's table granted the operator SELECT on it, or rewrote its comment.
/// They run as the caller now, with exactly what it could do itself.
#[test]
fn an_operators_restore_runs_no_entry_as_the_extension_owner() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    add_operator_in_public(&mut su, "op");
    su.batch_execute(
        "CREATE TABLE public.victim (x int); INSERT INTO public.victim VALUES (42);
         COMMENT ON TABLE public.victim IS 'victim';",
    )
    .unwrap();
    let mut op = s.connect_as("app", "op");
    op.batch_execute(
        "CREATE TABLE public.mine (a int); INSERT INTO public.mine VALUES (1);
         COMMENT ON TABLE public.mine IS 'mine';
         GRANT SELECT ON public.mine TO PUBLIC;",
    )
    .unwrap();
    let id = create(&mut op, "tables => '{public.mine}'");
    let text = |c: &mut Client, sql: &str| -> String { c.query_one(sql, &[]).unwrap().get(0) };

    let archive = backup_dir(&mut su).join(&id);
    let original: Vec<(std::path::PathBuf, Vec<u8>)> =
        ["manifest.json", "manifest.sha256", "manifest.sig"]
            .iter()
            .map(|f| (archive.join(f), std::fs::read(archive.join(f)).unwrap()))
            .collect();
    let put_back = || {
        for (path, bytes) in &original {
            std::fs::write(path, bytes).unwrap();
        }
    };

    // A grant on another role's table, added to op's grant entry: granted by op, who may
    // not.
    op.batch_execute("DROP TABLE public.mine").unwrap();
    tamper(&mut su, &id, |m| {
        append_sql(
            toc_entry(m, "acl", "TABLE public.mine"),
            "sql",
            "GRANT SELECT ON TABLE public.victim TO op;",
        )
    });
    let e = op
        .query("SELECT * FROM backup.restore($1)", &[&id])
        .map(|rows| rows.len());
    assert_eq!(
        text(
            &mut su,
            "SELECT has_table_privilege('op', 'public.victim', 'SELECT')::text"
        ),
        "false",
        "the grant ran as op, not as the extension owner"
    );
    let e = e.unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{}", describe(&e));

    // A comment on another role's table instead of op's own: op may not.
    put_back();
    tamper(&mut su, &id, |m| {
        set_sql(
            toc_entry(m, "comment", "TABLE public.mine"),
            "COMMENT ON TABLE public.victim IS 'rewritten';",
        )
    });
    let e = op
        .query("SELECT * FROM backup.restore($1)", &[&id])
        .map(|rows| rows.len());
    assert_eq!(
        text(&mut su, "SELECT obj_description('public.victim'::regclass)"),
        "victim"
    );
    let e = e.unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{}", describe(&e));

    // As pg_backup wrote it, op's restore gives op's table its comment and grant.
    put_back();
    register_as_is(&mut su, &id);
    op.query("SELECT * FROM backup.restore($1)", &[&id])
        .unwrap();
    assert_eq!(
        text(
            &mut su,
            "SELECT obj_description('public.mine'::regclass) || ' ' || has_table_privilege('public', 'public.mine', 'SELECT')::text"
        ),
        "mine true"
    );
    assert_eq!(superusers(&mut su), Vec::<String>::new());
}

/// Issue 17: with on_error => 'continue', a role that may only create tables in a schema
/// got a superuser's rows: while the restore recreated a dropped table, it held an
/// uncommitted CREATE TABLE of the same name; the restore's CREATE failed and its data pass
/// loaded the rows into that role's table anyway. Rows go only into a table this restore
/// created, or one that was there before (and that `existing` was checked against), serially
/// and with jobs => 2.
#[test]
fn a_table_created_by_another_session_during_a_restore_gets_none_of_its_rows() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    su.batch_execute(
        "CREATE ROLE creator LOGIN; GRANT CREATE ON SCHEMA public TO creator;
         CREATE TABLE public.secret (a int, note text);
         INSERT INTO public.secret SELECT i, 'secret ' || i FROM generate_series(1, 20) i;",
    )
    .unwrap();
    let id = create(&mut su, "tables => '{public.secret}'");
    for (how, call) in [
        (
            "serially",
            "SELECT kind, status FROM backup.restore($1, on_error => 'continue')",
        ),
        (
            "with jobs => 2",
            "SELECT kind, status FROM backup.restore($1, on_error => 'continue', atomic => false, jobs => 2)",
        ),
    ] {
        su.batch_execute("DROP TABLE IF EXISTS public.secret")
            .unwrap();
        let mut attacker = s.connect_as("app", "creator");
        attacker
            .batch_execute("BEGIN; CREATE TABLE public.secret (a int, note text);")
            .unwrap();
        // The attacker's transaction stays open while the restore runs into it.
        let held = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(3));
            attacker.batch_execute("COMMIT").unwrap();
        });
        let rows = su.query(call, &[&id]).unwrap();
        held.join().unwrap();
        let statuses: Vec<(String, String)> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert!(
            statuses.contains(&("table".to_string(), "failed".to_string())),
            "{how}: the restore's CREATE failed: {statuses:?}"
        );
        assert!(
            !statuses.contains(&("table_data".to_string(), "ok".to_string())),
            "{how}: {statuses:?}"
        );
        assert_eq!(
            strings(
                &mut su,
                "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'public.secret'::regclass"
            ),
            ["creator"],
            "{how}"
        );
        assert_eq!(
            count(&mut su, "SELECT count(*) FROM public.secret"),
            0,
            "{how}: none of the rows went into the other role's table"
        );
    }
}

/// Issue 17: whoever can write backup.directory (a shared disk) puts a symbolic link to
/// backup.identity_file where an archive's data file should be. 0.2.0 followed it: verify
/// (deep) gave the operator the key file's SHA-256, size and line count, and with those in a
/// forged manifest restore() loaded the age secret key into the operator's table. Files of
/// an archive are now opened as files: no link followed, only a regular file read.
#[test]
fn a_symlink_in_an_archive_never_reads_the_file_it_points_to() {
    if !enabled() {
        return;
    }
    use age::secrecy::ExposeSecret;
    let s = Server::start_in_env_locale("");
    let mut c = s.connect("app");
    let key = age::x25519::Identity::generate();
    let key_text = format!(
        "# created: 2026-12-07T00:00:00Z\n# public key: {}\n{}\n",
        key.to_public(),
        key.to_string().expose_secret()
    );
    let key_file = s.data.join("backup-key.txt");
    std::fs::write(&key_file, &key_text).unwrap();
    c.batch_execute(&format!(
        "ALTER SYSTEM SET backup.identity_file = '{}'",
        key_file.display()
    ))
    .unwrap();
    c.batch_execute(
        "SELECT pg_reload_conf();
         CREATE ROLE op LOGIN; GRANT backup_operator TO op; GRANT CREATE ON SCHEMA public TO op;",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut op = s.connect_as("app", "op");
    op.batch_execute("CREATE TABLE public.notes (line text); INSERT INTO notes VALUES ('mine')")
        .unwrap();
    let genuine = create(&mut op, "tables => '{public.notes}', compression => 'none'");

    // The shared-disk writer: a copy of the archive under a new id whose data file is a link
    // to the key file, and a manifest that claims the key file's checksum, size and lines.
    let dir = backup_dir(&mut c);
    let forged = "20261207T000000.000000Z-forged";
    let from = dir.join(&genuine);
    let to = dir.join(forged);
    std::fs::create_dir_all(to.join("data")).unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(from.join("manifest.json")).unwrap()).unwrap();
    let rel = m["files"][0]["path"].as_str().unwrap().to_string();
    std::os::unix::fs::symlink(&key_file, to.join(&rel)).unwrap();
    m["backup_id"] = forged.into();
    m["files"][0]["sha256"] = sha256_hex(key_text.as_bytes()).into();
    m["files"][0]["bytes"] = key_text.len().into();
    m["files"][0]["raw_bytes"] = key_text.len().into();
    m["files"][0]["rows"] = 3.into();
    let json = serde_json::to_vec_pretty(&m).unwrap();
    std::fs::write(to.join("manifest.json"), &json).unwrap();
    std::fs::write(
        to.join("manifest.sha256"),
        format!("{}  manifest.json\n", sha256_hex(&json)),
    )
    .unwrap();
    // Signed with the cluster's key (as if the writer also had it): what is tested is that
    // the link is never followed, not the signature.
    let data: String = c
        .query_one("SELECT current_setting('data_directory')", &[])
        .unwrap()
        .get(0);
    signing::resign(&to, std::path::Path::new(&data));

    let found: Vec<String> = op
        .query("SELECT * FROM backup.rescan()", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(found, vec![forged.to_string()]);
    let rows = op
        .query(
            "SELECT status, actual_sha256, bytes, detail FROM backup.verify($1, deep => true) WHERE file = $2",
            &[&forged, &rel],
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    let (status, sha, bytes, detail): (String, Option<String>, Option<i64>, Option<String>) = (
        rows[0].get(0),
        rows[0].get(1),
        rows[0].get(2),
        rows[0].get(3),
    );
    assert_ne!(status, "ok", "the link was read as the data file");
    assert_eq!(sha, None, "the key file's checksum was given out");
    assert_eq!(bytes, None, "the key file's size was given out");
    assert!(
        detail.unwrap_or_default().contains("symbolic link"),
        "the row says why"
    );

    op.batch_execute("DROP TABLE notes").unwrap();
    let e = op
        .query("SELECT * FROM backup.restore($1)", &[&forged])
        .unwrap_err();
    assert!(
        describe(&e).contains("symbolic link") || sqlstate(&e) == "XX001",
        "{}",
        describe(&e)
    );
    let loaded = op
        .query(
            "SELECT 1 FROM pg_class WHERE relname = 'notes' AND relnamespace = 'public'::regnamespace",
            &[],
        )
        .unwrap();
    assert!(loaded.is_empty(), "the restore loaded the key file");

    // The genuine backup, with its folder replaced by a link to the forged one: refused too.
    std::fs::rename(&from, dir.join("moved-away")).unwrap();
    std::os::unix::fs::symlink(&to, &from).unwrap();
    let bad: i64 = op
        .query_one(
            "SELECT count(*) FROM backup.verify($1) WHERE status <> 'ok'",
            &[&genuine],
        )
        .unwrap()
        .get(0);
    assert!(bad > 0, "a linked archive folder verified ok");
}

/// Rows and definitions of schema `lit`, read by a session with default settings.
fn literal_fingerprint(c: &mut Client) -> Vec<String> {
    strings(
        c,
        "SELECT format('%s|%s|%s|%s|%s|%s|%s|%s', id, a, a[2] IS NULL, n, d, i, s, f) FROM lit.vals
         UNION ALL
         SELECT string_agg(pg_get_expr(adbin, adrelid), ';' ORDER BY adnum) FROM pg_attrdef
         WHERE adrelid = 'lit.defs'::regclass
         UNION ALL
         SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'lit.defs'::regclass
         UNION ALL
         SELECT pg_get_viewdef('lit.v'::regclass)
         ORDER BY 1",
    )
}

/// A session's settings that change how text is read (issue 17): whatever the caller set,
/// rows and definitions come back as they were, in an atomic restore (the session) and in
/// restore(jobs => 2) (its workers); and the caller's settings are its own again after.
#[test]
fn settings_that_decide_how_text_is_read_are_pinned_in_the_session_and_every_worker() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    su.batch_execute(
        r#"CREATE SCHEMA lit;
           CREATE TABLE lit.vals (id int PRIMARY KEY, a text[], n int[], d date, i interval, s text, f float8);
           INSERT INTO lit.vals VALUES
             (1, '{x,NULL}', '{1,NULL,3}', '2024-02-01', '1 day 02:00', E'back\\slash '' quote', 0.1),
             (2, '{"NULL",null}', NULL, '2024-12-31', '-3 mons -1 day', 'plain', 1e-300);
           CREATE TABLE lit.defs (id int, a text[] DEFAULT '{y,NULL}', d date DEFAULT '2024-02-01',
                                  s text DEFAULT E'a\\b', CHECK (a IS DISTINCT FROM '{z,NULL}'));
           CREATE VIEW lit.v AS SELECT id, a[2] IS NULL AS second_is_null, a = '{x,NULL}' AS same FROM lit.vals;"#,
    )
    .unwrap();
    let want = literal_fingerprint(&mut su);
    assert!(
        want.iter().any(|r| r.starts_with("1|{x,NULL}|t|")),
        "{want:?}"
    );
    let id = create(&mut su, "schemas => '{lit}'");
    let callers = "SET array_nulls = off; SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'sql_standard';
         SET standard_conforming_strings = off; SET transform_null_equals = on; SET backslash_quote = off;
         SET extra_float_digits = -10; CREATE SCHEMA evil;
         CREATE TABLE evil.vals (id int); CREATE VIEW evil.pg_class AS SELECT 1 AS oid;
         SET search_path = evil, public, pg_catalog;";
    let shown = "SELECT current_setting('array_nulls') || '/' || current_setting('DateStyle') || '/' ||
                 current_setting('IntervalStyle') || '/' || current_setting('standard_conforming_strings') || '/' ||
                 current_setting('search_path')";
    for (mode, call) in [
        ("atomic", "SELECT count(*) FROM backup.restore($1)"),
        (
            "jobs",
            "SELECT count(*) FROM backup.restore($1, atomic => false, jobs => 2)",
        ),
    ] {
        let db = format!("pinned_{mode}");
        fresh_database(&s, &db, "");
        let mut c = s.connect(&db);
        c.batch_execute(callers).unwrap();
        let before: String = c.query_one(shown, &[]).unwrap().get(0);
        c.query_one(call, &[&id])
            .unwrap_or_else(|e| panic!("{mode}: {}", describe(&e)));
        assert_eq!(
            literal_fingerprint(&mut s.connect(&db)),
            want,
            "{mode}: rows and definitions as they were"
        );
        assert_eq!(
            count(&mut s.connect(&db), "SELECT count(*) FROM evil.vals"),
            0,
            "{mode}"
        );
        let after: String = c.query_one(shown, &[]).unwrap().get(0);
        assert_eq!(
            after, before,
            "{mode}: the caller's settings are its own again"
        );
    }
}

/// The rows restore appended to `public.t` that its trigger rewrote.
fn rewritten(c: &mut Client) -> i64 {
    count(
        c,
        "SELECT count(*) FROM public.t WHERE id > 0 AND note = 'rewritten'",
    )
}

/// session_replication_role (issue 17): triggers of the tables a restore appends to fire, or
/// not, in restore(jobs => 2)'s workers exactly as in the session that called it.
#[test]
fn workers_honour_session_replication_role_as_the_session_does() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    su.batch_execute(
        "CREATE TABLE public.t (id int, note text);
         INSERT INTO public.t SELECT g, 'from the backup' FROM generate_series(1, 100) g;",
    )
    .unwrap();
    let id = create(&mut su, "tables => '{public.t}'");
    for (role, fires) in [("replica", false), ("origin", true)] {
        for (mode, extra) in [("atomic", ""), ("jobs", ", atomic => false, jobs => 2")] {
            let db = format!("srr_{role}_{mode}");
            fresh_database(&s, &db, "");
            let mut c = s.connect(&db);
            c.batch_execute(&format!(
                "CREATE TABLE public.t (id int, note text);
                 CREATE FUNCTION public.rewrite() RETURNS trigger LANGUAGE plpgsql AS $f$
                 BEGIN NEW.note := 'rewritten'; RETURN NEW; END $f$;
                 CREATE TRIGGER rw BEFORE INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.rewrite();
                 SET session_replication_role = {role};
                 INSERT INTO public.t VALUES (0, 'by hand');"
            ))
            .unwrap();
            // What the session does with the setting: the trigger fired, or did not.
            let by_hand: String = c
                .query_one("SELECT note FROM public.t WHERE id = 0", &[])
                .unwrap()
                .get(0);
            assert_eq!(by_hand == "rewritten", fires, "{role}: the session");
            c.query_one(
                &format!(
                    "SELECT count(*) FROM backup.restore($1, tables => '{{public.t}}', existing => 'append', data_only => true{extra})"
                ),
                &[&id],
            )
            .unwrap_or_else(|e| panic!("{role} {mode}: {}", describe(&e)));
            assert_eq!(
                count(&mut c, "SELECT count(*) FROM public.t WHERE id > 0"),
                100
            );
            assert_eq!(
                rewritten(&mut c),
                if fires { 100 } else { 0 },
                "{role} {mode}: the restore did what the session does"
            );
        }
    }
}

/// Who user code is, inside restore(jobs => 2)'s workers and in the session (issue 17):
/// session_user is the caller, current_user the table's owner, is_superuser and the
/// session's own settings as the session shows them.
#[test]
fn user_code_in_workers_sees_the_callers_session_user_and_settings() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    add_operator(&mut su, "op");
    su.batch_execute(
        "CREATE ROLE owner_r LOGIN;
         CREATE TABLE public.who (id int, s_user text, c_user text, su text, tenant text);
         ALTER TABLE public.who OWNER TO owner_r;
         INSERT INTO public.who SELECT g, 'x', 'x', 'x', 'x' FROM generate_series(1, 20) g;",
    )
    .unwrap();
    let id = create(&mut su, "tables => '{public.who}'");
    for (mode, extra) in [("atomic", ""), ("jobs", ", atomic => false, jobs => 2")] {
        let db = format!("who_{mode}");
        fresh_database(&s, &db, "");
        let mut admin = s.connect(&db);
        admin
            .batch_execute("GRANT CREATE ON SCHEMA public TO owner_r; GRANT owner_r TO op;")
            .unwrap();
        let mut owner = s.connect_as(&db, "owner_r");
        owner
            .batch_execute(
                "CREATE TABLE public.who (id int, s_user text, c_user text, su text, tenant text);
                 CREATE FUNCTION public.stamp() RETURNS trigger LANGUAGE plpgsql AS $f$
                 BEGIN
                   NEW.s_user := session_user; NEW.c_user := current_user;
                   NEW.su := current_setting('is_superuser');
                   NEW.tenant := current_setting('app.tenant', true);
                   RETURN NEW;
                 END $f$;
                 CREATE TRIGGER stamp BEFORE INSERT ON public.who FOR EACH ROW EXECUTE FUNCTION public.stamp();",
            )
            .unwrap();
        let mut op = s.connect_as(&db, "op");
        op.batch_execute("SET app.tenant = 't1'").unwrap();
        op.query_one(
            &format!(
                "SELECT count(*) FROM backup.restore($1, tables => '{{public.who}}', existing => 'append', data_only => true{extra})"
            ),
            &[&id],
        )
        .unwrap_or_else(|e| panic!("{mode}: {}", describe(&e)));
        let seen = strings(
            &mut admin,
            "SELECT DISTINCT format('%s %s %s %s', s_user, c_user, su, tenant) FROM public.who",
        );
        assert_eq!(
            seen,
            vec!["op owner_r off t1".to_string()],
            "{mode}: what user code sees during the restore"
        );
        assert_eq!(count(&mut admin, "SELECT count(*) FROM public.who"), 20);
    }
}

/// A session cannot hand its workers a superuser-only setting (attack of issue 17): before
/// PL/pgSQL is loaded in a session, anyone may `SET plpgsql.variable_conflict` (a placeholder);
/// when the library loads, PostgreSQL refuses the value of a role that is not a superuser.
/// restore(atomic => false)'s worker and restore(jobs => 2)'s workers take the session's
/// settings; they must take them in the session's name, so the worker refuses it too and the
/// operator's code (or any other role's) never runs with a setting only a superuser may choose.
#[test]
fn a_session_cannot_hand_workers_a_superuser_only_setting() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    add_operator(&mut su, "op");
    su.batch_execute("CREATE SCHEMA ops AUTHORIZATION op;")
        .unwrap();
    let mut op = s.connect_as("app", "op");
    op.batch_execute(
        "CREATE TABLE ops.seen (v text);
         CREATE FUNCTION ops.note(int) RETURNS boolean LANGUAGE plpgsql AS $f$
         BEGIN INSERT INTO ops.seen VALUES (current_setting('plpgsql.variable_conflict')); RETURN true; END $f$;
         CREATE TABLE ops.c (a int CHECK (ops.note(a)));
         INSERT INTO ops.c SELECT generate_series(1, 3);",
    )
    .unwrap();
    let id = create(&mut op, "tables => '{ops.c}'");
    drop(op);
    for extra in ["atomic => false", "atomic => false, jobs => 2"] {
        // A new session, where no PL/pgSQL has run: the SET is taken as a placeholder.
        let mut op = s.connect_as("app", "op");
        op.batch_execute(
            "SET plpgsql.variable_conflict = 'use_column';
             DROP TABLE ops.c; TRUNCATE ops.seen;",
        )
        .unwrap();
        op.query_one(
            &format!("SELECT count(*) FROM backup.restore($1, tables => '{{ops.c}}', {extra})"),
            &[&id],
        )
        .unwrap_or_else(|e| panic!("{extra}: {}", describe(&e)));
        assert_eq!(count(&mut op, "SELECT count(*) FROM ops.c"), 3, "{extra}");
        assert_eq!(
            strings(&mut op, "SELECT DISTINCT v FROM ops.seen"),
            vec!["error".to_string()],
            "{extra}: the operator's restore ran code with a superuser-only setting it chose"
        );
        // What the session itself does with the same SET: refused when PL/pgSQL loads.
        op.batch_execute("SELECT ops.note(0)").unwrap();
        assert_eq!(
            strings(&mut op, "SELECT v FROM ops.seen ORDER BY v DESC LIMIT 1"),
            vec!["error".to_string()]
        );
    }
}

/// A signed manifest is genuine, but where it lies is a claim (attack of issue 17): a whole
/// archive of another backup (this cluster's, correctly signed) copied or swapped in under an
/// id, in backup.directory, is never taken for the backup of that id. Otherwise whoever can
/// write the directory replays an old backup (or another database's) in place of the one a
/// restore asks for, and restore() re-reads the manifest after its checks, so the swap can
/// also happen between the checks and the use.
#[test]
fn a_genuine_archive_under_another_id_is_never_taken_for_that_backup() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    su.batch_execute(
        "CREATE TABLE public.old_rows (id int);
         INSERT INTO public.old_rows SELECT generate_series(1, 5);",
    )
    .unwrap();
    let old = create(&mut su, "label => 'old'");
    let dir = backup_dir(&mut su);
    let other = "20200101T000000.000000Z-replayed";
    run(Command::new("cp")
        .arg("-a")
        .arg(dir.join(&old))
        .arg(dir.join(other)));
    let rows = strings(
        &mut su,
        &format!(
            "SELECT file || ' ' || status FROM backup.verify('{other}') WHERE file = 'manifest.json'"
        ),
    );
    assert_eq!(rows, vec!["manifest.json corrupt".to_string()], "verify");
    su.batch_execute("DROP TABLE public.old_rows").unwrap();
    for extra in ["", ", dry_run => true", ", atomic => false, jobs => 2"] {
        let e = su
            .query(
                &format!("SELECT * FROM backup.restore('{other}'{extra})"),
                &[],
            )
            .expect_err(extra);
        assert_eq!(sqlstate(&e), "XX001", "{extra}: {}", describe(&e));
        assert!(
            describe(&e).contains("manifest.json"),
            "{extra}: {}",
            describe(&e)
        );
    }
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM pg_class WHERE relname = 'old_rows'"
        ),
        0
    );
}

/// An entry creates, and gives to its owner, only its own object (attack of issue 17): the
/// schema rules ("never into pg_backup's schema or a system schema") are checked on the
/// entries' schemas, so a statement of the right kind naming another schema got past them in
/// a superuser's restore: a function entry of `public` creating `pg_catalog.pwn()` (or
/// replacing a function of pg_backup's), an owner statement giving pg_backup's schema, one of
/// its functions or its catalog table to another role. Refused with 2F003, nothing changed.
#[test]
fn an_entry_creates_and_gives_away_only_its_own_object() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("");
    let mut su = s.connect("app");
    add_operator_in_public(&mut su, "op");
    let mut op = s.connect_as("app", "op");
    op.batch_execute(
        "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1';
         CREATE TABLE public.mine (a int);",
    )
    .unwrap();
    let id = create(&mut op, "");
    op.batch_execute("DROP FUNCTION public.f(); DROP TABLE public.mine;")
        .unwrap();
    let archive = backup_dir(&mut su).join(&id);
    let original: Vec<(PathBuf, Vec<u8>)> = ["manifest.json", "manifest.sha256", "manifest.sig"]
        .iter()
        .map(|f| (archive.join(f), std::fs::read(archive.join(f)).unwrap()))
        .collect();
    type Edit = fn(&mut serde_json::Value);
    let cases: Vec<(&str, Edit)> = vec![
        ("a function created in pg_catalog", |m| {
            set_sql(
                toc_entry(m, "function", "f()"),
                "CREATE FUNCTION pg_catalog.pwn() RETURNS integer LANGUAGE sql AS 'SELECT 1';",
            )
        }),
        ("a function of pg_backup replaced", |m| {
            set_sql(
                toc_entry(m, "function", "f()"),
                "CREATE OR REPLACE FUNCTION backup.wake_scheduler() RETURNS void LANGUAGE sql AS '';",
            )
        }),
        ("pg_backup's schema given away", |m| {
            toc_entry(m, "table", "mine")["owner_sql"] = "ALTER SCHEMA backup OWNER TO op;".into()
        }),
        ("a function of pg_backup given away", |m| {
            toc_entry(m, "function", "f()")["owner_sql"] =
                "ALTER FUNCTION backup.wake_scheduler() OWNER TO op;".into()
        }),
        ("a grant on pg_backup's secrets", |m| {
            m["toc"].as_array_mut().unwrap().push(serde_json::json!({
                "id": 9001, "kind": "acl", "section": "post-data", "name": "TABLE mine",
                "sql": "GRANT ALL ON TABLE backup.storage_secrets TO PUBLIC;"
            }))
        }),
        ("a grant on pg_backup's schema", |m| {
            m["toc"].as_array_mut().unwrap().push(serde_json::json!({
                "id": 9002, "kind": "acl", "section": "post-data", "name": "SCHEMA public",
                "sql": "GRANT CREATE ON SCHEMA backup TO PUBLIC;"
            }))
        }),
        ("a comment on pg_backup's catalog", |m| {
            m["toc"].as_array_mut().unwrap().push(serde_json::json!({
                "id": 9003, "kind": "comment", "section": "pre-data", "name": "TABLE mine",
                "sql": "COMMENT ON COLUMN backup.backups.id IS 'forged';"
            }))
        }),
        (
            "a function of pg_backup given away by a schema's entry",
            |m| {
                toc_entry(m, "schema", "public")["owner_sql"] =
                    "ALTER FUNCTION backup.wake_scheduler() OWNER TO op;".into()
            },
        ),
        ("pg_backup's catalog table given away", |m| {
            toc_entry(m, "table", "mine")["owner_sql"] =
                "ALTER TABLE backup.backups OWNER TO op;".into()
        }),
    ];
    let state = "SELECT (SELECT count(*) FROM pg_proc WHERE proname = 'pwn')::text
                    || ' ' || (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'backup')
                    || ' ' || (SELECT proowner::regrole::text || ':' || prosrc FROM pg_proc
                               WHERE proname = 'wake_scheduler' AND pronamespace = 'backup'::regnamespace)
                    || ' ' || (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'backup.backups'::regclass)
                    || ' ' || has_table_privilege('public', 'backup.storage_secrets', 'SELECT')::text
                    || ' ' || has_schema_privilege('public', 'backup', 'CREATE')::text
                    || ' ' || coalesce(col_description('backup.backups'::regclass, 1), '-')";
    let before = strings(&mut su, state);
    for (case, edit) in &cases {
        for (path, bytes) in &original {
            std::fs::write(path, bytes).unwrap();
        }
        tamper(&mut su, &id, edit);
        let e = su
            .query("SELECT * FROM backup.restore($1)", &[&id])
            .expect_err(case);
        assert_eq!(sqlstate(&e), "2F003", "{case}: {}", describe(&e));
        assert_eq!(strings(&mut su, state), before, "{case}: nothing changed");
    }
    // The archive as written restores.
    for (path, bytes) in &original {
        std::fs::write(path, bytes).unwrap();
    }
    register_as_is(&mut su, &id);
    su.query("SELECT * FROM backup.restore($1)", &[&id])
        .unwrap();
    assert_eq!(count(&mut su, "SELECT public.f()::bigint"), 1);
}

/// Issue 18: restore decides by the facts collect put on each TOC entry (an index build runs
/// as the extension owner, a CHECK is validated as the table's owner), so the facts are
/// checked like the SQL (issue 17): an entry whose facts are not what its statements do is
/// refused with 2F003 before anything changes. Here a constraint entry holds a CHECK calling
/// the operator's function while its facts still say PRIMARY KEY: judged by the facts alone,
/// the check would run as the restoring superuser and make the operator superuser. And an
/// archive without facts (as pg_backup 0.2.0 and earlier 0.3.0 wrote them) restores: they
/// are derived from its SQL when it is read.
#[test]
fn facts_an_entry_does_not_have_are_refused_and_archives_without_facts_restore() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut su = s.connect("app");
    su.batch_execute(
        "CREATE ROLE op LOGIN; GRANT backup_operator TO op; CREATE SCHEMA ops AUTHORIZATION op;",
    )
    .unwrap();
    let mut op = s.connect_as("app", "op");
    op.batch_execute(
        "CREATE FUNCTION ops.escalate(integer) RETURNS boolean LANGUAGE plpgsql
           AS $$BEGIN EXECUTE 'ALTER ROLE op SUPERUSER'; RETURN true; END$$;
         CREATE TABLE ops.mine (a int PRIMARY KEY, b int CHECK (b > 0),
                                c int GENERATED ALWAYS AS (b * 2) STORED);
         CREATE TABLE ops.parts (a int, at date) PARTITION BY RANGE (at);
         CREATE TABLE ops.parts_2024 PARTITION OF ops.parts FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         INSERT INTO ops.mine (a, b) SELECT i, i FROM generate_series(1, 10) i;
         INSERT INTO ops.parts VALUES (1, '2024-05-01');",
    )
    .unwrap();
    let id: String = op
        .query_one(
            "SELECT backup_id FROM backup.create(schemas => '{ops}')",
            &[],
        )
        .unwrap()
        .get(0);
    let dir = backup_dir(&mut su).join(&id);
    let names = ["manifest.json", "manifest.sha256", "manifest.sig"];
    let original: Vec<(PathBuf, Vec<u8>)> = names
        .iter()
        .map(|n| (dir.join(n), std::fs::read(dir.join(n)).unwrap()))
        .collect();
    let m: serde_json::Value = serde_json::from_slice(&original[0].1).unwrap();
    assert_eq!(m["toc_facts"], 1, "a new archive carries its facts");
    let pkey = m["toc"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "mine mine_pkey")
        .unwrap();
    assert_eq!(pkey["facts"]["constraint"]["kind"], "primary_key");
    op.batch_execute("DROP TABLE ops.mine, ops.parts").unwrap();
    let state = "SELECT coalesce(to_regclass('ops.mine')::text, '-') || ' ' || coalesce(to_regclass('ops.parts')::text, '-')";
    tamper(&mut su, &id, |m| {
        set_sql(
            toc_entry(m, "constraint", "mine mine_pkey"),
            "ALTER TABLE ONLY ops.mine ADD CONSTRAINT mine_pkey CHECK (ops.escalate(a));",
        )
    });
    let e = su
        .query("SELECT * FROM backup.restore($1)", &[&id])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "2F003", "{}", describe(&e));
    assert!(describe(&e).contains("TOC entry"), "{}", describe(&e));
    assert_eq!(superusers(&mut su), Vec::<String>::new());
    assert_eq!(strings(&mut su, state), ["- -"], "nothing changed");
    // The same archive without its facts: restored, by the operator and by a superuser.
    for (path, bytes) in &original {
        std::fs::write(path, bytes).unwrap();
    }
    tamper(&mut su, &id, |m| {
        m.as_object_mut().unwrap().remove("toc_facts");
        for e in m["toc"].as_array_mut().unwrap() {
            e.as_object_mut().unwrap().remove("facts");
        }
    });
    let json = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    assert!(!json.contains("\"facts\"") && !json.contains("toc_facts"));
    for (who, c) in [("op", &mut op), ("superuser", &mut su)] {
        let bad = strings(
            c,
            &format!("SELECT object || ' ' || status FROM backup.restore('{id}', existing => 'drop', confirm => true) WHERE status = 'failed'"),
        );
        assert_eq!(bad, Vec::<String>::new(), "{who}");
        assert_eq!(
            strings(
                c,
                "SELECT count(*) || ' ' || sum(c) FROM ops.mine UNION ALL SELECT count(*)::text FROM ops.parts"
            ),
            ["10 110", "1"],
            "{who}"
        );
        assert_eq!(
            strings(
                c,
                // 18 records NOT NULL as constraints too (contype 'n'); 15 has none.
                "SELECT conname || ' ' || contype::text FROM pg_constraint WHERE conrelid = 'ops.mine'::regclass AND contype <> 'n' ORDER BY 1"
            ),
            ["mine_b_check c", "mine_pkey p"],
            "{who}"
        );
    }
    assert_eq!(superusers(&mut su), Vec::<String>::new());
}

/// The `statistics_data` entry of table `name` in a manifest.
fn statistics_entry<'a>(m: &'a mut serde_json::Value, name: &str) -> &'a mut serde_json::Value {
    toc_entry(m, "statistics_data", name)
}

/// Issue 19: an archive's planner statistics are claims. Values are passed to
/// pg_restore_relation_stats / pg_restore_attribute_stats as typed parameters, so text that
/// looks like SQL is a value the server refuses (the table is then analyzed); an entry that
/// carries SQL is refused before anything changes; and statistics are set only with the
/// rights of the table's owner: an operator who may truncate and fill another role's table
/// cannot give it statistics (pg_restore_*_stats needs MAINTAIN, which the owner has).
#[test]
#[cfg_attr(
    not(feature = "pg18"),
    ignore = "needs PostgreSQL 18: cargo test --no-default-features --features pg18 with PG_CONFIG of 18"
)]
fn postgresql_18_a_lying_statistics_entry_gets_nothing_beyond_the_owners_rights() {
    if !enabled() {
        return;
    }
    let s = Server::start_in_env_locale("autovacuum = off");
    let mut su = s.connect("app");
    let version: i32 = text(&mut su, "SHOW server_version_num").parse().unwrap();
    assert!(
        version >= 180000,
        "this test needs PostgreSQL 18, the server is {version}"
    );
    su.batch_execute(
        "CREATE TABLE t (a int, b text);
         INSERT INTO t SELECT g % 100, 'v' || g FROM generate_series(1, 5000) g;
         ANALYZE t;
         CREATE TABLE keep (x int); INSERT INTO keep VALUES (1);",
    )
    .unwrap();
    let id = create(&mut su, "tables => '{public.t}'");
    let analyze_count = |s: &Server, db: &str| -> i64 {
        count(
            &mut s.connect(db),
            "SELECT coalesce(max(analyze_count), 0) FROM pg_stat_user_tables WHERE relname = 't'",
        )
    };
    // (1) SQL-looking text in values of every type.
    for (n, (arg, value)) in [
        ("most_common_vals", "{1}'); DROP TABLE keep; --"),
        ("null_frac", "0); DROP TABLE keep; --"),
        ("histogram_bounds", "'); SELECT pg_sleep(10); --"),
    ]
    .into_iter()
    .enumerate()
    {
        let forged = format!("forged_{n}");
        let mut c = fresh_database(&s, &forged, "");
        c.batch_execute("CREATE TABLE keep (x int)").unwrap();
        c.batch_execute("SELECT * FROM backup.rescan()").unwrap();
        tamper(&mut c, &id, |m| {
            let e = statistics_entry(m, "t");
            for col in e["statistics"]["columns"].as_array_mut().unwrap() {
                col[arg] = serde_json::Value::String(value.to_string());
            }
        });
        let rows = strings(
            &mut c,
            &format!(
                "SELECT action || ' ' || status || ' ' || coalesce(detail, '') FROM backup.restore('{id}') WHERE kind = 'statistics_data'"
            ),
        );
        assert_eq!(rows.len(), 1, "{arg}: {rows:#?}");
        assert!(
            rows[0].starts_with("skip warning") && rows[0].contains("analyzed instead"),
            "{arg}: {rows:#?}"
        );
        assert_eq!(count(&mut c, "SELECT count(*) FROM t"), 5000);
        assert_eq!(
            count(
                &mut c,
                "SELECT count(*) FROM pg_class WHERE relname = 'keep'"
            ),
            1
        );
        c.batch_execute("SELECT pg_stat_force_next_flush()")
            .unwrap();
        assert_eq!(analyze_count(&s, &forged), 1, "{arg}: t was not analyzed");
        // What ANALYZE found, not the claim.
        assert_eq!(
            count(
                &mut c,
                "SELECT count(*) FROM pg_stats WHERE tablename = 't' AND null_frac <> 0"
            ),
            0
        );
    }
    // (2) An entry that carries a statement: refused (2F003) before anything changes.
    let mut c = fresh_database(&s, "forged_sql", "");
    c.batch_execute("SELECT * FROM backup.rescan()").unwrap();
    tamper(&mut c, &id, |m| {
        set_sql(statistics_entry(m, "t"), "DROP TABLE public.keep;");
    });
    c.batch_execute("CREATE TABLE keep (x int)").unwrap();
    expect_err(
        &mut c,
        &format!("SELECT * FROM backup.restore('{id}')"),
        "2F003",
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM pg_class WHERE relname IN ('keep', 't')"
        ),
        1
    );

    // (3) An operator's own backup, aimed at another role's table it may truncate and fill:
    // the rows go in with its rights; its statistics do not (it is not the owner).
    add_operator(&mut su, "mallory");
    su.batch_execute(
        "GRANT CREATE ON DATABASE app TO mallory;
         CREATE ROLE payroll; GRANT CREATE ON SCHEMA public TO payroll;
         SET ROLE payroll;
         CREATE TABLE public.salaries (who text, amount int);
         RESET ROLE;
         GRANT SELECT, INSERT, TRUNCATE ON public.salaries TO mallory;",
    )
    .unwrap();
    let mut m = s.connect_as("app", "mallory");
    m.batch_execute(
        "CREATE SCHEMA m; CREATE TABLE m.salaries (who text, amount int);
         INSERT INTO m.salaries SELECT 'w' || g, g FROM generate_series(1, 2000) g;
         ANALYZE m.salaries;",
    )
    .unwrap();
    let mid = create(&mut m, "schemas => '{m}'");
    tamper(&mut su, &mid, |j| {
        for col in statistics_entry(j, "salaries")["statistics"]["columns"]
            .as_array_mut()
            .unwrap()
        {
            col["n_distinct"] = serde_json::Value::String("-0.125".into());
        }
        statistics_entry(j, "salaries")["statistics"]["relation"]["reltuples"] =
            serde_json::Value::String("123456789".into());
    });
    let rows = strings(
        &mut m,
        &format!(
            "SELECT kind || ' ' || action || ' ' || status || ' ' || coalesce(detail, '') FROM backup.restore('{mid}',
               schemas => '{{m}}', target_schema => 'public', existing => 'truncate', confirm => true)
             WHERE kind = 'statistics_data'"
        ),
    );
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert!(
        rows[0].starts_with("statistics_data skip warning") && rows[0].contains("owner"),
        "{rows:#?}"
    );
    assert_eq!(count(&mut su, "SELECT count(*) FROM public.salaries"), 2000);
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM pg_stats WHERE schemaname = 'public' AND tablename = 'salaries' AND n_distinct = -0.125"
        ),
        0
    );
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM pg_class WHERE oid = 'public.salaries'::regclass AND reltuples = 123456789"
        ),
        0
    );
}

/// Attack of issue 18's facts (stop 16): restore splits a CHECK (or foreign key) into `ADD
/// CONSTRAINT ... NOT VALID`, run as the caller (a superuser's restore: as the superuser), and
/// `VALIDATE CONSTRAINT`, run as the table's owner. The facts said whether to validate, and
/// were checked against the parsed statement; but the split statement was cut from the text:
/// an entry whose text ends in a comment (`CHECK (f(a))\n--;`) got its appended NOT VALID
/// inside the comment, and a text ending in `-- NOT ENFORCED;` was taken for 18's NOT
/// ENFORCED and run whole. Either way the rows were checked, f() among them, by the restoring
/// superuser: the table's owner became superuser. The text that runs as the caller is now
/// parsed again: one ADD CONSTRAINT of the entry's constraint, NOT VALID, else 2F003.
#[test]
fn a_constraint_cut_not_valid_evaluates_nothing_whatever_its_text_ends_with() {
    if !enabled() {
        return;
    }
    let s = Server::start("");
    let mut su = s.connect("app");
    su.batch_execute(
        "CREATE ROLE op LOGIN; GRANT backup_operator TO op; CREATE SCHEMA ops AUTHORIZATION op;",
    )
    .unwrap();
    let mut op = s.connect_as("app", "op");
    op.batch_execute(
        "CREATE FUNCTION ops.escalate(integer) RETURNS boolean LANGUAGE plpgsql
           AS $$BEGIN EXECUTE 'ALTER ROLE op SUPERUSER'; RETURN true; END$$;
         CREATE TABLE ops.t (a int);
         INSERT INTO ops.t SELECT generate_series(1, 3);
         ALTER TABLE ops.t ADD CONSTRAINT c CHECK (ops.escalate(a)) NOT VALID;",
    )
    .unwrap();
    let id: String = op
        .query_one(
            "SELECT backup_id FROM backup.create(schemas => '{ops}')",
            &[],
        )
        .unwrap()
        .get(0);
    let dir = backup_dir(&mut su).join(&id);
    let names = ["manifest.json", "manifest.sha256", "manifest.sig"];
    let original: Vec<(PathBuf, Vec<u8>)> = names
        .iter()
        .map(|n| (dir.join(n), std::fs::read(dir.join(n)).unwrap()))
        .collect();
    op.batch_execute("DROP TABLE ops.t").unwrap();
    // The archive as it was written restores, the CHECK NOT VALID as it was, never evaluated.
    let bad = strings(
        &mut su,
        &format!(
            "SELECT object || ' ' || status FROM backup.restore('{id}') WHERE status = 'failed'"
        ),
    );
    assert_eq!(bad, Vec::<String>::new());
    assert_eq!(
        strings(
            &mut su,
            "SELECT convalidated::text FROM pg_constraint WHERE conname = 'c' AND conrelid = 'ops.t'::regclass"
        ),
        ["false"]
    );
    assert_eq!(superusers(&mut su), Vec::<String>::new());
    op.batch_execute("DROP TABLE ops.t").unwrap();
    for ending in ["\n--;", " -- NOT ENFORCED;", " /* NOT VALID */ --;"] {
        for (path, bytes) in &original {
            std::fs::write(path, bytes).unwrap();
        }
        // The facts say what the statement is (a CHECK named c, validated: the parser reads
        // it so); only the text's end is a comment's.
        tamper(&mut su, &id, |m| {
            let e = toc_entry(m, "check_constraint", "t c");
            set_sql(
                e,
                &format!("ALTER TABLE ops.t ADD CONSTRAINT c CHECK (ops.escalate(a)){ending}"),
            );
            e["facts"]["constraint"]
                .as_object_mut()
                .unwrap()
                .remove("validated");
        });
        let result = su.query("SELECT * FROM backup.restore($1)", &[&id]);
        assert_eq!(
            superusers(&mut su),
            Vec::<String>::new(),
            "{ending:?}: the CHECK ran as the restoring superuser"
        );
        let e = result.unwrap_err();
        assert_eq!(sqlstate(&e), "2F003", "{ending:?}: {}", describe(&e));
        assert!(describe(&e).contains("TOC entry"), "{}", describe(&e));
        assert_eq!(
            strings(&mut su, "SELECT coalesce(to_regclass('ops.t')::text, '-')"),
            ["-"],
            "{ending:?}: nothing changed"
        );
    }
}
