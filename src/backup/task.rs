//! One data file of an archive as a unit of work: which rows (a table or one of our own
//! queries), in which layout, into which file. The backend runs them one after the other;
//! with `jobs => N` parallel workers run them (see `parallel`), from the same description.

use std::path::PathBuf;

use pgrx::prelude::*;
use serde::{Deserialize, Serialize};

use super::select::Relation;
use crate::archive::compression::Compression;
use crate::archive::manifest::{DataFile, FileKind, Format, Part};
use crate::archive::writer::{ArchiveWriter, DrainQueue, FileStats};
use crate::copy::copy_to::{self, CopySource};
use crate::copy::CopyFormat;
use crate::ddl;
use crate::error::Result;

/// Columns of the large objects' pages file (as in pg_largeobject).
pub const LO_COLUMNS: [&str; 3] = ["loid", "pageno", "data"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyTask {
    /// The table (InvalidOid for the large objects' pages).
    pub oid: u32,
    pub schema: String,
    pub table: String,
    /// None for a table's rows; `large_objects` for the pages of every large object;
    /// `extension_data` for the rows of an extension's configuration table.
    pub kind: Option<FileKind>,
    /// Columns in COPY order (generated columns are not copied).
    pub columns: Vec<String>,
    /// None: COPY the table itself; else one of our own queries (never user text).
    pub query: Option<String>,
    pub format: CopyFormat,
    /// Relative to the archive folder (the manifest's path) and absolute (where to write).
    pub rel_path: String,
    pub abs_path: PathBuf,
    /// Bytes on disk (heap and TOAST), to hand out the largest tables first.
    pub size: i64,
    /// Which range of the table's heap blocks this task copies (a big table is split, see
    /// `block_ranges`); None: the whole table.
    #[serde(default)]
    pub part: Option<Part>,
}

/// The most parts a table is split into.
pub const MAX_PARTS: u64 = 1024;

/// The block ranges a table of `size` bytes (heap and TOAST) and `blocks` heap blocks is
/// copied in, given `backup.split_table_size` (`split`) and the backup's `jobs`. Empty: the
/// table is copied whole (smaller than `split`). Else ceil(size / split) ranges, at least
/// `jobs` and a multiple of it (so that the jobs finish together), of equal block counts;
/// the last one is open-ended, so no row of the snapshot is ever left out whatever the
/// table's length is when its range is read.
pub fn block_ranges(size: u64, blocks: u64, split: u64, jobs: u32) -> Vec<Part> {
    if split == 0 || size < split || blocks < 2 {
        return Vec::new();
    }
    let jobs = u64::from(jobs.max(1));
    let mut n = size.div_ceil(split).max(2).max(jobs);
    n = n.div_ceil(jobs) * jobs;
    let n = n.min(MAX_PARTS).min(blocks);
    let step = blocks.div_ceil(n);
    let n = blocks.div_ceil(step);
    (0..n)
        .map(|k| Part {
            index: k as u32,
            of: n as u32,
            first_block: k * step,
            end_block: (k + 1 < n).then_some((k + 1) * step),
        })
        .collect()
}

/// The condition selecting a part's rows: a TID Range Scan of its blocks (PostgreSQL 14+).
pub fn range_condition(p: &Part) -> String {
    let lower = format!("ctid >= '({},0)'::pg_catalog.tid", p.first_block);
    match p.end_block {
        Some(e) => format!("WHERE {lower} AND ctid < '({e},0)'::pg_catalog.tid"),
        None => format!("WHERE {lower}"),
    }
}

/// The parts each of `tables` is copied in (`block_ranges`; empty: whole), with one catalog
/// query for all. Only plain heap tables are split: a partitioned table, a foreign table,
/// another access method has no heap blocks to range over; a table with row-level
/// security is read whole as today (a query would be subject to its policies); one with no
/// copied column has nothing to select.
pub fn parts_of(tables: &[Relation], columns: &[Vec<String>], jobs: u32) -> Result<Vec<Vec<Part>>> {
    let Some(split) = crate::guc::split_table_size() else {
        return Ok(vec![Vec::new(); tables.len()]);
    };
    let candidates: Vec<pg_sys::Oid> = tables
        .iter()
        .zip(columns)
        .map(|(t, c)| {
            if t.kind == 'r' && !c.is_empty() {
                t.oid
            } else {
                pg_sys::InvalidOid
            }
        })
        .collect();
    let mut out = vec![Vec::new(); tables.len()];
    if candidates.iter().all(|o| *o == pg_sys::InvalidOid) {
        return Ok(out);
    }
    Spi::connect(|c| {
        let rows = c.select(
            "SELECT u.n, pg_catalog.pg_table_size(c.oid),
                    pg_catalog.pg_relation_size(c.oid, 'main')
                      / pg_catalog.current_setting('block_size')::pg_catalog.int8
             FROM unnest($1::pg_catalog.oid[]) WITH ORDINALITY u(o, n)
             JOIN pg_catalog.pg_class c ON c.oid = u.o
             JOIN pg_catalog.pg_am a ON a.oid = c.relam
             WHERE c.relkind = 'r' AND a.amname = 'heap' AND NOT c.relrowsecurity",
            None,
            &[candidates.into()],
        )?;
        for r in rows {
            let n = r.get::<i64>(1)?.unwrap_or(0) as usize;
            let size = r.get::<i64>(2)?.unwrap_or(0).max(0) as u64;
            let blocks = r.get::<i64>(3)?.unwrap_or(0).max(0) as u64;
            if let Some(slot) = n.checked_sub(1).and_then(|i| out.get_mut(i)) {
                *slot = block_ranges(size, blocks, split, jobs);
            }
        }
        Ok::<_, crate::error::BackupError>(())
    })?;
    Ok(out)
}

fn quoted(schema: &str, name: &str) -> String {
    format!(
        "{}.{}",
        spi::quote_identifier(schema),
        spi::quote_identifier(name)
    )
}

/// The COPY columns of each table (as `ddl::copy_columns`), with one query for all: a
/// backup of thousands of small tables would otherwise spend its time planning this one.
pub fn columns_of(tables: &[Relation]) -> Result<Vec<Vec<String>>> {
    let oids: Vec<pg_sys::Oid> = tables.iter().map(|t| t.oid).collect();
    let mut out = vec![Vec::new(); tables.len()];
    Spi::connect(|c| {
        let rows = c.select(
            "SELECT u.n, coalesce(array_agg(a.attname::pg_catalog.text ORDER BY a.attnum)
                                  FILTER (WHERE a.attname IS NOT NULL), '{}')
             FROM unnest($1::pg_catalog.oid[]) WITH ORDINALITY u(o, n)
             LEFT JOIN pg_catalog.pg_attribute a
               ON a.attrelid = u.o AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
             GROUP BY u.n",
            None,
            &[oids.into()],
        )?;
        for r in rows {
            let n = r.get::<i64>(1)?.unwrap_or(0) as usize;
            if let Some(slot) = n.checked_sub(1).and_then(|i| out.get_mut(i)) {
                *slot = r
                    .get::<Vec<crate::text::Text>>(2)?
                    .unwrap_or_default()
                    .into_iter()
                    .map(String::from)
                    .collect();
            }
        }
        Ok::<_, crate::error::BackupError>(())
    })?;
    Ok(out)
}

