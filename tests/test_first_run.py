"""What a newcomer meets first, through `ps-health` against a real database: typos that change nothing,
`forget`, error messages that say what to do, prompts that say why they wait, the agent's instructions."""

from __future__ import annotations

import json

import pytest

from reactor.db.cluster import Cluster
from tests.pg import free_port
from tests.support import PANE_ENV, ok, refused, run_cli, snapshot, wait_for


def live_rows(conn, project: str) -> dict:
    """How many rows of the project's live state each table holds."""
    return conn.execute(
        "SELECT (SELECT count(*) FROM ps_sessions WHERE project = %(p)s) AS sessions,"
        " (SELECT count(*) FROM active_spawns WHERE project = %(p)s) AS spawns,"
        " (SELECT count(*) FROM check_state WHERE project = %(p)s) AS states,"
        " (SELECT count(*) FROM prompts"
        "   WHERE project = %(p)s AND state IN ('waiting', 'pending', 'claimed')) AS queued,"
        " (SELECT count(*) FROM mutes WHERE project = %(p)s) AS mutes,"
        " (SELECT count(*) FROM settings WHERE project = %(p)s) AS settings", {"p": project}).fetchone()


def test_spawn_and_mute_for_a_project_without_a_session_are_refused_and_change_nothing(db, conn):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    before = snapshot(conn)
    res = refused(db, "spawn", "start", "alhpa", "research-1", "--type", "research")
    assert 'unknown project "alhpa": no session registered' in res.stderr
    assert "ps-health status lists the projects" in res.stderr and "session register" in res.stderr
    res = refused(db, "spawn", "run", "--project", "alhpa", "--task-id", "t1", "--type", "build", "--",
                  "sh", "-c", "echo ran")
    assert 'unknown project "alhpa"' in res.stderr and "ran" not in res.stdout
    res = refused(db, "mute", "alhpa", "--for", "30m")
    assert 'unknown project "alhpa"' in res.stderr and "--ahead" in res.stderr
    assert snapshot(conn) == before
    assert conn.execute("SELECT count(*) AS n FROM mutes").fetchone()["n"] == 0
    assert [p["project"] for p in json.loads(ok(db, "status", "--json").stdout)["projects"]] == ["alpha"]


def test_mute_ahead_of_the_first_session_is_allowed_when_asked_for(db, conn):
    res = ok(db, "mute", "newproj", "--for", "2h", "--ahead", "--reason", "starts tomorrow")
    assert "newproj: muted until" in res.stdout
    assert conn.execute("SELECT reason FROM mutes WHERE project = 'newproj'").fetchone()["reason"] == "starts tomorrow"


def test_forget_removes_the_live_state_and_keeps_the_audit(db, conn):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    ok(db, "session", "register", "beta", "--target", "%9", env={"PS_HEALTH_HOST": "host-a"})
    ok(db, "spawn", "start", "alpha", "r1", "--type", "research")
    ok(db, "context", "alpha", "--percent", "90")             # critical: a prompt is queued
    ok(db, "mute", "alpha", "--for", "1h")
    ok(db, "settings", "set", "--project", "alpha", "stall_after", "20 minutes")
    checks = conn.execute("SELECT count(*) AS n FROM health_checks WHERE project = 'alpha'").fetchone()["n"]
    assert checks > 0 and all(live_rows(conn, "alpha").values())

    res = ok(db, "forget", "alpha")
    assert res.stdout.startswith("alpha: forgotten (1 session, 1 spawn(s), 2 open problem(s), 1 queued prompt(s), "
                                 "1 mute, 1 setting override(s)); its health checks stay until retention")
    assert not any(live_rows(conn, "alpha").values())
    assert conn.execute("SELECT count(*) AS n FROM health_checks WHERE project = 'alpha'").fetchone()["n"] == checks
    projects = [p["project"] for p in json.loads(ok(db, "status", "--json").stdout)["projects"]]
    assert projects == ["beta"], "the other project is untouched"
    assert any(live_rows(conn, "beta").values())

    res = refused(db, "forget", "alpha")
    assert 'unknown project "alpha": nothing to forget' in res.stderr
    # the project can start again from nothing
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    assert live_rows(conn, "alpha")["sessions"] == 1


def test_forget_json_says_what_was_removed(db):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    removed = json.loads(ok(db, "forget", "alpha", "--json").stdout)
    assert removed == {"project": "alpha", "session": 1, "spawns": 0, "open_problems": 0, "queued_prompts": 0,
                       "mute": 0, "settings": 0}


def test_a_zero_duration_is_refused_as_not_positive(db, conn):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    res = refused(db, "mute", "alpha", "--for", "0s")
    assert "--for: must be a positive duration, got '0s'" in res.stderr
    assert "bad duration" not in res.stderr
    assert conn.execute("SELECT count(*) AS n FROM mutes").fetchone()["n"] == 0


