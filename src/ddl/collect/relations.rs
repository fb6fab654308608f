//! Tables of every kind (plain, partitioned, partitions, inheritance children, typed,
//! unlogged, foreign) with their columns, defaults and CHECK constraints; sequences; views
//! and materialized views; and the data entries of a backup (table rows, sequence values,
//! materialized view refreshes).

use std::collections::HashMap;

use pgrx::prelude::*;

use super::class::{PG_CLASS, PG_REWRITE, PG_TYPE};
use super::codes::Relkind;
use super::common::{data_key, ident, literal, owner_sql, qualified, query, Collected, Context};
use crate::archive::facts::ConstraintFacts;
use crate::archive::shapes::ConstraintKind;
use crate::archive::toc::{EntryKind, Section};
use crate::ddl::graph::{Node, ObjKey, Role, Segment};
use crate::error::Result;

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    tables(cx, out)?;
    sequences(cx, out)?;
    views(cx, out)?;
    view_defaults(cx, out)?;
    data(cx, out)?;
    aliases(cx, out)?;
    Ok(())
}

struct Table {
    key: ObjKey,
    schema: String,
    name: String,
    owner: String,
    relkind: Relkind,
    unlogged: bool,
    /// For a partition: the parent (qualified) and the bound.
    partition_of: Option<(String, ObjKey, String)>,
    inherits: Vec<String>,
    partition_by: Option<String>,
    reloptions: Vec<String>,
    of_type: Option<String>,
    access_method: Option<String>,
    server: Option<(String, String)>,
    replica_identity: String,
    /// The first parent (partitioned table or inheritance parent), 0 if none.
    parent: u32,
    /// Not the database's default tablespace: its name.
    tablespace: Option<String>,
    /// See `TocEntry::builtin_code_only`.
    builtin_code_only: bool,
}

struct Column {
    rel: u32,
    name: String,
    typ: String,
    collation: Option<String>,
    not_null: bool,
    /// NOT NULL comes from a parent.
    inherited_not_null: bool,
    identity: String,
    generated: String,
    local: bool,
    default: Option<(ObjKey, String)>,
    stats_target: i32,
    storage: Option<String>,
    compression: Option<String>,
    options: Option<String>,
    fdw_options: Option<String>,
    identity_sequence: Option<String>,
    /// A parent generates this column: the child inherits the expression.
    parent_generated: bool,
    /// A parent has a default for this column.
    parent_default: bool,
    /// From 18: the column's NOT NULL constraint.
    not_null_constraint: Option<NotNull>,
}

/// A column's NOT NULL constraint of PostgreSQL 18 (pg_constraint, contype 'n').
struct NotNull {
    key: ObjKey,
    name: String,
    no_inherit: bool,
    local: bool,
    validated: bool,
}

struct Check {
    key: ObjKey,
    rel: u32,
    name: String,
    def: String,
    local: bool,
    validated: bool,
}

const TABLES: &str = r#"
SELECT c.tableoid, c.oid, n.nspname::text, c.relname::text, pg_catalog.pg_get_userbyid(c.relowner)::text,
  c.relkind::text, c.relpersistence = 'u',
  CASE WHEN c.relispartition THEN (SELECT pg_catalog.format('%I.%I', pn.nspname, p.relname)
       FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
       JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid) END,
  CASE WHEN c.relispartition THEN (SELECT i.inhparent FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid) END,
  CASE WHEN c.relispartition THEN pg_catalog.pg_get_expr(c.relpartbound, c.oid) END,
  CASE WHEN NOT c.relispartition THEN ARRAY(SELECT pg_catalog.format('%I.%I', pn.nspname, p.relname)
       FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
       JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid ORDER BY i.inhseqno)::text[] END,
  CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END,
  ARRAY(SELECT x FROM pg_catalog.unnest(c.reloptions) x
        UNION ALL SELECT 'toast.' || x FROM pg_catalog.pg_class tc, pg_catalog.unnest(tc.reloptions) x WHERE tc.oid = c.reltoastrelid)::text[],
  CASE WHEN c.reloftype <> 0 THEN pg_catalog.format_type(c.reloftype, NULL) END,
  (SELECT pg_catalog.quote_ident(am.amname) FROM pg_catalog.pg_am am WHERE am.oid = c.relam AND am.amname <> 'heap'),
  (SELECT pg_catalog.quote_ident(s.srvname) FROM pg_catalog.pg_foreign_table ft JOIN pg_catalog.pg_foreign_server s ON s.oid = ft.ftserver WHERE ft.ftrelid = c.oid),
  (SELECT pg_catalog.array_to_string(ARRAY(SELECT pg_catalog.quote_ident(o.option_name) || ' ' || pg_catalog.quote_literal(o.option_value)
          FROM pg_catalog.pg_options_to_table(ft.ftoptions) o ORDER BY o.option_name), ', ')
   FROM pg_catalog.pg_foreign_table ft WHERE ft.ftrelid = c.oid),
  c.relreplident::text,
  (SELECT i.inhparent FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid ORDER BY i.inhseqno LIMIT 1),
  (SELECT ts.spcname::text FROM pg_catalog.pg_tablespace ts WHERE ts.oid = c.reltablespace AND c.relkind <> 'f'),
  -- What CREATE TABLE / ATTACH PARTITION evaluate (stored generated columns, the partition
  -- key) uses nothing made after initdb (TocEntry::builtin_code_only).
  NOT EXISTS (
    SELECT FROM pg_catalog.pg_depend d
    WHERE ((d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.objsubid = 0
            AND c.relkind = 'p')
           OR (d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid IN (
                 SELECT ad.oid FROM pg_catalog.pg_attrdef ad JOIN pg_catalog.pg_attribute a
                   ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum AND a.attgenerated <> ''
                 WHERE ad.adrelid = c.oid)))
      AND d.refclassid IN ('pg_catalog.pg_proc'::pg_catalog.regclass, 'pg_catalog.pg_operator'::pg_catalog.regclass,
                           'pg_catalog.pg_opclass'::pg_catalog.regclass, 'pg_catalog.pg_type'::pg_catalog.regclass,
                           'pg_catalog.pg_collation'::pg_catalog.regclass)
      AND d.refobjid >= 16384)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY($1) AND c.relkind IN ('r', 'p', 'f')
