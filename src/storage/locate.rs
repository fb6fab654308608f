//! The hooks of create/verify/restore/delete/rescan into storage targets and encryption: which
//! copy of a backup to read, what create() writes to, removing and finding remote copies.
//! These read the catalog (SPI); the stores themselves never do.

use std::collections::HashMap;

use pgrx::prelude::*;

use super::archive_files::ArchiveSource;
use super::targets;
use super::upload::remove_remote;
use crate::archive::id;
use crate::archive::manifest::{self, Manifest, MANIFEST_FILE, MANIFEST_SHA_FILE};
use crate::archive::verify::{self, FileCheck, FileStatus};
use crate::crypto::Identities;
use crate::error::{BackupError, Result};
use crate::guc;

/// The identities for decrypting: the one given, else backup.identity_file, else none.
pub fn identities(identity: Option<&str>) -> Result<Option<Identities>> {
    match (
        identity.filter(|s| !s.trim().is_empty()),
        guc::identity_file(),
    ) {
        (Some(text), _) => Ok(Some(Identities::parse(text)?)),
        (None, Some(path)) => Ok(Some(Identities::from_file(&path)?)),
        (None, None) => Ok(None),
    }
}

/// The storage a backup's history row names, if any.
pub fn recorded_storage(id: &str) -> Result<Option<String>> {
    Ok(Spi::get_one_with_args::<crate::text::Text>(
        "SELECT (SELECT storage FROM backup.backups WHERE id = $1)",
        &[id.into()],
    )?
    .map(String::from))
}

fn not_found(id: &str, where_: &str) -> BackupError {
    BackupError::unknown(format!("backup \"{id}\" is not in {where_}"))
        .with_hint("See SELECT id, status, path, storage FROM backup.backups; an archive in a storage target (of any database) restores with backup.restore(id, storage => 'name'): see SELECT * FROM backup.archives(storage => 'name');")
}

/// The copy of backup `id` to read: in `storage` when named; else the local folder when it
/// holds the archive; else the remote copy its history row records.
pub fn locate(id: &str, storage: Option<&str>, identity: Option<&str>) -> Result<ArchiveSource> {
    id::validate(id)?;
    let ids = identities(identity)?;
    if let Some(name) = storage {
        let t = targets::open(name)?;
        let src = ArchiveSource::remote(id, name, t.store);
        // An unreachable storage says so (08001/08006), never "not in storage" (issue 17).
        if !src.try_exists()? {
            return Err(not_found(id, &format!("storage \"{name}\"")));
        }
        return Ok(src.with_identities(ids));
    }
    let dir = guc::directory().join(id);
    let local = ArchiveSource::local(id, &dir);
    if local.exists() {
        // The folder of the shared directory holds *an* archive of that id; it is this
        // database's backup only when the row's claims prove it (issue 17). Without a row
        // any archive of the directory can be restored by id (production's into staging).
        match Claim::of(id)? {
            None => return Ok(local.with_identities(ids)),
            Some(claim) if claim.owns(&dir) => return Ok(local.with_identities(ids)),
            // The row's remote copy is read instead; with none, the folder is what there
            // is, and verify/restore compare its manifest with the row's (`check_registered`).
            Some(claim) if claim.storage.is_none() => return Ok(local.with_identities(ids)),
            Some(_) => {}
        }
    }
    match recorded_storage(id)? {
        Some(name) => {
            let t = targets::open(&name)?;
            let src = ArchiveSource::remote(id, &name, t.store);
            // Reading the manifest will say clearly if the remote copy is gone too.
            Ok(src.with_identities(ids))
        }
        None if dir.exists() => Ok(ArchiveSource::local(id, &dir).with_identities(ids)),
        None => Err(BackupError::unknown_backup(id)),
    }
}

/// What a backup row of this database claims about its archive: where its copies are and
/// the SHA-256 of the manifest it was registered with.
pub struct Claim {
    pub path: Option<String>,
    pub storage: Option<String>,
    pub manifest_sha256: Option<String>,
}

impl Claim {
    /// The claims of this database's row for `id`, if it has one.
    pub fn of(id: &str) -> Result<Option<Claim>> {
        Ok(Spi::connect(|c| {
            let t = c.select(
                "SELECT path, storage, manifest_sha256 FROM backup.backups WHERE id = $1",
                None,
                &[id.into()],
            )?;
            if t.is_empty() {
                return Ok::<_, pgrx::spi::Error>(None);
            }
            let r = t.first();
            Ok(Some(Claim {
                path: r.get::<String>(1)?,
                storage: r.get::<String>(2)?,
                manifest_sha256: r.get::<String>(3)?,
            }))
        })?)
    }

