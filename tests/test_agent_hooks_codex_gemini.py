"""Codex CLI's and Gemini CLI's hooks reach the database through the host spool and the reactor, the session
follows /new and /clear, and the reactor reads the context from each agent's own file (a Codex rollout, a
Gemini chat file). Payloads as the real CLIs send them (Codex CLI 0.171.0, Gemini CLI 0.61.0)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.claude_code import Agent
from tests.support import wait_for

SAMPLES = Path(__file__).parent / "fixtures" / "agent_transcripts"


@pytest.fixture
def agent(reactors, tmux_server, tmp_path) -> Agent:
    """An agent of project shop in a live pane of the test's tmux server."""
    return Agent(reactors.spool, pane=tmux_server.recorder().target, cwd=str(tmp_path / "shop"))


def hook(agent: Agent, name: str, event: str, **fields) -> None:
    """`ps-health hook EVENT --agent NAME` with a payload shaped as that CLI sends it."""
    payload = {"session_id": agent.session_id, "transcript_path": agent.transcript, "cwd": agent.cwd,
               "hook_event_name": event, **fields}
    res = agent.run("hook", event, "--agent", name, payload=payload)
    assert res.returncode == 0 and res.stdout == b"" and res.stderr == b"", res


def session(conn) -> dict | None:
    return conn.execute("SELECT * FROM ps_sessions WHERE project = 'shop'").fetchone()


def usage(conn) -> tuple | None:
    s = session(conn)
    return s and (s["estimated_tokens_used"], s["estimated_tokens_total"], s["transcript_path"])


def rollout(path: Path, input_tokens: int) -> str:
    """A Codex rollout file whose latest reply read input_tokens of a 258,400-token window."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (SAMPLES / "codex-rollout.jsonl").read_text()
    text = text.replace('"input_tokens":1000,', f'"input_tokens":{input_tokens},')
    path.write_text(text)
    return str(path)


def test_codex_hooks_register_the_session_and_its_rollout_file_gives_the_context_also_after_new(
        conn, reactors, agent, tmp_path):
    reactors.start()
    agent.transcript = rollout(tmp_path / "sessions" / "rollout-a.jsonl", 3000)
    hook(agent, "codex", "SessionStart", model="gpt-5.1-codex", permission_mode="default", source="startup")
    hook(agent, "codex", "UserPromptSubmit", turn_id="t1", prompt="go on")
    s = wait_for(lambda: session(conn), what="the session registered by SessionStart")
    assert (s["agent"], s["tmux_target"], s["session_id"]) == ("codex", agent.pane, agent.session_id)
    assert wait_for(lambda: usage(conn) == (3000, 258_400, agent.transcript) and usage(conn),
                    what="the context read from the rollout")

    # /new: a new thread, its SessionStart at its first prompt with the new rollout file
    agent.session_id, agent.transcript = "thread-2", rollout(tmp_path / "sessions" / "rollout-b.jsonl", 1200)
    hook(agent, "codex", "SessionStart", model="gpt-5.1-codex", permission_mode="default", source="startup")
    hook(agent, "codex", "Stop", turn_id="t2", last_assistant_message="Done.")
    assert wait_for(lambda: usage(conn) == (1200, 258_400, agent.transcript) and usage(conn),
                    what="the context of the new thread")
    assert session(conn)["ended_at"] is None


def test_gemini_hooks_follow_clear_and_its_chat_file_gives_the_context(conn, reactors, agent, tmp_path):
    proc = reactors.start()
    chats = tmp_path / "chats"
    chats.mkdir()
    agent.transcript = str(chats / "session-a.jsonl")
    Path(agent.transcript).write_bytes((SAMPLES / "gemini-chat.jsonl").read_bytes())
    hook(agent, "gemini", "SessionStart", timestamp="2026-11-30T02:56:56.689Z", source="startup")
    hook(agent, "gemini", "BeforeAgent", timestamp="2026-11-30T02:57:20.208Z", prompt="go on")
    hook(agent, "gemini", "PreCompress", trigger="auto")  # fires on ordinary turns: no compaction
    hook(agent, "gemini", "AfterAgent", prompt="go on", prompt_response="Done.", stop_hook_active=False)
    s = wait_for(lambda: session(conn), what="the session registered by SessionStart")
    assert (s["agent"], s["tmux_target"]) == ("gemini", agent.pane)
    assert wait_for(lambda: usage(conn) == (1000, 1_048_576, agent.transcript) and usage(conn),
                    what="the context read from the chat file, against the profile's window")

    hook(agent, "gemini", "SessionEnd", reason="clear")
    agent.session_id, agent.transcript = "chat-2", str(chats / "session-b.jsonl")
    hook(agent, "gemini", "SessionStart", source="clear")
    Path(agent.transcript).write_text(json.dumps({"id": "r1", "type": "gemini", "content": "ok",
                                                  "tokens": {"input": 4000, "output": 20, "cached": 0}}) + "\n")
    assert wait_for(lambda: usage(conn) == (4000, 1_048_576, agent.transcript) and usage(conn),
                    what="the context of the conversation after /clear")
    assert session(conn)["ended_at"] is None, "a /clear does not end the session"
    assert conn.execute("SELECT count(*) AS n FROM health_checks WHERE subject = 'compaction'").fetchone()["n"] == 0

    hook(agent, "gemini", "PreCompress", trigger="manual")
    hook(agent, "gemini", "SessionEnd", reason="exit")
    wait_for(lambda: session(conn)["ended_at"] is not None, what="the session ended by SessionEnd")
    assert conn.execute("SELECT count(*) AS n FROM health_checks WHERE subject = 'compaction'").fetchone()["n"] == 1
    assert "refused" not in proc.text()


def test_a_hook_of_an_unknown_agent_says_so_and_never_fails_the_agent(reactors, agent):
    res = agent.run("hook", "SessionStart", "--agent", "goose", payload={"session_id": "x"})
    assert (res.returncode, res.stdout) == (0, b"")
    assert b"unknown agent 'goose' (known: claude, codex, gemini)" in res.stderr
