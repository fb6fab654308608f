//! Indexes, table constraints (primary key, unique, exclusion, foreign key), the attachment
//! of partitions' indexes to their parent's, and extended statistics.

use super::codes;
use super::common::{ident, owner_sql, qualified, query, Collected, Context};
use crate::archive::facts::ConstraintFacts;
use crate::archive::shapes::ConstraintKind;
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey, Role};
use crate::error::Result;

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    indexes(cx, out)?;
    constraints(cx, out)?;
    statistics(cx, out)?;
    Ok(())
}

/// What an index (or the index of a constraint) adds after its creation: CLUSTER ON,
/// REPLICA IDENTITY USING INDEX, statistics targets of expression columns.
const INDEX_EXTRAS: &str = r#"
  CASE WHEN x.indisclustered THEN pg_catalog.format(E'\nALTER TABLE %I.%I CLUSTER ON %I;', n.nspname, c.relname, i.relname) ELSE '' END
  || CASE WHEN x.indisreplident THEN pg_catalog.format(E'\nALTER TABLE ONLY %I.%I REPLICA IDENTITY USING INDEX %I;', n.nspname, c.relname, i.relname) ELSE '' END
  || coalesce((SELECT pg_catalog.string_agg(pg_catalog.format(E'\nALTER INDEX %I.%I ALTER COLUMN %s SET STATISTICS %s;', n.nspname, i.relname, a.attnum, a.attstattarget), '' ORDER BY a.attnum)
               FROM pg_catalog.pg_attribute a WHERE a.attrelid = i.oid AND a.attstattarget >= 0), '')"#;

fn indexes(cx: &Context, out: &mut Collected) -> Result<()> {
    let sql = format!(
        "SELECT i.tableoid, i.oid, n.nspname::text, i.relname::text, c.relname::text,
                pg_catalog.pg_get_indexdef(i.oid) || ';' || {INDEX_EXTRAS},
                (SELECT ih.inhparent FROM pg_catalog.pg_inherits ih WHERE ih.inhrelid = i.oid),
                (SELECT pg_catalog.format('%I.%I', pn.nspname, pi.relname) FROM pg_catalog.pg_inherits ih
                 JOIN pg_catalog.pg_class pi ON pi.oid = ih.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = pi.relnamespace
                 WHERE ih.inhrelid = i.oid),
                c.tableoid, c.oid,
                (SELECT ts.spcname::text FROM pg_catalog.pg_tablespace ts WHERE ts.oid = i.reltablespace)
         FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
         JOIN pg_catalog.pg_class c ON c.oid = x.indrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = ANY($1) AND c.relkind IN ('r', 'p', 'm')
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint co WHERE co.conindid = i.oid AND co.contype IN ('p', 'u', 'x'))
         ORDER BY i.oid"
    );
    let rows = query(cx, &sql, |r| {
        Ok((
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            r.string(3)?,
            r.string(4)?,
            r.string(5)?,
            r.string(6)?,
            r.oid(7)?,
            r.text(8)?,
            ObjKey::new(r.oid(9)?, r.oid(10)?),
            r.text(11)?,
        ))
    })?;
    for (key, schema, name, table, sql, parent, parent_name, table_key, tablespace) in rows {
        out.push(
            Node::new(key, EntryKind::Index, Some(&schema), &name, sql)
                .table(&table)
                .of(table_key)
                .in_tablespace(tablespace),
        );
        if let Some(parent_name) = parent_name {
            out.push(attach(key, &schema, &name, &table, parent, &parent_name));
        }
    }
    Ok(())
}

/// ALTER INDEX parent ATTACH PARTITION child, after both (and after the partition is
/// attached to its parent table).
fn attach(
    key: ObjKey,
    schema: &str,
    name: &str,
    table: &str,
    parent: u32,
    parent_name: &str,
) -> Node {
    Node::new(
        key.with(Role::Attach),
        EntryKind::IndexAttach,
        Some(schema),
        name,
        format!(
            "ALTER INDEX {parent_name} ATTACH PARTITION {};",
            qualified(schema, name)
        ),
    )
    .table(table)
    .of(key)
    .dep(ObjKey::new(key.class, parent))
}

