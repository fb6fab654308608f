//! restore(): replay a backup into the current database, in pg_restore's order: pre-data DDL,
//! data through COPY FROM, then post-data (indexes, constraints, triggers, policies, sequence
//! values, materialized view refresh).
//!
//! `on_error => 'abort'` (default): everything runs in the caller's transaction, all or
//! nothing. `'continue'`: every object in its own subtransaction; failures become result rows.

pub mod names;
pub mod plan;
pub mod retarget;
pub mod scope;
pub mod sequences;

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
use crate::catalog::history::{now_rfc3339, RestoreRow};
use crate::catalog::runs;
use crate::copy::copy_from;
use crate::copy::script::ScriptReader;
use crate::copy::CopyFormat;
use crate::error::{BackupError, Result};
use crate::security::{self, Caller};
use crate::subtransaction;
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
}

impl RestoreOptions {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "tables": self.tables, "schemas": self.schemas,
            "existing": format!("{:?}", self.existing).to_lowercase(),
            "schema_only": self.schema_only, "data_only": self.data_only,
            "target_schema": self.target_schema, "disable_triggers": self.disable_triggers,
            "on_error": format!("{:?}", self.on_error).to_lowercase(), "confirm": self.confirm,
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
    // Read-only (a dry run works on a hot standby).
    Ok(crate::query::one::<pg_sys::Oid>(
        "SELECT (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2)",
        &[schema.into(), name.into()],
    )?)
}

fn relation_exists(quoted_name: &str) -> Result<bool> {
    Ok(
        crate::query::one::<bool>("SELECT to_regclass($1) IS NOT NULL", &[quoted_name.into()])?
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
    // The row exists from the start (and the shared-memory slot before it, so no sweep takes
    // the restore for dead); if the process dies, the sweep marks it failed.
    let claim = runs::claim(runs::Kind::Restore, "", 0);
    let mut record = RestoreRow {
        id: None,
        backup_id: id.to_string(),
        started_at: now_rfc3339(),
        dry_run: opts.dry_run,
        options: opts.to_json(),
        table_count: None,
        performed_by: caller.role.clone(),
        pid: unsafe { pg_sys::MyProcPid },
    };
    record.start();
    if let Some(rid) = record.id {
        claim.set_id(&rid.to_string());
    }
    let outcome = subtransaction::run(|| restore_steps(id, opts, caller, &mut record));
    let result = match outcome {
        Ok(Ok(out)) => {
            let rows: i64 = out.iter().filter_map(|r| r.3).sum();
            let failed = out.iter().filter(|r| r.4 == "failed").count();
            let error = (failed > 0)
                .then(|| format!("{failed} object(s) failed; see the rows with status 'failed'"));
            let rows = if opts.dry_run { 0 } else { rows };
            record.finish("completed", Some(rows), error);
            Ok(out)
        }
        Ok(Err(e)) => {
            record.finish(
                "failed",
                None,
                Some(format!("{e} (SQLSTATE {})", e.sqlstate())),
            );
            Err(e)
        }
        Err(caught) => {
            record.finish("failed", None, Some(subtransaction::message(&caught)));
            drop(claim);
            caught.rethrow()
        }
    };
    drop(claim);
    result
}

fn restore_steps(
    id: &str,
    opts: &RestoreOptions,
    _caller: &Caller,
    record: &mut RestoreRow,
) -> Result<Vec<Row>> {
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
    let bad: Vec<String> = verify::verify_archive(&dir, false, &crate::copy::check_for_interrupts)
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
    record.table_count = Some(plan.tables.len() as i64);
    plan::check(&plan.tables, opts.existing, opts.confirm, opts.dry_run, id)?;
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
        return Ok(out);
    }

    let job = Job {
        manifest: &manifest,
        dir: &dir,
        compression,
        opts,
        scope: &scope,
        plan: &plan,
    };
    apply(&job)
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

/// Runs the steps of a restore and collects their rows.
struct Steps {
    on_error: OnError,
    out: Vec<Row>,
}

impl Steps {
    /// Run one step. With `Tolerate::Nothing` under `on_error => 'abort'` an error ends the
    /// restore; otherwise the step runs in a subtransaction and its failure becomes a row.
    fn run(
        &mut self,
        object: String,
        kind: &str,
        action: &str,
        tolerate: Tolerate,
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
                self.out.push(row(
                    object,
                    kind,
                    "skip",
                    None,
                    "warning",
                    Some(&subtransaction::message(&c)),
                ))
            }
            Err(c) if self.on_error == OnError::Continue => self.out.push(row(
                object,
                kind,
                action,
                None,
                "failed",
                Some(&subtransaction::message(&c)),
            )),
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
}

fn apply(job: &Job) -> Result<Vec<Row>> {
    let mut steps = Steps {
        on_error: job.opts.on_error,
        out: Vec::new(),
    };
    // Function bodies may name tables that come later, as in pg_restore.
    security::set_for_call(c"check_function_bodies", c"off");
    // "schema ... already exists, skipping" and the like: the result rows say what happened.
    security::set_for_call(c"client_min_messages", c"warning");
    if let Some((_, to)) = &job.scope.target {
        let sql = format!("CREATE SCHEMA IF NOT EXISTS {}", spi::quote_identifier(to));
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
                    steps.run(
                        t.object(),
                        "table",
                        "create",
                        Tolerate::Nothing,
                        sql_step(job.scope.sql(item)),
                    )?;
                }
                continue;
            }
            // Types, functions, sequences, views ... that already exist are kept as they are.
            steps.run(
                object.clone(),
                &item.kind,
                "create",
                Tolerate::Duplicates,
                sql_step(job.scope.sql(item)),
            )?;
            if item.kind == "sequence" && steps.out.last().is_some_and(|r| r.2 == "skip") {
                kept_sequences.insert(object);
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
        steps.run(
            object,
            &item.kind,
            "create",
            tolerate,
            sql_step(job.scope.sql(item)),
        )?;
    }
    if !job.opts.schema_only {
        advance_sequences(job, &mut steps)?;
    }
    Ok(steps.out)
}

