-- The seed's objects exist with their names, columns, constraints, indexes and signatures.
BEGIN;
SELECT plan(54);

SELECT has_schema('ps_health');
SELECT has_table('ps_health', t, 'table ' || t) FROM unnest(ARRAY['ps_sessions', 'active_spawns', 'health_checks']) t;

SELECT has_column('ps_health', 'ps_sessions', c, 'ps_sessions.' || c) FROM unnest(ARRAY[
  'id', 'project', 'session_type', 'session_id', 'started_at', 'last_activity', 'last_context_check',
  'context_usage', 'estimated_tokens_used', 'estimated_tokens_total', 'created_at', 'updated_at']) c;
SELECT col_default_is('ps_health', 'ps_sessions', 'estimated_tokens_total', '200000'::text, 'token budget defaults to 200000');
SELECT col_is_unique('ps_health', 'ps_sessions', ARRAY['project'], 'one session row per project');
SELECT col_not_null('ps_health', 'ps_sessions', 'project', 'project is required');

SELECT has_column('ps_health', 'active_spawns', c, 'active_spawns.' || c) FROM unnest(ARRAY[
  'id', 'project', 'task_id', 'task_type', 'description', 'spawn_time', 'last_output_change', 'output_file',
  'status', 'exit_code', 'error_message', 'completed_at', 'created_at', 'updated_at']) c;
SELECT col_is_unique('ps_health', 'active_spawns', ARRAY['project', 'task_id'], 'task ids are unique per project');

SELECT has_column('ps_health', 'health_checks', c, 'health_checks.' || c) FROM unnest(ARRAY[
  'id', 'project', 'check_time', 'check_type', 'status', 'details', 'action_taken', 'ps_response', 'created_at']) c;
SELECT col_type_is('ps_health', 'health_checks', 'details', 'jsonb', 'details is jsonb');

SELECT ok(count(*) = 11, 'the seed''s 11 indexes exist') FROM pg_indexes
 WHERE schemaname = 'ps_health' AND indexname IN (
  'idx_ps_sessions_project', 'idx_ps_sessions_context_usage', 'idx_ps_sessions_last_activity',
  'idx_active_spawns_project', 'idx_active_spawns_status', 'idx_active_spawns_project_status',
  'idx_active_spawns_spawn_time', 'idx_health_checks_project', 'idx_health_checks_check_time',
  'idx_health_checks_status', 'idx_health_checks_project_status');

SELECT has_function('ps_health', 'get_stalled_spawns', ARRAY['character varying', 'timestamp with time zone']);
SELECT has_function('ps_health', 'get_sessions_needing_context_check', ARRAY['timestamp with time zone']);
SELECT has_function('ps_health', 'update_session_context',
  ARRAY['character varying', 'numeric', 'integer', 'integer', 'timestamp with time zone']);
SELECT function_returns('ps_health', 'record_health_check',
  ARRAY['character varying', 'character varying', 'character varying', 'jsonb', 'text', 'timestamp with time zone'],
  'integer');
SELECT has_view('ps_health', 'active_monitoring_targets', 'view active_monitoring_targets');
SELECT has_view('ps_health', 'health_check_summary', 'view health_check_summary');
SELECT has_trigger('ps_health', 'ps_sessions', 'trg_ps_sessions_updated_at', 'updated_at trigger on ps_sessions');
SELECT has_trigger('ps_health', 'active_spawns', 'trg_active_spawns_updated_at', 'updated_at trigger on active_spawns');
SELECT trigger_is('ps_health', 'ps_sessions', 'trg_ps_sessions_updated_at', 'ps_health', 'update_updated_at_column');

SELECT * FROM finish();
ROLLBACK;
