//! DDL of what a backup holds, from the system catalogs in-process (pg_get_*def and friends),
//! split into pre-data and post-data like pg_dump.

mod queries;

pub use queries::LARGE_OBJECT_PAGES;

use pgrx::prelude::*;

use crate::archive::manifest::DdlItem;
use crate::backup::select::Selection;
use crate::error::{BackupError, Result};

pub struct Ddl {
    pub pre_data: Vec<DdlItem>,
    pub post_data: Vec<DdlItem>,
}

/// Queries whose rows carry a referenced table as a sixth column (a foreign key's target,
/// a table's parent).
const WITH_REFERENCES: &[&str] = &["foreign_key", "table"];

fn run(queries: &[(&str, &str)], sel: &Selection) -> Result<Vec<DdlItem>> {
    let rels: Vec<pg_sys::Oid> = sel.relations.iter().map(|r| r.oid).collect();
    let schemas = sel.schema_oids.clone();
    let mut out = Vec::new();
    Spi::connect(|client| {
        for (kind, sql) in queries {
            // Catalog names are type `name`; read every column as text. Foreign keys have a
            // sixth column, the table they reference.
            let q = if WITH_REFERENCES.contains(kind) {
                format!("SELECT q.k::text, q.s::text, q.n::text, q.t::text, q.d::text, q.r::text FROM ({sql}) AS q(k, s, n, t, d, r)")
            } else {
                format!("SELECT q.k::text, q.s::text, q.n::text, q.t::text, q.d::text, NULL::text FROM ({sql}) AS q(k, s, n, t, d)")
            };
            let rows = client.select(
                q.as_str(),
                None,
                &[rels.clone().into(), schemas.clone().into()],
            )?;
            for row in rows {
                let Some(sql) = row.get::<String>(5)? else {
                    continue;
                };
                out.push(DdlItem {
                    kind: row.get::<String>(1)?.unwrap_or_default(),
                    schema: row.get::<String>(2)?,
                    name: row.get::<String>(3)?.unwrap_or_default(),
                    table: row.get::<String>(4)?,
                    sql,
                    references: row.get::<String>(6)?,
                });
            }
        }
        Ok::<_, BackupError>(())
    })?;
    Ok(out)
}

/// Sequence values, read now (sequences are not transactional, as in pg_dump).
fn sequence_values(sel: &Selection) -> Result<Vec<DdlItem>> {
    let mut out = Vec::new();
    for s in sel.relations.iter().filter(|r| r.kind == 'S') {
        // The owning table (serial or identity), so a partial restore knows whose it is.
        let q = format!(
            "SELECT format('SELECT pg_catalog.setval(%L, %s, %s);', format('%I.%I', $1, $2), last_value, CASE WHEN is_called THEN 'true' ELSE 'false' END),
                    (SELECT format('%I.%I', tn.nspname, t.relname) FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
                     JOIN pg_namespace tn ON tn.oid = t.relnamespace
                     WHERE d.classid = 'pg_class'::regclass AND d.objid = $3 AND d.refclassid = 'pg_class'::regclass
                       AND d.deptype IN ('a', 'i') LIMIT 1)
             FROM {}.{}",
            spi::quote_identifier(&s.schema),
            spi::quote_identifier(&s.name)
        );
        let (sql, owner) = Spi::get_two_with_args::<String, String>(
            &q,
            &[s.schema.clone().into(), s.name.clone().into(), s.oid.into()],
        )?;
        if let Some(sql) = sql {
            out.push(DdlItem {
                kind: "sequence_set".into(),
                schema: Some(s.schema.clone()),
                name: s.name.clone(),
                table: owner,
                sql,
                references: None,
            });
        }
    }
    Ok(out)
}

pub fn extract(sel: &Selection) -> Result<Ddl> {
    let mut pre_data = run(queries::PRE_DATA, sel)?;
    let mut post_data = sequence_values(sel)?;
    post_data.extend(run(queries::POST_DATA, sel)?);
    if sel.large_objects {
        pre_data.extend(run(&[("large_object", queries::LARGE_OBJECTS)], sel)?);
        post_data.extend(run(&[("owner", queries::LARGE_OBJECT_OWNERS)], sel)?);
    }
    Ok(Ddl {
        pre_data,
        post_data,
    })
}

/// The columns COPY writes for a table, in order (generated columns are not copied).
pub fn copy_columns(rel: pg_sys::Oid) -> Result<Vec<String>> {
    Ok(Spi::get_one_with_args::<Vec<String>>(
        "SELECT coalesce(array_agg(attname::text ORDER BY attnum), '{}') FROM pg_attribute
         WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = ''",
        &[rel.into()],
    )?
    .unwrap_or_default())
}
