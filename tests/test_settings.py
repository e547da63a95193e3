"""Settings that cannot knock the reactor over: ranges and cross-checks where they are set, a stored
value that is not allowed failing only the prompts that need it, secrets only for the owner."""

from __future__ import annotations

import json
import threading

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from reactor.process.service import Options, Reactor
from tests.reactor_proc import create_login, delivered, failed_spawn, fast, prompt, session
from tests.support import run_cli, wait_for

PASSWORD = "settings-test-password"
SECRET = '["curl", "-H", "Authorization: Bearer s3cret-token", "https://hooks.example.com/ps"]'


def _show(dsn: str, *args: str) -> dict[str, dict]:
    done = run_cli(dsn, "settings", "show", *args, "--json")
    assert done.returncode == 0, done.stderr
    return {r["key"]: r for r in json.loads(done.stdout)}


def _refused(dsn: str, *args: str) -> str:
    done = run_cli(dsn, "settings", "set", *args)
    assert done.returncode == 2, f"{args}: rc {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stderr


def _overrides(conn) -> list[tuple]:
    return [tuple(r.values()) for r in conn.execute("SELECT key, project, value FROM ps_health.settings ORDER BY 1, 2")]


def test_values_out_of_range_are_refused_naming_key_value_and_range(db, conn):
    err = _refused(db, "--project", "poison", "--ahead", "submit_delay", "1000000 years")
    assert 'submit_delay: "1000000 years" is not allowed (interval from 0 seconds to 10 seconds)' in err
    assert '"NaN" is not allowed (number from 0 to 3600)' in _refused(db, "idle_seconds", "NaN")
    assert '"1e400" is not allowed (number from 0 to 3600)' in _refused(db, "idle_seconds", "1e400")
    assert _overrides(conn) == []
    assert "Traceback" not in err


def test_cross_checks_hold_for_the_project_changed_and_every_project_a_global_change_reaches(db, conn):
    err = _refused(db, "context_critical", "0.5")
    assert 'context_critical: "0.5" must be greater than context_warning, which is 0.70 globally' in err
    err = _refused(db, "--project", "alpha", "--ahead", "abandon_after", "10 minutes")
    assert 'which is 15 minutes for project "alpha"' in err
    assert run_cli(db, "settings", "set", "--project", "alpha", "--ahead", "context_critical", "0.8").returncode == 0
    err = _refused(db, "context_warning", "0.82")
    assert 'context_warning: "0.82" must be less than context_critical, which is 0.8 for project "alpha"' in err
    assert _overrides(conn) == [("context_critical", "alpha", "0.8")]


def test_a_change_waits_for_one_in_flight_and_is_checked_against_it(db, conn):
    first = psycopg.connect(db)  # its transaction stays open until the second change waits
    second = psycopg.connect(db, autocommit=True)
    outcome: dict = {}

    def change():
        try:
            outcome["value"] = second.execute("SELECT ps_health.set_setting('context_warning', '0.8')").fetchone()[0]
        except psycopg.Error as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=change)
    try:
        first.execute("SELECT ps_health.set_setting('context_critical', '0.75', 'alpha')")
        worker.start()
        wait_for(lambda: outcome or conn.execute(
            "SELECT wait_event_type IS NOT DISTINCT FROM 'Lock' AS waits FROM pg_stat_activity WHERE pid = %s",
            (second.info.backend_pid,)).fetchone()["waits"], what="the second change to finish or wait")
        assert not outcome, f"the second change did not wait for the first: {outcome}"
        first.commit()
        worker.join(10)
        assert not worker.is_alive()
    finally:
        first.close()  # a failure above rolls the first change back and frees the second
        if worker.is_alive():
            worker.join(10)
        second.close()
    assert isinstance(outcome.get("error"), psycopg.errors.InvalidParameterValue), outcome
    assert ('setting context_warning: "0.8" must be less than context_critical, which is 0.75 for project "alpha"'
            in str(outcome["error"]))
    assert _overrides(conn) == [("context_critical", "alpha", "0.75")]


def test_settings_show_gives_each_range_and_flags_a_stored_value_that_is_ignored(db, conn):
    conn.execute("INSERT INTO ps_health.settings (key, project, value) VALUES ('idle_seconds', 'alpha', 'NaN')")
    rows = _show(db, "--project", "alpha")
    assert rows["submit_delay"]["allowed"] == "interval from 0 seconds to 10 seconds"
    assert rows["prompt_max_attempts"]["allowed"] == "whole number from 1 to 100"
    assert (rows["idle_seconds"]["value"], rows["idle_seconds"]["source"]) == ("5", "default")
    assert 'stored for project "alpha": "NaN" is not allowed' in rows["idle_seconds"]["problem"]
    text = run_cli(db, "settings", "show", "--project", "alpha").stdout
    assert "ALLOWED" in text and "interval from 1 second to 7 days" in text
    assert '! idle_seconds: stored for project "alpha": "NaN" is not allowed' in text


@pytest.mark.parametrize("key, value", [("submit_delay", "1000000 years"), ("idle_seconds", "1e400"),
                                        ("prompt_max_attempts", "many")])
