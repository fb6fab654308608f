-- Storage targets (issue 12): where off-site copies of backups go.
-- The public part of a target is in backup.storage_targets (shown by the view
-- backup.storages); its secrets are in backup.storage_secrets, which only the extension owner
-- can read: not granted to backup_operator, not registered with pg_extension_config_dump (so
-- no pg_dump holds it), and never in a pg_backup archive (the backup schema is excluded).

ALTER TABLE backup.backups ADD COLUMN storage text, ADD COLUMN storage_url text;
COMMENT ON COLUMN backup.backups.storage IS 'Storage target holding the remote copy (NULL: local only).';
COMMENT ON COLUMN backup.backups.storage_url IS 'Where the remote copy is (no secrets).';

CREATE TABLE backup.storage_targets (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    url         text NOT NULL CHECK (url ~ '^(s3|gs|az|file)://'),
    options     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE backup.storage_targets IS 'Storage targets for off-site copies (no secrets here).';

CREATE TABLE backup.storage_secrets (
    name     text PRIMARY KEY REFERENCES backup.storage_targets (name) ON DELETE CASCADE,
    secrets  jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE backup.storage_secrets IS 'Credentials of storage targets; readable by the extension owner only.';

-- The targets (not their secrets) survive a plain pg_dump, like the other catalog tables.
SELECT pg_catalog.pg_extension_config_dump('backup.storage_targets', '');

CREATE VIEW backup.storages AS
SELECT t.name, t.url, t.options,
       (s.secrets IS NOT NULL AND s.secrets <> '{}'::jsonb) AS has_credentials,
       t.created_at
FROM backup.storage_targets t
LEFT JOIN backup.storage_secrets s USING (name);

REVOKE ALL ON backup.storage_targets, backup.storage_secrets, backup.storages FROM PUBLIC;
REVOKE ALL ON backup.storage_secrets FROM backup_operator;
GRANT SELECT ON backup.storage_targets, backup.storages TO backup_operator;
