"""The agent's and the operator's commands, end to end through `ps-health` against a real database."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from datetime import datetime, timedelta, timezone

import pytest

from reactor.cli import main as cli
from tests.support import CLI, PANE_ENV, ROOT, ok, refused, run_cli, snapshot, unreachable_dsn, wait_for


def session(conn, project: str) -> dict:
    return conn.execute("SELECT * FROM ps_sessions WHERE project = %s", (project,)).fetchone()


def _leaf_parsers(parser, path=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield from _leaf_parsers(sub, (*path, name))
            return
    yield path, parser


MINE = {"session", "context", "statusline", "hook", "setup", "spawn", "respond", "handoff", "instructions", "status",
        "checks", "prompts", "mute", "unmute", "forget", "settings", "check", "demo", "doctor", "reactor", "cron",
        "db", "migrate", "drift"}


def test_every_command_has_help_with_examples():
    leaves = [(path, p) for path, p in _leaf_parsers(cli.build_parser()) if path]
    assert {path[0] for path, _ in leaves} == MINE
    for path, parser in leaves:
        text = parser.format_help()
        assert parser.description, f"{' '.join(path)} has no description"
        assert "examples:" in text and "ps-health" in text, f"{' '.join(path)} --help shows no example"
    res = ok(None, "spawn", "run", "--help")
    assert "-- make test" in res.stdout


def test_session_register_heartbeat_end(db, conn):
    res = ok(db, "session", "register", "alpha", "--transcript", "/tmp/t.jsonl", env=PANE_ENV)
    assert "registered alpha" in res.stdout and "host-a:%7" in res.stdout
    s = session(conn, "alpha")
    assert (s["tmux_target"], s["host"], s["transcript_path"], s["ended_at"]) == ("%7", "host-a", "/tmp/t.jsonl", None)
    before = s["last_activity"]
    ok(db, "session", "heartbeat", "alpha")
    assert session(conn, "alpha")["last_activity"] > before
    res = ok(db, "session", "end", "alpha")
    assert "session ended" in res.stdout
    assert session(conn, "alpha")["ended_at"] is not None


def test_session_register_json_with_explicit_target(db, conn):
    res = ok(db, "session", "register", "beta", "--target", "work:1.0", "--host", "h9", "--type", "sdk", "--json")
    data = json.loads(res.stdout)
    assert data["target"] == "work:1.0" and data["host"] == "h9" and data["id"] == session(conn, "beta")["id"]
    assert session(conn, "beta")["session_type"] == "sdk"


@pytest.mark.parametrize("args", [("session", "heartbeat", "ghost"), ("session", "end", "ghost"),
                                  ("context", "ghost", "--percent", "10"),
                                  ("handoff", "done", "--project", "ghost", "--file", "h.md")])
def test_unknown_project_is_refused_by_name(db, conn, args):
    res = refused(db, *args)
    assert 'unknown project "ghost"' in res.stderr
    assert conn.execute("SELECT count(*) AS n FROM health_checks").fetchone()["n"] == 0


def test_bad_session_type_is_refused_naming_the_value(db):
    res = refused(db, "session", "register", "alpha", "--type", "gui")
    assert "--type" in res.stderr and "gui" in res.stderr


def test_context_percent_and_tokens_are_recorded(db, conn):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    res = ok(db, "context", "alpha", "--percent", "42")
    assert "42%" in res.stdout
    assert float(session(conn, "alpha")["context_usage"]) == pytest.approx(0.42)
    res = ok(db, "context", "--project", "alpha", "--tokens-used", "150000", "--tokens-total", "200000", "--json")
    assert json.loads(res.stdout)["percent"] == 75
    s = session(conn, "alpha")
    assert (float(s["context_usage"]), s["estimated_tokens_used"]) == (0.75, 150000)
    state = conn.execute("SELECT status FROM check_state WHERE project = 'alpha' AND subject = 'session'").fetchone()
    assert state["status"] == "warning", "75% crosses the default warning line at once"


def test_context_over_100_percent_is_refused_before_the_database(db, conn):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    before = snapshot(conn)
    res = refused(db, "context", "alpha", "--percent", "150")
    assert "--percent" in res.stderr and "150" in res.stderr
    assert snapshot(conn) == before


def test_context_needs_one_project(db):
    res = refused(db, "context", "--percent", "10")
    assert "PROJECT or --project" in res.stderr


@pytest.mark.parametrize("raw", ["not json", "[]", '{"session_id": 5}',
                                 '{"session_id": "s", "context_window": {"used_percentage": 180}}', ""])
def test_statusline_with_malformed_input_prints_the_fallback_and_records_nothing(tmp_path, raw):
    res = ok(None, "statusline", stdin=raw, env={**PANE_ENV, "PS_HEALTH_SPOOL": str(tmp_path)})
    assert res.stdout.strip() == "ps-health: unavailable (bad statusline input)"
    assert res.stderr == ""
    assert not (tmp_path / "facts.jsonl").exists()


def test_statusline_needs_no_database_and_says_offline_without_a_reactor(tmp_path):
    payload = json.dumps({"session_id": "s", "cwd": "/src/alpha", "context_window": {"used_percentage": 50}})
    res = run_cli(unreachable_dsn(), "statusline", stdin=payload, timeout=20,
                  env={**PANE_ENV, "PS_HEALTH_SPOOL": str(tmp_path)})
    assert res.returncode == 0 and res.stderr == ""
    assert res.stdout.strip() == "ps-health alpha · ctx 50% · offline"
    fact = json.loads((tmp_path / "facts.jsonl").read_text())
    assert (fact["kind"], fact["project"], fact["pane"], fact["data"]["percent"]) == ("context", "alpha", "%7", 50)


def test_respond_stores_the_answer_and_acknowledges(db, conn):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    ok(db, "context", "alpha", "--percent", "90")
    check_id = conn.execute("SELECT last_check_id FROM check_state WHERE project = 'alpha' AND check_type = 'context' "
                            "AND subject = 'session'").fetchone()["last_check_id"]
    res = ok(db, "respond", str(check_id), "writing the handoff now")
    assert f"check #{check_id}" in res.stdout
    row = conn.execute("SELECT ps_response FROM health_checks WHERE id = %s", (check_id,)).fetchone()
    assert row["ps_response"] == "writing the handoff now"
    state = conn.execute("SELECT acknowledged_at FROM check_state WHERE last_check_id = %s", (check_id,)).fetchone()
    assert state["acknowledged_at"] is not None


def test_respond_to_an_unknown_check_is_refused(db):
    res = refused(db, "respond", "4242", "done")
    assert "unknown check id 4242" in res.stderr
    res = refused(db, "respond", "four", "done")
    assert "CHECK_ID" in res.stderr and "four" in res.stderr


def test_handoff_done_closes_the_request(db, conn):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    ok(db, "context", "alpha", "--percent", "90")
    res = ok(db, "handoff", "done", "--project", "alpha", "--file", "/work/docs/handoff.md")
    assert "handoff /work/docs/handoff.md recorded" in res.stdout
    s = session(conn, "alpha")
    assert s["handoff_file"] == "/work/docs/handoff.md" and s["handoff_done_at"] >= s["handoff_requested_at"]
    state = conn.execute("SELECT status FROM check_state WHERE project = 'alpha' AND check_type = 'handoff'").fetchone()
    assert state["status"] == "ok"


def test_mute_suppresses_prompts_until_unmuted(db, conn):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    res = ok(db, "mute", "alpha", "--for", "1h30m", "--reason", "deploying", "--json")
    until = datetime.fromisoformat(json.loads(res.stdout)["until"])
    assert abs(until - datetime.now(timezone.utc) - timedelta(minutes=90)) < timedelta(minutes=1)
    ok(db, "context", "alpha", "--percent", "90")
    states = [r["state"] for r in conn.execute("SELECT state FROM prompts WHERE project = 'alpha'")]
    assert states == ["suppressed"]
    assert "unmuted" in ok(db, "unmute", "alpha").stdout
    assert "was not muted" in ok(db, "unmute", "alpha").stdout
    assert conn.execute("SELECT count(*) AS n FROM mutes").fetchone()["n"] == 0


@pytest.mark.parametrize("args,flag,value", [
    (("mute", "alpha", "--for", "30x"), "--for", "30x"),
    (("mute", "alpha", "--for", "0m"), "--for", "0m"),
    (("checks", "--since", "two hours"), "--since", "two hours"),
    (("spawn", "run", "--project", "a", "--task-id", "t", "--type", "x", "--report-every", "5q", "--", "true"),
     "--report-every", "5q"),
])
def test_bad_duration_is_refused_naming_the_flag(db, conn, args, flag, value):
    res = refused(db, *args)
    assert flag in res.stderr and value in res.stderr
    assert conn.execute("SELECT count(*) AS n FROM mutes").fetchone()["n"] == 0


def test_settings_show_set_reset(db, conn):
    res = refused(db, "settings", "set", "--project", "alpah", "stall_after", "20 minutes")  # a typo
    assert 'unknown project "alpah": no session registered' in res.stderr and "--ahead" in res.stderr
    assert conn.execute("SELECT count(*) AS n FROM ps_health.settings").fetchone()["n"] == 0
    ok(db, "settings", "set", "--project", "alpha", "--ahead", "stall_after", "20 minutes")  # before its session
    ok(db, "settings", "set", "context_warning", "0.6")
    rows = {r["key"]: r for r in json.loads(ok(db, "settings", "show", "--project", "alpha", "--json").stdout)}
    assert (rows["stall_after"]["value"], rows["stall_after"]["source"]) == ("20 minutes", "project")
    assert (rows["context_warning"]["value"], rows["context_warning"]["source"]) == ("0.6", "global")
    assert rows["abandon_after"]["source"] == "default" and rows["abandon_after"]["description"]
    text = ok(db, "settings", "show").stdout
    assert "stall_after" in text and "15 minutes" in text and "default" in text
    one = ok(db, "settings", "show", "--project", "alpha", "stall_after").stdout.splitlines()
    assert len(one) == 2 and one[1].split()[:4] == ["stall_after", "20", "minutes", "project"], one
    assert "KEY: unknown setting 'stal_after'" in refused(db, "settings", "show", "stal_after").stderr
    ok(db, "session", "register", "alpha", "--target", "%1")
    ok(db, "settings", "set", "--project", "alpha", "abandon_after", "2 hours")  # a project with a session
    res = ok(db, "settings", "reset", "--project", "alpha", "stall_after")
    assert "now 15 minutes" in res.stdout
    rows = {r["key"]: r for r in json.loads(ok(db, "settings", "show", "--project", "alpha", "--json").stdout)}
    assert rows["stall_after"]["source"] == "default"


def test_settings_refuse_unknown_keys_and_bad_values(db):
    assert 'unknown setting "stal_after"' in refused(db, "settings", "set", "stal_after", "1 minute").stderr
    assert '"soon"' in refused(db, "settings", "set", "stall_after", "soon").stderr
    assert "context_warning" in refused(db, "settings", "set", "context_warning", "70").stderr


def test_check_runs_a_sweep_and_prints_what_changed(db, conn):
    conn.execute("SELECT register_session('alpha', 'cli', '%7', 'host-a', p_now => now() - interval '30 minutes')")
    conn.execute("SELECT set_setting('context_check_interval', '2 hours', 'alpha')")
    conn.execute("SELECT start_spawn('alpha', 'slow-1', 'research', p_now => now() - interval '20 minutes')")
    conn.execute("SELECT heartbeat_session('alpha')")
    res = ok(db, "check")
    assert "sweep done" in res.stdout and "alpha: spawn slow-1 -> warning" in res.stdout
    data = json.loads(ok(db, "check", "--json").stdout)
    assert data["changes"] == [] and data["sweep"]["targets"] == 2
    assert conn.execute("SELECT count(*) AS n FROM sweep_runs WHERE source = 'cli'").fetchone()["n"] == 2


def test_checks_lists_history_with_filters(db, conn):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    ok(db, "session", "register", "beta", "--target", "%9")
    ok(db, "context", "alpha", "--percent", "90")
    ok(db, "context", "beta", "--percent", "75")
    conn.execute("UPDATE health_checks SET check_time = now() - interval '3 hours' WHERE project = 'beta'")
    rows = json.loads(ok(db, "checks", "--json").stdout)
    assert {r["project"] for r in rows} == {"alpha", "beta"}
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    rows = json.loads(ok(db, "checks", "--since", "2h", "--json").stdout)
    assert {r["project"] for r in rows} == {"alpha"}
    rows = json.loads(ok(db, "checks", "--project", "beta", "--status", "warning", "--type", "context",
                         "--json").stdout)
    assert len(rows) == 1 and rows[0]["status"] == "warning"
    assert len(json.loads(ok(db, "checks", "--limit", "1", "--json").stdout)) == 1
    text = ok(db, "checks", "--project", "alpha").stdout
    assert "critical" in text and "queued prompt" in text
    assert "no checks match" in ok(db, "checks", "--project", "nobody").stdout
    err = refused(db, "checks", "--type", "spwan").stderr  # the database's own list, not a copy of it
    assert 'check type must be one of spawn, context, handoff, orphaned_work' in err and '"spwan"' in err
    assert 'status must be one of ok, warning, critical, got "bad"' in refused(db, "checks", "--status", "bad").stderr


def test_prompts_lists_the_outbox(db):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    ok(db, "context", "alpha", "--percent", "90")
    rows = json.loads(ok(db, "prompts", "--state", "pending", "--json").stdout)
    assert len(rows) == 1
    assert rows[0]["severity"] == "critical" and rows[0]["target"] == "%7"
    assert "ps-health respond" in rows[0]["text"]
    text = ok(db, "prompts", "--project", "alpha").stdout
    assert "pending" in text and f"[ps-health #{rows[0]['id']}] alpha" in text
    assert json.loads(ok(db, "prompts", "--state", "delivered", "--json").stdout) == []
    err = refused(db, "prompts", "--state", "lost").stderr
    assert 'state must be one of waiting, pending, claimed, delivered, failed, suppressed, expired, got "lost"' in err


def test_status_json_reflects_sessions_spawns_and_open_alerts(db, conn):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    ok(db, "session", "register", "beta", "--target", "%9", "--host", "host-b")
    ok(db, "context", "alpha", "--percent", "72")
    ok(db, "spawn", "start", "alpha", "r1", "--type", "research")
    ok(db, "spawn", "start", "alpha", "r2", "--type", "research")
    ok(db, "spawn", "start", "alpha", "b1", "--type", "build")
    conn.execute("SELECT set_spawn_status('alpha', 'r2', 'stalled')")
    ok(db, "spawn", "finish", "alpha", "b1", "--exit-code", "1", "--error", "boom")
    ok(db, "mute", "beta", "--for", "10m")
    ok(db, "session", "end", "beta")
    data = json.loads(ok(db, "status", "--json").stdout)
    assert set(data) == {"now", "system", "projects"}
    assert data["system"]["last_sweep_at"] is None and data["system"]["reactors"] == []
    rows = {r["project"]: r for r in data["projects"]}
    alpha, beta = rows["alpha"], rows["beta"]
    assert (alpha["session_state"], alpha["tmux_target"], alpha["host"]) == ("active", "%7", "host-a")
    assert alpha["context_percent"] == 72 and (alpha["running"], alpha["stalled"]) == (1, 1)
    assert alpha["open_alerts"] == 2 and alpha["worst_status"] == "critical"
    assert {(a["check_type"], a["subject"]) for a in alpha["alerts"]} == {("context", "session"), ("spawn", "b1")}
    assert alpha["last_prompt_state"] == "pending" and alpha["last_prompt_delivered"] is False
    assert beta["session_state"] == "ended" and beta["muted_until"] is not None and beta["open_alerts"] == 0


def test_status_table_shows_the_system_line_bars_and_ages(db, conn):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    ok(db, "context", "alpha", "--percent", "72")
    conn.execute("SELECT run_checks()")
    conn.execute("UPDATE sweep_runs SET started_at = now() - interval '3 minutes'")
    conn.execute("INSERT INTO reactors VALUES ('w1', 'host-a', now())")  # claimed once, not running now
    # Ages in whole minutes, set in the database: the run may take seconds on a busy machine.
    conn.execute("UPDATE ps_sessions SET last_activity = now() - interval '10 minutes'")
    out = ok(db, "status").stdout
    assert "system: last sweep 3m ago · reactors running: 0" in out
    assert ", no scheduled sweep yet" in out and "no pg_cron sweep" not in out
    line = next(line for line in out.splitlines() if line.startswith("alpha"))
    assert "███████░░░ 72%" in line and "host-a:%7" in line and "10m ago" in line


def test_status_watch_redraws_until_ctrl_c(db):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PS_HEALTH_", "PG"))}
    env.update(PS_HEALTH_DSN=db, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([*CLI, "status", "--watch", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: sum("refreshing every 0.2 s" in line for line in out) >= 2, timeout=20,
                 what="two frames of status --watch")
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    assert rc == 0, proc.stderr.read()
    assert "\x1b[H\x1b[2J" in "".join(out) and "system: last sweep never" in "".join(out)


def test_status_watch_refuses_json_and_non_positive_intervals(db):
    assert "--json without --watch" in refused(db, "status", "--watch", "--json").stderr
    assert "argument --watch: must be above 0" in refused(db, "status", "--watch", "0").stderr
    assert "at most 86400 seconds, got 1e300" in refused(db, "status", "--watch", "1e300").stderr


def test_status_with_the_database_unreachable_fails_with_exit_1():
    res = run_cli(unreachable_dsn(), "status", timeout=20)
    assert res.returncode == 1 and "database unavailable" in res.stderr


def test_instructions_print_the_ps_guide():
    res = ok(None, "instructions", "--project", "myproj")
    assert res.stdout in (ROOT / "docs" / "ps-instructions.md").read_text(), "the guide's own section, as written"
    assert "ps-health respond" in res.stdout and "ps-health spawn run" in res.stdout


@pytest.mark.parametrize("args", [("session", "register", "beta", "--target", "%8", "--host", ""),
                                  ("doctor", "--host", " "), ("reactor", "--host", "")])
def test_an_empty_host_label_is_refused_not_taken_as_the_default(db, conn, args):
    res = refused(db, *args)
    assert "argument --host: must not be empty" in res.stderr
    assert conn.execute("SELECT count(*) AS n FROM ps_health.ps_sessions").fetchone()["n"] == 0


@pytest.mark.parametrize("port", ["70000", "0", "-1"])
def test_a_port_out_of_range_is_refused_naming_the_variable(tmp_path, port):
    res = run_cli(None, "db", "url", env={"PS_HEALTH_PORT": port, "PS_HEALTH_HOME": str(tmp_path)})
    assert res.returncode != 0
    assert f"PS_HEALTH_PORT must be a port number from 1 to 65535, got '{port}'" in res.stderr


def test_status_sees_pg_cron_running_for_the_server_when_its_extension_is_in_another_database(db, conn):
    # pg_cron lives in cron.database_name and schedules into this database (ps-health cron install)
    assert conn.execute("SELECT count(*) AS n FROM pg_extension WHERE extname = 'pg_cron'").fetchone()["n"] == 0
    if not conn.execute("SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'").fetchone():
        pytest.skip("this server does not run pg_cron")
    assert "pg_cron: present" in ok(db, "status").stdout
