//! The rows `backup.restore()` returns: one per step, typed. The SQL result columns and their
//! values are exactly those of 0.2.0 (`object, kind, action, rows, status, detail`); only the
//! Rust side names them.

use serde::{Deserialize, Serialize};

/// What a step did (the `action` column).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Skip,
    Load,
    Append,
    Advance,
    Drop,
    Truncate,
    /// An owner the cluster lacks was replaced by the caller.
    Substitute,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Skip => "skip",
            Action::Load => "load",
            Action::Append => "append",
            Action::Advance => "advance",
            Action::Drop => "drop",
            Action::Truncate => "truncate",
            Action::Substitute => "substitute",
        }
    }
}

impl From<super::plan::Action> for Action {
    /// A planned table's action as its row says it.
    fn from(a: super::plan::Action) -> Action {
        match a {
            super::plan::Action::Create => Action::Create,
            super::plan::Action::Skip => Action::Skip,
            super::plan::Action::Truncate => Action::Truncate,
            super::plan::Action::Drop => Action::Drop,
            super::plan::Action::Append => Action::Append,
        }
    }
}

/// How a step ended (the `status` column).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Done, or left out, with something the caller should read in `detail`.
    Warning,
    Failed,
    /// A dry run's row: what would happen.
    Planned,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Failed => "failed",
            Status::Planned => "planned",
        }
    }
}

/// One result row.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Row {
    /// The object, relations under their restored name.
    pub object: String,
    /// The TOC kind's name (`table`, `index`, `owner` ...).
    pub kind: String,
    pub action: Action,
    /// Rows loaded, for steps that load rows.
    pub rows: Option<i64>,
    pub status: Status,
    pub detail: Option<String>,
}

impl Row {
    pub fn new(object: String, kind: &str, action: Action, status: Status) -> Row {
        Row {
            object,
            kind: kind.to_string(),
            action,
            rows: None,
            status,
            detail: None,
        }
    }

    pub fn rows(mut self, rows: Option<i64>) -> Row {
        self.rows = rows;
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Row {
        self.detail = Some(detail.into());
        self
    }

    /// A step that changed the database and is kept (what a batch's commit keeps).
    pub fn kept(&self) -> bool {
        matches!(self.status, Status::Ok | Status::Warning) && self.action != Action::Skip
    }

    /// A step that loaded rows and succeeded.
    pub fn loaded_rows(&self) -> bool {
        self.status == Status::Ok && self.rows.is_some()
    }

    /// The SQL result columns, as 0.2.0 returned them.
    pub fn into_columns(
        self,
    ) -> (
        String,
        String,
        &'static str,
        Option<i64>,
        &'static str,
        Option<String>,
    ) {
        (
            self.object,
            self.kind,
            self.action.as_str(),
            self.rows,
            self.status.as_str(),
            self.detail,
        )
    }
}

/// The rows' summary the history row records: the number of rows loaded and, when steps
/// failed (on_error => 'continue'), how many.
pub fn summary(rows: &[Row]) -> (i64, Option<String>) {
    let loaded = rows.iter().filter_map(|r| r.rows).sum();
    let failed = rows.iter().filter(|r| r.status == Status::Failed).count();
    let error = (failed > 0)
        .then(|| format!("{failed} object(s) failed; see the rows with status 'failed'"));
    (loaded, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_keep_the_words_of_0_2_0() {
        let r = Row::new("public.t".into(), "table_data", Action::Load, Status::Ok).rows(Some(3));
        assert_eq!(
            r.into_columns(),
            (
                "public.t".into(),
                "table_data".into(),
                "load",
                Some(3),
                "ok",
                None
            )
        );
        for (a, w) in [
            (Action::Create, "create"),
            (Action::Skip, "skip"),
            (Action::Append, "append"),
            (Action::Advance, "advance"),
            (Action::Drop, "drop"),
            (Action::Truncate, "truncate"),
            (Action::Substitute, "substitute"),
        ] {
            assert_eq!(a.as_str(), w);
            assert_eq!(serde_json::to_value(a).unwrap(), serde_json::json!(w));
        }
        for (s, w) in [
            (Status::Warning, "warning"),
            (Status::Failed, "failed"),
            (Status::Planned, "planned"),
        ] {
            assert_eq!(s.as_str(), w);
        }
    }

    #[test]
    fn a_summary_counts_rows_and_failures() {
        let rows = vec![
            Row::new("a".into(), "table_data", Action::Load, Status::Ok).rows(Some(2)),
            Row::new("b".into(), "index", Action::Create, Status::Failed).detail("x"),
            Row::new("c".into(), "table_data", Action::Load, Status::Ok).rows(Some(5)),
        ];
        let (n, error) = summary(&rows);
        assert_eq!(n, 7);
        assert_eq!(
            error.as_deref(),
            Some("1 object(s) failed; see the rows with status 'failed'")
        );
        assert!(!rows[1].kept() && rows[0].kept() && rows[0].loaded_rows());
    }
}
