//! Restore options and the per-table plan: what `existing` makes of each table asked for
//! (pure rules, unit-tested), and the plan keyed by each table's name in the backup.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::pg_sys;

use super::scope::{quoted, Scope};
use crate::archive::manifest::Manifest;
use crate::archive::toc::TocEntry;
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

/// The table `(schema, name)` of this database now, if any. Read-only (a dry run plans on a
/// hot standby); from the system cache, as each entry of a restore asks.
pub fn table_oid(schema: &str, name: &str) -> Result<Option<pg_sys::Oid>> {
    Ok(crate::security::owner::relation_oid(schema, name))
}

/// The plan for the tables asked for, keyed by each table's quoted name in the backup.
pub struct Plan {
    pub tables: Vec<PlannedTable>,
    by_backup_name: HashMap<String, usize>,
    /// The tables this restore created (their CREATE succeeded), by index in `tables`.
    created: RefCell<HashMap<usize, pg_sys::Oid>>,
    /// A job worker's copy: each table's `oid` is already where its rows go.
    resolved: bool,
}

impl Plan {
    pub fn build(m: &Manifest, scope: &Scope, existing: Existing) -> Result<Plan> {
        let mut tables = Vec::new();
        let mut by_backup_name = HashMap::new();
        for (schema, name) in scope.tables(m) {
            let target = scope.target_schema_of(&schema).to_string();
            let oid = table_oid(&target, &name)?;
            let exists = oid.is_some();
            by_backup_name.insert(quoted(&schema, &name), tables.len());
            tables.push(PlannedTable {
                action: action_for(exists, existing),
                schema: target,
                name,
                exists,
                oid: oid.map(u32::from),
            });
        }
        Ok(Plan {
            tables,
            by_backup_name,
            created: RefCell::new(HashMap::new()),
            resolved: false,
        })
    }

    /// The table `(backup_schema, name)` was created by this restore: the table of that
    /// name now (in the transaction that created it, ours).
    pub fn note_created(&self, backup_schema: &str, name: &str) -> Result<()> {
        let Some(&i) = self.by_backup_name.get(&quoted(backup_schema, name)) else {
            return Ok(());
        };
        let t = &self.tables[i];
        if let Some(oid) = table_oid(&t.schema, &t.name)? {
            self.created.borrow_mut().insert(i, oid);
        }
        Ok(())
    }

    /// The table the rows of `(backup_schema, name)` may go into (issue 17): one this
    /// restore created, or one that existed when it was planned and that `existing`
    /// (append, truncate) was checked against. Never a table of that name that appeared
    /// since, such as one another session created while this restore's CREATE failed.
    pub fn destination(&self, backup_schema: &str, name: &str) -> Option<pg_sys::Oid> {
        let &i = self.by_backup_name.get(&quoted(backup_schema, name))?;
        let t = &self.tables[i];
        if !self.resolved && t.action.runs_ddl() {
            return self.created.borrow().get(&i).copied();
        }
        t.oid.map(pg_sys::Oid::from)
    }

    /// The plan as job workers get it: each table's `oid` where its rows go.
    pub fn for_workers(&self) -> Vec<PlannedTable> {
        self.tables
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut t = t.clone();
                if !self.resolved && t.action.runs_ddl() {
                    t.oid = self.created.borrow().get(&i).map(|o| u32::from(*o));
                }
                t
            })
            .collect()
    }

    /// The plan the leader of restore(jobs => N) made, in a job worker (planned again now,
    /// the tables it created would count as existing).
    pub fn from_tables(m: &Manifest, scope: &Scope, tables: Vec<PlannedTable>) -> Plan {
        let by_backup_name = scope
            .tables(m)
            .into_iter()
            .zip(0..tables.len())
            .map(|((schema, name), i)| (quoted(&schema, &name), i))
            .collect();
        Plan {
            tables,
            by_backup_name,
            created: RefCell::new(HashMap::new()),
            resolved: true,
        }
    }

    pub fn of(&self, backup_schema: &str, name: &str) -> Option<&PlannedTable> {
        self.by_backup_name
            .get(&quoted(backup_schema, name))
            .map(|i| &self.tables[*i])
    }

    pub fn of_entry(&self, e: &TocEntry) -> Option<&PlannedTable> {
        let (s, n) = e.relation()?;
        self.of(&s, &n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::names::resolve_tables;

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
