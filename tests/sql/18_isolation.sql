-- Projects and hosts cannot see or reach each other: an agent login sees only its projects, a
-- reactor login acts only on its hosts (and for the sessions there), a worker id belongs to one login.
BEGIN;
SELECT plan(59);
SET LOCAL search_path = ps_health, public;

-- alpha's PS is on h1, beta's on h2; each has a failed spawn (a critical prompt for its host) and a
-- spawn silent for 30 minutes
SELECT register_session('alpha', 'cli', '%1', 'h1', NULL, NULL, now() - interval '40 minutes');
SELECT register_session('beta', 'cli', '%2', 'h2', NULL, NULL, now() - interval '40 minutes');
SELECT start_spawn(p, 'quiet', 'research', NULL, NULL, NULL, NULL, now() - interval '30 minutes') FROM unnest(ARRAY['alpha', 'beta']) p;
SELECT start_spawn(p, 'x', 'research') FROM unnest(ARRAY['alpha', 'beta']) p;
SELECT finish_spawn(p, 'x', 1, 'secret plans of ' || p) FROM unnest(ARRAY['alpha', 'beta']) p;
CREATE TEMP TABLE ids AS
SELECT project::text, (SELECT max(id) FROM ps_health.prompts p WHERE p.project = s.project) AS prompt_id,
       (SELECT id FROM ps_health.active_spawns sp WHERE sp.project = s.project AND task_id = 'quiet') AS spawn_id
  FROM ps_health.ps_sessions s;
GRANT SELECT ON ids TO PUBLIC;
SELECT register_session('nohost', 'sdk');

CREATE ROLE agent_alpha LOGIN IN ROLE ps_health_agent;   -- an agent login needs nothing more
CREATE ROLE reactor_h1 LOGIN IN ROLE ps_health_reactor;
CREATE ROLE reactor_any LOGIN IN ROLE ps_health_reactor;
CREATE ROLE reactor_none LOGIN IN ROLE ps_health_reactor;
CREATE ROLE reader_ops LOGIN IN ROLE ps_health_reader;
SELECT grant_agent('agent_alpha', 'alpha');
SELECT grant_reactor('reactor_h1', 'h1');
SELECT grant_reactor('reactor_any', '*');

-- an agent sees its own project only
SET SESSION AUTHORIZATION agent_alpha;
SELECT results_eq($$SELECT project::text FROM ps_health.project_status()$$, $$VALUES ('alpha')$$,
  'agent: project_status lists only its project');
SELECT results_eq($$SELECT project::text, registered, running, stalled, open_alerts FROM ps_health.statusline(NULL, NULL, 'beta')$$,
  $$VALUES ('beta', false, 0, 0, 0)$$, 'agent: statusline of another project shows nothing of it');
SELECT results_eq($$SELECT project::text, registered, open_alerts FROM ps_health.statusline('%2', 'h2', NULL)$$,
  $$VALUES (NULL::text, false, 0)$$, 'agent: another project''s pane does not lead to its session');
SELECT results_eq($$SELECT project::text, registered, open_alerts FROM ps_health.statusline(NULL, NULL, 'alpha')$$,
  $$VALUES ('alpha', true, 1)$$, 'agent: its own statusline as before');
SELECT results_eq($$SELECT DISTINCT project::text FROM ps_health.active_monitoring_targets$$, $$VALUES ('alpha')$$,
  'agent: active_monitoring_targets lists only its project');
SELECT results_eq($$SELECT DISTINCT project::text FROM ps_health.health_check_summary$$, $$VALUES ('alpha')$$,
  'agent: health_check_summary counts only its project');
SELECT results_eq($$SELECT task_id::text FROM ps_health.get_stalled_spawns(NULL)$$, $$VALUES ('quiet')$$,
  'agent: get_stalled_spawns(NULL) lists only its spawns');
