//! The safety checks a restore passes before anything changes (issue 9): no entry lands in
//! pg_backup's schema or a system schema, the caller may make every change the restore
//! would make (`security::privileges`), and the restore fits in the lock table
//! (`security::locks`).

use std::collections::BTreeSet;

use pgrx::prelude::*;

use super::options::RestoreOptions;
use super::plan::{table_oid, Action, Plan};
use super::scope::{quoted, Scope};
use super::statements;
use super::tablespaces::{self, Placement};
use crate::archive::manifest::{FileKind, Manifest};
use crate::archive::toc::{EntryKind, Section, TocEntry};
use crate::error::{BackupError, Result};
use crate::security::privileges::{Change, Restorer};
use crate::security::{locks, targets};

fn exists(sql: &str, name: &str) -> Result<bool> {
    Ok(crate::query::one::<bool>(sql, &[crate::text::arg(name)])?.unwrap_or(false))
}

fn schema_exists(name: &str) -> Result<bool> {
    exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
        name,
    )
}

/// Whether the object of pre-data entry `e` exists in this database now (restore then keeps
/// it as it is). Kinds it cannot tell count as new, the strict side.
fn object_exists(e: &TocEntry, scope: &Scope) -> Result<bool> {
    let schema = e.schema.as_deref().unwrap_or_default();
    match e.kind {
        EntryKind::Schema => schema_exists(&e.name),
        k if k.is_relation() => exists(
            "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
            &quoted(scope.target_schema_of(schema), &e.name),
        ),
        EntryKind::Type | EntryKind::Domain | EntryKind::ShellType => exists(
            "SELECT pg_catalog.to_regtype($1) IS NOT NULL",
            &quoted(schema, &e.name),
        ),
        EntryKind::Collation => exists(
            "SELECT pg_catalog.to_regcollation($1) IS NOT NULL",
            &quoted(schema, &e.name),
        ),
        EntryKind::LargeObject => exists(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata WHERE oid::pg_catalog.text = $1)",
            &e.name,
        ),
        EntryKind::Function | EntryKind::Procedure | EntryKind::Aggregate => {
            // `name(args)`: looked up in a subtransaction, an argument list the parser
            // rejects counting as "not there".
            let ident = format!("{}.{}", spi::quote_identifier(schema), e.name);
            Ok(crate::subtransaction::run_result(|| {
                exists(
                    "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL",
                    &ident,
                )
            })
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(false))
        }
        _ => Ok(false),
    }
}

/// Every check; an error here means nothing was changed.
pub(super) fn check(
    m: &Manifest,
    scope: &Scope,
    plan: &Plan,
    opts: &RestoreOptions,
    who: &Restorer,
    placement: &Placement,
) -> Result<()> {
    check_statements(m, scope)?;
    check_schemas(m, scope, plan)?;
    check_tablespaces(m, scope, plan, opts, who, placement)?;
    // restore(atomic => false) commits in batches sized to the lock table.
    if opts.atomic {
        locks::check(locks_needed(m, scope, plan)?)?;
    }
    if !who.superuser {
        check_privileges(m, scope, plan, opts, who)?;
    }
    Ok(())
}

/// Every statement of the restore is one its entry's kind holds (issue 17): the SQL of each
/// entry of the restore and its owner statement, as they will run (after target_schema),
/// parsed under the settings the restore runs them with.
fn check_statements(m: &Manifest, scope: &Scope) -> Result<()> {
    crate::security::pin_literal_settings();
    for e in in_scope(m, scope) {
        let moved_to = scope.moved_to(e);
        if !e.sql.is_empty() {
            statements::check_entry(e, &scope.sql(&e.sql), moved_to)?;
        }
        if let Some(sql) = &e.owner_sql {
            statements::check_owner(e, &scope.sql(sql), moved_to)?;
        }
    }
    Ok(())
}

fn in_scope<'m>(m: &'m Manifest, scope: &'m Scope) -> impl Iterator<Item = &'m TocEntry> {
    m.toc.iter().filter(|e| scope.why(e).is_some())
}

/// No entry of the restore lands in a protected schema.
fn check_schemas(m: &Manifest, scope: &Scope, plan: &Plan) -> Result<()> {
    let mut schemas: BTreeSet<&str> = plan.tables.iter().map(|t| t.schema.as_str()).collect();
    for e in in_scope(m, scope).filter(|e| e.kind != EntryKind::Extension) {
        if e.kind == EntryKind::Schema {
            schemas.insert(&e.name);
        }
        if let Some(s) = e.schema.as_deref() {
            schemas.insert(s);
            schemas.insert(scope.target_schema_of(s));
        }
    }
    if let Some((_, to)) = &scope.target {
        schemas.insert(to);
    }
    targets::check_restore_schemas(schemas)
}

