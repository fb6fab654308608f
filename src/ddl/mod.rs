//! DDL of what a backup holds, from the system catalogs in-process (pg_get_*def and friends):
//! `collect` finds every object of the selection with its dependencies, `graph` sorts them
//! into restore order and breaks dependency loops; the result is the archive's TOC.

pub mod collect;
pub mod graph;
pub mod selection;

use pgrx::prelude::*;

use crate::archive::toc::{Section, TocEntry};
use crate::error::Result;
use selection::Selection;

/// The TOC of a backup of `sel`. `schema_only` leaves the data entries out, `data_only`
/// keeps only them (and the sequence values). Also the extension configuration tables whose
/// rows the backup holds, in load order.
pub fn extract(
    sel: &Selection,
    schema_only: bool,
    data_only: bool,
) -> Result<(Vec<TocEntry>, Vec<collect::ConfigTable>)> {
    let cx = collect::Context::from_selection(sel, schema_only);
    let (mut toc, warnings, config) = collect::collect(&cx)?;
    for w in warnings {
        pgrx::warning!("pg_backup: {}", w.0);
    }
    if data_only {
        toc.retain(|e| e.section == Section::Data);
        let ids: std::collections::HashSet<u32> = toc.iter().map(|e| e.id).collect();
        for e in toc.iter_mut() {
            e.deps.retain(|d| ids.contains(d));
        }
    }
    Ok((toc, config))
}

/// The pages of every large object, streamed by COPY like a table.
pub const LARGE_OBJECT_PAGES: &str =
    "SELECT loid, pageno, data FROM pg_catalog.pg_largeobject ORDER BY loid, pageno";

/// The columns COPY writes for a table, in order (generated columns are not copied).
pub fn copy_columns(rel: pg_sys::Oid) -> Result<Vec<String>> {
    Ok(Spi::get_one_with_args::<Vec<crate::text::Text>>(
        "SELECT coalesce(array_agg(attname::text ORDER BY attnum), '{}') FROM pg_attribute
         WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = ''",
        &[rel.into()],
    )?
    .unwrap_or_default()
    .into_iter()
    .map(String::from)
    .collect())
}
