"""`make test`: one throw-away cluster and migrated template, pgTAP through pg_prove, then pytest in
parallel workers against the same server. The run fails when any process it started outlives it."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests import pg

ROOT = Path(__file__).resolve().parent.parent
PR_SET_CHILD_SUBREAPER = 36
# Workers over the template clones: most tests wait on processes, panes and pg_cron, not on a core;
# worksteal lets idle workers take the tests queued behind one that waits a minute for pg_cron.
WORKERS = os.environ.get("PS_HEALTH_TEST_WORKERS", "4")


def become_subreaper() -> None:
    """Orphaned descendants (daemonised tmux servers, PostgreSQL) are re-parented to this process."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap() -> None:
    """Collect every exited child (orphans that finished become this process's zombies)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def descendants(root: int | None = None) -> dict[int, str]:
    """Live descendants of root (default: this process): pid -> command line."""
    root = root or os.getpid()
    parent, alive, cmd = {}, set(), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2:].split()
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        if fields[0] != "Z":
            alive.add(pid)
        cmd[pid] = argv.replace(b"\0", b" ").decode(errors="replace").strip() or stat.split(" ", 1)[1][:40]
    found, frontier = {}, [root]
    while frontier:
        here = frontier.pop()
        for pid, ppid in parent.items():
            if ppid == here and pid not in found:
                found[pid] = cmd[pid]
                frontier.append(pid)
    return {pid: line for pid, line in found.items() if pid in alive}


def stop_leftovers(grace: float = 2.0) -> dict[int, str]:
    """Wait briefly for descendants to exit, then kill those left; return what was left."""
    deadline = time.monotonic() + grace
    while True:
        reap()
        left = descendants()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in descendants():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + 5
        while descendants() and time.monotonic() < end:
            reap()
            time.sleep(0.05)
    reap()
    return left


def wait_reaping(proc: subprocess.Popen) -> int:
    """Wait for proc, collecting the orphans that exit meanwhile; return proc's exit code."""
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode


def run_pgtap(admin_dsn: str) -> int:
    """pg_prove over tests/sql in a clone of the template, with pgTAP added."""
    dsn = pg.clone(admin_dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgtap")
    info = conninfo_to_dict(dsn)
    files = sorted(str(p) for p in (ROOT / "tests" / "sql").glob("*.sql"))
    cmd = ["pg_prove", "--ext", ".sql", "-d", info["dbname"], "-h", info["host"], "-p", str(info["port"]),
           "-U", info.get("user", "postgres"), *files]
    rc = subprocess.call(cmd)
    pg.drop(admin_dsn, dsn)
    return rc


def pytest_argv(args: list[str]) -> list[str]:
    """pytest with parallel workers (unless the caller chose -n, or PS_HEALTH_TEST_WORKERS=0)."""
    chosen = any(a == "-n" or a.startswith(("-n", "--numprocesses")) or a.endswith("no:xdist") for a in args)
    workers = [] if chosen or WORKERS in ("", "0") else ["-n", WORKERS, "--dist", "worksteal"]
    return [sys.executable, "-m", "pytest", *workers, *args]


def _interrupted(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (a CI timeout) cleans up like Ctrl-C


def main(argv: list[str]) -> int:
    become_subreaper()
    signal.signal(signal.SIGTERM, _interrupted)
    what = argv[0] if argv else "all"
    external = os.environ.get("PS_HEALTH_TEST_DSN")
    cluster = pytest_proc = None
    rc = 0
    try:
        if external:
            admin = external
        else:
            cluster = pg.start_cluster()
            admin = make_conninfo(cluster.dsn("postgres"))
            print(f"test cluster: {cluster.home} (port {cluster.port})", flush=True)
        template = os.environ.get("PS_HEALTH_TEST_TEMPLATE")
        if not template:
            pg.migrate_template(admin)  # once, before any worker starts
            template = pg.TEMPLATE
        if what in ("all", "sql"):
            rc |= run_pgtap(admin)
        if what in ("all", "py"):
            env = dict(os.environ, PS_HEALTH_TEST_DSN=admin, PS_HEALTH_TEST_TEMPLATE=template)
            if cluster:
                env["PS_HEALTH_TEST_CLUSTER_HOME"] = str(cluster.home)
            pytest_proc = subprocess.Popen(pytest_argv(argv[1:]), env=env, cwd=ROOT)
            rc |= wait_reaping(pytest_proc)
    except KeyboardInterrupt:
        rc = 130
    finally:
        try:
            if pytest_proc and pytest_proc.returncode is None:
                pytest_proc.terminate()
                try:
                    pytest_proc.wait(30)
                except subprocess.TimeoutExpired:
                    pytest_proc.kill()
                    pytest_proc.wait()
            if cluster:
                cluster.destroy()
        finally:
            leaked = stop_leftovers()
    if leaked:
        print(f"\ntests.harness: FAILED: {len(leaked)} process(es) started by the tests outlived them "
              "(killed now):", file=sys.stderr)
        for pid, line in sorted(leaked.items()):
            print(f"  pid {pid}: {line[:200]}", file=sys.stderr)
        rc = rc or 3
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
