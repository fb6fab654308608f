//! The data pass of a restore: each table's rows (and the large objects' pages) through
//! COPY FROM, in the layout of the archive's format.

use crate::storage::archive_files::FileRef;
use pgrx::prelude::*;

use super::job::Job;
use super::plan::{table_oid, Action as TableAction, Existing, PlannedTable};
use super::policy::Tolerate;
use super::result::{Action, Row, Status};
use super::scope::quoted;
use super::step::{sql_step, Runner};
use crate::archive::compression::Compression;
use crate::archive::manifest::{FileKind, Format, Manifest, Part};
use crate::archive::toc::{EntryKind, TocEntry};
use crate::copy::copy_from;
use crate::copy::script::ScriptReader;
use crate::copy::CopyFormat;
use crate::error::{BackupError, Result};
use crate::security::owner::{relation_owner, run_as, run_as_in, SchemaPrivilege};

/// What a restore does with the rows of an extension's configuration table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigLoad {
    /// Load them: after the extension's own rows (`append`: into a configuration table that
    /// was there before this restore).
    Load { append: bool },
    /// Leave the table as it is, for this reason.
    Keep(String),
}

/// The rule for an extension's configuration rows (and sequences): they come with their
/// extension. Into an extension this restore creates they are loaded after CREATE EXTENSION
/// (as pg_restore does); an extension that was there before the restore (`preexisting`; or
/// unknown, in a data-only backup) keeps its configuration (a target's own settings, and
/// pg_cron-like job lists, are not overwritten), unless `existing => 'append'` asks to add
/// the backup's rows to it.
pub fn config_decision(
    extension: Option<&TocEntry>,
    preexisting: &std::collections::HashSet<String>,
    existing: Existing,
) -> ConfigLoad {
    match extension {
        Some(x) if !preexisting.contains(&x.name) => ConfigLoad::Load { append: false },
        _ if existing == Existing::Append => ConfigLoad::Load { append: true },
        Some(x) => ConfigLoad::Keep(format!(
            "extension {} existed before this restore: its configuration rows were kept (existing => 'append' adds the backup's)",
            x.name
        )),
        None => ConfigLoad::Keep(
            "its extension is not created by this restore: its configuration rows were kept (existing => 'append' adds the backup's)"
                .into(),
        ),
    }
}

/// The TOC entry of a configuration table's rows (if this restore takes it) and its
/// extension's entry (if the backup has it).
pub fn config_entries<'a>(
    job: &Job<'a>,
    schema: &str,
    table: &str,
) -> Option<(&'a TocEntry, Option<&'a TocEntry>)> {
    let toc = &job.manifest.toc;
    let e = toc.iter().find(|e| {
        e.kind == EntryKind::ExtensionData
            && e.sql.is_empty()
            && e.schema.as_deref() == Some(schema)
            && e.name == table
    })?;
    job.scope.why(e)?;
    let ext = e
        .belongs_to
        .and_then(|b| toc.iter().find(|x| x.id == b))
        .filter(|x| x.kind == EntryKind::Extension);
    Some((e, ext))
}

