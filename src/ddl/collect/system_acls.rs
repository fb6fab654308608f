//! Grants and revokes on PostgreSQL's own objects (pg_catalog's schema, tables, columns,
//! functions and types, and the built-in languages), as changes from what initdb set up
//! (pg_init_privs, else the built-in default), as pg_dump does for a whole database. Such
//! objects are never created by a backup, so each change is an ACL entry of its own.
//!
//! The same for the member objects of the extensions the backup takes (pg_dump's
//! checkExtensionMembership): their grants as changes from what the extension's script set up
//! (pg_init_privs), e.g. `GRANT USAGE ON SCHEMA cron TO app`; each entry comes with (and after)
//! its extension. A whole-database backup also takes those of the extensions initdb installed
//! (plpgsql, never collected: `REVOKE USAGE ON LANGUAGE plpgsql FROM PUBLIC`), as pg_dump does
//! for extensions in the range of oids initdb assigns.

use super::common::{query, Collected, Context};
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey, Role};
use crate::error::Result;

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    let extensions: Vec<String> = out
        .nodes
        .iter()
        .filter(|n| n.kind == EntryKind::Extension)
        .map(|n| n.key.oid.to_string())
        .collect();
    if !cx.whole_database && extensions.is_empty() {
        return Ok(());
    }
    // Numbers only: the oids of the collected extensions.
    let sql = SYSTEM_ACLS
        .replace(
            "__WHOLE__",
            if cx.whole_database { "true" } else { "false" },
        )
        .replace(
            "__EXTENSIONS__",
            &format!("'{{{}}}'::pg_catalog.oid[]", extensions.join(",")),
        );
    let nodes = query(cx, &sql, |r| {
        let (class, oid, sub, ext) = (r.oid(1)?, r.oid(2)?, r.int(3)?, r.oid(6)?);
        let node = Node::new(
            ObjKey::sub(class, oid, sub).with(Role::Acl),
            EntryKind::Acl,
            None,
            &r.string(4)?,
            r.string(5)?,
        );
        // An extension member's grants come and go with its extension.
        let node = if ext != 0 {
            node.of(ObjKey::new(super::class::PG_EXTENSION, ext))
        } else {
            node
        };
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
WITH m AS (
  -- Members of the collected extensions (their extension's oid), and in a whole-database
  -- backup those of the extensions initdb installs (plpgsql: never collected, every database
  -- has it; pg_dump likewise dumps only their members' grants), which belong to no entry (0).
  SELECT d.classid AS class, d.objid AS oid,
         CASE WHEN d.refobjid = ANY(__EXTENSIONS__) THEN d.refobjid ELSE 0::pg_catalog.oid END AS ext
  FROM pg_catalog.pg_depend d
  WHERE d.deptype = 'e' AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
    AND (d.refobjid = ANY(__EXTENSIONS__) OR (__WHOLE__ AND d.refobjid < 16384))
),
o AS (
  SELECT c.tableoid AS class, c.oid, 0 AS sub, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kw,
         pg_catalog.format('%I.%I', n.nspname, c.relname) AS ident, NULL::text AS col,
         coalesce(c.relacl, pg_catalog.acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner)) AS cur,
         coalesce(ip.initprivs, pg_catalog.acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner)) AS base,
         coalesce(m.ext, 0::pg_catalog.oid) AS ext
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = c.tableoid AND ip.objoid = c.oid AND ip.objsubid = 0
  LEFT JOIN m ON m.class = c.tableoid AND m.oid = c.oid
  WHERE ((__WHOLE__ AND n.nspname = 'pg_catalog') OR m.ext IS NOT NULL) AND c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p')
  UNION ALL
  SELECT c.tableoid, c.oid, a.attnum, 'TABLE', pg_catalog.format('%I.%I', n.nspname, c.relname),
         pg_catalog.quote_ident(a.attname),
         a.attacl, ip.initprivs, coalesce(m.ext, 0::pg_catalog.oid)
  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = c.tableoid AND ip.objoid = c.oid AND ip.objsubid = a.attnum
  LEFT JOIN m ON m.class = c.tableoid AND m.oid = c.oid
  -- System columns too (GRANT SELECT (tableoid) ON pg_catalog.pg_proc), as pg_dump reads them.
  WHERE ((__WHOLE__ AND n.nspname = 'pg_catalog') OR m.ext IS NOT NULL) AND NOT a.attisdropped
    AND (a.attacl IS NOT NULL OR ip.initprivs IS NOT NULL)
  UNION ALL
  SELECT p.tableoid, p.oid, 0, 'ROUTINE', p.oid::pg_catalog.regprocedure::text, NULL,
         coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner)),
         coalesce(ip.initprivs, pg_catalog.acldefault('f', p.proowner)), coalesce(m.ext, 0::pg_catalog.oid)
  FROM pg_catalog.pg_proc p
  LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = p.tableoid AND ip.objoid = p.oid AND ip.objsubid = 0
  LEFT JOIN m ON m.class = p.tableoid AND m.oid = p.oid
  WHERE ((__WHOLE__ AND p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace) OR m.ext IS NOT NULL)
    AND (p.proacl IS NOT NULL OR ip.initprivs IS NOT NULL)
  UNION ALL
  SELECT t.tableoid, t.oid, 0, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
         pg_catalog.format('%I.%I', tn.nspname, t.typname), NULL,
         coalesce(t.typacl, pg_catalog.acldefault('T', t.typowner)),
         coalesce(ip.initprivs, pg_catalog.acldefault('T', t.typowner)), coalesce(m.ext, 0::pg_catalog.oid)
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
  LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = t.tableoid AND ip.objoid = t.oid AND ip.objsubid = 0
  LEFT JOIN m ON m.class = t.tableoid AND m.oid = t.oid
  WHERE ((__WHOLE__ AND t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace) OR m.ext IS NOT NULL)
    AND (t.typacl IS NOT NULL OR ip.initprivs IS NOT NULL)
  UNION ALL
  SELECT n.tableoid, n.oid, 0, 'SCHEMA', pg_catalog.quote_ident(n.nspname), NULL,
         coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner)),
         coalesce(ip.initprivs, pg_catalog.acldefault('n', n.nspowner)), coalesce(m.ext, 0::pg_catalog.oid)
  FROM pg_catalog.pg_namespace n
  LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = n.tableoid AND ip.objoid = n.oid AND ip.objsubid = 0
  LEFT JOIN m ON m.class = n.tableoid AND m.oid = n.oid
  WHERE (__WHOLE__ AND n.nspname = 'pg_catalog') OR m.ext IS NOT NULL
  UNION ALL
  SELECT l.tableoid, l.oid, 0, 'LANGUAGE', pg_catalog.quote_ident(l.lanname), NULL,
         coalesce(l.lanacl, pg_catalog.acldefault('l', l.lanowner)),
         coalesce(ip.initprivs, pg_catalog.acldefault('l', l.lanowner)), coalesce(m.ext, 0::pg_catalog.oid)
  FROM pg_catalog.pg_language l
  LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = l.tableoid AND ip.objoid = l.oid AND ip.objsubid = 0
  LEFT JOIN m ON m.class = l.tableoid AND m.oid = l.oid
  WHERE (__WHOLE__ AND l.oid < 16384
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend dx WHERE dx.classid = l.tableoid AND dx.objid = l.oid AND dx.deptype = 'e'))
     OR m.ext IS NOT NULL
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
  SELECT b.class, b.oid, b.sub, b.kw, b.ident, b.col, b.ext, 1 AS ord, b.grantee, b.privilege_type,
         pg_catalog.format('REVOKE %s%s%s ON %s %s FROM %s;',
                CASE WHEN c.grantee IS NOT NULL THEN 'GRANT OPTION FOR ' ELSE '' END,
                b.privilege_type, coalesce(' (' || b.col || ')', ''), b.kw, b.ident,
                CASE WHEN b.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(b.grantee)) END) AS s
  FROM x b LEFT JOIN x c ON c.kind = 'cur' AND c.class = b.class AND c.oid = b.oid AND c.sub = b.sub
                        AND c.grantee = b.grantee AND c.privilege_type = b.privilege_type
  WHERE b.kind = 'base' AND (c.grantee IS NULL OR (b.is_grantable AND NOT c.is_grantable))
  UNION ALL
  -- Privileges added since: GRANT.
  SELECT c.class, c.oid, c.sub, c.kw, c.ident, c.col, c.ext, 2, c.grantee, c.privilege_type,
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
       pg_catalog.string_agg(s, E'\n' ORDER BY ord, grantee, privilege_type), ext
FROM st GROUP BY class, oid, sub, kw, ident, col, ext
ORDER BY class, oid, sub"#;
