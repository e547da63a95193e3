"""`make test`'s harness fails a run that leaves a process behind, names it and ends it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.conftest import ROOT
from tests.tmux_server import _alive

LEAKY = """
import subprocess

def test_leaves_a_sleep_behind(tmp_path):
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    open({pidfile!r}, "w").write(str(proc.pid))
"""

CLEAN = """
import subprocess

def test_waits_for_its_sleep():
    subprocess.run(["sleep", "0"], check=True)
"""


def harness(tmp_path, source: str) -> subprocess.CompletedProcess:
    """The harness run on one small test file, with a cluster of its own."""
    test_file = tmp_path / "test_small.py"
    test_file.write_text(textwrap.dedent(source))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PS_HEALTH_", "PG"))}
    env.update(PYTHONPATH=str(ROOT), PS_HEALTH_TEST_WORKERS="0")
    return subprocess.run([sys.executable, "-m", "tests.harness", "py", "-q", "-p", "no:cacheprovider",
                           str(test_file)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_a_process_left_behind_fails_the_run_is_named_and_killed(tmp_path):
    pidfile = tmp_path / "leaked.pid"
    res = harness(tmp_path, LEAKY.format(pidfile=str(pidfile)))
    pid = int(pidfile.read_text())
    assert "1 passed" in res.stdout, res.stdout + res.stderr
    assert res.returncode != 0
    assert "1 process(es) started by the tests outlived them" in res.stderr, res.stderr
    assert f"pid {pid}: sleep 300" in res.stderr
    assert not _alive(pid), "the harness killed what was left"


def test_a_run_that_leaves_nothing_behind_passes(tmp_path):
    res = harness(tmp_path, CLEAN)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "outlived" not in res.stderr
