-- Facts an agent CLI reports by itself, forwarded by the reactor: each recorded at its own time,
-- each harmless when forwarded twice, none able to reopen what a newer conversation closed.
BEGIN;
SELECT plan(48);
SET LOCAL search_path = ps_health, public;
SELECT set_setting('context_check_interval', '1 day');

CREATE TEMP TABLE t0 AS SELECT '2026-01-01 12:00+00'::timestamptz AS t;
CREATE FUNCTION pg_temp.at(m integer) RETURNS timestamptz LANGUAGE sql AS
  $$ SELECT t + make_interval(mins => m) FROM t0 $$;

SELECT record_session_start('shop', 'h1', '%5', 'conv-1', '/t/one.jsonl', 'claude-sonnet-4-5', NULL, pg_temp.at(0));
SELECT is((SELECT (tmux_target, host, session_id, transcript_path, estimated_tokens_total) FROM ps_sessions
            WHERE project = 'shop'), ('%5'::varchar, 'h1'::varchar, 'conv-1'::varchar, '/t/one.jsonl'::text, 200000),
  'a session start registers the pane, host, conversation and transcript');

-- context from the statusline
SELECT is(record_context('%5', 'h1', NULL, 'conv-1', '/t/one.jsonl', NULL, 1000000, pg_temp.at(1)), 'window',
  'before the first reply only the window size is kept');
SELECT is((SELECT estimated_tokens_total FROM ps_sessions WHERE project = 'shop'), 1000000,
  'so transcript tokens are measured against a 1M window');
SELECT is(record_context('%5', 'h1', NULL, 'conv-1', NULL, 30, 1000000, pg_temp.at(2)), 'recorded', 'a report');
SELECT is((SELECT (context_usage, estimated_tokens_used) FROM ps_sessions WHERE project = 'shop'),
  (0.3000::numeric(5,4), 300000), 'percent and tokens of the window');
SELECT is(record_context('%5', 'h9', 'nothing', 'conv-1', NULL, 30, NULL, pg_temp.at(2)), 'not registered',
  'a pane on another host with an unknown project: nothing recorded, nothing refused');
SELECT record_session_start('shop', 'h1', '%5', 'conv-2', '/t/two.jsonl', NULL, NULL, pg_temp.at(3));
SELECT is((SELECT (session_id, transcript_path, ended_at) FROM ps_sessions WHERE project = 'shop'),
  ('conv-2'::varchar, '/t/two.jsonl'::text, NULL::timestamptz), 'after /clear the session follows the new conversation');
SELECT record_session_start('big', 'h1', '%8', 'conv-9', '/t/big.jsonl', 'claude-opus-4-8[1m]', NULL, pg_temp.at(3));
SELECT is((SELECT estimated_tokens_total FROM ps_sessions WHERE project = 'big'), 1000000,
  'a [1m] model: the 1M window is known before the transcript is read');
SELECT is(record_context('%5', 'h1', NULL, 'conv-1', NULL, 95, NULL, pg_temp.at(4)), 'earlier conversation',
  'a late report of the conversation before /clear is ignored');
SELECT is((SELECT count(*)::int FROM check_state WHERE project = 'shop' AND check_type = 'context' AND status <> 'ok'),
  0, 'and raises nothing');
SELECT is(record_context('%5', 'h1', NULL, 'conv-2', NULL, 95, NULL, pg_temp.at(2)), 'earlier conversation',
  'as is a report timed before the conversation started');
SELECT register_session('manual', 'cli', '%6', 'h1', NULL, NULL, pg_temp.at(0));
SELECT is(record_context('%6', 'h1', NULL, 'any-conv', '/t/m2.jsonl', 10, NULL, pg_temp.at(1)), 'recorded',
  'a session registered by pane takes reports of whatever conversation runs in it');
SELECT is((SELECT transcript_path FROM ps_sessions WHERE project = 'manual'), '/t/m2.jsonl',
  'and follows its transcript');
SELECT throws_ok($$SELECT ps_health.record_context('%5', 'h1', NULL, 'c', NULL, 10, 0)$$, '22023', NULL,
  'a window of 0 is refused');

-- spawns
SELECT start_spawn('shop', 'toolu_1', 'general-purpose', 'Research', NULL, NULL, 'h1', pg_temp.at(5));
SELECT is(record_spawn_end('shop', 'toolu_1', NULL, false, pg_temp.at(6)), 'completed', 'a subagent returns');
SELECT is(record_spawn_end('shop', 'toolu_1', NULL, false, pg_temp.at(6)), 'completed', 'forwarded twice: the same');
SELECT start_spawn('shop', 'toolu_2', 'general-purpose', NULL, NULL, NULL, 'h1', pg_temp.at(5));
SELECT is(record_spawn_end('shop', 'toolu_2', NULL, true, pg_temp.at(7)), 'completed',
  'an interrupted subagent ends');
SELECT is((SELECT count(*)::int FROM prompts WHERE project = 'shop'), 0, 'without a prompt');
SELECT start_spawn('shop', 'toolu_3', 'general-purpose', NULL, NULL, NULL, 'h1', pg_temp.at(5));
SELECT is(record_spawn_end('shop', 'toolu_3', 'Agent type ''x'' not found', false, pg_temp.at(7)), 'failed',
  'a subagent that errs fails');
SELECT is((SELECT count(*)::int FROM prompts WHERE project = 'shop'), 1, 'and prompts at once');
SELECT start_spawn('shop', 'toolu_4', 'general-purpose', NULL, NULL, NULL, 'h1', pg_temp.at(8));
SELECT ok(record_spawn_launch('shop', 'toolu_4', '/tmp/claude/tasks/ab12.output', pg_temp.at(8)) IS NOT NULL,
  'a background launch');
