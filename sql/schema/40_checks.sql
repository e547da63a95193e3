-- The checks. Each _eval_* function decides one target's status and calls _transition; the sweep
-- finds the targets whose status would change with set-based queries (cheap when nothing changed)
-- and calls them; events call them directly.

-- _is_active: a live session with activity inside the project's activity window.
CREATE FUNCTION ps_health._is_active(s ps_health.ps_sessions, p_now timestamptz)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT s.id IS NOT NULL AND s.ended_at IS NULL AND s.target_state <> 'gone'
       AND s.last_activity > p_now - ps_health._setting_interval('activity_window', s.project)
$$;

-- _context_status: what a usage fraction means for a project.
CREATE FUNCTION ps_health._context_status(p_project text, p_usage numeric)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_usage IS NULL THEN 'ok'
                WHEN p_usage >= ps_health._setting_numeric('context_critical', p_project) THEN 'critical'
                WHEN p_usage >= ps_health._setting_numeric('context_warning', p_project) THEN 'warning'
                ELSE 'ok' END
$$;

-- _thresholds: the sweep's thresholds for '*' (global) and for every project with an override.
CREATE FUNCTION ps_health._thresholds()
RETURNS TABLE (project varchar, stall_after interval, abandon_after interval, activity_window interval,
               context_check_interval interval, context_warning numeric, context_critical numeric)
LANGUAGE sql STABLE AS $$
    SELECT p.project::varchar,
           ps_health._setting_interval('stall_after', p.project),
           ps_health._setting_interval('abandon_after', p.project),
           ps_health._setting_interval('activity_window', p.project),
           ps_health._setting_interval('context_check_interval', p.project),
           ps_health._setting_numeric('context_warning', p.project),
           ps_health._setting_numeric('context_critical', p.project)
      FROM (SELECT DISTINCT project FROM ps_health.settings WHERE project <> '*' UNION ALL SELECT '*') p
$$;

-- _set_state_template: remember which template a state's reminders use.
CREATE FUNCTION ps_health._set_state_template(p_project text, p_type text, p_subject text, p_template text)
RETURNS void LANGUAGE sql AS $$
    UPDATE ps_health.check_state SET template = p_template
     WHERE project = p_project AND check_type = p_type AND subject = p_subject
$$;

-- _check: _transition plus remembering the template; returns 1 when a row was written.
CREATE FUNCTION ps_health._check(p_project text, p_type text, p_subject text, p_status text, p_details jsonb,
                                 p_template text, p_now timestamptz, p_prompt boolean DEFAULT true)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_id integer;
BEGIN
    v_id := ps_health._transition(p_project, p_type, p_subject, p_status, p_details, p_template, p_now, p_prompt);
    IF v_id IS NOT NULL THEN
        PERFORM ps_health._set_state_template(p_project, p_type, p_subject, p_template);
        RETURN 1;
    END IF;
    RETURN 0;
END;
$$;

