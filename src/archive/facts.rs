//! What collect knew about an entry's object, carried on the TOC entry (issue 18): whether a
//! table is a partition, what its CREATE TABLE evaluates, which kind of constraint an
//! `ADD CONSTRAINT` adds and under which name, which kind of type a `CREATE TYPE` makes.
//! `ddl::collect` sets them from the catalogs (pg_class.relispartition, pg_constraint.contype,
//! pg_type.typtype ...); restore decides by them and never reads an entry's SQL text again
//! to find out.
//!
//! Archives written before the facts existed (formats 1 and 2, and 0.3.0 archives without
//! them: the manifest's `toc_facts` is absent) get them once, when their manifest is read
//! (`toc::derive_facts`, with [`of_sql`] here), from each entry's kind and SQL. Both ways
//! must agree for every object collect writes (pg_test
//! `facts_of_collect_and_of_old_archives_agree`); restore checks that an entry's facts are
//! what its statements show (restore/statements.rs) before it decides anything by them.
//!
//! Plain Rust (serde), unit-tested without a server.

use serde::{Deserialize, Serialize};

use super::kind::EntryKind;
use super::shapes::ConstraintKind;

/// The facts an archive's entries carry, as the manifest's `toc_facts` says: 1, the facts of
/// this module. Absent (0): derived on read.
pub const TOC_FACTS: u32 = 1;

/// Which kind of type a type entry makes (pg_type.typtype).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeKind {
    /// `b`: CREATE TYPE with INPUT / OUTPUT functions (only a superuser may).
    Base,
    /// `c`: CREATE TYPE ... AS (...).
    Composite,
    /// `e`: CREATE TYPE ... AS ENUM.
    Enum,
    /// `r`: CREATE TYPE ... AS RANGE.
    Range,
    /// `d`: CREATE DOMAIN.
    Domain,
    /// `p` not yet defined, or the shell a base or range type's functions are made against:
    /// `CREATE TYPE name;`.
    Shell,
}

/// What an `ADD CONSTRAINT` adds (pg_constraint).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConstraintFacts {
    /// contype.
    pub kind: ConstraintKind,
    /// conname, as in the catalog (not quoted).
    pub name: String,
    /// convalidated: false for a constraint the backup's database held NOT VALID.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub validated: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn not(b: &bool) -> bool {
    !*b
}

/// The facts of one entry; in the manifest only those that are set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Facts {
    /// A partition (pg_class.relispartition); its parent is the entry's `belongs_to`.
    #[serde(default, skip_serializing_if = "not")]
    pub partition: bool,
    /// Its CREATE TABLE makes it a partition (`PARTITION OF`, as 0.1.0 wrote them): creating
    /// it checks the parent's partition key and bound. Collect creates a partition on its own
    /// and attaches it in a `table_attach` entry: never set by collect.
    #[serde(default, skip_serializing_if = "not")]
    pub created_as_partition: bool,
    /// A partitioned table (relkind `p`): its CREATE TABLE plans the partition key.
    #[serde(default, skip_serializing_if = "not")]
    pub partitioned: bool,
    /// Its CREATE TABLE writes stored generated columns, whose expressions it plans.
    #[serde(default, skip_serializing_if = "not")]
    pub generated_columns: bool,
    /// For an entry that adds a constraint: which one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<ConstraintFacts>,
    /// For a type entry: which kind of type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_kind: Option<TypeKind>,
}

impl Facts {
    pub fn is_empty(&self) -> bool {
        *self == Facts::default()
    }

    /// Which kind of constraint the entry adds, if any.
    pub fn constraint_kind(&self) -> Option<ConstraintKind> {
        self.constraint.as_ref().map(|c| c.kind)
    }

    /// An index build: a PRIMARY KEY, UNIQUE or EXCLUDE constraint (PostgreSQL builds the
    /// index as the table's owner itself); not a CHECK or a foreign key, which evaluate
    /// expressions and operators over the rows.
    pub fn builds_index_only(&self) -> bool {
        matches!(
            self.constraint_kind(),
            Some(ConstraintKind::PrimaryKey | ConstraintKind::Unique | ConstraintKind::Exclusion)
        )
    }

    /// A base type: CREATE TYPE with I/O functions, which only a superuser may run.
    pub fn base_type(&self) -> bool {
        self.type_kind == Some(TypeKind::Base)
    }

