//! The output of create() when a storage target or encryption is asked for: every archive
//! file is compressed, then encrypted (age), then hashed, then written to the local folder
//! and/or streamed to the target as it is produced (never whole in memory). The manifest goes
//! last, so a target never holds something that looks complete before it is.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::store::{ObjectWriter, Store, StoreError};
use crate::archive::manifest::{self, MANIFEST_FILE, MANIFEST_SHA_FILE};
use crate::archive::signature::SIGNATURE_FILE;
use crate::archive::writer::{write_file_synced_in, ArchiveOutput, FileSink, HashingFile};
use crate::crypto::{self, Recipients};
use crate::error::{BackupError, Result};

/// The manifest keys that hold SQL (and so may hold values: defaults, view text, policies):
/// encrypted into `ddl.json.age` when the backup is encrypted.
pub const SEALED_KEYS: &[&str] = &["pre_data", "post_data", "toc"];
/// The encrypted DDL of an encrypted backup.
pub const DDL_FILE: &str = "ddl.json.age";

pub struct Output {
    pub id: String,
    pub remote: Option<(String, Arc<dyn Store>)>,
    pub keep_local: bool,
    pub recipients: Option<Recipients>,
    cancel: Arc<AtomicBool>,
    /// The first storage failure, with its own SQLSTATE (the drain only sees an io::Error).
    first_error: Mutex<Option<StoreError>>,
}

impl Output {
    pub fn new(
        id: &str,
        remote: Option<(String, Arc<dyn Store>)>,
        keep_local: bool,
        recipients: Option<Recipients>,
    ) -> Output {
        Output {
            id: id.to_string(),
            remote,
            keep_local,
            recipients,
            cancel: Arc::new(AtomicBool::new(false)),
            first_error: Mutex::new(None),
        }
    }

    fn key(&self, rel: &str) -> String {
        format!("{}/{rel}", self.id)
    }

    fn note(&self, e: &StoreError) {
        if let Ok(mut g) = self.first_error.lock() {
            if g.is_none() && e.failure != super::store::Failure::Cancelled {
                *g = Some(e.clone());
            }
        }
    }

    fn store_error(&self, e: StoreError) -> BackupError {
        self.note(&e);
        let name = self.remote.as_ref().map(|r| r.0.as_str()).unwrap_or("");
        e.into_backup_error(name)
    }

    /// The error to report for a failed backup: the storage's own, if one happened (a
    /// storage failure reaches the backend as an I/O error of the drain thread).
    pub fn refine(&self, e: BackupError) -> BackupError {
        let first = self.first_error.lock().ok().and_then(|g| g.clone());
        match (first, &self.remote) {
            (Some(se), Some((name, _))) => se.into_backup_error(name),
            _ => e,
        }
    }

    /// Where the remote copy is, for the history row.
    pub fn remote_url(&self) -> Option<String> {
        self.remote
            .as_ref()
            .map(|(_, s)| format!("{}{}/", s.url(), self.id))
    }
}

/// Hashes what reaches storage and writes it to the local file and/or the object.
struct TeeSink {
    local: Option<HashingFile>,
    remote: Option<Box<dyn ObjectWriter>>,
    output: Arc<OutputShared>,
    hasher: Sha256,
    bytes: u64,
}

/// What a sink needs of its Output (shared with the drain thread).
struct OutputShared {
    name: String,
    errors: Arc<Output>,
}

