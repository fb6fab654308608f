//! The walk: the one pass over the TOC that every restore makes, in pg_restore's order
//! (pre-data, data, post-data, grants, what must follow the grants, sequence values), for a
//! dry run (what would happen to each entry), a serial restore (each entry decided and run in
//! turn) and restore(jobs => N) (the rows and the post-data entries handed to job workers by
//! `parallel`, which decides about each entry through the same `Decider` just before handing
//! it out, and runs it through the same `Executor`). It ends with the sequences moved past the
//! rows and the loaded tables analyzed.

use std::collections::{HashMap, HashSet};

use pgrx::prelude::*;

use super::data;
use super::decide::Decider;
use super::entry::Executor;
use super::job::Job;
use super::plan::Action as TableAction;
use super::policy::{Decision, Tolerate};
use super::result::{Action, Row, Status};
use super::scope::{quoted, Why};
use super::statistics::{Applied, Statistics};
use super::step::sql_step;
use super::{parallel, sequences, tuning};
use crate::archive::manifest::FileKind;
use crate::archive::toc::{EntryKind, Pass, TocEntry, PASSES};
use crate::error::Result;

/// What the walk does with the entries it decides about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Changes nothing: a row per entry saying what would happen.
    DryRun,
    /// Runs each entry in turn (in this backend or the one restore worker).
    Serial,
    /// restore(jobs => N): rows and post-data entries over job workers.
    Parallel,
}

/// Restore everything the job says.
pub struct Walk<'j, 'a> {
    job: &'j Job<'a>,
    pub decider: Decider<'j, 'a>,
    pub exec: Executor<'j, 'a>,
}

impl<'j, 'a> Walk<'j, 'a> {
    pub fn new(job: &'j Job<'a>) -> Result<Self> {
        Ok(Walk {
            job,
            decider: Decider::new(job)?,
            exec: Executor::new(job),
        })
    }

    /// The mode the job's options ask for.
    pub fn mode_of(job: &Job) -> Mode {
        if job.opts.dry_run {
            Mode::DryRun
        } else if job.opts.jobs > 1 && job.batches.is_some() {
            Mode::Parallel
        } else {
            Mode::Serial
        }
    }

    /// The whole restore (or, for a dry run, its plan): every pass of the TOC in order.
    pub fn run(mut self, mode: Mode) -> Result<Vec<Row>> {
        let job = self.job;
        let dry = DryRun::new(job);
        if mode != Mode::DryRun {
            job.apply_settings()?;
            self.target_schema()?;
            self.drop_replaced()?;
        }
        let mut analyzed: HashSet<String> = HashSet::new();
        for pass in PASSES {
            let entries: Vec<&'a TocEntry> = job
                .manifest
                .toc
                .iter()
                // Statistics are applied with the final ANALYZE (`analyze`).
                .filter(|e| e.pass() == pass && e.kind != EntryKind::StatisticsData)
                .collect();
            match (mode, pass) {
                (Mode::DryRun, _) => {
                    for e in entries {
                        if let Some(r) = dry.row(&self.decider, e)? {
                            self.exec.runner.note(r);
                        }
                    }
                }
                (Mode::Parallel, Pass::Data) => {
                    let post: Vec<&'a TocEntry> = job
                        .manifest
                        .toc
                        .iter()
                        .filter(|e| {
                            e.pass() == Pass::PostData && e.kind != EntryKind::StatisticsData
                        })
                        .collect();
                    analyzed =
                        parallel::data_and_post_data(&mut self.decider, &mut self.exec, &post)?;
                }
                // With the rows, over the job workers.
                (Mode::Parallel, Pass::PostData) => {}
                (_, Pass::Data) => {
                    if !job.opts.schema_only {
                        data::load_data(job, &mut self.exec.runner, &self.decider.preexisting)?;
                    }
                }
                _ => self.decider.run_entries(&mut self.exec, &entries)?,
            }
        }
        if mode == Mode::DryRun {
            return Ok(self.exec.runner.out);
        }
        // Last, after the backup's own sequence values (issue 10).
        if !job.opts.schema_only {
            sequences::advance(job, &mut self.exec.runner)?;
        }
        self.analyze(&analyzed)?;
        Ok(self.exec.runner.out)
    }

