//! The safety checks a restore passes before anything changes (issue 9): no object lands
//! in pg_backup's schema or a system schema, the caller may make every change the restore
//! would make (`security::privileges`), and the restore fits in the lock table
//! (`security::locks`).

use std::collections::BTreeSet;

use pgrx::prelude::*;

use super::ownership::{Class, Ownership};
use super::plan::Action;
use super::scope::{quoted, Scope};
use super::{table_oid, Plan, RestoreOptions};
use crate::archive::manifest::{DdlItem, Manifest};
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

/// Whether the object of pre-data `item` exists in this database now (then restore keeps it
/// as it is).
fn object_exists(item: &DdlItem, scope: &Scope, own: &Ownership) -> Result<bool> {
    let schema = item.schema.as_deref().unwrap_or_default();
    match item.kind.as_str() {
        "schema" => schema_exists(&item.name),
        "view" | "materialized_view" | "sequence" | "table" => exists(
            "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
            &quoted(scope.target_schema_of(schema), &item.name),
        ),
        "type" => exists(
            "SELECT pg_catalog.to_regtype($1) IS NOT NULL",
            &quoted(schema, &item.name),
        ),
        "collation" => exists(
            "SELECT pg_catalog.to_regcollation($1) IS NOT NULL",
            &quoted(schema, &item.name),
        ),
        "large_object" => exists(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata WHERE oid::pg_catalog.text = $1)",
            &item.name,
        ),
        "function" | "procedure" => match own.key_of(item) {
            Some((_, ident)) => exists(
                "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL",
                &ident,
            ),
            None => Ok(false),
        },
        _ => Ok(false),
    }
}

/// Every check; an error here means nothing was changed.
pub(super) fn check(
    m: &Manifest,
    scope: &Scope,
    plan: &Plan,
    opts: &RestoreOptions,
    own: &Ownership,
    who: &Restorer,
) -> Result<()> {
    check_schemas(m, scope, plan)?;
    locks::check(locks_needed(m, scope, plan)?)?;
    if !who.superuser {
        check_privileges(m, scope, plan, opts, own, who)?;
    }
    Ok(())
}

/// No object of the restore lands in a protected schema.
fn check_schemas(m: &Manifest, scope: &Scope, plan: &Plan) -> Result<()> {
    let mut schemas: BTreeSet<&str> = plan.tables.iter().map(|t| t.schema.as_str()).collect();
    for item in m
        .pre_data
        .iter()
        .chain(m.post_data.iter())
        .filter(|i| scope.wants(i) && i.kind != "extension")
    {
        if item.kind == "schema" {
            schemas.insert(&item.name);
        }
        if let Some(s) = item.schema.as_deref() {
            schemas.insert(s);
            schemas.insert(scope.target_schema_of(s));
        }
    }
    if let Some((_, to)) = &scope.target {
        schemas.insert(to);
    }
    targets::check_restore_schemas(schemas)
}

/// A lower bound of the relations the restore locks until it commits: those it creates
/// (tables, views, sequences, indexes and the indexes of constraints) and the existing
/// tables it writes, with their indexes.
fn locks_needed(m: &Manifest, scope: &Scope, plan: &Plan) -> Result<u64> {
    let keeps = |item: &DdlItem| {
        item.table
            .as_deref()
            .and_then(|t| plan.of_quoted(t))
            .is_some_and(|t| !t.action.runs_ddl())
    };
    let mut n: u64 = 0;
    for item in m.pre_data.iter().filter(|i| scope.wants(i)) {
        match item.kind.as_str() {
            "table" => {
                let schema = item.schema.as_deref().unwrap_or_default();
                if plan
                    .of(schema, &item.name)
                    .is_some_and(|t| t.action.runs_ddl())
                {
                    n += 1;
                }
            }
            "view" | "materialized_view" | "sequence" => n += 1,
            _ => {}
        }
    }
    for item in m.post_data.iter().filter(|i| scope.wants(i) && !keeps(i)) {
        let builds_index = match item.kind.as_str() {
            "index" => true,
            "constraint" => ["PRIMARY KEY", "UNIQUE", "EXCLUDE"]
                .iter()
                .any(|k| item.sql.contains(k)),
            _ => false,
        };
        n += builds_index as u64;
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
    own: &Ownership,
    who: &Restorer,
) -> Result<()> {
    let mut new_schemas: BTreeSet<String> = BTreeSet::new();
    let mut used_schemas: BTreeSet<String> = BTreeSet::new();
    if !opts.data_only {
        for item in m.pre_data.iter().filter(|i| scope.wants(i)) {
            let schema = item.schema.as_deref().unwrap_or_default();
            let object = format!(
                "{} {}",
                item.kind,
                super::qualified(&item.schema, &item.name)
            );
            match item.kind.as_str() {
                "extension" => {
                    who.check_extension(&item.name)?;
                    continue;
                }
                "table" => {
                    if !plan
                        .of(schema, &item.name)
                        .is_some_and(|t| t.action.runs_ddl())
                    {
                        continue;
                    }
                }
                "large_object" => {
                    who.check_large_object(&item.name)?;
                    if object_exists(item, scope, own)? {
                        continue;
                    }
                }
                _ => {
                    if object_exists(item, scope, own)? {
                        continue;
                    }
                }
            }
            // Created by this restore: owned by the backup's owner, which the caller must be
            // able to act as, in a schema it may create objects in.
            if let Some(role) = own.key_of(item).and_then(|k| own.backup_owner(&k)) {
                who.owner_for(&object, &role)?;
            }
            match item.kind.as_str() {
                "schema" => {
                    new_schemas.insert(item.name.clone());
                }
                "large_object" => {}
                _ => {
                    let target = if matches!(
                        item.kind.as_str(),
                        "table" | "view" | "materialized_view" | "sequence"
                    ) {
                        scope.target_schema_of(schema)
                    } else {
                        schema
                    };
                    used_schemas.insert(target.to_string());
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
        if opts.disable_triggers && t.action.loads_data() && !opts.schema_only {
            who.check_disable_triggers(&t.object(), oid)?;
        }
    }
    // Views the restore drops and recreates under existing => 'drop'.
    if plan.tables.iter().any(|t| t.action == Action::Drop) {
        for item in m
            .pre_data
            .iter()
            .filter(|i| matches!(i.kind.as_str(), "view" | "materialized_view") && scope.wants(i))
        {
            let schema = scope.target_schema_of(item.schema.as_deref().unwrap_or_default());
            if let Some(oid) = table_oid(schema, &item.name)? {
                who.check_existing(&quoted(schema, &item.name), oid, Change::Drop)?;
            }
        }
    }

    // Rows: only those of tables whose owner the caller can act as (or can read now).
    if !opts.schema_only {
        for (s, n) in m.data_tables() {
            let Some(t) = plan.of(&s, &n).filter(|t| t.action.loads_data()) else {
                continue;
            };
            let owner = own.backup_owner(&(Class::Relation, quoted(&s, &n)));
            who.check_rows(&t.object(), owner.as_deref(), table_oid(&s, &n)?)?;
        }
        let lo_data = m.files.iter().any(|f| f.is_large_objects())
            || m.script_tables
                .iter()
                .any(|b| b.kind.as_deref() == Some(crate::archive::manifest::LARGE_OBJECTS));
        let lo_items = m.pre_data.iter().any(|i| i.kind == "large_object");
        if scope.full && lo_data && !lo_items {
            return Err(BackupError::denied(
                "this backup's large objects carry no owners (data_only); only a superuser may restore them",
            )
            .with_hint("Restore the tables only, with tables => '{...}', or ask a superuser."));
        }
    }
    Ok(())
}
