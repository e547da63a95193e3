"""The reactor as a real process: prompts from the SQL API typed into real tmux panes, host probes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from datetime import timedelta

import pytest

from reactor.process.service import Options, Reactor, WakeThrottle
from reactor.tmux.client import plain, sanitise
from tests.pg import free_port
from tests.reactor_proc import HOST, delivered, failed_spawn, fast, prompt, session, submitted
from tests.support import run_cli, wait_for


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} not served")


def _serving_metrics(reactors):
    """A reactor serving its metrics on a free port, and the port. Another test worker may take the port between
    its pick and the reactor's bind (the reactor then exits saying so): pick another."""
    for _ in range(5):
        port = free_port()
        proc = reactors.start("--metrics-port", str(port))
        wait_for(lambda proc=proc: not proc.running() or "listening on channel" in proc.text(),
                 what="the reactor up or gone")
        if proc.running():
            return proc, port
        assert "Address already in use" in proc.text(), proc.text()
    raise AssertionError("no free port for the metrics server in 5 tries")


def test_prompt_reaches_the_right_pane_once_and_is_submitted(conn, tmux_server, reactors, reactor_login):
    fast(conn)
    pane, other = tmux_server.recorder(), tmux_server.recorder()
    session(conn, "alpha", pane.target)
    session(conn, "beta", other.target)
    proc, port = _serving_metrics(reactors)

    prompt_id = failed_spawn(conn, "alpha", error="tests crashed")

    row = delivered(conn, prompt_id)
    assert pane.received() == sanitise(row["text"]).encode() + b"\r"
    assert other.received() == b""
    assert (row["outcome"], row["attempts"], row["worker"]) == ("delivered", 1, proc.worker)
    actions = conn.execute("SELECT c.action_taken FROM ps_health.prompt_items i "
                           "JOIN ps_health.health_checks c ON c.id = i.check_id WHERE i.prompt_id = %s",
                           (prompt_id,)).fetchall()
    assert [a["action_taken"] for a in actions] == [
        f"prompt #{prompt_id} delivered to {pane.target} at {row['completed_at']:%Y-%m-%d %H:%M:%S} UTC"]
    assert _metric(port, 'ps_health_reactor_prompts_total{outcome="delivered"}') == 1
    assert _metric(port, "ps_health_reactor_listener_connected") == 1
    assert _metric(port, "ps_health_reactor_delivery_latency_seconds_count") == 1
    assert re.search(rf"prompt {prompt_id} to {pane.target}: delivered in [0-9.]+ ms", proc.text())
    if reactor_login:  # it did all this with the reactor role's grants only
        logins = conn.execute("SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database() "
                              "AND application_name LIKE 'ps-health-reactor:%%'").fetchall()
        assert [row["usename"] for row in logins] == [reactor_login]


def test_hostile_spawn_error_arrives_sanitised_and_the_pane_survives(conn, tmux_server, reactors):
    fast(conn)
    # Templates are data: let the prompt be its marker and the error alone, so it ends with ";".
    conn.execute("UPDATE ps_health.prompt_templates SET body = '' WHERE key IN ('header', 'answer')")
    conn.execute("UPDATE ps_health.prompt_templates SET body = '{error}' WHERE key = 'spawn.failed'")
    pane = tmux_server.recorder()
    session(conn, "alpha", pane.target)
    reactors.start()
    hostile = "-R stop\x03 now \x1b[31mred\x1b[0m\nsecond line #{pane_id} café 日本語 🎉;"

    prompt_id = failed_spawn(conn, "alpha", error=hostile)

    row = delivered(conn, prompt_id)
    got = submitted(pane)
    typed = got[:-1].decode()
    assert typed == sanitise(row["text"])
    assert typed.startswith(f"[ps-health #{prompt_id}] -R stop")
    assert typed.endswith("日本語 🎉;")
    assert "#{pane_id}" in typed and pane.target not in typed
    assert not any(ch < 0x20 or ch == 0x7F for ch in got[:-1])
    assert got.count(b"\r") == 1
    assert tmux_server.alive(pane)


