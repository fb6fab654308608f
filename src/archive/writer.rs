//! Writing one archive: a hidden temporary folder, data files streamed through gzip and SHA-256
//! on a helper thread, then fsync and an atomic rename, so a crash never leaves something that
//! looks complete.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::compression::{Compression, Compressor};
use super::manifest::{self, Manifest};
use super::open;
use super::signature::SecretKey;
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
    /// The temporary folder, opened when the backup starts: `syncfs` on it reports every
    /// writeback error of its file system from then on (see `make_durable`).
    sync_handle: Option<File>,
    /// `backup.directory` and the temporary folder in it, opened when the backup starts:
    /// whoever can write that directory (a shared disk) could swap the temporary folder for
    /// a link while the backup runs, so every file is created, fsynced and renamed through
    /// these descriptors, never by path (issue 20, F3).
    base: OwnedFd,
    dir: Arc<OwnedFd>,
}

/// Where the stored bytes of one archive file go (after compression and encryption):
/// `finish_sink` makes them durable and returns their size and SHA-256.
pub trait FileSink: Write + Send {
    fn finish_sink(self: Box<Self>) -> Result<(u64, String)>;
}

/// The hook for off-site copies and encryption (implemented in storage::upload).
pub trait ArchiveOutput: Send + Sync {
    /// The sink for archive file `rel`, kept locally (if at all) in the folder `dir` (the
    /// archive's temporary folder, whose path is `tmp_dir`).
    fn open(&self, rel: &str, dir: &OwnedFd, tmp_dir: &Path) -> Result<Box<dyn FileSink>>;
    /// Set when the backup fails: uploads in flight stop.
    fn cancel_flag(&self) -> Arc<AtomicBool>;
    /// Whether the archive is also kept in the local folder.
    fn keep_local(&self) -> bool;
    /// Suffix of every stored file (`.age` when encrypted).
    fn suffix(&self) -> &'static str;
    /// The manifest as stored (DDL sealed when encrypted).
    fn seal_manifest(&self, json: Vec<u8>, dir: &OwnedFd, tmp_dir: &Path) -> Result<Vec<u8>>;
    /// Store the manifest (last, after its checksum and signature) once every file is stored.
    fn finish(&self, manifest_json: &[u8], sha_line: &[u8], signature: &[u8]) -> Result<()>;
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
        // backup.directory is the configuration's (a link there is the superuser's choice);
        // nothing below it is followed.
        let base_fd = open::open_root(base).map_err(|e| BackupError::io("open", base, e))?;
        if open::exists_in(&base_fd, id).map_err(|e| BackupError::io("inspect", &final_dir, e))? {
            return Err(BackupError::exists(format!(
                "backup \"{id}\" already exists in {}",
                base.display()
            ))
            .with_hint("Use another label, or remove the old one with backup.delete()."));
        }
        let tmp_name = format!("{TMP_PREFIX}{id}");
        let tmp_dir = base.join(&tmp_name);
        // Whatever is there (a failed run's folder, or a link someone who can write the
        // directory planted: issue 17) goes; a link is removed itself, never followed. The
        // folders are then made new, and opened from their parent's descriptor.
        open::remove_tree_in(&base_fd, &tmp_name)
            .map_err(|e| BackupError::io("remove", &tmp_dir, e))?;
        let dir = open::make_dir_in(&base_fd, &tmp_name, true)
            .map_err(|e| BackupError::io("create directory", &tmp_dir, e))?;
        open::make_dir_in(&dir, "data", true)
            .map_err(|e| BackupError::io("create directory", &tmp_dir.join("data"), e))?;
        let sync_handle = Some(File::from(
            dir.try_clone()
                .map_err(|e| BackupError::io("open", &tmp_dir, e))?,
        ));
        Ok(ArchiveWriter {
            id: id.to_string(),
            tmp_dir,
            final_dir,
            output: None,
            sync_handle,
            base: base_fd,
            dir: Arc::new(dir),
        })
    }

    /// The sink for archive file `rel` (local file, or the output's) and the flag that
    /// cancels it.
    pub fn open_sink(&self, rel: &str) -> Result<(Box<dyn FileSink>, Arc<AtomicBool>)> {
        match &self.output {
            Some(o) => Ok((o.open(rel, &self.dir, &self.tmp_dir)?, o.cancel_flag())),
            None => Ok((
                Box::new(HashingFile::create_in(&self.dir, rel, &self.tmp_dir)?),
                Arc::new(AtomicBool::new(false)),
            )),
        }
    }

    /// `open_sink` for a `DrainQueue`: a local file is created by the queue's thread; a
    /// storage target's sink (uploads, encryption) is opened here, in the backend.
    pub fn sink_opener(&self, rel: &str) -> Result<OpenSink> {
        match &self.output {
            Some(o) => {
                let sink = o.open(rel, &self.dir, &self.tmp_dir)?;
                Ok(Box::new(move || Ok(sink)))
            }
            None => {
                let (dir, rel, tmp_dir) = (self.dir.clone(), rel.to_string(), self.tmp_dir.clone());
                Ok(Box::new(move || {
                    Ok(Box::new(HashingFile::create_in(&dir, &rel, &tmp_dir)?)
                        as Box<dyn FileSink>)
                }))
            }
        }
    }

    /// The flag that cancels this archive's sinks (a storage target's uploads).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        match &self.output {
            Some(o) => o.cancel_flag(),
            None => Arc::new(AtomicBool::new(false)),
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

    /// Write the manifest, its checksum and its signature (by `key`, over the manifest as
    /// stored: sealed when encrypted), fsync everything, and rename into place.
    /// Returns the manifest's SHA-256 and, if fsync of the parent folder failed after the
    /// rename, why (the archive is complete; only the rename's durability is in doubt).
    pub fn finish(self, manifest: &Manifest, key: &SecretKey) -> Result<(String, Option<String>)> {
        let mut json = manifest.to_json();
        if let Some(o) = &self.output {
            json = o.seal_manifest(json, &self.dir, &self.tmp_dir)?;
        }
        let sha_line = manifest::manifest_sha_line(&json);
        let signature = key.sign(&json);
        // The storage copy first, manifest last: the local rename below is then the last
        // step, and a failure before it leaves nothing complete anywhere.
        if let Some(o) = &self.output {
            o.finish(&json, sha_line.as_bytes(), signature.as_bytes())?;
            if !o.keep_local() {
                let _ = open::remove_tree_in(&self.base, &format!("{TMP_PREFIX}{}", self.id));
                return Ok((manifest::sha256_hex(&json), None));
            }
        }
        // Every file is on disk before the manifest that vouches for it.
        make_durable(&self.tmp_dir, &self.dir, self.sync_handle.as_ref())?;
        for (name, bytes) in [
            (manifest::MANIFEST_FILE, &json[..]),
            (manifest::MANIFEST_SHA_FILE, sha_line.as_bytes()),
            (super::signature::SIGNATURE_FILE, signature.as_bytes()),
        ] {
            write_file_synced_in(&self.dir, name, &self.tmp_dir, bytes)?;
        }
        open::fsync_fd(&self.dir)
            .map_err(|e| BackupError::io("fsync directory", &self.tmp_dir, e))?;
        // The name is renamed, not the descriptor: whoever can write backup.directory could
        // have put something else there. Only the folder written here becomes the archive
        // (checked before and after the rename, which itself never follows a link).
        let tmp_name = format!("{TMP_PREFIX}{}", self.id);
        let ours = |name: &str| -> Result<()> {
            match open::is_entry(&self.base, name, &self.dir) {
                Ok(true) => Ok(()),
                Ok(false) => Err(BackupError::io(
                    "rename",
                    &self.tmp_dir,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!(
                            "\"{name}\" is not the folder this backup wrote (replaced by a link?): refused"
                        ),
                    ),
                )),
                Err(e) => Err(BackupError::io("inspect", &self.tmp_dir, e)),
            }
        };
        ours(&tmp_name)?;
        open::rename_in(&self.base, &tmp_name, &self.base, &self.id)
            .map_err(|e| BackupError::io("rename", &self.tmp_dir, e))?;
        if let Err(e) = ours(&self.id) {
            // Swapped between the check and the rename: what was renamed is not ours. A link
            // there goes (a folder is left alone); the backup fails.
            let _ = open::unlink_in(&self.base, &self.id);
            return Err(e);
        }
        // The archive is complete once renamed: a failed fsync of the parent folder only
        // risks the rename itself on a crash, so it is reported, not turned into a failure
        // that would leave a complete archive behind a failed row.
        let parent = self.final_dir.parent().unwrap_or(Path::new("/"));
        let warning = open::fsync_fd(&self.base)
            .map_err(|e| BackupError::io("fsync directory", parent, e))
            .err()
            .map(|e| e.to_string());
        Ok((manifest::sha256_hex(&json), warning))
    }

    /// Remove the temporary folder of a backup that failed (a link in its place is removed
    /// itself, nothing through it).
    pub fn abandon(tmp_dir: &Path) {
        let (Some(parent), Some(name)) = (tmp_dir.parent(), tmp_dir.file_name()) else {
            return;
        };
        if let Ok(base) = open::open_root(parent) {
            let _ = open::remove_tree_in(&base, &name.to_string_lossy());
        }
    }
}

