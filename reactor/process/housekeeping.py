"""What only this host can see, reported to SQL as facts; and the housekeeping timers that run it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from reactor.errors import DatabaseUnavailable, PsHealthError
from reactor.process import memory, probes
from reactor.process.link import Link
from reactor.tmux import client

log = logging.getLogger(__name__)

# How often system_health() feeds the sweep-age gauge when metrics are served.
HEALTH_SECONDS = 15.0
# How often free heap memory is handed back (a few milliseconds each time).
TRIM_SECONDS = 10.0
# Transcripts read in one context round; the ones not reached go first in the next round.
CONTEXT_ROUND_SECONDS = 5.0
# A timer's round running longer than this (and than four of its intervals) is reported as stuck.
STUCK_SECONDS = 30.0
# A poked probe round (a session registered with a pane here) runs at once, but rounds start at most this often.
POKE_GAP = 0.2


class HostProbe:
    """The probe kinds of this host: tmux targets, output mtimes, pids, transcripts and handoff files."""

    def __init__(self, link: Link, host: str, socket_name: str | None = None,
                 socket_path: str | None = None):
        self._link = link
        self._host = host
        self._socket_name = socket_name
        self._socket_path = socket_path
        self._transcripts = probes.TranscriptReader()
        self._tailed: set[str] = set()
        self._handoffs = probes.HandoffWatcher()
        self._refused: set[str] = set()  # handoff files skipped in the last round for their names
        self._turn = 0  # where the next context round starts

    def kinds(self) -> dict[str, Callable[[], int]]:
        """Each kind of fact, gathered and reported by its own round (so one that hangs stops no other)."""
        return {"targets": self.targets, "outputs": self.outputs, "pids": self.pids, "context": self.context,
                "handoffs": self.handoffs}

    def targets(self) -> int:
        with_target = [s for s in self._sessions() if s["tmux_target"]]
        if not with_target:
            return 0
        # tmux_panes never raises: an error of tmux itself comes back as "unknown".
        panes = client.tmux_panes([s["tmux_target"] for s in with_target],
                                  socket_name=self._socket_name, socket_path=self._socket_path)
        # With the identity of each pane seen: SQL binds a first sighting and refuses a replaced pane.
        return self._report("report_session_panes", {
            "projects": [s["project"] for s in with_target],
            "states": [panes[s["tmux_target"]][0] for s in with_target],
            "targets": [s["tmux_target"] for s in with_target],
            "identities": [panes[s["tmux_target"]][1] for s in with_target]})

    def outputs(self) -> int:
        files = [s for s in self._spawns() if s["output_file"]]
        mtimes = probes.file_mtimes(s["output_file"] for s in files)
        # Absent files and OS errors say nothing about output, so they are not reported.
        seen = [(s["id"], mtimes[s["output_file"]]) for s in files
                if isinstance(mtimes[s["output_file"]], float)]
        if not seen:
            return 0
        return self._report("report_output_mtimes", {
            "ids": [spawn_id for spawn_id, _ in seen],
            "mtimes": [datetime.fromtimestamp(m, tz=timezone.utc) for _, m in seen]})

    def pids(self) -> int:
        with_pid = [s for s in self._spawns() if s["pid"]]
        if not with_pid:
            return 0
        return self._report("report_spawn_pids", {
            "ids": [s["id"] for s in with_pid],
            "states": [probes.pid_state(s["pid"]) for s in with_pid]})

    def context(self) -> int:
        """Usage from each session's transcript (read as its agent profile's context source), within a time
        budget per round."""
        sessions = {s["transcript_path"]: s for s in self._sessions() if s["transcript_path"]}
        paths = {path: s["project"] for path, s in sessions.items()}
        for gone in self._tailed - set(paths):
            self._transcripts.forget(gone)  # the session ended or moved: drop its read state
        self._tailed = set(paths)
        reported = 0
        # Rotating the start gives the transcripts a round ran out of time for the first turn next.
        order = sorted(paths.items())
        start = self._turn % len(order) if order else 0
        order = order[start:] + order[:start]
        deadline = time.monotonic() + CONTEXT_ROUND_SECONDS
        for done, (path, project) in enumerate(order):
            if time.monotonic() > deadline:
                log.warning("context round out of time after %d of %d transcripts; the rest go first next round",
                            done, len(order))
                self._turn = start + done
                break
            try:
                usage = self._transcripts.read(path, sessions[path]["context_window"], sessions[path]["context_source"])
            except ValueError as exc:  # a context source this version cannot read
                log.warning("context of %s not read: %s", project, exc)
                continue
            if usage is None:
                continue  # no new assistant turn since the last round
            try:
                self._link.call("report_context", {"project": project, "used": usage.tokens_used,
                                                   "total": usage.context_window_size})
                reported += 1
            except DatabaseUnavailable:
                raise
            except PsHealthError as exc:
                log.warning("context of %s from %s not recorded: %s", project, path, exc)
        if reported:
            log.info("context: %d reported from transcripts", reported)
        return reported

    def handoffs(self) -> int:
        """The newest handoff file written after each open request whose name the database takes (a newer
        one named with control or format characters hides nothing: it is skipped, and said once); SQL
        decides if it counts."""
        recorded = 0
        refused: set[str] = set()
        for watch in self._link.call("handoff_watches", {"host": self._host}):
            found = self._handoffs.new_files(watch["folder"], watch["pattern"], watch["requested_at"].timestamp())
            while found and not client.plain(found[-1][0]):
                path = found.pop()[0]
                refused.add(path)
                if path not in self._refused:
                    log.warning("handoff file %s of %s skipped: its name holds control or formatting characters",
                                path, watch["project"])
            if not found:
                continue
            path, mtime = found[-1]
            try:
                rows = self._link.call("report_handoff_file", {
                    "project": watch["project"], "file": path,
                    "mtime": datetime.fromtimestamp(mtime, tz=timezone.utc)})
                recorded += rows[0]["check_id"] is not None
            except DatabaseUnavailable:
                raise
            except PsHealthError as exc:
                log.warning("handoff file %s of %s not recorded: %s", path, watch["project"], exc)
        self._refused = refused  # the names still there are not said again
        if recorded:
            log.info("handoffs: %d recorded from files", recorded)
        return recorded

    def _sessions(self) -> list[dict]:
        return self._link.call("probe_sessions", {"host": self._host})

    def _spawns(self) -> list[dict]:
        return self._link.call("probe_spawns", {"host": self._host})

    def _report(self, name: str, params: dict) -> int:
        rows = self._link.call(name, params)
        changed = int(rows[0]["changed"] or 0) if rows else 0
        if changed:
            log.info("%s: %d changed", name, changed)
        return changed


@dataclass
class Timer:
    """A task run every `every` seconds on a thread of its own; running_since is set while it runs."""

    name: str
    every: float
    task: Callable[[], object]
    running_since: float | None = None
    stuck: bool = False
    wake: threading.Event = field(default_factory=threading.Event)  # set: run again now (or stop)


class Housekeeper:
    """Runs each timer (a probe kind, the optional sweep, the health gauge, memory trims) on its own
    thread, so one that hangs on a file stops no other, and reports a round that runs too long."""

    def __init__(self, timers: list[Timer], stuck_seconds: float = STUCK_SECONDS):
        self.timers = timers
        self._stuck_seconds = stuck_seconds
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(t,), name=f"housekeeper:{t.name}", daemon=True)
                         for t in timers]
        self._threads.append(threading.Thread(target=self._watch, name="housekeeper:watchdog", daemon=True))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    @property
    def started(self) -> bool:
        return self._threads[0].ident is not None

    def stop(self, timeout: float) -> None:
        """Stop every timer; one still stuck after timeout is left behind (its thread is a daemon)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for timer in self.timers:
            timer.wake.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def poke(self) -> None:
        """Run the probe rounds now (a pane was just registered: see it before anything else can)."""
        for timer in self.timers:
            if timer.name.startswith("probe"):
                timer.wake.set()

    def _loop(self, timer: Timer) -> None:
        while not self._stop.is_set():
            started = timer.running_since = time.monotonic()
            _guarded(timer.name, timer.task)
            timer.running_since = None
            if timer.stuck:
                timer.stuck = False
                log.warning("%s round finished after all; it runs again every %g s", timer.name, timer.every)
            if timer.wake.wait(timer.every):
                # Poked: at once, but rounds at most every POKE_GAP (any login may send the notes that poke).
                self._stop.wait(max(0.0, started + POKE_GAP - time.monotonic()))
            timer.wake.clear()

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            now = time.monotonic()
            for timer in self.timers:
                since = timer.running_since
                limit = max(self._stuck_seconds, 4 * timer.every)
                if since is not None and not timer.stuck and now - since > limit:
                    timer.stuck = True
                    log.error("%s round stuck for %.0f s (a file or the database does not answer); "
                              "the other probes and timers go on", timer.name, now - since)


