-- Least privilege. ps_health_owner owns every object; the public API runs as the owner (SECURITY
-- DEFINER, fixed search_path), and each role may call only its part of it:
--   ps_health_reactor  claim/complete and the probe reports, for the hosts granted to its login
--                      (reactor_hosts), and the agent's calls for sessions on those hosts
--   ps_health_agent    what a PS needs: sessions, context, spawns, answers, handoffs, for the
--                      projects granted to its login (agent_projects), on the hosts granted to
--                      it (agent_hosts; none: any host)
--   ps_health_reader   the views, the tables and the status functions, every project
-- Nothing is granted to PUBLIC. '*' grants every project or every host. _authorize decides who
-- may act; what an agent sees (status, statusline, views) is filtered by the same decision.

-- The roles are cluster-wide: create them once, keep them on rollback.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['ps_health_owner', 'ps_health_reactor', 'ps_health_agent', 'ps_health_reader'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
    -- whoever migrates must be able to hand objects to the owner (superusers already can)
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT ps_health_owner TO %I', current_user);
    END IF;
END;
$$;

-- role_functions: which role may call which public function (_apply_privileges grants them).
CREATE VIEW ps_health.role_functions AS
SELECT 'ps_health_reactor'::name AS role, f::name AS function FROM unnest(ARRAY[
    'claim_prompts', 'complete_prompt', 'complete_prompts', 'extend_leases', 'release_prompts', 'locked_prompts',
    'report_output_mtimes',
    'report_session_targets', 'report_spawn_pids', 'report_context', 'report_handoff_file', 'handoff_watches',
    'probe_sessions', 'probe_spawns', 'run_checks', 'system_health', 'setting', 'update_session_context',
    -- what a PS's hooks on the reactor's host report through it (55_agent_facts.sql), for sessions there
    'register_session', 'heartbeat_session', 'end_session', 'start_spawn', 'report_spawn_output', 'finish_spawn',
    'record_session_start', 'record_context', 'record_spawn_end', 'record_spawn_launch', 'record_subagent_stop',
    'record_compaction', 'record_session_end', 'host_status', 'reactor_start', 'reactor_stop',
    'bind_target', 'report_session_panes']) f
UNION ALL
SELECT 'ps_health_agent'::name, f::name FROM unnest(ARRAY[
    'register_session', 'heartbeat_session', 'end_session', 'report_context', 'update_session_context',
    'start_spawn', 'report_spawn_output', 'finish_spawn', 'set_spawn_status', 'respond', 'report_handoff',
    'statusline', 'project_status', 'system_health', 'setting', 'list_settings', 'get_stalled_spawns',
    'get_sessions_needing_context_check', 'record_compaction', '_sees_all', '_may_see']) f
UNION ALL
SELECT 'ps_health_reader'::name, f::name FROM unnest(ARRAY[
    'project_status', 'system_health', 'setting', 'list_settings', 'get_stalled_spawns',
    'get_sessions_needing_context_check', '_sees_all', '_may_see', 'prompt_reason', 'doctor_checks',
    'list_checks', 'list_prompts']) f;

-- _apply_privileges: owner, SECURITY DEFINER, grants. The migration runner calls it after every
-- migration, because CREATE OR REPLACE FUNCTION resets a function's security and settings.
CREATE FUNCTION ps_health._apply_privileges()
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    EXECUTE 'ALTER SCHEMA ps_health OWNER TO ps_health_owner';
    REVOKE ALL ON SCHEMA ps_health FROM PUBLIC;
    GRANT USAGE ON SCHEMA ps_health TO ps_health_reactor, ps_health_agent, ps_health_reader;
    FOR r IN SELECT c.oid::regclass AS rel, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'ps_health' AND c.relkind IN ('r', 'v') LOOP
        -- a table's serial sequences follow it to the new owner
        EXECUTE format('ALTER %s %s OWNER TO ps_health_owner', CASE r.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, r.rel);
        EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', r.rel);
        -- readers read everything (status, history, the outbox) and write nothing; setting
        -- overrides only through setting_overrides, which hides the secrets' values
        IF r.rel = 'ps_health.settings'::regclass THEN
            EXECUTE format('REVOKE ALL ON %s FROM ps_health_reader', r.rel);
        ELSE
            EXECUTE format('GRANT SELECT ON %s TO ps_health_reader', r.rel);
        END IF;
    END LOOP;
    GRANT SELECT ON ps_health.active_monitoring_targets, ps_health.health_check_summary TO ps_health_agent;
    FOR r IN SELECT p.oid::regprocedure AS sig, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'ps_health' LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO ps_health_owner', r.sig);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', r.sig);
        -- the API runs as the owner; prune keeps its caller's rights because it also trims
        -- cron.job_run_details, which only pg_cron's own user may touch
        -- (and the views' filters: they run as the view's reader, who cannot read agent_projects)
        IF (r.proname !~ '^(_|trg_)' OR r.proname IN ('_may_see', '_sees_all'))
           AND r.proname NOT IN ('update_updated_at_column', 'prune', 'job_prune', 'grant_agent', 'revoke_agent',
                                 'grant_agent_host', 'revoke_agent_host', 'grant_reactor', 'revoke_reactor') THEN
            EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = ps_health, pg_temp', r.sig);
        END IF;
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS sig, rf.role FROM ps_health.role_functions rf
               JOIN pg_proc p ON p.proname = rf.function
               JOIN pg_namespace n ON n.oid = p.pronamespace AND n.nspname = 'ps_health' LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', r.sig, r.role);
    END LOOP;
END;
$$;
