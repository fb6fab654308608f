//! The create() core: one consistent, checksummed archive of the selected relations.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use super::options::CreateOptions;
use super::parallel;
use super::select::{self, Selection};
use super::task::{self, CopyTask, LO_COLUMNS};
use crate::archive::id;
use crate::archive::manifest::{DataFile, FileKind, Format, Manifest, ScriptTable, MANIFEST_FILE};
use crate::archive::rows::SCRIPT_END;
use crate::archive::toc::{Pass, TocEntry};
use crate::archive::writer::{ArchiveWriter, DrainQueue, FileStats, TMP_PREFIX};
use crate::catalog::history::{self, BackupRow};
use crate::catalog::runs;
use crate::copy::copy_to::{CopySource, PipeWriter};
use crate::copy::CopyFormat;
use crate::crypto::Recipients;
use crate::ddl;
use crate::ddl::collect::ConfigTable;
use crate::error::{BackupError, Result};
use crate::security::Caller;
use crate::storage::targets::{self, Target};
use crate::storage::upload::Output;
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
    final_dir: PathBuf,
}
static IN_FLIGHT: Mutex<Option<InFlight>> = Mutex::new(None);
static EXIT_CALLBACK: std::sync::Once = std::sync::Once::new();

#[pg_guard]
unsafe extern "C-unwind" fn on_backend_exit(_code: i32, _arg: pg_sys::Datum) {
    let taken = IN_FLIGHT.lock().ok().and_then(|mut g| g.take());
    if let Some(f) = taken {
        // Renamed into place means complete: leave it; the next sweep records it as completed.
        if f.final_dir.join(MANIFEST_FILE).exists() {
            return;
        }
        ArchiveWriter::abandon(&f.tmp_dir);
        history::record_exit(
            &f.id,
            "backend exited before the backup finished (terminated or crashed)",
        );
    }
}

fn set_in_flight(v: Option<InFlight>) {
    // SAFETY: registers a callback with a 'static function pointer, on the backend's thread;
    // once per process (call_once), as PostgreSQL's list of exit callbacks is bounded.
    EXIT_CALLBACK.call_once(|| unsafe {
        pg_sys::before_shmem_exit(Some(on_backend_exit), pg_sys::Datum::from(0))
    });
    if let Ok(mut g) = IN_FLIGHT.lock() {
        *g = v;
    }
}

/// A backup between its `running` row and its end. Plain data, so that a background worker
/// can record the start in one transaction and take the backup in the next.
pub struct Run {
    pub id: String,
    row: BackupRow,
    base: PathBuf,
    tmp_dir: PathBuf,
    started: Instant,
    claim: runs::Claim,
    output: Option<Arc<crate::storage::upload::Output>>,
}

pub fn create(opts: &CreateOptions, caller: &Caller, schedule: Option<&str>) -> Result<Summary> {
    let run = begin(opts, caller, schedule)?;
    match take_and_finish(run, opts, caller) {
        Ok(r) => r,
        Err(caught) => caught.rethrow(),
    }
}

/// Record the backup as `running` (in shared memory first, so no sweep takes it for dead).
pub fn begin(opts: &CreateOptions, caller: &Caller, schedule: Option<&str>) -> Result<Run> {
    let started = Instant::now();
    let id = id::generate(chrono::Utc::now(), opts.label.as_deref());
    id::validate(&id)?;
    let base = guc::directory();
    let claim = runs::claim(runs::Kind::Backup, &id, 0);
    let mut row = BackupRow {
        id: id.clone(),
        label: opts.label.clone(),
        status: "running",
        kind: opts.kind(),
        format: opts.format.name().into(),
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
        // SAFETY: a backend-local global set at process start.
        pid: Some(unsafe { pg_sys::MyProcPid }),
        storage: None,
        storage_url: None,
    };
    record_running(&mut row);
    // Storage and encryption (none for a plain local backup). Resolved after the running
    // row exists, so an unknown target or a bad key also leaves a failed row.
    let output = match prepare_output(&id, opts) {
        Ok(o) => o,
        Err(e) => {
            row.status = "failed";
            row.finished_at = Some(history::now_rfc3339());
            row.pid = None;
            row.error = Some(format!("{} (SQLSTATE {})", e, e.sqlstate()));
            history::record(&row);
            return Err(e);
        }
    };
    if let Some(o) = &output {
        row.storage = o.remote.as_ref().map(|r| r.0.clone());
        row.storage_url = o.remote_url();
        if !o.keep_local {
            row.path = None;
        }
        record_running(&mut row);
    }
    let tmp_dir = base.join(format!("{TMP_PREFIX}{id}"));
    set_in_flight(Some(InFlight {
        id: id.clone(),
        tmp_dir: tmp_dir.clone(),
        final_dir: base.join(&id),
    }));
    Ok(Run {
        id,
        row,
        base,
        tmp_dir,
        started,
        claim,
        output,
    })
}

