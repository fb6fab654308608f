//! The restore runner: walks the TOC pass by pass (pre-data, data, post-data, grants, what
//! must follow the grants, sequence values), decides for each entry of the restore what to do
//! with it (create, keep what exists, skip with its table), runs it, and names it in every
//! error.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use super::data::{self, table_oid};
use super::plan::{self, Action, Existing, OnError, PlannedTable};
use super::scope::{quoted, Scope, Why};
use super::RestoreOptions;
use crate::archive::compression::Compression;
use crate::archive::manifest::Manifest;
use crate::archive::toc::{self, EntryKind, Pass, TocEntry, PASSES};
use crate::error::Result;
use crate::security;
use crate::security::owner::{relation_owner, run_as_in, SchemaPrivilege};
use crate::security::privileges::{parse_owner_statement, Restorer};
use crate::security::redact::{self, Exposure};
use crate::subtransaction;

/// One result row: object, kind, action, rows, status, detail.
pub type Row = (String, String, String, Option<i64>, String, Option<String>);

pub fn row(
    object: String,
    kind: &str,
    action: &str,
    rows: Option<i64>,
    status: &str,
    detail: Option<&str>,
) -> Row {
    (
        object,
        kind.into(),
        action.into(),
        rows,
        status.into(),
        detail.map(str::to_string),
    )
}

/// The step a restore is running, for the error if it fails (on_error => 'abort').
#[derive(Clone)]
pub struct Step {
    pub kind: String,
    pub object: String,
    /// The TOC entry, as `TocEntry::describe` names it.
    pub entry: Option<String>,
    pub exposure: Exposure,
}

thread_local! {
    static CURRENT: RefCell<Option<Step>> = const { RefCell::new(None) };
}

/// The step the restore was working on when it stopped.
pub fn current_step() -> Option<Step> {
    CURRENT.with(|c| c.borrow().clone())
}

fn set_current(step: Option<Step>) {
    CURRENT.with(|c| *c.borrow_mut() = step);
}

/// The plan for the tables asked for, keyed by each table's quoted name in the backup.
pub struct Plan {
    pub tables: Vec<PlannedTable>,
    by_backup_name: HashMap<String, usize>,
}

impl Plan {
    pub fn build(m: &Manifest, scope: &Scope, existing: Existing) -> Result<Plan> {
        let mut tables = Vec::new();
        let mut by_backup_name = HashMap::new();
        for (schema, name) in scope.tables(m) {
            let target = scope.target_schema_of(&schema).to_string();
            let exists = table_oid(&target, &name)?.is_some();
            by_backup_name.insert(quoted(&schema, &name), tables.len());
            tables.push(PlannedTable {
                action: plan::action_for(exists, existing),
                schema: target,
                name,
                exists,
            });
        }
        Ok(Plan {
            tables,
            by_backup_name,
        })
    }

    pub fn of(&self, backup_schema: &str, name: &str) -> Option<&PlannedTable> {
        self.by_backup_name
            .get(&quoted(backup_schema, name))
            .map(|i| &self.tables[*i])
    }

    fn of_entry(&self, e: &TocEntry) -> Option<&PlannedTable> {
        let (s, n) = e.relation()?;
        self.of(&s, &n)
    }
}

/// Everything one restore works from.
pub struct Job<'a> {
    pub manifest: &'a Manifest,
    /// Where the archive is read from (local folder or storage target; issue 12).
    pub source: &'a crate::storage::archive_files::ArchiveSource,
    pub encrypted: bool,
    pub compression: Compression,
    pub opts: &'a RestoreOptions,
    pub scope: &'a Scope,
    pub plan: &'a Plan,
    pub restorer: &'a Restorer,
}

impl Job<'_> {
    /// Archive file `rel`, to be read (and decrypted) on a feeder thread.
    pub fn file(&self, rel: &str) -> crate::storage::archive_files::FileRef {
        crate::storage::archive_files::FileRef {
            source: self.source.clone(),
            rel: rel.to_string(),
            encrypted: self.encrypted,
        }
    }
}

