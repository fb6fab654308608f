//! The oids of the system catalogs that key collected objects (fixed by PostgreSQL).

use pgrx::pg_sys;
pub const PG_CLASS: u32 = pg_sys::RelationRelationId.to_u32();
pub const PG_TYPE: u32 = pg_sys::TypeRelationId.to_u32();
pub const PG_PROC: u32 = pg_sys::ProcedureRelationId.to_u32();
pub const PG_NAMESPACE: u32 = pg_sys::NamespaceRelationId.to_u32();
/// pg_rewrite (catalog/pg_rewrite.h; not in pgrx's bindings).
pub const PG_REWRITE: u32 = 2618;
pub const PG_EXTENSION: u32 = pg_sys::ExtensionRelationId.to_u32();
/// pg_largeobject_metadata (catalog/pg_largeobject_metadata.h).
pub const PG_LARGEOBJECT_METADATA: u32 = 2995;
/// pg_largeobject (catalog/pg_largeobject.h): comments and security labels on a large
/// object name this catalog, not pg_largeobject_metadata.
pub const PG_LARGEOBJECT: u32 = 2613;
pub const PG_DATABASE: u32 = pg_sys::DatabaseRelationId.to_u32();
