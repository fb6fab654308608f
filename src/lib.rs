//! pg_backup: consistent, checksummed, compressed logical backups of a PostgreSQL database,
//! driven from SQL. See README.md for the user's manual and ../shared/DESIGN.md for the contract.

// Every unsafe block says why it is sound (issue 18).
#![deny(clippy::undocumented_unsafe_blocks)]

use pgrx::prelude::*;

pub mod alerts;
pub mod archive;
pub mod backup;
pub mod backup_lock;
pub mod catalog;
pub mod copy;
pub mod crypto;
pub mod ddl;
pub mod drill;
pub mod encoding;
pub mod error;
pub mod guc;
pub mod health;
pub mod query;
pub mod restore;
pub mod scheduler;
pub mod security;
pub mod server_api;
pub mod session;
pub mod signals;
pub mod sql_api;
pub mod storage;
pub mod subtransaction;
pub mod text;
pub mod threads;
pub mod workers;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);
extension_sql_file!("../sql/storage.sql", name = "storage");
extension_sql_file!("../sql/signing.sql", name = "signing");
extension_sql_file!("../sql/drills.sql", name = "drills", requires = ["catalog"]);
extension_sql_file!(
    "../sql/schedules.sql",
    name = "schedules",
    requires = ["catalog", "storage"]
);
extension_sql_file!(
    "../sql/health.sql",
    name = "health",
    requires = [
        "catalog",
        "drills",
        "schedules",
        sql_api::health::schedule_times
    ]
);
extension_sql_file!("../sql/alerts.sql", name = "alerts", requires = ["catalog"]);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    no_backtraces_in_errors();
    // No Rust backtrace in any error a client sees, whatever RUST_BACKTRACE says.
    error::install_panic_hook();
    error::set_interrupt_check(copy::check_for_interrupts);
    // pg_upgrade loads libraries only to check them; define nothing then.
    // SAFETY: a plain bool global of the postmaster/backend, set before any library loads;
    // read on the process's only thread.
    if unsafe { pg_sys::IsBinaryUpgrade } {
        return;
    }
    guc::init();
    // The scheduler needs a static worker, and the runs in flight shared memory, which only
    // shared_preload_libraries can provide.
    // SAFETY: a plain bool global PostgreSQL sets around the loading of
    // shared_preload_libraries; read on the process's only thread, during that loading.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        catalog::runs::init();
        scheduler::worker::register();
    }
}

/// No Rust backtrace ever reaches a client. pgrx attaches `Backtrace::capture()` to the DETAIL
/// of every error that crosses a Rust frame, and captures are on whenever the server was
/// started with RUST_BACKTRACE set. RUST_LIB_BACKTRACE=0 turns off exactly these captures
/// (read once, at this library's first capture, which comes after loading), while the panic
/// messages of helper threads in the server log keep theirs (they follow RUST_BACKTRACE).
fn no_backtraces_in_errors() {
    if std::env::var_os("RUST_LIB_BACKTRACE").as_deref() != Some(std::ffi::OsStr::new("0")) {
        // Changing the environment is sound only while no other thread reads it: this runs
        // from _PG_init, as the library loads into a single-threaded PostgreSQL process (the
        // postmaster with shared_preload_libraries, whose children inherit it, or a
        // backend), before pg_backup starts any thread.
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[path = "../pgrx-tests/mod.rs"]
mod pgrx_tests;

/// Used by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'pg_backup'",
            "max_worker_processes = 32",
        ]
    }
}
