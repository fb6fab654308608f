//! restore(): replay a backup into the current database, in pg_restore's order: pre-data DDL,
//! data through COPY FROM, then post-data (indexes, constraints, triggers, policies, sequence
//! values, materialized view refresh).
//!
//! `on_error => 'abort'` (default): everything runs in the caller's transaction, all or
//! nothing. `'continue'`: every object in its own subtransaction; failures become result rows.

pub mod names;
pub mod ownership;
pub mod plan;
mod preflight;
pub mod retarget;
pub mod scope;
pub mod tuning;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use crate::archive::compression::Compression;
use crate::archive::manifest::LARGE_OBJECTS;
use crate::archive::manifest::{DdlItem, Manifest};
use crate::archive::verify::{self, FileStatus};
use crate::backup::create::unknown_backup;
use crate::backup::manage::backup_dir;
use crate::catalog::autonomous;
use crate::catalog::history::now_rfc3339;
use crate::copy::copy_from;
use crate::copy::script::ScriptReader;
use crate::copy::CopyFormat;
use crate::error::{BackupError, Result};
use crate::security::owner::{relation_owner, run_as, run_as_in, SchemaPrivilege};
use crate::security::privileges::{parse_owner_statement, Restorer};
use crate::security::redact::{self, Exposure};
use crate::security::{self, targets, Caller};
use crate::subtransaction;
use ownership::Ownership;
use plan::{Action, Existing, OnError, PlannedTable};
use scope::{quoted, Scope};

pub struct RestoreOptions {
    pub tables: Option<Vec<String>>,
    pub schemas: Option<Vec<String>>,
    pub existing: Existing,
    pub schema_only: bool,
    pub data_only: bool,
    pub target_schema: Option<String>,
    pub disable_triggers: bool,
    pub on_error: OnError,
    pub dry_run: bool,
    pub confirm: bool,
    /// ANALYZE the tables that received rows, at the end (default on).
    pub analyze: bool,
}

impl RestoreOptions {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "tables": self.tables, "schemas": self.schemas,
            "existing": format!("{:?}", self.existing).to_lowercase(),
            "schema_only": self.schema_only, "data_only": self.data_only,
            "target_schema": self.target_schema, "disable_triggers": self.disable_triggers,
            "on_error": format!("{:?}", self.on_error).to_lowercase(), "confirm": self.confirm,
            "analyze": self.analyze,
        })
    }
}

/// One result row: object, kind, action, rows, status, detail.
pub type Row = (String, String, String, Option<i64>, String, Option<String>);

fn row(
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

fn qualified(schema: &Option<String>, name: &str) -> String {
    format!("{}.{}", schema.as_deref().unwrap_or_default(), name)
}

fn table_oid(schema: &str, name: &str) -> Result<Option<pg_sys::Oid>> {
    Ok(Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2)",
        &[schema.into(), name.into()],
    )?)
}

fn relation_exists(quoted_name: &str) -> Result<bool> {
    Ok(
        Spi::get_one_with_args::<bool>(
            "SELECT to_regclass($1) IS NOT NULL",
            &[quoted_name.into()],
        )?
        .unwrap_or(false),
    )
}

/// The plan, keyed by each table's quoted name in the backup.
struct Plan {
    tables: Vec<PlannedTable>,
    by_backup_name: HashMap<String, usize>,
}