/// Record `row`, a running backup. Recording waits for the history writer, and a cancel
/// (statement_timeout, pg_cancel_backend) can end that wait while the writer goes on to write
/// the row `running`: the row is then recorded failed, with the cancel, before the error goes
/// on (the writer's late `running` never overwrites it: `backup_upsert`).
fn record_running(row: &mut BackupRow) {
    if let Err(caught) = subtransaction::run(|| history::record(row)) {
        row.status = "failed";
        row.finished_at = Some(history::now_rfc3339());
        row.pid = None;
        row.error = Some(subtransaction::message(&caught));
        history::record(row);
        caught.rethrow();
    }
}

/// create(): the storage and encryption of a new backup, if any. Returns None for a plain
/// local backup.
fn prepare_output(id: &str, opts: &CreateOptions) -> Result<Option<Arc<Output>>> {
    let storage = opts.storage.clone().or_else(guc::default_storage);
    let target: Option<Target> = match &storage {
        Some(name) => Some(targets::open(name)?),
        None => None,
    };
    if !opts.keep_local && target.is_none() {
        return Err(
            BackupError::invalid("keep_local => false needs a storage target")
                .with_hint("Name one with storage => 'name' or set backup.default_storage."),
        );
    }
    let mut recipients: Vec<String> = opts.encrypt_to.clone();
    if let Some(t) = &target {
        for r in &t.encrypt_to {
            if !recipients.contains(r) {
                recipients.push(r.clone());
            }
        }
    }
    let recipients = Recipients::parse(&recipients)?;
    if target.is_none() && recipients.is_none() {
        return Ok(None);
    }
    let remote = target.map(|t| (t.name, t.store));
    Ok(Some(Arc::new(Output::new(
        id,
        remote,
        opts.keep_local,
        recipients,
    ))))
}

/// Take the backup begun by `begin` and record how it ended. A PostgreSQL error comes back
/// caught (its subtransaction rolled back), for the caller to raise again or report.
#[allow(clippy::result_large_err)]
pub fn take_and_finish(
    run: Run,
    opts: &CreateOptions,
    caller: &Caller,
) -> std::result::Result<Result<Summary>, CaughtError> {
    let Run {
        id,
        mut row,
        base,
        tmp_dir,
        started,
        claim,
        output,
    } = run;
    // Rows and definitions are written as pg_dump writes them, whatever the session's
    // DateStyle or standard_conforming_strings: a restore elsewhere reads them back exactly.
    crate::security::pin_literal_settings();
    let outcome = subtransaction::run(|| take(opts, caller, &id, &base, &claim, output.as_ref()));
    let abandon_remote = || {
        if let Some(o) = &output {
            crate::archive::writer::ArchiveOutput::abandon(&crate::storage::upload::SharedOutput(
                o.clone(),
            ));
        }
    };
    set_in_flight(None);
    row.finished_at = Some(history::now_rfc3339());
    row.pid = None;
    let result = match outcome {
        Ok(Ok((manifest, sha))) => {
            row.status = "completed";
            row.table_count = Some(manifest.file_units() as i64);
            row.row_count = Some(manifest.total_rows() as i64);
            row.bytes = Some(match &output {
                Some(o) if !o.keep_local => manifest.total_bytes() as i64,
                _ => dir_size(&base.join(&id)) as i64,
            });
            row.manifest_sha256 = Some(sha);
            history::record(&row);
            Ok(Ok(Summary {
                backup_id: id.clone(),
                status: "completed".into(),
                tables: manifest.file_units() as i64,
                rows: manifest.total_rows() as i64,
                bytes: row.bytes.unwrap_or(0),
                duration: started.elapsed(),
                path: row
                    .path
                    .clone()
                    .or_else(|| row.storage_url.clone())
                    .unwrap_or_default(),
            }))
        }
        Ok(Err(e)) => {
            let e = match &output {
                Some(o) => o.refine(e),
                None => e,
            };
            // A cancel or timeout that a helper thread saw first (it stopped its upload and
            // the error came back as pg_backup's own) is still pending: take it now, so that
            // recording the failed row is not cancelled in its turn; it is what the caller
            // hears.
            let pending = subtransaction::run(crate::copy::check_for_interrupts).err();
            ArchiveWriter::abandon(&tmp_dir);
            abandon_remote();
            row.status = "failed";
            match pending {
                Some(caught) => {
                    row.error = Some(subtransaction::message_with_sqlstate(&caught));
                    history::record(&row);
                    Err(caught)
                }
                None => {
                    row.error = Some(format!("{} (SQLSTATE {})", e, e.sqlstate()));
                    history::record(&row);
                    Ok(Err(e))
                }
            }
        }
        Err(caught) => {
            ArchiveWriter::abandon(&tmp_dir);
            abandon_remote();
            row.status = "failed";
            // With the SQLSTATE, as for pg_backup's own errors: a cancel says 57014.
            row.error = Some(subtransaction::message_with_sqlstate(&caught));
            history::record(&row);
            Err(caught)
        }
    };
    // Only now: until the row says how it ended, the slot says the run is alive.
    drop(claim);
    result
}

