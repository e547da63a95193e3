-- One reactor per host. A reactor records its listener connection (its backend's pid) when it starts:
-- while that connection of its login is open, a second reactor for the host is refused and the
-- first counts as running (a crash or a dropped connection ends it at once). Nothing another login
-- can take decides it (as an advisory lock would: any login may take any advisory lock).

-- _listener_open: whether a reactor row's listener connection (its pid, of its login in this database, under the
-- name it started with) is open now: now, not when the transaction first looked (pg_stat_activity is read once
-- per transaction otherwise, and a caller's transaction may have looked before that listener connected).
-- (PL/pgSQL: a claim calls it only when a worker changes host, and it costs the claim nothing otherwise.)
CREATE FUNCTION ps_health._listener_open(p_pid integer, p_login name, p_name text)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF p_pid IS NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_stat_clear_snapshot();
    RETURN EXISTS (
        SELECT 1 FROM pg_stat_activity a
         WHERE a.pid = p_pid AND a.usename = p_login AND a.datname = current_database()
           AND a.application_name IS NOT DISTINCT FROM p_name);
END;
$$;

-- _live_reactors: the reactors whose listener connection is open now.
CREATE FUNCTION ps_health._live_reactors()
RETURNS SETOF ps_health.reactors LANGUAGE sql STABLE AS $$
    SELECT r.* FROM ps_health.reactors r WHERE ps_health._listener_open(r.backend_pid, r.login, r.listener_name)
$$;

-- _refuse_worker_elsewhere: a worker id serves one host at a time. While it is the running reactor of another
-- host (its listener, another connection, is open), starting or claiming under it for p_host is refused (55P03):
-- moving its row would leave that host without a running reactor, and let a second one in beside the first.
-- A start or claim whose upsert found the row taken meanwhile calls it after it: the row as committed now.
CREATE FUNCTION ps_health._refuse_worker_elsewhere(p_worker text, p_host text)
RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_host text;
BEGIN
    SELECT r.host INTO v_host FROM ps_health.reactors r
     WHERE r.worker = p_worker AND r.host IS DISTINCT FROM p_host AND r.backend_pid <> pg_backend_pid()
       AND ps_health._listener_open(r.backend_pid, r.login, r.listener_name);
    IF FOUND THEN
        RAISE EXCEPTION 'worker "%" is already running as the reactor of host "%"', left(p_worker, 255), left(v_host, 255)
            USING ERRCODE = '55P03',
                  HINT = 'a worker id serves one host at a time; give this reactor another --worker, or leave it out';
    END IF;
END;
$$;

-- reactor_start: record the calling (listener) connection as the host's reactor. Refused (55P03)
-- while another reactor serves the host, naming it; false while an older connection of this same
-- worker is still open (the server has not noticed it is gone).
CREATE FUNCTION ps_health.reactor_start(p_host text, p_worker text, p_now timestamptz DEFAULT now())
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    holder ps_health.reactors;
BEGIN
    PERFORM ps_health._check_text('host', p_host);
    PERFORM ps_health._check_text('worker', p_worker);
    PERFORM ps_health._check_time('p_now', p_now);
    -- a login serves only the hosts granted to it, under worker ids of its own
    PERFORM ps_health._authorize(NULL, p_host);
    PERFORM ps_health._authorize_worker(p_worker);
    -- two reactors starting for one host at once queue here
    PERFORM ps_health._lock('host', p_host);
    PERFORM ps_health._refuse_worker_elsewhere(p_worker, p_host);
    SELECT * INTO holder FROM ps_health._live_reactors() r
     WHERE r.host = p_host AND r.backend_pid <> pg_backend_pid() ORDER BY r.started_at LIMIT 1;
    IF holder.worker = p_worker THEN
        RETURN false;
    ELSIF holder.worker IS NOT NULL THEN
        RAISE EXCEPTION 'a reactor for host "%" is already running: worker "%"%', left(p_host, 255), holder.worker,
            format(', started %s, last claim %s', to_char(holder.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'),
                   to_char(holder.last_seen AT TIME ZONE 'UTC', 'HH24:MI:SS "UTC"'))
            USING ERRCODE = '55P03',
                  HINT = 'one reactor serves a host; stop that one first, or give this one another host label (--host)';
    END IF;
    -- no other row of this host is a running reactor: drop them; and a row of another host naming this
    -- connection is a reactor that is gone (its pid was given to this connection)
    DELETE FROM ps_health.reactors WHERE host = p_host AND worker <> p_worker;
    UPDATE ps_health.reactors SET backend_pid = NULL WHERE backend_pid = pg_backend_pid() AND worker <> p_worker;
    -- the login that starts a reactor under a worker id (the owner may take any) is the one its connection has
    INSERT INTO ps_health.reactors (worker, host, last_seen, login, backend_pid, started_at, listener_name)
    VALUES (p_worker, p_host, p_now, session_user, pg_backend_pid(), p_now, current_setting('application_name'))
    ON CONFLICT (worker) DO UPDATE
       SET host = EXCLUDED.host, last_seen = EXCLUDED.last_seen, backend_pid = EXCLUDED.backend_pid,
           login = EXCLUDED.login, listener_name = EXCLUDED.listener_name,
           started_at = coalesce(ps_health.reactors.started_at, EXCLUDED.started_at)
     -- (the row as committed when this got to it: a start for another host under the same worker id may have
     -- taken it meanwhile; that one's host lock is not this one's)
     WHERE ps_health.reactors.host = EXCLUDED.host OR ps_health.reactors.backend_pid = pg_backend_pid()
        OR NOT ps_health._listener_open(ps_health.reactors.backend_pid, ps_health.reactors.login,
                                        ps_health.reactors.listener_name);
    IF NOT FOUND THEN
        PERFORM ps_health._refuse_worker_elsewhere(p_worker, p_host);
        RAISE EXCEPTION 'worker "%" was just taken by another reactor', left(p_worker, 255)
            USING ERRCODE = '55P03', HINT = 'give this reactor another --worker, or leave it out';
    END IF;
    RETURN true;
END;
$$;

-- reactor_stop: a clean stop removes the reactor's row: the one of the calling (listener) connection, or, given
-- p_listener, the row of the caller's login whose listener connection that was, once it has ended. The reactor
-- closes its listener and stops on another connection: a listener with a flood of notifications to send first,
-- or one that does not answer, would hold up the stop. A listener still open keeps its row (removing it would let
-- a second reactor for the host in while the first still runs); the server notices a closed one within moments,
-- and this waits up to a second for it.
CREATE FUNCTION ps_health.reactor_stop(p_worker text, p_listener integer DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._check_text('worker', p_worker);
    IF p_listener IS NULL THEN
        DELETE FROM ps_health.reactors WHERE worker = p_worker AND backend_pid = pg_backend_pid();
        RETURN FOUND;
    END IF;
    FOR i IN 1 .. 100 LOOP
        PERFORM pg_stat_clear_snapshot();  -- (pg_stat_activity is read once per transaction otherwise)
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = p_listener);
        PERFORM pg_sleep(0.01);
    END LOOP;
    DELETE FROM ps_health.reactors r
     WHERE r.worker = p_worker AND r.backend_pid = p_listener AND r.login = session_user
       AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = p_listener);
    RETURN FOUND;
END;
$$;
