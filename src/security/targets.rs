//! Schemas a restore never writes into: pg_backup's own schema (its catalog would be
//! forgeable: fake completed backups, wiped history) and every system schema (pg_catalog,
//! information_schema, pg_toast, pg_temp_N, pg_toast_temp_N, and anything else reserved with
//! the `pg_` prefix). Checked for `target_schema` and for every object of the restore, before
//! anything changes.
//!
//! Two checks: by name, leniently (case, surrounding quotes and spaces ignored, so
//! `'"Backup"'` or `' PG_CATALOG'` are refused with a clear message rather than creating a
//! look-alike schema), and by what the exact name resolves to in this database (the
//! extension's namespace, or a namespace PostgreSQL itself created).

use crate::error::{BackupError, Result};

/// The name as someone may have meant it: spaces around it, one level of identifier quotes
/// (with `""` inside), and case ignored.
fn normalize(name: &str) -> String {
    let t = name.trim();
    let t = match t.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => t.to_string(),
    };
    t.trim().to_lowercase()
}

/// Whether `name` is, or looks like, a schema a restore must not write into.
/// `extension_schema` is the schema pg_backup is installed in.
pub fn is_protected_name(name: &str, extension_schema: &str) -> bool {
    let n = normalize(name);
    n == "information_schema"
        || n.starts_with("pg_")
        || n == normalize(extension_schema)
        // The extension's schema is fixed by its control file; refuse the name even if a
        // future version moved it.
        || n == "backup"
}

/// The schema pg_backup is installed in.
pub fn extension_schema() -> Result<String> {
    Ok(crate::query::one::<crate::text::Text>("SELECT (SELECT n.nspname::pg_catalog.text FROM pg_catalog.pg_extension e
                 JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_backup')", &[])?
    .map_or_else(|| "backup".into(), String::from))
}

/// Whether the schema named exactly `name` exists and is the extension's or a system one.
fn resolves_to_protected(name: &str) -> Result<bool> {
    Ok(crate::query::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = $1
                AND (n.oid = (SELECT extnamespace FROM pg_catalog.pg_extension WHERE extname = 'pg_backup')
                     OR n.nspname ~ '^pg_' OR n.nspname = 'information_schema'))",
        &[crate::text::arg(name)],
    )?
    .unwrap_or(false))
}

fn refusal(name: &str, what: &str) -> BackupError {
    BackupError::denied(format!(
        "{what} \"{}\" is pg_backup's own schema or a system schema; a restore never writes there",
        name.escape_debug()
    ))
    .with_hint(
        "Restore into an ordinary schema: target_schema => 'restored' (it is created if missing).",
    )
}

/// Refuse `target_schema` values that name a protected schema (42501 with a HINT).
pub fn check_target_schema(name: &str) -> Result<()> {
    let ext = extension_schema()?;
    if is_protected_name(name, &ext) || resolves_to_protected(name)? {
        return Err(refusal(name, "target_schema"));
    }
    Ok(())
}

/// Refuse a restore that would create or write an object in a protected schema.
/// `schemas`: every schema the restore writes into (after target_schema is applied).
pub fn check_restore_schemas<'a>(schemas: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let ext = extension_schema()?;
    for s in schemas {
        if is_protected_name(s, &ext) || resolves_to_protected(s)? {
            return Err(refusal(s, "schema"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_and_extension_schemas_are_protected_whatever_their_spelling() {
        for n in [
            "backup",
            "Backup",
            "BACKUP",
            "\"backup\"",
            " backup ",
            "\"Backup\"",
            "pg_catalog",
            "PG_CATALOG",
            "\"pg_catalog\"",
            "Pg_Catalog",
            "information_schema",
            "INFORMATION_SCHEMA",
            "\"information_schema\"",
            "pg_toast",
            "pg_temp",
            "pg_temp_3",
            "pg_toast_temp_3",
            "pg_anything",
        ] {
            assert!(is_protected_name(n, "backup"), "{n}");
        }
        assert!(is_protected_name("pgb", "pgb"), "the installed schema");
        for n in [
            "public",
            "restored",
            "backups",
            "backup_old",
            "pgcatalog",
            "my pg_catalog",
        ] {
            assert!(!is_protected_name(n, "backup"), "{n}");
        }
    }
}