/// Write `name` new in the folder `dir` (whose path is `shown`), never through a link, and
/// fsync it.
pub fn write_file_synced_in(dir: &OwnedFd, name: &str, shown: &Path, bytes: &[u8]) -> Result<()> {
    let path = shown.join(name);
    let mut f =
        open::create_in(dir, name, 0o600).map_err(|e| BackupError::io("create file", &path, e))?;
    f.write_all(bytes)
        .map_err(|e| BackupError::io("write", &path, e))?;
    f.sync_all().map_err(|e| BackupError::io("fsync", &path, e))
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
    /// Create archive file `rel` (e.g. `data/00001.copy`) new in the archive's folder `dir`
    /// (whose path is `shown`), never through a link.
    pub fn create_in(dir: &OwnedFd, rel: &str, shown: &Path) -> Result<HashingFile> {
        let file = open::create_file_in(dir, rel, 0o600)
            .map_err(|e| BackupError::io("create file", &shown.join(rel), e))?;
        Ok(HashingFile {
            file,
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    /// Create the file `path` new, never through a link. An archive's file (a parallel
    /// worker's, which has its path only) is created from the archive's temporary folder
    /// (the `.tmp-<id>` on its path), opened without following a link, as `create_in`
    /// does; any other file from its parent folder so opened.
    pub fn create(path: &Path) -> Result<HashingFile> {
        let anchor = path
            .ancestors()
            .skip(1)
            .find(|a| {
                a.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(TMP_PREFIX))
            })
            .or(path.parent())
            .unwrap_or(Path::new("."));
        let rel = path
            .strip_prefix(anchor)
            .ok()
            .and_then(|r| r.to_str())
            .ok_or_else(|| {
                BackupError::io(
                    "create file",
                    path,
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
                )
            })?;
        let dir = open::open_dir(anchor).map_err(|e| BackupError::io("open", anchor, e))?;
        Self::create_in(&dir, rel, anchor)
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

/// Archives with more data files than this are made durable with one `syncfs` instead of
/// an fsync per file: each fsync ends in a flush of the disk's write cache (on a busy
/// virtual disk, milliseconds each: 10,000 small tables spent most of their backup there).
const SYNCFS_ABOVE_FILES: usize = 64;

/// Make every file under the folder `dir` (whose path is `shown`) durable (before the
/// manifest is written). Few files: fsync each, then the folders. Many: `syncfs` of the file
/// system holding them, which writes back every dirty file and folder there and flushes the
/// disk once. It reports writeback errors (since Linux 5.8) that happened since `handle` was
/// opened, the start of the backup; on an older kernel, or without a handle, every file is
/// fsynced. Everything is reached from `dir`'s descriptor, never through a link.
pub fn make_durable(shown: &Path, dir: &OwnedFd, handle: Option<&File>) -> Result<()> {
    let many = open::count_in(dir).map_err(|e| BackupError::io("read directory", shown, e))?
        > SYNCFS_ABOVE_FILES;
    match handle {
        Some(h) if many && syncfs_reports_errors(&kernel_release()) => {
            // SAFETY: a valid open descriptor.
            if unsafe { libc::syncfs(h.as_raw_fd()) } != 0 {
                return Err(BackupError::io(
                    "sync the file system of",
                    shown,
                    std::io::Error::last_os_error(),
                ));
            }
            Ok(())
        }
        _ => open::fsync_tree_in(dir)
            .map(|_| ())
            .map_err(|e| BackupError::io("fsync", shown, e)),
    }
}

fn kernel_release() -> String {
    // SAFETY: uname fills a zeroed struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname for uname to fill.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    // SAFETY: uname NUL-terminates the field.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Whether `syncfs` on this kernel reports writeback errors (Linux 5.8 and later; before,
/// it returned success whatever happened).
fn syncfs_reports_errors(release: &str) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (5, 8),
        _ => false,
    }
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
    let mut compressor =
        Compressor::new(compression).map_err(|e| BackupError::io("start compressing", path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    drain_with(source, sink, path, &mut compressor, &mut buf, cancel)
}

/// Drain `source` through `compressor` into `sink`, reading through `buf`.
fn drain_with(
    source: OwnedFd,
    sink: Box<dyn FileSink>,
    path: &Path,
    compressor: &mut Compressor,
    buf: &mut [u8],
    cancel: &AtomicBool,
) -> Result<FileStats> {
    let mut out = compressor
        .encoder(std::io::BufWriter::with_capacity(1 << 20, sink))
        .map_err(|e| BackupError::io("start compressing", path, e))?;
    let mut reader = PollingReader { fd: source, cancel };
    let mut raw_bytes = 0u64;
    loop {
        let n = reader
            .read(buf)
            .map_err(|e| BackupError::io("read COPY stream for", path, e))?;
        if n == 0 {
            break;
        }
        raw_bytes += n as u64;
        out.write_all(&buf[..n]).map_err(|e| write_error(path, e))?;
    }
    let sink = out
        .finish()
        .and_then(|buffered| buffered.into_inner().map_err(|e| e.into_error()))
        .map_err(|e| write_error(path, e))?;
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

/// Opens the sink of a queued file, on the drain thread (creating a file costs the backend
/// nothing then).
pub type OpenSink = Box<dyn FnOnce() -> Result<Box<dyn FileSink>> + Send>;

/// One file for a `DrainQueue`: the pipe its bytes come from and where they go.
struct QueuedFile {
    source: OwnedFd,
    open: OpenSink,
    path: PathBuf,
}

/// Files in flight at most: each holds a pipe (two descriptors and up to its capacity).
const QUEUE_DEPTH: usize = 8;

/// A backup's data files drained one after the other by one helper thread, which keeps its
/// buffers and its compression context for all of them: a backup of thousands of small
/// tables starts no thread per table, and the backend starts the next table's COPY while the
/// thread still compresses the last one. Results come back in the order files were queued.
/// Dropping the queue cancels the thread and joins it.
pub struct DrainQueue {
    jobs: Option<SyncSender<QueuedFile>>,
    results: Receiver<Result<FileStats>>,
    cancel: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl DrainQueue {
    /// `cancel` stops the thread (and a storage target's uploads when it is theirs).
    pub fn start(compression: Compression, cancel: Arc<AtomicBool>) -> Result<DrainQueue> {
        let (jobs, queued) = mpsc::sync_channel::<QueuedFile>(QUEUE_DEPTH);
        let (done, results) = mpsc::channel::<Result<FileStats>>();
        let flag = cancel.clone();
        let handle = crate::threads::spawn("pg_backup drain", move || {
            drain_queue(queued, done, compression, &flag)
        })
        .map_err(|e| BackupError::io("start writer thread for", Path::new("data files"), e))?;
        Ok(DrainQueue {
            jobs: Some(jobs),
            results,
            cancel,
            handle: Some(handle),
        })
    }

    /// Queue the file whose bytes will come through `source` (the read end of a pipe).
    /// Waits while the queue is full, checking `interrupted` (the backend's cancel check).
    /// Err: the thread stopped; its error says why.
    pub fn push(
        &mut self,
        source: OwnedFd,
        open: OpenSink,
        path: PathBuf,
        interrupted: &dyn Fn(),
    ) -> Result<()> {
        let mut job = QueuedFile { source, open, path };
        loop {
            let Some(jobs) = &self.jobs else {
                return Err(self.stop(None));
            };
            match jobs.try_send(job) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) => {
                    job = back;
                    interrupted();
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Disconnected(_)) => return Err(self.stop(None)),
            }
        }
    }

    /// The files finished so far (in queue order); an error if one failed.
    pub fn ready(&mut self) -> Result<Vec<FileStats>> {
        let mut out = Vec::new();
        loop {
            match self.results.try_recv() {
                Ok(Ok(stats)) => out.push(stats),
                Ok(Err(e)) => return Err(self.stop(Some(e))),
                Err(TryRecvError::Empty) => return Ok(out),
                Err(TryRecvError::Disconnected) => {
                    return Ok(out);
                }
            }
        }
    }

    /// No more files: wait for the queued ones (checking `interrupted` every 100 ms) and
    /// return their results in order.
    pub fn finish(mut self, interrupted: &dyn Fn()) -> Result<Vec<FileStats>> {
        drop(self.jobs.take());
        let mut out = Vec::new();
        loop {
            interrupted();
            match self.results.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(stats)) => out.push(stats),
                Ok(Err(e)) => return Err(self.stop(Some(e))),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                return Err(panicked());
            }
        }
        Ok(out)
    }

    /// After a COPY into a queued pipe failed: the thread's own error if it stopped (a full
    /// disk closes the pipes, and COPY then fails with EPIPE), else None: COPY's error is
    /// the one that says what happened. Stops the thread either way.
    pub fn failure(&mut self) -> Option<BackupError> {
        drop(self.jobs.take());
        // The failed file's pipe is closed: the thread finishes or fails it, then stops.
        let mut first = None;
        while let Ok(r) = self.results.recv() {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        self.join_quietly();
        first
    }

    /// Stop the thread; the first error it reported (or `known`).
    fn stop(&mut self, known: Option<BackupError>) -> BackupError {
        self.cancel.store(true, Ordering::Relaxed);
        drop(self.jobs.take());
        let mut first = known;
        while let Ok(r) = self.results.recv() {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        self.join_quietly();
        first.unwrap_or_else(panicked)
    }

    fn join_quietly(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A write that failed: a storage failure (an upload's writer) keeps its SQLSTATE (a cancel
/// is 57014, an unreachable server 08001), anything else is an I/O error.
fn write_error(path: &Path, e: std::io::Error) -> BackupError {
    match crate::storage::store::StoreError::inside(&e) {
        Some(se) => BackupError::Storage {
            message: format!("could not write \"{}\": {se}", path.display()),
            hint: None,
            sqlstate: se.sqlstate(),
        },
        None => BackupError::io("write", path, e),
    }
}

fn panicked() -> BackupError {
    BackupError::io(
        "write",
        Path::new("data file"),
        std::io::Error::other("drain thread stopped"),
    )
}

impl Drop for DrainQueue {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.cancel.store(true, Ordering::Relaxed);
            drop(self.jobs.take());
            self.join_quietly();
        }
    }
}

/// The queue's thread: each file in turn; the first failure ends it (dropping the queued
/// pipes, so the backend's COPY into them stops).
fn drain_queue(
    queued: Receiver<QueuedFile>,
    done: mpsc::Sender<Result<FileStats>>,
    compression: Compression,
    cancel: &AtomicBool,
) {
    let mut compressor = match Compressor::new(compression) {
        Ok(c) => c,
        Err(e) => {
            let _ = done.send(Err(BackupError::io(
                "start compressing",
                Path::new("data files"),
                e,
            )));
            return;
        }
    };
    let mut buf = vec![0u8; 1 << 20];
    for job in queued {
        let result = (job.open)().and_then(|sink| {
            drain_with(
                job.source,
                sink,
                &job.path,
                &mut compressor,
                &mut buf,
                cancel,
            )
        });
        let failed = result.is_err();
        if done.send(result).is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (OwnedFd, File) {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid array of two ints. O_CLOEXEC: a process another test starts
        // meanwhile must not inherit the write end (the drain would never see the end).
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
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

    fn local_opener(path: &Path) -> OpenSink {
        let path = path.to_path_buf();
        Box::new(move || Ok(Box::new(HashingFile::create(&path)?) as Box<dyn FileSink>))
    }

    #[test]
    fn a_drain_queue_writes_its_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for c in [
            Compression::Zstd(3),
            Compression::Gzip(1),
            Compression::None,
        ] {
            let mut q = DrainQueue::start(c, Arc::new(AtomicBool::new(false))).unwrap();
            let mut expected = Vec::new();
            // More files than the queue holds, some larger than a pipe.
            for i in 0..(QUEUE_DEPTH * 3) {
                let path = dir.path().join(format!("{c:?}-{i}"));
                let (r, mut w) = pipe();
                q.push(r, local_opener(&path), path.clone(), &|| {})
                    .unwrap();
                let text: Vec<u8> = (0..(i * i * 500))
                    .flat_map(|n| format!("{n}\t{i}\n").into_bytes())
                    .collect();
                w.write_all(&text).unwrap();
                drop(w);
                expected.push((path, text));
            }
            let stats = q.finish(&|| {}).unwrap();
            assert_eq!(stats.len(), expected.len());
            for (s, (path, text)) in stats.iter().zip(&expected) {
                let on_disk = fs::read(path).unwrap();
                assert_eq!(s.bytes, on_disk.len() as u64);
                assert_eq!(s.sha256, manifest::sha256_hex(&on_disk));
                assert_eq!(s.raw_bytes, text.len() as u64);
                let mut back = Vec::new();
                c.decoder(&on_disk[..])
                    .unwrap()
                    .read_to_end(&mut back)
                    .unwrap();
                assert_eq!(&back, text);
            }
        }
    }

    #[test]
    fn a_failed_file_stops_the_queue_and_closes_the_pipes_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let taken = dir.path().join("taken");
        fs::write(&taken, b"x").unwrap();
        let mut q =
            DrainQueue::start(Compression::Zstd(1), Arc::new(AtomicBool::new(false))).unwrap();
        let good = dir.path().join("good");
        let (r1, w1) = pipe();
        q.push(r1, local_opener(&good), good.clone(), &|| {})
            .unwrap();
        drop(w1);
        // Its file cannot be created (it exists): the thread fails there.
        let (r2, w2) = pipe();
        q.push(r2, local_opener(&taken), taken.clone(), &|| {})
            .unwrap();
        drop(w2);
        let (r3, mut w3) = pipe();
        let third = dir.path().join("third");
        let pushed = q.push(r3, local_opener(&third), third.clone(), &|| {});
        match pushed {
            Ok(()) => {
                // Its reader goes with the stopped thread: writing fails (EPIPE) sooner or
                // later.
                let failed = (0..1000).any(|_| w3.write_all(&[b'a'; 65536]).is_err());
                assert!(
                    failed,
                    "the writer of a queued pipe is told the reader is gone"
                );
                let e = q.failure().expect("the thread's error");
                assert!(e.to_string().contains("taken"), "{e}");
            }
            Err(e) => assert!(e.to_string().contains("taken"), "{e}"),
        }
        assert!(!third.exists());
    }

    #[test]
    fn syncfs_is_trusted_from_linux_5_8() {
        assert!(syncfs_reports_errors("6.18.44-fc-v657"));
        assert!(syncfs_reports_errors("5.8.0"));
        assert!(syncfs_reports_errors("5.10.0-28-amd64"));
        assert!(!syncfs_reports_errors("5.7.19"));
        assert!(!syncfs_reports_errors("4.19.0-21-amd64"));
        assert!(!syncfs_reports_errors(""));
    }

    #[test]
    fn many_files_are_made_durable_together() {
        let dir = tempfile::tempdir().unwrap();
        let w = ArchiveWriter::begin(dir.path(), "many").unwrap();
        for i in 0..(SYNCFS_ABOVE_FILES + 10) {
            fs::write(w.tmp_dir.join(format!("data/{i:05}.copy")), b"1\n").unwrap();
        }
        assert_eq!(open::count_in(&w.dir).unwrap(), SYNCFS_ABOVE_FILES + 10);
        make_durable(&w.tmp_dir, &w.dir, w.sync_handle.as_ref()).unwrap();
        make_durable(&w.tmp_dir, &w.dir, None).unwrap();
    }

    #[test]
    fn finish_renames_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let w = ArchiveWriter::begin(dir.path(), "b1").unwrap();
        assert!(w.tmp_dir.exists());
        let mut m = manifest::sample();
        m.files.clear();
        let tmp = w.tmp_dir.clone();
        let key = SecretKey::from_seed([9; 32]);
        w.finish(&m, &key).unwrap();
        assert!(!tmp.exists());
        assert!(dir.path().join("b1/manifest.json").exists());
        // Signed with the key, over the manifest's bytes as written.
        let json = fs::read(dir.path().join("b1/manifest.json")).unwrap();
        let sig = fs::read(dir.path().join("b1/manifest.sig")).unwrap();
        let trusted = [crate::archive::signature::TrustedKey {
            name: "k".into(),
            key: key.public(),
        }];
        assert!(matches!(
            crate::archive::signature::check(&json, Some(&sig), &trusted),
            crate::archive::signature::Verdict::Trusted { .. }
        ));
        assert!(ArchiveWriter::begin(dir.path(), "b1").is_err());
        assert!(ArchiveWriter::begin(dir.path(), "../x").is_err());
    }

    /// Issue 20, F3: whoever can write backup.directory swaps the backup's temporary folder
    /// for a link to another folder while the backup runs. Data files, the manifest, its
    /// checksum and signature, the fsyncs and the final rename all go through the folders
    /// opened at the start: nothing appears in the linked folder, the link is never renamed
    /// into place, and a link planted where the temporary folder goes is removed itself.
    #[test]
    fn a_temporary_folder_swapped_for_a_link_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        fs::create_dir(victim.path().join("data")).unwrap();
        std::os::unix::fs::symlink(victim.path(), dir.path().join(".tmp-b1")).unwrap();
        let w = ArchiveWriter::begin(dir.path(), "b1").unwrap();
        assert!(
            victim.path().join("data").is_dir(),
            "the planted link went, not its target"
        );
        let (rel, abs) = w.data_path(1, "copy", Compression::None);
        // Swapped: the real folder moved aside, a link to the victim in its place.
        fs::rename(&w.tmp_dir, dir.path().join("aside")).unwrap();
        std::os::unix::fs::symlink(victim.path(), &w.tmp_dir).unwrap();
        let (mut sink, _) = w.open_sink(&rel).unwrap();
        sink.write_all(b"1\n").unwrap();
        sink.finish_sink().unwrap();
        // A parallel worker's file, created by its path: refused, not written through.
        assert!(HashingFile::create(&abs).is_err());
        let mut m = manifest::sample();
        m.files.clear();
        let key = SecretKey::from_seed([9; 32]);
        // Everything is written into the folder first opened; the link is not made the
        // archive: refused.
        let e = w.finish(&m, &key).unwrap_err();
        assert!(e.to_string().contains("replaced by a link?"), "{e}");
        assert_eq!(fs::read_dir(victim.path().join("data")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(victim.path()).unwrap().count(), 1);
        assert_eq!(
            fs::read(dir.path().join("aside").join(&rel)).unwrap(),
            b"1\n"
        );
        assert!(dir.path().join("aside/manifest.json").is_file());
        assert!(fs::symlink_metadata(dir.path().join("b1")).is_err());
        assert!(fs::symlink_metadata(dir.path().join(".tmp-b1"))
            .unwrap()
            .file_type()
            .is_symlink());
        ArchiveWriter::abandon(&dir.path().join(".tmp-b1"));
        assert!(fs::symlink_metadata(dir.path().join(".tmp-b1")).is_err());
        assert!(victim.path().join("data").is_dir());
    }
}
