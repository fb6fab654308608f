//! Checks made before a restore changes anything (also for a dry run): the schemas it writes
//! into are not protected ones, the lock table can hold what it locks, and a caller who is
//! not a superuser may do every step (own what it creates, change what it replaces, read
//! the rows it loads). Walks the same TOC entries the runner will.

use std::collections::BTreeSet;

use pgrx::prelude::*;

use super::data::table_oid;
use super::plan::Action;
use super::runner::Plan;
use super::scope::{quoted, Scope, Why};
use super::RestoreOptions;
use crate::archive::manifest::Manifest;
use crate::archive::toc::{EntryKind, Section, TocEntry};
use crate::error::{BackupError, Result};
use crate::security::privileges::{Change, Restorer};
use crate::security::{locks, targets};

fn exists(sql: &str, name: &str) -> Result<bool> {
    Ok(Spi::get_one_with_args::<bool>(sql, &[name.into()])?.unwrap_or(false))
}

pub(super) fn schema_exists(name: &str) -> Result<bool> {
    exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
        name,
    )
}

/// Whether the object of `e` exists already (then the restore keeps it as it is).
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
        // The entry's name is proname(identity arguments), argument names included.
        EntryKind::Function | EntryKind::Procedure | EntryKind::Aggregate => Ok(
            Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                                WHERE n.nspname = $1
                                  AND p.proname || '(' || CASE WHEN p.prokind = 'a' AND p.pronargs = 0 THEN '*'
                                       ELSE pg_catalog.pg_get_function_identity_arguments(p.oid) END || ')' = $2)",
                &[schema.into(), e.name.clone().into()],
            )?
            .unwrap_or(false),
        ),
        _ => Ok(false),
    }
}

/// The entries a restore will run, as the runner decides them coarsely here (tables by
/// their plan, what belongs to a kept table left out).
fn wanted<'m>(
    m: &'m Manifest,
    scope: &'m Scope,
    plan: &'m Plan,
) -> impl Iterator<Item = &'m TocEntry> {
    m.toc.iter().filter(move |e| {
        scope.why(e).is_some()
            && match e.relation().and_then(|(s, n)| plan.of(&s, &n)) {
                Some(t) if !e.kind.is_relation() && e.kind != EntryKind::TableData => {
                    t.action.runs_ddl()
                }
                Some(t) if matches!(e.kind, EntryKind::Table | EntryKind::ForeignTable) => {
                    t.action.runs_ddl()
                }
                _ => true,
            }
    })
}

pub(super) fn check(
    m: &Manifest,
    scope: &Scope,
    plan: &Plan,
    opts: &RestoreOptions,
    who: &Restorer,
) -> Result<()> {
    check_schemas(m, scope, plan)?;
    locks::check(locks_needed(m, scope, plan)?)?;
    if !who.superuser {
        check_privileges(m, scope, plan, opts, who)?;
    }
    Ok(())
}

