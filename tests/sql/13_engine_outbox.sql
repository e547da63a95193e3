-- claim_prompts / complete_prompt: leases, lease expiry, attempts capped, expiry of recovered
-- problems, release on shutdown, and clear refusals.
BEGIN;
SELECT plan(57);
SET LOCAL search_path = ps_health, public;
SELECT set_setting('context_check_interval', '1 day');
SELECT set_setting('prompt_max_attempts', '2');

CREATE TEMP TABLE t0 AS SELECT '2026-01-01 12:00+00'::timestamptz AS t;
CREATE FUNCTION pg_temp.at(s integer) RETURNS timestamptz LANGUAGE sql AS
  $$ SELECT t + make_interval(secs => s) FROM t0 $$;

SELECT register_session('p', 'cli', '%20', 'hA', NULL, NULL, pg_temp.at(0));
SELECT start_spawn('p', 'k', 'research', NULL, NULL, NULL, 'hA', pg_temp.at(0));
SELECT finish_spawn('p', 'k', 1, 'err', pg_temp.at(0));
CREATE TEMP TABLE pid AS SELECT id FROM ps_health.prompts WHERE project = 'p';

SELECT is((SELECT count(*)::int FROM claim_prompts('hB', 'wB', 10, 60, pg_temp.at(1))), 0, 'another host gets nothing');
SELECT is((SELECT attempts FROM claim_prompts('hA', 'w1', 10, 60, pg_temp.at(1))), 1, 'w1 claims it (attempt 1)');
SELECT is((SELECT count(*)::int FROM claim_prompts('hA', 'w2', 10, 60, pg_temp.at(30))), 0, 'leased: w2 gets nothing');
SELECT is((SELECT attempts FROM claim_prompts('hA', 'w2', 10, 60, pg_temp.at(62))), 2, 'lease expired: w2 claims it (attempt 2)');
SELECT throws_ok(format('SELECT ps_health.complete_prompt(%s, %L, %L)', (SELECT id FROM pid), 'w1', 'delivered'), '55000', NULL,
  'the old holder cannot complete it');
SELECT throws_ok(format('SELECT ps_health.complete_prompt(%s, %L, %L)', (SELECT id FROM pid), 'w2', 'sent'), '22023',
  'outcome must be delivered, target_missing, failed, deferred or target_changed, got "sent"', 'an unknown outcome is refused');
SELECT is(complete_prompt((SELECT id FROM pid), 'w2', 'target_missing', 'pane %20 not found', pg_temp.at(63)), 'failed',
  'out of attempts: failed');
SELECT matches((SELECT action_taken FROM health_checks WHERE project = 'p'), 'prompt #[0-9]+ failed after 2 attempts: target_missing',
  'the check says so');

-- a retry goes back to pending after the delay
SELECT set_setting('prompt_max_attempts', '5');
SELECT start_spawn('p', 'k2', 'research', NULL, NULL, NULL, 'hA', pg_temp.at(100));
SELECT finish_spawn('p', 'k2', 1, 'err', pg_temp.at(100));
SELECT is((SELECT count(*)::int FROM claim_prompts('hA', 'w1', 10, 60, pg_temp.at(101))), 1, 'claimed');
SELECT is(complete_prompt((SELECT max(id) FROM prompts), 'w1', 'failed', 'text not visible', pg_temp.at(102)), 'pending',
  'a failed attempt goes back to pending');
SELECT is((SELECT count(*)::int FROM claim_prompts('hA', 'w1', 10, 60, pg_temp.at(120))), 0, 'not before the retry delay');
SELECT is((SELECT count(*)::int FROM claim_prompts('hA', 'w1', 10, 60, pg_temp.at(133))), 1, 'claimable after it');
SELECT is(release_prompts('w1'), 1, 'shutdown releases the claim');
SELECT is((SELECT state || '/' || attempts FROM prompts WHERE id = (SELECT max(id) FROM prompts)), 'pending/1',
  'released undelivered, the attempt not counted');

