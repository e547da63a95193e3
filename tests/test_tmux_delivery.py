"""Typing prompts into real tmux panes: sanitised, exactly once, in order, behind a busy gate."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import sys
import termios
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from reactor.process.dispatcher import Dispatcher, Job
from reactor.tmux.client import Outcome, Tmux, sanitise
from reactor.tmux.typist import Trust, Typist
from tests.support import wait_for
from tests.tmux_server import RECORDER, TmuxServer

FAKE_AGENT = RECORDER.with_name("fake_agent.py")

SUBMIT_DELAY = 0.2
# What the reactor gets from SQL with a prompt: here the recorder is the accepted program, and its
# input line starts after its "> " prompt.
RECORDER_PROFILE = {"*": {"input_pattern": r"^> ", "ignore_pattern": None, "clear_keys": ["C-u"]}}
MARKER = r"\[ps-health #[0-9]+\]"


def trust(**given) -> Trust:
    """Checks for one delivery into a recorder pane not seen before (bound at first sight)."""
    return Trust(**{"identity": None, "programs": ("recorder",), "profiles": RECORDER_PROFILE,
                    "marker_pattern": MARKER, **given})


def deliver(tmux: Tmux, target: str, text: str, attempts: int = 3) -> Outcome:
    """One prompt into a recorder pane, as the reactor types it."""
    return Typist(tmux).deliver(target, text, SUBMIT_DELAY, attempts, trust=trust())


def arrived(pane, expected: bytes) -> None:
    """The recorder writes what it read a moment after tmux took it: wait for exactly `expected`."""
    wait_for(lambda: pane.received() == expected, timeout=5,
             what=f"exactly {expected[:40]!r} in {pane.target}")



@pytest.fixture
def server(tmux_server: TmuxServer) -> TmuxServer:
    return tmux_server


@pytest.fixture(params=["control", "exec"])
def client(request, server: TmuxServer):
    """Both ways of talking to tmux: the control-mode client, and a process per command."""
    tmux = Tmux(socket_name=server.name, control=request.param == "control")
    yield tmux
    tmux.close()


def control_clients(server: TmuxServer) -> list[tuple[int, str]]:
    """(pid, flags) of every control-mode client attached to the server."""
    lines = server.run("list-clients", "-F", "#{client_pid} #{client_flags}").splitlines()
    return [(int(pid), flags) for pid, flags in (line.split(" ", 1) for line in lines) if "control-mode" in flags]


def test_sanitise_strips_controls_and_keeps_text():
    assert sanitise("a\x03b") == "ab"
    assert sanitise("\x1b[31mred\x1b[0m text") == "red text"
    assert sanitise("title\x1b]0;evil\x07 ok") == "title ok"
    assert sanitise("one\ntwo\r\n\tthree") == "one two three"
    assert sanitise("  del\x7f c1\x9b31m  ") == "del c131m"
    assert sanitise("-R ls;") == "-R ls;"
    assert sanitise("café 日本 🎉 #{pane_id}") == "café 日本 🎉 #{pane_id}"
    assert sanitise("bad \ud800 surrogate") == "bad surrogate"
    assert sanitise(sanitise("x \n\x1b[1m y")) == sanitise("x \n\x1b[1m y")


def test_prompt_reaches_the_right_pane_once_and_is_submitted(server, client):
    pane, other = server.recorder(), server.recorder()
    text = "Please report your status with: ps-health status"

    outcome = deliver(client, pane.target, text)

    assert outcome.outcome == "delivered", outcome
    assert outcome.latency_ms > 0
    wait_for(lambda: pane.received().endswith(b"\r"), what="Enter in the recorder")
    assert pane.received() == text.encode() + b"\r"
    assert other.received() == b""


def _text_to_enter(pane) -> float:
    """Seconds from the first bytes a recorder started with --times read to its Enter (waited for)."""
    wait_for(lambda: pane.received().endswith(b"\r"), what="Enter in the recorder")
    reads = pane.reads()
    return next(stamp for stamp, data in reads if b"\r" in data) - reads[0][0]


def test_enter_goes_out_a_whole_submit_delay_after_the_text(server, client):
    # The last look at the pane is taken within the delay, and Enter waits for the rest of it.
    pane = server.recorder("--times")
    delay = 0.5

    outcome = Typist(client).deliver(pane.target, "check the spawn queue", delay, trust=trust())

    assert outcome.outcome == "delivered", outcome
    assert pane.received() == b"check the spawn queue\r"
    # (the recorder may read the text a moment after it arrived, on a busy machine: allow that much)
    assert _text_to_enter(pane) >= delay * 0.8


class SlowToSend(Tmux):
    """A tmux whose typed text goes out 0.3 s after it was handed over (its client busy with other panes)."""

    def send_literal(self, *args, **kwargs) -> None:
        time.sleep(0.3)
        super().send_literal(*args, **kwargs)


@pytest.mark.parametrize("control", [True, False], ids=["control", "exec"])
def test_the_submit_delay_counts_from_when_the_text_went_out_not_from_when_it_was_handed_over(server, control):
    pane = server.recorder("--times")
    tmux = SlowToSend(socket_name=server.name, control=control)
    try:
        outcome = Typist(tmux).deliver(pane.target, "check the spawn queue", 0.5, trust=trust())
    finally:
        tmux.close()

    assert outcome.outcome == "delivered", outcome
    assert _text_to_enter(pane) >= 0.4


class LooksTaking(Tmux):
    """A tmux whose looks at a pane's screen take at least `took` seconds each (a busy machine)."""

    took = 0.004

    def _screen(self, target: str) -> str:
        time.sleep(self.took)
        return super()._screen(target)


