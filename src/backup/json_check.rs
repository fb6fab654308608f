//! The json format writes each row with row_to_json and restore reads it back with
//! json_populate_record. Some values do not survive that trip: the escape \u0000 inside a json
//! value (no text or jsonb can hold it, so restore fails), a JSON null in a json/jsonb column
//! (it comes back as SQL NULL), an array whose lower bound is not 1, a json value with
//! whitespace around it. A backup that cannot be restored as it was is worse than none, so a
//! json backup checks every row of a table before writing it and refuses the table up front,
//! naming it and the column. Only the json format pays for this check.
//!
//! The check runs as the extension owner, so it must not run code a user wrote: values are
//! read back into the columns' base types (a domain's CHECK is never evaluated), and a column
//! whose type has a cast to json written by an unprivileged role (row_to_json would call it)
//! is refused too.

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

/// A column and the type its JSON is read back as (None: it cannot be checked without running
/// a domain's code: a composite or range that holds a domain).
struct Column {
    name: String,
    check_type: Option<String>,
}

/// What pg_type says about one type.
struct TypeInfo {
    kind: char,
    base: pg_sys::Oid,
    base_typmod: i32,
    elem: pg_sys::Oid,
    array_of: pg_sys::Oid,
    relid: pg_sys::Oid,
    range_subtype: pg_sys::Oid,
    is_array: bool,
}

fn type_info(oid: pg_sys::Oid) -> Result<TypeInfo> {
    Spi::connect(|c| {
        let t = c.select(
            "SELECT t.typtype::text, t.typbasetype, t.typtypmod, t.typelem, t.typarray, t.typrelid,
                    coalesce(r.rngsubtype, m.rngsubtype, 0::oid), t.typcategory = 'A' AND t.typelem <> 0
             FROM pg_catalog.pg_type t
             LEFT JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid
             LEFT JOIN pg_catalog.pg_range m ON m.rngmultitypid = t.oid
             WHERE t.oid = $1",
            Some(1),
            &[oid.into()],
        )?;
        let r = t.first();
        Ok(TypeInfo {
            kind: r
                .get::<String>(1)?
                .and_then(|s| s.chars().next())
                .unwrap_or('b'),
            base: r.get(2)?.unwrap_or(pg_sys::InvalidOid),
            base_typmod: r.get(3)?.unwrap_or(-1),
            elem: r.get(4)?.unwrap_or(pg_sys::InvalidOid),
            array_of: r.get(5)?.unwrap_or(pg_sys::InvalidOid),
            relid: r.get(6)?.unwrap_or(pg_sys::InvalidOid),
            range_subtype: r.get(7)?.unwrap_or(pg_sys::InvalidOid),
            is_array: r.get(8)?.unwrap_or(false),
        })
    })
}

/// Every type `oid` is made of (itself, its base types, array elements, composite fields,
/// range subtypes), with whether a domain is among them.
fn parts(oid: pg_sys::Oid, out: &mut Vec<pg_sys::Oid>, depth: u32) -> Result<bool> {
    if oid == pg_sys::InvalidOid || out.contains(&oid) || depth > 32 {
        return Ok(false);
    }
    out.push(oid);
    let t = type_info(oid)?;
    let mut domain = t.kind == 'd';
    domain |= parts(t.base, out, depth + 1)?;
    if t.is_array {
        domain |= parts(t.elem, out, depth + 1)?;
    }
    domain |= parts(t.range_subtype, out, depth + 1)?;
    if t.kind == 'c' && t.relid != pg_sys::InvalidOid {
        let fields: Vec<pg_sys::Oid> = Spi::connect(|c| {
            c.select(
                "SELECT atttypid FROM pg_catalog.pg_attribute
                 WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
                None,
                &[t.relid.into()],
            )?
            .map(|r| Ok(r.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid)))
            .collect::<Result<Vec<_>>>()
        })?;
        for f in fields {
            domain |= parts(f, out, depth + 1)?;
        }
    }
    Ok(domain)
}

fn format_type(oid: pg_sys::Oid, typmod: i32) -> Result<String> {
    Ok(crate::query::one::<crate::text::Text>(
        "SELECT pg_catalog.format_type($1, $2)",
        &[oid.into(), typmod.into()],
    )?
    .unwrap_or_default()
    .0)
}

/// The type to read a column's JSON back as: its own, or with domains replaced by their base
/// types (directly, or as the element of an array).
fn check_type(oid: pg_sys::Oid, typmod: i32) -> Result<Option<String>> {
    let mut seen = Vec::new();
    if !parts(oid, &mut seen, 0)? {
        return Ok(Some(format_type(oid, typmod)?));
    }
    let t = type_info(oid)?;
    if t.kind == 'd' {
        return check_type(t.base, t.base_typmod);
    }
    if t.is_array {
        let e = type_info(t.elem)?;
        if e.kind == 'd' {
            let mut base = (e.base, e.base_typmod);
            loop {
                let b = type_info(base.0)?;
                if b.kind != 'd' {
                    break;
                }
                base = (b.base, b.base_typmod);
            }
            let b = type_info(base.0)?;
            let mut inner = Vec::new();
            if !parts(base.0, &mut inner, 0)? && b.array_of != pg_sys::InvalidOid {
                return Ok(Some(format_type(b.array_of, base.1)?));
            }
        }
    }
    Ok(None)
}

