//! The `compression` option: `gzip` (level from backup.compression_level), `gzip:1`..`gzip:9`, `none`.

use crate::error::{BackupError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip(u32),
}

impl Compression {
    pub fn parse(text: &str, default_level: u32) -> Result<Compression> {
        let t = text.trim().to_ascii_lowercase();
        let bad = || {
            BackupError::invalid(format!("invalid compression \"{}\"", text.escape_default()))
                .with_hint("Use 'gzip', 'gzip:1' .. 'gzip:9' or 'none'.")
        };
        match t.as_str() {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip(default_level.clamp(1, 9))),
            _ => {
                let level = t.strip_prefix("gzip:").ok_or_else(bad)?;
                match level.parse::<u32>() {
                    Ok(n @ 1..=9) => Ok(Compression::Gzip(n)),
                    _ => Err(bad()),
                }
            }
        }
    }

    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip(_) => ".gz",
        }
    }

    /// As recorded in the manifest and the catalog: `gzip:N` or `none`.
    pub fn name(self) -> String {
        match self {
            Compression::None => "none".into(),
            Compression::Gzip(n) => format!("gzip:{n}"),
        }
    }

    /// Read back what `name()` wrote.
    pub fn from_name(name: &str) -> Result<Compression> {
        Compression::parse(name, 6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(Compression::parse("gzip", 3).unwrap(), Compression::Gzip(3));
        assert_eq!(
            Compression::parse("GZIP:9", 3).unwrap(),
            Compression::Gzip(9)
        );
        assert_eq!(Compression::parse("none", 3).unwrap(), Compression::None);
        for bad in ["gzip:0", "gzip:10", "zstd", "", "gzip:"] {
            assert_eq!(
                Compression::parse(bad, 3).unwrap_err().sqlstate(),
                "22023",
                "{bad}"
            );
        }
        assert_eq!(
            Compression::from_name(&Compression::Gzip(4).name()).unwrap(),
            Compression::Gzip(4)
        );
    }
}
