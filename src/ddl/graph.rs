//! The dependency graph of the collected objects and its sort into restore order, after
//! pg_dump_sort.c: objects are first ordered by kind priority, schema and name; a topological
//! sort over their dependencies keeps that order wherever the dependencies allow; dependency
//! loops are found and broken the way pg_dump breaks them (a table's CHECK constraint or
//! column default split off the CREATE TABLE, a view created as a placeholder and filled in by
//! CREATE OR REPLACE VIEW, a domain's CHECK split off, a function's I/O type replaced by its
//! shell, a materialized view or function postponed past the data), and the result is the TOC.
//!
//! Plain Rust: no server needed, unit-tested below.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};

use crate::archive::facts::Facts;
use crate::archive::toc::{EntryKind, Section, TocEntry};

/// What an object is besides its catalog row: the row itself, or something derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Object,
    /// The shell of a base or range type (CREATE TYPE t;), for its I/O functions.
    Shell,
    /// A table's rows, a sequence's value, the large objects' pages.
    Data,
    /// ALTER SEQUENCE ... OWNED BY.
    OwnedBy,
    /// ALTER TABLE ... ATTACH PARTITION / ALTER INDEX ... ATTACH PARTITION.
    Attach,
    /// REFRESH MATERIALIZED VIEW.
    Refresh,
    /// ALTER TABLE ... ENABLE ROW LEVEL SECURITY.
    RowSecurity,
    Comment,
    SecurityLabel,
    Acl,
    Owner,
    /// The pre-data and post-data boundaries (never emitted).
    Boundary,
}

/// A catalog object (`class` = the catalog's oid, `oid`, `sub` = column number or 0) in one
/// of its roles. Keys of objects that are not catalog rows use class 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjKey {
    pub class: u32,
    pub oid: u32,
    pub sub: i32,
    pub role: Role,
}

impl ObjKey {
    pub fn new(class: u32, oid: u32) -> ObjKey {
        ObjKey {
            class,
            oid,
            sub: 0,
            role: Role::Object,
        }
    }
    pub fn sub(class: u32, oid: u32, sub: i32) -> ObjKey {
        ObjKey {
            class,
            oid,
            sub,
            role: Role::Object,
        }
    }
    /// The same object in another role.
    pub fn with(self, role: Role) -> ObjKey {
        ObjKey { role, ..self }
    }
    /// The whole object a column (sub-object) belongs to.
    pub fn whole(self) -> ObjKey {
        ObjKey { sub: 0, ..self }
    }
    const PRE_DATA: ObjKey = ObjKey {
        class: 0,
        oid: 1,
        sub: 0,
        role: Role::Boundary,
    };
    const POST_DATA: ObjKey = ObjKey {
        class: 0,
        oid: 2,
        sub: 0,
        role: Role::Boundary,
    };
}

/// A piece of an object's SQL: text, or the slot of a part (a CHECK constraint, a default,
/// a view's query) that is written inline unless a loop splits it off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    Part {
        key: ObjKey,
        /// Written when the part stays inline.
        inline: String,
        /// Written in its place when the part is split off (a placeholder or nothing).
        split: String,
    },
}

/// One collected object.
#[derive(Debug, Clone)]
pub struct Node {
    pub key: ObjKey,
    pub kind: EntryKind,
    pub section: Section,
    pub schema: Option<String>,
    pub name: String,
    pub table: Option<String>,
    pub owner: Option<String>,
    pub sql: Vec<Segment>,
    pub owner_sql: Option<String>,
    pub deps: BTreeSet<ObjKey>,
    /// The object this one comes and goes with (see `TocEntry::belongs_to`).
    pub belongs_to: Option<ObjKey>,
    /// Set for a part written inside another object's SQL (see `Segment::Part`); its own
    /// `sql` is what runs if it is split off.
    pub part_of: Option<ObjKey>,
    /// See `TocEntry::tablespace`.
    pub tablespace: Option<String>,
    /// See `TocEntry::builtin_code_only`.
    pub builtin_code_only: bool,
    /// See `TocEntry::facts`.
    pub facts: Facts,
}

