//! Symbols of earlier releases whose SQL signature changed since.
//!
//! Until `ALTER EXTENSION pg_backup UPDATE` runs in a database, that database's SQL functions
//! are still the earlier release's and call the earlier C symbols. A symbol whose argument list
//! changed must never be reused for the new list (the old arguments would be unboxed as the new
//! types), so every such function gets a new Rust name in the release that changes it (like
//! PostgreSQL's own `pg_stat_statements_1_9`), and the old symbol stays here: it reads no
//! argument and raises the catalog-version error, whose HINT gives the exact command to run.

use pgrx::prelude::*;

use crate::error::OrRaise;

macro_rules! superseded {
    ($($symbol:ident / $finfo:ident),* $(,)?) => {$(
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        #[no_mangle]
        #[doc(hidden)]
        #[pg_guard]
        pub unsafe extern "C-unwind" fn $symbol(
            _fcinfo: pg_sys::FunctionCallInfo,
        ) -> pg_sys::Datum {
            crate::catalog::version::require_current().or_raise();
            // The catalog says this release, yet calls an earlier release's symbol: only a
            // hand-made function definition can do that.
            crate::error::BackupError::CatalogOutdated {
                message: format!(
                    "function symbol \"{}\" belongs to an earlier release of pg_backup",
                    stringify!($symbol)
                ),
                hint: "Recreate the extension's functions with ALTER EXTENSION pg_backup UPDATE.".into(),
            }
            .raise()
        }
    )*};
}

// 0.1.0 -> 0.2.0: create, verify, rescan, restore and schedule took new arguments.
superseded!(
    create_backup_wrapper / pg_finfo_create_backup_wrapper,
    verify_wrapper / pg_finfo_verify_wrapper,
    rescan_wrapper / pg_finfo_rescan_wrapper,
    restore_wrapper / pg_finfo_restore_wrapper,
    schedule_wrapper / pg_finfo_schedule_wrapper,
);

// 0.2.0 -> 0.3.0: restore took run_analyze (issue 16).
superseded!(restore_0_2_wrapper / pg_finfo_restore_0_2_wrapper);

// 0.3.0 development (issue 20): restore took storage, rescan took database.
superseded!(
    restore_0_3_wrapper / pg_finfo_restore_0_3_wrapper,
    rescan_0_2_wrapper / pg_finfo_rescan_0_2_wrapper,
);

// 0.2.0 -> 0.3.0: schedule took timezone, timeout, retries, overlap, drill and drill_checks
// (issue 21).
superseded!(schedule_0_2_wrapper / pg_finfo_schedule_0_2_wrapper);