-- a prompt whose problem recovered before delivery expires
SELECT start_spawn('p', 'k3', 'research', NULL, NULL, NULL, 'hA', pg_temp.at(200));
UPDATE prompts SET state = 'delivered', completed_at = pg_temp.at(200) WHERE state = 'pending';
SELECT run_checks(pg_temp.at(200 + 15 * 60));
SELECT is((SELECT state::text FROM prompts WHERE text LIKE '%spawn k3%'), 'pending', 'k3 stalled: prompt pending');
SELECT report_spawn_output('p', 'k3', NULL, pg_temp.at(200 + 16 * 60));
SELECT is((SELECT count(*)::int FROM claim_prompts('hA', 'w1', 10, 60, pg_temp.at(200 + 17 * 60))), 0, 'k3 recovered: nothing claimed');
SELECT is((SELECT state::text FROM prompts WHERE text LIKE '%spawn k3%'), 'expired', 'the prompt expired');

-- an expired prompt leaves its room to the next one: a claim of one gets the live prompt behind it
SELECT register_session('q', 'cli', '%21', 'hA', NULL, NULL, pg_temp.at(300));
SELECT start_spawn('p', 'k5', 'research', NULL, NULL, NULL, 'hA', pg_temp.at(300));
SELECT start_spawn('q', 'k6', 'research', NULL, NULL, NULL, 'hA', pg_temp.at(301));
SELECT run_checks(pg_temp.at(301 + 15 * 60));
SELECT report_spawn_output('p', 'k5', NULL, pg_temp.at(301 + 16 * 60));
SELECT results_eq($$SELECT project::text FROM claim_prompts('hA', 'w1', 1, 60, pg_temp.at(301 + 17 * 60))$$,
  $$VALUES ('q')$$, 'the recovered prompt expired, the live one behind it claimed in the same call');
SELECT is((SELECT state::text FROM prompts WHERE text LIKE '%spawn k5%'), 'expired', 'k5''s prompt expired');

SELECT throws_ok($$SELECT * FROM ps_health.claim_prompts('hA', 'w1', 0)$$, '22023', 'limit must be between 1 and 1000, got 0',
  'a bad limit is refused');
