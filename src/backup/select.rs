//! What a backup contains: the caller's names resolved to relations, like regclass would.

use pgrx::prelude::*;

use super::options::CreateOptions;
use crate::error::{BackupError, Result};
use crate::text::{self, Text};

pub use crate::ddl::selection::{Relation, Selection};

/// Relations pg_backup can see: not system, not temporary, not ours, not an extension's.
const CANDIDATES: &str = r#"
SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, n.oid
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
  AND n.oid <> (SELECT extnamespace FROM pg_extension WHERE extname = 'pg_backup')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY c.oid"#;

/// Resolve `name` (`schema.table` or bare, quoted or not) to a relation oid, searching the
/// caller's `search_path` for bare names.
pub fn resolve(name: &str, caller_schemas: &[String]) -> Result<pg_sys::Oid> {
    let parts: Vec<String> =
        Spi::get_one_with_args::<Vec<Text>>("SELECT parse_ident($1)::text[]", &[text::arg(name)])
            .ok()
            .flatten()
            .map(|v| v.into_iter().map(String::from).collect::<Vec<String>>())
            .ok_or_else(|| {
                BackupError::invalid(format!("invalid table name \"{}\"", name.escape_debug()))
                    .with_hint(
                    "Write schema.table or a bare name, quoted like an SQL identifier if needed.",
                )
            })?;
    let (schemas, rel): (Vec<String>, String) = match parts.as_slice() {
        [rel] => (caller_schemas.to_vec(), rel.clone()),
        [schema, rel] => (vec![schema.clone()], rel.clone()),
        _ => {
            return Err(BackupError::invalid(format!(
                "invalid table name \"{}\"",
                name.escape_debug()
            ))
            .with_hint("Write schema.table or a bare name."))
        }
    };
    let found = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT (SELECT c.oid FROM unnest($1::text[]) WITH ORDINALITY s(nsp, ord)
                 JOIN pg_namespace n ON n.nspname = s.nsp
                 JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = $2
                 ORDER BY s.ord LIMIT 1)",
        &[text::args(&schemas), text::arg(rel)],
    )?;
    found.ok_or_else(|| {
        BackupError::unknown(format!("relation \"{name}\" does not exist")).with_hint(
            "Check the name and the search_path; names are schema.table, as for regclass.",
        )
    })
}

/// A relation whose name (or its schema's) cannot be read as UTF-8 (a database in SQL_ASCII
/// holding other bytes): it fails the backup only when the selection takes it.
struct Unreadable {
    oid: pg_sys::Oid,
    /// The schema's name when it reads, else None.
    schema: Option<String>,
    schema_oid: pg_sys::Oid,
    raw_schema: Vec<u8>,
    raw_name: Vec<u8>,
}

impl Unreadable {
    fn error(&self) -> BackupError {
        let schema = match &self.schema {
            Some(s) => format!("schema \"{s}\""),
            None => format!(
                "schema with OID {} (named {})",
                u32::from(self.schema_oid),
                text::shown_bytes(&self.raw_schema)
            ),
        };
        BackupError::not_utf8(format!(
            "relation with OID {} in {schema} has a name that is not valid UTF-8: {}",
            u32::from(self.oid),
            text::shown_bytes(&self.raw_name)
        ))
        .with_hint(
            "pg_backup reads names as UTF-8, which is what a database in SQL_ASCII must hold for it. \
             Rename the relation (ALTER TABLE ... RENAME TO, from a session with client_encoding SQL_ASCII), \
             or back up the other schemas only: schemas => '{...}'.",
        )
    }
}

