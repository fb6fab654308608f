//! One TOC entry's execution: its statements checked against its kind, run as the role they
//! must run as (the owner of the table whose user code they evaluate, the entry's owner, the
//! caller, or the grantor of each grant), in the tablespace the backup recorded, and then the
//! object given its owner. The walk (`walk`) decides what runs; the job workers of
//! restore(jobs => N) run entries through the same executor.

use std::cell::RefCell;

use pgrx::prelude::*;

use super::context::set_current;
use super::job::Job;
use super::plan::table_oid;
use super::policy::{
    constraint_in_two, constraint_parts, created_as_owner, reads_rows, Outcome, Tolerate,
};
use super::result::{Action, Row, Status};
use super::scope::quoted;
use super::step::{describe_error, Runner};
use super::{statements, tablespaces};
use crate::archive::shapes::ConstraintKind;
use crate::archive::toc::{EntryKind, TocEntry};
use crate::error::Result;
use crate::security::owner::{relation_owner, role_oid, run_as_in, SchemaPrivilege};
use crate::security::privileges::{parse_owner_statement, Restorer};
use crate::security::redact::Exposure;
use crate::subtransaction;

/// Runs entries' statements for a job and collects their result rows.
pub struct Executor<'j, 'a> {
    pub job: &'j Job<'a>,
    pub runner: Runner<'a>,
}

impl<'j, 'a> Executor<'j, 'a> {
    pub fn new(job: &'j Job<'a>) -> Executor<'j, 'a> {
        Executor {
            job,
            runner: Runner::new(job.opts.on_error, job.batches),
        }
    }

