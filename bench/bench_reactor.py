"""The reactor's figures: commit-to-keystroke latency, 100 panes at once, claim+complete throughput, RSS.

Runs a throw-away cluster and a private tmux server; the reactor is a real `python -m reactor` process.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from bench.panes import Panes
from reactor.process.link import Link
from tests import pg

ROOT = Path(__file__).resolve().parent.parent
HOST = "bench-host"
LATENCY_PROMPTS = 1000
BURST_PANES = 100
THROUGHPUT_PROMPTS = 10_000
RSS_PROMPTS = 10_000
_STARTED: list[subprocess.Popen] = []  # stopped at the end even when a figure fails


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def _connect(dsn: str, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=autocommit, row_factory=dict_row,
                           options="-c search_path=ps_health,public")


def _settings(conn, **values: str) -> None:
    # the benchmark's panes run bench/stamp_pane.py: the agent program the reactor may type into here,
    # with a profile whose checks cost what a real CLI's do (input box, dialog and busy patterns)
    values = {"agent_programs": '["stamp_pane"]', **values}
    for key, value in values.items():
        conn.execute("SELECT set_setting(%s, %s)", (key, value))
    conn.execute("INSERT INTO agent_profiles (program, input_pattern, ready_pattern, dialog_pattern, busy_pattern, "
                 "clear_keys) VALUES ('stamp_pane', '^>( |$)', '^>( |$)', "
                 "'^\\s*❯ \\d+\\. |Esc to cancel$|Press enter to confirm or esc to cancel', "
                 "'esc to interrupt|\\(esc to cancel, \\d+s\\)', '{C-u}') ON CONFLICT (program) DO NOTHING")


class ReactorProcess:
    """`python -m reactor` for HOST against dsn, logging to a file."""

    def __init__(self, dsn: str, tmux: str, log: Path, *extra: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PS_HEALTH_", "PG"))}
        env.update(PYTHONPATH=str(ROOT), PS_HEALTH_DSN=dsn)
        with log.open("wb") as err:
            self.popen = subprocess.Popen([sys.executable, "-m", "reactor", "--host", HOST, "--tmux-socket", tmux,
                                           *extra], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=err)
        _STARTED.append(self.popen)
        self.log = log

    def wait_listening(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while "listening on channel" not in self.log.read_text():
            if time.monotonic() > deadline or self.popen.poll() is not None:
                raise RuntimeError(f"reactor did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def rss_mb(self, field: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {field} for pid {self.popen.pid}")

    def stop(self) -> int:
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(60)


def notify_latency(dsn: str, count: int = 1000, pause: float = 0.0) -> list[float]:
    """Commit of a NOTIFY to its arrival at a listener, in ms; one right after the other, or pause seconds apart."""
    with _connect(dsn) as listener, _connect(dsn, autocommit=False) as sender:
        listener.execute("LISTEN bench")
        out = []
        for _ in range(count):
            time.sleep(pause)
            sender.execute("NOTIFY bench, 'x'")
            start = time.monotonic()
            sender.commit()
            next(listener.notifies(timeout=5, stop_after=1))
            out.append((time.monotonic() - start) * 1000)
    return out


def _failed_spawn(conn, project: str, task: str) -> None:
    conn.execute("SELECT start_spawn(%s, %s, 'impl')", (project, task))
    conn.execute("SELECT finish_spawn(%s, %s, 1, 'benchmark failure')", (project, task))


def _wait_recorded(conn, deadline: float) -> None:
    """Until the reactor has recorded an outcome for every prompt (it is idle again)."""
    while conn.execute("SELECT count(*) AS n FROM prompts WHERE state IN ('pending', 'claimed')").fetchone()["n"]:
        if time.monotonic() > deadline:
            raise RuntimeError("the reactor did not record its prompts within 30 s")
        time.sleep(0.001)


def latency(dsn: str, panes: Panes, folder: Path, *extra: str, back_to_back: bool = False) -> dict:
    """Prompts one after another into one pane: commit to first keystroke, and to Enter minus the delay.

    Each prompt is committed once the reactor recorded the one before (a prompt arriving at an idle reactor,
    as they do: minutes apart); back_to_back: the moment the Enter before it arrived, while the reactor
    still looks whether the agent took that line and records its outcome.
    """
    delay = 0.02
    (target,) = panes.add(1)
    index = panes.targets.index(target)
    with _connect(dsn) as conn:
        _settings(conn, submit_delay=f"{int(delay * 1000)} milliseconds", idle_seconds="0")
        conn.execute("SELECT register_session('lat', 'cli', %s, %s)", (target, HOST))
    reactor = ReactorProcess(dsn, panes.name, folder / "latency.log", "--poll-interval", "5", *extra)
    reactor.wait_listening()
    first_key, enter = [], []
    with _connect(dsn, autocommit=False) as conn, _connect(dsn) as watch:
        for n in range(LATENCY_PROMPTS + 20):  # the first 20 warm up caches and connections
            if not back_to_back:
                _wait_recorded(watch, time.monotonic() + 30)
            _failed_spawn(conn, "lat", f"t{n}")
            start = time.monotonic()
            conn.commit()
            first = None
            while True:
                got, stamp, data = panes.recv(30)
                if got != index:
                    continue
                first = stamp if first is None else first
                if b"\r" in data:
                    break
            if n >= 20:
                first_key.append((first - start) * 1000)
                enter.append((stamp - start - delay) * 1000)
    reactor.stop()
    return {"first_key": first_key, "enter": enter, "delay_ms": delay * 1000}


def burst(dsn: str, panes: Panes, folder: Path) -> dict:
    """One commit queues a prompt for each of 100 panes; time until the last Enter."""
    targets = panes.add(BURST_PANES)
    wanted = {panes.targets.index(t) for t in targets}
    with _connect(dsn) as conn:
        _settings(conn, idle_seconds="0")
        delay = float(conn.execute("SELECT extract(epoch FROM setting('submit_delay')::interval) AS s"
                                   ).fetchone()["s"])
        for n, target in enumerate(targets):
            conn.execute("SELECT register_session(%s, 'cli', %s, %s)", (f"b{n}", target, HOST))
    reactor = ReactorProcess(dsn, panes.name, folder / "burst.log", "--poll-interval", "5")
    reactor.wait_listening()
    with _connect(dsn, autocommit=False) as conn:
        for n in range(len(targets)):
            _failed_spawn(conn, f"b{n}", "t")
        start = time.monotonic()
        conn.commit()
    done = set()
    while done != wanted:
        got, stamp, data = panes.recv(60)
        if got in wanted and b"\r" in data:
            done.add(got)
    total = stamp - start
    reactor.stop()
    return {"total_s": total, "delay_s": delay, "ratio": total / delay}


def _bulk_prompts(conn, count: int, targets: list[str], prefix: str) -> None:
    """count projects with a session each (panes shared round-robin) and one failed spawn each."""
    conn.execute("SELECT register_session(%s::text || i, 'cli', (%s::text[])[1 + i %% %s], %s) "
                 "FROM generate_series(1, %s) i", (prefix, targets, len(targets), HOST, count))
    conn.execute("SELECT start_spawn(%s::text || i, 't', 'impl') FROM generate_series(1, %s) i", (prefix, count))
    conn.execute("SELECT finish_spawn(%s::text || i, 't', 1, 'bulk failure') FROM generate_series(1, %s) i",
                 (prefix, count))


def _claim_and_complete(dsn: str, worker: str, batch: int) -> int:
    """Claim and complete until the outbox is empty, through the reactor's own named queries."""
    link, done = Link(dsn, f"bench {worker}"), 0
    try:
        while rows := link.call("claim", {"host": HOST, "worker": worker, "limit": batch, "lease": 60,
                                          "profiles_version": None}):
            link.call("complete", {"worker": worker, "ids": [r["id"] for r in rows],
                                   "outcomes": ["delivered"] * len(rows), "details": ["bench"] * len(rows),
                                   "claimed": [r["claimed_at"] for r in rows]})
            done += len(rows)
    finally:
        link.close()
    return done


