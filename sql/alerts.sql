-- Events, alerts and webhooks (issue 21). Every event (a backup that succeeded or failed, an
-- overdue schedule, a drill) is a NOTIFY on channel backup_events and a row of backup.events,
-- the outbox from which a background worker delivers webhooks after the event's transaction
-- commits. A webhook's public part is in backup.webhook_targets (shown by the view
-- backup.webhooks); its URL (which often holds a token: Slack's and Teams' do) and its signing
-- secret are in backup.webhook_secrets, which only the extension owner can read, exactly like
-- backup.storage_secrets: not granted to backup_operator, not registered with
-- pg_extension_config_dump, never in a pg_backup archive.
CREATE TABLE backup.events (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event    text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    payload  jsonb NOT NULL
);
COMMENT ON TABLE backup.events IS 'Events raised by pg_backup (also sent as NOTIFY backup_events); pruned after backup.events_keep_days.';
CREATE INDEX events_at_idx ON backup.events (at);

CREATE TABLE backup.webhook_targets (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    endpoint    text NOT NULL CHECK (endpoint ~ '^https?://'),
    events      text[],
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE backup.webhook_targets IS 'Webhooks: where events are posted (scheme, host and port only; the URL is secret).';
COMMENT ON COLUMN backup.webhook_targets.events IS 'The events posted (NULL: every event).';

CREATE TABLE backup.webhook_secrets (
    name    text PRIMARY KEY REFERENCES backup.webhook_targets (name) ON DELETE CASCADE,
    url     text NOT NULL,
    secret  text
);
COMMENT ON TABLE backup.webhook_secrets IS 'URLs and signing secrets of webhooks; readable by the extension owner only.';

CREATE TABLE backup.webhook_queue (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook          text NOT NULL REFERENCES backup.webhook_targets (name) ON DELETE CASCADE,
    event_id         bigint NOT NULL REFERENCES backup.events (id) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    http_status      integer,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    finished_at      timestamptz
);
COMMENT ON TABLE backup.webhook_queue IS 'One row per event and webhook: its delivery, pending, delivered or failed.';
CREATE INDEX webhook_queue_pending_idx ON backup.webhook_queue (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_queue_event_idx ON backup.webhook_queue (event_id);

-- The webhooks (not their URLs and secrets) survive a plain pg_dump, like the other catalog
-- tables; events and deliveries are history of this database only.
SELECT pg_catalog.pg_extension_config_dump('backup.webhook_targets', '');

CREATE VIEW backup.webhooks AS
SELECT t.name, t.endpoint, t.events, (s.secret IS NOT NULL) AS has_secret,
       t.created_by, t.created_at
FROM backup.webhook_targets t
LEFT JOIN backup.webhook_secrets s USING (name);

CREATE VIEW backup.webhook_deliveries AS
SELECT q.id, q.webhook, q.event_id, e.event, q.status, q.attempts, q.http_status, q.error,
       q.created_at, q.last_attempt_at, q.next_attempt_at, q.finished_at
FROM backup.webhook_queue q
JOIN backup.events e ON e.id = q.event_id;

REVOKE ALL ON backup.events, backup.webhook_targets, backup.webhook_secrets,
              backup.webhook_queue, backup.webhooks, backup.webhook_deliveries FROM PUBLIC;
REVOKE ALL ON backup.webhook_secrets FROM backup_operator;
GRANT SELECT ON backup.events, backup.webhook_targets, backup.webhook_queue, backup.webhooks,
                backup.webhook_deliveries TO backup_operator;
