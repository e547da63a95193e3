-- What the reactor may type into: the pane a session registered (identity bound at first sight, a
-- changed pane makes the session gone), prompts deferred without losing an attempt, one project per pane.
BEGIN;
SELECT plan(65);
SET LOCAL search_path = ps_health, public;
SELECT set_setting('context_check_interval', '1 day');
SELECT set_setting('prompt_max_attempts', '2');

CREATE TEMP TABLE t0 AS SELECT '2026-01-01 12:00+00'::timestamptz AS t;
CREATE FUNCTION pg_temp.at(s integer) RETURNS timestamptz LANGUAGE sql AS
  $$ SELECT t + make_interval(secs => s) FROM t0 $$;
CREATE FUNCTION pg_temp.failed_spawn(p text, task text, s integer) RETURNS bigint LANGUAGE sql AS $$
  SELECT start_spawn(p, task, 'impl', NULL, NULL, NULL, NULL, pg_temp.at(s));
  SELECT finish_spawn(p, task, 1, 'boom', pg_temp.at(s));
  SELECT max(id) FROM ps_health.prompts WHERE project = p $$;
CREATE FUNCTION pg_temp.session(p text, col text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE v text;
BEGIN
  EXECUTE format('SELECT %I::text FROM ps_health.ps_sessions WHERE project = %L', col, p) INTO v;
  RETURN v;
END $$;

-- every prompt typed into a pane starts with its marker
SELECT register_session('p', 'cli', '%20', 'hA', NULL, NULL, pg_temp.at(0));
CREATE TEMP TABLE pid AS SELECT pg_temp.failed_spawn('p', 'k', 0) AS id;
SELECT is((SELECT left(text, length('[ps-health #' || id || '] p: spawn')) FROM prompts WHERE id = (SELECT id FROM pid)),
  '[ps-health #' || (SELECT id FROM pid) || '] p: spawn', 'the prompt starts with its marker and the project');
SELECT ok((SELECT text FROM prompts WHERE id = (SELECT id FROM pid)) ~ ('^' || _marker_pattern()),
  'the marker pattern matches it');
SELECT ok(NOT ('[ps-health] p: x' ~ _marker_pattern()), 'and nothing without a prompt id');

-- the claim says what to check before typing
CREATE TEMP TABLE c1 AS SELECT * FROM claim_prompts('hA', 'w1', 10, 60, pg_temp.at(1));
SELECT is((SELECT identity FROM c1), NULL, 'a pane not seen yet has no identity');
SELECT is((SELECT agent_programs FROM c1), '["claude", "codex", "gemini", "aider", "opencode"]'::jsonb,
  'the accepted agent programs by default');
SELECT is((SELECT agent_profiles->'*'->'clear_keys' FROM c1), '["C-u"]'::jsonb, 'the generic profile clears with Ctrl-U');
SELECT is((SELECT marker_pattern FROM c1), _marker_pattern(), 'and the marker pattern');

-- deferred: nothing typed, back to pending after prompt_defer_delay, no attempt used
SELECT is(complete_prompt((SELECT id FROM pid), 'w1', 'deferred', 'pane runs bash, not an accepted agent program',
                          pg_temp.at(2)), 'pending', 'a deferred prompt goes back to pending');
SELECT is((SELECT attempts FROM prompts WHERE id = (SELECT id FROM pid)), 0, 'without using an attempt');
SELECT is((SELECT not_before FROM prompts WHERE id = (SELECT id FROM pid)), pg_temp.at(7), 'tried again after 5 s');
SELECT alike((SELECT action_taken FROM health_checks WHERE project = 'p' AND check_type = 'spawn'),
  'prompt #% deferred, nothing typed: pane runs bash, not an accepted agent program; tried again in 5 seconds',
  'the reason is in the audit');
SELECT is((SELECT count(*)::int FROM claim_prompts('hA', 'w1', 10, 60, pg_temp.at(6))), 0, 'not before the delay');
SELECT is((SELECT attempts FROM claim_prompts('hA', 'w1', 10, 60, pg_temp.at(8))), 1, 'claimed again: attempt 1');
SELECT complete_prompt((SELECT id FROM pid), 'w1', 'deferred', 'pane in copy-mode', pg_temp.at(8));
SELECT complete_prompt((SELECT id FROM pid), 'w1', 'deferred', 'pane in copy-mode', pg_temp.at(20))
  FROM claim_prompts('hA', 'w1', 10, 60, pg_temp.at(20));
SELECT is((SELECT state::text FROM prompts WHERE id = (SELECT id FROM pid)), 'pending',
  'deferred more often than prompt_max_attempts: still waiting, not failed');
UPDATE check_state SET status = 'ok' WHERE project = 'p';  -- the problem recovered
SELECT is((SELECT count(*)::int FROM claim_prompts('hA', 'w1', 10, 60, pg_temp.at(40))), 0,
  'a deferred prompt whose problem recovered is not claimed');
SELECT is((SELECT state::text FROM prompts WHERE id = (SELECT id FROM pid)), 'expired', 'it expires');

-- bind_target: the first look at a pane binds it; later looks get the bound identity back
SELECT register_session('q', 'cli', '%21', 'hA', NULL, NULL, pg_temp.at(100));
SELECT is(bind_target('q', 'hA', '%21', '111 1700000000 %21 4242', pg_temp.at(101)), '111 1700000000 %21 4242',
  'the first look binds the pane');
SELECT is(bind_target('q', 'hA', '%21', '222 1700000099 %21 5151', pg_temp.at(102)), '111 1700000000 %21 4242',
  'a later look gets the identity seen first');
SELECT is(bind_target('q', 'hB', '%21', '222 1700000099 %21 5151', pg_temp.at(102)), NULL, 'another host: nothing');
SELECT is(bind_target('q', 'hA', '%22', '222 1700000099 %22 5151', pg_temp.at(102)), NULL, 'another target: nothing');
SELECT is(bind_target('no-such-project', 'hA', '%22', '222 1700000099 %22 5151', pg_temp.at(102)), NULL,
  'no such session: nothing');
SELECT is((SELECT count(*)::int FROM locks WHERE name = 'no-such-project'), 0,
  'and no lock row is left behind for a name no session has');
SELECT throws_ok($$SELECT ps_health.bind_target('q', 'hA', '%21', 'whatever')$$, '22023',
  'identity must be "SERVER_PID SERVER_START PANE_ID PANE_PID", got "whatever"', 'a malformed identity is refused');
CREATE TEMP TABLE q1 AS SELECT pg_temp.failed_spawn('q', 'k', 103) AS id;
SELECT is((SELECT identity::text FROM claim_prompts('hA', 'w1', 10, 60, pg_temp.at(104))), '111 1700000000 %21 4242',
  'the claim carries the bound identity');

-- target_changed: nothing typed, the session is gone with a reason, its prompts wait for a new session
CREATE TEMP TABLE q2 AS SELECT pg_temp.failed_spawn('q', 'k2', 104) AS id;  -- joins no claimed prompt: a new one
SELECT is(complete_prompt((SELECT id FROM q1), 'w1', 'target_changed',
                          'pane %21 is not the pane the session registered', pg_temp.at(105)), 'waiting',
  'a changed pane: the prompt waits');
SELECT is((SELECT attempts FROM prompts WHERE id = (SELECT id FROM q1)), 0, 'without using an attempt');
SELECT is(pg_temp.session('q', 'target_state'), 'gone', 'the session is gone at once');
SELECT is((SELECT state::text FROM prompts WHERE id = (SELECT id FROM q2)), 'waiting', 'its other prompts wait too');
SELECT results_eq($$SELECT status::text, details->>'reason', action_taken FROM health_checks
                    WHERE project = 'q' AND check_type = 'pane'$$,
  $$VALUES ('warning', 'pane %21 is not the pane the session registered',
            'session marked gone; prompts wait for a new registration')$$, 'a pane check says why');
SELECT is((SELECT count(*)::int FROM claim_prompts('hA', 'w1', 10, 60, pg_temp.at(106))), 0, 'nothing to claim');
SELECT register_session('q', 'cli', '%30', 'hA', NULL, NULL, pg_temp.at(110));
SELECT results_eq($$SELECT state::text, target::text FROM prompts WHERE project = 'q' ORDER BY id$$,
  $$VALUES ('pending', '%30'), ('pending', '%30')$$, 'a new registration takes them to its pane');
SELECT is(pg_temp.session('q', 'target_identity'), NULL, 'to be identified afresh');
SELECT is((SELECT status::text FROM health_checks WHERE project = 'q' AND check_type = 'pane' ORDER BY id DESC LIMIT 1),
  'ok', 'and the pane check recovers');

-- probes: the first sighting binds, the same pane is seen, another pane at the target is gone at once
SELECT register_session('r', 'cli', '%40', 'hA', NULL, NULL, pg_temp.at(200));
SELECT report_session_panes(ARRAY['r'], ARRAY['seen'], ARRAY['%40'], ARRAY['900 1700000000 %40 77'], pg_temp.at(201));
SELECT is(pg_temp.session('r', 'target_identity'), '900 1700000000 %40 77', 'a probe binds the pane at first sight');
SELECT report_session_panes(ARRAY['r'], ARRAY['seen'], ARRAY['%40'], ARRAY['900 1700000000 %40 77'], pg_temp.at(202));
SELECT is(pg_temp.session('r', 'target_state'), 'seen', 'the same pane is seen');
SELECT report_session_panes(ARRAY['r'], ARRAY['seen'], ARRAY['%41'], ARRAY['900 1700000000 %41 78'], pg_temp.at(203));
SELECT is(pg_temp.session('r', 'target_state'), 'seen', 'a report about a target the session left says nothing');
SELECT report_session_panes(ARRAY['r'], ARRAY['seen'], ARRAY['%40'], ARRAY['901 1700000500 %40 99'], pg_temp.at(204));
SELECT is(pg_temp.session('r', 'target_state'), 'gone', 'a new tmux server reusing %40: gone, not seen');
SELECT alike((SELECT details->>'reason' FROM health_checks WHERE project = 'r' AND check_type = 'pane'),
  'pane %40 is not the pane the session registered (900 1700000000 %40 77)%', 'with the reason');
SELECT report_session_panes(ARRAY['r'], ARRAY['missing'], ARRAY['%40'], ARRAY[NULL], pg_temp.at(205));
SELECT report_session_panes(ARRAY['r'], ARRAY['seen'], ARRAY['%40'], ARRAY['901 1700000500 %40 99'], pg_temp.at(206));
SELECT is(pg_temp.session('r', 'target_state'), 'gone', 'neither a miss nor the new pane brings it back');
SELECT is((SELECT count(*)::int FROM health_checks WHERE project = 'r' AND check_type = 'pane'), 1, 'one row, not one a round');
SELECT throws_ok($$SELECT ps_health.report_session_panes(ARRAY['r'], ARRAY['seen'], ARRAY['%40'], ARRAY['x'])$$,
  '22023', NULL, 'a malformed identity is refused');

-- a target that is not there at the first look is said at once (a typo), and found later it recovers
SELECT register_session('typo', 'cli', 'ps9', 'hT', NULL, NULL, pg_temp.at(400));
SELECT report_session_panes(ARRAY['typo'], ARRAY['missing'], ARRAY['ps9'], ARRAY[NULL], pg_temp.at(401));
SELECT alike((SELECT status || ': ' || (details->>'reason') FROM health_checks WHERE project = 'typo' AND check_type = 'pane'),
  'warning: pane ps9 was not found on host hT: no such pane there (a typo in --target?)%',
  'a pane not found at the first probe round is reported at once');
SELECT report_session_panes(ARRAY['typo'], ARRAY['missing'], ARRAY['ps9'], ARRAY[NULL], pg_temp.at(402));
SELECT is((SELECT count(*)::int FROM health_checks WHERE project = 'typo' AND check_type = 'pane'), 1, 'once');
SELECT report_session_panes(ARRAY['typo'], ARRAY['seen'], ARRAY['ps9'], ARRAY['7 1700000000 %9 70'], pg_temp.at(403));
SELECT is((SELECT status::text FROM check_state WHERE project = 'typo' AND check_type = 'pane'), 'ok',
  'a session whose pane turns up after all recovers');

-- a pane belongs to one project
SELECT register_session('alpha', 'cli', '%1', 'h1', NULL, NULL, pg_temp.at(300));
SELECT register_session('beta', 'cli', 'work:0.0', 'h1', NULL, NULL, pg_temp.at(300));
CREATE ROLE agent_alpha LOGIN IN ROLE ps_health_agent;
SELECT grant_agent('agent_alpha', 'alpha');
SET SESSION AUTHORIZATION agent_alpha;
SELECT throws_ok($$SELECT ps_health.register_session('alpha', 'cli', 'work:0.0', 'h1')$$, '42501',
  'pane work:0.0 on host h1 belongs to the live session of another project',
  'an agent cannot register another project''s pane (and is not told which project''s)');
SELECT lives_ok($$SELECT ps_health.register_session('alpha', 'cli', 'work:0.0', 'h2')$$, 'the same name on another host is another pane');
SELECT lives_ok($$SELECT ps_health.register_session('alpha', 'cli', '%3', 'h1')$$, 'and a pane of its own is fine');
RESET SESSION AUTHORIZATION;
SELECT is(pg_temp.session('beta', 'tmux_target'), 'work:0.0', 'beta keeps its pane');
SELECT is(pg_temp.session('beta', 'registered_by'), session_user::text, 'the registering login is recorded');
-- the same pane under another name: the reactor, seeing the pane, refuses to bind it
SELECT report_session_panes(ARRAY['beta'], ARRAY['seen'], ARRAY['work:0.0'], ARRAY['5 1700000000 %3 60'], pg_temp.at(301));
SELECT report_session_panes(ARRAY['alpha'], ARRAY['seen'], ARRAY['%3'], ARRAY['5 1700000000 %3 60'], pg_temp.at(301));
SELECT is(pg_temp.session('alpha', 'target_state'), 'gone', 'alpha registered beta''s pane by its id: gone');
SELECT is(pg_temp.session('alpha', 'target_identity'), NULL, 'never bound to it');
SELECT alike((SELECT details->>'reason' FROM health_checks WHERE project = 'alpha' AND check_type = 'pane'),
  'pane %3 on host h1 belongs to the live session of another project', 'and why (naming no project alpha''s agent may not see)');
SELECT is(pg_temp.session('beta', 'target_state'), 'seen', 'beta is untouched');
-- the owner may put several projects on one pane (e.g. a load test)
SELECT lives_ok($$SELECT ps_health.register_session('gamma', 'cli', 'work:0.0', 'h1')$$, 'the owner may share a pane');
SELECT is(bind_target('gamma', 'h1', 'work:0.0', '5 1700000000 %3 60'), '5 1700000000 %3 60', 'and the reactor binds it');

-- one pane, two names, two projects whose agents may not act for each other, neither identified yet (an
-- agent registered another's pane as w7:0.0 just as that project's hooks registered it again as %7): the
-- pane is bound to neither, nothing is typed there, and once one ends the other gets it
CREATE ROLE agent_beta LOGIN IN ROLE ps_health_agent;
SELECT grant_agent('agent_beta', 'beta');
SET SESSION AUTHORIZATION agent_beta;
SELECT register_session('beta', 'cli', '%7', 'h3');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION agent_alpha;
SELECT register_session('alpha', 'cli', 'w7:0.0', 'h3');
RESET SESSION AUTHORIZATION;
SELECT is(bind_target('alpha', 'h3', 'w7:0.0', '6 1700000000 %7 61'), '',
  'the reactor about to type for one of them binds nothing: it waits for a probe round');
SELECT is(bind_target('beta', 'h3', '%7', '6 1700000000 %7 61'), '', 'for the other too');
SELECT report_session_panes(ARRAY['alpha', 'beta'], ARRAY['seen', 'seen'], ARRAY['w7:0.0', '%7'],
                            ARRAY['6 1700000000 %7 61', '6 1700000000 %7 61']);
SELECT is(ARRAY[pg_temp.session('alpha', 'target_identity'), pg_temp.session('beta', 'target_identity')],
  ARRAY[NULL, NULL]::text[], 'the probe round sees both name one pane: bound to neither');
SELECT is(ARRAY[pg_temp.session('alpha', 'target_state'), pg_temp.session('beta', 'target_state')],
  ARRAY['unknown', 'unknown'], 'and neither is gone (either may be the pane''s own session)');
SELECT alike((SELECT status || ': ' || (details->>'reason') FROM health_checks WHERE project = 'beta' AND check_type = 'pane'
               ORDER BY id DESC LIMIT 1),
  'warning: pane %7 on host h3 is also named by another project''s session not identified yet; nothing is typed%',
  'each says why, without naming the other project');
SELECT end_session('alpha');
SELECT is(bind_target('beta', 'h3', '%7', '6 1700000000 %7 61'), '6 1700000000 %7 61',
  'once the other session ends, the pane is bound at once');
-- sessions of projects that name different panes are bound in one probe round
SET SESSION AUTHORIZATION agent_alpha;
SELECT register_session('alpha', 'cli', '%8', 'h3');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION agent_beta;
SELECT register_session('beta', 'cli', '%7', 'h3');
RESET SESSION AUTHORIZATION;
SELECT report_session_panes(ARRAY['alpha', 'beta'], ARRAY['seen', 'seen'], ARRAY['%8', '%7'],
                            ARRAY['6 1700000000 %8 62', '6 1700000000 %7 61']);
SELECT is(ARRAY[pg_temp.session('alpha', 'target_identity'), pg_temp.session('beta', 'target_identity')],
  ARRAY['6 1700000000 %8 62', '6 1700000000 %7 61'], 'two panes: each bound to its own');

-- a pane is named by its id, session:window.pane or a session name; nothing else tmux would resolve
SELECT is(ARRAY(SELECT ps_health._check_target(t) FROM unnest(ARRAY['%0', '%3', '%1234', 'work:0.1', 'work', 'my work',
                'api-2:10.0', 'café']) t), ARRAY['%0', '%3', '%1234', 'work:0.1', 'work', 'my work', 'api-2:10.0', 'café'],
  'pane ids, session:window.pane and session names are accepted');
CREATE FUNCTION pg_temp.refused(t text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  PERFORM ps_health._check_target(t);
  RETURN false;
EXCEPTION WHEN invalid_parameter_value THEN
  RETURN true;
END $$;
SELECT is(ARRAY(SELECT t FROM unnest(ARRAY['%03', '%', 'work:0', 'work:win', 'work:0.01', '=work', '{last}', '@1', '$1',
                '!', '~', '+', '-', 'a.b', 'a*', 'a?', 'a[1]', ' work', '', 'work:0.1:2', '#{pane_id}']) t
                WHERE NOT pg_temp.refused(t)), '{}'::text[], 'every other form is refused');
SELECT throws_ok($$SELECT register_session('form', 'cli', 'work:win', 'h1')$$, '22023',
  'tmux_target must be a pane id (%3), session:window.pane (work:0.1) or a session name, got "work:win"',
  'register_session says which forms it takes');

SELECT * FROM finish();
ROLLBACK;