fn has_code(e: &CaughtError, code: PgSqlErrorCode) -> bool {
    matches!(e, CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) if r.sql_error_code() == code)
}

fn is_duplicate(e: &CaughtError) -> bool {
    use PgSqlErrorCode::*;
    [
        ERRCODE_DUPLICATE_OBJECT,
        ERRCODE_DUPLICATE_TABLE,
        ERRCODE_DUPLICATE_FUNCTION,
        ERRCODE_DUPLICATE_SCHEMA,
    ]
    .into_iter()
    .any(|c| has_code(e, c))
}

/// Which errors of a step are expected and how they are reported.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tolerate {
    Nothing,
    /// The object already exists: keep it (`skip`).
    Duplicates,
    /// A role the statement names does not exist in this cluster: a `warning`, as
    /// pg_restore does (grants).
    MissingRole,
}

/// What happened to an entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Its statements ran.
    Created,
    /// It already existed and was kept.
    Kept,
    Failed,
}

/// Runs the steps of a restore and collects their rows.
pub struct Runner {
    on_error: OnError,
    pub out: Vec<Row>,
}

impl Runner {
    pub fn new(on_error: OnError) -> Runner {
        Runner {
            on_error,
            out: Vec::new(),
        }
    }

    /// Run one step. With `Tolerate::Nothing` under `on_error => 'abort'` an error ends the
    /// restore; otherwise the step runs in a subtransaction and its failure becomes a row.
    /// Returns whether it succeeded (false: failed or kept as it was).
    pub fn run(
        &mut self,
        object: String,
        kind: &str,
        action: &str,
        tolerate: Tolerate,
        f: impl FnOnce() -> Result<Option<i64>>,
    ) -> Result<bool> {
        self.run_outcome(object, kind, action, tolerate, Exposure::Ddl, f)
            .map(|o| o == Some(true))
    }

    /// A step that touches rows or runs user code: its errors are redacted.
    pub fn run_data(
        &mut self,
        object: String,
        kind: &str,
        action: &str,
        f: impl FnOnce() -> Result<Option<i64>>,
    ) -> Result<bool> {
        self.run_outcome(object, kind, action, Tolerate::Nothing, Exposure::Data, f)
            .map(|o| o == Some(true))
    }

    /// Some(true) ran, Some(false) kept (already there), None failed (continue mode).
    fn run_outcome(
        &mut self,
        object: String,
        kind: &str,
        action: &str,
        tolerate: Tolerate,
        exposure: Exposure,
        f: impl FnOnce() -> Result<Option<i64>>,
    ) -> Result<Option<bool>> {
        let entry = current_step().and_then(|s| s.entry);
        set_current(Some(Step {
            kind: kind.to_string(),
            object: object.clone(),
            entry,
            exposure,
        }));
        let r = self.run_inner(object, kind, action, tolerate, exposure, f);
        if r.is_ok() {
            set_current(None);
        }
        r
    }

