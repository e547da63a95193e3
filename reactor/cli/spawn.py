"""`ps-health spawn`: record subagents, and `spawn run`, which records one around a command it runs."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from datetime import datetime, timezone

from reactor import db
from reactor.agent import spawnrun
from reactor.cli import util as cliutil
from reactor.cli.render import safe
from reactor.cli.util import call_one, command, print_json
from reactor.errors import BadInput, PsHealthError

log = logging.getLogger("ps-health.spawn")

REPORT_TIMEOUT = 2  # seconds: a slow database must not hold up the tee


class _Terminated(Exception):
    """A signal arrived before the command ran."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def register(sub) -> None:
    p = command(sub, "spawn", "record the subagents a PS starts, or run one wrapped",
                "Spawns are the subagents a PS starts. `spawn run` wraps a command: it records the spawn, "
                "reports its output as it comes and records how it ended; the others record by hand.")
    ssub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    start = command(ssub, "start", "record a spawn that was started",
                    "Record a spawn that was started. Without output reports (`spawn output`) or an "
                    "--output file the reactor can watch, it counts as stalled after stall_after.",
                    ["ps-health spawn start myproj research-1 --type research --output /tmp/research-1.log"],
                    func=_start)
    start.add_argument("project", metavar="PROJECT")
    start.add_argument("task_id", metavar="TASK_ID")
    _spawn_flags(start)
    start.add_argument("--pid", type=cliutil.positive_int, help="process id the reactor checks for liveness")
    cliutil.add_json(start)

    out = command(ssub, "output", "the spawn produced output now",
                  "Report that the spawn produced output now (it is alive and working).",
                  ["ps-health spawn output myproj research-1"], func=_output)
    out.add_argument("project", metavar="PROJECT")
    out.add_argument("task_id", metavar="TASK_ID")

    fin = command(ssub, "finish", "record how a spawn ended",
                  "Record how a spawn ended. A non-zero exit code or an --error marks it failed and "
                  "prompts the PS at once.",
                  ["ps-health spawn finish myproj research-1 --exit-code 0",
                   'ps-health spawn finish myproj build-2 --exit-code 2 --error "tests failed"'], func=_finish)
    fin.add_argument("project", metavar="PROJECT")
    fin.add_argument("task_id", metavar="TASK_ID")
    fin.add_argument("--exit-code", type=cliutil.whole_number, required=True, metavar="N")
    fin.add_argument("--error", metavar="TEXT", help="what went wrong")
    cliutil.add_json(fin)

    run = command(ssub, "run", "run a command as a recorded spawn",
                  "Record a spawn, run CMD (everything after --), pass its output through (and to --output), "
                  "report output to the database as it comes, and record its exit code and last error line "
                  "when it ends. Exits with CMD's exit code; SIGINT/SIGTERM/SIGHUP are forwarded to CMD. When "
                  "the database is down CMD still runs (with a warning).",
                  ["ps-health spawn run --project myproj --task-id research-1 --type research -- "
                   "claude -p 'survey the options'",
                   "ps-health spawn run --project myproj --task-id build-2 --type build "
                   "--output /tmp/build-2.log -- make test"], func=_run)
    run.add_argument("--project", required=True)
    run.add_argument("--task-id", required=True)
    _spawn_flags(run)
    run.add_argument("--report-every", type=cliutil.duration, default=None, metavar="DURATION",
                     help="report output at most this often (default 5s)")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="the command to run")


def _spawn_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--type", dest="task_type", required=True, metavar="TYPE",
                   help="kind of work: research, plan, build…")
    p.add_argument("--description", help="what the spawn is doing")
    p.add_argument("--output", type=cliutil.absolute_path,
                   help="file the spawn writes its output to (the reactor watches its mtime; a relative path is taken "
                        "from the current folder)")


def _start(args, cfg) -> int:
    row = call_one(cfg, "start_spawn", _start_params(args, cfg, args.pid))
    if args.json:
        print_json({"id": row["id"], "project": args.project, "task_id": args.task_id})
    else:
        print(f"{safe(args.project)}: spawn {safe(args.task_id)} recorded (#{row['id']})")
    return 0


