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
mod codes;
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
mod subscriptions;
mod system_acls;
mod text_search;
mod types;

use std::collections::HashMap;

use pgrx::prelude::*;
use pgrx::spi::SpiHeapTupleData;

use crate::text::Text;

use super::graph::{self, LoopWarning, Node, ObjKey, Role};
use crate::archive::toc::TocEntry;
use crate::backup::select::Selection;
use crate::error::{BackupError, Result};

pub use extension_config::ConfigTable;

/// What to collect.
pub struct Context {
    /// Relations whose definition is backed up.
    pub rels: Vec<pg_sys::Oid>,
    /// Schemas whose objects (types, functions, operators ...) are backed up.
    pub schemas: Vec<pg_sys::Oid>,
    /// Tables whose rows are backed up.
    pub data_tables: Vec<pg_sys::Oid>,
    /// A whole-database backup: database-wide objects (large objects, casts, languages,
    /// foreign data wrappers, event triggers, publications, default privileges, the
    /// database's own properties) come along, as with a plain pg_dump.
    pub whole_database: bool,
    /// Whether sequence values are backed up (not with schema_only).
    pub sequence_values: bool,
    /// Whether large objects are backed up.
    pub large_objects: bool,
    /// Relations left out by exclude_tables / exclude_data (extension configuration tables
    /// included, as with pg_dump).
    pub excluded: Vec<pg_sys::Oid>,
    /// Extension configuration tables asked for by name (`tables`): their rows come along
    /// whether or not their extension does.
    pub config_tables: Vec<pg_sys::Oid>,
    /// The backup is taken by a superuser: subscriptions (superuser secrets) come along.
    pub superuser: bool,
}

impl Context {
    pub fn from_selection(sel: &Selection, schema_only: bool) -> Context {
        Context {
            rels: sel.relations.iter().map(|r| r.oid).collect(),
            schemas: sel.schema_oids.clone(),
            data_tables: if schema_only {
                Vec::new()
            } else {
                sel.data_tables.iter().map(|r| r.oid).collect()
            },
            whole_database: sel.large_objects,
            sequence_values: !schema_only,
            large_objects: sel.large_objects && !schema_only,
            excluded: sel.excluded.clone(),
            config_tables: sel.config_tables.clone(),
            superuser: sel.superuser,
        }
    }
}

/// What the families found.
#[derive(Default)]
pub struct Collected {
    pub nodes: Vec<Node>,
    /// Catalog rows that are part of a collected object: pg_depend rows naming them count as
    /// naming that object. Keyed by (catalog oid, object oid).
    pub aliases: HashMap<(u32, u32), ObjKey>,
    /// Extension configuration tables whose rows the backup writes, in load order.
    pub config: Vec<ConfigTable>,
}

impl Collected {
    pub fn push(&mut self, node: Node) {
        self.nodes.push(node);
    }
    pub fn alias(&mut self, class: u32, oid: u32, to: ObjKey) {
        self.aliases.insert((class, oid), to);
    }
}

/// One row of a collector's query, read by column position.
pub struct Row<'a>(&'a SpiHeapTupleData<'a>);

impl Row<'_> {
    /// Text columns are read through [`crate::text::Text`]: UTF-8 whatever the database's
    /// encoding.
    pub fn text(&self, i: usize) -> Result<Option<String>> {
        Ok(self.0.get::<Text>(i)?.map(String::from))
    }
    pub fn string(&self, i: usize) -> Result<String> {
        Ok(self.text(i)?.unwrap_or_default())
    }
    pub fn oid(&self, i: usize) -> Result<u32> {
        Ok(self
            .0
            .get::<pg_sys::Oid>(i)?
            .map(u32::from)
            .unwrap_or_default())
    }
    pub fn int(&self, i: usize) -> Result<i32> {
        Ok(self.0.get::<i32>(i)?.unwrap_or_default())
    }
    pub fn bool(&self, i: usize) -> Result<bool> {
        Ok(self.0.get::<bool>(i)?.unwrap_or_default())
    }
    pub fn texts(&self, i: usize) -> Result<Vec<String>> {
        Ok(self
            .0
            .get::<Vec<Text>>(i)?
            .unwrap_or_default()
            .into_iter()
            .map(String::from)
            .collect())
    }
}

