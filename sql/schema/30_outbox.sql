-- The prompt outbox: rendering templates, the one NOTIFY, routing, queueing (mute, rate cap,
-- merging problems of a project), and the edge-triggered transition every check goes through.

-- The default prompt texts: added when missing, never over a text someone edited.
INSERT INTO ps_health.prompt_templates (key, body) VALUES
  ('marker',              '[ps-health #{prompt_id}]'),
  ('header',              '{project}:'),
  ('answer',              'Answer with: ps-health respond {check_id} "<what you did>"'),
  ('reminder',            'reminder {reminder}:'),
  ('spawn.stalled',       'spawn {task_id} ({task_type}) has had no output for {minutes} min (output file {output_file}). Check on it.'),
  ('spawn.abandoned',     'spawn {task_id} ({task_type}) has had no output for {minutes} min and is now marked abandoned. Restart or cancel it.'),
  ('spawn.failed',        'spawn {task_id} ({task_type}) failed with exit code {exit_code}: {error}'),
  ('spawn.vanished',      'spawn {task_id} ({task_type}): its process {pid} is gone without reporting an exit code.'),
  ('context.warning',     'context window at {percent}% (warning at {warning_percent}%). Plan a handoff soon.'),
  ('context.critical',    'context window at {percent}% (critical at {critical_percent}%). Write a handoff file now, then run: ps-health handoff done --project {project} --file <path>'),
  ('context.report',      'no context report for {minutes} min. Report it: ps-health context --project {project} --percent <N>'),
  ('handoff.overdue',     'handoff requested {minutes} min ago is not reported done. Write it, then run: ps-health handoff done --project {project} --file <path>'),
  ('orphaned_work.spawns','{count} spawn(s) from the previous session are still marked running: {tasks}. Resume or finish them (ps-health spawn finish).'),
  ('handoff.resume',      '{project}: your context was cleared after a handoff. Read {file} and continue the work it describes.'),
  ('handoff.incomplete',  'the handoff cycle did not complete: no context report or activity for {minutes} min after the resume prompt (handoff file {file}).'),
  ('escalation',          '[ps-health] {project}: {check_type} check #{check_id} has been {status} for {minutes} min without an answer. {summary}'),
  ('more',                '(and {count} more problem(s), not listed here: ps-health status shows them counted)')
ON CONFLICT (key) DO NOTHING;