/// The rows of an extension's configuration table: appended (COPY / the json INSERT) to
/// the rows the extension has, as the table's owner (its triggers, defaults and checks are
/// the extension's code); an operator only into a table whose owner it can act as.
fn load_config_rows(
    job: &Job,
    steps: &mut Runner,
    unit: &DataUnit,
    reader: Option<&ScriptReader>,
    preexisting: &std::collections::HashSet<String>,
) -> Result<()> {
    let Some((_, ext)) = config_entries(job, &unit.schema, &unit.table) else {
        return Ok(());
    };
    let object = format!("{}.{}", unit.schema, unit.table);
    let append = match config_decision(ext, preexisting, job.opts.existing) {
        ConfigLoad::Load { append } => append,
        ConfigLoad::Keep(why) => {
            steps.note(
                Row::new(
                    object,
                    EntryKind::ExtensionData.as_str(),
                    Action::Skip,
                    Status::Warning,
                )
                .detail(why),
            );
            return Ok(());
        }
    };
    let oid = table_oid(&unit.schema, &unit.table)?;
    if let (Some(oid), false) = (oid, job.restorer.superuser) {
        // Loaded as the table's owner: only by a caller who can act as that role.
        let may = crate::query::one::<bool>(
            "SELECT pg_catalog.pg_has_role($1, c.relowner, 'USAGE') FROM pg_catalog.pg_class c WHERE c.oid = $2",
            &[job.restorer.oid.into(), oid.into()],
        )?
        .unwrap_or(false);
        if !may {
            steps.note(
                Row::new(object, EntryKind::ExtensionData.as_str(), Action::Skip, Status::Warning)
                    .detail(format!(
                        "role {} cannot act as the owner of this configuration table: its rows were not restored; a superuser restores them",
                        job.restorer.name
                    )),
            );
            return Ok(());
        }
    }
    let action = if append { Action::Append } else { Action::Load };
    let (schema, name) = (unit.schema.clone(), unit.table.clone());
    steps.run_data(
        object.clone(),
        EntryKind::ExtensionData.as_str(),
        action,
        || {
            let oid = oid.ok_or_else(|| {
                BackupError::unknown(format!(
                    "configuration table {object} does not exist: its extension did not create it"
                ))
                .with_hint("Restore into a database where the backup's extensions can be created (the same extension versions), or leave the rows out with schema_only => true.")
            })?;
            let owner = relation_owner(oid)?;
            let rows = if job.manifest.format == Format::Json {
                load_json(&schema, &name, unit, job.compression, owner)?
            } else {
                run_as(owner, || load_rows(oid, unit, job.compression, reader))?
            };
            check_loaded(&object, rows, unit)?;
            if append {
                // Numbers handed out after the restore must not collide with the rows added.
                super::sequences::advance_past_rows(oid, |seq| job.restorer.may_update_sequence(seq))?;
            }
            Ok(Some(rows as i64))
        },
    )?;
    Ok(())
}

pub fn load_data(
    job: &Job,
    steps: &mut Runner,
    preexisting: &std::collections::HashSet<String>,
) -> Result<()> {
    truncate_replaced(job, steps)?;
    let script = match job.manifest.files.iter().find(|f| f.is_script()) {
        Some(f) => Some((
            ScriptReader::open(
                &job.file(&f.path),
                job.compression,
                job.manifest
                    .script_tables
                    .iter()
                    .map(|b| crate::text::to_encoding(&b.header, &job.manifest.encoding))
                    .collect(),
            )?,
            f.sha256.clone(),
        )),
        None => None,
    };
    for unit in data_units(job.manifest, job) {
        let reader = script.as_ref().map(|(r, _)| r);
        // Each script block is consumed in turn whatever happens to its table.
        if let Some(r) = reader {
            r.begin_block();
        }
        load_unit(job, steps, &unit, reader, preexisting)?;
        if let Some(r) = reader {
            r.end_block();
        }
    }
    if let Some((reader, sha)) = script {
        reader.finish(&sha)?;
    }
    Ok(())
}

/// One TRUNCATE for all, so foreign keys among the restored tables do not block it; ONLY
/// the tables whose rows the backup holds (a parent's other children keep theirs).
pub fn truncate_replaced(job: &Job, steps: &mut Runner) -> Result<()> {
    let with_rows = job.manifest.data_tables();
    let truncate: Vec<&PlannedTable> = job
        .plan
        .tables
        .iter()
        .filter(|t| t.action == TableAction::Truncate)
        .filter(|t| {
            with_rows
                .iter()
                .any(|(s, n)| job.plan.of(s, n).is_some_and(|p| p == *t))
        })
        .collect();
    if !truncate.is_empty() {
        truncate_tables(job, steps, &truncate)?;
    }
    Ok(())
}

