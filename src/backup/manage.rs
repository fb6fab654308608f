//! verify(), delete(), prune() and rescan(): everything done to backups after they are taken.

use std::path::PathBuf;

use pgrx::prelude::*;

use super::create::dir_size;
use crate::archive::id;
use crate::archive::manifest::{self, Manifest};
use crate::archive::retention::{self, Candidate, Verified};
use crate::archive::verify::{self, FileCheck, FileStatus};
use crate::catalog::{history, runs};
use crate::error::{BackupError, Result};
use crate::guc;
use crate::security::signing;
use crate::storage::archive_files::ArchiveSource;
use crate::storage::locate::Claim;

/// The folder of backup `id`: validated before it becomes a path.
pub fn backup_dir(id: &str) -> Result<PathBuf> {
    id::validate(id)?;
    Ok(guc::directory().join(id))
}

fn catalog_status(id: &str) -> Result<Option<String>> {
    Ok(crate::query::one::<String>(
        "SELECT (SELECT status FROM backup.backups WHERE id = $1)",
        &[id.into()],
    )?)
}

/// Per-file rows for one backup, or for every completed one when `id` is None. `storage`
/// names the copy to check (default: the local one, else the remote one of the history row);
/// `identity` decrypts an encrypted backup for a deep check.
pub fn verify(
    id: Option<&str>,
    deep: bool,
    storage: Option<&str>,
    identity: Option<&str>,
) -> Result<Vec<(String, FileCheck)>> {
    let ids: Vec<String> = match id {
        Some(id) => {
            id::validate(id)?;
            if catalog_status(id)?.is_none() && !backup_dir(id)?.exists() && storage.is_none() {
                return Err(BackupError::unknown_backup(id));
            }
            vec![id.to_string()]
        }
        None => Spi::connect(|c| {
            c.select(
                "SELECT id FROM backup.backups WHERE status = 'completed'
                   AND ($1::text IS NULL OR storage = $1) ORDER BY started_at",
                None,
                &[storage
                    .map(crate::text::arg)
                    .unwrap_or_else(|| Option::<String>::None.into())],
            )?
            .map(|r| Ok(r.get::<String>(1)?.unwrap_or_default()))
            .collect::<Result<Vec<_>>>()
        })?,
    };
    let mut out = Vec::new();
    let mut verdicts = Vec::new();
    // SAFETY: reads the backend-local current user id.
    let caller = crate::security::caller_oid().unwrap_or_else(|| unsafe { pg_sys::GetUserId() });
    for one in ids {
        // Its files stay while we read them: a delete() meanwhile fails with 55006.
        crate::backup_lock::read(&one, crate::backup_lock::Holder::Transaction);
        // Not signed by a trusted key (issue 17): verify(id) refuses with the reason; a verify
        // of every backup says it in the backup's manifest.sig row and goes on.
        let untrusted: std::cell::RefCell<Option<BackupError>> = Default::default();
        let located = crate::storage::locate(&one, storage, identity).and_then(|src| {
            // A remote copy that cannot be reached is an error (08001/08006), not a backup
            // whose files are "missing" (issue 17).
            if src.is_remote() {
                src.try_exists()?;
            }
            Ok(src)
        });
        let mut checks = match located {
            Ok(src) => verify::verify_source_in(
                &src,
                deep,
                &crate::copy::check_for_interrupts,
                &crate::text::to_encoding,
                Some(&|raw: &[u8]| {
                    signing::authenticate(&src, raw, caller, false)
                        .map(|a| a.describe())
                        .map_err(|e| {
                            let said = format!("{e} (SQLSTATE {})", e.sqlstate());
                            *untrusted.borrow_mut() = Some(e);
                            said
                        })
                }),
            ),
            // One backup's copy is unreachable: say so in its row, go on with the others;
            // it is not recorded as failed (nothing was checked).
            Err(e) if id.is_none() => {
                crate::backup_lock::release_read(&one);
                out.push((
                    one.clone(),
                    FileCheck::new(manifest::MANIFEST_FILE, FileStatus::Missing)
                        .detail(format!("{e} (SQLSTATE {})", e.sqlstate())),
                ));
                continue;
            }
            Err(e) => return Err(e),
        };
        if let (Some(e), Some(_)) = (untrusted.into_inner(), id) {
            history::record_verified(&[(one.clone(), false)]);
            return Err(e);
        }
        crate::storage::locate::check_registered(&one, &mut checks)?;
        if id.is_none() {
            crate::backup_lock::release_read(&one);
        }
        verdicts.push((
            one.clone(),
            checks.iter().all(|c| c.status == FileStatus::Ok),
        ));
        out.extend(checks.into_iter().map(|c| (one.clone(), c)));
    }
    // Recorded outside the caller's transaction (a verify changes nothing else, so it works in
    // a read-only session), and only on backups still completed: one deleted meanwhile is not
    // "failed".
    history::record_verified(&verdicts);
    Ok(out)
}