SELECT is((SELECT count(*)::int FROM ps_health.get_stalled_spawns('beta')), 0, 'agent: and none of another project');
SELECT results_eq($$SELECT project::text FROM ps_health.get_sessions_needing_context_check()$$, $$VALUES ('alpha')$$,
  'agent: get_sessions_needing_context_check lists only its session');
SELECT throws_ok($$SELECT * FROM ps_health.prompts$$, '42501', NULL, 'agent: no table reads');
SELECT throws_ok($$SELECT ps_health.heartbeat_session('alpha', '2199-12-31')$$, '22023', NULL,
  'agent: p_now far in the future is refused');
SELECT throws_ok($$SELECT ps_health.heartbeat_session('alpha', now() - interval '8 days')$$, '22023', NULL,
  'agent: p_now more than a week back is refused');
SELECT lives_ok($$SELECT ps_health.heartbeat_session('alpha', now() - interval '6 days')$$,
  'agent: a fact a few days late still lands');
SELECT lives_ok($$SELECT ps_health.heartbeat_session('alpha', now() + interval '1 minute')$$,
  'agent: a clock a minute ahead still works');
RESET SESSION AUTHORIZATION;

SET SESSION AUTHORIZATION reader_ops;
SELECT results_eq($$SELECT project::text FROM ps_health.project_status()$$, $$VALUES ('alpha'), ('beta'), ('nohost')$$,
  'reader: sees every project');
SELECT results_eq($$SELECT DISTINCT project::text FROM ps_health.active_monitoring_targets ORDER BY 1$$,
  $$VALUES ('alpha'), ('beta'), ('nohost')$$, 'reader: the views show every project');
RESET SESSION AUTHORIZATION;

-- a reactor login is bound to its hosts
CREATE TEMP TABLE row_locks AS SELECT id, xmax::text AS locker FROM ps_health.prompts;
SET SESSION AUTHORIZATION reactor_h1;
SELECT throws_ok($$SELECT * FROM ps_health.claim_prompts('h2', 'evil', 10, 60)$$, '42501',
  'login "reactor_h1" may not act for host "h2"', 'reactor: cannot claim another host''s prompts');
SELECT throws_ok($$SELECT * FROM ps_health.claim_prompts('h2', 'evil', 0, 60)$$, '42501',
  'login "reactor_h1" may not act for host "h2"', 'reactor: another host''s claim is refused before its arguments are judged');
SELECT throws_ok($$SELECT * FROM ps_health.claim_prompts('h1', 'w1', 10, 0)$$, '22023',
  'lease_seconds must be between 1 and 86400, got 0', 'reactor: a bad lease is refused');
SELECT throws_ok($$SELECT * FROM ps_health.claim_prompts('h1', 'w1', 0, 60)$$, '22023',
  'limit must be between 1 and 1000, got 0', 'reactor: a bad limit is refused');
RESET SESSION AUTHORIZATION;
-- (a row lock leaves its locker in xmax, also when its transaction was rolled back)
SELECT results_eq($$SELECT id, xmax::text FROM ps_health.prompts ORDER BY id$$,
  $$SELECT id, locker FROM row_locks ORDER BY id$$,
  'reactor: a refused claim locks no prompt, not even for a moment: another host''s, or its own with a bad lease or limit');
SET SESSION AUTHORIZATION reactor_h1;
SELECT results_eq($$SELECT project::text FROM ps_health.claim_prompts('h1', 'w1', 10, 60)$$, $$VALUES ('alpha')$$,
  'reactor: claims its own host''s prompts');
SELECT throws_ok($$SELECT ps_health.report_session_targets(ARRAY['beta'], ARRAY['missing'])$$, '42501',
  'login "reactor_h1" may not act for project "beta"', 'reactor: cannot report another host''s pane missing');
SELECT throws_ok($$SELECT ps_health.report_session_targets(ARRAY['alpha', 'beta'], ARRAY['seen', 'missing'])$$, '42501',
  NULL, 'reactor: not even inside a batch of its own');