    /// These facts and `other`'s together (each statement of an entry shows its part).
    pub fn and(mut self, other: Facts) -> Facts {
        self.partition |= other.partition;
        self.created_as_partition |= other.created_as_partition;
        self.partitioned |= other.partitioned;
        self.generated_columns |= other.generated_columns;
        self.constraint = self.constraint.or(other.constraint);
        self.type_kind = self.type_kind.or(other.type_kind);
        self
    }

    /// Whether the facts an entry claims are those its statements show (`shown`, read by
    /// PostgreSQL's parser in restore/statements.rs): an archive's facts are checked like its
    /// SQL (issue 17), so that a changed archive cannot have an entry judged by facts its
    /// statement does not have (a CHECK passed off as an index build). Whether a table is a
    /// partition is not in its statement (format 2 attaches it in an entry of its own).
    pub fn shown_by(&self, shown: &Facts) -> bool {
        Facts {
            partition: false,
            ..self.clone()
        } == *shown
    }

    /// Whether creating the table plans expressions (stored generated columns, a partition
    /// key), calling immutable functions with constant arguments.
    pub fn creation_plans_expressions(&self) -> bool {
        self.generated_columns || self.partitioned
    }
}

/// The facts one entry's SQL shows, as restore read them from the text before (issue 18):
/// from the words of the statement, outside string literals and quoted identifiers.
pub fn of_sql(kind: EntryKind, sql: &str) -> Facts {
    use EntryKind as K;
    let mut f = Facts::default();
    match kind {
        K::Table | K::ForeignTable => {
            let t = tokens(sql);
            let top = first_statement(&t);
            f.created_as_partition = follows(top, 0, &["PARTITION", "OF"]);
            f.partitioned = follows(top, 0, &["PARTITION", "BY"]);
            f.generated_columns = top.windows(4).any(|w| {
                w[0].depth == 1
                    && w[0].is_word("GENERATED")
                    && w[1].is_word("ALWAYS")
                    && w[2].is_word("AS")
                    && w[3].tok == Tok::Open
            });
        }
        K::Constraint | K::ForeignKey | K::CheckConstraint | K::DomainConstraint => {
            f.constraint = constraint(&tokens(sql));
        }
        K::Domain => f.type_kind = Some(TypeKind::Domain),
        K::ShellType => f.type_kind = Some(TypeKind::Shell),
        // Format 1's `type` held domains too.
        K::Type => f.type_kind = type_kind(&tokens(sql)),
        _ => {}
    }
    f
}

/// `ALTER {TABLE | FOREIGN TABLE | DOMAIN} [ONLY] name ADD CONSTRAINT name <definition>`.
fn constraint(t: &[Token]) -> Option<ConstraintFacts> {
    let t = first_statement(t);
    let at = at(t, 0, &["ADD", "CONSTRAINT"])?;
    let name = match &t.get(at + 2)?.tok {
        // As the parser reads an unquoted name.
        Tok::Word(w) => w.to_ascii_lowercase(),
        Tok::Ident(i) => i.clone(),
        _ => return None,
    };
    let def = &t[at + 3..];
    let first = def.first()?;
    let second = def.get(1);
    let kind = if first.is_word("PRIMARY") && second.is_some_and(|s| s.is_word("KEY")) {
        ConstraintKind::PrimaryKey
    } else if first.is_word("FOREIGN") && second.is_some_and(|s| s.is_word("KEY")) {
        ConstraintKind::ForeignKey
    } else if first.is_word("UNIQUE") {
        ConstraintKind::Unique
    } else if first.is_word("EXCLUDE") {
        ConstraintKind::Exclusion
    } else if first.is_word("CHECK") {
        ConstraintKind::Check
    } else if first.is_word("NOT") && second.is_some_and(|s| s.is_word("NULL")) {
        ConstraintKind::NotNull
    } else {
        ConstraintKind::Other
    };
    // pg_get_constraintdef ends a constraint that is not validated with NOT VALID, and 18's
    // NOT ENFORCED one (held unvalidated: the parser marks it so too) with NOT ENFORCED.
    let n = def.len();
    let not_valid = n >= 2
        && def[n - 2].depth == 0
        && def[n - 2].is_word("NOT")
        && (def[n - 1].is_word("VALID") || def[n - 1].is_word("ENFORCED"));
    Some(ConstraintFacts {
        kind,
        name,
        validated: !not_valid,
    })
}

