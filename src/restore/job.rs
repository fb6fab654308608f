//! Everything one restore works from (the job): the archive read, the options, the scope
//! and plan, the caller, where entries are created; built once by the leader and once by each
//! job worker of restore(jobs => N), from the same archive. Also what every step asks of the
//! job: an entry by id, its name in result rows, the role a table's user code runs as.

use std::collections::HashMap;

use pgrx::prelude::*;

use super::batch::Batches;
use super::options::RestoreOptions;
use super::plan::Plan;
use super::scope::Scope;
use super::tablespaces::Placement;
use crate::archive::compression::Compression;
use crate::archive::manifest::Manifest;
use crate::archive::toc::{self, EntryKind, TocEntry};
use crate::error::Result;
use crate::security;
use crate::security::owner::{relation_owner, role_oid};
use crate::security::privileges::{parse_owner_statement, Restorer};
use crate::storage::archive_files::{ArchiveSource, FileRef};

/// An archive opened for a restore: where it is read from and its manifest, whose signature
/// was checked on the very bytes read.
pub struct Archive {
    pub source: ArchiveSource,
    pub manifest: Manifest,
    pub encrypted: bool,
    /// What was adapted of an older server's SQL for this one (restore/adapt.rs), one note
    /// per setting.
    pub adapted: Vec<String>,
}

impl Archive {
    /// Backup `id` (from target `storage` when named; else the local copy, else the remote
    /// copy the history row points to), checked
    /// by `check` before its manifest is read, the manifest authenticated (issue 17) by
    /// `authenticate`, which gets the very bytes read.
    pub fn open(
        id: &str,
        storage: Option<&str>,
        identity: Option<&str>,
        check: impl FnOnce(&ArchiveSource) -> Result<()>,
        authenticate: impl FnOnce(&ArchiveSource, &[u8]) -> Result<()>,
    ) -> Result<Archive> {
        let source = crate::storage::locate(id, storage, identity)?;
        check(&source)?;
        let (mut manifest, raw) = source.manifest(|raw| authenticate(&source, raw))?;
        let encrypted = crate::storage::archive_files::Sealed::of(&raw).is_some();
        // Issue 19: an archive of a newer major version than this server's is refused here,
        // on every path (atomic, atomic => false, jobs => N and its workers, dry_run, a copy
        // on a storage target), before anything changes; one of an older version is adapted
        // for this one, before any statement is checked.
        let server_num = crate::session::server_version_num();
        let archive_major = super::version::check(
            &manifest,
            &crate::session::current_setting("server_version"),
            server_num,
        )?;
        let adapted = super::adapt::adapt(
            &mut manifest.toc,
            archive_major,
            crate::archive::manifest::major_of_version_num(server_num),
            &crate::session::setting_exists,
        );
        Ok(Archive {
            source,
            manifest,
            encrypted,
            adapted,
        })
    }
}

/// Everything one restore works from.
pub struct Job<'a> {
    pub manifest: &'a Manifest,
    /// Where the archive is read from (local folder or storage target; issue 12).
    pub source: &'a ArchiveSource,
    pub encrypted: bool,
    pub compression: Compression,
    pub opts: &'a RestoreOptions,
    pub scope: &'a Scope,
    pub plan: &'a Plan,
    /// restore(atomic => false): the worker's commits.
    pub batches: Option<&'a Batches>,
    /// Who called restore: the owner of what has no owner (issue 9).
    pub restorer: &'a Restorer,
    /// Which tablespace each entry is created in.
    pub placement: &'a Placement,
    /// Each TOC entry's index in `manifest.toc`, by id.
    index: HashMap<u32, usize>,
    /// Each table's owner statement in the backup (an Owner entry), by (schema, table).
    owner_statements: HashMap<(&'a str, &'a str), &'a str>,
}

