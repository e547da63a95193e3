"""`ps-health spawn`: recording spawns by hand, and `spawn run` wrapping a real command."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from tests.pg import free_port
from tests.support import CLI, PANE_ENV, ROOT, ok, refused, run_cli, run_wrapped, spawn, wait_for


@pytest.fixture
def alpha(db):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    return db


def test_spawn_start_output_finish_by_hand(alpha, conn):
    res = ok(alpha, "spawn", "start", "alpha", "r1", "--type", "research", "--description", "survey",
             "--output", "/tmp/r1.log", "--pid", "4242", "--json", env=PANE_ENV)
    data = json.loads(res.stdout)
    sp = spawn(conn, "r1")
    assert data["id"] == sp["id"]
    assert (sp["status"], sp["task_type"], sp["output_file"], sp["pid"], sp["host"]) == \
        ("running", "research", "/tmp/r1.log", 4242, "host-a")
    ok(alpha, "spawn", "output", "alpha", "r1", env=PANE_ENV)
    assert spawn(conn, "r1")["last_output_change"] is not None
    res = ok(alpha, "spawn", "finish", "alpha", "r1", "--exit-code", "0")
    assert "r1 completed" in res.stdout
    assert spawn(conn, "r1")["status"] == "completed"


def test_spawn_finish_with_an_error_queues_a_critical_prompt(alpha, conn):
    ok(alpha, "spawn", "start", "alpha", "b1", "--type", "build")
    res = ok(alpha, "spawn", "finish", "alpha", "b1", "--exit-code", "2", "--error", "tests failed", "--json")
    assert json.loads(res.stdout)["status"] == "failed"
    prompt = conn.execute("SELECT severity, text FROM prompts WHERE project = 'alpha'").fetchone()
    assert prompt["severity"] == "critical" and "b1 (build) failed with exit code 2: tests failed" in prompt["text"]


def test_spawn_commands_refuse_unknown_spawns_and_duplicates(alpha):
    assert 'unknown spawn "nope" in project "alpha"' in refused(alpha, "spawn", "output", "alpha", "nope").stderr
    assert 'unknown spawn "nope"' in refused(alpha, "spawn", "finish", "alpha", "nope", "--exit-code", "0").stderr
    ok(alpha, "spawn", "start", "alpha", "r1", "--type", "research")
    assert 'spawn "r1" already exists' in refused(alpha, "spawn", "start", "alpha", "r1", "--type", "x").stderr
    assert "--pid" in refused(alpha, "spawn", "start", "alpha", "r2", "--type", "x", "--pid", "-3").stderr
    assert "--exit-code" in refused(alpha, "spawn", "finish", "alpha", "r1", "--exit-code", "x").stderr


def test_spawn_run_success_passes_output_through_and_completes(alpha, conn, tmp_path):
    log = tmp_path / "out.log"
    res = run_wrapped(alpha, "ok-1", "sh", "-c", "echo first; sleep 0.3; echo second",
                      extra=("--output", str(log), "--report-every", "1s"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["first", "second"]
    assert log.read_text() == "first\nsecond\n"
    sp = spawn(conn, "ok-1")
    assert (sp["status"], sp["exit_code"], sp["error_message"], sp["output_file"]) == ("completed", 0, None, str(log))
    assert sp["pid"] > 0 and sp["last_output_change"] >= sp["spawn_time"]
    assert conn.execute("SELECT count(*) AS n FROM prompts").fetchone()["n"] == 0


def test_spawn_run_failing_command_records_the_error_and_prompts(alpha, conn):
    res = run_wrapped(alpha, "fail-1", "sh", "-c", "echo compiling; echo 'error: missing semicolon' >&2; exit 3")
    assert res.returncode == 3
    assert "error: missing semicolon" in res.stderr
    sp = spawn(conn, "fail-1")
    assert (sp["status"], sp["exit_code"], sp["error_message"]) == ("failed", 3, "error: missing semicolon")
    prompt = conn.execute("SELECT severity, state, text FROM prompts WHERE project = 'alpha'").fetchone()
    assert prompt["severity"] == "critical" and prompt["state"] == "pending"
    assert "fail-1 (build) failed with exit code 3: error: missing semicolon" in prompt["text"]


def test_spawn_run_missing_program_fails_with_127(alpha, conn):
    res = run_wrapped(alpha, "gone-1", "/nonexistent/tool", "--flag")
    assert res.returncode == 127
    sp = spawn(conn, "gone-1")
    assert sp["status"] == "failed" and "cannot run /nonexistent/tool" in sp["error_message"]


def test_spawn_run_sigterm_reaches_the_child_and_the_spawn_is_closed(alpha, conn, tmp_path):
    started, trapped = tmp_path / "started", tmp_path / "trapped"
    script = (f"trap 'echo term > {trapped}; exit 143' TERM; echo started > {started}; "
              "while true; do sleep 0.05; done")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PS_HEALTH_", "PG"))}
    env.update(PS_HEALTH_DSN=alpha, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([*CLI, "spawn", "run", "--project", "alpha", "--task-id", "long-1", "--type", "build",
                             "--", "sh", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_for(started.exists, timeout=20, what="the wrapped child to start")
        assert spawn(conn, "long-1")["status"] == "running"
        assert spawn(conn, "long-1")["pid"] == proc.pid, "the wrapper's pid is recorded: it lives as long as the child"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert trapped.read_text().strip() == "term", "the child's TERM trap ran"
    assert rc == 143
    sp = spawn(conn, "long-1")
    assert sp["status"] == "failed" and sp["exit_code"] == 143 and sp["completed_at"] is not None


def test_spawn_run_without_the_database_still_runs_the_command(tmp_path):
    marker = tmp_path / "ran"
    dsn = f"host=127.0.0.1 port={free_port()} dbname=x user=nobody connect_timeout=2"
    res = run_cli(dsn, "spawn", "run", "--project", "alpha", "--task-id", "t1", "--type", "build", "--",
                  "sh", "-c", f"touch {marker}; exit 5", timeout=30)
    assert res.returncode == 5 and marker.exists()
    assert "warning: spawn t1 not recorded" in res.stderr and "running it anyway" in res.stderr


def test_spawn_run_with_a_duplicate_task_id_does_not_run(alpha, conn, tmp_path):
    ok(alpha, "spawn", "start", "alpha", "dup", "--type", "build")
    marker = tmp_path / "ran"
    res = run_wrapped(alpha, "dup", "touch", str(marker))
    assert res.returncode == 2 and 'spawn "dup" already exists' in res.stderr
    assert not marker.exists()
    assert spawn(conn, "dup")["status"] == "running"


def test_spawn_run_needs_a_command(alpha):
    assert "no command given" in refused(alpha, "spawn", "run", "--project", "alpha", "--task-id", "t",
                                         "--type", "x").stderr


def test_relative_paths_are_recorded_from_the_folder_the_command_ran_in(alpha, conn, tmp_path):
    # The reactor runs in another folder: a relative path stored as given named another file there, the spawn's
    # output was never seen and it was reported stalled.
    ok(alpha, "spawn", "start", "alpha", "r2", "--type", "build", "--output", "logs/build-3.log", env=PANE_ENV,
       cwd=str(tmp_path))
    assert spawn(conn, "r2")["output_file"] == str(tmp_path / "logs" / "build-3.log")
    ok(alpha, "session", "register", "alpha", "--transcript", "t.jsonl", env=PANE_ENV, cwd=str(tmp_path))
    ok(alpha, "handoff", "done", "--project", "alpha", "--file", "handoff.md", cwd=str(tmp_path))
    row = conn.execute("SELECT transcript_path, handoff_file FROM ps_health.ps_sessions WHERE project = 'alpha'"
                       ).fetchone()
    assert (row["transcript_path"], row["handoff_file"]) == (str(tmp_path / "t.jsonl"), str(tmp_path / "handoff.md"))
    assert "--output: must be a file path, got ''" in refused(alpha, "spawn", "start", "alpha", "r3", "--type", "build",
                                                             "--output", "").stderr


def test_numbers_too_large_for_the_database_are_refused_naming_the_option(alpha):
    before = refused(alpha, "spawn", "finish", "alpha", "r1", "--exit-code", "99999999999")
    assert "--exit-code: must be between -2147483648 and 2147483647, got 99999999999" in before.stderr
    assert "CHECK_ID: must be between" in refused(alpha, "respond", "99999999999", "done").stderr
    assert "--pid: must be between" in refused(alpha, "spawn", "start", "alpha", "r4", "--type", "build",
                                               "--pid", "4294967296").stderr