impl Plan {
    fn build(m: &Manifest, scope: &Scope, existing: Existing) -> Result<Plan> {
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

    fn of(&self, backup_schema: &str, name: &str) -> Option<&PlannedTable> {
        self.of_quoted(&quoted(backup_schema, name))
    }

    fn of_quoted(&self, q: &str) -> Option<&PlannedTable> {
        self.by_backup_name.get(q).map(|i| &self.tables[*i])
    }
}

pub fn restore(id: &str, opts: &RestoreOptions, caller: &Caller) -> Result<Vec<Row>> {
    security::owner::refuse_inside_restricted_operation()?;
    if let Some(to) = &opts.target_schema {
        targets::check_target_schema(to)?;
    }
    let dir = backup_dir(id)?;
    if !dir.exists() {
        return Err(unknown_backup(id));
    }
    if opts.schema_only && opts.data_only {
        return Err(
            BackupError::invalid("schema_only and data_only cannot both be true")
                .with_hint("Leave both false to restore everything."),
        );
    }
    // Check every file before changing anything.
    let bad: Vec<String> = verify::verify_archive(&dir, false)
        .into_iter()
        .filter(|c| c.status != FileStatus::Ok)
        .map(|c| format!("{} ({})", c.file, c.status.as_str()))
        .collect();
    if !bad.is_empty() {
        return Err(
            BackupError::corrupt(format!("backup {id} is damaged: {}", bad.join(", "))).with_hint(
                "Nothing was restored. See SELECT * FROM backup.verify('<id>') for details.",
            ),
        );
    }
    let manifest = Manifest::from_json(
        &std::fs::read(dir.join("manifest.json")).map_err(|e| BackupError::io("read", &dir, e))?,
    )?;
    let compression = Compression::from_name(&manifest.compression)?;
    let scope = Scope::build(
        &manifest,
        opts.tables.as_deref(),
        opts.schemas.as_deref(),
        opts.target_schema.as_deref(),
    )?;
    let plan = Plan::build(&manifest, &scope, opts.existing)?;
    let restorer = Restorer::of(caller);
    let ownership = Ownership::build(&manifest);

    let mut record = serde_json::json!({
        "backup_id": id, "started_at": now_rfc3339(), "status": "running", "dry_run": opts.dry_run,
        "options": opts.to_json(), "performed_by": caller.role,
    });
    let restore_id: i64 =
        Spi::get_one("SELECT nextval(pg_get_serial_sequence('backup.restores', 'id'))")?
            .unwrap_or(0);
    record["id"] = restore_id.into();
    record["table_count"] = (plan.tables.len() as i64).into();
    if let Err(e) = plan::check(&plan.tables, opts.existing, opts.confirm, opts.dry_run, id)
        .and_then(|_| preflight::check(&manifest, &scope, &plan, opts, &ownership, &restorer))
    {
        finish_record(&mut record, "failed", None, Some(e.to_string()));
        return Err(e);
    }
    if opts.dry_run {
        let mut out: Vec<Row> = plan
            .tables
            .iter()
            .map(|t| {
                let rows = manifest
                    .files
                    .iter()
                    .filter(|f| f.kind.is_none())
                    .map(|f| (&f.schema, &f.table, f.rows))
                    .chain(
                        manifest
                            .script_tables
                            .iter()
                            .filter(|b| b.kind.is_none())
                            .map(|b| (&b.schema, &b.table, b.rows)),
                    )
                    .find(|(s, n, _)| plan.of(s, n).is_some_and(|p| p == t))
                    .filter(|_| t.action.loads_data() && !opts.schema_only)
                    .map(|(_, _, rows)| rows as i64);
                row(
                    t.object(),
                    "table",
                    t.action.as_str(),
                    rows,
                    "planned",
                    None,
                )
            })
            .collect();
        out.extend(
            dangling_foreign_keys(&manifest, &scope)?
                .into_iter()
                .map(|(item, detail)| {
                    row(
                        qualified(&item.schema, &item.name),
                        "foreign_key",
                        "skip",
                        None,
                        "planned",
                        Some(&detail),
                    )
                }),
        );
        finish_record(&mut record, "completed", Some(0), None);
        return Ok(out);
    }

    let current = RefCell::new(None);
    let job = Job {
        manifest: &manifest,
        dir: &dir,
        compression,
        opts,
        scope: &scope,
        plan: &plan,
        restorer: &restorer,
        ownership: &ownership,
        current: &current,
    };
    let outcome = subtransaction::run(|| {
        let out = apply(&job)?;
        if opts.analyze && !opts.schema_only {
            // Tables whose every step succeeded and that received rows.
            let loaded: Vec<String> = plan
                .tables
                .iter()
                .filter(|t| t.action.loads_data())
                .filter(|t| {
                    out.iter()
                        .any(|r| r.0 == t.object() && r.4 == "ok" && r.3.is_some())
                })
                .map(|t| quoted(&t.schema, &t.name))
                .collect();
            tuning::analyze(loaded.iter().map(String::as_str))?;
        }
        Ok::<_, BackupError>(out)
    });
    match outcome {
        Ok(Ok(out)) => {
            let rows: i64 = out.iter().filter_map(|r| r.3).sum();
            let failed = out.iter().filter(|r| r.4 == "failed").count();
            let error = (failed > 0)
                .then(|| format!("{failed} object(s) failed; see the rows with status 'failed'"));
            finish_record(&mut record, "completed", Some(rows), error);
            Ok(out)
        }
        Ok(Err(e)) => {
            finish_record(
                &mut record,
                "failed",
                None,
                Some(format!("{e} (SQLSTATE {})", e.sqlstate())),
            );
            Err(e)
        }
        Err(caught) => {
            // The error may carry row values (or text written by user code): the history
            // row and the caller get it without them; the server log gets all of it.
            let step = current.borrow().clone().unwrap_or_else(|| Step {
                kind: "restore".into(),
                object: id.to_string(),
                exposure: Exposure::Data,
            });
            let text = redact::describe(&caught, &step.kind, &step.object, step.exposure);
            finish_record(&mut record, "failed", None, Some(text.clone()));
            redact::raise(&caught, text)
        }
    }
}

fn finish_record(
    record: &mut serde_json::Value,
    status: &str,
    rows: Option<i64>,
    error: Option<String>,
) {
    record["status"] = status.into();
    record["finished_at"] = now_rfc3339().into();
    record["row_count"] = rows.into();
    record["error"] = error.into();
    autonomous::execute_or_inline("restore_upsert", record);
}

/// Foreign keys of restored tables that point at a table neither restored nor present: they
/// are reported, never silently dropped.
fn dangling_foreign_keys<'m>(m: &'m Manifest, scope: &Scope) -> Result<Vec<(&'m DdlItem, String)>> {
    let mut out = Vec::new();
    for item in m
        .post_data
        .iter()
        .filter(|i| i.kind == "foreign_key" && scope.wants(i))
    {
        let Some(target) = &item.references else {
            continue;
        };
        if !scope.restores(target) && !relation_exists(target)? {
            out.push((
                item,
                format!("references {target}, which is neither restored nor present"),
            ));
        }
    }
    Ok(out)
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
enum Tolerate {
    Nothing,
    /// The object already exists: keep it (`skip`).
    Duplicates,
    /// The role does not exist in this cluster: a `warning`, as pg_restore does.
    MissingRole,
}

/// The step a restore is running, for the error if it fails.
#[derive(Clone)]
struct Step {
    kind: String,
    object: String,
    exposure: Exposure,
}

/// Runs the steps of a restore and collects their rows.
struct Steps<'a> {
    on_error: OnError,
    out: Vec<Row>,
    current: &'a RefCell<Option<Step>>,
}

