//! Running as the extension owner safely. The SQL functions a user calls are SECURITY
//! INVOKER: on entry (`enter`) they take the role that is current at the call as the caller
//! (as any SQL function sees it: `current_user`, SET ROLE and SECURITY DEFINER frames
//! included), remember the caller's search_path (to resolve the caller's bare table names the
//! way regclass would), and only then switch to the extension owner for the rest of the call
//! (`SetUserIdAndSecContext`, as a SECURITY DEFINER call would) and pin search_path to
//! `pg_catalog, pg_temp`, exactly as a `SET search_path` clause would, but after that first
//! look. (Until 0.2.0 the functions were SECURITY DEFINER and the caller was the session's
//! outer role: a SECURITY DEFINER function of an untrusted role, run by a superuser, made the
//! call a superuser's.)
//!
//! Restore safety lives in the submodules: `owner` (run a step with an object owner's
//! rights), `privileges` (what the caller may restore), `targets` (schemas never written),
//! `redact` (error text without row values), `locks` (the lock-table limit).

pub mod locks;
pub mod owner;
pub mod privileges;
pub mod redact;
pub mod signing;
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
    // Dropped in this order: the settings first, then the caller's user id comes back.
    _pin: Option<PinnedSearchPath>,
    _as_owner: Option<AsExtensionOwner>,
}

fn role_name(oid: pg_sys::Oid) -> String {
    // SAFETY: a syscache lookup on the backend's thread inside a transaction; with
    // noerr = true it returns NULL for a dropped role, else a palloc'd NUL-terminated name
    // that lives in the current memory context while it is copied here.
    unsafe {
        let name = pg_sys::GetUserNameFromId(oid, true);
        if name.is_null() {
            String::from("unknown")
        } else {
            // A shared catalog's name, as for the database's (text::database_name).
            crate::text::database_name(std::ffi::CStr::from_ptr(name).to_bytes())
        }
    }
}

/// The SQL functions that call `enter()`: SECURITY INVOKER (sql/finalize.sql); every other
/// function of the extension is SECURITY DEFINER.
pub const INVOKER_FUNCTIONS: &[&str] = &[
    "create",
    "verify",
    "delete",
    "prune",
    "rescan",
    "add_storage",
    "drop_storage",
    "restore",
    "schedule",
    "unschedule",
    "run_schedule",
    "trust_key",
    "untrust_key",
    "archives",
    "add_webhook",
    "drop_webhook",
    "drill",
];

/// The extension owner, whose rights the functions work with.
fn extension_owner() -> Result<Option<pg_sys::Oid>> {
    Ok(crate::query::one::<pg_sys::Oid>(
        "SELECT (SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'pg_backup')",
        &[],
    )?)
}

/// The role that called: the current user at the call. Only if this database's functions are
/// still SECURITY DEFINER (a catalog from before 0.2.0, which the version check refuses next)
/// is the current user the definer, and the session's outer role is all that is known.
fn calling_role(owner: Option<pg_sys::Oid>) -> Result<pg_sys::Oid> {
    // SAFETY: reads the backend-local current user id (set at connection); on the backend's
    // thread, as every caller of `enter` is.
    let current = unsafe { pg_sys::GetUserId() };
    if Some(current) != owner {
        return Ok(current);
    }
    let definer = crate::query::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_extension e
                        ON e.extname = 'pg_backup' AND p.pronamespace = e.extnamespace
                        WHERE p.prosecdef AND p.proname = ANY($1))",
        &[INVOKER_FUNCTIONS.to_vec().into()],
    )?
    .unwrap_or(false);
    Ok(if definer {
        // SAFETY: reads the backend-local outer (session) user id, as GetUserId above.
        unsafe { pg_sys::GetOuterUserId() }
    } else {
        current
    })
}

pub fn enter() -> Result<Caller> {
    // SAFETY: reads the top transaction's state; a SQL function call always runs inside a
    // transaction, on the backend's thread.
    let had_xid = unsafe { pg_sys::GetTopTransactionIdIfAny() } != pg_sys::InvalidTransactionId;
    // As the caller: its own view of its search_path ($user is the caller's name, schemas it
    // may not use are left out, as regclass would).
    let schemas: Vec<String> = crate::query::one::<Vec<crate::text::Text>>(
        "SELECT pg_catalog.current_schemas(true)::pg_catalog.text[]",
        &[],
    )?
    .unwrap_or_default()
    .into_iter()
    .map(String::from)
    .collect();
    let owner = extension_owner()?;
    let oid = calling_role(owner)?;
    let as_owner = owner.map(|o| AsExtensionOwner::enter(o, oid));
    crate::catalog::version::require_current()?;
    Ok(Caller {
        schemas,
        role: role_name(oid),
        oid,
        had_xid,
        _pin: Some(PinnedSearchPath::new()),
        _as_owner: as_owner,
    })
}

