-- Settings have a kind and a range, keep their order across keys wherever a change reaches, a
-- stored value that is not allowed fails only the prompts that need it, and secrets stay the owner's.
BEGIN;
SELECT plan(67);
SET LOCAL search_path = ps_health, public;

-- every default is allowed, and the defaults keep the rules
SELECT is((SELECT count(*)::int FROM setting_definitions WHERE _setting_error(key, default_value) IS NOT NULL), 0,
  'every default is inside its range');
SELECT is((SELECT count(*)::int FROM setting_definitions WHERE kind IN ('interval', 'numeric', 'integer')
            AND (min_value IS NULL OR max_value IS NULL)), 0, 'every number and interval has a range');
SELECT is((SELECT count(*)::int FROM setting_rules r
            WHERE _setting_conflict(r.lower_key, NULL, NULL) IS NOT NULL), 0, 'the defaults keep every rule');
SELECT results_eq($$SELECT key::text FROM setting_definitions WHERE secret ORDER BY key$$,
  $$VALUES ('command_channel'), ('escalation_command')$$, 'the commands are secrets');

-- values out of range or not of the kind: refused with the key, the value and the range
SELECT throws_ok($$SELECT set_setting('submit_delay', '1000000 years', 'poison')$$, '22023',
  'setting submit_delay: "1000000 years" is not allowed (interval from 0 seconds to 10 seconds)',
  'a submit delay of a million years is refused');
SELECT throws_ok($$SELECT set_setting('idle_seconds', 'NaN')$$, '22023',
  'setting idle_seconds: "NaN" is not allowed (number from 0 to 3600)', 'NaN is refused');
SELECT throws_ok($$SELECT set_setting('idle_seconds', '1e400')$$, '22023',
  'setting idle_seconds: "1e400" is not allowed (number from 0 to 3600)', '1e400 is refused');
SELECT throws_ok($$SELECT set_setting('idle_seconds', 'Infinity')$$, '22023', NULL, 'Infinity is refused');
SELECT throws_ok($$SELECT set_setting('stall_after', 'soon')$$, '22023',
  'setting stall_after: "soon" is not allowed (interval from 1 second to 7 days)', 'not an interval');
SELECT throws_ok($$SELECT set_setting('stall_after', '-5 minutes')$$, '22023', NULL, 'a negative interval');
SELECT throws_ok($$SELECT set_setting('prompt_max_attempts', '0')$$, '22023',
  'setting prompt_max_attempts: "0" is not allowed (whole number from 1 to 100)', 'zero attempts');
SELECT throws_ok($$SELECT set_setting('prompt_max_attempts', '99999999999')$$, '22023', NULL, 'attempts beyond an integer');
SELECT throws_ok($$SELECT set_setting('context_warning', '70')$$, '22023',
  'setting context_warning: "70" is not allowed (number from 0.05 to 0.99)', 'thresholds are fractions');
SELECT throws_ok($$SELECT set_setting('auto_cycle', 'sometimes')$$, '22023', NULL, 'not a boolean');
SELECT throws_ok($$SELECT set_setting('handoff_folder', 'relative/dir')$$, '22023', NULL, 'a folder must be absolute');
SELECT throws_ok($$SELECT set_setting('handoff_pattern', '../*.md')$$, '22023', NULL, 'a pattern stays in the folder');
SELECT throws_ok(format('SELECT set_setting(%L, %L)', 'reset_command', E'/clear\x1b[2J'), '22023', NULL,
  'no control characters in typed text');
SELECT throws_ok($$SELECT set_setting('command_channel', '["curl", "-H", "Authorization: Bearer s3cret"')$$, '22023',
  'setting command_channel: its value is not allowed (command: JSON array of at most 64 strings, [] for none)',
  'a broken command is refused without echoing the secret');
-- an interval has no negative part, and is in range both compared (a month: 30 days) and counted in
-- seconds as the reactor counts it (a year: 365.25 days)
SELECT throws_ok($$SELECT set_setting('submit_delay', '1 year -360 days')$$, '22023',
  'setting submit_delay: "1 year -360 days" is not allowed (no part of it may be negative; interval from 0 seconds to 10 seconds)',
  'a submit delay that compares as 0 s but is 5.25 days in seconds is refused');
SELECT throws_ok($$SELECT set_setting('abandon_after', '1 mon -29 days', 'm')$$, '22023',
  'setting abandon_after: "1 mon -29 days" is not allowed (no part of it may be negative; interval from 1 second to 30 days)',
  'a month less 29 days (negative in March) is refused');
SELECT throws_ok($$SELECT set_setting('escalate_after', '1 day -1 second')$$, '22023',
  'setting escalate_after: "1 day -1 second" is not allowed (no part of it may be negative; interval from 0 seconds to 7 days)',
  'a negative time part');
SELECT throws_ok($$SELECT set_setting('command_timeout', '-1 mon 30 days 5 seconds')$$, '22023',
  'setting command_timeout: "-1 mon 30 days 5 seconds" is not allowed (no part of it may be negative; interval from 1 second to 1 hour)',
  'a negative month part');