def _start_params(args, cfg, pid: int | None) -> dict:
    return {"project": args.project, "task_id": args.task_id, "task_type": args.task_type,
            "description": args.description, "output_file": args.output, "pid": pid, "host": cfg.host_label}


def _output(args, cfg) -> int:
    call_one(cfg, "report_spawn_output", {"project": args.project, "task_id": args.task_id, "at": None})
    print(f"{safe(args.project)}: spawn {safe(args.task_id)} output recorded")
    return 0


def _finish(args, cfg) -> int:
    row = call_one(cfg, "finish_spawn", {"project": args.project, "task_id": args.task_id,
                                         "exit_code": args.exit_code, "error": args.error})
    if args.json:
        print_json({"project": args.project, "task_id": args.task_id, "status": row["status"]})
    else:
        print(f"{safe(args.project)}: spawn {safe(args.task_id)} {row['status']}")
    return 0


class _OutputReporter:
    """on_output for spawnrun: one short connection per report; failures are logged, never raised."""

    def __init__(self, dsn: str, project: str, task_id: str):
        self.dsn, self.project, self.task_id = dsn, project, task_id
        self.failing = False

    def __call__(self, ts: float) -> None:
        try:
            with db.connect(self.dsn, autocommit=True, connect_timeout=REPORT_TIMEOUT) as conn:
                db.fetch(conn, "cli", "report_spawn_output", {
                    "project": self.project, "task_id": self.task_id,
                    "at": datetime.fromtimestamp(ts, timezone.utc)})
        except Exception as exc:
            # once per outage: the child's own output shares this terminal
            if not self.failing:
                log.warning("cannot report output of %s (keeps running): %s", self.task_id, exc)
            self.failing = True
            return
        if self.failing:
            log.warning("reporting output of %s again", self.task_id)
        self.failing = False


def _error_text(result: spawnrun.RunResult) -> str | None:
    if result.exit_code == 0:
        return None
    if result.signal:
        name = signal.Signals(result.signal).name
        return f"terminated by {name}" + (f"; last output: {result.last_error_line}" if result.last_error_line
                                          else "")
    return result.last_error_line or f"exit code {result.exit_code}"


def _raise_terminated(signum, _frame):
    raise _Terminated(signum)


def _run(args, cfg) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise BadInput("spawn run: no command given; put it after --, e.g. `-- make test`")
    # Until spawnrun forwards signals, a SIGTERM must still end in a recorded finish.
    saved = {s: signal.signal(s, _raise_terminated) for s in (signal.SIGTERM, signal.SIGHUP)}
    recorded, dsn = False, None
    try:
        try:
            dsn = cfg.require_dsn()
            with db.connect(dsn, autocommit=True, connect_timeout=REPORT_TIMEOUT) as conn:
                db.fetch(conn, "cli", "start_spawn", _start_params(args, cfg, os.getpid()))
            recorded = True
        except BadInput:
            raise  # a duplicate task id or a bad value: the caller must fix the call
        except PsHealthError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"ps-health: warning: spawn {safe(args.task_id)} not recorded ({safe(reason)}); running it anyway",
                  file=sys.stderr)
        every = args.report_every.total_seconds() if args.report_every else 5.0
        on_output = _OutputReporter(dsn, args.project, args.task_id) if recorded else (lambda ts: None)
        result = spawnrun.run(cmd, args.output, on_output, every)
        code, error = result.exit_code, _error_text(result)
    except (_Terminated, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, _Terminated) else signal.SIGINT
        code, error = 128 + signum, f"terminated by {signal.Signals(signum).name} before the command started"
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    if recorded:
        try:
            with db.connect(dsn, autocommit=True, connect_timeout=REPORT_TIMEOUT) as conn:
                db.fetch(conn, "cli", "finish_spawn", {"project": args.project, "task_id": args.task_id,
                                                       "exit_code": code, "error": error})
        except PsHealthError as exc:
            print(f"ps-health: warning: could not record the end of spawn {safe(args.task_id)}: {safe(exc)}",
                  file=sys.stderr)
    return code
