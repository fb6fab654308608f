//! Every statement a restore takes from an archive is checked against its entry's kind before
//! it runs (issue 17): the entry's SQL is parsed with PostgreSQL's own parser (`raw_parser`,
//! in a memory context of its own, inside a subtransaction so that a syntax error becomes
//! our error), each statement is reduced to an `archive::shapes::Command`, and the kind's
//! shapes decide. Preflight checks every entry of the restore before anything changes; the
//! executor (`entry`) checks again the very text it is about to run (a job worker reads the archive
//! again).
//!
//! The one rewriting: the database's own grants, comment and settings are written by
//! collect as `DO` blocks that EXECUTE a `format(template, current_database())`; the
//! template is decoded, expanded here and parsed, and the statement it makes is what runs
//! (no PL/pgSQL from an archive ever runs).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};

use pgrx::pg_sys::NodeTag;
use pgrx::prelude::*;
use pgrx::PgList;

use crate::archive::facts::{ConstraintFacts, Facts, TypeKind};
use crate::archive::shapes::{
    self, Command, ConstraintKind, Names, Refusal, Rel, Relkind, TableAction, Target,
};
use crate::archive::toc::{EntryKind, TocEntry};
use crate::error::{BackupError, Result};

/// One parsed statement and the text that runs it.
struct Parsed {
    command: Command,
    text: String,
    /// The facts (`archive::facts`) the statement shows.
    facts: Facts,
    /// Sets only the server's own column stamp `pg_attver` (see [`sets_only_server_stamp`]):
    /// left out of what runs.
    stamp: bool,
}

/// The names `e`'s statements must use; `moved_to`: target_schema's new schema for the
/// relations of e's schema.
pub fn names_of<'a>(e: &'a TocEntry, moved_to: Option<&'a str>) -> Names<'a> {
    Names {
        schema: e.schema.as_deref().unwrap_or_default(),
        moved_to,
        name: &e.name,
        table: e.table.as_deref(),
    }
}

/// Check `sql` (the text of entry `e` that will run, after target_schema) against e's kind.
/// Returns the text to run: `sql` itself, or for the database's DO blocks the statements
/// they would execute.
pub fn check_entry(e: &TocEntry, sql: &str, moved_to: Option<&str>) -> Result<String> {
    let key = Checked::key(Check::Entry, e, sql, moved_to);
    if let Some(text) = Checked::get(&key) {
        return Ok(text);
    }
    let text = check_entry_text(e, sql, moved_to)?;
    Checked::put(key, text.clone());
    Ok(text)
}