/// Every tablespace the restore places a relation or index in exists here, and (for a
/// caller who is not a superuser) the role that will own it may create objects there.
fn check_tablespaces(
    m: &Manifest,
    scope: &Scope,
    plan: &Plan,
    opts: &RestoreOptions,
    who: &Restorer,
    placement: &Placement,
) -> Result<()> {
    if opts.data_only {
        return Ok(());
    }
    let mut placed: Vec<(&TocEntry, &str)> = Vec::new();
    for e in in_scope(m, scope).filter(|e| !of_kept_table(e, plan)) {
        let Some(ts) = placement.of(e) else { continue };
        // A relation needed only as a dependency that exists is kept, with its indexes.
        if let Some((s, n)) = e.relation() {
            if plan.of(&s, &n).is_none() && table_oid(scope.target_schema_of(&s), &n)?.is_some() {
                continue;
            }
        }
        placed.push((e, ts));
    }
    tablespaces::check_exist(placed.iter().map(|(_, ts)| *ts))?;
    if who.superuser {
        return Ok(());
    }
    let index = crate::archive::toc::by_id(&m.toc);
    for (e, ts) in placed {
        let owner = e.owner.as_deref().or_else(|| {
            e.belongs_to
                .and_then(|b| index.get(&b))
                .and_then(|&i| m.toc[i].owner.as_deref())
        });
        if let Some(owner) = owner {
            let object = format!("{} {}", e.kind.as_str(), e.object());
            let role = who.owner_for(&object, owner)?;
            tablespaces::check_create(role.oid, ts, &object)?;
        }
    }
    Ok(())
}

/// Whether `e` belongs to a table the restore keeps as it is.
fn of_kept_table(e: &TocEntry, plan: &Plan) -> bool {
    e.relation()
        .and_then(|(s, n)| plan.of(&s, &n))
        .is_some_and(|t| !t.action.runs_ddl())
}

/// A lower bound of the locks the restore holds until it commits: on the relations it
/// creates (tables, views, sequences, indexes and the indexes of constraints), the existing
/// tables it writes with their indexes, and the large objects it restores.
fn locks_needed(m: &Manifest, scope: &Scope, plan: &Plan) -> Result<u64> {
    let mut n: u64 = 0;
    for e in in_scope(m, scope) {
        let counts = match e.kind {
            EntryKind::Table | EntryKind::ForeignTable => plan
                .of(e.schema.as_deref().unwrap_or_default(), &e.name)
                .is_none_or(|t| t.action.runs_ddl()),
            EntryKind::View | EntryKind::MaterializedView | EntryKind::Sequence => true,
            // Each large object's owner statement (and grant, comment) locks it until the
            // commit: pg_restore's known "out of shared memory" with many large objects.
            EntryKind::LargeObject => true,
            EntryKind::Index => !of_kept_table(e, plan),
            // The index of a PRIMARY KEY / UNIQUE / EXCLUDE constraint (not a CHECK whose
            // expression holds one of those words).
            EntryKind::Constraint => !of_kept_table(e, plan) && e.facts.builds_index_only(),
            _ => false,
        };
        n += counts as u64;
    }
    for t in plan
        .tables
        .iter()
        .filter(|t| t.exists && t.action != Action::Skip)
    {
        if let Some(oid) = table_oid(&t.schema, &t.name)? {
            let indexes = crate::query::one::<i64>(
                "SELECT count(*) FROM pg_catalog.pg_index WHERE indrelid = $1",
                &[oid.into()],
            )?
            .unwrap_or(0);
            n += 1 + indexes as u64;
        }
    }
    Ok(n)
}

/// The owner of table (schema, name) in the backup.
fn backup_owner<'m>(m: &'m Manifest, schema: &str, name: &str) -> Option<&'m str> {
    m.toc
        .iter()
        .find(|e| {
            matches!(e.kind, EntryKind::Table | EntryKind::ForeignTable)
                && e.schema.as_deref() == Some(schema)
                && e.name == name
        })
        .and_then(|e| e.owner.as_deref())
}

