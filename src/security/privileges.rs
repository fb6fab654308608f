//! What the role that calls restore() may restore (see README, "Security model").
//!
//! restore() runs as the extension owner, so PostgreSQL's own privilege checks would let
//! every operator do anything. The rule enforced here instead: a caller who is not a
//! superuser may only make the changes it could have made itself, acting as the roles whose
//! privileges it has (itself and the roles it inherits from):
//! - objects are restored (created, or their rows loaded) only when the caller has the
//!   privileges of the role that owns them in the backup; a backup without that record
//!   (data_only) needs SELECT on the table as it exists now: rows of a table the caller
//!   could not read never reach a table it can read;
//! - an existing table is dropped only by (a member of) its owner, truncated with TRUNCATE
//!   and INSERT, appended to with INSERT; `disable_triggers` needs its ownership;
//! - schemas are created with CREATE on the database, objects in existing schemas with
//!   CREATE on the schema;
//! - extensions that are not installed, and objects whose owner role does not exist here,
//!   are restored by a superuser only (the latter are then owned by that superuser).
//!
//! A superuser may restore anything; in every case user code runs as the object's owner
//! (`security::owner`), never as the caller or the extension owner.

use pgrx::prelude::*;

use super::Caller;
use crate::error::{BackupError, Result};

/// The role a restore acts for, with the checks of the privilege model.
pub struct Restorer {
    pub oid: pg_sys::Oid,
    pub name: String,
    pub superuser: bool,
}

/// What a restore does to a table that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Drop,
    Truncate,
    Append,
}

/// The role chosen to own a restored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub oid: pg_sys::Oid,
    pub name: String,
    /// The backup's owner does not exist here: the caller owns the object instead.
    pub substitute_for: Option<String>,
}

impl Owner {
    /// For the result row of the object.
    pub fn note(&self) -> Option<String> {
        self.substitute_for.as_ref().map(|missing| {
            format!(
                "role \"{missing}\" does not exist in this cluster; owned by \"{}\" (the role that called restore)",
                self.name
            )
        })
    }
}

fn denied(message: String, hint: &str) -> BackupError {
    BackupError::denied(message).with_hint(hint.to_string())
}

impl Restorer {
    pub fn of(caller: &Caller) -> Restorer {
        Restorer {
            oid: caller.oid,
            name: caller.role.clone(),
            // SAFETY: a syscache lookup of the caller's role, inside the call's transaction.
            superuser: unsafe { pg_sys::superuser_arg(caller.oid) },
        }
    }

    /// Whether the caller has the privileges of `role` (as pg_has_role(..., 'USAGE')).
    pub fn acts_as(&self, role: pg_sys::Oid) -> bool {
        // SAFETY: a role membership lookup by oids (roles_is_member_of's cache), inside the
        // call's transaction; an unknown role simply has no privileges.
        self.superuser || unsafe { pg_sys::has_privs_of_role(self.oid, role) }
    }

    /// The role user code on an existing table owned by `owner` runs with while this caller
    /// loads or truncates it: the owner, when the caller is a superuser or has the owner's
    /// privileges; otherwise the caller itself. A caller with only INSERT (TRUNCATE) on
    /// another role's table gets what its own `INSERT` / `COPY` would do there: the table's
    /// triggers, defaults and CHECKs run as the caller (as for any INSERT in PostgreSQL),
    /// never with the owner's rights, which the caller could otherwise borrow through them
    /// (a trigger that writes `current_user`, a CHECK on it, code that acts on the row).
    pub fn code_role_on(&self, owner: pg_sys::Oid) -> pg_sys::Oid {
        if self.acts_as(owner) {
            owner
        } else {
            self.oid
        }
    }

    /// The role that will own an object the backup says `backup_owner` owns.
    pub fn owner_for(&self, object: &str, backup_owner: &str) -> Result<Owner> {
        match super::owner::role_oid(backup_owner)? {
            Some(oid) => {
                if !self.acts_as(oid) {
                    return Err(self.not_owner(object, backup_owner));
                }
                Ok(Owner {
                    oid,
                    name: backup_owner.to_string(),
                    substitute_for: None,
                })
            }
            None if self.superuser => Ok(Owner {
                oid: self.oid,
                name: self.name.clone(),
                substitute_for: Some(backup_owner.to_string()),
            }),
            None => Err(denied(
                format!("{object} is owned by role \"{backup_owner}\" in the backup, which does not exist in this cluster"),
                "Create the role first, or have a superuser run the restore (the object is then owned by that superuser).",
            )),
        }
    }

