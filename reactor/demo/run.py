"""`ps-health demo`: a demo PS in a private tmux server, a spawn that goes quiet, the prompt and the answer."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from reactor import db
from reactor.cli import render
from reactor.cli import util as cliutil
from reactor.errors import BadInput, PsHealthError
from reactor.tmux import client as tmux_client

# The folder the reactor package is imported from (a checkout or site-packages), for the demo's children.
IMPORT_ROOT = Path(__file__).resolve().parents[2]
PROJECT = "ps-health-demo"
HOST = "demo-host"
SOCKET = "ps-health-demo"
SESSION = "ps-health-demo"  # the demo's own tmux session, also on a server it did not start
DEMO_TMUX_TIMEOUT = 10.0  # a tmux command of the demo (starting a server included) takes at most this long


def register(sub) -> None:
    p = cliutil.command(
        sub, "demo", "a demo PS pane in a private tmux server, prompted within minutes",
        "Start the embedded database (or use PS_HEALTH_DSN), a reactor, and a tmux session "
        f"'{SESSION}' with a demo PS pane on a private tmux server (tmux -L {SOCKET}, or "
        "PS_HEALTH_TMUX_SOCKET); register it, start a spawn that goes quiet, and show the stall prompt "
        "arriving in the pane, the PS's answer recorded, and the status table. Leaves everything running "
        "for you to attach; `ps-health demo --cleanup` stops it. Ctrl-C cleans up. Cleaning up removes "
        "only what the demo made: its session (and the tmux server only when the demo started it), its "
        "reactor, and its project's live state.",
        ["ps-health demo", "ps-health demo --fast --no-wait    # about 10 s, cleans up at the end",
         f"tmux -L {SOCKET} attach -t {SESSION}   # look at the demo PS", "ps-health demo --cleanup"],
        func=_demo)
    p.add_argument("--fast", action="store_true", help="stall after 5 seconds instead of 1 minute")
    p.add_argument("--no-wait", action="store_true",
                   help="clean up as soon as the answer is recorded instead of leaving the demo running")
    p.add_argument("--cleanup", action="store_true", help="stop a demo left running and exit")
    p.add_argument("--tmux-socket", metavar="NAME",
                   help=f"tmux -L socket name (default PS_HEALTH_TMUX_SOCKET, else {SOCKET})")
    p.add_argument("--timeout", type=cliutil.duration, default=None, metavar="DURATION",
                   help="give up when the answer has not arrived by then (default 4m, 1m with --fast)")


class Demo:
    """One demo run: what it started, so cleanup stops exactly that."""

    def __init__(self, cfg, socket: str):
        self.cfg, self.socket = cfg, socket
        self.dir = cfg.home / "demo"
        self.state_file = self.dir / f"{socket}.json"
        self.started = time.monotonic()
        self.state: dict = {}

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    def tmux(self, *args: str, check: bool = True) -> str:
        res = tmux_client.run(args, socket_name=self.socket, timeout=DEMO_TMUX_TIMEOUT)
        if check and res.returncode != 0:
            raise PsHealthError(f"tmux {args[0]} failed: {res.stderr.strip()}")
        return res.stdout.strip()

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(self.state))

    def call(self, name: str, **params):
        with db.connect(self.state["dsn"], autocommit=True) as conn:
            return db.fetch(conn, "cli", name, params)

    # ---------------------------------------------------------------- start

    def database(self) -> None:
        from reactor.db.cluster import Cluster
        from reactor.db.migrate import Runner

        dsn = self.cfg.dsn if self.cfg.dsn is not None else Cluster.from_config(self.cfg).up()
        Runner(dsn, say=lambda line: self.say(f"migrate: {line}")).migrate()
        self.state["dsn"] = dsn
        self.save()
        self.say(f"database ready ({dsn or 'PG* variables'})")

    def child_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
        env.update(PS_HEALTH_DSN=self.state["dsn"], PS_HEALTH_HOST=HOST, PYTHONPATH=str(IMPORT_ROOT))
        return env

    def _env_flags(self) -> list[str]:
        env = self.child_env()
        return [f for k in ("PS_HEALTH_DSN", "PS_HEALTH_HOST", "PYTHONPATH", "PATH") for f in ("-e", f"{k}={env[k]}")]

    def pane(self) -> None:
        running = _answers(self.socket, "list-sessions")
        if running and _answers(self.socket, "has-session", "-t", f"={SESSION}"):
            raise PsHealthError(f"tmux server '{self.socket}' already has a session named {SESSION} that this demo "
                                f"did not start; rename or close it, or use another --tmux-socket")
        ps = shlex.join([sys.executable, "-m", "reactor.demo.ps", PROJECT])
        made = self.tmux("new-session", "-d", "-s", SESSION, "-n", "ps", "-x", "160", "-y", "40", "-P",
                         "-F", "#{pane_id} #{session_id} #{pid}", *self._env_flags(), "-c", str(self.dir), ps)
        target, session_id, server_pid = made.split()
        # what cleanup may remove: this session of this server, and the server only if the demo started it
        self.state.update(pane=target, session_id=session_id, server_pid=int(server_pid), server_started=not running)
        self.save()
        where = "a private tmux server" if not running else "the tmux server already running"
        self.say(f"{where} '{self.socket}': demo PS in session {SESSION}, pane {target}")

    def session(self, fast: bool) -> None:
        self.call("register_session", project=PROJECT, session_type="cli", target=self.state["pane"], host=HOST,
                  transcript=None, session_id=None)
        settings = {"stall_after": "5 seconds" if fast else "1 minute", "submit_delay": "300 milliseconds",
                    "idle_seconds": "1", "prompt_rate_interval": "5 seconds", "context_check_interval": "1 hour",
                    # the demo PS is a stand-in program, not one of the agent CLIs accepted by default
                    "agent_programs": '["reactor.demo.ps"]'}
        for key, value in settings.items():
            self.call("set_setting", key=key, value=value, project=PROJECT, ahead=False)
        self.call("report_context", project=PROJECT, percent=35, tokens_used=None, tokens_total=None)
        self.say(f"session of {PROJECT} registered at {HOST}:{self.state['pane']}; context 35%; settings "
                 + ", ".join(f"{k}={v}" for k, v in settings.items()))

    def reactor(self, fast: bool) -> None:
        log = self.dir / f"{self.socket}-reactor.log"
        every = ["--probe-interval", "1", "--run-checks-every", "1"] if fast else \
            ["--probe-interval", "5", "--run-checks-every", "10"]
        argv = [sys.executable, "-m", "reactor", "--host", HOST, "--tmux-socket", self.socket,
                "--poll-interval", "1", *every]
        with log.open("ab") as err:
            # own session: a Ctrl-C in this terminal reaches the demo, which stops the reactor itself
            proc = subprocess.Popen(argv, env=self.child_env(), cwd=self.dir, stdin=subprocess.DEVNULL,
                                    stdout=err, stderr=err, start_new_session=True)
        self.proc = proc
        self.state.update(reactor_pid=proc.pid, reactor_log=str(log))
        self.save()
        self.say(f"reactor started (pid {proc.pid}): {shlex.join(argv[1:])}; log {log}")

    def spawn(self) -> None:
        task = f"research-{datetime.now():%H%M%S}"
        out = self.dir / f"{task}.log"
        cmd = [sys.executable, "-m", "reactor.cli", "spawn", "run", "--project", PROJECT, "--task-id", task,
               "--type", "research", "--description", "demo: says one line, then goes quiet",
               "--output", str(out), "--", "sh", "-c", "echo working; exec sleep 600"]
        self.state["task_id"] = task
        self.save()
        self.tmux("new-window", "-d", "-t", f"{self.state['session_id']}:", "-n", "spawn", *self._env_flags(),
                  "-c", str(self.dir), shlex.join(cmd))
        self.say(f"spawn {task} started in window 'spawn': prints 'working', then sleeps (goes quiet)")

    # ---------------------------------------------------------------- watch

    def watch(self, timeout: float) -> bool:
        """Print each step once as it happens; True when the PS's answer is recorded."""
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.say(f"the reactor exited ({self.proc.returncode}); its log:\n{self.log_tail()}")
                return False
            row = self.call("demo_progress", project=PROJECT, task_id=self.state["task_id"])[0]
            prompt, answer = row["prompt"] or {}, row["answer"]
            steps = [(row["spawn_status"] in ("stalled", "abandoned"), "stalled",
                      f"spawn {self.state['task_id']} is {row['spawn_status']}: no output for stall_after"),
                     (bool(prompt), "queued", f"prompt #{prompt.get('id')} queued: {prompt.get('text')}"),
                     (prompt.get("state") == "delivered" or bool(answer), "delivered",  # (an answer: it was typed)
                      f"prompt #{prompt.get('id')} typed into pane {self.state['pane']} by the reactor"),
                     (bool(answer), "answer", f"answer recorded on check #{(answer or {}).get('check_id')}: "
                                              f"{(answer or {}).get('response')!r}")]
            for happened, key, text in steps:
                if happened and key not in seen:
                    seen.add(key)
                    self.say(text)
            if answer:
                return True
            time.sleep(0.5)
        self.say(f"no answer within {timeout:.0f} s; reactor log:\n{self.log_tail()}")
        return False

    def log_tail(self, lines: int = 15) -> str:
        path = Path(self.state.get("reactor_log", "/nonexistent"))
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"

    def show(self) -> None:
        screen = self.tmux("capture-pane", "-p", "-J", "-t", self.state["pane"], check=False)
        print("\nthe demo PS pane shows:\n" + "\n".join(f"  | {line}" for line in screen.splitlines() if line))
        with db.connect(self.state["dsn"], autocommit=True) as conn:
            head = db.fetch_one(conn, "cli", "system_health")
            projects = [r for r in db.fetch(conn, "cli", "project_status") if r["project"] == PROJECT]
        print("\n" + render.status_report(head["system"], projects, head["now"]) + "\n", flush=True)


