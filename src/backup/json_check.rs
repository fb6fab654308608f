//! The json format writes each row with row_to_json and restore reads it back with
//! json_populate_record. Some values do not survive that trip: the escape \u0000 inside a json
//! value (no text or jsonb can hold it, so restore fails), a JSON null in a json/jsonb column
//! (it comes back as SQL NULL), an array whose lower bound is not 1, a json value with
//! whitespace around it. A backup that cannot be restored as it was is worse than none, so a
//! json backup checks every row of a table before writing it and refuses the table up front,
//! naming it and the column. Only the json format pays for this check.

use pgrx::prelude::*;

use super::select::Relation;
use crate::error::{BackupError, Result};
use crate::subtransaction;

fn quoted(t: &Relation) -> String {
    format!(
        "{}.{}",
        spi::quote_identifier(&t.schema),
        spi::quote_identifier(&t.name)
    )
}

/// An unescaped `\u0000` in JSON text (an odd number of backslashes before `u0000`).
const NUL_ESCAPE: &str = r"(^|[^\\])(\\\\)*\\u0000";

/// Refuse `t` for the json format unless every value of `columns` comes back as it was.
pub fn check(t: &Relation, columns: &[String]) -> Result<()> {
    if columns.is_empty() {
        return Ok(());
    }
    let table = quoted(t);
    let cols: Vec<String> = columns.iter().map(spi::quote_identifier).collect();
    // The first column whose value differs after the round trip, in the first row that has one.
    let differs: Vec<String> = columns
        .iter()
        .zip(&cols)
        .map(|(name, c)| {
            format!(
                "({lit}, x.{c}::pg_catalog.text IS DISTINCT FROM r.{c}::pg_catalog.text)",
                lit = spi::quote_literal(name),
            )
        })
        .collect();
    let sql = format!(
        "SELECT (SELECT v.col FROM (SELECT {list} FROM ONLY {table}) x,
                 LATERAL pg_catalog.json_populate_record(NULL::{table}, pg_catalog.row_to_json(x.*)) r,
                 LATERAL (VALUES {differs}) v(col, bad)
                 WHERE v.bad LIMIT 1)",
        list = cols.join(", "),
        differs = differs.join(", "),
    );
    match subtransaction::run_result(|| Ok::<_, BackupError>(Spi::get_one::<String>(&sql)?)) {
        Ok(Ok(None)) => Ok(()),
        Ok(Ok(Some(column))) => Err(refuse(t, &column, "holds a value that json does not give back as it was (a JSON null in a json or jsonb column comes back as SQL NULL; an array whose lower bound is not 1, or a json value with spaces around it, comes back changed)")),
        Ok(Err(e)) => Err(e),
        // json_populate_record itself failed: \u0000 in a json value is the known case.
        Err(caught) => {
            let column = nul_column(t, columns)?.unwrap_or_else(|| "?".into());
            Err(refuse(
                t,
                &column,
                &format!(
                    "holds a value that json cannot give back ({})",
                    subtransaction::message(&caught)
                ),
            ))
        }
    }
}

/// The first column holding the escape \u0000 in its JSON form.
fn nul_column(t: &Relation, columns: &[String]) -> Result<Option<String>> {
    let table = quoted(t);
    for name in columns {
        let c = spi::quote_identifier(name);
        let found = Spi::get_one_with_args::<bool>(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM ONLY {table} WHERE pg_catalog.to_json({c})::pg_catalog.text ~ $1)"
            ),
            &[NUL_ESCAPE.into()],
        )?
        .unwrap_or(false);
        if found {
            return Ok(Some(name.clone()));
        }
    }
    Ok(None)
}

fn refuse(t: &Relation, column: &str, why: &str) -> BackupError {
    BackupError::invalid(format!(
        "table {}.{} cannot be backed up in the json format: column \"{}\" {why}",
        t.schema, t.name, column
    ))
    .with_hint(format!(
        "Use format => 'native' (or 'sql' or 'csv'), which keep every value, or leave this table's rows out with exclude_data => '{{{}.{}}}'.",
        t.schema, t.name
    ))
}
