//! Load one archive file into a table through PostgreSQL's COPY FROM machinery.
//!
//! A helper thread reads the file, hashes it and gunzips it into chunks; BeginCopyFrom's
//! data-source callback hands those chunks to COPY while the backend parses and inserts: two
//! cores at once, like pg_restore and its server. The callback has no user pointer, so the
//! chunk channel is parked in a thread-local. The file's checksum is compared at the end,
//! before the rows can commit: a mismatch raises XX001 and the transaction rolls back.

use std::cell::RefCell;
use std::ffi::CString;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;

use pgrx::prelude::*;

use super::CopyFormat;
use crate::archive::compression::Compression;
use crate::archive::hashing::HashingReader;
use crate::error::{BackupError, Result};
use crate::storage::archive_files::FileRef;

const CHUNK: usize = 256 << 10;

/// Where COPY's callback gets its bytes: the next chunk, or None at the end of the data.
pub type NextChunk = Box<dyn FnMut() -> Option<Vec<u8>>>;

/// What COPY's callback reads from.
struct Source {
    next: NextChunk,
    current: Vec<u8>,
    pos: usize,
}

thread_local! {
    static SOURCE: RefCell<Option<Source>> = const { RefCell::new(None) };
}

/// The feeder: read, hash, decompress, send. Returns the file's SHA-256. Never calls into
/// PostgreSQL; stops when the receiver is gone (the backend hit an error).
fn feed(
    file: FileRef,
    compression: Compression,
    tx: SyncSender<Vec<u8>>,
) -> std::io::Result<String> {
    let mut hashing = HashingReader::new(BufReader::with_capacity(1 << 20, file.open_stored()?));
    let send_all = |r: &mut dyn Read| -> std::io::Result<bool> {
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                let n = r.read(&mut chunk[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                return Ok(true);
            }
            chunk.truncate(filled);
            if tx.send(chunk).is_err() {
                return Ok(false);
            }
        }
    };
    let finished = {
        let stored = file.plaintext(&mut hashing)?;
        send_all(&mut compression.decoder(stored)?)?
    };
    if !finished {
        return Err(std::io::Error::other("restore cancelled"));
    }
    Ok(hashing.finish()?.0)
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
            if src.pos == src.current.len() {
                match (src.next)() {
                    Some(chunk) => {
                        src.current = chunk;
                        src.pos = 0;
                    }
                    // The end of the data (or of a failed feeder: its result says which).
                    None => break,
                }
            }
            let n = (src.current.len() - src.pos).min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&src.current[src.pos..src.pos + n]);
            src.pos += n;
            filled += n;
        }
        filled as i32
    })
}

/// COPY `file` (as written by create, in `format`) into relation `rel_oid`, columns `columns`,
/// checking the file's SHA-256 at the end.
pub fn copy_file_into(
    rel_oid: pg_sys::Oid,
    file: &FileRef,
    compression: Compression,
    columns: &[String],
    expected_sha256: &str,
    format: CopyFormat,
    encoding: &str,
) -> Result<u64> {
    let (tx, rx) = sync_channel::<Vec<u8>>(8);
    let (done_tx, done) = sync_channel::<std::io::Result<String>>(1);
    Feeder::run(FeedJob {
        file: file.clone(),
        compression,
        chunks: tx,
        done: done_tx,
    })
    .map_err(|e| BackupError::io("start reader thread for", &file.display(), e))?;
    let path = file.display();
    let file = path.as_path();
    let rows = copy_chunks_into(
        rel_oid,
        columns,
        format,
        encoding,
        Box::new(move || super::recv_checking_interrupts(&rx)),
    )?;
    // The data ended, so the feeder is finishing this file: its checksum comes at once.
    let actual = match super::recv_checking_interrupts(&done) {
        Some(Ok(sha)) => sha,
        Some(Err(e)) => {
            return Err(
                BackupError::corrupt(format!("{}: cannot read: {e}", file.display()))
                    .with_hint("Run backup.verify() on this backup."),
            )
        }
        None => {
            return Err(BackupError::corrupt(format!(
                "{}: reader thread failed",
                file.display()
            )))
        }
    };
    check_sha(file, expected_sha256, &actual)?;
    Ok(rows)
}

/// One file for the feeder thread: where its chunks go and where its checksum goes.
struct FeedJob {
    file: FileRef,
    compression: Compression,
    chunks: SyncSender<Vec<u8>>,
    done: SyncSender<std::io::Result<String>>,
}

