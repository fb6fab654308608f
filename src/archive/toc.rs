//! The table of contents (TOC) of a backup, as in pg_dump's archiver: one entry per object,
//! with a stable id, its kind, section, owner, the ids it depends on and its SQL. Entries are
//! stored in restore order (the order `ddl::graph` sorted them into); a restore walks them.
//!
//! Plain Rust (serde), unit-tested without a server. Archives of format 1 (0.1.0) carried two
//! ordered lists of DDL items instead; `from_v1` turns them into a TOC on read.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::facts::{self, Facts};
pub use super::kind::{EntryKind, Section};
use super::statistics::RelationStatistics;

/// The passes of a restore, in order, as pg_restore runs them: the sections, then the grants,
/// then what must see the final grants (event triggers, materialized view refreshes), and
/// sequence values last (setval is not undone by a rollback, so it follows everything that
/// could still fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pass {
    PreData,
    Data,
    PostData,
    Acl,
    PostAcl,
    SequenceValues,
}

pub const PASSES: [Pass; 6] = [
    Pass::PreData,
    Pass::Data,
    Pass::PostData,
    Pass::Acl,
    Pass::PostAcl,
    Pass::SequenceValues,
];

/// One object of the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TocEntry {
    /// Unique in the archive; `deps` refer to it.
    pub id: u32,
    pub kind: EntryKind,
    pub section: Section,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The object's name as pg_dump tags it: `t`, `f(integer)`, `TABLE t` for a comment.
    pub name: String,
    /// For an entry that belongs to a relation (index, constraint, trigger, rule, policy,
    /// default, table data, a relation's comment or grant ...): that relation's name, in
    /// `schema`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The entry this one comes and goes with: a table's index, constraint, trigger, rows;
    /// a partition's or inheritance child's parent; an object's comment or grant; an owned
    /// sequence's table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub belongs_to: Option<u32>,
    /// Ids of the entries that must be restored before this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deps: Vec<u32>,
    /// The statements that create the object (empty for data entries).
    pub sql: String,
    /// `ALTER ... OWNER TO ...`, run after `sql`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_sql: Option<String>,
    /// The tablespace a relation or index is created in when it is not the database's
    /// default one (pg_dump's per-entry tablespace): restore sets `default_tablespace` to it
    /// for the entry's statements. None: the database's default tablespace (or an entry that
    /// creates no storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablespace: Option<String>,
    /// A table whose creation evaluates only PostgreSQL's built-in code (issue 16): its stored
    /// generated columns' and partition key's expressions, which CREATE TABLE and ATTACH
    /// PARTITION plan (calling immutable functions with constant arguments), use no function,
    /// operator, operator class, type or collation made after initdb. A superuser's restore
    /// creates such a table itself, as pg_restore does, so that no privilege the owner gets
    /// only in the grants pass is missing; other tables with such expressions are created as
    /// their owner. False in archives that do not say (earlier releases).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub builtin_code_only: bool,
    /// What collect knew about the object (a partition, what its CREATE evaluates, which
    /// constraint or type it makes): restore decides by these, never by the SQL text.
    /// Archives without them (the manifest's `toc_facts` absent) get them on read
    /// (`facts::derive`).
    #[serde(default, skip_serializing_if = "Facts::is_empty")]
    pub facts: Facts,
    /// A `StatisticsData` entry's statistics (issue 19); None for every other kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<RelationStatistics>,
}

impl TocEntry {
    /// `schema.name` as people read it (result rows, messages).
    pub fn object(&self) -> String {
        match &self.schema {
            // A decoration's name is the object it decorates, already qualified.
            Some(s) if !self.kind.is_decoration() => format!("{s}.{}", self.name),
            _ => self.name.clone(),
        }
    }

    /// The restore pass this entry runs in.
    pub fn pass(&self) -> Pass {
        if self.kind == EntryKind::SequenceSet
            || (self.kind == EntryKind::ExtensionData && !self.sql.is_empty())
        {
            Pass::SequenceValues
        } else if self.kind.in_acl_pass() {
            Pass::Acl
        } else if self.kind.in_post_acl_pass() {
            Pass::PostAcl
        } else {
            match self.section {
                Section::PreData => Pass::PreData,
                Section::Data => Pass::Data,
                Section::PostData => Pass::PostData,
            }
        }
    }