def test_missing_pane_is_recorded_and_retried_and_nothing_crashes(conn, tmux_server, reactors):
    fast(conn, prompt_retry_delay="200 milliseconds", prompt_max_attempts="3")
    session(conn, "ghost", "%999")
    proc = reactors.start()
    seen: set[tuple[str, str | None]] = set()

    prompt_id = failed_spawn(conn, "ghost")

    def given_up():
        row = prompt(conn, prompt_id)
        seen.add((row["state"], row["outcome"]))
        return row["state"] == "failed" and row

    row = wait_for(given_up, timeout=20, interval=0.01, what="three attempts")
    assert ("pending", "target_missing") in seen  # back in the outbox between attempts
    assert (row["outcome"], row["attempts"]) == ("target_missing", 3)
    action = conn.execute("SELECT action_taken FROM ps_health.health_checks WHERE project = 'ghost' "
                          "AND status = 'critical'").fetchone()["action_taken"]
    assert action.startswith(f"prompt #{prompt_id} failed after 3 attempts: target_missing")
    # Still serving: another project's prompt goes through.
    pane = tmux_server.recorder()
    session(conn, "alive", pane.target)
    delivered(conn, failed_spawn(conn, "alive"))
    assert proc.running()


def test_prompt_queued_while_stopped_is_delivered_on_start(conn, tmux_server, reactors):
    fast(conn)
    pane = tmux_server.recorder()
    session(conn, "alpha", pane.target)
    prompt_id = failed_spawn(conn, "alpha")
    assert prompt(conn, prompt_id)["state"] == "pending"

    # A poll interval far beyond the deadline: only the drain at start can deliver it in time.
    reactors.start(poll="600")

    row = delivered(conn, prompt_id)
    assert submitted(pane) == sanitise(row["text"]).encode() + b"\r"


def test_a_second_reactor_for_a_host_is_refused_naming_the_first_and_only_running_ones_count(
        conn, db, tmux_server, reactors):
    fast(conn)
    pane = tmux_server.recorder()
    session(conn, "alpha", pane.target)
    first = reactors.start()
    wait_for(lambda: "listening on channel" in first.text(), what="the first reactor serving")

    second = reactors.start()
    assert second.popen.wait(20) == 1
    assert f'a reactor for host "{HOST}" is already running: worker "{first.worker}"' in second.text()
    assert "give this one another host label (--host)" in second.text()
    assert "listening on channel" not in second.text(), "the second never served"

    row = delivered(conn, failed_spawn(conn, "alpha"))
    assert row["worker"] == first.worker and submitted(pane) == sanitise(row["text"]).encode() + b"\r"
    system = json.loads(run_cli(db, "status", "--json").stdout)["system"]
    assert [r["worker"] for r in system["reactors"]] == [first.worker]

    assert first.stop() == 0
    assert conn.execute("SELECT count(*) AS n FROM ps_health.reactors").fetchone()["n"] == 0, \
        "a clean stop removes its row"
    assert json.loads(run_cli(db, "status", "--json").stdout)["system"]["reactors"] == []
    third = reactors.start()     # the host is free again
    wait_for(lambda: "listening on channel" in third.text(), what="a new reactor serving")


def test_a_worker_id_running_for_one_host_is_refused_for_another(tmux_server, reactors):
    """A reactor started with the --worker of one running for another host took that worker's row over, so the
    other host's reactor no longer counted and a second one for that host started beside it."""
    first = reactors.start(worker="shared")
    wait_for(lambda: "listening on channel" in first.text(), what="the first reactor serving")
    second = reactors.start(host="host-b", worker="shared")
    assert second.popen.wait(20) == 1
    assert f'worker "shared" is already running as the reactor of host "{HOST}"' in second.text()
    assert "give this reactor another --worker, or leave it out" in second.text()
    third = reactors.start(worker="third")
    assert third.popen.wait(20) == 1
    assert f'a reactor for host "{HOST}" is already running: worker "shared"' in third.text()
    assert first.running()


