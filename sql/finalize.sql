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