/// Everything that happens under the one snapshot. Runs inside a subtransaction.
fn take(
    opts: &CreateOptions,
    caller: &Caller,
    id: &str,
    base: &Path,
    claim: &runs::Claim,
    output: Option<&Arc<crate::storage::upload::Output>>,
) -> Result<(Manifest, String)> {
    // The catalog queries over thousands of tables cross jit_above_cost, and compiling them
    // costs more than it saves (a third of the time for 10,000 tables); for this call only,
    // and the caller's setting is back for the rows (the json format's query gains from it).
    let caller_jit = crate::session::current_setting("jit");
    crate::security::set_for_call(c"jit", c"off");
    let mut sel: Selection = select::select(opts, &caller.schemas)?;
    // SAFETY: a syscache lookup of the caller's role, inside the transaction of the call.
    sel.superuser = unsafe { pg_sys::superuser_arg(caller.oid) };
    // ACCESS SHARE on everything first (as pg_dump does), then the snapshot: no concurrent
    // DDL can change a table under us, and every COPY sees the same committed state.
    for r in &sel.relations {
        // SAFETY: inside the call's transaction, which releases the lock at its end; a
        // relation dropped since it was selected is simply locked by oid (as pg_dump does).
        unsafe { pg_sys::LockRelationOid(r.oid, pg_sys::AccessShareLock as i32) };
    }
    // SAFETY: inside the call's transaction; the snapshot is popped below, or by the
    // transaction's abort if an ERROR unwinds through write_archive.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
    let in_session = InSession {
        had_xid: caller.had_xid,
        jit: caller_jit,
    };
    let result = write_archive(opts, id, base, &sel, claim, output, &in_session);
    let result = match result {
        Err(e) if e.is_disk_full() => {
            let hint = disk_full_hint(base, id, &sel);
            Err(e.with_hint(hint))
        }
        other => other,
    };
    // SAFETY: the snapshot pushed above is the active one again: write_archive pops what it
    // pushes before returning.
    unsafe { pg_sys::PopActiveSnapshot() };
    result
}
/// What a user needs when backup.directory fills up: how much room there was, how much the
/// backup had written, and how big the data it reads is.
fn disk_full_hint(base: &Path, id: &str, sel: &Selection) -> String {
    let written = dir_size(&base.join(format!("{TMP_PREFIX}{id}")));
    let free = free_space(base);
    let oids: Vec<pg_sys::Oid> = sel.data_tables.iter().map(|r| r.oid).collect();
    let tables = Spi::get_one_with_args::<i64>(
        "SELECT coalesce(sum(pg_catalog.pg_table_size(o)), 0)::bigint FROM unnest($1::oid[]) o",
        &[oids.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(0);
    format!(
        "backup.directory is {}: its file system had {} free when the backup stopped after writing {}; \
         the tables it reads take {} in the database (less once compressed). Free that much space there, \
         or point backup.directory at a disk with room: ALTER SYSTEM SET backup.directory = '/path'; SELECT pg_reload_conf();",
        base.display(),
        free.map(pretty_size).unwrap_or_else(|| "an unknown amount".into()),
        pretty_size(written),
        pretty_size(tables.max(0) as u64),
    )
}

fn free_space(dir: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs is a plain C struct of integers, for which all-zero bytes are valid.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and a zeroed struct to fill.
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0)
        .then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// Sizes as pg_size_pretty writes them.
fn pretty_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 10.0 * 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{} {}", v.round() as u64, UNITS[unit])
}

fn write_archive(
    opts: &CreateOptions,
    id: &str,
    base: &Path,
    sel: &Selection,
    claim: &runs::Claim,
    output: Option<&Arc<crate::storage::upload::Output>>,
    caller: &InSession,
) -> Result<(Manifest, String)> {
    // The cluster's signing key (made on first need): every archive is signed (issue 17).
    let key = crate::security::signing::load_or_create()?;
    let (toc, config) = ddl::extract(sel, opts.schema_only, opts.data_only)?;
    let mut writer = ArchiveWriter::begin(base, id)?;
    writer.output = output.map(|o| {
        Arc::new(crate::storage::upload::SharedOutput(o.clone()))
            as Arc<dyn crate::archive::writer::ArchiveOutput>
    });
    let tables: &[select::Relation] = if opts.schema_only {
        &[]
    } else {
        &sel.data_tables
    };
    let large_objects = sel.large_objects
        && !opts.schema_only
        && Spi::get_one::<i64>("SELECT count(*) FROM pg_catalog.pg_largeobject_metadata")?
            .unwrap_or(0)
            > 0;
    claim.set_total(tables.len());
    let mut progress = Progress {
        claim,
        rows: 0,
        bytes: 0,
    };
    let data = DataSet {
        tables,
        config: &config,
        large_objects,
    };
    let (files, script_tables) = if opts.format == Format::Sql {
        write_script(opts, id, &writer, &toc, &data, &mut progress)?
    } else {
        (
            write_table_files(opts, &writer, &data, &mut progress, caller)?,
            Vec::new(),
        )
    };
    let (database, encoding, server_version, server_version_num) = server_facts()?;
    let manifest = Manifest {
        format_version: Manifest::format_for(&files),
        pg_backup_version: env!("CARGO_PKG_VERSION").to_string(),
        backup_id: id.to_string(),
        label: opts.label.clone(),
        created_at: history::now_rfc3339(),
        server_version,
        server_version_num: Some(server_version_num),
        database,
        encoding,
        format: opts.format,
        compression: opts.compression,
        options: opts.to_json(),
        toc,
        toc_facts: crate::archive::facts::TOC_FACTS,
        pre_data: Vec::new(),
        post_data: Vec::new(),
        files,
        script_tables,
    };
    let (sha, warning) = writer.finish(&manifest, &key)?;
    if let Some(w) = warning {
        pgrx::warning!("pg_backup: backup {id} is complete, but {w}");
    }
    Ok((manifest, sha))
}

/// The rows an archive holds: tables, extension configuration rows, large objects.
struct DataSet<'a> {
    tables: &'a [select::Relation],
    config: &'a [ConfigTable],
    large_objects: bool,
}

