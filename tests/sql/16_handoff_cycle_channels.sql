-- The handoff cycle (file seen by the reactor, reset then resume in order, completion or not),
-- the command channel for sessions without a pane, and escalation to an operator.
BEGIN;
SELECT plan(33);
SET LOCAL search_path = ps_health, public;
SELECT set_setting('context_check_interval', '1 day');

CREATE TEMP TABLE t0 AS SELECT '2026-01-01 12:00+00'::timestamptz AS t;
CREATE FUNCTION pg_temp.at(m integer) RETURNS timestamptz LANGUAGE sql AS
  $$ SELECT t + make_interval(mins => m) FROM t0 $$;
CREATE FUNCTION pg_temp.steps(p text) RETURNS text[] LANGUAGE sql AS
  $$ SELECT array_agg(status || ':' || coalesce(details->>'step', details->>'source') ORDER BY id)
       FROM ps_health.health_checks WHERE project = p AND check_type = 'handoff' $$;

-- the automatic cycle
SELECT register_session('cyc', 'cli', '%30', 'h1', NULL, NULL, pg_temp.at(0));
SELECT set_setting('auto_cycle', 'true', 'cyc');
SELECT set_setting('handoff_folder', '/tmp/handoffs', 'cyc');
SELECT is((SELECT count(*)::int FROM handoff_watches('h1')), 0, 'no request: nothing to watch');
SELECT report_context('cyc', 86, NULL, NULL, pg_temp.at(1));
SELECT results_eq($$SELECT project::text, folder, pattern FROM ps_health.handoff_watches('h1')$$,
  $$VALUES ('cyc', '/tmp/handoffs', '*.md')$$, 'a request: the reactor watches the project''s handoff folder');
UPDATE prompts SET state = 'delivered' WHERE project = 'cyc';
SELECT is(report_handoff_file('cyc', '/tmp/handoffs/old.md', pg_temp.at(0), pg_temp.at(2)), NULL,
  'a file older than the request does not count');
SELECT ok(report_handoff_file('cyc', '/tmp/handoffs/HANDOFF.md', pg_temp.at(2), pg_temp.at(2)) IS NOT NULL,
  'a new file after the request counts as the handoff done');
SELECT is((SELECT count(*)::int FROM handoff_watches('h1')), 0, 'and the watch ends');
SELECT results_eq($$SELECT kind::text, replace(text, id::text, 'ID') FROM ps_health.prompts WHERE project = 'cyc' AND state = 'pending' ORDER BY id$$,
  $$VALUES ('reset', ''), ('resume', '[ps-health #ID] cyc: your context was cleared after a handoff. Read /tmp/handoffs/HANDOFF.md and continue the work it describes.')$$,
  'auto_cycle queues the reset (empty: the reset command of the agent in the pane), then a resume prompt naming the file');
SELECT results_eq($$SELECT kind::text FROM ps_health.claim_prompts('h1', 'w', 10, 60, pg_temp.at(3))$$,
  $$VALUES ('reset')$$, 'the resume waits until the reset is delivered');
SELECT complete_prompt((SELECT id FROM prompts WHERE kind = 'reset'), 'w', 'delivered', NULL, pg_temp.at(3));
SELECT results_eq($$SELECT kind::text FROM ps_health.claim_prompts('h1', 'w', 10, 60, pg_temp.at(3))$$,
  $$VALUES ('resume')$$, 'then the resume is handed out');
SELECT complete_prompt((SELECT id FROM prompts WHERE kind = 'resume'), 'w', 'delivered', NULL, pg_temp.at(4));
SELECT is((SELECT cycle_state::text FROM ps_sessions WHERE project = 'cyc'), 'resume_delivered', 'waiting for activity');
SELECT report_context('cyc', 12, NULL, NULL, pg_temp.at(6));
SELECT is((SELECT cycle_state::text FROM ps_sessions WHERE project = 'cyc'), 'complete', 'a lower context report closes the cycle');
SELECT is(pg_temp.steps('cyc'), ARRAY['warning:requested', 'ok:file seen by the reactor', 'warning:reset_queued', 'warning:reset_delivered',
  'warning:resume_delivered', 'ok:cycle_complete'], 'every step is a row in health_checks');

