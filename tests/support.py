"""What the tests (and the benchmarks) share: where things are, running `ps-health` as a user would, waiting on a
condition. Fixtures are in conftest.py and the plugin modules it names; no test module imports another."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.pg import free_port

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "reactor.cli"]
# A pane and host of the agent's environment, for commands that find their session by pane.
PANE_ENV = {"TMUX_PANE": "%7", "PS_HEALTH_HOST": "host-a"}

def run_cli(dsn: str | None, *args: str, stdin: str | None = None, env: dict | None = None,
            timeout: float = 60, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run `ps-health ARGS` as a user would, against dsn."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PS_HEALTH_", "PG"))}
    full_env["PYTHONPATH"] = str(ROOT)
    if dsn is not None:
        full_env["PS_HEALTH_DSN"] = dsn
    full_env.update(env or {})
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=cwd or str(ROOT))


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Poll predicate until it returns a truthy value; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def ok(dsn, *args, **kw) -> subprocess.CompletedProcess:
    """`ps-health ARGS`, which must succeed."""
    res = run_cli(dsn, *args, **kw)
    assert res.returncode == 0, f"{args}: rc {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def refused(dsn, *args, **kw) -> subprocess.CompletedProcess:
    """`ps-health ARGS`, which must be refused as bad input (exit 2)."""
    res = run_cli(dsn, *args, **kw)
    assert res.returncode == 2, f"{args}: expected exit 2, got {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def snapshot(conn) -> tuple:
    """Sessions, checks and prompts as they stand: a refused call must leave them so."""
    return (conn.execute("SELECT * FROM ps_sessions ORDER BY id").fetchall(),
            conn.execute("SELECT * FROM health_checks ORDER BY id").fetchall(),
            conn.execute("SELECT * FROM prompts ORDER BY id").fetchall())


def unreachable_dsn() -> str:
    return f"host=127.0.0.1 port={free_port()} dbname=nothing user=nobody connect_timeout=2"


def spawn(conn, task_id: str, project: str = "alpha") -> dict | None:
    return conn.execute("SELECT * FROM active_spawns WHERE project = %s AND task_id = %s",
                        (project, task_id)).fetchone()


def run_wrapped(dsn, task_id, *cmd, extra=()):
    """`ps-health spawn run` of project alpha around a command."""
    return run_cli(dsn, "spawn", "run", "--project", "alpha", "--task-id", task_id, "--type", "build", *extra,
                   "--", *cmd)