def test_a_killed_reactor_stops_counting_at_once_and_frees_its_host(conn, db, tmux_server, reactors):
    first = reactors.start()
    wait_for(lambda: "listening on channel" in first.text(), what="the reactor serving")
    first.popen.send_signal(signal.SIGKILL)
    first.popen.wait(10)
    # its row stays behind, but without the host's lock it is not a running reactor
    wait_for(lambda: json.loads(run_cli(db, "status", "--json").stdout)["system"]["reactors"] == [],
             what="the killed reactor no longer counted")
    second = reactors.start()
    wait_for(lambda: "listening on channel" in second.text(), what="a new reactor for the host")
    assert conn.execute("SELECT array_agg(worker) AS w FROM ps_health.reactors").fetchone()["w"] == [second.worker]


def test_reactor_of_another_host_never_touches_this_hosts_prompts(conn, tmux_server, reactors):
    fast(conn)
    pane = tmux_server.recorder()
    session(conn, "alpha", pane.target)  # on HOST
    other = reactors.start(host="host-b", poll="0.2", probe="0.2")
    prompt_id = failed_spawn(conn, "alpha")
    created = prompt(conn, prompt_id)["created_at"]

    # host-b has claimed (and probed) several times since the prompt was queued.
    wait_for(lambda: conn.execute("SELECT count(*) AS n FROM ps_health.reactors WHERE worker = %s "
                                  "AND last_seen > %s + interval '1 second'", (other.worker, created)).fetchone()["n"],
             what="host-b to poll past the prompt")
    row = prompt(conn, prompt_id)
    assert (row["state"], row["attempts"], row["worker"]) == ("pending", 0, None)
    assert conn.execute("SELECT target_state FROM ps_health.ps_sessions WHERE project = 'alpha'"
                        ).fetchone()["target_state"] == "unknown"
    assert pane.received() == b""

    reactors.start()
    delivered(conn, prompt_id)


def test_a_prompt_claimed_again_by_its_own_reactor_while_it_waits_is_recorded_once_typed(conn, tmux_server, reactors):
    """A prompt waits at the busy gate longer than its lease (a stalled main loop, a suspended VM) and its own reactor
    claims it again: that claim is the same delivery, so its outcome is recorded on it. Recorded as of the first claim,
    it was refused, the prompt stayed claimed with nobody renewing it, and it was claimed and typed again once its
    lease ran out."""
    fast(conn, critical_max_defer="6 seconds")
    busy = tmux_server.recorder("--tick", "0.2")  # (a screen that never goes still: the gate waits the whole 6 s)
    session(conn, "busy", busy.target)
    conn.execute("SELECT ps_health.set_setting('idle_seconds', '5', 'busy')")
    proc = reactors.start()
    prompt_id = failed_spawn(conn, "busy")
    first = wait_for(lambda: (row := prompt(conn, prompt_id))["state"] == "claimed" and row, what="the prompt claimed")
    conn.execute("UPDATE ps_health.prompts SET lease_until = now() - interval '1 second' WHERE id = %s", (prompt_id,))
    wait_for(lambda: prompt(conn, prompt_id)["attempts"] == 2, what="the prompt claimed again by its reactor")
    assert busy.received() == b""  # (still at the gate)

    row = delivered(conn, prompt_id, timeout=20)
    assert row["claimed_at"] > first["claimed_at"] and row["attempts"] == 2
    assert busy.received().count(b"\r") == 1
    assert "not recorded" not in proc.text()


def test_sigterm_releases_the_gated_prompt_and_finishes_the_one_being_typed(conn, tmux_server, reactors):
    fast(conn, critical_max_defer="60 seconds")
    busy, idle = tmux_server.recorder("--tick", "0.2"), tmux_server.recorder()
    session(conn, "busy", busy.target)
    session(conn, "typing", idle.target)
    conn.execute("SELECT ps_health.set_setting('idle_seconds', '5', 'busy')")
    conn.execute("SELECT ps_health.set_setting('submit_delay', '2 seconds', 'typing')")
    proc = reactors.start()
    gated = failed_spawn(conn, "busy")
    wait_for(lambda: prompt(conn, gated)["state"] == "claimed", what="the busy pane's prompt claimed")
    typing = failed_spawn(conn, "typing")
    wait_for(lambda: idle.received(), what="text typed, Enter not yet pressed")

    assert proc.stop(signal.SIGTERM) == 0

    assert idle.received().endswith(b"\r")
    assert prompt(conn, typing)["state"] == "delivered"
    row = prompt(conn, gated)
    assert (row["state"], row["worker"], row["attempts"]) == ("pending", None, 0)
    assert busy.received() == b""
    assert conn.execute("SELECT count(*) AS n FROM ps_health.prompts WHERE state = 'claimed'").fetchone()["n"] == 0
    assert "released 1 undelivered prompts" in proc.text()


