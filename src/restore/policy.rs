//! The restore's rules, as plain Rust over TOC entries (no database access): which errors of
//! a step are tolerated, what happened to an entry, what a decision about an entry may be,
//! which kinds only a superuser restores, which statements read rows, and how a constraint's
//! statement splits into an ADD ... NOT VALID and a VALIDATE.

use super::result::{Action, Status};
use crate::archive::facts::Facts;
use crate::archive::shapes::ConstraintKind;
use crate::archive::toc::{EntryKind, Pass, Section, TocEntry};

/// Which errors of a step are expected and how they are reported.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub enum Tolerate {
    Nothing,
    /// The object already exists: keep it (`skip`).
    Duplicates,
    /// A role the statement names does not exist in this cluster: a `warning`, as
    /// pg_restore does (grants).
    MissingRole,
}

/// What happened to an entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    /// Its statements ran.
    Created,
    /// It already existed and was kept.
    Kept,
    Failed,
}

/// What to do with one entry.
pub enum Decision {
    /// Not this restore's business (no row).
    Quiet,
    /// Left out, with a row saying why.
    Skip {
        status: Status,
        detail: String,
    },
    Run {
        action: Action,
        tolerate: Tolerate,
    },
}

/// Kinds a caller that is not a superuser creates as their owner (see `code_role`), in their
/// schema.
pub fn created_as_owner(kind: EntryKind) -> bool {
    matches!(
        kind,
        EntryKind::Table
            | EntryKind::ForeignTable
            | EntryKind::Function
            | EntryKind::Procedure
            | EntryKind::Aggregate
    )
}

/// Kinds whose statement reads the rows of a table (index builds, constraint validation,
/// partition attachment, refresh) or whose kind this version does not know: their errors may
/// carry row values.
pub fn reads_rows(kind: EntryKind) -> bool {
    matches!(
        kind,
        EntryKind::Index
            | EntryKind::IndexAttach
            | EntryKind::Constraint
            | EntryKind::CheckConstraint
            | EntryKind::ForeignKey
            | EntryKind::DomainConstraint
            | EntryKind::TableAttach
            | EntryKind::MaterializedViewRefresh
            | EntryKind::Other
    )
}

/// A foreign key's (or with `checks`, a CHECK's) statement as two (issue 16): the same
/// `ADD CONSTRAINT` with NOT VALID (checks privileges, evaluates nothing), and the `VALIDATE
/// CONSTRAINT` that checks the rows (None when the backup's constraint was NOT VALID itself,
/// for a NOT ENFORCED one (18), which PostgreSQL never validates, and for a foreign table's
/// CHECK, which PostgreSQL never checks). None for a statement of
/// another shape and for a partitioned table's key (added without ONLY), which PostgreSQL 15
/// cannot add NOT VALID. Which constraint it is, and whether it was valid, are the entry's
/// facts (issue 18); the statement is only cut where its parts are.
pub fn constraint_in_two(
    sql: &str,
    facts: &Facts,
    checks: bool,
) -> Option<(String, Option<String>)> {
    let constraint = facts.constraint.as_ref()?;
    let (keyword, relation, name, definition) = constraint_parts(sql)?;
    let foreign_key = constraint.kind == ConstraintKind::ForeignKey
        && relation.starts_with("ONLY ")
        && keyword != "ALTER DOMAIN";
    let check = checks && constraint.kind == ConstraintKind::Check;
    if !foreign_key && !check {
        return None;
    }
    let definition = definition.trim_end().strip_suffix(';')?.trim_end();
    // 18's NOT ENFORCED constraints are held unvalidated (convalidated false, and the parser
    // reads NOT ENFORCED as NOT VALID too) and may never be validated. Decided by the facts
    // alone, which restore checked against the parsed statement: the text's last words may
    // be a comment's (`CHECK (f()) -- NOT ENFORCED;` validates f() over the rows).
    if !constraint.validated || (check && keyword == "ALTER FOREIGN TABLE") {
        return Some((sql.to_string(), None));
    }
    Some((
        format!("{keyword} {relation} ADD CONSTRAINT {name} {definition} NOT VALID;"),
        Some(format!("{keyword} {relation} VALIDATE CONSTRAINT {name};")),
    ))
}

