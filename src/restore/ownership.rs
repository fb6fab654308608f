//! Who owns what in a format-1 archive, so that every object restore creates gets its owner
//! (and its grants) right after it is created, before any code can run on it: a SECURITY
//! DEFINER function, a view or a table must never be the extension owner's while rows load.
//!
//! Format 1 keeps owners as `ALTER <type> <ident> OWNER TO <role>;` items and grants as
//! `REVOKE ALL ON <type> <ident> FROM PUBLIC; ...` items in post-data. They are matched to
//! the pre-data items they belong to by the statement's identifier; functions, whose
//! pre-data name carries argument names, by their order within their schema (both lists are
//! written in pg_proc oid order with the same filter). Format-2 archives carry the owner in
//! each TOC entry and do not need this.

use std::collections::{HashMap, HashSet};

use pgrx::spi::quote_identifier;

use super::scope::quoted;
use crate::archive::manifest::{DdlItem, Manifest};
use crate::security::privileges::parse_owner_statement;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Schema,
    Relation,
    Routine,
    Type,
    LargeObject,
}

fn class_of(objtype: &str) -> Option<Class> {
    Some(match objtype {
        "SCHEMA" => Class::Schema,
        "TABLE" | "VIEW" | "MATERIALIZED VIEW" | "SEQUENCE" | "FOREIGN TABLE" => Class::Relation,
        "ROUTINE" | "FUNCTION" | "PROCEDURE" | "AGGREGATE" => Class::Routine,
        "TYPE" | "DOMAIN" => Class::Type,
        "LARGE OBJECT" => Class::LargeObject,
        _ => return None,
    })
}

pub type Key = (Class, String);

/// `REVOKE ALL ON <type> <ident> FROM PUBLIC; ...`: the object of a grant item.
fn acl_key(item: &DdlItem) -> Option<Key> {
    let rest = item.sql.trim_start().strip_prefix("REVOKE ALL ON ")?;
    let (head, _) = rest.split_once(" FROM PUBLIC;")?;
    [
        "MATERIALIZED VIEW",
        "SEQUENCE",
        "TABLE",
        "SCHEMA",
        "ROUTINE",
        "FUNCTION",
        "PROCEDURE",
        "DOMAIN",
        "TYPE",
        "LARGE OBJECT",
    ]
    .iter()
    .find_map(|t| {
        let ident = head.strip_prefix(&format!("{t} "))?;
        Some((class_of(t)?, ident.to_string()))
    })
}

pub struct Ownership<'m> {
    owners: HashMap<Key, &'m DdlItem>,
    acls: HashMap<Key, Vec<&'m DdlItem>>,
    routine_keys: HashMap<*const DdlItem, Key>,
    /// Owner and grant items that belong to a pre-data object: applied (or deliberately
    /// not applied) when that object is handled, never again in post-data.
    mapped: HashSet<*const DdlItem>,
}

impl<'m> Ownership<'m> {
    pub fn build(m: &'m Manifest) -> Ownership<'m> {
        let mut owners = HashMap::new();
        let mut routine_owners: HashMap<String, Vec<&'m DdlItem>> = HashMap::new();
        for item in m.post_data.iter().filter(|i| i.kind == "owner") {
            let Some(s) = parse_owner_statement(&item.sql) else {
                continue;
            };
            let Some(class) = class_of(&s.objtype) else {
                continue;
            };
            if class == Class::Routine {
                routine_owners
                    .entry(item.schema.clone().unwrap_or_default())
                    .or_default()
                    .push(item);
            }
            owners.insert((class, s.ident), item);
        }
        let mut acls: HashMap<Key, Vec<&'m DdlItem>> = HashMap::new();
        for item in m.post_data.iter().filter(|i| i.kind == "acl") {
            let key = match (&item.table, acl_key(item)) {
                (_, Some(k)) => k,
                // Column grants: `GRANT p (col) ON TABLE ...`, the table's.
                (Some(t), None) => (Class::Relation, t.clone()),
                (None, None) => continue,
            };
            acls.entry(key).or_default().push(item);
        }
        let mut routine_keys = HashMap::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for f in m
            .pre_data
            .iter()
            .filter(|i| matches!(i.kind.as_str(), "function" | "procedure"))
        {
            let schema = f.schema.clone().unwrap_or_default();
            let n = seen.entry(schema.clone()).or_default();
            if let Some(owner) = routine_owners.get(&schema).and_then(|v| v.get(*n)) {
                if let Some(s) = parse_owner_statement(&owner.sql) {
                    routine_keys.insert(f as *const DdlItem, (Class::Routine, s.ident));
                }
            }
            *n += 1;
        }
        let mut o = Ownership {
            owners,
            acls,
            routine_keys,
            mapped: HashSet::new(),
        };
        let keys: Vec<Key> = m.pre_data.iter().filter_map(|i| o.key_of(i)).collect();
        for k in keys {
            if let Some(i) = o.owners.get(&k) {
                o.mapped.insert(*i as *const DdlItem);
            }
            for i in o.acls.get(&k).into_iter().flatten() {
                o.mapped.insert(*i as *const DdlItem);
            }
        }
        o
    }

    /// The key of a pre-data item, if it is an object with an owner.
    pub fn key_of(&self, item: &DdlItem) -> Option<Key> {
        let schema = item.schema.as_deref().unwrap_or_default();
        Some(match item.kind.as_str() {
            "schema" => (Class::Schema, quote_identifier(&item.name)),
            "table" | "view" | "materialized_view" | "sequence" => {
                (Class::Relation, quoted(schema, &item.name))
            }
            "type" => (Class::Type, quoted(schema, &item.name)),
            "large_object" => (Class::LargeObject, item.name.clone()),
            "function" | "procedure" => self.routine_keys.get(&(item as *const DdlItem))?.clone(),
            _ => return None,
        })
    }

    /// The owner item of the object `key`.
    pub fn owner_item(&self, key: &Key) -> Option<&'m DdlItem> {
        self.owners.get(key).copied()
    }

    /// The role that owns `key` in the backup.
    pub fn backup_owner(&self, key: &Key) -> Option<String> {
        self.owner_item(key)
            .and_then(|i| parse_owner_statement(&i.sql))
            .map(|s| s.role)
    }

    pub fn acl_items(&self, key: &Key) -> &[&'m DdlItem] {
        self.acls.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// Whether a post-data owner/grant item is handled with its object instead.
    pub fn is_mapped(&self, item: &DdlItem) -> bool {
        self.mapped.contains(&(item as *const DdlItem))
    }

    /// Every owner statement of the backup, with its key.
    pub fn owner_items(&self) -> impl Iterator<Item = (&Key, &'m DdlItem)> {
        self.owners.iter().map(|(k, v)| (k, *v))
    }
}
