//! Reading an archive wherever it is: the local folder or a storage target, encrypted or not.
//! verify() and restore() read every file through an `ArchiveSource`, so a backup whose local
//! copy is gone is checked and restored from its remote copy, streaming (never a whole file
//! in memory), and an encrypted backup is decrypted on the fly.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::store::Store;
use super::upload::{unseal_json, DDL_FILE};
use crate::archive::manifest::{self, Manifest, MANIFEST_FILE};
use crate::crypto::{self, Identities};
use crate::error::{BackupError, Result};

#[derive(Clone)]
pub enum Location {
    Local(PathBuf),
    Remote { name: String, store: Arc<dyn Store> },
}

#[derive(Clone)]
pub struct ArchiveSource {
    pub id: String,
    pub location: Location,
    /// Keys to decrypt an encrypted backup (restore's identity, or backup.identity_file).
    pub identities: Option<Identities>,
}

/// The `encryption` section of a sealed manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Sealed {
    pub recipients: Vec<String>,
    pub ddl_file: String,
    pub ddl_sha256: String,
}

impl Sealed {
    pub fn of(manifest_json: &[u8]) -> Option<Sealed> {
        let v: Value = serde_json::from_slice(manifest_json).ok()?;
        let e = v.get("encryption")?;
        Some(Sealed {
            recipients: e["recipients"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            ddl_file: e["ddl_file"].as_str().unwrap_or(DDL_FILE).to_string(),
            ddl_sha256: e["ddl_sha256"].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// The largest manifest (or other small file of an archive) read into memory.
pub const MAX_SMALL_FILE: u64 = 256 << 20;

impl ArchiveSource {
    pub fn local(id: &str, dir: &Path) -> ArchiveSource {
        ArchiveSource {
            id: id.to_string(),
            location: Location::Local(dir.to_path_buf()),
            identities: None,
        }
    }

    pub fn remote(id: &str, name: &str, store: Arc<dyn Store>) -> ArchiveSource {
        ArchiveSource {
            id: id.to_string(),
            location: Location::Remote {
                name: name.to_string(),
                store,
            },
            identities: None,
        }
    }

    pub fn with_identities(mut self, ids: Option<Identities>) -> ArchiveSource {
        self.identities = ids;
        self
    }

    /// Where it is, for messages.
    pub fn describe(&self) -> String {
        match &self.location {
            Location::Local(d) => d.display().to_string(),
            Location::Remote { name, store } => {
                format!("{}{}/ (storage \"{name}\")", store.url(), self.id)
            }
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(self.location, Location::Remote { .. })
    }

    fn key(&self, rel: &str) -> String {
        format!("{}/{rel}", self.id)
    }

    /// The stored bytes of file `rel`, as a stream.
    pub fn open(&self, rel: &str) -> std::io::Result<Box<dyn Read + Send>> {
        match &self.location {
            // Never through a link, and only a regular file (issue 17).
            Location::Local(d) => Ok(Box::new(crate::archive::open::open_file(d, rel)?)),
            Location::Remote { store, .. } => store.get(&self.key(rel)).map_err(|e| e.io()),
        }
    }

    /// A small file (the manifest) whole.
    pub fn read_small(&self, rel: &str) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        // Read whole before its signature is checked, so whoever can write the folder or the
        // bucket decides how much memory this takes: at most MAX_SMALL_FILE (a manifest of
        // 100,000 tables' DDL is a few tens of MB). More is an error, never a truncated read.
        // In chunks, with a cancel check between them on the backend's thread: a slow disk or
        // store answers a cancel within one chunk.
        let mut file = self.open(rel)?.take(MAX_SMALL_FILE + 1);
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            crate::error::check_interrupts_on_backend_thread();
            match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if out.len() as u64 > MAX_SMALL_FILE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{rel} is larger than {} MiB", MAX_SMALL_FILE >> 20),
            ));
        }
        Ok(out)
    }

    /// Every file of the archive, relative, with its size.
    pub fn list(&self) -> std::io::Result<Vec<(String, u64)>> {
        match &self.location {
            // Links, pipes and devices are listed (verify names them) but never followed.
            Location::Local(d) => Ok(crate::archive::open::list(&crate::archive::open::open_dir(
                d,
            )?)?
            .into_iter()
            .map(|e| (e.rel, e.size))
            .collect()),
            Location::Remote { store, .. } => {
                let prefix = format!("{}/", self.id);
                Ok(store
                    .list(&prefix)
                    .map_err(|e| e.io())?
                    .into_iter()
                    .filter_map(|o| o.key.strip_prefix(&prefix).map(|k| (k.to_string(), o.size)))
                    .collect())
            }
        }
    }

    pub fn exists(&self) -> bool {
        match &self.location {
            Location::Local(d) => crate::archive::open::is_file(d, MANIFEST_FILE),
            Location::Remote { .. } => self
                .list()
                .map(|l| l.iter().any(|(k, _)| k == MANIFEST_FILE))
                .unwrap_or(false),
        }
    }

    /// Whether the archive is complete (its manifest is there). Unlike `exists`, a storage
    /// that cannot be reached is an error (08001/08006), never "not there" (issue 17).
    pub fn try_exists(&self) -> Result<bool> {
        match &self.location {
            Location::Local(_) => Ok(self.exists()),
            // The manifest itself (no listing: a planted object elsewhere in the folder
            // cannot make the archive unreadable).
            Location::Remote { store, .. } => store
                .exists(&self.key(MANIFEST_FILE))
                .map_err(|e| self.error("read", MANIFEST_FILE, e.io())),
        }
    }

    /// Turn an I/O error into the extension's error: a storage failure keeps its SQLSTATE.
    pub fn error(&self, action: &'static str, rel: &str, e: std::io::Error) -> BackupError {
        match &self.location {
            Location::Local(d) => BackupError::io(action, &d.join(rel), e),
            Location::Remote { name, .. } => BackupError::Storage {
                message: format!(
                    "storage \"{name}\": could not {action} {}: {e}",
                    self.key(rel)
                ),
                hint: None,
                // The store's own classification when it travelled inside the io::Error
                // (an unreachable endpoint is 08001, not a broken connection).
                sqlstate: match super::store::StoreError::inside(&e) {
                    Some(s) => s.sqlstate(),
                    None => match e.kind() {
                        std::io::ErrorKind::NotFound => "58P01",
                        std::io::ErrorKind::PermissionDenied => "42501",
                        _ => "08006",
                    },
                },
            },
        }
    }

    /// The identities, or the error that says how to give them.
    pub fn require_identities(&self) -> Result<&Identities> {
        self.identities.as_ref().ok_or_else(|| BackupError::Storage {
            message: format!("backup {} is encrypted and no identity was given", self.id),
            hint: Some("Pass identity => 'AGE-SECRET-KEY-1...' or have a superuser set backup.identity_file to the key file.".into()),
            sqlstate: "55000",
        })
    }

    /// Wrap the stored bytes of an encrypted file so that reading gives the plaintext.
    pub fn decrypt<'a, R: Read + Send + 'a>(
        &self,
        r: R,
        rel: &str,
    ) -> Result<Box<dyn Read + Send + 'a>> {
        let ids = self.require_identities()?;
        Ok(Box::new(DecryptingReader {
            inner: ids.decrypt(r, rel)?,
        }))
    }

    /// The manifest as stored, and parsed with its DDL (decrypted when sealed: that needs the
    /// identities). `authenticate` is given the bytes as read before anything is made of them
    /// (restore passes security::signing's check: what is parsed is what was checked).
    pub fn manifest(
        &self,
        authenticate: impl FnOnce(&[u8]) -> Result<()>,
    ) -> Result<(Manifest, Vec<u8>)> {
        let raw = self
            .read_small(MANIFEST_FILE)
            .map_err(|e| self.error("read", MANIFEST_FILE, e))?;
        authenticate(&raw)?;
        let Some(sealed) = Sealed::of(&raw) else {
            let m = Manifest::from_json(&raw)?;
            self.is_ours(&m)?;
            return Ok((m, raw));
        };
        if !crate::archive::manifest::is_archive_path(&sealed.ddl_file) {
            return Err(BackupError::corrupt(
                "manifest.json names an unexpected DDL file",
            ));
        }
        let ddl = self
            .read_small(&sealed.ddl_file)
            .map_err(|e| self.error("read", &sealed.ddl_file, e))?;
        if manifest::sha256_hex(&ddl) != sealed.ddl_sha256 {
            return Err(BackupError::corrupt(format!(
                "backup {}: {} does not match its checksum",
                self.id, sealed.ddl_file
            )));
        }
        let mut plain = Vec::new();
        self.require_identities()?
            .decrypt(&ddl[..], &sealed.ddl_file)?
            .read_to_end(&mut plain)
            .map_err(|e| {
                BackupError::corrupt(format!(
                    "{}: {}",
                    sealed.ddl_file,
                    crypto::describe_read_error(&e)
                ))
            })?;
        let mut value: Value = serde_json::from_slice(&raw)
            .map_err(|e| BackupError::corrupt(format!("manifest.json does not parse: {e}")))?;
        unseal_json(&mut value, &plain)?;
        let full = serde_json::to_vec(&value).expect("serializes");
        let m = Manifest::from_json(&full)?;
        self.is_ours(&m)?;
        Ok((m, raw))
    }

    /// A genuine manifest is still only a claim about where it lies (issue 17): one that
    /// names another backup (another archive's, signed, copied or swapped in under this id,
    /// even between two reads of one restore) is never taken for this backup.
    fn is_ours(&self, m: &Manifest) -> Result<()> {
        if m.backup_id == self.id {
            return Ok(());
        }
        Err(BackupError::corrupt(format!(
            "{} holds the manifest of backup {}, not of backup {}",
            self.describe(),
            m.backup_id,
            self.id
        ))
        .with_hint("An archive copied or moved under another id, or swapped in: nothing was done. Restore the backup under its own id."))
    }
}

/// age's reader, with authentication failures named as such.
struct DecryptingReader<R: Read> {
    inner: age::stream::StreamReader<R>,
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                crypto::describe_read_error(&e),
            )
        })
    }
}

/// One file of an archive, to be read on a helper thread (restore's feeders).
#[derive(Clone)]
pub struct FileRef {
    pub source: ArchiveSource,
    pub rel: String,
    pub encrypted: bool,
}

impl FileRef {
    /// For messages: the local path, or the object's URL.
    pub fn display(&self) -> PathBuf {
        match &self.source.location {
            Location::Local(d) => d.join(&self.rel),
            Location::Remote { store, .. } => {
                PathBuf::from(format!("{}{}/{}", store.url(), self.source.id, self.rel))
            }
        }
    }

    /// The stored bytes (hash these).
    pub fn open_stored(&self) -> std::io::Result<Box<dyn Read + Send>> {
        self.source.open(&self.rel)
    }

    /// The compressed plaintext over the stored bytes `r`: decrypted when encrypted.
    pub fn plaintext<'a, R: Read + Send + 'a>(
        &self,
        r: R,
    ) -> std::io::Result<Box<dyn Read + Send + 'a>> {
        if !self.encrypted {
            return Ok(Box::new(r));
        }
        self.source
            .decrypt(r, &self.rel)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
    }
}