impl Steps<'_> {
    /// Run one step. With `Tolerate::Nothing` under `on_error => 'abort'` an error ends the
    /// restore; otherwise the step runs in a subtransaction and its failure becomes a row.
    /// `exposure` says whether its errors may carry row values (then they are redacted).
    #[allow(clippy::too_many_arguments)]
    fn run_step(
        &mut self,
        object: String,
        kind: &str,
        action: &str,
        tolerate: Tolerate,
        exposure: Exposure,
        f: impl FnOnce() -> Result<Option<i64>>,
    ) -> Result<()> {
        *self.current.borrow_mut() = Some(Step {
            kind: kind.to_string(),
            object: object.clone(),
            exposure,
        });
        let r = self.run_inner(object, kind, action, tolerate, exposure, f);
        if r.is_ok() {
            *self.current.borrow_mut() = None;
        }
        r
    }

    /// A step that replays DDL as the extension owner (no rows, no user code).
    fn run(
        &mut self,
        object: String,
        kind: &str,
        action: &str,
        tolerate: Tolerate,
        f: impl FnOnce() -> Result<Option<i64>>,
    ) -> Result<()> {
        self.run_step(object, kind, action, tolerate, Exposure::Ddl, f)
    }

    fn run_inner(
        &mut self,
        object: String,
        kind: &str,
        action: &str,
        tolerate: Tolerate,
        exposure: Exposure,
        f: impl FnOnce() -> Result<Option<i64>>,
    ) -> Result<()> {
        if tolerate == Tolerate::Nothing && self.on_error == OnError::Abort {
            let rows = f()?;
            self.out.push(row(object, kind, action, rows, "ok", None));
            return Ok(());
        }
        match subtransaction::run_result(f) {
            Ok(Ok(rows)) => self.out.push(row(object, kind, action, rows, "ok", None)),
            Ok(Err(e)) if self.on_error == OnError::Continue => self.out.push(row(
                object,
                kind,
                action,
                None,
                "failed",
                Some(&e.to_string()),
            )),
            Ok(Err(e)) => return Err(e),
            Err(c) if tolerate == Tolerate::Duplicates && is_duplicate(&c) => self.out.push(row(
                object,
                kind,
                "skip",
                None,
                "ok",
                Some("already exists"),
            )),
            Err(c)
                if tolerate == Tolerate::MissingRole
                    && has_code(&c, PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT) =>
            {
                let text = redact::describe(&c, kind, &object, exposure);
                self.out
                    .push(row(object, kind, "skip", None, "warning", Some(&text)))
            }
            Err(c) if self.on_error == OnError::Continue => {
                let text = redact::describe(&c, kind, &object, exposure);
                self.out
                    .push(row(object, kind, action, None, "failed", Some(&text)))
            }
            Err(c) => c.rethrow(),
        }
        Ok(())
    }

    fn note(&mut self, r: Row) {
        self.out.push(r);
    }
}

fn sql_step(sql: String) -> impl FnOnce() -> Result<Option<i64>> {
    move || {
        Spi::run(&sql)?;
        Ok(None)
    }
}

/// Everything one restore works from.
struct Job<'a> {
    manifest: &'a Manifest,
    dir: &'a std::path::Path,
    compression: Compression,
    opts: &'a RestoreOptions,
    scope: &'a Scope,
    plan: &'a Plan,
    restorer: &'a Restorer,
    ownership: &'a Ownership<'a>,
    current: &'a RefCell<Option<Step>>,
}