/// `ALTER TABLE [ONLY] <schema>.<table> ADD CONSTRAINT <name> <definition>` (or ALTER FOREIGN
/// TABLE, ALTER DOMAIN): the command, the relation (with ONLY), the name and the definition,
/// as written.
pub fn constraint_parts(sql: &str) -> Option<(&'static str, &str, &str, &str)> {
    fn identifier(s: &str) -> Option<&str> {
        match s.strip_prefix('"') {
            Some(mut rest) => loop {
                let end = rest.find('"')?;
                if rest[end + 1..].starts_with('"') {
                    rest = &rest[end + 2..];
                } else {
                    return Some(&rest[end + 1..]);
                }
            },
            None => {
                let end = s.find(['.', ' ', '\n'])?;
                (end > 0).then(|| &s[end..])
            }
        }
    }
    let sql = sql.trim_start();
    let (keyword, start) = ["ALTER TABLE", "ALTER FOREIGN TABLE", "ALTER DOMAIN"]
        .into_iter()
        .find_map(|k| Some((k, sql.strip_prefix(k)?.strip_prefix(' ')?)))?;
    let rest = start.strip_prefix("ONLY ").unwrap_or(start);
    let rest = identifier(rest)?.strip_prefix('.')?;
    let after_relation = identifier(rest)?;
    let relation = &start[..start.len() - after_relation.len()];
    let name_start = after_relation
        .trim_start()
        .strip_prefix("ADD CONSTRAINT ")?;
    let rest = identifier(name_start)?;
    let name = &name_start[..name_start.len() - rest.len()];
    rest.starts_with([' ', '\n'])
        .then(|| (keyword, relation, name, rest.trim_start()))
}

/// Entries only a superuser may have applied: what PostgreSQL reserves to superusers
/// (event triggers, languages, foreign-data wrappers, access methods, transforms,
/// subscriptions), what reaches beyond one's own objects (database settings, default
/// privileges, casts, publications), and anything on the system schemas' objects.
pub fn superuser_only(e: &TocEntry) -> bool {
    matches!(
        e.kind,
        EntryKind::EventTrigger
            | EntryKind::Language
            | EntryKind::ForeignDataWrapper
            | EntryKind::AccessMethod
            | EntryKind::Transform
            | EntryKind::Cast
            | EntryKind::Subscription
            | EntryKind::Publication
            | EntryKind::PublicationTable
            | EntryKind::PublicationSchema
            | EntryKind::DefaultPrivileges
            | EntryKind::Database
            | EntryKind::UserMapping
            // CREATE OPERATOR CLASS / FAMILY, text search parsers and templates, base types:
            // PostgreSQL lets only superusers make them.
            | EntryKind::OperatorClass
            | EntryKind::OperatorFamily
            | EntryKind::TextSearchParser
            | EntryKind::TextSearchTemplate
    ) || (e.kind == EntryKind::Type && e.facts.base_type())
        || e.schema
            .as_deref()
            .is_some_and(|s| s == "information_schema" || s.starts_with("pg_"))
}

/// Entries `schema_only` / `data_only` leave out: the rows and sequence values, or all else.
pub fn left_out_by_options(e: &TocEntry, schema_only: bool, data_only: bool) -> bool {
    let is_data = matches!(e.pass(), Pass::Data | Pass::SequenceValues);
    (schema_only && is_data) || (data_only && !is_data)
}

/// The errors an entry decided to be created may meet and keep going: types, functions,
/// sequences, views ... of the pre-data section that already exist are kept (`skip`); a table
/// asked for is planned by `existing` instead, and decorations follow their object.
pub fn tolerated(e: &TocEntry) -> Tolerate {
    if e.section == Section::PreData
        && !e.kind.is_decoration()
        && !matches!(e.kind, EntryKind::Table | EntryKind::ForeignTable)
    {
        Tolerate::Duplicates
    } else {
        Tolerate::Nothing
    }
}

/// Grants and owners naming a role this cluster lacks are reported as warnings, as
/// pg_restore does (the role is not created: roles are cluster-wide).
pub fn warns_of_missing_roles(kind: EntryKind) -> bool {
    matches!(kind, EntryKind::Acl | EntryKind::Owner)
}

#[cfg(test)]
mod tests {
    use super::{constraint_parts, Facts};
    use crate::archive::toc::EntryKind;

    fn constraint_definition(sql: &str) -> Option<&str> {
        constraint_parts(sql).map(|(_, _, _, d)| d)
    }

    /// `constraint_in_two` with the facts the entry's SQL shows (an archive's own are checked
    /// to be those).
    fn constraint_in_two(sql: &str, checks: bool) -> Option<(String, Option<String>)> {
        let facts: Facts = crate::archive::facts::of_sql(EntryKind::ForeignKey, sql);
        super::constraint_in_two(sql, &facts, checks)
    }

