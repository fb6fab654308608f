//! Restore options and the per-table plan. Plain Rust.

use crate::error::{BackupError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Existing {
    Fail,
    Skip,
    Truncate,
    Drop,
    Append,
}

impl Existing {
    pub fn parse(s: &str) -> Result<Existing> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "fail" => Existing::Fail,
            "skip" => Existing::Skip,
            "truncate" => Existing::Truncate,
            "drop" => Existing::Drop,
            "append" => Existing::Append,
            _ => {
                return Err(BackupError::invalid(format!(
                    "invalid value for existing: \"{}\"",
                    s.escape_debug()
                ))
                .with_hint("Use 'fail', 'skip', 'truncate', 'drop' or 'append'."))
            }
        })
    }
}

/// `on_error`: one transaction for everything, or one subtransaction per object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OnError {
    Abort,
    Continue,
}

impl OnError {
    pub fn parse(s: &str) -> Result<OnError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "abort" => Ok(OnError::Abort),
            "continue" => Ok(OnError::Continue),
            _ => Err(BackupError::invalid(format!(
                "invalid value for on_error: \"{}\"",
                s.escape_debug()
            ))
            .with_hint("Use 'abort' (all or nothing, the default) or 'continue'.")),
        }
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

/// What restore does with one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Action {
    Create,
    Skip,
    Truncate,
    Drop,
    Append,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Skip => "skip",
            Action::Truncate => "truncate",
            Action::Drop => "drop",
            Action::Append => "append",
        }
    }
    /// Whether the table's DDL (and its indexes, constraints ...) is replayed.
    pub fn runs_ddl(self) -> bool {
        matches!(self, Action::Create | Action::Drop)
    }
    pub fn loads_data(self) -> bool {
        !matches!(self, Action::Skip)
    }
}

/// One table of the backup and what restore does with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlannedTable {
    pub schema: String,
    pub name: String,
    pub action: Action,
    /// Whether a table of that name exists in the target database now.
    pub exists: bool,
    /// The table its rows go into (issue 17): the one that existed when the restore was
    /// planned (what `existing` decided was checked against it), or, in a job worker's copy
    /// of the plan, the one the restore created. None: no table may receive them.
    #[serde(default)]
    pub oid: Option<u32>,
}

impl PlannedTable {
    /// `schema.name` as people read it (for result rows and messages).
    pub fn object(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

pub fn action_for(exists: bool, existing: Existing) -> Action {
    match (exists, existing) {
        (false, _) => Action::Create,
        (true, Existing::Fail) | (true, Existing::Skip) => Action::Skip,
        (true, Existing::Truncate) => Action::Truncate,
        (true, Existing::Drop) => Action::Drop,
        (true, Existing::Append) => Action::Append,
    }
}

/// Check the plan against `existing` and `confirm` before anything changes.
pub fn check(
    tables: &[PlannedTable],
    existing: Existing,
    confirm: bool,
    dry_run: bool,
    backup_id: &str,
) -> Result<()> {
    let present: Vec<String> = tables
        .iter()
        .filter(|t| t.exists)
        .map(PlannedTable::object)
        .collect();
    if existing == Existing::Fail && !present.is_empty() {
        return Err(BackupError::exists(format!("tables already exist: {}", present.join(", ")))
            .with_hint("Choose what to do with them: existing => 'skip', 'append', 'truncate' or 'drop' (the last two need confirm => true)."));
    }
    if matches!(existing, Existing::Truncate | Existing::Drop)
        && !present.is_empty()
        && !confirm
        && !dry_run
    {
        let mode = if existing == Existing::Truncate {
            "truncate"
        } else {
            "drop"
        };
        return Err(BackupError::confirm(format!("existing => '{mode}' would destroy data in {} table(s)", present.len()))
            .with_hint(format!(
                "Check with dry_run => true, then run: SELECT * FROM backup.restore('{backup_id}', existing => '{mode}', confirm => true);"
            )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_tables_need_a_decision() {
        let table = |name: &str, exists: bool| PlannedTable {
            schema: "public".into(),
            name: name.into(),
            action: action_for(exists, Existing::Fail),
            exists,
            oid: None,
        };
        let t = vec![table("a", true), table("b", false)];
        let e = check(&t, Existing::Fail, false, false, "x").unwrap_err();
        assert_eq!(e.sqlstate(), "42P07");
        assert!(e.to_string().contains("public.a") && !e.to_string().contains("public.b"));
        assert_eq!(
            check(&t, Existing::Drop, false, false, "x")
                .unwrap_err()
                .sqlstate(),
            "55000"
        );
        assert!(
            check(&t, Existing::Drop, false, true, "x").is_ok(),
            "a dry run needs no confirm"
        );
        assert!(check(&t, Existing::Drop, true, false, "x").is_ok());
        assert!(check(&t, Existing::Skip, false, false, "x").is_ok());
        assert_eq!(Existing::parse("nope").unwrap_err().sqlstate(), "22023");
    }

    #[test]
    fn table_names_resolve_against_the_backup() {
        let all = vec![
            ("a".to_string(), "t".to_string()),
            ("b".to_string(), "t".to_string()),
            ("a".to_string(), "u".to_string()),
        ];
        assert_eq!(
            resolve_tables(&all, &["a.t".into(), "u".into()]).unwrap(),
            [
                ("a".to_string(), "t".to_string()),
                ("a".to_string(), "u".to_string())
            ]
        );
        assert_eq!(
            resolve_tables(&all, &["t".into()]).unwrap_err().sqlstate(),
            "22023"
        );
        assert_eq!(
            resolve_tables(&all, &["c.t".into()])
                .unwrap_err()
                .sqlstate(),
            "42704"
        );
        assert_eq!(OnError::parse("Continue").unwrap(), OnError::Continue);
        assert_eq!(OnError::parse("ignore").unwrap_err().sqlstate(), "22023");
    }

    #[test]
    fn actions_follow_existence() {
        assert_eq!(action_for(false, Existing::Drop), Action::Create);
        assert_eq!(action_for(true, Existing::Append), Action::Append);
        assert!(!Action::Skip.loads_data());
        assert!(Action::Drop.runs_ddl() && !Action::Truncate.runs_ddl());
    }
}
