"""Real logins through the CLI and the reactor: an agent sees its project only, a reactor acts on its hosts only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.reactor_proc import create_login
from tests.support import ROOT, ok, refused, run_cli, wait_for


@pytest.fixture
def login(server, db):
    """make(role) -> a DSN of a new login in that role; the logins are dropped after the test."""
    admin_dsn, cluster = server
    if cluster is None:
        pytest.skip("extra logins need the test run's own server")
    made: list[str] = []

    def make(role: str) -> tuple[str, str]:
        name = f"{role.removeprefix('ps_health_')}_{uuid.uuid4().hex[:8]}"
        password = uuid.uuid4().hex
        create_login(admin_dsn, name, password, role)
        made.append(name)
        return name, make_conninfo(db, user=name, password=password)

    yield make
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def _two_projects(db: str) -> None:
    for project, pane, host in (("alpha", "%1", "h1"), ("beta", "%2", "h2")):
        ok(db, "session", "register", project, "--target", pane, "--host", host)
        ok(db, "spawn", "start", project, "t1", "--type", "build")
        ok(db, "spawn", "finish", project, "t1", "--exit-code", "1", "--error", f"{project} secret")


def _tenants(conn, login) -> dict[str, str]:
    """DSNs of reactor1 (granted h1), reactor2 (h2), agent_a (alpha) and agent_b (beta): _two_projects' tenants."""
    dsns, names = {}, {}
    for key, role in (("reactor1", "ps_health_reactor"), ("reactor2", "ps_health_reactor"),
                      ("agent_a", "ps_health_agent"), ("agent_b", "ps_health_agent")):
        names[key], dsns[key] = login(role)
    conn.execute("SELECT ps_health.grant_reactor(%s, 'h1'), ps_health.grant_reactor(%s, 'h2'), "
                 "ps_health.grant_agent(%s, 'alpha'), ps_health.grant_agent(%s, 'beta')",
                 (names["reactor1"], names["reactor2"], names["agent_a"], names["agent_b"]))
    return dsns


def _refused(dsn: str, query: str, *args) -> psycopg.Error:
    """The error a call that must be refused gets (a wait for a lock ends after 5 s instead of hanging the test)."""
    with psycopg.connect(dsn, autocommit=True, options="-c lock_timeout=5s") as c:
        with pytest.raises(psycopg.Error) as refused_call:
            c.execute(query, args or None)
    return refused_call.value


def test_an_agent_login_sees_only_its_own_project(db, conn, login):
    _two_projects(db)
    name, agent = login("ps_health_agent")
    conn.execute("SELECT ps_health.grant_agent(%s, 'alpha')", (name,))

    out = ok(agent, "status").stdout
    assert "alpha" in out and "beta" not in out
    with psycopg.connect(agent, autocommit=True) as c:
        line = "SELECT project, registered, open_alerts FROM ps_health.statusline(%s, 'h1', %s)"
        assert c.execute(line, ("%2", "beta")).fetchone() == ("beta", False, 0), "beta stays hidden, pane or name"
        assert c.execute(line, (None, "alpha")).fetchone() == ("alpha", True, 1)
    assert "permission denied" in refused(agent, "checks").stderr  # the history is for readers
    res = refused(agent, "session", "heartbeat", "beta")
    assert f'login "{name}" may not act for project "beta" [42501]' in res.stderr



def test_an_agent_login_bound_to_its_host_cannot_name_a_pane_on_another(db, conn, login):
    # An agent of alpha on h1 names the pane of another host's agent: without a host binding that is
    # allowed (the pane would get alpha's prompts); bound to h1, it is refused and nothing is written.
    name, agent = login("ps_health_agent")
    conn.execute("SELECT ps_health.grant_agent(%s, 'alpha')", (name,))
    conn.execute("SELECT ps_health.grant_agent_host(%s, 'h1')", (name,))
    res = refused(agent, "session", "register", "alpha", "--target", "%2", "--host", "h2")
    assert f'login "{name}" may not act for project "alpha" on host "h2" [42501]' in res.stderr
    assert conn.execute("SELECT count(*) AS n FROM ps_health.ps_sessions").fetchone()["n"] == 0
    # nor through a session of alpha's already on h2 (ended): bringing it back, or a spawn whose failure
    # the h2 reactor would type into that pane
    ok(db, "session", "register", "alpha", "--target", "%2", "--host", "h2")
    ok(db, "session", "end", "alpha")
    for args in (("session", "heartbeat", "alpha"), ("spawn", "start", "alpha", "t1", "--type", "build")):
        assert f'login "{name}" may not act for project "alpha"' in refused(agent, *args).stderr
    assert conn.execute("SELECT ended_at IS NOT NULL AS ended FROM ps_health.ps_sessions").fetchone()["ended"]
    assert conn.execute("SELECT count(*) AS n FROM ps_health.active_spawns").fetchone()["n"] == 0
    ok(agent, "session", "register", "alpha", "--target", "%1", "--host", "h1")
    assert conn.execute("SELECT host FROM ps_health.ps_sessions WHERE project = 'alpha'").fetchone()["host"] == "h1"
    assert conn.execute("SELECT ps_health.revoke_agent_host(%s) AS n", (name,)).fetchone()["n"] == 1
    ok(agent, "session", "register", "alpha", "--target", "%2", "--host", "h2")  # unbound: any host, as before


