-- Settings as data: what each key means (setting_definitions), the effective value of a key for
-- a project (project override, global override, default) and checked changes.

-- setting_definitions: every setting, its kind, default and meaning; values are text, checked against
-- the kind by set_setting.
CREATE VIEW ps_health.setting_definitions AS
SELECT key::varchar(64) AS key, kind::varchar(10) AS kind, default_value, description FROM (VALUES
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
  ('escalation_host',        'text',     '',           'host whose reactor runs the escalation command; empty: the session''s host, else any'),
  ('agent_programs',         'argv',     '["claude", "codex", "gemini", "aider", "opencode"]',
                                                       'reactor: types only into a pane whose foreground program is one of these (JSON array of names; for node, python, bun and deno the script they run)'),
  ('prompt_defer_delay',     'interval', '5 seconds',  'reactor: a prompt its pane was not ready for (another program, a mode, text on the input line) is tried again after this')
) AS d (key, kind, default_value, description);

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
