-- Settings as data: what each key means and may hold (setting_definitions), the cross-checks between
-- keys (setting_rules), the effective value of a key for a project (project override, global
-- override, default) and checked changes. A stored value that is not allowed (written around
-- set_setting, or allowed by an older release) is never used: the engine reads the next level.

-- setting_definitions: every setting, its kind, default, range, whether it is a secret (only the
-- owner reads it), and meaning. Values are text. For interval, numeric and integer settings
-- min_value..max_value is the range; for text, path and glob settings it bounds the length; for
-- argv settings max_value bounds the number of words.
CREATE VIEW ps_health.setting_definitions AS
SELECT d.key::varchar(64) AS key, d.kind::varchar(10) AS kind, d.default_value, d.min_value, d.max_value, d.secret,
       d.description,
       CASE d.kind WHEN 'interval' THEN format('interval from %s to %s', d.min_value, d.max_value)
                   WHEN 'numeric'  THEN format('number from %s to %s', d.min_value, d.max_value)
                   WHEN 'integer'  THEN format('whole number from %s to %s', d.min_value, d.max_value)
                   WHEN 'boolean'  THEN 'true or false'
                   WHEN 'path'     THEN 'absolute folder path, or empty for none'
                   WHEN 'glob'     THEN 'file name pattern such as *.md (no /)'
                   WHEN 'argv'     THEN format('command: JSON array of at most %s strings, [] for none', d.max_value)
                   WHEN 'names'    THEN format('JSON array of %s to %s names', d.min_value, d.max_value)
                   ELSE format('text of %s to %s characters', d.min_value, d.max_value) END AS allowed
  FROM (VALUES
  ('stall_after',            'interval', '15 minutes', '1 second', '7 days', false, 'a running spawn without output this long is stalled (warning)'),
  ('abandon_after',          'interval', '60 minutes', '1 second', '30 days', false, 'a spawn stalled this long is abandoned (critical)'),
  ('context_check_interval', 'interval', '10 minutes', '1 minute', '7 days', false, 'an active session without a context report this long is asked for one'),
  ('activity_window',        'interval', '60 minutes', '1 minute', '7 days', false, 'a session with activity within this window is active'),
  ('context_warning',        'numeric',  '0.70',       '0.05', '0.99', false, 'context usage (0-1) at or over this is a warning'),
  ('context_critical',       'numeric',  '0.85',       '0.05', '1',    false, 'context usage (0-1) at or over this is critical and a handoff is requested'),
  ('handoff_timeout',        'interval', '10 minutes', '1 minute', '1 day', false, 'a requested handoff not reported done within this is critical'),
  ('reminder_interval',      'interval', '30 minutes', '1 minute', '7 days', false, 'first reminder of an unanswered problem; doubles each time'),
  ('reminder_max_interval',  'interval', '4 hours',    '1 minute', '30 days', false, 'reminders never wait longer than this'),
  ('prompt_rate_interval',   'interval', '5 minutes',  '0 seconds', '1 day', false, 'at most one non-critical prompt per session per interval'),
  ('submit_delay',           'interval', '500 milliseconds', '0 seconds', '10 seconds', false, 'reactor: wait between typing a prompt and pressing Enter'),
  ('idle_seconds',           'numeric',  '5',          '0', '3600', false, 'reactor: a warning waits until the pane was still this many seconds'),
  ('max_defer',              'interval', '2 minutes',  '0 seconds', '1 day', false, 'reactor: a warning waits for an idle pane at most this long'),
  ('critical_max_defer',     'interval', '30 seconds', '0 seconds', '1 hour', false, 'reactor: a critical prompt waits for an idle pane at most this long'),
  ('prompt_max_attempts',    'integer',  '5',          '1', '100', false, 'delivery attempts before a prompt fails'),
  ('prompt_retry_delay',     'interval', '30 seconds', '0 seconds', '1 day', false, 'wait before retrying a prompt whose delivery failed (times the attempt)'),
  ('target_missing_after',   'integer',  '2',          '1', '100', false, 'consecutive probe misses before a tmux target counts as gone'),
  ('pid_missing_after',      'integer',  '2',          '1', '100', false, 'consecutive probe misses before a spawn process counts as dead'),
  ('retention_ok',           'interval', '7 days',     '1 hour', '3650 days', false, 'keep ok checks, sweep records and scheduler logs this long'),
  ('retention_other',        'interval', '30 days',    '1 hour', '3650 days', false, 'keep warning/critical checks and finished prompts this long'),
  ('sweep_late_after',       'interval', '3 minutes',  '1 minute', '1 day', false, 'no scheduled sweep (pg_cron or the reactor''s) for this long means the scheduler stopped'),
  ('handoff_folder',         'path',     '',           '0', '4096', false, 'folder the PS writes handoff files to; a new matching file after a request counts as done'),
  ('handoff_pattern',        'glob',     '*.md',       '1', '255', false, 'file name pattern (glob) of handoff files in handoff_folder'),
  ('auto_cycle',             'boolean',  'false',      NULL, NULL, false, 'after a handoff: type the reset command, then a resume prompt naming the file'),
  ('reset_command',          'text',     '',           '0', '100', false, 'the agent CLI''s command that clears its context; empty: the reset command of the agent profile of the program in the pane'),
  ('cycle_confirm_timeout',  'interval', '10 minutes', '1 second', '1 day', false, 'after the resume prompt, activity must arrive within this or the cycle is critical'),
  ('command_channel',        'argv',     '[]',         '0', '64', true, 'command (JSON argv) that receives prompts of sessions without a pane; text on stdin'),
  ('command_timeout',        'interval', '30 seconds', '1 second', '1 hour', false, 'a channel or escalation command running longer than this fails'),
  ('escalation_command',     'argv',     '[]',         '0', '64', true, 'operator command (JSON argv) for checks that stay critical; [] = no escalation'),
  ('escalate_after',         'interval', '30 minutes', '0 seconds', '7 days', false, 'escalate a critical check unanswered this long'),
  ('escalation_reminder',    'interval', '2 hours',    '1 minute', '30 days', false, 'escalate the same problem again after this'),
  ('escalation_host',        'text',     '',           '0', '255', false, 'host whose reactor runs the escalation command; empty: the session''s host, else any'),
  ('agent_programs',         'names',    '["claude", "codex", "gemini", "aider", "opencode"]', '1', '64', false,
                             'reactor: types only into a pane whose foreground program is one of these (for node, python, bun and deno: the script they run)'),
  ('prompt_defer_delay',     'interval', '5 seconds',  '1 second', '1 hour', false, 'reactor: a prompt its pane was not ready for (another program, a mode, text on the input line) is tried again after this')
  ) AS d (key, kind, default_value, min_value, max_value, secret, description);

