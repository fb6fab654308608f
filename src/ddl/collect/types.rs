//! Types (shell, base, enum, range, composite, domain and its constraints) and collations.

use super::class::PG_NAMESPACE;
use super::codes::typtype as typtype_of;
use super::common::{
    not_extension_member, owner_sql, qualified, query, server_version, user_schema, Collected,
    Context,
};
use crate::archive::facts::{ConstraintFacts, TypeKind};
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey, Role, Segment};
use crate::error::Result;

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    collations(cx, out)?;
    types(cx, out)?;
    domain_constraints(cx, out)?;
    aliases(cx, out)?;
    Ok(())
}

fn collations(cx: &Context, out: &mut Collected) -> Result<()> {
    let version = server_version();
    let sql = format!(
        "SELECT c.tableoid, c.oid, n.nspname::text, c.collname::text, pg_catalog.pg_get_userbyid(c.collowner)::text,
                pg_catalog.format('CREATE COLLATION %I.%I (%s%s);', n.nspname, c.collname,
                  CASE c.collprovider
                    WHEN 'i' THEN pg_catalog.format('provider = icu, locale = %L', {locale}){rules}
                    WHEN 'b' THEN pg_catalog.format('provider = builtin, locale = %L', {locale})
                    WHEN 'd' THEN 'provider = default'
                    ELSE CASE WHEN c.collcollate = c.collctype
                              THEN pg_catalog.format('provider = libc, locale = %L', c.collcollate)
                              ELSE pg_catalog.format('provider = libc, lc_collate = %L, lc_ctype = %L', c.collcollate, c.collctype) END
                  END,
                  CASE WHEN c.collisdeterministic THEN '' ELSE ', deterministic = false' END)
         FROM pg_catalog.pg_collation c JOIN pg_catalog.pg_namespace n ON n.oid = c.collnamespace
         WHERE n.oid = ANY($2) AND {}
         ORDER BY c.oid",
        not_extension_member("pg_catalog.pg_collation", "c.oid"),
        // 17 renamed colliculocale to colllocale (and added the builtin provider); 16 added
        // ICU tailoring rules.
        locale = if version >= 170000 { "c.colllocale" } else { "c.colliculocale" },
        rules = if version >= 160000 {
            " || CASE WHEN c.collicurules IS NOT NULL THEN pg_catalog.format(', rules = %L', c.collicurules) ELSE '' END"
        } else {
            ""
        },
    );
    let nodes = query(cx, &sql, |r| {
        let (schema, name, owner) = (r.string(3)?, r.string(4)?, r.string(5)?);
        Ok(Node::new(
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            EntryKind::Collation,
            Some(&schema),
            &name,
            r.string(6)?,
        )
        .owned(
            Some(owner.clone()),
            Some(owner_sql("COLLATION", &qualified(&schema, &name), &owner)),
        ))
    })?;
    nodes.into_iter().for_each(|n| out.push(n));
    Ok(())
}

