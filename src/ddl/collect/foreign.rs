//! Foreign data wrappers, servers and user mappings (foreign tables are relations, see
//! `relations`). Database-wide: whole-database backups only, as with pg_dump.

use super::common::{ident, not_extension_member, owner_sql, query, Collected, Context};
use super::operators::FIRST_NORMAL_OID;
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey};
use crate::error::Result;

/// `OPTIONS (a 'x', b 'y')` of an options array, or nothing.
fn options(col: &str) -> String {
    format!(
        "CASE WHEN {col} IS NULL THEN '' ELSE E'\\nOPTIONS (\\n    ' || pg_catalog.array_to_string(ARRAY(
           SELECT pg_catalog.quote_ident(o.option_name) || ' ' || pg_catalog.quote_literal(o.option_value)
           FROM pg_catalog.pg_options_to_table({col}) o), E',\\n    ') || E'\\n)' END"
    )
}

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    if !cx.whole_database {
        return Ok(());
    }
    let wrappers = format!(
        "SELECT w.tableoid, w.oid, w.fdwname::text, pg_catalog.pg_get_userbyid(w.fdwowner)::text,
                pg_catalog.format('CREATE FOREIGN DATA WRAPPER %I%s%s%s;', w.fdwname,
                       CASE WHEN w.fdwhandler <> 0 THEN ' HANDLER ' || w.fdwhandler::pg_catalog.regproc::text ELSE '' END,
                       CASE WHEN w.fdwvalidator <> 0 THEN ' VALIDATOR ' || w.fdwvalidator::pg_catalog.regproc::text ELSE '' END,
                       {})
         FROM pg_catalog.pg_foreign_data_wrapper w
         WHERE w.oid >= {FIRST_NORMAL_OID} AND {}
         ORDER BY w.oid",
        options("w.fdwoptions"),
        not_extension_member("pg_catalog.pg_foreign_data_wrapper", "w.oid")
    );
    let nodes = query(cx, &wrappers, |r| {
        let (name, owner) = (r.string(3)?, r.string(4)?);
        Ok(Node::new(
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            EntryKind::ForeignDataWrapper,
            None,
            &name,
            r.string(5)?,
        )
        .owned(
            Some(owner.clone()),
            Some(owner_sql("FOREIGN DATA WRAPPER", &ident(&name), &owner)),
        ))
    })?;
    nodes.into_iter().for_each(|n| out.push(n));

    let servers = format!(
        "SELECT s.tableoid, s.oid, s.srvname::text, pg_catalog.pg_get_userbyid(s.srvowner)::text,
                pg_catalog.format('CREATE SERVER %I%s%s FOREIGN DATA WRAPPER %I%s;', s.srvname,
                       CASE WHEN s.srvtype IS NOT NULL THEN ' TYPE ' || pg_catalog.quote_literal(s.srvtype) ELSE '' END,
                       CASE WHEN s.srvversion IS NOT NULL THEN ' VERSION ' || pg_catalog.quote_literal(s.srvversion) ELSE '' END,
                       w.fdwname, {})
         FROM pg_catalog.pg_foreign_server s JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
         WHERE {}
         ORDER BY s.oid",
        options("s.srvoptions"),
        not_extension_member("pg_catalog.pg_foreign_server", "s.oid")
    );
    let nodes = query(cx, &servers, |r| {
        let (name, owner) = (r.string(3)?, r.string(4)?);
        Ok(Node::new(
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            EntryKind::Server,
            None,
            &name,
            r.string(5)?,
        )
        .owned(
            Some(owner.clone()),
            Some(owner_sql("SERVER", &ident(&name), &owner)),
        ))
    })?;
    nodes.into_iter().for_each(|n| out.push(n));

    // User mappings hold what the server needs to log in, as pg_dump's do.
    let mappings = format!(
        "SELECT u.tableoid, u.oid, s.srvname::text,
                CASE WHEN u.umuser = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(u.umuser)) END,
                pg_catalog.format('CREATE USER MAPPING FOR %s SERVER %I%s;',
                       CASE WHEN u.umuser = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(u.umuser)) END,
                       s.srvname, {}),
                s.tableoid, s.oid
         FROM pg_catalog.pg_user_mapping u JOIN pg_catalog.pg_foreign_server s ON s.oid = u.umserver
         ORDER BY u.oid",
        options("u.umoptions")
    );
    let nodes = query(cx, &mappings, |r| {
        let (server, user) = (r.string(3)?, r.string(4)?);
        Ok(Node::new(
            ObjKey::new(r.oid(1)?, r.oid(2)?),
            EntryKind::UserMapping,
            None,
            &format!("USER MAPPING {user} SERVER {server}"),
            r.string(5)?,
        )
        .of(ObjKey::new(r.oid(6)?, r.oid(7)?)))
    })?;
    nodes.into_iter().for_each(|n| out.push(n));
    Ok(())
}