/// `CREATE TYPE name AS ENUM | AS RANGE | AS (...) | (...) | ;`, or a format-1 `CREATE DOMAIN`.
fn type_kind(t: &[Token]) -> Option<TypeKind> {
    let t = first_statement(t);
    let [create, what, rest @ ..] = t else {
        return None;
    };
    if !create.is_word("CREATE") {
        return None;
    }
    if what.is_word("DOMAIN") {
        return Some(TypeKind::Domain);
    }
    if !what.is_word("TYPE") {
        return None;
    }
    let after = skip_name(rest);
    Some(match after {
        [] => TypeKind::Shell,
        [a, b, ..] if a.is_word("AS") && b.is_word("ENUM") => TypeKind::Enum,
        [a, b, ..] if a.is_word("AS") && b.is_word("RANGE") => TypeKind::Range,
        [a, b, ..] if a.is_word("AS") && b.tok == Tok::Open => TypeKind::Composite,
        [a, ..] if a.tok == Tok::Open => TypeKind::Base,
        _ => return None,
    })
}

/// What follows a (qualified) name: `a`, `"a"."b"`, `a.b.c`.
fn skip_name(t: &[Token]) -> &[Token] {
    let mut i = 0;
    loop {
        match t.get(i).map(|x| &x.tok) {
            Some(Tok::Word(_) | Tok::Ident(_)) => i += 1,
            _ => return &t[i..],
        }
        match t.get(i).map(|x| &x.tok) {
            Some(Tok::Dot) => i += 1,
            _ => return &t[i..],
        }
    }
}

/// Whether `words` follow one another at paren depth `depth`, as key words (not the last
/// part of a qualified name: a table `s.partition OF s.a_type` is no partition).
fn follows(t: &[Token], depth: u32, words: &[&str]) -> bool {
    at(t, depth, words).is_some()
}

/// Where `words` first follow one another at paren depth `depth`, as key words.
fn at(t: &[Token], depth: u32, words: &[&str]) -> Option<usize> {
    (0..t.len()).find(|&i| {
        (i == 0 || t[i - 1].tok != Tok::Dot)
            && t.len() - i >= words.len()
            && t[i..i + words.len()]
                .iter()
                .zip(words)
                .all(|(x, word)| x.depth == depth && x.is_word(word))
    })
}

/// The tokens before the first `;` outside parentheses.
fn first_statement(t: &[Token]) -> &[Token] {
    let end = t
        .iter()
        .position(|x| x.depth == 0 && x.tok == Tok::Semicolon)
        .unwrap_or(t.len());
    &t[..end]
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A key word or unquoted identifier, as written.
    Word(String),
    /// A quoted identifier, unquoted.
    Ident(String),
    Open,
    Close,
    Dot,
    Semicolon,
    /// A literal, a number, an operator ...
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    tok: Tok,
    /// Parentheses open around it.
    depth: u32,
}

impl Token {
    fn is_word(&self, w: &str) -> bool {
        matches!(&self.tok, Tok::Word(x) if x.eq_ignore_ascii_case(w))
    }
}

