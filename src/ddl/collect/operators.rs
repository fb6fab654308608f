//! Operators, operator families and classes, access methods.

use super::common::{ident, not_extension_member, owner_sql, qualified, query, Collected, Context};
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey};
use crate::error::Result;

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    if cx.whole_database {
        access_methods(cx, out)?;
    }
    operators(cx, out)?;
    families(cx, out)?;
    classes(cx, out)?;
    // An operator or function of a family or class is part of it (its dependencies are the
    // class's, or the family's for a "loose" member).
    let rows = query(
        cx,
        "SELECT d.classid, d.objid, d.refclassid, d.refobjid FROM pg_catalog.pg_depend d
         WHERE d.classid IN ('pg_catalog.pg_amop'::pg_catalog.regclass, 'pg_catalog.pg_amproc'::pg_catalog.regclass)
           AND d.refclassid IN ('pg_catalog.pg_opclass'::pg_catalog.regclass, 'pg_catalog.pg_opfamily'::pg_catalog.regclass)
           AND d.deptype IN ('i', 'a')",
        |r| Ok((r.oid(1)?, r.oid(2)?, r.oid(3)?, r.oid(4)?)),
    )?;
    for (class, oid, refclass, refoid) in rows {
        out.alias(class, oid, ObjKey::new(refclass, refoid));
    }
    Ok(())
}

/// Objects created by initdb have oids below FirstNormalObjectId.
pub const FIRST_NORMAL_OID: &str = "16384";

fn access_methods(cx: &Context, out: &mut Collected) -> Result<()> {
    let sql = format!(
        "SELECT a.tableoid, a.oid, a.amname::text,
                pg_catalog.format('CREATE ACCESS METHOD %I TYPE %s HANDLER %s;', a.amname,
                       CASE a.amtype WHEN 'i' THEN 'INDEX' ELSE 'TABLE' END, a.amhandler::pg_catalog.regproc::text)
         FROM pg_catalog.pg_am a
         WHERE a.oid >= {FIRST_NORMAL_OID} AND {}
         ORDER BY a.oid",
        not_extension_member("pg_catalog.pg_am", "a.oid")
    );
    let nodes = query(cx, &sql, |r| {
        Ok(Node::new(
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            EntryKind::AccessMethod,
            None,
            &r.string(3)?,
            r.string(4)?,
        ))
    })?;
    nodes.into_iter().for_each(|n| out.push(n));
    Ok(())
}

fn operators(cx: &Context, out: &mut Collected) -> Result<()> {
    // Shell operators (no function: made by a COMMUTATOR or NEGATOR reference) are made
    // again the same way.
    let sql = format!(
        r#"SELECT o.tableoid, o.oid, n.nspname::text, o.oid::pg_catalog.regoperator::text,
                  o.oprname::text || pg_catalog.substring(o.oid::pg_catalog.regoperator::text, '\(.*$'),
                  pg_catalog.pg_get_userbyid(o.oprowner)::text,
                  pg_catalog.format(E'CREATE OPERATOR %I.%s (\n    FUNCTION = %s%s%s%s%s%s%s%s%s\n);', n.nspname, o.oprname,
                         o.oprcode::pg_catalog.regproc::text,
                         CASE WHEN o.oprleft <> 0 THEN E',\n    LEFTARG = ' || pg_catalog.format_type(o.oprleft, NULL) ELSE '' END,
                         CASE WHEN o.oprright <> 0 THEN E',\n    RIGHTARG = ' || pg_catalog.format_type(o.oprright, NULL) ELSE '' END,
                         (SELECT pg_catalog.format(E',\n    COMMUTATOR = OPERATOR(%I.%s)', cn.nspname, c.oprname)
                          FROM pg_catalog.pg_operator c JOIN pg_catalog.pg_namespace cn ON cn.oid = c.oprnamespace WHERE c.oid = o.oprcom),
                         (SELECT pg_catalog.format(E',\n    NEGATOR = OPERATOR(%I.%s)', cn.nspname, c.oprname)
                          FROM pg_catalog.pg_operator c JOIN pg_catalog.pg_namespace cn ON cn.oid = c.oprnamespace WHERE c.oid = o.oprnegate),
                         CASE WHEN o.oprcanmerge THEN E',\n    MERGES' ELSE '' END,
                         CASE WHEN o.oprcanhash THEN E',\n    HASHES' ELSE '' END,
                         CASE WHEN o.oprrest <> 0 THEN E',\n    RESTRICT = ' || o.oprrest::pg_catalog.regproc::text ELSE '' END,
                         CASE WHEN o.oprjoin <> 0 THEN E',\n    JOIN = ' || o.oprjoin::pg_catalog.regproc::text ELSE '' END)
           FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
           WHERE n.oid = ANY($2) AND o.oprcode <> 0 AND {}
           ORDER BY o.oid"#,
        not_extension_member("pg_catalog.pg_operator", "o.oid")
    );
    let nodes = query(cx, &sql, |r| {
        let (schema, identity, name, owner) =
            (r.string(3)?, r.string(4)?, r.string(5)?, r.string(6)?);
        Ok(Node::new(
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            EntryKind::Operator,
            Some(&schema),
            &name,
            r.string(7)?,
        )
        .owned(
            Some(owner.clone()),
            Some(owner_sql("OPERATOR", &identity, &owner)),
        ))
    })?;
    nodes.into_iter().for_each(|n| out.push(n));
    Ok(())
}

