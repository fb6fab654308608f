//! The little XML that S3 answers with (errors, upload ids, listings): elements found by name,
//! text unescaped. S3's responses are flat enough that this is all a client needs.

/// The text of every `<tag>...</tag>` in `xml`, in order (tags without attributes or with).
pub fn all<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        // `<Key>` but not `<KeyCount>`.
        let Some(gt) = after.find('>') else { break };
        let attrs = &after[..gt];
        if !(attrs.is_empty() || attrs.starts_with(' ') || attrs.starts_with('/')) {
            rest = after;
            continue;
        }
        if attrs.ends_with('/') {
            out.push("");
            rest = &after[gt + 1..];
            continue;
        }
        let body = &after[gt + 1..];
        let Some(end) = body.find(&close) else { break };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

/// The unescaped text of the first `<tag>`.
pub fn first(xml: &str, tag: &str) -> Option<String> {
    all(xml, tag).first().map(|s| unescape(s))
}

pub fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(semi) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..semi];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => out.push(c),
            None => out.push_str(&tail[..=semi]),
        }
        rest = &tail[semi + 1..];
    }
    out.push_str(rest);
    out
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_elements_and_unescapes() {
        let x = r#"<?xml version="1.0"?><ListBucketResult><KeyCount>2</KeyCount>
            <Contents><Key>a&amp;b/manifest.json</Key><Size>10</Size></Contents>
            <Contents><Key>c&#x20;d</Key><Size>3</Size></Contents><IsTruncated>false</IsTruncated>
            <NextContinuationToken/></ListBucketResult>"#;
        let contents = all(x, "Contents");
        assert_eq!(contents.len(), 2);
        assert_eq!(first(contents[0], "Key").unwrap(), "a&b/manifest.json");
        assert_eq!(first(contents[1], "Key").unwrap(), "c d");
        assert_eq!(first(x, "KeyCount").unwrap(), "2");
        assert_eq!(first(x, "IsTruncated").unwrap(), "false");
        assert_eq!(first(x, "NextContinuationToken").unwrap(), "");
        assert_eq!(first(x, "Missing"), None);
        assert_eq!(unescape(&escape("<a&\"b>")), "<a&\"b>");
    }
}
