//! Functions and procedures.

use super::{not_extension_member, owner_sql, query, Collected, Context};
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey};
use crate::error::Result;

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    functions(cx, out)
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
         ORDER BY p.oid",
        not_extension_member("pg_catalog.pg_proc", "p.oid")
    );
    let nodes = query(cx, &sql, |r| {
        let (schema, name, owner) = (r.string(3)?, r.string(4)?, r.string(5)?);
        let (kind, keyword) = if r.string(6)? == "p" {
            (EntryKind::Procedure, "PROCEDURE")
        } else {
            (EntryKind::Function, "FUNCTION")
        };
        Ok(Node::new(
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            kind,
            Some(&schema),
            &name,
            r.string(7)?,
        )
        .owned(
            Some(owner.clone()),
            Some(owner_sql(keyword, &r.string(8)?, &owner)),
        ))
    })?;
    nodes.into_iter().for_each(|n| out.push(n));
    Ok(())
}
