//! Procedural languages, casts, transforms (database-wide: whole-database backups only) and
//! conversions (schema objects).

use super::common::{ident, not_extension_member, owner_sql, qualified, query, Collected, Context};
use super::operators::FIRST_NORMAL_OID;
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey};
use crate::error::Result;

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    conversions(cx, out)?;
    if !cx.whole_database {
        return Ok(());
    }
    let languages = format!(
        "SELECT l.tableoid, l.oid, l.lanname::text, pg_catalog.pg_get_userbyid(l.lanowner)::text,
                pg_catalog.format('CREATE %sPROCEDURAL LANGUAGE %I HANDLER %s%s%s;',
                       CASE WHEN l.lanpltrusted THEN 'TRUSTED ' ELSE '' END, l.lanname,
                       l.lanplcallfoid::pg_catalog.regproc::text,
                       CASE WHEN l.laninline <> 0 THEN ' INLINE ' || l.laninline::pg_catalog.regproc::text ELSE '' END,
                       CASE WHEN l.lanvalidator <> 0 THEN ' VALIDATOR ' || l.lanvalidator::pg_catalog.regproc::text ELSE '' END)
         FROM pg_catalog.pg_language l
         WHERE l.oid >= {FIRST_NORMAL_OID} AND l.lanispl AND {}
         ORDER BY l.oid",
        not_extension_member("pg_catalog.pg_language", "l.oid")
    );
    let nodes = query(cx, &languages, |r| {
        let (name, owner) = (r.string(3)?, r.string(4)?);
        Ok(Node::new(
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            EntryKind::Language,
            None,
            &name,
            r.string(5)?,
        )
        .owned(
            Some(owner.clone()),
            Some(owner_sql("LANGUAGE", &ident(&name), &owner)),
        ))
    })?;
    nodes.into_iter().for_each(|n| out.push(n));

    let casts = format!(
        "SELECT c.tableoid, c.oid,
                pg_catalog.format('(%s AS %s)', pg_catalog.format_type(c.castsource, NULL), pg_catalog.format_type(c.casttarget, NULL)),
                pg_catalog.format('CREATE CAST (%s AS %s) %s%s;',
                       pg_catalog.format_type(c.castsource, NULL), pg_catalog.format_type(c.casttarget, NULL),
                       CASE c.castmethod WHEN 'f' THEN 'WITH FUNCTION ' || c.castfunc::pg_catalog.regprocedure::text
                                         WHEN 'i' THEN 'WITH INOUT' ELSE 'WITHOUT FUNCTION' END,
                       CASE c.castcontext WHEN 'a' THEN ' AS ASSIGNMENT' WHEN 'i' THEN ' AS IMPLICIT' ELSE '' END)
         FROM pg_catalog.pg_cast c
         WHERE c.oid >= {FIRST_NORMAL_OID} AND {}
           -- A multirange type's casts come with it.
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_cast'::pg_catalog.regclass
                           AND d.objid = c.oid AND d.deptype = 'i')
         ORDER BY c.oid",
        not_extension_member("pg_catalog.pg_cast", "c.oid")
    );
    let nodes = query(cx, &casts, |r| {
        Ok(Node::new(
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            EntryKind::Cast,
            None,
            &r.string(3)?,
            r.string(4)?,
        ))
    })?;
    nodes.into_iter().for_each(|n| out.push(n));

    let transforms = format!(
        "SELECT t.tableoid, t.oid,
                pg_catalog.format('FOR %s LANGUAGE %I', pg_catalog.format_type(t.trftype, NULL), l.lanname),
                pg_catalog.format('CREATE TRANSFORM FOR %s LANGUAGE %I (%s);', pg_catalog.format_type(t.trftype, NULL), l.lanname,
                       pg_catalog.concat_ws(', ',
                         CASE WHEN t.trffromsql <> 0 THEN 'FROM SQL WITH FUNCTION ' || t.trffromsql::pg_catalog.regprocedure::text END,
                         CASE WHEN t.trftosql <> 0 THEN 'TO SQL WITH FUNCTION ' || t.trftosql::pg_catalog.regprocedure::text END))
         FROM pg_catalog.pg_transform t JOIN pg_catalog.pg_language l ON l.oid = t.trflang
         WHERE t.oid >= {FIRST_NORMAL_OID} AND {}
         ORDER BY t.oid",
        not_extension_member("pg_catalog.pg_transform", "t.oid")
    );
    let nodes = query(cx, &transforms, |r| {
        Ok(Node::new(
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            EntryKind::Transform,
            None,
            &r.string(3)?,
            r.string(4)?,
        ))
    })?;
    nodes.into_iter().for_each(|n| out.push(n));
    Ok(())
}

fn conversions(cx: &Context, out: &mut Collected) -> Result<()> {
    let sql = format!(
        "SELECT c.tableoid, c.oid, n.nspname::text, c.conname::text, pg_catalog.pg_get_userbyid(c.conowner)::text,
                pg_catalog.format('CREATE %sCONVERSION %I.%I FOR %L TO %L FROM %s;',
                       CASE WHEN c.condefault THEN 'DEFAULT ' ELSE '' END, n.nspname, c.conname,
                       pg_catalog.pg_encoding_to_char(c.conforencoding), pg_catalog.pg_encoding_to_char(c.contoencoding),
                       c.conproc::pg_catalog.regproc::text)
         FROM pg_catalog.pg_conversion c JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace
         WHERE n.oid = ANY($2) AND {}
         ORDER BY c.oid",
        not_extension_member("pg_catalog.pg_conversion", "c.oid")
    );
    let nodes = query(cx, &sql, |r| {
        let (schema, name, owner) = (r.string(3)?, r.string(4)?, r.string(5)?);
        Ok(Node::new(
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            EntryKind::Conversion,
            Some(&schema),
            &name,
            r.string(6)?,
        )
        .owned(
            Some(owner.clone()),
            Some(owner_sql("CONVERSION", &qualified(&schema, &name), &owner)),
        ))
    })?;
    nodes.into_iter().for_each(|n| out.push(n));
    Ok(())
}
