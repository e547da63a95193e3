"""Tests for reactor.agent.spawnrun using real child processes."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reactor.agent.spawnrun import RunResult, run
from tests.support import wait_for

REPO = str(Path(__file__).resolve().parents[1])


def py(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


DRIVER = """
import json, sys
from reactor.agent.spawnrun import run
r = run(json.loads(sys.argv[1]), sys.argv[2] or None, lambda ts: None, 0.1)
sys.exit(r.exit_code)
"""


def start_driver(cmd: list[str], tmp_path: Path, output_file: str = "", **kw) -> subprocess.Popen:
    """Run the wrapper itself in a subprocess (own session, so killpg cannot hit pytest)."""
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, json.dumps(cmd), output_file],
        env=env, start_new_session=True, **kw,
    )


@pytest.mark.parametrize("code", [0, 3])
def test_exit_code_passthrough(code: int) -> None:
    r = run(py(f"import sys; sys.exit({code})"), None, lambda ts: None)
    assert isinstance(r, RunResult)
    assert (r.exit_code, r.signal) == (code, None)
    assert r.started <= r.ended


def test_killed_by_signal_maps_to_128_plus_n() -> None:
    r = run(py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"), None, lambda ts: None)
    assert (r.exit_code, r.signal) == (128 + signal.SIGKILL, signal.SIGKILL)


def test_tee_to_stdout_stderr_and_file(tmp_path: Path, capfdbinary) -> None:
    out = tmp_path / "a" / "b" / "run.log"
    code = """
    import sys
    sys.stdout.buffer.write(b"out-line \\xff\\n"); sys.stdout.flush()
    sys.stderr.buffer.write(b"err-line\\n"); sys.stderr.flush()
    """
    run(py(code), str(out), lambda ts: None)
    captured = capfdbinary.readouterr()
    assert captured.out == b"out-line \xff\n"
    assert captured.err == b"err-line\n"
    assert sorted(out.read_bytes().splitlines()) == [b"err-line", b"out-line \xff"]
    run(py("print('second')"), str(out), lambda ts: None)  # append, not truncate
    assert out.read_bytes().splitlines()[-1] == b"second"
    assert len(out.read_bytes().splitlines()) == 3


def test_on_output_first_immediate_and_final(tmp_path: Path) -> None:
    marker = tmp_path / "reported"
    calls: list[float] = []

    def on_output(ts: float) -> None:
        calls.append(ts)
        marker.touch()

    # The child waits until the first report happened, proving it was not deferred to the end.
    code = """
    import os, sys, time
    print("first", flush=True)
    deadline = time.time() + 20
    while not os.path.exists(sys.argv[1]) and time.time() < deadline:
        time.sleep(0.01)
    print("second" if os.path.exists(sys.argv[1]) else "timeout", flush=True)
    """
    r = run(py(code, str(marker)), None, on_output, output_every=1000)
    assert r.exit_code == 0
    assert len(calls) == 2  # the immediate one plus the final flush of unreported output
    assert all(r.started <= ts <= r.ended for ts in calls)


def test_on_output_throttled() -> None:
    calls: list[float] = []
    code = """
    import time
    end = time.time() + 1.0
    while time.time() < end:
        print("tick", flush=True); time.sleep(0.01)
    """
    every = 0.25
    r = run(py(code), None, calls.append, output_every=every)
    assert r.exit_code == 0
    assert 2 <= len(calls) <= (r.ended - r.started) / every + 2
    assert calls == sorted(calls)


def test_no_output_no_callback() -> None:
    calls: list[float] = []
    run(py("pass"), None, calls.append)
    assert calls == []


def test_on_output_raising_does_not_break_run(caplog) -> None:
    def boom(ts: float) -> None:
        raise RuntimeError("database is down")

    with caplog.at_level(logging.ERROR, logger="reactor.agent.spawnrun"):
        r = run(py("print('hello'); import sys; sys.exit(5)"), None, boom)
    assert r.exit_code == 5
    assert "on_output callback failed" in caplog.text


def test_last_error_line_from_stderr(capfd) -> None:
    code = r"""
    import sys
    print("stdout noise")
    sys.stderr.write("first problem\nreal error: boom\n\n   \n")
    """
    r = run(py(code), None, lambda ts: None)
    assert r.last_error_line == "real error: boom"


def test_last_error_line_falls_back_to_stdout_and_unterminated_line(capfd) -> None:
    r = run(py(r"import sys; sys.stdout.write('a\nlast words')"), None, lambda ts: None)
    assert r.last_error_line == "last words"
    r = run(py("pass"), None, lambda ts: None)
    assert r.last_error_line is None


def test_last_error_line_trimmed_and_decoded(capfd) -> None:
    code = r"""
    import sys
    sys.stderr.buffer.write(b"bad \xff byte\n" + b"x" * 5000 + b"\n")
    """
    r = run(py(code), None, lambda ts: None)
    assert r.last_error_line == "x" * 500
    r = run(py(r"import sys; sys.stderr.buffer.write(b'bad \xff byte\n')"), None, lambda ts: None)
    assert r.last_error_line == "bad \ufffd byte"


def test_large_output_no_deadlock(tmp_path: Path) -> None:
    # 10 MB on each pipe, interleaved, so a wrapper reading one pipe at a time would deadlock.
    code = """
    import sys
    chunk = b"y" * 65535 + b"\\n"
    for _ in range(160):
        sys.stdout.buffer.write(chunk); sys.stderr.buffer.write(chunk)
    """
    log_file = tmp_path / "big.log"
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        driver = start_driver(py(code), tmp_path, str(log_file), stdout=out, stderr=err)
        try:
            assert driver.wait(timeout=120) == 0
        finally:
            if driver.poll() is None:
                driver.kill()
    size = 160 * 65536
    assert (tmp_path / "out").stat().st_size == size
    assert (tmp_path / "err").stat().st_size == size
    assert log_file.stat().st_size == 2 * size


TRAPPING_CHILD = """
import os, select, signal, sys
marker, ready, signum = sys.argv[1], sys.argv[2], int(sys.argv[3])
# The wakeup fd gets one byte per kernel delivery, so duplicates are counted even when
# Python would coalesce them into a single handler call.
r, w = os.pipe()
os.set_blocking(w, False)
signal.signal(signum, lambda *_: None)
signal.set_wakeup_fd(w)
open(ready, "w").close()
got = b""
if select.select([r], [], [], 30)[0]:
    got += os.read(r, 64)
    # Linger so that a duplicate delivery, if any, is recorded before we exit.
    while select.select([r], [], [], 0.5)[0]:
        got += os.read(r, 64)
