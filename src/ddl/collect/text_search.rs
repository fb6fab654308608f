//! Text search parsers, templates, dictionaries and configurations (with their mappings).

use super::common::{not_extension_member, owner_sql, qualified, query, Collected, Context};
use crate::archive::toc::EntryKind;
use crate::ddl::graph::{Node, ObjKey};
use crate::error::Result;

pub fn collect(cx: &Context, out: &mut Collected) -> Result<()> {
    let parsers = format!(
        r#"SELECT p.tableoid, p.oid, n.nspname::text, p.prsname::text, NULL::text,
                  pg_catalog.format(E'CREATE TEXT SEARCH PARSER %I.%I (\n    START = %s,\n    GETTOKEN = %s,\n    END = %s,\n    LEXTYPES = %s%s\n);',
                         n.nspname, p.prsname, p.prsstart::pg_catalog.regproc::text, p.prstoken::pg_catalog.regproc::text,
                         p.prsend::pg_catalog.regproc::text, p.prslextype::pg_catalog.regproc::text,
                         CASE WHEN p.prsheadline <> 0 THEN E',\n    HEADLINE = ' || p.prsheadline::pg_catalog.regproc::text ELSE '' END)
           FROM pg_catalog.pg_ts_parser p JOIN pg_catalog.pg_namespace n ON n.oid = p.prsnamespace
           WHERE n.oid = ANY($2) AND {}
           ORDER BY p.oid"#,
        not_extension_member("pg_catalog.pg_ts_parser", "p.oid")
    );
    let templates = format!(
        r#"SELECT t.tableoid, t.oid, n.nspname::text, t.tmplname::text, NULL::text,
                  pg_catalog.format(E'CREATE TEXT SEARCH TEMPLATE %I.%I (%s\n    LEXIZE = %s\n);', n.nspname, t.tmplname,
                         CASE WHEN t.tmplinit <> 0 THEN E'\n    INIT = ' || t.tmplinit::pg_catalog.regproc::text || ',' ELSE '' END,
                         t.tmpllexize::pg_catalog.regproc::text)
           FROM pg_catalog.pg_ts_template t JOIN pg_catalog.pg_namespace n ON n.oid = t.tmplnamespace
           WHERE n.oid = ANY($2) AND {}
           ORDER BY t.oid"#,
        not_extension_member("pg_catalog.pg_ts_template", "t.oid")
    );
    let dictionaries = format!(
        r#"SELECT d.tableoid, d.oid, n.nspname::text, d.dictname::text, pg_catalog.pg_get_userbyid(d.dictowner)::text,
                  pg_catalog.format(E'CREATE TEXT SEARCH DICTIONARY %I.%I (\n    TEMPLATE = %I.%I%s\n);', n.nspname, d.dictname,
                         tn.nspname, t.tmplname, CASE WHEN d.dictinitoption IS NOT NULL THEN E',\n    ' || d.dictinitoption ELSE '' END)
           FROM pg_catalog.pg_ts_dict d JOIN pg_catalog.pg_namespace n ON n.oid = d.dictnamespace
           JOIN pg_catalog.pg_ts_template t ON t.oid = d.dicttemplate JOIN pg_catalog.pg_namespace tn ON tn.oid = t.tmplnamespace
           WHERE n.oid = ANY($2) AND {}
           ORDER BY d.oid"#,
        not_extension_member("pg_catalog.pg_ts_dict", "d.oid")
    );
    // A configuration and its mappings, token type by token type, dictionaries in order.
    let configurations = format!(
        r#"SELECT c.tableoid, c.oid, n.nspname::text, c.cfgname::text, pg_catalog.pg_get_userbyid(c.cfgowner)::text,
                  pg_catalog.format(E'CREATE TEXT SEARCH CONFIGURATION %I.%I (\n    PARSER = %I.%I\n);', n.nspname, c.cfgname, pn.nspname, p.prsname)
                  || coalesce((SELECT pg_catalog.string_agg(pg_catalog.format(E'\nALTER TEXT SEARCH CONFIGURATION %I.%I\n    ADD MAPPING FOR %s WITH %s;',
                                      n.nspname, c.cfgname, tt.alias, m.dicts), '' ORDER BY m.maptokentype)
                               FROM (SELECT mm.maptokentype,
                                            pg_catalog.string_agg(pg_catalog.format('%I.%I', dn.nspname, dd.dictname), ', ' ORDER BY mm.mapseqno) AS dicts
                                     FROM pg_catalog.pg_ts_config_map mm JOIN pg_catalog.pg_ts_dict dd ON dd.oid = mm.mapdict
                                     JOIN pg_catalog.pg_namespace dn ON dn.oid = dd.dictnamespace
                                     WHERE mm.mapcfg = c.oid GROUP BY mm.maptokentype) m
                               JOIN pg_catalog.ts_token_type(c.cfgparser) tt ON tt.tokid = m.maptokentype), '')
           FROM pg_catalog.pg_ts_config c JOIN pg_catalog.pg_namespace n ON n.oid = c.cfgnamespace
           JOIN pg_catalog.pg_ts_parser p ON p.oid = c.cfgparser JOIN pg_catalog.pg_namespace pn ON pn.oid = p.prsnamespace
           WHERE n.oid = ANY($2) AND {}
           ORDER BY c.oid"#,
        not_extension_member("pg_catalog.pg_ts_config", "c.oid")
    );
    for (sql, kind, keyword) in [
        (parsers, EntryKind::TextSearchParser, None),
        (templates, EntryKind::TextSearchTemplate, None),
        (
            dictionaries,
            EntryKind::TextSearchDictionary,
            Some("TEXT SEARCH DICTIONARY"),
        ),
        (
            configurations,
            EntryKind::TextSearchConfiguration,
            Some("TEXT SEARCH CONFIGURATION"),
        ),
    ] {
        let nodes = query(cx, &sql, |r| {
            let (schema, name) = (r.string(3)?, r.string(4)?);
            let mut node = Node::new(
                ObjKey::new(r.oid(1)?, r.oid(2)?),
                kind,
                Some(&schema),
                &name,
                r.string(6)?,
            );
            if let (Some(keyword), Some(owner)) = (keyword, r.text(5)?) {
                let q = qualified(&schema, &name);
                node = node.owned(Some(owner.clone()), Some(owner_sql(keyword, &q, &owner)));
            }
            Ok(node)
        })?;
        nodes.into_iter().for_each(|n| out.push(n));
    }
    Ok(())
}