impl Write for TeeSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        if let Some(l) = &mut self.local {
            l.write_all(buf)?;
        }
        if let Some(r) = &mut self.remote {
            if let Err(e) = r.write_all(buf) {
                self.output.errors.note(&e);
                return Err(e.io());
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl TeeSink {
    fn finish(self) -> Result<(u64, String)> {
        if let Some(l) = self.local {
            Box::new(l).finish_sink()?;
        }
        if let Some(r) = self.remote {
            r.finish().map_err(|e| {
                self.output.errors.note(&e);
                e.into_backup_error(&self.output.name)
            })?;
        }
        Ok((self.bytes, manifest::hex(&self.hasher.finalize())))
    }
}

impl FileSink for TeeSink {
    fn finish_sink(self: Box<Self>) -> Result<(u64, String)> {
        (*self).finish()
    }
}

/// age encryption in front of the tee: what is hashed and stored is the age file.
struct SealingSink {
    writer: age::stream::StreamWriter<TeeSink>,
}

impl Write for SealingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

impl FileSink for SealingSink {
    fn finish_sink(self: Box<Self>) -> Result<(u64, String)> {
        let tee = self
            .writer
            .finish()
            .map_err(|e| BackupError::io("encrypt", Path::new("archive file"), e))?;
        tee.finish()
    }
}

/// The ArchiveOutput of one backup (an Arc, so sinks can report errors back to it).
pub struct SharedOutput(pub Arc<Output>);

impl ArchiveOutput for SharedOutput {
    fn open(&self, rel: &str, dir: &OwnedFd, tmp_dir: &Path) -> Result<Box<dyn FileSink>> {
        let o = &self.0;
        let local = if o.keep_local {
            Some(HashingFile::create_in(dir, rel, tmp_dir)?)
        } else {
            None
        };
        let remote = match &o.remote {
            Some((_, store)) => Some(
                store
                    .create(&o.key(rel), o.cancel.clone())
                    .map_err(|e| o.store_error(e))?,
            ),
            None => None,
        };
        let tee = TeeSink {
            local,
            remote,
            output: Arc::new(OutputShared {
                name: o.remote.as_ref().map(|r| r.0.clone()).unwrap_or_default(),
                errors: o.clone(),
            }),
            hasher: Sha256::new(),
            bytes: 0,
        };
        match &o.recipients {
            Some(r) => Ok(Box::new(SealingSink {
                writer: r
                    .encrypt(tee)
                    .map_err(|e| BackupError::io("encrypt", Path::new(rel), e))?,
            })),
            None => Ok(Box::new(tee)),
        }
    }

    fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.0.cancel.clone()
    }

    fn keep_local(&self) -> bool {
        self.0.keep_local
    }

    fn suffix(&self) -> &'static str {
        if self.0.recipients.is_some() {
            crypto::SUFFIX
        } else {
            ""
        }
    }

    fn seal_manifest(&self, json: Vec<u8>, dir: &OwnedFd, tmp_dir: &Path) -> Result<Vec<u8>> {
        let o = &self.0;
        let Some(r) = &o.recipients else {
            return Ok(json);
        };
        let sealed_bytes = seal_json(&json, r)?;
        let (mut value, ddl) = (sealed_bytes.0, sealed_bytes.1);
        if o.keep_local {
            write_file_synced_in(dir, DDL_FILE, tmp_dir, &ddl)?;
        }
        if let Some((_, store)) = &o.remote {
            store
                .put(&o.key(DDL_FILE), &ddl)
                .map_err(|e| o.store_error(e))?;
        }
        value["encryption"] = serde_json::json!({
            "method": "age",
            "recipients": r.texts(),
            "ddl_file": DDL_FILE,
            "ddl_sha256": manifest::sha256_hex(&ddl),
            "ddl_bytes": ddl.len(),
        });
        let mut out = serde_json::to_vec_pretty(&value).expect("manifest serializes");
        out.push(b'\n');
        Ok(out)
    }

    fn finish(&self, manifest_json: &[u8], sha_line: &[u8], signature: &[u8]) -> Result<()> {
        let o = &self.0;
        if let Some((_, store)) = &o.remote {
            store
                .put(&o.key(MANIFEST_SHA_FILE), sha_line)
                .map_err(|e| o.store_error(e))?;
            store
                .put(&o.key(SIGNATURE_FILE), signature)
                .map_err(|e| o.store_error(e))?;
            store
                .put(&o.key(MANIFEST_FILE), manifest_json)
                .map_err(|e| o.store_error(e))?;
        }
        Ok(())
    }

    fn abandon(&self) {
        let o = &self.0;
        o.cancel.store(true, Ordering::Relaxed);
        if let Some((_, store)) = &o.remote {
            // Bounded: a failed or cancelled backup's leftovers never look complete (the
            // manifest goes first), and the server may be the reason it failed.
            super::cloud::within(CLEANUP_LIMIT, || remove_remote(store.as_ref(), &o.id));
        }
    }
}