ORDER BY c.oid"#;

const COLUMNS: &str = r#"
SELECT a.attrelid, a.attnum::int, a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod),
  CASE WHEN a.attcollation <> 0 AND a.attcollation IS DISTINCT FROM t.typcollation
       THEN (SELECT pg_catalog.format('%I.%I', cn.nspname, co.collname) FROM pg_catalog.pg_collation co
             JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END,
  a.attnotnull,
  EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_attribute pa ON pa.attrelid = i.inhparent
          AND pa.attname = a.attname AND pa.attnotnull WHERE i.inhrelid = a.attrelid),
  a.attidentity::text, a.attgenerated::text, a.attislocal,
  ad.tableoid, ad.oid, pg_catalog.pg_get_expr(ad.adbin, ad.adrelid),
  -- NULL from 17 on for the default target (was -1).
  coalesce(a.attstattarget::int, -1),
  CASE WHEN a.attstorage <> t.typstorage THEN CASE a.attstorage WHEN 'p' THEN 'PLAIN' WHEN 'e' THEN 'EXTERNAL'
       WHEN 'm' THEN 'MAIN' ELSE 'EXTENDED' END END,
  CASE a.attcompression WHEN 'p' THEN 'pglz' WHEN 'l' THEN 'lz4' END,
  -- pg_attver is the server's own (recent minor releases set it on every column they create):
  -- pg_dump leaves it out, and so does collect (a restored column gets its own).
  NULLIF(pg_catalog.array_to_string(ARRAY(SELECT o FROM pg_catalog.unnest(a.attoptions) o
                                          WHERE pg_catalog.substr(o, 1, 10) <> 'pg_attver='), ', '), ''),
  (SELECT pg_catalog.array_to_string(ARRAY(SELECT pg_catalog.quote_ident(o.option_name) || ' ' || pg_catalog.quote_literal(o.option_value)
          FROM pg_catalog.pg_options_to_table(a.attfdwoptions) o ORDER BY o.option_name), ', ')
   WHERE a.attfdwoptions IS NOT NULL),
  (SELECT pg_catalog.format('SEQUENCE NAME %I.%I START WITH %s INCREMENT BY %s MINVALUE %s MAXVALUE %s CACHE %s%s%s',
          sn.nspname, sc.relname, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
          CASE WHEN s.seqcycle THEN ' CYCLE' ELSE '' END,
          CASE WHEN sc.relpersistence = c.relpersistence THEN ''
               WHEN sc.relpersistence = 'u' THEN ' UNLOGGED' ELSE ' LOGGED' END)
   FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class sc ON sc.oid = d.objid AND sc.relkind = 'S'
   JOIN pg_catalog.pg_namespace sn ON sn.oid = sc.relnamespace JOIN pg_catalog.pg_sequence s ON s.seqrelid = sc.oid
   WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
     AND d.refobjid = a.attrelid AND d.refobjsubid = a.attnum AND d.deptype = 'i' AND a.attidentity <> ''),
  -- A parent's generation expression is the column's (the child takes it with INHERITS): some
  -- parent's column is generated and every generated parent's expression reads as the
  -- child's. From 18 a child may have its own (pg_dump's flagInhAttrs compares the same text).
  EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_attribute pa ON pa.attrelid = i.inhparent
          AND pa.attname = a.attname AND pa.attgenerated <> '' WHERE i.inhrelid = a.attrelid)
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_attribute pa ON pa.attrelid = i.inhparent
          AND pa.attname = a.attname AND pa.attgenerated <> ''
          LEFT JOIN pg_catalog.pg_attrdef pd ON pd.adrelid = pa.attrelid AND pd.adnum = pa.attnum
          WHERE i.inhrelid = a.attrelid
            AND pg_catalog.pg_get_expr(pd.adbin, pd.adrelid) IS DISTINCT FROM pg_catalog.pg_get_expr(ad.adbin, ad.adrelid)),
  EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_attribute pa ON pa.attrelid = i.inhparent
          AND pa.attname = a.attname AND pa.attgenerated = '' AND pa.atthasdef WHERE i.inhrelid = a.attrelid),
  __NOT_NULL_COLUMNS__
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
__NOT_NULL_JOIN__
WHERE a.attrelid = ANY($1) AND c.relkind IN ('r', 'p', 'f') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum"#;

