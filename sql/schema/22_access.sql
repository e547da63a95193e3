-- Who may act for and see what: the single place that decides it. Agent logins act for the projects
-- granted to them (agent_projects), reactor logins on the hosts granted to them (reactor_hosts) and
-- for the sessions there; the owner for everything. The grants themselves (which role may call which
-- function) are in 90_roles.sql.

-- _is_owner: the login owns the schema (or is a superuser); the owner is never restricted.
-- (session_user is the login even inside SECURITY DEFINER functions.)
CREATE FUNCTION ps_health._is_owner()
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT pg_has_role(session_user, 'ps_health_owner', 'MEMBER')
$$;

-- _serves_host: the login is a reactor granted this host, or every host ('*', which also covers
-- sessions and spawns without a host).
CREATE FUNCTION ps_health._serves_host(p_host text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM ps_health.reactor_hosts r
                    WHERE r.login = session_user AND (r.host = p_host OR r.host = '*'))
$$;

-- _may_act: whether the login may act for a project (and put its session on p_host), or, with no
-- project, on a host. The owner may do anything. An agent login acts for the projects granted to
-- it; bound to hosts (grant_agent_host), only on those: the host given, and that of the project's
-- live session (with no host given also an ended one's: bringing it back; no session, or one without
-- a host: no host to refuse). A reactor login
-- acts on the hosts granted to it, and for a project whose session is on one of them: its live
-- session's host, else the host given (a session starting there), else the host of the session
-- that ended.
CREATE FUNCTION ps_health._may_act(p_project text, p_host text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    s ps_health.ps_sessions;
BEGIN
    IF ps_health._is_owner() THEN
        RETURN true;
    END IF;
    IF p_project IS NOT NULL AND EXISTS (SELECT 1 FROM ps_health.agent_projects a
                                          WHERE a.login = session_user AND a.project IN (p_project, '*'))
       AND ps_health._agent_on_host(p_host)
       AND ps_health._agent_on_host((SELECT x.host FROM ps_health.ps_sessions x
                                      WHERE x.project = p_project AND (x.ended_at IS NULL OR p_host IS NULL))) THEN
        RETURN true;
    END IF;
    IF NOT pg_has_role(session_user, 'ps_health_reactor', 'MEMBER')
       OR (p_host IS NOT NULL AND NOT ps_health._serves_host(p_host)) THEN
        RETURN false;
    END IF;
    SELECT * INTO s FROM ps_health.ps_sessions x WHERE x.project = p_project;
    IF s.id IS NOT NULL AND (s.ended_at IS NULL OR p_host IS NULL) THEN
        RETURN ps_health._serves_host(s.host);
    END IF;
    -- no project, no session, or a session starting where one ended: the host given decides
    RETURN ps_health._serves_host(p_host);
END;
$$;

-- _agent_on_host: the login may act as an agent on the host: it was granted the host (or '*'), or no
-- host at all (an agent login bound to no host, as every one was before grant_agent_host); NULL: no
-- host to refuse.
CREATE FUNCTION ps_health._agent_on_host(p_host text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_host IS NULL
        OR NOT EXISTS (SELECT 1 FROM ps_health.agent_hosts h WHERE h.login = session_user)
        OR EXISTS (SELECT 1 FROM ps_health.agent_hosts h WHERE h.login = session_user AND h.host IN (p_host, '*'))
$$;

-- _authorize: refuse a login acting for a project (or on a host) that is not its own.
CREATE FUNCTION ps_health._authorize(p_project text, p_host text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT ps_health._may_act(p_project, p_host) THEN
        IF p_project IS NULL THEN
            RAISE EXCEPTION 'login "%" may not act for host "%"', session_user, left(coalesce(p_host, 'NULL'), 255)
                USING ERRCODE = '42501';
        ELSIF p_host IS NULL THEN
            RAISE EXCEPTION 'login "%" may not act for project "%"', session_user, left(p_project, 255)
                USING ERRCODE = '42501';
        END IF;
        RAISE EXCEPTION 'login "%" may not act for project "%" on host "%"', session_user, left(p_project, 255),
            left(p_host, 255) USING ERRCODE = '42501';
    END IF;
END;
$$;

-- _authorize_locked: _authorize, then the project's lock, then _authorize again: who may act can depend on
-- where the project's session is (a reactor's hosts, an agent login's), and a call that waited for the lock
-- must decide on the session as the transaction it waited for left it. (A login refused at first takes no
-- lock. A call naming no project, or a name no project may have, is told that first: it says nothing of what
-- the login may do.)
CREATE FUNCTION ps_health._authorize_locked(p_project text, p_host text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._check_text('project', p_project);
    PERFORM ps_health._authorize(p_project, p_host);
    PERFORM ps_health._lock_project(p_project);
    PERFORM ps_health._authorize(p_project, p_host);  -- (a statement of its own: it sees what committed meanwhile)
END;
$$;

-- _authorize_worker: a worker id (a name: required, plain) belongs to the login that claimed with it; another
-- login using it is refused (the owner excepted), without learning which login that is.
CREATE FUNCTION ps_health._authorize_worker(p_worker text)
RETURNS void LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_login name;
BEGIN
    PERFORM ps_health._check_text('worker', p_worker);
    SELECT r.login INTO v_login FROM ps_health.reactors r WHERE r.worker = p_worker;
    IF v_login IS NOT NULL AND v_login <> session_user AND NOT ps_health._is_owner() THEN
        RAISE EXCEPTION 'worker "%" belongs to another login, not "%"', left(p_worker, 255), session_user
            USING ERRCODE = '42501';
    END IF;
END;
$$;

-- _handled: of the prompts p_ids, those the login may record outcomes and leases for: the prompts of a host it
-- may act for, and escalations (no host: any reactor may claim one, as claim_prompts hands them out; no other
-- prompt without a host, such as one waiting for its session, is any reactor's). The owner handles every
-- prompt. A worker id alone says nothing: one whose reactor stopped has no row, and any login could claim with
-- it again.
CREATE FUNCTION ps_health._handled(p_ids bigint[])
RETURNS bigint[] LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF ps_health._is_owner() THEN
        RETURN ARRAY(SELECT p.id FROM ps_health.prompts p WHERE p.id = ANY (p_ids));
    END IF;
    RETURN ARRAY(SELECT p.id FROM ps_health.prompts p
                   LEFT JOIN (SELECT h.host, ps_health._may_act(NULL, h.host) AS ok  -- (once per host)
                                FROM (SELECT DISTINCT q.host FROM ps_health.prompts q
                                       WHERE q.id = ANY (p_ids) AND q.host IS NOT NULL) h) a ON a.host = p.host
                  WHERE p.id = ANY (p_ids) AND ((p.host IS NULL AND p.channel = 'escalation') OR a.ok));
END;
$$;

-- _sees_all: the login sees every project (the owner and readers).
CREATE FUNCTION ps_health._sees_all()
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT ps_health._is_owner() OR pg_has_role(session_user, 'ps_health_reader', 'MEMBER')
$$;

-- _may_see: whether the login may see a project: every project for the owner and readers, else
-- the projects it may act for. (The views call _sees_all and _may_see with their reader's rights;
-- both run as the owner, see _apply_privileges.)
CREATE FUNCTION ps_health._may_see(p_project text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT ps_health._sees_all() OR ps_health._may_act(p_project)
$$;

-- _authorize_view: refuse a login reading a project it may not see.
CREATE FUNCTION ps_health._authorize_view(p_project text)
RETURNS void LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT ps_health._may_see(p_project) THEN
        RAISE EXCEPTION 'login "%" may not see project "%"', session_user, left(p_project, 255)
            USING ERRCODE = '42501';
    END IF;
END;
$$;

-- _grant / _revoke: a grant of the access tables (agent_projects, agent_hosts, reactor_hosts: a login and
-- a project or host, its column p_column), added once, or taken back (NULL: all of the login's);
-- _revoke returns how many went.
CREATE FUNCTION ps_health._grant(p_table text, p_column text, p_login name, p_value text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._check_text(p_column, p_value);
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_login) THEN
        RAISE EXCEPTION 'no login "%"', p_login USING ERRCODE = '22023';
    END IF;
    EXECUTE format('INSERT INTO ps_health.%I VALUES ($1, $2) ON CONFLICT DO NOTHING', p_table) USING p_login, p_value;
END;
$$;

CREATE FUNCTION ps_health._revoke(p_table text, p_column text, p_login name, p_value text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    EXECUTE format('DELETE FROM ps_health.%I WHERE login = $1 AND ($2 IS NULL OR %I = $2)', p_table, p_column)
        USING p_login, p_value;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END;
$$;

-- grant_agent / revoke_agent: let a login act as the agent of a project, or stop it (owner only).
CREATE FUNCTION ps_health.grant_agent(p_login name, p_project text DEFAULT '*')
RETURNS void LANGUAGE sql AS $$
    SELECT ps_health._grant('agent_projects', 'project', p_login, p_project)
$$;

CREATE FUNCTION ps_health.revoke_agent(p_login name, p_project text DEFAULT NULL)
RETURNS integer LANGUAGE sql AS $$
    SELECT ps_health._revoke('agent_projects', 'project', p_login, p_project)
$$;

-- grant_agent_host / revoke_agent_host: bind an agent login to the hosts its sessions and spawns may be on
-- ('*': every host), or unbind it (owner only). Bound, it may not register a session, and so name a pane,
-- on any other host, nor act for a project whose session is on one; a login bound to no host may use any
-- (revoking its last host unbinds it).
CREATE FUNCTION ps_health.grant_agent_host(p_login name, p_host text)
RETURNS void LANGUAGE sql AS $$
    SELECT ps_health._grant('agent_hosts', 'host', p_login, p_host)
$$;

CREATE FUNCTION ps_health.revoke_agent_host(p_login name, p_host text DEFAULT NULL)
RETURNS integer LANGUAGE sql AS $$
    SELECT ps_health._revoke('agent_hosts', 'host', p_login, p_host)
$$;

-- grant_reactor / revoke_reactor: let a reactor login serve a host ('*': every host), or stop it
-- (owner only). Its claims, completions and probe reports are refused for any other host.
CREATE FUNCTION ps_health.grant_reactor(p_login name, p_host text)
RETURNS void LANGUAGE sql AS $$
    SELECT ps_health._grant('reactor_hosts', 'host', p_login, p_host)
$$;

CREATE FUNCTION ps_health.revoke_reactor(p_login name, p_host text DEFAULT NULL)
RETURNS integer LANGUAGE sql AS $$
    SELECT ps_health._revoke('reactor_hosts', 'host', p_login, p_host)
$$;
