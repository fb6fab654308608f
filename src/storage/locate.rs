//! The hooks of create/verify/restore/delete/rescan into storage targets and encryption: which
//! copy of a backup to read, what create() writes to, removing and finding remote copies.
//! These read the catalog (SPI); the stores themselves never do.

use std::collections::HashMap;
use std::sync::Arc;

use pgrx::prelude::*;

use super::archive_files::ArchiveSource;
use super::targets::{self, Target};
use super::upload::{remove_remote, Output};
use crate::archive::id;
use crate::archive::manifest::{self, Manifest, MANIFEST_FILE, MANIFEST_SHA_FILE};
use crate::archive::verify::{self, FileCheck, FileStatus};
use crate::backup::options::CreateOptions;
use crate::crypto::{Identities, Recipients};
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
        .with_hint("See SELECT id, status, path, storage FROM backup.backups; after losing the server, run backup.rescan(storage => 'name') first.")
}

/// The copy of backup `id` to read: in `storage` when named; else the local folder when it
/// holds the archive; else the remote copy its history row records.
pub fn locate(id: &str, storage: Option<&str>, identity: Option<&str>) -> Result<ArchiveSource> {
    id::validate(id)?;
    let ids = identities(identity)?;
    if let Some(name) = storage {
        let t = targets::open(name)?;
        let src = ArchiveSource::remote(id, name, t.store);
        if !src.exists() {
            return Err(not_found(id, &format!("storage \"{name}\"")));
        }
        return Ok(src.with_identities(ids));
    }
    let dir = guc::directory().join(id);
    if dir.join(MANIFEST_FILE).exists() {
        return Ok(ArchiveSource::local(id, &dir).with_identities(ids));
    }
    match recorded_storage(id)? {
        Some(name) => {
            let t = targets::open(&name)?;
            let src = ArchiveSource::remote(id, &name, t.store);
            // Reading the manifest will say clearly if the remote copy is gone too.
            Ok(src.with_identities(ids))
        }
        None if dir.exists() => Ok(ArchiveSource::local(id, &dir).with_identities(ids)),
        None => Err(crate::backup::create::unknown_backup(id)),
    }
}

/// What restore checks before changing anything. A local copy: every checksum. A remote
/// copy: the manifest's checksum and every file present with its size (contents are checked
/// as they stream in; a mismatch fails the restore, which then rolls back).
pub fn precheck(src: &ArchiveSource) -> Vec<FileCheck> {
    if !src.is_remote() {
        return verify::verify_source_in(
            src,
            false,
            &crate::copy::check_for_interrupts,
            &crate::text::to_encoding,
        );
    }
    let mut out = Vec::new();
    let listing: HashMap<String, u64> = match src.list() {
        Ok(l) => l.into_iter().collect(),
        Err(e) => {
            out.push(FileCheck::new(MANIFEST_FILE, FileStatus::Missing).detail(e.to_string()));
            return out;
        }
    };
    let raw = match src.read_small(MANIFEST_FILE) {
        Ok(r) => r,
        Err(e) => {
            out.push(FileCheck::new(MANIFEST_FILE, FileStatus::Missing).detail(e.to_string()));
            return out;
        }
    };
    let sha_ok = src
        .read_small(MANIFEST_SHA_FILE)
        .ok()
        .and_then(|t| manifest::parse_manifest_sha_line(&String::from_utf8_lossy(&t)))
        .is_some_and(|h| h == manifest::sha256_hex(&raw));
    if !sha_ok {
        out.push(FileCheck::new(MANIFEST_FILE, FileStatus::ChecksumMismatch));
        return out;
    }
    let Ok(m) = Manifest::from_json(&raw) else {
        out.push(FileCheck::new(MANIFEST_FILE, FileStatus::Corrupt));
        return out;
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
    out
}

/// create(): the storage and encryption of a new backup, if any. Returns None for a plain
/// local backup.
pub fn prepare_output(id: &str, opts: &CreateOptions) -> Result<Option<Arc<Output>>> {
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

/// An archive found in a target: id, manifest as stored, manifest parsed, total bytes.
pub type Found = (String, Vec<u8>, Manifest, u64);

/// rescan(storage): register the complete archives found in a target that the catalog does
/// not know. Returns (id, manifest bytes, manifest) for each, for the caller to record.
pub fn scan_remote(name: &str) -> Result<Vec<Found>> {
    let t = targets::open(name)?;
    let objects = t.store.list("").map_err(|e| e.into_backup_error(name))?;
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let mut complete = Vec::new();
    for o in &objects {
        let Some((id, rel)) = o.key.split_once('/') else {
            continue;
        };
        *sizes.entry(id.to_string()).or_default() += o.size;
        if rel == MANIFEST_FILE && id::validate(id).is_ok() {
            complete.push(id.to_string());
        }
    }
    complete.sort();
    let mut out = Vec::new();
    for id in complete {
        let src = ArchiveSource::remote(&id, name, t.store.clone());
        let raw = src
            .read_small(MANIFEST_FILE)
            .map_err(|e| src.error("read", MANIFEST_FILE, e))?;
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
