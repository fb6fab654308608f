//! The cluster's signing key and the keys this database trusts (issue 17).
//!
//! The key is a file in the data directory (`pg_backup_signing.key`, 0600), readable only by
//! the server's operating-system user: never under backup.directory, never in an archive.
//! pg_backup creates it on first need (the first backup, or `backup.signing_key()`), race-safe:
//! the key is written to a file of this process's own (O_EXCL), then hard-linked to its name,
//! which fails if another backend got there first (whose key is then taken). SQL only ever
//! shows its public half.
//!
//! The trusted keys are the cluster's own plus the rows of `backup.trusted_keys` (a superuser
//! adds them with `trust_key()` for archives of other servers). `authenticate` is the one check
//! verify(), restore() (and its workers) and rescan() make of a manifest's bytes before they
//! use them.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgLogLevel;

use crate::archive::signature::{self, PublicKey, SecretKey, TrustedKey, Verdict, SIGNATURE_FILE};
use crate::error::{BackupError, Result};
use crate::storage::archive_files::ArchiveSource;

/// The key file, directly in the data directory.
pub const KEY_FILE: &str = "pg_backup_signing.key";
/// How the cluster's own key is named among the trusted keys.
pub const OWN_KEY: &str = "this server";

pub fn key_path() -> PathBuf {
    // SAFETY: DataDir is set before any backend or worker runs our code.
    let data_dir = unsafe { std::ffi::CStr::from_ptr(pg_sys::DataDir) };
    PathBuf::from(data_dir.to_string_lossy().into_owned()).join(KEY_FILE)
}

/// The key in `path`, if the file exists. Opened without following a link, and only as a
/// regular file that nobody but its owner can read.
fn read_key(path: &std::path::Path) -> Result<Option<SecretKey>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BackupError::io("open", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| BackupError::io("stat", path, e))?;
    if !meta.is_file() || meta.mode() & 0o077 != 0 {
        return Err(BackupError::denied(format!(
            "the signing key {} is not a regular file readable by its owner only",
            path.display()
        ))
        .with_hint(format!(
            "Make it a plain file of the server's user with mode 0600 (chmod 600 {}).",
            path.display()
        )));
    }
    let mut text = String::new();
    file.take(4096)
        .read_to_string(&mut text)
        .map_err(|e| BackupError::io("read", path, e))?;
    SecretKey::parse_file(&text)
        .map(Some)
        .map_err(|e| e.with_hint(format!("{} is damaged. Restore it from where you keep it (archives signed with it verify only with it), or remove it: a new key is then made and earlier archives need backup.trust_key() with the old public key.", path.display())))
}

/// The cluster's key, created on first need.
pub fn load_or_create() -> Result<SecretKey> {
    let path = key_path();
    if let Some(k) = read_key(&path)? {
        return Ok(k);
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| BackupError::io("generate", &path, std::io::Error::other(e.to_string())))?;
    let key = SecretKey::from_seed(seed);
    seed.fill(0);
    // SAFETY: reading this process's pid.
    let pid = unsafe { pg_sys::MyProcPid };
    let tmp = path.with_file_name(format!("{KEY_FILE}.tmp-{pid}"));
    // A leftover of a process that had this pid and died half-way.
    let _ = fs::remove_file(&tmp);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(key.to_file_text().as_bytes())?;
            f.sync_all()
        })
        // link(2) never replaces an existing name: whoever links first made the key.
        .and_then(|_| match fs::hard_link(&tmp, &path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        });
    let _ = fs::remove_file(&tmp);
    written.map_err(|e| BackupError::io("create", &path, e))?;
    if let Some(dir) = path.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    read_key(&path)?.ok_or_else(|| {
        BackupError::io(
            "read",
            &path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })
}

/// The cluster's public key, if it has one yet.
pub fn own_public() -> Result<Option<PublicKey>> {
    Ok(read_key(&key_path())?.map(|k| k.public()))
}

