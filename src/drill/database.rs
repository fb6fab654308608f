//! The scratch database of a drill: its name, and CREATE / DROP DATABASE run by the drill's
//! worker. Neither may run inside a function or a transaction block (PostgreSQL checks that in
//! ProcessUtility, before calling `createdb` / `DropDatabase`); a background worker's own
//! transaction, started by itself and committed right after, is what a top-level statement
//! gets, so the worker calls the two functions directly, each in a transaction of its own.

use crate::error::Result;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier as ident, quote_literal as literal};

const PREFIX: &str = "pg_backup_drill_";

/// The scratch database of drill `drill_id` of the database `database_oid`: ASCII, at most
/// 16 + 10 + 1 + 19 = 46 bytes (under NAMEDATALEN), unique in the cluster (drill ids are per
/// database). Always quoted where it is used.
pub fn scratch_name(database_oid: u32, drill_id: i64) -> String {
    format!("{PREFIX}{database_oid}_{drill_id}")
}

/// (database oid, drill id) of a scratch database's name; None for any other name.
pub fn parse_scratch_name(name: &str) -> Option<(u32, i64)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (db, id) = rest.split_once('_')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(db) || !digits(id) {
        return None;
    }
    let parsed = (db.parse().ok()?, id.parse().ok()?);
    // Only the canonical spelling (no leading zeros): the name this module would give.
    (scratch_name(parsed.0, parsed.1) == name).then_some(parsed)
}

/// The CREATE DATABASE statement of a scratch database: from template0, with the encoding and
/// locale of the database drilled (so the restore meets what it would meet there), owned by
/// the bootstrap superuser that creates it, and with `CONNECTION LIMIT 0`: no role but a
/// superuser connects while the drill works in it (its workers connect as the bootstrap
/// superuser), so nobody can put objects of their own into it for the counts to run. The role
/// the drill acts for gets CREATE on it (and on its schema public) from the scratch worker.
pub fn create_statement(name: &str, encoding: &str, collate: &str, ctype: &str) -> String {
    format!(
        "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {} CONNECTION LIMIT 0",
        ident(name),
        literal(encoding),
        literal(collate),
        literal(ctype)
    )
}

pub fn drop_statement(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(name))
}

/// Create the scratch database `name`, like the current database. In a background worker
/// connected as the bootstrap superuser, in a transaction of its own that the caller commits
/// right after.
pub fn create(name: &str) -> Result<()> {
    let (encoding, collate, ctype) = crate::text::three::<String, String, String>(
        "SELECT pg_catalog.pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text
         FROM pg_catalog.pg_database WHERE oid = $1",
        // SAFETY: a backend-local global set when the worker connected.
        &[unsafe { pg_sys::MyDatabaseId }.into()],
    )?;
    let sql = create_statement(
        name,
        &encoding.unwrap_or_else(|| "UTF8".into()),
        &collate.unwrap_or_else(|| "C".into()),
        &ctype.unwrap_or_else(|| "C".into()),
    );
    run_database_statement(&sql);
    Ok(())
}

/// Drop the scratch database `name` if it exists, ending any session still connected to it.
pub fn drop(name: &str) {
    run_database_statement(&drop_statement(name));
}

/// Run one CREATE DATABASE or DROP DATABASE statement built above (every name quoted), as
/// PostgreSQL's ProcessUtility would at top level, in the current transaction.
fn run_database_statement(sql: &str) {
    // In the database's encoding (a role's name may be non-ASCII).
    let text = crate::text::statement(sql);
    // SAFETY: in a background worker's own transaction (no transaction block, no
    // subtransaction, not inside a function: what PreventInTransactionBlock would check at top
    // level); `text` outlives the calls; raw_parser returns a List of one RawStmt for our one
    // statement (checked by its node tag before the cast); the ParseState is palloc'd in the
    // transaction's memory. createdb and DropDatabase raise an ERROR on failure, which the
    // caller's transaction wrapper catches.
    unsafe {
        let list = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        if list.is_null() || (*list).length != 1 {
            pgrx::error!("pg_backup: unexpected statement for the drill's database");
        }
        let raw = (*(*list).elements).ptr_value as *mut pg_sys::RawStmt;
        let stmt = (*raw).stmt;
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        (*pstate).p_sourcetext = text.as_ptr();
        match (*stmt).type_ {
            pg_sys::NodeTag::T_CreatedbStmt => {
                pg_sys::createdb(pstate, stmt as *const pg_sys::CreatedbStmt);
            }
            pg_sys::NodeTag::T_DropdbStmt => {
                pg_sys::DropDatabase(pstate, stmt as *mut pg_sys::DropdbStmt);
            }
            _ => pgrx::error!("pg_backup: unexpected statement for the drill's database"),
        }
    }
}

/// The scratch databases of this database's drills that no running drill owns: left by a
/// worker that was terminated or crashed, or by a server restart. Their names.
pub fn leftovers() -> Result<Vec<String>> {
    // SAFETY: a backend-local global set when the process connected.
    let me = u32::from(unsafe { pg_sys::MyDatabaseId });
    let running = crate::catalog::drills::running()?;
    let names: Vec<String> = Spi::connect(|c| {
        c.select(
            "SELECT datname::text FROM pg_catalog.pg_database WHERE datname LIKE 'pg\\_backup\\_drill\\_%'",
            None,
            &[],
        )?
        .map(|r| Ok(r.get::<String>(1)?.unwrap_or_default()))
        .collect::<std::result::Result<Vec<_>, pgrx::spi::Error>>()
    })?;
    Ok(names
        .into_iter()
        .filter(|n| matches!(parse_scratch_name(n), Some((db, id)) if db == me && !running.contains(&id)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_round_trip_and_nothing_else_parses() {
        let n = scratch_name(16384, 7);
        assert_eq!(n, "pg_backup_drill_16384_7");
        assert_eq!(parse_scratch_name(&n), Some((16384, 7)));
        let long = scratch_name(u32::MAX, i64::MAX);
        assert!(long.len() < 64, "fits NAMEDATALEN: {long}");
        assert_eq!(parse_scratch_name(&long), Some((u32::MAX, i64::MAX)));
        for other in [
            "pg_backup_drill_",
            "pg_backup_drill_1",
            "pg_backup_drill_1_",
            "pg_backup_drill__1",
            "pg_backup_drill_01_1",
            "pg_backup_drill_1_2_3",
            "pg_backup_drill_1_x",
            "app",
            "pg_backup_drill_1_-2",
        ] {
            assert_eq!(parse_scratch_name(other), None, "{other}");
        }
    }
}
