"""`ps-health demo --fast --no-wait` end to end: real reactor, real private tmux server, real database."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support import run_cli

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def test_demo_shows_the_prompt_arriving_and_the_answer_recorded_then_cleans_up(db, conn, tmp_path):
    socket = f"psh-demo-{uuid.uuid4().hex[:8]}"
    try:
        res = run_cli(db, "demo", "--fast", "--no-wait", "--tmux-socket", socket,
                      env={"PS_HEALTH_HOME": str(tmp_path)}, timeout=120)
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    out = res.stdout
    for step in ("is stalled", "queued: [ps-health #", "] ps-health-demo: spawn research-", "typed into pane",
                 "answer recorded on check #", "the demo PS pane shows:", ">>> received"):
        assert step in out, f"missing {step!r} in:\n{out}"
    table = next(line for line in out.splitlines() if line.startswith("ps-health-demo "))
    assert "delivered" in table and "35%" in table
    check = conn.execute("SELECT ps_response FROM health_checks WHERE project = 'ps-health-demo' "
                         "AND ps_response IS NOT NULL").fetchone()
    assert check["ps_response"].startswith("demo PS:")
    # cleaned up: reactor stopped, the tmux server it started gone, its project forgotten (the audit stays)
    pid = int(re.search(r"reactor started \(pid (\d+)\)", out).group(1))
    assert not _alive(pid)
    assert subprocess.run(["tmux", "-L", socket, "has-session"], capture_output=True).returncode != 0
    assert not (Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}" / socket).exists()
    for table in ("active_spawns", "ps_sessions", "check_state", "settings"):
        assert conn.execute(f"SELECT count(*) AS n FROM {table} WHERE project = 'ps-health-demo'").fetchone()["n"] == 0
    assert "ps-health-demo" not in run_cli(db, "status").stdout
    assert not list((tmp_path / "demo").glob("*.json")), "the state file is removed"


def test_demo_cleanup_with_nothing_running_is_harmless(db, tmp_path):
    res = run_cli(db, "demo", "--cleanup", "--tmux-socket", f"psh-none-{os.getpid()}",
                  env={"PS_HEALTH_HOME": str(tmp_path)})
    assert res.returncode == 0 and "demo cleaned up" in res.stdout


def _user_server(socket: str) -> str:
    """A user's own tmux server on the socket, with a session running a long command; returns its pane pid."""
    subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", "new-session", "-d", "-s", "mine", "sleep 600"],
                   check=True)
    return subprocess.run(["tmux", "-L", socket, "display-message", "-p", "-t", "mine", "#{pane_pid}"],
                          capture_output=True, text=True, check=True).stdout.strip()


def _sessions(socket: str) -> list[str]:
    res = subprocess.run(["tmux", "-L", socket, "list-sessions", "-F", "#{session_name}"], capture_output=True,
                         text=True)
    return res.stdout.split() if res.returncode == 0 else []


def test_demo_cleanup_leaves_a_server_it_did_not_start_alone(db, tmp_path):
    socket = f"psh-user-{uuid.uuid4().hex[:8]}"
    try:
        pane_pid = _user_server(socket)
        res = run_cli(db, "demo", "--cleanup", "--tmux-socket", socket, env={"PS_HEALTH_HOME": str(tmp_path)})
        assert res.returncode == 0 and "demo cleaned up" in res.stdout
        assert _sessions(socket) == ["mine"] and _alive(int(pane_pid)), "the user's session survives"
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


def test_demo_on_the_users_tmux_server_uses_its_own_session_and_removes_only_that(db, conn, tmp_path):
    socket = f"psh-user-{uuid.uuid4().hex[:8]}"
    env = {"PS_HEALTH_HOME": str(tmp_path), "PS_HEALTH_TMUX_SOCKET": socket}   # as `make demo` is given it
    try:
        pane_pid = _user_server(socket)
        res = run_cli(db, "demo", "--fast", "--no-wait", env=env, timeout=120)
        assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
        assert f"the tmux server already running '{socket}': demo PS in session ps-health-demo" in res.stdout
        assert "answer recorded on check #" in res.stdout
        assert _sessions(socket) == ["mine"] and _alive(int(pane_pid)), "only the demo's session is gone"

        # a session of the user's that happens to carry the demo's name is refused, not taken over
        subprocess.run(["tmux", "-L", socket, "new-session", "-d", "-s", "ps-health-demo", "sleep 600"], check=True)
        res = run_cli(db, "demo", "--fast", "--no-wait", env=env, timeout=60)
        assert res.returncode == 1 and "already has a session named ps-health-demo" in res.stderr
        assert sorted(_sessions(socket)) == ["mine", "ps-health-demo"]
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    assert conn.execute("SELECT count(*) AS n FROM ps_sessions WHERE project = 'ps-health-demo'").fetchone()["n"] == 0
