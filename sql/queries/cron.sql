-- Queries of `ps-health cron`: where pg_cron lives and what it has scheduled for us.

-- name: cron_database
-- The database pg_cron runs in (NULL when pg_cron is not preloaded).
SELECT current_setting('cron.database_name', true) AS cron_database, current_database() AS database

-- name: has_pg_cron
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') AS installed

-- name: jobs
-- Our jobs, with their last run.
SELECT j.jobid, j.jobname, j.schedule, j.command, j.database, j.active,
       d.status AS last_status, d.start_time AS last_start, d.return_message AS last_message
  FROM cron.job j
  LEFT JOIN LATERAL (SELECT status, start_time, return_message FROM cron.job_run_details r
                      WHERE r.jobid = j.jobid ORDER BY start_time DESC LIMIT 1) d ON true
 WHERE j.jobname LIKE 'ps_health_%%' AND j.database = %(database)s
 ORDER BY j.jobname

-- name: unschedule
-- Remove our jobs for one database.
SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'ps_health_%%' AND database = %(database)s
