//! What pg_backup needs of a place that holds objects (`Store`), and how a store fails
//! (`StoreError`, each `Failure` with its SQLSTATE): what every kind of store and every
//! reader or writer of archives in stores share.

use std::io::Read;
use std::sync::atomic::AtomicBool;

use crate::error::BackupError;

/// Why a storage operation failed, as the user should hear it (each has its SQLSTATE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made (DNS, refused, connect timeout): 08001.
    Unreachable,
    /// The connection broke, timed out mid-transfer or the server kept failing (5xx): 08006.
    Broken,
    /// Unknown access key or bad signature: 28000.
    Credentials,
    /// The credentials are valid but may not do this: 42501.
    Denied,
    /// The bucket (or the folder of a file:// target) does not exist: 42704.
    NoBucket,
    /// The object does not exist: 58P01.
    NotFound,
    /// The work was cancelled (the backend hit an error or a cancel): 57014.
    Cancelled,
    /// A listing larger than pg_backup reads (hostile or foreign objects): 54000.
    TooMany,
    /// An object whose key the client cannot represent (an empty path segment, `.` or
    /// `..`): 58030, with a hint to remove it.
    BadKey,
    /// Anything else the server refused: 58030.
    Other,
}

#[derive(Debug, Clone)]
pub struct StoreError {
    pub failure: Failure,
    pub message: String,
}

pub type StoreResult<T> = std::result::Result<T, StoreError>;

impl StoreError {
    pub fn new(failure: Failure, message: impl Into<String>) -> StoreError {
        StoreError {
            failure,
            message: message.into(),
        }
    }

    pub fn sqlstate(&self) -> &'static str {
        match self.failure {
            Failure::Unreachable => "08001",
            Failure::Broken => "08006",
            Failure::Credentials => "28000",
            Failure::Denied => "42501",
            Failure::NoBucket => "42704",
            Failure::NotFound => "58P01",
            Failure::Cancelled => "57014",
            Failure::TooMany => "54000",
            Failure::BadKey | Failure::Other => "58030",
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self.failure {
            Failure::Unreachable => Some("Check the storage's endpoint (SELECT * FROM backup.storages) and that the server can reach it."),
            Failure::Broken => Some("The storage server failed or the connection broke; pg_backup retried with backoff. Try again later."),
            Failure::Credentials => Some("Check the storage's credentials (access_key_id and secret_access_key, service_account_key, account_key or sas_token, or the server's environment for \"credentials\": \"env\"): replace them with backup.add_storage(name, url, options, replace => true)."),
            Failure::Denied => Some("The credentials may not do this: allow writing, reading, listing and deleting objects (S3: s3:PutObject, s3:GetObject, s3:ListBucket, s3:DeleteObject, s3:AbortMultipartUpload) on the bucket or container."),
            Failure::NoBucket => Some("Create the bucket (or folder) first, or fix the storage's URL."),
            Failure::TooMany => Some("Give pg_backup a bucket or prefix of its own: the storage holds more objects or folders than an archive listing reads (objects that are not archives, or planted ones)."),
            Failure::BadKey => Some("Remove or rename that object with the provider's tools (its key has an empty segment \"//\", or a \".\" or \"..\" segment): pg_backup never writes such keys. A backup can still be restored by its id when its own folder holds no such key."),
            _ => None,
        }
    }

    /// Into the extension's one error type, naming the storage.
    pub fn into_backup_error(self, storage: &str) -> BackupError {
        let hint = self.hint().map(str::to_string);
        BackupError::Storage {
            message: format!("storage \"{storage}\": {}", self.message),
            hint,
            sqlstate: self.sqlstate(),
        }
    }

    /// As an io::Error that carries this error inside, so that its classification (08001
    /// unreachable vs 58P01 missing) survives the trip through `Read` and comes back out with
    /// [`StoreError::inside`].
    pub fn io(self) -> std::io::Error {
        let kind = match self.failure {
            Failure::NotFound => std::io::ErrorKind::NotFound,
            Failure::Denied | Failure::Credentials => std::io::ErrorKind::PermissionDenied,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, self)
    }

