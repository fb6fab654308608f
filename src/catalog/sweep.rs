//! Settling the runs whose process died (kill -9, a crash, an immediate shutdown, a
//! termination that came too late for the exit callback): a backup whose archive reached its
//! final name is complete and recorded as completed; any other is failed and its partial folder
//! removed; a restore is failed. Run by the scheduler for every database when it starts (so
//! nothing is left `running` after a restart) and by every pg_backup call in its database.

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;

use super::history::{self, Settled};
use super::runs::{self, Kind};
use crate::archive::id;
use crate::archive::manifest::{self, Manifest, MANIFEST_FILE};
use crate::archive::writer::{ArchiveWriter, TMP_PREFIX};
use crate::error::Result;
use crate::guc;

/// pg_backup is installed here, with this library's catalog (an older one is left alone until
/// ALTER EXTENSION pg_backup UPDATE).
fn installed() -> Result<bool> {
    Ok(super::version::installed()?.as_deref() == Some(super::version::LIBRARY))
}

/// Settle the dead runs of the current database.
pub fn sweep() -> Result<()> {
    if super::autonomous::in_recovery() || !installed()? {
        return Ok(());
    }
    let backups: Vec<(String, Option<i32>)> = Spi::connect(|c| {
        c.select(
            "SELECT id, pid FROM backup.backups WHERE status = 'running'",
            None,
            &[],
        )?
        .map(|r| Ok((r.get::<String>(1)?.unwrap_or_default(), r.get::<i32>(2)?)))
        .collect::<std::result::Result<Vec<_>, pgrx::spi::Error>>()
    })?;
    let base = guc::directory();
    for (id, pid) in backups {
        if runs::alive(Kind::Backup, &id, pid) || id::validate(&id).is_err() {
            continue;
        }
        settle_backup(&base, &id, pid);
    }
    let restores: Vec<(i64, Option<i32>)> = Spi::connect(|c| {
        c.select(
            "SELECT id, pid FROM backup.restores WHERE status = 'running'",
            None,
            &[],
        )?
        .map(|r| Ok((r.get::<i64>(1)?.unwrap_or_default(), r.get::<i32>(2)?)))
        .collect::<std::result::Result<Vec<_>, pgrx::spi::Error>>()
    })?;
    for (id, pid) in restores {
        if !runs::alive(Kind::Restore, "", pid) {
            history::fail_dead_restore(id, pid);
        }
    }
    // Drills whose worker is gone (their scratch databases: `drop_dead_drills_databases`).
    super::drills::fail_dead()?;
    Ok(())
}

/// In a background worker of this database, outside any transaction: drop the scratch
/// databases that dead drills left behind (each in a transaction of its own, as DROP
/// DATABASE needs).
pub fn drop_dead_drills_databases() {
    let names = BackgroundWorker::transaction(|| {
        crate::subtransaction::run(|| {
            if installed().unwrap_or(false) {
                crate::drill::database::leftovers().unwrap_or_default()
            } else {
                Vec::new()
            }
        })
        .unwrap_or_default()
    });
    for name in names {
        crate::drill::worker::own_transaction(|| {
            crate::drill::database::drop(&name);
            Ok(())
        })
        .unwrap_or_else(|e| {
            pgrx::log!("pg_backup sweeper: could not drop the drill database \"{name}\": {e}")
        });
    }
}

fn settle_backup(base: &std::path::Path, id: &str, pid: Option<i32>) {
    let dir = base.join(id);
    // Never through a link (issue 17).
    let manifest = crate::archive::open::open_file(&dir, MANIFEST_FILE)
        .and_then(|mut f| {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut b).map(|_| b)
        })
        .ok()
        .and_then(|b| Manifest::from_json(&b).ok().map(|m| (m, b)));
    let settled = match manifest {
        Some((m, json)) => Settled {
            id: id.to_string(),
            pid,
            status: "completed",
            table_count: Some(m.file_units() as i64),
            row_count: Some(m.total_rows() as i64),
            bytes: Some(dir_size(&dir) as i64),
            manifest_sha256: Some(manifest::sha256_hex(&json)),
            error: None,
        },
        None => {
            ArchiveWriter::abandon(&base.join(format!("{TMP_PREFIX}{id}")));
            Settled {
                id: id.to_string(),
                pid,
                status: "failed",
                table_count: None,
                row_count: None,
                bytes: None,
                manifest_sha256: None,
                error: Some(
                    "the process taking the backup exited before it finished (terminated or crashed)"
                        .into(),
                ),
            }
        }
    };
    history::settle(&settled);
}

/// Sweep at the start of a pg_backup call: a failure here must not fail the call.
pub fn on_call() {
    if let Err(e) = sweep() {
        pgrx::warning!("pg_backup: could not settle dead runs: {e}");
    }
}

pub fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// From the scheduler when it starts: one short-lived worker per database that accepts
/// connections sweeps it (a worker connects to one database only). Sequential, so a server
/// with many databases does not use many worker slots at once.
pub fn sweep_every_database() {
    let databases: Vec<pg_sys::Oid> = BackgroundWorker::transaction(|| {
        Spi::connect(|c| {
            c.select(
                "SELECT oid FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate ORDER BY oid",
                None,
                &[],
            )?
            .map(|r| Ok(r.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid)))
            .collect::<std::result::Result<Vec<_>, pgrx::spi::Error>>()
        })
        .unwrap_or_default()
    });
    for db in databases {
        let started = BackgroundWorkerBuilder::new("pg_backup sweeper")
            .set_type("pg_backup sweeper")
            .set_library("pg_backup")
            .set_function("pg_backup_sweeper_main")
            .set_extra(&u32::from(db).to_string())
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(None)
            .enable_spi_access()
            // SAFETY: a process-local global set at process start.
            .set_notify_pid(unsafe { pg_sys::MyProcPid })
            .load_dynamic();
        match started {
            Ok(w) => {
                let _ = w.wait_for_shutdown();
            }
            Err(_) => {
                pgrx::log!("pg_backup scheduler: no worker slot to sweep database {db:?}; its next pg_backup call will");
                break;
            }
        }
    }
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_backup_sweeper_main(_arg: pg_sys::Datum) {
    crate::signals::die_on_sigterm_then_unblock();
    let db_oid = pg_sys::Oid::from(BackgroundWorker::get_extra().parse::<u32>().unwrap_or(0));
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db_oid), None);
    super::autonomous::set_local_mode();
    crate::session::disable_dump_timeouts();
    // SAFETY: static NUL-terminated name and value; the worker is connected and on its only
    // thread; a superuser-context override of a user setting cannot fail.
    unsafe {
        pg_sys::SetConfigOption(
            c"default_transaction_read_only".as_ptr(),
            c"off".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
    BackgroundWorker::transaction(|| {
        if let Err(e) = sweep() {
            pgrx::log!("pg_backup sweeper: {e}");
        }
        // Webhook deliveries left pending by a restart go out now.
        crate::alerts::sender::start_if_pending();
    });
    drop_dead_drills_databases();
}
