//! The one error type of pg_backup and its mapping to SQLSTATEs.
//!
//! Core code returns `Result<T>`; only the SQL boundary (`raise`) turns an error into an
//! `ereport(ERROR)`, so every failure leaves with a real SQLSTATE and, where it helps, a HINT.

use std::path::{Path, PathBuf};

use pgrx::pg_sys::errcodes::PgSqlErrorCode;

pub type Result<T, E = BackupError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A bad option value or a contradictory combination of options (22023).
    #[error("{message}")]
    InvalidOption {
        message: String,
        hint: Option<String>,
    },
    /// A table, schema, backup or schedule that does not exist (42704).
    #[error("{message}")]
    UnknownObject {
        message: String,
        hint: Option<String>,
    },
    /// A restore target that already exists under `existing => 'fail'` (42P07).
    #[error("{message}")]
    ObjectExists {
        message: String,
        hint: Option<String>,
    },
    /// A destructive action asked for without `confirm => true` (55000).
    #[error("{message}")]
    ConfirmRequired {
        message: String,
        hint: Option<String>,
    },
    /// A checksum mismatch or an archive file that does not parse (XX001).
    #[error("{message}")]
    Corrupt {
        message: String,
        hint: Option<String>,
    },
    /// An archive that is not signed by a trusted key, or whose signature does not match its
    /// manifest (28P01: it failed authentication; see archive::signature).
    #[error("{message}")]
    Untrusted {
        message: String,
        hint: Option<String>,
    },
    /// The caller may not do this (42501).
    #[error("{message}")]
    PermissionDenied {
        message: String,
        hint: Option<String>,
    },
    /// An archive's TOC entry holds a statement its kind never holds, or SQL that does not
    /// parse (2F003, prohibited_sql_statement_attempted): refused before anything changes
    /// (restore/statements.rs).
    #[error("{message}")]
    StatementRefused {
        message: String,
        hint: Option<String>,
    },
    /// Something that writes, asked of a hot standby (25006).
    #[error("{message}")]
    ReadOnly {
        message: String,
        hint: Option<String>,
    },
    /// A required argument is NULL, or a list holds a NULL (22004).
    #[error("{message}")]
    NullArgument {
        message: String,
        hint: Option<String>,
    },
    /// More than the server's configuration allows, e.g. the lock table (53400).
    #[error("{message}")]
    LimitExceeded {
        message: String,
        hint: Option<String>,
    },
    /// A backup a running restore or verify reads, asked to be deleted (55006).
    #[error("{message}")]
    InUse {
        message: String,
        hint: Option<String>,
    },
    /// A file operation failed (53100 when the disk is full, 42501 on EACCES, else 58030).
    #[error("could not {action} \"{}\": {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
        hint: Option<String>,
    },
    /// A storage target or encryption failure, with its own SQLSTATE (see storage::Failure):
    /// 08001 unreachable, 08006 broken connection, 28000 credentials or wrong key, 42501
    /// denied, 42704 missing bucket, 58P01 missing object, 55000 missing key, 58030 other.
    #[error("{message}")]
    Storage {
        message: String,
        hint: Option<String>,
        sqlstate: &'static str,
    },
    /// An error raised in a parallel worker (`jobs => N`), passed on with the worker's own
    /// SQLSTATE, message and hint.
    #[error("{message}")]
    Worker {
        message: String,
        hint: Option<String>,
        sqlstate: &'static str,
    },
    /// A name or text of the database that is not valid UTF-8, which pg_backup reads its
    /// names as (only a database in SQL_ASCII holds such bytes) (22021).
    #[error("{message}")]
    NotUtf8 {
        message: String,
        hint: Option<String>,
    },
    /// The database's pg_backup catalog is at another release than the library (55000): it
    /// needs `ALTER EXTENSION pg_backup UPDATE` (the hint says exactly what to run).
    #[error("{message}")]
    CatalogOutdated { message: String, hint: String },
    /// A query of the system catalogs that describes what a backup holds (src/ddl/collect)
    /// failed: 0A000 when the server's catalogs are not the ones this pg_backup reads (an
    /// undefined column, table or function: a PostgreSQL version it does not know), else the
    /// server's own SQLSTATE (a cancel, a timeout, out of memory).
    #[error("{message}")]
    CatalogRead {
        message: String,
        hint: Option<String>,
        sqlstate: &'static str,
    },
    /// An archive written on a newer PostgreSQL major version than this server's, asked to be
    /// restored here (0A000, feature_not_supported): refused before anything changes
    /// (restore/version.rs); the hint names both versions.
    #[error("{message}")]
    OlderServer { message: String, hint: String },
    /// An SPI call from our own code failed (38000: an error inside the routine).
    #[error("internal query failed: {0}")]
    Spi(#[from] pgrx::spi::Error),
}

