-- Agent profiles: one per supported CLI, handed to the reactor with each claim; users edit and add
-- rows; the handoff cycle's reset is the agent's own unless a project set reset_command; a session
-- knows its agent, and the probes read its transcript in that agent's format.
BEGIN;
SELECT plan(28);
SET LOCAL search_path = ps_health, public;
SELECT set_setting('context_check_interval', '1 day');

SELECT results_eq($$SELECT program::text, reset_command::text, context_source::text FROM agent_profiles ORDER BY program$$,
  $$VALUES ('*', '/clear', NULL), ('aider', '/clear', NULL), ('claude', '/clear', 'claude-transcript'),
           ('codex', '/new', 'codex-rollout'), ('gemini', '/clear', 'gemini-chat'), ('opencode', '/new', NULL)$$,
  'a profile for each supported CLI and the generic one, with its reset command and context source');
SELECT is((SELECT context_window FROM agent_profiles WHERE program = 'gemini'), 1048576,
  'Gemini''s chat file does not say the window: the profile does');
SELECT ok((SELECT bool_and(NOT ('C-c' = ANY (clear_keys))) FROM agent_profiles),
  'no profile clears the input line with Ctrl-C (it quits Codex)');
SELECT ok((SELECT bool_and(dialog_pattern IS NOT NULL AND busy_pattern IS NOT NULL) FROM agent_profiles WHERE program <> '*'),
  'every CLI''s profile says how a dialog and a running turn look');

-- what the reactor gets with a claim
SELECT register_session('p', 'cli', '%20', 'hA', NULL, NULL, '2026-01-01 12:00+00');
SELECT start_spawn('p', 'k', 'impl', NULL, NULL, NULL, NULL, '2026-01-01 12:00+00');
SELECT finish_spawn('p', 'k', 1, 'boom', '2026-01-01 12:00+00');
CREATE TEMP TABLE c1 AS SELECT * FROM claim_prompts('hA', 'w1', 10, 60, '2026-01-01 12:00:01+00');
SELECT is((SELECT agent_profiles->'codex'->>'reset_command' FROM c1), '/new', 'the claim carries every profile');
SELECT is((SELECT agent_profiles->'claude'->>'paste_above' FROM c1), '700', 'with how long text must be sent');
SELECT ok((SELECT agent_profiles->'codex' ? 'dialog_pattern' AND agent_profiles->'codex' ? 'command_pattern' FROM c1),
  'and how to recognise the CLI and its dialogs');
SELECT ok((SELECT NOT (agent_profiles->'*' ? 'busy_pattern') FROM c1), 'what a profile does not say is left out');

-- a caller holding the current version of the profiles and the marker is not sent them again; any change
-- to a profile or the marker template makes a new version, sent again
CREATE FUNCTION pg_temp.again(p_version text) RETURNS TABLE (profiles boolean, marker boolean, version text)
LANGUAGE sql AS $$
    UPDATE ps_health.prompts SET state = 'pending', lease_until = NULL, worker = NULL, attempts = 0 WHERE project = 'p';
    SELECT agent_profiles IS NOT NULL, marker_pattern IS NOT NULL, profiles_version
      FROM ps_health.claim_prompts('hA', 'w1', 10, 60, '2026-01-01 12:00:02+00', p_version);
$$;
SELECT ok((SELECT marker_pattern IS NOT NULL AND profiles_version IS NOT NULL FROM c1), 'and the marker, with their version');
SELECT results_eq($$SELECT profiles, marker, version FROM pg_temp.again((SELECT profiles_version FROM c1))$$,
  $$SELECT false, false, profiles_version FROM c1$$, 'a caller that gives the version it holds gets neither again');
CREATE TEMP TABLE v AS SELECT profiles_version AS held FROM c1;
UPDATE agent_profiles SET busy_pattern = busy_pattern WHERE program = 'aider';
SELECT results_eq($$SELECT profiles, marker, version <> (SELECT held FROM v) FROM pg_temp.again((SELECT held FROM v))$$,
  $$VALUES (true, true, true)$$, 'a profile updated: a new version, sent again');
UPDATE v SET held = (SELECT version FROM pg_temp.again(NULL));
UPDATE prompt_templates SET body = body WHERE key = 'marker';
SELECT results_eq($$SELECT profiles, marker, version <> (SELECT held FROM v) FROM pg_temp.again((SELECT held FROM v))$$,
  $$VALUES (true, true, true)$$, 'the marker template updated: sent again');
INSERT INTO agent_profiles (program, input_pattern) VALUES ('short-lived', '^> ');
UPDATE v SET held = (SELECT version FROM pg_temp.again(NULL));
DELETE FROM agent_profiles WHERE program = 'short-lived';
SELECT results_eq($$SELECT profiles, marker, version <> (SELECT held FROM v) FROM pg_temp.again((SELECT held FROM v))$$,
  $$VALUES (true, true, true)$$, 'a profile deleted: sent again');
UPDATE v SET held = (SELECT version FROM pg_temp.again(NULL));
DELETE FROM prompt_templates WHERE key = 'no-such-template';
SELECT results_eq($$SELECT profiles, marker, version <> (SELECT held FROM v) FROM pg_temp.again((SELECT held FROM v))$$,
  $$VALUES (true, true, true)$$, 'any statement on the templates (it may have changed the marker): sent again');
