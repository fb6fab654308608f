//! The data pass of a restore: each table's rows (and the large objects' pages) through
//! COPY FROM, in the layout of the archive's format.

use crate::storage::archive_files::FileRef;
use pgrx::prelude::*;

use super::plan::{Action, PlannedTable};
use super::runner::{row, sql_step, Job, Runner, Tolerate};
use super::scope::quoted;
use crate::archive::compression::Compression;
use crate::archive::manifest::{Manifest, LARGE_OBJECTS};
use crate::copy::copy_from;
use crate::copy::script::ScriptReader;
use crate::copy::CopyFormat;
use crate::error::{BackupError, Result};
use crate::security;
use crate::security::owner::{relation_owner, run_as, run_as_in, SchemaPrivilege};

pub fn table_oid(schema: &str, name: &str) -> Result<Option<pg_sys::Oid>> {
    // Read-only (a dry run plans on a hot standby).
    Ok(crate::query::one::<pg_sys::Oid>(
        "SELECT (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2)",
        &[crate::text::arg(schema), crate::text::arg(name)],
    )?)
}

pub fn load_data(job: &Job, steps: &mut Runner) -> Result<()> {
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
            // Large objects run no code: written as the extension owner.
            steps.run_data("large objects".into(), "large_object_data", "load", || {
                let pages = restore_large_objects(&unit, job.compression, reader)?;
                check_loaded("large objects", pages as u64, &unit)?;
                Ok(Some(pages))
            })?;
        } else {
            let t = job
                .plan
                .of(&unit.schema, &unit.table)
                .expect("wanted tables are planned");
            let (schema, name, object) = (t.schema.clone(), t.name.clone(), t.object());
            steps.run_data(object.clone(), "table_data", "load", || {
                let oid = table_oid(&schema, &name)?.ok_or_else(|| {
                    BackupError::unknown(format!(
                        "table {object} does not exist and the backup has no definition for it"
                    ))
                    .with_hint(
                        "Restore a backup that includes the schema first (this one is data_only).",
                    )
                })?;
                // Defaults, generated columns, CHECKs, domain CHECKs, partition routing and
                // triggers fire while rows load: with the table owner's rights (issue 9).
                let owner = job.code_owner(oid, &unit.schema, &unit.table)?;
                let rows = if job.manifest.format == "json" {
                    load_json(&schema, &name, &unit, job.compression, owner)?
                } else {
                    run_as(owner, || load_rows(oid, &unit, job.compression, reader))?
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
    file: Option<(FileRef, String, CopyFormat)>,
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

fn data_units(m: &Manifest, job: &Job) -> Vec<DataUnit> {
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
                file: Some((job.file(&f.path), f.sha256.clone(), format)),
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
        format!(
            "INSERT INTO {target} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM pg_temp.pg_backup_json_rows j,
             pg_catalog.json_populate_record(NULL::{target}, j.doc::pg_catalog.json) r",
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

/// TRUNCATE fires the tables' ON TRUNCATE triggers: run as their owner. Tables of several
/// owners go in one statement (foreign keys among them need it) when none has such a
/// trigger, else one statement per owner.
fn truncate_tables(steps: &mut Runner, tables: &[&PlannedTable]) -> Result<()> {
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
        steps.run(
            all.join(", "),
            "table",
            "truncate",
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
        steps.run_data(names.join(", "), "table", "truncate", || {
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
