"""Many agents, a reactor and the sweep at once: one lock order, so no call ends in a deadlock."""

from __future__ import annotations

import random
import threading

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from reactor import db as dblayer
from tests.support import wait_for

PROJECTS = ("alpha", "beta")
THREADS, CALLS = 8, 150
# What a mix of random calls may be refused for: a spawn not started (P0002), started twice (23505),
# finished twice (55000). Anything else, a deadlock above all, is a failure.
EXPECTED = {"P0002", "23505", "55000"}
RETRYABLE = {"40P01", "40001"}


def _call(rnd: random.Random, conn: psycopg.Connection, n: int, i: int) -> None:
    project = rnd.choice(PROJECTS)
    task = f"t{n}-{i % 5}"
    op = rnd.choice(["register", "heartbeat", "context", "start", "finish", "output", "end", "respond", "handoff"])
    if op == "register":
        conn.execute("SELECT ps_health.register_session(%s, 'cli', %s, 'h1')", (project, f"{project}-ps"))
    elif op == "heartbeat":
        conn.execute("SELECT ps_health.heartbeat_session(%s)", (project,))
    elif op == "context":
        conn.execute("SELECT ps_health.report_context(%s, %s)", (project, rnd.randint(40, 95)))
    elif op == "start":
        conn.execute("SELECT ps_health.start_spawn(%s, %s, 'impl')", (project, task))
    elif op == "finish":
        conn.execute("SELECT ps_health.finish_spawn(%s, %s, %s, 'boom')", (project, task, rnd.choice([0, 1])))
    elif op == "output":
        conn.execute("SELECT ps_health.report_spawn_output(%s, %s)", (project, task))
    elif op == "end":
        conn.execute("SELECT ps_health.end_session(%s)", (project,))
    elif op == "respond":
        conn.execute("SELECT ps_health.respond(id, 'on it') FROM ps_health.health_checks "
                     "WHERE project = %s ORDER BY id DESC LIMIT 1", (project,))
    else:
        conn.execute("SELECT ps_health.report_handoff(%s, '/tmp/handoff.md')", (project,))


class Mix:
    """THREADS agents making CALLS random calls each on two projects, counting refusals by SQLSTATE."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.errors: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()

    def note(self, exc: psycopg.Error) -> None:
        with self.lock:
            self.errors.setdefault(exc.sqlstate or "?", []).append(str(exc).splitlines()[0])

    def agent(self, n: int) -> None:
        rnd = random.Random(n)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for i in range(CALLS):
                try:
                    _call(rnd, conn, n, i)
                except psycopg.Error as exc:
                    self.note(exc)

    def loop(self, body) -> int:
        """Run body(conn) until the agents are done; return how often it ran."""
        runs = 0
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.done.is_set() or runs == 0:
                try:
                    body(conn)
                except psycopg.Error as exc:
                    self.note(exc)
                runs += 1
        return runs

    def run(self, *side_loops) -> list[int]:
        counts = [0] * len(side_loops)

        def side(k: int) -> None:
            counts[k] = self.loop(side_loops[k])

        sides = [threading.Thread(target=side, args=(k,)) for k in range(len(side_loops))]
        agents = [threading.Thread(target=self.agent, args=(n,)) for n in range(THREADS)]
        for t in sides + agents:
            t.start()
        for t in agents:
            t.join()
        self.done.set()
        for t in sides:
            t.join()
        return counts

    def unexpected(self) -> dict[str, list[str]]:
        return {state: msgs[:3] for state, msgs in self.errors.items() if state not in EXPECTED}


def _setup(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for project in PROJECTS:
            conn.execute("SELECT ps_health.register_session(%s, 'cli', %s, 'h1')", (project, f"{project}-ps"))


def _sweep(conn) -> None:
    conn.execute("SELECT ps_health.run_checks()")


def _reactor(conn) -> None:
    """What a reactor does between deliveries: claim, record the outcome, report its panes."""
    rows = conn.execute("SELECT id FROM ps_health.claim_prompts('h1', 'w1', 10, 60)").fetchall()
    if rows:
        ids = [r[0] for r in rows]
        conn.execute("SELECT * FROM ps_health.complete_prompts('w1', %s::bigint[], %s::text[])",
                     (ids, ["delivered"] * len(ids)))
    conn.execute("SELECT ps_health.report_session_targets(%s::text[], %s::text[])",
                 (list(PROJECTS), ["seen"] * len(PROJECTS)))


def test_concurrent_agent_calls_never_deadlock(db):
    _setup(db)
    mix = Mix(db)
    mix.run()
    assert mix.unexpected() == {}
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM ps_health.health_checks").fetchone()[0] > 0


def test_sweep_and_reactor_beside_concurrent_agents_never_deadlock(db):
    _setup(db)
    mix = Mix(db)
    sweeps, claims = mix.run(_sweep, _reactor)
    assert mix.unexpected() == {}
    assert sweeps >= 1 and claims >= 1
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM ps_health.sweep_runs").fetchone()[0] == sweeps


def test_database_layer_retries_a_call_that_lost_a_deadlock(db, caplog):
    """A call chosen as a deadlock's victim is run again and succeeds; the caller sees no error."""
    _setup(db)
    key = "SELECT ps_health._lock_project('alpha')"
    # The call's backend checks for a deadlock 3 s after it starts waiting, the other side only after
    # a minute: the cycle closes in between, so the call is the one PostgreSQL aborts.
    victim = dblayer.connect(make_conninfo(db, options="-c deadlock_timeout=3s"), autocommit=True,
                             application_name="victim")
    other = psycopg.connect(db, options="-c deadlock_timeout=60s")
    result: dict = {}
    try:
        other.execute("SELECT 1 FROM ps_health.ps_sessions WHERE project = 'alpha' FOR UPDATE")

        def heartbeat():
            try:
                result["rows"] = dblayer.fetch(victim, "cli", "heartbeat_session", {"project": "alpha"})
            except Exception as exc:  # noqa: BLE001 - the test reports whatever escaped
                result["error"] = exc

        call = threading.Thread(target=heartbeat)
        call.start()
        with psycopg.connect(db, autocommit=True) as watch:
            # the call holds alpha's project lock and waits for the session row
            wait_for(lambda: watch.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = 'victim' "
                                           "AND wait_event_type = 'Lock'").fetchone(), what="the call waiting")
            closing = threading.Thread(target=lambda: other.execute(key))
            closing.start()
            closing.join(timeout=30)
            assert not closing.is_alive(), "the other side never got the lock: no deadlock was detected"
            other.commit()
        call.join(timeout=30)
        assert "error" not in result, result
        assert "deadlock detected" in caplog.text and "running it again (1 of 3)" in caplog.text
    finally:
        other.close()
        victim.close()


