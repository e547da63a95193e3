-- Answers, handoffs and mutes: what the PS and the operator tell the monitor.

-- respond: the PS's answer to a check (stored without control or formatting characters);
-- acknowledges the problem and stops its reminders.
CREATE FUNCTION ps_health.respond(p_check_id integer, p_text text, p_now timestamptz DEFAULT now())
RETURNS ps_health.health_checks LANGUAGE plpgsql AS $$
DECLARE
    c ps_health.health_checks;
    v_text text := ps_health._check_text('text', ps_health._clean_text(p_text), 10000);
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
    SELECT * INTO c FROM ps_health.health_checks WHERE id = p_check_id;
    -- (a check of a project the login may not see is as unknown as none: a refusal naming its project would
    -- list every project, id by id)
    IF c.id IS NULL OR NOT ((SELECT ps_health._sees_all()) OR ps_health._may_see(c.project)) THEN
        RAISE EXCEPTION 'unknown check id %', coalesce(p_check_id::text, 'NULL') USING ERRCODE = 'P0002';
    END IF;
    -- an agent answers only its own project's checks
    PERFORM ps_health._authorize_locked(c.project);
    UPDATE ps_health.health_checks SET ps_response = v_text WHERE id = p_check_id RETURNING * INTO c;
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
    -- a file in handoff_folder: the setting's 4,096 characters, a slash and a name of up to 255
    PERFORM ps_health._check_text('file', p_file, 4352);
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._authorize_locked(p_project);
    s := ps_health._session(p_project);
    UPDATE ps_health.ps_sessions
       SET handoff_done_at = p_now, handoff_file = p_file, context_usage = NULL, last_context_check = NULL,
           context_held_since = p_now,
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
        UPDATE ps_health.prompts SET text = ps_health._marker(v_resume) || ' ' || text WHERE id = v_resume;
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

-- mute_project: record checks but send no prompt to a project until p_until. A project without a
-- session is refused (a typo would leave a mute nobody sees) unless p_ahead says it is meant.
CREATE FUNCTION ps_health.mute_project(p_project text, p_until timestamptz, p_reason text DEFAULT NULL,
                                       p_ahead boolean DEFAULT false, p_now timestamptz DEFAULT now())
RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._check_time('until', p_until);
    IF p_until <= p_now THEN
        RAISE EXCEPTION 'until must be in the future, got %', p_until USING ERRCODE = '22023';
    END IF;
    IF NOT coalesce(p_ahead, false) AND NOT EXISTS (SELECT 1 FROM ps_health.ps_sessions WHERE project = p_project) THEN
        RAISE EXCEPTION 'unknown project "%": no session registered', left(p_project, 255) USING ERRCODE = 'P0002',
            HINT = 'a typo? ps-health status lists the projects; to mute a project before its first session, '
                   'say so: ps-health mute PROJECT --for DURATION --ahead';
    END IF;
    INSERT INTO ps_health.mutes (project, until, reason, created_at) VALUES (p_project, p_until, left(nullif(ps_health._clean_text(p_reason), ''), 1000), p_now)
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
