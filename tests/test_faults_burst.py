"""Faults under load: the reactor killed -9 mid-burst, and the tmux server killed mid-delivery."""

from __future__ import annotations

import re
import signal

import pytest

from tests.conftest import wait_for
from tests.reactor_proc import HOST, fast, reactor_login, reactors  # noqa: F401 (fixtures)
from tests.tmux_server import tmux_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.faults

PANES, BURST = 40, 1000

# A burst of distinct prompts spread over the panes, each with its own check (no prompt without a check).
BURST_SQL = """
WITH c AS (
    INSERT INTO ps_health.health_checks (project, check_type, status, subject, details)
    SELECT 'burst', 'spawn', 'warning', 'b' || g, '{}' FROM generate_series(1, %(n)s) g
    RETURNING id, subject),
st AS (
    -- open problems: a prompt whose problems have all recovered would expire instead
    INSERT INTO ps_health.check_state (project, check_type, subject, status, since, last_check_id)
    SELECT 'burst', 'spawn', c.subject, 'warning', now(), c.id FROM c),
p AS (
    INSERT INTO ps_health.prompts (project, host, target, severity, text, state, not_before, created_at)
    SELECT 'burst', %(host)s, (%(targets)s::text[])[1 + (substr(c.subject, 2)::int %% %(panes)s)], 'warning',
           'burst-' || lpad(substr(c.subject, 2), 4, '0') || '-end', 'pending', now(), now()
      FROM c ORDER BY c.id
    RETURNING id, text)
INSERT INTO ps_health.prompt_items (prompt_id, check_id, line)
SELECT p.id, c.id, p.text FROM p JOIN c ON 'burst-' || lpad(substr(c.subject, 2), 4, '0') || '-end' = p.text
"""


def _count(conn, state: str) -> int:
    return conn.execute("SELECT count(*) AS n FROM ps_health.prompts WHERE project = 'burst' AND state = %s",
                        (state,)).fetchone()["n"]


def _typed(panes) -> dict[str, int]:
    """How often each burst text was typed into any pane (a text typed by the killed reactor counts too)."""
    seen: dict[str, int] = {}
    for pane in panes:
        for text in re.findall(rb"burst-\d{4}-end", pane.received()):
            seen[text] = seen.get(text, 0) + 1
    return seen


def test_reactor_killed_during_a_burst_of_1000_loses_nothing(conn, tmux_server, reactors):
    fast(conn, submit_delay="20 milliseconds")
    panes = [tmux_server.recorder() for _ in range(PANES)]
    first = reactors.start("--lease", "3", worker=f"{HOST}:first")
    conn.execute(BURST_SQL, {"n": BURST, "host": HOST, "targets": [p.target for p in panes], "panes": PANES})
    wait_for(lambda: _count(conn, "delivered") >= BURST // 5, timeout=60, what="a fifth of the burst delivered")
    first.popen.send_signal(signal.SIGKILL)
    first.popen.wait(10)
    in_flight = _count(conn, "claimed")
    delivered_at_kill = _count(conn, "delivered")

    reactors.start("--lease", "3", worker=f"{HOST}:second")
    wait_for(lambda: _count(conn, "delivered") == BURST, timeout=180, interval=0.5, what="every prompt delivered")
    seen = wait_for(lambda: len(s := _typed(panes)) == BURST and s, timeout=30, what="every text in a pane")
    duplicates = sum(seen.values()) - BURST
    print(f"\nburst {BURST}: delivered before the kill {delivered_at_kill}, in flight at the kill {in_flight}, "
          f"lost 0, typed twice {duplicates}")
    assert duplicates <= in_flight


def test_tmux_server_killed_mid_delivery_is_recorded_and_retried_when_it_is_back(conn, tmux_server, reactors):
    fast(conn, prompt_retry_delay="1 second", prompt_max_attempts="20")
    names = [f"ps{i}" for i in range(8)]
    panes = [tmux_server.recorder(session=name) for name in names]
    for name in names:
        conn.execute("SELECT ps_health.register_session(%s, 'cli', %s, %s)", (name, name + ":0.0", HOST))
    proc = reactors.start()
    for name in names:
        conn.execute("SELECT ps_health.start_spawn(%s, 'x', 'impl')", (name,))
        conn.execute("SELECT ps_health.finish_spawn(%s, 'x', 1, 'first')", (name,))
    tmux_server.kill()
    for name in names:
        conn.execute("SELECT ps_health.start_spawn(%s, 'y', 'impl')", (name,))
        conn.execute("SELECT ps_health.finish_spawn(%s, 'y', 1, 'while tmux was down')", (name,))
    wait_for(lambda: conn.execute("SELECT count(*) AS n FROM ps_health.health_checks WHERE action_taken LIKE "
                                  "'%%target_missing%%will retry'").fetchone()["n"] > 0,
             timeout=30, what="a target_missing outcome recorded with a retry")
    assert proc.running(), "the reactor survives losing its tmux server"
    panes = [tmux_server.recorder(session=name) for name in names]   # the PS's tmux comes back
    wait_for(lambda: conn.execute("SELECT count(*) AS n FROM ps_health.prompts WHERE state NOT IN ('delivered')"
                                  ).fetchone()["n"] == 0, timeout=60, interval=0.5, what="every prompt delivered")
    assert all(b"while tmux was down" in pane.received() for pane in panes)
