//! Which PostgreSQL versions an archive restores on (issue 19): the major version that wrote
//! it (manifest `server_version_num`, else `server_version`) or a newer one. An archive of a
//! newer major version than this server's is refused before anything changes (0A000): its
//! catalogs and SQL may use what the older server does not have, and pg_dump's own output is
//! not promised to load into an older server either.
//!
//! The version is the manifest's claim: it only decides this refusal and which rewrites of
//! older servers' SQL apply (`super::adapt`); every statement is checked after that
//! as for any archive (restore/statements.rs), whatever the claim says.

use crate::archive::manifest::{major_of_version_num, Manifest};
use crate::error::{BackupError, Result};

/// What restoring `manifest` on a server of `server_version_num` (its `server_version` text
/// for the message) means: Ok(the archive's major version), or the refusal.
pub fn check(manifest: &Manifest, server_version: &str, server_version_num: u32) -> Result<u32> {
    let archive = manifest.server_major()?;
    let here = major_of_version_num(server_version_num);
    if archive > here {
        return Err(BackupError::OlderServer {
            message: format!(
                "backup {} was written on PostgreSQL {archive} ({}), a newer major version than this server's PostgreSQL {here} ({}): nothing was restored",
                manifest.backup_id,
                manifest.server_version.escape_default(),
                server_version.escape_default()
            ),
            hint: format!(
                "Restore it on a server of PostgreSQL {archive} or newer: pg_backup restores an archive on the major version that wrote it or a later one, never on an older one (an archive of PostgreSQL {here} restores here)."
            ),
        });
    }
    Ok(archive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::manifest::sample;

    #[test]
    fn an_archive_of_a_newer_major_version_is_refused_naming_both() {
        let mut m = sample();
        m.server_version = "18.6".into();
        m.server_version_num = Some(180006);
        let err = check(&m, "15.18 (Debian 15.18-0+deb12u1)", 150018).unwrap_err();
        assert_eq!(err.sqlstate(), "0A000");
        let text = err.to_string();
        assert!(text.contains("PostgreSQL 18 (18.6)"), "{text}");
        assert!(text.contains("PostgreSQL 15 (15.18 (Debian"), "{text}");
        let hint = err.hint().unwrap();
        assert!(hint.contains("PostgreSQL 18 or newer"), "{hint}");
        // The same major version (any minor) and newer ones restore.
        assert_eq!(check(&m, "18.0", 180000).unwrap(), 18);
        assert_eq!(check(&m, "19devel", 190000).unwrap(), 18);
        m.server_version = "15.20".into();
        m.server_version_num = Some(150020);
        assert_eq!(check(&m, "15.1", 150001).unwrap(), 15);
        assert_eq!(check(&m, "18.6", 180006).unwrap(), 15);
        // A claim that contradicts itself counts as the newer version.
        m.server_version = "18.1".into();
        assert_eq!(check(&m, "15.1", 150001).unwrap_err().sqlstate(), "0A000");
        // No version at all: a damaged manifest.
        m.server_version = "unknown".into();
        m.server_version_num = None;
        assert_eq!(check(&m, "15.1", 150001).unwrap_err().sqlstate(), "XX001");
    }
}
