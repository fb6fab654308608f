//! Shared by the fidelity test targets (tests/fidelity.rs, tests/regression.rs): their server
//! (tests/support's, database `app` made from template0), and the judge of a round trip: a database is backed up
//! and restored, then compared with its source the way pg_upgrade's test judges pg_dump:
//! `pg_dump --schema-only` (entry by entry) plus per-table row fingerprints, sequence values and
//! large objects. `pg_dump -Fc | pg_restore` of the same database is measured the same way, and
//! pg_backup is held to it: it may leave no difference that pg_dump does not also leave.
#![allow(dead_code)] // each test target uses its own part of this module

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use postgres::Client;

use crate::support::*;

/// The fidelity targets' server: database `app` (from template0, as pg_dump's restore
/// instructions say) with pg_backup.
pub fn server(extra_conf: &str) -> Server {
    let s = Server::builder().conf(extra_conf).without_app().start();
    s.create_db("app");
    s.connect("app")
        .batch_execute("CREATE EXTENSION pg_backup")
        .unwrap();
    s
}

// ---------------------------------------------------------------------------------------------
// Backing up and restoring, by pg_backup and by pg_dump.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Native,
    Sql,
    Json,
    Csv,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Native, Format::Sql, Format::Json, Format::Csv];

    pub fn name(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Sql => "sql",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }
}

/// `backup.create(format => ...)` of `db`; the backup id.
pub fn create_backup(s: &Server, db: &str, format: Format) -> Result<String, String> {
    create_backup_with_jobs(s, db, format, 1)
}

/// `backup.create(format => ..., jobs => N)` of `db`; the backup id.
pub fn create_backup_with_jobs(
    s: &Server,
    db: &str,
    format: Format,
    jobs: i32,
) -> Result<String, String> {
    s.connect(db)
        .query_one(
            "SELECT backup_id FROM backup.create(label => $1, format => $2, jobs => $3)",
            &[
                &format!("fidelity-{}", format.name()),
                &format.name(),
                &jobs,
            ],
        )
        .map(|r| r.get(0))
        .map_err(|e| {
            format!(
                "backup.create(format => '{}', jobs => {jobs}): {}",
                format.name(),
                describe(&e)
            )
        })
}

/// How a restore went: its error (if it failed as a whole) and the result rows not 'ok'.
#[derive(Default)]
pub struct RestoreOutcome {
    pub error: Option<String>,
    pub problems: Vec<String>,
}

/// `backup.restore(id, on_error => ...)` into a new database `db` that has pg_backup.
pub fn restore_with_pg_backup(
    s: &Server,
    db: &str,
    id: &str,
    on_error: &str,
    search_path: Option<&str>,
) -> RestoreOutcome {
    restore_with_pg_backup_using(s, db, id, on_error, search_path, "")
}

/// `restore_with_pg_backup` with more arguments of restore() (`, atomic => false, ...`).
pub fn restore_with_pg_backup_using(
    s: &Server,
    db: &str,
    id: &str,
    on_error: &str,
    search_path: Option<&str>,
    more_args: &str,
) -> RestoreOutcome {
    s.create_db(db);
    let mut c = s.connect(db);
    c.batch_execute("CREATE EXTENSION pg_backup").unwrap();
    if let Some(path) = search_path {
        c.batch_execute(&format!("SET search_path = {path}"))
            .unwrap();
    }
    c.query("SELECT * FROM backup.rescan()", &[]).unwrap();
    restore_in(&mut c, id, on_error, more_args)
}

/// `backup.restore(id, on_error => ...{more_args})` through `c`: the error that ended it, or
/// the rows that did not end `ok`.
pub fn restore_in(c: &mut Client, id: &str, on_error: &str, more_args: &str) -> RestoreOutcome {
    match c.query(
        &format!("SELECT object, kind, action, status, detail FROM backup.restore($1, on_error => $2{more_args})"),
        &[&id, &on_error],
    ) {
        Err(e) => RestoreOutcome {
            error: Some(describe(&e)),
            problems: vec![],
        },
        Ok(rows) => RestoreOutcome {
            error: None,
            problems: rows
                .iter()
                .filter(|r| r.get::<_, String>(3) != "ok")
                .map(|r| {
                    format!(
                        "{} {} ({}): {} {}",
                        r.get::<_, String>(1),
                        r.get::<_, String>(0),
                        r.get::<_, String>(2),
                        r.get::<_, String>(3),
                        r.get::<_, Option<String>>(4).unwrap_or_default()
                    )
                })
                .collect(),
        },
    }
}