    /// The store error an io::Error made by [`StoreError::io`] carries.
    pub fn inside(e: &std::io::Error) -> Option<&StoreError> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<StoreError>())
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

/// One object found by a listing: its key relative to the store's prefix, and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
}

/// One top-level folder of a store (a backup id, when its name is a valid one): how many
/// objects it holds, their total size, and whether its manifest is among them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folder {
    pub name: String,
    pub objects: u64,
    pub bytes: u64,
    pub has_manifest: bool,
}

/// The most folders a listing of a whole store reads (a folder costs a few dozen bytes).
pub const MAX_FOLDERS: usize = 200_000;
/// The most objects one listing of a prefix returns (an object costs about a hundred bytes).
pub const MAX_OBJECTS: usize = 500_000;

/// Count object `key` (relative to the store's prefix) of `size` bytes into `folders`.
/// Objects outside any folder are not counted.
pub fn count_into(
    folders: &mut std::collections::BTreeMap<String, Folder>,
    key: &str,
    size: u64,
) -> StoreResult<()> {
    let Some((name, rel)) = key.split_once('/') else {
        return Ok(());
    };
    if !folders.contains_key(name) && folders.len() >= MAX_FOLDERS {
        return Err(StoreError::new(
            Failure::TooMany,
            format!("more than {MAX_FOLDERS} top-level folders"),
        ));
    }
    let f = folders.entry(name.to_string()).or_insert_with(|| Folder {
        name: name.to_string(),
        ..Folder::default()
    });
    f.objects += 1;
    f.bytes = f.bytes.saturating_add(size);
    f.has_manifest |= rel == crate::archive::manifest::MANIFEST_FILE;
    Ok(())
}

/// A writer of one object: bytes go in, `finish()` makes the object exist (never before),
/// dropping it without `finish()` leaves no object behind (best effort: abort the upload).
pub trait ObjectWriter: Send {
    fn write_all(&mut self, buf: &[u8]) -> StoreResult<()>;
    fn finish(self: Box<Self>) -> StoreResult<()>;
}

/// What pg_backup needs of a place that holds objects. Keys are relative to the target's
/// prefix and always `<backup_id>/<archive path>`, validated before they get here.
pub trait Store: Send + Sync {
    /// A URL for people and history rows (no secrets).
    fn url(&self) -> String;
    fn create(
        &self,
        key: &str,
        cancel: std::sync::Arc<AtomicBool>,
    ) -> StoreResult<Box<dyn ObjectWriter>>;
    fn get(&self, key: &str) -> StoreResult<Box<dyn Read + Send>>;
    /// Every object whose key starts with `prefix` (relative to the store's prefix).
    fn list(&self, prefix: &str) -> StoreResult<Vec<Object>>;
    fn delete(&self, key: &str) -> StoreResult<()>;
    /// The top-level folders (archives) of the store, in name order; memory grows with the
    /// folders, not with the objects.
    fn folders(&self) -> StoreResult<Vec<Folder>> {
        let mut folders = std::collections::BTreeMap::new();
        for o in self.list("")? {
            count_into(&mut folders, &o.key, o.size)?;
        }
        Ok(folders.into_values().collect())
    }
    /// Whether object `key` exists.
    fn exists(&self, key: &str) -> StoreResult<bool> {
        Ok(self.list(key)?.iter().any(|o| o.key == key))
    }
    /// Small objects (the manifest) in one piece.
    fn put(&self, key: &str, bytes: &[u8]) -> StoreResult<()> {
        let mut w = self.create(key, std::sync::Arc::new(AtomicBool::new(false)))?;
        w.write_all(bytes)?;
        w.finish()
    }
    fn read_all(&self, key: &str) -> StoreResult<Vec<u8>> {
        let mut out = Vec::new();
        self.get(key)?
            .read_to_end(&mut out)
            .map_err(|e| StoreError::new(Failure::Broken, format!("could not read {key}: {e}")))?;
        Ok(out)
    }
    /// Check that the target exists and the credentials work (a listing of one key).
    fn check(&self) -> StoreResult<()>;
}
