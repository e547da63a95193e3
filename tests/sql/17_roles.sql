-- Least privilege: each role can do its part and nothing else; agents act only for their projects.
BEGIN;
SELECT plan(59);
SET LOCAL search_path = ps_health, public;

SELECT has_role(r) FROM unnest(ARRAY['ps_health_owner', 'ps_health_reactor', 'ps_health_agent', 'ps_health_reader']) r;
SELECT schema_owner_is('ps_health', 'ps_health_owner', 'the owner role owns the schema');
SELECT table_owner_is('ps_health', 'health_checks', 'ps_health_owner', 'and the tables');
SELECT is_definer('ps_health', f, f || ' runs as the owner') FROM unnest(ARRAY['register_session', 'respond',
  'claim_prompts', 'report_context', 'run_checks', 'statusline']) f;
SELECT ok(NOT has_function_privilege('public', 'ps_health.register_session(text, text, text, text, text, text, timestamptz)', 'EXECUTE'),
  'nothing is granted to PUBLIC');
SELECT is((SELECT count(*)::int FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'ps_health' AND p.prosecdef
              AND NOT coalesce('search_path=ps_health, pg_temp' = ANY (p.proconfig), false)), 0,
  'every SECURITY DEFINER function pins its search_path');

SELECT register_session('alpha', 'cli', '%1', 'h1');
SELECT register_session('beta', 'cli', '%2', 'h1');
SELECT start_spawn(p, 'x', 'research') FROM unnest(ARRAY['alpha', 'beta']) p;
SELECT finish_spawn(p, 'x', 1, 'boom') FROM unnest(ARRAY['alpha', 'beta']) p;
CREATE TEMP TABLE ids AS SELECT project::text, id FROM ps_health.health_checks WHERE check_type = 'spawn';
GRANT SELECT ON ids TO PUBLIC;

CREATE ROLE agent_alpha LOGIN IN ROLE ps_health_agent;
CREATE ROLE reactor_h1 LOGIN IN ROLE ps_health_reactor;
CREATE ROLE reader_ops LOGIN IN ROLE ps_health_reader;
CREATE ROLE stranger LOGIN;
SELECT grant_agent('agent_alpha', 'alpha');
SELECT grant_reactor('reactor_h1', 'h1');

-- the agent
SET SESSION AUTHORIZATION agent_alpha;
SELECT lives_ok($$SELECT ps_health.heartbeat_session('alpha')$$, 'agent: heartbeat for its project');
SELECT lives_ok($$SELECT ps_health.report_context('alpha', 40)$$, 'agent: reports context');
SELECT lives_ok($$SELECT ps_health.start_spawn('alpha', 'y', 'research')$$, 'agent: starts a spawn');
SELECT lives_ok(format('SELECT ps_health.respond(%s, %L)', (SELECT id FROM ids WHERE project = 'alpha'), 'on it'),
  'agent: answers its own project''s check');
SELECT throws_ok(format('SELECT ps_health.respond(%s, %L)', (SELECT id FROM ids WHERE project = 'beta'), 'not mine'),
  'P0002', format('unknown check id %s', (SELECT id FROM ids WHERE project = 'beta')),
  'agent: cannot answer another project''s check, nor learn whose it is');
SELECT throws_ok($$SELECT ps_health.register_session('beta', 'cli', '%9', 'h1')$$, '42501', NULL,
  'agent: cannot take over another project''s session');
SELECT throws_ok($$UPDATE ps_health.health_checks SET ps_response = 'forged'$$, '42501', NULL, 'agent: cannot alter health_checks');
SELECT throws_ok($$DELETE FROM ps_health.health_checks$$, '42501', NULL, 'agent: cannot delete health_checks');
SELECT throws_ok($$INSERT INTO ps_health.ps_sessions (project) VALUES ('z')$$, '42501', NULL, 'agent: no direct writes');
SELECT throws_ok($$SELECT * FROM ps_health.claim_prompts('h1', 'w')$$, '42501', NULL, 'agent: cannot claim prompts');
SELECT throws_ok($$SELECT ps_health.set_setting('stall_after', '1 minute')$$, '42501', NULL, 'agent: cannot change settings');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT ps_response FROM ps_health.health_checks WHERE id = (SELECT id FROM ids WHERE project = 'beta')), NULL,
  'beta''s answer is untouched');