/// The archive folder of a backup.
pub fn archive_dir(s: &Server, id: &str) -> PathBuf {
    s.data.join("pg_backup").join(id)
}

/// A `sql`-format backup's script, through plain psql (ON_ERROR_STOP) into a new database
/// without pg_backup. The first error, if any.
pub fn restore_script_with_psql(
    s: &Server,
    db: &str,
    id: &str,
    search_path: Option<&str>,
) -> Option<String> {
    s.create_db(db);
    let dir = archive_dir(s, id);
    let script = ["backup.sql.zst", "backup.sql.gz", "backup.sql"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no backup.sql[.zst|.gz] in {}", dir.display()));
    let cat = match script.extension().and_then(|e| e.to_str()) {
        Some("gz") => "gunzip -c",
        Some("zst") => "zstd -dc",
        _ => "cat",
    };
    let sh = format!(
        "{cat} '{}' | '{}' -X -q -v ON_ERROR_STOP=1 -h '{}' -p {} -d {db} 2>&1 >/dev/null",
        script.display(),
        bin("psql"),
        s.socket.display(),
        s.port
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &sh]);
    if let Some(path) = search_path {
        cmd.env("PGOPTIONS", format!("-c search_path={path}"));
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (!out.status.success()).then(|| {
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
        format!(
            "psql stopped: {}",
            if errors.is_empty() {
                text.trim().to_string()
            } else {
                errors.join(" | ")
            }
        )
    })
}

/// `pg_dump -Fc` of `src` (without pg_backup's own schema) restored by `pg_restore` into a new
/// database `dst` that has pg_backup, as the databases pg_backup restores into: the bar
/// pg_backup is held to. pg_restore's errors, if any.
pub fn restore_with_pg_dump(s: &Server, src: &str, dst: &str) -> Vec<String> {
    let file = s.dir.path().join(format!("{src}.dump"));
    run(s
        .client("pg_dump")
        .args(["-Fc", "--exclude-schema=backup", "-d", src, "-f"])
        .arg(&file));
    s.create_db(dst);
    s.connect(dst)
        .batch_execute("CREATE EXTENSION pg_backup")
        .unwrap();
    let out = s
        .client("pg_restore")
        .args(["-d", dst])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("error:"))
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// What is compared.

/// One entry of `pg_dump --schema-only`, keyed by its TOC header (`-- Name: ...; Type: ...;
/// Schema: ...`). Owner and tablespace become lines of the body, so a wrong owner shows as a
/// changed entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub kind: String,
    pub schema: String,
    pub name: String,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.schema == "-" {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}.{}", self.kind, self.schema, self.name)
        }
    }
}

#[derive(Default)]
pub struct SchemaDump {
    /// Entry bodies per key (a key can repeat: then the bodies are sorted).
    pub entries: BTreeMap<Key, Vec<Vec<String>>>,
    /// Keys in the dump's order.
    pub order: Vec<Key>,
}

impl SchemaDump {
    /// `pg_dump --schema-only` of `db`, pg_backup's own schema and extension left out.
    pub fn take(s: &Server, db: &str) -> SchemaDump {
        SchemaDump::take_with(s, db, &s.bin("pg_dump"))
    }

    /// [`SchemaDump::take`] with another installation's `pg_dump` (a newer pg_dump dumping an
    /// older server, as users upgrade: tests/cross_version.rs).
    pub fn take_with(s: &Server, db: &str, pg_dump: &std::path::Path) -> SchemaDump {
        let text = run(Command::new(pg_dump)
            .arg("-h")
            .arg(&s.socket)
            .args(["-p", &s.port.to_string()])
            .args(["--schema-only", "--exclude-schema=backup", "-d", db]));
        let mut dump = SchemaDump::parse(&text);
        dump.entries.retain(|k, _| !is_pg_backup_itself(k));
        dump.order.retain(|k| !is_pg_backup_itself(k));
        dump
    }