SELECT is((SELECT (status, output_file) FROM active_spawns WHERE task_id = 'toolu_4'),
  ('running'::varchar, '/tmp/claude/tasks/ab12.output'::text), 'keeps it running, its output file watched');
SELECT is(record_subagent_stop('shop', 'cd34', pg_temp.at(9)), 0, 'another subagent stopping ends nothing');
SELECT is(record_subagent_stop('shop', '%', pg_temp.at(9)), 0, 'nor does an id that is a pattern');
SELECT is(record_subagent_stop('shop', 'ab12', pg_temp.at(10)), 1, 'its own stop completes it');
SELECT is((SELECT (status, completed_at) FROM active_spawns WHERE task_id = 'toolu_4'),
  ('completed'::varchar, pg_temp.at(10)), 'at the time it stopped');

-- compaction
SELECT ok(record_compaction('shop', 'auto', pg_temp.at(11)) IS NOT NULL, 'a compaction');
SELECT is(record_compaction('shop', 'auto', pg_temp.at(11)), (SELECT id FROM health_checks WHERE subject = 'compaction'),
  'forwarded twice: one row');
SELECT is((SELECT (check_type, status, details->>'trigger', check_time) FROM health_checks WHERE subject = 'compaction'),
  ('context'::varchar, 'ok'::varchar, 'auto'::text, pg_temp.at(11)), 'an ok context row at its time');
SELECT throws_ok($$SELECT ps_health.record_compaction('nobody', 'auto')$$, 'P0002', NULL,
  'an unknown project is refused');

-- the session's end
SELECT is(record_session_end('shop', 'clear', pg_temp.at(12)), 0, '/clear does not end the session');
SELECT is((SELECT ended_at FROM ps_sessions WHERE project = 'shop'), NULL, 'it stays live for its next conversation');
SELECT record_session_end('shop', 'prompt_input_exit', pg_temp.at(13));
SELECT is((SELECT ended_at FROM ps_sessions WHERE project = 'shop'), pg_temp.at(13), 'an exit ends it');

-- the status cache's query
SELECT results_eq($$SELECT project::text, tmux_target::text, context_percent, running, stalled
                     FROM ps_health.host_status('h1')$$,
  $$VALUES ('big', '%8', NULL::numeric, 0, 0), ('manual', '%6', 10.0, 0, 0)$$, 'host_status: the live sessions of a host');

-- the reactor forwards these facts with its own login
CREATE ROLE reactor_h7 LOGIN IN ROLE ps_health_reactor;
SELECT grant_reactor('reactor_h7', 'h7');
SET SESSION AUTHORIZATION reactor_h7;
SELECT lives_ok($$SELECT ps_health.record_session_start('r', 'h7', '%1', 'c', NULL, NULL)$$, 'reactor: session start');
SELECT lives_ok($$SELECT ps_health.heartbeat_session('r')$$, 'reactor: turn');
SELECT lives_ok($$SELECT ps_health.start_spawn('r', 't', 'x', NULL, NULL, NULL, 'h7')$$, 'reactor: spawn start');
SELECT lives_ok($$SELECT ps_health.record_spawn_launch('r', 't', '/x/a.output')$$, 'reactor: spawn launch');
SELECT lives_ok($$SELECT ps_health.record_subagent_stop('r', 'a')$$, 'reactor: subagent stop');
SELECT lives_ok($$SELECT ps_health.record_spawn_end('r', 't')$$, 'reactor: spawn end');
SELECT lives_ok($$SELECT ps_health.record_context('%1', 'h7', 'r', 'c', NULL, 5, 200000)$$, 'reactor: context');
SELECT lives_ok($$SELECT ps_health.record_compaction('r', 'manual')$$, 'reactor: compaction');
SELECT lives_ok($$SELECT ps_health.record_session_end('r', 'other')$$, 'reactor: session end');
SELECT lives_ok($$SELECT * FROM ps_health.host_status('h7')$$, 'reactor: the status of its host');
RESET SESSION AUTHORIZATION;

-- A pane runs one agent: an agent that starts in a pane ends the session another project left there
-- (its agent killed without a word), so that project's prompts are never typed into the new agent.
RESET SESSION AUTHORIZATION;
SELECT record_session_start('left', 'h3', '%60', 'c-left', '/t/left.jsonl', NULL, NULL, pg_temp.at(0));
SELECT start_spawn('left', 'sub', 'research', NULL, NULL, NULL, 'h3', pg_temp.at(0));
SELECT bind_target('left', 'h3', '%60', '111 1700000000 %60 4242', pg_temp.at(1));
SELECT record_session_start('took', 'h3', '%60', 'c-took', '/t/took.jsonl', NULL, NULL, pg_temp.at(5));
SELECT is((SELECT ended_at FROM ps_sessions WHERE project = 'left'), pg_temp.at(5),
  'the session another project left on the pane ends when an agent starts there');
SELECT is(bind_target('left', 'h3', '%60', '111 1700000000 %60 4242', pg_temp.at(6)), NULL,
  'its prompts are not for the pane any more');
SELECT is((SELECT ended_at IS NULL FROM ps_sessions WHERE project = 'took'), true, 'the new agent''s session lives');
SELECT register_session(p, 'cli', '%61', 'h3') FROM unnest(ARRAY['load1', 'load2']) p;
SELECT is((SELECT count(*)::int FROM ps_sessions WHERE tmux_target = '%61' AND ended_at IS NULL), 2,
  'sessions registered by hand keep sharing a pane (a load test)');

SELECT * FROM finish();
ROLLBACK;
