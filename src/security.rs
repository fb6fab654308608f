//! Running as the extension owner safely: our functions are SECURITY DEFINER, so on entry they
//! remember the caller's search_path (to resolve the caller's bare table names the way
//! regclass would) and then pin search_path to `pg_catalog, pg_temp` for everything they run,
//! exactly as a `SET search_path` clause would, but after that first look.

use pgrx::prelude::*;

use crate::error::Result;

pub const PINNED_SEARCH_PATH: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// The caller's context, captured before the search_path is pinned.
pub struct Caller {
    /// Effective search_path of the caller, implicit schemas included, in order.
    pub schemas: Vec<String>,
    /// The role the caller acts as (SET ROLE aware), not the definer.
    pub role: String,
    _pin: PinnedSearchPath,
}

pub fn enter() -> Result<Caller> {
    crate::catalog::version::require_current()?;
    let schemas: Vec<String> = crate::query::one::<Vec<String>>(
        "SELECT pg_catalog.current_schemas(true)::pg_catalog.text[]",
        &[],
    )?
    .unwrap_or_default();
    let role = unsafe {
        let oid = pg_sys::GetOuterUserId();
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
        _pin: PinnedSearchPath::new(),
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
        _pin: PinnedSearchPath::new(),
    })
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

/// Set a setting for the rest of this SQL function call only: like a function's `SET`
/// clause, the caller's value comes back when the call returns (the Caller's nest level
/// ends) or its transaction aborts. `SET LOCAL` would last to the end of the caller's
/// transaction instead.
pub fn set_for_call(name: &std::ffi::CStr, value: &std::ffi::CStr) {
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
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
}

impl Drop for PinnedSearchPath {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            unsafe { pg_sys::AtEOXact_GUC(true, self.nest_level) };
        }
    }
}
