-- Sessions and context: register, heartbeat, end, context reports (the seed's functions among them).

-- get_sessions_needing_context_check: active sessions without a context report for the check interval
-- (of the projects the login may see).
CREATE FUNCTION ps_health.get_sessions_needing_context_check(p_now timestamptz DEFAULT now())
RETURNS TABLE (project varchar, session_type varchar, session_id varchar,
               minutes_since_check integer, current_usage numeric)
LANGUAGE sql STABLE AS $$
    SELECT s.project, s.session_type, s.session_id, ps_health._minutes(s.last_context_check, p_now), s.context_usage
      FROM ps_health.ps_sessions s
     WHERE s.ended_at IS NULL
       AND s.last_activity > p_now - ps_health._setting_interval('activity_window', s.project)
       AND ((SELECT ps_health._sees_all()) OR ps_health._may_see(s.project))
       AND (s.last_context_check IS NULL
            OR s.last_context_check <= p_now - ps_health._setting_interval('context_check_interval', s.project))
     ORDER BY s.project;
$$;

-- update_session_context: the seed's context report; now also raises context/handoff checks at once.
-- After a handoff the old conversation cannot reopen it: a report made before the handoff is ignored,
-- and reports over the critical line are kept without a new alarm until one from the fresh
-- conversation (under the line) arrives.
CREATE FUNCTION ps_health.update_session_context(
    p_project varchar, p_context_percentage numeric,
    p_tokens_used integer DEFAULT NULL, p_tokens_total integer DEFAULT NULL,
    p_now timestamptz DEFAULT now())
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_usage numeric := round(p_context_percentage / 100, 4);
BEGIN
    IF p_context_percentage IS NULL OR p_context_percentage < 0 OR p_context_percentage > 100 THEN
        RAISE EXCEPTION 'context_percentage must be between 0 and 100, got %', coalesce(p_context_percentage::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF p_tokens_used < 0 OR p_tokens_total <= 0 THEN
        RAISE EXCEPTION 'tokens must be positive, got used % of %', p_tokens_used, p_tokens_total USING ERRCODE = '22023';
    END IF;
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._authorize_locked(p_project);
    IF (SELECT s.handoff_done_at > p_now FROM ps_health.ps_sessions s WHERE s.project = p_project) THEN
        RETURN;  -- made before the last handoff: it describes the conversation the handoff ended
    END IF;
    UPDATE ps_health.ps_sessions
       SET context_usage = v_usage,
           estimated_tokens_used = coalesce(p_tokens_used, estimated_tokens_used),
           estimated_tokens_total = coalesce(p_tokens_total, estimated_tokens_total),
           last_context_check = p_now,
           last_activity = greatest(last_activity, p_now),
           context_held_since = CASE WHEN v_usage < ps_health._setting_numeric('context_critical', p_project)
                                     THEN NULL ELSE context_held_since END
     WHERE project = p_project;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown project "%": no session registered', left(p_project, 255) USING ERRCODE = 'P0002';
    END IF;
    PERFORM ps_health._eval_context(p_project, p_now);
    PERFORM ps_health._eval_cycle(p_project, p_now);
END;
$$;

-- record_health_check: append one finding to the audit trail and return its id.
CREATE FUNCTION ps_health.record_health_check(
    p_project varchar, p_check_type varchar, p_status varchar,
    p_details jsonb DEFAULT '{}'::jsonb, p_action_taken text DEFAULT NULL,
    p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_id integer;
BEGIN
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._check_text('check_type', p_check_type, 50);
    PERFORM ps_health._refuse_unlisted('check_type', p_check_type, 'ps_health.health_checks', 'check_type');  -- 70_status.sql
    PERFORM ps_health._check_text('status', p_status, 20);
    PERFORM ps_health._refuse_unlisted('status', p_status, 'ps_health.health_checks', 'status');
    PERFORM ps_health._check_time('p_now', p_now);
    INSERT INTO ps_health.health_checks (project, check_time, check_type, status, details, action_taken)
    VALUES (p_project, p_now, p_check_type, p_status, p_details, p_action_taken)
    RETURNING id INTO v_id;
    RETURN v_id;
END;
$$;

-- register_session: start (or restart) the session of a project; releases prompts waiting for it.
CREATE FUNCTION ps_health.register_session(
    p_project text, p_session_type text DEFAULT 'cli', p_tmux_target text DEFAULT NULL, p_host text DEFAULT NULL,
    p_transcript_path text DEFAULT NULL, p_session_id text DEFAULT NULL, p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    old ps_health.ps_sessions;
    v_id integer;
    v_continues boolean;
    v_holder text;
BEGIN
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._check_text('tmux_target', p_tmux_target, 255, false);
    PERFORM ps_health._check_target(p_tmux_target);
    PERFORM ps_health._check_text('host', p_host, 255, false);
    PERFORM ps_health._check_text('session_id', p_session_id, 255, false);
    PERFORM ps_health._check_text('transcript_path', p_transcript_path, 4096, false);
    PERFORM ps_health._check_time('p_now', p_now);
    IF p_session_type IS NULL OR p_session_type NOT IN ('cli', 'sdk') THEN
        RAISE EXCEPTION 'session_type must be cli or sdk, got "%"', left(coalesce(p_session_type, 'NULL'), 40)
            USING ERRCODE = '22023';
    END IF;
    PERFORM ps_health._authorize_locked(p_project, p_host);
    -- a pane belongs to one project: another project's live session on it keeps it, unless the
    -- caller may act for that project too (the reactor later checks the pane itself: _bind_pane)
    v_holder := ps_health._pane_holder(p_project, p_host, p_tmux_target, NULL, session_user);
    IF v_holder IS NOT NULL THEN
        -- (not named: the holder is a project this login may not act for, and it learns no project's name)
        RAISE EXCEPTION 'pane % on host % belongs to the live session of another project', left(p_tmux_target, 255),
            coalesce(left(p_host, 255), '(none)')
            USING ERRCODE = '42501', HINT = 'End that session first (ps-health session end PROJECT), as a login that may act for it.';
    END IF;
    SELECT * INTO old FROM ps_health.ps_sessions WHERE project = p_project FOR UPDATE;
    -- registering the same live session again (same pane or session id) continues it
    v_continues := old.id IS NOT NULL AND old.ended_at IS NULL
                   AND (old.tmux_target IS NOT DISTINCT FROM p_tmux_target AND old.host IS NOT DISTINCT FROM p_host)
                   AND (p_session_id IS NULL OR old.session_id IS NOT DISTINCT FROM p_session_id);
    INSERT INTO ps_health.ps_sessions AS s (project, session_type, session_id, host, tmux_target, transcript_path,
                                            started_at, last_activity, registered_by)
    VALUES (p_project, p_session_type, coalesce(p_session_id, p_tmux_target), p_host, p_tmux_target,
            p_transcript_path, p_now, p_now, session_user)
    ON CONFLICT (project) DO UPDATE
       SET session_type = EXCLUDED.session_type, session_id = EXCLUDED.session_id, host = EXCLUDED.host,
           tmux_target = EXCLUDED.tmux_target, registered_by = EXCLUDED.registered_by,
           -- a registration is made from the pane itself: the reactor identifies it afresh
           target_identity = NULL,
           transcript_path = coalesce(EXCLUDED.transcript_path, CASE WHEN v_continues THEN s.transcript_path END),
           started_at = CASE WHEN v_continues THEN s.started_at ELSE EXCLUDED.started_at END,
           last_activity = greatest(s.last_activity, EXCLUDED.last_activity),
           ended_at = NULL, target_state = 'unknown', target_misses = 0,
           context_usage = CASE WHEN v_continues THEN s.context_usage END,
           last_context_check = CASE WHEN v_continues THEN s.last_context_check END,
           estimated_tokens_used = CASE WHEN v_continues THEN s.estimated_tokens_used END,
           handoff_requested_at = CASE WHEN v_continues THEN s.handoff_requested_at END,
           handoff_done_at = CASE WHEN v_continues THEN s.handoff_done_at END,
           handoff_file = CASE WHEN v_continues THEN s.handoff_file END,
           context_held_since = CASE WHEN v_continues THEN s.context_held_since END
    RETURNING id INTO v_id;
    IF NOT v_continues AND old.id IS NOT NULL THEN
        -- a new session starts with a fresh context: close the old session's context and handoff states
        PERFORM ps_health._check(p_project, 'context', 'session', 'ok', '{"reason": "new session"}', NULL, p_now);
        PERFORM ps_health._check(p_project, 'context', 'report', 'ok', '{"reason": "new session"}', NULL, p_now);
        PERFORM ps_health._check(p_project, 'handoff', 'session', 'ok', '{"reason": "new session"}', NULL, p_now);
    END IF;
    PERFORM ps_health._check(p_project, 'pane', 'target', 'ok', '{"reason": "new session registered"}', NULL, p_now);
    PERFORM ps_health._eval_orphans(p_project, p_now);
    PERFORM ps_health._release_waiting(p_project);
    IF p_tmux_target IS NOT NULL AND p_host IS NOT NULL THEN
        PERFORM ps_health._notify_prompt(NULL, p_host, true);
    END IF;
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
    PERFORM ps_health._authorize_locked(p_project);
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
    PERFORM ps_health._authorize_locked(p_project);
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
    -- (who may act first: a login that may not learns nothing of the project, not even whether it is known)
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._authorize(p_project);
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