def test_the_look_before_enter_starts_as_early_as_looks_take_so_enter_is_not_late_and_no_earlier(server):
    # A look that takes longer than the time allowed for it delayed Enter by the difference, every time.
    pane = server.recorder()
    tmux = LooksTaking(socket_name=server.name)
    typist = Typist(tmux)
    try:
        assert typist.look_ahead(0.5) == 0.001  # (before any look)
        assert typist.deliver(pane.target, "first prompt", 0.5, trust=trust()).outcome == "delivered"
        after_slow = typist.look_ahead(0.5)
        assert after_slow >= 0.004, after_slow  # the next look starts at least as long before the Enter
        assert typist.look_ahead(0.008) == 0.002  # and never more than a quarter of the delay before it

        tmux.took = 0.5  # a look stuck for half a second does not send the next ones that far ahead
        assert typist.deliver(pane.target, "second prompt", 0.5, trust=trust()).outcome == "delivered"
        assert typist.look_ahead(0.5) == 0.01

        tmux.took = 0  # looks quick again (some milliseconds at most): the start moves back toward the delay's end
        for n in range(12):
            assert typist.deliver(pane.target, f"prompt {n}", 0.05, trust=trust()).outcome == "delivered"
        assert typist.look_ahead(0.5) < 0.01
    finally:
        tmux.close()
    arrived(pane, b"first prompt\rsecond prompt\r" + b"".join(b"prompt %d\r" % n for n in range(12)))


LONG = "start" + "".join(f" {i:05d}é" for i in range(2000))[:9_995]

HOSTILE = {
    "ctrl-c": ("stop\x03 now", "stop now"),
    "ansi colour": ("\x1b[31mred\x1b[0m alert", "red alert"),
    "newline mid-text": ("first line\nsecond line", "first line second line"),
    "leading option": ("-R reset everything", "-R reset everything"),
    "trailing semicolon": ("run this;", "run this;"),
    "escaped semicolon": ("keep\\;", "keep\\;"),
    "tmux format": ("pane #{pane_id} #S", "pane #{pane_id} #S"),
    "tmux quoting": ("it's \"quoted\" $HOME ~/x {a} \\'", "it's \"quoted\" $HOME ~/x {a} \\'"),
    "non-ascii": ("café 日本語 🎉 naïve", "café 日本語 🎉 naïve"),
    "bidi override": ("run safe\u202etxt.exe", "run safetxt.exe"),
    "line separator": ("one\u2028two\u2029three\x85four", "one two three four"),
    "zero-width": ("pass\u200bword\ufeff\u2060", "password"),
    "10000 chars": (LONG, LONG),
}


@pytest.mark.parametrize("case", HOSTILE.keys())
def test_hostile_text_arrives_sanitised_and_program_survives(server, client, case):
    text, expected = HOSTILE[case]
    assert sanitise(text) == expected
    assert len(LONG) == 10_000
    pane = server.recorder()

    outcome = deliver(client, pane.target, text)

    assert outcome.outcome == "delivered", outcome
    wait_for(lambda: pane.received().endswith(b"\r"), what="Enter in the recorder")
    assert pane.received() == expected.encode() + b"\r"
    assert server.alive(pane)


