-- Spawn checks: stalled once, no repeat, reminder only after the interval, recovery without a
-- prompt, failure critical at once, abandon once, refused transitions.
BEGIN;
SELECT plan(30);
SET LOCAL search_path = ps_health, public;
SELECT set_setting('context_check_interval', '1 day');

CREATE TEMP TABLE t0 AS SELECT '2026-01-01 12:00+00'::timestamptz AS t;
CREATE FUNCTION pg_temp.at(m integer) RETURNS timestamptz LANGUAGE sql AS
  $$ SELECT t + make_interval(mins => m) FROM t0 $$;
CREATE FUNCTION pg_temp.checks(p text, s text) RETURNS bigint LANGUAGE sql AS
  $$ SELECT count(*) FROM ps_health.health_checks WHERE project = p AND subject = s $$;
CREATE FUNCTION pg_temp.prompts(p text) RETURNS bigint LANGUAGE sql AS
  $$ SELECT count(*) FROM ps_health.prompts WHERE project = p $$;

SELECT register_session('a', 'cli', '%1', 'h1', NULL, NULL, pg_temp.at(0));
SELECT start_spawn('a', 't1', 'research', 'look into it', '/tmp/t1.out', NULL, 'h1', pg_temp.at(0));

SELECT run_checks(pg_temp.at(14));
SELECT is(pg_temp.checks('a', 't1'), 0::bigint, 'no output for 14 min: nothing yet (measured from spawn_time)');
SELECT run_checks(pg_temp.at(15));
SELECT is((SELECT status::text FROM active_spawns WHERE task_id = 't1'), 'stalled', 'no output for 15 min: stalled');
SELECT results_eq($$SELECT status::text FROM health_checks WHERE subject = 't1'$$, $$VALUES ('warning')$$,
  'one warning recorded');
SELECT is(pg_temp.prompts('a'), 1::bigint, 'one prompt queued');
SELECT matches((SELECT text FROM prompts WHERE project = 'a'),
  'spawn t1 \(research\) has had no output for 15 min.*ps-health respond [0-9]+',
  'the prompt names the spawn, the evidence and the command to answer with the check id');
SELECT is((SELECT target::text || '@' || host FROM prompts WHERE project = 'a'), '%1@h1', 'addressed to the session''s pane and host');

SELECT run_checks(pg_temp.at(m)) FROM generate_series(16, 44) m;
SELECT is(pg_temp.checks('a', 't1'), 1::bigint, 'still stalled at the next sweeps: no new check');
SELECT is(pg_temp.prompts('a'), 1::bigint, 'and no new prompt');
SELECT is((SELECT count(*) FROM sweep_runs), 31::bigint, 'every sweep wrote its run record');

SELECT is((SELECT count(*)::int FROM claim_prompts('h1', 'w1', 10, 60, pg_temp.at(16))), 1, 'the reactor claims it');
SELECT is(complete_prompt((SELECT max(id) FROM prompts), 'w1', 'delivered', NULL, pg_temp.at(16)), 'delivered', 'and delivers it');
SELECT matches((SELECT action_taken FROM health_checks WHERE subject = 't1'), 'prompt #[0-9]+ delivered to %1',
  'the check records the delivery');

SELECT run_checks(pg_temp.at(45));
SELECT is(pg_temp.checks('a', 't1'), 2::bigint, 'a reminder after the 30 min interval');
SELECT is((SELECT details->>'reminder' FROM health_checks WHERE subject = 't1' ORDER BY id DESC LIMIT 1), '1', 'marked as reminder 1');
SELECT is(pg_temp.prompts('a'), 2::bigint, 'the reminder is prompted');
SELECT is((SELECT next_reminder_at FROM check_state WHERE subject = 't1'), pg_temp.at(105), 'the next reminder waits twice as long');

SELECT report_spawn_output('a', 't1', NULL, pg_temp.at(50));
SELECT is((SELECT status::text FROM active_spawns WHERE task_id = 't1'), 'running', 'output resumes: running again');
SELECT is((SELECT status::text FROM health_checks WHERE subject = 't1' ORDER BY id DESC LIMIT 1), 'ok', 'recovery recorded as ok');
SELECT is(pg_temp.prompts('a'), 2::bigint, 'recovery sends no prompt');

SELECT finish_spawn('a', 't1', 2, 'Error: tests failed', pg_temp.at(51));
SELECT is((SELECT status::text FROM active_spawns WHERE task_id = 't1'), 'failed', 'a non-zero exit fails the spawn');
SELECT is((SELECT status::text FROM health_checks WHERE subject = 't1' ORDER BY id DESC LIMIT 1), 'critical', 'critical at once, without a sweep');
SELECT matches((SELECT text FROM prompts WHERE project = 'a' ORDER BY id DESC LIMIT 1),
  'spawn t1 \(research\) failed with exit code 2: Error: tests failed', 'the prompt carries the last error line');
SELECT is((SELECT severity::text FROM prompts WHERE project = 'a' ORDER BY id DESC LIMIT 1), 'critical', 'as a critical prompt');

-- abandon: stalled past the abandon time is critical, once
SELECT register_session('b', 'cli', '%2', 'h1', NULL, NULL, pg_temp.at(100));
SELECT start_spawn('b', 'slow', 'implementation', NULL, NULL, NULL, 'h1', pg_temp.at(100));
SELECT run_checks(pg_temp.at(115));
SELECT run_checks(pg_temp.at(174));
SELECT is((SELECT status::text FROM active_spawns WHERE task_id = 'slow'), 'stalled', 'stalled 59 min: still stalled');
SELECT run_checks(pg_temp.at(175));
SELECT is((SELECT status::text FROM active_spawns WHERE task_id = 'slow'), 'abandoned', 'stalled 60 min: abandoned');
SELECT run_checks(pg_temp.at(176));
SELECT is((SELECT count(*) FROM health_checks WHERE subject = 'slow' AND status = 'critical'), 1::bigint, 'abandon is critical once');

-- the transition table
SELECT throws_ok($$SELECT ps_health.set_spawn_status('a', 't1', 'running')$$, '55000',
  'spawn "t1" in project "a" cannot go from failed to running', 'a failed spawn cannot run again');
SELECT throws_ok($$UPDATE ps_health.active_spawns SET status = 'stalled' WHERE task_id = 't1'$$, '55000', NULL,
  'the table refuses the same transition from any writer');
SELECT throws_ok($$SELECT ps_health.start_spawn('a', 't1', 'research')$$, '23505',
  'spawn "t1" already exists in project "a"', 'a duplicate task id is refused clearly');
SELECT throws_ok($$SELECT ps_health.report_spawn_output('a', 'nope')$$, 'P0002',
  'unknown spawn "nope" in project "a"', 'an unknown spawn is refused');

SELECT * FROM finish();
ROLLBACK;
