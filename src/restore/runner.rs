//! The restore runner: walks the TOC pass by pass (pre-data, data, post-data, grants, what
//! must follow the grants, sequence values), decides for each entry of the restore what to do
//! with it (create, keep what exists, skip with its table), runs it, and names it in every
//! error.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use super::background::Batches;
use super::data::{self, table_oid};
use super::plan::{self, Action, Existing, OnError, PlannedTable};
use super::scope::{quoted, Scope, Why};
use super::RestoreOptions;
use crate::archive::compression::Compression;
use crate::archive::manifest::Manifest;
use crate::archive::toc::{self, EntryKind, Pass, TocEntry, PASSES};
use crate::error::Result;
use crate::security;
use crate::security::owner::{relation_owner, role_oid, run_as_in, SchemaPrivilege};
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

thread_local! {
    /// The entry being restored, for errors that leave the restore (on_error => 'abort'),
    /// and whether its errors may carry row values.
    static CURRENT: RefCell<Option<(String, Exposure)>> = const { RefCell::new(None) };
}

/// The entry the restore was working on when it stopped, as `describe()` names it.
pub fn current_entry() -> Option<String> {
    CURRENT.with(|c| c.borrow().as_ref().map(|(w, _)| w.clone()))
}

/// For redacting the error that stopped the restore: (kind, object, exposure) as
/// `security::redact::describe` takes them. Outside any entry: the restore as a whole, as
/// data (the safe side).
pub fn current_step() -> (String, String, Exposure) {
    CURRENT.with(|c| match c.borrow().as_ref() {
        Some((w, x)) => (String::new(), w.clone(), *x),
        None => ("restore".into(), "data".into(), Exposure::Data),
    })
}

pub fn set_current(what: Option<(String, Exposure)>) {
    CURRENT.with(|c| *c.borrow_mut() = what);
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

    /// The plan the leader of restore(jobs => N) made, in a job worker (planned again now,
    /// the tables it created would count as existing).
    pub fn from_tables(m: &Manifest, scope: &Scope, tables: Vec<PlannedTable>) -> Plan {
        let by_backup_name = scope
            .tables(m)
            .into_iter()
            .zip(0..tables.len())
            .map(|((schema, name), i)| (quoted(&schema, &name), i))
            .collect();
        Plan {
            tables,
            by_backup_name,
        }
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
    /// restore(atomic => false): the worker's commits.
    pub batches: Option<&'a Batches>,
    /// Who called restore: the owner of what has no owner (issue 9).
    pub restorer: &'a Restorer,
    /// Which tablespace each entry is created in.
    pub placement: &'a super::tablespaces::Placement,
}

impl Job<'_> {
    /// The role user code on table `oid` runs with: its owner (or, for a caller without its
    /// owner's privileges that appends to it, the caller: `Restorer::code_role_on`); never
    /// the extension owner (the role running restore) on behalf of another role. A table
    /// this restore created that is still the extension owner's came from an archive that
    /// did not give it its owner at once: it is handed to the owner the backup names (or the
    /// caller when that role is missing) first. A table that existed before the restore
    /// keeps its owner, whoever owns it.
    pub fn code_owner(
        &self,
        oid: pg_sys::Oid,
        backup_schema: &str,
        name: &str,
    ) -> Result<pg_sys::Oid> {
        let owner = relation_owner(oid)?;
        let created_here = self
            .plan
            .of(backup_schema, name)
            .is_none_or(|t| t.action.runs_ddl());
        if owner != unsafe { pg_sys::GetUserId() } || !created_here {
            return Ok(self.restorer.code_role_on(owner));
        }
        let named = self
            .manifest
            .toc
            .iter()
            .filter(|e| {
                e.kind == EntryKind::Owner
                    && e.schema.as_deref() == Some(backup_schema)
                    && e.table.as_deref() == Some(name)
            })
            .find_map(|e| parse_owner_statement(&e.sql))
            .map(|st| st.role);
        let role = match named {
            Some(r) => role_oid(&r)?.unwrap_or(self.restorer.oid),
            None if self.restorer.superuser => owner,
            None => self.restorer.oid,
        };
        if role != owner {
            // Its owner from now on (the archive's owner statement later changes nothing):
            // the code runs as the role that owns the table, as PostgreSQL requires of
            // ALTER TABLE.
            let sql = crate::query::one::<crate::text::Text>(
                "SELECT pg_catalog.format('ALTER TABLE %s OWNER TO %I', $1::pg_catalog.regclass, pg_catalog.pg_get_userbyid($2))",
                &[oid.into(), role.into()],
            )?
            .unwrap_or_default()
            .0;
            crate::text::run(&sql)?;
        }
        Ok(role)
    }
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

/// A caught error as a result row's detail: message and SQLSTATE.
pub fn describe_error(e: &CaughtError) -> String {
    match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => format!(
            "{} (SQLSTATE {})",
            crate::error::report_text(r.message()),
            sqlstate_of(r.sql_error_code())
        ),
        other => subtransaction::message(other),
    }
}

