//! Rules, triggers (with their enabled state), row security and policies, event triggers.

use super::common::{ident, owner_sql, query, Collected, Context};
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey, Role};
use crate::error::Result;

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    rules(cx, out)?;
    triggers(cx, out)?;
    row_security(cx, out)?;
    if cx.whole_database {
        event_triggers(cx, out)?;
    }
    Ok(())
}

/// `ALTER TABLE ... DISABLE|ENABLE REPLICA|ENABLE ALWAYS <what> <name>` for a non-default
/// enabled state (`O` is the default).
fn enabled_state(table_sql: &str, what: &str, name: &str, state: &str) -> String {
    let action = match state {
        "D" => "DISABLE",
        "R" => "ENABLE REPLICA",
        "A" => "ENABLE ALWAYS",
        _ => return String::new(),
    };
    format!("\nALTER TABLE {table_sql} {action} {what} {};", ident(name))
}

fn rules(cx: &Context, out: &mut Collected) -> Result<()> {
    let rows = query(
        cx,
        "SELECT r.tableoid, r.oid, n.nspname::text, r.rulename::text, c.relname::text,
                pg_catalog.pg_get_ruledef(r.oid), r.ev_enabled::text, pg_catalog.format('%I.%I', n.nspname, c.relname),
                c.tableoid, c.oid
         FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = ANY($1) AND r.rulename <> '_RETURN'
         ORDER BY r.oid",
        |r| {
            let (name, table, q) = (r.string(4)?, r.string(5)?, r.string(8)?);
            let sql = format!(
                "{}{}",
                r.string(6)?,
                enabled_state(&q, "RULE", &name, &r.string(7)?)
            );
            Ok(Node::new(
                ObjKey::new(r.oid(1)?, r.oid(2)?),
                EntryKind::Rule,
                Some(&r.string(3)?),
                &format!("{table} {name}"),
                sql,
            )
            .table(&table)
            .of(ObjKey::new(r.oid(9)?, r.oid(10)?)))
        },
    )?;
    rows.into_iter().for_each(|n| out.push(n));
    Ok(())
}

fn triggers(cx: &Context, out: &mut Collected) -> Result<()> {
    // Triggers cloned onto partitions by their parent's come with it; internal triggers
    // (foreign keys, deferred uniqueness) with their constraint.
    let rows = query(
        cx,
        "SELECT t.tableoid, t.oid, n.nspname::text, t.tgname::text, c.relname::text,
                pg_catalog.pg_get_triggerdef(t.oid) || ';', t.tgenabled::text, pg_catalog.format('%I.%I', n.nspname, c.relname),
                c.tableoid, c.oid
         FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = ANY($1) AND NOT t.tgisinternal AND t.tgparentid = 0
         UNION ALL
         -- A trigger cloned onto a partition comes with its parent's; only an enabled state
         -- of its own is restored.
         SELECT t.tableoid, t.oid, n.nspname::text, t.tgname::text, c.relname::text,
                '', t.tgenabled::text, pg_catalog.format('%I.%I', n.nspname, c.relname),
                c.tableoid, c.oid
         FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_catalog.pg_trigger pt ON pt.oid = t.tgparentid
         WHERE c.oid = ANY($1) AND t.tgparentid <> 0 AND t.tgenabled <> pt.tgenabled
         ORDER BY 2",
        |r| {
            let (name, table, q) = (r.string(4)?, r.string(5)?, r.string(8)?);
            let state = enabled_state(&q, "TRIGGER", &name, &r.string(7)?);
            let create = r.string(6)?;
            let sql = if create.is_empty() {
                state.trim_start().to_string()
            } else {
                format!("{create}{state}")
            };
            Ok(Node::new(
                ObjKey::new(r.oid(1)?, r.oid(2)?),
                EntryKind::Trigger,
                Some(&r.string(3)?),
                &format!("{table} {name}"),
                sql,
            )
            .table(&table)
            .of(ObjKey::new(r.oid(9)?, r.oid(10)?)))
        },
    )?;
    rows.into_iter().for_each(|n| out.push(n));
    Ok(())
}

