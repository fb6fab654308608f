//! Streaming parsers that count the rows of an archive file in each format, for deep verify.
//! They see the decompressed bytes chunk by chunk and hold at most one line (one row).

use super::manifest::ScriptTable;

/// Counts rows as bytes stream past; `finish` says how many, or why the file is not valid.
pub trait RowCounter {
    fn feed(&mut self, chunk: &[u8]);
    fn finish(&mut self) -> Result<u64, String>;
}

/// COPY text format: a literal newline always ends a row and a literal tab always separates
/// fields (both are backslash-escaped inside values), so rows and fields can be counted
/// without decoding values.
pub struct CopyTextCounter {
    columns: usize,
    rows: u64,
    fields_in_row: usize,
    row_has_bytes: bool,
    error: Option<String>,
}

impl CopyTextCounter {
    pub fn new(columns: usize) -> Self {
        CopyTextCounter {
            columns,
            rows: 0,
            fields_in_row: 1,
            row_has_bytes: false,
            error: None,
        }
    }
}

impl RowCounter for CopyTextCounter {
    fn feed(&mut self, chunk: &[u8]) {
        if self.error.is_some() {
            return;
        }
        for &b in chunk {
            match b {
                b'\n' => {
                    let fields = if self.columns == 0 && !self.row_has_bytes {
                        0
                    } else {
                        self.fields_in_row
                    };
                    if fields != self.columns {
                        self.error = Some(format!(
                            "row {} has {} fields, the table has {} columns",
                            self.rows + 1,
                            fields,
                            self.columns
                        ));
                        return;
                    }
                    self.rows += 1;
                    self.fields_in_row = 1;
                    self.row_has_bytes = false;
                }
                b'\t' => {
                    self.fields_in_row += 1;
                    self.row_has_bytes = true;
                }
                _ => self.row_has_bytes = true,
            }
        }
    }

    fn finish(&mut self) -> Result<u64, String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.row_has_bytes || self.fields_in_row != 1 {
            return Err(format!(
                "truncated: the last row (row {}) has no end of line",
                self.rows + 1
            ));
        }
        Ok(self.rows)
    }
}

/// COPY CSV with a header line: quotes may hold commas, quotes (doubled) and newlines.
pub struct CsvCounter {
    columns: usize,
    header: bool,
    rows: u64,
    fields: usize,
    field_has_bytes: bool,
    in_quotes: bool,
    quote_pending: bool,
    error: Option<String>,
}

impl CsvCounter {
    pub fn new(columns: usize) -> Self {
        CsvCounter {
            columns,
            header: true,
            rows: 0,
            fields: 1,
            field_has_bytes: false,
            in_quotes: false,
            quote_pending: false,
            error: None,
        }
    }

    fn end_row(&mut self) {
        let fields = if self.columns == 0 && self.fields == 1 && !self.field_has_bytes {
            0
        } else {
            self.fields
        };
        if fields != self.columns {
            self.error = Some(format!(
                "row {} has {} fields, the table has {} columns",
                self.rows + 1,
                fields,
                self.columns
            ));
        } else if self.header {
            self.header = false;
        } else {
            self.rows += 1;
        }
        self.fields = 1;
        self.field_has_bytes = false;
    }
}

impl RowCounter for CsvCounter {
    fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if self.error.is_some() {
                return;
            }
            if self.quote_pending {
                self.quote_pending = false;
                if b == b'"' {
                    // A doubled quote inside quotes.
                    continue;
                }
                self.in_quotes = false;
            }
            if self.in_quotes {
                if b == b'"' {
                    self.quote_pending = true;
                }
                continue;
            }
            match b {
                b'"' => {
                    self.in_quotes = true;
                    self.field_has_bytes = true;
                }
                b',' => {
                    self.fields += 1;
                    self.field_has_bytes = true;
                }
                b'\n' => self.end_row(),
                _ => self.field_has_bytes = true,
            }
        }
    }

    fn finish(&mut self) -> Result<u64, String> {
        if self.quote_pending {
            self.quote_pending = false;
            self.in_quotes = false;
        }
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.in_quotes || self.field_has_bytes || self.fields != 1 {
            return Err(format!("truncated: row {} is incomplete", self.rows + 1));
        }
        if self.header {
            return Err("the header line is missing".into());
        }
        Ok(self.rows)
    }
}

