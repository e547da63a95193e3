"""`make test`'s harness fails a run that leaves a process behind, names it and ends it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.support import ROOT
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


# A reactor's tmux control client typing as fast as it can, until it is killed -9.
FLOOD = """
import sys
from reactor.tmux.control import ControlClient

client = ControlClient(["tmux", "-S", sys.argv[1]], sys.argv[1])
print("attached" if client.run(["display-message", "-p", "ok"]) else "no client", flush=True)
n = 0
while True:
    n += 1
    client.run(["send-keys", "-t", "keeper", "-l", "--", f"hello {n}"])
    client.run(["capture-pane", "-p", "-t", "keeper"])
    if n == 100:
        print("typing", flush=True)
"""


def test_a_tmux_server_whose_reactor_was_killed_mid_burst_is_still_removed(tmp_path):
    from tests.tmux_server import TmuxServer

    server = TmuxServer(tmp_path)
    try:
        for _ in range(3):  # a client killed mid-command keeps tmux 3.3a's server from exiting on kill-server
            flood = subprocess.Popen([sys.executable, "-c", FLOOD, str(server.socket)], cwd=ROOT,
                                     env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, text=True)
            assert flood.stdout.readline().strip() == "attached"
            assert flood.stdout.readline().strip() == "typing"
            flood.kill()
            flood.wait()
            flood.stdout.close()
    finally:
        server.remove()
    assert not server._tmux_processes(), "a tmux server or client on the test's socket is still running"
    assert not any(_alive(pid) for pid in server.pids)
