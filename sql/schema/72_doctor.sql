-- `ps-health doctor`: the self-check's verdicts on what the database knows (who sweeps, which
-- reactor serves the host, its tmux server and panes), from facts the CLI gathered on the host.

-- doctor_checks: one row per check (sweep, reactor, tmux, panes; for the owner, logins while there are
-- agent logins): ok, warn or fail, what was
-- found and the fix. p_facts: {"cron": {"loaded": bool, "sweep_job": {"active", "last_start",
-- "last_status", "last_message"} or null}, "tmux": {"socket", "reachable", "error"},
-- "panes": [{"project", "target", "state": seen|missing|unknown}]}. p_before_reactor: a reactor
-- for the host is about to start, so none running yet is right.
CREATE FUNCTION ps_health.doctor_checks(p_host text, p_facts jsonb, p_before_reactor boolean DEFAULT false,
                                        p_now timestamptz DEFAULT now())
RETURNS TABLE (name text, status text, detail text, fix text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_late interval := ps_health._setting_interval('sweep_late_after');  -- as system_health
    v_cron_last timestamptz;
    v_reactor_last timestamptz;
    v_job jsonb := nullif(p_facts #> '{cron,sweep_job}', 'null');  -- JSON null: no job
    v_tmux jsonb := coalesce(p_facts -> 'tmux', '{}');
    v_socket text := coalesce(v_tmux ->> 'socket', 'default');
    r ps_health.reactors;
    v_total integer;
    v_missing text;
    v_missing_n integer;
    v_unknown integer;
    v_unbound text;
    v_astray text;
BEGIN
    PERFORM ps_health._check_text('host', p_host);
    SELECT max(swept_at) FILTER (WHERE source = 'pg_cron'), max(swept_at) FILTER (WHERE source = 'reactor')
      INTO v_cron_last, v_reactor_last
      FROM ps_health.sweep_runs WHERE source IN ('pg_cron', 'reactor');

    name := 'sweep';
    IF v_cron_last > p_now - v_late THEN
        status := 'ok'; detail := format('pg_cron sweeps every minute (last sweep %s s ago)',
                                         round(extract(epoch FROM p_now - v_cron_last))); fix := NULL;
    ELSIF v_reactor_last > p_now - v_late THEN
        status := 'ok'; detail := format('the reactor''s fallback sweep runs (last sweep %s s ago)',
                                         round(extract(epoch FROM p_now - v_reactor_last))); fix := NULL;
    ELSIF v_job ->> 'last_status' = 'failed' THEN
        status := 'fail';
        detail := format('pg_cron''s last sweep failed at %s: %s', left(v_job ->> 'last_start', 19),
                         left(regexp_replace(coalesce(v_job ->> 'last_message', 'no message'), '\s+', ' ', 'g'), 200));
        fix := 'see SELECT * FROM cron.job_run_details ORDER BY start_time DESC LIMIT 5; "connection failed" means '
               'pg_cron cannot log in: set cron.host to the socket folder or cron.use_background_workers = on';
    ELSIF v_job IS NOT NULL AND NOT coalesce((v_job ->> 'active')::boolean, false) THEN
        status := 'fail'; detail := 'the pg_cron sweep job is inactive'; fix := 'ps-health cron install';
    ELSIF v_job IS NOT NULL AND v_cron_last IS NULL AND v_job ->> 'last_start' IS NULL THEN
        status := 'ok'; detail := 'pg_cron sweep scheduled every minute; the first one runs within a minute'; fix := NULL;
    ELSIF v_job IS NOT NULL THEN
        status := 'fail';
        detail := format('the pg_cron sweep is scheduled but the last one recorded was %s',
                         coalesce(ps_health._minutes(v_cron_last, p_now) || ' min ago', 'never'));
        fix := 'is pg_cron running? see SELECT * FROM cron.job_run_details ORDER BY start_time DESC LIMIT 5';
    ELSIF coalesce((p_facts #>> '{cron,loaded}')::boolean, false) THEN
        status := 'fail'; detail := 'no sweep: pg_cron is loaded but the sweep is not scheduled';
        fix := 'ps-health cron install';
    ELSE
        status := 'fail'; detail := 'no sweep: pg_cron is not loaded and no reactor sweeps';
        fix := 'run one reactor with --run-checks-every 60 (or load pg_cron and run ps-health cron install)';
    END IF;
    RETURN NEXT;

    SELECT * INTO r FROM ps_health._live_reactors() x WHERE x.host = p_host ORDER BY x.started_at LIMIT 1;
    name := 'reactor'; fix := NULL;
    IF r.worker IS NOT NULL AND p_before_reactor THEN
        status := 'fail';
        detail := format('a reactor for host %s is already running (worker %s, started %s): the one about to start '
                         'would be refused', p_host, r.worker, ps_health._clock(r.started_at));
        fix := 'stop that reactor first (Ctrl-C in its terminal, or systemctl stop ps-health-reactor)';
    ELSIF r.worker IS NOT NULL THEN
        status := 'ok'; detail := format('reactor %s serves host %s (started %s)', r.worker, p_host,
                                         ps_health._clock(r.started_at));
    ELSIF p_before_reactor THEN
        status := 'ok'; detail := format('no reactor for host %s yet: it starts next', p_host);
    ELSE
        status := 'fail'; detail := format('no reactor is running for host %s', p_host);
        fix := 'start one: ps-health reactor (or make run; under systemd: systemctl start ps-health-reactor)';
    END IF;
    RETURN NEXT;

    SELECT count(*)::integer,
           string_agg(format('%s (%s)', e ->> 'project', e ->> 'target'), ', ' ORDER BY e ->> 'project')
               FILTER (WHERE e ->> 'state' = 'missing'),
           count(*) FILTER (WHERE e ->> 'state' = 'missing')::integer,
           count(*) FILTER (WHERE e ->> 'state' NOT IN ('seen', 'missing'))::integer
      INTO v_total, v_missing, v_missing_n, v_unknown
      FROM jsonb_array_elements(coalesce(p_facts -> 'panes', '[]')) e;

    name := 'tmux'; fix := NULL;
    IF coalesce((v_tmux ->> 'reachable')::boolean, false) THEN
        status := 'ok'; detail := format('tmux server %s answers', v_socket);
    ELSIF v_total > 0 THEN
        status := 'fail';
        detail := format('tmux server %s does not answer (%s), yet %s session(s) of host %s have a pane on it',
                         v_socket, coalesce(v_tmux ->> 'error', 'no reply'), v_total, p_host);
        fix := 'start the tmux server the PS panes live in, or point at it: PS_HEALTH_TMUX_SOCKET / --tmux-socket';
    ELSE
        status := 'warn';
        detail := format('no tmux server %s yet (%s): nothing to type into', v_socket,
                         coalesce(v_tmux ->> 'error', 'no reply'));
        fix := 'start your PS inside tmux; set PS_HEALTH_TMUX_SOCKET when it is not the default server';
    END IF;
    RETURN NEXT;

    name := 'panes'; fix := NULL;
    IF v_total = 0 THEN
        status := 'ok'; detail := format('no live session with a pane on host %s yet', p_host);
    ELSIF v_missing IS NOT NULL THEN
        status := 'fail';
        detail := format('%s of %s registered pane(s) not found on tmux server %s: %s', v_missing_n, v_total,
                         v_socket, v_missing);
        fix := 'register each again from its pane (ps-health session register PROJECT), or drop it: ps-health forget PROJECT';
    ELSIF v_unknown > 0 THEN
        status := 'warn'; detail := format('%s of %s registered panes could not be checked', v_unknown, v_total);
        fix := 'see the tmux line';
    ELSE
        status := 'ok'; detail := format('all %s registered pane(s) of host %s found', v_total, p_host);
    END IF;
    RETURN NEXT;

    -- (the owner's: it grants; a reactor or reader login learns no agent login's name here)
    IF ps_health._is_owner() AND EXISTS (SELECT 1 FROM ps_health.agent_projects) THEN
        SELECT string_agg(DISTINCT a.login::text, ', ' ORDER BY a.login::text) INTO v_unbound
          FROM ps_health.agent_projects a
         WHERE NOT EXISTS (SELECT 1 FROM ps_health.agent_hosts h WHERE h.login = a.login);
        -- sessions such a login registered before it was bound (it could not since)
        SELECT string_agg(format('%s (pane %s on %s, by %s)', x.project, x.tmux_target, x.host, x.registered_by), ', '
                          ORDER BY x.project) INTO v_astray
          FROM ps_health.ps_sessions x
         WHERE x.ended_at IS NULL AND x.host IS NOT NULL
           AND EXISTS (SELECT 1 FROM ps_health.agent_hosts h WHERE h.login = x.registered_by)
           AND NOT EXISTS (SELECT 1 FROM ps_health.agent_hosts h WHERE h.login = x.registered_by AND h.host IN (x.host, '*'));
        name := 'logins';
        IF v_unbound IS NULL AND v_astray IS NULL THEN
            status := 'ok'; detail := 'every agent login is bound to its hosts'; fix := NULL;
        ELSE
            status := 'warn';
            detail := concat_ws('; ',
                'live session(s) an agent login registered on a host it is not bound to: ' || v_astray,
                'agent login(s) bound to no host, so each may name a pane on any host: ' || v_unbound);
            fix := concat_ws('; ', CASE WHEN v_astray IS NOT NULL THEN 'end each such session (ps-health session end '
                                                                         'PROJECT) or bind its login to that host' END,
                             CASE WHEN v_unbound IS NOT NULL THEN 'SELECT ps_health.grant_agent_host(''LOGIN'', ''HOST'') '
                                                                  'for the host(s) its agents run on' END);
        END IF;
        RETURN NEXT;
    END IF;
END;
$$;