def test_a_poisoned_setting_fails_only_its_projects_prompt_and_the_reactor_serves_the_rest(
        conn, tmux_server, reactors, key, value):
    fast(conn)
    panes = {p: tmux_server.recorder() for p in ("poison", "fine")}
    for project, pane in panes.items():
        session(conn, project, pane.target)
    # Written around set_setting, as a direct INSERT or an older release could.
    conn.execute("INSERT INTO ps_health.settings (key, project, value) VALUES (%s, 'poison', %s)", (key, value))
    proc = reactors.start()

    bad = failed_spawn(conn, "poison")
    good = failed_spawn(conn, "fine")
    delivered(conn, good)
    row = wait_for(lambda: (r := prompt(conn, bad))["state"] == "failed" and r, what="the poisoned prompt failed")
    assert f'setting {key} stored for project "poison": "{value}" is not allowed' in row["detail"]
    action = conn.execute("SELECT action_taken FROM ps_health.health_checks WHERE project = 'poison'").fetchone()
    assert action["action_taken"].startswith(f"prompt #{bad} failed: setting {key}")
    assert panes["poison"].received() == b""
    assert proc.running()

    # Fixed, the project is served again.
    conn.execute("DELETE FROM ps_health.settings WHERE project = 'poison' AND key = %s", (key,))
    delivered(conn, failed_spawn(conn, "poison", task="t2"))


def test_the_reactor_keeps_serving_when_its_claims_are_refused(db, conn, tmux_server, reactors, reactor_login):
    if reactor_login is None:
        pytest.skip("needs the test cluster's own reactor login")
    fast(conn)
    pane = tmux_server.recorder()
    session(conn, "alpha", pane.target)
    grant = "ON FUNCTION ps_health.claim_prompts(text, text, integer, integer, timestamptz, text) {} ps_health_reactor"
    conn.execute("REVOKE EXECUTE " + grant.format("FROM"))
    proc = reactors.start()
    wait_for(lambda: "claim refused" in proc.text(), what="the refused claim logged")
    # The probes go on meanwhile.
    wait_for(lambda: conn.execute("SELECT target_state FROM ps_health.ps_sessions").fetchone()["target_state"]
             == "seen", what="the pane probed")
    assert proc.running()

    conn.execute("GRANT EXECUTE " + grant.format("TO"))
    delivered(conn, failed_spawn(conn, "alpha"))
    assert proc.text().count("claim refused") == 1  # once per reason, not once per poll


def test_a_claimed_row_with_timings_that_are_not_finite_is_refused_alone():
    reactor = Reactor(Options(dsn="", host="host-a", worker="w"))
    row = {"id": 7, "project": "p", "target": "%1", "text": "hi", "severity": "warning", "submit_delay_ms": 100,
           "idle_seconds": float("nan"), "max_defer_seconds": 120, "attempts": 1, "identity": None,
           "agent_programs": '["claude"]', "agent_profiles": "{}", "marker_pattern": None}
    with pytest.raises(ValueError, match="idle_seconds is nan"):
        reactor._job(row)
    assert reactor._job(dict(row, idle_seconds=0)).idle_seconds == 0


@pytest.fixture
def logins(admin_dsn, db, server):
    """A reader login and an agent login of project alpha."""
    if server[1] is None:
        pytest.skip("extra logins need the test run's own server")
    names = {"reader": "ps_health_test_settings_reader", "agent": "ps_health_test_settings_agent"}
    for role, name in names.items():
        create_login(admin_dsn, name, PASSWORD, "ps_health_reader" if role == "reader" else "ps_health_agent")
    with psycopg.connect(db, autocommit=True) as owner:
        owner.execute("SELECT ps_health.grant_agent(%s, 'alpha')", (names["agent"],))
    return {role: make_conninfo(db, user=name, password=PASSWORD) for role, name in names.items()}


def test_secret_settings_are_shown_only_to_the_owner(db, conn, logins):
    conn.execute("SELECT ps_health.set_setting('command_channel', %s, 'alpha')", (SECRET,))
    conn.execute("SELECT ps_health.set_setting('escalation_command', %s)", (SECRET,))
    assert _show(db, "--project", "alpha")["command_channel"]["value"] == SECRET

    for role in ("reader", "agent"):
        rows = _show(logins[role], "--project", "alpha")
        assert rows["command_channel"]["value"] == "(set)"
        assert rows["escalation_command"]["value"] == "(set)"
        assert rows["stall_after"]["value"] == "15 minutes"
        text = run_cli(logins[role], "settings", "show", "--project", "alpha").stdout
        assert "s3cret" not in text and "(set)" in text
        with psycopg.connect(logins[role]) as c:
            assert c.execute("SELECT ps_health.setting('command_channel', 'alpha')").fetchone()[0] == "(set)"
            if role == "reader":  # an agent reads settings through the functions only
                values = [r[0] for r in c.execute("SELECT value FROM ps_health.setting_overrides")]
                assert values == ["(set)", "(set)"]
        with psycopg.connect(logins[role]) as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT value FROM ps_health.settings")


def test_an_agent_login_reads_only_its_own_projects_settings(logins):
    assert _show(logins["agent"])["stall_after"]["value"] == "15 minutes"  # global ones
    assert _show(logins["agent"], "--project", "alpha")["stall_after"]["value"] == "15 minutes"
    done = run_cli(logins["agent"], "settings", "show", "--project", "beta")
    assert done.returncode == 2
    assert 'may not see project "beta"' in done.stderr

