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
    /// The tables this restore created (their CREATE succeeded), by index in `tables`.
    created: RefCell<HashMap<usize, pg_sys::Oid>>,
    /// A job worker's copy: each table's `oid` is already where its rows go.
    resolved: bool,
}

impl Plan {
    pub fn build(m: &Manifest, scope: &Scope, existing: Existing) -> Result<Plan> {
        let mut tables = Vec::new();
        let mut by_backup_name = HashMap::new();
        for (schema, name) in scope.tables(m) {
            let target = scope.target_schema_of(&schema).to_string();
            let oid = table_oid(&target, &name)?;
            let exists = oid.is_some();
            by_backup_name.insert(quoted(&schema, &name), tables.len());
            tables.push(PlannedTable {
                action: plan::action_for(exists, existing),
                schema: target,
                name,
                exists,
                oid: oid.map(u32::from),
            });
        }
        Ok(Plan {
            tables,
            by_backup_name,
            created: RefCell::new(HashMap::new()),
            resolved: false,
        })
    }

    /// The table `(backup_schema, name)` was created by this restore: the table of that
    /// name now (in the transaction that created it, ours).
    pub fn note_created(&self, backup_schema: &str, name: &str) -> Result<()> {
        let Some(&i) = self.by_backup_name.get(&quoted(backup_schema, name)) else {
            return Ok(());
        };
        let t = &self.tables[i];
        if let Some(oid) = table_oid(&t.schema, &t.name)? {
            self.created.borrow_mut().insert(i, oid);
        }
        Ok(())
    }

    /// The table the rows of `(backup_schema, name)` may go into (issue 17): one this
    /// restore created, or one that existed when it was planned and that `existing`
    /// (append, truncate) was checked against. Never a table of that name that appeared
    /// since, such as one another session created while this restore's CREATE failed.
    pub fn destination(&self, backup_schema: &str, name: &str) -> Option<pg_sys::Oid> {
        let &i = self.by_backup_name.get(&quoted(backup_schema, name))?;
        let t = &self.tables[i];
        if !self.resolved && t.action.runs_ddl() {
            return self.created.borrow().get(&i).copied();
        }
        t.oid.map(pg_sys::Oid::from)
    }

