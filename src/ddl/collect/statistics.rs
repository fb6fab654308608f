//! Planner statistics of the tables whose rows are backed up (issue 19), as PostgreSQL 18's
//! pg_dump reads them (getRelationStatistics, dumpRelationStats_dumper, fetchAttributeStats):
//! `pg_class.relpages / reltuples / relallvisible` (and 18's `relallfrozen`) and the
//! `pg_stats` rows of each column, read on every version pg_backup runs on, under the
//! backup's snapshot. One `StatisticsData` entry per table, in the data section after the
//! table's rows (pg_dump's PRIO_STATISTICS_DATA_DATA), depending on them.
//!
//! Only tables with `pg_stats` rows get an entry: one never analyzed (or empty) is analyzed
//! by the restore, as before.
//!
//! `pg_stats` shows only the columns the backup's role may read (has_column_privilege) and no
//! table whose row-level security applies to that role: the statistics obey the same
//! visibility as the rows.

use std::collections::{BTreeMap, HashMap};

use pgrx::prelude::*;

use super::common::{server_version, Context, Row};
use crate::archive::statistics::{RelationStatistics, StatArg, StatFunction};
use crate::archive::toc::{EntryKind, Section, TocEntry};
use crate::error::Result;

fn rows<T>(cx: &Context, sql: &str, f: impl Fn(Row) -> Result<T>) -> Result<Vec<T>> {
    Spi::connect(|client| {
        let rows = client.select(sql, None, &[cx.data_tables.clone().into()])?;
        rows.map(|r| f(Row(&r))).collect()
    })
}

/// Append a `StatisticsData` entry after the TOC for each table whose rows it holds.
pub fn append(cx: &Context, toc: &mut Vec<TocEntry>) -> Result<()> {
    if cx.data_tables.is_empty() {
        return Ok(());
    }
    let version = server_version() as i32;
    let relallfrozen = if version >= 180000 {
        "c.relallfrozen::pg_catalog.text"
    } else {
        "NULL::pg_catalog.text"
    };
    let relations = rows(
        cx,
        &format!(
            "SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text,
                    c.relpages::pg_catalog.text, c.reltuples::pg_catalog.text,
                    c.relallvisible::pg_catalog.text, {relallfrozen}
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid OPERATOR(pg_catalog.=) ANY($1)"
        ),
        |r| {
            let mut m = BTreeMap::new();
            for (i, arg) in [
                (3, StatArg::Relpages),
                (4, StatArg::Reltuples),
                (5, StatArg::Relallvisible),
                (6, StatArg::Relallfrozen),
            ] {
                if let Some(v) = r.text(i)? {
                    m.insert(arg, v);
                }
            }
            Ok(((r.string(1)?, r.string(2)?), m))
        },
    )?;
    // pg_stats' range columns exist from 17 on.
    let ranges = if version >= 170000 {
        "s.range_length_histogram::pg_catalog.text, s.range_empty_frac::pg_catalog.text, s.range_bounds_histogram::pg_catalog.text"
    } else {
        "NULL::pg_catalog.text, NULL::pg_catalog.text, NULL::pg_catalog.text"
    };
    // pg_stats' columns in the order the query below reads them: pg_restore_attribute_stats'
    // arguments, as StatArg::ALL lists them.
    let column_args: Vec<StatArg> = StatArg::ALL
        .into_iter()
        .filter(|a| a.function() == StatFunction::Attribute)
        .collect();
    let columns = rows(
        cx,
        &format!(
            "SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text,
                    s.attname::pg_catalog.text, s.inherited::pg_catalog.text,
                    s.null_frac::pg_catalog.text, s.avg_width::pg_catalog.text,
                    s.n_distinct::pg_catalog.text, s.most_common_vals::pg_catalog.text,
                    s.most_common_freqs::pg_catalog.text, s.histogram_bounds::pg_catalog.text,
                    s.correlation::pg_catalog.text, s.most_common_elems::pg_catalog.text,
                    s.most_common_elem_freqs::pg_catalog.text,
                    s.elem_count_histogram::pg_catalog.text, {ranges}
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_catalog.pg_stats s ON s.schemaname OPERATOR(pg_catalog.=) n.nspname
                  AND s.tablename OPERATOR(pg_catalog.=) c.relname
             WHERE c.oid OPERATOR(pg_catalog.=) ANY($1)
               -- A parent's statistics over its inheritance tree describe its descendants'
               -- rows too: kept only when every descendant's rows are in the backup (a
               -- table the backup leaves out must not come back as sample values).
               AND (NOT s.inherited OR NOT EXISTS (
                    WITH RECURSIVE d(oid) AS (
                        SELECT i.inhrelid FROM pg_catalog.pg_inherits i
                         WHERE i.inhparent OPERATOR(pg_catalog.=) c.oid
                        UNION
                        SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN d
                            ON i.inhparent OPERATOR(pg_catalog.=) d.oid)
                    SELECT FROM d WHERE d.oid OPERATOR(pg_catalog.<>) ALL($1)))
             ORDER BY c.oid, s.attname, s.inherited"
        ),
        |r| {
            let mut m = BTreeMap::new();
            for (i, arg) in column_args.iter().enumerate() {
                if let Some(v) = r.text(i + 3)? {
                    m.insert(*arg, v);
                }
            }
            Ok(((r.string(1)?, r.string(2)?), m))
        },
    )?;
    let mut by_table: HashMap<(String, String), RelationStatistics> = relations
        .into_iter()
        .map(|(k, relation)| {
            (
                k,
                RelationStatistics {
                    version,
                    relation,
                    columns: Vec::new(),
                },
            )
        })
        .collect();
    for (k, c) in columns {
        if let Some(s) = by_table.get_mut(&k) {
            s.columns.push(c);
        }
    }
    let mut next = toc.iter().map(|e| e.id).max().unwrap_or(0) + 1;
    let data: Vec<TocEntry> = toc
        .iter()
        .filter(|e| e.kind == EntryKind::TableData)
        .cloned()
        .collect();
    for d in data {
        let (id, schema, name, belongs_to, owner) = (d.id, d.schema, d.name, d.belongs_to, d.owner);
        let key = (schema.clone().unwrap_or_default(), name.clone());
        // A table never analyzed (or empty) has no pg_stats rows: no entry, so that the
        // restore analyzes it rather than restoring "no statistics".
        let Some(stats) = by_table.remove(&key).filter(|s| !s.columns.is_empty()) else {
            continue;
        };
        toc.push(TocEntry {
            id: next,
            kind: EntryKind::StatisticsData,
            section: Section::Data,
            schema,
            name: name.clone(),
            table: Some(name),
            owner,
            belongs_to: belongs_to.or(Some(id)),
            deps: vec![id],
            sql: String::new(),
            owner_sql: None,
            tablespace: None,
            builtin_code_only: false,
            facts: Default::default(),
            statistics: Some(stats),
        });
        next += 1;
    }
    Ok(())
}
