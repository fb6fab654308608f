//! The regression database round trip: PostgreSQL's own regression suite (`parallel_schedule`,
//! run by pg_regress against a server of this test) builds database `regression`, the database
//! pg_upgrade's test dumps and restores. It is backed up with `backup.create()` in every format
//! and restored into fresh databases, and each copy is compared with the source the way
//! pg_upgrade's test judges pg_dump: `pg_dump --schema-only` entry by entry, per-table row
//! fingerprints, sequence values and large objects. `pg_dump -Fc | pg_restore` of the same
//! database is measured in the same run; pg_backup may leave no difference it does not leave.
//!
//! Each major version runs its OWN regression suite, judged against its own pg_dump and
//! pg_restore: the server is $PG_CONFIG's (15 by default; `make test PG=18` sets 18's), and the
//! pg_regress build is that version's: $PG_BACKUP_REGRESS_BUILD, else for 15 the one of
//! scripts/regress-build.sh (target/regress-build), for 17 and 18 the build tree of
//! scripts/pg-build.sh (`--regress-dir NN`). `make test` passes it. A readable report of every
//! difference is written to regression-report.txt in the target's tmp directory
//! (target/tmp for 15, target/pgNN/tmp for the others under `make test`).

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::*;
use support::*;

/// The PostgreSQL source tree in which pg_regress of major version `major` was built.
fn regress_build(major: u32) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = match std::env::var_os("PG_BACKUP_REGRESS_BUILD") {
        Some(d) => PathBuf::from(d),
        None if major == 15 => manifest.join("target/regress-build"),
        None => {
            let out = Command::new("bash")
                .arg(manifest.join("scripts/pg-build.sh"))
                .args(["--regress-dir", &major.to_string()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "scripts/pg-build.sh --regress-dir {major}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    let driver = dir.join("src/test/regress/pg_regress");
    assert!(
        driver.exists(),
        "{} is missing: run `bash scripts/regress-build.sh` for 15, `bash scripts/pg-build.sh {major}` \
         for 17 and 18 (make test does), or set PG_BACKUP_REGRESS_BUILD",
        driver.display()
    );
    // The suite of another major version would build another database (or fail half-way)
    // and be judged against the wrong pg_dump: refused.
    let header = std::fs::read_to_string(dir.join("src/include/pg_config.h")).unwrap_or_default();
    let built = header
        .lines()
        .find_map(|l| l.strip_prefix("#define PG_MAJORVERSION \""))
        .map(|v| v.trim_end_matches('"').to_string());
    assert_eq!(
        built.as_deref(),
        Some(major.to_string().as_str()),
        "{} is the regression suite of PostgreSQL {built:?}, the server is {major}",
        dir.display()
    );
    dir
}

/// pg_regress with `parallel_schedule` against `s`: creates database `regression`. The
/// suite's own pass/fail is not this test's business (its expected files are those of the
/// source package, which may be a minor version behind the server); the database is.
fn run_parallel_schedule(s: &Server, build: &Path, out: &Path) -> String {
    let regress = build.join("src/test/regress");
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).unwrap();
    let bindir = bin("");
    let res = std::process::Command::new(regress.join("pg_regress"))
        .arg(format!("--dlpath={}", regress.display()))
        .arg(format!("--bindir={}", bindir.trim_end_matches('/')))
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

#[test]
fn the_regression_database_restores_as_well_as_with_pg_dump_in_every_format() {
    if !enabled() {
        return;
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    // As pg_regress configures its own temporary servers (prepared_xacts needs this).
    let s = server("max_prepared_transactions = 2");
    let major = text(&mut s.connect("postgres"), "SHOW server_version_num")
        .parse::<u32>()
        .unwrap()
        / 10000;
    let build = regress_build(major);
    let t0 = Instant::now();
    let suite = run_parallel_schedule(&s, &build, &tmp.join("pg_regress"));
    eprintln!(
        "pg_regress parallel_schedule: {suite} ({:.0} s)",
        t0.elapsed().as_secs_f64()
    );
    let mut c = s.connect("regression");
    let tables: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND oid >= 16384",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(tables > 100, "the regression database has {tables} tables");
    c.batch_execute("CREATE EXTENSION pg_backup").unwrap();
    drop(c);

    let verdicts = judge_round_trips(
        &s,
        "regression",
        &RoundTrip {
            formats: &Format::ALL,
            jobs: Some(2),
            ..Default::default()
        },
    );
    let mut report = format!(
        "PostgreSQL {major}: regression database round trip ({suite}); differences pg_dump does not leave, per restore\n"
    );
    for v in &verdicts {
        report.push_str(&format!("\n===== {}\n", v.summary()));
        // The summary shows the first 20.
        if v.problems.len() > 20 {
            for p in &v.problems {
                report.push_str(&format!("not ok: {p}\n"));
            }
        }
        report.push_str(&detail(&v.differences));
    }
    let file = tmp.join("regression-report.txt");
    std::fs::write(&file, &report).unwrap();
    eprintln!(
        "every difference: {} ({:.0} s in all)",
        file.display(),
        t0.elapsed().as_secs_f64()
    );
    assert_verdicts("the regression database", &verdicts);
}
