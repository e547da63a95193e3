"""What only this host can see, reported to SQL as facts; and the housekeeping thread that runs it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from reactor import memory, probes
from reactor.errors import DatabaseUnavailable, PsHealthError
from reactor.link import Link

log = logging.getLogger(__name__)

# How often system_health() feeds the sweep-age gauge when metrics are served.
HEALTH_SECONDS = 15.0
# How often free heap memory is handed back (a few milliseconds each time).
TRIM_SECONDS = 10.0


class HostProbe:
    """One probe round: tmux targets, output mtimes, pids, transcripts and handoff files of this host."""

    def __init__(self, link: Link, host: str, socket_name: str | None = None,
                 socket_path: str | None = None):
        self._link = link
        self._host = host
        self._socket_name = socket_name
        self._socket_path = socket_path
        self._transcripts = probes.TranscriptReader()
        self._tailed: set[str] = set()
        self._handoffs = probes.HandoffWatcher()

    def run_once(self) -> dict[str, int]:
        """Gather and report every fact once; returns how many rows each report changed."""
        sessions = self._link.call("probe_sessions", {"host": self._host})
        spawns = self._link.call("probe_spawns", {"host": self._host})
        changed = {"targets": self._targets(sessions), "outputs": self._outputs(spawns),
                   "pids": self._pids(spawns), "context": self._context(sessions),
                   "handoffs": self._handoff_files()}
        if any(changed.values()):
            log.info("probe round: %s", ", ".join(f"{k} {v}" for k, v in changed.items() if v))
        return changed

    def _targets(self, sessions: list[dict]) -> int:
        with_target = [s for s in sessions if s["tmux_target"]]
        if not with_target:
            return 0
        # tmux_panes never raises: an error of tmux itself comes back as "unknown".
        panes = probes.tmux_panes([s["tmux_target"] for s in with_target],
                                  socket_name=self._socket_name, socket_path=self._socket_path)
        # With the identity of each pane seen: SQL binds a first sighting and refuses a replaced pane.
        return self._report("report_session_panes", {
            "projects": [s["project"] for s in with_target],
            "states": [panes[s["tmux_target"]][0] for s in with_target],
            "targets": [s["tmux_target"] for s in with_target],
            "identities": [panes[s["tmux_target"]][1] for s in with_target]})

    def _outputs(self, spawns: list[dict]) -> int:
        files = [s for s in spawns if s["output_file"]]
        mtimes = probes.file_mtimes(s["output_file"] for s in files)
        # Absent files and OS errors say nothing about output, so they are not reported.
        seen = [(s["id"], mtimes[s["output_file"]]) for s in files
                if isinstance(mtimes[s["output_file"]], float)]
        if not seen:
            return 0
        return self._report("report_output_mtimes", {
            "ids": [spawn_id for spawn_id, _ in seen],
            "mtimes": [datetime.fromtimestamp(m, tz=timezone.utc) for _, m in seen]})

    def _pids(self, spawns: list[dict]) -> int:
        with_pid = [s for s in spawns if s["pid"]]
        if not with_pid:
            return 0
        return self._report("report_spawn_pids", {
            "ids": [s["id"] for s in with_pid],
            "states": [probes.pid_state(s["pid"]) for s in with_pid]})

    def _context(self, sessions: list[dict]) -> int:
        paths = {s["transcript_path"]: s["project"] for s in sessions if s["transcript_path"]}
        for gone in self._tailed - set(paths):
            self._transcripts.forget(gone)  # the session ended or moved: drop its read state
        self._tailed = set(paths)
        reported = 0
        for path, project in paths.items():
            usage = self._transcripts.read(path)
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
        return reported

    def _handoff_files(self) -> int:
        """The newest handoff file written after each open request; SQL decides if it counts."""
        recorded = 0
        for watch in self._link.call("handoff_watches", {"host": self._host}):
            found = self._handoffs.new_files(watch["folder"], watch["pattern"], watch["requested_at"].timestamp())
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
        return recorded

    def _report(self, name: str, params: dict) -> int:
        rows = self._link.call(name, params)
        return int(rows[0]["changed"] or 0) if rows else 0


class Housekeeper:
    """A thread running probe rounds, the optional sweep, the health gauge and memory trims."""

    def __init__(self, link: Link, probe: HostProbe | None, probe_interval: float,
                 sweep_every: float, on_health: Callable[[dict], None] | None):
        self._link = link
        self._probe = probe if probe_interval > 0 else None
        self._probe_interval = probe_interval
        self._sweep_every = sweep_every
        self._on_health = on_health
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._poked = False
        self._thread = threading.Thread(target=self._run, name="housekeeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def poke(self) -> None:
        """Run the probe round now (a pane was just registered: see it before anything else can)."""
        self._poked = True
        self._wake.set()

    def _run(self) -> None:
        now = time.monotonic()
        timers: list[tuple[str, float, Callable[[], None]]] = []
        if self._probe:
            timers.append(("probe", self._probe_interval, self._probe.run_once))
        if self._sweep_every > 0:
            timers.append(("sweep", self._sweep_every, self._sweep))
        if self._on_health:
            timers.append(("health", HEALTH_SECONDS, self._health))
        timers.append(("trim", TRIM_SECONDS, memory.trim))
        due = {name: now for name, _, _ in timers}
        while not self._stop.is_set():
            if self._poked and "probe" in due:
                self._poked, due["probe"] = False, time.monotonic()
            for name, every, task in timers:
                if time.monotonic() >= due[name]:
                    self._guarded(name, task)
                    due[name] = time.monotonic() + every
            self._wake.wait(max(0.0, min(due.values()) - time.monotonic()))
            self._wake.clear()

    @staticmethod
    def _guarded(name: str, task: Callable[[], object]) -> None:
        try:
            task()
        except DatabaseUnavailable as exc:
            # The listener logs the outage once; rounds just wait for the database to return.
            log.debug("%s skipped: %s", name, exc)
        except Exception:  # a bug in one round must not end the probes for good
            log.exception("%s round failed", name)

    def _sweep(self) -> None:
        result = self._link.call("run_checks")[0]["result"]
        if result.get("skipped"):
            log.debug("sweep skipped: %s", result.get("reason"))
        elif result.get("changes"):
            log.info("sweep: %s changes in %s ms (%s)", result["changes"], result.get("duration_ms"),
                     result.get("counts"))

    def _health(self) -> None:
        self._on_health(self._link.call("system_health")[0]["health"])
