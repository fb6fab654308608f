//! Checking an archive on disk: every checksum, and (deep) every data file decompressed and
//! parsed as COPY text with its row count compared to the manifest. Plain Rust.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::Path;

use super::compression::Compression;
use super::hashing::HashingReader;
use super::manifest::{self, DataFile, Manifest, MANIFEST_FILE, MANIFEST_SHA_FILE};
use super::rows::{CopyTextCounter, CsvCounter, JsonLinesCounter, RowCounter, ScriptCounter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    Ok,
    Missing,
    ChecksumMismatch,
    Corrupt,
    Unexpected,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Ok => "ok",
            FileStatus::Missing => "missing",
            FileStatus::ChecksumMismatch => "checksum_mismatch",
            FileStatus::Corrupt => "corrupt",
            FileStatus::Unexpected => "unexpected",
        }
    }
}

#[derive(Debug, Clone)]
pub struct FileCheck {
    pub file: String,
    pub status: FileStatus,
    pub expected_sha256: Option<String>,
    pub actual_sha256: Option<String>,
    pub bytes: Option<u64>,
    pub detail: Option<String>,
}

impl FileCheck {
    fn new(file: &str, status: FileStatus) -> FileCheck {
        FileCheck {
            file: file.to_string(),
            status,
            expected_sha256: None,
            actual_sha256: None,
            bytes: None,
            detail: None,
        }
    }
    fn detail(mut self, d: impl Into<String>) -> FileCheck {
        self.detail = Some(d.into());
        self
    }
}

/// Verify the archive in `dir`. Returns one row per file; the manifest comes first.
/// `check` runs between chunks of every file read (the backend passes its cancel check; it
/// may not return).
pub fn verify_archive(dir: &Path, deep: bool, check: &dyn Fn()) -> Vec<FileCheck> {
    let mut out = Vec::new();
    let (manifest, manifest_ok) = check_manifest(dir, &mut out);
    let Some(manifest) = manifest else { return out };
    let _ = manifest_ok;
    let mut known: BTreeSet<String> = [MANIFEST_FILE.to_string(), MANIFEST_SHA_FILE.to_string()]
        .into_iter()
        .collect();
    let compression = Compression::from_name(&manifest.compression).unwrap_or(Compression::None);
    for f in &manifest.files {
        known.insert(f.path.clone());
        check();
        out.push(check_data_file(dir, &manifest, f, compression, deep, check));
    }
    for rel in list_files(dir) {
        if !known.contains(&rel) {
            let bytes = fs::metadata(dir.join(&rel)).map(|m| m.len()).ok();
            let mut c = FileCheck::new(&rel, FileStatus::Unexpected)
                .detail("file is not listed in manifest.json");
            c.bytes = bytes;
            out.push(c);
        }
    }
    out
}

/// Read and check `manifest.json` against `manifest.sha256`. Pushes their rows.
fn check_manifest(dir: &Path, out: &mut Vec<FileCheck>) -> (Option<Manifest>, bool) {
    let json = match fs::read(dir.join(MANIFEST_FILE)) {
        Ok(b) => b,
        Err(e) => {
            out.push(FileCheck::new(MANIFEST_FILE, FileStatus::Missing).detail(e.to_string()));
            return (None, false);
        }
    };
    let actual = manifest::sha256_hex(&json);
    let expected = match fs::read_to_string(dir.join(MANIFEST_SHA_FILE)) {
        Ok(t) => match manifest::parse_manifest_sha_line(&t) {
            Some(h) => Some(h),
            None => {
                out.push(
                    FileCheck::new(MANIFEST_SHA_FILE, FileStatus::Corrupt)
                        .detail("not a sha256sum line"),
                );
                None
            }
        },
        Err(e) => {
            out.push(FileCheck::new(MANIFEST_SHA_FILE, FileStatus::Missing).detail(e.to_string()));
            None
        }
    };
    let mut row = FileCheck::new(MANIFEST_FILE, FileStatus::Ok);
    row.bytes = Some(json.len() as u64);
    row.actual_sha256 = Some(actual.clone());
    row.expected_sha256 = expected.clone();
    let mut ok = true;
    if let Some(exp) = &expected {
        if *exp != actual {
            row.status = FileStatus::ChecksumMismatch;
            row.detail = Some("manifest.json does not match manifest.sha256".into());
            ok = false;
        }
    }
    match Manifest::from_json(&json) {
        Ok(m) => {
            out.push(row);
            (Some(m), ok)
        }
        Err(e) => {
            if row.status == FileStatus::Ok {
                row.status = FileStatus::Corrupt;
            }
            row.detail = Some(e.to_string());
            out.push(row);
            (None, false)
        }
    }
}

