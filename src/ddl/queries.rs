//! The catalog queries that produce DDL, in restore order. Each returns
//! `(kind, schema, name, tbl, sql)`; `$1` is the oid[] of selected relations, `$2` the oid[]
//! of selected schemas. Identifiers are quoted with format('%I'), never concatenated.

/// Pre-data: everything a table's rows need before COPY.
pub const PRE_DATA: &[(&str, &str)] = &[
    (
        "schema",
        r#"
SELECT 'schema', n.nspname, n.nspname, NULL,
       format('CREATE SCHEMA IF NOT EXISTS %I;', n.nspname)
FROM pg_namespace n WHERE n.oid = ANY($2) ORDER BY n.nspname"#,
    ),
    (
        "extension",
        r#"
SELECT 'extension', n.nspname, e.extname, NULL,
       format('CREATE EXTENSION IF NOT EXISTS %I WITH SCHEMA %I;', e.extname, n.nspname)
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname NOT IN ('plpgsql', 'pg_backup')
  AND (n.oid = ANY($2) OR EXISTS (
        SELECT 1 FROM pg_depend d JOIN pg_type t ON d.classid = 'pg_type'::regclass AND d.objid = t.oid
        JOIN pg_attribute a ON a.atttypid = t.oid AND a.attrelid = ANY($1)
        WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid AND d.deptype = 'e'))
ORDER BY e.oid"#,
    ),
    (
        "collation",
        r#"
SELECT 'collation', n.nspname, c.collname, NULL,
       format('CREATE COLLATION %I.%I (provider = %s, locale = %L, deterministic = %s);', n.nspname, c.collname,
              CASE c.collprovider WHEN 'i' THEN 'icu' ELSE 'libc' END,
              CASE c.collprovider WHEN 'i' THEN c.colliculocale ELSE c.collcollate END,
              CASE WHEN c.collisdeterministic THEN 'true' ELSE 'false' END)
FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace
WHERE n.oid = ANY($2)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_collation'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY c.oid"#,
    ),
    (
        "type",
        r#"
SELECT 'type', n.nspname, t.typname, NULL,
  CASE t.typtype
    WHEN 'e' THEN format('CREATE TYPE %I.%I AS ENUM (%s);', n.nspname, t.typname,
         (SELECT coalesce(string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder), '')
          FROM pg_enum e WHERE e.enumtypid = t.oid))
    WHEN 'r' THEN format('CREATE TYPE %I.%I AS RANGE (SUBTYPE = %s%s%s);', n.nspname, t.typname,
         format_type(r.rngsubtype, NULL),
         CASE WHEN oc.oid IS NOT NULL THEN format(', SUBTYPE_OPCLASS = %I.%I', ocn.nspname, oc.opcname) ELSE '' END,
         CASE WHEN r.rngcollation <> 0 AND r.rngcollation <> st.typcollation
              THEN format(', COLLATION = %I.%I', cn.nspname, co.collname) ELSE '' END
         || coalesce((SELECT format(', CANONICAL = %I.%I', pn.nspname, p.proname) FROM pg_proc p
                      JOIN pg_namespace pn ON pn.oid = p.pronamespace WHERE p.oid = r.rngcanonical), '')
         || coalesce((SELECT format(', SUBTYPE_DIFF = %I.%I', pn.nspname, p.proname) FROM pg_proc p
                      JOIN pg_namespace pn ON pn.oid = p.pronamespace WHERE p.oid = r.rngsubdiff), ''))
    WHEN 'd' THEN format('CREATE DOMAIN %I.%I AS %s%s%s%s%s;', n.nspname, t.typname,
         format_type(t.typbasetype, t.typtypmod),
         CASE WHEN t.typcollation <> 0 AND t.typcollation <> bt.typcollation
              THEN format(' COLLATE %I.%I', cn2.nspname, co2.collname) ELSE '' END,
         CASE WHEN t.typdefault IS NOT NULL THEN ' DEFAULT ' || t.typdefault ELSE '' END,
         CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END,
         (SELECT coalesce(string_agg(format(' CONSTRAINT %I %s', c.conname, pg_get_constraintdef(c.oid)), '' ORDER BY c.conname), '')
          FROM pg_constraint c WHERE c.contypid = t.oid))
    WHEN 'c' THEN format('CREATE TYPE %I.%I AS (%s);', n.nspname, t.typname,
         (SELECT coalesce(string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum), '')
          FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
  END
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_range r ON r.rngtypid = t.oid
LEFT JOIN pg_type st ON st.oid = r.rngsubtype
LEFT JOIN pg_opclass oc ON oc.oid = r.rngsubopc AND NOT EXISTS (
     SELECT 1 FROM pg_opclass d WHERE d.opcmethod = oc.opcmethod AND d.opcintype = r.rngsubtype AND d.opcdefault AND d.oid = oc.oid)
LEFT JOIN pg_namespace ocn ON ocn.oid = oc.opcnamespace
LEFT JOIN pg_collation co ON co.oid = r.rngcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
LEFT JOIN pg_collation co2 ON co2.oid = t.typcollation
LEFT JOIN pg_namespace cn2 ON cn2.oid = co2.collnamespace
WHERE n.oid = ANY($2)
  AND (t.typtype IN ('e', 'r', 'd') OR (t.typtype = 'c' AND EXISTS (
        SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c')))
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                  AND d.objid = t.oid AND d.deptype = 'e')
ORDER BY t.oid"#,
    ),
    (
        "function",
        r#"
SELECT CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END, n.nspname,
       p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', NULL,
       pg_get_functiondef(p.oid) || ';'
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.oid = ANY($2) AND p.prokind IN ('f', 'p')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype IN ('e', 'i'))
ORDER BY p.oid"#,
    ),
    (
        "sequence",
        r#"
SELECT 'sequence', n.nspname, c.relname,
       (SELECT format('%I.%I', tn.nspname, t.relname) FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
        JOIN pg_namespace tn ON tn.oid = t.relnamespace
        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
          AND d.deptype = 'a' LIMIT 1),
       format('CREATE SEQUENCE %I.%I AS %s INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s%s;',
              n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqincrement, s.seqmin, s.seqmax,
              s.seqstart, s.seqcache, CASE WHEN s.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_sequence s ON s.seqrelid = c.oid
WHERE c.oid = ANY($1) AND c.relkind = 'S'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'i')
ORDER BY c.oid"#,
    ),
    (
        "table",
        r#"
SELECT 'table', n.nspname, c.relname, NULL,
  format('CREATE %sTABLE %I.%I %s%s%s%s;',
    CASE WHEN c.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END,
    n.nspname, c.relname,
    CASE WHEN c.relispartition
      THEN format('PARTITION OF %I.%I %s', pn.nspname, pc.relname, pg_get_expr(c.relpartbound, c.oid))
      ELSE '(' || coalesce((
        SELECT string_agg(format('%I %s%s%s%s', a.attname, format_type(a.atttypid, a.atttypmod),
          CASE WHEN a.attcollation <> 0 AND a.attcollation <> ty.typcollation
               THEN format(' COLLATE %I.%I', coln.nspname, col.collname) ELSE '' END,
          CASE WHEN a.attidentity = 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
               WHEN a.attidentity = 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY'
               WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS (' || pg_get_expr(ad.adbin, ad.adrelid) || ') STORED'
               WHEN ad.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid)
               ELSE '' END,
          CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END), ', ' ORDER BY a.attnum)
        FROM pg_attribute a
        JOIN pg_type ty ON ty.oid = a.atttypid
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        LEFT JOIN pg_collation col ON col.oid = a.attcollation
        LEFT JOIN pg_namespace coln ON coln.oid = col.collnamespace
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attislocal), '') || ')'
    END,
    CASE WHEN NOT c.relispartition AND EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
      THEN ' INHERITS (' || (SELECT string_agg(format('%I.%I', inn.nspname, ic.relname), ', ' ORDER BY i.inhseqno)
                             FROM pg_inherits i JOIN pg_class ic ON ic.oid = i.inhparent
                             JOIN pg_namespace inn ON inn.oid = ic.relnamespace WHERE i.inhrelid = c.oid) || ')'
      ELSE '' END,
    CASE WHEN c.relkind = 'p' THEN ' PARTITION BY ' || pg_get_partkeydef(c.oid) ELSE '' END,
    CASE WHEN c.reloptions IS NOT NULL THEN ' WITH (' || array_to_string(c.reloptions, ', ') || ')' ELSE '' END),
  -- The parent of a partition or inheritance child, so a partial restore takes children along.
  (SELECT format('%I.%I', pn2.nspname, pc2.relname) FROM pg_inherits i2
   JOIN pg_class pc2 ON pc2.oid = i2.inhparent JOIN pg_namespace pn2 ON pn2.oid = pc2.relnamespace
   WHERE i2.inhrelid = c.oid ORDER BY i2.inhseqno LIMIT 1)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_inherits pi ON c.relispartition AND pi.inhrelid = c.oid
LEFT JOIN pg_class pc ON pc.oid = pi.inhparent
LEFT JOIN pg_namespace pn ON pn.oid = pc.relnamespace
WHERE c.oid = ANY($1) AND c.relkind IN ('r', 'p')
ORDER BY c.relispartition, (SELECT count(*) FROM pg_inherits i WHERE i.inhrelid = c.oid), c.oid"#,
    ),
    (
        "sequence_owner",
        r#"
SELECT 'sequence_owner', n.nspname, s.relname, format('%I.%I', tn.nspname, t.relname),
       format('ALTER SEQUENCE %I.%I OWNED BY %I.%I.%I;', n.nspname, s.relname, tn.nspname, t.relname, a.attname)
FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_namespace n ON n.oid = s.relnamespace
JOIN pg_class t ON t.oid = d.refobjid
JOIN pg_namespace tn ON tn.oid = t.relnamespace
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'
  AND s.oid = ANY($1) AND t.oid = ANY($1)
ORDER BY s.oid"#,
    ),
    (
        "view",
        r#"
SELECT CASE c.relkind WHEN 'm' THEN 'materialized_view' ELSE 'view' END, n.nspname, c.relname, NULL,
       CASE c.relkind
         WHEN 'm' THEN format('CREATE MATERIALIZED VIEW %I.%I AS %s WITH NO DATA;', n.nspname, c.relname,
                              rtrim(pg_get_viewdef(c.oid), ';'))
         ELSE format('CREATE VIEW %I.%I%s AS %s;', n.nspname, c.relname,
                     CASE WHEN c.reloptions IS NOT NULL THEN ' WITH (' || array_to_string(c.reloptions, ', ') || ')' ELSE '' END,
                     rtrim(pg_get_viewdef(c.oid), ';'))
       END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY($1) AND c.relkind IN ('v', 'm')
ORDER BY c.oid"#,
    ),
];