# ---------------------------------------------------------------- command channel, escalation, handoff cycle

def test_command_channel_gets_the_text_on_stdin_and_its_variables(conn, tmux_server, reactors, tmp_path):
    fast(conn, prompt_retry_delay="1 hour")
    out = tmp_path / "channel"
    script = f'cat > {out}.txt; env | grep ^PS_HEALTH_ | sort > {out}.env'
    conn.execute("SELECT ps_health.set_setting('command_channel', %s, 'sdk')", (json.dumps(["sh", "-c", script]),))
    conn.execute("SELECT ps_health.set_setting('command_channel', %s, 'broken')",
                 (json.dumps(["sh", "-c", "echo no route to webhook >&2; exit 3"]),))
    for project in ("sdk", "broken"):
        conn.execute("SELECT ps_health.register_session(%s, 'sdk', NULL, %s)", (project, HOST))
    proc = reactors.start()

    good, bad = failed_spawn(conn, "sdk"), failed_spawn(conn, "broken")

    row = delivered(conn, good)
    assert row["channel"] == "command"
    assert (tmp_path / "channel.txt").read_text() == row["text"]
    check_id = conn.execute("SELECT check_id FROM ps_health.prompt_items WHERE prompt_id = %s",
                            (good,)).fetchone()["check_id"]
    assert (tmp_path / "channel.env").read_text().splitlines() == [
        f"PS_HEALTH_CHECK_ID={check_id}", "PS_HEALTH_CHECK_TYPE=spawn", "PS_HEALTH_PROJECT=sdk",
        f"PS_HEALTH_PROMPT_ID={good}", "PS_HEALTH_STATUS=critical"]  # and never the reactor's DSN
    failed = wait_for(lambda: (r := prompt(conn, bad))["outcome"] and r, what="the broken channel's outcome")
    assert (failed["state"], failed["outcome"], failed["detail"]) == ("pending", "failed",
                                                                      "sh exited 3: no route to webhook")
    assert proc.running()


def test_unanswered_critical_check_is_escalated_to_the_operator_command(conn, tmux_server, reactors, tmp_path):
    fast(conn, escalate_after="0 seconds")
    mail = tmp_path / "mail.txt"
    conn.execute("SELECT ps_health.set_setting('escalation_command', %s)", (json.dumps(["sh", "-c", f"cat > {mail}"]),))
    pane = tmux_server.recorder()
    session(conn, "alpha", pane.target)
    reactors.start()
    delivered(conn, failed_spawn(conn, "alpha"))  # the PS got its prompt and did not answer

    conn.execute("SELECT ps_health.run_checks()")

    escalation = conn.execute("SELECT id FROM ps_health.prompts WHERE channel = 'escalation'").fetchone()["id"]
    row = delivered(conn, escalation)
    assert mail.read_text() == row["text"]
    assert "has been critical" in row["text"]
    assert pane.received().count(b"\r") == 1  # the escalation went to the operator, not the pane


def test_handoff_file_completes_the_handoff_and_the_cycle_is_typed_in_order(conn, tmux_server, reactors, tmp_path):
    fast(conn)
    folder = tmp_path / "handoffs"
    folder.mkdir()
    for key, value in (("handoff_folder", str(folder)), ("handoff_pattern", "HANDOFF-*.md"), ("auto_cycle", "true")):
        conn.execute("SELECT ps_health.set_setting(%s, %s, 'alpha')", (key, value))
    pane = tmux_server.recorder()
    session(conn, "alpha", pane.target)
    reactors.start(probe="0.3")
    conn.execute("SELECT ps_health.report_context('alpha', 90)")  # critical: a handoff is requested
    first = submitted(pane)

    handoff = folder / "HANDOFF-0412.md"
    handoff.write_text("# where I stopped\n")

    resume = wait_for(lambda: conn.execute("SELECT * FROM ps_health.prompts WHERE kind = 'resume' "
                                           "AND state = 'delivered'").fetchone(), what="the resume prompt delivered")
    assert str(handoff) in resume["text"]
    assert pane.received() == first + b"/clear\r" + sanitise(resume["text"]).encode() + b"\r"
    session_row = conn.execute("SELECT handoff_file, cycle_state FROM ps_health.ps_sessions").fetchone()
    assert session_row == {"handoff_file": str(handoff), "cycle_state": "resume_delivered"}


