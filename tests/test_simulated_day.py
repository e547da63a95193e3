"""A compressed day in CI: every incident prompted, no healthy session prompted, reminders on time, retention holds."""

from __future__ import annotations

from bench.bench_day import simulate


def test_a_day_of_100_sessions_prompts_every_incident_and_never_a_healthy_session(db):
    figures = simulate(db, sessions=100, spawns=1000, minutes=240, say=None)
    assert figures["incidents"] > 50
    assert figures["missed"] == []
    assert figures["healthy"] > 20 and figures["healthy_prompts"] == 0
    assert figures["early_reminders"] == 0
    assert figures["stale_after_prune"] == 0
