//! `manifest.json`: the self-describing table of contents of one backup.
//!
//! Plain Rust (serde), so it is unit-tested without a server and readable by any tool.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::compression::Compression;
use super::facts::TOC_FACTS;
pub use super::toc::DdlItem;
use super::toc::{self, TocEntry};
use crate::error::{BackupError, Result};

/// The newest archive format this release reads. 3: a big table's rows may be split into
/// several data files, each a range of its heap blocks ([`Part`]); 2: a table of contents
/// (`toc`); 1 (0.1.0): two ordered DDL lists, still read.
pub const FORMAT_VERSION: u32 = 3;
/// The format an archive is written in when no table of it is split: 2, which 0.2.0 reads.
/// An archive with a split table says [`PARTS_FORMAT`]: a reader that does not know parts
/// refuses it ("upgrade") instead of restoring a part of a table as if it were the whole.
pub const UNSPLIT_FORMAT: u32 = 2;
pub const PARTS_FORMAT: u32 = 3;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const MANIFEST_SHA_FILE: &str = "manifest.sha256";
/// How far in the future an archive's `created_at` may be (the clocks of the server that
/// wrote it and of this one may differ a little); anything later is refused by rescan.
pub const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub pg_backup_version: String,
    pub backup_id: String,
    pub label: Option<String>,
    pub created_at: String,
    /// `server_version` of the server that wrote the archive (e.g. `15.18 (Debian ...)`).
    pub server_version: String,
    /// `server_version_num` of that server (e.g. 150018); absent in archives written before
    /// 0.3.0, whose major version is read from `server_version` ([`Manifest::server_major`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version_num: Option<u32>,
    pub database: String,
    pub encoding: String,
    pub format: Format,
    /// `zstd:N`, `gzip:N` or `none`.
    pub compression: Compression,
    /// The create() options as given, for the record and for `rescan()`.
    pub options: serde_json::Value,
    /// Every object of the backup, in restore order (format 2; a format-1 manifest's DDL
    /// lists are turned into one on read).
    #[serde(default)]
    pub toc: Vec<TocEntry>,
    /// The TOC's entries carry the facts collect knew (`archive::facts`, this version:
    /// [`TOC_FACTS`]). 0 (absent: formats 1 and 2, and 0.3.0 archives written before): they
    /// are derived from the entries' SQL on read.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub toc_facts: u32,
    /// Format 1 only: DDL restored before the data, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_data: Vec<DdlItem>,
    /// Format 1 only: DDL restored after the data, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_data: Vec<DdlItem>,
    pub files: Vec<DataFile>,
    /// sql format: the COPY blocks of the script, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub script_tables: Vec<ScriptTable>,
}

/// One COPY block of a sql-format script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptTable {
    /// The block's first line, exactly as in the script (`COPY ... FROM stdin;`): blocks are
    /// found by it, in order, so DDL text that looks like a COPY line is never taken for one.
    pub header: String,
    pub schema: String,
    pub table: String,
    pub columns: Vec<String>,
    pub rows: u64,
    /// None for a table's rows; `large_objects` for the pages of the large objects,
    /// `extension_data` for an extension's configuration table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FileKind>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    /// Relative to the backup folder, e.g. `data/00001.copy.gz`.
    pub path: String,
    /// None for a table's rows; else what else the file holds (see [`FileKind`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FileKind>,
    pub schema: String,
    pub table: String,
    /// Columns in COPY order (generated columns are not copied).
    pub columns: Vec<String>,
    pub rows: u64,
    /// Size of the file on disk.
    pub bytes: u64,
    /// Size of the COPY text before compression.
    pub raw_bytes: u64,
    pub sha256: String,
    /// A big table's rows are split into several files, each a range of its heap blocks
    /// (create's `backup.split_table_size`): which one this is. None: the table's rows, whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
}

/// One of the data files a split table's rows were written to: the rows whose ctid lies in
/// blocks `first_block` up to `end_block` (exclusive; None: to the end of the table), read
/// under the backup's one snapshot. Parts `0..of` together hold exactly the table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub index: u32,
    pub of: u32,
    pub first_block: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_block: Option<u64>,
}