/// From 18 a column's NOT NULL is a pg_constraint row (contype 'n', one column) with a name,
/// NO INHERIT, local or inherited, NOT VALID (pg_dump's getTableAttrs reads the same); and
/// whether a parent has a valid one on the column (an inherited constraint that is valid here
/// while every parent's is NOT VALID is written here, as pg_dump's flagInhAttrs does).
const NOT_NULL_18: (&str, &str) = (
    "co.tableoid, co.oid, co.conname::text, co.connoinherit, co.conislocal, co.convalidated,
     EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_attribute pa ON pa.attrelid = i.inhparent
             AND pa.attname = a.attname
             JOIN pg_catalog.pg_constraint pc ON pc.conrelid = pa.attrelid AND pc.contype = 'n'
             AND pc.conkey = ARRAY[pa.attnum] AND pc.convalidated
             WHERE i.inhrelid = a.attrelid)",
    "LEFT JOIN pg_catalog.pg_constraint co ON co.conrelid = a.attrelid AND co.contype = 'n' AND co.conkey = ARRAY[a.attnum]",
);
const NOT_NULL_BEFORE_18: (&str, &str) = (
    "NULL::pg_catalog.oid, NULL::pg_catalog.oid, NULL::text, false, false, false, false",
    "",
);

const CHECKS: &str = r#"
SELECT co.tableoid, co.oid, co.conrelid, co.conname::text, pg_catalog.pg_get_constraintdef(co.oid), co.conislocal, co.convalidated
FROM pg_catalog.pg_constraint co JOIN pg_catalog.pg_class c ON c.oid = co.conrelid
WHERE co.conrelid = ANY($1) AND co.contype = 'c' AND c.relkind IN ('r', 'p', 'f')
ORDER BY co.conrelid, co.conname"#;