def cleanup(cfg, socket: str, say=print) -> None:
    """Stop what a demo started (from its state file) and forget its project; safe to repeat."""
    demo = Demo(cfg, socket)
    state = json.loads(demo.state_file.read_text()) if demo.state_file.exists() else {}
    pid = state.get("reactor_pid")
    if pid and _is_demo_reactor(pid, socket):
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if not _is_demo_reactor(pid, socket):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        say(f"reactor {pid} stopped")
    if state.get("dsn") is not None:
        demo.state = state
        try:
            # before its pane dies: the spawn wrapper then finds nothing to record a failure on
            demo.call("forget_project", project=PROJECT)
            say(f"project {PROJECT} forgotten (its checks stay in the audit until retention)")
        except BadInput:
            pass  # nothing left of it
        except PsHealthError as exc:
            say(f"could not forget the demo's project: {exc}")
    session_id = state.get("session_id")
    # only the session the demo made, on the very server it made it on (ids repeat across servers)
    if session_id and _tmux_out(socket, "display-message", "-p", "-t", session_id, "#{pid} #{session_name}") \
            == f"{state.get('server_pid')} {SESSION}":
        sessions = (_tmux_out(socket, "list-sessions", "-F", "#{session_id}") or "").split()
        if state.get("server_started") and sessions == [session_id]:
            # the demo's own server, holding nothing else: stop it, and wait until it is gone
            _answers(socket, "kill-server")
            deadline = time.monotonic() + 10
            while _answers(socket, "list-sessions") and time.monotonic() < deadline:
                time.sleep(0.05)
            # tmux 3.3 leaves the socket file of a killed server behind
            if not _answers(socket, "list-sessions"):
                tmpdir = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
                (tmpdir / socket).unlink(missing_ok=True)
            say(f"tmux server '{socket}' stopped")
        else:
            _answers(socket, "kill-session", "-t", session_id)
            say(f"tmux session {SESSION} on '{socket}' closed")
    demo.state_file.unlink(missing_ok=True)


