-- Retention and the bodies of the pg_cron jobs.

-- prune: keep every table within the configured retention (finished spawns and ended sessions go
-- after retention_other); returns rows deleted per table.
CREATE FUNCTION ps_health.prune(p_now timestamptz DEFAULT now())
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_ok timestamptz := p_now - ps_health._setting_interval('retention_ok');
    v_other timestamptz := p_now - ps_health._setting_interval('retention_other');
    v_checks integer;
    v_runs integer;
    v_prompts integer;
    v_spawns integer;
    v_sessions integer;
    v_cron integer := 0;
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);  -- 'infinity' would prune every row
    DELETE FROM ps_health.prompts
     WHERE state IN ('delivered', 'failed', 'suppressed', 'expired') AND coalesce(completed_at, created_at) < v_other;
    GET DIAGNOSTICS v_prompts = ROW_COUNT;
    DELETE FROM ps_health.check_state WHERE status = 'ok' AND since < v_ok;
    -- the check a current state points at stays, so the audit never loses an open problem's record
    DELETE FROM ps_health.health_checks h
     WHERE ((h.status = 'ok' AND h.check_time < v_ok) OR h.check_time < v_other)
       AND NOT EXISTS (SELECT 1 FROM ps_health.check_state s WHERE s.last_check_id = h.id)
       AND NOT EXISTS (SELECT 1 FROM ps_health.prompt_items i JOIN ps_health.prompts p ON p.id = i.prompt_id
                        WHERE i.check_id = h.id AND p.state IN ('waiting', 'pending', 'claimed'));
    GET DIAGNOSTICS v_checks = ROW_COUNT;
    DELETE FROM ps_health.sweep_runs WHERE swept_at < v_ok;
    GET DIAGNOSTICS v_runs = ROW_COUNT;
    DELETE FROM ps_health.active_spawns WHERE status IN ('completed', 'failed') AND completed_at < v_other;
    GET DIAGNOSTICS v_spawns = ROW_COUNT;
    DELETE FROM ps_health.ps_sessions s WHERE s.ended_at < v_other
       AND NOT EXISTS (SELECT 1 FROM ps_health.active_spawns sp WHERE sp.project = s.project);
    GET DIAGNOSTICS v_sessions = ROW_COUNT;
    IF to_regclass('cron.job_run_details') IS NOT NULL THEN
        BEGIN
            EXECUTE 'DELETE FROM cron.job_run_details WHERE end_time < $1' USING now() - (p_now - v_ok);
            GET DIAGNOSTICS v_cron = ROW_COUNT;
        EXCEPTION WHEN insufficient_privilege THEN
            v_cron := -1;
        END;
    END IF;
    RETURN jsonb_build_object('health_checks', v_checks, 'sweep_runs', v_runs, 'prompts', v_prompts,
                              'active_spawns', v_spawns, 'ps_sessions', v_sessions, 'cron_job_run_details', v_cron);
END;
$$;

-- job_sweep / job_prune: what the pg_cron jobs call.
CREATE FUNCTION ps_health.job_sweep()
RETURNS jsonb LANGUAGE sql AS $$ SELECT ps_health.run_checks(now(), 'pg_cron') $$;

CREATE FUNCTION ps_health.job_prune()
RETURNS jsonb LANGUAGE sql AS $$ SELECT ps_health.prune(now()) $$;
