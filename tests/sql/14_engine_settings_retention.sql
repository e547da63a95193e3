-- Settings as data (defaults, global and per-project overrides, refusals) and retention.
BEGIN;
SELECT plan(13);
SET LOCAL search_path = ps_health, public;

SELECT results_eq($$SELECT key::text, setting(key) FROM setting_definitions WHERE key IN
    ('stall_after', 'abandon_after', 'context_check_interval', 'activity_window', 'context_warning', 'context_critical',
     'handoff_timeout', 'reminder_interval', 'reminder_max_interval', 'prompt_rate_interval', 'retention_ok', 'retention_other')
    ORDER BY key$$,
  $$VALUES ('abandon_after', '60 minutes'), ('activity_window', '60 minutes'), ('context_check_interval', '10 minutes'),
           ('context_critical', '0.85'), ('context_warning', '0.70'), ('handoff_timeout', '10 minutes'),
           ('prompt_rate_interval', '5 minutes'), ('reminder_interval', '30 minutes'), ('reminder_max_interval', '4 hours'),
           ('retention_ok', '7 days'), ('retention_other', '30 days'), ('stall_after', '15 minutes')$$,
  'the documented defaults');
SELECT ok(setting('submit_delay')::interval > interval '0', 'a submit delay for the reactor');
SELECT set_setting('stall_after', '20 minutes');
SELECT set_setting('stall_after', '5 minutes', 'fast');
SELECT is(setting('stall_after', 'fast'), '5 minutes', 'a project override wins');
SELECT is(setting('stall_after', 'other'), '20 minutes', 'other projects get the global override');
SELECT set_setting('stall_after', NULL, 'fast');
SELECT is(setting('stall_after', 'fast'), '20 minutes', 'resetting an override falls back');
SELECT throws_ok($$SELECT ps_health.set_setting('stall_after', 'soon')$$, '22023',
  'setting stall_after: "soon" is not allowed (interval from 1 second to 7 days)', 'a bad value names the key, the value and the range');
SELECT throws_ok($$SELECT ps_health.set_setting('context_warning', '70')$$, '22023',
  'setting context_warning: "70" is not allowed (number from 0.05 to 0.99)', 'thresholds are fractions');
SELECT throws_ok($$SELECT ps_health.set_setting('nonsense', '1')$$, '22023', 'unknown setting "nonsense"', 'unknown keys are refused');

-- per-project thresholds drive the sweep
SELECT register_session('fast', 'cli', '%1', 'h', NULL, NULL, '2026-01-01 12:00+00');
SELECT register_session('slow', 'cli', '%2', 'h', NULL, NULL, '2026-01-01 12:00+00');
SELECT set_setting('stall_after', '5 minutes', 'fast');
SELECT start_spawn(p, 'x', 'research', NULL, NULL, NULL, 'h', '2026-01-01 12:00+00') FROM unnest(ARRAY['fast', 'slow']) p;
SELECT run_checks('2026-01-01 12:06+00');
SELECT results_eq($$SELECT project::text, status::text FROM active_spawns ORDER BY project$$,
  $$VALUES ('fast', 'stalled'), ('slow', 'running')$$, 'the sweep uses each project''s own stall time');

-- retention
INSERT INTO health_checks (project, check_time, check_type, status, subject) VALUES
  ('old', now() - interval '8 days', 'spawn', 'ok', 'a'),
  ('old', now() - interval '8 days', 'spawn', 'warning', 'b'),
  ('old', now() - interval '31 days', 'spawn', 'critical', 'c'),
  ('old', now() - interval '1 day', 'spawn', 'ok', 'd');
INSERT INTO sweep_runs (swept_at, started_at, duration_ms, targets, counts) VALUES
  (now() - interval '8 days', now() - interval '8 days', 1, 0, '{}'), (now(), now(), 1, 0, '{}');
SELECT throws_ok($$SELECT ps_health.prune('infinity')$$, '22023', 'p_now must be a time between 2000 and 2200, got infinity',
  'prune refuses a time that would remove every row');
SELECT is((prune(now())->>'health_checks')::int, 2, 'prune removes ok rows past 7 days and others past 30 days');
SELECT results_eq($$SELECT subject::text FROM health_checks WHERE project = 'old' ORDER BY subject$$,
  $$VALUES ('b'), ('d')$$, 'and keeps the rest');
SELECT is((SELECT count(*) FROM sweep_runs WHERE swept_at < now() - interval '7 days'), 0::bigint, 'old sweep records go');

SELECT * FROM finish();
ROLLBACK;
