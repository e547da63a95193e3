"""The reactor reads an agent's screen by its profile: nothing typed into a dialog, the busy gate waits for a
running turn, long text pasted whole and once, the reset command of the agent in the pane. An agent of the
test's own (tests/fake_agent.py) with a profile like the shipped ones; real tmux, PostgreSQL and reactor."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from reactor.tmux.client import sanitise
from reactor.tmux.typist import Trust, Typist
from tests.reactor_proc import HOST, delivered, failed_spawn, fast, prompt
from tests.support import wait_for
from tests.tmux_server import Pane

FAKE = Path(__file__).with_name("fake_agent.py")
PROFILE = {"program": "fake_agent", "input_pattern": r"^>( |$)", "ready_pattern": r"^>( |$)", "clear_keys": ["C-u"],
           "busy_pattern": r"esc to interrupt", "dialog_pattern": r"^❯ \d+\. |Esc to cancel$",
           "paste_above": 200, "placeholder_pattern": r"\[Pasted text #\d+\]", "reset_command": "/reset-fake"}


@pytest.fixture
def agent(conn, tmux_server, tmp_path):
    """agent(project, *args) starts tests/fake_agent.py in a pane registered as project's session."""
    conn.execute("INSERT INTO ps_health.agent_profiles (program, input_pattern, ready_pattern, clear_keys, "
                 "busy_pattern, dialog_pattern, paste_above, placeholder_pattern, reset_command) VALUES "
                 "(%(program)s, %(input_pattern)s, %(ready_pattern)s, %(clear_keys)s, %(busy_pattern)s, "
                 "%(dialog_pattern)s, %(paste_above)s, %(placeholder_pattern)s, %(reset_command)s)", PROFILE)

    def start(project: str, *args: str) -> Pane:
        record = tmp_path / f"fake-{uuid.uuid4().hex[:8]}.bin"
        target, pid = tmux_server.run("new-session", "-d", "-x", "100", "-y", "30", "-P", "-F",
                                      "#{pane_id} #{pane_pid}", sys.executable, str(FAKE), str(record),
                                      *args).split()
        wait_for(record.exists, what="the fake agent to set up its tty")
        conn.execute("SELECT ps_health.set_setting('agent_programs', '[\"fake_agent\"]', %s)", (project,))
        conn.execute("SELECT ps_health.register_session(%s, 'cli', %s, %s)", (project, target, HOST))
        return Pane(target, int(pid), record)

    return start


def _action(conn, prompt_id: int) -> str:
    return conn.execute("SELECT string_agg(c.action_taken, ' | ') AS a FROM ps_health.prompt_items i "
                        "JOIN ps_health.health_checks c ON c.id = i.check_id WHERE i.prompt_id = %s",
                        (prompt_id,)).fetchone()["a"] or ""


def stalled_spawns(conn, project: str, n: int) -> int:
    """n spawns of project found stalled in one sweep: one prompt about all of them; returns its id."""
    for i in range(n):
        task = f"task-{i:02d}-" + "parser-refactoring-part-" * 8
        conn.execute("SELECT ps_health.start_spawn(%s, %s, 'research', 'Research one part of the parser', NULL, "
                     "NULL, NULL, now() - interval '20 minutes')", (project, task))
    conn.execute("SELECT ps_health.run_checks(now())")
    return conn.execute("SELECT max(id) AS id FROM ps_health.prompts WHERE project = %s", (project,)).fetchone()["id"]


def test_nothing_is_typed_into_a_dialog_and_the_prompt_follows_once_it_is_answered(conn, agent, tmux_server,
                                                                                     reactors):
    fast(conn, prompt_defer_delay="1 second")
    pane = agent("shop", "--dialog")
    reactors.start()
    waiting = failed_spawn(conn, "shop")
    wait_for(lambda: "deferred" in _action(conn, waiting), what="the prompt deferred")
    assert "a dialog, menu or selection list is open (agent profile 'fake_agent'); nothing typed" in \
        _action(conn, waiting)
    assert pane.received() == b"" and not Path(f"{pane.record}.approved").exists()
    assert prompt(conn, waiting)["attempts"] == 0  # a dialog costs no delivery attempt

    tmux_server.run("send-keys", "-t", pane.target, "Escape")  # the person answers the dialog: no
    row = delivered(conn, waiting, timeout=20)
    wait_for(lambda: pane.submitted(), what="the prompt submitted")
    assert pane.submitted() == [sanitise(row["text"]).encode()]
    assert pane.received() == b"\x1b" + sanitise(row["text"]).encode() + b"\r"
    assert not Path(f"{pane.record}.approved").exists(), "no tool was approved"