FORGED = "2099-01-01 00:00:00,000 ERROR reactor.process.housekeeping: FORGED LINE"


def test_a_newer_file_the_database_refuses_hides_no_handoff_and_forges_no_log_line(conn, tmux_server, reactors,
                                                                                  tmp_path):
    folder, staging = tmp_path / "handoffs", tmp_path / "staging"
    staging.mkdir()
    for key, value in (("handoff_folder", str(folder)), ("handoff_pattern", "HANDOFF-*.md")):
        conn.execute("SELECT ps_health.set_setting(%s, %s, 'alpha')", (key, value))
    session(conn, "alpha", tmux_server.recorder().target)
    proc = reactors.start(probe="0.3")
    conn.execute("SELECT ps_health.report_context('alpha', 90)")  # critical: a handoff is requested
    now = time.time()
    (staging / "HANDOFF-1.md").write_text("# where I stopped\n")
    os.utime(staging / "HANDOFF-1.md", (now, now))
    # newer than the real one and named with a newline: the newest match, and a name the database refuses
    (staging / f"HANDOFF-2\n{FORGED}\n.md").write_text("x")
    os.utime(staging / f"HANDOFF-2\n{FORGED}\n.md", (now + 1, now + 1))
    staging.rename(folder)  # both at once: a probe round sees both or none
    real = folder / "HANDOFF-1.md"

    wait_for(lambda: conn.execute("SELECT handoff_file FROM ps_health.ps_sessions WHERE project = 'alpha'")
             .fetchone()["handoff_file"] == str(real), what="the real handoff file recorded")
    wait_for(lambda: "skipped" in proc.text(), what="the odd file's name logged")
    log = proc.text()
    assert not [line for line in log.splitlines() if line.startswith("2099")], log
    assert log.count(f"HANDOFF-2\\x0a{FORGED}\\x0a.md of alpha skipped") == 1, log


def test_the_probe_skips_every_name_the_database_refuses(conn):
    refused = conn.execute("SELECT array_agg(i) AS a FROM generate_series(1, 1114111) i "
                           "WHERE i NOT BETWEEN 55296 AND 57343 AND chr(i) ~ ps_health._unsafe_chars()").fetchone()["a"]
    assert not [hex(i) for i in refused if plain(f"/h/a{chr(i)}.md")]
    assert plain("/home/me/shop/docs/HANDOFF-0412 ünïcödé ✓.md")
    assert not plain("/h/HANDOFF-\udcff.md")  # a byte that is not UTF-8, as os.scandir gives it


# ---------------------------------------------------------------- probes

def _spawn(conn, task: str) -> dict:
    return conn.execute("SELECT * FROM ps_health.active_spawns WHERE task_id = %s", (task,)).fetchone()


