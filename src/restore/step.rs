//! The step executor: runs one step of a restore (a closure that changes the database), in a
//! subtransaction when its failure may be tolerated (on_error => 'continue', an object that
//! already exists, a grant to a role this cluster lacks), records its result row, and commits
//! the batch when one is full (restore(atomic => false)).

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::CaughtError;

use super::batch::Batches;
use super::context::set_current;
use super::plan::OnError;
use super::policy::Tolerate;
use super::result::{Action, Row, Status};
use crate::error::Result;
use crate::security::redact::{self, Exposure};
use crate::subtransaction;

fn has_code(e: &CaughtError, code: PgSqlErrorCode) -> bool {
    matches!(e, CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) if r.sql_error_code() == code)
}

fn is_duplicate(e: &CaughtError) -> bool {
    use PgSqlErrorCode::*;
    [
        ERRCODE_DUPLICATE_OBJECT,
        ERRCODE_DUPLICATE_TABLE,
        ERRCODE_DUPLICATE_FUNCTION,
        ERRCODE_DUPLICATE_SCHEMA,
    ]
    .into_iter()
    .any(|c| has_code(e, c))
}

/// A caught error as a result row's detail: message and SQLSTATE.
pub fn describe_error(e: &CaughtError) -> String {
    match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => format!(
            "{} (SQLSTATE {})",
            crate::error::report_text(r.message()),
            crate::error::sqlstate_of(r.sql_error_code())
        ),
        other => subtransaction::message(other),
    }
}

/// Runs the steps of a restore and collects their rows.
pub struct Runner<'a> {
    on_error: OnError,
    pub out: Vec<Row>,
    /// restore(atomic => false): commits after every so many steps.
    batches: Option<&'a Batches>,
}

impl<'a> Runner<'a> {
    pub fn new(on_error: OnError, batches: Option<&'a Batches>) -> Runner<'a> {
        Runner {
            on_error,
            out: Vec::new(),
            batches,
        }
    }

    /// Run one step. With `Tolerate::Nothing` under `on_error => 'abort'` an error ends the
    /// restore; otherwise the step runs in a subtransaction and its failure becomes a row.
    /// Returns whether it succeeded (false: failed or kept as it was).
    pub fn run(
        &mut self,
        object: String,
        kind: &str,
        action: Action,
        tolerate: Tolerate,
        f: impl FnOnce() -> Result<Option<i64>>,
    ) -> Result<bool> {
        self.run_outcome(object, kind, action, tolerate, Exposure::Ddl, f)
            .map(|o| o == Some(true))
    }

    /// `run` for a step that loads rows or runs user code: its errors are redacted (issue 9).
    pub fn run_data(
        &mut self,
        object: String,
        kind: &str,
        action: Action,
        f: impl FnOnce() -> Result<Option<i64>>,
    ) -> Result<bool> {
        set_current(Some((format!("{kind} {object}"), Exposure::Data)));
        let r = self
            .run_outcome(object, kind, action, Tolerate::Nothing, Exposure::Data, f)
            .map(|o| o == Some(true));
        if r.is_ok() {
            set_current(None);
        }
        r
    }

    /// Some(true) ran, Some(false) kept (already there), None failed (continue mode).
    pub fn run_outcome(
        &mut self,
        object: String,
        kind: &str,
        action: Action,
        tolerate: Tolerate,
        exposure: Exposure,
        f: impl FnOnce() -> Result<Option<i64>>,
    ) -> Result<Option<bool>> {
        // Whether it ran, was kept, or failed (continue mode); an error ends the restore.
        let outcome: Result<Option<bool>> = 'step: {
            if tolerate == Tolerate::Nothing && self.on_error == OnError::Abort {
                let rows = f()?;
                self.out
                    .push(Row::new(object, kind, action, Status::Ok).rows(rows));
                break 'step Ok(Some(true));
            }
            match subtransaction::run_result(f) {
                Ok(Ok(rows)) => {
                    self.out
                        .push(Row::new(object, kind, action, Status::Ok).rows(rows));
                    Ok(Some(true))
                }
                Ok(Err(e)) if self.on_error == OnError::Continue => {
                    self.out.push(
                        Row::new(object, kind, action, Status::Failed)
                            .detail(format!("{e} (SQLSTATE {})", e.sqlstate())),
                    );
                    Ok(None)
                }
                Ok(Err(e)) => Err(e),
                Err(c) if tolerate == Tolerate::Duplicates && is_duplicate(&c) => {
                    self.out.push(
                        Row::new(object, kind, Action::Skip, Status::Ok).detail("already exists"),
                    );
                    Ok(Some(false))
                }
                Err(c)
                    if tolerate == Tolerate::MissingRole
                        && has_code(&c, PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT) =>
                {
                    let text = redact::describe(&c, kind, &object, exposure);
                    self.out
                        .push(Row::new(object, kind, Action::Skip, Status::Warning).detail(text));
                    Ok(Some(false))
                }
                Err(c) if self.on_error == OnError::Continue => {
                    let text = redact::describe(&c, kind, &object, exposure);
                    self.out
                        .push(Row::new(object, kind, action, Status::Failed).detail(text));
                    Ok(None)
                }
                Err(c) => c.rethrow(),
            }
        };
        let outcome = outcome?;
        if let Some(b) = self.batches {
            b.step_done(&self.out)?;
        }
        Ok(outcome)
    }

    pub fn note(&mut self, r: Row) {
        self.out.push(r);
    }
}

pub fn sql_step(sql: String) -> impl FnOnce() -> Result<Option<i64>> {
    move || {
        crate::text::run(&sql)?;
        Ok(None)
    }
}
