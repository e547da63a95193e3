-- What the reactor may type into: the very pane a session registered (its identity, recorded when
-- the reactor first sees it), one project per pane, and how the accepted agent CLIs' input lines look.

-- agent_profile_defaults: the profiles ps-health ships, one per supported agent CLI and the generic '*'
-- (read off the screens of Claude Code 2.1.332, Codex CLI 0.171.0 and Gemini CLI 0.61.0; Aider's and
-- opencode's from their documentation and source). Patterns are Python regular expressions; the
-- reactor searches ready/busy/dialog patterns in the screen with ^ and $ at every line.
CREATE VIEW ps_health.agent_profile_defaults AS
SELECT d.program::varchar(64) AS program, d.input_pattern, d.ignore_pattern, d.clear_keys::text[] AS clear_keys,
       d.description, d.command_pattern, d.reset_command::varchar(100) AS reset_command, d.ready_pattern,
       d.busy_pattern, d.dialog_pattern, d.paste_above, d.placeholder_pattern,
       d.context_source::varchar(32) AS context_source, d.context_window
  FROM (VALUES
  ('*', '^\s*[│┃|]?\s*[\w.-]*[>❯›»](\s|$)', NULL, '{C-u}',
   'generic: the input line starts with a prompt ending in > (or ❯ › »), perhaps inside a box; Ctrl-U empties it',
   NULL, '/clear', NULL, NULL, NULL, NULL::integer, NULL, NULL, NULL::integer),
  ('claude', '^❯(\s|$)', NULL, '{C-u,C-u,C-u,C-u,C-u,C-u,C-u,C-u,C-u,C-u,C-u,C-u}',
   'Claude Code: the input line "❯ text" between two rules; Ctrl-U empties one visual line; a spinner line '
   '"✶ Verb… (4s · ↓ 16 tokens)" or "esc to interrupt" while busy; permission dialogs list numbered options '
   'or end in "Esc to cancel"; bursts over 800 characters collapse to [Pasted text #N]; context from its '
   'statusline and transcript',
   '(^|/)claude(\.exe)?$|@anthropic-ai/claude-code', '/clear',
   '^─{20,}\n❯(\s.*)?\n(  .*\n)*─{20,}$',
   '^[·✢✳✶✻✽*] \S+…|…\s*\((\d+[hm] )*\d+s\b|esc to interrupt',
   '^\s*❯ \d+\. |Esc to cancel$',
   700, '^\[Pasted text #\d+( \+\d+ lines)?\]$', 'claude-transcript', NULL),
  ('codex', '^›(\s|$)', 'Ask Codex to do anything|Ask a follow-up question', '{C-u}',
   'Codex CLI: the composer "› text" above a blank line and the footer (its dim placeholder counts as '
   'empty); "Working (5s • esc to interrupt)" until the first token, and "· Working ·" all turn long when '
   '[tui] status_line includes run-state; approval dialogs and menus are numbered lists under "›"; Ctrl-C '
   'on an empty composer quits Codex, so only Ctrl-U clears; keys read in one burst are its own paste (an '
   'Enter among them a newline), so text is always pasted; pastes over 1000 characters collapse to '
   '[Pasted Content N chars]; context from its rollout file (token_count events with model_context_window)',
   '(^|/)codex(\.js)?$|@openai/codex', '/new',
   '^› .*\n(  .*\n)*\n  \S',
   'esc to interrupt\)| · Working\b|tab to queue message',
   '^› \d+\. .*\n  \d+\. |Press enter to confirm or esc to cancel|enter confirm · esc skip',
   0, '^\[Pasted Content \d+ chars\]( #\d+)?$', 'codex-rollout', NULL),
  ('gemini', '^ >(\s|$)', 'Type your message or @path/to/file', '{C-u}',
   'Gemini CLI: the input box " > text" is the last frame on screen, above the footer (framed by ▄ and ▀ '
   'rows in a true-colour terminal; its grey placeholder counts as empty); '
   '"(esc to cancel, 3s)" while busy; tool confirmations are boxes with "Allow execution of" and a "●" '
   'option list; keys read in one burst are its own paste (an Enter among them a newline), so text is always '
   'pasted; pastes over about 800 characters show as [Pasted Text: N chars]; context from its chat '
   'file (tokens of each reply) against a 1,048,576-token window',
   '(^|/)gemini(\.js)?$|@google/gemini-cli', '/clear',
   '^ >( .*)?\n(   .*\n)*(▀{20,})?(\n.*){0,3}\Z',
   '\(esc to cancel, (\d+[hm] )*\d+s\)',
   '^│ Allow execution of |^│ ● \d+\. |^│ Apply this change\?',
   0, '^\[Pasted Text: \d+ chars\]$', 'gemini-chat', 1048576),
  ('aider', '^(\w+ )?(architect|ask|code|help|context|multi)?> ', NULL, '{C-u}',
   'Aider (from its documentation, not run here): prompt_toolkit input "> " (or "ask> ", "architect> " by '
   'mode); confirmations end in "(Y)es/(N)o ... [Yes]:"; /clear drops the chat history',
   '(^|/)aider$|(^|/)aider/__main__\.py$', '/clear',
   NULL,
   'Waiting for |Thinking\.\.\.',
   '\(Y\)es/\(N\)o.*\[(Yes|No)\]: ?$',
   NULL, NULL, NULL, NULL),
  ('opencode', '^\s*[┃│|]?\s*>(\s|$)', NULL, '{C-u}',
   'opencode (from its documentation and source, not run here): /new starts a new session; "esc interrupt" '
   'while working; permission requests offer "Allow once / Allow always / Reject"',
   '(^|/)opencode$|opencode-ai', '/new',
   NULL,
   'esc (to )?interrupt',
   'Permission required|Allow once|Allow always',
   NULL, NULL, NULL, NULL)
  ) AS d (program, input_pattern, ignore_pattern, clear_keys, description, command_pattern, reset_command,
          ready_pattern, busy_pattern, dialog_pattern, paste_above, placeholder_pattern, context_source,
          context_window);

-- trg_agent_profiles_check: a profile someone writes is checked with names: every pattern must be a
-- regular expression, the reset command plain text, and no key that clears the input line may be
-- Ctrl-C (it interrupts the agent, and on an empty input line quits Codex CLI).
CREATE FUNCTION ps_health.trg_agent_profiles_check()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    PERFORM ps_health._check_text('program', NEW.program, 64);
    FOR r IN SELECT key, value FROM jsonb_each_text(to_jsonb(NEW)) WHERE key LIKE '%\_pattern' AND value IS NOT NULL LOOP
        BEGIN
            PERFORM '' ~ r.value;
        EXCEPTION WHEN invalid_regular_expression THEN
            RAISE EXCEPTION 'agent profile "%": % is not a regular expression: "%" (%)', left(NEW.program, 64),
                r.key, left(regexp_replace(r.value, ps_health._unsafe_chars(), '?', 'g'), 80), SQLERRM
                USING ERRCODE = '22023';
        END;
    END LOOP;
    PERFORM ps_health._check_text('reset_command', NEW.reset_command, 100, false);
    IF EXISTS (SELECT 1 FROM unnest(NEW.clear_keys) k WHERE lower(k) IN ('c-c', '^c')) THEN
        RAISE EXCEPTION 'agent profile "%": clear_keys must not hold Ctrl-C (%): it interrupts the agent, and on an '
            'empty input line it quits Codex CLI; use C-u', left(NEW.program, 64), array_to_string(NEW.clear_keys, ' ')
            USING ERRCODE = '22023';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER trg_agent_profiles_check BEFORE INSERT OR UPDATE ON ps_health.agent_profiles
    FOR EACH ROW EXECUTE FUNCTION ps_health.trg_agent_profiles_check();

-- The defaults are added when missing, never over a row someone edited (reset_agent_profile restores one).
INSERT INTO ps_health.agent_profiles SELECT * FROM ps_health.agent_profile_defaults
ON CONFLICT (program) DO NOTHING;

-- reset_agent_profile: put a shipped profile back as it ships (after an edit, or to take a newer
-- version's default); returns whether there was one to restore.
CREATE FUNCTION ps_health.reset_agent_profile(p_program text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ps_health.agent_profile_defaults WHERE program = p_program) THEN
        RAISE EXCEPTION 'no shipped agent profile "%" (shipped: %)', left(p_program, 64),
            (SELECT string_agg(program, ', ' ORDER BY program) FROM ps_health.agent_profile_defaults)
            USING ERRCODE = '22023';
    END IF;
    DELETE FROM ps_health.agent_profiles WHERE program = p_program;
    INSERT INTO ps_health.agent_profiles SELECT * FROM ps_health.agent_profile_defaults WHERE program = p_program;
    RETURN true;
END;
$$;

-- _agent_profiles: every profile as one JSON object keyed by program, for the reactor (PL/pgSQL: its
-- query is planned once per connection, not at every claim).
CREATE FUNCTION ps_health._agent_profiles()
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT coalesce(jsonb_object_agg(p.program, jsonb_strip_nulls(to_jsonb(p) - 'program' - 'description')),
                            '{}')
              FROM ps_health.agent_profiles p);
END;
$$;

-- _restricted: whether a login may act only for the projects listed for it (an agent login; the rule
-- _authorize enforces). A login no longer there is restricted to nothing.
CREATE FUNCTION ps_health._restricted(p_login text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_login) THEN true
                ELSE pg_has_role(p_login, 'ps_health_agent', 'MEMBER')
                     AND NOT pg_has_role(p_login, 'ps_health_owner', 'MEMBER') END
$$;

-- _pane_holder: another project's live session on the same pane (by the target registered on the host,
-- or by the identity the reactor saw there) that p_login may not act for; NULL when there is none. A
-- login that may act for every project may put several projects on one pane (e.g. a load test).
CREATE FUNCTION ps_health._pane_holder(p_project text, p_host text, p_target text, p_identity text, p_login text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_login IS NULL OR NOT ps_health._restricted(p_login) THEN
        RETURN NULL;  -- (no login recorded: a session registered before logins were)
    END IF;
    RETURN (SELECT h.project FROM (
                SELECT x.project, x.target_state FROM ps_health.ps_sessions x
                 WHERE x.host = p_host AND x.tmux_target = p_target AND x.ended_at IS NULL
                UNION ALL
                SELECT x.project, x.target_state FROM ps_health.ps_sessions x
                 WHERE x.target_identity = p_identity AND x.host = p_host AND x.ended_at IS NULL
                UNION ALL
                SELECT x.project, x.target_state FROM ps_health.ps_sessions x
                 WHERE p_host IS NULL AND x.host IS NULL AND x.tmux_target = p_target AND x.ended_at IS NULL) h
             WHERE h.project <> p_project AND h.target_state <> 'gone'
               AND NOT EXISTS (SELECT 1 FROM ps_health.agent_projects a
                                WHERE a.login = p_login AND a.project IN (h.project, '*'))
             ORDER BY h.project LIMIT 1);
END;
$$;

-- _login_may_act: whether p_login may act for p_project (a login that is no agent login may act for all; no login
-- recorded: a session registered before logins were).
CREATE FUNCTION ps_health._login_may_act(p_login text, p_project text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_login IS NULL OR NOT ps_health._restricted(p_login)
           OR EXISTS (SELECT 1 FROM ps_health.agent_projects a WHERE a.login = p_login AND a.project IN (p_project, '*'))
$$;

-- _pane_unsettled: another project's live session on the same host whose pane is not identified yet, where
-- one of the two registrants may not act for the other's project. Its target may name the very pane this
-- session names (a pane has many names: %5, %05, work:0.0), so a pane seen here is bound only by a probe
-- round, which resolves every target of the host at once and binds no pane two such sessions name.
CREATE FUNCTION ps_health._pane_unsettled(s ps_health.ps_sessions)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN s.registered_by IS NULL OR NOT ps_health._restricted(s.registered_by) THEN
        -- a registrant that may act for every project is kept from a pane only by the session of an agent
        -- login granted some projects (not this one): look only at those (few) logins' unidentified sessions
        EXISTS (SELECT 1 FROM (SELECT DISTINCT a.login FROM ps_health.agent_projects a) l
                 WHERE ps_health._restricted(l.login) AND NOT ps_health._login_may_act(l.login, s.project)
                   AND EXISTS (SELECT 1 FROM ps_health.ps_sessions x
                                WHERE x.registered_by = l.login AND x.host = s.host AND x.project <> s.project
                                  AND x.tmux_target IS NOT NULL AND x.target_identity IS NULL AND x.ended_at IS NULL
                                  AND x.target_state <> 'gone'))
    ELSE
        EXISTS (SELECT 1 FROM ps_health.ps_sessions x
                 WHERE x.host = s.host AND x.project <> s.project AND x.tmux_target IS NOT NULL
                   AND x.target_identity IS NULL AND x.ended_at IS NULL AND x.target_state <> 'gone'
                   AND x.registered_by IS DISTINCT FROM s.registered_by  -- one login registered both: it may act for both
                   AND NOT (ps_health._login_may_act(s.registered_by, x.project)
                            AND ps_health._login_may_act(x.registered_by, s.project)))
    END
$$;

-- _check_target: a pane is named only in the forms every part of ps-health resolves exactly and alike: its
-- id (%N), session:window.pane by index, or a session name (its active pane). tmux resolves other forms
-- too (a window name, =exact, a session-name prefix, {last}, @N, $N), but the probe round cannot tell
-- which pane they name, so two projects could name one pane without either knowing.
CREATE FUNCTION ps_health._check_target(p_target text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_session text := regexp_replace(p_target, ':(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,4})$', '');
BEGIN
    IF p_target IS NOT NULL AND p_target !~ '^%(0|[1-9][0-9]{0,9})$'
       AND (v_session = '' OR v_session ~ '[]:.*?{}#[]' OR v_session ~ '^[%=$@!~+-]' OR v_session ~ '^[[:space:]]') THEN
        RAISE EXCEPTION 'tmux_target must be a pane id (%%3), session:window.pane (work:0.1) or a session name, got "%"',
            left(regexp_replace(p_target, '[[:cntrl:]]', '?', 'g'), 80) USING ERRCODE = '22023',
            HINT = 'Inside the pane, $TMUX_PANE is its id.';
    END IF;
    RETURN p_target;
END;
$$;

-- _check_identity: refuse anything but "SERVER_PID SERVER_START PANE_ID PANE_PID" as tmux prints it.
CREATE FUNCTION ps_health._check_identity(p_identity text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_identity IS NOT NULL AND p_identity !~ '^[0-9]{1,10} [0-9]{1,20} %[0-9]{1,10} [0-9]{1,10}$' THEN
        RAISE EXCEPTION 'identity must be "SERVER_PID SERVER_START PANE_ID PANE_PID", got "%"',
            left(regexp_replace(p_identity, '[[:cntrl:]]', '?', 'g'), 80) USING ERRCODE = '22023';
    END IF;
    RETURN p_identity;
END;
$$;

-- _pane_gone: the session's pane is not the pane it registered (or not its own): the session is gone
-- at once, a 'pane' check says why, and its prompts wait for a session that is really there.
CREATE FUNCTION ps_health._pane_gone(p_project text, p_reason text, p_seen text, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.ps_sessions;
    v_n integer;
BEGIN
    -- counted as missed enough, so a later miss cannot make it "missing" (deliverable) again
    UPDATE ps_health.ps_sessions
       SET target_state = 'gone',
           target_misses = greatest(target_misses, ps_health._setting('target_missing_after', project)::integer)
     WHERE project = p_project AND ended_at IS NULL RETURNING * INTO s;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    UPDATE ps_health.prompts SET state = 'waiting'
     WHERE project = p_project AND state = 'pending' AND channel = 'tmux';
    v_n := ps_health._check(p_project, 'pane', 'target', 'warning',
        jsonb_build_object('reason', left(p_reason, 300), 'target', s.tmux_target, 'host', s.host,
                           'registered', s.target_identity, 'seen', p_seen), NULL, p_now, false);
    UPDATE ps_health.health_checks SET action_taken = 'session marked gone; prompts wait for a new registration'
     WHERE id = (SELECT last_check_id FROM ps_health.check_state
                  WHERE project = p_project AND check_type = 'pane' AND subject = 'target')
       AND action_taken = 'recorded; no prompt';
    RETURN v_n + ps_health._eval_orphans(p_project, p_now);
END;
$$;

-- _bind_pane: record the identity the reactor first saw at a session's target, unless that pane
-- belongs to another project's live session its registrant may not act for, or is the very pane (same
-- pane process) such a project's session had when it ended: its agent may start there again, and an
-- agent that named the pane in between would have its text typed into it. NULL when bound, else why not.
CREATE FUNCTION ps_health._bind_pane(s ps_health.ps_sessions, p_identity text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_holder text;
BEGIN
    -- (a login that may act for every project may put several projects on one pane)
    IF s.registered_by IS NOT NULL AND ps_health._restricted(s.registered_by) THEN
        v_holder := ps_health._pane_holder(s.project, s.host, s.tmux_target, p_identity, s.registered_by);
        IF v_holder IS NOT NULL THEN
            -- (the reason is the session's check, which its agent reads: it names no project it may not act for)
            RETURN format('pane %s on host %s belongs to the live session of another project',
                          split_part(p_identity, ' ', 3), coalesce(s.host, '(none)'));
        END IF;
        SELECT x.project INTO v_holder FROM ps_health.ps_sessions x
         WHERE x.target_identity = p_identity AND x.host = s.host AND x.ended_at IS NOT NULL AND x.project <> s.project
           AND NOT ps_health._login_may_act(s.registered_by, x.project)
         ORDER BY x.project LIMIT 1;
        IF v_holder IS NOT NULL THEN
            RETURN format('pane %s on host %s is the pane of another project, whose session ended there (its agent '
                          'may start there again); use a pane of your own',
                          split_part(p_identity, ' ', 3), coalesce(s.host, '(none)'));
        END IF;
    END IF;
    UPDATE ps_health.ps_sessions SET target_identity = p_identity WHERE id = s.id;
    RETURN NULL;
END;
$$;

-- bind_target: the reactor about to type into a session's pane it has not identified yet records what
-- it sees there; returns the identity the session is bound to (this one, or one seen first), NULL
-- when the target is no longer the session's or the pane is another project's (the session is gone), or
-- '' when another project's session on the host is not identified yet (_pane_unsettled: wait for a probe
-- round, which tells whether the two name the same pane).
CREATE FUNCTION ps_health.bind_target(p_project text, p_host text, p_target text, p_identity text,
                                      p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.ps_sessions;
    v_reason text;
BEGIN
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._check_text('host', p_host);
    PERFORM ps_health._check_text('tmux_target', p_target);
    PERFORM ps_health._check_text('identity', p_identity);
    PERFORM ps_health._check_identity(p_identity);
    PERFORM ps_health._check_time('p_now', p_now);
    -- no session: nothing to bind, and no lock taken (a lock leaves a row for each project name it is asked for);
    -- after the host's check, so a login learns nothing of the sessions of a host it does not serve
    PERFORM ps_health._authorize(NULL, p_host);
    IF NOT EXISTS (SELECT 1 FROM ps_health.ps_sessions x WHERE x.project = p_project) THEN
        RETURN NULL;
    END IF;
    -- only a reactor of the session's host sees its panes: another may not bind one (nor read the binding)
    PERFORM ps_health._authorize_locked(p_project, p_host);
    SELECT * INTO s FROM ps_health.ps_sessions WHERE project = p_project FOR UPDATE;
    IF NOT FOUND OR s.ended_at IS NOT NULL OR s.target_state = 'gone'
       OR s.host IS DISTINCT FROM p_host OR s.tmux_target IS DISTINCT FROM p_target THEN
        RETURN NULL;
    END IF;
    IF s.target_identity IS NOT NULL THEN
        RETURN s.target_identity;
    END IF;
    IF ps_health._pane_holder(s.project, s.host, s.tmux_target, p_identity, s.registered_by) IS NULL
       AND ps_health._pane_unsettled(s) THEN
        RETURN '';  -- not yet: the next probe round binds it, unless another project's session names it too
    END IF;
    v_reason := ps_health._bind_pane(s, p_identity);
    IF v_reason IS NOT NULL THEN
        PERFORM ps_health._pane_gone(p_project, v_reason, p_identity, p_now);
        RETURN NULL;
    END IF;
    RETURN p_identity;
END;
$$;
