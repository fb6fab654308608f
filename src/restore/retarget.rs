//! `target_schema`: rewrite the DDL of restored relations from their schema to another one.
//!
//! Only the qualified names of the relations being restored are rewritten (`shop.orders` ->
//! `archive.orders`, also inside string literals such as `nextval('shop.orders_id_seq')`), never
//! inside dollar-quoted bodies, and never other objects of the schema (types and functions stay
//! where they are and must exist there).

pub struct Retarget {
    /// (from, to) as written in SQL text, and the same as written inside a '...' literal
    /// (quotes doubled), longest first.
    pairs: Vec<(String, String, String, String)>,
}

impl Retarget {
    /// Rewrite each `(from, to)`: qualified names as PostgreSQL quotes them (quote_ident).
    pub fn new(pairs: Vec<(String, String)>) -> Retarget {
        let mut pairs: Vec<(String, String, String, String)> = pairs
            .into_iter()
            .map(|(from, to)| {
                let (from_lit, to_lit) = (from.replace('\'', "''"), to.replace('\'', "''"));
                (from, to, from_lit, to_lit)
            })
            .collect();
        // Longest first, so `shop.orders_id_seq` is not taken for `shop.orders` + `_id_seq`.
        pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Retarget { pairs }
    }

    /// The replacement for a name starting at `i`, if one does (as code, or inside a literal).
    fn matching(&self, sql: &str, i: usize, in_literal: bool) -> Option<(usize, &str)> {
        let bytes = sql.as_bytes();
        if i > 0 && is_ident_byte(bytes[i - 1]) {
            return None;
        }
        self.pairs.iter().find_map(|(from, to, from_lit, to_lit)| {
            let (from, to) = if in_literal {
                (from_lit, to_lit)
            } else {
                (from, to)
            };
            let end = i + from.len();
            (sql[i..].starts_with(from.as_str())
                && bytes.get(end).is_none_or(|b| !is_ident_byte(*b)))
            .then_some((from.len(), to.as_str()))
        })
    }

    pub fn apply(&self, sql: &str) -> String {
        let bytes = sql.as_bytes();
        let mut out = String::with_capacity(sql.len());
        let mut i = 0;
        let mut in_literal = false;
        while i < bytes.len() {
            if let Some((len, to)) = self.matching(sql, i, in_literal) {
                out.push_str(to);
                i += len;
                continue;
            }
            let b = bytes[i];
            if !in_literal {
                // Dollar-quoted bodies are copied whole, never rewritten.
                if b == b'$' {
                    if let Some(tag_len) = dollar_tag(&sql[i..]) {
                        let tag = &sql[i..i + tag_len];
                        let end = sql[i + tag_len..]
                            .find(tag)
                            .map(|p| i + tag_len + p + tag_len)
                            .unwrap_or(sql.len());
                        out.push_str(&sql[i..end]);
                        i = end;
                        continue;
                    }
                }
                // A quoted identifier that is not a restored name: copied whole, so a quote
                // inside it is not taken for the start of a literal.
                if b == b'"' {
                    let mut end = i + 1;
                    while end < bytes.len() {
                        if bytes[end] == b'"' {
                            if bytes.get(end + 1) == Some(&b'"') {
                                end += 2;
                                continue;
                            }
                            end += 1;
                            break;
                        }
                        end += 1;
                    }
                    out.push_str(&sql[i..end]);
                    i = end;
                    continue;
                }
                if b == b'\'' {
                    in_literal = true;
                    out.push('\'');
                    i += 1;
                    continue;
                }
            } else if b == b'\'' {
                if bytes.get(i + 1) == Some(&b'\'') {
                    out.push_str("''");
                    i += 2;
                } else {
                    in_literal = false;
                    out.push('\'');
                    i += 1;
                }
                continue;
            }
            let ch = sql[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
        out
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'"' || b >= 0x80
}

/// Length of a `$tag$` opening at the start of `s`, if there is one.
fn dollar_tag(s: &str) -> Option<usize> {
    let rest = &s[1..];
    let end = rest.find('$')?;
    let tag = &rest[..end];
    (tag.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !tag.starts_with(|c: char| c.is_ascii_digit()))
    .then_some(end + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_the_restored_relations() {
        let r = Retarget::new(vec![
            ("shop.orders".into(), "\"old shop\".orders".into()),
            (
                "shop.orders_id_seq".into(),
                "\"old shop\".orders_id_seq".into(),
            ),
        ]);
        assert_eq!(
            r.apply("CREATE TABLE shop.orders (id bigint DEFAULT nextval('shop.orders_id_seq'::regclass), s shop.status);"),
            "CREATE TABLE \"old shop\".orders (id bigint DEFAULT nextval('\"old shop\".orders_id_seq'::regclass), s shop.status);"
        );
        // Not a prefix of another name, not another schema's table.
        assert_eq!(
            r.apply("SELECT * FROM shop.orders2, myshop.orders"),
            "SELECT * FROM shop.orders2, myshop.orders"
        );
        // Function bodies are left alone.
        assert_eq!(
            r.apply("AS $f$ SELECT * FROM shop.orders $f$; shop.orders"),
            "AS $f$ SELECT * FROM shop.orders $f$; \"old shop\".orders"
        );
    }

    #[test]
    fn a_quote_in_the_target_stays_inside_its_literal() {
        let r = Retarget::new(vec![(
            "shop.s".into(),
            "\"x'||pg_read_file('/etc/passwd')||'\".s".into(),
        )]);
        let out = r.apply("SELECT pg_catalog.setval('shop.s', 5, true);");
        assert_eq!(
            out,
            "SELECT pg_catalog.setval('\"x''||pg_read_file(''/etc/passwd'')||''\".s', 5, true);"
        );
        // And a quote inside a quoted identifier does not open a literal.
        let r = Retarget::new(vec![("shop.t".into(), "b.t".into())]);
        assert_eq!(
            r.apply("CREATE TABLE \"it's\".x (a int); shop.t"),
            "CREATE TABLE \"it's\".x (a int); b.t"
        );
    }

    #[test]
    fn quoted_names_are_matched_quoted() {
        let r = Retarget::new(vec![(
            "\"Mixed Case\".\"Order Lines\"".into(),
            "copy.\"Order Lines\"".into(),
        )]);
        assert_eq!(
            r.apply("ALTER TABLE ONLY \"Mixed Case\".\"Order Lines\" ADD"),
            "ALTER TABLE ONLY copy.\"Order Lines\" ADD"
        );
    }
}
