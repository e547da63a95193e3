"""What an operator runs: status, checks, prompts, mute/unmute, forget, settings, check, demo."""

from __future__ import annotations

import signal
import sys
import time

from reactor import db
from reactor.cli import render
from reactor.cli import util as cliutil
from reactor.cli.render import safe
from reactor.cli.util import call, call_one, command, print_json
from reactor.errors import BadInput, PsHealthError

CLEAR = "\x1b[H\x1b[2J"


def register(sub) -> None:
    s = command(sub, "status", "one table for every project, headed by the monitor's own health",
                "Show every project: session, pane, context usage, last activity, running and stalled "
                "spawns, open alerts, the last prompt and whether it was delivered, mute. The first line "
                "is the monitor's own health: age of the last sweep, reactors running, pg_cron and who sweeps.",
                ["ps-health status", "ps-health status --watch       # refresh every 2 s, Ctrl-C to stop",
                 "ps-health status --json | jq '.projects[] | select(.open_alerts > 0)'"], func=_status)
    s.add_argument("--watch", nargs="?", type=cliutil.seconds, const=2.0, default=None, metavar="SECONDS",
                   help="redraw every SECONDS (default 2) until Ctrl-C")
    cliutil.add_json(s)

    c = command(sub, "checks", "the history of health checks, newest first",
                "List health_checks rows (the audit trail), newest first.",
                ["ps-health checks --project myproj --since 2h",
                 "ps-health checks --status critical --limit 5 --json"], func=_checks)
    c.add_argument("--project")
    c.add_argument("--type", dest="check_type", metavar="TYPE", help="spawn, context, handoff, …: the database lists "
                   "the types it knows when given one it does not")
    c.add_argument("--status", metavar="STATUS", help="ok, warning or critical")
    c.add_argument("--since", type=cliutil.duration, metavar="DURATION", help=cliutil.DURATION_HELP)
    c.add_argument("--limit", type=cliutil.positive_int, default=50, metavar="N", help="default 50")
    cliutil.add_json(c)

    p = command(sub, "prompts", "the prompt outbox, newest first",
                "List prompts: what was (or will be) typed into which pane, and what happened to it.",
                ["ps-health prompts --state pending", "ps-health prompts --project myproj --limit 5 --json"],
                func=_prompts)
    p.add_argument("--project")
    p.add_argument("--state", metavar="STATE", help="pending, delivered, failed, …: the database lists the states "
                   "it knows when given one it does not")
    p.add_argument("--limit", type=cliutil.positive_int, default=50, metavar="N", help="default 50")
    cliutil.add_json(p)

    m = command(sub, "mute", "send no prompts to a project for a while",
                "Mute a project: checks are still recorded, but no prompt is sent until the time passes.",
                ['ps-health mute myproj --for 30m --reason "deploying"', "ps-health mute myproj --for 1h30m"],
                func=_mute)
    m.add_argument("project", metavar="PROJECT")
    m.add_argument("--for", dest="duration", type=cliutil.duration, required=True, metavar="DURATION",
                   help=cliutil.DURATION_HELP)
    m.add_argument("--reason")
    m.add_argument("--ahead", action="store_true",
                   help="the project has no session yet: mute it ahead of its first session (without this "
                        "flag an unknown project is refused, so a typo mutes nothing)")
    cliutil.add_json(m)

    u = command(sub, "unmute", "send prompts to a project again", "Lift a project's mute.",
                ["ps-health unmute myproj"], func=_unmute)
    u.add_argument("project", metavar="PROJECT")

    f = command(sub, "forget", "remove a project's live state (its audit stays)",
                "Remove a project from the live state: its session, spawns, open problems, queued prompts, "
                "mute and setting overrides. Its health checks stay in the audit until retention removes "
                "them. For a finished project, a misspelt one, or the demo's.",
                ["ps-health forget myproj", "ps-health forget web2 --json"], func=_forget)
    f.add_argument("project", metavar="PROJECT")
    cliutil.add_json(f)

    _register_settings(sub)

    k = command(sub, "check", "run a sweep now and print what changed",
                "Run the health sweep now (as pg_cron does every minute) and print the checks it wrote.",
                ["ps-health check", "ps-health check --json"], func=_check)
    cliutil.add_json(k)

    from reactor.demo import run as demo

    demo.register(sub)


def _register_settings(sub) -> None:
    s = command(sub, "settings", "show or change thresholds, globally or per project",
                "Every threshold is a setting with a default, a global override and per-project overrides.")
    ssub = s.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = command(ssub, "show", "effective values and where they come from",
                   "Show each setting's effective value (for --project, or global), where it comes from "
                   "(project, global, default), its allowed range and what it means; a stored value that "
                   "is not allowed (and so ignored) is listed below the table. Secrets show as (set) "
                   "to everyone but the owner.",
                   ["ps-health settings show", "ps-health settings show agent_programs",
                    "ps-health settings show --project myproj --json"],
                   func=_settings)
    show.add_argument("key", metavar="KEY", nargs="?", help="only this setting")
    show.add_argument("--project")
    cliutil.add_json(show)
    put = command(ssub, "set", "override a setting",
                  "Override a setting globally, or for one project with --project. Values are checked "
                  "against the setting's kind and range (settings show lists them), and settings that "
                  "must keep their order (context_warning below context_critical, stall_after below "
                  "abandon_after, ...) are checked for every project the change reaches; a refused "
                  "change writes nothing.",
                  ["ps-health settings set stall_after '20 minutes'",
                   "ps-health settings set --project myproj context_warning 0.6"], func=_settings)
    put.add_argument("--project")
    put.add_argument("--ahead", action="store_true",
                     help="the project has no session yet: set it ahead of its first session (without this "
                          "a project no session has named is refused, as a typo would be)")
    put.add_argument("key", metavar="KEY")
    put.add_argument("value", metavar="VALUE")
    reset = command(ssub, "reset", "drop an override",
                    "Drop the global override of KEY, or the project's with --project.",
                    ["ps-health settings reset stall_after", "ps-health settings reset --project myproj stall_after"],
                    func=_settings)
    reset.add_argument("--project")
    reset.add_argument("key", metavar="KEY")


