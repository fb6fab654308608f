//! Grants and revokes on PostgreSQL's own objects (pg_catalog's schema, tables, columns,
//! functions and types, and the built-in languages), as changes from what initdb set up
//! (pg_init_privs, else the built-in default), as pg_dump does for a whole database. Such
//! objects are never created by a backup, so each change is an ACL entry of its own.

use super::{query, Collected, Context};
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey, Role};
use crate::error::Result;

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    if !cx.whole_database {
        return Ok(());
    }
    let nodes = query(cx, SYSTEM_ACLS, |r| {
        let (class, oid, sub) = (r.oid(1)?, r.oid(2)?, r.int(3)?);
        let node = Node::new(
            ObjKey::sub(class, oid, sub).with(Role::Acl),
            EntryKind::Acl,
            None,
            &r.string(4)?,
            r.string(5)?,
        );
        // A table's REVOKE also takes its columns' privileges: columns after their table.
        Ok(if sub > 0 {
            node.dep(ObjKey::sub(class, oid, 0).with(Role::Acl))
        } else {
            node
        })
    })?;
    for n in nodes {
        out.push(n);
    }
    Ok(())
}

/// One row per system object whose privileges differ from initdb's: (catalog, oid, column,
/// "KEYWORD name" for people, the statements). `cur` and `base` are the current and the
/// initial ACL (a column's default, NULL, is no privileges at all).
const SYSTEM_ACLS: &str = r#"
WITH o AS (
  SELECT c.tableoid AS class, c.oid, 0 AS sub, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kw,
         pg_catalog.format('%I.%I', n.nspname, c.relname) AS ident, NULL::text AS col,
         coalesce(c.relacl, pg_catalog.acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner)) AS cur,
         coalesce(ip.initprivs, pg_catalog.acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner)) AS base
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = c.tableoid AND ip.objoid = c.oid AND ip.objsubid = 0
  WHERE n.nspname = 'pg_catalog' AND c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p')
  UNION ALL
  SELECT c.tableoid, c.oid, a.attnum, 'TABLE', pg_catalog.format('%I.%I', n.nspname, c.relname),
         pg_catalog.quote_ident(a.attname),
         a.attacl, ip.initprivs
  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = c.tableoid AND ip.objoid = c.oid AND ip.objsubid = a.attnum
  WHERE n.nspname = 'pg_catalog' AND a.attnum > 0 AND NOT a.attisdropped
    AND (a.attacl IS NOT NULL OR ip.initprivs IS NOT NULL)
  UNION ALL
  SELECT p.tableoid, p.oid, 0, 'ROUTINE', p.oid::pg_catalog.regprocedure::text, NULL,
         coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner)),
         coalesce(ip.initprivs, pg_catalog.acldefault('f', p.proowner))
  FROM pg_catalog.pg_proc p
  LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = p.tableoid AND ip.objoid = p.oid AND ip.objsubid = 0
  WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND (p.proacl IS NOT NULL OR ip.initprivs IS NOT NULL)
  UNION ALL
  SELECT t.tableoid, t.oid, 0, 'TYPE', pg_catalog.format('%I.%I', 'pg_catalog', t.typname), NULL,
         coalesce(t.typacl, pg_catalog.acldefault('T', t.typowner)),
         coalesce(ip.initprivs, pg_catalog.acldefault('T', t.typowner))
  FROM pg_catalog.pg_type t
  LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = t.tableoid AND ip.objoid = t.oid AND ip.objsubid = 0
  WHERE t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace AND (t.typacl IS NOT NULL OR ip.initprivs IS NOT NULL)
  UNION ALL
  SELECT n.tableoid, n.oid, 0, 'SCHEMA', pg_catalog.quote_ident(n.nspname), NULL,
         coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner)),
         coalesce(ip.initprivs, pg_catalog.acldefault('n', n.nspowner))
  FROM pg_catalog.pg_namespace n
  LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = n.tableoid AND ip.objoid = n.oid AND ip.objsubid = 0
  WHERE n.nspname = 'pg_catalog'
  UNION ALL
  SELECT l.tableoid, l.oid, 0, 'LANGUAGE', pg_catalog.quote_ident(l.lanname), NULL,
         coalesce(l.lanacl, pg_catalog.acldefault('l', l.lanowner)),
         coalesce(ip.initprivs, pg_catalog.acldefault('l', l.lanowner))
  FROM pg_catalog.pg_language l
  LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = l.tableoid AND ip.objoid = l.oid AND ip.objsubid = 0
  WHERE l.oid < 16384
    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend dx WHERE dx.classid = l.tableoid AND dx.objid = l.oid AND dx.deptype = 'e')
),
-- Privileges as (grantee, privilege, grantable), current and initial.
x AS (
  SELECT o.*, s.kind, s.grantee, s.privilege_type, s.is_grantable
  FROM o CROSS JOIN LATERAL (
    -- (aclexplode refuses an empty array, which a column stripped of every grant can hold)
    SELECT 'cur' AS kind, a.grantee, a.privilege_type, a.is_grantable
    FROM pg_catalog.aclexplode(CASE WHEN pg_catalog.cardinality(o.cur) > 0 THEN o.cur END) a
    UNION ALL
    SELECT 'base', b.grantee, b.privilege_type, b.is_grantable
    FROM pg_catalog.aclexplode(CASE WHEN pg_catalog.cardinality(o.base) > 0 THEN o.base END) b) s
  WHERE o.cur IS DISTINCT FROM o.base
),
st AS (
  -- Initial privileges gone: REVOKE (or only their grant option).
  SELECT b.class, b.oid, b.sub, b.kw, b.ident, b.col, 1 AS ord, b.grantee, b.privilege_type,
         pg_catalog.format('REVOKE %s%s%s ON %s %s FROM %s;',
                CASE WHEN c.grantee IS NOT NULL THEN 'GRANT OPTION FOR ' ELSE '' END,
                b.privilege_type, coalesce(' (' || b.col || ')', ''), b.kw, b.ident,
                CASE WHEN b.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(b.grantee)) END) AS s
  FROM x b LEFT JOIN x c ON c.kind = 'cur' AND c.class = b.class AND c.oid = b.oid AND c.sub = b.sub
                        AND c.grantee = b.grantee AND c.privilege_type = b.privilege_type
  WHERE b.kind = 'base' AND (c.grantee IS NULL OR (b.is_grantable AND NOT c.is_grantable))
  UNION ALL
  -- Privileges added since: GRANT.
  SELECT c.class, c.oid, c.sub, c.kw, c.ident, c.col, 2, c.grantee, c.privilege_type,
         pg_catalog.format('GRANT %s%s ON %s %s TO %s%s;',
                c.privilege_type, coalesce(' (' || c.col || ')', ''), c.kw, c.ident,
                CASE WHEN c.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(c.grantee)) END,
                CASE WHEN c.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
  FROM x c
  WHERE c.kind = 'cur' AND NOT EXISTS (
    SELECT 1 FROM x b WHERE b.kind = 'base' AND b.class = c.class AND b.oid = c.oid AND b.sub = c.sub
      AND b.grantee = c.grantee AND b.privilege_type = c.privilege_type AND (b.is_grantable OR NOT c.is_grantable))
)
SELECT class, oid, sub,
       CASE WHEN col IS NULL THEN kw || ' ' || ident ELSE 'COLUMN ' || ident || '.' || col END,
       pg_catalog.string_agg(s, E'\n' ORDER BY ord, grantee, privilege_type)
FROM st GROUP BY class, oid, sub, kw, ident, col
ORDER BY class, oid, sub"#;