    /// target_schema: the schema relations move to, owned by the role that called restore,
    /// like everything without an owner of its own in the backup (issue 9).
    fn target_schema(&mut self) -> Result<()> {
        let job = self.job;
        if let Some((_, to)) = &job.scope.target {
            let sql = format!(
                "CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}",
                spi::quote_identifier(to),
                spi::quote_identifier(&job.restorer.name)
            );
            self.exec.runner.run(
                to.clone(),
                "schema",
                Action::Create,
                Tolerate::Nothing,
                sql_step(sql),
            )?;
        }
        Ok(())
    }

    /// ANALYZE of the tables whose every step succeeded and that received rows (default on),
    /// but those the job workers analyzed already; a table whose planner statistics the
    /// archive carries gets them instead, where the server can take them (issue 19,
    /// `statistics`). In a restore that commits as it goes, in batches like every other step
    /// (ANALYZE's locks count too).
    fn analyze(&mut self, analyzed: &HashSet<String>) -> Result<()> {
        let job = self.job;
        if job.opts.schema_only {
            return Ok(());
        }
        let tables: Vec<String> = loaded_tables(job, &self.exec.runner.out)
            .into_iter()
            .filter(|t| !analyzed.contains(t))
            .collect();
        let stats = Statistics::new(job)?;
        if let Some(b) = job.batches {
            b.commit(&self.exec.runner.out)?;
        }
        for t in tables {
            let analyze = match stats.apply(job, &t)? {
                Applied::Done(row) => {
                    self.exec.runner.note(row);
                    false
                }
                Applied::NotApplied(row) => {
                    if let Some(row) = row {
                        self.exec.runner.note(row);
                    }
                    job.opts.analyze
                }
            };
            if analyze {
                tuning::analyze([t.as_str()])?;
            }
            if let Some(b) = job.batches {
                b.step_done(&self.exec.runner.out)?;
            }
        }
        Ok(())
    }

    fn drop_replaced(&mut self) -> Result<()> {
        let job = self.job;
        let drop: Vec<String> = job
            .plan
            .tables
            .iter()
            .filter(|t| t.action == TableAction::Drop)
            .map(|t| quoted(&t.schema, &t.name))
            .collect();
        if drop.is_empty() {
            return Ok(());
        }
        for (kind, what) in [
            (EntryKind::MaterializedView, "MATERIALIZED VIEW"),
            (EntryKind::View, "VIEW"),
        ] {
            let views: Vec<String> = job
                .manifest
                .toc
                .iter()
                .filter(|e| e.kind == kind && job.scope.why(e) == Some(Why::Requested))
                .map(|e| {
                    quoted(
                        job.scope
                            .target_schema_of(e.schema.as_deref().unwrap_or_default()),
                        &e.name,
                    )
                })
                .collect();
            if !views.is_empty() {
                let sql = format!("DROP {what} IF EXISTS {}", views.join(", "));
                self.exec.runner.run(
                    views.join(", "),
                    kind.as_str(),
                    Action::Drop,
                    Tolerate::Nothing,
                    sql_step(sql),
                )?;
            }
        }
        let sql = format!("DROP TABLE IF EXISTS {}", drop.join(", "));
        self.exec.runner.run(
            drop.join(", "),
            "table",
            Action::Drop,
            Tolerate::Nothing,
            sql_step(sql),
        )?;
        Ok(())
    }
}

/// The tables (quoted names) whose every step succeeded and that received rows.
pub fn loaded_tables(job: &Job, out: &[Row]) -> Vec<String> {
    // A set, not a search of every row for every table: 10,000 tables make 30,000 rows.
    let loaded: HashSet<&str> = out
        .iter()
        .filter(|r| r.loaded_rows())
        .map(|r| r.object.as_str())
        .collect();
    job.plan
        .tables
        .iter()
        .filter(|t| t.action.loads_data())
        .filter(|t| loaded.contains(t.object().as_str()))
        .map(|t| quoted(&t.schema, &t.name))
        .collect()
}

