-- 0007: a database built by the pre-release migrations 0001-0006 becomes the declared schema.
-- The reference rows that were tables are views of the code now (setting definitions, spawn
-- transitions, role grants); the code itself is reloaded from sql/schema after this file.

DROP TABLE ps_health.setting_definitions CASCADE;  -- with it the settings.key foreign key
DROP TABLE ps_health.spawn_transitions;
DROP TABLE ps_health.role_functions;

ALTER TABLE ps_health.ps_sessions ADD COLUMN context_held_since timestamptz;

-- Reactor logins are bound to hosts, and a worker id to the login that claimed with it.
CREATE TABLE ps_health.reactor_hosts (
    login  name NOT NULL,
    host   varchar(255) NOT NULL,
    PRIMARY KEY (login, host)
);
ALTER TABLE ps_health.reactors ADD COLUMN login name;

-- whether a stored setting is allowed, kept by a trigger of the code (which also fills it in)
ALTER TABLE ps_health.settings ADD COLUMN valid boolean NOT NULL DEFAULT false;

-- A running reactor holds its host's lock on its listener connection (reactor_start).
ALTER TABLE ps_health.reactors ADD COLUMN backend_pid integer, ADD COLUMN started_at timestamptz;
