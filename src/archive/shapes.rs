//! The statements each kind of TOC entry may hold (issue 17): an archive's SQL is data, not
//! code to trust. Before a restore changes anything, every statement of every entry it will
//! run is parsed with PostgreSQL's own parser (restore/statements.rs) into a [`Command`], and
//! must be one of the [`Shape`]s its kind produces (what `ddl::collect` writes, and what
//! pg_backup 0.1.0 wrote): a table entry holds its CREATE TABLE and the ALTER TABLE forms
//! collect adds to that table, an index entry its CREATE INDEX on its table, a grant entry
//! GRANT / REVOKE, and so on. Anything else (ALTER ROLE, a second CREATE, DO, SET ROLE, COPY,
//! a function called from a SELECT, a statement on another table) is refused.
//!
//! Plain Rust, unit-tested below.

use super::kind::EntryKind;

/// A relation a statement names: (schema as written, name). Collect always qualifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rel {
    pub schema: Option<String>,
    pub name: String,
}

impl Rel {
    pub fn new(schema: Option<&str>, name: &str) -> Rel {
        Rel {
            schema: schema.map(str::to_string),
            name: name.to_string(),
        }
    }
    fn is(&self, n: &Names, name: &str) -> bool {
        n.in_schema(self.schema.as_deref()) && self.name == name
    }
}

/// The kind of constraint an `ALTER TABLE ... ADD CONSTRAINT` adds (pg_constraint.contype;
/// also a TOC entry's fact, `archive::facts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintKind {
    PrimaryKey,
    Unique,
    Exclusion,
    Check,
    ForeignKey,
    /// `NOT NULL column` (PostgreSQL 18's named, NO INHERIT or NOT VALID NOT NULL).
    NotNull,
    Other,
}

/// One action of an ALTER TABLE (AlterTableCmd's subtype, as far as collect writes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableAction {
    SetNotNull,
    SetDefault,
    SetStatistics,
    SetStorage,
    SetCompression,
    SetColumnOptions,
    ReplicaIdentity,
    ClusterOn,
    AddConstraint(ConstraintKind),
    /// ATTACH PARTITION of that partition.
    AttachPartition(Rel),
    /// ENABLE / DISABLE [REPLICA | ALWAYS] TRIGGER.
    TriggerState,
    /// ENABLE / DISABLE [REPLICA | ALWAYS] RULE.
    RuleState,
    /// ENABLE / FORCE ROW LEVEL SECURITY.
    RowSecurity,
    ChangeOwner,
    /// Anything else: AlterTableType's number.
    Other(u32),
}

/// Which kind of relation an ALTER names (`ALTER TABLE`, `ALTER INDEX` ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relkind {
    Table,
    ForeignTable,
    View,
    MaterializedView,
    Index,
    Sequence,
    Other,
}

/// What a COMMENT, SECURITY LABEL or GRANT is on, as far as the check cares: objects of a
/// database, or something cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An object of the database (table, column, function, type, schema ...).
    Object,
    Database,
    /// Roles, tablespaces, configuration parameters: never an entry's business.
    ClusterWide,
}

/// A parsed statement, as much of it as the check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `plain`: no schema elements and no AUTHORIZATION.
    CreateSchema {
        name: String,
        plain: bool,
    },
    /// `plain`: IF NOT EXISTS and no option but SCHEMA.
    CreateExtension {
        plain: bool,
    },
    CreateLanguage,
    CreateTransform,
    CreateCast,
    CreateCollation,
    CreateShellType,
    CreateType,
    CreateDomain,
    AddDomainConstraint,
    /// CREATE [OR REPLACE] FUNCTION / PROCEDURE; `schema`: of its name, as written.
    CreateFunction {
        schema: Option<String>,
    },
    CreateProcedure {
        schema: Option<String>,
    },
    CreateAggregate,
    CreateAccessMethod,
    CreateOperator,
    CreateOperatorFamily,
    AddToOperatorFamily,
    CreateOperatorClass,
    CreateConversion,
    CreateTextSearchParser,
    CreateTextSearchTemplate,
    CreateTextSearchDictionary,
    CreateTextSearchConfiguration,
    AlterTextSearchConfiguration,
    CreateForeignDataWrapper,
    CreateServer,
    CreateUserMapping,
    CreateTable {
        rel: Rel,
        foreign: bool,
    },
    CreateView {
        rel: Rel,
        replace: bool,
    },
    /// `with_data`: the query runs at creation (collect always writes WITH NO DATA).
    CreateMaterializedView {
        rel: Rel,
        with_data: bool,
    },
    CreateSequence {
        rel: Rel,
    },
    /// ALTER SEQUENCE; `owned_by_only`: its only option is OWNED BY.
    AlterSequence {
        rel: Rel,
        owned_by_only: bool,
    },
    AlterTable {
        relkind: Relkind,
        rel: Rel,
        actions: Vec<TableAction>,
    },
    CreateIndex {
        table: Rel,
        name: Option<String>,
    },
    CreateStatistics,
    AlterStatistics,
    CreateRule {
        table: Rel,
        replace: bool,
    },
    CreateTrigger {
        table: Rel,
    },
    CreatePolicy {
        table: Rel,
    },
    CreatePublication,
    AddToPublication,
    CreateSubscription,
    AlterDefaultPrivileges,
    CreateEventTrigger,
    AlterEventTrigger,
    /// REFRESH MATERIALIZED VIEW; `plain`: neither CONCURRENTLY nor WITH NO DATA.
    Refresh {
        rel: Rel,
        plain: bool,
    },
    Comment(Target),
    SecurityLabel(Target),
    /// GRANT or REVOKE of privileges on objects (`all_in_schema`: ... ALL TABLES IN SCHEMA).
    Grant {
        on: Target,
        all_in_schema: bool,
    },
    /// SET SESSION AUTHORIZATION / RESET SESSION AUTHORIZATION (pg_dump's grantors).
    SessionAuthorization,
    /// ALTER ... OWNER TO (any object but a table-like relation), and what it names.
    ChangeOwner(Owned),
    /// `SELECT f(constants)`: the whole statement is one call of `function` (as written,
    /// qualified) with constant arguments (`constants` false: anything else in it).
    Call {
        function: String,
        constants: bool,
    },
    /// pg_backup's `DO $$BEGIN EXECUTE pg_catalog.format('<statement with %I>',
    /// pg_catalog.current_database()); END$$`, which names the database restored into: the
    /// statement it runs.
    InDatabase(Box<Command>),
    AlterDatabaseSet,
    AlterRoleInDatabaseSet,
    /// Anything else, by its parse node's name (`AlterRoleStmt`, `DoStmt`, `CopyStmt` ...).
    Other(String),
}

