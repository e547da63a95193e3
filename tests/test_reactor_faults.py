"""The reactor survives losing its database: prompts queued while it was cut off arrive after reconnect."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from reactor.db.migrate import Runner
from reactor.tmux.client import sanitise
from tests.netproxy import Relay
from tests.reactor_proc import HOST, Reactors, create_login, delivered, failed_spawn, fast, session, submitted
from tests.support import wait_for

pytestmark = pytest.mark.faults

LISTENER = "ps-health-reactor:listen"
WORK = "ps-health-reactor:work"
COMPLETE = "ps-health-reactor:complete"
PROBE = "ps-health-reactor:probe"
# A poll interval far beyond every deadline: a prompt arrives only by NOTIFY or the drain after a reconnect.
NO_POLL = "600"


def _listener_pid(conn) -> int:
    return wait_for(lambda: (row := conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
        (LISTENER,)).fetchone()) and row["pid"], what="the reactor's listener connection")


def _reconnected(proc, drained: int) -> str:
    return wait_for(lambda: re.search(rf"reconnected after \d+ s, drained {drained} prompts", proc.text()),
                    timeout=30, what="the reconnect log line").group(0)


def test_killed_listener_reconnects_and_delivers_what_was_queued_meanwhile(conn, db, admin_dsn,
                                                                           tmux_server, reactors):
    fast(conn)
    pane = tmux_server.recorder()
    session(conn, "alpha", pane.target)
    proc = reactors.start(poll=NO_POLL)
    wait_for(lambda: "listening on channel" in proc.text(), what="the reactor serving")
    old_pid = _listener_pid(conn)
    name = sql.Identifier(conninfo_to_dict(db)["dbname"])

    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        # Keep the reactor from reconnecting until the prompt is queued; this test's connection stays.
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
        try:
            assert conn.execute("SELECT pg_terminate_backend(%s, 5000) AS ok", (old_pid,)).fetchone()["ok"]
            wait_for(lambda: "database went away" in proc.text(), what="the outage noticed")
            prompt_id = failed_spawn(conn, "alpha")
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))

    row = delivered(conn, prompt_id, timeout=30)
    assert submitted(pane) == sanitise(row["text"]).encode() + b"\r"
    _reconnected(proc, 1)
    assert _listener_pid(conn) != old_pid
    assert proc.text().count("database went away") == 1
    assert proc.running()


def test_server_restart_reconnects_and_delivers_what_was_queued_meanwhile(own_cluster, tmux_server, tmp_path):
    # A server of this test's own: restarting the shared one would cut off every other test.
    cluster, admin_dsn, db = own_cluster, own_cluster.dsn("postgres"), own_cluster.dsn()
    Runner(db, say=lambda _: None).migrate()
    role, password = f"reactor_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    create_login(admin_dsn, role, password, "ps_health_reactor")
    # The reactor logs in as its own role, so it alone can be kept out after the restart.
    group = Reactors(make_conninfo(db, user=role, password=password), tmux_server, tmp_path, login=role, owner_dsn=db)
    try:
        with psycopg.connect(db, autocommit=True, row_factory=dict_row) as conn:
            fast(conn)
            pane = tmux_server.recorder()
            session(conn, "alpha", pane.target)
            proc = group.start(poll=NO_POLL)
            wait_for(lambda: "listening on channel" in proc.text(), what="the reactor serving")
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))

        cluster.restart()

        with psycopg.connect(db, autocommit=True, row_factory=dict_row) as conn:
            wait_for(lambda: "database went away" in proc.text(), what="the outage noticed")
            prompt_id = failed_spawn(conn, "alpha")
            with psycopg.connect(admin_dsn, autocommit=True) as admin:
                admin.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(role)))
            row = delivered(conn, prompt_id, timeout=40)
        assert submitted(pane) == sanitise(row["text"]).encode() + b"\r"
        _reconnected(proc, 1)
        assert proc.text().count("database went away") == 1
        assert proc.stop() == 0
    finally:
        group.stop_all()


_LOCKING_AGENT = ("ps_health_test_locking_agent", "locking-agent-pw")


def _pane_state(conn, project: str) -> str:
    return conn.execute("SELECT target_state FROM ps_health.ps_sessions WHERE project = %s",
                        (project,)).fetchone()["target_state"]


def _reactor_sweeps(conn) -> int:
    return conn.execute("SELECT count(*) AS n FROM ps_health.sweep_runs WHERE source = 'reactor'").fetchone()["n"]


def test_an_agent_transaction_left_open_holds_up_no_other_project(conn, db, admin_dsn, tmux_server, reactors):
    # An agent login calls an API function for each of its four projects and leaves its transaction open: their
    # locks stay taken. The reactor's probes, sweep and outcomes for every other project of the host go on,
    # however many outcomes wait for those locks; theirs are recorded once the transaction ends.
    fast(conn)
    login, password = _LOCKING_AGENT
    create_login(admin_dsn, login, password, "ps_health_agent")
    locked = [f"alpha{n}" for n in range(4)]
    for project in locked:
        conn.execute("SELECT ps_health.grant_agent(%s, %s)", (login, project))
    panes = {p: tmux_server.recorder(session=f"locked-{p}") for p in (*locked, "beta", "gamma")}
    for project, pane in panes.items():
        session(conn, project, pane.target)
    waiting = [failed_spawn(conn, project) for project in locked]
    conn.execute("UPDATE ps_health.prompts SET not_before = now() + interval '1 hour' WHERE id = ANY (%s)", (waiting,))
    proc = reactors.start("--run-checks-every", "0.3", poll="0.3", probe="0.3")
    wait_for(lambda: all(_pane_state(conn, p) == "seen" for p in panes), what="the panes seen and bound")

    agent = psycopg.connect(make_conninfo(db, user=login, password=password))  # not autocommit: stays open
    try:
        for project in locked:
            agent.execute("SELECT ps_health.heartbeat_session(%s)", (project,))
        conn.execute("UPDATE ps_health.prompts SET not_before = now() WHERE id = ANY (%s)", (waiting,))
        for project in locked:
            submitted(panes[project])  # typed; its outcome waits for the project's lock
        wait_for(lambda: proc.text().count("outcome delivered waits") == len(locked),
                 what="the outcomes kept for later")
        beta_prompt = failed_spawn(conn, "beta")
        assert delivered(conn, beta_prompt, timeout=6)["outcome"] == "delivered"
        sweeps = _reactor_sweeps(conn)
        tmux_server.run("kill-session", "-t", "locked-gamma")
        wait_for(lambda: _pane_state(conn, "gamma") == "gone", timeout=20, what="gamma's pane found gone")
        wait_for(lambda: _reactor_sweeps(conn) > sweeps, what="a sweep while the four are locked")
        assert {r["state"] for r in conn.execute("SELECT state FROM ps_health.prompts WHERE id = ANY (%s)",
                                                  (waiting,))} == {"claimed"}
    finally:
        agent.close()
    for prompt_id in waiting:
        delivered(conn, prompt_id, timeout=20)
    assert proc.text().count("outcome delivered waits") == len(locked)  # said once each
    assert proc.running()


def _claims(conn) -> int:
    row = conn.execute("SELECT calls FROM pg_stat_user_functions WHERE schemaname = 'ps_health' "
                       "AND funcname = 'claim_prompts'").fetchone()
    return row["calls"] if row else 0


def test_a_flood_of_wake_ups_costs_few_claims_and_a_prompt_sent_amid_it_is_delivered(conn, db, admin_dsn,
                                                                                      tmux_server, reactors):
    """Any login may NOTIFY the reactors' channel: 5,000 wake-ups naming the reactor's host, each in a transaction
    of its own, must not cost a claim each (before: a claim for every 5 to 15 of them), and a real prompt among them
    is typed as usual."""
    with psycopg.connect(admin_dsn, autocommit=True) as admin:  # (count the claims of this database's sessions)
        admin.execute(sql.SQL("ALTER DATABASE {} SET track_functions = 'all'").format(
            sql.Identifier(conninfo_to_dict(db)["dbname"])))
    fast(conn)
    pane = tmux_server.recorder()
    session(conn, "alpha", pane.target)
    proc = reactors.start(poll=NO_POLL)
    wait_for(lambda: "listening on channel" in proc.text(), what="the reactor serving")
    flood = 5000
    with psycopg.connect(db, autocommit=True) as noisy:
        for n in range(flood):
            noisy.execute("SELECT pg_notify('ps_health', %s)", (f'{{"id": {n}, "host": "{HOST}"}}',))
            if n == flood // 2:
                prompt_id = failed_spawn(conn, "alpha")
    row = delivered(conn, prompt_id, timeout=30)
    assert submitted(pane) == sanitise(row["text"]).encode() + b"\r"
    assert proc.stop() == 0
    # (a session's counts reach the statistics as it ends)
    wait_for(lambda: not conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
                                      " AND application_name LIKE 'ps-health-reactor:%'").fetchone()["n"],
             what="the reactor's connections closed")
    claims = wait_for(lambda: _claims(conn), what="the reactor's claims counted")
    assert claims <= flood // 20, f"{claims} claims for {flood} wake-ups"


def test_notifications_for_another_host_keep_the_listener_from_being_pinged(conn, tmux_server, reactors):
    """A ping (SELECT 1) sent while notifications wait on the listener returns only once every one of them was read
    and kept in memory: behind a flood naming another host the reactor claimed nothing and let its leases lapse
    for tens of seconds, at gigabytes. Notifications show the connection is alive: past the 10 s ping interval,
    while another host's notifications keep coming, the listener's last statement is still its LISTEN."""
    proc = reactors.start(poll=NO_POLL)
    wait_for(lambda: "listening on channel" in proc.text(), what="the reactor serving")
    pid = _listener_pid(conn)
    listener = "SELECT query FROM pg_stat_activity WHERE pid = %s"
    assert 'LISTEN "ps_health"' in conn.execute(listener, (pid,)).fetchone()["query"]
    with psycopg.connect(conn.info.dsn, autocommit=True) as noisy:
        deadline = time.monotonic() + 12  # (past one ping interval)
        while time.monotonic() < deadline:
            noisy.execute("SELECT pg_notify('ps_health', json_build_object('id', g, 'host', 'elsewhere')::text) "
                          "FROM generate_series(1, 20) g")
            time.sleep(0.01)
    assert 'LISTEN "ps_health"' in conn.execute(listener, (pid,)).fetchone()["query"], "the listener was pinged"
    assert _listener_pid(conn) == pid and proc.running()


@pytest.mark.parametrize("paused", ["listen", "work"])
def test_a_stop_waits_for_no_connection_that_does_not_answer(conn, server, tmux_server, reactors, paused):
    """A stop removed the reactor's row on its listener connection, which answers only once it has sent every
    notification waiting for it: behind a flood of them the stop took 5 to 23 s, and behind a listener whose server
    process does not answer at all it never ended. The listener is closed without a word and the row removed on
    the reactor's work connection, whose last calls get a few seconds: a server process that does not answer there
    keeps the reactor from exiting no longer either."""
    if server[1] is None:
        pytest.skip("the server runs in a container: its processes cannot be paused from here")
    proc = reactors.start(poll=NO_POLL)
    wait_for(lambda: "listening on channel" in proc.text(), what="the reactor serving")
    pid = wait_for(lambda: (row := conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
        (f"ps-health-reactor:{paused}",)).fetchone()) and row["pid"], what=f"the reactor's {paused} connection")
    live = "SELECT worker FROM _live_reactors()"
    os.kill(pid, signal.SIGSTOP)  # that connection's server process answers nothing
    try:
        assert proc.stop() == 0
        assert "stopped: released 0 undelivered prompts" in proc.text()
        if paused == "listen":  # its listener connection is not over for the server yet: the row stays, and counts
            assert [row["worker"] for row in conn.execute(live)] == [proc.worker]
        else:
            assert "the database did not answer the stop's last calls within 5 s" in proc.text()
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: not conn.execute(live).fetchall(), what="the stopped reactor no longer counting")


def _serving(conn, tmux_server, reactors):
    """(pane, reactor): a session of project alpha in a recording pane, and a reactor listening that claims only
    when woken."""
    fast(conn)
    pane = tmux_server.recorder()
    session(conn, "alpha", pane.target)
    proc = reactors.start(poll=NO_POLL)
    wait_for(lambda: "listening on channel" in proc.text(), what="the reactor serving")
    return pane, proc


@pytest.fixture
def relay(reactors):
    """The reactors of this test reach their database through a relay that can go silent (tests.netproxy)."""
    if reactors.login is None:
        pytest.skip("the server is not this run's own: no login of the reactor's to reach it over TCP with")
    relay = Relay("127.0.0.1", int(conninfo_to_dict(reactors.dsn)["port"]))
    reactors.dsn = make_conninfo(reactors.dsn, host="127.0.0.1", port=relay.port)
    yield relay
    relay.close()


def test_a_listener_that_gets_no_answer_is_given_up_and_the_reactor_serves_again(conn, tmux_server, reactors,
                                                                                relay):
    """The listener is pinged every 10 s when nothing comes; on a network path that drops everything the ping
    waited for an answer for as long as TCP took to give up (a quarter of an hour), or forever, claiming nothing
    meanwhile. Now a ping gets 10 s: then the connection is cut, the reactor reconnects, and delivers."""
    pane, proc = _serving(conn, tmux_server, reactors)
    assert relay.hold(LISTENER) == 1
    wait_for(lambda: relay.waiting(LISTENER), timeout=20, what="a ping sent on the silent path")
    wait_for(lambda: "listener ping failed: no answer within 10 s" in proc.text(), timeout=20,
             what="the ping given up")
    _reconnected(proc, 0)
    prompt_id = failed_spawn(conn, "alpha")
    row = delivered(conn, prompt_id, timeout=30)
    assert submitted(pane) == sanitise(row["text"]).encode() + b"\r"
    assert proc.running()


def test_a_stop_waits_for_no_ping_that_gets_no_answer(conn, tmux_server, reactors, relay):
    """A stop requested while a ping waited for an answer on a silent path waited with it (until systemd killed the
    reactor): the ping is given up at once, and the stop goes on as usual."""
    proc = reactors.start(poll=NO_POLL)
    wait_for(lambda: "listening on channel" in proc.text(), what="the reactor serving")
    assert relay.hold(LISTENER) == 1
    wait_for(lambda: relay.waiting(LISTENER), timeout=20, what="a ping sent on the silent path")
    assert proc.stop(timeout=8) == 0
    assert "stopped: released 0 undelivered prompts" in proc.text()
    assert "went away" not in proc.text()


def test_a_claim_that_gets_no_answer_is_tried_again_on_a_new_connection(conn, tmux_server, reactors, relay):
    """The main loop's calls (claim, renew) ran on a connection that nothing bounded: a claim sent on a path that
    drops everything waited as long as TCP took to give up, and the reactor claimed, renewed and pinged nothing
    meanwhile. Now such a call is cut after 30 s and tried once more on a new connection: the prompt arrives."""
    pane, proc = _serving(conn, tmux_server, reactors)
    assert relay.hold(WORK) == 1
    prompt_id = failed_spawn(conn, "alpha")
    wait_for(lambda: relay.waiting(WORK), what="the claim sent on the silent path")
    row = delivered(conn, prompt_id, timeout=60)
    assert submitted(pane) == sanitise(row["text"]).encode() + b"\r"
    assert "claim call on ps-health-reactor:work: no answer within 30 s, connection cut" in proc.text()
    assert "went away" not in proc.text() and proc.running()


def test_an_outcome_that_gets_no_answer_is_recorded_on_a_new_connection(conn, tmux_server, reactors, relay):
    """Outcomes went out on a connection that nothing bounded: one sent on a path that drops everything waited as long
    as TCP took to give up (a quarter of an hour), its prompt stayed claimed, and no outcome after it was recorded
    meanwhile. Now such a call is cut after 30 s and sent again on a new connection: the prompt, typed once, is
    recorded delivered."""
    pane, proc = _serving(conn, tmux_server, reactors)
    relay.hold_next(COMPLETE)  # (the outcomes' connection opens with the first outcome)
    prompt_id = failed_spawn(conn, "alpha")
    typed = submitted(pane)
    wait_for(lambda: relay.waiting(COMPLETE), what="the outcome sent on the silent path")
    row = delivered(conn, prompt_id, timeout=60)
    assert typed == sanitise(row["text"]).encode() + b"\r"
    assert pane.received() == typed
    assert "complete call on ps-health-reactor:complete: no answer within 30 s, connection cut" in proc.text()
    assert "went away" not in proc.text() and proc.running()


def test_an_outcome_whose_answer_was_lost_is_not_recorded_over_the_prompts_next_attempt(conn, tmux_server, reactors,
                                                                                       relay):
    """The server recorded a `deferred` outcome (the pane was in copy-mode) but its answer was lost on the way. While
    the reactor waited for it, the prompt came due again and was claimed and typed; 30 s on, the outcome sent again
    landed on that new claim and sent it back to pending, and the prompt was typed a second time. An outcome names its
    claim now: the one sent again is refused, the new attempt is recorded, and the text arrives once."""
    fast(conn, prompt_defer_delay="1 second")
    pane = tmux_server.recorder()
    session(conn, "alpha", pane.target)
    proc = reactors.start(poll="0.5")
    wait_for(lambda: "listening on channel" in proc.text(), what="the reactor serving")
    tmux_server.run("copy-mode", "-t", pane.target)
    relay.mute_replies_next(COMPLETE)  # (the outcomes' connection opens with the first outcome)
    prompt_id = failed_spawn(conn, "alpha")
    wait_for(lambda: conn.execute("SELECT outcome FROM ps_health.prompts WHERE id = %s",
                                  (prompt_id,)).fetchone()["outcome"] == "deferred",
             what="the deferred outcome recorded by the server, its answer held back")
    tmux_server.run("send-keys", "-t", pane.target, "-X", "cancel")
    typed = submitted(pane, timeout=30)
    row = delivered(conn, prompt_id, timeout=60)
    assert "was claimed again since the claim this outcome is of" in proc.text()
    assert typed == sanitise(row["text"]).encode() + b"\r"
    assert row["attempts"] == 1  # (the deferred attempt gave its attempt back)
    assert pane.received() == typed
    assert proc.running()


def test_a_probe_call_that_gets_no_answer_stops_the_probes_for_30_s_at_most(conn, tmux_server, reactors, relay):
    """Every probe kind, the sweep and the health gauge share one connection, and nothing bounded its calls: one sent
    on a path that drops everything held up all of them (a pane that closed was never found gone) for as long as TCP
    took to give up. Now the call is cut after 30 s and tried again on a new connection, and the probes go on."""
    pane, proc = _serving(conn, tmux_server, reactors)
    wait_for(lambda: _pane_state(conn, "alpha") == "seen", what="the pane seen and bound")
    assert relay.hold(PROBE) == 1
    wait_for(lambda: relay.waiting(PROBE), what="a probe's call sent on the silent path")
    tmux_server.run("kill-pane", "-t", pane.target)
    wait_for(lambda: _pane_state(conn, "alpha") == "gone", timeout=60, what="the closed pane found gone")
    assert re.search(r"\w+ call on ps-health-reactor:probe: no answer within 30 s, connection cut", proc.text())
    assert "went away" not in proc.text() and proc.running()


def test_a_stop_waits_for_no_claim_that_gets_no_answer(conn, tmux_server, reactors, relay):
    """A stop requested while a claim waited for its answer on a silent path waited the claim's whole 30 s, and then
    claimed again on a new connection. A claim in flight at a stop gets 2 s more (time to end, so an answer is not
    thrown away), is cut, and is not tried again: nothing is typed, and the prompt waits for the next reactor."""
    pane, proc = _serving(conn, tmux_server, reactors)
    assert relay.hold(WORK) == 1
    prompt_id = failed_spawn(conn, "alpha")
    wait_for(lambda: relay.waiting(WORK), what="the claim sent on the silent path")
    assert proc.stop(timeout=12) == 0
    assert "claim call on ps-health-reactor:work: a stop was requested, connection cut" in proc.text()
    assert pane.received() == b""
    row = conn.execute("SELECT state, attempts FROM ps_health.prompts WHERE id = %s", (prompt_id,)).fetchone()
    assert (row["state"], row["attempts"]) == ("pending", 0)


def test_a_stop_ends_when_the_whole_path_to_the_database_drops_everything(conn, tmux_server, reactors, relay):
    """With every connection silent (claims, probes, the spool's facts, the stop's own last calls), the stop waited
    for ever on the spool's connection: each part of it is bounded, and the reactor exits well within the 60 s
    systemd gives it."""
    pane, proc = _serving(conn, tmux_server, reactors)
    assert relay.hold(WORK) == 1
    failed_spawn(conn, "alpha")
    wait_for(lambda: relay.waiting(WORK), what="the claim sent on the silent path")
    relay.hold_all()
    assert proc.stop(timeout=45) == 0
    assert "stopped: released 0 undelivered prompts" in proc.text()
    assert pane.received() == b""


@pytest.mark.parametrize("then", ["wait", "stop"])
def test_a_reconnect_that_gets_no_answer_is_given_up(conn, tmux_server, reactors, relay, then):
    """A reconnect logs in, then takes the host (reactor_start) and LISTENs, and nothing bounded those two calls: on a
    path that drops everything the reactor waited there, claiming nothing, and a stop waited with it (for ever; found
    by a red-team pass). They are watched as a ping is: given up after 10 s (the reactor connects again), or at once
    for a stop."""
    pane, proc = _serving(conn, tmux_server, reactors)
    relay.hold_next(LISTENER)
    assert conn.execute("SELECT pg_terminate_backend(%s, 5000) AS ok", (_listener_pid(conn),)).fetchone()["ok"]
    wait_for(lambda: relay.waiting(LISTENER), timeout=20, what="the reconnect's first call sent on the silent path")
    if then == "stop":
        assert proc.stop(timeout=12) == 0
        assert "stopped: released 0 undelivered prompts" in proc.text()
        return
    _reconnected(proc, 0)  # (the failed attempts of one outage are not logged, only its start and its end)
    prompt_id = failed_spawn(conn, "alpha")
    row = delivered(conn, prompt_id, timeout=30)
    assert submitted(pane) == sanitise(row["text"]).encode() + b"\r"


def test_a_claim_answered_after_a_stop_is_given_back_not_typed(conn, db, tmux_server, reactors):
    """A stop stops claiming: a claim still in flight when it came was answered and its prompt typed during the stop.
    Now what it brings is given back at once, for the next reactor (found by a red-team pass)."""
    pane, proc = _serving(conn, tmux_server, reactors)
    first = delivered(conn, failed_spawn(conn, "alpha", "t1"))  # (the pane's typist now waits for its next job)
    typed = sanitise(first["text"]).encode() + b"\r"
    wait_for(lambda: submitted(pane) == typed, what="the first prompt typed")
    work = wait_for(lambda: (row := conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
        (WORK,)).fetchone()) and row["pid"], what="the reactor's work connection")
    with psycopg.connect(db, autocommit=False, row_factory=dict_row) as holder:
        holder.execute("SELECT 1 FROM ps_health.reactors WHERE worker = %s FOR UPDATE", (proc.worker,))
        prompt_id = failed_spawn(conn, "alpha", "t2")
        wait_for(lambda: conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                      (work,)).fetchone()["wait_event_type"] == "Lock",
                 what="the claim waiting for the reactor's row")
        proc.popen.send_signal(signal.SIGTERM)
        holder.commit()  # the claim goes on, and is answered within the 2 s a stop gives it
    assert proc.stop() == 0
    assert "stopped: released 1 undelivered prompts" in proc.text()
    assert submitted(pane) == typed
    assert conn.execute("SELECT state FROM ps_health.prompts WHERE id = %s", (prompt_id,)).fetchone()["state"] \
        == "pending"
