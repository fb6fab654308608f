//! A session's identity and settings, handed to the background workers that act for it
//! (create(jobs => N)'s copy workers, restore(atomic => false)'s worker and its job workers),
//! so that they do exactly what the session would, as PostgreSQL's own parallel workers do
//! (`SerializeGUCState` / `SetSessionAuthorization` / `SetCurrentRoleId` in parallel.c):
//!
//! - every setting a session can change (context `user` or `superuser`, custom `app.*`
//!   settings included) takes the session's value, whatever the worker's role and database
//!   settings say: `session_replication_role` decides whether triggers, rules and foreign
//!   keys fire in a worker exactly as in the session, and user code reading
//!   `current_setting(...)` reads the session's values;
//! - `session_user` is the session's, and `is_superuser` says what it says in the session; the
//!   current user and security context (inside our functions: the extension owner) are taken
//!   at every transaction (`become_user`).
//!
//! The worker connects as the bootstrap superuser (PostgreSQL 15 lets a background worker
//! connect only as a role that may log in, within its connection limit) and then takes the
//! session's identity the way `SET SESSION AUTHORIZATION` does.

use std::ffi::{CStr, CString};

use pgrx::prelude::*;
use serde::{Deserialize, Serialize};

/// Settings a worker never takes from the session: its identity travels on its own
/// (`session_authorization`, `role`); the characteristics of the worker's transactions are
/// pg_backup's to choose (create's workers read in REPEATABLE READ under the session's
/// snapshot, restore's commit as they go, and record history even where the session is
/// read-only); a worker has no client.
const NOT_CARRIED: &[&str] = &[
    "session_authorization",
    "role",
    "transaction_isolation",
    "transaction_read_only",
    "transaction_deferrable",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "default_transaction_deferrable",
    "client_encoding",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub database: u32,
    /// The current user and security context (for `become_user`).
    pub user: u32,
    pub sec_context: i32,
    /// `session_user` and whether it is a superuser.
    #[serde(default)]
    pub session_user: u32,
    #[serde(default)]
    pub session_user_is_superuser: bool,
    /// The role of `SET ROLE` (0: none) and `is_superuser` as the session shows it.
    #[serde(default)]
    pub role: u32,
    #[serde(default)]
    pub is_superuser: bool,
    /// Name, value, and whether the worker sets it as a superuser may (`PGC_SUSET`): a
    /// setting of context `superuser`, or any when the session's role is a superuser. The
    /// others are set as any user may (`PGC_USERSET`), as the session set them.
    pub settings: Vec<(String, String, bool)>,
}

/// The calling session, now.
pub fn capture() -> Session {
    // SAFETY: reads the backend-local user id and security context into valid locals, on
    // the backend's thread (the session that calls create() or restore()).
    let (user, sec_context) = unsafe {
        let mut user = pg_sys::InvalidOid;
        let mut sec = 0;
        pg_sys::GetUserIdAndSecContext(&mut user, &mut sec);
        (user, sec)
    };
    Session {
        // SAFETY: a backend-local global set when the session connected, read on the
        // backend's thread (as the three below).
        database: u32::from(unsafe { pg_sys::MyDatabaseId }),
        user: u32::from(user),
        sec_context,
        // SAFETY: as above.
        session_user: u32::from(unsafe { pg_sys::GetSessionUserId() }),
        // SAFETY: as above.
        session_user_is_superuser: unsafe { pg_sys::GetSessionUserIsSuperuser() },
        // SAFETY: as above.
        role: u32::from(unsafe { pg_sys::GetCurrentRoleId() }),
        is_superuser: current_setting("is_superuser") == "on",
        settings: settable(current_setting("is_superuser") == "on"),
    }
}

/// Every setting a session can change, with its current value (as `pg_settings.setting`
/// shows it, in the setting's base unit).
fn settable(superuser: bool) -> Vec<(String, String, bool)> {
    crate::server_api::guc_settings()
        .into_iter()
        .filter_map(|(name, setting, context)| {
            let suset = superuser || context == "superuser";
            carried(&name, context).then_some((name, setting, suset))
        })
        .collect()
}