SELECT lives_ok($$SELECT ps_health.report_session_targets(ARRAY['alpha'], ARRAY['seen'])$$,
  'reactor: reports its own host''s panes');
SELECT is(ps_health.report_spawn_pids(ARRAY[(SELECT spawn_id FROM ids WHERE project = 'beta')], ARRAY['dead']),
  ps_health.report_spawn_pids(ARRAY[999999], ARRAY['dead']),
  'reactor: another host''s process reported dead changes nothing, and is answered as an id no spawn has');
SELECT is(ps_health.report_output_mtimes(ARRAY[(SELECT spawn_id FROM ids WHERE project = 'beta')], ARRAY[now()]),
  ps_health.report_output_mtimes(ARRAY[999999], ARRAY[now()]), 'reactor: so is another host''s output');
SELECT lives_ok(format('SELECT ps_health.report_spawn_pids(ARRAY[%s], ARRAY[%L])', (SELECT spawn_id FROM ids WHERE project = 'alpha'), 'alive'),
  'reactor: reports its own host''s processes');
SELECT throws_ok($$SELECT * FROM ps_health.probe_sessions('h2')$$, '42501', NULL, 'reactor: cannot list another host''s panes');
SELECT throws_ok($$SELECT * FROM ps_health.probe_spawns('h2')$$, '42501', NULL, 'reactor: nor its spawns');
SELECT throws_ok($$SELECT * FROM ps_health.handoff_watches('h2')$$, '42501', NULL, 'reactor: nor its handoff folders');
SELECT throws_ok($$SELECT ps_health.report_context('beta', NULL, 190000, 200000)$$, '42501', NULL,
  'reactor: cannot report another host''s context');
SELECT throws_ok($$SELECT ps_health.report_handoff_file('beta', '/tmp/h.md', now())$$, '42501', NULL,
  'reactor: nor its handoff files');
-- a reactor forwards the hooks of the sessions on its host
SELECT lives_ok($$SELECT ps_health.heartbeat_session('alpha')$$, 'reactor: heartbeat of a session on its host');
SELECT lives_ok($$SELECT ps_health.start_spawn('alpha', 'hooked', 'research', NULL, NULL, NULL, 'h1')$$,
  'reactor: records a spawn of a session on its host');
SELECT lives_ok($$SELECT ps_health.finish_spawn('alpha', 'hooked', 0)$$, 'reactor: and its end');
SELECT lives_ok($$SELECT ps_health.register_session('gamma', 'cli', '%7', 'h1')$$, 'reactor: registers a session on its host');
SELECT throws_ok($$SELECT ps_health.register_session('delta', 'cli', '%8', 'h2')$$, '42501',
  'login "reactor_h1" may not act for project "delta" on host "h2"', 'reactor: not on another host');
SELECT throws_ok($$SELECT ps_health.register_session('beta', 'cli', '%9', 'h1')$$, '42501', NULL,
  'reactor: cannot move another host''s live session to its own');
SELECT throws_ok($$SELECT ps_health.heartbeat_session('beta')$$, '42501', NULL, 'reactor: nor act for it');
SELECT throws_ok($$SELECT ps_health.start_spawn('alpha', 'elsewhere', 'research', NULL, NULL, NULL, 'h2')$$, '42501', NULL,
  'reactor: nor place a spawn on another host');
SELECT throws_ok($$SELECT ps_health.heartbeat_session('nohost')$$, '42501', NULL,
  'reactor: nor for a session without a host');
SELECT throws_ok($$SELECT ps_health.respond(1, 'x')$$, '42501', NULL, 'reactor: cannot answer checks');
SELECT throws_ok($$SELECT ps_health.run_checks('2199-01-01')$$, '22023', NULL, 'reactor: cannot sweep in 2199');
SELECT throws_ok($$SELECT ps_health.grant_reactor('reactor_h1', 'h2')$$, '42501', NULL, 'reactor: cannot grant itself a host');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT pid_misses FROM ps_health.active_spawns WHERE id = (SELECT spawn_id FROM ids WHERE project = 'beta')), 0,
  'beta''s spawn is untouched by the reports of h1''s reactor');