/// What the calling session had, for the data copy: whether its transaction had written
/// (parallel workers could not see it) and its jit setting (off for the catalog queries).
struct InSession {
    had_xid: bool,
    jit: String,
}

/// Progress for backup.progress, in shared memory (see catalog::runs).
struct Progress<'a> {
    claim: &'a runs::Claim,
    rows: u64,
    bytes: u64,
}

impl Progress<'_> {
    fn table(&mut self, done: usize, t: &select::Relation) {
        pgrx::check_for_interrupts!();
        self.report(done, Some(&format!("{}.{}", t.schema, t.name)));
    }

    /// Table `done + 1` (`current`) is being copied; from the parallel leader too.
    fn report(&mut self, done: usize, current: Option<&str>) {
        pgrx::check_for_interrupts!();
        self.claim
            .progress(done, current.unwrap_or(""), self.rows, self.bytes);
    }

    fn copied(&mut self, rows: u64, bytes: u64) {
        self.rows += rows;
        self.bytes += bytes;
    }
}

fn verbose(opts: &CreateOptions, t: &select::Relation, rows: u64, detail: &str) {
    if opts.verbose {
        pgrx::notice!(
            "pg_backup: {}.{}: {} rows{}",
            t.schema,
            t.name,
            rows,
            detail
        );
    }
}

fn quoted(schema: &str, name: &str) -> String {
    format!(
        "{}.{}",
        spi::quote_identifier(schema),
        spi::quote_identifier(name)
    )
}

