"""A private tmux server per test, with recorder panes (tests/recorder.py) that log every byte typed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from reactor.tmux.client import Tmux
from tests.support import wait_for

RECORDER = Path(__file__).with_name("recorder.py")



@dataclass
class Pane:
    """One recorder pane: its %id target, the program's pid and the file of bytes it received."""

    target: str
    pid: int
    record: Path

    def received(self) -> bytes:
        return self.record.read_bytes()

    def reads(self) -> list[tuple[float, bytes]]:
        """(monotonic time, bytes) of each read, for a recorder started with --times."""
        path = self.record.with_name(self.record.name + ".times")
        return [(float(stamp), bytes.fromhex(data)) for stamp, data in
                (line.split(" ") for line in path.read_text().splitlines())]

    def submitted(self) -> list[bytes]:
        """The lines the recorder's line editor submitted (Enter), in order."""
        path = self.record.with_name(self.record.name + ".lines")
        return path.read_bytes().splitlines() if path.exists() else []


class TmuxServer:
    """A private tmux server for one test, with helpers to start recorder panes."""

    def __init__(self, tmp_path: Path):
        self.name = f"ps-health-test-{uuid.uuid4().hex[:10]}"
        self.tmp_path = tmp_path
        self.tmux = Tmux(socket_name=self.name)
        self.pids: set[int] = set()
        self.start()

    def start(self) -> None:
        """Start the server (again, after kill(): a new server on the same socket) with a keeper session."""
        # Right after a kill, a client attaching to the stale socket may start a server that exits at
        # once (no session); a new-session meeting it fails and is tried again.
        wait_for(lambda: subprocess.run(["tmux", "-L", self.name, "-f", "/dev/null", "new-session", "-d", "-s",
                                         "keeper"], capture_output=True, timeout=10).returncode == 0,
                 what="the tmux server to start")
        # Keep a dead pane visible so a test can see that its program died.
        self.run("set-option", "-g", "remain-on-exit", "on")
        path, pid = self.run("display-message", "-p", "#{socket_path} #{pid}").rsplit(" ", 1)
        self.socket = Path(path)
        self.pids.add(int(pid))  # every server this test started on the socket (a test may restart it)

    def run(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.name, *args], capture_output=True,
                              text=True, timeout=10)
        if done.returncode != 0:
            raise RuntimeError(f"tmux {args}: {done.stderr.strip()}")
        return done.stdout.strip()

    def recorder(self, *extra: str, session: str | None = None) -> Pane:
        """A new session whose only pane runs the recorder; extra args go to recorder.py."""
        record = self.tmp_path / f"rec-{uuid.uuid4().hex[:8]}.bin"
        named = ["-s", session] if session else []
        line = self.run("new-session", "-d", *named, "-x", "100", "-y", "30", "-P",
                        "-F", "#{pane_id} #{pane_pid} #{pid}",
                        sys.executable, str(RECORDER), str(record), *extra)
        target, pid, server = line.split()
        self.pids.add(int(server))
        wait_for(record.exists, what="recorder to set up its tty")
        return Pane(target, int(pid), record)

    def alive(self, pane: Pane) -> bool:
        dead = self.run("display-message", "-p", "-t", pane.target, "#{pane_dead}")
        try:
            os.kill(pane.pid, 0)
        except ProcessLookupError:
            return False
        return dead == "0"

    def kill(self) -> None:
        """kill-server, and wait until the server has exited.

        A control client left behind by a reactor killed -9 keeps tmux's server from exiting
        after kill-server (tmux 3.3a), so when the server outlives it, every tmux process on
        this socket is ended by pid.
        """
        subprocess.run(["tmux", "-L", self.name, "kill-server"], capture_output=True, timeout=10)
        if self._ended(self.pids, timeout=2):
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            on_socket = self._tmux_processes()
            for pid in on_socket:
                _signal(pid, sig)
            if self._ended(self.pids | on_socket, timeout=5):
                return
        raise RuntimeError(f"tmux server {self.name} (pids {sorted(self.pids)}) did not exit")

    def remove(self) -> None:
        self.kill()
        self.socket.unlink(missing_ok=True)  # tmux leaves its socket file behind

    def _tmux_processes(self) -> set[int]:
        """Servers and clients on this test's socket, found by their command lines."""
        found = set()
        for entry in Path("/proc").iterdir():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
            except OSError:
                continue
            if argv and Path(argv[0].decode(errors="replace")).name == "tmux" and \
                    any(self.name.encode() in arg for arg in argv):
                found.add(int(entry.name))
        return found

    @staticmethod
    def _ended(pids: set[int], timeout: float) -> bool:
        try:
            wait_for(lambda: not any(_alive(pid) for pid in pids), timeout=timeout, interval=0.02,
                     what="the tmux server to exit")
            return True
        except AssertionError:
            return False


def _alive(pid: int) -> bool:
    """Running (a zombie has exited; its parent just has not collected it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


@pytest.fixture
def tmux_server(tmp_path: Path):
    """A private tmux server, killed after the test."""
    srv = TmuxServer(tmp_path)
    yield srv
    srv.remove()
