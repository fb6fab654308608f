//! Planner statistics at the end of a restore (issue 19): for each table whose rows this
//! restore loaded, the archive's `StatisticsData` entry is applied with
//! `pg_restore_relation_stats` / `pg_restore_attribute_stats` (PostgreSQL 18+) instead of an
//! ANALYZE; tables without one are analyzed as before.
//!
//! Statistics describe the archive's rows, so they are applied only to a table that holds
//! exactly those rows: one this restore created (or dropped and recreated) or truncated, never
//! one it appended to. The relation is the one the rows went into (the restore's plan), never
//! a name from the archive's values; the calls run as that table's owner (which the caller
//! must act as, as for the rows), in a subtransaction, with every value a typed parameter
//! (`archive::statistics`): a lying archive gets what the owner could set with those
//! functions, and a refused or failing call falls back to ANALYZE.

use std::collections::HashMap;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use super::job::Job;
use super::plan::Action as TableAction;
use super::result::{Action, Row, Status};
use super::scope::quoted;
use crate::archive::statistics::RelationStatistics;
use crate::archive::toc::{EntryKind, TocEntry};
use crate::error::Result;
use crate::security::owner::{relation_owner, run_as};

/// `kind` of the result rows of statistics.
pub const KIND: &str = "statistics_data";

/// What happened to one table's statistics.
pub enum Applied {
    /// Applied: no ANALYZE needed.
    Done(Row),
    /// Not applied (the row says why, if there is one to report): ANALYZE as before.
    NotApplied(Option<Row>),
}

/// The statistics entries of a restore, by the quoted target name of their table.
pub struct Statistics<'a> {
    /// Whether this server has pg_restore_relation_stats / pg_restore_attribute_stats and
    /// the setting allows them.
    available: Option<&'static str>,
    entries: HashMap<String, &'a TocEntry>,
}

/// Whether this server can restore statistics: None if it can, else why not.
fn unavailable() -> Result<Option<&'static str>> {
    if !crate::guc::restore_statistics() {
        return Ok(Some(
            "backup.restore_statistics is off: the table was analyzed instead",
        ));
    }
    let has = crate::query::one::<bool>(
        "SELECT pg_catalog.count(*) OPERATOR(pg_catalog.=) 2 FROM pg_catalog.pg_proc
         WHERE pronamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace
           AND proname IN ('pg_restore_relation_stats', 'pg_restore_attribute_stats')",
        &[],
    )?
    .unwrap_or(false);
    Ok((!has).then_some(
        "this server has no pg_restore_relation_stats (PostgreSQL 18 and later): the table was analyzed instead",
    ))
}

