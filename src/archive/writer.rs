//! Writing one archive: a hidden temporary folder, data files streamed through gzip and SHA-256
//! on a helper thread, then fsync and an atomic rename, so a crash never leaves something that
//! looks complete.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use super::compression::Compression;
use super::manifest::{self, Manifest};
use crate::error::{BackupError, Result};

/// Prefix of folders still being written; `rescan()` and `verify()` never take them for backups.
pub const TMP_PREFIX: &str = ".tmp-";

pub struct ArchiveWriter {
    pub id: String,
    pub tmp_dir: PathBuf,
    pub final_dir: PathBuf,
    /// Where files go besides (or instead of) the local folder, and how they are sealed:
    /// a storage target and/or age encryption (storage::upload). None: local files only.
    pub output: Option<Arc<dyn ArchiveOutput>>,
}

/// Where the stored bytes of one archive file go (after compression and encryption):
/// `finish_sink` makes them durable and returns their size and SHA-256.
pub trait FileSink: Write + Send {
    fn finish_sink(self: Box<Self>) -> Result<(u64, String)>;
}

/// The hook for off-site copies and encryption (implemented in storage::upload).
pub trait ArchiveOutput: Send + Sync {
    /// The sink for archive file `rel`, whose local path is `local`.
    fn open(&self, rel: &str, local: &Path) -> Result<Box<dyn FileSink>>;
    /// Set when the backup fails: uploads in flight stop.
    fn cancel_flag(&self) -> Arc<AtomicBool>;
    /// Whether the archive is also kept in the local folder.
    fn keep_local(&self) -> bool;
    /// Suffix of every stored file (`.age` when encrypted).
    fn suffix(&self) -> &'static str;
    /// The manifest as stored (DDL sealed when encrypted).
    fn seal_manifest(&self, json: Vec<u8>, tmp_dir: &Path) -> Result<Vec<u8>>;
    /// Store the manifest (last) once every file is stored.
    fn finish(&self, manifest_json: &[u8], sha_line: &[u8]) -> Result<()>;
    /// Remove whatever a failed backup left in the storage (best effort).
    fn abandon(&self);
}

/// Create `dir` (and parents) as 0700 if missing.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| BackupError::io("create directory", dir, e))
}

impl ArchiveWriter {
    pub fn begin(base: &Path, id: &str) -> Result<ArchiveWriter> {
        super::id::validate(id)?;
        ensure_dir(base)?;
        let final_dir = base.join(id);
        if final_dir.exists() {
            return Err(BackupError::exists(format!(
                "backup \"{id}\" already exists in {}",
                base.display()
            ))
            .with_hint("Use another label, or remove the old one with backup.delete()."));
        }
        let tmp_dir = base.join(format!("{TMP_PREFIX}{id}"));
        if tmp_dir.exists() {
            fs::remove_dir_all(&tmp_dir).map_err(|e| BackupError::io("remove", &tmp_dir, e))?;
        }
        ensure_dir(&tmp_dir.join("data"))?;
        Ok(ArchiveWriter {
            id: id.to_string(),
            tmp_dir,
            final_dir,
            output: None,
        })
    }

    /// The sink for archive file `rel` (local file, or the output's) and the flag that
    /// cancels it.
    pub fn open_sink(&self, rel: &str) -> Result<(Box<dyn FileSink>, Arc<AtomicBool>)> {
        let local = self.tmp_dir.join(rel);
        match &self.output {
            Some(o) => Ok((o.open(rel, &local)?, o.cancel_flag())),
            None => Ok((
                Box::new(HashingFile::create(&local)?),
                Arc::new(AtomicBool::new(false)),
            )),
        }
    }

