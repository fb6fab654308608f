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
    EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER', f);
  END LOOP;
END
$$;