/// The task for table `t` (whose COPY columns are `columns`), the `index`th data file of the
/// archive.
pub fn for_table(
    index: usize,
    t: &Relation,
    columns: Vec<String>,
    format: Format,
    writer: &ArchiveWriter,
    compression: Compression,
) -> Result<CopyTask> {
    build(index, t, columns, None, None, format, writer, compression)
}

/// The task for part `part` of table `t` (see `block_ranges`).
pub fn for_table_part(
    index: usize,
    t: &Relation,
    columns: Vec<String>,
    part: Part,
    format: Format,
    writer: &ArchiveWriter,
    compression: Compression,
) -> Result<CopyTask> {
    build(
        index,
        t,
        columns,
        None,
        Some(part),
        format,
        writer,
        compression,
    )
}

/// The task for the rows of an extension's configuration table: those its condition selects
/// (all for an empty one), read with an empty search_path as pg_dump reads them.
pub fn for_config_table(
    index: usize,
    c: &ddl::collect::ConfigTable,
    format: Format,
    writer: &ArchiveWriter,
    compression: Compression,
) -> Result<CopyTask> {
    let t = Relation {
        oid: c.oid,
        schema: c.schema.clone(),
        name: c.name.clone(),
        kind: 'r',
    };
    let columns = ddl::copy_columns(c.oid)?;
    build(
        index,
        &t,
        columns,
        Some(&c.filter),
        None,
        format,
        writer,
        compression,
    )
}

