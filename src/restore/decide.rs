//! The decision about each TOC entry of a restore, just before it would run: left out quietly
//! (not this restore's business), skipped with a row saying why (a superuser's object for an
//! operator, a foreign key to a table neither restored nor present, what follows an object
//! that failed), or run (create, advance) with the errors it may tolerate. Decisions depend on
//! what happened to earlier entries (`outcomes`), which the serial walk and the parallel leader
//! record as entries finish.

use std::collections::{HashMap, HashSet};

use pgrx::prelude::*;

use super::data::{config_decision, ConfigLoad};
use super::entry::Executor;
use super::job::Job;
use super::plan::Action as TableAction;
use super::policy::{
    left_out_by_options, superuser_only, tolerated, warns_of_missing_roles, Decision, Outcome,
    Tolerate,
};
use super::result::{Action, Row, Status};
use super::scope::{quoted, Why};
use super::step::Runner;
use crate::archive::toc::{EntryKind, TocEntry};
use crate::error::Result;

/// The walk's memory of what happened to the entries so far, and the facts decisions read.
pub struct Decider<'j, 'a> {
    pub job: &'j Job<'a>,
    /// What happened to each entry that ran (or was settled).
    outcomes: HashMap<u32, Outcome>,
    /// Extensions the database had before this restore: their configuration rows are kept
    /// (see data::config_decision).
    pub preexisting: HashSet<String>,
}

impl<'j, 'a> Decider<'j, 'a> {
    pub fn new(job: &'j Job<'a>) -> Result<Self> {
        Ok(Decider {
            job,
            outcomes: HashMap::new(),
            preexisting: preexisting_extensions()?,
        })
    }

