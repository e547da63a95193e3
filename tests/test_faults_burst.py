"""Faults under load: the reactor killed -9 mid-burst, and the tmux server killed mid-delivery."""

from __future__ import annotations

import re
import signal

import pytest

from reactor.tmux.client import sanitise
from tests.reactor_proc import HOST, RECORDER_PROGRAMS, fast, session
from tests.support import wait_for

pytestmark = pytest.mark.faults

PANES, BURST = 40, 1000

# A burst of distinct prompts spread over the panes (one project's session each), each with its own check
# (no prompt without a check) and its text starting with its marker, as every prompt's does.
BURST_SQL = """
WITH c AS (
    INSERT INTO ps_health.health_checks (project, check_type, status, subject, details)
    SELECT 'burst' || (g %% %(panes)s), 'spawn', 'warning', 'b' || g, '{}' FROM generate_series(1, %(n)s) g
    RETURNING id, project, subject),
st AS (
    -- open problems: a prompt whose problems have all recovered would expire instead
    INSERT INTO ps_health.check_state (project, check_type, subject, status, since, last_check_id)
    SELECT c.project, 'spawn', c.subject, 'warning', now(), c.id FROM c),
p AS (
    INSERT INTO ps_health.prompts (project, host, target, severity, text, state, not_before, created_at)
    SELECT c.project, %(host)s, (%(targets)s::text[])[1 + (substr(c.subject, 2)::int %% %(panes)s)], 'warning',
           'burst-' || lpad(substr(c.subject, 2), 4, '0') || '-end', 'pending', now(), now()
      FROM c ORDER BY c.id
    RETURNING id, text),
i AS (
    INSERT INTO ps_health.prompt_items (prompt_id, check_id, line)
    SELECT p.id, c.id, p.text FROM p JOIN c ON 'burst-' || lpad(substr(c.subject, 2), 4, '0') || '-end' = p.text
    RETURNING prompt_id)
SELECT count(*) FROM i
"""
MARK_SQL = "UPDATE ps_health.prompts SET text = ps_health._marker(id) || ' ' || text WHERE project LIKE 'burst%'"


def _count(conn, state: str) -> int:
    return conn.execute("SELECT count(*) AS n FROM ps_health.prompts WHERE project LIKE 'burst%%' AND state = %s",
                        (state,)).fetchone()["n"]