fn check_entry_text(e: &TocEntry, sql: &str, moved_to: Option<&str>) -> Result<String> {
    let parsed = parse(sql).map_err(|why| refused(e, &format!("its SQL does not parse: {why}")))?;
    let commands: Vec<Command> = parsed.iter().map(|p| p.command.clone()).collect();
    if let Err(r) = shapes::check(e.kind, &names_of(e, moved_to), &commands) {
        return Err(refusal(e, r));
    }
    // Restore decides by the entry's facts: they are the ones its statements show.
    let shown = parsed
        .iter()
        .fold(Facts::default(), |all, p| all.and(p.facts.clone()));
    if !e.facts.shown_by(&shown) {
        return Err(refused(
            e,
            &format!(
                "what the archive says of its object ({}) is not what its SQL does ({})",
                serde_json::to_string(&e.facts).unwrap_or_default(),
                serde_json::to_string(&shown).unwrap_or_default()
            ),
        ));
    }
    let stamps = parsed.iter().any(|p| p.stamp);
    if !stamps && !commands.iter().any(|c| matches!(c, Command::InDatabase(_))) {
        return Ok(sql.to_string());
    }
    Ok(parsed
        .iter()
        .filter(|p| !p.stamp)
        .map(|p| format!("{};", p.text.trim_end().trim_end_matches(';')))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Check `sql`, entry e's owner statement: exactly one ALTER ... OWNER TO.
pub fn check_owner(e: &TocEntry, sql: &str, moved_to: Option<&str>) -> Result<()> {
    let key = Checked::key(Check::Owner, e, sql, moved_to);
    if Checked::get(&key).is_some() {
        return Ok(());
    }
    check_owner_text(e, sql, moved_to)?;
    Checked::put(key, String::new());
    Ok(())
}

fn check_owner_text(e: &TocEntry, sql: &str, moved_to: Option<&str>) -> Result<()> {
    let parsed = parse(sql)
        .map_err(|why| refused(e, &format!("its owner statement does not parse: {why}")))?;
    let commands: Vec<Command> = parsed.into_iter().map(|p| p.command).collect();
    shapes::check_owner_statement(&commands, &names_of(e, moved_to)).map_err(|r| refusal(e, r))
}

/// A constraint statement restore cut from entry e's checked text and made `NOT VALID` to run
/// as the caller (policy::constraint_in_two; entry's partitioned_foreign_key, on a partition
/// of e's table: `on_entry` false): the cut is textual, so the text that runs is parsed again,
/// as grant segments are. It must be exactly one `ADD CONSTRAINT` of e's constraint (its kind
/// and name, on e's relation when `on_entry`), unvalidated: so that it evaluates nothing. A
/// text whose last words were a comment's (`CHECK (f())\n--;`) would otherwise carry the
/// appended NOT VALID into the comment and validate the rows, f() among them, with the
/// caller's rights (a superuser's).
pub fn check_added_not_valid(
    e: &TocEntry,
    sql: &str,
    moved_to: Option<&str>,
    on_entry: bool,
) -> Result<()> {
    let parsed = parse(sql).map_err(|why| {
        refused(
            e,
            &format!("its constraint, cut NOT VALID, does not parse: {why}"),
        )
    })?;
    let commands: Vec<Command> = parsed.iter().map(|p| p.command.clone()).collect();
    let one_add = match &commands[..] {
        [Command::AlterTable {
            relkind: Relkind::Table | Relkind::ForeignTable,
            actions,
            ..
        }] => matches!(&actions[..], [TableAction::AddConstraint(_)]),
        [Command::AddDomainConstraint] => true,
        _ => false,
    };
    if !one_add || (on_entry && shapes::check(e.kind, &names_of(e, moved_to), &commands).is_err()) {
        return Err(refused(
            e,
            "its constraint, cut NOT VALID, is not one ADD CONSTRAINT of its object",
        ));
    }
    let shown = parsed
        .iter()
        .fold(Facts::default(), |all, p| all.and(p.facts.clone()));
    let expected = Facts {
        constraint: e.facts.constraint.clone().map(|c| ConstraintFacts {
            validated: false,
            ..c
        }),
        ..Facts::default()
    };
    if e.facts.constraint.is_none() || shown != expected {
        return Err(refused(
            e,
            &format!(
                "its constraint, cut NOT VALID to evaluate nothing, is not ({})",
                serde_json::to_string(&shown).unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// Which statement of an entry a check was about.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Check {
    Entry,
    Owner,
}

/// Everything a check's answer depends on: the entry's kind, names and facts, target_schema's
/// new schema, and the very text (compared whole, never by a hash of it).
#[derive(PartialEq, Eq, Hash)]
struct CheckKey {
    check: Check,
    kind: EntryKind,
    schema: Option<String>,
    name: String,
    table: Option<String>,
    moved_to: Option<String>,
    sql: String,
    facts: Facts,
}

thread_local! {
    /// The checks that passed in this restore call (issue 18): preflight checks every entry,
    /// and the executor checks the text it is about to run again. In the same process that
    /// text is the one preflight checked (the same manifest in memory, the same pinned
    /// settings), so the second check finds its answer here instead of parsing again (each
    /// parse runs in a subtransaction: two of them per entry). A job worker, which reads the
    /// archive again and runs no preflight, parses everything itself. None outside a
    /// restore call (`ChecksOfCall`): nothing is kept from one call to the next.
    static CHECKED: RefCell<Option<HashMap<CheckKey, String>>> = const { RefCell::new(None) };
}

struct Checked;

impl Checked {
    fn key(check: Check, e: &TocEntry, sql: &str, moved_to: Option<&str>) -> CheckKey {
        CheckKey {
            check,
            kind: e.kind,
            schema: e.schema.clone(),
            name: e.name.clone(),
            table: e.table.clone(),
            moved_to: moved_to.map(str::to_string),
            sql: sql.to_string(),
            facts: e.facts.clone(),
        }
    }

    fn get(key: &CheckKey) -> Option<String> {
        CHECKED.with(|c| c.borrow().as_ref()?.get(key).cloned())
    }

    fn put(key: CheckKey, text: String) {
        CHECKED.with(|c| {
            if let Some(checked) = c.borrow_mut().as_mut() {
                checked.insert(key, text);
            }
        });
    }
}

/// The checks of one restore call: none yet when it starts (a new call may run under other
/// settings or another archive), forgotten when it ends (dropped, on an error too).
pub struct ChecksOfCall(());

impl ChecksOfCall {
    pub fn begin() -> ChecksOfCall {
        CHECKED.with(|c| *c.borrow_mut() = Some(HashMap::new()));
        ChecksOfCall(())
    }
}

impl Drop for ChecksOfCall {
    fn drop(&mut self) {
        CHECKED.with(|c| *c.borrow_mut() = None);
    }
}

fn refused(e: &TocEntry, why: &str) -> BackupError {
    BackupError::refused(format!("{} was refused: {why}", e.describe())).with_hint(format!(
        "TOC entry {} holds what pg_backup never writes for a {} entry: the archive was changed after it was written. Nothing was restored; restore another backup.",
        e.id,
        e.kind.as_str().replace('_', " ")
    ))
}

fn refusal(e: &TocEntry, r: Refusal) -> BackupError {
    let kind = e.kind.as_str().replace('_', " ");
    match r {
        Refusal::Unexpected { at, command } => refused(
            e,
            &format!(
                "statement {at} is {}, which a {kind} entry never holds",
                command.describe()
            ),
        ),
        Refusal::Repeated { at } => refused(
            e,
            &format!("statement {at} creates its object a second time"),
        ),
        Refusal::OwnerStatement => refused(e, "its owner statement is not one ALTER ... OWNER TO"),
    }
}

/// Parse `sql` into statements; Err: PostgreSQL's syntax error (or why it cannot be parsed).
fn parse(sql: &str) -> std::result::Result<Vec<Parsed>, String> {
    let bytes = crate::text::to_server(sql).into_owned();
    let Ok(c) = CString::new(bytes) else {
        return Err("it holds a NUL character".into());
    };
    // SAFETY: raw_parser on a NUL-terminated string, in a memory context of our own that is
    // deleted on return (on an ERROR the subtransaction's abort deletes it with its parent,
    // the subtransaction's CurTransactionContext).
    match crate::subtransaction::run_result(|| unsafe { parse_in_context(&c) }) {
        Ok(r) => r,
        Err(caught) => Err(crate::subtransaction::message(&caught)),
    }
}

unsafe fn parse_in_context(c: &CStr) -> std::result::Result<Vec<Parsed>, String> {
    let cx = pg_sys::AllocSetContextCreateExtended(
        pg_sys::CurTransactionContext,
        c"pg_backup statements".as_ptr(),
        pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
        pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
        pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
    );
    let old = pg_sys::MemoryContextSwitchTo(cx);
    let out = statements(c);
    pg_sys::MemoryContextSwitchTo(old);
    pg_sys::MemoryContextDelete(cx);
    out
}

/// raw_parser's statements of `c`, each with its own text.
unsafe fn statements(c: &CStr) -> std::result::Result<Vec<Parsed>, String> {
    let list = pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
    let bytes = c.to_bytes();
    let mut out = Vec::new();
    for raw in PgList::<pg_sys::RawStmt>::from_pg(list).iter_ptr() {
        let start = ((*raw).stmt_location.max(0) as usize).min(bytes.len());
        let end = match (*raw).stmt_len {
            0 => bytes.len(),
            n => (start + n as usize).min(bytes.len()),
        };
        let text = crate::text::to_utf8(&bytes[start..end]);
        let (command, text) = match command((*raw).stmt)? {
            Expanded::Plain(command) => (command, text),
            Expanded::InDatabase(command, inner) => (Command::InDatabase(Box::new(command)), inner),
        };
        let facts = facts_of((*raw).stmt);
        let stamp = sets_only_server_stamp((*raw).stmt);
        out.push(Parsed {
            command,
            text,
            facts,
            stamp,
        });
    }
    Ok(out)
}

/// `ALTER TABLE ... ALTER COLUMN ... SET (pg_attver=...)` and nothing else. Recent minor releases
/// of some PostgreSQL builds (Debian's 15.20 here) stamp every column they create with the
/// option `pg_attver`; archives of 0.2.0 and earlier copied it as a column option. It is the
/// server's own (0.3.0's collect leaves it out, as pg_dump does), and a server that does not
/// know it (PostgreSQL 18) refuses the statement: such a statement never runs.
unsafe fn sets_only_server_stamp(n: *mut pg_sys::Node) -> bool {
    if tag(n) != Some(NodeTag::T_AlterTableStmt) {
        return false;
    }
    let cmds = items::<pg_sys::AlterTableCmd>((*(n as *mut pg_sys::AlterTableStmt)).cmds);
    !cmds.is_empty()
        && cmds.iter().all(|&cmd| {
            (*cmd).subtype == pg_sys::AlterTableType::AT_SetOptions
                && tag((*cmd).def) == Some(NodeTag::T_List)
                && items::<pg_sys::Node>((*cmd).def as *mut pg_sys::List)
                    .iter()
                    .all(|&d| {
                        tag(d) == Some(NodeTag::T_DefElem)
                            && (*(d as *mut pg_sys::DefElem)).defnamespace.is_null()
                            && cstr((*(d as *mut pg_sys::DefElem)).defname).as_deref()
                                == Some("pg_attver")
                    })
        })
}

/// The facts (`archive::facts`) statement `n` shows, as collect sets them for what it writes.
unsafe fn facts_of(n: *mut pg_sys::Node) -> Facts {
    use pg_sys::ObjectType::*;
    let mut f = Facts::default();
    let added = |c: *mut pg_sys::Constraint| {
        let kind = match (*c).contype {
            pg_sys::ConstrType::CONSTR_PRIMARY => ConstraintKind::PrimaryKey,
            pg_sys::ConstrType::CONSTR_UNIQUE => ConstraintKind::Unique,
            pg_sys::ConstrType::CONSTR_EXCLUSION => ConstraintKind::Exclusion,
            pg_sys::ConstrType::CONSTR_CHECK => ConstraintKind::Check,
            pg_sys::ConstrType::CONSTR_FOREIGN => ConstraintKind::ForeignKey,
            pg_sys::ConstrType::CONSTR_NOTNULL => ConstraintKind::NotNull,
            _ => ConstraintKind::Other,
        };
        ConstraintFacts {
            kind,
            name: cstr((*c).conname).unwrap_or_default(),
            validated: !(*c).skip_validation,
        }
    };
    match tag(n) {
        Some(NodeTag::T_CreateStmt | NodeTag::T_CreateForeignTableStmt) => {
            // CreateForeignTableStmt begins with its CreateStmt.
            let s = n as *mut pg_sys::CreateStmt;
            f.created_as_partition = !(*s).partbound.is_null();
            f.partitioned = !(*s).partspec.is_null();
            f.generated_columns = items::<pg_sys::Node>((*s).tableElts)
                .into_iter()
                .filter(|e| tag(*e) == Some(NodeTag::T_ColumnDef))
                .flat_map(|e| items::<pg_sys::Node>((*(e as *mut pg_sys::ColumnDef)).constraints))
                .any(|c| {
                    tag(c) == Some(NodeTag::T_Constraint)
                        && (*(c as *mut pg_sys::Constraint)).contype
                            == pg_sys::ConstrType::CONSTR_GENERATED
                });
        }
        Some(NodeTag::T_AlterTableStmt) => {
            let s = n as *mut pg_sys::AlterTableStmt;
            let adds: Vec<*mut pg_sys::AlterTableCmd> = items::<pg_sys::AlterTableCmd>((*s).cmds)
                .into_iter()
                .filter(|c| {
                    (**c).subtype == pg_sys::AlterTableType::AT_AddConstraint
                        && tag((**c).def) == Some(NodeTag::T_Constraint)
                })
                .collect();
            f.constraint = match adds[..] {
                [] => None,
                [c] => Some(added((*c).def as *mut pg_sys::Constraint)),
                // Collect adds one constraint per statement: several are no fact of an entry.
                [..] => Some(ConstraintFacts {
                    kind: ConstraintKind::Other,
                    name: String::new(),
                    validated: false,
                }),
            };
        }
        Some(NodeTag::T_AlterDomainStmt) => {
            let s = n as *mut pg_sys::AlterDomainStmt;
            if (*s).subtype == b'C' as c_char && tag((*s).def) == Some(NodeTag::T_Constraint) {
                f.constraint = Some(added((*s).def as *mut pg_sys::Constraint));
            }
        }
        Some(NodeTag::T_DefineStmt) => {
            let s = n as *mut pg_sys::DefineStmt;
            if (*s).kind == OBJECT_TYPE {
                f.type_kind = Some(if (*s).args.is_null() && (*s).definition.is_null() {
                    TypeKind::Shell
                } else {
                    TypeKind::Base
                });
            }
        }
        Some(NodeTag::T_CompositeTypeStmt) => f.type_kind = Some(TypeKind::Composite),
        Some(NodeTag::T_CreateEnumStmt) => f.type_kind = Some(TypeKind::Enum),
        Some(NodeTag::T_CreateRangeStmt) => f.type_kind = Some(TypeKind::Range),
        Some(NodeTag::T_CreateDomainStmt) => f.type_kind = Some(TypeKind::Domain),
        _ => {}
    }
    f
}

enum Expanded {
    Plain(Command),
    /// A DO block of the database's properties: the statement it runs, and its text.
    InDatabase(Command, String),
}

unsafe fn cstr(p: *const c_char) -> Option<String> {
    (!p.is_null()).then(|| crate::text::to_utf8(CStr::from_ptr(p).to_bytes()))
}

unsafe fn rel(r: *mut pg_sys::RangeVar) -> Rel {
    if r.is_null() {
        return Rel {
            schema: None,
            name: String::new(),
        };
    }
    Rel {
        schema: cstr((*r).schemaname),
        name: cstr((*r).relname).unwrap_or_default(),
    }
}

unsafe fn items<T>(l: *mut pg_sys::List) -> Vec<*mut T> {
    PgList::<T>::from_pg(l).iter_ptr().collect()
}

unsafe fn tag(n: *mut pg_sys::Node) -> Option<NodeTag> {
    (!n.is_null()).then(|| (*n).type_)
}

fn other(t: NodeTag) -> Command {
    let name = format!("{t:?}");
    Command::Other(name.strip_prefix("T_").unwrap_or(&name).to_string())
}

fn target(objtype: pg_sys::ObjectType::Type) -> Target {
    use pg_sys::ObjectType::*;
    match objtype {
        OBJECT_DATABASE => Target::Database,
        OBJECT_ROLE | OBJECT_TABLESPACE | OBJECT_PARAMETER_ACL => Target::ClusterWide,
        _ => Target::Object,
    }
}

fn relkind(objtype: pg_sys::ObjectType::Type) -> Relkind {
    use pg_sys::ObjectType::*;
    match objtype {
        OBJECT_TABLE => Relkind::Table,
        OBJECT_FOREIGN_TABLE => Relkind::ForeignTable,
        OBJECT_VIEW => Relkind::View,
        OBJECT_MATVIEW => Relkind::MaterializedView,
        OBJECT_INDEX => Relkind::Index,
        OBJECT_SEQUENCE => Relkind::Sequence,
        _ => Relkind::Other,
    }
}

#[allow(non_upper_case_globals)]
unsafe fn table_action(cmd: *mut pg_sys::AlterTableCmd) -> TableAction {
    use pg_sys::AlterTableType::*;
    let sub = (*cmd).subtype;
    match sub {
        AT_SetNotNull => TableAction::SetNotNull,
        AT_ColumnDefault => TableAction::SetDefault,
        AT_SetStatistics => TableAction::SetStatistics,
        AT_SetStorage => TableAction::SetStorage,
        AT_SetCompression => TableAction::SetCompression,
        AT_SetOptions => TableAction::SetColumnOptions,
        AT_ReplicaIdentity => TableAction::ReplicaIdentity,
        AT_ClusterOn => TableAction::ClusterOn,
        AT_ChangeOwner => TableAction::ChangeOwner,
        AT_EnableTrig | AT_EnableAlwaysTrig | AT_EnableReplicaTrig | AT_DisableTrig => {
            TableAction::TriggerState
        }
        AT_EnableRule | AT_EnableAlwaysRule | AT_EnableReplicaRule | AT_DisableRule => {
            TableAction::RuleState
        }
        AT_EnableRowSecurity | AT_ForceRowSecurity => TableAction::RowSecurity,
        AT_AddConstraint if tag((*cmd).def) == Some(NodeTag::T_Constraint) => {
            use pg_sys::ConstrType::*;
            let c = (*cmd).def as *mut pg_sys::Constraint;
            TableAction::AddConstraint(match (*c).contype {
                CONSTR_PRIMARY => ConstraintKind::PrimaryKey,
                CONSTR_UNIQUE => ConstraintKind::Unique,
                CONSTR_EXCLUSION => ConstraintKind::Exclusion,
                CONSTR_CHECK => ConstraintKind::Check,
                CONSTR_FOREIGN => ConstraintKind::ForeignKey,
                CONSTR_NOTNULL => ConstraintKind::NotNull,
                _ => ConstraintKind::Other,
            })
        }
        AT_AttachPartition if tag((*cmd).def) == Some(NodeTag::T_PartitionCmd) => {
            let p = (*cmd).def as *mut pg_sys::PartitionCmd;
            if (*p).concurrent {
                TableAction::Other(sub)
            } else {
                TableAction::AttachPartition(rel((*p).name))
            }
        }
        _ => TableAction::Other(sub),
    }
}

/// The DefElems of a list, by name: (name, the node's string value when it is a String).
unsafe fn def_names(l: *mut pg_sys::List) -> Vec<String> {
    items::<pg_sys::DefElem>(l)
        .into_iter()
        .map(|d| cstr((*d).defname).unwrap_or_default())
        .collect()
}

unsafe fn string_value(n: *mut pg_sys::Node) -> Option<String> {
    (tag(n) == Some(NodeTag::T_String)).then(|| cstr((*(n as *mut pg_sys::String)).sval))?
}

/// `SELECT f(c1, c2 ...)` with constant arguments and nothing else: the call.
unsafe fn call(s: *mut pg_sys::SelectStmt) -> Option<Command> {
    let s = &*s;
    let bare = s.distinctClause.is_null()
        && s.intoClause.is_null()
        && s.fromClause.is_null()
        && s.whereClause.is_null()
        && s.groupClause.is_null()
        && s.havingClause.is_null()
        && s.windowClause.is_null()
        && s.valuesLists.is_null()
        && s.sortClause.is_null()
        && s.limitOffset.is_null()
        && s.limitCount.is_null()
        && s.lockingClause.is_null()
        && s.withClause.is_null()
        && s.op == pg_sys::SetOperation::SETOP_NONE;
    let targets = items::<pg_sys::ResTarget>(s.targetList);
    let [t] = targets[..] else { return None };
    if !bare || !(*t).indirection.is_null() || tag((*t).val) != Some(NodeTag::T_FuncCall) {
        return None;
    }
    let f = &*((*t).val as *mut pg_sys::FuncCall);
    let function: Vec<String> = items::<pg_sys::Node>(f.funcname)
        .into_iter()
        .map(|n| string_value(n).unwrap_or_default())
        .collect();
    let plain = f.agg_order.is_null()
        && f.agg_filter.is_null()
        && f.over.is_null()
        && !f.agg_within_group
        && !f.agg_star
        && !f.agg_distinct
        && !f.func_variadic;
    let constants = plain
        && items::<pg_sys::Node>(f.args)
            .into_iter()
            .all(|a| tag(a) == Some(NodeTag::T_A_Const));
    Some(Command::Call {
        function: function.join("."),
        constants,
    })
}

unsafe fn command(n: *mut pg_sys::Node) -> std::result::Result<Expanded, String> {
    use pg_sys::ObjectType::*;
    let Some(t) = tag(n) else {
        return Ok(Expanded::Plain(Command::Other("empty".into())));
    };
    let c = match t {
        NodeTag::T_CreateSchemaStmt => {
            let s = n as *mut pg_sys::CreateSchemaStmt;
            Command::CreateSchema {
                name: cstr((*s).schemaname).unwrap_or_default(),
                plain: (*s).schemaElts.is_null() && (*s).authrole.is_null(),
            }
        }
        NodeTag::T_CreateExtensionStmt => {
            let s = n as *mut pg_sys::CreateExtensionStmt;
            Command::CreateExtension {
                plain: (*s).if_not_exists && def_names((*s).options).iter().all(|d| d == "schema"),
            }
        }
        NodeTag::T_CreatePLangStmt => Command::CreateLanguage,
        NodeTag::T_CreateTransformStmt => Command::CreateTransform,
        NodeTag::T_CreateCastStmt => Command::CreateCast,
        NodeTag::T_DefineStmt => {
            let s = n as *mut pg_sys::DefineStmt;
            match (*s).kind {
                OBJECT_AGGREGATE => Command::CreateAggregate,
                OBJECT_OPERATOR => Command::CreateOperator,
                OBJECT_COLLATION => Command::CreateCollation,
                OBJECT_TSPARSER => Command::CreateTextSearchParser,
                OBJECT_TSTEMPLATE => Command::CreateTextSearchTemplate,
                OBJECT_TSDICTIONARY => Command::CreateTextSearchDictionary,
                OBJECT_TSCONFIGURATION => Command::CreateTextSearchConfiguration,
                OBJECT_TYPE if (*s).args.is_null() && (*s).definition.is_null() => {
                    Command::CreateShellType
                }
                OBJECT_TYPE => Command::CreateType,
                _ => other(t),
            }
        }
        NodeTag::T_CompositeTypeStmt | NodeTag::T_CreateEnumStmt | NodeTag::T_CreateRangeStmt => {
            Command::CreateType
        }
        NodeTag::T_CreateDomainStmt => Command::CreateDomain,
        NodeTag::T_AlterDomainStmt => {
            let s = n as *mut pg_sys::AlterDomainStmt;
            if (*s).subtype == b'C' as c_char {
                Command::AddDomainConstraint
            } else {
                other(t)
            }
        }
        NodeTag::T_CreateFunctionStmt => {
            let f = n as *mut pg_sys::CreateFunctionStmt;
            let schema = schema_of(&def_names_of_strings((*f).funcname));
            if (*f).is_procedure {
                Command::CreateProcedure { schema }
            } else {
                Command::CreateFunction { schema }
            }
        }
        NodeTag::T_CreateAmStmt => Command::CreateAccessMethod,
        NodeTag::T_CreateOpFamilyStmt => Command::CreateOperatorFamily,
        NodeTag::T_AlterOpFamilyStmt => {
            if (*(n as *mut pg_sys::AlterOpFamilyStmt)).isDrop {
                other(t)
            } else {
                Command::AddToOperatorFamily
            }
        }
        NodeTag::T_CreateOpClassStmt => Command::CreateOperatorClass,
        NodeTag::T_CreateConversionStmt => Command::CreateConversion,
        NodeTag::T_AlterTSConfigurationStmt => Command::AlterTextSearchConfiguration,
        NodeTag::T_CreateFdwStmt => Command::CreateForeignDataWrapper,
        NodeTag::T_CreateForeignServerStmt => Command::CreateServer,
        NodeTag::T_CreateUserMappingStmt => Command::CreateUserMapping,
        NodeTag::T_CreateStmt | NodeTag::T_CreateForeignTableStmt => {
            // CreateForeignTableStmt begins with its CreateStmt.
            let s = n as *mut pg_sys::CreateStmt;
            Command::CreateTable {
                rel: rel((*s).relation),
                foreign: t == NodeTag::T_CreateForeignTableStmt,
            }
        }
        NodeTag::T_ViewStmt => {
            let s = n as *mut pg_sys::ViewStmt;
            Command::CreateView {
                rel: rel((*s).view),
                replace: (*s).replace,
            }
        }
        NodeTag::T_CreateTableAsStmt => {
            let s = n as *mut pg_sys::CreateTableAsStmt;
            if (*s).objtype == OBJECT_MATVIEW && !(*s).into.is_null() && !(*s).if_not_exists {
                Command::CreateMaterializedView {
                    rel: rel((*(*s).into).rel),
                    with_data: !(*(*s).into).skipData,
                }
            } else {
                other(t)
            }
        }
        NodeTag::T_CreateSeqStmt => Command::CreateSequence {
            rel: rel((*(n as *mut pg_sys::CreateSeqStmt)).sequence),
        },
        NodeTag::T_AlterSeqStmt => {
            let s = n as *mut pg_sys::AlterSeqStmt;
            let options = def_names((*s).options);
            Command::AlterSequence {
                rel: rel((*s).sequence),
                owned_by_only: !options.is_empty() && options.iter().all(|d| d == "owned_by"),
            }
        }
        NodeTag::T_AlterTableStmt => {
            let s = n as *mut pg_sys::AlterTableStmt;
            Command::AlterTable {
                relkind: relkind((*s).objtype),
                rel: rel((*s).relation),
                actions: items::<pg_sys::AlterTableCmd>((*s).cmds)
                    .into_iter()
                    .map(|c| table_action(c))
                    .collect(),
            }
        }
        NodeTag::T_IndexStmt => {
            let s = n as *mut pg_sys::IndexStmt;
            Command::CreateIndex {
                table: rel((*s).relation),
                name: cstr((*s).idxname),
            }
        }
        NodeTag::T_CreateStatsStmt => Command::CreateStatistics,
        NodeTag::T_AlterStatsStmt => Command::AlterStatistics,
        NodeTag::T_RuleStmt => {
            let s = n as *mut pg_sys::RuleStmt;
            Command::CreateRule {
                table: rel((*s).relation),
                replace: (*s).replace,
            }
        }
        NodeTag::T_CreateTrigStmt => {
            let s = n as *mut pg_sys::CreateTrigStmt;
            if (*s).replace {
                other(t)
            } else {
                Command::CreateTrigger {
                    table: rel((*s).relation),
                }
            }
        }
        NodeTag::T_CreatePolicyStmt => Command::CreatePolicy {
            table: rel((*(n as *mut pg_sys::CreatePolicyStmt)).table),
        },
        NodeTag::T_CreatePublicationStmt => Command::CreatePublication,
        NodeTag::T_AlterPublicationStmt => {
            let s = n as *mut pg_sys::AlterPublicationStmt;
            if (*s).action == pg_sys::AlterPublicationAction::AP_AddObjects {
                Command::AddToPublication
            } else {
                other(t)
            }
        }
        NodeTag::T_CreateSubscriptionStmt => Command::CreateSubscription,
        NodeTag::T_AlterDefaultPrivilegesStmt => Command::AlterDefaultPrivileges,
        NodeTag::T_CreateEventTrigStmt => Command::CreateEventTrigger,
        NodeTag::T_AlterEventTrigStmt => Command::AlterEventTrigger,
        NodeTag::T_RefreshMatViewStmt => {
            let s = n as *mut pg_sys::RefreshMatViewStmt;
            Command::Refresh {
                rel: rel((*s).relation),
                plain: !(*s).concurrent && !(*s).skipData,
            }
        }
        NodeTag::T_CommentStmt => {
            let s = n as *mut pg_sys::CommentStmt;
            if in_extension_schema((*s).objtype, (*s).object)? {
                return Ok(Expanded::Plain(on_extension_schema("COMMENT")));
            }
            Command::Comment(target((*s).objtype))
        }
        NodeTag::T_SecLabelStmt => {
            let s = n as *mut pg_sys::SecLabelStmt;
            if in_extension_schema((*s).objtype, (*s).object)? {
                return Ok(Expanded::Plain(on_extension_schema("SECURITY LABEL")));
            }
            Command::SecurityLabel(target((*s).objtype))
        }
        NodeTag::T_GrantStmt => {
            let s = n as *mut pg_sys::GrantStmt;
            for o in items::<pg_sys::Node>((*s).objects) {
                if in_extension_schema((*s).objtype, o)? {
                    return Ok(Expanded::Plain(on_extension_schema("GRANT")));
                }
            }
            Command::Grant {
                on: target((*s).objtype),
                all_in_schema: (*s).targtype != pg_sys::GrantTargetType::ACL_TARGET_OBJECT,
            }
        }
        NodeTag::T_VariableSetStmt => {
            use pg_sys::VariableSetKind::*;
            let s = n as *mut pg_sys::VariableSetStmt;
            let name = cstr((*s).name).unwrap_or_default();
            if name == "session_authorization"
                && !(*s).is_local
                && matches!((*s).kind, VAR_SET_VALUE | VAR_RESET)
            {
                Command::SessionAuthorization
            } else {
                Command::Other(format!("SET {name}"))
            }
        }
        NodeTag::T_AlterOwnerStmt => Command::ChangeOwner(owned(n as *mut pg_sys::AlterOwnerStmt)),
        NodeTag::T_SelectStmt => {
            call(n as *mut pg_sys::SelectStmt).unwrap_or_else(|| Command::Other("SELECT".into()))
        }
        NodeTag::T_DoStmt => {
            return Ok(match in_database(n as *mut pg_sys::DoStmt)? {
                Some((command, text)) => Expanded::InDatabase(command, text),
                None => Expanded::Plain(other(t)),
            })
        }
        _ => other(t),
    };
    Ok(Expanded::Plain(c))
}

/// A statement on an object of pg_backup's own schema (its catalog, its functions): no
/// archive holds one (the schema is never backed up), and no restore runs one.
fn on_extension_schema(what: &str) -> Command {
    Command::Other(format!("{what} on pg_backup's own schema"))
}

/// Whether `object` (of a COMMENT, SECURITY LABEL or GRANT on an `objtype`) is pg_backup's
/// schema or an object in it, as written (gram.y: a relation, a routine with its arguments, a
/// name, a qualified name list or a type name).
unsafe fn in_extension_schema(
    objtype: pg_sys::ObjectType::Type,
    object: *mut pg_sys::Node,
) -> std::result::Result<bool, String> {
    use pg_sys::ObjectType::*;
    let parts = match tag(object) {
        Some(NodeTag::T_RangeVar) => rel(object as *mut pg_sys::RangeVar)
            .schema
            .into_iter()
            .chain(["-".to_string()])
            .collect(),
        Some(NodeTag::T_ObjectWithArgs) => {
            def_names_of_strings((*(object as *mut pg_sys::ObjectWithArgs)).objname)
        }
        Some(NodeTag::T_String) if objtype == OBJECT_SCHEMA => {
            vec![string_value(object).unwrap_or_default(), "-".into()]
        }
        Some(NodeTag::T_List) => def_names_of_strings(object as *mut pg_sys::List),
        Some(NodeTag::T_TypeName) => {
            def_names_of_strings((*(object as *mut pg_sys::TypeName)).names)
        }
        _ => return Ok(false),
    };
    // The schema is the name before the object's (before its table's for a column, a
    // trigger, a rule, a policy or a table constraint).
    let back = match objtype {
        OBJECT_COLUMN | OBJECT_TRIGGER | OBJECT_RULE | OBJECT_POLICY | OBJECT_TABCONSTRAINT => 3,
        _ => 2,
    };
    let Some(schema) = parts.len().checked_sub(back).map(|i| &parts[i]) else {
        return Ok(false);
    };
    let ext = crate::security::targets::extension_schema().map_err(|e| e.to_string())?;
    Ok(*schema == ext)
}

/// The schema of a qualified name (`[catalog.]schema.name`); None when unqualified.
fn schema_of(parts: &[String]) -> Option<String> {
    (parts.len() >= 2).then(|| parts[parts.len() - 2].clone())
}

/// What an ALTER ... OWNER TO names (gram.y: a name, a qualified name list, or a routine or
/// operator with its arguments; an operator class or family's list starts with its method).
unsafe fn owned(s: *mut pg_sys::AlterOwnerStmt) -> shapes::Owned {
    use pg_sys::ObjectType::*;
    use shapes::Owned;
    let object = (*s).object;
    match tag(object) {
        Some(NodeTag::T_String) if (*s).objectType == OBJECT_SCHEMA => {
            Owned::Schema(string_value(object).unwrap_or_default())
        }
        Some(NodeTag::T_List) => {
            let parts = def_names_of_strings(object as *mut pg_sys::List);
            let parts = match (*s).objectType {
                OBJECT_OPCLASS | OBJECT_OPFAMILY => parts.get(1..).unwrap_or_default().to_vec(),
                _ => parts,
            };
            Owned::InSchema(schema_of(&parts))
        }
        Some(NodeTag::T_ObjectWithArgs) => Owned::InSchema(schema_of(&def_names_of_strings(
            (*(object as *mut pg_sys::ObjectWithArgs)).objname,
        ))),
        _ => Owned::Other,
    }
}

/// The strings of a List of String nodes.
unsafe fn def_names_of_strings(l: *mut pg_sys::List) -> Vec<String> {
    items::<pg_sys::Node>(l)
        .into_iter()
        .filter_map(|n| string_value(n))
        .collect()
}

/// pg_backup's DO block for the database's own properties (ddl/collect/database.rs): the
/// statement it runs in this database, and its text; None for any other DO block.
unsafe fn in_database(
    s: *mut pg_sys::DoStmt,
) -> std::result::Result<Option<(Command, String)>, String> {
    let mut body = None;
    let mut language = None;
    for d in items::<pg_sys::DefElem>((*s).args) {
        match cstr((*d).defname).as_deref() {
            Some("as") => body = string_value((*d).arg),
            Some("language") => language = string_value((*d).arg),
            _ => return Ok(None),
        }
    }
    let (Some(body), Some("plpgsql")) = (body, language.as_deref()) else {
        return Ok(None);
    };
    let Some(template) = template_of(&body) else {
        return Ok(None);
    };
    let database = crate::query::one::<crate::text::Text>(
        "SELECT pg_catalog.current_database()::pg_catalog.text",
        &[],
    )
    .map_err(|e| e.to_string())?
    .unwrap_or_default()
    .0;
    let Some(text) = expand(&template, &pgrx::spi::quote_identifier(&database)) else {
        return Ok(None);
    };
    let c = CString::new(crate::text::to_server(&text).into_owned())
        .map_err(|_| "a NUL character".to_string())?;
    let list = pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
    let stmts = items::<pg_sys::RawStmt>(list);
    let [one] = stmts[..] else { return Ok(None) };
    let n = (*one).stmt;
    let command = match tag(n) {
        Some(NodeTag::T_AlterDatabaseSetStmt) => {
            let a = n as *mut pg_sys::AlterDatabaseSetStmt;
            if cstr((*a).dbname).as_deref() == Some(&database) {
                Command::AlterDatabaseSet
            } else {
                return Ok(None);
            }
        }
        Some(NodeTag::T_AlterRoleSetStmt) => {
            let a = n as *mut pg_sys::AlterRoleSetStmt;
            if cstr((*a).database).as_deref() == Some(&database) {
                Command::AlterRoleInDatabaseSet
            } else {
                return Ok(None);
            }
        }
        Some(NodeTag::T_CommentStmt) => {
            let a = n as *mut pg_sys::CommentStmt;
            if (*a).objtype == pg_sys::ObjectType::OBJECT_DATABASE
                && string_value((*a).object).as_deref() == Some(&database)
            {
                Command::Comment(Target::Database)
            } else {
                return Ok(None);
            }
        }
        Some(NodeTag::T_GrantStmt) => {
            let a = n as *mut pg_sys::GrantStmt;
            let objects: Vec<Option<String>> = items::<pg_sys::Node>((*a).objects)
                .into_iter()
                .map(|o| string_value(o))
                .collect();
            if (*a).objtype == pg_sys::ObjectType::OBJECT_DATABASE
                && (*a).targtype == pg_sys::GrantTargetType::ACL_TARGET_OBJECT
                && objects == [Some(database.clone())]
            {
                Command::Grant {
                    on: Target::Database,
                    all_in_schema: false,
                }
            } else {
                return Ok(None);
            }
        }
        _ => return Ok(None),
    };
    Ok(Some((command, text)))
}

/// `BEGIN EXECUTE pg_catalog.format(<literal>, pg_catalog.current_database()); END`: the
/// literal's value.
fn template_of(body: &str) -> Option<String> {
    let rest = body
        .strip_prefix("BEGIN EXECUTE pg_catalog.format(")?
        .strip_suffix(", pg_catalog.current_database()); END")?;
    decode_literal(rest)
}

/// A string literal as quote_literal writes it: `'...'` with `''`, or `E'...'` with `''`
/// and `\\` (nothing else).
fn decode_literal(s: &str) -> Option<String> {
    let (escaped, inner) = match s.strip_prefix("E'") {
        Some(r) => (true, r.strip_suffix('\'')?),
        None => (false, s.strip_prefix('\'')?.strip_suffix('\'')?),
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' if chars.next() == Some('\'') => out.push('\''),
            '\'' => return None,
            '\\' if escaped => match chars.next() {
                Some('\\') => out.push('\\'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

/// format(template, database) for the templates collect writes: `%I` (exactly once) is the
/// database's quoted name, `%%` a percent sign; anything else is not one of ours.
fn expand(template: &str, database: &str) -> Option<String> {
    let mut out = String::with_capacity(template.len() + database.len());
    let mut names = 0;
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('I') => {
                names += 1;
                out.push_str(database);
            }
            _ => return None,
        }
    }
    (names == 1).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::{decode_literal, expand, template_of};

    #[test]
    fn database_templates_decode_like_postgresql() {
        assert_eq!(
            template_of(
                "BEGIN EXECUTE pg_catalog.format('COMMENT ON DATABASE %I IS ''it''''s 100%%''', pg_catalog.current_database()); END"
            )
            .as_deref(),
            Some("COMMENT ON DATABASE %I IS 'it''s 100%%'")
        );
        assert_eq!(decode_literal("E'a\\\\b''c'").as_deref(), Some("a\\b'c"));
        assert_eq!(decode_literal("E'a\\nb'"), None);
        assert_eq!(decode_literal("'a'b'"), None);
        assert_eq!(
            template_of("BEGIN EXECUTE pg_catalog.format('x', pg_catalog.current_database()); PERFORM 1; END"),
            None
        );
        assert_eq!(
            expand("GRANT CONNECT ON DATABASE %I TO \"a%%b\"", "\"my db\"").as_deref(),
            Some("GRANT CONNECT ON DATABASE \"my db\" TO \"a%b\"")
        );
        assert_eq!(expand("ALTER ROLE x SUPERUSER", "d"), None);
        assert_eq!(expand("COMMENT ON DATABASE %I IS '%s'", "d"), None);
        assert_eq!(expand("GRANT ALL ON DATABASE %I, %I TO x", "d"), None);
    }
}
