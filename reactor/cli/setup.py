"""`ps-health setup claude-code|codex|gemini`: install (or remove) ps-health's hooks in an agent CLI's settings."""

from __future__ import annotations

import os
from pathlib import Path

from reactor.agent import setup_claude
from reactor.cli.util import command

# What each agent CLI needs to hear after the change was written.
_WROTE = {
    "claude-code": "Claude Code sessions register at their next start or /clear; `ps-health reactor` on this "
                   "host forwards what they report.",
    "codex": "Codex runs new or changed hooks only after you trust them, once: at its next start it shows "
             "\"Hooks need review\" - choose \"Trust all and continue\" (or review them with /hooks). A Codex "
             "session registers at its first prompt, and after /new at the first prompt of the new thread; "
             "`ps-health reactor` on this host forwards what it reports. So that the reactor also sees a "
             "reply streaming, add \"run-state\" to [tui] status_line in ~/.codex/config.toml, e.g. "
             "status_line = [\"model-with-reasoning\", \"run-state\", \"context-used\"].",
    "gemini": "Gemini CLI sessions register at their next start or /clear; `ps-health reactor` on this host "
              "forwards what they report.",
}


def register(sub) -> None:
    p = command(sub, "setup", "install ps-health into an agent CLI",
                "Install ps-health into an agent CLI, so that the agent reports its session, subagents, "
                "turns and context by itself.")
    agents = p.add_subparsers(dest="agent", metavar="AGENT", required=True)
    c = command(agents, "claude-code", "merge ps-health's statusLine and hooks into Claude Code's settings.json",
                "Merge ps-health's statusLine and hooks (SessionStart, UserPromptSubmit, Stop, PreToolUse / "
                "PostToolUse / PostToolUseFailure of the subagent tool, SubagentStop, PreCompact, SessionEnd) "
                "into Claude Code's settings.json, keeping everything else there, and print the change as a "
                "diff. Running it twice changes nothing; --remove takes out exactly what it added. The "
                "commands use the absolute path of this ps-health. Your own statusLine is kept unless "
                "--replace-statusline. Claude Code picks the change up while running; a session registers "
                "at its next start or /clear. The reactor on this host forwards what the hooks record.",
                ["ps-health setup claude-code",
                 "ps-health setup claude-code --scope project --project shop --dry-run",
                 "ps-health setup claude-code --remove"],
                func=_setup)
    _common(c, "~/.claude/settings.json", "./.claude/settings.json")
    c.add_argument("--replace-statusline", action="store_true",
                   help="replace a statusLine that is not ps-health's")
    x = command(agents, "codex", "merge ps-health's hooks into Codex CLI's hooks.json",
                "Merge ps-health's hooks (SessionStart, UserPromptSubmit, Stop, PreCompact) into Codex CLI's "
                "~/.codex/hooks.json, keeping everything else there, and print the change as a diff. Codex "
                "runs them only after you trust them once (its \"Hooks need review\" menu at start, or "
                "/hooks). A session then registers at its first prompt with its pane and rollout file, "
                "follows /new, and each turn is a heartbeat; the reactor reads the context figures from the "
                "rollout file. Running it twice changes nothing; --remove takes out exactly what it added.",
                ["ps-health setup codex", "ps-health setup codex --remove"], func=_setup)
    _common(x, "~/.codex/hooks.json", "./.codex/hooks.json (loaded when Codex trusts the project)")
    g = command(agents, "gemini", "merge ps-health's hooks into Gemini CLI's settings.json",
                "Merge ps-health's hooks (SessionStart, SessionEnd, BeforeAgent, AfterAgent, PreCompress) "
                "into Gemini CLI's ~/.gemini/settings.json, keeping everything else there, and print the "
                "change as a diff. From the next start or /clear a session registers with its pane and chat "
                "file, each turn is a heartbeat, a manual /compress is recorded; the reactor reads the "
                "context figures from the chat file. Running it twice changes nothing; --remove takes out "
                "exactly what it added.",
                ["ps-health setup gemini", "ps-health setup gemini --remove"], func=_setup)
    _common(g, "~/.gemini/settings.json", "./.gemini/settings.json")


def _common(p, user: str, project: str) -> None:
    p.add_argument("--project", help="record every session under this project (default: the name of the "
                                     "folder the agent runs in)")
    p.add_argument("--scope", choices=["user", "project"], default="user",
                   help=f"user: {user} (every session); project: {project} (default: user)")
    p.add_argument("--remove", action="store_true", help="take ps-health's entries out again")
    p.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")


def _setup(args, cfg) -> int:
    agent = setup_claude.AGENTS[args.agent]
    path = setup_claude.settings_path(args.scope, Path.home(), Path(os.getcwd()), agent)
    before, text = setup_claude.load(path)
    exe = "ps-health" if args.remove else setup_claude.executable()
    result = setup_claude.plan(path, before, exe, args.project, args.remove,
                               getattr(args, "replace_statusline", False), agent)
    for note in result.notes:
        print(f"note: {note}")
    if not result.changed:
        print(f"{path}: nothing to change" + ("" if args.remove else " (ps-health is set up)"))
        return 0
    print(result.diff(text), end="")
    if args.dry_run:
        print(f"dry run: {path} not written")
        return 0
    setup_claude.write(result)
    if args.remove:
        print(f"removed ps-health from {path}")
    else:
        print(f"wrote {path}. {_WROTE[args.agent]}")
    return 0
