//! What belongs to the database rather than to a schema: large objects, default privileges,
//! the database's own comment, settings and grants.

use super::class::{PG_LARGEOBJECT, PG_LARGEOBJECT_METADATA};
use super::common::{data_key, ident, literal, query, Collected, Context};
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey};
use crate::error::Result;

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    if cx.whole_database {
        default_privileges(cx, out)?;
        properties(cx, out)?;
    }
    large_objects(cx, out)
}

fn large_objects(cx: &Context, out: &mut Collected) -> Result<()> {
    if !cx.large_objects {
        return Ok(());
    }
    // Each large object is created empty before the data; their pages are one data file.
    let los = query(
        cx,
        "SELECT m.oid, pg_catalog.pg_get_userbyid(m.lomowner)::text
         FROM pg_catalog.pg_largeobject_metadata m ORDER BY m.oid",
        |r| Ok((r.oid(1)?, r.string(2)?)),
    )?;
    if los.is_empty() {
        return Ok(());
    }
    let mut data = Node::new(
        data_key(PG_LARGEOBJECT_METADATA, 0),
        EntryKind::LargeObjectData,
        None,
        "large objects",
        String::new(),
    );
    for (oid, owner) in los {
        let key = ObjKey::new(PG_LARGEOBJECT_METADATA, oid);
        // Its comment and security labels are recorded under pg_largeobject.
        out.alias(PG_LARGEOBJECT, oid, key);
        out.push(
            Node::new(
                key,
                EntryKind::LargeObject,
                None,
                &oid.to_string(),
                format!("SELECT pg_catalog.lo_create('{oid}');"),
            )
            .owned(
                Some(owner.clone()),
                Some(format!(
                    "ALTER LARGE OBJECT {oid} OWNER TO {};",
                    ident(&owner)
                )),
            ),
        );
        data.deps.insert(key);
    }
    out.push(data);
    Ok(())
}

/// Default privileges (ALTER DEFAULT PRIVILEGES), as changes from the built-in defaults for
/// a role's objects in the whole database, or additions for one schema.
pub fn default_privileges(cx: &Context, out: &mut Collected) -> Result<()> {
    let nodes = query(
        cx,
        r#"SELECT d.tableoid, d.oid, pg_catalog.pg_get_userbyid(d.defaclrole)::text, n.nspname::text,
                  (SELECT pg_catalog.string_agg(s, E'\n' ORDER BY ord, k) FROM (
                     SELECT 1 AS ord, x.n AS k,
                            pg_catalog.format('ALTER DEFAULT PRIVILEGES FOR ROLE %I REVOKE %s ON %s FROM %s;',
                                   pg_catalog.pg_get_userbyid(d.defaclrole), x.privilege_type, o.objs,
                                   CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(x.grantee)) END) AS s
                     FROM pg_catalog.aclexplode(pg_catalog.acldefault(o.t, d.defaclrole)) WITH ORDINALITY AS x(grantor, grantee, privilege_type, is_grantable, n)
                     WHERE d.defaclnamespace = 0 AND NOT EXISTS (
                           SELECT 1 FROM pg_catalog.aclexplode(d.defaclacl) a WHERE a.grantee = x.grantee AND a.privilege_type = x.privilege_type)
                     UNION ALL
                     SELECT 2, a.n,
                            pg_catalog.format('ALTER DEFAULT PRIVILEGES FOR ROLE %I%s GRANT %s ON %s TO %s%s;',
                                   pg_catalog.pg_get_userbyid(d.defaclrole),
                                   CASE WHEN d.defaclnamespace <> 0 THEN ' IN SCHEMA ' || pg_catalog.quote_ident(n.nspname) ELSE '' END,
                                   a.privilege_type, o.objs,
                                   CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
                                   CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
                     FROM pg_catalog.aclexplode(d.defaclacl) WITH ORDINALITY AS a(grantor, grantee, privilege_type, is_grantable, n)
                     WHERE d.defaclnamespace <> 0 OR NOT EXISTS (
                           SELECT 1 FROM pg_catalog.aclexplode(pg_catalog.acldefault(o.t, d.defaclrole)) x
                           WHERE x.grantee = a.grantee AND x.privilege_type = a.privilege_type AND x.is_grantable = a.is_grantable)) st),
                  n.tableoid, n.oid
           FROM pg_catalog.pg_default_acl d
           CROSS JOIN LATERAL (SELECT (CASE d.defaclobjtype WHEN 'S' THEN 's' ELSE d.defaclobjtype END)::"char" AS t,
                                      CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS'
                                                           WHEN 'T' THEN 'TYPES' ELSE 'SCHEMAS' END AS objs) o
           LEFT JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace
           WHERE d.defaclnamespace = 0 OR d.defaclnamespace = ANY($2)
           ORDER BY d.oid"#,
        |r| {
            let (role, schema) = (r.string(3)?, r.text(4)?);
            let mut node = Node::new(
                ObjKey::new(r.oid(1)?, r.oid(2)?),
                EntryKind::DefaultPrivileges,
                schema.as_deref(),
                &format!("DEFAULT PRIVILEGES FOR ROLE {role}"),
                r.string(5)?,
            );
            if schema.is_some() {
                node = node.dep(ObjKey::new(r.oid(6)?, r.oid(7)?));
            }
            Ok(node)
        },
    )?;
    nodes
        .into_iter()
        .filter(|n| {
            !n.sql
                .iter()
                .all(|s| matches!(s, crate::ddl::graph::Segment::Text(t) if t.is_empty()))
        })
        .for_each(|n| out.push(n));
    Ok(())
}