impl Part {
    /// `part 2 of 4 (blocks 100-199)`, for result rows and messages (1-based).
    pub fn describe(&self) -> String {
        let blocks = match self.end_block {
            Some(e) => format!("blocks {}-{}", self.first_block, e.saturating_sub(1)),
            None => format!("blocks {}-end", self.first_block),
        };
        format!("part {} of {} ({blocks})", self.index + 1, self.of)
    }
}

/// The parts of each split table must be exactly `0..of`, each once, with one `of`, and
/// only in an archive of [`PARTS_FORMAT`] or later: else a restore would load a part of a
/// table as if it were all of it.
fn check_parts(m: &Manifest) -> Result<()> {
    let mut seen: std::collections::BTreeMap<(&str, &str), (u32, Vec<u32>)> = Default::default();
    for f in &m.files {
        let Some(p) = &f.part else { continue };
        if m.format_version < PARTS_FORMAT || f.kind.is_some() {
            return Err(BackupError::corrupt(format!(
                "manifest.json lists file \"{}\" as a part of a table where parts cannot be",
                f.path.escape_debug()
            )));
        }
        let e = seen
            .entry((f.schema.as_str(), f.table.as_str()))
            .or_insert((p.of, Vec::new()));
        if e.0 != p.of {
            e.1.push(u32::MAX);
        }
        e.1.push(p.index);
    }
    for ((schema, table), (of, mut indexes)) in seen {
        indexes.sort_unstable();
        if indexes != (0..of).collect::<Vec<u32>>() {
            return Err(BackupError::corrupt(format!(
                "manifest.json does not list every part of table {schema}.{table} exactly once"
            )));
        }
    }
    // A table split into parts has no other file of its rows.
    if let Some(f) = m.files.iter().find(|f| {
        f.kind.is_none()
            && f.part.is_none()
            && m.files
                .iter()
                .any(|g| g.part.is_some() && g.schema == f.schema && g.table == f.table)
    }) {
        return Err(BackupError::corrupt(format!(
            "manifest.json lists table {}.{} both whole and in parts",
            f.schema, f.table
        )));
    }
    Ok(())
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    pub fn from_json(bytes: &[u8]) -> Result<Manifest> {
        let mut m: Manifest = match serde_json::from_slice(bytes) {
            Ok(m) => m,
            Err(e) => {
                // A later archive format may use words this release does not know (a new
                // format or compression): that is "upgrade", not "damaged".
                if let Ok(h) = serde_json::from_slice::<Head>(bytes) {
                    if h.format_version > FORMAT_VERSION {
                        return Err(newer_format(&h.backup_id, h.format_version));
                    }
                }
                return Err(BackupError::corrupt(format!(
                    "manifest.json does not parse: {e}"
                )));
            }
        };
        if m.format_version > FORMAT_VERSION {
            return Err(newer_format(&m.backup_id, m.format_version));
        }
        // Paths become file names under the backup folder: only the shapes pg_backup writes.
        if let Some(f) = m.files.iter().find(|f| !is_archive_path(&f.path)) {
            return Err(BackupError::corrupt(format!(
                "manifest.json lists an unexpected file path \"{}\"",
                f.path.escape_debug()
            )));
        }
        check_parts(&m)?;
        if m.format_version < 2 {
            m.toc = toc::from_v1(&m.pre_data, &m.post_data);
        }
        // An entry is named by its id everywhere restore passes it on (dependencies, the
        // tasks of restore(jobs => N)'s workers, which look it up again): two entries of one
        // id would have a worker run one entry under the decision made about the other.
        let mut ids = std::collections::HashSet::new();
        if let Some(e) = m.toc.iter().find(|e| !ids.insert(e.id)) {
            return Err(BackupError::corrupt(format!(
                "manifest.json lists TOC entry {} twice",
                e.id
            )));
        }
        if m.toc_facts < TOC_FACTS {
            toc::derive_facts(&mut m.toc);
        }
        Ok(m)
    }

    /// The major version of the PostgreSQL that wrote the archive (15, 18; 9 for 9.x), as the
    /// manifest claims it: `server_version_num` when present, else the leading number of
    /// `server_version`. When both are present and disagree, the newer: the claim is only ever
    /// used to refuse a restore on an older server or to adapt the archive's SQL to a newer
    /// one, and every statement is checked after that whatever the version says.
    pub fn server_major(&self) -> Result<u32> {
        let from_text = major_of_version_text(&self.server_version);
        let from_num = self.server_version_num.map(major_of_version_num);
        match (from_num, from_text) {
            (Some(a), Some(b)) => Ok(a.max(b)),
            (Some(a), None) | (None, Some(a)) => Ok(a),
            (None, None) => Err(BackupError::corrupt(format!(
                "backup {} does not say which PostgreSQL version wrote it (server_version \"{}\")",
                self.backup_id,
                self.server_version.escape_default()
            ))
            .with_hint("A manifest written by pg_backup always does: the archive is damaged.")),
        }
    }

    pub fn total_rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    /// The data files, a split table counted once (the catalog's `table_count`).
    pub fn file_units(&self) -> usize {
        self.files
            .iter()
            .filter(|f| f.part.is_none_or(|p| p.index == 0))
            .count()
    }

    /// The format this manifest is written in: [`PARTS_FORMAT`] when a table is split,
    /// else [`UNSPLIT_FORMAT`] (readable by 0.2.0).
    pub fn format_for(files: &[DataFile]) -> u32 {
        if files.iter().any(|f| f.part.is_some()) {
            PARTS_FORMAT
        } else {
            UNSPLIT_FORMAT
        }
    }

    /// `created_at` as a claim to be checked before it becomes a catalog date (issue 17): an
    /// RFC 3339 time (never `infinity` or another word PostgreSQL would take), no later than
    /// `now` plus [`CLOCK_SKEW`]. An archive dated in the future would be the "newest" for
    /// every retention rule and push genuine backups out.
    pub fn created_at_checked(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> std::result::Result<chrono::DateTime<chrono::Utc>, String> {
        let t = chrono::DateTime::parse_from_rfc3339(&self.created_at)
            .map_err(|_| {
                format!(
                    "created_at \"{}\" is not an RFC 3339 time",
                    self.created_at.escape_default()
                )
            })?
            .with_timezone(&chrono::Utc);
        if t > now + CLOCK_SKEW {
            return Err(format!(
                "created_at {} is in the future (this server's clock says {})",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        Ok(t)
    }

    /// The tables this backup has rows for, in order (large objects and extension
    /// configuration rows aside).
    pub fn data_tables(&self) -> Vec<(String, String)> {
        if self.files.iter().any(DataFile::is_script) {
            return self
                .script_tables
                .iter()
                .filter(|b| b.kind.is_none())
                .map(|b| (b.schema.clone(), b.table.clone()))
                .collect();
        }
        // A split table once, where its first part is.
        self.files
            .iter()
            .filter(|f| f.kind.is_none() && f.part.is_none_or(|p| p.index == 0))
            .map(|f| (f.schema.clone(), f.table.clone()))
            .collect()
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// The major version in a `server_version` text: `15.18 (Debian 15.18-1)` → 15, `18devel` /
/// `18beta1` → 18, `9.6.3` → 9. None when it does not start with a number PostgreSQL could
/// have (1 to 999).
pub fn major_of_version_text(text: &str) -> Option<u32> {
    let digits: String = text
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse::<u32>()
        .ok()
        .filter(|n| (1..1000).contains(n) && digits.len() < 4)
}

/// The major version of a `server_version_num`: 150018 → 15, 90603 → 9.
pub fn major_of_version_num(num: u32) -> u32 {
    num / 10000
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The head of a manifest, read when the whole does not parse (see `from_json`).
#[derive(Deserialize)]
struct Head {
    format_version: u32,
    #[serde(default)]
    backup_id: String,
}

fn newer_format(backup_id: &str, format_version: u32) -> BackupError {
    BackupError::invalid(format!(
        "backup {backup_id} has archive format {format_version}, this pg_backup reads up to {FORMAT_VERSION}"
    ))
    .with_hint("Upgrade pg_backup (ALTER EXTENSION pg_backup UPDATE) to read it.")
}

/// How a backup's rows are written (create()'s `format`): a file per table in COPY's text
/// format (`native`), CSV with a header (`csv`) or JSON lines (`json`); or one SQL script
/// (`sql`). Written in the manifest as those words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Native,
    Sql,
    Json,
    Csv,
}

impl Format {
    /// create()'s `format` argument (any case, surrounding blanks ignored).
    pub fn parse(text: &str) -> Result<Format> {
        let t = text.trim().to_ascii_lowercase();
        match t.as_str() {
            "native" => Ok(Format::Native),
            "sql" => Ok(Format::Sql),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            _ => Err(
                BackupError::invalid(format!("invalid format \"{}\"", t.escape_debug()))
                    .with_hint("Use 'native' (the default), 'sql', 'json' or 'csv'."),
            ),
        }
    }

    /// As the manifest and the catalog record it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Sql => "sql",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }
}

/// What a data file (or a block of a sql-format script) holds besides a table's rows (a
/// file with no kind holds the rows of the table `schema`/`table` name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// The pages of every large object (columns loid, pageno, data, as in pg_largeobject).
    LargeObjects,
    /// The rows of an extension's configuration table (`schema`/`table` name it): loaded
    /// after CREATE EXTENSION, see restore::data.
    ExtensionData,
    /// The single data file of a sql-format backup.
    SqlScript,
}

impl DataFile {
    pub fn is_large_objects(&self) -> bool {
        self.kind == Some(FileKind::LargeObjects)
    }

    pub fn is_extension_data(&self) -> bool {
        self.kind == Some(FileKind::ExtensionData)
    }

    pub fn is_script(&self) -> bool {
        self.kind == Some(FileKind::SqlScript)
    }
}

/// `data/NNNNN.{copy,csv,json}[.gz|.zst]` or `backup.sql[.gz|.zst]`: never absolute, never
/// `..`.
pub fn is_archive_path(path: &str) -> bool {
    // Encrypted files end in .age (storage::upload); the encrypted DDL of a sealed manifest.
    if path == "ddl.json.age" {
        return true;
    }
    let path = path.strip_suffix(".age").unwrap_or(path);
    let path = path
        .strip_suffix(".gz")
        .or_else(|| path.strip_suffix(".zst"))
        .unwrap_or(path);
    if path == "backup.sql" {
        return true;
    }
    let Some(name) = path.strip_prefix("data/") else {
        return false;
    };
    let Some((num, ext)) = name.split_once('.') else {
        return false;
    };
    num.len() == 5
        && num.bytes().all(|b| b.is_ascii_digit())
        && matches!(ext, "copy" | "csv" | "json")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `manifest.sha256` in `sha256sum` format, so `sha256sum -c manifest.sha256` works too.
pub fn manifest_sha_line(manifest_json: &[u8]) -> String {
    format!("{}  {}\n", sha256_hex(manifest_json), MANIFEST_FILE)
}

/// The hash recorded in `manifest.sha256`, if the line is well-formed.
pub fn parse_manifest_sha_line(text: &str) -> Option<String> {
    let (hash, name) = text.trim_end().split_once("  ")?;
    (name == MANIFEST_FILE && hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hash.to_ascii_lowercase())
}

#[cfg(test)]
pub(crate) fn sample() -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        pg_backup_version: "0.1.0".into(),
        backup_id: "20261123T120000.000000Z-test".into(),
        label: Some("test".into()),
        created_at: "2026-11-23T12:00:00Z".into(),
        server_version: "15.18".into(),
        server_version_num: Some(150018),
        database: "app".into(),
        encoding: "UTF8".into(),
        format: Format::Native,
        compression: Compression::Gzip(1),
        options: serde_json::json!({"schemas": ["public"]}),
        toc_facts: TOC_FACTS,
        toc: vec![TocEntry {
            id: 1,
            kind: toc::EntryKind::Table,
            section: toc::Section::PreData,
            schema: Some("public".into()),
            name: "t".into(),
            table: None,
            owner: Some("alice".into()),
            belongs_to: None,
            deps: vec![],
            sql: "CREATE TABLE public.t (a integer);".into(),
            owner_sql: Some("ALTER TABLE public.t OWNER TO alice;".into()),
            tablespace: None,
            builtin_code_only: false,
            facts: Default::default(),
            statistics: None,
        }],
        pre_data: vec![],
        post_data: vec![],
        files: vec![DataFile {
            path: "data/00001.copy.gz".into(),
            kind: None,
            schema: "public".into(),
            table: "t".into(),
            columns: vec!["a".into()],
            rows: 2,
            bytes: 30,
            raw_bytes: 4,
            sha256: "00".repeat(32),
            part: None,
        }],
        script_tables: vec![],
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn created_at_in_the_future_or_not_a_time_is_refused() {
        use chrono::TimeZone;
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
            .unwrap();
        let mut m = sample();
        m.created_at = "2026-11-23T12:05:00Z".into();
        assert!(m.created_at_checked(now).is_ok(), "within the clock skew");
        m.created_at = "2026-11-23T11:00:00+01:00".into();
        assert_eq!(
            m.created_at_checked(now).unwrap(),
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
                .unwrap()
        );
        for bad in [
            "2099-01-01T00:00:00Z",
            "2026-11-23T12:11:00Z",
            "infinity",
            "now",
            "",
        ] {
            m.created_at = bad.into();
            assert!(m.created_at_checked(now).is_err(), "{bad}");
        }
    }
    use super::*;

    #[test]
    fn round_trip() {
        let m = sample();
        let back = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(m, back);
        assert_eq!(back.total_rows(), 2);
    }

    #[test]
    fn file_paths_are_only_the_ones_pg_backup_writes() {
        for ok in [
            "data/00001.copy.gz",
            "data/00002.csv",
            "data/12345.json.gz",
            "backup.sql.gz",
            "data/00001.copy.gz.age",
            "ddl.json.age",
            "backup.sql.zst",
            "data/00002.csv.zst",
        ] {
            assert!(is_archive_path(ok), "{ok}");
        }
        for bad in [
            "/etc/passwd",
            "../x",
            "data/../../x.copy",
            "data/1.copy",
            "data/00001.exe",
            "data/00001.copy/..",
            "",
        ] {
            assert!(!is_archive_path(bad), "{bad}");
        }
        let mut m = sample();
        m.files[0].path = "../../etc/passwd".into();
        assert_eq!(
            Manifest::from_json(&m.to_json()).unwrap_err().sqlstate(),
            "XX001"
        );
    }

    #[test]
    fn format_1_manifests_are_read_into_a_toc() {
        let mut m = sample();
        m.format_version = 1;
        m.toc.clear();
        m.pre_data = vec![DdlItem {
            kind: "table".into(),
            schema: Some("public".into()),
            name: "t".into(),
            table: None,
            sql: "CREATE TABLE public.t (a integer);".into(),
            references: None,
        }];
        let json = m.to_json();
        assert!(!String::from_utf8_lossy(&json).contains("\"toc\": [{"));
        let back = Manifest::from_json(&json).unwrap();
        assert_eq!(back.toc.len(), 1);
        assert_eq!(back.toc[0].kind, toc::EntryKind::Table);
        assert_eq!(back.toc[0].sql, "CREATE TABLE public.t (a integer);");
    }

    fn split(m: &mut Manifest, parts: &[(u32, u32)]) {
        let file = m.files[0].clone();
        m.files = parts
            .iter()
            .enumerate()
            .map(|(k, &(index, of))| DataFile {
                path: format!("data/{:05}.copy.gz", k + 1),
                part: Some(Part {
                    index,
                    of,
                    first_block: u64::from(index) * 10,
                    end_block: (index + 1 < of).then_some(u64::from(index + 1) * 10),
                }),
                ..file.clone()
            })
            .collect();
    }

    #[test]
    fn a_split_table_is_format_3_with_every_part_once() {
        let mut m = sample();
        assert_eq!(Manifest::format_for(&m.files), UNSPLIT_FORMAT);
        split(&mut m, &[(0, 3), (1, 3), (2, 3)]);
        m.format_version = Manifest::format_for(&m.files);
        assert_eq!(m.format_version, PARTS_FORMAT);
        let back = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.file_units(), 1);
        assert_eq!(back.data_tables(), vec![("public".into(), "t".into())]);
        assert_eq!(back.total_rows(), 6);
        assert_eq!(
            back.files[2].part.unwrap().describe(),
            "part 3 of 3 (blocks 20-end)"
        );
        assert_eq!(
            back.files[0].part.unwrap().describe(),
            "part 1 of 3 (blocks 0-9)"
        );
        // A part missing, listed twice, of another count, or in a format-2 manifest: a
        // restore would load part of the table as if it were all of it.
        for bad in [
            &[(0, 3), (2, 3)][..],
            &[(0, 2), (1, 2), (1, 2)],
            &[(0, 2), (1, 3)],
            &[(1, 2), (2, 2)],
        ] {
            let mut m = sample();
            split(&mut m, bad);
            m.format_version = PARTS_FORMAT;
            let err = Manifest::from_json(&m.to_json()).unwrap_err();
            assert_eq!(err.sqlstate(), "XX001", "{bad:?}");
        }
        let mut m = sample();
        split(&mut m, &[(0, 2), (1, 2)]);
        m.format_version = UNSPLIT_FORMAT;
        assert_eq!(
            Manifest::from_json(&m.to_json()).unwrap_err().sqlstate(),
            "XX001"
        );
        // Whole and in parts at once.
        let mut m = sample();
        let whole = m.files[0].clone();
        split(&mut m, &[(0, 2), (1, 2)]);
        m.files.push(DataFile {
            path: "data/00009.copy.gz".into(),
            ..whole
        });
        m.format_version = PARTS_FORMAT;
        assert_eq!(
            Manifest::from_json(&m.to_json()).unwrap_err().sqlstate(),
            "XX001"
        );
    }

    #[test]
    fn garbage_is_corrupt() {
        let err = Manifest::from_json(b"{not json").unwrap_err();
        assert_eq!(err.sqlstate(), "XX001");
    }

    #[test]
    fn a_toc_entry_id_listed_twice_is_refused() {
        let mut m = sample();
        let e = m.toc[0].clone();
        m.toc.push(TocEntry {
            name: "other".into(),
            ..e
        });
        let err = Manifest::from_json(&m.to_json()).unwrap_err();
        assert_eq!(err.sqlstate(), "XX001");
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn newer_format_is_refused_with_a_hint() {
        let mut m = sample();
        m.format_version = FORMAT_VERSION + 1;
        let err = Manifest::from_json(&m.to_json()).unwrap_err();
        assert!(err.hint().unwrap().contains("ALTER EXTENSION"));
    }

    /// The JSON of the vocabulary is what 0.1.0 and 0.2.0 wrote: the same words, read back
    /// into the same words.
    #[test]
    fn format_compression_and_file_kinds_keep_their_json() {
        let mut m = sample();
        for (format, word) in [
            (Format::Native, "native"),
            (Format::Sql, "sql"),
            (Format::Json, "json"),
            (Format::Csv, "csv"),
        ] {
            m.format = format;
            let v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
            assert_eq!(v["format"], word);
            assert_eq!(
                Format::parse(&format!(" {} ", word.to_uppercase())).unwrap(),
                format
            );
        }
        for (compression, word) in [
            (Compression::None, "none"),
            (Compression::Gzip(6), "gzip:6"),
            (Compression::Zstd(3), "zstd:3"),
        ] {
            m.compression = compression;
            let v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
            assert_eq!(v["compression"], word);
        }
        let file = m.files[0].clone();
        m.files = [
            (None, None),
            (Some(FileKind::LargeObjects), Some("large_objects")),
            (Some(FileKind::ExtensionData), Some("extension_data")),
            (Some(FileKind::SqlScript), Some("sql_script")),
        ]
        .into_iter()
        .map(|(kind, _)| DataFile {
            kind,
            ..file.clone()
        })
        .collect();
        m.script_tables = vec![ScriptTable {
            header: "COPY public.t (a) FROM stdin;".into(),
            schema: "public".into(),
            table: "t".into(),
            columns: vec!["a".into()],
            rows: 1,
            kind: Some(FileKind::ExtensionData),
        }];
        let json = m.to_json();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let kinds: Vec<&serde_json::Value> = v["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| &f["kind"])
            .collect();
        assert!(
            v["files"][0].get("kind").is_none(),
            "no kind: no key, as before"
        );
        assert_eq!(
            kinds[1..],
            ["large_objects", "extension_data", "sql_script"]
        );
        assert_eq!(v["script_tables"][0]["kind"], "extension_data");
        let back = Manifest::from_json(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_json(), json, "written back byte for byte");
    }

    /// The archives of 0.1.0 (format 1) in tests/fixtures read, and their words come back
    /// as they were written.
    #[test]
    fn format_1_fixtures_read_with_their_words() {
        for raw in [
            &include_bytes!(
                "../../tests/fixtures/archive-0.1.0/20261123T190408.929151Z-fixture-native/manifest.json"
            )[..],
            &include_bytes!(
                "../../tests/fixtures/archive-0.1.0/20261123T190408.985518Z-fixture-sql/manifest.json"
            )[..],
        ] {
            let m = Manifest::from_json(raw).unwrap();
            let original: serde_json::Value = serde_json::from_slice(raw).unwrap();
            let written: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
            for key in ["format", "compression", "files", "options"] {
                assert_eq!(written[key], original[key], "{key}");
            }
            assert_eq!(m.compression, Compression::Gzip(6));
            assert!(matches!(m.format, Format::Native | Format::Sql));
            assert!(!m.toc.is_empty());
        }
    }

    /// A word this release does not know is a clear error naming it (XX001, a damaged
    /// archive), or "upgrade" (22023) when the archive is of a later format.
    #[test]
    fn unknown_words_are_refused_by_name() {
        let json = String::from_utf8(sample().to_json()).unwrap();
        for (from, to, named) in [
            (
                "\"format\": \"native\"",
                "\"format\": \"parquet\"",
                "parquet",
            ),
            (
                "\"compression\": \"gzip:1\"",
                "\"compression\": \"lz4\"",
                "lz4",
            ),
            (
                "\"path\": \"data/00001.copy.gz\",",
                "\"path\": \"data/00001.copy.gz\", \"kind\": \"pages\",",
                "pages",
            ),
        ] {
            assert!(json.contains(from), "{from}");
            let bad = json.replace(from, to);
            let err = Manifest::from_json(bad.as_bytes()).unwrap_err();
            assert_eq!(err.sqlstate(), "XX001", "{to}");
            assert!(err.to_string().contains(named), "{err}");
            let newer = bad.replace(
                &format!("\"format_version\": {FORMAT_VERSION}"),
                &format!("\"format_version\": {}", FORMAT_VERSION + 1),
            );
            let err = Manifest::from_json(newer.as_bytes()).unwrap_err();
            assert_eq!(err.sqlstate(), "22023", "{to}");
            assert!(err.hint().unwrap().contains("ALTER EXTENSION"));
        }
    }

    /// The writing server's major version, from the number or (archives before 0.3.0) the
    /// text; a claim that contradicts itself counts as the newer one.
    #[test]
    fn the_writing_servers_major_version() {
        let mut m = sample();
        assert_eq!(m.server_major().unwrap(), 15);
        m.server_version_num = None;
        for (text, major) in [
            ("15.20 (Debian 15.20-0+deb12u1)", 15),
            ("18.6", 18),
            ("18devel", 18),
            ("18beta1", 18),
            (" 17.2", 17),
            ("9.6.3", 9),
        ] {
            m.server_version = text.into();
            assert_eq!(m.server_major().unwrap(), major, "{text}");
        }
        for bad in ["", "PostgreSQL", "x15", "0", "1000.1", "-15"] {
            m.server_version = bad.into();
            assert_eq!(m.server_major().unwrap_err().sqlstate(), "XX001", "{bad}");
        }
        m.server_version_num = Some(180006);
        assert_eq!(
            m.server_major().unwrap(),
            18,
            "the number when the text is none"
        );
        m.server_version = "15.18".into();
        assert_eq!(m.server_major().unwrap(), 18, "the newer of two claims");
        m.server_version_num = Some(150018);
        m.server_version = "18.1".into();
        assert_eq!(m.server_major().unwrap(), 18);
        // Archives of 0.1.0 and 0.2.0 have the text only: read as before, and written back
        // without the new key.
        let raw = &include_bytes!(
            "../../tests/fixtures/archive-0.1.0/20261123T190408.929151Z-fixture-native/manifest.json"
        )[..];
        let old = Manifest::from_json(raw).unwrap();
        assert_eq!(old.server_version_num, None);
        assert_eq!(old.server_major().unwrap(), 15);
        assert!(!String::from_utf8_lossy(&old.to_json()).contains("server_version_num"));
    }

    #[test]
    fn sha_line_round_trip() {
        let line = manifest_sha_line(b"abc");
        assert_eq!(
            parse_manifest_sha_line(&line).as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(parse_manifest_sha_line("zz  manifest.json"), None);
    }
}