/// A type's definition by typtype. Domains get their CHECK constraints as parts (see
/// `domain_constraints`); base types get a shell for their I/O functions.
const TYPES: &str = r#"
SELECT t.tableoid, t.oid, n.nspname::text, t.typname::text, pg_catalog.pg_get_userbyid(t.typowner)::text,
  t.typtype::text, t.typnamespace,
  CASE
    WHEN t.typtype = 'p' THEN pg_catalog.format('CREATE TYPE %I.%I;', n.nspname, t.typname)
    WHEN t.typtype = 'e' THEN pg_catalog.format('CREATE TYPE %I.%I AS ENUM (%s);', n.nspname, t.typname,
         (SELECT coalesce(pg_catalog.string_agg(pg_catalog.quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder), '')
          FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid))
    WHEN t.typtype = 'r' THEN pg_catalog.format('CREATE TYPE %I.%I AS RANGE (%s);', n.nspname, t.typname,
         'subtype = ' || pg_catalog.format_type(r.rngsubtype, NULL)
         || coalesce((SELECT pg_catalog.format(', multirange_type_name = %I.%I', mn.nspname, mt.typname)
                      FROM pg_catalog.pg_type mt JOIN pg_catalog.pg_namespace mn ON mn.oid = mt.typnamespace
                      WHERE mt.oid = r.rngmultitypid), '')
         || coalesce((SELECT pg_catalog.format(', subtype_opclass = %I.%I', ocn.nspname, oc.opcname)
                      FROM pg_catalog.pg_opclass oc JOIN pg_catalog.pg_namespace ocn ON ocn.oid = oc.opcnamespace
                      WHERE oc.oid = r.rngsubopc AND NOT oc.opcdefault), '')
         || CASE WHEN r.rngcollation <> 0 AND r.rngcollation IS DISTINCT FROM st.typcollation
                 THEN (SELECT pg_catalog.format(', collation = %I.%I', cn.nspname, co.collname)
                       FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
                       WHERE co.oid = r.rngcollation) ELSE '' END
         || CASE WHEN r.rngcanonical <> 0 THEN ', canonical = ' || r.rngcanonical::pg_catalog.regproc::text ELSE '' END
         || CASE WHEN r.rngsubdiff <> 0 THEN ', subtype_diff = ' || r.rngsubdiff::pg_catalog.regproc::text ELSE '' END)
    WHEN t.typtype = 'c' THEN pg_catalog.format(E'CREATE TYPE %I.%I AS (%s);', n.nspname, t.typname,
         (SELECT coalesce(pg_catalog.string_agg(pg_catalog.format(E'\n    %I %s%s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
                   CASE WHEN a.attcollation <> 0 AND a.attcollation IS DISTINCT FROM at.typcollation
                        THEN (SELECT pg_catalog.format(' COLLATE %I.%I', cn.nspname, co.collname)
                              FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
                              WHERE co.oid = a.attcollation) ELSE '' END), ',' ORDER BY a.attnum) || E'\n', '')
          FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type at ON at.oid = a.atttypid
          WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
    WHEN t.typtype = 'd' THEN pg_catalog.format('CREATE DOMAIN %I.%I AS %s%s%s%s', n.nspname, t.typname,
         pg_catalog.format_type(t.typbasetype, t.typtypmod),
         CASE WHEN t.typcollation <> 0 AND t.typcollation IS DISTINCT FROM bt.typcollation
              THEN (SELECT pg_catalog.format(' COLLATE %I.%I', cn.nspname, co.collname)
                    FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
                    WHERE co.oid = t.typcollation) ELSE '' END,
         CASE WHEN t.typdefaultbin IS NOT NULL
              THEN ' DEFAULT ' || pg_catalog.pg_get_expr(t.typdefaultbin, 'pg_catalog.pg_type'::pg_catalog.regclass) ELSE '' END,
         __DOMAIN_NOT_NULL__)
    WHEN t.typtype = 'b' THEN pg_catalog.format(E'CREATE TYPE %I.%I (\n    INTERNALLENGTH = %s,\n    INPUT = %s,\n    OUTPUT = %s%s%s%s%s%s%s%s,\n    ALIGNMENT = %s,\n    STORAGE = %s,\n    CATEGORY = %L%s%s%s%s%s\n);',
         n.nspname, t.typname,
         CASE WHEN t.typlen = -1 THEN 'variable' ELSE t.typlen::text END,
         t.typinput::pg_catalog.regproc::text, t.typoutput::pg_catalog.regproc::text,
         CASE WHEN t.typreceive <> 0 THEN E',\n    RECEIVE = ' || t.typreceive::pg_catalog.regproc::text ELSE '' END,
         CASE WHEN t.typsend <> 0 THEN E',\n    SEND = ' || t.typsend::pg_catalog.regproc::text ELSE '' END,
         CASE WHEN t.typmodin <> 0 THEN E',\n    TYPMOD_IN = ' || t.typmodin::pg_catalog.regproc::text ELSE '' END,
         CASE WHEN t.typmodout <> 0 THEN E',\n    TYPMOD_OUT = ' || t.typmodout::pg_catalog.regproc::text ELSE '' END,
         CASE WHEN t.typanalyze <> 0 THEN E',\n    ANALYZE = ' || t.typanalyze::pg_catalog.regproc::text ELSE '' END,
         CASE WHEN t.typsubscript <> 0 THEN E',\n    SUBSCRIPT = ' || t.typsubscript::pg_catalog.regproc::text ELSE '' END,
         CASE WHEN t.typbyval THEN E',\n    PASSEDBYVALUE' ELSE '' END,
         CASE t.typalign WHEN 'c' THEN 'char' WHEN 's' THEN 'int2' WHEN 'i' THEN 'int4' ELSE 'double' END,
         CASE t.typstorage WHEN 'p' THEN 'plain' WHEN 'e' THEN 'external' WHEN 'x' THEN 'extended' ELSE 'main' END,
         t.typcategory,
         CASE WHEN t.typispreferred THEN E',\n    PREFERRED = true' ELSE '' END,
         CASE WHEN t.typdefault IS NOT NULL THEN E',\n    DEFAULT = ' || pg_catalog.quote_literal(t.typdefault) ELSE '' END,
         CASE WHEN t.typelem <> 0 THEN E',\n    ELEMENT = ' || pg_catalog.format_type(t.typelem, NULL) ELSE '' END,
         CASE WHEN t.typdelim <> ',' THEN E',\n    DELIMITER = ' || pg_catalog.quote_literal(t.typdelim::text) ELSE '' END,
         CASE WHEN t.typcollation <> 0 THEN E',\n    COLLATABLE = true' ELSE '' END)
  END
FROM pg_catalog.pg_type t
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid
LEFT JOIN pg_catalog.pg_type st ON st.oid = r.rngsubtype
LEFT JOIN pg_catalog.pg_type bt ON bt.oid = t.typbasetype
WHERE n.oid = ANY($2)
  AND (t.typtype IN ('b', 'e', 'r', 'd')
       OR (t.typtype = 'p' AND NOT t.typisdefined)
       OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c'))
  -- Array types come with their element type.
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type e WHERE e.typarray = t.oid)
  AND __NOT_MEMBER__
ORDER BY t.oid"#;

fn types(cx: &Context, out: &mut Collected) -> Result<()> {
    let sql = TYPES
        .replace(
            "__NOT_MEMBER__",
            &not_extension_member("pg_catalog.pg_type", "t.oid"),
        )
        // From 17 a domain's NOT NULL is a named constraint (pg_constraint contype 'n'),
        // collected with its CHECK constraints.
        .replace(
            "__DOMAIN_NOT_NULL__",
            if server_version() >= 170000 {
                "''"
            } else {
                "CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END"
            },
        );
    let rows = query(cx, &sql, |r| {
        Ok((
            r.oid(1)?,
            r.oid(2)?,
            r.string(3)?,
            r.string(4)?,
            r.string(5)?,
            r.string(6)?,
            r.oid(7)?,
            r.string(8)?,
        ))
    })?;
    for (class, oid, schema, name, owner, typtype, nsp, sql) in rows {
        let key = ObjKey::new(class, oid);
        let q = qualified(&schema, &name);
        let typtype = typtype_of(&typtype)?;
        let (kind, keyword) = match typtype {
            TypeKind::Domain => (EntryKind::Domain, "DOMAIN"),
            TypeKind::Shell => (EntryKind::ShellType, "TYPE"),
            _ => (EntryKind::Type, "TYPE"),
        };
        let mut node = Node::new(key, kind, Some(&schema), &name, sql)
            .owned(Some(owner.clone()), Some(owner_sql(keyword, &q, &owner)));
        node.facts.type_kind = Some(typtype);
        if typtype == TypeKind::Domain {
            // The domain's CHECK constraints are parts of it, inserted later; the statement
            // ends after them.
            node.sql.push(Segment::Text(String::new()));
        }
        out.push(node);
        // A base type's I/O functions take and return it: they are created against its
        // shell, then the type (pg_dump does the same when it meets the loop). A range
        // type's canonical function, likewise.
        if matches!(typtype, TypeKind::Base | TypeKind::Range) {
            let mut shell = Node::new(
                key.with(Role::Shell),
                EntryKind::ShellType,
                Some(&schema),
                &name,
                format!("CREATE TYPE {q};"),
            )
            .dep(ObjKey::new(PG_NAMESPACE, nsp));
            shell.belongs_to = Some(key);
            shell.facts.type_kind = Some(TypeKind::Shell);
            out.push(shell);
        }
    }
    Ok(())
}

/// A domain's CHECK constraints (and from 17 its named NOT NULL): written inside its CREATE
/// DOMAIN, or split off to an ALTER DOMAIN when a loop needs that. NOT VALID ones are always
/// separate (post-data).
fn domain_constraints(cx: &Context, out: &mut Collected) -> Result<()> {
    let contypes = if server_version() >= 170000 {
        "('c', 'n')"
    } else {
        "('c')"
    };
    let sql = format!(
        "SELECT co.tableoid, co.oid, n.nspname::text, t.typname::text, co.conname::text,
                pg_catalog.pg_get_constraintdef(co.oid), co.convalidated, t.tableoid, t.oid, co.contype::text
         FROM pg_catalog.pg_constraint co
         JOIN pg_catalog.pg_type t ON t.oid = co.contypid
         JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
         WHERE n.oid = ANY($2) AND co.contype IN {contypes} AND {}
         ORDER BY co.conname",
        not_extension_member("pg_catalog.pg_type", "t.oid")
    );
    let rows = query(cx, &sql, |r| {
        Ok((
            r.oid(1)?,
            r.oid(2)?,
            r.string(3)?,
            r.string(4)?,
            r.string(5)?,
            r.string(6)?,
            r.bool(7)?,
            ObjKey::new(r.oid(8)?, r.oid(9)?),
            super::codes::contype(&r.string(10)?)?,
        ))
    })?;
    for (class, oid, schema, domain, conname, def, validated, dkey, contype) in rows {
        let key = ObjKey::new(class, oid);
        let add = format!(
            "ALTER DOMAIN {} ADD CONSTRAINT {} {def};",
            qualified(&schema, &domain),
            super::common::ident(&conname)
        );
        let mut node = Node::new(
            key,
            EntryKind::DomainConstraint,
            Some(&schema),
            &format!("{domain} {conname}"),
            add,
        )
        .of(dkey);
        node.facts.constraint = Some(ConstraintFacts {
            kind: contype,
            name: conname.clone(),
            validated,
        });
        if validated {
            node.part_of = Some(dkey);
            if let Some(d) = out.nodes.iter_mut().find(|n| n.key == dkey) {
                let end = d.sql.len() - 1;
                d.sql.insert(
                    end,
                    Segment::Part {
                        key,
                        inline: format!(" CONSTRAINT {} {def}", super::common::ident(&conname)),
                        split: String::new(),
                    },
                );
            }
        }
        out.push(node);
    }
    // Close each CREATE DOMAIN.
    for n in out.nodes.iter_mut().filter(|n| n.kind == EntryKind::Domain) {
        if let Some(Segment::Text(t)) = n.sql.last_mut() {
            t.push(';');
        }
    }
    Ok(())
}

/// Catalog rows that are part of a type: its array type, a range's multirange, a composite
/// type's pg_class row.
fn aliases(cx: &Context, out: &mut Collected) -> Result<()> {
    let sql = format!(
        "SELECT 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid, t.typarray, t.tableoid, t.oid FROM pg_catalog.pg_type t
         WHERE t.typarray <> 0 AND {s}
         UNION ALL
         SELECT 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid, r.rngmultitypid, t.tableoid, t.oid
         FROM pg_catalog.pg_range r JOIN pg_catalog.pg_type t ON t.oid = r.rngtypid WHERE {s}
         UNION ALL
         SELECT 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid, t.typrelid, t.tableoid, t.oid
         FROM pg_catalog.pg_type t JOIN pg_catalog.pg_class c ON c.oid = t.typrelid AND c.relkind = 'c' WHERE {s}",
        s = user_schema("t.typnamespace")
    );
    let rows = query(cx, &sql, |r| {
        Ok((r.oid(1)?, r.oid(2)?, r.oid(3)?, r.oid(4)?))
    })?;
    for (class, oid, tclass, toid) in rows {
        out.alias(class, oid, ObjKey::new(tclass, toid));
    }
    Ok(())
}