SELECT throws_ok($$SELECT set_setting('retention_ok', '10 years')$$, '22023',
  'setting retention_ok: "10 years" is not allowed (interval from 1 hour to 3650 days)',
  'ten years are 3600 days compared but 3652.5 days in seconds: refused');
SELECT is(array_agg(_setting_error(k, v)) FILTER (WHERE _setting_error(k, v) IS NOT NULL), NULL,
  'plain intervals, a year of retention and -0 stay allowed')
  FROM (VALUES ('stall_after', '90 seconds'), ('stall_after', '2 hours'), ('abandon_after', '30 days'),
               ('stall_after', '1 day 2 hours'), ('retention_ok', '1 year'), ('submit_delay', '-0'),
               ('submit_delay', '-0 seconds')) x (k, v);
INSERT INTO settings (key, project, value) VALUES ('abandon_after', 'm', '1 mon -29 days')
  ON CONFLICT (key, project) DO UPDATE SET value = EXCLUDED.value;
SELECT is(setting('abandon_after', 'm'), '60 minutes', 'a negative part written around set_setting is not used');
DELETE FROM settings;

-- text, and the strings of a JSON value, hold no invisible or format characters, as other names
SELECT throws_ok(format('SELECT set_setting(%L, %L)', k, v), '22023',
  format('setting %s: "%s" must not contain control or invisible formatting characters', k, shown), d)
  FROM (VALUES ('escalation_host', E'host-a\u200b', 'host-a?', 'no zero-width space in a host'),
               ('reset_command', E'/clear\u202e', '/clear?', 'no bidi override in typed text'),
               ('handoff_folder', E'/srv/shop\u2028/handoff', '/srv/shop?/handoff', 'no line separator in a folder'),
               ('handoff_pattern', E'*\u200b.md', '*?.md', 'no zero-width space in a pattern'),
               ('agent_programs', E'["claude\u200b"]', '["claude?"]', 'no zero-width space in a program name'))
       x (k, v, shown, d);
SELECT throws_ok($$SELECT set_setting('agent_programs', '["claude\u200b"]')$$, '22023',
  'setting agent_programs: "["claude\u200b"]" must not contain control or invisible formatting characters',
  'nor one spelled as a JSON escape');
SELECT throws_ok($$SELECT set_setting('command_channel', '["notify-send", "ps\u202e-health"]')$$, '22023',
  'setting command_channel: its value must not contain control or invisible formatting characters',
  'nor in a command''s words, and a secret is not echoed');
SELECT is((SELECT count(*)::int FROM settings), 0, 'nothing refused was written');

-- cross-checks, for the project changed and, for a global change, every project it reaches
SELECT throws_ok($$SELECT set_setting('context_critical', '0.5')$$, '22023',
  'setting context_critical: "0.5" must be greater than context_warning, which is 0.70 globally',
  'critical below warning is refused');
SELECT throws_ok($$SELECT set_setting('abandon_after', '10 minutes', 'p1')$$, '22023',
  'setting abandon_after: "10 minutes" must be greater than stall_after, which is 15 minutes for project "p1"',
  'abandon before stall is refused');
SELECT throws_ok($$SELECT set_setting('reminder_max_interval', '10 minutes')$$, '22023', NULL,
  'a reminder cap below the first reminder is refused');
SELECT throws_ok($$SELECT set_setting('max_defer', '10 seconds')$$, '22023', NULL,
  'a warning may not wait less than a critical prompt');
SELECT lives_ok($$SELECT set_setting('context_warning', '0.6', 'p1')$$, 'a project override');
SELECT lives_ok($$SELECT set_setting('context_critical', '0.65', 'p1')$$, 'above the project''s own warning');
SELECT throws_ok($$SELECT set_setting('context_critical', '0.68')$$, '22023',
  'setting context_critical: "0.68" must be greater than context_warning, which is 0.70 globally',
  'checked against the global warning');
SELECT lives_ok($$SELECT set_setting('context_critical', '0.9', 'p2')$$, 'another project''s override');
SELECT lives_ok($$SELECT set_setting('context_critical', '0.95')$$, 'a global change no project contradicts');
SELECT throws_ok($$SELECT set_setting('context_warning', '0.92')$$, '22023',
  'setting context_warning: "0.92" must be less than context_critical, which is 0.9 for project "p2"',
  'a global change that contradicts a project override is refused, naming the project');
SELECT throws_ok($$SELECT set_setting('context_warning', NULL, 'p1')$$, '22023',
  'setting context_warning: the value after the reset (0.70) must be less than context_critical, which is 0.65 for project "p1"',
  'a reset that would break a rule is refused too');
SELECT results_eq($$SELECT key::text, project::text, value FROM settings ORDER BY key, project$$,
  $$VALUES ('context_critical', '*', '0.95'), ('context_critical', 'p1', '0.65'), ('context_critical', 'p2', '0.9'),
           ('context_warning', 'p1', '0.6')$$,
  'refused changes wrote nothing');

-- a stored value that is not allowed (written around set_setting) is skipped by the engine ...
INSERT INTO settings (key, project, value) VALUES ('stall_after', 'p1', 'soon'), ('stall_after', '*', '1000000 years'),
  ('submit_delay', 'poison', '1000000 years');