/// The keys archives may be signed with here: the cluster's own and `backup.trusted_keys`.
/// Read-only (works on a hot standby).
pub fn trusted() -> Result<Vec<TrustedKey>> {
    let mut keys: Vec<TrustedKey> = own_public()?
        .map(|key| TrustedKey {
            name: OWN_KEY.into(),
            key,
        })
        .into_iter()
        .collect();
    let rows = crate::query::one::<pgrx::JsonB>(
        "SELECT coalesce(jsonb_agg(jsonb_build_array(name, public_key) ORDER BY name), '[]')
         FROM backup.trusted_keys",
        &[],
    )?;
    let rows = rows.map(|j| j.0).unwrap_or_default();
    for row in rows.as_array().into_iter().flatten() {
        let (Some(name), Some(text)) = (row[0].as_str(), row[1].as_str()) else {
            continue;
        };
        // trust_key() checked it; a row edited since is left out.
        if let Ok(key) = PublicKey::parse(text) {
            keys.push(TrustedKey {
                name: name.to_string(),
                key,
            });
        }
    }
    Ok(keys)
}

/// How an archive was accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum Authenticity {
    /// Signed by a trusted key.
    Signed { name: String, key_id: String },
    /// An unsigned archive of an earlier release, accepted by a superuser with
    /// `backup.allow_unsigned`.
    UnsignedAccepted { version: String },
}

impl Authenticity {
    /// For verify()'s `manifest.sig` row.
    pub fn describe(&self) -> String {
        match self {
            Authenticity::Signed { name, key_id } => {
                format!("signed by key {key_id} ({name})")
            }
            Authenticity::UnsignedAccepted { version } => format!(
                "unsigned archive of pg_backup {version}, accepted: backup.allow_unsigned is on"
            ),
        }
    }
}

