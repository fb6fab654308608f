//! Named storage targets: `backup.add_storage(name, url, options)`, `drop_storage(name)`, and
//! opening a target by name. The public part (URL, endpoint, region, flags, recipients) is in
//! `backup.storage_targets` (shown by the view `backup.storages`); the secrets are in
//! `backup.storage_secrets`, which only the extension owner can read (see README, "Security
//! model": no operator, no pg_backup archive and no pg_dump holds them).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::text;
use pgrx::prelude::*;
use serde_json::{Map, Value};

use super::file::FileStore;
use super::s3::{S3Config, S3Store, DEFAULT_PART_SIZE, DEFAULT_RETRIES, MIN_PART_SIZE};
use super::sigv4::Credentials;
use super::store::Store;
use crate::crypto::Recipients;
use crate::error::{BackupError, Result};

const SECRET_KEYS: &[&str] = &["access_key_id", "secret_access_key", "session_token"];
const S3_KEYS: &[&str] = &[
    "endpoint",
    "region",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "path_style",
    "allow_http",
    "credentials",
    "part_size_mb",
    "retries",
    "timeout_seconds",
    "encrypt_to",
];
const FILE_KEYS: &[&str] = &["encrypt_to"];

/// A target opened for use.
pub struct Target {
    pub name: String,
    pub store: Arc<dyn Store>,
    /// Recipients every backup to this target is encrypted to (option `encrypt_to`).
    pub encrypt_to: Vec<String>,
}

pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BackupError::invalid(format!(
            "invalid storage name \"{}\"",
            name.escape_debug()
        ))
        .with_hint(
            "Use letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit).",
        ))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Url {
    S3 { bucket: String, prefix: String },
    File { root: PathBuf },
}

fn parse_url(url: &str) -> Result<Url> {
    let bad = |why: &str| {
        BackupError::invalid(format!(
            "invalid storage URL \"{}\": {why}",
            url.escape_debug()
        ))
        .with_hint("Use s3://bucket/optional/prefix or file:///absolute/path.")
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=255).contains(&bucket.len())
            && bucket.as_bytes()[0].is_ascii_alphanumeric()
            && bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !bucket_ok {
            return Err(bad("not a bucket name"));
        }
        let prefix = prefix.trim_end_matches('/');
        if prefix
            .split('/')
            .any(|seg| (seg.is_empty() && !prefix.is_empty()) || seg == "." || seg == "..")
            || prefix.chars().any(|c| c.is_control())
        {
            return Err(bad("the prefix has an empty, '.' or '..' segment"));
        }
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        return Ok(Url::S3 {
            bucket: bucket.to_string(),
            prefix,
        });
    }
    if let Some(path) = url.strip_prefix("file://") {
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(bad("file:// needs an absolute path (file:///mnt/backups)"));
        }
        if p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(bad("the path has a '.' or '..' component"));
        }
        return Ok(Url::File {
            root: p.to_path_buf(),
        });
    }
    Err(bad("unknown scheme"))
}

fn opt_bool(o: &Map<String, Value>, key: &str) -> Result<Option<bool>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if matches!(s.as_str(), "true" | "on") => Ok(Some(true)),
        Some(Value::String(s)) if matches!(s.as_str(), "false" | "off") => Ok(Some(false)),
        Some(_) => Err(BackupError::invalid(format!(
            "option \"{key}\" must be a boolean"
        ))),
    }
}

fn opt_str(o: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(BackupError::invalid(format!(
            "option \"{key}\" must be a string"
        ))),
    }
}

fn opt_u64(o: &Map<String, Value>, key: &str, min: u64, max: u64) -> Result<Option<u64>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(BackupError::invalid(format!(
                "option \"{key}\" must be a whole number from {min} to {max}"
            ))),
        },
    }
}

fn recipients_of(o: &Map<String, Value>) -> Result<Vec<String>> {
    let list = match o.get("encrypt_to") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    BackupError::invalid("option \"encrypt_to\" must be a list of age1... keys")
                })
            })
            .collect::<Result<_>>()?,
        Some(_) => {
            return Err(BackupError::invalid(
                "option \"encrypt_to\" must be a list of age1... keys",
            ))
        }
    };
    Recipients::parse(&list)?;
    Ok(list)
}