pub fn delete(id: &str) -> Result<bool> {
    let dir = backup_dir(id)?;
    let (status, pid) = Spi::connect(|c| {
        let t = c.select(
            "SELECT status, pid FROM backup.backups WHERE id = $1",
            None,
            &[id.into()],
        )?;
        if t.is_empty() {
            return Ok::<_, BackupError>((None, None));
        }
        let r = t.first();
        Ok((r.get::<String>(1)?, r.get::<i32>(2)?))
    })?;
    // A row that says running but whose process is gone is settled by the sweep; the row may
    // not say so yet in this transaction's snapshot.
    if status.as_deref() == Some("running") && runs::alive(runs::Kind::Backup, id, pid) {
        return Err(BackupError::confirm(format!("backup \"{id}\" is still running"))
            .with_hint("Wait for it to finish, or cancel it with pg_cancel_backend(pid) from backup.progress."));
    }
    // Only backups this database knows: the directory is shared by every database of the
    // cluster, and another database's archives are not ours to remove.
    if status.is_none() {
        return Err(BackupError::unknown_backup(id));
    }
    // Not while a restore or verify reads it (55006, before anything changes).
    crate::backup_lock::delete(id)?;
    // Whether the folder backup.directory/<id> is this row's own archive, decided before
    // anything changes: a row registered from a storage target, or one whose manifest differs
    // from the folder's, must not take another database's archive of the same id with it.
    let claim = Claim::of(id)?;
    let local_is_ours = claim.as_ref().is_some_and(|c| c.owns(&dir));
    // A row registered from another database's archive (rescan(database => ...), issue 20):
    // the archive is that database's backup, not this one's to remove. Only the row goes.
    if let Some(db) = crate::storage::locate::database_of_copy(id, &dir, local_is_ours)?
        .filter(|db| !crate::text::is_current_database(db))
    {
        history::mark_deleted(id);
        pgrx::warning!(
            "pg_backup: backup \"{id}\" is an archive of database \"{db}\": this database's row was marked deleted, its files were left in place for that database"
        );
        return Ok(true);
    }
    // The remote copy first: if the storage cannot be reached, nothing changes.
    crate::storage::locate::delete_remote(id)?;
    // The row says deleted before a local file goes: a verify that finds the files vanishing
    // then never marks the backup failed.
    history::mark_deleted(id);
    if local_is_ours {
        // From backup.directory's descriptor: a link met on the way (put there by whoever
        // can write the directory) is removed itself, never followed.
        let removed = match (dir.parent(), dir.file_name()) {
            (Some(base), Some(name)) => crate::archive::open::open_root(base)
                .and_then(|b| crate::archive::open::remove_tree_in(&b, &name.to_string_lossy())),
            _ => Ok(()),
        };
        removed.map_err(|e| {
            BackupError::io("remove", &dir, e).with_hint(format!(
                "The backup is marked deleted; remove what is left of {} by hand.",
                dir.display()
            ))
        })?;
    } else if std::fs::symlink_metadata(&dir).is_ok() && claim.is_some_and(|c| c.path.is_some()) {
        pgrx::warning!(
            "pg_backup: {} was left in place: its manifest.json is not the one backup \"{id}\" was registered with",
            dir.display()
        );
    }
    Ok(true)
}

