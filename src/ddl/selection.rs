//! What a backup holds, as `collect` takes it: the relations and schemas the caller's names
//! resolved to (`backup::select` resolves them).

use pgrx::pg_sys;

#[derive(Debug, Clone)]
pub struct Relation {
    pub oid: pg_sys::Oid,
    pub schema: String,
    pub name: String,
    /// pg_class.relkind: r, p, v, m, S, f.
    pub kind: char,
}

#[derive(Debug, Default)]
pub struct Selection {
    /// Every relation whose definition is backed up (tables, views, sequences ...).
    pub relations: Vec<Relation>,
    /// Tables whose rows are backed up (plain tables and leaf partitions).
    pub data_tables: Vec<Relation>,
    /// Schemas whose definition is backed up.
    pub schema_oids: Vec<pg_sys::Oid>,
    /// Large objects belong to the database, not to a schema: only whole-database backups
    /// carry them, as with pg_dump.
    pub large_objects: bool,
    /// Relations named in exclude_tables / exclude_data: extension configuration tables among
    /// them keep their rows out of the backup, as with pg_dump.
    pub excluded: Vec<pg_sys::Oid>,
    /// Extension configuration tables named in `tables`: their rows are backed up (the table
    /// itself comes with its extension).
    pub config_tables: Vec<pg_sys::Oid>,
    /// The backup is taken by a superuser (set by the caller of `select`): only then does it
    /// hold subscriptions, whose connection strings are superuser secrets.
    pub superuser: bool,
}
