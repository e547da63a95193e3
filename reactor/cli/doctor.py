"""`ps-health doctor`: one line per check of this host's set-up, with the fix; exit 1 when one fails.

The database, the schema and Claude Code's settings are checked here; the verdicts on what the
database knows (who sweeps, the reactor, tmux, the panes) come from doctor_checks() in SQL, given
the facts gathered on this host.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from reactor import db
from reactor.cli import util as cliutil
from reactor.errors import PsHealthError
from reactor.tmux import client

STATUSLINE = "ps-health statusline"
SETTINGS_EXAMPLE = '{"statusLine": {"type": "command", "command": "ps-health statusline"}}'
DB_CHECKS = ("sweep", "reactor", "tmux", "panes")


@dataclass
class Check:
    name: str
    status: str  # ok, warn, fail, or skip when what it needs is not there
    detail: str
    fix: str | None = None

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<10}  {self.detail}" + (f" — fix: {self.fix}" if self.fix else "")


def register(sub) -> None:
    p = cliutil.command(
        sub, "doctor", "check this host's set-up, one line per check with the fix",
        "Check, one line each: the database is reachable, its schema is current, something sweeps "
        "(pg_cron or the reactor's fallback), a reactor serves this host, the tmux server it types into "
        "answers, every registered pane of this host is there, and Claude Code's statusline runs "
        "`ps-health statusline`. Each line is ok, warn or fail, with the fix; exit 1 when one fails.",
        ["ps-health doctor", "ps-health doctor --before-reactor    # what `make run` prints before starting it",
         "ps-health doctor --json | jq '.checks[] | select(.status != \"ok\")'"], func=_doctor)
    p.add_argument("--host", type=cliutil.host_label,
                   help="host label to check (default PS_HEALTH_HOST, else the hostname)")
    p.add_argument("--tmux-socket", metavar="NAME",
                   help="tmux server (tmux -L) the reactor types into (default PS_HEALTH_TMUX_SOCKET, else tmux's "
                        "default)")
    p.add_argument("--before-reactor", action="store_true",
                   help="a reactor for this host is about to start: none running yet is right")
    cliutil.add_json(p)


def _doctor(args, cfg) -> int:
    host = args.host or cfg.host_label
    socket = args.tmux_socket or cfg.tmux_socket
    checks, dsn = _database(cfg)
    if dsn is not None:
        checks.append(_schema(dsn))
    if checks[-1].status in ("ok", "warn"):  # (warn: the login may not read the schema's records)
        try:
            checks += _verdicts(dsn, host, socket, args.before_reactor)
        except PsHealthError as exc:
            checks += [Check(name, "skip", f"this login may not see it: {exc}") for name in DB_CHECKS]
    else:
        checks += [Check(name, "skip", "needs the database and its current schema") for name in DB_CHECKS]
    checks.append(_statusline())
    failed = any(c.status == "fail" for c in checks)
    if args.json:
        cliutil.print_json({"host": host, "ok": not failed, "checks": [asdict(c) for c in checks]})
    else:
        print(f"ps-health doctor: host {host}")
        for c in checks:
            print("  " + c.line())
        counts = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "fail")}
        print(f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    return 1 if failed else 0


def _database(cfg) -> tuple[list[Check], str | None]:
    try:
        dsn = cfg.require_dsn()
        with db.connect(dsn, autocommit=True) as conn:
            row = db.fetch_one(conn, "cli", "server")
    except PsHealthError as exc:
        return [Check("database", "fail", str(exc), exc.hint or "check PS_HEALTH_DSN")], None
    return [Check("database", "ok", f"PostgreSQL {row['version']}, database {row['database']} as {row['login']} "
                                    f"({_where(dsn)})")], dsn


def _where(dsn: str) -> str:
    if not dsn:
        return "from the PG* variables"
    shown = {k: v for k, v in conninfo_to_dict(dsn).items() if k != "password"}
    return make_conninfo(**shown)


def _schema(dsn: str) -> Check:
    from reactor.db.migrate import Runner  # migra and the schema files are needed here only

    try:
        rows = Runner(dsn, say=lambda _: None).status()
    except PsHealthError as exc:
        if exc.sqlstate == "42501":  # an agent's, reactor's or reader's login: the schema's records are the owner's
            return Check("schema", "warn", f"this login may not read the schema's records ({exc})",
                         "the owner's login shows this line")
        return Check("schema", "fail", str(exc), exc.hint or "ps-health migrate status")
    applied = [r for r in rows if r["version"] is not None and r["state"] == "applied"]
    pending = [r["name"] for r in rows if r["state"] == "pending"]
    if not applied:
        return Check("schema", "fail", "this database has no ps-health schema", "ps-health migrate")
    if pending:
        return Check("schema", "fail", f"migrations not applied: {', '.join(pending)}", "ps-health migrate")
    if any(r["state"] == "changed" for r in rows):
        return Check("schema", "fail", "the functions in the database are not the ones of this ps-health",
                     "ps-health migrate")
    return Check("schema", "ok", f"version {max(r['version'] for r in applied)}, functions current")


def _verdicts(dsn: str, host: str, socket: str | None, before_reactor: bool) -> list[Check]:
    with db.connect(dsn, autocommit=True) as conn:
        panes = db.fetch(conn, "cli", "host_panes", {"host": host})
    states = client.tmux_targets([p["tmux_target"] for p in panes], socket_name=socket) if panes else {}
    facts = {"cron": _cron(dsn), "tmux": _tmux(socket),
             "panes": [{"project": p["project"], "target": p["tmux_target"], "state": states[p["tmux_target"]]}
                       for p in panes]}
    with db.connect(dsn, autocommit=True) as conn:
        rows = db.fetch(conn, "cli", "doctor_checks", {"host": host, "facts": json.dumps(facts),
                                                        "before_reactor": before_reactor})
    return [Check(**row) for row in rows]


def _cron(dsn: str) -> dict:
    """What pg_cron has scheduled for this database, as far as this login may see."""
    from reactor.cli.cron import cron_connection

    try:
        conn, database = cron_connection(dsn)
    except PsHealthError:
        return {"loaded": False, "sweep_job": None}
    with conn:
        jobs = {r["jobname"]: r for r in db.fetch(conn, "cron", "jobs", {"database": database})}
    job = jobs.get("ps_health_sweep")
    return {"loaded": True, "sweep_job": job and {
        "active": job["active"], "last_status": job["last_status"], "last_message": job["last_message"],
        "last_start": job["last_start"].isoformat() if job["last_start"] else None}}


def _tmux(socket: str | None) -> dict:
    try:
        done = client.run(("list-sessions", "-F", "#{session_name}"), socket_name=socket, timeout=5)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"socket": socket or "default", "reachable": False, "error": str(exc)}
    error = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]
    return {"socket": socket or "default", "reachable": done.returncode == 0,
            "error": None if done.returncode == 0 else error}


def _statusline() -> Check:
    """Whether a Claude Code settings file runs `ps-health statusline` (only read, never changed)."""
    home = Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")
    files = [home / "settings.json", Path.cwd() / ".claude" / "settings.json",
             Path.cwd() / ".claude" / "settings.local.json"]
    unreadable = []
    for path in files:
        try:
            settings = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            unreadable.append(f"{path} ({exc.__class__.__name__})")
            continue
        line = settings.get("statusLine") if isinstance(settings, dict) else None
        command = line.get("command") if isinstance(line, dict) else None
        if isinstance(command, str) and STATUSLINE in command:
            return Check("statusline", "ok", f"Claude Code runs `{command}` ({path})")
    looked = ", ".join(str(p) for p in files)
    if unreadable:
        return Check("statusline", "warn", f"cannot read {'; '.join(unreadable)}", "fix the JSON of that file")
    return Check("statusline", "warn", f"no Claude Code settings run `{STATUSLINE}` (looked in {looked})",
                 f"add {SETTINGS_EXAMPLE} to {files[0]} (for Claude Code PSs; other agents report with "
                 "`ps-health context`)")
