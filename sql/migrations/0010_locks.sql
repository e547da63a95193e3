-- 0010: the locks of projects, hosts, the settings and the sweep are rows of an owner-only table instead of
-- advisory locks any login could take; a running reactor is told by its listener connection (pid, login and
-- application_name) instead of by an advisory lock.
-- create table: ps_health.locks
ALTER TABLE ps_health.reactors ADD COLUMN listener_name text;