SELECT is(setting('stall_after', 'p1'), '15 minutes', 'an invalid override is skipped: the default holds');
SELECT lives_ok($$SELECT run_checks()$$, 'the sweep runs over it');
SELECT matches((SELECT problem FROM list_settings('p1') WHERE key = 'stall_after'),
  'stored for project "p1": "soon" is not allowed .* so it is ignored; stored globally: "1000000 years" is not allowed',
  'settings show names what is ignored');
DELETE FROM settings WHERE key = 'stall_after';
ALTER TABLE settings DISABLE TRIGGER trg_settings_write;
INSERT INTO settings (key, project, value) VALUES ('stall_after', 'p3', '20 minutes');
SELECT is(setting('stall_after', 'p3'), '15 minutes', 'a value written without its check is not used');
ALTER TABLE settings ENABLE TRIGGER trg_settings_write;
UPDATE settings SET value = value WHERE project = 'p3';
SELECT is(setting('stall_after', 'p3'), '20 minutes', 'once checked, it is');
DELETE FROM settings WHERE key = 'stall_after';

-- ... and fails only the prompts that need it, with the reason recorded
SELECT register_session(p, 'cli', '%' || n, 'h') FROM unnest(ARRAY['poison', 'fine'], ARRAY[1, 2]) u(p, n);
SELECT start_spawn(p, 't', 'impl') FROM unnest(ARRAY['poison', 'fine']) p;
SELECT finish_spawn(p, 't', 1, 'boom') FROM unnest(ARRAY['poison', 'fine']) p;
SELECT results_eq($$SELECT project::text, submit_delay_ms FROM claim_prompts('h', 'w')$$,
  $$VALUES ('fine', 500)$$, 'the claim serves the other project');
SELECT results_eq($$SELECT state::text, detail FROM prompts WHERE project = 'poison'$$,
  $$VALUES ('failed', 'setting submit_delay stored for project "poison": "1000000 years" is not allowed (interval from 0 seconds to 10 seconds); fix it with set_setting (ps-health settings set)')$$,
  'the poisoned project''s prompt failed with the reason');
SELECT matches((SELECT action_taken FROM health_checks WHERE project = 'poison'), '^prompt #[0-9]+ failed: setting submit_delay',
  'and its check says so');

-- secrets: the owner reads them; a reader or an agent sees that they are set
SELECT set_setting('command_channel', '["curl", "-H", "Authorization: Bearer s3cret", "https://example.com"]', 'p1');
SELECT set_setting('escalation_command', '["notify-send", "ps-health"]');
SELECT is(setting('command_channel', 'p1'), '["curl", "-H", "Authorization: Bearer s3cret", "https://example.com"]',
  'the owner reads a secret');
CREATE ROLE tap_reader LOGIN IN ROLE ps_health_reader;
CREATE ROLE tap_agent LOGIN IN ROLE ps_health_agent;
SELECT grant_agent('tap_agent', 'p1');

SET SESSION AUTHORIZATION tap_reader;
SELECT is(setting('command_channel', 'p1'), '(set)', 'reader: setting() masks a secret');
SELECT is(setting('command_channel', 'p2'), '[]', 'reader: an unset secret shows its default');
SELECT is((SELECT value FROM list_settings('p1') WHERE key = 'command_channel'), '(set)', 'reader: list_settings masks it');
SELECT is((SELECT value FROM setting_overrides WHERE key = 'escalation_command'), '(set)', 'reader: the view masks it');
SELECT is((SELECT value FROM setting_overrides WHERE key = 'context_critical' AND project = 'p2'), '0.9',
  'reader: the view shows the rest');
SELECT throws_ok($$SELECT * FROM ps_health.settings$$, '42501', NULL, 'reader: the table itself is not readable');
RESET SESSION AUTHORIZATION;

SET SESSION AUTHORIZATION tap_agent;
SELECT is(setting('command_channel', 'p1'), '(set)', 'agent: its own project''s secret is masked');
SELECT is(setting('stall_after'), '15 minutes', 'agent: reads global settings');
SELECT throws_ok($$SELECT ps_health.setting('context_critical', 'p2')$$, '42501',
  'login "tap_agent" may not see project "p2"', 'agent: not another project''s settings');
SELECT throws_ok($$SELECT * FROM ps_health.list_settings('p2')$$, '42501', NULL, 'agent: nor their list');
RESET SESSION AUTHORIZATION;

-- p_ahead false (the CLI without --ahead): a project no session has named is refused, as mute_project does
SELECT throws_ok($$SELECT ps_health.set_setting('stall_after', '20 minutes', 'alpah', false)$$, 'P0002',
  'unknown project "alpah": no session registered', 'a typo''d project is refused');
SELECT is((SELECT count(*)::int FROM ps_health.settings WHERE project = 'alpah'), 0, 'and nothing is written');
SELECT is(ps_health.set_setting('stall_after', '20 minutes', 'alpah'), '20 minutes', 'SQL clients set ahead by default');

SELECT * FROM finish();
ROLLBACK;
