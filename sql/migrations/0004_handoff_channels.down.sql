-- Roll back 0004: the engine as 0002/0003 left it.

DROP FUNCTION ps_health.claim_prompts(text, text, integer, integer, timestamptz);
DROP FUNCTION ps_health.report_handoff(text, text, timestamptz);
DROP FUNCTION ps_health._route(ps_health.ps_sessions), ps_health._eval_cycle(text, timestamptz),
    ps_health._escalate(timestamptz), ps_health._handoff_done(text, text, text, timestamptz),
    ps_health.report_handoff_file(text, text, timestamptz, timestamptz), ps_health.handoff_watches(text),
    ps_health._step_delivered(ps_health.prompts, text, text, text, timestamptz);

DELETE FROM ps_health.settings WHERE key IN (SELECT key FROM ps_health.setting_definitions WHERE key IN
    ('handoff_folder', 'handoff_pattern', 'auto_cycle', 'reset_command', 'cycle_confirm_timeout', 'command_channel',
     'command_timeout', 'escalation_command', 'escalate_after', 'escalation_reminder', 'escalation_host'));
DELETE FROM ps_health.setting_definitions WHERE key IN
    ('handoff_folder', 'handoff_pattern', 'auto_cycle', 'reset_command', 'cycle_confirm_timeout', 'command_channel',
     'command_timeout', 'escalation_command', 'escalate_after', 'escalation_reminder', 'escalation_host');
DELETE FROM ps_health.prompt_templates WHERE key IN ('handoff.resume', 'handoff.incomplete', 'escalation');
ALTER TABLE ps_health.setting_definitions DROP CONSTRAINT setting_definitions_kind_check,
    ADD CONSTRAINT setting_definitions_kind_check
        CHECK (kind IN ('interval', 'numeric', 'integer', 'text', 'boolean'));
DROP INDEX ps_health.idx_prompts_after;
ALTER TABLE ps_health.prompts DROP COLUMN after_id, DROP COLUMN kind, DROP COLUMN channel;
ALTER TABLE ps_health.check_state DROP COLUMN escalated_at, DROP COLUMN escalations;
ALTER TABLE ps_health.ps_sessions DROP COLUMN cycle_resumed_at, DROP COLUMN cycle_state;

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
END;
$$;

