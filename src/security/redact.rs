//! Error text that leaves a restore (the `backup.restores.error` column every operator can
//! read, a result row's `detail`, the error raised to the caller) never carries row values.
//!
//! PostgreSQL puts the datum in the message or the detail of many errors (`invalid input
//! syntax for type integer: "TOPSECRET-1"`, `Key (id)=(42) already exists.`, `Failing row
//! contains (...)`, COPY's context line), and user code can put anything in a message
//! (`RAISE EXCEPTION '%', NEW.secret`, with any SQLSTATE). No pattern can strip that
//! reliably, so for a step that touches rows or runs user code only the SQLSTATE, its
//! condition name and the object survive; the full error goes to the server log only
//! (LOG_SERVER_ONLY: never sent to a client, whatever client_min_messages says).
//! Steps that only replay DDL keep PostgreSQL's primary message (never its detail).

use crate::error::sqlstate_of;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::{CaughtError, ErrorReport, ErrorReportWithLevel};
use pgrx::PgLogLevel;

/// Whether a step's errors may carry row values or text written by user code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// DDL replayed as the extension owner: no rows read, no user code run.
    Ddl,
    /// Rows loaded, constraints validated, indexes built, user code run.
    Data,
}

/// PostgreSQL's condition name for `code` (as PL/pgSQL spells it), e.g. `unique_violation`.
pub fn condition_name(code: PgSqlErrorCode) -> String {
    let name = format!("{code:?}");
    name.strip_prefix("ERRCODE_")
        .unwrap_or(&name)
        .to_ascii_lowercase()
}

fn report(e: &CaughtError) -> &ErrorReportWithLevel {
    match e {
        CaughtError::PostgresError(r)
        | CaughtError::ErrorReport(r)
        | CaughtError::RustPanic { ereport: r, .. } => r,
    }
}

/// The text to store and return for an error of the step on `object` (`kind object`, e.g.
/// `table_data public.t`). Also logs the full error to the server log.
pub fn describe(e: &CaughtError, kind: &str, object: &str, exposure: Exposure) -> String {
    let r = report(e);
    log_full(r, kind, object);
    redacted(
        r.sql_error_code(),
        &crate::error::report_text(r.message()),
        kind,
        object,
        exposure,
    )
}

/// The redacted text for an error with `code` and `message` (pure, for tests).
pub fn redacted(
    code: PgSqlErrorCode,
    message: &str,
    kind: &str,
    object: &str,
    exposure: Exposure,
) -> String {
    // Without a kind, `object` already names the step ("table data public.t (TOC entry 5)").
    let what = if kind.is_empty() {
        format!("while restoring {object}")
    } else {
        format!("{kind} {object}")
    };
    match exposure {
        Exposure::Ddl if kind.is_empty() => {
            format!("{message} (SQLSTATE {}) {what}", sqlstate_of(code))
        }
        Exposure::Ddl => format!("{message} (SQLSTATE {})", sqlstate_of(code)),
        Exposure::Data => format!(
            "{what}: {} (SQLSTATE {}); the full error is in the server log",
            condition_name(code).replace('_', " "),
            sqlstate_of(code)
        ),
    }
}

/// The whole error, for the server log only.
fn log_full(r: &ErrorReportWithLevel, kind: &str, object: &str) {
    // The message as PostgreSQL raised it (only its bytes may have been read as UTF-8 by pgrx).
    let mut report = ErrorReport::new(
        r.sql_error_code(),
        format!(
            "pg_backup: {kind} {object} failed: {}",
            crate::error::report_text(r.message())
        ),
        "pg_backup restore",
    );
    if let Some(d) = r.detail() {
        report = report.set_detail(d.to_string());
    }
    if let Some(h) = r.hint() {
        report = report.set_hint(crate::error::report_text(h));
    }
    report.report(PgLogLevel::LOG_SERVER_ONLY);
}

/// Raise a redacted copy of `e` as the restore's own ERROR, keeping its SQLSTATE.
pub fn raise(e: &CaughtError, text: String) -> ! {
    let r = report(e);
    let code = r.sql_error_code();
    let mut hint = String::from(
        "The restore was rolled back. Row values are never shown or stored by pg_backup; \
         the server log has the complete error.",
    );
    // An encoding error's hint is pg_backup's own (copy_from: which encodings, what to do);
    // it names encodings, never values.
    if matches!(
        code,
        PgSqlErrorCode::ERRCODE_UNTRANSLATABLE_CHARACTER
            | PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE
    ) {
        if let Some(h) = r.hint() {
            hint = format!("{} {hint}", crate::error::report_text(h));
        }
    }
    crate::error::report(
        PgLogLevel::ERROR,
        code,
        &text,
        Some(&hint),
        "pg_backup restore",
    );
    unreachable!("ereport(ERROR) returned")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_and_names_come_from_the_code() {
        assert_eq!(
            sqlstate_of(PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION),
            "23505"
        );
        assert_eq!(
            sqlstate_of(PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION),
            "22P02"
        );
        assert_eq!(
            condition_name(PgSqlErrorCode::ERRCODE_CHECK_VIOLATION),
            "check_violation"
        );
    }

    #[test]
    fn data_errors_keep_no_value() {
        let text = redacted(
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            "invalid input syntax for type integer: \"TOPSECRET-1\"",
            "table_data",
            "public.t",
            Exposure::Data,
        );
        assert!(!text.contains("TOPSECRET"), "{text}");
        assert!(
            text.contains("22P02") && text.contains("public.t"),
            "{text}"
        );
        let ddl = redacted(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "role \"ghost\" does not exist",
            "owner",
            "public.t",
            Exposure::Ddl,
        );
        assert!(ddl.contains("ghost") && ddl.contains("42704"), "{ddl}");
    }
}
