-- Context checks: 50% -> 72% -> 86% (warning, critical with handoff requested) -> handoff done -> ok;
-- one "report your context" prompt per interval when reports stop, none while they arrive.
BEGIN;
SELECT plan(29);
SET LOCAL search_path = ps_health, public;

CREATE TEMP TABLE t0 AS SELECT '2026-01-01 12:00+00'::timestamptz AS t;
CREATE FUNCTION pg_temp.at(m integer) RETURNS timestamptz LANGUAGE sql AS
  $$ SELECT t + make_interval(mins => m) FROM t0 $$;
CREATE FUNCTION pg_temp.last(p text, ty text, s text) RETURNS text LANGUAGE sql AS
  $$ SELECT status::text FROM ps_health.health_checks WHERE project = p AND check_type = ty AND subject = s ORDER BY id DESC LIMIT 1 $$;

SELECT register_session('c', 'cli', '%3', 'h1', NULL, NULL, pg_temp.at(0));
SELECT report_context('c', 50, NULL, NULL, pg_temp.at(1));
SELECT is((SELECT count(*) FROM health_checks WHERE project = 'c'), 0::bigint, '50%: nothing recorded');
SELECT report_context('c', 72, NULL, NULL, pg_temp.at(2));
SELECT is(pg_temp.last('c', 'context', 'session'), 'warning', '72%: warning');
SELECT report_context('c', NULL, 172000, 200000, pg_temp.at(3));
SELECT is((SELECT context_usage FROM ps_sessions WHERE project = 'c'), 0.8600, 'tokens are turned into a fraction');
SELECT is(pg_temp.last('c', 'context', 'session'), 'critical', '86%: critical at once, without a sweep');
SELECT is((SELECT handoff_requested_at FROM ps_sessions WHERE project = 'c'), pg_temp.at(3), 'and a handoff is requested');
SELECT is(pg_temp.last('c', 'handoff', 'session'), 'warning', 'the request is in the audit');
SELECT matches((SELECT text FROM prompts WHERE project = 'c' AND severity = 'critical'),
  'context window at 86%.*ps-health handoff done --project c --file', 'the prompt asks for the handoff with the command');
SELECT run_checks(pg_temp.at(4));
SELECT is((SELECT count(*) FROM health_checks WHERE project = 'c' AND check_type = 'context'), 2::bigint,
  'the sweep records nothing new while the state holds');

SELECT report_handoff('c', '/tmp/handoff-c.md', pg_temp.at(6));
SELECT is(pg_temp.last('c', 'handoff', 'session'), 'ok', 'handoff done: ok');
SELECT is((SELECT details->>'file' FROM health_checks WHERE project = 'c' AND check_type = 'handoff' ORDER BY id DESC LIMIT 1),
  '/tmp/handoff-c.md', 'with the file');
SELECT is(pg_temp.last('c', 'context', 'session'), 'ok', 'the context expectation resets');
SELECT is((SELECT context_usage FROM ps_sessions WHERE project = 'c'), NULL, 'usage is unknown until the next report');
SELECT run_checks(pg_temp.at(20));
SELECT isnt(pg_temp.last('c', 'handoff', 'session'), 'critical', 'a handoff reported in time never goes critical');

-- overdue handoff
SELECT register_session('late', 'cli', '%4', 'h1', NULL, NULL, pg_temp.at(0));
SELECT report_context('late', 90, NULL, NULL, pg_temp.at(1));
SELECT run_checks(pg_temp.at(10));
SELECT is(pg_temp.last('late', 'handoff', 'session'), 'warning', '9 min after the request: still only requested');
SELECT run_checks(pg_temp.at(11));
SELECT is(pg_temp.last('late', 'handoff', 'session'), 'critical', 'not done within 10 min: critical');

