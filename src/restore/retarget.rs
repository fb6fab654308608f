//! `target_schema`: rewrite the DDL of restored relations from their schema to another one.
//!
//! Only the qualified names of the relations being restored are rewritten (`shop.orders` ->
//! `archive.orders`, also inside string literals such as `nextval('shop.orders_id_seq')`), never
//! inside dollar-quoted bodies, and never other objects of the schema (types and functions stay
//! where they are and must exist there).

pub struct Retarget {
    pairs: Vec<(String, String)>,
}

impl Retarget {
    /// Rewrite each `(from, to)`: qualified names as PostgreSQL quotes them (quote_ident).
    pub fn new(mut pairs: Vec<(String, String)>) -> Retarget {
        // Longest first, so `shop.orders_id_seq` is not taken for `shop.orders` + `_id_seq`.
        pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Retarget { pairs }
    }

    pub fn apply(&self, sql: &str) -> String {
        let bytes = sql.as_bytes();
        let mut out = String::with_capacity(sql.len());
        let mut i = 0;
        while i < bytes.len() {
            // Skip dollar-quoted bodies whole.
            if bytes[i] == b'$' {
                if let Some(tag_len) = dollar_tag(&sql[i..]) {
                    let tag = &sql[i..i + tag_len];
                    let body_end = sql[i + tag_len..]
                        .find(tag)
                        .map(|p| i + tag_len + p + tag_len)
                        .unwrap_or(sql.len());
                    out.push_str(&sql[i..body_end]);
                    i = body_end;
                    continue;
                }
            }
            let boundary_before = i == 0 || !is_ident_byte(bytes[i - 1]);
            if boundary_before {
                if let Some((from, to)) = self.pairs.iter().find(|(from, _)| {
                    sql[i..].starts_with(from.as_str())
                        && sql
                            .as_bytes()
                            .get(i + from.len())
                            .is_none_or(|b| !is_ident_byte(*b))
                }) {
                    out.push_str(to);
                    i += from.len();
                    continue;
                }
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