def test_format_is_shown_literally_in_the_pane(server):
    pane = server.recorder()
    assert deliver(server.tmux, pane.target, "id #{pane_id}").outcome == "delivered"
    screen = wait_for(lambda: server.tmux.capture(pane.target), what="a capture")
    assert "id #{pane_id}" in screen
    assert pane.target not in screen


def test_text_not_shown_fails_without_typing_twice_or_submitting(server):
    pane = server.recorder("--no-echo")

    outcome = deliver(server.tmux, pane.target, "are you there?", attempts=3)

    assert outcome.outcome == "failed"
    assert outcome.detail == "text not visible in pane after 3 attempts"
    assert pane.received() == b"are you there?"


class SlowLooks(Tmux):
    """A tmux whose first three looks at a pane's screen take 0.45 s each (a machine under load)."""

    slow = 3

    def _screen(self, target: str) -> str:
        if self.slow:
            self.slow -= 1
            time.sleep(0.45)
        return super()._screen(target)


def test_each_retry_gives_a_slow_agent_a_whole_submit_delay_even_when_looks_are_slow(server, tmp_path):
    # The agent draws typed text 1.7 s after it arrives; the looks before Enter take 0.45 s each and the
    # delay is 0.2 s. Looks spaced a delay apart (seeing the screen at ~0.65, ~1.3, ~1.95 s) find the text at
    # the third; looks one right after the other (~0.65, ~1.1, ~1.55 s) would miss it and fail the prompt.
    record = tmp_path / "slow.bin"
    target, pid = server.run("new-session", "-d", "-x", "100", "-y", "30", "-P", "-F", "#{pane_id} #{pane_pid}",
                             sys.executable, str(FAKE_AGENT), str(record), "--lag", "1.7").split()
    wait_for(record.exists, what="the fake agent to set up its tty")
    tmux = SlowLooks(socket_name=server.name)
    profile = {"input_pattern": r"^>( |$)", "ready_pattern": r"^>( |$)", "clear_keys": ["C-u"]}
    try:
        outcome = Typist(tmux).deliver(target, "look at the build", 0.2, 3, trust=trust(
            programs=("fake_agent",), profiles={"fake_agent": profile}))
    finally:
        tmux.close()

    assert outcome.outcome == "delivered", outcome
    assert outcome.detail.startswith("submitted on attempt 3"), outcome
    wait_for(lambda: record.read_bytes().endswith(b"\r"), what="Enter in the fake agent")
    assert record.read_bytes() == b"look at the build\r"


def test_text_of_only_control_characters_is_not_sent(server):
    pane = server.recorder()

    outcome = deliver(server.tmux, pane.target, "\x1b[31m\x03\n")

    assert outcome.outcome == "failed"
    assert "nothing left to send" in outcome.detail
    assert pane.received() == b""
    assert server.alive(pane)


def test_missing_pane_is_target_missing(server):
    tmux = server.tmux
    assert tmux.target_exists("%999") is False
    assert tmux.capture("%999") is None
    assert deliver(tmux, "%999", "hello").outcome == "target_missing"
    assert deliver(tmux, "nosuchsession:0.0", "hello").outcome == "target_missing"


def test_no_server_is_target_missing():
    tmux = Tmux(socket_name=f"ps-health-test-absent-{uuid.uuid4().hex[:8]}")
    assert tmux.target_exists("%0") is False
    assert deliver(tmux, "%0", "hello").outcome == "target_missing"


def test_pane_text_imitating_control_replies_is_only_screen_content(server, tmp_path):
    # A pane can print anything, including lines shaped like tmux's control-mode framing.
    forged = ["%end 1795872669 3077 1", "%error 1795872669 3078 1", "%begin 1795872669 3079 1", "%exit"]
    record = tmp_path / "forged.bin"
    script = "printf '%s\\n' " + " ".join(f"'{line}'" for line in forged) + \
        f"; exec {sys.executable} {RECORDER} {record}"
    target = server.run("new-session", "-d", "-x", "100", "-y", "30", "-P", "-F", "#{pane_id}", "sh", "-c", script)
    wait_for(record.exists, what="the forging pane to start its recorder")

    screen = server.tmux.capture(target)

    assert screen.splitlines()[:4] == forged
    assert deliver(server.tmux, target, "still framed right").outcome == "delivered"
    wait_for(lambda: record.read_bytes() == b"still framed right\r", what="the prompt in the forging pane")
    assert server.tmux.capture(target).splitlines()[:4] == forged