/// Load one unit's rows: a table's (a row saying it was skipped if the table is kept), the
/// large objects', or an extension's configuration rows. Serial restores and each worker of
/// restore(jobs => N) load through here.
pub fn load_unit(
    job: &Job,
    steps: &mut Runner,
    unit: &DataUnit,
    reader: Option<&ScriptReader>,
    preexisting: &std::collections::HashSet<String>,
) -> Result<()> {
    if unit.extension {
        return load_config_rows(job, steps, unit, reader, preexisting);
    }
    if !unit_wanted(job, unit) {
        if let Some(t) = job.plan.of(&unit.schema, &unit.table) {
            steps.note(
                Row::new(t.object(), "table_data", Action::Skip, Status::Ok).detail("table exists"),
            );
        }
        return Ok(());
    }
    if unit.large_objects {
        // Large objects run no code: written as the extension owner.
        steps.run_data(
            "large objects".into(),
            "large_object_data",
            Action::Load,
            || {
                let pages = restore_large_objects(unit, job.compression, reader)?;
                check_loaded("large objects", pages as u64, unit)?;
                Ok(Some(pages))
            },
        )?;
    } else {
        let t = job
            .plan
            .of(&unit.schema, &unit.table)
            .expect("wanted tables are planned");
        let (schema, name, object) = (t.schema.clone(), t.name.clone(), t.object());
        let destination = job.plan.destination(&unit.schema, &unit.table);
        let created = t.action.runs_ddl();
        steps.run_data(object.clone(), "table_data", Action::Load, || {
            let oid = table_oid(&schema, &name)?.ok_or_else(|| {
                if created {
                    // This restore ran the table's CREATE, which failed (its own row says
                    // why, e.g. DDL of an older server that this one refuses).
                    BackupError::unknown(format!(
                        "table {object} was not restored: its rows were not loaded"
                    ))
                    .with_hint("The table's own row of this restore says why its CREATE failed.")
                } else {
                    BackupError::unknown(format!(
                        "table {object} does not exist and the backup has no definition for it"
                    ))
                    .with_hint(
                        "Restore a backup that includes the schema first (this one is data_only).",
                    )
                }
            })?;
            if Some(oid) != destination {
                // Rows go only where the plan said (issue 17): not into a table of that name
                // that another session created while this restore's CREATE failed.
                return Err(BackupError::exists(if created {
                    format!("table {object} was not created by this restore: its rows were not loaded into the table of that name that exists now")
                } else {
                    format!("table {object} was replaced after this restore planned it: its rows were not loaded into it")
                })
                .with_hint("Check who created or replaced that table, then restore it again (existing => 'append' or 'truncate' if its rows should go there)."));
            }
            // Defaults, generated columns, CHECKs, domain CHECKs, partition routing and
            // triggers fire while rows load: with the table owner's rights (issue 9).
            let owner = job.code_owner(oid, &unit.schema, &unit.table)?;
            // disable_triggers: off for this table's load only, in the same step (a
            // batched restore never commits a table with its triggers off).
            let disabled = if job.opts.disable_triggers {
                disable_triggers(oid, job.restorer.superuser)?
            } else {
                Vec::new()
            };
            // A split table's parts, in order, in this one step: its rows are all there
            // or (a failure under on_error => 'continue') none.
            let mut rows = 0u64;
            for piece in unit.pieces() {
                let n = if job.manifest.format == Format::Json {
                    load_json(&schema, &name, piece, job.compression, owner)?
                } else {
                    run_as(owner, || load_rows(oid, piece, job.compression, reader))?
                };
                check_loaded(&object, n, piece)?;
                rows += n;
            }
            restore_triggers(&disabled)?;
            Ok(Some(rows as i64))
        })?;
        if let (Some(p), true) = (unit.part, unit.more.is_empty()) {
            // One part of a split table (a job of a parallel restore): the row says which.
            if let Some(r) = steps.out.last_mut().filter(|r| r.object == object) {
                r.detail = Some(p.describe());
            }
        }
    }
    Ok(())
}

/// Whether the restore loads this unit's rows.
pub fn unit_wanted(job: &Job, unit: &DataUnit) -> bool {
    if unit.large_objects {
        job.scope.full
    } else {
        job.plan
            .of(&unit.schema, &unit.table)
            .is_some_and(|t| t.action.loads_data())
    }
}

/// A trigger `disable_triggers` switched off: (relation, trigger name, its `tgenabled`).
type DisabledTrigger = (String, String, String);

