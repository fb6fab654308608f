//! The few server functions whose name or signature differs between the PostgreSQL majors
//! pg_backup builds for (pgrx features pg15, pg17, pg18), each behind one safe-to-call name.
//! Catalog differences are not here: collectors check `server_version_num` at run time
//! (src/ddl/collect/).

use pgrx::pg_sys;
use std::ffi::CStr;

/// The encoding id of a PostgreSQL encoding name, -1 when unknown. From 16 on the backend's
/// symbol is `pg_char_to_encoding_private` (pg_wchar.h renames it).
pub fn char_to_encoding(name: &CStr) -> i32 {
    // SAFETY: a NUL-terminated name that outlives the call; an unknown name returns -1.
    #[cfg(feature = "pg15")]
    unsafe {
        pg_sys::pg_char_to_encoding(name.as_ptr())
    }
    // SAFETY: as above.
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    unsafe {
        pg_sys::pg_char_to_encoding_private(name.as_ptr())
    }
}

/// Whether role `role` holds `mode` on schema `nsp` (superusers do, as in
/// has_schema_privilege). 16 replaced the per-kind checks by `object_aclcheck`.
pub fn namespace_aclcheck(nsp: pg_sys::Oid, role: pg_sys::Oid, mode: pg_sys::AclMode) -> bool {
    // SAFETY: a privilege check by oids, reading the system cache on the backend's thread.
    #[cfg(feature = "pg15")]
    let result = unsafe { pg_sys::pg_namespace_aclcheck(nsp, role, mode) };
    // SAFETY: as above.
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    let result = unsafe { pg_sys::object_aclcheck(pg_sys::NamespaceRelationId, nsp, role, mode) };
    result == pg_sys::AclResult::ACLCHECK_OK
}

/// Installs `handler` for signal `signo` (PostgreSQL's pqsignal; 18 calls the backend's
/// `pqsignal_be`, which returns nothing).
///
/// # Safety
/// As pqsignal: in a backend or background worker process, with a handler that only touches
/// async-signal-safe state.
pub unsafe fn set_signal_handler(signo: i32, handler: pg_sys::pqsigfunc) {
    #[cfg(any(feature = "pg15", feature = "pg17"))]
    pg_sys::pqsignal(signo, handler);
    #[cfg(feature = "pg18")]
    pg_sys::pqsignal_be(signo, handler);
}

/// BeginCopyTo with no data callback: 16 added the `data_dest_cb` argument after `is_program`.
///
/// # Safety
/// As BeginCopyTo: a valid parse state, relation or raw statement, file name and options.
#[allow(clippy::too_many_arguments)]
pub unsafe fn begin_copy_to(
    pstate: *mut pg_sys::ParseState,
    rel: pg_sys::Relation,
    raw_query: *mut pg_sys::RawStmt,
    query_rel: pg_sys::Oid,
    filename: *const std::ffi::c_char,
    is_program: bool,
    attnames: *mut pg_sys::List,
    options: *mut pg_sys::List,
) -> pg_sys::CopyToState {
    #[cfg(feature = "pg15")]
    return pg_sys::BeginCopyTo(
        pstate, rel, raw_query, query_rel, filename, is_program, attnames, options,
    );
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    return pg_sys::BeginCopyTo(
        pstate, rel, raw_query, query_rel, filename, is_program, None, attnames, options,
    );
}