    /// Suffix of stored files (`.age` when encrypted).
    pub fn suffix(&self) -> &'static str {
        self.output.as_ref().map(|o| o.suffix()).unwrap_or("")
    }

    /// `data/00001.<ext>[.gz]`: `ext` says how rows are laid out (copy, csv, json).
    pub fn data_path(
        &self,
        index: usize,
        ext: &str,
        compression: Compression,
    ) -> (String, PathBuf) {
        let rel = format!(
            "data/{index:05}.{ext}{}{}",
            compression.suffix(),
            self.suffix()
        );
        let abs = self.tmp_dir.join(&rel);
        (rel, abs)
    }

    /// Write the manifest and its checksum, fsync everything, and rename into place.
    /// Returns the manifest's SHA-256 and, if fsync of the parent folder failed after the
    /// rename, why (the archive is complete; only the rename's durability is in doubt).
    pub fn finish(self, manifest: &Manifest) -> Result<(String, Option<String>)> {
        let mut json = manifest.to_json();
        if let Some(o) = &self.output {
            json = o.seal_manifest(json, &self.tmp_dir)?;
        }
        let sha_line = manifest::manifest_sha_line(&json);
        // The storage copy first, manifest last: the local rename below is then the last
        // step, and a failure before it leaves nothing complete anywhere.
        if let Some(o) = &self.output {
            o.finish(&json, sha_line.as_bytes())?;
            if !o.keep_local() {
                Self::abandon(&self.tmp_dir);
                return Ok((manifest::sha256_hex(&json), None));
            }
        }
        // Every file is on disk before the manifest that vouches for it.
        fsync_tree(&self.tmp_dir)?;
        write_file_synced(&self.tmp_dir.join(manifest::MANIFEST_FILE), &json)?;
        write_file_synced(
            &self.tmp_dir.join(manifest::MANIFEST_SHA_FILE),
            sha_line.as_bytes(),
        )?;
        fsync_dir(&self.tmp_dir)?;
        fs::rename(&self.tmp_dir, &self.final_dir)
            .map_err(|e| BackupError::io("rename", &self.tmp_dir, e))?;
        // The archive is complete once renamed: a failed fsync of the parent folder only
        // risks the rename itself on a crash, so it is reported, not turned into a failure
        // that would leave a complete archive behind a failed row.
        let warning = self
            .final_dir
            .parent()
            .and_then(|parent| fsync_dir(parent).err())
            .map(|e| e.to_string());
        Ok((manifest::sha256_hex(&json), warning))
    }

    /// Remove the temporary folder of a backup that failed.
    pub fn abandon(tmp_dir: &Path) {
        let _ = fs::remove_dir_all(tmp_dir);
    }
}

pub fn write_file_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| BackupError::io("create file", path, e))?;
    f.write_all(bytes)
        .map_err(|e| BackupError::io("write", path, e))?;
    f.sync_all().map_err(|e| BackupError::io("fsync", path, e))
}

pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackupError::io("fsync directory", dir, e))
}

/// What the drain thread measured for one data file.
#[derive(Debug, Clone, Default)]
pub struct FileStats {
    pub raw_bytes: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// A writer that hashes and counts what reaches the file.
pub struct HashingFile {
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl HashingFile {
    pub fn create(path: &Path) -> Result<HashingFile> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| BackupError::io("create file", path, e))?;
        Ok(HashingFile {
            file,
            hasher: Sha256::new(),
            bytes: 0,
        })
    }
}

impl FileSink for HashingFile {
    fn finish_sink(self: Box<Self>) -> Result<(u64, String)> {
        // Durable later, all files at once (ArchiveWriter::finish): one fsync per file here
        // costs a journal commit each, which for thousands of small tables is most of the
        // backup's time. Writeback starts now, so the fsync at the end finds little to do.
        // SAFETY: a valid open descriptor; the call only schedules writeback.
        unsafe {
            libc::sync_file_range(
                std::os::fd::AsRawFd::as_raw_fd(&self.file),
                0,
                0,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        Ok((self.bytes, manifest::hex(&self.hasher.finalize())))
    }
}

/// fsync every file under `dir` (the archive's data files, written without one), then the
/// folders: after this the archive's contents are on disk, before its manifest is written.
pub fn fsync_tree(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| BackupError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BackupError::io("read directory", dir, e))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| BackupError::io("stat", &path, e))?;
        if kind.is_dir() {
            fsync_tree(&path)?;
        } else if kind.is_file() {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| BackupError::io("fsync", &path, e))?;
        }
    }
    fsync_dir(dir)
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Read everything from `source` and write it compressed and hashed to `path`.
/// Runs on a helper thread and never calls into PostgreSQL. `cancel` stops it early
/// (the backend hit an error); it is checked between reads.
pub fn drain_to_file(
    source: OwnedFd,
    path: &Path,
    compression: Compression,
    cancel: &AtomicBool,
) -> Result<FileStats> {
    let sink = HashingFile::create(path)?;
    drain_to_sink(source, Box::new(sink), path, compression, cancel)
}

