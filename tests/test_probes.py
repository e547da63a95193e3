"""Tests for reactor.process.probes and the tmux client's pane listing, against real files, processes
and a private tmux server."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor.process import probes
from reactor.process.probes import HandoffWatcher, TranscriptReader, Usage, file_mtimes, pid_state
from reactor.tmux import client
from reactor.tmux.client import tmux_targets
from tests.support import wait_for

TMUX = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(TMUX is None, reason="tmux not installed")



def assistant(inp: int, created: int = 0, read: int = 0, **extra: object) -> bytes:
    usage = {"input_tokens": inp, "cache_creation_input_tokens": created,
             "cache_read_input_tokens": read, "output_tokens": 7}
    obj = {"type": "assistant", "message": {"role": "assistant", "model": "claude-x", "usage": usage}}
    obj.update(extra)
    return json.dumps(obj).encode() + b"\n"


USER = json.dumps({"type": "user", "message": {"role": "user", "content": "hi " * 20}}).encode() + b"\n"


# ---------------------------------------------------------------- file_mtimes

def test_mtime_changes_as_file_grows(tmp_path: Path) -> None:
    f = tmp_path / "log.txt"
    f.write_text("a\n")
    first = file_mtimes([str(f)])[str(f)]
    assert isinstance(first, float)

    def grown() -> bool:
        with f.open("a") as fh:
            fh.write("more\n")
        return file_mtimes([str(f)])[str(f)] != first

    wait_for(grown, what="mtime to advance")
    assert file_mtimes([str(f)])[str(f)] > first


def test_mtime_missing_and_errors(tmp_path: Path) -> None:
    regular = tmp_path / "regular"
    regular.write_text("x")
    loop = tmp_path / "loop"
    os.symlink(loop, loop)  # stat() on a self-referencing link fails with ELOOP
    paths = [str(tmp_path / "absent"), str(regular / "child"), str(loop), "/" + "n" * 5000]
    got = file_mtimes(paths)
    assert got[paths[0]] is None
    assert got[paths[1]] is None  # ENOTDIR: cannot exist either
    assert got[paths[2]] == "unknown"
    assert got[paths[3]] == "unknown"  # ENAMETOOLONG


def test_mtime_many_paths(tmp_path: Path) -> None:
    paths = []
    for i in range(300):
        p = tmp_path / f"f{i}"
        p.write_text("x")
        os.utime(p, (1000.0 + i, 1000.0 + i))
        paths.append(str(p))
    got = file_mtimes(paths + [str(tmp_path / "nope")])
    assert [got[p] for p in paths] == [1000.0 + i for i in range(300)]
    assert got[str(tmp_path / "nope")] is None


# ---------------------------------------------------------------- pid_state

def test_pid_running_then_reaped() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert pid_state(child.pid) == "alive"
    finally:
        child.kill()
        child.wait()
    assert pid_state(child.pid) == "dead"


def test_pid_zombie_is_dead() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        child.kill()  # not waited on: stays a zombie until reaped

        def is_zombie() -> bool:
            fields = Path(f"/proc/{child.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
            return fields[0] == b"Z"

        wait_for(is_zombie, what="child to become a zombie")
        os.kill(child.pid, 0)  # still present in the process table
        assert pid_state(child.pid) == "dead"
    finally:
        child.wait()


def test_pid_self_and_invalid() -> None:
    assert pid_state(os.getpid()) == "alive"
    assert pid_state(0) == "unknown"
    assert pid_state(-1) == "unknown"


def test_pid_permission_and_other_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def deny(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(probes.os, "kill", deny)
    assert pid_state(os.getpid()) == "alive"

    def weird(pid: int, sig: int) -> None:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(probes.os, "kill", weird)
    assert pid_state(os.getpid()) == "unknown"


# ---------------------------------------------------------------- TranscriptReader

def test_transcript_incremental_reads_only_tail(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_bytes(USER + assistant(100, 20, 3))
    r = TranscriptReader(context_window_size=200_000)
    assert r.read(str(f)) == Usage(123, len(USER), 200_000)
    assert r.offset(str(f)) == f.stat().st_size
    assert r.read(str(f)) is None  # nothing new
    assert r.last(str(f)) == Usage(123, len(USER), 200_000)

    before_size, before_read = f.stat().st_size, r.bytes_read
    added = USER * 50 + assistant(500, read=1000)
    with f.open("ab") as fh:
        fh.write(added)
    got = r.read(str(f), context_window_size=1_000_000)
    assert got == Usage(1500, before_size + len(USER) * 50, 1_000_000)
    # Only the appended bytes plus the small rewrite-detection signature were read.
    assert len(added) <= r.bytes_read - before_read <= len(added) + 64
    assert r.offset(str(f)) == f.stat().st_size


AGENT_FILES = Path(__file__).parent / "fixtures" / "agent_transcripts"


@pytest.mark.parametrize("source, sample, window, expected_window", [
    ("codex-rollout", "codex-rollout.jsonl", None, 258_400),     # token_count events carry model_context_window
    ("gemini-chat", "gemini-chat.jsonl", 1_048_576, 1_048_576),  # the window comes from the agent profile
])
def test_codex_rollouts_and_gemini_chat_files_are_read_as_their_profile_says(tmp_path: Path, source: str,
                                                                              sample: str, window, expected_window):
    f = tmp_path / sample
    f.write_bytes((AGENT_FILES / sample).read_bytes())
    r = TranscriptReader()
    first = r.read(str(f), window, source)
    assert (first.tokens_used, first.context_window_size) == (1000, expected_window)  # the latest reply's prompt
    assert TranscriptReader().read(str(f)) is None, "read as a Claude Code transcript it holds no usage"
    turn = {"codex-rollout": {"timestamp": "t", "type": "event_msg", "payload": {"type": "token_count", "info": {
                "last_token_usage": {"input_tokens": 150_000, "cached_input_tokens": 120_000, "output_tokens": 900},
                "model_context_window": 258_400}}},
            "gemini-chat": {"id": "x", "type": "gemini", "content": "ok", "tokens": {"input": 150_000, "output": 900,
                                                                                   "cached": 120_000}}}[source]
    with f.open("ab") as fh:
        fh.write(json.dumps(turn).encode() + b"\n")
    assert r.read(str(f), window, source).tokens_used == 150_000
    with pytest.raises(ValueError, match="unknown context source 'aider-log'"):
        r.read(str(f), None, "aider-log")


def test_transcript_partial_line_completed_later(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    line = assistant(10, 1, 1)
    f.write_bytes(USER + line[:15])
    r = TranscriptReader()
    assert r.read(str(f)) is None
    with f.open("ab") as fh:
        fh.write(line[15:-1])
    assert r.read(str(f)) is None  # still no newline
    with f.open("ab") as fh:
        fh.write(b"\n")
    assert r.read(str(f)) == Usage(12, len(USER))


def test_transcript_malformed_and_irrelevant_lines_skipped(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_bytes(assistant(5) + b'{"type": "assistant", "message": {"usage": \n' + b"\xff\xfe assistant usage\n"
                  + b"[1, 2]\n" + b'{"type":"assistant","message":{"role":"assistant","content":[]}}\n')
    r = TranscriptReader()
    assert r.read(str(f)) == Usage(5, 0)
    with f.open("ab") as fh:
        fh.write(b"{broken assistant usage\n")
        fh.write(assistant(900, isSidechain=True))  # sub-agent context, not the session's
        fh.write(json.dumps({"type": "assistant", "message": {
            "model": "<synthetic>", "usage": {"input_tokens": 0}}}).encode() + b"\n")
    assert r.read(str(f)) is None
    with f.open("ab") as fh:
        # role alone marks the turn; missing and non-integer fields count as zero
        fh.write(json.dumps({"message": {"role": "assistant", "usage": {
            "input_tokens": 40, "cache_read_input_tokens": None}}}).encode() + b"\n")
    assert r.read(str(f)).tokens_used == 40


def test_transcript_truncated_file_restarts(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_bytes(USER * 10 + assistant(1000))
    r = TranscriptReader()
    assert r.read(str(f)).tokens_used == 1000
    f.write_bytes(assistant(7))  # same inode, shorter
    assert r.read(str(f)) == Usage(7, 0)


def test_transcript_rewritten_in_place_restarts(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_bytes(USER + assistant(1000))
    r = TranscriptReader()
    assert r.read(str(f)).tokens_used == 1000
    ino = f.stat().st_ino
    # Truncated and regrown past the old offset between two polls: size alone cannot tell,
    # and the only usage line now sits before the old offset.
    f.write_bytes(assistant(4) + USER * 5)
    assert f.stat().st_ino == ino
    assert r.read(str(f)) == Usage(4, 0)


def test_transcript_rotated_file_restarts(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_bytes(assistant(1000))
    r = TranscriptReader()
    assert r.read(str(f)).tokens_used == 1000
    f.rename(tmp_path / "old.jsonl")  # old file kept so its inode cannot be reused
    f.write_bytes(USER * 10)
    assert r.read(str(f)) is None
    assert r.last(str(f)) is None  # old file's usage is not carried over
    with f.open("ab") as fh:
        fh.write(assistant(8))
    assert r.read(str(f)) == Usage(8, len(USER) * 10)


def test_transcript_huge_file_starts_near_end(tmp_path: Path) -> None:
    f = tmp_path / "big.jsonl"
    filler = json.dumps({"type": "user", "message": {"content": "x" * 1000}}).encode() + b"\n"
    with f.open("wb") as fh:
        fh.write(assistant(1))
        fh.seek(50 * 1024 * 1024)  # ~50 MB the reader must never read: a hole, so nothing is written
        fh.write(b"\n")
        for _ in range(1024):  # the last MB: real lines, more than the tail it reads
            fh.write(filler)
        fh.write(assistant(2, 3, 4))
        fh.write(filler * 3)
    size = f.stat().st_size
    assert size > 50 * 1024 * 1024
    r = TranscriptReader()
    got = r.read(str(f))
    assert got == Usage(9, size - len(filler) * 3 - len(assistant(2, 3, 4)))
    assert r.bytes_read <= probes.TAIL_BYTES + 1
    assert r.offset(str(f)) == size


def test_transcript_tail_start_skips_partial_first_line(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    a, b = assistant(1), assistant(2)
    f.write_bytes(a + b)
    # Window begins exactly at b's first byte: b is a whole line and must count.
    assert TranscriptReader(tail_bytes=len(b)).read(str(f)) == Usage(2, len(a))
    # Window begins one byte into b: the fragment is discarded, a is outside the window.
    r = TranscriptReader(tail_bytes=len(b) - 1)
    assert r.read(str(f)) is None
    with f.open("ab") as fh:
        fh.write(assistant(3))
    assert r.read(str(f)) == Usage(3, len(a + b))


def test_transcript_missing_file(tmp_path: Path) -> None:
    r = TranscriptReader()
    assert r.read(str(tmp_path / "nope.jsonl")) is None
    assert r.offset(str(tmp_path / "nope.jsonl")) is None


def _within(fn, timeout: float = 10.0):
    """fn() on a thread; its result, or a failure if it has not returned within timeout (it may hang)."""
    box: list = []
    thread = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{fn} still running after {timeout} s"
    return box[0]


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "fifo-with-writer", "folder", "socket"])
def test_transcript_that_is_not_a_regular_file_is_never_read(tmp_path: Path, kind: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "t.jsonl"
    writer = None
    if kind == "dev-zero":
        path = Path("/dev/zero")
    elif kind.startswith("fifo"):
        os.mkfifo(path)
        if kind == "fifo-with-writer":
            # A writer that keeps sending usage lines: still not read.
            writer = subprocess.Popen(["sh", "-c", f"while :; do printf '%s' '{assistant(5).decode()}'; done > {path}"])
    elif kind == "folder":
        path.mkdir()
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
    try:
        r = TranscriptReader()
        assert _within(lambda: [r.read(str(path)) for _ in range(3)]) == [None, None, None]
        assert r.bytes_read == 0
        assert r.offset(str(path)) is None
        assert caplog.text.count("it is not read") == 1  # said once, not every round
    finally:
        if writer:
            writer.kill()
            writer.wait()


def test_transcript_that_grew_by_more_than_max_read_is_read_from_its_tail(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_bytes(assistant(1))
    r = TranscriptReader(tail_bytes=4096, max_read=16384)
    assert r.read(str(f)).tokens_used == 1
    with f.open("ab") as fh:
        fh.write(USER * (200_000 // len(USER)))  # ~200 kB of new lines between two rounds
        fh.write(assistant(2))
    before = r.bytes_read
    assert r.read(str(f)).tokens_used == 2
    assert r.bytes_read - before <= 4096 + 64  # the tail and the signature, not the 200 kB
    assert r.offset(str(f)) == f.stat().st_size


# ---------------------------------------------------------------- HandoffWatcher

def test_handoff_folder_that_is_a_fifo_or_holds_one(tmp_path: Path) -> None:
    fifo = tmp_path / "handoffs.fifo"
    os.mkfifo(fifo)
    assert _within(lambda: HandoffWatcher().new_files(str(fifo), "*", 0.0)) == []
    folder = tmp_path / "handoffs"
    folder.mkdir()
    os.mkfifo(folder / "a.md")
    (folder / "b.md").write_text("the real one")
    (folder / "c.md").symlink_to(fifo)
    got = _within(lambda: HandoffWatcher().new_files(str(folder), "*.md", 0.0))
    assert [p for p, _ in got] == [str(folder / "b.md")]


def test_handoff_folder_is_looked_at_up_to_max_matches(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for n in range(30):
        (tmp_path / f"h{n:02d}.md").write_text("x")
        (tmp_path / f"h{n:02d}.txt").write_text("x")
    assert len(HandoffWatcher(max_matches=10).new_files(str(tmp_path), "*.md", 0.0)) == 10
    assert "more than 10 names matching '*.md'" in caplog.text
    assert len(HandoffWatcher(max_matches=30).new_files(str(tmp_path), "*.md", 0.0)) == 30


def test_handoff_file_listed_past_the_first_ten_thousand_entries_is_seen(tmp_path: Path) -> None:
    for n in range(20_000):
        (tmp_path / f"note-{n:05d}.txt").touch()
    handoff = tmp_path / "HANDOFF-0.md"
    handoff.write_text("x")  # created last
    # ext4 lists a folder in the order of its names' hashes: the handoff is renamed until it lists after the
    # first 10,000 entries, the ones the scan used to stop after.
    for attempt in range(1, 50):
        if [e.name for e in os.scandir(tmp_path)].index(handoff.name) >= 10_000:
            break
        handoff = handoff.rename(tmp_path / f"HANDOFF-{attempt}.md")
    else:
        raise AssertionError("this file system lists the newest file first: no case to test")
    got = HandoffWatcher().new_files(str(tmp_path), "*.md", 0.0)
    assert [p for p, _ in got] == [str(handoff)]


def test_handoff_folder_listing_stops_at_its_time_budget(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for n in range(100):
        (tmp_path / f"h{n:02d}.md").write_text("x")
    assert _within(lambda: HandoffWatcher(scan_seconds=-1.0).new_files(str(tmp_path), "*.md", 0.0)) == []
    assert "not listed whole: out of time" in caplog.text


def test_handoff_hidden_files_match_only_a_pattern_that_starts_with_a_dot(tmp_path: Path) -> None:
    (tmp_path / ".h.md").write_text("x")
    (tmp_path / "h.md").write_text("x")
    assert [Path(p).name for p, _ in HandoffWatcher().new_files(str(tmp_path), "*.md", 0.0)] == ["h.md"]
    assert [Path(p).name for p, _ in HandoffWatcher().new_files(str(tmp_path), ".*.md", 0.0)] == [".h.md"]


def test_handoff_new_files(tmp_path: Path) -> None:
    for name, mtime in [("b.md", 300.0), ("a.md", 200.0), ("old.md", 50.0), ("c.txt", 400.0)]:
        p = tmp_path / name
        p.write_text(name)
        os.utime(p, (mtime, mtime))
    (tmp_path / "dir.md").mkdir()
    got = HandoffWatcher().new_files(str(tmp_path), "*.md", since=100.0)
    assert got == [(str(tmp_path / "a.md"), 200.0), (str(tmp_path / "b.md"), 300.0)]
    assert HandoffWatcher().new_files(str(tmp_path), "*.md", since=300.0) == []


def test_handoff_missing_or_bad_folder(tmp_path: Path) -> None:
    w = HandoffWatcher()
    assert w.new_files(str(tmp_path / "absent"), "*", 0.0) == []
    not_dir = tmp_path / "file"
    not_dir.write_text("x")
    assert w.new_files(str(not_dir), "*", 0.0) == []


def test_handoff_folder_with_glob_characters(tmp_path: Path) -> None:
    folder = tmp_path / "odd[1]"
    folder.mkdir()
    (folder / "h.md").write_text("x")
    got = HandoffWatcher().new_files(str(folder), "*.md", 0.0)
    assert [p for p, _ in got] == [str(folder / "h.md")]


# ---------------------------------------------------------------- tmux_targets

def _tmux(sock: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TMUX"}
    proc = subprocess.run([TMUX, "-L", sock, "-f", "/dev/null", *args], env=env,
                          capture_output=True, text=True, timeout=10, check=True)
    return proc.stdout.strip()


@pytest.fixture
def tmux_server() -> Iterator[str]:
    sock = f"ps-health-probe-{secrets.token_hex(6)}"
    _tmux(sock, "new-session", "-d", "-s", "alpha", "-x", "80", "-y", "24", "sleep 600")
    path = _tmux(sock, "display-message", "-p", "#{socket_path}")
    try:
        yield sock
    finally:
        subprocess.run([TMUX, "-L", sock, "kill-server"], capture_output=True, timeout=10)
        # tmux leaves its socket file behind after kill-server.
        Path(path).unlink(missing_ok=True)


@needs_tmux
def test_tmux_seen_and_killed(tmux_server: str) -> None:
    sock = tmux_server
    pane = _tmux(sock, "display-message", "-p", "-t", "alpha", "#{pane_id}")
    _tmux(sock, "new-session", "-d", "-s", "beta", "sleep 600")
    beta_pane = _tmux(sock, "display-message", "-p", "-t", "beta", "#{pane_id}")
    _tmux(sock, "new-session", "-d", "-s", "with space", "sleep 600")
    targets = [pane, "alpha", "alpha:0.0", "beta", beta_pane, "with space", "with space:0.0",
               "alpha:0.9", "alpha:9.0", "%99999", "nosuch", "alpha:editor"]
    got = tmux_targets(targets, socket_name=sock)
    assert got == {pane: "seen", "alpha": "seen", "alpha:0.0": "seen", "beta": "seen", beta_pane: "seen",
                   "with space": "seen", "with space:0.0": "seen", "alpha:0.9": "missing",
                   "alpha:9.0": "missing", "%99999": "missing", "nosuch": "missing", "alpha:editor": "unknown"}

    _tmux(sock, "kill-session", "-t", "beta")
    wait_for(lambda: tmux_targets(["beta"], socket_name=sock)["beta"] == "missing", what="beta to vanish")
    got = tmux_targets([pane, "beta", beta_pane], socket_name=sock)
    assert got == {pane: "seen", "beta": "missing", beta_pane: "missing"}


@needs_tmux
def test_tmux_socket_path(tmux_server: str) -> None:
    path = _tmux(tmux_server, "display-message", "-p", "#{socket_path}")
    assert tmux_targets(["alpha", "zzz"], socket_path=path) == {"alpha": "seen", "zzz": "missing"}


@needs_tmux
def test_tmux_no_server_is_missing(tmp_path: Path) -> None:
    name = f"ps-health-probe-{secrets.token_hex(6)}"
    assert tmux_targets(["alpha", "%1", "a:0.0"], socket_name=name) == {
        "alpha": "missing", "%1": "missing", "a:0.0": "missing"}
    assert tmux_targets(["alpha"], socket_path=str(tmp_path / "none.sock")) == {"alpha": "missing"}
    stale = tmp_path / "stale.sock"
    stale.write_text("")  # a leftover socket path with no server behind it
    assert tmux_targets(["alpha"], socket_path=str(stale)) == {"alpha": "missing"}


def test_tmux_binary_missing_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = str(tmp_path / "no-such-tmux")
    assert tmux_targets(["alpha", "%1"], tmux_bin=missing) == {"alpha": "unknown", "%1": "unknown"}
    monkeypatch.setattr(client, "TMUX_BIN", missing)
    assert tmux_targets(["alpha"]) == {"alpha": "unknown"}


def _fake_tmux(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-tmux"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_tmux_unexpected_failure_is_unknown(tmp_path: Path) -> None:
    fake = _fake_tmux(tmp_path, 'echo "server exploded" >&2; exit 1')
    assert tmux_targets(["alpha"], tmux_bin=fake) == {"alpha": "unknown"}
    denied = _fake_tmux(tmp_path, 'echo "error connecting to /x (Permission denied)" >&2; exit 1')
    assert tmux_targets(["alpha"], tmux_bin=denied) == {"alpha": "unknown"}


def test_tmux_timeout_is_unknown(tmp_path: Path) -> None:
    fake = _fake_tmux(tmp_path, "exec sleep 30")
    t0 = time.monotonic()
    assert tmux_targets(["alpha"], tmux_bin=fake, timeout=0.3) == {"alpha": "unknown"}
    assert time.monotonic() - t0 < 20, "the hung tmux was not waited for (it sleeps 30 s)"


def test_tmux_rejects_both_sockets() -> None:
    with pytest.raises(ValueError):
        tmux_targets(["a"], socket_name="x", socket_path="/tmp/x")