fn apply(job: &Job) -> Result<Vec<Row>> {
    let mut steps = Steps {
        on_error: job.opts.on_error,
        out: Vec::new(),
        current: job.current,
    };
    // Function bodies may name tables that come later, as in pg_restore.
    security::set_for_call(c"check_function_bodies", c"off");
    // "schema ... already exists, skipping" and the like: the result rows say what happened.
    security::set_for_call(c"client_min_messages", c"warning");
    tuning::raise_maintenance_settings()?;
    if let Some((_, to)) = &job.scope.target {
        // Owned by the role that called restore, like everything it creates without an
        // owner of its own.
        let sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}",
            spi::quote_identifier(to),
            spi::quote_identifier(&job.restorer.name)
        );
        steps.run(
            to.clone(),
            "schema",
            "create",
            Tolerate::Nothing,
            sql_step(sql),
        )?;
    }
    // One DROP for all, without CASCADE: partitions go with their parent, foreign keys among
    // the dropped tables go with them, and anything outside the restore that depends on them
    // stops the restore (nothing else is dropped behind the user's back).
    let drop: Vec<String> = job
        .plan
        .tables
        .iter()
        .filter(|t| t.action == Action::Drop)
        .map(|t| quoted(&t.schema, &t.name))
        .collect();
    if !drop.is_empty() {
        // Views of the restore that are built on those tables are dropped too (the restore
        // recreates them); views outside it still stop the DROP.
        for (kind, what) in [("materialized_view", "MATERIALIZED VIEW"), ("view", "VIEW")] {
            let views: Vec<String> = job
                .manifest
                .pre_data
                .iter()
                .filter(|i| i.kind == kind && job.scope.wants(i))
                .map(|i| {
                    quoted(
                        job.scope
                            .target_schema_of(i.schema.as_deref().unwrap_or_default()),
                        &i.name,
                    )
                })
                .collect();
            if !views.is_empty() {
                let sql = format!("DROP {what} IF EXISTS {}", views.join(", "));
                steps.run(
                    views.join(", "),
                    kind,
                    "drop",
                    Tolerate::Nothing,
                    sql_step(sql),
                )?;
            }
        }
        let sql = format!("DROP TABLE IF EXISTS {}", drop.join(", "));
        steps.run(
            drop.join(", "),
            "table",
            "drop",
            Tolerate::Nothing,
            sql_step(sql),
        )?;
    }

    // Sequences that existed before this restore keep their values (unless their table's rows
    // are replaced): setting one back could make new rows collide.
    let mut kept_sequences: HashSet<String> = HashSet::new();
    if !job.opts.data_only {
        for item in job.manifest.pre_data.iter().filter(|i| job.scope.wants(i)) {
            let object = qualified(&item.schema, &item.name);
            if item.kind == "table" {
                let schema = item.schema.as_deref().unwrap_or_default();
                if let Some(t) = job
                    .plan
                    .of(schema, &item.name)
                    .filter(|t| t.action.runs_ddl())
                {
                    create_table(job, &mut steps, item, t)?;
                    own(job, &mut steps, item, t.object())?;
                }
                continue;
            }
            if item.kind == "sequence_owner" {
                link_sequence(job, &mut steps, item, &kept_sequences)?;
                continue;
            }
            // A schema that exists keeps its owner and grants, unless the caller could
            // change them itself (its owner's privileges): then they come from the backup.
            let keep_schema = item.kind == "schema"
                && match schema_owner(&item.name)? {
                    Some(o) => !job.restorer.acts_as(o),
                    None => false,
                };
            // Types, functions, sequences, views ... that already exist are kept as they are.
            steps.run(
                object.clone(),
                &item.kind,
                "create",
                Tolerate::Duplicates,
                sql_step(job.scope.sql(item)),
            )?;
            let created = steps.out.last().is_some_and(|r| r.2 != "skip");
            if item.kind == "sequence" && !created {
                kept_sequences.insert(object.clone());
            }
            if created && !keep_schema {
                own(job, &mut steps, item, object)?;
            }
        }
    }

    if !job.opts.schema_only {
        load_data(job, &mut steps)?;
    }

    let dangling = dangling_foreign_keys(job.manifest, job.scope)?;
    // Sequence values last: setval is not undone by a rollback, so it comes after everything
    // that could still fail.
    let (values, rest): (Vec<&DdlItem>, Vec<&DdlItem>) = job
        .manifest
        .post_data
        .iter()
        .filter(|i| job.scope.wants(i))
        .partition(|i| i.kind == "sequence_set");
    for item in rest.into_iter().chain(values) {
        // Owners and grants of objects were applied when the objects were created (or
        // kept as they are when they existed).
        if job.ownership.is_mapped(item) {
            continue;
        }
        if item.kind == "sequence_set"
            && item.table.is_none()
            && kept_sequences.contains(&qualified(&item.schema, &item.name))
        {
            continue;
        }
        let wanted = if item.kind == "sequence_set" {
            !job.opts.schema_only
        } else {
            !job.opts.data_only
        };
        if !wanted {
            continue;
        }
        // Indexes, constraints ... of a table that was kept as it is already exist; its
        // sequence is reset only when its rows were replaced.
        if let Some(t) = item.table.as_deref().and_then(|q| job.plan.of_quoted(q)) {
            let keep = if item.kind == "sequence_set" {
                matches!(t.action, Action::Skip | Action::Append)
            } else {
                !t.action.runs_ddl()
            };
            if keep {
                continue;
            }
        }
        let object = qualified(&item.schema, &item.name);
        if let Some((_, why)) = dangling.iter().find(|(d, _)| std::ptr::eq(*d, item)) {
            steps.note(row(object, &item.kind, "skip", None, "warning", Some(why)));
            continue;
        }
        let tolerate = if matches!(item.kind.as_str(), "owner" | "acl") {
            Tolerate::MissingRole
        } else {
            Tolerate::Nothing
        };
        let sql = job.scope.sql(item);
        if runs_user_code(&item.kind) && !builds_index_only(item) {
            // Constraint validation, index builds, REFRESH: the table's owner's code, run
            // with its owner's rights and nothing more.
            let (role, schemas) = code_owner(job, item)?;
            steps.run_step(
                object,
                &item.kind,
                "create",
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
            )?;
        } else {
            steps.run(object, &item.kind, "create", tolerate, sql_step(sql))?;
        }
    }
    Ok(steps.out)
}

