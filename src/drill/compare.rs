//! What a drill compares, as plain data: the rows each table should have (the manifest's
//! counts), the tables whose restored count differs, and what a check's answer means.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::archive::manifest::Manifest;

/// Rows per table (schema, name) that the backup recorded: its data files (or, for the sql
/// format, its script's COPY blocks) of table rows, summed per table (a table may span files).
/// Large objects and extension configuration rows are not tables of the backup's own.
pub fn expected_rows(m: &Manifest) -> BTreeMap<(String, String), u64> {
    let files = m
        .files
        .iter()
        .filter(|f| f.kind.is_none())
        .map(|f| ((f.schema.clone(), f.table.clone()), f.rows));
    let script = m
        .script_tables
        .iter()
        .filter(|t| t.kind.is_none())
        .map(|t| ((t.schema.clone(), t.table.clone()), t.rows));
    files
        .chain(script)
        .fold(BTreeMap::new(), |mut acc, (k, n)| {
            *acc.entry(k).or_insert(0) += n;
            acc
        })
}

/// A table whose restored row count is not the manifest's (None: the table is missing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    pub table: String,
    pub expected: u64,
    pub restored: Option<u64>,
}

/// The tables whose counts differ, in the manifest's order.
pub fn mismatches(
    expected: &BTreeMap<(String, String), u64>,
    restored: &BTreeMap<(String, String), Option<u64>>,
) -> Vec<Mismatch> {
    expected
        .iter()
        .filter_map(|(k, &n)| {
            let got = restored.get(k).copied().flatten();
            (got != Some(n)).then(|| Mismatch {
                table: format!("{}.{}", k.0, k.1),
                expected: n,
                restored: got,
            })
        })
        .collect()
}

/// What a check query answered: its one value (a boolean, or a number: a row count).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Bool(Option<bool>),
    Count(Option<i64>),
    /// Any other type, or not exactly one column.
    Other(String),
    NoRow,
    Error {
        sqlstate: String,
        message: String,
    },
}

/// One check's result as recorded in `backup.drills.checks`: the query, whether it passed
/// and, when it did not, why (a condition, never the check's value: `backup.drills` is read by
/// every backup_operator, and `SELECT max(salary) FROM hr.pay` is a value of the rows). A
/// boolean passes when true; a count (a number) when it is greater than zero (the rows are
/// there); anything else fails.
pub fn check_result(check: &str, answer: &Answer) -> (bool, Value) {
    let (ok, error) = match answer {
        Answer::Bool(Some(b)) => (*b, (!*b).then(|| "the check returned false".to_string())),
        Answer::Bool(None) | Answer::Count(None) => {
            (false, Some("the check returned NULL".to_string()))
        }
        Answer::Count(Some(n)) => (
            *n > 0,
            (*n <= 0).then(|| "the check counted no rows".to_string()),
        ),
        Answer::Other(what) => (
            false,
            Some(format!(
                "a check returns one boolean or one number, not {what}"
            )),
        ),
        Answer::NoRow => (false, Some("the check returned no row".to_string())),
        // The message names its SQLSTATE and condition only (never a row value: see
        // drill::scratch).
        Answer::Error { message, .. } => (false, Some(message.clone())),
    };
    let mut v = json!({ "check": check, "ok": ok });
    if let Some(e) = error {
        v["error"] = json!(e);
    }
    (ok, v)
}

/// The error text of a drill that restored fine but did not check out.
pub fn failure_text(mismatches: &[Mismatch], failed_checks: &[String]) -> Option<String> {
    let mut parts = Vec::new();
    if !mismatches.is_empty() {
        let list: Vec<String> = mismatches
            .iter()
            .take(5)
            .map(|m| match m.restored {
                Some(n) => format!("{} has {n} rows, the backup {}", m.table, m.expected),
                None => format!("{} is missing ({} rows in the backup)", m.table, m.expected),
            })
            .collect();
        let more = mismatches.len().saturating_sub(5);
        parts.push(format!(
            "{} table(s) differ from the backup: {}{}",
            mismatches.len(),
            list.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        ));
    }
    if !failed_checks.is_empty() {
        parts.push(format!(
            "{} check(s) failed: {}",
            failed_checks.len(),
            failed_checks.join("; ")
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str, t: &str) -> (String, String) {
        (s.to_string(), t.to_string())
    }

    #[test]
    fn counts_differ_or_tables_missing_are_mismatches() {
        let expected: BTreeMap<_, _> = [
            (key("public", "a"), 3),
            (key("public", "b"), 0),
            (key("s", "c"), 5),
        ]
        .into();
        let restored: BTreeMap<_, _> = [
            (key("public", "a"), Some(3)),
            (key("public", "b"), Some(0)),
            (key("s", "c"), Some(4)),
        ]
        .into();
        assert_eq!(
            mismatches(&expected, &restored),
            vec![Mismatch {
                table: "s.c".into(),
                expected: 5,
                restored: Some(4)
            }]
        );
        let gone: BTreeMap<_, _> = [(key("public", "a"), Some(3))].into();
        let m = mismatches(&expected, &gone);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].restored, None);
        let text = failure_text(&m, &[]).unwrap();
        assert!(text.contains("public.b is missing"), "{text}");
        assert_eq!(failure_text(&[], &[]), None);
    }

    #[test]
    fn a_check_passes_on_true_or_a_positive_count_only() {
        assert!(check_result("q", &Answer::Bool(Some(true))).0);
        // Only pass/fail is kept, never the check's value.
        let (_, v) = check_result("q", &Answer::Count(Some(987_654_321)));
        assert_eq!(v, json!({ "check": "q", "ok": true }));
        assert!(!v.to_string().contains("987654321"));
        assert!(!check_result("q", &Answer::Bool(Some(false))).0);
        assert!(!check_result("q", &Answer::Bool(None)).0);
        assert!(check_result("q", &Answer::Count(Some(2))).0);
        assert!(!check_result("q", &Answer::Count(Some(0))).0);
        assert!(!check_result("q", &Answer::NoRow).0);
        assert!(!check_result("q", &Answer::Other("text".into())).0);
        let (ok, v) = check_result(
            "select 1/0",
            &Answer::Error {
                sqlstate: "22012".into(),
                message: "check 1: division by zero (SQLSTATE 22012)".into(),
            },
        );
        assert!(!ok);
        assert_eq!(v["check"], "select 1/0");
        assert!(v["error"].as_str().unwrap().contains("22012"));
    }
}
