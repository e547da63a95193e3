"""A compressed day in CI: every incident prompted, no healthy session prompted, reminders on time, retention
holds, and the real reactor types a sample of the sessions' prompts into real panes."""

from __future__ import annotations

from tests.simulated_day import simulate


def test_a_day_of_100_sessions_prompts_every_incident_and_never_a_healthy_session(db):
    figures = simulate(db, sessions=100, spawns=1000, minutes=240, say=None, real_sample=8)
    assert figures["incidents"] > 50
    assert figures["missed"] == []
    assert figures["healthy"] > 20 and figures["healthy_prompts"] == 0
    assert figures["early_reminders"] == 0
    assert figures["stale_after_prune"] == 0
    assert figures["real_delivered"] > 0 and figures["real_not_in_pane"] == []
    assert figures["real_healthy_typed"] == []
