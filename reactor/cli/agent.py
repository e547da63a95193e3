"""What a project supervisor runs: session, context, statusline, spawn, respond, handoff, instructions."""

from __future__ import annotations

import os
import socket
import sys

from reactor.agent import spool, statusline
from reactor.cli import util as cliutil
from reactor.cli.render import safe
from reactor.cli.util import call_one, command, print_json
from reactor.errors import BadInput


def register(sub) -> None:
    _register_session(sub)
    c = command(sub, "context", "report the context window usage of a project's session",
                "Record how full the session's context window is, as a percentage or as tokens used "
                "(of --tokens-total, default the session's window). Crossing the warning or critical "
                "line raises the check at once.",
                ["ps-health context myproj --percent 72",
                 "ps-health context --project myproj --tokens-used 150000 --tokens-total 200000"],
                func=_context)
    c.add_argument("project", nargs="?", metavar="PROJECT", help="the project (or use --project)")
    c.add_argument("--project", dest="project_flag", metavar="PROJECT", help="the project (same as PROJECT)")
    how = c.add_mutually_exclusive_group(required=True)
    how.add_argument("--percent", type=cliutil.percent, metavar="N", help="usage in percent, 0-100")
    how.add_argument("--tokens-used", type=cliutil.non_negative_int, metavar="N", help="tokens in the context")
    c.add_argument("--tokens-total", type=cliutil.positive_int, metavar="N", help="size of the context window")
    cliutil.add_json(c)

    s = command(sub, "statusline", "Claude Code statusline command: report context, print one line",
                "Read Claude Code's statusline JSON on stdin, record its context figures in the host spool "
                "(the reactor forwards them) and print one short line from the reactor's status cache: "
                "context %, running and stalled spawns, open alerts, or 'offline' when no reactor has "
                "written current figures. The session is the one of $TMUX_PANE, else --project, else the "
                "folder Claude Code runs in. Never talks to the database, never fails: on bad input it "
                "prints a placeholder and exits 0. `ps-health setup claude-code` installs it.",
                ['~/.claude/settings.json: {"statusLine": {"type": "command", "command": "ps-health statusline"}}',
                 "echo '{\"session_id\": \"s1\", \"cwd\": \"/src/myproj\", "
                 "\"context_window\": {\"used_percentage\": 42}}' | ps-health statusline"],
                func=_statusline)
    s.add_argument("--project", help="project to use when the pane has no registered session")

    k = command(sub, "hook", "agent CLI hook command: record what the agent did",
                "Read the JSON an agent CLI (Claude Code, Codex CLI, Gemini CLI) passes to a hook on stdin and "
                "record the fact in the host spool: SessionStart registers the session (and follows /clear, "
                "/new and resume), UserPromptSubmit and Stop (Gemini: BeforeAgent and AfterAgent) are "
                "heartbeats, Claude Code's PreToolUse / PostToolUse / PostToolUseFailure of the subagent tool "
                "(Task or Agent) start and finish a spawn, SubagentStop is activity, PreCompact (Gemini: a "
                "manual PreCompress) records a compaction, SessionEnd ends the session. The reactor forwards "
                "the facts to the database in order. Prints nothing and always exits 0, so it never blocks "
                "the agent. Facts are recorded for agents in a tmux pane, or for any agent when --project is "
                "given. `ps-health setup claude-code` (codex, gemini) installs the hooks.",
                ['~/.claude/settings.json: {"hooks": {"Stop": [{"hooks": [{"type": "command", '
                 '"command": "ps-health hook Stop"}]}]}}',
                 "echo '{\"cwd\": \"/src/myproj\"}' | ps-health hook Stop --project myproj",
                 "echo '{\"cwd\": \"/src/myproj\"}' | ps-health hook AfterAgent --agent gemini"],
                func=_hook)
    k.add_argument("event", metavar="EVENT", help="the hook event, e.g. SessionStart")
    k.add_argument("--project", help="the project (default: the folder the agent runs in)")
    k.add_argument("--agent", choices=["claude", "codex", "gemini"], default="claude",
                   help="the agent CLI whose hook this is (default: claude)")

    from reactor.cli import spawn as spawnwrap  # its parser lives beside the wrapper it drives

    spawnwrap.register(sub)

    r = command(sub, "respond", "answer a health prompt",
                "Store your answer to the check a prompt named; it acknowledges the problem and stops "
                "its reminders.",
                ['ps-health respond 42 "restarted the research spawn"'], func=_respond)
    r.add_argument("check_id", type=cliutil.positive_int, metavar="CHECK_ID", help="the number in the prompt")
    r.add_argument("text", metavar="TEXT", help="what you did about it")
    cliutil.add_json(r)

    h = command(sub, "handoff", "report a handoff file written", "Handoffs: report that you wrote one.")
    hsub = h.add_subparsers(dest="action", metavar="ACTION", required=True)
    done = command(hsub, "done", "the handoff file is written",
                   "Report that the handoff file is written: closes the handoff request and resets the "
                   "context expectation for the next session.",
                   ["ps-health handoff done --project myproj --file docs/handoff-2025-01-31.md"], func=_handoff)
    done.add_argument("--project", required=True)
    done.add_argument("--file", required=True, type=cliutil.absolute_path, help="path of the handoff file")
    cliutil.add_json(done)

    i = command(sub, "instructions", "print what to put in a PS's instructions",
                "Print the section of docs/ps-instructions.md a PS needs, for one project: the prompts it "
                "receives, how to answer, handoffs and spawn wrapping. Nothing else, so it can be appended "
                "to the agent's instructions as it is.",
                ["ps-health instructions >> CLAUDE.md          # project: the current folder's name",
                 "ps-health instructions --project shop >> AGENTS.md"], func=_instructions)
    i.add_argument("--project", help="the project's name (default: the name of the current folder)")


