-- Typos change nothing (start_spawn, mute_project), forget_project, one reactor per host
-- (reactor_start/stop and who counts as running), prompt_reason, doctor_checks.
BEGIN;
SELECT plan(48);
SET LOCAL search_path = ps_health, public;
SELECT set_setting('context_check_interval', '1 day');

CREATE TEMP TABLE t0 AS SELECT '2026-01-01 12:00+00'::timestamptz AS t;
CREATE FUNCTION pg_temp.at(m integer) RETURNS timestamptz LANGUAGE sql AS
  $$ SELECT t + make_interval(mins => m) FROM t0 $$;

-- a project without a session
SELECT throws_ok($$SELECT ps_health.start_spawn('nosuch', 't1', 'research')$$, 'P0002',
  'unknown project "nosuch": no session registered', 'a spawn of a project without a session is refused');
SELECT throws_ok($$SELECT ps_health.mute_project('nosuch', now() + interval '30 minutes')$$, 'P0002',
  'unknown project "nosuch": no session registered', 'so is a mute');
SELECT is((SELECT count(*)::int FROM active_spawns) + (SELECT count(*)::int FROM mutes), 0, 'and nothing was written');
SELECT lives_ok($$SELECT ps_health.mute_project('later', now() + interval '30 minutes', 'ahead', true)$$,
  'a mute ahead of the first session, when asked for');
SELECT is((SELECT reason FROM mutes WHERE project = 'later'), 'ahead', 'is recorded');

-- forget_project
SELECT register_session('f', 'cli', '%1', 'hF', NULL, NULL, pg_temp.at(0));
SELECT start_spawn('f', 's1', 'research', NULL, NULL, NULL, 'hF', pg_temp.at(0));
SELECT report_context('f', 90, NULL, NULL, pg_temp.at(1));
SELECT set_setting('stall_after', '20 minutes', 'f');
SELECT mute_project('f', pg_temp.at(600), NULL, p_now => pg_temp.at(2));
SELECT register_session('g', 'cli', '%2', 'hF', NULL, NULL, pg_temp.at(0));
CREATE TEMP TABLE audit AS SELECT count(*) AS n FROM health_checks WHERE project = 'f';
SELECT is(forget_project('f'), '{"project": "f", "session": 1, "spawns": 1, "open_problems": 2, "queued_prompts": 1,
  "mute": 1, "settings": 1}'::jsonb, 'forget_project says what it removed');
SELECT is((SELECT count(*)::int FROM ps_sessions WHERE project = 'f') + (SELECT count(*)::int FROM active_spawns WHERE project = 'f')
          + (SELECT count(*)::int FROM check_state WHERE project = 'f') + (SELECT count(*)::int FROM mutes WHERE project = 'f')
          + (SELECT count(*)::int FROM settings WHERE project = 'f')
          + (SELECT count(*)::int FROM prompts WHERE project = 'f' AND state IN ('waiting', 'pending', 'claimed')), 0,
  'no live state of the project is left');
SELECT is((SELECT count(*) FROM health_checks WHERE project = 'f'), (SELECT n FROM audit), 'its audit stays');
SELECT is((SELECT count(*)::int FROM ps_sessions WHERE project = 'g'), 1, 'another project is untouched');
SELECT is((SELECT count(*)::int FROM project_status(pg_temp.at(3)) WHERE project = 'f'), 0, 'status no longer lists it');
SELECT throws_ok($$SELECT ps_health.forget_project('f')$$, 'P0002', 'unknown project "f": nothing to forget',
  'forgetting it again is refused');
SELECT throws_ok($$SELECT ps_health.forget_project('')$$, '22023', 'project is required', 'an empty name is refused');

