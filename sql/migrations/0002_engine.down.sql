-- Roll back 0002: drop the engine's tables, functions, trigger and columns, and restore the
-- seed's own versions of the functions 0002 replaced.

DROP TRIGGER IF EXISTS trg_active_spawns_status ON ps_health.active_spawns;
DROP TABLE ps_health.prompt_items, ps_health.prompts, ps_health.reactors, ps_health.check_state,
           ps_health.sweep_runs, ps_health.prompt_templates, ps_health.mutes, ps_health.settings,
           ps_health.setting_definitions, ps_health.spawn_transitions;

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'ps_health'
                AND p.proname NOT IN ('get_stalled_spawns', 'get_sessions_needing_context_check',
                                      'update_session_context', 'record_health_check', 'update_updated_at_column')
    LOOP
        EXECUTE 'DROP FUNCTION ' || f;
    END LOOP;
END;
$$;

DROP INDEX ps_health.idx_active_spawns_open;
ALTER TABLE ps_health.ps_sessions
    DROP COLUMN host, DROP COLUMN tmux_target, DROP COLUMN transcript_path, DROP COLUMN ended_at,
    DROP COLUMN target_state, DROP COLUMN target_misses, DROP COLUMN handoff_requested_at,
    DROP COLUMN handoff_done_at, DROP COLUMN handoff_file;
ALTER TABLE ps_health.active_spawns DROP COLUMN host, DROP COLUMN pid, DROP COLUMN pid_misses, DROP COLUMN stalled_at;
ALTER TABLE ps_health.health_checks DROP COLUMN subject;

CREATE OR REPLACE FUNCTION ps_health.get_stalled_spawns(p_project varchar, p_now timestamptz DEFAULT now())
RETURNS TABLE (id integer, task_id varchar, task_type varchar, spawn_time timestamptz, minutes_stalled integer)
LANGUAGE sql STABLE AS $$
    SELECT s.id, s.task_id, s.task_type, s.spawn_time,
           floor(extract(epoch FROM p_now - coalesce(s.last_output_change, s.spawn_time)) / 60)::integer
      FROM ps_health.active_spawns s
     WHERE s.status = 'running'
       AND (p_project IS NULL OR s.project = p_project)
       AND coalesce(s.last_output_change, s.spawn_time) <= p_now - interval '15 minutes'
     ORDER BY s.spawn_time;
$$;

CREATE OR REPLACE FUNCTION ps_health.get_sessions_needing_context_check(p_now timestamptz DEFAULT now())
RETURNS TABLE (project varchar, session_type varchar, session_id varchar,
               minutes_since_check integer, current_usage numeric)
LANGUAGE sql STABLE AS $$
    SELECT s.project, s.session_type, s.session_id,
           floor(extract(epoch FROM p_now - s.last_context_check) / 60)::integer,
           s.context_usage
      FROM ps_health.ps_sessions s
     WHERE s.last_activity > p_now - interval '1 hour'
       AND (s.last_context_check IS NULL OR s.last_context_check <= p_now - interval '10 minutes')
     ORDER BY s.project;
$$;

CREATE OR REPLACE FUNCTION ps_health.update_session_context(
    p_project varchar, p_context_percentage numeric,
    p_tokens_used integer DEFAULT NULL, p_tokens_total integer DEFAULT NULL,
    p_now timestamptz DEFAULT now())
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_context_percentage IS NULL OR p_context_percentage < 0 OR p_context_percentage > 100 THEN
        RAISE EXCEPTION 'context_percentage must be between 0 and 100, got %', coalesce(p_context_percentage::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    UPDATE ps_health.ps_sessions
       SET context_usage = round(p_context_percentage / 100, 4),
           estimated_tokens_used = coalesce(p_tokens_used, estimated_tokens_used),
           estimated_tokens_total = coalesce(p_tokens_total, estimated_tokens_total),
           last_context_check = p_now,
           last_activity = greatest(last_activity, p_now)
     WHERE project = p_project;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown project "%": no session registered', p_project
            USING ERRCODE = 'P0002';
    END IF;
END;
$$;