/// The parser for one data file: by the backup's format, and by what the file holds.
fn counter_for(manifest: &Manifest, f: &DataFile) -> Box<dyn RowCounter> {
    if f.is_script() {
        return Box::new(ScriptCounter::new(manifest.script_tables.clone()));
    }
    if f.is_large_objects() {
        return Box::new(CopyTextCounter::new(f.columns.len()));
    }
    match manifest.format.as_str() {
        "csv" => Box::new(CsvCounter::new(f.columns.len())),
        "json" => Box::new(JsonLinesCounter::in_encoding(&manifest.encoding)),
        _ => Box::new(CopyTextCounter::new(f.columns.len())),
    }
}

fn consume(counter: &mut dyn RowCounter, r: &mut dyn Read, check: &dyn Fn()) -> Result<(), String> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        check();
        match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => counter.feed(&buf[..n]),
            Err(e) => return Err(format!("cannot decompress: {e}")),
        }
    }
}

fn check_data_file(
    dir: &Path,
    manifest: &Manifest,
    f: &DataFile,
    compression: Compression,
    deep: bool,
    check: &dyn Fn(),
) -> FileCheck {
    let path = dir.join(&f.path);
    let mut row = FileCheck::new(&f.path, FileStatus::Ok);
    row.expected_sha256 = Some(f.sha256.clone());
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) => {
            return FileCheck {
                detail: Some(e.to_string()),
                status: FileStatus::Missing,
                ..row
            }
        }
    };
    let mut hashing = HashingReader::new(BufReader::with_capacity(1 << 20, file));
    let parsed = deep.then(|| {
        let mut counter = counter_for(manifest, f);
        let result = compression
            .decoder(&mut hashing)
            .map_err(|e| e.to_string())
            .and_then(|mut plain| consume(counter.as_mut(), &mut plain, check));
        result.and_then(|()| counter.finish())
    });
    // What is left to hash (all of it when not deep), in chunks, checking between them.
    let rest = read_to_end(&mut hashing, check);
    let (actual, bytes) = match rest.and_then(|()| hashing.finish()) {
        Ok(done) => done,
        Err(e) => {
            return FileCheck {
                detail: Some(e.to_string()),
                status: FileStatus::Corrupt,
                ..row
            }
        }
    };
    row.bytes = Some(bytes);
    row.actual_sha256 = Some(actual.clone());
    if actual != f.sha256 {
        row.status = FileStatus::ChecksumMismatch;
        row.detail = Some(format!(
            "table {}.{}: {} bytes on disk, {} in the manifest",
            f.schema, f.table, bytes, f.bytes
        ));
        return row;
    }
    match parsed {
        Some(Ok(rows)) if rows != f.rows => {
            row.status = FileStatus::Corrupt;
            row.detail = Some(format!(
                "{rows} rows in the file, {} in the manifest",
                f.rows
            ));
        }
        Some(Err(e)) => {
            row.status = FileStatus::Corrupt;
            row.detail = Some(e);
        }
        _ => {}
    }
    row
}

fn read_to_end(r: &mut dyn Read, check: &dyn Fn()) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        check();
        if r.read(&mut buf)? == 0 {
            return Ok(());
        }
    }
}

