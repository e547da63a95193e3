"""Deliver prompts to many panes at once, one at a time and in order per pane."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from reactor.tmux.client import Outcome
from reactor.tmux.typist import Trust, Typist

log = logging.getLogger(__name__)

SEVERITIES = ("warning", "critical")
# A pane's worker waits this long for its next job before it ends (a thread start saved per prompt).
_LINGER = 2.0


@dataclass
class Job:
    """One prompt to type into one pane; on_done(job, outcome) is called once it ran."""

    prompt_id: object
    target: str
    text: str
    severity: str = "warning"
    # Timing comes from SQL with each claimed prompt (settings); zero here means "no wait".
    submit_delay: float = 0.0
    idle_seconds: float = 0.0
    max_defer: float = 0.0
    on_done: Callable[[Job, Outcome], None] | None = None
    # What must hold before a keystroke (pane identity, agent program, input line); none: nothing is typed.
    trust: Trust | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"prompt {self.prompt_id}: severity must be one of {SEVERITIES}")
        for name in ("submit_delay", "idle_seconds", "max_defer"):
            if getattr(self, name) < 0:
                raise ValueError(f"prompt {self.prompt_id}: {name} must not be negative")


class Dispatcher:
    """Runs Jobs: per pane FIFO and serial, across panes concurrent, each behind a busy gate.

    One worker thread per pane that has work, ended when its queue stayed empty for a moment
    (a prompt that follows soon finds it waiting). The workers spend nearly all their time
    asleep (busy gate, submit delay), so a thread each is cheap, and unlike a fixed pool a few
    long-deferred panes can never starve the rest. Jobs are keyed by their target string: give
    the same pane the same target (its %id).
    """

    def __init__(self, typist: Typist, *, poll_interval: float = 0.3, attempts: int = 3):
        self._typist = typist
        self._tmux = typist.tmux
        self._poll = poll_interval
        self._attempts = attempts
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Job]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._wake: dict[str, threading.Condition] = {}  # per pane, on self._lock: a job came
        self._active = 0
        self._abandoned: list[Job] = []
        self._stopping = threading.Event()

    def submit(self, job: Job) -> bool:
        """Queue job behind earlier jobs for its pane; False once stop() was called."""
        with self._lock:
            if self._stopping.is_set():
                return False
            self._queues.setdefault(job.target, deque()).append(job)
            if job.target in self._wake:
                self._wake[job.target].notify()
            if job.target not in self._workers:
                worker = threading.Thread(target=self._drain, args=(job.target,),
                                          name=f"deliver {job.target}", daemon=True)
                self._workers[job.target] = worker
                worker.start()
        return True

    def in_flight(self) -> int:
        """Jobs taken by a worker: waiting for their pane to go idle, or being typed."""
        with self._lock:
            return self._active

    def pending(self) -> int:
        """Jobs queued behind another job for the same pane."""
        with self._lock:
            return sum(len(queue) for queue in self._queues.values())

    def stop(self, timeout: float) -> list[Job]:
        """Refuse new jobs, let typing in progress finish, return the jobs never typed."""
        self._stopping.set()
        with self._lock:
            for wake in self._wake.values():
                wake.notify()  # a worker waiting for its next job leaves now
            left = [job for queue in self._queues.values() for job in queue]
            self._queues.clear()
            workers = list(self._workers.values())
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            # Jobs still waiting at the busy gate were not typed either.
            left = self._abandoned + left
            self._abandoned = []
            if any(worker.is_alive() for worker in workers):
                log.warning("stop: %d deliveries still running after %.1f s",
                            self._active, timeout)
        return left

    def _drain(self, target: str) -> None:
        """Worker loop for one pane: take its jobs in order until none came for a moment."""
        while True:
            with self._lock:
                wake = self._wake.setdefault(target, threading.Condition(self._lock))
                deadline = time.monotonic() + _LINGER
                while not self._stopping.is_set() and not self._queues.get(target) \
                        and (left := deadline - time.monotonic()) > 0:
                    wake.wait(left)
                queue = self._queues.get(target)
                if self._stopping.is_set() or not queue:
                    # Leave under the lock, so submit() starts a fresh worker if needed.
                    del self._workers[target]
                    del self._wake[target]
                    if queue is not None and not queue:
                        del self._queues[target]
                    return
                job = queue.popleft()
                self._active += 1
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._active -= 1

    def _run(self, job: Job) -> None:
        """Wait for the pane to go idle, type the job, report the outcome."""
        gate = self._wait_until_idle(job)
        if gate is None:
            with self._lock:
                self._abandoned.append(job)
            return
        try:
            if job.trust is None:
                outcome = Outcome("failed", "nothing says what this pane may be: not typed", 0.0)
            else:
                outcome = self._typist.deliver(job.target, job.text, job.submit_delay, self._attempts,
                                               trust=job.trust)
        except Exception as exc:  # a bug must not kill the pane's worker silently
            log.exception("prompt %s: delivery crashed", job.prompt_id)
            outcome = Outcome("failed", f"delivery crashed: {exc!r}", 0.0)
        if gate:
            outcome = replace(outcome, detail=f"{outcome.detail}; {gate}")
        log.info("prompt %s to %s: %s (%s)", job.prompt_id, job.target,
                 outcome.outcome, outcome.detail)
        if job.on_done is not None:
            try:
                job.on_done(job, outcome)
            except Exception:
                log.exception("prompt %s: on_done callback failed", job.prompt_id)

    def _wait_until_idle(self, job: Job) -> str | None:
        """Wait until the agent shows no running turn (its profile's busy pattern) and the screen was still
        for idle_seconds, or the defer limit passes. idle_seconds 0 turns the gate off.

        Returns "" when idle, a note when sent while busy, None when stop() interrupted.
        """
        if job.idle_seconds <= 0:
            return ""
        limit = job.max_defer  # (SQL caps a critical prompt's: critical_max_defer)
        start = time.monotonic()
        screen, busy = self._observe(job)
        still_since = start
        while True:
            if screen is None:
                return ""  # cannot see the pane; deliver() reports why
            now = time.monotonic()
            if busy:
                still_since = now  # a turn is running: the stillness of its screen says nothing
            elif now - still_since >= job.idle_seconds:
                return ""
            if now - start >= limit:
                return f"pane still busy after {limit:g} s, sent anyway"
            pause = min(self._poll, still_since + job.idle_seconds - now, start + limit - now)
            if self._stopping.wait(max(pause, 0.0)):
                return None
            latest, busy = self._observe(job)
            if latest != screen:
                screen, still_since = latest, time.monotonic()

    def _observe(self, job: Job) -> tuple[str | None, bool]:
        """The pane's screen (None: cannot see it) and whether its agent's profile says a turn is running."""
        seen = self._typist.profile_at(job.target, job.trust)
        if seen is None:
            return None, False
        look, profile = seen
        return look.screen, profile is not None and profile.is_busy(look.screen)