    fn run_inner(
        &mut self,
        object: String,
        kind: &str,
        action: &str,
        tolerate: Tolerate,
        exposure: Exposure,
        f: impl FnOnce() -> Result<Option<i64>>,
    ) -> Result<Option<bool>> {
        if tolerate == Tolerate::Nothing && self.on_error == OnError::Abort {
            let rows = f()?;
            self.out.push(row(object, kind, action, rows, "ok", None));
            return Ok(Some(true));
        }
        match subtransaction::run_result(f) {
            Ok(Ok(rows)) => {
                self.out.push(row(object, kind, action, rows, "ok", None));
                Ok(Some(true))
            }
            Ok(Err(e)) if self.on_error == OnError::Continue => {
                self.out.push(row(
                    object,
                    kind,
                    action,
                    None,
                    "failed",
                    Some(&format!("{e} (SQLSTATE {})", e.sqlstate())),
                ));
                Ok(None)
            }
            Ok(Err(e)) => Err(e),
            Err(c) if tolerate == Tolerate::Duplicates && is_duplicate(&c) => {
                self.out.push(row(
                    object,
                    kind,
                    "skip",
                    None,
                    "ok",
                    Some("already exists"),
                ));
                Ok(Some(false))
            }
            Err(c)
                if tolerate == Tolerate::MissingRole
                    && has_code(&c, PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT) =>
            {
                let text = redact::describe(&c, kind, &object, exposure);
                self.out
                    .push(row(object, kind, "skip", None, "warning", Some(&text)));
                Ok(Some(false))
            }
            Err(c) if self.on_error == OnError::Continue => {
                let text = redact::describe(&c, kind, &object, exposure);
                self.out
                    .push(row(object, kind, action, None, "failed", Some(&text)));
                Ok(None)
            }
            Err(c) => c.rethrow(),
        }
    }

    pub fn note(&mut self, r: Row) {
        self.out.push(r);
    }
}

pub fn sql_step(sql: String) -> impl FnOnce() -> Result<Option<i64>> {
    move || {
        Spi::run(&sql)?;
        Ok(None)
    }
}

fn relation_exists(quoted_name: &str) -> Result<bool> {
    Ok(Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[quoted_name.into()],
    )?
    .unwrap_or(false))
}

/// What to do with one entry.
enum Decision {
    /// Not this restore's business (no row).
    Quiet,
    /// Left out, with a row saying why.
    Skip {
        status: &'static str,
        detail: String,
    },
    Run {
        action: &'static str,
        tolerate: Tolerate,
    },
    /// The object exists and stays as it is (with its owner and grants).
    Keep,
}

/// Restore everything the job says: the walk over the TOC.
pub struct Walk<'j, 'a> {
    job: &'j Job<'a>,
    runner: Runner,
    outcomes: HashMap<u32, Outcome>,
    index: HashMap<u32, usize>,
}

impl<'j, 'a> Walk<'j, 'a> {
    pub fn new(job: &'j Job<'a>) -> Self {
        Walk {
            job,
            runner: Runner::new(job.opts.on_error),
            outcomes: HashMap::new(),
            index: toc::by_id(&job.manifest.toc),
        }
    }

