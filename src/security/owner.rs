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
    let name = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.pg_get_userbyid($1)::pg_catalog.text",
        &[role.into()],
    )?
    .unwrap_or_default();
    let mut granted = Vec::new();
    for (schema, privilege) in needs {
        let has = Spi::get_one_with_args::<bool>(
            "SELECT (SELECT pg_catalog.has_schema_privilege($1, n.oid, $3)
                     FROM pg_catalog.pg_namespace n WHERE n.nspname = $2)",
            &[role.into(), (*schema).into(), privilege.as_str().into()],
        )?;
        if has == Some(false) {
            let on = format!(
                "{} ON SCHEMA {}",
                privilege.as_str(),
                spi::quote_identifier(schema)
            );
            Spi::run(&format!("GRANT {on} TO {}", spi::quote_identifier(&name)))?;
            granted.push(on);
        }
    }
    let out = run_as(role, f)?;
    for on in granted {
        Spi::run(&format!(
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
    crate::query::one::<pg_sys::Oid>(
        "SELECT (SELECT relowner FROM pg_catalog.pg_class WHERE oid = $1)",
        &[oid.into()],
    )?
    .ok_or_else(|| BackupError::unknown(format!("relation {} does not exist", oid.to_u32())))
}

/// A role's oid, None when no role of that name exists in this cluster.
pub fn role_oid(name: &str) -> Result<Option<pg_sys::Oid>> {
    Ok(crate::query::one::<pg_sys::Oid>(
        "SELECT (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)",
        &[name.into()],
    )?)
}

/// Whether restore() was called from code that already runs in a security-restricted
/// operation (an index expression, a REFRESH, a restore step of another restore): it would
/// then run as the extension owner on behalf of code that was sandboxed. Refused.
pub fn refuse_inside_restricted_operation() -> Result<()> {
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