impl Command {
    /// How errors name the statement.
    pub fn describe(&self) -> String {
        match self {
            Command::Other(node) => node.clone(),
            Command::AlterTable { actions, .. } => format!("ALTER TABLE ({actions:?})"),
            Command::InDatabase(c) => format!("DO block running {}", c.describe()),
            Command::Call { function, .. } => format!("SELECT {function}(...)"),
            other => {
                let s = format!("{other:?}");
                s.split([' ', '(', '{'])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            }
        }
    }
}

/// What an `ALTER ... OWNER TO` names, as far as the check cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    /// An object named by a qualified name (a routine, a type ...): its schema as written.
    InSchema(Option<String>),
    /// A schema, by name.
    Schema(String),
    /// Anything else (a language, a server, a large object ...).
    Other,
}

/// The names of an entry that its statements must use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names<'a> {
    pub schema: &'a str,
    /// target_schema: the schema the restored relations of `schema` move to (their
    /// statements name it instead).
    pub moved_to: Option<&'a str>,
    /// The object's name (`name`; for a routine or a decoration, not a relation name).
    pub name: &'a str,
    /// The relation an index, constraint, trigger ... belongs to.
    pub table: Option<&'a str>,
}

impl Names<'_> {
    fn in_schema(&self, s: Option<&str>) -> bool {
        s.is_some_and(|s| s == self.schema || Some(s) == self.moved_to)
    }
}

/// One statement form a kind of entry may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// CREATE SCHEMA [IF NOT EXISTS] of the entry's name, nothing else in it.
    CreateSchema,
    CreateExtension,
    CreateLanguage,
    CreateTransform,
    CreateCast,
    CreateCollation,
    CreateShellType,
    CreateType,
    CreateDomain,
    AddDomainConstraint,
    CreateFunction,
    CreateProcedure,
    CreateAggregate,
    CreateAccessMethod,
    CreateOperator,
    CreateOperatorFamily,
    AddToOperatorFamily,
    CreateOperatorClass,
    CreateConversion,
    CreateTextSearchParser,
    CreateTextSearchTemplate,
    CreateTextSearchDictionary,
    CreateTextSearchConfiguration,
    AlterTextSearchConfiguration,
    CreateForeignDataWrapper,
    CreateServer,
    CreateUserMapping,
    /// CREATE [FOREIGN] TABLE of the entry.
    CreateTable,
    /// The column and table settings collect writes after a CREATE TABLE, on the entry.
    TableSettings,
    /// CREATE VIEW of the entry (the placeholder or the whole view).
    CreateView,
    /// CREATE OR REPLACE VIEW of the entry.
    ReplaceView,
    /// CREATE MATERIALIZED VIEW ... WITH NO DATA of the entry.
    CreateMaterializedView,
    /// ALTER TABLE ONLY <matview> ALTER COLUMN SET STATISTICS / STORAGE / COMPRESSION.
    MaterializedViewSettings,
    CreateSequence,
    /// ALTER SEQUENCE <entry> OWNED BY.
    SequenceOwnedBy,
    /// ALTER [VIEW | TABLE] <entry's table> ALTER COLUMN ... SET DEFAULT.
    SetDefault,
    /// CREATE INDEX <entry> ON <entry's table>.
    CreateIndex,
    /// CLUSTER ON / REPLICA IDENTITY USING INDEX on the entry's table, ALTER INDEX ... SET
    /// STATISTICS in its schema: what follows an index build.
    IndexSettings,
    /// ALTER TABLE <entry's table> ADD CONSTRAINT, of these kinds.
    AddConstraint(&'static [ConstraintKind]),
    /// ALTER TABLE <any> ATTACH PARTITION <entry>.
    AttachTable,
    /// ALTER INDEX <any> ATTACH PARTITION <entry>.
    AttachIndex,
    CreateStatistics,
    AlterStatistics,
    /// CREATE RULE on the entry's table, and its ENABLE / DISABLE.
    CreateRule,
    /// CREATE [CONSTRAINT] TRIGGER on the entry's table, and its ENABLE / DISABLE.
    CreateTrigger,
    CreatePolicy,
    /// ALTER TABLE <entry's table> ENABLE / FORCE ROW LEVEL SECURITY.
    RowSecurity,
    CreatePublication,
    AddToPublication,
    CreateSubscription,
    AlterDefaultPrivileges,
    CreateEventTrigger,
    AlterEventTrigger,
    /// REFRESH MATERIALIZED VIEW <entry>.
    Refresh,
    Comment,
    SecurityLabel,
    Grant,
    SessionAuthorization,
    /// The database's own grants, comment and settings, wrapped in pg_backup's DO block.
    GrantOnDatabase,
    CommentOnDatabase,
    DatabaseSettings,
    /// ALTER ... OWNER TO.
    ChangeOwner,
    /// SELECT pg_catalog.setval(constants).
    SetSequenceValue,
    /// SELECT pg_catalog.lo_create(constant).
    CreateLargeObject,
}