-- setting_rules: pairs of settings that must keep their order for every project: lower_key below
-- upper_key (or at most, when not strict). Checked by set_setting for every project a change reaches.
CREATE VIEW ps_health.setting_rules AS
SELECT r.lower_key::varchar(64) AS lower_key, r.upper_key::varchar(64) AS upper_key, r.strict FROM (VALUES
  ('context_warning',    'context_critical',      true),
  ('stall_after',        'abandon_after',         true),
  ('reminder_interval',  'reminder_max_interval', false),
  ('critical_max_defer', 'max_defer',             false)
) AS r (lower_key, upper_key, strict);

-- _unknown_setting: the error for a key no setting_definitions row declares.
CREATE FUNCTION ps_health._unknown_setting(p_key text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
    RAISE EXCEPTION 'unknown setting "%"', left(p_key, 64) USING ERRCODE = '22023';
END;
$$;

-- _setting_error: why a value is not allowed for a setting (naming the value, unless it is a secret,
-- and the range), or NULL when it is allowed. Finite values inside the range only. An interval has
-- no negative part (months, days or time: '1 mon -29 days' is a day in March and negative in
-- February) and is inside its range both as compared (a month is 30 days) and as the reactor
-- counts it (extract(epoch): a year is 365.25 days). Text, and every string of a JSON value, holds
-- none of _unsafe_chars, as every other stored name.
CREATE FUNCTION ps_health._setting_error(p_key text, p_value text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    d record;
    v_ok boolean := false;
    v_unsafe boolean := false;
    v_negative boolean := false;
    v_argv jsonb;
    v_interval interval;
    v_shown text;
BEGIN
    SELECT * INTO d FROM ps_health.setting_definitions WHERE key = p_key;
    IF NOT FOUND THEN
        RETURN format('unknown setting "%s"', left(p_key, 64));
    END IF;
    IF p_value IS NULL THEN
        RETURN NULL;  -- nothing stored, nothing wrong
    END IF;
    IF d.kind NOT IN ('argv', 'names') THEN  -- JSON may have line breaks between its strings
        v_unsafe := p_value ~ ps_health._unsafe_chars();
    END IF;
    BEGIN
        IF d.kind = 'interval' THEN
            v_interval := p_value::interval;
            -- the three fields: months (years and months), days, time
            v_negative := least(extract(year FROM v_interval), extract(month FROM v_interval), extract(day FROM v_interval),
                                extract(epoch FROM v_interval - date_trunc('day', v_interval))) < 0;
            v_ok := NOT v_negative
                    AND v_interval BETWEEN d.min_value::interval AND d.max_value::interval
                    AND extract(epoch FROM v_interval) BETWEEN extract(epoch FROM d.min_value::interval)
                                                           AND extract(epoch FROM d.max_value::interval);
        ELSIF d.kind = 'numeric' THEN
            -- NaN and the infinities sort outside every range, but say so plainly
            v_ok := p_value::numeric NOT IN ('NaN', 'Infinity', '-Infinity')
                    AND p_value::numeric BETWEEN d.min_value::numeric AND d.max_value::numeric;
        ELSIF d.kind = 'integer' THEN
            v_ok := p_value::integer BETWEEN d.min_value::integer AND d.max_value::integer;
        ELSIF d.kind = 'boolean' THEN
            v_ok := p_value::boolean IS NOT NULL;
        ELSIF d.kind = 'argv' THEN
            v_argv := p_value::jsonb;
            v_ok := jsonb_typeof(v_argv) = 'array' AND jsonb_array_length(v_argv) <= d.max_value::integer
                    AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v_argv) e WHERE jsonb_typeof(e) <> 'string')
                    AND coalesce(v_argv->>0, 'x') <> '';
        ELSIF d.kind = 'names' THEN
            v_argv := p_value::jsonb;
            v_ok := jsonb_typeof(v_argv) = 'array'
                    AND jsonb_array_length(v_argv) BETWEEN d.min_value::integer AND d.max_value::integer
                    AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v_argv) e
                                     WHERE jsonb_typeof(e) <> 'string' OR NOT ps_health._plain_text(e #>> '{}', 255));
        ELSE  -- text, path, glob
            v_ok := char_length(p_value) BETWEEN d.min_value::integer AND d.max_value::integer
                    AND NOT v_unsafe
                    AND (d.kind <> 'path' OR p_value = '' OR left(p_value, 1) = '/')
                    AND (d.kind <> 'glob' OR strpos(p_value, '/') = 0);
        END IF;
        IF jsonb_typeof(v_argv) = 'array' THEN  -- (argv, names) every string of the array
            v_unsafe := EXISTS (SELECT 1 FROM jsonb_array_elements(v_argv) e
                                 WHERE jsonb_typeof(e) = 'string' AND e #>> '{}' ~ ps_health._unsafe_chars());
        END IF;
    EXCEPTION WHEN others THEN
        v_ok := false;  -- not even of the kind: the message below says what is expected
    END;
    IF v_ok AND NOT v_unsafe THEN
        RETURN NULL;
    END IF;
    v_shown := CASE WHEN d.secret THEN 'its value'
                    ELSE format('"%s"', left(regexp_replace(p_value, ps_health._unsafe_chars(), '?', 'g'), 100)) END;
    IF v_unsafe THEN
        RETURN v_shown || ' must not contain control or invisible formatting characters';
    END IF;
    RETURN v_shown || CASE WHEN v_negative THEN format(' is not allowed (no part of it may be negative; %s)', d.allowed)
                           ELSE format(' is not allowed (%s)', d.allowed) END;
END;
$$;

-- trg_settings_write: mark each stored value allowed or not, however it is written (set_setting
-- refuses what is not allowed; a direct INSERT, a restore or an older release need not).
CREATE FUNCTION ps_health.trg_settings_write()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.valid := ps_health._setting_error(NEW.key, NEW.value) IS NULL;
    RETURN NEW;
END;
$$;

CREATE TRIGGER trg_settings_write BEFORE INSERT OR UPDATE ON ps_health.settings
    FOR EACH ROW EXECUTE FUNCTION ps_health.trg_settings_write();

-- (What is stored is checked against this release's ranges every time the code is loaded, at the
-- end of 21_input.sql: _setting_error needs the input checks loaded there.)

-- _setting_default: the default of a setting (NULL for an unknown key): a constant made from
-- setting_definitions whenever the code is loaded, because scanning the view on every lookup cost
-- more than all the rest of one.
DO $$
BEGIN
    EXECUTE format('CREATE FUNCTION ps_health._setting_default(p_key text) RETURNS text LANGUAGE sql IMMUTABLE AS %L',
                   format('SELECT %L::jsonb ->> p_key',
                          (SELECT jsonb_object_agg(key, default_value) FROM ps_health.setting_definitions)));
END;
$$;

-- _setting: the effective value of a setting for a project: the project's override, else the
-- global override, else the default, skipping a stored value that is not allowed. The engine's
-- lookup: no SECURITY DEFINER switch per call, which made per-row lookups in claim_prompts cost
-- more than the claim itself; the stored flag spares a check of the value per call.
CREATE FUNCTION ps_health._setting(p_key text, p_project text DEFAULT NULL)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(
             (SELECT s.value FROM ps_health.settings s WHERE s.key = p_key AND s.project = p_project AND s.valid),
             (SELECT s.value FROM ps_health.settings s WHERE s.key = p_key AND s.project = '*' AND s.valid),
             ps_health._setting_default(p_key),
             ps_health._unknown_setting(p_key))
$$;

-- _setting_interval / _setting_numeric: typed shorthands for the engine.
CREATE FUNCTION ps_health._setting_interval(p_key text, p_project text DEFAULT NULL)
RETURNS interval LANGUAGE sql STABLE AS $$ SELECT ps_health._setting(p_key, p_project)::interval $$;

CREATE FUNCTION ps_health._setting_numeric(p_key text, p_project text DEFAULT NULL)
RETURNS numeric LANGUAGE sql STABLE AS $$ SELECT ps_health._setting(p_key, p_project)::numeric $$;

-- _setting_problem: for a prompt about to be delivered, the first of the keys whose stored value in
-- force for the project (its own override, else the global one) is not allowed; NULL when all are.
CREATE FUNCTION ps_health._setting_problem(p_project text, p_keys text[])
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT format('setting %s %s: %s; fix it with set_setting (ps-health settings set)', k.key,
                  CASE s.project WHEN '*' THEN 'stored globally' ELSE format('stored for project "%s"', s.project) END,
                  coalesce(ps_health._setting_error(k.key, s.value), 'written without its check'))
      FROM unnest(p_keys) WITH ORDINALITY AS k (key, n)
      CROSS JOIN LATERAL (SELECT o.project, o.value, o.valid FROM ps_health.settings o
                           WHERE o.key = k.key AND o.project IN (p_project, '*')
                           ORDER BY o.project = '*' LIMIT 1) s
     WHERE NOT s.valid
     ORDER BY k.n
     LIMIT 1
$$;

-- _sees_secrets: whether the caller may read secret settings: a member of the owner role (superusers
-- are), both as the login and as the current role. The setting_overrides view spells the same rule.
CREATE FUNCTION ps_health._sees_secrets()
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT pg_has_role(session_user, 'ps_health_owner', 'MEMBER') AND pg_has_role(current_user, 'ps_health_owner', 'MEMBER')
$$;

-- setting_overrides: the stored overrides ('*': global) as readers may see them: a secret's value
-- only for the owner, '(set)' for everyone else. Readers get this view, not the settings table.
CREATE VIEW ps_health.setting_overrides AS
SELECT s.key, s.project,
       CASE WHEN d.secret AND NOT (pg_has_role(session_user, 'ps_health_owner', 'MEMBER')
                                   AND pg_has_role(current_user, 'ps_health_owner', 'MEMBER'))
            THEN '(set)' ELSE s.value END AS value,
       s.valid, s.updated_at
  FROM ps_health.settings s
  LEFT JOIN ps_health.setting_definitions d ON d.key = s.key;

-- _setting_shown: a value as the caller may see it: a secret that differs from its default is '(set)'.
CREATE FUNCTION ps_health._setting_shown(p_key text, p_value text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN d.secret AND p_value IS DISTINCT FROM d.default_value AND NOT ps_health._sees_secrets()
                THEN '(set)' ELSE p_value END
      FROM ps_health.setting_definitions d WHERE d.key = p_key
$$;

-- setting: the effective value of a setting for a project, for clients (see _setting). A login reads
-- the settings of the projects it may see (an agent its own) and the global ones; secrets only the owner.
CREATE FUNCTION ps_health.setting(p_key text, p_project text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_project IS NOT NULL AND p_project <> '*' THEN
        PERFORM ps_health._check_text('project', p_project);
        PERFORM ps_health._authorize_view(p_project);
    END IF;
    RETURN ps_health._setting_shown(p_key, ps_health._setting(p_key, p_project));
END;
$$;

-- list_settings: every setting for a project (or globally): its effective value as the caller may
-- see it, where it comes from, its range, and a stored value that is not allowed and so ignored.
CREATE FUNCTION ps_health.list_settings(p_project text DEFAULT NULL)
RETURNS TABLE (key varchar, value text, source text, default_value text, kind varchar, allowed text,
               secret boolean, description text, problem text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_project IS NOT NULL AND p_project <> '*' THEN
        PERFORM ps_health._check_text('project', p_project);
        PERFORM ps_health._authorize_view(p_project);
    END IF;
    RETURN QUERY
    SELECT d.key, ps_health._setting_shown(d.key, ps_health._setting(d.key, p_project)),
           CASE WHEN p.valid THEN 'project' WHEN g.valid THEN 'global' ELSE 'default' END,
           d.default_value, d.kind, d.allowed, d.secret, d.description,
           concat_ws('; ', CASE WHEN NOT p.valid THEN format('stored for project "%s": %s, so it is ignored', p.project,
                               coalesce(ps_health._setting_error(d.key, p.value), 'written without its check')) END,
                           CASE WHEN NOT g.valid THEN format('stored globally: %s, so it is ignored',
                               coalesce(ps_health._setting_error(d.key, g.value), 'written without its check')) END)
      FROM ps_health.setting_definitions d
      LEFT JOIN ps_health.settings p ON p.key = d.key AND p.project = p_project AND p_project <> '*'
      LEFT JOIN ps_health.settings g ON g.key = d.key AND g.project = '*'
     ORDER BY d.key;
END;
$$;

-- _setting_conflict: the first setting_rules pair involving p_key that a project's effective values
-- break, as the refusal of the change (p_value NULL: a reset), or NULL. A global change (p_project
-- NULL) is checked globally and for every project with an override.
CREATE FUNCTION ps_health._setting_conflict(p_key text, p_value text, p_project text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT format('setting %s: %s must be %s %s, which is %s%s', p_key,
                  CASE WHEN p_value IS NULL THEN format('the value after the reset (%s)', ps_health._setting(p_key, x.project))
                       ELSE format('"%s"', left(p_value, 100)) END,
                  CASE WHEN p_key = r.upper_key THEN CASE WHEN r.strict THEN 'greater than' ELSE 'at least' END
                       ELSE CASE WHEN r.strict THEN 'less than' ELSE 'at most' END END,
                  CASE WHEN p_key = r.upper_key THEN r.lower_key ELSE r.upper_key END,
                  ps_health._setting(CASE WHEN p_key = r.upper_key THEN r.lower_key ELSE r.upper_key END, x.project),
                  CASE WHEN x.project = '*' THEN ' globally' ELSE format(' for project "%s"', x.project) END)
      FROM ps_health.setting_rules r
      JOIN ps_health.setting_definitions d ON d.key = r.lower_key
      CROSS JOIN LATERAL (SELECT coalesce(p_project, '*') AS project
                          UNION
                          SELECT DISTINCT s.project FROM ps_health.settings s
                           WHERE p_project IS NULL AND s.project <> '*') x
     WHERE p_key IN (r.lower_key, r.upper_key)
       AND NOT CASE d.kind
           WHEN 'interval' THEN
               CASE WHEN r.strict THEN ps_health._setting_interval(r.lower_key, x.project) < ps_health._setting_interval(r.upper_key, x.project)
                    ELSE ps_health._setting_interval(r.lower_key, x.project) <= ps_health._setting_interval(r.upper_key, x.project) END
           ELSE
               CASE WHEN r.strict THEN ps_health._setting_numeric(r.lower_key, x.project) < ps_health._setting_numeric(r.upper_key, x.project)
                    ELSE ps_health._setting_numeric(r.lower_key, x.project) <= ps_health._setting_numeric(r.upper_key, x.project) END
           END
     ORDER BY x.project = '*' DESC, x.project, r.lower_key
     LIMIT 1
$$;

-- _lock_settings: the transaction lock every writer of settings takes first, so changes queue: a
-- change's cross-check (each later statement of READ COMMITTED sees what the one before it
-- committed) is never made against values another change is replacing at the same time.
CREATE FUNCTION ps_health._lock_settings()
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._lock('settings', '');  -- 21_input.sql
END;
$$;

-- set_setting: change a setting globally (p_project NULL) or for one project; a NULL value resets
-- it. With p_ahead false, a project no session has named is refused (P0002). The value must be of the setting's kind and inside its range, and the change must keep every
-- setting_rules pair in order wherever it reaches; otherwise 22023 and nothing is written.
CREATE FUNCTION ps_health.set_setting(p_key text, p_value text, p_project text DEFAULT NULL,
                                      p_ahead boolean DEFAULT true)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_scope text := coalesce(nullif(p_project, '*'), '*');
    v_error text;
BEGIN
    PERFORM ps_health._lock_settings();
    IF NOT EXISTS (SELECT 1 FROM ps_health.setting_definitions WHERE key = p_key) THEN
        PERFORM ps_health._unknown_setting(p_key);
    END IF;
    IF v_scope <> '*' THEN
        PERFORM ps_health._check_text('project', v_scope);
    END IF;
    -- as mute_project: a value for a project no session has named is refused unless p_ahead says it is
    -- meant (a typo would leave a setting nobody sees); SQL clients set ahead unless they ask otherwise
    IF p_value IS NOT NULL AND v_scope <> '*' AND NOT coalesce(p_ahead, false)
       AND NOT EXISTS (SELECT 1 FROM ps_health.ps_sessions WHERE project = v_scope) THEN
        RAISE EXCEPTION 'unknown project "%": no session registered', left(v_scope, 255) USING ERRCODE = 'P0002',
            HINT = 'a typo? ps-health status lists the projects; to set it before its first session, say so: '
                   'ps-health settings set --project PROJECT --ahead KEY VALUE';
    END IF;
    IF p_value IS NULL THEN
        DELETE FROM ps_health.settings WHERE key = p_key AND project = v_scope;
    ELSE
        v_error := ps_health._setting_error(p_key, p_value);
        IF v_error IS NOT NULL THEN
            RAISE EXCEPTION 'setting %: %', p_key, v_error USING ERRCODE = '22023';
        END IF;
        INSERT INTO ps_health.settings (key, project, value) VALUES (p_key, v_scope, p_value)
        ON CONFLICT (key, project) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
    END IF;
    -- the change is in place for the check; the exception takes it back
    v_error := ps_health._setting_conflict(p_key, p_value, nullif(v_scope, '*'));
    IF v_error IS NOT NULL THEN
        RAISE EXCEPTION '%', v_error USING ERRCODE = '22023';
    END IF;
    RETURN coalesce(p_value, ps_health._setting(p_key, nullif(v_scope, '*')));
END;
$$;
