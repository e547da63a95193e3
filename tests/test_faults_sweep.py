"""Fault: a pg_cron sweep overlapping a manual one does its work once and never blocks."""

from __future__ import annotations

import psycopg
import pytest

from reactor.db.migrate import Runner
from tests.support import run_cli, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.minutes]


@pytest.fixture
def cron_db(own_cluster):
    """pg_cron's database on a server of this test's own: its held sweep lock blocks no other test."""
    dsn = own_cluster.dsn()
    Runner(dsn, say=lambda _: None).migrate()
    assert run_cli(dsn, "cron", "install").returncode == 0
    yield dsn
    run_cli(dsn, "cron", "remove")


def test_pg_cron_sweep_overlapping_a_manual_sweep_skips_instead_of_doubling(cron_db):
    with psycopg.connect(cron_db, autocommit=True) as c:
        c.execute("SELECT ps_health.register_session('overlap', 'cli', '%1', 'h', NULL, NULL,"
                  " now() - interval '1 hour')")
        c.execute("SELECT ps_health.start_spawn('overlap', 'quiet', 'research', NULL, NULL, NULL, 'h',"
                  " now() - interval '30 minutes')")
    with psycopg.connect(cron_db) as manual:
        manual.execute("SELECT ps_health.run_checks(now(), 'manual')")   # holds the sweep lock until commit
        with psycopg.connect(cron_db, autocommit=True) as c:
            started = c.execute("SELECT clock_timestamp()").fetchone()[0]
            # wait until pg_cron has tried at least once while the manual sweep is open
            wait_for(lambda: c.execute("SELECT count(*) FROM cron.job_run_details d JOIN cron.job j USING (jobid)"
                                       " WHERE j.jobname = 'ps_health_sweep' AND d.start_time > %s"
                                       " AND d.status IN ('succeeded', 'failed')", (started,)).fetchone()[0],
                     timeout=75, interval=1, what="a pg_cron sweep during the manual one")
            statuses = [r[0] for r in c.execute(
                "SELECT d.status FROM cron.job_run_details d JOIN cron.job j USING (jobid)"
                " WHERE j.jobname = 'ps_health_sweep' AND d.start_time > %s", (started,))]
        manual.commit()
    assert statuses and set(statuses) == {"succeeded"}, "the overlapping cron sweep returned at once, without error"
    with psycopg.connect(cron_db, autocommit=True) as c:
        checks = c.execute("SELECT count(*) FROM ps_health.health_checks"
                           " WHERE project = 'overlap' AND subject = 'quiet'").fetchone()[0]
        cron_rows = c.execute("SELECT count(*) FROM ps_health.sweep_runs WHERE source = 'pg_cron' AND started_at > %s",
                              (started,)).fetchone()[0]
        # the next tick, with the lock free, sweeps for real
        wait_for(lambda: c.execute("SELECT count(*) FROM ps_health.sweep_runs WHERE source = 'pg_cron'"
                                   " AND started_at > %s", (started,)).fetchone()[0] > cron_rows,
                 timeout=75, interval=1, what="a pg_cron sweep after the manual one")
        after = c.execute("SELECT count(*) FROM ps_health.health_checks WHERE project = 'overlap' AND subject = 'quiet'"
                          ).fetchone()[0]
    assert checks == 1, "the stall was recorded once, by the manual sweep"
    assert cron_rows == 0, "the overlapping pg_cron sweep did no work"
    assert after == 1, "the later sweep found nothing new to record"
