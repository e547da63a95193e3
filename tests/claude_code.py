"""What Claude Code 2.1 passes to its hooks and statusline, as captured from the real binary, and a
way to run `ps-health hook` / `ps-health statusline` the way Claude Code does (a process per call)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import ROOT


@dataclass
class Agent:
    """One Claude Code session in a pane: its hook calls become `ps-health` processes."""

    spool: Path
    cwd: str = "/home/me/shop"
    pane: str | None = "%5"
    host: str = "host-a"
    session_id: str = "39c128b0-86a6-44e3-a937-dc73de3da3a9"
    transcript: str = "/home/me/.claude/projects/-home-me-shop/39c128b0-86a6-44e3-a937-dc73de3da3a9.jsonl"
    calls: int = field(default=0)

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PS_HEALTH_", "PG", "TMUX"))}
        env.update(PYTHONPATH=str(ROOT), PS_HEALTH_SPOOL=str(self.spool), PS_HEALTH_HOST=self.host,
                   CLAUDE_PROJECT_DIR=self.cwd, CLAUDECODE="1")
        if self.pane:
            env["TMUX_PANE"] = self.pane
        return env

    def run(self, *args: str, payload: dict | str | bytes) -> subprocess.CompletedProcess:
        """`ps-health ARGS` through the console script's entry point, payload on stdin."""
        data = payload if isinstance(payload, bytes) else (
            payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.calls += 1
        return subprocess.run([sys.executable, "-m", "reactor.cli.entry", *args], input=data, capture_output=True,
                              env=self.env(), cwd=ROOT, timeout=30)

    def hook(self, event: str, *extra: str, **fields) -> subprocess.CompletedProcess:
        res = self.run("hook", event, *extra, payload=self.payload(event, **fields))
        assert res.returncode == 0 and res.stdout == b"", f"hook {event}: rc {res.returncode} {res.stdout!r}"
        return res

    def base(self) -> dict:
        return {"session_id": self.session_id, "transcript_path": self.transcript, "cwd": self.cwd,
                "prompt_id": "f5d1566d-294a-4f3a-b25e-93084fc38ad1", "permission_mode": "default"}

    def payload(self, event: str, **fields) -> dict:
        return {**self.base(), "hook_event_name": event, **fields}

    # ---- the events, shaped as Claude Code 2.1.197 sends them

    def session_start(self, source: str = "startup") -> None:
        self.hook("SessionStart", source=source, model="claude-opus-4-8[1m]")

    def clear(self, session_id: str, transcript: str) -> None:
        """/clear: SessionEnd of the old conversation, SessionStart of the new one."""
        self.hook("SessionEnd", reason="clear")
        self.session_id, self.transcript = session_id, transcript
        self.session_start("clear")

    def prompt(self, text: str = "go on") -> None:
        self.hook("UserPromptSubmit", prompt=text)

    def stop(self) -> None:
        self.hook("Stop", stop_hook_active=False, last_assistant_message="Done.", background_tasks=[])

    def agent_start(self, tool_use_id: str, description: str = "Research the thing",
                    subagent_type: str = "general-purpose", background: bool = False, tool: str = "Agent") -> None:
        tool_input = {"description": description, "prompt": "Find out X", "subagent_type": subagent_type}
        if background:
            tool_input["run_in_background"] = True
        self.hook("PreToolUse", tool_name=tool, tool_input=tool_input, tool_use_id=tool_use_id)

    def agent_done(self, tool_use_id: str, agent_id: str = "a65065b0003182e23") -> None:
        self.hook("SubagentStop", agent_id=agent_id, agent_type="general-purpose", stop_hook_active=False,
                  last_assistant_message="Sub done.", background_tasks=[])
        self.hook("PostToolUse", tool_name="Agent", tool_use_id=tool_use_id, duration_ms=77,
                  tool_input={"description": "Research the thing", "prompt": "Find out X"},
                  tool_response={"status": "completed", "prompt": "Find out X", "agentId": agent_id,
                                 "agentType": "general-purpose", "content": [{"type": "text", "text": "Sub done."}],
                                 "totalDurationMs": 76, "totalTokens": 1020, "totalToolUseCount": 0})

    def agent_failed(self, tool_use_id: str, error: str, interrupt: bool = False) -> None:
        self.hook("PostToolUseFailure", tool_name="Agent", tool_use_id=tool_use_id, error=error,
                  is_interrupt=interrupt, duration_ms=2,
                  tool_input={"description": "Bad type", "prompt": "Find out X", "subagent_type": "no-such-agent"})

    def agent_launched(self, tool_use_id: str, agent_id: str, output_file: str) -> None:
        self.hook("PostToolUse", tool_name="Agent", tool_use_id=tool_use_id, duration_ms=3,
                  tool_input={"description": "Background one", "prompt": "Find out Y", "run_in_background": True},
                  tool_response={"isAsync": True, "status": "async_launched", "agentId": agent_id,
                                 "description": "Background one", "prompt": "Find out Y", "outputFile": output_file,
                                 "canReadOutputFile": True})

    def subagent_stop(self, agent_id: str) -> None:
        self.hook("SubagentStop", agent_id=agent_id, agent_type="general-purpose", stop_hook_active=False,
                  last_assistant_message="Bg sub done.")

    def compact(self, trigger: str = "manual") -> None:
        self.hook("PreCompact", trigger=trigger, custom_instructions=None)

    def end(self, reason: str = "prompt_input_exit") -> None:
        self.hook("SessionEnd", reason=reason)

    def statusline(self, percent: int | None, window: int = 1_000_000, *extra: str) -> str:
        """Run the statusline; returns the line it printed (it must exit 0)."""
        payload = {**self.base(), "model": {"id": "claude-opus-4-8[1m]", "display_name": "Opus 4.8 (1M context)"},
                   "workspace": {"current_dir": self.cwd, "project_dir": self.cwd, "added_dirs": []},
                   "version": "2.1.197",
                   "context_window": {"context_window_size": window, "used_percentage": percent,
                                      "remaining_percentage": None if percent is None else 100 - percent}}
        res = self.run("statusline", *extra, payload=payload)
        assert res.returncode == 0, res.stderr
        return res.stdout.decode().strip()
