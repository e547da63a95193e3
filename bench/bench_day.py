"""A simulated 8-hour day: 500 sessions and 5,000 spawns with scripted trouble, p_now moved minute by minute.

Prints incidents scripted vs prompted, prompts per incident, whether any healthy session was
prompted (a bug if so), reminder spacing, sweep times and table sizes before and after retention.
Prompts are claimed and completed by a simulated reactor through the real SQL protocol; the day itself
is tests/simulated_day.py, which the test suite runs smaller.
"""

from __future__ import annotations

from psycopg.conninfo import make_conninfo

from tests import pg
from tests.simulated_day import MINUTES, REAL_SAMPLE, SESSIONS, SPAWNS, simulate


def main() -> None:
    cluster = pg.start_cluster()
    try:
        # the cluster's own ps_health database carries pg_cron, so retention covers cron.job_run_details
        dsn = make_conninfo(cluster.dsn())
        from reactor.db.migrate import Runner

        Runner(dsn, say=lambda _: None).migrate()
        f = simulate(dsn, SESSIONS, SPAWNS, MINUTES, real_sample=REAL_SAMPLE)
        if (f["missed"] or f["healthy_prompts"] or f["early_reminders"] or f["stale_after_prune"]
                or f["real_not_in_pane"] or f["real_healthy_typed"]):
            raise SystemExit("FAILED: an incident went unprompted, a healthy session was prompted, "
                             "a reminder came early or retention left rows behind")
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
