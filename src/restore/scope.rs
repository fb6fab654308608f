//! Which entries of a backup's TOC a restore takes, and under which names.
//!
//! A full restore takes every entry. `tables` / `schemas` take those relations (or every
//! object of those schemas), the entries that come with them (a table's partitions and
//! children, its owned sequences, indexes, constraints, triggers, policies, rows, comments
//! and grants), and the dependency closure they need (schemas, types, functions ...; a
//! relation needed only as a dependency is created if missing, without its rows). A foreign
//! key never pulls in the table it references: it is reported if that table is neither
//! restored nor present. `target_schema` moves the restored relations of one schema into
//! another (see `retarget`).

use std::collections::{HashMap, HashSet};

use pgrx::spi::quote_identifier;

use super::retarget::Retarget;
use crate::archive::manifest::Manifest;
use crate::archive::toc::{self, EntryKind, TocEntry};
use crate::error::{BackupError, Result};

/// Why an entry is part of the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Asked for (or part of what was asked for).
    Requested,
    /// Needed by what was asked for: created only if missing.
    Dependency,
}

pub struct Scope {
    pub full: bool,
    pub entries: HashMap<u32, Why>,
    /// `(from, to)` when target_schema is given.
    pub target: Option<(String, String)>,
    retarget: Option<Retarget>,
}

pub fn quoted(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_identifier(schema), quote_identifier(name))
}