    /// Run one entry's statements, then give the object its owner (issue 9): the backup's
    /// owner, or the role that called restore when that role does not exist here (never the
    /// extension owner). Entries that evaluate user code run with the rights of the owner of
    /// the relation they work on (`code_role`).
    pub fn run(&mut self, e: &'a TocEntry, action: Action, tolerate: Tolerate) -> Result<Outcome> {
        let moved_to = self.job.scope.moved_to(e);
        // What runs is what was checked against the entry's kind (issue 17): preflight
        // checked the archive as it was then; this is the text about to run.
        let body = match self.job.scope.sql(&e.sql) {
            b if b.is_empty() => b,
            b => statements::check_entry(e, &b, moved_to)?,
        };
        let object = self.job.object(e);
        let restorer = self.job.restorer;
        // (owner statement as in the backup, the backup's owner)
        let owner = match (&e.owner_sql, &e.owner) {
            (Some(sql), Some(role)) => {
                let sql = self.job.scope.sql(sql);
                statements::check_owner(e, &sql, moved_to)?;
                Some((sql, role.clone()))
            }
            // Format-1 owner entries (and large objects'): the statement is the entry.
            _ if e.kind == EntryKind::Owner => parse_owner_statement(&body)
                .filter(|st| role_oid(&st.role).ok().flatten().is_none())
                .map(|st| (body.clone(), st.role)),
            _ => None,
        };
        // A schema that exists keeps its owner unless the caller could change it itself
        // (`CREATE SCHEMA IF NOT EXISTS` succeeds on it).
        let owner = match owner {
            Some(_) if e.kind == EntryKind::Schema => {
                let current = crate::query::one::<pg_sys::Oid>(
                    "SELECT (SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = $1)",
                    &[crate::text::arg(e.name.clone())],
                )?;
                match current {
                    Some(o) if !restorer.acts_as(o) => None,
                    _ => owner,
                }
            }
            o => o,
        };
        let body = if owner.as_ref().is_some_and(|(sql, _)| *sql == body) {
            String::new()
        } else {
            body
        };
        let code = self.code_role(e)?;
        // For a caller that is not a superuser nothing of the archive runs as the extension
        // owner (issue 17): an entry without user code to sandbox runs as its owner (created
        // in its schema, as tables are) or, without one, as the caller.
        let runs_as = match &code {
            Some((role, schemas)) => {
                let mut needs: Vec<(String, SchemaPrivilege)> = schemas
                    .iter()
                    .map(|s| (s.clone(), SchemaPrivilege::Usage))
                    .collect();
                if created_as_owner(e.kind) {
                    // A table (a partition: by its parent's owner) is created in its schema.
                    needs.extend(schemas.iter().map(|s| (s.clone(), SchemaPrivilege::Create)));
                }
                Some((*role, needs))
            }
            None if !restorer.superuser => Some(self.statement_role(e)?),
            None => None,
        };
        // An operator's CREATE SCHEMA IF NOT EXISTS of a schema that exists changes nothing,
        // but PostgreSQL asks for CREATE on the database first: not run.
        let body = if !restorer.superuser
            && e.kind == EntryKind::Schema
            && crate::security::owner::schema_oid(&e.name).is_some()
        {
            String::new()
        } else {
            body
        };
        // The tablespace its statements create storage in (None: the database's default).
        let tablespace = self.job.placement.of(e);
        // Grants by roles other than the owner, run as those roles where allowed.
        let grantors = e.kind == EntryKind::Acl && crate::archive::acl::has_grantors(&body);
        let acl_schema = e
            .schema
            .as_deref()
            .map(|s| self.job.scope.target_schema_of(s).to_string());
        let grant_note: RefCell<Option<String>> = RefCell::new(None);
        let placement = self.job.placement;
        let placement_role = match (tablespace, &owner) {
            (Some(_), None) if !restorer.superuser => Some(self.placement_role(e)),
            _ => None,
        };
        // Index builds run as the table's owner inside PostgreSQL itself, but their errors
        // carry keys and expression values (`Key (v)=(...) is duplicated`, an index
        // expression's `invalid input syntax ... "<value>"`), as do constraint validations:
        // redacted like the rows they come from (issue 9).
        // Entries run as their owner only so that PostgreSQL checks the owner's privileges
        // evaluate nothing over rows: their errors stay as PostgreSQL wrote them.
        let checks_only = (created_as_owner(e.kind) && e.kind != EntryKind::Table)
            || e.kind == EntryKind::Trigger
            || (e.kind == EntryKind::Table
                && !e.facts.created_as_partition
                && !self.calls_user_code(e));
        // A subscription's statement holds its connection string (maybe a password): its
        // errors are redacted like those of steps that touch rows.
        let exposure = if (code.is_some() && !checks_only)
            || reads_rows(e.kind)
            || e.kind == EntryKind::Subscription
        {
            Exposure::Data
        } else {
            Exposure::Ddl
        };
        set_current(Some((e.describe(), exposure)));
        let attach_as_restorer = e.kind == EntryKind::TableAttach
            && code.is_some()
            && self.attach_evaluates_nothing(e)?;
        let note: RefCell<Option<String>> = RefCell::new(None);
        let what = object.clone();
        let step = || -> Result<Option<i64>> {
            if action == Action::Advance && e.kind == EntryKind::ExtensionData {
                let sequence = quoted(e.schema.as_deref().unwrap_or_default(), &e.name);
                match &runs_as {
                    Some((role, needs)) => {
                        let needs: Vec<(&str, SchemaPrivilege)> =
                            needs.iter().map(|(s, p)| (s.as_str(), *p)).collect();
                        run_as_in(*role, &needs, || advance_sequence(&sequence, &body))?;
                    }
                    None => advance_sequence(&sequence, &body)?,
                }
                return Ok(None);
            }
            if let Some(ts) = tablespace {
                if !restorer.superuser {
                    let role = match (&owner, placement_role) {
                        (Some((_, role)), _) => restorer.owner_for(&what, role)?.oid,
                        (None, Some(r)) => r?,
                        (None, None) => restorer.oid,
                    };
                    tablespaces::check_create(role, ts, &what)?;
                }
                placement.select(Some(ts))?;
            }
            if !body.is_empty() {
                let split = match &code {
                    Some((role, schemas))
                        if matches!(
                            e.kind,
                            EntryKind::ForeignKey
                                | EntryKind::CheckConstraint
                                | EntryKind::DomainConstraint
                        ) =>
                    {
                        add_constraint(e, &body, moved_to, *role, schemas, restorer)?
                    }
                    Some(_) if attach_as_restorer => {
                        // Issue 16: attaching needs the ownership of both tables; with
                        // different owners neither owner can, the caller can as pg_restore
                        // does (a superuser; an operator with the privileges of both). Both
                        // are empty (rows come later), so checking the partition's rows
                        // against its bound (and the default partition's) evaluates nothing.
                        if restorer.superuser {
                            crate::text::run(&body)?;
                        } else {
                            crate::security::owner::run_as(restorer.oid, || {
                                crate::text::run(&body)
                            })?;
                        }
                        true
                    }
                    _ => false,
                };
                match &runs_as {
                    _ if split => {}
                    _ if grantors => {
                        *grant_note.borrow_mut() =
                            grant_as_grantors(e, &body, moved_to, restorer, acl_schema.as_deref())?;
                    }
                    Some((role, needs)) => {
                        let needs: Vec<(&str, SchemaPrivilege)> =
                            needs.iter().map(|(s, p)| (s.as_str(), *p)).collect();
                        run_as_in(*role, &needs, || Ok(crate::text::run(&body)?))?;
                    }
                    None => crate::text::run(&body)?,
                }
            }
            if tablespace.is_some() {
                placement.select(None)?;
            }
            if let Some((sql, role)) = &owner {
                let chosen = restorer.owner_for(&what, role)?;
                let sql = match (parse_owner_statement(sql), &chosen.substitute_for) {
                    (Some(st), Some(_)) => format!(
                        "ALTER {} {} OWNER TO {};",
                        st.objtype,
                        st.ident,
                        spi::quote_identifier(&chosen.name)
                    ),
                    _ => sql.clone(),
                };
                if restorer.superuser {
                    crate::text::run(&sql)?;
                } else if e.kind == EntryKind::Schema {
                    // The caller acts as the schema's owner (or created it) and as the new
                    // one, but PostgreSQL also asks it for CREATE on the database: a fixed
                    // statement, run by the extension owner.
                    crate::text::run(&format!(
                        "ALTER SCHEMA {} OWNER TO {}",
                        spi::quote_identifier(&e.name),
                        spi::quote_identifier(&chosen.name)
                    ))?;
                } else {
                    // As the caller, who acts as the new owner; the new owner may create in
                    // the object's schema for this statement (PostgreSQL asks it of the new
                    // owner). A no-op for what was created as its owner.
                    let schemas = self_schemas(e, moved_to);
                    let needs: Vec<(&str, SchemaPrivilege)> = schemas
                        .iter()
                        .flat_map(|s| {
                            [
                                (s.as_str(), SchemaPrivilege::Usage),
                                (s.as_str(), SchemaPrivilege::Create),
                            ]
                        })
                        .collect();
                    crate::security::owner::with_schema_privileges(chosen.oid, &needs, || {
                        run_as_in(restorer.oid, &[], || Ok(crate::text::run(&sql)?))
                    })?;
                }
                *note.borrow_mut() = chosen.note();
            }
            Ok(None)
        };
        let outcome = self.runner.run_outcome(
            object.clone(),
            e.kind.as_str(),
            action,
            tolerate,
            exposure,
            step,
        )?;
        set_current(None);
        if outcome == Some(true)
            && matches!(e.kind, EntryKind::Table | EntryKind::ForeignTable)
            && action == Action::Create
        {
            // Where its rows may go (issue 17).
            self.job
                .plan
                .note_created(e.schema.as_deref().unwrap_or_default(), &e.name)?;
        }
        let result = match outcome {
            Some(true) => Outcome::Created,
            Some(false) => Outcome::Kept,
            None => Outcome::Failed,
        };
        if let (Some(n), Some(true)) = (grant_note.into_inner(), outcome) {
            // The entry's own row says which grants lost their grantor, and why.
            if let Some(r) = self
                .runner
                .out
                .iter_mut()
                .rev()
                .find(|r| r.object == object && r.kind == e.kind.as_str())
            {
                r.status = Status::Warning;
                r.detail = Some(n);
            }
        }
        if let (Some(n), Some(true)) = (note.into_inner(), outcome) {
            self.runner
                .note(Row::new(object, "owner", Action::Substitute, Status::Warning).detail(n));
        }
        Ok(result)
    }

