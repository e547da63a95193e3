-- ps-health's pg_cron jobs, one line each, calling a ps_health.job_*() function in the
-- ps-health database. `ps-health cron install` runs this file in pg_cron's database
-- (cron.database_name); scheduling by job name makes it idempotent.
-- name: ps_health_sweep
SELECT cron.schedule_in_database('ps_health_sweep', '* * * * *', 'SELECT ps_health.job_sweep()', %(database)s)
-- name: ps_health_prune
SELECT cron.schedule_in_database('ps_health_prune', '17 3 * * *', 'SELECT ps_health.job_prune()', %(database)s)