/// How long the cleanup of a failed backup's objects may wait for the storage in all.
const CLEANUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Delete every object of backup `id` in `store`, the manifest first (so that what is left
/// if this stops half-way never looks complete). Best effort; returns the first error.
pub fn remove_remote(store: &dyn Store, id: &str) -> Option<StoreError> {
    let prefix = format!("{id}/");
    let mut objects = match store.list(&prefix) {
        Ok(o) => o,
        Err(e) => return Some(e),
    };
    objects.sort_by_key(|o| o.key != format!("{prefix}{MANIFEST_FILE}"));
    let mut first = None;
    for obj in objects {
        if let Err(e) = store.delete(&obj.key) {
            first.get_or_insert(e);
        }
    }
    first
}

/// Split the SQL out of a manifest and encrypt it: returns the manifest value with those keys
/// emptied, and the age file that holds them.
pub fn seal_json(json: &[u8], r: &Recipients) -> Result<(Value, Vec<u8>)> {
    let mut value: Value = serde_json::from_slice(json)
        .map_err(|e| BackupError::corrupt(format!("manifest does not parse: {e}")))?;
    let mut sealed = serde_json::Map::new();
    for k in SEALED_KEYS {
        if let Some(v) = value.get_mut(*k) {
            sealed.insert(k.to_string(), std::mem::replace(v, Value::Array(vec![])));
        }
    }
    let plain = serde_json::to_vec(&Value::Object(sealed)).expect("serializes");
    let mut w = r
        .encrypt(Vec::new())
        .map_err(|e| BackupError::io("encrypt", Path::new(DDL_FILE), e))?;
    w.write_all(&plain)
        .map_err(|e| BackupError::io("encrypt", Path::new(DDL_FILE), e))?;
    let ddl = w
        .finish()
        .map_err(|e| BackupError::io("encrypt", Path::new(DDL_FILE), e))?;
    Ok((value, ddl))
}

/// Put the decrypted SQL back into a sealed manifest value.
pub fn unseal_json(value: &mut Value, ddl_plain: &[u8]) -> Result<()> {
    let sealed: Value = serde_json::from_slice(ddl_plain)
        .map_err(|e| BackupError::corrupt(format!("{DDL_FILE} does not parse: {e}")))?;
    if let Value::Object(m) = sealed {
        for (k, v) in m {
            if SEALED_KEYS.contains(&k.as_str()) {
                value[k] = v;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Identities;
    use age::secrecy::ExposeSecret;
    use std::io::Read;

    #[test]
    fn sealed_manifest_keeps_checksums_and_hides_sql() {
        let id = age::x25519::Identity::generate();
        let r = Recipients::parse(&[id.to_public().to_string()])
            .unwrap()
            .unwrap();
        let mut m = manifest::sample();
        m.toc[0].sql = "CREATE TABLE public.t (a text DEFAULT 'very secret');".into();
        let json = m.to_json();
        let (mut value, ddl) = seal_json(&json, &r).unwrap();
        let text = value.to_string();
        assert!(!text.contains("very secret"));
        assert!(text.contains(&m.files[0].sha256));
        assert!(!ddl.windows(11).any(|w| w == b"very secret"));
        let ids = Identities::parse(id.to_string().expose_secret()).unwrap();
        let mut plain = Vec::new();
        ids.decrypt(&ddl[..], DDL_FILE)
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        unseal_json(&mut value, &plain).unwrap();
        let back: manifest::Manifest = serde_json::from_value(value).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn a_local_encrypted_file_is_an_age_file() {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let r = Recipients::parse(&[id.to_public().to_string()]).unwrap();
        let out = SharedOutput(Arc::new(Output::new("b1", None, true, r)));
        let path = dir.path().join("f.age");
        let fd = crate::archive::open::open_dir(dir.path()).unwrap();
        let mut sink = out.open("f.age", &fd, dir.path()).unwrap();
        sink.write_all(b"row one\n").unwrap();
        let (bytes, sha) = sink.finish_sink().unwrap();
        let stored = std::fs::read(&path).unwrap();
        assert_eq!(bytes, stored.len() as u64);
        assert_eq!(sha, manifest::sha256_hex(&stored));
        assert!(stored.starts_with(b"age-encryption.org/v1"));
        let ids = Identities::parse(id.to_string().expose_secret()).unwrap();
        let mut plain = Vec::new();
        ids.decrypt(&stored[..], "f")
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, b"row one\n");
    }
}
