//! Which objects of a backup a restore touches, and under which names.
//!
//! A full restore takes everything. `tables` / `schemas` take those tables (or every table of
//! those schemas) with what they need: their schema, the types, collations and functions of
//! that schema, their sequences, indexes, constraints, triggers, policies, comments, owners and
//! grants; `schemas` also takes the schema's views. `target_schema` moves the restored relations
//! of one schema into another (see `retarget`).

use std::collections::HashSet;

use pgrx::spi::quote_identifier;

use super::plan;
use super::retarget::Retarget;
use crate::archive::manifest::{DdlItem, Manifest};
use crate::error::{BackupError, Result};

pub struct Scope {
    pub full: bool,
    /// Relations restored, by their name in the backup: (schema, name).
    relations: HashSet<(String, String)>,
    /// The same, as quoted `schema.name` (the form of `DdlItem::table`).
    quoted: HashSet<String>,
    /// Schemas whose objects (types, functions ...) come along.
    schemas: HashSet<String>,
    /// `(from, to)` when target_schema is given.
    pub target: Option<(String, String)>,
    retarget: Option<Retarget>,
}

pub fn quoted(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_identifier(schema), quote_identifier(name))
}

/// Tables of the backup: those it defines and those it only has data for.
pub fn backup_tables(m: &Manifest) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = m
        .pre_data
        .iter()
        .filter(|i| i.kind == "table")
        .map(|i| (i.schema.clone().unwrap_or_default(), i.name.clone()))
        .collect();
    for t in m.data_tables() {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

fn is_relation(kind: &str) -> bool {
    matches!(kind, "table" | "view" | "materialized_view" | "sequence")
}

impl Scope {
    pub fn build(
        m: &Manifest,
        tables: Option<&[String]>,
        schemas: Option<&[String]>,
        target_schema: Option<&str>,
    ) -> Result<Scope> {
        let all_tables = backup_tables(m);
        let full = tables.is_none() && schemas.is_none();
        let backup_schemas: HashSet<String> = m
            .pre_data
            .iter()
            .filter(|i| i.kind == "schema")
            .map(|i| i.name.clone())
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
        let mut relations: HashSet<(String, String)> = HashSet::new();
        if full {
            relations.extend(all_tables.iter().cloned());
            relations.extend(
                m.pre_data
                    .iter()
                    .filter(|i| is_relation(&i.kind))
                    .map(|i| (i.schema.clone().unwrap_or_default(), i.name.clone())),
            );
        } else {
            relations.extend(plan::resolve_tables(
                &all_tables,
                tables.unwrap_or_default(),
            )?);
            relations.extend(
                all_tables
                    .iter()
                    .filter(|t| wanted_schemas.contains(&t.0))
                    .cloned(),
            );
            // A partitioned or parent table comes with its partitions and children, down.
            loop {
                let names: HashSet<String> = relations.iter().map(|(s, n)| quoted(s, n)).collect();
                let children: Vec<(String, String)> = m
                    .pre_data
                    .iter()
                    .filter(|i| {
                        i.kind == "table"
                            && i.references.as_ref().is_some_and(|p| names.contains(p))
                    })
                    .map(|i| (i.schema.clone().unwrap_or_default(), i.name.clone()))
                    .filter(|t| !relations.contains(t))
                    .collect();
                if children.is_empty() {
                    break;
                }
                relations.extend(children);
            }
            let table_names: HashSet<String> =
                relations.iter().map(|(s, n)| quoted(s, n)).collect();
            for i in m.pre_data.iter().filter(|i| is_relation(&i.kind)) {
                let schema = i.schema.clone().unwrap_or_default();
                let in_schema = wanted_schemas.contains(&schema);
                let owned = i.kind == "sequence"
                    && i.table.as_ref().is_some_and(|t| table_names.contains(t));
                if in_schema || owned {
                    relations.insert((schema, i.name.clone()));
                }
            }
        }
        let quoted_names: HashSet<String> = relations.iter().map(|(s, n)| quoted(s, n)).collect();
        let mut needed: HashSet<String> = if full { backup_schemas } else { wanted_schemas };
        needed.extend(relations.iter().map(|r| r.0.clone()));

        let (target, retarget) = match target_schema {
            None => (None, None),
            Some(to) => {
                if to.is_empty() || to.chars().any(|c| c == '\\' || c.is_control()) {
                    return Err(BackupError::invalid(format!(
                        "invalid target_schema \"{}\"",
                        to.escape_default()
                    ))
                    .with_hint("Use a schema name without backslashes or control characters."));
                }
                let from: HashSet<&String> = relations.iter().map(|r| &r.0).collect();
                let [from] = from.into_iter().collect::<Vec<_>>()[..] else {
                    return Err(BackupError::invalid(
                        "target_schema needs a restore of tables from one schema",
                    )
                    .with_hint("Pick them with tables => '{s.a, s.b}' or schemas => '{s}'."));
                };
                // Identity sequences have no DDL of their own but appear in setval calls.
                let mut names: Vec<String> = relations.iter().map(|r| r.1.clone()).collect();
                names.extend(
                    m.post_data
                        .iter()
                        .filter(|i| {
                            i.kind == "sequence_set"
                                && i.table.as_ref().is_some_and(|t| quoted_names.contains(t))
                        })
                        .map(|i| i.name.clone()),
                );
                let pairs = names
                    .iter()
                    .map(|n| (quoted(from, n), quoted(to, n)))
                    .collect();
                (
                    Some((from.clone(), to.to_string())),
                    Some(Retarget::new(pairs)),
                )
            }
        };
        Ok(Scope {
            full,
            relations,
            quoted: quoted_names,
            schemas: needed,
            target,
            retarget,
        })
    }

    /// Whether `item` is part of this restore.
    pub fn wants(&self, item: &DdlItem) -> bool {
        let schema = item.schema.clone().unwrap_or_default();
        match item.kind.as_str() {
            k if is_relation(k) => self.relations.contains(&(schema, item.name.clone())),
            "large_object" => self.full,
            "extension" => true,
            "schema" => self.schemas.contains(&item.name),
            "sequence_set" if item.table.is_none() => {
                self.relations.contains(&(schema, item.name.clone()))
            }
            _ => match (&item.table, &item.schema) {
                (Some(t), _) => self.quoted.contains(t),
                (None, Some(s)) => self.schemas.contains(s),
                // Large object owners.
                (None, None) => self.full,
            },
        }
    }

    /// Whether the quoted name `t` (as in the backup) is restored.
    pub fn restores(&self, t: &str) -> bool {
        self.quoted.contains(t)
    }

    /// The SQL to run for `item`, moved to target_schema if asked.
    pub fn sql(&self, item: &DdlItem) -> String {
        match &self.retarget {
            Some(r) => r.apply(&item.sql),
            None => item.sql.clone(),
        }
    }

    /// The schema a restored relation of `schema` lands in.
    pub fn target_schema_of<'a>(&'a self, schema: &'a str) -> &'a str {
        match &self.target {
            Some((from, to)) if from == schema => to,
            _ => schema,
        }
    }

    /// Tables (with data or DDL) that this restore takes, by their name in the backup.
    pub fn tables(&self, m: &Manifest) -> Vec<(String, String)> {
        backup_tables(m)
            .into_iter()
            .filter(|t| self.relations.contains(t))
            .collect()
    }
}
