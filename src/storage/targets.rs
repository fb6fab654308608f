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

use super::cloud::CloudStore;
use super::file::FileStore;
use super::store::Store;
use crate::crypto::Recipients;
use crate::error::{BackupError, Result};

/// Options that are secrets: kept in `backup.storage_secrets`, never shown.
const SECRET_KEYS: &[&str] = &[
    "access_key_id",
    "secret_access_key",
    "session_token",
    "service_account_key",
    "account_key",
    "sas_token",
];
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
const GS_KEYS: &[&str] = &[
    "service_account_key",
    "credentials",
    "endpoint",
    "allow_http",
    "part_size_mb",
    "retries",
    "timeout_seconds",
    "encrypt_to",
];
const AZ_KEYS: &[&str] = &[
    "account",
    "account_key",
    "sas_token",
    "credentials",
    "endpoint",
    "use_emulator",
    "allow_http",
    "part_size_mb",
    "retries",
    "timeout_seconds",
    "encrypt_to",
];
const FILE_KEYS: &[&str] = &["encrypt_to"];

/// S3's smallest part (all but the last); the default part.
const MIN_PART_SIZE: usize = 5 << 20;
const DEFAULT_PART_SIZE: usize = 16 << 20;
const DEFAULT_RETRIES: u32 = 4;
/// The account and key every Azurite accepts (published by Microsoft for the emulator).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

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

/// The object stores pg_backup speaks to (all through object_store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// Amazon S3 and S3-compatible servers (MinIO, R2, B2, rclone, ...).
    S3,
    /// Google Cloud Storage.
    Gs,
    /// Azure Blob Storage (the URL names the container).
    Az,
}

