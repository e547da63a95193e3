-- ps-health: the public API for agents (sessions, context, spawns, answers, handoffs), for
-- probes (output times, liveness), for the reactor (claim, complete, release), for operators
-- (mute, status) and for pg_cron (sweep and prune jobs). Events raise their checks in the
-- caller's transaction, without waiting for the sweep.

-- ================================================================ seed functions, now driven by settings

-- get_stalled_spawns: running spawns without output for the stall time (15 min by default).
CREATE OR REPLACE FUNCTION ps_health.get_stalled_spawns(p_project varchar, p_now timestamptz DEFAULT now())
RETURNS TABLE (id integer, task_id varchar, task_type varchar, spawn_time timestamptz, minutes_stalled integer)
LANGUAGE sql STABLE AS $$
    SELECT s.id, s.task_id, s.task_type, s.spawn_time,
           ps_health._minutes(coalesce(s.last_output_change, s.spawn_time), p_now)
      FROM ps_health.active_spawns s
     WHERE s.status = 'running'
       AND (p_project IS NULL OR s.project = p_project)
       AND coalesce(s.last_output_change, s.spawn_time) <= p_now - ps_health._setting_interval('stall_after', s.project)
     ORDER BY s.spawn_time;
$$;

-- get_sessions_needing_context_check: active sessions without a context report for the check interval.
CREATE OR REPLACE FUNCTION ps_health.get_sessions_needing_context_check(p_now timestamptz DEFAULT now())
RETURNS TABLE (project varchar, session_type varchar, session_id varchar,
               minutes_since_check integer, current_usage numeric)
LANGUAGE sql STABLE AS $$
    SELECT s.project, s.session_type, s.session_id, ps_health._minutes(s.last_context_check, p_now), s.context_usage
      FROM ps_health.ps_sessions s
     WHERE s.ended_at IS NULL
       AND s.last_activity > p_now - ps_health._setting_interval('activity_window', s.project)
       AND (s.last_context_check IS NULL
            OR s.last_context_check <= p_now - ps_health._setting_interval('context_check_interval', s.project))
     ORDER BY s.project;
$$;

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

-- ================================================================ sessions

