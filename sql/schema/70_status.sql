-- What people and agents read: the seed's views, the statusline's one round trip, the status table,
-- the monitor's own health. An agent login sees only its projects in each (_may_see); the owner and
-- readers see every project. ((SELECT _sees_all()) is asked once per query, not once per row.) The views
-- are security barriers: a function the reader puts in its WHERE is given only the rows it may see.

-- Every project with a live session or running spawns (an ended session is no longer a target).
CREATE VIEW ps_health.active_monitoring_targets WITH (security_barrier) AS
SELECT coalesce(s.project, r.project) AS project,
       s.session_type,
       s.session_id,
       s.context_usage,
       s.last_context_check,
       coalesce(r.active_spawns_count, 0) AS active_spawns_count,
       r.latest_spawn_time
  FROM (SELECT * FROM ps_health.ps_sessions WHERE ended_at IS NULL) s
  FULL JOIN (SELECT project, count(*) AS active_spawns_count, max(spawn_time) AS latest_spawn_time
               FROM ps_health.active_spawns
              WHERE status = 'running'
              GROUP BY project) r ON r.project = s.project
 WHERE (SELECT ps_health._sees_all()) OR ps_health._may_see(coalesce(s.project, r.project));

-- Daily counts of findings over the last 7 days.
CREATE VIEW ps_health.health_check_summary WITH (security_barrier) AS
SELECT project,
       (check_time AT TIME ZONE 'UTC')::date AS check_date,
       check_type,
       status,
       count(*) AS check_count,
       max(check_time) AS last_check_time
  FROM ps_health.health_checks
 WHERE check_time > now() - interval '7 days'
   AND ((SELECT ps_health._sees_all()) OR ps_health._may_see(project))
 GROUP BY project, (check_time AT TIME ZONE 'UTC')::date, check_type, status;