    /// Decide about each of `entries` in turn and run what is to run (the serial walk of a
    /// pass; also the parallel leader's when no job worker could start).
    pub fn run_entries(
        &mut self,
        exec: &mut Executor<'_, 'a>,
        entries: &[&'a TocEntry],
    ) -> Result<()> {
        for &e in entries {
            pgrx::check_for_interrupts!();
            if let Some((action, tolerate)) = self.settle(e, &mut exec.runner)? {
                let outcome = exec.run(e, action, tolerate)?;
                self.record(e.id, outcome);
            }
        }
        Ok(())
    }

    /// What happened to entry `id` (it ran here or in a job worker).
    pub fn record(&mut self, id: u32, outcome: Outcome) {
        self.outcomes.insert(id, outcome);
    }

    /// A grant entry of a format-2 archive that decorates no object of the backup: the
    /// database's own grants and grants on system objects (pg_catalog, built-in languages).
    /// The caller owns neither, so only a superuser applies them: run by the extension owner
    /// for anyone else they would grant what the caller could not (say SELECT on
    /// pg_catalog.pg_authid, or CREATE on the database restored into).
    fn unattached_grant(&self, e: &TocEntry) -> bool {
        e.kind == EntryKind::Acl && e.belongs_to.is_none() && self.job.manifest.format_version >= 2
    }

    /// Foreign keys and other entries that need a relation neither restored nor present.
    fn dangling(&self, e: &TocEntry) -> Result<Option<String>> {
        if e.kind != EntryKind::ForeignKey {
            return Ok(None);
        }
        for d in &e.deps {
            let Some(dep) = self.job.entry(*d) else {
                continue;
            };
            if !dep.kind.is_relation() || self.job.scope.entries.contains_key(d) {
                continue;
            }
            let schema = dep.schema.as_deref().unwrap_or_default();
            let name = quoted(self.job.scope.target_schema_of(schema), &dep.name);
            if !relation_exists(&name)? {
                return Ok(Some(format!(
                    "references {}, which is neither restored nor present",
                    quoted(schema, &dep.name)
                )));
            }
        }
        Ok(None)
    }

    pub fn decide(&self, e: &TocEntry, dry_run: bool) -> Result<Decision> {
        let opts = self.job.opts;
        let Some(why) = self.job.scope.why(e) else {
            return Ok(Decision::Quiet);
        };
        if left_out_by_options(e, opts.schema_only, opts.data_only) {
            return Ok(Decision::Quiet);
        }
        if !self.job.restorer.superuser && (superuser_only(e) || self.unattached_grant(e)) {
            // These act beyond objects the caller could own (every session's DDL, the whole
            // database, the system catalogs): the extension owner must not apply them for an
            // operator.
            return Ok(Decision::Skip {
                status: Status::Warning,
                detail: format!(
                    "only a superuser restores {}; restore it as a superuser or recreate it by hand",
                    e.describe()
                ),
            });
        }
        // A schema that already exists is "created" again (CREATE SCHEMA IF NOT EXISTS) and
        // keeps its owner unless the caller acts as it; its grants, comment and labels are
        // that owner's business too: an operator with CREATE on another role's schema must
        // not rewrite its grants through a backup that says otherwise.
        if e.kind.is_decoration() && !self.job.restorer.superuser {
            if let Some(b) = e
                .belongs_to
                .and_then(|b| self.job.entry(b))
                .filter(|b| b.kind == EntryKind::Schema)
            {
                let owner = crate::query::one::<pg_sys::Oid>(
                    "SELECT (SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = $1)",
                    &[b.name.clone().into()],
                )?;
                if owner.is_some_and(|o| !self.job.restorer.acts_as(o)) {
                    // Kept as it is, like any object the restore keeps.
                    return Ok(Decision::Skip {
                        status: Status::Ok,
                        detail: format!(
                            "schema {} exists and belongs to another role: its {} is left as it is",
                            b.name,
                            e.kind.as_str()
                        ),
                    });
                }
            }
        }
        if !self.job.restorer.superuser
            && e.kind == EntryKind::Acl
            && e.belongs_to
                .and_then(|b| self.job.entry(b))
                .is_some_and(|b| b.kind == EntryKind::Extension)
        {
            // Grants on an extension's own objects (changed since CREATE EXTENSION): they
            // belong to the extension's owner, a superuser.
            return Ok(Decision::Skip {
                status: Status::Warning,
                detail: format!(
                    "only a superuser restores {}; restore it as a superuser or grant it by hand",
                    e.describe()
                ),
            });
        }
        if !self.job.restorer.superuser
            && e.kind.is_decoration()
            && e.belongs_to
                .and_then(|b| self.job.entry(b))
                .is_some_and(superuser_only)
        {
            // Goes with its object, which is reported.
            return Ok(Decision::Quiet);
        }
        // A table asked for: what `existing` says.
        if matches!(e.kind, EntryKind::Table | EntryKind::ForeignTable) && why == Why::Requested {
            return Ok(match self.job.plan.of_entry(e) {
                Some(t) if t.action.runs_ddl() => Decision::Run {
                    action: Action::Create,
                    tolerate: Tolerate::Nothing,
                },
                _ => Decision::Quiet,
            });
        }
        if e.kind.is_relation() && why == Why::Dependency {
            let schema = e.schema.as_deref().unwrap_or_default();
            let name = quoted(self.job.scope.target_schema_of(schema), &e.name);
            return Ok(if relation_exists(&name)? {
                Decision::Skip {
                    status: Status::Ok,
                    detail: "already exists".into(),
                }
            } else {
                Decision::Run {
                    action: Action::Create,
                    tolerate: Tolerate::Nothing,
                }
            });
        }
        if let Some(why) = self.dangling(e)? {
            return Ok(Decision::Skip {
                status: Status::Warning,
                detail: why,
            });
        }
        if e.kind == EntryKind::ExtensionData && !e.sql.is_empty() {
            // An extension's configuration sequence: set with its rows; after rows appended
            // to a configuration the database had, only ever moved forward.
            let ext = e
                .belongs_to
                .and_then(|b| self.job.entry(b))
                .filter(|b| b.kind == EntryKind::Extension);
            return Ok(
                match config_decision(ext, &self.preexisting, opts.existing) {
                    ConfigLoad::Load { append: false } => Decision::Run {
                        action: Action::Create,
                        tolerate: Tolerate::Nothing,
                    },
                    ConfigLoad::Load { append: true } => Decision::Run {
                        action: Action::Advance,
                        tolerate: Tolerate::Nothing,
                    },
                    ConfigLoad::Keep(_) => Decision::Quiet,
                },
            );
        }
        if let Some(b) = e.belongs_to.and_then(|b| self.job.entry(b)) {
            // What belongs to a table follows the table: kept tables keep their indexes,
            // constraints ...; a sequence value is set only where the rows were replaced.
            if let Some(t) = self
                .job
                .plan
                .of_entry(b)
                .filter(|_| matches!(b.kind, EntryKind::Table | EntryKind::ForeignTable))
            {
                let go = match e.kind {
                    EntryKind::SequenceSet => {
                        !matches!(t.action, TableAction::Skip | TableAction::Append)
                    }
                    EntryKind::TableData => t.action.loads_data(),
                    _ => t.action.runs_ddl(),
                };
                if !go {
                    return Ok(Decision::Quiet);
                }
            } else if !dry_run {
                // Anything else follows its object: not if the object was kept or failed.
                match self.outcomes.get(&b.id) {
                    Some(Outcome::Created) => {}
                    Some(Outcome::Failed) => {
                        return Ok(Decision::Skip {
                            status: Status::Failed,
                            detail: format!("{} was not restored", b.describe()),
                        })
                    }
                    Some(Outcome::Kept) => return Ok(Decision::Quiet),
                    None if self.job.scope.why(b).is_none() => {}
                    None => return Ok(Decision::Quiet),
                }
            }
        }
        Ok(Decision::Run {
            action: Action::Create,
            tolerate: tolerated(e),
        })
    }

    /// Decide about an entry: what it needs run (action, tolerate), or None when the decision
    /// settled it (a row noted, or nothing to do).
    pub fn settle(
        &mut self,
        e: &TocEntry,
        runner: &mut Runner,
    ) -> Result<Option<(Action, Tolerate)>> {
        match self.decide(e, false)? {
            Decision::Quiet => Ok(None),
            Decision::Skip { status, detail } => {
                if status == Status::Failed {
                    self.outcomes.insert(e.id, Outcome::Failed);
                }
                let object = self.job.object(e);
                runner.note(Row::new(object, e.kind.as_str(), Action::Skip, status).detail(detail));
                Ok(None)
            }
            Decision::Run { action, tolerate } => {
                if e.sql.is_empty() {
                    self.outcomes.insert(e.id, Outcome::Created);
                    return Ok(None);
                }
                let tolerate = if warns_of_missing_roles(e.kind) {
                    Tolerate::MissingRole
                } else {
                    tolerate
                };
                Ok(Some((action, tolerate)))
            }
        }
    }
}

/// The extensions of this database now (before the restore creates any). Read-only (a dry
/// run plans on a hot standby).
pub fn preexisting_extensions() -> Result<HashSet<String>> {
    Ok(crate::query::one::<Vec<crate::text::Text>>(
        "SELECT COALESCE(pg_catalog.array_agg(extname::pg_catalog.text), '{}') FROM pg_catalog.pg_extension",
        &[],
    )?
    .unwrap_or_default()
    .into_iter()
    .map(String::from)
    .collect())
}

fn relation_exists(quoted_name: &str) -> Result<bool> {
    Ok(crate::query::one::<bool>(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[crate::text::arg(quoted_name)],
    )?
    .unwrap_or(false))
}