    fn not_owner(&self, object: &str, owner: &str) -> BackupError {
        denied(
            format!(
                "permission denied to restore {object}: it belongs to role \"{owner}\" and \"{}\" does not have its privileges",
                self.name
            ),
            "Restore only what you own (pick it with tables => or schemas =>), be granted the owner role, or ask a superuser.",
        )
    }

    /// Rows of a backup table may be restored: the caller has its backup owner's privileges,
    /// or (no owner recorded) may SELECT the table of that name in this database now.
    pub fn check_rows(
        &self,
        object: &str,
        backup_owner: Option<&str>,
        original: Option<pg_sys::Oid>,
    ) -> Result<()> {
        if self.superuser {
            return Ok(());
        }
        if let Some(owner) = backup_owner {
            return self.owner_for(object, owner).map(|_| ());
        }
        if let Some(oid) = original {
            if self.has_table_privilege(oid, "SELECT")? {
                return Ok(());
            }
        }
        Err(denied(
            format!("permission denied to restore the rows of {object}: the backup does not say who owns it and \"{}\" cannot SELECT it", self.name),
            "Ask a superuser, or the table's owner, to restore it.",
        ))
    }

    /// The caller may make `change` to the existing table `oid`.
    pub fn check_existing(&self, object: &str, oid: pg_sys::Oid, change: Change) -> Result<()> {
        if self.superuser {
            return Ok(());
        }
        let ok = match change {
            Change::Drop => self.acts_as(super::owner::relation_owner(oid)?),
            Change::Truncate => {
                self.has_table_privilege(oid, "TRUNCATE")?
                    && self.has_table_privilege(oid, "INSERT")?
            }
            Change::Append => self.has_table_privilege(oid, "INSERT")?,
        };
        if !ok {
            let what = match change {
                Change::Drop => "drop (it needs the privileges of its owner)",
                Change::Truncate => "truncate and reload (it needs TRUNCATE and INSERT)",
                Change::Append => "append to (it needs INSERT)",
            };
            return Err(denied(
                format!("permission denied to {what} existing table {object}"),
                "Choose existing => 'skip' for it, restore a subset with tables =>, or ask its owner or a superuser.",
            ));
        }
        // Rows are loaded with the owner's rights, past row-level security; PostgreSQL's own
        // COPY FROM refuses a table whose policies apply to the caller, and so does restore.
        if matches!(change, Change::Append | Change::Truncate) && self.rls_applies(oid)? {
            return Err(denied(
                format!("permission denied to load rows into existing table {object}: its row-level security policies apply to \"{}\"", self.name),
                "Ask the table's owner or a superuser to restore its rows, or restore it under another name with target_schema =>.",
            ));
        }
        Ok(())
    }

    /// Whether row-level security applies to the caller on table `oid` (enabled, and the
    /// caller neither bypasses it nor owns the table without FORCE).
    fn rls_applies(&self, oid: pg_sys::Oid) -> Result<bool> {
        Ok(crate::query::one::<bool>(
            "SELECT c.relrowsecurity
                    AND NOT (SELECT r.rolbypassrls FROM pg_catalog.pg_roles r WHERE r.oid = $2)
                    AND (c.relforcerowsecurity OR NOT pg_catalog.pg_has_role($2, c.relowner, 'USAGE'))
             FROM pg_catalog.pg_class c WHERE c.oid = $1",
            &[oid.into(), self.oid.into()],
        )?
        .unwrap_or(false))
    }

