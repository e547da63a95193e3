"""The reactor against the real Claude Code, Codex CLI and Gemini CLI, offline: each CLI runs in a real tmux
pane beside a real reactor process and a real PostgreSQL, and talks to the stand-in (tests/agents/standin.py),
which records exactly what reached the model.

For each CLI: a prompt is submitted once and unmangled; the busy gate waits out a streamed reply; nothing is
typed into a permission dialog (the scripted shell command never runs) and the prompt follows once the dialog
is answered; 3,000 characters arrive whole, once; the handoff cycle's reset clears the conversation and the
context follows the agent into the fresh one; for Claude Code a subagent is a spawn that ends by itself.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from reactor.tmux.client import sanitise
from tests.agents.standin import Reply, Usage
from tests.reactor_proc import HOST, delivered, fast
from tests.support import wait_for

CLIS = ["claude", "codex", "gemini"]
# Codex shows a running turn while a reply streams only with run-state in its footer (as setup codex advises).
RUN_STATE = {"codex": {"toml": 'status_line = ["model-with-reasoning", "run-state", "context-used"]'}}
# A reply slow enough for the reactor to have something to wait for: 1 s to the first token, 6 s streaming.
STREAMED = Reply("A reply streamed in pieces while the reactor has a prompt to type. " * 3, chunks=12, delay=0.5,
                 wait=1.0)
# The context window each CLI measures against (Claude Code's statusline: Opus 5.5, 1M; Codex's rollout;
# Gemini's profile).
WINDOWS = {"claude": 1_000_000, "codex": 258_400, "gemini": 1_048_576}


def turns_with(standin, text: str, within: bool = False) -> list:
    """Main-turn requests that carried `text` as one of their user text parts (within: inside one)."""
    return [r for r in standin.turns() if text in r.user_texts() or within and any(text in t for t in r.user_texts())]


def at_model(standin, text: str, what: str, timeout: float = 30, within: bool = False) -> None:
    """Wait until a main turn carried `text` whole; else fail showing what the model got instead."""
    try:
        wait_for(lambda: turns_with(standin, text, within), timeout=timeout, what=what)
    except AssertionError as exc:
        got = [t[:80] + f"... ({len(t)} chars)" for r in standin.turns() for t in r.user_texts()][-4:]
        raise AssertionError(f"{exc}; the model got: {got}; expected {len(text)} chars: {text[:80]}...") from None


def settled(agent, standin) -> None:
    """Wait until every streamed reply ended and the CLI shows its input box again."""
    wait_for(lambda: all(r.finished for r in standin.turns()), timeout=60, what="replies to end")
    agent.wait_ready()


def project(agent) -> str:
    """The project of the CLI's session: the name of the folder it runs in (as its hooks name it)."""
    return agent.project.name


def register(conn, agent) -> str:
    """Register the CLI's pane as its project's session, as `ps-health session register` would."""
    conn.execute("SELECT ps_health.register_session(%s, 'cli', %s, %s)", (project(agent), agent.target, HOST))
    return project(agent)


def user_turn(agent, standin, text: str) -> None:
    """The person at the keyboard sends the agent a prompt: types it, presses Enter once it shows, and, as a person
    would, presses Enter again while the model got no new turn (a CLI on a busy machine may swallow an Enter typed
    right after text: Gemini CLI did, in two runs of this suite in five on a slow machine). Enter on an empty input
    line does nothing in these CLIs."""
    turns = len(standin.turns())
    agent.type(text)
    agent.wait(lambda screen: text in screen, what="the typed text")
    for _ in range(3):
        time.sleep(0.5)  # an Enter right after the text is swallowed by some CLIs
        agent.keys("Enter")
        try:
            wait_for(lambda: len(standin.turns()) > turns, timeout=5, what="the user's turn at the model")
            return
        except AssertionError:
            continue  # (Enter again)
    raise AssertionError(f"{agent.profile.name}: Enter pressed three times, 5 s apart, and the model got no turn; "
                         f"screen:\n{agent.screen()}")


def failed_spawn(conn, name: str, error: str = "boom") -> int:
    conn.execute("SELECT ps_health.start_spawn(%s, 'task-7', 'impl')", (name,))
    conn.execute("SELECT ps_health.finish_spawn(%s, 'task-7', 1, %s)", (name, error))
    return conn.execute("SELECT max(id) AS id FROM ps_health.prompts WHERE project = %s", (name,)).fetchone()["id"]


def action(conn, prompt_id: int) -> str:
    return conn.execute("SELECT string_agg(c.action_taken, ' | ') AS a FROM ps_health.prompt_items i "
                        "JOIN ps_health.health_checks c ON c.id = i.check_id WHERE i.prompt_id = %s",
                        (prompt_id,)).fetchone()["a"] or ""


# ---- typing: once, unmangled, never while busy, never into a dialog, long text whole --------------