    pub fn parse(text: &str) -> SchemaDump {
        let mut dump = SchemaDump::default();
        let mut current: Option<(Key, Vec<String>)> = None;
        let finish = |cur: Option<(Key, Vec<String>)>, dump: &mut SchemaDump| {
            if let Some((k, body)) = cur {
                dump.order.push(k.clone());
                let bodies = dump.entries.entry(k).or_default();
                bodies.push(body);
                bodies.sort();
            }
        };
        for line in text.lines() {
            if let Some(h) = line
                .strip_prefix("-- Name: ")
                .or_else(|| line.strip_prefix("-- Data for Name: "))
            {
                finish(current.take(), &mut dump);
                let (key, extra) = parse_header(h);
                current = Some((key, extra));
                continue;
            }
            // Lines outside the entries: session settings, the \restrict key (random per
            // dump), the "--" frames of headers, blank lines. `SET SESSION AUTHORIZATION`
            // inside a grant entry names the grantor of the grants that follow: kept.
            if line.is_empty()
                || line == "--"
                || (line.starts_with("SET ") && !line.starts_with("SET SESSION AUTHORIZATION "))
                || line.starts_with("SELECT pg_catalog.set_config")
                || line.starts_with("\\restrict")
                || line.starts_with("\\unrestrict")
                || line.starts_with("-- Dumped ")
                || line.starts_with("-- PostgreSQL database dump")
            {
                continue;
            }
            if let Some((_, body)) = current.as_mut() {
                body.push(line.to_string());
            }
        }
        finish(current.take(), &mut dump);
        dump
    }

    pub fn line_count(&self) -> usize {
        self.entries.values().flatten().map(Vec::len).sum()
    }
}

/// `name; Type: T; Schema: S; Owner: O[; Tablespace: X]` → key and the pseudo-lines for
/// owner and tablespace.
fn parse_header(h: &str) -> (Key, Vec<String>) {
    let mut rest = h;
    let mut extra = Vec::new();
    let take = |rest: &mut &str, field: &str| -> Option<String> {
        let at = rest.rfind(field)?;
        let v = rest[at + field.len()..].to_string();
        *rest = &rest[..at];
        Some(v)
    };
    if let Some(ts) = take(&mut rest, "; Tablespace: ") {
        extra.push(format!("-- tablespace: {ts}"));
    }
    if let Some(owner) = take(&mut rest, "; Owner: ") {
        extra.push(format!("-- owner: {owner}"));
    }
    let schema = take(&mut rest, "; Schema: ").unwrap_or_default();
    let kind = take(&mut rest, "; Type: ").unwrap_or_default();
    (
        Key {
            kind,
            schema,
            name: rest.to_string(),
        },
        extra,
    )
}

fn is_pg_backup_itself(k: &Key) -> bool {
    (k.kind == "EXTENSION" && k.name == "pg_backup")
        || (k.kind == "COMMENT" && k.name == "EXTENSION pg_backup")
        || k.schema == "backup"
}