/// native, csv and json: one file per table (and one for the large objects' pages), written
/// by this backend or, with `jobs => N`, by parallel workers.
fn write_table_files(
    opts: &CreateOptions,
    writer: &ArchiveWriter,
    data: &DataSet,
    progress: &mut Progress,
    caller: &InSession,
) -> Result<Vec<DataFile>> {
    let DataSet {
        tables,
        config,
        large_objects,
    } = *data;
    // A big table is copied in ranges of its heap blocks, each a file (and a task) of its
    // own: several jobs copy one table at once, and restore loads it the same way.
    let columns = task::columns_of(tables)?;
    let parts = task::parts_of(tables, &columns, opts.jobs)?;
    let mut tasks: Vec<CopyTask> = Vec::with_capacity(tables.len());
    for ((t, columns), parts) in tables.iter().zip(columns).zip(parts) {
        if parts.is_empty() {
            let index = tasks.len() + 1;
            tasks.push(task::for_table(
                index,
                t,
                columns,
                opts.format,
                writer,
                opts.compression,
            )?);
            continue;
        }
        for p in parts {
            let index = tasks.len() + 1;
            tasks.push(task::for_table_part(
                index,
                t,
                columns.clone(),
                p,
                opts.format,
                writer,
                opts.compression,
            )?);
        }
    }
    let table_tasks = tasks.len();
    progress.claim.set_total(table_tasks);
    // Extension configuration rows, in this order (their foreign keys'); restore() loads them
    // before the tables' rows, which can need them (restore::data::data_units).
    for c in config {
        let index = tasks.len() + 1;
        tasks.push(task::for_config_table(
            index,
            c,
            opts.format,
            writer,
            opts.compression,
        )?);
    }
    if large_objects {
        tasks.push(task::for_large_objects(
            tasks.len() + 1,
            writer,
            opts.compression,
        ));
    }
    // Why the workers cannot do it: they would not see the caller's uncommitted changes, and
    // a storage target's uploads and encryption live in this backend.
    if let Ok(jit) = std::ffi::CString::new(caller.jit.as_str()) {
        crate::security::set_for_call(c"jit", &jit);
    }
    let in_session = if caller.had_xid {
        Some("this transaction has uncommitted changes, which parallel workers cannot see")
    } else if writer.output.is_some() {
        Some("backups to a storage target or encrypted ones are written by the session itself")
    } else {
        None
    };
    if let (true, Some(why)) = (opts.jobs > 1 && tasks.len() > 1, in_session) {
        pgrx::notice!(
            "pg_backup: jobs => {} not used: {why}; the backup is taken in this session",
            opts.jobs
        );
    } else if opts.jobs > 1 && tasks.len() > 1 {
        task::measure(&mut tasks)?;
        match parallel::start(&tasks, opts.jobs, opts.compression)? {
            Ok(p) => {
                progress.claim.set_jobs(p.workers());
                if opts.verbose {
                    pgrx::notice!(
                        "pg_backup: {} parallel workers copy {} files",
                        p.workers(),
                        tasks.len()
                    );
                }
                let results = p.finish(
                    &tasks,
                    |t, rows, stats| verbose_file(opts, t, rows, stats),
                    |done, current| progress.report(done, current),
                )?;
                return Ok(tasks
                    .iter()
                    .zip(results)
                    .map(|(t, (rows, stats))| t.data_file(rows, stats))
                    .collect());
            }
            Err(parallel::InProcess::Small) => {}
            Err(parallel::InProcess::Reason(why)) => {
                pgrx::notice!(
                    "pg_backup: jobs => {} not used: {why}; the backup is taken in this session",
                    opts.jobs
                );
            }
        }
    }
    // One drain thread for every file, in order: the next table's COPY starts while the
    // thread still compresses the last one, and no table pays for a thread of its own.
    let mut queue = DrainQueue::start(opts.compression, writer.cancel_flag())?;
    let mut rows = Vec::with_capacity(tasks.len());
    let mut files = Vec::with_capacity(tasks.len());
    let done = |files: &mut Vec<DataFile>,
                rows: &[u64],
                progress: &mut Progress,
                stats: Vec<FileStats>| {
        for s in stats {
            let Some(t) = tasks.get(files.len()) else {
                break;
            };
            progress.copied(0, s.bytes);
            verbose_file(opts, t, rows[files.len()], &s);
            files.push(t.data_file(rows[files.len()], s));
        }
    };
    for (i, t) in tasks.iter().enumerate() {
        if i < table_tasks {
            progress.report(i, Some(&format!("{}.{}", t.schema, t.table)));
        }
        let n = t.run_queued(writer, &mut queue)?;
        progress.copied(n, 0);
        rows.push(n);
        let ready = queue.ready()?;
        done(&mut files, &rows, progress, ready);
    }
    let rest = queue.finish(&crate::copy::check_for_interrupts)?;
    done(&mut files, &rows, progress, rest);
    if files.len() != tasks.len() {
        return Err(BackupError::io(
            "write",
            Path::new("data files"),
            std::io::Error::other(format!(
                "{} of {} data files were written",
                files.len(),
                tasks.len()
            )),
        ));
    }
    Ok(files)
}