-- the arguments of a claim are checked however it is called (the reactor's own call skips the statements)
SELECT throws_ok($$SELECT * FROM ps_health.claim_prompts(NULL, 'w1')$$, '22023', 'host is required', 'a claim without a host');
SELECT throws_ok($$SELECT * FROM ps_health.claim_prompts('hA', '')$$, '22023', 'worker is required', 'a claim without a worker');
SELECT throws_ok(format('SELECT * FROM ps_health.claim_prompts(%L, ''w1'')', repeat('h', 256)), '22023', NULL,
  'a host of 256 characters');
SELECT throws_ok($$SELECT * FROM ps_health.claim_prompts('hA', E'w\u200b1')$$, '22023', NULL, 'an invisible character in a worker');
SELECT throws_ok($$SELECT * FROM ps_health.claim_prompts('hA', 'w1', 10, 60, NULL)$$, '22023', NULL, 'a claim without a time');
SELECT throws_ok($$SELECT * FROM ps_health.claim_prompts(NULL, 'w1', 10, 60, NULL)$$, '22023', 'host is required',
  'the host is judged before the time');
SELECT throws_ok($$SELECT * FROM ps_health.claim_prompts('hA', 'w1', 10, 0)$$, '22023',
  'lease_seconds must be between 1 and 86400, got 0', 'a bad lease');
SELECT throws_ok($$SELECT ps_health.respond(999999, 'done')$$, 'P0002', 'unknown check id 999999', 'an unknown check id is refused');

-- respond acknowledges and stops reminders
SELECT start_spawn('p', 'k4', 'research', NULL, NULL, NULL, 'hA', pg_temp.at(0));
SELECT finish_spawn('p', 'k4', 1, 'err', pg_temp.at(3000));
SELECT respond((SELECT max(id) FROM health_checks WHERE subject = 'k4'), 'restarted it as k5', pg_temp.at(3001));
SELECT is((SELECT ps_response FROM health_checks WHERE subject = 'k4'), 'restarted it as k5', 'the answer is stored');
UPDATE prompts SET state = 'delivered' WHERE state = 'pending';
SELECT run_checks(pg_temp.at(3000 + 4 * 3600));
SELECT is((SELECT count(*) FROM health_checks WHERE subject = 'k4'), 1::bigint, 'an answered check sends no reminder');

-- complete_prompts: a batch of outcomes in one call, all or nothing
UPDATE prompts SET state = 'delivered' WHERE state IN ('pending', 'claimed');
SELECT set_setting('prompt_max_attempts', '2');
SELECT register_session('b' || i, 'cli', '%3' || i, 'hA', NULL, NULL, pg_temp.at(4000)) FROM generate_series(1, 3) i;
SELECT start_spawn('b' || i, 'k', 'research', NULL, NULL, NULL, 'hA', pg_temp.at(4000)) FROM generate_series(1, 3) i;
SELECT finish_spawn('b' || i, 'k', 1, 'err', pg_temp.at(4000)) FROM generate_series(1, 3) i;
CREATE TEMP TABLE batch AS SELECT id, project FROM claim_prompts('hA', 'w9', 10, 60, pg_temp.at(4001));
SELECT is((SELECT count(*)::int FROM batch), 3, 'three prompts claimed');
CREATE TEMP TABLE before_refusal AS SELECT id, state, attempts, detail FROM prompts;
SELECT throws_ok(format('SELECT * FROM ps_health.complete_prompts(%L, %L, %L)', 'w9',
                        (SELECT array_agg(id ORDER BY id) FROM batch) || 999999::bigint, ARRAY['delivered', 'delivered', 'delivered', 'delivered']),
  'P0002', 'unknown prompt 999999', 'an unknown prompt refuses the batch');
SELECT throws_ok(format('SELECT * FROM ps_health.complete_prompts(%L, %L, %L)', 'w9',
                        (SELECT array_agg(id ORDER BY id) FROM batch), ARRAY['delivered', 'delivered']),
  '22023', 'ids, outcomes and details must be arrays of one length, got 3, 2 and NULL', 'arrays of different lengths are refused');
SELECT throws_ok(format('SELECT * FROM ps_health.complete_prompts(%L, %L, %L)', 'w9',
                        ARRAY[(SELECT min(id) FROM batch), (SELECT min(id) FROM batch)], ARRAY['delivered', 'failed']),
  '22023', format('prompt %s is given more than one outcome', (SELECT min(id) FROM batch)), 'two outcomes for one prompt are refused');
SELECT throws_ok(format('SELECT * FROM ps_health.complete_prompts(%L, %L, %L)', 'w9',
                        (SELECT array_agg(id ORDER BY id) FROM batch), ARRAY['delivered', 'sent', 'delivered']),
  '22023', 'outcome must be delivered, target_missing, failed, deferred or target_changed, got "sent"', 'a bad outcome refuses the batch');
SELECT throws_ok(format('SELECT * FROM ps_health.complete_prompts(%L, %L, %L)', 'w8',
                        (SELECT array_agg(id ORDER BY id) FROM batch), ARRAY['delivered', 'delivered', 'delivered']),
  '55000', NULL, 'another worker cannot complete them');
SELECT is((SELECT count(*)::int FROM prompts p JOIN before_refusal b USING (id)
            WHERE (p.state, p.attempts, p.detail) IS NOT DISTINCT FROM (b.state, b.attempts, b.detail)),
          (SELECT count(*)::int FROM before_refusal), 'the refused calls changed nothing');
SELECT results_eq(format('SELECT id, state::text FROM ps_health.complete_prompts(%L, %L, %L, %L, %L)', 'w9',
                         (SELECT array_agg(id ORDER BY id DESC) FROM batch), ARRAY['delivered', 'failed', 'target_missing'],
                         ARRAY['ok', 'text not visible', NULL], pg_temp.at(4002)),
  format('VALUES (%s::bigint, %L), (%s, %L), (%s, %L)', (SELECT max(id) FROM batch), 'delivered',
         (SELECT id FROM batch ORDER BY id OFFSET 1 LIMIT 1), 'pending', (SELECT min(id) FROM batch), 'pending'),
  'each outcome recorded, in the order given: delivered, or back to pending for a retry');
SELECT matches((SELECT action_taken FROM health_checks c JOIN prompt_items i ON i.check_id = c.id
                 WHERE i.prompt_id = (SELECT max(id) FROM batch)), '^prompt #[0-9]+ delivered to %3[0-9] at ',
  'the delivered prompt''s check says where it went');
SELECT is((SELECT action_taken FROM health_checks c JOIN prompt_items i ON i.check_id = c.id
            WHERE i.prompt_id = (SELECT min(id) FROM batch)), format('prompt #%s attempt 1: target_missing; will retry', (SELECT min(id) FROM batch)),
  'a retried prompt''s check says it will retry');
SELECT is((SELECT not_before FROM prompts WHERE id = (SELECT min(id) FROM batch)), pg_temp.at(4002 + 30),
  'the retry waits the retry delay');
SELECT is((SELECT count(*)::int FROM claim_prompts('hA', 'w9', 10, 60, pg_temp.at(4040))), 2, 'both retries claimed again');
SELECT results_eq(format('SELECT state::text FROM ps_health.complete_prompts(%L, %L, %L)', 'w9',
                         (SELECT array_agg(id ORDER BY id) FROM batch WHERE id < (SELECT max(id) FROM batch)),
                         ARRAY['failed', 'failed']),
  $$VALUES ('failed'), ('failed')$$, 'out of attempts: failed');
SELECT is((SELECT count(*)::int FROM ps_health.complete_prompts('w9', '{}', '{}')), 0, 'an empty batch is fine');

-- claim looks only at the prompts it takes: a prompt out of attempts or made pointless is closed
-- when it comes up, and the batch is filled from the ones after it
UPDATE prompts SET state = 'delivered' WHERE state IN ('pending', 'claimed');
SELECT register_session('c' || i, 'cli', '%4' || i, 'hA', NULL, NULL, pg_temp.at(5000)) FROM generate_series(1, 4) i;
SELECT start_spawn('c' || i, 'k', 'research', NULL, NULL, NULL, 'hA', pg_temp.at(5000)) FROM generate_series(1, 4) i;
SELECT finish_spawn('c' || i, 'k', 1, 'err', pg_temp.at(5000)) FROM generate_series(1, 4) i;
UPDATE prompts SET attempts = 2 WHERE project = 'c1' AND state = 'pending';
UPDATE check_state SET status = 'ok' WHERE project = 'c2';  -- its problem recovered
SELECT results_eq($$SELECT project::text FROM claim_prompts('hA', 'w9', 2, 60, pg_temp.at(5002))$$,
  $$VALUES ('c3'), ('c4')$$, 'a batch of two skips the two closed prompts and takes the next two');
SELECT is((SELECT state::text FROM prompts WHERE project = 'c1' AND created_at = pg_temp.at(5000)), 'failed',
  'the prompt out of attempts failed');

-- a critical prompt waits for an idle pane at most critical_max_defer (the reactor gets it as its max_defer)
SELECT set_setting('max_defer', '10 minutes', 'cap'), set_setting('critical_max_defer', '45 seconds', 'cap');
SELECT register_session('cap', 'cli', '%70', 'hCap', NULL, NULL, pg_temp.at(6000));
SELECT start_spawn('cap', 'k', 'impl', NULL, NULL, NULL, NULL, pg_temp.at(6000));
SELECT finish_spawn('cap', 'k', 1, 'err', pg_temp.at(6000));
SELECT is((SELECT severity::text || ' ' || max_defer_seconds::int FROM claim_prompts('hCap', 'w1', 10, 60, pg_temp.at(6001))),
  'critical 45', 'a critical prompt''s wait is capped by critical_max_defer, not max_defer');

-- a prompt lists ten problems, critical ones first, and counts the rest; it holds at most 100 (a flood of
-- problems costs each sweep little, and the prompt stays short)
SELECT register_session('many', 'cli', '%80', 'hMany', NULL, NULL, pg_temp.at(7000));
SELECT count(start_spawn('many', 'w' || g, 'impl', NULL, NULL, NULL, NULL, pg_temp.at(7000))) FROM generate_series(1, 12) g;
SELECT run_checks(pg_temp.at(7000 + 20 * 60));
SELECT start_spawn('many', 'x', 'impl', NULL, NULL, NULL, NULL, pg_temp.at(8300));
SELECT finish_spawn('many', 'x', 1, 'err', pg_temp.at(8300));
SELECT is((SELECT count(*)::int FROM prompts WHERE project = 'many'), 1, 'the 13 problems share one prompt');
SELECT matches((SELECT text FROM prompts WHERE project = 'many'),
  '^\[ps-health #[0-9]+\] many: \(1\) spawn x \(impl\) failed with exit code 1: err Answer with: ps-health respond [0-9]+ "<what you did>" \(2\) spawn w1 \(impl\) has had no output .* \(10\) spawn w9 .* \(and 3 more problem\(s\), not listed here: ps-health status shows them counted\)$',
  'the critical problem first, ten lines, the other three counted');
SELECT count(start_spawn('many', 'f' || g, 'impl', NULL, NULL, NULL, NULL, pg_temp.at(8400))) FROM generate_series(1, 95) g;
SELECT count(finish_spawn('many', 'f' || g, 1, 'err', pg_temp.at(8400))) FROM generate_series(1, 95) g;
SELECT is((SELECT count(*)::int FROM prompt_items i JOIN prompts p ON p.id = i.prompt_id WHERE p.project = 'many'), 100,
  'a prompt holds at most 100 problems');
SELECT is((SELECT count(*)::int FROM health_checks WHERE project = 'many' AND status = 'warning'
             AND action_taken ~ '^in no prompt: it made room in prompt #[0-9]+ for critical check #[0-9]+$'), 8,
  'the eight critical ones past 100 took the places of the newest warnings, whose checks say so');
SELECT start_spawn('many', 'w13', 'impl', NULL, NULL, NULL, NULL, pg_temp.at(8500));
SELECT run_checks(pg_temp.at(8500 + 20 * 60));
SELECT matches((SELECT action_taken FROM health_checks WHERE project = 'many' AND subject = 'w13' AND status = 'warning'),
  '^in no prompt: prompt #[0-9]+ holds 100 problems of the project already$',
  'a warning past 100 is recorded, its check saying why no prompt lists it');
SELECT matches((SELECT text FROM prompts WHERE project = 'many'), '\(10\) spawn f9 .* \(and 90 more problem\(s\)',
  'critical ones first: the failed spawns, in order');

-- full of warnings, a critical problem takes the place of the newest warning (a context at the critical line
-- asks for the handoff: it must reach the pane)
SELECT register_session('full', 'cli', '%81', 'hFull', NULL, NULL, pg_temp.at(9000));
SELECT count(start_spawn('full', 's' || g, 'impl', NULL, NULL, NULL, NULL, pg_temp.at(9000))) FROM generate_series(1, 101) g;
SELECT run_checks(pg_temp.at(9000 + 20 * 60));
SELECT report_context('full', 96, NULL, NULL, pg_temp.at(10300));
SELECT matches((SELECT text FROM prompts WHERE project = 'full'),
  '^\[ps-health #[0-9]+\] full: \(1\) context window at 96% .* \(2\) spawn s1 ', 'the critical context problem is listed first');
SELECT is((SELECT count(*)::int FROM prompt_items i JOIN prompts p ON p.id = i.prompt_id WHERE p.project = 'full'), 100,
  'still 100 problems');
SELECT is((SELECT count(*)::int FROM health_checks WHERE project = 'full' AND action_taken ~ '^in no prompt: it made room in prompt #[0-9]+ for critical check #[0-9]+$'),
  1, 'the warning it replaced says so');

-- among critical problems, the PS's own context comes first: it asks for the handoff
SELECT register_session('crit', 'cli', '%82', 'hCrit', NULL, NULL, pg_temp.at(11000));
SELECT count(start_spawn('crit', 'a' || g, 'impl', NULL, NULL, NULL, NULL, pg_temp.at(11000))) FROM generate_series(1, 12) g;
SELECT count(finish_spawn('crit', 'a' || g, 1, 'err', pg_temp.at(11001))) FROM generate_series(1, 12) g;
SELECT report_context('crit', 96, NULL, NULL, pg_temp.at(11002));
SELECT matches((SELECT text FROM prompts WHERE project = 'crit'), '^\[ps-health #[0-9]+\] crit: \(1\) context window at 96% ',
  'the critical context problem is listed before twelve critical spawn problems');
SELECT * FROM finish();
ROLLBACK;
