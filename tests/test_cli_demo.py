"""`ps-health demo --fast --no-wait` end to end: real reactor, real private tmux server, real database."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import run_cli

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
    # cleaned up: reactor stopped, tmux server gone, spawn and session closed
    pid = int(re.search(r"reactor started \(pid (\d+)\)", out).group(1))
    assert not _alive(pid)
    assert subprocess.run(["tmux", "-L", socket, "has-session"], capture_output=True).returncode != 0
    assert not (Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}" / socket).exists()
    spawn = conn.execute("SELECT status FROM active_spawns WHERE project = 'ps-health-demo'").fetchone()
    assert spawn["status"] == "completed"
    assert conn.execute("SELECT ended_at FROM ps_sessions WHERE project = 'ps-health-demo'").fetchone()["ended_at"]
    assert not list((tmp_path / "demo").glob("*.json")), "the state file is removed"


def test_demo_cleanup_with_nothing_running_is_harmless(db, tmp_path):
    res = run_cli(db, "demo", "--cleanup", "--tmux-socket", f"psh-none-{os.getpid()}",
                  env={"PS_HEALTH_HOME": str(tmp_path)})
    assert res.returncode == 0 and "demo cleaned up" in res.stdout