def _typed(panes) -> dict[bytes, int]:
    """How often each burst text was submitted in any pane (a submission by the killed reactor counts too)."""
    seen: dict[bytes, int] = {}
    for pane in panes:
        for line in pane.submitted():
            for text in re.findall(rb"burst-\d{4}-end", line):
                seen[text] = seen.get(text, 0) + 1
    return seen


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_reactor_killed_during_a_burst_of_1000_loses_merges_and_repeats_nothing(conn, tmux_server, reactors, sig):
    """Killed, the next reactor finds text typed and not submitted on some input lines; stopped, the reactor
    finishes what it was typing, gives the rest back and leaves nothing claimed."""
    fast(conn, submit_delay="20 milliseconds", agent_programs=RECORDER_PROGRAMS)
    panes = [tmux_server.recorder() for _ in range(PANES)]
    for n, pane in enumerate(panes):
        conn.execute("SELECT ps_health.register_session(%s, 'cli', %s, %s)", (f"burst{n}", pane.target, HOST))
    first = reactors.start("--lease", "3", worker=f"{HOST}:first")
    with conn.transaction():
        conn.execute(BURST_SQL, {"n": BURST, "host": HOST, "targets": [p.target for p in panes], "panes": PANES})
        conn.execute(MARK_SQL)
    wait_for(lambda: _count(conn, "delivered") >= BURST // 5, timeout=60, what="a fifth of the burst delivered")
    first.popen.send_signal(sig)
    assert first.popen.wait(30) == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    in_flight = _count(conn, "claimed")
    delivered_at_kill = _count(conn, "delivered")
    if sig == signal.SIGTERM:
        assert in_flight == 0, "a stopped reactor leaves no prompt claimed"

    # at once, as a supervisor would: text the killed reactor typed but did not submit is on some input lines
    reactors.start("--lease", "3", worker=f"{HOST}:second")
    wait_for(lambda: _count(conn, "delivered") == BURST, timeout=180, interval=0.5, what="every prompt delivered")
    seen = wait_for(lambda: len(s := _typed(panes)) == BURST and s, timeout=30, what="every text submitted")
    lines = [line for pane in panes for line in pane.submitted()]
    merged = [line for line in lines if len(re.findall(rb"\[ps-health #\d+\]", line)) != 1]
    duplicates = sum(seen.values()) - BURST
    print(f"\nburst {BURST}: delivered before the kill {delivered_at_kill}, in flight at the kill {in_flight}, "
          f"lost 0, submitted twice {duplicates}, lines holding more than one prompt {len(merged)}")
    assert (duplicates, merged) == (0, [])
    texts = {row["id"]: row["text"] for row in conn.execute(
        "SELECT id, text FROM ps_health.prompts WHERE project LIKE 'burst%%'")}
    assert sorted(lines) == sorted(sanitise(text).encode() for text in texts.values()), \
        "each submitted line is exactly one prompt's text"


def test_tmux_server_killed_mid_delivery_is_retried_and_delivered_to_the_sessions_that_come_back(
        conn, tmux_server, reactors):
    fast(conn, prompt_retry_delay="1 second", prompt_max_attempts="20")
    names = [f"ps{i}" for i in range(8)]
    panes = [tmux_server.recorder(session=name) for name in names]
    for name in names:
        session(conn, name, name + ":0.0")
    proc = reactors.start()
    for name in names:
        conn.execute("SELECT ps_health.start_spawn(%s, 'x', 'impl')", (name,))
        conn.execute("SELECT ps_health.finish_spawn(%s, 'x', 1, 'first')", (name,))
    wait_for(lambda: _delivered_to(conn, names) == len(names), timeout=30, what="the first prompts delivered")
    tmux_server.kill()
    for name in names:
        conn.execute("SELECT ps_health.start_spawn(%s, 'y', 'impl')", (name,))
        conn.execute("SELECT ps_health.finish_spawn(%s, 'y', 1, 'while tmux was down')", (name,))
    wait_for(lambda: conn.execute("SELECT count(*) AS n FROM ps_health.health_checks WHERE action_taken LIKE "
                                  "'%%target_missing%%will retry'").fetchone()["n"] > 0,
             timeout=30, what="a target_missing outcome recorded with a retry")
    assert proc.running(), "the reactor survives losing its tmux server"
    # The tmux server comes back with panes of the same names: not the panes the sessions registered.
    panes = [tmux_server.recorder(session=name) for name in names]
    wait_for(lambda: _states(conn, names) == {"gone"}, timeout=30, what="every session gone")
    wait_for(lambda: conn.execute("SELECT count(*) AS n FROM ps_health.prompts WHERE state = 'waiting'"
                                  ).fetchone()["n"] == len(names), timeout=30, what="the prompts waiting")
    assert all(pane.received() == b"" for pane in panes)
    for name in names:  # each supervisor starts again in its new pane and registers
        session(conn, name, name + ":0.0")
    wait_for(lambda: conn.execute("SELECT count(*) AS n FROM ps_health.prompts WHERE state NOT IN ('delivered')"
                                  ).fetchone()["n"] == 0, timeout=60, interval=0.5, what="every prompt delivered")
    assert all(b"while tmux was down" in pane.received() for pane in panes)


def _delivered_to(conn, names: list[str]) -> int:
    return conn.execute("SELECT count(*) AS n FROM ps_health.prompts WHERE project = ANY (%s) AND state = 'delivered'",
                        (names,)).fetchone()["n"]


def _states(conn, names: list[str]) -> set[str]:
    return {row["target_state"] for row in conn.execute(
        "SELECT target_state FROM ps_health.ps_sessions WHERE project = ANY (%s)", (names,))}