use ConstraintKind as C;
use Shape as S;

/// The statements an entry of `kind` may hold; none for kinds whose entries carry no SQL.
/// Format-1 kinds (0.1.0) are included: `type` held domains, `constraint` CHECK constraints,
/// `other` the attachment of partitions' indexes.
pub fn shapes(kind: EntryKind) -> &'static [Shape] {
    use EntryKind as K;
    match kind {
        K::Schema => &[S::CreateSchema],
        K::Extension => &[S::CreateExtension],
        K::Language => &[S::CreateLanguage],
        K::Collation => &[S::CreateCollation],
        K::Transform => &[S::CreateTransform],
        K::ShellType => &[S::CreateShellType],
        K::Type => &[S::CreateType, S::CreateDomain],
        K::Domain => &[S::CreateDomain],
        K::DomainConstraint => &[S::AddDomainConstraint],
        K::Cast => &[S::CreateCast],
        K::Function | K::Procedure => &[S::CreateFunction, S::CreateProcedure],
        K::Aggregate => &[S::CreateAggregate],
        K::AccessMethod => &[S::CreateAccessMethod],
        K::Operator => &[S::CreateOperator],
        K::OperatorFamily => &[S::CreateOperatorFamily, S::AddToOperatorFamily],
        K::OperatorClass => &[S::CreateOperatorClass],
        K::Conversion => &[S::CreateConversion],
        K::TextSearchParser => &[S::CreateTextSearchParser],
        K::TextSearchTemplate => &[S::CreateTextSearchTemplate],
        K::TextSearchDictionary => &[S::CreateTextSearchDictionary],
        K::TextSearchConfiguration => &[
            S::CreateTextSearchConfiguration,
            S::AlterTextSearchConfiguration,
        ],
        K::ForeignDataWrapper => &[S::CreateForeignDataWrapper],
        K::Server => &[S::CreateServer],
        K::UserMapping => &[S::CreateUserMapping],
        K::Table | K::ForeignTable => &[S::CreateTable, S::TableSettings],
        K::View => &[S::CreateView],
        K::ViewQuery => &[S::ReplaceView],
        K::MaterializedView => &[S::CreateMaterializedView, S::MaterializedViewSettings],
        K::Sequence => &[S::CreateSequence],
        K::SequenceOwnedBy => &[S::SequenceOwnedBy],
        K::TableAttach => &[S::AttachTable],
        K::Default => &[S::SetDefault],
        // A NOT VALID NOT NULL (18) is added after the rows like a NOT VALID CHECK.
        K::CheckConstraint => &[S::AddConstraint(&[C::Check, C::NotNull])],
        K::Constraint => &[
            S::AddConstraint(&[C::PrimaryKey, C::Unique, C::Exclusion, C::Check]),
            S::IndexSettings,
        ],
        K::ForeignKey => &[S::AddConstraint(&[C::ForeignKey])],
        K::Index => &[S::CreateIndex, S::IndexSettings],
        K::IndexAttach | K::Other => &[S::AttachIndex],
        K::Statistics => &[S::CreateStatistics, S::AlterStatistics],
        K::Rule => &[S::CreateRule],
        K::Trigger => &[S::CreateTrigger],
        K::Policy => &[S::CreatePolicy],
        K::RowSecurity => &[S::RowSecurity],
        K::Publication => &[S::CreatePublication],
        K::PublicationTable | K::PublicationSchema => &[S::AddToPublication],
        K::Subscription => &[S::CreateSubscription],
        K::DefaultPrivileges => &[S::AlterDefaultPrivileges],
        K::EventTrigger => &[S::CreateEventTrigger, S::AlterEventTrigger],
        K::MaterializedViewRefresh => &[S::Refresh],
        K::Comment => &[S::Comment],
        K::SecurityLabel => &[S::SecurityLabel],
        K::Acl => &[S::Grant, S::SessionAuthorization, S::GrantOnDatabase],
        K::Owner => &[S::ChangeOwner],
        K::Database => &[S::CommentOnDatabase, S::DatabaseSettings],
        K::LargeObject => &[S::CreateLargeObject],
        K::SequenceSet | K::ExtensionData => &[S::SetSequenceValue],
        K::TableData | K::LargeObjectData | K::StatisticsData => &[],
    }
}

