-- Input checks and small helpers every API function uses; the updated_at trigger of the seed.

-- _check_text: refuse empty, over-long or control-character names with the field and value.
CREATE FUNCTION ps_health._check_text(p_field text, p_value text, p_max integer DEFAULT 255, p_required boolean DEFAULT true)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_value IS NULL OR p_value = '' THEN
        IF p_required THEN
            RAISE EXCEPTION '% is required', p_field USING ERRCODE = '22023';
        END IF;
        RETURN NULL;
    END IF;
    IF length(p_value) > p_max THEN
        RAISE EXCEPTION '% is too long (% characters, at most %): "%..."', p_field, length(p_value), p_max,
            left(regexp_replace(p_value, '[[:cntrl:]]', '?', 'g'), 40) USING ERRCODE = '22023';
    END IF;
    IF p_value ~ '[[:cntrl:]]' AND p_max <= 255 THEN
        RAISE EXCEPTION '% must not contain control characters: "%"', p_field,
            left(regexp_replace(p_value, '[[:cntrl:]]', '?', 'g'), 80) USING ERRCODE = '22023';
    END IF;
    RETURN p_value;
END;
$$;

-- _check_time: refuse timestamps the monitor cannot reason about.
CREATE FUNCTION ps_health._check_time(p_field text, p_value timestamptz)
RETURNS timestamptz LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_value IS NULL OR NOT isfinite(p_value)
       OR p_value < '2000-01-01 00:00+00' OR p_value > '2200-01-01 00:00+00' THEN
        RAISE EXCEPTION '% must be a time between 2000 and 2200, got %', p_field, coalesce(p_value::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    RETURN p_value;
END;
$$;

-- _minutes: whole minutes between two times.
CREATE FUNCTION ps_health._minutes(p_from timestamptz, p_to timestamptz)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT floor(extract(epoch FROM p_to - p_from) / 60)::integer
$$;

-- _session: the session row of a project, or a clear error.
CREATE FUNCTION ps_health._session(p_project text)
RETURNS ps_health.ps_sessions LANGUAGE plpgsql STABLE AS $$
DECLARE
    s ps_health.ps_sessions;
BEGIN
    SELECT * INTO s FROM ps_health.ps_sessions WHERE project = p_project;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown project "%": no session registered', left(p_project, 255) USING ERRCODE = 'P0002',
            HINT = 'a typo? ps-health status lists the projects; a new project starts with: ps-health session register PROJECT';
    END IF;
    RETURN s;
END;
$$;

-- _spawn: a spawn row by (project, task id), locked, or a clear error.
CREATE FUNCTION ps_health._spawn(p_project text, p_task_id text)
RETURNS ps_health.active_spawns LANGUAGE plpgsql AS $$
DECLARE
    s ps_health.active_spawns;
BEGIN
    PERFORM ps_health._authorize(p_project);
    SELECT * INTO s FROM ps_health.active_spawns WHERE project = p_project AND task_id = p_task_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown spawn "%" in project "%"', left(p_task_id, 255), left(p_project, 255)
            USING ERRCODE = 'P0002';
    END IF;
    RETURN s;
END;
$$;

-- update_updated_at_column: keep updated_at current on every update.
CREATE FUNCTION ps_health.update_updated_at_column()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER trg_ps_sessions_updated_at BEFORE UPDATE ON ps_health.ps_sessions
    FOR EACH ROW EXECUTE FUNCTION ps_health.update_updated_at_column();

CREATE TRIGGER trg_active_spawns_updated_at BEFORE UPDATE ON ps_health.active_spawns
    FOR EACH ROW EXECUTE FUNCTION ps_health.update_updated_at_column();
