"""Probes that input cannot stop: a transcript path or handoff folder an agent chose (a device, a
FIFO, a folder, a huge file) leaves every other probe and the reactor's sweep timer running."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from reactor.process.housekeeping import POKE_GAP, Housekeeper, Timer
from tests.reactor_proc import session
from tests.support import wait_for

HUGE = 64 * 1024 ** 3  # sparse: takes no disk


def _usage_line(used: int) -> bytes:
    usage = {"input_tokens": used, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    return json.dumps({"type": "assistant", "message": {"role": "assistant", "usage": usage}}).encode() + b"\n"


def _odd(kind: str, tmp_path: Path) -> str:
    """A path of the given kind, as an agent might register it."""
    if kind == "dev-zero":
        return "/dev/zero"
    path = tmp_path / "odd"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
        os.mkfifo(path / "handoff.md")  # matches the handoff pattern
    elif kind == "huge":
        path.write_bytes(_usage_line(50_000))
    return str(path)


def _grow(path: str) -> None:
    """The transcript grows by 64 GiB (sparse: no disk) and a new turn between two probe rounds."""
    with open(path, "r+b") as fh:
        end = fh.seek(0, os.SEEK_END)
        fh.truncate(end + HUGE)
        fh.seek(end + HUGE)
        fh.write(b"\n" + _usage_line(120_000))  # after a (long) line of NUL bytes


def _used(conn) -> int | None:
    return conn.execute("SELECT estimated_tokens_used AS n FROM ps_health.ps_sessions WHERE project = 'odd'"
                        ).fetchone()["n"]


def _state(conn, project: str) -> str:
    return conn.execute("SELECT target_state FROM ps_health.ps_sessions WHERE project = %s",
                        (project,)).fetchone()["target_state"]


def _sweeps(conn) -> int:
    return conn.execute("SELECT count(*) AS n FROM ps_health.sweep_runs WHERE source = 'reactor'").fetchone()["n"]


def _last_output(conn) -> object:
    return conn.execute("SELECT last_output_change FROM ps_health.active_spawns WHERE task_id = 'w1'"
                        ).fetchone()["last_output_change"]


@pytest.mark.parametrize("where, kind", [("transcript", "dev-zero"), ("transcript", "fifo"),
                                         ("transcript", "folder"), ("transcript", "huge"),
                                         ("handoff", "fifo"), ("handoff", "folder")])
def test_an_odd_file_stops_no_probe_and_no_sweep(conn, tmux_server, reactors, tmp_path, where, kind):
    odd = _odd(kind, tmp_path)
    if where == "transcript":
        session(conn, "odd", None, transcript=odd)
    else:
        conn.execute("SELECT ps_health.set_setting('handoff_folder', %s, 'odd')", (odd,))
        session(conn, "odd", None)
        conn.execute("SELECT ps_health.report_context('odd', 90)")  # critical: a handoff file is awaited
    pane = tmux_server.recorder(session="ps-alpha")
    session(conn, "alpha", pane.target)
    output = tmp_path / "spawn.out"
    conn.execute("SELECT ps_health.start_spawn('alpha', 'w1', 'impl', NULL, %s)", (str(output),))
    output.write_text("starting\n")
    # (a new file's time may be stamped up to a timer tick in the past, before the spawn's start: say when)
    written = time.time()
    os.utime(output, (written, written))
    proc = reactors.start("--run-checks-every", "0.3", probe="0.3")

    wait_for(lambda: _state(conn, "alpha") == "seen", what="alpha's pane seen")
    first = wait_for(lambda: _last_output(conn), what="the output time reported")
    sweeps = _sweeps(conn)
    if kind == "huge":
        wait_for(lambda: _used(conn) == 50_000, what="usage from the transcript")
        _grow(odd)

    # Meanwhile every other probe and the sweep timer go on.
    tmux_server.run("kill-session", "-t", "ps-alpha")
    wait_for(lambda: _state(conn, "alpha") == "gone", what="alpha's pane gone")
    os.utime(output)  # written again, now
    wait_for(lambda: _last_output(conn) != first, what="the new output time reported")
    wait_for(lambda: _sweeps(conn) >= sweeps + 2, what="two more sweeps by the reactor")
    assert proc.running()

    if kind == "huge":  # only its tail was read, and it counted
        wait_for(lambda: _used(conn) == 120_000, what="usage from the tail")
    elif where == "transcript":
        assert "is not a regular file" in proc.text()
    if where == "handoff" and kind == "folder":  # a real handoff file next to the FIFO still counts
        real = Path(odd) / "handoff-2.md"
        real.write_text("# where I stopped\n")
        wait_for(lambda: conn.execute("SELECT handoff_file FROM ps_health.ps_sessions WHERE project = 'odd'"
                                      ).fetchone()["handoff_file"] == str(real), what="the handoff file recorded")


def test_a_hung_timer_stops_no_other_and_is_reported(caplog):
    caplog.set_level(logging.INFO)
    release = threading.Event()
    rounds = []
    keeper = Housekeeper([Timer("probe context", 0.05, lambda: release.wait(60)),
                          Timer("probe targets", 0.05, lambda: rounds.append(1))], stuck_seconds=0.5)
    keeper.start()
    try:
        wait_for(lambda: "probe context round stuck" in caplog.text, what="the stuck round reported")
        counted = len(rounds)
        wait_for(lambda: len(rounds) >= counted + 10, what="the other timer still running")
        release.set()
        wait_for(lambda: "probe context round finished after all" in caplog.text, what="the recovery reported")
    finally:
        release.set()
        keeper.stop(5)


def test_a_flood_of_pokes_runs_probe_rounds_at_most_every_poke_gap():
    """Every session note naming this host pokes the probes, and any login may send one: a round runs at once
    when poked, but rounds start at least POKE_GAP apart (before: back to back, 1,359 rounds in 4 s)."""
    starts = []
    keeper = Housekeeper([Timer("probe targets", 60, lambda: starts.append(time.monotonic()))])
    keeper.start()
    try:
        wait_for(lambda: starts, what="the first round")
        deadline = time.monotonic() + 30
        while len(starts) < 6 and time.monotonic() < deadline:  # poked a thousand times a second
            keeper.poke()
            time.sleep(0.001)
    finally:
        keeper.stop(5)
    assert len(starts) >= 6, "poked rounds stopped running"
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 0.9 * POKE_GAP, gaps  # (each time taken just after its round started)