/// Every schema an entry lands in (after target_schema), extensions aside.
fn check_schemas(m: &Manifest, scope: &Scope, plan: &Plan) -> Result<()> {
    let mut schemas: BTreeSet<&str> = plan.tables.iter().map(|t| t.schema.as_str()).collect();
    // Grants and comments create nothing (grants on system catalogs are a superuser's: see
    // the runner).
    for e in
        wanted(m, scope, plan).filter(|e| e.kind != EntryKind::Extension && !e.kind.is_decoration())
    {
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

/// A lower bound of the relations the restore locks: what it creates, the indexes it builds,
/// the existing tables it writes and their indexes.
fn locks_needed(m: &Manifest, scope: &Scope, plan: &Plan) -> Result<u64> {
    let mut n: u64 = 0;
    for e in wanted(m, scope, plan) {
        let builds =
            e.kind.is_relation() || matches!(e.kind, EntryKind::Index | EntryKind::Constraint);
        n += builds as u64;
    }
    for t in plan
        .tables
        .iter()
        .filter(|t| t.exists && t.action != Action::Skip)
    {
        if let Some(oid) = table_oid(&t.schema, &t.name)? {
            let indexes = Spi::get_one_with_args::<i64>(
                "SELECT count(*) FROM pg_catalog.pg_index WHERE indrelid = $1",
                &[oid.into()],
            )?
            .unwrap_or(0);
            n += 1 + indexes as u64;
        }
    }
    Ok(n)
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
        for e in wanted(m, scope, plan).filter(|e| e.section != Section::Data) {
            let schema = e.schema.as_deref().unwrap_or_default();
            let object = format!("{} {}", e.kind.as_str(), e.object());
            if e.kind == EntryKind::Owner {
                // Format 1: owners are entries of their own.
                if let Some(stmt) = crate::security::privileges::parse_owner_statement(&e.sql) {
                    who.owner_for(&object, &stmt.role)?;
                }
                continue;
            }
            match e.kind {
                EntryKind::Extension => {
                    who.check_extension(&e.name)?;
                    continue;
                }
                EntryKind::LargeObject => {
                    who.check_large_object(&e.name)?;
                    if object_exists(e, scope)? {
                        continue;
                    }
                }
                // The database's own properties and default privileges are a superuser's
                // to restore: the runner leaves them out for anyone else, with a warning.
                k if k.is_decoration()
                    || matches!(k, EntryKind::Database | EntryKind::DefaultPrivileges) =>
                {
                    continue
                }
                _ => {
                    if scope.why(e) == Some(Why::Dependency) && object_exists(e, scope)? {
                        continue;
                    }
                    if !matches!(e.kind, EntryKind::Table | EntryKind::ForeignTable)
                        && object_exists(e, scope)?
                    {
                        continue;
                    }
                }
            }
            if let Some(role) = &e.owner {
                who.owner_for(&object, role)?;
            }
            match e.kind {
                EntryKind::Schema => {
                    new_schemas.insert(e.name.clone());
                }
                EntryKind::LargeObject => {}
                k => {
                    if e.schema.is_some() {
                        let target = if k.is_relation() {
                            scope.target_schema_of(schema)
                        } else {
                            schema
                        };
                        used_schemas.insert(target.to_string());
                    } else {
                        // Database-wide objects (casts, languages, FDWs, event triggers,
                        // publications ...) and the database's properties: a superuser's.
                        return Err(BackupError::denied(format!(
                            "permission denied to restore {object}: only a superuser may restore database-wide objects"
                        ))
                        .with_hint("Restore tables or schemas only (tables => or schemas =>), or ask a superuser."));
                    }
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
        if opts.disable_triggers && t.action.loads_data() && !opts.schema_only {
            who.check_disable_triggers(&t.object(), oid)?;
        }
    }
    // Views the restore drops and recreates under existing => 'drop'.
    if plan.tables.iter().any(|t| t.action == Action::Drop) {
        for e in m.toc.iter().filter(|e| {
            matches!(e.kind, EntryKind::View | EntryKind::MaterializedView)
                && scope.why(e) == Some(Why::Requested)
        }) {
            let schema = scope.target_schema_of(e.schema.as_deref().unwrap_or_default());
            if let Some(oid) = table_oid(schema, &e.name)? {
                who.check_existing(&quoted(schema, &e.name), oid, Change::Drop)?;
            }
        }
    }
    // Rows: only those of tables whose owner the caller can act as (or can read now).
    if !opts.schema_only {
        let owners: std::collections::HashMap<(String, String), Option<String>> = m
            .toc
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::Table | EntryKind::ForeignTable))
            .map(|e| {
                (
                    (e.schema.clone().unwrap_or_default(), e.name.clone()),
                    e.owner.clone(),
                )
            })
            .collect();
        for (s, n) in m.data_tables() {
            let Some(t) = plan.of(&s, &n).filter(|t| t.action.loads_data()) else {
                continue;
            };
            let owner = owners.get(&(s.clone(), n.clone())).cloned().flatten();
            who.check_rows(&t.object(), owner.as_deref(), table_oid(&s, &n)?)?;
        }
        let lo_data = m.files.iter().any(|f| f.is_large_objects())
            || m.script_tables
                .iter()
                .any(|b| b.kind.as_deref() == Some(crate::archive::manifest::LARGE_OBJECTS));
        let lo_items = m.toc.iter().any(|e| e.kind == EntryKind::LargeObject);
        if scope.full && lo_data && !lo_items {
            return Err(BackupError::denied(
                "this backup's large objects carry no owners (data_only); only a superuser may restore them",
            )
            .with_hint("Restore the tables only, with tables => '{...}', or ask a superuser."));
        }
    }
    Ok(())
}
