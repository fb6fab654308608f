//! Cross-version restore (issue 19): an archive written by pg_backup on PostgreSQL 15 restores
//! on PostgreSQL 18, and an archive of 18 is refused on 15.
//!
//! - PostgreSQL 15's regression database (its pg_regress `parallel_schedule`, as
//!   tests/regression.rs builds it) is backed up by pg_backup on a 15 server in every archive
//!   format and restored by pg_backup on an 18 server (the sql format also through 18's psql).
//!   Each copy is judged the way users upgrade today, which is the bar: 18's `pg_dump` dumping
//!   the 15 server and 18's `pg_restore` restoring that into a fresh 18 database (roles first,
//!   from 18's `pg_dumpall --globals-only`, for both). The source is what 18's
//!   `pg_dump --schema-only` says of the 15 database, and its rows as read on 15; pg_backup may
//!   leave no difference from it (schema entries, rows, sequence values, large objects) that
//!   the bar does not leave too. Both counts are reported (target/tmp/cross-version-report.txt).
//! - An archive of 18 on the 15 server: every way of restoring it (atomic, dry_run,
//!   atomic => false, jobs => 2, from a storage target) is refused with SQLSTATE 0A000 and a
//!   HINT naming both versions, and the 15 database is unchanged.
//!
//! Needs both servers: PostgreSQL 15 from $PG_CONFIG and 18 from $PG_CONFIG_18 (default: what
//! `bash scripts/pg-build.sh --path 18` prints), pg_backup installed into both, and 15's
//! pg_regress build of scripts/regress-build.sh ($PG_BACKUP_REGRESS_BUILD or
//! target/regress-build), and 18's build tree for its regress.so
//! ($PG_BACKUP_REGRESS_BUILD_18, else `scripts/pg-build.sh --regress-dir 18`): the regression
//! database's C functions name one folder of links, to 15's modules while 15 builds it and to
//! 18's while 18 restores it (as pg_upgrade's test does). `make test-cross-version` does all
//! of it.
//!
//! What 18 cannot take of 15's regression database either way (an ICU collation in an 18
//! built without ICU; a function of 15's regress.so that 18's does not have) fails in the bar
//! too: such an object, failing with the same error there, is reported and not held against
//! pg_backup (an atomic restore stops at the first one, so the copy judged is that of
//! on_error => 'continue'); the sql script goes through psql without ON_ERROR_STOP, as
//! pg_restore goes on.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;
use support::*;

/// The bin directory of PostgreSQL 18 ($PG_CONFIG_18, else scripts/pg-build.sh's path).
fn bindir_18() -> PathBuf {
    let pg_config = std::env::var("PG_CONFIG_18").unwrap_or_else(|_| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-build.sh");
        run(Command::new("bash").arg(script).args(["--path", "18"]))
            .trim()
            .to_string()
    });
    let out = Command::new(&pg_config)
        .arg("--bindir")
        .output()
        .unwrap_or_else(|e| {
            panic!("{pg_config}: {e}: this test needs PostgreSQL 18 (make test-cross-version builds it and installs pg_backup into it)")
        });
    assert!(out.status.success(), "{pg_config} --bindir failed");
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let version = run(Command::new(dir.join("postgres")).arg("--version"));
    assert!(
        version.contains(" 18"),
        "PG_CONFIG_18 must be PostgreSQL 18's pg_config: {version}"
    );
    dir
}

/// A server of PostgreSQL 18 (pg_backup preloaded), no database `app`.
fn server_18(bindir: &Path) -> Server {
    Server::builder()
        .bindir(bindir.to_path_buf())
        .without_app()
        .start()
}

/// The server's major version, as it says.
fn major(s: &Server) -> i32 {
    let n: String = one(&mut s.connect("postgres"), "SHOW server_version_num");
    n.parse::<i32>().unwrap() / 10000
}

/// The PostgreSQL 15 source tree in which scripts/regress-build.sh built pg_regress.
fn regress_build() -> PathBuf {
    let dir = std::env::var_os("PG_BACKUP_REGRESS_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/regress-build"));
    assert!(
        dir.join("src/test/regress/pg_regress").exists(),
        "{}: no pg_regress; run `bash scripts/regress-build.sh` (make test-cross-version does)",
        dir.display()
    );
    dir
}

