-- 0005: least privilege: roles, ownership, SECURITY DEFINER API, per-project agent logins, probe functions.

-- update_session_context: the seed's context report; now also raises context/handoff checks at once.
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
    IF p_tokens_used < 0 OR p_tokens_total <= 0 THEN
        RAISE EXCEPTION 'tokens must be positive, got used % of %', p_tokens_used, p_tokens_total USING ERRCODE = '22023';
    END IF;
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._authorize(p_project);
    UPDATE ps_health.ps_sessions
       SET context_usage = round(p_context_percentage / 100, 4),
           estimated_tokens_used = coalesce(p_tokens_used, estimated_tokens_used),
           estimated_tokens_total = coalesce(p_tokens_total, estimated_tokens_total),
           last_context_check = p_now,
           last_activity = greatest(last_activity, p_now)
     WHERE project = p_project;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown project "%": no session registered', left(p_project, 255) USING ERRCODE = 'P0002';
    END IF;
    PERFORM ps_health._eval_context(p_project, p_now);
    PERFORM ps_health._eval_cycle(p_project, p_now);
END;
$$;

-- _spawn: a spawn row by (project, task id), locked, or a clear error.
CREATE OR REPLACE FUNCTION ps_health._spawn(p_project text, p_task_id text)
RETURNS ps_health.active_spawns LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.active_spawns;
BEGIN
    PERFORM ps_health._authorize(p_project);
    SELECT * INTO s FROM ps_health.active_spawns WHERE project = p_project AND task_id = p_task_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown spawn "%" in project "%"', left(p_task_id, 255), left(p_project, 255)
            USING ERRCODE = 'P0002';
    END IF;
    RETURN s;
END;
$$;

