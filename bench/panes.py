"""Benchmark panes: a private tmux server whose panes report each byte typed, with its arrival time."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import uuid
from pathlib import Path

STAMP = Path(__file__).with_name("stamp_pane.py")
_HEADER = struct.Struct("<Hd")


class Panes:
    """A tmux server (tmux -L name) with stamping panes, and the socket their reports arrive on."""

    def __init__(self, folder: Path):
        self.name = f"ps-health-bench-{uuid.uuid4().hex[:8]}"
        self.targets: list[str] = []
        self._path = folder / "stamps.sock"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._sock.bind(str(self._path))
        self._tmux("-f", "/dev/null", "new-session", "-d", "-s", "keeper")
        self._socket_file = Path(self._tmux("display-message", "-p", "#{socket_path}"))

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.name, *args], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"tmux {args}: {done.stderr.strip()}")
        return done.stdout.strip()

    def add(self, count: int) -> list[str]:
        """Start count panes (one session each); return their %id targets once all are ready."""
        first = len(self.targets)
        for index in range(first, first + count):
            self.targets.append(self._tmux("new-session", "-d", "-x", "200", "-y", "50", "-P", "-F",
                                           "#{pane_id}", sys.executable, str(STAMP), str(index),
                                           str(self._path)))
        ready = set()
        while len(ready) < count:
            index, _, _ = self.recv(30)
            ready.add(index)
        return self.targets[first:]

    def recv(self, timeout: float) -> tuple[int, float, bytes]:
        """The next report: (pane index, monotonic time of the read, bytes)."""
        self._sock.settimeout(timeout)
        packet = self._sock.recv(1 << 17)
        index, stamp = _HEADER.unpack_from(packet)
        return index, stamp, packet[_HEADER.size:]

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.name, "kill-server"], capture_output=True)
        self._socket_file.unlink(missing_ok=True)  # tmux leaves its socket file behind
        self._sock.close()
        self._path.unlink(missing_ok=True)