def test_without_a_database_the_message_says_where_the_embedded_one_was_looked_for(tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    res = run_cli(None, "status", cwd=str(folder))
    assert res.returncode == 1
    assert "no embedded database in" in res.stderr and "elsewhere/.ps-health" in res.stderr
    assert "would create" in res.stderr and "PS_HEALTH_HOME" in res.stderr
    assert "no database configured" not in res.stderr
    assert not (folder / ".ps-health").exists(), "looking creates nothing"


def test_with_the_embedded_database_stopped_the_message_says_so_and_how_to_start_it(tmp_path):
    home = tmp_path / ".ps-health"
    cluster = Cluster(home, free_port(), fast=True)
    try:
        cluster.up()
        cluster.down()
        env = {"PS_HEALTH_HOME": str(home), "PS_HEALTH_PORT": str(cluster.port)}
        res = run_cli(None, "status", env=env)
        assert res.returncode == 1
        assert f"the embedded database in {cluster.home}" in res.stderr and "is stopped" in res.stderr
        assert "ps-health db up" in res.stderr and f"PS_HEALTH_HOME={home}" in res.stderr
    finally:
        cluster.destroy()


def test_a_database_without_the_schema_gives_the_hint_to_migrate(empty_db):
    res = run_cli(empty_db, "status")
    assert res.returncode == 1
    assert 'schema "ps_health" does not exist [3F000]' in res.stderr
    assert "run `ps-health migrate`" in res.stderr
    res = run_cli(empty_db, "session", "register", "alpha", "--target", "%1")
    assert res.returncode == 1 and "ps-health migrate" in res.stderr


def test_prompts_say_why_they_wait(db, conn):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    ok(db, "context", "alpha", "--percent", "75")              # a warning prompt, ready
    first = conn.execute("SELECT max(id) AS id FROM prompts WHERE project = 'alpha'").fetchone()["id"]
    rows = {r["id"]: r for r in json.loads(ok(db, "prompts", "--json").stdout)}
    assert rows[first]["reason"] == "waiting for a reactor on host host-a (none running)"

    # delivered, then a second problem within the rate interval: it waits for the cap
    conn.execute("SELECT claim_prompts('host-a', 'w1', 10, 60)")
    conn.execute("SELECT complete_prompt(%s, 'w1', 'delivered')", (first,))
    conn.execute("SELECT start_spawn('alpha', 'slow', 'research', p_now => now() - interval '20 minutes')")
    conn.execute("SELECT run_checks()")
    limited = conn.execute("SELECT id, not_before FROM prompts WHERE project = 'alpha' AND id > %s",
                           (first,)).fetchone()
    # the project's session ends with the spawn still running: orphaned work waits for a session
    ok(db, "session", "register", "beta", "--target", "%9", env={"PS_HEALTH_HOST": "host-a"})
    ok(db, "spawn", "start", "beta", "b1", "--type", "build")
    ok(db, "session", "end", "beta")

    rows = {r["id"]: r for r in json.loads(ok(db, "prompts", "--json").stdout)}
    assert rows[limited["id"]]["state"] == "pending"
    assert rows[limited["id"]]["reason"] == f"rate-limited until {limited['not_before']:%H:%M:%S} UTC"
    waiting = next(r for r in rows.values() if r["project"] == "beta")
    assert waiting["state"] == "waiting"
    assert waiting["reason"].startswith("waiting for a session: the last one ended at ")
    assert rows[first]["reason"] is None, "a plain delivery has nothing to explain"

    text = ok(db, "prompts").stdout
    assert "WHY" in text.splitlines()[0] and "rate-limited until" in text and "waiting for a session" in text


def test_instructions_print_only_the_agents_section_for_the_project():
    res = ok(None, "instructions", "--project", "shop")
    out = res.stdout
    assert out.startswith("## Health monitoring (ps-health)\n")
    assert "ps-health session register shop" in out and "[ps-health #14] shop: spawn research-1" in out
    assert "ps-health handoff done --project shop" in out and "ps-health session end shop" in out
    for foreign in ("myproj", "Copy the section", "For the operator", "<!--", "statusLine", "---"):
        assert foreign not in out, f"{foreign!r} does not belong in an agent's instructions"
    assert res.stderr == ""


def test_instructions_default_to_the_current_folder_and_say_so(tmp_path):
    folder = tmp_path / "web shop"
    folder.mkdir()
    res = run_cli(None, "instructions", cwd=str(folder))
    assert res.returncode == 0
    assert "for project 'web shop' (the current folder's name; --project to change)" in res.stderr
    assert "ps-health session register 'web shop'" in res.stdout
    assert "[ps-health #14] web shop: spawn research-1" in res.stdout, "example prompts show the name as it is"


@pytest.mark.parametrize("name", ["", "a\x1bb"])
def test_instructions_refuse_a_name_that_is_not_one(name):
    res = run_cli(None, "instructions", "--project", name)
    assert res.returncode == 2 and "--project must be a name of 1 to 255 printable characters" in res.stderr


def test_every_new_command_has_help_with_examples():
    for command in ("doctor", "forget", "instructions"):
        res = ok(None, command, "--help")
        assert "examples:" in res.stdout and f"ps-health {command}" in res.stdout
    assert "--ahead" in ok(None, "mute", "--help").stdout


def test_a_target_with_no_such_pane_is_reported_at_the_first_probe_round(db, conn, tmux_server, reactors):
    ok(db, "session", "register", "web2", "--target", "ps9", "--host", "host-a")
    reactors.start(probe="0.3")
    check = wait_for(lambda: conn.execute("SELECT status, details->>'reason' AS reason FROM ps_health.health_checks "
                                          "WHERE project = 'web2' AND check_type = 'pane'").fetchone(),
                     what="the missing pane reported")
    assert check["status"] == "warning"
    assert "pane ps9 was not found on host host-a" in check["reason"] and "typo" in check["reason"]
    assert "ps9" in ok(db, "status").stdout