/// Last, after the backup's own sequence values: a sequence owned by a table that received
/// rows is moved past them (see `sequences`).
fn advance_sequences(job: &Job, steps: &mut Steps) -> Result<()> {
    let loaded: Vec<&PlannedTable> = job
        .plan
        .tables
        .iter()
        .filter(|t| t.action.loads_data())
        .collect();
    for t in loaded {
        let Some(oid) = table_oid(&t.schema, &t.name)? else {
            continue;
        };
        let mut moved = Vec::new();
        steps.run(t.object(), "sequence", "advance", Tolerate::Nothing, || {
            moved = sequences::advance_past_rows(oid)?;
            Ok(None)
        })?;
        // One row per sequence that moved, instead of the step's own row.
        if steps
            .out
            .last()
            .is_some_and(|r| r.4 == "ok" && r.1 == "sequence")
        {
            steps.out.pop();
            for (seq, v) in &moved {
                steps.note(row(
                    seq.clone(),
                    "sequence",
                    "advance",
                    None,
                    "ok",
                    Some(&format!("moved past the largest value of its column, {v}")),
                ));
            }
        }
    }
    Ok(())
}

fn load_data(job: &Job, steps: &mut Steps) -> Result<()> {
    // One TRUNCATE for all, so foreign keys among the restored tables do not block it; ONLY
    // the tables whose rows the backup holds (a parent's other children keep theirs).
    let with_rows = job.manifest.data_tables();
    let truncate: Vec<String> = job
        .plan
        .tables
        .iter()
        .filter(|t| t.action == Action::Truncate)
        .filter(|t| {
            with_rows
                .iter()
                .any(|(s, n)| job.plan.of(s, n).is_some_and(|p| p == *t))
        })
        .map(|t| quoted(&t.schema, &t.name))
        .collect();
    if !truncate.is_empty() {
        let sql = format!("TRUNCATE ONLY {}", truncate.join(", "));
        steps.run(
            truncate.join(", "),
            "table",
            "truncate",
            Tolerate::Nothing,
            sql_step(sql),
        )?;
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
            steps.run(
                "large objects".into(),
                "large_object_data",
                "create",
                Tolerate::Nothing,
                || {
                    let pages = restore_large_objects(&unit, job.compression, reader)?;
                    check_loaded("large objects", pages as u64, &unit)?;
                    Ok(Some(pages))
                },
            )?;
        } else {
            let t = job
                .plan
                .of(&unit.schema, &unit.table)
                .expect("wanted tables are planned");
            let (schema, name, object) = (t.schema.clone(), t.name.clone(), t.object());
            steps.run(object.clone(), "table_data", t.action.as_str(), Tolerate::Nothing, || {
                let oid = table_oid(&schema, &name)?.ok_or_else(|| {
                    BackupError::unknown(format!("table {object} does not exist and the backup has no definition for it"))
                        .with_hint("Restore a backup that includes the schema first (this one is data_only).")
                })?;
                let rows = if job.manifest.format == "json" {
                    load_json(&schema, &name, &unit, job.compression)?
                } else {
                    load_rows(oid, &unit, job.compression, reader)?
                };
                check_loaded(&object, rows, &unit)?;
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

/// A table's rows (or the large objects' pages) in the archive: a file of its own, or the
/// next COPY block of the sql format's script.
#[derive(Clone)]
struct DataUnit {
    schema: String,
    table: String,
    columns: Vec<String>,
    large_objects: bool,
    file: Option<(std::path::PathBuf, String, CopyFormat)>,
    /// Rows (or large object pages) the backup recorded: a load must find as many.
    rows: u64,
    /// The encoding of the archive's text (the backed-up database's).
    encoding: String,
}

/// A restore never reports success for rows it did not load.
fn check_loaded(object: &str, loaded: u64, unit: &DataUnit) -> Result<()> {
    if loaded == unit.rows {
        return Ok(());
    }
    Err(BackupError::corrupt(format!(
        "{object}: {loaded} rows loaded, but the backup recorded {}",
        unit.rows
    ))
    .with_hint("Nothing of this table was kept. Run backup.verify() on this backup (deep => true); a trigger or rule on the table that skips rows also causes this."))
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
                rows: b.rows,
                encoding: m.encoding.clone(),
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
                rows: f.rows,
                encoding: m.encoding.clone(),
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
        (Some((path, sha, format)), _) => copy_from::copy_file_into(
            oid,
            path,
            compression,
            &unit.columns,
            sha,
            *format,
            &unit.encoding,
        ),
        (None, Some(r)) => copy_from::copy_chunks_into(
            oid,
            &unit.columns,
            CopyFormat::Text,
            &unit.encoding,
            r.block(),
        ),
        (None, None) => unreachable!("script units come with their reader"),
    }
}

/// json: the lines go to a temporary table by COPY, then into the table through
/// json_populate_record, PostgreSQL's own inverse of row_to_json (json, not jsonb, so -0
/// and the exact spelling of numbers survive).
fn load_json(schema: &str, name: &str, unit: &DataUnit, compression: Compression) -> Result<u64> {
    Spi::run("CREATE TEMP TABLE pg_backup_json_rows (doc text) ON COMMIT DROP")?;
    let tmp = Spi::get_one::<pg_sys::Oid>("SELECT 'pg_temp.pg_backup_json_rows'::regclass::oid")?
        .expect("temp table exists");
    let staged = DataUnit {
        columns: vec!["doc".into()],
        ..unit.clone()
    };
    let staged_rows = load_rows(tmp, &staged, compression, None)?;
    if staged_rows != unit.rows {
        // Checked by the caller too; stop before parsing lines that are not all there.
        return Ok(staged_rows);
    }
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
    let inserted = Spi::connect_mut(|c| c.update(sql.as_str(), None, &[]).map(|t| t.len()))?;
    Spi::run("DROP TABLE pg_temp.pg_backup_json_rows")?;
    Ok(inserted as u64)
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
