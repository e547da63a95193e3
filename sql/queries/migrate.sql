-- Queries of the migration runner. Its tracking table lives in ps_health_meta so a
-- schema diff of ps_health never sees it.

-- name: lock
-- Serialise runners: a second `migrate` waits here, then finds nothing left to apply.
SELECT pg_advisory_lock(hashtext('ps_health.migrate'))

-- name: unlock
SELECT pg_advisory_unlock(hashtext('ps_health.migrate'))

-- name: ensure_tracking
-- Create the tracking table on first use.
CREATE SCHEMA IF NOT EXISTS ps_health_meta;
CREATE TABLE IF NOT EXISTS ps_health_meta.migrations (
    version      integer PRIMARY KEY,
    name         text NOT NULL,
    checksum     text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    duration_ms  numeric(12,3) NOT NULL,
    adopted      boolean NOT NULL DEFAULT false
)

-- name: applied
-- Migrations recorded as applied, in order.
SELECT version, name, checksum, applied_at, duration_ms, adopted
  FROM ps_health_meta.migrations ORDER BY version

-- name: record
-- Record one applied (or adopted) migration.
INSERT INTO ps_health_meta.migrations (version, name, checksum, duration_ms, adopted)
VALUES (%(version)s, %(name)s, %(checksum)s, %(duration_ms)s, %(adopted)s)

-- name: forget
-- Remove the record of a rolled-back migration.
DELETE FROM ps_health_meta.migrations WHERE version = %(version)s

-- name: schema_objects
-- How many objects live in ps_health (to detect a schema created by hand).
SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'ps_health')
     + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'ps_health') AS objects,
       EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'ps_health') AS schema_exists

-- name: create_database
CREATE DATABASE {name}

-- name: drop_database
DROP DATABASE IF EXISTS {name} WITH (FORCE)

-- name: apply_privileges
-- Owner, SECURITY DEFINER and grants after a migration (CREATE OR REPLACE resets them).
DO $$
BEGIN
    IF to_regprocedure('ps_health._apply_privileges()') IS NOT NULL THEN
        PERFORM ps_health._apply_privileges();
    END IF;
END;
$$