impl Node {
    /// An object of `kind` (section from the kind) whose SQL is `sql`.
    pub fn new(
        key: ObjKey,
        kind: EntryKind,
        schema: Option<&str>,
        name: &str,
        sql: String,
    ) -> Node {
        Node {
            key,
            kind,
            section: kind.section(),
            schema: schema.map(str::to_string),
            name: name.to_string(),
            table: None,
            owner: None,
            sql: vec![Segment::Text(sql)],
            owner_sql: None,
            deps: BTreeSet::new(),
            belongs_to: None,
            part_of: None,
            tablespace: None,
            builtin_code_only: false,
            facts: Facts::default(),
        }
    }
    /// Comes and goes with `key` (and depends on it).
    pub fn of(mut self, key: ObjKey) -> Node {
        self.belongs_to = Some(key);
        self.deps.insert(key);
        self
    }
    pub fn table(mut self, table: &str) -> Node {
        self.table = Some(table.to_string());
        self
    }
    pub fn owned(mut self, owner: Option<String>, owner_sql: Option<String>) -> Node {
        self.owner = owner;
        self.owner_sql = owner_sql;
        self
    }
    pub fn dep(mut self, key: ObjKey) -> Node {
        self.deps.insert(key);
        self
    }
    /// Created in `tablespace` (None or "": the database's default).
    pub fn in_tablespace(mut self, tablespace: Option<String>) -> Node {
        self.tablespace = tablespace.filter(|t| !t.is_empty());
        self
    }
}

/// Why a dependency loop could not be broken the pg_dump way (a warning for the backup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopWarning(pub String);

/// Sort `nodes` into TOC entries (ids from 1, in restore order). Dependencies on keys that
/// are not among the nodes are dropped (objects outside the backup: built-ins, other schemas).
pub fn sort(nodes: Vec<Node>) -> (Vec<TocEntry>, Vec<LoopWarning>) {
    let mut g = Graph::new(nodes);
    let mut warnings = Vec::new();
    let order = loop {
        match g.topo_sort() {
            Ok(order) => break order,
            Err(stuck) => {
                if !g.break_loops(&stuck, &mut warnings) {
                    // Cannot happen: break_loops always removes at least one edge of a loop.
                    unreachable!("a dependency loop survived repair");
                }
            }
        }
    };
    (g.emit(&order), warnings)
}

struct Graph {
    nodes: Vec<Node>,
    index: HashMap<ObjKey, usize>,
    /// Parts that a loop split off their parent.
    split: HashSet<usize>,
}