def test_the_busy_gate_waits_while_the_agent_shows_a_turn_running(conn, agent, reactors):
    # A turn whose screen does not change for seconds: still, but not idle.
    fast(conn, idle_seconds="1", max_defer="1 minute")
    pane = agent("shop", "--busy", "5")
    reactors.start()
    row = delivered(conn, failed_spawn(conn, "shop"), timeout=30)
    assert "sent anyway" not in (row["detail"] or "")
    assert not Path(f"{pane.record}.busy").exists(), "typed while the agent showed a running turn"
    wait_for(lambda: pane.submitted(), what="the prompt submitted")
    assert pane.submitted() == [sanitise(row["text"]).encode()]


def test_long_text_is_pasted_whole_and_once_and_a_collapsed_placeholder_counts_as_arrived(conn, agent, reactors):
    fast(conn)
    pane = agent("shop", "--collapse", "200")
    reactors.start()
    prompt_id = stalled_spawns(conn, "shop", 17)
    row = delivered(conn, prompt_id, timeout=30)
    text = sanitise(row["text"])
    assert len(text) > 3000
    wait_for(lambda: pane.submitted(), what="the prompt submitted")
    assert pane.submitted() == [text.encode()]
    assert pane.received() == b"\x1b[200~" + text.encode() + b"\x1b[201~\r"
    assert "pasted" in row["detail"]


def test_a_retry_submits_the_text_already_in_the_input_box_and_never_types_it_again(conn, agent, reactors):
    # The agent draws the paste only after the reactor stopped looking: the first attempt fails, the next one
    # finds the collapsed paste it made on the input line and submits it.
    fast(conn, submit_delay="50 milliseconds", prompt_retry_delay="0 seconds")
    pane = agent("shop", "--collapse", "200", "--lag", "1")
    reactors.start()
    prompt_id = stalled_spawns(conn, "shop", 17)
    row = delivered(conn, prompt_id, timeout=30)
    text = sanitise(row["text"])
    wait_for(lambda: pane.submitted(), what="the prompt submitted")
    assert row["attempts"] >= 2, "the first attempt could not see the text"
    assert pane.submitted() == [text.encode()]
    assert pane.received().count(b"\x1b[200~") == 1, "pasted once"


def test_an_enter_the_agent_took_for_a_newline_is_pressed_again_and_the_prompt_submitted_once(conn, agent, reactors):
    # The agent reads the text and the Enter 100 ms later as one burst, the Enter a newline in it: the
    # reactor sees the text still on the input line, unchanged, looks at the pane afresh and presses Enter once
    # more.
    fast(conn)
    pane = agent("shop", "--enter-window", "0.5")
    reactors.start()
    prompt_id = failed_spawn(conn, "shop")
    row = delivered(conn, prompt_id, timeout=30)
    text = sanitise(row["text"])
    wait_for(lambda: pane.submitted(), what="the prompt submitted")
    assert pane.submitted() == [text.encode()]
    assert row["attempts"] == 1 and pane.received().count(text.encode()) == 1
    assert pane.received().endswith(b"\r\r")


def test_a_slow_agent_that_opened_a_dialog_with_the_enter_never_gets_a_second_one(conn, agent, reactors, tmux_server):
    # The agent takes the prompt and asks for a permission at once, but redraws only 2.5 s later: until then
    # its screen still shows the text on the input line. A second Enter would answer the dialog ("1. Yes").
    fast(conn, prompt_retry_delay="0 seconds", prompt_defer_delay="1 second")
    pane = agent("shop", "--submit-lag", "2.5", "--ask-after-submit")
    reactors.start()
    prompt_id = failed_spawn(conn, "shop")
    wait_for(lambda: pane.submitted(), what="the prompt submitted")
    wait_for(lambda: "Esc to cancel" in tmux_server.run("capture-pane", "-p", "-t", pane.target),
             timeout=15, what="the dialog drawn")
    wait_for(lambda: "deferred" in _action(conn, prompt_id) or prompt(conn, prompt_id)["state"] == "delivered",
             timeout=20, what="the next attempt")
    assert not Path(str(pane.record) + ".approved").exists(), "a second Enter answered the dialog"
    assert pane.received().count(b"\r") == 1