-- register_session: start (or restart) the session of a project; releases prompts waiting for it.
CREATE FUNCTION ps_health.register_session(
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

-- _release_waiting: prompts that waited for a deliverable session go to its pane now.
CREATE FUNCTION ps_health._release_waiting(p_project text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    UPDATE ps_health.prompts p
       SET state = 'pending', host = s.host, channel = ps_health._route(s),
           target = CASE WHEN ps_health._route(s) = 'tmux' THEN s.tmux_target END
      FROM ps_health.ps_sessions s
     WHERE p.project = p_project AND p.state = 'waiting' AND s.project = p_project
       AND ps_health._route(s) IS NOT NULL;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END;
$$;

-- heartbeat_session: the session is alive and working.
CREATE FUNCTION ps_health.heartbeat_session(p_project text, p_now timestamptz DEFAULT now())
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
CREATE FUNCTION ps_health.end_session(p_project text, p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._authorize(p_project);
    PERFORM ps_health._session(p_project);
    UPDATE ps_health.ps_sessions SET ended_at = p_now WHERE project = p_project;
    RETURN ps_health._eval_orphans(p_project, p_now);
END;
$$;

-- report_context: context usage as a percentage, or as tokens used of the window.
CREATE FUNCTION ps_health.report_context(p_project text, p_percent numeric DEFAULT NULL,
                                         p_tokens_used integer DEFAULT NULL, p_tokens_total integer DEFAULT NULL,
                                         p_now timestamptz DEFAULT now())
RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.ps_sessions;
    v_total integer;
    v_percent numeric := p_percent;
BEGIN
    s := ps_health._session(p_project);
    IF v_percent IS NULL THEN
        v_total := coalesce(p_tokens_total, s.estimated_tokens_total);
        IF p_tokens_used IS NULL OR p_tokens_used < 0 THEN
            RAISE EXCEPTION 'tokens_used must be a non-negative number when no percent is given, got %',
                coalesce(p_tokens_used::text, 'NULL') USING ERRCODE = '22023';
        END IF;
        IF v_total IS NULL OR v_total <= 0 THEN
            RAISE EXCEPTION 'tokens_total must be positive, got %', coalesce(v_total::text, 'NULL') USING ERRCODE = '22023';
        END IF;
        v_percent := least(100, round(100.0 * p_tokens_used / v_total, 2));
    END IF;
    PERFORM ps_health.update_session_context(p_project, v_percent, p_tokens_used, p_tokens_total, p_now);
    RETURN v_percent;
END;
$$;

-- ================================================================ spawns

-- trg_active_spawns_status: enforce the spawn transition table for every writer.
CREATE FUNCTION ps_health.trg_active_spawns_status()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ps_health.spawn_transitions WHERE from_status = OLD.status AND to_status = NEW.status) THEN
        RAISE EXCEPTION 'spawn "%" in project "%" cannot go from % to %', OLD.task_id, OLD.project, OLD.status, NEW.status
            USING ERRCODE = '55000';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER trg_active_spawns_status BEFORE UPDATE OF status ON ps_health.active_spawns
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION ps_health.trg_active_spawns_status();

-- start_spawn: record a subagent the PS started; returns its id.
CREATE FUNCTION ps_health.start_spawn(p_project text, p_task_id text, p_task_type text,
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

-- _output_seen: a spawn produced output at p_at; a stalled one runs again and recovers (ok, no prompt).
CREATE FUNCTION ps_health._output_seen(p_id integer, p_at timestamptz, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    sp ps_health.active_spawns;
BEGIN
    UPDATE ps_health.active_spawns SET last_output_change = p_at
     WHERE id = p_id AND p_at > coalesce(last_output_change, '-infinity') RETURNING * INTO sp;
    IF sp.id IS NOT NULL AND sp.status IN ('stalled', 'abandoned') AND p_at > coalesce(sp.stalled_at, '-infinity') THEN
        UPDATE ps_health.active_spawns SET status = 'running', stalled_at = NULL WHERE id = p_id;
        RETURN ps_health._check(sp.project, 'spawn', sp.task_id, 'ok',
            jsonb_build_object('task_id', sp.task_id, 'task_type', sp.task_type, 'reason', 'output resumed'), NULL, p_now);
    END IF;
    RETURN CASE WHEN sp.id IS NULL THEN 0 ELSE 1 END;
END;
$$;

-- report_spawn_output: the spawn produced output (now, or at p_at).
CREATE FUNCTION ps_health.report_spawn_output(p_project text, p_task_id text, p_at timestamptz DEFAULT NULL,
                                              p_now timestamptz DEFAULT now())
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    sp ps_health.active_spawns;
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._check_time('p_at', coalesce(p_at, p_now));
    sp := ps_health._spawn(p_project, p_task_id);
    PERFORM ps_health._output_seen(sp.id, least(coalesce(p_at, p_now), p_now), p_now);
END;
$$;

-- report_output_mtimes: a probe's batch of output-file modification times (one round trip).
CREATE FUNCTION ps_health.report_output_mtimes(p_spawn_ids integer[], p_mtimes timestamptz[],
                                               p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_n integer := 0;
BEGIN
    IF coalesce(cardinality(p_spawn_ids), 0) <> coalesce(cardinality(p_mtimes), 0) THEN
        RAISE EXCEPTION 'spawn_ids and mtimes must have the same length (% and %)',
            cardinality(p_spawn_ids), cardinality(p_mtimes) USING ERRCODE = '22023';
    END IF;
    PERFORM ps_health._check_time('p_now', p_now);
    FOR r IN
        SELECT sp.id, least(m.mtime, p_now) AS mtime
          FROM unnest(p_spawn_ids, p_mtimes) AS m(id, mtime)
          JOIN ps_health.active_spawns sp ON sp.id = m.id
         WHERE m.mtime IS NOT NULL AND isfinite(m.mtime)
           AND sp.status IN ('running', 'stalled', 'abandoned')
           AND m.mtime > coalesce(sp.last_output_change, sp.spawn_time)
    LOOP
        v_n := v_n + ps_health._output_seen(r.id, r.mtime, p_now);
    END LOOP;
    RETURN v_n;
END;
$$;

-- finish_spawn: the spawn ended; a non-zero exit code or an error is critical at once.
CREATE FUNCTION ps_health.finish_spawn(p_project text, p_task_id text, p_exit_code integer DEFAULT 0,
                                       p_error text DEFAULT NULL, p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    sp ps_health.active_spawns;
    v_status text;
    v_error text := left(nullif(btrim(p_error), ''), 2000);
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
    sp := ps_health._spawn(p_project, p_task_id);
    v_status := CASE WHEN coalesce(p_exit_code, 0) = 0 AND v_error IS NULL THEN 'completed' ELSE 'failed' END;
    UPDATE ps_health.active_spawns
       SET status = v_status, exit_code = p_exit_code, error_message = v_error, completed_at = p_now, stalled_at = NULL
     WHERE id = sp.id;
    IF v_status = 'failed' THEN
        PERFORM ps_health._check(p_project, 'spawn', p_task_id, 'critical',
            jsonb_build_object('task_id', p_task_id, 'task_type', sp.task_type,
                               'exit_code', coalesce(p_exit_code::text, 'none'),
                               'error', coalesce(left(regexp_replace(v_error, '[[:cntrl:]]+', ' ', 'g'), 200), 'no error message')),
            'spawn.failed', p_now);
    ELSE
        PERFORM ps_health._check(p_project, 'spawn', p_task_id, 'ok',
            jsonb_build_object('task_id', p_task_id, 'reason', 'completed'), NULL, p_now);
    END IF;
    UPDATE ps_health.ps_sessions SET last_activity = greatest(last_activity, p_now) WHERE project = p_project;
    PERFORM ps_health._eval_orphans(p_project, p_now);
    RETURN v_status;
END;
$$;

-- set_spawn_status: move a spawn to another status; the transition table refuses the rest.
CREATE FUNCTION ps_health.set_spawn_status(p_project text, p_task_id text, p_status text,
                                           p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    sp ps_health.active_spawns;
BEGIN
    sp := ps_health._spawn(p_project, p_task_id);
    IF p_status IN ('completed', 'failed') THEN
        RETURN ps_health.finish_spawn(p_project, p_task_id, CASE WHEN p_status = 'completed' THEN 0 ELSE 1 END,
                                      CASE WHEN p_status = 'failed' THEN 'marked failed' END, p_now);
    END IF;
    UPDATE ps_health.active_spawns
       SET status = p_status, stalled_at = CASE WHEN p_status = 'stalled' THEN p_now END
     WHERE id = sp.id;
    RETURN p_status;
END;
$$;

-- ================================================================ liveness facts from probes

-- report_session_targets: whether each project's tmux target was seen; gone after N misses in a row.
CREATE FUNCTION ps_health.report_session_targets(p_projects text[], p_states text[], p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_n integer := 0;
BEGIN
    IF coalesce(cardinality(p_projects), 0) <> coalesce(cardinality(p_states), 0) THEN
        RAISE EXCEPTION 'projects and states must have the same length' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_states) st WHERE st IS NULL OR st NOT IN ('seen', 'missing', 'unknown')) THEN
        RAISE EXCEPTION 'target states must be seen, missing or unknown' USING ERRCODE = '22023';
    END IF;
    PERFORM ps_health._check_time('p_now', p_now);
    FOR r IN
        UPDATE ps_health.ps_sessions s
           SET target_misses = CASE f.state WHEN 'seen' THEN 0 ELSE s.target_misses + 1 END,
               target_state = CASE
                   WHEN f.state = 'seen' THEN 'seen'
                   WHEN s.target_misses + 1 >= ps_health._setting('target_missing_after', s.project)::integer THEN 'gone'
                   ELSE 'missing' END
          FROM unnest(p_projects, p_states) AS f(project, state)
         WHERE s.project = f.project AND f.state <> 'unknown' AND s.ended_at IS NULL
        RETURNING s.project, s.target_state
    LOOP
        IF r.target_state = 'gone' THEN
            v_n := v_n + ps_health._eval_orphans(r.project, p_now);
        ELSIF r.target_state = 'seen' THEN
            PERFORM ps_health._release_waiting(r.project);
        END IF;
    END LOOP;
    RETURN v_n;
END;
$$;

-- report_spawn_pids: whether each spawn's process is alive; dead N times in a row fails the spawn.
CREATE FUNCTION ps_health.report_spawn_pids(p_spawn_ids integer[], p_states text[], p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_n integer := 0;
BEGIN
    IF coalesce(cardinality(p_spawn_ids), 0) <> coalesce(cardinality(p_states), 0) THEN
        RAISE EXCEPTION 'spawn_ids and states must have the same length' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_states) st WHERE st IS NULL OR st NOT IN ('alive', 'dead', 'unknown')) THEN
        RAISE EXCEPTION 'pid states must be alive, dead or unknown' USING ERRCODE = '22023';
    END IF;
    PERFORM ps_health._check_time('p_now', p_now);
    FOR r IN
        UPDATE ps_health.active_spawns sp
           SET pid_misses = CASE f.state WHEN 'alive' THEN 0 ELSE sp.pid_misses + 1 END
          FROM unnest(p_spawn_ids, p_states) AS f(id, state)
         WHERE sp.id = f.id AND f.state <> 'unknown' AND sp.status IN ('running', 'stalled', 'abandoned')
        RETURNING sp.id, sp.project, sp.task_id, sp.pid, sp.task_type, sp.pid_misses
    LOOP
        IF r.pid_misses >= ps_health._setting('pid_missing_after', r.project)::integer THEN
            UPDATE ps_health.active_spawns
               SET status = 'failed', completed_at = p_now,
                   error_message = format('process %s vanished without reporting an exit code', r.pid)
             WHERE id = r.id;
            v_n := v_n + ps_health._check(r.project, 'spawn', r.task_id, 'critical',
                jsonb_build_object('task_id', r.task_id, 'task_type', r.task_type, 'pid', r.pid), 'spawn.vanished', p_now);
        END IF;
    END LOOP;
    RETURN v_n;
END;
$$;

-- probe_sessions: a host's live sessions, for the reactor's probes (pane and transcript to look at).
CREATE FUNCTION ps_health.probe_sessions(p_host text)
RETURNS TABLE (project varchar, tmux_target varchar, transcript_path text, estimated_tokens_total integer)
LANGUAGE sql STABLE AS $$
    SELECT s.project, s.tmux_target, s.transcript_path, s.estimated_tokens_total
      FROM ps_health.ps_sessions s
     WHERE s.host = p_host AND s.ended_at IS NULL
     ORDER BY s.project
$$;

-- probe_spawns: a host's open spawns (their own host, or none and their session is here).
CREATE FUNCTION ps_health.probe_spawns(p_host text)
RETURNS TABLE (id integer, output_file text, pid integer)
LANGUAGE sql STABLE AS $$
    SELECT sp.id, sp.output_file, sp.pid
      FROM ps_health.active_spawns sp
      LEFT JOIN ps_health.ps_sessions s ON s.project = sp.project
     WHERE sp.status IN ('running', 'stalled', 'abandoned')
       AND (sp.host = p_host OR (sp.host IS NULL AND s.host = p_host))
     ORDER BY sp.id
$$;

-- ================================================================ answers, handoffs, mute

-- respond: the PS's answer to a check; acknowledges the problem and stops its reminders.
CREATE FUNCTION ps_health.respond(p_check_id integer, p_text text, p_now timestamptz DEFAULT now())
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
CREATE FUNCTION ps_health._handoff_done(p_project text, p_file text, p_source text, p_now timestamptz)
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

    IF ps_health._setting('auto_cycle', p_project)::boolean AND ps_health._route(s) = 'tmux' THEN
        PERFORM ps_health._check(p_project, 'handoff', 'cycle', 'warning',
            jsonb_build_object('step', 'reset_queued', 'file', p_file), NULL, p_now, false);
        SELECT last_check_id INTO v_step FROM ps_health.check_state
         WHERE project = p_project AND check_type = 'handoff' AND subject = 'cycle';
        UPDATE ps_health.health_checks SET action_taken = 'queued the reset command and the resume prompt'
         WHERE id = v_step;
        -- the resume waits for the reset (after_id); both skip the rate cap and never merge with alerts
        INSERT INTO ps_health.prompts (project, host, target, severity, state, not_before, created_at, kind, text)
        VALUES (p_project, s.host, s.tmux_target, 'warning', 'pending', p_now, p_now, 'reset',
                ps_health._setting('reset_command', p_project))
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

-- report_handoff: the PS wrote its handoff and says so.
CREATE FUNCTION ps_health.report_handoff(p_project text, p_file text, p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE sql AS $$
    SELECT ps_health._handoff_done(p_project, p_file, 'reported done', p_now)
$$;

-- report_handoff_file: a probe saw a handoff file (a fact); it counts as the handoff done only
-- when a handoff is requested and the file is newer than the request. Returns the check id or NULL.
CREATE FUNCTION ps_health.report_handoff_file(p_project text, p_file text, p_mtime timestamptz,
                                              p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.ps_sessions;
BEGIN
    PERFORM ps_health._check_time('p_mtime', p_mtime);
    s := ps_health._session(p_project);
    IF s.handoff_requested_at IS NULL OR s.handoff_done_at >= s.handoff_requested_at
       OR p_mtime <= s.handoff_requested_at THEN
        RETURN NULL;
    END IF;
    RETURN ps_health._handoff_done(p_project, p_file, 'file seen by the reactor', p_now);
END;
$$;

-- handoff_watches: for a host's reactor, the folders to watch for handoff files (open requests only).
CREATE FUNCTION ps_health.handoff_watches(p_host text)
RETURNS TABLE (project varchar, folder text, pattern text, requested_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT s.project, ps_health._setting('handoff_folder', s.project), ps_health._setting('handoff_pattern', s.project),
           s.handoff_requested_at
      FROM ps_health.ps_sessions s
     WHERE s.host = p_host AND s.ended_at IS NULL AND s.handoff_requested_at IS NOT NULL
       AND (s.handoff_done_at IS NULL OR s.handoff_done_at < s.handoff_requested_at)
       AND ps_health._setting('handoff_folder', s.project) <> ''
$$;

-- mute_project: record checks but send no prompt to a project until p_until.
CREATE FUNCTION ps_health.mute_project(p_project text, p_until timestamptz, p_reason text DEFAULT NULL,
                                       p_now timestamptz DEFAULT now())
RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._check_time('until', p_until);
    IF p_until <= p_now THEN
        RAISE EXCEPTION 'until must be in the future, got %', p_until USING ERRCODE = '22023';
    END IF;
    INSERT INTO ps_health.mutes (project, until, reason, created_at) VALUES (p_project, p_until, left(p_reason, 1000), p_now)
    ON CONFLICT (project) DO UPDATE SET until = EXCLUDED.until, reason = EXCLUDED.reason, created_at = EXCLUDED.created_at;
    RETURN p_until;
END;
$$;

-- unmute_project: prompts go out again; returns whether a mute was lifted.
CREATE FUNCTION ps_health.unmute_project(p_project text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ps_health.mutes WHERE project = p_project;
    RETURN FOUND;
END;
$$;

-- ================================================================ the reactor's side of the outbox

-- claim_prompts: hand out up to p_limit deliverable prompts of one host under a lease
-- (FOR UPDATE SKIP LOCKED, so reactors never get the same row). Expired leases are claimable
-- again; a prompt out of attempts fails; a prompt whose problems all recovered expires.
CREATE FUNCTION ps_health.claim_prompts(p_host text, p_worker text, p_limit integer DEFAULT 10,
                                        p_lease_seconds integer DEFAULT 60, p_now timestamptz DEFAULT now())
RETURNS TABLE (id bigint, project varchar, target varchar, severity varchar, text text, attempts integer,
               submit_delay_ms integer, idle_seconds numeric, max_defer_seconds numeric, check_ids integer[],
               channel varchar, kind varchar, command jsonb, timeout_seconds numeric,
               check_id integer, check_type varchar, check_status varchar)
LANGUAGE plpgsql AS $$
DECLARE
    v_left integer := p_limit;
    v_ids bigint[];
    v_n integer;
BEGIN
    PERFORM ps_health._check_text('host', p_host);
    PERFORM ps_health._check_text('worker', p_worker);
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 1000 THEN
        RAISE EXCEPTION 'limit must be between 1 and 1000, got %', p_limit USING ERRCODE = '22023';
    END IF;
    IF p_lease_seconds IS NULL OR p_lease_seconds < 1 OR p_lease_seconds > 86400 THEN
        RAISE EXCEPTION 'lease_seconds must be between 1 and 86400, got %', p_lease_seconds USING ERRCODE = '22023';
    END IF;
    INSERT INTO ps_health.reactors (worker, host, last_seen) VALUES (p_worker, p_host, p_now)
    ON CONFLICT (worker) DO UPDATE SET host = EXCLUDED.host, last_seen = EXCLUDED.last_seen;

    -- Rounds: lock the next deliverable prompts, close those out of attempts or whose problems all
    -- recovered, claim the rest; again while closed ones left room. Only the rows taken are looked
    -- at, so a claim costs the same with ten or ten thousand prompts waiting.
    LOOP
        SELECT array_agg(q.id ORDER BY q.id) INTO v_ids FROM (
            SELECT p.id FROM ps_health.prompts p
             WHERE (p.host = p_host OR (p.host IS NULL AND p.channel = 'escalation' AND p.state IN ('pending', 'claimed')))
               AND ((p.state = 'pending' AND p.not_before <= p_now) OR (p.state = 'claimed' AND p.lease_until < p_now))
               -- a step of the handoff cycle waits until the step before it was delivered
               AND (p.after_id IS NULL OR EXISTS (SELECT 1 FROM ps_health.prompts b
                                                   WHERE b.id = p.after_id AND b.state = 'delivered'))
             ORDER BY p.id
             LIMIT v_left
             FOR UPDATE SKIP LOCKED) q;
        EXIT WHEN v_ids IS NULL;

        UPDATE ps_health.prompts p
           SET state = 'failed', outcome = 'failed', completed_at = p_now, lease_until = NULL,
               detail = format('gave up after %s attempts; last: %s', p.attempts, coalesce(p.detail, 'lease expired'))
         WHERE p.id = ANY (v_ids)
           AND p.attempts >= ps_health._setting('prompt_max_attempts', p.project)::integer;
        UPDATE ps_health.prompts p
           SET state = 'expired', completed_at = p_now, detail = 'every problem it reported has recovered'
         WHERE p.id = ANY (v_ids) AND p.state = 'pending' AND p.kind = 'alert'
           AND NOT EXISTS (SELECT 1 FROM ps_health.prompt_items i
                             JOIN ps_health.health_checks c ON c.id = i.check_id
                             JOIN ps_health.check_state st
                               ON st.project = c.project AND st.check_type = c.check_type AND st.subject = c.subject
                            WHERE i.prompt_id = p.id AND st.status <> 'ok');

        RETURN QUERY
        WITH claimed AS (
            UPDATE ps_health.prompts p
               SET state = 'claimed', worker = p_worker, lease_until = p_now + make_interval(secs => p_lease_seconds),
                   attempts = p.attempts + 1, claimed_at = p_now
             WHERE p.id = ANY (v_ids) AND p.state IN ('pending', 'claimed')
            RETURNING p.*)
        SELECT c.id, c.project, c.target, c.severity, c.text, c.attempts,
               (extract(epoch FROM ps_health._setting_interval('submit_delay', c.project)) * 1000)::integer,
               ps_health._setting_numeric('idle_seconds', c.project),
               extract(epoch FROM ps_health._setting_interval(
                   CASE c.severity WHEN 'critical' THEN 'critical_max_defer' ELSE 'max_defer' END, c.project))::numeric,
               ARRAY(SELECT i.check_id FROM ps_health.prompt_items i WHERE i.prompt_id = c.id ORDER BY i.check_id),
               c.channel, c.kind,
               CASE c.channel WHEN 'command' THEN ps_health._setting('command_channel', c.project)::jsonb
                              WHEN 'escalation' THEN ps_health._setting('escalation_command', c.project)::jsonb END,
               extract(epoch FROM ps_health._setting_interval('command_timeout', c.project))::numeric,
               first.id, first.check_type, first.status
          FROM claimed c
          LEFT JOIN LATERAL (SELECT h.id, h.check_type, h.status FROM ps_health.prompt_items i
                               JOIN ps_health.health_checks h ON h.id = i.check_id
                              WHERE i.prompt_id = c.id
                              ORDER BY (h.status = 'critical') DESC, h.id LIMIT 1) first ON true
         ORDER BY c.id;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        EXIT WHEN v_n = cardinality(v_ids) OR cardinality(v_ids) < v_left;
        v_left := v_left - v_n;
    END LOOP;
END;
$$;

-- complete_prompts: the reactor's outcomes for a batch of claimed prompts (delivered, target_missing,
-- failed), one set-based pass; writes the checks' action_taken. A failed attempt goes back to pending
-- after the retry delay (times the attempt); out of attempts it fails. All or nothing: one unknown
-- prompt, bad outcome or prompt not claimed by the worker refuses the batch and changes nothing.
CREATE FUNCTION ps_health.complete_prompts(p_worker text, p_ids bigint[], p_outcomes text[],
                                           p_details text[] DEFAULT NULL, p_now timestamptz DEFAULT now())
RETURNS TABLE (id bigint, state varchar) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_n integer := cardinality(p_ids);
    v_bad record;
    v_steps ps_health.prompts[];
    v_step ps_health.prompts;
BEGIN
    IF p_ids IS NULL OR p_outcomes IS NULL OR cardinality(p_outcomes) <> v_n
       OR (p_details IS NOT NULL AND cardinality(p_details) <> v_n) THEN
        RAISE EXCEPTION 'ids, outcomes and details must be arrays of one length, got %, % and %',
            coalesce(cardinality(p_ids)::text, 'NULL'), coalesce(cardinality(p_outcomes)::text, 'NULL'),
            coalesce(cardinality(p_details)::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    IF v_n > 10000 THEN
        RAISE EXCEPTION 'at most 10000 outcomes per call, got %', v_n USING ERRCODE = '22023';
    END IF;
    SELECT u.o INTO v_bad FROM unnest(p_outcomes) u(o) WHERE u.o IS NULL OR u.o NOT IN ('delivered', 'target_missing', 'failed') LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'outcome must be delivered, target_missing or failed, got "%"', left(coalesce(v_bad.o, 'NULL'), 40)
            USING ERRCODE = '22023';
    END IF;
    SELECT u.i INTO v_bad FROM unnest(p_ids) u(i) GROUP BY u.i HAVING u.i IS NULL OR count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'prompt % is given more than one outcome', coalesce(v_bad.i::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    PERFORM 1 FROM ps_health.prompts p WHERE p.id = ANY (p_ids) ORDER BY p.id FOR UPDATE;
    SELECT u.i INTO v_bad FROM unnest(p_ids) u(i) WHERE NOT EXISTS (SELECT 1 FROM ps_health.prompts p WHERE p.id = u.i) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'unknown prompt %', v_bad.i USING ERRCODE = 'P0002';
    END IF;
    SELECT p.id, p.state INTO v_bad FROM ps_health.prompts p
     WHERE p.id = ANY (p_ids) AND (p.state <> 'claimed' OR p.worker IS DISTINCT FROM p_worker) ORDER BY p.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'prompt % is % and not claimed by worker "%"', v_bad.id, v_bad.state, left(p_worker, 255)
            USING ERRCODE = '55000';
    END IF;
    -- the cycle's steps and escalations as they were before this outcome
    SELECT array_agg(p ORDER BY p.id) INTO v_steps FROM ps_health.prompts p WHERE p.id = ANY (p_ids) AND p.kind <> 'alert';

    RETURN QUERY
    WITH input AS (
        SELECT u.id, u.outcome, left(u.detail, 1000) AS detail, u.n
          FROM unnest(p_ids, p_outcomes, coalesce(p_details, array_fill(NULL::text, ARRAY[v_n])))
               WITH ORDINALITY AS u(id, outcome, detail, n)),
    decided AS (
        SELECT i.*, p.project, p.attempts, p.kind, p.channel, p.target,
               CASE WHEN i.outcome = 'delivered' THEN 'delivered'
                    WHEN p.attempts >= ps_health._setting('prompt_max_attempts', p.project)::integer THEN 'failed'
                    ELSE 'pending' END AS new_state
          FROM input i JOIN ps_health.prompts p ON p.id = i.id),
    updated AS (
        UPDATE ps_health.prompts p
           SET state = d.new_state, outcome = d.outcome, detail = d.detail, lease_until = NULL,
               worker = CASE WHEN d.new_state = 'pending' THEN NULL ELSE p.worker END,
               completed_at = CASE WHEN d.new_state = 'pending' THEN NULL ELSE p_now END,
               not_before = CASE WHEN d.new_state = 'pending'
                                 THEN p_now + ps_health._setting_interval('prompt_retry_delay', p.project) * p.attempts
                                 ELSE p.not_before END
          FROM decided d WHERE p.id = d.id
        RETURNING p.id),
    audited AS (
        UPDATE ps_health.health_checks c
           SET action_taken = CASE d.new_state
                   WHEN 'delivered' THEN format('prompt #%s delivered to %s at %s', d.id,
                                                CASE d.channel WHEN 'tmux' THEN d.target ELSE 'the command channel' END,
                                                to_char(p_now AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'))
                   WHEN 'failed' THEN format('prompt #%s failed after %s attempts: %s%s', d.id, d.attempts, d.outcome,
                                             coalesce(': ' || d.detail, ''))
                   ELSE format('prompt #%s attempt %s: %s%s; will retry', d.id, d.attempts, d.outcome,
                               coalesce(': ' || d.detail, '')) END
          FROM decided d JOIN ps_health.prompt_items i ON i.prompt_id = d.id
         WHERE d.kind = 'alert' AND c.id = i.check_id
        RETURNING c.id)
    SELECT d.id, d.new_state::varchar FROM decided d ORDER BY d.n;

    -- the cycle's steps and escalations, told their outcome (now on the row) one by one
    FOREACH v_step IN ARRAY coalesce(v_steps, '{}') LOOP
        PERFORM ps_health._step_delivered(v_step, p.state, p.outcome, p.detail, p_now)
           FROM ps_health.prompts p WHERE p.id = v_step.id;
    END LOOP;
END;
$$;

-- complete_prompt: the reactor's outcome for one claimed prompt; see complete_prompts.
CREATE FUNCTION ps_health.complete_prompt(p_id bigint, p_worker text, p_outcome text, p_detail text DEFAULT NULL,
                                          p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE sql AS $$
    SELECT c.state::text FROM ps_health.complete_prompts(p_worker, ARRAY[p_id], ARRAY[p_outcome], ARRAY[p_detail], p_now) c
$$;

-- extend_leases: keep the leases of prompts a worker is still delivering (busy panes wait long).
CREATE FUNCTION ps_health.extend_leases(p_worker text, p_ids bigint[], p_lease_seconds integer DEFAULT 60,
                                        p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    IF p_lease_seconds IS NULL OR p_lease_seconds < 1 OR p_lease_seconds > 86400 THEN
        RAISE EXCEPTION 'lease_seconds must be between 1 and 86400, got %', p_lease_seconds USING ERRCODE = '22023';
    END IF;
    UPDATE ps_health.prompts SET lease_until = p_now + make_interval(secs => p_lease_seconds)
     WHERE state = 'claimed' AND worker = p_worker AND id = ANY (p_ids);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    UPDATE ps_health.reactors SET last_seen = p_now WHERE worker = p_worker;
    RETURN v_n;
END;
$$;

-- _step_delivered: outcomes of the handoff cycle's steps and of escalations, each a row or a note in
-- the audit; a delivered reset wakes the reactor for the resume that waited on it.
CREATE FUNCTION ps_health._step_delivered(p ps_health.prompts, p_state text, p_outcome text, p_detail text,
                                          p_now timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_check integer;
    v_next ps_health.prompts;
BEGIN
    SELECT check_id INTO v_check FROM ps_health.prompt_items WHERE prompt_id = p.id LIMIT 1;
    IF p.kind = 'escalation' THEN
        UPDATE ps_health.health_checks
           SET action_taken = coalesce(action_taken || '; ', '') ||
                              format('escalation #%s %s%s', p.id, CASE p_state WHEN 'pending' THEN 'attempt failed, will retry'
                                                                               ELSE p_state END, coalesce(': ' || p_detail, ''))
         WHERE id = v_check;
        RETURN;
    END IF;
    IF p_state <> 'delivered' THEN
        IF p_state = 'failed' THEN
            PERFORM ps_health._check(p.project, 'handoff', 'cycle', 'critical',
                jsonb_build_object('step', p.kind || '_failed', 'file', coalesce(
                    (SELECT handoff_file FROM ps_health.ps_sessions WHERE project = p.project), 'unknown'),
                    'minutes', 0, 'detail', p_detail), 'handoff.incomplete', p_now);
        END IF;
        RETURN;
    END IF;
    INSERT INTO ps_health.health_checks (project, check_time, check_type, status, details, subject, action_taken)
    VALUES (p.project, p_now, 'handoff', 'warning',
            jsonb_build_object('subject', 'cycle', 'step', p.kind || '_delivered', 'prompt_id', p.id), 'cycle',
            format('%s prompt #%s delivered to %s', p.kind, p.id, p.target));
    IF p.kind = 'resume' THEN
        UPDATE ps_health.ps_sessions SET cycle_state = 'resume_delivered', cycle_resumed_at = p_now
         WHERE project = p.project;
    END IF;
    FOR v_next IN SELECT * FROM ps_health.prompts WHERE after_id = p.id AND state = 'pending' LOOP
        PERFORM ps_health._notify_prompt(v_next.id, v_next.host);
    END LOOP;
END;
$$;

-- release_prompts: give back a worker's claimed prompts undelivered (clean shutdown).
CREATE FUNCTION ps_health.release_prompts(p_worker text, p_ids bigint[] DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    UPDATE ps_health.prompts
       SET state = 'pending', worker = NULL, lease_until = NULL, attempts = greatest(attempts - 1, 0)
     WHERE state = 'claimed' AND worker = p_worker AND (p_ids IS NULL OR id = ANY (p_ids));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END;
$$;

-- ================================================================ the system's own health, retention, jobs

-- system_health: age of the last sweep, reactors seen recently, whether pg_cron is sweeping.
CREATE FUNCTION ps_health.system_health(p_now timestamptz DEFAULT now())
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
