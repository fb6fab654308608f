//! What a restore asks of the server to go faster, and leaves behind for the planner:
//! memory and parallel workers for its index builds (for the call only, like a function's SET
//! clause), and planner statistics of the tables it loaded (ANALYZE; pg_dump carries none
//! before PostgreSQL 18, so without it the first queries after a restore plan blind).

use pgrx::prelude::*;

use crate::error::Result;
use crate::guc;
use crate::security;

/// For the rest of this call: index builds, constraint validation and ANALYZE get at least
/// `backup.restore_maintenance_work_mem`, and index builds may use parallel workers. A value
/// the session already set higher is kept.
pub fn raise_maintenance_settings() -> Result<()> {
    let want_kb = guc::restore_maintenance_work_mem_kb();
    let current_kb = Spi::get_one::<i64>(
        "SELECT setting::pg_catalog.int8 FROM pg_catalog.pg_settings WHERE name = 'maintenance_work_mem'",
    )?
    .unwrap_or(0);
    if want_kb > current_kb {
        let value = std::ffi::CString::new(format!("{want_kb}kB")).expect("no NUL");
        security::set_for_call(c"maintenance_work_mem", &value);
    }
    // As many maintenance workers as the server lets parallel queries have (at most 4: beyond
    // that an index build gains little and takes workers from everyone else).
    let (current, allowed) = Spi::get_two::<i32, i32>(
        "SELECT current_setting('max_parallel_maintenance_workers')::pg_catalog.int4,
                current_setting('max_parallel_workers')::pg_catalog.int4",
    )?;
    let want = allowed.unwrap_or(0).clamp(0, 4);
    if want > current.unwrap_or(0) {
        let value = std::ffi::CString::new(want.to_string()).expect("no NUL");
        security::set_for_call(c"max_parallel_maintenance_workers", &value);
    }
    Ok(())
}

/// ANALYZE each table (quoted names). PostgreSQL runs ANALYZE's expressions (expression
/// indexes, extended statistics) as the table's owner itself.
pub fn analyze<'a>(tables: impl IntoIterator<Item = &'a str>) -> Result<()> {
    for t in tables {
        crate::text::run(&format!("ANALYZE {t}"))?;
    }
    Ok(())
}