def test_a_footer_that_changes_in_place_is_no_sign_the_agent_took_the_line(conn, agent, reactors):
    # A timer under the input box changes every 50 ms; the agent takes an Enter that follows the text within
    # 0.5 s for a newline. The prompt counts as delivered only once it was really submitted.
    fast(conn, prompt_retry_delay="0 seconds", prompt_defer_delay="1 second")
    pane = agent("shop", "--clock", "--enter-window", "0.5")
    reactors.start()
    prompt_id = failed_spawn(conn, "shop")
    text = sanitise(delivered(conn, prompt_id, timeout=30)["text"])
    assert pane.submitted() == [text.encode()]


def test_a_profile_changed_while_the_reactor_runs_is_the_one_the_next_prompt_is_read_by(conn, agent, reactors):
    # A claim sends the profiles only when they changed since the reactor's last: a change must still reach it.
    fast(conn, prompt_defer_delay="1 second")
    pane = agent("shop")
    reactors.start()
    first = sanitise(delivered(conn, failed_spawn(conn, "shop"), timeout=30)["text"])
    wait_for(lambda: pane.submitted(), what="the first prompt submitted")
    conn.execute("UPDATE ps_health.agent_profiles SET dialog_pattern = '^>( |$)' WHERE program = 'fake_agent'")

    waiting = failed_spawn(conn, "shop", task="t2")

    wait_for(lambda: "deferred" in _action(conn, waiting), what="the second prompt deferred")
    assert "a dialog, menu or selection list is open (agent profile 'fake_agent'); nothing typed" in \
        _action(conn, waiting)
    assert pane.submitted() == [first.encode()]


def test_the_handoff_cycle_types_the_reset_command_of_the_agent_in_the_pane(conn, agent, reactors, tmp_path):
    fast(conn)
    for project in ("shop", "mill"):
        conn.execute("SELECT ps_health.set_setting('auto_cycle', 'true', %s)", (project,))
    conn.execute("SELECT ps_health.set_setting('reset_command', '/compact', 'mill')")  # the project's own
    panes = {project: agent(project) for project in ("shop", "mill")}
    reactors.start()
    for project in panes:
        conn.execute("SELECT ps_health.report_handoff(%s, %s)", (project, str(tmp_path / f"{project}.md")))
    for project, reset in (("shop", b"/reset-fake"), ("mill", b"/compact")):
        wait_for(lambda p=project: len(panes[p].submitted()) == 2, what=f"the reset and the resume in {project}")
        lines = panes[project].submitted()
        assert lines[0] == reset and b"your context was cleared after a handoff" in lines[1]
    row = conn.execute("SELECT detail FROM ps_health.prompts WHERE project = 'shop' AND kind = 'reset'").fetchone()
    assert "(/reset-fake, the reset command of agent profile 'fake_agent')" in row["detail"]


WRAPPED = "[ps-health #7] alpha: spawn t1 failed; read its output file and decide what to do next about it"


def test_a_wrapped_prompt_left_on_the_line_is_cleared_and_typed_again_not_left_forever(tmux_server, tmp_path):
    # The agent's box wraps a long prompt onto rows of its own and the input line is the first: a prompt
    # a stopped reactor typed there shows only its start. It is the reactor's own text, not the user's.
    record = tmp_path / "wrap.bin"
    target = tmux_server.run("new-session", "-d", "-x", "100", "-y", "30", "-P", "-F", "#{pane_id}",
                             sys.executable, str(FAKE), str(record), "--wrap", "40")
    wait_for(record.exists, what="the fake agent to set up its tty")
    tmux_server.run("send-keys", "-t", target, "-l", WRAPPED)  # typed by a reactor that was stopped
    wait_for(lambda: WRAPPED[-20:] in tmux_server.run("capture-pane", "-p", "-t", target).replace("\n  ", ""),
             what="the prompt drawn over three rows")
    checks = Trust(identity=None, programs=("fake_agent",), marker_pattern=r"\[ps-health #[0-9]+\]",
                   profiles={"*": {"input_pattern": r"^>( |$)", "clear_keys": ["C-u"]}})

    outcome = Typist(tmux_server.tmux).deliver(target, WRAPPED, 0.1, trust=checks)

    assert outcome.outcome == "delivered", outcome
    pane = Pane(target, 0, record)
    wait_for(lambda: pane.submitted() == [WRAPPED.encode()], what="the prompt submitted once")