/// Per-table row fingerprints (count and md5 of the rows as text, ordered), sequence values
/// and large objects, read with row security off. With `json_null_is_null`, a json/jsonb
/// column's JSON `null` counts as SQL NULL (the documented limit of the json format).
pub fn data_fingerprint(s: &Server, db: &str, json_null_is_null: bool) -> BTreeMap<String, String> {
    let mut c = s.connect(db);
    // Text output that does not depend on the database's own settings.
    c.batch_execute(
        "SET row_security = off; SET datestyle = 'ISO, YMD'; SET intervalstyle = postgres;
         SET timezone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = hex;
         SET lc_monetary = 'C'; SET lc_numeric = 'C'; SET search_path = pg_catalog",
    )
    .unwrap();
    let user_ns = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'backup')
                   AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'";
    let mut out = BTreeMap::new();
    let tables = c
        .query(
            &format!(
                "SELECT c.oid::int8, format('%I.%I', n.nspname, c.relname), c.relkind::text, c.relispopulated
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r', 'm') AND {user_ns} ORDER BY 2"
            ),
            &[],
        )
        .unwrap();
    for t in tables {
        let (oid, name, kind, populated): (i64, String, String, bool) =
            (t.get(0), t.get(1), t.get(2), t.get(3));
        let label = format!("{} {name}", if kind == "m" { "matview" } else { "table" });
        if !populated {
            out.insert(label, "not populated".into());
            continue;
        }
        let row = if json_null_is_null {
            json_normalized_row(&mut c, oid)
        } else {
            None
        }
        .unwrap_or_else(|| "x::text".into());
        let fp = c
            .query_one(
                &format!(
                    "SELECT count(*) || ' rows, md5 ' || coalesce(md5(string_agg({row}, E'\\n' ORDER BY {row} COLLATE \"C\")), '-')
                     FROM ONLY {name} x"
                ),
                &[],
            )
            .map(|r| r.get::<_, String>(0))
            .unwrap_or_else(|e| format!("unreadable: {}", describe(&e)));
        out.insert(label, fp);
    }
    let seqs = c
        .query(
            &format!(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S' AND {user_ns} ORDER BY 1"
            ),
            &[],
        )
        .unwrap();
    for r in seqs {
        let name: String = r.get(0);
        let v: String = c
            .query_one(
                &format!("SELECT last_value || CASE WHEN is_called THEN ' called' ELSE '' END FROM {name}"),
                &[],
            )
            .unwrap()
            .get(0);
        out.insert(format!("sequence {name}"), v);
    }
    for r in c
        .query(
            "SELECT l.oid::text, format('owner %s, acl %s, comment %s, md5 %s', l.lomowner::regrole,
                    coalesce(l.lomacl::text, '-'), coalesce(obj_description(l.oid, 'pg_largeobject'), '-'),
                    md5(lo_get(l.oid)))
             FROM pg_largeobject_metadata l ORDER BY l.oid",
            &[],
        )
        .unwrap()
    {
        out.insert(format!("large object {}", r.get::<_, String>(0)), r.get(1));
    }
    out
}

/// `ROW(...)::text` for a table with json/jsonb columns, their JSON nulls made SQL NULL.
fn json_normalized_row(c: &mut Client, oid: i64) -> Option<String> {
    let cols = c
        .query(
            "SELECT quote_ident(attname), atttypid IN ('json'::regtype, 'jsonb'::regtype)
             FROM pg_attribute WHERE attrelid = $1::int8::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )
        .unwrap();
    if !cols.iter().any(|r| r.get::<_, bool>(1)) {
        return None;
    }
    let exprs: Vec<String> = cols
        .iter()
        .map(|r| {
            let col: String = r.get(0);
            if r.get::<_, bool>(1) {
                format!("CASE WHEN x.{col}::text = 'null' THEN NULL ELSE x.{col} END")
            } else {
                format!("x.{col}")
            }
        })
        .collect();
    Some(format!("ROW({})::text", exprs.join(", ")))
}

pub struct Snapshot {
    pub schema: SchemaDump,
    pub data: BTreeMap<String, String>,
}

