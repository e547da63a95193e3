"""A persistent tmux control-mode client: tmux commands over a pipe instead of a process each.

Starting a tmux client costs about 2 ms, and a delivery needs four commands; through one
`tmux -C` client a command is a round trip over a pipe. The client attaches with the flags
`no-output` (no pane output is streamed to it) and `ignore-size` (window sizes are not
affected); `tmux list-clients` shows it as `control-mode`.

The caller of a command reads its reply from the pipe itself (no hand-over between threads on
the way). tmux also sends notifications (%session-changed, %layout-change, ...) to a control
client, and while the reactor is idle for hours they must not pile up in the pipe or in the
tmux server: an idle reader thread drains them twice a second while no command is in flight.
It does not wait on the pipe, so a command's reply (read by its caller) never wakes it.

Framing: tmux wraps each command's output in `%begin`/`%end` (or `%error`) lines, but it does
not escape what capture-pane prints, so a pane could show a line that looks like `%end`. Every
command is therefore followed by `display-message -p NONCE` with a fresh random nonce: only the
block that prints it ends the reply, and the real end of the command's own block is the last
`%end`/`%error` line before it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

# A command's reply (or the attach at start) taking longer than this means the client is stuck.
_REPLY_TIMEOUT = 5.0
# After the client could not start (no server, no session), run commands one process each for
# this long before trying again.
_RETRY_AFTER = 2.0
# The idle reader drains the pipe this often (and sees whether its client was replaced). It does not wait on the
# pipe: every command's reply would wake it, to compete with the command's caller on the way to a keystroke.
_IDLE_REST = 0.5


class ControlLost(Exception):
    """The client went away or stopped answering after a command was sent."""


class _Launcher:
    """Starts control clients from one thread that lives as long as this process, each with a parent-death
    signal: killed with -9, the reactor takes its clients with it (a client left behind keeps tmux 3.3a's
    server busy and alive after kill-server). Linux ties the signal to the thread that forked the child,
    and clients are started from short-lived delivery threads: hence this thread."""

    _PR_SET_PDEATHSIG = 1

    def __init__(self):
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
        self._pid = os.getpid()
        threading.Thread(target=self._serve, name="tmux control launcher", daemon=True).start()

    def popen(self, argv: list[str], env: dict) -> subprocess.Popen:
        """Popen(argv) on the launcher thread; raises what Popen raised."""
        done: queue.SimpleQueue = queue.SimpleQueue()
        self._requests.put((argv, env, done))
        ok, result = done.get()
        if not ok:
            raise result
        return result

    def _serve(self) -> None:
        while True:
            argv, env, done = self._requests.get()
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, env=env, start_new_session=True,
                                        preexec_fn=self._die_with_parent if self._prctl else None)
                done.put((True, proc))
            except Exception as exc:  # handed to the caller
                done.put((False, exc))

    def _die_with_parent(self) -> None:
        # In the child, between fork and exec: nothing here may take a lock another thread could hold.
        self._prctl(self._PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != self._pid:  # the reactor died before the signal was armed
            os._exit(1)


_launcher: _Launcher | None = None
_launcher_lock = threading.Lock()


def _launch(argv: list[str], env: dict) -> subprocess.Popen:
    """Start a control client that ends with this process (see _Launcher)."""
    global _launcher
    with _launcher_lock:
        if _launcher is None or _launcher._pid != os.getpid():  # (a forked child needs its own thread)
            _launcher = _Launcher()
    return _launcher.popen(argv, env)


def quote(arg: str) -> str:
    """One argument for tmux's command parser: single quotes, nothing inside is special."""
    return "'" + arg.replace("'", "'\\''") + "'"