def test_growing_output_file_keeps_a_spawn_running_until_it_stops(conn, tmux_server, reactors, tmp_path):
    pane = tmux_server.recorder()
    session(conn, "alpha", pane.target)
    stall = timedelta(minutes=15)
    conn.execute("SELECT ps_health.set_setting('stall_after', '15 minutes')")
    now = conn.execute("SELECT now() AS t").fetchone()["t"]
    started = now - timedelta(minutes=40)
    output = tmp_path / "spawn.out"
    output.write_text("starting\n")
    os.utime(output, (started.timestamp(), started.timestamp()))
    # No host on the spawn: it belongs to this host because its project's session is here.
    conn.execute("SELECT ps_health.start_spawn('alpha', 'worker-1', 'impl', NULL, %s, p_now => %s)",
                 (str(output), started))
    reactors.start(probe="0.3")
    # The file grows every ten minutes (its times set, the sweep's clock moved): each new output
    # time the reactor sees restarts the stall clock, so the spawn, 40 minutes old, keeps running.
    for minutes_ago in (30, 20, 10, 0):
        at = now - timedelta(minutes=minutes_ago)
        with output.open("a") as fh:
            fh.write("progress\n")
        os.utime(output, (at.timestamp(), at.timestamp()))
        wait_for(lambda at=at: (_spawn(conn, "worker-1")["last_output_change"] or started)
                 >= at - timedelta(milliseconds=1),
                 what=f"the output time of {minutes_ago} minutes ago reported")
        conn.execute("SELECT ps_health.run_checks(p_now => %s)", (at + stall - timedelta(minutes=1),))
        assert _spawn(conn, "worker-1")["status"] == "running"
    # Output stops: one stall period after the last output, the spawn is stalled. (A sweep leaves a project
    # whose lock a probe report holds at that moment to the next sweep: sweep until it was looked at.)
    def stalled():
        conn.execute("SELECT ps_health.run_checks(p_now => %s)", (now + stall + timedelta(minutes=1),))
        return _spawn(conn, "worker-1")["status"] == "stalled"
    wait_for(stalled, what="the spawn stalled one stall period after its last output")


def test_vanished_tmux_session_is_missing_once_before_it_is_gone(conn, tmux_server, reactors):
    pane = tmux_server.recorder(session="ps-alpha")
    session(conn, "alpha", pane.target)
    reactors.start(probe="0.5")
    states = []

    def state(want: str):
        def check():
            row = conn.execute("SELECT target_state, target_misses FROM ps_health.ps_sessions").fetchone()
            if not states or states[-1] != (row["target_state"], row["target_misses"]):
                states.append((row["target_state"], row["target_misses"]))
            return row["target_state"] == want
        return check

    wait_for(state("seen"), what="the pane seen")
    tmux_server.run("kill-session", "-t", "ps-alpha")
    wait_for(state("gone"), interval=0.02, what="the session gone")

    assert states[-3:] == [("seen", 0), ("missing", 1), ("gone", 2)]


def test_dead_spawn_process_fails_the_spawn(conn, tmux_server, reactors):
    session(conn, "alpha", None)
    reactors.start(probe="0.3")
    child = subprocess.Popen(["sleep", "60"])
    conn.execute("SELECT ps_health.start_spawn('alpha', 'worker-1', 'impl', NULL, NULL, %s, %s)",
                 (child.pid, HOST))

    child.kill()
    child.wait()

    spawn = wait_for(lambda: (s := _spawn(conn, "worker-1"))["status"] == "failed" and s, what="spawn failed")
    assert spawn["error_message"] == f"process {child.pid} vanished without reporting an exit code"


def test_transcript_usage_is_reported_as_context(conn, tmux_server, reactors, tmp_path):
    transcript = tmp_path / "session.jsonl"

    def turn(used: int) -> None:
        usage = {"input_tokens": used - 1000, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 1000, "output_tokens": 5}
        with transcript.open("a") as fh:
            fh.write(json.dumps({"type": "assistant", "message": {"role": "assistant", "usage": usage}}) + "\n")

    turn(50_000)
    session(conn, "alpha", None, transcript=str(transcript))
    reactors.start(probe="0.3")

    def usage():
        return conn.execute("SELECT estimated_tokens_used AS used, context_usage FROM ps_health.ps_sessions"
                            ).fetchone()

    assert wait_for(lambda: usage()["used"] == 50_000 and usage(), what="first usage")["context_usage"] == 0.25
    turn(100_000)
    assert wait_for(lambda: usage()["used"] == 100_000 and usage(), what="new usage")["context_usage"] == 0.5


def test_run_checks_every_writes_reactor_sweeps(conn, tmux_server, reactors):
    reactors.start("--run-checks-every", "0.3", probe="0")

    wait_for(lambda: conn.execute("SELECT count(*) AS n FROM ps_health.sweep_runs WHERE source = 'reactor'"
                                  ).fetchone()["n"] >= 2, what="two sweeps by the reactor")


# ---------------------------------------------------------------- in-process pieces

