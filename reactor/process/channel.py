"""Deliver prompts that go to a command instead of a pane: a project's command channel, an escalation."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from reactor.tmux.client import Outcome

log = logging.getLogger(__name__)

# Commands are webhooks, mailers, notifiers: a few at a time is plenty.
WORKERS = 4
_STDERR_TAIL = 300
# Never hand the reactor's own connection settings (a DSN may hold a password) to a command.
_PRIVATE_PREFIXES = ("PS_HEALTH_", "PG")


def _argv(command: object) -> list[str] | None:
    if isinstance(command, list) and command and all(isinstance(a, str) and a for a in command):
        return command
    return None


def run_command(row: dict) -> Outcome:
    """Run the prompt's command (argv from SQL, no shell) with its text on stdin; never raise."""
    started = time.monotonic()
    argv = _argv(row.get("command"))
    if argv is None:
        return Outcome("failed", f"no command to run for channel {row.get('channel')}: "
                                 f"{str(row.get('command'))[:80]}", 0.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_PREFIXES)}
    env.update(PS_HEALTH_PROMPT_ID=str(row["id"]), PS_HEALTH_CHECK_ID=str(row.get("check_id") or ""),
               PS_HEALTH_PROJECT=row["project"], PS_HEALTH_STATUS=row.get("check_status") or row["severity"],
               PS_HEALTH_CHECK_TYPE=row.get("check_type") or "")
    timeout = float(row["timeout_seconds"])  # command_timeout, sent by claim_prompts with the row
    try:
        # Its own session, so a timeout kills whatever the command started too.
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=env, cwd="/", start_new_session=True)
    except OSError as exc:
        return Outcome("failed", f"cannot run {argv[0]}: {exc.strerror or exc}", _ms(started))
    try:
        _, err = proc.communicate(row["text"].encode("utf-8", "replace"), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return Outcome("failed", f"{argv[0]} killed after {timeout:g} s", _ms(started))
    if proc.returncode == 0:
        return Outcome("delivered", f"{argv[0]} exited 0", _ms(started))
    tail = " ".join(err.decode("utf-8", "replace").split())[-_STDERR_TAIL:]
    return Outcome("failed", f"{argv[0]} exited {proc.returncode}" + (f": {tail}" if tail else ""), _ms(started))


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass  # already gone
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # a grandchild outside the group keeps the pipe open
        pass


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000.0


class CommandRunner:
    """Runs channel commands on a few threads; on_done(prompt_id, where, outcome) once each finished."""

    def __init__(self, on_done: Callable[[int, str, Outcome], None], workers: int = WORKERS):
        self._on_done = on_done
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="channel")
        self._futures: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._stopped = False

    def submit(self, row: dict) -> bool:
        """Queue the prompt's command; False once stop() was called."""
        with self._lock:
            if self._stopped:
                return False
            self._futures[row["id"]] = self._pool.submit(self._run, row)
        return True

    def _run(self, row: dict) -> None:
        outcome = run_command(row)
        with self._lock:
            self._futures.pop(row["id"], None)
        self._on_done(row["id"], f"{row['channel']} command", outcome)

    def stop(self, timeout: float) -> list[int]:
        """Start nothing more, wait for running commands, return the ids never started."""
        with self._lock:
            self._stopped = True
            futures = dict(self._futures)
        unstarted = [pid for pid, future in futures.items() if future.cancel()]
        wait([f for f in futures.values() if not f.cancelled()], timeout=timeout)
        self._pool.shutdown(wait=False)
        return unstarted