-- a worker id belongs to the login that claimed with it
SET SESSION AUTHORIZATION reactor_any;
SELECT throws_ok($$SELECT * FROM ps_health.claim_prompts('h1', 'w1', 10, 60)$$, '42501',
  'worker "w1" belongs to another login, not "reactor_any"', 'another login cannot claim with a worker id (and is not told whose it is)');
SELECT throws_ok(format('SELECT * FROM ps_health.complete_prompts(%L, ARRAY[%s::bigint], ARRAY[%L])', 'w1',
  (SELECT prompt_id FROM ids WHERE project = 'alpha'), 'delivered'), '42501', NULL,
  'another login cannot complete a worker''s prompts');
SELECT throws_ok(format('SELECT ps_health.extend_leases(%L, ARRAY[%s::bigint])', 'w1', (SELECT prompt_id FROM ids WHERE project = 'alpha')),
  '42501', NULL, 'nor extend its leases');
SELECT throws_ok($$SELECT ps_health.release_prompts('w1')$$, '42501', NULL, 'nor release its claims');
SELECT results_eq($$SELECT project::text FROM ps_health.claim_prompts('h2', 'w2', 10, 60)$$, $$VALUES ('beta')$$,
  'a reactor granted every host claims on any');
SELECT lives_ok($$SELECT ps_health.heartbeat_session('nohost')$$, 'and acts for a session without a host');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT state::text FROM ps_health.prompts WHERE id = (SELECT prompt_id FROM ids WHERE project = 'alpha')), 'claimed',
  'the claim of w1 is untouched');
SELECT is((SELECT login::text FROM ps_health.reactors WHERE worker = 'w1'), 'reactor_h1', 'the worker''s login is recorded');

SET SESSION AUTHORIZATION reactor_h1;
SELECT results_eq(format('SELECT state::text FROM ps_health.complete_prompts(%L, ARRAY[%s::bigint], ARRAY[%L])', 'w1',
  (SELECT prompt_id FROM ids WHERE project = 'alpha'), 'delivered'), $$VALUES ('delivered')$$, 'the worker''s login completes it');
RESET SESSION AUTHORIZATION;

SET SESSION AUTHORIZATION reactor_none;
SELECT throws_ok($$SELECT * FROM ps_health.claim_prompts('h1', 'w3', 10, 60)$$, '42501', NULL,
  'a reactor login granted no host claims nothing');
RESET SESSION AUTHORIZATION;

SELECT is(revoke_reactor('reactor_h1'), 1, 'revoke_reactor takes its hosts away');
SET SESSION AUTHORIZATION reactor_h1;
SELECT throws_ok($$SELECT * FROM ps_health.probe_sessions('h1')$$, '42501', NULL, 'and then it may not act on them');
RESET SESSION AUTHORIZATION;

-- a function of the agent's own, cheaper than the views' filter, runs first on every row it is given: the views
-- are security barriers, so it is given only the rows the login may see
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION agent_alpha;
CREATE TEMP TABLE peeked (project text);
CREATE FUNCTION pg_temp.peek(p text) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS
  $$ BEGIN INSERT INTO peeked VALUES (p); RETURN true; END $$;
SELECT count(*) FROM ps_health.active_monitoring_targets WHERE pg_temp.peek(project::text);
SELECT count(*) FROM ps_health.health_check_summary WHERE pg_temp.peek(project::text);
SELECT is((SELECT count(*)::int FROM peeked WHERE project IS DISTINCT FROM 'alpha'), 0,
  'agent: a cheap function of its own in a view''s WHERE is given no other project''s row');
RESET SESSION AUTHORIZATION;

SELECT * FROM finish();
ROLLBACK;