/// Post-data kinds whose statement evaluates expressions over the rows (CHECK and foreign
/// key validation, index and exclusion builds with their expressions and predicates,
/// REFRESH) and so runs the owner's code. Anything not known to be inert counts as code.
fn runs_user_code(kind: &str) -> bool {
    !matches!(
        kind,
        "trigger"
            | "row_security"
            | "policy"
            | "comment"
            | "owner"
            | "acl"
            | "index_attach"
            | "sequence_set"
            | "sequence_owner"
    )
}

/// Index builds: `CREATE INDEX` and the PRIMARY KEY / UNIQUE / EXCLUDE constraints.
/// PostgreSQL 15 runs the whole build (expressions, predicates, uniqueness and exclusion
/// checks) as the table's owner in a security-restricted operation itself (DefineIndex
/// switches before it looks at any expression), checking only CREATE on the schema against
/// the role that runs the statement; so these run as the extension owner, like pg_restore,
/// and owners without CREATE on their table's schema still get their indexes.
fn builds_index_only(item: &DdlItem) -> bool {
    match item.kind.as_str() {
        "index" => true,
        "constraint" => matches!(
            constraint_definition(&item.sql),
            Some(d) if ["PRIMARY KEY", "UNIQUE", "EXCLUDE"].iter().any(|k| d.starts_with(k))
        ),
        _ => false,
    }
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
                let end = s.find(['.', ' '])?;
                (end > 0).then(|| &s[end..])
            }
        }
    }
    let rest = sql.trim_start().strip_prefix("ALTER TABLE ")?;
    let rest = rest.strip_prefix("ONLY ").unwrap_or(rest);
    let rest = identifier(rest)?.strip_prefix('.')?;
    let rest = identifier(rest)?.strip_prefix(" ADD CONSTRAINT ")?;
    identifier(rest)?.strip_prefix(' ')
}

/// The role whose rights a post-data step on a table runs with: the table's current owner
/// (set when it was created, or the owner of a table that existed). When the table cannot
/// be found the statement fails anyway: the caller then, never the extension owner. With it,
/// the schemas the statement names (the table's, a foreign key's target's).
fn code_owner(job: &Job, item: &DdlItem) -> Result<(pg_sys::Oid, Vec<String>)> {
    let target = match item.table.as_deref().and_then(|q| job.plan.of_quoted(q)) {
        Some(t) => table_oid(&t.schema, &t.name)?,
        None => {
            // A materialized view (its refresh names itself) or a relation not in the plan.
            let schema = job
                .scope
                .target_schema_of(item.schema.as_deref().unwrap_or_default());
            table_oid(schema, &item.name)?
        }
    };
    let mut schemas = Vec::new();
    for oid in [target]
        .into_iter()
        .chain([referenced_oid(job, item)?])
        .flatten()
    {
        if let Some(s) = Spi::get_one_with_args::<String>(
            "SELECT (SELECT n.nspname::pg_catalog.text FROM pg_catalog.pg_class c
                     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1)",
            &[oid.into()],
        )? {
            if !schemas.contains(&s) {
                schemas.push(s);
            }
        }
    }
    let role = match target {
        Some(oid) => relation_owner(oid)?,
        None => job.restorer.oid,
    };
    Ok((role, schemas))
}

/// The table a foreign key references, where this restore puts it (or where it is).
fn referenced_oid(job: &Job, item: &DdlItem) -> Result<Option<pg_sys::Oid>> {
    let Some(r) = item
        .references
        .as_deref()
        .filter(|_| item.kind == "foreign_key")
    else {
        return Ok(None);
    };
    match job.plan.of_quoted(r) {
        Some(t) => table_oid(&t.schema, &t.name),
        None => Ok(Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
            &[r.into()],
        )?),
    }
}

