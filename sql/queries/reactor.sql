-- Queries of the reactor: the listener, the outbox protocol, the host probes and the
-- optional sweep timer. Every decision stays in the ps_health functions they call.

-- name: listen
-- Subscribe to prompt wake-ups; the channel name is passed as psycopg.sql.Identifier.
LISTEN {channel}

-- name: ping
-- Liveness check of an idle listener connection.
SELECT 1 AS ok

-- name: claim
-- Take up to %(limit)s deliverable prompts of this host under a lease, with how to deliver each and
-- what must hold before typing into a pane.
SELECT id, project, target, severity, text, attempts, submit_delay_ms, idle_seconds, max_defer_seconds,
       channel, kind, command, timeout_seconds, check_id, check_type, check_status, identity,
       agent_programs::text, agent_profiles::text, marker_pattern
  FROM ps_health.claim_prompts(%(host)s, %(worker)s, %(limit)s, %(lease)s)

-- name: bind_target
-- The identity of a pane seen for the first time; returns the one its session is bound to (NULL: not its pane).
SELECT ps_health.bind_target(%(project)s, %(host)s, %(target)s, %(identity)s) AS identity

-- name: complete
-- Record the outcomes of a batch of deliveries in one round trip; returns each prompt's new state.
SELECT id, state FROM ps_health.complete_prompts(%(worker)s, %(ids)s::bigint[], %(outcomes)s::text[], %(details)s::text[])

-- name: extend
-- Keep the leases of prompts still queued or being typed by this worker.
SELECT ps_health.extend_leases(%(worker)s, %(ids)s::bigint[], %(lease)s) AS extended

-- name: release
-- Give claimed but untyped prompts back at shutdown.
SELECT ps_health.release_prompts(%(worker)s, %(ids)s::bigint[]) AS released

-- name: run_checks
-- One sweep on the reactor's timer (an advisory lock in run_checks skips concurrent sweeps).
SELECT ps_health.run_checks(now(), 'reactor') AS result

-- name: system_health
-- Age of the last sweep and the reactors seen, for the metrics endpoint.
SELECT ps_health.system_health() AS health

-- name: probe_sessions
-- Live sessions of this host: the tmux targets and transcripts to look at.
SELECT project, tmux_target, transcript_path FROM ps_health.probe_sessions(%(host)s)

-- name: probe_spawns
-- Open spawns of this host (their own host, or none and their project's session is here).
SELECT id, output_file, pid FROM ps_health.probe_spawns(%(host)s)

-- name: handoff_watches
-- Folders to look in for handoff files: sessions of this host with an open handoff request.
SELECT project, folder, pattern, requested_at FROM ps_health.handoff_watches(%(host)s)

-- name: report_handoff_file
-- A handoff file seen after the request (the database decides whether it counts).
SELECT ps_health.report_handoff_file(%(project)s, %(file)s, %(mtime)s) AS check_id

-- name: report_output_mtimes
-- One batch of output-file modification times.
SELECT ps_health.report_output_mtimes(%(ids)s::integer[], %(mtimes)s::timestamptz[]) AS changed

-- name: report_session_panes
-- One batch of tmux target facts: seen, missing or unknown, with the identity of each pane seen.
SELECT ps_health.report_session_panes(%(projects)s::text[], %(states)s::text[], %(targets)s::text[],
                                      %(identities)s::text[]) AS changed

-- name: report_spawn_pids
-- One batch of process facts: alive, dead or unknown.
SELECT ps_health.report_spawn_pids(%(ids)s::integer[], %(states)s::text[]) AS changed

-- name: report_context
-- Context usage read from a session's transcript.
SELECT ps_health.report_context(%(project)s, NULL, %(used)s, %(total)s) AS percent