/// `disable_triggers => true`: the triggers of table `oid` (and of its partitions, where rows
/// are routed) that would fire are switched off for the load. For a superuser every trigger,
/// foreign key checks included, as `pg_restore --disable-triggers` does (`DISABLE TRIGGER
/// ALL`); for anyone else only user triggers: PostgreSQL lets only superusers disable the
/// internal triggers that check foreign keys, so rows that violate a foreign key never get in.
/// Each trigger gets back exactly the state it had (`restore_triggers`), in the same step.
fn disable_triggers(oid: pg_sys::Oid, superuser: bool) -> Result<Vec<DisabledTrigger>> {
    let triggers: Vec<DisabledTrigger> = Spi::connect(|c| {
        c.select(
            "SELECT t.tgrelid::pg_catalog.regclass::pg_catalog.text, t.tgname::pg_catalog.text,
                    t.tgenabled::pg_catalog.text
             FROM pg_catalog.pg_trigger t
             WHERE (t.tgrelid = $1 OR t.tgrelid IN (SELECT relid FROM pg_catalog.pg_partition_tree($1)))
               AND t.tgenabled <> 'D' AND ($2 OR NOT t.tgisinternal)
             ORDER BY t.tgrelid, t.tgname",
            None,
            &[oid.into(), superuser.into()],
        )?
        .map(|r| {
            Ok((
                r.get::<crate::text::Text>(1)?.unwrap_or_default().0,
                r.get::<crate::text::Text>(2)?.unwrap_or_default().0,
                r.get::<String>(3)?.unwrap_or_default(),
            ))
        })
        .collect::<Result<Vec<_>>>()
    })?;
    for (rel, name, _) in &triggers {
        crate::text::run(&format!(
            "ALTER TABLE ONLY {rel} DISABLE TRIGGER {}",
            spi::quote_identifier(name)
        ))?;
    }
    // The load opens the table next: its cached trigger list must already say "off".
    // SAFETY: inside the restore's transaction (a statement just ran through SPI); makes its
    // catalog changes visible to the commands that follow.
    unsafe { pg_sys::CommandCounterIncrement() };
    Ok(triggers)
}

/// Give the triggers `disable_triggers` switched off their state back.
fn restore_triggers(disabled: &[DisabledTrigger]) -> Result<()> {
    for (rel, name, state) in disabled {
        let how = match state.as_str() {
            "A" => "ENABLE ALWAYS",
            "R" => "ENABLE REPLICA",
            _ => "ENABLE",
        };
        crate::text::run(&format!(
            "ALTER TABLE ONLY {rel} {how} TRIGGER {}",
            spi::quote_identifier(name)
        ))?;
    }
    Ok(())
}

/// A table's rows (or the large objects' pages) in the archive: a file of its own, or the
/// next COPY block of the sql format's script.
#[derive(Clone)]
pub struct DataUnit {
    pub schema: String,
    pub table: String,
    columns: Vec<String>,
    pub large_objects: bool,
    /// The rows of an extension's configuration table.
    pub extension: bool,
    file: Option<(FileRef, String, CopyFormat)>,
    /// Rows (or large object pages) the backup recorded: a load must find as many.
    rows: u64,
    /// Bytes of its file (the biggest start first in a parallel restore).
    pub bytes: u64,
    /// The encoding of the archive's text (the backed-up database's).
    encoding: String,
    /// A split table: which part this unit is (the first, for the table's unit).
    pub part: Option<Part>,
    /// A split table's unit: its other parts, in order (each a unit of its own, with no
    /// `more`). A serial restore loads them all in the table's one step; a parallel one
    /// hands each part to a job of its own (`piece`).
    pub more: Vec<DataUnit>,
}

impl DataUnit {
    /// This unit's files: itself and its other parts.
    pub fn pieces(&self) -> impl Iterator<Item = &DataUnit> {
        std::iter::once(self).chain(self.more.iter())
    }

    /// How many files this unit loads.
    pub fn piece_count(&self) -> usize {
        1 + self.more.len()
    }

    /// Piece `k` (0: the first part) as a unit of its own, for one job.
    pub fn piece(&self, k: usize) -> Option<DataUnit> {
        match k {
            0 => Some(DataUnit {
                more: Vec::new(),
                ..self.clone()
            }),
            k => self.more.get(k - 1).cloned(),
        }
    }
}