-- one reactor per host: this session takes host hR's lock
SELECT ok(reactor_start('hR', 'hR:1', pg_temp.at(0)), 'reactor_start takes the host');
SELECT is((SELECT array_agg(worker)::text FROM _live_reactors()), '{hR:1}', 'it counts as running');
SELECT is((SELECT backend_pid FROM reactors WHERE worker = 'hR:1'), pg_backend_pid(), 'on its listener connection');
INSERT INTO reactors (worker, host, last_seen) VALUES ('hR:old', 'hR', pg_temp.at(0)), ('hS:1', 'hS', pg_temp.at(0));
SELECT is((SELECT count(*)::int FROM _live_reactors()), 1, 'rows that claimed once without holding a host do not count');
SELECT is(jsonb_array_length(system_health(pg_temp.at(1)) -> 'reactors'), 1, 'nor in system_health');
SELECT ok(reactor_start('hR', 'hR:1', pg_temp.at(5)), 'the same reactor again (a reconnect) is fine');
SELECT is((SELECT count(*)::int FROM reactors WHERE host = 'hR'), 1, 'and drops the stale rows of its host');
SELECT ok(reactor_stop('hR:1'), 'a clean stop');
SELECT is((SELECT count(*)::int FROM reactors WHERE worker = 'hR:1'), 0, 'removes its row');
SELECT ok(NOT reactor_stop('hS:1'), 'a stop never removes the row of another connection''s reactor');
SELECT ok(reactor_start('hR', 'hR:1', pg_temp.at(6)), 'taken again');
SELECT ok(NOT reactor_stop('hR:1', 4194000), 'a stop naming another listener connection removes nothing');
SELECT ok(NOT reactor_stop('hR:1', pg_backend_pid()), 'nor one naming a listener connection still open');
SELECT is((SELECT array_agg(worker)::text FROM _live_reactors()), '{hR:1}', 'which still counts as running');
UPDATE reactors SET backend_pid = 4194000 WHERE worker = 'hR:1';  -- (its listener connection has ended)
SELECT ok(reactor_stop('hR:1', 4194000), 'a stop on another connection, naming the listener that ended');
SELECT is((SELECT count(*)::int FROM reactors WHERE worker = 'hR:1'), 0, 'removes its row');
SELECT throws_ok($$SELECT reactor_stop(NULL, 4194000)$$, '22023', 'worker is required', 'a stop without a worker');
SELECT throws_ok($$SELECT reactor_stop(E'a\nb')$$, '22023', NULL, 'a control character in a worker');

-- prompt_reason
SELECT register_session('p', 'cli', '%3', 'hP', NULL, NULL, pg_temp.at(0));
SELECT report_context('p', 75, NULL, NULL, pg_temp.at(1));
CREATE TEMP TABLE p1 AS SELECT max(id) AS id FROM prompts WHERE project = 'p';
SELECT is(prompt_reason((SELECT id FROM p1), pg_temp.at(1)), 'waiting for a reactor on host hP (none running)',
  'a ready prompt waits for a reactor of its host');
SELECT claim_prompts('hP', 'hP:9', 10, 60, pg_temp.at(2));
SELECT is(prompt_reason((SELECT id FROM p1), pg_temp.at(2)),
  'claimed by hP:9: typed once the pane is idle (lease until 12:03:00 UTC)', 'a claimed one is being typed');
SELECT complete_prompt((SELECT id FROM p1), 'hP:9', 'failed', 'pane busy', pg_temp.at(2));
SELECT is(prompt_reason((SELECT id FROM p1), pg_temp.at(2)), 'retry at 12:02:30 UTC after attempt 1: failed: pane busy',
  'a failed attempt says when it is retried');
SELECT is(prompt_reason(-1), NULL, 'an unknown prompt has no reason');
SELECT register_session('c', 'cli', '%4', 'hP', NULL, NULL, pg_temp.at(0));
SELECT set_setting('auto_cycle', 'true', 'c');
SELECT report_handoff('c', 'HANDOFF.md', pg_temp.at(1));
SELECT is(prompt_reason((SELECT id FROM prompts WHERE project = 'c' AND kind = 'resume'), pg_temp.at(1)),
  format('waiting for the reset step (prompt #%s, pending)', (SELECT id FROM prompts WHERE project = 'c' AND kind = 'reset')),
  'the resume prompt waits for the reset step');