def test_a_prompt_sent_to_a_busy_agent_counts_as_submitted_only_once_it_is(tmux_server, tmp_path):
    # Sent anyway to an agent whose turn runs past the defer limit: the running turn shown before Enter is no
    # sign the Enter was taken. The agent takes it for a newline; the reactor looks afresh, presses it again,
    # and the prompt is submitted; it never counts as delivered while it still sits on the input line.
    record = tmp_path / "busy.bin"
    target = tmux_server.run("new-session", "-d", "-x", "100", "-y", "30", "-P", "-F", "#{pane_id}",
                             sys.executable, str(FAKE), str(record), "--busy", "60", "--enter-window", "0.5")
    wait_for(record.exists, what="the fake agent to set up its tty")
    checks = Trust(identity=None, programs=("fake_agent",), marker_pattern=r"\[ps-health #[0-9]+\]",
                   profiles={"*": {key: PROFILE[key] for key in ("input_pattern", "clear_keys", "busy_pattern",
                                                                 "dialog_pattern")}})
    text = "[ps-health #1] alpha: spawn t1 failed"

    outcome = Typist(tmux_server.tmux).deliver(target, text, 0.1, trust=checks)

    assert outcome.outcome == "delivered", outcome
    assert Pane(target, 0, record).submitted() == [text.encode()]


def test_two_prompts_run_together_on_the_line_are_cleared_and_the_next_is_delivered(tmux_server, tmp_path):
    # A prompt a stopped reactor typed is drawn late (the agent redraws 0.3 s after input): the next prompt is
    # typed beside it and, seen beside text it did not type, not submitted. The line then holds two of the
    # reactor's prompts and nothing of anyone else's: the prompt after them clears it, and is delivered.
    record = tmp_path / "lag.bin"
    target = tmux_server.run("new-session", "-d", "-x", "200", "-y", "30", "-P", "-F", "#{pane_id}",
                             sys.executable, str(FAKE), str(record), "--lag", "0.3")
    wait_for(record.exists, what="the fake agent to set up its tty")
    checks = Trust(identity=None, programs=("fake_agent",), marker_pattern=r"\[ps-health #[0-9]+\]",
                   profiles={"*": {"input_pattern": r"^>( |$)", "clear_keys": ["C-u"]}})
    typist, pane = Typist(tmux_server.tmux), Pane(target, 0, record)
    tmux_server.run("send-keys", "-t", target, "-l", "[ps-health #5] alpha: spawn t1 failed")

    second = typist.deliver(target, "[ps-health #6] beta: context low", 0.1, trust=checks)
    assert second.outcome != "delivered", second
    wait_for(lambda: "[ps-health #6]" in tmux_server.run("capture-pane", "-p", "-t", target), what="both drawn")
    third = typist.deliver(target, "[ps-health #7] gamma: spawn t2 failed", 0.5, trust=checks)

    assert third.outcome == "delivered", third
    wait_for(lambda: pane.submitted() == [b"[ps-health #7] gamma: spawn t2 failed"], what="only the third submitted")


def test_a_draft_under_an_empty_first_line_is_never_sent_with_the_prompt(conn, agent, reactors, tmux_server):
    # The user's draft starts with a line break: the input line is empty and the draft shows on the row under it.
    # Typed beside it, the prompt went out with the draft as one message; now it waits until the box is empty.
    fast(conn, prompt_defer_delay="1 second")
    pane = agent("alpha", "--draft", "my half-written draft DO NOT SEND")
    reactors.start()
    prompt_id = failed_spawn(conn, "alpha")
    wait_for(lambda: "deferred" in _action(conn, prompt_id), what="the prompt deferred")
    assert "the input line holds text the reactor did not type" in _action(conn, prompt_id)
    assert pane.received() == b""
    tmux_server.run("send-keys", "-t", pane.target, "C-u")  # the user drops the draft
    row = delivered(conn, prompt_id, timeout=20)
    assert pane.submitted() == [sanitise(row["text"]).encode()]
