//! Planner statistics carried by an archive (issue 19), as PostgreSQL 18's pg_dump carries
//! them ("STATISTICS DATA" entries): a relation's `pg_class` counts and its columns' `pg_stats`
//! rows, restored with `pg_restore_relation_stats` / `pg_restore_attribute_stats` (18+)
//! instead of an ANALYZE.
//!
//! An archive is hostile input: these values are claims. They are kept as text under a fixed
//! set of argument names ([`StatArg`]), each with the SQL type the server's function declares
//! for it (relation_stats.c / attribute_stats.c); a restore passes every value as a typed
//! parameter, never as SQL text, and names the relation itself (from the TOC entry and the
//! restore's own plan), never from these values.
//!
//! Plain Rust, unit-tested below.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One argument of `pg_restore_relation_stats` / `pg_restore_attribute_stats` that an archive
/// may carry (schemaname and relname are never carried: the restore names the relation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatArg {
    // pg_restore_relation_stats
    Relpages,
    Reltuples,
    Relallvisible,
    /// PostgreSQL 18's `pg_class.relallfrozen`.
    Relallfrozen,
    // pg_restore_attribute_stats
    Attname,
    Inherited,
    NullFrac,
    AvgWidth,
    NDistinct,
    MostCommonVals,
    MostCommonFreqs,
    HistogramBounds,
    Correlation,
    MostCommonElems,
    MostCommonElemFreqs,
    ElemCountHistogram,
    /// 17+ (range types).
    RangeLengthHistogram,
    RangeEmptyFrac,
    RangeBoundsHistogram,
}

/// Which of the two functions an argument belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatFunction {
    Relation,
    Attribute,
}

impl StatArg {
    /// The argument's name in the function's name/value pairs.
    pub fn name(self) -> &'static str {
        use StatArg::*;
        match self {
            Relpages => "relpages",
            Reltuples => "reltuples",
            Relallvisible => "relallvisible",
            Relallfrozen => "relallfrozen",
            Attname => "attname",
            Inherited => "inherited",
            NullFrac => "null_frac",
            AvgWidth => "avg_width",
            NDistinct => "n_distinct",
            MostCommonVals => "most_common_vals",
            MostCommonFreqs => "most_common_freqs",
            HistogramBounds => "histogram_bounds",
            Correlation => "correlation",
            MostCommonElems => "most_common_elems",
            MostCommonElemFreqs => "most_common_elem_freqs",
            ElemCountHistogram => "elem_count_histogram",
            RangeLengthHistogram => "range_length_histogram",
            RangeEmptyFrac => "range_empty_frac",
            RangeBoundsHistogram => "range_bounds_histogram",
        }
    }

    /// The SQL type the server's function expects the value in (the cast of its parameter).
    /// Values of the column's own type (`most_common_vals`, the histograms) are text, which
    /// the server reads with the column type's input function, as pg_dump passes them.
    pub fn sql_type(self) -> &'static str {
        use StatArg::*;
        match self {
            Relpages | Relallvisible | Relallfrozen | AvgWidth => "integer",
            Reltuples | NullFrac | NDistinct | Correlation | RangeEmptyFrac => "real",
            MostCommonFreqs | MostCommonElemFreqs | ElemCountHistogram => "real[]",
            Inherited => "boolean",
            Attname | MostCommonVals | HistogramBounds | MostCommonElems | RangeLengthHistogram
            | RangeBoundsHistogram => "text",
        }
    }

    pub fn function(self) -> StatFunction {
        use StatArg::*;
        match self {
            Relpages | Reltuples | Relallvisible | Relallfrozen => StatFunction::Relation,
            _ => StatFunction::Attribute,
        }
    }

    /// Every argument, in the functions' order.
    pub const ALL: [StatArg; 19] = [
        StatArg::Relpages,
        StatArg::Reltuples,
        StatArg::Relallvisible,
        StatArg::Relallfrozen,
        StatArg::Attname,
        StatArg::Inherited,
        StatArg::NullFrac,
        StatArg::AvgWidth,
        StatArg::NDistinct,
        StatArg::MostCommonVals,
        StatArg::MostCommonFreqs,
        StatArg::HistogramBounds,
        StatArg::Correlation,
        StatArg::MostCommonElems,
        StatArg::MostCommonElemFreqs,
        StatArg::ElemCountHistogram,
        StatArg::RangeLengthHistogram,
        StatArg::RangeEmptyFrac,
        StatArg::RangeBoundsHistogram,
    ];
}

/// The statistics of one relation: a `StatisticsData` entry's payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationStatistics {
    /// `server_version_num` of the server they were read on (the functions' `version`).
    pub version: i32,
    /// pg_restore_relation_stats' arguments.
    pub relation: BTreeMap<StatArg, String>,
    /// One pg_restore_attribute_stats call per column (and `inherited` value), as pg_stats
    /// lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<BTreeMap<StatArg, String>>,
}

/// One call to make: the function, then (argument, value) pairs in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatCall<'a> {
    pub function: StatFunction,
    pub args: Vec<(StatArg, &'a str)>,
}