    /// The role an entry without user code to sandbox runs as for a caller that is not a
    /// superuser, and the schema privileges that role is lent for its statements: the
    /// entry's owner (which the caller acts as; preflight checked that), creating in its
    /// schema; else the caller, using the schemas its statements name. A schema is created
    /// by the caller (its owner is given afterwards).
    fn statement_role(
        &self,
        e: &TocEntry,
    ) -> Result<(pg_sys::Oid, Vec<(String, SchemaPrivilege)>)> {
        let restorer = self.job.restorer;
        let schemas = self_schemas(e, self.job.scope.moved_to(e));
        let mut needs: Vec<(String, SchemaPrivilege)> = schemas
            .iter()
            .map(|s| (s.clone(), SchemaPrivilege::Usage))
            .collect();
        let owner = match &e.owner {
            Some(o) if e.kind != EntryKind::Schema => role_oid(o)?,
            _ => None,
        };
        match owner {
            Some(oid) if restorer.acts_as(oid) => {
                needs.extend(schemas.iter().map(|s| (s.clone(), SchemaPrivilege::Create)));
                Ok((oid, needs))
            }
            _ => Ok((restorer.oid, needs)),
        }
    }

    /// The role whose rights an entry that evaluates user code runs with, and the schemas its
    /// statement names; None for entries that evaluate nothing (run as the extension owner).
    /// CHECK / foreign key / other non-index constraints (validation over the rows), domain
    /// constraints (validation over every column of the domain), partition creation and
    /// attachment (bound and default-partition checks), materialized view refreshes, and
    /// entries of kinds this version does not know that work on a table. Index builds
    /// (indexes, PRIMARY KEY / UNIQUE / EXCLUDE) run as the extension owner: PostgreSQL 15
    /// runs the whole build as the table's owner in a security-restricted operation itself.
    /// Whether creating the entry can call user code: it has stored generated columns or a
    /// partition key (whose expressions CREATE TABLE plans, calling immutable functions with
    /// constant arguments; the functions need not be in the backup), or depends on routines,
    /// operators or casts of the backup.
    fn calls_user_code(&self, e: &TocEntry) -> bool {
        if e.builtin_code_only {
            // The backup says (issue 16): what CREATE TABLE evaluates is built-in code (a
            // default or a CHECK is never evaluated by it).
            return false;
        }
        if e.facts.creation_plans_expressions() {
            return true;
        }
        e.deps.iter().filter_map(|d| self.job.entry(*d)).any(|d| {
            matches!(
                d.kind,
                EntryKind::Function
                    | EntryKind::Procedure
                    | EntryKind::Aggregate
                    | EntryKind::Operator
                    | EntryKind::Cast
            )
        })
    }