impl Shape {
    /// Whether `cmd` is a statement of this shape for an entry named `n`.
    pub fn matches(self, cmd: &Command, n: &Names) -> bool {
        let table = n.table.unwrap_or(n.name);
        let on_entry = |r: &Rel| r.is(n, n.name);
        let on_table = |r: &Rel| r.is(n, table);
        let only = |actions: &[TableAction], ok: &dyn Fn(&TableAction) -> bool| {
            !actions.is_empty() && actions.iter().all(ok)
        };
        match (self, cmd) {
            (S::CreateSchema, Command::CreateSchema { name, plain }) => *plain && name == n.name,
            (S::CreateExtension, Command::CreateExtension { plain }) => *plain,
            (S::CreateLanguage, Command::CreateLanguage)
            | (S::CreateTransform, Command::CreateTransform)
            | (S::CreateCast, Command::CreateCast)
            | (S::CreateCollation, Command::CreateCollation)
            | (S::CreateShellType, Command::CreateShellType)
            | (S::CreateType, Command::CreateType)
            | (S::CreateDomain, Command::CreateDomain)
            | (S::AddDomainConstraint, Command::AddDomainConstraint)
            | (S::CreateAggregate, Command::CreateAggregate)
            | (S::CreateAccessMethod, Command::CreateAccessMethod)
            | (S::CreateOperator, Command::CreateOperator)
            | (S::CreateOperatorFamily, Command::CreateOperatorFamily)
            | (S::AddToOperatorFamily, Command::AddToOperatorFamily)
            | (S::CreateOperatorClass, Command::CreateOperatorClass)
            | (S::CreateConversion, Command::CreateConversion)
            | (S::CreateTextSearchParser, Command::CreateTextSearchParser)
            | (S::CreateTextSearchTemplate, Command::CreateTextSearchTemplate)
            | (S::CreateTextSearchDictionary, Command::CreateTextSearchDictionary)
            | (S::CreateTextSearchConfiguration, Command::CreateTextSearchConfiguration)
            | (S::AlterTextSearchConfiguration, Command::AlterTextSearchConfiguration)
            | (S::CreateForeignDataWrapper, Command::CreateForeignDataWrapper)
            | (S::CreateServer, Command::CreateServer)
            | (S::CreateUserMapping, Command::CreateUserMapping)
            | (S::CreateStatistics, Command::CreateStatistics)
            | (S::AlterStatistics, Command::AlterStatistics)
            | (S::CreatePublication, Command::CreatePublication)
            | (S::AddToPublication, Command::AddToPublication)
            | (S::CreateSubscription, Command::CreateSubscription)
            | (S::AlterDefaultPrivileges, Command::AlterDefaultPrivileges)
            | (S::CreateEventTrigger, Command::CreateEventTrigger)
            | (S::AlterEventTrigger, Command::AlterEventTrigger)
            | (S::SessionAuthorization, Command::SessionAuthorization) => true,
            // A routine is created in its entry's schema: never elsewhere (pg_catalog, or
            // pg_backup's own schema, which the entry's schema is checked against), and never
            // another routine replaced (attack of issue 17).
            (S::CreateFunction, Command::CreateFunction { schema })
            | (S::CreateProcedure, Command::CreateProcedure { schema }) => {
                n.in_schema(schema.as_deref())
            }
            // An owner statement gives the entry's object, not another one, to its owner.
            (S::ChangeOwner, Command::ChangeOwner(owned)) => match owned {
                // An entry without a schema (a schema, a language ...) owns nothing in one.
                Owned::InSchema(s) => n.in_schema(s.as_deref()),
                Owned::Schema(name) => name == n.name || Some(name.as_str()) == n.moved_to,
                Owned::Other => true,
            },
            (S::ChangeOwner, Command::AlterTable { rel, actions, .. }) => {
                only(actions, &|a| *a == TableAction::ChangeOwner)
                    && n.in_schema(rel.schema.as_deref())
            }
            (S::CreateTable, Command::CreateTable { rel, .. }) => on_entry(rel),
            (
                S::TableSettings,
                Command::AlterTable {
                    relkind,
                    rel,
                    actions,
                },
            ) => {
                matches!(relkind, Relkind::Table | Relkind::ForeignTable)
                    && on_entry(rel)
                    && only(actions, &|a| {
                        matches!(
                            a,
                            TableAction::SetNotNull
                                | TableAction::SetDefault
                                | TableAction::SetStatistics
                                | TableAction::SetStorage
                                | TableAction::SetCompression
                                | TableAction::SetColumnOptions
                                | TableAction::ReplicaIdentity
                        )
                    })
            }
            (S::CreateView, Command::CreateView { rel, replace }) => !replace && on_entry(rel),
            (S::ReplaceView, Command::CreateView { rel, replace }) => *replace && on_entry(rel),
            (S::CreateMaterializedView, Command::CreateMaterializedView { rel, with_data }) => {
                !with_data && on_entry(rel)
            }
            (
                S::MaterializedViewSettings,
                Command::AlterTable {
                    relkind,
                    rel,
                    actions,
                },
            ) => {
                matches!(relkind, Relkind::Table | Relkind::MaterializedView)
                    && on_entry(rel)
                    && only(actions, &|a| {
                        matches!(
                            a,
                            TableAction::SetStatistics
                                | TableAction::SetStorage
                                | TableAction::SetCompression
                        )
                    })
            }
            (S::CreateSequence, Command::CreateSequence { rel }) => on_entry(rel),
            (S::SequenceOwnedBy, Command::AlterSequence { rel, owned_by_only }) => {
                *owned_by_only && on_entry(rel)
            }
            (
                S::SetDefault,
                Command::AlterTable {
                    relkind,
                    rel,
                    actions,
                },
            ) => {
                matches!(
                    relkind,
                    Relkind::Table | Relkind::ForeignTable | Relkind::View
                ) && on_table(rel)
                    && only(actions, &|a| *a == TableAction::SetDefault)
            }
            (S::CreateIndex, Command::CreateIndex { table: t, name }) => {
                on_table(t) && name.as_deref() == Some(n.name)
            }
            (
                S::IndexSettings,
                Command::AlterTable {
                    relkind,
                    rel,
                    actions,
                },
            ) => match relkind {
                Relkind::Table => {
                    on_table(rel)
                        && only(actions, &|a| {
                            matches!(a, TableAction::ClusterOn | TableAction::ReplicaIdentity)
                        })
                }
                // The index of a constraint may be named otherwise than the constraint.
                Relkind::Index => {
                    n.in_schema(rel.schema.as_deref())
                        && only(actions, &|a| *a == TableAction::SetStatistics)
                }
                _ => false,
            },
            (
                S::AddConstraint(kinds),
                Command::AlterTable {
                    relkind,
                    rel,
                    actions,
                },
            ) => {
                matches!(relkind, Relkind::Table | Relkind::ForeignTable)
                    && on_table(rel)
                    && actions.len() == 1
                    && matches!(&actions[0], TableAction::AddConstraint(k) if kinds.contains(k))
            }
            (
                S::AttachTable,
                Command::AlterTable {
                    relkind, actions, ..
                },
            ) => {
                *relkind == Relkind::Table
                    && actions.len() == 1
                    && matches!(&actions[0], TableAction::AttachPartition(p) if on_entry(p))
            }
            (
                S::AttachIndex,
                Command::AlterTable {
                    relkind, actions, ..
                },
            ) => {
                *relkind == Relkind::Index
                    && actions.len() == 1
                    && matches!(&actions[0], TableAction::AttachPartition(p) if on_entry(p))
            }
            (S::CreateRule, Command::CreateRule { table: t, replace }) => !replace && on_table(t),
            (
                S::CreateRule,
                Command::AlterTable {
                    relkind,
                    rel,
                    actions,
                },
            ) => {
                *relkind == Relkind::Table
                    && on_table(rel)
                    && only(actions, &|a| *a == TableAction::RuleState)
            }
            (S::CreateTrigger, Command::CreateTrigger { table: t }) => on_table(t),
            (
                S::CreateTrigger,
                Command::AlterTable {
                    relkind,
                    rel,
                    actions,
                },
            ) => {
                *relkind == Relkind::Table
                    && on_table(rel)
                    && only(actions, &|a| *a == TableAction::TriggerState)
            }
            (S::CreatePolicy, Command::CreatePolicy { table: t }) => on_table(t),
            (
                S::RowSecurity,
                Command::AlterTable {
                    relkind,
                    rel,
                    actions,
                },
            ) => {
                *relkind == Relkind::Table
                    && on_table(rel)
                    && only(actions, &|a| *a == TableAction::RowSecurity)
            }
            (S::Refresh, Command::Refresh { rel, plain }) => *plain && on_entry(rel),
            (S::Comment, Command::Comment(Target::Object))
            | (S::SecurityLabel, Command::SecurityLabel(Target::Object)) => true,
            (
                S::Grant,
                Command::Grant {
                    on: Target::Object,
                    all_in_schema: false,
                },
            ) => true,
            (S::GrantOnDatabase, Command::InDatabase(c)) => matches!(
                **c,
                Command::Grant {
                    on: Target::Database,
                    all_in_schema: false
                }
            ),
            (S::CommentOnDatabase, Command::InDatabase(c)) => {
                matches!(**c, Command::Comment(Target::Database))
            }
            (S::DatabaseSettings, Command::InDatabase(c)) => matches!(
                **c,
                Command::AlterDatabaseSet | Command::AlterRoleInDatabaseSet
            ),
            (
                S::SetSequenceValue,
                Command::Call {
                    function,
                    constants,
                },
            ) => *constants && function == "pg_catalog.setval",
            (
                S::CreateLargeObject,
                Command::Call {
                    function,
                    constants,
                },
            ) => *constants && function == "pg_catalog.lo_create",
            _ => false,
        }
    }
}

