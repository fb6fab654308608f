//! The rows of extensions' configuration tables, after pg_dump.c's processExtensionTables.
//!
//! An extension marks a table (or sequence) it creates as configuration with
//! `pg_extension_config_dump(table, condition)`: the table itself comes back with CREATE
//! EXTENSION, but the rows the condition selects (all of them for an empty condition) are
//! the user's and are backed up as data, and a configuration sequence's value is set. They
//! are part of their extension: backed up whenever the extension is (pg_backup's own
//! extension never is: its catalog describes this server's archives, not the database), and
//! when `tables` names them (as pg_dump -t); left out by `exclude_tables` / `exclude_data`
//! and by `schema_only`.

use std::collections::{BTreeSet, HashMap, HashSet};

use pgrx::prelude::*;

use super::class::PG_CLASS;
use super::codes::Relkind;
use super::common::{data_key, literal, qualified, Collected, ConfigTable, Context, Row};
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey};
use crate::error::Result;

/// (extension's catalog, extension, its name, relation, schema, name, relkind, condition)
type ConfigRow = (u32, u32, String, u32, String, String, String, String);

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    if !cx.sequence_values {
        // schema_only: no rows, no sequence values (as pg_dump --schema-only).
        return Ok(());
    }
    let extensions: Vec<pg_sys::Oid> = out
        .nodes
        .iter()
        .filter(|n| n.kind == EntryKind::Extension)
        .map(|n| pg_sys::Oid::from(n.key.oid))
        .collect();
    if extensions.is_empty() && cx.config_tables.is_empty() {
        return Ok(());
    }
    let rows: Vec<ConfigRow> = Spi::connect(|client| {
        client
                .select(
                    "SELECT e.tableoid, e.oid, e.extname::pg_catalog.text, c.oid, n.nspname::pg_catalog.text,
                            c.relname::pg_catalog.text, c.relkind::pg_catalog.text, COALESCE(x.cond, '')
                     FROM pg_catalog.pg_extension e
                     CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(e.extconfig), pg_catalog.unnest(e.extcondition)) AS x(rel, cond)
                     JOIN pg_catalog.pg_class c ON c.oid = x.rel
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                     WHERE (e.oid = ANY($1) OR c.oid = ANY($3)) AND e.extname <> 'pg_backup'
                       AND c.relkind IN ('r', 'S') AND c.relpersistence <> 't'
                       AND NOT (c.oid = ANY($2))
                     ORDER BY e.extname, n.nspname, c.relname",
                    None,
                    &[
                        extensions.into(),
                        cx.excluded.clone().into(),
                        cx.config_tables.clone().into(),
                    ],
                )?
                .map(|r| {
                    let r = Row(&r);
                    Ok((
                        r.oid(1)?,
                        r.oid(2)?,
                        r.string(3)?,
                        r.oid(4)?,
                        r.string(5)?,
                        r.string(6)?,
                        r.string(7)?,
                        r.string(8)?,
                    ))
                })
                .collect::<Result<Vec<_>>>()
    })?;
    let mut tables = Vec::new();
    for (ext_class, ext_oid, extension, oid, schema, name, relkind, filter) in rows {
        let ext = ObjKey::new(ext_class, ext_oid);
        if Relkind::decode(&relkind)? == Relkind::Sequence {
            // A configuration sequence: its value, read now (sequences are not transactional).
            let q = qualified(&schema, &name);
            let (value, called) =
                Spi::get_two::<i64, bool>(&format!("SELECT last_value, is_called FROM {q}"))?;
            out.push(
                Node::new(
                    data_key(PG_CLASS, oid),
                    EntryKind::ExtensionData,
                    Some(&schema),
                    &name,
                    format!(
                        "SELECT pg_catalog.setval({}, {}, {});",
                        literal(&q),
                        value.unwrap_or(1),
                        called.unwrap_or(false)
                    ),
                )
                .of(ext),
            );
            continue;
        }
        out.push(
            Node::new(
                data_key(PG_CLASS, oid),
                EntryKind::ExtensionData,
                Some(&schema),
                &name,
                String::new(),
            )
            .table(&name)
            .of(ext),
        );
        tables.push(ConfigTable {
            oid: pg_sys::Oid::from(oid),
            schema,
            name,
            filter,
            extension,
        });
    }
    out.config = in_foreign_key_order(tables)?;
    Ok(())
}

/// Configuration tables keep their foreign keys while rows load (CREATE EXTENSION made them):
/// a referenced table's rows go first, as pg_dump orders them. Ties (and loops) keep the
/// extension/schema/name order.
fn in_foreign_key_order(tables: Vec<ConfigTable>) -> Result<Vec<ConfigTable>> {
    if tables.len() < 2 {
        return Ok(tables);
    }
    let oids: Vec<pg_sys::Oid> = tables.iter().map(|t| t.oid).collect();
    let pairs: Vec<(u32, u32)> = Spi::connect(|client| {
        client
            .select(
                "SELECT conrelid, confrelid FROM pg_catalog.pg_constraint
                 WHERE contype = 'f' AND conrelid = ANY($1) AND confrelid = ANY($1) AND conrelid <> confrelid",
                None,
                &[oids.into()],
            )?
            .map(|r| {
                let r = Row(&r);
                Ok((r.oid(1)?, r.oid(2)?))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let position: HashMap<u32, usize> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| (u32::from(t.oid), i))
        .collect();
    let mut needs: Vec<HashSet<usize>> = vec![HashSet::new(); tables.len()];
    for (from, to) in pairs {
        if let (Some(&f), Some(&t)) = (position.get(&from), position.get(&to)) {
            needs[f].insert(t);
        }
    }
    Ok(order(&needs)
        .into_iter()
        .map(|i| tables[i].clone())
        .collect())
}

/// Indexes `0..needs.len()` so that each comes after those it needs, lowest index first
/// among the ready ones; what is left in a loop follows in index order.
fn order(needs: &[HashSet<usize>]) -> Vec<usize> {
    let mut done: Vec<bool> = vec![false; needs.len()];
    let mut out = Vec::with_capacity(needs.len());
    let mut ready: BTreeSet<usize> = BTreeSet::new();
    loop {
        ready.extend(
            (0..needs.len()).filter(|&i| !done[i] && needs[i].iter().all(|&d| done[d] || d == i)),
        );
        let Some(&next) = ready.iter().next() else {
            break;
        };
        ready.remove(&next);
        if !done[next] {
            done[next] = true;
            out.push(next);
        }
    }
    out.extend((0..needs.len()).filter(|&i| !done[i]));
    out
}

#[cfg(test)]
mod tests {
    use super::order;
    use std::collections::HashSet;

    #[test]
    fn referenced_tables_come_first_and_loops_keep_their_order() {
        let set = |v: &[usize]| v.iter().copied().collect::<HashSet<usize>>();
        // 0 references 2, 1 references 0.
        assert_eq!(order(&[set(&[2]), set(&[0]), set(&[])]), vec![2, 0, 1]);
        // A loop between 0 and 1; 2 is free.
        assert_eq!(order(&[set(&[1]), set(&[0]), set(&[])]), vec![2, 0, 1]);
        assert_eq!(order(&[set(&[]), set(&[])]), vec![0, 1]);
    }
}
