//! A session's identity and settings, handed to the background workers that act for it
//! (create(jobs => N)'s copy workers, restore(atomic => false)'s worker): they connect as the
//! bootstrap superuser, then take the session's current user and security context (inside our
//! SECURITY DEFINER functions: the extension owner) and the settings that decide how values
//! are written and read and how objects are created, so they do exactly what the session would.

use std::ffi::{CStr, CString};

use pgrx::prelude::*;
use serde::{Deserialize, Serialize};

/// How values are printed and parsed (dates, numbers, bytea, money, xml, names of reg*
/// values), how SQL text is read, row security, and where new objects go.
const SETTINGS: &[&str] = &[
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "extra_float_digits",
    "bytea_output",
    "lc_monetary",
    "lc_numeric",
    "xmloption",
    "search_path",
    "quote_all_identifiers",
    "row_security",
    "standard_conforming_strings",
    "default_tablespace",
    "default_table_access_method",
    "default_toast_compression",
    "temp_tablespaces",
    "lock_timeout",
    "synchronous_commit",
    "work_mem",
    "maintenance_work_mem",
    "max_parallel_maintenance_workers",
    // A superuser's explicit acceptance of unsigned archives of earlier releases (the worker
    // checks the archive's signature again; security::signing).
    "backup.allow_unsigned",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub database: u32,
    pub user: u32,
    pub sec_context: i32,
    pub settings: Vec<(String, String)>,
}

/// The calling session, now.
pub fn capture() -> Session {
    let (user, sec_context) = unsafe {
        let mut user = pg_sys::InvalidOid;
        let mut sec = 0;
        pg_sys::GetUserIdAndSecContext(&mut user, &mut sec);
        (user, sec)
    };
    Session {
        database: u32::from(unsafe { pg_sys::MyDatabaseId }),
        user: u32::from(user),
        sec_context,
        settings: SETTINGS
            .iter()
            .map(|name| (name.to_string(), current_setting(name)))
            .collect(),
    }
}

pub fn current_setting(name: &str) -> String {
    let c = CString::new(name).expect("no NUL");
    unsafe {
        let v = pg_sys::GetConfigOptionByName(c.as_ptr(), std::ptr::null_mut(), false);
        CStr::from_ptr(v).to_string_lossy().into_owned()
    }
}

impl Session {
    /// In a background worker: connect to the session's database and take its settings for
    /// the worker's whole life (no transaction may be open).
    pub fn connect(&self) {
        pgrx::bgworkers::BackgroundWorker::connect_worker_to_spi_by_oid(
            Some(pg_sys::Oid::from(self.database)),
            None,
        );
        unsafe {
            pg_sys::StartTransactionCommand();
            for (name, value) in &self.settings {
                if let (Ok(n), Ok(v)) = (CString::new(name.as_str()), CString::new(value.as_str()))
                {
                    pg_sys::SetConfigOption(
                        n.as_ptr(),
                        v.as_ptr(),
                        pg_sys::GucContext::PGC_SUSET,
                        pg_sys::GucSource::PGC_S_SESSION,
                    );
                }
            }
            pg_sys::CommitTransactionCommand();
        }
    }

    /// Act as the session's current user, in its security context (inside a transaction;
    /// the transaction's end does not undo it, the next call does).
    pub fn become_user(&self) {
        unsafe { pg_sys::SetUserIdAndSecContext(pg_sys::Oid::from(self.user), self.sec_context) };
    }
}