    /// `existing => 'truncate'` gives the sequences owned by the table's columns (serial,
    /// identity) the backup's values, moving them back: what `TRUNCATE ... RESTART IDENTITY`
    /// does, which PostgreSQL allows only to the owner of each sequence.
    pub fn check_sequence_reset(&self, object: &str, table: pg_sys::Oid) -> Result<()> {
        if self.superuser {
            return Ok(());
        }
        let owned: Vec<(String, pg_sys::Oid)> = Spi::connect(|c| {
            c.select(
                "SELECT s.oid::pg_catalog.regclass::pg_catalog.text, s.relowner
                 FROM pg_catalog.pg_depend d
                 JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                   AND d.refobjid = $1 AND d.deptype IN ('a', 'i')
                 ORDER BY 1",
                None,
                &[table.into()],
            )?
            .map(|r| {
                Ok((
                    r.get::<crate::text::Text>(1)?.unwrap_or_default().0,
                    r.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::InvalidOid),
                ))
            })
            .collect::<Result<Vec<_>>>()
        })?;
        match owned.iter().find(|(_, owner)| !self.acts_as(*owner)) {
            Some((seq, _)) => Err(denied(
                format!("permission denied to reset sequence {seq} of existing table {object}: truncating and reloading sets it back to the backup's value, which needs the privileges of its owner (as TRUNCATE ... RESTART IDENTITY does)"),
                "Use existing => 'append' (the sequence then only moves forward, with UPDATE on it), or ask the sequence's owner or a superuser.",
            )),
            None => Ok(()),
        }
    }

    /// Whether the caller may move sequence `seq` forward (setval needs UPDATE on it).
    pub fn may_update_sequence(&self, seq: &str) -> Result<bool> {
        if self.superuser {
            return Ok(true);
        }
        Ok(crate::query::one::<bool>(
            "SELECT pg_catalog.has_sequence_privilege($1, $2::pg_catalog.regclass, 'UPDATE')",
            &[self.oid.into(), crate::text::arg(seq)],
        )?
        .unwrap_or(false))
    }

    /// `disable_triggers` on an existing table: only its owner may switch its triggers off.
    pub fn check_disable_triggers(&self, object: &str, oid: pg_sys::Oid) -> Result<()> {
        if self.superuser || self.acts_as(super::owner::relation_owner(oid)?) {
            return Ok(());
        }
        Err(denied(
            format!("permission denied to load {object} with disable_triggers => true: only its owner may turn its triggers off"),
            "Leave disable_triggers false for it.",
        ))
    }

    /// The restore creates schema `schema`.
    pub fn check_create_schema(&self, schema: &str) -> Result<()> {
        if self.superuser
            || crate::query::one::<bool>(
                "SELECT pg_catalog.has_database_privilege($1, pg_catalog.current_database(), 'CREATE')",
                &[self.oid.into()],
            )?
            .unwrap_or(false)
        {
            return Ok(());
        }
        Err(denied(
            format!("permission denied to create schema \"{schema}\": \"{}\" has no CREATE privilege on this database", self.name),
            "Create the schema first (and grant CREATE on it), or ask a superuser.",
        ))
    }

    /// The restore creates objects in the existing schema `schema`.
    pub fn check_create_in(&self, schema: &str) -> Result<()> {
        if self.superuser
            || crate::query::one::<bool>(
                "SELECT (SELECT pg_catalog.has_schema_privilege($1, n.oid, 'CREATE')
                         FROM pg_catalog.pg_namespace n WHERE n.nspname = $2)",
                &[self.oid.into(), crate::text::arg(schema)],
            )?
            .unwrap_or(true)
        {
            return Ok(());
        }
        Err(denied(
            format!(
                "permission denied to create objects in schema \"{schema}\": \"{}\" has no CREATE privilege on it",
                self.name
            ),
            "Restore into a schema of your own with target_schema =>, or ask a superuser.",
        ))
    }

    /// The backup needs extension `name`: one that is not installed is created by a
    /// superuser only (its script runs with the extension owner's rights).
    pub fn check_extension(&self, name: &str) -> Result<()> {
        let installed = crate::query::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = $1)",
            &[crate::text::arg(name)],
        )?
        .unwrap_or(false);
        if installed || self.superuser {
            return Ok(());
        }
        Err(denied(
            format!("the backup needs extension \"{name}\", which is not installed; only a superuser may restore it"),
            &format!("Ask a superuser to run CREATE EXTENSION \"{name}\" first."),
        ))
    }

    /// Large object `loid` is written: one that exists must belong to a role whose
    /// privileges the caller has.
    pub fn check_large_object(&self, loid: &str) -> Result<()> {
        if self.superuser {
            return Ok(());
        }
        let owner = crate::query::one::<pg_sys::Oid>(
            "SELECT (SELECT lomowner FROM pg_catalog.pg_largeobject_metadata WHERE oid::pg_catalog.text = $1)",
            &[loid.into()],
        )?;
        match owner {
            Some(o) if !self.acts_as(o) => Err(denied(
                format!("permission denied to overwrite large object {loid}"),
                "Ask its owner or a superuser to restore the large objects.",
            )),
            _ => Ok(()),
        }
    }

    fn has_table_privilege(&self, oid: pg_sys::Oid, what: &str) -> Result<bool> {
        Ok(crate::query::one::<bool>(
            "SELECT pg_catalog.has_table_privilege($1, $2, $3)",
            &[self.oid.into(), oid.into(), what.into()],
        )?
        .unwrap_or(false))
    }
}

