"""`ps-health hook EVENT [--agent A]`: one agent CLI hook call becomes one fact in the host spool.

Claude Code, Codex CLI and Gemini CLI wait for a hook, may inject its stdout into the model's context,
and take some exit codes as "block the agent": so a hook prints nothing on stdout and always exits 0,
at once. The agent is named by --agent (claude, the default, codex or gemini): their events differ.
"""

from __future__ import annotations

import json
import sys

from reactor.agent import spool
from reactor.agent.spool import clip

# Claude Code's subagent tool: "Task" in earlier versions, "Agent" since 2.1.
SUBAGENT_TOOLS = ("Task", "Agent")
# Per agent CLI: the events setup installs, with the matcher of each (None: no matcher).
AGENT_EVENTS = {
    "claude": {"SessionStart": None, "UserPromptSubmit": None, "Stop": None, "SubagentStop": None,
               "PreCompact": None, "SessionEnd": None, "PreToolUse": "Task|Agent", "PostToolUse": "Task|Agent",
               "PostToolUseFailure": "Task|Agent"},
    # Codex starts a new thread's SessionStart at its first prompt (also after /new); it has no
    # SessionEnd for /new, and its subagent events are not reported.
    "codex": {"SessionStart": None, "UserPromptSubmit": None, "Stop": None, "PreCompact": None},
    # Gemini's PreCompress with trigger "auto" fires on ordinary turns: only a manual one is a compaction.
    "gemini": {"SessionStart": "*", "SessionEnd": "*", "BeforeAgent": "*", "AfterAgent": "*", "PreCompress": "*"},
}
EVENTS = AGENT_EVENTS["claude"]
_TURNS = ("UserPromptSubmit", "Stop", "BeforeAgent", "AfterAgent")


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def fact_for(event: str, payload: dict, agent: str = "claude") -> tuple[str, dict] | None:
    """(kind, data) of the fact a hook call reports, or None when it reports nothing ps-health uses."""
    if event not in AGENT_EVENTS.get(agent, {}):
        return None
    if event == "SessionStart":
        return "session_start", {"session_id": clip(payload.get("session_id"), 255),
                                 "transcript_path": clip(payload.get("transcript_path")),
                                 "model": clip(payload.get("model"), 255), "agent": agent}
    if event in _TURNS:
        return "turn", {}
    if event == "SubagentStop":
        return "subagent_stop", {"agent_id": clip(payload.get("agent_id"), 255)}
    if event in ("PreCompact", "PreCompress"):
        if event == "PreCompress" and payload.get("trigger") != "manual":
            return None
        return "compaction", {"trigger": clip(payload.get("trigger"), 40)}
    if event == "SessionEnd":
        return "session_end", {"reason": clip(payload.get("reason"), 64)}
    if payload.get("tool_name") not in SUBAGENT_TOOLS:
        return None
    return _spawn_fact(event, payload)


def _spawn_fact(event: str, payload: dict) -> tuple[str, dict]:
    """Claude Code's subagent tool: started, launched into the background, ended."""
    task_id = clip(payload.get("tool_use_id"), 255)
    if event == "PreToolUse":
        tool_input = _dict(payload.get("tool_input"))
        return "spawn_start", {"task_id": task_id,
                               "task_type": clip(tool_input.get("subagent_type"), 100) or "general-purpose",
                               "description": clip(tool_input.get("description"), 1000)}
    if event == "PostToolUseFailure":
        return "spawn_end", {"task_id": task_id, "interrupted": payload.get("is_interrupt") is True,
                             "error": clip(payload.get("error"), 2000) or "the subagent tool failed"}
    response = _dict(payload.get("tool_response"))
    status = response.get("status")
    if status == "async_launched":
        return "spawn_launch", {"task_id": task_id, "output_file": clip(response.get("outputFile"))}
    error = None
    if response.get("is_error") is True or status not in (None, "completed"):
        error = f"the subagent ended with status {clip(str(status), 40)}"
    return "spawn_end", {"task_id": task_id, "error": error, "interrupted": False}


def run(event: str, project: str | None, raw: bytes, environ, agent: str | None = None) -> int:
    """Record the fact of one hook call; never raises, never writes stdout, always 0."""
    try:
        agent = agent or "claude"
        if agent not in AGENT_EVENTS:
            raise ValueError(f"unknown agent {agent[:40]!r} (known: {', '.join(AGENT_EVENTS)})")
        payload = json.loads(raw) if raw.strip() else {}
        if not isinstance(payload, dict):
            raise ValueError("hook input is not a JSON object")
        fact = fact_for(event, payload, agent)
        if fact is not None:
            name = spool.project_name(project, environ, clip(payload.get("cwd")))
            spool.emit(environ, fact[0], name, fact[1], named=bool(project))
    except Exception as exc:  # bad input or an unusable spool: say so where the agent logs it
        print(f"ps-health hook {event}: {exc}", file=sys.stderr)
    return 0