/// `SELECT <columns> FROM ONLY <table> <condition>`: the rows of a configuration table.
pub fn config_query(c: &ddl::collect::ConfigTable, columns: &[String]) -> String {
    let cols: Vec<String> = columns.iter().map(spi::quote_identifier).collect();
    format!(
        "SELECT {} FROM ONLY {} {}",
        cols.join(", "),
        quoted(&c.schema, &c.name),
        c.filter
    )
}

#[allow(clippy::too_many_arguments)]
fn build(
    index: usize,
    t: &Relation,
    columns: Vec<String>,
    config_filter: Option<&str>,
    part: Option<Part>,
    format: Format,
    writer: &ArchiveWriter,
    compression: Compression,
) -> Result<CopyTask> {
    let range = part.as_ref().map(range_condition);
    let filter = config_filter.or(range.as_deref());
    let rows_of = |cols: &str| {
        format!(
            "SELECT {cols} FROM ONLY {} {}",
            quoted(&t.schema, &t.name),
            filter.unwrap_or_default()
        )
    };
    let listed = || {
        columns
            .iter()
            .map(spi::quote_identifier)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (query, copy_format, ext) = match format {
        Format::Csv => (
            filter.map(|_| rows_of(&listed())),
            CopyFormat::CsvHeader,
            "csv",
        ),
        // One JSON object per row, keys = the copied columns (generated ones excluded).
        // An array whose lower bounds are not all 1 (its text form starts with its
        // dimensions, e.g. '[0:1]={1,2}') is written as that text: a JSON array would come
        // back with bounds 1. json_populate_record reads such a string through the array's
        // input function.
        Format::Json => {
            let arrays = array_columns(t.oid)?;
            let cols: Vec<String> = columns
                .iter()
                .map(|c| {
                    let q = spi::quote_identifier(c);
                    if arrays.contains(c) {
                        format!(
                            "CASE WHEN pg_catalog.left({q}::pg_catalog.text, 1) = '[' \
                             THEN pg_catalog.to_json({q}::pg_catalog.text) \
                             ELSE pg_catalog.to_json({q}) END AS {q}"
                        )
                    } else {
                        q
                    }
                })
                .collect();
            // Refused up front if a value would not come back as it was.
            super::json_check::check(t, &columns, &cols, filter)?;
            let query = format!(
                "SELECT row_to_json(x.*) FROM ({}) x",
                rows_of(&cols.join(", "))
            );
            (Some(query), CopyFormat::JsonLines, "json")
        }
        _ => (filter.map(|_| rows_of(&listed())), CopyFormat::Text, "copy"),
    };
    let (rel_path, abs_path) = writer.data_path(index, ext, compression);
    Ok(CopyTask {
        oid: u32::from(t.oid),
        schema: t.schema.clone(),
        table: t.name.clone(),
        kind: config_filter.map(|_| FileKind::ExtensionData),
        columns,
        query,
        format: copy_format,
        rel_path,
        abs_path,
        size: 0,
        part,
    })
}

/// The columns of `rel` whose type (or a domain's base type) is an array.
fn array_columns(rel: pg_sys::Oid) -> Result<Vec<String>> {
    Ok(Spi::get_one_with_args::<Vec<crate::text::Text>>(
        "SELECT coalesce(array_agg(a.attname::pg_catalog.text), '{}') FROM pg_catalog.pg_attribute a
         JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND t.typcategory = 'A'",
        &[rel.into()],
    )?
    .unwrap_or_default()
    .into_iter()
    .map(String::from)
    .collect())
}

/// The task for the pages of every large object (COPY text in every format but sql).
pub fn for_large_objects(
    index: usize,
    writer: &ArchiveWriter,
    compression: Compression,
) -> CopyTask {
    let (rel_path, abs_path) = writer.data_path(index, "copy", compression);
    CopyTask {
        oid: 0,
        schema: "pg_catalog".into(),
        table: "pg_largeobject".into(),
        kind: Some(FileKind::LargeObjects),
        columns: LO_COLUMNS.iter().map(|c| c.to_string()).collect(),
        query: Some(ddl::LARGE_OBJECT_PAGES.to_string()),
        format: CopyFormat::Text,
        rel_path,
        abs_path,
        size: 0,
        part: None,
    }
}

/// Fill in `size` for every task (one catalog query for all of them).
pub fn measure(tasks: &mut [CopyTask]) -> Result<()> {
    let oids: Vec<pg_sys::Oid> = tasks.iter().map(|t| pg_sys::Oid::from(t.oid)).collect();
    let sizes: Vec<i64> = Spi::get_one_with_args::<Vec<i64>>(
        "SELECT array_agg(CASE WHEN o = 0 THEN (SELECT pg_catalog.pg_table_size('pg_catalog.pg_largeobject'))
                               ELSE coalesce(pg_catalog.pg_table_size(o), 0) END ORDER BY n)
         FROM unnest($1::pg_catalog.oid[]) WITH ORDINALITY u(o, n)",
        &[oids.into()],
    )?
    .unwrap_or_default();
    for (t, s) in tasks.iter_mut().zip(sizes) {
        t.size = s;
    }
    Ok(())
}