-- the reactor
SET SESSION AUTHORIZATION reactor_h1;
SELECT lives_ok($$SELECT * FROM ps_health.claim_prompts('h1', 'reactor_h1', 10, 60)$$, 'reactor: claims');
SELECT lives_ok($$SELECT * FROM ps_health.probe_spawns('h1')$$, 'reactor: reads its probe targets');
SELECT lives_ok($$SELECT ps_health.report_session_targets(ARRAY['alpha'], ARRAY['seen'])$$, 'reactor: reports facts');
SELECT throws_ok($$SELECT ps_health.register_session('gamma')$$, '42501', NULL, 'reactor: cannot register sessions');
SELECT throws_ok($$SELECT ps_health.respond(1, 'x')$$, '42501', NULL, 'reactor: cannot answer checks');
SELECT throws_ok($$SELECT * FROM ps_health.ps_sessions$$, '42501', NULL, 'reactor: no table reads');
SELECT ok(ps_health.reactor_start('h1', 'reactor_h1:r'), 'reactor: takes its host');
RESET SESSION AUTHORIZATION;
CREATE ROLE reactor_h1b LOGIN IN ROLE ps_health_reactor;
SELECT grant_reactor('reactor_h1b', 'h1');
SET SESSION AUTHORIZATION reactor_h1b;
SELECT ok(NOT ps_health.reactor_stop('reactor_h1:r', pg_backend_pid()),
  'reactor: another login cannot remove a reactor''s row by naming its listener connection');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT login::text FROM ps_health.reactors WHERE worker = 'reactor_h1:r'), 'reactor_h1', 'the row is still there');

-- the reader
SET SESSION AUTHORIZATION reader_ops;
SELECT lives_ok($$SELECT * FROM ps_health.active_monitoring_targets$$, 'reader: the views');
SELECT lives_ok($$SELECT * FROM ps_health.project_status()$$, 'reader: the status');
SELECT lives_ok($$SELECT * FROM ps_health.health_checks$$, 'reader: the history');
SELECT throws_ok($$SELECT ps_health.heartbeat_session('alpha')$$, '42501', NULL, 'reader: cannot write through the API');
SELECT throws_ok($$DELETE FROM ps_health.prompts$$, '42501', NULL, 'reader: cannot write tables');
RESET SESSION AUTHORIZATION;

-- anyone else
SET SESSION AUTHORIZATION stranger;
SELECT throws_ok($$SELECT * FROM ps_health.project_status()$$, '42501', NULL, 'a login without a role gets nothing');
RESET SESSION AUTHORIZATION;

-- an agent login bound to its hosts (grant_agent_host) names panes and spawns there only
CREATE ROLE agent_bound LOGIN IN ROLE ps_health_agent;
SELECT grant_agent('agent_bound', 'gamma');
SELECT grant_agent_host('agent_bound', 'h1');
SELECT register_session('gamma', 'cli', '%6', 'h2');  -- gamma's session on h2, as the owner registered it
SELECT end_session('gamma');
SET SESSION AUTHORIZATION agent_bound;
SELECT throws_ok($$SELECT ps_health.heartbeat_session('gamma')$$, '42501',
  'login "agent_bound" may not act for project "gamma"', 'bound agent: cannot bring back a session on another host');
SELECT throws_ok($$SELECT ps_health.start_spawn('gamma', 's0', 'build')$$, '42501',
  'login "agent_bound" may not act for project "gamma"', 'bound agent: nor start a spawn there without naming a host');
