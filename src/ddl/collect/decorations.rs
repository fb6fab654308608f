//! What decorates the collected objects: comments, security labels and grants, each an entry
//! of its own that depends on its object (as in pg_dump's TOC). Objects are named the way
//! PostgreSQL identifies them (pg_identify_object), so one query serves every object kind.

use std::collections::HashMap;

use pgrx::prelude::*;

use super::common::{Collected, Context, Row};
use crate::archive::acl;
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey, Role};
use crate::error::Result;

pub fn collect(_cx: &Context, out: &mut Collected) -> Result<()> {
    // Every catalog row that stands for a collected object: the objects, and their aliases.
    let mut targets: HashMap<(u32, u32), ObjKey> = out
        .nodes
        .iter()
        .filter(|n| n.key.role == Role::Object)
        .map(|n| ((n.key.class, n.key.oid), n.key))
        .collect();
    for (k, v) in &out.aliases {
        targets.entry(*k).or_insert(*v);
    }
    let (classes, oids): (Vec<pg_sys::Oid>, Vec<pg_sys::Oid>) = targets
        .keys()
        .map(|(c, o)| (pg_sys::Oid::from(*c), pg_sys::Oid::from(*o)))
        .unzip();
    let sections: HashMap<ObjKey, (crate::archive::toc::Section, Option<String>)> = out
        .nodes
        .iter()
        .map(|n| (n.key, (n.section, n.schema.clone())))
        .collect();
    // A grant on an object of a schema comes after the schema's grants: whoever passes on a
    // privilege (SET SESSION AUTHORIZATION in the sql script) needs USAGE on the schema first.
    let schema_keys: HashMap<String, ObjKey> = out
        .nodes
        .iter()
        .filter(|n| n.kind == EntryKind::Schema)
        .map(|n| (n.name.clone(), n.key))
        .collect();
    let mut add =
        |class: u32, oid: u32, sub: i32, role: Role, kind: EntryKind, name: String, sql: String| {
            let Some(target) = targets.get(&(class, oid)) else {
                return;
            };
            let (section, schema) = sections
                .get(target)
                .cloned()
                .unwrap_or((crate::archive::toc::Section::PreData, None));
            let mut node = Node::new(
                ObjKey::sub(class, oid, sub).with(role),
                kind,
                schema.as_deref(),
                &name,
                sql,
            )
            .of(*target);
            if let (Role::Acl, Some(k)) = (role, schema.as_ref().and_then(|s| schema_keys.get(s))) {
                node = node.dep(k.with(Role::Acl));
            }
            if role == Role::Acl && sub != 0 {
                // A column's grants after the table's: a table-level REVOKE clears column
                // grants too, and a grantor may hold its grant option on the whole table.
                node = node.dep(ObjKey::sub(class, oid, 0).with(Role::Acl));
            }
            node.section = section;
            out.nodes.push(node);
        };
    let rows = decorations(classes, oids)?;
    for d in rows {
        add(d.class, d.oid, d.sub, d.role, d.kind, d.name, d.sql);
    }
    Ok(())
}

struct Decoration {
    class: u32,
    oid: u32,
    sub: i32,
    role: Role,
    kind: EntryKind,
    name: String,
    sql: String,
}

/// The keyword COMMENT ON / SECURITY LABEL ON use for an object, from pg_identify_object's
/// type, and the object's name for them.
const KEYWORD_AND_NAME: &str = r#"
  CASE
    WHEN i.type LIKE '% column' THEN 'COLUMN'
    WHEN i.type IN ('table constraint', 'domain constraint') THEN 'CONSTRAINT'
    WHEN i.type = 'foreign-data wrapper' THEN 'FOREIGN DATA WRAPPER'
    WHEN i.type = 'statistics object' THEN 'STATISTICS'
    ELSE pg_catalog.upper(i.type) END,
  CASE
    -- An aggregate without arguments is named agg(*).
    WHEN i.type = 'aggregate' AND i.identity LIKE '%()' THEN pg_catalog.left(i.identity, -2) || '(*)'
    WHEN i.type = 'domain constraint' THEN
      (SELECT pg_catalog.format('%I ON DOMAIN %s', co.conname, co.contypid::pg_catalog.regtype)
       FROM pg_catalog.pg_constraint co WHERE co.oid = __OBJ__)
    -- An aggregate without arguments is named agg(*).
    WHEN i.type = 'aggregate' AND i.identity ~ '\(\)$' THEN pg_catalog.regexp_replace(i.identity, '\(\)$', '(*)')
    ELSE i.identity END"#;

