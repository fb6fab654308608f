//! Running as the extension owner safely: our functions are SECURITY DEFINER, so on entry they
//! remember the caller's search_path (to resolve the caller's bare table names the way
//! regclass would) and then pin search_path to `pg_catalog, pg_temp` for everything they run,
//! exactly as a `SET search_path` clause would, but after that first look.
//!
//! Restore safety lives in the submodules: `owner` (run a step with an object owner's
//! rights), `privileges` (what the caller may restore), `targets` (schemas never written),
//! `redact` (error text without row values), `locks` (the lock-table limit).

pub mod locks;
pub mod owner;
pub mod privileges;
pub mod redact;
pub mod targets;

use pgrx::prelude::*;

use crate::error::Result;

pub const PINNED_SEARCH_PATH: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// The caller's context, captured before the search_path is pinned.
pub struct Caller {
    /// Effective search_path of the caller, implicit schemas included, in order.
    pub schemas: Vec<String>,
    /// The role the caller acts as (SET ROLE aware), not the definer.
    pub role: String,
    /// Its oid (for a background worker: the role it connected as).
    pub oid: pg_sys::Oid,
    /// The caller's transaction had a transaction id before this call: it may have changed
    /// data or definitions that only it can see (pgrx's SPI assigns one to every transaction
    /// that runs a query, so this is looked at before ours run). Parallel workers could not
    /// see those changes, so create(jobs => N) works in the session then.
    pub had_xid: bool,
    _pin: Option<PinnedSearchPath>,
}

pub fn enter() -> Result<Caller> {
    let had_xid = unsafe { pg_sys::GetTopTransactionIdIfAny() } != pg_sys::InvalidTransactionId;
    crate::catalog::version::require_current()?;
    let schemas: Vec<String> = crate::query::one::<Vec<String>>(
        "SELECT pg_catalog.current_schemas(true)::pg_catalog.text[]",
        &[],
    )?
    .unwrap_or_default();
    let oid = unsafe { pg_sys::GetOuterUserId() };
    let role = unsafe {
        let name = pg_sys::GetUserNameFromId(oid, true);
        if name.is_null() {
            String::from("unknown")
        } else {
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned()
        }
    };
    Ok(Caller {
        schemas,
        role,
        oid,
        had_xid,
        _pin: Some(PinnedSearchPath::new()),
    })
}

/// For background workers: a named role for the history, the session's search_path pinned.
pub fn enter_as(role: &str) -> Result<Caller> {
    crate::catalog::version::require_current()?;
    let schemas: Vec<String> = crate::query::one::<Vec<String>>(
        "SELECT pg_catalog.current_schemas(true)::pg_catalog.text[]",
        &[],
    )?
    .unwrap_or_default();
    Ok(Caller {
        schemas,
        role: role.to_string(),
        oid: unsafe { pg_sys::GetOuterUserId() },
        // The worker's transaction holds pg_backup's own statements only.
        had_xid: false,
        _pin: Some(PinnedSearchPath::new()),
    })
}

/// In a background worker acting for a caller (restore(atomic => false)): the caller's
/// search_path and role as its session had them. The worker's session is the call, so the
/// search_path is pinned for the session (see `call_is_session`).
pub fn enter_for(schemas: Vec<String>, role: String, oid: pg_sys::Oid) -> Caller {
    set_for_call(c"search_path", PINNED_SEARCH_PATH);
    Caller {
        schemas,
        role,
        oid,
        had_xid: false,
        _pin: None,
    }
}

/// Restores the caller's search_path when dropped (on success; after an error the
/// transaction abort restores it).
pub struct PinnedSearchPath {
    nest_level: i32,
}

impl PinnedSearchPath {
    fn new() -> Self {
        let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
        set_for_call(c"search_path", PINNED_SEARCH_PATH);
        PinnedSearchPath { nest_level }
    }
}

/// The settings under which pg_backup writes and reads definitions and rows, as pg_dump
/// pins them on its connection: string literals standard, dates ISO, floats exact. Set for
/// the call only (see `set_for_call`).
pub fn pin_literal_settings() {
    set_for_call(c"standard_conforming_strings", c"on");
    set_for_call(c"DateStyle", c"ISO, MDY");
    set_for_call(c"IntervalStyle", c"postgres");
    set_for_call(c"extra_float_digits", c"3");
    set_for_call(c"xmloption", c"content");
}

/// Set a setting for the rest of this SQL function call only: like a function's `SET`
/// clause, the caller's value comes back when the call returns (the Caller's nest level
/// ends) or its transaction aborts. `SET LOCAL` would last to the end of the caller's
/// transaction instead.
pub fn set_for_call(name: &std::ffi::CStr, value: &std::ffi::CStr) {
    // A background worker that commits as it goes (restore(atomic => false)) is the call: its
    // settings must outlive each of its transactions.
    let action = if CALL_IS_SESSION.get() {
        pg_sys::GucAction::GUC_ACTION_SET
    } else {
        pg_sys::GucAction::GUC_ACTION_SAVE
    };
    unsafe {
        let context = if pg_sys::superuser() {
            pg_sys::GucContext::PGC_SUSET
        } else {
            pg_sys::GucContext::PGC_USERSET
        };
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            context,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            0,
            false,
        );
    }
}

thread_local! {
    static CALL_IS_SESSION: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// For a background worker whose whole session is one call that commits along the way:
/// `set_for_call` then sets for the session (GUC_ACTION_SAVE values would end with each
/// transaction).
pub fn call_is_session() {
    CALL_IS_SESSION.set(true);
}

impl Drop for PinnedSearchPath {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            unsafe { pg_sys::AtEOXact_GUC(true, self.nest_level) };
        }
    }
}
