-- 0007: a database built by the pre-release migrations 0001-0006 becomes the declared schema.
-- The reference rows that were tables are views of the code now (setting definitions, spawn
-- transitions, role grants); the code itself is reloaded from sql/schema after this file.

DROP TABLE ps_health.setting_definitions CASCADE;  -- with it the settings.key foreign key
DROP TABLE ps_health.spawn_transitions;
DROP TABLE ps_health.role_functions;

ALTER TABLE ps_health.ps_sessions ADD COLUMN context_held_since timestamptz;

-- Reactor logins are bound to hosts, and a worker id to the login that claimed with it.
-- create table: ps_health.reactor_hosts
ALTER TABLE ps_health.reactors ADD COLUMN login name;

-- whether a stored setting is allowed, kept by a trigger of the code (which also fills it in)
ALTER TABLE ps_health.settings ADD COLUMN valid boolean NOT NULL DEFAULT false;

-- A running reactor holds its host's lock on its listener connection (reactor_start).
ALTER TABLE ps_health.reactors ADD COLUMN backend_pid integer, ADD COLUMN started_at timestamptz;

-- Pane identity (the pane a session's target was when the reactor first saw it), the login that
-- registered the session, the 'pane' check type, and how agent CLIs' input lines look.
ALTER TABLE ps_health.ps_sessions ADD COLUMN target_identity varchar(255), ADD COLUMN registered_by varchar(255);
CREATE INDEX idx_ps_sessions_pane ON ps_health.ps_sessions (host, tmux_target) WHERE ended_at IS NULL;
CREATE INDEX idx_ps_sessions_identity ON ps_health.ps_sessions (target_identity) WHERE ended_at IS NULL;
ALTER TABLE ps_health.health_checks DROP CONSTRAINT health_checks_check_type_check,
    ADD CONSTRAINT health_checks_check_type_check
        CHECK (check_type IN ('spawn', 'context', 'handoff', 'orphaned_work', 'pane'));
-- create table: ps_health.agent_profiles

-- Prompts now start with a marker ([ps-health #ID]) the database adds; the old default texts
-- carried the "[ps-health]" tag themselves.
UPDATE ps_health.prompt_templates SET body = '{project}:' WHERE key = 'header' AND body = '[ps-health] {project}:';
UPDATE ps_health.prompt_templates
   SET body = '{project}: your context was cleared after a handoff. Read {file} and continue the work it describes.'
 WHERE key = 'handoff.resume'
   AND body = '[ps-health] {project}: your context was cleared after a handoff. Read {file} and continue the work it describes.';

-- Agent profiles for the real CLIs: how to recognise each, its screens (ready, busy, dialog), long
-- text, its reset command and where its context figures are; and the agent a session runs.
ALTER TABLE ps_health.ps_sessions ADD COLUMN agent varchar(64);