/// Whether a worker takes setting `name` (of GUC context `context`) from the session.
fn carried(name: &str, context: &str) -> bool {
    matches!(context, "user" | "superuser")
        && !NOT_CARRIED.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The timeouts pg_dump turns off in the session it opens (`setup_connection`) and pg_restore
/// at the top of every script, so that a server, database or role default
/// (`ALTER DATABASE ... SET lock_timeout`, a `transaction_timeout` in postgresql.conf) never
/// ends a long backup or restore half-way: `statement_timeout`, `lock_timeout`,
/// `idle_in_transaction_session_timeout`, and from PostgreSQL 17 on `transaction_timeout`
/// (which ends the whole session, FATAL, in a background worker too). For server version
/// `server_version_num`.
pub fn dump_session_timeouts(server_version_num: u32) -> &'static [&'static CStr] {
    const BEFORE_17: &[&CStr] = &[
        c"statement_timeout",
        c"lock_timeout",
        c"idle_in_transaction_session_timeout",
    ];
    const FROM_17: &[&CStr] = &[
        c"statement_timeout",
        c"lock_timeout",
        c"idle_in_transaction_session_timeout",
        c"transaction_timeout",
    ];
    if server_version_num >= 170000 {
        FROM_17
    } else {
        BEFORE_17
    }
}

/// In a session pg_backup opens itself (the scheduler, a scheduled run, the sweeper, the
/// history writer), right after it connected and outside any transaction: the timeouts
/// pg_dump turns off, off ([`dump_session_timeouts`]). The workers that act for a calling
/// session (`Session::connect`) take that session's values instead: there the caller's
/// timeouts bound the call, as they bound the session's own transaction.
pub fn disable_dump_timeouts() {
    for name in dump_session_timeouts(server_version_num()) {
        // SAFETY: static NUL-terminated names and value; called in a connected background
        // worker on its only thread; a superuser-context override of these user-settable
        // settings to 0 (a valid value of each) cannot fail.
        unsafe {
            pg_sys::SetConfigOption(
                name.as_ptr(),
                c"0".as_ptr(),
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucSource::PGC_S_OVERRIDE,
            );
        }
    }
}

/// This server's `server_version_num` (e.g. 180006).
pub fn server_version_num() -> u32 {
    current_setting("server_version_num").parse().unwrap_or(0)
}

/// Whether this server has a setting `name` (a core one, or a loaded module's).
pub fn setting_exists(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is NUL-terminated and outlives the call; with missing_ok = true an unknown
    // name returns NULL (no ERROR), and restrict_privileged = false checks no privilege; the
    // returned value is not read.
    !unsafe { pg_sys::GetConfigOption(c.as_ptr(), true, false) }.is_null()
}

pub fn current_setting(name: &str) -> String {
    let c = CString::new(name).expect("no NUL");
    // SAFETY: `c` is NUL-terminated and outlives the call; with missing_ok = false an unknown
    // name raises an ERROR instead of returning NULL, so `v` is a NUL-terminated string
    // (GUC's own or palloc'd), copied before anything else runs.
    unsafe {
        let v = pg_sys::GetConfigOptionByName(c.as_ptr(), std::ptr::null_mut(), false);
        CStr::from_ptr(v).to_string_lossy().into_owned()
    }
}