fn opt(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

fn tables(cx: &Context, out: &mut Collected) -> Result<()> {
    let tables = query(cx, TABLES, |r| {
        let partition_parent = r.text(8)?;
        Ok(Table {
            key: ObjKey::new(r.oid(1)?, r.oid(2)?),
            schema: r.string(3)?,
            name: r.string(4)?,
            owner: r.string(5)?,
            relkind: Relkind::decode(&r.string(6)?)?,
            unlogged: r.bool(7)?,
            partition_of: match partition_parent {
                Some(p) => Some((p, ObjKey::new(PG_CLASS, r.oid(9)?), r.string(10)?)),
                None => None,
            },
            inherits: r.texts(11)?,
            partition_by: r.text(12)?,
            reloptions: r.texts(13)?,
            of_type: r.text(14)?,
            access_method: r.text(15)?,
            server: r
                .text(16)?
                .map(|s| (s, r.text(17).ok().flatten().unwrap_or_default())),
            replica_identity: r.string(18)?,
            parent: r.oid(19)?,
            tablespace: r.text(20)?,
            builtin_code_only: r.bool(21)?,
        })
    })?;
    let (nn_columns, nn_join) = if super::common::server_version() >= 180000 {
        NOT_NULL_18
    } else {
        NOT_NULL_BEFORE_18
    };
    let columns_sql = COLUMNS
        .replace("__NOT_NULL_COLUMNS__", nn_columns)
        .replace("__NOT_NULL_JOIN__", nn_join);
    let columns = query(cx, &columns_sql, |r| {
        let default = match r.text(13)? {
            Some(expr) => Some((ObjKey::new(r.oid(11)?, r.oid(12)?), expr)),
            None => None,
        };
        Ok(Column {
            rel: r.oid(1)?,
            name: r.string(3)?,
            typ: r.string(4)?,
            collation: r.text(5)?,
            not_null: r.bool(6)?,
            inherited_not_null: r.bool(7)?,
            identity: r.string(8)?,
            generated: r.string(9)?,
            local: r.bool(10)?,
            default,
            stats_target: r.int(14)?,
            storage: r.text(15)?,
            compression: r.text(16)?,
            options: opt(r.text(17)?),
            fdw_options: opt(r.text(18)?),
            identity_sequence: r.text(19)?,
            parent_generated: r.bool(20)?,
            parent_default: r.bool(21)?,
            not_null_constraint: match r.text(24)? {
                Some(name) => Some(NotNull {
                    key: ObjKey::new(r.oid(22)?, r.oid(23)?),
                    name,
                    no_inherit: r.bool(25)?,
                    // Inherited but valid here where no parent's is: this table's to write.
                    local: r.bool(26)? || (r.bool(27)? && !r.bool(28)?),
                    validated: r.bool(27)?,
                }),
                None => None,
            },
        })
    })?;
    let checks = query(cx, CHECKS, |r| {
        Ok(Check {
            key: ObjKey::new(r.oid(1)?, r.oid(2)?),
            rel: r.oid(3)?,
            name: r.string(4)?,
            def: r.string(5)?,
            local: r.bool(6)?,
            validated: r.bool(7)?,
        })
    })?;
    let mut cols_of: HashMap<u32, Vec<&Column>> = HashMap::new();
    for c in &columns {
        cols_of.entry(c.rel).or_default().push(c);
    }
    let mut checks_of: HashMap<u32, Vec<&Check>> = HashMap::new();
    for c in &checks {
        checks_of.entry(c.rel).or_default().push(c);
    }
    for t in &tables {
        let cols = cols_of.remove(&t.key.oid).unwrap_or_default();
        let checks = checks_of.remove(&t.key.oid).unwrap_or_default();
        table(t, &cols, &checks, out);
    }
    Ok(())
}

/// One table's nodes: the table (with its inline parts), its split-off parts, its attach.
fn table(t: &Table, cols: &[&Column], checks: &[&Check], out: &mut Collected) {
    let q = qualified(&t.schema, &t.name);
    let foreign = t.relkind == Relkind::ForeignTable;
    let mut generated_columns = false;
    let keyword = if foreign { "FOREIGN TABLE" } else { "TABLE" };
    let is_partition = t.partition_of.is_some();
    let mut sql: Vec<Segment> = Vec::new();
    let mut text = format!(
        "CREATE {}{keyword} {q}",
        if t.unlogged { "UNLOGGED " } else { "" }
    );
    if let Some(ty) = &t.of_type {
        text.push_str(&format!(" OF {ty}"));
    }
    let mut parts: Vec<Node> = Vec::new();
    let mut after: Vec<String> = Vec::new();
    let mut items = 0;
    // Columns as pg_dump prints them: local ones (all of a partition's, which is created on
    // its own and attached), in attnum order.
    for c in cols {
        let printed = c.local || is_partition;
        let col = format!("{q} ALTER COLUMN {}", ident(&c.name));
        let default_part =
            c.default
                .as_ref()
                .filter(|_| c.generated.is_empty())
                .map(|(key, expr)| {
                    let mut n = Node::new(
                        *key,
                        EntryKind::Default,
                        Some(&t.schema),
                        &format!("{} {}", t.name, c.name),
                        format!(
                            "ALTER {keyword} ONLY {col_only} SET DEFAULT {expr};",
                            col_only = col
                        ),
                    )
                    .table(&t.name);
                    n.owner = Some(t.owner.clone());
                    (n, expr.clone())
                });
        if !printed {
            // Inherited columns come with INHERITS; what differs from the parent is altered.
            if let Some((n, _)) = default_part {
                parts.push(n.of(t.key));
            }
            match &c.not_null_constraint {
                // 18: a local NOT NULL of an inherited column is a table constraint of its
                // own in CREATE TABLE (as pg_dump writes it), a NOT VALID one comes after the
                // data.
                Some(nn) if nn.local && nn.validated => {
                    sql.push(Segment::Text(format!(
                        "{}\n    CONSTRAINT {} NOT NULL {}{}",
                        if items == 0 { " (" } else { "," },
                        ident(&nn.name),
                        ident(&c.name),
                        if nn.no_inherit { " NO INHERIT" } else { "" }
                    )));
                    items += 1;
                    out.alias(nn.key.class, nn.key.oid, t.key);
                }
                Some(nn) if nn.local => parts.push(not_valid_not_null(t, keyword, &q, c, nn)),
                Some(_) => {}
                None => {
                    if c.not_null && !c.inherited_not_null {
                        after.push(format!("ALTER {keyword} ONLY {col} SET NOT NULL;"));
                    }
                }
            }
            // No default of its own where a parent has one: the child's is NULL.
            if c.parent_default && c.default.is_none() && c.generated.is_empty() {
                after.push(format!("ALTER {keyword} ONLY {col} SET DEFAULT NULL;"));
            }
        } else if t.of_type.is_some() && default_part.is_none() && !c.not_null {
            // A typed table's column is its type's.
        } else {
            sql.push(Segment::Text(format!(
                "{}\n    {}",
                if items == 0 { " (" } else { "," },
                ident(&c.name)
            )));
            items += 1;
            let mut def = String::new();
            if t.of_type.is_none() {
                def.push(' ');
                def.push_str(&c.typ);
            }
            if let Some(opts) = &c.fdw_options {
                def.push_str(&format!(" OPTIONS ({opts})"));
            }
            if let Some(coll) = &c.collation {
                def.push_str(&format!(" COLLATE {coll}"));
            }
            sql.push(Segment::Text(def));
            if c.generated == "s" || c.generated == "v" {
                // An inheritance child takes a parent's generation expression (and may not
                // write one: no syntax for it); a partition is created on its own first.
                if let Some((_, expr)) = c
                    .default
                    .as_ref()
                    .filter(|_| !c.parent_generated || is_partition)
                {
                    sql.push(Segment::Text(format!(
                        " GENERATED ALWAYS AS ({expr}) {}",
                        // 18's virtual generated columns: computed when read.
                        if c.generated == "v" {
                            "VIRTUAL"
                        } else {
                            "STORED"
                        }
                    )));
                    generated_columns = true;
                }
            } else if c.parent_default && c.default.is_none() {
                sql.push(Segment::Text(" DEFAULT NULL".into()));
            } else if let Some((mut n, expr)) = default_part {
                sql.push(Segment::Part {
                    key: n.key,
                    inline: format!(" DEFAULT {expr}"),
                    split: String::new(),
                });
                n.part_of = Some(t.key);
                n.belongs_to = Some(t.key);
                n.section = Section::PreData;
                parts.push(n);
            }
            // A column with an identity sequence of its own. From 17 a partition's column
            // shares its partitioned table's (no sequence of its own): ATTACH gives it the
            // identity, and a partition created with one of its own could not be attached.
            if !c.identity.is_empty() && c.identity_sequence.is_some() {
                sql.push(Segment::Text(format!(
                    " GENERATED {} AS IDENTITY{}",
                    if c.identity == "a" {
                        "ALWAYS"
                    } else {
                        "BY DEFAULT"
                    },
                    c.identity_sequence
                        .as_ref()
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default()
                )));
            }
            match &c.not_null_constraint {
                // 18: the constraint with its name and NO INHERIT; a NOT VALID one after the
                // data (rows may break it); an inherited one comes with INHERITS (a
                // partition, created on its own and attached, writes it).
                Some(nn) if nn.validated => {
                    if nn.local || is_partition {
                        sql.push(Segment::Text(format!(
                            " CONSTRAINT {} NOT NULL{}",
                            ident(&nn.name),
                            if nn.no_inherit { " NO INHERIT" } else { "" }
                        )));
                        out.alias(nn.key.class, nn.key.oid, t.key);
                    }
                }
                Some(nn) => {
                    if nn.local {
                        parts.push(not_valid_not_null(t, keyword, &q, c, nn));
                    }
                }
                None => {
                    if c.not_null && (!c.inherited_not_null || is_partition) {
                        sql.push(Segment::Text(" NOT NULL".into()));
                    }
                }
            }
        }
        if c.stats_target >= 0 {
            after.push(format!(
                "ALTER {keyword} ONLY {col} SET STATISTICS {};",
                c.stats_target
            ));
        }
        if let Some(s) = &c.storage {
            after.push(format!("ALTER {keyword} ONLY {col} SET STORAGE {s};"));
        }
        if let Some(m) = &c.compression {
            if !foreign {
                after.push(format!("ALTER TABLE ONLY {col} SET COMPRESSION {m};"));
            }
        }
        if let Some(o) = &c.options {
            after.push(format!("ALTER {keyword} ONLY {col} SET ({o});"));
        }
    }
    // CHECK constraints: local ones inline (a partition's inherited ones too: ATTACH
    // expects them), NOT VALID ones after the data, inherited ones come with INHERITS.
    let mut inline_checks = 0;
    for ch in checks {
        let add = format!(
            "ALTER {keyword} {q} ADD CONSTRAINT {} {};",
            ident(&ch.name),
            ch.def
        );
        let mut n = Node::new(
            ch.key,
            EntryKind::CheckConstraint,
            Some(&t.schema),
            &format!("{} {}", t.name, ch.name),
            add,
        )
        .table(&t.name);
        n.owner = Some(t.owner.clone());
        n.facts.constraint = Some(ConstraintFacts {
            kind: ConstraintKind::Check,
            name: ch.name.clone(),
            validated: ch.validated,
        });
        if !ch.validated {
            if ch.local {
                parts.push(n.of(t.key));
            }
            continue;
        }
        if !ch.local && !is_partition {
            continue;
        }
        if items == 0 || inline_checks > 0 {
            // No column of its own (an inheritance child, a typed table): the list holds
            // only CHECK constraints, written as text (a split-off one would leave a
            // dangling comma); the constraint's dependencies are the table's.
            sql.push(Segment::Text(format!(
                "{}\n    CONSTRAINT {} {}",
                if inline_checks == 0 { " (" } else { "," },
                ident(&ch.name),
                ch.def
            )));
            inline_checks += 1;
            out.alias(ch.key.class, ch.key.oid, t.key);
            continue;
        }
        sql.push(Segment::Part {
            key: ch.key,
            inline: format!(",\n    CONSTRAINT {} {}", ident(&ch.name), ch.def),
            split: String::new(),
        });
        n.part_of = Some(t.key);
        n.belongs_to = Some(t.key);
        parts.push(n);
    }
    let mut tail = String::new();
    if items > 0 || inline_checks > 0 {
        tail.push_str("\n)");
    } else if t.of_type.is_none() {
        tail.push_str(" (\n)");
    }
    if !t.inherits.is_empty() {
        tail.push_str(&format!("\nINHERITS ({})", t.inherits.join(", ")));
    }
    if let Some(p) = &t.partition_by {
        tail.push_str(&format!("\nPARTITION BY {p}"));
    }
    if let Some((server, options)) = &t.server {
        tail.push_str(&format!("\nSERVER {server}"));
        if !options.is_empty() {
            tail.push_str(&format!("\nOPTIONS (\n    {options}\n)"));
        }
    }
    if let Some(am) = &t.access_method {
        tail.push_str(&format!("\nUSING {am}"));
    }
    if !t.reloptions.is_empty() {
        tail.push_str(&format!("\nWITH ({})", t.reloptions.join(", ")));
    }
    tail.push(';');
    match if foreign {
        ""
    } else {
        t.replica_identity.as_str()
    } {
        "f" => after.push(format!("ALTER {keyword} ONLY {q} REPLICA IDENTITY FULL;")),
        "n" => after.push(format!(
            "ALTER {keyword} ONLY {q} REPLICA IDENTITY NOTHING;"
        )),
        _ => {}
    }
    for a in &after {
        tail.push('\n');
        tail.push_str(a);
    }
    sql.insert(0, Segment::Text(text));
    sql.push(Segment::Text(tail));
    let kind = if foreign {
        EntryKind::ForeignTable
    } else {
        EntryKind::Table
    };
    let mut node = Node::new(t.key, kind, Some(&t.schema), &t.name, String::new()).owned(
        Some(t.owner.clone()),
        Some(owner_sql(keyword, &q, &t.owner)),
    );
    node.sql = sql;
    node = node.in_tablespace(t.tablespace.clone());
    node.builtin_code_only = t.builtin_code_only;
    node.facts.partition = is_partition;
    node.facts.partitioned = t.relkind == Relkind::PartitionedTable;
    node.facts.generated_columns = generated_columns;
    if t.parent != 0 {
        node.belongs_to = Some(ObjKey::new(PG_CLASS, t.parent));
    }
    out.push(node);
    for p in parts {
        out.push(p);
    }
    if let Some((parent, parent_key, bound)) = &t.partition_of {
        out.push(
            Node::new(
                t.key.with(Role::Attach),
                EntryKind::TableAttach,
                Some(&t.schema),
                &t.name,
                format!("ALTER TABLE ONLY {parent} ATTACH PARTITION {q} {bound};"),
            )
            .table(&t.name)
            .of(t.key)
            .dep(*parent_key),
        );
    }
}

/// 18's NOT VALID NOT NULL of a column: added after the data, like a NOT VALID CHECK, and
/// never validated (rows may break it).
fn not_valid_not_null(t: &Table, keyword: &str, q: &str, c: &Column, nn: &NotNull) -> Node {
    let mut n = Node::new(
        nn.key,
        EntryKind::CheckConstraint,
        Some(&t.schema),
        &format!("{} {}", t.name, nn.name),
        format!(
            "ALTER {keyword} {q} ADD CONSTRAINT {} NOT NULL {}{} NOT VALID;",
            ident(&nn.name),
            ident(&c.name),
            if nn.no_inherit { " NO INHERIT" } else { "" }
        ),
    )
    .table(&t.name);
    n.owner = Some(t.owner.clone());
    n.facts.constraint = Some(ConstraintFacts {
        kind: ConstraintKind::NotNull,
        name: nn.name.clone(),
        validated: false,
    });
    n.of(t.key)
}

fn sequences(cx: &Context, out: &mut Collected) -> Result<()> {
    // Sequences of identity columns are created by their column; the others here, with
    // their OWNED BY as an entry of its own (after both the sequence and the table).
    let rows = query(
        cx,
        "SELECT c.tableoid, c.oid, n.nspname::text, c.relname::text, pg_catalog.pg_get_userbyid(c.relowner)::text,
                pg_catalog.format('CREATE %sSEQUENCE %I.%I\n    AS %s\n    START WITH %s\n    INCREMENT BY %s\n    MINVALUE %s\n    MAXVALUE %s\n    CACHE %s%s;',
                       CASE WHEN c.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END,
                       n.nspname, c.relname, pg_catalog.format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
                       s.seqmin, s.seqmax, s.seqcache, CASE WHEN s.seqcycle THEN E'\n    CYCLE' ELSE '' END),
                (SELECT pg_catalog.format('ALTER SEQUENCE %I.%I OWNED BY %I.%I.%I;', n.nspname, c.relname, tn.nspname, t.relname, a.attname)
                 FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
                 JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
                 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
                   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'a'
                   AND t.oid = ANY($1)),
                (SELECT d.refobjid FROM pg_catalog.pg_depend d
                 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
                   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'a' LIMIT 1)
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
         WHERE c.oid = ANY($1) AND c.relkind = 'S'
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                           AND d.objid = c.oid AND d.deptype = 'i')
         ORDER BY c.oid",
        |r| {
            Ok((
                ObjKey::new(r.oid(1)?, r.oid(2)?),
                r.string(3)?,
                r.string(4)?,
                r.string(5)?,
                r.string(6)?,
                r.text(7)?,
                r.oid(8)?,
            ))
        },
    )?;
    for (key, schema, name, owner, sql, owned_by, table) in rows {
        let q = qualified(&schema, &name);
        let mut seq = Node::new(key, EntryKind::Sequence, Some(&schema), &name, sql)
            .owned(Some(owner.clone()), Some(owner_sql("SEQUENCE", &q, &owner)));
        if owned_by.is_some() {
            // An owned sequence comes with its table (without depending on it).
            seq.belongs_to = Some(ObjKey::new(PG_CLASS, table));
        }
        out.push(seq);
        if let Some(sql) = owned_by {
            out.push(
                Node::new(
                    key.with(Role::OwnedBy),
                    EntryKind::SequenceOwnedBy,
                    Some(&schema),
                    &name,
                    sql,
                )
                .of(key)
                .dep(ObjKey::new(PG_CLASS, table)),
            );
        }
    }
    Ok(())
}

