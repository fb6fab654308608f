//! Functions, procedures and aggregates.

use super::codes::Prokind;
use super::common::{not_extension_member, owner_sql, query, Collected, Context};
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey};
use crate::error::Result;

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    functions(cx, out)?;
    aggregates(cx, out)
}

fn functions(cx: &Context, out: &mut Collected) -> Result<()> {
    // pg_get_functiondef under an empty search_path: argument and return types, and the
    // SET clauses, come out qualified. Window functions included; aggregates are not
    // functions here.
    let sql = format!(
        "SELECT p.tableoid, p.oid, n.nspname::text,
                p.proname::text || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
                pg_catalog.pg_get_userbyid(p.proowner)::text, p.prokind::text,
                pg_catalog.pg_get_functiondef(p.oid) || ';',
                p.oid::pg_catalog.regprocedure::text
         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         WHERE n.oid = ANY($2) AND p.prokind IN ('f', 'p', 'w') AND {}
           -- A range type's constructors come with the type.
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                           AND d.objid = p.oid AND d.deptype = 'i')
         ORDER BY p.oid",
        not_extension_member("pg_catalog.pg_proc", "p.oid")
    );
    let nodes = query(cx, &sql, |r| {
        let (schema, name, owner) = (r.string(3)?, r.string(4)?, r.string(5)?);
        let (kind, keyword) = match Prokind::decode(&r.string(6)?)? {
            Prokind::Procedure => (EntryKind::Procedure, "PROCEDURE"),
            Prokind::Function | Prokind::Window => (EntryKind::Function, "FUNCTION"),
            Prokind::Aggregate => {
                return Err(super::common::unexpected("an aggregate among functions"))
            }
        };
        // CREATE, not CREATE OR REPLACE: a function that exists where the backup is
        // restored is kept (and reported), never silently replaced.
        let def = r.string(7)?;
        let def = match def.strip_prefix("CREATE OR REPLACE ") {
            Some(rest) => format!("CREATE {rest}"),
            None => def,
        };
        Ok(Node::new(
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            kind,
            Some(&schema),
            &name,
            def,
        )
        .owned(
            Some(owner.clone()),
            Some(owner_sql(keyword, &r.string(8)?, &owner)),
        ))
    })?;
    nodes.into_iter().for_each(|n| out.push(n));
    Ok(())
}