/// Post-data: what is faster or only possible after the rows are in.
pub const POST_DATA: &[(&str, &str)] = &[
    (
        "constraint",
        r#"
SELECT 'constraint', n.nspname, co.conname, format('%I.%I', n.nspname, c.relname),
       format('ALTER TABLE %s %I.%I ADD CONSTRAINT %I %s;',
              CASE WHEN c.relkind = 'p' THEN '' ELSE 'ONLY' END,
              n.nspname, c.relname, co.conname, pg_get_constraintdef(co.oid))
FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY($1) AND co.contype IN ('p', 'u', 'x', 'c') AND co.conislocal
  AND co.conparentid = 0
ORDER BY CASE co.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 WHEN 'x' THEN 2 ELSE 3 END, co.oid"#,
    ),
    (
        "index",
        r#"
SELECT 'index', n.nspname, i.relname, format('%I.%I', n.nspname, c.relname),
       pg_get_indexdef(i.oid) || ';'
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY($1)
  AND NOT EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conindid = i.oid AND co.contype IN ('p', 'u', 'x'))
ORDER BY i.oid"#,
    ),
    (
        "index_attach",
        r#"
SELECT 'index_attach', n.nspname, i.relname, format('%I.%I', n.nspname, c.relname),
       format('ALTER INDEX %I.%I ATTACH PARTITION %I.%I;', pn.nspname, pi.relname, n.nspname, i.relname)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_inherits ih ON ih.inhrelid = i.oid
JOIN pg_class pi ON pi.oid = ih.inhparent JOIN pg_namespace pn ON pn.oid = pi.relnamespace
WHERE c.oid = ANY($1)
  AND NOT EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conindid = i.oid AND co.contype IN ('p', 'u', 'x'))
