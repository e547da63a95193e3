-- The seed's functions and views behave as documented, with time moved through p_now.
BEGIN;
SELECT plan(28);

INSERT INTO ps_health.active_spawns (project, task_id, task_type, spawn_time, last_output_change) VALUES
  ('alpha', 'quiet-new', 'research', '2026-01-01 12:00+00', NULL),
  ('alpha', 'chatty', 'implementation', '2026-01-01 11:00+00', '2026-01-01 12:10+00'),
  ('alpha', 'silent-old', 'planning', '2026-01-01 11:00+00', '2026-01-01 11:30+00'),
  ('beta', 'other', 'research', '2026-01-01 11:00+00', NULL);

-- fix: a spawn with no output yet is measured from spawn_time, not reported at once.
SELECT is((SELECT count(*)::int FROM ps_health.get_stalled_spawns('alpha', '2026-01-01 12:05+00')
            WHERE task_id = 'quiet-new'), 0, 'a new spawn without output is not stalled at once');
SELECT results_eq($$SELECT task_id::text, minutes_stalled FROM ps_health.get_stalled_spawns('alpha', '2026-01-01 12:15+00')$$,
  $$VALUES ('silent-old', 45), ('quiet-new', 15)$$,
  'stalled after 15 minutes without output, oldest spawn first, minutes counted from the last output');
SELECT is((SELECT count(*)::int FROM ps_health.get_stalled_spawns(NULL, '2026-01-01 12:15+00')), 3,
  'NULL project means every project');
UPDATE ps_health.active_spawns SET status = 'completed' WHERE task_id = 'silent-old';
SELECT is((SELECT count(*)::int FROM ps_health.get_stalled_spawns('alpha', '2026-01-01 12:15+00')), 1,
  'a completed spawn is not reported');
-- a client of the seed polls get_stalled_spawns: a spawn the sweep marked stalled stays in it
UPDATE ps_health.active_spawns SET status = 'stalled', stalled_at = '2026-01-01 12:15+00' WHERE task_id = 'quiet-new';
SELECT results_eq($$SELECT task_id::text, minutes_stalled FROM ps_health.get_stalled_spawns('alpha', '2026-01-01 12:20+00')$$,
  $$VALUES ('quiet-new', 20)$$, 'a spawn marked stalled is still reported, with its minutes');
UPDATE ps_health.active_spawns SET status = 'abandoned' WHERE task_id = 'quiet-new';
SELECT is((SELECT count(*)::int FROM ps_health.get_stalled_spawns('alpha', '2026-01-01 12:20+00')), 0,
  'until it is abandoned');
UPDATE ps_health.active_spawns SET status = 'running' WHERE task_id = 'quiet-new';
SELECT throws_ok($$SELECT * FROM ps_health.get_stalled_spawns(NULL, NULL)$$, '22023', 'p_now must be a time between 2000 and 2200, got NULL',
  'a NULL time is an error, not an empty answer');

INSERT INTO ps_health.ps_sessions (project, session_type, session_id, last_activity, last_context_check) VALUES
  ('alpha', 'cli', 'alpha-tmux', '2026-01-01 12:00+00', NULL),
  ('beta', 'sdk', 'b-123', '2026-01-01 12:00+00', '2026-01-01 11:55+00'),
  ('gamma', 'cli', 'g', '2026-01-01 10:00+00', NULL);
SELECT results_eq($$SELECT project::text, minutes_since_check FROM ps_health.get_sessions_needing_context_check('2026-01-01 12:10+00')$$,
  $$VALUES ('alpha', NULL::int), ('beta', 15)$$,
  'active in the last hour and not checked for 10 minutes; idle gamma is left out');
SELECT results_eq($$SELECT project::text FROM ps_health.get_sessions_needing_context_check('2026-01-01 12:00+00')$$,
  $$VALUES ('alpha')$$, 'beta checked 5 minutes earlier is not due');

SELECT lives_ok($$SELECT ps_health.update_session_context('alpha', 72.5, 145000, 200000, '2026-01-01 12:20+00')$$,
  'update_session_context takes a percentage');
SELECT is((SELECT context_usage FROM ps_health.ps_sessions WHERE project = 'alpha'), 0.7250,
  'and stores a fraction');