    #[test]
    fn constraint_definitions_are_found_past_any_name() {
        assert_eq!(
            constraint_definition("ALTER TABLE ONLY s.t ADD CONSTRAINT t_pkey PRIMARY KEY (a);"),
            Some("PRIMARY KEY (a);")
        );
        assert_eq!(
            constraint_definition(
                "ALTER TABLE \"a\"\"b\".\"x ADD CONSTRAINT y UNIQUE\" ADD CONSTRAINT \"UNIQUE (a)\" CHECK ((a <> 'UNIQUE'::text));"
            ),
            Some("CHECK ((a <> 'UNIQUE'::text));")
        );
        assert_eq!(
            constraint_definition(
                "ALTER TABLE p.q ADD CONSTRAINT c EXCLUDE USING gist (r WITH &&);"
            ),
            Some("EXCLUDE USING gist (r WITH &&);")
        );
        assert_eq!(
            constraint_definition("ALTER TABLE ONLY s.t\n    ADD CONSTRAINT k UNIQUE (a);"),
            Some("UNIQUE (a);")
        );
        assert_eq!(constraint_definition("CREATE INDEX i ON s.t (a);"), None);
    }

    #[test]
    fn foreign_keys_and_checks_split_into_not_valid_and_validate() {
        assert_eq!(
            constraint_in_two(
                "ALTER TABLE ONLY storage.buckets\n    ADD CONSTRAINT buckets_owner_fkey FOREIGN KEY (owner) REFERENCES auth.users(id);",
                false
            ),
            Some((
                "ALTER TABLE ONLY storage.buckets ADD CONSTRAINT buckets_owner_fkey FOREIGN KEY (owner) REFERENCES auth.users(id) NOT VALID;".into(),
                Some("ALTER TABLE ONLY storage.buckets VALIDATE CONSTRAINT buckets_owner_fkey;".into())
            ))
        );
        assert_eq!(
            constraint_in_two(
                "ALTER TABLE ONLY \"a b\".\"c\"\"d\"\n    ADD CONSTRAINT \"x y\" FOREIGN KEY (a) REFERENCES s.t(a) ON DELETE CASCADE DEFERRABLE;",
                false
            ),
            Some((
                "ALTER TABLE ONLY \"a b\".\"c\"\"d\" ADD CONSTRAINT \"x y\" FOREIGN KEY (a) REFERENCES s.t(a) ON DELETE CASCADE DEFERRABLE NOT VALID;".into(),
                Some("ALTER TABLE ONLY \"a b\".\"c\"\"d\" VALIDATE CONSTRAINT \"x y\";".into())
            ))
        );
        // Already NOT VALID in the backup: as it is, nothing to validate.
        let sql = "ALTER TABLE ONLY s.t\n    ADD CONSTRAINT k FOREIGN KEY (a) REFERENCES s.u(a) NOT VALID;";
        assert_eq!(constraint_in_two(sql, true), Some((sql.to_string(), None)));
        // NOT ENFORCED (18): never validated (PostgreSQL refuses to), nor made NOT VALID.
        for sql in [
            "ALTER TABLE ONLY s.t\n    ADD CONSTRAINT k FOREIGN KEY (a) REFERENCES s.u(a) NOT ENFORCED;",
            "ALTER TABLE s.t ADD CONSTRAINT c CHECK ((a > 0)) NOT ENFORCED;",
        ] {
            assert_eq!(constraint_in_two(sql, true), Some((sql.to_string(), None)));
        }
        // A partitioned table's key (no ONLY): not split (partitioned_foreign_key).
        assert_eq!(
            constraint_in_two(
                "ALTER TABLE s.p\n    ADD CONSTRAINT k FOREIGN KEY (a) REFERENCES s.u(a);",
                true
            ),
            None
        );
        // CHECKs only when asked (a superuser's restore), of tables and domains.
        let check = "ALTER TABLE s.t ADD CONSTRAINT c CHECK ((a > 0)) NO INHERIT;";
        assert_eq!(constraint_in_two(check, false), None);
        assert_eq!(
            constraint_in_two(check, true),
            Some((
                "ALTER TABLE s.t ADD CONSTRAINT c CHECK ((a > 0)) NO INHERIT NOT VALID;".into(),
                Some("ALTER TABLE s.t VALIDATE CONSTRAINT c;".into())
            ))
        );
        assert_eq!(
            constraint_in_two(
                "ALTER DOMAIN s.d ADD CONSTRAINT \"D\" CHECK ((VALUE > 0));",
                true
            ),
            Some((
                "ALTER DOMAIN s.d ADD CONSTRAINT \"D\" CHECK ((VALUE > 0)) NOT VALID;".into(),
                Some("ALTER DOMAIN s.d VALIDATE CONSTRAINT \"D\";".into())
            ))
        );
        // PostgreSQL never checks a foreign table's CHECK.
        let foreign = "ALTER FOREIGN TABLE s.f ADD CONSTRAINT c CHECK ((a > 0));";
        assert_eq!(
            constraint_in_two(foreign, true),
            Some((foreign.to_string(), None))
        );
        assert_eq!(
            constraint_in_two("ALTER TABLE ONLY s.t ADD CONSTRAINT u UNIQUE (a);", true),
            None
        );
        // What the constraint is comes from the facts, not from words in its expression.
        let check =
            "ALTER TABLE s.t ADD CONSTRAINT \"FOREIGN KEY\" CHECK ((a <> 'x NOT VALID'::text));";
        assert_eq!(
            constraint_in_two(check, true),
            Some((
                "ALTER TABLE s.t ADD CONSTRAINT \"FOREIGN KEY\" CHECK ((a <> 'x NOT VALID'::text)) NOT VALID;".into(),
                Some("ALTER TABLE s.t VALIDATE CONSTRAINT \"FOREIGN KEY\";".into())
            ))
        );
        assert_eq!(constraint_in_two(check, false), None);
        assert_eq!(
            super::constraint_in_two(check, &Facts::default(), true),
            None,
            "no constraint facts, no split"
        );
    }

