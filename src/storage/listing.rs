//! `backup.archives()`: the archives in the local `backup.directory` or in a storage target,
//! whatever database they were taken of, from their manifests alone (issue 20).
//!
//! Everything a manifest says is a claim (issue 17): it is read bounded
//! (`ArchiveSource::read_small`), never through a link, only under a valid backup id, and
//! what it says is shown as it can be said: a field of the wrong type or size is NULL, a
//! signature that is missing or does not verify is `signed = false` with a `detail`. An
//! encrypted archive's manifest keeps in clear everything listed here (its DDL is sealed).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::archive_files::ArchiveSource;
use super::store::{Failure, StoreError};
use super::targets;
use crate::archive::compression::Compression;
use crate::archive::id;
use crate::archive::manifest::{self, Format, MANIFEST_FILE};
use crate::archive::signature::{self, TrustedKey, Verdict, SIGNATURE_FILE};
use crate::error::Result;
use crate::guc;

/// One archive as `backup.archives()` lists it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Listed {
    pub id: String,
    pub database: Option<String>,
    pub server_version: Option<String>,
    /// RFC 3339, as the manifest says (checked to parse).
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    pub format: Option<String>,
    pub compression: Option<String>,
    pub encrypted: bool,
    pub signed: bool,
    pub bytes: i64,
    pub registered: bool,
    /// What is wrong with it, when something is.
    pub detail: Option<String>,
}

/// The fields of a manifest listed, each read leniently (a value of the wrong type is no
/// value); everything else (the TOC, the files) is skipped without being kept.
#[derive(Deserialize, Default)]
struct Head {
    #[serde(default)]
    backup_id: Option<Value>,
    #[serde(default)]
    database: Option<Value>,
    #[serde(default)]
    server_version: Option<Value>,
    #[serde(default)]
    created_at: Option<Value>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    compression: Option<Value>,
    #[serde(default)]
    encryption: Option<serde::de::IgnoredAny>,
}

/// A short printable text of at most `max` bytes, else nothing.
fn short_text(v: Option<&Value>, max: usize) -> Option<String> {
    let s = v?.as_str()?;
    (!s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)).then(|| s.to_string())
}

/// What manifest bytes `raw`, found under id `id`, say (pure: no signature, no catalog).
pub fn summarize(id: &str, raw: &[u8]) -> Listed {
    let mut out = Listed {
        id: id.to_string(),
        ..Listed::default()
    };
    let head: Head = match serde_json::from_slice(raw) {
        Ok(h) => h,
        Err(e) => {
            out.detail = Some(format!("manifest.json does not parse: {e}"));
            return out;
        }
    };
    let mut problems = Vec::new();
    // A database name is at most 63 bytes (NAMEDATALEN - 1).
    out.database = short_text(head.database.as_ref(), 63);
    if out.database.is_none() {
        problems.push("manifest.json names no valid database".to_string());
    }
    out.server_version = short_text(head.server_version.as_ref(), 64);
    out.created_at = short_text(head.created_at.as_ref(), 64)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    out.format = head
        .format
        .and_then(|v| serde_json::from_value::<Format>(v).ok())
        .map(|f| f.name().to_string());
    out.compression = head
        .compression
        .and_then(|v| serde_json::from_value::<Compression>(v).ok())
        .map(Compression::name);
    out.encrypted = head.encryption.is_some();
    match head.backup_id.as_ref().and_then(Value::as_str) {
        Some(b) if b == id => {}
        Some(b) if b.len() <= id::MAX_ID_LEN && id::validate(b).is_ok() => problems.push(
            format!("manifest.json is backup {b}'s, not {id}'s (copied or moved: not restorable under this id)"),
        ),
        _ => problems.push(format!(
            "manifest.json names no backup id, or another one than {id}"
        )),
    }
    if !problems.is_empty() {
        out.detail = Some(problems.join("; "));
    }
    out
}

