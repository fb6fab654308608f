//! Streaming table data through PostgreSQL's own COPY machinery.

pub mod copy_from;
pub mod copy_to;
pub mod script;

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use pgrx::pg_sys;

/// The backend's side of every loop that waits for, reads, hashes or decompresses archive
/// data: a cancel (or statement_timeout, or pg_terminate_backend) takes effect here. Helper
/// threads never call it (they run with every signal blocked, see `threads`).
pub fn check_for_interrupts() {
    pgrx::check_for_interrupts!();
}

/// Receive from a helper thread, checking for a cancel at least every 100 ms while waiting.
/// None when the thread is done (or gone).
pub fn recv_checking_interrupts<T>(rx: &Receiver<T>) -> Option<T> {
    loop {
        check_for_interrupts();
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(v) => return Some(v),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// How rows are laid out in an archive file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CopyFormat {
    /// COPY text format (native and sql archives).
    Text,
    /// COPY CSV with a header row (csv archives).
    CsvHeader,
    /// One JSON document per line: a single column written as CSV with a quote and a
    /// delimiter that JSON text never contains, so COPY neither quotes nor escapes it.
    JsonLines,
}

unsafe fn def_elem(name: &std::ffi::CStr, value: *mut pg_sys::Node) -> *mut std::ffi::c_void {
    pg_sys::makeDefElem(name.as_ptr() as *mut _, value, -1) as *mut std::ffi::c_void
}

unsafe fn string_node(value: &std::ffi::CStr) -> *mut pg_sys::Node {
    pg_sys::makeString(pg_sys::pstrdup(value.as_ptr())) as *mut pg_sys::Node
}

impl CopyFormat {
    /// COPY options for this layout, always in the server encoding (archives hold text in the
    /// server encoding whatever the session's client_encoding).
    ///
    /// # Safety
    /// Allocates in the current memory context; call inside a transaction.
    pub(crate) unsafe fn options(self) -> *mut pg_sys::List {
        self.options_in(std::ffi::CStr::from_ptr(pg_sys::GetDatabaseEncodingName()))
    }

    /// COPY options for this layout with the text in `encoding` (on restore: the encoding of
    /// the database that was backed up, which COPY converts from, as psql's client_encoding).
    ///
    /// # Safety
    /// Allocates in the current memory context; call inside a transaction.
    pub(crate) unsafe fn options_in(self, encoding: &std::ffi::CStr) -> *mut pg_sys::List {
        let mut list = pg_sys::lappend(
            std::ptr::null_mut(),
            def_elem(c"encoding", string_node(encoding)),
        );
        match self {
            CopyFormat::Text => {}
            CopyFormat::CsvHeader => {
                list = pg_sys::lappend(list, def_elem(c"format", string_node(c"csv")));
                list = pg_sys::lappend(
                    list,
                    def_elem(c"header", pg_sys::makeBoolean(true) as *mut pg_sys::Node),
                );
            }
            CopyFormat::JsonLines => {
                list = pg_sys::lappend(list, def_elem(c"format", string_node(c"csv")));
                list = pg_sys::lappend(list, def_elem(c"quote", string_node(c"\x01")));
                list = pg_sys::lappend(list, def_elem(c"delimiter", string_node(c"\x02")));
            }
        }
        list
    }
}
