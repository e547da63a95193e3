"""The handoff cycle closing (or not) in a real pane, and command channels that time out or get hostile text."""

from __future__ import annotations

import json
import re
import sys
import uuid
from pathlib import Path

from reactor.tmux.client import sanitise
from tests.reactor_proc import HOST, fast, prompt, session, submitted
from tests.support import ROOT, wait_for


def _cycle(conn, tmux_server, reactors, tmp_path, reports_back: bool):
    """A pane whose program plays a PS at 86 %: asked for a handoff, it writes the file (without
    reporting it); after the reset and the resume prompt it reports its context, if reports_back."""
    fast(conn, cycle_confirm_timeout="3 seconds")
    folder = tmp_path / "handoffs"
    folder.mkdir()
    for key, value in (("handoff_folder", str(folder)), ("auto_cycle", "true")):
        conn.execute("SELECT ps_health.set_setting(%s, %s, 'alpha')", (key, value))
    plays = ["--on", "ps-health handoff done --project alpha", f"echo '# next: the parser' > {folder}/handoff.md"]
    if reports_back:
        cli = f"PS_HEALTH_DSN='{conn.info.dsn}' PYTHONPATH={ROOT} {sys.executable} -m reactor.cli"
        plays += ["--on", "continue the work it describes", f"{cli} context --project alpha --percent 9"]
    pane = tmux_server.recorder(*plays)
    session(conn, "alpha", pane.target)
    reactors.start(probe="0.3")
    conn.execute("SELECT ps_health.report_context('alpha', 86)")
    asked = submitted(pane)
    assert b"ps-health handoff done --project alpha" in asked
    resume = wait_for(lambda: conn.execute("SELECT * FROM ps_health.prompts"
                                           " WHERE kind = 'resume' AND state = 'delivered'").fetchone(),
                      what="the resume prompt delivered")
    assert str(folder / "handoff.md") in resume["text"]
    assert pane.received() == asked + b"/clear\r" + sanitise(resume["text"]).encode() + b"\r"
    return pane


def _steps(conn) -> list[str]:
    return [r["step"] for r in conn.execute(
        "SELECT status || ':' || coalesce(details->>'step', details->>'source') AS step FROM ps_health.health_checks "
        "WHERE project = 'alpha' AND check_type = 'handoff' ORDER BY id")]


def test_a_lower_context_report_after_the_resume_closes_the_cycle(conn, tmux_server, reactors, tmp_path):
    _cycle(conn, tmux_server, reactors, tmp_path, reports_back=True)
    wait_for(lambda: conn.execute("SELECT cycle_state FROM ps_health.ps_sessions"
                                  ).fetchone()["cycle_state"] == "complete",
             what="the PS's own context report closing the cycle")
    assert float(conn.execute("SELECT context_usage FROM ps_health.ps_sessions").fetchone()["context_usage"]) == 0.09
    assert _steps(conn) == ["warning:requested", "ok:file seen by the reactor", "warning:reset_queued",
                            "warning:reset_delivered", "warning:resume_delivered", "ok:cycle_complete"]


def test_no_report_after_the_resume_is_critical_and_the_pane_is_told(conn, tmux_server, reactors, tmp_path):
    pane = _cycle(conn, tmux_server, reactors, tmp_path, reports_back=False)
    before = pane.received()
    wait_for(lambda: conn.execute("SELECT ps_health.run_checks()") and
             conn.execute("SELECT cycle_state FROM ps_health.ps_sessions").fetchone()["cycle_state"] == "incomplete",
             timeout=15, interval=0.5, what="the cycle marked incomplete")
    assert _steps(conn)[-1] == "critical:cycle_incomplete"
    told = wait_for(lambda: (data := pane.received()) != before and data.endswith(b"\r") and data, what="the prompt")
    assert b"the handoff cycle did not complete" in told[len(before):]


def test_a_channel_command_that_hangs_is_killed_recorded_failed_and_retried(conn, tmux_server, reactors, tmp_path):
    fast(conn, command_timeout="1 second", prompt_retry_delay="1 second")
    marker = tmp_path / "runs"
    conn.execute("SELECT ps_health.set_setting('command_channel', %s, 'sdk')",
                 (json.dumps(["sh", "-c", f"echo run >> {marker}; sleep 30"]),))
    conn.execute("SELECT ps_health.register_session('sdk', 'sdk', NULL, %s)", (HOST,))
    reactors.start()
    conn.execute("SELECT ps_health.start_spawn('sdk', 't', 'impl')")
    conn.execute("SELECT ps_health.finish_spawn('sdk', 't', 1, 'boom')")
    pid = conn.execute("SELECT max(id) AS id FROM ps_health.prompts").fetchone()["id"]
    # The check tells each attempt's outcome; wait for the second one's (the claim alone comes earlier).
    note = wait_for(lambda: re.search(rf"prompt #{pid} attempt [2-9]: failed: .*; will retry", action := (
        conn.execute("SELECT action_taken FROM ps_health.health_checks WHERE subject = 't' AND project = 'sdk'"
                     ).fetchone()["action_taken"] or "")) and action, timeout=30,
                    what="the outcome of a second attempt after the timeout")
    assert "killed after 1 s" in note
    assert prompt(conn, pid)["attempts"] >= 2
    assert marker.read_text().count("run") >= 2


def test_hostile_prompt_text_never_reaches_a_shell(conn, tmux_server, reactors, tmp_path):
    fast(conn)
    got, pwned = tmp_path / "got.txt", Path(f"/tmp/ph-{uuid.uuid4().hex[:8]}")
    conn.execute("SELECT ps_health.set_setting('command_channel', %s, 'sdk')",
                 (json.dumps(["sh", "-c", f"cat > {got}"]),))
    conn.execute("SELECT ps_health.register_session('sdk', 'sdk', NULL, %s)", (HOST,))
    reactors.start()
    hostile = f"$(touch {pwned}) `touch {pwned}`; touch {pwned} && rm -rf / #"
    conn.execute("SELECT ps_health.start_spawn('sdk', 'evil', 'impl')")
    conn.execute("SELECT ps_health.finish_spawn('sdk', 'evil', 1, %s)", (hostile,))
    wait_for(lambda: got.exists() and got.read_text(), what="the channel's stdin")
    assert hostile in got.read_text()
    assert not pwned.exists()
    pwned.unlink(missing_ok=True)

