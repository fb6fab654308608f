//! The SQL of a grant (ACL) entry, and who runs which part of it.
//!
//! Every privilege in PostgreSQL records its grantor: the owner, or a role that was granted
//! the privilege WITH GRANT OPTION and passed it on. A GRANT run by a superuser (or, in a
//! restore, by the extension owner) is recorded as granted by the object's owner, so grants
//! of other grantors are written the way pg_dump writes them (dumputils.c,
//! buildACLCommands): inside `SET SESSION AUTHORIZATION <grantor>; ... RESET SESSION
//! AUTHORIZATION;`, after the grants that give the grantor its grant option. psql runs the
//! sql format's script as it is; restore() splits the entry at those lines (`segments`) and
//! runs each part as its grantor where the caller may act as that role (restore/runner.rs).
//!
//! Plain Rust, unit-tested below.

use std::collections::HashSet;

/// One privilege of the object (an `aclexplode` row) with the GRANT statement giving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub grantor: String,
    /// None: PUBLIC.
    pub grantee: Option<String>,
    pub privilege: String,
    pub grantable: bool,
    /// `GRANT ... TO ...;`
    pub sql: String,
}

const SET: &str = "SET SESSION AUTHORIZATION ";
const RESET: &str = "RESET SESSION AUTHORIZATION";

/// An identifier in double quotes (always: no keyword list needed).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The statements of an ACL entry: the REVOKEs, then the grants in their order in the ACL,
/// except that a grant by a role other than the owner waits for the grants that give its
/// grantor the grant option (a role can pass on only what it holds WITH GRANT OPTION); those
/// run under their grantor's session authorization.
/// Grants whose grantor never receives the option here keep their order at the end (their
/// grantor holds it through another entry, e.g. a column grant by a role with the option on
/// the whole table).
pub fn statements(owner: &str, revokes: &[String], grants: Vec<Grant>) -> String {
    // The privileges' own order (the ACL array's, which is also the order pg_dump writes
    // them in and the order GRANTs append them in), each as soon as its grantor holds the
    // grant option.
    let mut pending = grants;
    let mut ordered: Vec<Grant> = Vec::new();
    let mut holders: HashSet<(String, String)> = HashSet::new();
    while let Some(i) = pending.iter().position(|g| {
        g.grantor == owner || holders.contains(&(g.grantor.clone(), g.privilege.clone()))
    }) {
        let g = pending.remove(i);
        if let (true, Some(r)) = (g.grantable, &g.grantee) {
            holders.insert((r.clone(), g.privilege.clone()));
        }
        ordered.push(g);
    }
    ordered.extend(pending);
    let mut out: Vec<String> = revokes.to_vec();
    let mut current: Option<&str> = None;
    for g in &ordered {
        let by = (g.grantor != owner).then_some(g.grantor.as_str());
        if by != current {
            if current.is_some() {
                out.push(format!("{RESET};"));
            }
            if let Some(r) = by {
                out.push(format!("{SET}{};", quoted(r)));
            }
            current = by;
        }
        out.push(g.sql.clone());
    }
    if current.is_some() {
        out.push(format!("{RESET};"));
    }
    out.join("\n")
}

/// The parts of an ACL entry's SQL by who grants them: (None: the owner, Some(role): that
/// role's session authorization, statements). Statements end at `;` outside quoted
/// identifiers and string literals (an ACL entry holds nothing else).
pub fn segments(sql: &str) -> Vec<(Option<String>, String)> {
    let mut out: Vec<(Option<String>, String)> = Vec::new();
    let mut current: Option<String> = None;
    for stmt in split_statements(sql) {
        let t = stmt.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(rest) = t.strip_prefix(SET) {
            current = Some(identifier(rest.trim()));
            continue;
        }
        if t.eq_ignore_ascii_case(RESET) {
            current = None;
            continue;
        }
        match out.last_mut() {
            Some((who, text)) if *who == current => {
                text.push('\n');
                text.push_str(t);
                text.push(';');
            }
            _ => out.push((current.clone(), format!("{t};"))),
        }
    }
    out
}

/// Whether an entry's SQL names grantors of its own.
pub fn has_grantors(sql: &str) -> bool {
    segments(sql).iter().any(|(who, _)| who.is_some())
}

fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(q) => {
                cur.push(c);
                // A doubled quote closes and reopens: the same as staying inside.
                if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                cur.push(c);
            }
            None if c == ';' => out.push(std::mem::take(&mut cur)),
            None => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// `"a""b"` -> `a"b`; a bare identifier is folded to lower case, as PostgreSQL does.
fn identifier(s: &str) -> String {
    match s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => s.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(grantor: &str, grantee: &str, privilege: &str, grantable: bool) -> Grant {
        Grant {
            grantor: grantor.into(),
            grantee: (grantee != "PUBLIC").then(|| grantee.to_string()),
            privilege: privilege.into(),
            grantable,
            sql: format!(
                "GRANT {privilege} ON TABLE s.t TO {grantee}{};",
                if grantable { " WITH GRANT OPTION" } else { "" }
            ),
        }
    }

    #[test]
    fn grants_of_the_owner_come_alone() {
        let sql = statements(
            "alice",
            &["REVOKE ALL ON TABLE s.t FROM PUBLIC;".into()],
            vec![grant("alice", "bob", "SELECT", false)],
        );
        assert_eq!(
            sql,
            "REVOKE ALL ON TABLE s.t FROM PUBLIC;\nGRANT SELECT ON TABLE s.t TO bob;"
        );
        assert_eq!(segments(&sql), vec![(None, sql.clone())]);
        assert!(!has_grantors(&sql));
    }

    #[test]
    fn a_chain_of_grantors_follows_the_grant_options() {
        // In the ACL, carol's re-grant may stand before the grant that gave her the option.
        let sql = statements(
            "alice",
            &[],
            vec![
                grant("carol", "dave", "SELECT", false),
                grant("bob", "carol", "SELECT", true),
                grant("alice", "bob", "SELECT", true),
                grant("bob", "PUBLIC", "UPDATE", false),
            ],
        );
        let want = [
            "GRANT SELECT ON TABLE s.t TO bob WITH GRANT OPTION;",
            "SET SESSION AUTHORIZATION \"bob\";",
            "GRANT SELECT ON TABLE s.t TO carol WITH GRANT OPTION;",
            "RESET SESSION AUTHORIZATION;",
            "SET SESSION AUTHORIZATION \"carol\";",
            "GRANT SELECT ON TABLE s.t TO dave;",
            "RESET SESSION AUTHORIZATION;",
            "SET SESSION AUTHORIZATION \"bob\";",
            "GRANT UPDATE ON TABLE s.t TO PUBLIC;",
            "RESET SESSION AUTHORIZATION;",
        ];
        assert_eq!(sql, want.join("\n"));
        assert_eq!(
            segments(&sql),
            vec![
                (None, want[0].to_string()),
                (Some("bob".into()), want[2].to_string()),
                (Some("carol".into()), want[5].to_string()),
                (Some("bob".into()), want[8].to_string()),
            ]
        );
        assert!(has_grantors(&sql));
    }

    #[test]
    fn the_acl_order_is_kept_where_the_grant_options_allow() {
        let grants = vec![
            grant("alice", "bob", "SELECT", true),
            grant("bob", "carol", "SELECT", false),
            grant("alice", "dave", "DELETE", false),
        ];
        let sql = statements("alice", &[], grants.clone());
        let order: Vec<&str> = sql.lines().filter(|l| l.starts_with("GRANT")).collect();
        let want: Vec<&str> = grants.iter().map(|g| g.sql.as_str()).collect();
        assert_eq!(order, want);
    }

    #[test]
    fn quoted_names_never_end_a_statement_or_fake_a_grantor() {
        let sql = statements(
            "o",
            &[],
            vec![Grant {
                grantor: "we\"ird; RESET SESSION AUTHORIZATION".into(),
                grantee: Some("x".into()),
                privilege: "SELECT".into(),
                grantable: false,
                sql: "GRANT SELECT (\"a;\nSET SESSION AUTHORIZATION postgres;\") ON TABLE s.\"t;\" TO x;"
                    .into(),
            }],
        );
        let parts = segments(&sql);
        assert_eq!(parts.len(), 1);
        assert_eq!(
            parts[0].0.as_deref(),
            Some("we\"ird; RESET SESSION AUTHORIZATION")
        );
        assert!(parts[0].1.starts_with("GRANT SELECT (\"a;\nSET SESSION"));
    }
}