/// Check `options` for `url` and split them into what may be shown and the secrets.
pub fn split_options(url: &str, options: &Value) -> Result<(Value, Value)> {
    let empty = Map::new();
    let o = match options {
        Value::Null => &empty,
        Value::Object(m) => m,
        _ => {
            return Err(BackupError::invalid(
                "storage options must be a JSON object",
            ))
        }
    };
    let allowed = match parse_url(url)? {
        Url::S3 { .. } => S3_KEYS,
        Url::File { .. } => FILE_KEYS,
    };
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(BackupError::invalid(format!(
            "unknown storage option \"{}\" for this URL",
            k.escape_debug()
        ))
        .with_hint(format!("Options for this URL: {}.", allowed.join(", "))));
    }
    let mut public = Map::new();
    let mut secret = Map::new();
    for (k, v) in o {
        if SECRET_KEYS.contains(&k.as_str()) {
            secret.insert(k.clone(), v.clone());
        } else {
            public.insert(k.clone(), v.clone());
        }
    }
    // Everything is checked now, so a bad target is refused at add_storage, not at 3 am.
    build(
        url,
        &Value::Object(public.clone()),
        &Value::Object(secret.clone()),
    )?;
    Ok((Value::Object(public), Value::Object(secret)))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// Build the store for a target from its URL, public options and secrets.