def test_a_sweep_never_waits_for_a_transaction_taking_a_project_lock_for_the_first_time(db):
    """A project's lock is a row added by the first call that takes it (a database migrated from a version
    without them has none): a sweep meeting that call's open transaction leaves the project to the next
    sweep, and sweeps the others."""
    _setup(db)
    with psycopg.connect(db, autocommit=True) as conn:
        for project in PROJECTS:  # a spawn that will have stalled 3 hours from now
            conn.execute("SELECT ps_health.start_spawn(%s, 't1', 'build')", (project,))
    later = "now() + interval '3 hours'"
    with psycopg.connect(db, autocommit=True, options="-c lock_timeout=5s") as sweeper:
        sweeper.execute("DELETE FROM ps_health.locks WHERE kind = 'project'")
        with psycopg.connect(db) as opened:
            opened.execute("SELECT ps_health.heartbeat_session(%s)", (PROJECTS[0],))
            result = sweeper.execute(f"SELECT ps_health.run_checks({later})").fetchone()[0]
            assert not result.get("skipped"), result
            assert sweeper.execute("SHOW lock_timeout").fetchone()[0] == "5s", "the caller's setting is kept"
            swept = {r[0] for r in sweeper.execute("SELECT DISTINCT project FROM ps_health.health_checks")}
            assert PROJECTS[0] not in swept and set(PROJECTS[1:]) <= swept, swept
            free = sweeper.execute("SELECT ps_health._try_lock_project(%s)", (PROJECTS[0],)).fetchone()[0]
            assert free is False, "the open transaction still holds its project's lock"
        result = sweeper.execute(f"SELECT ps_health.run_checks({later})").fetchone()[0]
        swept = {r[0] for r in sweeper.execute("SELECT DISTINCT project FROM ps_health.health_checks")}
        assert PROJECTS[0] in swept, result


def test_forget_waits_for_the_projects_lock_as_every_writer_of_its_rows(db):
    """A sweep (or any call) holding alpha's lock is waited for: forgetting alpha beside it left its problem
    and a queued prompt behind."""
    _setup(db)
    with psycopg.connect(db) as holder, psycopg.connect(db, autocommit=True, options="-c lock_timeout=1s") as c:
        holder.execute("SELECT ps_health._lock_project('alpha')")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            c.execute("SELECT ps_health.forget_project('alpha')")
        holder.rollback()
        assert c.execute("SELECT ps_health.forget_project('alpha')").fetchone()[0]["session"] == 1