/// The members of a family or class, as the clauses of CREATE OPERATOR CLASS / ALTER
/// OPERATOR FAMILY ... ADD. `$x` is the dependency test choosing the members.
fn members(dep: &str) -> String {
    format!(
        r#"(SELECT pg_catalog.string_agg(m, E',\n    ' ORDER BY k1, k2, k3, k4) FROM (
             SELECT 1 AS k1, ao.amopstrategy::int AS k2, ao.amoplefttype AS k3, ao.amoprighttype AS k4,
                    pg_catalog.format('OPERATOR %s %s%s', ao.amopstrategy, ao.amopopr::pg_catalog.regoperator::text,
                           CASE WHEN ao.amoppurpose = 'o' THEN
                                (SELECT pg_catalog.format(' FOR ORDER BY %I.%I', sn.nspname, sf.opfname)
                                 FROM pg_catalog.pg_opfamily sf JOIN pg_catalog.pg_namespace sn ON sn.oid = sf.opfnamespace
                                 WHERE sf.oid = ao.amopsortfamily) ELSE '' END) AS m
             FROM pg_catalog.pg_amop ao JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_amop'::pg_catalog.regclass AND d.objid = ao.oid
             WHERE {dep}
             UNION ALL
             SELECT 2, ap.amprocnum::int, ap.amproclefttype, ap.amprocrighttype,
                    pg_catalog.format('FUNCTION %s (%s, %s) %s', ap.amprocnum, pg_catalog.format_type(ap.amproclefttype, NULL),
                           pg_catalog.format_type(ap.amprocrighttype, NULL), ap.amproc::pg_catalog.regprocedure::text)
             FROM pg_catalog.pg_amproc ap JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_amproc'::pg_catalog.regclass AND d.objid = ap.oid
             WHERE {dep}) AS mm)"#
    )
}