pub fn build(url: &str, public: &Value, secret: &Value) -> Result<Arc<dyn Store>> {
    let empty = Map::new();
    let p = public.as_object().unwrap_or(&empty);
    let s = secret.as_object().unwrap_or(&empty);
    recipients_of(p)?;
    match parse_url(url)? {
        Url::File { root } => Ok(Arc::new(FileStore { root })),
        Url::S3 { bucket, prefix } => {
            let from_env = match opt_str(p, "credentials")?.as_deref() {
                None => false,
                Some("env") => true,
                Some(other) => {
                    return Err(BackupError::invalid(format!(
                        "invalid credentials \"{}\"",
                        other.escape_debug()
                    ))
                    .with_hint("Use \"credentials\": \"env\" to read AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN from the server's environment, or give access_key_id and secret_access_key."))
                }
            };
            let credentials = if from_env {
                if !s.is_empty() {
                    return Err(BackupError::invalid(
                        "\"credentials\": \"env\" and access keys in the options exclude each other",
                    ));
                }
                Credentials {
                    access_key_id: env("AWS_ACCESS_KEY_ID").unwrap_or_default(),
                    secret_access_key: env("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
                    session_token: env("AWS_SESSION_TOKEN"),
                }
            } else {
                let key = opt_str(s, "access_key_id")?;
                let secret = opt_str(s, "secret_access_key")?;
                match (key, secret) {
                    (Some(k), Some(sk)) => Credentials {
                        access_key_id: k,
                        secret_access_key: sk,
                        session_token: opt_str(s, "session_token")?,
                    },
                    _ => {
                        return Err(BackupError::invalid(
                            "an s3:// storage needs access_key_id and secret_access_key, or \"credentials\": \"env\"",
                        ))
                    }
                }
            };
            let region = opt_str(p, "region")?
                .or_else(|| {
                    from_env
                        .then(|| env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")))
                        .flatten()
                })
                .unwrap_or_else(|| "us-east-1".into());
            let given_endpoint = opt_str(p, "endpoint")?.or_else(|| {
                from_env
                    .then(|| env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")))
                    .flatten()
            });
            let allow_http = opt_bool(p, "allow_http")?.unwrap_or(false);
            let endpoint = match &given_endpoint {
                Some(e) => {
                    let u = url::Url::parse(e).map_err(|err| {
                        BackupError::invalid(format!(
                            "invalid endpoint \"{}\": {err}",
                            e.escape_debug()
                        ))
                    })?;
                    if u.host_str().is_none()
                        || !matches!(u.scheme(), "http" | "https")
                        || u.path().len() > 1
                    {
                        return Err(BackupError::invalid(format!(
                            "invalid endpoint \"{}\"",
                            e.escape_debug()
                        ))
                        .with_hint(
                            "Give scheme, host and port only, e.g. https://minio.example.com:9000.",
                        ));
                    }
                    if u.scheme() == "http" && !allow_http {
                        return Err(BackupError::invalid(
                            "endpoint uses http:// but allow_http is not set",
                        )
                        .with_hint("Use https://, or set \"allow_http\": true if the network is trusted (credentials are signed, data is sent in clear)."));
                    }
                    e.trim_end_matches('/').to_string()
                }
                None => format!("https://s3.{region}.amazonaws.com"),
            };
            let path_style = opt_bool(p, "path_style")?.unwrap_or(given_endpoint.is_some());
            let part_size = opt_u64(p, "part_size_mb", 5, 5120)?
                .map(|mb| (mb as usize) << 20)
                .unwrap_or(DEFAULT_PART_SIZE)
                .max(MIN_PART_SIZE);
            let retries = opt_u64(p, "retries", 0, 20)?
                .map(|n| n as u32)
                .unwrap_or(DEFAULT_RETRIES);
            let timeout =
                Duration::from_secs(opt_u64(p, "timeout_seconds", 1, 3600)?.unwrap_or(30));
            let store = S3Store::new(S3Config {
                bucket,
                prefix,
                endpoint,
                region,
                path_style,
                credentials,
                part_size,
                retries,
                timeout,
            })
            .map_err(|e| BackupError::invalid(e.message))?;
            Ok(Arc::new(store))
        }
    }
}

/// The role that called add_storage / drop_storage (the current user at the call), not the
/// extension owner the call runs as.
fn caller_is_superuser() -> bool {
    // SAFETY: reads the backend-local session user id (set at connection).
    let caller = crate::security::caller_oid().unwrap_or(unsafe { pg_sys::GetOuterUserId() });
    // SAFETY: a syscache lookup of a role by oid, inside the call's transaction.
    unsafe { pg_sys::superuser_arg(caller) }
}

fn require_superuser(what: &str) -> Result<()> {
    if caller_is_superuser() {
        Ok(())
    } else {
        Err(BackupError::denied(format!("only a superuser may {what}"))
            .with_hint("Storage targets hold credentials; a superuser manages them, backup operators use them by name."))
    }
}

/// `backup.add_storage(name, url, options, replace)`: check, test the target, store it.
pub fn add(name: &str, url: &str, options: &Value, replace: bool, check: bool) -> Result<()> {
    require_superuser("add a storage target")?;
    validate_name(name)?;
    let (public, secret) = split_options(url, options)?;
    if check {
        let store = build(url, &public, &secret)?;
        store.check().map_err(|e| e.into_backup_error(name))?;
    }
    let exists = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM backup.storage_targets WHERE name = $1)",
        &[text::arg(name)],
    )?
    .unwrap_or(false);
    if exists && !replace {
        return Err(
            BackupError::exists(format!("storage \"{name}\" already exists")).with_hint(
                "Pass replace => true to change it, or drop it with backup.drop_storage().",
            ),
        );
    }
    Spi::run_with_args(
        "INSERT INTO backup.storage_targets (name, url, options) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url, options = EXCLUDED.options, created_at = now()",
        &[text::arg(name), text::arg(url), text::Json(public).into()],
    )?;
    Spi::run_with_args(
        "INSERT INTO backup.storage_secrets (name, secrets) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET secrets = EXCLUDED.secrets",
        &[text::arg(name), text::Json(secret).into()],
    )?;
    Ok(())
}

/// `backup.drop_storage(name)`: forget a target (its archives stay where they are).
pub fn drop(name: &str, if_exists: bool) -> Result<bool> {
    require_superuser("drop a storage target")?;
    let gone = Spi::get_one_with_args::<text::Text>(
        "DELETE FROM backup.storage_targets WHERE name = $1 RETURNING name",
        &[text::arg(name)],
    )?
    .is_some();
    if !gone && !if_exists {
        return Err(unknown(name));
    }
    Ok(gone)
}

pub fn unknown(name: &str) -> BackupError {
    BackupError::unknown(format!("storage \"{name}\" does not exist")).with_hint(
        "See SELECT * FROM backup.storages; a superuser adds one with backup.add_storage().",
    )
}

/// Open target `name` (runs as the extension owner, which alone reads the secrets).
pub fn open(name: &str) -> Result<Target> {
    validate_name(name)?;
    let row = Spi::connect(|c| {
        let t = c.select(
            "SELECT t.url, t.options, s.secrets FROM backup.storage_targets t
             LEFT JOIN backup.storage_secrets s USING (name) WHERE t.name = $1",
            None,
            &[text::arg(name)],
        )?;
        if t.is_empty() {
            return Ok::<_, BackupError>(None);
        }
        let r = t.first();
        Ok(Some((
            r.get::<text::Text>(1)?.unwrap_or_default().0,
            r.get::<text::Json>(2)?.map(|j| j.0).unwrap_or(Value::Null),
            r.get::<text::Json>(3)?.map(|j| j.0).unwrap_or(Value::Null),
        )))
    })?;
    let Some((url, public, secret)) = row else {
        return Err(unknown(name));
    };
    let store = build(&url, &public, &secret)?;
    let encrypt_to = recipients_of(public.as_object().unwrap_or(&Map::new()))?;
    Ok(Target {
        name: name.to_string(),
        store,
        encrypt_to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("s3://my-bucket/a/b/").unwrap(),
            Url::S3 {
                bucket: "my-bucket".into(),
                prefix: "a/b/".into()
            }
        );
        assert_eq!(
            parse_url("s3://my-bucket").unwrap(),
            Url::S3 {
                bucket: "my-bucket".into(),
                prefix: String::new()
            }
        );
        for bad in [
            "s3://",
            "s3://a",
            "s3://b/../x",
            "s3://b/a//c",
            "file://rel/x",
            "file:///a/../b",
            "http://x",
            "s3://-b/x",
        ] {
            assert_eq!(parse_url(bad).unwrap_err().sqlstate(), "22023", "{bad}");
        }
    }

    #[test]
    fn options_are_checked_and_secrets_split_off() {
        let (public, secret) = split_options(
            "s3://bkt/p",
            &json!({"endpoint": "http://127.0.0.1:9000", "allow_http": true,
                    "access_key_id": "AK", "secret_access_key": "SK", "region": "eu-west-1"}),
        )
        .unwrap();
        assert_eq!(
            public,
            json!({"endpoint": "http://127.0.0.1:9000", "allow_http": true, "region": "eu-west-1"})
        );
        assert_eq!(
            secret,
            json!({"access_key_id": "AK", "secret_access_key": "SK"})
        );

        let err = |url: &str, o: Value| split_options(url, &o).unwrap_err();
        assert!(err(
            "s3://bkt",
            json!({"endpoint": "http://h:1", "access_key_id": "a", "secret_access_key": "b"})
        )
        .hint()
        .unwrap()
        .contains("allow_http"));
        assert!(err("s3://bkt", json!({"bogus": 1}))
            .hint()
            .unwrap()
            .contains("endpoint"));
        assert_eq!(err("s3://bkt", json!({})).sqlstate(), "22023");
        assert_eq!(
            err(
                "s3://bkt",
                json!({"credentials": "env", "secret_access_key": "x"})
            )
            .sqlstate(),
            "22023"
        );
        assert_eq!(err("file:///x", json!({"region": "x"})).sqlstate(), "22023");
        assert_eq!(
            err(
                "s3://bkt",
                json!({"credentials": "env", "encrypt_to": ["age1bad"]})
            )
            .sqlstate(),
            "22023"
        );
        assert!(split_options(
            "s3://bkt",
            &json!({"credentials": "env", "part_size_mb": 8})
        )
        .is_ok());
        assert!(split_options("file:///mnt/x", &Value::Null).is_ok());
    }
}