impl Session {
    /// In a background worker: connect to the session's database, take its settings and its
    /// session user for the worker's whole life (no transaction may be open).
    pub fn connect(&self) {
        pgrx::bgworkers::BackgroundWorker::connect_worker_to_spi_by_oid(
            Some(pg_sys::Oid::from(self.database)),
            None,
        );
        // SAFETY: in a background worker just connected, on its only thread with no
        // transaction open (as `connect`'s contract says): the transaction is started and
        // committed here around the settings; every name and value is a NUL-terminated
        // CString that outlives its call; a value the worker cannot take is a WARNING
        // (elevel), never an ERROR that would leave the transaction open.
        unsafe {
            pg_sys::StartTransactionCommand();
            // In the session's role's name (GRANT SET ON PARAMETER is checked for it).
            let srole = self.setter();
            for (name, value, suset) in &self.settings {
                if let (Ok(n), Ok(v)) = (CString::new(name.as_str()), CString::new(value.as_str()))
                {
                    // A value this worker cannot take (a tablespace dropped since) is a
                    // WARNING in the server log, as in a parallel worker; never the end.
                    // Set as the session could, not as the worker's bootstrap superuser: a
                    // custom setting of a library the session had not loaded (a placeholder,
                    // context `user` there: `plpgsql.variable_conflict` set before any
                    // PL/pgSQL ran) is refused when the library loads here if it is
                    // superuser-only and the session's role is not a superuser (nor granted
                    // SET on it), as in the session.
                    let context = if *suset {
                        pg_sys::GucContext::PGC_SUSET
                    } else {
                        pg_sys::GucContext::PGC_USERSET
                    };
                    pg_sys::set_config_option_ext(
                        n.as_ptr(),
                        v.as_ptr(),
                        context,
                        pg_sys::GucSource::PGC_S_SESSION,
                        srole,
                        pg_sys::GucAction::GUC_ACTION_SET,
                        true,
                        pg_sys::WARNING as i32,
                        false,
                    );
                }
            }
            if self.session_user != 0 {
                // SAFETY: the worker is authenticated as the bootstrap superuser, so PostgreSQL
                // allows it (as SET SESSION AUTHORIZATION would); no security-restricted
                // operation is active yet. SetCurrentRoleId(InvalidOid) means "no SET ROLE".
                pg_sys::SetSessionAuthorization(
                    pg_sys::Oid::from(self.session_user),
                    self.session_user_is_superuser,
                );
                pg_sys::SetCurrentRoleId(pg_sys::Oid::from(self.role), self.is_superuser);
            }
            pg_sys::CommitTransactionCommand();
        }
    }

    /// The role the session's settings are set in the name of: its `SET ROLE` role, else
    /// its session user (the bootstrap superuser when neither is known).
    fn setter(&self) -> pg_sys::Oid {
        match (self.role, self.session_user) {
            (0, 0) => pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
            (0, s) => pg_sys::Oid::from(s),
            (r, _) => pg_sys::Oid::from(r),
        }
    }

    /// Act as the session's current user, in its security context (inside a transaction;
    /// the transaction's end does not undo it, the next call does).
    pub fn become_user(&self) {
        // SAFETY: the user id and security context were captured from the calling session
        // (a role that exists), and this runs on the worker's thread inside a transaction.
        unsafe { pg_sys::SetUserIdAndSecContext(pg_sys::Oid::from(self.user), self.sec_context) };
    }
}

#[cfg(test)]
mod tests {
    use super::{carried, dump_session_timeouts};

    #[test]
    fn the_timeouts_pg_dump_turns_off_include_transaction_timeout_from_17() {
        let names = |v| -> Vec<&str> {
            dump_session_timeouts(v)
                .iter()
                .map(|c| c.to_str().unwrap())
                .collect()
        };
        let before = [
            "statement_timeout",
            "lock_timeout",
            "idle_in_transaction_session_timeout",
        ];
        assert_eq!(names(150018), before);
        assert_eq!(names(160009), before);
        assert_eq!(
            names(170000),
            [&before[..], &["transaction_timeout"]].concat()
        );
        assert_eq!(names(180006), names(170000));
    }

    #[test]
    fn identity_and_transaction_settings_are_not_carried() {
        assert!(carried("array_nulls", "user"));
        assert!(carried("session_replication_role", "superuser"));
        assert!(carried("app.tenant", "user"));
        assert!(!carried("role", "user"));
        assert!(!carried("session_authorization", "user"));
        assert!(!carried("transaction_read_only", "user"));
        assert!(!carried("default_transaction_read_only", "user"));
        assert!(!carried("shared_buffers", "postmaster"));
        assert!(!carried("max_files_per_process", "postmaster"));
        assert!(!carried("log_connections", "superuser-backend"));
    }
}