/// An `ALTER <objtype> <ident> OWNER TO <role>;` statement, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerStatement {
    pub objtype: String,
    pub ident: String,
    pub role: String,
}

const OBJTYPES: &[&str] = &[
    "MATERIALIZED VIEW",
    "FOREIGN TABLE",
    "LARGE OBJECT",
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
    "EVENT TRIGGER",
    "FOREIGN DATA WRAPPER",
    "OPERATOR CLASS",
    "OPERATOR FAMILY",
    "AGGREGATE",
    "COLLATION",
    "CONVERSION",
    "DATABASE",
    "DOMAIN",
    "FUNCTION",
    "LANGUAGE",
    "OPERATOR",
    "PROCEDURE",
    "PUBLICATION",
    "ROUTINE",
    "SCHEMA",
    "SEQUENCE",
    "SERVER",
    "STATISTICS",
    "SUBSCRIPTION",
    "TABLE",
    "TABLESPACE",
    "TYPE",
    "VIEW",
];

/// Parse the owner statements pg_backup writes (`format('ALTER %s %s OWNER TO %I;', ...)`).
pub fn parse_owner_statement(sql: &str) -> Option<OwnerStatement> {
    let rest = sql.trim().strip_prefix("ALTER ")?;
    let objtype = OBJTYPES
        .iter()
        .find(|t| rest.starts_with(&format!("{t} ")))?;
    let rest = rest[objtype.len() + 1..].trim_end();
    let rest = rest.strip_suffix(';').unwrap_or(rest).trim_end();
    let (before, role) = split_trailing_identifier(rest)?;
    let ident = before.strip_suffix(" OWNER TO ")?;
    Some(OwnerStatement {
        objtype: objtype.to_string(),
        ident: ident.trim().to_string(),
        role,
    })
}

/// `s` ends with an identifier as quote_ident / %I writes it: the text before it, and the
/// name it stands for.
fn split_trailing_identifier(s: &str) -> Option<(&str, String)> {
    let b = s.as_bytes();
    if b.last() != Some(&b'"') {
        let start = s.rfind(' ').map_or(0, |i| i + 1);
        let name = &s[start..];
        return (!name.is_empty() && !name.contains('"')).then(|| (&s[..start], name.to_string()));
    }
    // Walk back over the quoted identifier; `""` inside stands for one quote.
    let mut i = b.len() - 1;
    loop {
        if i == 0 {
            return None;
        }
        i -= 1;
        if b[i] == b'"' {
            if i > 0 && b[i - 1] == b'"' {
                i -= 1;
                continue;
            }
            let inner = &s[i + 1..s.len() - 1];
            return Some((&s[..i], inner.replace("\"\"", "\"")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_statements_come_apart() {
        assert_eq!(
            parse_owner_statement("ALTER TABLE public.t OWNER TO alice;"),
            Some(OwnerStatement {
                objtype: "TABLE".into(),
                ident: "public.t".into(),
                role: "alice".into()
            })
        );
        let s = parse_owner_statement(
            "ALTER MATERIALIZED VIEW \"S p\".\"m OWNER TO x\" OWNER TO \"Bob \"\"the\"\" admin\";",
        )
        .unwrap();
        assert_eq!(s.objtype, "MATERIALIZED VIEW");
        assert_eq!(s.ident, "\"S p\".\"m OWNER TO x\"");
        assert_eq!(s.role, "Bob \"the\" admin");
        let r = parse_owner_statement("ALTER ROUTINE public.f(integer, text) OWNER TO postgres;")
            .unwrap();
        assert_eq!(r.ident, "public.f(integer, text)");
        assert_eq!(
            parse_owner_statement("ALTER LARGE OBJECT 16400 OWNER TO u;")
                .unwrap()
                .ident,
            "16400"
        );
        assert_eq!(parse_owner_statement("GRANT SELECT ON t TO x;"), None);
        assert_eq!(
            parse_owner_statement("ALTER TABLE a.b OWNER TO \"x OWNER TO y\";")
                .unwrap()
                .role,
            "x OWNER TO y"
        );
    }
}