def test_only_well_formed_notifications_for_this_host_wake_the_reactor():
    reactor = Reactor(Options(dsn="", host="host-a", worker="w"))
    assert reactor._for_this_host('{"id": 1, "host": "host-a"}')
    assert not reactor._for_this_host('{"id": 1, "host": "host-b"}')
    assert reactor._for_this_host('{"id": 1, "host": null}')  # an escalation any reactor may run
    assert not reactor._for_this_host('{"id": 1}')
    assert not reactor._for_this_host("not json")
    assert not reactor._for_this_host('["host-a"]')
    assert not reactor._for_this_host("")


def test_a_notification_any_login_may_send_never_stops_the_reactor(conn, tmux_server, reactors):
    # Any login may NOTIFY on the channel: a payload nested 7,000 deep stopped json.loads with a RecursionError,
    # and the reactor with it, for good.
    fast(conn)
    pane = tmux_server.recorder()
    session(conn, "alpha", pane.target)
    proc = reactors.start()
    wait_for(lambda: "listening on channel" in proc.text(), what="the reactor listening")
    for payload in ("[" * 7000, '{"host": "%s", "id": %s}' % (HOST, "[" * 3000), "x" * 7999):
        conn.execute("SELECT pg_notify('ps_health', %s)", (payload,))
    row = delivered(conn, failed_spawn(conn, "alpha"))
    assert pane.received() == sanitise(row["text"]).encode() + b"\r"
    assert proc.popen.poll() is None, "the reactor is still serving"


def test_bad_flags_are_refused_before_connecting():
    done = run_cli(None, "reactor", "--lease", "0")
    assert done.returncode == 2
    assert "--lease: must be positive" in done.stderr


def _control_clients(tmux_server) -> int:
    flags = tmux_server.run("list-clients", "-F", "#{client_flags}").splitlines()
    return sum("control-mode" in f for f in flags)


@pytest.mark.parametrize("flag", [None, "--no-tmux-control"])
def test_reactor_types_through_one_control_client_and_leaves_none(conn, tmux_server, reactors, flag):
    fast(conn)
    panes = [tmux_server.recorder() for _ in range(2)]
    for n, pane in enumerate(panes):
        session(conn, f"p{n}", pane.target)
    proc = reactors.start(*([flag] if flag else []))

    for n, pane in enumerate(panes):
        row = delivered(conn, failed_spawn(conn, f"p{n}"))
        assert pane.received() == sanitise(row["text"]).encode() + b"\r"

    assert _control_clients(tmux_server) == (0 if flag else 1)
    assert proc.stop() == 0
    wait_for(lambda: _control_clients(tmux_server) == 0, what="no control client left once the reactor stopped")


def test_wake_ups_are_held_back_only_while_many_in_a_row_find_nothing():
    """Time is given, not waited for: a flood of empty wake-ups holds the next ones back 50 ms each, a claim that
    finds a prompt ends it, and empty wake-ups far apart (session registrations, prompts not due yet) never start
    it (they did: the third empty wake-up of the reactor's life made every later empty one hold the next back)."""
    flood = WakeThrottle()
    for at in (100.0, 100.01, 100.02):
        assert flood.admit(at)
        flood.drained(at, woke=True, found=False)
    assert not flood.admit(100.03)  # held back until the quiet time ends
    assert flood.quiet_until == pytest.approx(100.07)
    flood.drained(100.07, woke=False, found=False)  # the claim at its end counts as the wake-up held back
    assert not flood.admit(100.08)
    flood.drained(100.12, woke=False, found=True)  # a prompt found: wake-ups claim at once again
    assert flood.admit(100.121)

    spread = WakeThrottle()
    for at in (10.0, 12.0, 14.0, 16.0):  # empty wake-ups 2 s apart: no flood
        assert spread.admit(at)
        spread.drained(at, woke=True, found=False)
    assert spread.admit(16.001)

    polls = WakeThrottle()
    for at in (5.0, 5.01, 5.02):  # claims on the poll interval that find nothing say nothing of wake-ups
        polls.drained(at, woke=False, found=False)
    assert polls.admit(5.03)

    backlog = WakeThrottle()
    for at in (1.0, 1.01, 1.02):  # a claim that stopped for room (prompts left) is not an empty one
        backlog.drained(at, woke=True, found=True)
    assert backlog.admit(1.03)
