//! The object catalog of a backup, after pg_dump.c: every dumpable object of the selection,
//! one module per object family, each returning graph nodes (`graph::Node`) with the SQL that
//! creates them. This module runs them, adds the dependencies PostgreSQL records in pg_depend
//! (mapped onto the collected objects the way pg_dump's getDependencies does), then the
//! decorations (owners, comments, security labels, grants), and sorts the result into a TOC.
//!
//! Definitions are read with `search_path = ''`, so every name in them is schema-qualified.
//!
//! To add a family: a module with `pub fn collect(cx: &Context, out: &mut Collected) ->
//! Result<()>` that pushes `Node`s (see `graph::Node::new` and its builder methods) keyed by
//! `ObjKey::new(catalog_oid, object_oid)` (the catalog row's `tableoid, oid`), and registers
//! in `out.aliases` the catalog rows that are part of one of its objects (a table's row type,
//! a view's rewrite rule, a constraint's index), then call it from `collect` below.

mod casts;
pub mod class;
mod codes;
mod common;
mod constraints;
mod database;
mod decorations;
mod extension_config;
mod foreign;
mod namespaces;
mod operators;
mod publications;
mod relations;
mod routines;
mod rules;
mod statistics;
mod subscriptions;
mod system_acls;
mod text_search;
mod types;

use std::collections::HashMap;

use pgrx::prelude::*;

use super::graph::{self, LoopWarning, ObjKey, Role};
use crate::archive::toc::TocEntry;
use crate::error::Result;

pub use common::{
    data_key, ident, literal, not_extension_member, owner_sql, qualified, query, server_version,
    unexpected, user_schema, Collected, ConfigTable, Context, Row,
};

/// Collect everything `cx` selects and sort it into a TOC; also the extension configuration
/// tables whose rows the backup writes.
///
/// Every query runs in one subtransaction: a PostgreSQL ERROR raised by any of them (a catalog
/// this release does not read, a cancel) comes back as `BackupError::CatalogRead`, with
/// pg_backup's SQLSTATE and HINT, never raw.
pub fn collect(cx: &Context) -> Result<(Vec<TocEntry>, Vec<LoopWarning>, Vec<ConfigTable>)> {
    match crate::subtransaction::run_result(|| collect_all(cx)) {
        Ok(result) => result,
        Err(caught) => {
            let (sqlstate, message) = match &caught {
                pgrx::pg_sys::panic::CaughtError::PostgresError(r)
                | pgrx::pg_sys::panic::CaughtError::ErrorReport(r)
                | pgrx::pg_sys::panic::CaughtError::RustPanic { ereport: r, .. } => (
                    crate::error::sqlstate_of(r.sql_error_code()),
                    crate::error::report_text(r.message()),
                ),
            };
            Err(crate::error::BackupError::catalog_read(
                &sqlstate,
                &message,
                server_version(),
            ))
        }
    }
}

fn collect_all(cx: &Context) -> Result<(Vec<TocEntry>, Vec<LoopWarning>, Vec<ConfigTable>)> {
    let _path = EmptySearchPath::set();
    let mut out = Collected::default();
    namespaces::collect(cx, &mut out)?;
    extension_config::collect(cx, &mut out)?;
    types::collect(cx, &mut out)?;
    routines::collect(cx, &mut out)?;
    operators::collect(cx, &mut out)?;
    casts::collect(cx, &mut out)?;
    text_search::collect(cx, &mut out)?;
    foreign::collect(cx, &mut out)?;
    relations::collect(cx, &mut out)?;
    constraints::collect(cx, &mut out)?;
    rules::collect(cx, &mut out)?;
    publications::collect(cx, &mut out)?;
    subscriptions::collect(cx, &mut out)?;
    database::collect(cx, &mut out)?;
    system_acls::collect(cx, &mut out)?;
    add_dependencies(&mut out)?;
    decorations::collect(cx, &mut out)?;
    let config = std::mem::take(&mut out.config);
    let (mut toc, warnings) = graph::sort(out.nodes);
    statistics::append(cx, &mut toc)?;
    Ok((toc, warnings, config))
}

