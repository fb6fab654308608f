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

fn run(queries: &[(&str, &str)], sel: &Selection) -> Result<Vec<DdlItem>> {
    let rels: Vec<pg_sys::Oid> = sel.relations.iter().map(|r| r.oid).collect();
    let schemas = sel.schema_oids.clone();
    let mut out = Vec::new();
    Spi::connect(|client| {
        for (_, sql) in queries {
            // Catalog names are type `name`; read every column as text.
            let q = format!("SELECT q.k::text, q.s::text, q.n::text, q.t::text, q.d::text FROM ({sql}) AS q(k, s, n, t, d)");
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
        let q = format!(
            "SELECT format('SELECT pg_catalog.setval(%L, %s, %s);', format('%I.%I', $1, $2), last_value, CASE WHEN is_called THEN 'true' ELSE 'false' END)
             FROM {}.{}",
            spi::quote_identifier(&s.schema),
            spi::quote_identifier(&s.name)
        );
        let sql = Spi::get_one_with_args::<String>(
            &q,
            &[s.schema.clone().into(), s.name.clone().into()],
        )?;
        if let Some(sql) = sql {
            out.push(DdlItem {
                kind: "sequence_set".into(),
                schema: Some(s.schema.clone()),
                name: s.name.clone(),
                table: None,
                sql,
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