impl Graph {
    fn new(mut nodes: Vec<Node>) -> Graph {
        // Boundaries, as pg_dump has them: every data object comes after every pre-data
        // object, and every post-data object after every data object.
        let boundary = |key: ObjKey, name: &str| Node {
            section: Section::Data,
            ..Node::new(key, EntryKind::Other, None, name, String::new())
        };
        nodes.push(boundary(ObjKey::PRE_DATA, "PRE-DATA BOUNDARY"));
        nodes.push(boundary(ObjKey::POST_DATA, "POST-DATA BOUNDARY"));
        // Presort by kind priority, schema (none last), name: the order the topological sort
        // keeps where dependencies allow (stable, whatever the collection order was).
        nodes.sort_by(|a, b| {
            let rank = |n: &Node| {
                if n.key == ObjKey::PRE_DATA {
                    25
                } else if n.key == ObjKey::POST_DATA {
                    29
                } else {
                    n.kind.priority()
                }
            };
            (
                rank(a),
                a.schema.is_none(),
                &a.schema,
                &a.name,
                a.kind,
                a.key,
            )
                .cmp(&(
                    rank(b),
                    b.schema.is_none(),
                    &b.schema,
                    &b.name,
                    b.kind,
                    b.key,
                ))
        });
        let index: HashMap<ObjKey, usize> =
            nodes.iter().enumerate().map(|(i, n)| (n.key, i)).collect();
        for n in nodes.iter_mut() {
            let me = n.key;
            n.deps.retain(|d| *d != me && index.contains_key(d));
        }
        let keys: Vec<(ObjKey, Section, bool)> = nodes
            .iter()
            .map(|n| (n.key, n.section, n.part_of.is_some()))
            .collect();
        for (key, section, is_part) in &keys {
            if *key == ObjKey::PRE_DATA || *key == ObjKey::POST_DATA || *is_part {
                continue;
            }
            match section {
                Section::PreData => {
                    nodes[index[&ObjKey::PRE_DATA]].deps.insert(*key);
                }
                Section::Data => {
                    nodes[index[key]].deps.insert(ObjKey::PRE_DATA);
                    nodes[index[&ObjKey::POST_DATA]].deps.insert(*key);
                }
                Section::PostData => {
                    nodes[index[key]].deps.insert(ObjKey::POST_DATA);
                }
            }
        }
        nodes[index[&ObjKey::POST_DATA]]
            .deps
            .insert(ObjKey::PRE_DATA);
        // A part comes before its parent (the parent's SQL holds it), never after: its
        // dependencies on the parent (a constraint's on its table) go, the parent takes one
        // on the part. A loop through other objects splits the part off later.
        for i in 0..nodes.len() {
            if let Some(parent) = nodes[i].part_of {
                let Some(&p) = index.get(&parent) else {
                    nodes[i].part_of = None;
                    continue;
                };
                let me = nodes[i].key;
                nodes[i]
                    .deps
                    .retain(|d| d.whole().with(Role::Object) != parent);
                nodes[p].deps.insert(me);
            }
        }
        Graph {
            nodes,
            index,
            split: HashSet::new(),
        }
    }

