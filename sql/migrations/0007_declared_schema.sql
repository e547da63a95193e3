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

-- Pane identity (the pane a session's target was when the reactor first saw it), the login that
-- registered the session, the 'pane' check type, and how agent CLIs' input lines look.
ALTER TABLE ps_health.ps_sessions ADD COLUMN target_identity varchar(255), ADD COLUMN registered_by varchar(255);
CREATE INDEX idx_ps_sessions_pane ON ps_health.ps_sessions (host, tmux_target) WHERE ended_at IS NULL;
CREATE INDEX idx_ps_sessions_identity ON ps_health.ps_sessions (target_identity) WHERE ended_at IS NULL;
ALTER TABLE ps_health.health_checks DROP CONSTRAINT health_checks_check_type_check,
    ADD CONSTRAINT health_checks_check_type_check
        CHECK (check_type IN ('spawn', 'context', 'handoff', 'orphaned_work', 'pane'));
CREATE TABLE ps_health.agent_profiles (
    program         varchar(64) PRIMARY KEY,
    input_pattern   text NOT NULL CONSTRAINT agent_profiles_input_pattern_check CHECK (('' ~ input_pattern) IS NOT NULL),
    ignore_pattern  text CONSTRAINT agent_profiles_ignore_pattern_check
                    CHECK (ignore_pattern IS NULL OR ('' ~ ignore_pattern) IS NOT NULL),
    clear_keys      text[] NOT NULL DEFAULT '{}',
    description     text
);
-- Prompts now start with a marker ([ps-health #ID]) the database adds; the old default texts
-- carried the "[ps-health]" tag themselves.
UPDATE ps_health.prompt_templates SET body = '{project}:' WHERE key = 'header' AND body = '[ps-health] {project}:';
UPDATE ps_health.prompt_templates
   SET body = '{project}: your context was cleared after a handoff. Read {file} and continue the work it describes.'
 WHERE key = 'handoff.resume'
   AND body = '[ps-health] {project}: your context was cleared after a handoff. Read {file} and continue the work it describes.';

-- Agent profiles for the real CLIs: how to recognise each, its screens (ready, busy, dialog), long
-- text, its reset command and where its context figures are; and the agent a session runs.
ALTER TABLE ps_health.agent_profiles
    ADD COLUMN command_pattern text CONSTRAINT agent_profiles_command_pattern_check
        CHECK (command_pattern IS NULL OR ('' ~ command_pattern) IS NOT NULL),
    ADD COLUMN reset_command varchar(100),
    ADD COLUMN ready_pattern text CONSTRAINT agent_profiles_ready_pattern_check
        CHECK (ready_pattern IS NULL OR ('' ~ ready_pattern) IS NOT NULL),
    ADD COLUMN busy_pattern text CONSTRAINT agent_profiles_busy_pattern_check
        CHECK (busy_pattern IS NULL OR ('' ~ busy_pattern) IS NOT NULL),
    ADD COLUMN dialog_pattern text CONSTRAINT agent_profiles_dialog_pattern_check
        CHECK (dialog_pattern IS NULL OR ('' ~ dialog_pattern) IS NOT NULL),
    ADD COLUMN paste_above integer CONSTRAINT agent_profiles_paste_above_check CHECK (paste_above >= 0),
    ADD COLUMN placeholder_pattern text CONSTRAINT agent_profiles_placeholder_pattern_check
        CHECK (placeholder_pattern IS NULL OR ('' ~ placeholder_pattern) IS NOT NULL),
    ADD COLUMN context_source varchar(32) CONSTRAINT agent_profiles_context_source_check
        CHECK (context_source IN ('claude-transcript', 'codex-rollout', 'gemini-chat')),
    ADD COLUMN context_window integer CONSTRAINT agent_profiles_context_window_check CHECK (context_window > 0);
ALTER TABLE ps_health.ps_sessions ADD COLUMN agent varchar(64);