with open(marker, "w") as fh:
    fh.write("".join(f"{b}\\n" for b in got))
sys.exit(7)
"""


@pytest.mark.parametrize(
    "sig, target",
    [(signal.SIGTERM, "pid"), (signal.SIGTERM, "process-group"), (signal.SIGINT, "process-group")],
)
def test_signal_forwarded_exactly_once(tmp_path: Path, sig: int, target: str) -> None:
    marker, ready = tmp_path / "marker", tmp_path / "ready"
    driver = start_driver(py(TRAPPING_CHILD, str(marker), str(ready), str(int(sig))), tmp_path)
    try:
        wait_for(ready.exists, timeout=20, interval=0.01, what="the child to start")
        if target == "pid":
            os.kill(driver.pid, sig)
        else:
            os.killpg(driver.pid, sig)  # like a shell's `kill %job` or Ctrl-C in a terminal
        assert driver.wait(timeout=30) == 7
    finally:
        if driver.poll() is None:
            driver.kill()
    assert marker.read_text() == f"{int(sig)}\n"


def test_sigterm_kills_untrapping_child(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = """
    import sys, time
    open(sys.argv[1], "w").close()
    time.sleep(60)
    """
    driver = start_driver(py(code, str(ready)), tmp_path)
    try:
        wait_for(ready.exists, timeout=20, interval=0.01, what="the child to start")
        os.kill(driver.pid, signal.SIGTERM)
        assert driver.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if driver.poll() is None:
            driver.kill()


def test_signal_handlers_restored() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    run(py("pass"), None, lambda ts: None)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_command_not_found() -> None:
    r = run(["/nonexistent/ps-health-no-such-cmd", "x"], None, lambda ts: None)
    assert r.exit_code == 127 and r.signal is None
    assert r.last_error_line is not None
    assert r.last_error_line.startswith("cannot run /nonexistent/ps-health-no-such-cmd: ")


def test_command_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    r = run([str(script)], None, lambda ts: None)
    assert r.exit_code == 126
    assert r.last_error_line is not None and r.last_error_line.startswith(f"cannot run {script}: ")


def test_empty_command_rejected() -> None:
    with pytest.raises(ValueError):
        run([], None, lambda ts: None)
