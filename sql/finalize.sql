-- Runs last: lock down every function of the extension. EXECUTE is revoked from PUBLIC and
-- granted to backup_operator; the functions run as the extension owner (SECURITY DEFINER)
-- and pin search_path themselves on entry (see README, "Security model").
-- A change to the schedules wakes the scheduler worker as soon as it commits.
CREATE FUNCTION backup.schedules_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM backup.wake_scheduler();
  RETURN NULL;
END
$$;
CREATE TRIGGER schedules_changed AFTER INSERT OR UPDATE OR DELETE ON backup.schedules
  FOR EACH STATEMENT EXECUTE FUNCTION backup.schedules_changed();

-- What is running now and how far along, from the shared memory the running processes write.
CREATE VIEW backup.progress AS
SELECT b.id AS backup_id, b.label, b.schedule, b.started_at,
       now() - b.started_at AS elapsed,
       r.tables_done, r.tables_total, r.current_table,
       b.pid, b.created_by, r.rows_done, r.bytes_done, r.jobs
FROM backup.backups b
LEFT JOIN backup.runs_in_progress() r ON r.kind = 'backup' AND r.id = b.id
WHERE b.status = 'running';
GRANT SELECT ON backup.progress TO backup_operator;

DO $$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
    WHERE p.pronamespace = 'backup'::regnamespace
  LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO backup_operator', f);
    -- The functions users call are SECURITY INVOKER and switch to the extension owner
    -- themselves after taking current_user as the caller (src/security.rs, INVOKER_FUNCTIONS;
    -- issue 9): a SECURITY DEFINER function of another role that calls them gets that role's
    -- rights, never those of the session's role. The rest (trigger, progress) are DEFINER.
    EXECUTE format('ALTER FUNCTION %s SECURITY %s', f,
                   CASE WHEN (SELECT proname FROM pg_catalog.pg_proc WHERE oid = f) = ANY (ARRAY[
                          'create', 'verify', 'delete', 'prune', 'rescan', 'add_storage',
                          'drop_storage', 'restore', 'schedule', 'unschedule', 'run_schedule',
                          'trust_key', 'untrust_key', 'archives', 'add_webhook', 'drop_webhook', 'drill'])
                        THEN 'INVOKER' ELSE 'DEFINER' END);
  END LOOP;
END
$$;

-- The trigger function that raises backup events runs as the extension owner (SECURITY DEFINER
-- above) in the session of whoever ends a backup, and calls no enter() that would pin the
-- search_path: the function pins it, as every SECURITY DEFINER function must.
ALTER FUNCTION backup.backups_event() SET search_path TO pg_catalog, pg_temp;
