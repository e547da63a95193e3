-- 0008: pane identity (the pane a session's target was when the reactor first saw it), the login
-- that registered the session, the 'pane' check type, how agent CLIs' screens look (agent
-- profiles) and the agent a session runs.

ALTER TABLE ps_health.ps_sessions ADD COLUMN target_identity varchar(255), ADD COLUMN registered_by varchar(255),
    ADD COLUMN agent varchar(64);
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
