"""`ps-health setup claude-code`: install (or remove) the statusline and hooks in Claude Code's settings."""

from __future__ import annotations

import os
from pathlib import Path

from reactor import setup_claude
from reactor.cliutil import command


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
                func=_claude_code)
    c.add_argument("--project", help="record every session under this project (default: the name of the "
                                     "folder Claude Code runs in)")
    c.add_argument("--scope", choices=["user", "project"], default="user",
                   help="user: ~/.claude/settings.json (every session); project: ./.claude/settings.json "
                        "(default: user)")
    c.add_argument("--remove", action="store_true", help="take ps-health's entries out again")
    c.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    c.add_argument("--replace-statusline", action="store_true",
                   help="replace a statusLine that is not ps-health's")


def _claude_code(args, cfg) -> int:
    path = setup_claude.settings_path(args.scope, Path.home(), Path(os.getcwd()))
    before, text = setup_claude.load(path)
    exe = "ps-health" if args.remove else setup_claude.executable()
    result = setup_claude.plan(path, before, exe, args.project, args.remove, args.replace_statusline)
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
        print(f"wrote {path}. Claude Code sessions register at their next start or /clear; "
              "`ps-health reactor` on this host forwards what they report.")
    return 0