/// CREATE TABLE. A partition is created by its parent's owner, as PostgreSQL requires of
/// whoever runs it: creating one evaluates its bound (domain CHECKs of the key) and scans a
/// default partition with the key's expressions. Other tables evaluate nothing and are
/// created as the extension owner, then handed to their owner at once (`own`).
fn create_table(job: &Job, steps: &mut Steps, item: &DdlItem, t: &PlannedTable) -> Result<()> {
    let sql = job.scope.sql(item);
    let partition_of = item
        .references
        .as_deref()
        .filter(|_| item.sql.contains(" PARTITION OF "));
    let Some(parent) = partition_of else {
        return steps.run(
            t.object(),
            "table",
            "create",
            Tolerate::Nothing,
            sql_step(sql),
        );
    };
    let parent_oid = match job.plan.of_quoted(parent) {
        Some(p) => table_oid(&p.schema, &p.name)?,
        None => Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
            &[parent.into()],
        )?,
    };
    let role = match parent_oid {
        Some(oid) => relation_owner(oid)?,
        None => job.restorer.oid,
    };
    let schema = t.schema.clone();
    steps.run_step(
        t.object(),
        "table",
        "create",
        Tolerate::Nothing,
        Exposure::Data,
        move || {
            // The owner may lack CREATE on a schema the restore made (target_schema).
            run_as_in(
                role,
                &[
                    (&schema, SchemaPrivilege::Usage),
                    (&schema, SchemaPrivilege::Create),
                ],
                || Ok(Spi::run(&sql)?),
            )?;
            Ok(None)
        },
    )
}

/// The current owner of schema `name`, if it exists.
fn schema_owner(name: &str) -> Result<Option<pg_sys::Oid>> {
    Ok(Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT (SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = $1)",
        &[name.into()],
    )?)
}

