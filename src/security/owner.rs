//! Running a restore step with the rights of the object's owner.
//!
//! pg_backup's functions are SECURITY DEFINER: without care, a CHECK constraint, a default, a
//! trigger or an index expression written by any role would run with the extension owner's
//! (a superuser's) rights while rows are restored. PostgreSQL protects its own maintenance
//! commands the same way we do here (index builds in indexcmds.c, REFRESH MATERIALIZED VIEW
//! in matview.c, VACUUM/ANALYZE): the user id becomes the owner, the security context gains
//! SECURITY_RESTRICTED_OPERATION (no SET ROLE, no temporary tables, no deferred triggers,
//! no PREPARE/LISTEN/cursors WITH HOLD: nothing user code could leave behind for a more
//! privileged role to run later) and SECURITY_LOCAL_USERID_CHANGE (as a SECURITY DEFINER
//! call), and a new GUC nest level rolls back every setting the user code changed.
//! SET ROLE itself is refused inside SECURITY DEFINER functions, so this is the only way.

use pgrx::prelude::*;
use pgrx::spi;

use crate::error::{BackupError, Result};

/// Run `f` as `role` in a security-restricted operation. The previous user id and security
/// context come back on every exit: on return and on a Rust panic by the guard's Drop; on a
/// PostgreSQL ERROR also by the (sub)transaction abort, which resets the user id and context
/// to what they were when that (sub)transaction began (xact.c, AbortSubTransaction) and
/// unwinds the GUC nest levels opened inside it.
pub fn run_as<T>(role: pg_sys::Oid, f: impl FnOnce() -> T) -> T {
    let _guard = AsRole::enter(role);
    f()
}

struct AsRole {
    saved_user: pg_sys::Oid,
    saved_context: i32,
    nest_level: i32,
}

impl AsRole {
    fn enter(role: pg_sys::Oid) -> AsRole {
        let mut saved_user = pg_sys::InvalidOid;
        let mut saved_context = 0;
        // SAFETY: as matview.c's REFRESH switches to the owner: the out pointers are valid
        // locals, `role` is an existing role's oid, on the backend's thread inside a
        // transaction; `drop` (or the abort of the enclosing transaction, thanks to
        // SECURITY_LOCAL_USERID_CHANGE) puts the saved user, context and GUC level back.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
            pg_sys::SetUserIdAndSecContext(
                role,
                saved_context
                    | pg_sys::SECURITY_RESTRICTED_OPERATION as i32
                    | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
            );
            // After the switch, as matview.c does: settings made by the user code roll back.
            let nest_level = pg_sys::NewGUCNestLevel();
            AsRole {
                saved_user,
                saved_context,
                nest_level,
            }
        }
    }
}

impl Drop for AsRole {
    fn drop(&mut self) {
        // SAFETY: closes the GUC nest level `enter` opened (levels opened after it were
        // closed first by their own guards) and restores what `enter` saved, on the same
        // backend thread.
        unsafe {
            // On an ERROR the abort of the enclosing (sub)transaction pops this nest level;
            // doing it here while PostgreSQL is still in its error state is not safe.
            if !std::thread::panicking() {
                pg_sys::AtEOXact_GUC(false, self.nest_level);
            }
            pg_sys::SetUserIdAndSecContext(self.saved_user, self.saved_context);
        }
    }
}

/// `run_as`, for statements that name objects in schemas the owner may not reach: an owner
/// keeps its objects in schemas where it lost USAGE or never had CREATE (a superuser put them
/// there, target_schema made a new schema), and PostgreSQL checks those privileges when a
/// statement names the schema. What the role lacks of `needs` (schema, privilege) is granted
/// for this statement only: revoked after it, and undone by the rollback if it fails.
pub fn run_as_in<T>(
    role: pg_sys::Oid,
    needs: &[(&str, SchemaPrivilege)],
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    with_schema_privileges(role, needs, || run_as(role, f))
}

