//! What every collector shares: the `Context` of what to collect, the `Collected` objects,
//! a query's `Row`, and the quoting and catalog filters their SQL is built with.

use std::collections::HashMap;

use pgrx::prelude::*;
use pgrx::spi::SpiHeapTupleData;

use crate::ddl::graph::{Node, ObjKey, Role};
use crate::ddl::selection::Selection;
use crate::error::{BackupError, Result};
use crate::text::Text;

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

/// A configuration table whose rows the backup writes.
#[derive(Debug, Clone)]
pub struct ConfigTable {
    pub oid: pg_sys::Oid,
    pub schema: String,
    pub name: String,
    /// The extension's condition, as pg_extension_config_dump recorded it (`WHERE ...`), or
    /// empty for every row. Text of the extension's install script, run as pg_dump runs it.
    pub filter: String,
    pub extension: String,
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
pub struct Row<'a>(pub(super) &'a SpiHeapTupleData<'a>);

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

/// The key of a relation's rows (its TableData / SequenceSet entry).
pub fn data_key(class: u32, oid: u32) -> ObjKey {
    ObjKey::new(class, oid).with(Role::Data)
}

/// An error for catalog rows that do not look like PostgreSQL 15's.
pub fn unexpected(what: &str) -> BackupError {
    BackupError::corrupt(format!("unexpected catalog contents: {what}"))
}