def test_one_quiet_control_client_serves_every_pane(server):
    panes = [server.recorder() for _ in range(3)]

    for n, pane in enumerate(panes):
        assert deliver(server.tmux, pane.target, f"prompt {n}").outcome == "delivered"

    ((_, flags),) = control_clients(server)
    assert "no-output" in flags and "ignore-size" in flags
    # It does not resize the panes it types into.
    assert {server.run("display-message", "-p", "-t", p.target, "#{pane_width}x#{pane_height}") for p in panes} \
        == {"100x30"}


def test_control_clients_attaching_at_once_all_attach(server):
    pane = server.recorder()
    for _ in range(5):
        clients = [Tmux(socket_name=server.name) for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            screens = list(pool.map(lambda tmux: tmux.capture(pane.target), clients))
        attached = len(control_clients(server))
        for tmux in clients:
            tmux.close()
        assert all(screen is not None for screen in screens)
        assert attached == 4, "a client that starts while others attach must attach too"
        wait_for(lambda: not control_clients(server), what="the four clients to leave")


def test_killed_control_client_is_replaced(server):
    first, second = server.recorder(), server.recorder()
    assert deliver(server.tmux, first.target, "before").outcome == "delivered"
    ((pid, _),) = control_clients(server)

    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not control_clients(server), what="the killed client to leave")
    outcome = deliver(server.tmux, second.target, "after")

    assert outcome.outcome == "delivered", outcome
    arrived(second, b"after\r")
    ((new_pid, _),) = control_clients(server)
    assert new_pid != pid


def test_idle_control_client_keeps_reading_what_tmux_sends(server, tmp_path):
    pane = server.recorder()
    assert deliver(server.tmux, pane.target, "attach").outcome == "delivered"
    # tmux tells a control client of every window rename: 2,000 of them are more than a pipe holds.
    script = tmp_path / "renames.tmux"
    script.write_text("".join(f"rename-window -t {pane.target} name-{i}\n" for i in range(2000)))
    server.run("source-file", str(script))

    # The client's end of tmux's output (private: nothing public shows the pipe): read and dropped.
    stdout = server.tmux._control._proc.stdout
    wait_for(lambda: _pipe_bytes(stdout.fileno()) == 0, what="tmux's notifications read while idle")
    assert deliver(server.tmux, pane.target, "after").outcome == "delivered"
    arrived(pane, b"attach\rafter\r")