fn constraints(cx: &Context, out: &mut Collected) -> Result<()> {
    // Foreign keys cloned onto partitions by their parent's are not separate objects.
    let sql = format!(
        "SELECT co.tableoid, co.oid, n.nspname::text, co.conname::text, c.relname::text, co.contype::text,
                pg_catalog.format('ALTER %sTABLE %s%I.%I\n    ADD CONSTRAINT %I %s;',
                       CASE WHEN c.relkind = 'f' THEN 'FOREIGN ' ELSE '' END,
                       -- A foreign key of a partitioned table cannot be added to it ONLY.
                       CASE WHEN co.contype = 'f' AND c.relkind = 'p' THEN '' ELSE 'ONLY ' END,
                       n.nspname, c.relname, co.conname,
                       -- pg_get_constraintdef leaves out the index options of a primary key
                       -- or unique constraint (pg_dump writes them itself): before DEFERRABLE.
                       CASE WHEN co.contype IN ('p', 'u') AND i.reloptions IS NOT NULL THEN
                         pg_catalog.left(pg_catalog.pg_get_constraintdef(co.oid),
                                         pg_catalog.length(pg_catalog.pg_get_constraintdef(co.oid)) - pg_catalog.length(sfx.s))
                         || ' WITH (' || pg_catalog.array_to_string(i.reloptions, ', ') || ')' || sfx.s
                       ELSE pg_catalog.pg_get_constraintdef(co.oid) END)
                || CASE WHEN i.oid IS NOT NULL THEN {INDEX_EXTRAS} ELSE '' END,
                co.conindid,
                (SELECT ih.inhparent FROM pg_catalog.pg_inherits ih WHERE ih.inhrelid = co.conindid),
                (SELECT pg_catalog.format('%I.%I', pn.nspname, pi.relname) FROM pg_catalog.pg_inherits ih
                 JOIN pg_catalog.pg_class pi ON pi.oid = ih.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = pi.relnamespace
                 WHERE ih.inhrelid = co.conindid),
                (SELECT ii.relname::text FROM pg_catalog.pg_class ii WHERE ii.oid = co.conindid),
                c.tableoid, c.oid,
                (SELECT ts.spcname::text FROM pg_catalog.pg_tablespace ts WHERE ts.oid = i.reltablespace),
                co.convalidated
         FROM pg_catalog.pg_constraint co JOIN pg_catalog.pg_class c ON c.oid = co.conrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_catalog.pg_index x ON x.indexrelid = co.conindid AND co.contype IN ('p', 'u', 'x')
         LEFT JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
         CROSS JOIN LATERAL (SELECT CASE WHEN co.condeferrable THEN ' DEFERRABLE' ELSE '' END
                                    || CASE WHEN co.condeferred THEN ' INITIALLY DEFERRED' ELSE '' END AS s) sfx
         WHERE c.oid = ANY($1) AND co.contype IN ('p', 'u', 'x', 'f')
           AND NOT (co.contype = 'f' AND co.conparentid <> 0)
         ORDER BY co.oid"
    );
    let rows = query(cx, &sql, |r| {
        Ok((
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            r.string(3)?,
            r.string(4)?,
            r.string(5)?,
            r.string(6)?,
            r.string(7)?,
            r.oid(8)?,
            r.oid(9)?,
            r.text(10)?,
            r.text(11)?,
            ObjKey::new(r.oid(12)?, r.oid(13)?),
            r.text(14)?,
            r.bool(15)?,
        ))
    })?;
    for (
        key,
        schema,
        name,
        table,
        contype,
        sql,
        index,
        parent_index,
        parent_name,
        index_name,
        tkey,
        tablespace,
        validated,
    ) in rows
    {
        let contype = codes::contype(&contype)?;
        let kind = if contype == ConstraintKind::ForeignKey {
            EntryKind::ForeignKey
        } else {
            EntryKind::Constraint
        };
        let mut node = Node::new(key, kind, Some(&schema), &format!("{table} {name}"), sql)
            .table(&table)
            .of(tkey)
            .in_tablespace(tablespace);
        node.facts.constraint = Some(ConstraintFacts {
            kind: contype,
            name: name.clone(),
            validated,
        });
        out.push(node);
        if kind == EntryKind::Constraint && index != 0 {
            let ikey = ObjKey::new(tkey.class, index);
            out.alias(ikey.class, ikey.oid, key);
            if let (Some(parent_name), Some(index_name)) = (parent_name, index_name) {
                let mut a = attach(
                    ikey,
                    &schema,
                    &index_name,
                    &table,
                    parent_index,
                    &parent_name,
                )
                .dep(key);
                a.belongs_to = Some(key);
                out.push(a);
            }
        }
    }
    Ok(())
}

fn statistics(cx: &Context, out: &mut Collected) -> Result<()> {
    let rows = query(
        cx,
        "SELECT s.tableoid, s.oid, n.nspname::text, s.stxname::text, c.relname::text,
                pg_catalog.pg_get_userbyid(s.stxowner)::text,
                pg_catalog.pg_get_statisticsobjdef(s.oid) || ';'
                || CASE WHEN s.stxstattarget >= 0
                        THEN pg_catalog.format(E'\nALTER STATISTICS %I.%I SET STATISTICS %s;', n.nspname, s.stxname, s.stxstattarget)
                        ELSE '' END,
                c.tableoid, c.oid
         FROM pg_catalog.pg_statistic_ext s JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace
         JOIN pg_catalog.pg_class c ON c.oid = s.stxrelid
         WHERE s.stxrelid = ANY($1)
         ORDER BY s.oid",
        |r| {
            let (schema, name, owner) = (r.string(3)?, r.string(4)?, r.string(6)?);
            Ok(Node::new(
                ObjKey::new(r.oid(1)?, r.oid(2)?),
                EntryKind::Statistics,
                Some(&schema),
                &name,
                r.string(7)?,
            )
            .table(&r.string(5)?)
            .of(ObjKey::new(r.oid(8)?, r.oid(9)?))
            .owned(
                Some(owner.clone()),
                Some(owner_sql("STATISTICS", &qualified(&schema, &name), &owner)),
            ))
        },
    )?;
    rows.into_iter().for_each(|n| out.push(n));
    let _ = ident;
    Ok(())
}
