//! What a TOC entry creates (its kind) and the pg_dump section it belongs to: the vocabulary
//! below the TOC itself (`toc`), the statement shapes (`shapes`) and the entries' facts
//! (`facts`), so that none of them imports another in a circle.

use serde::{Deserialize, Serialize};

/// pg_dump's three sections: what COPY needs, the rows, what comes after the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    PreData,
    Data,
    PostData,
}

/// What an entry creates. Serialized in snake_case, which is also the `kind` column of
/// restore()'s result rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Schema,
    Extension,
    Language,
    Collation,
    Transform,
    ShellType,
    Type,
    Domain,
    /// A domain's CHECK constraint split off its CREATE DOMAIN to break a loop.
    DomainConstraint,
    Cast,
    Function,
    Procedure,
    Aggregate,
    AccessMethod,
    Operator,
    OperatorFamily,
    OperatorClass,
    Conversion,
    TextSearchParser,
    TextSearchTemplate,
    TextSearchDictionary,
    TextSearchConfiguration,
    ForeignDataWrapper,
    Server,
    UserMapping,
    Table,
    ForeignTable,
    View,
    MaterializedView,
    Sequence,
    SequenceOwnedBy,
    /// ALTER TABLE parent ATTACH PARTITION child.
    TableAttach,
    /// A column default split off its CREATE TABLE (or a view column's default).
    Default,
    /// A table's CHECK constraint split off its CREATE TABLE (or a NOT VALID one).
    CheckConstraint,
    /// A view's query split off a placeholder view: CREATE OR REPLACE VIEW.
    ViewQuery,
    LargeObject,
    TableData,
    /// The rows of an extension's configuration table (pg_extension_config_dump): the table
    /// comes with CREATE EXTENSION, these rows are added to it (the entry's SQL is empty, the
    /// rows are a data file). For a configuration sequence: its `setval`, run with the other
    /// sequence values.
    ExtensionData,
    SequenceSet,
    LargeObjectData,
    Constraint,
    Index,
    IndexAttach,
    Statistics,
    /// A relation's planner statistics (pg_dump 18's "STATISTICS DATA"): `pg_class` counts and
    /// `pg_stats` rows, in the entry's `statistics` (its SQL is empty). Data section for a
    /// table, as pg_dump puts them.
    StatisticsData,
    Rule,
    Trigger,
    ForeignKey,
    Policy,
    RowSecurity,
    Publication,
    PublicationTable,
    PublicationSchema,
    Subscription,
    DefaultPrivileges,
    EventTrigger,
    MaterializedViewRefresh,
    Comment,
    SecurityLabel,
    Acl,
    /// ALTER ... OWNER TO as an entry of its own (format-1 archives and large objects).
    Owner,
    /// Properties of the database itself: COMMENT ON DATABASE, ALTER DATABASE ... SET.
    Database,
    /// Anything a format-1 archive named that this version does not know.
    Other,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        use EntryKind::*;
        match self {
            Schema => "schema",
            Extension => "extension",
            Language => "language",
            Collation => "collation",
            Transform => "transform",
            ShellType => "shell_type",
            Type => "type",
            Domain => "domain",
            DomainConstraint => "domain_constraint",
            Cast => "cast",
            Function => "function",
            Procedure => "procedure",
            Aggregate => "aggregate",
            AccessMethod => "access_method",
            Operator => "operator",
            OperatorFamily => "operator_family",
            OperatorClass => "operator_class",
            Conversion => "conversion",
            TextSearchParser => "text_search_parser",
            TextSearchTemplate => "text_search_template",
            TextSearchDictionary => "text_search_dictionary",
            TextSearchConfiguration => "text_search_configuration",
            ForeignDataWrapper => "foreign_data_wrapper",
            Server => "server",
            UserMapping => "user_mapping",
            Table => "table",
            ForeignTable => "foreign_table",
            View => "view",
            MaterializedView => "materialized_view",
            Sequence => "sequence",
            SequenceOwnedBy => "sequence_owned_by",
            TableAttach => "table_attach",
            Default => "default",
            CheckConstraint => "check_constraint",
            ViewQuery => "view_query",
            LargeObject => "large_object",
            TableData => "table_data",
            ExtensionData => "extension_data",
            SequenceSet => "sequence_set",
            LargeObjectData => "large_object_data",
            Constraint => "constraint",
            Index => "index",
            IndexAttach => "index_attach",
            Statistics => "statistics",
            StatisticsData => "statistics_data",
            Rule => "rule",
            Trigger => "trigger",
            ForeignKey => "foreign_key",
            Policy => "policy",
            RowSecurity => "row_security",
            Publication => "publication",
            PublicationTable => "publication_table",
            PublicationSchema => "publication_schema",
            Subscription => "subscription",
            DefaultPrivileges => "default_privileges",
            EventTrigger => "event_trigger",
            MaterializedViewRefresh => "materialized_view_refresh",
            Comment => "comment",
            SecurityLabel => "security_label",
            Acl => "acl",
            Owner => "owner",
            Database => "database",
            Other => "other",
        }
    }

    /// The section an entry of this kind belongs to (a loop breaker may postpone a
    /// pre-data entry to post-data).
    pub fn section(self) -> Section {
        use EntryKind::*;
        match self {
            TableData | ExtensionData | SequenceSet | LargeObjectData | StatisticsData => {
                Section::Data
            }
            Constraint
            | Index
            | IndexAttach
            | Statistics
            | Rule
            | Trigger
            | ForeignKey
            | Policy
            | RowSecurity
            | Publication
            | PublicationTable
            | PublicationSchema
            | Subscription
            | DefaultPrivileges
            | EventTrigger
            | MaterializedViewRefresh
            | DomainConstraint
            | CheckConstraint
            | ViewQuery => Section::PostData,
            _ => Section::PreData,
        }
    }

    /// pg_dump_sort.c's type priority: the tie-break of the topological sort.
    pub fn priority(self) -> u8 {
        use EntryKind::*;
        match self {
            Schema => 1,
            Language => 2,
            Collation => 3,
            Transform => 4,
            Extension => 5,
            ShellType | Type | Domain => 6,
            Cast => 7,
            Function | Procedure => 8,
            Aggregate => 9,
            AccessMethod => 10,
            Operator => 11,
            OperatorFamily | OperatorClass => 12,
            Conversion => 13,
            TextSearchParser => 14,
            TextSearchTemplate => 15,
            TextSearchDictionary => 16,
            TextSearchConfiguration => 17,
            ForeignDataWrapper => 18,
            Server => 19,
            UserMapping => 19,
            Table | ForeignTable | View | MaterializedView | Sequence | SequenceOwnedBy => 20,
            TableAttach => 21,
            Default => 23,
            LargeObject => 24,
            TableData | ExtensionData => 26,
            SequenceSet => 27,
            LargeObjectData => 28,
            // PRIO_STATISTICS_DATA_DATA: after the rows, before the post-data boundary.
            StatisticsData => 29,
            Constraint | CheckConstraint | DomainConstraint | ViewQuery => 30,
            Index => 31,
            IndexAttach => 32,
            Statistics => 33,
            Rule => 34,
            Trigger => 35,
            ForeignKey => 36,
            Policy | RowSecurity => 37,
            Publication => 38,
            PublicationTable => 39,
            PublicationSchema => 40,
            Subscription => 41,
            DefaultPrivileges => 42,
            EventTrigger => 43,
            MaterializedViewRefresh => 44,
            // Decorations sort right after what they decorate (they depend on it).
            Comment | SecurityLabel | Acl | Owner | Database | Other => 45,
        }
    }

    /// Relations: the kinds `tables` / `schemas` / `existing` talk about.
    pub fn is_relation(self) -> bool {
        use EntryKind::*;
        matches!(
            self,
            Table | ForeignTable | View | MaterializedView | Sequence
        )
    }

    /// Kinds replayed in pg_restore's ACL pass, after every other entry of the main pass:
    /// a REVOKE from the owner must not stop the owner's own later steps.
    pub fn in_acl_pass(self) -> bool {
        matches!(self, EntryKind::Acl | EntryKind::DefaultPrivileges)
    }

    /// Kinds replayed after the ACL pass, as pg_restore does: event triggers must not fire
    /// on the restore's own DDL, and materialized views are refreshed with the final grants.
    pub fn in_post_acl_pass(self) -> bool {
        matches!(
            self,
            EntryKind::EventTrigger | EntryKind::MaterializedViewRefresh
        )
    }

    /// Entries that only decorate another entry (they come and go with it).
    pub fn is_decoration(self) -> bool {
        matches!(
            self,
            EntryKind::Comment | EntryKind::SecurityLabel | EntryKind::Acl | EntryKind::Owner
        )
    }

    /// A format-1 kind string.
    pub fn from_v1(kind: &str) -> EntryKind {
        use EntryKind::*;
        match kind {
            "schema" => Schema,
            "extension" => Extension,
            "collation" => Collation,
            "type" => Type,
            "function" => Function,
            "procedure" => Procedure,
            "sequence" => Sequence,
            "table" => Table,
            "sequence_owner" => SequenceOwnedBy,
            "view" => View,
            "materialized_view" => MaterializedView,
            "large_object" => LargeObject,
            "sequence_set" => SequenceSet,
            "index" => Index,
            "constraint" => Constraint,
            "foreign_key" => ForeignKey,
            "trigger" => Trigger,
            "policy" => Policy,
            "row_security" => RowSecurity,
            "comment" => Comment,
            "owner" => Owner,
            "acl" => Acl,
            "materialized_view_refresh" => MaterializedViewRefresh,
            "default" => Default,
            _ => Other,
        }
    }
}
