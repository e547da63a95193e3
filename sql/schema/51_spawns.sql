-- Spawns: start, output, finish, status changes through the transition table.

-- spawn_transitions: the allowed spawn status changes; the trigger refuses every other.
CREATE VIEW ps_health.spawn_transitions AS
SELECT from_status::varchar(20) AS from_status, to_status::varchar(20) AS to_status FROM (VALUES
  ('running', 'stalled'), ('running', 'completed'), ('running', 'failed'), ('running', 'abandoned'),
  ('stalled', 'running'), ('stalled', 'completed'), ('stalled', 'failed'), ('stalled', 'abandoned'),
  ('abandoned', 'running'), ('abandoned', 'completed'), ('abandoned', 'failed')
) AS t (from_status, to_status);

-- get_stalled_spawns: spawns without output for the stall time (15 min by default), whether the sweep
-- has marked them stalled yet or not, until they recover, finish or are abandoned; NULL project = every
-- project the login may see.
CREATE FUNCTION ps_health.get_stalled_spawns(p_project varchar, p_now timestamptz DEFAULT now())
RETURNS TABLE (id integer, task_id varchar, task_type varchar, spawn_time timestamptz, minutes_stalled integer)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
    RETURN QUERY
    SELECT s.id, s.task_id, s.task_type, s.spawn_time,
           ps_health._minutes(coalesce(s.last_output_change, s.spawn_time), p_now)
      FROM ps_health.active_spawns s
     WHERE s.status IN ('running', 'stalled')
       AND (p_project IS NULL OR s.project = p_project)
       AND coalesce(s.last_output_change, s.spawn_time) <= p_now - ps_health._setting_interval('stall_after', s.project)
       AND ((SELECT ps_health._sees_all()) OR ps_health._may_see(s.project))
     ORDER BY s.spawn_time;
END;
$$;

-- trg_active_spawns_status: enforce the spawn transition table for every writer.
CREATE FUNCTION ps_health.trg_active_spawns_status()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ps_health.spawn_transitions WHERE from_status = OLD.status AND to_status = NEW.status) THEN
        RAISE EXCEPTION 'spawn "%" in project "%" cannot go from % to %', OLD.task_id, OLD.project, OLD.status, NEW.status
            USING ERRCODE = '55000';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER trg_active_spawns_status BEFORE UPDATE OF status ON ps_health.active_spawns
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION ps_health.trg_active_spawns_status();