/// The C modules the regression database's functions name (by their path in `dlpath`).
const REGRESS_MODULES: [&str; 3] = ["regress.so", "autoinc.so", "refint.so"];

/// `dir` holds links to the regression modules of one version: 15's while 15 builds the
/// database, 18's when 18 restores it (the functions name the path of `dir`, as pg_upgrade's
/// own test points the old cluster's module paths at the new version's modules).
fn link_modules(dir: &Path, regress_so: &Path, spi_dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for m in REGRESS_MODULES {
        let to = if m == "regress.so" {
            regress_so.to_path_buf()
        } else {
            spi_dir.join(m)
        };
        assert!(to.exists(), "{} is missing", to.display());
        let link = dir.join(m);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&to, &link).unwrap();
    }
}

/// PostgreSQL 18's build tree (regress.so) and pkglibdir (autoinc.so, refint.so: contrib/spi
/// from 16 on).
fn modules_18(bin18: &Path) -> (PathBuf, PathBuf) {
    let tree = std::env::var("PG_BACKUP_REGRESS_BUILD_18").unwrap_or_else(|_| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-build.sh");
        run(Command::new("bash")
            .arg(script)
            .args(["--regress-dir", "18"]))
        .trim()
        .to_string()
    });
    let pkglibdir = run(Command::new(bin18.join("pg_config")).arg("--pkglibdir"));
    (
        Path::new(&tree).join("src/test/regress/regress.so"),
        PathBuf::from(pkglibdir.trim()),
    )
}

/// pg_regress `parallel_schedule` of 15 against the 15 server `s`: database `regression`
/// (the suite's own pass/fail is not this test's business, the database is). Its C modules
/// are loaded from `dlpath`.
fn build_regression_database(s: &Server, build: &Path, dlpath: &Path, out: &Path) -> String {
    let regress = build.join("src/test/regress");
    link_modules(dlpath, &regress.join("regress.so"), &regress);
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).unwrap();
    let res = Command::new(regress.join("pg_regress"))
        .arg(format!("--dlpath={}", dlpath.display()))
        .arg(format!("--bindir={}", s.bin("").display()))
        .arg(format!("--host={}", s.socket.display()))
        .arg(format!("--port={}", s.port))
        .arg(format!(
            "--schedule={}",
            regress.join("parallel_schedule").display()
        ))
        .arg("--max-concurrent-tests=20")
        .arg(format!("--inputdir={}", regress.display()))
        .arg(format!("--outputdir={}", out.display()))
        .env_remove("PGDATABASE")
        .env_remove("PGOPTIONS")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&res.stdout);
    text.lines()
        .rev()
        .find(|l| l.contains("tests passed") || l.contains("tests failed"))
        .map(|l| l.trim().trim_matches('=').trim().to_string())
        .unwrap_or_else(|| {
            panic!(
                "pg_regress did not run: {text}{}",
                String::from_utf8_lossy(&res.stderr)
            )
        })
}

/// A program of the installation `bindir`, pointed at server `s`.
fn client_of(bindir: &Path, program: &str, s: &Server) -> Command {
    let mut c = Command::new(bindir.join(program));
    c.arg("-h").arg(&s.socket).args(["-p", &s.port.to_string()]);
    c
}

