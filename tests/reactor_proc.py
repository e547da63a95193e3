"""Helpers for reactor tests: reactor subprocesses, fast settings, prompts made through the SQL API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.support import ROOT, wait_for
from tests.tmux_server import TmuxServer

HOST = "host-a"
# A login with only the reactor's grants, bound to the hosts its reactors serve, so every test also
# proves the privileges.
REACTOR_LOGIN = "ps_health_test_reactor"
# The test cluster is locked like the embedded one: every login but the superuser needs its password.
REACTOR_PASSWORD = "ps-health-test-reactor"


@dataclass
class ReactorProc:
    """One `python -m reactor` process; its stderr goes to a file."""

    popen: subprocess.Popen
    log: Path
    worker: str

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.running():
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"reactor {self.worker} did not stop within {timeout} s:\n{self.text()}") from None


@dataclass
class Reactors:
    """Starts reactors against one database and tmux server; all are stopped after the test.

    With a login, each reactor's host is granted to it first (through owner_dsn)."""

    dsn: str
    tmux: TmuxServer
    tmp_path: Path
    procs: list[ReactorProc] = field(default_factory=list)
    login: str | None = None
    owner_dsn: str | None = None

    @property
    def spool(self) -> Path:
        """The host spool of this test's reactors (and of the agents' hooks the test runs)."""
        return self.tmp_path / "spool"

    def start(self, *extra: str, host: str = HOST, worker: str | None = None,
              poll: str = "0.5", probe: str = "0.5") -> ReactorProc:
        worker = worker or f"{host}:w{len(self.procs) + 1}"
        if self.login:
            grant_reactor(self.owner_dsn, self.login, host)
        log = self.tmp_path / f"reactor-{len(self.procs) + 1}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PS_HEALTH_", "PG"))}
        env.update(PYTHONPATH=str(ROOT), PS_HEALTH_DSN=self.dsn, PS_HEALTH_SPOOL=str(self.spool))
        argv = [sys.executable, "-m", "reactor", "--host", host, "--worker", worker,
                "--tmux-socket", self.tmux.name, "--poll-interval", poll, "--probe-interval", probe, *extra]
        with log.open("wb") as err:
            popen = subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=err)
        proc = ReactorProc(popen, log, worker)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.running():
                proc.stop()


def create_login(admin_dsn: str, login: str, password: str, *roles: str) -> None:
    """A login with a password in the given roles; another test worker may have made it first."""
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        try:
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                sql.Identifier(login), sql.Literal(password), sql.SQL(", ").join(map(sql.Identifier, roles))))
        except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
            pass


@pytest.fixture(scope="session")
def reactor_login(server, template_dsn):
    """The least-privileged reactor login, or None when the server is not this run's own."""
    admin_dsn, cluster = server
    if cluster is None:
        yield None
        return
    create_login(admin_dsn, REACTOR_LOGIN, REACTOR_PASSWORD, "ps_health_reactor")
    yield REACTOR_LOGIN


def grant_reactor(owner_dsn: str, login: str, host: str) -> None:
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        conn.execute("SELECT ps_health.grant_reactor(%s, %s)", (login, host))


@pytest.fixture
def reactors(db, tmux_server, tmp_path, reactor_login):
    """Reactor processes for this test, logged in with the reactor's grants only when possible."""
    dsn = make_conninfo(db, user=reactor_login, password=REACTOR_PASSWORD) if reactor_login else db
    group = Reactors(dsn, tmux_server, tmp_path, login=reactor_login, owner_dsn=db)
    yield group
    group.stop_all()


def fast(conn, **more: str) -> None:
    """Settings for speed: a short submit delay, no idle wait; more=key:value globally."""
    values = {"submit_delay": "100 milliseconds", "idle_seconds": "0", **more}
    for key, value in values.items():
        conn.execute("SELECT ps_health.set_setting(%s, %s)", (key, value))


# The agent program of the test panes (tests/recorder.py): accepted by setting, as any agent CLI is.
RECORDER_PROGRAMS = '["recorder"]'


def session(conn, project: str, target: str | None, host: str = HOST, transcript: str | None = None) -> None:
    """Register the project's session; its agent program is the recorder."""
    conn.execute("SELECT ps_health.set_setting('agent_programs', %s, %s)", (RECORDER_PROGRAMS, project))
    conn.execute("SELECT ps_health.register_session(%s, 'cli', %s, %s, %s)", (project, target, host, transcript))


def failed_spawn(conn, project: str, task: str = "t1", error: str = "boom") -> int:
    """Record a spawn that failed: a critical prompt is queued at once; returns its id."""
    conn.execute("SELECT ps_health.start_spawn(%s, %s, 'impl')", (project, task))
    conn.execute("SELECT ps_health.finish_spawn(%s, %s, 1, %s)", (project, task, error))
    return conn.execute("SELECT max(id) AS id FROM ps_health.prompts WHERE project = %s",
                        (project,)).fetchone()["id"]


def prompt(conn, prompt_id: int) -> dict:
    return conn.execute("SELECT * FROM ps_health.prompts WHERE id = %s", (prompt_id,)).fetchone()


def delivered(conn, prompt_id: int, timeout: float = 10.0) -> dict:
    """Wait until the prompt is recorded as delivered; return its row."""
    return wait_for(lambda: (row := prompt(conn, prompt_id))["state"] == "delivered" and row,
                    timeout=timeout, what=f"prompt {prompt_id} delivered")


def submitted(pane, timeout: float = 10.0) -> bytes:
    """Wait until the pane received an Enter; return everything it received."""
    return wait_for(lambda: (data := pane.received()).endswith(b"\r") and data, timeout=timeout,
                    what=f"Enter in pane {pane.target}")
