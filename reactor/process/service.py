"""The reactor loop: listen, claim, hand prompts to the Dispatcher, reconnect, shut down cleanly."""

from __future__ import annotations

import functools
import json
import logging
import math
import signal
import threading
import time
from dataclasses import replace

from tenacity import RetryError, Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential_jitter

from reactor.errors import AlreadyRunning, DatabaseUnavailable, PsHealthError
from reactor.process.channel import CommandRunner
from reactor.process.completer import Completer, Result
from reactor.process.dispatcher import Dispatcher, Job
from reactor.process.housekeeping import HostProbe, housekeeping
from reactor.process.ingest import SpoolIngest
from reactor.process.link import Link, Listener
from reactor.process.metrics import Metrics
from reactor.process.options import Options
from reactor.tmux.client import Outcome, Tmux
from reactor.tmux.typist import Trust, Typist

log = logging.getLogger(__name__)

FINISHED = "finished"  # a held prompt whose attempt ended (see Service._held)

# The main loop wakes at least this often to notice a stop request.
_TICK = 0.25
# An idle listener is pinged this often, so a dead connection is noticed without traffic; a ping that gets no
# answer within as long is given up (the connection is cut, and the reactor reconnects).
_PING_SECONDS = 10.0
# A call (the main loop's: claim, renew, record a pane's identity; an outcome; a probe's report, a sweep, the health
# gauge) that gets no answer within this long is cut and tried once more on a new connection (see Link): far longer
# than any call waits for a lock (LOCK_TIMEOUT), or a sweep takes.
_CALL_LIMIT = 30.0
# A call of the main loop's in flight when a stop is requested gets this long more (any lock wait ends by then).
_STOP_GRACE = 2.0
_BACKOFF_CAP = 30.0
# A stop's last calls (give back the prompts never typed, remove the reactor's row) get this long.
_LAST_CALLS = 5.0
# The longest wake-up ps-health sends is about 600 characters (a host and a project of 255 each).
_NOTE_LIMIT = 1024
# Any login may NOTIFY the channel (see WakeThrottle).
_EMPTY_WAKES = 3
_FLOOD_GAP = 1.0
_QUIET = 0.05


class WakeThrottle:
    """Whether a wake-up claims at once. Any login may NOTIFY the channel, and a flood of wake-ups would cost a
    claim each: once _EMPTY_WAKES wake-ups in a row found nothing to claim, each less than _FLOOD_GAP seconds
    after the one before, a wake-up claims at most every _QUIET seconds, until a claim finds a prompt. A wake-up
    held back is claimed when the quiet time ends. Times are time.monotonic() values, given by the caller."""

    def __init__(self):
        self.quiet_until = 0.0
        self._empty = 0  # wake-ups in a row that found nothing, each soon after the one before
        self._last_empty = -math.inf
        self._held_back = False

    def admit(self, now: float) -> bool:
        """A wake-up at now: True to claim now, False to claim at quiet_until."""
        if now < self.quiet_until:
            self._held_back = True
            return False
        return True

    def drained(self, now: float, woke: bool, found: bool) -> None:
        """A claim ended at now: for a wake-up (or one held back), or on the poll interval; found: it claimed a
        prompt, or stopped for room with prompts left."""
        woke, self._held_back = woke or self._held_back, False
        if found:
            self._empty, self.quiet_until = 0, 0.0
        elif woke:
            self._empty = self._empty + 1 if now - self._last_empty < _FLOOD_GAP else 1
            self._last_empty = now
            self.quiet_until = now + _QUIET if self._empty >= _EMPTY_WAKES else 0.0


# The same few settings come with every prompt: parsed once and shared (never changed) by all.
@functools.lru_cache(maxsize=64)
def _programs(text: str | None) -> tuple[str, ...]:
    return tuple(json.loads(text)) if text else ()


@functools.lru_cache(maxsize=64)
def _profiles(text: str | None) -> dict:
    return json.loads(text) if text else {}


