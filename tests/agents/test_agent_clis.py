"""The reactor's tmux typing against the real Claude Code, Codex CLI and Gemini CLI, offline.

Each CLI runs in a real tmux pane and talks to the stand-in (tests/agents/standin.py), which
records exactly what reached the model.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from reactor.delivery import Dispatcher, Job
from reactor.tmux import Tmux
from tests.agents.standin import Reply, Usage
from tests.support import wait_for

CLIS = ["claude", "codex", "gemini"]
SUBMIT_DELAY = 0.5  # the reactor's default submit_delay setting


def prompt(marker: str) -> str:
    """A prompt shaped like the reactor's, with characters a shell or tmux would mangle."""
    return (f"ps-health {marker}: spawn task-7 has had no output for 15 min (since 10:42). "
            f"Check it, then answer with: ps-health answer 42 'checked' \"ok\" — café, 日本, #{{pane_id}} $HOME `x`;")


def turns_with(standin, text: str) -> list:
    """Main-turn requests that carried `text` as one of their user text parts."""
    return [r for r in standin.turns() if text in r.user_texts()]


def settled(agent, standin) -> None:
    """Wait until every streamed reply ended and the CLI shows its input box again."""
    wait_for(lambda: all(r.finished for r in standin.turns()), timeout=60, what="replies to end")
    agent.wait_ready()


@pytest.mark.parametrize("cli", CLIS)
def test_typed_prompt_reaches_the_model_once_and_unmangled(cli, launch, typist, standin):
    agent = launch(cli)
    text = prompt(f"check-{uuid.uuid4().hex[:8]}")

    outcome = typist(agent).deliver(agent.target, text, SUBMIT_DELAY)

    assert outcome.outcome == "delivered", outcome
    wait_for(lambda: turns_with(standin, text), timeout=30, what="the prompt at the model")
    settled(agent, standin)
    [request] = turns_with(standin, text)
    assert request.user_texts().count(text) == 1


class TimedTmux(Tmux):
    """The reactor's tmux client, noting when it starts typing."""

    typed_at: float | None = None

    def send_literal(self, target: str, text: str) -> None:
        self.typed_at = self.typed_at or time.monotonic()
        super().send_literal(target, text)


@pytest.mark.parametrize("cli", CLIS)
def test_busy_gate_waits_out_a_streamed_reply(cli, launch, standin):
    agent = launch(cli)
    tmux = TimedTmux(socket_name=agent.server.name)
    dispatcher = Dispatcher(tmux, poll_interval=0.2)
    try:
        standin.reply(Reply("A reply streamed in pieces while the reactor has a prompt to type. " * 2,
                            chunks=12, delay=0.4, wait=1.0))
        first = prompt(f"first-{uuid.uuid4().hex[:8]}")
        assert tmux.deliver(agent.target, first, SUBMIT_DELAY).outcome == "delivered"
        wait_for(lambda: turns_with(standin, first), timeout=30, what="the first prompt at the model")
        tmux.typed_at = None
        second = prompt(f"second-{uuid.uuid4().hex[:8]}")
        done = threading.Event()
        outcomes = []
        dispatcher.submit(Job("p2", agent.target, second, submit_delay=SUBMIT_DELAY, idle_seconds=2.0,
                              max_defer=60, on_done=lambda job, outcome: (outcomes.append(outcome), done.set())))
        assert done.wait(90), "the dispatcher never typed the second prompt"

        [outcome] = outcomes
        assert outcome.outcome == "delivered" and "sent anyway" not in outcome.detail, outcome
        [streamed] = turns_with(standin, first)
        assert streamed.finished is not None and tmux.typed_at > streamed.finished
        wait_for(lambda: turns_with(standin, second), timeout=30, what="the second prompt at the model")
        settled(agent, standin)
        assert len(turns_with(standin, second)) == 1
    finally:
        dispatcher.stop(5)
        tmux.close()


# ---- reset and context usage ---------------------------------------------------------------

def _claude_settings(tmp: Path) -> dict:
    # The statusline command gets Claude Code's JSON on stdin; keep the latest copy.
    out = tmp / "statusline.json"
    return {"statusLine": {"type": "command",
                           "command": f"cat > {out}.part && mv {out}.part {out} && echo ok"}}


def _claude_usage(agent, tmp: Path) -> dict:
    data = json.loads((tmp / "statusline.json").read_text())
    return {"session": data["session_id"], "transcript": data["transcript_path"],
            "usage": data["context_window"]["current_usage"]}


