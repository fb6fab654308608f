//! Which entry the restore is working on, for the error that leaves the restore (on_error =>
//! 'abort') and for redacting it: a thread-local the step executor sets around each entry.

use std::cell::RefCell;

use pgrx::pg_sys::panic::CaughtError;

use crate::error::BackupError;
use crate::security::redact::{self, Exposure};

thread_local! {
    /// The entry being restored, for errors that leave the restore (on_error => 'abort'),
    /// and whether its errors may carry row values.
    static CURRENT: RefCell<Option<(String, Exposure)>> = const { RefCell::new(None) };
}

/// The entry the restore was working on when it stopped, as `describe()` names it.
pub fn current_entry() -> Option<String> {
    CURRENT.with(|c| c.borrow().as_ref().map(|(w, _)| w.clone()))
}

/// For redacting the error that stopped the restore: (kind, object, exposure) as
/// `security::redact::describe` takes them. Outside any entry: the restore as a whole, as
/// data (the safe side).
pub fn current_step() -> (String, String, Exposure) {
    CURRENT.with(|c| match c.borrow().as_ref() {
        Some((w, x)) => (String::new(), w.clone(), *x),
        None => ("restore".into(), "data".into(), Exposure::Data),
    })
}

pub fn set_current(what: Option<(String, Exposure)>) {
    CURRENT.with(|c| *c.borrow_mut() = what);
}

/// An error that ends a restore worker (or a job worker): SQLSTATE, message naming the entry
/// it stopped at, hint. Errors PostgreSQL raised go without row values (issue 9); the server
/// log gets the whole error.
pub fn failure_of(
    e: std::result::Result<BackupError, CaughtError>,
) -> (String, String, Option<String>) {
    match e {
        Ok(e) => {
            let at = current_entry()
                .map(|w| format!(" (while restoring {w})"))
                .unwrap_or_default();
            (e.sqlstate().to_string(), format!("{e}{at}"), e.hint())
        }
        Err(caught) => {
            let (kind, object, exposure) = current_step();
            let text = redact::describe(&caught, &kind, &object, exposure);
            (
                caught_sqlstate(&caught),
                text,
                Some("Row values are never shown or stored by pg_backup; the server log has the complete error.".to_string()),
            )
        }
    }
}

fn caught_sqlstate(e: &CaughtError) -> String {
    match e {
        CaughtError::PostgresError(r)
        | CaughtError::ErrorReport(r)
        | CaughtError::RustPanic { ereport: r, .. } => {
            crate::error::sqlstate_of(r.sql_error_code())
        }
    }
}