-- the failing variant
SELECT register_session('stuck', 'cli', '%31', 'h1', NULL, NULL, pg_temp.at(0));
SELECT set_setting('auto_cycle', 'true', 'stuck');
SELECT report_context('stuck', 90, NULL, NULL, pg_temp.at(1));
SELECT report_handoff('stuck', '/tmp/h.md', pg_temp.at(2));
UPDATE prompts SET state = 'delivered' WHERE project = 'stuck' AND kind = 'alert';
SELECT complete_prompt(id, 'w', 'delivered', NULL, pg_temp.at(3)) FROM claim_prompts('h1', 'w', 10, 60, pg_temp.at(3));
SELECT complete_prompt(id, 'w', 'delivered', NULL, pg_temp.at(3)) FROM claim_prompts('h1', 'w', 10, 60, pg_temp.at(3));
SELECT is((SELECT cycle_state::text FROM ps_sessions WHERE project = 'stuck'), 'resume_delivered', 'resume delivered');
SELECT run_checks(pg_temp.at(12));
SELECT is((SELECT cycle_state::text FROM ps_sessions WHERE project = 'stuck'), 'resume_delivered', '9 min: still waiting');
SELECT run_checks(pg_temp.at(13));
SELECT is((SELECT status::text FROM health_checks WHERE project = 'stuck' AND subject = 'cycle' ORDER BY id DESC LIMIT 1),
  'critical', 'no report 10 min after the resume: critical');
SELECT matches((SELECT text FROM prompts WHERE project = 'stuck' AND state = 'pending'),
  'the handoff cycle did not complete', 'and the PS is told');

-- the command channel
SELECT register_session('sdk1', 'sdk', NULL, 'h2', NULL, 'browser-42', pg_temp.at(0));
SELECT start_spawn('sdk1', 'j', 'research', NULL, NULL, NULL, 'h2', pg_temp.at(0));
SELECT finish_spawn('sdk1', 'j', 1, 'broken', pg_temp.at(1));
SELECT is((SELECT state::text FROM prompts WHERE project = 'sdk1'), 'waiting', 'no pane and no channel: the check is recorded, the prompt waits');
SELECT set_setting('command_channel', '["sh", "-c", "cat >> /tmp/channel.log"]', 'sdk1');
SELECT start_spawn('sdk1', 'j2', 'research', NULL, NULL, NULL, 'h2', pg_temp.at(2));
SELECT finish_spawn('sdk1', 'j2', 1, 'broken again', pg_temp.at(2));
SELECT is((SELECT channel || '/' || state FROM prompts WHERE project = 'sdk1' ORDER BY id DESC LIMIT 1), 'command/pending',
  'with a command channel the prompt goes there');
SELECT results_eq($$SELECT channel::text, command, check_type::text, check_status::text FROM ps_health.claim_prompts('h2', 'w', 10, 60, pg_temp.at(3))$$,
  $$VALUES ('command', '["sh", "-c", "cat >> /tmp/channel.log"]'::jsonb, 'spawn', 'critical')$$,
  'the reactor gets the command and what goes in the environment');
SELECT throws_ok($$SELECT ps_health.set_setting('command_channel', 'notify-send hi')$$, '22023', NULL,
  'a command must be a JSON array of strings');

-- escalation
SELECT register_session('esc', 'cli', '%32', 'h3', NULL, NULL, pg_temp.at(0));
SELECT set_setting('escalation_command', '["notify-send", "ps-health"]', 'esc');
SELECT start_spawn('esc', a, 'research', NULL, NULL, NULL, 'h3', pg_temp.at(0)) FROM unnest(ARRAY['e1', 'e2']) a;
SELECT finish_spawn('esc', a, 1, 'down', pg_temp.at(0)) FROM unnest(ARRAY['e1', 'e2']) a;
SELECT respond((SELECT id FROM health_checks WHERE subject = 'e2'), 'looking into it', pg_temp.at(5));
SELECT run_checks(pg_temp.at(29));
SELECT is((SELECT count(*)::int FROM prompts WHERE project = 'esc' AND channel = 'escalation'), 0, 'not before escalate_after');
SELECT run_checks(pg_temp.at(30));
SELECT run_checks(pg_temp.at(31));
SELECT run_checks(pg_temp.at(100));
SELECT results_eq($$SELECT host::text, text LIKE '%spawn check #% has been critical for 30 min without an answer%'
                     FROM ps_health.prompts WHERE project = 'esc' AND channel = 'escalation'$$,
  $$VALUES ('h3', true)$$, 'a check that stays critical is escalated once, the answered one not at all');