impl BackupError {
    pub fn invalid(message: impl Into<String>) -> Self {
        BackupError::InvalidOption {
            message: message.into(),
            hint: None,
        }
    }
    pub fn unknown(message: impl Into<String>) -> Self {
        BackupError::UnknownObject {
            message: message.into(),
            hint: None,
        }
    }
    pub fn exists(message: impl Into<String>) -> Self {
        BackupError::ObjectExists {
            message: message.into(),
            hint: None,
        }
    }
    pub fn confirm(message: impl Into<String>) -> Self {
        BackupError::ConfirmRequired {
            message: message.into(),
            hint: None,
        }
    }
    pub fn corrupt(message: impl Into<String>) -> Self {
        BackupError::Corrupt {
            message: message.into(),
            hint: None,
        }
    }
    pub fn untrusted(message: impl Into<String>) -> Self {
        BackupError::Untrusted {
            message: message.into(),
            hint: None,
        }
    }
    pub fn denied(message: impl Into<String>) -> Self {
        BackupError::PermissionDenied {
            message: message.into(),
            hint: None,
        }
    }
    pub fn refused(message: impl Into<String>) -> Self {
        BackupError::StatementRefused {
            message: message.into(),
            hint: None,
        }
    }
    pub fn not_utf8(message: impl Into<String>) -> Self {
        BackupError::NotUtf8 {
            message: message.into(),
            hint: None,
        }
    }
    pub fn limit(message: impl Into<String>) -> Self {
        BackupError::LimitExceeded {
            message: message.into(),
            hint: None,
        }
    }
    pub fn in_use(message: impl Into<String>) -> Self {
        BackupError::InUse {
            message: message.into(),
            hint: None,
        }
    }
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        BackupError::Io {
            action,
            path: path.to_path_buf(),
            source,
            hint: None,
        }
    }
    /// A NULL where a value is needed: `what` names the argument, `hint` says what to pass.
    pub fn null(what: &str, hint: impl Into<String>) -> Self {
        BackupError::NullArgument {
            message: format!("{what} must not be NULL"),
            hint: Some(hint.into()),
        }
    }

    /// Backup `id` is neither in the catalog nor in the backup directory (42704).
    pub fn unknown_backup(id: &str) -> Self {
        BackupError::unknown(format!("backup \"{id}\" does not exist"))
            .with_hint("See SELECT id, status FROM backup.backups ORDER BY started_at DESC; another database's archive, or one in a storage target, is listed by SELECT * FROM backup.archives() or backup.archives(storage => 'name') and restored with backup.restore(id, storage => 'name').")
    }

    /// `what` (a function that writes) on a hot standby.
    pub fn on_standby(what: &str) -> Self {
        BackupError::ReadOnly {
            message: format!("{what} cannot run on a hot standby"),
            hint: Some("Run it on the primary. On a standby, backup.verify() and backup.restore(..., dry_run => true) work.".into()),
        }
    }

    /// Whether this is a file system that ran out of space (or quota).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, BackupError::Io { source, .. } if is_disk_full(source))
    }

    /// Attach a HINT (ignored by variants that carry none).
    pub fn with_hint(mut self, text: impl Into<String>) -> Self {
        match &mut self {
            BackupError::InvalidOption { hint, .. }
            | BackupError::UnknownObject { hint, .. }
            | BackupError::ObjectExists { hint, .. }
            | BackupError::ConfirmRequired { hint, .. }
            | BackupError::Corrupt { hint, .. }
            | BackupError::Untrusted { hint, .. }
            | BackupError::PermissionDenied { hint, .. }
            | BackupError::StatementRefused { hint, .. }
            | BackupError::NullArgument { hint, .. }
            | BackupError::ReadOnly { hint, .. }
            | BackupError::LimitExceeded { hint, .. }
            | BackupError::InUse { hint, .. }
            | BackupError::Storage { hint, .. }
            | BackupError::Worker { hint, .. }
            | BackupError::CatalogRead { hint, .. }
            | BackupError::NotUtf8 { hint, .. }
            | BackupError::Io { hint, .. } => *hint = Some(text.into()),
            BackupError::CatalogOutdated { hint, .. } | BackupError::OlderServer { hint, .. } => {
                *hint = text.into()
            }
            BackupError::Spi(_) => {}
        }
        self
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            BackupError::InvalidOption { hint, .. }
            | BackupError::UnknownObject { hint, .. }
            | BackupError::ObjectExists { hint, .. }
            | BackupError::ConfirmRequired { hint, .. }
            | BackupError::Corrupt { hint, .. }
            | BackupError::Untrusted { hint, .. }
            | BackupError::PermissionDenied { hint, .. }
            | BackupError::StatementRefused { hint, .. }
            | BackupError::NullArgument { hint, .. }
            | BackupError::ReadOnly { hint, .. }
            | BackupError::LimitExceeded { hint, .. }
            | BackupError::InUse { hint, .. }
            | BackupError::Storage { hint, .. }
            | BackupError::Worker { hint, .. }
            | BackupError::CatalogRead { hint, .. }
            | BackupError::NotUtf8 { hint, .. } => hint.clone(),
            BackupError::CatalogOutdated { hint, .. } | BackupError::OlderServer { hint, .. } => {
                Some(hint.clone())
            }
            BackupError::Io { hint: Some(h), .. } => Some(h.clone()),
            BackupError::Io { source, .. } if is_disk_full(source) => {
                Some("Free space on the disk that holds backup.directory, or point backup.directory at another disk.".into())
            }
            BackupError::Io { .. } | BackupError::Spi(_) => None,
        }
    }

    /// The SQLSTATE, as its five characters (also stored in history rows).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            BackupError::InvalidOption { .. } => "22023",
            BackupError::UnknownObject { .. } => "42704",
            BackupError::ObjectExists { .. } => "42P07",
            BackupError::ConfirmRequired { .. } | BackupError::CatalogOutdated { .. } => "55000",
            BackupError::Corrupt { .. } => "XX001",
            BackupError::Untrusted { .. } => "28P01",
            BackupError::PermissionDenied { .. } => "42501",
            BackupError::StatementRefused { .. } => "2F003",
            BackupError::NullArgument { .. } => "22004",
            BackupError::ReadOnly { .. } => "25006",
            BackupError::LimitExceeded { .. } => "53400",
            BackupError::InUse { .. } => "55006",
            BackupError::NotUtf8 { .. } => "22021",
            BackupError::OlderServer { .. } => "0A000",
            BackupError::Io { source, .. } if is_disk_full(source) => "53100",
            // A storage failure that came through a reader or writer keeps its own class (a
            // cancel is 57014, an unreachable server 08001).
            BackupError::Io { source, .. }
                if crate::storage::store::StoreError::inside(source).is_some() =>
            {
                crate::storage::store::StoreError::inside(source)
                    .map(|e| e.sqlstate())
                    .unwrap_or("58030")
            }
            BackupError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                "42501"
            }
            BackupError::Io { .. } => "58030",
            BackupError::Storage { sqlstate, .. } => sqlstate,
            BackupError::Worker { sqlstate, .. } => sqlstate,
            BackupError::CatalogRead { sqlstate, .. } => sqlstate,
            BackupError::Spi(_) => "38000",
        }
    }

    pub fn code(&self) -> PgSqlErrorCode {
        match self.sqlstate() {
            "22023" => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "42704" => PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "42P07" => PgSqlErrorCode::ERRCODE_DUPLICATE_TABLE,
            "55000" => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "XX001" => PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            "42501" => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "2F003" => PgSqlErrorCode::ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED,
            "53100" => PgSqlErrorCode::ERRCODE_DISK_FULL,
            "22004" => PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "25006" => PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            "53400" => PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            "55006" => PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            "22021" => PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            "58030" => PgSqlErrorCode::ERRCODE_IO_ERROR,
            "0A000" => PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "08001" => PgSqlErrorCode::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            "08006" => PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
            "28000" => PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
            "28P01" => PgSqlErrorCode::ERRCODE_INVALID_PASSWORD,
            "58P01" => PgSqlErrorCode::ERRCODE_UNDEFINED_FILE,
            "57014" => PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
            other => PgSqlErrorCode::from(make_sqlstate(other)),
        }
    }

    /// An error a parallel worker reported: `sqlstate` as the worker had it (five characters;
    /// anything else counts as 38000, an error inside the routine).
    pub fn from_worker(sqlstate: &str, message: String, hint: Option<String>) -> Self {
        BackupError::Worker {
            message,
            hint,
            sqlstate: intern_sqlstate(sqlstate),
        }
    }

    /// A catalog query of the collectors failed with `sqlstate` and `message`, on the server
    /// of `server_version_num` (see `CatalogRead`).
    pub fn catalog_read(sqlstate: &str, message: &str, server_version_num: u32) -> Self {
        let (sqlstate, hint) = match catalog_read_kind(sqlstate) {
            CatalogReadKind::UnknownCatalog => (
                "0A000",
                format!(
                    "pg_backup reads the catalogs of PostgreSQL 15, 17 and 18; this server is {}.{} (server_version_num {server_version_num}). On one of those versions, report this message as a bug.",
                    server_version_num / 10000,
                    server_version_num % 10000 / 100
                ),
            ),
            CatalogReadKind::Passing => (
                intern_sqlstate(sqlstate),
                "The backup was not taken and nothing was written; run it again (the server's own error is above).".to_string(),
            ),
        };
        BackupError::CatalogRead {
            message: format!("pg_backup could not read the system catalogs: {message}"),
            hint: Some(hint),
            sqlstate,
        }
    }

    /// Raise this error as a PostgreSQL ERROR. The one place errors leave Rust.
    pub fn raise(self) -> ! {
        report(
            pgrx::PgLogLevel::ERROR,
            self.code(),
            &self.to_string(),
            self.hint().as_deref(),
            "pg_backup",
        );
        unreachable!("ereport(ERROR) returned")
    }
}