def _answers(socket: str, *args: str) -> bool:
    return _tmux_out(socket, *args) is not None


def _tmux_out(socket: str, *args: str) -> str | None:
    try:
        res = tmux_client.run(args, socket_name=socket, timeout=DEMO_TMUX_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def _is_demo_reactor(pid: int, socket: str) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"reactor" in argv and socket.encode() in argv


def _demo(args, cfg) -> int:
    args.tmux_socket = args.tmux_socket or cfg.tmux_socket or SOCKET
    if args.cleanup:
        cleanup(cfg, args.tmux_socket)
        print("demo cleaned up (the database keeps running: `ps-health db down` stops the embedded one)")
        return 0
    cleanup(cfg, args.tmux_socket, say=lambda _: None)  # leftovers of an earlier run
    demo = Demo(cfg, args.tmux_socket)
    # Ctrl-C and a plain kill both clean up, also when started with SIGINT ignored (a background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    timeout = args.timeout.total_seconds() if args.timeout else (60 if args.fast else 240)
    try:
        demo.database()
        demo.pane()
        demo.session(args.fast)
        demo.reactor(args.fast)
        demo.spawn()
        demo.say(f"waiting for the stall ({'5 seconds' if args.fast else '1 minute'}), the prompt and the answer…")
        answered = demo.watch(timeout)
        demo.show()
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up")
        cleanup(cfg, args.tmux_socket)
        return 130
    except BaseException:
        cleanup(cfg, args.tmux_socket)
        raise
    if args.no_wait or not answered:
        cleanup(cfg, args.tmux_socket)
        return 0 if answered else 1
    socket = "" if args.tmux_socket == SOCKET else f" --tmux-socket {shlex.quote(args.tmux_socket)}"
    print(f"The demo keeps running. Look at the PS pane: tmux -L {args.tmux_socket} attach -t {SESSION}\n"
          f"(detach with Ctrl-b d). Watch it: ps-health status --watch\n"
          f"Clean up: ps-health demo --cleanup{socket}")
    return 0