/// Apply a retention policy to the completed backups (of one schedule, or all when None).
pub fn prune(
    keep_last: Option<i32>,
    keep_days: Option<i32>,
    dry_run: bool,
    schedule: Option<&str>,
) -> Result<Vec<String>> {
    if keep_last.is_none() && keep_days.is_none() {
        return Err(BackupError::invalid("prune needs keep_last or keep_days")
            .with_hint("For example: SELECT * FROM backup.prune(keep_last => 7);"));
    }
    for (name, v) in [("keep_last", keep_last), ("keep_days", keep_days)] {
        if matches!(v, Some(n) if n < 1) {
            return Err(BackupError::invalid(format!("{name} must be at least 1"))
                .with_hint("Use backup.delete(id) to remove a single backup."));
        }
    }
    let candidates = Spi::connect(|c| {
        let rows = c.select(
            "SELECT id, to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                    verify_status
             FROM backup.backups WHERE status = 'completed' AND finished_at IS NOT NULL
               AND ($1::text IS NULL OR schedule = $1)",
            None,
            &[schedule.map(str::to_string).into()],
        )?;
        let mut v = Vec::new();
        for r in rows {
            let id: String = r.get(1)?.unwrap_or_default();
            let at: String = r.get(2)?.unwrap_or_default();
            let verified = Verified::from_status(r.get::<String>(3)?.as_deref());
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&at) {
                v.push(Candidate {
                    id,
                    finished_at: t.with_timezone(&chrono::Utc),
                    verified,
                });
            }
        }
        Ok::<_, BackupError>(v)
    })?;
    let gone = retention::choose_removals(
        candidates,
        keep_last.map(|n| n as u32),
        keep_days.map(|n| n as u32),
        chrono::Utc::now(),
    );
    if dry_run {
        return Ok(gone);
    }
    let mut removed = Vec::with_capacity(gone.len());
    for id in gone {
        match delete(&id) {
            Ok(_) => removed.push(id),
            // Read by a restore or verify now: kept this time, taken at the next run.
            Err(e @ BackupError::InUse { .. }) => {
                pgrx::warning!("pg_backup: {e}; kept for now")
            }
            // Its storage failed (unreachable, or an object there that cannot be listed):
            // the others are still pruned (stopping here would halt retention for every
            // backup, and roll back the rows of those whose files are already gone).
            Err(e @ BackupError::Storage { .. }) => {
                pgrx::warning!(
                    "pg_backup: backup {id} not pruned: {e}; tried again at the next run"
                )
            }
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// Register archives found in a storage target that the catalog does not know: the
/// disaster-recovery path (a new server, an empty database, the bucket).
fn rescan_storage(name: &str, database: Option<&str>) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut other_db = 0;
    let now = chrono::Utc::now();
    for (id, raw, m, size) in crate::storage::locate::scan_remote(name)? {
        if catalog_status(&id)?.is_some() {
            continue;
        }
        if !taken_of(&m, database) {
            other_db += 1;
            continue;
        }
        let target = crate::storage::targets::open(name)?;
        let src = ArchiveSource::remote(&id, name, target.store.clone());
        if !registrable(&src, &raw) {
            continue;
        }
        // What the manifest says is a claim (issue 17): its date becomes the row's, which
        // every retention rule sorts by.
        let created_at = match m.created_at_checked(now) {
            Ok(t) => t,
            Err(why) => {
                pgrx::warning!(
                    "pg_backup: archive {id} in storage \"{name}\" not registered: {why}"
                );
                continue;
            }
        };
        // The id is taken in the shared backup.directory by another archive (another
        // database's, or one that differs): registering it would make this database's row
        // point at that folder.
        let local = backup_dir(&id)?;
        if std::fs::symlink_metadata(&local).is_ok() {
            let same = ArchiveSource::local(&id, &local)
                .read_small(manifest::MANIFEST_FILE)
                .is_ok_and(|l| l == raw);
            if !same {
                pgrx::warning!(
                    "pg_backup: archive {id} in storage \"{name}\" not registered: {} holds another archive of that id",
                    local.display()
                );
                continue;
            }
        }
        let url = target.store.url();
        crate::text::run_with_args(
            "INSERT INTO backup.backups (id, label, status, kind, format, compression, options, started_at,
                                         finished_at, table_count, row_count, bytes, manifest_sha256, path, created_by,
                                         storage, storage_url)
             VALUES ($1, $2, 'completed', $3, $4, $5, $6, $7::timestamptz, $7::timestamptz, $8, $9, $10, $11, NULL, 'rescan', $12, $13)",
            &[
                id.clone().into(),
                m.label.clone().into(),
                kind_of(&m).into(),
                m.format.name().into(),
                m.compression.name().into(),
                crate::text::Json(m.options.clone()).into(),
                created_at.to_rfc3339().into(),
                (m.file_units() as i32).into(),
                (m.total_rows() as i64).into(),
                (size as i64).into(),
                manifest::sha256_hex(&raw).into(),
                crate::text::arg(name),
                crate::text::arg(format!("{url}{id}/")),
            ],
        )?;
        found.push(id);
    }
    if other_db > 0 {
        pgrx::notice!("pg_backup: {other_db} archive(s) in storage \"{name}\" belong to other databases and were not registered (see SELECT * FROM backup.archives(storage => '{name}'); rescan(storage => '{name}', database => '...') registers another database's)");
    }
    Ok(found)
}