/// A cast to json or jsonb, from one of `types`, whose function an unprivileged role owns.
fn user_cast_to_json(types: &[pg_sys::Oid]) -> Result<bool> {
    Ok(crate::query::one::<bool>(
        "SELECT EXISTS (
           SELECT 1 FROM pg_catalog.pg_cast c
           JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc
           JOIN pg_catalog.pg_roles o ON o.oid = p.proowner
           WHERE c.castsource = ANY ($1)
             AND c.casttarget IN ('pg_catalog.json'::pg_catalog.regtype, 'pg_catalog.jsonb'::pg_catalog.regtype)
             AND NOT o.rolsuper)",
        &[types.to_vec().into()],
    )?
    .unwrap_or(false))
}

fn columns(t: &Relation, names: &[String]) -> Result<Vec<Column>> {
    let mut out = Vec::new();
    for name in names {
        let (oid, typmod) = Spi::connect(|c| {
            let r = c.select(
                "SELECT atttypid, atttypmod FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attname = $2",
                Some(1),
                &[t.oid.into(), crate::text::arg(name.clone())],
            )?;
            let r = r.first();
            Ok::<_, BackupError>((
                r.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                r.get::<i32>(2)?.unwrap_or(-1),
            ))
        })?;
        let mut types = Vec::new();
        parts(oid, &mut types, 0)?;
        if user_cast_to_json(&types)? {
            return Err(refuse(
                t,
                name,
                "has a type with a cast to json that a role without superuser rights wrote (row_to_json would run it with the extension owner's rights)",
            ));
        }
        out.push(Column {
            name: name.clone(),
            check_type: check_type(oid, typmod)?,
        });
    }
    Ok(out)
}

/// Refuse `t` for the json format unless every value of `names` comes back as it was, written
/// as the export writes it: `exported` is the export's select list (one expression per
/// column, named as the column, over the table's columns). `filter`: the condition of an
/// extension's configuration table (`WHERE ...`): only the rows the backup holds are checked
/// (unit's own unit_units rows do not all come back as they were; a site's units do).
pub fn check(
    t: &Relation,
    names: &[String],
    exported: &[String],
    filter: Option<&str>,
) -> Result<()> {
    let cols = columns(t, names)?;
    let checked: Vec<&Column> = cols.iter().filter(|c| c.check_type.is_some()).collect();
    if checked.is_empty() {
        return Ok(());
    }
    // The condition in a scope of its own: its bare column names are the table's.
    let table = match filter {
        Some(f) if !f.trim().is_empty() => format!("(SELECT * FROM ONLY {} {f})", quoted(t)),
        _ => format!("ONLY {}", quoted(t)),
    };
    let record: Vec<String> = checked
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                spi::quote_identifier(&c.name),
                c.check_type.as_deref().unwrap_or_default()
            )
        })
        .collect();
    let differs: Vec<String> = checked
        .iter()
        .map(|c| {
            let q = spi::quote_identifier(&c.name);
            format!(
                "({lit}, t0.{q}::pg_catalog.text IS DISTINCT FROM r.{q}::pg_catalog.text)",
                lit = spi::quote_literal(&c.name),
            )
        })
        .collect();
    // The first column whose value differs after the round trip, in the first row that has one.
    let sql = format!(
        "SELECT (SELECT v.col FROM {table} t0,
                 LATERAL (SELECT {list}) x,
                 LATERAL pg_catalog.json_to_record(pg_catalog.row_to_json(x.*)) AS r({record}),
                 LATERAL (VALUES {differs}) v(col, bad)
                 WHERE v.bad LIMIT 1)",
        list = exported.join(", "),
        record = record.join(", "),
        differs = differs.join(", "),
    );
    match subtransaction::run_result(|| Ok::<_, BackupError>(crate::text::one_mut::<crate::text::Text>(&sql, &[])?.map(String::from))) {
        Ok(Ok(None)) => Ok(()),
        Ok(Ok(Some(column))) => Err(refuse(t, &column, "holds a value that json does not give back as it was (a JSON null in a json or jsonb column comes back as SQL NULL; an array whose lower bound is not 1, or a json value with spaces around it, comes back changed)")),
        Ok(Err(e)) => Err(e),
        // Reading the JSON back failed: \u0000 in a json value is the known case. The error
        // may quote the value (every operator reads the history row): its text goes to the
        // server log only, the SQLSTATE stays.
        Err(caught) => {
            let column = nul_column(&table, names)?.unwrap_or_else(|| "?".into());
            let object = format!("{}.{}", t.schema, t.name);
            let text = crate::security::redact::describe(
                &caught,
                "table_data",
                &object,
                crate::security::redact::Exposure::Data,
            );
            Err(refuse(
                t,
                &column,
                &format!("holds a value that json cannot give back ({text})"),
            ))
        }
    }
}

/// The first column holding the escape \u0000 in its JSON form, in the rows of `table` (a
/// FROM item, as `check` reads them).
fn nul_column(table: &str, columns: &[String]) -> Result<Option<String>> {
    for name in columns {
        let c = spi::quote_identifier(name);
        let found = Spi::get_one_with_args::<bool>(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM {table} t0 WHERE pg_catalog.to_json(t0.{c})::pg_catalog.text ~ $1)"
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