    /// Kahn's algorithm, always taking the ready node that comes first in the presort.
    /// `Err` with the nodes left over when a loop stops it.
    fn topo_sort(&self) -> Result<Vec<usize>, Vec<usize>> {
        let n = self.nodes.len();
        let mut waiting = vec![0usize; n];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, node) in self.nodes.iter().enumerate() {
            for d in &node.deps {
                let j = self.index[d];
                waiting[i] += 1;
                dependents[j].push(i);
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|i| waiting[*i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for &k in &dependents[i] {
                waiting[k] -= 1;
                if waiting[k] == 0 {
                    ready.push(Reverse(k));
                }
            }
        }
        if order.len() == n {
            Ok(order)
        } else {
            Err((0..n).filter(|i| waiting[*i] > 0).collect())
        }
    }

    /// The shortest loop through `start` (each member depends on the next; the last on
    /// `start`), among the `stuck` nodes.
    fn find_loop(&self, start: usize, stuck: &HashSet<usize>) -> Option<Vec<usize>> {
        let mut prev: HashMap<usize, usize> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(i) = queue.pop_front() {
            for d in &self.nodes[i].deps {
                let j = self.index[d];
                if j == start {
                    let mut path = vec![i];
                    let mut k = i;
                    while k != start {
                        k = prev[&k];
                        path.push(k);
                    }
                    path.reverse();
                    return Some(path);
                }
                if stuck.contains(&j) && !prev.contains_key(&j) {
                    prev.insert(j, i);
                    queue.push_back(j);
                }
            }
        }
        None
    }

    /// Find the loops among `stuck` and break each; false if none could be found.
    fn break_loops(&mut self, stuck: &[usize], warnings: &mut Vec<LoopWarning>) -> bool {
        let stuck_set: HashSet<usize> = stuck.iter().copied().collect();
        let mut done: HashSet<usize> = HashSet::new();
        let mut fixed = false;
        for &start in stuck {
            if done.contains(&start) {
                continue;
            }
            let Some(cycle) = self.find_loop(start, &stuck_set) else {
                continue;
            };
            if cycle.iter().any(|i| done.contains(i)) {
                continue;
            }
            self.repair(&cycle, warnings);
            done.extend(cycle.iter().copied());
            fixed = true;
        }
        fixed
    }

    fn remove_dep(&mut self, from: usize, to: usize) {
        let key = self.nodes[to].key;
        self.nodes[from].deps.remove(&key);
    }

    fn add_dep(&mut self, from: usize, to: usize) {
        let key = self.nodes[to].key;
        self.nodes[from].deps.insert(key);
    }

    /// Split part `p` off its parent: the parent no longer waits for it, it comes after the
    /// parent (post-data if its kind is).
    fn split_part(&mut self, p: usize) {
        let parent = self.index[&self.nodes[p].part_of.expect("a part")];
        self.remove_dep(parent, p);
        self.add_dep(p, parent);
        if self.nodes[p].section == Section::PostData {
            self.nodes[p].deps.insert(ObjKey::POST_DATA);
        } else if self.nodes[p].section == Section::Data {
            self.nodes[p].deps.insert(ObjKey::PRE_DATA);
        }
        self.split.insert(p);
    }

    /// Break one loop the way pg_dump_sort.c's repairDependencyLoop does.
    fn repair(&mut self, cycle: &[usize], warnings: &mut Vec<LoopWarning>) {
        let kind = |g: &Graph, i: usize| g.nodes[i].kind;
        let is_part_in_loop = |g: &Graph, p: usize, want: &[EntryKind]| {
            want.contains(&g.nodes[p].kind)
                && !g.split.contains(&p)
                && g.nodes[p]
                    .part_of
                    .and_then(|k| g.index.get(&k))
                    .is_some_and(|parent| cycle.contains(parent))
        };
        // A type and one of its I/O functions: the function takes the shell type instead.
        if cycle.len() == 2 {
            for (t, f) in [(cycle[0], cycle[1]), (cycle[1], cycle[0])] {
                let shell = self.nodes[t].key.with(Role::Shell);
                if matches!(kind(self, t), EntryKind::Type)
                    && matches!(kind(self, f), EntryKind::Function | EntryKind::Procedure)
                    && self.index.contains_key(&shell)
                {
                    self.remove_dep(f, t);
                    self.nodes[f].deps.insert(shell);
                    return;
                }
            }
        }
        // A view in a loop: created first as a placeholder, its query replaced later.
        if let Some(&p) = cycle
            .iter()
            .find(|&&p| is_part_in_loop(self, p, &[EntryKind::ViewQuery]))
        {
            self.split_part(p);
            return;
        }
        // A materialized view or function that needs something of post-data (a unique index
        // or primary key, for a GROUP BY): postponed to post-data.
        if let Some(b) = cycle
            .iter()
            .position(|&i| self.nodes[i].key == ObjKey::PRE_DATA)
        {
            if cycle.iter().any(|&i| {
                matches!(
                    kind(self, i),
                    EntryKind::MaterializedView | EntryKind::Function | EntryKind::Procedure
                )
            }) {
                let next = cycle[(b + 1) % cycle.len()];
                self.remove_dep(cycle[b], next);
                if matches!(
                    kind(self, next),
                    EntryKind::MaterializedView | EntryKind::Function | EntryKind::Procedure
                ) {
                    self.nodes[next].section = Section::PostData;
                    self.nodes[next].deps.insert(ObjKey::POST_DATA);
                }
                return;
            }
        }
        // A table's CHECK constraint or default, a domain's CHECK: split off.
        for want in [
            EntryKind::CheckConstraint,
            EntryKind::Default,
            EntryKind::DomainConstraint,
        ] {
            if let Some(&p) = cycle.iter().find(|&&p| is_part_in_loop(self, p, &[want])) {
                self.split_part(p);
                return;
            }
        }
        // An index of a partitioned table and the matching index of a partition.
        if cycle.len() == 2
            && kind(self, cycle[0]) == EntryKind::Index
            && kind(self, cycle[1]) == EntryKind::Index
        {
            self.remove_dep(cycle[0], cycle[1]);
            return;
        }
        // Anything else: drop one dependency, and say so (pg_dump warns the same way).
        let names: Vec<String> = cycle
            .iter()
            .map(|&i| {
                let n = &self.nodes[i];
                format!(
                    "{} {}",
                    n.kind.as_str(),
                    n.schema
                        .as_deref()
                        .map(|s| format!("{s}."))
                        .unwrap_or_default()
                        + &n.name
                )
            })
            .collect();
        warnings.push(LoopWarning(format!(
            "could not resolve dependency loop among these items: {}",
            names.join(", ")
        )));
        self.remove_dep(cycle[0], cycle[1 % cycle.len()]);
    }

    /// The entries in `order`: parts that stayed inline and boundaries are not entries;
    /// a dependency on an inline part is one on its parent.
    fn emit(&self, order: &[usize]) -> Vec<TocEntry> {
        let emitted = |i: usize| {
            let n = &self.nodes[i];
            n.key.role != Role::Boundary && (n.part_of.is_none() || self.split.contains(&i))
        };
        let mut ids: HashMap<usize, u32> = HashMap::new();
        for &i in order.iter().filter(|&&i| emitted(i)) {
            let next = ids.len() as u32 + 1;
            ids.insert(i, next);
        }
        // Where a dependency on node j lands: j itself; for a part inline in another object,
        // that object; for a part inline in this very entry, what the part depends on.
        fn resolve(
            g: &Graph,
            ids: &HashMap<usize, u32>,
            me: usize,
            j: usize,
            out: &mut BTreeSet<u32>,
            seen: &mut HashSet<usize>,
        ) {
            if !seen.insert(j) {
                return;
            }
            if let Some(id) = ids.get(&j) {
                out.insert(*id);
                return;
            }
            let n = &g.nodes[j];
            if n.key.role == Role::Boundary {
                return;
            }
            let Some(&p) = n.part_of.and_then(|k| g.index.get(&k)) else {
                return;
            };
            if p != me {
                resolve(g, ids, me, p, out, seen);
                return;
            }
            for d in &n.deps {
                resolve(g, ids, me, g.index[d], out, seen);
            }
        }
        order
            .iter()
            .filter(|&&i| emitted(i))
            .map(|&i| {
                let n = &self.nodes[i];
                let id = ids[&i];
                let mut deps = BTreeSet::new();
                let mut seen = HashSet::new();
                for d in &n.deps {
                    resolve(self, &ids, i, self.index[d], &mut deps, &mut seen);
                }
                deps.remove(&id);
                let deps: Vec<u32> = deps.into_iter().collect();
                TocEntry {
                    id,
                    kind: n.kind,
                    section: n.section,
                    schema: n.schema.clone(),
                    name: n.name.clone(),
                    table: n.table.clone(),
                    owner: n.owner.clone(),
                    belongs_to: n.belongs_to.and_then(|k| {
                        let mut seen = HashSet::new();
                        let mut out = BTreeSet::new();
                        if let Some(&j) = self.index.get(&k) {
                            resolve(self, &ids, usize::MAX, j, &mut out, &mut seen);
                        }
                        out.into_iter().next().filter(|b| *b != id)
                    }),
                    deps,
                    sql: self.render(n),
                    owner_sql: n.owner_sql.clone(),
                    tablespace: n.tablespace.clone(),
                    builtin_code_only: n.builtin_code_only,
                    facts: n.facts.clone(),
                    statistics: None,
                }
            })
            .collect()
    }

    fn render(&self, n: &Node) -> String {
        n.sql
            .iter()
            .map(|s| match s {
                Segment::Text(t) => t.as_str(),
                Segment::Part { key, inline, split } => {
                    let is_split = self.index.get(key).is_some_and(|p| self.split.contains(p));
                    if is_split {
                        split.as_str()
                    } else {
                        inline.as_str()
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASS: u32 = 1259;
    const PROC: u32 = 1255;
    const TYPE: u32 = 1247;
    const CON: u32 = 2606;
    const REWRITE: u32 = 2618;

    fn node(class: u32, oid: u32, kind: EntryKind, name: &str) -> Node {
        Node::new(
            ObjKey::new(class, oid),
            kind,
            Some("public"),
            name,
            format!("create {name};"),
        )
    }

    fn names(toc: &[TocEntry]) -> Vec<&str> {
        toc.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn dependencies_win_over_kind_order() {
        // A function returning SETOF a table's row type: the table must come first.
        let t = node(CLASS, 10, EntryKind::Table, "customer");
        let f = node(PROC, 20, EntryKind::Function, "customers()").dep(ObjKey::new(CLASS, 10));
        let s = Node::new(
            ObjKey::new(2615, 1),
            EntryKind::Schema,
            None,
            "public",
            "create schema;".into(),
        );
        let i = node(CLASS, 30, EntryKind::Index, "customer_idx").dep(ObjKey::new(CLASS, 10));
        let (toc, warnings) = sort(vec![i, f, t, s]);
        assert!(warnings.is_empty());
        assert_eq!(
            names(&toc),
            ["public", "customer", "customers()", "customer_idx"]
        );
        assert_eq!(toc[2].deps, vec![2]);
        assert_eq!(toc[3].section, Section::PostData);
        assert_eq!(toc.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3, 4]);
    }

    #[test]
    fn without_dependencies_the_kind_then_the_name_decides() {
        let (toc, _) = sort(vec![
            node(CLASS, 1, EntryKind::Table, "b"),
            node(CLASS, 2, EntryKind::Table, "a"),
            node(PROC, 3, EntryKind::Function, "z()"),
            node(TYPE, 4, EntryKind::Type, "y"),
        ]);
        assert_eq!(names(&toc), ["y", "z()", "a", "b"]);
    }

    #[test]
    fn unknown_dependencies_are_dropped() {
        let t = node(CLASS, 1, EntryKind::Table, "t").dep(ObjKey::new(TYPE, 23));
        let (toc, _) = sort(vec![t]);
        assert!(toc[0].deps.is_empty());
    }

    /// A table with an inline CHECK constraint that calls a function.
    fn table_with_check(check_deps_on_fn: bool, fn_deps_on_table: bool) -> Vec<Node> {
        let tkey = ObjKey::new(CLASS, 10);
        let ckey = ObjKey::new(CON, 11);
        let mut t = node(CLASS, 10, EntryKind::Table, "t");
        t.sql = vec![
            Segment::Text("CREATE TABLE t (a int".into()),
            Segment::Part {
                key: ckey,
                inline: ", CONSTRAINT c CHECK (f(a))".into(),
                split: String::new(),
            },
            Segment::Text(");".into()),
        ];
        let mut c = node(CON, 11, EntryKind::CheckConstraint, "t c")
            .table("t")
            .dep(ObjKey::sub(CLASS, 10, 1));
        c.sql = vec![Segment::Text(
            "ALTER TABLE t ADD CONSTRAINT c CHECK (f(a));".into(),
        )];
        c.part_of = Some(tkey);
        if check_deps_on_fn {
            c = c.dep(ObjKey::new(PROC, 12));
        }
        let mut f = node(PROC, 12, EntryKind::Function, "f(integer)");
        if fn_deps_on_table {
            f = f.dep(tkey);
        }
        vec![t, c, f]
    }

    #[test]
    fn an_inline_check_brings_its_function_before_the_table() {
        let (toc, warnings) = sort(table_with_check(true, false));
        assert!(warnings.is_empty());
        assert_eq!(names(&toc), ["f(integer)", "t"]);
        assert_eq!(
            toc[1].sql,
            "CREATE TABLE t (a int, CONSTRAINT c CHECK (f(a)));"
        );
        assert_eq!(
            toc[1].deps,
            vec![1],
            "the check's dependency is the table's"
        );
    }

    #[test]
    fn a_check_in_a_loop_is_split_off_the_table() {
        // f takes the table's row type and the CHECK calls f: table -> check -> f -> table.
        let (toc, warnings) = sort(table_with_check(true, true));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(names(&toc), ["t", "f(integer)", "t c"]);
        assert_eq!(toc[0].sql, "CREATE TABLE t (a int);");
        assert_eq!(toc[2].kind, EntryKind::CheckConstraint);
        assert_eq!(toc[2].section, Section::PostData);
        assert_eq!(toc[2].deps, vec![1, 2]);
    }

    #[test]
    fn a_view_in_a_loop_becomes_a_placeholder_then_its_query() {
        // v's query calls f, and f returns SETOF v.
        let vkey = ObjKey::new(CLASS, 10);
        let rkey = ObjKey::new(REWRITE, 11);
        let mut v = node(CLASS, 10, EntryKind::View, "v");
        v.sql = vec![
            Segment::Text("CREATE VIEW v AS ".into()),
            Segment::Part {
                key: rkey,
                inline: "SELECT f() AS a;".into(),
                split: "SELECT NULL::integer AS a;".into(),
            },
        ];
        let mut r = node(REWRITE, 11, EntryKind::ViewQuery, "v").dep(ObjKey::new(PROC, 12));
        r.sql = vec![Segment::Text(
            "CREATE OR REPLACE VIEW v AS SELECT f() AS a;".into(),
        )];
        r.part_of = Some(vkey);
        let f = node(PROC, 12, EntryKind::Function, "f()").dep(vkey);
        let (toc, warnings) = sort(vec![v, r, f]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(names(&toc), ["v", "f()", "v"]);
        assert_eq!(toc[0].sql, "CREATE VIEW v AS SELECT NULL::integer AS a;");
        assert_eq!(toc[2].kind, EntryKind::ViewQuery);
        assert!(toc[2].sql.starts_with("CREATE OR REPLACE VIEW"));
    }

    #[test]
    fn a_base_types_io_functions_take_its_shell() {
        let tkey = ObjKey::new(TYPE, 10);
        let shell = Node::new(
            tkey.with(Role::Shell),
            EntryKind::ShellType,
            Some("public"),
            "t",
            "CREATE TYPE t;".into(),
        );
        let t = node(TYPE, 10, EntryKind::Type, "t")
            .dep(ObjKey::new(PROC, 11))
            .dep(ObjKey::new(PROC, 12));
        let i = node(PROC, 11, EntryKind::Function, "t_in(cstring)").dep(tkey);
        let o = node(PROC, 12, EntryKind::Function, "t_out(t)").dep(tkey);
        let (toc, warnings) = sort(vec![t, i, o, shell]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(toc[0].kind, EntryKind::ShellType);
        assert_eq!(toc.last().unwrap().kind, EntryKind::Type);
    }

    #[test]
    fn a_matview_that_needs_a_primary_key_moves_to_post_data() {
        let t = node(CLASS, 10, EntryKind::Table, "t");
        let pk = node(CON, 11, EntryKind::Constraint, "t t_pkey")
            .table("t")
            .dep(ObjKey::new(CLASS, 10));
        let mv = node(CLASS, 12, EntryKind::MaterializedView, "mv")
            .dep(ObjKey::new(CLASS, 10))
            .dep(ObjKey::new(CON, 11));
        let (toc, warnings) = sort(vec![mv, pk, t]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(names(&toc), ["t", "t t_pkey", "mv"]);
        assert_eq!(toc[2].section, Section::PostData);
    }

    #[test]
    fn an_unbreakable_loop_is_broken_with_a_warning() {
        let a = node(CLASS, 1, EntryKind::Table, "a").dep(ObjKey::new(CLASS, 2));
        let b = node(CLASS, 2, EntryKind::Table, "b").dep(ObjKey::new(CLASS, 1));
        let (toc, warnings) = sort(vec![a, b]);
        assert_eq!(toc.len(), 2);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].0.contains("table public.a"));
    }
}