-- doctor_checks
SELECT is((SELECT status || ': ' || detail FROM doctor_checks('hD', '{"cron": {"loaded": true, "sweep_job": {"active": true}}}',
           true, pg_temp.at(0)) WHERE name = 'sweep'),
  'ok: pg_cron sweep scheduled every minute; the first one runs within a minute', 'fresh: scheduled, not run yet is ok');
SELECT is((SELECT status FROM doctor_checks('hD', '{"cron": {"loaded": true, "sweep_job": {"active": true,
           "last_status": "failed", "last_message": "connection failed"}}}', true, pg_temp.at(0)) WHERE name = 'sweep'),
  'fail', 'a failed pg_cron run fails');
SELECT is((SELECT status || ': ' || fix FROM doctor_checks('hD', '{"cron": {"loaded": true, "sweep_job": null}}', true,
           pg_temp.at(0)) WHERE name = 'sweep'), 'fail: ps-health cron install', 'nothing scheduled: install the jobs');
SELECT run_checks(pg_temp.at(10), 'reactor');
SELECT is((SELECT status FROM doctor_checks('hD', '{}', true, pg_temp.at(11)) WHERE name = 'sweep'), 'ok',
  'the reactor''s fallback sweep counts');
SELECT is((SELECT status FROM doctor_checks('hD', '{}', true, pg_temp.at(14)) WHERE name = 'sweep'), 'fail',
  'no sweep for more than 3 minutes fails');
SELECT set_setting('sweep_late_after', '10 minutes');
SELECT is((SELECT status FROM doctor_checks('hD', '{}', true, pg_temp.at(14)) WHERE name = 'sweep'), 'ok',
  'how late a sweep may be is the sweep_late_after setting');
SELECT is((system_health(pg_temp.at(14)))->>'sweep_note', 'the reactor sweeps (--run-checks-every)',
  'and the status line follows it');
SELECT set_setting('sweep_late_after', NULL);
SELECT is((SELECT string_agg(status, ' ' ORDER BY name) FROM doctor_checks('hD', '{"tmux": {"reachable": false},
           "panes": [{"project": "a", "target": "%1", "state": "missing"}]}', false, pg_temp.at(0))
            WHERE name IN ('panes', 'reactor', 'tmux')),
  'fail fail fail', 'no reactor, no tmux server, a pane missing');
SELECT is((SELECT count(*)::int FROM doctor_checks('hD', '{}', true, pg_temp.at(0)) WHERE name = 'logins'), 0,
  'no agent login: no logins line');
CREATE ROLE doctor_agent LOGIN IN ROLE ps_health_agent;
SELECT grant_agent('doctor_agent', 'a');
SELECT is((SELECT status || ': ' || detail FROM doctor_checks('hD', '{}', true, pg_temp.at(0)) WHERE name = 'logins'),
  'warn: agent login(s) bound to no host, so each may name a pane on any host: doctor_agent',
  'an agent login bound to no host is named');
SET SESSION AUTHORIZATION doctor_agent;  -- (its session on another host, registered before it was bound)
SELECT register_session('a', 'cli', '%9', 'hOther');
RESET SESSION AUTHORIZATION;
SELECT grant_agent_host('doctor_agent', 'hD');
SELECT is((SELECT status || ': ' || detail FROM doctor_checks('hD', '{}', true, pg_temp.at(0)) WHERE name = 'logins'),
  'warn: live session(s) an agent login registered on a host it is not bound to: a (pane %9 on hOther, by doctor_agent)',
  'bound after it registered on another host: that session is named');
SELECT end_session('a');
SELECT is((SELECT status FROM doctor_checks('hD', '{}', true, pg_temp.at(0)) WHERE name = 'logins'), 'ok',
  'bound, with no session elsewhere: ok');
SELECT is((SELECT string_agg(status, ' ' ORDER BY name) FROM doctor_checks('hD', '{"tmux": {"reachable": false},
           "panes": []}', true, pg_temp.at(0)) WHERE name IN ('panes', 'reactor', 'tmux')),
  'ok ok warn', 'before the reactor starts, with no panes yet: only a warning about tmux');

SELECT * FROM finish();
ROLLBACK;
