"""Record delivery outcomes as they happen: a thread that batches whatever is waiting."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from reactor.errors import Busy, DatabaseUnavailable, PsHealthError
from reactor.process.link import Link

log = logging.getLogger(__name__)

MAX_BATCH = 500
# While the database is away, try again this often (the Link reconnects by itself).
RETRY_SECONDS = 1.0
# An outcome whose project another transaction keeps locked (Busy) is tried again this often, on its own:
# it must not hold up the outcomes of other projects.
BUSY_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Result:
    """One outcome to record with complete_prompt; claimed_at: the claim it is of (None: whichever holds it)."""

    prompt_id: int
    outcome: str
    detail: str
    claimed_at: object = None


class Completer:
    """Sends outcomes to complete_prompt as soon as they arrive, many per round trip.

    Outcomes that find the database away are kept and sent when it is back; on_recorded(ids)
    is called for every prompt whose outcome was recorded or refused (lease lost).
    """

    def __init__(self, link: Link, worker: str, on_recorded: Callable[[list[int]], None]):
        self._link = link
        self._worker = worker
        self._on_recorded = on_recorded
        self._queue: queue.SimpleQueue[Result | None] = queue.SimpleQueue()
        self._waiting: list[Result] = []
        self._busy: list[Result] = []  # refused with Busy (parked): tried again every BUSY_RETRY_SECONDS
        self._busy_due = 0.0
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="completer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, result: Result) -> None:
        """Queue one outcome; returns at once."""
        self._queue.put(result)

    def close(self, timeout: float) -> int:
        """Send what is queued (one last try if the database is away); return outcomes left unsent."""
        self._closing.set()
        self._queue.put(None)
        self._thread.join(timeout)
        return len(self._waiting) + len(self._busy) + self._queue.qsize()

    def _run(self) -> None:
        while True:
            timeout = None if not self._waiting else RETRY_SECONDS
            if self._busy:
                timeout = min(timeout or BUSY_RETRY_SECONDS, max(0.0, self._busy_due - time.monotonic()))
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is not None:
                self._waiting.append(item)
            while len(self._waiting) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is not None:
                    self._waiting.append(more)
            if self._waiting:
                self._send()
            if self._busy and (time.monotonic() >= self._busy_due or self._closing.is_set()):
                self._retry_busy()
            if self._closing.is_set() and self._queue.empty():
                return

    def _send(self) -> None:
        batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
        try:
            self._record(batch)
        except DatabaseUnavailable as exc:
            log.debug("outcomes of %d prompts wait for the database: %s", len(batch), exc)
            self._waiting = batch + self._waiting
        except Busy as exc:
            # A project kept locked by another transaction: its outcomes wait, the others are recorded now.
            self._send_each(self._park_locked(batch, str(exc)))
        except PsHealthError:
            self._send_each(batch)  # one refused outcome (a lost lease) fails the whole batch: one by one

    def _send_each(self, batch: list[Result]) -> None:
        for result in batch:
            self._one(result)

    def _park_locked(self, batch: list[Result], reason: str | None) -> list[Result]:
        """Park the outcomes whose project another transaction holds locked now (saying why, unless reason is
        None); return the others. A lock kept for long costs one short call per round, not a wait per outcome."""
        try:
            locked = {row["id"] for row in self._link.call("locked", {
                "worker": self._worker, "ids": [r.prompt_id for r in batch]})}
        except DatabaseUnavailable:
            self._waiting = batch + self._waiting
            return []
        except PsHealthError:
            locked = set()  # cannot tell: each tries on its own
        for result in batch:
            if result.prompt_id in locked:
                self._park(result, reason)
        return [r for r in batch if r.prompt_id not in locked]

    def _park(self, result: Result, reason: str | None) -> None:
        if not self._busy:
            self._busy_due = time.monotonic() + BUSY_RETRY_SECONDS
        self._busy.append(result)
        if reason is not None:
            log.warning("prompt %s: outcome %s waits: %s; tried again every %g s", result.prompt_id,
                        result.outcome, reason, BUSY_RETRY_SECONDS)

    def _retry_busy(self) -> None:
        """The parked outcomes whose project is free now, recorded; the others wait another round."""
        busy, self._busy = self._busy, []
        self._send_each(self._park_locked(busy, None))

    def _one(self, result: Result) -> None:
        try:
            self._record([result])
        except DatabaseUnavailable:
            self._waiting.append(result)
        except Busy as exc:
            self._park(result, str(exc))
        except PsHealthError as exc:
            log.warning("prompt %s: outcome %s not recorded: %s [%s]", result.prompt_id,
                        result.outcome, exc, exc.sqlstate)
            self._on_recorded([result.prompt_id])

    def _record(self, batch: list[Result]) -> None:
        self._link.call("complete", {
            "worker": self._worker,
            "ids": [r.prompt_id for r in batch],
            "outcomes": [r.outcome for r in batch],
            "details": [r.detail for r in batch],
            "claimed": [r.claimed_at for r in batch],
        })
        self._on_recorded([r.prompt_id for r in batch])
