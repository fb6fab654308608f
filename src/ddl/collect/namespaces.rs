//! Schemas and extensions.

use super::common::{ident, not_extension_member, query, Collected, Context};
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey};
use crate::error::Result;

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    // IF NOT EXISTS: `public` (and a schema a partial restore finds in place) already exist.
    let schemas = query(
        cx,
        "SELECT n.tableoid, n.oid, n.nspname::text, pg_catalog.pg_get_userbyid(n.nspowner)::text
         FROM pg_catalog.pg_namespace n WHERE n.oid = ANY($2) ORDER BY n.nspname",
        |r| {
            let name = r.string(3)?;
            let owner = r.string(4)?;
            Ok(Node::new(
                ObjKey::new(r.oid(1)?, r.oid(2)?),
                EntryKind::Schema,
                None,
                &name,
                format!("CREATE SCHEMA IF NOT EXISTS {};", ident(&name)),
            )
            .owned(
                Some(owner.clone()),
                Some(super::common::owner_sql("SCHEMA", &ident(&name), &owner)),
            ))
        },
    )?;
    schemas.into_iter().for_each(|n| out.push(n));

    // Every extension of a whole-database backup (as pg_dump: also those installed in
    // pg_catalog, like pg_cron), else those of the selected schemas and those whose types the
    // selected tables use (not plpgsql, which every database has, nor pg_backup itself).
    // Their member objects are created by CREATE EXTENSION and never collected.
    let sql = format!(
        "SELECT e.tableoid, e.oid, e.extname::text, n.nspname::text
         FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname NOT IN ('plpgsql', 'pg_backup')
           AND ({} OR n.oid = ANY($2) OR EXISTS (
                 SELECT 1 FROM pg_catalog.pg_depend d
                 JOIN pg_catalog.pg_attribute a ON d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
                      AND a.atttypid = d.objid AND a.attrelid = ANY($1)
                 WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                   AND d.refobjid = e.oid AND d.deptype = 'e'))
           AND {}
         ORDER BY e.extname",
        cx.whole_database,
        not_extension_member("pg_catalog.pg_extension", "e.oid")
    );
    let extensions = query(cx, &sql, |r| {
        let name = r.string(3)?;
        let schema = r.string(4)?;
        Ok(Node::new(
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            EntryKind::Extension,
            None,
            &name,
            format!(
                "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {};",
                ident(&name),
                ident(&schema),
            ),
        ))
    })?;
    extensions.into_iter().for_each(|n| out.push(n));
    Ok(())
}