/// Run `f` (as whoever runs it) while `grantee` holds `needs`: what it lacks of them is
/// granted by pg_backup (fixed statements, quoted names) before `f` and revoked after it;
/// a failure rolls the grant back with the statement. For `ALTER ... OWNER TO`, where
/// PostgreSQL asks the new owner for CREATE on the object's schema.
pub fn with_schema_privileges<T>(
    grantee: pg_sys::Oid,
    needs: &[(&str, SchemaPrivilege)],
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    // From the system cache, as pg_get_userbyid() and has_schema_privilege() read it.
    // SAFETY: a cache lookup; NULL when the role is gone.
    let name = unsafe {
        let n = pg_sys::GetUserNameFromId(grantee, true);
        if n.is_null() {
            format!("unknown (OID={})", grantee.to_u32())
        } else {
            crate::text::to_utf8(std::ffi::CStr::from_ptr(n).to_bytes())
        }
    };
    let mut granted = Vec::new();
    for (schema, privilege) in needs {
        let has = schema_oid(schema).map(|nsp| {
            let mode = match privilege {
                SchemaPrivilege::Usage => pg_sys::ACL_USAGE,
                SchemaPrivilege::Create => pg_sys::ACL_CREATE,
            };
            // SAFETY: a privilege check by oids (superusers pass, as in has_schema_privilege).
            let result =
                unsafe { pg_sys::pg_namespace_aclcheck(nsp, grantee, mode as pg_sys::AclMode) };
            result == pg_sys::AclResult::ACLCHECK_OK
        });
        if has == Some(false) {
            let on = format!(
                "{} ON SCHEMA {}",
                privilege.as_str(),
                spi::quote_identifier(schema)
            );
            if granted.contains(&on) {
                continue;
            }
            crate::text::run(&format!("GRANT {on} TO {}", spi::quote_identifier(&name)))?;
            granted.push(on);
        }
    }
    let out = f()?;
    for on in granted {
        crate::text::run(&format!(
            "REVOKE {on} FROM {}",
            spi::quote_identifier(&name)
        ))?;
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaPrivilege {
    Usage,
    Create,
}

impl SchemaPrivilege {
    fn as_str(self) -> &'static str {
        match self {
            SchemaPrivilege::Usage => "USAGE",
            SchemaPrivilege::Create => "CREATE",
        }
    }
}

/// The current owner of relation `oid` (for steps on tables that exist: their owner's code
/// is what runs).
pub fn relation_owner(oid: pg_sys::Oid) -> Result<pg_sys::Oid> {
    // From the system cache (a restore asks for every table and constraint it touches; a
    // query each was a planned SPI statement). Read-only: fine on a hot standby.
    // SAFETY: a cache lookup by oid; the tuple is released before returning.
    let owner = unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            pg_sys::Datum::from(oid),
        );
        if tuple.is_null() {
            None
        } else {
            let owner =
                (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tuple)).relowner;
            pg_sys::ReleaseSysCache(tuple);
            Some(owner)
        }
    };
    owner.ok_or_else(|| BackupError::unknown(format!("relation {} does not exist", oid.to_u32())))
}

/// A role's oid, None when no role of that name exists in this cluster.
pub fn role_oid(name: &str) -> Result<Option<pg_sys::Oid>> {
    // A name with a NUL names no role.
    let Ok(c) = std::ffi::CString::new(crate::text::to_server(name).into_owned()) else {
        return Ok(None);
    };
    // SAFETY: a NUL-terminated name; missing_ok, so no error for an unknown role.
    let oid = unsafe { pg_sys::get_role_oid(c.as_ptr(), true) };
    Ok((oid != pg_sys::InvalidOid).then_some(oid))
}

/// A schema's oid (None: no such schema), from the system cache.
pub fn schema_oid(name: &str) -> Option<pg_sys::Oid> {
    let c = std::ffi::CString::new(crate::text::to_server(name).into_owned()).ok()?;
    // SAFETY: a NUL-terminated name; missing_ok.
    let oid = unsafe { pg_sys::get_namespace_oid(c.as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// The oid of relation `name` in schema `schema` (None: there is none), from the system
/// cache: the same answer as a pg_class query, without planning one.
pub fn relation_oid(schema: &str, name: &str) -> Option<pg_sys::Oid> {
    let nsp = schema_oid(schema)?;
    let c = std::ffi::CString::new(crate::text::to_server(name).into_owned()).ok()?;
    // SAFETY: a NUL-terminated name and a schema oid.
    let oid = unsafe { pg_sys::get_relname_relid(c.as_ptr(), nsp) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// The name of the schema relation `oid` is in.
pub fn relation_schema(oid: pg_sys::Oid) -> Option<String> {
    // SAFETY: cache lookups by oid; get_namespace_name returns a palloc'd copy or NULL.
    unsafe {
        let nsp = pg_sys::get_rel_namespace(oid);
        if nsp == pg_sys::InvalidOid {
            return None;
        }
        let name = pg_sys::get_namespace_name(nsp);
        (!name.is_null()).then(|| crate::text::to_utf8(std::ffi::CStr::from_ptr(name).to_bytes()))
    }
}

/// Whether restore() was called from code that already runs in a security-restricted
/// operation (an index expression, a REFRESH, a restore step of another restore): it would
/// then run as the extension owner on behalf of code that was sandboxed. Refused.
pub fn refuse_inside_restricted_operation() -> Result<()> {
    // SAFETY: reads the backend-local security context.
    if unsafe { pg_sys::InSecurityRestrictedOperation() } {
        return Err(BackupError::denied(
            "backup.restore() cannot run inside a security-restricted operation",
        )
        .with_hint("Call it directly, not from an index expression, a materialized view, a constraint or a trigger."));
    }
    Ok(())
}

/// Whether the calling session holds temporary tables or types. The user code a restore runs
/// with its owners' rights (triggers, CHECKs, defaults of other roles) resolves unqualified
/// table and type names through the search_path, and the session's temporary schema is always
/// on it: a caller's temporary table of the name such code writes to, with a trigger of the
/// caller's, would run the caller's code with the owner's rights. PostgreSQL 15 cannot take
/// pg_temp off the path, and code in a security-restricted operation cannot create temporary
/// objects, so a session without any when the restore starts stays without any. Refused.
pub fn refuse_temporary_objects() -> Result<()> {
    let any = crate::query::one::<bool>(
        "SELECT pg_catalog.pg_my_temp_schema() <> 0
                AND (EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema())
                     OR EXISTS (SELECT 1 FROM pg_catalog.pg_type WHERE typnamespace = pg_catalog.pg_my_temp_schema()))",
        &[],
    )?
    .unwrap_or(false);
    if any {
        return Err(BackupError::denied(
            "backup.restore() cannot run in a session that has temporary tables or types",
        )
        .with_hint("Restore code of other roles would see them on its search_path. Run DISCARD TEMP; (or restore from a new session) first."));
    }
    Ok(())
}