    /// The statements of the entry: its SQL, then its owner.
    pub fn statements(&self) -> String {
        match &self.owner_sql {
            Some(o) if !self.sql.is_empty() => format!("{}\n{o}", self.sql),
            _ => self.sql.clone(),
        }
    }

    /// How the entry is named in errors: `TABLE public.t (TOC entry 12)`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} (TOC entry {})",
            self.kind.as_str().replace('_', " "),
            self.object(),
            self.id
        )
    }

    /// The relation this entry belongs to, if any: (schema, name).
    pub fn relation(&self) -> Option<(String, String)> {
        if self.kind.is_relation() {
            return Some((self.schema.clone().unwrap_or_default(), self.name.clone()));
        }
        self.table
            .as_ref()
            .map(|t| (self.schema.clone().unwrap_or_default(), t.clone()))
    }
}

/// Give every entry of a TOC read from an archive without facts the facts collect would
/// have set, from its kind and SQL (and, for a partition, the TOC around it).
pub fn derive_facts(toc: &mut [TocEntry]) {
    // Format 2 attaches a partition in an entry of its own.
    let attached: HashSet<(Option<String>, String)> = toc
        .iter()
        .filter(|e| e.kind == EntryKind::TableAttach)
        .map(|e| (e.schema.clone(), e.name.clone()))
        .collect();
    for e in toc.iter_mut() {
        let mut f = facts::of_sql(e.kind, &e.sql);
        if matches!(e.kind, EntryKind::Table | EntryKind::ForeignTable) {
            f.partition =
                f.created_as_partition || attached.contains(&(e.schema.clone(), e.name.clone()));
        }
        e.facts = f;
    }
}

/// Index of a TOC by id.
pub fn by_id(toc: &[TocEntry]) -> HashMap<u32, usize> {
    toc.iter().enumerate().map(|(i, e)| (e.id, i)).collect()
}

/// Everything `roots` need, transitively (their dependencies), roots included.
pub fn dependency_closure(toc: &[TocEntry], roots: &HashSet<u32>) -> HashSet<u32> {
    let index = by_id(toc);
    let mut out: HashSet<u32> = HashSet::new();
    let mut stack: Vec<u32> = roots.iter().copied().collect();
    while let Some(id) = stack.pop() {
        if !out.insert(id) {
            continue;
        }
        if let Some(&i) = index.get(&id) {
            stack.extend(toc[i].deps.iter().copied().filter(|d| !out.contains(d)));
        }
    }
    out
}

/// One item of a format-1 manifest's DDL lists (`pre_data`, `post_data`), read by [`from_v1`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DdlItem {
    /// `schema`, `type`, `table`, `index`, `constraint`, `sequence_set`, ...
    pub kind: String,
    pub schema: Option<String>,
    pub name: String,
    /// For objects that belong to a table (indexes, constraints, triggers): that table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    pub sql: String,
    /// For foreign keys: the table they reference; for tables: their parent (partitioned or
    /// inherited); as quoted `schema.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<String>,
}