@pytest.mark.parametrize("queued", ["SELECT ps_health.update_session_context('alpha', 97)",
                                    "SELECT ps_health.finish_spawn('alpha', 't2', 1, 'the agent''s own words')"])
def test_a_call_that_waited_for_the_project_decides_on_the_session_it_then_finds(db, conn, login, queued):
    # A bound agent's call queued behind the h2 reactor moving alpha's session to h2 must not act for it
    # there (a critical context report, or a failed spawn with its error line, would be typed into the h2 pane).
    name, agent = login("ps_health_agent")
    reactor_name, reactor = login("ps_health_reactor")
    conn.execute("SELECT ps_health.grant_agent(%s, 'alpha'), ps_health.grant_agent_host(%s, 'h1'), "
                 "ps_health.grant_reactor(%s, 'h2')", (name, name, reactor_name))
    with psycopg.connect(agent, autocommit=True) as c:
        c.execute("SELECT ps_health.register_session('alpha', 'cli', '%1', 'h1')")
        c.execute("SELECT ps_health.start_spawn('alpha', 't2', 'build', NULL, NULL, NULL, 'h1')")
        c.execute("SELECT ps_health.end_session('alpha')")  # ended: the h2 reactor may start alpha's next one there
    waiting = ("SELECT count(*) AS n FROM pg_stat_activity "
               "WHERE wait_event_type = 'Lock' AND datname = current_database()")
    errors: dict[str, Exception | None] = {}

    def call(who: str, dsn: str, statement: str) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute(statement)
            errors[who] = None
        except psycopg.Error as exc:
            errors[who] = exc

    with psycopg.connect(agent) as holder:  # a transaction of the agent's holds alpha's lock
        holder.execute("SELECT ps_health.end_session('alpha')")
        calls = [threading.Thread(target=call, args=("reactor", reactor, "SELECT ps_health.register_session("
                                                     "'alpha', 'cli', '%7', 'h2')")),
                 threading.Thread(target=call, args=("agent", agent, queued))]
        for n, thread in enumerate(calls, 1):
            thread.start()
            wait_for(lambda n=n: conn.execute(waiting).fetchone()["n"] >= n, timeout=10,
                     what=f"{n} call(s) to wait for alpha's lock")
        holder.commit()
    for thread in calls:
        thread.join(30)
    assert errors["reactor"] is None
    assert isinstance(errors["agent"], psycopg.errors.InsufficientPrivilege), errors["agent"]
    assert f'login "{name}" may not act for project "alpha"' in str(errors["agent"])
    row = conn.execute("SELECT host, tmux_target, context_usage FROM ps_health.ps_sessions").fetchone()
    assert (row["host"], row["tmux_target"], row["context_usage"]) == ("h2", "%7", None)
    # (alpha's new session is told of the spawn its last one left running: that is all)
    texts = [r["text"] for r in conn.execute("SELECT text FROM ps_health.prompts")]
    assert not any("own words" in text or "context window" in text for text in texts), texts
    assert conn.execute("SELECT status FROM ps_health.active_spawns WHERE task_id = 't2'").fetchone()["status"] \
        == "running"


def test_a_reactor_login_forwards_facts_for_its_host_only(db, conn, login):
    _two_projects(db)
    name, reactor = login("ps_health_reactor")
    conn.execute("SELECT ps_health.grant_reactor(%s, 'h1')", (name,))

    ok(reactor, "session", "heartbeat", "alpha")
    ok(reactor, "spawn", "start", "alpha", "hooked", "--type", "research", env={"PS_HEALTH_HOST": "h1"})
    ok(reactor, "session", "register", "gamma", "--target", "%3", "--host", "h1")
    res = refused(reactor, "session", "register", "delta", "--target", "%4", "--host", "h2")
    assert f'login "{name}" may not act for project "delta" on host "h2"' in res.stderr
    refused(reactor, "session", "heartbeat", "beta")
    refused(reactor, "context", "beta", "--percent", "99")
    assert conn.execute("SELECT count(*) AS n FROM ps_health.ps_sessions WHERE project = 'delta'").fetchone()["n"] == 0