/// A dry run's row for each entry: what would happen, changing nothing.
struct DryRun<'j, 'a> {
    job: &'j Job<'a>,
    /// Rows of each table's data, by its name in the backup.
    rows_of: HashMap<(String, String), u64>,
    /// Rows of extension configuration tables.
    config_rows: HashMap<(String, String), u64>,
}

impl<'j, 'a> DryRun<'j, 'a> {
    fn new(job: &'j Job<'a>) -> Self {
        let this = job;
        let rows_of: HashMap<(String, String), u64> = this
            .manifest
            .files
            .iter()
            .filter(|f| f.kind.is_none())
            .map(|f| ((f.schema.clone(), f.table.clone()), f.rows))
            .chain(
                this.manifest
                    .script_tables
                    .iter()
                    .filter(|b| b.kind.is_none())
                    .map(|b| ((b.schema.clone(), b.table.clone()), b.rows)),
            )
            // A split table's parts add up.
            .fold(HashMap::new(), |mut acc, (k, n)| {
                *acc.entry(k).or_insert(0) += n;
                acc
            });
        // Rows of extension configuration tables.
        let config_rows: HashMap<(String, String), u64> = this
            .manifest
            .files
            .iter()
            .filter(|f| f.is_extension_data())
            .map(|f| ((f.schema.clone(), f.table.clone()), f.rows))
            .chain(
                this.manifest
                    .script_tables
                    .iter()
                    .filter(|b| b.kind == Some(FileKind::ExtensionData))
                    .map(|b| ((b.schema.clone(), b.table.clone()), b.rows)),
            )
            .collect();
        DryRun {
            job,
            rows_of,
            config_rows,
        }
    }

    fn row(&self, decider: &Decider, e: &TocEntry) -> Result<Option<Row>> {
        let job = self.job;
        let object = job.object(e);
        let kind = e.kind.as_str();
        let planned = |action: Action| Row::new(object.clone(), kind, action, Status::Planned);
        Ok(Some(match decider.decide(e, true)? {
            Decision::Quiet if e.kind == EntryKind::Table => {
                match job.plan.of_entry(e).filter(|_| !job.opts.data_only) {
                    Some(t) => planned(t.action.into()),
                    None => return Ok(None),
                }
            }
            Decision::Quiet => return Ok(None),
            Decision::Skip { status, detail } => {
                let status = if status == Status::Ok {
                    Status::Planned
                } else {
                    status
                };
                Row::new(object, kind, Action::Skip, status).detail(detail)
            }
            Decision::Run { .. } if e.kind == EntryKind::ExtensionData && e.sql.is_empty() => {
                let (schema, name) = (e.schema.clone().unwrap_or_default(), e.name.clone());
                let ext = data::config_entries(job, &schema, &name).and_then(|x| x.1);
                match data::config_decision(ext, &decider.preexisting, job.opts.existing) {
                    data::ConfigLoad::Load { append } => {
                        planned(if append { Action::Append } else { Action::Load })
                            .rows(self.config_rows.get(&(schema, name)).map(|r| *r as i64))
                    }
                    data::ConfigLoad::Keep(why) => {
                        Row::new(object, kind, Action::Skip, Status::Warning).detail(why)
                    }
                }
            }
            Decision::Run { action, .. } => match e.kind {
                EntryKind::TableData => {
                    let loads = e
                        .relation()
                        .and_then(|(s, n)| job.plan.of(&s, &n))
                        .is_some_and(|t| t.action.loads_data());
                    if loads {
                        planned(Action::Load).rows(
                            e.relation()
                                .and_then(|r| self.rows_of.get(&r))
                                .map(|r| *r as i64),
                        )
                    } else {
                        planned(Action::Skip)
                    }
                }
                EntryKind::Table => planned(
                    job.plan
                        .of_entry(e)
                        .map(|t| t.action.into())
                        .unwrap_or(action),
                ),
                _ => planned(action),
            },
        }))
    }
}