-- statusline: report the context usage of the session behind an agent's statusline (found by
-- pane and host, else by project, among the projects the login may see) and return what the line
-- shows, in one round trip, for an SQL client drawing one (`ps-health statusline` itself reads the
-- reactor's status cache instead).
CREATE FUNCTION ps_health.statusline(p_tmux_target text, p_host text, p_project text,
                                     p_percent numeric DEFAULT NULL, p_window_size integer DEFAULT NULL,
                                     p_now timestamptz DEFAULT now())
RETURNS TABLE (project varchar, registered boolean, context_percent numeric,
               running integer, stalled integer, open_alerts integer)
-- a row locked by a long sweep must not freeze the agent's screen: give up instead
LANGUAGE plpgsql SET lock_timeout = '1500ms' AS $$
DECLARE
    s ps_health.ps_sessions;
    v_project text := p_project;
BEGIN
    s := ps_health._agent_session(p_tmux_target, p_host, p_project);
    IF s.id IS NULL AND NOT ps_health._may_see(p_project) THEN
        v_project := NULL;  -- counts of a project the login may not see stay hidden
    END IF;
    IF s.id IS NOT NULL THEN
        v_project := s.project;
        IF p_percent IS NOT NULL THEN
            PERFORM ps_health.update_session_context(
                s.project, p_percent,
                -- (update_session_context refuses a percent out of range, NaN or infinite, naming it)
                CASE WHEN p_window_size > 0 AND p_percent BETWEEN 0 AND 100
                     THEN round(p_percent * p_window_size / 100)::integer END,
                CASE WHEN p_window_size > 0 THEN p_window_size END, p_now);
        END IF;
    END IF;
    RETURN QUERY
    SELECT coalesce(v_project, p_project)::varchar, s.id IS NOT NULL,
           coalesce(p_percent, round((SELECT x.context_usage FROM ps_health.ps_sessions x WHERE x.id = s.id) * 100, 1)),
           (SELECT count(*)::integer FROM ps_health.active_spawns sp
             WHERE sp.project = v_project AND sp.status = 'running'),
           (SELECT count(*)::integer FROM ps_health.active_spawns sp
             WHERE sp.project = v_project AND sp.status IN ('stalled', 'abandoned')),
           (SELECT count(*)::integer FROM ps_health.check_state cs
             WHERE cs.project = v_project AND cs.status <> 'ok');
END;
$$;

-- project_status: one row per project the login may see (a session, open spawns, open problems or a mute):
-- session, pane, context, activity, spawns, open alerts, last prompt, mute. `stalled`
-- counts stalled and abandoned spawns; `abandoned` is the part of them given up on.
CREATE FUNCTION ps_health.project_status(p_now timestamptz DEFAULT now())
RETURNS TABLE (project varchar, session_state text, session_type varchar, session_id varchar,
               host varchar, tmux_target varchar, target_state varchar, started_at timestamptz,
               last_activity timestamptz, ended_at timestamptz, context_percent numeric,
               last_context_check timestamptz, handoff_requested_at timestamptz, handoff_done_at timestamptz,
               running integer, stalled integer, abandoned integer,
               open_alerts integer, worst_status text, alerts jsonb,
               last_prompt_id bigint, last_prompt_state varchar, last_prompt_severity varchar,
               last_prompt_at timestamptz, last_prompt_delivered boolean, last_prompt_text text,
               muted_until timestamptz, mute_reason text)
LANGUAGE sql STABLE AS $$
    WITH projects AS (
        SELECT x.project FROM ps_health.ps_sessions x
        UNION SELECT sp.project FROM ps_health.active_spawns sp WHERE sp.status IN ('running', 'stalled', 'abandoned')
        UNION SELECT cs.project FROM ps_health.check_state cs WHERE cs.status <> 'ok'
        UNION SELECT m.project FROM ps_health.mutes m WHERE m.until > p_now)
    SELECT p.project::varchar,
           CASE WHEN s.id IS NULL THEN 'none'
                WHEN s.ended_at IS NOT NULL THEN 'ended'
                WHEN s.target_state = 'gone' THEN 'gone'
                WHEN ps_health._is_active(s, p_now) THEN 'active'
                ELSE 'idle' END,
           s.session_type, s.session_id, s.host, s.tmux_target, s.target_state, s.started_at,
           s.last_activity, s.ended_at, round(s.context_usage * 100, 1), s.last_context_check,
           s.handoff_requested_at, s.handoff_done_at,
           coalesce(sp.running, 0), coalesce(sp.stalled, 0), coalesce(sp.abandoned, 0),
           coalesce(a.n, 0), coalesce(a.worst, 'ok'), coalesce(a.alerts, '[]'),
           lp.id, lp.state, lp.severity, lp.created_at, lp.state = 'delivered', lp.text,
           m.until, m.reason
      FROM projects p
      LEFT JOIN ps_health.ps_sessions s ON s.project = p.project
      LEFT JOIN LATERAL (
          SELECT count(*) FILTER (WHERE x.status = 'running')::integer AS running,
                 count(*) FILTER (WHERE x.status IN ('stalled', 'abandoned'))::integer AS stalled,
                 count(*) FILTER (WHERE x.status = 'abandoned')::integer AS abandoned
            FROM ps_health.active_spawns x
           WHERE x.project = p.project AND x.status IN ('running', 'stalled', 'abandoned')) sp ON true
      LEFT JOIN LATERAL (
          SELECT count(*)::integer AS n,
                 CASE WHEN bool_or(cs.status = 'critical') THEN 'critical' ELSE 'warning' END AS worst,
                 jsonb_agg(jsonb_build_object('check_type', cs.check_type, 'subject', cs.subject,
                                              'status', cs.status, 'since', cs.since, 'check_id', cs.last_check_id,
                                              'acknowledged_at', cs.acknowledged_at)
                           ORDER BY cs.since) AS alerts
            FROM ps_health.check_state cs
           WHERE cs.project = p.project AND cs.status <> 'ok'
          HAVING count(*) > 0) a ON true
      LEFT JOIN LATERAL (
          SELECT pr.id, pr.state, pr.severity, pr.created_at, pr.text
            FROM ps_health.prompts pr WHERE pr.project = p.project
           ORDER BY pr.id DESC LIMIT 1) lp ON true
      LEFT JOIN ps_health.mutes m ON m.project = p.project AND m.until > p_now
     WHERE (SELECT ps_health._sees_all()) OR ps_health._may_see(p.project)
     ORDER BY p.project;
$$;

-- system_health: age of the last sweep, the reactors running now (holding their host's lock), whether
-- pg_cron is there, and who sweeps: pg_cron, the reactor's fallback, or nobody lately (sweep_note).
-- pg_cron counts as there when its extension is in this database or its scheduler runs on the server
-- (it may live in another database, cron.database_name, and schedule into this one; no login but a
-- superuser may read that setting, but anyone sees the scheduler's application_name).
CREATE FUNCTION ps_health.system_health(p_now timestamptz DEFAULT now())
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_last timestamptz;
    v_cron boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron')
                      OR EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'pg_cron scheduler');
    v_cron_last timestamptz;
    v_reactor_last timestamptz;
    -- a scheduled sweep runs every minute: none for this long means it stopped
    v_late interval := ps_health._setting_interval('sweep_late_after');
BEGIN
    SELECT max(started_at) INTO v_last FROM ps_health.sweep_runs;
    -- pg_cron's job table shows each user only their own jobs: judge the scheduler by its sweeps
    SELECT max(swept_at) FILTER (WHERE source = 'pg_cron'), max(swept_at) FILTER (WHERE source = 'reactor')
      INTO v_cron_last, v_reactor_last
      FROM ps_health.sweep_runs WHERE source IN ('pg_cron', 'reactor');
    RETURN jsonb_build_object(
        'last_sweep_at', v_last,
        'sweep_age_seconds', round(extract(epoch FROM p_now - v_last)::numeric, 1),
        'reactors', coalesce((SELECT jsonb_agg(jsonb_build_object('worker', worker, 'host', host, 'last_seen', last_seen,
                                                                  'started_at', started_at)
                                              ORDER BY host, started_at)
                                FROM ps_health._live_reactors() r
                               -- a login sees the reactors of the hosts it serves, and of its projects' sessions
                               WHERE ps_health._sees_all() OR ps_health._may_act(NULL, r.host)
                                  OR EXISTS (SELECT 1 FROM ps_health.ps_sessions s
                                              WHERE s.host = r.host AND ps_health._may_see(s.project))), '[]'),
        'pg_cron', v_cron,
        'sweep_job', coalesce(v_cron_last > p_now - v_late, false),
        'sweep_note', CASE
            WHEN v_cron_last > p_now - v_late THEN 'sweeping every minute'
            WHEN v_reactor_last > p_now - v_late THEN 'the reactor sweeps (--run-checks-every)'
            WHEN v_cron_last IS NULL AND v_reactor_last IS NULL THEN 'no scheduled sweep yet'
            ELSE format('no scheduled sweep for %s min (ps-health doctor)',
                        ps_health._minutes(greatest(v_cron_last, v_reactor_last), p_now)) END);
END;
$$;

-- _refuse_unlisted: refuse a value the table's CHECK constraint on the column would refuse, naming the
-- values it allows. The list is written once, in the table, so a filter with a typo is an error, not
-- an empty answer, and no client keeps a copy of it.
CREATE FUNCTION ps_health._refuse_unlisted(p_field text, p_value text, p_table regclass, p_column name)
RETURNS void LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_allowed text[];
BEGIN
    IF p_value IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(replace(x.m[1], '''''', '''') ORDER BY x.n) INTO v_allowed
      FROM pg_constraint c
     CROSS JOIN LATERAL regexp_matches(pg_get_constraintdef(c.oid), '''((?:[^'']|'''')*)''', 'g')
           WITH ORDINALITY AS x(m, n)
     WHERE c.conrelid = p_table AND c.contype = 'c'
       AND c.conkey = ARRAY[(SELECT a.attnum FROM pg_attribute a WHERE a.attrelid = p_table AND a.attname = p_column)];
    IF v_allowed IS NOT NULL AND NOT p_value = ANY (v_allowed) THEN
        RAISE EXCEPTION '% must be one of %, got "%"', p_field, array_to_string(v_allowed, ', '),
            left(ps_health._clean_text(p_value), 40) USING ERRCODE = '22023';
    END IF;
END;
$$;

-- list_checks: the audit trail, newest first, filtered by project, type, status and age (readers).
CREATE FUNCTION ps_health.list_checks(p_project text DEFAULT NULL, p_check_type text DEFAULT NULL,
                                      p_status text DEFAULT NULL, p_since interval DEFAULT NULL,
                                      p_limit integer DEFAULT 50, p_now timestamptz DEFAULT now())
RETURNS TABLE (id integer, check_time timestamptz, project varchar, check_type varchar, subject varchar,
               status varchar, details jsonb, action_taken text, ps_response text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM ps_health._refuse_unlisted('check type', p_check_type, 'ps_health.health_checks', 'check_type');
    PERFORM ps_health._refuse_unlisted('status', p_status, 'ps_health.health_checks', 'status');
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        RAISE EXCEPTION 'limit must be between 1 and 10000, got %', coalesce(p_limit::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    SELECT h.id, h.check_time, h.project, h.check_type, h.subject, h.status, h.details, h.action_taken, h.ps_response
      FROM ps_health.health_checks h
     WHERE (p_project IS NULL OR h.project = p_project)
       AND (p_check_type IS NULL OR h.check_type = p_check_type)
       AND (p_status IS NULL OR h.status = p_status)
       AND (p_since IS NULL OR h.check_time > p_now - p_since)
     ORDER BY h.id DESC
     LIMIT p_limit;
END;
$$;

-- list_prompts: the outbox, newest first, filtered by project and state, with what each prompt waits
-- for (readers).
CREATE FUNCTION ps_health.list_prompts(p_project text DEFAULT NULL, p_state text DEFAULT NULL,
                                       p_limit integer DEFAULT 50, p_now timestamptz DEFAULT now())
RETURNS TABLE (id bigint, created_at timestamptz, project varchar, host varchar, target varchar,
               severity varchar, state varchar, attempts integer, outcome varchar, detail text,
               not_before timestamptz, completed_at timestamptz, text text, reason text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM ps_health._refuse_unlisted('state', p_state, 'ps_health.prompts', 'state');
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        RAISE EXCEPTION 'limit must be between 1 and 10000, got %', coalesce(p_limit::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    SELECT q.*, ps_health.prompt_reason(q.id, p_now)
      FROM (SELECT p.id, p.created_at, p.project, p.host, p.target, p.severity, p.state, p.attempts, p.outcome,
                   p.detail, p.not_before, p.completed_at, p.text
              FROM ps_health.prompts p
             WHERE (p_project IS NULL OR p.project = p_project)
               AND (p_state IS NULL OR p.state = p_state)
             ORDER BY p.id DESC
             LIMIT p_limit) q
     ORDER BY q.id DESC;
END;
$$;
