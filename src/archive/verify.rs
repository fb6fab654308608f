//! Checking an archive on disk: every checksum, and (deep) every data file decompressed and
//! parsed as COPY text with its row count compared to the manifest. Plain Rust.

use std::collections::BTreeSet;
use std::io::{BufReader, Read};
use std::path::Path;

use super::compression::Compression;
use super::hashing::HashingReader;
use super::manifest::{self, DataFile, Format, Manifest, MANIFEST_FILE, MANIFEST_SHA_FILE};
use super::rows::{CopyTextCounter, CsvCounter, JsonLinesCounter, RowCounter, ScriptCounter};
use super::signature::SIGNATURE_FILE;
use crate::storage::archive_files::{ArchiveSource, Sealed};

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
    fn status_detail(mut self, status: FileStatus, d: impl Into<String>) -> FileCheck {
        self.status = status;
        self.detail = Some(d.into());
        self
    }
    pub(crate) fn new(file: &str, status: FileStatus) -> FileCheck {
        FileCheck {
            file: file.to_string(),
            status,
            expected_sha256: None,
            actual_sha256: None,
            bytes: None,
            detail: None,
        }
    }
    pub(crate) fn detail(mut self, d: impl Into<String>) -> FileCheck {
        self.detail = Some(d.into());
        self
    }
}

/// Verify the archive in `dir`. Returns one row per file; the manifest comes first.
/// `check` runs between chunks of every file read (the backend passes its cancel check; it
/// may not return).
pub fn verify_archive(dir: &Path, deep: bool, check: &dyn Fn()) -> Vec<FileCheck> {
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    verify_source(&ArchiveSource::local(&id, dir), deep, check)
}

/// Verify the archive wherever it is (local folder or storage target, encrypted or not).
/// An encrypted archive is checked without its key when `deep` is false (the checksums are
/// of the encrypted files); `deep` decrypts with the source's identities.
pub fn verify_source(src: &ArchiveSource, deep: bool, check: &dyn Fn()) -> Vec<FileCheck> {
    verify_source_in(src, deep, check, &|h, _| h.as_bytes().to_vec(), None)
}

/// Checks the signature of a manifest's bytes (the server passes
/// security::signing::authenticate): Ok with what to say of it, or Err with why the archive
/// is not trusted.
pub type Authenticator<'a> = &'a dyn Fn(&[u8]) -> Result<String, String>;

/// As [`verify_source`]; `encode(text, encoding)` gives UTF-8 text in the bytes of the named
/// database encoding (the backend passes `text::to_encoding`: a sql-format script is written
/// in the backed-up database's encoding, and its block headers are found by their bytes).
/// With `authenticate`, an intact manifest's signature is checked next (a row for
/// `manifest.sig`), and an archive that is not trusted is checked no further.
pub fn verify_source_in(
    src: &ArchiveSource,
    deep: bool,
    check: &dyn Fn(),
    encode: &dyn Fn(&str, &str) -> Vec<u8>,
    authenticate: Option<Authenticator>,
) -> Vec<FileCheck> {
    let mut out = Vec::new();
    let listing = src.list();
    let (manifest, sealed) = check_manifest(src, deep, authenticate, &mut out);
    let Some(manifest) = manifest else { return out };
    let mut known: BTreeSet<String> = [
        MANIFEST_FILE.to_string(),
        MANIFEST_SHA_FILE.to_string(),
        SIGNATURE_FILE.to_string(),
    ]
    .into_iter()
    .collect();
    if let Some(s) = &sealed {
        known.insert(s.ddl_file.clone());
    }
    let compression = manifest.compression;
    // Deep checks of an encrypted archive need the key; without it the checksums are still
    // checked and each row says that the contents were not.
    let decrypt = sealed.is_some();
    let no_key = decrypt && deep && src.identities.is_none();
    for f in &manifest.files {
        known.insert(f.path.clone());
        check();
        let mut row = check_data_file(
            src,
            &manifest,
            f,
            compression,
            deep && !no_key,
            decrypt,
            check,
            encode,
        );
        if no_key && row.status == FileStatus::Ok {
            row.detail =
                Some("encrypted: checksum checked; contents not (no identity given)".into());
        }
        out.push(row);
    }
    match listing {
        Ok(files) => {
            for (rel, size) in files {
                if !known.contains(&rel) {
                    let mut c = FileCheck::new(&rel, FileStatus::Unexpected)
                        .detail("file is not listed in manifest.json");
                    c.bytes = Some(size);
                    out.push(c);
                }
            }
        }
        Err(e) => out.push(
            FileCheck::new("", FileStatus::Missing).detail(format!("cannot list the archive: {e}")),
        ),
    }
    out
}

