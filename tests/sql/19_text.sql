-- Text is safe wherever it is shown: names, ids, paths, hosts and targets with control or invisible
-- formatting characters are refused at any length; free prose keeps its words and loses the rest.
BEGIN;
SELECT plan(24);
SET LOCAL search_path = ps_health, public;

SELECT register_session('alpha', 'cli', '%1', 'h1');

-- refused, with the field named
SELECT throws_ok($$SELECT register_session(E'al\u202Epha')$$, '22023',
  'project must not contain control or invisible formatting characters: "al?pha"', 'a bidi override in a name');
SELECT throws_ok($$SELECT register_session('alpha', 'cli', E'%1\u200B', 'h1')$$, '22023', NULL, 'a zero-width space in a target');
SELECT throws_ok($$SELECT register_session('alpha', 'cli', '%1', E'h1\u0085')$$, '22023', NULL, 'a C1 control in a host');
SELECT throws_ok($$SELECT register_session('alpha', 'cli', '%1', 'h1', NULL, E'id\u00AD')$$, '22023', NULL, 'a soft hyphen in a session id');
SELECT throws_ok($$SELECT register_session('alpha', 'cli', '%1', 'h1', E'/tmp/t\u2028.jsonl')$$, '22023',
  'transcript_path must not contain control or invisible formatting characters: "/tmp/t?.jsonl"',
  'a line separator in a long path (4096 characters allowed)');
SELECT throws_ok($$SELECT start_spawn('alpha', 't1', 'impl', NULL, E'/tmp/out\x1b]0;x\x07.log')$$, '22023',
  NULL, 'an escape sequence in an output file (it reaches a command''s stdin)');
SELECT throws_ok($$SELECT start_spawn('alpha', E't\x7f1', 'impl')$$, '22023', NULL, 'DEL in a task id');
SELECT throws_ok($$SELECT start_spawn('alpha', 't1', E'im\u2066pl')$$, '22023', NULL, 'an isolate in a task type');
SELECT throws_ok($$SELECT report_handoff('alpha', E'/tmp/h\u202E.md')$$, '22023', NULL, 'a bidi override in a handoff file');
SELECT throws_ok($$SELECT * FROM claim_prompts(E'h1\x1b', 'w')$$, '22023', NULL, 'an escape in a host');
SELECT is((SELECT count(*)::int FROM active_spawns), 0, 'nothing refused was written');

-- stripped from prose
SELECT start_spawn('alpha', 't1', 'impl', E'first\nsecond\x1b[31m red\x1b[0m\u200B', '/tmp/t1.log');
SELECT is((SELECT description FROM active_spawns WHERE task_id = 't1'), 'first second red',
  'a description keeps its words: line breaks become spaces, escapes and zero-width characters go');
SELECT start_spawn('alpha', 't2', 'impl', E'\x1b[2J\u202E');
SELECT is((SELECT description FROM active_spawns WHERE task_id = 't2'), NULL, 'a description of nothing but controls is none');
SELECT finish_spawn('alpha', 't1', 1, E'boom\x1b]52;c;ZXZpbA==\x07 at line 3\u2028\u202Eevil');
SELECT is((SELECT error_message FROM active_spawns WHERE task_id = 't1'), 'boom at line 3 evil',
  'an error line loses a clipboard write (OSC 52) and a bidi override');
SELECT ok((SELECT text FROM prompts WHERE project = 'alpha' ORDER BY id DESC LIMIT 1) LIKE '%failed with exit code 1: boom at line 3 evil%',
  'and the prompt names the clean error');
SELECT ok((SELECT text FROM prompts WHERE project = 'alpha' ORDER BY id DESC LIMIT 1) !~ _unsafe_chars(),
  'the prompt text carries no control or formatting character');
SELECT respond((SELECT max(id) FROM health_checks), E'ok\x1b]0;TITLE\x07\x1b[2J\x1b]52;c;cm0gLXJm\x07 restarted\u202E it');
SELECT is((SELECT ps_response FROM health_checks WHERE id = (SELECT max(id) FROM health_checks)), 'ok restarted it',
  'an answer keeps its words and loses the title change, screen clear and clipboard write');
SELECT throws_ok(format('SELECT respond(%s, %L)', (SELECT max(id) FROM health_checks), E'\x1b[2J\x07'), '22023',
  'text is required', 'an answer of nothing but controls is refused');
SELECT mute_project('alpha', now() + interval '1 hour', E'deploy\x1b[5m now\u200F');
SELECT is((SELECT reason FROM mutes WHERE project = 'alpha'), 'deploy now', 'a mute reason is cleaned');
SELECT unmute_project('alpha');
SELECT start_spawn('alpha', 't3', 'impl');
SELECT finish_spawn('alpha', 't3', 2, 'fail');
SELECT count(*) FROM claim_prompts('h1', 'w', 10, 60);
SELECT results_eq(format('SELECT state::text FROM complete_prompts(%L, ARRAY[%s::bigint], ARRAY[%L], ARRAY[%L])', 'w',
  (SELECT max(id) FROM prompts WHERE state = 'claimed'), 'failed', E'tmux said \x1b[31mno\x1b[0m\n'), $$VALUES ('pending')$$,
  'a reactor''s detail line is accepted');
SELECT is((SELECT detail FROM prompts WHERE id = (SELECT max(id) FROM prompts WHERE outcome = 'failed')), 'tmux said no',
  'and stored clean');
SELECT is(_clean_text(E'a\tb\r\nc\u000Bd'), 'a b c d', '_clean_text: tabs and line breaks become one space');
SELECT is(_clean_text(E'caf\u00E9 \u65E5\u672C \U0001F642'), E'caf\u00E9 \u65E5\u672C \U0001F642', '_clean_text: other text is kept');
SELECT is(_check_text('project', E'caf\u00E9-\u65E5\u672C'), E'caf\u00E9-\u65E5\u672C', '_check_text: letters of any script pass');

SELECT * FROM finish();
ROLLBACK;