/// The five characters of a SQLSTATE.
pub fn sqlstate_of(code: PgSqlErrorCode) -> String {
    let mut v = code as i32;
    let mut s = String::with_capacity(5);
    for _ in 0..5 {
        s.push((((v & 0x3f) as u8) + b'0') as char);
        v >>= 6;
    }
    s
}

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

/// Runs the steps of a restore and collects their rows.
pub struct Runner<'a> {
    on_error: OnError,
    pub out: Vec<Row>,
    /// restore(atomic => false): commits after every so many steps.
    batches: Option<&'a Batches>,
}

impl<'a> Runner<'a> {
    pub fn new(on_error: OnError, batches: Option<&'a Batches>) -> Runner<'a> {
        Runner {
            on_error,
            out: Vec::new(),
            batches,
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

    /// `run` for a step that loads rows or runs user code: its errors are redacted (issue 9).
    pub fn run_data(
        &mut self,
        object: String,
        kind: &str,
        action: &str,
        f: impl FnOnce() -> Result<Option<i64>>,
    ) -> Result<bool> {
        set_current(Some((format!("{kind} {object}"), Exposure::Data)));
        let r = self
            .run_outcome(object, kind, action, Tolerate::Nothing, Exposure::Data, f)
            .map(|o| o == Some(true));
        if r.is_ok() {
            set_current(None);
        }
        r
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
        let outcome = self.run_step(object, kind, action, tolerate, exposure, f)?;
        if let Some(b) = self.batches {
            b.step_done(&self.out)?;
        }
        Ok(outcome)
    }

    fn run_step(
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
        crate::text::run(&sql)?;
        Ok(None)
    }
}

fn relation_exists(quoted_name: &str) -> Result<bool> {
    Ok(crate::query::one::<bool>(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[crate::text::arg(quoted_name)],
    )?
    .unwrap_or(false))
}

/// What to do with one entry.
pub enum Decision {
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
}

/// Restore everything the job says: the walk over the TOC.
pub struct Walk<'j, 'a> {
    pub(super) job: &'j Job<'a>,
    pub(super) runner: Runner<'a>,
    pub(super) outcomes: HashMap<u32, Outcome>,
    index: HashMap<u32, usize>,
    /// Extensions the database had before this restore: their configuration rows are kept
    /// (see data::config_decision).
    pub(super) preexisting: HashSet<String>,
}

impl<'j, 'a> Walk<'j, 'a> {
    pub fn new(job: &'j Job<'a>) -> Result<Self> {
        // Read-only (a dry run plans on a hot standby).
        let preexisting = crate::query::one::<Vec<crate::text::Text>>(
            "SELECT COALESCE(pg_catalog.array_agg(extname::pg_catalog.text), '{}') FROM pg_catalog.pg_extension",
            &[],
        )?
        .unwrap_or_default()
        .into_iter()
        .map(String::from)
        .collect();
        Ok(Walk {
            job,
            runner: Runner::new(job.opts.on_error, job.batches),
            outcomes: HashMap::new(),
            index: toc::by_id(&job.manifest.toc),
            preexisting,
        })
    }

    pub(super) fn entry(&self, id: u32) -> Option<&'a TocEntry> {
        self.index.get(&id).map(|&i| &self.job.manifest.toc[i])
    }

    /// A grant entry of a format-2 archive that decorates no object of the backup: the
    /// database's own grants and grants on system objects (pg_catalog, built-in languages).
    /// The caller owns neither, so only a superuser applies them: run by the extension owner
    /// for anyone else they would grant what the caller could not (say SELECT on
    /// pg_catalog.pg_authid, or CREATE on the database restored into).
    fn unattached_grant(&self, e: &TocEntry) -> bool {
        e.kind == EntryKind::Acl && e.belongs_to.is_none() && self.job.manifest.format_version >= 2
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

    pub(super) fn decide(&self, e: &TocEntry, dry_run: bool) -> Result<Decision> {
        let opts = self.job.opts;
        let Some(why) = self.job.scope.why(e) else {
            return Ok(Decision::Quiet);
        };
        let pass = e.pass();
        let is_data = matches!(pass, Pass::Data | Pass::SequenceValues);
        if (opts.schema_only && is_data) || (opts.data_only && !is_data) {
            return Ok(Decision::Quiet);
        }
        if !self.job.restorer.superuser && (superuser_only(e) || self.unattached_grant(e)) {
            // These act beyond objects the caller could own (every session's DDL, the whole
            // database, the system catalogs): the extension owner must not apply them for an
            // operator.
            return Ok(Decision::Skip {
                status: "warning",
                detail: format!(
                    "only a superuser restores {}; restore it as a superuser or recreate it by hand",
                    e.describe()
                ),
            });
        }
        // A schema that already exists is "created" again (CREATE SCHEMA IF NOT EXISTS) and
        // keeps its owner unless the caller acts as it; its grants, comment and labels are
        // that owner's business too: an operator with CREATE on another role's schema must
        // not rewrite its grants through a backup that says otherwise.
        if e.kind.is_decoration() && !self.job.restorer.superuser {
            if let Some(b) = e
                .belongs_to
                .and_then(|b| self.entry(b))
                .filter(|b| b.kind == EntryKind::Schema)
            {
                let owner = crate::query::one::<pg_sys::Oid>(
                    "SELECT (SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = $1)",
                    &[b.name.clone().into()],
                )?;
                if owner.is_some_and(|o| !self.job.restorer.acts_as(o)) {
                    // Kept as it is, like any object the restore keeps.
                    return Ok(Decision::Skip {
                        status: "ok",
                        detail: format!(
                            "schema {} exists and belongs to another role: its {} is left as it is",
                            b.name,
                            e.kind.as_str()
                        ),
                    });
                }
            }
        }
        if !self.job.restorer.superuser
            && e.kind == EntryKind::Acl
            && e.belongs_to
                .and_then(|b| self.entry(b))
                .is_some_and(|b| b.kind == EntryKind::Extension)
        {
            // Grants on an extension's own objects (changed since CREATE EXTENSION): they
            // belong to the extension's owner, a superuser.
            return Ok(Decision::Skip {
                status: "warning",
                detail: format!(
                    "only a superuser restores {}; restore it as a superuser or grant it by hand",
                    e.describe()
                ),
            });
        }
        if !self.job.restorer.superuser
            && e.kind.is_decoration()
            && e.belongs_to
                .and_then(|b| self.entry(b))
                .is_some_and(superuser_only)
        {
            // Goes with its object, which is reported.
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
        if let Some(why) = self.dangling(e)? {
            return Ok(Decision::Skip {
                status: "warning",
                detail: why,
            });
        }
        if e.kind == EntryKind::ExtensionData && !e.sql.is_empty() {
            // An extension's configuration sequence: set with its rows; after rows appended
            // to a configuration the database had, only ever moved forward.
            let ext = e
                .belongs_to
                .and_then(|b| self.entry(b))
                .filter(|b| b.kind == EntryKind::Extension);
            return Ok(
                match data::config_decision(ext, &self.preexisting, opts.existing) {
                    data::ConfigLoad::Load { append: false } => Decision::Run {
                        action: "create",
                        tolerate: Tolerate::Nothing,
                    },
                    data::ConfigLoad::Load { append: true } => Decision::Run {
                        action: "advance",
                        tolerate: Tolerate::Nothing,
                    },
                    data::ConfigLoad::Keep(_) => Decision::Quiet,
                },
            );
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
        // Rows of extension configuration tables.
        let config_rows: HashMap<(String, String), u64> = self
            .job
            .manifest
            .files
            .iter()
            .filter(|f| f.is_extension_data())
            .map(|f| ((f.schema.clone(), f.table.clone()), f.rows))
            .chain(
                self.job
                    .manifest
                    .script_tables
                    .iter()
                    .filter(|b| b.kind.as_deref() == Some(crate::archive::manifest::EXTENSION_DATA))
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
                    Decision::Skip { status, detail } => {
                        let status = if status == "ok" { "planned" } else { status };
                        row(object, e.kind.as_str(), "skip", None, status, Some(&detail))
                    }
                    Decision::Run { .. }
                        if e.kind == EntryKind::ExtensionData && e.sql.is_empty() =>
                    {
                        let (schema, name) = (e.schema.clone().unwrap_or_default(), e.name.clone());
                        let ext = data::config_entries(self.job, &schema, &name).and_then(|x| x.1);
                        match data::config_decision(ext, &self.preexisting, self.job.opts.existing)
                        {
                            data::ConfigLoad::Load { append } => row(
                                object,
                                e.kind.as_str(),
                                if append { "append" } else { "load" },
                                config_rows.get(&(schema, name)).map(|r| *r as i64),
                                "planned",
                                None,
                            ),
                            data::ConfigLoad::Keep(why) => {
                                row(object, e.kind.as_str(), "skip", None, "warning", Some(&why))
                            }
                        }
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
    pub(super) fn object(&self, e: &TocEntry) -> String {
        match (&e.schema, e.kind.is_decoration()) {
            (Some(s), false) => format!("{}.{}", self.job.scope.target_schema_of(s), e.name),
            _ => e.object(),
        }
    }

    /// Run one entry's statements, then give the object its owner (issue 9): the backup's
    /// owner, or the role that called restore when that role does not exist here (never the
    /// extension owner). Entries that evaluate user code run with the rights of the owner of
    /// the relation they work on (`code_role`).
    pub(super) fn run_entry(
        &mut self,
        e: &'a TocEntry,
        action: &str,
        tolerate: Tolerate,
    ) -> Result<()> {
        let body = self.job.scope.sql(&e.sql);
        let object = self.object(e);
        let restorer = self.job.restorer;
        // (owner statement as in the backup, the backup's owner)
        let owner = match (&e.owner_sql, &e.owner) {
            (Some(sql), Some(role)) => Some((self.job.scope.sql(sql), role.clone())),
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
                && !e.sql.contains(" PARTITION OF ")
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
        let note: RefCell<Option<String>> = RefCell::new(None);
        let what = object.clone();
        let step = || -> Result<Option<i64>> {
            if action == "advance" && e.kind == EntryKind::ExtensionData {
                advance_sequence(
                    &quoted(e.schema.as_deref().unwrap_or_default(), &e.name),
                    &body,
                )?;
                return Ok(None);
            }
            if let Some(ts) = tablespace {
                if !restorer.superuser {
                    let role = match (&owner, placement_role) {
                        (Some((_, role)), _) => restorer.owner_for(&what, role)?.oid,
                        (None, Some(r)) => r?,
                        (None, None) => restorer.oid,
                    };
                    super::tablespaces::check_create(role, ts, &what)?;
                }
                placement.select(Some(ts))?;
            }
            if !body.is_empty() {
                match &code {
                    Some((role, schemas)) => {
                        let mut needs: Vec<(&str, SchemaPrivilege)> = schemas
                            .iter()
                            .map(|s| (s.as_str(), SchemaPrivilege::Usage))
                            .collect();
                        if created_as_owner(e.kind) {
                            // A table (a partition: by its parent's owner) is created in its
                            // schema.
                            needs.extend(
                                schemas
                                    .iter()
                                    .map(|s| (s.as_str(), SchemaPrivilege::Create)),
                            );
                        }
                        run_as_in(*role, &needs, || Ok(crate::text::run(&body)?))?;
                    }
                    None if grantors => {
                        *grant_note.borrow_mut() =
                            grant_as_grantors(&body, restorer, acl_schema.as_deref())?;
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
                crate::text::run(&sql)?;
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
        self.outcomes.insert(
            e.id,
            match outcome {
                Some(true) => Outcome::Created,
                Some(false) => Outcome::Kept,
                None => Outcome::Failed,
            },
        );
        if let (Some(n), Some(true)) = (grant_note.into_inner(), outcome) {
            // The entry's own row says which grants lost their grantor, and why.
            if let Some(r) = self
                .runner
                .out
                .iter_mut()
                .rev()
                .find(|r| r.0 == object && r.1 == e.kind.as_str())
            {
                r.4 = "warning".into();
                r.5 = Some(n);
            }
        }
        if let (Some(n), Some(true)) = (note.into_inner(), outcome) {
            self.runner.note(row(
                object,
                "owner",
                "substitute",
                None,
                "warning",
                Some(&n),
            ));
        }
        Ok(())
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
        if e.sql.contains("GENERATED ALWAYS AS (") || e.sql.contains(" PARTITION BY ") {
            return true;
        }
        e.deps.iter().filter_map(|d| self.entry(*d)).any(|d| {
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
            EntryKind::Constraint if builds_index_only(&e.sql) => return Ok(None),
            EntryKind::Constraint
            | EntryKind::CheckConstraint
            | EntryKind::ForeignKey
            | EntryKind::MaterializedViewRefresh
            | EntryKind::TableAttach => relation_of(e)?,
            EntryKind::Other if e.table.is_some() => relation_of(e)?,
            // A trigger is created by its table's owner for a caller that is not a superuser:
            // PostgreSQL checks EXECUTE on its function only then, never when it fires.
            EntryKind::Trigger if !restorer.superuser => relation_of(e)?,
            EntryKind::Table if e.sql.contains(" PARTITION OF ") => {
                match e.belongs_to.and_then(|b| self.entry(b)) {
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
                if let Some(dep) = self.entry(*d).filter(|d| d.kind.is_relation()) {
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

    pub(super) fn run_pass(&mut self, pass: Pass) -> Result<()> {
        let toc = &self.job.manifest.toc;
        for e in toc.iter().filter(|e| e.pass() == pass) {
            pgrx::check_for_interrupts!();
            if let Some((action, tolerate)) = self.settle(e)? {
                self.run_entry(e, action, tolerate)?;
            }
        }
        Ok(())
    }

    /// Decide about an entry: what it needs run (action, tolerate), or None when the decision
    /// settled it (a row noted, or nothing to do).
    pub(super) fn settle(&mut self, e: &TocEntry) -> Result<Option<(&'static str, Tolerate)>> {
        match self.decide(e, false)? {
            Decision::Quiet => Ok(None),
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
                ));
                Ok(None)
            }
            Decision::Run { action, tolerate } => {
                if e.sql.is_empty() {
                    self.outcomes.insert(e.id, Outcome::Created);
                    return Ok(None);
                }
                // Grants to roles this cluster lacks are reported as warnings.
                let tolerate = if matches!(e.kind, EntryKind::Acl | EntryKind::Owner) {
                    Tolerate::MissingRole
                } else {
                    tolerate
                };
                Ok(Some((action, tolerate)))
            }
        }
    }

    /// The whole restore.
    pub fn apply(mut self) -> Result<Vec<Row>> {
        let job = self.job;
        restore_settings(job)?;
        if let Some((_, to)) = &job.scope.target {
            // Owned by the role that called restore, like everything without an owner of
            // its own in the backup (issue 9).
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
        // restore(jobs => N): rows and post-data over N workers (restore/parallel.rs).
        let parallel = job.opts.jobs > 1 && job.batches.is_some();
        for pass in PASSES {
            if parallel && pass == Pass::Data {
                super::parallel::data_and_post_data(&mut self)?;
                continue;
            }
            if parallel && pass == Pass::PostData {
                continue;
            }
            if pass == Pass::Data {
                if !job.opts.schema_only {
                    data::load_data(job, &mut self.runner, &self.preexisting)?;
                }
                continue;
            }
            self.run_pass(pass)?;
        }
        // Last, after the backup's own sequence values (issue 10).
        if !job.opts.schema_only {
            super::sequences::advance(job, &mut self.runner)?;
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

/// The settings every restore runs with (also each worker of restore(jobs => N)).
pub fn restore_settings(job: &Job) -> Result<()> {
    // Function bodies may name tables that come later, as in pg_restore.
    security::set_for_call(c"check_function_bodies", c"off");
    // "schema ... already exists, skipping" and the like: the result rows say what happened.
    security::set_for_call(c"client_min_messages", c"warning");
    // Every definition in the archive is schema-qualified. pg_temp is named last: left
    // out, the caller's temporary tables and types would be searched before pg_catalog.
    security::set_for_call(c"search_path", c"pg_catalog, pg_temp");
    // Literals and dates in the archive are read as they were written, whatever the
    // caller's session says (a backslash in a string must never end it early).
    security::pin_literal_settings();
    // Relations go where the backup had them (entry by entry), never where the calling
    // session's default_tablespace points.
    job.placement.select(None)?;
    // Tables without an access method of their own in the backup are heap tables (the
    // collector writes USING for the others), as pg_restore's per-entry setting says.
    security::set_for_call(c"default_table_access_method", c"heap");
    super::tuning::raise_maintenance_settings()
}

/// Run an ACL entry whose grants have grantors other than the owner (archive/acl.rs): each
/// such part as its grantor, so that PostgreSQL records the same grantor as in the backup,
/// when the caller may act as that role (a superuser, or a caller with that role's
/// privileges); otherwise, or if the grant fails as that role, as the extension owner, which
/// PostgreSQL records as a grant by the object's owner. Never with more rights than the
/// caller has: the grantor's own rights, in a security-restricted operation, with USAGE on
/// the object's schema for that statement only (`run_as_in`). Returns what lost its grantor.
fn grant_as_grantors(
    body: &str,
    restorer: &Restorer,
    schema: Option<&str>,
) -> Result<Option<String>> {
    let mut lost: Vec<String> = Vec::new();
    for (grantor, sql) in crate::archive::acl::segments(body) {
        let Some(grantor) = grantor else {
            crate::text::run(&sql)?;
            continue;
        };
        let why = match role_oid(&grantor)? {
            None => format!("role \"{grantor}\" does not exist in this cluster"),
            Some(oid) if !restorer.acts_as(oid) => format!(
                "\"{}\" does not have the privileges of role \"{grantor}\"",
                restorer.name
            ),
            Some(oid) => {
                let needs: Vec<(&str, SchemaPrivilege)> = schema
                    .iter()
                    .map(|s| (*s, SchemaPrivilege::Usage))
                    .collect();
                match subtransaction::run_result(|| {
                    run_as_in(oid, &needs, || Ok(crate::text::run(&sql)?))
                }) {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => format!("as \"{grantor}\": {e}"),
                    Err(c) => format!("as \"{grantor}\": {}", describe_error(&c)),
                }
            }
        };
        crate::text::run(&sql)?;
        lost.push(format!(
            "granted by the owner instead of \"{grantor}\" ({why})"
        ));
    }
    Ok((!lost.is_empty()).then(|| lost.join("; ")))
}

/// Kinds a caller that is not a superuser creates as their owner (see `code_role`), in their
/// schema.
fn created_as_owner(kind: EntryKind) -> bool {
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
fn reads_rows(kind: EntryKind) -> bool {
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

/// Run `setval` (a sequence value entry) on `sequence` without ever moving it back: numbers
/// the database handed out before stay used.
fn advance_sequence(sequence: &str, setval: &str) -> Result<()> {
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

/// Index builds: `CREATE INDEX` and the PRIMARY KEY / UNIQUE / EXCLUDE constraints.
pub fn builds_index_only(sql: &str) -> bool {
    matches!(
        constraint_definition(sql),
        Some(d) if ["PRIMARY KEY", "UNIQUE", "EXCLUDE"].iter().any(|k| d.starts_with(k))
    )
}

/// `ALTER TABLE [ONLY] <schema>.<table> ADD CONSTRAINT <name> <definition>`: the definition,
/// found by reading the identifiers (quoted ones may hold any text).
fn constraint_definition(sql: &str) -> Option<&str> {
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
    let rest = sql
        .strip_prefix("ALTER TABLE ")
        .or_else(|| sql.strip_prefix("ALTER FOREIGN TABLE "))?;
    let rest = rest.strip_prefix("ONLY ").unwrap_or(rest);
    let rest = identifier(rest)?.strip_prefix('.')?;
    let rest = identifier(rest)?
        .trim_start()
        .strip_prefix("ADD CONSTRAINT ")?;
    let rest = identifier(rest)?;
    rest.starts_with([' ', '\n']).then(|| rest.trim_start())
}

/// Entries only a superuser may have applied: what PostgreSQL reserves to superusers
/// (event triggers, languages, foreign-data wrappers, access methods, transforms,
/// subscriptions), what reaches beyond one's own objects (database settings, default
/// privileges, casts, publications), and anything on the system schemas' objects.
fn superuser_only(e: &TocEntry) -> bool {
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
    ) || (e.kind == EntryKind::Type && e.sql.contains("INPUT = "))
        || e.schema
            .as_deref()
            .is_some_and(|s| s == "information_schema" || s.starts_with("pg_"))
}

#[cfg(test)]
mod tests {
    use super::constraint_definition;

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
}
