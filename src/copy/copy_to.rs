//! COPY one table into an archive file without holding it in memory.
//!
//! PostgreSQL 15's BeginCopyTo has no data callback (that arrived in 16), so COPY is given the
//! write end of a pipe, as `/proc/self/fd/N`, and a Rust thread drains the read end through
//! gzip and SHA-256 into the file. The backend encodes rows while the thread compresses: two
//! cores at once, as pg_dump's server and client do.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use pgrx::prelude::*;

use super::CopyFormat;
use crate::archive::compression::Compression;
use crate::archive::writer::{Drain, DrainQueue, FileSink, FileStats, OpenSink};
use crate::error::{BackupError, Result};
use crate::subtransaction;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Pipe capacity: large enough that the backend rarely waits for the compressor.
const PIPE_SIZE: i32 = 1 << 20;

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid two-int array; O_CLOEXEC keeps the pipe out of COPY PROGRAM children.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(BackupError::io(
            "create pipe for",
            Path::new("COPY"),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: both fds were just created and are owned from here on.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A failure here only costs speed.
    // SAFETY: `w` is an open pipe descriptor this function owns; F_SETPIPE_SZ takes an int.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    Ok((r, w))
}

/// What COPY reads: a table (already locked), or a query of our own (never user text).
pub enum CopySource<'a> {
    Table(pg_sys::Oid),
    Query(&'a str),
}

/// COPY `source` in `format`, in the server encoding, under the active snapshot, into `dest`.
/// Returns the row count and the file's size and checksum.
pub fn copy_to_file(
    source: CopySource,
    dest: &Path,
    compression: Compression,
    format: CopyFormat,
) -> Result<(u64, FileStats)> {
    let (read_end, write_end) = pipe()?;
    let drain = Drain::spawn(read_end, dest.to_path_buf(), compression)?;
    match copy_in_subtransaction(source, write_end, format) {
        Ok(rows) => Ok((rows, drain.join()?)),
        // COPY stopped because the drain did (a full disk closes the pipe: EPIPE): the
        // drain's error is the one that says what happened.
        Err(caught) => match drain.join() {
            Err(e) => Err(e),
            Ok(_) => caught.rethrow(),
        },
    }
}

/// COPY in a subtransaction of its own, so that after an error the caller can still ask the
/// drain thread why (the subtransaction is rolled back, the session stays usable).
#[allow(clippy::result_large_err)]
fn copy_in_subtransaction(
    source: CopySource,
    write_end: OwnedFd,
    format: CopyFormat,
) -> std::result::Result<u64, pgrx::pg_sys::panic::CaughtError> {
    match subtransaction::run_result(|| copy_to_pipe(source, write_end, format)) {
        Ok(Ok(rows)) => Ok(rows),
        // copy_to_pipe reports no Rust errors of its own after COPY started.
        Ok(Err(e)) => e.raise(),
        Err(caught) => Err(caught),
    }
}

/// Like `copy_to_file`, into a sink from `ArchiveWriter::open_sink` (storage, encryption).
pub fn copy_to_sink(
    source: CopySource,
    sink: (Box<dyn FileSink>, Arc<AtomicBool>),
    label: &Path,
    compression: Compression,
    format: CopyFormat,
) -> Result<(u64, FileStats)> {
    let (read_end, write_end) = pipe()?;
    let drain = Drain::spawn_sink(read_end, sink.0, label.to_path_buf(), compression, sink.1);
    match copy_in_subtransaction(source, write_end, format) {
        Ok(rows) => Ok((rows, drain.join()?)),
        // COPY stopped because the drain did (a full disk closes the pipe: EPIPE): the
        // drain's error is the one that says what happened.
        Err(caught) => match drain.join() {
            Err(e) => Err(e),
            Ok(_) => caught.rethrow(),
        },
    }
}

/// Like `copy_to_sink`, through a backup's `DrainQueue`: the queue's thread drains the
/// file, and its size and checksum come from the queue later (in queue order). Returns
/// the row count.
pub fn copy_to_queue(
    source: CopySource,
    queue: &mut DrainQueue,
    open: OpenSink,
    label: &Path,
    format: CopyFormat,
) -> Result<u64> {
    let (read_end, write_end) = pipe()?;
    queue.push(
        read_end,
        open,
        label.to_path_buf(),
        &crate::copy::check_for_interrupts,
    )?;
    match copy_in_subtransaction(source, write_end, format) {
        Ok(rows) => Ok(rows),
        // As in copy_to_file: the thread's error when it stopped first.
        Err(caught) => match queue.failure() {
            Some(e) => Err(e),
            None => caught.rethrow(),
        },
    }
}

/// COPY `source` into the pipe whose write end is `write_end`, then close it. Other writers of
/// the same pipe (a script being written around the rows) keep it open.
pub fn copy_to_pipe(source: CopySource, write_end: OwnedFd, format: CopyFormat) -> Result<u64> {
    let fd_path = CString::new(format!("/proc/self/fd/{}", write_end.as_raw_fd())).expect("no NUL");
    let query_text = match &source {
        CopySource::Query(q) => Some(crate::text::statement(q)),
        CopySource::Table(_) => None,
    };
    // SAFETY: what DoCopy does for COPY TO, on the backend's thread inside a transaction: a
    // table is already locked by the caller (so NoLock), a query is our own text (one
    // statement, never user input) parsed in the database's encoding; `fd_path` and
    // `query_text` are NUL-terminated and outlive the COPY; COPY opens its own descriptor of
    // the pipe before ours is dropped; the relation is closed keeping the caller's lock.
    let rows = unsafe {
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        let (rel, raw_query) = match (&source, &query_text) {
            (CopySource::Table(oid), _) => (
                pg_sys::table_open(*oid, pg_sys::NoLock as i32),
                std::ptr::null_mut(),
            ),
            (CopySource::Query(_), Some(text)) => {
                (*pstate).p_sourcetext = text.as_ptr();
                let parsed = pg_sys::pg_parse_query(text.as_ptr());
                let first = (*parsed).elements.add(0).read().ptr_value as *mut pg_sys::RawStmt;
                (std::ptr::null_mut(), first)
            }
            (CopySource::Query(_), None) => unreachable!("query text is set for queries"),
        };
        let cstate = pg_sys::BeginCopyTo(
            pstate,
            rel,
            raw_query,
            pg_sys::InvalidOid,
            fd_path.as_ptr(),
            false,
            std::ptr::null_mut(),
            format.options(),
        );
        // COPY opened its own descriptor for the pipe; ours must close so that EndCopyTo's
        // close is the end of COPY's part of the stream.
        drop(write_end);
        let rows = pg_sys::DoCopyTo(cstate);
        pg_sys::EndCopyTo(cstate);
        pg_sys::free_parsestate(pstate);
        if !rel.is_null() {
            pg_sys::table_close(rel, pg_sys::NoLock as i32);
        }
        rows
    };
    Ok(rows)
}

/// A pipe into a drain thread, for one file written in several parts (the sql format's
/// script: statements written here, rows written by COPY).
pub struct PipeWriter {
    write_end: Option<OwnedFd>,
    drain: Option<Drain>,
}

impl PipeWriter {
    pub fn create(dest: &Path, compression: Compression) -> Result<PipeWriter> {
        let (read_end, write_end) = pipe()?;
        Ok(PipeWriter {
            write_end: Some(write_end),
            drain: Some(Drain::spawn(read_end, dest.to_path_buf(), compression)?),
        })
    }

    /// The drain's own error when it stopped (a full disk), else `fallback`.
    fn drain_error(&mut self, fallback: BackupError) -> BackupError {
        drop(self.write_end.take());
        match self.drain.take().map(Drain::join) {
            Some(Err(e)) => e,
            _ => fallback,
        }
    }

    /// Like `create`, into a sink from `ArchiveWriter::open_sink`.
    pub fn create_sink(
        sink: (Box<dyn FileSink>, Arc<AtomicBool>),
        label: &Path,
        compression: Compression,
    ) -> Result<PipeWriter> {
        let (read_end, write_end) = pipe()?;
        Ok(PipeWriter {
            write_end: Some(write_end),
            drain: Some(Drain::spawn_sink(
                read_end,
                sink.0,
                label.to_path_buf(),
                compression,
                sink.1,
            )),
        })
    }

    pub fn write_text(&mut self, text: &str) -> Result<()> {
        let fd = self.write_end.as_ref().expect("open until finish");
        // SAFETY: `fd` is the open write end this writer owns until `finish`; ManuallyDrop
        // keeps the File from closing it.
        let mut f =
            std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd.as_raw_fd()) });
        // The script is in the database's encoding, as the rows COPY writes into it.
        let bytes = crate::text::to_server(text);
        std::io::Write::write_all(&mut *f, &bytes).map_err(|e| {
            let fallback = BackupError::io("write script", Path::new("pipe"), e);
            self.drain_error(fallback)
        })
    }

    /// COPY `source` into the script (COPY gets its own descriptor of the same pipe).
    pub fn copy(&mut self, source: CopySource, format: CopyFormat) -> Result<u64> {
        let fd = self.write_end.as_ref().expect("open until finish");
        let dup = fd
            .try_clone()
            .map_err(|e| BackupError::io("duplicate pipe for", Path::new("COPY"), e))?;
        match copy_in_subtransaction(source, dup, format) {
            Ok(rows) => Ok(rows),
            Err(caught) => {
                drop(self.write_end.take());
                match self.drain.take().map(Drain::join) {
                    Some(Err(e)) => Err(e),
                    _ => caught.rethrow(),
                }
            }
        }
    }

    pub fn finish(mut self) -> Result<FileStats> {
        drop(self.write_end.take());
        self.drain.take().expect("joined once").join()
    }
}
