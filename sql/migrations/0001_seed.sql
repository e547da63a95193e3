-- ps-health: the seed schema (tables, indexes, functions, views and trigger of the
-- original migration), kept with the same names, columns and signatures so SQL
-- clients written against it keep working. Deliberate fixes are marked "fix:".

CREATE SCHEMA ps_health;

-- ---------------------------------------------------------------- tables

-- One row per project: the project supervisor's current session.
CREATE TABLE ps_health.ps_sessions (
    id                      serial PRIMARY KEY,
    project                 varchar(255) NOT NULL UNIQUE,
    session_type            varchar(10) NOT NULL DEFAULT 'cli'
                            CONSTRAINT ps_sessions_session_type_check CHECK (session_type IN ('cli', 'sdk')),
    session_id              varchar(255),
    started_at              timestamptz NOT NULL DEFAULT now(),
    last_activity           timestamptz NOT NULL DEFAULT now(),
    last_context_check      timestamptz,
    context_usage           numeric(5,4)
                            CONSTRAINT ps_sessions_context_usage_check CHECK (context_usage >= 0 AND context_usage <= 1),
    estimated_tokens_used   integer,
    estimated_tokens_total  integer DEFAULT 200000,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

-- Every subagent a supervisor spawned.
CREATE TABLE ps_health.active_spawns (
    id                  serial PRIMARY KEY,
    project             varchar(255) NOT NULL,
    task_id             varchar(255) NOT NULL,
    task_type           varchar(100) NOT NULL,
    description         text,
    spawn_time          timestamptz NOT NULL DEFAULT now(),
    last_output_change  timestamptz,
    output_file         text,
    status              varchar(20) NOT NULL DEFAULT 'running'
                        CONSTRAINT active_spawns_status_check
                        CHECK (status IN ('running', 'completed', 'failed', 'stalled', 'abandoned')),
    exit_code           integer,
    error_message       text,
    completed_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT active_spawns_project_task_id_key UNIQUE (project, task_id)
);

-- The audit trail: one row per health-check finding.
CREATE TABLE ps_health.health_checks (
    id            serial PRIMARY KEY,
    project       varchar(255) NOT NULL,
    check_time    timestamptz NOT NULL DEFAULT now(),
    check_type    varchar(50) NOT NULL
                  CONSTRAINT health_checks_check_type_check
                  CHECK (check_type IN ('spawn', 'context', 'handoff', 'orphaned_work')),
    status        varchar(20) NOT NULL
                  CONSTRAINT health_checks_status_check CHECK (status IN ('ok', 'warning', 'critical')),
    details       jsonb,
    action_taken  text,
    ps_response   text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------- indexes

CREATE INDEX idx_ps_sessions_project ON ps_health.ps_sessions (project);
CREATE INDEX idx_ps_sessions_context_usage ON ps_health.ps_sessions (context_usage);
CREATE INDEX idx_ps_sessions_last_activity ON ps_health.ps_sessions (last_activity);
CREATE INDEX idx_active_spawns_project ON ps_health.active_spawns (project);
CREATE INDEX idx_active_spawns_status ON ps_health.active_spawns (status);
CREATE INDEX idx_active_spawns_project_status ON ps_health.active_spawns (project, status);
CREATE INDEX idx_active_spawns_spawn_time ON ps_health.active_spawns (spawn_time);
CREATE INDEX idx_health_checks_project ON ps_health.health_checks (project);
CREATE INDEX idx_health_checks_check_time ON ps_health.health_checks (check_time DESC);
CREATE INDEX idx_health_checks_status ON ps_health.health_checks (status);
CREATE INDEX idx_health_checks_project_status ON ps_health.health_checks (project, status);

-- ---------------------------------------------------------------- functions

-- get_stalled_spawns: running spawns with no output for 15+ minutes (all projects when p_project is NULL).
-- fix: a spawn with no output yet is measured from spawn_time; the seed reported it stalled at once.
CREATE FUNCTION ps_health.get_stalled_spawns(p_project varchar, p_now timestamptz DEFAULT now())
RETURNS TABLE (id integer, task_id varchar, task_type varchar, spawn_time timestamptz, minutes_stalled integer)
LANGUAGE sql STABLE AS $$
    SELECT s.id, s.task_id, s.task_type, s.spawn_time,
           floor(extract(epoch FROM p_now - coalesce(s.last_output_change, s.spawn_time)) / 60)::integer
      FROM ps_health.active_spawns s
     WHERE s.status = 'running'
       AND (p_project IS NULL OR s.project = p_project)
       AND coalesce(s.last_output_change, s.spawn_time) <= p_now - interval '15 minutes'
     ORDER BY s.spawn_time;
$$;

-- get_sessions_needing_context_check: sessions active in the last hour whose context was not checked in 10 minutes.
CREATE FUNCTION ps_health.get_sessions_needing_context_check(p_now timestamptz DEFAULT now())
RETURNS TABLE (project varchar, session_type varchar, session_id varchar,
               minutes_since_check integer, current_usage numeric)
LANGUAGE sql STABLE AS $$
    SELECT s.project, s.session_type, s.session_id,
           floor(extract(epoch FROM p_now - s.last_context_check) / 60)::integer,
           s.context_usage
      FROM ps_health.ps_sessions s
     WHERE s.last_activity > p_now - interval '1 hour'
       AND (s.last_context_check IS NULL OR s.last_context_check <= p_now - interval '10 minutes')
     ORDER BY s.project;
$$;

-- update_session_context: record a context report; percentage 0-100 in, fraction 0-1 stored.
-- fix: an unknown project is an error (the seed silently updated nothing).
CREATE FUNCTION ps_health.update_session_context(
    p_project varchar, p_context_percentage numeric,
    p_tokens_used integer DEFAULT NULL, p_tokens_total integer DEFAULT NULL,
    p_now timestamptz DEFAULT now())
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_context_percentage IS NULL OR p_context_percentage < 0 OR p_context_percentage > 100 THEN
        RAISE EXCEPTION 'context_percentage must be between 0 and 100, got %', coalesce(p_context_percentage::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    UPDATE ps_health.ps_sessions
       SET context_usage = round(p_context_percentage / 100, 4),
           estimated_tokens_used = coalesce(p_tokens_used, estimated_tokens_used),
           estimated_tokens_total = coalesce(p_tokens_total, estimated_tokens_total),
           last_context_check = p_now,
           last_activity = greatest(last_activity, p_now)
     WHERE project = p_project;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown project "%": no session registered', p_project
            USING ERRCODE = 'P0002';
    END IF;
END;
$$;

-- record_health_check: append one finding to the audit trail and return its id.
CREATE FUNCTION ps_health.record_health_check(
    p_project varchar, p_check_type varchar, p_status varchar,
    p_details jsonb DEFAULT '{}'::jsonb, p_action_taken text DEFAULT NULL,
    p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE sql AS $$
    INSERT INTO ps_health.health_checks (project, check_time, check_type, status, details, action_taken)
    VALUES (p_project, p_now, p_check_type, p_status, p_details, p_action_taken)
    RETURNING id;
$$;

-- update_updated_at_column: keep updated_at current on every update.
CREATE FUNCTION ps_health.update_updated_at_column()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- ---------------------------------------------------------------- views

-- Every project with a session or running spawns.
CREATE VIEW ps_health.active_monitoring_targets AS
SELECT coalesce(s.project, r.project) AS project,
       s.session_type,
       s.session_id,
       s.context_usage,
       s.last_context_check,
       coalesce(r.active_spawns_count, 0) AS active_spawns_count,
       r.latest_spawn_time
  FROM ps_health.ps_sessions s
  FULL JOIN (SELECT project, count(*) AS active_spawns_count, max(spawn_time) AS latest_spawn_time
               FROM ps_health.active_spawns
              WHERE status = 'running'
              GROUP BY project) r ON r.project = s.project;

-- Daily counts of findings over the last 7 days.
CREATE VIEW ps_health.health_check_summary AS
SELECT project,
       (check_time AT TIME ZONE 'UTC')::date AS check_date,
       check_type,
       status,
       count(*) AS check_count,
       max(check_time) AS last_check_time
  FROM ps_health.health_checks
 WHERE check_time > now() - interval '7 days'
 GROUP BY project, (check_time AT TIME ZONE 'UTC')::date, check_type, status;

-- ---------------------------------------------------------------- triggers

CREATE TRIGGER trg_ps_sessions_updated_at BEFORE UPDATE ON ps_health.ps_sessions
    FOR EACH ROW EXECUTE FUNCTION ps_health.update_updated_at_column();
CREATE TRIGGER trg_active_spawns_updated_at BEFORE UPDATE ON ps_health.active_spawns
    FOR EACH ROW EXECUTE FUNCTION ps_health.update_updated_at_column();