class ControlClient:
    """Runs tmux commands through one `tmux -C attach-session` client; thread-safe.

    run() returns a command's output lines, raises RuntimeError(message) for a command tmux
    refused, ControlLost when the client died after the command was sent, and returns None
    when control mode is unavailable (the caller runs the command as its own process).
    Several commands given at once go on one line (one round trip); their output comes back as
    one list, each command's block after the first starting with its "%begin" line.
    """

    def __init__(self, base_argv: Sequence[str], socket_path: str):
        # -f /dev/null: should attaching start a server (a stale socket), it reads no config.
        self._base = [base_argv[0], "-f", os.devnull, *base_argv[1:]]
        self._socket = socket_path
        self._lock = threading.Lock()  # held while a command is in flight: its caller reads the pipe
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._pending = bytearray()  # read from the pipe, not yet taken as lines (lock held)
        self._next_try = 0.0
        self._wrote = threading.local()  # per calling thread: when its last command went to tmux

    def last_write(self) -> float | None:
        """When the calling thread's last command was written to tmux (time.monotonic()), if it was."""
        return getattr(self._wrote, "at", None)

    def run(self, *commands: Sequence[str]) -> list[str] | None:
        line = " ; ".join(" ".join(quote(a) for a in args) for args in commands)
        self._wrote.at = None  # (until this command is written: the caller may run it as a process)
        with self._lock:
            if not self._ready():
                return None
            try:
                ok, lines = self._send(line)
            except OSError:
                self._close()
                self._wrote.at = None
                return None  # no whole line reached tmux: the caller may run it as a process
            except ControlLost:
                self._close()
                raise
        if not ok:
            raise RuntimeError(" ".join(lines).strip() or "tmux reported an error")
        return lines

    def close(self) -> None:
        with self._lock:
            self._close()

    # ------------------------------------------------------------------ internals (lock held)

    def _ready(self) -> bool:
        """A live, attached client, starting one if allowed; False means use a process per command."""
        if self._proc is not None and self._proc.poll() is None:
            return True
        self._close()
        if time.monotonic() < self._next_try or not os.path.exists(self._socket):
            return False  # no server: attaching would start one
        # Until it is attached, count this as a failed try.
        self._next_try = time.monotonic() + _RETRY_AFTER
        env = {k: v for k, v in os.environ.items() if k != "TMUX"}  # not a nested client
        self._pending = bytearray()  # nothing of an earlier client is left to read
        try:
            self._proc = _launch([*self._base, "-C", "attach-session", "-f", "no-output,ignore-size"], env)
        except OSError as exc:
            log.debug("no tmux control client: %s", exc)
            self._proc = None
            return False
        try:
            # Write nothing before the attach has answered: tmux loses input sent earlier.
            ok, lines = self._attached(time.monotonic() + _REPLY_TIMEOUT)
        except ControlLost as exc:
            ok, lines = False, [str(exc)]
        if not ok:
            log.debug("tmux control client could not attach: %s", " ".join(lines))
            self._close()
            return False
        self._reader = threading.Thread(target=self._drain_idle, args=(self._proc,), name="tmux control reader",
                                        daemon=True)
        self._reader.start()
        log.debug("tmux control client attached (pid %d)", self._proc.pid)
        self._next_try = 0.0  # should it die later, replace it at once
        return True

    def _attached(self, deadline: float) -> tuple[bool, list[str]]:
        """The block of the attach-session on the client's command line (no pane text in it)."""
        while not self._readline(deadline).startswith("%begin "):
            pass
        lines: list[str] = []
        while not (line := self._readline(deadline)).startswith(("%end ", "%error ")):
            lines.append(line)
        return line.startswith("%end "), lines

    def _send(self, command: str) -> tuple[bool, list[str]]:
        """Send command and the nonce after it; the command's reply."""
        nonce = secrets.token_hex(16)
        assert self._proc is not None and self._proc.stdin is not None
        self._pending.clear()  # idle output (notifications) the reader had no chance to drop
        self._wrote.at = time.monotonic()
        self._proc.stdin.write(f"{command}\ndisplay-message -p {nonce}\n".encode())
        self._proc.stdin.flush()
        return self._reply(nonce)

    def _reply(self, nonce: str) -> tuple[bool, list[str]]:
        """Lines of the command's block up to the nonce block; (True, output) or (False, error lines)."""
        deadline = time.monotonic() + _REPLY_TIMEOUT
        while not self._readline(deadline).startswith("%begin "):
            pass  # notifications between commands (%session-changed, ...)
        lines: list[str] = []
        while True:
            line = self._readline(deadline)
            if line == nonce and lines and lines[-1].startswith("%begin "):
                break
            lines.append(line)
        self._readline(deadline)  # the nonce block's %end
        lines.pop()  # its %begin
        # Notifications may sit between the two blocks; the command's own end is the last
        # %end/%error line before the nonce block (a pane's text can only come before it).
        ends = [i for i, line in enumerate(lines) if line.startswith(("%end ", "%error "))]
        if not ends:
            raise ControlLost("tmux control client: reply without an end")
        return lines[ends[-1]].startswith("%end "), lines[:ends[-1]]

    def _readline(self, deadline: float) -> str:
        """The next line tmux wrote, read from the pipe by the caller itself."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while (end := self._pending.find(b"\n")) < 0:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise ControlLost("tmux control client did not answer")
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                raise ControlLost("tmux control client exited")
            self._pending += chunk
        line = bytes(self._pending[:end])
        del self._pending[:end + 1]
        return line.decode("utf-8", "replace")

    def _drain_idle(self, proc: subprocess.Popen) -> None:
        """Reader thread of one client: every _IDLE_REST, drop what tmux sent while no command was in flight."""
        try:
            fd = proc.stdout.fileno()
            while self._proc is proc:
                time.sleep(_IDLE_REST)
                if not select.select([fd], [], [], 0)[0]:
                    continue
                with self._lock:  # a command in flight reads its own reply; wait for it to finish
                    if self._proc is not proc:
                        return
                    while select.select([fd], [], [], 0)[0]:
                        if not os.read(fd, 65536):
                            return  # the client's output ended: the next command replaces it
                    self._pending.clear()
        except (OSError, ValueError):
            return  # closed under us

    def _close(self) -> None:
        proc, self._proc, self._reader = self._proc, None, None
        if proc is None:
            return
        try:
            proc.stdin.close()  # the client exits at the end of its input
        except OSError:
            pass
        try:
            proc.wait(1)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # the idle reader, waiting for the lock, sees a client that is not current
