//! The worker that works inside a drill's scratch database: connected to it as the role the
//! drill acts for (as restore(atomic => false)'s worker acts as its caller), it installs
//! pg_backup there (as the bootstrap superuser, who created the database), restores the
//! backup exactly as `backup.restore(id, atomic => false)` called by that role would (the same
//! checks of what the role may restore, user code as its owner), then counts every table's
//! rows against the manifest and runs the checks with that role's rights, never more.
//! It reports to the drill's worker (`drill::worker`), which records the result.

use std::collections::BTreeMap;
use std::time::Instant;

use pgrx::prelude::*;
use serde::{Deserialize, Serialize};

use super::compare::{self, Answer, Mismatch};
use crate::error::BackupError;
use crate::restore::background::restore_connected;
use crate::restore::batch::begin_transaction;
use crate::restore::job::Archive;
use crate::restore::options::Request;
use crate::security::redact::{self, Exposure};
use crate::workers::{Failure, Kind, Worker};

/// What the scratch worker is asked.
#[derive(Clone, Serialize, Deserialize)]
pub struct ScratchRequest {
    /// The restore, as the drilling role's `restore(atomic => false)` would ask it, with the
    /// session of the scratch database.
    pub restore: Request,
    /// The checks, in order.
    pub checks: Vec<String>,
}

/// What it found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScratchReport {
    /// The restore's own duration (pg_backup installed before, the counts after).
    pub restore_secs: f64,
    pub tables_checked: i32,
    pub rows_checked: i64,
    pub mismatches: Vec<Mismatch>,
    /// One result per check (see `compare::check_result`).
    pub checks: Vec<serde_json::Value>,
    /// The checks that failed, as `check N: why`.
    pub failed_checks: Vec<String>,
}

pub const SCRATCH_WORKER: Kind<ScratchRequest, (), ScratchReport> = Kind::new(
    "pg_backup drill restore",
    false,
    "pg_backup_drill_restore_main",
    0x7062_6472,
    0,
    256 << 10,
);

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_backup_drill_restore_main(arg: pg_sys::Datum) {
    let Some(worker) = Worker::attach(&SCRATCH_WORKER, arg) else {
        return;
    };
    let req = &worker.request;
    req.restore.session.connect();
    // No server, database or role default timeout ends the drill half-way (the scratch
    // database has none; the server's may).
    crate::session::disable_dump_timeouts();
    if let Err(f) = install_pg_backup(req) {
        worker.fail(f);
        return;
    }
    let started = Instant::now();
    if let Err(f) = restore_connected(&req.restore) {
        worker.fail(f);
        return;
    }
    let restore_secs = started.elapsed().as_secs_f64();
    match check(req, restore_secs) {
        Ok(report) => worker.report(&report),
        Err(f) => worker.fail(f),
    }
}

