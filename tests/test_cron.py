"""pg_cron jobs: idempotent install and remove, and a scheduled sweep that really runs."""

from __future__ import annotations

import psycopg
import pytest

from reactor.db.migrate import Runner
from tests.support import run_cli, wait_for


def jobs(dsn) -> list[tuple]:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT jobname, schedule FROM cron.job WHERE jobname LIKE 'ps_health_%' ORDER BY 1"
                         ).fetchall()


@pytest.fixture
def own_cron_db(own_cluster):
    """pg_cron's database on a server of this test's own, migrated."""
    dsn = own_cluster.dsn()
    Runner(dsn, say=lambda _: None).migrate()
    return dsn


def test_install_is_idempotent_and_remove_unschedules(own_cron_db):
    for _ in range(2):
        res = run_cli(own_cron_db, "cron", "install")
        assert res.returncode == 0, res.stderr
    assert jobs(own_cron_db) == [("ps_health_prune", "17 3 * * *"), ("ps_health_sweep", "* * * * *")]
    status = run_cli(own_cron_db, "cron", "status")
    assert "ps_health_sweep" in status.stdout and "active" in status.stdout
    res = run_cli(own_cron_db, "cron", "remove")
    assert res.returncode == 0 and "removed 2 job(s)" in res.stdout
    assert jobs(own_cron_db) == []


@pytest.mark.minutes
def test_scheduled_sweep_runs_within_a_minute_and_system_health_sees_it(cron_db):
    res = run_cli(cron_db, "cron", "install")
    assert res.returncode == 0, res.stderr
    with psycopg.connect(cron_db, autocommit=True) as c:
        try:
            # (a job scheduled in the last moments of a minute may first run at the end of the next one, later still
            # on a busy machine: once, 75 s were not enough)
            row = wait_for(lambda: c.execute("SELECT swept_at FROM ps_health.sweep_runs WHERE source = 'pg_cron'"
                                             ).fetchone(), timeout=150, interval=1, what="a sweep started by pg_cron")
        except AssertionError as exc:
            runs = c.execute("SELECT jobid, status, return_message, start_time FROM cron.job_run_details"
                             " ORDER BY runid DESC LIMIT 5").fetchall()
            jobs = c.execute("SELECT jobid, jobname, schedule, database, username, nodename, active FROM cron.job"
                             ).fetchall()
            raise AssertionError(f"{exc}; pg_cron's jobs: {jobs}; its last runs: {runs}") from None
        health = c.execute("SELECT ps_health.system_health()").fetchone()[0]
    assert row[0] is not None
    assert health["pg_cron"] is True and health["sweep_job"] is True
    assert health["sweep_age_seconds"] < 120
