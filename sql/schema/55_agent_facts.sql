-- ps-health: what an agent CLI reports by itself. Claude Code's hooks (SessionStart, UserPromptSubmit,
-- Stop, PreToolUse/PostToolUse on its subagent tool, SubagentStop, PreCompact, SessionEnd) and its
-- statusline append facts to a spool on their host; the reactor there forwards them in order,
-- each with the time it happened as p_now. A fact may be forwarded twice after a crash, so a second
-- call with the same fact changes nothing. The reactor calls these, and heartbeat_session and
-- start_spawn directly.

-- _agent_session: the live session behind a pane on a host, else the project's session (or none),
-- among the projects the login may see.
CREATE FUNCTION ps_health._agent_session(p_tmux_target text, p_host text, p_project text)
RETURNS ps_health.ps_sessions LANGUAGE plpgsql STABLE AS $$
DECLARE
    s ps_health.ps_sessions;
BEGIN
    IF p_tmux_target IS NOT NULL THEN
        -- pane ids repeat across hosts and tmux servers: a live session on this host wins
        SELECT * INTO s FROM ps_health.ps_sessions x
         WHERE x.tmux_target = p_tmux_target AND x.ended_at IS NULL
           AND (x.host IS NULL OR x.host = p_host) AND ps_health._may_see(x.project)
         ORDER BY (x.host IS NOT NULL) DESC, x.last_activity DESC
         LIMIT 1;
    END IF;
    IF s.id IS NULL AND p_project IS NOT NULL THEN
        SELECT * INTO s FROM ps_health.ps_sessions x WHERE x.project = p_project AND ps_health._may_see(x.project);
    END IF;
    RETURN s;
END;
$$;

