//! Prometheus text exposition format (version 0.0.4), written by hand: `# HELP` and `# TYPE`
//! once per metric family, then its samples, label values escaped as the format says
//! (backslash, double quote and line feed). Plain Rust.

use std::fmt::Write as _;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// One family: its name (`pg_backup_` prefixed by the caller), help text, type and samples.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

/// One sample: label pairs in order and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// Add a sample; a missing value (None) adds nothing, so a series without data is absent
    /// rather than 0.
    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: Option<f64>) {
        if let Some(value) = value {
            self.samples.push(Sample { labels, value });
        }
    }
}

/// A label value as the format writes it inside double quotes.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes backslash and line feed only.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A value as the format writes it: integers without a fraction, NaN and infinities by name.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The families as exposition text. Every family gets its HELP and TYPE lines, also one
/// without samples (a scraper then knows the metric exists).
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
        for s in &f.samples {
            out.push_str(f.name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", format_value(s.value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_values_formatted() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(1.5), "1.5");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        let mut f = Family::new("pg_backup_x", Kind::Gauge, "X.\nY");
        f.push(
            vec![("schedule", "n\"1".into()), ("database", "d".into())],
            Some(2.0),
        );
        f.push(vec![("schedule", "n2".into())], None);
        let mut g = Family::new("pg_backup_total", Kind::Counter, "T.");
        g.push(vec![], Some(7.0));
        assert_eq!(
            render(&[f, g]),
            "# HELP pg_backup_x X.\\nY\n# TYPE pg_backup_x gauge\n\
             pg_backup_x{schedule=\"n\\\"1\",database=\"d\"} 2\n\
             # HELP pg_backup_total T.\n# TYPE pg_backup_total counter\npg_backup_total 7\n"
        );
    }
}