/// The signature verdict as `signed` and, when not signed by a trusted key, why.
fn signature_note(verdict: Verdict) -> (bool, Option<String>) {
    match verdict {
        Verdict::Trusted { .. } => (true, None),
        Verdict::Unsigned => (false, Some(format!("not signed (no {SIGNATURE_FILE})"))),
        Verdict::Malformed(why) => (false, Some(format!("{SIGNATURE_FILE} is not a signature: {why}"))),
        Verdict::UnknownKey(key_id) => (
            false,
            Some(format!("signed by key {key_id}, which this database does not trust (backup.trust_key)")),
        ),
        Verdict::Mismatch { key_id, .. } => (
            false,
            Some(format!("manifest.json does not match its signature by key {key_id}: changed after it was signed")),
        ),
    }
}

fn add_detail(l: &mut Listed, note: Option<String>) {
    if let Some(n) = note {
        l.detail = Some(match l.detail.take() {
            Some(d) => format!("{n}; {d}"),
            None => n,
        });
    }
}

/// Whether an error reading from a store means the store cannot be reached (then the
/// listing fails with 08001/08006 rather than showing a partial list).
fn unreachable(e: &std::io::Error) -> bool {
    StoreError::inside(e)
        .is_some_and(|s| matches!(s.failure, Failure::Unreachable | Failure::Broken))
}

/// The signature file, at most 4 kB of it (a signature is a few lines).
fn read_signature(src: &ArchiveSource) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    match src.open(SIGNATURE_FILE) {
        Ok(r) => {
            let mut bytes = Vec::new();
            match r.take(4096).read_to_end(&mut bytes) {
                Ok(_) => Ok(Some(bytes)),
                Err(e) if unreachable(&e) => Err(src.error("read", SIGNATURE_FILE, e)),
                Err(_) => Ok(None),
            }
        }
        Err(e) if unreachable(&e) => Err(src.error("read", SIGNATURE_FILE, e)),
        Err(_) => Ok(None),
    }
}

/// Whether this database's catalog has this very archive: a row of its id whose registered
/// manifest is these bytes (a row of 0.1.0, which recorded no manifest checksum, by id).
fn registered(id: &str, raw: &[u8]) -> Result<bool> {
    Ok(crate::query::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM backup.backups WHERE id = $1
                  AND (manifest_sha256 IS NULL OR manifest_sha256 = $2))",
        &[id.into(), manifest::sha256_hex(raw).into()],
    )?
    .unwrap_or(false))
}

/// One archive whose manifest could be read.
fn describe(src: &ArchiveSource, raw: &[u8], bytes: u64, trusted: &[TrustedKey]) -> Result<Listed> {
    let mut l = summarize(&src.id, raw);
    let sig = read_signature(src)?;
    let (signed, note) = signature_note(signature::check(raw, sig.as_deref(), trusted));
    l.signed = signed;
    add_detail(&mut l, note);
    l.bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
    l.registered = registered(&src.id, raw)?;
    Ok(l)
}