SELECT run_checks(pg_temp.at(150));
SELECT is((SELECT count(*)::int FROM prompts WHERE project = 'esc' AND channel = 'escalation'), 2,
  'escalated again after escalation_reminder');

-- after a handoff the old conversation cannot ask for it again
SELECT register_session('hold', 'cli', '%33', 'h4', NULL, NULL, pg_temp.at(0));
SELECT report_context('hold', 90, NULL, NULL, pg_temp.at(1));
SELECT report_handoff('hold', '/tmp/HANDOFF-hold.md', pg_temp.at(2));
SELECT report_context('hold', 91, NULL, NULL, pg_temp.at(3));
SELECT run_checks(pg_temp.at(4));
SELECT results_eq($$SELECT status::text, count(*)::int FROM ps_health.health_checks
                     WHERE project = 'hold' AND check_type = 'context' AND subject = 'session' GROUP BY 1 ORDER BY 1$$,
  $$VALUES ('critical', 1), ('ok', 1)$$,
  'the reply''s own report (still 91 %, only a reset shrinks it) raises no second critical context check');
SELECT is((SELECT count(*)::int FROM prompt_items i JOIN prompts p ON p.id = i.prompt_id WHERE p.project = 'hold'), 1,
  'and no second "write a handoff" prompt line');
SELECT is((SELECT handoff_requested_at FROM ps_sessions WHERE project = 'hold'), pg_temp.at(1), 'nor a new request');
SELECT report_context('hold', 95, NULL, NULL, pg_temp.at(2) - interval '1 second');
SELECT is((SELECT context_usage FROM ps_sessions WHERE project = 'hold'), 0.91,
  'a report made before the handoff is ignored (it arrived late)');
SELECT report_context('hold', 8, NULL, NULL, pg_temp.at(5));
SELECT report_context('hold', 88, NULL, NULL, pg_temp.at(60));
SELECT is((SELECT status::text FROM check_state WHERE project = 'hold' AND check_type = 'context' AND subject = 'session'),
  'critical', 'once the fresh conversation reported, a full context is critical again');
SELECT is((SELECT handoff_requested_at FROM ps_sessions WHERE project = 'hold'), pg_temp.at(60), 'with a new request');

-- a handoff path is never cut in a prompt, however long the folder setting is
SELECT register_session('long', 'cli', '%34', 'h5', NULL, NULL, pg_temp.at(0));
SELECT set_setting('auto_cycle', 'true', 'long');
SELECT set_setting('handoff_folder', '/' || repeat('d', 319), 'long');
SELECT report_context('long', 90, NULL, NULL, pg_temp.at(1));
SELECT ok(report_handoff_file('long', '/' || repeat('d', 319) || '/HANDOFF.md', pg_temp.at(2), pg_temp.at(2)) IS NOT NULL,
  'a file in a 320-character folder counts');
SELECT ok((SELECT text FROM prompts WHERE project = 'long' AND kind = 'resume')
          LIKE '% Read /' || repeat('d', 319) || '/HANDOFF.md and continue the work it describes.',
  'the resume prompt names its whole path');
SELECT register_session('longest', 'cli', '%35', 'h5', NULL, NULL, pg_temp.at(0));
SELECT set_setting('auto_cycle', 'true', 'longest');
SELECT set_setting('handoff_folder', '/' || repeat('d', 4095), 'longest');
SELECT report_context('longest', 90, NULL, NULL, pg_temp.at(1));
SELECT ok(report_handoff_file('longest', '/' || repeat('d', 4095) || '/' || repeat('n', 252) || '.md', pg_temp.at(2),
                              pg_temp.at(2)) IS NOT NULL,
  'a 255-character name in a folder of the longest setting counts');
SELECT ok((SELECT text FROM prompts WHERE project = 'longest' AND kind = 'resume')
          LIKE '% Read /' || repeat('d', 4095) || '/' || repeat('n', 252) || '.md and continue the work it describes.',
  'and its whole path is in the resume prompt');
SELECT throws_ok($$SELECT ps_health.report_handoff('longest', '/' || repeat('d', 4352), '2026-01-01 12:03+00')$$,
  '22023', NULL, 'a longer path is refused, not cut');

SELECT * FROM finish();
ROLLBACK;