-- register_session: start (or restart) the session of a project; releases prompts waiting for it.
CREATE OR REPLACE FUNCTION ps_health.register_session(
    p_project text, p_session_type text DEFAULT 'cli', p_tmux_target text DEFAULT NULL, p_host text DEFAULT NULL,
    p_transcript_path text DEFAULT NULL, p_session_id text DEFAULT NULL, p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    old ps_health.ps_sessions;
    v_id integer;
    v_continues boolean;
BEGIN
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._check_text('tmux_target', p_tmux_target, 255, false);
    PERFORM ps_health._check_text('host', p_host, 255, false);
    PERFORM ps_health._check_text('session_id', p_session_id, 255, false);
    PERFORM ps_health._check_text('transcript_path', p_transcript_path, 4096, false);
    PERFORM ps_health._check_time('p_now', p_now);
    IF p_session_type IS NULL OR p_session_type NOT IN ('cli', 'sdk') THEN
        RAISE EXCEPTION 'session_type must be cli or sdk, got "%"', left(coalesce(p_session_type, 'NULL'), 40)
            USING ERRCODE = '22023';
    END IF;
    PERFORM ps_health._authorize(p_project);
    SELECT * INTO old FROM ps_health.ps_sessions WHERE project = p_project FOR UPDATE;
    -- registering the same live session again (same pane or session id) continues it
    v_continues := old.id IS NOT NULL AND old.ended_at IS NULL
                   AND (old.tmux_target IS NOT DISTINCT FROM p_tmux_target AND old.host IS NOT DISTINCT FROM p_host)
                   AND (p_session_id IS NULL OR old.session_id IS NOT DISTINCT FROM p_session_id);
    INSERT INTO ps_health.ps_sessions AS s (project, session_type, session_id, host, tmux_target, transcript_path,
                                            started_at, last_activity)
    VALUES (p_project, p_session_type, coalesce(p_session_id, p_tmux_target), p_host, p_tmux_target,
            p_transcript_path, p_now, p_now)
    ON CONFLICT (project) DO UPDATE
       SET session_type = EXCLUDED.session_type, session_id = EXCLUDED.session_id, host = EXCLUDED.host,
           tmux_target = EXCLUDED.tmux_target,
           transcript_path = coalesce(EXCLUDED.transcript_path, CASE WHEN v_continues THEN s.transcript_path END),
           started_at = CASE WHEN v_continues THEN s.started_at ELSE EXCLUDED.started_at END,
           last_activity = greatest(s.last_activity, EXCLUDED.last_activity),
           ended_at = NULL, target_state = 'unknown', target_misses = 0,
           context_usage = CASE WHEN v_continues THEN s.context_usage END,
           last_context_check = CASE WHEN v_continues THEN s.last_context_check END,
           estimated_tokens_used = CASE WHEN v_continues THEN s.estimated_tokens_used END,
           handoff_requested_at = CASE WHEN v_continues THEN s.handoff_requested_at END,
           handoff_done_at = CASE WHEN v_continues THEN s.handoff_done_at END,
           handoff_file = CASE WHEN v_continues THEN s.handoff_file END
    RETURNING id INTO v_id;
    IF NOT v_continues AND old.id IS NOT NULL THEN
        -- a new session starts with a fresh context: close the old session's context and handoff states
        PERFORM ps_health._check(p_project, 'context', 'session', 'ok', '{"reason": "new session"}', NULL, p_now);
        PERFORM ps_health._check(p_project, 'context', 'report', 'ok', '{"reason": "new session"}', NULL, p_now);
        PERFORM ps_health._check(p_project, 'handoff', 'session', 'ok', '{"reason": "new session"}', NULL, p_now);
    END IF;
    PERFORM ps_health._eval_orphans(p_project, p_now);
    PERFORM ps_health._release_waiting(p_project);
    RETURN v_id;
END;
$$;

-- heartbeat_session: the session is alive and working.
CREATE OR REPLACE FUNCTION ps_health.heartbeat_session(p_project text, p_now timestamptz DEFAULT now())
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._authorize(p_project);
    PERFORM ps_health._session(p_project);
    UPDATE ps_health.ps_sessions SET last_activity = greatest(last_activity, p_now), ended_at = NULL
     WHERE project = p_project;
    PERFORM ps_health._eval_cycle(p_project, p_now);
END;
$$;

-- end_session: the session is over; spawns it leaves running are orphaned work at once.
CREATE OR REPLACE FUNCTION ps_health.end_session(p_project text, p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._authorize(p_project);
    PERFORM ps_health._session(p_project);
    UPDATE ps_health.ps_sessions SET ended_at = p_now WHERE project = p_project;
    RETURN ps_health._eval_orphans(p_project, p_now);
END;
$$;

-- start_spawn: record a subagent the PS started; returns its id.
CREATE OR REPLACE FUNCTION ps_health.start_spawn(p_project text, p_task_id text, p_task_type text,
                                      p_description text DEFAULT NULL, p_output_file text DEFAULT NULL,
                                      p_pid integer DEFAULT NULL, p_host text DEFAULT NULL,
                                      p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_id integer;
BEGIN
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._check_text('task_id', p_task_id);
    PERFORM ps_health._check_text('task_type', p_task_type, 100);
    PERFORM ps_health._check_text('description', p_description, 10000, false);
    PERFORM ps_health._check_text('output_file', p_output_file, 4096, false);
    PERFORM ps_health._check_text('host', p_host, 255, false);
    PERFORM ps_health._check_time('p_now', p_now);
    IF p_pid IS NOT NULL AND p_pid <= 0 THEN
        RAISE EXCEPTION 'pid must be positive, got %', p_pid USING ERRCODE = '22023';
    END IF;
    PERFORM ps_health._authorize(p_project);
    BEGIN
        INSERT INTO ps_health.active_spawns (project, task_id, task_type, description, output_file, pid, host, spawn_time)
        VALUES (p_project, p_task_id, p_task_type, p_description, p_output_file, p_pid, p_host, p_now)
        RETURNING id INTO v_id;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION 'spawn "%" already exists in project "%"', p_task_id, p_project USING ERRCODE = '23505';
    END;
    UPDATE ps_health.ps_sessions SET last_activity = greatest(last_activity, p_now) WHERE project = p_project;
    RETURN v_id;
END;
$$;

-- probe_sessions: a host's live sessions, for the reactor's probes (pane and transcript to look at).
CREATE OR REPLACE FUNCTION ps_health.probe_sessions(p_host text)
RETURNS TABLE (project varchar, tmux_target varchar, transcript_path text, estimated_tokens_total integer)
LANGUAGE sql STABLE AS $$
    SELECT s.project, s.tmux_target, s.transcript_path, s.estimated_tokens_total
      FROM ps_health.ps_sessions s
     WHERE s.host = p_host AND s.ended_at IS NULL
     ORDER BY s.project
$$;

-- probe_spawns: a host's open spawns (their own host, or none and their session is here).
CREATE OR REPLACE FUNCTION ps_health.probe_spawns(p_host text)
RETURNS TABLE (id integer, output_file text, pid integer)
LANGUAGE sql STABLE AS $$
    SELECT sp.id, sp.output_file, sp.pid
      FROM ps_health.active_spawns sp
      LEFT JOIN ps_health.ps_sessions s ON s.project = sp.project
     WHERE sp.status IN ('running', 'stalled', 'abandoned')
       AND (sp.host = p_host OR (sp.host IS NULL AND s.host = p_host))
     ORDER BY sp.id
$$;

-- respond: the PS's answer to a check; acknowledges the problem and stops its reminders.
CREATE OR REPLACE FUNCTION ps_health.respond(p_check_id integer, p_text text, p_now timestamptz DEFAULT now())
RETURNS ps_health.health_checks LANGUAGE plpgsql AS $$
DECLARE
    c ps_health.health_checks;
BEGIN
    PERFORM ps_health._check_text('text', p_text, 10000);
    PERFORM ps_health._check_time('p_now', p_now);
    SELECT * INTO c FROM ps_health.health_checks WHERE id = p_check_id FOR UPDATE;
    IF c.id IS NULL THEN
        RAISE EXCEPTION 'unknown check id %', coalesce(p_check_id::text, 'NULL') USING ERRCODE = 'P0002';
    END IF;
    -- an agent answers only its own project's checks
    PERFORM ps_health._authorize(c.project);
    UPDATE ps_health.health_checks SET ps_response = p_text WHERE id = p_check_id RETURNING * INTO c;
    UPDATE ps_health.check_state SET acknowledged_at = p_now
     WHERE project = c.project AND check_type = c.check_type AND subject = c.subject AND status <> 'ok';
    RETURN c;
END;
$$;

-- _handoff_done: a handoff was written (reported by the PS, or its file seen by a probe):
-- close the request, reset the context expectation, and start the automatic cycle when set.
CREATE OR REPLACE FUNCTION ps_health._handoff_done(p_project text, p_file text, p_source text, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.ps_sessions;
    v_id integer;
    v_step integer;
    v_reset bigint;
    v_resume bigint;
BEGIN
    PERFORM ps_health._check_text('file', p_file, 4096);
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._authorize(p_project);
    s := ps_health._session(p_project);
    UPDATE ps_health.ps_sessions
       SET handoff_done_at = p_now, handoff_file = p_file, context_usage = NULL, last_context_check = NULL,
           last_activity = greatest(last_activity, p_now), cycle_state = NULL, cycle_resumed_at = NULL
     WHERE id = s.id;
    -- every handoff is a row in the audit, requested or not
    INSERT INTO ps_health.health_checks (project, check_time, check_type, status, details, subject, action_taken)
    VALUES (p_project, p_now, 'handoff', 'ok',
            jsonb_build_object('subject', 'session', 'file', p_file, 'requested_at', s.handoff_requested_at,
                               'source', p_source),
            'session', 'handoff ' || p_source)
    RETURNING id INTO v_id;
    INSERT INTO ps_health.check_state (project, check_type, subject, status, since, last_check_id, details)
    VALUES (p_project, 'handoff', 'session', 'ok', p_now, v_id, jsonb_build_object('file', p_file))
    ON CONFLICT (project, check_type, subject) DO UPDATE
       SET status = 'ok', since = p_now, last_check_id = v_id, details = EXCLUDED.details,
           reminders = 0, next_reminder_at = NULL, acknowledged_at = NULL;
    PERFORM ps_health._check(p_project, 'context', 'session', 'ok', '{"reason": "handoff done"}', NULL, p_now);

    IF ps_health.setting('auto_cycle', p_project)::boolean AND ps_health._route(s) = 'tmux' THEN
        PERFORM ps_health._check(p_project, 'handoff', 'cycle', 'warning',
            jsonb_build_object('step', 'reset_queued', 'file', p_file), NULL, p_now, false);
        SELECT last_check_id INTO v_step FROM ps_health.check_state
         WHERE project = p_project AND check_type = 'handoff' AND subject = 'cycle';
        UPDATE ps_health.health_checks SET action_taken = 'queued the reset command and the resume prompt'
         WHERE id = v_step;
        -- the resume waits for the reset (after_id); both skip the rate cap and never merge with alerts
        INSERT INTO ps_health.prompts (project, host, target, severity, state, not_before, created_at, kind, text)
        VALUES (p_project, s.host, s.tmux_target, 'warning', 'pending', p_now, p_now, 'reset',
                ps_health.setting('reset_command', p_project))
        RETURNING id INTO v_reset;
        INSERT INTO ps_health.prompts (project, host, target, severity, state, not_before, created_at, kind, after_id, text)
        VALUES (p_project, s.host, s.tmux_target, 'warning', 'pending', p_now, p_now, 'resume', v_reset,
                ps_health._render('handoff.resume', jsonb_build_object('project', p_project, 'file', p_file)))
        RETURNING id INTO v_resume;
        INSERT INTO ps_health.prompt_items (prompt_id, check_id, line)
        VALUES (v_reset, v_step, 'reset'), (v_resume, v_step, 'resume');
        UPDATE ps_health.ps_sessions SET cycle_state = 'reset_queued' WHERE id = s.id;
    END IF;
    RETURN v_id;
END;
$$;

-- system_health: age of the last sweep, reactors seen recently, whether pg_cron is sweeping.
CREATE OR REPLACE FUNCTION ps_health.system_health(p_now timestamptz DEFAULT now())
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_last timestamptz;
    v_cron boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron');
    v_job boolean;
BEGIN
    SELECT max(started_at) INTO v_last FROM ps_health.sweep_runs;
    -- pg_cron's job table shows each user only their own jobs: judge the scheduler by its sweeps
    SELECT EXISTS (SELECT 1 FROM ps_health.sweep_runs WHERE source = 'pg_cron' AND swept_at > p_now - interval '3 minutes')
      INTO v_job;
    RETURN jsonb_build_object(
        'last_sweep_at', v_last,
        'sweep_age_seconds', round(extract(epoch FROM p_now - v_last)::numeric, 1),
        'reactors', coalesce((SELECT jsonb_agg(jsonb_build_object('worker', worker, 'host', host, 'last_seen', last_seen)
                                              ORDER BY last_seen DESC)
                                FROM ps_health.reactors
                               WHERE last_seen > p_now - ps_health._setting_interval('reactor_seen_window')), '[]'),
        'pg_cron', v_cron,
        'sweep_job', v_job);
END;
$$;

-- prune: keep every table within the configured retention (finished spawns and ended sessions go
-- after retention_other); returns rows deleted per table.
CREATE OR REPLACE FUNCTION ps_health.prune(p_now timestamptz DEFAULT now())
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

-- _authorize: refuse an agent login acting for a project that is not its own.
-- grant_agent / revoke_agent: let a login act as the agent of a project (owner only).
-- _apply_privileges: owner, SECURITY DEFINER, grants. The migration runner calls it after every
-- migration, because CREATE OR REPLACE FUNCTION resets a function's security and settings.

-- ---------------------------------------------------------------- from sql/schema/70_roles.sql
-- ps-health: least privilege. ps_health_owner owns every object; the public API runs as the
-- owner (SECURITY DEFINER, fixed search_path), and each role may call only its part of it:
--   ps_health_reactor  claim/complete and the probe reports
--   ps_health_agent    what a PS needs: sessions, context, spawns, answers, handoffs
--   ps_health_reader   the views and the status functions
-- Nothing is granted to PUBLIC. Agents act only for the projects listed for their login in
-- agent_projects ('*' = all), so an agent cannot answer another project's checks.

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

-- Which role may call which public function.
CREATE TABLE ps_health.role_functions (
    role      name NOT NULL CHECK (role IN ('ps_health_reactor', 'ps_health_agent', 'ps_health_reader')),
    function  name NOT NULL,
    PRIMARY KEY (role, function)
);
INSERT INTO ps_health.role_functions (role, function)
SELECT 'ps_health_reactor', f FROM unnest(ARRAY[
    'claim_prompts', 'complete_prompt', 'extend_leases', 'release_prompts', 'report_output_mtimes',
    'report_session_targets', 'report_spawn_pids', 'report_context', 'report_handoff_file', 'handoff_watches',
    'probe_sessions', 'probe_spawns', 'run_checks', 'system_health', 'setting', 'update_session_context']) f
UNION ALL
SELECT 'ps_health_agent', f FROM unnest(ARRAY[
    'register_session', 'heartbeat_session', 'end_session', 'report_context', 'update_session_context',
    'start_spawn', 'report_spawn_output', 'finish_spawn', 'set_spawn_status', 'respond', 'report_handoff',
    'statusline', 'project_status', 'system_health', 'setting', 'get_stalled_spawns',
    'get_sessions_needing_context_check']) f
UNION ALL
SELECT 'ps_health_reader', f FROM unnest(ARRAY[
    'project_status', 'system_health', 'setting', 'get_stalled_spawns', 'get_sessions_needing_context_check']) f;

-- Logins allowed to act as an agent for a project ('*': every project).
CREATE TABLE ps_health.agent_projects (
    login    name NOT NULL,
    project  varchar(255) NOT NULL,
    PRIMARY KEY (login, project)
);

-- _authorize: refuse an agent login acting for a project that is not its own.
CREATE FUNCTION ps_health._authorize(p_project text)
RETURNS void LANGUAGE plpgsql STABLE AS $$
BEGIN
    -- session_user is the login even inside SECURITY DEFINER functions
    IF pg_has_role(session_user, 'ps_health_agent', 'MEMBER')
       AND NOT pg_has_role(session_user, 'ps_health_owner', 'MEMBER')
       AND NOT EXISTS (SELECT 1 FROM ps_health.agent_projects a
                        WHERE a.login = session_user AND a.project IN (p_project, '*')) THEN
        RAISE EXCEPTION 'login "%" may not act for project "%"', session_user, left(p_project, 255)
            USING ERRCODE = '42501';
    END IF;
END;
$$;

-- grant_agent / revoke_agent: let a login act as the agent of a project (owner only).
CREATE FUNCTION ps_health.grant_agent(p_login name, p_project text DEFAULT '*')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_login) THEN
        RAISE EXCEPTION 'no login "%"', p_login USING ERRCODE = '22023';
    END IF;
    INSERT INTO ps_health.agent_projects VALUES (p_login, p_project) ON CONFLICT DO NOTHING;
END;
$$;

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
        -- readers read everything (status, history, the outbox) and write nothing
        EXECUTE format('GRANT SELECT ON %s TO ps_health_reader', r.rel);
    END LOOP;
    GRANT SELECT ON ps_health.active_monitoring_targets, ps_health.health_check_summary TO ps_health_agent;
    FOR r IN SELECT p.oid::regprocedure AS sig, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'ps_health' LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO ps_health_owner', r.sig);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', r.sig);
        -- the API runs as the owner; prune keeps its caller's rights because it also trims
        -- cron.job_run_details, which only pg_cron's own user may touch
        IF r.proname !~ '^(_|trg_)' AND r.proname NOT IN ('update_updated_at_column', 'prune', 'job_prune',
                                                         'grant_agent') THEN
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

-- The migration runner (and `ps-health drift`) call _apply_privileges() after every file.