/// Give the object `item` just created its owner and grants, before anything can run on
/// it. An owner role that does not exist here is replaced by the role that called restore
/// (never the extension owner), and a row says so.
fn own(job: &Job, steps: &mut Steps, item: &DdlItem, object: String) -> Result<()> {
    let Some(key) = job.ownership.key_of(item) else {
        return Ok(());
    };
    if let Some(owner_item) = job.ownership.owner_item(&key) {
        let sql = job.scope.sql(owner_item);
        if let Some(stmt) = parse_owner_statement(&sql) {
            let owner = job.restorer.owner_for(&object, &stmt.role)?;
            let sql = format!(
                "ALTER {} {} OWNER TO {};",
                stmt.objtype,
                stmt.ident,
                spi::quote_identifier(&owner.name)
            );
            steps.run(
                object.clone(),
                "owner",
                "create",
                Tolerate::Nothing,
                sql_step(sql),
            )?;
            if let Some(note) = owner.note() {
                steps.note(row(
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
    for acl in job.ownership.acl_items(&key) {
        steps.run(
            object.clone(),
            "acl",
            "create",
            Tolerate::MissingRole,
            sql_step(job.scope.sql(acl)),
        )?;
    }
    Ok(())
}

/// `ALTER SEQUENCE ... OWNED BY table.column`: PostgreSQL wants the sequence and the table
/// to have one owner. The table got its owner when it was created; a sequence this restore
/// created gets the same one first.
fn link_sequence(
    job: &Job,
    steps: &mut Steps,
    item: &DdlItem,
    kept: &HashSet<String>,
) -> Result<()> {
    let object = qualified(&item.schema, &item.name);
    let mut sql = job.scope.sql(item);
    let table = item.table.as_deref().and_then(|q| job.plan.of_quoted(q));
    if let (Some(t), false) = (table, kept.contains(&object)) {
        if let Some(oid) = table_oid(&t.schema, &t.name)? {
            let owner = Spi::get_one_with_args::<String>(
                "SELECT (SELECT pg_catalog.pg_get_userbyid(relowner)::pg_catalog.text FROM pg_catalog.pg_class WHERE oid = $1)",
                &[oid.into()],
            )?
            .unwrap_or_default();
            let seq = quoted(
                job.scope
                    .target_schema_of(item.schema.as_deref().unwrap_or_default()),
                &item.name,
            );
            sql = format!(
                "ALTER SEQUENCE {seq} OWNER TO {}; {sql}",
                spi::quote_identifier(&owner)
            );
        }
    }
    steps.run(
        object,
        &item.kind,
        "create",
        Tolerate::Duplicates,
        sql_step(sql),
    )
}

fn load_data(job: &Job, steps: &mut Steps) -> Result<()> {
    // One TRUNCATE for all, so foreign keys among the restored tables do not block it; ONLY
    // the tables whose rows the backup holds (a parent's other children keep theirs).
    let with_rows = job.manifest.data_tables();
    let truncate: Vec<&PlannedTable> = job
        .plan
        .tables
        .iter()
        .filter(|t| t.action == Action::Truncate)
        .filter(|t| {
            with_rows
                .iter()
                .any(|(s, n)| job.plan.of(s, n).is_some_and(|p| p == *t))
        })
        .collect();
    if !truncate.is_empty() {
        truncate_tables(steps, &truncate)?;
    }
    if job.opts.disable_triggers {
        // User triggers and foreign key checks stay off while rows load, and only then
        // (a superuser setting; restore runs as the extension owner).
        security::set_for_call(c"session_replication_role", c"replica");
    }
    let script = match job.manifest.files.iter().find(|f| f.is_script()) {
        Some(f) => Some((
            ScriptReader::open(
                &job.dir.join(&f.path),
                job.compression,
                job.manifest
                    .script_tables
                    .iter()
                    .map(|b| b.header.clone())
                    .collect(),
            )?,
            f.sha256.clone(),
        )),
        None => None,
    };
    for unit in data_units(job.manifest, job.dir) {
        let reader = script.as_ref().map(|(r, _)| r);
        // Each script block is consumed in turn whatever happens to its table.
        if let Some(r) = reader {
            r.begin_block();
        }
        let wanted = if unit.large_objects {
            job.scope.full
        } else {
            job.plan
                .of(&unit.schema, &unit.table)
                .is_some_and(|t| t.action.loads_data())
        };
        if !wanted {
            if let Some(t) = job.plan.of(&unit.schema, &unit.table) {
                steps.note(row(
                    t.object(),
                    "table_data",
                    "skip",
                    None,
                    "ok",
                    Some("table exists"),
                ));
            }
            if let Some(r) = reader {
                r.end_block();
            }
            continue;
        }
        if unit.large_objects {
            // Large objects run no code: written as the extension owner (owners were set
            // when they were created).
            steps.run_step(
                "large objects".into(),
                "large_object_data",
                "create",
                Tolerate::Nothing,
                Exposure::Data,
                || restore_large_objects(&unit, job.compression, reader).map(Some),
            )?;
        } else {
            let t = job
                .plan
                .of(&unit.schema, &unit.table)
                .expect("wanted tables are planned");
            let (schema, name, object) = (t.schema.clone(), t.name.clone(), t.object());
            steps.run_step(object.clone(), "table_data", t.action.as_str(), Tolerate::Nothing, Exposure::Data, || {
                let oid = table_oid(&schema, &name)?.ok_or_else(|| {
                    BackupError::unknown(format!("table {object} does not exist and the backup has no definition for it"))
                        .with_hint("Restore a backup that includes the schema first (this one is data_only).")
                })?;
                // Defaults, generated columns, CHECKs, domain CHECKs, partition routing and
                // triggers fire while rows load: as the table's owner.
                let owner = relation_owner(oid)?;
                let rows = if job.manifest.format == "json" {
                    load_json(&schema, &name, &unit, job.compression, owner)?
                } else {
                    run_as(owner, || load_rows(oid, &unit, job.compression, reader))?
                };
                Ok(Some(rows as i64))
            })?;
        }
        if let Some(r) = reader {
            r.end_block();
        }
    }
    if let Some((reader, sha)) = script {
        reader.finish(&sha)?;
    }
    if job.opts.disable_triggers {
        security::set_for_call(c"session_replication_role", c"origin");
    }
    Ok(())
}

/// TRUNCATE fires the tables' ON TRUNCATE triggers: run as their owner. Tables of several
/// owners go in one statement (foreign keys among them need it) when none has such a
/// trigger, else one statement per owner.
fn truncate_tables(steps: &mut Steps, tables: &[&PlannedTable]) -> Result<()> {
    let mut by_owner: Vec<(pg_sys::Oid, Vec<String>)> = Vec::new();
    let schemas: Vec<String> = tables.iter().map(|t| t.schema.clone()).collect();
    let mut oids = Vec::new();
    for t in tables {
        let Some(oid) = table_oid(&t.schema, &t.name)? else {
            continue;
        };
        oids.push(oid);
        let owner = relation_owner(oid)?;
        let name = quoted(&t.schema, &t.name);
        match by_owner.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, v)) => v.push(name),
            None => by_owner.push((owner, vec![name])),
        }
    }
    let all: Vec<String> = by_owner.iter().flat_map(|(_, v)| v.clone()).collect();
    let triggers = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                        WHERE tgrelid = ANY($1) AND NOT tgisinternal AND (tgtype & 32) <> 0)",
        &[oids.into()],
    )?
    .unwrap_or(true);
    if by_owner.len() > 1 && !triggers {
        let sql = format!("TRUNCATE ONLY {}", all.join(", "));
        return steps.run(
            all.join(", "),
            "table",
            "truncate",
            Tolerate::Nothing,
            sql_step(sql),
        );
    }
    for (owner, names) in by_owner {
        let sql = format!("TRUNCATE ONLY {}", names.join(", "));
        let needs: Vec<(&str, SchemaPrivilege)> = schemas
            .iter()
            .map(|s| (s.as_str(), SchemaPrivilege::Usage))
            .collect();
        steps.run_step(
            names.join(", "),
            "table",
            "truncate",
            Tolerate::Nothing,
            Exposure::Data,
            || {
                run_as_in(owner, &needs, || Ok(Spi::run(&sql)?))?;
                Ok(None)
            },
        )?;
    }
    Ok(())
}

/// A table's rows (or the large objects' pages) in the archive: a file of its own, or the
/// next COPY block of the sql format's script.
#[derive(Clone)]
struct DataUnit {
    schema: String,
    table: String,
    columns: Vec<String>,
    large_objects: bool,
    file: Option<(std::path::PathBuf, String, CopyFormat)>,
}