SELECT throws_ok($$SELECT ps_health.finish_spawn('gamma', 's0', 1, 'typed on h2')$$, '42501',
  'login "agent_bound" may not act for project "gamma"', 'bound agent: nor report for it');
SELECT throws_ok($$SELECT ps_health.register_session('gamma', 'cli', '%7', 'h2')$$, '42501',
  'login "agent_bound" may not act for project "gamma" on host "h2"', 'bound agent: cannot name a pane on another host');
SELECT throws_ok($$SELECT ps_health.start_spawn('gamma', 's1', 'build', NULL, NULL, 4242, 'h2')$$, '42501',
  'login "agent_bound" may not act for project "gamma" on host "h2"', 'bound agent: cannot put a spawn on another host');
SELECT throws_ok($$SELECT ps_health.grant_agent_host('agent_bound', 'h2')$$, '42501', NULL,
  'bound agent: cannot grant itself a host');
SELECT lives_ok($$SELECT ps_health.register_session('gamma', 'cli', '%7', 'h1')$$, 'bound agent: names a pane on its host');
SELECT lives_ok($$SELECT ps_health.heartbeat_session('gamma')$$, 'bound agent: acts for the session on its host');
RESET SESSION AUTHORIZATION;
SELECT register_session('gamma', 'cli', '%6', 'h2');  -- gamma's session live on h2 again (its agent there)
SET SESSION AUTHORIZATION agent_bound;
SELECT throws_ok($$SELECT ps_health.start_spawn('gamma', 's2', 'build', NULL, NULL, NULL, 'h1')$$, '42501',
  'login "agent_bound" may not act for project "gamma" on host "h1"',
  'bound agent: no spawn on its host for a session live on another (its failure would be typed there)');
SELECT throws_ok($$SELECT ps_health.register_session('gamma', 'cli', NULL, 'h1')$$, '42501',
  'login "agent_bound" may not act for project "gamma" on host "h1"', 'bound agent: cannot take a live session from another host');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT host || ' ' || tmux_target || ' ' || (ended_at IS NULL) FROM ps_health.ps_sessions WHERE project = 'gamma'),
  'h2 %6 true', 'gamma''s session stays where its agent is');
SELECT register_session('gamma', 'cli', '%7', 'h1');
SET SESSION AUTHORIZATION agent_bound;
RESET SESSION AUTHORIZATION;
SELECT is((SELECT host || ' ' || tmux_target FROM ps_health.ps_sessions WHERE project = 'gamma'), 'h1 %7',
  'only the registration on its host was written');
SELECT grant_agent_host('agent_bound', '*');
SET SESSION AUTHORIZATION agent_bound;
SELECT lives_ok($$SELECT ps_health.register_session('gamma', 'cli', '%8', 'h3')$$, 'bound to ''*'': every host');
RESET SESSION AUTHORIZATION;
SELECT is(revoke_agent_host('agent_bound'), 2, 'revoke_agent_host without a host unbinds the login from all (2 rows)');
SET SESSION AUTHORIZATION agent_alpha;
SELECT lives_ok($$SELECT ps_health.register_session('alpha', 'cli', '%1', 'h9')$$,
  'an agent login bound to no host names panes on any host, as before');
RESET SESSION AUTHORIZATION;
SELECT throws_ok($$SELECT ps_health.grant_agent_host('no_such_login', 'h1')$$, '22023', 'no login "no_such_login"',
  'grant_agent_host: an unknown login is refused');
SELECT throws_ok($$SELECT ps_health.grant_agent_host('agent_bound', E'h\u200b1')$$, '22023', NULL,
  'grant_agent_host: a host with an invisible character is refused');
SELECT is((SELECT count(*)::int FROM ps_health.agent_hosts), 0, 'and nothing of the refused grants was written');

SELECT * FROM finish();
ROLLBACK;