/// The roles (and tablespaces) of `from` into `to`, as users upgrade: `pg_dumpall
/// --globals-only` of `to`'s version, loaded with its psql. Errors other than "already exists"
/// (the bootstrap superuser) are returned.
fn copy_globals(from: &Server, to: &Server) -> Vec<String> {
    let globals = run(client_of(&to.bin(""), "pg_dumpall", from).arg("--globals-only"));
    let mut psql = to
        .client("psql")
        .args(["-X", "-q", "-d", "postgres"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    psql.stdin
        .take()
        .unwrap()
        .write_all(globals.as_bytes())
        .unwrap();
    let out = psql.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("ERROR") && !l.contains("already exists"))
        .map(str::to_string)
        .collect()
}

/// The cluster's public signing key (`backup.signing_key()`), asked in `db`.
fn public_key(s: &Server, db: &str) -> String {
    text(
        &mut s.connect(db),
        "SELECT public_key FROM backup.signing_key()",
    )
}

/// Copy archive `id` of `from`'s backup directory into `to`'s.
fn copy_archive(from: &Server, to: &Server, id: &str) {
    std::fs::create_dir_all(to.backup_dir()).unwrap();
    run(Command::new("cp")
        .arg("-a")
        .arg(from.backup_dir().join(id))
        .arg(to.backup_dir()));
}

/// A new database `db` (from template0) with pg_backup, trusting the archives signed with
/// `key` (the other server's).
fn fresh_trusting(s: &Server, db: &str, key: &str) -> postgres::Client {
    s.create_db(db);
    let mut c = s.connect(db);
    c.batch_execute("CREATE EXTENSION pg_backup").unwrap();
    c.execute("SELECT backup.trust_key('other-server', $1)", &[&key])
        .unwrap();
    c
}

/// `backup.restore(id, on_error => ...{more})` into a new database `db` on `s`.
fn restore_into(
    s: &Server,
    db: &str,
    id: &str,
    key: &str,
    on_error: &str,
    more: &str,
) -> RestoreOutcome {
    let mut c = fresh_trusting(s, db, key);
    restore_in(&mut c, id, on_error, more)
}

/// A sql-format archive's script (in `s`'s backup directory) through `s`'s own psql into a
/// new database without pg_backup, going on after an error as pg_restore does (what 18
/// cannot take of 15's regression database, e.g. an ICU collation in a build without ICU,
/// fails there too); psql's errors.
fn script_through_psql(s: &Server, db: &str, id: &str) -> Vec<String> {
    s.create_db(db);
    let dir = s.backup_dir().join(id);
    let script = ["backup.sql.zst", "backup.sql.gz", "backup.sql"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no backup.sql[.zst|.gz] in {}", dir.display()));
    let cat = match script.extension().and_then(|e| e.to_str()) {
        Some("gz") => "gunzip -c",
        Some("zst") => "zstd -dc",
        _ => "cat",
    };
    let sh = format!(
        "{cat} '{}' | '{}' -X -q -h '{}' -p {} -d {db} 2>&1 >/dev/null",
        script.display(),
        s.bin("psql").display(),
        s.socket.display(),
        s.port
    );
    let out = Command::new("sh").args(["-c", &sh]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("ERROR:"))
        .map(str::to_string)
        .collect()
}

/// The source as the bar sees it: 18's `pg_dump --schema-only` of the 15 database, its rows
/// as read on 15.
fn source_snapshot(s15: &Server, db: &str, pg_dump_18: &Path, json_null_is_null: bool) -> Snapshot {
    let mut schema = SchemaDump::take_with(s15, db, pg_dump_18);
    for bodies in schema.entries.values_mut() {
        for body in bodies.iter_mut() {
            *body = body.iter().filter_map(|l| without_attver(l)).collect();
        }
    }
    Snapshot {
        schema,
        data: data_fingerprint(s15, db, json_null_is_null),
    }
}

/// A line of 18's pg_dump of a 15 server without the server's own column option `pg_attver`
/// (Debian's 15.20 sets it on every column it creates; 15's pg_dump and pg_backup leave it
/// out, a restored column gets its own; 18.6's pg_dump does not know it and dumps it as
/// `ALTER TABLE ONLY t ALTER COLUMN c SET (pg_attver=N);`, which 18 refuses). None when
/// nothing else is left of the line.
fn without_attver(line: &str) -> Option<String> {
    let Some(at) = line.find(" SET (") else {
        return Some(line.to_string());
    };
    if !line.starts_with("ALTER TABLE ONLY ") || !line.ends_with(");") {
        return Some(line.to_string());
    }
    let options = &line[at + 6..line.len() - 2];
    let kept: Vec<&str> = options
        .split(", ")
        .filter(|o| !o.starts_with("pg_attver="))
        .collect();
    if kept.is_empty() {
        return None;
    }
    Some(format!("{} SET ({});", &line[..at], kept.join(", ")))
}

/// The message of an error as a result row's detail or a failure shows it (before
/// " (SQLSTATE"), found among the bar's errors: the same object failed the same way there.
fn bar_failed_alike(text: &str, bar_errors: &[String]) -> bool {
    let msg = match text.rfind("ERROR:  ") {
        Some(i) => &text[i + 8..],
        None => {
            let msg = text.split(" (SQLSTATE").next().unwrap_or(text);
            let msg = msg.rsplit(": failed ").next().unwrap_or(msg);
            msg.split_once(": ")
                .filter(|(code, _)| code.len() == 5)
                .map_or(msg, |(_, m)| m)
        }
    }
    .trim();
    !msg.is_empty() && bar_errors.iter().any(|l| l.ends_with(msg))
}

/// A table's rows that pg_backup could not load because the table's CREATE failed (its data
/// row: `table_data S.T (load): failed table S.T was not restored: ...`) are lost alike when
/// the bar's own load of that table failed because the table does not exist (`relation "S.T"
/// does not exist`): both restores lack the table and its rows, as the CREATE failed alike
/// (judged by [`bar_failed_alike`] on the CREATE's own row). A data row that failed for any
/// other reason, or a table the bar did load, is never excused.
fn rows_lost_alike(text: &str, bar_errors: &[String]) -> bool {
    let Some(rest) = text.strip_prefix("table_data ") else {
        return false;
    };
    let Some((table, _)) = rest.split_once(" (load): failed table ") else {
        return false;
    };
    if !rest.contains(&format!("failed table {table} was not restored")) {
        return false;
    }
    let missing = format!("ERROR:  relation \"{table}\" does not exist");
    bar_errors.iter().any(|l| l.ends_with(&missing))
}

#[test]
fn rows_are_lost_alike_only_for_a_table_the_bar_could_not_create_either() {
    let bar = vec!["psql:x.sql:10: ERROR:  relation \"public.t\" does not exist".to_string()];
    let lost = "table_data public.t (load): failed table public.t was not restored: its rows were not loaded (SQLSTATE 42704)";
    assert!(rows_lost_alike(lost, &bar));
    let other = lost.replace("public.t", "public.u");
    assert!(!rows_lost_alike(&other, &bar));
    let other_reason =
        "table_data public.t (load): failed invalid input syntax for type integer (SQLSTATE 22P02)";
    assert!(!rows_lost_alike(other_reason, &bar));
}

#[test]
fn the_regression_database_of_15_restores_on_18_as_well_as_with_pg_dump_and_pg_restore_of_18() {
    if !enabled() {
        return;
    }
    let t_all = Instant::now();
    let build = regress_build();
    let bin18 = bindir_18();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let s15 = Server::builder()
        .conf("max_prepared_transactions = 2")
        .without_app()
        .start();
    assert_eq!(major(&s15), 15, "PG_CONFIG must be PostgreSQL 15's");
    let s18 = server_18(&bin18);
    assert_eq!(major(&s18), 18);

    let t0 = Instant::now();
    let dlpath = tmp.join("cross-version-modules");
    let suite = build_regression_database(&s15, &build, &dlpath, &tmp.join("pg_regress-15"));
    eprintln!(
        "pg_regress parallel_schedule of 15: {suite} ({:.0} s)",
        t0.elapsed().as_secs_f64()
    );
    let mut c = s15.connect("regression");
    let tables = count(
        &mut c,
        "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND oid >= 16384",
    );
    assert!(tables > 100, "the regression database has {tables} tables");
    c.batch_execute("CREATE EXTENSION pg_backup").unwrap();
    drop(c);

    // The roles of the 15 cluster, on 18 (as an upgrade with pg_dumpall --globals-only does:
    // pg_dump and pg_backup carry a database, not the cluster's roles).
    let global_errors = copy_globals(&s15, &s18);
    assert!(
        global_errors.is_empty(),
        "pg_dumpall --globals-only of 18 from 15, loaded on 18: {global_errors:?}"
    );

    // Every archive first (the 15 server's key exists after the first backup).
    let t0 = Instant::now();
    let mut ids = Vec::new();
    for format in Format::ALL {
        let id = create_backup(&s15, "regression", format).unwrap_or_else(|e| panic!("{e}"));
        copy_archive(&s15, &s18, &id);
        ids.push((format, id));
    }
    eprintln!(
        "backup.create() on 15 in {} formats: {:.0} s",
        ids.len(),
        t0.elapsed().as_secs_f64()
    );
    let key15 = public_key(&s15, "regression");

    // The bar: 18's pg_dump of the 15 server, 18's pg_restore into a fresh 18 database.
    let pg_dump_18 = bin18.join("pg_dump");
    let source = source_snapshot(&s15, "regression", &pg_dump_18, false);
    let t0 = Instant::now();
    let dump = s18.dir.path().join("regression-15.dump");
    run(client_of(&bin18, "pg_dump", &s15)
        .args(["-Fc", "--exclude-schema=backup", "-d", "regression", "-f"])
        .arg(&dump));
    let json_source = source_snapshot(&s15, "regression", &pg_dump_18, true);
    // Everything read on 15 is read: from now on the functions of C find 18's modules at the
    // paths the database names.
    let (regress_18, spi_18) = modules_18(&bin18);
    link_modules(&dlpath, &regress_18, &spi_18);
    s18.create_db("via_pg_dump");
    s18.connect("via_pg_dump")
        .batch_execute("CREATE EXTENSION pg_backup")
        .unwrap();
    // 18's pg_restore of the dump as a script, without the pg_attver options 18 refuses
    // (see without_attver: left in, they lose every table of 15.20 with its dependents), run
    // by 18's psql going on after an error as pg_restore does.
    let script = s18.dir.path().join("regression-15.sql");
    run(s18.client("pg_restore").arg("-f").arg(&script).arg(&dump));
    let text = std::fs::read_to_string(&script).unwrap();
    let mut kept = String::with_capacity(text.len());
    for line in text.lines() {
        if let Some(l) = without_attver(line) {
            kept.push_str(&l);
            kept.push('\n');
        }
    }
    std::fs::write(&script, kept).unwrap();
    let out = s18
        .client("psql")
        .args(["-X", "-q", "-d", "via_pg_dump", "-f"])
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let pg_restore_errors: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("ERROR:"))
        .map(str::to_string)
        .collect();
    let seconds = t0.elapsed().as_secs_f64();
    let bar_copy = Snapshot::take(&s18, "via_pg_dump", false);
    let bar = differences(&source, &bar_copy);
    let json_bar = differences(&json_source, &Snapshot::take(&s18, "via_pg_dump", true));
    let mut verdicts = vec![Verdict {
        how: format!(
            "pg_dump -Fc of 18 from the 15 server | pg_restore of 18 (the bar; pg_attver left out): {} differences from the source",
            bar.len()
        ),
        seconds,
        failure: None,
        problems: pg_restore_errors.clone(),
        differences: bar.clone(),
        in_all: String::new(),
        moved: moved_entries(&source.schema, &bar_copy.schema),
    }];
    // Every difference a restore leaves (excused or not), for the report.
    let mut all = vec![("the bar".to_string(), bar.clone())];

    let judge = |how: String,
                 target: &str,
                 format: Format,
                 t0: Instant,
                 failure: Option<String>,
                 problems: Vec<String>,
                 all: &mut Vec<(String, Vec<Difference>)>| {
        let json = format == Format::Json;
        let (source, bar) = if json {
            (&json_source, &json_bar)
        } else {
            (&source, &bar)
        };
        let copy = Snapshot::take(&s18, target, json);
        let every = differences(source, &copy);
        let not_excused = not_left_by(&every, bar);
        // An object that failed here as it failed in the bar (18 cannot take it either way:
        // a C module of 15 that 18's does not have, ICU in a build without it) is reported,
        // not held against pg_backup; the differences it leaves are judged as any others.
        let alike = |t: &String| {
            bar_failed_alike(t, &pg_restore_errors) || rows_lost_alike(t, &pg_restore_errors)
        };
        let failed_alike = problems.iter().filter(|p| alike(p)).count();
        let problems: Vec<String> = problems.into_iter().filter(|p| !alike(p)).collect();
        // Only a restore judged by its on_error => 'continue' run may have stopped at one.
        let retried = how.contains("[aborted;");
        let aborted_alike = retried && failure.as_ref().is_some_and(alike);
        let failure = failure.filter(|f| !(retried && alike(f)));
        let how = format!(
            "{how}: {} differences from the source, {} of them not left by the bar; {failed_alike} objects failed as in the bar{}",
            every.len(),
            not_excused.len(),
            if aborted_alike {
                " (the atomic restore stopped at one of them)"
            } else {
                ""
            }
        );
        all.push((how.clone(), every));
        Verdict {
            how,
            seconds: t0.elapsed().as_secs_f64(),
            failure,
            problems,
            differences: not_excused,
            in_all: String::new(),
            moved: moved_entries(&source.schema, &copy.schema),
        }
    };

    for (format, id) in &ids {
        let format = *format;
        let t0 = Instant::now();
        let target = format!("via_pg_backup_{}", format.name());
        let how = format!(
            "backup.restore() on 18 of the 15 archive of format '{}'",
            format.name()
        );
        let outcome = restore_into(&s18, &target, id, &key15, "abort", "");
        if let Some(err) = outcome.error {
            let more = restore_into(&s18, &target, id, &key15, "continue", "");
            let mut problems = more.problems;
            if let Some(e) = more.error {
                problems.insert(0, format!("even with on_error => 'continue': {e}"));
            }
            verdicts.push(judge(
                format!("{how} [aborted; the differences are those of on_error => 'continue']"),
                &target,
                format,
                t0,
                Some(err),
                problems,
                &mut all,
            ));
        } else {
            verdicts.push(judge(
                how,
                &target,
                format,
                t0,
                None,
                outcome.problems,
                &mut all,
            ));
        }
        if format == Format::Native {
            let t0 = Instant::now();
            let target = "via_pg_backup_jobs_2";
            let jobs = ", atomic => false, jobs => 2";
            let how =
                "backup.restore(atomic => false, jobs => 2) on 18 of the 15 archive of format 'native'";
            let outcome = restore_into(&s18, target, id, &key15, "abort", jobs);
            // Judged as the atomic restores are: stopped by an object 18 cannot take, the
            // restore is run again going on after errors, and that run's differences count.
            if let Some(err) = outcome.error {
                let more = restore_into(&s18, target, id, &key15, "continue", jobs);
                let mut problems = more.problems;
                if let Some(e) = more.error {
                    problems.insert(0, format!("even with on_error => 'continue': {e}"));
                }
                verdicts.push(judge(
                    format!("{how} [aborted; the differences are those of on_error => 'continue']"),
                    target,
                    format,
                    t0,
                    Some(err),
                    problems,
                    &mut all,
                ));
            } else {
                verdicts.push(judge(
                    how.into(),
                    target,
                    format,
                    t0,
                    None,
                    outcome.problems,
                    &mut all,
                ));
            }
        }
        if format == Format::Sql {
            let t0 = Instant::now();
            let errors = script_through_psql(&s18, "via_psql_script", id);
            verdicts.push(judge(
                "the 15 archive's sql script through 18's psql (no pg_backup)".into(),
                "via_psql_script",
                format,
                t0,
                None,
                errors,
                &mut all,
            ));
        }
    }

    let mut report = format!(
        "PostgreSQL 15's regression database ({suite}), backed up by pg_backup on 15, restored on 18;\n\
         the source is 18's pg_dump --schema-only of the 15 database and its rows on 15\n"
    );
    for v in &verdicts {
        report.push_str(&format!("\n===== {}\n", v.summary()));
        report.push_str(&detail(&v.differences));
    }
    report.push_str("\n\n##### every difference from the source, excused or not\n");
    for (how, diffs) in &all {
        report.push_str(&format!("\n===== {how}\n{}\n", summarize(diffs)));
        report.push_str(&detail(diffs));
    }
    let file = tmp.join("cross-version-report.txt");
    std::fs::write(&file, &report).unwrap();
    eprintln!(
        "every difference: {} ({:.0} s in all)",
        file.display(),
        t_all.elapsed().as_secs_f64()
    );
    assert_verdicts("the regression database of 15 restored on 18", &verdicts);
}

/// What a database holds that a restore could change: its relations, types, functions and
/// schemas (names), and pg_backup's restore history.
fn state(c: &mut postgres::Client) -> (Vec<String>, Vec<String>) {
    let objects = strings(
        c,
        "SELECT format('%s %s', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
         UNION ALL SELECT 'type ' || typname FROM pg_type WHERE typnamespace = 'public'::regnamespace
         UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
         UNION ALL SELECT 'schema ' || nspname FROM pg_namespace
         ORDER BY 1",
    );
    let restores = strings(
        c,
        "SELECT format('%s %s', backup_id, status) FROM backup.restores ORDER BY id",
    );
    (objects, restores)
}

#[test]
fn an_archive_of_18_is_refused_on_15_before_anything_changes() {
    if !enabled() {
        return;
    }
    let bin18 = bindir_18();
    let s18 = Server::builder().bindir(bin18.clone()).start();
    let s15 = Server::start("");
    assert_eq!((major(&s15), major(&s18)), (15, 18));
    let mut c18 = s18.connect("app");
    c18.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 100) g;
         CREATE SCHEMA s2; CREATE TABLE s2.u (a int);",
    )
    .unwrap();
    let id = create(&mut c18, "label => 'on-18'");
    let key18 = public_key(&s18, "app");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s18.backup_dir().join(&id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["server_version_num"].as_u64().map(|n| n / 10000),
        Some(18),
        "the manifest records the server's version: {manifest}"
    );
    assert!(manifest["server_version"]
        .as_str()
        .unwrap()
        .starts_with("18."));

    let mut c15 = s15.connect("app");
    c15.execute("SELECT backup.trust_key('pg18', $1)", &[&key18])
        .unwrap();
    let before = state(&mut c15);
    let refused = |c15: &mut postgres::Client, how: &str, args: &str| {
        let e = expect_err_with(
            c15,
            &format!("SELECT * FROM backup.restore($1{args})"),
            &[&id],
            "0A000",
        );
        let (m, h) = (message(&e), hint(&e).unwrap_or_default());
        assert!(
            m.contains("PostgreSQL 18") && m.contains("PostgreSQL 15"),
            "{how}: {m}"
        );
        assert!(h.contains("PostgreSQL 18 or newer"), "{how}: {h}");
        assert!(!m.contains("panicked") && !h.contains("backtrace"), "{how}");
    };

    // First only in a file:// storage target of the 15 server: registered from there, and
    // restored from there (no local copy).
    let target_dir = tempfile::Builder::new()
        .prefix("pg_backup_xver_target")
        .tempdir()
        .unwrap();
    run(Command::new("cp")
        .arg("-a")
        .arg(s18.backup_dir().join(&id))
        .arg(target_dir.path()));
    c15.execute(
        "SELECT backup.add_storage('nas', $1)",
        &[&format!("file://{}", target_dir.path().display())],
    )
    .unwrap();
    let found = strings(&mut c15, "SELECT * FROM backup.rescan(storage => 'nas')");
    assert!(found.contains(&id), "rescan(storage) found {found:?}");
    refused(&mut c15, "restore() from the storage target", "");
    refused(
        &mut c15,
        "restore(dry_run => true) from the storage target",
        ", dry_run => true",
    );

    // Then in backup.directory too. Checking its files is harmless on 15: allowed.
    copy_archive(&s18, &s15, &id);
    let bad = count(
        &mut c15,
        &format!("SELECT count(*) FROM backup.verify('{id}') WHERE status <> 'ok'"),
    );
    assert_eq!(bad, 0, "verify() of the 18 archive on 15");
    for (how, args) in [
        ("restore()", ""),
        ("restore(dry_run => true)", ", dry_run => true"),
        ("restore(schema_only => true)", ", schema_only => true"),
        ("restore(atomic => false)", ", atomic => false"),
        (
            "restore(atomic => false, jobs => 2)",
            ", atomic => false, jobs => 2",
        ),
        ("restore(tables => ...)", ", tables => ARRAY['public.t']"),
    ] {
        refused(&mut c15, how, args);
    }

    // Nothing changed: the same objects; every refused restore is recorded as failed with
    // the SQLSTATE, none is left running.
    let after = state(&mut c15);
    assert_eq!(after.0, before.0, "objects of the 15 database");
    let running = count(
        &mut c15,
        "SELECT count(*) FROM backup.restores WHERE status <> 'failed'",
    );
    assert_eq!(running, 0, "history: {:?}", after.1);
    let refused = count(
        &mut c15,
        "SELECT count(*) FROM backup.restores WHERE error LIKE '%SQLSTATE 0A000%'",
    );
    assert_eq!(refused, 8, "history: {:?}", after.1);
    assert_eq!(
        count(
            &mut c15,
            "SELECT count(*) FROM pg_class WHERE relname IN ('t', 'u')"
        ),
        0
    );

    // The same archive restores on 18 (the refusal is about the version, nothing else).
    let mut fresh = fresh_database(&s18, "copy", "TEMPLATE template0");
    fresh
        .query("SELECT * FROM backup.restore($1)", &[&id])
        .unwrap();
    assert_eq!(count(&mut fresh, "SELECT count(*) FROM t"), 100);
}

