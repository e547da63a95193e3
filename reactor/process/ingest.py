"""The reactor's spool thread: forwards the host's agent facts to SQL in order, writes the status cache."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import select
import socket
import threading
import time
from datetime import datetime, timezone

from reactor.agent import spool
from reactor.errors import BadInput, Busy, DatabaseUnavailable, PsHealthError
from reactor.process.link import Link

log = logging.getLogger(__name__)

_TICK = 0.25
# The status cache counts as current for this many of its rounds, so one slow round does not
# make every statusline on the host say the reactor is gone.
_FRESH_ROUNDS = 3
_PANE = re.compile(r"%\d{1,9}")


class BadFact(ValueError):
    """A spool line that is not a fact this version understands."""


def parse(line: bytes) -> tuple[str, dict]:
    """The query name and parameters of one spool line; BadFact when it is not a well-formed fact."""
    try:
        fact = json.loads(line)
    except (ValueError, RecursionError):
        raise BadFact("not JSON") from None
    if not isinstance(fact, dict) or fact.get("kind") not in spool.KINDS:
        raise BadFact(f"unknown kind {str(fact.get('kind') if isinstance(fact, dict) else None)[:40]!r}")
    t, data = fact.get("t"), fact.get("data")
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or not 0 < t < 7e9:
        raise BadFact(f"bad time {str(t)[:40]!r}")
    if not isinstance(data, dict):
        raise BadFact("data is not an object")
    pane = fact.get("pane")
    params = {"now": datetime.fromtimestamp(t, tz=timezone.utc),
              "host": _text(fact.get("host")), "project": _text(fact.get("project")),
              "pane": pane if isinstance(pane, str) and _PANE.fullmatch(pane) else None}
    for key in spool.KINDS[fact["kind"]]:
        params[key] = _scalar(data.get(key))
    return "fact_" + fact["kind"], params


def _clip(value, limit: int) -> str:
    """A value for the log: at most limit characters (an agent's name may be longer than any log line)."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _scalar(value):
    # Only plain values reach SQL as parameters; the database checks their range and length.
    if isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return None


class SpoolIngest:
    """A thread that forwards the spool on start, on a poke and every poll, and refreshes the status cache."""

    def __init__(self, dsn: str, directory: str, host: str, poll_interval: float, status_interval: float):
        self._link = Link(dsn, "ps-health-reactor:spool")
        self._reader = spool.Reader(directory)
        self._directory = directory
        self._host = host
        self._poll = poll_interval
        self._status_every = status_interval
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._held_back: str | None = None  # the last reason forwarding paused, logged once
        self._failed: str | None = None  # the last other failure of a round, logged once
        self._waiting: set[str | None] = set()  # the projects whose facts waited last round, logged once
        self._thread = threading.Thread(target=self._run, name="spool", daemon=True)

    def start(self) -> None:
        try:
            spool.ensure_dir(self._directory)
        except spool.SpoolError as exc:
            log.error("agent facts are not forwarded: %s", exc)
            return
        self._sock = self._bind()
        self._thread.start()
        log.info("forwarding agent facts from %s", self._directory)

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._link.close(wait=min(timeout, 1.0))  # (one still in a call to a server that does not answer is left)
        if self._sock is not None:
            self._sock.close()
            try:
                os.unlink(spool.poke_path(self._directory, self._host))
            except OSError:
                pass

    def _bind(self) -> socket.socket | None:
        path = spool.poke_path(self._directory, self._host)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            try:
                os.unlink(path)  # left by a reactor that did not stop cleanly
            except FileNotFoundError:
                pass
            sock.bind(path)
        except OSError as exc:
            sock.close()
            log.warning("no wake-up socket at %s (%s): polling the spool every %g s", path, exc, self._poll)
            return None
        return sock

    def _run(self) -> None:
        next_poll = next_status = time.monotonic()
        while not self._stop.is_set():
            poked = self._wait(min(_TICK, max(0.0, next_poll - time.monotonic())))
            now = time.monotonic()
            if poked or now >= next_poll:
                if self._guarded(self.forward):
                    next_status = now  # new facts: the statuslines should show them now
                next_poll = time.monotonic() + self._poll
            if now >= next_status:
                self._guarded(self.write_status)
                next_status = time.monotonic() + self._status_every

    def _wait(self, timeout: float) -> bool:
        if self._sock is None:
            self._stop.wait(timeout)
            return False
        ready, _, _ = select.select([self._sock], [], [], timeout)
        if not ready:
            return False
        while True:  # one forward serves every poke that arrived meanwhile
            try:
                self._sock.recv(16, socket.MSG_DONTWAIT)
            except OSError:
                return True

    def _guarded(self, task) -> int:
        try:
            return task()
        except DatabaseUnavailable as exc:
            self._pause(f"database unavailable: {' '.join(str(exc).split())}")
        except (PsHealthError, spool.SpoolError, OSError) as exc:
            # e.g. a database not yet migrated for agent facts, or a spool folder made unusable
            if str(exc) != self._failed:
                log.warning("spool round failed: %s", exc)
                self._failed = str(exc)
        except Exception:  # a bug in one round must not end forwarding for good
            log.exception("spool round failed")
        return 0

    def _pause(self, reason: str) -> None:
        if reason != self._held_back:
            log.warning("agent facts wait in the spool (%s); retrying every %g s", reason, self._poll)
            self._held_back = reason

    def forward(self) -> int:
        """Forward every fact in the spool, oldest first; stop (keeping the rest) when the database is away."""
        if not self._reader.lock():
            return 0  # another reactor of this host reads this spool
        forwarded = 0
        waiting: set[str | None] = set()  # projects whose facts wait for the next round
        try:
            self._reader.take()
            copies = self._reader.set_aside_sources()
            # the facts set aside come first (each was read before any fact not read yet), so a project's facts
            # keep their order whenever a round ends early or the reactor dies
            for name in self._reader.batches():
                for line, end in self._reader.facts(name):
                    origin = spool.source(line, name, end)
                    if copies.get(origin, set()) - {name}:
                        pass  # copied to a set-aside batch just before the reactor died: that copy goes on
                    elif not self._forward_one(line, waiting, origin):
                        return forwarded
                    self._reader.ack(name, end)
                    forwarded += 1
                self._reader.done(name)
        finally:
            self._reader.unlock()
            if forwarded:
                log.debug("forwarded %d agent facts", forwarded)
        if waiting != self._waiting:
            if waiting:
                log.info("agent facts of %s wait for the next round: another transaction holds the project's lock",
                         ", ".join(sorted(repr(p) for p in waiting)))
            self._waiting = waiting
        if self._held_back:
            log.info("agent facts flow again")
            self._held_back = None
        return forwarded

    def _forward_one(self, line: bytes | None, waiting: set[str | None], origin: str) -> bool:
        """Forward one fact; False when it must wait (the database is away or failed). A fact whose project's
        lock another transaction holds (an agent's login may leave one open) is set aside for the next round,
        with every later fact of that project, and the facts of the other projects go on."""
        try:
            if line is None:
                raise BadFact(f"longer than {spool.MAX_LINE} bytes")
            name, params = parse(line)
        except BadFact as exc:
            log.warning("skipped a spool line that is not a fact (%s)", exc)
            return True
        if params["project"] in waiting:
            self._reader.set_aside(line, origin)
            return True
        try:
            self._link.call(name, params)
        except Busy:
            waiting.add(params["project"])
            self._reader.set_aside(line, origin)
        except BadInput as exc:
            # Refused for good (bad value, unknown project, not allowed): later facts must not wait.
            log.warning("%s of %s refused [%s]: %s", name[5:], _clip(params["project"], 80), exc.sqlstate,
                        _clip(str(exc), 300))
        except DatabaseUnavailable:
            raise
        except PsHealthError as exc:
            self._pause(f"{name[5:]} of {_clip(params['project'], 80)} failed [{exc.sqlstate}]: {_clip(str(exc), 300)}")
            return False
        return True

    def write_status(self) -> int:
        """Write what each live session of this host shows in its statusline: one query, one file."""
        rows = self._link.call("host_status", {"host": self._host})
        now = time.time()
        entries = [{"project": r["project"], "pane": r["tmux_target"],
                    "context_percent": None if r["context_percent"] is None else float(r["context_percent"]),
                    "running": r["running"], "stalled": r["stalled"], "open_alerts": r["open_alerts"]}
                   for r in rows]
        cache = {"host": self._host, "written_at": now,
                 "fresh_until": now + _FRESH_ROUNDS * max(self._status_every, self._poll),
                 "panes": {e["pane"]: e for e in entries if e["pane"]},
                 "projects": {e["project"]: e for e in entries}}
        spool.write_atomic(spool.status_path(self._directory, self._host),
                           json.dumps(cache, separators=(",", ":")).encode())
        self._failed = None
        return 0