    /// Whether the archive folder `dir` is the one this row registered: its manifest (read
    /// without following a link) is byte for byte the one whose SHA-256 the row recorded, and
    /// names the same backup. A row that records no local copy owns no folder.
    pub fn owns(&self, dir: &std::path::Path) -> bool {
        if self.path.is_none() {
            return false;
        }
        let Some(sha) = &self.manifest_sha256 else {
            return false;
        };
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let src = ArchiveSource::local(&id, dir);
        match src.read_small(MANIFEST_FILE) {
            Ok(raw) => {
                manifest::sha256_hex(&raw) == *sha
                    && Manifest::from_json(&raw).is_ok_and(|m| m.backup_id == id)
            }
            Err(_) => false,
        }
    }
}

/// The manifest row of `checks` (verify's or precheck's) compared with the manifest this
/// database registered backup `id` with: an archive replaced by another of the same id (in
/// the shared directory, or in a bucket) is a checksum mismatch, even when its own
/// manifest.sha256 was recomputed to match (issue 17).
pub fn check_registered(id: &str, checks: &mut [FileCheck]) -> Result<()> {
    let Some(registered) = Claim::of(id)?.and_then(|c| c.manifest_sha256) else {
        return Ok(());
    };
    for c in checks.iter_mut().filter(|c| c.file == MANIFEST_FILE) {
        if c.actual_sha256.as_ref().is_some_and(|a| *a != registered) {
            c.status = FileStatus::ChecksumMismatch;
            c.expected_sha256 = Some(registered.clone());
            c.detail = Some(
                "manifest.json is not the one this backup was registered with (backup.backups.manifest_sha256)".into(),
            );
        }
    }
    Ok(())
}

/// Whether an error reading a remote copy means the storage cannot be reached (then the
/// caller gets that error, 08001/08006, rather than a "missing" row).
fn unreachable(e: &std::io::Error) -> bool {
    super::store::StoreError::inside(e).is_some_and(|s| {
        matches!(
            s.failure,
            super::store::Failure::Unreachable | super::store::Failure::Broken
        )
    })
}

/// What restore checks before changing anything. A local copy: every checksum. A remote
/// copy: the manifest's checksum and every file present with its size (contents are checked
/// as they stream in; a mismatch fails the restore, which then rolls back). A storage that
/// cannot be reached is an error of its own (08001/08006), not a damaged backup.
pub fn precheck(src: &ArchiveSource) -> Result<Vec<FileCheck>> {
    if !src.is_remote() {
        // The signature is checked on the bytes restore uses (security::signing).
        let mut checks = verify::verify_source_in(
            src,
            false,
            &crate::copy::check_for_interrupts,
            &crate::text::to_encoding,
            None,
        );
        check_registered(&src.id, &mut checks)?;
        return Ok(checks);
    }
    let mut out = Vec::new();
    let listing: HashMap<String, u64> = match src.list() {
        Ok(l) => l.into_iter().collect(),
        Err(e) => return Err(src.error("list", "", e)),
    };
    let raw = match src.read_small(MANIFEST_FILE) {
        Ok(r) => r,
        Err(e) if unreachable(&e) => return Err(src.error("read", MANIFEST_FILE, e)),
        Err(e) => {
            out.push(FileCheck::new(MANIFEST_FILE, FileStatus::Missing).detail(e.to_string()));
            return Ok(out);
        }
    };
    let sha_ok = src
        .read_small(MANIFEST_SHA_FILE)
        .ok()
        .and_then(|t| manifest::parse_manifest_sha_line(&String::from_utf8_lossy(&t)))
        .is_some_and(|h| h == manifest::sha256_hex(&raw));
    let mut row = FileCheck::new(MANIFEST_FILE, FileStatus::Ok);
    row.actual_sha256 = Some(manifest::sha256_hex(&raw));
    check_registered(&src.id, std::slice::from_mut(&mut row))?;
    if !sha_ok || row.status != FileStatus::Ok {
        out.push(FileCheck::new(MANIFEST_FILE, FileStatus::ChecksumMismatch));
        return Ok(out);
    }
    let Ok(m) = Manifest::from_json(&raw) else {
        out.push(FileCheck::new(MANIFEST_FILE, FileStatus::Corrupt));
        return Ok(out);
    };
    for f in &m.files {
        match listing.get(&f.path) {
            None => out.push(FileCheck::new(&f.path, FileStatus::Missing)),
            Some(size) if *size != f.bytes => {
                out.push(FileCheck::new(&f.path, FileStatus::ChecksumMismatch))
            }
            Some(_) => out.push(FileCheck::new(&f.path, FileStatus::Ok)),
        }
    }
    Ok(out)
}