/// What a failed catalog query says about the server (see `BackupError::catalog_read`).
#[derive(Debug, PartialEq, Eq)]
enum CatalogReadKind {
    /// Undefined column, table or function (42703, 42P01, 42883): catalogs of a version this
    /// pg_backup does not know.
    UnknownCatalog,
    /// Anything else: the server's condition, passed on.
    Passing,
}

fn catalog_read_kind(sqlstate: &str) -> CatalogReadKind {
    match sqlstate {
        "42703" | "42P01" | "42883" => CatalogReadKind::UnknownCatalog,
        _ => CatalogReadKind::Passing,
    }
}

/// Report a message (an ERROR does not return) with its SQLSTATE and HINT, and never a DETAIL:
/// nothing of Rust's (a backtrace) reaches the client. PostgreSQL reads a message as text in
/// the database's encoding and converts it for the client, so the UTF-8 text is converted
/// first (a character the database's encoding lacks becomes `\uXXXX`): in a LATIN1 database,
/// `häfen` reads as `häfen` in the client, not as mojibake.
pub fn report(
    level: pgrx::PgLogLevel,
    code: PgSqlErrorCode,
    message: &str,
    hint: Option<&str>,
    funcname: &'static str,
) {
    let report = pgrx::pg_sys::panic::ErrorReport::new(code, server_text(message), funcname);
    let report = match hint {
        Some(h) => report.set_hint(server_text(h)),
        None => report,
    };
    report.report(level);
}

