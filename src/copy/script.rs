//! Reading the data of a sql-format script for backup.restore(): a thread decompresses and
//! hashes the script and hands over the lines of each `COPY ... FROM stdin;` block, in order;
//! the backend loads a block (or skips it) and asks for the next. The DDL comes from the
//! manifest, as for every format.

use std::cell::Cell;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use super::copy_from::NextChunk;
use crate::archive::compression::Compression;
use crate::archive::hashing::HashingReader;
use crate::archive::rows::HeaderMatcher;
use crate::error::{BackupError, Result};
use crate::storage::archive_files::FileRef;

const CHUNK: usize = 256 << 10;

enum Msg {
    Chunk(Vec<u8>),
    End,
}

pub struct ScriptReader {
    rx: Rc<Receiver<Msg>>,
    in_block: Rc<Cell<bool>>,
    handle: JoinHandle<std::io::Result<String>>,
    path: PathBuf,
}

/// Send the rows of each block, found by its exact header line, in the order of `headers`.
fn split_blocks(
    r: &mut dyn BufRead,
    headers: &[Vec<u8>],
    tx: &SyncSender<Msg>,
) -> std::io::Result<bool> {
    let mut line = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut in_block = false;
    let mut next = 0;
    let mut matcher = HeaderMatcher::default();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(true);
        }
        if !in_block {
            let bare = line.strip_suffix(b"\n").unwrap_or(&line);
            if headers.get(next).is_some_and(|h| matcher.feed(bare, h)) {
                in_block = true;
                next += 1;
            }
            continue;
        }
        if line == b"\\.\n" {
            in_block = false;
            let done = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            if (!done.is_empty() && tx.send(Msg::Chunk(done)).is_err())
                || tx.send(Msg::End).is_err()
            {
                return Ok(false);
            }
            continue;
        }
        chunk.extend_from_slice(&line);
        if chunk.len() >= CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            if tx.send(Msg::Chunk(full)).is_err() {
                return Ok(false);
            }
        }
    }
}

fn feed(
    file: FileRef,
    compression: Compression,
    headers: Vec<Vec<u8>>,
    tx: SyncSender<Msg>,
) -> std::io::Result<String> {
    let mut hashing = HashingReader::new(BufReader::with_capacity(1 << 20, file.open_stored()?));
    let stored = file.plaintext(&mut hashing)?;
    let finished = split_blocks(
        &mut BufReader::with_capacity(1 << 20, compression.decoder(stored)?),
        &headers,
        &tx,
    )?;
    if !finished {
        return Err(std::io::Error::other("restore cancelled"));
    }
    Ok(hashing.finish()?.0)
}

impl ScriptReader {
    pub fn open(
        file: &FileRef,
        compression: Compression,
        headers: Vec<Vec<u8>>,
    ) -> Result<ScriptReader> {
        let (tx, rx) = sync_channel::<Msg>(8);
        let p = file.clone();
        let path = file.display();
        let path = path.as_path();
        let handle = crate::storage::threads::spawn("pg_backup script", move || {
            feed(p, compression, headers, tx)
        })
        .map_err(|e| BackupError::io("start reader thread for", path, e))?;
        Ok(ScriptReader {
            rx: Rc::new(rx),
            in_block: Rc::new(Cell::new(false)),
            handle,
            path: path.to_path_buf(),
        })
    }

    /// Start the next block: from here on it is consumed whatever happens (loaded, skipped,
    /// or left half-read by a failed COPY), so the next block is always the next one.
    pub fn begin_block(&self) {
        self.in_block.set(true);
    }

    /// The rows of the current block, for COPY.
    pub fn block(&self) -> NextChunk {
        let (rx, in_block) = (self.rx.clone(), self.in_block.clone());
        Box::new(move || {
            if !in_block.get() {
                return None;
            }
            match super::recv_checking_interrupts(&rx) {
                Some(Msg::Chunk(c)) => Some(c),
                Some(Msg::End) | None => {
                    in_block.set(false);
                    None
                }
            }
        })
    }

    /// Consume whatever is left of the current block (a cancel is seen between chunks).
    pub fn end_block(&self) {
        let mut rest = self.block();
        while rest().is_some() {}
    }

    /// Read to the end and check the script's checksum.
    pub fn finish(self, expected_sha256: &str) -> Result<()> {
        while super::recv_checking_interrupts(&self.rx).is_some() {}
        let actual = match self.handle.join() {
            Ok(Ok(sha)) => sha,
            Ok(Err(e)) => {
                return Err(BackupError::corrupt(format!(
                    "{}: cannot read: {e}",
                    self.path.display()
                ))
                .with_hint("Run backup.verify() on this backup."))
            }
            Err(_) => {
                return Err(BackupError::corrupt(format!(
                    "{}: reader thread failed",
                    self.path.display()
                )))
            }
        };
        super::copy_from::check_sha(&self.path, expected_sha256, &actual)
    }
}