impl Scheme {
    fn prefix(self) -> &'static str {
        match self {
            Scheme::S3 => "s3://",
            Scheme::Gs => "gs://",
            Scheme::Az => "az://",
        }
    }

    fn keys(self) -> &'static [&'static str] {
        match self {
            Scheme::S3 => S3_KEYS,
            Scheme::Gs => GS_KEYS,
            Scheme::Az => AZ_KEYS,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Url {
    Bucket {
        scheme: Scheme,
        bucket: String,
        prefix: String,
    },
    File {
        root: PathBuf,
    },
}

fn parse_url(url: &str) -> Result<Url> {
    let bad = |why: &str| {
        BackupError::invalid(format!(
            "invalid storage URL \"{}\": {why}",
            url.escape_debug()
        ))
        .with_hint("Use s3://bucket/optional/prefix, gs://bucket/optional/prefix, az://container/optional/prefix or file:///absolute/path.")
    };
    for scheme in [Scheme::S3, Scheme::Gs, Scheme::Az] {
        let Some(rest) = url.strip_prefix(scheme.prefix()) else {
            continue;
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = match scheme {
            // Azure containers: 3 to 63 lower-case letters, digits and '-'.
            Scheme::Az => {
                (3..=63).contains(&bucket.len())
                    && bucket.as_bytes()[0].is_ascii_alphanumeric()
                    && bucket
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            }
            Scheme::S3 | Scheme::Gs => {
                (3..=255).contains(&bucket.len())
                    && bucket.as_bytes()[0].is_ascii_alphanumeric()
                    && bucket
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            }
        };
        if !bucket_ok {
            return Err(bad(if scheme == Scheme::Az {
                "not a container name"
            } else {
                "not a bucket name"
            }));
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
        return Ok(Url::Bucket {
            scheme,
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
        Url::Bucket { scheme, .. } => scheme.keys(),
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

/// How a target authenticates (option `credentials`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Creds {
    /// Keys from the options (kept in backup.storage_secrets).
    Static,
    /// The provider's own chain: environment, instance metadata, web identity.
    Env,
    /// No authentication (gs:// emulators only).
    Anonymous,
}

fn creds_of(scheme: Scheme, p: &Map<String, Value>, s: &Map<String, Value>) -> Result<Creds> {
    let hint = match scheme {
        Scheme::S3 => "Use \"credentials\": \"env\" for the server's AWS chain (AWS_* variables, web identity, instance metadata), or give access_key_id and secret_access_key.",
        Scheme::Gs => "Use \"credentials\": \"env\" for the server's Google chain (GOOGLE_APPLICATION_CREDENTIALS, metadata server), give service_account_key, or \"credentials\": \"none\" for an emulator at \"endpoint\".",
        Scheme::Az => "Use \"credentials\": \"env\" for the server's Azure chain (AZURE_* variables, workload identity, managed identity), or give account_key or sas_token.",
    };
    let c = match opt_str(p, "credentials")?.as_deref() {
        None => Creds::Static,
        Some("env") => Creds::Env,
        Some("none") if scheme == Scheme::Gs => Creds::Anonymous,
        Some(other) => {
            return Err(BackupError::invalid(format!(
                "invalid credentials \"{}\"",
                other.escape_debug()
            ))
            .with_hint(hint))
        }
    };
    if c != Creds::Static && !s.is_empty() {
        return Err(BackupError::invalid(format!(
            "\"credentials\": \"{}\" and keys in the options exclude each other",
            if c == Creds::Env { "env" } else { "none" }
        ))
        .with_hint(hint));
    }
    let emulator = scheme == Scheme::Az && opt_bool(p, "use_emulator")?.unwrap_or(false);
    if c == Creds::Static && !emulator {
        let missing = match scheme {
            Scheme::S3 => {
                opt_str(s, "access_key_id")?.is_none() || opt_str(s, "secret_access_key")?.is_none()
            }
            Scheme::Gs => s.get("service_account_key").is_none(),
            Scheme::Az => {
                opt_str(s, "account_key")?.is_none() && opt_str(s, "sas_token")?.is_none()
            }
        };
        if missing {
            let what = match scheme {
                Scheme::S3 => "an s3:// storage needs access_key_id and secret_access_key, or \"credentials\": \"env\"",
                Scheme::Gs => "a gs:// storage needs service_account_key, or \"credentials\": \"env\"",
                Scheme::Az => "an az:// storage needs account_key or sas_token, or \"credentials\": \"env\"",
            };
            return Err(BackupError::invalid(what).with_hint(hint));
        }
    }
    if scheme == Scheme::Az
        && opt_str(s, "account_key")?.is_some()
        && opt_str(s, "sas_token")?.is_some()
    {
        return Err(BackupError::invalid(
            "account_key and sas_token exclude each other",
        ));
    }
    Ok(c)
}

/// An endpoint option: http(s) with a host; http only with allow_http. S3 endpoints are a
/// host only (the bucket goes into the path or the host name); Azure and GCS ones may carry a
/// path (Azurite's account).
fn endpoint_of(e: &str, scheme: Scheme, allow_http: bool) -> Result<url::Url> {
    let u = url::Url::parse(e).map_err(|err| {
        BackupError::invalid(format!("invalid endpoint \"{}\": {err}", e.escape_debug()))
    })?;
    if u.host_str().is_none()
        || !matches!(u.scheme(), "http" | "https")
        || (scheme == Scheme::S3 && u.path().len() > 1)
        || u.query().is_some()
        || !u.username().is_empty()
        || u.password().is_some()
    {
        return Err(
            BackupError::invalid(format!("invalid endpoint \"{}\"", e.escape_debug())).with_hint(
                if scheme == Scheme::S3 {
                    "Give scheme, host and port only, e.g. https://minio.example.com:9000."
                } else {
                    "Give an http(s) URL without user, password or query, e.g. http://127.0.0.1:10000/devstoreaccount1."
                },
            ),
        );
    }
    if u.scheme() == "http" && !allow_http {
        return Err(BackupError::invalid(
            "endpoint uses http:// but allow_http is not set",
        )
        .with_hint("Use https://, or set \"allow_http\": true if the network is trusted (credentials are signed, data is sent in clear)."));
    }
    Ok(u)
}

fn builder_error(e: object_store::Error, secrets: &[String]) -> BackupError {
    let mut text = e.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(s.as_str(), "[redacted]");
    }
    BackupError::invalid(format!("invalid storage configuration: {text}"))
}

/// Build the store for a target from its URL, public options and secrets.
pub fn build(url: &str, public: &Value, secret: &Value) -> Result<Arc<dyn Store>> {
    let empty = Map::new();
    let p = public.as_object().unwrap_or(&empty);
    let s = secret.as_object().unwrap_or(&empty);
    recipients_of(p)?;
    let (scheme, bucket, prefix) = match parse_url(url)? {
        Url::File { root } => return Ok(Arc::new(FileStore { root })),
        Url::Bucket {
            scheme,
            bucket,
            prefix,
        } => (scheme, bucket, prefix),
    };
    let creds = creds_of(scheme, p, s)?;
    let use_emulator = opt_bool(p, "use_emulator")?.unwrap_or(false);
    let allow_http = opt_bool(p, "allow_http")?.unwrap_or(false) || use_emulator;
    let part_size = opt_u64(p, "part_size_mb", 5, 5120)?
        .map(|mb| (mb as usize) << 20)
        .unwrap_or(DEFAULT_PART_SIZE)
        .max(MIN_PART_SIZE);
    let retries = opt_u64(p, "retries", 0, 20)?
        .map(|n| n as u32)
        .unwrap_or(DEFAULT_RETRIES);
    let timeout = Duration::from_secs(opt_u64(p, "timeout_seconds", 1, 3600)?.unwrap_or(30));
    // One request may take timeout_seconds plus 4 s per MiB it carries (a floor of 256 KiB/s
    // for a part); a read cut by it resumes where it stopped.
    let request_timeout = timeout + Duration::from_secs(4 * (part_size >> 20) as u64);
    let connector = super::cloud::Connector {
        connect_timeout: timeout.min(Duration::from_secs(10)),
        timeout: request_timeout,
        read_timeout: timeout,
    };
    let client = object_store::ClientOptions::new()
        .with_allow_http(allow_http)
        .with_connect_timeout(timeout.min(Duration::from_secs(10)))
        .with_timeout(request_timeout)
        .with_user_agent(object_store::HeaderValue::from_static(concat!(
            "pg_backup/",
            env!("CARGO_PKG_VERSION")
        )));
    let retry = object_store::RetryConfig {
        max_retries: retries as usize,
        retry_timeout: Duration::from_secs(180).max(request_timeout * 2),
        backoff: object_store::BackoffConfig::default(),
    };
    let secret_values: Vec<String> = s
        .values()
        .filter_map(|v| match v {
            Value::String(x) => Some(x.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
        .collect();
    let given_endpoint = opt_str(p, "endpoint")?;
    let store: Arc<dyn object_store::ObjectStore> = match scheme {
        Scheme::S3 => {
            if use_emulator {
                return Err(BackupError::invalid("use_emulator is an az:// option"));
            }
            let from_env = creds == Creds::Env;
            let region = opt_str(p, "region")?
                .or_else(|| {
                    from_env
                        .then(|| env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")))
                        .flatten()
                })
                .unwrap_or_else(|| "us-east-1".into());
            let endpoint = given_endpoint.or_else(|| {
                from_env
                    .then(|| env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")))
                    .flatten()
            });
            let path_style = opt_bool(p, "path_style")?.unwrap_or(endpoint.is_some());
            let mut b = if from_env {
                object_store::aws::AmazonS3Builder::from_env()
            } else {
                object_store::aws::AmazonS3Builder::new()
                    .with_access_key_id(opt_str(s, "access_key_id")?.unwrap_or_default())
                    .with_secret_access_key(opt_str(s, "secret_access_key")?.unwrap_or_default())
            };
            if let Some(t) = opt_str(s, "session_token")? {
                b = b.with_token(t);
            }
            b = b
                .with_bucket_name(&bucket)
                .with_region(&region)
                .with_virtual_hosted_style_request(!path_style);
            if let Some(e) = &endpoint {
                let mut u = endpoint_of(e, scheme, allow_http)?;
                if !path_style {
                    // Virtual-hosted style: the bucket is part of the host name.
                    let host = format!("{bucket}.{}", u.host_str().unwrap_or_default());
                    u.set_host(Some(&host)).map_err(|err| {
                        BackupError::invalid(format!(
                            "invalid endpoint \"{}\": {err}",
                            e.escape_debug()
                        ))
                    })?;
                }
                b = b.with_endpoint(u.as_str().trim_end_matches('/'));
            }
            Arc::new(
                b.with_client_options(client.clone())
                    .with_http_connector(connector.clone())
                    .with_retry(retry)
                    .build()
                    .map_err(|e| builder_error(e, &secret_values))?,
            )
        }
        Scheme::Gs => {
            if opt_bool(p, "use_emulator")?.is_some() {
                return Err(
                    BackupError::invalid("use_emulator is an az:// option").with_hint(
                        "For a GCS emulator give \"endpoint\" (and \"credentials\": \"none\").",
                    ),
                );
            }
            let mut b = match creds {
                Creds::Env => object_store::gcp::GoogleCloudStorageBuilder::from_env(),
                Creds::Static => {
                    let key = match s.get("service_account_key") {
                        Some(Value::String(k)) => k.clone(),
                        Some(v @ Value::Object(_)) => v.to_string(),
                        _ => {
                            return Err(BackupError::invalid(
                                "option \"service_account_key\" must be the key's JSON (an object or its text)",
                            ))
                        }
                    };
                    object_store::gcp::GoogleCloudStorageBuilder::new()
                        .with_service_account_key(key)
                }
                Creds::Anonymous => {
                    if given_endpoint.is_none() {
                        return Err(BackupError::invalid(
                            "\"credentials\": \"none\" is for an emulator: give its \"endpoint\"",
                        ));
                    }
                    object_store::gcp::GoogleCloudStorageBuilder::new().with_credentials(Arc::new(
                        object_store::StaticCredentialProvider::new(
                            object_store::gcp::GcpCredential {
                                bearer: String::new(),
                            },
                        ),
                    ))
                }
            };
            if let Some(e) = &given_endpoint {
                let u = endpoint_of(e, scheme, allow_http)?;
                b = b.with_base_url(u.as_str().trim_end_matches('/'));
            }
            Arc::new(
                b.with_bucket_name(&bucket)
                    .with_client_options(client.clone())
                    .with_http_connector(connector.clone())
                    .with_retry(retry)
                    .build()
                    .map_err(|e| builder_error(e, &secret_values))?,
            )
        }
        Scheme::Az => {
            let account = opt_str(p, "account")?
                .or_else(|| use_emulator.then(|| AZURITE_ACCOUNT.to_string()))
                .or_else(|| {
                    (creds == Creds::Env)
                        .then(|| env("AZURE_STORAGE_ACCOUNT_NAME"))
                        .flatten()
                });
            let Some(account) = account else {
                return Err(
                    BackupError::invalid("an az:// storage needs the option \"account\"")
                        .with_hint(
                            "The storage account's name, e.g. {\"account\": \"mybackups\"}.",
                        ),
                );
            };
            if account.is_empty()
                || account.len() > 64
                || !account.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(BackupError::invalid(format!(
                    "invalid storage account \"{}\"",
                    account.escape_debug()
                )));
            }
            let mut b = if creds == Creds::Env {
                object_store::azure::MicrosoftAzureBuilder::from_env()
            } else {
                object_store::azure::MicrosoftAzureBuilder::new()
            };
            b = b.with_account(&account).with_container_name(&bucket);
            let key = opt_str(s, "account_key")?;
            let sas = opt_str(s, "sas_token")?;
            match (key, sas) {
                (Some(k), _) => b = b.with_access_key(k),
                (None, Some(t)) => {
                    b = b.with_config(
                        object_store::azure::AzureConfigKey::SasKey,
                        t.trim_start_matches('?'),
                    )
                }
                (None, None) if use_emulator => b = b.with_access_key(AZURITE_KEY),
                (None, None) => {}
            }
            let endpoint = match (&given_endpoint, use_emulator) {
                (Some(e), _) => Some(e.clone()),
                // Azurite's blob service at its default address; the account in the path.
                (None, true) => Some(format!("http://127.0.0.1:10000/{account}")),
                (None, false) => None,
            };
            if let Some(e) = &endpoint {
                let u = endpoint_of(e, scheme, allow_http)?;
                b = b.with_endpoint(u.as_str().trim_end_matches('/').to_string());
            }
            Arc::new(
                b.with_client_options(client.clone())
                    .with_http_connector(connector.clone())
                    .with_retry(retry)
                    .build()
                    .map_err(|e| builder_error(e, &secret_values))?,
            )
        }
    };
    Ok(Arc::new(CloudStore {
        store,
        url: format!("{}{bucket}/{prefix}", scheme.prefix()),
        prefix,
        part_size,
        retries,
        secrets: Arc::new(secret_values),
    }))
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
            Url::Bucket {
                scheme: Scheme::S3,
                bucket: "my-bucket".into(),
                prefix: "a/b/".into()
            }
        );
        assert_eq!(
            parse_url("s3://my-bucket").unwrap(),
            Url::Bucket {
                scheme: Scheme::S3,
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

    /// A one-answer-per-connection HTTP server on loopback: each request gets `answer`.
    fn fake_server(answer: &'static str) -> u16 {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { break };
                let mut buf = [0u8; 8192];
                let _ = c.read(&mut buf);
                let _ = c.write_all(answer.as_bytes());
            }
        });
        port
    }

    fn s3_store(port: u16) -> Arc<dyn Store> {
        build(
            "s3://bkt/p",
            &json!({"endpoint": format!("http://127.0.0.1:{port}"), "allow_http": true,
                    "retries": 1, "timeout_seconds": 2}),
            &json!({"access_key_id": "AKIDEXAMPLE", "secret_access_key": "SECRETEXAMPLEKEY"}),
        )
        .unwrap()
    }

    #[test]
    fn real_answers_are_classified_and_an_unreachable_server_is_never_missing() {
        use super::super::store::Failure;
        // Nothing listens (bound, then released): unreachable, for a listing and an object.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = s3_store(port);
        assert_eq!(store.check().unwrap_err().failure, Failure::Unreachable);
        let e = store.get("id/manifest.json").err().unwrap();
        assert_eq!(
            (e.failure, e.sqlstate()),
            (Failure::Unreachable, "08001"),
            "{e}"
        );
        assert!(!e.message.contains("SECRETEXAMPLEKEY"), "{e}");
        // A server that accepts and hangs up: broken, never "not found".
        let port = fake_server("");
        let e = s3_store(port).get("id/manifest.json").err().unwrap();
        assert_eq!(e.failure, Failure::Broken, "{e}");
        let nobucket = "HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\nContent-Length: 95\r\nConnection: close\r\n\r\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>\n";
        let store = s3_store(fake_server(nobucket));
        assert_eq!(store.check().unwrap_err().failure, Failure::NoBucket);
        assert_eq!(store.get("a/b").err().unwrap().failure, Failure::NoBucket);
        let nokey = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let e = s3_store(fake_server(nokey)).get("a/b").err().unwrap();
        assert_eq!((e.failure, e.sqlstate()), (Failure::NotFound, "58P01"));
        let badsig = "HTTP/1.1 403 Forbidden\r\nContent-Length: 49\r\nConnection: close\r\n\r\n<Error><Code>SignatureDoesNotMatch</Code></Error>";
        assert_eq!(
            s3_store(fake_server(badsig)).check().unwrap_err().failure,
            Failure::Credentials
        );
        let down =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        assert_eq!(
            s3_store(fake_server(down)).check().unwrap_err().failure,
            Failure::Broken
        );
    }

    #[test]
    fn gs_and_az_urls() {
        assert_eq!(
            parse_url("gs://my_bucket.example/pg/prod/").unwrap(),
            Url::Bucket {
                scheme: Scheme::Gs,
                bucket: "my_bucket.example".into(),
                prefix: "pg/prod/".into()
            }
        );
        assert_eq!(
            parse_url("az://backups").unwrap(),
            Url::Bucket {
                scheme: Scheme::Az,
                bucket: "backups".into(),
                prefix: String::new()
            }
        );
        // Azure containers are lower case, digits and '-' only.
        for bad in [
            "az://Backups/x",
            "az://my_container",
            "az://ab",
            "gs://",
            "gs://b/../x",
            "az://c/a//b",
        ] {
            assert_eq!(parse_url(bad).unwrap_err().sqlstate(), "22023", "{bad}");
        }
    }

    #[test]
    fn gs_and_az_options_are_checked_per_scheme_and_secrets_split_off() {
        let sa = json!({"type": "service_account", "client_email": "x@y.iam.gserviceaccount.com",
                        "private_key_id": "k1", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"});
        let err = |url: &str, o: Value| split_options(url, &o).unwrap_err();
        // An option of another scheme is refused with the list of this scheme's.
        let e = err("gs://bkt", json!({"credentials": "env", "region": "x"}));
        assert_eq!(e.sqlstate(), "22023");
        assert!(
            e.hint().unwrap().contains("service_account_key"),
            "{:?}",
            e.hint()
        );
        let e = err(
            "az://ctr",
            json!({"use_emulator": true, "access_key_id": "x"}),
        );
        assert!(e.hint().unwrap().contains("sas_token"), "{:?}", e.hint());
        assert_eq!(
            err("s3://bkt", json!({"credentials": "env", "account": "a"})).sqlstate(),
            "22023"
        );
        // Credentials are required, or the chain, and never both.
        assert_eq!(err("gs://bkt", json!({})).sqlstate(), "22023");
        assert_eq!(
            err("az://ctr", json!({"account": "acct"})).sqlstate(),
            "22023"
        );
        assert_eq!(
            err(
                "az://ctr",
                json!({"account": "acct", "account_key": "a2V5", "sas_token": "sv=1&sig=2"})
            )
            .sqlstate(),
            "22023"
        );
        assert_eq!(
            err(
                "gs://bkt",
                json!({"credentials": "env", "service_account_key": sa.clone()})
            )
            .sqlstate(),
            "22023"
        );
        // "none" is for gs:// emulators only, with their endpoint.
        assert_eq!(
            err("gs://bkt", json!({"credentials": "none"})).sqlstate(),
            "22023"
        );
        assert_eq!(
            err("az://ctr", json!({"credentials": "none", "account": "a"})).sqlstate(),
            "22023"
        );
        assert!(err(
            "gs://bkt",
            json!({"credentials": "none", "endpoint": "http://127.0.0.1:4443"})
        )
        .hint()
        .unwrap()
        .contains("allow_http"));
        let (public, secret) = split_options(
            "gs://bkt/p",
            &json!({"credentials": "none", "endpoint": "http://127.0.0.1:4443", "allow_http": true}),
        )
        .unwrap();
        assert_eq!(public["endpoint"], "http://127.0.0.1:4443");
        assert_eq!(secret, json!({}));
        // Azure: the account is public, the key and the SAS token are secrets.
        let (public, secret) = split_options(
            "az://ctr/p",
            &json!({"account": "acct", "sas_token": "?sv=2022&sig=SECRET", "part_size_mb": 8}),
        )
        .unwrap();
        assert_eq!(public, json!({"account": "acct", "part_size_mb": 8}));
        assert_eq!(secret, json!({"sas_token": "?sv=2022&sig=SECRET"}));
        let (public, secret) = split_options(
            "az://ctr",
            &json!({"use_emulator": true, "endpoint": "http://127.0.0.1:10000/devstoreaccount1"}),
        )
        .unwrap();
        assert_eq!(public["use_emulator"], true);
        assert_eq!(secret, json!({}));
        assert_eq!(
            err(
                "az://ctr",
                json!({"account": "bad-name!", "account_key": "a2V5"})
            )
            .sqlstate(),
            "22023"
        );
        // A service account key that is not one is refused when added, without its text.
        let e = err("gs://bkt", json!({"service_account_key": "SECRETNOTJSON"}));
        assert_eq!(e.sqlstate(), "22023");
        assert!(!e.to_string().contains("SECRETNOTJSON"), "{e}");
        // An endpoint with a query or a user is refused (a secret would show in the catalog).
        assert_eq!(
            err(
                "az://ctr",
                json!({"use_emulator": true, "endpoint": "http://u:p@127.0.0.1:10000/a"})
            )
            .sqlstate(),
            "22023"
        );
    }
}