/// Read and check `manifest.json` against `manifest.sha256` (and the sealed DDL file of an
/// encrypted backup). Pushes their rows.
fn check_manifest(
    src: &ArchiveSource,
    deep: bool,
    authenticate: Option<Authenticator>,
    out: &mut Vec<FileCheck>,
) -> (Option<Manifest>, Option<Sealed>) {
    let json = match src.read_small(MANIFEST_FILE) {
        Ok(b) => b,
        Err(e) => {
            out.push(FileCheck::new(MANIFEST_FILE, FileStatus::Missing).detail(e.to_string()));
            return (None, None);
        }
    };
    let actual = manifest::sha256_hex(&json);
    let expected = match src.read_small(MANIFEST_SHA_FILE) {
        Ok(t) => match manifest::parse_manifest_sha_line(&String::from_utf8_lossy(&t)) {
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
    if let Some(exp) = &expected {
        if *exp != actual {
            row.status = FileStatus::ChecksumMismatch;
            row.detail = Some("manifest.json does not match manifest.sha256".into());
        }
    }
    let sealed = Sealed::of(&json);
    // The sealed manifest parses without its DDL (file list and checksums are in clear).
    match Manifest::from_json(&json) {
        Ok(m) => {
            // Another backup's manifest (a genuine one, copied under this id) is not this
            // backup's (issue 17).
            if m.backup_id != src.id && row.status == FileStatus::Ok {
                row.status = FileStatus::Corrupt;
                row.detail = Some(format!(
                    "manifest.json is the manifest of backup {}, not of backup {}",
                    m.backup_id, src.id
                ));
            }
            let intact = row.status == FileStatus::Ok;
            out.push(row);
            // Who wrote it: checked on the very bytes just read (a manifest that does not
            // match its checksum is already failed).
            if let (true, Some(auth)) = (intact, authenticate) {
                match auth(&json) {
                    Ok(said) => {
                        out.push(FileCheck::new(SIGNATURE_FILE, FileStatus::Ok).detail(said))
                    }
                    Err(why) => {
                        let absent = matches!(src.open(SIGNATURE_FILE),
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound);
                        let status = if absent {
                            FileStatus::Missing
                        } else {
                            FileStatus::Corrupt
                        };
                        out.push(FileCheck::new(SIGNATURE_FILE, status).detail(why));
                        return (None, None);
                    }
                }
            }
            if let Some(s) = &sealed {
                out.push(check_sealed_ddl(src, s, deep));
            }
            (Some(m), sealed)
        }
        Err(e) => {
            if row.status == FileStatus::Ok {
                row.status = FileStatus::Corrupt;
            }
            row.detail = Some(e.to_string());
            out.push(row);
            (None, None)
        }
    }
}

/// The encrypted DDL of a sealed manifest: its checksum always, its contents when deep and
/// a key is at hand.
fn check_sealed_ddl(src: &ArchiveSource, s: &Sealed, deep: bool) -> FileCheck {
    let mut row = FileCheck::new(&s.ddl_file, FileStatus::Ok);
    row.expected_sha256 = Some(s.ddl_sha256.clone());
    if !manifest::is_archive_path(&s.ddl_file) {
        return row.status_detail(FileStatus::Corrupt, "unexpected DDL file name");
    }
    let bytes = match src.read_small(&s.ddl_file) {
        Ok(b) => b,
        Err(e) => return row.status_detail(FileStatus::Missing, e.to_string()),
    };
    row.bytes = Some(bytes.len() as u64);
    let actual = manifest::sha256_hex(&bytes);
    row.actual_sha256 = Some(actual.clone());
    if actual != s.ddl_sha256 {
        return row.status_detail(
            FileStatus::ChecksumMismatch,
            "the encrypted DDL was changed",
        );
    }
    if deep {
        match src.identities.as_ref() {
            None => {
                row.detail =
                    Some("encrypted: checksum checked; contents not (no identity given)".into())
            }
            Some(ids) => {
                let mut plain = Vec::new();
                let r = ids
                    .decrypt(&bytes[..], &s.ddl_file)
                    .map_err(|e| e.to_string())
                    .and_then(|mut r| {
                        r.read_to_end(&mut plain)
                            .map_err(|e| crate::crypto::describe_read_error(&e))
                    })
                    .and_then(|_| {
                        serde_json::from_slice::<serde_json::Value>(&plain)
                            .map_err(|e| e.to_string())
                    });
                if let Err(e) = r {
                    return row.status_detail(FileStatus::Corrupt, e);
                }
            }
        }
    }
    row
}

/// The parser for one data file: by the backup's format, and by what the file holds.
fn counter_for(
    manifest: &Manifest,
    f: &DataFile,
    encode: &dyn Fn(&str, &str) -> Vec<u8>,
) -> Box<dyn RowCounter> {
    if f.is_script() {
        return Box::new(
            ScriptCounter::new(manifest.script_tables.clone())
                .with_headers_in(|h| encode(h, &manifest.encoding)),
        );
    }
    if f.is_large_objects() {
        return Box::new(CopyTextCounter::new(f.columns.len()));
    }
    match manifest.format {
        Format::Csv => Box::new(CsvCounter::new(f.columns.len())),
        Format::Json => Box::new(JsonLinesCounter::in_encoding(&manifest.encoding)),
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

#[allow(clippy::too_many_arguments)]
fn check_data_file(
    src: &ArchiveSource,
    manifest: &Manifest,
    f: &DataFile,
    compression: Compression,
    deep: bool,
    decrypt: bool,
    check: &dyn Fn(),
    encode: &dyn Fn(&str, &str) -> Vec<u8>,
) -> FileCheck {
    let mut row = FileCheck::new(&f.path, FileStatus::Ok);
    row.expected_sha256 = Some(f.sha256.clone());
    let file = match src.open(&f.path) {
        Ok(file) => file,
        Err(e) => {
            // A link, pipe or device in the file's place is not the file (issue 17).
            let status = if super::open::is_not_a_file(&e) {
                FileStatus::Corrupt
            } else {
                FileStatus::Missing
            };
            return FileCheck {
                detail: Some(e.to_string()),
                status,
                ..row
            };
        }
    };
    let mut hashing = HashingReader::new(BufReader::with_capacity(1 << 20, file));
    let parsed = deep.then(|| {
        let mut counter = counter_for(manifest, f, encode);
        let stored: Box<dyn Read + Send + '_> = if decrypt {
            match src.decrypt(&mut hashing, &f.path) {
                Ok(r) => r,
                Err(e) => return Err(e.to_string()),
            }
        } else {
            Box::new(&mut hashing)
        };
        let result = compression
            .decoder(stored)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::writer::ArchiveWriter;
    use std::fs;
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
        m.backup_id = "b1".into();
        m.compression = crate::archive::compression::Compression::Gzip(1);
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
            part: None,
        }];
        w.finish(
            &m,
            &crate::archive::signature::SecretKey::from_seed([1; 32]),
        )
        .unwrap();
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
    fn the_signature_is_checked_on_the_manifest_read_and_an_untrusted_archive_goes_no_further() {
        use crate::archive::signature::{self, SecretKey, TrustedKey, Verdict};
        let (_b, dir) = archive(10);
        let src = ArchiveSource::local("b1", &dir);
        let with = |keys: Vec<TrustedKey>| {
            let sig = fs::read(dir.join(SIGNATURE_FILE)).ok();
            verify_source_in(
                &src,
                true,
                &|| {},
                &|h, _| h.as_bytes().to_vec(),
                Some(
                    &move |raw: &[u8]| match signature::check(raw, sig.as_deref(), &keys) {
                        Verdict::Trusted { key_id, .. } => Ok(format!("signed by {key_id}")),
                        other => Err(format!("{other:?}")),
                    },
                ),
            )
            .into_iter()
            .map(|c| (c.file, c.status.as_str()))
            .collect::<Vec<_>>()
        };
        let mine = SecretKey::from_seed([1; 32]).public();
        let rows = with(vec![TrustedKey {
            name: "k".into(),
            key: mine,
        }]);
        assert_eq!(rows[1], (SIGNATURE_FILE.to_string(), "ok"));
        assert!(rows.iter().all(|r| r.1 == "ok"), "{rows:?}");
        // Another key only: the manifest.sig row says so, and no data file is read.
        let other = SecretKey::from_seed([2; 32]).public();
        let rows = with(vec![TrustedKey {
            name: "o".into(),
            key: other,
        }]);
        assert_eq!(
            rows,
            [
                (MANIFEST_FILE.to_string(), "ok"),
                (SIGNATURE_FILE.to_string(), "corrupt")
            ]
        );
        fs::remove_file(dir.join(SIGNATURE_FILE)).unwrap();
        assert_eq!(with(vec![])[1], (SIGNATURE_FILE.to_string(), "missing"));
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

    #[test]
    fn a_link_or_pipe_in_place_of_a_data_file_is_never_read() {
        let (b, dir) = archive(10);
        let secret = b.path().join("secret.txt");
        fs::write(&secret, b"AGE-SECRET-KEY-1XYZ\n").unwrap();
        let p = dir.join("data/00001.copy.gz");
        fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&secret, &p).unwrap();
        let rows = verify_archive(&dir, true, &|| {});
        let row = rows
            .iter()
            .find(|r| r.file == "data/00001.copy.gz")
            .unwrap();
        assert_eq!(row.status, FileStatus::Corrupt, "{row:?}");
        assert!(
            row.actual_sha256.is_none() && row.bytes.is_none(),
            "{row:?}"
        );
        fs::remove_file(&p).unwrap();
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) of a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let rows = verify_archive(&dir, true, &|| {});
        let row = rows
            .iter()
            .find(|r| r.file == "data/00001.copy.gz")
            .unwrap();
        assert_eq!(row.status, FileStatus::Corrupt, "{row:?}");
    }
}
