"""The reactor's tmux control client ends with the reactor, even when the reactor is killed -9, and drains
what tmux tells it while the reactor is idle."""

from __future__ import annotations

import array
import fcntl
import os
import subprocess
import sys
import termios
import threading
from pathlib import Path

from reactor.tmux.control import ControlClient
from tests.support import ROOT, wait_for
from tests.tmux_server import _alive

# A reactor killed -9 the moment its control client was started from a delivery thread (before the
# attach answered: then tmux 3.3a's client stayed, nine times in ten, and kept the server alive).
KILLED = """
import os, signal, sys, threading
from reactor.tmux import control as tmux_control

def killed(self, deadline):
    print(self._proc.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

tmux_control.ControlClient._attached = killed
client = tmux_control.ControlClient(["tmux", "-S", sys.argv[1]], sys.argv[1])
delivery = threading.Thread(target=lambda: client.run(["display-message", "-p", "ok"]))
delivery.start()
delivery.join()
"""


def test_the_control_client_of_a_reactor_killed_9_ends_with_it_and_the_server_can_exit(tmux_server):
    for _ in range(3):
        reactor = subprocess.run([sys.executable, "-c", KILLED, str(tmux_server.socket)], cwd=ROOT, timeout=30,
                                 env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
        client = int(reactor.stdout)
        wait_for(lambda client=client: not _alive(client), timeout=5, what="the control client to end with the reactor")
    subprocess.run(["tmux", "-S", str(tmux_server.socket), "kill-server"], capture_output=True, timeout=10)
    wait_for(lambda: not any(_alive(pid) for pid in tmux_server.pids), timeout=5, what="the tmux server to exit")


def test_a_control_client_outlives_the_delivery_thread_that_started_it(tmux_server):
    client = ControlClient(["tmux", "-S", str(tmux_server.socket)], str(tmux_server.socket))
    try:
        delivery = threading.Thread(target=client.run, args=(["display-message", "-p", "ok"],))
        delivery.start()
        delivery.join()
        pid = client._proc.pid
        assert client.run(["display-message", "-p", "still here"]) == ["still here"]
        assert client._proc.pid == pid and _alive(pid), "the same client serves the next delivery"
    finally:
        client.close()


def _written(pid: int) -> int:
    """Bytes a process has written so far (/proc/PID/io)."""
    return int(next(line.split()[1] for line in Path(f"/proc/{pid}/io").read_text().splitlines()
                    if line.startswith("wchar:")))


def _unread(fd: int) -> int:
    """Bytes waiting in a pipe."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


def test_what_tmux_tells_an_idle_client_is_drained_not_left_to_pile_up(tmux_server):
    client = ControlClient(["tmux", "-S", str(tmux_server.socket)], str(tmux_server.socket))
    try:
        assert client.run(["display-message", "-p", "ok"]) == ["ok"]
        # tmux's server writes what it tells a control client into the client's standard output itself
        server = int(tmux_server.run("display-message", "-p", "#{pid}"))
        fd = client._proc.stdout.fileno()
        before = _written(server)
        # each rename tells every control client (%window-renamed): 160 kB in all, more than a pipe holds
        for batch in range(20):
            renames = []
            for n in range(100):
                renames += ["rename-window", "-t", "keeper", f"renamed-{batch:02d}-{n:03d}-{'x' * 50}", ";"]
            tmux_server.run(*renames[:-1])
        # No command runs meanwhile: only the client's idle reader empties the pipe, and tmux can write it all
        # only if it does (else the rest waits in the server's memory)
        wait_for(lambda: _written(server) - before > 150_000 and _unread(fd) == 0, timeout=15,
                 what="the notifications to be drained while the client is idle")
        assert client.run(["display-message", "-p", "after"]) == ["after"]
    finally:
        client.close()