fn decorations(classes: Vec<pg_sys::Oid>, oids: Vec<pg_sys::Oid>) -> Result<Vec<Decoration>> {
    let comment_names = KEYWORD_AND_NAME.replace("__OBJ__", "d.objoid");
    let label_names = KEYWORD_AND_NAME.replace("__OBJ__", "s.objoid");
    let sql = format!(
        r#"WITH k(class, oid) AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.oid[]), pg_catalog.unnest($2::pg_catalog.oid[])))
SELECT x.classoid, x.objoid, x.objsubid, 'c', kw, name,
       pg_catalog.format('COMMENT ON %s %s IS %L;', kw, name, x.description),
       NULL::text, NULL::text[], NULL::text[], NULL::text[], NULL::text[], NULL::text[], NULL::text[]
FROM (SELECT d.*, {comment_names}
      FROM pg_catalog.pg_description d JOIN k ON k.class = d.classoid AND k.oid = d.objoid
      CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.classoid, d.objoid, d.objsubid) i) AS x(objoid, classoid, objsubid, description, kw, name)
UNION ALL
-- The public schema without its comment: initdb gave it one, which a restore finds in place
-- (pg_dump writes the same statement).
SELECT n.tableoid, n.oid, 0, 'c', 'SCHEMA', 'public', 'COMMENT ON SCHEMA public IS '''';',
       NULL::text, NULL::text[], NULL::text[], NULL::text[], NULL::text[], NULL::text[], NULL::text[]
FROM pg_catalog.pg_namespace n JOIN k ON k.class = n.tableoid AND k.oid = n.oid
WHERE n.nspname = 'public'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_description d WHERE d.classoid = n.tableoid AND d.objoid = n.oid AND d.objsubid = 0)
UNION ALL
SELECT x.classoid, x.objoid, x.objsubid, 's', kw, name,
       pg_catalog.format('SECURITY LABEL FOR %I ON %s %s IS %L;', x.provider, kw, name, x.label),
       NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM (SELECT s.*, {label_names}
      FROM pg_catalog.pg_seclabel s JOIN k ON k.class = s.classoid AND k.oid = s.objoid
      CROSS JOIN LATERAL pg_catalog.pg_identify_object(s.classoid, s.objoid, s.objsubid) i) AS x(objoid, classoid, objsubid, provider, label, kw, name)
UNION ALL
SELECT o.class, o.oid, o.sub, 'a', o.kw, o.ident || coalesce('.' || o.col, ''), NULL::text,
       pg_catalog.pg_get_userbyid(o.owner)::text,
       -- The owner's default privileges the object no longer has.
       ARRAY(SELECT pg_catalog.format('REVOKE %s ON %s %s FROM %s;', d.privilege_type, o.kw, o.ident,
                    CASE WHEN d.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(d.grantee)) END)
             FROM pg_catalog.aclexplode(o.base) WITH ORDINALITY AS d(grantor, grantee, privilege_type, is_grantable, n)
             WHERE o.col IS NULL AND NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(o.acl) a
                                                WHERE a.grantee = d.grantee AND a.privilege_type = d.privilege_type)
             ORDER BY d.n)::text[],
       -- Every privilege it has beyond those, with its grantor (archive/acl.rs orders them).
       g.grantors, g.grantees, g.privileges, g.grantable, g.statements
FROM (
  SELECT c.tableoid AS class, c.oid, 0 AS sub, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kw,
         pg_catalog.format('%I.%I', n.nspname, c.relname) AS ident, c.relowner AS owner, c.relacl AS acl,
         (CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char" AS objtype, NULL::text AS col
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relacl IS NOT NULL
  UNION ALL
  SELECT c.tableoid, c.oid, a.attnum, 'TABLE', pg_catalog.format('%I.%I', n.nspname, c.relname), c.relowner, a.attacl,
         'c'::"char", pg_catalog.quote_ident(a.attname)
  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE a.attacl IS NOT NULL AND NOT a.attisdropped
  UNION ALL
  SELECT p.tableoid, p.oid, 0, CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.oid::pg_catalog.regprocedure::text,
         p.proowner, p.proacl, 'f'::"char", NULL FROM pg_catalog.pg_proc p WHERE p.proacl IS NOT NULL
  UNION ALL
  SELECT t.tableoid, t.oid, 0, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, pg_catalog.format('%I.%I', n.nspname, t.typname),
         t.typowner, t.typacl, 'T'::"char", NULL
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE t.typacl IS NOT NULL
  UNION ALL
  SELECT n.tableoid, n.oid, 0, 'SCHEMA', pg_catalog.quote_ident(n.nspname), n.nspowner, n.nspacl, 'n'::"char", NULL
  FROM pg_catalog.pg_namespace n WHERE n.nspacl IS NOT NULL
  UNION ALL
  SELECT l.tableoid, l.oid, 0, 'LANGUAGE', pg_catalog.quote_ident(l.lanname), l.lanowner, l.lanacl, 'l'::"char", NULL
  FROM pg_catalog.pg_language l WHERE l.lanacl IS NOT NULL
  UNION ALL
  SELECT f.tableoid, f.oid, 0, 'FOREIGN DATA WRAPPER', pg_catalog.quote_ident(f.fdwname), f.fdwowner, f.fdwacl, 'F'::"char", NULL
  FROM pg_catalog.pg_foreign_data_wrapper f WHERE f.fdwacl IS NOT NULL
  UNION ALL
  SELECT s.tableoid, s.oid, 0, 'FOREIGN SERVER', pg_catalog.quote_ident(s.srvname), s.srvowner, s.srvacl, 'S'::"char", NULL
  FROM pg_catalog.pg_foreign_server s WHERE s.srvacl IS NOT NULL
  UNION ALL
  SELECT m.tableoid, m.oid, 0, 'LARGE OBJECT', m.oid::text, m.lomowner, m.lomacl, 'L'::"char", NULL
  FROM pg_catalog.pg_largeobject_metadata m WHERE m.lomacl IS NOT NULL
) o0 JOIN k ON k.class = o0.class AND k.oid = o0.oid
-- What the object starts with where it is created: what initdb set up (pg_init_privs: the
-- public schema, which a restore finds in place: `REVOKE USAGE ON SCHEMA public FROM PUBLIC`
-- must come back), else the owner's default (as pg_dump's base ACL).
LEFT JOIN pg_catalog.pg_init_privs ip ON ip.classoid = o0.class AND ip.objoid = o0.oid AND ip.objsubid = o0.sub
CROSS JOIN LATERAL (SELECT o0.*, coalesce(ip.initprivs, pg_catalog.acldefault(o0.objtype, o0.owner)) AS base) o
CROSS JOIN LATERAL (
  SELECT pg_catalog.array_agg(pg_catalog.pg_get_userbyid(a.grantor)::text ORDER BY a.n) AS grantors,
         pg_catalog.array_agg(CASE WHEN a.grantee = 0 THEN '' ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END ORDER BY a.n) AS grantees,
         pg_catalog.array_agg(a.privilege_type ORDER BY a.n) AS privileges,
         pg_catalog.array_agg(a.is_grantable::text ORDER BY a.n) AS grantable,
         pg_catalog.array_agg(pg_catalog.format('GRANT %s%s ON %s %s TO %s%s;', a.privilege_type, coalesce(' (' || o.col || ')', ''), o.kw, o.ident,
                CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
                CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) ORDER BY a.n) AS statements
  FROM pg_catalog.aclexplode(o.acl) WITH ORDINALITY AS a(grantor, grantee, privilege_type, is_grantable, n)
  WHERE o.col IS NOT NULL OR NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(o.base) d
                                        WHERE d.grantee = a.grantee AND d.privilege_type = a.privilege_type
                                          AND d.is_grantable = a.is_grantable AND d.grantor = a.grantor)) g"#
    );
    Spi::connect(|client| {
        client
            .select(&sql, None, &[classes.into(), oids.into()])?
            .map(|r| {
                let r = Row(&r);
                let (role, kind) = match r.string(4)?.as_str() {
                    "c" => (Role::Comment, EntryKind::Comment),
                    "s" => (Role::SecurityLabel, EntryKind::SecurityLabel),
                    _ => (Role::Acl, EntryKind::Acl),
                };
                let sql = if kind == EntryKind::Acl {
                    let owner = r.string(8)?;
                    let (grantors, grantees, privileges, grantable, statements) = (
                        r.texts(10)?,
                        r.texts(11)?,
                        r.texts(12)?,
                        r.texts(13)?,
                        r.texts(14)?,
                    );
                    let grants = (0..statements.len())
                        .map(|i| acl::Grant {
                            grantor: grantors[i].clone(),
                            grantee: Some(grantees[i].clone()).filter(|g| !g.is_empty()),
                            privilege: privileges[i].clone(),
                            grantable: grantable[i] == "true",
                            sql: statements[i].clone(),
                        })
                        .collect();
                    acl::statements(&owner, &r.texts(9)?, grants)
                } else {
                    r.string(7)?
                };
                Ok(Decoration {
                    class: r.oid(1)?,
                    oid: r.oid(2)?,
                    sub: r.int(3)?,
                    role,
                    kind,
                    name: format!("{} {}", r.string(5)?, r.string(6)?),
                    sql,
                })
            })
            .filter(|d: &Result<Decoration>| d.as_ref().map_or(true, |d| !d.sql.is_empty()))
            .collect()
    })
}