impl Snapshot {
    pub fn take(s: &Server, db: &str, json_null_is_null: bool) -> Snapshot {
        Snapshot {
            schema: SchemaDump::take(s, db),
            data: data_fingerprint(s, db, json_null_is_null),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Differences between a source and a restored copy.

/// One difference a restore left. The restored side's content is part of it, so a difference
/// pg_dump also leaves is recognised only when both restores produced the same thing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Difference {
    /// An entry of the source's dump is not in the restored dump.
    Missing { key: Key, lines: usize },
    /// The restored dump has an entry the source does not have.
    Extra {
        key: Key,
        restored: Vec<Vec<String>>,
    },
    /// The entry differs: `removed`/`added` are the lines only in the source / the copy.
    Changed {
        key: Key,
        restored: Vec<Vec<String>>,
        removed: Vec<String>,
        added: Vec<String>,
    },
    /// Rows, a sequence value or a large object differ.
    Data {
        what: String,
        source: String,
        restored: String,
    },
}

impl Difference {
    /// Equal as far as "does pg_dump leave the same difference" goes.
    fn same_as(&self, other: &Difference) -> bool {
        use Difference::*;
        match (self, other) {
            (Missing { key: a, .. }, Missing { key: b, .. }) => a == b,
            (
                Extra {
                    key: a,
                    restored: x,
                },
                Extra {
                    key: b,
                    restored: y,
                },
            ) => a == b && x == y,
            (
                Changed {
                    key: a,
                    restored: x,
                    ..
                },
                Changed {
                    key: b,
                    restored: y,
                    ..
                },
            ) => a == b && x == y,
            (
                Data {
                    what: a,
                    restored: x,
                    ..
                },
                Data {
                    what: b,
                    restored: y,
                    ..
                },
            ) => a == b && x == y,
            _ => false,
        }
    }

    pub fn kind(&self) -> &str {
        match self {
            Difference::Missing { key, .. }
            | Difference::Extra { key, .. }
            | Difference::Changed { key, .. } => &key.kind,
            Difference::Data { what, .. } if what.starts_with("large object") => "large object",
            Difference::Data { what, .. } => what.split(' ').next().unwrap_or(""),
        }
    }

    fn lines(&self) -> usize {
        match self {
            Difference::Missing { lines, .. } => *lines,
            Difference::Extra { restored, .. } => restored.iter().map(Vec::len).sum(),
            // Same lines in another order (e.g. columns): count the entry's lines.
            Difference::Changed {
                removed,
                added,
                restored,
                ..
            } if removed.is_empty() && added.is_empty() => restored.iter().map(Vec::len).sum(),
            Difference::Changed { removed, added, .. } => removed.len() + added.len(),
            Difference::Data { .. } => 0,
        }
    }
}

/// Every difference between `source` and `restored`.
pub fn differences(source: &Snapshot, restored: &Snapshot) -> Vec<Difference> {
    let mut out = Vec::new();
    let (a, b) = (&source.schema.entries, &restored.schema.entries);
    for (key, bodies) in a {
        match b.get(key) {
            None => out.push(Difference::Missing {
                key: key.clone(),
                lines: bodies.iter().map(Vec::len).sum(),
            }),
            Some(other) if other != bodies => {
                let (removed, added) = line_difference(bodies, other);
                out.push(Difference::Changed {
                    key: key.clone(),
                    restored: other.clone(),
                    removed,
                    added,
                });
            }
            Some(_) => {}
        }
    }
    for (key, bodies) in b {
        if !a.contains_key(key) {
            out.push(Difference::Extra {
                key: key.clone(),
                restored: bodies.clone(),
            });
        }
    }
    let keys: BTreeSet<&String> = source.data.keys().chain(restored.data.keys()).collect();
    for what in keys {
        let s = source.data.get(what).map_or("absent", String::as_str);
        let r = restored.data.get(what).map_or("absent", String::as_str);
        if s != r {
            out.push(Difference::Data {
                what: what.clone(),
                source: s.into(),
                restored: r.into(),
            });
        }
    }
    out
}

/// Lines only in `a`, lines only in `b` (as multisets, in `a`'s / `b`'s order).
fn line_difference(a: &[Vec<String>], b: &[Vec<String>]) -> (Vec<String>, Vec<String>) {
    fn only(x: &[Vec<String>], y: &[Vec<String>]) -> Vec<String> {
        let mut left: BTreeMap<&str, usize> = BTreeMap::new();
        for l in y.iter().flatten() {
            *left.entry(l.as_str()).or_default() += 1;
        }
        x.iter()
            .flatten()
            .filter(|l| match left.get_mut(l.as_str()) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    false
                }
                _ => true,
            })
            .cloned()
            .collect()
    }
    (only(a, b), only(b, a))
}

