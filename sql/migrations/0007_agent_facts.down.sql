-- Roll back 0007: the reactor's rights to forward agent facts, and their functions.

DELETE FROM ps_health.role_functions WHERE role = 'ps_health_reactor' AND function IN (
    'register_session', 'heartbeat_session', 'start_spawn', 'record_context', 'record_spawn_end',
    'record_spawn_launch', 'record_subagent_stop', 'record_compaction', 'record_session_end', 'host_status');
REVOKE EXECUTE ON FUNCTION
    ps_health.register_session(text, text, text, text, text, text, timestamptz),
    ps_health.heartbeat_session(text, timestamptz),
    ps_health.start_spawn(text, text, text, text, text, integer, text, timestamptz)
  FROM ps_health_reactor;
DROP FUNCTION ps_health.host_status(text);
DROP FUNCTION ps_health.record_session_end(text, text, timestamptz);
DROP FUNCTION ps_health.record_compaction(text, text, timestamptz);
DROP FUNCTION ps_health.record_subagent_stop(text, text, timestamptz);
DROP FUNCTION ps_health.record_spawn_launch(text, text, text, timestamptz);
DROP FUNCTION ps_health.record_spawn_end(text, text, text, boolean, timestamptz);
DROP FUNCTION ps_health.record_context(text, text, text, text, text, numeric, integer, timestamptz);
DROP FUNCTION ps_health._agent_session(text, text, text);