-- set_setting: change a setting globally (p_project NULL) or for one project; checks the value's kind.
CREATE OR REPLACE FUNCTION ps_health.set_setting(p_key text, p_value text, p_project text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_kind text;
BEGIN
    SELECT kind INTO v_kind FROM ps_health.setting_definitions WHERE key = p_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown setting "%"', p_key USING ERRCODE = '22023';
    END IF;
    IF p_value IS NULL THEN
        DELETE FROM ps_health.settings WHERE key = p_key AND project = coalesce(p_project, '*');
        RETURN ps_health.setting(p_key, p_project);
    END IF;
    BEGIN
        CASE v_kind
            WHEN 'interval' THEN
                IF p_value::interval < interval '0' THEN RAISE invalid_parameter_value; END IF;
            WHEN 'numeric' THEN
                IF p_value::numeric < 0 THEN RAISE invalid_parameter_value; END IF;
            WHEN 'integer' THEN
                IF p_value::integer < 0 THEN RAISE invalid_parameter_value; END IF;
            WHEN 'boolean' THEN PERFORM p_value::boolean;
            ELSE NULL;
        END CASE;
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION 'setting %: "%" is not a valid non-negative %', p_key, left(p_value, 100), v_kind
            USING ERRCODE = '22023';
    END;
    IF p_key IN ('context_warning', 'context_critical') AND p_value::numeric > 1 THEN
        RAISE EXCEPTION 'setting %: "%" must be a fraction between 0 and 1', p_key, p_value USING ERRCODE = '22023';
    END IF;
    INSERT INTO ps_health.settings (key, project, value) VALUES (p_key, coalesce(p_project, '*'), p_value)
    ON CONFLICT (key, project) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
    RETURN p_value;
END;
$$;

-- _queue_prompt: put one problem line in front of the PS, respecting mute and the rate cap.
-- Problems of one project join its pending prompt; returns the action_taken text for the check.
CREATE OR REPLACE FUNCTION ps_health._queue_prompt(p_project text, p_check_id integer, p_severity text, p_line text,
                                        p_now timestamptz)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.ps_sessions;
    v_mute ps_health.mutes;
    v_prompt ps_health.prompts;
    v_line text := p_line || ' ' || ps_health._render('answer', jsonb_build_object('check_id', p_check_id));
    v_state text;
    v_not_before timestamptz := p_now;
    v_last timestamptz;
BEGIN
    SELECT * INTO v_mute FROM ps_health.mutes WHERE project = p_project AND until > p_now;
    IF FOUND THEN
        INSERT INTO ps_health.prompts (project, severity, text, state, not_before, created_at, outcome, detail)
        VALUES (p_project, p_severity, '', 'suppressed', p_now, p_now, 'suppressed',
                'project muted until ' || v_mute.until)
        RETURNING * INTO v_prompt;
        INSERT INTO ps_health.prompt_items VALUES (v_prompt.id, p_check_id, v_line);
        PERFORM ps_health._rerender_prompt(v_prompt.id);
        RETURN format('suppressed: project muted until %s', to_char(v_mute.until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'));
    END IF;

    SELECT * INTO s FROM ps_health.ps_sessions WHERE project = p_project;
    -- A prompt is deliverable only to a live session with a pane; otherwise it waits for one.
    v_state := CASE WHEN s.id IS NOT NULL AND s.ended_at IS NULL AND s.tmux_target IS NOT NULL
                         AND s.target_state <> 'gone' THEN 'pending' ELSE 'waiting' END;

    SELECT * INTO v_prompt FROM ps_health.prompts
     WHERE project = p_project AND state = v_state AND state IN ('pending', 'waiting')
     ORDER BY id DESC LIMIT 1 FOR UPDATE;
    IF FOUND THEN
        INSERT INTO ps_health.prompt_items VALUES (v_prompt.id, p_check_id, v_line) ON CONFLICT DO NOTHING;
        UPDATE ps_health.prompts
           SET severity = CASE WHEN p_severity = 'critical' THEN 'critical' ELSE severity END,
               not_before = CASE WHEN p_severity = 'critical' THEN least(not_before, p_now) ELSE not_before END
         WHERE id = v_prompt.id;
        PERFORM ps_health._rerender_prompt(v_prompt.id);
        RETURN format('queued in prompt #%s', v_prompt.id);
    END IF;

    IF p_severity <> 'critical' THEN
        SELECT max(created_at) INTO v_last FROM ps_health.prompts
         WHERE project = p_project AND state NOT IN ('suppressed', 'expired')
           AND created_at > p_now - ps_health._setting_interval('prompt_rate_interval', p_project);
        IF v_last IS NOT NULL THEN
            v_not_before := v_last + ps_health._setting_interval('prompt_rate_interval', p_project);
        END IF;
    END IF;

    INSERT INTO ps_health.prompts (project, host, target, severity, state, not_before, created_at)
    VALUES (p_project, CASE WHEN v_state = 'pending' THEN s.host END, CASE WHEN v_state = 'pending' THEN s.tmux_target END,
            p_severity, v_state, v_not_before, p_now)
    RETURNING * INTO v_prompt;
    INSERT INTO ps_health.prompt_items VALUES (v_prompt.id, p_check_id, v_line);
    PERFORM ps_health._rerender_prompt(v_prompt.id);
    IF v_state = 'waiting' THEN
        RETURN format('prompt #%s waits for a live session of the project', v_prompt.id);
    ELSIF v_not_before > p_now THEN
        RETURN format('prompt #%s rate-limited until %s', v_prompt.id,
                      to_char(v_not_before AT TIME ZONE 'UTC', 'HH24:MI:SS "UTC"'));
    END IF;
    RETURN format('queued prompt #%s', v_prompt.id);
END;
$$;

-- _eval_context: the context status of a session, the handoff request at the critical line,
-- and the "report your context" check when reports stop arriving.
CREATE OR REPLACE FUNCTION ps_health._eval_context(p_project text, p_now timestamptz)
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
    v_status := ps_health._context_status(p_project, s.context_usage);
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
            jsonb_build_object('requested_at', p_now, 'percent', round(s.context_usage * 100)), NULL, p_now, false);
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

-- run_checks: one sweep over everything monitored. A concurrent second call returns at once
-- ({"skipped": true}); every completed sweep writes one sweep_runs row.
CREATE OR REPLACE FUNCTION ps_health.run_checks(p_now timestamptz DEFAULT now(), p_source text DEFAULT 'manual')
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
    IF NOT pg_try_advisory_xact_lock(hashtext('ps_health.run_checks')) THEN
        RETURN jsonb_build_object('skipped', true, 'reason', 'another sweep is running');
    END IF;
    SELECT coalesce(max(id), 0) INTO v_first_check FROM ps_health.health_checks;

    -- Candidates are found set-based, with each project's thresholds joined once, so a sweep in
    -- which nothing changed costs a few scans; _eval_* then decides each candidate.
    FOR r IN
        WITH th AS MATERIALIZED (SELECT * FROM ps_health._thresholds())
        SELECT id FROM (
        SELECT sp.id FROM ps_health.active_spawns sp
          JOIN th g ON g.project = '*' LEFT JOIN th t ON t.project = sp.project
         WHERE sp.status = 'running'
           AND coalesce(sp.last_output_change, sp.spawn_time) <= p_now - coalesce(t.stall_after, g.stall_after)
        UNION ALL
        SELECT sp.id FROM ps_health.active_spawns sp
          JOIN th g ON g.project = '*' LEFT JOIN th t ON t.project = sp.project
         WHERE sp.status = 'stalled'
           AND (sp.stalled_at <= p_now - coalesce(t.abandon_after, g.abandon_after)
                OR sp.last_output_change > sp.stalled_at)
        ) candidates ORDER BY id
    LOOP
        v_changed := v_changed + ps_health._eval_spawn(r.id, p_now);
    END LOOP;

    -- context: active sessions whose usage status or report status differs from the recorded state
    FOR r IN
        WITH th AS MATERIALIZED (SELECT * FROM ps_health._thresholds()),
        sess AS (
            SELECT s.project,
                   CASE WHEN s.context_usage >= coalesce(t.context_critical, g.context_critical) THEN 'critical'
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
        v_changed := v_changed + ps_health._eval_context(r.project, p_now);
    END LOOP;

    -- handoff: open requests only
    FOR r IN
        SELECT s.project FROM ps_health.ps_sessions s
         WHERE s.handoff_requested_at IS NOT NULL
           AND (s.handoff_done_at IS NULL OR s.handoff_done_at < s.handoff_requested_at)
    LOOP
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
        v_changed := v_changed + ps_health._eval_orphans(r.project, p_now);
    END LOOP;

    v_changed := v_changed + ps_health._remind(p_now);

    SELECT (SELECT count(*) FROM ps_health.ps_sessions WHERE ended_at IS NULL)
         + (SELECT count(*) FROM ps_health.active_spawns WHERE status IN ('running', 'stalled'))
      INTO v_targets;
    SELECT coalesce(jsonb_object_agg(k, n), '{}') INTO v_counts
      FROM (SELECT check_type || '.' || status AS k, count(*) AS n FROM ps_health.health_checks
             WHERE id > v_first_check GROUP BY 1) x;
    INSERT INTO ps_health.sweep_runs (swept_at, started_at, duration_ms, targets, counts, source)
    VALUES (p_now, v_started, extract(epoch FROM clock_timestamp() - v_started) * 1000, v_targets, v_counts, p_source);
    RETURN jsonb_build_object('swept_at', p_now, 'targets', v_targets, 'changes', v_changed, 'counts', v_counts,
                              'duration_ms', round((extract(epoch FROM clock_timestamp() - v_started) * 1000)::numeric, 3));
END;
$$;

-- _release_waiting: prompts that waited for a deliverable session go to its pane now.
CREATE OR REPLACE FUNCTION ps_health._release_waiting(p_project text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    UPDATE ps_health.prompts p
       SET state = 'pending', host = s.host, target = s.tmux_target
      FROM ps_health.ps_sessions s
     WHERE p.project = p_project AND p.state = 'waiting' AND s.project = p_project
       AND s.ended_at IS NULL AND s.tmux_target IS NOT NULL AND s.target_state <> 'gone';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END;
$$;

-- heartbeat_session: the session is alive and working.
CREATE OR REPLACE FUNCTION ps_health.heartbeat_session(p_project text, p_now timestamptz DEFAULT now())
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._session(p_project);
    UPDATE ps_health.ps_sessions SET last_activity = greatest(last_activity, p_now), ended_at = NULL
     WHERE project = p_project;
END;
$$;

-- report_handoff: the PS wrote its handoff; closes the request and resets the context expectation.
CREATE OR REPLACE FUNCTION ps_health.report_handoff(p_project text, p_file text, p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.ps_sessions;
    v_id integer;
BEGIN
    PERFORM ps_health._check_text('file', p_file, 4096);
    PERFORM ps_health._check_time('p_now', p_now);
    s := ps_health._session(p_project);
    UPDATE ps_health.ps_sessions
       SET handoff_done_at = p_now, handoff_file = p_file, context_usage = NULL, last_context_check = NULL,
           last_activity = greatest(last_activity, p_now)
     WHERE id = s.id;
    -- every handoff is a row in the audit, requested or not
    INSERT INTO ps_health.health_checks (project, check_time, check_type, status, details, subject, action_taken)
    VALUES (p_project, p_now, 'handoff', 'ok',
            jsonb_build_object('subject', 'session', 'file', p_file, 'requested_at', s.handoff_requested_at),
            'session', 'handoff reported done')
    RETURNING id INTO v_id;
    INSERT INTO ps_health.check_state (project, check_type, subject, status, since, last_check_id, details)
    VALUES (p_project, 'handoff', 'session', 'ok', p_now, v_id, jsonb_build_object('file', p_file))
    ON CONFLICT (project, check_type, subject) DO UPDATE
       SET status = 'ok', since = p_now, last_check_id = v_id, details = EXCLUDED.details,
           reminders = 0, next_reminder_at = NULL, acknowledged_at = NULL;
    PERFORM ps_health._check(p_project, 'context', 'session', 'ok', '{"reason": "handoff done"}', NULL, p_now);
    RETURN v_id;
END;
$$;

-- claim_prompts: hand out up to p_limit deliverable prompts of one host under a lease
-- (FOR UPDATE SKIP LOCKED, so reactors never get the same row). Expired leases are claimable
-- again; a prompt out of attempts fails; a prompt whose problems all recovered expires.
CREATE OR REPLACE FUNCTION ps_health.claim_prompts(p_host text, p_worker text, p_limit integer DEFAULT 10,
                                        p_lease_seconds integer DEFAULT 60, p_now timestamptz DEFAULT now())
RETURNS TABLE (id bigint, project varchar, target varchar, severity varchar, text text, attempts integer,
               submit_delay_ms integer, idle_seconds numeric, max_defer_seconds numeric, check_ids integer[])
LANGUAGE plpgsql AS $$
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

    UPDATE ps_health.prompts p
       SET state = 'failed', outcome = 'failed', completed_at = p_now,
           detail = format('gave up after %s attempts; last: %s', p.attempts, coalesce(p.detail, 'lease expired'))
     WHERE p.host = p_host AND p.state IN ('pending', 'claimed')
       AND (p.state = 'pending' OR p.lease_until < p_now)
       AND p.attempts >= ps_health.setting('prompt_max_attempts', p.project)::integer;
    UPDATE ps_health.prompts p
       SET state = 'expired', completed_at = p_now, detail = 'every problem it reported has recovered'
     WHERE p.host = p_host AND p.state = 'pending'
       AND NOT EXISTS (SELECT 1 FROM ps_health.prompt_items i
                         JOIN ps_health.health_checks c ON c.id = i.check_id
                         JOIN ps_health.check_state st
                           ON st.project = c.project AND st.check_type = c.check_type AND st.subject = c.subject
                        WHERE i.prompt_id = p.id AND st.status <> 'ok');

    RETURN QUERY
    WITH picked AS (
        SELECT p.id FROM ps_health.prompts p
         WHERE p.host = p_host
           AND ((p.state = 'pending' AND p.not_before <= p_now) OR (p.state = 'claimed' AND p.lease_until < p_now))
         ORDER BY p.id
         LIMIT p_limit
         FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE ps_health.prompts p
           SET state = 'claimed', worker = p_worker, lease_until = p_now + make_interval(secs => p_lease_seconds),
               attempts = p.attempts + 1, claimed_at = p_now
          FROM picked WHERE p.id = picked.id
        RETURNING p.*)
    SELECT c.id, c.project, c.target, c.severity, c.text, c.attempts,
           (extract(epoch FROM ps_health._setting_interval('submit_delay', c.project)) * 1000)::integer,
           ps_health._setting_numeric('idle_seconds', c.project),
           extract(epoch FROM ps_health._setting_interval(
               CASE c.severity WHEN 'critical' THEN 'critical_max_defer' ELSE 'max_defer' END, c.project))::numeric,
           ARRAY(SELECT i.check_id FROM ps_health.prompt_items i WHERE i.prompt_id = c.id ORDER BY i.check_id)
      FROM claimed c ORDER BY c.id;
END;
$$;

-- complete_prompt: the reactor's outcome for a claimed prompt (delivered, target_missing, failed);
-- writes the checks' action_taken. A failed attempt goes back to pending after the retry delay.
CREATE OR REPLACE FUNCTION ps_health.complete_prompt(p_id bigint, p_worker text, p_outcome text, p_detail text DEFAULT NULL,
                                          p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    p ps_health.prompts;
    v_state text;
    v_detail text := left(p_detail, 1000);
BEGIN
    IF p_outcome IS NULL OR p_outcome NOT IN ('delivered', 'target_missing', 'failed') THEN
        RAISE EXCEPTION 'outcome must be delivered, target_missing or failed, got "%"', left(coalesce(p_outcome, 'NULL'), 40)
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO p FROM ps_health.prompts WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown prompt %', p_id USING ERRCODE = 'P0002';
    END IF;
    IF p.state <> 'claimed' OR p.worker IS DISTINCT FROM p_worker THEN
        RAISE EXCEPTION 'prompt % is % and not claimed by worker "%"', p_id, p.state, left(p_worker, 255)
            USING ERRCODE = '55000';
    END IF;
    v_state := CASE WHEN p_outcome = 'delivered' THEN 'delivered'
                    WHEN p.attempts >= ps_health.setting('prompt_max_attempts', p.project)::integer THEN 'failed'
                    ELSE 'pending' END;
    UPDATE ps_health.prompts
       SET state = v_state, outcome = p_outcome, detail = v_detail, lease_until = NULL,
           worker = CASE WHEN v_state = 'pending' THEN NULL ELSE worker END,
           completed_at = CASE WHEN v_state = 'pending' THEN NULL ELSE p_now END,
           not_before = CASE WHEN v_state = 'pending'
                             THEN p_now + ps_health._setting_interval('prompt_retry_delay', p.project) * p.attempts
                             ELSE not_before END
     WHERE id = p_id;
    UPDATE ps_health.health_checks c
       SET action_taken = CASE v_state
               WHEN 'delivered' THEN format('prompt #%s delivered to %s at %s', p_id, p.target,
                                            to_char(p_now AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'))
               WHEN 'failed' THEN format('prompt #%s failed after %s attempts: %s%s', p_id, p.attempts, p_outcome,
                                         coalesce(': ' || v_detail, ''))
               ELSE format('prompt #%s attempt %s: %s%s; will retry', p_id, p.attempts, p_outcome,
                           coalesce(': ' || v_detail, '')) END
      FROM ps_health.prompt_items i WHERE i.prompt_id = p_id AND c.id = i.check_id;
    RETURN v_state;
END;
$$;