/// Run a collector's query with `$1` = the selected relations, `$2` = the selected schemas
/// (both oid[]), mapping each row with `f`.
pub fn query<T>(cx: &Context, sql: &str, f: impl Fn(Row) -> Result<T>) -> Result<Vec<T>> {
    Spi::connect(|client| {
        let rows = client.select(
            sql,
            None,
            &[cx.rels.clone().into(), cx.schemas.clone().into()],
        )?;
        rows.map(|r| f(Row(&r))).collect()
    })
}

/// Quote an identifier the way PostgreSQL does.
pub fn ident(name: &str) -> String {
    pgrx::spi::quote_identifier(name)
}

/// `schema.name`, quoted.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// A string literal, quoted the way PostgreSQL does.
pub fn literal(s: &str) -> String {
    pgrx::spi::quote_literal(s)
}

/// The owner statement pg_restore would issue.
pub fn owner_sql(keyword: &str, identity: &str, owner: &str) -> String {
    format!("ALTER {keyword} {identity} OWNER TO {};", ident(owner))
}

/// Objects that are not pg_backup's to back up: system schemas, temporary schemas, pg_backup's
/// own schema. `$n` is the namespace oid column to test.
pub fn user_schema(col: &str) -> String {
    format!(
        "({col} NOT IN (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema') OR nspname ~ '^pg_(toast|temp_|toast_temp_)')
          AND {col} IS DISTINCT FROM (SELECT extnamespace FROM pg_catalog.pg_extension WHERE extname = 'pg_backup'))"
    )
}

/// `NOT EXISTS` an extension membership of (catalog, oid): extension members are created by
/// CREATE EXTENSION, not by the backup.
pub fn not_extension_member(class: &str, oid: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend dx WHERE dx.classid = '{class}'::pg_catalog.regclass AND dx.objid = {oid} AND dx.deptype = 'e')"
    )
}

/// Collect everything `cx` selects and sort it into a TOC; also the extension configuration
/// tables whose rows the backup writes.
pub fn collect(cx: &Context) -> Result<(Vec<TocEntry>, Vec<LoopWarning>, Vec<ConfigTable>)> {
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
    let (toc, warnings) = graph::sort(out.nodes);
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
        let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
        crate::security::set_for_call(c"search_path", c"");
        EmptySearchPath { nest_level }
    }
}

impl Drop for EmptySearchPath {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            unsafe { pg_sys::AtEOXact_GUC(true, self.nest_level) };
        }
    }
}

/// The key of a relation's rows (its TableData / SequenceSet entry).
pub fn data_key(class: u32, oid: u32) -> ObjKey {
    ObjKey::new(class, oid).with(Role::Data)
}

/// An error for catalog rows that do not look like PostgreSQL 15's.
pub fn unexpected(what: &str) -> BackupError {
    BackupError::corrupt(format!("unexpected catalog contents: {what}"))
}

/// The oids of the system catalogs that key collected objects (fixed by PostgreSQL).
pub mod class {
    use pgrx::pg_sys;
    pub const PG_CLASS: u32 = pg_sys::RelationRelationId.to_u32();
    pub const PG_TYPE: u32 = pg_sys::TypeRelationId.to_u32();
    pub const PG_PROC: u32 = pg_sys::ProcedureRelationId.to_u32();
    pub const PG_NAMESPACE: u32 = pg_sys::NamespaceRelationId.to_u32();
    /// pg_rewrite (catalog/pg_rewrite.h; not in pgrx's bindings).
    pub const PG_REWRITE: u32 = 2618;
    pub const PG_EXTENSION: u32 = pg_sys::ExtensionRelationId.to_u32();
    /// pg_largeobject_metadata (catalog/pg_largeobject_metadata.h).
    pub const PG_LARGEOBJECT_METADATA: u32 = 2995;
    /// pg_largeobject (catalog/pg_largeobject.h): comments and security labels on a large
    /// object name this catalog, not pg_largeobject_metadata.
    pub const PG_LARGEOBJECT: u32 = 2613;
    pub const PG_DATABASE: u32 = pg_sys::DatabaseRelationId.to_u32();
}