ORDER BY i.oid"#,
    ),
    (
        "foreign_key",
        r#"
SELECT 'foreign_key', n.nspname, co.conname, format('%I.%I', n.nspname, c.relname),
       format('ALTER TABLE %s %I.%I ADD CONSTRAINT %I %s;',
              CASE WHEN c.relkind = 'p' THEN '' ELSE 'ONLY' END,
              n.nspname, c.relname, co.conname, pg_get_constraintdef(co.oid)),
       format('%I.%I', rn.nspname, r.relname)
FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class r ON r.oid = co.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.oid = ANY($1) AND co.contype = 'f' AND co.conparentid = 0
ORDER BY co.oid"#,
    ),
    (
        "trigger",
        r#"
SELECT 'trigger', n.nspname, t.tgname, format('%I.%I', n.nspname, c.relname),
       pg_get_triggerdef(t.oid) || ';'
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY($1) AND NOT t.tgisinternal AND t.tgparentid = 0
ORDER BY t.oid"#,
    ),
    (
        "row_security",
        r#"
SELECT 'row_security', n.nspname, c.relname, format('%I.%I', n.nspname, c.relname),
       format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY;', n.nspname, c.relname)
       || CASE WHEN c.relforcerowsecurity THEN format(' ALTER TABLE %I.%I FORCE ROW LEVEL SECURITY;', n.nspname, c.relname) ELSE '' END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY($1) AND c.relrowsecurity
ORDER BY c.oid"#,
    ),
    (
        "policy",
        r#"
SELECT 'policy', n.nspname, p.polname, format('%I.%I', n.nspname, c.relname),
       format('CREATE POLICY %I ON %I.%I AS %s FOR %s TO %s%s%s;', p.polname, n.nspname, c.relname,
              CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
              CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                            WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
              (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END, ', ')
               FROM unnest(p.polroles) r),
              CASE WHEN p.polqual IS NOT NULL THEN ' USING (' || pg_get_expr(p.polqual, p.polrelid) || ')' ELSE '' END,
              CASE WHEN p.polwithcheck IS NOT NULL THEN ' WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')' ELSE '' END)
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY($1)
ORDER BY p.oid"#,
    ),
    (
        "comment",
        r#"
SELECT 'comment', n.nspname, c.relname, format('%I.%I', n.nspname, c.relname),
       format('COMMENT ON %s %I.%I%s IS %L;',
              CASE WHEN d.objsubid <> 0 THEN 'COLUMN'
                   ELSE CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                       WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END END,
              n.nspname, c.relname,
              CASE WHEN d.objsubid <> 0 THEN format('.%I', a.attname) ELSE '' END,
              d.description)
FROM pg_description d JOIN pg_class c ON d.classoid = 'pg_class'::regclass AND d.objoid = c.oid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
WHERE c.oid = ANY($1)
UNION ALL
SELECT 'comment', n.nspname, n.nspname, NULL, format('COMMENT ON SCHEMA %I IS %L;', n.nspname, d.description)
FROM pg_description d JOIN pg_namespace n ON d.classoid = 'pg_namespace'::regclass AND d.objoid = n.oid
WHERE n.oid = ANY($2)"#,
    ),
    (
        "owner",
        r#"
SELECT 'owner', o.nspname, o.name, o.tbl, format('ALTER %s %s OWNER TO %I;', o.objtype, o.ident, pg_get_userbyid(o.owner))
FROM (
  SELECT 'SCHEMA' AS objtype, format('%I', n.nspname) AS ident, n.nspowner AS owner, n.nspname, n.nspname AS name, 0 AS ord, n.oid, NULL::text AS tbl
  FROM pg_namespace n WHERE n.oid = ANY($2)
  UNION ALL
  SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
         format('%I.%I', n.nspname, c.relname), c.relowner, n.nspname, c.relname, 1, c.oid, format('%I.%I', n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.oid = ANY($1)
    AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                         AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
  UNION ALL
  SELECT 'ROUTINE', p.oid::regprocedure::text, p.proowner, n.nspname, p.proname, 2, p.oid, NULL
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.oid = ANY($2) AND p.prokind IN ('f', 'p')
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype IN ('e', 'i'))
  UNION ALL
  SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, format('%I.%I', n.nspname, t.typname), t.typowner, n.nspname, t.typname, 3, t.oid, NULL
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE n.oid = ANY($2)
    AND (t.typtype IN ('e', 'r', 'd') OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c')))
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
) o
ORDER BY o.ord, o.oid"#,
    ),
    (
        "acl",
        r#"
SELECT 'acl', o.nspname, o.name, o.tbl,
       format('REVOKE ALL ON %s %s FROM PUBLIC; REVOKE ALL ON %s %s FROM %I;', o.objtype, o.ident, o.objtype, o.ident, pg_get_userbyid(o.owner))
       || coalesce((SELECT string_agg(format(' GRANT %s ON %s %s TO %s%s;', a.privilege_type, o.objtype, o.ident,
                                             CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                                             CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END), '')
                    FROM aclexplode(o.acl) a), '')
FROM (
  SELECT 'SCHEMA' AS objtype, format('%I', n.nspname) AS ident, n.nspacl AS acl, n.nspowner AS owner, n.nspname, n.nspname AS name, 0 AS ord, n.oid, NULL::text AS tbl
  FROM pg_namespace n WHERE n.oid = ANY($2)
  UNION ALL
  SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
         format('%I.%I', n.nspname, c.relname), c.relacl, c.relowner, n.nspname, c.relname, 1, c.oid, format('%I.%I', n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.oid = ANY($1)
  UNION ALL
  SELECT 'ROUTINE', p.oid::regprocedure::text, p.proacl, p.proowner, n.nspname, p.proname, 2, p.oid, NULL
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.oid = ANY($2) AND p.prokind IN ('f', 'p')
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype IN ('e', 'i'))
  UNION ALL
  SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, format('%I.%I', n.nspname, t.typname), t.typacl, t.typowner, n.nspname, t.typname, 3, t.oid, NULL
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE n.oid = ANY($2)
    AND (t.typtype IN ('e', 'r', 'd') OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c')))
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
) o
WHERE o.acl IS NOT NULL
UNION ALL
SELECT 'acl', n.nspname, c.relname || '.' || a.attname, format('%I.%I', n.nspname, c.relname),
       (SELECT string_agg(format('GRANT %s (%I) ON TABLE %I.%I TO %s%s;', x.privilege_type, a.attname, n.nspname, c.relname,
                                 CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END,
                                 CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END), ' ')
        FROM aclexplode(a.attacl) x)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY($1) AND a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped"#,
    ),
    (
        "materialized_view_refresh",
        r#"
SELECT 'materialized_view_refresh', n.nspname, c.relname, format('%I.%I', n.nspname, c.relname),
       format('REFRESH MATERIALIZED VIEW %I.%I;', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY($1) AND c.relkind = 'm' AND c.relispopulated
ORDER BY c.oid"#,
    ),
];

/// Every large object, created empty before the data (its pages are a data file).
pub const LARGE_OBJECTS: &str = r#"
SELECT 'large_object', NULL, m.oid::text, NULL, format('SELECT pg_catalog.lo_create(%s);', m.oid)
FROM pg_largeobject_metadata m WHERE $1 IS NOT NULL AND $2 IS NOT NULL ORDER BY m.oid"#;

pub const LARGE_OBJECT_OWNERS: &str = r#"
SELECT 'owner', NULL, m.oid::text, NULL, format('ALTER LARGE OBJECT %s OWNER TO %I;', m.oid, pg_get_userbyid(m.lomowner))
FROM pg_largeobject_metadata m WHERE $1 IS NOT NULL AND $2 IS NOT NULL ORDER BY m.oid"#;

/// The pages of every large object, streamed by COPY like a table.
pub const LARGE_OBJECT_PAGES: &str =
    "SELECT loid, pageno, data FROM pg_catalog.pg_largeobject ORDER BY loid, pageno";
