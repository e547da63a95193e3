-- 0002: the health engine (settings, edge-triggered checks, sweep, prompt outbox, API).

-- ---------------------------------------------------------------- from sql/schema/20_engine.sql
-- ps-health: the health engine. Settings as data, edge-triggered check state, the
-- sweep, events raised in the same transaction, the prompt outbox and its claim
-- protocol, the API for agents and probes, retention and the pg_cron job bodies.
-- Every decision (thresholds, transitions, de-duplication, prompt text) is made here.

-- ================================================================ columns on the seed tables

ALTER TABLE ps_health.ps_sessions
    ADD COLUMN host                 varchar(255),
    ADD COLUMN tmux_target          varchar(255),
    ADD COLUMN transcript_path      text,
    ADD COLUMN ended_at             timestamptz,
    -- liveness of the tmux target as reported by the reactor: seen, missing, gone, unknown
    ADD COLUMN target_state         varchar(10) NOT NULL DEFAULT 'unknown'
        CONSTRAINT ps_sessions_target_state_check CHECK (target_state IN ('seen', 'missing', 'gone', 'unknown')),
    ADD COLUMN target_misses        integer NOT NULL DEFAULT 0,
    ADD COLUMN handoff_requested_at timestamptz,
    ADD COLUMN handoff_done_at      timestamptz,
    ADD COLUMN handoff_file         text;

ALTER TABLE ps_health.active_spawns
    ADD COLUMN host        varchar(255),
    ADD COLUMN pid         integer CONSTRAINT active_spawns_pid_check CHECK (pid > 0),
    ADD COLUMN pid_misses  integer NOT NULL DEFAULT 0,
    ADD COLUMN stalled_at  timestamptz;

ALTER TABLE ps_health.health_checks
    -- what the finding is about within its type: a task id, 'session', 'spawns'
    ADD COLUMN subject varchar(255);

CREATE INDEX idx_active_spawns_open ON ps_health.active_spawns (project)
    WHERE status IN ('running', 'stalled');

-- ================================================================ settings

-- Every threshold, with its default and meaning. Values are text, checked against kind.
CREATE TABLE ps_health.setting_definitions (
    key          varchar(64) PRIMARY KEY,
    kind         varchar(10) NOT NULL CHECK (kind IN ('interval', 'numeric', 'integer', 'text', 'boolean')),
    default_value text NOT NULL,
    description  text NOT NULL
);

-- Overrides: project '*' changes the global value, any other project only that project.
CREATE TABLE ps_health.settings (
    key         varchar(64) NOT NULL REFERENCES ps_health.setting_definitions (key) ON DELETE CASCADE,
    project     varchar(255) NOT NULL DEFAULT '*',
    value       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key, project)
);

INSERT INTO ps_health.setting_definitions (key, kind, default_value, description) VALUES
  ('stall_after',            'interval', '15 minutes', 'a running spawn without output this long is stalled (warning)'),
  ('abandon_after',          'interval', '60 minutes', 'a spawn stalled this long is abandoned (critical)'),
  ('context_check_interval', 'interval', '10 minutes', 'an active session without a context report this long is asked for one'),
  ('activity_window',        'interval', '60 minutes', 'a session with activity within this window is active'),
  ('context_warning',        'numeric',  '0.70',       'context usage (0-1) at or over this is a warning'),
  ('context_critical',       'numeric',  '0.85',       'context usage (0-1) at or over this is critical and a handoff is requested'),
  ('handoff_timeout',        'interval', '10 minutes', 'a requested handoff not reported done within this is critical'),
  ('reminder_interval',      'interval', '30 minutes', 'first reminder of an unanswered problem; doubles each time'),
  ('reminder_max_interval',  'interval', '4 hours',    'reminders never wait longer than this'),
  ('prompt_rate_interval',   'interval', '5 minutes',  'at most one non-critical prompt per session per interval'),
  ('submit_delay',           'interval', '500 milliseconds', 'reactor: wait between typing a prompt and pressing Enter'),
  ('idle_seconds',           'numeric',  '5',          'reactor: a warning waits until the pane was still this many seconds'),
  ('max_defer',              'interval', '2 minutes',  'reactor: a warning waits for an idle pane at most this long'),
  ('critical_max_defer',     'interval', '30 seconds', 'reactor: a critical prompt waits for an idle pane at most this long'),
  ('prompt_max_attempts',    'integer',  '5',          'delivery attempts before a prompt fails'),
  ('prompt_retry_delay',     'interval', '30 seconds', 'wait before retrying a prompt whose delivery failed (times the attempt)'),
  ('target_missing_after',   'integer',  '2',          'consecutive probe misses before a tmux target counts as gone'),
  ('pid_missing_after',      'integer',  '2',          'consecutive probe misses before a spawn process counts as dead'),
  ('retention_ok',           'interval', '7 days',     'keep ok checks, sweep records and scheduler logs this long'),
  ('retention_other',        'interval', '30 days',    'keep warning/critical checks and finished prompts this long'),
  ('reactor_seen_window',    'interval', '5 minutes',  'a reactor that claimed within this window counts as alive');

