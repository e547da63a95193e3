-- Queries of the reactor: the listener, the outbox protocol, the host probes and the
-- optional sweep timer. Every decision stays in the ps_health functions they call.

-- name: listen
-- Subscribe to prompt wake-ups; the channel name is passed as psycopg.sql.Identifier.
LISTEN {channel}

-- name: reactor_start
-- Take this host's lock on the listener connection (refused while another reactor serves the host);
-- false while an older connection of this worker still holds it.
SELECT ps_health.reactor_start(%(host)s, %(worker)s) AS started

-- name: reactor_stop
-- A clean stop removes this reactor's row, named by its listener connection (on another connection).
SELECT ps_health.reactor_stop(%(worker)s, %(listener)s) AS stopped

-- name: ping
-- Liveness check of an idle listener connection.
SELECT 1 AS ok

-- name: claim
-- Take up to %(limit)s deliverable prompts of this host under a lease, with how to deliver each and
-- what must hold before typing into a pane. The agent profiles and the marker come only when their
-- version is not %(profiles_version)s (the one the reactor holds). claimed_at names the claim: its outcome says it.
SELECT id, project, target, severity, text, attempts, submit_delay_ms, idle_seconds, max_defer_seconds,
       channel, kind, command, timeout_seconds, check_id, check_type, check_status, identity,
       agent_programs::text, agent_profiles::text, marker_pattern, profiles_version, claimed_at
  FROM ps_health.claim_prompts(%(host)s, %(worker)s, %(limit)s, %(lease)s, now(), %(profiles_version)s)

-- name: bind_target
-- The identity of a pane seen for the first time; returns the one its session is bound to (NULL: not its pane).
SELECT ps_health.bind_target(%(project)s, %(host)s, %(target)s, %(identity)s) AS identity

-- name: complete
-- Record the outcomes of a batch of deliveries in one round trip; returns each prompt's new state. Each outcome
-- names its claim (%(claimed)s: the claimed_at of the claim), so one sent again never lands on a later claim.
SELECT id, state FROM ps_health.complete_prompts(%(worker)s, %(ids)s::bigint[], %(outcomes)s::text[], %(details)s::text[],
                                                 now(), %(claimed)s::timestamptz[])

-- name: locked
-- Of the prompts this worker holds, those whose project another transaction keeps locked now.
SELECT id FROM ps_health.locked_prompts(%(worker)s, %(ids)s::bigint[]) AS id

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
SELECT project, tmux_target, transcript_path, context_source, context_window FROM ps_health.probe_sessions(%(host)s)

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

-- Facts from the host spool, one query per kind (fact_<kind>); each passes the fact's own time.

-- name: fact_session_start
-- An agent session started, resumed, or opened a new conversation (/clear): register or follow it.
SELECT ps_health.record_session_start(%(project)s::text, %(host)s::text, %(pane)s::text, %(session_id)s::text,
                                      %(transcript_path)s::text, %(model)s::text, %(agent)s::text,
                                      %(now)s::timestamptz) AS id

-- name: fact_turn
-- A prompt was submitted or the agent finished its turn: the session is alive.
SELECT ps_health.heartbeat_session(%(project)s::text, %(now)s::timestamptz)

-- name: fact_spawn_start
-- The agent started a subagent.
SELECT ps_health.start_spawn(%(project)s::text, %(task_id)s::text, %(task_type)s::text, %(description)s::text,
                             NULL, NULL, %(host)s::text, %(now)s::timestamptz) AS id

-- name: fact_spawn_launch
-- The subagent went to the background with this output file.
SELECT ps_health.record_spawn_launch(%(project)s::text, %(task_id)s::text, %(output_file)s::text,
                                     %(now)s::timestamptz) AS id

-- name: fact_spawn_end
-- The subagent tool call returned: completed, failed with an error, or interrupted.
SELECT ps_health.record_spawn_end(%(project)s::text, %(task_id)s::text, %(error)s::text, %(interrupted)s::boolean,
                                  %(now)s::timestamptz) AS status

-- name: fact_subagent_stop
-- A subagent stopped (a background one completes).
SELECT ps_health.record_subagent_stop(%(project)s::text, %(agent_id)s::text, %(now)s::timestamptz) AS finished

-- name: fact_compaction
-- The agent compacted its context.
SELECT ps_health.record_compaction(%(project)s::text, %(trigger)s::text, %(now)s::timestamptz) AS check_id

-- name: fact_session_end
-- The agent session ended (or cleared its conversation).
SELECT ps_health.record_session_end(%(project)s::text, %(reason)s::text, %(now)s::timestamptz) AS changes

-- name: fact_context
-- What the agent's statusline showed: context percent and window size.
SELECT ps_health.record_context(%(pane)s::text, %(host)s::text, %(project)s::text, %(session_id)s::text,
                                %(transcript_path)s::text, %(percent)s::numeric, %(window_size)s::integer,
                                %(now)s::timestamptz) AS outcome

-- name: host_status
-- The statusline figures of every live session on this host, for the status cache.
SELECT project, tmux_target, context_percent, running, stalled, open_alerts FROM ps_health.host_status(%(host)s::text)