-- _shell_word: a value as one word of a shell command, quoted unless it needs no quoting (as Python's
-- shlex.quote does it): a prompt names the command to answer with, and the PS may run it as shown.
CREATE FUNCTION ps_health._shell_word(p_value text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_value ~ '^[[:alnum:]_@%+=:,./-]+$' THEN p_value
                ELSE '''' || replace(p_value, '''', '''"''"''') || '''' END
$$;

-- _render: fill {name} placeholders of a template from a jsonb object. A value is cut at 300 characters,
-- except a path ({file}, {output_file}: a cut path names another file; each is bounded where it is
-- accepted, at 4,352 and 4,096 characters) and a line rendered already (an escalation's {summary}).
-- A project given to a command (`--project {project}`) is quoted for the shell: a name with a space
-- or a `;` would otherwise split the command, or add one.
CREATE FUNCTION ps_health._render(p_key text, p_vars jsonb)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_text text;
    k text;
    v text;
BEGIN
    SELECT body INTO v_text FROM ps_health.prompt_templates WHERE key = p_key;
    IF v_text IS NULL THEN
        RAISE EXCEPTION 'no prompt template "%"', p_key USING ERRCODE = '22023';
    END IF;
    IF p_vars ? 'project' THEN
        v_text := replace(v_text, '--project {project}',
                          '--project ' || ps_health._shell_word(left(coalesce(p_vars->>'project', '?'), 300)));
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each_text(p_vars) LOOP
        v_text := replace(v_text, '{' || k || '}', CASE WHEN k IN ('file', 'output_file', 'summary')
                                                        THEN coalesce(v, '?') ELSE left(coalesce(v, '?'), 300) END);
    END LOOP;
    RETURN v_text;
END;
$$;

-- _marker: how a prompt typed into a pane starts, so a reactor recognises it on screen (text it typed but
-- did not submit, perhaps before it was restarted) and never types it a second time beside it.
CREATE FUNCTION ps_health._marker(p_id bigint)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT ps_health._render('marker', jsonb_build_object('prompt_id', p_id))
$$;

-- _marker_pattern: a regular expression (PostgreSQL's and Python's alike) matching any prompt's marker.
CREATE FUNCTION ps_health._marker_pattern()
RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT replace(regexp_replace(body, '([]\[.^$*+?(){}|\\])', '\\\1', 'g'), '\{prompt_id\}', '[0-9]+')
              FROM ps_health.prompt_templates WHERE key = 'marker');
END;
$$;

-- _notify_queue_limit: past this share of the cluster's NOTIFY queue in use, no wake-up is sent. The queue
-- is shared by every login, and a listener that leaves a transaction open keeps it from being emptied: a
-- full queue fails the commit of every transaction that notifies. A wake-up not sent loses nothing: the
-- reactor claims on its poll interval too.
CREATE FUNCTION ps_health._notify_queue_limit()
RETURNS double precision LANGUAGE sql STABLE AS $$ SELECT 0.5::double precision $$;

-- _notify_prompt: the only function that calls pg_notify; a wake-up, never the data (any login may LISTEN:
-- it names a prompt's number and a host, never a project or a pane). With p_session: a session with a
-- pane was registered on the host, and its reactor looks at the pane at once.
CREATE FUNCTION ps_health._notify_prompt(p_id bigint, p_host text, p_session boolean DEFAULT false)
RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify('ps_health', CASE WHEN p_session
        THEN json_build_object('session', true, 'host', left(p_host, 255))
        ELSE json_build_object('id', p_id, 'host', left(p_host, 255)) END::text)
     WHERE pg_notification_queue_usage() < ps_health._notify_queue_limit();
$$;

CREATE FUNCTION ps_health.trg_prompts_insert()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._notify_prompt(NEW.id, NEW.host);
    RETURN NULL;
END;
$$;

CREATE FUNCTION ps_health.trg_prompts_update()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._notify_prompt(NEW.id, NEW.host);
    RETURN NULL;
END;
$$;

CREATE TRIGGER trg_prompts_insert AFTER INSERT ON ps_health.prompts
    FOR EACH ROW WHEN (NEW.state = 'pending') EXECUTE FUNCTION ps_health.trg_prompts_insert();

CREATE TRIGGER trg_prompts_update AFTER UPDATE OF state ON ps_health.prompts
    FOR EACH ROW WHEN (NEW.state = 'pending' AND OLD.state IS DISTINCT FROM 'pending')
    EXECUTE FUNCTION ps_health.trg_prompts_update();

-- A prompt lists at most this many problems (critical ones first); the rest are counted after them.
CREATE FUNCTION ps_health._prompt_lines_shown()
RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 10 $$;

-- A prompt holds at most this many problems, so a flood of problems costs each sweep little and the prompt
-- stays short: a further warning of the project is recorded (its check says so in action_taken) but joins
-- no prompt; a further critical problem takes the place of the newest warning (_queue_prompt).
CREATE FUNCTION ps_health._prompt_items_max()
RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 100 $$;

-- _rerender_prompt: rebuild a prompt's text from its items (several problems, one prompt): the first
-- _prompt_lines_shown() of them, critical ones first (the PS's own context and handoff first among
-- them: they ask for the handoff), then how many more it holds.
CREATE FUNCTION ps_health._rerender_prompt(p_id bigint)
RETURNS void LANGUAGE sql AS $$
    WITH items AS (
        SELECT i.line, row_number() OVER (ORDER BY (c.status = 'critical') DESC,
                                                   (c.check_type IN ('context', 'handoff')) DESC, i.check_id) AS n,
               count(*) OVER () AS total
          FROM ps_health.prompt_items i JOIN ps_health.health_checks c ON c.id = i.check_id
         WHERE i.prompt_id = p_id)
    UPDATE ps_health.prompts p
       SET text = ps_health._marker(p.id) || ' ' ||
                  ps_health._render('header', jsonb_build_object('project', p.project, 'prompt_id', p.id)) || ' ' ||
                  (SELECT CASE WHEN count(*) = 1 THEN min(i.line)
                               ELSE string_agg('(' || n || ') ' || i.line, ' ' ORDER BY n) END
                     FROM items i WHERE n <= ps_health._prompt_lines_shown()) ||
                  coalesce(' ' || (SELECT ps_health._render('more', jsonb_build_object('count', max(total) - max(n),
                                                                                       'project', p.project))
                                     FROM items WHERE n <= ps_health._prompt_lines_shown()
                                   HAVING max(total) > max(n)), '')
     WHERE p.id = p_id;
$$;

-- _route: how a session's prompts travel now: its pane, the project's command channel when it
-- has no live pane, or NULL (the prompt waits for a session that can take it).
CREATE FUNCTION ps_health._route(s ps_health.ps_sessions)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN s.id IS NULL OR s.ended_at IS NOT NULL THEN NULL
        WHEN s.tmux_target IS NOT NULL AND s.target_state <> 'gone' THEN 'tmux'
        WHEN s.host IS NOT NULL AND ps_health._setting('command_channel', s.project) <> '[]' THEN 'command'
        END
$$;

-- _queue_prompt: put one problem line in front of the PS, respecting mute and the rate cap.
-- Problems of one project join its pending prompt; returns the action_taken text for the check.
CREATE FUNCTION ps_health._queue_prompt(p_project text, p_check_id integer, p_severity text, p_line text,
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
    v_channel text;
    v_evicted integer;
    v_join boolean;
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
    v_channel := ps_health._route(s);
    v_state := CASE WHEN v_channel IS NULL THEN 'waiting' ELSE 'pending' END;
    v_channel := coalesce(v_channel, 'tmux');

    SELECT * INTO v_prompt FROM ps_health.prompts
     WHERE project = p_project AND state = v_state AND channel = v_channel AND kind = 'alert'
     ORDER BY id DESC LIMIT 1 FOR UPDATE;
    v_join := FOUND;
    IF v_join AND (SELECT count(*) FROM (SELECT FROM ps_health.prompt_items WHERE prompt_id = v_prompt.id
                                          LIMIT ps_health._prompt_items_max()) x) >= ps_health._prompt_items_max() THEN
        -- full: a critical problem takes the place of the newest warning in it (that one's check says so)
        IF p_severity = 'critical' THEN
            DELETE FROM ps_health.prompt_items i
             WHERE i.prompt_id = v_prompt.id
               AND i.check_id = (SELECT max(j.check_id) FROM ps_health.prompt_items j
                                   JOIN ps_health.health_checks c ON c.id = j.check_id
                                  WHERE j.prompt_id = v_prompt.id AND c.status <> 'critical')
            RETURNING i.check_id INTO v_evicted;
        END IF;
        IF v_evicted IS NULL THEN
            RETURN format('in no prompt: prompt #%s holds %s problems of the project already', v_prompt.id,
                          ps_health._prompt_items_max());
        END IF;
        UPDATE ps_health.health_checks
           SET action_taken = format('in no prompt: it made room in prompt #%s for critical check #%s', v_prompt.id,
                                     p_check_id)
         WHERE id = v_evicted;
    END IF;
    IF v_join THEN
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

    INSERT INTO ps_health.prompts (project, host, target, severity, state, not_before, created_at, channel)
    VALUES (p_project, CASE WHEN v_state = 'pending' THEN s.host END,
            CASE WHEN v_state = 'pending' AND v_channel = 'tmux' THEN s.tmux_target END,
            p_severity, v_state, v_not_before, p_now, v_channel)
    RETURNING * INTO v_prompt;
    INSERT INTO ps_health.prompt_items VALUES (v_prompt.id, p_check_id, v_line);
    PERFORM ps_health._rerender_prompt(v_prompt.id);
    IF v_state = 'waiting' THEN
        RETURN format('prompt #%s waits for a live session of the project', v_prompt.id);
    ELSIF v_channel = 'command' THEN
        RETURN format('prompt #%s queued for the command channel', v_prompt.id);
    ELSIF v_not_before > p_now THEN
        RETURN format('prompt #%s rate-limited until %s', v_prompt.id,
                      to_char(v_not_before AT TIME ZONE 'UTC', 'HH24:MI:SS "UTC"'));
    END IF;
    RETURN format('queued prompt #%s', v_prompt.id);
END;
$$;

-- _transition: move (project, type, subject) to a status. Writes a health_checks row only on a
-- change (recovery to ok included) or when a reminder is due, and queues the prompt when asked.
-- Returns the new check id, or NULL when nothing changed.
CREATE FUNCTION ps_health._transition(p_project text, p_check_type text, p_subject text, p_status text,
                                      p_details jsonb, p_template text, p_now timestamptz,
                                      p_prompt boolean DEFAULT true)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    st ps_health.check_state;
    v_id integer;
    v_reminder integer := 0;
    v_details jsonb := coalesce(p_details, '{}') || jsonb_build_object('subject', p_subject);
    v_action text;
    v_line text;
    v_interval interval;
BEGIN
    SELECT * INTO st FROM ps_health.check_state
     WHERE project = p_project AND check_type = p_check_type AND subject = p_subject FOR UPDATE;
    IF NOT FOUND AND p_status = 'ok' THEN
        RETURN NULL;  -- healthy and always was: nothing to record
    END IF;
    IF FOUND AND st.status = p_status THEN
        IF p_status = 'ok' OR st.acknowledged_at IS NOT NULL OR st.next_reminder_at IS NULL
           OR st.next_reminder_at > p_now THEN
            RETURN NULL;
        END IF;
        v_reminder := st.reminders + 1;
        v_details := v_details || jsonb_build_object('reminder', v_reminder, 'since', st.since);
    ELSIF FOUND THEN
        v_details := v_details || jsonb_build_object('previous_status', st.status);
    END IF;

    INSERT INTO ps_health.health_checks (project, check_time, check_type, status, details, subject)
    VALUES (p_project, p_now, p_check_type, p_status, v_details, p_subject)
    RETURNING id INTO v_id;

    IF p_status = 'ok' THEN
        v_action := 'recorded recovery; no prompt';
    ELSIF p_prompt AND p_template IS NOT NULL THEN
        v_line := ps_health._render(p_template, v_details || jsonb_build_object('project', p_project));
        IF v_reminder > 0 THEN
            v_line := ps_health._render('reminder', jsonb_build_object('reminder', v_reminder)) || ' ' || v_line;
        END IF;
        v_action := ps_health._queue_prompt(p_project, v_id, p_status, v_line, p_now);
    ELSE
        v_action := 'recorded; no prompt';
    END IF;
    UPDATE ps_health.health_checks SET action_taken = v_action WHERE id = v_id;

    v_interval := least(ps_health._setting_interval('reminder_interval', p_project) * power(2, v_reminder),
                        ps_health._setting_interval('reminder_max_interval', p_project));
    INSERT INTO ps_health.check_state AS cs (project, check_type, subject, status, since, last_check_id, details,
                                             reminders, next_reminder_at, acknowledged_at)
    VALUES (p_project, p_check_type, p_subject, p_status, p_now, v_id, v_details, 0,
            CASE WHEN p_status <> 'ok' THEN p_now + v_interval END, NULL)
    ON CONFLICT (project, check_type, subject) DO UPDATE
       SET status = EXCLUDED.status,
           since = CASE WHEN v_reminder > 0 THEN cs.since ELSE EXCLUDED.since END,
           last_check_id = EXCLUDED.last_check_id,
           details = EXCLUDED.details,
           reminders = v_reminder,
           next_reminder_at = EXCLUDED.next_reminder_at,
           acknowledged_at = CASE WHEN v_reminder > 0 THEN cs.acknowledged_at END;
    RETURN v_id;
END;
$$;
