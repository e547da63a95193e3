-- Queries of the embedded cluster (`ps-health db up`): its database, with ps_health on the default search
-- path (so the original schema's clients find its tables and functions unqualified), and pg_cron.

-- name: has_database
SELECT 1 AS found FROM pg_database WHERE datname = %(name)s

-- name: create_database
CREATE DATABASE {name}

-- name: search_path
ALTER DATABASE {name} SET search_path = "$user", public, ps_health

-- name: create_pg_cron
CREATE EXTENSION IF NOT EXISTS pg_cron