fn verbose_file(opts: &CreateOptions, t: &CopyTask, rows: u64, stats: &FileStats) {
    if opts.verbose && t.kind.is_none() {
        pgrx::notice!(
            "pg_backup: {}.{}{}: {} rows, {} bytes ({} before compression)",
            t.schema,
            t.table,
            t.part
                .map(|p| format!(" {}", p.describe()))
                .unwrap_or_default(),
            rows,
            stats.bytes,
            stats.raw_bytes
        );
    }
}

/// sql: one script that psql restores without pg_backup: the DDL in order, each table's rows
/// as a COPY ... FROM stdin block, the large objects, then the post-data DDL.
fn write_script(
    opts: &CreateOptions,
    id: &str,
    writer: &ArchiveWriter,
    toc: &[TocEntry],
    data: &DataSet,
    progress: &mut Progress,
) -> Result<(Vec<DataFile>, Vec<ScriptTable>)> {
    let DataSet {
        tables,
        config,
        large_objects,
    } = *data;
    let rel_path = format!("backup.sql{}{}", opts.compression.suffix(), writer.suffix());
    let mut w = PipeWriter::create_sink(
        writer.open_sink(&rel_path)?,
        &writer.tmp_dir.join(&rel_path),
        opts.compression,
    )?;
    let (database, encoding, _, _) = server_facts()?;
    w.write_text(&format!(
        "-- pg_backup {} backup {id} of database {database}\n\
         -- Restore into an empty database: psql -v ON_ERROR_STOP=1 -f backup.sql\n\
         -- (or: gunzip -c backup.sql.gz | psql ..., zstd -dc backup.sql.zst | psql ...)\n\
         SET statement_timeout = 0;\n\
         SET lock_timeout = 0;\n\
         SET idle_in_transaction_session_timeout = 0;\n\
         SELECT pg_catalog.set_config(name, '0', false) FROM pg_catalog.pg_settings WHERE name = 'transaction_timeout';\n\
         SET client_encoding = '{encoding}';\n\
         SET standard_conforming_strings = on;\n\
         SET check_function_bodies = false;\n\
         SET xmloption = content;\n\
         SET client_min_messages = warning;\n\
         SET row_security = off;\n\
         SET default_tablespace = '';\n\
         SET default_table_access_method = heap;\n\
         SELECT pg_catalog.set_config('search_path', '', false);\n\n",
        env!("CARGO_PKG_VERSION")
    ))?;
    write_entries(&mut w, toc, Pass::PreData)?;
    let mut blocks = Vec::new();
    // Extension configuration rows first: appended to the tables CREATE EXTENSION made
    // (above), before the tables' rows, which can need them while they load (a custom SRID
    // of spatial_ref_sys for a geography value or a generated column's ST_Transform).
    for c in config {
        let columns = ddl::copy_columns(c.oid)?;
        let list: Vec<String> = columns.iter().map(spi::quote_identifier).collect();
        let header = format!(
            "COPY {} ({}) FROM stdin;",
            quoted(&c.schema, &c.name),
            list.join(", ")
        );
        w.write_text(&format!("\n{header}\n"))?;
        let query = task::config_query(c, &columns);
        let rows = {
            let _path = ddl::collect::EmptySearchPath::set();
            w.copy(CopySource::Query(&query), CopyFormat::Text)?
        };
        progress.copied(rows, 0);
        w.write_text("\\.\n")?;
        blocks.push(ScriptTable {
            header,
            schema: c.schema.clone(),
            table: c.name.clone(),
            columns,
            rows,
            kind: Some(FileKind::ExtensionData),
        });
    }
    for (i, t) in tables.iter().enumerate() {
        progress.table(i, t);
        let columns = ddl::copy_columns(t.oid)?;
        let list = if columns.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                columns
                    .iter()
                    .map(spi::quote_identifier)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let header = format!("COPY {}{list} FROM stdin;", quoted(&t.schema, &t.name));
        w.write_text(&format!("\n{header}\n"))?;
        let rows = w.copy(CopySource::Table(t.oid), CopyFormat::Text)?;
        progress.copied(rows, 0);
        w.write_text("\\.\n")?;
        verbose(opts, t, rows, "");
        blocks.push(ScriptTable {
            header,
            schema: t.schema.clone(),
            table: t.name.clone(),
            columns,
            rows,
            kind: None,
        });
    }
    if large_objects {
        let header = "COPY pg_backup_lo_pages (loid, pageno, data) FROM stdin;".to_string();
        w.write_text(
            "\nCREATE TEMP TABLE pg_backup_lo_pages (loid oid, pageno integer, data bytea);\n",
        )?;
        w.write_text(&format!("{header}\n"))?;
        let rows = w.copy(CopySource::Query(ddl::LARGE_OBJECT_PAGES), CopyFormat::Text)?;
        w.write_text(
            "\\.\n\
             SELECT pg_catalog.lo_put(loid, pageno::bigint * (pg_catalog.current_setting('block_size')::int / 4), data) FROM pg_backup_lo_pages;\n\
             DROP TABLE pg_backup_lo_pages;\n",
        )?;
        blocks.push(ScriptTable {
            header,
            schema: "pg_catalog".into(),
            table: "pg_largeobject".into(),
            columns: LO_COLUMNS.iter().map(|c| c.to_string()).collect(),
            rows,
            kind: Some(FileKind::LargeObjects),
        });
    }
    w.write_text("\n")?;
    for pass in [
        Pass::PostData,
        Pass::Acl,
        Pass::PostAcl,
        Pass::SequenceValues,
    ] {
        write_entries(&mut w, toc, pass)?;
    }
    w.write_text(&format!("{SCRIPT_END}\n"))?;
    let stats = w.finish()?;
    let file = DataFile {
        path: rel_path,
        kind: Some(FileKind::SqlScript),
        schema: String::new(),
        table: String::new(),
        columns: Vec::new(),
        rows: blocks.iter().map(|b| b.rows).sum(),
        bytes: stats.bytes,
        raw_bytes: stats.raw_bytes,
        sha256: stats.sha256,
        part: None,
    };
    Ok((vec![file], blocks))
}