/// Why an entry's statements were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Statement number `at` (from 1) is not one of the kind's shapes.
    Unexpected { at: usize, command: Command },
    /// A kind that holds one object creates it once: a second CREATE of it.
    Repeated { at: usize },
    /// The owner statement is not exactly one ALTER ... OWNER TO.
    OwnerStatement,
}

/// The shapes that create the entry's object: an entry holds at most one of them.
fn creates(shape: Shape) -> bool {
    !matches!(
        shape,
        S::TableSettings
            | S::MaterializedViewSettings
            | S::IndexSettings
            | S::AddToOperatorFamily
            | S::AlterTextSearchConfiguration
            | S::AlterStatistics
            | S::AlterEventTrigger
            | S::Grant
            | S::SessionAuthorization
            | S::GrantOnDatabase
            | S::CommentOnDatabase
            | S::DatabaseSettings
            | S::CreateRule
            | S::CreateTrigger
            // Entries of several statements of one form: ENABLE and FORCE ROW LEVEL
            // SECURITY, a role's default privileges, an object's labels.
            | S::RowSecurity
            | S::AlterDefaultPrivileges
            | S::SecurityLabel
    )
}

/// Check the statements of an entry of `kind` against its shapes: every statement has one of
/// them, and the one that creates the object comes once (a table entry is one CREATE TABLE
/// and its settings, never a second CREATE).
pub fn check(kind: EntryKind, names: &Names, commands: &[Command]) -> Result<(), Refusal> {
    let allowed = shapes(kind);
    let mut created = false;
    for (i, c) in commands.iter().enumerate() {
        let Some(shape) = allowed.iter().find(|s| s.matches(c, names)) else {
            return Err(Refusal::Unexpected {
                at: i + 1,
                command: c.clone(),
            });
        };
        let once = creates(*shape) && !matches!(kind, EntryKind::Acl | EntryKind::Database);
        // Rule and trigger entries: the CREATE itself once (their state changes may follow).
        let once = once
            || matches!(
                (shape, c),
                (S::CreateRule, Command::CreateRule { .. })
                    | (S::CreateTrigger, Command::CreateTrigger { .. })
            );
        if once {
            if created {
                return Err(Refusal::Repeated { at: i + 1 });
            }
            created = true;
        }
    }
    Ok(())
}