fn data_units(m: &Manifest, dir: &std::path::Path) -> Vec<DataUnit> {
    if m.files.iter().any(|f| f.is_script()) {
        return m
            .script_tables
            .iter()
            .map(|b| DataUnit {
                schema: b.schema.clone(),
                table: b.table.clone(),
                columns: b.columns.clone(),
                large_objects: b.kind.as_deref() == Some(LARGE_OBJECTS),
                file: None,
            })
            .collect();
    }
    m.files
        .iter()
        .map(|f| {
            let format = match (f.is_large_objects(), m.format.as_str()) {
                (false, "csv") => CopyFormat::CsvHeader,
                (false, "json") => CopyFormat::JsonLines,
                _ => CopyFormat::Text,
            };
            DataUnit {
                schema: f.schema.clone(),
                table: f.table.clone(),
                columns: f.columns.clone(),
                large_objects: f.is_large_objects(),
                file: Some((dir.join(&f.path), f.sha256.clone(), format)),
            }
        })
        .collect()
}

/// COPY a unit's rows into `oid`, as they are laid out in the archive.
fn load_rows(
    oid: pg_sys::Oid,
    unit: &DataUnit,
    compression: Compression,
    script: Option<&ScriptReader>,
) -> Result<u64> {
    match (&unit.file, script) {
        (Some((path, sha, format)), _) => {
            copy_from::copy_file_into(oid, path, compression, &unit.columns, sha, *format)
        }
        (None, Some(r)) => {
            copy_from::copy_chunks_into(oid, &unit.columns, CopyFormat::Text, r.block())
        }
        (None, None) => unreachable!("script units come with their reader"),
    }
}

/// json: the lines go to a temporary table by COPY, then into the table through
/// json_populate_record, PostgreSQL's own inverse of row_to_json (json, not jsonb, so -0
/// and the exact spelling of numbers survive).
fn load_json(
    schema: &str,
    name: &str,
    unit: &DataUnit,
    compression: Compression,
    owner: pg_sys::Oid,
) -> Result<u64> {
    // The staging table is ours (a temporary table cannot be created in the owner's
    // restricted context); the owner reads it for the INSERT, which runs its code.
    Spi::run("CREATE TEMP TABLE pg_backup_json_rows (doc text) ON COMMIT DROP")?;
    let tmp = Spi::get_one::<pg_sys::Oid>("SELECT 'pg_temp.pg_backup_json_rows'::regclass::oid")?
        .expect("temp table exists");
    let staged = DataUnit {
        columns: vec!["doc".into()],
        ..unit.clone()
    };
    let rows = load_rows(tmp, &staged, compression, None)?;
    let owner_name = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.pg_get_userbyid($1)::pg_catalog.text",
        &[owner.into()],
    )?
    .unwrap_or_default();
    Spi::run(&format!(
        "GRANT SELECT ON pg_temp.pg_backup_json_rows TO {}",
        spi::quote_identifier(&owner_name)
    ))?;
    let target = quoted(schema, name);
    let sql = if unit.columns.is_empty() {
        format!("INSERT INTO {target} SELECT FROM pg_temp.pg_backup_json_rows")
    } else {
        let cols: Vec<String> = unit.columns.iter().map(spi::quote_identifier).collect();
        let from_record: Vec<String> = cols.iter().map(|c| format!("r.{c}")).collect();
        format!(
            "INSERT INTO {target} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM pg_temp.pg_backup_json_rows j,
             json_populate_record(NULL::{target}, j.doc::json) r",
            cols.join(", "),
            from_record.join(", ")
        )
    };
    run_as_in(owner, &[(schema, SchemaPrivilege::Usage)], || {
        Ok(Spi::run(&sql)?)
    })?;
    Spi::run("DROP TABLE pg_temp.pg_backup_json_rows")?;
    Ok(rows)
}

/// Large objects: their pages are loaded into a temporary table by COPY (on disk, not in
/// memory), then written with lo_put; objects missing in this database are created first.
fn restore_large_objects(
    unit: &DataUnit,
    compression: Compression,
    script: Option<&ScriptReader>,
) -> Result<i64> {
    Spi::run("CREATE TEMP TABLE pg_backup_lo_pages (loid oid, pageno integer, data bytea) ON COMMIT DROP")?;
    let oid = Spi::get_one::<pg_sys::Oid>("SELECT 'pg_temp.pg_backup_lo_pages'::regclass::oid")?
        .expect("temp table exists");
    let pages = load_rows(oid, unit, compression, script)?;
    Spi::run(
        "SELECT pg_catalog.lo_create(l.loid)
         FROM (SELECT DISTINCT loid FROM pg_temp.pg_backup_lo_pages) l
         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = l.loid)",
    )?;
    Spi::run(
        "SELECT pg_catalog.lo_put(loid, pageno::bigint * (current_setting('block_size')::int / 4), data)
         FROM pg_temp.pg_backup_lo_pages",
    )?;
    Spi::run("DROP TABLE pg_temp.pg_backup_lo_pages")?;
    Ok(pages as i64)
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
        assert_eq!(constraint_definition("CREATE INDEX i ON s.t (a);"), None);
    }
}
