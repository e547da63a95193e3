-- The engine's public API exists with its signatures; prompts notify through one function.
BEGIN;
SELECT plan(42);

SELECT has_table('ps_health', t, 'table ' || t) FROM unnest(ARRAY['settings', 'mutes',
  'check_state', 'sweep_runs', 'prompt_templates', 'prompts', 'prompt_items', 'reactors']) t;
SELECT has_view('ps_health', v, 'reference rows of the code: ' || v)
  FROM unnest(ARRAY['setting_definitions', 'spawn_transitions', 'role_functions']) v;
SELECT has_function('ps_health', f, 'function ' || f) FROM unnest(ARRAY['setting', 'set_setting', 'run_checks',
  'register_session', 'heartbeat_session', 'end_session', 'report_context', 'start_spawn', 'report_spawn_output',
  'report_output_mtimes', 'finish_spawn', 'set_spawn_status', 'report_session_targets', 'report_spawn_pids',
  'respond', 'report_handoff', 'mute_project', 'unmute_project', 'claim_prompts', 'complete_prompt',
  'complete_prompts', 'extend_leases', 'release_prompts', 'system_health', 'prune', 'job_sweep', 'job_prune']) f;
SELECT has_trigger('ps_health', 'prompts', 'trg_prompts_insert', 'prompts notify on insert');
SELECT has_trigger('ps_health', 'active_spawns', 'trg_active_spawns_status', 'spawn transitions are enforced');
SELECT is((SELECT count(*)::int FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'ps_health' AND p.prosrc ILIKE '%pg_notify%'), 1, 'exactly one function calls pg_notify');
SELECT is((SELECT count(*)::int FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'ps_health' AND p.prokind = 'f' AND p.proname NOT LIKE '\_%' AND p.proname NOT LIKE 'trg\_%'
              AND p.proname NOT IN ('update_updated_at_column', 'record_health_check', 'get_stalled_spawns', 'set_setting',
                                    'setting', 'get_sessions_needing_context_check', 'update_session_context', 'job_sweep',
                                    'job_prune', 'release_prompts', 'unmute_project', 'prune', 'handoff_watches',
                                    'probe_sessions', 'probe_spawns', 'grant_agent', 'revoke_agent', 'grant_agent_host',
                                    'revoke_agent_host',
                                    'grant_reactor', 'revoke_reactor', 'host_status', 'list_settings',
                                    'forget_project', 'reactor_stop', 'reset_agent_profile', 'locked_prompts')
              AND NOT EXISTS (SELECT 1 FROM unnest(p.proargnames) a WHERE a = 'p_now')), 0,
  'every clock-dependent public function takes p_now');

SELECT * FROM finish();
ROLLBACK;