/// Like `drain_to_file`, into any sink (`path` names the file in errors).
pub fn drain_to_sink(
    source: OwnedFd,
    sink: Box<dyn FileSink>,
    path: &Path,
    compression: Compression,
    cancel: &AtomicBool,
) -> Result<FileStats> {
    let mut out = compression
        .encoder(std::io::BufWriter::with_capacity(1 << 20, sink))
        .map_err(|e| BackupError::io("start compressing", path, e))?;
    let mut reader = PollingReader { fd: source, cancel };
    let mut buf = vec![0u8; 1 << 20];
    let mut raw_bytes = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| BackupError::io("read COPY stream for", path, e))?;
        if n == 0 {
            break;
        }
        raw_bytes += n as u64;
        out.write_all(&buf[..n])
            .map_err(|e| BackupError::io("write", path, e))?;
    }
    let sink = out
        .finish()
        .and_then(|buffered| buffered.into_inner().map_err(|e| e.into_error()))
        .map_err(|e| BackupError::io("write", path, e))?;
    let (bytes, sha256) = sink.finish_sink()?;
    Ok(FileStats {
        raw_bytes,
        bytes,
        sha256,
    })
}

/// Reads a pipe with poll() so that a cancel request is seen within 100 ms even when the
/// writer (the backend) has stopped writing without closing.
struct PollingReader<'a> {
    fd: OwnedFd,
    cancel: &'a AtomicBool,
}

impl Read for PollingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "backup cancelled",
                ));
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, 100) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if r == 0 {
                continue;
            }
            // SAFETY: reading into a valid buffer from an fd we own.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                ) {
                    continue;
                }
                return Err(e);
            }
            return Ok(n as usize);
        }
    }
}

/// A running drain thread with its cancel flag; dropping it cancels and joins the thread, so an
/// error in the backend never leaves a thread writing into a folder that is being removed.
pub struct Drain {
    pub cancel: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<FileStats>>>,
}

impl Drain {
    pub fn spawn(source: OwnedFd, path: PathBuf, compression: Compression) -> Result<Drain> {
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let shown = path.clone();
        let handle = crate::threads::spawn("pg_backup drain", move || {
            drain_to_file(source, &path, compression, &flag)
        })
        .map_err(|e| BackupError::io("start writer thread for", &shown, e))?;
        Ok(Drain {
            cancel,
            handle: Some(handle),
        })
    }

    /// Drain into `sink` (from ArchiveWriter::open_sink); `cancel` is the sink's flag, so
    /// dropping the drain also stops the sink's uploads.
    pub fn spawn_sink(
        source: OwnedFd,
        sink: Box<dyn FileSink>,
        path: PathBuf,
        compression: Compression,
        cancel: Arc<AtomicBool>,
    ) -> Drain {
        let flag = cancel.clone();
        let handle = crate::storage::threads::spawn("pg_backup drain", move || {
            drain_to_sink(source, sink, &path, compression, &flag)
        })
        .expect("spawn drain thread");
        Drain {
            cancel,
            handle: Some(handle),
        }
    }

    pub fn join(mut self) -> Result<FileStats> {
        let handle = self.handle.take().expect("joined once");
        match handle.join() {
            Ok(r) => r,
            Err(_) => Err(BackupError::io(
                "write",
                Path::new("data file"),
                std::io::Error::other("drain thread panicked"),
            )),
        }
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.cancel.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (OwnedFd, File) {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid array of two ints.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        use std::os::fd::FromRawFd;
        // SAFETY: both fds were just created and are owned here.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
    }

    #[test]
    fn drains_a_pipe_through_gzip_and_hashes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.copy.gz");
        let (r, mut w) = pipe();
        let drain = Drain::spawn(r, path.clone(), Compression::Gzip(1)).unwrap();
        let line = b"1\thello\n";
        for _ in 0..100_000 {
            w.write_all(line).unwrap();
        }
        drop(w);
        let stats = drain.join().unwrap();
        assert_eq!(stats.raw_bytes, 800_000);
        let on_disk = fs::read(&path).unwrap();
        assert_eq!(stats.bytes, on_disk.len() as u64);
        assert_eq!(stats.sha256, manifest::sha256_hex(&on_disk));
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&on_disk[..])
            .read_to_end(&mut text)
            .unwrap();
        assert_eq!(text.len(), 800_000);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn dropping_a_drain_cancels_it_even_if_the_writer_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let (r, w) = pipe();
        let drain = Drain::spawn(r, dir.path().join("x"), Compression::None).unwrap();
        drop(drain); // must return although `w` is still open
        drop(w);
    }

    #[test]
    fn finish_renames_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let w = ArchiveWriter::begin(dir.path(), "b1").unwrap();
        assert!(w.tmp_dir.exists());
        let mut m = manifest::sample();
        m.files.clear();
        let tmp = w.tmp_dir.clone();
        w.finish(&m).unwrap();
        assert!(!tmp.exists());
        assert!(dir.path().join("b1/manifest.json").exists());
        assert!(ArchiveWriter::begin(dir.path(), "b1").is_err());
        assert!(ArchiveWriter::begin(dir.path(), "../x").is_err());
    }
}
