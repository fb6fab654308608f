//! The create() core: one consistent, checksummed archive of the selected relations.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pgrx::prelude::*;

use super::options::CreateOptions;
use super::select::{self, Selection};
use crate::archive::id;
use crate::archive::manifest::{DataFile, Manifest, FORMAT_VERSION, LARGE_OBJECTS};
use crate::archive::writer::{ArchiveWriter, TMP_PREFIX};
use crate::catalog::history::{self, BackupRow};
use crate::copy::copy_to;
use crate::ddl;
use crate::error::{BackupError, Result};
use crate::security::Caller;
use crate::{guc, subtransaction};

#[derive(Debug, Clone)]
pub struct Summary {
    pub backup_id: String,
    pub status: String,
    pub tables: i64,
    pub rows: i64,
    pub bytes: i64,
    pub duration: Duration,
    pub path: String,
}

/// The backup this backend is writing, for the exit callback (pg_terminate_backend ends a
/// backend with FATAL, which skips every Rust frame).
struct InFlight {
    id: String,
    tmp_dir: PathBuf,
}
static IN_FLIGHT: Mutex<Option<InFlight>> = Mutex::new(None);
static EXIT_CALLBACK: std::sync::Once = std::sync::Once::new();

#[pg_guard]
unsafe extern "C-unwind" fn on_backend_exit(_code: i32, _arg: pg_sys::Datum) {
    let taken = IN_FLIGHT.lock().ok().and_then(|mut g| g.take());
    if let Some(f) = taken {
        ArchiveWriter::abandon(&f.tmp_dir);
        history::record_exit(
            &f.id,
            "backend exited before the backup finished (terminated or crashed)",
        );
    }
}

fn set_in_flight(v: Option<InFlight>) {
    EXIT_CALLBACK.call_once(|| unsafe {
        pg_sys::before_shmem_exit(Some(on_backend_exit), pg_sys::Datum::from(0))
    });
    if let Ok(mut g) = IN_FLIGHT.lock() {
        *g = v;
    }
}

/// Mark as failed the `running` rows whose backend is gone (server crash, kill -9).
pub fn sweep_dead_runs() -> Result<()> {
    Spi::run(
        "UPDATE backup.backups b SET status = 'failed', finished_at = coalesce(b.finished_at, now()), pid = NULL,
                error = coalesce(b.error, 'backend exited before the backup finished')
         WHERE b.status = 'running'
           AND (b.pid IS NULL OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = b.pid))",
    )?;
    Ok(())
}

pub fn create(opts: &CreateOptions, caller: &Caller, schedule: Option<&str>) -> Result<Summary> {
    sweep_dead_runs()?;
    let started = Instant::now();
    let id = id::generate(chrono::Utc::now(), opts.label.as_deref());
    id::validate(&id)?;
    let base = guc::directory();
    let mut row = BackupRow {
        id: id.clone(),
        label: opts.label.clone(),
        status: "running",
        kind: opts.kind(),
        format: opts.format.clone(),
        compression: opts.compression.name(),
        options: opts.to_json(),
        started_at: history::now_rfc3339(),
        finished_at: None,
        table_count: None,
        row_count: None,
        bytes: None,
        manifest_sha256: None,
        path: Some(base.join(&id).to_string_lossy().into_owned()),
        schedule: schedule.map(str::to_string),
        created_by: Some(caller.role.clone()),
        error: None,
        pid: Some(unsafe { pg_sys::MyProcPid }),
        progress: None,
    };
    history::record(&row);
    let tmp_dir = base.join(format!("{TMP_PREFIX}{id}"));
    set_in_flight(Some(InFlight {
        id: id.clone(),
        tmp_dir: tmp_dir.clone(),
    }));

    let outcome = subtransaction::run(|| take(opts, caller, &id, &base, &mut row));
    set_in_flight(None);
    row.finished_at = Some(history::now_rfc3339());
    row.pid = None;
    row.progress = None;
    match outcome {
        Ok(Ok((manifest, sha))) => {
            row.status = "completed";
            row.table_count = Some(manifest.files.len() as i64);
            row.row_count = Some(manifest.total_rows() as i64);
            row.bytes = Some(dir_size(&base.join(&id)) as i64);
            row.manifest_sha256 = Some(sha);
            history::record(&row);
            Ok(Summary {
                backup_id: id.clone(),
                status: "completed".into(),
                tables: manifest.files.len() as i64,
                rows: manifest.total_rows() as i64,
                bytes: row.bytes.unwrap_or(0),
                duration: started.elapsed(),
                path: row.path.clone().unwrap_or_default(),
            })
        }
        Ok(Err(e)) => {
            ArchiveWriter::abandon(&tmp_dir);
            row.status = "failed";
            row.error = Some(format!("{} (SQLSTATE {})", e, e.sqlstate()));
            history::record(&row);
            Err(e)
        }
        Err(caught) => {
            ArchiveWriter::abandon(&tmp_dir);
            row.status = "failed";
            row.error = Some(subtransaction::message(&caught));
            history::record(&row);
            caught.rethrow()
        }
    }
}

