-- Input checks and small helpers every API function uses; the per-project lock; the updated_at
-- trigger of the seed.

-- _unsafe_chars: a regex class of the characters no stored text may carry, because a terminal or a
-- pane acts on them or shows something other than what is stored: C0 and C1 controls (ESC, BEL,
-- DEL...), Unicode format characters (bidi overrides such as U+202E, zero-width U+200B, soft hyphen,
-- tags) and the line and paragraph separators U+2028/U+2029 (categories Cc, Cf, Zl, Zp).
CREATE FUNCTION ps_health._unsafe_chars()
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '[\u0001-\u001f\u007f-\u009f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e'
           '\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd'
           '\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]'
$$;

-- _plain_text: what _check_text accepts without a word (not empty, at most p_max characters, none
-- of _unsafe_chars); NULL for NULL. (SQL: inlined where it is called, no call of its own.)
CREATE FUNCTION ps_health._plain_text(p_value text, p_max integer DEFAULT 255)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT length(p_value) BETWEEN 1 AND p_max AND p_value !~ ps_health._unsafe_chars()
$$;

-- _check_text: refuse empty, over-long, control- or format-character names with the field and value.
CREATE FUNCTION ps_health._check_text(p_field text, p_value text, p_max integer DEFAULT 255, p_required boolean DEFAULT true)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF ps_health._plain_text(p_value, p_max) THEN
        RETURN p_value;
    END IF;
    IF p_value IS NULL OR p_value = '' THEN
        IF p_required THEN
            RAISE EXCEPTION '% is required', p_field USING ERRCODE = '22023';
        END IF;
        RETURN NULL;
    END IF;
    IF length(p_value) > p_max THEN
        RAISE EXCEPTION '% is too long (% characters, at most %): "%..."', p_field, length(p_value), p_max,
            left(regexp_replace(p_value, ps_health._unsafe_chars(), '?', 'g'), 40) USING ERRCODE = '22023';
    END IF;
    IF p_value ~ ps_health._unsafe_chars() THEN
        RAISE EXCEPTION '% must not contain control or invisible formatting characters: "%"', p_field,
            left(regexp_replace(p_value, ps_health._unsafe_chars(), '?', 'g'), 80) USING ERRCODE = '22023';
    END IF;
    RETURN p_value;
END;
$$;