/// Run `f` in a transaction of its own as the session's current user (the bootstrap
/// superuser); an error is the failure returned, the transaction rolled back.
#[allow(clippy::result_large_err)]
fn in_transaction<T>(
    req: &ScratchRequest,
    f: impl FnOnce() -> crate::error::Result<T>,
) -> Result<T, Failure> {
    begin_transaction(&req.restore.session);
    let outcome = PgTryBuilder::new(std::panic::AssertUnwindSafe(|| Ok(f())))
        .catch_others(Err)
        .execute();
    match outcome {
        Ok(Ok(v)) => {
            // SAFETY: the transaction `begin_transaction` started, with its snapshot pushed.
            unsafe {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
            Ok(v)
        }
        Ok(Err(e)) => {
            // SAFETY: aborting the transaction begun above after its error was caught.
            unsafe { pg_sys::AbortOutOfAnyTransaction() };
            Err(Failure::of(&e))
        }
        Err(caught) => {
            let text = crate::subtransaction::message(&caught);
            let sqlstate = sqlstate(&caught);
            // SAFETY: as above.
            unsafe { pg_sys::AbortOutOfAnyTransaction() };
            Err(Failure {
                sqlstate,
                message: text,
                hint: None,
            })
        }
    }
}

fn sqlstate(e: &pgrx::pg_sys::panic::CaughtError) -> String {
    use pgrx::pg_sys::panic::CaughtError;
    match e {
        CaughtError::PostgresError(r)
        | CaughtError::ErrorReport(r)
        | CaughtError::RustPanic { ereport: r, .. } => {
            crate::error::sqlstate_of(r.sql_error_code())
        }
    }
}

/// pg_backup in the scratch database, owned by the bootstrap superuser (the restore reads
/// its catalog; the backup's own objects never include it).
/// The drilling role may create schemas in the database and objects in its schema public, as
/// in a database where it may restore (a superuser needs no grant).
fn install_pg_backup(req: &ScratchRequest) -> Result<(), Failure> {
    in_transaction(req, || {
        crate::text::run("CREATE EXTENSION IF NOT EXISTS pg_backup")?;
        let role = pgrx::spi::quote_identifier(&req.restore.caller_role);
        let database = pgrx::spi::quote_identifier(crate::text::current_database());
        crate::text::run(&format!(
            "GRANT CREATE, TEMPORARY ON DATABASE {database} TO {role}; GRANT CREATE ON SCHEMA public TO {role}"
        ))?;
        Ok(())
    })
    .map_err(|f| Failure {
        message: format!(
            "could not install pg_backup in the drill's scratch database: {}",
            f.message
        ),
        ..f
    })
}

/// Every table's rows counted (by the bootstrap superuser: a count carries no value, and
/// row-level security must not hide rows from it) against the manifest, then the checks.
fn check(req: &ScratchRequest, restore_secs: f64) -> Result<ScratchReport, Failure> {
    in_transaction(req, || {
        let id = &req.restore.backup_id;
        let caller = pg_sys::Oid::from(req.restore.caller_oid);
        let archive = Archive::open(
            id,
            None,
            req.restore.opts.identity.as_deref(),
            |_| Ok(()),
            |src, raw| crate::security::signing::authenticate(src, raw, caller, true).map(|_| ()),
        )?;
        let expected = compare::expected_rows(&archive.manifest);
        let restored = expected
            .keys()
            .map(|(s, t)| Ok(((s.clone(), t.clone()), count_rows(s, t)?)))
            .collect::<crate::error::Result<BTreeMap<_, _>>>()?;
        let mismatches = compare::mismatches(&expected, &restored);
        let rows_checked = restored.values().map(|n| n.unwrap_or(0) as i64).sum();
        let mut checks = Vec::new();
        let mut failed_checks = Vec::new();
        for (i, sql) in req.checks.iter().enumerate() {
            let answer = run_check(sql, caller, i + 1);
            let (ok, value) = compare::check_result(sql, &answer);
            if !ok {
                let name = format!("check {}", i + 1);
                let why = value["error"].as_str().unwrap_or("failed");
                failed_checks.push(if why.starts_with(&name) {
                    why.to_string()
                } else {
                    format!("{name}: {why}")
                });
            }
            checks.push(value);
        }
        Ok(ScratchReport {
            restore_secs,
            tables_checked: expected.len() as i32,
            rows_checked,
            mismatches,
            checks,
            failed_checks,
        })
    })
}

/// The rows of table `schema.table` itself (not its children: each has its own count in the
/// manifest); None when it is not an ordinary table (missing). Counting an ordinary table as a
/// superuser runs no user code (no rules, no row-level security policies).
fn count_rows(schema: &str, table: &str) -> crate::error::Result<Option<u64>> {
    let exists = crate::query::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                        WHERE c.oid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text))
                          AND c.relkind = 'r')",
        &[crate::text::arg(schema), crate::text::arg(table)],
    )?
    .unwrap_or(false);
    if !exists {
        return Ok(None);
    }
    let sql = format!(
        "SELECT count(*) FROM ONLY {}.{}",
        pgrx::spi::quote_identifier(schema),
        pgrx::spi::quote_identifier(table)
    );
    Ok(crate::query::one::<i64>(&sql, &[])?.map(|n| n.max(0) as u64))
}

/// One check, as `role` (the drilling role) in a security-restricted operation (no SET ROLE,
/// no session-level changes), in a subtransaction that is always rolled back (a check changes
/// nothing the next one sees). Its error text never carries row values (only the SQLSTATE
/// and condition name; the server log has the whole error).
fn run_check(sql: &str, role: pg_sys::Oid, number: usize) -> Answer {
    let outcome = crate::subtransaction::run_result(|| -> Result<(), Answer> {
        let answer = crate::security::owner::run_as(role, || answer_of(sql));
        Err(answer)
    });
    match outcome {
        Ok(Err(answer)) => answer,
        Ok(Ok(())) => Answer::NoRow,
        Err(caught) => Answer::Error {
            sqlstate: sqlstate(&caught),
            message: redact::describe(&caught, "check", &number.to_string(), Exposure::Data),
        },
    }
}

fn answer_of(sql: &str) -> Answer {
    let stmt = crate::text::statement(sql);
    let _fresh = crate::query::FreshSnapshot::push();
    let answer = Spi::connect(|c| {
        let t = c.select(stmt.as_c_str(), Some(2), &[])?;
        if t.is_empty() {
            return Ok::<_, pgrx::spi::Error>(Answer::NoRow);
        }
        if t.columns()? != 1 {
            return Ok(Answer::Other(format!("{} columns", t.columns()?)));
        }
        let oid = t.column_type_oid(1)?.value();
        let row = t.first();
        Ok(match oid {
            pg_sys::BOOLOID => Answer::Bool(row.get::<bool>(1)?),
            pg_sys::INT2OID => Answer::Count(row.get::<i16>(1)?.map(i64::from)),
            pg_sys::INT4OID => Answer::Count(row.get::<i32>(1)?.map(i64::from)),
            pg_sys::INT8OID => Answer::Count(row.get::<i64>(1)?),
            pg_sys::NUMERICOID => Answer::Count(
                row.get::<pgrx::AnyNumeric>(1)?
                    .map(|n| n.to_string().parse::<f64>().map(|f| f as i64).unwrap_or(0)),
            ),
            other => Answer::Other(format!("a value of type oid {}", u32::from(other))),
        })
    });
    answer.unwrap_or_else(|e| Answer::Error {
        sqlstate: "XX000".into(),
        message: BackupError::from(e).to_string(),
    })
}