def _codex_usage(agent, tmp: Path) -> dict:
    rollouts = sorted((agent.home / ".codex" / "sessions").rglob("rollout-*.jsonl"), key=lambda p: p.stat().st_mtime)
    counts = [json.loads(line)["payload"] for line in rollouts[-1].read_text().splitlines()
              if '"token_count"' in line]
    last = counts[-1]["info"]["last_token_usage"] if counts and counts[-1].get("info") else None
    return {"session": rollouts[-1].name, "transcript": str(rollouts[-1]), "usage": last}


def _gemini_usage(agent, tmp: Path) -> dict:
    chats = sorted((agent.home / ".gemini" / "tmp").rglob("chats/session-*.jsonl"), key=lambda p: p.stat().st_mtime)
    records = [json.loads(line) for line in chats[-1].read_text().splitlines()]
    tokens = [r["tokens"] for r in records if r.get("type") == "gemini" and r.get("tokens")]
    return {"session": records[0].get("sessionId"), "transcript": str(chats[-1]),
            "usage": tokens[-1] if tokens else None}


def _expected(cli: str, u: Usage) -> dict:
    """How each CLI records the stand-in's usage figures."""
    prompt_tokens = u.input + u.cache_write + u.cache_read
    if cli == "claude":
        return {"input_tokens": u.input, "cache_creation_input_tokens": u.cache_write,
                "cache_read_input_tokens": u.cache_read, "output_tokens": u.output}
    if cli == "codex":
        return {"input_tokens": prompt_tokens, "cached_input_tokens": u.cache_read, "cache_write_input_tokens": 0,
                "output_tokens": u.output, "reasoning_output_tokens": 0, "total_tokens": prompt_tokens + u.output}
    return {"input": prompt_tokens, "cached": u.cache_read, "output": u.output, "thoughts": 0, "tool": 0,
            "total": prompt_tokens + u.output}


USAGE = {"claude": _claude_usage, "codex": _codex_usage, "gemini": _gemini_usage}
SETTINGS = {
    "claude": _claude_settings,
    # Codex shows context figures in its footer only when asked to.
    "codex": lambda tmp: {"toml": 'status_line = ["model-with-reasoning", "run-state", "context-used", '
                                  '"context-window-size"]'},
    "gemini": lambda tmp: {"ui": {"theme": "Default", "footer": {"items": ["model-name", "context-used",
                                                                           "session-id"]}}},
}


def _usage_matches(cli, agent, tmp, usage: Usage, previous: dict | None = None):
    """The CLI's own record of the latest turn, once it shows the stand-in's figures."""
    try:
        seen = USAGE[cli](agent, tmp)
    except (OSError, ValueError, IndexError, KeyError):
        return None
    if seen["usage"] != _expected(cli, usage):
        return None
    if previous is not None and seen["session"] == previous["session"]:
        return None
    return seen


@pytest.mark.parametrize("cli", CLIS)
def test_reset_starts_a_fresh_conversation_and_usage_follows(cli, launch, typist, standin, tmp_path):
    agent = launch(cli, SETTINGS[cli](tmp_path))
    tmux = typist(agent)
    before, after = Usage(3000, 40000, 2000, 150), Usage(1200, 0, 300, 40)
    standin.reply(Reply("First answer.", usage=before), Reply("Answer in the fresh conversation.", usage=after))
    marker = f"old-{uuid.uuid4().hex[:8]}"
    first = prompt(marker)
    assert tmux.deliver(agent.target, first, SUBMIT_DELAY).outcome == "delivered"
    wait_for(lambda: turns_with(standin, first), timeout=30, what="the first prompt at the model")
    settled(agent, standin)
    old = wait_for(lambda: _usage_matches(cli, agent, tmp_path, before), timeout=20,
                   what=f"{cli} to record the first reply's usage")

    assert tmux.deliver(agent.target, agent.profile.reset, SUBMIT_DELAY).outcome == "delivered"
    agent.wait(lambda s: marker not in s and agent.profile.ready.search(s), timeout=30,
               what="the reset to clear the screen")
    second = prompt(f"new-{uuid.uuid4().hex[:8]}")
    assert tmux.deliver(agent.target, second, SUBMIT_DELAY).outcome == "delivered"
    wait_for(lambda: turns_with(standin, second), timeout=30, what="the second prompt at the model")
    settled(agent, standin)

    [fresh] = turns_with(standin, second)
    assert not [t for t in fresh.user_texts() if marker in t], "the reset left the earlier turn in the context"
    new = wait_for(lambda: _usage_matches(cli, agent, tmp_path, after, old), timeout=20,
                   what=f"{cli} to record the fresh conversation's usage")
    assert new["transcript"] != old["transcript"]