    /// The plan as job workers get it: each table's `oid` where its rows go.
    pub fn for_workers(&self) -> Vec<PlannedTable> {
        self.tables
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut t = t.clone();
                if !self.resolved && t.action.runs_ddl() {
                    t.oid = self.created.borrow().get(&i).map(|o| u32::from(*o));
                }
                t
            })
            .collect()
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
            created: RefCell::new(HashMap::new()),
            resolved: true,
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
        let moved_to = self.job.scope.moved_to(e);
        // What runs is what was checked against the entry's kind (issue 17): preflight
        // checked the archive as it was then; this is the text about to run.
        let body = match self.job.scope.sql(&e.sql) {
            b if b.is_empty() => b,
            b => super::statements::check_entry(e, &b, moved_to)?,
        };
        let object = self.object(e);
        let restorer = self.job.restorer;
        // (owner statement as in the backup, the backup's owner)
        let owner = match (&e.owner_sql, &e.owner) {
            (Some(sql), Some(role)) => {
                let sql = self.job.scope.sql(sql);
                super::statements::check_owner(e, &sql, moved_to)?;
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
        let attach_as_restorer = e.kind == EntryKind::TableAttach
            && code.is_some()
            && self.attach_evaluates_nothing(e)?;
        let note: RefCell<Option<String>> = RefCell::new(None);
        let what = object.clone();
        let step = || -> Result<Option<i64>> {
            if action == "advance" && e.kind == EntryKind::ExtensionData {
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
                    super::tablespaces::check_create(role, ts, &what)?;
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
                        add_constraint(&body, *role, schemas, restorer)?
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
            && action == "create"
        {
            // Where its rows may go (issue 17).
            self.job
                .plan
                .note_created(e.schema.as_deref().unwrap_or_default(), &e.name)?;
        }
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
            .filter_map(|d| self.entry(*d))
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
    // Literals, dates, intervals and arrays in the archive are read as they were written,
    // whatever the caller's session says (a backslash in a string must never end it early,
    // an array's NULL element stays NULL: security::LITERAL_SETTINGS). Settings that are
    // the caller's on purpose (session_replication_role, lock_timeout, TimeZone,
    // lc_monetary, custom settings user code reads) are left alone here and carried to
    // every worker as they are (session.rs).
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
        let sql = super::statements::check_entry(e, &sql, moved_to)?;
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
    body: &str,
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
    if let Some((add, validate)) = constraint_in_two(body, restorer.superuser) {
        as_caller(&add)?;
        if let Some(validate) = validate {
            as_owner(owner, None, &validate)?;
        }
        return Ok(true);
    }
    partitioned_foreign_key(body, as_caller, as_owner)
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
    body: &str,
    as_caller: impl Fn(&str) -> Result<()>,
    as_owner: impl Fn(pg_sys::Oid, Option<&str>, &str) -> Result<()>,
) -> Result<bool> {
    let Some((keyword, relation, name, definition)) = constraint_parts(body) else {
        return Ok(false);
    };
    let Some(definition) = definition.trim_end().strip_suffix(';') else {
        return Ok(false);
    };
    if relation.starts_with("ONLY ")
        || !definition.starts_with("FOREIGN KEY")
        || definition.ends_with(" NOT VALID")
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
                    crate::text::arg(unquote_identifier(name)),
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
            as_caller(&format!(
                "ALTER TABLE ONLY {partition} ADD CONSTRAINT {name} {definition} NOT VALID;"
            ))?;
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

/// An identifier as written (`%I`) back to the name.
fn unquote_identifier(ident: &str) -> String {
    match ident.strip_prefix('"').and_then(|i| i.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => ident.to_string(),
    }
}

/// A foreign key's (or with `checks`, a CHECK's) statement as two (issue 16): the same
/// `ADD CONSTRAINT` with NOT VALID (checks privileges, evaluates nothing), and the `VALIDATE
/// CONSTRAINT` that checks the rows (None when the backup's constraint was NOT VALID itself,
/// and for a foreign table's CHECK, which PostgreSQL never checks). None for a statement of
/// another shape and for a partitioned table's key (added without ONLY), which PostgreSQL 15
/// cannot add NOT VALID.
fn constraint_in_two(sql: &str, checks: bool) -> Option<(String, Option<String>)> {
    let (keyword, relation, name, definition) = constraint_parts(sql)?;
    let foreign_key = definition.starts_with("FOREIGN KEY")
        && relation.starts_with("ONLY ")
        && keyword != "ALTER DOMAIN";
    let check = checks && definition.starts_with("CHECK");
    if !foreign_key && !check {
        return None;
    }
    let definition = definition.trim_end().strip_suffix(';')?.trim_end();
    if definition.ends_with(" NOT VALID") || (check && keyword == "ALTER FOREIGN TABLE") {
        return Some((sql.to_string(), None));
    }
    Some((
        format!("{keyword} {relation} ADD CONSTRAINT {name} {definition} NOT VALID;"),
        Some(format!("{keyword} {relation} VALIDATE CONSTRAINT {name};")),
    ))
}

/// `ALTER TABLE [ONLY] <schema>.<table> ADD CONSTRAINT <name> <definition>`: the definition,
/// found by reading the identifiers (quoted ones may hold any text).
fn constraint_definition(sql: &str) -> Option<&str> {
    constraint_parts(sql).map(|(_, _, _, d)| d)
}

/// `ALTER TABLE [ONLY] <schema>.<table> ADD CONSTRAINT <name> <definition>` (or ALTER FOREIGN
/// TABLE, ALTER DOMAIN): the command, the relation (with ONLY), the name and the definition,
/// as written.
fn constraint_parts(sql: &str) -> Option<(&'static str, &str, &str, &str)> {
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
    use super::{constraint_definition, constraint_in_two};

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
    }
}