@pytest.mark.parametrize("cli", CLIS)
def test_a_prompt_is_submitted_once_and_unmangled(cli, launch, conn, reactors, standin):
    fast(conn)
    agent = launch(cli)
    name = register(conn, agent)
    reactors.start()
    # text a shell or tmux would mangle, from an agent's own error line
    prompt_id = failed_spawn(conn, name, "quote's \"dq\" — café, 日本, #{pane_id} $HOME `x` \\n;")
    text = sanitise(delivered(conn, prompt_id, timeout=30)["text"])
    at_model(standin, text, "the prompt at the model")
    settled(agent, standin)
    [request] = turns_with(standin, text)
    assert request.user_texts().count(text) == 1


@pytest.mark.parametrize("cli", CLIS)
def test_the_busy_gate_waits_out_a_streamed_reply(cli, launch, conn, reactors, standin):
    fast(conn, idle_seconds="1", max_defer="2 minutes")
    agent = launch(cli, RUN_STATE.get(cli))
    name = register(conn, agent)
    reactors.start()
    standin.reply(STREAMED)
    user_turn(agent, standin, f"tell me a long story {uuid.uuid4().hex[:6]}")
    wait_for(lambda: standin.turns(), timeout=30, what="the user's turn at the model")
    prompt_id = failed_spawn(conn, name)
    marker = f"[ps-health #{prompt_id}]"
    seen_while_busy = []

    def watch() -> None:  # the marker must not show on screen while the reply streams
        while not standin.turns()[0].finished:
            if marker in agent.screen():
                seen_while_busy.append(agent.screen())
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    row = delivered(conn, prompt_id, timeout=90)
    watcher.join()
    text = sanitise(row["text"])
    assert not seen_while_busy, f"typed while the reply streamed:\n{seen_while_busy[0]}"
    assert "sent anyway" not in row["detail"]
    at_model(standin, text, "the prompt at the model")
    assert turns_with(standin, text)[0].received > standin.turns()[0].finished
    settled(agent, standin)
    assert len(turns_with(standin, text)) == 1


@pytest.mark.parametrize("cli", CLIS)
def test_nothing_is_typed_into_a_permission_dialog_and_the_prompt_follows_its_answer(
        cli, launch, conn, reactors, standin, tmp_path):
    fast(conn, prompt_defer_delay="1 second")
    agent = launch(cli)
    name = register(conn, agent)
    reactors.start()
    ran = tmp_path / "ran"
    standin.reply(Reply("I will run it.", shell=f"touch {ran}"))
    user_turn(agent, standin, "please run the command")
    agent.wait(lambda s: agent.profile.dialog.search(s), timeout=30, what="the permission dialog")
    prompt_id = failed_spawn(conn, name)
    wait_for(lambda: "deferred" in action(conn, prompt_id), timeout=30, what="the prompt deferred")
    assert "a dialog, menu or selection list is open" in action(conn, prompt_id)
    time.sleep(2)  # a few more tries of the reactor while the dialog stays open
    assert agent.profile.dialog.search(agent.screen()), "the dialog is still open: nothing answered it"
    assert not ran.exists()

    agent.keys("Escape")  # the person says no
    text = sanitise(delivered(conn, prompt_id, timeout=30)["text"])
    at_model(standin, text, "the prompt at the model")
    settled(agent, standin)
    assert len(turns_with(standin, text)) == 1
    assert not ran.exists(), "the scripted shell command ran: a tool was approved"


@pytest.mark.parametrize("cli", CLIS)
def test_long_text_arrives_whole_and_once(cli, launch, conn, reactors, standin):
    fast(conn)
    agent = launch(cli)
    name = register(conn, agent)
    for i in range(17):  # seventeen spawns found stalled in one sweep: one prompt about them (it lists ten)
        task = f"task-{i:02d}-" + "parser-refactoring-part-" * 8
        conn.execute("SELECT ps_health.start_spawn(%s, %s, 'research', 'Research one part', NULL, NULL, NULL, "
                     "now() - interval '20 minutes')", (name, task))
    conn.execute("SELECT ps_health.run_checks(now())")
    prompt_id = conn.execute("SELECT max(id) AS id FROM ps_health.prompts").fetchone()["id"]
    reactors.start()
    row = delivered(conn, prompt_id, timeout=60)
    text = sanitise(row["text"])
    assert len(text) >= 3000 and "pasted" in row["detail"]
    # Claude Code hands a paste to the model inside <pasted_content id="N">...</pasted_content>.
    at_model(standin, text, "the whole prompt at the model", within=True)
    settled(agent, standin)
    [request] = turns_with(standin, text, within=True)
    assert sum(t.count(text) for t in request.user_texts()) == 1


# ---- the handoff cycle and context, with ps-health set up in the CLI -------------------------------

