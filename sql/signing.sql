-- Signed archives (issue 17): the public keys of other servers whose archives this database
-- trusts (disaster recovery, a copy of production in staging). The cluster's own key is always
-- trusted and is not listed here; its secret half is a file in the data directory that SQL
-- never shows (backup.signing_key() gives the public half). Rows are added and removed by
-- superusers only, through backup.trust_key() and backup.untrust_key().
CREATE TABLE backup.trusted_keys (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    public_key  text NOT NULL UNIQUE CHECK (public_key ~ '^ed25519:[A-Za-z0-9+/]{43}=$'),
    key_id      text NOT NULL UNIQUE CHECK (key_id ~ '^[0-9a-f]{16}$'),
    added_by    text NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE backup.trusted_keys IS 'Public keys of other servers whose signed archives verify and restore here.';

-- Public keys only: a plain pg_dump keeps them, like the other catalog tables.
SELECT pg_catalog.pg_extension_config_dump('backup.trusted_keys', '');

REVOKE ALL ON backup.trusted_keys FROM PUBLIC;
GRANT SELECT ON backup.trusted_keys TO backup_operator;
