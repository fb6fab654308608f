//! Publications, their tables (with column lists and row filters) and their schemas.
//! Database-wide: whole-database backups only, as with pg_dump. Subscriptions are not backed
//! up (they hold a connection string and need a superuser; see the README).

use super::class::PG_CLASS;
use super::common::{ident, owner_sql, query, Collected, Context};
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey};
use crate::error::Result;

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    if !cx.whole_database {
        return Ok(());
    }
    let publications = query(
        cx,
        "SELECT p.tableoid, p.oid, p.pubname::text, pg_catalog.pg_get_userbyid(p.pubowner)::text,
                pg_catalog.format('CREATE PUBLICATION %I%s WITH (publish = %L%s);', p.pubname,
                       CASE WHEN p.puballtables THEN ' FOR ALL TABLES' ELSE '' END,
                       pg_catalog.concat_ws(', ', CASE WHEN p.pubinsert THEN 'insert' END, CASE WHEN p.pubupdate THEN 'update' END,
                                            CASE WHEN p.pubdelete THEN 'delete' END, CASE WHEN p.pubtruncate THEN 'truncate' END),
                       CASE WHEN p.pubviaroot THEN ', publish_via_partition_root = true' ELSE '' END)
         FROM pg_catalog.pg_publication p ORDER BY p.oid",
        |r| {
            let (name, owner) = (r.string(3)?, r.string(4)?);
            Ok(Node::new(
                ObjKey::new(r.oid(1)?, r.oid(2)?),
                EntryKind::Publication,
                None,
                &name,
                r.string(5)?,
            )
            .owned(
                Some(owner.clone()),
                Some(owner_sql("PUBLICATION", &ident(&name), &owner)),
            ))
        },
    )?;
    publications.into_iter().for_each(|n| out.push(n));
    let tables = query(
        cx,
        "SELECT pr.tableoid, pr.oid, n.nspname::text, c.relname::text, p.pubname::text,
                pg_catalog.format('ALTER PUBLICATION %I ADD TABLE ONLY %I.%I%s%s;', p.pubname, n.nspname, c.relname,
                       CASE WHEN pr.prattrs IS NOT NULL THEN ' (' ||
                            (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY k.o)
                             FROM pg_catalog.unnest(pr.prattrs::pg_catalog.int2[]) WITH ORDINALITY k(attnum, o)
                             JOIN pg_catalog.pg_attribute a ON a.attrelid = pr.prrelid AND a.attnum = k.attnum) || ')' ELSE '' END,
                       CASE WHEN pr.prqual IS NOT NULL THEN ' WHERE (' || pg_catalog.pg_get_expr(pr.prqual, pr.prrelid) || ')' ELSE '' END),
                p.tableoid, p.oid, c.oid
         FROM pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
         JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = ANY($1)
         ORDER BY pr.oid",
        |r| {
            let (schema, table, publication) = (r.string(3)?, r.string(4)?, r.string(5)?);
            Ok(Node::new(
                ObjKey::new(r.oid(1)?, r.oid(2)?),
                EntryKind::PublicationTable,
                Some(&schema),
                &format!("{publication} {table}"),
                r.string(6)?,
            )
            .table(&table)
            .of(ObjKey::new(r.oid(7)?, r.oid(8)?))
            .dep(ObjKey::new(PG_CLASS, r.oid(9)?)))
        },
    )?;
    tables.into_iter().for_each(|n| out.push(n));
    let schemas = query(
        cx,
        "SELECT ps.tableoid, ps.oid, n.nspname::text, p.pubname::text,
                pg_catalog.format('ALTER PUBLICATION %I ADD TABLES IN SCHEMA %I;', p.pubname, n.nspname),
                p.tableoid, p.oid, n.tableoid, n.oid
         FROM pg_catalog.pg_publication_namespace ps JOIN pg_catalog.pg_publication p ON p.oid = ps.pnpubid
         JOIN pg_catalog.pg_namespace n ON n.oid = ps.pnnspid
         WHERE n.oid = ANY($2)
         ORDER BY ps.oid",
        |r| {
            let (schema, publication) = (r.string(3)?, r.string(4)?);
            Ok(Node::new(
                ObjKey::new(r.oid(1)?, r.oid(2)?),
                EntryKind::PublicationSchema,
                Some(&schema),
                &format!("{publication} {schema}"),
                r.string(5)?,
            )
            .of(ObjKey::new(r.oid(6)?, r.oid(7)?))
            .dep(ObjKey::new(r.oid(8)?, r.oid(9)?)))
        },
    )?;
    schemas.into_iter().for_each(|n| out.push(n));
    Ok(())
}