    fn entry(&self, id: u32) -> Option<&'a TocEntry> {
        self.index.get(&id).map(|&i| &self.job.manifest.toc[i])
    }

    /// Foreign keys and other entries that need a relation neither restored nor present.
    fn dangling(&self, e: &TocEntry) -> Result<Option<String>> {
        if e.kind != EntryKind::ForeignKey {
            return Ok(None);
        }
        for d in &e.deps {
            let Some(dep) = self.entry(*d) else { continue };
            if !dep.kind.is_relation() || self.job.scope.entries.contains_key(d) {
                continue;
            }
            let schema = dep.schema.as_deref().unwrap_or_default();
            let name = quoted(self.job.scope.target_schema_of(schema), &dep.name);
            if !relation_exists(&name)? {
                return Ok(Some(format!(
                    "references {}, which is neither restored nor present",
                    quoted(schema, &dep.name)
                )));
            }
        }
        Ok(None)
    }

    fn decide(&self, e: &TocEntry, dry_run: bool) -> Result<Decision> {
        let opts = self.job.opts;
        let Some(why) = self.job.scope.why(e) else {
            return Ok(Decision::Quiet);
        };
        let pass = e.pass();
        let is_data = matches!(pass, Pass::Data | Pass::SequenceValues);
        if (opts.schema_only && is_data) || (opts.data_only && !is_data) {
            return Ok(Decision::Quiet);
        }
        // A table asked for: what `existing` says.
        if matches!(e.kind, EntryKind::Table | EntryKind::ForeignTable) && why == Why::Requested {
            return Ok(match self.job.plan.of_entry(e) {
                Some(t) if t.action.runs_ddl() => Decision::Run {
                    action: "create",
                    tolerate: Tolerate::Nothing,
                },
                _ => Decision::Quiet,
            });
        }
        if e.kind.is_relation() && why == Why::Dependency {
            let schema = e.schema.as_deref().unwrap_or_default();
            let name = quoted(self.job.scope.target_schema_of(schema), &e.name);
            return Ok(if relation_exists(&name)? {
                Decision::Skip {
                    status: "ok",
                    detail: "already exists".into(),
                }
            } else {
                Decision::Run {
                    action: "create",
                    tolerate: Tolerate::Nothing,
                }
            });
        }
        // The database's properties, default privileges and grants on system catalogs
        // (decorations of no object of the backup) are a superuser's to restore.
        let database_wide = matches!(e.kind, EntryKind::Database | EntryKind::DefaultPrivileges)
            || (e.kind.is_decoration() && e.belongs_to.is_none());
        if database_wide && !self.job.restorer.superuser {
            return Ok(Decision::Skip {
                status: "warning",
                detail: "only a superuser restores the database's properties, default privileges and grants on system catalogs".into(),
            });
        }
        if e.kind == EntryKind::Schema && !dry_run {
            // A schema that exists keeps its owner and grants, unless the caller could
            // change them itself (its owner's privileges): then they come from the backup.
            let owner = Spi::get_one_with_args::<pg_sys::Oid>(
                "SELECT (SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = $1)",
                &[e.name.clone().into()],
            )?;
            if let Some(o) = owner {
                if !self.job.restorer.acts_as(o) {
                    return Ok(Decision::Keep);
                }
            }
        }
        if let Some(why) = self.dangling(e)? {
            return Ok(Decision::Skip {
                status: "warning",
                detail: why,
            });
        }
        if let Some(b) = e.belongs_to.and_then(|b| self.entry(b)) {
            // What belongs to a table follows the table: kept tables keep their indexes,
            // constraints ...; a sequence value is set only where the rows were replaced.
            if let Some(t) = self
                .job
                .plan
                .of_entry(b)
                .filter(|_| matches!(b.kind, EntryKind::Table | EntryKind::ForeignTable))
            {
                let go = match e.kind {
                    EntryKind::SequenceSet => !matches!(t.action, Action::Skip | Action::Append),
                    EntryKind::TableData => t.action.loads_data(),
                    _ => t.action.runs_ddl(),
                };
                if !go {
                    return Ok(Decision::Quiet);
                }
            } else if !dry_run {
                // Anything else follows its object: not if the object was kept or failed.
                match self.outcomes.get(&b.id) {
                    Some(Outcome::Created) => {}
                    Some(Outcome::Failed) => {
                        return Ok(Decision::Skip {
                            status: "failed",
                            detail: format!("{} was not restored", b.describe()),
                        })
                    }
                    Some(Outcome::Kept) => return Ok(Decision::Quiet),
                    None if self.job.scope.why(b).is_none() => {}
                    None => return Ok(Decision::Quiet),
                }
            }
        }
        let tolerate = if e.section == toc::Section::PreData
            && !e.kind.is_decoration()
            && !matches!(e.kind, EntryKind::Table | EntryKind::ForeignTable)
        {
            // Types, functions, sequences, views ... that already exist are kept.
            Tolerate::Duplicates
        } else {
            Tolerate::Nothing
        };
        Ok(Decision::Run {
            action: "create",
            tolerate,
        })
    }

    /// A dry run: what would happen to each entry, changing nothing.
    pub fn plan_rows(mut self) -> Result<Vec<Row>> {
        let rows_of: HashMap<(String, String), u64> = self
            .job
            .manifest
            .files
            .iter()
            .filter(|f| f.kind.is_none())
            .map(|f| ((f.schema.clone(), f.table.clone()), f.rows))
            .chain(
                self.job
                    .manifest
                    .script_tables
                    .iter()
                    .filter(|b| b.kind.is_none())
                    .map(|b| ((b.schema.clone(), b.table.clone()), b.rows)),
            )
            .collect();
        let toc = &self.job.manifest.toc;
        for pass in PASSES {
            for e in toc.iter().filter(|e| e.pass() == pass) {
                let object = self.object(e);
                let r = match self.decide(e, true)? {
                    Decision::Quiet if e.kind == EntryKind::Table => {
                        match self
                            .job
                            .plan
                            .of_entry(e)
                            .filter(|_| !self.job.opts.data_only)
                        {
                            Some(t) => row(
                                object,
                                e.kind.as_str(),
                                t.action.as_str(),
                                None,
                                "planned",
                                None,
                            ),
                            None => continue,
                        }
                    }
                    Decision::Quiet => continue,
                    Decision::Keep => row(
                        object,
                        e.kind.as_str(),
                        "skip",
                        None,
                        "planned",
                        Some("already exists"),
                    ),
                    Decision::Skip { status, detail } => {
                        let status = if status == "ok" { "planned" } else { status };
                        row(object, e.kind.as_str(), "skip", None, status, Some(&detail))
                    }
                    Decision::Run { action, .. } => {
                        let (action, rows) = match e.kind {
                            EntryKind::TableData => {
                                let planned = e
                                    .relation()
                                    .and_then(|(s, n)| self.job.plan.of(&s, &n))
                                    .filter(|t| t.action.loads_data());
                                match planned {
                                    Some(_) => (
                                        "load",
                                        e.relation()
                                            .and_then(|r| rows_of.get(&r))
                                            .map(|r| *r as i64),
                                    ),
                                    None => ("skip", None),
                                }
                            }
                            EntryKind::Table => (
                                self.job
                                    .plan
                                    .of_entry(e)
                                    .map(|t| t.action.as_str())
                                    .unwrap_or(action),
                                None,
                            ),
                            _ => (action, None),
                        };
                        row(object, e.kind.as_str(), action, rows, "planned", None)
                    }
                };
                self.runner.note(r);
            }
        }
        Ok(self.runner.out)
    }

    /// How result rows name an entry: relations under their restored name.
    fn object(&self, e: &TocEntry) -> String {
        match (&e.schema, e.kind.is_decoration()) {
            (Some(s), false) => format!("{}.{}", self.job.scope.target_schema_of(s), e.name),
            _ => e.object(),
        }
    }

    /// The oid of a relation of the backup where this restore puts it.
    fn relation_oid(&self, e: &TocEntry) -> Result<Option<pg_sys::Oid>> {
        let schema = e.schema.as_deref().unwrap_or_default();
        table_oid(self.job.scope.target_schema_of(schema), &e.name)
    }

    /// For an entry whose statement runs its table's code (CHECK and foreign key
    /// validation, partition attachment, rules, REFRESH): the role to run it as (the
    /// relation's owner now, or the domain's for a domain CHECK; the caller when the object
    /// cannot be found) and the schemas it needs USAGE on. None: runs as the extension
    /// owner (DDL that evaluates nothing; index builds switch to the table's owner
    /// themselves).
    fn code_owner(&self, e: &TocEntry) -> Result<Option<(pg_sys::Oid, Vec<String>)>> {
        let runs_code = matches!(
            e.kind,
            EntryKind::CheckConstraint
                | EntryKind::DomainConstraint
                | EntryKind::ForeignKey
                | EntryKind::TableAttach
                | EntryKind::Rule
                | EntryKind::MaterializedViewRefresh
        );
        if !runs_code {
            return Ok(None);
        }
        let target = e.belongs_to.and_then(|b| self.entry(b));
        let role = match target {
            Some(t) if t.kind == EntryKind::Domain => Spi::get_one_with_args::<pg_sys::Oid>(
                "SELECT (SELECT typowner FROM pg_catalog.pg_type WHERE oid = pg_catalog.to_regtype($1))",
                &[quoted(t.schema.as_deref().unwrap_or_default(), &t.name).into()],
            )?,
            // A partition is attached by its parent's owner.
            Some(t) if e.kind == EntryKind::TableAttach => match e
                .deps
                .iter()
                .filter_map(|d| self.entry(*d))
                .find(|d| d.id != t.id && d.kind.is_relation())
            {
                Some(parent) => match self.relation_oid(parent)? {
                    Some(oid) => Some(relation_owner(oid)?),
                    None => None,
                },
                None => None,
            },
            Some(t) if t.kind.is_relation() => match self.relation_oid(t)? {
                Some(oid) => Some(relation_owner(oid)?),
                None => None,
            },
            _ => None,
        };
        let mut schemas: Vec<String> = Vec::new();
        for d in e
            .deps
            .iter()
            .filter_map(|d| self.entry(*d))
            .chain(target)
            .filter(|d| d.kind.is_relation() || d.kind == EntryKind::Domain)
        {
            let schema = d.schema.as_deref().unwrap_or_default();
            let s = if d.kind.is_relation() {
                self.job.scope.target_schema_of(schema).to_string()
            } else {
                schema.to_string()
            };
            if !schemas.contains(&s) {
                schemas.push(s);
            }
        }
        Ok(Some((role.unwrap_or(self.job.restorer.oid), schemas)))
    }

    /// Run one entry's statements; then, at once, its owner (a role this cluster lacks is
    /// replaced by the caller, with a warning row) and its grants: a SECURITY DEFINER function
    /// or a view never belongs to the extension owner while rows load.
    fn run_entry(&mut self, e: &'a TocEntry, action: &str, tolerate: Tolerate) -> Result<()> {
        let mut sql = self.job.scope.sql(&e.sql);
        let object = self.object(e);
        if e.kind == EntryKind::Owner {
            // A format-1 owner entry: the owner the caller may give (a missing role: the
            // caller, with a warning row).
            if let Some(stmt) = parse_owner_statement(&e.sql) {
                let owner = self.job.restorer.owner_for(&object, &stmt.role)?;
                sql = self.job.scope.sql(&format!(
                    "ALTER {} {} OWNER TO {};",
                    stmt.objtype,
                    stmt.ident,
                    spi::quote_identifier(&owner.name)
                ));
                if let Some(note) = owner.note() {
                    self.runner.note(row(
                        object.clone(),
                        "owner",
                        "substitute",
                        None,
                        "warning",
                        Some(&note),
                    ));
                }
            }
        }
        if e.kind == EntryKind::SequenceOwnedBy {
            sql = format!("{}{sql}", self.same_owner_as_table(e)?);
        }
        set_current(Some(Step {
            kind: e.kind.as_str().to_string(),
            object: object.clone(),
            entry: Some(e.describe()),
            exposure: Exposure::Ddl,
        }));
        let outcome = match self.code_owner(e)? {
            Some((role, schemas)) => self.runner.run_outcome(
                object.clone(),
                e.kind.as_str(),
                action,
                tolerate,
                Exposure::Data,
                move || {
                    let needs: Vec<(&str, SchemaPrivilege)> = schemas
                        .iter()
                        .map(|s| (s.as_str(), SchemaPrivilege::Usage))
                        .collect();
                    run_as_in(role, &needs, || Ok(Spi::run(&sql)?))?;
                    Ok(None)
                },
            )?,
            None => self.runner.run_outcome(
                object.clone(),
                e.kind.as_str(),
                action,
                tolerate,
                Exposure::Ddl,
                sql_step(sql),
            )?,
        };
        self.outcomes.insert(
            e.id,
            match outcome {
                Some(true) => Outcome::Created,
                Some(false) => Outcome::Kept,
                None => Outcome::Failed,
            },
        );
        if outcome == Some(true) {
            self.own(e, &object)?;
        }
        set_current(None);
        Ok(())
    }

    /// `ALTER SEQUENCE ... OWNED BY` wants one owner for the sequence and the table: a
    /// sequence this restore created takes its table's owner first.
    fn same_owner_as_table(&self, e: &TocEntry) -> Result<String> {
        let Some(seq) = e.belongs_to.and_then(|b| self.entry(b)) else {
            return Ok(String::new());
        };
        if self.outcomes.get(&seq.id) != Some(&Outcome::Created) {
            return Ok(String::new());
        }
        let Some(table) = e
            .deps
            .iter()
            .filter_map(|d| self.entry(*d))
            .find(|d| matches!(d.kind, EntryKind::Table | EntryKind::ForeignTable))
        else {
            return Ok(String::new());
        };
        let Some(oid) = self.relation_oid(table)? else {
            return Ok(String::new());
        };
        let owner = Spi::get_one_with_args::<String>(
            "SELECT (SELECT pg_catalog.pg_get_userbyid(relowner)::pg_catalog.text FROM pg_catalog.pg_class WHERE oid = $1)",
            &[oid.into()],
        )?
        .unwrap_or_default();
        let schema = seq.schema.as_deref().unwrap_or_default();
        Ok(format!(
            "ALTER SEQUENCE {} OWNER TO {};\n",
            quoted(self.job.scope.target_schema_of(schema), &seq.name),
            spi::quote_identifier(&owner)
        ))
    }

    /// The owner and grants of entry `e`, just created.
    fn own(&mut self, e: &'a TocEntry, object: &str) -> Result<()> {
        if let (Some(owner_sql), Some(role)) = (&e.owner_sql, &e.owner) {
            let owner = self.job.restorer.owner_for(object, role)?;
            let sql = match parse_owner_statement(owner_sql) {
                Some(stmt) => format!(
                    "ALTER {} {} OWNER TO {};",
                    stmt.objtype,
                    stmt.ident,
                    spi::quote_identifier(&owner.name)
                ),
                None => owner_sql.clone(),
            };
            self.runner.run(
                object.to_string(),
                "owner",
                "create",
                Tolerate::Nothing,
                sql_step(self.job.scope.sql(&sql)),
            )?;
            if let Some(note) = owner.note() {
                self.runner.note(row(
                    object.to_string(),
                    "owner",
                    "substitute",
                    None,
                    "warning",
                    Some(&note),
                ));
            }
        }
        let grants: Vec<&'a TocEntry> = self
            .job
            .manifest
            .toc
            .iter()
            .filter(|g| g.kind == EntryKind::Acl && g.belongs_to == Some(e.id))
            .filter(|g| self.job.scope.why(g).is_some() && !self.job.opts.data_only)
            .collect();
        for g in grants {
            let object = self.object(g);
            let outcome = self.runner.run_outcome(
                object,
                g.kind.as_str(),
                "create",
                Tolerate::MissingRole,
                Exposure::Ddl,
                sql_step(self.job.scope.sql(&g.sql)),
            )?;
            self.outcomes.insert(
                g.id,
                if outcome.is_some() {
                    Outcome::Created
                } else {
                    Outcome::Failed
                },
            );
        }
        Ok(())
    }

    fn run_pass(&mut self, pass: Pass) -> Result<()> {
        let toc = &self.job.manifest.toc;
        for e in toc.iter().filter(|e| e.pass() == pass) {
            pgrx::check_for_interrupts!();
            if self.outcomes.contains_key(&e.id) {
                // A grant applied with its object.
                continue;
            }
            match self.decide(e, false)? {
                Decision::Quiet => {}
                Decision::Keep => {
                    self.outcomes.insert(e.id, Outcome::Kept);
                    let object = self.object(e);
                    self.runner.note(row(
                        object,
                        e.kind.as_str(),
                        "skip",
                        None,
                        "ok",
                        Some("already exists"),
                    ));
                }
                Decision::Skip { status, detail } => {
                    if status == "failed" {
                        self.outcomes.insert(e.id, Outcome::Failed);
                    }
                    let object = self.object(e);
                    self.runner.note(row(
                        object,
                        e.kind.as_str(),
                        "skip",
                        None,
                        status,
                        Some(&detail),
                    ))
                }
                Decision::Run { action, tolerate } => {
                    if e.sql.is_empty() {
                        self.outcomes.insert(e.id, Outcome::Created);
                        continue;
                    }
                    // Grants to roles this cluster lacks are reported as warnings.
                    let tolerate = if matches!(e.kind, EntryKind::Acl | EntryKind::Owner) {
                        Tolerate::MissingRole
                    } else {
                        tolerate
                    };
                    self.run_entry(e, action, tolerate)?;
                }
            }
        }
        Ok(())
    }

    /// The whole restore.
    pub fn apply(mut self) -> Result<Vec<Row>> {
        let job = self.job;
        // Function bodies may name tables that come later, as in pg_restore.
        security::set_for_call(c"check_function_bodies", c"off");
        // "schema ... already exists, skipping" and the like: the result rows say what happened.
        security::set_for_call(c"client_min_messages", c"warning");
        // Every definition in the archive is schema-qualified.
        security::set_for_call(c"search_path", c"");
        super::tuning::raise_maintenance_settings()?;
        if let Some((_, to)) = &job.scope.target {
            // Owned by the role that called restore, like everything it creates without an
            // owner of its own.
            let sql = format!(
                "CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}",
                spi::quote_identifier(to),
                spi::quote_identifier(&job.restorer.name)
            );
            self.runner.run(
                to.clone(),
                "schema",
                "create",
                Tolerate::Nothing,
                sql_step(sql),
            )?;
        }
        self.drop_replaced()?;
        for pass in PASSES {
            if pass == Pass::Data {
                if !job.opts.schema_only {
                    data::load_data(job, &mut self.runner)?;
                }
                continue;
            }
            self.run_pass(pass)?;
        }
        Ok(self.runner.out)
    }

    /// existing => 'drop': one DROP for all, without CASCADE: partitions go with their
    /// parent, foreign keys among the dropped tables go with them, and anything outside the
    /// restore that depends on them stops the restore (nothing else is dropped behind the
    /// user's back). Views of the restore built on them are dropped first (it recreates
    /// them).
    fn drop_replaced(&mut self) -> Result<()> {
        let job = self.job;
        let drop: Vec<String> = job
            .plan
            .tables
            .iter()
            .filter(|t| t.action == Action::Drop)
            .map(|t| quoted(&t.schema, &t.name))
            .collect();
        if drop.is_empty() {
            return Ok(());
        }
        for (kind, what) in [
            (EntryKind::MaterializedView, "MATERIALIZED VIEW"),
            (EntryKind::View, "VIEW"),
        ] {
            let views: Vec<String> = job
                .manifest
                .toc
                .iter()
                .filter(|e| e.kind == kind && job.scope.why(e) == Some(Why::Requested))
                .map(|e| {
                    quoted(
                        job.scope
                            .target_schema_of(e.schema.as_deref().unwrap_or_default()),
                        &e.name,
                    )
                })
                .collect();
            if !views.is_empty() {
                let sql = format!("DROP {what} IF EXISTS {}", views.join(", "));
                self.runner.run(
                    views.join(", "),
                    kind.as_str(),
                    "drop",
                    Tolerate::Nothing,
                    sql_step(sql),
                )?;
            }
        }
        let sql = format!("DROP TABLE IF EXISTS {}", drop.join(", "));
        self.runner.run(
            drop.join(", "),
            "table",
            "drop",
            Tolerate::Nothing,
            sql_step(sql),
        )?;
        Ok(())
    }
}
