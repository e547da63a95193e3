-- Orphaned work (with the prompt that waits for the next session), mute, the rate cap, and one
-- prompt listing several problems.
BEGIN;
SELECT plan(23);
SET LOCAL search_path = ps_health, public;
SELECT set_setting('context_check_interval', '1 day');

CREATE TEMP TABLE t0 AS SELECT '2026-01-01 12:00+00'::timestamptz AS t;
CREATE FUNCTION pg_temp.at(m integer) RETURNS timestamptz LANGUAGE sql AS
  $$ SELECT t + make_interval(mins => m) FROM t0 $$;

-- orphaned work
SELECT register_session('o', 'cli', '%10', 'h1', NULL, NULL, pg_temp.at(0));
SELECT start_spawn('o', 's1', 'research', NULL, NULL, NULL, 'h1', pg_temp.at(1));
SELECT start_spawn('o', 's2', 'planning', NULL, NULL, NULL, 'h1', pg_temp.at(1));
SELECT end_session('o', pg_temp.at(2));
SELECT is((SELECT status::text FROM health_checks WHERE project = 'o' AND check_type = 'orphaned_work'), 'warning',
  'a session ended with spawns running: orphaned_work at once');
SELECT is((SELECT state::text FROM prompts WHERE project = 'o'), 'waiting', 'the prompt waits: no session to tell');
SELECT matches((SELECT text FROM prompts WHERE project = 'o'),
  '2 spawn\(s\) from the previous session are still marked running: s1 \(research, running\), s2 \(planning, running\)',
  'it lists the spawns');
SELECT run_checks(pg_temp.at(m)) FROM generate_series(3, 10) m;
SELECT is((SELECT count(*) FROM health_checks WHERE project = 'o' AND check_type = 'orphaned_work'), 1::bigint,
  'the sweeps do not repeat it');
SELECT is((SELECT count(*)::int FROM claim_prompts('h1', 'w', 10, 60, pg_temp.at(11))), 0, 'nothing to deliver yet');
SELECT register_session('o', 'cli', '%11', 'h2', NULL, NULL, pg_temp.at(30));
SELECT is((SELECT state || ' ' || target || '@' || host FROM prompts WHERE project = 'o'), 'pending %11@h2',
  'a new session registers: the waiting prompt goes to its pane');
SELECT is((SELECT status::text FROM check_state WHERE project = 'o' AND check_type = 'orphaned_work'), 'warning',
  'the spawns are still from the previous session');
SELECT finish_spawn('o', 's1', 0, NULL, pg_temp.at(31));
SELECT finish_spawn('o', 's2', 0, NULL, pg_temp.at(31));
SELECT is((SELECT status::text FROM health_checks WHERE project = 'o' AND check_type = 'orphaned_work' ORDER BY id DESC LIMIT 1), 'ok',
  'finishing them closes orphaned_work');

-- a session that went quiet past the activity window leaves orphaned work too
SELECT register_session('q', 'cli', '%12', 'h1', NULL, NULL, pg_temp.at(0));
SELECT start_spawn('q', 'x', 'research', NULL, NULL, NULL, 'h1', pg_temp.at(0));
SELECT report_spawn_output('q', 'x', NULL, pg_temp.at(m)) FROM generate_series(1, 70, 5) m;
SELECT run_checks(pg_temp.at(59));
SELECT is((SELECT count(*) FROM health_checks WHERE project = 'q' AND check_type = 'orphaned_work'), 0::bigint,
  'active within the hour: not orphaned');
SELECT run_checks(pg_temp.at(61));
SELECT is((SELECT status::text FROM health_checks WHERE project = 'q' AND check_type = 'orphaned_work'), 'warning',
  'inactive for an hour with a running spawn: orphaned');

-- mute
SELECT register_session('m', 'cli', '%13', 'h1', NULL, NULL, pg_temp.at(0));
SELECT start_spawn('m', 'f1', 'research', NULL, NULL, NULL, 'h1', pg_temp.at(0));
SELECT mute_project('m', pg_temp.at(60), 'deploying', p_now => pg_temp.at(0));
SELECT finish_spawn('m', 'f1', 1, 'boom', pg_temp.at(1));
SELECT is((SELECT status::text FROM health_checks WHERE project = 'm'), 'critical', 'muted: the check is still recorded');
SELECT matches((SELECT action_taken FROM health_checks WHERE project = 'm'), '^suppressed: project muted until',
  'with action_taken saying it was suppressed');
SELECT is((SELECT array_agg(state::text) FROM prompts WHERE project = 'm'), ARRAY['suppressed'], 'and no prompt goes out');
SELECT ok(unmute_project('m'), 'unmute');
SELECT start_spawn('m', 'f2', 'research', NULL, NULL, NULL, 'h1', pg_temp.at(2));
SELECT finish_spawn('m', 'f2', 1, 'boom again', pg_temp.at(3));
SELECT is((SELECT count(*) FROM prompts WHERE project = 'm' AND state = 'pending'), 1::bigint, 'unmuted: prompted again');

-- the rate cap, and several problems in one prompt
SELECT register_session('r', 'cli', '%14', 'hr', NULL, NULL, pg_temp.at(0));
SELECT start_spawn('r', a, 'research', NULL, NULL, NULL, 'h1', pg_temp.at(0)) FROM unnest(ARRAY['r1', 'r2']) a;
SELECT start_spawn('r', 'r3', 'research', NULL, NULL, NULL, 'h1', pg_temp.at(2));
SELECT run_checks(pg_temp.at(15));
SELECT is((SELECT count(*) FROM prompts WHERE project = 'r'), 1::bigint, 'two spawns stalled in one sweep: one prompt');
SELECT matches((SELECT text FROM prompts WHERE project = 'r'), '\(1\) spawn r1 .*\(2\) spawn r2 ', 'listing both');
SELECT is((SELECT count(*) FROM prompt_items i JOIN prompts p ON p.id = i.prompt_id WHERE p.project = 'r'), 2::bigint,
  'linked to both checks');
SELECT is((SELECT count(*)::int FROM claim_prompts('hr', 'w', 10, 60, pg_temp.at(15))), 1, 'claimed');
SELECT complete_prompt((SELECT id FROM prompts WHERE project = 'r'), 'w', 'delivered', NULL, pg_temp.at(15));
SELECT run_checks(pg_temp.at(17));
SELECT is((SELECT not_before FROM prompts WHERE project = 'r' AND state = 'pending'), pg_temp.at(20),
  'a warning 2 min after the last prompt waits for the 5 min rate cap');
SELECT is((SELECT count(*)::int FROM claim_prompts('hr', 'w', 10, 60, pg_temp.at(18))), 0, 'not claimable before');
SELECT start_spawn('r', 'r4', 'research', NULL, NULL, NULL, 'h1', pg_temp.at(18));
SELECT finish_spawn('r', 'r4', 9, 'crash', pg_temp.at(18));
SELECT is((SELECT not_before FROM prompts WHERE project = 'r' AND state = 'pending'), pg_temp.at(18),
  'a critical problem is not held back: it joins the prompt and brings it forward');
SELECT is((SELECT severity::text FROM prompts WHERE project = 'r' AND state = 'pending'), 'critical', 'which is now critical');

SELECT * FROM finish();
ROLLBACK;