/// The order in which workers take the tasks: largest first (as pg_dump -j does), so the
/// last table to finish is a small one. Returns indexes into `tasks`.
pub fn largest_first(tasks: &[CopyTask]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..tasks.len()).collect();
    order.sort_by(|&a, &b| tasks[b].size.cmp(&tasks[a].size).then(a.cmp(&b)));
    order
}

impl CopyTask {
    /// COPY the rows into the file under the active snapshot: through `writer`'s sink (its
    /// storage target and encryption) in the backend that took the locks, or, in a parallel
    /// worker (`None`), into the local file after taking the table's ACCESS SHARE lock (which
    /// the worker's lock group already holds).
    pub fn run(
        &self,
        writer: Option<&ArchiveWriter>,
        compression: Compression,
    ) -> Result<(u64, FileStats)> {
        // A configuration table's condition is read as pg_dump reads it.
        let _path =
            (self.kind == Some(FileKind::ExtensionData)).then(ddl::collect::EmptySearchPath::set);
        let source = match &self.query {
            Some(q) => CopySource::Query(q),
            None => {
                let oid = pg_sys::Oid::from(self.oid);
                if writer.is_none() {
                    // SAFETY: inside the transaction this copy runs in, which releases the
                    // lock at its end; an oid whose relation was dropped is locked harmlessly
                    // (COPY then fails to open it, an ERROR).
                    unsafe { pg_sys::LockRelationOid(oid, pg_sys::AccessShareLock as i32) };
                }
                CopySource::Table(oid)
            }
        };
        match writer {
            Some(w) => copy_to::copy_to_sink(
                source,
                w.open_sink(&self.rel_path)?,
                &self.abs_path,
                compression,
                self.format,
            ),
            None => copy_to::copy_to_file(source, &self.abs_path, compression, self.format),
        }
    }

    /// `run` in the backend through `writer`'s drain queue: returns the row count; the
    /// file's size and checksum come from the queue.
    pub fn run_queued(&self, writer: &ArchiveWriter, queue: &mut DrainQueue) -> Result<u64> {
        // As in `run`: a configuration table's condition is read as pg_dump reads it.
        let _path =
            (self.kind == Some(FileKind::ExtensionData)).then(ddl::collect::EmptySearchPath::set);
        let source = match &self.query {
            Some(q) => CopySource::Query(q),
            None => CopySource::Table(pg_sys::Oid::from(self.oid)),
        };
        copy_to::copy_to_queue(
            source,
            queue,
            writer.sink_opener(&self.rel_path)?,
            &self.abs_path,
            self.format,
        )
    }