def _trust_hooks(agent) -> None:
    """Codex runs hooks only once trusted: the person chooses "Trust all and continue" at its start."""
    agent.wait(lambda s: "Hooks need review" in s and "Trust all and continue" in s, timeout=60,
               what="Codex's hooks review")
    last = [0.0]

    def selected(screen: str) -> bool:
        if "› 2. Trust all" in screen:
            return True
        if "› 1." in screen and time.monotonic() - last[0] >= 2:  # a Down read before the dialog took keys is lost
            agent.keys("Down")
            last[0] = time.monotonic()
        return False

    agent.wait(selected, what="the trust option selected")
    agent.keys("Enter")


def _session(conn, name: str) -> dict | None:
    return conn.execute("SELECT * FROM ps_health.ps_sessions WHERE project = %s", (name,)).fetchone()


def _context(conn, name: str, tokens: int, window: int, not_path: str | None = None) -> dict | None:
    """The session once it shows `tokens` of `window` used (from a transcript other than not_path)."""
    s = _session(conn, name)
    if s is None or s["context_usage"] is None or s["transcript_path"] == not_path:
        return None
    return s if abs(float(s["context_usage"]) - tokens / window) < 0.006 else None


@pytest.mark.parametrize("cli", CLIS)
def test_the_handoff_cycle_resets_the_conversation_and_the_context_follows_the_agent(
        cli, launch, conn, reactors, standin, tmp_path):
    # The resume waits for a still screen after the reset, as it does with the default idle_seconds (5): an
    # agent clearing its conversation redraws its input box, and text typed meanwhile may be dropped.
    fast(conn, idle_seconds="1")
    agent = launch(cli, setup=True, answer=_trust_hooks if cli == "codex" else None)
    name = project(agent)
    reactors.start()
    before, after = Usage(20_000, 30_000, 0, 150), Usage(1_000, 9_000, 0, 40)  # 50,000 then 10,000 tokens
    standin.reply(Reply("First answer.", usage=before), Reply("Answer in the fresh conversation.", usage=after))
    first = f"let us start {uuid.uuid4().hex[:6]}"
    user_turn(agent, standin, first)  # the hooks register the session (Codex's at the first prompt)
    settled(agent, standin)
    window = WINDOWS[cli]
    old = wait_for(lambda: _context(conn, name, 50_000, window), timeout=30, what=f"{cli}'s context in the database")
    assert (old["agent"], old["tmux_target"]) == (cli, agent.target)

    conn.execute("SELECT ps_health.set_setting('auto_cycle', 'true', %s)", (name,))
    conn.execute("SELECT ps_health.report_handoff(%s, %s)", (name, str(tmp_path / "HANDOFF.md")))
    resume = wait_for(lambda: conn.execute("SELECT * FROM ps_health.prompts WHERE kind = 'resume' AND "
                                           "state = 'delivered'").fetchone(), timeout=60, what="the resume prompt")
    reset = conn.execute("SELECT detail FROM ps_health.prompts WHERE kind = 'reset'").fetchone()["detail"]
    assert f"({agent.profile.reset}, the reset command of agent profile '{cli}')" in reset
    text = sanitise(resume["text"])
    at_model(standin, text, "the resume prompt at the model")
    settled(agent, standin)
    [fresh] = turns_with(standin, text)
    assert not [t for t in fresh.user_texts() if first in t], "the reset left the earlier turn in the context"
    new = wait_for(lambda: _context(conn, name, 10_000, window, not_path=old["transcript_path"]), timeout=30,
                   what="the context of the fresh conversation, from its new file")
    assert new["session_id"] != old["session_id"]
    wait_for(lambda: _session(conn, name)["cycle_state"] == "complete", timeout=30, what="the cycle complete")


# ---- Claude Code's subagents ---------------------------------------------------------------------

def test_a_claude_code_subagent_is_a_spawn_that_ends_by_itself(launch, conn, reactors, standin):
    agent = launch("claude", setup=True)
    name = project(agent)
    reactors.start()
    standin.reply(Reply("Starting a subagent.", call={"name": "Agent", "input": {
                      "description": "Research the parser", "prompt": "Find what breaks in the parser",
                      "subagent_type": "general-purpose"}}),
                  Reply("The parser breaks on empty input."))  # the subagent's own turn
    user_turn(agent, standin, "research the parser with a subagent")
    spawn = wait_for(lambda: conn.execute("SELECT * FROM ps_health.active_spawns WHERE project = %s",
                                          (name,)).fetchone(), timeout=60, what="the subagent as a spawn")
    assert (spawn["task_type"], spawn["description"]) == ("general-purpose", "Research the parser")
    done = wait_for(lambda: (s := conn.execute("SELECT * FROM ps_health.active_spawns WHERE id = %s",
                                               (spawn["id"],)).fetchone())["status"] != "running" and s,
                    timeout=90, what="the subagent's end recorded")
    assert done["status"] == "completed" and done["completed_at"] is not None
    settled(agent, standin)