def _register_session(sub) -> None:
    p = command(sub, "session", "register, heartbeat or end a project's session",
                "The PS's session of a project: register it when it starts (with the tmux pane prompts "
                "go to), heartbeat while it works, end it when it stops.")
    ssub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    reg = command(ssub, "register", "start (or continue) the session of a project",
                  "Register the session of PROJECT. The pane defaults to $TMUX_PANE and the host to "
                  "PS_HEALTH_HOST or the hostname, so inside tmux `ps-health session register PROJECT` "
                  "is enough. Registering the same pane again continues the session.",
                  ["ps-health session register myproj",
                   "ps-health session register myproj --target %3 --host build-1 --type cli"],
                  func=_session_register)
    reg.add_argument("project", metavar="PROJECT")
    reg.add_argument("--type", dest="session_type", choices=["cli", "sdk"], default="cli")
    reg.add_argument("--target", help="tmux target (pane id like %%3, or session:window.pane); "
                                      "default $TMUX_PANE")
    reg.add_argument("--host", type=cliutil.host_label,
                     help="host the pane is on (default PS_HEALTH_HOST or the hostname)")
    reg.add_argument("--transcript", type=cliutil.absolute_path,
                     help="the agent's transcript file (JSONL), for context probes")
    reg.add_argument("--session-id", help="the agent's own session id")
    cliutil.add_json(reg)
    for name, text in (("heartbeat", "the session is alive and working"),
                       ("end", "the session is over; spawns it leaves running become orphaned work")):
        q = command(ssub, name, text, text[0].upper() + text[1:] + ".", [f"ps-health session {name} myproj"],
                    func=_session_simple)
        q.add_argument("project", metavar="PROJECT")


def _session_register(args, cfg) -> int:
    target = args.target or os.environ.get("TMUX_PANE") or None
    host = args.host or cfg.host_label or socket.gethostname()
    row = call_one(cfg, "register_session", {
        "project": args.project, "session_type": args.session_type, "target": target, "host": host,
        "transcript": args.transcript, "session_id": args.session_id})
    if args.json:
        print_json({"id": row["id"], "project": args.project, "target": target, "host": host})
        return 0
    print(f"registered {safe(args.project)} (session #{row['id']}) on {safe(host)}:{safe(target or '-')}")
    if target is None:
        print("note: no tmux pane (not inside tmux and no --target): prompts wait until the session has one",
              file=sys.stderr)
    return 0


def _session_simple(args, cfg) -> int:
    if args.action == "heartbeat":
        call_one(cfg, "heartbeat_session", {"project": args.project})
        print(f"{safe(args.project)}: alive")
        return 0
    row = call_one(cfg, "end_session", {"project": args.project})
    print(f"{safe(args.project)}: session ended" + (" (its running spawns are now orphaned work)" if row["changes"]
                                               else ""))
    return 0


def _context(args, cfg) -> int:
    project = args.project or args.project_flag
    if not project or (args.project and args.project_flag and args.project != args.project_flag):
        raise BadInput("context: give the project once, as PROJECT or --project")
    if args.tokens_total is not None and args.tokens_used is None:
        raise BadInput("context: --tokens-total needs --tokens-used")
    row = call_one(cfg, "report_context", {"project": project, "percent": args.percent,
                                           "tokens_used": args.tokens_used, "tokens_total": args.tokens_total})
    if args.json:
        print_json({"project": project, "percent": row["percent"]})
    else:
        print(f"{safe(project)}: context at {float(row['percent']):g}%")
    return 0


def _statusline(args, cfg) -> int:
    print(statusline.run(args.project, sys.stdin.buffer.read(), os.environ))
    return 0


def _hook(args, cfg) -> int:
    from reactor.agent import hooks

    return hooks.run(args.event, args.project, sys.stdin.buffer.read(), os.environ, args.agent)


def _respond(args, cfg) -> int:
    row = call_one(cfg, "respond", {"check_id": args.check_id, "text": args.text})
    if args.json:
        print_json(row)
    else:
        about = " ".join(str(x) for x in (row["check_type"], row["subject"], row["status"]) if x)
        print(f"answer recorded for check #{row['id']} ({safe(row['project'])}: {safe(about)})")
    return 0


def _handoff(args, cfg) -> int:
    row = call_one(cfg, "report_handoff", {"project": args.project, "file": args.file})
    if args.json:
        print_json({"project": args.project, "file": args.file, "check_id": row["check_id"]})
    else:
        print(f"{safe(args.project)}: handoff {safe(args.file)} recorded (check #{row['check_id']})")
    return 0


def _instructions(args, cfg) -> int:
    from reactor.cli import instructions

    project = args.project
    if project is None:
        project = spool.project_name(None, {}, os.getcwd())
        if not project:
            raise BadInput("instructions: this folder has no name to use as the project; give --project P")
        print(f"ps-health instructions: for project {project!r} (the current folder's name; --project to change)",
              file=sys.stderr)
    sys.stdout.write(instructions.for_project(project))
    return 0