SELECT is((SELECT last_context_check FROM ps_health.ps_sessions WHERE project = 'alpha'), '2026-01-01 12:20+00'::timestamptz,
  'and records when it was checked (p_now)');
SELECT is((SELECT estimated_tokens_used FROM ps_health.ps_sessions WHERE project = 'alpha'), 145000, 'tokens stored');
SELECT throws_ok($$SELECT ps_health.update_session_context('nobody', 10, NULL, NULL)$$, 'P0002',
  'unknown project "nobody": no session registered', 'an unknown project is an error, not a silent no-op');
SELECT throws_ok($$SELECT ps_health.update_session_context('alpha', 150, NULL, NULL)$$, '22023',
  'context_percentage must be between 0 and 100, got 150', 'a percentage over 100 is refused');

SELECT ok(ps_health.record_health_check('alpha', 'spawn', 'warning', '{"task_id": "x"}', 'prompted') > 0,
  'record_health_check returns the new id');
SELECT is((SELECT details->>'task_id' FROM ps_health.health_checks WHERE project = 'alpha' AND check_type = 'spawn'), 'x', 'details stored');
SELECT throws_ok(format('SELECT ps_health.heartbeat_session(%L)', repeat('p', 3000)), '22023',
  'project is too long (3000 characters, at most 255): "pppppppppppppppppppppppppppppppppppppppp..."',
  'a name no project may have is refused naming the field, before any lock is taken for it');
SELECT throws_ok($$SELECT ps_health.report_session_panes(ARRAY[NULL], ARRAY['seen'], ARRAY['%1'], ARRAY[NULL])$$,
  '22023', 'project is required', 'a probe report naming no project is refused naming the field');
SELECT throws_ok($$SELECT ps_health.record_health_check('alpha', 'bogus', 'ok')$$, '22023',
  'check_type must be one of spawn, context, handoff, orphaned_work, pane, got "bogus"', 'an unknown check type names the field');
SELECT throws_ok($$SELECT ps_health.record_health_check('alpha', 'spawn', 'weird')$$, '22023',
  'status must be one of ok, warning, critical, got "weird"', 'an unknown status names the field');
SELECT throws_ok($$SELECT ps_health.record_health_check('alpha', 'spawn', 'ok', '{}', NULL, 'infinity')$$, '22023',
  'p_now must be a time between 2000 and 2200, got infinity', 'so does a time out of range');

SELECT results_eq($$SELECT project::text, active_spawns_count::int FROM ps_health.active_monitoring_targets ORDER BY project$$,
  $$VALUES ('alpha', 2), ('beta', 1), ('gamma', 0)$$,
  'active_monitoring_targets: every project with a session or running spawns');
UPDATE ps_health.ps_sessions SET ended_at = '2026-01-01 12:30+00' WHERE project IN ('beta', 'gamma');
SELECT results_eq($$SELECT project::text, session_id::text, active_spawns_count::int FROM ps_health.active_monitoring_targets ORDER BY project$$,
  $$VALUES ('alpha', 'alpha-tmux', 2), ('beta', NULL, 1)$$,
  'an ended session is no longer a target; its running spawns still are');
UPDATE ps_health.ps_sessions SET ended_at = NULL WHERE project IN ('beta', 'gamma');
SELECT results_eq($$SELECT project::text, check_type::text, status::text, check_count::int FROM ps_health.health_check_summary WHERE check_type = 'spawn'$$,
  $$VALUES ('alpha', 'spawn', 'warning', 1)$$, 'health_check_summary counts the last 7 days');

UPDATE ps_health.ps_sessions SET updated_at = '2000-01-01' WHERE project = 'gamma';
UPDATE ps_health.ps_sessions SET session_id = 'g2' WHERE project = 'gamma';
SELECT ok((SELECT updated_at > '2000-01-02' FROM ps_health.ps_sessions WHERE project = 'gamma'),
  'the updated_at trigger refreshes updated_at');

SELECT throws_ok($$SELECT * FROM ps_health.claim_prompts('h1', 'w', 10, 60, 'infinity')$$, '22023',
  'p_now must be a time between 2000 and 2200, got infinity', 'claim_prompts refuses an infinite time');
SELECT throws_ok($$SELECT ps_health.extend_leases('w', ARRAY[1::bigint], 60, 'infinity')$$, '22023', NULL,
  'and so does extend_leases');

SELECT * FROM finish();
ROLLBACK;