fn views(cx: &Context, out: &mut Collected) -> Result<()> {
    let rows = query(
        cx,
        r#"SELECT c.tableoid, c.oid, n.nspname::text, c.relname::text, pg_catalog.pg_get_userbyid(c.relowner)::text,
                  c.relkind::text, pg_catalog.pg_get_viewdef(c.oid),
                  ARRAY(SELECT x FROM pg_catalog.unnest(c.reloptions) x WHERE x !~ '^check_option=')::text[],
                  (SELECT pg_catalog.upper(pg_catalog.substr(x, 14)) FROM pg_catalog.unnest(c.reloptions) x WHERE x ~ '^check_option='),
                  (SELECT r.tableoid FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename = '_RETURN'),
                  (SELECT r.oid FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename = '_RETURN'),
                  (SELECT pg_catalog.string_agg(pg_catalog.format(E'\n    NULL::%s%s AS %I', pg_catalog.format_type(a.atttypid, a.atttypmod),
                          CASE WHEN a.attcollation <> 0 AND a.attcollation IS DISTINCT FROM t.typcollation
                               THEN (SELECT pg_catalog.format(' COLLATE %I.%I', cn.nspname, co.collname) FROM pg_catalog.pg_collation co
                                     JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) ELSE '' END,
                          a.attname), ',' ORDER BY a.attnum)
                   FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
                  ARRAY(SELECT DISTINCT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0)::pg_catalog.oid[],
                  (SELECT pg_catalog.quote_ident(am.amname) FROM pg_catalog.pg_am am WHERE am.oid = c.relam AND am.amname <> 'heap'),
                  c.relispopulated,
                  (SELECT pg_catalog.string_agg(x.s, '' ORDER BY x.k, x.o) FROM (
                     SELECT a.attnum AS k, 1 AS o,
                            pg_catalog.format(E'\nALTER TABLE ONLY %I.%I ALTER COLUMN %I SET STATISTICS %s;', n.nspname, c.relname, a.attname, a.attstattarget) AS s
                     FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND a.attstattarget >= 0
                     UNION ALL
                     SELECT a.attnum, 2, pg_catalog.format(E'\nALTER TABLE ONLY %I.%I ALTER COLUMN %I SET STORAGE %s;', n.nspname, c.relname, a.attname,
                            CASE a.attstorage WHEN 'p' THEN 'PLAIN' WHEN 'e' THEN 'EXTERNAL' WHEN 'm' THEN 'MAIN' ELSE 'EXTENDED' END)
                     FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                     WHERE a.attrelid = c.oid AND a.attnum > 0 AND a.attstorage <> t.typstorage
                     UNION ALL
                     SELECT a.attnum, 3, pg_catalog.format(E'\nALTER TABLE ONLY %I.%I ALTER COLUMN %I SET COMPRESSION %s;', n.nspname, c.relname, a.attname,
                            CASE a.attcompression WHEN 'p' THEN 'pglz' ELSE 'lz4' END)
                     FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND a.attcompression <> '') x
                   WHERE c.relkind = 'm'),
                  (SELECT ts.spcname::text FROM pg_catalog.pg_tablespace ts WHERE ts.oid = c.reltablespace)
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           WHERE c.oid = ANY($1) AND c.relkind IN ('v', 'm')
           ORDER BY c.oid"#,
        |r| {
            Ok(ViewRow {
                key: ObjKey::new(r.oid(1)?, r.oid(2)?),
                schema: r.string(3)?,
                name: r.string(4)?,
                owner: r.string(5)?,
                materialized: Relkind::decode(&r.string(6)?)? == Relkind::MaterializedView,
                query: r.string(7)?,
                options: r.texts(8)?,
                check_option: r.text(9)?,
                rule: ObjKey::new(r.oid(10)?, r.oid(11)?),
                placeholder: r.string(12)?,
                column_types: r
                    .0
                    .get::<Vec<pg_sys::Oid>>(13)?
                    .unwrap_or_default()
                    .into_iter()
                    .map(u32::from)
                    .collect(),
                access_method: r.text(14)?,
                populated: r.bool(15)?,
                column_options: r.text(16)?.unwrap_or_default(),
                tablespace: r.text(17)?,
            })
        },
    )?;
    for v in rows {
        view(v, cx, out);
    }
    Ok(())
}

struct ViewRow {
    key: ObjKey,
    schema: String,
    name: String,
    owner: String,
    materialized: bool,
    query: String,
    options: Vec<String>,
    check_option: Option<String>,
    rule: ObjKey,
    placeholder: String,
    column_types: Vec<u32>,
    access_method: Option<String>,
    populated: bool,
    /// ALTER TABLE ... ALTER COLUMN statements (materialized views: statistics, storage,
    /// compression).
    column_options: String,
    /// A materialized view's tablespace when not the database's default.
    tablespace: Option<String>,
}

fn view(v: ViewRow, cx: &Context, out: &mut Collected) {
    let q = qualified(&v.schema, &v.name);
    let query = v.query.trim_end().trim_end_matches(';').to_string();
    let with = if v.options.is_empty() {
        String::new()
    } else {
        format!(" WITH ({})", v.options.join(", "))
    };
    if v.materialized {
        let am = v
            .access_method
            .as_ref()
            .map(|a| format!(" USING {a}"))
            .unwrap_or_default();
        let mut node = Node::new(
            v.key,
            EntryKind::MaterializedView,
            Some(&v.schema),
            &v.name,
            format!(
                "CREATE MATERIALIZED VIEW {q}{am}{with} AS\n{query}\n  WITH NO DATA;{}",
                v.column_options
            ),
        )
        .owned(
            Some(v.owner.clone()),
            Some(owner_sql("MATERIALIZED VIEW", &q, &v.owner)),
        )
        .in_tablespace(v.tablespace.clone());
        for t in &v.column_types {
            node.deps.insert(ObjKey::new(PG_TYPE, *t));
        }
        out.push(node);
        // The matview's rewrite rule is part of it.
        out.alias(v.rule.class, v.rule.oid, v.key);
        if v.populated && cx.sequence_values {
            out.push(
                Node::new(
                    v.key.with(Role::Refresh),
                    EntryKind::MaterializedViewRefresh,
                    Some(&v.schema),
                    &v.name,
                    format!("REFRESH MATERIALIZED VIEW {q};"),
                )
                .table(&v.name)
                .of(v.key),
            );
        }
        return;
    }
    let check = v
        .check_option
        .as_ref()
        .map(|c| format!("\n  WITH {c} CHECK OPTION"))
        .unwrap_or_default();
    let mut node = Node::new(
        v.key,
        EntryKind::View,
        Some(&v.schema),
        &v.name,
        String::new(),
    )
    .owned(Some(v.owner.clone()), Some(owner_sql("VIEW", &q, &v.owner)));
    // The placeholder's columns need their types before the view.
    for t in &v.column_types {
        node.deps.insert(ObjKey::new(PG_TYPE, *t));
    }
    node.sql = vec![
        Segment::Text(format!("CREATE VIEW {q}{with} AS\n")),
        Segment::Part {
            key: v.rule,
            inline: format!("{query}{check};"),
            split: format!("SELECT{};", v.placeholder),
        },
    ];
    out.push(node);
    let mut rule = Node::new(
        v.rule,
        EntryKind::ViewQuery,
        Some(&v.schema),
        &v.name,
        format!("CREATE OR REPLACE VIEW {q}{with} AS\n{query}{check};"),
    )
    .table(&v.name);
    rule.part_of = Some(v.key);
    rule.belongs_to = Some(v.key);
    rule.owner = Some(v.owner.clone());
    out.push(rule);
    let _ = PG_REWRITE;
}

/// Defaults of view columns (for inserts through the view): always their own entry.
fn view_defaults(cx: &Context, out: &mut Collected) -> Result<()> {
    let rows = query(
        cx,
        "SELECT ad.tableoid, ad.oid, n.nspname::text, c.relname::text, a.attname::text,
                pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), c.tableoid, c.oid
         FROM pg_catalog.pg_attrdef ad JOIN pg_catalog.pg_class c ON c.oid = ad.adrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_catalog.pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
         WHERE c.oid = ANY($1) AND c.relkind = 'v'",
        |r| {
            let (schema, rel, col) = (r.string(3)?, r.string(4)?, r.string(5)?);
            Ok(Node::new(
                ObjKey::new(r.oid(1)?, r.oid(2)?),
                EntryKind::Default,
                Some(&schema),
                &format!("{rel} {col}"),
                format!(
                    "ALTER VIEW {} ALTER COLUMN {} SET DEFAULT {};",
                    qualified(&schema, &rel),
                    ident(&col),
                    r.string(6)?
                ),
            )
            .table(&rel)
            .of(ObjKey::new(r.oid(7)?, r.oid(8)?)))
        },
    )?;
    rows.into_iter().for_each(|n| out.push(n));
    Ok(())
}

