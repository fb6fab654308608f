//! A backup that is being read cannot be deleted (issue 17). restore() and verify() hold a
//! shared lock on the backup's id for their whole run; delete() (and so prune() and a
//! schedule's retention) asks for it exclusively without waiting and, when a reader holds it,
//! fails with 55006 (object in use) before anything changes; prune() and retention skip such a
//! backup and take it at their next run.
//!
//! The lock is a heavyweight lock of PostgreSQL's lock manager in a lock space of pg_backup's
//! own: an advisory-type tag with database 0 (backup.directory is shared by every database of
//! the cluster, and a restore in one database may read a backup of another) and a fourth field
//! that PostgreSQL's pg_advisory_* functions never use (they use 1 and 2), so no user lock can
//! collide with it. `pg_locks` shows it as `locktype = 'advisory'`, `database = 0`,
//! `objsubid = 25186`, `classid`/`objid` the first 8 bytes of SHA-256(backup id).
//!
//! A reader's lock is held until its transaction ends (the caller's transaction: for
//! `restore(atomic => false)` and `restore(jobs => N)` the caller waits in it for its worker,
//! whose job workers read under that lock); the restore worker itself also holds it, at
//! session level, until it exits. Lock waits are PostgreSQL's own: cancellable, and part of
//! its deadlock detection.

use pgrx::pg_sys;
use sha2::{Digest, Sha256};

use crate::error::{BackupError, Result};

/// The fourth field of pg_backup's lock tags ("bb": backup being read).
pub const LOCK_SPACE: u16 = 0x6262;

fn tag(id: &str) -> pg_sys::LOCKTAG {
    let h = Sha256::digest(id.as_bytes());
    pg_sys::LOCKTAG {
        locktag_field1: 0,
        locktag_field2: u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
        locktag_field3: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        locktag_field4: LOCK_SPACE,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

/// Whose lock: until the transaction ends, or until the process exits (a worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Transaction,
    Session,
}

/// Hold backup `id` for reading (waits while a delete of it is under way).
pub fn read(id: &str, holder: Holder) {
    let t = tag(id);
    // SAFETY: LockAcquire with a tag of the user lock method; waits are cancellable and an
    // error inside is raised as a PostgreSQL ERROR (we are in a pg_guard'ed call).
    unsafe {
        pg_sys::LockAcquire(
            &t,
            pg_sys::ShareLock as pg_sys::LOCKMODE,
            holder == Holder::Session,
            false,
        );
    }
}

/// Let go of a transaction-level hold taken by `read` before the transaction ends (verify()
/// of every backup: one at a time, not thousands of locks at once). After an error the
/// transaction's abort releases it instead.
pub fn release_read(id: &str) {
    let t = tag(id);
    // SAFETY: LockRelease of a lock this backend took with the same tag and mode.
    unsafe {
        pg_sys::LockRelease(&t, pg_sys::ShareLock as pg_sys::LOCKMODE, false);
    }
}

/// Hold backup `id` for deleting it, until the transaction ends; 55006 at once if a restore
/// or verify is reading it.
pub fn delete(id: &str) -> Result<()> {
    let t = tag(id);
    // SAFETY: as in `read`; dontWait: never queue behind a long restore.
    let got =
        unsafe { pg_sys::LockAcquire(&t, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false, true) };
    if got == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
        return Err(BackupError::in_use(format!(
            "backup \"{id}\" is being read by a restore or verify"
        ))
        .with_hint(
            "Nothing was deleted. Try again when it has ended (SELECT * FROM backup.progress shows what runs); prune() and schedule retention skip it and take it at their next run.",
        ));
    }
    Ok(())
}