/// A dollar-quoted literal whose tag does not occur in `s`.
fn dollar_quoted(s: &str) -> String {
    let mut tag = String::from("$pg_backup$");
    let mut n = 0;
    while s.contains(&tag) {
        n += 1;
        tag = format!("$pg_backup{n}$");
    }
    format!("{tag}{s}{tag}")
}

/// `a, "b c"` (a list setting as stored) -> its elements.
fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            c if quoted || !c.is_whitespace() => cur.push(c),
            _ => {}
        }
    }
    let last = cur.trim().to_string();
    if !last.is_empty() || !out.is_empty() {
        out.push(last);
    }
    out
}

/// Settings whose value is a list of names, written as names (PostgreSQL's GUC_LIST_QUOTE).
const LIST_SETTINGS: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "local_preload_libraries",
    "shared_preload_libraries",
];

/// The `SET name TO value` part of ALTER DATABASE / ALTER ROLE for one stored `name=value`.
fn set_clause(setting: &str) -> Option<String> {
    let (name, value) = setting.split_once('=')?;
    let value = if LIST_SETTINGS.contains(&name) {
        let items: Vec<String> = split_list(value).iter().map(|v| ident(v)).collect();
        if items.is_empty() {
            "''".to_string()
        } else {
            items.join(", ")
        }
    } else {
        literal(value)
    };
    Some(format!("SET {} TO {value}", ident(name)))
}