/// Data entries: each table's rows, each sequence's value (read now: sequences are not
/// transactional, as in pg_dump).
fn data(cx: &Context, out: &mut Collected) -> Result<()> {
    let tables = query(
        cx,
        "SELECT c.oid, n.nspname::text, c.relname::text FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = ANY($1) ORDER BY c.oid",
        |r| Ok((r.oid(1)?, r.string(2)?, r.string(3)?)),
    )?;
    let data: std::collections::HashSet<u32> =
        cx.data_tables.iter().map(|o| u32::from(*o)).collect();
    for (oid, schema, name) in tables.iter().filter(|t| data.contains(&t.0)) {
        out.push(
            Node::new(
                data_key(PG_CLASS, *oid),
                EntryKind::TableData,
                Some(schema),
                name,
                String::new(),
            )
            .table(name)
            .of(ObjKey::new(PG_CLASS, *oid)),
        );
    }
    if !cx.sequence_values {
        return Ok(());
    }
    let seqs = query(
        cx,
        "SELECT c.oid, n.nspname::text, c.relname::text,
                (SELECT d.refobjid FROM pg_catalog.pg_depend d
                 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
                   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i') LIMIT 1)
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = ANY($1) AND c.relkind = 'S' ORDER BY c.oid",
        |r| Ok((r.oid(1)?, r.string(2)?, r.string(3)?, r.oid(4)?)),
    )?;
    for (oid, schema, name, owner_table) in seqs {
        let q = qualified(&schema, &name);
        let (value, called) =
            crate::text::two::<i64, bool>(&format!("SELECT last_value, is_called FROM {q}"), &[])?;
        let mut node = Node::new(
            data_key(PG_CLASS, oid),
            EntryKind::SequenceSet,
            Some(&schema),
            &name,
            format!(
                "SELECT pg_catalog.setval({}, {}, {});",
                literal(&q),
                value.unwrap_or(1),
                called.unwrap_or(false)
            ),
        )
        .dep(ObjKey::new(PG_CLASS, oid));
        // An owned sequence's value goes with its table's rows.
        node = node.of(if owner_table != 0 {
            ObjKey::new(PG_CLASS, owner_table)
        } else {
            ObjKey::new(PG_CLASS, oid)
        });
        out.push(node);
    }
    Ok(())
}

/// Catalog rows that are part of a relation: its row type, an identity column's sequence.
fn aliases(cx: &Context, out: &mut Collected) -> Result<()> {
    let rows = query(
        cx,
        "SELECT 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid, c.reltype, c.tableoid, c.oid
         FROM pg_catalog.pg_class c WHERE c.oid = ANY($1) AND c.reltype <> 0
         UNION ALL
         SELECT d.classid, d.objid, d.refclassid, d.refobjid FROM pg_catalog.pg_depend d
         WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
           AND d.deptype = 'i' AND d.refobjid = ANY($1)
           AND (SELECT relkind FROM pg_catalog.pg_class WHERE oid = d.objid) = 'S'",
        |r| Ok((r.oid(1)?, r.oid(2)?, r.oid(3)?, r.oid(4)?)),
    )?;
    for (class, oid, tclass, toid) in rows {
        out.alias(class, oid, ObjKey::new(tclass, toid));
    }
    Ok(())
}
