"""`ps-health doctor` end to end: a real database, a real tmux server, a real reactor, pg_cron."""

from __future__ import annotations

import json
import re
import shutil

import psycopg
import pytest

from reactor.db import migrate
from tests.pg import free_port
from tests.reactor_proc import HOST, session
from tests.support import run_cli, wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def claude_home(tmp_path, statusline: bool = True) -> dict:
    """A HOME whose Claude Code settings run (or do not run) `ps-health statusline`."""
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    settings = ({"statusLine": {"type": "command", "command": "ps-health statusline"}} if statusline
                else {"theme": "dark"})
    (home / ".claude" / "settings.json").write_text(json.dumps(settings))
    return {"HOME": str(home)}


def doctor(dsn, tmux, tmp_path, *extra: str, statusline: bool = True, host: str = HOST):
    env = {**claude_home(tmp_path, statusline), "PS_HEALTH_HOST": host, "PS_HEALTH_TMUX_SOCKET": tmux.name}
    return run_cli(dsn, "doctor", *extra, env=env, cwd=str(tmp_path))


def lines(out: str) -> dict[str, str]:
    """check name -> its line, from the text report."""
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s+(ok|warn|fail|skip)\s+(\w+)\s+(.*)", line)
        if m:
            found[m.group(2)] = f"{m.group(1)} {m.group(3)}"
    return found


def test_a_host_set_up_right_reads_ok_on_every_line(db, conn, tmux_server, tmp_path):
    pane = tmux_server.recorder()
    session(conn, "alpha", pane.target)
    conn.execute("SELECT run_checks(now(), 'reactor')")            # the reactor's fallback sweep ran
    res = doctor(db, tmux_server, tmp_path, "--before-reactor")
    assert res.returncode == 0, res.stdout + res.stderr
    found = lines(res.stdout)
    assert set(found) == {"database", "schema", "sweep", "reactor", "tmux", "panes", "statusline"}
    assert all(line.startswith("ok ") for line in found.values()), res.stdout
    assert found["schema"] == f"ok version {migrate.discover()[-1].version}, functions current"
    assert found["reactor"] == f"ok no reactor for host {HOST} yet: it starts next"
    assert found["panes"] == f"ok all 1 registered pane(s) of host {HOST} found"
    assert found["tmux"] == f"ok tmux server {tmux_server.name} answers"
    assert "fix:" not in res.stdout and res.stdout.rstrip().endswith("7 ok, 0 warn, 0 fail")


def test_what_is_wrong_fails_with_the_fix_and_exit_1(db, conn, tmux_server, tmp_path):
    pane = tmux_server.recorder()
    session(conn, "alpha", pane.target)
    session(conn, "typo", "%999")                                   # a pane that is not there
    res = doctor(db, tmux_server, tmp_path, statusline=False)
    assert res.returncode == 1
    found = lines(res.stdout)
    assert found["sweep"].startswith("fail no sweep") and "fix: ps-health cron install" in found["sweep"]
    assert found["reactor"] == (f"fail no reactor is running for host {HOST} — fix: start one: ps-health reactor "
                                "(or make run; under systemd: systemctl start ps-health-reactor)")
    assert found["panes"].startswith(f"fail 1 of 2 registered pane(s) not found on tmux server {tmux_server.name}: "
                                     "typo (%999)")
    assert "ps-health forget PROJECT" in found["panes"]
    assert found["statusline"].startswith("warn no Claude Code settings run `ps-health statusline`")
    assert '"command": "ps-health statusline"' in found["statusline"]
    data = json.loads(run_cli(db, "doctor", "--json", env={**claude_home(tmp_path), "PS_HEALTH_HOST": HOST,
                                                           "PS_HEALTH_TMUX_SOCKET": tmux_server.name}).stdout)
    assert data["ok"] is False and {c["name"]: c["status"] for c in data["checks"]}["reactor"] == "fail"


def test_a_running_reactor_is_named_and_a_second_one_would_be_refused(db, tmux_server, reactors, tmp_path):
    proc = reactors.start()
    wait_for(lambda: "listening on channel" in proc.text(), what="the reactor serving")
    found = lines(doctor(db, tmux_server, tmp_path).stdout)
    assert found["reactor"].startswith(f"ok reactor {proc.worker} serves host {HOST}")
    res = doctor(db, tmux_server, tmp_path, "--before-reactor")
    assert res.returncode == 1
    assert lines(res.stdout)["reactor"].startswith(f"fail a reactor for host {HOST} is already running "
                                                   f"(worker {proc.worker}")


def test_without_the_database_the_checks_that_need_it_are_skipped(tmux_server, tmp_path):
    dsn = f"host=127.0.0.1 port={free_port()} dbname=nothing user=nobody connect_timeout=2"
    res = doctor(dsn, tmux_server, tmp_path)
    assert res.returncode == 1
    found = lines(res.stdout)
    assert found["database"].startswith("fail database unavailable")
    assert all(found[name].startswith("skip") for name in ("sweep", "reactor", "tmux", "panes"))
    assert found["statusline"].startswith("ok Claude Code runs `ps-health statusline`")


def test_a_database_without_the_schema_says_to_migrate(empty_db, tmux_server, tmp_path):
    found = lines(doctor(empty_db, tmux_server, tmp_path).stdout)
    assert found["schema"] == "fail this database has no ps-health schema — fix: ps-health migrate"


def test_right_after_cron_install_a_fresh_install_reads_healthy(cron_db, tmux_server, tmp_path):
    # what `make run` shows: the jobs just scheduled, no sweep yet, the reactor about to start
    with psycopg.connect(cron_db, autocommit=True) as c:
        c.execute("DELETE FROM ps_health.sweep_runs")
        c.execute("DELETE FROM ps_health.reactors")
    assert run_cli(cron_db, "cron", "install").returncode == 0
    res = doctor(cron_db, tmux_server, tmp_path, "--before-reactor")
    found = lines(res.stdout)
    # (pg_cron may have run the first sweep already, at the turn of the minute)
    assert found["sweep"].startswith(("ok pg_cron sweep scheduled every minute; the first one runs within a minute",
                                      "ok pg_cron sweeps every minute")), res.stdout
    assert res.returncode == 0, res.stdout
    status = run_cli(cron_db, "status").stdout
    assert re.search(r"pg_cron: present, (no scheduled sweep yet|sweeping every minute)", status), status