-- _clean_text: free prose (answers, descriptions, error lines) with terminal escape sequences and the
-- characters of _unsafe_chars removed, line breaks and tabs turned into spaces, trimmed.
CREATE FUNCTION ps_health._clean_text(p_value text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT btrim(regexp_replace(regexp_replace(regexp_replace(regexp_replace(p_value,
               '\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?', '', 'g'),   -- OSC: title, clipboard, hyperlinks
               '\x1b\[[0-?]*[ -/]*[@-~]', '', 'g'),              -- CSI: colours, cursor, clearing
               '[\t\n\r\u000b\u000c\u0085\u2028\u2029]+', ' ', 'g'),
               ps_health._unsafe_chars(), '', 'g'))
$$;

-- _check_time: refuse timestamps the monitor cannot reason about. A login other than the owner works
-- in the server's present: a week back, so facts a reactor forwards late still land, and a few
-- minutes ahead for clock skew; no such caller can move the monitor's clock to 2199.
CREATE FUNCTION ps_health._check_time(p_field text, p_value timestamptz)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_value IS NULL OR NOT isfinite(p_value)
       OR p_value < '2000-01-01 00:00+00' OR p_value > '2200-01-01 00:00+00' THEN
        RAISE EXCEPTION '% must be a time between 2000 and 2200, got %', p_field, coalesce(p_value::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF (p_value < now() - interval '7 days' OR p_value > now() + interval '5 minutes') AND NOT ps_health._is_owner() THEN
        RAISE EXCEPTION '% must be within a week before and 5 minutes after the server''s time (%), got %',
            p_field, now(), p_value USING ERRCODE = '22023';
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
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._check_text('task_id', p_task_id);
    PERFORM ps_health._authorize_locked(p_project);
    SELECT * INTO s FROM ps_health.active_spawns WHERE project = p_project AND task_id = p_task_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown spawn "%" in project "%"', left(p_task_id, 255), left(p_project, 255)
            USING ERRCODE = 'P0002';
    END IF;
    RETURN s;
END;
$$;

-- The lock order. Every function that writes a project's rows takes the project's lock first
-- (_lock_project), so two calls for one project queue instead of locking rows in opposite orders;
-- a call about several projects takes their locks in one order (_lock_projects); the sweep only
-- takes locks that are free (_try_lock_project) and leaves a busy project to the next sweep.
-- A lock is a row of ps_health.locks locked FOR UPDATE until the transaction ends: only the owner may
-- lock those rows, so no login can hold ps-health's locks to stop the sweep or another project's calls.

INSERT INTO ps_health.locks (kind, name) VALUES ('settings', ''), ('sweep', '') ON CONFLICT DO NOTHING;

-- _lock: wait for a lock and hold it until the transaction ends (its row is added the first time).
CREATE FUNCTION ps_health._lock(p_kind text, p_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM ps_health.locks WHERE kind = p_kind AND name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        -- (a transaction adding the same row first is waited for, as its lock would be)
        INSERT INTO ps_health.locks (kind, name) VALUES (p_kind, p_name) ON CONFLICT DO NOTHING;
        PERFORM 1 FROM ps_health.locks WHERE kind = p_kind AND name = p_name FOR UPDATE;
        IF NOT FOUND THEN  -- (only a REPEATABLE READ transaction does not see the row another one added)
            RAISE EXCEPTION 'could not take the lock of % "%": it was added after this transaction began',
                p_kind, left(p_name, 255) USING ERRCODE = '40001', HINT = 'run the call again';
        END IF;
    END IF;
END;
$$;

-- _try_lock: the lock if nobody else holds it (held until the transaction ends); false, at once, if
-- another transaction holds it, or is adding its row and has not ended yet.
CREATE FUNCTION ps_health._try_lock(p_kind text, p_name text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_timeout text;
BEGIN
    PERFORM 1 FROM ps_health.locks WHERE kind = p_kind AND name = p_name FOR UPDATE SKIP LOCKED;
    IF FOUND THEN
        RETURN true;
    ELSIF EXISTS (SELECT 1 FROM ps_health.locks WHERE kind = p_kind AND name = p_name) THEN
        RETURN false;
    END IF;
    v_timeout := current_setting('lock_timeout');
    BEGIN
        PERFORM set_config('lock_timeout', '1ms', true);
        INSERT INTO ps_health.locks (kind, name) VALUES (p_kind, p_name) ON CONFLICT DO NOTHING;
        PERFORM set_config('lock_timeout', v_timeout, true);
    EXCEPTION WHEN lock_not_available THEN
        RETURN false;  -- (the setting goes back with the block)
    END;
    PERFORM 1 FROM ps_health.locks WHERE kind = p_kind AND name = p_name FOR UPDATE SKIP LOCKED;
    RETURN FOUND;
END;
$$;

-- _lock_project: the project's transaction lock (a name no project may have is refused first, naming it).
CREATE FUNCTION ps_health._lock_project(p_project text)
RETURNS void LANGUAGE sql AS $$
    SELECT ps_health._check_text('project', p_project);
    SELECT ps_health._lock('project', p_project)
$$;

-- _lock_projects: the locks of several projects, in the order of their names.
CREATE FUNCTION ps_health._lock_projects(p_projects text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    p text;
BEGIN
    FOR p IN SELECT DISTINCT x FROM unnest(p_projects) x WHERE x IS NOT NULL ORDER BY 1 LOOP
        PERFORM ps_health._lock('project', p);
    END LOOP;
END;
$$;

-- _try_lock_project: the project's lock if nobody holds it (the sweep never waits for one); a name no
-- project may have is refused, naming it.
CREATE FUNCTION ps_health._try_lock_project(p_project text)
RETURNS boolean LANGUAGE sql AS $$
    SELECT ps_health._check_text('project', p_project);
    SELECT ps_health._try_lock('project', p_project)
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

-- Check the stored settings (20_settings.sql) against this release's ranges, every time the code is
-- loaded: here, once _unsafe_chars and _plain_text, which _setting_error uses, exist.
UPDATE ps_health.settings SET valid = ps_health._setting_error(key, value) IS NULL;
