//! Load one archive file into a table through PostgreSQL's COPY FROM machinery.
//!
//! BeginCopyFrom takes a data-source callback but no user pointer, so the open file (gunzip
//! and SHA-256 on the fly) is parked in a thread-local for the callback to read from. The
//! checksum is compared at end of file, before the rows can commit: a mismatch raises XX001
//! and the transaction rolls back.

use std::cell::RefCell;
use std::ffi::CString;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use pgrx::prelude::*;
use sha2::{Digest, Sha256};

use crate::archive::compression::Compression;
use crate::archive::manifest;
use crate::error::{BackupError, Result};

struct Source {
    reader: Box<dyn Read>,
    error: Option<std::io::Error>,
}

thread_local! {
    static SOURCE: RefCell<Option<Source>> = const { RefCell::new(None) };
}

/// Counts and hashes the compressed bytes as they are read.
struct Hashing<R> {
    inner: R,
    hasher: std::rc::Rc<RefCell<(Sha256, u64)>>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut h = self.hasher.borrow_mut();
        h.0.update(&buf[..n]);
        h.1 += n as u64;
        Ok(n)
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn read_source(
    outbuf: *mut std::ffi::c_void,
    minread: i32,
    maxread: i32,
) -> i32 {
    SOURCE.with(|s| {
        let mut guard = s.borrow_mut();
        let Some(src) = guard.as_mut() else { return 0 };
        // SAFETY: COPY gives us a buffer of maxread bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(outbuf as *mut u8, maxread as usize) };
        let mut filled = 0usize;
        while filled < minread.max(1) as usize {
            match src.reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    src.error = Some(e);
                    break;
                }
            }
        }
        filled as i32
    })
}

/// COPY `file` (text format, as written by create) into relation `rel_oid`, columns `columns`.
pub fn copy_file_into(
    rel_oid: pg_sys::Oid,
    file: &Path,
    compression: Compression,
    columns: &[String],
    expected_sha256: &str,
) -> Result<u64> {
    let f = File::open(file).map_err(|e| BackupError::io("open", file, e))?;
    let hasher = std::rc::Rc::new(RefCell::new((Sha256::new(), 0u64)));
    let hashing = Hashing {
        inner: BufReader::with_capacity(1 << 20, f),
        hasher: hasher.clone(),
    };
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(hashing),
        Compression::Gzip(_) => Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::GzDecoder::new(hashing),
        )),
    };
    SOURCE.with(|s| {
        *s.borrow_mut() = Some(Source {
            reader,
            error: None,
        })
    });
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            SOURCE.with(|s| *s.borrow_mut() = None);
        }
    }
    let _clear = Clear;
    let rows = unsafe {
        let rel = pg_sys::table_open(rel_oid, pg_sys::RowExclusiveLock as i32);
        let mut attnames: *mut pg_sys::List = std::ptr::null_mut();
        for c in columns {
            let c = CString::new(c.as_str())
                .map_err(|_| BackupError::corrupt("column name with NUL"))?;
            attnames = pg_sys::lappend(
                attnames,
                pg_sys::makeString(pg_sys::pstrdup(c.as_ptr())) as *mut std::ffi::c_void,
            );
        }
        let options = super::server_encoding_options();
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        // CopyFrom finds its target as range table entry 1, as DoCopy sets it up.
        pg_sys::addRangeTableEntryForRelation(
            pstate,
            rel,
            pg_sys::RowExclusiveLock as i32,
            std::ptr::null_mut(),
            false,
            false,
        );
        let cstate = pg_sys::BeginCopyFrom(
            pstate,
            rel,
            std::ptr::null_mut(),
            std::ptr::null(),
            false,
            Some(read_source),
            attnames,
            options,
        );
        let rows = pg_sys::CopyFrom(cstate);
        pg_sys::EndCopyFrom(cstate);
        pg_sys::free_parsestate(pstate);
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        rows
    };
    if let Some(e) = SOURCE.with(|s| s.borrow_mut().as_mut().and_then(|s| s.error.take())) {
        return Err(
            BackupError::corrupt(format!("{}: cannot read: {e}", file.display()))
                .with_hint("Run backup.verify() on this backup."),
        );
    }
    // Drain whatever the decoder did not need, so the hash covers the whole file.
    SOURCE.with(|s| {
        if let Some(src) = s.borrow_mut().as_mut() {
            let _ = std::io::copy(&mut src.reader, &mut std::io::sink());
        }
    });
    let actual = manifest::hex(&hasher.borrow().0.clone().finalize());
    if actual != expected_sha256 {
        return Err(BackupError::corrupt(format!(
            "checksum mismatch in {}: expected {expected_sha256}, found {actual}",
            file.display()
        ))
        .with_hint(
            "The archive is damaged; nothing was restored. Run backup.verify() for details.",
        ));
    }
    Ok(rows)
}