/// delete(): remove the remote copy of backup `id`, if its row names one.
pub fn delete_remote(id: &str) -> Result<()> {
    let Some(name) = recorded_storage(id)? else {
        return Ok(());
    };
    let t = match targets::open(&name) {
        Ok(t) => t,
        // A dropped target: its archives are out of our reach (and were left there on purpose).
        Err(BackupError::UnknownObject { .. }) => {
            pgrx::warning!("pg_backup: storage \"{name}\" no longer exists; the remote copy of {id} was not removed");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    match remove_remote(t.store.as_ref(), id) {
        None => Ok(()),
        Some(e) => Err(e.into_backup_error(&name)),
    }
}

/// The database the copy of backup `id` that delete() would remove was taken of, as its
/// manifest says: the local folder when it is the row's own (`local_is_ours`), else the
/// remote copy the row records. None when there is no such copy (or no manifest to read).
/// A storage that cannot be reached is an error (delete then changes nothing).
pub fn database_of_copy(
    id: &str,
    dir: &std::path::Path,
    local_is_ours: bool,
) -> Result<Option<String>> {
    id::validate(id)?;
    let src = if local_is_ours {
        ArchiveSource::local(id, dir)
    } else {
        let Some(name) = recorded_storage(id)? else {
            return Ok(None);
        };
        match targets::open(&name) {
            Ok(t) => ArchiveSource::remote(id, &name, t.store),
            Err(BackupError::UnknownObject { .. }) => return Ok(None),
            Err(e) => return Err(e),
        }
    };
    match src.read_small(MANIFEST_FILE) {
        Ok(raw) => Ok(super::listing::summarize(id, &raw).database),
        Err(e) if unreachable(&e) => Err(src.error("read", MANIFEST_FILE, e)),
        Err(_) => Ok(None),
    }
}

/// An archive found in a target: id, manifest as stored, manifest parsed, total bytes.
pub type Found = (String, Vec<u8>, Manifest, u64);

/// rescan(storage): register the complete archives found in a target that the catalog does
/// not know. Returns (id, manifest bytes, manifest) for each, for the caller to record.
pub fn scan_remote(name: &str) -> Result<Vec<Found>> {
    let t = targets::open(name)?;
    let folders = t.store.folders().map_err(|e| e.into_backup_error(name))?;
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let mut complete = Vec::new();
    for f in folders {
        if f.has_manifest && id::validate(&f.name).is_ok() {
            complete.push(f.name.clone());
        }
        sizes.insert(f.name, f.bytes);
    }
    complete.sort();
    let mut out = Vec::new();
    for id in complete {
        let src = ArchiveSource::remote(&id, name, t.store.clone());
        let raw = match src.read_small(MANIFEST_FILE) {
            Ok(raw) => raw,
            Err(e) if unreachable(&e) => return Err(src.error("read", MANIFEST_FILE, e)),
            // One archive's manifest that cannot be read (a link or a pipe in a file://
            // target, a object gone meanwhile) is reported, and the others still registered.
            Err(e) => {
                pgrx::warning!(
                    "pg_backup: {} has an unreadable manifest.json ({e}); not registered",
                    src.describe()
                );
                continue;
            }
        };
        match Manifest::from_json(&raw) {
            Ok(m) if m.backup_id == id => {
                let size = sizes.get(&id).copied().unwrap_or(0);
                out.push((id, raw, m, size));
            }
            Ok(m) => pgrx::warning!(
                "pg_backup: {} holds backup {}; not registered",
                src.describe(),
                m.backup_id
            ),
            Err(e) => pgrx::warning!(
                "pg_backup: {} has an unreadable manifest.json ({e}); not registered",
                src.describe()
            ),
        }
    }
    Ok(out)
}