/// Every GUC of the backend as (name, setting as pg_settings.setting shows it, context
/// name as pg_settings.context), hidden ones included.
pub fn guc_settings() -> Vec<(String, String, &'static str)> {
    let text = |p: *const std::ffi::c_char| {
        // SAFETY: a NUL-terminated string from the GUC machinery, or NULL.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    #[cfg(feature = "pg15")]
    {
        let context_name = |c: &str| -> &'static str {
            match c {
                "user" => "user",
                "superuser" => "superuser",
                _ => "other",
            }
        };
        // SAFETY: reads the size of the backend's GUC table, on the backend's thread.
        let n = unsafe { pg_sys::GetNumConfigOptions() };
        (0..n)
            .filter_map(|i| {
                let mut values: [*const std::ffi::c_char; 17] = [std::ptr::null(); 17];
                let mut noshow = false;
                // SAFETY: `i` is below GetNumConfigOptions(); GetConfigOptionByNum fills the
                // 17 columns of pg_settings (pointers to constants or palloc'd strings).
                unsafe { pg_sys::GetConfigOptionByNum(i, values.as_mut_ptr(), &mut noshow) };
                Some((
                    text(values[0])?,
                    text(values[1])?,
                    context_name(&text(values[6])?),
                ))
            })
            .collect()
    }
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    {
        let mut n: i32 = 0;
        // SAFETY: returns the backend's GUC array (valid until a GUC is added, which nothing
        // does while this runs on the backend's thread) and its length.
        let vars = unsafe { pg_sys::get_guc_variables(&mut n) };
        (0..n.max(0) as usize)
            .filter_map(|i| {
                // SAFETY: `i` is below the array's length; each entry is a valid GUC record.
                let conf = unsafe { *vars.add(i) };
                // SAFETY: `conf` is valid (above); its name is a NUL-terminated constant.
                let name = text(unsafe { (*conf).name })?;
                // SAFETY: as above; ShowGUCOption(conf, false) is pg_settings.setting (the
                // value in its base unit, through the GUC's show hook), palloc'd.
                let setting = text(unsafe { pg_sys::ShowGUCOption(conf, false) })?;
                // SAFETY: as above.
                let context = match unsafe { (*conf).context } {
                    pg_sys::GucContext::PGC_USERSET => "user",
                    pg_sys::GucContext::PGC_SUSET => "superuser",
                    _ => "other",
                };
                Some((name, setting, context))
            })
            .collect()
    }
}

/// `STATEMENT_TIMEOUT` of utils/timeout.h's `TimeoutId`: 3 in every major pg_backup builds for
/// (15, 17 and 18 checked; 17 added TRANSACTION_TIMEOUT after it). pgrx's bindings leave
/// timeout.h out.
const STATEMENT_TIMEOUT: core::ffi::c_int = 3;

unsafe extern "C-unwind" {
    fn enable_timeout_after(id: core::ffi::c_int, delay_ms: core::ffi::c_int);
    fn disable_timeout(id: core::ffi::c_int, keep_indicator: bool);
}

/// Arms the process's statement timeout to fire after `after` (at least 1 ms): what
/// `statement_timeout` does for one statement of a client, for a background worker's whole
/// run. When it fires, the next interrupt check raises 57014 "canceling statement due to
/// statement timeout", also while waiting for a lock. Needs SIGINT handled as a cancel.
pub fn arm_statement_timeout(after: std::time::Duration) {
    let ms = after.as_millis().clamp(1, i32::MAX as u128) as core::ffi::c_int;
    // SAFETY: a backend or background worker connected to a database (InitPostgres registered
    // STATEMENT_TIMEOUT's handler), on its main thread.
    // An ERROR inside (none is expected) becomes a Rust panic through the FFI guard.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| enable_timeout_after(STATEMENT_TIMEOUT, ms)) };
}

/// Disarms what [`arm_statement_timeout`] armed (nothing if it already fired).
pub fn disarm_statement_timeout() {
    // SAFETY: as above; disabling a timeout that is not active does nothing.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| disable_timeout(STATEMENT_TIMEOUT, false)) };
}

/// Forget a cancel that [`arm_statement_timeout`]'s timeout requested but nothing acted on:
/// it fired after the work it bounded had ended (during its commit, where interrupts are held
/// off). Left pending, it would cancel whatever this process does next (a schedule's
/// retention, the drill it starts) with "canceling statement due to statement timeout".
/// Call only after [`disarm_statement_timeout`] (which clears the timeout's indicator), when
/// the work under the timeout succeeded.
pub fn forget_fired_statement_timeout() {
    // SAFETY: a backend-local flag set by signal handlers; written on the process's main
    // thread outside a critical section, as ProcessInterrupts itself resets it. A cancel that
    // arrives after this write sets it again.
    unsafe { (&raw mut pg_sys::QueryCancelPending).write_volatile(0) };
}