UPDATE v SET held = (SELECT version FROM pg_temp.again(NULL));
DELETE FROM profiles_version;
SELECT results_eq($$SELECT profiles, marker FROM pg_temp.again((SELECT held FROM v))
                   UNION ALL SELECT profiles, marker FROM pg_temp.again(ps_health._profiles_version())$$,
  $$VALUES (true, true), (true, true)$$, 'the version''s row gone: every claim sends them');
INSERT INTO profiles_version DEFAULT VALUES;
-- a restore puts an earlier version back (here: the row as it was), then a profile changes: a reactor holding the
-- version from before the restore is sent the profiles (a counter would have come back to the one it holds)
CREATE TEMP TABLE before_restore AS SELECT version FROM profiles_version;
UPDATE agent_profiles SET busy_pattern = busy_pattern WHERE program = 'aider';
UPDATE v SET held = (SELECT version FROM pg_temp.again(NULL));
UPDATE profiles_version SET version = (SELECT version FROM before_restore);
UPDATE agent_profiles SET busy_pattern = busy_pattern WHERE program = 'aider';
SELECT results_eq($$SELECT profiles, marker FROM pg_temp.again((SELECT held FROM v))$$, $$VALUES (true, true)$$,
  'an earlier version restored, then a change: sent again (never a version a reactor holds)');

-- users edit and add profiles; bad patterns are refused
UPDATE agent_profiles SET busy_pattern = 'Working|Thinking' WHERE program = 'codex';
SELECT is((SELECT _agent_profiles()->'codex'->>'busy_pattern'), 'Working|Thinking', 'an edited profile is used');
INSERT INTO agent_profiles (program, input_pattern, reset_command, dialog_pattern)
VALUES ('goose', '^\( O\)> ', '/clear', 'Allow\?');
SELECT is((SELECT _agent_profiles()->'goose'->>'reset_command'), '/clear', 'and a profile someone added');
SELECT throws_ok($$UPDATE ps_health.agent_profiles SET dialog_pattern = '(' WHERE program = 'codex'$$, '22023',
  'agent profile "codex": dialog_pattern is not a regular expression: "(" (invalid regular expression: parentheses () not balanced)',
  'a pattern that is not a regular expression is refused, naming the profile, the field and the value');
SELECT throws_ok($$UPDATE ps_health.agent_profiles SET clear_keys = '{C-c}' WHERE program = 'codex'$$, '22023', NULL,
  'Ctrl-C never clears an input line');
SELECT throws_ok($$UPDATE ps_health.agent_profiles SET context_source = 'aider-log' WHERE program = 'aider'$$, '23514',
  NULL, 'so is a context source the reactor cannot read');
SELECT ok(reset_agent_profile('codex'), 'a shipped profile can be put back');
SELECT is((SELECT busy_pattern FROM agent_profiles WHERE program = 'codex'),
  (SELECT busy_pattern FROM agent_profile_defaults WHERE program = 'codex'), 'as it ships');
SELECT throws_ok($$SELECT ps_health.reset_agent_profile('goose')$$, '22023',
  'no shipped agent profile "goose" (shipped: *, aider, claude, codex, gemini, opencode)', 'only a shipped one');

-- the handoff cycle's reset: the agent's own, unless the project says
SELECT register_session('cyc', 'cli', '%30', 'h1', NULL, NULL, '2026-01-01 12:00+00');
SELECT set_setting('auto_cycle', 'true', 'cyc');
SELECT report_handoff('cyc', '/tmp/h1.md', '2026-01-01 12:01+00');
SELECT is((SELECT text FROM prompts WHERE project = 'cyc' AND kind = 'reset'), '',
  'by default the reset step types the reset command of the agent profile of the program in the pane');
SELECT set_setting('reset_command', '/compact', 'cyc');
UPDATE prompts SET state = 'delivered' WHERE project = 'cyc';
SELECT report_handoff('cyc', '/tmp/h2.md', '2026-01-01 12:02+00');
SELECT is((SELECT text FROM prompts WHERE project = 'cyc' AND kind = 'reset' AND state = 'pending'), '/compact',
  'a project''s reset_command wins');

-- a session knows its agent: the probes read its transcript in that agent's format
SELECT record_session_start('cx', 'h2', '%40', 'thread-1', '/home/me/.codex/sessions/r.jsonl', 'gpt-5.1-codex', 'codex');
SELECT record_session_start('gm', 'h2', '%41', 'chat-1', '/home/me/.gemini/tmp/x/chats/s.jsonl', NULL, 'gemini');
SELECT record_session_start('cl', 'h2', '%42', 'conv-1', '/home/me/.claude/projects/x/c.jsonl', NULL);
SELECT results_eq($$SELECT project::text, context_source::text, context_window FROM ps_health.probe_sessions('h2')$$,
  $$VALUES ('cl', 'claude-transcript', NULL::integer), ('cx', 'codex-rollout', NULL), ('gm', 'gemini-chat', 1048576)$$,
  'each session''s transcript is read as its agent records it (a hook without --agent: Claude Code)');
SELECT record_session_start('cx', 'h2', '%40', 'thread-2', '/home/me/.codex/sessions/r2.jsonl', 'gpt-5.1-codex', NULL);
SELECT is((SELECT agent::text FROM ps_sessions WHERE project = 'cx'), 'codex', 'a start that does not name its agent keeps it');

SELECT * FROM finish();
ROLLBACK;
