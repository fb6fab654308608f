//! Backup ids: the only user-supplied text that becomes a path, so validated before any use.

use chrono::{DateTime, Utc};

use crate::error::{BackupError, Result};

pub const MAX_ID_LEN: usize = 128;

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`: no slash, no leading dot, so never `..` or hidden.
pub fn validate(id: &str) -> Result<()> {
    let bytes = id.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_ID_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BackupError::invalid(format!("invalid backup id \"{}\"", id.escape_debug()))
            .with_hint("A backup id matches ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$; see SELECT id FROM backup.backups."))
    }
}

/// Labels become part of the id, so they obey the same alphabet.
pub fn validate_label(label: &str) -> Result<()> {
    let ok = !label.is_empty()
        && label.len() <= 64
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(
            BackupError::invalid(format!("invalid label \"{}\"", label.escape_debug()))
                .with_hint("A label is 1 to 64 characters from A-Z a-z 0-9 . _ -"),
        )
    }
}

/// `20261123T121314.123456Z` plus `-label`: sortable by time, unique per microsecond.
pub fn generate(at: DateTime<Utc>, label: Option<&str>) -> String {
    let stamp = at.format("%Y%m%dT%H%M%S%.6fZ").to_string();
    match label {
        Some(l) => format!("{stamp}-{l}"),
        None => stamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn accepts_generated_ids() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 1).unwrap();
        let id = generate(at, Some("nightly"));
        assert_eq!(id, "20261123T120001.000000Z-nightly");
        validate(&id).unwrap();
        validate(&generate(at, None)).unwrap();
    }

    #[test]
    fn rejects_paths_and_odd_names() {
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "../etc",
            "a b",
            "x\0y",
            "-x",
            "é",
            &"a".repeat(129),
        ] {
            let err = validate(bad).unwrap_err();
            assert_eq!(err.sqlstate(), "22023", "{bad:?}");
        }
        validate(&"a".repeat(128)).unwrap();
    }

    #[test]
    fn labels_use_the_id_alphabet() {
        validate_label("pre-upgrade_1.0").unwrap();
        assert!(validate_label("a/b").is_err());
        assert!(validate_label("").is_err());
    }
}