/// SQL's tokens as far as facts need them: words, quoted identifiers, parentheses, dots and
/// semicolons; string literals (standard, E'', dollar-quoted) and comments are skipped whole.
fn tokens(sql: &str) -> Vec<Token> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut depth: u32 = 0;
    let mut i = 0;
    let mut push = |tok: Tok, depth: u32| out.push(Token { tok, depth });
    while i < b.len() {
        let c = b[i];
        match c {
            b'(' => {
                push(Tok::Open, depth);
                depth += 1;
                i += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                push(Tok::Close, depth);
                i += 1;
            }
            b'.' => {
                push(Tok::Dot, depth);
                i += 1;
            }
            b';' => {
                push(Tok::Semicolon, depth);
                i += 1;
            }
            b'\'' => {
                i = skip_string(b, i + 1, false);
                push(Tok::Other, depth);
            }
            b'"' => {
                let mut name = Vec::new();
                i += 1;
                while i < b.len() {
                    if b[i] == b'"' {
                        if b.get(i + 1) == Some(&b'"') {
                            name.push(b'"');
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    name.push(b[i]);
                    i += 1;
                }
                push(
                    Tok::Ident(String::from_utf8_lossy(&name).into_owned()),
                    depth,
                );
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'$' => {
                // $tag$ ... $tag$ (a parameter $1 is just skipped).
                let start = i;
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                if b.get(j) == Some(&b'$') && !b[i + 1..j].first().is_some_and(u8::is_ascii_digit) {
                    let tag = &b[start..=j];
                    let body = j + 1;
                    i = b[body..]
                        .windows(tag.len())
                        .position(|w| w == tag)
                        .map_or(b.len(), |p| body + p + tag.len());
                } else {
                    i = j;
                }
                push(Tok::Other, depth);
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                let word = &sql[start..i];
                // E'...' (and U&'...' reads as a word and a string: the same for facts).
                if b.get(i) == Some(&b'\'') && word.eq_ignore_ascii_case("e") {
                    i = skip_string(b, i + 1, true);
                    push(Tok::Other, depth);
                } else {
                    push(Tok::Word(word.to_string()), depth);
                }
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                i += 1;
                push(Tok::Other, depth);
            }
        }
    }
    out
}

/// Past the string literal whose text starts at `i` (after the opening quote).
fn skip_string(b: &[u8], mut i: usize, backslashes: bool) -> usize {
    while i < b.len() {
        match b[i] {
            b'\\' if backslashes => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constraint_of(kind: EntryKind, sql: &str) -> Option<(ConstraintKind, String, bool)> {
        of_sql(kind, sql)
            .constraint
            .map(|c| (c.kind, c.name, c.validated))
    }

    #[test]
    fn constraints_are_read_past_any_name() {
        use ConstraintKind as C;
        assert_eq!(
            constraint_of(
                EntryKind::Constraint,
                "ALTER TABLE ONLY s.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (a);\nALTER TABLE s.t CLUSTER ON t_pkey;"
            ),
            Some((C::PrimaryKey, "t_pkey".into(), true))
        );
        // The CHECK that restore's `contains("UNIQUE")` took for an index (issue 18).
        assert_eq!(
            constraint_of(
                EntryKind::Constraint,
                "ALTER TABLE \"a\"\"b\".\"x ADD CONSTRAINT y UNIQUE\" ADD CONSTRAINT \"UNIQUE (a)\" CHECK ((a <> 'UNIQUE'::text));"
            ),
            Some((C::Check, "UNIQUE (a)".into(), true))
        );
        assert!(!of_sql(
            EntryKind::Constraint,
            "ALTER TABLE s.t ADD CONSTRAINT c CHECK ((a <> 'UNIQUE'::text));"
        )
        .builds_index_only());
        assert_eq!(
            constraint_of(
                EntryKind::Constraint,
                "ALTER TABLE p.q ADD CONSTRAINT c EXCLUDE USING gist (r WITH &&);"
            ),
            Some((C::Exclusion, "c".into(), true))
        );
        assert_eq!(
            constraint_of(
                EntryKind::ForeignKey,
                "ALTER TABLE ONLY s.t\n    ADD CONSTRAINT k FOREIGN KEY (a) REFERENCES s.u(a) NOT VALID;"
            ),
            Some((C::ForeignKey, "k".into(), false))
        );
        // NOT VALID inside the expression is not the constraint's.
        assert_eq!(
            constraint_of(
                EntryKind::CheckConstraint,
                "ALTER TABLE s.t ADD CONSTRAINT c CHECK ((a <> 'x NOT VALID'::text)) NO INHERIT;"
            ),
            Some((C::Check, "c".into(), true))
        );
        assert_eq!(
            constraint_of(
                EntryKind::DomainConstraint,
                "ALTER DOMAIN s.d ADD CONSTRAINT \"D\" CHECK ((VALUE > 0)) NOT VALID;"
            ),
            Some((C::Check, "D".into(), false))
        );
        // 18's NOT ENFORCED: unvalidated, as PostgreSQL's parser reads it.
        assert_eq!(
            constraint_of(
                EntryKind::CheckConstraint,
                "ALTER TABLE s.t ADD CONSTRAINT c CHECK ((a > 0)) NOT ENFORCED;"
            ),
            Some((C::Check, "c".into(), false))
        );
        assert_eq!(
            constraint_of(EntryKind::Constraint, "CREATE INDEX i ON s.t (a);"),
            None
        );
    }

    #[test]
    fn tables_say_what_their_create_plans() {
        let f = of_sql(
            EntryKind::Table,
            "CREATE TABLE s.p (\n    a integer,\n    b integer GENERATED ALWAYS AS ((a * 2)) STORED,\n    c integer GENERATED ALWAYS AS IDENTITY\n)\nPARTITION BY RANGE (a);",
        );
        assert!(f.generated_columns && f.partitioned && !f.created_as_partition);
        // Format 1: on one line, a partition written PARTITION OF.
        let f = of_sql(
            EntryKind::Table,
            "CREATE TABLE s.ev_2024 PARTITION OF s.ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');",
        );
        assert!(f.created_as_partition && !f.partitioned);
        // A typed table named partition, a table named add.
        let f = of_sql(EntryKind::Table, "CREATE TABLE s.partition OF s.t;");
        assert!(!f.created_as_partition);
        assert_eq!(
            constraint_of(
                EntryKind::ForeignKey,
                "ALTER TABLE ONLY add.add ADD CONSTRAINT add FOREIGN KEY (a) REFERENCES add.add(a);"
            ),
            Some((ConstraintKind::ForeignKey, "add".into(), true))
        );
        let f = of_sql(
            EntryKind::Table,
            "CREATE TABLE s.ev (id integer, at date) PARTITION BY RANGE (at);",
        );
        assert!(f.partitioned && !f.created_as_partition);
        // The words inside a literal, a quoted name or an identity are not the table's.
        let f = of_sql(
            EntryKind::Table,
            "CREATE TABLE s.\"x PARTITION BY y\" (\n    a text DEFAULT ' PARTITION OF '::text,\n    \"GENERATED ALWAYS AS (\" integer GENERATED ALWAYS AS IDENTITY,\n    b text DEFAULT E'\\' PARTITION BY '::text\n);",
        );
        assert_eq!(f, Facts::default());
    }

    #[test]
    fn types_by_their_create() {
        let kind = |k: EntryKind, sql: &str| of_sql(k, sql).type_kind;
        assert_eq!(
            kind(EntryKind::Type, "CREATE TYPE s.m AS ENUM ('INPUT = x');"),
            Some(TypeKind::Enum)
        );
        assert_eq!(
            kind(
                EntryKind::Type,
                "CREATE TYPE \"s\".\"r\" AS RANGE (subtype = integer);"
            ),
            Some(TypeKind::Range)
        );
        assert_eq!(
            kind(EntryKind::Type, "CREATE TYPE s.c AS (\n    a integer\n);"),
            Some(TypeKind::Composite)
        );
        assert_eq!(
            kind(
                EntryKind::Type,
                "CREATE TYPE s.b (\n    INTERNALLENGTH = 4,\n    INPUT = s.b_in,\n    OUTPUT = s.b_out\n);"
            ),
            Some(TypeKind::Base)
        );
        assert_eq!(
            kind(EntryKind::Type, "CREATE DOMAIN s.d AS integer;"),
            Some(TypeKind::Domain)
        );
        assert_eq!(
            kind(EntryKind::ShellType, "CREATE TYPE s.b;"),
            Some(TypeKind::Shell)
        );
        assert_eq!(
            kind(EntryKind::Type, "CREATE TYPE s.b;"),
            Some(TypeKind::Shell)
        );
        assert!(of_sql(
            EntryKind::Type,
            "CREATE TYPE s.b (INPUT = s.i, OUTPUT = s.o);"
        )
        .base_type());
    }

    #[test]
    fn facts_serialize_only_what_is_set() {
        assert_eq!(serde_json::to_string(&Facts::default()).unwrap(), "{}");
        let f = Facts {
            constraint: Some(ConstraintFacts {
                kind: ConstraintKind::ForeignKey,
                name: "k".into(),
                validated: false,
            }),
            ..Facts::default()
        };
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(
            json,
            r#"{"constraint":{"kind":"foreign_key","name":"k","validated":false}}"#
        );
        assert_eq!(serde_json::from_str::<Facts>(&json).unwrap(), f);
        let t: Facts =
            serde_json::from_str(r#"{"constraint":{"kind":"check","name":"c"}}"#).unwrap();
        assert!(t.constraint.unwrap().validated);
    }
}