/// CREATE AGGREGATE from pg_aggregate, every option spelled out (plain, moving-aggregate,
/// ordered-set and hypothetical-set aggregates).
const AGGREGATES: &str = r#"
SELECT p.tableoid, p.oid, n.nspname::text,
  p.proname::text || '(' || CASE WHEN p.pronargs = 0 THEN '*' ELSE pg_catalog.pg_get_function_identity_arguments(p.oid) END || ')',
  pg_catalog.pg_get_userbyid(p.proowner)::text,
  pg_catalog.format(E'CREATE AGGREGATE %I.%I(%s) (\n    SFUNC = %s,\n    STYPE = %s%s\n);', n.nspname, p.proname,
    CASE WHEN p.pronargs = 0 THEN '*' ELSE pg_catalog.pg_get_function_arguments(p.oid) END,
    a.aggtransfn::pg_catalog.regproc::text, pg_catalog.format_type(a.aggtranstype, NULL),
    CASE WHEN a.aggtransspace <> 0 THEN E',\n    SSPACE = ' || a.aggtransspace ELSE '' END
    || CASE WHEN a.agginitval IS NOT NULL THEN E',\n    INITCOND = ' || pg_catalog.quote_literal(a.agginitval) ELSE '' END
    || CASE WHEN a.aggfinalfn <> 0 THEN E',\n    FINALFUNC = ' || a.aggfinalfn::pg_catalog.regproc::text
            || CASE WHEN a.aggfinalextra THEN E',\n    FINALFUNC_EXTRA' ELSE '' END
            || E',\n    FINALFUNC_MODIFY = ' || CASE a.aggfinalmodify WHEN 'r' THEN 'READ_ONLY' WHEN 's' THEN 'SHAREABLE' ELSE 'READ_WRITE' END
       ELSE '' END
    || CASE WHEN a.aggcombinefn <> 0 THEN E',\n    COMBINEFUNC = ' || a.aggcombinefn::pg_catalog.regproc::text ELSE '' END
    || CASE WHEN a.aggserialfn <> 0 THEN E',\n    SERIALFUNC = ' || a.aggserialfn::pg_catalog.regproc::text ELSE '' END
    || CASE WHEN a.aggdeserialfn <> 0 THEN E',\n    DESERIALFUNC = ' || a.aggdeserialfn::pg_catalog.regproc::text ELSE '' END
    || CASE WHEN a.aggmtransfn <> 0 THEN
            E',\n    MSFUNC = ' || a.aggmtransfn::pg_catalog.regproc::text
            || E',\n    MINVFUNC = ' || a.aggminvtransfn::pg_catalog.regproc::text
            || E',\n    MSTYPE = ' || pg_catalog.format_type(a.aggmtranstype, NULL)
            || CASE WHEN a.aggmtransspace <> 0 THEN E',\n    MSSPACE = ' || a.aggmtransspace ELSE '' END
            || CASE WHEN a.aggminitval IS NOT NULL THEN E',\n    MINITCOND = ' || pg_catalog.quote_literal(a.aggminitval) ELSE '' END
            || CASE WHEN a.aggmfinalfn <> 0 THEN E',\n    MFINALFUNC = ' || a.aggmfinalfn::pg_catalog.regproc::text
                    || CASE WHEN a.aggmfinalextra THEN E',\n    MFINALFUNC_EXTRA' ELSE '' END
                    || E',\n    MFINALFUNC_MODIFY = ' || CASE a.aggmfinalmodify WHEN 'r' THEN 'READ_ONLY' WHEN 's' THEN 'SHAREABLE' ELSE 'READ_WRITE' END
               ELSE '' END
       ELSE '' END
    || CASE WHEN a.aggsortop <> 0 THEN
            (SELECT pg_catalog.format(E',\n    SORTOP = OPERATOR(%I.%s)', opn.nspname, o.oprname)
             FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace opn ON opn.oid = o.oprnamespace WHERE o.oid = a.aggsortop)
       ELSE '' END
    || CASE WHEN a.aggkind = 'h' THEN E',\n    HYPOTHETICAL' ELSE '' END
    || CASE p.proparallel WHEN 's' THEN E',\n    PARALLEL = safe' WHEN 'r' THEN E',\n    PARALLEL = restricted' ELSE '' END),
  pg_catalog.format('%I.%I(%s)', n.nspname, p.proname,
    CASE WHEN p.pronargs = 0 THEN '*' ELSE pg_catalog.pg_get_function_identity_arguments(p.oid) END)
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_aggregate a ON a.aggfnoid = p.oid
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.oid = ANY($2) AND p.prokind = 'a' AND __NOT_MEMBER__
ORDER BY p.oid"#;

fn aggregates(cx: &Context, out: &mut Collected) -> Result<()> {
    let sql = AGGREGATES.replace(
        "__NOT_MEMBER__",
        &not_extension_member("pg_catalog.pg_proc", "p.oid"),
    );
    let nodes = query(cx, &sql, |r| {
        let (schema, name, owner) = (r.string(3)?, r.string(4)?, r.string(5)?);
        Ok(Node::new(
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            EntryKind::Aggregate,
            Some(&schema),
            &name,
            r.string(6)?,
        )
        .owned(
            Some(owner.clone()),
            Some(owner_sql("AGGREGATE", &r.string(7)?, &owner)),
        ))
    })?;
    nodes.into_iter().for_each(|n| out.push(n));
    Ok(())
}