def _pipe_bytes(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


@pytest.mark.parametrize("how", ["kill-server", "SIGKILL"])
def test_killed_server_is_reported_not_raised(server, how):
    pane = server.recorder()
    assert server.tmux.target_exists(pane.target) is True
    if how == "kill-server":
        server.kill()
    else:
        os.kill(int(server.run("display-message", "-p", "#{pid}")), signal.SIGKILL)
    wait_for(lambda: server.tmux.target_exists(pane.target) is not True, what="server gone")

    outcome = deliver(server.tmux, pane.target, "hello")

    assert outcome.outcome in ("target_missing", "failed"), outcome
    assert pane.received() == b""


class TimedTypist(Typist):
    """A real Typist that also records when each delivery started and ended."""

    def __init__(self, socket_name: str):
        super().__init__(Tmux(socket_name=socket_name))
        self.spans: dict[str, list[tuple[float, float]]] = {}
        self._lock = threading.Lock()

    def deliver(self, target: str, text: str, submit_delay: float, attempts: int = 3, *, trust: Trust) -> Outcome:
        start = time.monotonic()
        outcome = super().deliver(target, text, submit_delay, attempts, trust=trust)
        with self._lock:
            self.spans.setdefault(target, []).append((start, time.monotonic()))
        return outcome


class Done:
    """Collects on_done calls with the time each arrived."""

    def __init__(self) -> None:
        self.calls: dict[object, tuple[Outcome, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, job: Job, outcome: Outcome) -> None:
        with self._lock:
            self.calls[job.prompt_id] = (outcome, time.monotonic())

    def count(self) -> int:
        with self._lock:
            return len(self.calls)


def test_dispatcher_types_into_many_panes_concurrently(server):
    tmux = TimedTypist(server.name)
    panes = [server.recorder() for _ in range(20)]
    done, delay = Done(), 1.0
    dispatcher = Dispatcher(tmux)
    started = time.monotonic()

    for n, pane in enumerate(panes):
        assert dispatcher.submit(Job(n, pane.target, f"prompt number {n}", submit_delay=delay,
                                     idle_seconds=0, on_done=done, trust=trust()))
    wait_for(lambda: done.count() == 20, timeout=30, what="20 outcomes")
    elapsed = time.monotonic() - started

    assert all(o.outcome == "delivered" for o, _ in done.calls.values()), done.calls
    for n, pane in enumerate(panes):
        arrived(pane, f"prompt number {n}\r".encode())
    spans = [span for spans in tmux.spans.values() for span in spans]
    # Every delivery started before any finished: they all ran at the same time.
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    # Serial delivery could not take less than 20 submit delays.
    assert elapsed < 20 * delay
    assert dispatcher.stop(timeout=5) == []


def test_dispatcher_keeps_order_per_pane(server):
    tmux = TimedTypist(server.name)
    pane = server.recorder()
    done = Done()
    dispatcher = Dispatcher(tmux)
    first, second = "first " + "a" * 3000, "second " + "b" * 3000

    dispatcher.submit(Job(1, pane.target, first, submit_delay=SUBMIT_DELAY, idle_seconds=0,
                          on_done=done, trust=trust()))
    dispatcher.submit(Job(2, pane.target, second, submit_delay=SUBMIT_DELAY, idle_seconds=0,
                          on_done=done, trust=trust()))
    wait_for(lambda: done.count() == 2, what="both outcomes")
    assert all(o.outcome == "delivered" for o, _ in done.calls.values()), done.calls

    arrived(pane, f"{first}\r{second}\r".encode())
    (start1, end1), (start2, _) = tmux.spans[pane.target]
    assert end1 <= start2
    assert done.calls[1][1] < done.calls[2][1]
    dispatcher.stop(timeout=5)


def test_busy_pane_is_deferred_while_idle_pane_is_served(server):
    busy, idle = server.recorder("--tick", "0.2"), server.recorder()
    done = Done()
    dispatcher = Dispatcher(Typist(server.tmux), poll_interval=0.25)
    submitted = time.monotonic()

    dispatcher.submit(Job("busy", busy.target, "when you can, report", submit_delay=SUBMIT_DELAY,
                          idle_seconds=1, max_defer=3, on_done=done, trust=trust()))
    dispatcher.submit(Job("idle", idle.target, "report now", submit_delay=SUBMIT_DELAY,
                          idle_seconds=1, max_defer=3, on_done=done, trust=trust()))
    wait_for(lambda: done.count() == 2, timeout=20, what="both outcomes")

    busy_outcome, busy_at = done.calls["busy"]
    idle_outcome, idle_at = done.calls["idle"]
    assert busy_outcome.outcome == idle_outcome.outcome == "delivered"
    assert "still busy" in busy_outcome.detail
    assert "still busy" not in idle_outcome.detail
    assert idle_at - submitted >= 1  # waited for idle_seconds of quiet
    assert busy_at - submitted >= 3  # waited the whole max_defer
    assert idle_at < busy_at
    arrived(busy, b"when you can, report\r")
    arrived(idle, b"report now\r")
    dispatcher.stop(timeout=5)


def test_stop_returns_untyped_jobs_and_finishes_typing(server):
    busy, idle = server.recorder("--tick", "0.2"), server.recorder()
    done = Done()
    dispatcher = Dispatcher(Typist(server.tmux), poll_interval=0.1)
    gated = Job("gated", busy.target, "later", idle_seconds=1, max_defer=60, on_done=done, trust=trust())
    queued = Job("queued", busy.target, "even later", idle_seconds=1, on_done=done, trust=trust())
    typing = Job("typing", idle.target, "right now", submit_delay=1.0, idle_seconds=0,
                 on_done=done, trust=trust())

    for job in (gated, queued, typing):
        assert dispatcher.submit(job)
    wait_for(lambda: dispatcher.in_flight() == 2 and dispatcher.pending() == 1,
             what="one job typing, one gated, one queued")
    left = dispatcher.stop(timeout=10)

    assert {job.prompt_id for job in left} == {"gated", "queued"}
    assert set(done.calls) == {"typing"}
    assert done.calls["typing"][0].outcome == "delivered"
    # the Enter was sent before stop() returned; the recorder writes it down a moment later
    assert wait_for(lambda: idle.received().endswith(b"\r") and idle.received()) == b"right now\r"
    assert busy.received() == b""
    assert not dispatcher.submit(Job("late", idle.target, "too late"))
    assert dispatcher.in_flight() == 0 and dispatcher.pending() == 0