/// rescan() registers only archives signed by a trusted key (or unsigned ones of earlier
/// releases a superuser accepts with backup.allow_unsigned): a forged archive never becomes a
/// catalog row that prune or a restore would take for a backup. The others get a WARNING
/// saying why, with the error's HINT.
fn registrable(src: &ArchiveSource, raw: &[u8]) -> bool {
    // SAFETY: reads the backend-local current user id.
    let caller = crate::security::caller_oid().unwrap_or_else(|| unsafe { pg_sys::GetUserId() });
    match signing::authenticate(src, raw, caller, false) {
        Ok(_) => true,
        Err(e) => {
            let mut report = pgrx::pg_sys::panic::ErrorReport::new(
                e.code(),
                format!("pg_backup: {e}; not registered"),
                "pg_backup",
            );
            if let Some(h) = e.hint() {
                report = report.set_hint(h);
            }
            report.report(pgrx::PgLogLevel::WARNING);
            false
        }
    }
}

fn kind_of(m: &Manifest) -> &'static str {
    match (
        m.options["schema_only"].as_bool(),
        m.options["data_only"].as_bool(),
    ) {
        (Some(true), _) => "schema",
        (_, Some(true)) => "data",
        _ => "full",
    }
}

/// Whether the archive of manifest `m` is one rescan registers: taken of `database` when
/// given (issue 20: another database's archives, registered here to restore), else of the
/// current database (by name, so a lost database recreated under its name finds them).
fn taken_of(m: &Manifest, database: Option<&str>) -> bool {
    match database {
        Some(d) => m.database == d,
        None => crate::text::is_current_database(&m.database),
    }
}

/// Register archives in the directory (or in storage `storage`) that the catalog does not
/// know, taken of the current database or of `database`.
pub fn rescan(storage: Option<&str>, database: Option<&str>) -> Result<Vec<String>> {
    if let Some(name) = storage {
        return rescan_storage(name, database);
    }
    let base = guc::directory();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(&base) else {
        return Ok(found);
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let now = chrono::Utc::now();
    for name in names {
        if id::validate(&name).is_err() || catalog_status(&name)?.is_some() {
            continue;
        }
        let dir = base.join(&name);
        // Never through a link: a folder or manifest that is a link is not an archive here.
        let src = crate::storage::archive_files::ArchiveSource::local(&name, &dir);
        let json = match src.read_small(manifest::MANIFEST_FILE) {
            Ok(j) => j,
            Err(e) if crate::archive::open::is_not_a_file(&e) => {
                pgrx::warning!("pg_backup: {} not registered: {e}", dir.display());
                continue;
            }
            Err(_) => continue,
        };
        let Ok(m) = Manifest::from_json(&json) else {
            pgrx::warning!(
                "pg_backup: {} has an unreadable manifest.json; not registered",
                dir.display()
            );
            continue;
        };
        if !taken_of(&m, database) {
            // Another database's archive (the directory is shared by the cluster).
            continue;
        }
        if m.backup_id != name {
            pgrx::warning!(
                "pg_backup: {} holds backup {}; not registered",
                dir.display(),
                m.backup_id
            );
            continue;
        }
        if !registrable(&ArchiveSource::local(&name, &dir), &json) {
            continue;
        }
        let created_at = match m.created_at_checked(now) {
            Ok(t) => t,
            Err(why) => {
                pgrx::warning!("pg_backup: {} not registered: {why}", dir.display());
                continue;
            }
        };
        let kind = match (
            m.options["schema_only"].as_bool(),
            m.options["data_only"].as_bool(),
        ) {
            (Some(true), _) => "schema",
            (_, Some(true)) => "data",
            _ => "full",
        };
        crate::text::run_with_args(
            "INSERT INTO backup.backups (id, label, status, kind, format, compression, options, started_at,
                                         finished_at, table_count, row_count, bytes, manifest_sha256, path, created_by)
             VALUES ($1, $2, 'completed', $3, $4, $5, $6, $7::timestamptz, $7::timestamptz, $8, $9, $10, $11, $12, 'rescan')",
            &[
                name.clone().into(),
                m.label.clone().into(),
                kind.into(),
                m.format.name().into(),
                m.compression.name().into(),
                crate::text::Json(m.options.clone()).into(),
                created_at.to_rfc3339().into(),
                (m.file_units() as i32).into(),
                (m.total_rows() as i64).into(),
                (dir_size(&dir) as i64).into(),
                manifest::sha256_hex(&json).into(),
                crate::text::arg(dir.to_string_lossy().into_owned()),
            ],
        )?;
        found.push(name);
    }
    Ok(found)
}