/// The backend's feeder thread, kept from one file to the next: a restore of thousands of
/// small tables starts one thread, not one per table. It ends by itself after a second
/// without work (and with the process).
struct Feeder {
    jobs: SyncSender<FeedJob>,
}

thread_local! {
    static FEEDER: RefCell<Option<Feeder>> = const { RefCell::new(None) };
}

/// How long an idle feeder thread waits for the next file before it ends.
const FEEDER_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

impl Feeder {
    /// Hand `job` to the feeder thread, starting one if there is none (or it has ended).
    /// Waits (checking for a cancel) while the thread still finishes the last file.
    fn run(job: FeedJob) -> std::io::Result<()> {
        FEEDER.with(|f| {
            let mut slot = f.borrow_mut();
            let mut job = job;
            // A rendezvous: the job is taken by a waiting thread, or comes back.
            if let Some(feeder) = slot.as_ref() {
                loop {
                    match feeder.jobs.try_send(job) {
                        Ok(()) => return Ok(()),
                        Err(TrySendError::Full(back)) => {
                            job = back;
                            super::check_for_interrupts();
                            std::thread::sleep(std::time::Duration::from_micros(200));
                        }
                        Err(TrySendError::Disconnected(back)) => {
                            job = back;
                            break;
                        }
                    }
                }
            }
            let (jobs, queued) = sync_channel::<FeedJob>(0);
            let _: JoinHandle<()> =
                crate::storage::threads::spawn("pg_backup feeder", move || {
                    while let Ok(job) = queued.recv_timeout(FEEDER_IDLE) {
                        let result = feed(job.file, job.compression, job.chunks);
                        // The backend may be gone from this file (an error ended its COPY).
                        let _ = job.done.send(result);
                    }
                })?;
            let sent = jobs.send(job).map_err(|_| {
                std::io::Error::other("the reader thread ended before it took the file")
            });
            *slot = Some(Feeder { jobs });
            sent
        })
    }
}

pub fn check_sha(file: &Path, expected: &str, actual: &str) -> Result<()> {
    if actual != expected {
        return Err(BackupError::corrupt(format!(
            "checksum mismatch in {}: expected {expected}, found {actual}",
            file.display()
        ))
        .with_hint(
            "The archive is damaged; nothing was restored. Run backup.verify() for details.",
        ));
    }
    Ok(())
}

/// While COPY converts an archive's text: an encoding error says what to do about it.
struct EncodingHint {
    hint: CString,
}

#[pg_guard]
unsafe extern "C-unwind" fn encoding_error_hint(arg: *mut std::ffi::c_void) {
    use pgrx::pg_sys::errcodes::PgSqlErrorCode::*;
    let code = pg_sys::geterrcode();
    if code == ERRCODE_UNTRANSLATABLE_CHARACTER as i32
        || code == ERRCODE_CHARACTER_NOT_IN_REPERTOIRE as i32
    {
        let h = &*(arg as *const EncodingHint);
        pg_sys::errhint_plural(c"%s".as_ptr(), c"%s".as_ptr(), 1, h.hint.as_ptr());
    }
}

/// Pops the error context callback however the COPY ends.
struct ContextGuard {
    previous: *mut pg_sys::ErrorContextCallback,
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        // SAFETY: puts back the stack head saved before our callback was pushed, on the
        // backend's thread, so the callback (a local about to go away) is never reached again.
        unsafe { pg_sys::error_context_stack = self.previous };
    }
}

fn encoding_hint(archive_encoding: &str) -> String {
    // SAFETY: GetDatabaseEncodingName returns a pointer to a static, NUL-terminated name of
    // PostgreSQL's encoding table.
    let here = unsafe { std::ffi::CStr::from_ptr(pg_sys::GetDatabaseEncodingName()) }
        .to_string_lossy()
        .into_owned();
    if archive_encoding.eq_ignore_ascii_case(&here) {
        format!("The backup's text is not valid {archive_encoding}: the archive is damaged. Run backup.verify() on it.")
    } else {
        format!(
            "The backup is in encoding {archive_encoding} and this database in {here}, which has no equivalent for this character. \
             Restore into a database created with an encoding that holds it, e.g. CREATE DATABASE ... ENCODING '{archive_encoding}' TEMPLATE template0."
        )
    }
}