def throughput(admin: str) -> dict:
    """claim_prompts + complete_prompt without tmux: 10,000 queued prompts drained, per variant."""
    source = pg.clone(admin)
    with _connect(source) as conn:
        _bulk_prompts(conn, THROUGHPUT_PROMPTS, ["%0"], "tp")
    figures = {}
    for label, batch, workers in (("1 worker, batches of 1000", 1000, 1), ("2 workers, batches of 1000", 1000, 2),
                                  ("1 worker, batches of 100", 100, 1)):
        dsn = pg.clone(admin, template=conninfo_to_dict(source)["dbname"])
        with ThreadPoolExecutor(workers) as pool:
            start = time.monotonic()
            done = sum(pool.map(lambda n, dsn=dsn, batch=batch: _claim_and_complete(dsn, f"w{n}", batch),
                                range(workers)))
            elapsed = time.monotonic() - start
        assert done == THROUGHPUT_PROMPTS, done
        figures[label] = done / elapsed
        pg.drop(admin, dsn)
    pg.drop(admin, source)
    return figures


def memory(dsn: str, panes: Panes, folder: Path) -> dict:
    """RSS of an idle reactor, then after it delivered 10,000 prompts into 100 real panes."""
    targets = panes.targets[-BURST_PANES:]
    wanted = {panes.targets.index(t) for t in targets}
    with _connect(dsn) as conn:
        _settings(conn, submit_delay="10 milliseconds", idle_seconds="0")
        conn.execute("SELECT register_session(%s::text || i, 'cli', (%s::text[])[1 + i %% %s], %s) "
                     "FROM generate_series(1, %s) i", ("m", targets, len(targets), HOST, RSS_PROMPTS))
    reactor = ReactorProcess(dsn, panes.name, folder / "memory.log", "--metrics-port", str(pg.free_port()))
    reactor.wait_listening()
    time.sleep(3)  # one probe round and the metrics server up: a realistic idle process
    idle = reactor.rss_mb()
    with _connect(dsn) as conn:
        conn.execute("SELECT start_spawn('m' || i, 't', 'impl') FROM generate_series(1, %s) i", (RSS_PROMPTS,))
        start = time.monotonic()
        conn.execute("SELECT finish_spawn('m' || i, 't', 1, 'bulk failure') FROM generate_series(1, %s) i",
                     (RSS_PROMPTS,))
        enters = 0
        while enters < RSS_PROMPTS:
            got, _, data = panes.recv(120)
            if got in wanted:
                enters += data.count(b"\r")
        elapsed = time.monotonic() - start
        while conn.execute("SELECT count(*) AS n FROM prompts WHERE state = 'delivered'").fetchone()["n"] \
                < RSS_PROMPTS:
            time.sleep(0.2)
        failed = conn.execute("SELECT count(*) AS n FROM prompts WHERE state <> 'delivered'").fetchone()["n"]
    after, peak = reactor.rss_mb(), reactor.rss_mb("VmHWM")
    time.sleep(11)  # one housekeeping round hands free heap pages back
    settled = reactor.rss_mb()
    rc = reactor.stop()
    return {"idle_mb": idle, "after_mb": after, "settled_mb": settled, "peak_mb": peak, "elapsed_s": elapsed,
            "not_delivered": failed, "exit": rc}


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="ps-health-bench-"))
    cluster = pg.start_cluster()
    admin = make_conninfo(cluster.dsn("postgres"))
    pg.migrate_template(admin)
    panes = Panes(folder)
    try:
        raw = notify_latency(pg.clone(admin))
        notify_p50 = statistics.median(raw)
        print(f"LISTEN/NOTIFY commit->arrival: p50 {notify_p50:.3f} ms, p99 {_pct(raw, 99):.3f} ms "
              f"({len(raw)} notifications)", flush=True)
        paced = notify_latency(pg.clone(admin), 200, pause=0.02)
        print(f"LISTEN/NOTIFY 20 ms apart, as prompts come in the figures below (processes idle before each): "
              f"p50 {statistics.median(paced):.3f} ms (for reference; the ratios use the raw figure)", flush=True)

        for mode, extra, back_to_back in (("tmux control client", (), False),
                                          ("tmux control client, each prompt at the Enter before it", (), True),
                                          ("a tmux process per step", ("--no-tmux-control",), False)):
            # the machine's speed drifts over minutes: the baseline of each run is measured right before and after it
            around = notify_latency(pg.clone(admin))
            lat = latency(pg.clone(admin), panes, folder, *extra, back_to_back=back_to_back)
            around += notify_latency(pg.clone(admin))
            base = statistics.median(around)
            for key, label in (("enter", "commit->Enter minus submit delay"), ("first_key", "commit->first keystroke")):
                values = lat[key]
                p50, p99 = statistics.median(values), _pct(values, 99)
                print(f"reactor ({mode}) {label}: p50 {p50:.2f} ms, p99 {p99:.2f} ms over {len(values)} prompts "
                      f"(targets p50 <= 5 ms, p99 <= 20 ms); p50 = {p50 / base:.0f}x raw NOTIFY p50 (target <= 40x; "
                      f"NOTIFY p50 {base:.3f} ms just before and after this run)", flush=True)

        b = burst(pg.clone(admin), panes, folder)
        print(f"{BURST_PANES} panes prompted by one commit: all submitted in {b['total_s']:.2f} s with a "
              f"{b['delay_s']:.2f} s submit delay = {b['ratio']:.2f}x the delay (target <= 2x)", flush=True)

        tp = throughput(admin)
        print("claim + complete without tmux: " + ", ".join(f"{v:,.0f} prompts/s ({k})" for k, v in tp.items())
              + " (target >= 5,000/s)", flush=True)

        mem = memory(pg.clone(admin), panes, folder)
        print(f"reactor RSS: idle {mem['idle_mb']:.1f} MB, after {RSS_PROMPTS:,} prompts {mem['after_mb']:.1f} MB, "
              f"11 s later {mem['settled_mb']:.1f} MB, peak {mem['peak_mb']:.1f} MB (target <= 60 MB); "
              f"delivered in {mem['elapsed_s']:.1f} s into "
              f"{BURST_PANES} panes ({RSS_PROMPTS / mem['elapsed_s']:,.0f}/s), not delivered {mem['not_delivered']}, "
              f"exit {mem['exit']}", flush=True)
    finally:
        for popen in _STARTED:
            if popen.poll() is None:
                popen.kill()
                popen.wait()
        panes.close()
        cluster.destroy()
        shutil.rmtree(folder, ignore_errors=True)
