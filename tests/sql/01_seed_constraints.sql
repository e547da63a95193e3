-- The seed's constraints refuse bad values with their SQLSTATE.
BEGIN;
SELECT plan(7);

SELECT throws_ok($$INSERT INTO ps_health.ps_sessions (project, context_usage) VALUES ('p', 1.5)$$,
  '23514', NULL, 'context_usage 1.5 is refused');
SELECT throws_ok($$INSERT INTO ps_health.ps_sessions (project, context_usage) VALUES ('p', -0.1)$$,
  '23514', NULL, 'negative context_usage is refused');
SELECT throws_ok($$INSERT INTO ps_health.ps_sessions (project, session_type) VALUES ('p', 'web')$$,
  '23514', NULL, 'session_type web is refused');
SELECT throws_ok($$INSERT INTO ps_health.active_spawns (project, task_id, task_type, status) VALUES ('p', 't', 'x', 'done')$$,
  '23514', NULL, 'spawn status done is refused');
SELECT throws_ok($$INSERT INTO ps_health.active_spawns (project, task_id, task_type) VALUES ('p', 'dup', 'x'), ('p', 'dup', 'y')$$,
  '23505', NULL, 'a duplicate (project, task_id) is refused');
SELECT throws_ok($$INSERT INTO ps_health.health_checks (project, check_type, status) VALUES ('p', 'spawn', 'fine')$$,
  '23514', NULL, 'check status fine is refused');
SELECT throws_ok($$INSERT INTO ps_health.health_checks (project, check_type, status) VALUES ('p', 'weather', 'ok')$$,
  '23514', NULL, 'check_type weather is refused');

SELECT * FROM finish();
ROLLBACK;
