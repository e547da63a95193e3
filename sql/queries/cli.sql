-- Queries of the `ps-health` CLI and its demo. Each calls the SQL API or reads a view of
-- the tables; every decision stays in the functions they call.

-- name: register_session
-- Start (or continue) the session of a project in a pane.
SELECT ps_health.register_session(%(project)s::text, %(session_type)s::text, %(target)s::text, %(host)s::text,
                                  %(transcript)s::text, %(session_id)s::text) AS id

-- name: heartbeat_session
-- The session is alive.
SELECT ps_health.heartbeat_session(%(project)s::text)

-- name: end_session
-- The session is over; returns how many orphaned-work checks it raised.
SELECT ps_health.end_session(%(project)s::text) AS changes

-- name: report_context
-- Context usage as a percentage or as tokens; returns the percentage stored.
SELECT ps_health.report_context(%(project)s::text, %(percent)s::numeric, %(tokens_used)s::integer,
                                %(tokens_total)s::integer) AS percent

-- name: start_spawn
-- Record a spawn the PS started.
SELECT ps_health.start_spawn(%(project)s::text, %(task_id)s::text, %(task_type)s::text, %(description)s::text,
                             %(output_file)s::text, %(pid)s::integer, %(host)s::text) AS id

-- name: report_spawn_output
-- The spawn produced output at a time (NULL: now).
SELECT ps_health.report_spawn_output(%(project)s::text, %(task_id)s::text, %(at)s::timestamptz)

-- name: finish_spawn
-- The spawn ended; returns completed or failed.
SELECT ps_health.finish_spawn(%(project)s::text, %(task_id)s::text, %(exit_code)s::integer, %(error)s::text) AS status

-- name: respond
-- The PS's answer to a check.
SELECT id, project, check_type, subject, status, ps_response FROM ps_health.respond(%(check_id)s::integer, %(text)s::text)

-- name: report_handoff
-- The PS wrote its handoff file.
SELECT ps_health.report_handoff(%(project)s::text, %(file)s::text) AS check_id

-- name: mute_project
-- No prompts to a project for a while; checks are still recorded. ahead: the project has no session yet.
SELECT ps_health.mute_project(%(project)s::text, now() + %(duration)s::interval, %(reason)s::text,
                              %(ahead)s::boolean) AS until

-- name: unmute_project
-- Prompts go out again; says whether a mute was lifted.
SELECT ps_health.unmute_project(%(project)s::text) AS lifted

-- name: forget_project
-- Remove a project's live state; its audit stays until retention. Returns what was removed.
SELECT ps_health.forget_project(%(project)s::text) AS removed

-- name: system_health
-- The monitor's own health, with the database clock the ages are measured on.
SELECT now() AS now, ps_health.system_health() AS system

-- name: now
-- The database clock, which ages are measured on.
SELECT now() AS now

-- name: project_status
-- One row per project for `status`.
SELECT * FROM ps_health.project_status()

-- name: checks
-- The audit trail, newest first, filtered by project, type, status and age (a type or status that
-- does not exist is refused, naming the ones that do).
SELECT * FROM ps_health.list_checks(%(project)s::text, %(check_type)s::text, %(status)s::text, %(since)s::interval,
                                    %(limit)s::integer)

-- name: prompts
-- The outbox, newest first, filtered by project and state, with what each prompt waits for.
SELECT * FROM ps_health.list_prompts(%(project)s::text, %(state)s::text, %(limit)s::integer)

-- name: settings_show
-- Every setting's effective value for a project (or globally), where it comes from, its range, and a
-- stored value that is not allowed (ignored); secrets show as (set) except to the owner.
SELECT key, value, source, default_value, kind, allowed, secret, description, problem
  FROM ps_health.list_settings(%(project)s::text)

-- name: set_setting
-- Change a setting globally or for one project (a NULL value resets it); returns the effective value.
SELECT ps_health.set_setting(%(key)s::text, %(value)s::text, %(project)s::text, %(ahead)s::boolean) AS value

-- name: run_checks
-- A sweep now, on behalf of the CLI.
SELECT ps_health.run_checks(now(), 'cli') AS sweep

-- name: sweep_changes
-- The checks a sweep wrote: every row of a sweep carries its sweep time.
SELECT h.id, h.check_time, h.project, h.check_type, h.subject, h.status, h.details, h.action_taken
  FROM ps_health.health_checks h
 WHERE h.check_time = %(swept_at)s::timestamptz
 ORDER BY h.id

-- name: open_spawns
-- Spawns of a project still open (the demo closes its leftovers).
SELECT task_id FROM ps_health.active_spawns
 WHERE project = %(project)s::text AND status IN ('running', 'stalled', 'abandoned')
 ORDER BY id

-- name: demo_progress
-- What the demo shows: its spawn's status, the latest prompt about it, and the PS's answer.
SELECT (SELECT sp.status FROM ps_health.active_spawns sp
         WHERE sp.project = %(project)s AND sp.task_id = %(task_id)s) AS spawn_status,
       (SELECT jsonb_build_object('id', p.id, 'state', p.state, 'text', p.text)
          FROM ps_health.prompts p
          JOIN ps_health.prompt_items i ON i.prompt_id = p.id
          JOIN ps_health.health_checks c ON c.id = i.check_id
         WHERE c.project = %(project)s AND c.subject = %(task_id)s
         ORDER BY p.id DESC LIMIT 1) AS prompt,
       (SELECT jsonb_build_object('check_id', c.id, 'response', c.ps_response)
          FROM ps_health.health_checks c
         WHERE c.project = %(project)s AND c.subject = %(task_id)s AND c.ps_response IS NOT NULL
         ORDER BY c.id DESC LIMIT 1) AS answer

-- name: server
-- Who and where the CLI is connected, for `doctor`.
SELECT current_setting('server_version') AS version, current_database() AS database, current_user AS login

-- name: doctor_checks
-- The self-check's verdicts on what the database knows, from the facts gathered on this host.
SELECT name, status, detail, fix
  FROM ps_health.doctor_checks(%(host)s::text, %(facts)s::jsonb, %(before_reactor)s::boolean)

-- name: host_panes
-- This host's live sessions with a pane, for `doctor`.
SELECT project, tmux_target FROM ps_health.probe_sessions(%(host)s::text) WHERE tmux_target IS NOT NULL