-- _eval_spawn: stall and abandon a spawn by the time since its last output.
CREATE FUNCTION ps_health._eval_spawn(p_id integer, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    sp ps_health.active_spawns;
    v_last timestamptz;
    v_details jsonb;
BEGIN
    SELECT * INTO sp FROM ps_health.active_spawns WHERE id = p_id FOR UPDATE;
    v_last := coalesce(sp.last_output_change, sp.spawn_time);
    v_details := jsonb_build_object('task_id', sp.task_id, 'task_type', sp.task_type,
                                    'output_file', coalesce(sp.output_file, 'none'),
                                    'minutes', ps_health._minutes(v_last, p_now), 'last_output', v_last);
    IF sp.status = 'running' AND v_last <= p_now - ps_health._setting_interval('stall_after', sp.project) THEN
        UPDATE ps_health.active_spawns SET status = 'stalled', stalled_at = p_now WHERE id = p_id;
        RETURN ps_health._check(sp.project, 'spawn', sp.task_id, 'warning', v_details, 'spawn.stalled', p_now);
    ELSIF sp.status = 'stalled' AND sp.stalled_at <= p_now - ps_health._setting_interval('abandon_after', sp.project) THEN
        UPDATE ps_health.active_spawns SET status = 'abandoned' WHERE id = p_id;
        RETURN ps_health._check(sp.project, 'spawn', sp.task_id, 'critical', v_details, 'spawn.abandoned', p_now);
    ELSIF sp.status = 'stalled' AND sp.last_output_change > sp.stalled_at THEN
        UPDATE ps_health.active_spawns SET status = 'running', stalled_at = NULL WHERE id = p_id;
        RETURN ps_health._check(sp.project, 'spawn', sp.task_id, 'ok', v_details, NULL, p_now);
    END IF;
    RETURN 0;
END;
$$;

-- _eval_context: the context status of a session, the handoff request at the critical line,
-- and the "report your context" check when reports stop arriving.
CREATE FUNCTION ps_health._eval_context(p_project text, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.ps_sessions;
    v_status text;
    v_report text;
    v_n integer := 0;
    v_last timestamptz;
BEGIN
    SELECT * INTO s FROM ps_health.ps_sessions WHERE project = p_project FOR UPDATE;
    IF NOT FOUND OR NOT ps_health._is_active(s, p_now) THEN
        RETURN 0;
    END IF;
    -- after a handoff the context belongs to the cycle until the fresh conversation reports
    v_status := CASE WHEN s.context_held_since IS NOT NULL THEN 'ok'
                     ELSE ps_health._context_status(p_project, s.context_usage) END;
    v_n := v_n + ps_health._check(p_project, 'context', 'session', v_status,
        jsonb_build_object('percent', round(coalesce(s.context_usage, 0) * 100),
                           'warning_percent', round(ps_health._setting_numeric('context_warning', p_project) * 100),
                           'critical_percent', round(ps_health._setting_numeric('context_critical', p_project) * 100),
                           'tokens_used', s.estimated_tokens_used, 'tokens_total', s.estimated_tokens_total),
        'context.' || v_status, p_now);
    IF v_status = 'critical' AND (s.handoff_requested_at IS NULL
                                  OR s.handoff_done_at >= s.handoff_requested_at) THEN
        UPDATE ps_health.ps_sessions SET handoff_requested_at = p_now WHERE id = s.id;
        -- the critical context prompt already asks for the handoff: record the request, no second prompt
        v_n := v_n + ps_health._check(p_project, 'handoff', 'session', 'warning',
            jsonb_build_object('step', 'requested', 'requested_at', p_now, 'percent', round(s.context_usage * 100)),
            NULL, p_now, false);
    END IF;

    v_last := coalesce(s.last_context_check, s.started_at);
    v_report := CASE WHEN v_last <= p_now - ps_health._setting_interval('context_check_interval', p_project)
                     THEN 'warning' ELSE 'ok' END;
    v_n := v_n + ps_health._check(p_project, 'context', 'report', v_report,
        jsonb_build_object('minutes', ps_health._minutes(v_last, p_now), 'last_report', s.last_context_check),
        'context.report', p_now);
    RETURN v_n;
END;
$$;

-- _eval_handoff: a requested handoff not reported done within the timeout is critical.
CREATE FUNCTION ps_health._eval_handoff(p_project text, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.ps_sessions;
BEGIN
    SELECT * INTO s FROM ps_health.ps_sessions WHERE project = p_project;
    IF s.handoff_requested_at IS NOT NULL
       AND (s.handoff_done_at IS NULL OR s.handoff_done_at < s.handoff_requested_at)
       AND s.handoff_requested_at <= p_now - ps_health._setting_interval('handoff_timeout', p_project) THEN
        RETURN ps_health._check(p_project, 'handoff', 'session', 'critical',
            jsonb_build_object('requested_at', s.handoff_requested_at,
                               'minutes', ps_health._minutes(s.handoff_requested_at, p_now)),
            'handoff.overdue', p_now);
    END IF;
    RETURN 0;
END;
$$;

-- _orphans: open spawns of a project left by a session that ended, is gone, went quiet,
-- or that were started before the current session began.
-- (whether the session is active is looked at once, not once per spawn: it reads a setting)
CREATE FUNCTION ps_health._orphans(p_project text, p_now timestamptz)
RETURNS TABLE (task_id varchar, task_type varchar, status varchar)
LANGUAGE sql STABLE AS $$
    WITH s AS MATERIALIZED (
        SELECT s.id, s.started_at, ps_health._is_active(s, p_now) AS active
          FROM ps_health.ps_sessions s WHERE s.project = p_project)
    SELECT sp.task_id, sp.task_type, sp.status
      FROM ps_health.active_spawns sp
      LEFT JOIN s ON true
     WHERE sp.project = p_project AND sp.status IN ('running', 'stalled')
       AND (s.id IS NULL OR NOT s.active OR sp.spawn_time < s.started_at)
     ORDER BY sp.spawn_time
$$;

-- _eval_orphans: one orphaned_work state per project, listing the spawns.
CREATE FUNCTION ps_health._eval_orphans(p_project text, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
    v_tasks text;
BEGIN
    SELECT count(*), string_agg(o.task_id || ' (' || o.task_type || ', ' || o.status || ')', ', ')
      INTO v_count, v_tasks
      FROM ps_health._orphans(p_project, p_now) o;
    RETURN ps_health._check(p_project, 'orphaned_work', 'spawns',
        CASE WHEN v_count > 0 THEN 'warning' ELSE 'ok' END,
        jsonb_build_object('count', v_count, 'tasks', coalesce(v_tasks, '')),
        'orphaned_work.spawns', p_now);
END;
$$;

-- _eval_cycle: after the resume prompt of a handoff cycle, activity (a context report, a
-- heartbeat, a spawn) completes the cycle; none within cycle_confirm_timeout is critical.
CREATE FUNCTION ps_health._eval_cycle(p_project text, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.ps_sessions;
BEGIN
    SELECT * INTO s FROM ps_health.ps_sessions WHERE project = p_project FOR UPDATE;
    IF s.cycle_state IS DISTINCT FROM 'resume_delivered' AND s.cycle_state IS DISTINCT FROM 'incomplete' THEN
        RETURN 0;
    END IF;
    IF s.last_activity > s.cycle_resumed_at THEN
        UPDATE ps_health.ps_sessions SET cycle_state = 'complete' WHERE id = s.id;
        RETURN ps_health._check(p_project, 'handoff', 'cycle', 'ok',
            jsonb_build_object('step', 'cycle_complete', 'file', s.handoff_file,
                               'context_percent', round(s.context_usage * 100)), NULL, p_now);
    ELSIF s.cycle_state = 'resume_delivered'
          AND s.cycle_resumed_at <= p_now - ps_health._setting_interval('cycle_confirm_timeout', p_project) THEN
        UPDATE ps_health.ps_sessions SET cycle_state = 'incomplete' WHERE id = s.id;
        RETURN ps_health._check(p_project, 'handoff', 'cycle', 'critical',
            jsonb_build_object('step', 'cycle_incomplete', 'file', s.handoff_file,
                               'minutes', ps_health._minutes(s.cycle_resumed_at, p_now)),
            'handoff.incomplete', p_now);
    END IF;
    RETURN 0;
END;
$$;

-- _lock_state: the sweep's hold on a problem it found: its project's lock when free, and the state
-- row when it is still as found (no new status, answer or escalation since). Busy or changed: false.
CREATE FUNCTION ps_health._lock_state(p_project text, p_type text, p_subject text, p_check_id integer,
                                      p_escalated_at timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ps_health._try_lock_project(p_project) THEN
        RETURN false;
    END IF;
    PERFORM 1 FROM ps_health.check_state cs
     WHERE cs.project = p_project AND cs.check_type = p_type AND cs.subject = p_subject
       AND cs.last_check_id = p_check_id AND cs.acknowledged_at IS NULL
       AND cs.escalated_at IS NOT DISTINCT FROM p_escalated_at
       FOR UPDATE;
    RETURN FOUND;
END;
$$;

-- _escalate: hand checks that stay critical and unanswered to the operator's command, once per
-- problem and again after escalation_reminder. Projects without an escalation_command are skipped,
-- and so are busy ones (the next sweep escalates them).
CREATE FUNCTION ps_health._escalate(p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    st record;
    v_id bigint;
    v_n integer := 0;
BEGIN
    FOR st IN
        SELECT cs.project, cs.check_type, cs.subject, cs.status, cs.since, cs.last_check_id, cs.template,
               cs.escalated_at, s.host AS session_host, c.details AS check_details
          FROM ps_health.check_state cs
          JOIN ps_health.health_checks c ON c.id = cs.last_check_id
          LEFT JOIN ps_health.ps_sessions s ON s.project = cs.project
         WHERE cs.status = 'critical' AND cs.acknowledged_at IS NULL
           AND ps_health._setting('escalation_command', cs.project) <> '[]'
           AND cs.since <= p_now - ps_health._setting_interval('escalate_after', cs.project)
           AND (cs.escalated_at IS NULL
                OR cs.escalated_at <= p_now - ps_health._setting_interval('escalation_reminder', cs.project))
         ORDER BY cs.project
    LOOP
        CONTINUE WHEN NOT ps_health._lock_state(st.project, st.check_type, st.subject, st.last_check_id,
                                                 st.escalated_at);
        INSERT INTO ps_health.prompts (project, host, severity, state, not_before, created_at, channel, kind, text)
        VALUES (st.project, coalesce(nullif(ps_health._setting('escalation_host', st.project), ''), st.session_host),
                'critical', 'pending', p_now, p_now, 'escalation', 'escalation',
                ps_health._render('escalation', jsonb_build_object(
                    'project', st.project, 'check_type', st.check_type, 'check_id', st.last_check_id,
                    'status', st.status, 'minutes', ps_health._minutes(st.since, p_now),
                    'summary', ps_health._render(coalesce(st.template, 'header'),
                                                 st.check_details || jsonb_build_object('project', st.project)))))
        RETURNING id INTO v_id;
        INSERT INTO ps_health.prompt_items (prompt_id, check_id, line) VALUES (v_id, st.last_check_id, 'escalation');
        UPDATE ps_health.check_state SET escalated_at = p_now, escalations = escalations + 1
         WHERE project = st.project AND check_type = st.check_type AND subject = st.subject;
        UPDATE ps_health.health_checks
           SET action_taken = coalesce(action_taken || '; ', '') || format('escalation #%s queued', v_id)
         WHERE id = st.last_check_id;
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END;
$$;

-- _remind: re-send an unanswered problem when its reminder falls due.
CREATE FUNCTION ps_health._remind(p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    st ps_health.check_state;
    v_n integer := 0;
BEGIN
    FOR st IN
        SELECT cs.* FROM ps_health.check_state cs
         WHERE cs.status <> 'ok' AND cs.acknowledged_at IS NULL AND cs.next_reminder_at <= p_now
           AND cs.template IS NOT NULL
           -- no reminder while the previous prompt for it has not gone out yet
           AND NOT EXISTS (SELECT 1 FROM ps_health.prompt_items i JOIN ps_health.prompts p ON p.id = i.prompt_id
                            WHERE i.check_id = cs.last_check_id AND p.state IN ('waiting', 'pending', 'claimed'))
           -- session checks remind only while the session is active
           AND (cs.check_type NOT IN ('context', 'handoff')
                OR EXISTS (SELECT 1 FROM ps_health.ps_sessions s
                            WHERE s.project = cs.project AND ps_health._is_active(s, p_now)))
         ORDER BY cs.next_reminder_at
    LOOP
        CONTINUE WHEN NOT ps_health._lock_state(st.project, st.check_type, st.subject, st.last_check_id,
                                                 st.escalated_at);
        v_n := v_n + ps_health._check(st.project, st.check_type, st.subject, st.status, st.details - 'reminder' - 'since',
                                      st.template, p_now);
    END LOOP;
    RETURN v_n;
END;
$$;

-- _sweep_summary: what a sweep looked at (open sessions and running or stalled spawns) and the checks it wrote
-- after check p_first_check, by type and status: of every project (p_all), or of those the login may see.
CREATE FUNCTION ps_health._sweep_summary(p_first_check integer, p_all boolean,
                                         OUT targets integer, OUT counts jsonb, OUT checks integer)
LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM ps_health.ps_sessions
             WHERE ended_at IS NULL AND (p_all OR ps_health._may_see(project)))::integer
         + (SELECT count(*) FROM ps_health.active_spawns
             WHERE status IN ('running', 'stalled') AND (p_all OR ps_health._may_see(project)))::integer,
           coalesce(jsonb_object_agg(x.k, x.n), '{}'), coalesce(sum(x.n), 0)::integer
      FROM (SELECT check_type || '.' || status AS k, count(*) AS n FROM ps_health.health_checks
             WHERE id > p_first_check AND (p_all OR ps_health._may_see(project)) GROUP BY 1) x
$$;

-- run_checks: one sweep over everything monitored. A concurrent second call returns at once
-- ({"skipped": true}); every completed sweep writes one sweep_runs row. A project another call is
-- writing to at that moment is left to the next sweep (the sweep never waits for a project's lock).
CREATE FUNCTION ps_health.run_checks(p_now timestamptz DEFAULT now(), p_source text DEFAULT 'manual')
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_started timestamptz := clock_timestamp();
    v_first_check integer;
    v_targets integer;
    v_counts jsonb;
    v_changed integer := 0;
    r record;
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
    -- the sweep holds its lock and the lock of every project it writes until the caller's transaction
    -- ends: a login other than the owner (a reactor's) that leaves it open and idle is ended after 5 s
    IF NOT ps_health._is_owner() AND coalesce(nullif(current_setting('idle_in_transaction_session_timeout'), '0'),
                                              '1 day')::interval > interval '5 seconds' THEN
        PERFORM set_config('idle_in_transaction_session_timeout', '5s', true);
    END IF;
    IF NOT ps_health._try_lock('sweep', '') THEN
        RETURN jsonb_build_object('skipped', true, 'reason', 'another sweep is running');
    END IF;
    SELECT coalesce(max(id), 0) INTO v_first_check FROM ps_health.health_checks;

    -- Candidates are found set-based, with each project's thresholds joined once, so a sweep in
    -- which nothing changed costs a few scans; _eval_* then decides each candidate.
    FOR r IN
        WITH th AS MATERIALIZED (SELECT * FROM ps_health._thresholds())
        SELECT id, project FROM (
        SELECT sp.id, sp.project FROM ps_health.active_spawns sp
          JOIN th g ON g.project = '*' LEFT JOIN th t ON t.project = sp.project
         WHERE sp.status = 'running'
           AND coalesce(sp.last_output_change, sp.spawn_time) <= p_now - coalesce(t.stall_after, g.stall_after)
        UNION ALL
        SELECT sp.id, sp.project FROM ps_health.active_spawns sp
          JOIN th g ON g.project = '*' LEFT JOIN th t ON t.project = sp.project
         WHERE sp.status = 'stalled'
           AND (sp.stalled_at <= p_now - coalesce(t.abandon_after, g.abandon_after)
                OR sp.last_output_change > sp.stalled_at)
        ) candidates ORDER BY id
    LOOP
        CONTINUE WHEN NOT ps_health._try_lock_project(r.project);
        v_changed := v_changed + ps_health._eval_spawn(r.id, p_now);
    END LOOP;

    -- context: active sessions whose usage status or report status differs from the recorded state
    FOR r IN
        WITH th AS MATERIALIZED (SELECT * FROM ps_health._thresholds()),
        sess AS (
            SELECT s.project,
                   CASE WHEN s.context_held_since IS NOT NULL THEN 'ok'
                        WHEN s.context_usage >= coalesce(t.context_critical, g.context_critical) THEN 'critical'
                        WHEN s.context_usage >= coalesce(t.context_warning, g.context_warning) THEN 'warning'
                        ELSE 'ok' END AS usage_status,
                   CASE WHEN coalesce(s.last_context_check, s.started_at)
                             <= p_now - coalesce(t.context_check_interval, g.context_check_interval)
                        THEN 'warning' ELSE 'ok' END AS report_status
              FROM ps_health.ps_sessions s
              JOIN th g ON g.project = '*' LEFT JOIN th t ON t.project = s.project
             WHERE s.ended_at IS NULL AND s.target_state <> 'gone'
               AND s.last_activity > p_now - coalesce(t.activity_window, g.activity_window))
        SELECT sess.project FROM sess
          LEFT JOIN ps_health.check_state c ON c.project = sess.project AND c.check_type = 'context' AND c.subject = 'session'
          LEFT JOIN ps_health.check_state rp ON rp.project = sess.project AND rp.check_type = 'context' AND rp.subject = 'report'
         WHERE sess.usage_status <> coalesce(c.status, 'ok') OR sess.report_status <> coalesce(rp.status, 'ok')
    LOOP
        CONTINUE WHEN NOT ps_health._try_lock_project(r.project);
        v_changed := v_changed + ps_health._eval_context(r.project, p_now);
    END LOOP;

    -- handoff: open requests only
    FOR r IN
        SELECT s.project FROM ps_health.ps_sessions s
         WHERE s.handoff_requested_at IS NOT NULL
           AND (s.handoff_done_at IS NULL OR s.handoff_done_at < s.handoff_requested_at)
    LOOP
        CONTINUE WHEN NOT ps_health._try_lock_project(r.project);
        v_changed := v_changed + ps_health._eval_handoff(r.project, p_now);
    END LOOP;

    -- orphaned work: projects with open spawns and no active session for them, plus open states to close
    FOR r IN
        WITH th AS MATERIALIZED (SELECT * FROM ps_health._thresholds())
        SELECT DISTINCT sp.project FROM ps_health.active_spawns sp
          LEFT JOIN ps_health.ps_sessions s ON s.project = sp.project
          JOIN th g ON g.project = '*' LEFT JOIN th t ON t.project = sp.project
         WHERE sp.status IN ('running', 'stalled')
           AND (s.id IS NULL OR s.ended_at IS NOT NULL OR s.target_state = 'gone' OR sp.spawn_time < s.started_at
                OR s.last_activity <= p_now - coalesce(t.activity_window, g.activity_window))
        UNION
        SELECT project FROM ps_health.check_state WHERE check_type = 'orphaned_work' AND status <> 'ok'
    LOOP
        CONTINUE WHEN NOT ps_health._try_lock_project(r.project);
        v_changed := v_changed + ps_health._eval_orphans(r.project, p_now);
    END LOOP;

    -- handoff cycles waiting for activity after the resume prompt
    FOR r IN SELECT project FROM ps_health.ps_sessions WHERE cycle_state IN ('resume_delivered', 'incomplete') LOOP
        CONTINUE WHEN NOT ps_health._try_lock_project(r.project);
        v_changed := v_changed + ps_health._eval_cycle(r.project, p_now);
    END LOOP;

    v_changed := v_changed + ps_health._remind(p_now);
    v_changed := v_changed + ps_health._escalate(p_now);

    SELECT s.targets, s.counts INTO v_targets, v_counts FROM ps_health._sweep_summary(v_first_check, true) s;
    INSERT INTO ps_health.sweep_runs (swept_at, started_at, duration_ms, targets, counts, source)
    VALUES (p_now, v_started, extract(epoch FROM clock_timestamp() - v_started) * 1000, v_targets, v_counts, p_source);
    IF NOT ps_health._sees_all() THEN
        -- a reactor's login is told of the projects it may see only, not of the whole database's
        SELECT s.targets, s.counts, s.checks INTO v_targets, v_counts, v_changed
          FROM ps_health._sweep_summary(v_first_check, false) s;
    END IF;
    RETURN jsonb_build_object('swept_at', p_now, 'targets', v_targets, 'changes', v_changed, 'counts', v_counts,
                              'duration_ms', round((extract(epoch FROM clock_timestamp() - v_started) * 1000)::numeric, 3));
END;
$$;