def _snapshot(conn) -> dict:
    head = db.fetch_one(conn, "cli", "system_health")
    return {"now": head["now"], "system": head["system"], "projects": db.fetch(conn, "cli", "project_status")}


def _status(args, cfg) -> int:
    if args.watch is not None and args.json:
        raise BadInput("--watch redraws a table; use --json without --watch")
    if args.watch is None:
        with cliutil.connect(cfg) as conn:
            snap = _snapshot(conn)
        if args.json:
            print_json(snap)
        else:
            print(render.status_report(snap["system"], snap["projects"], snap["now"]))
        return 0
    # Ctrl-C is the way out, also when started with SIGINT ignored (a background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while True:
            try:  # a fresh connection per frame: the watch survives a database restart
                with cliutil.connect(cfg) as conn:
                    snap = _snapshot(conn)
                text = render.status_report(snap["system"], snap["projects"], snap["now"])
            except PsHealthError as exc:
                text = f"ps-health status: {exc}"
            sys.stdout.write(CLEAR + text + f"\n\nrefreshing every {args.watch:g} s, Ctrl-C to stop\n")
            sys.stdout.flush()
            time.sleep(args.watch)
    except KeyboardInterrupt:
        print()
        return 0


def _checks(args, cfg) -> int:
    with cliutil.connect(cfg) as conn:
        now = db.fetch_one(conn, "cli", "now")["now"]
        rows = db.fetch(conn, "cli", "checks", {"project": args.project, "check_type": args.check_type,
                                                "status": args.status, "since": args.since, "limit": args.limit})
    if args.json:
        print_json(rows)
    else:
        print(render.checks_table(rows, now))
    return 0


def _prompts(args, cfg) -> int:
    with cliutil.connect(cfg) as conn:
        now = db.fetch_one(conn, "cli", "now")["now"]
        rows = db.fetch(conn, "cli", "prompts", {"project": args.project, "state": args.state, "limit": args.limit})
    if args.json:
        print_json(rows)
    else:
        print(render.prompts_table(rows, now))
    return 0


def _mute(args, cfg) -> int:
    row = call_one(cfg, "mute_project", {"project": args.project, "duration": args.duration,
                                         "reason": args.reason, "ahead": args.ahead})
    if args.json:
        print_json({"project": args.project, "until": row["until"], "reason": args.reason})
    else:
        print(f"{safe(args.project)}: muted until {render.clock(row['until'])} "
              f"({render.span(args.duration.total_seconds())})")
    return 0


def _unmute(args, cfg) -> int:
    row = call_one(cfg, "unmute_project", {"project": args.project})
    print(f"{safe(args.project)}: " + ("unmuted" if row["lifted"] else "was not muted"))
    return 0


def _forget(args, cfg) -> int:
    removed = call_one(cfg, "forget_project", {"project": args.project})["removed"]
    if args.json:
        print_json(removed)
        return 0
    labels = {"session": "session", "spawns": "spawn(s)", "open_problems": "open problem(s)",
              "queued_prompts": "queued prompt(s)", "mute": "mute", "settings": "setting override(s)"}
    parts = [f"{removed[key]} {label}" for key, label in labels.items() if removed.get(key)]
    print(f"{args.project}: forgotten ({', '.join(parts)}); its health checks stay until retention")
    return 0


def _settings(args, cfg) -> int:
    if args.action == "show":
        rows = call(cfg, "settings_show", {"project": args.project})
        if args.key is not None:
            rows = [r for r in rows if r["key"] == args.key]
            if not rows:
                raise BadInput(f"KEY: unknown setting {safe(args.key)!r}; `ps-health settings show` lists them all")
        if args.json:
            print_json(rows)
        else:
            print(render.settings_table(rows))
        return 0
    value = args.value if args.action == "set" else None
    row = call_one(cfg, "set_setting", {"key": args.key, "value": value, "project": args.project,
                                        "ahead": args.action == "reset" or args.ahead})
    scope = f"for {safe(args.project)}" if args.project else "globally"
    verb = "set" if args.action == "set" else "reset"
    print(f"{safe(args.key)} {verb} {scope}: now {safe(row['value'])}")
    return 0


def _check(args, cfg) -> int:
    with cliutil.connect(cfg) as conn:
        sweep = db.fetch_one(conn, "cli", "run_checks")["sweep"]
        rows = [] if sweep.get("skipped") else db.fetch(conn, "cli", "sweep_changes",
                                                       {"swept_at": sweep["swept_at"]})
    if args.json:
        print_json({"sweep": sweep, "changes": rows})
        return 0
    if sweep.get("skipped"):
        print(f"sweep skipped: {sweep.get('reason')}")
        return 0
    print(f"sweep done in {float(sweep['duration_ms']):.1f} ms: {sweep['targets']} targets, "
          f"{len(rows)} change(s)")
    for r in rows:
        what = " ".join(x for x in (r["check_type"], r["subject"]) if x)
        print(f"  #{r['id']} {safe(r['project'])}: {safe(what)} -> {r['status']} "
              f"({safe(r['action_taken'] or 'recorded')})")
    return 0