fn check_privileges(
    m: &Manifest,
    scope: &Scope,
    plan: &Plan,
    opts: &RestoreOptions,
    who: &Restorer,
) -> Result<()> {
    let mut new_schemas: BTreeSet<String> = BTreeSet::new();
    let mut used_schemas: BTreeSet<String> = BTreeSet::new();
    if !opts.data_only {
        for e in in_scope(m, scope).filter(|e| e.section == Section::PreData) {
            let schema = e.schema.as_deref().unwrap_or_default();
            let object = format!("{} {}", e.kind.as_str(), e.object());
            match e.kind {
                EntryKind::Extension => {
                    who.check_extension(&e.name)?;
                    continue;
                }
                k if k.is_decoration() => continue,
                EntryKind::Table | EntryKind::ForeignTable => {
                    if !plan.of(schema, &e.name).is_none_or(|t| t.action.runs_ddl()) {
                        continue;
                    }
                    if plan.of(schema, &e.name).is_none() && object_exists(e, scope)? {
                        continue;
                    }
                }
                EntryKind::LargeObject => {
                    who.check_large_object(&e.name)?;
                    if object_exists(e, scope)? {
                        continue;
                    }
                }
                _ => {
                    if object_exists(e, scope)? {
                        continue;
                    }
                }
            }
            // Created by this restore: owned by the backup's owner, which the caller must be
            // able to act as, in a schema it may create objects in.
            if let Some(role) = &e.owner {
                who.owner_for(&object, role)?;
            }
            match e.kind {
                EntryKind::Schema => {
                    new_schemas.insert(e.name.clone());
                }
                EntryKind::LargeObject => {}
                k if k.is_relation() => {
                    used_schemas.insert(scope.target_schema_of(schema).to_string());
                }
                _ if !schema.is_empty() => {
                    used_schemas.insert(schema.to_string());
                }
                _ => {}
            }
        }
        // Format 1: owners are entries of their own.
        for e in in_scope(m, scope).filter(|e| e.kind == EntryKind::Owner) {
            if let Some(st) = crate::security::privileges::parse_owner_statement(&e.sql) {
                let kept = e
                    .table
                    .as_deref()
                    .and_then(|t| plan.of(e.schema.as_deref().unwrap_or_default(), t))
                    .is_some_and(|t| !t.action.runs_ddl());
                if !kept && st.objtype != "SCHEMA" {
                    who.owner_for(
                        &format!("{} {}", st.objtype.to_lowercase(), st.ident),
                        &st.role,
                    )?;
                }
            }
        }
    }
    if let Some((_, to)) = &scope.target {
        if !schema_exists(to)? {
            new_schemas.insert(to.clone());
        }
    }
    for s in &new_schemas {
        who.check_create_schema(s)?;
    }
    for s in used_schemas.difference(&new_schemas) {
        if schema_exists(s)? {
            who.check_create_in(s)?;
        }
    }

    // Existing tables: what is done to them needs the matching privilege.
    for t in plan.tables.iter().filter(|t| t.exists) {
        let Some(oid) = table_oid(&t.schema, &t.name)? else {
            continue;
        };
        let change = match t.action {
            Action::Drop => Some(Change::Drop),
            Action::Truncate => Some(Change::Truncate),
            Action::Append => Some(Change::Append),
            Action::Create | Action::Skip => None,
        };
        if let Some(c) = change {
            who.check_existing(&t.object(), oid, c)?;
        }
        if t.action == Action::Truncate && !opts.schema_only {
            who.check_sequence_reset(&t.object(), oid)?;
        }
        if opts.disable_triggers && t.action.loads_data() && !opts.schema_only {
            who.check_disable_triggers(&t.object(), oid)?;
        }
    }
    // Views the restore drops and recreates under existing => 'drop'.
    if plan.tables.iter().any(|t| t.action == Action::Drop) {
        for e in in_scope(m, scope)
            .filter(|e| matches!(e.kind, EntryKind::View | EntryKind::MaterializedView))
        {
            let schema = scope.target_schema_of(e.schema.as_deref().unwrap_or_default());
            if let Some(oid) = table_oid(schema, &e.name)? {
                who.check_existing(&quoted(schema, &e.name), oid, Change::Drop)?;
            }
        }
    }

    // Rows: only those of tables whose owner the caller can act as (or can read now).
    if !opts.schema_only {
        for (s, n) in m.data_tables() {
            let Some(t) = plan.of(&s, &n).filter(|t| t.action.loads_data()) else {
                continue;
            };
            let owner = backup_owner(m, &s, &n).map(str::to_string).or_else(|| {
                m.toc
                    .iter()
                    .filter(|e| {
                        e.kind == EntryKind::Owner
                            && e.schema.as_deref() == Some(s.as_str())
                            && e.table.as_deref() == Some(n.as_str())
                    })
                    .find_map(|e| crate::security::privileges::parse_owner_statement(&e.sql))
                    .map(|st| st.role)
            });
            // Without a recorded owner, the rows are judged by the table of that name here: only
            // meaningful when the backup was taken of this very database (elsewhere, a table of
            // the same name could be the caller's own).
            let original = if owner.is_some() || crate::text::is_current_database(&m.database) {
                table_oid(&s, &n)?
            } else {
                None
            };
            who.check_rows(&t.object(), owner.as_deref(), original)?;
        }
        let lo_data = m.files.iter().any(|f| f.is_large_objects())
            || m.script_tables
                .iter()
                .any(|b| b.kind == Some(FileKind::LargeObjects));
        let lo_entries = m.toc.iter().any(|e| e.kind == EntryKind::LargeObject);
        if scope.full && lo_data && !lo_entries {
            return Err(BackupError::denied(
                "this backup's large objects carry no owners (data_only); only a superuser may restore them",
            )
            .with_hint("Restore the tables only, with tables => '{...}', or ask a superuser."));
        }
    }
    Ok(())
}