-- setting: the effective value of a setting for a project (project override, global override, default).
CREATE FUNCTION ps_health.setting(p_key text, p_project text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    v text;
BEGIN
    SELECT coalesce(
             (SELECT s.value FROM ps_health.settings s WHERE s.key = p_key AND s.project = p_project),
             (SELECT s.value FROM ps_health.settings s WHERE s.key = p_key AND s.project = '*'),
             d.default_value)
      INTO v
      FROM ps_health.setting_definitions d WHERE d.key = p_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown setting "%"', p_key USING ERRCODE = '22023';
    END IF;
    RETURN v;
END;
$$;

-- _setting_interval / _setting_numeric: typed shorthands for the engine.
CREATE FUNCTION ps_health._setting_interval(p_key text, p_project text DEFAULT NULL)
RETURNS interval LANGUAGE sql STABLE AS $$ SELECT ps_health.setting(p_key, p_project)::interval $$;

CREATE FUNCTION ps_health._setting_numeric(p_key text, p_project text DEFAULT NULL)
RETURNS numeric LANGUAGE sql STABLE AS $$ SELECT ps_health.setting(p_key, p_project)::numeric $$;

-- set_setting: change a setting globally (p_project NULL) or for one project; checks the value's kind.
CREATE FUNCTION ps_health.set_setting(p_key text, p_value text, p_project text DEFAULT NULL)
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

-- ================================================================ tables of the engine

-- Mute/snooze: checks are still recorded, no prompt goes out until the time passes.
CREATE TABLE ps_health.mutes (
    project     varchar(255) PRIMARY KEY,
    until       timestamptz NOT NULL,
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Current state per (project, check type, subject): what makes checks edge-triggered.
CREATE TABLE ps_health.check_state (
    project          varchar(255) NOT NULL,
    check_type       varchar(50) NOT NULL,
    subject          varchar(255) NOT NULL,
    status           varchar(20) NOT NULL CHECK (status IN ('ok', 'warning', 'critical')),
    since            timestamptz NOT NULL,
    last_check_id    integer NOT NULL,
    details          jsonb NOT NULL DEFAULT '{}',
    reminders        integer NOT NULL DEFAULT 0,
    next_reminder_at timestamptz,
    acknowledged_at  timestamptz,
    PRIMARY KEY (project, check_type, subject)
);
CREATE INDEX idx_check_state_reminder ON ps_health.check_state (next_reminder_at)
    WHERE status <> 'ok' AND acknowledged_at IS NULL;

-- One row per sweep, so the audit shows the monitor ran even when all was well.
CREATE TABLE ps_health.sweep_runs (
    id           bigserial PRIMARY KEY,
    swept_at     timestamptz NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    duration_ms  numeric(12,3) NOT NULL,
    targets      integer NOT NULL,
    counts       jsonb NOT NULL,
    source       text NOT NULL DEFAULT 'manual'
);
CREATE INDEX idx_sweep_runs_swept_at ON ps_health.sweep_runs (swept_at DESC);

-- Editable prompt texts; {name} is replaced from the check's details.
CREATE TABLE ps_health.prompt_templates (
    key   varchar(64) PRIMARY KEY,
    body  text NOT NULL
);
INSERT INTO ps_health.prompt_templates (key, body) VALUES
  ('header',              '[ps-health] {project}:'),
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
  ('orphaned_work.spawns','{count} spawn(s) from the previous session are still marked running: {tasks}. Resume or finish them (ps-health spawn finish).');

-- The outbox: one row per prompt to type into a pane. state: waiting (no deliverable
-- session yet), pending, claimed, delivered, failed, suppressed, expired.
CREATE TABLE ps_health.prompts (
    id            bigserial PRIMARY KEY,
    project       varchar(255) NOT NULL,
    host          varchar(255),
    target        varchar(255),
    severity      varchar(20) NOT NULL CHECK (severity IN ('warning', 'critical')),
    text          text NOT NULL DEFAULT '',
    state         varchar(12) NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('waiting', 'pending', 'claimed', 'delivered', 'failed', 'suppressed', 'expired')),
    attempts      integer NOT NULL DEFAULT 0,
    not_before    timestamptz NOT NULL,
    lease_until   timestamptz,
    worker        varchar(255),
    outcome       varchar(20),
    detail        text,
    created_at    timestamptz NOT NULL,
    claimed_at    timestamptz,
    completed_at  timestamptz,
    txid          bigint NOT NULL DEFAULT txid_current(),
    CONSTRAINT prompts_claimed_has_lease CHECK (state <> 'claimed' OR (lease_until IS NOT NULL AND worker IS NOT NULL))
);
CREATE INDEX idx_prompts_open ON ps_health.prompts (host, id) WHERE state IN ('pending', 'claimed');
CREATE INDEX idx_prompts_project ON ps_health.prompts (project, created_at DESC);

-- The lines of a prompt, one per check it reports.
CREATE TABLE ps_health.prompt_items (
    prompt_id  bigint NOT NULL REFERENCES ps_health.prompts (id) ON DELETE CASCADE,
    check_id   integer NOT NULL REFERENCES ps_health.health_checks (id) ON DELETE CASCADE,
    line       text NOT NULL,
    PRIMARY KEY (prompt_id, check_id)
);
CREATE INDEX idx_prompt_items_check ON ps_health.prompt_items (check_id);

-- Reactors seen: every claim call says which worker on which host is alive.
CREATE TABLE ps_health.reactors (
    worker     varchar(255) PRIMARY KEY,
    host       varchar(255) NOT NULL,
    last_seen  timestamptz NOT NULL
);

-- Allowed spawn status changes; anything else is refused.
CREATE TABLE ps_health.spawn_transitions (
    from_status varchar(20) NOT NULL,
    to_status   varchar(20) NOT NULL,
    PRIMARY KEY (from_status, to_status)
);
INSERT INTO ps_health.spawn_transitions VALUES
  ('running', 'stalled'), ('running', 'completed'), ('running', 'failed'), ('running', 'abandoned'),
  ('stalled', 'running'), ('stalled', 'completed'), ('stalled', 'failed'), ('stalled', 'abandoned'),
  ('abandoned', 'running'), ('abandoned', 'completed'), ('abandoned', 'failed');

-- ================================================================ input checks

-- _check_text: refuse empty, over-long or control-character names with the field and value.
CREATE FUNCTION ps_health._check_text(p_field text, p_value text, p_max integer DEFAULT 255, p_required boolean DEFAULT true)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_value IS NULL OR p_value = '' THEN
        IF p_required THEN
            RAISE EXCEPTION '% is required', p_field USING ERRCODE = '22023';
        END IF;
        RETURN NULL;
    END IF;
    IF length(p_value) > p_max THEN
        RAISE EXCEPTION '% is too long (% characters, at most %): "%..."', p_field, length(p_value), p_max,
            left(regexp_replace(p_value, '[[:cntrl:]]', '?', 'g'), 40) USING ERRCODE = '22023';
    END IF;
    IF p_value ~ '[[:cntrl:]]' AND p_max <= 255 THEN
        RAISE EXCEPTION '% must not contain control characters: "%"', p_field,
            left(regexp_replace(p_value, '[[:cntrl:]]', '?', 'g'), 80) USING ERRCODE = '22023';
    END IF;
    RETURN p_value;
END;
$$;

-- _check_time: refuse timestamps the monitor cannot reason about.
CREATE FUNCTION ps_health._check_time(p_field text, p_value timestamptz)
RETURNS timestamptz LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_value IS NULL OR NOT isfinite(p_value)
       OR p_value < '2000-01-01 00:00+00' OR p_value > '2200-01-01 00:00+00' THEN
        RAISE EXCEPTION '% must be a time between 2000 and 2200, got %', p_field, coalesce(p_value::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    RETURN p_value;
END;
$$;

-- _session: the session row of a project, or a clear error.
CREATE FUNCTION ps_health._session(p_project text)
RETURNS ps_health.ps_sessions LANGUAGE plpgsql STABLE AS $$
DECLARE
    s ps_health.ps_sessions;
BEGIN
    SELECT * INTO s FROM ps_health.ps_sessions WHERE project = p_project;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown project "%": no session registered', left(p_project, 255) USING ERRCODE = 'P0002';
    END IF;
    RETURN s;
END;
$$;

-- _spawn: a spawn row by (project, task id), locked, or a clear error.
CREATE FUNCTION ps_health._spawn(p_project text, p_task_id text)
RETURNS ps_health.active_spawns LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.active_spawns;
BEGIN
    SELECT * INTO s FROM ps_health.active_spawns WHERE project = p_project AND task_id = p_task_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown spawn "%" in project "%"', left(p_task_id, 255), left(p_project, 255)
            USING ERRCODE = 'P0002';
    END IF;
    RETURN s;
END;
$$;

-- ================================================================ prompts: rendering, queueing, notify

-- _render: fill {name} placeholders of a template from a jsonb object.
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
    FOR k, v IN SELECT * FROM jsonb_each_text(p_vars) LOOP
        v_text := replace(v_text, '{' || k || '}', left(coalesce(v, '?'), 300));
    END LOOP;
    RETURN v_text;
END;
$$;

-- _notify_prompt: the only function that calls pg_notify; a wake-up, never the data.
CREATE FUNCTION ps_health._notify_prompt(p_id bigint, p_host text)
RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify('ps_health', json_build_object('id', p_id, 'host', left(p_host, 255))::text);
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

-- _rerender_prompt: rebuild a prompt's text from its items (several problems, one prompt).
CREATE FUNCTION ps_health._rerender_prompt(p_id bigint)
RETURNS void LANGUAGE sql AS $$
    UPDATE ps_health.prompts p
       SET text = ps_health._render('header', jsonb_build_object('project', p.project)) || ' ' ||
                  (SELECT CASE WHEN count(*) = 1 THEN min(i.line)
                               ELSE string_agg('(' || n || ') ' || i.line, ' ' ORDER BY n) END
                     FROM (SELECT line, row_number() OVER (ORDER BY check_id) AS n
                             FROM ps_health.prompt_items WHERE prompt_id = p_id) i)
     WHERE p.id = p_id;
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

-- ================================================================ edge-triggered transitions

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

-- _minutes: whole minutes between two times.
CREATE FUNCTION ps_health._minutes(p_from timestamptz, p_to timestamptz)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT floor(extract(epoch FROM p_to - p_from) / 60)::integer
$$;

-- ---------------------------------------------------------------- from sql/schema/30_checks.sql
-- ps-health: the checks. Each _eval_* function decides one target's status and calls
-- _transition; the sweep finds the targets whose status would change with set-based
-- queries (cheap when nothing changed) and calls them; events call them directly.

ALTER TABLE ps_health.check_state ADD COLUMN template varchar(64);

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
CREATE FUNCTION ps_health._orphans(p_project text, p_now timestamptz)
RETURNS TABLE (task_id varchar, task_type varchar, status varchar)
LANGUAGE sql STABLE AS $$
    SELECT sp.task_id, sp.task_type, sp.status
      FROM ps_health.active_spawns sp
      LEFT JOIN ps_health.ps_sessions s ON s.project = sp.project
     WHERE sp.project = p_project AND sp.status IN ('running', 'stalled')
       AND (s.id IS NULL OR NOT ps_health._is_active(s, p_now) OR sp.spawn_time < s.started_at)
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
         FOR UPDATE OF cs
    LOOP
        v_n := v_n + ps_health._check(st.project, st.check_type, st.subject, st.status, st.details - 'reminder' - 'since',
                                      st.template, p_now);
    END LOOP;
    RETURN v_n;
END;
$$;

-- run_checks: one sweep over everything monitored. A concurrent second call returns at once
-- ({"skipped": true}); every completed sweep writes one sweep_runs row.
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

-- ---------------------------------------------------------------- from sql/schema/40_api.sql
-- ps-health: the public API for agents (sessions, context, spawns, answers, handoffs), for
-- probes (output times, liveness), for the reactor (claim, complete, release), for operators
-- (mute, status) and for pg_cron (sweep and prune jobs). Events raise their checks in the
-- caller's transaction, without waiting for the sweep.

-- ================================================================ seed functions, now driven by settings

-- get_stalled_spawns: running spawns without output for the stall time (15 min by default).
CREATE OR REPLACE FUNCTION ps_health.get_stalled_spawns(p_project varchar, p_now timestamptz DEFAULT now())
RETURNS TABLE (id integer, task_id varchar, task_type varchar, spawn_time timestamptz, minutes_stalled integer)
LANGUAGE sql STABLE AS $$
    SELECT s.id, s.task_id, s.task_type, s.spawn_time,
           ps_health._minutes(coalesce(s.last_output_change, s.spawn_time), p_now)
      FROM ps_health.active_spawns s
     WHERE s.status = 'running'
       AND (p_project IS NULL OR s.project = p_project)
       AND coalesce(s.last_output_change, s.spawn_time) <= p_now - ps_health._setting_interval('stall_after', s.project)
     ORDER BY s.spawn_time;
$$;

-- get_sessions_needing_context_check: active sessions without a context report for the check interval.
CREATE OR REPLACE FUNCTION ps_health.get_sessions_needing_context_check(p_now timestamptz DEFAULT now())
RETURNS TABLE (project varchar, session_type varchar, session_id varchar,
               minutes_since_check integer, current_usage numeric)
LANGUAGE sql STABLE AS $$
    SELECT s.project, s.session_type, s.session_id, ps_health._minutes(s.last_context_check, p_now), s.context_usage
      FROM ps_health.ps_sessions s
     WHERE s.ended_at IS NULL
       AND s.last_activity > p_now - ps_health._setting_interval('activity_window', s.project)
       AND (s.last_context_check IS NULL
            OR s.last_context_check <= p_now - ps_health._setting_interval('context_check_interval', s.project))
     ORDER BY s.project;
$$;

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

-- ================================================================ sessions

-- register_session: start (or restart) the session of a project; releases prompts waiting for it.
CREATE FUNCTION ps_health.register_session(
    p_project text, p_session_type text DEFAULT 'cli', p_tmux_target text DEFAULT NULL, p_host text DEFAULT NULL,
    p_transcript_path text DEFAULT NULL, p_session_id text DEFAULT NULL, p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    old ps_health.ps_sessions;
    v_id integer;
    v_continues boolean;
BEGIN
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._check_text('tmux_target', p_tmux_target, 255, false);
    PERFORM ps_health._check_text('host', p_host, 255, false);
    PERFORM ps_health._check_text('session_id', p_session_id, 255, false);
    PERFORM ps_health._check_text('transcript_path', p_transcript_path, 4096, false);
    PERFORM ps_health._check_time('p_now', p_now);
    IF p_session_type IS NULL OR p_session_type NOT IN ('cli', 'sdk') THEN
        RAISE EXCEPTION 'session_type must be cli or sdk, got "%"', left(coalesce(p_session_type, 'NULL'), 40)
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO old FROM ps_health.ps_sessions WHERE project = p_project FOR UPDATE;
    -- registering the same live session again (same pane or session id) continues it
    v_continues := old.id IS NOT NULL AND old.ended_at IS NULL
                   AND (old.tmux_target IS NOT DISTINCT FROM p_tmux_target AND old.host IS NOT DISTINCT FROM p_host)
                   AND (p_session_id IS NULL OR old.session_id IS NOT DISTINCT FROM p_session_id);
    INSERT INTO ps_health.ps_sessions AS s (project, session_type, session_id, host, tmux_target, transcript_path,
                                            started_at, last_activity)
    VALUES (p_project, p_session_type, coalesce(p_session_id, p_tmux_target), p_host, p_tmux_target,
            p_transcript_path, p_now, p_now)
    ON CONFLICT (project) DO UPDATE
       SET session_type = EXCLUDED.session_type, session_id = EXCLUDED.session_id, host = EXCLUDED.host,
           tmux_target = EXCLUDED.tmux_target,
           transcript_path = coalesce(EXCLUDED.transcript_path, CASE WHEN v_continues THEN s.transcript_path END),
           started_at = CASE WHEN v_continues THEN s.started_at ELSE EXCLUDED.started_at END,
           last_activity = greatest(s.last_activity, EXCLUDED.last_activity),
           ended_at = NULL, target_state = 'unknown', target_misses = 0,
           context_usage = CASE WHEN v_continues THEN s.context_usage END,
           last_context_check = CASE WHEN v_continues THEN s.last_context_check END,
           estimated_tokens_used = CASE WHEN v_continues THEN s.estimated_tokens_used END,
           handoff_requested_at = CASE WHEN v_continues THEN s.handoff_requested_at END,
           handoff_done_at = CASE WHEN v_continues THEN s.handoff_done_at END,
           handoff_file = CASE WHEN v_continues THEN s.handoff_file END
    RETURNING id INTO v_id;
    IF NOT v_continues AND old.id IS NOT NULL THEN
        -- a new session starts with a fresh context: close the old session's context and handoff states
        PERFORM ps_health._check(p_project, 'context', 'session', 'ok', '{"reason": "new session"}', NULL, p_now);
        PERFORM ps_health._check(p_project, 'context', 'report', 'ok', '{"reason": "new session"}', NULL, p_now);
        PERFORM ps_health._check(p_project, 'handoff', 'session', 'ok', '{"reason": "new session"}', NULL, p_now);
    END IF;
    PERFORM ps_health._eval_orphans(p_project, p_now);
    PERFORM ps_health._release_waiting(p_project);
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
       SET state = 'pending', host = s.host, target = s.tmux_target
      FROM ps_health.ps_sessions s
     WHERE p.project = p_project AND p.state = 'waiting' AND s.project = p_project
       AND s.ended_at IS NULL AND s.tmux_target IS NOT NULL AND s.target_state <> 'gone';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END;
$$;

-- heartbeat_session: the session is alive and working.
CREATE FUNCTION ps_health.heartbeat_session(p_project text, p_now timestamptz DEFAULT now())
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._session(p_project);
    UPDATE ps_health.ps_sessions SET last_activity = greatest(last_activity, p_now), ended_at = NULL
     WHERE project = p_project;
END;
$$;

-- end_session: the session is over; spawns it leaves running are orphaned work at once.
CREATE FUNCTION ps_health.end_session(p_project text, p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
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

-- ================================================================ spawns

-- trg_active_spawns_status: enforce the spawn transition table for every writer.
CREATE FUNCTION ps_health.trg_active_spawns_status()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ps_health.spawn_transitions WHERE from_status = OLD.status AND to_status = NEW.status) THEN
        RAISE EXCEPTION 'spawn "%" in project "%" cannot go from % to %', OLD.task_id, OLD.project, OLD.status, NEW.status
            USING ERRCODE = '55000';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER trg_active_spawns_status BEFORE UPDATE OF status ON ps_health.active_spawns
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION ps_health.trg_active_spawns_status();

-- start_spawn: record a subagent the PS started; returns its id.
CREATE FUNCTION ps_health.start_spawn(p_project text, p_task_id text, p_task_type text,
                                      p_description text DEFAULT NULL, p_output_file text DEFAULT NULL,
                                      p_pid integer DEFAULT NULL, p_host text DEFAULT NULL,
                                      p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_id integer;
BEGIN
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._check_text('task_id', p_task_id);
    PERFORM ps_health._check_text('task_type', p_task_type, 100);
    PERFORM ps_health._check_text('description', p_description, 10000, false);
    PERFORM ps_health._check_text('output_file', p_output_file, 4096, false);
    PERFORM ps_health._check_text('host', p_host, 255, false);
    PERFORM ps_health._check_time('p_now', p_now);
    IF p_pid IS NOT NULL AND p_pid <= 0 THEN
        RAISE EXCEPTION 'pid must be positive, got %', p_pid USING ERRCODE = '22023';
    END IF;
    BEGIN
        INSERT INTO ps_health.active_spawns (project, task_id, task_type, description, output_file, pid, host, spawn_time)
        VALUES (p_project, p_task_id, p_task_type, p_description, p_output_file, p_pid, p_host, p_now)
        RETURNING id INTO v_id;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION 'spawn "%" already exists in project "%"', p_task_id, p_project USING ERRCODE = '23505';
    END;
    UPDATE ps_health.ps_sessions SET last_activity = greatest(last_activity, p_now) WHERE project = p_project;
    RETURN v_id;
END;
$$;

-- _output_seen: a spawn produced output at p_at; a stalled one runs again and recovers (ok, no prompt).
CREATE FUNCTION ps_health._output_seen(p_id integer, p_at timestamptz, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    sp ps_health.active_spawns;
BEGIN
    UPDATE ps_health.active_spawns SET last_output_change = p_at
     WHERE id = p_id AND p_at > coalesce(last_output_change, '-infinity') RETURNING * INTO sp;
    IF sp.id IS NOT NULL AND sp.status IN ('stalled', 'abandoned') AND p_at > coalesce(sp.stalled_at, '-infinity') THEN
        UPDATE ps_health.active_spawns SET status = 'running', stalled_at = NULL WHERE id = p_id;
        RETURN ps_health._check(sp.project, 'spawn', sp.task_id, 'ok',
            jsonb_build_object('task_id', sp.task_id, 'task_type', sp.task_type, 'reason', 'output resumed'), NULL, p_now);
    END IF;
    RETURN CASE WHEN sp.id IS NULL THEN 0 ELSE 1 END;
END;
$$;

-- report_spawn_output: the spawn produced output (now, or at p_at).
CREATE FUNCTION ps_health.report_spawn_output(p_project text, p_task_id text, p_at timestamptz DEFAULT NULL,
                                              p_now timestamptz DEFAULT now())
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    sp ps_health.active_spawns;
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._check_time('p_at', coalesce(p_at, p_now));
    sp := ps_health._spawn(p_project, p_task_id);
    PERFORM ps_health._output_seen(sp.id, least(coalesce(p_at, p_now), p_now), p_now);
END;
$$;

-- report_output_mtimes: a probe's batch of output-file modification times (one round trip).
CREATE FUNCTION ps_health.report_output_mtimes(p_spawn_ids integer[], p_mtimes timestamptz[],
                                               p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r record;
    v_n integer := 0;
BEGIN
    IF coalesce(cardinality(p_spawn_ids), 0) <> coalesce(cardinality(p_mtimes), 0) THEN
        RAISE EXCEPTION 'spawn_ids and mtimes must have the same length (% and %)',
            cardinality(p_spawn_ids), cardinality(p_mtimes) USING ERRCODE = '22023';
    END IF;
    PERFORM ps_health._check_time('p_now', p_now);
    FOR r IN
        SELECT sp.id, least(m.mtime, p_now) AS mtime
          FROM unnest(p_spawn_ids, p_mtimes) AS m(id, mtime)
          JOIN ps_health.active_spawns sp ON sp.id = m.id
         WHERE m.mtime IS NOT NULL AND isfinite(m.mtime)
           AND sp.status IN ('running', 'stalled', 'abandoned')
           AND m.mtime > coalesce(sp.last_output_change, sp.spawn_time)
    LOOP
        v_n := v_n + ps_health._output_seen(r.id, r.mtime, p_now);
    END LOOP;
    RETURN v_n;
END;
$$;

-- finish_spawn: the spawn ended; a non-zero exit code or an error is critical at once.
CREATE FUNCTION ps_health.finish_spawn(p_project text, p_task_id text, p_exit_code integer DEFAULT 0,
                                       p_error text DEFAULT NULL, p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    sp ps_health.active_spawns;
    v_status text;
    v_error text := left(nullif(btrim(p_error), ''), 2000);
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
    sp := ps_health._spawn(p_project, p_task_id);
    v_status := CASE WHEN coalesce(p_exit_code, 0) = 0 AND v_error IS NULL THEN 'completed' ELSE 'failed' END;
    UPDATE ps_health.active_spawns
       SET status = v_status, exit_code = p_exit_code, error_message = v_error, completed_at = p_now, stalled_at = NULL
     WHERE id = sp.id;
    IF v_status = 'failed' THEN
        PERFORM ps_health._check(p_project, 'spawn', p_task_id, 'critical',
            jsonb_build_object('task_id', p_task_id, 'task_type', sp.task_type,
                               'exit_code', coalesce(p_exit_code::text, 'none'),
                               'error', coalesce(left(regexp_replace(v_error, '[[:cntrl:]]+', ' ', 'g'), 200), 'no error message')),
            'spawn.failed', p_now);
    ELSE
        PERFORM ps_health._check(p_project, 'spawn', p_task_id, 'ok',
            jsonb_build_object('task_id', p_task_id, 'reason', 'completed'), NULL, p_now);
    END IF;
    UPDATE ps_health.ps_sessions SET last_activity = greatest(last_activity, p_now) WHERE project = p_project;
    PERFORM ps_health._eval_orphans(p_project, p_now);
    RETURN v_status;
END;
$$;

-- set_spawn_status: move a spawn to another status; the transition table refuses the rest.
CREATE FUNCTION ps_health.set_spawn_status(p_project text, p_task_id text, p_status text,
                                           p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    sp ps_health.active_spawns;
BEGIN
    sp := ps_health._spawn(p_project, p_task_id);
    IF p_status IN ('completed', 'failed') THEN
        RETURN ps_health.finish_spawn(p_project, p_task_id, CASE WHEN p_status = 'completed' THEN 0 ELSE 1 END,
                                      CASE WHEN p_status = 'failed' THEN 'marked failed' END, p_now);
    END IF;
    UPDATE ps_health.active_spawns
       SET status = p_status, stalled_at = CASE WHEN p_status = 'stalled' THEN p_now END
     WHERE id = sp.id;
    RETURN p_status;
END;
$$;

-- ================================================================ liveness facts from probes

-- report_session_targets: whether each project's tmux target was seen; gone after N misses in a row.
CREATE FUNCTION ps_health.report_session_targets(p_projects text[], p_states text[], p_now timestamptz DEFAULT now())
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
                   WHEN s.target_misses + 1 >= ps_health.setting('target_missing_after', s.project)::integer THEN 'gone'
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
CREATE FUNCTION ps_health.report_spawn_pids(p_spawn_ids integer[], p_states text[], p_now timestamptz DEFAULT now())
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
        IF r.pid_misses >= ps_health.setting('pid_missing_after', r.project)::integer THEN
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

-- ================================================================ answers, handoffs, mute

-- respond: the PS's answer to a check; acknowledges the problem and stops its reminders.
CREATE FUNCTION ps_health.respond(p_check_id integer, p_text text, p_now timestamptz DEFAULT now())
RETURNS ps_health.health_checks LANGUAGE plpgsql AS $$
DECLARE
    c ps_health.health_checks;
BEGIN
    PERFORM ps_health._check_text('text', p_text, 10000);
    PERFORM ps_health._check_time('p_now', p_now);
    UPDATE ps_health.health_checks SET ps_response = p_text WHERE id = p_check_id RETURNING * INTO c;
    IF c.id IS NULL THEN
        RAISE EXCEPTION 'unknown check id %', coalesce(p_check_id::text, 'NULL') USING ERRCODE = 'P0002';
    END IF;
    UPDATE ps_health.check_state SET acknowledged_at = p_now
     WHERE project = c.project AND check_type = c.check_type AND subject = c.subject AND status <> 'ok';
    RETURN c;
END;
$$;

-- report_handoff: the PS wrote its handoff; closes the request and resets the context expectation.
CREATE FUNCTION ps_health.report_handoff(p_project text, p_file text, p_now timestamptz DEFAULT now())
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

-- mute_project: record checks but send no prompt to a project until p_until.
CREATE FUNCTION ps_health.mute_project(p_project text, p_until timestamptz, p_reason text DEFAULT NULL,
                                       p_now timestamptz DEFAULT now())
RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._check_time('until', p_until);
    IF p_until <= p_now THEN
        RAISE EXCEPTION 'until must be in the future, got %', p_until USING ERRCODE = '22023';
    END IF;
    INSERT INTO ps_health.mutes (project, until, reason, created_at) VALUES (p_project, p_until, left(p_reason, 1000), p_now)
    ON CONFLICT (project) DO UPDATE SET until = EXCLUDED.until, reason = EXCLUDED.reason, created_at = EXCLUDED.created_at;
    RETURN p_until;
END;
$$;

-- unmute_project: prompts go out again; returns whether a mute was lifted.
CREATE FUNCTION ps_health.unmute_project(p_project text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ps_health.mutes WHERE project = p_project;
    RETURN FOUND;
END;
$$;

-- ================================================================ the reactor's side of the outbox

-- claim_prompts: hand out up to p_limit deliverable prompts of one host under a lease
-- (FOR UPDATE SKIP LOCKED, so reactors never get the same row). Expired leases are claimable
-- again; a prompt out of attempts fails; a prompt whose problems all recovered expires.
CREATE FUNCTION ps_health.claim_prompts(p_host text, p_worker text, p_limit integer DEFAULT 10,
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
CREATE FUNCTION ps_health.complete_prompt(p_id bigint, p_worker text, p_outcome text, p_detail text DEFAULT NULL,
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

-- extend_leases: keep the leases of prompts a worker is still delivering (busy panes wait long).
CREATE FUNCTION ps_health.extend_leases(p_worker text, p_ids bigint[], p_lease_seconds integer DEFAULT 60,
                                        p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    IF p_lease_seconds IS NULL OR p_lease_seconds < 1 OR p_lease_seconds > 86400 THEN
        RAISE EXCEPTION 'lease_seconds must be between 1 and 86400, got %', p_lease_seconds USING ERRCODE = '22023';
    END IF;
    UPDATE ps_health.prompts SET lease_until = p_now + make_interval(secs => p_lease_seconds)
     WHERE state = 'claimed' AND worker = p_worker AND id = ANY (p_ids);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    UPDATE ps_health.reactors SET last_seen = p_now WHERE worker = p_worker;
    RETURN v_n;
END;
$$;

-- release_prompts: give back a worker's claimed prompts undelivered (clean shutdown).
CREATE FUNCTION ps_health.release_prompts(p_worker text, p_ids bigint[] DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    UPDATE ps_health.prompts
       SET state = 'pending', worker = NULL, lease_until = NULL, attempts = greatest(attempts - 1, 0)
     WHERE state = 'claimed' AND worker = p_worker AND (p_ids IS NULL OR id = ANY (p_ids));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END;
$$;

-- ================================================================ the system's own health, retention, jobs

-- system_health: age of the last sweep, reactors seen recently, whether pg_cron schedules the sweep.
CREATE FUNCTION ps_health.system_health(p_now timestamptz DEFAULT now())
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_last timestamptz;
    v_cron boolean := to_regclass('cron.job') IS NOT NULL;
    v_job boolean := false;
BEGIN
    SELECT max(started_at) INTO v_last FROM ps_health.sweep_runs;
    IF v_cron THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM cron.job WHERE jobname = $1 AND active)' INTO v_job USING 'ps_health_sweep';
    END IF;
    RETURN jsonb_build_object(
        'last_sweep_at', v_last,
        'sweep_age_seconds', round(extract(epoch FROM p_now - v_last)::numeric, 1),
        'reactors', coalesce((SELECT jsonb_agg(jsonb_build_object('worker', worker, 'host', host, 'last_seen', last_seen)
                                              ORDER BY last_seen DESC)
                                FROM ps_health.reactors
                               WHERE last_seen > p_now - ps_health._setting_interval('reactor_seen_window')), '[]'),
        'pg_cron', v_cron,
        'sweep_job', v_job);
END;
$$;

-- prune: keep every table within the configured retention; returns rows deleted per table.
CREATE FUNCTION ps_health.prune(p_now timestamptz DEFAULT now())
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_ok timestamptz := p_now - ps_health._setting_interval('retention_ok');
    v_other timestamptz := p_now - ps_health._setting_interval('retention_other');
    v_checks integer;
    v_runs integer;
    v_prompts integer;
    v_cron integer := 0;
BEGIN
    DELETE FROM ps_health.prompts
     WHERE state IN ('delivered', 'failed', 'suppressed', 'expired') AND coalesce(completed_at, created_at) < v_other;
    GET DIAGNOSTICS v_prompts = ROW_COUNT;
    -- the check a current state points at stays, so the audit never loses an open problem's record
    DELETE FROM ps_health.health_checks h
     WHERE ((h.status = 'ok' AND h.check_time < v_ok) OR h.check_time < v_other)
       AND NOT EXISTS (SELECT 1 FROM ps_health.check_state s WHERE s.last_check_id = h.id)
       AND NOT EXISTS (SELECT 1 FROM ps_health.prompt_items i JOIN ps_health.prompts p ON p.id = i.prompt_id
                        WHERE i.check_id = h.id AND p.state IN ('waiting', 'pending', 'claimed'));
    GET DIAGNOSTICS v_checks = ROW_COUNT;
    DELETE FROM ps_health.sweep_runs WHERE swept_at < v_ok;
    GET DIAGNOSTICS v_runs = ROW_COUNT;
    DELETE FROM ps_health.check_state WHERE status = 'ok' AND since < v_ok;
    IF to_regclass('cron.job_run_details') IS NOT NULL THEN
        BEGIN
            EXECUTE 'DELETE FROM cron.job_run_details WHERE end_time < $1' USING now() - (p_now - v_ok);
            GET DIAGNOSTICS v_cron = ROW_COUNT;
        EXCEPTION WHEN insufficient_privilege THEN
            v_cron := -1;
        END;
    END IF;
    RETURN jsonb_build_object('health_checks', v_checks, 'sweep_runs', v_runs, 'prompts', v_prompts,
                              'cron_job_run_details', v_cron);
END;
$$;

-- job_sweep / job_prune: what the pg_cron jobs call.
CREATE FUNCTION ps_health.job_sweep()
RETURNS jsonb LANGUAGE sql AS $$ SELECT ps_health.run_checks(now(), 'pg_cron') $$;

CREATE FUNCTION ps_health.job_prune()
RETURNS jsonb LANGUAGE sql AS $$ SELECT ps_health.prune(now()) $$;