-- start_spawn: record a subagent the PS started (its project has a session); returns its id.
CREATE FUNCTION ps_health.start_spawn(p_project text, p_task_id text, p_task_type text,
                                      p_description text DEFAULT NULL, p_output_file text DEFAULT NULL,
                                      p_pid integer DEFAULT NULL, p_host text DEFAULT NULL,
                                      p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_id integer;
    v_description text;
BEGIN
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._check_text('task_id', p_task_id);
    PERFORM ps_health._check_text('task_type', p_task_type, 100);
    v_description := ps_health._check_text('description', ps_health._clean_text(p_description), 10000, false);
    PERFORM ps_health._check_text('output_file', p_output_file, 4096, false);
    PERFORM ps_health._check_text('host', p_host, 255, false);
    PERFORM ps_health._check_time('p_now', p_now);
    IF p_pid IS NOT NULL AND p_pid <= 0 THEN
        RAISE EXCEPTION 'pid must be positive, got %', p_pid USING ERRCODE = '22023';
    END IF;
    PERFORM ps_health._authorize_locked(p_project, p_host);
    -- a spawn of a project without a session could never be prompted about: a typo, refused
    PERFORM ps_health._session(p_project);
    BEGIN
        INSERT INTO ps_health.active_spawns (project, task_id, task_type, description, output_file, pid, host, spawn_time)
        VALUES (p_project, p_task_id, p_task_type, v_description, p_output_file, p_pid, p_host, p_now)
        RETURNING id INTO v_id;
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION 'spawn "%" already exists in project "%"', p_task_id, p_project USING ERRCODE = '23505';
    END;
    UPDATE ps_health.ps_sessions SET last_activity = greatest(last_activity, p_now) WHERE project = p_project;
    RETURN v_id;
END;
$$;

-- _output_seen: a spawn produced output at p_at; a stalled one runs again and recovers (ok, no prompt).
CREATE FUNCTION ps_health._output_seen(p_id integer, p_at timestamptz, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    sp ps_health.active_spawns;
BEGIN
    UPDATE ps_health.active_spawns SET last_output_change = p_at
     WHERE id = p_id AND p_at > coalesce(last_output_change, '-infinity') RETURNING * INTO sp;
    IF sp.id IS NOT NULL AND sp.status IN ('stalled', 'abandoned') AND p_at > coalesce(sp.stalled_at, '-infinity') THEN
        UPDATE ps_health.active_spawns SET status = 'running', stalled_at = NULL WHERE id = p_id;
        RETURN ps_health._check(sp.project, 'spawn', sp.task_id, 'ok',
            jsonb_build_object('task_id', sp.task_id, 'task_type', sp.task_type, 'reason', 'output resumed'), NULL, p_now);
    END IF;
    RETURN CASE WHEN sp.id IS NULL THEN 0 ELSE 1 END;
END;
$$;

-- report_spawn_output: the spawn produced output (now, or at p_at).
CREATE FUNCTION ps_health.report_spawn_output(p_project text, p_task_id text, p_at timestamptz DEFAULT NULL,
                                              p_now timestamptz DEFAULT now())
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    sp ps_health.active_spawns;
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._check_time('p_at', coalesce(p_at, p_now));
    sp := ps_health._spawn(p_project, p_task_id);
    PERFORM ps_health._output_seen(sp.id, least(coalesce(p_at, p_now), p_now), p_now);
END;
$$;

-- finish_spawn: the spawn ended; a non-zero exit code or an error is critical at once.
CREATE FUNCTION ps_health.finish_spawn(p_project text, p_task_id text, p_exit_code integer DEFAULT 0,
                                       p_error text DEFAULT NULL, p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    sp ps_health.active_spawns;
    v_status text;
    v_error text := left(nullif(ps_health._clean_text(p_error), ''), 2000);
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
    sp := ps_health._spawn(p_project, p_task_id);
    v_status := CASE WHEN coalesce(p_exit_code, 0) = 0 AND v_error IS NULL THEN 'completed' ELSE 'failed' END;
    UPDATE ps_health.active_spawns
       SET status = v_status, exit_code = p_exit_code, error_message = v_error, completed_at = p_now, stalled_at = NULL
     WHERE id = sp.id;
    IF v_status = 'failed' THEN
        PERFORM ps_health._check(p_project, 'spawn', p_task_id, 'critical',
            jsonb_build_object('task_id', p_task_id, 'task_type', sp.task_type,
                               'exit_code', coalesce(p_exit_code::text, 'none'),
                               'error', coalesce(left(v_error, 200), 'no error message')),
            'spawn.failed', p_now);
    ELSE
        PERFORM ps_health._check(p_project, 'spawn', p_task_id, 'ok',
            jsonb_build_object('task_id', p_task_id, 'reason', 'completed'), NULL, p_now);
    END IF;
    UPDATE ps_health.ps_sessions SET last_activity = greatest(last_activity, p_now) WHERE project = p_project;
    PERFORM ps_health._eval_orphans(p_project, p_now);
    RETURN v_status;
END;
$$;

-- set_spawn_status: move a spawn to another status; the transition table refuses the rest.
CREATE FUNCTION ps_health.set_spawn_status(p_project text, p_task_id text, p_status text,
                                           p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    sp ps_health.active_spawns;
BEGIN
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._check_text('status', p_status, 20);
    PERFORM ps_health._refuse_unlisted('status', p_status, 'active_spawns', 'status');
    sp := ps_health._spawn(p_project, p_task_id);
    IF p_status IN ('completed', 'failed') THEN
        RETURN ps_health.finish_spawn(p_project, p_task_id, CASE WHEN p_status = 'completed' THEN 0 ELSE 1 END,
                                      CASE WHEN p_status = 'failed' THEN 'marked failed' END, p_now);
    END IF;
    UPDATE ps_health.active_spawns
       SET status = p_status, stalled_at = CASE WHEN p_status = 'stalled' THEN p_now END
     WHERE id = sp.id;
    RETURN p_status;
END;
$$;