fn row_security(cx: &Context, out: &mut Collected) -> Result<()> {
    let tables = query(
        cx,
        "SELECT c.tableoid, c.oid, n.nspname::text, c.relname::text,
                pg_catalog.format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY;', n.nspname, c.relname)
                || CASE WHEN c.relforcerowsecurity THEN pg_catalog.format(E'\nALTER TABLE %I.%I FORCE ROW LEVEL SECURITY;', n.nspname, c.relname) ELSE '' END
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = ANY($1) AND (c.relrowsecurity OR c.relforcerowsecurity)
         ORDER BY c.oid",
        |r| {
            let key = ObjKey::new(r.oid(1)?, r.oid(2)?);
            let table = r.string(4)?;
            let mut sql = r.string(5)?;
            if sql.is_empty() {
                sql = String::new();
            }
            Ok(Node::new(
                key.with(Role::RowSecurity),
                EntryKind::RowSecurity,
                Some(&r.string(3)?),
                &table,
                sql,
            )
            .table(&table)
            .of(key))
        },
    )?;
    tables.into_iter().for_each(|n| out.push(n));
    let policies = query(
        cx,
        r#"SELECT p.tableoid, p.oid, n.nspname::text, p.polname::text, c.relname::text,
                  pg_catalog.format('CREATE POLICY %I ON %I.%I AS %s FOR %s TO %s%s%s;', p.polname, n.nspname, c.relname,
                         CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                         CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                                       WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                         (SELECT pg_catalog.string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r)) END, ', ' ORDER BY o)
                          FROM pg_catalog.unnest(p.polroles) WITH ORDINALITY AS u(r, o)),
                         CASE WHEN p.polqual IS NOT NULL THEN E'\n  USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')' ELSE '' END,
                         CASE WHEN p.polwithcheck IS NOT NULL THEN E'\n  WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')' ELSE '' END),
                  c.tableoid, c.oid
           FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           WHERE c.oid = ANY($1)
           ORDER BY p.oid"#,
        |r| {
            let (name, table) = (r.string(4)?, r.string(5)?);
            Ok(Node::new(
                ObjKey::new(r.oid(1)?, r.oid(2)?),
                EntryKind::Policy,
                Some(&r.string(3)?),
                &format!("{table} {name}"),
                r.string(6)?,
            )
            .table(&table)
            .of(ObjKey::new(r.oid(7)?, r.oid(8)?)))
        },
    )?;
    policies.into_iter().for_each(|n| out.push(n));
    Ok(())
}

fn event_triggers(cx: &Context, out: &mut Collected) -> Result<()> {
    let rows = query(
        cx,
        r#"SELECT e.tableoid, e.oid, e.evtname::text, pg_catalog.pg_get_userbyid(e.evtowner)::text,
                  pg_catalog.format('CREATE EVENT TRIGGER %I ON %I%s%s EXECUTE FUNCTION %s();', e.evtname, e.evtevent,
                         CASE WHEN e.evttags IS NOT NULL THEN E'\n  WHEN TAG IN (' ||
                              (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(t), ', ') FROM pg_catalog.unnest(e.evttags) t) || ')' ELSE '' END,
                         E'\n ', e.evtfoid::pg_catalog.regproc::text)
                  || CASE e.evtenabled WHEN 'D' THEN pg_catalog.format(E'\nALTER EVENT TRIGGER %I DISABLE;', e.evtname)
                                       WHEN 'R' THEN pg_catalog.format(E'\nALTER EVENT TRIGGER %I ENABLE REPLICA;', e.evtname)
                                       WHEN 'A' THEN pg_catalog.format(E'\nALTER EVENT TRIGGER %I ENABLE ALWAYS;', e.evtname)
                                       ELSE '' END
           FROM pg_catalog.pg_event_trigger e
           WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_event_trigger'::pg_catalog.regclass
                             AND d.objid = e.oid AND d.deptype = 'e')
           ORDER BY e.oid"#,
        |r| {
            let (name, owner) = (r.string(3)?, r.string(4)?);
            Ok(Node::new(
                ObjKey::new(r.oid(1)?, r.oid(2)?),
                EntryKind::EventTrigger,
                None,
                &name,
                r.string(5)?,
            )
            .owned(
                Some(owner.clone()),
                Some(owner_sql("EVENT TRIGGER", &ident(&name), &owner)),
            ))
        },
    )?;
    rows.into_iter().for_each(|n| out.push(n));
    Ok(())
}