/// pg_depend's dependencies among the collected objects (as pg_dump's getDependencies):
/// rows of objects that are part of another (aliases) count as that object's; extension
/// members count as their extension; dependencies on anything not collected are dropped by
/// the sort.
fn add_dependencies(out: &mut Collected) -> Result<()> {
    let index: HashMap<ObjKey, usize> = out
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.key, i))
        .collect();
    let rows: Vec<(u32, u32, u32, u32, i32)> = Spi::connect(|client| {
        client
            .select(
                "SELECT d.classid, d.objid, d.refclassid, d.refobjid, d.objsubid FROM pg_catalog.pg_depend d
                 WHERE d.deptype NOT IN ('p', 'e')
                   -- A sequence owned by a column: OWNED BY is an entry of its own.
                   AND NOT (d.deptype = 'a' AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                            AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                            AND (SELECT relkind FROM pg_catalog.pg_class WHERE oid = d.objid) = 'S')
                 UNION ALL
                 -- Extension members stand for their extension.
                 SELECT d.classid, d.objid, d.refclassid, d.refobjid, -1 FROM pg_catalog.pg_depend d WHERE d.deptype = 'e'",
                None,
                &[],
            )?
            .map(|r| {
                let row = Row(&r);
                Ok((row.oid(1)?, row.oid(2)?, row.oid(3)?, row.oid(4)?, row.int(5)?))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut aliases = out.aliases.clone();
    for &(class, oid, refclass, refoid, sub) in &rows {
        if sub == -1 {
            let ext = ObjKey::new(refclass, refoid);
            if index.contains_key(&ext) {
                aliases.entry((class, oid)).or_insert(ext);
            }
        }
    }
    // Aliases chain (an array type is its element type's, a row type its table's).
    let resolve = |class: u32, oid: u32| -> Option<ObjKey> {
        let mut k = ObjKey::new(class, oid);
        for _ in 0..4 {
            match aliases.get(&(k.class, k.oid)) {
                Some(to) if *to != k => k = *to,
                _ => break,
            }
        }
        index.contains_key(&k).then_some(k)
    };
    for (class, oid, refclass, refoid, sub) in rows {
        if sub == -1 {
            continue;
        }
        let (Some(from), Some(to)) = (resolve(class, oid), resolve(refclass, refoid)) else {
            continue;
        };
        if from != to {
            out.nodes[index[&from]].deps.insert(to);
        }
    }
    // A materialized view's refresh waits for the refresh of those it reads.
    let refreshes: Vec<(usize, ObjKey)> = out
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.key.role == Role::Refresh)
        .map(|(i, n)| (i, n.key.with(Role::Object)))
        .collect();
    for (i, mv) in refreshes {
        // Through views (and their queries), down to the materialized views read.
        let mut stack: Vec<ObjKey> = index
            .get(&mv)
            .map(|&m| out.nodes[m].deps.iter().copied().collect())
            .unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        while let Some(d) = stack.pop() {
            if !seen.insert(d) {
                continue;
            }
            let r = d.with(Role::Refresh);
            if index.contains_key(&r) {
                out.nodes[i].deps.insert(r);
                continue;
            }
            if let Some(&j) = index.get(&d) {
                let n = &out.nodes[j];
                if matches!(
                    n.kind,
                    crate::archive::toc::EntryKind::View
                        | crate::archive::toc::EntryKind::ViewQuery
                ) {
                    stack.extend(n.deps.iter().copied());
                    // A view's query is its part: what it reads hangs off the part.
                    stack.extend(
                        out.nodes
                            .iter()
                            .filter(|p| p.part_of == Some(d))
                            .flat_map(|p| p.deps.iter().copied()),
                    );
                }
            }
        }
    }
    // Extension members are never decorated on their own (their extension recreates them).
    let extensions: std::collections::HashSet<ObjKey> = out
        .nodes
        .iter()
        .filter(|n| n.kind == crate::archive::toc::EntryKind::Extension)
        .map(|n| n.key)
        .collect();
    aliases.retain(|k, v| !extensions.contains(v) || out.aliases.contains_key(k));
    out.aliases = aliases;
    Ok(())
}

/// `search_path` is empty while objects are collected (every name comes out qualified) and
/// back to what it was afterwards, as a function's SET clause would do.
pub(crate) struct EmptySearchPath {
    nest_level: i32,
}

impl EmptySearchPath {
    pub(crate) fn set() -> Self {
        // SAFETY: opens a GUC nest level inside the current transaction, on the backend's
        // thread; `drop` (or the transaction's abort) closes it with AtEOXact_GUC.
        let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
        crate::security::set_for_call(c"search_path", c"");
        EmptySearchPath { nest_level }
    }
}

impl Drop for EmptySearchPath {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // SAFETY: closes the nest level `set` opened; levels opened after it were closed
            // by their own guards first. During an ERROR the abort closes it instead.
            unsafe { pg_sys::AtEOXact_GUC(true, self.nest_level) };
        }
    }
}
