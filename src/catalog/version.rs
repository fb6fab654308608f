//! Which release of pg_backup's catalog (the extension's SQL objects in schema `backup`) the
//! current database has. After a new build is installed, the library meets databases still on
//! the previous release's catalog until `ALTER EXTENSION pg_backup UPDATE` runs there; every
//! entry point checks first, so a new library never reads or writes an old catalog, and says
//! exactly what to run.

use crate::error::{BackupError, Result};

/// The release of this library (the control file's default_version comes from the same place).
pub const LIBRARY: &str = env!("CARGO_PKG_VERSION");

/// The catalog release installed in the current database, if pg_backup is installed here.
pub fn installed() -> Result<Option<String>> {
    // Read-only: every entry point checks, also on a hot standby.
    Ok(crate::query::one::<String>(
        "SELECT (SELECT extversion::pg_catalog.text FROM pg_catalog.pg_extension WHERE extname = 'pg_backup')",
        &[],
    )?)
}

/// Ok when the catalog here is this library's release (or pg_backup is not installed here, as
/// in a scheduler worker connected before CREATE EXTENSION).
pub fn require_current() -> Result<()> {
    match installed()? {
        Some(v) => check(&v, &database_name()),
        None => Ok(()),
    }
}

/// The mismatch error for an installed catalog release `catalog` in database `db`.
pub fn check(catalog: &str, db: &str) -> Result<()> {
    if catalog == LIBRARY {
        return Ok(());
    }
    let older = release(catalog) < release(LIBRARY);
    let message = format!(
        "pg_backup's catalog in database \"{db}\" is at version {catalog}, but the pg_backup library installed on this server is version {LIBRARY}"
    );
    let hint = if older {
        format!(
            "Run ALTER EXTENSION pg_backup UPDATE; in database \"{db}\" (as a superuser) to update the catalog to {LIBRARY}. History, schedules and backups are kept."
        )
    } else {
        format!(
            "The library is older than the catalog: install pg_backup {catalog} on this server (downgrades are not supported)."
        )
    };
    Err(BackupError::CatalogOutdated { message, hint })
}

/// "0.10.2" -> [0, 10, 2]; anything that is not a number sorts first.
fn release(v: &str) -> Vec<u64> {
    v.split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0))
        .collect()
}

fn database_name() -> String {
    crate::text::current_database()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_release_passes() {
        assert!(check(LIBRARY, "app").is_ok());
    }

    #[test]
    fn an_older_catalog_asks_for_the_exact_update_command() {
        let e = check("0.0.1", "app").unwrap_err();
        assert_eq!(e.sqlstate(), "55000");
        assert!(e.to_string().contains("version 0.0.1"));
        let hint = e.hint().unwrap();
        assert!(hint.contains("ALTER EXTENSION pg_backup UPDATE;"), "{hint}");
        assert!(hint.contains("\"app\""), "{hint}");
    }

    #[test]
    fn a_newer_catalog_asks_for_the_newer_library() {
        let e = check("99.0.0", "app").unwrap_err();
        assert!(e.hint().unwrap().contains("install pg_backup 99.0.0"));
    }

    #[test]
    fn releases_compare_numerically() {
        assert!(release("0.10.0") > release("0.9.9"));
        assert!(release("0.1.0") < release("0.2.0"));
    }
}