/// The entries of one pass, in TOC order, each under a comment naming it (as pg_dump's
/// plain format does).
fn write_entries(w: &mut PipeWriter, toc: &[TocEntry], pass: Pass) -> Result<()> {
    for e in toc.iter().filter(|e| e.pass() == pass && !e.sql.is_empty()) {
        // As pg_dump's plain format: the entry's tablespace around it (a string literal:
        // default_tablespace takes the name itself).
        let (set, reset) = match &e.tablespace {
            Some(ts) => (
                format!("SET default_tablespace = {};\n", spi::quote_literal(ts)),
                "SET default_tablespace = '';\n",
            ),
            None => (String::new(), ""),
        };
        w.write_text(&format!(
            "\n-- {}\n{set}{}\n{reset}",
            e.describe().replace('\n', " "),
            e.statements()
        ))?;
    }
    Ok(())
}

/// The database's name and encoding, and the server's version as `server_version` and
/// `server_version_num` say (the manifest records what wrote the archive: a restore on an
/// older major version is refused, restore/version.rs).
fn server_facts() -> Result<(String, String, String, u32)> {
    // The name as pg_database holds it (see text::current_database), whatever this
    // database's encoding.
    let db = crate::text::current_database();
    let ver = crate::query::one::<String>("SELECT current_setting('server_version')", &[])?;
    // SAFETY: GetDatabaseEncodingName returns a pointer to a static, NUL-terminated name of
    // PostgreSQL's encoding table.
    let enc = unsafe { std::ffi::CStr::from_ptr(pg_sys::GetDatabaseEncodingName()) }
        .to_string_lossy()
        .into_owned();
    let num = crate::session::server_version_num();
    Ok((db, enc, ver.unwrap_or_default(), num))
}

pub use crate::catalog::sweep::dir_size;