/// The rest of a call runs as the extension owner, as inside a SECURITY DEFINER function: the
/// security context gains SECURITY_LOCAL_USERID_CHANGE (no SET ROLE / SET SESSION
/// AUTHORIZATION inside) and keeps a restricted operation restricted. The caller's user id
/// and context come back when the call returns (Drop) or, after an error, by the
/// (sub)transaction abort, as for fmgr's SECURITY DEFINER calls.
struct AsExtensionOwner {
    saved_user: pg_sys::Oid,
    saved_context: i32,
    saved_caller: Option<pg_sys::Oid>,
}

impl AsExtensionOwner {
    fn enter(owner: pg_sys::Oid, caller: pg_sys::Oid) -> AsExtensionOwner {
        let mut saved_user = pg_sys::InvalidOid;
        let mut saved_context = 0;
        // SAFETY: what a SECURITY DEFINER call does (fmgr_security_definer): the out pointers
        // are valid locals, `owner` is the extension owner's existing role, and the saved
        // user and context are put back by `drop`, or by the transaction's abort
        // (SECURITY_LOCAL_USERID_CHANGE) if an ERROR unwinds past it.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
            pg_sys::SetUserIdAndSecContext(
                owner,
                saved_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
            );
        }
        AsExtensionOwner {
            saved_user,
            saved_context,
            saved_caller: CALLER.replace(Some(caller)),
        }
    }
}

impl Drop for AsExtensionOwner {
    fn drop(&mut self) {
        CALLER.set(self.saved_caller);
        // SAFETY: restores the user id and security context `enter` saved, on the same
        // backend thread.
        unsafe { pg_sys::SetUserIdAndSecContext(self.saved_user, self.saved_context) };
    }
}

/// The role current when the running SQL function was called, while it runs (None outside a
/// call, and in background workers).
pub fn caller_oid() -> Option<pg_sys::Oid> {
    CALLER.get()
}

/// For background workers: a named role for the history, the session's search_path pinned.
pub fn enter_as(role: &str) -> Result<Caller> {
    crate::catalog::version::require_current()?;
    let schemas: Vec<String> = crate::query::one::<Vec<crate::text::Text>>(
        "SELECT pg_catalog.current_schemas(true)::pg_catalog.text[]",
        &[],
    )?
    .unwrap_or_default()
    .into_iter()
    .map(String::from)
    .collect();
    Ok(Caller {
        schemas,
        role: role.to_string(),
        // SAFETY: reads the worker's backend-local session user id (set when it connected).
        oid: unsafe { pg_sys::GetOuterUserId() },
        // The worker's transaction holds pg_backup's own statements only.
        had_xid: false,
        _pin: Some(PinnedSearchPath::new()),
        _as_owner: None,
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
        _as_owner: None,
    }
}

/// Restores the caller's search_path when dropped (on success; after an error the
/// transaction abort restores it).
pub struct PinnedSearchPath {
    nest_level: i32,
}

impl PinnedSearchPath {
    fn new() -> Self {
        // SAFETY: opens a GUC nest level inside the caller's transaction, on the backend's
        // thread; `drop` (or the transaction's abort) closes it with AtEOXact_GUC.
        let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
        set_for_call(c"search_path", PINNED_SEARCH_PATH);
        PinnedSearchPath { nest_level }
    }
}

/// The settings that decide how SQL text and values are written and read back, pinned as
/// pg_dump pins them on its connection and pg_restore in front of every archive
/// (`_doSetFixedOutputState`): string literals standard, dates and intervals ISO / postgres,
/// floats exact, XML as content; and what else changes how a value or a definition is read:
/// `array_nulls` (an unquoted NULL element of an array is NULL, as COPY wrote it),
/// `transform_null_equals` (a definition's `x = NULL` stays a comparison), `backslash_quote`
/// and `escape_string_warning` at their defaults. The README's security model lists them
/// with the settings that are the caller's on purpose.
pub const LITERAL_SETTINGS: &[(&std::ffi::CStr, &std::ffi::CStr)] = &[
    (c"standard_conforming_strings", c"on"),
    (c"backslash_quote", c"safe_encoding"),
    (c"escape_string_warning", c"off"),
    (c"DateStyle", c"ISO, MDY"),
    (c"IntervalStyle", c"postgres"),
    (c"extra_float_digits", c"3"),
    (c"xmloption", c"content"),
    (c"array_nulls", c"on"),
    (c"transform_null_equals", c"off"),
];

/// Pin `LITERAL_SETTINGS` for the call only (see `set_for_call`).
pub fn pin_literal_settings() {
    for (name, value) in LITERAL_SETTINGS {
        set_for_call(name, value);
    }
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
    // SAFETY: `name` and `value` are NUL-terminated C strings that outlive the call (GUC
    // copies the value); on the backend's thread inside a transaction, with the context the
    // calling role is entitled to, so PostgreSQL's own permission checks apply.
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
    static CALLER: std::cell::Cell<Option<pg_sys::Oid>> = const { std::cell::Cell::new(None) };
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
            // SAFETY: closes the nest level `new` opened (nested levels opened after it were
            // closed by their own guards first); during an ERROR the abort closes it instead.
            unsafe { pg_sys::AtEOXact_GUC(true, self.nest_level) };
        }
    }
}