/// How many entries of the copy's dump stand in another order than in the source's (entries
/// both have, minus the longest run they share in order). Informational: pg_dump sorts ties by
/// oid, which a restore does not keep.
pub fn moved_entries(source: &SchemaDump, restored: &SchemaDump) -> usize {
    let pos: BTreeMap<&Key, usize> = source
        .order
        .iter()
        .enumerate()
        .map(|(i, k)| (k, i))
        .collect();
    let seq: Vec<usize> = restored
        .order
        .iter()
        .filter_map(|k| pos.get(k).copied())
        .collect();
    // Longest increasing subsequence, patience sorting.
    let mut tails: Vec<usize> = Vec::new();
    for &x in &seq {
        match tails.binary_search(&x) {
            Ok(_) => {}
            Err(i) if i == tails.len() => tails.push(x),
            Err(i) => tails[i] = x,
        }
    }
    seq.len() - tails.len()
}

/// The differences in `ours` that `bar` (pg_dump's restore of the same source) does not leave.
pub fn not_left_by(ours: &[Difference], bar: &[Difference]) -> Vec<Difference> {
    ours.iter()
        .filter(|d| !bar.iter().any(|b| d.same_as(b)))
        .cloned()
        .collect()
}

/// A readable summary: counts by object kind, then tables whose rows differ, etc.
pub fn summarize(diffs: &[Difference]) -> String {
    let mut by_kind: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for d in diffs {
        let what = match d {
            Difference::Missing { .. } => "missing",
            Difference::Extra { .. } => "extra",
            Difference::Changed { .. } => "changed",
            Difference::Data { what, .. }
                if what.starts_with("table") || what.starts_with("matview") =>
            {
                "rows differ"
            }
            Difference::Data { .. } => "differs",
        };
        *by_kind.entry((d.kind(), what)).or_default() += 1;
    }
    let lines: usize = diffs.iter().map(Difference::lines).sum();
    let entries = diffs
        .iter()
        .filter(|d| !matches!(d, Difference::Data { .. }))
        .count();
    let mut s = format!("{entries} schema entries differ ({lines} lines)");
    if !by_kind.is_empty() {
        let kinds: Vec<String> = by_kind
            .iter()
            .map(|((k, w), n)| format!("{k} {w} {n}"))
            .collect();
        let _ = write!(s, "; by kind: {}", kinds.join(", "));
    }
    let data: Vec<&str> = diffs
        .iter()
        .filter_map(|d| match d {
            Difference::Data { what, .. } => Some(what.as_str()),
            _ => None,
        })
        .collect();
    if !data.is_empty() {
        let _ = write!(s, "\n    data differs ({}): ", data.len());
        s.push_str(&data[..data.len().min(25)].join(", "));
        if data.len() > 25 {
            let _ = write!(s, ", ... ({} more in the report)", data.len() - 25);
        }
    }
    s
}