/// `s` in the database's encoding, held in a `String` for pgrx's ErrorReport, which hands
/// PostgreSQL the bytes as they are. Read such text back with [`report_text`].
fn server_text(s: &str) -> String {
    let bytes = crate::encoding::server_bytes_or_escaped(s);
    if bytes == s.as_bytes() {
        return s.to_string();
    }
    // SAFETY: these bytes are only ever copied: pgrx copies them into errmsg()/errhint(), and
    // every reader of a caught error's text in pg_backup goes through `report_text`, which
    // checks them before reading them as UTF-8.
    unsafe { String::from_utf8_unchecked(bytes) }
}

/// The text of a caught error (message or hint) as UTF-8: an error raised by [`report`] holds
/// the database's encoding, converted back here.
pub fn report_text(s: &str) -> String {
    let bytes = s.as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(v) => v.to_string(),
        Err(_) => crate::encoding::try_to_utf8(bytes)
            .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned()),
    }
}

static MAIN_THREAD: std::sync::OnceLock<std::thread::ThreadId> = std::sync::OnceLock::new();

/// The backend's cancel check, set by `_PG_init` (a function pointer, so that code which
/// plain-Rust unit tests also run never references PostgreSQL's symbols).
static INTERRUPT_CHECK: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Called from `_PG_init`, on the backend's thread.
pub fn set_interrupt_check(check: fn()) {
    let _ = INTERRUPT_CHECK.set(check);
}

