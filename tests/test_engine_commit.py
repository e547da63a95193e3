"""Engine behaviour that only shows across connections: NOTIFY at commit, one sweep at a time, SKIP LOCKED."""

from __future__ import annotations

import json
import threading

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.support import wait_for

T0 = "2026-01-01 12:00+00"


def connect(dsn, autocommit=True):
    return psycopg.connect(dsn, autocommit=autocommit, row_factory=dict_row,
                           options="-c search_path=ps_health,public")


def failing_spawn(conn, project="alpha", host="h1", task="t1"):
    conn.execute("SELECT register_session(%s, 'cli', '%%1', %s)", (project, host))
    conn.execute("SELECT start_spawn(%s, %s, 'research')", (project, task))
    conn.execute("SELECT finish_spawn(%s, %s, 3, 'boom')", (project, task))


def test_listener_gets_id_and_host_only_after_commit(db):
    with connect(db) as listener, connect(db, autocommit=False) as writer:
        listener.execute("LISTEN ps_health")
        failing_spawn(writer)
        early = list(listener.notifies(timeout=0.5, stop_after=1))
        assert early == [], "a notification must not arrive before the commit"
        writer.commit()
        got = list(listener.notifies(timeout=5, stop_after=2))
        prompt = writer.execute("SELECT id, host FROM prompts").fetchone()
    assert {note.channel for note in got} == {"ps_health"}
    # the session registered with a pane (its reactor identifies the pane at once), then the prompt
    assert [json.loads(note.payload) for note in got] == [{"session": True, "host": "h1"},
                                                         {"id": prompt["id"], "host": "h1"}]


def test_rolled_back_event_sends_nothing(db):
    with connect(db) as listener, connect(db, autocommit=False) as writer:
        listener.execute("LISTEN ps_health")
        failing_spawn(writer)
        writer.rollback()
        assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
        assert writer.execute("SELECT count(*) AS n FROM prompts").fetchone()["n"] == 0


def test_concurrent_sweeps_do_each_piece_of_work_once(db):
    with connect(db) as setup:
        setup.execute("SELECT set_setting('context_check_interval', '1 day')")
        setup.execute("SELECT register_session('p', 'cli', '%%1', 'h', NULL, NULL, %s)", (T0,))
        for i in range(50):
            setup.execute("SELECT start_spawn('p', %s, 'research', NULL, NULL, NULL, 'h', %s)", (f"t{i}", T0))
    at = "2026-01-01 12:20+00"
    with connect(db, autocommit=False) as first, connect(db) as second:
        first.execute("SELECT run_checks(%s)", (at,))
        result = {}
        worker = threading.Thread(target=lambda: result.update(
            second.execute("SELECT run_checks(%s) AS r", (at,)).fetchone()))
        worker.start()
        worker.join(timeout=10)
        assert not worker.is_alive(), "the second sweep must return at once, not wait"
        assert result["r"]["skipped"] is True
        first.commit()
    with connect(db) as check:
        assert check.execute("SELECT count(*) AS n FROM health_checks").fetchone()["n"] == 50
        assert check.execute("SELECT count(*) AS n FROM prompts").fetchone()["n"] == 1
        assert check.execute("SELECT count(*) AS n FROM sweep_runs").fetchone()["n"] == 1


def test_two_workers_claiming_at_once_never_share_a_prompt(db):
    with connect(db) as setup:
        for i in range(40):
            failing_spawn(setup, project=f"p{i}", host="h")
    claimed: dict[str, list[int]] = {"a": [], "b": []}

    def claim(worker):
        with connect(db) as c:
            while rows := c.execute("SELECT id FROM claim_prompts('h', %s, 3, 60)", (worker,)).fetchall():
                claimed[worker] += [r["id"] for r in rows]

    threads = [threading.Thread(target=claim, args=(w,)) for w in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not set(claimed["a"]) & set(claimed["b"])
    assert len(claimed["a"]) + len(claimed["b"]) == 40


def test_long_host_names_are_refused_before_they_reach_a_notification(db):
    with connect(db) as c:
        try:
            c.execute("SELECT register_session('p', 'cli', '%%1', %s)", ("h" * 9000,))
            raise AssertionError("a 9000-character host must be refused")
        except psycopg.errors.InvalidParameterValue as exc:
            assert "host is too long" in str(exc)
        c.execute("SELECT register_session('p', 'cli', '%%1', %s)", ("h" * 255,))
        c.execute("LISTEN ps_health")
        c.execute("SELECT start_spawn('p', 't', 'x')")
        c.execute("SELECT finish_spawn('p', 't', 1, %s)", ("e" * 100_000,))
        got = wait_for(lambda: list(c.notifies(timeout=1, stop_after=1)), what="the notification")
    assert json.loads(got[0].payload)["host"] == "h" * 255


def test_an_outcome_sent_again_after_its_prompt_was_claimed_anew_is_refused(db):
    """The reactor sends an outcome again when the answer to the first send was lost (a call cut after the server had
    recorded it). A deferred outcome puts the prompt back to pending; claimed anew and typed, the outcome sent again
    landed on the new claim, sent the prompt back to pending, and it was typed once more. Now an outcome names its
    claim, and one of an earlier claim is refused: the prompt stays under the new claim, whose outcome is recorded."""
    later = "now() + interval '1 hour'"  # (past the defer delay)
    with connect(db) as conn:
        failing_spawn(conn)
        first = conn.execute("SELECT id, claimed_at FROM claim_prompts('h1', 'w1', 10, 60)").fetchone()
        assert conn.execute("SELECT state FROM complete_prompts('w1', %s, '{deferred}', '{busy}', now(), %s)",
                            ([first["id"]], [first["claimed_at"]])).fetchone()["state"] == "pending"
        second = conn.execute(f"SELECT id, claimed_at FROM claim_prompts('h1', 'w1', 10, 60, {later})").fetchone()
        assert second["id"] == first["id"] and second["claimed_at"] != first["claimed_at"]

        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="was claimed again since the claim"):
            conn.execute(f"SELECT * FROM complete_prompts('w1', %s, '{{deferred}}', '{{busy}}', {later}, %s)",
                         ([first["id"]], [first["claimed_at"]]))
        row = conn.execute("SELECT state, claimed_at FROM prompts WHERE id = %s", (first["id"],)).fetchone()
        assert (row["state"], row["claimed_at"]) == ("claimed", second["claimed_at"])

        with pytest.raises(psycopg.errors.InvalidParameterValue, match="claimed_at must be an array as long as ids"):
            conn.execute(f"SELECT * FROM complete_prompts('w1', %s, '{{delivered}}', '{{typed}}', {later}, %s)",
                         ([first["id"]], [second["claimed_at"], second["claimed_at"]]))
        assert conn.execute(f"SELECT state FROM complete_prompts('w1', %s, '{{delivered}}', '{{typed}}', {later}, %s)",
                            ([first["id"]], [second["claimed_at"]])).fetchone()["state"] == "delivered"