/// A restore never reports success for rows it did not load.
fn check_loaded(object: &str, loaded: u64, unit: &DataUnit) -> Result<()> {
    if loaded == unit.rows {
        return Ok(());
    }
    let part = unit
        .part
        .map(|p| format!(" ({})", p.describe()))
        .unwrap_or_default();
    Err(BackupError::corrupt(format!(
        "{object}{part}: {loaded} rows loaded, but the backup recorded {}",
        unit.rows
    ))
    .with_hint("Nothing of this table was kept. Run backup.verify() on this backup (deep => true); a trigger or rule on the table that skips rows also causes this."))
}

/// The units of rows in the archive: extensions' configuration rows first (in the archive's
/// order, which is their foreign keys'), then the tables' and the large objects', in the
/// archive's order. The rows of a table can need them: extension code that reads its own
/// tables while rows are written (a geography value or a generated column's ST_Transform in
/// a custom SRID of spatial_ref_sys, a unit of unit_units) must find them there, as CREATE
/// EXTENSION's own rows are. The sql format's script is read in order (one block after the
/// other; create() writes the configuration rows first there too): its units have no file
/// of their own.
pub fn data_units(m: &Manifest, job: &Job) -> Vec<DataUnit> {
    if m.files.iter().any(|f| f.is_script()) {
        return m
            .script_tables
            .iter()
            .map(|b| DataUnit {
                schema: b.schema.clone(),
                table: b.table.clone(),
                columns: b.columns.clone(),
                large_objects: b.kind == Some(FileKind::LargeObjects),
                extension: b.kind == Some(FileKind::ExtensionData),
                file: None,
                rows: b.rows,
                bytes: 0,
                encoding: m.encoding.clone(),
                part: None,
                more: Vec::new(),
            })
            .collect();
    }
    let (config, rest): (Vec<_>, Vec<_>) = m.files.iter().partition(|f| f.is_extension_data());
    let units = config.into_iter().chain(rest).map(|f| {
        let format = match (f.is_large_objects(), m.format) {
            (false, Format::Csv) => CopyFormat::CsvHeader,
            (false, Format::Json) => CopyFormat::JsonLines,
            _ => CopyFormat::Text,
        };
        DataUnit {
            schema: f.schema.clone(),
            table: f.table.clone(),
            columns: f.columns.clone(),
            large_objects: f.is_large_objects(),
            extension: f.is_extension_data(),
            file: Some((job.file(&f.path), f.sha256.clone(), format)),
            rows: f.rows,
            bytes: f.bytes,
            encoding: m.encoding.clone(),
            part: f.part,
            more: Vec::new(),
        }
    });
    // The parts of a split table become one unit, where the table's first file is (a
    // manifest lists each part once: Manifest::from_json), its parts in order.
    let mut out: Vec<DataUnit> = Vec::new();
    for u in units {
        let group = match u.part {
            Some(_) => out
                .iter_mut()
                .find(|o| o.part.is_some() && o.schema == u.schema && o.table == u.table),
            None => None,
        };
        match group {
            Some(o) => o.more.push(u),
            None => out.push(u),
        }
    }
    for o in out.iter_mut().filter(|o| !o.more.is_empty()) {
        let mut all: Vec<DataUnit> = std::iter::once(DataUnit {
            more: Vec::new(),
            ..o.clone()
        })
        .chain(std::mem::take(&mut o.more))
        .collect();
        all.sort_by_key(|u| u.part.map(|p| p.index));
        let mut all = all.into_iter();
        if let Some(first) = all.next() {
            *o = DataUnit {
                more: all.collect(),
                ..first
            };
        }
    }
    out
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
fn load_json(
    schema: &str,
    name: &str,
    unit: &DataUnit,
    compression: Compression,
    owner: pg_sys::Oid,
) -> Result<u64> {
    // The staging table is ours (the owner's restricted context cannot create a temporary
    // table); the owner reads it for the INSERT, which runs its code.
    Spi::run("CREATE TEMP TABLE pg_backup_json_rows (doc text) ON COMMIT DROP")?;
    let tmp = Spi::get_one::<pg_sys::Oid>("SELECT 'pg_temp.pg_backup_json_rows'::regclass::oid")?
        .expect("temp table exists");
    let staged = DataUnit {
        columns: vec!["doc".into()],
        ..unit.clone()
    };
    let staged_rows = load_rows(tmp, &staged, compression, None)?;
    if staged_rows != unit.rows {
        // The caller reports it; do not parse lines that are not all there.
        return Ok(staged_rows);
    }
    let owner_name = Spi::get_one_with_args::<crate::text::Text>(
        "SELECT pg_catalog.pg_get_userbyid($1)::pg_catalog.text",
        &[owner.into()],
    )?
    .unwrap_or_default()
    .0;
    crate::text::run(&format!(
        "GRANT SELECT ON pg_temp.pg_backup_json_rows TO {}",
        spi::quote_identifier(&owner_name)
    ))?;
    let target = quoted(schema, name);
    let sql = if unit.columns.is_empty() {
        format!("INSERT INTO {target} SELECT FROM pg_temp.pg_backup_json_rows")
    } else {
        let cols: Vec<String> = unit.columns.iter().map(spi::quote_identifier).collect();
        let from_record: Vec<String> = cols.iter().map(|c| format!("r.{c}")).collect();
        // The record of the loaded columns only (json_to_record, the same conversion as
        // json_populate_record): a record of the whole row type would also hold the columns
        // the file does not (generated ones) as NULL, which a domain over NOT NULL refuses.
        // It is also what backup's json check reads its values back with.
        let record = Spi::get_one_with_args::<crate::text::Text>(
            "SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname) || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod), ', ' ORDER BY u.ord)
             FROM pg_catalog.unnest($2::pg_catalog.text[]) WITH ORDINALITY u(name, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = $1::pg_catalog.regclass AND a.attname = u.name AND NOT a.attisdropped",
            &[crate::text::arg(target.clone()), crate::text::args(&unit.columns)],
        )?
        .unwrap_or_default()
        .0;
        format!(
            "INSERT INTO {target} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM pg_temp.pg_backup_json_rows j,
             pg_catalog.json_to_record(j.doc::pg_catalog.json) AS r({record})",
            cols.join(", "),
            from_record.join(", ")
        )
    };
    // What the INSERT stored (a trigger or rule may skip rows).
    let inserted = run_as_in(owner, &[(schema, SchemaPrivilege::Usage)], || {
        Ok(Spi::connect_mut(|c| {
            c.update(crate::text::statement(&sql).as_c_str(), None, &[])
                .map(|t| t.len())
        })?)
    })?;
    Spi::run("DROP TABLE pg_temp.pg_backup_json_rows")?;
    Ok(inserted as u64)
}

/// TRUNCATE fires the tables' ON TRUNCATE triggers: run as their owner (or the caller,
/// `Restorer::code_role_on`). Tables of several
/// owners go in one statement (foreign keys among them need it) when none has such a
/// trigger, else one statement per owner.
fn truncate_tables(job: &Job, steps: &mut Runner, tables: &[&PlannedTable]) -> Result<()> {
    let mut by_owner: Vec<(pg_sys::Oid, Vec<String>)> = Vec::new();
    let schemas: Vec<String> = tables.iter().map(|t| t.schema.clone()).collect();
    let mut oids = Vec::new();
    for t in tables {
        let Some(oid) = table_oid(&t.schema, &t.name)? else {
            continue;
        };
        oids.push(oid);
        let owner = job.restorer.code_role_on(relation_owner(oid)?);
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
        steps.run(
            all.join(", "),
            "table",
            Action::Truncate,
            Tolerate::Nothing,
            sql_step(sql),
        )?;
        return Ok(());
    }
    for (owner, names) in by_owner {
        let sql = format!("TRUNCATE ONLY {}", names.join(", "));
        let needs: Vec<(&str, SchemaPrivilege)> = schemas
            .iter()
            .map(|s| (s.as_str(), SchemaPrivilege::Usage))
            .collect();
        steps.run_data(names.join(", "), "table", Action::Truncate, || {
            run_as_in(owner, &needs, || Ok(crate::text::run(&sql)?))?;
            Ok(None)
        })?;
    }
    Ok(())
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