-- record_session_start: an agent session started, resumed, compacted or opened a new conversation
-- (/clear, /new): register it, following a new session id and transcript, and note which agent CLI
-- it is (an agent_profiles program: how its transcript is read). A Claude Code model id ending in
-- [1m] runs with a 1,000,000-token window: known before the first transcript is read, so a resumed
-- long conversation is not measured against the 200,000 default. A pane runs one agent: the live
-- session of another project registered on the same pane of the host ends (its agent is gone without
-- saying so: killed, or its terminal taken over), so its prompts are never typed into this agent.
CREATE FUNCTION ps_health.record_session_start(p_project text, p_host text, p_tmux_target text, p_session_id text,
                                               p_transcript_path text, p_model text DEFAULT NULL,
                                               p_agent text DEFAULT NULL, p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_id integer;
    v_other text;
BEGIN
    PERFORM ps_health._check_text('model', p_model, 255, false);
    PERFORM ps_health._check_text('agent', p_agent, 64, false);
    v_id := ps_health.register_session(p_project, 'cli', p_tmux_target, p_host, p_transcript_path, p_session_id,
                                       p_now);
    UPDATE ps_health.ps_sessions SET agent = coalesce(p_agent, agent) WHERE id = v_id;
    IF p_model LIKE '%[1m]' THEN
        UPDATE ps_health.ps_sessions SET estimated_tokens_total = 1000000 WHERE id = v_id;
    END IF;
    -- (register_session refused a pane another project's live session holds, to a login that may not act for it)
    FOR v_other IN SELECT x.project FROM ps_health.ps_sessions x
                    WHERE x.host = p_host AND x.tmux_target = p_tmux_target AND x.ended_at IS NULL
                      AND x.project <> p_project AND ps_health._login_may_act(session_user, x.project)
                    ORDER BY x.project LOOP
        PERFORM ps_health.end_session(v_other, p_now);
    END LOOP;
    RETURN v_id;
END;
$$;

-- record_context: the context figures an agent's statusline showed. The window size is kept even
-- before the first reply, so transcript token counts are measured against the right window, and
-- the transcript path follows the conversation. A report from an earlier conversation (it raced
-- a /clear) is ignored. Returns what was done.
CREATE FUNCTION ps_health.record_context(p_tmux_target text, p_host text, p_project text, p_session_id text,
                                         p_transcript_path text, p_percent numeric, p_window_size integer,
                                         p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.ps_sessions;
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._check_text('session_id', p_session_id, 255, false);
    PERFORM ps_health._check_text('transcript_path', p_transcript_path, 4096, false);
    IF p_window_size IS NOT NULL AND p_window_size <= 0 THEN
        RAISE EXCEPTION 'window_size must be positive, got %', p_window_size USING ERRCODE = '22023';
    END IF;
    s := ps_health._agent_session(p_tmux_target, p_host, p_project);
    IF s.id IS NULL THEN
        RETURN 'not registered';
    END IF;
    PERFORM ps_health._authorize_locked(s.project);
    -- a session registered without the agent's own id (by pane) takes reports from any conversation
    IF p_now < s.started_at
       OR (p_session_id IS NOT NULL AND s.session_id IS DISTINCT FROM p_session_id
           AND s.session_id IS DISTINCT FROM s.tmux_target) THEN
        RETURN 'earlier conversation';
    END IF;
    UPDATE ps_health.ps_sessions SET estimated_tokens_total = coalesce(p_window_size, estimated_tokens_total),
                                     transcript_path = coalesce(p_transcript_path, transcript_path)
     WHERE id = s.id;
    IF p_percent IS NULL THEN
        RETURN 'window';
    END IF;
    PERFORM ps_health.update_session_context(  -- (it refuses a percent out of range, NaN or infinite, naming it)
        s.project, p_percent,
        CASE WHEN p_window_size > 0 AND p_percent BETWEEN 0 AND 100 THEN round(p_percent * p_window_size / 100)::integer END,
        p_window_size, p_now);
    RETURN 'recorded';
END;
$$;

-- record_spawn_end: the subagent tool call returned. An error fails the spawn (critical at once);
-- an interrupt by the person at the keyboard ends it without a prompt: they are there and know.
CREATE FUNCTION ps_health.record_spawn_end(p_project text, p_task_id text, p_error text DEFAULT NULL,
                                           p_interrupted boolean DEFAULT false, p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
BEGIN
    IF coalesce(p_interrupted, false) THEN
        v_status := ps_health.finish_spawn(p_project, p_task_id, 0, NULL, p_now);
        UPDATE ps_health.active_spawns SET error_message = 'interrupted by the user'
         WHERE project = p_project AND task_id = p_task_id;
        RETURN v_status;
    END IF;
    RETURN ps_health.finish_spawn(p_project, p_task_id, CASE WHEN p_error IS NULL THEN 0 END, p_error, p_now);
END;
$$;

-- record_spawn_launch: the subagent runs in the background: its output file is watched like any
-- spawn's, and it ends when it stops (record_subagent_stop), not when the tool call returned.
CREATE FUNCTION ps_health.record_spawn_launch(p_project text, p_task_id text, p_output_file text,
                                              p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    sp ps_health.active_spawns;
BEGIN
    PERFORM ps_health._check_text('output_file', p_output_file, 4096, false);
    PERFORM ps_health._check_time('p_now', p_now);
    sp := ps_health._spawn(p_project, p_task_id);
    UPDATE ps_health.active_spawns SET output_file = coalesce(p_output_file, output_file) WHERE id = sp.id;
    UPDATE ps_health.ps_sessions SET last_activity = greatest(last_activity, p_now) WHERE project = p_project;
    RETURN sp.id;
END;
$$;

-- record_subagent_stop: a subagent of the session stopped. The session is alive; a background spawn
-- it belongs to completes. Claude Code names a background subagent's output file <agent id>.output;
-- a foreground subagent ends with its tool call instead.
CREATE FUNCTION ps_health.record_subagent_stop(p_project text, p_agent_id text, p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_n integer := 0;
BEGIN
    PERFORM ps_health._check_text('agent_id', p_agent_id, 255, false);
    PERFORM ps_health.heartbeat_session(p_project, p_now);
    IF p_agent_id !~ '^[A-Za-z0-9_-]+$' THEN
        RETURN 0;  -- no id, or one that cannot name a file: nothing to match
    END IF;
    FOR r IN SELECT sp.task_id FROM ps_health.active_spawns sp
              WHERE sp.project = p_project AND sp.status IN ('running', 'stalled', 'abandoned')
                AND sp.output_file LIKE '%/' || p_agent_id || '.output'
    LOOP
        PERFORM ps_health.finish_spawn(p_project, r.task_id, 0, NULL, p_now);
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END;
$$;

-- record_compaction: the agent compacted its context (trigger 'manual' or 'auto'): an ok context row
-- in the audit trail, and activity. Returns the row's id (the same one when the fact comes twice).
CREATE FUNCTION ps_health.record_compaction(p_project text, p_trigger text DEFAULT NULL,
                                            p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_details jsonb;
    v_id integer;
BEGIN
    PERFORM ps_health._check_text('trigger', p_trigger, 40, false);
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._authorize_locked(p_project);
    PERFORM ps_health._session(p_project);
    v_details := jsonb_build_object('event', 'compaction', 'trigger', coalesce(p_trigger, 'unknown'),
                                    'subject', 'compaction');
    SELECT id INTO v_id FROM ps_health.health_checks
     WHERE project = p_project AND check_type = 'context' AND subject = 'compaction' AND check_time = p_now;
    IF v_id IS NULL THEN
        INSERT INTO ps_health.health_checks (project, check_time, check_type, status, details, subject, action_taken)
        VALUES (p_project, p_now, 'context', 'ok', v_details, 'compaction', 'recorded; no prompt')
        RETURNING id INTO v_id;
    END IF;
    UPDATE ps_health.ps_sessions SET last_activity = greatest(last_activity, p_now) WHERE project = p_project;
    RETURN v_id;
END;
$$;

-- record_session_end: the agent's session ended. After /clear (reason 'clear') the agent opens a new
-- conversation in the same pane at once and its SessionStart follows it, so the session stays live.
CREATE FUNCTION ps_health.record_session_end(p_project text, p_reason text DEFAULT NULL,
                                             p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._check_text('reason', p_reason, 64, false);
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._authorize(p_project);
    PERFORM ps_health._session(p_project);
    IF p_reason IN ('clear', 'resume') THEN
        RETURN 0;
    END IF;
    RETURN ps_health.end_session(p_project, p_now);
END;
$$;

-- host_status: what the statusline of every live session on a host shows, in one query (the
-- sessions the login may see: a reactor those of its hosts).
CREATE FUNCTION ps_health.host_status(p_host text)
RETURNS TABLE (project varchar, tmux_target varchar, context_percent numeric,
               running integer, stalled integer, open_alerts integer)
LANGUAGE sql STABLE AS $$
    SELECT s.project, s.tmux_target, round(s.context_usage * 100, 1),
           (SELECT count(*)::integer FROM ps_health.active_spawns sp
             WHERE sp.project = s.project AND sp.status = 'running'),
           (SELECT count(*)::integer FROM ps_health.active_spawns sp
             WHERE sp.project = s.project AND sp.status IN ('stalled', 'abandoned')),
           (SELECT count(*)::integer FROM ps_health.check_state cs
             WHERE cs.project = s.project AND cs.status <> 'ok')
      FROM ps_health.ps_sessions s
     WHERE s.host = p_host AND s.ended_at IS NULL AND ps_health._may_see(s.project)
     ORDER BY s.project
$$;
