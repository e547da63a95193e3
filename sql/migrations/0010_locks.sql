-- 0010: the locks of projects, hosts, the settings and the sweep are rows of an owner-only table instead of
-- advisory locks any login could take; a running reactor is told by its listener connection (pid, login and
-- application_name) instead of by an advisory lock.
-- create table: ps_health.locks
ALTER TABLE ps_health.reactors ADD COLUMN listener_name text;
-- a reactor running through the upgrade keeps counting as running: its listener's name as it is now
UPDATE ps_health.reactors r SET listener_name = a.application_name
  FROM pg_stat_activity a WHERE a.pid = r.backend_pid AND a.usename = r.login AND a.datname = current_database();
