-- What the reactor may type into: the very pane a session registered (its identity, recorded when
-- the reactor first sees it), one project per pane, and how the accepted agent CLIs' input lines look.

-- The generic agent profile: added when missing, never over a row someone edited.
INSERT INTO ps_health.agent_profiles (program, input_pattern, ignore_pattern, clear_keys, description) VALUES
  ('*', '^\s*[│┃|]?\s*[\w.-]*[>❯›»](\s|$)', NULL, '{C-u}',
   'generic: the input line starts with a prompt ending in > (or ❯ › »), perhaps inside a box; Ctrl-U empties it')
ON CONFLICT (program) DO NOTHING;

-- _agent_profiles: every profile as one JSON object keyed by program, for the reactor (PL/pgSQL: its
-- query is planned once per connection, not at every claim).
CREATE FUNCTION ps_health._agent_profiles()
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT coalesce(jsonb_object_agg(program, jsonb_build_object('input_pattern', input_pattern,
                                                                         'ignore_pattern', ignore_pattern,
                                                                         'clear_keys', to_jsonb(clear_keys))), '{}')
              FROM ps_health.agent_profiles);
END;
$$;

-- _restricted: whether a login may act only for the projects listed for it (an agent login; the rule
-- _authorize enforces). A login no longer there is restricted to nothing.
CREATE FUNCTION ps_health._restricted(p_login text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_login) THEN true
                ELSE pg_has_role(p_login, 'ps_health_agent', 'MEMBER')
                     AND NOT pg_has_role(p_login, 'ps_health_owner', 'MEMBER') END
$$;

-- _pane_holder: another project's live session on the same pane (by the target registered on the host,
-- or by the identity the reactor saw there) that p_login may not act for; NULL when there is none. A
-- login that may act for every project may put several projects on one pane (e.g. a load test).
CREATE FUNCTION ps_health._pane_holder(p_project text, p_host text, p_target text, p_identity text, p_login text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_login IS NULL OR NOT ps_health._restricted(p_login) THEN
        RETURN NULL;  -- (no login recorded: a session registered before logins were)
    END IF;
    RETURN (SELECT h.project FROM (
                SELECT x.project, x.target_state FROM ps_health.ps_sessions x
                 WHERE x.host = p_host AND x.tmux_target = p_target AND x.ended_at IS NULL
                UNION ALL
                SELECT x.project, x.target_state FROM ps_health.ps_sessions x
                 WHERE x.target_identity = p_identity AND x.host = p_host AND x.ended_at IS NULL
                UNION ALL
                SELECT x.project, x.target_state FROM ps_health.ps_sessions x
                 WHERE p_host IS NULL AND x.host IS NULL AND x.tmux_target = p_target AND x.ended_at IS NULL) h
             WHERE h.project <> p_project AND h.target_state <> 'gone'
               AND NOT EXISTS (SELECT 1 FROM ps_health.agent_projects a
                                WHERE a.login = p_login AND a.project IN (h.project, '*'))
             ORDER BY h.project LIMIT 1);
END;
$$;

-- _check_identity: refuse anything but "SERVER_PID SERVER_START PANE_ID PANE_PID" as tmux prints it.
CREATE FUNCTION ps_health._check_identity(p_identity text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_identity IS NOT NULL AND p_identity !~ '^[0-9]{1,10} [0-9]{1,20} %[0-9]{1,10} [0-9]{1,10}$' THEN
        RAISE EXCEPTION 'identity must be "SERVER_PID SERVER_START PANE_ID PANE_PID", got "%"',
            left(regexp_replace(p_identity, '[[:cntrl:]]', '?', 'g'), 80) USING ERRCODE = '22023';
    END IF;
    RETURN p_identity;
END;
$$;

-- _pane_gone: the session's pane is not the pane it registered (or not its own): the session is gone
-- at once, a 'pane' check says why, and its prompts wait for a session that is really there.
CREATE FUNCTION ps_health._pane_gone(p_project text, p_reason text, p_seen text, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.ps_sessions;
    v_n integer;
BEGIN
    -- counted as missed enough, so a later miss cannot make it "missing" (deliverable) again
    UPDATE ps_health.ps_sessions
       SET target_state = 'gone',
           target_misses = greatest(target_misses, ps_health._setting('target_missing_after', project)::integer)
     WHERE project = p_project AND ended_at IS NULL RETURNING * INTO s;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    UPDATE ps_health.prompts SET state = 'waiting'
     WHERE project = p_project AND state = 'pending' AND channel = 'tmux';
    v_n := ps_health._check(p_project, 'pane', 'target', 'warning',
        jsonb_build_object('reason', left(p_reason, 300), 'target', s.tmux_target, 'host', s.host,
                           'registered', s.target_identity, 'seen', p_seen), NULL, p_now, false);
    UPDATE ps_health.health_checks SET action_taken = 'session marked gone; prompts wait for a new registration'
     WHERE id = (SELECT last_check_id FROM ps_health.check_state
                  WHERE project = p_project AND check_type = 'pane' AND subject = 'target')
       AND action_taken = 'recorded; no prompt';
    RETURN v_n + ps_health._eval_orphans(p_project, p_now);
END;
$$;

-- _bind_pane: record the identity the reactor first saw at a session's target, unless that pane
-- belongs to another project's live session its registrant may not act for. NULL when bound, else why not.
CREATE FUNCTION ps_health._bind_pane(s ps_health.ps_sessions, p_identity text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_holder text := ps_health._pane_holder(s.project, s.host, s.tmux_target, p_identity, s.registered_by);
BEGIN
    IF v_holder IS NOT NULL THEN
        RETURN format('pane %s on host %s belongs to the live session of project "%s"',
                      split_part(p_identity, ' ', 3), coalesce(s.host, '(none)'), v_holder);
    END IF;
    UPDATE ps_health.ps_sessions SET target_identity = p_identity WHERE id = s.id;
    RETURN NULL;
END;
$$;

-- bind_target: the reactor about to type into a session's pane it has not identified yet records what
-- it sees there; returns the identity the session is bound to (this one, or one seen first), or NULL
-- when the target is no longer the session's or the pane is another project's (the session is gone).
CREATE FUNCTION ps_health.bind_target(p_project text, p_host text, p_target text, p_identity text,
                                      p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.ps_sessions;
    v_reason text;
BEGIN
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._check_text('host', p_host);
    PERFORM ps_health._check_text('tmux_target', p_target);
    PERFORM ps_health._check_text('identity', p_identity);
    PERFORM ps_health._check_identity(p_identity);
    PERFORM ps_health._check_time('p_now', p_now);
    SELECT * INTO s FROM ps_health.ps_sessions WHERE project = p_project FOR UPDATE;
    IF NOT FOUND OR s.ended_at IS NOT NULL OR s.target_state = 'gone'
       OR s.host IS DISTINCT FROM p_host OR s.tmux_target IS DISTINCT FROM p_target THEN
        RETURN NULL;
    END IF;
    IF s.target_identity IS NOT NULL THEN
        RETURN s.target_identity;
    END IF;
    v_reason := ps_health._bind_pane(s, p_identity);
    IF v_reason IS NOT NULL THEN
        PERFORM ps_health._pane_gone(p_project, v_reason, p_identity, p_now);
        RETURN NULL;
    END IF;
    RETURN p_identity;
END;
$$;