/// COPY the bytes `next` yields into relation `rel_oid`; the bytes are text in `encoding`,
/// converted to the database's encoding as COPY does for a client_encoding.
pub fn copy_chunks_into(
    rel_oid: pg_sys::Oid,
    columns: &[String],
    format: CopyFormat,
    encoding: &str,
    next: NextChunk,
) -> Result<u64> {
    let encoding_c = CString::new(encoding)
        .map_err(|_| BackupError::corrupt("the manifest's encoding name holds a NUL"))?;
    // SAFETY: a NUL-terminated name that outlives the call; an unknown name returns -1.
    if unsafe { pg_sys::pg_char_to_encoding(encoding_c.as_ptr()) } < 0 {
        return Err(BackupError::corrupt(format!(
            "the backup's encoding \"{}\" is not one PostgreSQL knows",
            encoding.escape_debug()
        )));
    }
    let hint = EncodingHint {
        hint: CString::new(encoding_hint(encoding)).unwrap_or_default(),
    };
    let mut callback = pg_sys::ErrorContextCallback {
        // SAFETY: reads the backend-local head of the error context stack.
        previous: unsafe { pg_sys::error_context_stack },
        callback: Some(encoding_error_hint),
        arg: &hint as *const EncodingHint as *mut std::ffi::c_void,
    };
    let _context = ContextGuard {
        previous: callback.previous,
    };
    // SAFETY: as PostgreSQL's own callers push an error context: `callback` and the `hint`
    // its arg points to are locals that outlive the COPY below, and `_context` (declared
    // after them, so dropped before them) pops it on every return; an ERROR resets the stack
    // to the value its PG_TRY saved.
    unsafe { pg_sys::error_context_stack = &mut callback };
    SOURCE.with(|s| {
        *s.borrow_mut() = Some(Source {
            next,
            current: Vec::new(),
            pos: 0,
        })
    });
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            // Dropping the source stops a feeder whose COPY ended early.
            SOURCE.with(|s| *s.borrow_mut() = None);
        }
    }
    let _clear = Clear;
    // As a COPY statement has (PortalRunUtility): a snapshot of its own that sees what this
    // restore did before it. Without it the rows were written under the snapshot of the
    // statement that called restore(), and extension code that reads its own tables while
    // rows load (PostGIS's spatial_ref_sys for a geography value, a generated column's
    // ST_Transform) found none of the rows CREATE EXTENSION and the configuration data had
    // put there: "Cannot find SRID (4326) in spatial_ref_sys" (issue 16). Taken before the
    // table is opened, like the statement's.
    let _fresh = crate::query::FreshSnapshot::push();
    // SAFETY: what DoCopy does for COPY FROM, on the backend's thread inside a transaction:
    // table_open takes the lock and returns a valid relation (or raises); the column names
    // and options are palloc'd lists in the current memory context; `read_source` feeds
    // COPY from SOURCE, set above for this call; freeze is asked only when PostgreSQL's own
    // conditions hold (created in this subtransaction, no other snapshot or portal); the
    // relation is closed keeping its lock to the end of the transaction, as DoCopy does.
    let rows = unsafe {
        let rel = pg_sys::table_open(rel_oid, pg_sys::RowExclusiveLock as i32);
        let mut attnames: *mut pg_sys::List = std::ptr::null_mut();
        for c in columns {
            // Names are UTF-8 in the archive; the catalog's are in the database's encoding.
            let c = CString::new(crate::text::to_server(c).into_owned())
                .map_err(|_| BackupError::corrupt("column name with NUL"))?;
            attnames = pg_sys::lappend(
                attnames,
                pg_sys::makeString(pg_sys::pstrdup(c.as_ptr())) as *mut std::ffi::c_void,
            );
        }
        let mut options = format.options_in(&encoding_c);
        // A table created by this restore, in this subtransaction, can take its
        // rows already frozen, as pg_restore --single-transaction would: no hint bits to set
        // and no freezing later. PostgreSQL allows it only without other open snapshots.
        let sub = pg_sys::GetCurrentSubTransactionId();
        if (*rel).rd_createSubid == sub && {
            pg_sys::InvalidateCatalogSnapshot();
            pg_sys::ThereAreNoPriorRegisteredSnapshots() && pg_sys::ThereAreNoReadyPortals()
        } {
            options = pg_sys::lappend(
                options,
                pg_sys::makeDefElem(
                    c"freeze".as_ptr() as *mut _,
                    pg_sys::makeBoolean(true) as *mut pg_sys::Node,
                    -1,
                ) as *mut std::ffi::c_void,
            );
        }
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
    Ok(rows)
}
