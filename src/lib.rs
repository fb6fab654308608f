//! pg_backup: consistent, checksummed, compressed logical backups of a PostgreSQL database,
//! driven from SQL. See README.md for the user's manual and ../shared/DESIGN.md for the contract.

use pgrx::prelude::*;

pub mod archive;
pub mod backup;
pub mod catalog;
pub mod copy;
pub mod crypto;
pub mod ddl;
pub mod error;
pub mod guc;
pub mod query;
pub mod restore;
pub mod scheduler;
pub mod security;
pub mod session;
pub mod signals;
pub mod sql_api;
pub mod storage;
pub mod subtransaction;
pub mod text;
pub mod threads;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);
extension_sql_file!("../sql/storage.sql", name = "storage");
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // No Rust backtrace in any error a client sees, whatever RUST_BACKTRACE says.
    error::install_panic_hook();
    // pg_upgrade loads libraries only to check them; define nothing then.
    if unsafe { pg_sys::IsBinaryUpgrade } {
        return;
    }
    guc::init();
    // The scheduler needs a static worker, and the runs in flight shared memory, which only
    // shared_preload_libraries can provide.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        catalog::runs::init();
        scheduler::worker::register();
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