/// Everything that happens under the one snapshot. Runs inside a subtransaction.
fn take(
    opts: &CreateOptions,
    caller: &Caller,
    id: &str,
    base: &Path,
    row: &mut BackupRow,
) -> Result<(Manifest, String)> {
    let sel: Selection = select::select(opts, &caller.schemas)?;
    // ACCESS SHARE on everything first (as pg_dump does), then the snapshot: no concurrent
    // DDL can change a table under us, and every COPY sees the same committed state.
    for r in &sel.relations {
        unsafe { pg_sys::LockRelationOid(r.oid, pg_sys::AccessShareLock as i32) };
    }
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
    let result = write_archive(opts, id, base, &sel, row);
    unsafe { pg_sys::PopActiveSnapshot() };
    result
}

fn write_archive(
    opts: &CreateOptions,
    id: &str,
    base: &Path,
    sel: &Selection,
    row: &mut BackupRow,
) -> Result<(Manifest, String)> {
    let ddl = if opts.data_only {
        let mut d = ddl::extract(sel)?;
        d.pre_data.clear();
        d.post_data.retain(|i| i.kind == "sequence_set");
        d
    } else {
        let mut d = ddl::extract(sel)?;
        if opts.schema_only {
            d.post_data.retain(|i| i.kind != "sequence_set");
        }
        d
    };
    let writer = ArchiveWriter::begin(base, id)?;
    let mut files = Vec::new();
    let tables: &[select::Relation] = if opts.schema_only {
        &[]
    } else {
        &sel.data_tables
    };
    let mut last_progress = Instant::now();
    for (i, t) in tables.iter().enumerate() {
        pgrx::check_for_interrupts!();
        if last_progress.elapsed() > Duration::from_secs(2) {
            row.progress = Some(serde_json::json!({
                "tables_done": i, "tables_total": tables.len(), "current_table": format!("{}.{}", t.schema, t.name)
            }));
            history::record(row);
            last_progress = Instant::now();
        }
        let columns = ddl::copy_columns(t.oid)?;
        let (rel_path, abs_path) = writer.data_path(i + 1, opts.compression);
        let (rows, stats) = copy_to::copy_to_file(
            copy_to::CopySource::Table(t.oid),
            &abs_path,
            opts.compression,
        )?;
        if opts.verbose {
            pgrx::notice!(
                "pg_backup: {}.{}: {} rows, {} bytes ({} before compression)",
                t.schema,
                t.name,
                rows,
                stats.bytes,
                stats.raw_bytes
            );
        }
        files.push(DataFile {
            path: rel_path,
            kind: None,
            schema: t.schema.clone(),
            table: t.name.clone(),
            columns,
            rows,
            bytes: stats.bytes,
            raw_bytes: stats.raw_bytes,
            sha256: stats.sha256,
        });
    }
    if sel.large_objects && !opts.schema_only {
        let count = Spi::get_one::<i64>("SELECT count(*) FROM pg_catalog.pg_largeobject_metadata")?
            .unwrap_or(0);
        if count > 0 {
            let (rel_path, abs_path) = writer.data_path(files.len() + 1, opts.compression);
            let (rows, stats) = copy_to::copy_to_file(
                copy_to::CopySource::Query(ddl::LARGE_OBJECT_PAGES),
                &abs_path,
                opts.compression,
            )?;
            files.push(DataFile {
                path: rel_path,
                kind: Some(LARGE_OBJECTS.into()),
                schema: "pg_catalog".into(),
                table: "pg_largeobject".into(),
                columns: vec!["loid".into(), "pageno".into(), "data".into()],
                rows,
                bytes: stats.bytes,
                raw_bytes: stats.raw_bytes,
                sha256: stats.sha256,
            });
        }
    }
    let (database, encoding, server_version) = server_facts()?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        pg_backup_version: env!("CARGO_PKG_VERSION").to_string(),
        backup_id: id.to_string(),
        label: opts.label.clone(),
        created_at: history::now_rfc3339(),
        server_version,
        database,
        encoding,
        format: opts.format.clone(),
        compression: opts.compression.name(),
        options: opts.to_json(),
        pre_data: ddl.pre_data,
        post_data: ddl.post_data,
        files,
    };
    let sha = writer.finish(&manifest)?;
    Ok((manifest, sha))
}

fn server_facts() -> Result<(String, String, String)> {
    let (db, ver) = Spi::get_two::<String, String>(
        "SELECT current_database()::text, current_setting('server_version')",
    )?;
    let enc = unsafe { std::ffi::CStr::from_ptr(pg_sys::GetDatabaseEncodingName()) }
        .to_string_lossy()
        .into_owned();
    Ok((db.unwrap_or_default(), enc, ver.unwrap_or_default()))
}

pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// The error for a backup id that the catalog does not know.
pub fn unknown_backup(id: &str) -> BackupError {
    BackupError::unknown(format!("backup \"{id}\" does not exist"))
        .with_hint("See SELECT id, status FROM backup.backups ORDER BY started_at DESC; or run backup.rescan().")
}
