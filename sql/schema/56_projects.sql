-- Projects as a whole: removing one from the live state (a finished project, a typo, the demo).

-- forget_project: remove a project's live state -- its session, spawns, open problems, queued
-- prompts, mute and setting overrides. The audit (health_checks, finished prompts) stays until
-- retention. Refused (P0002) when nothing is known about the project.
CREATE FUNCTION ps_health.forget_project(p_project text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_sessions integer;
    v_spawns integer;
    v_states integer;
    v_open integer;
    v_prompts integer;
    v_mutes integer;
    v_settings integer;
BEGIN
    PERFORM ps_health._check_text('project', p_project);
    -- the project's lock, as every writer of its rows takes it first: a sweep or a call for the project
    -- waits until it is gone, then finds nothing (a sweep skips it meanwhile)
    PERFORM ps_health._lock_project(p_project);
    DELETE FROM ps_health.prompts WHERE project = p_project AND state IN ('waiting', 'pending', 'claimed');
    GET DIAGNOSTICS v_prompts = ROW_COUNT;
    WITH gone AS (DELETE FROM ps_health.check_state WHERE project = p_project RETURNING status)
    SELECT count(*), count(*) FILTER (WHERE status <> 'ok') INTO v_states, v_open FROM gone;
    DELETE FROM ps_health.active_spawns WHERE project = p_project;
    GET DIAGNOSTICS v_spawns = ROW_COUNT;
    DELETE FROM ps_health.mutes WHERE project = p_project;
    GET DIAGNOSTICS v_mutes = ROW_COUNT;
    PERFORM ps_health._lock_settings();
    DELETE FROM ps_health.settings WHERE project = p_project;
    GET DIAGNOSTICS v_settings = ROW_COUNT;
    DELETE FROM ps_health.ps_sessions WHERE project = p_project;
    GET DIAGNOSTICS v_sessions = ROW_COUNT;
    IF v_sessions + v_spawns + v_states + v_prompts + v_mutes + v_settings = 0 THEN
        RAISE EXCEPTION 'unknown project "%": nothing to forget', left(p_project, 255) USING ERRCODE = 'P0002',
            HINT = 'ps-health status lists the projects';
    END IF;
    RETURN jsonb_build_object('project', p_project, 'session', v_sessions, 'spawns', v_spawns,
                              'open_problems', v_open, 'queued_prompts', v_prompts, 'mute', v_mutes,
                              'settings', v_settings);
END;
$$;