impl StatCall<'_> {
    /// The statement, parameters `$1` (schema), `$2` (relation), `$3` (version), then one per
    /// argument, each cast to its declared type; the names are this module's constants.
    pub fn sql(&self) -> String {
        let function = match self.function {
            StatFunction::Relation => "pg_restore_relation_stats",
            StatFunction::Attribute => "pg_restore_attribute_stats",
        };
        let mut sql = format!(
            "SELECT pg_catalog.{function}('schemaname', $1::pg_catalog.text, 'relname', $2::pg_catalog.text, 'version', $3::pg_catalog.int4"
        );
        for (i, (arg, _)) in self.args.iter().enumerate() {
            sql.push_str(&format!(
                ", '{}', ${}::{}",
                arg.name(),
                i + 4,
                qualified_type(arg.sql_type())
            ));
        }
        sql.push(')');
        sql
    }
}

fn qualified_type(t: &str) -> &'static str {
    match t {
        "integer" => "pg_catalog.int4",
        "real" => "pg_catalog.float4",
        "real[]" => "pg_catalog.float4[]",
        "boolean" => "pg_catalog.bool",
        _ => "pg_catalog.text",
    }
}

impl RelationStatistics {
    /// The calls that restore these statistics, or why the payload is refused: an argument of
    /// the other function, a column without its name, a value with a NUL byte.
    pub fn calls(&self) -> Result<Vec<StatCall<'_>>, String> {
        let check = |m: &BTreeMap<StatArg, String>, f: StatFunction| -> Result<(), String> {
            for (k, v) in m {
                if k.function() != f {
                    return Err(format!("argument {} out of place", k.name()));
                }
                if v.contains('\0') {
                    return Err(format!("argument {} holds a NUL byte", k.name()));
                }
            }
            Ok(())
        };
        check(&self.relation, StatFunction::Relation)?;
        let mut out = vec![StatCall {
            function: StatFunction::Relation,
            args: self
                .relation
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect(),
        }];
        for c in &self.columns {
            check(c, StatFunction::Attribute)?;
            if !c.contains_key(&StatArg::Attname) || !c.contains_key(&StatArg::Inherited) {
                return Err("a column's statistics lack attname or inherited".into());
            }
            out.push(StatCall {
                function: StatFunction::Attribute,
                args: c.iter().map(|(k, v)| (*k, v.as_str())).collect(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RelationStatistics {
        RelationStatistics {
            version: 180006,
            relation: [
                (StatArg::Relpages, "12".to_string()),
                (StatArg::Reltuples, "1000".to_string()),
            ]
            .into_iter()
            .collect(),
            columns: vec![[
                (StatArg::Attname, "id".to_string()),
                (StatArg::Inherited, "false".to_string()),
                (StatArg::MostCommonVals, "{1,2}".to_string()),
                (StatArg::MostCommonFreqs, "{0.5,0.5}".to_string()),
            ]
            .into_iter()
            .collect()],
        }
    }

    #[test]
    fn calls_pass_every_value_as_a_typed_parameter() {
        let s = sample();
        let calls = s.calls().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls[0].sql(),
            "SELECT pg_catalog.pg_restore_relation_stats('schemaname', $1::pg_catalog.text, 'relname', $2::pg_catalog.text, 'version', $3::pg_catalog.int4, 'relpages', $4::pg_catalog.int4, 'reltuples', $5::pg_catalog.float4)"
        );
        assert_eq!(
            calls[1].sql(),
            "SELECT pg_catalog.pg_restore_attribute_stats('schemaname', $1::pg_catalog.text, 'relname', $2::pg_catalog.text, 'version', $3::pg_catalog.int4, 'attname', $4::pg_catalog.text, 'inherited', $5::pg_catalog.bool, 'most_common_vals', $6::pg_catalog.text, 'most_common_freqs', $7::pg_catalog.float4[])"
        );
        assert_eq!(calls[1].args[2], (StatArg::MostCommonVals, "{1,2}"));
    }

    #[test]
    fn every_argument_has_a_type_and_a_function() {
        for a in StatArg::ALL {
            assert!(!a.name().is_empty());
            let t = qualified_type(a.sql_type());
            assert!(t.starts_with("pg_catalog."));
            // The JSON name is the function's argument name.
            assert_eq!(
                serde_json::to_value(a).unwrap(),
                serde_json::Value::String(a.name().to_string())
            );
        }
    }

    #[test]
    fn misplaced_or_unknown_arguments_are_refused() {
        let mut s = sample();
        s.relation.insert(StatArg::NullFrac, "0.5".to_string());
        assert!(s.calls().unwrap_err().contains("null_frac"));
        let mut s = sample();
        s.columns[0].remove(&StatArg::Attname);
        assert!(s.calls().is_err());
        let mut s = sample();
        s.columns[0].insert(StatArg::HistogramBounds, "{a\0}".to_string());
        assert!(s.calls().is_err());
        // An argument name this version does not know does not parse (never reaches SQL).
        let j = r#"{"version":180006,"relation":{"relpages":"1","schemaname":"x"}}"#;
        assert!(serde_json::from_str::<RelationStatistics>(j).is_err());
    }
}
