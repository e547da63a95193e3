-- 0006: claim and complete cost the same however many prompts wait: claim_prompts looks only at the
-- rows it takes, complete_prompts records a batch of outcomes in one set-based pass, and the engine
-- reads settings through _setting, without a SECURITY DEFINER switch per row.

-- _unknown_setting: the error for a key no setting_definitions row declares.
CREATE OR REPLACE FUNCTION ps_health._unknown_setting(p_key text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
    RAISE EXCEPTION 'unknown setting "%"', p_key USING ERRCODE = '22023';
END;
$$;

-- _setting: the effective value of a setting for a project (project override, global override,
-- default). The engine's lookup: no SECURITY DEFINER switch per call, which made per-row lookups
-- in claim_prompts cost more than the claim itself.
CREATE OR REPLACE FUNCTION ps_health._setting(p_key text, p_project text DEFAULT NULL)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(
             (SELECT s.value FROM ps_health.settings s WHERE s.key = p_key AND s.project = p_project),
             (SELECT s.value FROM ps_health.settings s WHERE s.key = p_key AND s.project = '*'),
             (SELECT d.default_value FROM ps_health.setting_definitions d WHERE d.key = p_key),
             ps_health._unknown_setting(p_key))
$$;

-- setting: the effective value of a setting for a project, for clients (see _setting).
CREATE OR REPLACE FUNCTION ps_health.setting(p_key text, p_project text DEFAULT NULL)
RETURNS text LANGUAGE sql STABLE AS $$ SELECT ps_health._setting(p_key, p_project) $$;

-- _setting_interval / _setting_numeric: typed shorthands for the engine.
CREATE OR REPLACE FUNCTION ps_health._setting_interval(p_key text, p_project text DEFAULT NULL)
RETURNS interval LANGUAGE sql STABLE AS $$ SELECT ps_health._setting(p_key, p_project)::interval $$;

CREATE OR REPLACE FUNCTION ps_health._setting_numeric(p_key text, p_project text DEFAULT NULL)
RETURNS numeric LANGUAGE sql STABLE AS $$ SELECT ps_health._setting(p_key, p_project)::numeric $$;

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
        RETURN ps_health._setting(p_key, p_project);
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
            WHEN 'argv' THEN
                IF jsonb_typeof(p_value::jsonb) <> 'array'
                   OR EXISTS (SELECT 1 FROM jsonb_array_elements(p_value::jsonb) e WHERE jsonb_typeof(e) <> 'string') THEN
                    RAISE invalid_parameter_value;
                END IF;
            ELSE NULL;
        END CASE;
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION 'setting %: "%" is not a valid %', p_key, left(p_value, 100),
            CASE v_kind WHEN 'argv' THEN 'command (a JSON array of strings, e.g. ["notify-send", "ps-health"])'
                        ELSE 'non-negative ' || v_kind END
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

-- _route: how a session's prompts travel now: its pane, the project's command channel when it
-- has no live pane, or NULL (the prompt waits for a session that can take it).
CREATE OR REPLACE FUNCTION ps_health._route(s ps_health.ps_sessions)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN s.id IS NULL OR s.ended_at IS NOT NULL THEN NULL
        WHEN s.tmux_target IS NOT NULL AND s.target_state <> 'gone' THEN 'tmux'
        WHEN s.host IS NOT NULL AND ps_health._setting('command_channel', s.project) <> '[]' THEN 'command'
        END
$$;

-- _escalate: hand checks that stay critical and unanswered to the operator's command, once per
-- problem and again after escalation_reminder. Projects without an escalation_command are skipped.
CREATE OR REPLACE FUNCTION ps_health._escalate(p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    st record;
    v_id bigint;
    v_n integer := 0;
BEGIN
    FOR st IN
        SELECT cs.*, s.host AS session_host, c.details AS check_details
          FROM ps_health.check_state cs
          JOIN ps_health.health_checks c ON c.id = cs.last_check_id
          LEFT JOIN ps_health.ps_sessions s ON s.project = cs.project
         WHERE cs.status = 'critical' AND cs.acknowledged_at IS NULL
           AND ps_health._setting('escalation_command', cs.project) <> '[]'
           AND cs.since <= p_now - ps_health._setting_interval('escalate_after', cs.project)
           AND (cs.escalated_at IS NULL
                OR cs.escalated_at <= p_now - ps_health._setting_interval('escalation_reminder', cs.project))
         FOR UPDATE OF cs
    LOOP
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

-- report_session_targets: whether each project's tmux target was seen; gone after N misses in a row.
CREATE OR REPLACE FUNCTION ps_health.report_session_targets(p_projects text[], p_states text[], p_now timestamptz DEFAULT now())
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
CREATE OR REPLACE FUNCTION ps_health.report_spawn_pids(p_spawn_ids integer[], p_states text[], p_now timestamptz DEFAULT now())
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

-- _handoff_done: a handoff was written (reported by the PS, or its file seen by a probe):
-- close the request, reset the context expectation, and start the automatic cycle when set.
CREATE OR REPLACE FUNCTION ps_health._handoff_done(p_project text, p_file text, p_source text, p_now timestamptz)
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

-- handoff_watches: for a host's reactor, the folders to watch for handoff files (open requests only).
CREATE OR REPLACE FUNCTION ps_health.handoff_watches(p_host text)
RETURNS TABLE (project varchar, folder text, pattern text, requested_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT s.project, ps_health._setting('handoff_folder', s.project), ps_health._setting('handoff_pattern', s.project),
           s.handoff_requested_at
      FROM ps_health.ps_sessions s
     WHERE s.host = p_host AND s.ended_at IS NULL AND s.handoff_requested_at IS NOT NULL
       AND (s.handoff_done_at IS NULL OR s.handoff_done_at < s.handoff_requested_at)
       AND ps_health._setting('handoff_folder', s.project) <> ''
$$;

-- claim_prompts: hand out up to p_limit deliverable prompts of one host under a lease
-- (FOR UPDATE SKIP LOCKED, so reactors never get the same row). Expired leases are claimable
-- again; a prompt out of attempts fails; a prompt whose problems all recovered expires.
CREATE OR REPLACE FUNCTION ps_health.claim_prompts(p_host text, p_worker text, p_limit integer DEFAULT 10,
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
CREATE OR REPLACE FUNCTION ps_health.complete_prompts(p_worker text, p_ids bigint[], p_outcomes text[],
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
CREATE OR REPLACE FUNCTION ps_health.complete_prompt(p_id bigint, p_worker text, p_outcome text, p_detail text DEFAULT NULL,
                                          p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE sql AS $$
    SELECT c.state::text FROM ps_health.complete_prompts(p_worker, ARRAY[p_id], ARRAY[p_outcome], ARRAY[p_detail], p_now) c
$$;

INSERT INTO ps_health.role_functions (role, function) VALUES ('ps_health_reactor', 'complete_prompts');
