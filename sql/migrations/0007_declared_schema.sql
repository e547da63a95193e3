-- 0007: a database built by the pre-release migrations 0001-0006 becomes the declared schema.
-- The reference rows that were tables are views of the code now (setting definitions, spawn
-- transitions, role grants); the code itself is reloaded from sql/schema after this file.

DROP TABLE ps_health.setting_definitions CASCADE;  -- with it the settings.key foreign key
DROP TABLE ps_health.spawn_transitions;
DROP TABLE ps_health.role_functions;

-- A running reactor holds its host's lock on its listener connection (reactor_start).
ALTER TABLE ps_health.reactors ADD COLUMN backend_pid integer, ADD COLUMN started_at timestamptz;