/// The archives in the local directory (`storage` None) or in target `storage`, taken of
/// `database` when given, in id order.
pub fn list(storage: Option<&str>, database: Option<&str>) -> Result<Vec<Listed>> {
    let trusted = crate::security::signing::trusted()?;
    let keep = |l: &Listed| database.is_none_or(|d| l.database.as_deref() == Some(d));
    let mut out = Vec::new();
    match storage {
        None => {
            let base = guc::directory();
            let Ok(entries) = std::fs::read_dir(&base) else {
                return Ok(out);
            };
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| id::validate(n).is_ok())
                .collect();
            names.sort();
            for name in names {
                let dir = base.join(&name);
                let src = ArchiveSource::local(&name, &dir);
                let raw = match src.read_small(MANIFEST_FILE) {
                    Ok(raw) => raw,
                    // Incomplete (being written, or failed): not an archive yet.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        pgrx::warning!(
                            "pg_backup: {} not listed: manifest.json: {e}",
                            dir.display()
                        );
                        continue;
                    }
                };
                let bytes: u64 = src
                    .list()
                    .map(|l| l.iter().map(|(_, s)| s).sum())
                    .unwrap_or(0);
                let l = describe(&src, &raw, bytes, &trusted)?;
                if keep(&l) {
                    out.push(l);
                }
            }
        }
        Some(name) => {
            let t = targets::open(name)?;
            let folders = t.store.folders().map_err(|e| e.into_backup_error(name))?;
            let mut sizes: BTreeMap<String, (u64, bool)> = BTreeMap::new();
            let mut invalid = 0usize;
            for f in folders {
                if id::validate(&f.name).is_err() {
                    invalid += 1;
                    continue;
                }
                sizes.insert(f.name, (f.bytes, f.has_manifest));
            }
            if invalid > 0 {
                pgrx::warning!(
                    "pg_backup: {invalid} folder(s) in storage \"{name}\" are not named by a valid backup id; not listed"
                );
            }
            for (id, (bytes, complete)) in sizes {
                if !complete {
                    continue;
                }
                let src = ArchiveSource::remote(&id, name, t.store.clone());
                let raw = match src.read_small(MANIFEST_FILE) {
                    Ok(raw) => raw,
                    Err(e) if unreachable(&e) => return Err(src.error("read", MANIFEST_FILE, e)),
                    Err(e) => {
                        pgrx::warning!(
                            "pg_backup: {} not listed: manifest.json: {e}",
                            src.describe()
                        );
                        continue;
                    }
                };
                let l = describe(&src, &raw, bytes, &trusted)?;
                if keep(&l) {
                    out.push(l);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "20261123T023000.000000Z-nightly";

    #[test]
    fn a_manifest_says_what_is_listed() {
        let raw = serde_json::json!({
            "backup_id": ID, "database": "prod", "server_version": "15.8",
            "created_at": "2026-11-23T02:30:00.000000Z", "format": "native",
            "compression": "zstd:3", "toc": [{"sql": "x"}],
            "encryption": {"method": "age"},
        });
        let l = summarize(ID, &serde_json::to_vec(&raw).unwrap());
        assert_eq!(l.database.as_deref(), Some("prod"));
        assert_eq!(l.server_version.as_deref(), Some("15.8"));
        assert_eq!(l.format.as_deref(), Some("native"));
        assert!(l.compression.is_some());
        assert!(l.encrypted);
        assert!(l.created_at.is_some());
        assert_eq!(l.detail, None);
    }

    #[test]
    fn a_hostile_manifest_is_listed_with_what_can_be_said() {
        let long = "x".repeat(1000);
        let raw = serde_json::json!({
            "backup_id": "../../etc", "database": long, "server_version": ["15"],
            "created_at": "infinity", "format": "exe", "compression": {"a": 1},
        });
        let l = summarize(ID, &serde_json::to_vec(&raw).unwrap());
        assert_eq!(l.database, None);
        assert_eq!(l.server_version, None);
        assert_eq!(l.created_at, None);
        assert_eq!(l.format, None);
        assert_eq!(l.compression, None);
        assert!(!l.encrypted);
        let d = l.detail.unwrap();
        assert!(
            d.contains("no valid database") && d.contains("another one"),
            "{d}"
        );
        assert!(!d.contains("../"), "{d}");

        let l = summarize(ID, b"{\"database\": \"prod\", ");
        assert!(l.detail.unwrap().contains("does not parse"));
        assert_eq!(l.database, None);
        let l = summarize(ID, b"[1, 2]");
        assert!(l.detail.is_some());
        let other = serde_json::json!({"backup_id": "20260101T000000.000000Z", "database": "prod"});
        let l = summarize(ID, &serde_json::to_vec(&other).unwrap());
        assert!(l.detail.unwrap().contains("20260101T000000.000000Z's"));
    }

    #[test]
    fn signatures_are_named() {
        assert!(!signature_note(Verdict::Unsigned).0);
        assert!(signature_note(Verdict::UnknownKey("abcd".into()))
            .1
            .unwrap()
            .contains("abcd"));
        assert!(
            signature_note(Verdict::Trusted {
                name: "own".into(),
                key_id: "k".into()
            })
            .0
        );
    }
}
