//! Streaming table data through PostgreSQL's own COPY machinery.

pub mod copy_from;
pub mod copy_to;

use pgrx::pg_sys;

/// COPY options `(ENCODING '<server encoding>')`: archives hold text in the server encoding,
/// whatever the session's client_encoding.
///
/// # Safety
/// Allocates in the current memory context; call inside a transaction.
pub(crate) unsafe fn server_encoding_options() -> *mut pg_sys::List {
    let encoding = pg_sys::GetDatabaseEncodingName();
    let opt = pg_sys::makeDefElem(
        c"encoding".as_ptr() as *mut _,
        pg_sys::makeString(pg_sys::pstrdup(encoding)) as *mut pg_sys::Node,
        -1,
    );
    pg_sys::lappend(std::ptr::null_mut(), opt as *mut std::ffi::c_void)
}
