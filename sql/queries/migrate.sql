-- Queries of the schema runner. Its records live in ps_health_meta so a schema diff of ps_health
-- never sees them.

-- name: try_lock
-- Serialise runners: a second `migrate` waits for this, then finds nothing left to do.
SELECT pg_try_advisory_lock(hashtext('ps_health.migrate')) AS locked

-- name: lock_holder
-- Who holds the runner's lock (any login may take an advisory lock: the message names it).
SELECT l.pid, a.usename AS login, a.application_name
  FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.objid = (hashtext('ps_health.migrate')::bigint & 4294967295)::oid
 LIMIT 1

-- name: unlock
SELECT pg_advisory_unlock(hashtext('ps_health.migrate'))

-- name: no_body_checks
-- Functions may name each other in any order while the schema is loaded.
SET LOCAL check_function_bodies = off

-- name: has_tracking
SELECT to_regclass('ps_health_meta.migrations')

-- name: ensure_tracking
-- Create the records on first use; `how` and the code record came with the declared schema.
CREATE SCHEMA IF NOT EXISTS ps_health_meta;
CREATE TABLE IF NOT EXISTS ps_health_meta.migrations (
    version      integer PRIMARY KEY,
    name         text NOT NULL,
    checksum     text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    duration_ms  numeric(12,3) NOT NULL,
    adopted      boolean NOT NULL DEFAULT false
);
ALTER TABLE ps_health_meta.migrations ADD COLUMN IF NOT EXISTS how text NOT NULL DEFAULT 'applied';
CREATE TABLE IF NOT EXISTS ps_health_meta.code (
    id         integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    checksum   text NOT NULL,
    loaded_at  timestamptz NOT NULL DEFAULT now()
)

-- name: applied
-- Versions recorded, in order: applied as a delta, built from the schema, adopted, or pre-release.
SELECT version, name, checksum, applied_at, duration_ms, adopted, coalesce(to_jsonb(m) ->> 'how', 'applied') AS how
  FROM ps_health_meta.migrations m ORDER BY version

-- name: record
-- Record one version.
INSERT INTO ps_health_meta.migrations (version, name, checksum, duration_ms, adopted, how)
VALUES (%(version)s, %(name)s, %(checksum)s, %(duration_ms)s, %(adopted)s, %(how)s)

-- name: has_code_record
SELECT to_regclass('ps_health_meta.code')

-- name: code_loaded
-- The checksum of the code files loaded last.
SELECT checksum FROM ps_health_meta.code

-- name: record_code
INSERT INTO ps_health_meta.code (id, checksum) VALUES (1, %(checksum)s)
ON CONFLICT (id) DO UPDATE SET checksum = EXCLUDED.checksum, loaded_at = now()

-- name: drop_code
-- Drop every function, view and trigger of ps_health before the code files are loaded again.
-- Refused when something else is built on them (a table default, a constraint, another schema's
-- view): that would be lost silently.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT pg_describe_object(d.classid, d.objid, d.objsubid) AS dependent,
               pg_describe_object(d.refclassid, d.refobjid, 0) AS code
          FROM pg_depend d
         WHERE d.deptype = 'n'
           AND ((d.refclassid = 'pg_proc'::regclass
                 AND d.refobjid IN (SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'ps_health'::regnamespace))
             OR (d.refclassid = 'pg_class'::regclass
                 AND d.refobjid IN (SELECT c.oid FROM pg_class c
                                     WHERE c.relnamespace = 'ps_health'::regnamespace AND c.relkind = 'v')))
           AND NOT (d.classid = 'pg_trigger'::regclass
                    AND EXISTS (SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                                 WHERE t.oid = d.objid AND c.relnamespace = 'ps_health'::regnamespace))
           AND NOT (d.classid = 'pg_rewrite'::regclass
                    AND EXISTS (SELECT 1 FROM pg_rewrite w JOIN pg_class c ON c.oid = w.ev_class
                                 WHERE w.oid = d.objid AND c.relnamespace = 'ps_health'::regnamespace
                                   AND c.relkind = 'v'))
           AND NOT (d.classid = 'pg_proc'::regclass
                    AND EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = d.objid
                                   AND p.pronamespace = 'ps_health'::regnamespace))
         LIMIT 1
    LOOP
        RAISE EXCEPTION '% depends on %, which is reloaded from sql/schema: drop it first', r.dependent, r.code
            USING ERRCODE = '2BP01';
    END LOOP;
    -- by name: a view built on another is gone with it, and its oid would no longer print as a name
    FOR r IN SELECT c.relname AS v FROM pg_class c
              WHERE c.relnamespace = 'ps_health'::regnamespace AND c.relkind = 'v' LOOP
        EXECUTE format('DROP VIEW IF EXISTS ps_health.%I CASCADE', r.v);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p WHERE p.pronamespace = 'ps_health'::regnamespace LOOP
        EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', r.f);
    END LOOP;
END;
$$

-- name: remove
-- `migrate --to 0`: the schema and its records go; the roles are cluster-wide and stay.
DROP SCHEMA IF EXISTS ps_health CASCADE;
DROP SCHEMA IF EXISTS ps_health_meta CASCADE

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
-- Owner, SECURITY DEFINER and grants after the code is loaded.
SELECT ps_health._apply_privileges()