impl<'a> Job<'a> {
    pub fn new(
        archive: &'a Archive,
        opts: &'a RestoreOptions,
        scope: &'a Scope,
        plan: &'a Plan,
        restorer: &'a Restorer,
        placement: &'a Placement,
        batches: Option<&'a Batches>,
    ) -> Job<'a> {
        let manifest = &archive.manifest;
        let owner_statements = manifest
            .toc
            .iter()
            .filter(|e| e.kind == EntryKind::Owner && parse_owner_statement(&e.sql).is_some())
            .filter_map(|e| Some(((e.schema.as_deref()?, e.table.as_deref()?), e.sql.as_str())))
            .fold(HashMap::new(), |mut m, (k, v)| {
                // The first, as a search of the TOC in order would find.
                m.entry(k).or_insert(v);
                m
            });
        Job {
            manifest,
            source: &archive.source,
            encrypted: archive.encrypted,
            compression: archive.manifest.compression,
            opts,
            scope,
            plan,
            batches,
            restorer,
            placement,
            index: toc::by_id(&manifest.toc),
            owner_statements,
        }
    }

    /// The TOC entry `id`.
    pub fn entry(&self, id: u32) -> Option<&'a TocEntry> {
        self.index.get(&id).map(|&i| &self.manifest.toc[i])
    }

    /// How result rows name an entry: relations under their restored name.
    pub fn object(&self, e: &TocEntry) -> String {
        match (&e.schema, e.kind.is_decoration()) {
            (Some(s), false) => format!("{}.{}", self.scope.target_schema_of(s), e.name),
            _ => e.object(),
        }
    }

    /// The settings every restore runs with (also each worker of restore(jobs => N)).
    pub fn apply_settings(&self) -> Result<()> {
        // Function bodies may name tables that come later, as in pg_restore.
        security::set_for_call(c"check_function_bodies", c"off");
        // "schema ... already exists, skipping" and the like: the result rows say what happened.
        security::set_for_call(c"client_min_messages", c"warning");
        // Every definition in the archive is schema-qualified. pg_temp is named last: left
        // out, the caller's temporary tables and types would be searched before pg_catalog.
        security::set_for_call(c"search_path", c"pg_catalog, pg_temp");
        // Literals, dates, intervals and arrays in the archive are read as they were written,
        // whatever the caller's session says (a backslash in a string must never end it early,
        // an array's NULL element stays NULL: security::LITERAL_SETTINGS). Settings that are
        // the caller's on purpose (session_replication_role, lock_timeout, TimeZone,
        // lc_monetary, custom settings user code reads) are left alone here and carried to
        // every worker as they are (session.rs).
        security::pin_literal_settings();
        // Relations go where the backup had them (entry by entry), never where the calling
        // session's default_tablespace points.
        self.placement.select(None)?;
        // Tables without an access method of their own in the backup are heap tables (the
        // collector writes USING for the others), as pg_restore's per-entry setting says.
        security::set_for_call(c"default_table_access_method", c"heap");
        super::tuning::raise_maintenance_settings()
    }
}

impl Job<'_> {
    /// The role user code on table `oid` runs with: its owner (or, for a caller without its
    /// owner's privileges that appends to it, the caller: `Restorer::code_role_on`); never
    /// the extension owner (the role running restore) on behalf of another role. A table
    /// this restore created that is still the extension owner's came from an archive that
    /// did not give it its owner at once: it is handed to the owner the backup names (or the
    /// caller when that role is missing) first. A table that existed before the restore
    /// keeps its owner, whoever owns it.
    pub fn code_owner(
        &self,
        oid: pg_sys::Oid,
        backup_schema: &str,
        name: &str,
    ) -> Result<pg_sys::Oid> {
        let owner = relation_owner(oid)?;
        let created_here = self
            .plan
            .of(backup_schema, name)
            .is_none_or(|t| t.action.runs_ddl());
        // SAFETY: GetUserId reads the backend's current user id, set in every backend and
        // worker that runs a restore.
        let current = unsafe { pg_sys::GetUserId() };
        if owner != current || !created_here {
            return Ok(self.restorer.code_role_on(owner));
        }
        let named = self
            .owner_statements
            .get(&(backup_schema, name))
            .and_then(|sql| parse_owner_statement(sql))
            .map(|st| st.role);
        let role = match named {
            Some(r) => role_oid(&r)?.unwrap_or(self.restorer.oid),
            None if self.restorer.superuser => owner,
            None => self.restorer.oid,
        };
        if role != owner {
            // Its owner from now on (the archive's owner statement later changes nothing):
            // the code runs as the role that owns the table, as PostgreSQL requires of
            // ALTER TABLE.
            let sql = crate::query::one::<crate::text::Text>(
                "SELECT pg_catalog.format('ALTER TABLE %s OWNER TO %I', $1::pg_catalog.regclass, pg_catalog.pg_get_userbyid($2))",
                &[oid.into(), role.into()],
            )?
            .unwrap_or_default()
            .0;
            crate::text::run(&sql)?;
        }
        Ok(role)
    }
}

impl Job<'_> {
    /// Archive file `rel`, to be read (and decrypted) on a feeder thread.
    pub fn file(&self, rel: &str) -> FileRef {
        FileRef {
            source: self.source.clone(),
            rel: rel.to_string(),
            encrypted: self.encrypted,
        }
    }
}