class Reactor:
    """One reactor process for one host: run() blocks until request_stop() or a signal."""

    def __init__(self, opts: Options, tmux: Tmux | None = None):
        self.opts = opts
        self.metrics = Metrics()
        self._tmux = tmux or Tmux(socket_name=opts.tmux_socket, socket_path=opts.tmux_socket_path,
                                  control=opts.tmux_control)
        # The SQL caps a critical prompt's wait (critical_max_defer, returned as its max_defer).
        self._dispatcher = Dispatcher(Typist(self._tmux))
        self._commands = CommandRunner(self._finished)
        self._work = Link(opts.dsn, "ps-health-reactor:work", limit=_CALL_LIMIT)
        # (every probe kind, the sweep and the gauge share it: a call that never got an answer would stop them all)
        self._probe_link = Link(opts.dsn, "ps-health-reactor:probe", limit=_CALL_LIMIT)
        # Outcomes travel on a connection of their own, so a claim never waits behind one.
        self._complete_link = Link(opts.dsn, "ps-health-reactor:complete", limit=_CALL_LIMIT)
        self._completer = Completer(self._complete_link, opts.worker, self._recorded)
        probe = HostProbe(self._probe_link, opts.host, opts.tmux_socket, opts.tmux_socket_path)
        self._housekeeper = housekeeping(self._probe_link, probe, opts.probe_interval, opts.run_checks_every,
                                         self.metrics.health if opts.metrics_port else None)
        self._spool = SpoolIngest(opts.dsn, opts.spool_dir, opts.host, opts.poll_interval,
                                  opts.probe_interval or opts.poll_interval) if opts.spool_dir else None
        self._stop = threading.Event()
        # claimed, outcome not yet recorded: id -> False (queued), True (handed to a deliverer) or FINISHED (its
        # outcome is on the way: claimed again meanwhile, e.g. a retry, it is a new attempt to deliver)
        self._held: dict[int, bool | str] = {}
        self._recording: dict[int, int] = {}  # id -> outcomes handed to the completer, not yet recorded
        # id -> the claimed_at of its latest claim by this reactor (kept while held): an outcome says the claim it is
        # of. A prompt claimed again while its delivery still runs (our own lease ran out) is that same delivery: its
        # outcome is of the latest claim, and one sent again of an earlier claim is refused.
        self._claims: dict[int, object] = {}
        self._held_lock = threading.Lock()
        self._listener = Listener(opts.dsn, "ps-health-reactor:listen", opts.host, opts.worker,
                                  ping_limit=_PING_SECONDS)
        self._down_since: float | None = None
        self._backlog = False  # the last drain stopped at max_held with prompts possibly left
        self._refused: str | None = None  # why the last claim was refused, until one succeeds
        # (version, agent profiles, marker pattern) as the last claim that carried them gave them: a claim
        # sends them only when their version changed since
        self._profiles: tuple[str | None, str | None, str | None] = (None, None, None)

    def request_stop(self, *_: object) -> None:
        """Stop claiming and shut down (safe from a signal handler)."""
        if self._stop.is_set():
            return  # (a second signal changes nothing: the stop's own calls are not cut)
        self._stop.set()
        # A call that waits for an answer would keep the stop waiting: a ping is given up at once, a call of the
        # main loop's once it had time to end (a claim's answer is not thrown away).
        self._listener.abort()
        self._work.hurry(_STOP_GRACE)

    def run(self, install_signals: bool = True) -> int:
        """Serve until stopped; returns the exit code."""
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self.request_stop)
        if self.opts.metrics_port:
            self.metrics.serve(self.opts.metrics_port, self.opts.metrics_addr)
        self.metrics.listener.set(0)
        self._completer.start()
        log.info("reactor %s for host %s starting (poll %g s, probes every %g s, lease %d s)",
                 self.opts.worker, self.opts.host, self.opts.poll_interval, self.opts.probe_interval,
                 self.opts.lease)
        code = 0
        try:
            while not self._stop.is_set():
                try:
                    self._connect()
                except RetryError:
                    break  # stop requested while the database was away
                if not self._housekeeper.started:  # probes, sweeps and facts only once the host is ours
                    self._housekeeper.start()
                    if self._spool:
                        self._spool.start()
                try:
                    self._serve()
                except DatabaseUnavailable as exc:
                    if self._stop.is_set():
                        break  # (a ping given up for the stop, or an outage as it came: the stop goes on)
                    self._went_away(exc)
        except AlreadyRunning as exc:
            log.error("%s (%s)", exc, exc.hint)
            code = 1
        finally:
            # Also after an unexpected error: prompts never typed go back to the outbox.
            self._shutdown()
        return code

    # ------------------------------------------------------------------ connection life cycle

    def _connect(self) -> None:
        """Open the listener (retrying with capped, jittered backoff), then catch up on work."""
        retrying = Retrying(retry=retry_if_exception_type(DatabaseUnavailable),
                            wait=wait_exponential_jitter(initial=0.2, max=_BACKOFF_CAP),
                            stop=stop_when_event_set(self._stop), sleep=self._stop.wait, reraise=False)
        for attempt in retrying:
            with attempt:
                try:
                    self._listener.open()
                    self._extend()  # renew what we hold first, so the drain does not re-claim it
                    drained = self._drain()
                except DatabaseUnavailable as exc:
                    self._went_away(exc)
                    raise
        self.metrics.listener.set(1)
        if self._down_since is not None:
            log.info("reconnected after %.0f s, drained %d prompts", time.monotonic() - self._down_since, drained)
            self._down_since = None
        else:
            log.info("listening on channel ps_health; drained %d prompts at start", drained)

    def _went_away(self, exc: Exception) -> None:
        self.metrics.listener.set(0)
        self._listener.close()
        self._profiles = (None, None, None)  # the database that comes back may be another one: ask again
        if self._down_since is None:
            self._down_since = time.monotonic()
            reason = " ".join(str(exc).split())  # libpq messages span lines; the log wants one
            log.warning("database went away: %s; reconnecting (backoff up to %.0f s)", reason, _BACKOFF_CAP)

    # ------------------------------------------------------------------ the loop

    def _serve(self) -> None:
        """Wait for notifications; drain on a wake-up for this host and on the poll interval."""
        now = time.monotonic()
        next_poll, next_lease, next_ping = (now + self.opts.poll_interval, now + self.opts.lease / 3,
                                            now + _PING_SECONDS)
        throttle = WakeThrottle()
        while not self._stop.is_set():
            now = time.monotonic()
            wait = max(0.0, min(_TICK, next_poll - now, next_lease - now))
            payloads = self._listener.wait(wait)
            notes = [note for note in map(self._note, payloads) if note is not None]
            woke = bool(notes)
            if any("session" in note for note in notes):
                self._housekeeper.poke()  # a pane was just registered here: identify it now
            now = time.monotonic()
            if payloads:
                # Any notification shows the connection is alive; and a ping sent while a flood of them waits on
                # it would wait until every one of them was read (and kept in memory), claiming nothing meanwhile.
                next_ping = now + _PING_SECONDS
            if woke and not throttle.admit(now):
                woke, next_poll = False, min(next_poll, throttle.quiet_until)
            if self._stop.is_set():
                return
            if woke or now >= next_poll or (self._backlog and self._held_count() <= self.opts.max_held // 2):
                claimed = self._drain()
                next_poll = time.monotonic() + self.opts.poll_interval
                # (a backlog: it stopped for room, prompts are left)
                throttle.drained(time.monotonic(), woke, bool(claimed) or self._backlog)
                if self._stop.is_set():
                    return  # (no renewal or ping after a stop: they could wait on a database that does not answer)
            if now >= next_lease:
                self._extend()
                next_lease = now + self.opts.lease / 3
            if now >= next_ping:
                self._listener.ping()
                next_ping = now + _PING_SECONDS

    def _for_this_host(self, payload: str) -> bool:
        return self._note(payload) is not None

    def _note(self, payload: str) -> dict | None:
        """A notification for this host (a prompt, or a session registered with a pane), else None. Any login may
        send one: whatever it holds (nested 7,000 deep, 8,000 bytes long) is dropped, never the reactor."""
        if len(payload) > _NOTE_LIMIT:
            log.debug("ignoring a notification of %d characters", len(payload))
            return None
        try:
            note = json.loads(payload)
        except (ValueError, RecursionError):
            log.debug("ignoring malformed notification %.80r", payload)
            return None
        # No host: an escalation any reactor may run.
        if isinstance(note, dict) and "host" in note and note["host"] in (self.opts.host, None):
            return note
        return None

    # ------------------------------------------------------------------ claiming and completing

    def _drain(self) -> int:
        """Claim this host's deliverable prompts until none are left or max_held are held; submit each."""
        total = 0
        while not self._stop.is_set():
            room = self.opts.max_held - self._held_count()
            # A backlog beyond max_held stays in the outbox (memory stays flat, other reactors can
            # take it); the loop claims more as soon as outcomes free room.
            self._backlog = room <= 0
            if self._backlog:
                break
            limit = min(self.opts.batch, room)
            try:
                rows = self._work.call("claim", {"host": self.opts.host, "worker": self.opts.worker,
                                                 "limit": limit, "lease": self.opts.lease,
                                                 "profiles_version": self._profiles[0]})
            except DatabaseUnavailable:
                raise
            except PsHealthError as exc:
                # A refused claim must not end the reactor: probes go on, the next poll tries again.
                self._claim_refused(exc)
                break
            self._refused = None
            for row in rows:
                total += self._submit(self._with_profiles(row))
            if len(rows) < limit:
                break
        return total

    def _with_profiles(self, row: dict) -> dict:
        """The row with the agent profiles and marker of its version: those it carries (a version new to this
        reactor, then kept), else the ones kept."""
        if row["channel"] != "tmux":
            return row
        if row["profiles_version"] != self._profiles[0]:
            self._profiles = (row["profiles_version"], row["agent_profiles"], row["marker_pattern"])
        else:
            row["agent_profiles"], row["marker_pattern"] = self._profiles[1], self._profiles[2]
        return row

    def _claim_refused(self, exc: PsHealthError) -> None:
        """Log a refused claim once per distinct reason (it is retried every poll)."""
        reason = f"{exc} [{exc.sqlstate}]" if exc.sqlstate else str(exc)
        if reason != self._refused:
            log.error("claim refused, retrying every %g s: %s", self.opts.poll_interval, reason)
            self._refused = reason

    def _held_count(self) -> int:
        with self._held_lock:
            return len(self._held)

    def _submit(self, row: dict) -> int:
        """Hand one claimed prompt to the deliverer of its channel; 0 if it is already ours. Once a stop was requested
        (a claim in flight then), it is kept unhanded: the stop gives it back."""
        with self._held_lock:
            self._claims[row["id"]] = row.get("claimed_at")
            if self._held.get(row["id"], FINISHED) is not FINISHED:
                return 0  # our own lease ran out and we claimed it again: it is already queued
            self._held[row["id"]] = False
            self.metrics.held.set(len(self._held))
        if self._stop.is_set():
            return 1
        if row["channel"] in ("command", "escalation"):
            handed = self._commands.submit(row)
        elif row["channel"] == "tmux" and row["target"]:
            try:
                job = self._job(row)
            except (TypeError, ValueError) as exc:  # only this prompt fails, with the reason
                self._record(Result(row["id"], "failed", f"unusable delivery settings: {exc}"))
                return 1
            handed = self._dispatcher.submit(job)
        else:
            outcome = ("target_missing", "the prompt has no tmux target") if row["channel"] == "tmux" else \
                ("failed", f"this reactor cannot deliver channel {row['channel']!r}")
            self._record(Result(row["id"], *outcome))
            return 1
        if handed:
            with self._held_lock:
                if self._held.get(row["id"]) is False:  # unless it already ran
                    self._held[row["id"]] = True
        return 1

    def _job(self, row: dict) -> Job:
        """The tmux Job of a claimed row; ValueError when its timings are not finite and non-negative."""
        timings = {"submit_delay": float(row["submit_delay_ms"]) / 1000.0, "idle_seconds": float(row["idle_seconds"]),
                   "max_defer": float(row["max_defer_seconds"])}
        for name, value in timings.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} is {value}")
        return Job(prompt_id=row["id"], target=row["target"], text=row["text"], severity=row["severity"],
                   on_done=lambda job, outcome: self._finished(job.prompt_id, job.target, outcome),
                   trust=Trust(identity=row["identity"], programs=_programs(row["agent_programs"]),
                               profiles=_profiles(row["agent_profiles"]), marker_pattern=row["marker_pattern"],
                               bind=lambda seen, p=row["project"], t=row["target"]: self._bind(p, t, seen),
                               claimed_before=row["attempts"] > 1, reset=row.get("kind") == "reset"),
                   **timings)

    def _finished(self, prompt_id: int, where: str, outcome: Outcome) -> None:
        """A delivery ended (on the deliverer's thread): count, log, record at once."""
        self.metrics.delivery(outcome.outcome, outcome.latency_ms)
        log.info("prompt %s to %s: %s in %.1f ms (%s)", prompt_id, where, outcome.outcome, outcome.latency_ms,
                 outcome.detail)
        self._record(Result(prompt_id, outcome.outcome, outcome.detail))

    def _record(self, result: Result) -> None:
        """Hand an attempt's outcome to the completer, as an outcome of the prompt's latest claim; the prompt may be
        claimed again before it is recorded."""
        with self._held_lock:
            result = replace(result, claimed_at=self._claims.get(result.prompt_id))
            self._held[result.prompt_id] = FINISHED
            self._recording[result.prompt_id] = self._recording.get(result.prompt_id, 0) + 1
        self._completer.put(result)

    def _bind(self, project: str, target: str, seen: str) -> str | None:
        """Record the identity of a pane seen for the first time; the identity its session is bound to."""
        rows = self._work.call("bind_target", {"project": project, "host": self.opts.host, "target": target,
                                               "identity": seen})
        if rows[0]["identity"] == "":  # only a probe round, seeing every pane of the host, may bind it: run one now
            self._housekeeper.poke()
        return rows[0]["identity"]

    def _recorded(self, ids: list[int]) -> None:
        with self._held_lock:
            for prompt_id in ids:
                left = self._recording.pop(prompt_id, 1) - 1
                if left > 0:
                    self._recording[prompt_id] = left
                elif self._held.get(prompt_id) is FINISHED:  # not claimed again meanwhile
                    del self._held[prompt_id]
                    self._claims.pop(prompt_id, None)
            self.metrics.held.set(len(self._held))

    def _extend(self) -> None:
        with self._held_lock:
            ids = list(self._held)
        if ids:
            self._work.call("extend", {"worker": self.opts.worker, "ids": ids, "lease": self.opts.lease})

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        """Let typing in progress finish, record it, give back every prompt never typed."""
        log.info("stopping: finishing deliveries in progress")
        # One deadline for all of it: a database or a tmux server that does not answer holds up every part.
        deadline = time.monotonic() + self.opts.shutdown_timeout

        def remaining(least: float = 0.0) -> float:
            return max(least, deadline - time.monotonic())

        untyped = {job.prompt_id for job in self._dispatcher.stop(remaining())}
        untyped.update(self._commands.stop(remaining()))
        left = self._completer.close(remaining(_LAST_CALLS))  # (what was typed is recorded, if it can be)
        self._housekeeper.stop(remaining())
        if self._spool:
            self._spool.stop(remaining())
        with self._held_lock:
            untyped.update(pid for pid, handed in self._held.items() if handed is False)
        ids = sorted(untyped)
        if left:
            log.warning("%d outcomes not recorded (database away); their leases will expire", left)
        # The listener is closed without a word and the reactor's row removed on another connection: the listener
        # may have a flood of notifications to send before it would answer, or not answer at all.
        listener = self._listener.backend_pid
        self._listener.close()
        released = []

        def last_calls() -> None:
            if ids:
                try:
                    released.append(self._work.call("release", {"worker": self.opts.worker, "ids": ids})[0]["released"])
                except Exception as exc:  # their leases run out and another reactor takes them
                    log.warning("could not release %d prompts: %s", len(ids), exc)
            if listener is not None:
                try:
                    self._work.call("reactor_stop", {"worker": self.opts.worker, "listener": listener})
                except PsHealthError:  # the row stays, but with its listener closed it no longer counts
                    pass

        # A database that does not answer must not keep the reactor from exiting.
        calls = threading.Thread(target=last_calls, name="last-calls", daemon=True)
        calls.start()
        calls.join(_LAST_CALLS)
        if calls.is_alive():
            log.warning("the database did not answer the stop's last calls within %g s: the prompts not given back "
                        "wait for their leases to run out, and the reactor's row stays (with its listener closed it "
                        "no longer counts)", _LAST_CALLS)
        log.info("stopped: released %d undelivered prompts", sum(released))
        for link in (self._work, self._complete_link, self._probe_link):
            link.close(wait=_LAST_CALLS / 5)  # (one still in a call to a server that does not answer is left as it is)
        self._tmux.close()
