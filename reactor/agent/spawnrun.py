"""Run a subagent command, tee its output, report activity and forward signals."""
from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

log = logging.getLogger(__name__)

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
LINE_CAP = 2000  # bytes kept per line: enough for 500 chars of UTF-8
MAX_ERROR_CHARS = 500
CHUNK = 65536
EXIT_LINGER = 2.0  # seconds to keep draining after exit if a grandchild holds the pipes
REPORT_JOIN_TIMEOUT = 10.0


@dataclass(frozen=True)
class RunResult:
    """Outcome of one wrapped command run."""

    exit_code: int
    signal: int | None
    last_error_line: str | None
    started: float
    ended: float


class _Sink:
    """Best-effort binary writer; disables itself after the first error so the child keeps running."""

    def __init__(self, name: str, stream: BinaryIO | None) -> None:
        self.name, self.stream = name, stream

    def write(self, data: bytes) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(data)
            self.stream.flush()
        except (OSError, ValueError) as exc:
            log.warning("spawnrun: writing to %s failed, disabling it: %s", self.name, exc)
            self.stream = None


class _LastLine:
    """Tracks the last non-empty line of a byte stream without keeping the whole stream."""

    def __init__(self) -> None:
        self.partial = b""
        self.last: bytes | None = None

    def feed(self, data: bytes) -> None:
        data = self.partial + data
        idx = data.rfind(b"\n")
        if idx < 0:
            self.partial = data[:LINE_CAP]
            return
        self.partial = data[idx + 1 :][:LINE_CAP]
        for line in reversed(data[:idx].split(b"\n")):
            if line.strip():
                self.last = line[:LINE_CAP]
                break

    def result(self) -> bytes | None:
        return self.partial if self.partial.strip() else self.last


class _Reporter:
    """Calls on_output in a worker thread so a slow/broken monitor never stalls the tee."""

    def __init__(self, on_output: Callable[[float], None]) -> None:
        self.on_output = on_output
        self.cond = threading.Condition()
        self.pending: float | None = None
        self.closed = False
        self.thread = threading.Thread(target=self._loop, name="spawnrun-report", daemon=True)
        self.thread.start()

    def submit(self, ts: float) -> None:
        with self.cond:
            self.pending = ts  # coalesce: only the newest timestamp matters
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.thread.join(REPORT_JOIN_TIMEOUT)
        if self.thread.is_alive():
            log.warning("spawnrun: on_output still running after %.0fs; abandoning it", REPORT_JOIN_TIMEOUT)

    def _loop(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.pending is not None or self.closed)
                ts, self.pending = self.pending, None
            if ts is None:
                return
            try:
                self.on_output(ts)
            except Exception:
                log.exception("spawnrun: on_output callback failed (ignored)")


def run(
    cmd: list[str],
    output_file: str | None,
    on_output: Callable[[float], None],
    output_every: float = 5.0,
) -> RunResult:
    """Run cmd, tee stdout/stderr (and to output_file), report output via on_output, forward signals."""
    if not cmd:
        raise ValueError("cmd must be a non-empty argv list")
    proc: subprocess.Popen[bytes] | None = None
    early: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if proc is None:
            early.append(signum)  # arrived before the child existed; replay after spawn
        else:
            proc.send_signal(signum)  # no-op if the child was already reaped

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    else:
        log.warning("spawnrun: not in main thread, signals will not be forwarded")

    started = time.time()
    outfile: BinaryIO | None = None
    try:
        if output_file:
            try:
                Path(output_file).parent.mkdir(parents=True, exist_ok=True)
                outfile = open(output_file, "ab", buffering=0)
            except OSError as exc:  # losing the log must not prevent the run
                log.warning("spawnrun: cannot open output file %s: %s", output_file, exc)
        try:
            # Own session: a signal sent to our process group (shell job kill, Ctrl-C) reaches
            # the child only via our forwarder, i.e. exactly once. It also avoids SIGTTIN on tty reads.
            pipe = subprocess.PIPE
            proc = subprocess.Popen(cmd, stdout=pipe, stderr=pipe, start_new_session=True)
        except OSError as exc:
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            msg = f"cannot run {cmd[0]}: {exc.strerror or exc}"
            log.warning("spawnrun: %s", msg)
            return RunResult(code, None, msg, started, time.time())
        for sig in early:
            proc.send_signal(sig)
        last_lines = _pump(proc, outfile, on_output, output_every)
        rc = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if outfile is not None:
            outfile.close()
    sig_no = -rc if rc < 0 else None
    raw = last_lines[1].result() or last_lines[0].result()
    err = raw.decode("utf-8", errors="replace").strip()[:MAX_ERROR_CHARS] if raw else None
    return RunResult(128 + sig_no if sig_no else rc, sig_no, err or None, started, time.time())


def _pump(
    proc: subprocess.Popen[bytes], outfile: BinaryIO | None, on_output: Callable[[float], None], every: float
) -> tuple[_LastLine, _LastLine]:
    """Drain both pipes until EOF (or linger expiry after exit), teeing and reporting output."""
    assert proc.stdout is not None and proc.stderr is not None
    sinks = {
        proc.stdout.fileno(): (_Sink("stdout", getattr(sys.stdout, "buffer", None)), _LastLine()),
        proc.stderr.fileno(): (_Sink("stderr", getattr(sys.stderr, "buffer", None)), _LastLine()),
    }
    file_sink = _Sink("output file", outfile)
    for stream in (sys.stdout, sys.stderr):  # keep our own earlier prints ahead of the child's output
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    reporter = _Reporter(on_output)
    sel = selectors.DefaultSelector()
    for fd in sinks:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    last_report: float | None = None  # monotonic, so clock jumps cannot stall or spam reports
    pending: float | None = None  # wall time of newest unreported output
    exit_deadline: float | None = None
    try:
        while sel.get_map():
            timeout = 0.2
            if pending is not None and last_report is not None:
                timeout = max(0.0, min(timeout, last_report + every - time.monotonic()))
            for key, _ in sel.select(timeout):
                try:
                    data = os.read(key.fd, CHUNK)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(key.fd)
                    continue
                sink, tail = sinks[key.fd]
                sink.write(data)
                file_sink.write(data)
                tail.feed(data)
                pending = time.time()
            now = time.monotonic()
            if pending is not None and (last_report is None or now - last_report >= every):
                reporter.submit(pending)
                last_report, pending = now, None
            if exit_deadline is None and proc.poll() is not None:
                exit_deadline = now + EXIT_LINGER
            elif exit_deadline is not None and now >= exit_deadline:
                log.warning("spawnrun: pipes still open %.0fs after child exit; stop reading", EXIT_LINGER)
                break
    finally:
        sel.close()
        proc.stdout.close(), proc.stderr.close()
        if pending is not None:
            reporter.submit(pending)
        reporter.close()
    out_tail, err_tail = (tail for _, tail in sinks.values())
    return out_tail, err_tail