/// Turn the two DDL lists of a format-1 manifest into a TOC in the same order. Format 1 kept
/// no dependencies; they are rebuilt from what it did keep: an entry that names a table
/// depends on it, a foreign key on the table it references, a child table on its parent,
/// everything on its schema, and a relation on the non-relation objects (types, functions,
/// collations) of its schema and on the extensions, which is what a 0.1.0 subset restore
/// brought along.
pub fn from_v1(pre_data: &[DdlItem], post_data: &[DdlItem]) -> Vec<TocEntry> {
    let quoted =
        |schema: &str, name: &str| format!("{}.{}", quote_ident(schema), quote_ident(name));
    let mut toc: Vec<TocEntry> = Vec::new();
    let mut relations: HashMap<String, u32> = HashMap::new();
    let mut schemas: HashMap<String, u32> = HashMap::new();
    let items = pre_data
        .iter()
        .map(|i| (i, Section::PreData))
        .chain(post_data.iter().map(|i| (i, Section::PostData)));
    for (n, (item, section)) in items.enumerate() {
        let kind = EntryKind::from_v1(&item.kind);
        let section = if kind == EntryKind::SequenceSet {
            Section::Data
        } else {
            section
        };
        let id = n as u32 + 1;
        let schema = item.schema.clone();
        if kind == EntryKind::Schema {
            schemas.insert(item.name.clone(), id);
        }
        if kind.is_relation() {
            relations.insert(
                quoted(schema.as_deref().unwrap_or_default(), &item.name),
                id,
            );
        }
        // `table` was quoted `schema.name`; entries keep the bare name in their schema.
        let table = item.table.as_ref().map(|t| unquote_last(t));
        toc.push(TocEntry {
            id,
            kind,
            section,
            schema,
            name: item.name.clone(),
            table,
            owner: None,
            belongs_to: None,
            deps: Vec::new(),
            sql: item.sql.clone(),
            owner_sql: None,
            tablespace: None,
            builtin_code_only: false,
            facts: Facts::default(),
            statistics: None,
        });
    }
    let shared: Vec<(Option<String>, u32, EntryKind)> = toc
        .iter()
        .filter(|e| {
            e.section == Section::PreData
                && !e.kind.is_relation()
                && e.table.is_none()
                && !matches!(e.kind, EntryKind::Schema | EntryKind::LargeObject)
        })
        .map(|e| (e.schema.clone(), e.id, e.kind))
        .collect();
    let v1 = pre_data.iter().chain(post_data.iter());
    for (e, item) in toc.iter_mut().zip(v1) {
        let mut deps = BTreeSet::new();
        if let Some(s) = e.schema.as_ref().and_then(|s| schemas.get(s)) {
            if *s != e.id {
                deps.insert(*s);
            }
        }
        for q in [&item.table, &item.references].into_iter().flatten() {
            if let Some(t) = relations.get(q) {
                if *t != e.id {
                    deps.insert(*t);
                }
            }
        }
        if e.kind.is_relation() {
            for (schema, id, kind) in &shared {
                if *id < e.id && (kind == &EntryKind::Extension || *schema == e.schema) {
                    deps.insert(*id);
                }
            }
        }
        e.deps = deps.into_iter().collect();
        // What the entry came with in 0.1.0's subsets: its table (a child: its parent).
        e.belongs_to = item
            .table
            .as_ref()
            .or(item
                .references
                .as_ref()
                .filter(|_| e.kind == EntryKind::Table))
            .and_then(|q| relations.get(q))
            .copied()
            .filter(|t| *t != e.id);
    }
    // A sequence value without a table is its sequence's; a schema-level decoration is its
    // object's (same schema and name).
    let named: HashMap<(Option<String>, String), u32> = toc
        .iter()
        .filter(|e| !e.kind.is_decoration() && e.kind != EntryKind::SequenceSet)
        .map(|e| ((e.schema.clone(), e.name.clone()), e.id))
        .collect();
    for e in toc.iter_mut().filter(|e| e.belongs_to.is_none()) {
        if e.kind == EntryKind::SequenceSet || e.kind.is_decoration() {
            e.belongs_to = named.get(&(e.schema.clone(), e.name.clone())).copied();
        }
    }
    attach_v1_owners(toc)
}

