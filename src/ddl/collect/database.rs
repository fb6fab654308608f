//! What belongs to the database rather than to a schema: large objects.

use super::class::PG_LARGEOBJECT_METADATA;
use super::{data_key, ident, query, Collected, Context};
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey};
use crate::error::Result;

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    if !cx.large_objects {
        return Ok(());
    }
    // Each large object is created empty before the data; their pages are one data file.
    let los = query(
        cx,
        "SELECT m.oid, pg_catalog.pg_get_userbyid(m.lomowner)::text
         FROM pg_catalog.pg_largeobject_metadata m ORDER BY m.oid",
        |r| Ok((r.oid(1)?, r.string(2)?)),
    )?;
    if los.is_empty() {
        return Ok(());
    }
    let mut data = Node::new(
        data_key(PG_LARGEOBJECT_METADATA, 0),
        EntryKind::LargeObjectData,
        None,
        "large objects",
        String::new(),
    );
    for (oid, owner) in los {
        let key = ObjKey::new(PG_LARGEOBJECT_METADATA, oid);
        out.push(
            Node::new(
                key,
                EntryKind::LargeObject,
                None,
                &oid.to_string(),
                format!("SELECT pg_catalog.lo_create('{oid}');"),
            )
            .owned(
                Some(owner.clone()),
                Some(format!(
                    "ALTER LARGE OBJECT {oid} OWNER TO {};",
                    ident(&owner)
                )),
            ),
        );
        data.deps.insert(key);
    }
    out.push(data);
    Ok(())
}