/// Every file under `dir`, relative, with `/` separators (for the unexpected-file check).
fn list_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::writer::ArchiveWriter;
    use std::io::Write;

    /// An archive with one gzip data file of `rows` rows of two columns.
    fn archive(rows: usize) -> (tempfile::TempDir, std::path::PathBuf) {
        let base = tempfile::tempdir().unwrap();
        let w = ArchiveWriter::begin(base.path(), "b1").unwrap();
        let (rel, abs) = w.data_path(1, "copy", Compression::Gzip(1));
        let text: String = (0..rows).map(|i| format!("{i}\tv\\t{i}\n")).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
        gz.write_all(text.as_bytes()).unwrap();
        let bytes = gz.finish().unwrap();
        fs::write(&abs, &bytes).unwrap();
        let mut m = manifest::sample();
        m.compression = "gzip:1".into();
        m.files = vec![DataFile {
            path: rel,
            kind: None,
            schema: "public".into(),
            table: "t".into(),
            columns: vec!["a".into(), "b".into()],
            rows: rows as u64,
            bytes: bytes.len() as u64,
            raw_bytes: text.len() as u64,
            sha256: manifest::sha256_hex(&bytes),
        }];
        w.finish(&m).unwrap();
        let dir = base.path().join("b1");
        (base, dir)
    }

    fn statuses(dir: &Path) -> Vec<(String, &'static str)> {
        verify_archive(dir, true, &|| {})
            .into_iter()
            .map(|c| (c.file, c.status.as_str()))
            .collect()
    }

    #[test]
    fn a_good_archive_is_ok() {
        let (_b, dir) = archive(1000);
        assert!(verify_archive(&dir, true, &|| {})
            .iter()
            .all(|c| c.status == FileStatus::Ok));
        assert!(verify_archive(&dir, false, &|| {})
            .iter()
            .all(|c| c.status == FileStatus::Ok));
    }

    #[test]
    fn every_file_is_read_in_chunks_with_a_check_between_them() {
        let (_b, dir) = archive(300_000);
        // Deep: per 64 kB of decompressed text; shallow: per MB read (here: the file's one
        // chunk and the end).
        for (deep, at_least) in [(true, 50), (false, 2)] {
            let calls = std::cell::Cell::new(0u32);
            verify_archive(&dir, deep, &|| calls.set(calls.get() + 1));
            assert!(
                calls.get() >= at_least,
                "deep {deep}: {} checks",
                calls.get()
            );
        }
    }

    #[test]
    fn flipped_byte_is_a_checksum_mismatch_named_by_file() {
        let (_b, dir) = archive(1000);
        let p = dir.join("data/00001.copy.gz");
        let mut bytes = fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        fs::write(&p, bytes).unwrap();
        assert!(statuses(&dir).contains(&("data/00001.copy.gz".into(), "checksum_mismatch")));
    }

    #[test]
    fn missing_and_unexpected_files_are_named() {
        let (_b, dir) = archive(10);
        fs::remove_file(dir.join("data/00001.copy.gz")).unwrap();
        fs::write(dir.join("data/stray.txt"), b"x").unwrap();
        let s = statuses(&dir);
        assert!(
            s.contains(&("data/00001.copy.gz".into(), "missing")),
            "{s:?}"
        );
        assert!(
            s.contains(&("data/stray.txt".into(), "unexpected")),
            "{s:?}"
        );
    }

    #[test]
    fn edited_manifest_is_a_mismatch() {
        let (_b, dir) = archive(10);
        let p = dir.join(MANIFEST_FILE);
        let text = fs::read_to_string(&p)
            .unwrap()
            .replace("\"rows\": 10", "\"rows\": 11");
        fs::write(&p, text).unwrap();
        let s = statuses(&dir);
        assert_eq!(s[0], (MANIFEST_FILE.to_string(), "checksum_mismatch"));
        // Its row count no longer matches the file either.
        assert!(
            s.contains(&("data/00001.copy.gz".into(), "corrupt")),
            "{s:?}"
        );
    }
}