/// Collects lines (one row each) from a byte stream.
#[derive(Default)]
struct Lines {
    line: Vec<u8>,
}

impl Lines {
    fn feed(&mut self, chunk: &[u8], mut on_line: impl FnMut(&[u8])) {
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            if self.line.is_empty() {
                on_line(&rest[..pos]);
            } else {
                self.line.extend_from_slice(&rest[..pos]);
                on_line(&std::mem::take(&mut self.line));
            }
            rest = &rest[pos + 1..];
        }
        self.line.extend_from_slice(rest);
    }
}

/// Whether JSON text holds the escape `\u0000` (an escaped backslash followed by `u0000` is
/// not one). Backslashes occur in JSON text only as escapes inside strings.
pub fn has_nul_escape(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        if json[i] == b'\\' {
            if json.get(i + 1) == Some(&b'u') && json.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// Finds a COPY block's header, which spans several lines when a name holds a newline
/// (`COPY "a\nb" ...`): fed line by line (without the newline), it says when the last line of
/// `header` has just been seen, every earlier line of it having come right before.
#[derive(Default)]
pub struct HeaderMatcher {
    matched_lines: usize,
}

impl HeaderMatcher {
    /// `header` in the bytes of the file's encoding.
    pub fn feed(&mut self, line: &[u8], header: &[u8]) -> bool {
        let lines: Vec<&[u8]> = header.split(|b| *b == b'\n').collect();
        if lines.get(self.matched_lines) == Some(&line) {
            self.matched_lines += 1;
        } else {
            self.matched_lines = usize::from(lines[0] == line);
        }
        if self.matched_lines == lines.len() {
            self.matched_lines = 0;
            return true;
        }
        false
    }
}

/// One JSON object per line.
#[derive(Default)]
pub struct JsonLinesCounter {
    lines: Lines,
    rows: u64,
    error: Option<String>,
    /// The text is in a server encoding other than UTF-8 (the backed-up database's).
    not_utf8: bool,
}

impl JsonLinesCounter {
    /// Lines in `encoding` (a PostgreSQL encoding name).
    pub fn in_encoding(encoding: &str) -> Self {
        let e = encoding.to_ascii_uppercase().replace(['-', '_'], "");
        JsonLinesCounter {
            not_utf8: !(e == "UTF8" || e == "SQLASCII"),
            ..Default::default()
        }
    }
}

impl RowCounter for JsonLinesCounter {
    fn feed(&mut self, chunk: &[u8]) {
        let (rows, error, not_utf8) = (&mut self.rows, &mut self.error, self.not_utf8);
        self.lines.feed(chunk, |line| {
            if error.is_none() {
                // Every server encoding keeps ASCII as is and puts no ASCII byte inside a
                // multi-byte character: standing in for the other bytes keeps the JSON syntax.
                let ascii;
                let line = if not_utf8 {
                    ascii = line
                        .iter()
                        .map(|b| if *b >= 0x80 { b'x' } else { *b })
                        .collect::<Vec<u8>>();
                    &ascii[..]
                } else {
                    line
                };
                match serde_json::from_slice::<serde_json::Value>(line) {
                    Ok(serde_json::Value::Object(_)) if has_nul_escape(line) => {
                        *error = Some(format!(
                            "line {} holds the escape \\u0000, which no PostgreSQL text or jsonb value can hold: restore cannot load this row",
                            *rows + 1
                        ))
                    }
                    Ok(serde_json::Value::Object(_)) => *rows += 1,
                    Ok(_) => *error = Some(format!("line {} is not a JSON object", *rows + 1)),
                    Err(e) => *error = Some(format!("line {} is not JSON: {e}", *rows + 1)),
                }
            }
        });
    }

    fn finish(&mut self) -> Result<u64, String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if !self.lines.line.is_empty() {
            return Err(format!(
                "truncated: line {} has no end of line",
                self.rows + 1
            ));
        }
        Ok(self.rows)
    }
}

/// The last line of every sql-format script; a script without it was cut short.
pub const SCRIPT_END: &str = "-- pg_backup: end of script";

/// A sql-format script: COPY blocks in the order of `tables`, each with its row count, and the
/// closing line.
pub struct ScriptCounter {
    tables: Vec<ScriptTable>,
    lines: Lines,
    header: HeaderMatcher,
    /// Each block's header line in the script's bytes (the manifest holds it as UTF-8; the
    /// script is in the backed-up database's encoding).
    headers: Vec<Vec<u8>>,
    block: Option<usize>,
    next_block: usize,
    block_rows: u64,
    total: u64,
    last_line: Vec<u8>,
    error: Option<String>,
}

impl ScriptCounter {
    pub fn new(tables: Vec<ScriptTable>) -> Self {
        ScriptCounter {
            headers: tables
                .iter()
                .map(|t| t.header.as_bytes().to_vec())
                .collect(),
            tables,
            lines: Lines::default(),
            header: HeaderMatcher::default(),
            block: None,
            next_block: 0,
            block_rows: 0,
            total: 0,
            last_line: Vec::new(),
            error: None,
        }
    }
}

impl ScriptCounter {
    /// The headers as the script's encoding writes them (`to_bytes` converts from UTF-8).
    pub fn with_headers_in(mut self, to_bytes: impl Fn(&str) -> Vec<u8>) -> Self {
        self.headers = self.tables.iter().map(|t| to_bytes(&t.header)).collect();
        self
    }
}

impl RowCounter for ScriptCounter {
    fn feed(&mut self, chunk: &[u8]) {
        let s = &mut *self;
        let (tables, headers, header, block, next_block, block_rows, total, last_line, error) = (
            &s.tables,
            &s.headers,
            &mut s.header,
            &mut s.block,
            &mut s.next_block,
            &mut s.block_rows,
            &mut s.total,
            &mut s.last_line,
            &mut s.error,
        );
        s.lines.feed(chunk, |line| {
            if error.is_some() {
                return;
            }
            match *block {
                Some(k) if line == b"\\." => {
                    if *block_rows != tables[k].rows {
                        *error = Some(format!(
                            "{}.{}: {} rows in the script, {} in the manifest",
                            tables[k].schema, tables[k].table, block_rows, tables[k].rows
                        ));
                    }
                    *block = None;
                }
                Some(_) => {
                    *block_rows += 1;
                    *total += 1;
                }
                None if headers
                    .get(*next_block)
                    .is_some_and(|h| header.feed(line, h)) =>
                {
                    *block = Some(*next_block);
                    *next_block += 1;
                    *block_rows = 0;
                }
                None => {
                    last_line.clear();
                    last_line.extend_from_slice(line);
                }
            }
        });
    }

    fn finish(&mut self) -> Result<u64, String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.block.is_some()
            || self.next_block != self.tables.len()
            || self.last_line != SCRIPT_END.as_bytes()
            || !self.lines.line.is_empty()
        {
            return Err("truncated: the script does not end with its closing line".into());
        }
        Ok(self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(c: &mut dyn RowCounter, parts: &[&[u8]]) -> Result<u64, String> {
        for p in parts {
            c.feed(p);
        }
        c.finish()
    }

    #[test]
    fn copy_text_counts_rows_and_fields() {
        assert_eq!(
            count(&mut CopyTextCounter::new(2), &[b"1\ta\\nb\n2\t", b"\\N\n"]),
            Ok(2)
        );
        assert!(count(&mut CopyTextCounter::new(2), &[b"1\ta\n2\n"])
            .unwrap_err()
            .contains("row 2 has 1 fields"));
        assert!(count(&mut CopyTextCounter::new(1), &[b"1\n2"])
            .unwrap_err()
            .contains("truncated"));
        assert_eq!(count(&mut CopyTextCounter::new(0), &[b"\n\n"]), Ok(2));
    }

    #[test]
    fn csv_handles_quotes_and_newlines() {
        let data: &[&[u8]] = &[b"a,b\n1,\"x,\"\"y\"\"\nz\"\n", b"2,\n,\"\"\n"];
        assert_eq!(count(&mut CsvCounter::new(2), data), Ok(3));
        assert!(count(&mut CsvCounter::new(2), &[b"a,b\n1,\"open\n"])
            .unwrap_err()
            .contains("truncated"));
        assert!(count(&mut CsvCounter::new(3), &[b"a,b\n"]).is_err());
        assert_eq!(count(&mut CsvCounter::new(0), &[b"\n\n\n"]), Ok(2));
    }

    #[test]
    fn json_lines_are_objects() {
        assert_eq!(
            count(
                &mut JsonLinesCounter::default(),
                &[b"{\"a\":1}\n{\"a\"", b":\"x\\ny\"}\n"]
            ),
            Ok(2)
        );
        assert!(count(&mut JsonLinesCounter::default(), &[b"{\"a\":1}\n[1]\n"]).is_err());
        assert!(count(
            &mut JsonLinesCounter::default(),
            &[b"{\"a\":{\"x\":\"\\u0000\"}}\n"]
        )
        .unwrap_err()
        .contains("u0000"));
        assert_eq!(
            count(
                &mut JsonLinesCounter::default(),
                &[b"{\"a\":\"\\\\u0000\"}\n"]
            ),
            Ok(1),
            "an escaped backslash before u0000 is text"
        );
        // LATIN1 text (0xe9 is é) is not UTF-8 and still a JSON line.
        assert_eq!(
            count(
                &mut JsonLinesCounter::in_encoding("LATIN1"),
                &[b"{\"a\":\"caf\xe9\"}\n"]
            ),
            Ok(1)
        );
        assert!(
            count(&mut JsonLinesCounter::default(), &[b"{\"a\":1}\n{\"a\""])
                .unwrap_err()
                .contains("truncated")
        );
    }

    #[test]
    fn scripts_match_their_blocks() {
        let t = |rows| ScriptTable {
            header: "COPY s.t (a) FROM stdin;".into(),
            schema: "s".into(),
            table: "t".into(),
            columns: vec!["a".into()],
            rows,
            kind: None,
        };
        // A function body with a line that looks like a COPY block is not one.
        let script = format!(
            "SET x = 1;\nCREATE FUNCTION f() RETURNS void AS $$\nCOPY s.u FROM stdin;\n$$ LANGUAGE sql;\n\
             COPY s.t (a) FROM stdin;\n1\n2\n\\.\nCREATE INDEX i ON s.t (a);\n{SCRIPT_END}\n"
        );
        assert_eq!(
            count(&mut ScriptCounter::new(vec![t(2)]), &[script.as_bytes()]),
            Ok(2)
        );
        assert!(
            count(&mut ScriptCounter::new(vec![t(3)]), &[script.as_bytes()])
                .unwrap_err()
                .contains("2 rows in the script")
        );
        // A name with a newline makes a header of two lines.
        let two = ScriptTable {
            header: "COPY s.\"a\nb\" (\"c\nd\") FROM stdin;".into(),
            ..t(1)
        };
        let script2 = format!(
            "COPY s.\"a\n\nb\" FROM stdin;\nCOPY s.\"a\nb\" (\"c\nd\") FROM stdin;\nx\n\\.\n{SCRIPT_END}\n"
        );
        assert_eq!(
            count(&mut ScriptCounter::new(vec![two]), &[script2.as_bytes()]),
            Ok(1)
        );
        let cut = &script.as_bytes()[..script.len() - 10];
        assert!(count(&mut ScriptCounter::new(vec![t(2)]), &[cut])
            .unwrap_err()
            .contains("truncated"));
    }
}
