-- Schedules (issue 21): which try of its fire time a scheduled backup was: 1 the first,
-- 2 the first retry, ... (NULL: not taken by a schedule). After storage.sql's columns, in the
-- order an updated catalog has them.
ALTER TABLE backup.backups ADD COLUMN attempt integer CHECK (attempt > 0);