    /// Whether partition `e` is attached by the caller itself (issue 16): the partition and
    /// its parent have different owners (as either, PostgreSQL refuses: it needs the
    /// ownership of both), the parent's partition key evaluates only built-in code, and the
    /// partition, its own partitions and the parent's default partition are plain tables
    /// without rows, so that ATTACH checks no row (and calls no foreign-data wrapper).
    /// Otherwise it runs as the partition's owner, as before.
    fn attach_evaluates_nothing(&self, e: &TocEntry) -> Result<bool> {
        let Some((s, n)) = e.relation() else {
            return Ok(false);
        };
        let Some(child) = table_oid(self.job.scope.target_schema_of(&s), &n)? else {
            return Ok(false);
        };
        let parent = e
            .deps
            .iter()
            .filter_map(|d| self.job.entry(*d))
            .find(|d| d.kind == EntryKind::Table);
        // ATTACH plans the parent's partition key expressions (calling immutable functions
        // with constant arguments) even when no row is checked.
        let Some(parent) = parent.filter(|p| p.builtin_code_only) else {
            return Ok(false);
        };
        let parent_schema = parent.schema.as_deref().unwrap_or_default();
        let Some(parent) = table_oid(self.job.scope.target_schema_of(parent_schema), &parent.name)?
        else {
            return Ok(false);
        };
        if relation_owner(child)? == relation_owner(parent)? {
            return Ok(false);
        }
        // The relations whose rows ATTACH would check, if all are plain (or partitioned)
        // tables; NULL otherwise.
        let tables = crate::query::one::<Vec<pg_sys::Oid>>(
            "SELECT CASE WHEN pg_catalog.bool_and(c.relkind IN ('r', 'p')) THEN pg_catalog.array_agg(c.oid) END
             FROM (WITH d AS (
                     SELECT i.inhrelid AS oid FROM pg_catalog.pg_inherits i
                     JOIN pg_catalog.pg_class d ON d.oid = i.inhrelid AND d.relispartition
                          AND pg_catalog.pg_get_expr(d.relpartbound, d.oid) = 'DEFAULT'
                     WHERE i.inhparent = $2)
                   -- (pg_partition_tree gives nothing for a table outside any tree)
                   SELECT $1 AS relid
                   UNION SELECT t.relid FROM pg_catalog.pg_partition_tree($1) t
                   UNION SELECT d.oid FROM d
                   UNION SELECT t.relid FROM d CROSS JOIN LATERAL pg_catalog.pg_partition_tree(d.oid) t) r
             JOIN pg_catalog.pg_class c ON c.oid = r.relid",
            &[child.into(), parent.into()],
        )?;
        let Some(tables) = tables else {
            return Ok(false);
        };
        for t in tables {
            // As the restoring superuser: no policy applies, no code runs.
            let any = crate::query::one::<bool>(
                &format!(
                    "SELECT EXISTS (SELECT FROM ONLY {})",
                    crate::query::one::<crate::text::Text>(
                        "SELECT $1::pg_catalog.regclass::pg_catalog.text",
                        &[t.into()]
                    )?
                    .unwrap_or_default()
                    .0
                ),
                &[],
            )?
            .unwrap_or(true);
            if any {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The role whose CREATE privilege on its tablespace an entry without an owner of its
    /// own needs: the owner of its table (an index, a constraint's index), as PostgreSQL
    /// runs index builds as the table's owner; the caller when there is no table.
    fn placement_role(&self, e: &TocEntry) -> Result<pg_sys::Oid> {
        if let Some((s, n)) = e.relation() {
            if let Some(oid) = table_oid(self.job.scope.target_schema_of(&s), &n)? {
                return relation_owner(oid);
            }
        }
        Ok(self.job.restorer.oid)
    }

    fn code_role(&self, e: &TocEntry) -> Result<Option<(pg_sys::Oid, Vec<String>)>> {
        let restorer = self.job.restorer;
        let relation_of = |en: &TocEntry| -> Result<Option<pg_sys::Oid>> {
            let (s, n) = match en.relation() {
                Some(r) => r,
                None => (en.schema.clone().unwrap_or_default(), en.name.clone()),
            };
            table_oid(self.job.scope.target_schema_of(&s), &n)
        };
        let target = match e.kind {
            EntryKind::Index => return Ok(None),
            EntryKind::Constraint if e.facts.builds_index_only() => return Ok(None),
            EntryKind::Constraint
            | EntryKind::CheckConstraint
            | EntryKind::ForeignKey
            | EntryKind::MaterializedViewRefresh
            | EntryKind::TableAttach => relation_of(e)?,
            EntryKind::Other if e.table.is_some() => relation_of(e)?,
            // A trigger is created by its table's owner for a caller that is not a superuser:
            // PostgreSQL checks EXECUTE on its function only then, never when it fires.
            EntryKind::Trigger if !restorer.superuser => relation_of(e)?,
            EntryKind::Table if e.facts.created_as_partition => {
                match e.belongs_to.and_then(|b| self.job.entry(b)) {
                    Some(parent) => relation_of(parent)?,
                    None => None,
                }
            }
            // CREATE TABLE evaluates user code when it plans a generated column's or a
            // partition key's expression: an immutable function with constant arguments is
            // called right then. Such a table is created as its owner.
            // For a caller that is not a superuser every table is created as its owner:
            // PostgreSQL then checks what the owner could do (INHERITS needs the parent's
            // ownership, column types and a foreign table's server need USAGE), which the
            // extension owner would skip (a table of the caller's inheriting another role's
            // would run the caller's triggers when that role updates its own table).
            // Routines likewise: the owner needs USAGE on the language (untrusted ones are a
            // superuser's) and on the types, EXECUTE on an aggregate's functions.
            EntryKind::Table
            | EntryKind::ForeignTable
            | EntryKind::Function
            | EntryKind::Procedure
            | EntryKind::Aggregate
                if (e.kind == EntryKind::Table && self.calls_user_code(e))
                    || !restorer.superuser =>
            {
                let role = match &e.owner {
                    Some(o) => role_oid(o)?.unwrap_or(restorer.oid),
                    None => restorer.oid,
                };
                // Relations move with target_schema; routines stay where they were.
                let schemas = e
                    .schema
                    .iter()
                    .map(|s| {
                        if e.kind.is_relation() || e.kind == EntryKind::ForeignTable {
                            self.job.scope.target_schema_of(s).to_string()
                        } else {
                            s.clone()
                        }
                    })
                    .collect();
                return Ok(Some((role, schemas)));
            }
            EntryKind::DomainConstraint => {
                let role = match &e.owner {
                    Some(o) => role_oid(o)?.unwrap_or(restorer.oid),
                    None => restorer.oid,
                };
                let schemas = e.schema.iter().cloned().collect();
                return Ok(Some((role, schemas)));
            }
            _ => return Ok(None),
        };
        let Some(oid) = target else {
            // The statement will fail anyway: as the caller, never the extension owner.
            return Ok(Some((restorer.oid, Vec::new())));
        };
        let mut schemas: Vec<String> = Vec::new();
        let mut oids = vec![oid];
        if e.kind == EntryKind::ForeignKey {
            for d in &e.deps {
                if let Some(dep) = self.job.entry(*d).filter(|d| d.kind.is_relation()) {
                    oids.extend(relation_of(dep)?);
                }
            }
        }
        if e.kind == EntryKind::Table {
            // The partition's own schema (it is created there).
            if let Some(s) = &e.schema {
                schemas.push(self.job.scope.target_schema_of(s).to_string());
            }
        }
        for o in oids {
            if let Some(s) = crate::security::owner::relation_schema(o) {
                if !schemas.contains(&s) {
                    schemas.push(s);
                }
            }
        }
        let (bs, bn) = e
            .relation()
            .unwrap_or((e.schema.clone().unwrap_or_default(), e.name.clone()));
        Ok(Some((self.job.code_owner(oid, &bs, &bn)?, schemas)))
    }
}

/// Run an ACL entry whose grants have grantors other than the owner (archive/acl.rs): each
/// such part as its grantor, so that PostgreSQL records the same grantor as in the backup,
/// when the caller may act as that role (a superuser, or a caller with that role's
/// privileges); otherwise, or if the grant fails as that role, as the extension owner, which
/// PostgreSQL records as a grant by the object's owner. Never with more rights than the
/// caller has: the grantor's own rights, in a security-restricted operation, with USAGE on
/// the object's schema for that statement only (`run_as_in`). Returns what lost its grantor.
fn grant_as_grantors(
    e: &TocEntry,
    body: &str,
    moved_to: Option<&str>,
    restorer: &Restorer,
    schema: Option<&str>,
) -> Result<Option<String>> {
    let needs: Vec<(&str, SchemaPrivilege)> = schema
        .iter()
        .map(|s| (*s, SchemaPrivilege::Usage))
        .collect();
    // The owner's part: as the extension owner for a superuser, else as the caller (who acts
    // as the owner: PostgreSQL records the owner as grantor).
    let as_owner = |sql: &str| -> Result<()> {
        if restorer.superuser {
            Ok(crate::text::run(sql)?)
        } else {
            run_as_in(restorer.oid, &needs, || Ok(crate::text::run(sql)?))
        }
    };
    let mut lost: Vec<String> = Vec::new();
    for (grantor, sql) in crate::archive::acl::segments(body) {
        // Each part is checked again as it will run: the split is textual.
        let sql = statements::check_entry(e, &sql, moved_to)?;
        let Some(grantor) = grantor else {
            as_owner(&sql)?;
            continue;
        };
        let why = match role_oid(&grantor)? {
            None => format!("role \"{grantor}\" does not exist in this cluster"),
            Some(oid) if !restorer.acts_as(oid) => format!(
                "\"{}\" does not have the privileges of role \"{grantor}\"",
                restorer.name
            ),
            Some(oid) => {
                match subtransaction::run_result(|| {
                    run_as_in(oid, &needs, || Ok(crate::text::run(&sql)?))
                }) {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => format!("as \"{grantor}\": {e}"),
                    Err(c) => format!("as \"{grantor}\": {}", describe_error(&c)),
                }
            }
        };
        as_owner(&sql)?;
        lost.push(format!(
            "granted by the owner instead of \"{grantor}\" ({why})"
        ));
    }
    Ok((!lost.is_empty()).then(|| lost.join("; ")))
}

/// The schemas entry `e`'s statements name: its own, and with target_schema the one its
/// restored relations move to.
fn self_schemas(e: &TocEntry, moved_to: Option<&str>) -> Vec<String> {
    e.schema
        .iter()
        .map(String::clone)
        .chain(moved_to.map(str::to_string))
        .collect()
}

/// Run `setval` (a sequence value entry) on `sequence` without ever moving it back: numbers
/// the database handed out before stay used.
pub fn advance_sequence(sequence: &str, setval: &str) -> Result<()> {
    let read = format!(
        "SELECT s.last_value, s.is_called, q.seqincrement > 0 FROM {sequence} s, pg_catalog.pg_sequence q
         WHERE q.seqrelid = '{}'::pg_catalog.regclass",
        sequence.replace('\'', "''")
    );
    let (before, called, ascending) = crate::text::three::<i64, bool, bool>(&read, &[])?;
    crate::text::run(setval)?;
    let (after, _, _) = crate::text::three::<i64, bool, bool>(&read, &[])?;
    let (Some(before), Some(after)) = (before, after) else {
        return Ok(());
    };
    let behind = if ascending.unwrap_or(true) {
        after < before
    } else {
        after > before
    };
    if behind {
        Spi::run_with_args(
            "SELECT pg_catalog.setval($1::pg_catalog.regclass, $2, $3)",
            &[
                crate::text::arg(sequence),
                before.into(),
                called.unwrap_or(true).into(),
            ],
        )?;
    }
    Ok(())
}

/// A foreign key (issue 16): added NOT VALID (nothing is evaluated) by the role that called
/// restore, as pg_restore adds it as the role running it: PostgreSQL checks that role's
/// ownership of the table and its REFERENCES on the table referenced (a superuser's restore
/// passes, as the superuser who made such a key in the source did, when the owner could not
/// have; an operator passes only with the privileges of both tables' owners, as when it adds
/// the key itself). The validation, which runs the key's equality operators and casts over
/// the rows, runs as the table's owner (`owner`, with USAGE on `schemas` for the statement),
/// as every other step that evaluates user code. In a superuser's restore a CHECK (of a table
/// or a domain) is split the same way: the names in its expression are looked up by the
/// superuser (the owner may get USAGE on their schemas only in the grants pass), its
/// expression is evaluated over the rows by the owner. Returns false, having changed nothing,
/// for a statement of another shape (then it runs as the owner, as before).
fn add_constraint(
    e: &TocEntry,
    body: &str,
    moved_to: Option<&str>,
    owner: pg_sys::Oid,
    schemas: &[String],
    restorer: &Restorer,
) -> Result<bool> {
    let as_caller = |sql: &str| -> Result<()> {
        if restorer.superuser {
            Ok(crate::text::run(sql)?)
        } else {
            Ok(crate::security::owner::run_as(restorer.oid, || {
                crate::text::run(sql)
            })?)
        }
    };
    let as_owner = |role: pg_sys::Oid, extra: Option<&str>, sql: &str| -> Result<()> {
        let mut needs: Vec<(&str, SchemaPrivilege)> = schemas
            .iter()
            .map(|s| (s.as_str(), SchemaPrivilege::Usage))
            .collect();
        needs.extend(extra.map(|s| (s, SchemaPrivilege::Usage)));
        run_as_in(role, &needs, || Ok(crate::text::run(sql)?))
    };
    let facts = &e.facts;
    if let Some((add, validate)) = constraint_in_two(body, facts, restorer.superuser) {
        if let Some(validate) = validate {
            // The text cut NOT VALID runs as the caller: parsed again first.
            statements::check_added_not_valid(e, &add, moved_to, true)?;
            as_caller(&add)?;
            as_owner(owner, None, &validate)?;
        } else {
            as_caller(&add)?;
        }
        return Ok(true);
    }
    partitioned_foreign_key(e, body, as_caller, as_owner)
}

/// A partitioned table's foreign key (issue 16), which PostgreSQL 15 cannot add NOT VALID:
/// added bottom-up, so that the rows are checked as their table's owner and the statements
/// that check privileges run as the caller (see `constraint_in_two`). Each leaf partition
/// gets the key NOT VALID (as the caller) and validated (as the leaf's owner); then each
/// partitioned level, deepest first, and the table itself get it as the caller: PostgreSQL
/// takes a partition's valid key of the same definition and name as the parent's own
/// (tryAttachPartitionForeignKey) and checks no row again. Returns false, having changed
/// nothing, when the statement is not of that shape or a partition already has a constraint
/// of that name (then the key is added as the table's owner, as before).
fn partitioned_foreign_key(
    e: &TocEntry,
    body: &str,
    as_caller: impl Fn(&str) -> Result<()>,
    as_owner: impl Fn(pg_sys::Oid, Option<&str>, &str) -> Result<()>,
) -> Result<bool> {
    let Some(key) = e
        .facts
        .constraint
        .as_ref()
        .filter(|c| c.kind == ConstraintKind::ForeignKey && c.validated)
    else {
        return Ok(false);
    };
    let Some((keyword, relation, name, definition)) = constraint_parts(body) else {
        return Ok(false);
    };
    let Some(definition) = definition.trim_end().strip_suffix(';') else {
        return Ok(false);
    };
    if relation.starts_with("ONLY ")
        || definition.ends_with(" NOT ENFORCED")
        || keyword != "ALTER TABLE"
    {
        return Ok(false);
    }
    // Partitions below the table, deepest first: (regclass text, is a leaf, owner, schema,
    // whether a constraint of that name exists on it).
    let rows: Vec<(String, bool, pg_sys::Oid, String, bool)> = Spi::connect(|client| {
        client
            .select(
                "SELECT t.relid::pg_catalog.regclass::pg_catalog.text, t.isleaf, c.relowner, n.nspname::pg_catalog.text,
                        EXISTS (SELECT FROM pg_catalog.pg_constraint co WHERE co.conrelid = t.relid AND co.conname = $2)
                 FROM pg_catalog.pg_partition_tree($1::pg_catalog.regclass) t
                 JOIN pg_catalog.pg_class c ON c.oid = t.relid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE t.level > 0 ORDER BY t.level DESC, t.relid",
                None,
                &[
                    crate::text::arg(relation),
                    crate::text::arg(key.name.clone()),
                ],
            )?
            .map(|r| {
                Ok((
                    r.get::<crate::text::Text>(1)?.unwrap_or_default().0,
                    r.get::<bool>(2)?.unwrap_or(false),
                    r.get::<pg_sys::Oid>(3)?.unwrap_or(pg_sys::InvalidOid),
                    r.get::<crate::text::Text>(4)?.unwrap_or_default().0,
                    r.get::<bool>(5)?.unwrap_or(true),
                ))
            })
            .collect::<std::result::Result<Vec<_>, pgrx::spi::Error>>()
    })?;
    if rows.iter().any(|r| r.4) {
        return Ok(false);
    }
    for (partition, leaf, owner, schema, _) in &rows {
        if *leaf {
            let add = format!(
                "ALTER TABLE ONLY {partition} ADD CONSTRAINT {name} {definition} NOT VALID;"
            );
            statements::check_added_not_valid(e, &add, None, false)?;
            as_caller(&add)?;
            as_owner(
                *owner,
                Some(schema),
                &format!("ALTER TABLE ONLY {partition} VALIDATE CONSTRAINT {name};"),
            )?;
        } else {
            as_caller(&format!(
                "ALTER TABLE {partition} ADD CONSTRAINT {name} {definition};"
            ))?;
        }
    }
    as_caller(body)?;
    Ok(true)
}