/// Tables of the backup, by their name in it: those it defines and those it has rows for.
pub fn backup_tables(m: &Manifest) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = m
        .toc
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Table | EntryKind::ForeignTable))
        .map(|e| (e.schema.clone().unwrap_or_default(), e.name.clone()))
        .collect();
    for t in m.data_tables() {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    // Extensions' configuration tables, whose rows the backup holds: `tables` may name them.
    for e in m
        .toc
        .iter()
        .filter(|e| e.kind == EntryKind::ExtensionData && e.sql.is_empty())
    {
        let t = (e.schema.clone().unwrap_or_default(), e.name.clone());
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

impl Scope {
    pub fn build(
        m: &Manifest,
        tables: Option<&[String]>,
        schemas: Option<&[String]>,
        target_schema: Option<&str>,
    ) -> Result<Scope> {
        let toc = &m.toc;
        let full = tables.is_none() && schemas.is_none();
        let all_tables = backup_tables(m);
        let backup_schemas: HashSet<String> = toc
            .iter()
            .filter(|e| e.kind == EntryKind::Schema)
            .map(|e| e.name.clone())
            .chain(all_tables.iter().map(|t| t.0.clone()))
            .collect();
        let wanted_schemas: HashSet<String> = schemas.unwrap_or_default().iter().cloned().collect();
        for s in &wanted_schemas {
            if !backup_schemas.contains(s) {
                return Err(
                    BackupError::unknown(format!("schema \"{s}\" is not in this backup"))
                        .with_hint(
                            "Schema names are case-sensitive here, as stored in the backup.",
                        ),
                );
            }
        }
        let mut entries: HashMap<u32, Why> = HashMap::new();
        if full {
            entries.extend(toc.iter().map(|e| (e.id, Why::Requested)));
        } else {
            let asked: HashSet<(String, String)> =
                super::names::resolve_tables(&all_tables, tables.unwrap_or_default())?
                    .into_iter()
                    .collect();
            // The roots: the relations asked for, everything of the schemas asked for
            // (database-wide objects aside), and data entries of those tables.
            for e in toc {
                let in_schema = e
                    .schema
                    .as_ref()
                    .is_some_and(|s| wanted_schemas.contains(s))
                    && !e.kind.is_decoration();
                let is_asked = e.relation().is_some_and(|r| asked.contains(&r))
                    && (e.kind.is_relation()
                        || e.kind == EntryKind::TableData
                        || e.kind == EntryKind::ExtensionData);
                let is_schema = e.kind == EntryKind::Schema && wanted_schemas.contains(&e.name);
                // An extension's configuration rows belong to their extension, and are still
                // part of the schema they are in (as pg_restore -n takes them).
                let of_schema = in_schema
                    && (e.belongs_to.is_none()
                        || (e.kind == EntryKind::ExtensionData && e.sql.is_empty()));
                if of_schema || is_asked || is_schema {
                    entries.insert(e.id, Why::Requested);
                }
            }
            // What comes with them, down: partitions and children, owned sequences,
            // indexes, constraints, rows, comments, grants ... (to a fixed point).
            loop {
                let before = entries.len();
                for e in toc {
                    if let Some(b) = e.belongs_to {
                        if entries.get(&b) == Some(&Why::Requested) {
                            entries.insert(e.id, Why::Requested);
                        }
                    }
                }
                if entries.len() == before {
                    break;
                }
            }
            // What they need, up: created if missing.
            let index = toc::by_id(toc);
            let mut stack: Vec<u32> = entries.keys().copied().collect();
            while let Some(id) = stack.pop() {
                let e = &toc[index[&id]];
                for d in &e.deps {
                    let Some(&j) = index.get(d) else { continue };
                    let dep = &toc[j];
                    // A foreign key's referenced table (and its key) is reported, not
                    // brought in.
                    if e.kind == EntryKind::ForeignKey
                        && (dep.kind.is_relation()
                            || dep.belongs_to.is_some_and(|b| Some(b) != e.belongs_to))
                    {
                        continue;
                    }
                    if !entries.contains_key(d) {
                        entries.insert(*d, Why::Dependency);
                        stack.push(*d);
                    }
                }
            }
        }

        let (target, retarget) = match target_schema {
            None => (None, None),
            Some(to) => {
                if to.is_empty() || to.chars().any(|c| c == '\\' || c.is_control()) {
                    return Err(BackupError::invalid(format!(
                        "invalid target_schema \"{}\"",
                        to.escape_debug()
                    ))
                    .with_hint("Use a schema name without backslashes or control characters."));
                }
                let restored: Vec<&TocEntry> = toc
                    .iter()
                    .filter(|e| entries.get(&e.id) == Some(&Why::Requested))
                    .filter(|e| e.kind.is_relation() || e.kind == EntryKind::TableData)
                    .collect();
                let from: HashSet<&str> = restored
                    .iter()
                    .filter_map(|e| e.schema.as_deref())
                    .collect();
                let [from] = from.into_iter().collect::<Vec<_>>()[..] else {
                    return Err(BackupError::invalid(
                        "target_schema needs a restore of tables from one schema",
                    )
                    .with_hint("Pick them with tables => '{s.a, s.b}' or schemas => '{s}'."));
                };
                // Identity sequences have no entry of their own but appear in setval calls.
                let mut names: HashSet<String> = restored.iter().map(|e| e.name.clone()).collect();
                names.extend(
                    toc.iter()
                        .filter(|e| {
                            e.kind == EntryKind::SequenceSet
                                && entries.get(&e.id) == Some(&Why::Requested)
                                && e.schema.as_deref() == Some(from)
                        })
                        .map(|e| e.name.clone()),
                );
                let pairs = names
                    .iter()
                    .map(|n| (quoted(from, n), quoted(to, n)))
                    .collect();
                (
                    Some((from.to_string(), to.to_string())),
                    Some(Retarget::new(pairs)),
                )
            }
        };
        Ok(Scope {
            full,
            entries,
            target,
            retarget,
        })
    }

    pub fn why(&self, e: &TocEntry) -> Option<Why> {
        self.entries.get(&e.id).copied()
    }

    /// The SQL to run for `e`, moved to target_schema if asked.
    pub fn sql(&self, text: &str) -> String {
        match &self.retarget {
            Some(r) => r.apply(text),
            None => text.to_string(),
        }
    }

    /// With target_schema, for an entry of the schema the relations move from: the schema
    /// they move to (its statements may name either).
    pub fn moved_to(&self, e: &TocEntry) -> Option<&str> {
        match &self.target {
            Some((from, to)) if e.schema.as_deref() == Some(from.as_str()) => Some(to),
            _ => None,
        }
    }

    /// The schema a restored relation of `schema` lands in.
    pub fn target_schema_of<'a>(&'a self, schema: &'a str) -> &'a str {
        match &self.target {
            Some((from, to)) if from == schema => to,
            _ => schema,
        }
    }

    /// Tables (with rows or a definition) that this restore takes as asked, by their name in
    /// the backup.
    pub fn tables(&self, m: &Manifest) -> Vec<(String, String)> {
        let wanted: HashSet<(String, String)> = m
            .toc
            .iter()
            .filter(|e| self.why(e) == Some(Why::Requested))
            .filter(|e| {
                matches!(
                    e.kind,
                    EntryKind::Table | EntryKind::ForeignTable | EntryKind::TableData
                )
            })
            .filter_map(|e| e.relation())
            .collect();
        backup_tables(m)
            .into_iter()
            .filter(|t| wanted.contains(t))
            .collect()
    }
}