/// Format 1 kept every `ALTER ... OWNER TO` as a post-data item of its own, so a restore
/// created functions, views, types and tables as the extension owner and handed them over
/// only after the rows were loaded: a SECURITY DEFINER function (or a view) called while rows
/// load or indexes build would have run with the extension owner's rights (issue 9). Each
/// owner statement is moved onto its object's entry (`owner`, `owner_sql`), as format 2
/// writes them, so the restore gives the object its owner right after creating it. Large
/// objects keep their owner entries (as in format 2); a statement whose object is not found
/// stays an entry of its own.
fn attach_v1_owners(toc: Vec<TocEntry>) -> Vec<TocEntry> {
    use crate::security::privileges::parse_owner_statement;
    let mut toc = toc;
    // 0.1.0 wrote routines and their owner statements in the same order (both by oid, over
    // the same functions): the n-th ROUTINE statement is the n-th function's.
    let routines: Vec<usize> = toc
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.kind, EntryKind::Function | EntryKind::Procedure))
        .map(|(i, _)| i)
        .collect();
    let mut next_routine = 0;
    let mut attached: HashSet<u32> = HashSet::new();
    for i in 0..toc.len() {
        if toc[i].kind != EntryKind::Owner {
            continue;
        }
        let Some(st) = parse_owner_statement(&toc[i].sql) else {
            continue;
        };
        let (schema, name) = (toc[i].schema.clone(), toc[i].name.clone());
        let target = match st.objtype.as_str() {
            "SCHEMA" => toc
                .iter()
                .position(|e| e.kind == EntryKind::Schema && e.name == name),
            "TABLE" | "VIEW" | "MATERIALIZED VIEW" | "SEQUENCE" | "FOREIGN TABLE" => toc
                .iter()
                .position(|e| e.kind.is_relation() && e.schema == schema && e.name == name),
            "TYPE" | "DOMAIN" => toc.iter().position(|e| {
                matches!(e.kind, EntryKind::Type | EntryKind::Domain)
                    && e.schema == schema
                    && e.name == name
            }),
            "ROUTINE" | "FUNCTION" | "PROCEDURE" => {
                let by_order = routines.get(next_routine).copied().filter(|&r| {
                    toc[r].schema == schema && toc[r].name.starts_with(&format!("{name}("))
                });
                next_routine += 1;
                by_order.or_else(|| {
                    // Out of step: only an unambiguous name will do.
                    let same: Vec<usize> = routines
                        .iter()
                        .copied()
                        .filter(|&r| {
                            toc[r].schema == schema && toc[r].name.starts_with(&format!("{name}("))
                        })
                        .collect();
                    (same.len() == 1).then(|| same[0])
                })
            }
            _ => None,
        };
        let Some(t) = target.filter(|&t| toc[t].owner_sql.is_none()) else {
            continue;
        };
        let sql = toc[i].sql.clone();
        toc[t].owner = Some(st.role);
        toc[t].owner_sql = Some(sql);
        attached.insert(toc[i].id);
    }
    toc.retain(|e| !attached.contains(&e.id));
    // 0.1.0 wrote no owner statement for a sequence owned by a column (ALTER TABLE ... OWNER
    // took it along, at the end): it gets its table's owner, which OWNED BY requires once the
    // table has its owner at once.
    let owners: HashMap<u32, String> = toc
        .iter()
        .filter_map(|e| e.owner.clone().map(|o| (e.id, o)))
        .collect();
    for e in toc
        .iter_mut()
        .filter(|e| e.kind == EntryKind::Sequence && e.owner.is_none())
    {
        if let Some(role) = e.belongs_to.and_then(|t| owners.get(&t)) {
            e.owner_sql = Some(format!(
                "ALTER SEQUENCE {}.{} OWNER TO {};",
                quote_ident(e.schema.as_deref().unwrap_or_default()),
                quote_ident(&e.name),
                quote_ident(role)
            ));
            e.owner = Some(role.clone());
        }
    }
    toc
}

/// `"a b".c` -> `c`, `s.t` -> `t`: the relation part of a quoted qualified name.
fn unquote_last(q: &str) -> String {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = q.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    parts.pop().unwrap_or_default()
}