fn families(cx: &Context, out: &mut Collected) -> Result<()> {
    // A family is created on its own only where CREATE OPERATOR CLASS would not make it:
    // it has members of its own ("loose" ones), or no class of its name and owner.
    let loose = members(
        "d.refclassid = 'pg_catalog.pg_opfamily'::pg_catalog.regclass AND d.refobjid = f.oid AND d.deptype = 'a'",
    );
    let sql = format!(
        r#"SELECT f.tableoid, f.oid, n.nspname::text, f.opfname::text, pg_catalog.pg_get_userbyid(f.opfowner)::text,
                  am.amname::text, {loose}
           FROM pg_catalog.pg_opfamily f JOIN pg_catalog.pg_namespace n ON n.oid = f.opfnamespace
           JOIN pg_catalog.pg_am am ON am.oid = f.opfmethod
           WHERE n.oid = ANY($2) AND {}
             AND (NOT EXISTS (SELECT 1 FROM pg_catalog.pg_opclass c WHERE c.opcfamily = f.oid AND c.opcname = f.opfname
                                AND c.opcnamespace = f.opfnamespace AND c.opcowner = f.opfowner)
                  OR {loose} IS NOT NULL)
           ORDER BY f.oid"#,
        not_extension_member("pg_catalog.pg_opfamily", "f.oid")
    );
    let nodes = query(cx, &sql, |r| {
        let (schema, name, owner, am) = (r.string(3)?, r.string(4)?, r.string(5)?, r.string(6)?);
        let ident_am = format!("{} USING {}", qualified(&schema, &name), ident(&am));
        let mut sql = format!("CREATE OPERATOR FAMILY {ident_am};");
        if let Some(m) = r.text(7)? {
            sql.push_str(&format!("\nALTER OPERATOR FAMILY {ident_am} ADD\n    {m};"));
        }
        Ok(Node::new(
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            EntryKind::OperatorFamily,
            Some(&schema),
            &name,
            sql,
        )
        .owned(
            Some(owner.clone()),
            Some(owner_sql("OPERATOR FAMILY", &ident_am, &owner)),
        ))
    })?;
    nodes.into_iter().for_each(|n| out.push(n));
    Ok(())
}

fn classes(cx: &Context, out: &mut Collected) -> Result<()> {
    let own = members(
        "d.refclassid = 'pg_catalog.pg_opclass'::pg_catalog.regclass AND d.refobjid = c.oid AND d.deptype = 'i'",
    );
    let sql = format!(
        r#"SELECT c.tableoid, c.oid, n.nspname::text, c.opcname::text, pg_catalog.pg_get_userbyid(c.opcowner)::text,
                  am.amname::text,
                  pg_catalog.format(E'CREATE OPERATOR CLASS %I.%I\n    %sFOR TYPE %s USING %I%s AS\n    %s;',
                         n.nspname, c.opcname, CASE WHEN c.opcdefault THEN 'DEFAULT ' ELSE '' END,
                         pg_catalog.format_type(c.opcintype, NULL), am.amname,
                         CASE WHEN f.opfname <> c.opcname OR f.opfnamespace <> c.opcnamespace
                              THEN pg_catalog.format(' FAMILY %I.%I', fn.nspname, f.opfname) ELSE '' END,
                         -- A class with no member at all gets a no-op STORAGE clause, as pg_dump does.
                         coalesce(NULLIF(pg_catalog.concat_ws(E',\n    ',
                           CASE WHEN c.opckeytype <> 0 THEN 'STORAGE ' || pg_catalog.format_type(c.opckeytype, NULL) END,
                           {own}), ''), 'STORAGE ' || pg_catalog.format_type(c.opcintype, NULL)))
           FROM pg_catalog.pg_opclass c JOIN pg_catalog.pg_namespace n ON n.oid = c.opcnamespace
           JOIN pg_catalog.pg_am am ON am.oid = c.opcmethod
           JOIN pg_catalog.pg_opfamily f ON f.oid = c.opcfamily JOIN pg_catalog.pg_namespace fn ON fn.oid = f.opfnamespace
           WHERE n.oid = ANY($2) AND {}
           ORDER BY c.oid"#,
        not_extension_member("pg_catalog.pg_opclass", "c.oid")
    );
    let nodes = query(cx, &sql, |r| {
        let (schema, name, owner, am) = (r.string(3)?, r.string(4)?, r.string(5)?, r.string(6)?);
        let ident_am = format!("{} USING {}", qualified(&schema, &name), ident(&am));
        Ok(Node::new(
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            EntryKind::OperatorClass,
            Some(&schema),
            &name,
            r.string(7)?,
        )
        .owned(
            Some(owner.clone()),
            Some(owner_sql("OPERATOR CLASS", &ident_am, &owner)),
        ))
    })?;
    nodes.into_iter().for_each(|n| out.push(n));
    Ok(())
}
