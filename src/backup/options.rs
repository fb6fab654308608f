//! create() options as a plain struct: parsed and checked without a server.

use serde::Serialize;

use crate::archive::compression::Compression;
use crate::archive::id;
use crate::archive::manifest::Format;
use crate::error::{BackupError, Result};

#[derive(Debug, Clone, Serialize)]
pub struct CreateOptions {
    pub label: Option<String>,
    pub schemas: Option<Vec<String>>,
    pub tables: Option<Vec<String>>,
    pub exclude_tables: Vec<String>,
    pub exclude_data: Vec<String>,
    pub schema_only: bool,
    pub data_only: bool,
    pub format: Format,
    pub compression: Compression,
    pub verbose: bool,
    /// A storage target to copy the archive to (else backup.default_storage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Keep the local copy too (default true; false needs a storage).
    pub keep_local: bool,
    /// age recipients (public keys) to encrypt to, besides the storage's own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub encrypt_to: Vec<String>,
    /// Parallel workers that copy the tables (1: this backend does).
    pub jobs: u32,
}

/// More workers than this is a typo, not a plan (max_worker_processes bounds it anyway).
pub const MAX_JOBS: i32 = 128;

/// Raw SQL arguments, before checking (also what a schedule stores as its options).
#[derive(Debug, Default, Clone, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    pub label: Option<String>,
    pub schemas: Option<Vec<String>>,
    pub tables: Option<Vec<String>>,
    pub exclude_tables: Option<Vec<String>>,
    pub exclude_data: Option<Vec<String>>,
    pub schema_only: Option<bool>,
    pub data_only: Option<bool>,
    pub format: Option<String>,
    pub compression: Option<String>,
    pub verbose: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_local: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt_to: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<i32>,
}

/// What an option left NULL means: the settings `backup.compression` and
/// `backup.compression_level` at the time of the call.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub compression: String,
    pub gzip_level: u32,
}

impl Defaults {
    /// The settings as they are now, in this session.
    pub fn from_settings() -> Defaults {
        Defaults {
            compression: crate::guc::compression(),
            gzip_level: crate::guc::compression_level(),
        }
    }
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            compression: "zstd".into(),
            gzip_level: 6,
        }
    }
}

impl CreateOptions {
    pub fn parse(args: CreateArgs, defaults: &Defaults) -> Result<CreateOptions> {
        if let Some(l) = &args.label {
            id::validate_label(l)?;
        }
        let schema_only = args.schema_only.unwrap_or(false);
        let data_only = args.data_only.unwrap_or(false);
        if schema_only && data_only {
            return Err(
                BackupError::invalid("schema_only and data_only cannot both be true")
                    .with_hint("Leave both false for a full backup."),
            );
        }
        let format = Format::parse(args.format.as_deref().unwrap_or("native"))?;
        let compression = Compression::parse(
            args.compression.as_deref().unwrap_or(&defaults.compression),
            defaults.gzip_level,
        )?;
        let jobs = args.jobs.unwrap_or(1);
        if !(1..=MAX_JOBS).contains(&jobs) {
            return Err(BackupError::invalid(format!("invalid jobs {jobs}"))
                .with_hint(format!("Use 1 (the default: this session copies the tables) up to {MAX_JOBS} parallel workers.")));
        }
        if jobs > 1 && format == Format::Sql {
            return Err(BackupError::invalid(
                "jobs > 1 needs a format with a file per table",
            )
            .with_hint("Use format 'native', 'csv' or 'json' with jobs, or jobs => 1 for one sql script."));
        }
        let nonempty = |v: Option<Vec<String>>, what: &str| -> Result<Option<Vec<String>>> {
            match v {
                Some(list) if list.is_empty() => {
                    Err(BackupError::invalid(format!("{what} is an empty list"))
                        .with_hint(format!("Leave {what} out (NULL) to mean every one.")))
                }
                other => Ok(other),
            }
        };
        Ok(CreateOptions {
            label: args.label,
            schemas: nonempty(args.schemas, "schemas")?,
            tables: nonempty(args.tables, "tables")?,
            exclude_tables: args.exclude_tables.unwrap_or_default(),
            exclude_data: args.exclude_data.unwrap_or_default(),
            schema_only,
            data_only,
            format,
            compression,
            verbose: args.verbose.unwrap_or(false),
            storage: match args.storage.filter(|s| !s.is_empty()) {
                Some(s) => {
                    crate::storage::targets::validate_name(&s)?;
                    Some(s)
                }
                None => None,
            },
            keep_local: args.keep_local.unwrap_or(true),
            encrypt_to: {
                let list = args.encrypt_to.unwrap_or_default();
                crate::crypto::Recipients::parse(&list)?;
                list
            },
            jobs: jobs as u32,
        })
    }