-- no reports: one "report your context" prompt per interval
SELECT register_session('quiet', 'cli', '%5', 'h1', NULL, NULL, pg_temp.at(0));
SELECT heartbeat_session('quiet', pg_temp.at(m)) FROM generate_series(0, 40, 5) m;
SELECT run_checks(pg_temp.at(m)) FROM generate_series(1, 19) m;
SELECT is((SELECT count(*) FROM health_checks WHERE project = 'quiet' AND subject = 'report'), 1::bigint,
  'no report for 10 min: asked once, not at every sweep');
SELECT matches((SELECT text FROM prompts WHERE project = 'quiet'), 'no context report for 10 min. Report it: ps-health context --project quiet',
  'the prompt says how to report');
SELECT report_context('quiet', 40, NULL, NULL, pg_temp.at(20));
SELECT is(pg_temp.last('quiet', 'context', 'report'), 'ok', 'a report closes it');
SELECT run_checks(pg_temp.at(m)) FROM generate_series(21, 29) m;
SELECT is((SELECT count(*) FROM prompts WHERE project = 'quiet'), 1::bigint, 'no new prompt within the interval');
UPDATE prompts SET state = 'delivered' WHERE project = 'quiet';
SELECT run_checks(pg_temp.at(30));
SELECT is((SELECT count(*) FROM prompts WHERE project = 'quiet'), 2::bigint, 'asked again one interval after the last report');

-- reports keep arriving: never asked
SELECT register_session('chatty', 'cli', '%6', 'h1', NULL, NULL, pg_temp.at(0));
SELECT report_context('chatty', 30 + m / 10, NULL, NULL, pg_temp.at(m)) FROM generate_series(0, 120, 5) m;
SELECT run_checks(pg_temp.at(m)) FROM generate_series(1, 120) m;
SELECT is((SELECT count(*) FROM health_checks WHERE project = 'chatty'), 0::bigint, 'a healthy reporting session: no check recorded');
SELECT is((SELECT count(*) FROM prompts WHERE project = 'chatty'), 0::bigint, 'and never prompted');

-- an idle session is not asked
SELECT register_session('idle', 'cli', '%7', 'h1', NULL, NULL, pg_temp.at(0));
SELECT run_checks(pg_temp.at(200));
SELECT is((SELECT count(*) FROM prompts WHERE project = 'idle'), 0::bigint, 'a session idle past the activity window is not asked');

SELECT throws_ok($$SELECT ps_health.report_context('c', 150)$$, '22023',
  'context_percentage must be between 0 and 100, got 150', 'a percentage over 100 is refused');
SELECT throws_ok($$SELECT ps_health.report_context('ghost', 10)$$, 'P0002',
  'unknown project "ghost": no session registered', 'an unknown project is refused');

-- A project's name in the command a prompt names is one shell word: a space would split the command, a ';'
-- would add one (the PS may run it as shown).
SELECT register_session(n, 'cli', t, 'h1', NULL, NULL, pg_temp.at(0))
  FROM (VALUES ('my proj', '%21'), ('x; touch /tmp/pwned #', '%22'), ('it''s', '%23')) v(n, t);
SELECT report_context(n, 90, NULL, NULL, pg_temp.at(1)) FROM unnest(ARRAY['my proj', 'x; touch /tmp/pwned #', 'it''s']) n;
SELECT matches((SELECT text FROM prompts WHERE project = 'my proj' AND severity = 'critical'),
  'ps-health handoff done --project ''my proj'' --file <path>', 'a name with a space is quoted in the command');
SELECT matches((SELECT text FROM prompts WHERE project = 'x; touch /tmp/pwned #' AND severity = 'critical'),
  'run: ps-health handoff done --project ''x; touch /tmp/pwned #'' --file <path> Answer',
  'a name with a ";" stays inside the quotes: it adds no command');
SELECT ok((SELECT text FROM prompts WHERE project = 'it''s' AND severity = 'critical')
          LIKE $$%--project 'it'"'"'s' --file <path>%$$, 'a quote in a name is quoted as a shell does it');
SELECT ok((SELECT text FROM prompts WHERE project = 'my proj' AND severity = 'critical') LIKE '%] my proj: context window at 90%',
  'the header shows the name as it is');

SELECT * FROM finish();
ROLLBACK;