    fn entry(kind: EntryKind, schema: &str, sql: &str) -> super::TocEntry {
        super::TocEntry {
            id: 1,
            kind,
            section: kind.section(),
            schema: Some(schema.into()),
            name: "x".into(),
            table: None,
            owner: None,
            belongs_to: None,
            deps: vec![],
            sql: sql.into(),
            owner_sql: None,
            tablespace: None,
            builtin_code_only: false,
            facts: crate::archive::facts::Facts::default(),
            statistics: None,
        }
    }

    #[test]
    fn options_leave_out_rows_or_definitions() {
        use super::{left_out_by_options, EntryKind};
        let table = entry(EntryKind::Table, "s", "CREATE TABLE s.x ();");
        let rows = entry(EntryKind::TableData, "s", "");
        let value = entry(EntryKind::SequenceSet, "s", "SELECT 1;");
        assert!(!left_out_by_options(&table, false, false));
        assert!(
            left_out_by_options(&rows, true, false) && left_out_by_options(&value, true, false)
        );
        assert!(!left_out_by_options(&table, true, false));
        assert!(
            left_out_by_options(&table, false, true) && !left_out_by_options(&rows, false, true)
        );
    }

    #[test]
    fn existing_pre_data_objects_are_kept_but_tables_and_decorations_are_not() {
        use super::{tolerated, warns_of_missing_roles, EntryKind, Tolerate};
        for k in [
            EntryKind::Function,
            EntryKind::Type,
            EntryKind::View,
            EntryKind::Schema,
        ] {
            assert_eq!(
                tolerated(&entry(k, "s", "x")),
                Tolerate::Duplicates,
                "{k:?}"
            );
        }
        for k in [
            EntryKind::Table,
            EntryKind::ForeignTable,
            EntryKind::Comment,
            EntryKind::Acl,
            EntryKind::Index,
            EntryKind::ForeignKey,
        ] {
            assert_eq!(tolerated(&entry(k, "s", "x")), Tolerate::Nothing, "{k:?}");
        }
        assert!(warns_of_missing_roles(EntryKind::Acl) && warns_of_missing_roles(EntryKind::Owner));
        assert!(!warns_of_missing_roles(EntryKind::Comment));
    }

    #[test]
    fn only_a_superuser_restores_what_reaches_beyond_ones_own_objects() {
        use super::{created_as_owner, reads_rows, superuser_only, EntryKind};
        for k in [
            EntryKind::EventTrigger,
            EntryKind::Language,
            EntryKind::Cast,
            EntryKind::Subscription,
            EntryKind::DefaultPrivileges,
            EntryKind::Database,
            EntryKind::OperatorClass,
        ] {
            assert!(superuser_only(&entry(k, "s", "x")), "{k:?}");
        }
        // Anything on the system schemas' objects.
        assert!(superuser_only(&entry(
            EntryKind::Function,
            "pg_catalog",
            "x"
        )));
        assert!(superuser_only(&entry(
            EntryKind::View,
            "information_schema",
            "x"
        )));
        assert!(!superuser_only(&entry(EntryKind::Function, "public", "x")));
        assert!(!superuser_only(&entry(EntryKind::Table, "app", "x")));
        assert!(created_as_owner(EntryKind::Table) && !created_as_owner(EntryKind::Index));
        assert!(reads_rows(EntryKind::Index) && reads_rows(EntryKind::ForeignKey));
        assert!(!reads_rows(EntryKind::Comment) && !reads_rows(EntryKind::Table));
    }
}