/// Whether the archive whose manifest.json is `raw` (the bytes about to be used) is signed by
/// a trusted key. `caller` is the role the call acts for: only a superuser's
/// `backup.allow_unsigned` accepts an unsigned archive of a release before 0.3.0 (logged:
/// a WARNING to the client, a LOG line to the server log; `quiet` for a restore's job workers,
/// whose leader said it). A signature that is present but does not verify is never accepted.
pub fn authenticate(
    src: &ArchiveSource,
    raw: &[u8],
    caller: pg_sys::Oid,
    quiet: bool,
) -> Result<Authenticity> {
    // A signature is a few lines: more than 4 kB of it is no signature (and is not read).
    let sig = match src.open(SIGNATURE_FILE) {
        Ok(r) => {
            let mut bytes = Vec::new();
            r.take(4096)
                .read_to_end(&mut bytes)
                .map_err(|e| src.error("read", SIGNATURE_FILE, e))?;
            Some(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(src.error("read", SIGNATURE_FILE, e)),
    };
    let id = &src.id;
    let trusted = trusted()?;
    match signature::check(raw, sig.as_deref(), &trusted) {
        Verdict::Trusted { name, key_id } => Ok(Authenticity::Signed { name, key_id }),
        Verdict::Unsigned => {
            let version = claimed_version(raw);
            let earlier = signature::predates_signatures(&version);
            // SAFETY: a catalog lookup of a role's superuser flag.
            let superuser = unsafe { pg_sys::superuser_arg(caller) };
            if earlier && superuser && crate::guc::allow_unsigned() {
                if !quiet {
                    let text = format!(
                        "pg_backup: backup {id} is an unsigned archive of pg_backup {version}; accepted because backup.allow_unsigned is on"
                    );
                    pgrx::warning!("{text}");
                    ErrorReport::new(
                        pgrx::PgSqlErrorCode::ERRCODE_WARNING,
                        format!("{text} (role {})", role_name(caller)),
                        "pg_backup",
                    )
                    .report(PgLogLevel::LOG_SERVER_ONLY);
                }
                return Ok(Authenticity::UnsignedAccepted { version });
            }
            let hint = if !earlier {
                format!("pg_backup 0.3.0 and later sign every archive, and this one says it was written by pg_backup {version}: its manifest.sig was removed, or the archive was forged. Restore another backup.")
            } else if superuser {
                "Archives of pg_backup 0.1.0 and 0.2.0 carry no signature. If you trust where this one comes from, SET backup.allow_unsigned = on for this session and run the command again (it is logged).".to_string()
            } else {
                "Archives of pg_backup 0.1.0 and 0.2.0 carry no signature: only a superuser can accept one (backup.allow_unsigned).".to_string()
            };
            Err(BackupError::untrusted(format!(
                "backup {id} is not signed ({} has no {SIGNATURE_FILE})",
                src.describe()
            ))
            .with_hint(hint))
        }
        Verdict::Malformed(why) => Err(BackupError::untrusted(format!("backup {id}: {why}"))
            .with_hint("The signature of the archive is damaged or forged; nothing was done. Restore another backup.")),
        Verdict::UnknownKey(key_id) => Err(BackupError::untrusted(format!(
            "backup {id} is signed by key {key_id}, which this database does not trust"
        ))
        .with_hint(format!(
            "An archive of another server: on that server run SELECT * FROM backup.signing_key(); here, as a superuser, SELECT backup.trust_key('name', '<its public_key>') once you have checked that its key_id is {key_id}. See SELECT * FROM backup.trusted_keys;"
        ))),
        Verdict::Mismatch { name, key_id } => Err(BackupError::untrusted(format!(
            "backup {id}: manifest.json does not match its signature by key {key_id} ({name}); it was changed after it was signed"
        ))
        .with_hint("The archive was tampered with (or damaged); nothing was done. Restore another backup.")),
    }
}

/// The release an archive says wrote it (unverified: used only to refuse overriding the
/// signature check of an archive claiming 0.3.0 or later).
fn claimed_version(raw: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| v["pg_backup_version"].as_str().map(str::to_string))
        .unwrap_or_else(|| "(unknown)".into())
}

fn role_name(oid: pg_sys::Oid) -> String {
    // SAFETY: a syscache lookup; NULL when the role is gone (missing_ok).
    unsafe {
        let name = pg_sys::GetUserNameFromId(oid, true);
        if name.is_null() {
            "unknown".into()
        } else {
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned()
        }
    }
}

/// trust_key() / untrust_key(): superusers only (the calling role, not the function's owner).
fn require_superuser(caller: pg_sys::Oid, what: &str) -> Result<()> {
    // SAFETY: a catalog lookup of a role's superuser flag.
    if unsafe { pg_sys::superuser_arg(caller) } {
        return Ok(());
    }
    Err(BackupError::denied(format!("only a superuser may {what}"))
        .with_hint("Archives signed by a trusted key are restored as if this server wrote them: ask a superuser."))
}

/// Trust `public_key` (of another server) under `name`; returns its key id.
pub fn trust_key(caller: pg_sys::Oid, name: &str, public_key: &str) -> Result<String> {
    require_superuser(caller, "trust a signing key")?;
    if !valid_name(name) {
        return Err(BackupError::invalid(format!(
            "\"{}\" is not a valid name for a trusted key",
            name.escape_default()
        ))
        .with_hint("Use letters, digits, '.', '_' and '-' (up to 64), starting with a letter or digit, e.g. 'old-prod'."));
    }
    let key = PublicKey::parse(public_key)?;
    let key_id = key.key_id();
    let existing = crate::query::one::<String>(
        "SELECT (SELECT name FROM backup.trusted_keys WHERE key_id = $1 OR name = $2 LIMIT 1)",
        &[key_id.clone().into(), name.into()],
    )?;
    if let Some(other) = existing {
        return Err(BackupError::exists(format!(
            "a trusted key named \"{other}\" already has this name or key id {key_id}"
        ))
        .with_hint("Remove it first with backup.untrust_key(name), or see SELECT * FROM backup.trusted_keys;"));
    }
    Spi::run_with_args(
        "INSERT INTO backup.trusted_keys (name, public_key, key_id, added_by)
         VALUES ($1, $2, $3, $4)",
        &[
            name.into(),
            key.to_text().into(),
            key_id.clone().into(),
            role_name(caller).into(),
        ],
    )?;
    Ok(key_id)
}

/// Stop trusting the key named `name`. The cluster's own key stays trusted whatever happens.
pub fn untrust_key(caller: pg_sys::Oid, name: &str) -> Result<bool> {
    require_superuser(caller, "remove a trusted signing key")?;
    let removed = Spi::get_one_with_args::<i64>(
        "WITH d AS (DELETE FROM backup.trusted_keys WHERE name = $1 RETURNING 1)
         SELECT count(*) FROM d",
        &[name.into()],
    )?
    .unwrap_or(0);
    if removed == 0 {
        return Err(BackupError::unknown(format!(
            "no trusted key is named \"{}\"",
            name.escape_default()
        ))
        .with_hint("See SELECT name, key_id FROM backup.trusted_keys;"));
    }
    Ok(true)
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}
