-- Facts from the reactor's probes (output times, pane and pid liveness, handoff files) and what it
-- should look at on its host. A reactor login reports and looks only at the hosts granted to it.

-- _authorize_spawns: of a batch of spawns, those the login may act for (a spawn's host, or its session's when it
-- has none, as probe_spawns lists them) whose project's lock was free and is now held. Another host's spawn is
-- left alone as an id no spawn has is: the login learns nothing of it, and takes no lock of its project. A probe
-- never waits for a project's lock: a transaction left open by an agent would stop the probe for every project
-- of the host. A busy project's spawns wait for the next round.
CREATE FUNCTION ps_health._authorize_spawns(p_spawn_ids integer[])
RETURNS integer[] LANGUAGE plpgsql AS $$
BEGIN
    RETURN ARRAY(SELECT sp.id FROM ps_health.active_spawns sp LEFT JOIN ps_health.ps_sessions s ON s.project = sp.project
                  WHERE sp.id = ANY (p_spawn_ids)
                    -- (CASE: who may act is decided before the lock is tried)
                    AND CASE WHEN ps_health._may_act(NULL, coalesce(sp.host, s.host))
                             THEN ps_health._try_lock_project(sp.project) ELSE false END);
END;
$$;

-- report_output_mtimes: a probe's batch of output-file modification times (one round trip).
CREATE FUNCTION ps_health.report_output_mtimes(p_spawn_ids integer[], p_mtimes timestamptz[],
                                               p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_n integer := 0;
    v_free integer[];
BEGIN
    IF coalesce(cardinality(p_spawn_ids), 0) <> coalesce(cardinality(p_mtimes), 0) THEN
        RAISE EXCEPTION 'spawn_ids and mtimes must have the same length (% and %)',
            cardinality(p_spawn_ids), cardinality(p_mtimes) USING ERRCODE = '22023';
    END IF;
    PERFORM ps_health._check_time('p_now', p_now);
    v_free := ps_health._authorize_spawns(p_spawn_ids);
    FOR r IN
        SELECT sp.id, least(m.mtime, p_now) AS mtime
          FROM unnest(p_spawn_ids, p_mtimes) AS m(id, mtime)
          JOIN ps_health.active_spawns sp ON sp.id = m.id
         WHERE m.mtime IS NOT NULL AND isfinite(m.mtime) AND sp.id = ANY (v_free)
           AND sp.status IN ('running', 'stalled', 'abandoned')
           AND m.mtime > coalesce(sp.last_output_change, sp.spawn_time)
    LOOP
        v_n := v_n + ps_health._output_seen(r.id, r.mtime, p_now);
    END LOOP;
    RETURN v_n;
END;
$$;

-- _reported: a probe's batch as rows, without the "unknown" ones (they say nothing).
CREATE FUNCTION ps_health._reported(p_projects text[], p_states text[], p_targets text[], p_identities text[])
RETURNS TABLE (project text, state text, target text, identity text) LANGUAGE sql IMMUTABLE AS $$
    SELECT f.* FROM unnest(p_projects, p_states,
                           coalesce(p_targets, array_fill(NULL::text, ARRAY[cardinality(p_projects)])),
                           coalesce(p_identities, array_fill(NULL::text, ARRAY[cardinality(p_projects)])))
                    AS f(project, state, target, identity)
     WHERE f.state <> 'unknown'
$$;

-- report_session_panes: whether each project's tmux target was seen (gone after N misses in a row), with
-- the target the probe looked at (p_targets) and the identity of each pane seen (p_identities: "SERVER_PID
-- SERVER_START PANE_ID PANE_PID"). A session's first sighting binds its pane; a pane that is not the
-- bound one (a tmux server restarted, an id reused) or is another project's makes the session gone at once.
CREATE FUNCTION ps_health.report_session_panes(p_projects text[], p_states text[], p_targets text[],
                                               p_identities text[], p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_reason text;
    v_refused text[] := '{}';
    v_contested text[] := '{}';
    v_states text[];  -- p_states with the projects whose lock is taken elsewhere as 'unknown'
    v_n integer := 0;
    v_len integer := coalesce(cardinality(p_projects), 0);
BEGIN
    IF coalesce(cardinality(p_states), 0) <> v_len
       OR (p_targets IS NOT NULL AND cardinality(p_targets) <> v_len)
       OR (p_identities IS NOT NULL AND cardinality(p_identities) <> v_len) THEN
        RAISE EXCEPTION 'projects, states, targets and identities must have the same length' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_states) st WHERE st IS NULL OR st NOT IN ('seen', 'missing', 'unknown')) THEN
        RAISE EXCEPTION 'target states must be seen, missing or unknown' USING ERRCODE = '22023';
    END IF;
    PERFORM ps_health._check_identity(i) FROM unnest(p_identities) i;
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._check_text('project', f.project) FROM unnest(p_projects) f(project);
    PERFORM ps_health._authorize(f.project) FROM unnest(p_projects) f(project);
    -- a project whose lock another transaction holds (an agent's, perhaps left open) is not written, as if not
    -- looked at (v_states): the probe never waits for one, so no tenant can stop it for the others (its
    -- session is seen to next round); what the probe saw of it still counts for the panes of the others
    SELECT coalesce(array_agg(CASE WHEN ps_health._try_lock_project(f.project) THEN f.state ELSE 'unknown' END
                              ORDER BY f.n), '{}')
      INTO v_states FROM unnest(p_projects, p_states) WITH ORDINALITY f(project, state, n);
    -- a pane that sessions of two projects name (by different names), where one registrant may not act for
    -- the other's project and neither is bound to it yet, is contested: bound to neither
    -- (only an agent login's session can contest a pane: with none among these, there is nothing to find)
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT s.registered_by FROM ps_health.ps_sessions s
                               WHERE s.project = ANY (p_projects) AND s.registered_by IS NOT NULL) l
                WHERE ps_health._restricted(l.registered_by)) THEN
        WITH seen AS (
            SELECT s.project, s.registered_by, s.target_identity, f.identity
              FROM ps_health._reported(p_projects, p_states, p_targets, p_identities) f
              JOIN ps_health.ps_sessions s ON s.project = f.project
             WHERE f.state = 'seen' AND f.identity IS NOT NULL AND s.ended_at IS NULL AND s.target_state <> 'gone'
               AND (f.target IS NULL OR f.target = s.tmux_target)),
        agents AS (  -- each registering login once: only an agent login's session can contest a pane
            SELECT l.login FROM (SELECT DISTINCT registered_by AS login FROM seen WHERE registered_by IS NOT NULL) l
             WHERE ps_health._restricted(l.login)),
        panes AS (  -- panes some agent login's session names, none of the sessions bound to them
            SELECT identity FROM seen GROUP BY identity
            HAVING count(DISTINCT project) > 1 AND bool_or(registered_by IN (SELECT login FROM agents))
               AND NOT bool_or(target_identity IS NOT DISTINCT FROM identity))
        SELECT coalesce(array_agg(identity), '{}') INTO v_contested FROM panes;
        IF v_contested <> '{}' THEN  -- of those, the panes two projects name whose registrants may not act for both
            SELECT coalesce(array_agg(DISTINCT fa.identity), '{}') INTO v_contested
              FROM ps_health._reported(p_projects, p_states, p_targets, p_identities) fa
              JOIN ps_health.ps_sessions a ON a.project = fa.project
              JOIN ps_health._reported(p_projects, p_states, p_targets, p_identities) fb ON fb.identity = fa.identity
              JOIN ps_health.ps_sessions b ON b.project = fb.project AND b.project <> a.project
             WHERE fa.identity = ANY (v_contested) AND fa.state = 'seen' AND fb.state = 'seen'
               AND a.ended_at IS NULL AND b.ended_at IS NULL
               AND a.target_state <> 'gone' AND b.target_state <> 'gone'
               AND (fa.target IS NULL OR fa.target = a.tmux_target) AND (fb.target IS NULL OR fb.target = b.tmux_target)
               AND NOT (ps_health._login_may_act(a.registered_by, b.project)
                        AND ps_health._login_may_act(b.registered_by, a.project));
        END IF;
    END IF;
    -- a pane seen for the first time is bound; one that is not the bound pane, or is another project's, is
    -- not this session's: gone at once (the edge-triggered 'pane' check says why, once)
    FOR r IN
        SELECT s AS sess, f.identity FROM ps_health._reported(p_projects, v_states, p_targets, p_identities) f
          JOIN ps_health.ps_sessions s ON s.project = f.project
         WHERE f.state = 'seen' AND f.identity IS NOT NULL AND s.target_identity IS DISTINCT FROM f.identity
           -- a report about a target the session has left since the probe listed it says nothing
           AND s.ended_at IS NULL AND (f.target IS NULL OR f.target = s.tmux_target)
         ORDER BY s.project FOR UPDATE OF s
    LOOP
        IF (r.sess).target_identity IS NULL AND r.identity = ANY (v_contested) THEN
            -- not gone (either may be the pane's own session): neither is prompted until one ends or moves
            v_n := v_n + ps_health._check((r.sess).project, 'pane', 'target', 'warning',
                jsonb_build_object('reason', format('pane %s on host %s is also named by another project''s session '
                                                    'not identified yet; nothing is typed there for either until '
                                                    'one of them ends or moves', split_part(r.identity, ' ', 3),
                                                    (r.sess).host),
                                   'target', (r.sess).tmux_target, 'host', (r.sess).host, 'seen', r.identity),
                NULL, p_now, false);
            v_refused := v_refused || (r.sess).project::text;
            CONTINUE;
        ELSIF (r.sess).target_identity IS NULL THEN
            v_reason := ps_health._bind_pane(r.sess, r.identity);
        ELSE
            v_reason := format('pane %s is not the pane the session registered (%s): its tmux server restarted '
                               'or the id was reused', (r.sess).tmux_target, (r.sess).target_identity);
        END IF;
        IF v_reason IS NOT NULL THEN
            v_n := v_n + ps_health._pane_gone((r.sess).project, v_reason, r.identity, p_now);
            v_refused := v_refused || (r.sess).project::text;
        END IF;
    END LOOP;

    FOR r IN
        UPDATE ps_health.ps_sessions s
           SET target_misses = CASE f.state WHEN 'seen' THEN 0 ELSE s.target_misses + 1 END,
               target_state = CASE
                   WHEN f.state = 'seen' THEN 'seen'
                   WHEN s.target_misses + 1 >= ps_health._setting('target_missing_after', s.project)::integer THEN 'gone'
                   ELSE 'missing' END
          FROM ps_health._reported(p_projects, v_states, p_targets, p_identities) f
         WHERE s.project = f.project AND s.ended_at IS NULL AND (f.target IS NULL OR f.target = s.tmux_target)
           AND s.project <> ALL (v_refused)
        RETURNING s.project, s.target_state, s.target_misses, s.target_identity, s.tmux_target, s.host
    LOOP
        IF r.target_state <> 'seen' AND r.target_identity IS NULL AND r.target_misses = 1 THEN
            -- a target never seen is not found at the first look: most likely a typo, said at once
            v_n := v_n + ps_health._check(r.project, 'pane', 'target', 'warning',
                jsonb_build_object('reason', format('pane %s was not found on host %s: no such pane there (a typo in '
                                                    '--target?), or the reactor looks at another tmux server',
                                                    r.tmux_target, r.host),
                                   'target', r.tmux_target, 'host', r.host), NULL, p_now, false);
        ELSIF r.target_state = 'seen' THEN
            v_n := v_n + ps_health._check(r.project, 'pane', 'target', 'ok', '{"reason": "pane found"}', NULL, p_now);
        END IF;
        IF r.target_state = 'gone' THEN
            v_n := v_n + ps_health._eval_orphans(r.project, p_now);
        ELSIF r.target_state = 'seen' THEN
            PERFORM ps_health._release_waiting(r.project);
        END IF;
    END LOOP;
    RETURN v_n;
END;
$$;

-- report_session_targets: whether each project's tmux target was seen; gone after N misses in a row (a probe
-- that does not tell the panes' identities).
CREATE FUNCTION ps_health.report_session_targets(p_projects text[], p_states text[], p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE sql AS $$
    SELECT ps_health.report_session_panes(p_projects, p_states, NULL, NULL, p_now)
$$;

-- report_spawn_pids: whether each spawn's process is alive; dead N times in a row fails the spawn.
CREATE FUNCTION ps_health.report_spawn_pids(p_spawn_ids integer[], p_states text[], p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_n integer := 0;
    v_free integer[];
BEGIN
    IF coalesce(cardinality(p_spawn_ids), 0) <> coalesce(cardinality(p_states), 0) THEN
        RAISE EXCEPTION 'spawn_ids and states must have the same length' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_states) st WHERE st IS NULL OR st NOT IN ('alive', 'dead', 'unknown')) THEN
        RAISE EXCEPTION 'pid states must be alive, dead or unknown' USING ERRCODE = '22023';
    END IF;
    PERFORM ps_health._check_time('p_now', p_now);
    v_free := ps_health._authorize_spawns(p_spawn_ids);
    FOR r IN
        UPDATE ps_health.active_spawns sp
           SET pid_misses = CASE f.state WHEN 'alive' THEN 0 ELSE sp.pid_misses + 1 END
          FROM unnest(p_spawn_ids, p_states) AS f(id, state)
         WHERE sp.id = f.id AND f.state <> 'unknown' AND sp.id = ANY (v_free) AND sp.status IN ('running', 'stalled', 'abandoned')
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

-- probe_sessions: a host's live sessions, for the reactor's probes: the pane and transcript to look at,
-- and how to read the transcript (the context source and default window of the session's agent
-- profile; a session whose agent is not known has a Claude Code transcript).
CREATE FUNCTION ps_health.probe_sessions(p_host text)
RETURNS TABLE (project varchar, tmux_target varchar, transcript_path text, estimated_tokens_total integer,
               context_source varchar, context_window integer)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM ps_health._check_text('host', p_host);
    PERFORM ps_health._authorize(NULL, p_host);
    RETURN QUERY
    SELECT s.project, s.tmux_target, s.transcript_path, s.estimated_tokens_total,
           coalesce(a.context_source, 'claude-transcript')::varchar, a.context_window
      FROM ps_health.ps_sessions s
      LEFT JOIN ps_health.agent_profiles a ON a.program = s.agent
     WHERE s.host = p_host AND s.ended_at IS NULL
     ORDER BY s.project;
END;
$$;

-- probe_spawns: a host's open spawns (their own host, or none and their session is here).
CREATE FUNCTION ps_health.probe_spawns(p_host text)
RETURNS TABLE (id integer, output_file text, pid integer)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM ps_health._check_text('host', p_host);
    PERFORM ps_health._authorize(NULL, p_host);
    RETURN QUERY
    SELECT sp.id, sp.output_file, sp.pid
      FROM ps_health.active_spawns sp
      LEFT JOIN ps_health.ps_sessions s ON s.project = sp.project
     WHERE sp.status IN ('running', 'stalled', 'abandoned')
       AND (sp.host = p_host OR (sp.host IS NULL AND s.host = p_host))
     ORDER BY sp.id;
END;
$$;

-- handoff_watches: for a host's reactor, the folders to watch for handoff files (open requests only).
CREATE FUNCTION ps_health.handoff_watches(p_host text)
RETURNS TABLE (project varchar, folder text, pattern text, requested_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM ps_health._check_text('host', p_host);
    PERFORM ps_health._authorize(NULL, p_host);
    RETURN QUERY
    SELECT s.project, ps_health._setting('handoff_folder', s.project), ps_health._setting('handoff_pattern', s.project),
           s.handoff_requested_at
      FROM ps_health.ps_sessions s
     WHERE s.host = p_host AND s.ended_at IS NULL AND s.handoff_requested_at IS NOT NULL
       AND (s.handoff_done_at IS NULL OR s.handoff_done_at < s.handoff_requested_at)
       AND ps_health._setting('handoff_folder', s.project) <> '';
END;
$$;

-- report_handoff_file: a probe saw a handoff file (a fact); it counts as the handoff done only
-- when a handoff is requested and the file is newer than the request. Returns the check id or NULL.
CREATE FUNCTION ps_health.report_handoff_file(p_project text, p_file text, p_mtime timestamptz,
                                              p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.ps_sessions;
BEGIN
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._check_time('p_mtime', p_mtime);
    PERFORM ps_health._authorize(p_project);
    s := ps_health._session(p_project);
    IF s.handoff_requested_at IS NULL OR s.handoff_done_at >= s.handoff_requested_at
       OR p_mtime <= s.handoff_requested_at THEN
        RETURN NULL;
    END IF;
    RETURN ps_health._handoff_done(p_project, p_file, 'file seen by the reactor', p_now);
END;
$$;