    /// The manifest's entry for the file this task wrote.
    pub fn data_file(&self, rows: u64, stats: FileStats) -> DataFile {
        DataFile {
            path: self.rel_path.clone(),
            kind: self.kind,
            schema: self.schema.clone(),
            table: self.table.clone(),
            columns: self.columns.clone(),
            rows,
            bytes: stats.bytes,
            raw_bytes: stats.raw_bytes,
            sha256: stats.sha256,
            part: self.part,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(size: i64) -> CopyTask {
        CopyTask {
            oid: 1,
            schema: "s".into(),
            table: "t".into(),
            kind: None,
            columns: vec![],
            query: None,
            format: CopyFormat::Text,
            rel_path: String::new(),
            abs_path: PathBuf::new(),
            size,
            part: None,
        }
    }

    #[test]
    fn largest_tables_go_first_ties_in_archive_order() {
        let tasks: Vec<CopyTask> = [5, 100, 0, 100, 7].into_iter().map(task).collect();
        assert_eq!(largest_first(&tasks), vec![1, 3, 4, 0, 2]);
    }

    fn spans(parts: &[Part]) -> Vec<(u64, Option<u64>)> {
        parts.iter().map(|p| (p.first_block, p.end_block)).collect()
    }

    #[test]
    fn small_tables_are_not_split() {
        const MB: u64 = 1 << 20;
        assert!(block_ranges(63 * MB, 8000, 64 * MB, 2).is_empty());
        assert!(block_ranges(100 * MB, 1, 64 * MB, 2).is_empty());
        assert!(block_ranges(100 * MB, 1000, 0, 2).is_empty());
    }

    #[test]
    fn ranges_cover_every_block_once_and_the_last_is_open() {
        const MB: u64 = 1 << 20;
        for (size, blocks, jobs) in [
            (128 * MB, 16_394, 2),
            (129 * MB, 16_500, 1),
            (10_000 * MB, 1_280_000, 3),
            (64 * MB, 3, 4),
            (64 * MB, 2, 1),
            (1 << 50, 1 << 30, 2),
        ] {
            let parts = block_ranges(size, blocks, 64 * MB, jobs);
            assert!(parts.len() >= 2, "{size} {blocks} {jobs}");
            assert!(parts.len() as u64 <= MAX_PARTS);
            assert_eq!(parts[0].first_block, 0);
            for (k, w) in parts.windows(2).enumerate() {
                assert_eq!(w[0].end_block, Some(w[1].first_block));
                assert!(w[0].first_block < w[1].first_block);
                assert_eq!(w[0].index as usize, k);
            }
            let last = parts.last().unwrap();
            assert_eq!(last.end_block, None);
            assert!(last.first_block < blocks);
            assert!(parts.iter().all(|p| p.of as usize == parts.len()));
        }
    }

    #[test]
    fn parts_balance_over_the_jobs() {
        const MB: u64 = 1 << 20;
        // Two ranges' worth, two jobs: two equal halves.
        let p = block_ranges(128 * MB, 16_394, 64 * MB, 2);
        assert_eq!(spans(&p), vec![(0, Some(8197)), (8197, None)]);
        // pgbench scale 10 (a little over 128MB with its free space map): four quarters.
        let p = block_ranges(128 * MB + 100, 16_394, 64 * MB, 2);
        assert_eq!(
            spans(&p),
            vec![
                (0, Some(4099)),
                (4099, Some(8198)),
                (8198, Some(12297)),
                (12297, None)
            ]
        );
        // Three ranges' worth on two jobs: four.
        assert_eq!(block_ranges(150 * MB, 19_200, 64 * MB, 2).len(), 4);
        assert_eq!(block_ranges(150 * MB, 19_200, 64 * MB, 1).len(), 3);
        assert_eq!(block_ranges(70 * MB, 9_000, 64 * MB, 3).len(), 3);
    }

    #[test]
    fn range_conditions_are_tid_ranges() {
        let p = block_ranges(1 << 30, 1000, 1 << 29, 2);
        assert_eq!(
            range_condition(&p[0]),
            "WHERE ctid >= '(0,0)'::pg_catalog.tid AND ctid < '(500,0)'::pg_catalog.tid"
        );
        assert_eq!(
            range_condition(&p[1]),
            "WHERE ctid >= '(500,0)'::pg_catalog.tid"
        );
    }
}