/// The database's own properties, restored into the database restore() runs in (pg_dump
/// carries them only with --create): its comment, its settings (ALTER DATABASE ... SET, and
/// per role: ALTER ROLE ... IN DATABASE ... SET) and its grants.
pub fn properties(cx: &Context, out: &mut Collected) -> Result<()> {
    let rows = query(
        cx,
        r#"SELECT d.tableoid, d.oid,
                  (SELECT s.description FROM pg_catalog.pg_shdescription s
                   WHERE s.classoid = 'pg_catalog.pg_database'::pg_catalog.regclass AND s.objoid = d.oid),
                  ARRAY(SELECT coalesce(pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(NULLIF(rs.setrole, 0))), '') || E'\t' || c
                        FROM pg_catalog.pg_db_role_setting rs, pg_catalog.unnest(rs.setconfig) c
                        WHERE rs.setdatabase = d.oid ORDER BY rs.setrole)::text[],
                  (SELECT pg_catalog.string_agg(s, E'\n' ORDER BY ord, k) FROM (
                     SELECT 1 AS ord, x.n AS k, pg_catalog.format('REVOKE %s ON DATABASE %%I FROM %s;', x.privilege_type,
                            CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.replace(pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(x.grantee)), '%', '%%') END) AS s
                     FROM pg_catalog.aclexplode(pg_catalog.acldefault('d', d.datdba)) WITH ORDINALITY AS x(grantor, grantee, privilege_type, is_grantable, n)
                     WHERE d.datacl IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(d.datacl) a
                                                               WHERE a.grantee = x.grantee AND a.privilege_type = x.privilege_type)
                     UNION ALL
                     SELECT 2, a.n, pg_catalog.format('GRANT %s ON DATABASE %%I TO %s%s;', a.privilege_type,
                            CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.replace(pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)), '%', '%%') END,
                            CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
                     FROM pg_catalog.aclexplode(d.datacl) WITH ORDINALITY AS a(grantor, grantee, privilege_type, is_grantable, n)
                     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(pg_catalog.acldefault('d', d.datdba)) x
                                       WHERE x.grantee = a.grantee AND x.privilege_type = a.privilege_type
                                         AND x.is_grantable = a.is_grantable)) st)
           FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()"#,
        |r| {
            Ok((
                ObjKey::new(r.oid(1)?, r.oid(2)?),
                r.text(3)?,
                r.texts(4)?,
                r.text(5)?,
            ))
        },
    )?;
    let Some((key, comment, settings, grants)) = rows.into_iter().next() else {
        return Ok(());
    };
    // Each statement names the database it runs in, whatever its name.
    let in_this_database = |template: &str| {
        format!(
            "DO {} LANGUAGE plpgsql;",
            dollar_quoted(&format!(
                "BEGIN EXECUTE pg_catalog.format({}, pg_catalog.current_database()); END",
                literal(template)
            ))
        )
    };
    let mut sql = Vec::new();
    if let Some(c) = comment {
        sql.push(in_this_database(&format!(
            "COMMENT ON DATABASE %I IS {}",
            literal(&c).replace('%', "%%")
        )));
    }
    for s in &settings {
        let Some((role, setting)) = s.split_once('\t') else {
            continue;
        };
        let Some(set) = set_clause(setting) else {
            continue;
        };
        let set = set.replace('%', "%%");
        sql.push(in_this_database(&if role.is_empty() {
            format!("ALTER DATABASE %I {set}")
        } else {
            format!(
                "ALTER ROLE {} IN DATABASE %I {set}",
                role.replace('%', "%%")
            )
        }));
    }
    if !sql.is_empty() {
        out.push(Node::new(
            key,
            EntryKind::Database,
            None,
            "DATABASE",
            sql.join("\n"),
        ));
    }
    if let Some(grants) = grants.filter(|g| !g.is_empty()) {
        let sql: Vec<String> = grants
            .lines()
            .map(|g| in_this_database(g.trim_end_matches(';')))
            .collect();
        out.push(Node::new(
            key.with(crate::ddl::graph::Role::Acl),
            EntryKind::Acl,
            None,
            "DATABASE",
            sql.join("\n"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_settings_split_like_postgresql() {
        assert_eq!(split_list("\"$user\", public"), ["$user", "public"]);
        assert_eq!(split_list("a,\"b \"\"c\"\"\""), ["a", "b \"c\""]);
        assert!(split_list("").is_empty());
        assert_eq!(dollar_quoted("x"), "$pg_backup$x$pg_backup$");
        assert_eq!(
            dollar_quoted("$pg_backup$"),
            "$pg_backup1$$pg_backup$$pg_backup1$"
        );
    }
}
