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
    ADD COLUMN handoff_file         text,
    -- the automatic handoff cycle: reset queued, resume delivered, then complete or incomplete
    ADD COLUMN cycle_state          varchar(20)
        CONSTRAINT ps_sessions_cycle_state_check
        CHECK (cycle_state IN ('reset_queued', 'resume_delivered', 'complete', 'incomplete')),
    ADD COLUMN cycle_resumed_at     timestamptz;

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
    kind         varchar(10) NOT NULL
                 CONSTRAINT setting_definitions_kind_check
                 CHECK (kind IN ('interval', 'numeric', 'integer', 'text', 'boolean', 'argv')),
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
  ('reactor_seen_window',    'interval', '5 minutes',  'a reactor that claimed within this window counts as alive'),
  ('handoff_folder',         'text',     '',           'folder the PS writes handoff files to; a new matching file after a request counts as done'),
  ('handoff_pattern',        'text',     '*.md',       'file name pattern (glob) of handoff files in handoff_folder'),
  ('auto_cycle',             'boolean',  'false',      'after a handoff: type the reset command, then a resume prompt naming the file'),
  ('reset_command',          'text',     '/clear',     'the agent CLI''s command that clears its context'),
  ('cycle_confirm_timeout',  'interval', '10 minutes', 'after the resume prompt, activity must arrive within this or the cycle is critical'),
  ('command_channel',        'argv',     '[]',         'command (JSON argv) that receives prompts of sessions without a pane; text on stdin'),
  ('command_timeout',        'interval', '30 seconds', 'a channel or escalation command running longer than this fails'),
  ('escalation_command',     'argv',     '[]',         'operator command (JSON argv) for checks that stay critical; [] = no escalation'),
  ('escalate_after',         'interval', '30 minutes', 'escalate a critical check unanswered this long'),
  ('escalation_reminder',    'interval', '2 hours',    'escalate the same problem again after this'),
  ('escalation_host',        'text',     '',           'host whose reactor runs the escalation command; empty: the session''s host, else any');

-- _unknown_setting: the error for a key no setting_definitions row declares.
CREATE FUNCTION ps_health._unknown_setting(p_key text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
    RAISE EXCEPTION 'unknown setting "%"', p_key USING ERRCODE = '22023';
END;
$$;

-- _setting: the effective value of a setting for a project (project override, global override,
-- default). The engine's lookup: no SECURITY DEFINER switch per call, which made per-row lookups
-- in claim_prompts cost more than the claim itself.
CREATE FUNCTION ps_health._setting(p_key text, p_project text DEFAULT NULL)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(
             (SELECT s.value FROM ps_health.settings s WHERE s.key = p_key AND s.project = p_project),
             (SELECT s.value FROM ps_health.settings s WHERE s.key = p_key AND s.project = '*'),
             (SELECT d.default_value FROM ps_health.setting_definitions d WHERE d.key = p_key),
             ps_health._unknown_setting(p_key))
$$;

-- setting: the effective value of a setting for a project, for clients (see _setting).
CREATE FUNCTION ps_health.setting(p_key text, p_project text DEFAULT NULL)
RETURNS text LANGUAGE sql STABLE AS $$ SELECT ps_health._setting(p_key, p_project) $$;

-- _setting_interval / _setting_numeric: typed shorthands for the engine.
CREATE FUNCTION ps_health._setting_interval(p_key text, p_project text DEFAULT NULL)
RETURNS interval LANGUAGE sql STABLE AS $$ SELECT ps_health._setting(p_key, p_project)::interval $$;

CREATE FUNCTION ps_health._setting_numeric(p_key text, p_project text DEFAULT NULL)
RETURNS numeric LANGUAGE sql STABLE AS $$ SELECT ps_health._setting(p_key, p_project)::numeric $$;

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
    escalated_at     timestamptz,
    escalations      integer NOT NULL DEFAULT 0,
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
  ('orphaned_work.spawns','{count} spawn(s) from the previous session are still marked running: {tasks}. Resume or finish them (ps-health spawn finish).'),
  ('handoff.resume',      '[ps-health] {project}: your context was cleared after a handoff. Read {file} and continue the work it describes.'),
  ('handoff.incomplete',  'the handoff cycle did not complete: no context report or activity for {minutes} min after the resume prompt (handoff file {file}).'),
  ('escalation',          '[ps-health] {project}: {check_type} check #{check_id} has been {status} for {minutes} min without an answer. {summary}');

-- The outbox: one row per prompt. state: waiting (no deliverable session yet), pending,
-- claimed, delivered, failed, suppressed, expired. channel: the pane (tmux), the project's
-- command channel, or the operator's escalation command. kind: an alert, or a step of the
-- handoff cycle (reset, then resume, which waits for the reset: after_id).
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
    channel       varchar(12) NOT NULL DEFAULT 'tmux'
                  CONSTRAINT prompts_channel_check CHECK (channel IN ('tmux', 'command', 'escalation')),
    kind          varchar(12) NOT NULL DEFAULT 'alert'
                  CONSTRAINT prompts_kind_check CHECK (kind IN ('alert', 'reset', 'resume', 'escalation')),
    after_id      bigint REFERENCES ps_health.prompts (id) ON DELETE SET NULL,
    CONSTRAINT prompts_claimed_has_lease CHECK (state <> 'claimed' OR (lease_until IS NOT NULL AND worker IS NOT NULL))
);
CREATE INDEX idx_prompts_open ON ps_health.prompts (host, id) WHERE state IN ('pending', 'claimed');
CREATE INDEX idx_prompts_after ON ps_health.prompts (after_id) WHERE after_id IS NOT NULL;
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
    PERFORM ps_health._authorize(p_project);
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