    /// The `kind` column: what this backup holds.
    pub fn kind(&self) -> &'static str {
        if self.schema_only {
            "schema"
        } else if self.data_only {
            "data"
        } else if self.schemas.is_some()
            || self.tables.is_some()
            || !self.exclude_tables.is_empty()
            || !self.exclude_data.is_empty()
        {
            "partial"
        } else {
            "full"
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("options serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_full_zstd_backup() {
        let o = CreateOptions::parse(CreateArgs::default(), &Defaults::default()).unwrap();
        assert_eq!(o.compression, Compression::Zstd(3));
        assert_eq!(o.kind(), "full");
        assert_eq!(o.to_json()["compression"], "zstd:3");
        assert_eq!(o.format, Format::Native);
        assert_eq!(o.to_json()["format"], "native");
        let csv = CreateArgs {
            format: Some(" CSV ".into()),
            ..Default::default()
        };
        let o = CreateOptions::parse(csv, &Defaults::default()).unwrap();
        assert_eq!(
            (o.format, o.to_json()["format"].clone()),
            (Format::Csv, "csv".into())
        );
        let gzip1 = Defaults {
            compression: "gzip".into(),
            gzip_level: 1,
        };
        let o = CreateOptions::parse(CreateArgs::default(), &gzip1).unwrap();
        assert_eq!(o.compression, Compression::Gzip(1));
        let explicit = CreateArgs {
            compression: Some("gzip:9".into()),
            ..Default::default()
        };
        let o = CreateOptions::parse(explicit, &gzip1).unwrap();
        assert_eq!(o.compression, Compression::Gzip(9));
        assert_eq!(o.jobs, 1);
    }

    #[test]
    fn conflicting_and_bad_options_are_22023() {
        let cases = [
            CreateArgs {
                schema_only: Some(true),
                data_only: Some(true),
                ..Default::default()
            },
            CreateArgs {
                format: Some("xml".into()),
                ..Default::default()
            },
            CreateArgs {
                label: Some("../x".into()),
                ..Default::default()
            },
            CreateArgs {
                tables: Some(vec![]),
                ..Default::default()
            },
            CreateArgs {
                jobs: Some(0),
                ..Default::default()
            },
            CreateArgs {
                jobs: Some(MAX_JOBS + 1),
                ..Default::default()
            },
            CreateArgs {
                jobs: Some(2),
                format: Some("sql".into()),
                ..Default::default()
            },
        ];
        for args in cases {
            let what = format!("{args:?}");
            assert_eq!(
                CreateOptions::parse(args, &Defaults::default())
                    .unwrap_err()
                    .sqlstate(),
                "22023",
                "{what}"
            );
        }
    }

    #[test]
    fn kind_follows_the_selection() {
        let o = CreateOptions::parse(
            CreateArgs {
                tables: Some(vec!["t".into()]),
                ..Default::default()
            },
            &Defaults::default(),
        )
        .unwrap();
        assert_eq!(o.kind(), "partial");
        let o = CreateOptions::parse(
            CreateArgs {
                schema_only: Some(true),
                ..Default::default()
            },
            &Defaults::default(),
        )
        .unwrap();
        assert_eq!(o.kind(), "schema");
    }
}