def test_a_call_naming_no_project_is_told_the_project_is_required_whoever_makes_it(db, conn, login):
    # (not "may not act for host NULL": the field is missing, whatever the login may do)
    _two_projects(db)
    name, reactor = login("ps_health_reactor")
    agent_name, agent = login("ps_health_agent")
    conn.execute("SELECT ps_health.grant_reactor(%s, 'h1'), ps_health.grant_agent(%s, 'alpha')", (name, agent_name))
    for dsn in (reactor, agent, db):
        with psycopg.connect(dsn, autocommit=True) as c:
            for call in ("heartbeat_session(NULL)", "end_session(NULL)", "start_spawn(NULL, 't9', 'impl')",
                         "report_context(NULL, 50)"):
                with pytest.raises(psycopg.errors.InvalidParameterValue) as refused_call:
                    c.execute(f"SELECT ps_health.{call}")
                assert refused_call.value.diag.message_primary == "project is required", call
    # and a login that may not act for a project learns nothing of it, not even whether it has a session
    with psycopg.connect(agent, autocommit=True) as c:
        for project in ("beta", "no-such-project"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f'may not act for project "{project}"'):
                c.execute("SELECT ps_health.report_context(%s, 50)", (project,))


def test_a_reactor_for_a_host_not_granted_to_its_login_stops_with_a_clear_error(db, login):
    _two_projects(db)
    name, reactor = login("ps_health_reactor")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PS_HEALTH_", "PG"))}
    env.update(PYTHONPATH=str(ROOT), PS_HEALTH_DSN=reactor)
    res = subprocess.run([sys.executable, "-m", "reactor", "--host", "h2", "--worker", "evil", "--probe-interval", "0"],
                         capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 2, res.stderr
    assert f'ps-health: login "{name}" may not act for host "h2" [42501]' in res.stderr
    assert "Traceback" not in res.stderr
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM ps_health.prompts WHERE state = 'claimed'").fetchone()[0] == 0


def test_run_cli_as_a_reader_sees_every_project(db, login):
    _two_projects(db)
    _, reader = login("ps_health_reader")
    out = ok(reader, "status").stdout
    assert "alpha" in out and "beta" in out
    assert "h2:%2" in run_cli(reader, "prompts").stdout


@pytest.mark.parametrize("role", ["ps_health_agent", "ps_health_reactor", "ps_health_reader"])
def test_doctor_and_the_schema_commands_answer_any_login_in_a_sentence(db, login, tmp_path, role):
    _, dsn = login(role)
    env = {"HOME": str(tmp_path), "PS_HEALTH_HOST": "h1", "PS_HEALTH_TMUX_SOCKET": f"none-{uuid.uuid4().hex[:6]}"}
    res = run_cli(dsn, "doctor", env=env, cwd=str(tmp_path))
    assert "Traceback" not in res.stdout + res.stderr
    assert "warn  schema      this login may not read the schema's records" in res.stdout, res.stdout
    assert "skip  panes       this login may not see it: " in res.stdout, res.stdout  # said why, nothing failed
    status = run_cli(dsn, "migrate", "status")
    assert (status.returncode, status.stdout) == (2, ""), status
    assert status.stderr.startswith("ps-health: permission denied for schema ps_health_meta [42501]"), status.stderr
    build = run_cli(dsn, "migrate")  # an error on its way up no code mapped: the same one sentence
    assert build.returncode == 2 and build.stderr.startswith("ps-health: ") and "Traceback" not in build.stderr, build
    drift = run_cli(dsn, "drift")
    assert drift.returncode == 2 and "Traceback" not in drift.stderr, drift.stderr
    assert "hint: run it with the owner's login" in drift.stderr, drift.stderr


def test_no_login_can_hold_the_locks_of_the_sweep_a_project_the_settings_or_a_host(db, conn, login):
    """Any login may take any advisory lock; ps-health's locks are rows only the owner may lock, so an agent
    holding the keys ps-health once used stops no sweep, no other project's call, no settings change and no
    reactor, and sees no key of ps-health's in pg_locks to copy."""
    agent_name, agent = login("ps_health_agent")
    reactor_name, reactor = login("ps_health_reactor")
    conn.execute("SELECT ps_health.grant_agent(%s, 'beta'), ps_health.grant_reactor(%s, 'h1')",
                 (agent_name, reactor_name))
    ok(db, "session", "register", "alpha", "--target", "%1", "--host", "h1")
    keys = ["hashtext('ps_health.run_checks')", "hashtext('ps_health.project'), hashtext('alpha')",
            "hashtext('ps_health.settings'), 0", "hashtext('ps_health.reactor'), hashtext('h1')"]
    with psycopg.connect(agent, autocommit=True) as attacker:
        for key in keys:
            attacker.execute(f"SELECT pg_advisory_lock({key})")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            attacker.execute("SELECT 1 FROM ps_health.locks FOR UPDATE")
        # (a wait for a lock ends after 5 s with an error instead of hanging the test)
        with psycopg.connect(db, autocommit=True, options="-c lock_timeout=5s") as owner:
            sweep = owner.execute("SELECT ps_health.run_checks()").fetchone()[0]
            assert not sweep.get("skipped"), sweep
            owner.execute("SELECT ps_health.heartbeat_session('alpha')")
            owner.execute("SELECT ps_health.set_setting('idle_seconds', '7', 'alpha')")
            # a call holding alpha's lock shows no key to take
            with psycopg.connect(db, options="-c lock_timeout=5s") as holder:
                holder.execute("SELECT ps_health.heartbeat_session('alpha')")
                # (in this database: tests running beside this one take advisory locks in theirs)
                held = owner.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid <> %s "
                                     "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                                     (attacker.info.backend_pid,)).fetchone()[0]
                assert held == 0
        first = psycopg.connect(reactor, autocommit=True, options="-c lock_timeout=5s")
        try:
            assert first.execute("SELECT ps_health.reactor_start('h1', 'h1:1')").fetchone()[0] is True
            with psycopg.connect(reactor, autocommit=True) as second:
                running = 'host "h1" is already running: worker "h1:1"'
                with pytest.raises(psycopg.errors.LockNotAvailable, match=running):
                    second.execute("SELECT ps_health.reactor_start('h1', 'h1:2')")
                pid = first.info.backend_pid
                first.close()  # a reactor whose connection is gone no longer holds its host
                wait_for(lambda: not conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone(),
                         what="the first reactor's backend to end")
                assert second.execute("SELECT ps_health.reactor_start('h1', 'h1:2')").fetchone()[0] is True
        finally:
            first.close()


def test_a_login_listening_on_the_wake_up_channel_learns_no_project_or_pane(db, conn, login):
    _, agent = login("ps_health_agent")  # granted nothing: any login may LISTEN on any channel
    with psycopg.connect(agent, autocommit=True) as spy:
        spy.execute("LISTEN ps_health")
        ok(db, "session", "register", "secret-merger", "--target", "%42", "--host", "h1")
        ok(db, "spawn", "start", "secret-merger", "t1", "--type", "build")
        ok(db, "spawn", "finish", "secret-merger", "t1", "--exit-code", "1", "--error", "boom")
        payloads = [n.payload for n in spy.notifies(timeout=5, stop_after=2)]
    assert len(payloads) == 2, payloads  # the pane registered, then the prompt
    assert not [p for p in payloads if "secret" in p or "%42" in p], payloads


def test_with_the_notify_queue_past_its_limit_calls_still_commit_and_the_prompt_waits_for_a_claim(db, conn):
    """Any login can fill the cluster's NOTIFY queue (a LISTEN in a transaction it never ends, then 8 GB of its
    own notifications); a full queue fails the commit of every transaction that notifies. Past half full,
    ps-health sends no wake-up: its calls commit, and the reactor finds the prompt on its poll. (The test
    lowers the limit instead of filling 8 GB.)"""
    conn.execute("CREATE OR REPLACE FUNCTION ps_health._notify_queue_limit() RETURNS double precision "
                 "LANGUAGE sql STABLE AS $$ SELECT 0::double precision $$")
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute("LISTEN ps_health")
        ok(db, "session", "register", "alpha", "--target", "%1", "--host", "h1")
        ok(db, "spawn", "start", "alpha", "t1", "--type", "build")
        ok(db, "spawn", "finish", "alpha", "t1", "--exit-code", "1", "--error", "boom")
        conn.execute("NOTIFY ps_health, 'marker'")  # delivered after anything committed before it
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert payloads == ["marker"], payloads
    claimed = conn.execute("SELECT project FROM ps_health.claim_prompts('h1', 'h1:1', 10, 60)").fetchall()
    assert [r["project"] for r in claimed] == ["alpha"]


def test_a_reactor_counts_as_running_only_while_its_own_listener_connection_is_open(db, conn, login):
    """pid, login and application_name tell the listener from a later backend given the same pid, and the owner
    restarting a login's worker takes the worker over, so that login's second reactor is still refused."""
    name, reactor = login("ps_health_reactor")
    conn.execute("SELECT ps_health.grant_reactor(%s, '*')", (name,))
    live = "SELECT array_agg(worker ORDER BY worker) AS w FROM ps_health._live_reactors()"
    with psycopg.connect(reactor, autocommit=True, application_name="ps-health-reactor:listen") as first, \
            psycopg.connect(reactor, autocommit=True, application_name="ps-health-reactor:work") as other:
        assert first.execute("SELECT ps_health.reactor_start('h1', 'h1:1')").fetchone()[0] is True
        assert conn.execute(live).fetchone()["w"] == ["h1:1"]
        # the listener gone and its pid given to another backend of the same login (pids wrap)
        conn.execute("UPDATE ps_health.reactors SET backend_pid = %s WHERE worker = 'h1:1'", (other.info.backend_pid,))
        assert conn.execute(live).fetchone()["w"] is None, "a backend that is not the listener keeps nothing alive"
        # ... or to another reactor's listener, which clears the gone one's pid as it starts
        conn.execute("UPDATE ps_health.reactors SET backend_pid = %s WHERE worker = 'h1:1'", (first.info.backend_pid,))
        assert first.execute("SELECT ps_health.reactor_start('h2', 'h2:1')").fetchone()[0] is True
        assert conn.execute(live).fetchone()["w"] == ["h2:1"]
        with psycopg.connect(reactor, autocommit=True) as second:
            assert second.execute("SELECT ps_health.reactor_start('h1', 'h1:2')").fetchone()[0] is True
    # the owner restarts a login's worker: the worker is the owner's now, and counts as running
    with psycopg.connect(db, autocommit=True) as owner, psycopg.connect(reactor, autocommit=True) as third:
        assert owner.execute("SELECT ps_health.reactor_start('h1', 'h1:2')").fetchone()[0] is True
        assert conn.execute(live).fetchone()["w"] == ["h1:2"]
        with pytest.raises(psycopg.errors.LockNotAvailable, match='already running: worker "h1:2"'):
            third.execute("SELECT ps_health.reactor_start('h1', 'h1:3')")


def test_a_worker_id_serves_one_host_at_a_time(conn, login):
    """A start or a claim under a worker id that is the running reactor of another host moved its row there: the
    first host was left without a running reactor, and a second one for it started beside the first (one login
    granted two hosts ran three reactors, two of them for one host). While its listener is open, both are
    refused, naming the host it serves."""
    name, reactor = login("ps_health_reactor")
    for host in ("host-a", "host-b"):
        conn.execute("SELECT ps_health.grant_reactor(%s, %s)", (name, host))
    live = "SELECT array_agg(worker || ' on ' || host ORDER BY worker) AS w FROM ps_health._live_reactors()"
    elsewhere = 'worker "W1" is already running as the reactor of host "host-a"'
    with psycopg.connect(reactor, autocommit=True, application_name="ps-health-reactor:listen") as listener, \
            psycopg.connect(reactor, autocommit=True) as other:
        assert listener.execute("SELECT ps_health.reactor_start('host-a', 'W1')").fetchone()[0] is True
        for call in ("SELECT * FROM ps_health.claim_prompts('host-b', 'W1')",
                     "SELECT ps_health.reactor_start('host-b', 'W1')"):
            with pytest.raises(psycopg.errors.LockNotAvailable, match=elsewhere):
                other.execute(call)
        assert conn.execute(live).fetchone()["w"] == ["W1 on host-a"]
        with pytest.raises(psycopg.errors.LockNotAvailable, match='already running: worker "W1"'):
            other.execute("SELECT ps_health.reactor_start('host-a', 'W2')")
        assert other.execute("SELECT count(*) FROM ps_health.claim_prompts('host-a', 'W1')").fetchone()[0] == 0
        assert conn.execute(live).fetchone()["w"] == ["W1 on host-a"], "a claim for its own host is as before"
    with psycopg.connect(reactor, autocommit=True) as later:  # its listener closed: the id is free to move
        assert later.execute("SELECT ps_health.reactor_start('host-b', 'W1')").fetchone()[0] is True
        assert conn.execute(live).fetchone()["w"] == ["W1 on host-b"]


@pytest.mark.parametrize("other", ["the owner starting it for another host", "its login claiming for another host"])
def test_a_worker_id_taken_meanwhile_is_not_moved_to_another_host(db, conn, login, other):
    """The refusal looked at the running reactors as the call's snapshot saw them: a start of the worker for host-a
    committed while the other call waited behind its row, so that call moved the row to host-b all the same, and a
    second reactor for host-a started (17 of 60 unforced races did). It looks at the row as committed when it got
    to it."""
    name, reactor = login("ps_health_reactor")
    for host in ("host-a", "host-b"):
        conn.execute("SELECT ps_health.grant_reactor(%s, %s)", (name, host))
    with psycopg.connect(reactor, autocommit=True, application_name="ps-health-reactor:listen") as gone:
        gone.execute("SELECT ps_health.reactor_start('host-a', 'W1')")  # (its listener has ended since)
    started, refusal = {}, {}
    with psycopg.connect(reactor, autocommit=True, application_name="ps-health-reactor:listen") as listener, \
            psycopg.connect(db if other.startswith("the owner") else reactor, autocommit=True,
                            application_name="ps-health-reactor:listen") as second, psycopg.connect(db) as blocker:
        blocker.execute("SELECT 1 FROM ps_health.reactors WHERE worker = 'W1' FOR UPDATE")
        waiting = "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = %s"

        def call(conn_, query, out):
            try:
                out["result"] = conn_.execute(query).fetchone()[0]
            except psycopg.Error as exc:
                out["error"] = exc

        threads = [threading.Thread(target=call, args=(listener, "SELECT ps_health.reactor_start('host-a', 'W1')",
                                                      started))]
        threads[0].start()
        wait_for(lambda: conn.execute(waiting, (listener.info.dbname,)).fetchone()["n"] == 1, what="the start waiting")
        query = ("SELECT ps_health.reactor_start('host-b', 'W1')" if other.startswith("the owner")
                 else "SELECT count(*) FROM ps_health.claim_prompts('host-b', 'W1')")
        threads.append(threading.Thread(target=call, args=(second, query, refusal)))
        threads[1].start()
        wait_for(lambda: conn.execute(waiting, (listener.info.dbname,)).fetchone()["n"] == 2, what="both waiting")
        blocker.rollback()
        for thread in threads:
            thread.join(30)
        assert started == {"result": True}
        assert isinstance(refusal.get("error"), psycopg.errors.LockNotAvailable), refusal
        assert 'worker "W1" is already running as the reactor of host "host-a"' in str(refusal["error"])
        assert conn.execute("SELECT array_agg(worker || ' on ' || host) AS w FROM ps_health._live_reactors()"
                            ).fetchone()["w"] == ["W1 on host-a"]
        with psycopg.connect(reactor, autocommit=True) as third:
            with pytest.raises(psycopg.errors.LockNotAvailable, match='already running: worker "W1"'):
                third.execute("SELECT ps_health.reactor_start('host-a', 'W3')")


def test_a_reactor_login_that_leaves_its_sweep_open_is_ended_and_the_sweeps_go_on(db, conn, login):
    name, reactor = login("ps_health_reactor")
    conn.execute("SELECT ps_health.grant_reactor(%s, 'h9')", (name,))
    ok(db, "session", "register", "alpha", "--target", "%1", "--host", "h1")
    held = psycopg.connect(reactor)  # BEGIN; run_checks(); then nothing
    try:
        assert not held.execute("SELECT ps_health.run_checks()").fetchone()[0].get("skipped")
        pid = held.info.backend_pid
        wait_for(lambda: not conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone(),
                 timeout=20, what="the idle transaction ended by the server")
    finally:
        held.close()
    assert not conn.execute("SELECT ps_health.run_checks()").fetchone()["run_checks"].get("skipped")
    ok(db, "session", "heartbeat", "alpha")


def test_a_reactor_login_cannot_touch_another_hosts_prompts_through_a_worker_id_or_learn_of_them(db, conn, login):
    """A worker id says nothing of who may use it: a reactor that stopped leaves its claims under an id with no row,
    and any login may claim with that id again. Outcomes, leases and releases go only to prompts of a host the login
    may act for; another host's prompt is as unknown to it as one that does not exist, and it locks nothing of
    that host's projects on the way to being refused."""
    _two_projects(db)
    dsns = _tenants(conn, login)
    reactor1, reactor2, agent_b = dsns["reactor1"], dsns["reactor2"], dsns["agent_b"]
    beta = conn.execute("SELECT max(id) AS id FROM ps_health.prompts WHERE project = 'beta'").fetchone()["id"]
    missing = beta + 1000
    with psycopg.connect(reactor2, autocommit=True) as r2:  # h2's reactor claims, then restarts as another worker
        assert [r[0] for r in r2.execute("SELECT id FROM ps_health.claim_prompts('h2', 'h2:100')")] == [beta]
        r2.execute("SELECT ps_health.reactor_start('h2', 'h2:101')")
    assert conn.execute("SELECT count(*) AS n FROM ps_health.reactors WHERE worker = 'h2:100'").fetchone()["n"] == 0

    def refusal(dsn: str, query: str, *args) -> tuple[str, str]:
        error = _refused(dsn, query, *args)
        return error.sqlstate, error.diag.message_primary

    with psycopg.connect(reactor1, autocommit=True) as r1:
        r1.execute("SELECT * FROM ps_health.claim_prompts('h1', 'h2:100')")  # the id is free: h1's reactor takes it
        extended = r1.execute("SELECT ps_health.extend_leases('h2:100', ARRAY[%s]::bigint[], 86400)", (beta,))
        assert extended.fetchone()[0] == 0
        assert r1.execute("SELECT ps_health.locked_prompts('h2:100', ARRAY[%s]::bigint[])", (beta,)).fetchall() == []
        assert r1.execute("SELECT ps_health.release_prompts('h2:100', ARRAY[%s]::bigint[])", (beta,)).fetchone()[0] == 0
        r1.execute("SELECT ps_health.release_prompts('h2:100')")  # (its own claim of alpha's prompt goes back)
    for worker in ("h2:100", "h1:w"):
        assert refusal(reactor1, "SELECT ps_health.complete_prompt(%s, %s, 'delivered')", beta, worker) \
            == ("P0002", f"unknown prompt {beta}")
    assert refusal(reactor1, "SELECT ps_health.complete_prompt(%s, 'h1:w', 'delivered')", missing) \
        == ("P0002", f"unknown prompt {missing}"), "the same answer as for a prompt that does not exist"
    row = conn.execute("SELECT state, worker, lease_until < now() + interval '1 hour' AS short FROM ps_health.prompts "
                       "WHERE id = %s", (beta,)).fetchone()
    assert (row["state"], row["worker"], row["short"]) == ("claimed", "h2:100", True), "beta's prompt is untouched"

    # while beta's own agent holds beta's lock, h1's reactor is refused at once: it takes no lock of beta's
    with psycopg.connect(agent_b) as holder:
        holder.execute("SELECT ps_health.heartbeat_session('beta')")
        assert refusal(reactor1, "SELECT ps_health.complete_prompt(%s, 'h1:w', 'bogus')", beta)[0] == "22023"
        assert refusal(reactor1, "SELECT * FROM ps_health.complete_prompts('h1:w', ARRAY[%s]::bigint[], "
                                 "ARRAY['delivered'])", beta) == ("P0002", f"unknown prompt {beta}")
        holder.rollback()


def test_system_health_shows_a_login_only_the_reactors_of_its_hosts_and_projects(db, conn, login):
    _two_projects(db)
    dsns = _tenants(conn, login)
    reactor1, reactor2, agent_a = dsns["reactor1"], dsns["reactor2"], dsns["agent_a"]

    def reactors(dsn: str) -> list[str]:
        with psycopg.connect(dsn, autocommit=True) as c:
            return sorted(r["worker"] for r in c.execute("SELECT ps_health.system_health() -> 'reactors' AS r")
                          .fetchone()[0])

    with psycopg.connect(reactor1, autocommit=True) as l1, psycopg.connect(reactor2, autocommit=True) as l2:
        l1.execute("SELECT ps_health.reactor_start('h1', 'h1:one')")
        l2.execute("SELECT ps_health.reactor_start('h2', 'h2:secret')")
        assert reactors(db) == ["h1:one", "h2:secret"], "the owner sees every reactor"
        assert reactors(reactor1) == ["h1:one"]
        assert reactors(reactor2) == ["h2:secret"]
        assert reactors(agent_a) == ["h1:one"], "alpha's agent sees the reactor of alpha's host only"


# (login, call, SQLSTATE, the error's first line); each call is refused before any lookup or lock, naming the field
BAD_INPUT = [
    ("reactor", "record_session_end(NULL)", "22023", "project is required"),
    ("reactor", "record_session_end('')", "22023", "project is required"),
    ("reactor", "record_session_end(E'x\\x1b[2J')", "22023",
     'project must not contain control or invisible formatting characters: "x?[2J"'),
    ("reactor", "report_handoff_file(NULL, 'f', now())", "22023", "project is required"),
    ("reactor", "report_session_targets(ARRAY[NULL], ARRAY['seen'])", "22023", "project is required"),
    ("reactor", "probe_sessions(NULL)", "22023", "host is required"),
    ("reactor", "probe_spawns('')", "22023", "host is required"),
    ("reactor", "handoff_watches(E'h\\x1b')", "22023",
     'host must not contain control or invisible formatting characters: "h?"'),
    ("reactor", "complete_prompt(1, NULL, 'delivered')", "22023", "worker is required"),
    ("reactor", "extend_leases('', ARRAY[1]::bigint[])", "22023", "worker is required"),
    ("reactor", "record_context('%1', 'h1', 'alpha', NULL, NULL, 'NaN', 200000)", "22023",
     "context_percentage must be between 0 and 100, got NaN"),
    ("agent", "setting('idle_seconds', '')", "22023", "project is required"),
    ("agent", "list_settings(E'x\\x1b')", "22023",
     'project must not contain control or invisible formatting characters: "x?"'),
    ("agent", "report_spawn_output('alpha', NULL)", "22023", "task_id is required"),
    ("agent", "finish_spawn('alpha', repeat('p', 300), 0)", "22023",
     'task_id is too long (300 characters, at most 255): "pppppppppppppppppppppppppppppppppppppppp..."'),
    ("agent", "statusline(NULL, NULL, 'alpha', 'Infinity', 200000)", "22023",
     "context_percentage must be between 0 and 100, got Infinity"),
    ("agent", "statusline(NULL, NULL, 'alpha', 1e12, 200000)", "22023",
     "context_percentage must be between 0 and 100, got 1000000000000"),
    ("agent", "set_spawn_status('alpha', 't1', 'stalled', 'infinity')", "22023", None),
    ("agent", "set_spawn_status('alpha', 't1', 'bogus')", "22023", None),
    ("agent", "set_spawn_status('alpha', 't1', NULL)", "22023", "status is required"),
]


def test_bad_input_is_refused_naming_the_field_whoever_sends_it(db, conn, login):
    _two_projects(db)
    dsns = _tenants(conn, login)
    before = conn.execute("SELECT count(*) AS n, max(status) AS s FROM ps_health.active_spawns").fetchone()
    for who, call, sqlstate, message in BAD_INPUT:
        error = _refused(dsns["reactor1" if who == "reactor" else "agent_a"], f"SELECT * FROM ps_health.{call}")
        assert (error.sqlstate, error.diag.message_primary if message else None) == (sqlstate, message), call
    said = [_refused(dsns["agent_a"], f"SELECT * FROM ps_health.{call}").diag.message_primary
            for call in ("set_spawn_status('alpha', 't1', 'stalled', 'infinity')",
                         "set_spawn_status('alpha', 't1', 'bogus')")]
    assert said[0].startswith("p_now must be") and said[1].startswith("status must be one of "), said
    assert conn.execute("SELECT count(*) AS n, max(status) AS s FROM ps_health.active_spawns").fetchone() == before


def test_a_reactor_gets_no_hold_on_prompts_without_a_host_nor_on_other_hosts_sessions(db, conn, login):
    """Only escalations are every reactor's among the prompts without a host (one waiting for its session is
    nobody's); a prompt this worker does not hold has its project's lock left alone; and a reactor learns nothing
    of the sessions of a host it does not serve."""
    _two_projects(db)
    dsns = _tenants(conn, login)
    reactor1, reactor2 = dsns["reactor1"], dsns["reactor2"]
    ok(db, "spawn", "start", "beta", "t2", "--type", "build")
    conn.execute("SELECT ps_health.end_session('beta')")  # its running spawn is orphaned work: a prompt, no host
    waiting = conn.execute("SELECT id FROM ps_health.prompts WHERE project = 'beta' AND host IS NULL "
                           "AND channel <> 'escalation' ORDER BY id DESC LIMIT 1").fetchone()["id"]
    error = _refused(reactor1, "SELECT ps_health.complete_prompt(%s, 'h1:w', 'delivered')", waiting)
    assert (error.sqlstate, error.diag.message_primary) == ("P0002", f"unknown prompt {waiting}")

    pending = conn.execute("SELECT id FROM ps_health.prompts WHERE project = 'beta' AND host = 'h2' "
                           "ORDER BY id LIMIT 1").fetchone()["id"]
    with psycopg.connect(dsns["agent_b"]) as holder:  # beta's agent holds beta's lock
        holder.execute("SELECT ps_health.register_session('beta', 'cli', '%2', 'h2')")
        error = _refused(reactor2, "SELECT ps_health.complete_prompt(%s, 'h2:w', 'delivered')", pending)
        assert error.sqlstate == "55000", "refused at once, not after waiting for beta's lock"
        holder.rollback()

    for project in ("beta", "no-such-project"):
        error = _refused(reactor1, "SELECT ps_health.bind_target(%s, 'h2', '%%2', '1 2 %%2 3')", project)
        assert (error.sqlstate, error.diag.message_primary) == ("42501", f'login "{_login(reactor1)}" may not act '
                                                                          'for host "h2"'), project


def _login(dsn: str) -> str:
    return conninfo_to_dict(dsn)["user"]


def test_a_reactors_default_worker_id_cannot_be_guessed_by_another_host():
    from reactor.cli.reactor import default_worker

    first, second = default_worker("h2"), default_worker("h2")
    assert first != second and re.fullmatch(rf"h2:{os.getpid()}:[0-9a-f]{{8}}", first), (first, second)


def test_a_sweep_run_by_a_reactor_login_tells_it_of_its_own_projects_only(db, conn, login):
    _two_projects(db)
    dsns = _tenants(conn, login)
    ok(db, "spawn", "start", "beta", "t2", "--type", "build")
    with psycopg.connect(dsns["reactor1"], autocommit=True) as c:
        sweep = c.execute("SELECT ps_health.run_checks() AS s").fetchone()[0]
    assert sweep["targets"] == 1, sweep  # alpha's session (beta's session and running spawn are h2's)
    owner = conn.execute("SELECT targets FROM ps_health.sweep_runs ORDER BY swept_at DESC LIMIT 1").fetchone()
    assert owner["targets"] == 3, "the sweep itself covered every project"