pub fn select(opts: &CreateOptions, caller_schemas: &[String]) -> Result<Selection> {
    let (all, unreadable): (Vec<Relation>, Vec<Unreadable>) = Spi::connect(|client| {
        let rows = client.select(CANDIDATES, None, &[])?;
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for row in rows {
            let oid = row.get(1)?.expect("oid");
            let raw_schema = row.get::<text::Raw>(2)?.unwrap_or_default();
            let raw_name = row.get::<text::Raw>(3)?.unwrap_or_default();
            match (raw_schema.utf8(), raw_name.utf8()) {
                (Some(schema), Some(name)) => out.push(Relation {
                    oid,
                    schema,
                    name,
                    kind: row
                        .get::<String>(4)?
                        .and_then(|s| s.chars().next())
                        .unwrap_or('r'),
                }),
                (schema, _) => bad.push(Unreadable {
                    oid,
                    schema,
                    schema_oid: row.get(5)?.expect("oid"),
                    raw_schema: raw_schema.0,
                    raw_name: raw_name.0,
                }),
            }
        }
        Ok::<_, BackupError>((out, bad))
    })?;

    let mut config_tables = Vec::new();
    let mut chosen: Vec<pg_sys::Oid> = if let Some(tables) = &opts.tables {
        // Like pg_dump -t (which wins over -n): exactly these relations, plus the partitions
        // of a partitioned table and the sequences the tables own.
        let mut oids = Vec::new();
        for t in tables {
            let oid = resolve(t, caller_schemas)?;
            if let Some(u) = unreadable.iter().find(|u| u.oid == oid) {
                return Err(u.error());
            }
            if !all.iter().any(|r| r.oid == oid) {
                // An extension's configuration table: its rows, as pg_dump -t takes them.
                if is_config_table(oid)? {
                    config_tables.push(oid);
                    continue;
                }
                return Err(BackupError::invalid(format!("relation \"{t}\" cannot be backed up"))
                    .with_hint("System catalogs, temporary tables and extension members are not backed up (an extension's configuration tables are: their rows)."));
            }
            oids.push(oid);
        }
        let extra = Spi::connect(|client| {
            let rows = client.select(
                "SELECT p.relid FROM unnest($1::oid[]) r(oid), pg_partition_tree(r.oid) p WHERE p.relid <> r.oid
                 UNION
                 SELECT d.objid FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                   AND d.refobjid = ANY($1) AND d.deptype IN ('a', 'i')",
                None,
                &[oids.clone().into()],
            )?;
            let mut v = Vec::new();
            for row in rows {
                if let Some(o) = row.get::<pg_sys::Oid>(1)? {
                    v.push(o);
                }
            }
            Ok::<_, BackupError>(v)
        })?;
        oids.extend(extra);
        oids
    } else if let Some(schemas) = &opts.schemas {
        for s in schemas {
            let exists = Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[text::arg(s.clone())],
            )?
            .unwrap_or(false);
            if !exists {
                return Err(
                    BackupError::unknown(format!("schema \"{s}\" does not exist"))
                        .with_hint("List schemas with \\dn or SELECT nspname FROM pg_namespace."),
                );
            }
        }
        // A relation whose name does not read fails the backup only if its schema is taken.
        if let Some(u) = unreadable
            .iter()
            .find(|u| u.schema.as_ref().is_some_and(|s| schemas.contains(s)))
        {
            return Err(u.error());
        }
        all.iter()
            .filter(|r| schemas.contains(&r.schema))
            .map(|r| r.oid)
            .collect()
    } else {
        if let Some(u) = unreadable.first() {
            return Err(u.error());
        }
        all.iter().map(|r| r.oid).collect()
    };

    let mut excluded = Vec::new();
    for t in &opts.exclude_tables {
        let oid = resolve(t, caller_schemas)?;
        chosen.retain(|o| *o != oid);
        excluded.push(oid);
    }
    let mut no_data = Vec::new();
    for t in &opts.exclude_data {
        no_data.push(resolve(t, caller_schemas)?);
    }
    excluded.extend(no_data.iter().copied());

    let relations: Vec<Relation> = all
        .iter()
        .filter(|r| chosen.contains(&r.oid))
        .cloned()
        .collect();
    let data_tables = relations
        .iter()
        .filter(|r| r.kind == 'r' && !no_data.contains(&r.oid))
        .cloned()
        .collect();
    let schema_names: Vec<String> = match (&opts.tables, &opts.schemas) {
        (None, Some(s)) => s.clone(),
        (None, None) => Spi::connect(|client| {
            let rows = client.select(
                "SELECT nspname::text, n.oid FROM pg_namespace n
                 WHERE nspname NOT IN ('pg_catalog', 'information_schema')
                   AND nspname !~ '^pg_(toast|temp_|toast_temp_)'
                   AND n.oid <> (SELECT extnamespace FROM pg_extension WHERE extname = 'pg_backup')
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                                   AND d.objid = n.oid AND d.deptype = 'e')",
                None,
                &[],
            )?;
            let mut v = Vec::new();
            for row in rows {
                let raw = row.get::<text::Raw>(1)?.unwrap_or_default();
                match raw.utf8() {
                    Some(name) => v.push(name),
                    None => {
                        let oid: pg_sys::Oid = row.get(2)?.expect("oid");
                        return Err(BackupError::not_utf8(format!(
                            "schema with OID {} has a name that is not valid UTF-8: {}",
                            u32::from(oid),
                            text::shown_bytes(&raw.0)
                        ))
                        .with_hint(
                            "pg_backup reads names as UTF-8, which is what a database in SQL_ASCII must hold for it. \
                             Rename the schema (ALTER SCHEMA ... RENAME TO, from a session with client_encoding SQL_ASCII), \
                             or back up the other schemas only: schemas => '{...}'.",
                        ));
                    }
                }
            }
            Ok::<_, BackupError>(v)
        })?,
        _ => {
            let mut v: Vec<String> = relations.iter().map(|r| r.schema.clone()).collect();
            v.sort();
            v.dedup();
            v
        }
    };
    let schema_oids = Spi::connect(|client| {
        let rows = client.select(
            "SELECT oid FROM pg_namespace WHERE nspname = ANY($1) ORDER BY nspname",
            None,
            &[text::args(&schema_names)],
        )?;
        let mut v = Vec::new();
        for row in rows {
            v.push(row.get::<pg_sys::Oid>(1)?.expect("oid"));
        }
        Ok::<_, BackupError>(v)
    })?;
    Ok(Selection {
        relations,
        data_tables,
        schema_oids,
        large_objects: opts.tables.is_none() && opts.schemas.is_none(),
        excluded,
        config_tables,
        superuser: false,
    })
}

/// Whether `oid` is a configuration table or sequence of an extension (pg_backup's own aside).
fn is_config_table(oid: pg_sys::Oid) -> Result<bool> {
    Ok(Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e
                        WHERE $1 = ANY (e.extconfig) AND e.extname <> 'pg_backup')",
        &[oid.into()],
    )?
    .unwrap_or(false))
}
