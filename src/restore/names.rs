//! Names as users write them in restore(tables => ...): `schema.table` or bare, quoted like SQL
//! identifiers where needed. Plain Rust, because they name objects in the *backup*, which the
//! server's catalogs know nothing about.

use crate::error::{BackupError, Result};

/// Split `name` into (schema, relation) with SQL identifier rules: unquoted parts fold to lower
/// case, `"..."` keeps case and may contain dots and doubled quotes.
pub fn parse_qualified(name: &str) -> Result<(Option<String>, String)> {
    let bad = || {
        BackupError::invalid(format!("invalid table name \"{}\"", name.escape_debug())).with_hint(
            "Write schema.table or a bare table name, quoted like an SQL identifier if needed.",
        )
    };
    let mut parts = Vec::new();
    let mut chars = name.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(bad()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if c == '"' || c.is_whitespace() {
                    return Err(bad());
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return Err(bad());
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => continue,
            Some(_) => return Err(bad()),
        }
    }
    match parts.len() {
        1 => Ok((None, parts.pop().expect("one part"))),
        2 => {
            let rel = parts.pop().expect("two parts");
            Ok((parts.pop(), rel))
        }
        _ => Err(bad()),
    }
}

/// Resolve restore(tables => ...) against the tables of the backup (`(schema, name)` pairs).
/// A bare name must match exactly one table of the backup.
pub fn resolve_tables(all: &[(String, String)], names: &[String]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for name in names {
        let (schema, rel) = super::names::parse_qualified(name)?;
        let hits: Vec<&(String, String)> = all
            .iter()
            .filter(|(s, n)| *n == rel && schema.as_ref().is_none_or(|want| want == s))
            .collect();
        match hits.as_slice() {
            [one] => out.push((*one).clone()),
            [] => return Err(BackupError::unknown(format!(
                "table \"{name}\" is not in this backup"
            ))
            .with_hint(
                "See its tables with SELECT object FROM backup.restore('<id>', dry_run => true);",
            )),
            many => {
                let list: Vec<String> = many.iter().map(|(s, n)| format!("{s}.{n}")).collect();
                return Err(BackupError::invalid(format!(
                    "table name \"{name}\" is ambiguous: {}",
                    list.join(", ")
                ))
                .with_hint("Qualify it with its schema."));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_sql_identifiers() {
        assert_eq!(
            parse_qualified("Shop.Orders").unwrap(),
            (Some("shop".into()), "orders".into())
        );
        assert_eq!(parse_qualified("orders").unwrap(), (None, "orders".into()));
        assert_eq!(
            parse_qualified("\"Mixed Case\".\"Order Lines\"").unwrap(),
            (Some("Mixed Case".into()), "Order Lines".into())
        );
        assert_eq!(parse_qualified("\"a.b\"").unwrap(), (None, "a.b".into()));
        assert_eq!(
            parse_qualified("\"q\"\"t\"").unwrap(),
            (None, "q\"t".into())
        );
        assert_eq!(
            parse_qualified("ünï.ταμπλό").unwrap(),
            (Some("ünï".into()), "ταμπλό".into())
        );
        for bad in ["", "a.", ".a", "a.b.c", "\"open", "a b", "a\"b"] {
            assert_eq!(
                parse_qualified(bad).unwrap_err().sqlstate(),
                "22023",
                "{bad}"
            );
        }
    }
}