def housekeeping(link: Link, probe: HostProbe | None, probe_interval: float, sweep_every: float,
                 on_health: Callable[[dict], None] | None) -> Housekeeper:
    """The reactor's timers: each probe kind, the sweep when asked for, the health gauge, memory trims."""
    timers = []
    if probe is not None and probe_interval > 0:
        timers += [Timer(f"probe {name}", probe_interval, kind) for name, kind in probe.kinds().items()]
    if sweep_every > 0:
        timers.append(Timer("sweep", sweep_every, lambda: _sweep(link)))
    if on_health is not None:
        timers.append(Timer("health", HEALTH_SECONDS, lambda: on_health(link.call("system_health")[0]["health"])))
    timers.append(Timer("trim", TRIM_SECONDS, memory.trim))
    return Housekeeper(timers)


def _guarded(name: str, task: Callable[[], object]) -> None:
    try:
        task()
    except DatabaseUnavailable as exc:
        # The listener logs the outage once; rounds just wait for the database to return.
        log.debug("%s skipped: %s", name, exc)
    except PsHealthError as exc:  # refused, or Busy (a lock kept by another transaction): the next round tries
        log.warning("%s round not recorded: %s [%s]", name, exc, exc.sqlstate)
    except Exception:  # a bug in one round must not end the probes for good
        log.exception("%s round failed", name)


def _sweep(link: Link) -> None:
    result = link.call("run_checks")[0]["result"]
    if result.get("skipped"):
        log.debug("sweep skipped: %s", result.get("reason"))
    elif result.get("changes"):
        log.info("sweep: %s changes in %s ms (%s)", result["changes"], result.get("duration_ms"),
                 result.get("counts"))