/// Check for a cancel when on the backend's own thread (the one `_PG_init` ran on); nothing on
/// a helper thread (which never calls PostgreSQL) or outside a backend.
pub fn check_interrupts_on_backend_thread() {
    let on_backend = MAIN_THREAD
        .get()
        .is_some_and(|m| *m == std::thread::current().id());
    if on_backend {
        if let Some(check) = INTERRUPT_CHECK.get() {
            check();
        }
    }
}

/// Replace pgrx's panic hook, which captures a Rust backtrace at every panic for pgrx to put
/// in the DETAIL of the ERROR it raises (when RUST_BACKTRACE or RUST_LIB_BACKTRACE is set in
/// the server's environment): the client gets the message, the SQLSTATE and the HINT only.
/// Panics of helper threads are still printed to the server log (never to a client) by the
/// hook that was there before pgrx's. Called from `_PG_init`, on the backend's thread.
pub fn install_panic_hook() {
    let main = *MAIN_THREAD.get_or_init(|| std::thread::current().id());
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != main {
            previous(info);
        }
    }));
}

/// The five characters of a SQLSTATE, as PostgreSQL's unpack_sql_state writes them (six bits
/// each, PGUNSIXBIT): the one formatter of error codes in pg_backup (history rows, result
/// rows' details, workers' errors).
pub fn sqlstate_of(code: PgSqlErrorCode) -> String {
    let packed = code as isize as u32;
    (0..5)
        .map(|i| ((((packed >> (6 * i)) & 0x3F) as u8) + b'0') as char)
        .collect()
}

/// PostgreSQL's MAKE_SQLSTATE: five characters packed six bits each.
fn make_sqlstate(s: &str) -> i32 {
    s.bytes()
        .take(5)
        .enumerate()
        .map(|(i, c)| ((c as i32 - '0' as i32) & 0x3F) << (6 * i))
        .sum()
}

/// A SQLSTATE as a `&'static str`: each distinct code is leaked once (there are a few hundred).
fn intern_sqlstate(code: &str) -> &'static str {
    static SEEN: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let valid = code.len() == 5
        && code
            .bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase());
    if !valid {
        return "38000";
    }
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = seen.iter().find(|s| **s == code) {
        return s;
    }
    let leaked: &'static str = Box::leak(code.to_string().into_boxed_str());
    seen.push(leaked);
    leaked
}

fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Unwrap a core result at the SQL boundary.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T> {
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.raise(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_catalog_query_that_fails_keeps_a_sqlstate_and_a_hint() {
        use super::BackupError;
        // A column this release does not know: the server's catalogs are not ones it reads.
        let e = BackupError::catalog_read("42703", "column c.colliculocale does not exist", 180001);
        assert_eq!(e.sqlstate(), "0A000");
        assert!(e
            .to_string()
            .contains("column c.colliculocale does not exist"));
        assert!(e
            .hint()
            .unwrap()
            .contains("18.0 (server_version_num 180001)"));
        // A cancel or a timeout stays what it is.
        let e =
            BackupError::catalog_read("57014", "canceling statement due to user request", 150000);
        assert_eq!(e.sqlstate(), "57014");
        assert!(e.hint().is_some());
    }

    use super::*;

    #[test]
    fn sqlstates_are_written_as_postgresql_writes_them() {
        assert_eq!(
            sqlstate_of(PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION),
            "23505"
        );
        assert_eq!(sqlstate_of(PgSqlErrorCode::ERRCODE_QUERY_CANCELED), "57014");
        for s in ["22023", "42P07", "XX001", "2F003", "55006", "0A000"] {
            assert_eq!(sqlstate_of(PgSqlErrorCode::from(make_sqlstate(s))), s);
        }
    }

    #[test]
    fn every_variant_has_its_own_sqlstate() {
        assert_eq!(BackupError::invalid("x").sqlstate(), "22023");
        assert_eq!(BackupError::unknown("x").sqlstate(), "42704");
        assert_eq!(BackupError::exists("x").sqlstate(), "42P07");
        assert_eq!(BackupError::confirm("x").sqlstate(), "55000");
        assert_eq!(BackupError::corrupt("x").sqlstate(), "XX001");
        assert_eq!(BackupError::denied("x").sqlstate(), "42501");
        assert_eq!(BackupError::untrusted("x").sqlstate(), "28P01");
        assert_eq!(
            BackupError::untrusted("x").code(),
            PgSqlErrorCode::ERRCODE_INVALID_PASSWORD
        );
        assert_eq!(BackupError::null("x", "pass one").sqlstate(), "22004");
        assert_eq!(BackupError::on_standby("x").sqlstate(), "25006");
        assert_eq!(BackupError::limit("x").sqlstate(), "53400");
        assert_eq!(BackupError::refused("x").sqlstate(), "2F003");
        assert_eq!(
            BackupError::refused("x").code(),
            PgSqlErrorCode::ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED
        );
        assert_eq!(BackupError::not_utf8("x").sqlstate(), "22021");
        let older = BackupError::OlderServer {
            message: "x".into(),
            hint: "y".into(),
        };
        assert_eq!(older.sqlstate(), "0A000");
        assert_eq!(older.code(), PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED);
        assert_eq!(older.hint().as_deref(), Some("y"));
        assert_eq!(
            BackupError::not_utf8("x").code(),
            PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE
        );
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(
            BackupError::io("write", Path::new("/x"), full).sqlstate(),
            "53100"
        );
        let other = std::io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(
            BackupError::io("write", Path::new("/x"), other).sqlstate(),
            "58030"
        );
    }

    #[test]
    fn worker_errors_keep_their_sqlstate() {
        let e = BackupError::from_worker("22P02", "bad input".into(), Some("fix it".into()));
        assert_eq!(e.sqlstate(), "22P02");
        assert_eq!(
            e.code(),
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION
        );
        assert_eq!(e.hint().as_deref(), Some("fix it"));
        assert_eq!(
            BackupError::from_worker("x", String::new(), None).sqlstate(),
            "38000"
        );
        assert_eq!(
            BackupError::from_worker("57014", String::new(), None).code(),
            PgSqlErrorCode::ERRCODE_QUERY_CANCELED
        );
    }

    #[test]
    fn hints_are_kept() {
        let e = BackupError::invalid("bad").with_hint("do this");
        assert_eq!(e.hint().as_deref(), Some("do this"));
    }
}