/// A setting PostgreSQL 16 renamed (`force_parallel_mode`, now `debug_parallel_query`) in a
/// 15 database's function SET clauses and database settings: pg_backup restores them on 18
/// under the new name (and says so); 18's pg_dump | pg_restore carries the old name, which 18
/// refuses (reported, not asserted: it is the bar's behaviour, not ours).
#[test]
fn settings_of_15_that_18_renamed_are_adapted() {
    if !enabled() {
        return;
    }
    let bin18 = bindir_18();
    let s15 = Server::start("");
    let s18 = server_18(&bin18);
    let mut c15 = s15.connect("app");
    c15.batch_execute(
        "CREATE ROLE alice;
         CREATE FUNCTION public.f_renamed() RETURNS int LANGUAGE sql
           SET force_parallel_mode = on SET work_mem = '8MB' SET \"my.setting\" = 'x' AS 'SELECT 1';
         CREATE PROCEDURE public.p_renamed() LANGUAGE sql SET force_parallel_mode = regress AS 'SELECT 1';
         CREATE VIEW public.v AS SELECT public.f_renamed() AS one;
         ALTER DATABASE app SET force_parallel_mode = on;
         ALTER ROLE alice IN DATABASE app SET force_parallel_mode = regress;",
    )
    .unwrap();
    let id = create(&mut c15, "label => 'settings'");
    copy_archive(&s15, &s18, &id);
    let key15 = public_key(&s15, "app");
    run(s18
        .client("psql")
        .args(["-X", "-q", "-d", "postgres", "-c", "CREATE ROLE alice"]));

    let target = "settings_copy";
    let mut c = fresh_trusting(&s18, target, &key15);
    let rows = c
        .query("SELECT status FROM backup.restore($1)", &[&id])
        .unwrap();
    assert!(rows.iter().all(|r| r.get::<_, String>(0) == "ok"));
    let config = |c: &mut postgres::Client, f: &str| {
        strings(
            c,
            &format!("SELECT unnest(proconfig) FROM pg_proc WHERE proname = '{f}' ORDER BY 1"),
        )
    };
    assert_eq!(
        config(&mut c, "f_renamed"),
        ["debug_parallel_query=on", "my.setting=x", "work_mem=8MB"]
    );
    assert_eq!(
        config(&mut c, "p_renamed"),
        ["debug_parallel_query=regress"]
    );
    assert_eq!(one::<i32>(&mut c, "SELECT one FROM public.v"), 1);
    let db_settings = strings(
        &mut c,
        "SELECT coalesce(r.rolname, '-') || ' ' || array_to_string(s.setconfig, ',')
           FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
           LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = current_database() ORDER BY 1",
    );
    assert_eq!(
        db_settings,
        [
            "- debug_parallel_query=on",
            "alice debug_parallel_query=regress"
        ]
    );
    let noted = text(
        &mut c,
        "SELECT coalesce((options->'adapted')::text, '-') FROM backup.restores ORDER BY id DESC LIMIT 1",
    );
    assert!(noted.contains("force_parallel_mode"), "{noted}");

    // The bar, for the report: 18's pg_dump of the 15 database, 18's pg_restore.
    let dump = s18.dir.path().join("settings.dump");
    run(client_of(&bin18, "pg_dump", &s15)
        .args(["-Fc", "--exclude-schema=backup", "-d", "app", "-f"])
        .arg(&dump));
    s18.create_db("settings_pg_restore");
    let out = s18
        .client("pg_restore")
        .args(["-d", "settings_pg_restore"])
        .arg(&dump)
        .output()
        .unwrap();
    let mut p = s18.connect("settings_pg_restore");
    eprintln!(
        "18's pg_restore of 18's pg_dump of the 15 database: functions restored: {:?}; errors: {}",
        strings(&mut p, "SELECT proname::text FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1"),
        String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.contains("error")).collect::<Vec<_>>().join(" | ")
    );
}