/// Every difference in full (for the report file).
pub fn detail(diffs: &[Difference]) -> String {
    let mut s = String::new();
    for d in diffs {
        match d {
            Difference::Missing { key, lines } => {
                let _ = writeln!(s, "missing: {key} ({lines} lines)");
            }
            Difference::Extra { key, restored } => {
                let _ = writeln!(s, "extra: {key}");
                for l in restored.iter().flatten() {
                    let _ = writeln!(s, "    + {l}");
                }
            }
            Difference::Changed {
                key,
                removed,
                added,
                restored,
            } => {
                let _ = writeln!(s, "changed: {key}");
                if removed.is_empty() && added.is_empty() {
                    let _ = writeln!(s, "    (same lines in another order; restored:)");
                    for l in restored.iter().flatten() {
                        let _ = writeln!(s, "    = {l}");
                    }
                }
                for l in removed {
                    let _ = writeln!(s, "    - {l}");
                }
                for l in added {
                    let _ = writeln!(s, "    + {l}");
                }
            }
            Difference::Data {
                what,
                source,
                restored,
            } => {
                let _ = writeln!(s, "data: {what}: source {source}; restored {restored}");
            }
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Whole round trips.

/// One way of restoring, judged against the source.
pub struct Verdict {
    pub how: String,
    /// Seconds the backup and restore took (informational).
    pub seconds: f64,
    pub failure: Option<String>,
    pub problems: Vec<String>,
    pub differences: Vec<Difference>,
    /// Every difference from the source, those pg_dump's restore also leaves included, as
    /// [`summarize`] counts them (informational: how close each restore comes).
    pub in_all: String,
    pub moved: usize,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.failure.is_none() && self.problems.is_empty() && self.differences.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut s = format!("{} ({:.1} s): ", self.how, self.seconds);
        if self.ok() {
            s.push_str("ok");
        } else {
            if let Some(f) = &self.failure {
                let _ = write!(s, "\n    FAILED: {f}");
            }
            for p in self.problems.iter().take(20) {
                let _ = write!(s, "\n    not ok: {p}");
            }
            if self.problems.len() > 20 {
                let _ = write!(s, "\n    ... {} more", self.problems.len() - 20);
            }
            let _ = write!(s, "\n    {}", summarize(&self.differences));
        }
        if !self.in_all.is_empty() {
            let _ = write!(s, "\n    in all, pg_dump's own included: {}", self.in_all);
        }
        if self.moved > 0 {
            let _ = write!(
                s,
                "\n    (informational: {} entries stand in another order in the dump)",
                self.moved
            );
        }
        s
    }
}

/// What a round trip covers.
pub struct RoundTrip<'a> {
    pub formats: &'a [Format],
    /// search_path of the sessions that restore (backup.restore() and psql): a restore must not
    /// depend on the restoring session's search_path.
    pub restore_search_path: Option<&'a str>,
    /// Also restore the native format with `restore(atomic => false, jobs => N)`.
    pub jobs: Option<i32>,
    /// Also back the native format up with `create(jobs => N)` (parallel copy workers) and
    /// restore that, into `via_pg_backup_create_jobs_N`.
    pub create_jobs: Option<i32>,
}

impl Default for RoundTrip<'_> {
    fn default() -> Self {
        RoundTrip {
            formats: &[Format::Native, Format::Sql],
            restore_search_path: None,
            jobs: None,
            create_jobs: None,
        }
    }
}