/// PostgreSQL's quote_ident for the names a format-1 archive used.
fn quote_ident(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain && !is_reserved(s) {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// Reserved words quote_ident would quote (the ones likely as names).
fn is_reserved(s: &str) -> bool {
    matches!(
        s,
        "all"
            | "analyse"
            | "analyze"
            | "and"
            | "any"
            | "array"
            | "as"
            | "asc"
            | "asymmetric"
            | "both"
            | "case"
            | "cast"
            | "check"
            | "collate"
            | "column"
            | "constraint"
            | "create"
            | "current_catalog"
            | "current_date"
            | "current_role"
            | "current_time"
            | "current_timestamp"
            | "current_user"
            | "default"
            | "deferrable"
            | "desc"
            | "distinct"
            | "do"
            | "else"
            | "end"
            | "except"
            | "false"
            | "fetch"
            | "for"
            | "foreign"
            | "from"
            | "grant"
            | "group"
            | "having"
            | "in"
            | "initially"
            | "intersect"
            | "into"
            | "lateral"
            | "leading"
            | "limit"
            | "localtime"
            | "localtimestamp"
            | "not"
            | "null"
            | "offset"
            | "on"
            | "only"
            | "or"
            | "order"
            | "placing"
            | "primary"
            | "references"
            | "returning"
            | "select"
            | "session_user"
            | "some"
            | "symmetric"
            | "table"
            | "then"
            | "to"
            | "trailing"
            | "true"
            | "union"
            | "unique"
            | "user"
            | "using"
            | "variadic"
            | "when"
            | "where"
            | "window"
            | "with"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: &str, schema: &str, name: &str, table: Option<&str>) -> DdlItem {
        DdlItem {
            kind: kind.into(),
            schema: Some(schema.into()),
            name: name.into(),
            table: table.map(str::to_string),
            sql: format!("-- {kind} {name}"),
            references: None,
        }
    }

    #[test]
    fn kinds_serialize_as_their_names() {
        for k in [
            EntryKind::TableData,
            EntryKind::ForeignKey,
            EntryKind::TextSearchConfiguration,
            EntryKind::MaterializedViewRefresh,
        ] {
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::String(k.as_str().into())
            );
        }
        assert_eq!(
            serde_json::to_value(Section::PostData).unwrap(),
            serde_json::json!("post-data")
        );
    }

    #[test]
    fn sections_follow_pg_dump() {
        assert_eq!(EntryKind::Table.section(), Section::PreData);
        assert_eq!(EntryKind::TableData.section(), Section::Data);
        assert_eq!(EntryKind::Index.section(), Section::PostData);
        assert!(EntryKind::Schema.priority() < EntryKind::Function.priority());
        assert!(EntryKind::Function.priority() < EntryKind::Table.priority());
        assert!(EntryKind::Index.priority() < EntryKind::ForeignKey.priority());
    }

    #[test]
    fn format_1_lists_become_a_toc_with_dependencies() {
        let mut fk = item("foreign_key", "s", "orders_person_fkey", Some("s.orders"));
        fk.references = Some("s.people".into());
        let pre = vec![
            item("schema", "s", "s", None),
            item("type", "s", "mood", None),
            item("table", "s", "people", None),
            item("table", "s", "orders", None),
            item("table", "S 2", "x", None),
        ];
        let post = vec![
            item("index", "s", "orders_person_idx", Some("s.orders")),
            fk,
            item("sequence_set", "s", "people_id_seq", Some("s.people")),
        ];
        let toc = from_v1(&pre, &post);
        assert_eq!(toc.len(), 8);
        let get = |name: &str| toc.iter().find(|e| e.name == name).unwrap();
        assert_eq!(get("people").deps, vec![1, 2], "schema and its type");
        assert_eq!(get("orders_person_idx").table.as_deref(), Some("orders"));
        assert_eq!(get("orders_person_idx").deps, vec![1, 4]);
        assert_eq!(get("orders_person_fkey").deps, vec![1, 3, 4]);
        assert_eq!(get("people_id_seq").section, Section::Data);
        assert_eq!(get("people_id_seq").belongs_to, Some(3));
        assert_eq!(get("orders_person_fkey").belongs_to, Some(4));
        assert_eq!(
            get("x").deps,
            Vec::<u32>::new(),
            "another schema's type is not its"
        );
        let closure = dependency_closure(&toc, &[get("orders_person_fkey").id].into());
        assert_eq!(closure, [1, 2, 3, 4, 7].into());
    }

    #[test]
    fn format_1_owners_go_onto_their_objects() {
        let mut f1 = item("function", "s", "f(a integer)", None);
        f1.sql = "CREATE FUNCTION s.f(a integer) ...".into();
        let f2 = item("function", "s", "f(b text)", None);
        let g = item("procedure", "s", "g()", None);
        let pre = vec![
            item("schema", "s", "s", None),
            item("type", "s", "mood", None),
            f1,
            f2,
            g,
            item("table", "s", "t", None),
            item("view", "s", "v", None),
        ];
        let owner = |schema: &str, name: &str, table: Option<&str>, sql: &str| DdlItem {
            kind: "owner".into(),
            schema: Some(schema.into()),
            name: name.into(),
            table: table.map(str::to_string),
            sql: sql.into(),
            references: None,
        };
        let post = vec![
            owner("s", "s", None, "ALTER SCHEMA s OWNER TO alice;"),
            owner("s", "t", Some("s.t"), "ALTER TABLE s.t OWNER TO bob;"),
            owner("s", "v", Some("s.v"), "ALTER VIEW s.v OWNER TO \"Carol\";"),
            owner("s", "f", None, "ALTER ROUTINE s.f(integer) OWNER TO dan;"),
            owner("s", "f", None, "ALTER ROUTINE s.f(text) OWNER TO erin;"),
            owner("s", "g", None, "ALTER ROUTINE s.g() OWNER TO frank;"),
            owner("s", "mood", None, "ALTER TYPE s.mood OWNER TO gina;"),
            owner("", "16400", None, "ALTER LARGE OBJECT 16400 OWNER TO hal;"),
        ];
        let toc = from_v1(&pre, &post);
        let owner_of = |name: &str| {
            let e = toc.iter().find(|e| e.name == name).unwrap();
            (e.owner.clone().unwrap_or_default(), e.owner_sql.is_some())
        };
        assert_eq!(owner_of("s"), ("alice".into(), true));
        assert_eq!(owner_of("t"), ("bob".into(), true));
        assert_eq!(owner_of("v"), ("Carol".into(), true));
        assert_eq!(owner_of("f(a integer)"), ("dan".into(), true));
        assert_eq!(owner_of("f(b text)"), ("erin".into(), true));
        assert_eq!(owner_of("g()"), ("frank".into(), true));
        assert_eq!(owner_of("mood"), ("gina".into(), true));
        let left: Vec<&str> = toc
            .iter()
            .filter(|e| e.kind == EntryKind::Owner)
            .map(|e| e.sql.as_str())
            .collect();
        assert_eq!(left, ["ALTER LARGE OBJECT 16400 OWNER TO hal;"]);
    }

    #[test]
    fn format_1_serial_sequences_get_their_tables_owner() {
        let pre = vec![
            item("sequence", "s", "t_id_seq", Some("s.t")),
            item("table", "s", "t", None),
        ];
        let post = vec![DdlItem {
            kind: "owner".into(),
            schema: Some("s".into()),
            name: "t".into(),
            table: Some("s.t".into()),
            sql: "ALTER TABLE s.t OWNER TO \"Bob\";".into(),
            references: None,
        }];
        let toc = from_v1(&pre, &post);
        let seq = toc.iter().find(|e| e.name == "t_id_seq").unwrap();
        assert_eq!(seq.owner.as_deref(), Some("Bob"));
        assert_eq!(
            seq.owner_sql.as_deref(),
            Some("ALTER SEQUENCE s.t_id_seq OWNER TO \"Bob\";")
        );
    }

    #[test]
    fn quoted_names_split_like_sql() {
        assert_eq!(unquote_last("s.t"), "t");
        assert_eq!(unquote_last("\"a.b\".\"c\"\"d\""), "c\"d");
        assert_eq!(quote_ident("Mixed"), "\"Mixed\"");
        assert_eq!(quote_ident("user"), "\"user\"");
        assert_eq!(quote_ident("plain_1"), "plain_1");
    }

    #[test]
    fn partitions_of_format_2_are_their_attach_entries() {
        let entry = |id: u32, kind: EntryKind, name: &str, sql: &str| TocEntry {
            id,
            kind,
            section: kind.section(),
            schema: Some("s".into()),
            name: name.into(),
            table: None,
            owner: None,
            belongs_to: None,
            deps: vec![],
            sql: sql.into(),
            owner_sql: None,
            tablespace: None,
            builtin_code_only: false,
            facts: Facts::default(),
            statistics: None,
        };
        let mut toc = vec![
            entry(
                1,
                EntryKind::Table,
                "p",
                "CREATE TABLE s.p (\n    a integer\n)\nPARTITION BY LIST (a);",
            ),
            entry(
                2,
                EntryKind::Table,
                "c",
                "CREATE TABLE s.c (\n    a integer\n);",
            ),
            entry(
                3,
                EntryKind::Table,
                "d",
                "CREATE TABLE s.d (\n    a integer\n);",
            ),
            entry(
                4,
                EntryKind::TableAttach,
                "c",
                "ALTER TABLE ONLY s.p ATTACH PARTITION s.c FOR VALUES IN (1);",
            ),
        ];
        derive_facts(&mut toc);
        assert!(toc[0].facts.partitioned && !toc[0].facts.partition);
        assert!(toc[1].facts.partition && !toc[1].facts.created_as_partition);
        assert!(!toc[2].facts.partition);
    }
}
