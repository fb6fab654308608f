//! Where restored tables, materialized views and indexes are placed, as pg_restore places
//! them (pg_backup_archiver.c, _selectTablespace): every TOC entry that creates storage
//! records the tablespace it was in when it was not the database's default one, and restore
//! sets `default_tablespace` to it for that entry's statements only (to `''`, the
//! database's default, for every other entry, whatever the calling session has set).
//! Tablespaces are cluster-wide and not in backups: one the backup names must exist here
//! (42704 before anything changes), or `no_tablespaces => true` puts everything in the
//! database's default tablespace (pg_restore --no-tablespaces).
//!
//! Security: restore's DDL runs as the extension owner, for whom PostgreSQL checks no
//! tablespace privilege. So for a caller who is not a superuser the role that will own the
//! object (for an index or a constraint's index: the table's owner) must have CREATE on the
//! tablespace, as PostgreSQL requires of anyone who places an object there (42501 + HINT,
//! before anything changes, and again when the entry runs). A superuser's restore places
//! objects where the backup had them, as pg_restore run by a superuser does.

use pgrx::prelude::*;

use crate::archive::toc::TocEntry;
use crate::error::{BackupError, Result};

/// The tablespace choices of one restore.
pub struct Placement {
    /// The current database's default tablespace (entries naming it need no SET).
    database_default: String,
    /// restore(no_tablespaces => true).
    ignore: bool,
}

impl Placement {
    pub fn new(no_tablespaces: bool) -> Result<Placement> {
        let database_default = crate::query::one::<crate::text::Text>(
            "SELECT t.spcname::pg_catalog.text FROM pg_catalog.pg_database d
             JOIN pg_catalog.pg_tablespace t ON t.oid = d.dattablespace
             WHERE d.datname = pg_catalog.current_database()",
            &[],
        )?
        .unwrap_or_default()
        .0;
        Ok(Placement {
            database_default,
            ignore: no_tablespaces,
        })
    }

    /// The tablespace entry `e` is created in, None for the database's default. A backup's
    /// explicit tablespace that is this database's default is the default (PostgreSQL stores
    /// it so, and refuses to name it for a partitioned table).
    pub fn of<'e>(&self, e: &'e TocEntry) -> Option<&'e str> {
        if self.ignore {
            return None;
        }
        e.tablespace
            .as_deref()
            .filter(|t| !t.is_empty() && *t != self.database_default)
    }

    /// `default_tablespace` for the statements that follow (None: the database's default).
    pub fn select(&self, tablespace: Option<&str>) -> Result<()> {
        let name = crate::text::to_server(tablespace.unwrap_or_default()).into_owned();
        let value = std::ffi::CString::new(name).map_err(|_| {
            BackupError::invalid("a tablespace name in the backup holds a NUL character")
        })?;
        crate::security::set_for_call(c"default_tablespace", &value);
        Ok(())
    }
}

/// Every tablespace the restore places objects in exists.
pub fn check_exist<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let mut missing = Vec::new();
    for n in names {
        let found = crate::query::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tablespace WHERE spcname = $1)",
            &[n.into()],
        )?
        .unwrap_or(false);
        if !found && !missing.contains(&n) {
            missing.push(n);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Err(BackupError::unknown(format!(
        "tablespace {list} of the backup does not exist in this cluster"
    ))
    .with_hint(
        "Tablespaces are not in backups: create them first (CREATE TABLESPACE ... LOCATION ...), \
         or restore with no_tablespaces => true to create every relation in the database's default tablespace. \
         Nothing was restored.",
    ))
}

/// `role` may create objects in `tablespace` (needed for `object`).
pub fn check_create(role: pg_sys::Oid, tablespace: &str, object: &str) -> Result<()> {
    let allowed = crate::query::one::<bool>(
        "SELECT pg_catalog.has_tablespace_privilege($1, $2, 'CREATE')",
        &[role.into(), crate::text::arg(tablespace)],
    )?;
    if allowed.unwrap_or(false) {
        return Ok(());
    }
    let name = crate::query::one::<crate::text::Text>(
        "SELECT pg_catalog.pg_get_userbyid($1)::pg_catalog.text",
        &[role.into()],
    )?;
    let name = name.unwrap_or_default().0;
    Err(BackupError::denied(format!(
        "permission denied to restore {object} into tablespace \"{tablespace}\": its owner \"{name}\" does not have CREATE on it"
    ))
    .with_hint(format!(
        "GRANT CREATE ON TABLESPACE {} TO {} (as a superuser), restore with no_tablespaces => true, or ask a superuser to restore it.",
        spi::quote_identifier(tablespace),
        spi::quote_identifier(&name)
    )))
}