/// Back `db` up with pg_backup (each format) and with pg_dump, restore each into a fresh
/// database, and judge each pg_backup restore against the source, excusing only the
/// differences that pg_dump's restore of the same source also leaves (the first verdict is
/// pg_dump's own). The sql format is restored twice: by `backup.restore()` and by plain psql
/// into a database without pg_backup.
pub fn judge_round_trips(s: &Server, db: &str, rt: &RoundTrip) -> Vec<Verdict> {
    let now = std::time::Instant::now;
    let source = Snapshot::take(s, db, false);
    let t0 = now();
    let pg_restore_errors = restore_with_pg_dump(s, db, "via_pg_dump");
    let seconds = t0.elapsed().as_secs_f64();
    let bar_copy = Snapshot::take(s, "via_pg_dump", false);
    let bar = differences(&source, &bar_copy);
    let mut verdicts = vec![Verdict {
        how: "pg_dump -Fc | pg_restore (the bar)".into(),
        seconds,
        failure: None,
        problems: pg_restore_errors,
        differences: bar.clone(),
        // Its differences are all of them (the summary shows them).
        in_all: String::new(),
        moved: moved_entries(&source.schema, &bar_copy.schema),
    }];
    // The json format's documented limit (JSON null comes back as SQL NULL), on both sides.
    let json = rt.formats.contains(&Format::Json).then(|| {
        let source = Snapshot::take(s, db, true);
        let bar = differences(&source, &Snapshot::take(s, "via_pg_dump", true));
        (source, bar)
    });
    for &format in rt.formats {
        let (source, bar) = match (&json, format) {
            (Some((source, bar)), Format::Json) => (source, bar),
            _ => (&source, &bar),
        };
        let judge = |how: String, target: &str, t0: std::time::Instant, failure, problems| {
            let seconds = t0.elapsed().as_secs_f64();
            let copy = Snapshot::take(s, target, format == Format::Json);
            let all = differences(source, &copy);
            Verdict {
                how,
                seconds,
                failure,
                problems,
                differences: not_left_by(&all, bar),
                in_all: summarize(&all),
                moved: moved_entries(&source.schema, &copy.schema),
            }
        };
        let t0 = now();
        let id = match create_backup(s, db, format) {
            Ok(id) => id,
            Err(e) => {
                verdicts.push(Verdict {
                    how: format!("backup.create(format => '{}')", format.name()),
                    seconds: t0.elapsed().as_secs_f64(),
                    failure: Some(e),
                    problems: vec![],
                    differences: vec![],
                    in_all: String::new(),
                    moved: 0,
                });
                continue;
            }
        };
        let target = format!("via_pg_backup_{}", format.name());
        let how = format!("backup.restore() of format '{}'", format.name());
        let outcome = restore_with_pg_backup(s, &target, &id, "abort", rt.restore_search_path);
        if let Some(err) = outcome.error {
            // Nothing was restored: restore again with on_error => 'continue', so that the
            // verdict lists everything that goes wrong, not only the first thing.
            let more = restore_with_pg_backup(s, &target, &id, "continue", rt.restore_search_path);
            let mut problems = more.problems;
            if let Some(e) = more.error {
                problems.insert(0, format!("even with on_error => 'continue': {e}"));
            }
            verdicts.push(judge(
                format!("{how} [aborted; the differences are those of on_error => 'continue']"),
                &target,
                t0,
                Some(err),
                problems,
            ));
        } else {
            verdicts.push(judge(how, &target, t0, None, outcome.problems));
        }
        if let Some(jobs) = rt.create_jobs.filter(|_| format == Format::Native) {
            // The same data copied by parallel workers (each in its own snapshot-sharing
            // transaction), restored as usual.
            let t0 = now();
            let target = format!("via_pg_backup_create_jobs_{jobs}");
            let how =
                format!("backup.create(jobs => {jobs}) then backup.restore() of format 'native'");
            match create_backup_with_jobs(s, db, format, jobs) {
                Err(e) => verdicts.push(Verdict {
                    how,
                    seconds: t0.elapsed().as_secs_f64(),
                    failure: Some(e),
                    problems: vec![],
                    differences: vec![],
                    in_all: String::new(),
                    moved: 0,
                }),
                Ok(id) => {
                    let outcome =
                        restore_with_pg_backup(s, &target, &id, "abort", rt.restore_search_path);
                    verdicts.push(judge(how, &target, t0, outcome.error, outcome.problems));
                }
            }
        }
        if let Some(jobs) = rt.jobs.filter(|_| format == Format::Native) {
            // The same archive over parallel workers (their own transactions and order).
            let t0 = now();
            let target = format!("via_pg_backup_jobs_{jobs}");
            let outcome = restore_with_pg_backup_using(
                s,
                &target,
                &id,
                "abort",
                rt.restore_search_path,
                &format!(", atomic => false, jobs => {jobs}"),
            );
            verdicts.push(judge(
                format!("backup.restore(atomic => false, jobs => {jobs}) of format 'native'"),
                &target,
                t0,
                outcome.error,
                outcome.problems,
            ));
        }
        if format == Format::Sql {
            let t0 = now();
            let failure =
                restore_script_with_psql(s, "via_psql_script", &id, rt.restore_search_path);
            verdicts.push(judge(
                "the sql format's script through plain psql (no pg_backup)".into(),
                "via_psql_script",
                t0,
                failure,
                vec![],
            ));
        }
    }
    verdicts
}

/// Prints the verdicts; panics with their summaries unless every pg_backup verdict is ok.
pub fn assert_verdicts(what: &str, verdicts: &[Verdict]) {
    // Each failing verdict with the first lines of its differences.
    let report: Vec<String> = verdicts
        .iter()
        .map(|v| {
            let mut s = v.summary();
            if !v.ok() {
                for l in detail(&v.differences).lines().take(40) {
                    let _ = write!(s, "\n      {l}");
                }
            }
            s
        })
        .collect();
    let report = report.join("\n  ");
    assert!(
        verdicts.iter().skip(1).all(Verdict::ok),
        "{what}: pg_backup leaves differences that pg_dump does not:\n  {report}"
    );
    eprintln!("{what}:\n  {report}");
}