impl<'a> Statistics<'a> {
    pub fn new(job: &Job<'a>) -> Result<Statistics<'a>> {
        let entries = job
            .manifest
            .toc
            .iter()
            .filter(|e| e.kind == EntryKind::StatisticsData && e.statistics.is_some())
            .filter_map(|e| {
                let (s, n) = e.relation()?;
                let t = job.plan.of(&s, &n)?;
                Some((quoted(&t.schema, &t.name), e))
            })
            .collect();
        Ok(Statistics {
            available: unavailable()?,
            entries,
        })
    }

    /// Tables (quoted target names) whose statistics will be applied rather than analyzed,
    /// if their rows load: restore(jobs => N) leaves them to the leader.
    pub fn covers(&self, job: &Job, table: &str) -> bool {
        self.available.is_none()
            && self.entries.get(table).is_some_and(|e| {
                let (s, n) = e.relation().unwrap_or_default();
                job.plan
                    .of(&s, &n)
                    .is_some_and(|t| holds_archive_rows(t.action))
            })
    }

    /// Apply the statistics of `table` (a quoted target name whose rows loaded).
    pub fn apply(&self, job: &Job, table: &str) -> Result<Applied> {
        let Some(e) = self.entries.get(table) else {
            return Ok(Applied::NotApplied(None));
        };
        let row = |status: Status, action: Action, detail: String| {
            Row::new(table.to_string(), KIND, action, status).detail(detail)
        };
        if let Some(why) = self.available {
            return Ok(Applied::NotApplied(Some(row(
                Status::Ok,
                Action::Skip,
                why.to_string(),
            ))));
        }
        let (s, n) = e.relation().unwrap_or_default();
        let planned = job.plan.of(&s, &n);
        if !planned.is_some_and(|t| holds_archive_rows(t.action)) {
            return Ok(Applied::NotApplied(Some(row(
                Status::Ok,
                Action::Skip,
                "the table holds rows besides the backup's (existing => append): the table was analyzed instead".into(),
            ))));
        }
        let Some(oid) = job.plan.destination(&s, &n) else {
            return Ok(Applied::NotApplied(None));
        };
        let owner = relation_owner(oid)?;
        if !job.restorer.acts_as(owner) {
            return Ok(Applied::NotApplied(Some(row(
                Status::Warning,
                Action::Skip,
                "the restoring role does not have the privileges of the table's owner: the table was analyzed instead".into(),
            ))));
        }
        if let Some(why) = only_analyze_computes(oid)? {
            return Ok(Applied::NotApplied(Some(row(
                Status::Ok,
                Action::Skip,
                why.to_string(),
            ))));
        }
        let stats = e.statistics.as_ref().expect("filtered in new()");
        let outcome = crate::subtransaction::run_result(|| run_as(owner, || calls(oid, stats)));
        Ok(match outcome {
            Ok(Ok(Ok(()))) => Applied::Done(row(
                Status::Ok,
                Action::Create,
                format!(
                    "planner statistics of {} column(s) restored instead of ANALYZE",
                    stats.columns.len()
                ),
            )),
            Ok(Err(e)) => Applied::NotApplied(Some(row(
                Status::Warning,
                Action::Skip,
                format!("the backup's statistics were not accepted ({e}): the table was analyzed instead"),
            ))),
            Ok(Ok(Err(why))) => Applied::NotApplied(Some(row(
                Status::Warning,
                Action::Skip,
                format!("the backup's statistics were not accepted ({why}): the table was analyzed instead"),
            ))),
            Err(caught) => Applied::NotApplied(Some(row(
                Status::Warning,
                Action::Skip,
                format!(
                    "the backup's statistics were not accepted ({}): the table was analyzed instead",
                    crate::subtransaction::message(&caught)
                ),
            ))),
        })
    }
}

/// Why relation `oid` needs an ANALYZE all the same, if it does: ANALYZE of a table also
/// computes the statistics of its expression indexes and of its extended statistics objects
/// (CREATE STATISTICS), which PostgreSQL 18's pg_restore_*_stats cannot set (pg_dump 18 does
/// not carry them either: after its restore they are missing until autovacuum analyzes).
/// Such a table is analyzed instead, so its planner knows everything ANALYZE knows.
fn only_analyze_computes(oid: pg_sys::Oid) -> Result<Option<&'static str>> {
    let expression_index = crate::query::one::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_index
                         WHERE indrelid OPERATOR(pg_catalog.=) $1 AND indexprs IS NOT NULL)",
        &[oid.into()],
    )?
    .unwrap_or(false);
    if expression_index {
        return Ok(Some(
            "the table has an expression index, whose statistics only ANALYZE computes: the table was analyzed instead",
        ));
    }
    let extended = crate::query::one::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_statistic_ext
                         WHERE stxrelid OPERATOR(pg_catalog.=) $1)",
        &[oid.into()],
    )?
    .unwrap_or(false);
    Ok(extended.then_some(
        "the table has extended statistics (CREATE STATISTICS), which only ANALYZE computes: the table was analyzed instead",
    ))
}

/// Whether a table planned with `action` holds exactly the archive's rows after its load.
fn holds_archive_rows(action: TableAction) -> bool {
    matches!(
        action,
        TableAction::Create | TableAction::Drop | TableAction::Truncate
    )
}

/// The calls for relation `oid` (as the current user). Err: a payload refused before any
/// call, or a call the server rejected part of (it says which in a WARNING).
fn calls(oid: pg_sys::Oid, stats: &RelationStatistics) -> Result<std::result::Result<(), String>> {
    let calls = match stats.calls() {
        Ok(c) => c,
        Err(why) => return Ok(Err(why)),
    };
    // With a fresh snapshot (crate::query): the table may have been created by this call.
    let name_of = |column: &str| {
        crate::query::one::<String>(
            &format!(
                "SELECT {column}::pg_catalog.text FROM pg_catalog.pg_class c
                 JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                 WHERE c.oid OPERATOR(pg_catalog.=) $1"
            ),
            &[oid.into()],
        )
    };
    let (Some(schema), Some(name)) = (name_of("n.nspname")?, name_of("c.relname")?) else {
        return Ok(Err("the table is gone".into()));
    };
    for call in &calls {
        let mut args: Vec<DatumWithOid<'static>> = vec![
            crate::text::arg(schema.clone()),
            crate::text::arg(name.clone()),
            stats.version.into(),
        ];
        args.extend(
            call.args
                .iter()
                .map(|(_, v)| crate::text::arg(v.to_string())),
        );
        let accepted = crate::query::one::<bool>(&call.sql(), &args)?.unwrap_or(false);
        if !accepted {
            let what = call
                .args
                .iter()
                .find(|(a, _)| *a == crate::archive::statistics::StatArg::Attname)
                .map(|(_, v)| format!("column {v}"))
                .unwrap_or_else(|| "relation".into());
            return Ok(Err(format!(
                "the server refused some of the {what} statistics"
            )));
        }
    }
    Ok(Ok(()))
}
