//! After rows are loaded, the sequences that number them must not hand out a number the table
//! already holds: every sequence owned by a column of a table that received rows (serial,
//! identity) is moved past that column's largest value (smallest, for descending sequences).
//! It is never moved back, so a value the backup recorded, or a higher one already in this
//! database, stays. This matters most for `existing => 'append'`, where the backup's sequence
//! value is not applied (it could be behind the rows already there).

use pgrx::prelude::*;

use super::job::Job;
use super::plan::table_oid;
use super::result::{Action, Row, Status};
use super::step::Runner;
use crate::error::Result;

/// A sequence owned by an integer column of a table.
struct Owned {
    sequence: String,
    table: String,
    column: String,
    ascending: bool,
}

fn owned_sequences(table: pg_sys::Oid) -> Result<Vec<Owned>> {
    Spi::connect(|c| {
        c.select(
            "SELECT s.oid::pg_catalog.regclass::pg_catalog.text,
                    t.oid::pg_catalog.regclass::pg_catalog.text,
                    pg_catalog.quote_ident(a.attname), q.seqincrement > 0
             FROM pg_catalog.pg_depend d
             JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
             JOIN pg_catalog.pg_sequence q ON q.seqrelid = s.oid
             JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
             JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
             WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
               AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
               AND d.refobjid = $1 AND d.deptype IN ('a', 'i')
               AND a.atttypid IN ('pg_catalog.int2'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype,
                                  'pg_catalog.int8'::pg_catalog.regtype)
             ORDER BY 1",
            None,
            &[table.into()],
        )?
        .map(|r| {
            Ok(Owned {
                sequence: r.get::<crate::text::Text>(1)?.unwrap_or_default().0,
                table: r.get::<crate::text::Text>(2)?.unwrap_or_default().0,
                column: r.get::<crate::text::Text>(3)?.unwrap_or_default().0,
                ascending: r.get::<bool>(4)?.unwrap_or(true),
            })
        })
        .collect::<Result<Vec<_>>>()
    })
}

/// Move the sequences owned by `table` past its rows. Returns `(sequence, new value)` for each
/// one that moved.
pub fn advance_past_rows(
    table: pg_sys::Oid,
    may_update: impl Fn(&str) -> Result<bool>,
) -> Result<Vec<(String, Option<i64>)>> {
    let mut moved = Vec::new();
    for o in owned_sequences(table)? {
        // setval needs UPDATE on the sequence: one the caller may not change is left where
        // it is (and reported).
        if !may_update(&o.sequence)? {
            moved.push((o.sequence, None));
            continue;
        }
        // The extreme value in the table, and where the sequence stands (its next value would
        // be past `last_value` only once it was called).
        let (agg, cmp) = if o.ascending {
            ("max", ">")
        } else {
            ("min", "<")
        };
        let sql = format!(
            "SELECT (SELECT pg_catalog.setval($1::pg_catalog.regclass, x.v)
                     FROM (SELECT {agg}({col})::bigint AS v FROM {table}) x,
                          (SELECT last_value, is_called FROM {sequence}) s
                     WHERE x.v IS NOT NULL
                       AND (x.v {cmp} s.last_value OR (x.v = s.last_value AND NOT s.is_called)))",
            col = o.column,
            table = o.table,
            sequence = o.sequence,
        );
        if let Some(v) = crate::text::one_mut::<i64>(&sql, &[crate::text::arg(o.sequence.clone())])?
        {
            moved.push((o.sequence, Some(v)));
        }
    }
    Ok(moved)
}

/// For every table whose rows were added to the rows it had (`existing => 'append'`): its
/// sequences, each reported as a `sequence` / `advance` row when it moved. A table created,
/// dropped or truncated by the restore holds exactly the backup's rows and gets the backup's
/// sequence values, as pg_restore sets them (a source whose sequence stood behind its column's
/// largest value is given back as it was).
pub fn advance(job: &Job, runner: &mut Runner) -> Result<()> {
    for t in job
        .plan
        .tables
        .iter()
        .filter(|t| t.action == crate::restore::plan::Action::Append)
    {
        let Some(oid) = table_oid(&t.schema, &t.name)? else {
            continue;
        };
        let mut moved = Vec::new();
        let restorer = job.restorer;
        // Its errors (setval out of bounds) carry the column's largest value: redacted.
        let ok = runner.run_data(t.object(), "sequence", Action::Advance, || {
            moved = advance_past_rows(oid, |seq| restorer.may_update_sequence(seq))?;
            Ok(None)
        })?;
        // The value itself only for a caller that may read the table's rows.
        let show = restorer.superuser
            || crate::query::one::<bool>(
                "SELECT pg_catalog.has_table_privilege($1, $2, 'SELECT')",
                &[restorer.oid.into(), oid.into()],
            )?
            .unwrap_or(false);
        if ok {
            // One row per sequence that moved, instead of the step's own row.
            runner.out.pop();
            for (seq, v) in moved {
                runner.note(match v {
                    Some(v) => {
                        Row::new(seq, "sequence", Action::Advance, Status::Ok).detail(if show {
                            format!("moved past the largest value of its column, {v}")
                        } else {
                            "moved past the largest value of its column".to_string()
                        })
                    }
                    None => {
                        Row::new(seq, "sequence", Action::Skip, Status::Warning).detail(format!(
                        "not moved past the appended rows: \"{}\" has no UPDATE privilege on it",
                        restorer.name
                    ))
                    }
                });
            }
        }
    }
    Ok(())
}