/// An owner statement (`owner_sql`): exactly one ALTER ... OWNER TO.
pub fn check_owner_statement(commands: &[Command], names: &Names) -> Result<(), Refusal> {
    match commands {
        [one] if S::ChangeOwner.matches(one, names) => Ok(()),
        _ => Err(Refusal::OwnerStatement),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<'a>(schema: &'a str, name: &'a str, table: Option<&'a str>) -> Names<'a> {
        Names {
            schema,
            moved_to: None,
            name,
            table,
        }
    }

    fn alter(relkind: Relkind, schema: &str, name: &str, actions: Vec<TableAction>) -> Command {
        Command::AlterTable {
            relkind,
            rel: Rel::new(Some(schema), name),
            actions,
        }
    }

    fn other(node: &str) -> Command {
        Command::Other(node.into())
    }

    #[test]
    fn a_table_entry_is_its_create_table_and_its_settings() {
        let n = names("s", "t", None);
        let create = Command::CreateTable {
            rel: Rel::new(Some("s"), "t"),
            foreign: false,
        };
        let settings = alter(
            Relkind::Table,
            "s",
            "t",
            vec![TableAction::SetStatistics, TableAction::SetNotNull],
        );
        assert_eq!(
            check(EntryKind::Table, &n, &[create.clone(), settings.clone()]),
            Ok(())
        );
        // A statement appended to it.
        assert_eq!(
            check(
                EntryKind::Table,
                &n,
                &[create.clone(), other("AlterRoleStmt")]
            ),
            Err(Refusal::Unexpected {
                at: 2,
                command: other("AlterRoleStmt")
            })
        );
        // Another table created by the entry of t, or t created twice.
        let elsewhere = Command::CreateTable {
            rel: Rel::new(Some("s"), "u"),
            foreign: false,
        };
        assert!(check(EntryKind::Table, &n, &[elsewhere]).is_err());
        assert_eq!(
            check(EntryKind::Table, &n, &[create.clone(), create.clone()]),
            Err(Refusal::Repeated { at: 2 })
        );
        // Settings of another table, or an action collect never writes after CREATE TABLE.
        assert!(check(
            EntryKind::Table,
            &n,
            &[
                create.clone(),
                alter(Relkind::Table, "s", "u", vec![TableAction::SetNotNull])
            ]
        )
        .is_err());
        assert!(check(
            EntryKind::Table,
            &n,
            &[
                create.clone(),
                alter(Relkind::Table, "s", "t", vec![TableAction::ChangeOwner])
            ]
        )
        .is_err());
        // An unqualified name is not the entry's.
        let bare = Command::CreateTable {
            rel: Rel::new(None, "t"),
            foreign: false,
        };
        assert!(check(EntryKind::Table, &n, &[bare]).is_err());
        assert_eq!(check(EntryKind::Table, &n, &[settings]), Ok(()));
    }

    #[test]
    fn other_kinds_of_statement_are_refused_in_every_kind() {
        let n = names("s", "t", Some("t"));
        for kind in [
            EntryKind::Table,
            EntryKind::Index,
            EntryKind::Acl,
            EntryKind::Comment,
            EntryKind::Function,
            EntryKind::Database,
            EntryKind::SequenceSet,
            EntryKind::Other,
            EntryKind::TableData,
        ] {
            for node in [
                "AlterRoleStmt",
                "DoStmt",
                "VariableSetStmt",
                "CopyStmt",
                "SelectStmt",
                "GrantRoleStmt",
                "CreateRoleStmt",
            ] {
                assert!(check(kind, &n, &[other(node)]).is_err(), "{kind:?} {node}");
            }
        }
    }

    #[test]
    fn calls_are_only_the_constant_calls_of_their_kind() {
        let n = names("s", "seq", None);
        let setval = |constants| Command::Call {
            function: "pg_catalog.setval".into(),
            constants,
        };
        assert_eq!(check(EntryKind::SequenceSet, &n, &[setval(true)]), Ok(()));
        assert!(check(EntryKind::SequenceSet, &n, &[setval(false)]).is_err());
        assert!(check(EntryKind::SequenceSet, &n, &[setval(true), setval(true)]).is_err());
        let call = |f: &str| Command::Call {
            function: f.into(),
            constants: true,
        };
        assert!(check(EntryKind::SequenceSet, &n, &[call("public.evil")]).is_err());
        assert!(check(EntryKind::SequenceSet, &n, &[call("setval")]).is_err());
        assert!(check(EntryKind::LargeObject, &n, &[call("pg_catalog.lo_create")]).is_ok());
        assert!(check(EntryKind::LargeObject, &n, &[setval(true)]).is_err());
        assert!(check(EntryKind::Table, &n, &[setval(true)]).is_err());
    }

    #[test]
    fn post_data_entries_work_on_their_own_table() {
        let n = names("s", "t_fk", Some("t"));
        let fk = alter(
            Relkind::Table,
            "s",
            "t",
            vec![TableAction::AddConstraint(ConstraintKind::ForeignKey)],
        );
        assert_eq!(
            check(EntryKind::ForeignKey, &n, std::slice::from_ref(&fk)),
            Ok(())
        );
        assert!(check(EntryKind::Constraint, &n, &[fk]).is_err());
        let other_table = alter(
            Relkind::Table,
            "s",
            "u",
            vec![TableAction::AddConstraint(ConstraintKind::ForeignKey)],
        );
        assert!(check(EntryKind::ForeignKey, &n, &[other_table]).is_err());
        let two = alter(
            Relkind::Table,
            "s",
            "t",
            vec![
                TableAction::AddConstraint(ConstraintKind::ForeignKey),
                TableAction::ChangeOwner,
            ],
        );
        assert!(check(EntryKind::ForeignKey, &n, &[two]).is_err());
        // 18's NOT VALID NOT NULL is added after the rows, as a NOT VALID CHECK is; it is no
        // foreign key.
        let not_null = alter(
            Relkind::Table,
            "s",
            "t",
            vec![TableAction::AddConstraint(ConstraintKind::NotNull)],
        );
        assert_eq!(
            check(
                EntryKind::CheckConstraint,
                &n,
                std::slice::from_ref(&not_null)
            ),
            Ok(())
        );
        assert!(check(EntryKind::ForeignKey, &n, &[not_null]).is_err());
        // A PRIMARY KEY and what follows its index build.
        let pk = alter(
            Relkind::Table,
            "s",
            "t",
            vec![TableAction::AddConstraint(ConstraintKind::PrimaryKey)],
        );
        let cluster = alter(Relkind::Table, "s", "t", vec![TableAction::ClusterOn]);
        let stats = alter(
            Relkind::Index,
            "s",
            "t_pkey",
            vec![TableAction::SetStatistics],
        );
        assert_eq!(
            check(EntryKind::Constraint, &n, &[pk.clone(), cluster, stats]),
            Ok(())
        );
        assert_eq!(
            check(EntryKind::Constraint, &n, &[pk.clone(), pk]),
            Err(Refusal::Repeated { at: 2 })
        );
        // An index: CREATE INDEX of its name on its table.
        let i = names("s", "t_idx", Some("t"));
        let create = |table: &str, name: &str| Command::CreateIndex {
            table: Rel::new(Some("s"), table),
            name: Some(name.into()),
        };
        assert_eq!(check(EntryKind::Index, &i, &[create("t", "t_idx")]), Ok(()));
        assert!(check(EntryKind::Index, &i, &[create("u", "t_idx")]).is_err());
        assert!(check(EntryKind::Index, &i, &[create("t", "other")]).is_err());
        // Triggers and their state, on their table only.
        let trig = Command::CreateTrigger {
            table: Rel::new(Some("s"), "t"),
        };
        let state = alter(Relkind::Table, "s", "t", vec![TableAction::TriggerState]);
        assert_eq!(
            check(EntryKind::Trigger, &n, &[trig.clone(), state]),
            Ok(())
        );
        assert!(check(EntryKind::Trigger, &n, &[trig.clone(), trig]).is_err());
    }

    #[test]
    fn attachments_name_the_attached_partition() {
        let n = names("s", "p1", Some("p1"));
        let attach = |child: &str| {
            alter(
                Relkind::Table,
                "other",
                "p",
                vec![TableAction::AttachPartition(Rel::new(Some("s"), child))],
            )
        };
        assert_eq!(check(EntryKind::TableAttach, &n, &[attach("p1")]), Ok(()));
        assert!(check(EntryKind::TableAttach, &n, &[attach("p2")]).is_err());
        let index = alter(
            Relkind::Index,
            "s",
            "p_idx",
            vec![TableAction::AttachPartition(Rel::new(Some("s"), "p1"))],
        );
        assert_eq!(
            check(EntryKind::IndexAttach, &n, std::slice::from_ref(&index)),
            Ok(())
        );
        // Format 1 called it `index_attach`, which this version reads as `other`.
        assert_eq!(check(EntryKind::Other, &n, &[index]), Ok(()));
    }

    #[test]
    fn decorations_stay_on_objects_of_the_database() {
        let n = names("s", "TABLE s.t", None);
        assert_eq!(
            check(EntryKind::Comment, &n, &[Command::Comment(Target::Object)]),
            Ok(())
        );
        assert!(check(
            EntryKind::Comment,
            &n,
            &[Command::Comment(Target::ClusterWide)]
        )
        .is_err());
        let grant = Command::Grant {
            on: Target::Object,
            all_in_schema: false,
        };
        assert_eq!(
            check(
                EntryKind::Acl,
                &n,
                &[
                    grant.clone(),
                    Command::SessionAuthorization,
                    grant.clone(),
                    Command::SessionAuthorization
                ]
            ),
            Ok(())
        );
        for bad in [
            Command::Grant {
                on: Target::ClusterWide,
                all_in_schema: false,
            },
            Command::Grant {
                on: Target::Object,
                all_in_schema: true,
            },
            Command::Comment(Target::Object),
        ] {
            assert!(check(EntryKind::Acl, &n, &[bad]).is_err());
        }
        // The database's grants come in pg_backup's DO block, and only they.
        let on_db = Command::InDatabase(Box::new(Command::Grant {
            on: Target::Database,
            all_in_schema: false,
        }));
        assert_eq!(
            check(EntryKind::Acl, &n, std::slice::from_ref(&on_db)),
            Ok(())
        );
        assert!(check(EntryKind::Database, &n, &[on_db]).is_err());
        let settings = Command::InDatabase(Box::new(Command::AlterRoleInDatabaseSet));
        assert_eq!(check(EntryKind::Database, &n, &[settings]), Ok(()));
        let hidden = Command::InDatabase(Box::new(other("AlterRoleStmt")));
        assert!(check(EntryKind::Database, &n, &[hidden]).is_err());
    }

    #[test]
    fn owner_statements_are_one_owner_change() {
        let n = names("s", "t", None);
        let owner = Command::ChangeOwner(Owned::InSchema(Some("s".into())));
        assert_eq!(
            check_owner_statement(std::slice::from_ref(&owner), &n),
            Ok(())
        );
        // Another schema's object, another schema, an object of another schema's table.
        for elsewhere in [
            Command::ChangeOwner(Owned::InSchema(Some("backup".into()))),
            Command::ChangeOwner(Owned::InSchema(None)),
            Command::ChangeOwner(Owned::Schema("backup".into())),
            alter(
                Relkind::Table,
                "backup",
                "t",
                vec![TableAction::ChangeOwner],
            ),
        ] {
            assert!(
                check_owner_statement(std::slice::from_ref(&elsewhere), &n).is_err(),
                "{elsewhere:?}"
            );
        }
        let schema = names("", "s", None);
        let own = Command::ChangeOwner(Owned::Schema("s".into()));
        assert_eq!(check_owner_statement(&[own], &schema), Ok(()));
        // An entry without a schema gives away nothing that lives in one.
        let routine = Command::ChangeOwner(Owned::InSchema(Some("backup".into())));
        assert!(check_owner_statement(&[routine], &schema).is_err());
        let table = alter(Relkind::Table, "s", "t", vec![TableAction::ChangeOwner]);
        assert_eq!(
            check_owner_statement(std::slice::from_ref(&table), &n),
            Ok(())
        );
        assert!(check_owner_statement(&[table.clone(), owner], &n).is_err());
        assert!(check_owner_statement(&[other("AlterRoleStmt")], &n).is_err());
        assert!(check_owner_statement(&[], &n).is_err());
        assert!(check(EntryKind::Owner, &n, &[table]).is_ok());
    }

    #[test]
    fn entries_of_several_statements_of_one_form() {
        let n = names("s", "t", None);
        let rls = alter(Relkind::Table, "s", "t", vec![TableAction::RowSecurity]);
        assert_eq!(
            check(EntryKind::RowSecurity, &n, &[rls.clone(), rls]),
            Ok(())
        );
        let d = Command::AlterDefaultPrivileges;
        assert_eq!(
            check(EntryKind::DefaultPrivileges, &n, &[d.clone(), d.clone(), d]),
            Ok(())
        );
        let c = Command::Comment(Target::Object);
        assert_eq!(
            check(EntryKind::Comment, &n, &[c.clone(), c]),
            Err(Refusal::Repeated { at: 2 })
        );
    }

    #[test]
    fn schemas_materialized_views_and_refreshes_hold_nothing_else() {
        let n = names("s", "s", None);
        let schema = |name: &str, plain| Command::CreateSchema {
            name: name.into(),
            plain,
        };
        assert_eq!(check(EntryKind::Schema, &n, &[schema("s", true)]), Ok(()));
        assert!(check(EntryKind::Schema, &n, &[schema("s", false)]).is_err());
        assert!(check(EntryKind::Schema, &n, &[schema("x", true)]).is_err());
        let m = names("s", "mv", None);
        let mv = |with_data| Command::CreateMaterializedView {
            rel: Rel::new(Some("s"), "mv"),
            with_data,
        };
        assert_eq!(check(EntryKind::MaterializedView, &m, &[mv(false)]), Ok(()));
        assert!(check(EntryKind::MaterializedView, &m, &[mv(true)]).is_err());
        let refresh = |plain| Command::Refresh {
            rel: Rel::new(Some("s"), "mv"),
            plain,
        };
        assert_eq!(
            check(EntryKind::MaterializedViewRefresh, &m, &[refresh(true)]),
            Ok(())
        );
        assert!(check(EntryKind::MaterializedViewRefresh, &m, &[refresh(false)]).is_err());
        // Entries without SQL hold nothing.
        assert!(check(EntryKind::TableData, &m, &[refresh(true)]).is_err());
        assert_eq!(check(EntryKind::TableData, &m, &[]), Ok(()));
    }
}
